"""Timers: fixed deadlines, deadlines watched through a table shared by all owners."""

from __future__ import annotations

from dataclasses import dataclass

from pyipsec.ikev2.timers import TimerKind, Timers


@dataclass
class Owner:
    retransmit: float | None = None
    dpd: float | None = None


TABLE = {
    TimerKind.RETRANSMIT: lambda o: o.retransmit,
    TimerKind.DPD: lambda o: o.dpd,
}


def test_fixed_and_watched_deadlines_of_two_owners_sharing_one_table() -> None:
    changes: list[str] = []
    a, b = Owner(retransmit=5.0), Owner(dpd=7.0)
    ta = Timers(lambda: changes.append("a"), a, TABLE)
    tb = Timers(None, b, TABLE)
    assert ta.next_deadline() == 5.0 and tb.next_deadline() == 7.0
    ta.set(TimerKind.HALF_OPEN, 3.0)
    assert changes == ["a"] and ta.next_deadline() == 3.0 and ta.get(TimerKind.HALF_OPEN) == 3.0
    assert ta.get(TimerKind.RETRANSMIT) == 5.0 and ta.get(TimerKind.DPD) is None
    a.dpd = 4.0  # a watched value changes: read when asked
    assert ta.due(4.5) == [TimerKind.HALF_OPEN, TimerKind.DPD]  # handling order
    assert ta.get(TimerKind.HALF_OPEN) is None  # a due fixed deadline is cleared
    assert tb.due(10.0) == [TimerKind.DPD]
    ta.set(TimerKind.LINGER, 9.0)
    ta.clear(TimerKind.LINGER)
    assert changes == ["a", "a", "a"] and ta.get(TimerKind.LINGER) is None


def test_dispose_forgets_everything_and_leaves_the_shared_table() -> None:
    a, b = Owner(retransmit=5.0), Owner(retransmit=6.0)
    ta, tb = Timers(None, a, TABLE), Timers(None, b, TABLE)
    assert ta.next_deadline() == 5.0 and tb.next_deadline() == 6.0
    ta.set(TimerKind.IKE_REKEY, 1.0)
    ta.dispose()
    assert ta.next_deadline() is None and ta.due(100.0) == []
    assert tb.next_deadline() == 6.0  # the table is shared, not emptied
    assert Timers().next_deadline() is None
