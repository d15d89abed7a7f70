"""CERT / CERTREQ payload data and the binding of IKE identities to certificates.

* CERT (RFC 7296 §3.6): encoding 4 "X.509 Certificate - Signature" carries one DER
  certificate; encoding 15 "Raw Public Key" (RFC 7670 §3) a DER SubjectPublicKeyInfo.
  Hash and URL (12, 13; §3.6) are refused: we never send HTTP_CERT_LOOKUP_SUPPORTED.
  The first CERT payload holds the key that signed the AUTH payload (§3.6).
* CERTREQ (§3.7): the concatenated SHA-1 hashes of the SubjectPublicKeyInfo of the
  trust anchors we accept; :func:`select_chain` / :func:`certs_to_send` answer one.
* Identity (§3.5, §2.15, RFC 4945 §3.1): the peer's ID must be in its certificate:
  subjectAltName dNSName / rfc822Name / iPAddress, the subject DN (or a
  directoryName) for ID_DER_ASN1_DN compared canonically, or the key identifier
  for ID_KEY_ID.  :func:`match_id_pattern` matches configured remote IDs with
  strongSwan's wildcards (``%any``, ``*.example.net``, ``*@example.net``,
  ``CN=*, O=Example``, ``10.0.0.0/8``).
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from ..config.model import is_any_identity
from ..constants import CertEncoding, IdType
from ..dn import name_to_string, split_dn
from ..ikev2.errors import ParseError
from ..ikev2.payloads import CertReqPayload, IdPayload
from . import _der
from .errors import AuthError, AuthReason
from .keys import CERT_PARSE_ERRORS, load_public_key
from .signatures import PublicKey

__all__ = [
    "CERTREQ_HASH_LEN",
    "LocalChain",
    "PeerCredentials",
    "Rdn",
    "build_certreq",
    "cert_payload",
    "certs_to_send",
    "check_id_binding",
    "dn_equal",
    "id_matches_certificate",
    "match_id_pattern",
    "parse_cert_payload",
    "parse_cert_payloads",
    "parse_certreq",
    "parse_dn",
    "parse_dn_string",
    "raw_public_key_payload",
    "select_chain",
    "spki_sha1",
]

#: §3.7: each CA is named by the 20-octet SHA-1 hash of its SubjectPublicKeyInfo.
CERTREQ_HASH_LEN = 20

# --- CERT payloads ---------------------------------------------------------------------


def cert_payload(cert: x509.Certificate) -> tuple[int, bytes]:
    """``(encoding, data)`` of a CERT payload carrying ``cert`` (§3.6, encoding 4)."""
    return CertEncoding.X509_SIGNATURE, cert.public_bytes(serialization.Encoding.DER)


def raw_public_key_payload(key: PublicKey) -> tuple[int, bytes]:
    """``(encoding, data)`` of a CERT payload with a raw public key (RFC 7670 §3)."""
    return CertEncoding.RAW_PUBLIC_KEY, key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def parse_cert_payload(encoding: int, data: bytes) -> x509.Certificate | PublicKey:
    """The certificate or raw public key of one CERT payload.

    Raises :class:`AuthError`: UNSUPPORTED_CERT_ENCODING (Hash and URL, or any
    other encoding than 4 and 15), MALFORMED_CERT, UNSUPPORTED_KEY.
    """
    if encoding == CertEncoding.X509_SIGNATURE:
        try:
            cert = x509.load_der_x509_certificate(data)
            cert.subject.public_bytes()
            cert.issuer.public_bytes()
            _ = cert.extensions
            cert.public_key()
        except CERT_PARSE_ERRORS as e:
            raise AuthError(
                AuthReason.MALFORMED_CERT, f"malformed X.509 certificate: {e}"
            ) from None
        return cert
    if encoding == CertEncoding.RAW_PUBLIC_KEY:
        if not data or data[:1] != b"\x30":
            raise AuthError(AuthReason.MALFORMED_CERT, "raw public key is not a DER SPKI")
        return load_public_key(data)
    if encoding in (CertEncoding.HASH_URL_X509_CERT, CertEncoding.HASH_URL_X509_BUNDLE):
        raise AuthError(
            AuthReason.UNSUPPORTED_CERT_ENCODING,
            "Hash and URL certificate encodings (12, 13) are not supported: we do not"
            " fetch certificates (and never send HTTP_CERT_LOOKUP_SUPPORTED, §3.6)",
        )
    try:
        name = CertEncoding(encoding).name
    except ValueError:
        name = str(encoding)
    raise AuthError(
        AuthReason.UNSUPPORTED_CERT_ENCODING,
        f"certificate encoding {name} is not supported (only X.509 signature, raw public key)",
    )


@dataclass(frozen=True, slots=True)
class PeerCredentials:
    """What the peer's CERT payloads gave: the end-entity certificate (or a raw
    public key) and the other certificates (candidate intermediates)."""

    certificate: x509.Certificate | None
    public_key: PublicKey
    intermediates: tuple[x509.Certificate, ...] = ()


def parse_cert_payloads(payloads: Iterable[tuple[int, bytes]]) -> PeerCredentials | None:
    """All CERT payloads of a message, in order (None when there are none).

    The first one holds the key that signed AUTH (§3.6); the others must be
    X.509 certificates (intermediates).  Raises :class:`AuthError`.
    """
    items = [parse_cert_payload(enc, data) for enc, data in payloads]
    if not items:
        return None
    first, rest = items[0], items[1:]
    inter: list[x509.Certificate] = []
    for item in rest:
        if not isinstance(item, x509.Certificate):
            raise AuthError(
                AuthReason.UNSUPPORTED_CERT_ENCODING,
                "a raw public key is only allowed as the first (and only) CERT payload",
            )
        inter.append(item)
    if isinstance(first, x509.Certificate):
        try:
            key = first.public_key()
        except (ValueError, UnsupportedAlgorithm) as e:
            raise AuthError(AuthReason.MALFORMED_CERT, f"certificate public key: {e}") from None
        from .signatures import _check_key_type

        return PeerCredentials(first, _check_key_type(key), tuple(inter))
    if inter:
        raise AuthError(
            AuthReason.UNSUPPORTED_CERT_ENCODING,
            "a raw public key cannot come with certificates (RFC 7670 §3)",
        )
    return PeerCredentials(None, first)


# --- CERTREQ (§3.7) ----------------------------------------------------------------


def spki_sha1(cert_or_key: x509.Certificate | PublicKey) -> bytes:
    """SHA-1 of the DER SubjectPublicKeyInfo: how CERTREQ names a CA (§3.7); kept per
    certificate (the trust anchors are named in every handshake)."""
    if isinstance(cert_or_key, x509.Certificate):
        return _cert_spki_sha1(cert_or_key)
    return _key_spki_sha1(cert_or_key)


@functools.lru_cache(maxsize=1024)
def _cert_spki_sha1(cert: x509.Certificate) -> bytes:
    return _key_spki_sha1(cert.public_key())


def _key_spki_sha1(key: CertificatePublicKeyTypes | PublicKey) -> bytes:
    spki = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha1(spki).digest()


def build_certreq(anchors: Iterable[x509.Certificate]) -> bytes:
    """CERTREQ data (encoding 4) naming ``anchors``, without duplicates (§3.7)."""
    seen: list[bytes] = []
    for cert in anchors:
        h = spki_sha1(cert)
        if h not in seen:
            seen.append(h)
    return b"".join(seen)


def parse_certreq(data: bytes) -> list[bytes]:
    """The 20-octet CA hashes of CERTREQ data (§3.7); empty data gives [].

    A length that is not a multiple of 20 raises :class:`AuthError`
    (MALFORMED_CERTREQ).  (RFC 7670 §3: a raw-public-key CERTREQ is empty.)
    """
    try:
        return CertReqPayload(CertEncoding.X509_SIGNATURE, data).ca_hashes()
    except ParseError:
        raise AuthError(
            AuthReason.MALFORMED_CERTREQ,
            f"CERTREQ data of {len(data)} octets is not a list of 20-octet SHA-1 hashes",
        ) from None


@dataclass(frozen=True, slots=True)
class LocalChain:
    """One of our certificates with its intermediates (issuer of ``certificate``
    first) and, if known, the trust anchor at the top."""

    certificate: x509.Certificate
    intermediates: tuple[x509.Certificate, ...] = ()
    anchor: x509.Certificate | None = None
    _hashes: tuple[bytes, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        cas = [*self.intermediates, *([self.anchor] if self.anchor is not None else [])]
        object.__setattr__(self, "_hashes", tuple(spki_sha1(c) for c in cas))

    def authority_index(self, requested: Collection[bytes]) -> int | None:
        """How many intermediates lie below the first requested CA (None: none)."""
        for i, h in enumerate(self._hashes):
            if h in requested:
                return i
        return None


def select_chain(
    chains: Sequence[LocalChain], requested: Collection[bytes] | None
) -> LocalChain | None:
    """Which of our certificates to use for the peer's CERTREQ hashes (§3.7, §2.15).

    The first chain leading to a requested CA; with no CERTREQ (None or empty)
    the first chain.  None when CERTREQs were received and none matches (the
    caller may still fall back to ``chains[0]``, as strongSwan does).
    """
    if not chains:
        return None
    if not requested:
        return chains[0]
    for chain in chains:
        if chain.authority_index(requested) is not None:
            return chain
    return None


def certs_to_send(chain: LocalChain, requested: Collection[bytes] | None) -> list[x509.Certificate]:
    """The certificates for our CERT payloads, end-entity first (§3.6).

    The intermediates below the requested CA the peer trusts; all of them when
    the peer asked for nothing we know.  Never the trust anchor.
    """
    index = chain.authority_index(requested) if requested else None
    inter = chain.intermediates if index is None else chain.intermediates[:index]
    return [chain.certificate, *inter]


# --- distinguished names (RFC 5280 §4.1.2.4, §7.1) ----------------------------------

#: One RDN, canonical: sorted ((attribute OID, canonical value), ...).
Rdn = tuple[tuple[str, str], ...]

_STRING_CODECS = {
    0x0C: "utf-8",  # UTF8String
    0x13: "ascii",  # PrintableString
    0x16: "ascii",  # IA5String
    0x12: "ascii",  # NumericString
    0x1A: "ascii",  # VisibleString
    0x14: "latin-1",  # TeletexString (as strongSwan/OpenSSL treat it)
    0x1E: "utf-16-be",  # BMPString
    0x1C: "utf-32-be",  # UniversalString
}


def _canon(value: str) -> str:
    """strongSwan-like comparison form: whitespace runs collapsed, ends trimmed,
    case folded."""
    return " ".join(value.split()).casefold()


def parse_dn(der: bytes) -> tuple[Rdn, ...]:
    """The canonical RDN sequence of a DER Name, in encoded order.

    Values of the X.520 string types are decoded and canonicalised (case,
    whitespace); others are kept as ``#hex`` of their DER.  Raises
    :class:`AuthError` (ID_MISMATCH) for bytes that are not a Name.
    """
    try:
        rdns: list[Rdn] = []
        for tag, rdn in _der.read_all(_der.read_single(der, _der.SEQUENCE)):
            if tag != _der.SET:
                raise _der.DerError("RDN is not a SET")
            attrs: list[tuple[str, str]] = []
            for atag, atv in _der.read_all(rdn):
                parts = _der.read_all(atv) if atag == _der.SEQUENCE else []
                if len(parts) != 2 or parts[0][0] != _der.OID:
                    raise _der.DerError("bad AttributeTypeAndValue")
                oid = _der.decode_oid(parts[0][1])
                vtag, value = parts[1]
                codec = _STRING_CODECS.get(vtag)
                text = _canon(value.decode(codec)) if codec else "#" + _der.tlv(vtag, value).hex()
                attrs.append((oid, text))
            if not attrs:
                raise _der.DerError("empty RDN")
            rdns.append(tuple(sorted(attrs)))
        return tuple(rdns)
    except (_der.DerError, UnicodeDecodeError, IndexError) as e:
        raise AuthError(AuthReason.ID_MISMATCH, f"malformed distinguished name: {e}") from None


def dn_equal(a: bytes, b: bytes) -> bool:
    """Whether two DER Names are the same DN: same RDNs in the same order, values
    compared case-insensitively with whitespace normalised.  Malformed -> False."""
    try:
        return parse_dn(a) == parse_dn(b)
    except AuthError:
        return False


def parse_dn_string(text: str) -> tuple[Rdn, ...]:
    """RDNs of a DN string as written (``C=CH, O=Example, CN=moon``; ``+`` joins
    the attributes of a multi-valued RDN, :func:`pyipsec.dn.split_dn`), canonicalised
    like :func:`parse_dn`.  Raises ``ValueError`` for text that is not a DN."""
    return tuple(
        tuple(sorted((oid, _canon(value)) for oid, value in rdn)) for rdn in split_dn(text)
    )


def _dn_matches(pattern: Sequence[Rdn], dn: Sequence[Rdn]) -> bool:
    """RDN by RDN; a value ``*`` matches any value of that attribute."""
    if len(pattern) != len(dn):
        return False
    for prdn, rdn in zip(pattern, dn, strict=True):
        if len(prdn) != len(rdn):
            return False
        for (poid, pval), (oid, val) in zip(prdn, rdn, strict=True):
            if poid != oid or (pval != "*" and pval != val):
                return False
    return True


# --- identity <-> certificate (§2.15, RFC 4945 §3.1) --------------------------------


def _sans(cert: x509.Certificate) -> list[x509.GeneralName]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    except ValueError:
        return []
    return list(ext.value)


def _key_ids(cert: x509.Certificate) -> set[bytes]:
    ids: set[bytes] = set()
    try:
        ids.add(spki_sha1(cert))
        ids.add(x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest)
    except (ValueError, UnsupportedAlgorithm, TypeError):
        pass
    try:
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        ids.add(ski.value.digest)
    except (x509.ExtensionNotFound, ValueError):
        pass
    return ids


def id_matches_certificate(ident: IdPayload, cert: x509.Certificate) -> bool:
    """Whether the IKE identity ``ident`` is one of the names of ``cert``.

    ID_FQDN / ID_RFC822_ADDR: a subjectAltName dNSName / rfc822Name, case-
    insensitively; ID_IPV4_ADDR / ID_IPV6_ADDR: an iPAddress; ID_DER_ASN1_DN: the
    subject (or a directoryName) as :func:`dn_equal`; ID_KEY_ID: the SHA-1 key
    identifier (SubjectKeyIdentifier, or SHA-1 of the key or its SPKI).  Never
    raises.
    """
    t, data = ident.id_type, ident.data
    try:
        if t in (IdType.ID_FQDN, IdType.ID_RFC822_ADDR):
            wanted = _canon(data.decode("utf-8"))
            kind = x509.DNSName if t == IdType.ID_FQDN else x509.RFC822Name
            return any(
                isinstance(n, kind) and _canon(n.value).rstrip(".") == wanted.rstrip(".")
                for n in _sans(cert)
            )
        if t in (IdType.ID_IPV4_ADDR, IdType.ID_IPV6_ADDR):
            addr = ipaddress.ip_address(data)
            return any(isinstance(n, x509.IPAddress) and n.value == addr for n in _sans(cert))
        if t == IdType.ID_DER_ASN1_DN:
            wanted_dn = parse_dn(data)
            if parse_dn(cert.subject.public_bytes()) == wanted_dn:
                return True
            return any(
                isinstance(n, x509.DirectoryName) and parse_dn(n.value.public_bytes()) == wanted_dn
                for n in _sans(cert)
            )
        if t == IdType.ID_KEY_ID:
            return data in _key_ids(cert)
    except (AuthError, ValueError, UnicodeDecodeError):
        return False
    return False


def check_id_binding(ident: IdPayload, cert: x509.Certificate) -> None:
    """Raise :class:`AuthError` (ID_MISMATCH) unless ``ident`` is bound to ``cert``
    (RFC 7296 §2.15: the ID must be authenticated by the certificate)."""
    if not id_matches_certificate(ident, cert):
        raise AuthError(
            AuthReason.ID_MISMATCH,
            f"identity {ident.to_string()!r} is not contained in certificate"
            f" {name_to_string(cert.subject)!r}",
        )


# --- configured ID patterns (strongSwan's identification_t matching) -----------------

_TYPE_PREFIXES: dict[str, int] = {
    "fqdn": IdType.ID_FQDN,
    "email": IdType.ID_RFC822_ADDR,
    "rfc822": IdType.ID_RFC822_ADDR,
    "asn1dn": IdType.ID_DER_ASN1_DN,
    "ipv4": IdType.ID_IPV4_ADDR,
    "ipv6": IdType.ID_IPV6_ADDR,
}


def _ip_pattern_matches(pattern: str, ident: IdPayload) -> bool | None:
    """An address, CIDR subnet or ``a-b`` range pattern; None: not an IP pattern."""
    try:
        if "/" in pattern:
            net = ipaddress.ip_network(pattern, strict=False)
            lo, hi = net.network_address, net.broadcast_address
        elif "-" in pattern:
            a, b = pattern.split("-", 1)
            lo, hi = ipaddress.ip_address(a.strip()), ipaddress.ip_address(b.strip())
        else:
            lo = hi = ipaddress.ip_address(pattern)
    except ValueError:
        return None
    if ident.id_type not in (IdType.ID_IPV4_ADDR, IdType.ID_IPV6_ADDR):
        return False
    try:
        addr = ipaddress.ip_address(ident.data)
    except ValueError:
        return False
    return addr.version == lo.version == hi.version and lo <= addr <= hi  # type: ignore[operator]


def match_id_pattern(pattern: str, ident: IdPayload) -> bool:
    """Whether the peer's ``ident`` matches a configured remote ID ``pattern``.

    As strongSwan: ``%any`` (or ``*``) matches everything; ``*.example.net`` and
    ``*@example.net`` match FQDN / RFC 822 identities by suffix (case-insensitive;
    the ``*`` covers one or more labels / the whole local part); a DN pattern
    (``CN=*, O=Example``) matches RDN by RDN, ``*`` standing for any value.  DN
    patterns are read in the written order (strongSwan) and, failing that, in
    reverse (RFC 4514, as ``IdPayload.from_string`` reads DNs).  IP patterns may
    be an address, a CIDR subnet or a range ``a-b``.  Other patterns must equal
    ``IdPayload.from_string(pattern)``.  Never raises: an unreadable pattern
    matches nothing.
    """
    text = pattern.strip()
    if text and is_any_identity(text):
        return True
    forced: int | None = None
    prefix, sep, rest = text.partition(":")
    if sep and prefix.lower() in _TYPE_PREFIXES and not rest.startswith("#"):
        forced, text = _TYPE_PREFIXES[prefix.lower()], rest
    t = ident.id_type
    if forced in (None, IdType.ID_IPV4_ADDR, IdType.ID_IPV6_ADDR):
        ip = _ip_pattern_matches(text, ident)
        if ip is not None:
            return ip
    if forced == IdType.ID_DER_ASN1_DN or (
        forced is None and "=" in text and "@" not in text.split("=")[0]
    ):
        if t != IdType.ID_DER_ASN1_DN:
            return False
        try:
            pat = parse_dn_string(text)
            dn = parse_dn(ident.data)
        except (ValueError, AuthError):
            return False
        return _dn_matches(pat, dn) or _dn_matches(pat[::-1], dn)
    if forced in (None, IdType.ID_FQDN, IdType.ID_RFC822_ADDR) and text.startswith("*"):
        wanted_type = forced
        if wanted_type is None:
            wanted_type = IdType.ID_RFC822_ADDR if "@" in text else IdType.ID_FQDN
        if t != wanted_type:
            return False
        try:
            value = _canon(ident.data.decode("utf-8"))
        except UnicodeDecodeError:
            return False
        suffix = _canon(text[1:])
        return len(value) > len(suffix) and value.endswith(suffix)
    try:
        want = IdPayload.from_string(pattern.strip())
    except ValueError:
        return False
    if want.id_type != t:
        return False
    if t in (IdType.ID_FQDN, IdType.ID_RFC822_ADDR):
        try:
            return _canon(want.data.decode("utf-8")) == _canon(ident.data.decode("utf-8"))
        except UnicodeDecodeError:
            return want.data == ident.data
    return want.data == ident.data
