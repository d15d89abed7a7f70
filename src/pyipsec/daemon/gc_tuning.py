"""The daemon's garbage-collector settings: frozen long-lived objects, and the sweep
that bounds the garbage cycles frozen among them.

Every tunnel keeps about fifty objects the cyclic collector tracks, and a handshake
allocates thousands: with Python's defaults the collector ran so often that it cost
about a third of a responder handshake (bench_scale/bench_load), and its full
collections walked every tunnel (a stop-the-world pause of seconds at 50,000 tunnels).
:func:`tune_gc` freezes the start-up objects, collects the youngest generation less
often and freezes the survivors of every collection; :func:`sweep_frozen_garbage`
(the daemon's housekeeping tick) frees, now and then, the garbage cycles frozen that
way.  What it needs to know -- how many objects are frozen -- is kept in one
:class:`FrozenObjects` (:data:`FROZEN`), counted as they are frozen, because
``gc.get_freeze_count()`` walks every frozen object.
"""

from __future__ import annotations

import gc
import logging
import os

__all__ = [
    "FROZEN",
    "FROZEN_SWEEP_GROWTH",
    "FROZEN_SWEEP_MIN",
    "GC_THRESHOLD",
    "FrozenObjects",
    "freeze_collection_survivors",
    "frozen_objects",
    "sweep_frozen_garbage",
    "tune_gc",
]

log = logging.getLogger("pyipsec.daemon")

#: Collect the youngest generation after this many allocations (Python's default: 700)
GC_THRESHOLD = (10_000, 10, 10)

#: a sweep of the frozen objects runs when the objects frozen (:func:`frozen_objects`)
#: have grown to this multiple of what the previous sweep left (and are at least
#: FROZEN_SWEEP_MIN).  A sweep walks every object (0.1-0.3 s per million here) to free
#: the few garbage cycles frozen since the last one (about one object per 100 tunnels
#: set up): below a million objects (the start-up objects and some 10,000 tunnels) what
#: it could free is not worth a walk.
FROZEN_SWEEP_GROWTH = 2.0
FROZEN_SWEEP_MIN = 1_000_000

_OLDEST = 2  # CPython's oldest generation


class FrozenObjects:
    """How many objects are frozen out of collection, and when to sweep them.

    ``estimate`` grows by the survivors of every collection as they are frozen: an upper
    bound of ``gc.get_freeze_count()`` (reference counting frees some frozen objects
    later).  ``counted`` is the exact count when it was last taken, ``after_sweep`` what
    the last sweep left, ``retention`` the share of the objects frozen between the last
    two exact counts that was still frozen at the second (at least ``RETENTION_MIN``).
    The sweep threshold is ``growth`` times ``after_sweep``, at least ``sweep_min``.
    """

    RETENTION_MIN = 0.25

    __slots__ = ("after_sweep", "counted", "estimate", "growth", "retention", "sweep_min")

    def __init__(
        self, *, sweep_min: int = FROZEN_SWEEP_MIN, growth: float = FROZEN_SWEEP_GROWTH
    ) -> None:
        self.sweep_min = sweep_min
        self.growth = growth
        self.estimate = 0
        self.counted = 0
        self.after_sweep = 0
        self.retention = 1.0

    def recount(self) -> int:
        """Take the exact count (a walk of every frozen object) and trust only it."""
        self.estimate = self.counted = gc.get_freeze_count()
        return self.estimate

    def threshold(self) -> float:
        """The frozen objects at which the next sweep is due."""
        return max(self.sweep_min, self.growth * self.after_sweep)

    def sweep_if_due(self) -> bool:
        """See :func:`sweep_frozen_garbage`."""
        threshold = self.threshold()
        added = self.estimate - self.counted
        if added * self.retention < threshold - self.counted:
            return False  # also always with PYIPSEC_GC=default: nothing is frozen then
        counted_before = self.counted
        exact = self.recount()
        if added > 0:
            share = (exact - counted_before) / added
            self.retention = min(1.0, max(self.RETENTION_MIN, share))
        if exact < threshold:
            return False  # frozen objects were freed again by reference counting
        gc.unfreeze()
        found = gc.collect()
        gc.freeze()
        self.after_sweep = self.recount()
        log.debug("GC sweep of frozen objects: %d collected, %d frozen", found, self.after_sweep)
        return True


#: The one count of this process (the collector and its frozen generation are global).
FROZEN = FrozenObjects()


def tune_gc() -> None:
    """The daemon's collector settings, at start-up.  The start-up objects (modules,
    configuration) are frozen out of collection, the youngest generation is collected
    less often, and the survivors of every collection are frozen too
    (:func:`freeze_collection_survivors`): a collection scans only what arrived since
    the previous one, never every tunnel (at 50,000 tunnels full collections paused
    2.4 s before frozen survivors, 0.36 s at most after, bench_scale --gc daemon), and
    each long-lived object is scanned once, not again by the older generations.
    ``PYIPSEC_GC=default`` keeps Python's settings (for comparisons)."""
    if os.environ.get("PYIPSEC_GC") == "default":
        return
    gc.freeze()
    FROZEN.recount()  # a count that walks them all, at start-up
    gc.set_threshold(*GC_THRESHOLD)
    if freeze_collection_survivors not in gc.callbacks:
        gc.callbacks.append(freeze_collection_survivors)


def freeze_collection_survivors(phase: str, info: dict[str, int]) -> None:
    """A ``gc.callbacks`` hook: after every collection, move the survivors to the
    permanent generation.  What survives a collection is, here, almost always what
    lives as long as its tunnel: scanning it again in the older generations found next
    to nothing and cost as much as the youngest generation's scans (bench_load, 6,000
    tunnels: 0.14 s of collections before, 0.05 s with the survivors of every
    collection frozen, about 15 µs per handshake); and Python's full collections come
    whenever the long-lived objects grew by a quarter and walk all of them: with tens
    of thousands of tunnels a stop-the-world pause of seconds while tunnels are set up.
    The price: a reference cycle among frozen objects that becomes garbage later is
    never collected.  The daemon frees what it forgets by reference counting (a
    forgotten IKE SA has no cycles left, :meth:`~pyipsec.ikev2.sa.IkeSa.dispose`); the
    collector found about one cyclic object per 100 tunnels set up (bench_load), and
    :func:`sweep_frozen_garbage` bounds what such cycles can hold.

    The survivors are counted on the way (:func:`frozen_objects`): they are the objects
    in the generation after the collected one, the older ones having been frozen empty
    by the previous call, so counting them costs what the collection already spent."""
    if phase == "stop":
        FROZEN.estimate += len(gc.get_objects(min(info["generation"] + 1, _OLDEST)))
        gc.freeze()


def frozen_objects() -> int:
    """How many objects :func:`tune_gc` and :func:`freeze_collection_survivors` froze,
    counted as they were frozen: an upper bound of ``gc.get_freeze_count()``, which
    counts by walking every frozen object (some 30 ms at 4,000 tunnels on the
    housekeeping tick, 3 % of a responder's CPU while tunnels were set up, a quarter of
    a CPU at 40,000 tunnels).  Frozen objects that reference counting freed since are
    still in it, until :func:`sweep_frozen_garbage` counts exactly."""
    return FROZEN.estimate


def sweep_frozen_garbage() -> bool:
    """Bound what :func:`freeze_collection_survivors` can leak: when the frozen objects
    have doubled since the last sweep (``FROZEN_SWEEP_GROWTH``), unfreeze them all for
    one full collection (which frees the garbage cycles among them) and freeze the
    survivors again.  Tunnels that come and go leave the frozen objects flat
    (reference counting frees them), so in a steady state the sweep is rare (each one
    pauses the daemon: about 1.7 s at 3.2 million objects); while tunnels are added its
    pauses are spaced geometrically, and leaked cycles can never outgrow the live
    objects.

    Called from the daemon's housekeeping tick, in O(1): the exact count
    (``gc.get_freeze_count()``, a walk of every frozen object: 65 ms per 840,000
    objects, which the tick used to pay every second) is asked only once the objects
    frozen since the last count (:func:`frozen_objects`), times the share of them that
    stayed last time, would reach the sweep threshold.  Then a sweep follows if the
    count reaches it, else the next count waits for as many more: about two counts per
    sweep while tunnels are added, whatever share of the frozen objects lives on, and
    one per so many frozen objects while they only come and go.  True when it swept."""
    return FROZEN.sweep_if_due()
