"""Configuration payloads and virtual IPs in memory, pyipsec <-> pyipsec with PSK
(RFC 7296 §2.19, §3.15): IPv4+IPv6 addresses, DNS, selectors narrowed to the virtual
IPs, pool exhaustion (INTERNAL_ADDRESS_FAILURE), FAILED_CP_REQUIRED, leases released
when the IKE SA goes and kept across IKE and Child SA rekeys and reauthentication,
several clients of one pool, malformed configuration payloads, and the CP codec."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

import pytest

from pyipsec.config.model import (
    ChildConfig,
    ConnectionConfig,
    PoolConfig,
    TrafficSelectorSpec,
)
from pyipsec.ikev2.constants import CfgAttr, CfgType, ExchangeType, NotifyType, PayloadType
from pyipsec.ikev2.errors import ParseError
from pyipsec.ikev2.events import (
    ChildSaFailed,
    ChildSaInstalled,
    Event,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaFailed,
    VirtualIpsAssigned,
)
from pyipsec.ikev2.manager import IkeManager
from pyipsec.ikev2.payloads import CpPayload
from pyipsec.ikev2.sa import IkeSa
from pyipsec.ikev2.state import IkeSaState
from pyipsec.ikev2.tasks import config_payload
from pyipsec.ikev2.tasks.config_payload import (
    address_attribute,
    parse_attributes,
    subnet_attribute,
)
from pyipsec.pools import Pool, acquire, pool_range

from .harness import (
    FAST_RETRANSMIT,
    NO_DPD,
    PSK,
    DetRng,
    Harness,
    conn_pair,
    det_ke_factory,
)

ip = ipaddress.ip_address
NET = "10.2.0.0/16"
NET6 = "2001:db8:2::/64"


def pool(name: str, text: str, **kw: Any) -> PoolConfig:
    first, last = pool_range(text)
    return PoolConfig(name, text, first, last, **kw)


POOL4 = pool(
    "rw",
    "10.3.0.0/24",
    dns=(ip("10.2.0.53"), ip("2001:db8:2::53")),
    nbns=(ip("10.2.0.54"),),
    split_include=(ipaddress.ip_network(NET), ipaddress.ip_network(NET6)),
)
POOL6 = pool("rw6", "2001:db8:ee::/120")


def ts(*nets: str) -> tuple[TrafficSelectorSpec, ...]:
    return tuple(TrafficSelectorSpec.from_network(n) for n in nets)


def road_warrior(
    *,
    vips: Sequence[str] = ("0.0.0.0", "::"),
    pools: Sequence[str] = ("rw", "rw6"),
    a_kw: dict[str, Any] | None = None,
    b_kw: dict[str, Any] | None = None,
    **pair_kw: Any,
) -> tuple[ConnectionConfig, ConnectionConfig]:
    """Client A (dynamic local side, asks for ``vips``) and gateway B (leases from
    ``pools``, dynamic remote side)."""
    return conn_pair(
        a_children=[ChildConfig("net", (), ts(NET, NET6))],
        b_children=[ChildConfig("net", ts(NET, NET6), ())],
        a_kw={"vips": tuple(vips), **(a_kw or {})},
        b_kw={"pools": tuple(pools), **(b_kw or {})},
        **pair_kw,
    )


def harness(
    pools: Sequence[PoolConfig] = (POOL4, POOL6), **kw: Any
) -> Harness:
    a, b = road_warrior(**kw)
    return Harness(a, b, b_kw={"pools": list(pools)})


def established(mgr: IkeManager) -> IkeSa:
    sas = [sa for sa in mgr.by_id.values() if sa.state is IkeSaState.ESTABLISHED]
    assert len(sas) == 1, sas
    return sas[0]


def events(side: Any, cls: type) -> list[Any]:
    out: list[Any] = side.of(cls)
    return out


def leases(mgr: IkeManager) -> dict[str, tuple[str, str]]:
    """address -> (identity, online/offline) over every pool of ``mgr``."""
    out = {}
    for p in mgr.pools_status(leases=True):
        for x in p["leases"]:
            out[x["address"]] = (x["identity"], x["status"])
    return out


# --------------------------------------------------------------------------- the road warrior


def test_ipv4_and_ipv6_virtual_ips_assigned_and_selectors_narrowed() -> None:
    h = harness()
    h.up()
    a, b = established(h.a.mgr), established(h.b.mgr)
    assert [str(x) for x in a.vips.local] == ["10.3.0.1", "2001:db8:ee::1"]
    assert [str(x) for x in b.vips.remote] == ["10.3.0.1", "2001:db8:ee::1"]
    assert [str(x) for x in a.vips.dns] == ["10.2.0.53", "2001:db8:2::53"]
    assert [str(x) for x in a.vips.nbns] == ["10.2.0.54"]
    assert [str(x) for x in a.vips.subnets] == [NET, NET6]
    ca, cb = next(iter(a.children.values())), next(iter(b.children.values()))
    assert [str(s) for s in ca.local_ts] == ["10.3.0.1", "2001:db8:ee::1"]
    assert [str(s) for s in cb.remote_ts] == ["10.3.0.1", "2001:db8:ee::1"]
    assert [str(s) for s in cb.local_ts] == [NET, NET6]
    # events: the daemon learns the addresses before the child is installed
    kinds = [type(e) for e in h.a.events]
    assert kinds.index(IkeSaEstablished) < kinds.index(VirtualIpsAssigned)
    assert kinds.index(VirtualIpsAssigned) < kinds.index(ChildSaInstalled)
    (va,) = events(h.a, VirtualIpsAssigned)
    assert va.local == ("10.3.0.1", "2001:db8:ee::1") and va.remote == ()
    assert va.dns == ("10.2.0.53", "2001:db8:2::53")
    (vb,) = events(h.b, VirtualIpsAssigned)
    assert vb.remote == va.local and vb.remote_id == "moon.example.net"
    assert a.status()["vips"]["local"] == ["10.3.0.1", "2001:db8:ee::1"]
    assert b.status()["vips"]["remote"] == ["10.3.0.1", "2001:db8:ee::1"]
    assert leases(h.b.mgr) == {
        "10.3.0.1": ("moon.example.net", "online"),
        "2001:db8:ee::1": ("moon.example.net", "online"),
    }


def test_wire_format_of_request_and_reply() -> None:
    h = harness()
    h.up()
    req = h.decrypt(h.sent("a", ExchangeType.IKE_AUTH, response=False)[0])
    kinds = [t for t, _ in req.payloads]
    assert kinds.index(PayloadType.CP) < kinds.index(PayloadType.SA)  # §2.19
    cp = req.get(PayloadType.CP)
    assert cp is not None and cp.cfg_type == CfgType.CFG_REQUEST
    assert cp.attributes == [
        (CfgAttr.INTERNAL_IP4_ADDRESS, b""),
        (CfgAttr.INTERNAL_IP6_ADDRESS, b""),
        (CfgAttr.INTERNAL_IP4_DNS, b""),
        (CfgAttr.INTERNAL_IP6_DNS, b""),
    ]
    tsi = req.get(PayloadType.TSi)
    assert tsi is not None
    assert [(str(t.start_addr), str(t.end_addr)) for t in tsi.selectors] == [
        ("0.0.0.0", "255.255.255.255"),
        ("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
    ]
    resp = h.decrypt(h.sent("b", ExchangeType.IKE_AUTH, response=True)[0])
    kinds = [t for t, _ in resp.payloads]
    assert kinds.index(PayloadType.CP) < kinds.index(PayloadType.SA)
    reply = resp.get(PayloadType.CP)
    assert reply is not None and reply.cfg_type == CfgType.CFG_REPLY
    assert reply.get(CfgAttr.INTERNAL_IP4_ADDRESS) == [ip("10.3.0.1").packed]
    assert reply.get(CfgAttr.INTERNAL_IP6_ADDRESS) == [ip("2001:db8:ee::1").packed + b"\x80"]
    assert reply.get(CfgAttr.INTERNAL_IP4_SUBNET) == [ip("10.2.0.0").packed + b"\xff\xff\x00\x00"]
    tsi_r = resp.get(PayloadType.TSi)
    assert tsi_r is not None
    assert [str(t.start_addr) for t in tsi_r.selectors] == ["10.3.0.1", "2001:db8:ee::1"]


def test_second_child_uses_the_virtual_ip() -> None:
    a, b = road_warrior()
    a = ConnectionConfig(**{**_fields(a), "children": (
        *a.children, ChildConfig("more", (), ts("10.9.0.0/16")))})  # fmt: skip
    b = ConnectionConfig(**{**_fields(b), "children": (
        *b.children, ChildConfig("more", ts("10.9.0.0/16"), ()))})  # fmt: skip
    h = Harness(a, b, b_kw={"pools": [POOL4, POOL6]})
    h.up()
    sa = established(h.a.mgr)
    h.a.mgr.create_child(sa.ike_id, "more", h.now)
    h.run()
    more = [c for c in sa.children.values() if c.name == "more"]
    assert more and [str(s) for s in more[0].local_ts] == ["10.3.0.1", "2001:db8:ee::1"]
    gw = established(h.b.mgr)
    assert [str(s) for c in gw.children.values() if c.name == "more" for s in c.remote_ts] == [
        "10.3.0.1", "2001:db8:ee::1",
    ]  # fmt: skip


def _fields(c: ConnectionConfig) -> dict[str, Any]:
    return {f: getattr(c, f) for f in c.__dataclass_fields__}


def test_only_ipv4_asked_and_pool_of_the_other_family_unused() -> None:
    h = harness(vips=("0.0.0.0",))
    h.up()
    a = established(h.a.mgr)
    assert [str(x) for x in a.vips.local] == ["10.3.0.1"]
    assert [str(s) for c in a.children.values() for s in c.local_ts] == ["10.3.0.1"]
    assert "2001:db8:ee::1" not in leases(h.b.mgr)


def test_ipv6_requested_without_ipv6_pool_gets_ipv4_only() -> None:
    h = harness(pools=(POOL4,), b_kw={"pools": ("rw",)})
    h.up()
    a = established(h.a.mgr)
    assert [str(x) for x in a.vips.local] == ["10.3.0.1"]  # §3.15.4: the rest left out
    assert len(a.children) == 1


def test_specific_address_requested_is_honoured_for_the_same_online_lease() -> None:
    h = harness(vips=("0.0.0.0",))
    h.up()
    gw_pool = h.b.mgr.pools.pools["rw"]
    assert gw_pool.owner(ip("10.3.0.1")) == "moon.example.net"
    # the same identity from the same endpoint asking for its address: shared
    lease = acquire(
        [gw_pool], "moon.example.net", 4, peer=(h.a.ip, 500), requested=ip("10.3.0.1")
    )
    assert lease is not None and str(lease.address) == "10.3.0.1"


# --------------------------------------------------------------------------- failures


def _fill(mgr: IkeManager, name: str, n: int) -> None:
    pool_obj = mgr.pools.pools[name]
    for i in range(n):
        assert pool_obj.acquire(f"other{i}", Pool.NEW) is not None


def test_pool_exhausted_answers_internal_address_failure(caplog: pytest.LogCaptureFixture) -> None:
    small = pool("rw", "10.3.0.0/30")  # two addresses
    h = harness(pools=(small,), vips=("0.0.0.0",), b_kw={"pools": ("rw",)})
    _fill(h.b.mgr, "rw", 2)
    h.up()
    a, b = established(h.a.mgr), established(h.b.mgr)  # §3.15.4: the IKE SA is created
    assert not a.children and not b.children and not a.vips.local
    (failed,) = events(h.a, ChildSaFailed)
    assert failed.notify == NotifyType.INTERNAL_ADDRESS_FAILURE
    resp = h.decrypt(h.sent("b", ExchangeType.IKE_AUTH, response=True)[0])
    assert resp.notify(NotifyType.INTERNAL_ADDRESS_FAILURE) is not None
    assert resp.get(PayloadType.SA) is None and resp.get(PayloadType.CP) is None
    assert "pool(s) rw full" in caplog.text


def test_no_pool_for_a_connection_answers_internal_address_failure() -> None:
    h = harness(pools=(), b_kw={"pools": ()})
    h.up()
    a = established(h.a.mgr)
    assert not a.children
    assert events(h.a, ChildSaFailed)[0].notify == NotifyType.INTERNAL_ADDRESS_FAILURE


def test_pools_without_address_request_answers_failed_cp_required() -> None:
    a, b = road_warrior(vips=())
    a = ConnectionConfig(**{**_fields(a), "children": (ChildConfig("net", ts("10.1.0.0/16"),
                                                                   ts(NET)),)})  # fmt: skip
    h = Harness(a, b, b_kw={"pools": [POOL4, POOL6]})
    h.up()
    assert not established(h.a.mgr).children
    assert events(h.a, ChildSaFailed)[0].notify == NotifyType.FAILED_CP_REQUIRED


@pytest.mark.interpreted_core
def test_no_cfg_reply_means_no_child(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gateway that ignores the CP (§3.15.4) but builds the child: the initiator
    cannot narrow its selectors to a virtual IP and deletes that child."""
    a, b = road_warrior(b_kw={"pools": ()})
    b = ConnectionConfig(**{**_fields(b), "children": (ChildConfig("net", ts(NET, NET6),
                                                                   ts("0.0.0.0/0")),)})  # fmt: skip
    h = Harness(a, b)
    monkeypatch.setattr(config_payload, "respond", lambda *args, **kw: ([], True))
    h.up()
    assert "no CP(CFG_REPLY)" in caplog.text
    (failed,) = events(h.a, ChildSaFailed)
    assert "no virtual IP" in failed.reason
    assert not established(h.a.mgr).children
    assert not established(h.b.mgr).children  # deleted again (§2.21.3)


@pytest.mark.interpreted_core
def test_malformed_cfg_request_is_invalid_syntax(monkeypatch: pytest.MonkeyPatch) -> None:
    bad = CpPayload(CfgType.CFG_REQUEST, [(CfgAttr.INTERNAL_IP4_ADDRESS, b"\x0a\x03\x00")])
    monkeypatch.setattr(config_payload, "request_payloads", lambda sa: [(PayloadType.CP, bad)])
    h = harness()
    h.up()
    resp = h.decrypt(h.sent("b", ExchangeType.IKE_AUTH, response=True)[0])
    assert resp.notify(NotifyType.INVALID_SYNTAX) is not None
    assert not any(sa.established for sa in h.b.mgr.by_id.values())
    assert not any(sa.established for sa in h.a.mgr.by_id.values())
    assert events(h.a, IkeSaFailed)
    assert leases(h.b.mgr) == {}


@pytest.mark.interpreted_core
def test_malformed_cfg_reply_fails_the_ike_sa_and_frees_the_lease(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = config_payload._reply_attributes

    def broken(sa: IkeSa, got: Any) -> list[tuple[int, bytes]]:
        return [*real(sa, got), (CfgAttr.INTERNAL_IP6_DNS, b"\x20\x01")]

    monkeypatch.setattr(config_payload, "_reply_attributes", broken)
    h = harness()
    h.up()
    (failed,) = events(h.a, IkeSaFailed)
    assert "malformed CP(CFG_REPLY)" in failed.reason
    assert not events(h.a, VirtualIpsAssigned)
    assert events(h.b, IkeSaDeleted)  # our Delete closed it on the gateway
    assert {s for _, s in leases(h.b.mgr).values()} == {"offline"}


def test_unknown_attributes_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    real = config_payload.request_payloads

    def with_extras(sa: IkeSa) -> list[tuple[int, Any]]:
        out = real(sa)
        cp = out[0][1]
        cp.attributes += [(0x4321, b"whatever"), (CfgAttr.APPLICATION_VERSION, b""),
                          (CfgAttr.SUPPORTED_ATTRIBUTES, b"")]  # fmt: skip
        return out

    monkeypatch.setattr(config_payload, "request_payloads", with_extras)
    h = harness()
    h.up()
    assert [str(x) for x in established(h.a.mgr).vips.local] == ["10.3.0.1", "2001:db8:ee::1"]


# --------------------------------------------------------------------------- life cycle


def test_lease_released_on_delete_and_given_back_on_reconnect() -> None:
    h = harness()
    h.up()
    h.a.mgr.terminate("a2b", h.now)
    h.run()
    assert leases(h.b.mgr) == {
        "10.3.0.1": ("moon.example.net", "offline"),
        "2001:db8:ee::1": ("moon.example.net", "offline"),
    }
    assert all(not sa.vips.leases for sa in h.b.mgr.by_id.values())
    h.up()
    assert [str(x) for x in established(h.a.mgr).vips.local] == ["10.3.0.1", "2001:db8:ee::1"]
    assert {s for _, s in leases(h.b.mgr).values()} == {"online"}


@pytest.mark.parametrize("who", ["a", "b"])
def test_ike_rekey_keeps_addresses_and_leases(who: str) -> None:
    h = harness()
    h.up()
    side = h.side(who)
    old = established(side.mgr)
    side.mgr.rekey_ike(old.ike_id, h.now)
    h.run()
    a, b = established(h.a.mgr), established(h.b.mgr)
    assert a.ike_id != 1 or b.ike_id != 1  # both are new IKE SAs
    assert [str(x) for x in a.vips.local] == ["10.3.0.1", "2001:db8:ee::1"]
    assert [str(x) for x in b.vips.remote] == ["10.3.0.1", "2001:db8:ee::1"]
    assert a.vips.dns and b.vips.leases
    assert {s for _, s in leases(h.b.mgr).values()} == {"online"}
    st = h.b.mgr.pools_status(leases=True)
    assert all(x["holders"] == 1 for p in st for x in p["leases"])
    # and the rekeyed SA still releases them at the end
    h.a.mgr.terminate("a2b", h.now)
    h.run()
    assert {s for _, s in leases(h.b.mgr).values()} == {"offline"}


def test_child_rekey_keeps_the_virtual_ip_selectors() -> None:
    h = harness()
    h.up()
    a = established(h.a.mgr)
    spi = next(iter(a.children))
    h.a.mgr.rekey_child(a.ike_id, spi, h.now)
    h.run()
    (child,) = a.children.values()
    assert child.spi_in != spi
    assert [str(s) for s in child.local_ts] == ["10.3.0.1", "2001:db8:ee::1"]
    (gw_child,) = established(h.b.mgr).children.values()
    assert [str(s) for s in gw_child.remote_ts] == ["10.3.0.1", "2001:db8:ee::1"]
    assert {s for _, s in leases(h.b.mgr).values()} == {"online"}


def test_reauthentication_asks_for_and_keeps_the_same_address() -> None:
    h = harness(a_kw={"reauth": True})
    h.up()
    old = established(h.a.mgr)
    assert h.a.mgr.reauthenticate(old, h.now)
    h.run()
    new = established(h.a.mgr)
    assert new is not old
    assert [str(x) for x in new.vips.local] == ["10.3.0.1", "2001:db8:ee::1"]
    req = h.decrypt(h.sent("a", ExchangeType.IKE_AUTH, response=False)[-1])
    cp = req.get(PayloadType.CP)
    assert cp is not None and cp.get(CfgAttr.INTERNAL_IP4_ADDRESS) == [ip("10.3.0.1").packed]
    st = h.b.mgr.pools_status(leases=True)
    assert [(x["status"], x["holders"]) for p in st for x in p["leases"]] == [
        ("online", 1), ("online", 1),
    ]  # fmt: skip


def test_gateway_does_not_reauthenticate_a_peer_with_leases() -> None:
    h = harness(b_kw={"reauth": True})
    h.up()
    assert not h.b.mgr.reauthenticate(established(h.b.mgr), h.now)


# --------------------------------------------------------------------------- several clients


GW_IP = "192.0.2.2"


class Net:
    """One gateway and several clients (their own managers and addresses) on a
    lossless wire; datagrams are delivered in order, timers fire when it is quiet."""

    def __init__(self, gw: ConnectionConfig, pools: Sequence[PoolConfig]) -> None:
        self.now = 1000.0
        rng = DetRng("gw")
        self.gw = IkeManager([gw], rng=rng, ke_factory=det_ke_factory(rng), pools=pools)
        self.clients: dict[str, IkeManager] = {}
        self.events: dict[str, list[Event]] = {GW_IP: []}
        self.seeds = 0

    def add_client(self, address: str, ident: str) -> IkeManager:
        conn = ConnectionConfig(
            name="rw", local_addrs=(address,), remote_addrs=(GW_IP,), local_id=ident,
            remote_id="sun.example.net", psk=PSK, retransmit=FAST_RETRANSMIT, dpd=NO_DPD,
            vips=("0.0.0.0",), children=(ChildConfig("net", (), ts(NET)),),
        )  # fmt: skip
        self.seeds += 1
        rng = DetRng(f"client{self.seeds}")
        mgr = IkeManager([conn], rng=rng, ke_factory=det_ke_factory(rng))
        self.clients[address] = mgr
        self.events[address] = []
        return mgr

    def managers(self) -> list[tuple[str, IkeManager]]:
        return [(GW_IP, self.gw), *self.clients.items()]

    def run(self, duration: float = 5.0) -> None:
        until = self.now + duration
        for _ in range(10_000):
            moved = False
            for addr, mgr in self.managers():
                for data, local, remote in mgr.datagrams_to_send(self.now):
                    dst = self.gw if remote[0] == GW_IP else self.clients.get(remote[0])
                    if dst is not None:
                        dst.receive_datagram(data, remote, local, self.now)
                        moved = True
                while (e := mgr.next_event()) is not None:
                    self.events[addr].append(e)
            if moved:
                continue
            timers = [t for _, m in self.managers() if (t := m.next_timer()) is not None]
            if not timers or min(timers) > until:
                self.now = until
                return
            self.now = max(self.now, min(timers))
            for _, m in self.managers():
                m.handle_timer(self.now)
        raise AssertionError("did not settle")

    def vip(self, address: str) -> str | None:
        mgr = self.clients[address]
        sas = [s for s in mgr.by_id.values() if s.established]
        return str(sas[0].vips.local[0]) if sas and sas[0].vips.local else None


def gateway() -> ConnectionConfig:
    return ConnectionConfig(
        name="gw", local_addrs=(GW_IP,), local_id="sun.example.net", remote_id="%any",
        psk=PSK, retransmit=FAST_RETRANSMIT, dpd=NO_DPD, pools=("rw",),
        children=(ChildConfig("net", ts(NET), ()),),
    )  # fmt: skip


def test_three_clients_distinct_addresses_and_one_reconnects_to_its_own() -> None:
    net = Net(gateway(), [pool("rw", "10.3.0.0/29")])
    clients = {f"192.0.2.{10 + i}": f"user{i}@example.net" for i in range(3)}
    for addr, ident in clients.items():
        net.add_client(addr, ident).initiate("rw", None, net.now)
    net.run()
    vips = {addr: net.vip(addr) for addr in clients}
    assert None not in vips.values() and len(set(vips.values())) == 3
    second = "192.0.2.11"
    net.clients[second].terminate("rw", net.now)
    net.run()
    assert net.vip(second) is None
    net.add_client("192.0.2.20", "newcomer@example.net").initiate("rw", None, net.now)
    net.run()
    assert net.vip("192.0.2.20") not in vips.values()  # a never-used address first
    net.clients[second].initiate("rw", None, net.now)
    net.run()
    assert net.vip(second) == vips[second]
    st = net.gw.pools_status()[0]
    assert (st["online"], st["offline"]) == (4, 0)


def test_client_restart_with_initial_contact_gets_its_address_back() -> None:
    net = Net(gateway(), [pool("rw", "10.3.0.0/29")])
    net.add_client("192.0.2.10", "alice@example.net").initiate("rw", None, net.now)
    net.run()
    before = net.vip("192.0.2.10")
    # the client loses its state (reboot) and comes back from another port mapping
    net.add_client("192.0.2.10", "alice@example.net").initiate("rw", None, net.now)
    net.run()
    assert net.vip("192.0.2.10") == before
    st = net.gw.pools_status(leases=True)[0]
    assert st["leases"] == [
        {"address": before, "identity": "alice@example.net", "status": "online", "holders": 1}
    ]


def test_full_pool_reassigns_the_oldest_offline_lease() -> None:
    net = Net(gateway(), [pool("rw", "10.3.0.0/30")])  # two addresses
    for i, addr in enumerate(("192.0.2.10", "192.0.2.11")):
        net.add_client(addr, f"user{i}@example.net").initiate("rw", None, net.now)
    net.run()
    old = net.vip("192.0.2.10")
    net.clients["192.0.2.10"].terminate("rw", net.now)
    net.run()
    net.add_client("192.0.2.12", "late@example.net").initiate("rw", None, net.now)
    net.run()
    assert net.vip("192.0.2.12") == old
    net.add_client("192.0.2.13", "later@example.net").initiate("rw", None, net.now)
    net.run()
    failed = [e for e in net.events["192.0.2.13"] if isinstance(e, ChildSaFailed)]
    assert failed and failed[0].notify == NotifyType.INTERNAL_ADDRESS_FAILURE


# --------------------------------------------------------------------------- codec


def test_address_and_subnet_attributes_round_trip() -> None:
    attrs = [
        address_attribute(ip("10.3.0.7")),
        address_attribute(ip("2001:db8::7")),
        address_attribute(ip("0.0.0.0"), request=True),
        address_attribute(ip("::"), request=True),
        subnet_attribute(ipaddress.ip_network("10.2.0.0/16")),
        subnet_attribute(ipaddress.ip_network("2001:db8:2::/48")),
        (CfgAttr.INTERNAL_IP4_DNS, ip("10.2.0.53").packed),
        (CfgAttr.INTERNAL_IP6_DNS, ip("2001:db8::53").packed),
        (CfgAttr.INTERNAL_IP4_NBNS, ip("10.2.0.54").packed),
        (CfgAttr.INTERNAL_IP4_NETMASK, b""),
        (0x7001, b"\x00"),
    ]
    assert attrs[1][1][-1] == 128 and attrs[2][1] == b"" and attrs[3][1] == b""
    cp = CpPayload.parse_body(CpPayload(CfgType.CFG_REPLY, attrs).serialise_body())
    parsed = parse_attributes(cp)
    assert parsed.addresses == [(4, ip("10.3.0.7")), (6, ip("2001:db8::7")), (4, None), (6, None)]
    assert [str(n) for n in parsed.subnets] == ["10.2.0.0/16", "2001:db8:2::/48"]
    assert [str(a) for a in parsed.dns] == ["10.2.0.53", "2001:db8::53"]
    assert [str(a) for a in parsed.nbns] == ["10.2.0.54"]
    assert parsed.ignored == 2


@pytest.mark.parametrize(
    "attr",
    [
        (CfgAttr.INTERNAL_IP4_ADDRESS, b"\x0a\x00\x00"),
        (CfgAttr.INTERNAL_IP6_ADDRESS, b"\x20" * 16),  # the prefix length is missing
        (CfgAttr.INTERNAL_IP6_ADDRESS, b"\x20" * 16 + b"\x81"),  # prefix > 128
        (CfgAttr.INTERNAL_IP4_DNS, b"\x0a\x00\x00\x01\x00"),
        (CfgAttr.INTERNAL_IP6_DNS, b"\x20" * 4),
        (CfgAttr.INTERNAL_IP4_SUBNET, b"\x0a\x00\x00\x00\xff\x00\xff\x00"),  # mask
        (CfgAttr.INTERNAL_IP4_SUBNET, b"\x0a\x00\x00\x00"),
        (CfgAttr.INTERNAL_IP6_SUBNET, b"\x20" * 16 + b"\xff"),
        (CfgAttr.SUPPORTED_ATTRIBUTES, b"\x00\x01\x00"),
    ],
)
def test_malformed_attributes_are_parse_errors(attr: tuple[int, bytes]) -> None:
    with pytest.raises(ParseError) as info:
        parse_attributes(CpPayload(CfgType.CFG_REQUEST, [attr]))
    assert info.value.notify == NotifyType.INVALID_SYNTAX
