"""Runtime event handling and edge paths with a scripted fake IKE manager."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from pyipsec.config.loader import load_config_text
from pyipsec.config.model import DpdAction, Mode
from pyipsec.daemon import runtime
from pyipsec.daemon.control import ControlError
from pyipsec.daemon.runtime import Daemon, run_daemon, selectors_summary
from pyipsec.ikev2 import events as ev
from pyipsec.ikev2.api import ChildSaView, IkeSaView
from pyipsec.ikev2.selectors import Selector
from pyipsec.ikev2.state import ChildSaState, IkeSaState

from .fakes import FakeManager, child_info

CONF = """
[daemon]
listen = ["127.0.0.1"]
ike_port = 0
natt_port = 0
control_socket = "{sock}"
[connections.c]
remote_addrs = ["192.0.2.2"]
[connections.c.children.net]
local_ts = ["203.0.113.0/26"]
remote_ts = ["0.0.0.0/0"]
start_action = "start"
[secrets.s]
secret = "x"
"""


class FakeMgr(FakeManager):
    """A core that fails on datagrams and timers (the daemon must survive both)."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_receive = self.fail_timer = True


def info(spi_in: int, encap: bool = True, mode: Mode = Mode.TUNNEL) -> ev.ChildSaInfo:
    return child_info(spi_in, encap=encap, mode=mode)


def test_events_and_edges(tmp_path: Path) -> None:
    cfg = load_config_text(CONF.format(sock=tmp_path / "c.sock"))
    mgr = FakeMgr()

    async def go() -> None:
        d = Daemon(cfg, manager_factory=lambda c: mgr, use_tun=False)
        await d.start()
        try:
            assert ("initiate", ("c", "net")) in mgr.calls  # start_action = start
            loop = asyncio.get_running_loop()
            mgr.timer = loop.time() + 0.01
            mgr.out = [(b"ike", ("127.0.0.1", d.udp[0].port), ("127.0.0.1", 9)),
                       (b"nosock", ("10.0.0.1", 1), ("2001:db8::1", 500))]  # fmt: skip
            d.pump()
            await asyncio.sleep(0.05)
            assert any(c[0] == "timer" for c in mgr.calls)
            mgr.events = [
                ev.IkeSaEstablished(
                    1, "c", ("127.0.0.1", 4500), ("127.0.0.2", 4500), "a", "b", nat_local=True
                ),
                ev.ChildSaInstalled(info(100)),
                ev.ChildSaInstalled(info(300, mode=Mode.TRANSPORT)),
                ev.ChildSaRekeyed(100, info(200)),
                ev.PeerAddressChanged(1, ("127.0.0.2", 4500), ("127.0.0.3", 4500)),
                ev.NotifyReceived(1, 16390),
                ev.PeerDead(
                    1, "c", DpdAction.CLEAR, (("net", DpdAction.TRAP), ("other", DpdAction.CLEAR))
                ),
                ev.IkeSaRekeyed(1, 2),
                ev.ChildSaFailed(2, "c", "net", "nope"),
                ev.ChildSaDeleted(100, 101, "rekeyed"),
                ev.ChildSaDeleted(999, 1000),
                ev.IkeSaDeleted(2, "c", "gone"),
                ev.IkeSaFailed(3, "c", "auth"),
                "unknown event",
            ]
            d.pump()
            assert ("trap", "c", "net") in d.dp.spd._entries  # the child's dpd_action = trap
            assert list(d.dp.children) == [200]
            assert d.dp.children[200].remote == ("127.0.0.3", 4500)
            mgr.sas = [{"id": 2, "rekey_at": 10.0, "established": 1.0,
                        "children": [{"expire_at": 20.0}]}]  # fmt: skip
            st = d.status()
            assert st["child_sas"][0]["spi_in"] == "000000c8" and "rekey_in" in st["ike_sas"][0]
            mgr.status_fails = True
            assert "error" in d.status()["ike_sas"][0]
            # IKE datagram that makes the core raise: counted, daemon survives
            d._on_ike(b"x", ("127.0.0.1", 500), ("127.0.0.9", 500))
            assert d.dp.drops.ike_errors == 1
            res = await d.handle_request({"cmd": "down", "name": "c"})
            assert res == {"conn": "c", "terminated": 0} and ("terminate", "c") in mgr.calls
            d.config_path = tmp_path / "x.toml"
            (tmp_path / "x.toml").write_text(CONF.format(sock=tmp_path / "c.sock"))
            assert d.reload() == {"connections": ["c"]} and ("reload", ["c"]) in mgr.calls
            # up: failure event resolves the waiter
            task = asyncio.ensure_future(d.handle_request({"cmd": "up", "name": "c"}))
            await asyncio.sleep(0.01)
            mgr.events = [ev.IkeSaFailed(4, "c", "timeout")]
            d.pump()
            with pytest.raises(ControlError, match="IKE SA failed: timeout"):
                await task
            d.report_traffic()  # nothing flowed: nothing reported
            assert not [c for c in mgr.calls if c[0] == "traffic"]
            d.dp.uninstall(200)
        finally:
            await d.shutdown()

    asyncio.run(go())
    assert selectors_summary([Selector.network("10.0.0.0/8")]) == "10.0.0.0/8"


def test_run_daemon_stops_on_sigterm(tmp_path: Path) -> None:
    cfg = load_config_text(CONF.format(sock=tmp_path / "d.sock").replace('"start"', '"none"'))
    mgr = FakeMgr()
    loop_holder: list[Any] = []
    orig = runtime.Daemon.start

    async def start(self: Daemon) -> None:
        await orig(self)
        asyncio.get_running_loop().call_later(0.1, os.kill, os.getpid(), signal.SIGTERM)
        loop_holder.append(self)

    runtime.Daemon.start = start  # type: ignore[method-assign]
    try:
        assert run_daemon(cfg, manager_factory=lambda c: mgr) == 0
    finally:
        runtime.Daemon.start = orig  # type: ignore[method-assign]
    assert loop_holder and not (tmp_path / "d.sock").exists()


def test_esp_from_new_address_follows_only_newest_and_accepted(tmp_path: Path) -> None:
    """RFC 7296 §2.23: the data plane reports the newest authenticated packet from a new
    source with its sequence number and moves the SA only when the core says so."""
    from pyipsec.esp.sa import EspOutbound

    cfg = load_config_text(CONF.format(sock=tmp_path / "c.sock"))
    mgr = FakeManager()
    mgr.moves = True  # esp_activity as the core does it: PeerAddressChanged when it accepts
    peer = EspOutbound(100, 20, 128, None, bytes(20))  # the peer's side of our SA 100
    inner = bytes.fromhex("4500001c000100004001f7c9cb007141cb007101") + bytes(8)  # .65 -> .1

    def reports() -> list[Any]:
        return [c[1] for c in mgr.calls if c[0] == "esp_activity"]

    async def go() -> None:
        d = Daemon(cfg, manager_factory=lambda c: mgr, use_tun=False, control=False)
        await d.start()
        try:
            mgr.events = [ev.ChildSaInstalled(info(100))]
            d.pump()
            c = d.dp.children[100]
            pkts = [peer.protect(inner, 4) for _ in range(5)]  # seq 1..5
            d.dp.on_esp(pkts[0], ("127.0.0.2", 4500), True)
            assert reports() == [] and c.packets_in == 1
            d.dp.on_esp(pkts[2], ("127.0.0.9", 4500), True)  # seq 3, newest: reported, moved
            assert reports() == [(100, ("127.0.0.9", 4500), 3)]
            assert c.remote == ("127.0.0.9", 4500)
            d.dp.on_esp(pkts[1], ("127.0.0.7", 4500), True)  # seq 2: older, never moves it
            assert c.packets_in == 3 and len(reports()) == 1
            assert c.remote == ("127.0.0.9", 4500)
            mgr.moves = False  # e.g. we are behind a NAT ourselves: the core declines
            d.dp.on_esp(pkts[3], ("127.0.0.8", 4500), True)
            d.dp.on_esp(pkts[4], ("127.0.0.8", 4500), True)  # declined once: not asked again
            assert reports()[1:] == [(100, ("127.0.0.8", 4500), 4)]
            assert c.remote == ("127.0.0.9", 4500) and c.packets_in == 5
        finally:
            await d.close()

    asyncio.run(go())


@pytest.mark.parametrize("timeout", ["30", None, True, -1, 0, float("nan"), float("inf"), [1]])
def test_up_and_liveness_refuse_bad_timeouts_without_leaking(
    tmp_path: Path, timeout: object
) -> None:
    cfg = load_config_text(CONF.format(sock=tmp_path / "c.sock"))
    mgr = FakeMgr()
    mgr.ike_views = [
        IkeSaView(1, "c", IkeSaState.ESTABLISHED, True, ("127.0.0.1", 500),
                  ("192.0.2.2", 500), "a", "b")
    ]  # fmt: skip

    async def go() -> None:
        d = Daemon(cfg, manager_factory=lambda c: mgr, use_tun=False, control=False)
        await d.start()
        try:
            mgr.calls.clear()
            for cmd in ("up", "liveness"):
                with pytest.raises(ControlError, match="'timeout' must be a positive number"):
                    await d.handle_request({"cmd": cmd, "name": "c", "timeout": timeout})
            assert d.cmds.waiters == [] and d.cmds.liveness_waiters == [] and mgr.calls == []
        finally:
            await d.close()

    asyncio.run(go())


def test_up_waiter_removed_when_initiate_fails(tmp_path: Path) -> None:
    cfg = load_config_text(CONF.format(sock=tmp_path / "c.sock"))
    mgr = FakeMgr()

    def initiate(conn: str, child: str | None, now: float, **kw: object) -> None:
        raise KeyError(conn)

    async def go() -> None:
        d = Daemon(cfg, manager_factory=lambda c: FakeMgr(), use_tun=False, control=False)
        await d.start()
        try:
            d.core = mgr
            mgr.initiate = initiate  # type: ignore[method-assign]
            with pytest.raises(KeyError):
                await d.handle_request({"cmd": "up", "name": "c", "timeout": 1})
            assert d.cmds.waiters == []
        finally:
            await d.close()

    asyncio.run(go())


def test_esp_on_the_wrong_path_is_dropped_and_counted(tmp_path: Path) -> None:
    """RFC 3948 §3: an SA negotiated with UDP encapsulation accepts ESP only in UDP, one
    without only as IP protocol 50; the other path is dropped before the ICV check (the
    replay window is untouched) and counted per SA and in the daemon's drops."""
    from pyipsec.esp.sa import EspOutbound

    cfg = load_config_text(CONF.format(sock=tmp_path / "c.sock"))
    mgr = FakeMgr()
    inner = bytes.fromhex("4500001c000100004001f7c9cb007141cb007101") + bytes(8)  # .65 -> .1

    async def go() -> None:
        d = Daemon(cfg, manager_factory=lambda c: mgr, use_tun=False, control=False)
        await d.start()
        try:
            mgr.events = [ev.ChildSaInstalled(info(100)), ev.ChildSaInstalled(info(300, False))]
            d.pump()
            udp_sa, raw_sa = d.dp.children[100], d.dp.children[300]
            p_udp = EspOutbound(100, 20, 128, None, bytes(20)).protect(inner, 4)
            p_raw = EspOutbound(300, 20, 128, None, bytes(20)).protect(inner, 4)
            d.dp.on_esp(p_udp, ("127.0.0.2", 0), False)  # UDP SA, arrived as protocol 50
            d.dp.on_esp(p_raw, ("127.0.0.2", 4500), True)  # protocol 50 SA, arrived in UDP
            assert (udp_sa.packets_in, raw_sa.packets_in) == (0, 0)
            assert udp_sa.drops_encap == raw_sa.drops_encap == 1
            assert d.dp.drops.wrong_encap == 2 and udp_sa.inbound.replay.top == 0
            assert d.status()["child_sas"][0]["drops"]["encap"] == 1
            d.dp.on_esp(p_udp, ("127.0.0.2", 4500), True)  # the right paths: accepted
            d.dp.on_esp(p_raw, ("127.0.0.2", 0), False)
            assert (udp_sa.packets_in, raw_sa.packets_in) == (1, 1)
        finally:
            await d.close()

    asyncio.run(go())


def test_liveness_answered_by_event_and_failed_by_deletion(tmp_path: Path) -> None:
    """``liveness`` waits for LivenessAnswered of its IKE SA (rtt from the event); the
    SA's deletion, failure or a dead peer fails it at once."""
    cfg = load_config_text(CONF.format(sock=tmp_path / "c.sock"))
    mgr = FakeManager()
    mgr.ike_views = [
        IkeSaView(i, "c", IkeSaState.ESTABLISHED, True, ("127.0.0.1", 500),
                  ("192.0.2.2", 500), "a", "b")
        for i in (3, 4)
    ]  # fmt: skip

    async def ask() -> asyncio.Future[Any]:
        task = asyncio.ensure_future(d.handle_request({"cmd": "liveness", "name": "c"}))
        await asyncio.sleep(0.01)
        assert mgr.calls[-1] == ("liveness", 4)  # the newest established IKE SA
        return task

    d = Daemon(cfg, manager_factory=lambda c: mgr, use_tun=False, control=False)

    async def go() -> None:
        await d.start()
        try:
            task = await ask()
            mgr.events = [ev.LivenessAnswered(3, "c", 1.0, 2.0),  # another SA: ignored
                          ev.LivenessAnswered(4, "c", 10.0, 10.0125)]  # fmt: skip
            d.pump()
            assert await task == {"conn": "c", "ike_id": 4, "rtt_ms": 12.5}
            for gone in (ev.IkeSaDeleted(4, "c", "x"), ev.IkeSaFailed(4, "c", "x"),
                         ev.PeerDead(4, "c")):  # fmt: skip
                task = await ask()
                mgr.events = [gone]
                d.pump()
                with pytest.raises(ControlError, match="IKE SA #4"):
                    await task
            assert d.cmds.liveness_waiters == []
            mgr.ike_views = []
            with pytest.raises(ControlError, match="no established IKE SA"):
                await d.handle_request({"cmd": "liveness", "name": "c"})
        finally:
            await d.close()

    asyncio.run(go())


def test_rekey_uses_the_core_views(tmp_path: Path) -> None:
    cfg = load_config_text(CONF.format(sock=tmp_path / "c.sock"))
    mgr = FakeManager()
    est, rekeying = IkeSaState.ESTABLISHED, IkeSaState.REKEYING
    mgr.ike_views = [
        IkeSaView(i, "c", st, True, ("127.0.0.1", 500), ("192.0.2.2", 500), "a", "b")
        for i, st in ((1, est), (2, rekeying))
    ]
    mgr.child_views = [
        ChildSaView(1, "c", "net", 0x10, 0x11, ChildSaState.INSTALLED),
        ChildSaView(1, "c", "net", 0x20, 0x21, ChildSaState.REKEYED),
        ChildSaView(2, "c", "net", 0x30, 0x31, ChildSaState.INSTALLED),  # IKE SA rekeying
    ]

    async def go() -> None:
        d = Daemon(cfg, manager_factory=lambda c: mgr, use_tun=False, control=False)
        await d.start()
        try:
            res = await d.handle_request({"cmd": "rekey", "name": "c"})
            assert res == {"conn": "c",
                           "child_sas": [{"ike_id": 1, "child": "net", "spi_in": "00000010"}]}
            assert ("rekey_child", (1, 0x10)) in mgr.calls
            res = await d.handle_request({"cmd": "rekey", "name": "c", "ike": True})
            assert res == {"conn": "c", "ike_sas": [1]} and ("rekey_ike", 1) in mgr.calls
            mgr.child_views = []
            with pytest.raises(ControlError, match="no installed child 'net' to rekey"):
                await d.handle_request({"cmd": "rekey", "name": "c", "child": "net"})
        finally:
            await d.close()

    asyncio.run(go())


def test_timer_is_rearmed_only_for_an_earlier_deadline(tmp_path: Path) -> None:
    """A later deadline keeps the armed timer (its early call is a no-op of the core
    that arms the real deadline), an earlier one replaces it, none cancels it."""
    cfg = load_config_text(CONF.format(sock=tmp_path / "c.sock").replace(
        "start_action = \"start\"", "start_action = \"none\""
    ))
    mgr = FakeManager()

    async def go() -> None:
        d = Daemon(cfg, manager_factory=lambda c: mgr, use_tun=False, control=False)
        await d.start()
        try:
            loop = asyncio.get_running_loop()
            base = loop.time()
            mgr.timer = base + 0.05
            d.pump()
            first = d._timer
            assert first is not None and first.when() == base + 0.05
            mgr.timer = base + 0.2  # later: the armed timer stays
            d.pump()
            assert d._timer is first
            mgr.timer = base + 0.01  # earlier: armed anew
            d.pump()
            assert d._timer is not first and d._timer is not None
            assert d._timer.when() == base + 0.01 and first.cancelled()
            await asyncio.sleep(0.03)  # it fires: the core is asked, the fake clears it
            assert [c for c in mgr.calls if c[0] == "timer"] and d._timer is None
            mgr.timer = base + 0.15
            d.pump()
            second = d._timer
            assert second is not None
            mgr.timer = base + 0.3
            d.pump()
            assert d._timer is second
            mgr.calls.clear()
            await asyncio.sleep(0.17)  # fires early (at 0.15): the core has nothing due
            assert [c[0] for c in mgr.calls].count("timer") == 1
            # the fake forgets its deadline when asked; a core that still has one
            # (0.3) gets it armed again by the pump after the call
            mgr.timer = base + 0.3
            d.pump()
            assert d._timer is not None and d._timer.when() == base + 0.3
            mgr.timer = None  # no deadline: cancelled
            d.pump()
            assert d._timer is None
        finally:
            await d.close()

    asyncio.run(go())
