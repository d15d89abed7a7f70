"""canonical_ipv4_octets agrees with ipaddress on every text it accepts, and accepts
every canonical IPv4 text."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyipsec.ipv4text import canonical_ipv4_octets


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_every_canonical_ipv4_text_is_recognised(value: int) -> None:
    addr = ipaddress.IPv4Address(value)
    assert canonical_ipv4_octets(str(addr)) == addr.packed


@given(st.text(alphabet="0123456789.:abcdef x\u0663", max_size=24))
def test_accepts_only_what_ipaddress_calls_that_canonical_address(text: str) -> None:
    got = canonical_ipv4_octets(text)
    if got is None:
        return
    addr = ipaddress.ip_address(text)
    assert addr.version == 4 and str(addr) == text and addr.packed == got


@pytest.mark.parametrize(
    "text",
    ["", "1.2.3", "1.2.3.4.5", "01.2.3.4", "1.2.3.256", "1.2.3.0004", " 1.2.3.4",
     "1.2.3.4 ", "1..3.4", "\u0661.2.3.4", "1.2.3.4" + "0" * 5000, "2001:db8::1", "+1.2.3.4"],
)
def test_refuses_non_canonical_text(text: str) -> None:
    assert canonical_ipv4_octets(text) is None
