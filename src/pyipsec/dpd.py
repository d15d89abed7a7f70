"""Liveness checks ("dead peer detection") for one IKE SA (RFC 7296 §2.4).

§2.4: "If no cryptographically protected messages have been received on an IKE
SA or any of its Child SAs recently, the system needs to perform a liveness
check": an empty INFORMATIONAL request that, like every request, is
retransmitted with exponentially increasing timeouts.  Only when it stays
unanswered may the peer be declared dead -- never because of ICMP or
unprotected notifications.

:class:`DpdState` is the sans-I/O bookkeeping; the IKE SA owns the actual
request.  Usage::

    dpd = DpdState(conn.dpd, now, retransmit=conn.retransmit)
    # every authenticated IKE message or ESP packet from the peer:
    dpd.on_authenticated_traffic(now)
    # on the timer (dpd.next_deadline()):
    if dpd.check_due(now):
        send_empty_informational(); dpd.on_check_sent(now)
    elif dpd.probe_expired(now):
        dpd.on_check_failed(now)            # -> PeerDead, dpd_action
    # the response arrives:
    dpd.on_check_answered(now)

The liveness request is retransmitted with :func:`probe_policy` and abandoned at
the latest :func:`probe_timeout` after it was first sent, so a dead verdict
comes at most :func:`max_detection_time` after the last authenticated packet.
"""

from __future__ import annotations

import enum
import math
from dataclasses import replace
from typing import Any

from .config.model import DpdConfig, RetransmitConfig
from .identity_memo import IdentityMemo
from .recovery import RetryPolicy

__all__ = [
    "DpdState",
    "LivenessState",
    "max_detection_time",
    "probe_policy",
    "probe_timeout",
]


class LivenessState(enum.Enum):
    """Phase of the liveness check of one IKE SA."""

    IDLE = "idle"  # no check outstanding
    PROBING = "probing"  # a liveness request is in flight
    DEAD = "dead"  # the peer was declared dead (terminal)


def _enabled(dpd: DpdConfig) -> bool:
    return dpd.enabled and dpd.interval > 0


def probe_policy(dpd: DpdConfig, retransmit: RetransmitConfig) -> RetryPolicy:
    """Retransmission policy of the liveness request.

    The connection's retransmission timing (timeout, base, cap, jitter) with
    ``dpd.max_retries`` retransmissions, which takes precedence over
    ``retransmit.tries`` as the more specific setting (RFC 7296 §2.4 leaves the
    numbers to the implementation but requires exponential growth).
    """
    base = RetryPolicy.from_retransmit_config(retransmit)
    return replace(base, max_attempts=max(0, dpd.max_retries))


def probe_timeout(dpd: DpdConfig, retransmit: RetransmitConfig) -> float:
    """Longest time a liveness request may stay unanswered before the peer is dead.

    ``probe_policy(dpd, retransmit).total_time()``, capped by ``dpd.timeout``
    when that is positive.
    """
    t = probe_policy(dpd, retransmit).total_time()
    if dpd.timeout > 0:
        t = min(t, dpd.timeout)
    return t


#: probe_timeout per (dpd, retransmit) configuration objects, by identity: every new IKE
#: SA asks (hashing the two frozen configurations cost more than the lookup)
_PROBE_TIMEOUTS: IdentityMemo[float] = IdentityMemo(256)
_DEFAULT_RETRANSMIT = RetransmitConfig()


def max_detection_time(dpd: DpdConfig, retransmit: RetransmitConfig) -> float:
    """Upper bound of the time from the last authenticated packet to a dead verdict.

    A check becomes due ``dpd.interval`` after the last authenticated packet and
    fails at most :func:`probe_timeout` later, so the bound is
    ``interval + probe_timeout`` -- provided the caller acts on
    :meth:`DpdState.next_deadline` when it passes.  Jitter only shortens
    retransmission delays, so it never breaks the bound.  Disabled DPD never
    declares a peer dead by itself: ``math.inf``.
    """
    if not _enabled(dpd):
        return math.inf
    return dpd.interval + probe_timeout(dpd, retransmit)


class DpdState:
    """Liveness bookkeeping of one IKE SA (RFC 7296 §2.4).

    ``interval <= 0`` or ``enabled=False`` disables periodic checks
    (:meth:`check_due` is then always False), but a check can still be sent on
    demand (e.g. after an unprotected INVALID_IKE_SPI hint, §2.21.4) and its
    outcome is tracked the same way.
    """

    __slots__ = (
        "_dead_at",
        "_probe_timeout",
        "config",
        "dead_reason",
        "last_received",
        "outstanding_since",
        "retries",
        "state",
    )

    def __init__(
        self, config: DpdConfig, now: float, *, retransmit: RetransmitConfig | None = None
    ) -> None:
        self.config = config
        rt = retransmit or _DEFAULT_RETRANSMIT
        self._probe_timeout = _PROBE_TIMEOUTS.value((config, rt), probe_timeout)
        self.last_received: float = now
        self.outstanding_since: float | None = None
        self.retries = 0
        self.state = LivenessState.IDLE
        self.dead_reason: str | None = None
        self._dead_at: float | None = None

    # ------------------------------------------------------------------ properties

    @property
    def enabled(self) -> bool:
        return _enabled(self.config)

    @property
    def outstanding(self) -> bool:
        """A liveness request is in flight."""
        return self.outstanding_since is not None

    @property
    def is_dead(self) -> bool:
        return self.state is LivenessState.DEAD

    @property
    def probe_timeout(self) -> float:
        """Seconds an outstanding liveness request may stay unanswered."""
        return self._probe_timeout

    # ------------------------------------------------------------------ inputs

    def on_authenticated_traffic(self, now: float) -> None:
        """A fresh, integrity-checked IKE message or ESP packet arrived (§2.4).

        This is proof of life and postpones the next check.  An outstanding
        liveness request still needs its own answer.
        """
        if self.is_dead:
            return
        if now > self.last_received:
            self.last_received = now

    def check_due(self, now: float) -> bool:
        """True when a liveness request should be sent now.

        Only when enabled, alive, nothing is outstanding and nothing
        authenticated was received for ``interval`` seconds.
        """
        if not self.enabled or self.is_dead or self.outstanding:
            return False
        return now >= self.last_received + self.config.interval

    def on_check_sent(self, now: float) -> None:
        """The liveness request (empty INFORMATIONAL) was sent for the first time."""
        if self.is_dead:
            return
        self.outstanding_since = now
        self.retries = 0
        self.state = LivenessState.PROBING

    def on_check_retransmitted(self, now: float) -> None:
        """The liveness request was retransmitted (for :meth:`status`)."""
        if self.outstanding:
            self.retries += 1

    def on_check_answered(self, now: float) -> None:
        """The response to the liveness request arrived: the peer is alive."""
        if self.is_dead:
            return
        self.outstanding_since = None
        self.retries = 0
        self.state = LivenessState.IDLE
        self.on_authenticated_traffic(now)

    def probe_expired(self, now: float) -> bool:
        """The outstanding liveness request exceeded :attr:`probe_timeout`."""
        if self.is_dead or self.outstanding_since is None:
            return False
        return now >= self.outstanding_since + self._probe_timeout

    def on_check_failed(self, now: float, reason: str = "liveness check unanswered") -> None:
        """Retransmissions are exhausted (or the probe expired): the peer is dead (§2.4).

        Also valid without an outstanding check, e.g. when any other request
        of the IKE SA ran out of retransmissions.
        """
        if self.is_dead:
            return
        self.state = LivenessState.DEAD
        self.dead_reason = reason
        self._dead_at = now
        self.outstanding_since = None

    # ------------------------------------------------------------------ timers

    def next_deadline(self) -> float | None:
        """When :meth:`check_due` or :meth:`probe_expired` becomes true, or None."""
        if self.is_dead:
            return None
        if self.outstanding_since is not None:
            return self.outstanding_since + self._probe_timeout
        if not self.enabled:
            return None
        return self.last_received + self.config.interval

    def status(self, now: float | None = None) -> dict[str, Any]:
        """JSON-ready summary for ``pyipsec status``."""
        out: dict[str, Any] = {
            "enabled": self.enabled,
            "state": self.state.value,
            "interval": self.config.interval,
            "last_received": self.last_received,
            "outstanding_since": self.outstanding_since,
            "retries": self.retries,
            "next_deadline": self.next_deadline(),
            "dead_reason": self.dead_reason,
            "dead_at": self._dead_at,
        }
        if now is not None:
            out["idle_for"] = max(0.0, now - self.last_received)
        return out
