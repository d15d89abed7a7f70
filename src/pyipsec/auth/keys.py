"""Load keys, certificates and CRLs from BYTES (the daemon reads the files).

Private keys: PEM or DER; PKCS#8 (optionally encrypted with a passphrase), PKCS#1
``RSA PRIVATE KEY`` and SEC1 ``EC PRIVATE KEY`` (also OpenSSL's legacy encrypted
PEM).  Public keys: SubjectPublicKeyInfo (PEM/DER, RFC 5280 §4.1.2.7) or PKCS#1.
Only key types usable for IKE signatures are accepted: RSA, ECDSA on P-256/P-384/
P-521, Ed25519, Ed448.  Every failure is a :class:`~.errors.KeyLoadError` (or an
:class:`~.errors.AuthError` for certificates/CRLs) with a distinct reason.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from .errors import AuthError, AuthReason, KeyLoadError
from .signatures import PrivateKey, PublicKey

__all__ = [
    "CERT_PARSE_ERRORS",
    "load_certificate",
    "load_certificates",
    "load_crl",
    "load_private_key",
    "load_public_key",
]

_CURVES = ("secp256r1", "secp384r1", "secp521r1")


def _is_pem(data: bytes) -> bool:
    return b"-----BEGIN" in data


def _check_private(key: object) -> PrivateKey:
    if isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in _CURVES:
        return key
    raise KeyLoadError(
        AuthReason.UNSUPPORTED_KEY,
        f"unsupported private key type {type(key).__name__}"
        " (RSA, ECDSA P-256/P-384/P-521, Ed25519 or Ed448)",
    )


def _check_public(key: object) -> PublicKey:
    if isinstance(key, rsa.RSAPublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return key
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in _CURVES:
        return key
    raise KeyLoadError(
        AuthReason.UNSUPPORTED_KEY, f"unsupported public key type {type(key).__name__}"
    )


def load_private_key(data: bytes, passphrase: bytes | str | None = None) -> PrivateKey:
    """A private key from PEM or DER bytes (PKCS#8, PKCS#1 RSA, SEC1 EC).

    Reasons: PASSPHRASE_REQUIRED (encrypted, none given), BAD_PASSPHRASE,
    MALFORMED_KEY, UNSUPPORTED_KEY.
    """
    password = passphrase.encode() if isinstance(passphrase, str) else passphrase
    loader = (
        serialization.load_pem_private_key if _is_pem(data) else serialization.load_der_private_key
    )
    try:
        key = loader(data, password)
    except TypeError as e:
        if password is None:
            raise KeyLoadError(
                AuthReason.PASSPHRASE_REQUIRED, "the private key is encrypted: passphrase needed"
            ) from None
        # a passphrase for an unencrypted key: load it without
        try:
            key = loader(data, None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise KeyLoadError(AuthReason.MALFORMED_KEY, f"cannot load private key: {e}") from None
    except UnsupportedAlgorithm as e:
        raise KeyLoadError(AuthReason.UNSUPPORTED_KEY, f"unsupported private key: {e}") from None
    except ValueError:
        # with a passphrase, an encrypted key that does not load was given the wrong
        # one (OpenSSL fails to decrypt, or -- when the wrongly decrypted octets happen
        # to end in valid padding, about 1 in 128 -- the result is no key at all);
        # whether it is encrypted is asked, not read from the error's text
        if password is not None and _encrypted(loader, data):
            raise KeyLoadError(
                AuthReason.BAD_PASSPHRASE, "cannot decrypt the private key: wrong passphrase?"
            ) from None
        raise KeyLoadError(AuthReason.MALFORMED_KEY, "not a PEM/DER private key") from None
    return _check_private(key)


def _encrypted(loader: Callable[[bytes, bytes | None], object], data: bytes) -> bool:
    """Whether ``data`` is an encrypted private key (loading it without a passphrase
    asks for one)."""
    try:
        loader(data, None)
    except TypeError:
        return True
    except (ValueError, UnsupportedAlgorithm):
        return False
    return False


def load_public_key(data: bytes) -> PublicKey:
    """A public key from SubjectPublicKeyInfo (PEM/DER) or PKCS#1 PEM bytes."""
    try:
        if _is_pem(data):
            key: object = serialization.load_pem_public_key(data)
        else:
            key = serialization.load_der_public_key(data)
    except UnsupportedAlgorithm as e:
        raise KeyLoadError(AuthReason.UNSUPPORTED_KEY, f"unsupported public key: {e}") from None
    except (ValueError, TypeError):
        raise KeyLoadError(AuthReason.MALFORMED_KEY, "not a PEM/DER public key") from None
    return _check_public(key)


#: What cryptography raises for a malformed certificate or CRL, when loading or on the
#: first access of a lazily decoded part: besides ValueError, its own exception types
#: for a bad version or duplicate extensions (not ValueError subclasses), and KeyError
#: for a Name with an unknown ASN.1 string tag.
CERT_PARSE_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    TypeError,
    KeyError,
    UnsupportedAlgorithm,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle, or the one DER certificate."""
    try:
        if _is_pem(data):
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
        for c in certs:  # force parsing of the lazily decoded parts we use
            c.subject.public_bytes()
            c.issuer.public_bytes()
            _ = c.extensions
            c.public_key()  # an unknown key type or curve, or an invalid point
    except CERT_PARSE_ERRORS as e:
        raise AuthError(AuthReason.MALFORMED_CERT, f"not a PEM/DER certificate: {e}") from None
    return certs


def load_certificate(data: bytes) -> x509.Certificate:
    """Exactly one certificate from PEM or DER bytes."""
    certs = load_certificates(data)
    if len(certs) != 1:
        raise AuthError(AuthReason.MALFORMED_CERT, f"expected one certificate, got {len(certs)}")
    return certs[0]


def load_crl(data: bytes) -> x509.CertificateRevocationList:
    """A CRL from PEM or DER bytes."""
    try:
        crl = x509.load_pem_x509_crl(data) if _is_pem(data) else x509.load_der_x509_crl(data)
        crl.issuer.public_bytes()
    except CERT_PARSE_ERRORS as e:
        raise AuthError(AuthReason.MALFORMED_CERT, f"not a PEM/DER CRL: {e}") from None
    return crl
