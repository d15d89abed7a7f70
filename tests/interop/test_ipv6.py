"""IKE and ESP over outer IPv6 (left 2001:db8:51::2 <-> right 2001:db8:2::2, routed).

The IPv6 path of the topology is never NATed, so the module uses the ``nonat``
topology (its IPv4 side is irrelevant here).  Every daemon listens on both ``0.0.0.0``
and ``::`` (UDP 500 and 4500 for each family); the inner subnets are IPv4 and IPv6.

1. pyipsec <-> pyipsec: IKE on UDP 500 over IPv6, no NAT detected, ESP as raw IP
   protocol 50 over IPv6 (an ``AF_INET6`` raw socket delivers no IPv6 header, unlike
   IPv4); both inner families pinged both ways; the router counts IPv6 ESP and no UDP
   4500; ``status`` shows the IPv6 peers (plain addresses, ``addr[port]`` in child_sas);
   a Child SA rekey over IPv6; ``down`` empties both sides.
2. pyipsec <-> strongSwan over outer IPv6, pyipsec initiating and responding.
   strongSwan with kernel-libipsec fakes its NAT-D (UDP encapsulation), pyipsec follows
   to UDP 4500 over IPv6; pings both inner families both ways.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .pyipsec_daemon import PyipsecDaemon, pyipsec_toml
from .strongswan import Charon, ConnSpec
from .topology import (
    LEFT_INNER,
    LEFT_INNER6,
    LEFT_OUTER6,
    RIGHT_INNER,
    RIGHT_INNER6,
    RIGHT_OUTER6,
    Topology,
)

pytestmark = pytest.mark.interop

IKE = "aes256gcm16-prfsha256-x25519"
ESP = "aes256gcm16-x25519"
LISTEN = {"listen": ["0.0.0.0", "::"]}
COUNTERS = {
    "esp6": "meta nfproto ipv6 meta l4proto esp",
    "esp4": "meta nfproto ipv4 meta l4proto esp",
    "udp6_4500": "meta nfproto ipv6 udp dport 4500",
    "udp6_500": "meta nfproto ipv6 udp dport 500",
}

Factory = Callable[..., Any]


def _pairs(topo: Topology) -> list[tuple[str, str, str]]:
    return [(topo.left, LEFT_INNER, RIGHT_INNER), (topo.right, RIGHT_INNER, LEFT_INNER),
            (topo.left, LEFT_INNER6, RIGHT_INNER6), (topo.right, RIGHT_INNER6, LEFT_INNER6)]


def _ping_ok(topo: Topology, count: int = 2) -> None:
    for ns, src, dst in _pairs(topo):
        assert topo.ping(ns, dst, count=count, source=src) == (count, count), f"{src} -> {dst}"


def _py_up(d: PyipsecDaemon) -> bool:
    return (any(str(sa.get("state", "")).upper() == "ESTABLISHED" for sa in d.ike_sas())
            and bool(d.child_sas()))


def _addr(text: str) -> tuple[str, int]:
    """``"2001:db8:2::2[500]"`` (child_sas ``local``/``remote``) -> (address, port)."""
    host, _, port = text.rstrip("]").rpartition("[")
    return host, int(port)


def _same_ip(a: str, b: str) -> bool:
    return ipaddress.ip_address(a) == ipaddress.ip_address(b)


def _py(topo: Topology, side: str, tmp_path: Path, factory: Factory, *, tag: str = "",
        extra_daemon: dict[str, Any] | None = None, **kw: Any) -> PyipsecDaemon:
    state = tmp_path / f"{side}{tag}"
    if side == "left":
        kw.setdefault("remote_addrs", [RIGHT_OUTER6])
    else:
        kw.setdefault("local_addrs", [RIGHT_OUTER6])
    return factory(topo.left if side == "left" else topo.right, pyipsec_toml(
        side=side, state_dir=state, conn="py", proposals=IKE, esp_proposals=ESP,
        extra_daemon=extra_daemon or LISTEN, **kw), state_dir=state)


def _check_status(d: PyipsecDaemon, local: str, remote: str, *, encap: bool) -> None:
    (ike,) = d.ike_sas()
    assert _same_ip(ike["local"]["address"], local), ike["local"]
    assert _same_ip(ike["remote"]["address"], remote), ike["remote"]
    assert ike["nat"]["encap"] is encap, ike["nat"]
    port = 4500 if encap else 500
    assert ike["local"]["port"] == port and ike["remote"]["port"] == port, ike
    (child,) = d.child_sas()
    assert child["encap"] is encap
    lh, lp = _addr(child["local"])
    rh, rp = _addr(child["remote"])
    assert _same_ip(lh, local) and _same_ip(rh, remote), child
    if encap:
        assert (lp, rp) == (4500, 4500), child
    listen = d.status()["listen"]
    assert any(":" in entry.rpartition("[")[0] for entry in listen), listen


def test_pyipsec_pair_outer_ipv6(nonat_topology: Topology, tmp_path: Path,
                                 pyipsec_factory: Factory) -> None:
    """pyipsec <-> pyipsec over outer IPv6: IKE on 500, raw ESP over IPv6, both inner
    families, status, a Child SA rekey, ``down``."""
    topo = nonat_topology
    right = _py(topo, "right", tmp_path, pyipsec_factory)
    left = _py(topo, "left", tmp_path, pyipsec_factory)
    topo.start_counters(COUNTERS)
    try:
        res = left.up("py", "net")
        assert res["established"] is True, res
        right.wait_for(_py_up, timeout=10)
        _check_status(left, LEFT_OUTER6, RIGHT_OUTER6, encap=False)
        _check_status(right, RIGHT_OUTER6, LEFT_OUTER6, encap=False)
        (lc,) = left.child_sas()
        (rc,) = right.child_sas()
        assert (lc["spi_in"], lc["spi_out"]) == (rc["spi_out"], rc["spi_in"])
        before = topo.counters()
        _ping_ok(topo, count=3)
        after = topo.counters()
        # 4 pings x (3 requests + 3 replies), each one IPv6 ESP packet through the router
        assert after["esp6"] - before["esp6"] >= 24, (before, after)
        assert after["esp4"] == 0 and after["udp6_4500"] == 0, after
        assert after["udp6_500"] >= 4, after  # IKE_SA_INIT + IKE_AUTH, both ways
        for d in (left, right):
            (child,) = d.child_sas()
            assert child["packets_in"] >= 6 and child["packets_out"] >= 6, child

        # a Child SA rekey over IPv6
        old = {lc["spi_in"], lc["spi_out"]}
        assert left.rekey_child("py", "net")
        for d in (left, right):
            d.wait_for(lambda x: len(x.child_sas()) == 1
                       and x.child_sas()[0]["spi_in"] not in old, timeout=10, interval=0.05)
        _ping_ok(topo, count=1)

        assert left.down("py")["terminated"] == 1
        for d in (right, left):
            d.wait_for(lambda x: not x.status()["ike_sas"] and not x.child_sas(),
                       timeout=5, interval=0.05)
    finally:
        topo.stop_counters()


def _charon_established(c: Charon) -> dict[str, Any] | None:
    return c.established("ss")


@pytest.mark.parametrize("initiator", ["pyipsec", "strongswan"])
def test_pyipsec_strongswan_outer_ipv6(nonat_topology: Topology, initiator: str,
                                       tmp_path: Path, charon_factory: Factory,
                                       pyipsec_factory: Factory) -> None:
    """pyipsec <-> strongSwan over outer IPv6 in both roles (the initiator is on the
    left); strongSwan's faked NAT-D makes both sides encapsulate in UDP 4500 over IPv6."""
    topo = nonat_topology
    if initiator == "pyipsec":
        charon = charon_factory(topo.right, ConnSpec(
            name="ss", side="right", local_addrs=RIGHT_OUTER6, proposals=IKE,
            esp_proposals=ESP).render(), name="right")
        daemon = _py(topo, "left", tmp_path, pyipsec_factory)
        local, remote = LEFT_OUTER6, RIGHT_OUTER6
    else:
        # the responder listens on its concrete IPv6 address (no IPV6_PKTINFO path)
        daemon = _py(topo, "right", tmp_path, pyipsec_factory,
                     extra_daemon={"listen": ["0.0.0.0", RIGHT_OUTER6]})
        charon = charon_factory(topo.left, ConnSpec(
            name="ss", side="left", remote_addrs=RIGHT_OUTER6, proposals=IKE,
            esp_proposals=ESP).render(), name="left")
        local, remote = RIGHT_OUTER6, LEFT_OUTER6
    topo.start_counters(COUNTERS)
    try:
        if initiator == "pyipsec":
            res = daemon.up("py", "net")
            assert res["established"] is True, res
        else:
            charon.initiate("ss", "net", timeout=10)
        sa = charon.wait_for(_charon_established, timeout=10)
        daemon.wait_for(_py_up, timeout=10)
        assert _same_ip(sa["local-host"], remote) and _same_ip(sa["remote-host"], local), sa
        _check_status(daemon, local, remote, encap=True)
        # the IPv6 NAT-D hashes are right both ways: strongSwan sees no NAT but its own
        # fake one, pyipsec sees itself not behind a NAT and follows strongSwan's fake
        assert sa.get("nat-local", "no") == "no" and sa.get("nat-remote", "no") == "no", sa
        assert sa.get("nat-fake", "no") == "yes", sa
        (ike,) = daemon.ike_sas()
        assert ike["nat"]["local"] is False and ike["nat"]["remote"] is True, ike["nat"]
        before = topo.counters()
        _ping_ok(topo, count=2)
        after = topo.counters()
        assert after["udp6_4500"] - before["udp6_4500"] >= 16, (before, after)
        assert after["esp6"] == 0 and after["esp4"] == 0, after
        if initiator == "pyipsec":
            assert daemon.down("py")["terminated"] == 1
        else:
            charon.terminate(ike="ss")
        daemon.wait_for(lambda x: not x.status()["ike_sas"] and not x.child_sas(),
                        timeout=5, interval=0.05)
        charon.wait_for(lambda c: not c.ike_sas("ss"), timeout=5)
    finally:
        topo.stop_counters()
