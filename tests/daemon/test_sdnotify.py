"""systemd Type=notify: READY/STATUS/WATCHDOG/RELOADING/STOPPING on $NOTIFY_SOCKET."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyipsec.config.loader import load_config_text
from pyipsec.daemon import runtime, sdnotify
from pyipsec.daemon.runtime import Daemon, run_daemon
from pyipsec.daemon.sdnotify import DaemonNotifier, Notifier

from .fakes import FakeManager

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
[secrets.s]
secret = "x"
"""


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    path = tmp_path / "notify.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    s.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield s
    s.close()


def drain(s: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(s.recv(4096).decode())
        except BlockingIOError:
            return out


def collect(s: socket.socket, into: list[str]) -> None:
    """Read ``s`` from the running loop (its queue holds only a few datagrams)."""
    asyncio.get_running_loop().add_reader(s.fileno(), lambda: into.extend(drain(s)))


def test_no_notify_socket_is_a_noop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not Notifier.from_env().enabled
    assert sdnotify.notify("READY=1") is False
    assert DaemonNotifier(lambda: "x").watchdog is None


def test_abstract_socket() -> None:
    name = f"pyipsec-test-{os.getpid()}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(b"\0" + name.encode())
    s.settimeout(1)
    try:
        assert Notifier(f"@{name}").notify("READY=1", "STATUS=hi")
        assert s.recv(100) == b"READY=1\nSTATUS=hi"
    finally:
        s.close()


def test_send_failure_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    n = Notifier(str(tmp_path / "nobody-listens"))
    with caplog.at_level(logging.WARNING, logger="pyipsec.cfg"):
        assert n.notify("READY=1") is False
        assert n.notify("WATCHDOG=1") is False
    assert len([r for r in caplog.records if "cannot notify systemd" in r.message]) == 1


def test_watchdog_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    wi = Notifier.watchdog_interval
    assert wi({}) is None
    assert wi({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert wi({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 15.0
    assert wi({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert wi({"WATCHDOG_USEC": "junk"}) is None
    assert wi({"WATCHDOG_USEC": "0"}) is None


def test_sa_counts() -> None:
    mgr = FakeManager()
    assert sdnotify.sa_counts(mgr) == "0 IKE SAs, 0 Child SAs"  # type: ignore[arg-type]


def test_daemon_notifier_timers(notify_socket: socket.socket) -> None:
    n = [0]

    def status() -> str:
        n[0] += 1
        return f"{n[0]} IKE SAs, 0 Child SAs"

    msgs: list[str] = []

    async def go() -> None:
        collect(notify_socket, msgs)
        sd = DaemonNotifier(
            status, environ={**os.environ, "WATCHDOG_USEC": "40000"}, status_interval=0.03
        )
        assert sd.watchdog == 0.02
        sd.ready()
        await asyncio.sleep(0.15)
        sd.reloading()
        sd.reloaded()
        sd.close()
        sd.close()
        await asyncio.sleep(0.01)
        asyncio.get_running_loop().remove_reader(notify_socket.fileno())

    asyncio.run(go())
    msgs += drain(notify_socket)
    assert msgs[0].startswith("READY=1\n") and "STATUS=1 IKE SAs, 0 Child SAs" in msgs[0]
    assert msgs.count("WATCHDOG=1") >= 3
    assert "STATUS=2 IKE SAs, 0 Child SAs" in msgs
    reloading = [m for m in msgs if m.startswith("RELOADING=1\nMONOTONIC_USEC=")]
    assert len(reloading) == 1
    i = msgs.index(reloading[0])
    assert msgs[i + 1].startswith("READY=1")


def test_run_daemon_ready_status_watchdog_stopping(
    tmp_path: Path, notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon run as systemd's ExecStart: READY=1 with STATUS= after start,
    WATCHDOG=1 pings, RELOADING=1/READY=1 around SIGHUP, STOPPING=1 at SIGTERM."""
    conf = tmp_path / "pyipsec.toml"
    conf.write_text(CONF.format(sock=tmp_path / "c.sock"))
    cfg = load_config_text(conf.read_text())
    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # a ping every 50 ms
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    msgs: list[str] = []
    orig = runtime.Daemon.start

    async def start(self: Daemon) -> None:
        await orig(self)
        assert drain(notify_socket) == []  # READY=1 only once start() is done
        collect(notify_socket, msgs)
        loop = asyncio.get_running_loop()
        loop.call_later(0.2, os.kill, os.getpid(), signal.SIGHUP)
        loop.call_later(0.45, os.kill, os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(runtime.Daemon, "start", start)
    mgr = FakeManager()
    assert run_daemon(cfg, config_path=str(conf), manager_factory=lambda c: mgr) == 0
    msgs += drain(notify_socket)
    assert msgs[0].startswith("READY=1\n")
    assert "STATUS=0 IKE SAs, 0 Child SAs" in msgs[0].split("\n")
    assert msgs.count("WATCHDOG=1") >= 4
    assert any(m.startswith("RELOADING=1\n") for m in msgs)
    assert ("reload", ["c"]) in mgr.calls  # SIGHUP reloads like ``pyipsec reload``
    assert "STOPPING=1\nSTATUS=stopping" in msgs
    reloading = next(i for i, m in enumerate(msgs) if m.startswith("RELOADING=1"))
    assert msgs.index("STOPPING=1\nSTATUS=stopping") > reloading


def test_sighup_with_a_bad_file_keeps_running(
    tmp_path: Path, notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "pyipsec.toml"
    conf.write_text(CONF.format(sock=tmp_path / "c.sock"))
    cfg = load_config_text(conf.read_text())
    orig = runtime.Daemon.start

    async def start(self: Daemon) -> None:
        await orig(self)
        conf.write_text("[daemon]\nbogus = 1\n")
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, os.kill, os.getpid(), signal.SIGHUP)
        loop.call_later(0.2, os.kill, os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(runtime.Daemon, "start", start)
    assert run_daemon(cfg, config_path=str(conf), manager_factory=lambda c: FakeManager()) == 0
    msgs = drain(notify_socket)
    assert [m.split("\n")[0] for m in msgs] == ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"]


def test_sighup_before_ready_or_while_stopping_is_ignored(
    notify_socket: socket.socket, caplog: pytest.LogCaptureFixture
) -> None:
    d = Daemon(load_config_text(""), control=False, use_tun=False)
    sd = DaemonNotifier(lambda: "x")
    with caplog.at_level(logging.WARNING, logger="pyipsec.cfg"):
        runtime._reload_on_sighup(d, sd)  # not ready yet
        sd.is_ready = True
        d.request_stop()
        runtime._reload_on_sighup(d, sd)  # stopping
    assert drain(notify_socket) == []
    assert len([r for r in caplog.records if "SIGHUP" in r.message]) == 2
