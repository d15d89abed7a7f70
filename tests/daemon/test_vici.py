"""The VICI server against a daemon with a fake IKE core: raw protocol, events,
misbehaving clients, Debian's real ``swanctl`` and the ``vici`` Python package."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import stat
import struct
import types
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from pyipsec.config.loader import DEFAULT_VICI_SOCKET, load_config_text
from pyipsec.daemon import vici as vici_mod
from pyipsec.daemon.runtime import Daemon
from pyipsec.daemon.vici import ike_sa_message, parse_suite
from pyipsec.daemon.vici_codec import (
    PacketType,
    decode_packet,
    encode_packet,
    frame,
)
from pyipsec.ikev2 import events as ev
from pyipsec.ikev2.api import ChildSaView, IkeSaView
from pyipsec.ikev2.state import ChildSaState, IkeSaState

from .fakes import FakeManager, child_info
from .test_runtime import FakeTun

CONF = """
[daemon]
listen = ["127.0.0.1"]
ike_port = 0
natt_port = 0
vici_socket = "{sock}"
[connections.c]
remote_addrs = ["127.0.0.2"]
[connections.c.children.net]
local_ts = ["203.0.113.0/26"]
remote_ts = ["203.0.113.64/26"]
[secrets.s]
secret = "x"
"""

SA: dict[str, Any] = {
    "name": "c", "id": 1, "state": "established", "role": "initiator",
    "local": {"address": "127.0.0.1", "port": 4500, "id": "left"},
    "remote": {"address": "127.0.0.2", "port": 4500, "id": "right"},
    "spi_i": "0102030405060708", "spi_r": "1112131415161718",
    "suite": "aes256gcm16-prfsha256-x25519",
    "nat": {"local": False, "remote": True, "encap": True, "forced": False},
    "established": 0.0, "rekey_at": 1e9, "expire_at": 2e9,
    "children": [{
        "name": "net", "state": "installed", "spi_in": "00000100", "spi_out": "00000101",
        "suite": "aes128gcm16", "mode": "tunnel", "encap": True,
        "local_ts": ["203.0.113.0/26"], "remote_ts": ["203.0.113.64/26"],
        "rekey_at": 1e9, "expire_at": 2e9, "bytes_in": 10, "bytes_out": 20,
        "packets_in": 1, "packets_out": 2, "installed": 0.0,
    }],
}  # fmt: skip


class Core(FakeManager):
    """An IKE SA with one Child SA; ``initiate`` establishes at once."""

    def __init__(self) -> None:
        super().__init__()
        self.sas = [SA]
        self.ike_views = [
            IkeSaView(1, "c", IkeSaState.ESTABLISHED, True, ("127.0.0.1", 4500),
                      ("127.0.0.2", 4500), "left", "right")
        ]  # fmt: skip
        self.child_views = [ChildSaView(1, "c", "net", 0x100, 0x101, ChildSaState.INSTALLED)]

    def initiate(
        self, conn_name: str, child_name: str | None, now: float, *, persistent: bool = False
    ) -> None:
        super().initiate(conn_name, child_name, now, persistent=persistent)
        self.events += [
            ev.IkeSaEstablished(2, "c", ("127.0.0.1", 4500), ("127.0.0.2", 4500), "l", "r"),
            ev.ChildSaInstalled(child_info(0x200, ike_id=2)),
        ]

    def terminate(self, target: int | str, now: float) -> int:
        super().terminate(target, now)
        self.events.append(ev.IkeSaDeleted(int(target), "c", "terminated"))
        return 1

    def delete_child(self, ike_id: int, spi_in: int, now: float) -> None:
        super().delete_child(ike_id, spi_in, now)
        self.events.append(ev.ChildSaDeleted(spi_in, spi_in + 1, "deleted", ike_id, "c", "net"))


Scenario = Callable[[Daemon, Core, str], Awaitable[None]]


def run(tmp_path: Path, scenario: Scenario, conf: str = CONF) -> None:
    sock = str(tmp_path / "charon.vici")
    core = Core()

    async def go() -> None:
        d = Daemon(
            load_config_text(conf.format(sock=sock)),
            manager_factory=lambda c: core,
            control=False,
            tun_factory=lambda c: FakeTun(),
        )
        await d.start()
        try:
            await scenario(d, core, sock)
        finally:
            await d.close()
        assert not os.path.exists(sock)

    asyncio.run(go())


class Client:
    """A raw VICI client."""

    def __init__(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.r, self.w = r, w

    @classmethod
    async def connect(cls, path: str) -> Client:
        return cls(*await asyncio.open_unix_connection(path))

    async def send(self, t: PacketType, name: str = "", msg: dict[str, Any] | None = None) -> None:
        self.w.write(frame(encode_packet(t, name, msg)))
        await self.w.drain()

    async def recv(self) -> Any:
        (n,) = struct.unpack("!I", await asyncio.wait_for(self.r.readexactly(4), 5))
        return decode_packet(await self.r.readexactly(n))

    async def cmd(self, name: str, msg: dict[str, Any] | None = None) -> Any:
        await self.send(PacketType.CMD_REQUEST, name, msg)
        return await self.recv()

    async def register(self, event: str) -> PacketType:
        await self.send(PacketType.EVENT_REGISTER, event)
        p = await self.recv()
        return PacketType(p.type)

    def close(self) -> None:
        self.w.close()


def test_config_key() -> None:
    base = "[daemon]\nlisten = ['127.0.0.1']\n"
    assert load_config_text(base).vici_socket == ""
    assert load_config_text(base + "vici_socket = true").vici_socket == DEFAULT_VICI_SOCKET
    assert load_config_text(base + "vici_socket = false").vici_socket == ""
    assert load_config_text(base + "vici_socket = '/x/v'").vici_socket == "/x/v"


def test_mapping() -> None:
    assert parse_suite("aes128-sha256-prfsha384-modp2048-esn") == {
        "encr-alg": "AES_CBC", "encr-keysize": 128, "integ-alg": "HMAC_SHA2_256_128",
        "prf-alg": "PRF_HMAC_SHA2_384", "dh-group": "MODP_2048", "esn": 1,
    }  # fmt: skip
    assert parse_suite("chacha20poly1305-ecp256")["encr-alg"] == "CHACHA20_POLY1305"
    m = ike_sa_message(SA | {"rekey_in": 10.4}, 100.0)
    assert m["state"] == "ESTABLISHED" and m["established"] == 100 and m["rekey-time"] == 10
    assert m["initiator"] == "yes" and m["nat-remote"] == "yes" and m["nat-local"] is None
    assert m["local-vips"] is None and m["remote-vips"] is None  # left out, as charon does
    vips = {"local": [], "remote": ["10.3.0.1", "2001:db8:3::1"], "dns": [], "nbns": []}
    m = ike_sa_message(SA | {"vips": vips}, 100.0)
    assert m["remote-vips"] == ["10.3.0.1", "2001:db8:3::1"] and m["local-vips"] is None


def test_raw_protocol(tmp_path: Path) -> None:
    async def scenario(d: Daemon, core: Core, sock: str) -> None:
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        c = await Client.connect(sock)
        p = await c.cmd("version")
        assert p.type == PacketType.CMD_RESPONSE and p.message["daemon"] == b"pyipsec"
        assert (await c.cmd("no-such-command")).type == PacketType.CMD_UNKNOWN
        assert await c.register("no-such-event") == PacketType.EVENT_UNKNOWN
        assert await c.register("list-sa") == PacketType.EVENT_CONFIRM
        await c.send(PacketType.CMD_REQUEST, "list-sas")
        e = await c.recv()
        assert e.type == PacketType.EVENT and e.name == "list-sa"
        sa = e.message["c"]
        assert sa["uniqueid"] == b"1" and sa["remote-id"] == b"right"
        assert sa["encr-alg"] == b"AES_GCM_16" and sa["dh-group"] == b"CURVE_25519"
        kid = sa["child-sas"]["net-1"]
        assert kid["spi-in"] == b"00000100" and kid["bytes-out"] == b"20"
        assert kid["local-ts"] == [b"203.0.113.0/26"] and kid["encap"] == b"yes"
        assert (await c.recv()).type == PacketType.CMD_RESPONSE
        # installed in the data plane: its live counters, not the core's
        live: Any = types.SimpleNamespace(bytes_in=7, packets_in=3, bytes_out=9, packets_out=4)
        d.dp.children[0x100] = live
        await c.send(PacketType.CMD_REQUEST, "list-sas")
        kid = (await c.recv()).message["c"]["child-sas"]["net-1"]
        assert (kid["bytes-in"], kid["packets-in"]) == (b"7", b"3")
        assert (kid["bytes-out"], kid["packets-out"]) == (b"9", b"4")
        del d.dp.children[0x100]
        assert (await c.recv()).type == PacketType.CMD_RESPONSE
        # filters
        await c.send(PacketType.CMD_REQUEST, "list-sas", {"ike-id": "7"})
        assert (await c.recv()).type == PacketType.CMD_RESPONSE
        p = await c.cmd("get-conns")  # VICI-loaded connections only, like charon's
        assert p.message == {"conns": []}
        assert "encryption" in (await c.cmd("get-algorithms")).message
        assert (await c.cmd("stats")).message["ikesas"]["total"] == b"1"
        p = await c.cmd("rekey", {"ike-id": "1"})
        assert p.message["success"] == b"yes" and ("rekey_ike", 1) in core.calls
        p = await c.cmd("rekey", {"child-id": "1"})
        assert p.message["matches"] == b"1" and ("rekey_child", (1, 0x100)) in core.calls
        p = await c.cmd("terminate", {"child": "net"})
        assert p.message["success"] == b"yes" and ("delete_child", (1, 0x100)) in core.calls
        p = await c.cmd("terminate", {"ike": "nope"})
        assert p.message["success"] == b"no"
        p = await c.cmd("initiate", {"child": "nope"})
        assert p.message["success"] == b"no" and b"not found" in p.message["errmsg"]
        p = await c.cmd("initiate", {"ike": "c", "timeout": "x"})
        assert p.message["success"] == b"no"
        p = await c.cmd("reload-settings")
        assert p.message["success"] == b"no"  # not started from a file
        # the server's own packet types from a client: that client is closed
        await c.send(PacketType.CMD_RESPONSE)
        assert await c.r.read() == b""
        c.close()

    run(tmp_path, scenario)


def test_events(tmp_path: Path) -> None:
    async def scenario(d: Daemon, core: Core, sock: str) -> None:
        c = await Client.connect(sock)
        for name in ("ike-updown", "child-updown", "ike-rekey", "child-rekey", "control-log"):
            assert await c.register(name) == PacketType.EVENT_CONFIRM
        p = await c.cmd("initiate", {"child": "net", "timeout": "5000"})
        seen = []
        while p.type == PacketType.EVENT:
            seen.append((p.name, p.message))
            p = await c.recv()
        assert p.type == PacketType.CMD_RESPONSE and p.message["success"] == b"yes"
        names = [n for n, _ in seen]
        assert names[0] == "control-log" and "ike-updown" in names and "child-updown" in names
        up = dict(seen)["child-updown"]
        assert up["up"] == b"yes" and up["c"]["child-sas"]["net-1"]["spi-in"] == b"00000200"
        core.events = [
            ev.ChildSaRekeyed(0x200, child_info(0x300, ike_id=2)),
            ev.ChildSaDeleted(0x200, 0x201, "rekeyed", 2, "c", "net"),
            ev.IkeSaRekeyed(2, 3, "c"),
            ev.IkeSaDeleted(3, "c", "gone"),
        ]
        d.pump()
        got = [(await c.recv()) for _ in range(4)]
        assert [g.name for g in got] == ["child-rekey", "child-updown", "ike-rekey", "ike-updown"]
        assert "up" not in got[3].message and got[3].message["c"]["uniqueid"] == b"3"
        # timeout -1: initiate returns at once
        p = await c.cmd("initiate", {"ike": "c", "timeout": "-1", "loglevel": "-1"})
        while p.type == PacketType.EVENT:
            p = await c.recv()
        assert p.message["success"] == b"yes"
        c.close()

    run(tmp_path, scenario)


def test_misbehaving_clients(tmp_path: Path) -> None:
    async def scenario(d: Daemon, core: Core, sock: str) -> None:
        good = await Client.connect(sock)
        # malformed message, oversized segment, unknown packet type: closed, nobody else
        for junk in (
            frame(b"\x00\x07version\x02"),
            struct.pack("!I", 10 << 20),
            frame(b"\x63"),
        ):
            bad = await Client.connect(sock)
            bad.w.write(junk)
            assert await asyncio.wait_for(bad.r.read(), 5) == b""
            bad.close()
        assert (await good.cmd("version")).type == PacketType.CMD_RESPONSE
        # a client that never reads its events is dropped, the daemon goes on
        slow = await Client.connect(sock)
        assert await slow.register("ike-updown") == PacketType.EVENT_CONFIRM
        server = d.vici
        assert server is not None
        old = vici_mod.MAX_CLIENT_BUFFER
        vici_mod.MAX_CLIENT_BUFFER = 1 << 16
        try:
            for i in range(2000):
                core.events.append(ev.IkeSaDeleted(i, "c" * 200, "x"))
            d.pump()
            await asyncio.sleep(0)
            assert len(server.clients) == 1  # only the good one is left
        finally:
            vici_mod.MAX_CLIENT_BUFFER = old
        assert (await good.cmd("version")).type == PacketType.CMD_RESPONSE
        good.close()
        slow.close()

    run(tmp_path, scenario)


def test_log_events(tmp_path: Path) -> None:
    import logging

    async def scenario(d: Daemon, core: Core, sock: str) -> None:
        c = await Client.connect(sock)
        assert await c.register("log") == PacketType.EVENT_CONFIRM
        logging.getLogger("pyipsec.ike").warning("hello %s", "vici")
        p = await c.recv()
        assert p.name == "log" and p.message["msg"] == b"hello vici"
        assert p.message["group"] == b"IKE" and p.message["level"] == b"0"
        c.close()

    run(tmp_path, scenario)


SWANCTL = shutil.which("swanctl")


async def swanctl(sock: str, *args: str) -> tuple[int, str]:
    """Debian's ``swanctl`` against the daemon's VICI socket: exit code and output."""
    assert SWANCTL is not None
    p = await asyncio.create_subprocess_exec(
        SWANCTL, *args, "--uri", f"unix://{sock}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(p.communicate(), 30)
    return p.returncode or 0, out.decode()


@pytest.mark.skipif(SWANCTL is None, reason="swanctl (strongswan-swanctl) not installed")
def test_real_swanctl(tmp_path: Path) -> None:
    assert SWANCTL is not None

    async def scenario(d: Daemon, core: Core, sock: str) -> None:
        rc, out = await swanctl(sock, "--version", "--daemon")
        assert rc == 0 and "pyipsec" in out, out
        rc, out = await swanctl(sock, "--stats")
        assert rc == 0 and "IKE_SAs: 1 total, 0 half-open" in out, out
        rc, out = await swanctl(sock, "--list-sas")
        assert rc == 0, out
        assert "c: #1, ESTABLISHED, IKEv2, 0102030405060708_i* 1112131415161718_r" in out
        assert "AES_GCM_16-256/PRF_HMAC_SHA2_256/CURVE_25519" in out
        assert "net: #1, reqid 1, INSTALLED, TUNNEL-in-UDP, ESP:AES_GCM_16-128" in out
        assert "in  00000100,     10 bytes,     1 packets" in out
        assert "remote 203.0.113.64/26" in out
        rc, out = await swanctl(sock, "--list-sas", "--raw")
        assert rc == 0 and "list-sa event {c {uniqueid=1 version=2 state=ESTABLISHED" in out
        rc, out = await swanctl(sock, "--list-conns")
        assert rc == 0 and "c: IKEv2" in out and "net: TUNNEL" in out, out
        rc, out = await swanctl(sock, "--initiate", "--child", "net")
        assert rc == 0 and "initiate completed successfully" in out, out
        assert "[IKE] initiating CHILD_SA 'net' of 'c'" in out
        assert ("initiate", ("c", "net")) in core.calls
        rc, out = await swanctl(sock, "--terminate", "--ike", "c")
        assert rc == 0 and "terminate completed successfully" in out, out
        assert ("terminate", 1) in core.calls
        rc, out = await swanctl(sock, "--rekey", "--ike", "c")
        assert rc == 0 and "rekey completed successfully" in out, out
        assert ("rekey_ike", 1) in core.calls
        rc, out = await swanctl(sock, "--initiate", "--child", "nope")
        assert rc != 0 and "not found" in out, out
        rc, out = await swanctl(sock, "--list-pols")  # no trap policy configured
        assert rc == 0 and out.strip() == "", out
        rc, out = await swanctl(sock, "--list-authorities")  # none: load-authority refused
        assert rc == 0 and out.strip() == "", out

    run(tmp_path, scenario)


def test_vici_package(tmp_path: Path) -> None:
    vici = pytest.importorskip("vici")
    import socket

    def client(sock: str) -> dict[str, Any]:
        s = socket.socket(socket.AF_UNIX)
        s.connect(sock)
        sess = vici.Session(s)
        try:
            return {
                "version": sess.version(),
                "sas": list(sess.list_sas()),
                "conns": list(sess.list_conns()),
                "initiate": list(sess.initiate({"child": "net", "timeout": 5000})),
                "rekey": sess.rekey({"ike": "c"}),
            }
        finally:
            s.close()

    async def scenario(d: Daemon, core: Core, sock: str) -> None:
        res = await asyncio.to_thread(client, sock)
        assert res["version"]["daemon"] == b"pyipsec"
        assert res["sas"][0]["c"]["child-sas"]["net-1"]["spi-out"] == b"00000101"
        assert list(res["conns"][0]) == ["c"]
        assert res["rekey"]["success"] == b"yes"

    run(tmp_path, scenario)


#: CONF plus a trap policy (start_action = trap) in a second connection
CONF_TRAP = CONF + """
[connections.t]
remote_addrs = ["127.0.0.3"]
[connections.t.children.trapped]
local_ts = ["203.0.113.0/26"]
remote_ts = ["198.51.100.0/24", "192.0.2.7[tcp/443]"]
start_action = "trap"
"""


def test_list_policies(tmp_path: Path) -> None:
    """``list-policies``: trap policies as charon streams them (``list-policy``), the
    ``ike``/``child`` filters; bypass and drop policies pyipsec does not have."""

    async def scenario(d: Daemon, core: Core, sock: str) -> None:
        c = await Client.connect(sock)
        assert await c.register("list-policy") is PacketType.EVENT_CONFIRM
        await c.send(PacketType.CMD_REQUEST, "list-policies", {"trap": b"yes"})
        ev1 = await c.recv()
        assert (ev1.type, ev1.name) == (PacketType.EVENT, "list-policy")
        pol = ev1.message["t/trapped"]
        assert pol["child"] == b"trapped" and pol["ike"] == b"t" and pol["mode"] == b"TUNNEL"
        assert pol["local-ts"] == [b"203.0.113.0/26"]
        assert pol["remote-ts"] == [b"198.51.100.0/24", b"192.0.2.7/32[6/443]"]
        assert int(pol["reqid"]) >= 1
        assert (await c.recv()).type == PacketType.CMD_RESPONSE  # one policy only
        for req in ({"trap": b"yes", "ike": b"c"}, {"trap": b"yes", "child": b"net"},
                    {"drop": b"yes", "pass": b"yes"}, {}):  # fmt: skip
            assert (await c.cmd("list-policies", req)).type == PacketType.CMD_RESPONSE
        c.close()
        if SWANCTL is not None:
            rc, out = await swanctl(sock, "--list-pols")
            assert rc == 0, out
            # swanctl 5.9 prints no reqid (6.0 does: "t/trapped, reqid 1, TUNNEL")
            assert re.search(r"^t/trapped, (reqid \d+, )?TUNNEL$", out, re.M), out
            assert "local:  203.0.113.0/26" in out
            assert "remote: 198.51.100.0/24 192.0.2.7/32[6/443]" in out, out

    run(tmp_path, scenario, CONF_TRAP)


def test_list_certs(tmp_path: Path) -> None:
    """``list-certs``: the certificates and keys loaded over VICI (``list-cert`` events),
    and Debian's ``swanctl --list-certs`` printing them."""
    from cryptography.hazmat.primitives import serialization

    from ..eap.pkiset import make_pki

    p = make_pki("Vici")
    der = serialization.Encoding.DER
    host = p.server.certificate
    assert host is not None
    key = p.server.private_key.private_bytes(
        der, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )

    async def scenario(d: Daemon, core: Core, sock: str) -> None:
        c = await Client.connect(sock)
        for name, msg in (
            ("load-cert", {"type": b"X509", "flag": b"CA", "data": p.ca.public_bytes(der)}),
            ("load-cert", {"type": b"X509", "flag": b"NONE", "data": host.public_bytes(der)}),
            ("load-key", {"type": b"any", "data": key}),
        ):
            assert (await c.cmd(name, msg)).message["success"] == b"yes"
        assert await c.register("list-cert") is PacketType.EVENT_CONFIRM
        await c.send(PacketType.CMD_REQUEST, "list-certs", {})
        got = [await c.recv() for _ in range(3)]
        assert [g.type for g in got[:2]] == [PacketType.EVENT] * 2
        assert got[2].type == PacketType.CMD_RESPONSE
        first, second = (g.message for g in got[:2])
        assert (first["flag"], first["has_privkey"]) == (b"NONE", b"yes")
        assert first["data"] == host.public_bytes(der)
        assert second["flag"] == b"CA" and "has_privkey" not in second
        await c.send(PacketType.CMD_REQUEST, "list-certs", {"type": b"X509", "flag": b"CA"})
        only = await c.recv()
        assert only.message["data"] == p.ca.public_bytes(der)
        assert (await c.recv()).type == PacketType.CMD_RESPONSE
        reply = await c.cmd("list-certs", {"type": b"NOPE"})
        assert reply.message["success"] == b"no" and b"invalid certificate type" in (
            reply.message["errmsg"])
        c.close()
        if SWANCTL is not None:
            rc, out = await swanctl(sock, "--list-certs")
            assert rc == 0, out
            assert "List of X.509 End Entity Certificates" in out, out
            assert "List of X.509 CA Certificates" in out, out
            assert "moon.example.net" in out and "has private key" in out, out
            assert "CN=Vici Root CA" in out, out

    run(tmp_path, scenario)


def test_install_and_uninstall_trap_policies(tmp_path: Path) -> None:
    """``install``/``uninstall`` (``swanctl --install/--uninstall``): a child config's
    trap policy at run time, listed by ``list-policies``; errors name what is missing."""

    async def policies(c: Client) -> list[str]:
        await c.send(PacketType.CMD_REQUEST, "list-policies", {"trap": b"yes"})
        names = []
        while (p := await c.recv()).type == PacketType.EVENT:
            names += list(p.message)
        return names

    async def scenario(d: Daemon, core: Core, sock: str) -> None:
        c = await Client.connect(sock)
        assert await c.register("list-policy") is PacketType.EVENT_CONFIRM
        assert await policies(c) == []
        for _ in range(2):  # a second install changes nothing
            reply = await c.cmd("install", {"child": b"net"})
            assert reply.message == {"success": b"yes"}
        assert await policies(c) == ["c/net"]
        flow = next(iter(d.dp.trap_policies()))
        assert (flow[0].conn, flow[0].child) == ("c", "net")
        reply = await c.cmd("uninstall", {"child": b"net", "ike": b"c"})
        assert reply.message == {"success": b"yes"} and await policies(c) == []
        reply = await c.cmd("uninstall", {"child": b"net"})
        assert reply.message["success"] == b"no"
        assert reply.message["errmsg"] == b"policy 'net' does not exist"
        reply = await c.cmd("install", {"child": b"nope"})
        assert reply.message["success"] == b"no" and b"not found" in reply.message["errmsg"]
        reply = await c.cmd("install", {"child": b"net", "ike": b"other"})
        assert reply.message["success"] == b"no" and b"no config named" in reply.message["errmsg"]
        c.close()
        if SWANCTL is not None:
            for args, want in ((("--install", "--child", "net"), "install completed successfully"),
                               (("--list-pols",), "c/net"),
                               (("--uninstall", "--child", "net"),
                                "uninstall completed successfully")):  # fmt: skip
                rc, out = await swanctl(sock, *args)
                assert rc == 0 and want in out, out

    run(tmp_path, scenario)


def test_counters(tmp_path: Path) -> None:
    """``get-counters``/``reset-counters`` (``swanctl --counters``): the core's IKE
    counters with charon's names, global, per connection and all; charon's errors."""
    from pyipsec.ikev2.constants import ExchangeType
    from pyipsec.ikev2.counters import COUNTER_NAMES

    async def scenario(d: Daemon, core: Core, sock: str) -> None:
        core.ike_counters.message(ExchangeType.IKE_AUTH, True, True, "c")
        core.ike_counters.rekeyed_child("c")
        c = await Client.connect(sock)
        got = (await c.cmd("get-counters", {})).message
        assert got["success"] == b"yes"
        (glob,) = got["counters"].values()
        assert list(got["counters"]) == [""] and list(glob) == list(COUNTER_NAMES)
        assert glob["ike-auth-in-req"] == b"1" and glob["child-rekey"] == b"1"
        got = (await c.cmd("get-counters", {"name": b"c"})).message
        assert got["counters"]["c"]["ike-auth-in-req"] == b"1"
        got = (await c.cmd("get-counters", {"name": b"nope"})).message
        assert got["success"] == b"no"
        assert got["errmsg"] == b"no counters found for this connection"
        got = (await c.cmd("get-counters", {"all": b"yes"})).message
        assert list(got["counters"]) == ["c"]
        assert (await c.cmd("reset-counters", {"name": b"c"})).message == {"success": b"yes"}
        assert ("reset_counters", ("c", False)) in core.calls
        got = (await c.cmd("get-counters", {"all": b"yes"})).message
        assert got["counters"] == {} and got["success"] == b"yes"
        c.close()
        if SWANCTL is not None:
            rc, out = await swanctl(sock, "--counters")
            assert rc == 0 and "global:" in out, out
            assert re.search(r"ike-auth-in-req\s*: 1", out), out
            rc, out = await swanctl(sock, "--counters", "--reset", "--all")
            assert rc == 0, out
            assert ("reset_counters", (None, True)) in core.calls

    run(tmp_path, scenario)
