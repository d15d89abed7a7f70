"""Child SA rekey collisions, one message at a time (RFC 7296 §2.8.1, §2.25.1).

Both sides rekey the same Child SA; the messages are delivered (or dropped) one by one
and after every message the number of Child SAs per state (INSTALLED, REKEYING,
REKEYED, DELETING) is asserted on both sides, through the public ``child_sas`` view
only.  ``W``/``L``: the side whose rekey wins/loses (the pair with the lowest of the
four nonces is redundant, §2.8.1); ``X``: the side whose response arrives first.
"""

from __future__ import annotations

import pytest

from pyipsec.ikev2.constants import ExchangeType
from pyipsec.ikev2.events import ChildSaDeleted, ChildSaInstalled, ChildSaRekeyed, IkeSaDeleted
from pyipsec.ikev2.state import ChildSaState, IkeSaState

from .harness import (
    COLLISION_NONCES,
    FAST_RETRANSMIT,
    Harness,
    established_pair,
    script_collision_nonces,
)

CCSA = ExchangeType.CREATE_CHILD_SA
INFO = ExchangeType.INFORMATIONAL

WINNER = {"a_ni": "b", "a_nr": "a", "b_ni": "a", "b_nr": "b"}

# Child SA states of a side once its own rekey response arrived (§2.8.1)
WIN = "deleting installed installed"  # old: DELETE out; ours and the peer's new pair
LOSE = "rekeyed installed deleting"  # old: the peer deletes it; ours: DELETE out


def _other(side: str) -> str:
    return "b" if side == "a" else "a"


def expect(h: Harness, step: str, **children: str) -> None:
    """Child SA states per side (``a="installed deleting"``); the IKE SA stays put."""
    h.assert_state(
        a_ike="established",
        b_ike="established",
        a_children=children.get("a"),
        b_children=children.get("b"),
        step=step,
    )


def _start(lowest: str | None = None) -> tuple[Harness, tuple[int, int]]:
    h = established_pair()
    if lowest is not None:
        script_collision_nonces(h, lowest)
    (ca,) = h.a.mgr.child_sas()
    (cb,) = h.b.mgr.child_sas()
    assert (ca.spi_in, ca.spi_out) == (cb.spi_out, cb.spi_in)
    return h, (ca.spi_in, ca.spi_out)


def _rekey_child(h: Harness, side: str) -> None:
    mgr = h.side(side).mgr
    (c,) = mgr.child_sas()
    mgr.rekey_child(c.ike_id, c.spi_in, h.now)


def _new_rekeyed(h: Harness, side: str) -> list[int]:
    """spi_in of the ChildSaRekeyed events of ``side`` so far."""
    return [e.info.spi_in for e in h.side(side).of(ChildSaRekeyed)]


def _check_pair(h: Harness, old: tuple[int, int]) -> tuple[int, int]:
    """Exactly one installed pair, matching on both sides, not the old one; everything
    else that was installed has been deleted again.  Returns (a's spi_in, spi_out)."""
    assert h.pending() == [], h.pending()
    expect(h, "the end", a="installed", b="installed")
    (ca,), (cb,) = h.a.mgr.child_sas(), h.b.mgr.child_sas()
    assert ca.spi_in == cb.spi_out and ca.spi_out == cb.spi_in
    assert (ca.spi_in, ca.spi_out) != old
    (ia,), (ib,) = h.a.mgr.ike_sas(), h.b.mgr.ike_sas()
    assert (ca.ike_id, cb.ike_id) == (ia.ike_id, ib.ike_id)
    for side, c in (("a", ca), ("b", cb)):
        s = h.side(side)
        installed = {e.info.spi_in for e in s.of(ChildSaInstalled)} | {
            e.info.spi_in for e in s.of(ChildSaRekeyed)
        }
        deleted = {e.spi_in for e in s.of(ChildSaDeleted)}
        assert installed - deleted == {c.spi_in}
        assert not s.of(IkeSaDeleted)
    h.advance(60)
    assert h.pending() == [], h.pending()
    expect(h, "60 s later", a="installed", b="installed")
    return ca.spi_in, ca.spi_out


# --------------------------------------------------------------------- §2.8.1 basic


@pytest.mark.parametrize("first", ["a", "b"])
@pytest.mark.parametrize("lowest", COLLISION_NONCES)
def test_child_rekey_collision_stepwise(lowest: str, first: str) -> None:
    """§2.8.1: both sides rekey the same Child SA at once; every nonce ordering, either
    response first.  The winner deletes the old pair, the loser its redundant new pair;
    the survivor is the pair the winner's exchange created."""
    h, old = _start(lowest)
    w = WINNER[lowest]
    lo = _other(w)
    x, y = first, _other(first)
    _rekey_child(h, "a")
    _rekey_child(h, "b")
    expect(h, "both rekey", a="rekeying", b="rekeying")

    h.deliver("a", CCSA, False)
    expect(h, "a's request", a="rekeying", b="rekeying installed")
    h.deliver("b", CCSA, False)
    expect(h, "b's request", a="rekeying installed", b="rekeying installed")
    own = {}  # the pair each side created as initiator
    n = len(_new_rekeyed(h, x))
    h.deliver(y, CCSA, True)
    own[x] = _new_rekeyed(h, x)[n:]
    expect(h, f"{x}'s response", **{x: WIN if x == w else LOSE, y: "rekeying installed"})
    n = len(_new_rekeyed(h, y))
    h.deliver(x, CCSA, True)
    own[y] = _new_rekeyed(h, y)[n:]
    expect(h, f"{y}'s response", **{w: WIN, lo: LOSE})
    assert len(own["a"]) == 1 and len(own["b"]) == 1
    held = h.pending()
    assert sorted((p.sender, p.exchange, p.is_response) for p in held) == [
        ("a", INFO, False),
        ("b", INFO, False),
    ]

    h.deliver(w, INFO, False)
    expect(h, "DELETE of the old pair", **{w: WIN, lo: "installed deleting"})
    h.deliver(lo, INFO, False)
    expect(h, "DELETE of the redundant pair", **{w: "deleting installed", lo: "installed deleting"})
    h.deliver(lo, INFO, True)
    expect(h, "its response", **{w: "installed", lo: "installed deleting"})
    h.deliver(w, INFO, True)
    expect(h, "its response", a="installed", b="installed")

    spi_in_a, spi_out_a = _check_pair(h, old)
    # the survivor is the winner's own new pair
    assert (spi_in_a if w == "a" else spi_out_a) == own[w][0]
    for side in "ab":
        assert len(h.side(side).of(ChildSaRekeyed)) == 2
        assert len(h.side(side).of(ChildSaDeleted)) == 2


# --------------------------------------------------------------------- variants


@pytest.mark.parametrize("first", ["a", "b"])
@pytest.mark.parametrize("lowest", COLLISION_NONCES)
def test_child_rekey_collision_response_after_delete(lowest: str, first: str) -> None:
    """§2.8.1: the response to Y's rekey arrives only after X's DELETE (of the old pair
    if X won, of its redundant pair if X lost).  A peer receiving a delete for a Child
    SA it is rekeying forgets its own rekey (§2.8.1 / §2.25.1)."""
    h, old = _start(lowest)
    w = WINNER[lowest]
    x, y = first, _other(first)
    _rekey_child(h, "a")
    _rekey_child(h, "b")
    h.deliver("a", CCSA, False)
    h.deliver("b", CCSA, False)
    h.deliver(y, CCSA, True)
    if x == w:
        expect(h, f"{x}'s response", **{x: WIN, y: "rekeying installed"})
        h.deliver(x, INFO, False)  # DELETE of the old pair overtakes Y's response
        expect(h, "DELETE of the old pair", **{x: WIN, y: "installed"})
        h.deliver(y, INFO, True)
        expect(h, "its response", **{x: "installed installed", y: "installed"})
        h.deliver(x, CCSA, True)  # too late: Y deletes the pair it just got
        expect(h, "late response", **{x: "installed installed", y: "installed deleting"})
        h.deliver(y, INFO, False)
        expect(h, "DELETE of Y's pair", **{x: "installed", y: "installed deleting"})
        h.deliver(x, INFO, True)
    else:
        expect(h, f"{x}'s response", **{x: LOSE, y: "rekeying installed"})
        h.deliver(x, INFO, False)  # X deletes its redundant pair first
        expect(h, "DELETE of the redundant pair", **{x: LOSE, y: "rekeying"})
        h.deliver(y, INFO, True)
        expect(h, "its response", **{x: "rekeyed installed", y: "rekeying"})
        h.deliver(x, CCSA, True)  # a plain rekey for Y now
        expect(h, "late response", **{x: "rekeyed installed", y: "deleting installed"})
        h.deliver(y, INFO, False)
        expect(h, "DELETE of the old pair", **{x: "installed", y: "deleting installed"})
        h.deliver(x, INFO, True)
    expect(h, "last response", a="installed", b="installed")
    _check_pair(h, old)


@pytest.mark.parametrize("dropped", ["a", "b"])
@pytest.mark.parametrize("lowest", COLLISION_NONCES)
def test_child_rekey_collision_request_lost(lowest: str, dropped: str) -> None:
    """§2.8.1 with D's rekey request lost: O completes its rekey and deletes the old
    pair; D's retransmission gets TEMPORARY_FAILURE (the Child SA is being closed,
    §2.25.1) and D settles on O's pair."""
    h, old = _start(lowest)
    d, o = dropped, _other(dropped)
    _rekey_child(h, "a")
    _rekey_child(h, "b")
    lost = h.drop(d, CCSA, False)
    expect(h, "request lost", a="rekeying", b="rekeying")
    h.deliver(o, CCSA, False)
    expect(h, f"{o}'s request", **{d: "rekeying installed", o: "rekeying"})
    h.deliver(d, CCSA, True)
    expect(h, f"{o}'s response", **{d: "rekeying installed", o: "deleting installed"})
    h.advance(FAST_RETRANSMIT.timeout)
    (again,) = h.pending(d)
    assert again.key == lost.key
    h.deliver(d, CCSA, False)
    expect(h, "retransmitted request", **{d: "rekeying installed", o: "deleting installed"})
    h.deliver(o, CCSA, True)
    expect(h, "TEMPORARY_FAILURE", **{d: "rekeyed installed", o: "deleting installed"})
    h.deliver(o, INFO, False)
    expect(h, "DELETE of the old pair", **{d: "installed", o: "deleting installed"})
    h.deliver(d, INFO, True)
    expect(h, "its response", a="installed", b="installed")
    h.deliver_all()
    expect(h, "duplicates", a="installed", b="installed")
    spi_in_a, _ = _check_pair(h, old)
    assert spi_in_a in _new_rekeyed(h, "a")


@pytest.mark.parametrize("dropped", ["a", "b"])
def test_child_rekey_collision_request_lost_then_deleted(dropped: str) -> None:
    """§2.8.1: D's request is lost and O's DELETE of the old pair arrives before D
    retransmits: D forgets its rekey, keeps O's pair; the retransmission (for a Child
    SA the peer no longer has) changes nothing."""
    h, old = _start("a_ni")
    d, o = dropped, _other(dropped)
    _rekey_child(h, "a")
    _rekey_child(h, "b")
    h.drop(d, CCSA, False)
    h.deliver(o, CCSA, False)
    h.deliver(d, CCSA, True)
    expect(h, f"{o}'s response", **{d: "rekeying installed", o: "deleting installed"})
    h.deliver(o, INFO, False)
    expect(h, "DELETE of the old pair", **{d: "installed", o: "deleting installed"})
    h.deliver(d, INFO, True)
    expect(h, "its response", a="installed", b="installed")
    h.drive(30, lambda m: expect(h, f"after {m.label}", a="installed", b="installed"))
    _check_pair(h, old)


@pytest.mark.parametrize("order", ["delete_first", "rekey_first"])
@pytest.mark.parametrize("rekeyer", ["a", "b"])
def test_child_rekey_crossing_child_delete(rekeyer: str, order: str) -> None:
    """§2.8.1/§2.25.1: R rekeys the Child SA while T deletes it.  T refuses the rekey
    (the SA is being closed); R forgets its rekey: no Child SA is left, none is made."""
    h, _ = _start()
    r, t = rekeyer, _other(rekeyer)
    _rekey_child(h, r)
    (ct,) = h.side(t).mgr.child_sas()
    h.side(t).mgr.delete_child(ct.ike_id, ct.spi_in, h.now)
    expect(h, "start", **{r: "rekeying", t: "deleting"})
    if order == "delete_first":
        h.deliver(t, INFO, False)
        expect(h, "DELETE", **{r: "", t: "deleting"})
        h.deliver(r, CCSA, False)
        expect(h, "rekey request", **{r: "", t: "deleting"})
    else:
        h.deliver(r, CCSA, False)
        expect(h, "rekey request", **{r: "rekeying", t: "deleting"})
        h.deliver(t, INFO, False)
        expect(h, "DELETE", **{r: "", t: "deleting"})
    h.deliver(r, INFO, True)
    expect(h, "DELETE response", a="", b="")
    h.deliver(t, CCSA, True)
    expect(h, "rekey response", a="", b="")
    h.drive(60, lambda m: expect(h, f"after {m.label}", a="", b=""))
    for side in "ab":
        s = h.side(side)
        assert not s.of(ChildSaRekeyed) and len(s.of(ChildSaInstalled)) == 1
        assert len(s.of(ChildSaDeleted)) == 1
        (v,) = s.mgr.ike_sas()
        assert v.state is IkeSaState.ESTABLISHED
    assert not [c for c in h.a.mgr.child_sas() if c.state is ChildSaState.INSTALLED]


@pytest.mark.parametrize("lost", ["a", "b"])
@pytest.mark.parametrize("lowest", COLLISION_NONCES)
def test_child_rekey_collision_response_lost(lowest: str, lost: str) -> None:
    """§2.8.1 with X's rekey response lost (§2.1): X keeps retransmitting its request,
    which Y answers from its cache; X then deletes what its own rekey created if it
    lost (or Y's DELETE already took the old pair), or the old pair if it won."""
    h, old = _start(lowest)
    w = WINNER[lowest]
    x, y = lost, _other(lost)
    _rekey_child(h, "a")
    _rekey_child(h, "b")
    h.deliver("a", CCSA, False)
    h.deliver("b", CCSA, False)
    h.drop(y, CCSA, True)
    expect(h, "response lost", a="rekeying installed", b="rekeying installed")
    h.deliver(x, CCSA, True)
    if y == w:
        expect(h, f"{y}'s response", **{y: WIN, x: "rekeying installed"})
        h.deliver(y, INFO, False)
        expect(h, "DELETE of the old pair", **{y: WIN, x: "installed"})
        h.deliver(x, INFO, True)
        expect(h, "its response", **{y: "installed installed", x: "installed"})
    else:
        expect(h, f"{y}'s response", **{y: LOSE, x: "rekeying installed"})
        h.deliver(y, INFO, False)
        expect(h, "DELETE of the redundant pair", **{y: LOSE, x: "rekeying"})
        h.deliver(x, INFO, True)
        expect(h, "its response", **{y: "rekeyed installed", x: "rekeying"})
    (again,) = h.wait(FAST_RETRANSMIT.timeout + 0.1)
    assert (again.sender, again.exchange, again.is_response) == (x, CCSA, False)
    h.deliver(x, CCSA, False)  # answered from the cache (§2.1)
    if y == w:
        expect(h, "retransmitted request", **{y: "installed installed", x: "installed"})
        h.deliver(y, CCSA, True)  # X's pair is redundant and its old pair gone
        expect(h, "cached response", **{y: "installed installed", x: "installed deleting"})
        h.deliver(x, INFO, False)
        expect(h, "DELETE of the redundant pair", **{y: "installed", x: "installed deleting"})
    else:
        expect(h, "retransmitted request", **{y: "rekeyed installed", x: "rekeying"})
        h.deliver(y, CCSA, True)
        expect(h, "cached response", **{y: "rekeyed installed", x: "deleting installed"})
        h.deliver(x, INFO, False)
        expect(h, "DELETE of the old pair", **{y: "installed", x: "deleting installed"})
    h.deliver(y, INFO, True)
    expect(h, "its response", a="installed", b="installed")
    _check_pair(h, old)


@pytest.mark.parametrize("order", ["delete_first", "rekey_first"])
@pytest.mark.parametrize("rekeyer", ["a", "b"])
def test_child_rekey_crossing_ike_delete(rekeyer: str, order: str) -> None:
    """§2.8.1/§2.25: R rekeys the Child SA while T deletes the whole IKE SA.  T answers
    the rekey with an error (the IKE SA is being closed, §2.25.1); nothing survives and
    no Child SA is left half-made on either side."""
    h, _ = _start()
    r, t = rekeyer, _other(rekeyer)
    _rekey_child(h, r)
    (vt,) = h.side(t).mgr.ike_sas()
    h.side(t).mgr.terminate(vt.ike_id, h.now)
    h.assert_state(**{f"{r}_ike": "established", f"{r}_children": "rekeying"})
    h.assert_state(**{f"{t}_ike": "deleting", f"{t}_children": "installed"})
    if order == "delete_first":
        h.deliver(t, INFO, False)
        h.assert_state(**{f"{r}_ike": "", f"{r}_children": "", f"{t}_ike": "deleting"})
        h.deliver(r, CCSA, False)
    else:
        h.deliver(r, CCSA, False)
        h.assert_state(
            **{f"{r}_children": "rekeying", f"{t}_ike": "deleting", f"{t}_children": "installed"}
        )
        h.deliver(t, INFO, False)
        h.assert_state(**{f"{r}_ike": "", f"{r}_children": "", f"{t}_ike": "deleting"})
    h.assert_state(**{f"{t}_ike": "deleting", f"{t}_children": "installed"})
    h.deliver(r, INFO, True)
    h.assert_state(a_ike="", a_children="", b_ike="", b_children="")
    h.deliver(t, CCSA, True)
    h.assert_state(a_ike="", a_children="", b_ike="", b_children="")
    h.drive(60, lambda m: h.assert_state(a_ike="", b_ike="", step=m.label))
    for side in "ab":
        s = h.side(side)
        assert not s.of(ChildSaRekeyed) and len(s.of(ChildSaDeleted)) == 1
        assert len(s.of(IkeSaDeleted)) == 1
