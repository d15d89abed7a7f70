"""RADIUS accounting (RFC 2866) of EAP-RADIUS sessions: what is sent when, with which
attributes, across rekeys; failures; and pyrad's transport against a UDP server."""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import threading
from collections.abc import Callable
from typing import Any

import pyrad.packet
import pytest

from pyipsec.config.loader import ConfigError, load_config_text
from pyipsec.config.model import EapRadiusConfig, RadiusServerConfig
from pyipsec.daemon.radius_accounting import (
    AcctStatus,
    RadiusAccounting,
    TerminateCause,
    Usage,
)
from pyipsec.daemon.radius_codec import RadiusAnswer, dictionary

SERVER = RadiusServerConfig("r1", "127.0.0.1", b"acct-secret", acct_port=1)
CFG = EapRadiusConfig(servers=(SERVER,), accounting=True, timeout=0.2, retries=0)


class FakeLoop:
    """The loop calls RadiusAccounting makes, run by hand (``run``), with a clock."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.ready: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self.later: list[tuple[float, Callable[..., Any], tuple[Any, ...]]] = []
        self.lock = threading.Lock()

    def call_soon(self, cb: Callable[..., Any], *args: Any) -> None:
        with self.lock:
            self.ready.append((cb, args))

    call_soon_threadsafe = call_soon

    def call_later(self, delay: float, cb: Callable[..., Any], *args: Any) -> Any:
        entry = (self.now + delay, cb, args)
        self.later.append(entry)
        loop = self

        class Handle:
            def cancel(self) -> None:
                if entry in loop.later:
                    loop.later.remove(entry)

        return Handle()

    def run(self) -> None:
        while True:
            with self.lock:
                if not self.ready:
                    return
                cb, args = self.ready.pop(0)
            cb(*args)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for entry in sorted(e for e in self.later if e[0] <= self.now):
            self.later.remove(entry)
            entry[1](*entry[2])


class Harness:
    def __init__(self, cfg: EapRadiusConfig = CFG, answer: str | None = None) -> None:
        self.loop = FakeLoop()
        self.sent: list[tuple[list[str], Any]] = []
        self.closed: list[tuple[int, str]] = []
        self.live: dict[int, Usage] = {}
        self.answer = answer

        def send(servers: list[RadiusServerConfig], msg: Any) -> str | None:
            self.sent.append(([s.name for s in servers], msg))
            return self.answer

        self.acct = RadiusAccounting(
            cfg, usage=lambda ike_id: self.live.get(ike_id, Usage()),
            close=lambda ike_id, why: self.closed.append((ike_id, why)),
            loop=self.loop,  # type: ignore[arg-type]
            send=send, clock=lambda: self.loop.now, wall=lambda: 1_750_000_000.0,
        )  # fmt: skip

    def settle(self) -> None:
        """Run what is ready, wait for the worker, run its outcomes."""
        self.loop.run()
        concurrent.futures.wait(set(self.acct._pending), timeout=5)
        self.loop.run()

    def attrs(self, i: int) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for name, value in self.sent[i][1].attributes:
            out.setdefault(name, []).append(value)
        return out

    def up(self, ike_id: int = 7, vips: tuple[str, ...] = ("10.3.0.1",), *,
           interim: int | None = None) -> None:  # fmt: skip
        answer = RadiusAnswer(code=2, classes=(b"cls-1", b"cls-2"), interim_interval=interim)
        self.acct.accepted(ike_id, b"carol", answer)
        if vips:
            self.acct.virtual_ips(ike_id, vips)
        self.acct.established(ike_id, "rw", ("192.0.2.1", 4500), ("198.51.100.2", 4500))
        self.settle()


def test_start_then_stop_with_usage_and_cause() -> None:
    h = Harness()
    h.up()
    (servers, start), = h.sent
    assert servers == ["r1"] and start.status is AcctStatus.START
    a = h.attrs(0)
    assert a["Acct-Status-Type"] == [1] and a["User-Name"] == [b"carol"]
    assert a["Framed-IP-Address"] == ["10.3.0.1"] and a["NAS-Port"] == [7]
    assert a["NAS-Port-Id"] == [b"rw"] and a["NAS-IP-Address"] == ["192.0.2.1"]
    assert a["Called-Station-Id"] == [b"192.0.2.1[4500]"]
    assert a["Calling-Station-Id"] == [b"198.51.100.2[4500]"]
    assert a["NAS-Port-Type"] == [5] and a["Service-Type"] == [2]
    assert a["Event-Timestamp"] == [1_750_000_000]
    assert "Acct-Input-Octets" not in a and start.classes == (b"cls-1", b"cls-2")
    session = a["Acct-Session-Id"][0]
    # a rekeyed Child SA's last counters, and what the live ones carried (> 4 GiB out)
    h.acct.child_gone(7, Usage(100, 200, 1, 2))
    h.live[7] = Usage(50, (5 << 32) + 10, 3, 4)
    h.loop.now += 125
    h.acct.cause(7, TerminateCause.LOST_SERVICE)
    h.acct.deleted(7, "peer dead")
    h.settle()
    assert h.sent[1][1].status is AcctStatus.STOP
    b = h.attrs(1)
    assert b["Acct-Session-Id"] == [session] and b["Acct-Session-Time"] == [125]
    assert b["Acct-Input-Octets"] == [150] and b["Acct-Input-Packets"] == [4]
    assert b["Acct-Output-Octets"] == [210] and b["Acct-Output-Gigawords"] == [5]
    assert "Acct-Input-Gigawords" not in b and b["Acct-Output-Packets"] == [6]
    assert b["Acct-Terminate-Cause"] == [TerminateCause.LOST_SERVICE]
    assert h.acct.status()["sent"] == {"start": 1, "stop": 1, "interim_update": 0}
    assert h.acct.status()["sessions"] == 0


@pytest.mark.parametrize(("reason", "cause"), [
    ("deleted by peer", TerminateCause.USER_REQUEST),
    ("IKE SA lifetime expired", TerminateCause.SESSION_TIMEOUT),
    ("terminated", TerminateCause.ADMIN_RESET),
    ("shutdown", TerminateCause.ADMIN_REBOOT),
    ("peer dead", TerminateCause.USER_REQUEST),  # a dead peer comes as PeerDead (below)
])  # fmt: skip
def test_terminate_cause_from_the_cores_reason(reason: str, cause: TerminateCause) -> None:
    h = Harness()
    h.up()
    h.acct.deleted(7, reason)
    h.settle()
    assert h.attrs(1)["Acct-Terminate-Cause"] == [cause]


def test_interim_updates_and_the_servers_interval() -> None:
    h = Harness(EapRadiusConfig(servers=(SERVER,), accounting=True, accounting_interval=600))
    h.up(interim=120)  # Acct-Interim-Interval of the Access-Accept wins (RFC 2869 §5.16)
    h.live[7] = Usage(10, 20, 1, 1)
    h.loop.advance(119)
    h.settle()
    assert len(h.sent) == 1
    h.loop.advance(1)
    h.settle()
    h.loop.advance(120)
    h.settle()
    assert [m.status for _, m in h.sent] == [AcctStatus.START] + [AcctStatus.INTERIM_UPDATE] * 2
    assert h.attrs(2)["Acct-Input-Octets"] == [10] and h.attrs(2)["Acct-Session-Time"] == [240]
    h.acct.deleted(7)
    h.settle()
    h.loop.advance(1000)
    h.settle()
    assert [m.status for _, m in h.sent][-1] is AcctStatus.STOP and len(h.sent) == 4


def test_too_short_interval_is_raised_to_a_minute() -> None:
    h = Harness()
    h.up(interim=5)
    h.loop.advance(59)
    h.settle()
    assert len(h.sent) == 1
    h.loop.advance(1)
    h.settle()
    assert len(h.sent) == 2


def test_session_survives_an_ike_rekey() -> None:
    h = Harness()
    h.up(7)
    h.acct.rekeyed(7, 9)
    h.live[9] = Usage(1, 2, 3, 4)
    h.acct.deleted(7)  # the old SA going away is not the session's end
    h.settle()
    assert len(h.sent) == 1
    h.acct.deleted(9)
    h.settle()
    stop = h.attrs(1)
    assert stop["Acct-Session-Id"] == h.attrs(0)["Acct-Session-Id"]
    assert stop["NAS-Port"] == [9] and stop["Acct-Input-Octets"] == [1]


def test_only_radius_sessions_and_with_vip_if_required() -> None:
    h = Harness()
    h.acct.established(3, "psk", ("192.0.2.1", 500), ("198.51.100.9", 500))  # no Accept
    h.settle()
    assert h.sent == []
    h = Harness(EapRadiusConfig(servers=(SERVER,), accounting=True,
                                accounting_requires_vip=True))  # fmt: skip
    h.up(vips=())
    h.acct.deleted(7)
    h.settle()
    assert h.sent == []  # no Start without a virtual IP, so no Stop
    h.up(8)
    assert [m.status for _, m in h.sent] == [AcctStatus.START]


@pytest.mark.parametrize("close", [True, False])
def test_unacknowledged_start_closes_the_ike_sa(close: bool) -> None:
    cfg = EapRadiusConfig(servers=(SERVER,), accounting=True, accounting_close_on_timeout=close)
    h = Harness(cfg, answer="r1: no answer after 1 tries")
    h.up()
    assert h.closed == ([(7, "RADIUS accounting Start not acknowledged")] if close else [])
    assert h.acct.status()["failed"]["start"] == 1
    h.acct.deleted(7)  # a failed Stop closes nothing
    h.settle()
    assert len(h.closed) == (1 if close else 0)


def test_interim_updates_are_dropped_when_too_many_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(EapRadiusConfig(servers=(SERVER,), accounting=True, accounting_interval=60))
    h.up()
    monkeypatch.setattr("pyipsec.daemon.radius_accounting.MAX_QUEUED", 0)
    h.loop.advance(60)
    h.settle()
    assert h.acct.dropped == 1 and len(h.sent) == 1
    h.acct.deleted(7)  # a Stop is never dropped
    h.settle()
    assert h.sent[-1][1].status is AcctStatus.STOP


# ---------------------------------------------------------------- pyrad's transport


class AcctServer:
    """A UDP accounting server in a thread: checks each request's authenticator (RFC
    2866 §3) and answers Accounting-Response (unless ``silent``)."""

    def __init__(self, secret: bytes, silent: bool = False) -> None:
        self.secret, self.silent = secret, silent
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.got: list[Any] = []
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop:
            try:
                data, addr = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            pkt = pyrad.packet.AcctPacket(packet=data, secret=self.secret, dict=dictionary())
            assert pkt.VerifyAcctRequest(), "bad Request Authenticator"
            self.got.append(pkt)
            if not self.silent:
                reply = pkt.CreateReply()
                reply.code = pyrad.packet.AccountingResponse
                self.sock.sendto(reply.ReplyPacket(), addr)

    def close(self) -> None:
        self.stop = True
        self.thread.join()
        self.sock.close()


def test_pyrad_transport_fails_over_and_authenticates() -> None:
    silent, good = AcctServer(b"s1", silent=True), AcctServer(b"s2")
    try:
        cfg = EapRadiusConfig(servers=(
            RadiusServerConfig("first", "127.0.0.1", b"s1", preference=10, acct_port=silent.port),
            RadiusServerConfig("second", "127.0.0.1", b"s2", acct_port=good.port),
        ), accounting=True, timeout=0.3, retries=1)  # fmt: skip
        closed: list[int] = []

        async def go() -> dict[str, Any]:
            acct = RadiusAccounting(cfg, usage=lambda i: Usage(5, 6, 7, 8),
                                    close=lambda i, why: closed.append(i))  # fmt: skip
            acct.accepted(4, b"dave", RadiusAnswer(code=2, classes=(b"\x00\xffcls",)))
            acct.established(4, "rw", ("127.0.0.1", 4500), ("127.0.0.2", 4500))
            for _ in range(100):
                await asyncio.sleep(0.05)
                if acct.status()["sent"]["start"]:
                    break
            acct.deleted(4, "deleted by peer")
            acct.close(timeout=5)  # waits for the Stop to be sent
            await asyncio.sleep(0.05)  # its outcome reaches the loop
            return acct.status()

        status = asyncio.run(go())
        assert status["sent"]["start"] == 1 and status["sent"]["stop"] == 1, status
        assert closed == []
        assert len(silent.got) == 2  # the first server: 1 + retries tries, no answer
        assert len(good.got) == 2  # the Start, then the Stop (the silent one is last now)
        start, stop = good.got
        assert start["Acct-Status-Type"] == ["Start"] and start["User-Name"] == ["dave"]
        assert start[25] == [b"\x00\xffcls"]  # Class, echoed unmodified
        assert stop["Acct-Status-Type"] == ["Stop"] and stop["Acct-Input-Octets"] == [5]
        assert stop["Acct-Terminate-Cause"] == [1]
        assert start["Acct-Session-Id"] == stop["Acct-Session-Id"]
        assert "Acct-Delay-Time" in silent.got[1]  # raised on the retransmission
    finally:
        silent.close()
        good.close()


def test_config() -> None:
    base = """
[eap_radius]
{extra}
[eap_radius.servers.r]
address = "192.0.2.10"
acct_port = 11813
[secrets.radius-r]
secret = "x"
"""
    cfg = load_config_text(base.format(extra='accounting = true\naccounting_interval = "10m"\n'
                                             "accounting_requires_vip = true\n"
                                             "accounting_close_on_timeout = false"))  # fmt: skip
    r = cfg.eap_radius
    assert r.accounting and r.accounting_interval == 600 and r.accounting_requires_vip
    assert not r.accounting_close_on_timeout and r.servers[0].acct_port == 11813
    default = load_config_text(base.format(extra="")).eap_radius
    assert not default.accounting and default.accounting_close_on_timeout
    with pytest.raises(ConfigError, match="at least 60s"):
        load_config_text(base.format(extra='accounting_interval = "30s"'))
    with pytest.raises(ConfigError, match="accounting needs a RADIUS server"):
        load_config_text("[eap_radius]\naccounting = true\n")


def test_close_drops_what_a_dead_server_keeps_queued() -> None:
    """Stopping with an unreachable server: at most ``timeout`` for the queue, the rest
    dropped (the process must not wait for every message's retransmissions)."""
    import time

    gate = threading.Event()
    h = Harness()

    def slow(servers: list[RadiusServerConfig], msg: Any) -> str | None:
        gate.wait(5)
        return "no answer"

    h.acct._send = slow
    for ike_id in range(1, 6):
        answer = RadiusAnswer(code=2)
        h.acct.accepted(ike_id, b"u", answer)
        h.acct.established(ike_id, "rw", ("192.0.2.1", 4500), ("198.51.100.2", 4500))
    h.loop.run()  # five Starts queued, the first one blocking the worker
    t0 = time.monotonic()
    h.acct.close(timeout=0.3)
    assert time.monotonic() - t0 < 2
    gate.set()
    futures = list(h.acct._pending)
    assert len(futures) == 10 and sum(f.cancelled() for f in futures) == 9  # all but one
    concurrent.futures.wait([f for f in futures if not f.cancelled()], timeout=5)
