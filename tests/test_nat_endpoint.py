"""Log formatting of endpoints: IPv6 in brackets (RFC 5952 §6)."""

from __future__ import annotations

from ipaddress import ip_address

from pyipsec.nat import format_endpoint


def test_format_endpoint() -> None:
    assert format_endpoint(("192.0.2.1", 500)) == "192.0.2.1:500"
    assert format_endpoint(("2001:db8::1", 4500)) == "[2001:db8::1]:4500"
    assert format_endpoint((ip_address("2001:db8::2"), 0)) == "[2001:db8::2]:0"
    assert format_endpoint(None) == "-"
