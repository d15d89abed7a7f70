"""IKE SA rekey collisions, one message at a time (RFC 7296 §2.8.2, §2.25, §2.25.1).

strongSwan exchange-test style: both managers run back to back in step mode, every
datagram is held on the wire until the test delivers (or drops) it, and after every
message the number of IKE and Child SAs per state is asserted on both sides.  Only
public state is used (``ike_sas``/``child_sas``, events, message headers), so these
tests survive a redesign of the core.

Notation in the tables: ``W``/``L`` are the sides whose rekey wins/loses the collision
(the SA with the lowest of the four nonces is redundant, §2.8.2), ``X`` the side whose
rekey response is delivered first, ``Y`` the other one.
"""

from __future__ import annotations

import pytest

from pyipsec.ikev2.constants import ExchangeType
from pyipsec.ikev2.events import (
    ChildSaDeleted,
    ChildSaInstalled,
    ChildSaRekeyed,
    IkeSaDeleted,
    IkeSaRekeyed,
    LivenessAnswered,
)
from pyipsec.ikev2.state import ChildSaState, IkeSaState
from pyipsec.ikev2.tasks.ike_rekey import UNCLAIMED_TIMEOUT

from .harness import (
    COLLISION_NONCES,
    FAST_RETRANSMIT,
    Harness,
    established_pair,
    script_collision_nonces,
)

CCSA = ExchangeType.CREATE_CHILD_SA
INFO = ExchangeType.INFORMATIONAL

#: the side whose rekey wins, by lowest nonce
WINNER = {"a_ni": "b", "a_nr": "a", "b_ni": "a", "b_nr": "b"}

# IKE SA states of the sides once their own rekey response arrived (§2.8.2)
WIN = "deleting established rekeyed"  # old SA: DELETE out; ours; the peer's redundant one
LOSE = "rekeyed established deleting"  # old SA: waits for the peer; ours: DELETE out


def _other(side: str) -> str:
    return "b" if side == "a" else "a"


def expect(h: Harness, step: str, **sides: tuple[str | None, str | None]) -> None:
    """``expect(h, "...", a=(ike states, child states), b=(...))``."""
    kw: dict[str, str | None] = {}
    for side, (ike, children) in sides.items():
        kw[f"{side}_ike"] = ike
        kw[f"{side}_children"] = children
    h.assert_state(**kw, step=step)


def _only(h: Harness, side: str) -> int:
    (v,) = h.side(side).mgr.ike_sas()
    assert v.state is IkeSaState.ESTABLISHED
    return v.ike_id


def _start(lowest: str | None = None) -> tuple[Harness, dict[str, object]]:
    h = established_pair()
    if lowest is not None:
        script_collision_nonces(h, lowest)
    (ca,) = h.a.mgr.child_sas()
    before: dict[str, object] = {
        "spis": h.ike_spis("a", _only(h, "a")),
        "child": (ca.spi_in, ca.spi_out),
        "events": {s: len(h.side(s).events) for s in "ab"},
    }
    assert before["spis"] == h.ike_spis("b", _only(h, "b"))
    return h, before


def _rekey_ike(h: Harness, side: str) -> None:
    mgr = h.side(side).mgr
    mgr.rekey_ike(mgr.ike_sas()[0].ike_id, h.now)


def _liveness(h: Harness, side: str) -> None:
    ike_id = _only(h, side)
    h.side(side).mgr.liveness(ike_id, h.now)
    h.deliver(side, INFO, False)
    h.deliver(_other(side), INFO, True)
    assert [e.ike_id for e in h.side(side).of(LivenessAnswered)][-1] == ike_id


def _check_single_pair(h: Harness, before: dict[str, object], *, children: bool = True) -> None:
    """Exactly one IKE SA per side, the same pair, new keys, and (``children``) the
    original Child SA on it on both sides -- moved, not rekeyed or reinstalled."""
    assert h.pending() == [], h.pending()
    h.assert_state(a_ike="established", b_ike="established", step="the end")
    ia, ib = _only(h, "a"), _only(h, "b")
    spis = h.ike_spis("a", ia)
    assert spis is not None and spis == h.ike_spis("b", ib)
    assert spis != before["spis"]
    # the surviving SA is the one both sides announced with IkeSaRekeyed
    for side, ike_id in (("a", ia), ("b", ib)):
        assert ike_id in [e.new_id for e in h.side(side).of(IkeSaRekeyed)]
    (va,), (vb,) = h.a.mgr.ike_sas(), h.b.mgr.ike_sas()
    assert va.initiator != vb.initiator
    if children:
        (ca,) = h.a.mgr.child_sas()
        (cb,) = h.b.mgr.child_sas()
        assert (ca.ike_id, cb.ike_id) == (ia, ib)
        assert ca.state is ChildSaState.INSTALLED and cb.state is ChildSaState.INSTALLED
        assert (ca.spi_in, ca.spi_out) == before["child"] == (cb.spi_out, cb.spi_in)
        for side in "ab":
            new = h.side(side).events[before["events"][side] :]  # type: ignore[index]
            assert not [
                e for e in new if isinstance(e, ChildSaInstalled | ChildSaRekeyed | ChildSaDeleted)
            ]
    # nothing left to do: no late deletes, no lingering SAs; both ends of the pair work
    h.advance(60)
    assert h.pending() == [], h.pending()
    h.assert_state(a_ike="established", b_ike="established", step="60 s later")
    _liveness(h, "a")
    _liveness(h, "b")


# --------------------------------------------------------------------- §2.8.2 basic


@pytest.mark.parametrize("first", ["a", "b"])
@pytest.mark.parametrize("lowest", COLLISION_NONCES)
def test_ike_rekey_collision_stepwise(lowest: str, first: str) -> None:
    """§2.8.2: both sides rekey the IKE SA at once; every nonce ordering, either
    response first.  The initiator of the surviving rekey deletes the old SA, the other
    one deletes its redundant new SA; the Child SA moves to the survivor (§2.8.2)."""
    h, before = _start(lowest)
    w = WINNER[lowest]
    lo = _other(w)
    x, y = first, _other(first)
    _rekey_ike(h, "a")
    _rekey_ike(h, "b")
    expect(h, "both rekey", a=("rekeying", "installed"), b=("rekeying", "installed"))
    assert [(p.exchange, p.is_response) for p in h.pending()] == [(CCSA, False)] * 2

    h.deliver("a", CCSA, False)
    expect(h, "a's request", a=("rekeying", "installed"), b=("rekeying established", "installed"))
    h.deliver("b", CCSA, False)
    expect(
        h,
        "b's request",
        a=("rekeying established", "installed"),
        b=("rekeying established", "installed"),
    )
    h.deliver(y, CCSA, True)
    expect(
        h,
        f"{x}'s response",
        **{x: (WIN if x == w else LOSE, "installed"), y: ("rekeying established", "installed")},
    )
    h.deliver(x, CCSA, True)
    expect(h, f"{y}'s response", **{w: (WIN, "installed"), lo: (LOSE, "installed")})
    # the winner deletes the old SA, the loser its redundant one: one DELETE each way
    held = h.pending()
    assert sorted((p.sender, p.exchange, p.is_response) for p in held) == [
        ("a", INFO, False),
        ("b", INFO, False),
    ]
    old_spi_i = before["spis"][0]  # type: ignore[index]
    assert [p.spi_i == old_spi_i for p in h.pending(w)] == [True]
    assert [p.spi_i == old_spi_i for p in h.pending(lo)] == [False]

    h.deliver(w, INFO, False)
    expect(
        h,
        "DELETE of the old SA",
        **{w: (WIN, "installed"), lo: ("established deleting", "installed")},
    )
    h.deliver(lo, INFO, False)
    expect(
        h,
        "DELETE of the redundant SA",
        **{w: ("deleting established", "installed"), lo: ("established deleting", "installed")},
    )
    h.deliver(lo, INFO, True)
    expect(
        h,
        "response to the old SA's DELETE",
        **{w: ("established", "installed"), lo: ("established deleting", "installed")},
    )
    h.deliver(w, INFO, True)
    expect(
        h,
        "response to the redundant SA's DELETE",
        a=("established", "installed"),
        b=("established", "installed"),
    )

    _check_single_pair(h, before)
    (va,) = h.a.mgr.ike_sas()
    assert va.initiator is (w == "a")  # the winner initiated the surviving SA
    for side in "ab":
        assert len(h.side(side).of(IkeSaRekeyed)) == 1
        assert len(h.side(side).of(IkeSaDeleted)) == 2  # the old and the redundant SA


# --------------------------------------------------------------------- variants


@pytest.mark.parametrize("first", ["a", "b"])
@pytest.mark.parametrize("lowest", COLLISION_NONCES)
def test_ike_rekey_collision_response_after_delete(lowest: str, first: str) -> None:
    """§2.8.2: the response to Y's rekey is delayed until X (whose response came first)
    has deleted its SA: the old one if X won, its redundant one if X lost.  Y must not
    end up with a second IKE SA."""
    h, before = _start(lowest)
    w = WINNER[lowest]
    x, y = first, _other(first)
    _rekey_ike(h, "a")
    _rekey_ike(h, "b")
    h.deliver("a", CCSA, False)
    h.deliver("b", CCSA, False)
    h.deliver(y, CCSA, True)
    if x == w:
        expect(
            h,
            f"{x}'s response",
            **{x: (WIN, "installed"), y: ("rekeying established", "installed")},
        )
        h.deliver(x, INFO, False)  # DELETE of the old SA overtakes the response to Y
        # Y forgets its own rekey and keeps the SA X's rekey created (§2.8.2)
        expect(
            h, "DELETE of the old SA", **{x: (WIN, "installed"), y: ("established", "installed")}
        )
        h.deliver(y, INFO, True)
        expect(
            h,
            "its response",
            **{x: ("established rekeyed", "installed"), y: ("established", "installed")},
        )
        h.deliver(x, CCSA, True)  # the late response: the old SA is gone, nothing happens
        expect(
            h,
            "late response",
            **{x: ("established rekeyed", "installed"), y: ("established", "installed")},
        )
        assert h.pending() == []
        # X drops the redundant SA Y never completed, once Y failed to delete it
        h.advance(60)
        expect(
            h, "60 s later", **{x: ("established", "installed"), y: ("established", "installed")}
        )
        h.deliver_all()
        expect(
            h, "stale DELETEs", **{x: ("established", "installed"), y: ("established", "installed")}
        )
    else:
        expect(
            h,
            f"{x}'s response",
            **{x: (LOSE, "installed"), y: ("rekeying established", "installed")},
        )
        h.deliver(x, INFO, False)  # X deletes its redundant SA before Y learns its result
        expect(
            h,
            "DELETE of the redundant SA",
            **{x: (LOSE, "installed"), y: ("rekeying", "installed")},
        )
        h.deliver(y, INFO, True)
        expect(
            h,
            "its response",
            **{x: ("rekeyed established", "installed"), y: ("rekeying", "installed")},
        )
        h.deliver(x, CCSA, True)  # now a plain rekey for Y: it deletes the old SA
        expect(
            h,
            "late response",
            **{x: ("rekeyed established", "installed"), y: ("deleting established", "installed")},
        )
        h.deliver(y, INFO, False)
        expect(
            h,
            "DELETE of the old SA",
            **{x: ("established", "installed"), y: ("deleting established", "installed")},
        )
        h.deliver(x, INFO, True)
        expect(h, "its response", a=("established", "installed"), b=("established", "installed"))
    _check_single_pair(h, before)
    (vw,) = h.side(w).mgr.ike_sas()
    assert vw.initiator  # the winner's SA survived


@pytest.mark.parametrize("dropped", ["a", "b"])
@pytest.mark.parametrize("lowest", COLLISION_NONCES)
def test_ike_rekey_collision_request_lost(lowest: str, dropped: str) -> None:
    """§2.8.2 with a lost request (D's): the other side (O) sees no collision and
    completes its rekey; D's retransmission hits the old SA while O deletes it and gets
    TEMPORARY_FAILURE (§2.25); D then takes the SA it answered (whatever the nonces)."""
    h, before = _start(lowest)
    d, o = dropped, _other(dropped)
    _rekey_ike(h, "a")
    _rekey_ike(h, "b")
    lost = h.drop(d, CCSA, False)
    expect(h, "request lost", a=("rekeying", "installed"), b=("rekeying", "installed"))
    h.deliver(o, CCSA, False)
    expect(
        h,
        f"{o}'s request",
        **{d: ("rekeying established", "installed"), o: ("rekeying", "installed")},
    )
    h.deliver(d, CCSA, True)
    expect(
        h,
        f"{o}'s response",
        **{d: ("rekeying established", "installed"), o: ("deleting established", "installed")},
    )
    h.advance(FAST_RETRANSMIT.timeout)
    (again,) = h.pending(d)
    assert again.key == lost.key  # the same request, retransmitted
    expect(
        h,
        "retransmission",
        **{d: ("rekeying established", "installed"), o: ("deleting established", "installed")},
    )
    h.deliver(d, CCSA, False)
    expect(
        h,
        "retransmitted request",
        **{d: ("rekeying established", "installed"), o: ("deleting established", "installed")},
    )
    h.deliver(o, CCSA, True)  # TEMPORARY_FAILURE: the peer's rekey stands
    expect(
        h,
        "its (error) response",
        **{d: ("rekeyed established", "installed"), o: ("deleting established", "installed")},
    )
    h.deliver(o, INFO, False)  # DELETE of the old SA (one of two copies)
    expect(
        h,
        "DELETE of the old SA",
        **{d: ("established", "installed"), o: ("deleting established", "installed")},
    )
    h.deliver(d, INFO, True)
    expect(h, "its response", a=("established", "installed"), b=("established", "installed"))
    h.deliver_all()  # the retransmitted DELETE and its answer change nothing
    expect(h, "duplicates", a=("established", "installed"), b=("established", "installed"))
    _check_single_pair(h, before)
    (vo,) = h.side(o).mgr.ike_sas()
    assert vo.initiator


@pytest.mark.parametrize("dropped", ["a", "b"])
def test_ike_rekey_collision_request_lost_then_old_sa_deleted(dropped: str) -> None:
    """§2.8.2: D's rekey request is lost and O's DELETE of the old SA arrives before
    D retransmits: D takes O's new SA and never retransmits on the deleted SA."""
    h, before = _start("a_ni")
    d, o = dropped, _other(dropped)
    _rekey_ike(h, "a")
    _rekey_ike(h, "b")
    h.drop(d, CCSA, False)
    h.deliver(o, CCSA, False)
    h.deliver(d, CCSA, True)
    expect(
        h,
        f"{o}'s response",
        **{d: ("rekeying established", "installed"), o: ("deleting established", "installed")},
    )
    h.deliver(o, INFO, False)
    expect(
        h,
        "DELETE of the old SA",
        **{d: ("established", "installed"), o: ("deleting established", "installed")},
    )
    h.deliver(d, INFO, True)
    expect(h, "its response", a=("established", "installed"), b=("established", "installed"))
    h.advance(20)
    assert h.pending() == []
    _check_single_pair(h, before)


@pytest.mark.parametrize("order", ["delete_first", "rekey_first"])
@pytest.mark.parametrize("rekeyer", ["a", "b"])
def test_ike_rekey_crossing_ike_delete(rekeyer: str, order: str) -> None:
    """§2.8.2/§2.25: R rekeys the IKE SA while T deletes it.  T answers the rekey with
    an error (the SA is being closed); the DELETE wins: no IKE SA is left anywhere."""
    h, _ = _start()
    r, t = rekeyer, _other(rekeyer)
    _rekey_ike(h, r)
    h.side(t).mgr.terminate(_only(h, t), h.now)
    expect(h, "start", **{r: ("rekeying", "installed"), t: ("deleting", "installed")})
    if order == "delete_first":
        h.deliver(t, INFO, False)
        expect(h, "DELETE", **{r: ("", ""), t: ("deleting", "installed")})
        h.deliver(r, CCSA, False)
        expect(h, "rekey request", **{r: ("", ""), t: ("deleting", "installed")})
    else:
        h.deliver(r, CCSA, False)
        expect(h, "rekey request", **{r: ("rekeying", "installed"), t: ("deleting", "installed")})
        h.deliver(t, INFO, False)
        expect(h, "DELETE", **{r: ("", ""), t: ("deleting", "installed")})
    h.deliver(r, INFO, True)
    expect(h, "DELETE response", a=("", ""), b=("", ""))
    h.deliver(t, CCSA, True)
    expect(h, "rekey response", a=("", ""), b=("", ""))
    h.advance(60)
    assert h.pending() == []
    expect(h, "60 s later", a=("", ""), b=("", ""))
    for side in "ab":
        s = h.side(side)
        assert not s.of(IkeSaRekeyed)
        assert len(s.of(IkeSaDeleted)) == 1 and len(s.of(ChildSaDeleted)) == 1


@pytest.mark.parametrize("order", ["delete_first", "rekey_first"])
@pytest.mark.parametrize("rekeyer", ["a", "b"])
def test_ike_rekey_crossing_child_delete(rekeyer: str, order: str) -> None:
    """§2.25.1: R rekeys the IKE SA while T deletes the Child SA.  T refuses the rekey
    with TEMPORARY_FAILURE (a Child SA is being closed); R retries after its backoff
    and the IKE SA is rekeyed without the deleted child."""
    h, before = _start()
    r, t = rekeyer, _other(rekeyer)
    _rekey_ike(h, r)
    (ct,) = h.side(t).mgr.child_sas()
    h.side(t).mgr.delete_child(ct.ike_id, ct.spi_in, h.now)
    expect(h, "start", **{r: ("rekeying", "installed"), t: ("established", "deleting")})
    if order == "delete_first":
        h.deliver(t, INFO, False)
        expect(h, "DELETE", **{r: ("rekeying", ""), t: ("established", "deleting")})
        h.deliver(r, CCSA, False)
        expect(h, "rekey request", **{r: ("rekeying", ""), t: ("established", "deleting")})
    else:
        h.deliver(r, CCSA, False)
        expect(h, "rekey request", **{r: ("rekeying", "installed"), t: ("established", "deleting")})
        h.deliver(t, INFO, False)
        expect(h, "DELETE", **{r: ("rekeying", ""), t: ("established", "deleting")})
    h.deliver(r, INFO, True)
    expect(h, "DELETE response", **{r: ("rekeying", ""), t: ("established", "")})
    h.deliver(t, CCSA, True)  # TEMPORARY_FAILURE
    expect(h, "rekey refused", **{r: ("established", ""), t: ("established", "")})
    assert h.pending() == []
    # the retry, after the TEMPORARY_FAILURE backoff (§2.25)
    (req,) = h.wait(15)
    assert (req.sender, req.exchange, req.is_response) == (r, CCSA, False)
    h.deliver(r, CCSA, False)
    expect(h, "retried request", **{r: ("rekeying", ""), t: ("rekeyed established", "")})
    h.deliver(t, CCSA, True)
    expect(h, "its response", **{r: ("deleting established", ""), t: ("rekeyed established", "")})
    h.deliver(r, INFO, False)
    expect(h, "DELETE of the old SA", **{r: ("deleting established", ""), t: ("established", "")})
    h.deliver(t, INFO, True)
    expect(h, "its response", a=("established", ""), b=("established", ""))
    _check_single_pair(h, before, children=False)
    assert not h.a.mgr.child_sas() and not h.b.mgr.child_sas()


# --------------------------------------------------------------------- §2.25.1


@pytest.mark.parametrize("ike_side", ["a", "b"])
def test_ike_rekey_colliding_with_child_rekey(ike_side: str) -> None:
    """§2.25.1: R rekeys the IKE SA while C rekeys the Child SA.  Each refuses the other
    with TEMPORARY_FAILURE; after the retry backoff both rekeys complete, the child ends
    up rekeyed (new SPIs) on the new IKE SA."""
    h, before = _start()
    r, c = ike_side, _other(ike_side)
    _rekey_ike(h, r)
    (cc,) = h.side(c).mgr.child_sas()
    h.side(c).mgr.rekey_child(cc.ike_id, cc.spi_in, h.now)
    expect(h, "start", **{r: ("rekeying", "installed"), c: ("established", "rekeying")})
    h.deliver(r, CCSA, False)
    expect(h, "IKE rekey request", **{r: ("rekeying", "installed"), c: ("established", "rekeying")})
    h.deliver(c, CCSA, False)
    expect(
        h, "child rekey request", **{r: ("rekeying", "installed"), c: ("established", "rekeying")}
    )
    h.deliver(c, CCSA, True)  # TEMPORARY_FAILURE for the IKE rekey
    expect(
        h, "IKE rekey refused", **{r: ("established", "installed"), c: ("established", "rekeying")}
    )
    h.deliver(r, CCSA, True)  # TEMPORARY_FAILURE for the child rekey
    expect(
        h,
        "child rekey refused",
        **{r: ("established", "installed"), c: ("established", "rekeying")},
    )
    assert h.pending() == []
    for side in "ab":
        assert not h.side(side).of(IkeSaRekeyed) and not h.side(side).of(ChildSaRekeyed)

    def invariants(msg: object) -> None:
        for side in "ab":
            ike, ch = h.counts(side)
            live = ike.get(IkeSaState.ESTABLISHED, 0) + ike.get(IkeSaState.REKEYING, 0)
            assert 1 <= live <= 2 and sum(ike.values()) <= 3, (msg, side, ike)
            alive = ch.get(ChildSaState.INSTALLED, 0) + ch.get(ChildSaState.REKEYING, 0)
            assert alive >= 1 and sum(ch.values()) <= 3, (msg, side, ch)

    def done() -> bool:
        return all(
            h.side(s).of(IkeSaRekeyed) and h.side(s).of(ChildSaRekeyed) for s in "ab"
        ) and all(len(h.side(s).mgr.ike_sas()) == 1 for s in "ab")

    h.drive(120, invariants, until=done)
    assert done(), (h.counts("a"), h.counts("b"))
    h.drive(1)  # the remaining DELETE exchanges
    ia, ib = _only(h, "a"), _only(h, "b")
    spis = h.ike_spis("a", ia)
    assert spis is not None and spis == h.ike_spis("b", ib) != before["spis"]
    (ca,), (cb,) = h.a.mgr.child_sas(), h.b.mgr.child_sas()
    assert (ca.ike_id, cb.ike_id) == (ia, ib)
    assert ca.state is ChildSaState.INSTALLED and cb.state is ChildSaState.INSTALLED
    assert (ca.spi_in, ca.spi_out) == (cb.spi_out, cb.spi_in) != before["child"]
    h.advance(60)
    assert h.pending() == []
    _liveness(h, "a")
    _liveness(h, "b")


@pytest.mark.parametrize("lost", ["a", "b"])
@pytest.mark.parametrize("lowest", COLLISION_NONCES)
def test_ike_rekey_collision_response_lost(lowest: str, lost: str) -> None:
    """§2.8.2 with X's rekey response lost (§2.1).  If Y won, Y's DELETE of the old SA
    makes X forget its rekey and Y drops the redundant SA X never completed; if X won,
    Y deletes its redundant SA and X's retransmission is answered from Y's cache."""
    h, before = _start(lowest)
    w = WINNER[lowest]
    x, y = lost, _other(lost)
    _rekey_ike(h, "a")
    _rekey_ike(h, "b")
    h.deliver("a", CCSA, False)
    h.deliver("b", CCSA, False)
    h.drop(y, CCSA, True)
    expect(
        h,
        "response lost",
        a=("rekeying established", "installed"),
        b=("rekeying established", "installed"),
    )
    h.deliver(x, CCSA, True)
    if y == w:
        expect(
            h,
            f"{y}'s response",
            **{y: (WIN, "installed"), x: ("rekeying established", "installed")},
        )
        h.deliver(y, INFO, False)
        expect(
            h, "DELETE of the old SA", **{y: (WIN, "installed"), x: ("established", "installed")}
        )
        h.deliver(x, INFO, True)
        expect(
            h,
            "its response",
            **{y: ("established rekeyed", "installed"), x: ("established", "installed")},
        )
        assert h.pending() == []  # X does not retransmit on the deleted SA
        # X never completed the redundant SA, so it cannot delete it: the winner forgets
        # it silently once the loser had time enough (a Delete would go unanswered)
        h.advance(UNCLAIMED_TIMEOUT - 0.5)
        expect(
            h,
            "just before the timeout",
            **{y: ("established rekeyed", "installed"), x: ("established", "installed")},
        )
        assert h.wait(1.0) == []
        expect(
            h,
            "redundant SA forgotten",
            **{y: ("established", "installed"), x: ("established", "installed")},
        )
        assert h.ike_spis(y, _only(h, y)) != before["spis"]
        assert h.side(y).of(IkeSaDeleted)[-1].reason == "redundant (rekey collision)"
        h.drive(60, lambda msg: expect(
            h, f"after {msg}", **{x: ("established", "installed"), y: ("established", "installed")}
        ))
    else:
        expect(
            h,
            f"{y}'s response",
            **{y: (LOSE, "installed"), x: ("rekeying established", "installed")},
        )
        h.deliver(y, INFO, False)
        expect(
            h,
            "DELETE of the redundant SA",
            **{y: (LOSE, "installed"), x: ("rekeying", "installed")},
        )
        h.deliver(x, INFO, True)
        expect(
            h,
            "its response",
            **{y: ("rekeyed established", "installed"), x: ("rekeying", "installed")},
        )
        (again,) = h.wait(FAST_RETRANSMIT.timeout + 0.1)
        assert (again.sender, again.exchange, again.is_response) == (x, CCSA, False)
        h.deliver(x, CCSA, False)  # answered from the cache (§2.1)
        expect(
            h,
            "retransmitted request",
            **{y: ("rekeyed established", "installed"), x: ("rekeying", "installed")},
        )
        h.deliver(y, CCSA, True)
        expect(
            h,
            "cached response",
            **{y: ("rekeyed established", "installed"), x: ("deleting established", "installed")},
        )
        h.deliver(x, INFO, False)
        expect(
            h,
            "DELETE of the old SA",
            **{y: ("established", "installed"), x: ("deleting established", "installed")},
        )
        h.deliver(y, INFO, True)
    expect(h, "settled", a=("established", "installed"), b=("established", "installed"))
    _check_single_pair(h, before)
    (vw,) = h.side(w).mgr.ike_sas()
    assert vw.initiator


@pytest.mark.parametrize("action", ["rekey_child", "delete_child", "rekey_ike"])
@pytest.mark.parametrize("rekeyer", ["a", "b"])
def test_request_on_new_ike_sa_overtakes_rekey_response(rekeyer: str, action: str) -> None:
    """§2.8.2: the responder P of an IKE rekey uses the new IKE SA at once (a child
    rekey, a child delete or another IKE rekey), and that request overtakes P's rekey
    response.  R does not know the SA yet and must not act on it; P's retransmission
    (§2.1) goes through once R has the new SA."""
    h, before = _start()
    r, p = rekeyer, _other(rekeyer)
    _rekey_ike(h, r)
    h.deliver(r, CCSA, False)
    expect(
        h,
        "IKE rekey request",
        **{r: ("rekeying", "installed"), p: ("rekeyed established", "installed")},
    )
    mgr = h.side(p).mgr
    (c,) = mgr.child_sas()
    if action == "rekey_child":
        mgr.rekey_child(c.ike_id, c.spi_in, h.now)
        p_ike, p_ch = "established", "rekeying"
    elif action == "delete_child":
        mgr.delete_child(c.ike_id, c.spi_in, h.now)
        p_ike, p_ch = "established", "deleting"
    else:
        mgr.rekey_ike(c.ike_id, h.now)
        p_ike, p_ch = "rekeying", "installed"
    expect(h, action, **{r: ("rekeying", "installed"), p: (f"rekeyed {p_ike}", p_ch)})
    new_req = [m for m in h.pending(p) if not m.is_response]
    assert len(new_req) == 1 and new_req[0].message_id == 0
    h.deliver(p, new_req[0].exchange, False)  # for an IKE SA R does not know yet
    expect(
        h, "request on the new SA", **{r: ("rekeying", "installed"), p: (f"rekeyed {p_ike}", p_ch)}
    )
    h.deliver(p, CCSA, True)
    expect(
        h,
        "IKE rekey response",
        **{r: ("deleting established", "installed"), p: (f"rekeyed {p_ike}", p_ch)},
    )
    h.deliver(r, INFO, True)  # R's unprotected answer to the request it could not use
    expect(
        h,
        "INVALID_IKE_SPI",
        **{r: ("deleting established", "installed"), p: (f"rekeyed {p_ike}", p_ch)},
    )
    h.deliver(r, INFO, False)
    expect(
        h, "DELETE of the old SA", **{r: ("deleting established", "installed"), p: (p_ike, p_ch)}
    )
    h.deliver(p, INFO, True)
    expect(h, "its response", **{r: ("established", "installed"), p: (p_ike, p_ch)})
    (again,) = h.wait(FAST_RETRANSMIT.timeout + 0.1)
    assert again.key == new_req[0].key
    h.deliver(p, again.exchange, False)
    r_after = {
        "rekey_child": ("established", "rekeyed installed"),
        "delete_child": ("established", ""),
        "rekey_ike": ("rekeyed established", "installed"),
    }[action]
    expect(h, "retransmitted request", **{r: r_after, p: (p_ike, p_ch)})
    h.drive(30)
    children = action != "delete_child"
    expect(
        h,
        "the end",
        a=("established", "installed" if children else ""),
        b=("established", "installed" if children else ""),
    )
    ia, ib = _only(h, "a"), _only(h, "b")
    assert h.ike_spis("a", ia) == h.ike_spis("b", ib) != before["spis"]
    if children:
        (ca,), (cb,) = h.a.mgr.child_sas(), h.b.mgr.child_sas()
        assert (ca.spi_in, ca.spi_out) == (cb.spi_out, cb.spi_in)
        assert ((ca.spi_in, ca.spi_out) == before["child"]) is (action == "rekey_ike")
    for side in "ab":
        assert len(h.side(side).of(IkeSaRekeyed)) == (2 if action == "rekey_ike" else 1)
    _liveness(h, "a")
    _liveness(h, "b")
