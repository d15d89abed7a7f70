"""Public-key AUTH payloads: sign and verify the §2.15 signed octets.

Methods (RFC 7296 §3.8, the IANA "IKEv2 Authentication Method" registry):

* 1  RSA Digital Signature: RSASSA-PKCS1-v1_5 with SHA-1 (RFC 7296 §3.8).
* 9, 10, 11  ECDSA with SHA-256/P-256, SHA-384/P-384, SHA-512/P-521 (RFC 4754 §3, §7:
  the signature is ``r | s``, each the fixed length of the curve's field, not DER).
* 14 Digital Signature (RFC 7427 §3): AUTH data = 1-octet length of the
  AlgorithmIdentifier | AlgorithmIdentifier DER | signature.  Supported: RSASSA-PSS
  with SHA-256/384/512 (parameters as RFC 4055 §3.1 and RFC 7427 Appendix A.4.3),
  sha{256,384,512}WithRSAEncryption (Appendix A.1), ecdsa-with-SHA{256,384,512}
  (Appendix A.3; DER ``Ecdsa-Sig-Value`` signature), Ed25519 and Ed448 (RFC 8420:
  "Identity" hash).  SHA-1 inside method 14 is refused unless asked for (RFC 8247 §3.2).

The SIGNATURE_HASH_ALGORITHMS notify (RFC 7427 §4) is built and parsed here, and
:func:`choose_scheme` picks what to sign with for our key.

Everything that reads peer bytes raises only :class:`~pyipsec.auth.errors.AuthError`.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from ..constants import AuthMethod
from . import _der
from .errors import AuthError, AuthReason, syntax_error

__all__ = [
    "DEFAULT_HASHES",
    "ECDSA_SHA1",
    "ECDSA_SHA256",
    "ECDSA_SHA384",
    "ECDSA_SHA512",
    "ED448",
    "ED25519",
    "PUBLIC_KEY_METHODS",
    "RSA_PKCS1_SHA1",
    "RSA_PKCS1_SHA256",
    "RSA_PKCS1_SHA384",
    "RSA_PKCS1_SHA512",
    "RSA_PSS_SHA256",
    "RSA_PSS_SHA384",
    "RSA_PSS_SHA512",
    "HashAlgorithm",
    "PrivateKey",
    "PublicKey",
    "SignatureScheme",
    "VerifiedAuth",
    "build_hash_algorithms",
    "choose_scheme",
    "decode_algorithm_identifier",
    "parse_hash_algorithms",
    "sign_auth",
    "verify_auth",
]

PrivateKey = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)
PublicKey = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)


class HashAlgorithm(enum.IntEnum):
    """IANA "IKEv2 Hash Algorithms" (RFC 7427 §7, RFC 8420 §2)."""

    SHA1 = 1
    SHA2_256 = 2
    SHA2_384 = 3
    SHA2_512 = 4
    IDENTITY = 5


#: The AUTH methods this module signs and verifies.
PUBLIC_KEY_METHODS: frozenset[int] = frozenset(
    {
        AuthMethod.RSA_SIG,
        AuthMethod.ECDSA_SHA256_P256,
        AuthMethod.ECDSA_SHA384_P384,
        AuthMethod.ECDSA_SHA512_P521,
        AuthMethod.DIGITAL_SIGNATURE,
    }
)

Family = Literal["rsa", "rsa-pss", "ecdsa", "ed25519", "ed448"]

# --- object identifiers (RFC 3279, RFC 4055, RFC 5758, RFC 8410) ----------------------

_HASH_OIDS: dict[HashAlgorithm, str] = {
    HashAlgorithm.SHA1: "1.3.14.3.2.26",
    HashAlgorithm.SHA2_256: "2.16.840.1.101.3.4.2.1",
    HashAlgorithm.SHA2_384: "2.16.840.1.101.3.4.2.2",
    HashAlgorithm.SHA2_512: "2.16.840.1.101.3.4.2.3",
}
_OID_HASHES = {v: k for k, v in _HASH_OIDS.items()}
_RSA_PKCS1_OIDS: dict[HashAlgorithm, str] = {
    HashAlgorithm.SHA1: "1.2.840.113549.1.1.5",
    HashAlgorithm.SHA2_256: "1.2.840.113549.1.1.11",
    HashAlgorithm.SHA2_384: "1.2.840.113549.1.1.12",
    HashAlgorithm.SHA2_512: "1.2.840.113549.1.1.13",
}
_ECDSA_OIDS: dict[HashAlgorithm, str] = {
    HashAlgorithm.SHA1: "1.2.840.10045.4.1",
    HashAlgorithm.SHA2_256: "1.2.840.10045.4.3.2",
    HashAlgorithm.SHA2_384: "1.2.840.10045.4.3.3",
    HashAlgorithm.SHA2_512: "1.2.840.10045.4.3.4",
}
_OID_RSA_PSS = "1.2.840.113549.1.1.10"
_OID_MGF1 = "1.2.840.113549.1.1.8"
_OID_ED25519 = "1.3.101.112"
_OID_ED448 = "1.3.101.113"

_DIGEST_SIZE = {
    HashAlgorithm.SHA1: 20,
    HashAlgorithm.SHA2_256: 32,
    HashAlgorithm.SHA2_384: 48,
    HashAlgorithm.SHA2_512: 64,
}


def _hash(h: HashAlgorithm) -> hashes.HashAlgorithm:
    if h == HashAlgorithm.SHA1:
        return hashes.SHA1()
    if h == HashAlgorithm.SHA2_256:
        return hashes.SHA256()
    if h == HashAlgorithm.SHA2_384:
        return hashes.SHA384()
    if h == HashAlgorithm.SHA2_512:
        return hashes.SHA512()
    raise ValueError(f"no digest for {h.name}")


def _hash_alg_id(h: HashAlgorithm) -> bytes:
    """``AlgorithmIdentifier`` of a hash with NULL parameters (RFC 4055 §2.1 /
    RFC 7427 Appendix A.4)."""
    return _der.tlv(_der.SEQUENCE, _der.encode_oid(_HASH_OIDS[h]) + b"\x05\x00")


@dataclass(frozen=True, slots=True)
class SignatureScheme:
    """One signature algorithm of RFC 7427 §3 (or the fixed one of a legacy method).

    ``salt_length`` and ``mgf_hash`` are used by RSASSA-PSS only (RFC 4055 §3.1).
    """

    name: str
    family: Family
    hash: HashAlgorithm
    salt_length: int | None = None
    mgf_hash: HashAlgorithm | None = None

    def algorithm_identifier(self) -> bytes:
        """The DER AlgorithmIdentifier sent in method 14 AUTH data (RFC 7427 §3).

        PKCS#1 v1.5 carries NULL parameters (Appendix A.1), ECDSA and EdDSA none
        (Appendix A.3, RFC 8420 §2), RSASSA-PSS the full RSASSA-PSS-params with
        hashAlgorithm, maskGenAlgorithm (MGF1), saltLength and trailerField = 1,
        exactly as RFC 7427 Appendix A.4.3.
        """
        if self.family == "rsa":
            body = _der.encode_oid(_RSA_PKCS1_OIDS[self.hash]) + b"\x05\x00"
        elif self.family == "ecdsa":
            body = _der.encode_oid(_ECDSA_OIDS[self.hash])
        elif self.family == "ed25519":
            body = _der.encode_oid(_OID_ED25519)
        elif self.family == "ed448":
            body = _der.encode_oid(_OID_ED448)
        else:
            mgf_hash = self.mgf_hash or self.hash
            salt = _DIGEST_SIZE[self.hash] if self.salt_length is None else self.salt_length
            mgf = _der.tlv(_der.SEQUENCE, _der.encode_oid(_OID_MGF1) + _hash_alg_id(mgf_hash))
            params = (
                _der.tlv(0xA0, _hash_alg_id(self.hash))
                + _der.tlv(0xA1, mgf)
                + _der.tlv(0xA2, _der.encode_int(salt))
                + _der.tlv(0xA3, _der.encode_int(1))
            )
            body = _der.encode_oid(_OID_RSA_PSS) + _der.tlv(_der.SEQUENCE, params)
        return _der.tlv(_der.SEQUENCE, body)

    def key_matches(self, key: PublicKey | PrivateKey) -> bool:
        """Whether ``key`` can make/check signatures of this scheme."""
        if self.family in ("rsa", "rsa-pss"):
            return isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey)
        if self.family == "ecdsa":
            return isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey)
        if self.family == "ed25519":
            return isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey)
        return isinstance(key, ed448.Ed448PublicKey | ed448.Ed448PrivateKey)


RSA_PKCS1_SHA1 = SignatureScheme("sha1WithRSAEncryption", "rsa", HashAlgorithm.SHA1)
RSA_PKCS1_SHA256 = SignatureScheme("sha256WithRSAEncryption", "rsa", HashAlgorithm.SHA2_256)
RSA_PKCS1_SHA384 = SignatureScheme("sha384WithRSAEncryption", "rsa", HashAlgorithm.SHA2_384)
RSA_PKCS1_SHA512 = SignatureScheme("sha512WithRSAEncryption", "rsa", HashAlgorithm.SHA2_512)
RSA_PSS_SHA256 = SignatureScheme(
    "rsassa-pss-sha256", "rsa-pss", HashAlgorithm.SHA2_256, 32, HashAlgorithm.SHA2_256
)
RSA_PSS_SHA384 = SignatureScheme(
    "rsassa-pss-sha384", "rsa-pss", HashAlgorithm.SHA2_384, 48, HashAlgorithm.SHA2_384
)
RSA_PSS_SHA512 = SignatureScheme(
    "rsassa-pss-sha512", "rsa-pss", HashAlgorithm.SHA2_512, 64, HashAlgorithm.SHA2_512
)
ECDSA_SHA1 = SignatureScheme("ecdsa-with-SHA1", "ecdsa", HashAlgorithm.SHA1)
ECDSA_SHA256 = SignatureScheme("ecdsa-with-SHA256", "ecdsa", HashAlgorithm.SHA2_256)
ECDSA_SHA384 = SignatureScheme("ecdsa-with-SHA384", "ecdsa", HashAlgorithm.SHA2_384)
ECDSA_SHA512 = SignatureScheme("ecdsa-with-SHA512", "ecdsa", HashAlgorithm.SHA2_512)
ED25519 = SignatureScheme("ed25519", "ed25519", HashAlgorithm.IDENTITY)
ED448 = SignatureScheme("ed448", "ed448", HashAlgorithm.IDENTITY)

_RSA_PKCS1 = {
    s.hash: s for s in (RSA_PKCS1_SHA1, RSA_PKCS1_SHA256, RSA_PKCS1_SHA384, RSA_PKCS1_SHA512)
}
_RSA_PSS = {s.hash: s for s in (RSA_PSS_SHA256, RSA_PSS_SHA384, RSA_PSS_SHA512)}
_ECDSA = {s.hash: s for s in (ECDSA_SHA1, ECDSA_SHA256, ECDSA_SHA384, ECDSA_SHA512)}

#: RFC 4754 §3: method -> (curve name, hash, octets per coordinate)
_LEGACY_ECDSA: dict[int, tuple[str, HashAlgorithm, int]] = {
    AuthMethod.ECDSA_SHA256_P256: ("secp256r1", HashAlgorithm.SHA2_256, 32),
    AuthMethod.ECDSA_SHA384_P384: ("secp384r1", HashAlgorithm.SHA2_384, 48),
    AuthMethod.ECDSA_SHA512_P521: ("secp521r1", HashAlgorithm.SHA2_512, 66),
}
_CURVE_METHOD = {curve: m for m, (curve, _, _) in _LEGACY_ECDSA.items()}


def _unsupported(message: str) -> AuthError:
    return AuthError(AuthReason.UNSUPPORTED_ALGORITHM, message)


def _decode_hash_alg_id(content: bytes) -> HashAlgorithm:
    items = _der.read_all(_der.read_single(content, _der.SEQUENCE))
    if not items or items[0][0] != _der.OID or len(items) > 2:
        raise _der.DerError("bad hash AlgorithmIdentifier")
    if len(items) == 2 and items[1] != (_der.NULL, b""):
        raise _der.DerError("hash parameters must be NULL or absent")
    oid = _der.decode_oid(items[0][1])
    h = _OID_HASHES.get(oid)
    if h is None:
        raise _unsupported(f"unsupported hash algorithm {oid} in RSASSA-PSS parameters")
    return h


def _decode_pss_params(content: bytes) -> SignatureScheme:
    """RSASSA-PSS-params (RFC 4055 §3.1) with their DEFAULTs (SHA-1, MGF1-SHA-1, 20, 1)."""
    h = HashAlgorithm.SHA1
    mgf_h = HashAlgorithm.SHA1
    salt = 20
    last = -1
    for tag, value in _der.read_all(content):
        index = tag - 0xA0
        if not 0 <= index <= 3 or index <= last:
            raise _der.DerError("bad RSASSA-PSS-params field order")
        last = index
        if index == 0:
            h = _decode_hash_alg_id(value)
        elif index == 1:
            mgf = _der.read_all(_der.read_single(value, _der.SEQUENCE))
            if len(mgf) != 2 or mgf[0][0] != _der.OID:
                raise _der.DerError("bad maskGenAlgorithm")
            mgf_oid = _der.decode_oid(mgf[0][1])
            if mgf_oid != _OID_MGF1:
                raise _unsupported(f"unsupported RSASSA-PSS mask generation function {mgf_oid}")
            mgf_h = _decode_hash_alg_id(_der.tlv(*mgf[1]))
        elif index == 2:
            salt = _der.decode_int(_der.read_single(value, _der.INTEGER))
        elif _der.decode_int(_der.read_single(value, _der.INTEGER)) != 1:
            raise _unsupported("RSASSA-PSS trailerField other than 1")
    name = f"rsassa-pss-{h.name.lower().replace('sha2_', 'sha')}"
    return SignatureScheme(name, "rsa-pss", h, salt, mgf_h)


def decode_algorithm_identifier(data: bytes) -> SignatureScheme:
    """The :class:`SignatureScheme` of a DER AlgorithmIdentifier (RFC 7427 §3).

    Raises :class:`AuthError`: MALFORMED_AUTH for bad DER, UNSUPPORTED_ALGORITHM for
    an algorithm or parameters we do not implement.
    """
    try:
        items = _der.read_all(_der.read_single(data, _der.SEQUENCE))
        if not items or items[0][0] != _der.OID or len(items) > 2:
            raise _der.DerError("AlgorithmIdentifier is not SEQUENCE { OID, params }")
        oid = _der.decode_oid(items[0][1])
        params = items[1] if len(items) == 2 else None
        for h, o in _RSA_PKCS1_OIDS.items():
            if o == oid:
                if params not in (None, (_der.NULL, b"")):
                    raise _der.DerError(f"{oid}: parameters must be NULL")
                return _RSA_PKCS1[h]
        for h, o in _ECDSA_OIDS.items():
            if o == oid:
                if params is not None:
                    raise _der.DerError(f"{oid}: parameters must be absent")
                return _ECDSA[h]
        if oid in (_OID_ED25519, _OID_ED448):
            if params is not None:
                raise _der.DerError(f"{oid}: parameters must be absent")
            return ED25519 if oid == _OID_ED25519 else ED448
        if oid == _OID_RSA_PSS:
            if params is None or params[0] != _der.SEQUENCE:
                raise _der.DerError("RSASSA-PSS needs its parameters (RFC 7427 Appendix A.4)")
            return _decode_pss_params(params[1])
    except (_der.DerError, IndexError) as e:
        raise AuthError(AuthReason.MALFORMED_AUTH, f"malformed AlgorithmIdentifier: {e}") from None
    raise _unsupported(f"unsupported signature AlgorithmIdentifier {oid}")


# --- signing -------------------------------------------------------------------------


def _curve_name(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> str:
    return key.curve.name


def _raw_sign(key: PrivateKey, scheme: SignatureScheme, octets: bytes) -> bytes:
    if scheme.family == "rsa" and isinstance(key, rsa.RSAPrivateKey):
        return key.sign(octets, padding.PKCS1v15(), _hash(scheme.hash))
    if scheme.family == "rsa-pss" and isinstance(key, rsa.RSAPrivateKey):
        mgf_hash = scheme.mgf_hash or scheme.hash
        salt = _DIGEST_SIZE[scheme.hash] if scheme.salt_length is None else scheme.salt_length
        pad = padding.PSS(padding.MGF1(_hash(mgf_hash)), salt)
        return key.sign(octets, pad, _hash(scheme.hash))
    if scheme.family == "ecdsa" and isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(octets, ec.ECDSA(_hash(scheme.hash)))
    if scheme.family == "ed25519" and isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(octets)
    if scheme.family == "ed448" and isinstance(key, ed448.Ed448PrivateKey):
        return key.sign(octets)
    raise ValueError(f"{type(key).__name__} cannot sign with {scheme.name}")


def sign_auth(
    key: PrivateKey, octets: bytes, method: int, scheme: SignatureScheme | None = None
) -> bytes:
    """AUTH payload data signing ``octets`` (the §2.15 signed octets) with ``key``.

    ``method`` 1 (RSA_SIG) and 9/10/11 (RFC 4754) have a fixed scheme (``scheme``
    must then be None or that scheme); 14 (RFC 7427) needs ``scheme`` (see
    :func:`choose_scheme`).  A key that does not fit raises ``ValueError``
    (a local configuration mistake, not a peer's).
    """
    if method == AuthMethod.RSA_SIG:
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("AUTH method 1 (RSA Digital Signature) needs an RSA key")
        if scheme not in (None, RSA_PKCS1_SHA1):
            raise ValueError("AUTH method 1 is always RSASSA-PKCS1-v1_5 with SHA-1")
        return _raw_sign(key, RSA_PKCS1_SHA1, octets)
    legacy = _LEGACY_ECDSA.get(method)
    if legacy is not None:
        curve, h, size = legacy
        if not isinstance(key, ec.EllipticCurvePrivateKey) or _curve_name(key) != curve:
            raise ValueError(f"AUTH method {method} (RFC 4754) needs a {curve} key")
        if scheme not in (None, _ECDSA[h]):
            raise ValueError(f"AUTH method {method} is always ECDSA with {h.name}")
        r, s = decode_dss_signature(_raw_sign(key, _ECDSA[h], octets))
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    if method == AuthMethod.DIGITAL_SIGNATURE:
        if scheme is None:
            raise ValueError("AUTH method 14 (RFC 7427) needs a signature scheme")
        if not scheme.key_matches(key):
            raise ValueError(f"{type(key).__name__} cannot sign with {scheme.name}")
        alg_id = scheme.algorithm_identifier()
        return bytes([len(alg_id)]) + alg_id + _raw_sign(key, scheme, octets)
    raise ValueError(f"AUTH method {method} is not a public-key method")


# --- verification --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerifiedAuth:
    """A verified AUTH payload: the method and the scheme the peer used."""

    method: int
    scheme: SignatureScheme


def _check_key_type(key: object) -> PublicKey:
    if isinstance(
        key,
        rsa.RSAPublicKey
        | ec.EllipticCurvePublicKey
        | ed25519.Ed25519PublicKey
        | ed448.Ed448PublicKey,
    ):
        return key
    raise AuthError(
        AuthReason.WRONG_ALGORITHM_FOR_KEY,
        f"peer public key type {type(key).__name__} cannot be used for IKE authentication",
    )


def _raw_verify(key: PublicKey, scheme: SignatureScheme, signature: bytes, octets: bytes) -> None:
    if not scheme.key_matches(key):
        raise AuthError(
            AuthReason.WRONG_ALGORITHM_FOR_KEY,
            f"AUTH uses {scheme.name} but the peer's key is {_key_desc(key)}",
        )
    try:
        if isinstance(key, rsa.RSAPublicKey):
            if scheme.family == "rsa":
                key.verify(signature, octets, padding.PKCS1v15(), _hash(scheme.hash))
            else:
                mgf_hash = scheme.mgf_hash or scheme.hash
                salt = (
                    _DIGEST_SIZE[scheme.hash] if scheme.salt_length is None else scheme.salt_length
                )
                pad = padding.PSS(padding.MGF1(_hash(mgf_hash)), salt)
                key.verify(signature, octets, pad, _hash(scheme.hash))
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, octets, ec.ECDSA(_hash(scheme.hash)))
        else:
            key.verify(signature, octets)
    except (InvalidSignature, ValueError, TypeError, OverflowError, UnsupportedAlgorithm):
        raise AuthError(
            AuthReason.BAD_SIGNATURE, f"{scheme.name} signature of the AUTH payload is invalid"
        ) from None


def _key_desc(key: PublicKey) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ECDSA {key.curve.name}"
    return "Ed25519" if isinstance(key, ed25519.Ed25519PublicKey) else "Ed448"


def verify_auth(
    public_key: object,
    method: int,
    auth_data: bytes,
    octets: bytes,
    *,
    accepted_hashes: Collection[int] | None = None,
    allow_sha1: bool = False,
) -> VerifiedAuth:
    """Verify the peer's AUTH payload (``method``, ``auth_data``) over ``octets``.

    ``public_key`` comes from the peer's certificate or raw public key.  For method
    14 ``accepted_hashes`` (if given) limits the hashes (e.g. to those we sent in
    SIGNATURE_HASH_ALGORITHMS, RFC 7427 §4), and SHA-1 is refused unless
    ``allow_sha1`` (RFC 8247 §3.2; method 1 is SHA-1 by definition and unaffected).
    Raises :class:`AuthError` only, with reason UNSUPPORTED_METHOD,
    WRONG_ALGORITHM_FOR_KEY, MALFORMED_AUTH, UNSUPPORTED_ALGORITHM, WEAK_HASH,
    HASH_NOT_ALLOWED or BAD_SIGNATURE.
    """
    key = _check_key_type(public_key)
    if method == AuthMethod.RSA_SIG:
        _raw_verify(key, RSA_PKCS1_SHA1, auth_data, octets)
        return VerifiedAuth(AuthMethod.RSA_SIG, RSA_PKCS1_SHA1)
    legacy = _LEGACY_ECDSA.get(method)
    if legacy is not None:
        curve, h, size = legacy
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != curve:
            raise AuthError(
                AuthReason.WRONG_ALGORITHM_FOR_KEY,
                f"AUTH method {AuthMethod(method).name} needs a {curve} key,"
                f" the peer's is {_key_desc(key)}",
            )
        if len(auth_data) != 2 * size:
            raise AuthError(
                AuthReason.MALFORMED_AUTH,
                f"RFC 4754 signature must be {2 * size} octets (r | s), got {len(auth_data)}",
            )
        r = int.from_bytes(auth_data[:size], "big")
        s = int.from_bytes(auth_data[size:], "big")
        _raw_verify(key, _ECDSA[h], encode_dss_signature(r, s), octets)
        return VerifiedAuth(method, _ECDSA[h])
    if method != AuthMethod.DIGITAL_SIGNATURE:
        raise AuthError(
            AuthReason.UNSUPPORTED_METHOD, f"AUTH method {method} is not a signature method"
        )
    if not auth_data:
        raise AuthError(AuthReason.MALFORMED_AUTH, "empty Digital Signature AUTH data")
    length = auth_data[0]
    if len(auth_data) <= 1 + length:
        raise AuthError(
            AuthReason.MALFORMED_AUTH,
            f"Digital Signature AUTH data of {len(auth_data)} octets is too short for an"
            f" AlgorithmIdentifier of {length} octets and a signature (RFC 7427 §3)",
        )
    scheme = decode_algorithm_identifier(auth_data[1 : 1 + length])
    sha1 = HashAlgorithm.SHA1
    if (scheme.hash == sha1 or scheme.mgf_hash == sha1) and not allow_sha1:
        raise AuthError(AuthReason.WEAK_HASH, f"{scheme.name} uses SHA-1 (refused, RFC 8247 §3.2)")
    if accepted_hashes is not None and scheme.hash not in accepted_hashes:
        raise AuthError(
            AuthReason.HASH_NOT_ALLOWED,
            f"{scheme.name} uses hash {scheme.hash.name}, which we did not offer",
        )
    _raw_verify(key, scheme, auth_data[1 + length :], octets)
    return VerifiedAuth(AuthMethod.DIGITAL_SIGNATURE, scheme)


# --- SIGNATURE_HASH_ALGORITHMS (RFC 7427 §4) ----------------------------------------

#: What we send by default: SHA-2 and Identity (RFC 8247 §3.2, RFC 8420 §2).
DEFAULT_HASHES: tuple[HashAlgorithm, ...] = (
    HashAlgorithm.SHA2_256,
    HashAlgorithm.SHA2_384,
    HashAlgorithm.SHA2_512,
    HashAlgorithm.IDENTITY,
)


def build_hash_algorithms(hash_ids: Iterable[int] = DEFAULT_HASHES) -> bytes:
    """Notify data of SIGNATURE_HASH_ALGORITHMS: 2-octet hash identifiers (§4)."""
    return b"".join(struct.pack("!H", h) for h in hash_ids)


def parse_hash_algorithms(data: bytes) -> tuple[HashAlgorithm | int, ...]:
    """The hash identifiers of a SIGNATURE_HASH_ALGORITHMS notify, in order.

    Unknown identifiers stay plain ints (ignored by :func:`choose_scheme`); an odd
    length raises :class:`AuthError` (MALFORMED_NOTIFY, notify INVALID_SYNTAX).
    """
    if len(data) % 2:
        raise syntax_error(
            AuthReason.MALFORMED_NOTIFY,
            f"SIGNATURE_HASH_ALGORITHMS data has odd length {len(data)} (RFC 7427 §4)",
        )
    out: list[HashAlgorithm | int] = []
    for (v,) in struct.iter_unpack("!H", data):
        try:
            out.append(HashAlgorithm(v))
        except ValueError:
            out.append(v)
    return tuple(out)


def choose_scheme(
    key: PrivateKey,
    peer_hashes: Sequence[int] | None,
    *,
    preference: Sequence[int] | None = None,
    rsa_pss: bool = False,
    legacy: bool = True,
) -> tuple[AuthMethod, SignatureScheme]:
    """The AUTH method and scheme to sign with, for our ``key`` (RFC 7427 §4).

    ``peer_hashes`` is what the peer sent in SIGNATURE_HASH_ALGORITHMS (None: no
    notify).  ``preference`` is our configured preference (default SHA-256, -384, -512;
    for ECDSA the curve's own hash first); ``rsa_pss`` selects RSASSA-PSS instead
    of PKCS#1 v1.5 for RSA keys; ``legacy`` allows methods 1 and 9/10/11 when the
    peer sent no notify (or no hash in common).  Ed25519/Ed448 always use method 14
    with Identity (RFC 8420), and need Identity in ``peer_hashes`` when present.
    Raises :class:`AuthError` (NO_SIGNATURE_SCHEME) when nothing fits.
    """
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        scheme = ED25519 if isinstance(key, ed25519.Ed25519PrivateKey) else ED448
        if peer_hashes is not None and HashAlgorithm.IDENTITY not in peer_hashes:
            raise AuthError(
                AuthReason.NO_SIGNATURE_SCHEME,
                f"peer does not accept the Identity hash needed for {scheme.name} (RFC 8420)",
            )
        return AuthMethod.DIGITAL_SIGNATURE, scheme
    preferred = [
        HashAlgorithm(h)
        for h in (
            preference or (HashAlgorithm.SHA2_256, HashAlgorithm.SHA2_384, HashAlgorithm.SHA2_512)
        )
        if h in (HashAlgorithm.SHA2_256, HashAlgorithm.SHA2_384, HashAlgorithm.SHA2_512)
    ]
    legacy_choice: tuple[AuthMethod, SignatureScheme] | None
    if isinstance(key, rsa.RSAPrivateKey):
        table = _RSA_PSS if rsa_pss else _RSA_PKCS1
        legacy_choice = (AuthMethod.RSA_SIG, RSA_PKCS1_SHA1)
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        table = _ECDSA
        method = _CURVE_METHOD.get(_curve_name(key))
        legacy_choice = None
        if method is not None:
            curve_hash = _LEGACY_ECDSA[method][1]
            legacy_choice = (AuthMethod(method), _ECDSA[curve_hash])
            if curve_hash in preferred:
                preferred.remove(curve_hash)
                preferred.insert(0, curve_hash)
    else:
        raise ValueError(f"unsupported private key type {type(key).__name__}")
    if peer_hashes is not None:
        for h in preferred:
            if h in peer_hashes and h in table:
                return AuthMethod.DIGITAL_SIGNATURE, table[h]
    if legacy and legacy_choice is not None:
        return legacy_choice
    if peer_hashes is None and preferred:
        return AuthMethod.DIGITAL_SIGNATURE, table[preferred[0]]
    raise AuthError(
        AuthReason.NO_SIGNATURE_SCHEME,
        "no signature hash in common with the peer"
        f" (ours: {[h.name for h in preferred]}, peer's: {list(peer_hashes or ())})",
    )
