"""SK payload protection (RFC 7296 §3.14, RFC 3602, RFC 5282, RFC 7634 §3)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pyipsec.crypto.encr import (
    AeadProtector,
    CbcProtector,
    SkProtector,
    encr_key_size,
    is_aead,
    make_sk_protector,
)
from pyipsec.crypto.integ import get_integ
from pyipsec.ikev2.constants import EncrId, IntegId
from pyipsec.ikev2.errors import IntegrityError, ProtocolError

from . import h, load_vectors

RFC3602 = load_vectors("rfc3602_aes_cbc.json")
RFC7634 = load_vectors("rfc7634_chacha20poly1305.json")


def fixed_iv(iv: bytes) -> Callable[[int], bytes]:
    def source(n: int) -> bytes:
        assert n == len(iv)
        return iv

    return source


# --- known answers -------------------------------------------------------------


def test_rfc7634_appendix_b_ikev2_encrypted_payload() -> None:
    v = RFC7634["ikev2_example"]
    keymat = h(v["key"]) + h(v["salt"])
    assert h(v["nonce"]) == h(v["salt"]) + h(v["iv"])
    p = make_sk_protector(
        EncrId.CHACHA20_POLY1305, None, None, keymat, b"", iv_source=fixed_iv(h(v["iv"]))
    )
    msg = h(v["ike_message"])
    aad = h(v["aad"])
    assert msg[:32] == aad  # IKE header + SK generic header (lengths final)
    notify = h(v["notify_payload"])
    assert h(v["plaintext"]) == notify + b"\x00"  # no padding, pad length 0
    body = p.seal(aad, notify)
    assert body == h(v["iv"]) + h(v["ciphertext"]) + h(v["tag"])
    assert h(v["encrypted_payload"]) == h(v["encrypted_payload"])[:4] + body
    assert msg == aad + body
    assert p.sealed_length(len(notify)) == len(body)
    assert p.open(aad, msg[32:]) == notify
    assert h(v["poly1305_input"]).startswith(aad + h(v["ciphertext"]))


def test_rfc7634_appendix_a_esp_aead_layer() -> None:
    # The ESP example uses the same AEAD (nonce salt|IV, AAD SPI|seq).  Opened as an
    # SK body, the protector strips "pad length + 1" octets from the decrypted
    # ESP trailer, which is a deterministic known answer for the AEAD layer.
    v = RFC7634["esp_example"]
    keymat = h(v["keymat"])
    assert keymat == h(v["key"]) + h(v["salt"])
    assert h(v["nonce"]) == h(v["salt"]) + h(v["iv"])
    p = make_sk_protector(EncrId.CHACHA20_POLY1305, None, None, keymat, b"")
    pwp = h(v["plaintext_with_padding"])
    assert pwp.startswith(h(v["source_packet"]))
    body = h(v["iv"]) + h(v["ciphertext"]) + h(v["tag"])
    assert h(v["esp_packet"]).endswith(body)
    assert h(v["aad"]) == h(v["spi"]) + v["sequence_number"].to_bytes(4, "big")
    assert p.open(h(v["aad"]), body) == pwp[: len(pwp) - pwp[-1] - 1]
    with pytest.raises(IntegrityError):
        p.open(h(v["aad"])[:-1] + b"\x06", body)


@pytest.mark.parametrize("vec", RFC3602["cbc_vectors"], ids=lambda v: f"case{v['case']}")
def test_rfc3602_cbc_vectors(vec: dict[str, Any]) -> None:
    key, iv, pt, ct = h(vec["key"]), h(vec["iv"]), h(vec["plaintext"]), h(vec["ciphertext"])
    sk_a = b"\x11" * 32
    p = make_sk_protector(
        EncrId.AES_CBC, 128, IntegId.HMAC_SHA2_256_128, key, sk_a, iv_source=fixed_iv(iv)
    )
    body = p.seal(b"AAD", pt)
    # CBC is prefix-preserving: the block-aligned plaintext encrypts to the RFC
    # ciphertext, followed by one block of padding and the ICV.
    assert body[:16] == iv
    assert body[16 : 16 + len(ct)] == ct
    assert len(body) == 16 + len(ct) + 16 + 16
    assert p.open(b"AAD", body) == pt


@pytest.mark.parametrize("vec", RFC3602["esp_vectors"], ids=lambda v: f"case{v['case']}")
def test_rfc3602_esp_vectors(vec: dict[str, Any]) -> None:
    pre = h(vec["pre_encryption_data"])
    inner = h(vec["original_payload"])
    if vec["mode"] == "tunnel":
        inner = h(vec["original_ip_header"]) + inner
    trailer = h(vec["padding"]) + h(vec["pad_length"]) + h(vec["next_header"])
    assert pre == inner + trailer
    p = make_sk_protector(
        EncrId.AES_CBC,
        128,
        IntegId.HMAC_SHA1_96,
        h(vec["key"]),
        b"\x22" * 20,
        iv_source=fixed_iv(h(vec["iv"])),
    )
    body = p.seal(b"", pre)
    enc = h(vec["encrypted_data"])
    assert body[16 : 16 + len(enc)] == enc
    assert h(vec["esp_packet"]).endswith(h(vec["esp_header"]) + h(vec["iv"]) + enc)
    assert p.open(b"", body) == pre


# --- suites ----------------------------------------------------------------------

SUITES: list[tuple[int, int | None, int | None]] = [
    *[
        (EncrId.AES_CBC, bits, integ)
        for bits in (128, 192, 256)
        for integ in (
            IntegId.HMAC_SHA1_96,
            IntegId.AES_XCBC_96,
            IntegId.HMAC_SHA2_256_128,
            IntegId.HMAC_SHA2_384_192,
            IntegId.HMAC_SHA2_512_256,
        )
    ],
    *[
        (e, bits, None)
        for e in (EncrId.AES_GCM_16, EncrId.AES_GCM_12, EncrId.AES_GCM_8)
        for bits in (128, 192, 256)
    ],
    (EncrId.CHACHA20_POLY1305, None, None),
    (EncrId.CHACHA20_POLY1305, 256, IntegId.NONE),
]


def _suite_id(s: tuple[int, int | None, int | None]) -> str:
    return f"{EncrId(s[0]).name}-{s[1]}-{'none' if s[2] is None else IntegId(s[2]).name}"


def _make(suite: tuple[int, int | None, int | None]) -> SkProtector:
    encr_id, bits, integ_id = suite
    sk_e = os.urandom(encr_key_size(encr_id, bits))
    sk_a = b"" if is_aead(encr_id) else os.urandom(get_integ(integ_id or 0).key_size)
    return make_sk_protector(encr_id, bits, integ_id, sk_e, sk_a)


AAD = bytes(range(28)) + b"\x29\x00\x00\x50"


@pytest.mark.parametrize("suite", SUITES, ids=_suite_id)
def test_round_trip_and_lengths(suite: tuple[int, int | None, int | None]) -> None:
    p = _make(suite)
    # the protocol's members (SkProtector is a static type: no isinstance when compiled)
    for member in ("iv_size", "icv_size", "block_size", "seal", "open", "sealed_length"):
        assert hasattr(p, member)
    aead = is_aead(suite[0])
    assert p.iv_size == (8 if aead else 16)
    for n in range(0, 70):
        pt = os.urandom(n)
        body = p.seal(AAD, pt)
        assert len(body) == p.sealed_length(n)
        if not aead:
            assert (len(body) - p.iv_size - p.icv_size) % 16 == 0
        assert p.open(AAD, body) == pt


@pytest.mark.parametrize("suite", SUITES, ids=_suite_id)
def test_any_bit_flip_is_detected(suite: tuple[int, int | None, int | None]) -> None:
    p = _make(suite)
    pt = b"payload chain" * 3
    body = p.seal(AAD, pt)
    for i in range(len(AAD)):
        bad = bytearray(AAD)
        bad[i] ^= 1 << (i % 8)
        with pytest.raises(IntegrityError):
            p.open(bytes(bad), body)
    for i in range(len(body)):
        bad = bytearray(body)
        bad[i] ^= 1 << (i % 8)
        with pytest.raises(IntegrityError):
            p.open(AAD, bytes(bad))


@pytest.mark.parametrize("suite", SUITES, ids=_suite_id)
def test_short_or_truncated_body(suite: tuple[int, int | None, int | None]) -> None:
    p = _make(suite)
    body = p.seal(AAD, b"x" * 20)
    for cut in range(len(body)):
        with pytest.raises(IntegrityError) as err:
            p.open(AAD, body[:cut])
        assert isinstance(err.value, ProtocolError)
    with pytest.raises(IntegrityError):
        p.open(AAD, body + b"\x00")


def _cbc_raw(key: bytes, iv: bytes, padded: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return enc.update(padded) + enc.finalize()


def test_cbc_accepts_any_padding_and_rejects_bad_pad_length() -> None:
    key, sk_a = os.urandom(16), os.urandom(32)
    p = make_sk_protector(EncrId.AES_CBC, 128, IntegId.HMAC_SHA2_256_128, key, sk_a)
    signer = get_integ(IntegId.HMAC_SHA2_256_128).signer(sk_a)
    iv = os.urandom(16)
    # 5 payload octets + 26 octets of (non-minimal) padding + pad length = 32
    ct = _cbc_raw(key, iv, b"hello" + b"\xaa" * 26 + bytes([26]))
    assert p.open(AAD, iv + ct + signer.sign(AAD + iv + ct)) == b"hello"
    # pad length 32 does not fit into 32 octets of plaintext (needs 33)
    ct = _cbc_raw(key, iv, b"\x00" * 31 + bytes([32]))
    with pytest.raises(IntegrityError):
        p.open(AAD, iv + ct + signer.sign(AAD + iv + ct))
    # pad length 31 consumes everything: empty payload chain is fine
    ct = _cbc_raw(key, iv, b"\x00" * 31 + bytes([31]))
    assert p.open(AAD, iv + ct + signer.sign(AAD + iv + ct)) == b""


def test_cbc_checks_icv_before_decrypting() -> None:
    key, sk_a = os.urandom(32), os.urandom(20)
    p = make_sk_protector(EncrId.AES_CBC, 256, IntegId.HMAC_SHA1_96, key, sk_a)
    body = bytearray(p.seal(AAD, b"data"))
    body[-1] ^= 1
    assert isinstance(p, CbcProtector)
    with pytest.raises(IntegrityError, match="integrity"):
        p.open(AAD, bytes(body))


@pytest.mark.parametrize(("encr_id", "icv"), [(EncrId.AES_GCM_16, 16), (EncrId.AES_GCM_8, 8)])
def test_gcm_pad_length_checked(encr_id: int, icv: int) -> None:
    key, salt, iv = os.urandom(16), os.urandom(4), os.urandom(8)
    p = make_sk_protector(encr_id, 128, None, key + salt, b"")
    assert p.icv_size == icv
    # Authentic plaintext whose pad length (200) exceeds its size.
    sealed = AESGCM(key).encrypt(salt + iv, b"abc" + bytes([200]), AAD)
    body = iv + sealed[: len(sealed) - 16 + icv]
    with pytest.raises(IntegrityError, match="pad length"):
        p.open(AAD, body)
    # Authentic plaintext with 4 octets of padding is accepted.
    sealed = AESGCM(key).encrypt(salt + iv, b"abc" + b"\x00" * 4 + bytes([4]), AAD)
    assert p.open(AAD, iv + sealed[: len(sealed) - 16 + icv]) == b"abc"


def test_gcm_known_answer_against_cryptography() -> None:
    key, salt, iv = bytes(range(32)), b"SALT", b"\x00\x01\x02\x03\x04\x05\x06\x07"
    p = make_sk_protector(EncrId.AES_GCM_16, 256, None, key + salt, b"", iv_source=fixed_iv(iv))
    body = p.seal(AAD, b"inner payloads")
    assert body == iv + AESGCM(key).encrypt(salt + iv, b"inner payloads\x00", AAD)
    p12 = make_sk_protector(EncrId.AES_GCM_12, 256, None, key + salt, b"", iv_source=fixed_iv(iv))
    assert p12.seal(AAD, b"inner payloads") == body[:-4]


def test_aead_default_iv_is_a_unique_counter() -> None:
    p = make_sk_protector(EncrId.AES_GCM_16, 128, None, os.urandom(20), b"")
    assert isinstance(p, AeadProtector)
    ivs = [int.from_bytes(p.seal(b"", b"x")[:8], "big") for _ in range(50)]
    assert len(set(ivs)) == 50
    assert all((b - a) % 2**64 == 1 for a, b in itertools.pairwise(ivs))


def test_cbc_default_iv_is_random() -> None:
    p = _make((EncrId.AES_CBC, 128, IntegId.HMAC_SHA2_256_128))
    ivs = {p.seal(b"", b"x")[:16] for _ in range(20)}
    assert len(ivs) == 20


def test_iv_source_of_wrong_size_rejected() -> None:
    p = make_sk_protector(
        EncrId.AES_GCM_16, 128, None, os.urandom(20), b"", iv_source=lambda n: b"\x00" * (n + 1)
    )
    with pytest.raises(ValueError):
        p.seal(b"", b"x")


@pytest.mark.parametrize(
    ("encr_id", "bits", "expected"),
    [
        (EncrId.AES_CBC, 128, 16),
        (EncrId.AES_CBC, 256, 32),
        (EncrId.AES_GCM_16, 128, 20),
        (EncrId.AES_GCM_16, 192, 28),
        (EncrId.AES_GCM_16, 256, 36),
        (EncrId.CHACHA20_POLY1305, None, 36),
    ],
)
def test_encr_key_size(encr_id: int, bits: int | None, expected: int) -> None:
    assert encr_key_size(encr_id, bits) == expected


@pytest.mark.parametrize(
    "args",
    [
        (EncrId.AES_CBC, 128, IntegId.HMAC_SHA2_256_128, b"\x00" * 15, b"\x00" * 32),
        (EncrId.AES_CBC, 128, IntegId.HMAC_SHA2_256_128, b"\x00" * 16, b"\x00" * 31),
        (EncrId.AES_CBC, 128, None, b"\x00" * 16, b""),
        (EncrId.AES_CBC, 100, IntegId.HMAC_SHA2_256_128, b"\x00" * 16, b"\x00" * 32),
        (EncrId.AES_CBC, None, IntegId.HMAC_SHA2_256_128, b"\x00" * 16, b"\x00" * 32),
        (EncrId.AES_GCM_16, 128, None, b"\x00" * 16, b""),
        (EncrId.AES_GCM_16, 128, IntegId.HMAC_SHA2_256_128, b"\x00" * 20, b"\x00" * 32),
        (EncrId.AES_GCM_16, 128, None, b"\x00" * 20, b"\x00"),
        (EncrId.CHACHA20_POLY1305, 128, None, b"\x00" * 36, b""),
        (EncrId.TRIPLE_DES, None, IntegId.HMAC_SHA1_96, b"\x00" * 24, b"\x00" * 20),
    ],
)
def test_make_sk_protector_rejects_bad_parameters(args: Any) -> None:
    with pytest.raises(ValueError):
        make_sk_protector(*args)
