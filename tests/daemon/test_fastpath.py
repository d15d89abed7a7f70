"""The data plane's fast paths: flow-key caching and UDP GSO/GRO batching."""

from __future__ import annotations

import ipaddress
import socket
import struct

import pytest

from pyipsec.daemon.sockets import UdpSocket
from pyipsec.daemon.spd import flow_key, parse_flow


def _v4(proto: int, src: str, dst: str, l4: bytes, frag: int = 0, ihl: int = 5) -> bytes:
    opts = bytes((ihl - 5) * 4)
    return (
        struct.pack(
            "!BBHHHBBH4s4s",
            0x40 | ihl,
            0,
            ihl * 4 + len(l4),
            7,
            frag,
            64,
            proto,
            0xBEEF,
            ipaddress.IPv4Address(src).packed,
            ipaddress.IPv4Address(dst).packed,
        )
        + opts
        + l4
    )


def _v6(nh: int, src: str, dst: str, l4: bytes) -> bytes:
    return (
        struct.pack("!IHBB", 0x60000000, len(l4), nh, 64)
        + ipaddress.IPv6Address(src).packed
        + ipaddress.IPv6Address(dst).packed
        + l4
    )


PACKETS = [
    _v4(6, "203.0.113.1", "203.0.113.65", struct.pack("!HH", 40000, 5201) + bytes(16)),
    _v4(6, "203.0.113.1", "203.0.113.65", struct.pack("!HH", 40001, 5201) + bytes(16)),
    _v4(17, "203.0.113.1", "203.0.113.66", struct.pack("!HH", 53, 53) + bytes(4)),
    _v4(1, "203.0.113.1", "203.0.113.65", b"\x08\x00\x12\x34" + bytes(4)),
    _v4(1, "203.0.113.1", "203.0.113.65", b"\x08\x00\x56\x78" + bytes(4)),
    _v6(6, "2001:db8:a::1", "2001:db8:b::1", struct.pack("!HH", 1, 2) + bytes(16)),
    _v6(58, "2001:db8:a::1", "2001:db8:b::1", b"\x80\x00" + bytes(6)),
]


def test_flow_key_equal_keys_mean_equal_flows() -> None:
    keys = {}
    for p in PACKETS:
        k = flow_key(p)
        assert k is not None
        flow = parse_flow(p)
        assert keys.setdefault(k, flow) == flow
    # the two ICMP echo packets differ only outside the selector fields: one key
    assert flow_key(PACKETS[3]) == flow_key(PACKETS[4])
    assert len(keys) == len(PACKETS) - 1


@pytest.mark.parametrize(
    "packet",
    [
        b"\x45" + bytes(10),  # too short
        _v4(6, "203.0.113.1", "203.0.113.65", bytes(20), frag=5),  # not the first fragment
        _v4(6, "203.0.113.1", "203.0.113.65", bytes(24), ihl=6),  # IP options
        _v4(6, "203.0.113.1", "203.0.113.65", b""),  # no room for the ports
        _v6(0, "2001:db8:a::1", "2001:db8:b::1", bytes(8)),  # extension header
        _v6(6, "2001:db8:a::1", "2001:db8:b::1", b"\x00\x01"),
        b"\x20" + bytes(40),  # not IP
    ],
)
def test_flow_key_refuses_uncommon_packets(packet: bytes) -> None:
    assert flow_key(packet) is None


def test_gso_send_and_gro_receive_over_loopback() -> None:
    rx = UdpSocket("127.0.0.1", 0, natt=True)
    tx = UdpSocket("127.0.0.1", 0, natt=True)
    try:
        run = [bytes([i]) * 100 for i in range(1, 6)] + [b"\x09" * 40]  # last one shorter
        assert tx.send_segments(run, ("127.0.0.1", rx.port)) == len(run)
        got: list[bytes] = []
        buf = bytearray(65536)
        view = memoryview(buf)
        while (r := rx.recv_segments_into(buf)) is not None:
            n, src, local, seg = r
            assert src == ("127.0.0.1", tx.port) and local == "127.0.0.1"
            step = seg or n
            got += [bytes(view[o : min(o + step, n)]) for o in range(0, n, step)]
        assert got == run
        # a single packet is a plain send; recv_into still works (segment size dropped)
        assert tx.send_segments([b"\x01" * 10], ("127.0.0.1", rx.port)) == 1
        r3 = rx.recv_into(buf)
        assert r3 is not None and r3[0] == 10
    finally:
        rx.close()
        tx.close()


def test_gso_failure_falls_back_to_single_datagrams() -> None:
    tx = UdpSocket("127.0.0.1", 0, natt=True)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(2)
    try:
        # more segments than the kernel takes in one send (UDP_MAX_SEGMENTS): EINVAL,
        # then every packet on its own and GSO off for this socket
        run = [bytes([i]) for i in range(200)]
        tx.gso = True
        assert tx.send_segments(run, rx.getsockname()) == len(run)
        assert not tx.gso
        assert [rx.recv(10) for _ in run] == run
    finally:
        tx.close()
        rx.close()
