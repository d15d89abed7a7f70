"""Rekey collisions under every delivery order (RFC 7296 §2.8.1, §2.8.2, §2.25.1).

The stepwise tests pin the states after each message for a few chosen orders; here the
step-mode harness enumerates *all* orders in which the held datagrams of a collision can
be delivered (depth-first, replaying each schedule from scratch), then lets the rest run
on a prompt wire and checks the end state through the public API only: one IKE SA pair
with matching SPIs, one installed Child SA pair with matching SPIs (or none, when a side
deleted it), and the rekeys that had to happen did happen.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pyipsec.ikev2.events import ChildSaRekeyed, IkeSaRekeyed
from pyipsec.ikev2.state import ChildSaState, IkeSaState

from .harness import (
    COLLISION_NONCES,
    Harness,
    Held,
    established_pair,
    script_collision_nonces,
)

Action = tuple[str, str]  # (side, "rekey_ike" | "rekey_child" | "delete_child" | "terminate")


def _act(h: Harness, side: str, what: str) -> None:
    mgr = h.side(side).mgr
    (ike,) = mgr.ike_sas()
    (c,) = mgr.child_sas()
    if what == "rekey_ike":
        mgr.rekey_ike(ike.ike_id, h.now)
    elif what == "rekey_child":
        mgr.rekey_child(c.ike_id, c.spi_in, h.now)
    elif what == "delete_child":
        mgr.delete_child(c.ike_id, c.spi_in, h.now)
    else:
        mgr.terminate(ike.ike_id, h.now)


def _outcome(h: Harness, ike: int, children: int, rekeyed: set[str]) -> list[str]:
    h.drive(120)
    errors = []
    ia, ib = h.a.mgr.ike_sas(), h.b.mgr.ike_sas()
    if (len(ia), len(ib)) != (ike, ike):
        errors.append(f"IKE SAs {[v.state.value for v in ia]} / {[v.state.value for v in ib]}")
    elif ike:
        if any(v.state is not IkeSaState.ESTABLISHED for v in ia + ib):
            errors.append("IKE SA not established")
        spis = h.ike_spis("a", ia[0].ike_id)
        if spis is None or spis != h.ike_spis("b", ib[0].ike_id):
            errors.append("IKE SPIs differ")
    ca, cb = h.a.mgr.child_sas(), h.b.mgr.child_sas()
    if (len(ca), len(cb)) != (children, children):
        errors.append(f"Child SAs {[c.state.value for c in ca]} / {[c.state.value for c in cb]}")
    elif children:
        if (ca[0].spi_in, ca[0].spi_out) != (cb[0].spi_out, cb[0].spi_in):
            errors.append("Child SPIs differ")
        if {ca[0].state, cb[0].state} != {ChildSaState.INSTALLED}:
            errors.append("Child SA not installed")
    for what, cls in (("ike", IkeSaRekeyed), ("child", ChildSaRekeyed)):
        if what in rekeyed and not (h.a.of(cls) and h.b.of(cls)):
            errors.append(f"no {what} rekey on both sides")
    return errors


def _distinct(held: list[Held]) -> list[Held]:
    """One datagram per message (retransmitted copies are the same choice)."""
    seen: dict[object, Held] = {}
    for m in held:
        seen.setdefault(m.key, m)
    return list(seen.values())


def explore(
    actions: list[Action],
    check: Callable[[Harness], list[str]],
    *,
    lowest: str | None = None,
    max_depth: int = 8,
) -> tuple[int, dict[tuple[str, ...], list[str]]]:
    """Run ``actions`` on a fresh established pair and deliver the held datagrams in every
    possible order (up to ``max_depth`` messages; when the wire is empty the clock runs
    until the next datagram, e.g. a retry after TEMPORARY_FAILURE).  Returns the number
    of schedules and, per distinct failure, the first schedule that showed it."""
    failures: dict[tuple[str, ...], list[str]] = {}
    stack: list[tuple[int, ...]] = [()]
    n = 0
    while stack:
        schedule = stack.pop()
        h = established_pair()
        if lowest is not None:
            script_collision_nonces(h, lowest)
        for side, what in actions:
            _act(h, side, what)
        labels = []
        for choice in schedule:
            m = _distinct(h.pending() or h.wait(15))[choice]
            labels.append(
                h.deliver(
                    m.direction, m.exchange, m.is_response, message_id=m.message_id, spi_i=m.spi_i
                ).label
            )
        held = h.pending() or (h.wait(15) if len(schedule) < max_depth else [])
        if held and len(schedule) < max_depth:
            stack.extend((*schedule, i) for i in range(len(_distinct(held))))
            continue
        n += 1
        errors = check(h)
        if errors:
            failures.setdefault(tuple(errors), labels)
    return n, failures


@pytest.mark.parametrize("lowest", COLLISION_NONCES)
@pytest.mark.parametrize("kind", ["rekey_ike", "rekey_child"])
def test_collision_every_delivery_order(kind: str, lowest: str) -> None:
    """§2.8.1/§2.8.2: both sides rekey the same SA; every order of the messages."""
    n, failures = explore(
        [("a", kind), ("b", kind)],
        lambda h: _outcome(h, 1, 1, {kind.removeprefix("rekey_")}),
        lowest=lowest,
    )
    assert n >= 40
    assert not failures, failures


CASES: list[tuple[list[Action], tuple[int, int, set[str]]]] = [
    ([("a", "rekey_ike"), ("b", "rekey_child")], (1, 1, {"ike", "child"})),
    ([("b", "rekey_ike"), ("a", "rekey_child")], (1, 1, {"ike", "child"})),
    ([("a", "rekey_ike"), ("b", "delete_child")], (1, 0, {"ike"})),
    ([("a", "rekey_ike"), ("b", "terminate")], (0, 0, set())),
    ([("a", "rekey_child"), ("b", "delete_child")], (1, 0, set())),
    ([("a", "rekey_child"), ("b", "terminate")], (0, 0, set())),
    ([("a", "rekey_child"), ("b", "rekey_child"), ("a", "rekey_ike")], (1, 1, {"ike", "child"})),
    ([("a", "rekey_ike"), ("b", "rekey_ike"), ("b", "terminate")], (0, 0, set())),
]


@pytest.mark.parametrize(
    ("actions", "want"), CASES, ids=["+".join(f"{s}:{w}" for s, w in c[0]) for c in CASES]
)
def test_crossing_exchanges_every_delivery_order(
    actions: list[Action], want: tuple[int, int, set[str]]
) -> None:
    """§2.8.2/§2.25.1: an IKE or Child SA rekey crossing another rekey or a delete;
    every order of the messages, retries after TEMPORARY_FAILURE included."""
    ike, children, rekeyed = want
    n, failures = explore(actions, lambda h: _outcome(h, ike, children, rekeyed), lowest="a_nr")
    assert n >= 6
    assert not failures, failures
