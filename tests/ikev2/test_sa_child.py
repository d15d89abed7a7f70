"""CREATE_CHILD_SA: additional children, PFS, rekeying and collisions (RFC 7296 §1.3, §2.8)."""

from __future__ import annotations

from pyipsec.config.model import Lifetimes
from pyipsec.ikev2.constants import DhId, ExchangeType, NotifyType
from pyipsec.ikev2.events import (
    ChildSaDeleted,
    ChildSaFailed,
    ChildSaInstalled,
    ChildSaRekeyed,
    IkeSaEstablished,
)
from pyipsec.ikev2.state import ChildSaState

from .harness import Harness, child, conn_pair


def _two_children(pfs: str | None) -> Harness:
    esp2 = ("aes128gcm16-" + pfs,) if pfs else ("aes128gcm16",)
    a, b = conn_pair(
        a_children=[
            child(),
            child("web", local=("10.1.5.0/24",), remote=("10.2.5.0/24",), esp_proposals=esp2),
        ],
        b_children=[
            child(local=("10.2.0.0/16",), remote=("10.1.0.0/16",)),
            child("web", local=("10.2.5.0/24",), remote=("10.1.5.0/24",), esp_proposals=esp2),
        ],
    )
    return Harness(a, b)


def _sa(side):  # type: ignore[no-untyped-def]
    return next(iter(side.mgr.by_id.values()))


def _pair_ok(ia, ib) -> None:  # type: ignore[no-untyped-def]
    assert ia.spi_out == ib.spi_in and ia.spi_in == ib.spi_out
    assert ia.encr_key_out == ib.encr_key_in and ia.encr_key_in == ib.encr_key_out
    assert ia.integ_key_out == ib.integ_key_in


def test_additional_child_without_pfs() -> None:
    h = _two_children(None)
    h.up()
    h.a.mgr.initiate("a2b", "web", h.now)
    h.run(3)
    web_a = [e.info for e in h.a.of(ChildSaInstalled) if e.info.child == "web"]
    web_b = [e.info for e in h.b.of(ChildSaInstalled) if e.info.child == "web"]
    assert len(web_a) == 1 and len(web_b) == 1
    # the exact selector match wins over the first overlapping config on the responder
    assert sorted(e.info.child for e in h.b.of(ChildSaInstalled)) == ["net", "web"]
    _pair_ok(web_a[0], web_b[0])
    assert web_a[0].pfs_group is None
    assert len(h.a.of(IkeSaEstablished)) == 1  # reused the IKE SA
    assert len(h.sent("a", ExchangeType.CREATE_CHILD_SA, response=False)) == 1


def test_additional_child_with_pfs() -> None:
    h = _two_children("ecp256")
    h.up()
    h.a.mgr.create_child(_sa(h.a).ike_id, "web", h.now)
    h.run(3)
    web_a = [e.info for e in h.a.of(ChildSaInstalled) if e.info.child == "web"]
    web_b = [e.info for e in h.b.of(ChildSaInstalled) if e.info.child == "web"]
    _pair_ok(web_a[0], web_b[0])
    assert web_a[0].pfs_group == DhId.ECP_256 and web_a[0].key_bits == 128


def test_pfs_invalid_ke_retry() -> None:
    a, b = conn_pair(esp=["aes128gcm16-x25519-ecp256"], esp_b=["aes128gcm16-ecp256"])
    h = Harness(a, b)
    h.up()
    sa = _sa(h.a)
    (first,) = sa.children.values()
    h.a.mgr.rekey_child(sa.ike_id, first.spi_in, h.now)
    h.run(3)
    (rk,) = h.a.of(ChildSaRekeyed)
    assert rk.info.pfs_group == DhId.ECP_256
    assert len(h.sent("a", ExchangeType.CREATE_CHILD_SA, response=False)) == 2


def test_child_rekey_installs_new_before_deleting_old() -> None:
    a, b = conn_pair()
    h = Harness(a, b)
    h.up()
    (old_a,) = [e.info for e in h.a.of(ChildSaInstalled)]
    h.a.mgr.rekey_child(_sa(h.a).ike_id, old_a.spi_in, h.now)
    h.run(3)
    (rk_a,) = h.a.of(ChildSaRekeyed)
    (rk_b,) = h.b.of(ChildSaRekeyed)
    assert rk_a.old_spi_in == old_a.spi_in and rk_b.old_spi_in == old_a.spi_out
    _pair_ok(rk_a.info, rk_b.info)
    assert rk_a.info.encr_key_out != old_a.encr_key_out
    # the new SA came before the delete of the old one, on both sides
    ia = h.a.events.index(rk_a)
    (del_a,) = h.a.of(ChildSaDeleted)
    assert h.a.events.index(del_a) > ia and del_a.spi_in == old_a.spi_in
    (del_b,) = h.b.of(ChildSaDeleted)
    assert del_b.spi_in == old_a.spi_out
    assert h.b.events.index(del_b) > h.b.events.index(rk_b)
    assert list(_sa(h.a).children) == [rk_a.info.spi_in]
    assert list(_sa(h.b).children) == [rk_b.info.spi_in]


def test_soft_lifetime_rekey_and_hard_expiry() -> None:
    lt = Lifetimes(rekey_time=100.0, over_time=10.0, rand_time=10.0)
    a, b = conn_pair(child_lifetimes=lt)
    h = Harness(a, b)
    h.up()
    (info,) = [e.info for e in h.a.of(ChildSaInstalled)]
    assert info.lifetimes.soft is not None and 90 <= info.lifetimes.soft - (h.now - 5) <= 106
    h.run(120)
    assert h.a.of(ChildSaRekeyed) or h.b.of(ChildSaRekeyed)
    # each side has exactly one live child after the dust settles
    assert len(_sa(h.a).children) == 1 and len(_sa(h.b).children) == 1
    ca = next(iter(_sa(h.a).children.values()))
    cb = next(iter(_sa(h.b).children.values()))
    assert ca.spi_out == cb.spi_in and ca.encr_out == cb.encr_in


def test_hard_lifetime_without_rekey_deletes() -> None:
    lt = Lifetimes(rekey_time=0.0, over_time=50.0)
    a, b = conn_pair(child_lifetimes=lt)
    h = Harness(a, b)
    h.up()
    h.run(60)
    assert h.a.of(ChildSaDeleted) and h.b.of(ChildSaDeleted)
    assert not _sa(h.a).children and not _sa(h.b).children


def test_volume_rekey_and_limit() -> None:
    lt = Lifetimes(rekey_bytes=1000, life_bytes=5000)
    a, b = conn_pair(child_lifetimes=lt)
    h = Harness(a, b)
    h.up()
    (info,) = [e.info for e in h.a.of(ChildSaInstalled)]
    h.a.mgr.notify_traffic(info.spi_in, h.now, bytes_in=500)
    h.run(1)
    assert not h.a.of(ChildSaRekeyed)
    h.a.mgr.notify_traffic(info.spi_in, h.now, bytes_in=1500)
    h.run(2)
    (rk,) = h.a.of(ChildSaRekeyed)
    h.a.mgr.notify_traffic(rk.info.spi_in, h.now, bytes_out=6000)
    h.run(2)
    assert rk.info.spi_in in [e.spi_in for e in h.a.of(ChildSaDeleted)]


def _collision(lowest: str) -> Harness:
    """Both sides rekey the same child at once; ``lowest`` names the nonce that is lowest:
    "a_ni" (A's request), "a_nr" (A's answer to B), "b_ni", "b_nr"."""
    a, b = conn_pair()
    h = Harness(a, b)
    h.up()
    high = [bytes([0x80 + i]) * 32 for i in range(4)]
    low = b"\x01" * 32
    a_ni, a_nr, b_ni, b_nr = high
    if lowest == "a_ni":
        a_ni = low
    elif lowest == "a_nr":
        a_nr = low
    elif lowest == "b_ni":
        b_ni = low
    else:
        b_nr = low
    h.a.rng.nonces.extend([a_ni, a_nr])
    h.b.rng.nonces.extend([b_ni, b_nr])
    sa_a, sa_b = _sa(h.a), _sa(h.b)
    (ca,) = sa_a.children.values()
    (cb,) = sa_b.children.values()
    h.a.mgr.rekey_child(sa_a.ike_id, ca.spi_in, h.now)
    h.b.mgr.rekey_child(sa_b.ike_id, cb.spi_in, h.now)
    h.run(5)
    return h


def _check_collision(h: Harness, a_wins: bool) -> None:
    sa_a, sa_b = _sa(h.a), _sa(h.b)
    assert len(sa_a.children) == 1 and len(sa_b.children) == 1, (sa_a.children, sa_b.children)
    ca = next(iter(sa_a.children.values()))
    cb = next(iter(sa_b.children.values()))
    assert ca.spi_out == cb.spi_in and ca.spi_in == cb.spi_out
    assert ca.encr_out == cb.encr_in and ca.encr_in == cb.encr_out
    assert ca.state is ChildSaState.INSTALLED and cb.state is ChildSaState.INSTALLED
    # the survivor was created by the exchange A initiated iff A won
    assert ca.initiated_by_us is a_wins and cb.initiated_by_us is not a_wins
    # everything installed was deleted again except the survivor, on both sides
    for side in (h.a, h.b):
        installed = {e.info.spi_in for e in side.of(ChildSaInstalled)} | {
            e.info.spi_in for e in side.of(ChildSaRekeyed)
        }
        deleted = {e.spi_in for e in side.of(ChildSaDeleted)}
        assert installed - deleted == set(_sa(side).children)
        assert len(installed) == 3


def test_rekey_collision_a_ni_lowest() -> None:
    _check_collision(_collision("a_ni"), a_wins=False)


def test_rekey_collision_a_nr_lowest() -> None:
    _check_collision(_collision("a_nr"), a_wins=True)


def test_rekey_collision_b_ni_lowest() -> None:
    _check_collision(_collision("b_ni"), a_wins=True)


def test_rekey_collision_b_nr_lowest() -> None:
    _check_collision(_collision("b_nr"), a_wins=False)


def test_rekey_of_unknown_child_gets_child_sa_not_found() -> None:
    a, b = conn_pair()
    h = Harness(a, b)
    h.up()
    sa_a, sa_b = _sa(h.a), _sa(h.b)
    (cb,) = list(sa_b.children.values())
    # B forgets the child silently (as after a crash of its data plane)
    sa_b.children.clear()
    (ca,) = sa_a.children.values()
    h.a.mgr.rekey_child(sa_a.ike_id, ca.spi_in, h.now)
    h.run(3)
    # A drops the old child and creates a fresh one
    assert ca.spi_in in [e.spi_in for e in h.a.of(ChildSaDeleted)]
    assert len(h.a.of(ChildSaInstalled)) == 2
    assert len(sa_a.children) == 1 and len(sa_b.children) == 1
    _ = cb


def test_create_child_refused_keeps_everything() -> None:
    a, b = conn_pair(
        a_children=[child(), child("other", local=("10.1.9.0/24",), remote=("10.99.0.0/16",))],
    )
    h = Harness(a, b)
    h.up()
    h.a.mgr.initiate("a2b", "other", h.now)
    h.run(3)
    (f,) = h.a.of(ChildSaFailed)
    assert f.notify == NotifyType.TS_UNACCEPTABLE and f.child == "other"
    assert len(_sa(h.a).children) == 1


def test_unsolicited_response_is_dropped() -> None:
    a, b = conn_pair()
    h = Harness(a, b)
    h.up()
    resp = h.sent("b", ExchangeType.IKE_AUTH, response=True)[0]
    n_events = len(h.a.events)
    h.a.mgr.receive_datagram(resp.data, resp.dst, resp.src, h.now)
    h.flush()
    assert len(h.a.events) == n_events and not h.a.mgr.datagrams_to_send(h.now)


def test_create_child_during_ike_rekey_gets_temporary_failure() -> None:
    h = _two_children(None)
    h.up()
    sa_a, sa_b = _sa(h.a), _sa(h.b)
    # B's IKE rekey request is held back; A asks for a new child meanwhile
    h.rules.append(
        lambda p: [0.3] if p.sender == "a" and p.exchange == ExchangeType.CREATE_CHILD_SA else None
    )
    h.b.mgr.rekey_ike(sa_b.ike_id, h.now)
    h.run(0.05)
    h.a.mgr.create_child(sa_a.ike_id, "web", h.now)
    h.run(60)
    web = [e.info for e in h.a.of(ChildSaInstalled) if e.info.child == "web"]
    assert len(web) == 1  # retried after TEMPORARY_FAILURE, on the new IKE SA
    live = [s for s in h.a.mgr.by_id.values() if s.state.value == "established"]
    assert len(live) == 1 and len(live[0].children) == 2


def test_peer_deletes_child_we_are_rekeying() -> None:
    a, b = conn_pair()
    h = Harness(a, b)
    h.up()
    sa_a, sa_b = _sa(h.a), _sa(h.b)
    (ca,) = sa_a.children.values()
    (cb,) = sa_b.children.values()
    h.rules.append(
        lambda p: [0.5] if p.sender == "a" and p.exchange == ExchangeType.CREATE_CHILD_SA else None
    )
    h.a.mgr.rekey_child(sa_a.ike_id, ca.spi_in, h.now)
    h.b.mgr.delete_child(sa_b.ike_id, cb.spi_in, h.now)
    h.run(5)
    assert ca.spi_in in [e.spi_in for e in h.a.of(ChildSaDeleted)]
    # A's rekey still produced a pair both sides agree on
    assert len(sa_a.children) == len(sa_b.children)
    for c in sa_a.children.values():
        peer = sa_b.child_by_out(c.spi_in)
        assert peer is not None and peer.encr_in == c.encr_out
