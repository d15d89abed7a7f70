"""``load-pool`` / ``unload-pool`` / ``get-pools``: the translation of a swanctl.conf
``pools.<name>`` section (mapped attributes, refusals by name, malformed messages),
the commands against a daemon whose core holds a real lease manager
(:class:`pyipsec.pools.PoolRegistry`), and Debian's real ``swanctl --load-pools``,
``--list-pools [--leases]`` and ``--load-all``."""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
import socket
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from pyipsec.config.loader import ConfigError
from pyipsec.config.model import PoolConfig
from pyipsec.daemon import vici_load
from pyipsec.daemon.commands import load_daemon_config
from pyipsec.daemon.control import ControlError
from pyipsec.daemon.runtime import Daemon
from pyipsec.daemon.vici_pools import REFUSED_ATTRIBUTES, pools_from_vici
from pyipsec.pools import Lease, PoolRegistry, acquire

from .fakes import FakeManager
from .test_runtime import FakeTun
from .test_vici import Client, swanctl
from .test_vici_conns import Pki, b, psk_conn

SWANCTL = shutil.which("swanctl")

CONF = """
[daemon]
listen = ["127.0.0.1"]
ike_port = 0
natt_port = 0
vici_socket = "{sock}"
[pools.file4]
addrs = "198.51.100.0/26"
[connections.file]
remote_addrs = ["127.0.0.2"]
pools = ["file4"]
[connections.file.children.filenet]
local_ts = ["203.0.113.0/26"]
[secrets.s]
secret = "x"
"""


class PoolCore(FakeManager):
    """The fake core with the real lease manager behind ``load_pools`` /
    ``pools_status``; :meth:`lease` stands for a road warrior getting an address."""

    def __init__(self) -> None:
        super().__init__()
        self.registry = PoolRegistry()

    def load_pools(self, pools: Sequence[PoolConfig]) -> list[str]:
        super().load_pools(pools)
        return self.registry.load(pools)

    def pools_status(
        self, *, leases: bool = False, name: str | None = None
    ) -> list[dict[str, Any]]:
        return self.registry.status(leases=leases, name=name)

    def lease(self, pool: str, identity: str, version: int = 4) -> Lease:
        got = acquire(self.registry.get([pool]), identity, version, peer=("192.0.2.9", 4500))
        assert got is not None
        return got


Scenario = Callable[[Daemon, PoolCore, str], Awaitable[None]]


def run(tmp_path: Path, scenario: Scenario) -> None:
    sock = str(tmp_path / "charon.vici")
    conf = tmp_path / "pyipsec.toml"
    conf.write_text(CONF.format(sock=sock))
    conf.chmod(0o600)
    core = PoolCore()

    async def go() -> None:
        config = load_daemon_config(conf)
        core.load_pools(config.pools)  # what IkeManager(pools=...) does at start
        d = Daemon(config, config_path=conf, manager_factory=lambda c: core, control=False,
                   tun_factory=lambda c: FakeTun())  # fmt: skip
        await d.start()
        try:
            await scenario(d, core, sock)
        finally:
            await d.close()

    asyncio.run(go())


@pytest.fixture(autouse=True)
def _fast_settle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vici_load, "SETTLE", 0.05)


def pool_names(d: Daemon) -> list[str]:
    return [p.name for p in d.config.pools]


# --------------------------------------------------------------------------- translation


def test_mapped_pool_attributes() -> None:
    (rw,) = pools_from_vici(b({"rw": {
        "addrs": "10.3.0.0/24",
        "dns": ["10.3.0.53", "2001:db8::53"],
        "nbns": ["10.3.0.137"],
        "subnet": ["10.1.0.0/16"],
        "split_include": ["2001:db8:1::/48"],
    }}))  # fmt: skip
    ip, net = ipaddress.ip_address, ipaddress.ip_network
    assert (rw.name, rw.addrs, rw.first, rw.last) == (
        "rw", "10.3.0.0/24", ip("10.3.0.1"), ip("10.3.0.254"))  # strongSwan's mem_pool rules
    assert rw.dns == (ip("10.3.0.53"), ip("2001:db8::53")) and rw.nbns == (ip("10.3.0.137"),)
    # strongSwan's subnet (INTERNAL_IP4/6_SUBNET) and split_include: pyipsec's split_include
    assert rw.split_include == (net("10.1.0.0/16"), net("2001:db8:1::/48"))
    a, v6 = pools_from_vici(b({"a": {"addrs": "10.4.0.10-10.4.0.20"},
                               "v6": {"addrs": "2001:db8:3::/120", "dns": "2001:db8::53"}}))
    assert (a.first, a.last) == (ip("10.4.0.10"), ip("10.4.0.20"))
    assert v6.first == ip("2001:db8:3::1") and v6.dns == (ip("2001:db8::53"),)


@pytest.mark.parametrize("key", [*REFUSED_ATTRIBUTES, "25"])
def test_attributes_without_a_pyipsec_meaning_are_refused_by_name(key: str) -> None:
    with pytest.raises(ConfigError) as ei:
        pools_from_vici(b({"rw": {"addrs": "10.3.0.0/24", key: ["10.3.0.1"]}}))
    msg = str(ei.value)
    assert f"pools.rw.{key}: strongSwan's" in msg and "not supported by pyipsec" in msg


@pytest.mark.parametrize(
    ("msg", "expected"),
    [
        ({}, "load-pool needs sections"),
        ({"addrs": b"10.3.0.0/24"}, "load-pool needs sections"),
        ({"rw": {"addrs": b"10.3.0.0/24"}, "x": b"1"}, "load-pool needs sections"),
        ({"rw": {"dns": [b"10.3.0.1"]}}, "pools.rw.addrs: missing"),
        ({"rw": {"addrs": [b"10.3.0.0/24", b"10.4.0.0/24"]}}, "pools.rw.addrs: one subnet"),
        ({"rw": {"addrs": b"10.3.0.0/33"}}, "pools.rw.addrs"),
        ({"rw": {"addrs": b"10.3.0.9-10.3.0.1"}}, "pools.rw.addrs"),
        ({"rw": {"addrs": b"\xff\xfe"}}, "pools.rw.addrs: not UTF-8"),
        ({"rw": {"addrs": b"10.3.0.0/24", "dns": {"x": b"1"}}}, "pools.rw.dns: expected a value"),
        ({"rw": {"addrs": b"10.3.0.0/24", "dns": [b"ns1"]}}, "pools.rw.dns: invalid address"),
        ({"rw": {"addrs": b"10.3.0.0/24", "nbns": [b"2001:db8::1"]}}, "IPv4 only"),
        ({"rw": {"addrs": b"10.3.0.0/24", "subnet": [b"10.1/x"]}}, "pools.rw.split_include"),
        ({"rw": {"addrs": b"10.3.0.0/24", "dnss": [b"1.2.3.4"]}}, "pools.rw.dnss: unknown key"),
        ({"a.b": {"addrs": b"10.3.0.0/24"}}, "pools.a.b: invalid pool name"),
    ],
)  # fmt: skip
def test_malformed_pool_messages(msg: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as ei:
        pools_from_vici(msg)
    assert expected in str(ei.value)


# --------------------------------------------------------------------------- commands


def test_load_get_unload_pools(tmp_path: Path) -> None:
    async def scenario(d: Daemon, core: PoolCore, sock: str) -> None:
        c = await Client.connect(sock)
        rw4 = {"rw4": {"addrs": "10.3.0.0/24", "dns": ["10.3.0.53"]}}
        assert (await c.cmd("load-pool", b(rw4))).message == {"success": b"yes"}
        assert pool_names(d) == ["file4", "rw4"]
        assert core.calls[-1] == ("load_pools", ["file4", "rw4"])
        # get-pools: VICI's pools only, charon's layout
        empty = {"base": b"10.3.0.1", "size": b"254", "online": b"0", "offline": b"0"}
        assert (await c.cmd("get-pools")).message == {"rw4": empty}
        lease = core.lease("rw4", "carol@example.org")
        got = (await c.cmd("get-pools", {"leases": b"yes"})).message["rw4"]
        assert got["online"] == b"1" and got["leases"] == {"0": {
            "address": b"10.3.0.1", "identity": b"carol@example.org", "status": b"online"}}
        assert (await c.cmd("get-pools", {"name": b"rw4"})).message.keys() == {"rw4"}
        assert (await c.cmd("get-pools", {"name": b"file4"})).message == {}
        # same range, new attributes: leases kept; another range: refused while online
        rw4["rw4"]["dns"] = ["10.3.0.54"]
        assert (await c.cmd("load-pool", b(rw4))).message == {"success": b"yes"}
        assert str(d.config.pools[1].dns[0]) == "10.3.0.54"
        assert core.pools_status(name="rw4")[0]["online"] == 1
        p = await c.cmd("load-pool", b({"rw4": {"addrs": "10.3.1.0/24"}}))
        assert b"has 1 online lease(s), unable to replace" in p.message["errmsg"]
        assert d.config.pools[1].addrs == "10.3.0.0/24"
        p = await c.cmd("unload-pool", {"name": b"rw4"})
        assert p.message == {"success": b"no",
                             "errmsg": b"rw4 has 1 online lease(s), unable to unload"}
        lease.release()
        n = len(core.calls)
        assert (await c.cmd("unload-pool", {"name": b"rw4"})).message == {"success": b"yes"}
        assert core.calls[n:] == [("load_pools", ["file4"])] and pool_names(d) == ["file4"]
        assert (await c.cmd("get-pools")).message == {}
        p = await c.cmd("unload-pool", {"name": b"rw4"})
        assert p.message == {"success": b"no", "errmsg": b"rw4 not found"}
        c.close()

    run(tmp_path, scenario)


def test_pool_refusals(tmp_path: Path) -> None:
    async def scenario(d: Daemon, core: PoolCore, sock: str) -> None:
        c = await Client.connect(sock)

        async def err(cmd: str, msg: dict[str, Any]) -> str:
            p = await c.cmd(cmd, msg)
            assert p.message["success"] == b"no", p.message
            return str(p.message["errmsg"].decode())

        n = len(core.calls)
        assert "defined in the configuration file" in await err(
            "load-pool", b({"file4": {"addrs": "10.9.0.0/24"}}))
        assert "pools.x.addrs overlaps pools.file4.addrs" in await err(
            "load-pool", b({"x": {"addrs": "198.51.100.32-198.51.100.40"}}))
        assert "pools.b.addrs overlaps pools.a.addrs" in await err(
            "load-pool", b({"a": {"addrs": "10.5.0.0/24"}, "b": {"addrs": "10.5.0.128/25"}}))
        assert "pools.rw.dhcp: strongSwan's 'dhcp'" in await err(
            "load-pool", b({"rw": {"addrs": "10.3.0.0/24", "dhcp": ["10.3.0.1"]}}))
        assert "(it is in the configuration file)" in await err(
            "unload-pool", {"name": b"file4"})
        assert "missing pool name" in await err("unload-pool", {})
        assert len(core.calls) == n and pool_names(d) == ["file4"]  # nothing applied
        # a connection naming a pool: only once the pool exists
        conn = b({"rw": psk_conn(pools=["rw6"], remote_addrs=[])})
        refused = await err("load-conn", conn)
        assert "connections.rw.pools: unknown pool 'rw6'" in refused
        assert "swanctl --load-pools" in refused  # VICI's way to add it
        rw6 = b({"rw6": {"addrs": "2001:db8:3::/120"}})
        assert (await c.cmd("load-pool", rw6)).message == {"success": b"yes"}
        assert (await c.cmd("load-conn", conn)).message == {"success": b"yes"}
        assert d.config.connections[1].pools == ("rw6",)
        c.close()

    run(tmp_path, scenario)


def test_file_reload_keeps_vici_pools(tmp_path: Path) -> None:
    async def scenario(d: Daemon, core: PoolCore, sock: str) -> None:
        c = await Client.connect(sock)
        assert (await c.cmd("load-pool", b({"rw4": {"addrs": "10.3.0.0/24"}}))
                ).message == {"success": b"yes"}  # fmt: skip
        lease = core.lease("rw4", "carol@example.org")
        res = d.reload()
        assert "pool_problems" not in res and pool_names(d) == ["file4", "rw4"]
        assert core.pools_status(name="rw4")[0]["online"] == 1  # its lease survives
        assert core.registry.get(["rw4"])[0] is lease.pool
        assert d.config_path is not None
        text = d.config_path.read_text()
        for bad, why in (("[pools.rw4]\naddrs = \"10.7.0.0/24\"", "also loaded over VICI"),
                         ("[pools.o]\naddrs = \"10.3.0.200/29\"", "pools.o.addrs overlaps "
                          "pool rw4 loaded over VICI")):  # fmt: skip
            d.config_path.write_text(text + bad + "\n")
            with pytest.raises(ControlError, match=why):
                d.reload()
            assert pool_names(d) == ["file4", "rw4"]
        c.close()

    run(tmp_path, scenario)


def test_a_reply_too_large_for_vici_becomes_an_error(tmp_path: Path) -> None:
    """The leases of a big pool exceed VICI's 512 KiB packet: the client gets an error
    reply (never silence), and the pool without its leases."""

    async def scenario(d: Daemon, core: PoolCore, sock: str) -> None:
        c = await Client.connect(sock)
        assert (await c.cmd("load-pool", b({"big": {"addrs": "10.16.0.0/16"}}))
                ).message == {"success": b"yes"}  # fmt: skip
        for i in range(10_000):
            core.lease("big", f"user{i}@example.org")
        p = await c.cmd("get-pools", {"leases": b"yes"})
        assert p.message["success"] == b"no"
        assert b"get-pools: the reply exceeds VICI's packet size" in p.message["errmsg"]
        p = await c.cmd("get-pools")
        assert p.message["big"]["online"] == b"10000"
        c.close()

    run(tmp_path, scenario)


# --------------------------------------------------------------------------- swanctl

SWANCTL_CONF = """
connections {
    rw {
        local_addrs = 192.0.2.1
        pools = rw4, rw6
        local { auth = psk
                id = moon.example.net }
        remote { auth = psk }
        children { net { local_ts = 10.1.0.0/16 } }
    }
}
pools {
    rw4 {
        addrs = 10.3.0.0/24
        dns = 10.3.0.53, 10.3.0.54
        subnet = 10.1.0.0/16
    }
%(more)s
}
secrets {
    ike-rw { secret = 0x736563726574 }
}
"""

RW6 = "    rw6 { addrs = 2001:db8:3::/120 }"


def swanctl_dir(tmp: Path, more: str = RW6) -> Path:
    top = tmp / "swanctl"
    for sub in ("x509", "x509ca", "x509crl", "pubkey", "private"):
        (top / sub).mkdir(parents=True, exist_ok=True)
    conf = top / "swanctl.conf"
    conf.write_text(SWANCTL_CONF % {"more": more})
    return conf


@pytest.mark.skipif(SWANCTL is None, reason="swanctl (strongswan-swanctl) not installed")
def test_real_swanctl_pools(tmp_path: Path) -> None:
    conf = swanctl_dir(tmp_path)

    async def scenario(d: Daemon, core: PoolCore, sock: str) -> None:
        rc, out = await swanctl(sock, "--load-all", "--file", str(conf))
        assert rc == 0, out
        assert "loaded pool 'rw4'" in out and "successfully loaded 2 pools, 0 unloaded" in out
        assert "successfully loaded 1 connections" in out, out
        assert pool_names(d) == ["file4", "rw4", "rw6"]
        rw = d.config.connections[1]
        assert rw.pools == ("rw4", "rw6") and rw.children[0].remote_ts == ()
        rw4 = d.config.pools[1]
        assert [str(a) for a in rw4.dns] == ["10.3.0.53", "10.3.0.54"]
        assert [str(n) for n in rw4.split_include] == ["10.1.0.0/16"]
        core.lease("rw4", "carol@example.org")
        core.lease("rw4", "dave@example.org").release()
        rc, out = await swanctl(sock, "--list-pools", "--leases")
        assert rc == 0, out
        lines = [" ".join(line.split()) for line in out.splitlines()]
        assert "rw4 10.3.0.1 1 / 1 / 254" in lines, out
        assert "10.3.0.1 online 'carol@example.org'" in lines, out
        assert "10.3.0.2 offline 'dave@example.org'" in lines, out
        assert "rw6 2001:db8:3::1 0 / 0 / 254" in lines, out
        assert not any(line.startswith("file4") for line in lines)  # the file's: not VICI's
        rc, out = await swanctl(sock, "--list-pools", "--name", "rw6")
        assert rc == 0 and "rw6" in out and "rw4" not in out, out
        # rw6 dropped from the file: unloaded; a refused attribute fails by name
        swanctl_dir(tmp_path, more="    bad { addrs = 10.8.0.0/24\n dhcp = 10.8.0.1 }")
        rc, out = await swanctl(sock, "--load-pools", "--file", str(conf))
        assert "loading pool 'bad' failed: pools.bad.dhcp: strongSwan's 'dhcp'" in out, out
        assert "loaded 1 of 2 pools, 1 failed to load, 1 unloaded" in out, out
        assert pool_names(d) == ["file4", "rw4"]
        # with an address online, unloading rw4 fails (charon's rule)
        conf.write_text("pools {\n}\n")
        rc, out = await swanctl(sock, "--load-pools", "--file", str(conf))
        assert "unloading pool 'rw4' failed: rw4 has 1 online lease(s)" in out, out
        assert pool_names(d) == ["file4", "rw4"]

    run(tmp_path, scenario)


def test_vici_package_pools(tmp_path: Path) -> None:
    vici = pytest.importorskip("vici")

    def client(sock: str) -> dict[str, Any]:
        s = socket.socket(socket.AF_UNIX)
        s.connect(sock)
        sess = vici.Session(s)
        try:
            out: dict[str, Any] = {}
            sess.load_pool({"rw4": {"addrs": "10.3.0.0/24", "dns": ["10.3.0.53"]}})
            out["pools"] = sess.get_pools({"leases": "yes"})
            try:
                sess.load_pool({"bad": {"addrs": "10.8.0.0/24", "server": ["10.8.0.1"]}})
            except vici.exception.CommandException as e:
                out["refused"] = str(e)
            sess.unload_pool({"name": "rw4"})
            out["after"] = sess.get_pools()
            return out
        finally:
            s.close()

    async def scenario(d: Daemon, core: PoolCore, sock: str) -> None:
        res = await asyncio.to_thread(client, sock)
        assert res["pools"]["rw4"]["base"] == b"10.3.0.1"
        assert res["pools"]["rw4"]["leases"] == {}
        assert "pools.bad.server: strongSwan's 'server'" in res["refused"]
        assert res["after"] == {}
        assert pool_names(d) == ["file4"]

    run(tmp_path, scenario)


GATEWAY_CONF = """
connections {
    rw {
        local_addrs = 192.0.2.1
        pools = rw4
        send_cert = always
        local { auth = pubkey
                certs = moon.pem
                id = moon.example.net }
        remote { auth = eap-mschapv2
                 eap_id = %any }
        children { net { local_ts = 10.1.0.0/16 } }
    }
}
pools {
    rw4 { addrs = 10.3.0.0/24
          dns = 10.3.0.53 }
}
secrets {
    eap-carol { id = carol
                secret = "carol's password" }
    eap-dave { id = dave
               secret = 0x64617665 }
}
"""


@pytest.mark.skipif(SWANCTL is None, reason="swanctl (strongswan-swanctl) not installed")
def test_real_swanctl_road_warrior_gateway(tmp_path: Path) -> None:
    """A road-warrior gateway's swanctl.conf as charon would run it: a certificate for
    the gateway, EAP-MSCHAPv2 users, a pool; ``swanctl --load-all`` loads all of it."""
    pki = Pki()
    conf = swanctl_dir(tmp_path)
    conf.write_text(GATEWAY_CONF)
    top = conf.parent
    (top / "x509ca" / "ca.pem").write_bytes(pki.pem(pki.ca))
    (top / "x509" / "moon.pem").write_bytes(pki.pem(pki.cert))
    key = top / "private" / "moon.key"
    key.write_bytes(pki.key_pem())
    key.chmod(0o600)

    async def scenario(d: Daemon, core: PoolCore, sock: str) -> None:
        rc, out = await swanctl(sock, "--load-all", "--file", str(conf))
        assert rc == 0, out
        assert "loaded eap secret 'eap-carol'" in out and "loaded pool 'rw4'" in out, out
        assert "successfully loaded 1 connections, 0 unloaded" in out, out
        rw = d.config.connections[1]
        assert (rw.local_auth, rw.remote_auth, rw.remote_eap_id) == (
            "pubkey", "eap-mschapv2", "%any")
        assert rw.eap_users == ((b"carol", b"carol's password"), (b"dave", b"dave"))
        assert rw.local_credentials is not None and rw.local_credentials.certificate == pki.cert
        assert rw.pools == ("rw4",) and pool_names(d) == ["file4", "rw4"]
        rc, out = await swanctl(sock, "--list-conns")
        assert rc == 0 and "remote EAP_MSCHAPV2 authentication:" in out, out
        assert "eap_id: %any" in out and "local public key authentication:" in out, out
        # a user removed from the file: unloaded, the gateway's users follow
        conf.write_text(GATEWAY_CONF.replace("eap-dave", "x-dave").replace(
            "x-dave { id = dave\n               secret = 0x64617665 }", ""))
        rc, out = await swanctl(sock, "--load-creds", "--file", str(conf))
        assert rc == 0, out
        await asyncio.sleep(0.2)  # the credential change settles
        assert d.config.connections[1].eap_users == ((b"carol", b"carol's password"),)

    run(tmp_path, scenario)
