"""VICI ``list-certs`` (``swanctl --list-certs``): every certificate, CRL and raw public
key the daemon knows, as strongSwan's ``list-cert`` events.

charon lists what its credential manager holds; pyipsec's credentials are in the
connections (the IKE core takes them in :class:`~pyipsec.config.model.ConnectionConfig`:
our chains and keys, :class:`~pyipsec.config.model.LocalCredentials`; the peer's trust
anchors, intermediates, CRLs and raw keys, :class:`~pyipsec.config.model.RemoteTrust`)
and in what ``load-cert``/``load-key`` loaded over VICI
(:class:`~pyipsec.daemon.vici_creds.ViciCredentials`).  Each item is listed once (by its
DER encoding).

Event fields (strongSwan's ``src/libcharon/plugins/vici/README.md``, *list-cert*):
``type`` (X509, X509_CRL, PUBKEY), ``flag`` for X.509 (CA when its basicConstraints say
so, OCSP for an OCSP signer, else NONE), ``has_privkey`` = yes when a private key for
its public key is loaded, ``data`` the DER encoding (SubjectPublicKeyInfo for PUBKEY).
The request's filters: ``type`` (one of those or ANY), ``flag`` (only with type X509:
NONE, CA, AA, OCSP or ANY) and ``subject`` (an identity the certificate holds: its
subject DN, a subjectAltName or its key identifier, as a peer's ID is matched, RFC 7296
§3.5).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from ..auth.certs import dn_equal, id_matches_certificate
from ..auth.signatures import PrivateKey
from ..config.credentials import spki_der
from ..config.model import ConnectionConfig
from ..constants import IdType
from ..ikev2.payloads import IdPayload
from .control import ControlError
from .vici_creds import ViciCredentials

__all__ = ["CERT_TYPES", "X509_FLAGS", "CertInventory", "list_cert_events"]

#: the ``type`` values strongSwan knows (pyipsec has no attribute certificates or OCSP
#: responses: those filters list nothing)
CERT_TYPES = ("X509", "X509_AC", "X509_CRL", "OCSP_RESPONSE", "PUBKEY", "ANY")
#: the X.509 ``flag`` values strongSwan knows
X509_FLAGS = ("NONE", "CA", "AA", "OCSP", "ANY")

_DER = serialization.Encoding.DER


@dataclass
class CertInventory:
    """The certificates, CRLs, raw public keys and private keys of a daemon, each once."""

    certs: list[x509.Certificate] = field(default_factory=list)
    crls: list[x509.CertificateRevocationList] = field(default_factory=list)
    raw_keys: list[bytes] = field(default_factory=list)  # DER SubjectPublicKeyInfo
    private_spkis: set[bytes] = field(default_factory=set)  # of the private keys' publics
    _seen: set[bytes] = field(default_factory=set)

    @classmethod
    def of(cls, conns: Iterable[ConnectionConfig], creds: ViciCredentials) -> CertInventory:
        inv = cls()
        for key in creds.keys.values():
            inv.add_private_key(key)
        inv.add_certs(creds.certs)
        inv.add_certs(creds.ca_certs)
        inv.add_crls(creds.crls)
        for conn in conns:
            for local in (conn.local_credentials, *conn.local_candidates):
                if local is None:
                    continue
                inv.add_private_key(local.private_key)
                if local.certificate is None:
                    inv.add_raw_key(spki_der(local.private_key.public_key()))
                else:
                    inv.add_certs((local.certificate,))
                inv.add_certs(local.intermediates)
                if local.anchor is not None:
                    inv.add_certs((local.anchor,))
            trust = conn.remote_trust
            if trust is not None:
                inv.add_certs(trust.anchors)
                inv.add_certs(trust.intermediates)
                inv.add_crls(trust.crls)
                for raw in trust.raw_keys:
                    inv.add_raw_key(raw)
        return inv

    def _new(self, der: bytes) -> bool:
        if der in self._seen:
            return False
        self._seen.add(der)
        return True

    def add_certs(self, certs: Iterable[x509.Certificate]) -> None:
        self.certs.extend(c for c in certs if self._new(c.public_bytes(_DER)))

    def add_crls(self, crls: Iterable[x509.CertificateRevocationList]) -> None:
        self.crls.extend(c for c in crls if self._new(c.public_bytes(_DER)))

    def add_raw_key(self, spki: bytes) -> None:
        if self._new(spki):
            self.raw_keys.append(spki)

    def add_private_key(self, key: PrivateKey) -> None:
        self.private_spkis.add(spki_der(key.public_key()))

    def has_private_key(self, cert: x509.Certificate) -> bool:
        try:
            return spki_der(cert.public_key()) in self.private_spkis
        except (ValueError, TypeError):  # a key type cryptography cannot load
            return False


def x509_flag(cert: x509.Certificate) -> str:
    """strongSwan's X.509 flag of ``cert``: CA (basicConstraints cA), OCSP (an OCSP
    signer, RFC 6960 §4.2.2.2) or NONE."""
    try:
        if cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return "CA"
    except (x509.ExtensionNotFound, ValueError):
        pass
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if x509.oid.ExtendedKeyUsageOID.OCSP_SIGNING in eku:
            return "OCSP"
    except (x509.ExtensionNotFound, ValueError):
        pass
    return "NONE"


def _filters(req: dict[str, Any]) -> tuple[str, str, IdPayload | None]:
    """The request's ``(type, flag, subject)``; a ControlError for values charon refuses."""

    def text(key: str, default: str) -> str:
        v = req.get(key)
        return v.decode(errors="replace").strip() if isinstance(v, bytes) else default

    typ = text("type", "ANY").upper() or "ANY"
    if typ not in CERT_TYPES:
        raise ControlError(f"invalid certificate type '{typ}' (hint: {', '.join(CERT_TYPES)})")
    flag = text("flag", "ANY").upper() or "ANY"
    if flag not in X509_FLAGS:
        raise ControlError(f"invalid certificate flag '{flag}' (hint: {', '.join(X509_FLAGS)})")
    subject_text = text("subject", "")
    subject = None
    if subject_text:
        try:
            subject = IdPayload.from_string(subject_text)
        except ValueError as e:
            raise ControlError(f"invalid subject '{subject_text}': {e}") from None
    return typ, flag if typ == "X509" else "ANY", subject


def list_cert_events(inv: CertInventory, req: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The ``list-cert`` events for a ``list-certs`` request, in charon's order: raw
    public keys, then X.509 certificates by flag (NONE, CA, AA, OCSP), then CRLs."""
    typ, flag, subject = _filters(req)
    if typ in ("PUBKEY", "ANY"):
        for spki in inv.raw_keys:
            if subject is None or _key_matches(subject, spki):
                yield {"type": "PUBKEY", "data": spki}
    if typ in ("X509", "ANY"):
        certs = [c for c in inv.certs if subject is None or id_matches_certificate(subject, c)]
        flagged = [(x509_flag(c), c) for c in certs]
        for want in ("NONE", "CA", "AA", "OCSP"):
            if flag not in ("ANY", want):
                continue
            for f, cert in flagged:
                if f != want:
                    continue
                msg: dict[str, Any] = {"type": "X509", "flag": f}
                if inv.has_private_key(cert):
                    msg["has_privkey"] = "yes"
                msg["data"] = cert.public_bytes(_DER)
                yield msg
    if typ in ("X509_CRL", "ANY"):
        for crl in inv.crls:
            if subject is None or _issued_by(crl, subject):
                yield {"type": "X509_CRL", "data": crl.public_bytes(_DER)}


def _key_matches(subject: IdPayload, spki: bytes) -> bool:
    """A raw public key's only names are its key identifiers (ID_KEY_ID, RFC 7296
    §3.5): SHA-1 of the SubjectPublicKeyInfo or of the key (RFC 5280 §4.2.1.2)."""
    if subject.id_type != IdType.ID_KEY_ID:
        return False
    ids = {hashlib.sha1(spki).digest()}
    try:
        key = serialization.load_der_public_key(spki)
        ids.add(x509.SubjectKeyIdentifier.from_public_key(key).digest)  # type: ignore[arg-type]
    except (ValueError, TypeError, UnsupportedAlgorithm):
        pass
    return subject.data in ids


def _issued_by(crl: x509.CertificateRevocationList, subject: IdPayload) -> bool:
    """A CRL is named by its issuer (charon matches its subject filter so)."""
    return subject.id_type == IdType.ID_DER_ASN1_DN and dn_equal(
        crl.issuer.public_bytes(), subject.data
    )
