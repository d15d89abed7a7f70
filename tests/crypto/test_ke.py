"""Key exchange methods (RFC 3526, RFC 5903 §8, RFC 7748 §5.2/§6, RFC 8031 App. A)."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyipsec.crypto.ke import (
    MODP_PRIMES,
    KeyExchange,
    UnsupportedKeyExchange,
    is_supported,
    new_key_exchange,
    public_length,
    supported_groups,
)
from pyipsec.ikev2.constants import DhId, NotifyType
from pyipsec.ikev2.errors import KeyExchangeError, ProtocolError

from . import h, load_vectors

RFC5903 = load_vectors("rfc5903_ecp_groups.json")
RFC7748 = load_vectors("rfc7748_x25519_x448.json")
RFC8031 = load_vectors("rfc8031_curve25519_ikev2.json")

_X_GROUP = {"X25519": DhId.CURVE25519, "X448": DhId.CURVE448}
SLOW = os.environ.get("PYIPSEC_SLOW_TESTS") == "1"


# --- RFC 5903 ECP groups -----------------------------------------------------------


@pytest.mark.parametrize("vec", RFC5903["vectors"], ids=lambda v: f"group{v['group']}")
def test_rfc5903_ecp(vec: dict[str, Any]) -> None:
    group = vec["group"]
    ke_i = new_key_exchange(group, private=h(vec["i"]))
    ke_r = new_key_exchange(group, private=h(vec["r"]))
    assert ke_i.group == group
    assert ke_i.public == h(vec["gix"]) + h(vec["giy"])
    assert ke_r.public == h(vec["grx"]) + h(vec["gry"])
    # The KE payload: generic header, group number, RESERVED, x|y (RFC 5903 §7).
    for payload, ke in ((vec["kei_payload"], ke_i), (vec["ker_payload"], ke_r)):
        raw = h(payload)
        assert raw[4:6] == group.to_bytes(2, "big") and raw[6:8] == b"\x00\x00"
        assert raw[8:] == ke.public
        assert int.from_bytes(raw[2:4], "big") == len(raw)
    assert len(ke_i.public) == public_length(group)
    shared = h(vec["shared_secret"])
    assert shared == h(vec["girx"])
    assert ke_i.shared_secret(ke_r.public) == shared
    assert ke_r.shared_secret(ke_i.public) == shared
    assert ke_r.respond(ke_i.public) == (ke_r.public, shared)


# --- RFC 7748 X25519 / X448 -------------------------------------------------------


@pytest.mark.parametrize(
    "vec", RFC7748["function_vectors"], ids=lambda v: f"{v['function']}-{v['output'][:8]}"
)
def test_rfc7748_function_vectors(vec: dict[str, Any]) -> None:
    ke = new_key_exchange(_X_GROUP[vec["function"]], private=h(vec["scalar"]))
    assert ke.shared_secret(h(vec["u"])) == h(vec["output"])


def _iterated_cases() -> list[Any]:
    out = []
    for fn in ("X25519", "X448"):
        for entry in RFC7748["iterated"][fn]:
            marks = []
            if entry["iterations"] > 1000 and not SLOW:
                marks.append(pytest.mark.skip(reason="set PYIPSEC_SLOW_TESTS=1 (minutes)"))
            out.append(pytest.param(fn, entry, marks=marks, id=f"{fn}-{entry['iterations']}"))
    return out


@pytest.mark.parametrize(("fn", "entry"), _iterated_cases())
def test_rfc7748_iterated(fn: str, entry: dict[str, Any]) -> None:
    k = u = h(RFC7748["iterated"]["initial_k_and_u"][fn])
    group = _X_GROUP[fn]
    for _ in range(entry["iterations"]):
        k, u = new_key_exchange(group, private=k).shared_secret(u), k
    assert k == h(entry["k"])


@pytest.mark.parametrize("vec", RFC7748["diffie_hellman"], ids=lambda v: v["function"])
def test_rfc7748_diffie_hellman(vec: dict[str, Any]) -> None:
    group = _X_GROUP[vec["function"]]
    alice = new_key_exchange(group, private=h(vec["alice_private"]))
    bob = new_key_exchange(group, private=h(vec["bob_private"]))
    assert alice.public == h(vec["alice_public"])
    assert bob.public == h(vec["bob_public"])
    assert alice.shared_secret(bob.public) == h(vec["shared_secret"])
    assert bob.respond(alice.public) == (bob.public, h(vec["shared_secret"]))


@pytest.mark.parametrize("vec", RFC8031["vectors"], ids=lambda v: f"group{v['dh_group']}")
def test_rfc8031_curve25519(vec: dict[str, Any]) -> None:
    group = vec["dh_group"]
    # The random octets are used as-is; X25519 clamps them (RFC 8031 §2).
    ke_i = new_key_exchange(group, private=h(vec["random_i"]))
    ke_r = new_key_exchange(group, private=h(vec["random_r"]))
    assert new_key_exchange(group, private=h(vec["fixed_i"])).public == h(vec["pub_i"])
    assert h(vec["d_i"]) == h(vec["fixed_i"])[::-1]
    assert h(vec["d_r"]) == h(vec["fixed_r"])[::-1]
    assert ke_i.public == h(vec["pub_i"])
    assert ke_r.public == h(vec["pub_r"])
    assert ke_i.shared_secret(ke_r.public) == h(vec["shared_secret"])
    assert ke_r.shared_secret(ke_i.public) == h(vec["shared_secret"])


# --- RFC 3526 MODP -----------------------------------------------------------------


def _pi_times_2_pow(bits: int) -> int:
    """floor(pi * 2**bits) with Machin's formula in integer arithmetic (test-only)."""
    guard = 64
    one = 1 << (bits + guard)

    def arctan_inv(x: int) -> int:
        total = term = one // x
        x2, n, sign = x * x, 3, -1
        while term:
            term //= x2
            total += sign * (term // n)
            n, sign = n + 2, -sign
        return total

    return (4 * (4 * arctan_inv(5) - arctan_inv(239))) >> guard


@pytest.mark.parametrize(
    ("group", "n", "c"),
    [
        (DhId.MODP_2048, 2048, 124476),
        (DhId.MODP_3072, 3072, 1690314),
        (DhId.MODP_4096, 4096, 240904),
    ],
)
def test_rfc3526_primes_match_their_definition(group: int, n: int, c: int) -> None:
    # RFC 3526: p = 2^N - 2^(N-64) - 1 + 2^64 * ( [2^(N-130) pi] + c )
    p = 2**n - 2 ** (n - 64) - 1 + 2**64 * (_pi_times_2_pow(n - 130) + c)
    assert MODP_PRIMES[group] == p


@pytest.mark.parametrize("group", [DhId.MODP_2048, DhId.MODP_3072, DhId.MODP_4096])
def test_modp_fixed_private_known_answer(group: int) -> None:
    p = MODP_PRIMES[group]
    size = (p.bit_length() + 7) // 8
    x_i, x_r = 0x1234567890ABCDEF << 200 | 5, 0xFEDCBA0987654321 << 190 | 7
    ke_i = new_key_exchange(group, private=x_i.to_bytes(40, "big"))
    ke_r = new_key_exchange(group, private=x_r.to_bytes(40, "big"))
    assert ke_i.public == pow(2, x_i, p).to_bytes(size, "big")
    assert len(ke_i.public) == size == public_length(group)
    want = pow(pow(2, x_r, p), x_i, p).to_bytes(size, "big")
    assert ke_i.shared_secret(ke_r.public) == want
    assert ke_r.shared_secret(ke_i.public) == want


def test_modp_shared_secret_is_left_padded() -> None:
    group = DhId.MODP_2048
    p = MODP_PRIMES[group]
    ke = new_key_exchange(group, private=(3).to_bytes(1, "big"))
    # Peer value 2^k with small k: (2^k)^3 mod p = 2^(3k) is short, must be padded.
    y = (1 << 40).to_bytes(256, "big")
    secret = ke.shared_secret(y)
    assert len(secret) == 256
    assert int.from_bytes(secret, "big") == pow(1 << 40, 3, p)
    assert secret[:200] == b"\x00" * 200


@pytest.mark.parametrize("group", [DhId.MODP_2048, DhId.MODP_3072, DhId.MODP_4096])
def test_modp_random_agreement(group: int) -> None:
    a, b = new_key_exchange(group), new_key_exchange(group)
    assert a.public != b.public
    assert a.shared_secret(b.public) == b.shared_secret(a.public)


@pytest.mark.parametrize("group", list(supported_groups()))
def test_random_agreement_and_respond(group: int) -> None:
    a, b = new_key_exchange(group), new_key_exchange(group)
    assert isinstance(a, KeyExchange)
    assert is_supported(group)
    assert len(a.public) == public_length(group)
    reply, secret = b.respond(a.public)
    assert reply == b.public
    assert a.shared_secret(reply) == secret


# --- validation of peer values -------------------------------------------------------


def _assert_ke_error(ke: KeyExchange, peer: bytes) -> None:
    with pytest.raises(KeyExchangeError) as err:
        ke.shared_secret(peer)
    assert isinstance(err.value, ProtocolError)
    assert err.value.notify == NotifyType.INVALID_SYNTAX


@pytest.mark.parametrize("group", list(supported_groups()))
def test_wrong_length_rejected(group: int) -> None:
    ke = new_key_exchange(group)
    n = public_length(group)
    for bad in (b"", b"\x05" * (n - 1), b"\x05" * (n + 1), b"\x00" + ke.public):
        _assert_ke_error(ke, bad)
    with pytest.raises(KeyExchangeError):
        ke.respond(b"\x05" * (n - 1))


@pytest.mark.parametrize("group", [DhId.MODP_2048, DhId.MODP_3072, DhId.MODP_4096])
def test_modp_out_of_range_rejected(group: int) -> None:
    ke = new_key_exchange(group)
    p = MODP_PRIMES[group]
    n = public_length(group)
    for y in (0, 1, p - 1, p, p + 1, 2 ** (8 * n) - 1):
        _assert_ke_error(ke, y.to_bytes(n, "big"))
        with pytest.raises(KeyExchangeError, match="out of range"):  # our own check (§3.4)
            ke.shared_secret(y.to_bytes(n, "big"))
    assert len(ke.shared_secret((2).to_bytes(n, "big"))) == n  # 2 is in range
    assert len(ke.shared_secret((p - 2).to_bytes(n, "big"))) == n


@pytest.mark.parametrize("vec", RFC5903["vectors"], ids=lambda v: f"group{v['group']}")
def test_ecp_invalid_points_rejected(vec: dict[str, Any]) -> None:
    group = vec["group"]
    ke = new_key_exchange(group)
    good = h(vec["grx"]) + h(vec["gry"])
    coord = len(good) // 2
    off_curve = good[:-1] + bytes([good[-1] ^ 1])
    _assert_ke_error(ke, off_curve)
    _assert_ke_error(ke, b"\x00" * len(good))  # the point at infinity is not x|y
    _assert_ke_error(ke, b"\xff" * len(good))  # coordinates >= field prime
    _assert_ke_error(ke, h(vec["grx"]) + b"\x00" * coord)
    assert ke.shared_secret(good)  # the real point is fine


# Small-order u-coordinates give an all-zero X25519/X448 output (RFC 7748 §6, RFC 8031 §2).
_LOW_ORDER = {
    DhId.CURVE25519: [
        b"\x00" * 32,
        b"\x01" + b"\x00" * 31,
        bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    ],
    DhId.CURVE448: [b"\x00" * 56, b"\x01" + b"\x00" * 55],
}


@pytest.mark.parametrize("group", [DhId.CURVE25519, DhId.CURVE448])
def test_montgomery_all_zero_result_rejected(group: int) -> None:
    ke = new_key_exchange(group)
    for peer in _LOW_ORDER[group]:
        _assert_ke_error(ke, peer)


_CACHED: dict[int, KeyExchange] = {}


@settings(max_examples=60, deadline=None)
@given(data=st.data(), group=st.sampled_from(list(supported_groups())))
def test_arbitrary_peer_bytes_never_raise_other_errors(data: st.DataObject, group: int) -> None:
    ke = _CACHED.setdefault(group, new_key_exchange(group))
    n = public_length(group)
    peer = data.draw(st.one_of(st.binary(min_size=n, max_size=n), st.binary(max_size=n + 2)))
    try:
        secret = ke.shared_secret(peer)
    except KeyExchangeError:
        return
    assert len(secret) == {DhId.ECP_256: 32, DhId.ECP_384: 48, DhId.ECP_521: 66}.get(group, n)


# --- construction errors ---------------------------------------------------------------


@pytest.mark.parametrize("group", [0, DhId.MODP_1024, DhId.MODP_8192, DhId.ML_KEM_768, 4444])
def test_unsupported_group(group: int) -> None:
    assert not is_supported(group)
    with pytest.raises(UnsupportedKeyExchange) as err:
        new_key_exchange(group)
    assert isinstance(err.value, ValueError)
    assert str(group) in str(err.value)
    with pytest.raises(UnsupportedKeyExchange):
        public_length(group)


@pytest.mark.parametrize(
    ("group", "private"),
    [
        (DhId.CURVE25519, b"\x01" * 31),
        (DhId.CURVE448, b"\x01" * 32),
        (DhId.MODP_2048, b"\x01"),
        (DhId.MODP_2048, b"\x00"),
        (DhId.ECP_256, b"\x00" * 32),
        (DhId.ECP_256, b"\xff" * 32),
    ],
)
def test_invalid_private_value(group: int, private: bytes) -> None:
    with pytest.raises(ValueError):
        new_key_exchange(group, private=private)
