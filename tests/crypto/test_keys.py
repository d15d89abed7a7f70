"""Key derivation (RFC 7296 §2.13-§2.18) and PSK AUTH (§2.15), checked against an
independent stdlib-hmac computation."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest

from pyipsec.crypto.keys import (
    KEY_PAD,
    ChildSuite,
    IkeSuite,
    child_keymat,
    configured_psk_auth,
    derive_child_keys,
    derive_ike_keys,
    derive_rekeyed_ike_keys,
    key_lengths,
    psk_auth,
    signed_octets,
    skeyseed,
    split_child_keymat,
)
from pyipsec.crypto.prf import get_prf
from pyipsec.ikev2.constants import DhId, EncrId, IntegId, PrfId

NI = bytes(range(32))
NR = bytes(range(100, 132))
SPI_I = bytes.fromhex("0102030405060708")
SPI_R = bytes.fromhex("a1a2a3a4a5a6a7a8")
SHARED = bytes(range(200, 256)) * 4


def _hm(digest: Any, key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, digest).digest()


def _ref_plus(digest: Any, key: bytes, seed: bytes, n: int) -> bytes:
    out, t, i = b"", b"", 1
    while len(out) < n:
        t = _hm(digest, key, t + seed + bytes([i]))
        out += t
        i += 1
    return out[:n]


IKE_SUITES = [
    # (suite, digest, (SK_d/SK_p len, SK_a len, SK_e len))
    (
        IkeSuite(EncrId.AES_CBC, 128, PrfId.HMAC_SHA2_256, IntegId.HMAC_SHA2_256_128, 14),
        hashlib.sha256,
        (32, 32, 16),
    ),
    (
        IkeSuite(EncrId.AES_CBC, 256, PrfId.HMAC_SHA1, IntegId.HMAC_SHA1_96, 19),
        hashlib.sha1,
        (20, 20, 32),
    ),
    (
        IkeSuite(EncrId.AES_GCM_16, 256, PrfId.HMAC_SHA2_384, None, DhId.CURVE25519),
        hashlib.sha384,
        (48, 0, 36),
    ),
    (
        IkeSuite(EncrId.CHACHA20_POLY1305, None, PrfId.HMAC_SHA2_512, None, DhId.CURVE448),
        hashlib.sha512,
        (64, 0, 36),
    ),
    (
        IkeSuite(EncrId.AES_GCM_16, 128, PrfId.HMAC_SHA2_256, IntegId.NONE, 31),
        hashlib.sha256,
        (32, 0, 20),
    ),
]


@pytest.mark.parametrize(("suite", "digest", "sizes"), IKE_SUITES)
def test_derive_ike_keys_known_answer(suite: IkeSuite, digest: Any, sizes: tuple[int, ...]) -> None:
    prf_len, a_len, e_len = sizes
    seed = _hm(digest, NI + NR, SHARED)
    order = [prf_len, a_len, a_len, e_len, e_len, prf_len, prf_len]
    stream = _ref_plus(digest, seed, NI + NR + SPI_I + SPI_R, sum(order))
    parts, pos = [], 0
    for n in order:
        parts.append(stream[pos : pos + n])
        pos += n
    keys = derive_ike_keys(suite, NI, NR, SHARED, SPI_I, SPI_R)
    got = [keys.sk_d, keys.sk_ai, keys.sk_ar, keys.sk_ei, keys.sk_er, keys.sk_pi, keys.sk_pr]
    assert got == parts
    assert skeyseed(suite.prf_id, NI, NR, SHARED) == seed
    assert suite.key_lengths() == (e_len, a_len)
    assert repr(keys) == "IkeKeys()"  # secrets never end up in logs


def test_derive_ike_keys_fixed_value() -> None:
    # Small hand-checkable case: HMAC-SHA256, AES-128-CBC, HMAC-SHA256-128.
    suite = IKE_SUITES[0][0]
    keys = derive_ike_keys(suite, b"ni", b"nr", b"gir", b"I" * 8, b"R" * 8)
    seed = hmac.new(b"ninr", b"gir", hashlib.sha256).digest()
    t1 = hmac.new(seed, b"ninr" + b"I" * 8 + b"R" * 8 + b"\x01", hashlib.sha256).digest()
    assert keys.sk_d == t1


def test_xcbc_skeyseed_uses_first_64_bits_of_each_nonce() -> None:
    prf = get_prf(PrfId.AES128_XCBC)
    seed = skeyseed(PrfId.AES128_XCBC, NI, NR, SHARED)
    assert seed == prf(NI[:8] + NR[:8], SHARED)
    assert seed != prf(NI + NR, SHARED)
    suite = IkeSuite(EncrId.AES_CBC, 128, PrfId.AES128_XCBC, IntegId.AES_XCBC_96, 14)
    keys = derive_ike_keys(suite, NI, NR, SHARED, SPI_I, SPI_R)
    # ... but prf+ still takes the full nonces.
    stream = prf.plus(seed, NI + NR + SPI_I + SPI_R, 16 * 7)
    assert keys.sk_d == stream[:16]
    assert keys.sk_pr == stream[-16:]
    assert len(keys.sk_ai) == 16 and len(keys.sk_ei) == 16


def test_rekeyed_ike_keys_known_answer() -> None:
    old_sk_d = b"\x42" * 32
    new = IkeSuite(EncrId.AES_GCM_16, 256, PrfId.HMAC_SHA2_512, None, 31)
    # SKEYSEED with the OLD PRF (HMAC-SHA256), prf+ with the NEW PRF (§2.18).
    seed = _hm(hashlib.sha256, old_sk_d, SHARED + NI + NR)
    stream = _ref_plus(hashlib.sha512, seed, NI + NR + SPI_I + SPI_R, 64 + 36 + 36 + 64 + 64)
    keys = derive_rekeyed_ike_keys(
        new, old_sk_d, SHARED, NI, NR, SPI_I, SPI_R, old_prf=PrfId.HMAC_SHA2_256
    )
    assert keys.sk_d == stream[:64]
    assert keys.sk_ai == keys.sk_ar == b""
    assert keys.sk_ei == stream[64:100]
    assert keys.sk_er == stream[100:136]
    assert keys.sk_pi == stream[136:200]
    assert keys.sk_pr == stream[200:264]
    # Default old PRF = the new suite's PRF.
    seed2 = _hm(hashlib.sha512, old_sk_d, SHARED + NI + NR)
    keys2 = derive_rekeyed_ike_keys(new, old_sk_d, SHARED, NI, NR, SPI_I, SPI_R)
    assert keys2.sk_d == _ref_plus(hashlib.sha512, seed2, NI + NR + SPI_I + SPI_R, 64)


def test_child_keymat_known_answer() -> None:
    sk_d = b"\x07" * 32
    assert child_keymat(PrfId.HMAC_SHA2_256, sk_d, NI, NR, 100) == _ref_plus(
        hashlib.sha256, sk_d, NI + NR, 100
    )
    assert child_keymat(get_prf(PrfId.HMAC_SHA2_256), sk_d, NI, NR, 100, SHARED) == _ref_plus(
        hashlib.sha256, sk_d, SHARED + NI + NR, 100
    )


def test_split_child_keymat_order() -> None:
    keymat = bytes(range(100))
    ck = split_child_keymat(keymat, 16, 32)
    assert ck.encr_i == keymat[0:16]
    assert ck.integ_i == keymat[16:48]
    assert ck.encr_r == keymat[48:64]
    assert ck.integ_r == keymat[64:96]
    with pytest.raises(ValueError):
        split_child_keymat(keymat[:95], 16, 32)


@pytest.mark.parametrize(
    ("suite", "enc", "integ"),
    [
        (ChildSuite(EncrId.AES_GCM_16, 256, None), 36, 0),
        (ChildSuite(EncrId.AES_GCM_16, 128, None, DhId.CURVE25519, True), 20, 0),
        (ChildSuite(EncrId.CHACHA20_POLY1305, None, None), 36, 0),
        (ChildSuite(EncrId.AES_CBC, 128, IntegId.HMAC_SHA2_256_128), 16, 32),
        (ChildSuite(EncrId.AES_CBC, 256, IntegId.HMAC_SHA2_512_256), 32, 64),
        (ChildSuite(EncrId.AES_CBC, 192, IntegId.HMAC_SHA1_96), 24, 20),
    ],
)
def test_child_suite_keys(suite: ChildSuite, enc: int, integ: int) -> None:
    assert suite.key_lengths() == (enc, integ)
    assert suite.keymat_length == 2 * (enc + integ)
    sk_d = b"\x09" * 48
    keys = derive_child_keys(suite, PrfId.HMAC_SHA2_384, sk_d, NI, NR, SHARED)
    stream = _ref_plus(hashlib.sha384, sk_d, SHARED + NI + NR, 2 * (enc + integ))
    assert keys.encr_i + keys.integ_i + keys.encr_r + keys.integ_r == stream
    assert (len(keys.encr_i), len(keys.integ_r)) == (enc, integ)


def test_key_lengths_helper() -> None:
    assert key_lengths(EncrId.AES_GCM_16, 128, None) == (20, 0)
    assert key_lengths(EncrId.AES_GCM_16, 128, IntegId.HMAC_SHA2_256_128) == (20, 0)
    assert key_lengths(EncrId.AES_CBC, 256, IntegId.HMAC_SHA2_384_192) == (32, 48)
    assert key_lengths(EncrId.AES_CBC, 128, IntegId.AES_XCBC_96) == (16, 16)
    with pytest.raises(ValueError):
        key_lengths(EncrId.AES_CBC, 64, IntegId.HMAC_SHA1_96)


def test_psk_auth_and_signed_octets() -> None:
    assert KEY_PAD == b"Key Pad for IKEv2" and len(KEY_PAD) == 17
    message = b"\x11" * 300
    nonce_r = b"\x22" * 32
    sk_pi = b"\x33" * 32
    id_body = b"\x02\x00\x00\x00" + b"alice.example"
    octets = signed_octets(message, nonce_r, PrfId.HMAC_SHA2_256, sk_pi, id_body)
    assert octets == message + nonce_r + _hm(hashlib.sha256, sk_pi, id_body)
    psk = b"correct horse battery staple"
    auth = psk_auth(PrfId.HMAC_SHA2_256, psk, octets)
    assert auth == _hm(hashlib.sha256, _hm(hashlib.sha256, psk, KEY_PAD), octets)
    assert auth != psk_auth(PrfId.HMAC_SHA2_256, psk + b"!", octets)
    # the configured-PSK form keeps prf(PSK, KEY_PAD): same values, twice, any PRF
    for _ in range(2):
        assert configured_psk_auth(PrfId.HMAC_SHA2_256, psk, octets) == auth
        assert configured_psk_auth(PrfId.HMAC_SHA2_256, psk + b"!", octets) != auth
    for prf in (PrfId.HMAC_SHA1, PrfId.HMAC_SHA2_512, PrfId.AES128_XCBC):
        assert configured_psk_auth(prf, psk, octets) == psk_auth(prf, psk, octets)
