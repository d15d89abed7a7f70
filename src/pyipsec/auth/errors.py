"""The one error type of :mod:`pyipsec.auth`.

Everything in this package that is fed peer-controlled bytes (AUTH data, CERT and
CERTREQ payloads, SIGNATURE_HASH_ALGORITHMS data) or local key/certificate bytes
raises only :class:`AuthError` (a :class:`~pyipsec.errors.ProtocolError`, so the
core can answer with its ``notify``: AUTHENTICATION_FAILED, RFC 7296 §2.21.2, or
INVALID_SYNTAX for a malformed notify).  ``reason`` is a stable machine-readable
code; the message says what exactly went wrong.
"""

from __future__ import annotations

import enum

from ..constants import NotifyType
from ..errors import AuthenticationFailed

__all__ = ["AuthError", "AuthReason", "KeyLoadError"]


class AuthReason(enum.StrEnum):
    """Why authentication (or loading a credential) failed."""

    # signatures (RFC 7296 §2.15, RFC 4754, RFC 7427)
    MALFORMED_AUTH = "malformed-auth"  # AUTH data cannot be decoded
    UNSUPPORTED_METHOD = "unsupported-method"  # AUTH method we do not do
    UNSUPPORTED_ALGORITHM = "unsupported-algorithm"  # unknown/refused AlgorithmIdentifier
    WRONG_ALGORITHM_FOR_KEY = "wrong-algorithm-for-key"  # e.g. ECDSA AUTH with an RSA key
    WEAK_HASH = "weak-hash"  # SHA-1 in method 14 (RFC 8247 §3.2) unless allowed
    HASH_NOT_ALLOWED = "hash-not-allowed"  # a hash we did not offer/accept
    BAD_SIGNATURE = "bad-signature"
    NO_SIGNATURE_SCHEME = "no-signature-scheme"  # nothing both sides support
    MALFORMED_NOTIFY = "malformed-notify"
    # certificates and payloads (RFC 7296 §3.6, §3.7, RFC 7670)
    MALFORMED_CERT = "malformed-cert"
    UNSUPPORTED_CERT_ENCODING = "unsupported-cert-encoding"
    MALFORMED_CERTREQ = "malformed-certreq"
    ID_MISMATCH = "id-mismatch"  # IKE identity not bound to the certificate (§2.15)
    # path validation (RFC 5280 §6)
    UNTRUSTED = "untrusted"  # no path to a trust anchor ("wrong CA")
    BAD_CERT_SIGNATURE = "bad-cert-signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"
    NOT_A_CA = "not-a-ca"
    PATH_LEN_EXCEEDED = "path-len-exceeded"
    WRONG_EKU = "wrong-eku"
    BAD_KEY_USAGE = "bad-key-usage"
    REVOKED = "revoked"
    CRL_UNAVAILABLE = "crl-unavailable"  # strict revocation checking without a usable CRL
    UNSUPPORTED_CRITICAL_EXTENSION = "unsupported-critical-extension"
    PATH_TOO_LONG = "path-too-long"
    # local keys
    MALFORMED_KEY = "malformed-key"
    UNSUPPORTED_KEY = "unsupported-key"
    PASSPHRASE_REQUIRED = "passphrase-required"
    BAD_PASSPHRASE = "bad-passphrase"


class AuthError(AuthenticationFailed):
    """Authentication failed, or a credential could not be used.

    ``reason`` (:class:`AuthReason`) says why; ``str(err)`` is a readable sentence.
    ``notify`` defaults to AUTHENTICATION_FAILED (RFC 7296 §3.10.1).
    """

    def __init__(self, reason: AuthReason, message: str, notify: int | None = None) -> None:
        super().__init__(message, notify=notify)
        self.reason: AuthReason = reason

    def __repr__(self) -> str:
        return f"AuthError({self.reason.value!r}, {str(self)!r})"


class KeyLoadError(AuthError):
    """A local private/public key could not be loaded (configuration time)."""


def syntax_error(reason: AuthReason, message: str) -> AuthError:
    """An :class:`AuthError` answered with INVALID_SYNTAX instead (RFC 7296 §2.21.2)."""
    return AuthError(reason, message, notify=NotifyType.INVALID_SYNTAX)
