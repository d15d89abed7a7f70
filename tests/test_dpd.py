"""Tests for pyipsec.dpd (RFC 7296 §2.4) driven by a fake clock."""

from __future__ import annotations

import json
import math
import random

import pytest

from pyipsec.config.model import DpdConfig, RetransmitConfig
from pyipsec.dpd import (
    DpdState,
    LivenessState,
    max_detection_time,
    probe_policy,
    probe_timeout,
)
from pyipsec.recovery import RetryPolicy

# no dpd.timeout cap: the retransmission schedule alone bounds the probe
DPD = DpdConfig(interval=30.0, timeout=0.0, max_retries=3)
RT = RetransmitConfig(tries=5, timeout=2.0, base=2.0)
# probe: 3 retransmissions at 2, 4, 8 s after the previous send, give up 16 s after the last
PROBE_TOTAL = 2.0 + 4.0 + 8.0 + 16.0


class Peer:
    """Minimal stand-in for the IKE SA driving DpdState: retransmits a probe per policy."""

    def __init__(
        self, dpd: DpdState, policy: RetryPolicy, answers: bool, rng: random.Random | None = None
    ) -> None:
        self.rng = rng
        self.dpd = dpd
        self.policy = policy
        self.answers = answers
        self.sent: list[float] = []
        self.attempt = 0
        self.retx_at: float | None = None

    def next_timer(self) -> float | None:
        times = [t for t in (self.dpd.next_deadline(), self.retx_at) if t is not None]
        return min(times) if times else None

    def on_timer(self, now: float) -> None:
        if self.dpd.check_due(now):
            self.dpd.on_check_sent(now)
            self.sent.append(now)
            self.attempt = 0
            self.retx_at = now + self.policy.delay(0, self.rng)
        elif self.retx_at is not None and now >= self.retx_at:
            if self.policy.exhausted(self.attempt):
                self.dpd.on_check_failed(now)
                self.retx_at = None
            else:
                self.sent.append(now)
                self.dpd.on_check_retransmitted(now)
                self.attempt += 1
                self.retx_at = now + self.policy.delay(self.attempt, self.rng)
        elif self.dpd.probe_expired(now):
            self.dpd.on_check_failed(now, "probe expired")
            self.retx_at = None
        if self.answers and self.dpd.outstanding and self.sent and self.sent[-1] == now:
            self.dpd.on_check_answered(now + 0.1)
            self.retx_at = None

    def run_until(self, end: float) -> None:
        for _ in range(10_000):  # a timer that does not advance is a bug, not a hang
            t = self.next_timer()
            if t is None or t > end:
                return
            self.on_timer(t)
        raise AssertionError("timer loop did not advance")


def test_policy_and_bound_functions() -> None:
    pol = probe_policy(DPD, RT)
    assert pol.max_attempts == 3  # dpd.max_retries wins over retransmit.tries
    assert pol.schedule() == [2.0, 4.0, 8.0, 16.0]
    assert probe_timeout(DPD, RT) == PROBE_TOTAL
    assert max_detection_time(DPD, RT) == 30.0 + PROBE_TOTAL
    capped = DpdConfig(interval=30.0, timeout=10.0, max_retries=3)
    assert probe_timeout(capped, RT) == 10.0
    assert max_detection_time(capped, RT) == 40.0
    assert max_detection_time(DpdConfig(interval=0.0), RT) == math.inf
    assert max_detection_time(DpdConfig(enabled=False), RT) == math.inf


def test_default_config_bound() -> None:
    # strongSwan-like retransmission (4 s * 1.8^n) capped by the 150 s DPD timeout
    assert max_detection_time(DpdConfig(), RetransmitConfig()) == pytest.approx(30.0 + 150.0)


def test_check_due_after_interval_of_silence() -> None:
    d = DpdState(DPD, 100.0, retransmit=RT)
    assert d.state is LivenessState.IDLE
    assert d.next_deadline() == 130.0
    assert not d.check_due(129.9)
    assert d.check_due(130.0)


def test_traffic_suppresses_checks() -> None:
    d = DpdState(DPD, 0.0, retransmit=RT)
    for t in range(10, 300, 10):  # ESP/IKE traffic every 10 s
        d.on_authenticated_traffic(float(t))
        assert not d.check_due(float(t) + 0.5)
    assert d.next_deadline() == 290.0 + 30.0
    d.on_authenticated_traffic(200.0)  # late report of an older packet does not go back
    assert d.last_received == 290.0


def test_no_second_check_while_outstanding() -> None:
    d = DpdState(DPD, 0.0, retransmit=RT)
    d.on_check_sent(30.0)
    assert d.state is LivenessState.PROBING and d.outstanding
    assert not d.check_due(1000.0)
    # traffic while probing is proof of life but the probe still wants its answer
    d.on_authenticated_traffic(35.0)
    assert d.outstanding and d.state is LivenessState.PROBING
    assert d.next_deadline() == 30.0 + PROBE_TOTAL


def test_answered_check_returns_to_idle() -> None:
    d = DpdState(DPD, 0.0, retransmit=RT)
    d.on_check_sent(30.0)
    d.on_check_retransmitted(32.0)
    assert d.retries == 1
    d.on_check_answered(33.0)
    assert d.state is LivenessState.IDLE and not d.outstanding and d.retries == 0
    assert d.last_received == 33.0 and d.next_deadline() == 63.0


def test_dead_verdict_at_promised_time() -> None:
    d = DpdState(DPD, 0.0, retransmit=RT)
    peer = Peer(d, probe_policy(DPD, RT), answers=False)
    peer.run_until(10_000.0)
    assert d.is_dead and d.state is LivenessState.DEAD
    assert d.dead_reason
    # probe at 30, retransmits at 32, 36, 44, give up at 60 = max_detection_time
    assert peer.sent == [30.0, 32.0, 36.0, 44.0]
    assert d.status()["dead_at"] == pytest.approx(max_detection_time(DPD, RT))
    assert d.next_deadline() is None and not d.check_due(20_000.0)


def test_dead_verdict_with_jitter_never_later() -> None:
    rt = RetransmitConfig(tries=5, timeout=2.0, base=2.0, jitter=0.5)
    d = DpdState(DPD, 0.0, retransmit=rt)
    peer = Peer(d, probe_policy(DPD, rt), answers=False, rng=random.Random(3))
    peer.run_until(10_000.0)
    assert d.is_dead
    dead_at = d.status()["dead_at"]
    assert dead_at <= max_detection_time(DPD, rt) + 1e-9
    assert dead_at < max_detection_time(DPD, rt) - 1.0  # jitter really shortened it
    assert dead_at >= 30.0 + PROBE_TOTAL * 0.5 - 1e-9  # at most 50 % shorter


def test_timeout_cap_declares_dead_via_probe_expired() -> None:
    capped = DpdConfig(interval=30.0, timeout=10.0, max_retries=3)
    d = DpdState(capped, 0.0, retransmit=RT)
    peer = Peer(d, probe_policy(capped, RT), answers=False)
    peer.run_until(10_000.0)
    assert d.is_dead and d.dead_reason == "probe expired"
    assert d.status()["dead_at"] == pytest.approx(40.0)


def test_alive_peer_is_probed_periodically() -> None:
    d = DpdState(DPD, 0.0, retransmit=RT)
    peer = Peer(d, probe_policy(DPD, RT), answers=True)
    peer.run_until(200.0)
    assert not d.is_dead
    assert peer.sent == pytest.approx([30.0, 60.1, 90.2, 120.3, 150.4, 180.5])


def test_disabled() -> None:
    for cfg in (DpdConfig(interval=0.0), DpdConfig(enabled=False), DpdConfig(interval=-1.0)):
        d = DpdState(cfg, 0.0)
        assert not d.enabled
        assert not d.check_due(1e9) and d.next_deadline() is None
        # an on-demand check is still tracked
        d.on_check_sent(5.0)
        assert d.state is LivenessState.PROBING and d.next_deadline() is not None
        d.on_check_answered(6.0)
        assert d.next_deadline() is None


def test_failure_without_probe_and_terminal_dead_state() -> None:
    d = DpdState(DPD, 0.0, retransmit=RT)
    d.on_check_failed(12.0, reason="IKE_SA rekey unanswered")
    assert d.is_dead and d.dead_reason == "IKE_SA rekey unanswered"
    d.on_authenticated_traffic(13.0)
    d.on_check_answered(14.0)
    d.on_check_sent(15.0)
    assert d.is_dead and d.last_received == 0.0


def test_status_is_json() -> None:
    d = DpdState(DPD, 5.0, retransmit=RT)
    d.on_check_sent(35.0)
    d.on_check_retransmitted(37.0)
    st = d.status(now=40.0)
    assert json.loads(json.dumps(st)) == st
    assert st["state"] == "probing" and st["retries"] == 1
    assert st["last_received"] == 5.0 and st["idle_for"] == 35.0
    assert st["outstanding_since"] == 35.0 and st["next_deadline"] == 35.0 + PROBE_TOTAL
