"""Named deadlines of one IKE SA.

Every deadline an :class:`~pyipsec.ikev2.sa.IkeSa` has is a :class:`TimerKind` in one
:class:`Timers` structure: either a *fixed* deadline that the owner sets and clears
(the IKE SA rekey time, §2.8; the half-open bound, §2.6; ...) or a *watched* one
whose value another object already keeps (the retransmission deadline of the request
window, §2.1; the next liveness check, §2.4; ...).  ``next_deadline`` and ``due`` both
read this one structure, so the deadline reported to the daemon and the work done when
it comes can never drift apart.  ``due`` lists the kinds in declaration order, which is
the order in which the IKE SA handles them.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any


class TimerKind(enum.Enum):
    """The deadlines of an IKE SA, in the order they are handled when due together."""

    __hash__ = object.__hash__  # members are singletons: hash in C, not by name

    FRAGMENTS = "fragments"  # incomplete IKE fragment sets expire (RFC 7383 §2.6)
    RETRANSMIT = "retransmit"  # our request's retransmission or give-up (§2.1)
    LIVENESS_PROBE = "liveness-probe"  # an unanswered liveness check is fatal (§2.4)
    HALF_OPEN = "half-open"  # IKE_AUTH did not complete in time (§2.6)
    LINGER = "linger"  # a closed SA answered retransmissions long enough (§2.1)
    DELAYED = "delayed"  # a task waits for its not-before time (e.g. §2.25 backoff)
    QUEUE = "queue"  # a queued task can start: the window has room (§2.3)
    REDUNDANT = "redundant"  # the peer should have deleted this SA by now (§2.8.2)
    UNCLAIMED = "unclaimed"  # a collision's loser never deleted its new SA (§2.8.2)
    IKE_EXPIRE = "ike-expire"  # hard lifetime of the IKE SA (§2.8)
    IKE_REKEY = "ike-rekey"  # soft lifetime of the IKE SA (§2.8)
    CHILD_LIFETIMES = "child-lifetimes"  # soft/hard lifetimes of the Child SAs (§2.8)
    DPD = "dpd"  # the next liveness check (§2.4)
    KEEPALIVE = "keepalive"  # NAT keepalive (RFC 3948 §4)


#: watched deadlines as functions of the owner: one table shared by all owners of a kind
#: (no per-owner closures or bound methods to create, nor to break cycles of)
WatchTable = Mapping[TimerKind, Callable[[Any], "float | None"]]
_NO_WATCH: WatchTable = MappingProxyType({})


class Timers:
    """Fixed and watched deadlines by :class:`TimerKind`."""

    __slots__ = ("_changed", "_fixed", "_owner", "_watched")

    def __init__(
        self,
        changed: Callable[[], None] | None = None,
        owner: object = None,
        watched: WatchTable = _NO_WATCH,
    ) -> None:
        """``changed`` is called whenever a fixed deadline is set or cleared (the owner
        re-reads :meth:`next_deadline`; watched sources tell their owners themselves).
        ``watched`` maps kinds to functions of ``owner`` giving their deadlines."""
        self._fixed: dict[TimerKind, float] = {}
        self._watched = watched
        self._owner = owner
        self._changed = changed

    def set(self, kind: TimerKind, when: float | None) -> None:
        """Set (or with None clear) the fixed deadline ``kind``."""
        if when is None:
            self._fixed.pop(kind, None)
        else:
            self._fixed[kind] = when
        if self._changed is not None:
            self._changed()

    def clear(self, *kinds: TimerKind) -> None:
        for kind in kinds:
            self._fixed.pop(kind, None)
        if self._changed is not None:
            self._changed()

    def dispose(self) -> None:
        """Forget every deadline and source (they refer back to the owner)."""
        self._fixed.clear()
        self._watched = _NO_WATCH
        self._owner = None
        self._changed = None

    def get(self, kind: TimerKind) -> float | None:
        """The deadline of ``kind`` (fixed or watched), None when there is none."""
        when = self._fixed.get(kind)
        if when is not None:
            return when
        source = self._watched.get(kind)
        return source(self._owner) if source is not None else None

    def next_deadline(self) -> float | None:
        best: float | None = None
        for when in self._fixed.values():
            if best is None or when < best:
                best = when
        owner = self._owner
        for source in self._watched.values():
            w = source(owner)
            if w is not None and (best is None or w < best):
                best = w
        return best

    def due(self, now: float) -> list[TimerKind]:
        """The kinds whose deadline has come, in handling order.  Fixed deadlines that
        are due are cleared (a handler sets them again when it wants another one)."""
        out: list[TimerKind] = []
        owner = self._owner
        for kind in TimerKind:
            when = self._fixed.get(kind)
            if when is not None and when <= now:
                del self._fixed[kind]
                out.append(kind)
                continue
            source = self._watched.get(kind)
            if source is not None:
                w = source(owner)
                if w is not None and w <= now:
                    out.append(kind)
        return out


__all__ = ["TimerKind", "Timers"]
