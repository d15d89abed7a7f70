"""Inner-packet helpers: tunnel next header, selectors, transport-mode split/rebuild."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from pyipsec.esp import EspInbound, EspOutbound, PacketError
from pyipsec.esp.packet import (
    build_ip_packet,
    inner_next_header,
    ipv4_checksum,
    parse_ip_selectors,
    transport_decapsulate,
    transport_encapsulate,
)
from pyipsec.ikev2.constants import EncrId, IntegId

A4 = ipaddress.IPv4Address("192.0.2.1").packed
B4 = ipaddress.IPv4Address("198.51.100.7").packed
A6 = ipaddress.IPv6Address("2001:db8::1").packed
B6 = ipaddress.IPv6Address("2001:db8::2").packed


def v4(proto: int, payload: bytes, *, frag: int = 0, options: bytes = b"") -> bytes:
    ihl = (20 + len(options)) // 4
    total = 20 + len(options) + len(payload)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, total, 0x1234, frag, 64, proto, 0, A4, B4)
    hdr += options
    hdr = hdr[:10] + ipv4_checksum(hdr).to_bytes(2, "big") + hdr[12:]
    return hdr + payload


def v6(nh: int, payload: bytes) -> bytes:
    return struct.pack("!IHBB16s16s", 0x60000000, len(payload), nh, 64, A6, B6) + payload


def ext(nh: int, length8: int = 0) -> bytes:
    """Generic IPv6 extension header of (length8 + 1) * 8 bytes."""
    return bytes([nh, length8]) + bytes(6 + 8 * length8)


UDP = struct.pack("!HHHH", 5000, 53, 8, 0)
TCP = struct.pack("!HH", 40000, 443) + bytes(16)


def test_ipv4_checksum_known_header() -> None:
    # RFC 3602 case 5 post-encryption header, checksum f9a5
    hdr = bytes.fromhex("4500007c08f200004032f9a5c0a87b03c0a87b64")
    assert ipv4_checksum(hdr[:10] + b"\0\0" + hdr[12:]) == 0xF9A5
    assert ipv4_checksum(hdr) == 0  # a correct header sums to 0xffff


def test_inner_next_header() -> None:
    assert inner_next_header(v4(17, UDP)) == 4
    assert inner_next_header(v6(17, UDP)) == 41
    with pytest.raises(PacketError):
        inner_next_header(b"")
    with pytest.raises(PacketError):
        inner_next_header(b"\x50" + bytes(30))


def test_selectors_ipv4() -> None:
    assert parse_ip_selectors(v4(17, UDP)) == (A4, B4, 17, 5000, 53)
    assert parse_ip_selectors(v4(6, TCP, options=bytes(8))) == (A4, B4, 6, 40000, 443)
    assert parse_ip_selectors(v4(1, b"\x08\x00" + bytes(6))) == (A4, B4, 1, 0, 0)
    # first fragment (MF set, offset 0) has ports; non-initial fragments do not
    assert parse_ip_selectors(v4(17, UDP, frag=0x2000)) == (A4, B4, 17, 5000, 53)
    assert parse_ip_selectors(v4(17, UDP, frag=0x0010)) == (A4, B4, 17, 0, 0)
    with pytest.raises(PacketError):
        parse_ip_selectors(v4(17, b"\x00"))
    with pytest.raises(PacketError):
        parse_ip_selectors(v4(17, UDP)[:19])


def test_selectors_ipv6_with_extension_headers() -> None:
    assert parse_ip_selectors(v6(17, UDP)) == (A6, B6, 17, 5000, 53)
    # hop-by-hop -> routing -> destination options -> TCP
    pkt = v6(0, ext(43) + ext(60) + ext(6, 1) + TCP)
    assert parse_ip_selectors(pkt) == (A6, B6, 6, 40000, 443)
    # fragment header, offset 0 (first fragment) and non-zero
    frag0 = bytes([17, 0, 0, 1]) + b"\0\0\0\x01"
    fragn = bytes([17, 0, 0x01, 0x00]) + b"\0\0\0\x01"
    assert parse_ip_selectors(v6(44, frag0 + UDP)) == (A6, B6, 17, 5000, 53)
    assert parse_ip_selectors(v6(44, fragn + UDP)) == (A6, B6, 17, 0, 0)
    # ICMPv6 and ESP: no ports
    assert parse_ip_selectors(v6(58, b"\x80\x00" + bytes(6))) == (A6, B6, 58, 0, 0)
    assert parse_ip_selectors(v6(50, bytes(16))) == (A6, B6, 50, 0, 0)
    # AH: length in 4-octet units + 2
    ah = bytes([17, 4]) + bytes(22)
    assert parse_ip_selectors(v6(51, ah + UDP)) == (A6, B6, 17, 5000, 53)
    with pytest.raises(PacketError):
        parse_ip_selectors(v6(0, bytes([17, 5]) + bytes(6)))  # runs past the end
    with pytest.raises(PacketError):
        parse_ip_selectors(v6(0, ext(0) * 20))  # too many
    with pytest.raises(PacketError):
        parse_ip_selectors(v6(17, b"\x00"))


def test_transport_ipv4_round_trip_through_esp() -> None:
    original = v4(17, UDP + b"payload", options=bytes([1, 1, 1, 1]))
    header, proto, payload = transport_encapsulate(original + b"\0\0")  # trailing link padding
    assert (len(header), proto, payload) == (24, 17, UDP + b"payload")
    key = bytes(36)
    out = EspOutbound(0x1001, EncrId.AES_GCM_16, 256, None, key)
    inb = EspInbound(0x1001, EncrId.AES_GCM_16, 256, None, key)
    wire = build_ip_packet(header, 50, out.protect(payload, proto))
    assert wire[9] == 50
    assert struct.unpack("!H", wire[2:4])[0] == len(wire)
    assert ipv4_checksum(wire[:24]) == 0
    outer, proto2, esp = transport_encapsulate(wire)
    assert proto2 == 50
    nh, inner = inb.unprotect(esp)
    assert transport_decapsulate(outer, nh, inner) == original


def test_transport_ipv6_keeps_routing_headers_in_clear() -> None:
    dst_before_routing = bytes([43, 0]) + bytes(6)
    routing = bytes([60, 0]) + bytes(6)
    dst_final = bytes([17, 0]) + bytes(6)
    original = v6(60, dst_before_routing + routing + dst_final + UDP)
    header, proto, payload = transport_encapsulate(original)
    assert len(header) == 40 + 16  # dest-opts before routing and routing stay in clear
    assert proto == 60  # the final destination options are protected
    assert payload == dst_final + UDP
    key = bytes(20)
    out = EspOutbound(7, EncrId.AES_GCM_16, 128, IntegId.NONE, key)
    inb = EspInbound(7, EncrId.AES_GCM_16, 128, None, key)
    wire = build_ip_packet(header, 50, out.protect(payload, proto))
    assert wire[40 + 8] == 50  # routing header's next header now ESP
    assert wire[6] == 60
    assert struct.unpack("!H", wire[4:6])[0] == len(wire) - 40
    outer, p50, esp = transport_encapsulate(wire)
    assert p50 == 50
    nh, inner = inb.unprotect(esp)
    assert build_ip_packet(outer, nh, inner) == original


def test_transport_ipv6_plain() -> None:
    original = v6(6, TCP)
    header, proto, payload = transport_encapsulate(original)
    assert (header, proto, payload) == (original[:40], 6, TCP)
    assert build_ip_packet(header, 6, payload) == original


def test_transport_rejects_bad_packets() -> None:
    with pytest.raises(PacketError):
        transport_encapsulate(v4(17, UDP, frag=0x2000))  # fragment
    bad_len = bytearray(v4(17, UDP))
    bad_len[2:4] = (200).to_bytes(2, "big")
    with pytest.raises(PacketError):
        transport_encapsulate(bytes(bad_len))
    with pytest.raises(PacketError):
        transport_encapsulate(v6(17, UDP)[:-1])
    with pytest.raises(PacketError):
        transport_encapsulate(b"\x46" + bytes(19))  # IHL 6 but 20 bytes
    with pytest.raises(PacketError):
        build_ip_packet(v4(17, b"")[:20], 50, bytes(70000))
