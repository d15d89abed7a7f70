"""The daemon builds its RADIUS client from ``[eap_radius]`` and wires it to the core:
``EapBackendRequest`` -> Access-Request, the answer -> ``eap_backend_reply`` (then the
core's datagrams go out), an ended IKE SA -> ``forget``; closed with the daemon."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyrad.packet

from pyipsec.config.loader import load_config_text
from pyipsec.daemon.eap_radius import RadiusBackend
from pyipsec.daemon.runtime import Daemon
from pyipsec.eap.base import BackendReply, BackendVerdict
from pyipsec.ikev2 import events as ev

from .fakes import FakeManager
from .radius_fake import FakeRadius, Received

SECRET = "runtime-radius-secret"
CONF = """
[daemon]
listen = ["127.0.0.1"]
ike_port = 0
natt_port = 0
control_socket = "{sock}"
[eap_radius]
timeout = 5
[eap_radius.servers.fake]
address = "127.0.0.1"
auth_port = {port}
[secrets.radius-fake]
secret = "{secret}"
"""
REQUEST = ev.EapBackendRequest(
    7, "rw", b"carol", b"\x02\x01\x00\x0a\x01carol", ("192.0.2.9", 4500)
)


async def until(cond: Callable[[], bool], timeout: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def _daemon(tmp_path: Path, port: int, mgr: FakeManager) -> Daemon:
    text = CONF.format(sock=tmp_path / "c.sock", port=port, secret=SECRET)
    cfg = load_config_text(text)
    return Daemon(cfg, manager_factory=lambda c: mgr, use_tun=False, control=False)


def _replies(mgr: FakeManager) -> list[Any]:
    return [c[1] for c in mgr.calls if c[0] == "eap_backend_reply"]


def test_the_radius_answer_reaches_the_core(tmp_path: Path) -> None:
    async def go() -> None:
        def answer(req: Received) -> Any:
            return req.reply(pyrad.packet.AccessReject, b"\x04\x01\x00\x04")

        srv = await FakeRadius(SECRET.encode(), answer).start()
        mgr = FakeManager()
        d = _daemon(tmp_path, srv.address[1], mgr)
        await d.start()
        try:
            assert isinstance(d.eap_backend, RadiusBackend)
            mgr.events = [REQUEST]
            d.pump()
            await until(lambda: bool(_replies(mgr)))
            ike_id, reply = _replies(mgr)[0]
            assert ike_id == 7 and isinstance(reply, BackendReply)
            assert reply.verdict is BackendVerdict.REJECT and reply.eap == b"\x04\x01\x00\x04"
            (req,) = srv.received
            assert req.attr("User-Name") == ["carol"] and req.ma_valid
            assert req.attr("Calling-Station-Id") == ["192.0.2.9[4500]"]
        finally:
            await d.close()
            srv.close()
        assert d.eap_backend is None

    asyncio.run(go())


def test_an_ended_ike_sa_is_forgotten(tmp_path: Path) -> None:
    async def go() -> None:
        srv = await FakeRadius(SECRET.encode()).start()  # silent
        mgr = FakeManager()
        d = _daemon(tmp_path, srv.address[1], mgr)
        await d.start()
        try:
            backend = d.eap_backend
            assert isinstance(backend, RadiusBackend)
            mgr.events = [REQUEST, ev.EapBackendRequest(8, "rw", b"dave", b"x", ("192.0.2.8", 500))]
            d.pump()
            await until(lambda: len(srv.received) == 2)
            assert backend.status()["conversations"] == 2
            mgr.events = [ev.IkeSaFailed(7, "rw", "peer gone"), ev.IkeSaDeleted(8, "rw")]
            d.pump()
            assert backend.status()["conversations"] == 0
            assert backend.status()["servers"][0]["outstanding"] == 0
            assert _replies(mgr) == []
        finally:
            await d.close()
            srv.close()

    asyncio.run(go())


def test_without_servers_there_is_no_client(tmp_path: Path) -> None:
    async def go() -> None:
        cfg = load_config_text(
            f'[daemon]\nlisten = ["127.0.0.1"]\nike_port = 0\nnatt_port = 0\n'
            f'control_socket = "{tmp_path / "c.sock"}"\n'
        )
        d = Daemon(cfg, manager_factory=lambda c: FakeManager(), use_tun=False, control=False)
        await d.start()
        try:
            assert d.eap_backend is None
        finally:
            await d.close()

    asyncio.run(go())


def test_accounting_of_a_radius_session(tmp_path: Path) -> None:
    """``accounting = true``: the Access-Accept's Class reaches the accounting; Start once
    established (with the leased virtual IP), Stop with the Child SAs' traffic and
    Lost-Service after DPD declared the peer dead; nothing for other IKE SAs."""
    from .fakes import child_info

    async def go() -> None:
        def answer(req: Received) -> Any:
            rep = req.reply(pyrad.packet.AccessAccept, b"\x03\x01\x00\x04")
            rep[25] = [b"class-x"]
            return rep

        srv = await FakeRadius(SECRET.encode(), answer).start()
        mgr = FakeManager()
        text = CONF.format(sock=tmp_path / "c.sock", port=srv.address[1], secret=SECRET)
        cfg = load_config_text(text.replace("timeout = 5", "timeout = 5\naccounting = true"))
        d = Daemon(cfg, manager_factory=lambda c: mgr, use_tun=False, control=False)
        await d.start()
        sent: list[Any] = []
        try:
            assert d.accounting is not None
            d.accounting._send = lambda servers, msg: sent.append(msg)  # type: ignore[method-assign]
            mgr.events = [REQUEST]
            d.pump()
            await until(lambda: bool(_replies(mgr)))
            local, remote = ("192.0.2.1", 4500), ("192.0.2.9", 4500)
            mgr.events = [
                ev.VirtualIpsAssigned(7, "rw", remote=("10.3.0.1",)),
                ev.IkeSaEstablished(7, "rw", local, remote, initiator=False),
                ev.IkeSaEstablished(8, "psk", local, ("192.0.2.10", 4500), initiator=False),
                ev.ChildSaInstalled(child_info(0x100, ike_id=7)),
            ]
            d.pump()
            await until(lambda: len(sent) == 1)
            start = dict(sent[0].attributes)
            assert start["Acct-Status-Type"] == 1 and start["User-Name"] == b"carol"
            assert start["Framed-IP-Address"] == "10.3.0.1" and sent[0].classes == (b"class-x",)
            c = d.dp.children[0x100]
            c.bytes_in, c.packets_in, c.bytes_out, c.packets_out = 1000, 10, 2000, 20
            mgr.events = [  # DPD found the peer dead (the core's events, in its order)
                ev.PeerDead(7, "rw"),
                ev.ChildSaDeleted(0x100, 0x101, "peer dead", 7, "rw", "net"),
                ev.IkeSaDeleted(7, "rw", "peer dead"),
                ev.IkeSaDeleted(8, "psk", "deleted by peer"),
            ]
            d.pump()
            await until(lambda: len(sent) == 2)
            stop = dict(sent[1].attributes)
            assert stop["Acct-Status-Type"] == 2 and stop["Acct-Terminate-Cause"] == 3
            assert (stop["Acct-Input-Octets"], stop["Acct-Output-Packets"]) == (1000, 20)
            await asyncio.sleep(0.05)
            assert len(sent) == 2  # nothing for the PSK IKE SA
        finally:
            await d.close()
            srv.close()
        assert d.accounting is None

    asyncio.run(go())
