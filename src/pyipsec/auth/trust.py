"""Certification path validation for IKE peers (RFC 5280 §6, RFC 4945 §5).

Why not ``cryptography.x509.verification``: its policy is the Web PKI one (CA/B
Forum): it refuses Ed25519/Ed448 and RSA keys below 2048 bits anywhere in the
chain, has no revocation checking, and reports one opaque message; IKE peers use
Ed25519 CAs and need distinct reasons.  So this module builds the path itself from
careful primitives: ``Certificate.verify_directly_issued_by`` (issuer/subject
match and the signature, RSA PKCS#1/PSS, ECDSA, EdDSA), validity at the injected
``now``, basicConstraints cA and pathLenConstraint, keyUsage keyCertSign /
cRLSign, unknown critical extensions, and CRLs.

IKE has no EKU of its own in TLS terms: like strongSwan, an end-entity EKU is
accepted when absent or when it contains serverAuth, clientAuth, ipsecIKE
(1.3.6.1.5.5.7.3.17, RFC 4945 §5.1.3.12) or anyExtendedKeyUsage; a keyUsage, if
present, must include digitalSignature (RFC 4945 §5.1.3.2).
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

from ..dn import name_to_string
from .errors import AuthError, AuthReason

__all__ = [
    "ACCEPTED_EKUS",
    "IPSEC_IKE_EKU",
    "ValidatedPath",
    "validate_chain",
]

#: id-kp-ipsecIKE (RFC 4945 §5.1.3.12)
IPSEC_IKE_EKU = ObjectIdentifier("1.3.6.1.5.5.7.3.17")
ACCEPTED_EKUS: frozenset[ObjectIdentifier] = frozenset(
    {
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
        IPSEC_IKE_EKU,
        ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
    }
)
DEFAULT_MAX_DEPTH = 8


@dataclass(frozen=True, slots=True)
class ValidatedPath:
    """A validated path: ``chain[0]`` is the end entity, ``chain[-1]`` the anchor."""

    chain: tuple[x509.Certificate, ...]

    @property
    def end_entity(self) -> x509.Certificate:
        return self.chain[0]

    @property
    def anchor(self) -> x509.Certificate:
        return self.chain[-1]


def _desc(cert: x509.Certificate) -> str:
    try:
        subject = name_to_string(cert.subject) or "<empty subject>"
    except ValueError:
        subject = "<unreadable subject>"
    return f"'{subject}' (serial 0x{cert.serial_number:x})"


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


E = TypeVar("E", bound=x509.ExtensionType)


def _ext(cert: x509.Certificate, cls: type[E]) -> x509.Extension[E] | None:
    try:
        return cert.extensions.get_extension_for_class(cls)
    except x509.ExtensionNotFound:
        return None
    except ValueError as e:
        raise AuthError(AuthReason.MALFORMED_CERT, f"{_desc(cert)}: bad extension: {e}") from None


_HANDLED_CRITICAL = (
    x509.BasicConstraints,
    x509.KeyUsage,
    x509.ExtendedKeyUsage,
    x509.SubjectAlternativeName,
    x509.CertificatePolicies,
    x509.SubjectKeyIdentifier,
    x509.AuthorityKeyIdentifier,
)


def _check_critical(cert: x509.Certificate) -> None:
    """RFC 5280 §4.2: a critical extension we do not process fails the path."""
    try:
        extensions = list(cert.extensions)
    except ValueError as e:
        raise AuthError(AuthReason.MALFORMED_CERT, f"{_desc(cert)}: bad extensions: {e}") from None
    for ext in extensions:
        if ext.critical and not isinstance(ext.value, _HANDLED_CRITICAL):
            raise AuthError(
                AuthReason.UNSUPPORTED_CRITICAL_EXTENSION,
                f"{_desc(cert)} has an unsupported critical extension {ext.oid.dotted_string}"
                f" ({getattr(ext.oid, '_name', 'unknown')})",
            )


def _check_validity(cert: x509.Certificate, now: dt.datetime, role: str) -> None:
    if now < cert.not_valid_before_utc:
        raise AuthError(
            AuthReason.NOT_YET_VALID,
            f"{role} certificate {_desc(cert)} is not valid before"
            f" {cert.not_valid_before_utc.isoformat()}",
        )
    if now > cert.not_valid_after_utc:
        raise AuthError(
            AuthReason.EXPIRED,
            f"{role} certificate {_desc(cert)} expired on {cert.not_valid_after_utc.isoformat()}",
        )


def _check_end_entity(cert: x509.Certificate) -> None:
    eku = _ext(cert, x509.ExtendedKeyUsage)
    if eku is not None:
        usages = set(eku.value)
        if not usages & ACCEPTED_EKUS:
            names = ", ".join(sorted(getattr(u, "_name", u.dotted_string) for u in usages))
            raise AuthError(
                AuthReason.WRONG_EKU,
                f"certificate {_desc(cert)} has extendedKeyUsage {names}: none of serverAuth,"
                " clientAuth, ipsecIKE or anyExtendedKeyUsage",
            )
    ku = _ext(cert, x509.KeyUsage)
    if ku is not None and not ku.value.digital_signature:
        raise AuthError(
            AuthReason.BAD_KEY_USAGE,
            f"certificate {_desc(cert)} has keyUsage without digitalSignature",
        )


def _ca_path_len(cert: x509.Certificate, anchor: bool) -> int | None:
    """The pathLenConstraint of a CA (None: unlimited); raises unless it is a CA."""
    bc = _ext(cert, x509.BasicConstraints)
    if bc is None:
        if anchor and cert.issuer == cert.subject:  # X.509 v1 self-signed root
            return None
        raise AuthError(
            AuthReason.NOT_A_CA, f"issuer {_desc(cert)} has no basicConstraints: not a CA"
        )
    value = bc.value
    if not value.ca:
        raise AuthError(AuthReason.NOT_A_CA, f"issuer {_desc(cert)} is not a CA (cA=FALSE)")
    ku = _ext(cert, x509.KeyUsage)
    if ku is not None and not ku.value.key_cert_sign:
        raise AuthError(
            AuthReason.BAD_KEY_USAGE, f"CA {_desc(cert)} has keyUsage without keyCertSign"
        )
    return value.path_length


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """``issuer`` signed ``cert``: its subject is ``cert``'s issuer and the signature
    verifies; a key the backend cannot use (UnsupportedAlgorithm) is just not the issuer."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _names_match(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    return cert.issuer == issuer.subject


def _check_revocation(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    crls: Sequence[x509.CertificateRevocationList],
    now: dt.datetime,
    strict: bool,
) -> None:
    """RFC 5280 §6.3 (simplified: complete CRLs issued by the certificate's CA)."""
    usable = 0
    for crl in crls:
        try:
            if crl.issuer != issuer.subject or not crl.is_signature_valid(
                issuer.public_key()  # type: ignore[arg-type]
            ):
                continue
        except (ValueError, TypeError, UnsupportedAlgorithm):
            continue
        ku = _ext(issuer, x509.KeyUsage)
        if ku is not None and not ku.value.crl_sign:
            continue
        next_update = crl.next_update_utc
        if strict and next_update is not None and now > next_update:
            continue  # stale
        usable += 1
        entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if entry is not None:
            when = entry.revocation_date_utc.isoformat()
            reason = ""
            try:
                r = entry.extensions.get_extension_for_class(x509.CRLReason)
                reason = f", reason {r.value.reason.name}"
            except (x509.ExtensionNotFound, ValueError):
                pass
            raise AuthError(
                AuthReason.REVOKED,
                f"certificate {_desc(cert)}: serial 0x{cert.serial_number:x} was revoked"
                f" on {when}{reason} (CRL of {_desc(issuer)})",
            )
    if strict and not usable:
        raise AuthError(
            AuthReason.CRL_UNAVAILABLE,
            f"no valid, current CRL of {_desc(issuer)} to check {_desc(cert)}",
        )


def validate_chain(
    end_entity: x509.Certificate,
    *,
    anchors: Sequence[x509.Certificate],
    intermediates: Sequence[x509.Certificate] = (),
    now: dt.datetime,
    crls: Sequence[x509.CertificateRevocationList] = (),
    strict_crl: bool = False,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> ValidatedPath:
    """Validate ``end_entity`` up to one of ``anchors`` at time ``now``.

    ``intermediates`` are candidates (the peer's extra CERT payloads and our
    configured CA certificates), in any order.  An anchor that is the end-entity
    certificate itself (a pinned peer certificate) is accepted.  ``crls`` are
    checked for every certificate below the anchor; with ``strict_crl`` a
    missing/stale CRL fails (CRL_UNAVAILABLE).  Raises :class:`AuthError` with
    reason EXPIRED, NOT_YET_VALID, WRONG_EKU, BAD_KEY_USAGE, UNTRUSTED,
    BAD_CERT_SIGNATURE, NOT_A_CA, PATH_LEN_EXCEEDED, PATH_TOO_LONG, REVOKED,
    CRL_UNAVAILABLE, UNSUPPORTED_CRITICAL_EXTENSION or MALFORMED_CERT.
    """
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.UTC)
    try:
        ee_der = _der(end_entity)
        _check_critical(end_entity)
        _check_validity(end_entity, now, "peer")
        _check_end_entity(end_entity)
        anchor_ders = {_der(a): a for a in anchors}
    except (ValueError, TypeError) as e:
        raise AuthError(AuthReason.MALFORMED_CERT, f"unusable certificate: {e}") from None
    if ee_der in anchor_ders:
        return ValidatedPath((end_entity,))

    builder = _PathBuilder(anchors, intermediates, anchor_ders, now, crls, strict_crl, max_depth)
    try:
        result = builder.extend([end_entity])
    except (ValueError, TypeError) as e:
        raise AuthError(AuthReason.MALFORMED_CERT, f"unusable certificate: {e}") from None
    if result is not None:
        return result
    # the failure that got furthest up the path explains best
    failures = builder.failures
    best = max(failures, key=lambda f: f[0])[1] if failures else None
    raise best or AuthError(
        AuthReason.UNTRUSTED, f"no path to a trust anchor for {_desc(end_entity)}"
    )


@dataclass
class _PathBuilder:
    """Depth-first search from the end entity up to a trust anchor (RFC 5280 §6.1,
    simplified), remembering why each branch failed."""

    anchors: Sequence[x509.Certificate]
    intermediates: Sequence[x509.Certificate]
    anchor_ders: dict[bytes, x509.Certificate]
    now: dt.datetime
    crls: Sequence[x509.CertificateRevocationList]
    strict_crl: bool
    max_depth: int
    failures: list[tuple[int, AuthError]] = field(default_factory=list)

    def extend(self, path: list[x509.Certificate]) -> ValidatedPath | None:
        cert = path[-1]
        in_path = {_der(c) for c in path}
        candidates = [(a, True) for a in self.anchors] + [
            (c, False) for c in self.intermediates if _der(c) not in self.anchor_ders
        ]
        matched = False
        for cand, is_anchor in candidates:
            if _der(cand) in in_path or not _names_match(cert, cand):
                continue
            matched = True
            try:
                found = self._through(path, cand, is_anchor)
            except AuthError as e:
                self.failures.append((len(path), e))
                continue
            if found is not None:
                return found
        if not matched:
            why = AuthError(
                AuthReason.UNTRUSTED,
                f"no trusted CA certificate found for issuer"
                f" '{name_to_string(cert.issuer)}' of {_desc(cert)}",
            )
            self.failures.append((len(path) - 1, why))
        return None

    def _through(
        self, path: list[x509.Certificate], cand: x509.Certificate, is_anchor: bool
    ) -> ValidatedPath | None:
        """The path continued through ``cand`` (the issuer of ``path[-1]``)."""
        cert = path[-1]
        if not issued_by(cert, cand):
            raise AuthError(
                AuthReason.BAD_CERT_SIGNATURE,
                f"signature of {_desc(cert)} does not verify with the key of {_desc(cand)}",
            )
        _check_critical(cand)
        _check_validity(cand, self.now, "CA")
        _ca_path_len(cand, is_anchor)
        if is_anchor:
            full = [*path, cand]
            _check_path_lengths(full)
            for child, parent in itertools.pairwise(full):
                _check_revocation(child, parent, self.crls, self.now, self.strict_crl)
            return ValidatedPath(tuple(full))
        if len(path) >= self.max_depth:
            raise AuthError(
                AuthReason.PATH_TOO_LONG, f"path longer than {self.max_depth} certificates"
            )
        return self.extend([*path, cand])


def _check_path_lengths(path: Sequence[x509.Certificate]) -> None:
    """basicConstraints pathLenConstraint (RFC 5280 §4.2.1.9): the number of
    non-self-issued intermediate CAs below each CA."""
    for i in range(1, len(path)):
        ca = path[i]
        bc = _ext(ca, x509.BasicConstraints)
        limit = bc.value.path_length if bc is not None else None
        if limit is None:
            continue
        below = [c for c in path[1:i] if c.issuer != c.subject]
        if len(below) > limit:
            raise AuthError(
                AuthReason.PATH_LEN_EXCEEDED,
                f"CA {_desc(ca)} allows {limit} intermediate CA(s) below it (pathLen),"
                f" the path has {len(below)}",
            )
