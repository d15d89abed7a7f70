"""NAT detection and port floating (RFC 7296 §2.23, RFC 3948)."""

from __future__ import annotations

from pyipsec.config.model import DpdConfig
from pyipsec.ikev2.constants import ExchangeType
from pyipsec.ikev2.events import ChildSaInstalled, IkeSaEstablished, PeerAddressChanged

from .harness import Harness, Nat, conn_pair


def test_forced_encap_makes_peer_float_and_encapsulate() -> None:
    a, b = conn_pair(a_kw={"encap": True})
    h = Harness(a, b)
    h.up()
    (ea,) = h.a.of(IkeSaEstablished)
    (eb,) = h.b.of(IkeSaEstablished)
    assert ea.nat_local and not ea.nat_remote
    assert eb.nat_remote and not eb.nat_local
    assert ea.local[1] == 4500 and ea.remote[1] == 4500
    assert eb.local[1] == 4500 and eb.remote[1] == 4500
    (ia,) = [e.info for e in h.a.of(ChildSaInstalled)]
    (ib,) = [e.info for e in h.b.of(ChildSaInstalled)]
    assert ia.encap and ib.encap
    assert ia.remote == ("192.0.2.2", 4500) and ib.remote == ("192.0.2.1", 4500)
    init = h.sent("a", ExchangeType.IKE_SA_INIT)
    auth = h.sent("a", ExchangeType.IKE_AUTH)
    assert init[0].src[1] == 500 and auth[0].src[1] == 4500 and auth[0].dst[1] == 4500


def test_responder_forced_encap() -> None:
    a, b = conn_pair(b_kw={"encap": True})
    h = Harness(a, b)
    h.up()
    (ea,) = h.a.of(IkeSaEstablished)
    assert ea.nat_remote and ea.remote[1] == 4500
    assert all(e.info.encap for e in h.a.of(ChildSaInstalled) + h.b.of(ChildSaInstalled))


def test_no_nat_no_encap() -> None:
    a, b = conn_pair()
    h = Harness(a, b)
    h.up()
    (ea,) = h.a.of(IkeSaEstablished)
    assert not ea.nat_local and not ea.nat_remote and ea.remote[1] == 500


def test_real_nat_and_mapping_change() -> None:
    a, b = conn_pair(a_kw={"dpd": DpdConfig(interval=10.0)})
    nat = Nat()
    h = Harness(a, b, nat=nat)
    h.up()
    (ea,) = h.a.of(IkeSaEstablished)
    (eb,) = h.b.of(IkeSaEstablished)
    assert ea.nat_local and eb.nat_remote
    assert eb.remote[0] == nat.public_ip and eb.local[1] == 4500
    (ib,) = [e.info for e in h.b.of(ChildSaInstalled)]
    assert ib.encap and ib.remote[0] == nat.public_ip
    # the NAT reboots: the next authenticated message from A comes from a new port
    old = eb.remote
    nat.rebind()
    h.run(15)  # A's liveness check goes out through the new mapping
    (moved,) = h.b.of(PeerAddressChanged)
    assert moved.old == old and moved.new != old and moved.new[0] == nat.public_ip
    sa_b = next(iter(h.b.mgr.by_id.values()))
    (cb,) = sa_b.children.values()
    assert sa_b.make_info(cb).remote == moved.new


def test_nat_traversal_disabled() -> None:
    a, b = conn_pair(a_kw={"nat_traversal": False})
    h = Harness(a, b)
    h.up()
    (ea,) = h.a.of(IkeSaEstablished)
    assert not ea.nat_local and ea.remote[1] == 500


def test_keepalives_only_behind_nat() -> None:
    a, b = conn_pair(a_kw={"keepalive_interval": 20.0}, b_kw={"keepalive_interval": 20.0})
    h = Harness(a, b, nat=Nat())
    h.up()
    h.run(50)
    ka = [k for k in h.keepalives if k[1] == "a"]
    assert len(ka) == 2 and not [k for k in h.keepalives if k[1] == "b"]
    assert ka[0][2][1] == 4500 and ka[0][3] == ("192.0.2.2", 4500)
    assert 19 <= ka[1][0] - ka[0][0] <= 21
    # ESP sent by the data plane refreshes the mapping: no keepalive then
    h.keepalives.clear()
    (ia,) = [e.info for e in h.a.of(ChildSaInstalled)]
    for n in range(1, 6):
        h.a.mgr.notify_traffic(ia.spi_in, h.now, packets_out=n, bytes_out=100 * n)
        h.run(10)
    assert not h.keepalives


def test_esp_follows_nat_mapping() -> None:
    a, b = conn_pair(a_kw={"encap": True})
    h = Harness(a, b)
    h.up()
    (ib,) = [e.info for e in h.b.of(ChildSaInstalled)]
    h.b.mgr.esp_activity(ib.spi_in, h.now, ("192.0.2.1", 4500), 1)
    assert not h.b.of(PeerAddressChanged)
    h.b.mgr.esp_activity(ib.spi_in, h.now, ("192.0.2.1", 61000), 2)
    h.flush()
    (moved,) = h.b.of(PeerAddressChanged)
    assert moved.new == ("192.0.2.1", 61000)
    # an older (replayed) packet from the old address does not move it back
    h.b.mgr.esp_activity(ib.spi_in, h.now, ("192.0.2.1", 4500), 1)
    h.flush()
    assert len(h.b.of(PeerAddressChanged)) == 1
    sa_b = next(iter(h.b.mgr.by_id.values()))
    assert sa_b.remote == ("192.0.2.1", 61000)
    # A (which only fakes its NAT) does not follow B
    (ia,) = [e.info for e in h.a.of(ChildSaInstalled)]
    h.a.mgr.esp_activity(ia.spi_in, h.now, ("192.0.2.2", 1234), 9)
    h.flush()
    assert not h.a.of(PeerAddressChanged)


def test_esp_activity_without_sequence_numbers() -> None:
    a, b = conn_pair(a_kw={"encap": True})
    h = Harness(a, b)
    h.up()
    (ib,) = [e.info for e in h.b.of(ChildSaInstalled)]
    h.b.mgr.esp_activity(ib.spi_in, h.now, ("192.0.2.1", 40000))
    h.flush()
    (moved,) = h.b.of(PeerAddressChanged)
    assert moved.new == ("192.0.2.1", 40000)
