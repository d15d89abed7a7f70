"""The VICI server's in-memory credential set: what ``swanctl --load-creds`` (and
``--load-all``) loads with ``load-shared``, ``load-cert`` and ``load-key``.

strongSwan keeps these in charon's credential manager and looks them up at
authentication time; pyipsec's IKE core takes a connection's credentials in its
:class:`~pyipsec.config.model.ConnectionConfig` (it is sans-I/O), so the VICI
connections (:mod:`pyipsec.daemon.vici_conns`) are translated again whenever this
set changes:

* shared secrets (``load-shared`` type ``IKE``): the PSK of a connection is the one
  whose owners best match its identities -- both identities, then the remote one,
  then the local one, then a secret without owners (the TOML loader's rule,
  :func:`pyipsec.config.loader._match_psk`);
* EAP secrets (type ``EAP``, swanctl's ``secrets.eap*``, RFC 7296 §2.16): the
  password of each owner (an EAP identity), as the TOML file's ``[secrets.eap-NAME]``:
  a client's own, a gateway's users (:func:`pyipsec.config.loader._eap`);
* certificates (``load-cert`` type ``X509``, flag ``NONE``/``CA``; ``X509_CRL``) and
  private keys (``load-key``): the CA certificates are the trust anchors
  (self-signed) and intermediates of every ``pubkey`` connection without
  ``remote.cacerts``; the key whose public key matches ``local.certs`` signs
  (:class:`pyipsec.config.credentials.CredentialStore` does the chain building).

Secret types pyipsec has no use for (XAUTH, NTLM, PPK) are refused with an
error naming the type, never stored silently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..auth.certs import spki_sha1
from ..auth.errors import AuthError
from ..auth.keys import load_certificates, load_crl, load_private_key, load_public_key
from ..auth.signatures import PrivateKey, PublicKey
from ..config.credentials import X509_DIR, CredentialStore, Report, _Key
from ..config.loader import _match_psk, _Secret
from ..dn import name_to_string
from .control import ControlError
from .vici_codec import text

__all__ = ["SHARED_TYPES", "ViciCredentials", "key_id"]

_T = TypeVar("_T")

#: ``load-shared`` types strongSwan knows, and why pyipsec refuses the others
SHARED_TYPES = {
    "IKE": "",
    "EAP": "",
    "XAUTH": "XAuth is IKEv1 only; pyipsec speaks IKEv2",
    "NTLM": "NT hashes for EAP-MSCHAPv2 are not supported by pyipsec (hint: an EAP secret "
    "with the password)",
    "PPK": "postquantum preshared keys (RFC 8784) are not supported by pyipsec",
}

#: ``load-key`` types strongSwan accepts
KEY_TYPES = ("any", "rsa", "ecdsa", "ed25519", "ed448", "private", "pkcs8")


def key_id(key: PrivateKey) -> str:
    """charon's key identifier: hex SHA-1 over the public key's BIT STRING (RFC 5280
    §4.2.1.2, method 1), the ``id`` of ``load-key``, ``get-keys``, ``unload-key``."""
    return _public_key_id(key.public_key())


def _public_key_id(pub: PublicKey) -> str:
    try:
        return x509.SubjectKeyIdentifier.from_public_key(pub).digest.hex()
    except (TypeError, ValueError):  # pragma: no cover - every supported key has one
        return spki_sha1(pub).hex()


@dataclass(frozen=True, slots=True)
class SharedSecret:
    """One ``load-shared`` secret: its ``id`` (swanctl: the section name), type and
    owner identities (empty: any)."""

    id: str
    type: str
    data: bytes = field(repr=False)
    owners: tuple[str, ...] = ()


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _label(cert: x509.Certificate) -> str:
    return name_to_string(cert.subject) or "(empty subject)"


class _MemoryStore(CredentialStore):
    """:class:`CredentialStore` over the VICI set instead of swanctl's directories:
    chain building, key matching, candidates and trust anchors are the TOML loader's.

    The certificates and raw public keys a ``load-conn`` message carries (its
    ``local.certs``, ``remote.cacerts``, ``local.pubkeys``, ``remote.pubkeys``) are
    registered under labels (:meth:`add_certs`, :meth:`add_pubkeys`); the loader's
    functions then name them as they name files."""

    def __init__(self, creds: ViciCredentials, report: Report) -> None:
        super().__init__(Path("/nonexistent-vici"), report)
        self.named: dict[tuple[str, str], x509.Certificate] = {}
        self.named_keys: dict[str, PublicKey] = {}
        self._cas = [(f"x509ca/{_label(c)}", c) for c in creds.ca_certs]
        self._crls = list(creds.crls)
        self._keys = [_Key(f"private/{kid}", k) for kid, k in creds.keys.items()]

    def certificate(self, loc: str, name: str, subdir: str = X509_DIR) -> x509.Certificate | None:
        return self.named.get((subdir, name))

    def public_key(self, loc: str, name: str) -> PublicKey | None:
        return self.named_keys.get(name)

    def add_certs(self, subdir: str, blobs: object, loc: str, report: Report) -> list[str]:
        """Certificate data of a message (``subdir``: ``x509`` for ``local.certs``,
        ``x509ca`` for ``remote.cacerts``); their labels, in order."""
        labels = []
        for label, cert in parse_cert_blobs(blobs, loc, report):
            self.named[(subdir, label)] = cert
            labels.append(label)
        return labels

    def add_pubkeys(self, blobs: object, loc: str, report: Report) -> list[str]:
        """``local.pubkeys`` / ``remote.pubkeys``: raw public keys (RFC 7670) as PEM/DER
        SubjectPublicKeyInfo or PKCS#1; their labels, in order."""
        items = blobs if isinstance(blobs, list) else [blobs]
        labels = []
        for key in _each_blob(items, loc, report, load_public_key, "a public key"):
            label = _public_key_id(key)
            self.named_keys[label] = key
            labels.append(label)
        return labels


class ViciCredentials:
    """Shared secrets, certificates and private keys loaded over VICI."""

    def __init__(self) -> None:
        self.shared: dict[str, SharedSecret] = {}
        self.certs: list[x509.Certificate] = []  # end-entity certificates (flag NONE)
        self.ca_certs: list[x509.Certificate] = []
        self.crls: list[x509.CertificateRevocationList] = []
        self.keys: dict[str, PrivateKey] = {}
        self._anon = 0

    # ------------------------------------------------------------ commands

    def load_shared(self, req: dict[str, Any]) -> None:
        """``load-shared``: ``id`` (optional), ``type``, ``data``, ``owners``."""
        typ = (text(req, "type") or "").upper()
        if typ not in SHARED_TYPES:
            raise ControlError(
                f"invalid shared key type {typ or '(missing)'!r} (hint: IKE, EAP, XAUTH, NTLM)"
            )
        if SHARED_TYPES[typ]:
            raise ControlError(f"shared key type {typ}: {SHARED_TYPES[typ]}")
        data = req.get("data")
        if not isinstance(data, bytes) or not data:
            raise ControlError("load-shared: missing or empty 'data'")
        owners_v = req.get("owners", [])
        if not isinstance(owners_v, list):
            raise ControlError("load-shared: 'owners' must be a list")
        owners = tuple(o.decode(errors="replace").strip() for o in owners_v)
        if typ == "EAP" and not any(owners):
            raise ControlError(
                "load-shared: an EAP secret names its user (hint: swanctl.conf "
                "secrets.eap-NAME { id = carol, secret = ... })"
            )
        ident = text(req, "id")
        if not ident:  # charon: no id, no way to unload it by name
            self._anon += 1
            ident = f"__anonymous_{self._anon}"
        self.shared[ident] = SharedSecret(ident, typ, data, tuple(o for o in owners if o))

    def unload_shared(self, req: dict[str, Any]) -> None:
        ident = text(req, "id")
        if not ident:
            raise ControlError("unload-shared: missing 'id'")
        if self.shared.pop(ident, None) is None:
            raise ControlError(f"unload-shared: shared key '{ident}' not found")

    def get_shared(self) -> list[str]:
        return [k for k in self.shared if not k.startswith("__anonymous_")]

    def load_cert(self, req: dict[str, Any]) -> None:
        """``load-cert``: ``type`` X509 (``flag`` NONE or CA) or X509_CRL, ``data``."""
        typ = (text(req, "type") or "").upper()
        flag = (text(req, "flag") or "NONE").upper()
        data = req.get("data")
        if not isinstance(data, bytes) or not data:
            raise ControlError("load-cert: missing 'data'")
        try:
            if typ == "X509_CRL":
                crl = load_crl(data)
                der = crl.public_bytes(serialization.Encoding.DER)
                if all(c.public_bytes(serialization.Encoding.DER) != der for c in self.crls):
                    self.crls.append(crl)
                return
            if typ != "X509":
                raise ControlError(
                    f"certificate type {typ or '(missing)'!r} is not supported by pyipsec "
                    "(hint: X509 with flag NONE or CA, X509_CRL)"
                )
            if flag not in ("NONE", "CA"):
                raise ControlError(
                    f"X.509 flag {flag!r} is not supported by pyipsec (hint: NONE or CA; "
                    "x509ocsp/ and x509aa/ certificates have no use in pyipsec)"
                )
            certs = load_certificates(data)
        except AuthError as e:
            raise ControlError(f"load-cert: parsing {typ} certificate failed: {e}") from None
        into = self.ca_certs if flag == "CA" else self.certs
        for cert in certs:
            if all(_der(c) != _der(cert) for c in into):
                into.append(cert)

    def load_key(self, req: dict[str, Any]) -> str:
        """``load-key``: ``type``, ``data`` (PEM or DER, unencrypted: swanctl decrypts)."""
        typ = (text(req, "type") or "any").lower()
        if typ not in KEY_TYPES:
            raise ControlError(f"private key type {typ!r} is not supported by pyipsec")
        data = req.get("data")
        if not isinstance(data, bytes) or not data:
            raise ControlError("load-key: missing 'data'")
        try:
            key = load_private_key(data)
        except AuthError as e:
            raise ControlError(f"load-key: parsing {typ} private key failed: {e}") from None
        kid = key_id(key)
        self.keys[kid] = key
        return kid

    def unload_key(self, req: dict[str, Any]) -> None:
        kid = (text(req, "id") or "").lower()
        if self.keys.pop(kid, None) is None:
            raise ControlError(f"unload-key: private key '{kid}' not found")

    def clear(self) -> None:
        """``clear-creds``: everything loaded over VICI."""
        self.shared.clear()
        self.certs.clear()
        self.ca_certs.clear()
        self.crls.clear()
        self.keys.clear()

    def flush(self, typ: str) -> None:
        """``flush-certs``: pyipsec has no certificate cache beyond what was loaded;
        CRLs (``X509_CRL``) are the only fetched-and-cached kind charon flushes."""
        if typ.upper() in ("X509_CRL", "ANY"):
            self.crls.clear()

    # ------------------------------------------------------------ lookups

    def secrets(self) -> list[_Secret]:
        """The IKE and EAP secrets as the TOML loader's ``[secrets]`` entries."""
        return [
            _Secret(s.id, s.owners, s.data, eap=s.type == "EAP")
            for s in self.shared.values()
            if s.type in ("IKE", "EAP")
        ]

    def psk_for(self, local_id: str, remote_id: str) -> bytes | None:
        """The IKE secret whose owners best match the identities (None: none)."""
        return _match_psk(self.secrets(), local_id, remote_id)

    def store(self, report: Report) -> _MemoryStore:
        """A credential store for one connection (its message's certificates and keys
        are added with :meth:`_MemoryStore.add_certs` / :meth:`~_MemoryStore.add_pubkeys`)."""
        return _MemoryStore(self, report)


def _each_blob(
    blobs: list[Any], loc: str, report: Report, load: Callable[[bytes], _T], what: str
) -> Iterator[_T]:
    """Each of a message's credential blobs as ``load`` reads it; one it cannot read is
    reported at ``loc[index]`` and skipped."""
    for i, b in enumerate(blobs):
        try:
            item = load(bytes(b))
        except (AuthError, TypeError) as e:
            report(f"{loc}[{i}]", f"not {what} ({e})")
            continue
        yield item


def parse_cert_blobs(
    blobs: object, loc: str, report: Report
) -> list[tuple[str, x509.Certificate]]:
    """``local.certs`` / ``remote.cacerts`` of ``load-conn``: certificate data (swanctl
    sends the files' contents), each labelled by its subject."""
    if isinstance(blobs, bytes):
        blobs = [blobs]
    if not isinstance(blobs, list):
        report(loc, "expected a list of certificates")
        return []
    out: list[tuple[str, x509.Certificate]] = []
    for certs in _each_blob(blobs, loc, report, load_certificates, "a PEM/DER certificate"):
        for c in certs:
            label = _label(c)
            if any(n == label for n, _ in out):  # e.g. a renewed CA: same subject
                label = f"{label} #{len(out) + 1}"
            out.append((label, c))
    return out
