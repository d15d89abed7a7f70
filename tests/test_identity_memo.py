"""IdentityMemo finds a value again by the identities of the objects it came from, keeps
those objects alive (so an identity cannot be reused while its entry lives) and stays
bounded."""

from __future__ import annotations

import gc
import weakref

from pyipsec.identity_memo import IdentityMemo


class Thing:
    def __init__(self, value: int) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Thing) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)


def test_found_by_identity_not_by_value() -> None:
    memo: IdentityMemo[str] = IdentityMemo()
    a, b = Thing(1), Thing(1)  # equal, not the same
    assert memo.get((id(a),)) is None
    assert memo.put((id(a),), (a,), "from a") == "from a"
    assert memo.get((id(a),)) == "from a"
    assert memo.get((id(b),)) is None  # equal objects only miss


def test_an_entry_keeps_its_objects_alive() -> None:
    memo: IdentityMemo[int] = IdentityMemo()
    a = Thing(2)
    ref = weakref.ref(a)
    key = (id(a),)
    memo.put(key, (a,), 42)
    del a
    gc.collect()
    assert ref() is not None  # so no new object can take its id while the entry lives
    memo.clear()
    gc.collect()
    assert ref() is None and len(memo) == 0


def test_bounded() -> None:
    memo: IdentityMemo[int] = IdentityMemo(limit=3)
    things = [Thing(i) for i in range(10)]
    for i, t in enumerate(things):
        memo.put((id(t),), (t,), i)
        assert len(memo) <= 3
    assert memo.get((id(things[-1]),)) == 9


def test_value_computes_once_per_identity() -> None:
    memo: IdentityMemo[int] = IdentityMemo()
    a, b = Thing(3), Thing(3)
    calls: list[Thing] = []

    def compute(first: Thing, second: Thing) -> int:
        calls.append(first)
        return first.value * 10 + second.value

    assert memo.value((a, b), compute) == 33
    assert memo.value((a, b), compute) == 33  # found: not computed again
    assert memo.value((b, a), compute) == 33  # other identities, in order
    assert calls == [a, b] and memo.get((id(a), id(b))) == 33
