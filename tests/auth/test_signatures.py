"""AUTH signatures: methods 1, 9-11, 14 (RFC 7296 §3.8, RFC 4754, RFC 7427, RFC 8420)."""

from __future__ import annotations

import contextlib
import os
from functools import cache

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from pyipsec.auth.errors import AuthError, AuthReason
from pyipsec.auth.signatures import (
    ECDSA_SHA256,
    ECDSA_SHA384,
    ECDSA_SHA512,
    ED448,
    ED25519,
    RSA_PKCS1_SHA1,
    RSA_PKCS1_SHA256,
    RSA_PKCS1_SHA384,
    RSA_PKCS1_SHA512,
    RSA_PSS_SHA256,
    RSA_PSS_SHA384,
    RSA_PSS_SHA512,
    HashAlgorithm,
    PrivateKey,
    SignatureScheme,
    build_hash_algorithms,
    choose_scheme,
    decode_algorithm_identifier,
    parse_hash_algorithms,
    sign_auth,
    verify_auth,
)
from pyipsec.constants import AuthMethod

OCTETS = b"IKE_SA_INIT bytes | Nr | prf(SK_pi, IDi')" * 3


@cache
def key(kind: str) -> PrivateKey:
    if kind == "rsa":
        return rsa.generate_private_key(65537, 2048)
    if kind == "rsa2":
        return rsa.generate_private_key(65537, 2048)
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "p521":
        return ec.generate_private_key(ec.SECP521R1())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return ed448.Ed448PrivateKey.generate()


CASES: list[tuple[str, int, SignatureScheme | None]] = [
    ("rsa", AuthMethod.RSA_SIG, None),
    ("p256", AuthMethod.ECDSA_SHA256_P256, None),
    ("p384", AuthMethod.ECDSA_SHA384_P384, None),
    ("p521", AuthMethod.ECDSA_SHA512_P521, None),
    ("rsa", AuthMethod.DIGITAL_SIGNATURE, RSA_PSS_SHA256),
    ("rsa", AuthMethod.DIGITAL_SIGNATURE, RSA_PSS_SHA384),
    ("rsa", AuthMethod.DIGITAL_SIGNATURE, RSA_PSS_SHA512),
    ("rsa", AuthMethod.DIGITAL_SIGNATURE, RSA_PKCS1_SHA256),
    ("rsa", AuthMethod.DIGITAL_SIGNATURE, RSA_PKCS1_SHA384),
    ("rsa", AuthMethod.DIGITAL_SIGNATURE, RSA_PKCS1_SHA512),
    ("p256", AuthMethod.DIGITAL_SIGNATURE, ECDSA_SHA256),
    ("p384", AuthMethod.DIGITAL_SIGNATURE, ECDSA_SHA384),
    ("p521", AuthMethod.DIGITAL_SIGNATURE, ECDSA_SHA512),
    ("p256", AuthMethod.DIGITAL_SIGNATURE, ECDSA_SHA512),
    ("ed25519", AuthMethod.DIGITAL_SIGNATURE, ED25519),
    ("ed448", AuthMethod.DIGITAL_SIGNATURE, ED448),
]
IDS = [f"{k}-{m}-{s.name if s else 'legacy'}" for k, m, s in CASES]


@pytest.mark.parametrize(("kind", "method", "scheme"), CASES, ids=IDS)
def test_sign_verify_and_failures(kind: str, method: int, scheme: SignatureScheme | None) -> None:
    k = key(kind)
    data = sign_auth(k, OCTETS, method, scheme)
    got = verify_auth(k.public_key(), method, data, OCTETS)
    assert got.method == method
    if scheme is not None:
        assert got.scheme == scheme
    # other signed octets: bad signature
    with pytest.raises(AuthError) as ei:
        verify_auth(k.public_key(), method, data, OCTETS + b"x")
    assert ei.value.reason is AuthReason.BAD_SIGNATURE
    # forged: flip a bit of the signature (the last octet)
    forged = data[:-1] + bytes([data[-1] ^ 1])
    with pytest.raises(AuthError) as ei:
        verify_auth(k.public_key(), method, forged, OCTETS)
    assert ei.value.reason is AuthReason.BAD_SIGNATURE
    # wrong key of the same type
    other: PrivateKey
    if isinstance(k, ec.EllipticCurvePrivateKey):
        other = ec.generate_private_key(k.curve)
    elif isinstance(k, ed25519.Ed25519PrivateKey):
        other = ed25519.Ed25519PrivateKey.generate()
    elif isinstance(k, ed448.Ed448PrivateKey):
        other = ed448.Ed448PrivateKey.generate()
    else:
        other = key("rsa2")
    with pytest.raises(AuthError) as ei:
        verify_auth(other.public_key(), method, data, OCTETS)
    assert ei.value.reason is AuthReason.BAD_SIGNATURE
    # truncated
    with pytest.raises(AuthError) as ei:
        verify_auth(k.public_key(), method, data[: len(data) // 2], OCTETS)
    assert ei.value.reason in (AuthReason.BAD_SIGNATURE, AuthReason.MALFORMED_AUTH)


def test_rfc4754_signature_is_fixed_length_r_s() -> None:
    for kind, method, size in (
        ("p256", AuthMethod.ECDSA_SHA256_P256, 32),
        ("p384", AuthMethod.ECDSA_SHA384_P384, 48),
        ("p521", AuthMethod.ECDSA_SHA512_P521, 66),
    ):
        for _ in range(4):
            data = sign_auth(key(kind), OCTETS, method)
            assert len(data) == 2 * size
    with pytest.raises(AuthError) as ei:
        verify_auth(key("p256").public_key(), AuthMethod.ECDSA_SHA256_P256, b"\x01" * 63, OCTETS)
    assert ei.value.reason is AuthReason.MALFORMED_AUTH


def test_wrong_algorithm_for_key() -> None:
    rsa_sig = sign_auth(key("rsa"), OCTETS, AuthMethod.DIGITAL_SIGNATURE, RSA_PSS_SHA256)
    ec_sig = sign_auth(key("p256"), OCTETS, AuthMethod.DIGITAL_SIGNATURE, ECDSA_SHA256)
    for pub, method, data in (
        (key("p256").public_key(), AuthMethod.DIGITAL_SIGNATURE, rsa_sig),
        (key("rsa").public_key(), AuthMethod.DIGITAL_SIGNATURE, ec_sig),
        (key("ed25519").public_key(), AuthMethod.DIGITAL_SIGNATURE, ec_sig),
        (key("p384").public_key(), AuthMethod.ECDSA_SHA256_P256, b"\x01" * 64),
        (key("p256").public_key(), AuthMethod.RSA_SIG, b"\x01" * 256),
        (object(), AuthMethod.RSA_SIG, b"\x01" * 256),
    ):
        with pytest.raises(AuthError) as ei:
            verify_auth(pub, method, data, OCTETS)
        assert ei.value.reason is AuthReason.WRONG_ALGORITHM_FOR_KEY, ei.value


def test_unsupported_method_and_algorithm() -> None:
    pub = key("rsa").public_key()
    with pytest.raises(AuthError) as ei:
        verify_auth(pub, AuthMethod.PSK, b"x" * 32, OCTETS)
    assert ei.value.reason is AuthReason.UNSUPPORTED_METHOD
    # dsa-with-sha256 (RFC 7427 Appendix A.2.2)
    dsa = bytes.fromhex("300b0609608648016503040302")
    with pytest.raises(AuthError) as ei:
        verify_auth(pub, AuthMethod.DIGITAL_SIGNATURE, bytes([len(dsa)]) + dsa + b"s" * 64, OCTETS)
    assert ei.value.reason is AuthReason.UNSUPPORTED_ALGORITHM


def test_sha1_in_method_14_is_weak_unless_allowed() -> None:
    k = key("rsa")
    data = sign_auth(k, OCTETS, AuthMethod.DIGITAL_SIGNATURE, RSA_PKCS1_SHA1)
    with pytest.raises(AuthError) as ei:
        verify_auth(k.public_key(), AuthMethod.DIGITAL_SIGNATURE, data, OCTETS)
    assert ei.value.reason is AuthReason.WEAK_HASH
    ok = verify_auth(k.public_key(), AuthMethod.DIGITAL_SIGNATURE, data, OCTETS, allow_sha1=True)
    assert ok.scheme == RSA_PKCS1_SHA1


def test_accepted_hashes() -> None:
    k = key("rsa")
    data = sign_auth(k, OCTETS, AuthMethod.DIGITAL_SIGNATURE, RSA_PSS_SHA512)
    with pytest.raises(AuthError) as ei:
        verify_auth(
            k.public_key(),
            AuthMethod.DIGITAL_SIGNATURE,
            data,
            OCTETS,
            accepted_hashes={HashAlgorithm.SHA2_256},
        )
    assert ei.value.reason is AuthReason.HASH_NOT_ALLOWED


# --- RFC 7427 Appendix A, byte-exact --------------------------------------------------

APPENDIX_A = {
    "sha1WithRSAEncryption": "300d 0609 2a86 4886 f70d 0101 0505 00",
    "sha256WithRSAEncryption": "300d 0609 2a86 4886 f70d 0101 0b05 00",
    "sha384WithRSAEncryption": "300d 0609 2a86 4886 f70d 0101 0c05 00",
    "sha512WithRSAEncryption": "300d 0609 2a86 4886 f70d 0101 0d05 00",
    "ecdsa-with-SHA256": "300a 0608 2a86 48ce 3d04 0302",
    "ecdsa-with-SHA384": "300a 0608 2a86 48ce 3d04 0303",
    "ecdsa-with-SHA512": "300a 0608 2a86 48ce 3d04 0304",
    "rsassa-pss-sha256": (
        "3046 0609 2a86 4886 f70d 0101 0a30 39a0 0f30 0d06 0960 8648 0165 0304 0201 0500"
        " a11c 301a 0609 2a86 4886 f70d 0101 0830 0d06 0960 8648 0165 0304 0201 0500 a203"
        " 0201 20a3 0302 0101"
    ),
}
SCHEMES = {
    s.name: s
    for s in (
        RSA_PKCS1_SHA1,
        RSA_PKCS1_SHA256,
        RSA_PKCS1_SHA384,
        RSA_PKCS1_SHA512,
        ECDSA_SHA256,
        ECDSA_SHA384,
        ECDSA_SHA512,
        RSA_PSS_SHA256,
    )
}


@pytest.mark.parametrize("name", sorted(APPENDIX_A))
def test_algorithm_identifiers_match_rfc7427_appendix_a(name: str) -> None:
    expected = bytes.fromhex(APPENDIX_A[name].replace(" ", ""))
    assert SCHEMES[name].algorithm_identifier() == expected
    assert decode_algorithm_identifier(expected) == SCHEMES[name]


def test_pss_sha384_sha512_follow_appendix_a43_pattern() -> None:
    for scheme, salt in ((RSA_PSS_SHA384, 48), (RSA_PSS_SHA512, 64)):
        der = scheme.algorithm_identifier()
        assert der.endswith(bytes([0xA2, 3, 2, 1, salt, 0xA3, 3, 2, 1, 1]))
        assert decode_algorithm_identifier(der) == scheme


def test_pss_default_parameter_forms_decode_as_sha1() -> None:
    empty = bytes.fromhex("300d06092a864886f70d01010a3000")  # Appendix A.4.1
    default = bytes.fromhex(  # Appendix A.4.2
        "303e06092a864886f70d01010a3031a00b300906052b0e03021a0500a118301606092a864886f70d0101"
        "08300906052b0e03021a0500a203020114a303020101"
    )
    assert decode_algorithm_identifier(empty) == decode_algorithm_identifier(default)
    assert decode_algorithm_identifier(empty).hash is HashAlgorithm.SHA1


def test_appendix_b_auth_payload_prefix() -> None:
    data = sign_auth(key("rsa"), OCTETS, AuthMethod.DIGITAL_SIGNATURE, RSA_PKCS1_SHA1)
    assert data.startswith(bytes.fromhex("0f300d06092a864886f70d0101050500"))


def test_ed25519_identifier_rfc8420() -> None:
    assert ED25519.algorithm_identifier() == bytes.fromhex("300506032b6570")
    assert ED448.algorithm_identifier() == bytes.fromhex("300506032b6571")


# --- SIGNATURE_HASH_ALGORITHMS and scheme choice (RFC 7427 §4) -----------------------


def test_hash_algorithms_notify_round_trip() -> None:
    data = build_hash_algorithms()
    assert data == bytes.fromhex("0002000300040005")
    assert parse_hash_algorithms(data) == (2, 3, 4, 5)
    assert parse_hash_algorithms(b"\x00\x02\x00\x63") == (HashAlgorithm.SHA2_256, 99)
    assert parse_hash_algorithms(b"") == ()
    with pytest.raises(AuthError) as ei:
        parse_hash_algorithms(b"\x00\x02\x00")
    assert ei.value.reason is AuthReason.MALFORMED_NOTIFY
    assert ei.value.notify == 7  # INVALID_SYNTAX


def test_choose_scheme() -> None:
    peer = (HashAlgorithm.SHA2_256, HashAlgorithm.SHA2_384, HashAlgorithm.SHA2_512, 5)
    assert choose_scheme(key("rsa"), peer) == (AuthMethod.DIGITAL_SIGNATURE, RSA_PKCS1_SHA256)
    assert choose_scheme(key("rsa"), peer, rsa_pss=True) == (14, RSA_PSS_SHA256)
    assert choose_scheme(key("rsa"), (4,), rsa_pss=True) == (14, RSA_PSS_SHA512)
    assert choose_scheme(key("rsa"), None) == (AuthMethod.RSA_SIG, RSA_PKCS1_SHA1)
    assert choose_scheme(key("rsa"), None, legacy=False) == (14, RSA_PKCS1_SHA256)
    assert choose_scheme(key("p384"), peer) == (14, ECDSA_SHA384)  # the curve's hash first
    assert choose_scheme(key("p521"), None) == (AuthMethod.ECDSA_SHA512_P521, ECDSA_SHA512)
    assert choose_scheme(key("p256"), (HashAlgorithm.SHA1,)) == (9, ECDSA_SHA256)
    assert choose_scheme(key("ed25519"), peer) == (14, ED25519)
    assert choose_scheme(key("ed448"), None) == (14, ED448)
    assert choose_scheme(key("rsa"), peer, preference=(4, 2)) == (14, RSA_PKCS1_SHA512)
    for k, p, kw in (
        (key("ed25519"), (2, 3), {}),
        (key("rsa"), (1,), {"legacy": False}),
    ):
        with pytest.raises(AuthError) as ei:
            choose_scheme(k, p, **kw)  # type: ignore[arg-type]
        assert ei.value.reason is AuthReason.NO_SIGNATURE_SCHEME


def test_choice_signs_and_verifies() -> None:
    for kind in ("rsa", "p256", "p384", "ed25519"):
        method, scheme = choose_scheme(key(kind), (2, 3, 4, 5), rsa_pss=True)
        data = sign_auth(key(kind), OCTETS, method, scheme)
        assert verify_auth(key(kind).public_key(), method, data, OCTETS).scheme == scheme


def test_local_misuse_is_value_error() -> None:
    with pytest.raises(ValueError):
        sign_auth(key("p256"), OCTETS, AuthMethod.RSA_SIG)
    with pytest.raises(ValueError):
        sign_auth(key("p384"), OCTETS, AuthMethod.ECDSA_SHA256_P256)
    with pytest.raises(ValueError):
        sign_auth(key("rsa"), OCTETS, AuthMethod.DIGITAL_SIGNATURE)
    with pytest.raises(ValueError):
        sign_auth(key("rsa"), OCTETS, AuthMethod.DIGITAL_SIGNATURE, ECDSA_SHA256)


# --- garbage never raises anything but AuthError --------------------------------------


def test_garbage_auth_data_only_raises_auth_error() -> None:
    rng = __import__("random").Random(7427)
    pubs = [key(k).public_key() for k in ("rsa", "p256", "p384", "p521", "ed25519", "ed448")]
    prefixes = [b"", b"\x0f" + RSA_PKCS1_SHA256.algorithm_identifier()]
    prefixes += [
        bytes([len(s.algorithm_identifier())]) + s.algorithm_identifier()
        for s in (RSA_PSS_SHA256, ECDSA_SHA256, ED25519)
    ]
    for _ in range(400):
        method = rng.choice([1, 2, 9, 10, 11, 14, 14, 14, 200])
        body = os.urandom(rng.randrange(0, 140))
        if rng.random() < 0.5:
            body = rng.choice(prefixes) + body
        if rng.random() < 0.3 and body:  # mutate the AlgorithmIdentifier area
            i = rng.randrange(len(body))
            body = body[:i] + bytes([rng.randrange(256)]) + body[i + 1 :]
        for pub in pubs:
            with contextlib.suppress(AuthError):
                verify_auth(pub, method, body, OCTETS)
    for _ in range(300):
        blob = os.urandom(rng.randrange(0, 80))
        for data in (blob, b"\x30" + bytes([len(blob)]) + blob):
            with contextlib.suppress(AuthError):
                decode_algorithm_identifier(data)
