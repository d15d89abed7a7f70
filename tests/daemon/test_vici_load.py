"""``load-conn``/``unload-conn``/``load-shared``/... against a daemon with a fake IKE
core: the raw protocol, Debian's real ``swanctl --load-all`` with a swanctl.conf
directory (PSK and certificates), and the ``vici`` Python package."""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from pyipsec.daemon import vici_load
from pyipsec.daemon.commands import load_daemon_config
from pyipsec.daemon.runtime import Daemon
from pyipsec.daemon.vici_codec import PacketType
from pyipsec.ikev2 import events as ev

from .fakes import FakeManager
from .test_runtime import FakeTun
from .test_vici import Client, swanctl
from .test_vici_conns import NOW, Pki, b, psk_conn

CONF = """
[daemon]
listen = ["127.0.0.1"]
ike_port = 0
natt_port = 0
vici_socket = "{sock}"
[connections.file]
remote_addrs = ["127.0.0.2"]
[connections.file.children.filenet]
local_ts = ["203.0.113.0/26"]
remote_ts = ["203.0.113.64/26"]
[secrets.s]
secret = "x"
"""

Scenario = Callable[[Daemon, FakeManager, str], Awaitable[None]]


def run(tmp_path: Path, scenario: Scenario) -> None:
    sock = str(tmp_path / "charon.vici")
    conf = tmp_path / "pyipsec.toml"
    conf.write_text(CONF.format(sock=sock))
    conf.chmod(0o600)
    core = FakeManager()

    async def go() -> None:
        d = Daemon(
            load_daemon_config(conf),
            config_path=conf,
            manager_factory=lambda c: core,
            control=False,
            tun_factory=lambda c: FakeTun(),
        )
        await d.start()
        try:
            await scenario(d, core, sock)
        finally:
            await d.close()

    asyncio.run(go())


def reloads(core: FakeManager) -> list[Any]:
    return [arg for name, arg in core.calls if name == "reload"]


def names(d: Daemon) -> list[str]:
    return [c.name for c in d.config.connections]


@pytest.fixture(autouse=True)
def _fast_settle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vici_load, "SETTLE", 0.05)


def test_load_and_unload_over_the_raw_protocol(tmp_path: Path) -> None:
    async def scenario(d: Daemon, core: FakeManager, sock: str) -> None:
        c = await Client.connect(sock)
        p = await c.cmd("load-shared", b({"id": "ike-gw", "type": "IKE", "data": "s3cret",
                                          "owners": ["moon.example.net"]}))  # fmt: skip
        assert p.message == {"success": b"yes"}
        assert (await c.cmd("get-shared")).message == {"keys": [b"ike-gw"]}
        child = {"local_ts": ["10.1.0.0/16"], "remote_ts": ["10.2.0.0/16"],
                 "start_action": "start"}  # fmt: skip
        p = await c.cmd("load-conn", b({"gw": psk_conn(children={"net": child})}))
        assert p.message == {"success": b"yes"}, p.message
        assert names(d) == ["file", "gw"] and reloads(core)[-1] == ["file", "gw"]
        gw = d.config.connections[1]
        assert gw.psk == b"s3cret" and gw.local_id == "moon.example.net"
        assert ("initiate", ("gw", "net")) in core.calls  # start_action = start
        # get-conns: VICI's only (swanctl --load-conns unloads what it lists)
        assert (await c.cmd("get-conns")).message == {"conns": [b"gw"]}
        # loading the same again changes nothing
        n = len(core.calls)
        assert (await c.cmd("load-conn", b({"gw": psk_conn(children={"net": child})}))
                ).message == {"success": b"yes"}  # fmt: skip
        assert len(core.calls) == n
        # errors: refused keys, names of the file, child names of other connections
        p = await c.cmd("load-conn", b({"gw2": psk_conn(updown="x", mobike="yes")}))
        err = p.message["errmsg"].decode()
        assert p.message["success"] == b"no" and "connections.gw2.mobike" in err
        p = await c.cmd("load-conn", b({"file": psk_conn()}))
        assert b"defined in the configuration file" in p.message["errmsg"]
        p = await c.cmd("load-conn", b({"tr": psk_conn(children={"t": {"mode": "transport"}})}))
        assert b"transport mode is not supported" in p.message["errmsg"]
        p = await c.cmd("load-conn", {"a": {}, "b": {}})
        assert b"exactly one section" in p.message["errmsg"]
        p = await c.cmd("load-conn", b({"r": psk_conn(remote={"auth": "eap-radius"})}))
        assert b"connections.r.remote.auth: eap-radius needs a RADIUS server" in \
            p.message["errmsg"]  # the file has no [eap_radius] server
        # unload
        p = await c.cmd("unload-conn", {"name": b"file"})
        assert p.message["success"] == b"no" and b"configuration file" in p.message["errmsg"]
        assert (await c.cmd("unload-conn", {"name": b"gw"})).message == {"success": b"yes"}
        assert names(d) == ["file"] and reloads(core)[-1] == ["file"]
        p = await c.cmd("unload-conn", {"name": b"gw"})
        assert p.message == {"success": b"no", "errmsg": b"unload: connection 'gw' not found"}
        assert (await c.cmd("unload-conn")).message["errmsg"] == b"unload: missing connection name"
        c.close()

    run(tmp_path, scenario)


def test_credential_changes_reach_loaded_connections(tmp_path: Path) -> None:
    async def scenario(d: Daemon, core: FakeManager, sock: str) -> None:
        c = await Client.connect(sock)
        assert (await c.cmd("load-conn", b({"gw": psk_conn()}))).message["success"] == b"yes"
        assert d.config.connections[1].psk == b""  # no secret yet: loads, warns
        shared = b({"id": "k", "type": "IKE", "data": "one", "owners": ["sun.example.net"]})
        assert (await c.cmd("load-shared", shared)).message["success"] == b"yes"
        await asyncio.sleep(0.2)
        assert d.config.connections[1].psk == b"one"
        # a burst of clear + load of the same secret (swanctl --load-all --clear):
        # the connection (and its SAs) stay untouched
        n = len(reloads(core))
        await c.cmd("clear-creds")
        await c.cmd("load-shared", shared)
        await asyncio.sleep(0.2)
        assert len(reloads(core)) == n
        # a changed secret applies at once to an initiate that follows
        shared["data"] = b"two"
        await c.cmd("load-shared", shared)
        await c.cmd("initiate", {"ike": b"gw", "timeout": b"-1"})
        assert d.config.connections[1].psk == b"two"
        p = await c.cmd("load-shared", b({"id": "e", "type": "XAUTH", "data": "x"}))
        assert p.message["success"] == b"no" and b"XAUTH" in p.message["errmsg"]
        assert (await c.cmd("unload-shared", {"id": b"k"})).message["success"] == b"yes"
        p = await c.cmd("unload-shared", {"id": b"k"})
        assert b"not found" in p.message["errmsg"]
        await asyncio.sleep(0.2)
        assert d.config.connections[1].psk == b""
        # charon's other credential and authority commands
        assert (await c.cmd("get-keys")).message == {"keys": []}
        assert (await c.cmd("get-authorities")).message == {"authorities": []}
        p = await c.cmd("load-authority", b({"ca": {"cacert": "x"}}))
        assert b"not supported by pyipsec" in p.message["errmsg"]
        assert (await c.cmd("flush-certs")).message["success"] == b"yes"
        c.close()

    run(tmp_path, scenario)


def test_file_reload_keeps_vici_connections(tmp_path: Path) -> None:
    async def scenario(d: Daemon, core: FakeManager, sock: str) -> None:
        c = await Client.connect(sock)
        assert (await c.cmd("load-conn", b({"gw": psk_conn()}))).message["success"] == b"yes"
        res = d.reload()
        assert res["connections"] == ["file", "gw"] and names(d) == ["file", "gw"]
        # a file that now defines a VICI connection's name is refused as a whole
        assert d.config_path is not None
        text = d.config_path.read_text()
        d.config_path.write_text(text.replace("[connections.file]", "[connections.gw]")
                                 .replace("connections.file.", "connections.gw."))  # fmt: skip
        with pytest.raises(Exception, match="also loaded over VICI"):
            d.reload()
        assert names(d) == ["file", "gw"]
        c.close()

    run(tmp_path, scenario)


def test_terminate_waits_and_streams_control_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """control-log carries the core's own log lines of the IKE SA being deleted."""
    import logging

    caplog.set_level(logging.INFO, logger="pyipsec")

    class Core(FakeManager):
        def terminate(self, target: int | str, now: float) -> int:
            logging.getLogger("pyipsec.ike").info("IKE SA %s (gw): sending DELETE", target)
            logging.getLogger("pyipsec.ike").info("IKE SA 99 (other): unrelated")
            self.events.append(ev.IkeSaDeleted(int(target), "gw", "deleted"))
            return 1

    async def scenario(d: Daemon, core: FakeManager, sock: str) -> None:
        from pyipsec.ikev2.api import IkeSaView
        from pyipsec.ikev2.state import IkeSaState

        core.ike_views = [IkeSaView(7, "gw", IkeSaState.ESTABLISHED, True, ("127.0.0.1", 500),
                                    ("127.0.0.2", 500), "l", "r")]  # fmt: skip
        c = await Client.connect(sock)
        await c.send(PacketType.EVENT_REGISTER, "control-log")
        assert (await c.recv()).type == PacketType.EVENT_CONFIRM
        await c.send(PacketType.CMD_REQUEST, "terminate", {"ike": b"gw"})
        lines = []
        while (p := await c.recv()).type == PacketType.EVENT:
            lines.append(p.message["msg"].decode())
        assert p.message["success"] == b"yes"
        assert lines == ["deleting IKE_SA gw[7]", "IKE SA 7 (gw): sending DELETE",
                         "IKE SA gw #7 deleted: deleted"]  # the core's, then the daemon's
        c.close()

    sock = str(tmp_path / "charon.vici")
    conf = tmp_path / "p.toml"
    conf.write_text(CONF.format(sock=sock))

    async def go() -> None:
        core = Core()
        d = Daemon(load_daemon_config(conf), manager_factory=lambda c: core, control=False,
                   tun_factory=lambda c: FakeTun())  # fmt: skip
        await d.start()
        try:
            await scenario(d, core, sock)
        finally:
            await d.close()

    asyncio.run(go())


# ---------------------------------------------------------------- real clients

SWANCTL = shutil.which("swanctl")

SWANCTL_CONF = """
connections {
    gw {
        local_addrs = 192.0.2.1
        remote_addrs = 192.0.2.2
        proposals = aes256gcm16-prfsha256-x25519
        dpd_delay = 30s
        local {
            auth = %(auth)s
            id = moon.example.net
            %(certs)s
        }
        remote {
            auth = %(auth)s
            id = sun.example.net
        }
        children {
            net {
                local_ts = 10.1.0.0/16
                remote_ts = 10.2.0.0/16
                esp_proposals = aes256gcm16
                rekey_time = 30m
            }
        }
    }
    %(extra)s
}
secrets {
    ike-gw {
        id-moon = moon.example.net
        id-sun = sun.example.net
        secret = 0x736563726574
    }
}
"""


def swanctl_dir(tmp: Path, *, auth: str = "psk", extra: str = "") -> Path:
    top = tmp / "swanctl"
    for sub in ("x509", "x509ca", "x509ocsp", "x509aa", "x509ac", "x509crl", "pubkey",
                "private", "rsa", "ecdsa", "bliss", "pkcs8", "pkcs12"):
        (top / sub).mkdir(parents=True, exist_ok=True)
    certs = "certs = moon.pem" if auth == "pubkey" else ""
    conf = top / "swanctl.conf"
    conf.write_text(SWANCTL_CONF % {"auth": auth, "certs": certs, "extra": extra})
    return conf


@pytest.mark.skipif(SWANCTL is None, reason="swanctl (strongswan-swanctl) not installed")
def test_real_swanctl_load_all_psk(tmp_path: Path) -> None:
    conf = swanctl_dir(tmp_path)

    async def scenario(d: Daemon, core: FakeManager, sock: str) -> None:
        rc, out = await swanctl(sock, "--load-all", "--file", str(conf))
        assert rc == 0, out
        assert "loaded ike secret 'ike-gw'" in out
        assert "loaded connection 'gw'" in out
        assert "successfully loaded 1 connections, 0 unloaded" in out
        gw = d.config.connections[1]
        assert (gw.name, gw.psk, gw.remote_id) == ("gw", b"secret", "sun.example.net")
        assert gw.children[0].lifetimes.rekey_time == 1800.0 and gw.dpd.interval == 30.0
        rc, out = await swanctl(sock, "--list-conns")
        assert rc == 0 and "gw: IKEv2" in out and "file: IKEv2" in out, out
        # again: nothing changes; a connection with a refused key fails by name
        n = len(reloads(core))
        rc, out = await swanctl(sock, "--load-all", "--file", str(conf))
        assert rc == 0 and len(reloads(core)) == n, out
        swanctl_dir(tmp_path, extra="bad { remote_addrs = 192.0.2.9\n mobike = yes\n"
                                    " children { b { updown = /bin/true } } }")  # fmt: skip
        rc, out = await swanctl(sock, "--load-conns", "--file", str(conf))
        assert rc != 0, out
        assert "loading connection 'bad' failed" in out
        assert "connections.bad.mobike: strongSwan's 'mobike = yes'" in out
        assert "connections.bad.children.b.updown" in out
        # dropped from the file: unloaded (the file's own connection stays)
        swanctl_dir(tmp_path)
        conf.write_text(conf.read_text().replace("gw {", "gw2 {", 1))
        rc, out = await swanctl(sock, "--load-conns", "--file", str(conf))
        assert "successfully loaded 1 connections, 1 unloaded" in out, out
        assert names(d) == ["file", "gw2"]
        conf.write_text("connections {\n}\n")  # (swanctl 5.9 has no --unload-conn)
        rc, out = await swanctl(sock, "--load-conns", "--file", str(conf))
        assert rc == 0 and "no connections found, 1 unloaded" in out, out
        assert names(d) == ["file"]

    run(tmp_path, scenario)


@pytest.mark.skipif(SWANCTL is None, reason="swanctl (strongswan-swanctl) not installed")
def test_real_swanctl_load_all_certificates(tmp_path: Path) -> None:
    conf = swanctl_dir(tmp_path, auth="pubkey")
    pki = Pki()
    top = conf.parent
    (top / "x509ca" / "ca.pem").write_bytes(pki.pem(pki.ca))
    (top / "x509" / "moon.pem").write_bytes(pki.pem(pki.cert))
    key = top / "private" / "moon.key"
    key.write_bytes(pki.key_pem())
    key.chmod(0o600)
    assert NOW is not None

    async def scenario(d: Daemon, core: FakeManager, sock: str) -> None:
        rc, out = await swanctl(sock, "--load-all", "--file", str(conf))
        assert rc == 0, out
        assert "opening directory" not in out, out
        assert "loaded certificate from" in out and "loaded ECDSA key from" in out, out
        gw = d.config.connections[1]
        assert gw.local_auth == "pubkey" and gw.local_credentials is not None
        assert gw.local_credentials.certificate == pki.cert
        assert gw.remote_trust is not None and gw.remote_trust.anchors == (pki.ca,)
        rc, out = await swanctl(sock, "--list-conns")
        assert rc == 0 and "local public key authentication" in out, out
        rc, out = await swanctl(sock, "--list-certs")  # what --load-all loaded
        assert rc == 0 and "List of X.509 End Entity Certificates" in out, out
        assert "has private key" in out and "List of X.509 CA Certificates" in out, out

    run(tmp_path, scenario)


def test_vici_package_loads(tmp_path: Path) -> None:
    vici = pytest.importorskip("vici")

    def client(sock: str) -> dict[str, Any]:
        s = socket.socket(socket.AF_UNIX)
        s.connect(sock)
        sess = vici.Session(s)
        try:
            out: dict[str, Any] = {}
            out["shared"] = sess.load_shared({"id": "k", "type": "IKE", "data": "pw",
                                              "owners": ["moon.example.net"]})  # fmt: skip
            out["get_shared"] = sess.get_shared()
            out["load"] = sess.load_conn({"gw": psk_conn()})
            out["conns"] = sess.get_conns()
            try:
                sess.load_conn({"bad": psk_conn(pools=["p"])})
            except vici.exception.CommandException as e:
                out["refused"] = str(e)
            out["unload"] = sess.unload_conn({"name": "gw"})
            return out
        finally:
            s.close()

    async def scenario(d: Daemon, core: FakeManager, sock: str) -> None:
        res = await asyncio.to_thread(client, sock)
        assert res["shared"] is None or res["shared"].get("success", b"yes") == b"yes"
        assert res["get_shared"]["keys"] == [b"k"]
        assert res["conns"]["conns"] == [b"gw"]
        assert "connections.bad.pools" in res["refused"]
        assert names(d) == ["file"]

    run(tmp_path, scenario)
