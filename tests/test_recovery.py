"""Tests for pyipsec.recovery: backoff arithmetic, the decision table, rate limiting."""

from __future__ import annotations

import json
import logging
import math
import random

import pytest

from pyipsec.config.model import ConnectionConfig, DpdAction, DpdConfig, RetransmitConfig
from pyipsec.ikev2 import errors
from pyipsec.ikev2.constants import NotifyType
from pyipsec.recovery import (
    DEFAULT_TABLE,
    ErrorHandler,
    ErrorKind,
    RateLimiter,
    RecoveryAction,
    RecoveryDecision,
    RetryPolicy,
    Scope,
    kind_for_exception,
    kind_for_received_notify,
)

A = RecoveryAction

# ------------------------------------------------------------------------ RetryPolicy


def test_default_policy_is_strongswan_like() -> None:
    p = RetryPolicy()
    assert (p.max_attempts, p.base_delay, p.multiplier) == (5, 4.0, 1.8)
    expected = [4.0 * 1.8**n for n in range(6)]
    assert p.schedule() == pytest.approx(expected)
    assert p.total_time() == pytest.approx(sum(expected))
    assert p.total_time() == pytest.approx(165.06, abs=0.01)


def test_delay_and_exhausted() -> None:
    p = RetryPolicy(max_attempts=3, base_delay=1.0, multiplier=2.0)
    assert [p.delay(n) for n in range(5)] == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert [p.exhausted(n) for n in range(5)] == [False, False, False, True, True]
    assert len(p.schedule()) == p.max_attempts + 1
    with pytest.raises(ValueError):
        p.delay(-1)


def test_cap() -> None:
    p = RetryPolicy(max_attempts=6, base_delay=4.0, multiplier=2.0, max_delay=20.0)
    assert p.schedule() == [4.0, 8.0, 16.0, 20.0, 20.0, 20.0, 20.0]
    assert p.total_time() == 108.0
    # huge exponents do not overflow; the cap still applies
    assert p.delay(5000) == 20.0
    assert RetryPolicy(base_delay=1.0, multiplier=10.0).delay(5000) == math.inf


def test_jitter_bounds() -> None:
    p = RetryPolicy(max_attempts=4, base_delay=10.0, multiplier=2.0, jitter=0.3)
    rng = random.Random(42)
    seen = []
    for _ in range(500):
        for n in range(5):
            d = p.delay(n, rng)
            full = 10.0 * 2.0**n
            assert full * 0.7 - 1e-9 <= d <= full
            seen.append(d / full)
    assert min(seen) < 0.72 and max(seen) > 0.98  # the whole range is used
    # without rng: no jitter; schedule/total_time are the upper bound
    assert p.delay(2) == 40.0 and p.total_time() == 310.0
    # a random-bytes callable (like secrets.token_bytes) works as well
    assert p.delay(0, lambda n: b"\x00" * n) == 10.0
    assert p.delay(0, lambda n: b"\xff" * n) == pytest.approx(7.0, abs=1e-6)
    # reproducible with a seeded rng
    assert p.delay(1, random.Random(5)) == p.delay(1, random.Random(5))


def test_from_retransmit_config() -> None:
    rc = RetransmitConfig(tries=3, timeout=2.5, base=1.5, max_delay=5.0, jitter=0.1)
    p = RetryPolicy.from_retransmit_config(rc)
    assert p == RetryPolicy(max_attempts=3, base_delay=2.5, multiplier=1.5, max_delay=5.0,
                            jitter=0.1)
    assert p.schedule() == [2.5, 3.75, 5.0, 5.0]
    assert RetryPolicy.from_retransmit_config(RetransmitConfig()) == RetryPolicy()


def test_immediate_and_zero_attempts() -> None:
    p = RetryPolicy.immediate(2)
    assert p.schedule() == [0.0, 0.0, 0.0] and p.exhausted(2) and not p.exhausted(1)
    none = RetryPolicy(max_attempts=0)
    assert none.exhausted(0) and none.schedule() == [4.0]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": -1},
        {"base_delay": -1.0},
        {"multiplier": 0.5},
        {"max_delay": -3.0},
        {"jitter": 1.5},
        {"jitter": -0.1},
    ],
)
def test_policy_validation(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


# ----------------------------------------------------------------------- RateLimiter


def test_rate_limiter_burst_then_rate() -> None:
    rl = RateLimiter(rate=2.0, burst=3)
    assert [rl.allow(0.0) for _ in range(5)] == [True, True, True, False, False]
    assert rl.take_suppressed() == 2 and rl.take_suppressed() == 0
    assert not rl.allow(0.4)  # 0.8 tokens
    assert rl.allow(0.5)  # 1.0 token
    assert not rl.allow(0.5)
    # long idle refills only up to the burst
    assert [rl.allow(100.0) for _ in range(4)] == [True, True, True, False]


def test_rate_limiter_long_run_average_and_clock_skew() -> None:
    rl = RateLimiter(rate=10.0, burst=5)
    allowed = sum(rl.allow(i * 0.001) for i in range(10_000))  # 1000/s for 10 s
    assert 5 + 100 - 1 <= allowed <= 5 + 100 + 1
    before = rl.tokens(10.0)
    rl.allow(5.0)  # clock going back does not refill
    assert rl.tokens(5.0) <= before
    zero = RateLimiter(rate=0.0, burst=1)
    assert zero.allow(0.0) and not zero.allow(1e9)
    with pytest.raises(ValueError):
        RateLimiter(rate=1.0, burst=0)
    with pytest.raises(ValueError):
        RateLimiter(rate=-1.0, burst=1)


# --------------------------------------------------------------------- decision table


def test_table_covers_every_kind_and_is_documented() -> None:
    assert set(DEFAULT_TABLE) == set(ErrorKind)
    for kind, d in DEFAULT_TABLE.items():
        assert ("§" in d.reason or "RFC" in d.reason), kind
        if d.has(A.NOTIFY_PEER):
            assert isinstance(d.notify, NotifyType) and d.notify.is_error, kind
    with pytest.raises(TypeError):
        DEFAULT_TABLE[ErrorKind.ESP_REPLAY] = DEFAULT_TABLE[ErrorKind.PEER_DEAD]  # type: ignore[index]


def test_table_rows() -> None:
    t = DEFAULT_TABLE
    # §1.2: retry at once with the group the responder named, bounded
    ke = t[ErrorKind.INVALID_KE_PAYLOAD_RECEIVED]
    assert ke.has(A.RETRY) and ke.retry is not None and ke.retry.delay(0) == 0.0
    assert 1 <= ke.retry.max_attempts <= 3 and A.DELETE_SA in ke.on_exhausted
    # §2.25: TEMPORARY_FAILURE: never immediately, over minutes, then close the IKE SA
    tf = t[ErrorKind.TEMPORARY_FAILURE_RECEIVED]
    assert tf.has(A.RETRY) and tf.retry is not None
    assert all(tf.retry.delay(n, random.Random(n)) > 0 for n in range(tf.retry.max_attempts))
    assert tf.retry.total_time() >= 120.0
    assert A.DELETE_SA in tf.on_exhausted and tf.scope is Scope.IKE_SA
    # §2.21.2: we reject the peer's AUTH: answer, delete without a Delete payload, no retry
    af = t[ErrorKind.AUTHENTICATION_FAILED]
    assert af.notify is NotifyType.AUTHENTICATION_FAILED and af.has(A.DELETE_SA)
    assert not af.send_delete and not af.has(A.RETRY) and not af.has(A.RESET_CONNECTION)
    # the initiator told AUTHENTICATION_FAILED retries only with a long backoff
    afr = t[ErrorKind.AUTHENTICATION_FAILED_RECEIVED]
    assert afr.has(A.DELETE_SA) and not afr.has(A.NOTIFY_PEER)
    assert afr.retry is not None and afr.retry.delay(0) >= 30.0
    # ESP failures are counted and never answered
    for kind in (ErrorKind.ESP_AUTH_FAILURE, ErrorKind.ESP_REPLAY, ErrorKind.ESP_MALFORMED):
        d = t[kind]
        assert d.has(A.DROP_SILENTLY) and d.has(A.COUNT) and not d.answers_peer
        assert d.rate_limited
    # IKE integrity failures are dropped silently (§3.14)
    assert t[ErrorKind.INTEGRITY_CHECK_FAILED].has(A.DROP_SILENTLY)
    # answers to unprotected traffic are rate-limited (§2.21.4)
    for kind in (ErrorKind.INVALID_IKE_SPI, ErrorKind.INVALID_SPI,
                 ErrorKind.INVALID_MAJOR_VERSION):
        assert t[kind].answers_peer and t[kind].rate_limited
    assert not t[ErrorKind.UNKNOWN_IKE_SPI_RESPONSE].answers_peer
    # an unprotected INVALID_IKE_SPI must not change state: only a liveness check
    assert t[ErrorKind.INVALID_IKE_SPI_RECEIVED].actions == (A.LIVENESS_CHECK,)
    # INVALID_SYNTAX is fatal for the IKE SA without a Delete (§2.21.3)
    syn = t[ErrorKind.INVALID_SYNTAX]
    assert syn.notify is NotifyType.INVALID_SYNTAX and syn.scope is Scope.IKE_SA
    assert not syn.send_delete
    # §2.25 CHILD_SA_NOT_FOUND: drop the child silently and create it anew
    cnf = t[ErrorKind.CHILD_SA_NOT_FOUND_RECEIVED]
    assert cnf.has(A.DELETE_SA) and cnf.has(A.RESET_CONNECTION) and cnf.scope is Scope.CHILD_SA
    # §2.4: INITIAL_CONTACT deletes the other IKE SAs
    assert t[ErrorKind.INITIAL_CONTACT_RECEIVED].scope is Scope.OTHER_IKE_SAS
    # dead peers are deleted without a Delete
    for kind in (ErrorKind.PEER_DEAD, ErrorKind.RETRANSMITS_EXHAUSTED):
        assert t[kind].has(A.DELETE_SA) and not t[kind].send_delete
    assert t[ErrorKind.CONFIG_REMOVED].send_delete


def test_decision_validation() -> None:
    with pytest.raises(ValueError):
        RecoveryDecision((A.NOTIFY_PEER,), reason="x")  # no notify
    with pytest.raises(ValueError):
        RecoveryDecision((A.RETRY,), reason="x")  # no policy
    with pytest.raises(ValueError):
        RecoveryDecision((A.DELETE_SA,), reason="x")  # no scope
    with pytest.raises(ValueError):
        RecoveryDecision((A.DROP_SILENTLY, A.NOTIFY_PEER), reason="x",
                         notify=NotifyType.INVALID_SPI)
    with pytest.raises(ValueError):
        RecoveryDecision((), reason="x")


# -------------------------------------------------------------------------- handler


def test_overrides_are_per_handler() -> None:
    custom = RecoveryDecision((A.DELETE_SA,), reason="local policy: no auth retries",
                              scope=Scope.IKE_SA, log_level=logging.ERROR)
    h = ErrorHandler({ErrorKind.AUTHENTICATION_FAILED_RECEIVED: custom})
    assert h.decide(ErrorKind.AUTHENTICATION_FAILED_RECEIVED) is custom
    assert ErrorHandler().decide(ErrorKind.AUTHENTICATION_FAILED_RECEIVED) is \
        DEFAULT_TABLE[ErrorKind.AUTHENTICATION_FAILED_RECEIVED]
    assert h.decide(ErrorKind.ESP_REPLAY) is DEFAULT_TABLE[ErrorKind.ESP_REPLAY]


@pytest.mark.parametrize(
    ("action", "extra"),
    [(DpdAction.CLEAR, None), (DpdAction.RESTART, A.RESET_CONNECTION), (DpdAction.TRAP, A.TRAP)],
)
def test_for_connection_follows_dpd_action(action: DpdAction, extra: RecoveryAction | None) -> None:
    conn = ConnectionConfig(name="c", dpd=DpdConfig(action=action),
                            retransmit=RetransmitConfig(tries=2, timeout=1.0, base=2.0))
    h = ErrorHandler.for_connection(conn)
    for kind in (ErrorKind.PEER_DEAD, ErrorKind.RETRANSMITS_EXHAUSTED):
        d = h.decide(kind)
        assert d.has(A.DELETE_SA)
        if extra is None:
            assert d is DEFAULT_TABLE[kind]
        else:
            assert d.has(extra)
    if action is DpdAction.RESTART:
        retry = h.decide(ErrorKind.PEER_DEAD).retry
        assert retry is not None and retry.schedule() == [1.0, 2.0, 4.0]


def test_handle_rate_limits_logging_and_answers() -> None:
    h = ErrorHandler(log_rate=1.0, log_burst=2, answer_rate=0.5, answer_burst=3)
    res = [h.handle(ErrorKind.INVALID_IKE_SPI, 0.0) for _ in range(5)]
    assert [r.log for r in res] == [True, True, False, False, False]
    assert [r.answer for r in res] == [True, True, True, False, False]
    assert [r.count for r in res] == [1, 2, 3, 4, 5]
    assert h.suppressed(ErrorKind.INVALID_IKE_SPI) == 3
    # limits are per kind
    assert h.handle(ErrorKind.INVALID_SPI, 0.0).answer
    # tokens come back with time
    assert h.handle(ErrorKind.INVALID_IKE_SPI, 2.0).answer
    # rows that are not rate limited always log; silent drops never answer
    for _ in range(20):
        r = h.handle(ErrorKind.AUTHENTICATION_FAILED, 0.0)
        assert r.log and r.answer
        r = h.handle(ErrorKind.ESP_AUTH_FAILURE, 0.0)
        assert not r.answer
    st = h.status()
    assert json.loads(json.dumps(st)) == st
    assert st["esp-auth-failure"] == 20 and st["invalid-ike-spi"] == 6


# ----------------------------------------------------------------- classification


def test_kind_for_received_notify() -> None:
    f = kind_for_received_notify
    assert f(NotifyType.INVALID_KE_PAYLOAD, in_response=True) is \
        ErrorKind.INVALID_KE_PAYLOAD_RECEIVED
    assert f(NotifyType.COOKIE, in_response=True) is ErrorKind.COOKIE_REQUIRED
    assert f(NotifyType.TEMPORARY_FAILURE, in_response=True) is \
        ErrorKind.TEMPORARY_FAILURE_RECEIVED
    assert f(NotifyType.INITIAL_CONTACT, in_response=False) is ErrorKind.INITIAL_CONTACT_RECEIVED
    assert f(NotifyType.FAILED_CP_REQUIRED, in_response=True) is ErrorKind.ERROR_NOTIFY_RECEIVED
    assert f(12345, in_response=True) is ErrorKind.ERROR_NOTIFY_RECEIVED
    assert f(12345, in_response=False) is ErrorKind.ERROR_NOTIFY_IN_REQUEST
    assert f(NotifyType.NAT_DETECTION_SOURCE_IP, in_response=True) is None
    assert f(40000, in_response=True) is None


def test_kind_for_exception() -> None:
    f = kind_for_exception
    assert f(errors.IntegrityError("icv"), protected=True, is_request=True) is \
        ErrorKind.INTEGRITY_CHECK_FAILED
    assert f(errors.ParseError("bad"), protected=False, is_request=True) is \
        ErrorKind.MALFORMED_MESSAGE
    assert f(errors.ParseError("bad"), protected=True, is_request=True) is \
        ErrorKind.INVALID_SYNTAX
    assert f(errors.ParseError("bad"), protected=True, is_request=False) is \
        ErrorKind.RESPONSE_INVALID
    assert f(errors.UnsupportedCriticalPayload(99), protected=True, is_request=True) is \
        ErrorKind.UNSUPPORTED_CRITICAL_PAYLOAD
    assert f(errors.InvalidMajorVersion("v3"), protected=False, is_request=True) is \
        ErrorKind.INVALID_MAJOR_VERSION
    assert f(errors.NoProposalChosen("none"), protected=False, is_request=True) is \
        ErrorKind.NO_PROPOSAL_CHOSEN
    assert f(errors.KeyExchangeError("bad point"), protected=False, is_request=True) is \
        ErrorKind.KEY_EXCHANGE_FAILED
    assert f(errors.ProtocolError("x", notify=NotifyType.TS_UNACCEPTABLE), protected=True,
             is_request=True) is ErrorKind.TS_UNACCEPTABLE
