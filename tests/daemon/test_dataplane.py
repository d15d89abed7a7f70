"""The data plane on its own: two DataPlanes with a loopback-paired Child SA, fake TUN
devices, real UDP sockets on port 4500 -- and no IKE core at all."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import select
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from pyipsec.daemon.dataplane import (
    DataPlane,
    EspErrorDelta,
    PeerIndex,
    PeerMoved,
    Report,
    TrapHit,
    TrapPolicy,
    UnknownSpi,
)
from pyipsec.daemon.sockets import UdpSocket
from pyipsec.daemon.spd import parse_flow
from pyipsec.ikev2.selectors import Selector

from .fakes import child_info
from .test_runtime import FakeTun, icmp, loopback_pair


def _any_in(index: PeerIndex, net: str) -> bool:
    """A peer's address lies in ``net`` (what a route install asks, as integers)."""
    n = ipaddress.ip_network(net)
    return index.any_between(n.version, int(n.network_address), int(n.broadcast_address))


@dataclasses.dataclass
class Side:
    dp: DataPlane
    tun: FakeTun
    sock: UdpSocket
    reports: list[Report]


@pytest.fixture
def pair() -> Iterator[tuple[Side, Side]]:
    """left (SPI in 0x100, out 0x101) and right (the mirror), both installed."""
    left_ip, right_ip, _ = loopback_pair(79)
    loop = asyncio.new_event_loop()
    sides = []
    for me in (left_ip, right_ip):
        sock = UdpSocket(me, 4500, natt=True)
        reports: list[Report] = []
        dp = DataPlane(loop, [sock], reports.append)
        dp.tun = FakeTun()
        sides.append(Side(dp, dp.tun, sock, reports))
    left, right = sides
    info = child_info(0x100, local=(left_ip, 4500), remote=(right_ip, 4500))
    mirror = dataclasses.replace(
        info, spi_in=0x101, spi_out=0x100, local_ts=info.remote_ts, remote_ts=info.local_ts,
        local=info.remote, remote=info.local,
    )  # fmt: skip
    assert left.dp.install(info) is not None and right.dp.install(mirror) is not None
    try:
        yield left, right
    finally:
        for s in sides:
            s.dp.close()
            s.sock.close()
            s.tun.close()
        loop.close()


def _deliver(s: Side) -> bool:
    """Wait for the datagram and run the receiving side's UDP drain."""
    assert select.select([s.sock.fd], [], [], 2)[0], "no datagram"
    return s.dp.on_udp_readable(s.sock)


def test_install_lookup_and_uninstall(pair: tuple[Side, Side]) -> None:
    left, _ = pair
    c = left.dp.children[0x100]
    flow = parse_flow(icmp("203.0.113.1", "203.0.113.65"))
    assert flow is not None and left.dp.spd.lookup(flow) is c
    outside = parse_flow(icmp("203.0.113.1", "198.51.100.1"))
    assert outside is not None and left.dp.spd.lookup(outside) is None
    assert left.dp.uninstall(0x100, "test") is c
    assert left.dp.children == {} and left.dp.spd.lookup(flow) is None
    assert left.dp.uninstall(0x100) is None


def test_tunnel_both_ways_and_counters(pair: tuple[Side, Side]) -> None:
    left, right = pair
    ping = icmp("203.0.113.1", "203.0.113.65")
    left.tun.outside.send(ping)
    left.tun.outside.send(icmp("203.0.113.1", "198.51.100.7"))  # no policy
    left.dp.on_tun_readable()
    assert _deliver(right) is False  # ESP only, nothing for the core
    assert right.tun.outside.recv(2000) == ping
    lc, rc = left.dp.children[0x100], right.dp.children[0x101]
    assert (lc.packets_out, lc.bytes_out) == (1, len(ping))
    assert (rc.packets_in, rc.bytes_in) == (1, len(ping))
    assert left.dp.drops.no_policy == 1
    # traffic reports: cumulative, from the SA's counters, only when they changed
    errors, traffic = left.dp.traffic_reports(1.0)
    assert errors == [] and len(traffic) == 1
    t = traffic[0]
    assert (t.spi_in, t.new_in, t.packets_out, t.seq_out) == (0x100, False, 1, 1)
    assert t.bytes_out == len(ping)
    assert left.dp.traffic_reports(2.0) == ([], [])
    _, (r,) = right.dp.traffic_reports(1.0)
    assert r.new_in and r.packets_in == 1 and r.last_in == rc.last_in
    # and back
    pong = icmp("203.0.113.65", "203.0.113.1", b"pong")
    right.tun.outside.send(pong)
    right.dp.on_tun_readable()
    _deliver(left)
    assert left.tun.outside.recv(2000) == pong and lc.packets_in == 1
    assert left.reports == right.reports == []


def test_inbound_selector_check_drops(pair: tuple[Side, Side]) -> None:
    """RFC 4301 §5.2: an authenticated packet the SA may not carry is dropped."""
    left, right = pair
    bad = icmp("203.0.113.1", "198.51.100.9")
    esp = left.dp.children[0x100].outbound.protect(bad, 4)
    right.dp.on_esp(esp, (left.sock.addr, 4500), True)
    rc = right.dp.children[0x101]
    assert rc.drops_selector == 1 and rc.packets_in == 0


def test_unknown_spi_wrong_path_and_esp_errors(pair: tuple[Side, Side]) -> None:
    left, right = pair
    src = (left.sock.addr, 4500)
    right.dp.on_esp(b"\x00\x00\x09\x99" + bytes(40), src, True)
    assert right.reports == [UnknownSpi(0x999, src)] and right.dp.drops.unknown_spi == 1
    esp = left.dp.children[0x100].outbound.protect(icmp("203.0.113.1", "203.0.113.65"), 4)
    right.dp.on_esp(esp, (src[0], 0), False)  # a UDP SA's ESP as protocol 50 (RFC 3948 §3)
    rc = right.dp.children[0x101]
    assert rc.drops_encap == 1 and right.dp.drops.wrong_encap == 1
    right.dp.on_esp(esp[:-1] + bytes([esp[-1] ^ 1]), src, True)  # ICV failure
    assert right.dp.drops.esp_errors == 1
    errors, _ = right.dp.traffic_reports(1.0)
    assert errors == [EspErrorDelta(0x101, 1, 0, 0)]
    assert right.dp.traffic_reports(2.0)[0] == []


def test_drops_on_the_wrong_path_and_at_the_sequence_end_mark_the_sa_changed(
    pair: tuple[Side, Side],
) -> None:
    """Counters that only drops move (a UDP SA's ESP as protocol 50, RFC 3948 §3; an
    outbound sequence number at its end, RFC 4303 §3.3.3) still mark the SA changed:
    take_changed (the metrics' incremental totals) visits it, and only it."""
    left, right = pair
    for side in pair:  # the daemon's second: the core's reports, then the metrics
        side.dp.traffic_reports(0.0)
        side.dp.take_changed()
    esp = left.dp.children[0x100].outbound.protect(icmp("203.0.113.1", "203.0.113.65"), 4)
    right.dp.on_esp(esp, (left.sock.addr, 0), False)
    rc = right.dp.children[0x101]
    assert rc.drops_encap == 1
    assert right.dp.traffic_reports(1.0) == ([], [])  # nothing the core counts
    assert list(right.dp.take_changed()) == [rc]
    right.dp.traffic_reports(2.0)
    assert right.dp.take_changed() == {}
    lc = left.dp.children[0x100]
    lc.outbound.seq = 2**32 - 1  # no ESN: the next packet would cycle the counter
    left.tun.outside.send(icmp("203.0.113.1", "203.0.113.65"))
    left.dp.on_tun_readable()
    assert lc.drops_send == 1 and lc.packets_out == 0
    assert left.dp.traffic_reports(1.0) == ([], [])
    assert list(left.dp.take_changed()) == [lc]


def test_peer_moved_is_reported_and_a_declined_source_is_not_again(
    pair: tuple[Side, Side],
) -> None:
    """RFC 7296 §2.23: the newest packet from a new source is reported with its
    sequence number; nobody moved the SA (no core here), so that source is declined."""
    left, right = pair
    out = left.dp.children[0x100].outbound
    inner = icmp("203.0.113.1", "203.0.113.65")
    new = ("127.0.0.9", 4500)
    right.dp.on_esp(out.protect(inner, 4), new, True)
    right.dp.on_esp(out.protect(inner, 4), new, True)
    rc = right.dp.children[0x101]
    assert right.reports == [PeerMoved(0x101, new, 1)]
    assert rc.declined_src == new and rc.remote == (left.sock.addr, 4500)
    right.dp.peer_address_changed(1, new)  # what the runtime does on PeerAddressChanged
    assert rc.remote == new and rc.declined_src is None


def test_trap_reports_and_holds_down(pair: tuple[Side, Side]) -> None:
    left, _ = pair
    clock = [100.0]
    left.dp.clock = lambda: clock[0]
    left.dp.set_traps([((Selector.network("203.0.113.0/26"),),
                        (Selector.network("198.51.100.0/24"),), TrapPolicy("c", "t"))])  # fmt: skip
    pkt = icmp("203.0.113.1", "198.51.100.7")
    for _ in range(2):
        left.tun.outside.send(pkt)
    left.dp.on_tun_readable()
    flow = parse_flow(pkt)
    assert left.reports == [TrapHit("c", "t", flow)]  # type: ignore[arg-type]
    assert left.dp.drops.trap_pending == 2
    left.dp.hold_traps("c", None, clock[0] + 5)  # the setup failed later
    clock[0] += 12
    left.dp.trap(TrapPolicy("c", "t"), SimpleNamespace(src_addr="a", dst_addr="b"))  # type: ignore[arg-type]
    assert len(left.reports) == 1
    clock[0] += 5
    left.dp.trap(TrapPolicy("c", "t"), SimpleNamespace(src_addr="a", dst_addr="b"))  # type: ignore[arg-type]
    assert len(left.reports) == 2


def test_peer_index() -> None:
    """Peers are counted and found by network in O(log n) (routes must not capture them)."""
    idx = PeerIndex()
    for ip in ("192.0.2.7", "192.0.2.7", "198.51.100.9", "2001:db8::5"):
        idx.add(ip)
    assert _any_in(idx, "192.0.2.0/24")
    assert not _any_in(idx, "203.0.113.0/24")
    assert _any_in(idx, "2001:db8::/64")
    # the same by integers and family (what a route install asks)
    v4 = int(ipaddress.ip_address("192.0.2.7"))
    assert idx.any_between(4, v4, v4) and idx.any_between(4, v4 - 7, v4 - 6 + 255)
    assert not idx.any_between(4, v4 + 1, v4 + 255) and not idx.any_between(6, v4, v4)
    idx.remove("192.0.2.7")
    assert _any_in(idx, "192.0.2.7/32")  # one SA left
    idx.remove("192.0.2.7")
    assert not _any_in(idx, "192.0.2.7/32") and "192.0.2.7" not in idx


def test_a_peer_move_after_an_ike_rekey_moves_the_children(pair: tuple[Side, Side]) -> None:
    """After an IKE SA rekey (RFC 7296 §2.8.2) the core names the new IKE SA in
    PeerAddressChanged (§2.23): the children, installed under the old one, must follow."""

    left, _ = pair
    c = left.dp.children[0x100]
    old_ike, old_peer = c.ike_id, c.remote
    left.dp.peer_address_changed(old_ike + 1, ("192.0.2.77", 4500))
    assert c.remote == old_peer  # another IKE SA: not ours
    left.dp.ike_rekeyed(old_ike, old_ike + 1)
    left.dp.peer_address_changed(old_ike + 1, ("192.0.2.77", 4500))
    assert c.remote == ("192.0.2.77", 4500) and c.ike_id == old_ike + 1
    assert _any_in(left.dp.peers, "192.0.2.77/32")
    assert not _any_in(left.dp.peers, f"{old_peer[0]}/32")
    assert left.dp.uninstall(0x100) is c and left.dp.by_ike == {}
