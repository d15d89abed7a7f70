"""canonical_ipv4_octets agrees with ipaddress on every text it accepts, and accepts
every canonical IPv4 text."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyipsec.ipv4text import canonical_ipv4_octets


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_every_canonical_ipv4_text_is_recognised(value: int) -> None:
    addr = ipaddress.IPv4Address(value)
    assert canonical_ipv4_octets(str(addr)) == addr.packed


def _canonical(text: str) -> bytes | None:
    """What ipaddress says: the packed address when ``text`` is its canonical IPv4 form."""
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    return addr.packed if addr.version == 4 and str(addr) == text else None


# near-quads: four parts of digits (leading zeros, large numbers, a non-ASCII digit),
# sometimes with a stray character, so that both answers come up often
_PART = (
    st.integers(0, 300).map(str)
    | st.integers(0, 99).map(lambda n: f"0{n}")
    | st.text(alphabet="0123456789\u0663", min_size=0, max_size=4)
)
_NEAR_QUAD = st.lists(_PART, min_size=3, max_size=5).map(".".join) | st.builds(
    lambda q, extra: q + extra, st.lists(_PART, min_size=4, max_size=4).map(".".join),
    st.sampled_from(["", " ", ":", "x"]),
)


@settings(max_examples=500)
@given(_NEAR_QUAD)
def test_agrees_with_ipaddress(text: str) -> None:
    assert canonical_ipv4_octets(text) == _canonical(text)


@pytest.mark.parametrize(
    "text",
    ["", "1.2.3", "1.2.3.4.5", "01.2.3.4", "1.2.3.256", "1.2.3.0004", " 1.2.3.4",
     "1.2.3.4 ", "1..3.4", "\u0661.2.3.4", "1.2.3.4" + "0" * 5000, "2001:db8::1", "+1.2.3.4"],
)
def test_refuses_non_canonical_text(text: str) -> None:
    assert canonical_ipv4_octets(text) is None
