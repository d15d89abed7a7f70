"""Road warriors: configuration payloads and virtual IP pools (RFC 7296 §2.19, §3.15)
between pyipsec and strongSwan 5.9.8, PSK, through the NAT topology.

(a) a strongSwan client (``vips = 0.0.0.0, ::``) behind the NAT gets addresses from a
    pyipsec gateway's pools: ``swanctl --list-sas`` shows them, the DNS attribute
    arrives, an inner ping from the virtual IPs reaches the gateway's subnet;
(b) three strongSwan clients at once (one charon, three identities) get distinct
    addresses from one pool; one disconnects, reconnects and gets its address back;
(c) pyipsec as the client (``vips``) of a strongSwan gateway with a pool: the address is
    on pyipsec's TUN device, DNS is reported, a ping goes through from that address;
(d) IKE SA and Child SA rekeys of a road-warrior connection keep the address and the
    routes, both ways round.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .pyipsec_daemon import PyipsecDaemon, pyipsec_toml, toml_text
from .strongswan import RIGHT_ID, TEST_PSK, Charon, swanctl_conf
from .topology import (
    RIGHT_INNER,
    RIGHT_INNER6,
    RIGHT_OUTER,
    RIGHT_SUBNET,
    RIGHT_SUBNET6,
    Topology,
)

pytestmark = pytest.mark.interop

IKE = "aes256gcm16-prfsha256-x25519"
ESP = "aes256gcm16"
POOL = "203.0.113.192/26"  # unused by the topology: leased addresses .193-.254
POOL6 = "2001:db8:ee::/120"
DNS = "203.0.113.65"
DNS6 = "2001:db8:b::53"
FIRST, FIRST6 = "203.0.113.193", "2001:db8:ee::1"

ClientSpec = tuple[str, str]  # (connection name, identity)


# --------------------------------------------------------------------------- configuration


def gateway_toml(state: Path, *, ipv6: bool = True) -> str:
    """pyipsec on the right: pools, a connection for any road warrior (PSK)."""
    pools = ["rw", "rw6"] if ipv6 else ["rw"]
    text = pyipsec_toml(
        side="right", state_dir=state, conn="gw", local_addrs=[RIGHT_OUTER],
        proposals=IKE, esp_proposals=ESP, remote_id_override="%any",
        remote_ts_override=["dynamic"], ipv6_inner=ipv6,
        extra_conn={"pools": pools, "dpd_delay": 0},
    )  # fmt: skip
    tables: dict[str, dict[str, Any]] = {
        "pools.rw": {"addrs": POOL, "dns": [DNS, DNS6], "split_include": [RIGHT_SUBNET]},
    }
    if ipv6:
        tables["pools.rw6"] = {"addrs": POOL6}
    return text + toml_text(tables)


def client_conf(clients: list[ClientSpec], *, ipv6: bool = True) -> str:
    """strongSwan on the left: one connection per road warrior identity."""
    conns: dict[str, Any] = {}
    for name, ident in clients:
        conns[name] = {
            "version": 2,
            "remote_addrs": RIGHT_OUTER,
            "proposals": IKE,
            "vips": "0.0.0.0, ::" if ipv6 else "0.0.0.0",
            "rekey_time": "0s",
            "reauth_time": 0,
            "dpd_delay": "0s",
            "local": {"auth": "psk", "id": ident},
            "remote": {"auth": "psk", "id": RIGHT_ID},
            "children": {
                "net": {
                    "mode": "tunnel",
                    "local_ts": "dynamic",
                    "remote_ts": [RIGHT_SUBNET, *([RIGHT_SUBNET6] if ipv6 else [])],
                    "esp_proposals": ESP,
                    "rekey_time": "0s",
                }
            },
        }
    ids = {f"id-{i}": ident for i, (_, ident) in enumerate(clients)}
    secrets = {"ike-rw": {**ids, "id-gw": RIGHT_ID, "secret": f'"{TEST_PSK}"'}}
    return swanctl_conf({"connections": conns, "secrets": secrets})


def strongswan_gateway_conf() -> str:
    """strongSwan on the right with a pool, for pyipsec road warriors."""
    return swanctl_conf({
        "connections": {
            "gw": {
                "version": 2,
                "local_addrs": RIGHT_OUTER,
                "proposals": IKE,
                "pools": "rw",
                "rekey_time": "0s",
                "reauth_time": 0,
                "dpd_delay": "0s",
                "local": {"auth": "psk", "id": RIGHT_ID},
                "remote": {"auth": "psk", "id": "%any"},
                "children": {"net": {"mode": "tunnel", "local_ts": RIGHT_SUBNET,
                                     "esp_proposals": ESP, "rekey_time": "0s"}},
            }
        },
        "pools": {"rw": {"addrs": POOL, "dns": DNS}},
        "secrets": {"ike-rw": {"id-gw": RIGHT_ID, "id-c": "carol@example.net",
                               "secret": f'"{TEST_PSK}"'}},
    })  # fmt: skip


def pyipsec_client_toml(state: Path) -> str:
    """pyipsec on the left asking for an address (``vips``), no TUN address of its own."""
    return pyipsec_toml(
        side="left", state_dir=state, conn="rw", remote_addrs=[RIGHT_OUTER],
        proposals=IKE, esp_proposals=ESP, ipv6_inner=False, tun_addresses=[],
        local_id_override="carol@example.net", local_ts_override=["dynamic"],
        remote_ts_override=[RIGHT_SUBNET], extra_conn={"vips": ["0.0.0.0"]},
    )  # fmt: skip


# --------------------------------------------------------------------------- helpers


def vips_of(charon: Charon, conn: str) -> list[str]:
    """The local virtual IPs of ``conn``'s established IKE SA (swanctl --list-sas)."""
    sa = charon.established(conn)
    if sa is None:
        return []
    vips = sa.get("local-vips", [])
    return list(vips) if isinstance(vips, list) else [vips]


def leases(daemon: PyipsecDaemon) -> dict[str, tuple[str, str]]:
    """address -> (identity, online/offline) of the pyipsec gateway (``pools`` request)."""
    out = {}
    for p in daemon.request("pools", leases=True)["pools"]:
        for x in p["leases"]:
            out[x["address"]] = (x["identity"], x["status"])
    return out


def wait_vips(charon: Charon, conn: str, n: int, timeout: float = 20.0) -> list[str]:
    got: list[str] = charon.wait_for(
        lambda c: (v := vips_of(c, conn)) and len(v) >= n and v, timeout=timeout
    )
    return got


def ping_from(topo: Topology, source: str, dest: str, count: int = 3) -> tuple[int, int]:
    return topo.ping(topo.left, dest, count=count, source=source)


def start_gateway(topo: Topology, tmp_path: Path, factory: Callable[..., PyipsecDaemon],
                  *, ipv6: bool = True) -> PyipsecDaemon:
    state = tmp_path / "gw"
    return factory(topo.right, gateway_toml(state, ipv6=ipv6), state_dir=state)


# --------------------------------------------------------------------------- (a)


def test_strongswan_client_gets_addresses_from_pyipsec_gateway(
    nat_topology: Topology, tmp_path: Path, charon_factory: Callable[..., Charon],
    pyipsec_factory: Callable[..., PyipsecDaemon],
) -> None:
    topo = nat_topology
    gw = start_gateway(topo, tmp_path, pyipsec_factory)
    charon = charon_factory(topo.left, client_conf([("carol", "carol@example.net")]),
                            name="carol")
    charon.initiate("carol", "net")
    vips = wait_vips(charon, "carol", 2)
    assert sorted(vips) == sorted([FIRST, FIRST6])
    log = charon.log()
    assert "processing INTERNAL_IP4_DNS attribute" in log  # the DNS servers arrived
    assert "processing INTERNAL_IP6_DNS attribute" in log
    assert "installing new virtual IP 203.0.113.193" in log
    sa = charon.established("carol")
    assert sa is not None and sa["nat-local"] == "yes"
    child = next(iter(sa["child-sas"].values()))
    assert sorted(child["local-ts"]) == sorted([f"{FIRST}/32", f"{FIRST6}/128"])
    # the gateway: leases online for carol, the child narrowed to the virtual IPs
    assert leases(gw) == {FIRST: ("carol@example.net", "online"),
                          FIRST6: ("carol@example.net", "online")}  # fmt: skip
    st = gw.status()
    (ike,) = st["ike_sas"]
    assert ike["vips"]["remote"] == [FIRST, FIRST6] and ike["vips"]["dns"] == [DNS, DNS6]
    assert sorted(st["child_sas"][0]["remote_ts"]) == sorted([f"{FIRST}/32", f"{FIRST6}/128"])
    assert f"leased {FIRST}, {FIRST6} to carol@example.net" in gw.cli("status")
    assert "rw" in gw.cli("pools") and "carol@example.net" in gw.cli("pools", "--leases")
    # inner traffic from the virtual IPs to the gateway's protected subnet
    assert ping_from(topo, FIRST, RIGHT_INNER) == (3, 3)
    assert ping_from(topo, FIRST6, RIGHT_INNER6) == (3, 3)
    # the client leaves: the leases go offline
    charon.terminate(ike="carol")
    gw.wait_for(lambda d: {s for _, s in leases(d).values()} == {"offline"}, timeout=10)


# --------------------------------------------------------------------------- (b)


def test_three_strongswan_clients_from_one_pool(
    nat_topology: Topology, tmp_path: Path, charon_factory: Callable[..., Charon],
    pyipsec_factory: Callable[..., PyipsecDaemon],
) -> None:
    topo = nat_topology
    gw = start_gateway(topo, tmp_path, pyipsec_factory, ipv6=False)
    clients = [("carol", "carol@example.net"), ("dave", "dave@example.net"),
               ("eve", "eve@example.net")]  # fmt: skip
    charon = charon_factory(topo.left, client_conf(clients, ipv6=False), name="clients")
    got: dict[str, str] = {}
    for name, _ in clients:
        charon.initiate(name, "net")
        got[name] = wait_vips(charon, name, 1)[0]
    assert len(set(got.values())) == 3
    assert all(ipaddress.ip_address(a) in ipaddress.ip_network(POOL) for a in got.values())
    assert {addr: ident for addr, (ident, _) in leases(gw).items()} == {
        got[name]: ident for name, ident in clients
    }
    for name, _ in clients:  # each client's traffic in its own Child SA
        assert ping_from(topo, got[name], RIGHT_INNER, count=2) == (2, 2), name
    pool = gw.request("pools")["pools"][0]
    assert (pool["online"], pool["offline"]) == (3, 0)
    # dave leaves, comes back, and gets his address again
    charon.terminate(ike="dave")
    gw.wait_for(lambda d: leases(d).get(got["dave"]) == ("dave@example.net", "offline"),
                timeout=10)
    charon.initiate("dave", "net")
    assert wait_vips(charon, "dave", 1) == [got["dave"]]
    assert ping_from(topo, got["dave"], RIGHT_INNER, count=2) == (2, 2)
    pool = gw.request("pools")["pools"][0]
    assert (pool["online"], pool["offline"]) == (3, 0)


# --------------------------------------------------------------------------- (c)


def test_pyipsec_client_of_strongswan_gateway(
    nat_topology: Topology, tmp_path: Path, charon_factory: Callable[..., Charon],
    pyipsec_factory: Callable[..., PyipsecDaemon],
) -> None:
    topo = nat_topology
    charon = charon_factory(topo.right, strongswan_gateway_conf(), name="gw")
    state = tmp_path / "rw"
    rw = pyipsec_factory(topo.left, pyipsec_client_toml(state), state_dir=state)
    rw.up("rw", "net")
    st = rw.wait_for(lambda d: (s := d.status())["vips"] and s, timeout=15)
    (vip,) = st["vips"]
    assert vip["local"] == [FIRST] and vip["dns"] == [DNS]
    assert st["child_sas"][0]["local_ts"] == [f"{FIRST}/32"]
    addr = topo.exec(topo.left, ["ip", "-o", "addr", "show", "dev", "pyi0"]).stdout
    assert f"inet {FIRST}/32" in addr
    route = topo.exec(topo.left, ["ip", "route", "show", RIGHT_SUBNET]).stdout
    assert f"src {FIRST}" in route
    assert f"virtual IP {FIRST} (DNS {DNS})" in rw.cli("status")
    sa = charon.wait_for(lambda c: c.established("gw"), timeout=10)
    assert sa.get("remote-vips") == [FIRST]
    assert topo.ping(topo.left, RIGHT_INNER, count=3) == (3, 3)  # source: the virtual IP
    rw.down("rw")
    rw.wait_for(lambda d: not d.status()["vips"], timeout=10)
    addr = topo.exec(topo.left, ["ip", "-o", "addr", "show", "dev", "pyi0"]).stdout
    assert FIRST not in addr


# --------------------------------------------------------------------------- (d)


def ike_spis(charon: Charon, conn: str) -> set[str]:
    """The initiator SPIs of ``conn``'s IKE SAs in strongSwan (any state)."""
    return {sa["initiator-spi"] for sa in charon.ike_sas(conn)}


def wait_ike_rekeyed(charon: Charon, conn: str, before: set[str]) -> None:
    """Until strongSwan has exactly one IKE SA of ``conn``, a new one, established."""
    charon.wait_for(lambda c: len(s := ike_spis(c, conn)) == 1 and not s & before
                    and c.established(conn), timeout=20)  # fmt: skip


def child_spis(charon: Charon, conn: str) -> set[str]:
    sa = charon.established(conn)
    return set() if sa is None else {c["spi-in"] for c in sa["child-sas"].values()}


def wait_child_rekeyed(charon: Charon, conn: str, before: set[str]) -> None:
    charon.wait_for(lambda c: (s := child_spis(c, conn)) and not s & before, timeout=20)


def test_rekeys_keep_the_address_strongswan_client(
    nat_topology: Topology, tmp_path: Path, charon_factory: Callable[..., Charon],
    pyipsec_factory: Callable[..., PyipsecDaemon],
) -> None:
    topo = nat_topology
    gw = start_gateway(topo, tmp_path, pyipsec_factory, ipv6=False)
    charon = charon_factory(topo.left, client_conf([("carol", "carol@example.net")],
                                                   ipv6=False), name="carol")  # fmt: skip
    charon.initiate("carol", "net")
    (vip,) = wait_vips(charon, "carol", 1)
    # a Child SA rekey by strongSwan, then one by pyipsec
    before = child_spis(charon, "carol")
    charon.rekey(child="net")
    wait_child_rekeyed(charon, "carol", before)
    before = child_spis(charon, "carol")
    assert gw.rekey_child("gw", "net")
    wait_child_rekeyed(charon, "carol", before)
    # an IKE SA rekey by strongSwan (CREATE_CHILD_SA), then one by pyipsec
    before = ike_spis(charon, "carol")
    charon.rekey(ike="carol")
    wait_ike_rekeyed(charon, "carol", before)
    before = ike_spis(charon, "carol")
    assert gw.rekey_ike("gw")
    wait_ike_rekeyed(charon, "carol", before)
    gw.wait_for(lambda d: [s["state"] for s in d.ike_sas()] == ["established"], timeout=15)
    assert vips_of(charon, "carol") == [vip]
    assert leases(gw) == {vip: ("carol@example.net", "online")}
    pool = gw.request("pools", leases=True)["pools"][0]
    assert pool["leases"][0]["holders"] == 1
    (ike,) = [s for s in gw.ike_sas() if s["state"] == "established"]
    assert ike["vips"]["remote"] == [vip]
    assert f"{vip}/32" in gw.status()["tun"]["routes"]
    assert ping_from(topo, vip, RIGHT_INNER) == (3, 3)


def test_rekeys_keep_the_address_pyipsec_client(
    nat_topology: Topology, tmp_path: Path, charon_factory: Callable[..., Charon],
    pyipsec_factory: Callable[..., PyipsecDaemon],
) -> None:
    topo = nat_topology
    charon = charon_factory(topo.right, strongswan_gateway_conf(), name="gw")
    state = tmp_path / "rw"
    rw = pyipsec_factory(topo.left, pyipsec_client_toml(state), state_dir=state)
    rw.up("rw", "net")
    rw.wait_for(lambda d: d.status()["vips"], timeout=15)
    charon.wait_for(lambda c: c.established("gw"), timeout=10)
    # Child SA rekeys by pyipsec, then by strongSwan
    before = child_spis(charon, "gw")
    assert rw.rekey_child("rw", "net")
    wait_child_rekeyed(charon, "gw", before)
    before = child_spis(charon, "gw")
    charon.rekey(child="net")
    wait_child_rekeyed(charon, "gw", before)
    # IKE SA rekeys by pyipsec, then by strongSwan
    before = ike_spis(charon, "gw")
    assert rw.rekey_ike("rw")
    wait_ike_rekeyed(charon, "gw", before)
    before = ike_spis(charon, "gw")
    charon.rekey(ike="gw")
    wait_ike_rekeyed(charon, "gw", before)
    rw.wait_for(lambda d: [s["state"] for s in d.ike_sas()] == ["established"], timeout=15)
    st = rw.status()
    assert [v["local"] for v in st["vips"]] == [[FIRST]]
    assert f"inet {FIRST}/32" in topo.exec(topo.left, ["ip", "-o", "addr", "show",
                                                       "dev", "pyi0"]).stdout  # fmt: skip
    assert f"src {FIRST}" in topo.exec(topo.left, ["ip", "route", "show", RIGHT_SUBNET]).stdout
    sa = charon.established("gw")
    assert sa is not None and sa.get("remote-vips") == [FIRST]
    assert topo.ping(topo.left, RIGHT_INNER, count=3) == (3, 3)
