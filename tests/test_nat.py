"""Tests for pyipsec.nat (RFC 7296 §2.23, RFC 3948)."""

from __future__ import annotations

import hashlib
import ipaddress
import random
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyipsec.ikev2.errors import ParseError
from pyipsec.nat import (
    KEEPALIVE_PAYLOAD,
    ChecksumFixup,
    MappingTracker,
    NatDetection,
    NatKeepalive,
    NatResult,
    NatState,
    PacketType,
    PortFloating,
    add_non_esp_marker,
    detect_packet_type,
    should_update_peer_address,
    strip_non_esp_marker,
    transport_checksum_fixup,
)

SPI_I = bytes.fromhex("0102030405060708")
SPI_R = bytes.fromhex("a1a2a3a4a5a6a7a8")
ZERO_SPI = bytes(8)


def ref_hash(spi_i: bytes, spi_r: bytes, ip: str, port: int) -> bytes:
    """Independent NAT-D hash: SHA-1 over SPIs, packed IP and big-endian port."""
    v6 = ":" in ip
    packed = ipaddress.IPv6Address(ip).packed if v6 else bytes(int(x) for x in ip.split("."))
    return hashlib.sha1(spi_i + spi_r + packed + port.to_bytes(2, "big")).digest()


# ------------------------------------------------------------------------------ hashes


def test_hash_ipv4_matches_independent_computation() -> None:
    h = NatDetection.compute_hash(SPI_I, SPI_R, "192.0.2.1", 500)
    assert h == ref_hash(SPI_I, SPI_R, "192.0.2.1", 500)
    assert len(h) == 20


def test_hash_ipv6_matches_independent_computation() -> None:
    h = NatDetection.compute_hash(SPI_I, SPI_R, "2001:db8::1", 4500)
    assert h == ref_hash(SPI_I, SPI_R, "2001:db8::1", 4500)
    # same address, other spelling and other input types
    assert h == NatDetection.compute_hash(
        SPI_I, SPI_R, "2001:0db8:0:0::0001", 4500
    ) == NatDetection.compute_hash(
        SPI_I, SPI_R, ipaddress.IPv6Address("2001:db8::1"), 4500
    ) == NatDetection.compute_hash(SPI_I, SPI_R, ipaddress.IPv6Address("2001:db8::1").packed, 4500)


def test_hash_init_request_uses_zero_responder_spi() -> None:
    h = NatDetection.compute_hash(SPI_I, ZERO_SPI, "198.51.100.7", 500)
    assert h == ref_hash(SPI_I, ZERO_SPI, "198.51.100.7", 500)
    assert h != NatDetection.compute_hash(SPI_I, SPI_R, "198.51.100.7", 500)


def test_hash_covers_port_and_address() -> None:
    base = NatDetection.compute_hash(SPI_I, SPI_R, "192.0.2.1", 500)
    assert base != NatDetection.compute_hash(SPI_I, SPI_R, "192.0.2.1", 501)
    assert base != NatDetection.compute_hash(SPI_I, SPI_R, "192.0.2.2", 500)
    assert base != NatDetection.compute_hash(SPI_R, SPI_I, "192.0.2.1", 500)


@pytest.mark.parametrize(
    ("spi_i", "spi_r", "ip", "port"),
    [
        (b"\x01" * 7, SPI_R, "192.0.2.1", 500),
        (SPI_I, SPI_R, b"\x01\x02\x03", 500),
        (SPI_I, SPI_R, "192.0.2.1", 70000),
        (SPI_I, SPI_R, "not-an-ip", 500),
    ],
)
def test_hash_rejects_bad_input(spi_i: bytes, spi_r: bytes, ip: str | bytes, port: int) -> None:
    with pytest.raises(ValueError):
        NatDetection.compute_hash(spi_i, spi_r, ip, port)


# ------------------------------------------------------------------------- detection

# Initiator 10.0.0.2:500 behind NAT 203.0.113.5:31000; responder 198.51.100.1:500,
# reachable as 192.0.2.80:500 through a static NAT in front of it.
INIT_PRIV = ("10.0.0.2", 500)
INIT_PUB = ("203.0.113.5", 31000)
RESP_PRIV = ("198.51.100.1", 500)
RESP_PUB = ("192.0.2.80", 500)


def _detect_at_responder(sent_from: tuple[str, int], sent_to: tuple[str, int],
                         seen_from: tuple[str, int], seen_on: tuple[str, int]) -> NatResult:
    src, dst = NatDetection.outgoing_hashes(SPI_I, ZERO_SPI, sent_from=sent_from, sent_to=sent_to)
    return NatDetection.detect(
        SPI_I, ZERO_SPI, source_hashes=[src], destination_hash=dst,
        received_from=seen_from, received_on=seen_on,
    )


def test_detect_no_nat() -> None:
    r = _detect_at_responder(INIT_PRIV, RESP_PRIV, INIT_PRIV, RESP_PRIV)
    assert r == NatResult(local_behind_nat=False, remote_behind_nat=False, supported=True)
    assert r.state is NatState.NONE and not r.any


def test_detect_remote_behind_nat() -> None:
    r = _detect_at_responder(INIT_PRIV, RESP_PRIV, INIT_PUB, RESP_PRIV)
    assert r.remote_behind_nat and not r.local_behind_nat
    assert r.state is NatState.REMOTE and r.any


def test_detect_local_behind_nat() -> None:
    # the initiator addressed our public (NAT) address; we received on the private one
    r = _detect_at_responder(INIT_PRIV, RESP_PUB, INIT_PRIV, RESP_PRIV)
    assert r.local_behind_nat and not r.remote_behind_nat
    assert r.state is NatState.LOCAL


def test_detect_both_behind_nat() -> None:
    r = _detect_at_responder(INIT_PRIV, RESP_PUB, INIT_PUB, RESP_PRIV)
    assert r.local_behind_nat and r.remote_behind_nat
    assert r.state is NatState.BOTH


def test_detect_port_only_translation_is_a_nat() -> None:
    r = _detect_at_responder(INIT_PRIV, RESP_PRIV, ("10.0.0.2", 1024), RESP_PRIV)
    assert r.remote_behind_nat


def test_detect_ipv6_no_nat() -> None:
    a, b = ("2001:db8::2", 500), ("2001:db8:1::1", 500)
    r = _detect_at_responder(a, b, ("2001:db8:0::2", 500), b)
    assert r.state is NatState.NONE


def test_detect_multihomed_source_hashes() -> None:
    hashes = [
        ref_hash(SPI_I, SPI_R, "192.0.2.10", 500),
        ref_hash(SPI_I, SPI_R, "198.51.100.10", 500),
        ref_hash(SPI_I, SPI_R, "2001:db8::10", 500),
    ]
    dst = ref_hash(SPI_I, SPI_R, "203.0.113.1", 500)
    on = ("203.0.113.1", 500)
    # any one of the source hashes matching means: no NAT in front of the peer
    for ip in ("192.0.2.10", "198.51.100.10"):
        r = NatDetection.detect(SPI_I, SPI_R, source_hashes=hashes, destination_hash=dst,
                                received_from=(ip, 500), received_on=on)
        assert not r.remote_behind_nat
    r = NatDetection.detect(SPI_I, SPI_R, source_hashes=hashes, destination_hash=dst,
                            received_from=("192.0.2.99", 500), received_on=on)
    assert r.remote_behind_nat and not r.local_behind_nat


def test_detect_unsupported_without_notifies() -> None:
    dst = ref_hash(SPI_I, SPI_R, "203.0.113.1", 500)
    for src_hashes, dst_hash in (([], None), ([], dst), ([b"x" * 20], None)):
        r = NatDetection.detect(SPI_I, SPI_R, source_hashes=src_hashes, destination_hash=dst_hash,
                                received_from=("192.0.2.99", 500), received_on=("10.1.1.1", 500))
        assert r == NatResult(False, False, False)
        assert r.state is NatState.NONE


def test_fake_source_hash_forces_remote_nat_at_peer() -> None:
    rng = random.Random(7)
    src, dst = NatDetection.outgoing_hashes(SPI_I, ZERO_SPI, sent_from=INIT_PRIV,
                                            sent_to=RESP_PRIV, force_encap=True, rng=rng)
    assert len(src) == 20
    assert src != ref_hash(SPI_I, ZERO_SPI, *INIT_PRIV)
    assert dst == ref_hash(SPI_I, ZERO_SPI, *RESP_PRIV)
    r = NatDetection.detect(SPI_I, ZERO_SPI, source_hashes=[src], destination_hash=dst,
                            received_from=INIT_PRIV, received_on=RESP_PRIV)
    assert r.state is NatState.REMOTE
    # deterministic with an injected seed, and a bytes callable works too
    assert NatDetection.fake_source_hash(random.Random(1)) == NatDetection.fake_source_hash(
        random.Random(1))
    assert NatDetection.fake_source_hash(lambda n: b"\x42" * n) == b"\x42" * 20
    with pytest.raises(ValueError):
        NatDetection.outgoing_hashes(SPI_I, ZERO_SPI, sent_from=INIT_PRIV, sent_to=RESP_PRIV,
                                     force_encap=True)


# ----------------------------------------------------------------------- packet types

IKE_HDR = SPI_I + ZERO_SPI + bytes([33, 0x20, 34, 0x08]) + bytes(4) + struct.pack("!I", 28)


def test_marker_roundtrip() -> None:
    assert add_non_esp_marker(IKE_HDR) == b"\x00\x00\x00\x00" + IKE_HDR
    assert strip_non_esp_marker(add_non_esp_marker(IKE_HDR)) == IKE_HDR
    for bad in (b"", b"\x00\x00\x00", b"\x00\x00\x00\x01" + IKE_HDR, IKE_HDR):
        with pytest.raises(ParseError):
            strip_non_esp_marker(bad)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", PacketType.EMPTY),
        (b"\xff", PacketType.KEEPALIVE),
        (b"\xfe", PacketType.INVALID),
        (b"\xff\xff", PacketType.INVALID),  # too short for ESP, not a keepalive
        (b"\x00", PacketType.INVALID),
        (b"\x00\x00\x00\x00", PacketType.INVALID),  # marker without IKE header
        (b"\x00\x00\x00\x00" + IKE_HDR[:27], PacketType.INVALID),
        (b"\x00\x00\x00\x00" + IKE_HDR, PacketType.IKE),
        (b"\x00\x00\x00\x00" + IKE_HDR + b"payload", PacketType.IKE),
        (b"\x00\x00\x10\x01" + b"\x00\x00\x00\x01", PacketType.ESP),  # SPI + seq, minimum
        (b"\x00\x00\x10\x01" + b"\x00\x00\x00", PacketType.INVALID),
        (b"\x00\x00\x00\x01" + bytes(60), PacketType.ESP),  # SPI 1 is not the marker
        (b"\xff" + bytes(31), PacketType.ESP),  # starts with 0xff but is no keepalive
    ],
)
def test_packet_type_port_4500(data: bytes, expected: PacketType) -> None:
    assert detect_packet_type(data, port_4500=True) is expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", PacketType.EMPTY),
        (IKE_HDR, PacketType.IKE),
        (IKE_HDR[:27], PacketType.INVALID),
        (b"\x00\x00\x00\x00" + IKE_HDR, PacketType.INVALID),  # marker on port 500
        (b"\xff", PacketType.INVALID),  # no keepalives on 500
        (b"\x00\x00\x10\x01" + bytes(60), PacketType.IKE),  # no ESP on 500: it is IKE
    ],
)
def test_packet_type_port_500(data: bytes, expected: PacketType) -> None:
    assert detect_packet_type(data, port_4500=False) is expected


def test_keepalive_payload_constant() -> None:
    assert KEEPALIVE_PAYLOAD == b"\xff"
    assert detect_packet_type(KEEPALIVE_PAYLOAD, port_4500=True) is PacketType.KEEPALIVE


# ---------------------------------------------------------------------- port floating

NAT_REMOTE = NatResult(local_behind_nat=False, remote_behind_nat=True, supported=True)
NAT_LOCAL = NatResult(local_behind_nat=True, remote_behind_nat=False, supported=True)
NO_NAT = NatResult(False, False, True)
UNSUPPORTED = NatResult(False, False, False)


def test_floating_before_update_and_without_nat() -> None:
    pf = PortFloating(500, 500)
    assert (pf.local_port, pf.remote_port, pf.use_marker, pf.encapsulate_esp) == (
        500, 500, False, False)
    pf.update(NO_NAT)
    assert not pf.float_needed and pf.local_port == 500 and not pf.floated


@pytest.mark.parametrize("nat", [NAT_REMOTE, NAT_LOCAL, NatResult(True, True, True)])
def test_floating_on_nat(nat: NatResult) -> None:
    pf = PortFloating(500, 500)
    pf.update(nat)
    assert pf.float_needed and pf.floated
    assert (pf.local_port, pf.remote_port) == (4500, 4500)
    assert pf.use_marker and pf.encapsulate_esp


def test_floating_forced_and_disabled() -> None:
    pf = PortFloating(500, 500, forced=True)
    pf.update(NO_NAT)
    assert pf.float_needed and pf.local_port == 4500 and pf.encapsulate_esp
    # forced encapsulation needs a peer that does NAT-T
    pf.update(UNSUPPORTED)
    assert not pf.float_needed and pf.local_port == 500
    off = PortFloating(500, 500, nat_traversal=False, forced=True)
    off.update(NAT_REMOTE)
    assert not off.float_needed and off.local_port == 500 and not off.encapsulate_esp


def test_floating_keeps_non_500_ports() -> None:
    # initiator started on 4500 (allowed by §2.23): marker from the start, stays there
    pf = PortFloating(4500, 4500)
    assert pf.use_marker and pf.local_port == 4500
    pf.update(NAT_LOCAL)
    assert (pf.local_port, pf.remote_port) == (4500, 4500) and not pf.floated
    # responder seeing a NAT-mapped source port keeps answering that port
    resp = PortFloating(500, 31000)
    resp.update(NAT_REMOTE)
    assert (resp.local_port, resp.remote_port) == (4500, 31000)


# -------------------------------------------------------------------------- keepalive


def test_keepalive_timing() -> None:
    ka = NatKeepalive(interval=20.0, enabled=True)
    assert ka.next_deadline() is None  # nothing sent yet: no mapping to keep
    ka.on_sent(100.0)
    assert ka.next_deadline() == 120.0
    assert not ka.due(119.99) and ka.due(120.0)
    ka.on_sent(110.0)  # any packet resets the timer
    assert ka.next_deadline() == 130.0 and not ka.due(120.0)
    ka.on_sent(105.0)  # out-of-order report does not move it back
    assert ka.next_deadline() == 130.0


def test_keepalive_disabled() -> None:
    ka = NatKeepalive(interval=20.0, enabled=False)
    ka.on_sent(0.0)
    assert ka.next_deadline() is None and not ka.due(1000.0)
    ka.update(NAT_LOCAL)
    assert ka.enabled and ka.due(20.0)
    ka.update(NAT_REMOTE)  # only the side behind the NAT sends keepalives
    assert not ka.enabled and not ka.due(1000.0)
    zero = NatKeepalive(interval=0.0, enabled=True)
    zero.on_sent(0.0)
    assert not zero.enabled and zero.next_deadline() is None


# ---------------------------------------------------------------- checksum fix-up


def ref_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = 0
    for i in range(0, len(data), 2):
        s += (data[i] << 8) | data[i + 1]
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def l4_valid(packet: bytes) -> bool:
    ihl = (packet[0] & 0xF) * 4
    seg = packet[ihl:]
    pseudo = packet[12:20] + bytes([0, packet[9]]) + len(seg).to_bytes(2, "big")
    return ref_checksum(pseudo + seg) == 0


def build_ipv4(src: str, dst: str, proto: int, l4: bytes, *, frag: int = 0) -> bytes:
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, frag, 64, proto, 0,
                      ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    return hdr + l4


def make_segment(proto: int, src: str, dst: str, payload: bytes) -> bytes:
    """A TCP/UDP segment whose checksum is valid for (src, dst)."""
    if proto == 6:
        seg = bytearray(struct.pack("!HHIIBBHHH", 1234, 80, 1, 0, 0x50, 0x18, 8192, 0, 0)
                        + payload)
        pos = 16
    else:
        seg = bytearray(struct.pack("!HHHH", 1234, 53, 8 + len(payload), 0) + payload)
        pos = 6
    pseudo = (ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed
              + bytes([0, proto]) + len(seg).to_bytes(2, "big"))
    c = ref_checksum(pseudo + bytes(seg)) or (0xFFFF if proto == 17 else 0)
    seg[pos:pos + 2] = c.to_bytes(2, "big")
    return bytes(seg)


# sender 10.0.0.2 -> 192.0.2.80 (original, NAT-OA); we see 203.0.113.5 -> 198.51.100.1
ORIG_SRC, ORIG_DST, RECV_SRC, RECV_DST = "10.0.0.2", "192.0.2.80", "203.0.113.5", "198.51.100.1"


@pytest.mark.parametrize("proto", [6, 17])
@pytest.mark.parametrize("method", [ChecksumFixup.AUTO, ChecksumFixup.INCREMENTAL,
                                    ChecksumFixup.RECOMPUTE])
def test_checksum_fixup_makes_checksum_valid(proto: int, method: ChecksumFixup) -> None:
    seg = make_segment(proto, ORIG_SRC, ORIG_DST, b"hello, world!")
    assert l4_valid(build_ipv4(ORIG_SRC, ORIG_DST, proto, seg))
    received = build_ipv4(RECV_SRC, RECV_DST, proto, seg)
    assert not l4_valid(received)  # NAT broke it
    fixed = transport_checksum_fixup(received, original_src=ORIG_SRC, original_dst=ORIG_DST,
                                     method=method)
    assert l4_valid(fixed)
    assert fixed[:20] == received[:20] and len(fixed) == len(received)


def test_checksum_fixup_recompute_without_nat_oa() -> None:
    seg = make_segment(6, ORIG_SRC, ORIG_DST, b"x" * 33)
    fixed = transport_checksum_fixup(build_ipv4(RECV_SRC, RECV_DST, 6, seg))
    assert l4_valid(fixed)


def test_checksum_fixup_only_one_side_translated() -> None:
    seg = make_segment(6, ORIG_SRC, RECV_DST, b"data")
    received = build_ipv4(RECV_SRC, RECV_DST, 6, seg)
    fixed = transport_checksum_fixup(received, original_src=ORIG_SRC)
    assert not l4_valid(received) and l4_valid(fixed)


def test_checksum_fixup_zero_udp_and_special_cases() -> None:
    seg = make_segment(17, ORIG_SRC, ORIG_DST, b"dns?")
    received = build_ipv4(RECV_SRC, RECV_DST, 17, seg)
    zeroed = transport_checksum_fixup(received, method=ChecksumFixup.ZERO_UDP)
    assert zeroed[26:28] == b"\x00\x00" and zeroed[:26] == received[:26]
    # UDP without checksum stays as it is
    nocsum = received[:26] + b"\x00\x00" + received[28:]
    assert transport_checksum_fixup(nocsum, original_src=ORIG_SRC) == nocsum
    # ZERO_UDP recomputes TCP
    tcp = build_ipv4(RECV_SRC, RECV_DST, 6, make_segment(6, ORIG_SRC, ORIG_DST, b"t"))
    assert l4_valid(transport_checksum_fixup(tcp, method=ChecksumFixup.ZERO_UDP))
    # ICMP and non-first fragments are untouched; IPv6 is passed through
    icmp = build_ipv4(RECV_SRC, RECV_DST, 1, b"\x08\x00\x00\x00" + bytes(4))
    assert transport_checksum_fixup(icmp, original_src=ORIG_SRC) == icmp
    frag = build_ipv4(RECV_SRC, RECV_DST, 6, bytes(24), frag=100)
    assert transport_checksum_fixup(frag, original_src=ORIG_SRC) == frag
    v6 = b"\x60" + bytes(47)
    assert transport_checksum_fixup(v6) == v6


def test_checksum_fixup_first_fragment_incremental() -> None:
    seg = make_segment(6, ORIG_SRC, ORIG_DST, b"A" * 40)
    full = build_ipv4(RECV_SRC, RECV_DST, 6, seg)
    first = build_ipv4(RECV_SRC, RECV_DST, 6, seg[:32], frag=0x2000)  # MF set
    fixed = transport_checksum_fixup(first, original_src=ORIG_SRC, original_dst=ORIG_DST,
                                     method=ChecksumFixup.RECOMPUTE)  # falls back to incremental
    ref = transport_checksum_fixup(full, original_src=ORIG_SRC, original_dst=ORIG_DST,
                                   method=ChecksumFixup.RECOMPUTE)
    assert fixed[36:38] == ref[36:38]


def test_checksum_fixup_rejects_truncated() -> None:
    with pytest.raises(ParseError):
        transport_checksum_fixup(b"\x45" + bytes(10))
    seg = make_segment(6, ORIG_SRC, ORIG_DST, b"")
    pkt = build_ipv4(RECV_SRC, RECV_DST, 6, seg)
    with pytest.raises(ParseError):
        transport_checksum_fixup(pkt[:30])


@settings(max_examples=200, deadline=None)
@given(
    payload=st.binary(max_size=64),
    addrs=st.lists(st.integers(min_value=0, max_value=2**32 - 1), min_size=4, max_size=4),
    proto=st.sampled_from([6, 17]),
)
def test_checksum_incremental_property(payload: bytes, addrs: list[int], proto: int) -> None:
    o_src, o_dst, r_src, r_dst = (str(ipaddress.IPv4Address(a)) for a in addrs)
    seg = make_segment(proto, o_src, o_dst, payload)
    received = build_ipv4(r_src, r_dst, proto, seg)
    fixed = transport_checksum_fixup(received, original_src=o_src, original_dst=o_dst,
                                     method=ChecksumFixup.INCREMENTAL)
    assert l4_valid(fixed)


# ---------------------------------------------------------------- address updates

CUR = ("203.0.113.5", 4500)
NEW = ("203.0.113.5", 31337)


def test_address_update_rules() -> None:
    ok: dict[str, Any] = {"sequence": 10, "newest_seen": 9}
    assert should_update_peer_address(True, True, CUR, NEW, **ok)
    # spoofed (unauthenticated) packets never move the SA
    assert not should_update_peer_address(False, True, CUR, NEW, **ok)
    # peer not behind NAT: no dynamic update
    assert not should_update_peer_address(True, False, CUR, NEW, **ok)
    # we are behind a NAT: SHOULD NOT (DoS)
    assert not should_update_peer_address(True, True, CUR, NEW, local_behind_nat=True, **ok)
    # unchanged address, also when spelled differently
    assert not should_update_peer_address(True, True, ("2001:db8::1", 4500),
                                          ("2001:db8:0::1", 4500), **ok)
    # replayed/old packet
    assert not should_update_peer_address(True, True, CUR, NEW, sequence=9, newest_seen=9)
    assert not should_update_peer_address(True, True, CUR, NEW, sequence=3, newest_seen=9)


def test_mapping_tracker_ignores_old_and_spoofed() -> None:
    t = MappingTracker(CUR, peer_behind_nat=True)
    assert not t.observe(CUR, authenticated=True, space="esp", sequence=5)
    assert not t.observe(NEW, authenticated=False, space="esp", sequence=6)
    assert t.current == CUR
    assert t.observe(NEW, authenticated=True, space="esp", sequence=6)
    assert t.current == NEW
    # an old packet from the previous address must not revert the update
    assert not t.observe(CUR, authenticated=True, space="esp", sequence=4)
    assert t.current == NEW
    # separate number spaces (IKE message IDs vs ESP sequence numbers)
    assert t.observe(CUR, authenticated=True, space="ike", sequence=0)
    assert t.current == CUR
    t.update_nat(NAT_LOCAL)  # now only we are behind NAT: no updates at all
    assert not t.observe(NEW, authenticated=True, space="ike", sequence=1)
