"""PRFs and prf+ (RFC 7296 §2.13, RFC 4868 §2.7.1, RFC 4231, RFC 3566, RFC 4434)."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest

from pyipsec.crypto.prf import PRF_PLUS_MAX_BLOCKS, AesXcbcMac, get_prf, prf_plus, supported_prfs
from pyipsec.ikev2.constants import PrfId

from . import h, load_vectors

RFC4868 = load_vectors("rfc4868_hmac_sha2_ipsec.json")
RFC4231 = load_vectors("rfc4231_hmac_sha2.json")

_PRF_FIELDS = {
    "prf_hmac_sha_256": PrfId.HMAC_SHA2_256,
    "prf_hmac_sha_384": PrfId.HMAC_SHA2_384,
    "prf_hmac_sha_512": PrfId.HMAC_SHA2_512,
}
_HMAC_FIELDS = {
    "hmac_sha_256": PrfId.HMAC_SHA2_256,
    "hmac_sha_384": PrfId.HMAC_SHA2_384,
    "hmac_sha_512": PrfId.HMAC_SHA2_512,
}


def _cases(vectors: list[dict[str, Any]], fields: dict[str, PrfId]) -> list[Any]:
    return [
        pytest.param(v, name, pid, id=f"{v['test_case']}-{name}")
        for v in vectors
        for name, pid in fields.items()
        if name in v
    ]


@pytest.mark.parametrize(("vec", "field", "prf_id"), _cases(RFC4868["prf_vectors"], _PRF_FIELDS))
def test_rfc4868_prf_vectors(vec: dict[str, Any], field: str, prf_id: PrfId) -> None:
    assert get_prf(prf_id)(h(vec["key"]), h(vec["data"])) == h(vec[field])


@pytest.mark.parametrize(("vec", "field", "prf_id"), _cases(RFC4868["auth_vectors"], _PRF_FIELDS))
def test_rfc4868_auth_vectors_full_prf_output(
    vec: dict[str, Any], field: str, prf_id: PrfId
) -> None:
    assert get_prf(prf_id)(h(vec["key"]), h(vec["data"])) == h(vec[field])


@pytest.mark.parametrize(("vec", "field", "prf_id"), _cases(RFC4231["vectors"], _HMAC_FIELDS))
def test_rfc4231_vectors(vec: dict[str, Any], field: str, prf_id: PrfId) -> None:
    want = h(vec[field])
    got = get_prf(prf_id)(h(vec["key"]), h(vec["data"]))
    # Test Case 5 is published truncated to 128 bits: compare the prefix.
    assert got[: len(want)] == want
    if vec["test_case"] != 5:
        assert got == want


@pytest.mark.parametrize("vec", RFC4231["vectors"], ids=lambda v: f"case{v['test_case']}")
def test_rfc4231_sha224_entries(vec: dict[str, Any]) -> None:
    # HMAC-SHA-224 is no IKEv2 transform; the entries are still checked (stdlib)
    # so that every value of the copied file is verified.
    want = h(vec["hmac_sha_224"])
    got = hmac.new(h(vec["key"]), h(vec["data"]), hashlib.sha224).digest()
    assert got[: len(want)] == want


# RFC 3566 §4 (AES-XCBC-MAC-96 test cases, full 128-bit MAC) — not in tests/vectors
# because the RFC text is not in the shared corpus; values as printed in the RFC.
_KEY = "000102030405060708090a0b0c0d0e0f"
RFC3566 = [
    ("", "75f0251d528ac01c4573dfd584d79f29"),
    ("000102", "5b376580ae2f19afe7219ceef172756f"),
    ("000102030405060708090a0b0c0d0e0f", "d2a246fa349b68a79998a4394ff7a263"),
    ("000102030405060708090a0b0c0d0e0f10111213", "47f51b4564966215b8985c63055ed308"),
    (
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        "f54f0ec8d2b9f3d36807734bd5283fd4",
    ),
    (
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f2021",
        "becbb3bccdb518a30677d5481fb6b4d8",
    ),
]
# RFC 4434 §5 (AES-XCBC-PRF-128 with 16-, 10- and 18-octet keys).
RFC4434 = [
    ("000102030405060708090a0b0c0d0e0f", "47f51b4564966215b8985c63055ed308"),
    ("00010203040506070809", "0fa087af7d866e7653434e602fdde835"),
    ("000102030405060708090a0b0c0d0e0fedcb", "8cd3c93ae598a9803006ffb67c40e9e4"),
]


@pytest.mark.parametrize(("msg", "mac"), RFC3566)
def test_rfc3566_xcbc_mac(msg: str, mac: str) -> None:
    assert AesXcbcMac(h(_KEY)).mac(h(msg)) == h(mac)
    assert get_prf(PrfId.AES128_XCBC)(h(_KEY), h(msg)) == h(mac)


@pytest.mark.parametrize(("key", "out"), RFC4434)
def test_rfc4434_xcbc_prf_key_handling(key: str, out: str) -> None:
    msg = h("000102030405060708090a0b0c0d0e0f10111213")
    assert get_prf(PrfId.AES128_XCBC)(h(key), msg) == h(out)


def test_xcbc_mac_needs_128_bit_key() -> None:
    with pytest.raises(ValueError):
        AesXcbcMac(b"\x00" * 15)


def _ref_prf_plus(digest: Any, key: bytes, seed: bytes, length: int) -> bytes:
    out = b""
    t = b""
    n = 1
    while len(out) < length:
        t = hmac.new(key, t + seed + bytes([n]), digest).digest()
        out += t
        n += 1
    return out[:length]


@pytest.mark.parametrize(
    ("prf_id", "digest"),
    [
        (PrfId.HMAC_SHA1, hashlib.sha1),
        (PrfId.HMAC_SHA2_256, hashlib.sha256),
        (PrfId.HMAC_SHA2_384, hashlib.sha384),
        (PrfId.HMAC_SHA2_512, hashlib.sha512),
    ],
)
@pytest.mark.parametrize("length", [0, 1, 20, 32, 33, 100, 211])
def test_prf_plus_known_answer(prf_id: PrfId, digest: Any, length: int) -> None:
    prf = get_prf(prf_id)
    key, seed = b"K" * 7, b"seed material" * 3
    want = _ref_prf_plus(digest, key, seed, length)
    assert prf.plus(key, seed, length) == want
    assert prf_plus(prf, key, seed, length) == want  # the generic construction agrees


def test_prf_plus_fixed_value() -> None:
    # T1 = HMAC-SHA256(key, seed | 0x01), T2 = HMAC-SHA256(key, T1 | seed | 0x02)
    key, seed = b"key", b"seed"
    t1 = hmac.new(key, seed + b"\x01", hashlib.sha256).digest()
    t2 = hmac.new(key, t1 + seed + b"\x02", hashlib.sha256).digest()
    assert get_prf(PrfId.HMAC_SHA2_256).plus(key, seed, 40) == t1 + t2[:8]


def test_xcbc_prf_plus_matches_generic() -> None:
    prf = get_prf(PrfId.AES128_XCBC)
    for key in (b"k" * 10, b"k" * 16, b"k" * 40):
        assert prf.plus(key, b"seed", 100) == prf_plus(prf, key, b"seed", 100)
        assert prf.plus(key, b"seed", 16) == prf(key, b"seed\x01")


@pytest.mark.parametrize("prf_id", list(supported_prfs()))
def test_prf_plus_255_block_limit(prf_id: PrfId) -> None:
    prf = get_prf(prf_id)
    limit = PRF_PLUS_MAX_BLOCKS * prf.output_size
    assert len(prf.plus(b"k", b"s", limit)) == limit
    with pytest.raises(ValueError, match="255"):
        prf.plus(b"k", b"s", limit + 1)
    with pytest.raises(ValueError):
        prf.plus(b"k", b"s", -1)


@pytest.mark.parametrize(
    ("prf_id", "key_size", "out"),
    [
        (PrfId.HMAC_SHA1, 20, 20),
        (PrfId.HMAC_SHA2_256, 32, 32),
        (PrfId.HMAC_SHA2_384, 48, 48),
        (PrfId.HMAC_SHA2_512, 64, 64),
        (PrfId.AES128_XCBC, 16, 16),
    ],
)
def test_prf_sizes(prf_id: PrfId, key_size: int, out: int) -> None:
    prf = get_prf(prf_id)
    assert (prf.id, prf.key_size, prf.output_size) == (prf_id, key_size, out)


def test_hmac_sha1_prf() -> None:
    key, data = b"\x0b" * 20, b"Hi There"
    want = hmac.new(key, data, hashlib.sha1).digest()
    assert get_prf(PrfId.HMAC_SHA1)(key, data) == want


@pytest.mark.parametrize("bad", [PrfId.HMAC_MD5, PrfId.HMAC_TIGER, 9999])
def test_unsupported_prf(bad: int) -> None:
    with pytest.raises(ValueError, match="unsupported PRF"):
        get_prf(bad)
