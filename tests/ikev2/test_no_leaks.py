"""The core keeps no object of its own once the exchanges that made it are over.

A gateway runs for months: an object left behind per message (a reference counted once
too often, a cache that only grows) is a leak that ends it.  These tests count the live
objects of pyipsec's own classes across repeated exchanges, so they catch a leak in the
interpreted core and in the one compiled by mypyc alike (mypyc 1.20 leaked the reference
of a call inside ``isinstance()``, and the left operand of every ``bytes + bytes``), and
the bytes held by everything, objects the collector does not track included (a leaked
``bytes`` is invisible to it).
"""

from __future__ import annotations

import gc
import tracemalloc
from collections import Counter
from collections.abc import Callable

from pyipsec.ikev2.sa import IkeSa

from .harness import Harness, conn_pair


def _census() -> Counter[str]:
    """Live objects per pyipsec class (reference counting alone: the collector runs
    first, so only objects that something still holds are counted)."""
    gc.collect()
    return Counter(
        type(o).__qualname__ for o in gc.get_objects() if type(o).__module__.startswith("pyipsec.")
    )


def _grown(before: Counter[str], after: Counter[str]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in after if after[k] > before[k]}


def _established(h: Harness) -> IkeSa:
    (sa,) = [s for s in h.a.mgr.by_id.values() if s.established]
    return sa


def _repeat(h: Harness, step: Callable[[], None], times: int) -> dict[str, int]:
    def run() -> None:
        step()
        h.a.events.clear()  # the harness keeps the events for the tests to look at
        h.b.events.clear()

    run()  # first use (memos, lazily built tables)
    before = _census()
    for _ in range(times):
        run()
    return _grown(before, _census())


def _liveness_pair() -> tuple[Harness, Callable[[], None]]:
    """An established pair, and one liveness exchange on it (what the harness kept of
    it forgotten)."""
    h = Harness(*conn_pair())
    h.up()
    sa = _established(h)

    def liveness() -> None:
        h.a.mgr.liveness(sa.ike_id, h.now)
        h.run(1)
        h.a.events.clear()
        h.b.events.clear()
        h.log.clear()

    return h, liveness


def test_liveness_exchanges_leave_nothing_behind() -> None:
    h, liveness = _liveness_pair()
    assert _repeat(h, liveness, 25) == {}


def test_fragmented_exchanges_leave_nothing_behind() -> None:
    """Every message in fragments (RFC 7383): the kept fragments go with their set."""
    tiny = {"fragment_size": 128}
    h = Harness(*conn_pair(a_kw=tiny, b_kw=tiny))
    h.up()
    sa = _established(h)
    assert sa.fragmentation

    def rekey_child() -> None:
        (child,) = [c for c in _established(h).children.values() if c.state.value == "installed"]
        h.a.mgr.rekey_child(sa.ike_id, child.spi_in, h.now)
        h.run(5)

    assert _repeat(h, rekey_child, 10) == {}


def test_tunnels_set_up_and_torn_down_leave_nothing_behind() -> None:
    a, b = conn_pair()
    h = Harness(a, b)

    def tunnel() -> None:
        h.up()
        h.a.mgr.terminate("a2b", h.now)
        h.run(30)
        assert h.a.mgr.by_id == {} and h.b.mgr.by_id == {}

    assert _repeat(h, tunnel, 10) == {}


def test_liveness_exchanges_hold_no_more_memory() -> None:
    """The bytes allocated and still held after 200 liveness exchanges (tracemalloc):
    near zero per exchange (a leaked string or bytes object per message would be
    hundreds; mypyc 1.20 leaked 460 octets per exchange)."""
    _, liveness = _liveness_pair()
    for _ in range(5):
        liveness()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(200):
            liveness()
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown / 200 < 64, f"{grown / 200:.0f} octets held per exchange"
