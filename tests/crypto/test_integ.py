"""INTEG transforms (RFC 4868 §2.7.2, RFC 2404, RFC 3566)."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest

from pyipsec.crypto.integ import get_integ, supported_integs
from pyipsec.ikev2.constants import IntegId

from . import h, load_vectors

RFC4868 = load_vectors("rfc4868_hmac_sha2_ipsec.json")

_ICV_FIELDS = {
    "hmac_sha_256_128": IntegId.HMAC_SHA2_256_128,
    "hmac_sha_384_192": IntegId.HMAC_SHA2_384_192,
    "hmac_sha_512_256": IntegId.HMAC_SHA2_512_256,
}
_FULL_FIELD = {
    "hmac_sha_256_128": "prf_hmac_sha_256",
    "hmac_sha_384_192": "prf_hmac_sha_384",
    "hmac_sha_512_256": "prf_hmac_sha_512",
}


def _auth_cases() -> list[Any]:
    out = []
    for v in RFC4868["auth_vectors"]:
        fields = [f for f in _ICV_FIELDS if f in v]
        assert len(fields) == 1, v["test_case"]  # every AUTH vector has one ICV field
        out.append(pytest.param(v, fields[0], id=v["test_case"]))
    return out


@pytest.mark.parametrize(("vec", "field"), _auth_cases())
def test_rfc4868_auth_vectors(vec: dict[str, Any], field: str) -> None:
    integ = get_integ(_ICV_FIELDS[field])
    key, data, icv = h(vec["key"]), h(vec["data"]), h(vec[field])
    assert len(key) == integ.key_size
    assert len(icv) == integ.icv_size
    signer = integ.signer(key)
    assert signer.sign(data) == icv
    assert signer.sign(data) == icv  # the precomputed state is not consumed
    assert signer.verify(data, icv)
    assert signer.sign_parts([data[:3], data[3:]]) == icv
    bad = bytes([icv[0] ^ 0x80]) + icv[1:]
    assert not signer.verify(data, bad)
    assert not signer.verify(data, icv[:-1])
    assert not signer.verify(data + b"\x00", icv)
    # The ICV is the leftmost bits of the full PRF output given alongside.
    assert icv == h(vec[_FULL_FIELD[field]])[: integ.icv_size]


@pytest.mark.parametrize(
    ("integ_id", "digest", "key_size", "icv_size"),
    [
        (IntegId.HMAC_SHA1_96, hashlib.sha1, 20, 12),
        (IntegId.HMAC_SHA2_256_128, hashlib.sha256, 32, 16),
        (IntegId.HMAC_SHA2_384_192, hashlib.sha384, 48, 24),
        (IntegId.HMAC_SHA2_512_256, hashlib.sha512, 64, 32),
    ],
)
def test_hmac_integ_against_stdlib(
    integ_id: IntegId, digest: Any, key_size: int, icv_size: int
) -> None:
    integ = get_integ(integ_id)
    assert (integ.key_size, integ.icv_size) == (key_size, icv_size)
    key = bytes(range(key_size))
    signer = integ.signer(key)
    for data in (b"", b"abc", b"x" * 1000):
        want = hmac.new(key, data, digest).digest()[:icv_size]
        assert signer.sign(data) == want
        assert signer.verify(data, want)


def test_aes_xcbc_96() -> None:
    # RFC 3566 §4 Test Case #4: AES-XCBC-MAC-96 = 47f51b4564966215b8985c63
    integ = get_integ(IntegId.AES_XCBC_96)
    assert (integ.key_size, integ.icv_size) == (16, 12)
    signer = integ.signer(h("000102030405060708090a0b0c0d0e0f"))
    data = h("000102030405060708090a0b0c0d0e0f10111213")
    assert signer.sign(data) == h("47f51b4564966215b8985c63")
    assert signer.verify(data, h("47f51b4564966215b8985c63"))
    assert not signer.verify(data, h("47f51b4564966215b8985c64"))


@pytest.mark.parametrize("integ_id", list(supported_integs()))
def test_wrong_key_length_rejected(integ_id: IntegId) -> None:
    integ = get_integ(integ_id)
    with pytest.raises(ValueError):
        integ.signer(b"\x00" * (integ.key_size + 1))


@pytest.mark.parametrize("bad", [IntegId.NONE, IntegId.HMAC_MD5_96, 4242])
def test_unsupported_integ(bad: int) -> None:
    with pytest.raises(ValueError, match="unsupported INTEG"):
        get_integ(bad)
