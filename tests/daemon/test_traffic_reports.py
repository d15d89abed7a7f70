"""Traffic reports visit only the Child SAs whose counters changed (DataPlane.changed):
an idle SA is never looked at, a changed one is reported once per report.  One data
plane, fake TUN and UDP socket, packets protected with a second ESP context."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from pyipsec.daemon.dataplane import ChildState, DataPlane, EspErrorDelta, Report
from pyipsec.esp.sa import EspOutbound

from .fakes import child_info
from .test_runtime import FakeTun, icmp

N = 12
PEER = ("127.0.0.2", 4500)


class FakeUdp:
    """Stands in for a UdpSocket on the send path (every datagram goes out)."""

    def __init__(self) -> None:
        self.sent = 0

    def sendto(self, data: bytes, addr: tuple[str, int]) -> bool:
        self.sent += 1
        return True

    def send_segments(self, segments: list[bytes], addr: tuple[str, int]) -> int:
        self.sent += len(segments)
        return len(segments)


class CountingInbound:
    """Wraps an SA's inbound ESP context and counts every attribute read: a report that
    visits the SA reads its error counters (``inbound.stats``)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.reads = 0

    def __getattr__(self, name: str) -> Any:
        self.reads += 1
        return getattr(self.real, name)


def spi(i: int) -> int:
    return 0x1000 + 2 * i


@pytest.fixture
def dp() -> Iterator[DataPlane]:
    """N installed SAs; SA i carries 10.i.0.0/16 <-> 203.0.113.0/26."""
    loop = asyncio.new_event_loop()
    reports: list[Report] = []
    plane = DataPlane(loop, [], reports.append)
    tun = FakeTun()
    plane.tun = tun
    for i in range(N):
        info = child_info(spi(i), ike_id=i + 1, remote_ts=f"10.{i}.0.0/16", remote=PEER)
        c = plane.install(info)
        assert c is not None
        c.sock = FakeUdp()  # type: ignore[assignment]
    try:
        yield plane
    finally:
        plane.close()
        tun.close()
        loop.close()
    assert reports == []


def sender(i: int) -> EspOutbound:
    """The peer's outbound context of SA i (child_info uses all-zero keys)."""
    return EspOutbound(spi(i), 20, 128, None, bytes(20), b"")


def inbound(dp: DataPlane, i: int, n: int = 1) -> None:
    out = sender(i)
    for _ in range(n):
        dp.on_esp(out.protect(icmp(f"10.{i}.0.1", "203.0.113.1"), 4), PEER, True, 5.0)


def spy(dp: DataPlane) -> dict[int, CountingInbound]:
    spies = {}
    for s, c in dp.children.items():
        spies[s] = CountingInbound(c.inbound)
        c.inbound = spies[s]  # type: ignore[assignment]
    return spies


def test_only_changed_sas_are_visited_and_reported_once(dp: DataPlane) -> None:
    inbound(dp, 3, n=4)  # four packets: one report
    bad = sender(5).protect(icmp("10.5.0.1", "203.0.113.1"), 4)
    dp.on_esp(bad[:-1] + bytes([bad[-1] ^ 1]), PEER, True, 5.0)  # ICV failure on SA 5
    tun = dp.tun
    assert isinstance(tun, FakeTun)
    for _ in range(3):  # outbound on SA 8: one GSO run
        tun.outside.send(icmp("203.0.113.1", "10.8.0.1"))
    tun.outside.send(icmp("203.0.113.1", "10.9.0.1", b"x"))  # and one on SA 9
    dp.on_tun_readable()
    assert {c.info.spi_in for c in dp.changed} == {spi(3), spi(5), spi(8), spi(9)}
    spies = spy(dp)
    errors, traffic = dp.traffic_reports(7.0)
    assert errors == [EspErrorDelta(spi(5), 1, 0, 0)]
    assert sorted(t.spi_in for t in traffic) == [spi(3), spi(8), spi(9)]
    by_spi = {t.spi_in: t for t in traffic}
    assert by_spi[spi(3)].packets_in == 4 and by_spi[spi(3)].new_in
    assert by_spi[spi(3)].last_in == 5.0
    assert by_spi[spi(8)].packets_out == 3 and by_spi[spi(8)].seq_out == 3
    assert not by_spi[spi(8)].new_in and by_spi[spi(8)].last_in == 7.0
    assert by_spi[spi(9)].packets_out == 1
    visited = {s for s, sp in spies.items() if sp.reads}
    assert visited == {spi(3), spi(5), spi(8), spi(9)}  # never an idle SA
    assert dp.changed == {}
    for sp in spies.values():
        sp.reads = 0
    assert dp.traffic_reports(8.0) == ([], [])  # nothing new: nothing visited
    assert all(sp.reads == 0 for sp in spies.values())


def test_counters_since_the_last_report(dp: DataPlane) -> None:
    """Cumulative counters, new_in only when packets arrived since the last report;
    an SA with errors only is in the error list only."""
    out = sender(0)
    for _ in range(2):
        dp.on_esp(out.protect(icmp("10.0.0.1", "203.0.113.1"), 4), PEER, True, 1.0)
    _, (t,) = dp.traffic_reports(1.0)
    assert (t.spi_in, t.packets_in, t.new_in) == (spi(0), 2, True)
    dp.on_esp(out.protect(icmp("198.51.100.1", "203.0.113.1"), 4), PEER, True, 2.0)
    errors, traffic = dp.traffic_reports(2.0)  # outside the selectors (RFC 4301 §5.2)
    assert errors == [EspErrorDelta(spi(0), 0, 0, 0, 1)] and traffic == []
    replayed = out.protect(icmp("10.0.0.1", "203.0.113.1"), 4)
    dp.on_esp(replayed, PEER, True, 3.0)
    dp.on_esp(replayed, PEER, True, 3.0)  # RFC 4303 §3.4.3
    errors, (t,) = dp.traffic_reports(3.0)
    assert errors == [EspErrorDelta(spi(0), 0, 1, 0)]
    assert (t.packets_in, t.new_in, t.last_in) == (3, True, 3.0)
    tun = dp.tun
    assert isinstance(tun, FakeTun)
    tun.outside.send(icmp("203.0.113.1", "10.0.0.1"))
    dp.on_tun_readable()
    _, (t,) = dp.traffic_reports(4.0)  # sent only: cumulative, no new arrival
    assert (t.packets_in, t.packets_out, t.new_in, t.last_in) == (3, 1, False, 3.0)


def test_uninstalled_or_replaced_sa_is_not_reported(dp: DataPlane) -> None:
    inbound(dp, 1)
    inbound(dp, 2)
    assert dp.uninstall(spi(1)) is not None
    old: ChildState = dp.children[spi(2)]
    new = dp.install(child_info(spi(2), ike_id=3, remote_ts="10.2.0.0/16", remote=PEER))
    assert new is not None and new is not old and old in dp.changed
    assert dp.traffic_reports(1.0) == ([], [])  # neither the removed nor the replaced one
    assert dp.changed == {}
