"""Reload: TUN routes of removed connections are withdrawn, daemon-level changes that
need a restart are reported (no namespaces, no IKE peer: a fake TUN device)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pyipsec import cli
from pyipsec.config.loader import load_config
from pyipsec.daemon.routes import unroute_peer
from pyipsec.daemon.runtime import Daemon
from pyipsec.daemon.tun import TunDevice


class PruningTun:
    """A fake TUN with the route bookkeeping of :class:`TunDevice`."""

    def __init__(self) -> None:
        self.pair = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.fd = self.pair[0].fileno()
        self.name = "fake0"
        self.mtu = 1400
        self.keys: set[tuple[str, str | None]] = set()

    @property
    def routes(self) -> list[str]:
        return sorted(n for n, _ in self.keys)

    def add_route(self, net: str, prefsrc: str | None = None) -> bool:
        self.keys.add((net, prefsrc))
        return True

    def routes_containing(self, ip: object) -> list[str]:
        return [r for r in self.routes if ip in ipaddress.ip_network(r)]

    def add_address(self, address: str) -> bool:
        return True

    def remove_address(self, address: str) -> None:
        pass

    def prune_routes(self, keep: set[str]) -> list[str]:
        gone = sorted(k for k in self.keys if k[0] not in keep)
        self.keys -= set(gone)
        return [n for n, _ in gone]

    def close(self) -> None:
        for s in self.pair:
            s.close()


def _conf(path: Path, conns: dict[str, str], listen: str = "127.0.0.1") -> Path:
    text = f"""
    [daemon]
    listen = ["{listen}"]
    ike_port = 0
    natt_port = 0
    [daemon.tun]
    addresses = ["203.0.113.1/32"]
    """
    for name, remote in conns.items():
        text += f"""
    [connections.{name}]
    remote_addrs = ["192.0.2.2"]
    [connections.{name}.local]
    id = "left.example.net"
    [connections.{name}.remote]
    id = "right.example.net"
    [connections.{name}.children.{name}net]
    local_ts = ["203.0.113.0/26"]
    remote_ts = ["{remote}"]
    """
    text += """
    [secrets.s]
    ids = ["left.example.net", "right.example.net"]
    secret = "reload-routes-test-psk-0123456789"
    """
    path.write_text(textwrap.dedent(text))
    return path


def test_reload_withdraws_routes_and_reports_restart_keys(tmp_path: Path) -> None:
    path = _conf(tmp_path / "c.toml", {"a": "203.0.113.64/26", "b": "203.0.113.128/26"})
    tun = PruningTun()

    async def scenario() -> None:
        d = Daemon(load_config(path), config_path=path, control=False,
                   tun_factory=lambda _cfg: tun)
        await d.start()
        try:
            assert tun.routes == ["203.0.113.128/26", "203.0.113.64/26"]
            cache = d.source_addresses
            cache("127.0.0.1")
            assert cache._cache
            # unchanged daemon settings: nothing to restart, routes kept
            assert d.reload() == {"connections": ["a", "b"]}
            assert not cache._cache  # source addresses are looked up afresh
            assert tun.routes == ["203.0.113.128/26", "203.0.113.64/26"]
            # b removed, the listen address changed: b's route goes, a restart is needed
            _conf(path, {"a": "203.0.113.64/26"}, listen="127.0.0.2")
            res = d.reload()
            assert res == {"connections": ["a"], "restart_needed": ["listen_addrs"]}
            assert tun.routes == ["203.0.113.64/26"]
        finally:
            await d.close()

    asyncio.run(scenario())


def test_tun_device_prune_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    t = TunDevice("pyt0")
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(t, "_ipr_call", lambda m, *a, **kw: calls.append((m, *a, kw)))
    assert t.add_route("203.0.113.64/26", "203.0.113.1") and t.add_route("2001:db8:b::/64")
    assert t.prune_routes({"203.0.113.64/26"}) == ["2001:db8:b::/64"]
    assert t.routes == ["203.0.113.64/26"]
    assert calls[-1] == ("route", "del", {"dst": "2001:db8:b::/64", "oif": 0})
    assert t.prune_routes({"203.0.113.64/26"}) == []


def test_tun_device_finds_the_routes_containing_an_address(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The route index of TunDevice (what each IKE datagram asks, unroute_peer): every
    routed network that contains the address, by prefix length, kept through removals
    (one network routed with two source addresses counts twice)."""
    t = TunDevice("pyt0")
    monkeypatch.setattr(t, "_ipr_call", lambda m, *a, **kw: None)
    ip = ipaddress.ip_address
    assert t.add_route("203.0.113.64/26", "203.0.113.1") and t.add_route("203.0.113.64/26")
    assert t.add_route("203.0.0.0/16") and t.add_route("2001:db8:b::/64")
    assert t.add_route("203.0.113.64/26")  # again: idempotent, counted once
    assert sorted(t.routes_containing(ip("203.0.113.70"))) == ["203.0.0.0/16",
                                                                "203.0.113.64/26"]
    assert t.routes_containing(ip("203.0.114.1")) == ["203.0.0.0/16"]
    assert t.routes_containing(ip("2001:db8:b::1")) == ["2001:db8:b::/64"]
    assert t.routes_containing(ip("192.0.2.1")) == []
    t.remove_route("203.0.113.64/26", "203.0.113.1")
    assert "203.0.113.64/26" in t.routes_containing(ip("203.0.113.70"))
    t.remove_route("203.0.113.64/26")
    assert t.routes_containing(ip("203.0.113.70")) == ["203.0.0.0/16"]
    unroute_peer(t, "203.0.5.5")  # a peer inside the /16: that route is withdrawn
    assert t.routes == ["2001:db8:b::/64"]
    assert t.routes_containing(ip("203.0.5.5")) == []


def test_cli_reload_prints_restart_keys(monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    class Client:
        def __init__(self, path: str, timeout: float = 10.0) -> None:
            pass

        def call(self, cmd: str, **args: Any) -> Any:
            return {"connections": ["a"], "restart_needed": ["listen_addrs", "tun_mtu"]}

    monkeypatch.setattr(cli, "ControlClient", Client)
    assert cli.main(["reload"]) == 0
    out = capsys.readouterr().out
    assert "reloaded: a" in out
    assert "not applied until the daemon restarts: listen_addrs, tun_mtu" in out


def test_route_capturing_a_responders_peer_is_withdrawn(tmp_path: Path) -> None:
    """``remote_addrs = %any`` with the peer's own address as ``remote_ts``: the route
    cannot be checked against the peer at load time; the first IKE datagram from that
    peer withdraws it (else the answer would go into the TUN), and it is not routed
    again (e.g. by a reload) while a Child SA with that peer exists."""
    path = _conf(tmp_path / "c.toml", {"a": "192.0.2.2/32", "b": "203.0.113.128/26"})
    path.write_text(path.read_text().replace('remote_addrs = ["192.0.2.2"]',
                                             'remote_addrs = ["%any"]'))
    tun = PruningTun()

    async def scenario() -> None:
        d = Daemon(load_config(path), config_path=path, control=False,
                   tun_factory=lambda _cfg: tun)
        await d.start()
        try:
            assert tun.routes == ["192.0.2.2/32", "203.0.113.128/26"]
            d._on_ike(b"not ike", ("127.0.0.1", 500), ("192.0.2.9", 500))
            unroute_peer(tun, "not an address")
            assert tun.routes == ["192.0.2.2/32", "203.0.113.128/26"]
            d._on_ike(b"not ike", ("127.0.0.1", 500), ("192.0.2.2", 500))
            assert tun.routes == ["203.0.113.128/26"]
            # an SA with that peer exists: re-applying the policies does not route it
            d.dp.peers.add("192.0.2.2")  # what installing a Child SA with it does
            d.apply_policies(d.config.connections)
            assert tun.routes == ["203.0.113.128/26"]
            d.dp.peers.remove("192.0.2.2")
        finally:
            await d.close()

    asyncio.run(scenario())
