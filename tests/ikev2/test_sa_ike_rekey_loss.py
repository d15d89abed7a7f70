"""IKE SA rekeying, continued (RFC 7296 §1.3.2, §2.8, §2.18): loss of each message
of the rekey, repeated rekeys by either side, lifetimes, a dead peer during the rekey,
NAT and Child SA work on the rekeyed SA."""

from __future__ import annotations

from typing import Any

from pyipsec.config.model import Lifetimes
from pyipsec.ikev2.constants import ExchangeType
from pyipsec.ikev2.events import (
    ChildSaDeleted,
    ChildSaInstalled,
    ChildSaRekeyed,
    IkeSaDeleted,
    IkeSaRekeyed,
    PeerDead,
)
from pyipsec.ikev2.sa import IkeSa
from pyipsec.ikev2.state import IkeSaState

from .harness import Harness, Nat, conn_pair, drop_first, is_exchange


def _live(side: Any) -> list[IkeSa]:
    return [sa for sa in side.mgr.by_id.values() if sa.state is IkeSaState.ESTABLISHED]


def _up(nat: Nat | None = None, **kw: Any) -> Harness:
    a, b = conn_pair(**kw)
    h = Harness(a, b, nat=nat)
    h.up()
    return h


def _settled(h: Harness) -> tuple[IkeSa, IkeSa]:
    h.run(15)
    (sa_a,) = _live(h.a)
    (sa_b,) = _live(h.b)
    assert (sa_a.spi_i, sa_a.spi_r) == (sa_b.spi_i, sa_b.spi_r) and sa_a.keys == sa_b.keys
    assert len(h.a.mgr.by_id) == 1 and len(h.b.mgr.by_id) == 1
    (ca,) = sa_a.children.values()
    (cb,) = sa_b.children.values()
    assert ca.spi_out == cb.spi_in and cb.spi_out == ca.spi_in
    return sa_a, sa_b


def _rekey(h: Harness, side: str = "a", duration: float = 10.0) -> None:
    s = h.a if side == "a" else h.b
    (sa,) = _live(s)
    s.mgr.rekey_ike(sa.ike_id, h.now)
    h.run(duration)


def test_lost_rekey_request_is_retransmitted() -> None:
    h = _up()
    h.rules.append(drop_first(is_exchange("a", ExchangeType.CREATE_CHILD_SA, False)))
    _rekey(h)
    reqs = h.sent("a", ExchangeType.CREATE_CHILD_SA, response=False)
    assert len(reqs) == 2 and reqs[0].data == reqs[1].data
    assert len(h.a.of(IkeSaRekeyed)) == 1 and len(h.b.of(IkeSaRekeyed)) == 1
    _settled(h)


def test_lost_rekey_response_answered_from_cache() -> None:
    h = _up()
    h.rules.append(drop_first(is_exchange("b", ExchangeType.CREATE_CHILD_SA, True)))
    _rekey(h)
    resps = h.sent("b", ExchangeType.CREATE_CHILD_SA, response=True)
    assert len(resps) == 2 and resps[0].data == resps[1].data  # not reprocessed
    assert len(h.b.of(IkeSaRekeyed)) == 1
    _settled(h)


def test_lost_delete_of_the_old_ike_sa() -> None:
    h = _up()
    h.rules.append(drop_first(is_exchange("a", ExchangeType.INFORMATIONAL, False)))
    (old_b,) = _live(h.b)
    _rekey(h)
    assert len(h.sent("a", ExchangeType.INFORMATIONAL, response=False)) == 2
    assert [e.ike_id for e in h.b.of(IkeSaDeleted)] == [old_b.ike_id]
    assert not h.a.of(ChildSaDeleted) and not h.b.of(ChildSaDeleted)
    _settled(h)


def test_lost_delete_response_old_sa_still_goes_away() -> None:
    h = _up()
    h.rules.append(
        lambda p: [] if p.sender == "b" and p.exchange == ExchangeType.INFORMATIONAL else None
    )
    _rekey(h, duration=30)
    # every response to the Delete is lost: A gives up on the old SA without PeerDead
    assert not h.a.of(PeerDead) and len(h.a.of(IkeSaDeleted)) == 1
    h.rules.clear()
    _settled(h)


def test_repeated_rekeys_by_both_sides() -> None:
    h = _up()
    for side in ("a", "b", "a", "b"):
        _rekey(h, side, 3)
    assert len(h.a.of(IkeSaRekeyed)) == 4 and len(h.b.of(IkeSaRekeyed)) == 4
    sa_a, sa_b = _settled(h)
    assert sa_a.initiator is False and sa_b.initiator is True  # B rekeyed last
    assert len(h.a.of(ChildSaInstalled)) == 1 and not h.a.of(ChildSaDeleted)


def test_child_rekey_and_delete_on_the_rekeyed_sa() -> None:
    h = _up()
    _rekey(h, "b")
    sa_a, sa_b = _settled(h)
    (cb,) = sa_b.children.values()
    h.b.mgr.rekey_child(sa_b.ike_id, cb.spi_in, h.now)
    h.run(3)
    assert h.a.of(ChildSaRekeyed) and h.b.of(ChildSaRekeyed)
    (ca,) = sa_a.children.values()
    h.a.mgr.delete_child(sa_a.ike_id, ca.spi_in, h.now)
    h.run(3)
    assert not sa_a.children and not sa_b.children


def test_peer_dies_during_the_rekey() -> None:
    h = _up()
    h.down = True
    _rekey(h, duration=40)
    # retransmissions exhausted on an established SA: the peer is dead (§2.4)
    assert h.a.of(PeerDead) and h.a.of(IkeSaDeleted)
    assert not h.a.of(IkeSaRekeyed) and not h.a.mgr.status()
    assert h.a.mgr.error_status()["retransmits-exhausted"] == 1


def test_soft_lifetime_rekeys_repeatedly_and_hard_lifetime_never_hits() -> None:
    lt = Lifetimes(rekey_time=50.0, over_time=10.0, rand_time=5.0)
    h = _up(ike_lifetimes=lt)
    h.run(200)
    assert len(h.a.of(IkeSaRekeyed)) + len(h.b.of(IkeSaRekeyed)) >= 3
    assert not [e for e in h.a.of(IkeSaDeleted) if "expired" in e.reason]
    _settled(h)


def test_hard_lifetime_without_rekey_deletes() -> None:
    lt = Lifetimes(rekey_time=0.0, over_time=30.0)
    h = _up(ike_lifetimes=lt)
    h.run(40)
    assert h.a.of(IkeSaDeleted) or h.b.of(IkeSaDeleted)
    assert not h.a.mgr.status() and not h.b.mgr.status()


def test_rekey_behind_nat_keeps_floated_ports() -> None:
    h = _up(nat=Nat())
    (old_a,) = _live(h.a)
    assert old_a.nat_local and old_a.local[1] == 4500
    _rekey(h)
    sa_a, sa_b = _settled(h)
    assert sa_a.nat_local and sa_a.local[1] == 4500 and sa_b.nat_remote
    assert sa_b.remote[0] == "203.0.113.7"
