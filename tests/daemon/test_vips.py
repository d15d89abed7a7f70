"""Virtual IPs in the daemon (RFC 7296 §2.19): the address table on the TUN device,
the vip_hook runner, TunDevice address handling, and two daemons on loopback -- a road
warrior getting an address from a gateway's pool, pinging through it with that source,
``pools``/``status`` control requests, release on ``down``."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pyipsec.cli import format_pools, format_status
from pyipsec.config.loader import load_config
from pyipsec.daemon import vips as vips_mod
from pyipsec.daemon.control import ControlError
from pyipsec.daemon.runtime import Daemon
from pyipsec.daemon.tun import TunDevice
from pyipsec.daemon.vips import HookRunner, VirtualIpTable
from pyipsec.ikev2.events import VirtualIpsAssigned

from .test_runtime import _recv, _until, icmp, loopback_pair


class VipTun:
    """A TUN double with addresses and routes (with their source)."""

    def __init__(self) -> None:
        self.fd_pair = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.fd_pair[0].setblocking(False)
        self.fd = self.fd_pair[0].fileno()
        self.outside = self.fd_pair[1]
        self.outside.settimeout(3)
        self.name = "vip0"
        self.mtu = 1400
        self.addresses: list[str] = []
        self.route_src: dict[str, str | None] = {}
        self.log: list[tuple[str, str]] = []

    @property
    def routes(self) -> list[str]:
        return sorted(self.route_src)

    def add_route(self, net: str, prefsrc: str | None = None) -> bool:
        self.route_src[net] = prefsrc
        return True

    def prune_routes(self, keep: set[str]) -> list[str]:
        gone = [r for r in self.route_src if r not in keep]
        for r in gone:
            del self.route_src[r]
        return gone

    def routes_containing(self, ip: object) -> list[str]:
        return [r for r in self.routes if ip in ipaddress.ip_network(r)]

    def add_address(self, address: str) -> bool:
        self.addresses.append(address)
        self.log.append(("add", address))
        return True

    def remove_address(self, address: str) -> None:
        self.addresses.remove(address)
        self.log.append(("remove", address))
        for net, src in list(self.route_src.items()):
            if src == address:
                self.route_src[net] = None

    def close(self) -> None:
        for s in self.fd_pair:
            s.close()


def assigned(ike_id: int, *local: str, dns: tuple[str, ...] = ()) -> VirtualIpsAssigned:
    return VirtualIpsAssigned(ike_id, "rw", local=local, dns=dns, remote_id="gw")


# --------------------------------------------------------------------------- the table


def test_table_puts_addresses_on_the_tun_and_counts_holders() -> None:
    tun = VipTun()
    hooks: list[dict[str, str]] = []
    table = VirtualIpTable(lambda: tun, hooks.append)
    table.assigned(assigned(1, "10.3.0.1", "2001:db8:ee::1", dns=("10.2.0.53",)))
    assert tun.addresses == ["10.3.0.1", "2001:db8:ee::1"]
    assert table.sources(1) == ("10.3.0.1/32", "2001:db8:ee::1/128")
    assert table.sources(9) == ()
    up = hooks[-1]
    assert (up["PYIPSEC_VERB"], up["PYIPSEC_VIPS"], up["PYIPSEC_DNS"]) == (
        "up", "10.3.0.1 2001:db8:ee::1", "10.2.0.53",
    )  # fmt: skip
    assert up["PYIPSEC_TUN"] == "vip0" and up["PYIPSEC_IKE_ID"] == "1"
    table.rekeyed(1, 2)  # an IKE rekey: nothing changes on the host
    assert tun.log == [("add", "10.3.0.1"), ("add", "2001:db8:ee::1")] and len(hooks) == 1
    table.assigned(assigned(3, "10.3.0.1"))  # a reauthentication holds it too
    assert tun.addresses.count("10.3.0.1") == 1
    table.gone(2)
    assert tun.addresses == ["10.3.0.1"]  # still held by #3
    assert hooks[-1]["PYIPSEC_VERB"] == "down" and hooks[-1]["PYIPSEC_IKE_ID"] == "2"
    assert [s["ike_id"] for s in table.status()] == [3]
    table.close()
    assert tun.addresses == [] and table.status() == []
    table.gone(3)  # twice: nothing happens


def test_table_leases_of_a_gateway_are_not_put_on_the_tun() -> None:
    tun = VipTun()
    hooks: list[dict[str, str]] = []
    table = VirtualIpTable(lambda: tun, hooks.append)
    table.assigned(VirtualIpsAssigned(5, "gw", remote=("10.3.0.7",), remote_id="carol"))
    assert tun.addresses == [] and hooks == [] and table.sources(5) == ()
    assert table.status()[0]["remote"] == ["10.3.0.7"]
    table.gone(5)
    assert hooks == []


def test_table_without_tun_support_still_tracks() -> None:
    table = VirtualIpTable(lambda: None)
    table.assigned(assigned(1, "10.3.0.1"))
    assert table.sources(1) == ("10.3.0.1/32",)
    table.gone(1)
    assert list(table.addresses()) == []


# --------------------------------------------------------------------------- the hook


def _script(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "hook.sh"
    p.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return p


def test_hook_runs_in_order_with_its_environment(tmp_path: Path) -> None:
    out = tmp_path / "out"
    hook = _script(tmp_path, f'echo "$PYIPSEC_VERB $PYIPSEC_VIPS $PYIPSEC_DNS" >> {out}\n')

    async def go() -> None:
        runner = HookRunner(str(hook), asyncio.get_running_loop())
        table = VirtualIpTable(lambda: None, runner.submit)
        table.assigned(assigned(1, "10.3.0.1", dns=("10.2.0.53", "2001:db8::53")))
        table.gone(1)
        await runner.close()
        assert runner.runs == 2

    asyncio.run(go())
    assert out.read_text().splitlines() == [
        "up 10.3.0.1 10.2.0.53 2001:db8::53",
        "down 10.3.0.1 10.2.0.53 2001:db8::53",
    ]


def test_hook_failures_and_timeouts_are_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    failing = _script(tmp_path, "echo oops; exit 3\n")
    slow = tmp_path / "slow.sh"
    slow.write_text("#!/bin/sh\nsleep 30\n")
    slow.chmod(0o700)
    monkeypatch.setattr(vips_mod, "HOOK_TIMEOUT", 0.2)

    async def go() -> None:
        loop = asyncio.get_running_loop()
        for path in (failing, slow, tmp_path / "missing"):
            runner = HookRunner(str(path), loop)
            runner.submit({"PYIPSEC_VERB": "up"})
            await runner.close()
            assert runner.runs == 1

    asyncio.run(go())
    assert "exited 3: oops" in caplog.text
    assert "killed after 0.2s" in caplog.text
    assert "vip_hook" in caplog.text and "missing" in caplog.text


# --------------------------------------------------------------------------- TunDevice


class RecordingTun(TunDevice):
    """A TunDevice whose netlink calls are recorded, not made."""

    def __init__(self) -> None:
        super().__init__("rec0")
        self.calls: list[tuple[Any, ...]] = []

    def _ipr_call(self, method: str, *args: Any, **kw: Any) -> Any:
        self.calls.append((method, *args, kw))
        return None


def test_tun_device_addresses_and_the_routes_using_them() -> None:
    tun = RecordingTun()
    assert tun.add_address("10.3.0.1") and tun.add_address("2001:db8:ee::1")
    assert tun.calls[0] == ("addr", "add", {"index": 0, "address": "10.3.0.1", "prefixlen": 32})
    assert tun.calls[1][-1]["prefixlen"] == 128 and tun.calls[1][-1]["flags"] == 0x02
    tun.add_route("10.2.0.0/16", None)  # at start, without a source
    tun.add_route("10.2.0.0/16", "10.3.0.1")  # the child's route, from the virtual IP
    tun.add_route("10.9.0.0/16", "10.3.0.1")
    tun.calls.clear()
    tun.remove_address("10.3.0.1")
    methods = [c[:2] for c in tun.calls]
    assert methods[:3] == [("route", "del"), ("route", "del"), ("addr", "del")]
    assert methods[3:] == [("route", "replace")]  # 10.2.0.0/16 back (the kernel flushes
    assert "prefsrc" not in tun.calls[3][-1]  # a device's routes with its last address)
    assert tun.routes == ["10.2.0.0/16"]
    # the route index (unroute_peer's lookup) follows: counted once, gone with its route
    ip = ipaddress.ip_address
    assert tun.routes_containing(ip("10.2.1.1")) == ["10.2.0.0/16"]
    assert tun.routes_containing(ip("10.9.1.1")) == []
    tun.remove_route("10.2.0.0/16", None)
    assert tun.routes_containing(ip("10.2.1.1")) == []


# --------------------------------------------------------------------------- two daemons


def _conf(tmp: Path, me: str, peer: str, port: int, gateway: bool, hook: Path | None) -> Path:
    sock = tmp / ("gw" if gateway else "rw") / "ctl.sock"
    if gateway:
        body = """
        [pools.rw]
        addrs = "10.3.0.0/29"
        dns = ["10.2.0.53"]
        split_include = ["10.2.0.0/16"]
        [connections.c]
        remote_addrs = ["%any"]
        pools = ["rw"]
        [connections.c.local]
        id = "gw.example.net"
        [connections.c.remote]
        id = "%any"
        [connections.c.children.net]
        local_ts = ["10.2.0.0/16"]
        """
    else:
        body = f"""
        [daemon]
        vip_hook = "{hook}"
        [connections.c]
        remote_addrs = ["{peer}"]
        vips = ["0.0.0.0"]
        [connections.c.local]
        id = "carol@example.net"
        [connections.c.remote]
        id = "gw.example.net"
        [connections.c.children.net]
        remote_ts = ["10.2.0.0/16"]
        """
    text = textwrap.dedent(body) + textwrap.dedent(f"""
    [daemon]
    listen = ["{me}"]
    ike_port = {port}
    control_socket = "{sock}"
    [connections.c]
    local_addrs = ["{me}"]
    local_port = {port}
    remote_port = {port}
    encap = true
    dpd_delay = 0
    [connections.c.children.net]
    esp_proposals = ["aes256gcm16"]
    [secrets.s]
    secret = "vip-test-psk-0123456789abcdef"
    """)
    # merge the two halves' [daemon] and connection tables (TOML forbids repeating them)
    p = tmp / ("gw.toml" if gateway else "rw.toml")
    p.write_text(_merge_tables(text))
    return p


def _merge_tables(text: str) -> str:
    tables: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("["):
            current = line
            tables.setdefault(current, [])
        else:
            tables.setdefault(current, []).append(line)
    return "\n".join(f"{t}\n" + "\n".join(body) for t, body in tables.items()) + "\n"


def test_road_warrior_between_two_daemons(tmp_path: Path) -> None:
    rw_ip, gw_ip, port = loopback_pair(78)
    out = tmp_path / "hook.out"
    hook = _script(tmp_path, f'echo "$PYIPSEC_VERB $PYIPSEC_VIPS $PYIPSEC_DNS" >> {out}\n')
    gconf = _conf(tmp_path, gw_ip, rw_ip, port, True, None)
    cconf = _conf(tmp_path, rw_ip, gw_ip, port, False, hook)
    gtun, ctun = VipTun(), VipTun()

    async def scenario() -> None:
        gw = Daemon(load_config(gconf), config_path=gconf, tun_factory=lambda c: gtun)
        rw = Daemon(load_config(cconf), config_path=cconf, tun_factory=lambda c: ctun)
        await gw.start()
        await rw.start()
        try:
            res = await rw.handle_request({"cmd": "up", "name": "c"})
            assert res["established"] is True
            await _until(lambda: len(gw.dp.children) == 1)
            assert ctun.addresses == ["10.3.0.1"]
            assert ctun.route_src["10.2.0.0/16"] == "10.3.0.1"  # the tunnel's source
            assert "10.3.0.1/32" in gtun.routes  # the leased address into the gateway TUN
            ctun.outside.send(icmp("10.3.0.1", "10.2.0.1"))
            assert await asyncio.to_thread(_recv, gtun) == icmp("10.3.0.1", "10.2.0.1")
            gtun.outside.send(icmp("10.2.0.1", "10.3.0.1", b"pong"))
            assert await asyncio.to_thread(_recv, ctun) == icmp("10.2.0.1", "10.3.0.1", b"pong")
            pools = await gw.handle_request({"cmd": "pools", "leases": True})
            (pool,) = pools["pools"]
            assert (pool["name"], pool["size"], pool["online"]) == ("rw", 6, 1)
            assert pool["leases"][0]["identity"] == "carol@example.net"
            assert "10.3.0.1" in format_pools(pools) and "carol@example.net" in format_pools(pools)
            with pytest.raises(ControlError, match="unknown pool 'x'"):
                await gw.handle_request({"cmd": "pools", "name": "x"})
            with pytest.raises(ControlError, match="'leases' must be"):
                await gw.handle_request({"cmd": "pools", "leases": "yes"})
            st = rw.status()
            assert st["vips"][0]["local"] == ["10.3.0.1"] and st["vips"][0]["dns"] == ["10.2.0.53"]
            text = format_status(json.loads(json.dumps(st)))
            assert "virtual IP 10.3.0.1 (DNS 10.2.0.53; subnets 10.2.0.0/16)" in text
            gtext = format_status(json.loads(json.dumps(gw.status())))
            assert "leased 10.3.0.1 to carol@example.net" in gtext
            assert "rw" in gtext and "10.3.0.0/29" in gtext
            # an IKE rekey keeps the address on the TUN
            await rw.handle_request({"cmd": "rekey", "name": "c", "ike": True})
            await _until(lambda: any(sa["id"] != 1 for sa in rw.status()["ike_sas"]
                                     if sa["state"] == "established"))  # fmt: skip
            assert ctun.log == [("add", "10.3.0.1")]
            await rw.handle_request({"cmd": "down", "name": "c"})
            await _until(lambda: ctun.addresses == [])
            await _until(lambda: gw.core.pools_status()[0]["offline"] == 1)
            await _until(lambda: out.exists() and len(out.read_text().splitlines()) == 2)
        finally:
            await rw.shutdown()
            await gw.shutdown()

    asyncio.run(scenario())
    assert out.read_text().splitlines() == ["up 10.3.0.1 10.2.0.53", "down 10.3.0.1 10.2.0.53"]
    assert os.path.exists(hook)


@pytest.mark.netns
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")
@pytest.mark.skipif(shutil.which("ip") is None, reason="needs iproute2")
def test_virtual_ip_on_a_real_tun_in_a_namespace() -> None:
    """The address lands on the TUN device, routes use it as their source, and taking
    it off restores the route without it (pyroute2, a private namespace)."""
    ns = f"pyipsec-test-{os.getpid()}-vip"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        code = textwrap.dedent(
            """
            import subprocess
            from pyipsec.daemon.tun import TunDevice
            def sh(*a):
                return subprocess.run(a, capture_output=True, text=True).stdout
            t = TunDevice("pyv0", 1400).open(())
            assert t.add_route("203.0.113.64/26")
            assert t.add_address("203.0.113.193") and t.add_address("2001:db8:ee::1")
            assert t.add_address("203.0.113.193")  # already there: fine
            assert "inet 203.0.113.193/32" in sh("ip", "addr", "show", "pyv0")
            assert "inet6 2001:db8:ee::1/128" in sh("ip", "addr", "show", "pyv0")
            assert t.add_route("203.0.113.64/26", "203.0.113.193")
            assert "src 203.0.113.193" in sh("ip", "route", "show", "203.0.113.64/26")
            t.remove_address("203.0.113.193")
            assert "203.0.113.193" not in sh("ip", "addr", "show", "pyv0")
            route = sh("ip", "route", "show", "203.0.113.64/26")
            assert "dev pyv0" in route and "src" not in route, route
            t.remove_address("2001:db8:ee::1")
            t.close()
            print("vip-ok")
            """
        )
        r = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-c", code],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert "vip-ok" in r.stdout, r.stderr
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
