"""NAT traversal (RFC 7296 §2.23, RFC 3948) through the real nftables NAT router.

Scenarios (each docstring says what it proves):

1. NAT detection in both roles against strongSwan: the NAT flags on both sides, the floated
   ports (4500) and the NAT-mapped peer address, traffic through the NAT.
2. No NAT but forced encapsulation (``encap = true``), and strongSwan's own fake NAT-D
   (kernel-libipsec requires UDP encapsulation, so charon always fakes its source hash):
   pyipsec floats and encapsulates, nothing travels as raw ESP.
3. Raw ESP (IP protocol 50) between two pyipsec daemons without NAT: counted on the
   router, no ESP-in-UDP at all.
4. Several Child SAs on one IKE SA and two initiators behind the same NAT (same public
   address, different ports) to one pyipsec responder, all carrying traffic at once; one
   child deleted by its peer goes alone; SIGTERM on the responder deletes both IKE SAs.
5. The NAT mapping changes during traffic (the router's conntrack is flushed and its
   masquerade moved to another port range): the responder follows the new port without
   renegotiation; likewise when the first packet through the new mapping is an IKE
   request rather than ESP.

Budget: the topologies are module-scoped; everything here runs in well under two minutes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .pyipsec_daemon import (
    PyipsecDaemon,
    PyipsecError,
    child_toml,
    connection_toml,
    pyipsec_toml,
)
from .strongswan import LEFT_ID, RIGHT_ID, TEST_PSK, Charon, ConnSpec, swanctl_conf
from .topology import (
    LEFT2_INNER,
    LEFT2_INNER6,
    LEFT2_SUBNET,
    LEFT2_SUBNET6,
    LEFT_INNER,
    LEFT_INNER6,
    LEFT_OUTER,
    LEFT_SUBNET6,
    NAT_WAN,
    RIGHT_INNER,
    RIGHT_INNER6,
    RIGHT_OUTER,
    RIGHT_SUBNET,
    RIGHT_SUBNET6,
    Topology,
)

pytestmark = pytest.mark.interop

IKE = "aes256gcm16-prfsha256-x25519"
ESP = "aes256gcm16-x25519"
LEFT2_ID = "left2.example.net"
# what the router counts in scenarios 2 and 3 (forwarded packets, both directions)
COUNTERS = {"esp": "meta l4proto esp", "udp4500": "udp dport 4500"}

Factory = Callable[..., Any]


# -- helpers ------------------------------------------------------------------------


def _py_up(d: PyipsecDaemon, n_children: int = 1) -> bool:
    """pyipsec has an ESTABLISHED IKE SA and at least ``n_children`` installed children."""
    ike = d.ike_sas()
    return (any(str(sa.get("state", "")).upper() == "ESTABLISHED" for sa in ike)
            and len(d.child_sas()) >= n_children)


def _addr(text: str) -> tuple[str, int]:
    """``"192.0.2.1[4500]"`` (child_sas ``local``/``remote``) -> ("192.0.2.1", 4500)."""
    host, _, port = text.rstrip("]").partition("[")
    return host, int(port)


def _ping_ok(topo: Topology, pairs: list[tuple[str, str, str]], count: int = 2) -> None:
    for ns, src, dst in pairs:
        assert topo.ping(ns, dst, count=count, source=src) == (count, count), f"{src} -> {dst}"


LEFT_PAIRS = [("l", LEFT_INNER, RIGHT_INNER), ("r", RIGHT_INNER, LEFT_INNER),
              ("l", LEFT_INNER6, RIGHT_INNER6), ("r", RIGHT_INNER6, LEFT_INNER6)]


def _pairs(topo: Topology) -> list[tuple[str, str, str]]:
    ns = {"l": topo.left, "r": topo.right}
    return [(ns[k], s, d) for k, s, d in LEFT_PAIRS]


def _left_pyipsec(topo: Topology, tmp_path: Path, factory: Factory, **kw: Any) -> PyipsecDaemon:
    state = tmp_path / "left"
    return factory(topo.left, pyipsec_toml(side="left", state_dir=state, conn="py",
                                           remote_addrs=[RIGHT_OUTER], proposals=IKE,
                                           esp_proposals=ESP, **kw), state_dir=state)


def _right_pyipsec(topo: Topology, tmp_path: Path, factory: Factory, **kw: Any) -> PyipsecDaemon:
    state = tmp_path / "right"
    return factory(topo.right, pyipsec_toml(side="right", state_dir=state, conn="py",
                                            local_addrs=[RIGHT_OUTER], proposals=IKE,
                                            esp_proposals=ESP, **kw), state_dir=state)


def test_multi_connection_toml_loads(tmp_path: Path) -> None:
    """The responder configuration of scenario 4 (two connections, two children each,
    built with ``child_toml``/``connection_toml``) is accepted by pyipsec's loader (no root
    needed)."""
    loader = pytest.importorskip("pyipsec.config.loader")
    text = pyipsec_toml(side="right", state_dir=tmp_path, conn="site1", proposals=IKE,
                        esp_proposals=ESP, ipv6_inner=False, child="net4",
                        tun_addresses=[f"{RIGHT_INNER}/32", f"{RIGHT_INNER6}/128"])
    text += child_toml("site1", "net6", local_ts=[RIGHT_SUBNET6], remote_ts=[LEFT_SUBNET6],
                       esp_proposals=ESP)
    text += connection_toml("site2", local_id=RIGHT_ID, remote_id=LEFT2_ID, proposals=IKE,
                            esp_proposals=ESP, children={"l2": ([RIGHT_SUBNET], [LEFT2_SUBNET])})
    cfg = loader.load_config_text(text)
    conns = {c.name: c for c in cfg.connections}
    assert [ch.name for ch in conns["site1"].children] == ["net4", "net6"]
    assert conns["site2"].remote_id == LEFT2_ID and conns["site2"].psk == TEST_PSK.encode()
    assert [ch.name for ch in conns["site2"].children] == ["l2"]


# -- 1. NAT detected, both roles --------------------------------------------------------


@pytest.mark.parametrize("pyipsec_side", ["left", "right"],
                         ids=["pyipsec-initiator-behind-nat", "pyipsec-responder"])
def test_nat_detected_both_sides(nat_topology: Topology, pyipsec_side: str, tmp_path: Path,
                                 charon_factory: Factory, pyipsec_factory: Factory) -> None:
    """Both implementations see the NAT on the correct side, both float to 4500, and the
    responder talks to the NAT's public address and mapped port.

    The left host is behind the NAT.  strongSwan with kernel-libipsec always sends a fake
    NAT_DETECTION_SOURCE_IP (it needs UDP encapsulation), so pyipsec also sees "peer behind
    NAT" when strongSwan is on the right; the real NAT must show up as ``nat.local`` on the
    left and as the remote flag on the right (strongSwan: ``nat-local``/``nat-remote``).
    Complements test_pyipsec_strongswan.py, which only checks the ``encap`` flags.
    """
    topo = nat_topology
    if pyipsec_side == "left":
        charon = charon_factory(topo.right, ConnSpec(
            name="ss", side="right", local_addrs=RIGHT_OUTER, proposals=IKE,
            esp_proposals=ESP).render(), name="right")
        daemon = _left_pyipsec(topo, tmp_path, pyipsec_factory)
        daemon.up("py", "net")
    else:
        daemon = _right_pyipsec(topo, tmp_path, pyipsec_factory)
        charon = charon_factory(topo.left, ConnSpec(
            name="ss", side="left", remote_addrs=RIGHT_OUTER, proposals=IKE,
            esp_proposals=ESP).render(), name="left")
        charon.initiate("ss", "net")
    sa = charon.wait_for(lambda c: c.established("ss"), timeout=15)
    daemon.wait_for(_py_up, timeout=10)
    (ike,) = daemon.ike_sas()
    (child,) = daemon.child_sas()
    ss_child = next(iter(sa["child-sas"].values()))

    # both sides floated to 4500 and encapsulate ESP
    assert sa["local-port"] == "4500" and ss_child["encap"] == "yes"
    assert ike["local"]["port"] == 4500 and ike["nat"]["encap"] is True
    assert child["encap"] is True and _addr(child["local"])[1] == 4500
    if pyipsec_side == "left":
        # pyipsec is behind the NAT: it detects itself behind it; strongSwan sees the
        # NAT's public address as the peer
        assert ike["nat"]["local"] is True, ike["nat"]
        assert ike["nat"]["remote"] is True  # strongSwan's fake source hash
        assert ike["remote"] == {**ike["remote"], "address": RIGHT_OUTER, "port": 4500}
        assert _addr(child["remote"]) == (RIGHT_OUTER, 4500)
        assert sa["nat-remote"] == "yes" and sa.get("nat-local", "no") == "no"
        assert sa["remote-host"] == NAT_WAN
        mapped_port = int(sa["remote-port"])
    else:
        # strongSwan is behind the NAT: pyipsec sees the peer behind a NAT, not itself
        assert ike["nat"]["remote"] is True and ike["nat"]["local"] is False, ike["nat"]
        assert sa["nat-local"] == "yes" and sa.get("nat-remote", "no") == "no"
        assert ike["remote"]["address"] == NAT_WAN
        mapped_port = ike["remote"]["port"]
        assert _addr(child["remote"]) == (NAT_WAN, mapped_port)
        assert sa["remote-host"] == RIGHT_OUTER and sa["remote-port"] == "4500"
    # the port the responder talks to is the NAT mapping of the initiator's port 4500
    assert any("sport=4500" in ln and f"dport={mapped_port}" in ln
               for ln in topo.conntrack_udp()), topo.conntrack_udp()
    _ping_ok(topo, _pairs(topo))


# -- 2. forced encapsulation without NAT ------------------------------------------------


@pytest.mark.parametrize("encap", [True, False], ids=["encap-forced", "encap-by-peer-fake"])
def test_forced_encap_without_nat(nonat_topology: Topology, encap: bool, tmp_path: Path,
                                  charon_factory: Factory, pyipsec_factory: Factory) -> None:
    """No NAT on the path, yet every ESP packet travels in UDP 4500.

    ``encap = true`` makes pyipsec send a random NAT_DETECTION_SOURCE_IP (strongSwan then
    reports ``nat-remote``); independently, strongSwan (kernel-libipsec) fakes its own, and
    pyipsec must follow that too: with ``encap = false`` it still floats and encapsulates.
    The router counts zero protocol-50 packets and the pings in UDP 4500.
    """
    topo = nonat_topology
    charon = charon_factory(topo.right, ConnSpec(
        name="ss", side="right", local_addrs=RIGHT_OUTER, proposals=IKE,
        esp_proposals=ESP).render(), name="right")
    daemon = _left_pyipsec(topo, tmp_path, pyipsec_factory, encap=encap)
    topo.start_counters(COUNTERS)
    try:
        daemon.up("py", "net")
        sa = charon.wait_for(lambda c: c.established("ss"), timeout=15)
        daemon.wait_for(_py_up, timeout=10)
        (ike,) = daemon.ike_sas()
        (child,) = daemon.child_sas()
        assert ike["nat"]["forced"] is encap
        assert ike["nat"]["remote"] is True  # strongSwan's fake NAT-D was followed
        assert ike["nat"]["encap"] is True and ike["local"]["port"] == 4500
        assert ike["remote"]["port"] == 4500 and ike["remote"]["address"] == RIGHT_OUTER
        assert child["encap"] is True and _addr(child["remote"]) == (RIGHT_OUTER, 4500)
        assert sa["remote-host"] == LEFT_OUTER and sa["remote-port"] == "4500"
        # strongSwan sees pyipsec "behind a NAT" only when pyipsec fakes it; otherwise
        # neither NAT-D mismatched for strongSwan and it reports its own fake (nat-fake)
        assert sa.get("nat-local", "no") == "no"
        assert sa.get("nat-remote", "no") == ("yes" if encap else "no"), sa
        assert sa.get("nat-fake", "no") == ("no" if encap else "yes"), sa
        assert next(iter(sa["child-sas"].values()))["encap"] == "yes"
        before = topo.counters()
        _ping_ok(topo, _pairs(topo)[:2], count=3)
        after = topo.counters()
    finally:
        topo.stop_counters()
    assert after["esp"] == 0, after
    # 2 pings x 3 echo requests + 3 replies, all ESP-in-UDP to port 4500
    assert after["udp4500"] - before["udp4500"] >= 12, (before, after)


# -- 3. raw ESP between two pyipsec daemons ---------------------------------------------


def test_raw_esp_pyipsec_pair(nonat_topology: Topology, tmp_path: Path,
                              pyipsec_factory: Factory) -> None:
    """Without NAT and without forced encapsulation, two pyipsec daemons detect no NAT,
    keep IKE on port 500 and send ESP as IP protocol 50: the router counts the pings as
    protocol-50 packets and sees no UDP 4500 at all.
    """
    topo = nonat_topology
    right = _right_pyipsec(topo, tmp_path, pyipsec_factory)
    left = _left_pyipsec(topo, tmp_path, pyipsec_factory)
    topo.start_counters(COUNTERS)
    try:
        left.up("py", "net")
        right.wait_for(_py_up, timeout=10)
        for d, peer in ((left, RIGHT_OUTER), (right, LEFT_OUTER)):
            (ike,) = d.ike_sas()
            (child,) = d.child_sas()
            assert ike["nat"] == {**ike["nat"], "local": False, "remote": False,
                                  "encap": False}, ike["nat"]
            assert ike["local"]["port"] == 500 and ike["remote"]["port"] == 500
            assert child["encap"] is False and _addr(child["remote"])[0] == peer
        before = topo.counters()
        _ping_ok(topo, _pairs(topo), count=3)
        after = topo.counters()
    finally:
        topo.stop_counters()
    # 4 pings x (3 requests + 3 replies), each one ESP packet through the router
    assert after["esp"] - before["esp"] >= 24, (before, after)
    assert after["udp4500"] == 0, after
    for d in (left, right):
        (child,) = d.child_sas()
        assert child["packets_in"] >= 6 and child["packets_out"] >= 6, child


# -- 4. several children, two initiators behind one NAT ---------------------------------


def test_two_initiators_behind_one_nat_multiple_children(
        nat2_topology: Topology, tmp_path: Path, charon_factory: Factory,
        pyipsec_factory: Factory) -> None:
    """Two hosts behind the same NAT (same public address, different mapped ports) each
    bring up one IKE SA with two Child SAs (IPv4 subnets and IPv6 subnets) to one pyipsec
    responder: pyipsec on ``left`` (its second child via CREATE_CHILD_SA from pyipsec) and
    strongSwan on ``left2`` (second child via CREATE_CHILD_SA from strongSwan).  The
    responder keeps both IKE SAs apart (two connections picked by identity), answers each
    at its own mapped port, and all four child pairs carry pings at the same time.  A
    Child SA deleted by strongSwan removes exactly that child; SIGTERM on the responder
    sends DELETE for both IKE SAs (both initiators end up empty).
    """
    topo = nat2_topology
    # responder: site1 = left (two children), site2 = left2 (two children; child names are
    # unique per daemon, like in swanctl)
    rstate = tmp_path / "right"
    rtext = pyipsec_toml(side="right", state_dir=rstate, conn="site1",
                         local_addrs=[RIGHT_OUTER], proposals=IKE, esp_proposals=ESP,
                         ipv6_inner=False, child="net4",
                         tun_addresses=[f"{RIGHT_INNER}/32", f"{RIGHT_INNER6}/128"])
    rtext += child_toml("site1", "net6", local_ts=[RIGHT_SUBNET6], remote_ts=[LEFT_SUBNET6],
                        esp_proposals=ESP)
    rtext += connection_toml("site2", local_id=RIGHT_ID, remote_id=LEFT2_ID, proposals=IKE,
                             esp_proposals=ESP, local_addrs=[RIGHT_OUTER],
                             children={"l2net4": ([RIGHT_SUBNET], [LEFT2_SUBNET]),
                                       "l2net6": ([RIGHT_SUBNET6], [LEFT2_SUBNET6])})
    right = pyipsec_factory(topo.right, rtext, state_dir=rstate)

    lstate = tmp_path / "left"
    ltext = pyipsec_toml(side="left", state_dir=lstate, conn="py", remote_addrs=[RIGHT_OUTER],
                         proposals=IKE, esp_proposals=ESP, ipv6_inner=False, child="net4",
                         tun_addresses=[f"{LEFT_INNER}/32", f"{LEFT_INNER6}/128"])
    ltext += child_toml("py", "net6", local_ts=[LEFT_SUBNET6], remote_ts=[RIGHT_SUBNET6],
                        esp_proposals=ESP)
    left = pyipsec_factory(topo.left, ltext, state_dir=lstate)

    children = {
        name: {"mode": "tunnel", "local_ts": lts, "remote_ts": rts, "esp_proposals": ESP,
               "rekey_time": "0s", "start_action": "none"}
        for name, lts, rts in (("net4", LEFT2_SUBNET, RIGHT_SUBNET),
                               ("net6", LEFT2_SUBNET6, RIGHT_SUBNET6))}
    ss_conf = swanctl_conf({
        "connections": {"ss": {
            "version": 2, "remote_addrs": RIGHT_OUTER, "proposals": IKE, "rekey_time": "0s",
            "reauth_time": 0, "dpd_delay": "0s", "local": {"auth": "psk", "id": LEFT2_ID},
            "remote": {"auth": "psk", "id": RIGHT_ID}, "children": children}},
        "secrets": {"ike-0": {"id-a": LEFT2_ID, "id-b": RIGHT_ID, "secret": f'"{TEST_PSK}"'}},
    })
    charon = charon_factory(topo.left2, ss_conf, name="left2")

    left.up("py", "net4")
    left.up("py", "net6")
    charon.initiate("ss", "net4")
    charon.initiate("ss", "net6")
    right.wait_for(lambda d: _py_up(d, 4), timeout=10)

    ikes = {sa["name"]: sa for sa in right.ike_sas()}
    assert set(ikes) == {"site1", "site2"}, ikes
    assert {sa["remote"]["id"] for sa in ikes.values()} == {LEFT_ID, LEFT2_ID}
    assert all(sa["remote"]["address"] == NAT_WAN for sa in ikes.values())
    ports = {sa["remote"]["port"] for sa in ikes.values()}
    assert len(ports) == 2, f"both initiators at the same NAT port? {ikes}"
    assert all(len(sa["children"]) == 2 for sa in ikes.values()), ikes
    by_conn: dict[str, set[tuple[str, int]]] = {}
    for c in right.child_sas():
        by_conn.setdefault(c["conn"], set()).add(_addr(c["remote"]))
    assert by_conn == {name: {(NAT_WAN, sa["remote"]["port"])} for name, sa in ikes.items()}
    (left_ike,) = left.ike_sas()
    assert len(left_ike["children"]) == 2
    ss = charon.established("ss")
    assert ss is not None and len(ss["child-sas"]) == 2

    # all four child pairs at once: one background ping each, plus a ping back from right
    streams = [(topo.left, RIGHT_INNER, LEFT_INNER), (topo.left, RIGHT_INNER6, LEFT_INNER6),
               (topo.left2, RIGHT_INNER, LEFT2_INNER), (topo.left2, RIGHT_INNER6, LEFT2_INNER6)]
    pings = [topo.ping_background(ns, dst, source=src, interval=0.05)
             for ns, dst, src in streams]
    try:
        time.sleep(1.5)
        _ping_ok(topo, [(topo.right, RIGHT_INNER, LEFT_INNER),
                        (topo.right, RIGHT_INNER, LEFT2_INNER)], count=2)
    finally:
        results = [p.stop() for p in pings]
    for (ns, dst, _), (sent, got) in zip(streams, results, strict=True):
        assert sent >= 10 and sent - got <= 1, f"{ns} -> {dst}: {got}/{sent}"
    counts = {(c["conn"], c["child"]): c["packets_in"] for c in right.child_sas()}
    assert len(counts) == 4 and all(n >= 10 for n in counts.values()), counts

    # one child deleted by strongSwan: only that one goes, the other three keep working
    charon.terminate(child="net6")
    right.wait_for(lambda d: len(d.child_sas()) == 3, timeout=5, interval=0.05)
    assert {(c["conn"], c["child"]) for c in right.child_sas()} == {
        ("site1", "net4"), ("site1", "net6"), ("site2", "l2net4")}
    _ping_ok(topo, [(topo.left2, LEFT2_INNER, RIGHT_INNER), (topo.left, LEFT_INNER6,
                                                             RIGHT_INNER6)])
    # SIGTERM on the responder deletes both IKE SAs, at both mapped ports
    right.stop()
    left.wait_for(lambda d: not d.ike_sas() and not d.child_sas(), timeout=3, interval=0.05)
    charon.wait_for(lambda c: not c.list_sas(), timeout=3, interval=0.05)


# -- 5. NAT mapping change during traffic -----------------------------------------------

MAP_LOW, MAP_HIGH = 40000, 40100


@pytest.mark.parametrize("initiator", ["strongswan", "pyipsec"])
def test_nat_mapping_change(nat_topology: Topology, initiator: str, tmp_path: Path,
                            charon_factory: Factory, pyipsec_factory: Factory) -> None:
    """While a ping runs, the router forgets every mapping (``conntrack -F``) and now
    masquerades UDP to ports 40000-40100: the initiator's ESP-in-UDP arrives at the
    pyipsec responder from a new port.  The responder follows it (status shows the new
    port for the IKE SA and the Child SA) without any renegotiation (same IKE SPIs, same
    Child SPIs), an IKE exchange from the responder reaches the new port, and the ping
    loses at most a few packets (printed).
    """
    topo = nat_topology
    right = _right_pyipsec(topo, tmp_path, pyipsec_factory)
    if initiator == "strongswan":
        charon: Charon | None = charon_factory(topo.left, ConnSpec(
            name="ss", side="left", remote_addrs=RIGHT_OUTER, proposals=IKE,
            esp_proposals=ESP).render(), name="left")
        assert charon is not None
        charon.initiate("ss", "net")
    else:
        charon = None
        _left_pyipsec(topo, tmp_path, pyipsec_factory).up("py", "net")
    right.wait_for(_py_up, timeout=10)
    (ike0,) = right.ike_sas()
    (child0,) = right.child_sas()
    assert ike0["remote"]["address"] == NAT_WAN
    old_port = ike0["remote"]["port"]
    assert not MAP_LOW <= old_port <= MAP_HIGH

    ping = topo.ping_background(topo.left, RIGHT_INNER, source=LEFT_INNER, interval=0.05)
    stopped = False
    try:
        time.sleep(0.5)
        topo.set_nat_port_range(MAP_LOW, MAP_HIGH)
        topo.flush_conntrack()
        t0 = time.monotonic()
        moved = right.wait_for(
            lambda d: [c for c in d.child_sas()
                       if MAP_LOW <= _addr(c["remote"])[1] <= MAP_HIGH], timeout=5,
            interval=0.05)
        follow_s = time.monotonic() - t0
        time.sleep(1.0)
        sent, got = ping.stop()
        stopped = True
        print(f"NAT mapping change ({initiator} initiator): ping {got}/{sent} answered, "
              f"{sent - got} lost; responder followed after {follow_s:.2f}s")
        (ike1,) = right.ike_sas()
        (child1,) = moved
        new_port = _addr(child1["remote"])[1]
        assert (ike1["spi_i"], ike1["spi_r"]) == (ike0["spi_i"], ike0["spi_r"])
        assert (child1["spi_in"], child1["spi_out"]) == (child0["spi_in"], child0["spi_out"])
        assert ike1["remote"] == {**ike0["remote"], "port": new_port}, (ike0, ike1)
        assert sent >= 20 and sent - got <= 5, f"{got}/{sent} answered across the change"
        # an IKE request from the responder goes to the new port and is answered
        try:
            rtt = right.request("liveness", timeout=10, name="py")
            print(f"liveness (INFORMATIONAL) after the mapping change: {rtt}")
        except PyipsecError as exc:
            if "unknown command" not in str(exc):
                raise
        if charon is not None:
            sa = charon.established("ss")
            assert sa is not None and sa["local-port"] == "4500"
            assert sa["initiator-spi"] == ike0["spi_i"]
        _ping_ok(topo, _pairs(topo)[:2])
        (child2,) = right.child_sas()
        assert child2["spi_in"] == child0["spi_in"], "renegotiated after the mapping change"
    finally:
        if not stopped:
            ping.stop()
        topo.set_nat_port_range(None)
        topo.flush_conntrack()  # no 40000+ mapping survives into the next test


def test_nat_mapping_change_seen_in_ike(nat_topology: Topology, tmp_path: Path,
                                        charon_factory: Factory,
                                        pyipsec_factory: Factory) -> None:
    """The NAT mapping changes while the tunnel is idle and the first packet through the new
    mapping is an IKE request (strongSwan rekeys its Child SA): the pyipsec responder
    answers at the new port, moves the IKE SA and its children there (RFC 7296 §2.23:
    the initiator is behind a NAT), and then traffic it originates reaches the initiator.
    """
    topo = nat_topology
    right = _right_pyipsec(topo, tmp_path, pyipsec_factory)
    charon = charon_factory(topo.left, ConnSpec(
        name="ss", side="left", remote_addrs=RIGHT_OUTER, proposals=IKE,
        esp_proposals=ESP).render(), name="left")
    charon.initiate("ss", "net")
    right.wait_for(_py_up, timeout=10)
    (ike0,) = right.ike_sas()
    try:
        topo.set_nat_port_range(MAP_LOW, MAP_HIGH)
        topo.flush_conntrack()
        charon.rekey(child="net")
        right.wait_for(lambda d: [c for c in d.child_sas()
                                  if c["spi_in"] not in {x["spi_in"] for x in ike0["children"]}
                                  and len(d.child_sas()) == 1], timeout=10, interval=0.05)
        (ike1,) = right.ike_sas()
        (child1,) = right.child_sas()
        assert (ike1["spi_i"], ike1["spi_r"]) == (ike0["spi_i"], ike0["spi_r"])
        assert MAP_LOW <= ike1["remote"]["port"] <= MAP_HIGH, ike1["remote"]
        assert _addr(child1["remote"]) == (NAT_WAN, ike1["remote"]["port"]), child1
        # the responder speaks first after the change
        _ping_ok(topo, [(topo.right, RIGHT_INNER, LEFT_INNER), (topo.left, LEFT_INNER,
                                                                 RIGHT_INNER)])
    finally:
        topo.set_nat_port_range(None)
        topo.flush_conntrack()
