"""IkeManager.sa_counts(): the counters agree with a walk over every SA at every step
of a setup, an IKE SA rekey (§2.8.2), a Child SA rekey (§2.8), a delete and the linger
that follows it (§2.1), on both sides."""

from __future__ import annotations

from pyipsec.ikev2.manager import IkeManager
from pyipsec.ikev2.state import IKE_HALF_OPEN, ChildSaState, IkeSaState

from .harness import Harness, conn_pair


def _agree(mgr: IkeManager) -> tuple[int, int]:
    """sa_counts() against the walk; (live IKE SAs, Child SAs)."""
    counts = mgr.sa_counts()
    by_state = dict.fromkeys(IkeSaState, 0)
    for sa in mgr.by_id.values():
        by_state[sa.state] += 1
    assert dict(counts.ike_by_state) == by_state
    live = mgr.ike_sas()
    assert counts.ike == len(live)
    assert counts.half_open == sum(v.state in IKE_HALF_OPEN for v in live)
    children = mgr.child_sas()
    assert counts.child == len(children)
    child_by_state = dict.fromkeys(ChildSaState, 0)
    for c in children:
        child_by_state[c.state] += 1
    assert dict(counts.child_by_state) == child_by_state
    return counts.ike, counts.child


CHILD_STATES_SEEN: set[ChildSaState] = set()


def _run_checked(h: Harness, duration: float) -> list[tuple[int, int]]:
    """Step the harness for ``duration`` seconds, checking both sides after each step;
    the distinct (IKE, Child) counts of the initiator seen on the way."""
    seen: list[tuple[int, int]] = []
    until = h.now + duration
    for _ in range(20000):
        going = h.step(until)
        _agree(h.b.mgr)
        n = _agree(h.a.mgr)
        for side in (h.a, h.b):
            by_state = side.mgr.sa_counts().child_by_state
            CHILD_STATES_SEEN.update(s for s, k in by_state.items() if k)
        if not seen or seen[-1] != n:
            seen.append(n)
        if not going:
            return seen
    raise AssertionError("harness did not settle")


def test_counts_follow_setup_rekeys_delete_and_linger() -> None:
    h = Harness(*conn_pair())
    mgr = h.a.mgr
    assert _agree(mgr) == (0, 0)
    mgr.initiate("a2b", None, h.now)
    assert mgr.sa_counts().half_open == 1  # INIT_SENT
    assert _run_checked(h, 5) == [(1, 0), (1, 1)]
    assert h.b.mgr.sa_counts().ike_by_state[IkeSaState.ESTABLISHED] == 1
    (ike,) = mgr.ike_sas()
    mgr.rekey_ike(ike.ike_id, h.now)
    _run_checked(h, 5)
    (new,) = mgr.ike_sas()
    (child,) = mgr.child_sas()
    mgr.rekey_child(new.ike_id, child.spi_in, h.now)
    _run_checked(h, 5)
    assert _agree(mgr) == (1, 1)
    (child,) = mgr.child_sas()
    mgr.delete_child(new.ike_id, child.spi_in, h.now)
    _run_checked(h, 5)
    assert _agree(mgr) == (1, 0)
    # the transient states were counted on the way, not only INSTALLED
    assert {ChildSaState.REKEYING, ChildSaState.REKEYED} <= CHILD_STATES_SEEN
    assert ChildSaState.DELETING in CHILD_STATES_SEEN
    mgr.terminate(new.ike_id, h.now)
    _run_checked(h, 60)
    assert _agree(mgr) == _agree(h.b.mgr) == (0, 0)
    assert sum(mgr.sa_counts().ike_by_state.values()) == 0  # lingering ones forgotten too


def test_counts_see_state_changes_not_yet_collected() -> None:
    """An SA changed outside an entry point (collected later) is counted right away."""
    h = Harness(*conn_pair())
    h.up()
    mgr = h.a.mgr
    (sa,) = mgr.by_id.values()
    sa.set_state(IkeSaState.DELETING)  # no entry point ran: the SA is only marked
    counts = mgr.sa_counts()
    assert counts.ike_by_state[IkeSaState.DELETING] == 1
    assert counts.ike_by_state[IkeSaState.ESTABLISHED] == 0
