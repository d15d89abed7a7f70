"""Error handling and recovery policy of the protocol core.

One readable table (:data:`DEFAULT_TABLE`) says what the core does for every
error it can meet: retry (with which backoff), answer the peer with which
NOTIFY, delete which SA, re-initiate, count, or drop silently.  Each row cites
the RFC text that motivates it.  :class:`ErrorHandler` looks decisions up
(with per-connection overrides), counts errors and rate-limits logging and
answers to unprotected traffic with :class:`RateLimiter` token buckets
(RFC 7296 §2.21.4: "A node needs to limit the rate at which it will send
messages in response to unprotected messages").

:class:`RetryPolicy` is the exponential backoff used for request
retransmission (RFC 7296 §2.1, §2.4: "retransmission times MUST increase
exponentially") and for retrying failed exchanges.

Sans-I/O: times are passed as ``now``, jitter takes an injected ``random.Random``.
"""

from __future__ import annotations

import enum
import functools
import logging
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from . import errors
from .config.model import ConnectionConfig, DpdAction, RetransmitConfig
from .constants import NotifyType
from .identity_memo import IdentityMemo

__all__ = [
    "DEFAULT_TABLE",
    "ErrorHandler",
    "ErrorKind",
    "HandledError",
    "JitterSource",
    "RateLimiter",
    "RecoveryAction",
    "RecoveryDecision",
    "RetryPolicy",
    "Scope",
    "kind_for_exception",
    "kind_for_received_notify",
]


# ------------------------------------------------------------------------ retry policy

JitterSource = random.Random | Callable[[int], bytes]
"""A ``random.Random`` or a random-bytes callable such as :func:`secrets.token_bytes`."""


def _fraction(rng: JitterSource) -> float:
    """A uniform float in [0, 1) from ``rng``."""
    if isinstance(rng, random.Random):
        return rng.random()
    return int.from_bytes(rng(4), "big") / 2**32



@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff: ``delay(n) = base_delay * multiplier**n`` (RFC 7296 §2.1, §2.4).

    ``attempt`` counts retries from 0: ``delay(0)`` is the wait after the
    original transmission before the first retry, ``delay(k)`` the wait after
    retry ``k-1`` before retry ``k``.  Retries ``0 .. max_attempts-1`` are
    allowed (:meth:`exhausted`), and after the last one the sender waits
    ``delay(max_attempts)`` before giving up -- so :meth:`schedule` has
    ``max_attempts + 1`` entries and :meth:`total_time` is the time from the first
    transmission to giving up (strongSwan's retransmission model: with the
    defaults 4 s, 1.8, 5 tries it gives up after ~165 s).

    ``max_delay`` caps each delay (0 = no cap).  ``jitter`` is a fraction in
    ``[0, 1]``: with an ``rng`` each delay is reduced by a random part of up to
    ``jitter * delay``, so jitter never makes a delay longer and
    :meth:`total_time` stays an upper bound.
    """

    max_attempts: int = 5
    base_delay: float = 4.0
    multiplier: float = 1.8
    max_delay: float = 0.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.max_attempts < 0:
            raise ValueError("max_attempts must be >= 0")
        if self.base_delay < 0 or math.isnan(self.base_delay):
            raise ValueError("base_delay must be >= 0")
        if self.multiplier < 1.0 or math.isnan(self.multiplier):
            raise ValueError("multiplier must be >= 1 (RFC 7296 §2.4: delays must not shrink)")
        if self.max_delay < 0 or math.isnan(self.max_delay):
            raise ValueError("max_delay must be >= 0 (0 = no cap)")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter must be a fraction in [0, 1]")

    @classmethod
    def from_retransmit_config(cls, config: RetransmitConfig) -> RetryPolicy:
        """The policy described by a connection's ``retransmit`` settings."""
        return cls(
            max_attempts=config.tries,
            base_delay=config.timeout,
            multiplier=config.base,
            max_delay=config.max_delay,
            jitter=config.jitter,
        )

    @classmethod
    def immediate(cls, max_attempts: int) -> RetryPolicy:
        """Retry at once, at most ``max_attempts`` times (e.g. INVALID_KE_PAYLOAD, COOKIE)."""
        return cls(max_attempts=max_attempts, base_delay=0.0, multiplier=1.0)

    def delay(self, attempt: int, rng: JitterSource | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0 = first retry).

        Jitter is applied only when an ``rng`` is given.
        """
        if attempt < 0:
            raise ValueError("attempt must be >= 0")
        try:
            d = self.base_delay * self.multiplier**attempt
        except OverflowError:
            d = math.inf
        if self.max_delay > 0:
            d = min(d, self.max_delay)
        if rng is not None and self.jitter > 0 and math.isfinite(d):
            d -= d * self.jitter * _fraction(rng)
        return d

    def schedule(self) -> list[float]:
        """Delays without jitter: before each retry, then the final wait before giving up."""
        return [self.delay(n) for n in range(self.max_attempts + 1)]

    def total_time(self) -> float:
        """Upper bound of the time from the first transmission until giving up."""
        return math.fsum(self.schedule())

    def exhausted(self, attempt: int) -> bool:
        """True if retry number ``attempt`` (0-based) is no longer allowed."""
        return attempt >= self.max_attempts


# ------------------------------------------------------------------------ rate limiter


class RateLimiter:
    """Token bucket: on average ``rate`` events per second, bursts up to ``burst``.

    Used for bounded logging and for answers to unprotected traffic
    (INVALID_IKE_SPI, INVALID_SPI; RFC 7296 §2.21.4).  The bucket starts full.
    A clock going backwards does not refill it.
    """

    __slots__ = ("_last", "_tokens", "burst", "rate", "suppressed")

    def __init__(self, rate: float, burst: int) -> None:
        if rate < 0 or math.isnan(rate):
            raise ValueError("rate must be >= 0")
        if burst < 1:
            raise ValueError("burst must be >= 1")
        self.rate = float(rate)
        self.burst = burst
        self._tokens = float(burst)
        self._last: float | None = None
        self.suppressed = 0

    def _refill(self, now: float) -> None:
        if self._last is None:
            self._last = now
            return
        if now > self._last:
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
            self._last = now

    def tokens(self, now: float) -> float:
        """Tokens available at ``now``."""
        self._refill(now)
        return self._tokens

    def allow(self, now: float) -> bool:
        """Take one token if available; count a suppressed event otherwise."""
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        self.suppressed += 1
        return False

    def take_suppressed(self) -> int:
        """Number of events refused since the last call (for "N messages suppressed")."""
        n, self.suppressed = self.suppressed, 0
        return n


# -------------------------------------------------------------------- actions and kinds


class RecoveryAction(enum.Enum):
    """What the core does about an error.  A decision lists one or more."""

    RETRY = "retry"
    """Repeat the failed exchange (with the correction the error asks for, e.g. the
    KE group or the cookie), paced by the decision's ``retry`` policy."""
    NOTIFY_PEER = "notify-peer"
    """Answer with the decision's ``notify``: in the response when the error is in
    a request, otherwise in an INFORMATIONAL exchange where the RFC allows it."""
    DELETE_SA = "delete-sa"
    """Delete the SA given by ``scope``; a Delete payload is sent only if ``send_delete``."""
    RESET_CONNECTION = "reset-connection"
    """Tear down and re-initiate (the connection, or the Child SA if ``scope`` is a
    Child SA), paced by ``retry``."""
    TRAP = "trap"
    """Re-install the trap policy: the next matching packet re-initiates (dpd_action=trap)."""
    LIVENESS_CHECK = "liveness-check"
    """Start a liveness check (§2.4) on the IKE SA(s) with that peer; nothing else changes."""
    COUNT = "count"
    """Increment the error counter shown in the status."""
    IGNORE = "ignore"
    """Change no state."""
    DROP_SILENTLY = "drop-silently"
    """Discard the packet; never answer it."""


class Scope(enum.Enum):
    """Which SA a DELETE_SA / RESET_CONNECTION applies to."""

    NONE = "none"
    IKE_SA = "ike-sa"  # the IKE SA and all its Child SAs
    CHILD_SA = "child-sa"  # the Child SA the error is about
    AFFECTED = "affected"  # the SA the failed exchange negotiated (IKE SA in IKE_SA_INIT/
    # IKE_AUTH, the new Child SA in CREATE_CHILD_SA or piggybacked on IKE_AUTH) or that expired
    OTHER_IKE_SAS = "other-ike-sas"  # other IKE SAs with the same identities (INITIAL_CONTACT)


class ErrorKind(enum.Enum):
    """Every error condition the core can meet.

    ``*_RECEIVED`` kinds are error notifications the peer sent us; the plain names
    are conditions we detected ourselves (and usually answer).
    """

    # liveness / timers
    RETRANSMITS_EXHAUSTED = "retransmits-exhausted"
    PEER_DEAD = "peer-dead"
    HALF_OPEN_TIMEOUT = "half-open-timeout"
    LIFETIME_EXPIRED = "lifetime-expired"
    REKEY_FAILED = "rekey-failed"
    CONFIG_REMOVED = "config-removed"
    INTERNAL_ERROR = "internal-error"
    # IKE messages we received and could not accept
    MALFORMED_MESSAGE = "malformed-message"
    INTEGRITY_CHECK_FAILED = "integrity-check-failed"
    INVALID_SYNTAX = "invalid-syntax"
    MALFORMED_IKE_AUTH = "malformed-ike-auth"
    MALFORMED_EAP_ROUND = "malformed-eap-round"
    CHILDLESS_REFUSED = "childless-refused"
    RESPONSE_INVALID = "response-invalid"
    UNSUPPORTED_CRITICAL_PAYLOAD = "unsupported-critical-payload"
    INVALID_MAJOR_VERSION = "invalid-major-version"
    INVALID_MESSAGE_ID = "invalid-message-id"
    INVALID_IKE_SPI = "invalid-ike-spi"
    UNKNOWN_IKE_SPI_RESPONSE = "unknown-ike-spi-response"
    NO_PROPOSAL_CHOSEN = "no-proposal-chosen"
    TS_UNACCEPTABLE = "ts-unacceptable"
    INVALID_KE_PAYLOAD = "invalid-ke-payload"
    KEY_EXCHANGE_FAILED = "key-exchange-failed"
    AUTHENTICATION_FAILED = "authentication-failed"
    TEMPORARY_FAILURE = "temporary-failure"
    CHILD_SA_NOT_FOUND = "child-sa-not-found"
    FRAGMENT_BUDGET_EXCEEDED = "fragment-budget-exceeded"
    HALF_OPEN_LIMIT = "half-open-limit"
    # error notifications from the peer
    AUTHENTICATION_FAILED_RECEIVED = "authentication-failed-received"
    NO_PROPOSAL_CHOSEN_RECEIVED = "no-proposal-chosen-received"
    TS_UNACCEPTABLE_RECEIVED = "ts-unacceptable-received"
    INVALID_KE_PAYLOAD_RECEIVED = "invalid-ke-payload-received"
    COOKIE_REQUIRED = "cookie-required"
    TEMPORARY_FAILURE_RECEIVED = "temporary-failure-received"
    CHILD_SA_NOT_FOUND_RECEIVED = "child-sa-not-found-received"
    INVALID_SYNTAX_RECEIVED = "invalid-syntax-received"
    UNSUPPORTED_CRITICAL_PAYLOAD_RECEIVED = "unsupported-critical-payload-received"
    INVALID_MAJOR_VERSION_RECEIVED = "invalid-major-version-received"
    INVALID_IKE_SPI_RECEIVED = "invalid-ike-spi-received"
    INVALID_SPI_RECEIVED = "invalid-spi-received"
    INITIAL_CONTACT_RECEIVED = "initial-contact-received"
    ERROR_NOTIFY_RECEIVED = "error-notify-received"
    ERROR_NOTIFY_IN_REQUEST = "error-notify-in-request"
    # ESP data path
    INVALID_SPI = "invalid-spi"
    ESP_AUTH_FAILURE = "esp-auth-failure"
    ESP_REPLAY = "esp-replay"
    ESP_MALFORMED = "esp-malformed"
    INVALID_SELECTORS = "invalid-selectors"


@dataclass(frozen=True, slots=True)
class RecoveryDecision:
    """What to do about one :class:`ErrorKind`.

    ``retry`` paces RETRY and RESET_CONNECTION; once it is exhausted the core
    performs ``on_exhausted``.  ``rate_limited`` routes logging (and NOTIFY_PEER
    answers) through the :class:`ErrorHandler`'s token buckets.
    """

    actions: tuple[RecoveryAction, ...]
    reason: str
    scope: Scope = Scope.NONE
    notify: NotifyType | None = None
    retry: RetryPolicy | None = None
    on_exhausted: tuple[RecoveryAction, ...] = ()
    send_delete: bool = False
    log_level: int = logging.WARNING
    rate_limited: bool = False

    def __post_init__(self) -> None:
        acts = set(self.actions)
        if not self.actions:
            raise ValueError("a decision needs at least one action")
        if (RecoveryAction.NOTIFY_PEER in acts) != (self.notify is not None):
            raise ValueError("NOTIFY_PEER and notify go together")
        if RecoveryAction.NOTIFY_PEER in acts and RecoveryAction.DROP_SILENTLY in acts:
            raise ValueError("DROP_SILENTLY excludes NOTIFY_PEER")
        if RecoveryAction.RETRY in acts and self.retry is None:
            raise ValueError("RETRY needs a retry policy")
        needs_scope = {RecoveryAction.DELETE_SA, RecoveryAction.RESET_CONNECTION}
        if acts & needs_scope and self.scope is Scope.NONE:
            raise ValueError("DELETE_SA / RESET_CONNECTION need a scope")
        if self.send_delete and RecoveryAction.DELETE_SA not in acts:
            raise ValueError("send_delete without DELETE_SA")

    def has(self, action: RecoveryAction) -> bool:
        return action in self.actions

    @property
    def answers_peer(self) -> bool:
        return RecoveryAction.NOTIFY_PEER in self.actions


A = RecoveryAction
_D = RecoveryDecision

_INITIATOR_BACKOFF = RetryPolicy(max_attempts=5, base_delay=30.0, multiplier=2.0, max_delay=600.0)
#: §2.25 "MUST NOT retry immediately": 2-4 s, growing to 30-60 s; about five minutes of
#: TEMPORARY_FAILURE answers before the state is taken as out of sync
_TEMP_FAILURE_BACKOFF = RetryPolicy(
    max_attempts=10, base_delay=4.0, multiplier=1.5, max_delay=60.0, jitter=0.5
)
#: a refused IKE SA rekey (or reauthentication) is tried again 30 s later, then less often
_REKEY_BACKOFF = RetryPolicy(max_attempts=5, base_delay=30.0, multiplier=2.0, max_delay=300.0)

_TABLE: dict[ErrorKind, RecoveryDecision] = {
    # ---- liveness and timers -------------------------------------------------------
    ErrorKind.RETRANSMITS_EXHAUSTED: _D(
        (A.DELETE_SA,), scope=Scope.IKE_SA, log_level=logging.WARNING,
        reason="§2.4: repeated unanswered attempts mean the peer is dead; delete the IKE SA "
        "and its Child SAs without a Delete (the peer is not responding). dpd_action decides "
        "re-initiation (ErrorHandler.for_connection).",
    ),
    ErrorKind.PEER_DEAD: _D(
        (A.DELETE_SA,), scope=Scope.IKE_SA,
        reason="§2.4: liveness check unanswered; delete without a Delete payload. "
        "dpd_action (clear/trap/restart) adds TRAP or RESET_CONNECTION.",
    ),
    ErrorKind.HALF_OPEN_TIMEOUT: _D(
        (A.DELETE_SA,), scope=Scope.IKE_SA, log_level=logging.INFO, rate_limited=True,
        reason="§2.6: half-open IKE SAs are DoS state; discard silently when they time out.",
    ),
    ErrorKind.LIFETIME_EXPIRED: _D(
        (A.DELETE_SA,), scope=Scope.AFFECTED, send_delete=True, log_level=logging.INFO,
        reason="§2.8: an SA past its hard lifetime must not be used; delete it with a Delete.",
    ),
    ErrorKind.REKEY_FAILED: _D(
        (A.RETRY,), retry=_REKEY_BACKOFF, log_level=logging.WARNING,
        reason="§2.8: rekeying is retried before the hard lifetime; the hard lifetime "
        "(LIFETIME_EXPIRED) ends the SA if it never succeeds.",
    ),
    ErrorKind.CONFIG_REMOVED: _D(
        (A.DELETE_SA,), scope=Scope.IKE_SA, send_delete=True, log_level=logging.INFO,
        reason="§1.4.1: orderly close with a Delete payload.",
    ),
    ErrorKind.INTERNAL_ERROR: _D(
        (A.DELETE_SA,), scope=Scope.AFFECTED, send_delete=True, log_level=logging.ERROR,
        reason="§2.21.3: state that cannot be trusted is cleaned up with a Delete.",
    ),
    # ---- IKE messages we cannot accept ------------------------------------------------
    ErrorKind.MALFORMED_MESSAGE: _D(
        (A.DROP_SILENTLY, A.COUNT), log_level=logging.DEBUG, rate_limited=True,
        reason="§2.21.1/§2.21.4: unprotected garbage is not answered (no reflection/DoS).",
    ),
    ErrorKind.INTEGRITY_CHECK_FAILED: _D(
        (A.DROP_SILENTLY, A.COUNT), log_level=logging.INFO, rate_limited=True,
        reason="§3.14: a message whose ICV fails is discarded, never answered.",
    ),
    ErrorKind.INVALID_SYNTAX: _D(
        (A.NOTIFY_PEER, A.DELETE_SA), notify=NotifyType.INVALID_SYNTAX, scope=Scope.IKE_SA,
        reason="§2.21.3: a protected, well-authenticated but malformed request is answered "
        "with INVALID_SYNTAX, which is fatal for both peers: no Delete needed.",
    ),
    ErrorKind.MALFORMED_IKE_AUTH: _D(
        (A.NOTIFY_PEER, A.DELETE_SA), notify=NotifyType.INVALID_SYNTAX, scope=Scope.IKE_SA,
        log_level=logging.INFO, rate_limited=True,
        reason="§2.21.2: a malformed IKE_AUTH request (it passed the ICV of the half-open "
        "SA's keys, its sender is not authenticated) MUST only lead to an INVALID_SYNTAX "
        "(or UNSUPPORTED_CRITICAL_PAYLOAD) notification in the response; the half-open SA "
        "ends with it, without a Delete.",
    ),
    ErrorKind.MALFORMED_EAP_ROUND: _D(
        (A.NOTIFY_PEER, A.DELETE_SA), notify=NotifyType.AUTHENTICATION_FAILED,
        scope=Scope.IKE_SA, log_level=logging.INFO, rate_limited=True,
        reason="§2.16, §2.21.2: the EAP rounds of IKE_AUTH authenticate the initiator; a "
        "malformed one fails that authentication (AUTHENTICATION_FAILED in the response) "
        "and the half-open SA ends, without a Delete.",
    ),
    ErrorKind.CHILDLESS_REFUSED: _D(
        (A.NOTIFY_PEER, A.DELETE_SA), notify=NotifyType.INVALID_SYNTAX, scope=Scope.IKE_SA,
        log_level=logging.INFO,
        reason="RFC 6023 §3: an IKE_AUTH request without a Child SA where childless = "
        "never (support not announced), or with one where childless = force: answered "
        "INVALID_SYNTAX, as strongSwan does, and the IKE SA fails without a Delete.",
    ),
    ErrorKind.RESPONSE_INVALID: _D(
        (A.DELETE_SA,), scope=Scope.AFFECTED, send_delete=True,
        reason="§2.21: errors in responses are not answered, but state is cleaned up "
        "by sending a Delete for the bad SA.",
    ),
    ErrorKind.UNSUPPORTED_CRITICAL_PAYLOAD: _D(
        (A.NOTIFY_PEER, A.DELETE_SA), notify=NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD,
        scope=Scope.AFFECTED,
        reason="§2.5, §2.21.2: reject the whole request; the notify carries the payload type.",
    ),
    ErrorKind.INVALID_MAJOR_VERSION: _D(
        (A.NOTIFY_PEER,), notify=NotifyType.INVALID_MAJOR_VERSION, rate_limited=True,
        reason="§2.5: answer an IKE_SA_INIT with a higher major version, rate-limited "
        "(unprotected).",
    ),
    ErrorKind.FRAGMENT_BUDGET_EXCEEDED: _D(
        (A.DROP_SILENTLY, A.COUNT), log_level=logging.INFO, rate_limited=True,
        reason="RFC 7383 §5: reassembly memory is bounded per IKE SA (tighter before "
        "authentication); a fragment beyond the budget is dropped with its set, unanswered.",
    ),
    ErrorKind.HALF_OPEN_LIMIT: _D(
        (A.DROP_SILENTLY, A.COUNT), log_level=logging.WARNING, rate_limited=True,
        reason="§2.6: half-open state is bounded (in total and per source IP); an "
        "IKE_SA_INIT request beyond the limit is dropped, even with a valid cookie.",
    ),
    ErrorKind.INVALID_MESSAGE_ID: _D(
        (A.DROP_SILENTLY, A.COUNT), log_level=logging.INFO, rate_limited=True,
        reason="§2.3: a request outside the window MUST NOT be acknowledged; the optional "
        "INVALID_MESSAGE_ID notification is not sent.",
    ),
    ErrorKind.INVALID_IKE_SPI: _D(
        (A.NOTIFY_PEER, A.COUNT), notify=NotifyType.INVALID_IKE_SPI, rate_limited=True,
        log_level=logging.INFO,
        reason="§2.21.4: a request for an unknown IKE SA MAY get an unprotected "
        "INVALID_IKE_SPI answer (same SPIs and Message ID), rate-limited.",
    ),
    ErrorKind.UNKNOWN_IKE_SPI_RESPONSE: _D(
        (A.DROP_SILENTLY, A.COUNT), log_level=logging.INFO, rate_limited=True,
        reason="§2.21.4: a response for an unknown IKE SA MUST NOT be answered.",
    ),
    ErrorKind.NO_PROPOSAL_CHOSEN: _D(
        (A.NOTIFY_PEER, A.DELETE_SA), notify=NotifyType.NO_PROPOSAL_CHOSEN,
        scope=Scope.AFFECTED, rate_limited=True,
        reason="§2.7, §2.21: nothing acceptable: answer NO_PROPOSAL_CHOSEN, keep no state.",
    ),
    ErrorKind.TS_UNACCEPTABLE: _D(
        (A.NOTIFY_PEER,), notify=NotifyType.TS_UNACCEPTABLE,
        reason="§2.9, §2.21.2: the Child SA is refused; the IKE SA stays.",
    ),
    ErrorKind.INVALID_KE_PAYLOAD: _D(
        (A.NOTIFY_PEER,), notify=NotifyType.INVALID_KE_PAYLOAD, log_level=logging.INFO,
        reason="§1.2, §2.7: name the group we want (2-byte data); the responder keeps no state.",
    ),
    ErrorKind.KEY_EXCHANGE_FAILED: _D(
        (A.NOTIFY_PEER, A.DELETE_SA), notify=NotifyType.INVALID_SYNTAX, scope=Scope.AFFECTED,
        rate_limited=True,
        reason="RFC 8031 §2, §3.4: an invalid public value is a malformed KE payload.",
    ),
    ErrorKind.AUTHENTICATION_FAILED: _D(
        (A.NOTIFY_PEER, A.DELETE_SA), notify=NotifyType.AUTHENTICATION_FAILED,
        scope=Scope.IKE_SA, log_level=logging.ERROR,
        reason="§2.21.2: answer AUTHENTICATION_FAILED (responder: in the response; "
        "initiator: in a separate INFORMATIONAL); the IKE SA is gone without a Delete.",
    ),
    ErrorKind.TEMPORARY_FAILURE: _D(
        (A.NOTIFY_PEER,), notify=NotifyType.TEMPORARY_FAILURE, log_level=logging.INFO,
        reason="§2.25: a request that collides with a rekey/delete in progress.",
    ),
    ErrorKind.CHILD_SA_NOT_FOUND: _D(
        (A.NOTIFY_PEER,), notify=NotifyType.CHILD_SA_NOT_FOUND, log_level=logging.INFO,
        reason="§2.25: a rekey request for a Child SA we do not have.",
    ),
    # ---- error notifications from the peer -------------------------------------------
    ErrorKind.AUTHENTICATION_FAILED_RECEIVED: _D(
        (A.DELETE_SA, A.RESET_CONNECTION), scope=Scope.IKE_SA, retry=_INITIATOR_BACKOFF,
        log_level=logging.ERROR,
        reason="§2.21.2: the IKE SA is deleted without a Delete; the initiator retries with "
        "a long backoff in case the peer's configuration gets fixed.",
    ),
    ErrorKind.NO_PROPOSAL_CHOSEN_RECEIVED: _D(
        (A.DELETE_SA,), scope=Scope.AFFECTED, log_level=logging.ERROR,
        reason="§2.7: configuration mismatch; retrying cannot help.",
    ),
    ErrorKind.TS_UNACCEPTABLE_RECEIVED: _D(
        (A.DELETE_SA,), scope=Scope.AFFECTED, log_level=logging.ERROR,
        reason="§2.9, §2.21.2: only the Child SA fails; the IKE SA stays.",
    ),
    ErrorKind.INVALID_KE_PAYLOAD_RECEIVED: _D(
        (A.RETRY,), retry=RetryPolicy.immediate(2), on_exhausted=(A.DELETE_SA,),
        scope=Scope.AFFECTED, log_level=logging.INFO,
        reason="§1.2, §2.7: retry at once with the group named in the notify (bounded, so "
        "forged notifies cannot loop us).",
    ),
    ErrorKind.COOKIE_REQUIRED: _D(
        (A.RETRY,), retry=RetryPolicy.immediate(3), on_exhausted=(A.DELETE_SA,),
        scope=Scope.AFFECTED, log_level=logging.DEBUG,
        reason="§2.6: repeat IKE_SA_INIT at once with the COOKIE first.",
    ),
    ErrorKind.TEMPORARY_FAILURE_RECEIVED: _D(
        (A.RETRY,), retry=_TEMP_FAILURE_BACKOFF, on_exhausted=(A.DELETE_SA,),
        scope=Scope.IKE_SA, send_delete=False, log_level=logging.INFO,
        reason="§2.25: MUST NOT retry immediately; retry over several minutes, then "
        "conclude the state is out of sync and close the IKE SA.",
    ),
    ErrorKind.CHILD_SA_NOT_FOUND_RECEIVED: _D(
        (A.DELETE_SA, A.RESET_CONNECTION), scope=Scope.CHILD_SA,
        retry=RetryPolicy.immediate(1), log_level=logging.INFO,
        reason="§2.25: silently delete the Child SA and create a new one from scratch.",
    ),
    ErrorKind.INVALID_SYNTAX_RECEIVED: _D(
        (A.DELETE_SA,), scope=Scope.IKE_SA, log_level=logging.ERROR,
        reason="§2.21.3: INVALID_SYNTAX is fatal in both peers; no Delete needed.",
    ),
    ErrorKind.UNSUPPORTED_CRITICAL_PAYLOAD_RECEIVED: _D(
        (A.DELETE_SA,), scope=Scope.AFFECTED, log_level=logging.ERROR,
        reason="§2.5, §2.21.2: the request was rejected in its entirety.",
    ),
    ErrorKind.INVALID_MAJOR_VERSION_RECEIVED: _D(
        (A.IGNORE,), rate_limited=True,
        reason="§2.5, §2.21.1: we only speak 2.0; an unprotected notify is no reason to give "
        "up early -- the retransmission timer ends the attempt.",
    ),
    ErrorKind.INVALID_IKE_SPI_RECEIVED: _D(
        (A.LIVENESS_CHECK,), rate_limited=True, log_level=logging.INFO,
        reason="§2.21.4: an unprotected INVALID_IKE_SPI MUST NOT change state; it is a hint "
        "to check liveness, at a limited rate.",
    ),
    ErrorKind.INVALID_SPI_RECEIVED: _D(
        (A.IGNORE,), rate_limited=True, log_level=logging.INFO,
        reason="§2.21.4, §3.10.1: the peer reports ESP on an SPI it does not know; the "
        "recipient MUST NOT change SA state because of it.",
    ),
    ErrorKind.INITIAL_CONTACT_RECEIVED: _D(
        (A.DELETE_SA,), scope=Scope.OTHER_IKE_SAS, log_level=logging.INFO,
        reason="§2.4: a protected INITIAL_CONTACT means the peer forgot older IKE SAs with "
        "the same identities; delete them without Delete payloads.",
    ),
    ErrorKind.ERROR_NOTIFY_RECEIVED: _D(
        (A.DELETE_SA,), scope=Scope.AFFECTED,
        reason="§3.10.1: an unrecognized error in a response means the request failed "
        "entirely.",
    ),
    ErrorKind.ERROR_NOTIFY_IN_REQUEST: _D(
        (A.IGNORE,), log_level=logging.DEBUG,
        reason="§3.10.1: unrecognized error types in a request MUST be ignored.",
    ),
    # ---- ESP data path ----------------------------------------------------------------
    ErrorKind.INVALID_SPI: _D(
        (A.NOTIFY_PEER, A.COUNT), notify=NotifyType.INVALID_SPI, rate_limited=True,
        log_level=logging.INFO,
        reason="§2.21.4, §3.10.1: ESP for an unknown SPI SHOULD be reported in an "
        "INFORMATIONAL exchange of the IKE SA with that peer, rate-limited.",
    ),
    ErrorKind.ESP_AUTH_FAILURE: _D(
        (A.DROP_SILENTLY, A.COUNT), rate_limited=True,
        reason="RFC 4303 §3.4.4: an ICV failure is an auditable event; the packet is "
        "discarded and never answered.",
    ),
    ErrorKind.ESP_REPLAY: _D(
        (A.DROP_SILENTLY, A.COUNT), rate_limited=True, log_level=logging.INFO,
        reason="RFC 4303 §3.4.3: a duplicate or too-old packet is discarded (auditable).",
    ),
    ErrorKind.ESP_MALFORMED: _D(
        (A.DROP_SILENTLY, A.COUNT), rate_limited=True, log_level=logging.INFO,
        reason="RFC 4303 §3.4: undecodable ESP is discarded.",
    ),
    ErrorKind.INVALID_SELECTORS: _D(
        (A.DROP_SILENTLY, A.COUNT), rate_limited=True,
        reason="RFC 4301 §5.2: an inner packet outside the SA's selectors is dropped; the "
        "optional INVALID_SELECTORS notify (§3.10.1) is not sent.",
    ),
}

DEFAULT_TABLE: Mapping[ErrorKind, RecoveryDecision] = MappingProxyType(_TABLE)
"""The default decision for every :class:`ErrorKind` (read-only)."""


# --------------------------------------------------------------------- classification


_RECEIVED_NOTIFY_KINDS: dict[int, ErrorKind] = {
    NotifyType.AUTHENTICATION_FAILED: ErrorKind.AUTHENTICATION_FAILED_RECEIVED,
    NotifyType.NO_PROPOSAL_CHOSEN: ErrorKind.NO_PROPOSAL_CHOSEN_RECEIVED,
    NotifyType.TS_UNACCEPTABLE: ErrorKind.TS_UNACCEPTABLE_RECEIVED,
    NotifyType.INVALID_KE_PAYLOAD: ErrorKind.INVALID_KE_PAYLOAD_RECEIVED,
    NotifyType.COOKIE: ErrorKind.COOKIE_REQUIRED,
    NotifyType.TEMPORARY_FAILURE: ErrorKind.TEMPORARY_FAILURE_RECEIVED,
    NotifyType.CHILD_SA_NOT_FOUND: ErrorKind.CHILD_SA_NOT_FOUND_RECEIVED,
    NotifyType.INVALID_SYNTAX: ErrorKind.INVALID_SYNTAX_RECEIVED,
    NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD: ErrorKind.UNSUPPORTED_CRITICAL_PAYLOAD_RECEIVED,
    NotifyType.INVALID_MAJOR_VERSION: ErrorKind.INVALID_MAJOR_VERSION_RECEIVED,
    NotifyType.INVALID_IKE_SPI: ErrorKind.INVALID_IKE_SPI_RECEIVED,
    NotifyType.INVALID_SPI: ErrorKind.INVALID_SPI_RECEIVED,
    NotifyType.INITIAL_CONTACT: ErrorKind.INITIAL_CONTACT_RECEIVED,
}


def kind_for_received_notify(notify: int, *, in_response: bool) -> ErrorKind | None:
    """The :class:`ErrorKind` for a notification the peer sent, or None if it is no error.

    Known types map to their ``*_RECEIVED`` kind (COOKIE to COOKIE_REQUIRED,
    INITIAL_CONTACT to INITIAL_CONTACT_RECEIVED); other error types (< 16384)
    map to ERROR_NOTIFY_RECEIVED in a response and ERROR_NOTIFY_IN_REQUEST in a
    request (§3.10.1); other status types to None.
    """
    kind = _RECEIVED_NOTIFY_KINDS.get(notify)
    if kind is not None:
        return kind
    if notify < 16384:
        return ErrorKind.ERROR_NOTIFY_RECEIVED if in_response else ErrorKind.ERROR_NOTIFY_IN_REQUEST
    return None


def kind_for_exception(
    exc: errors.ProtocolError, *, protected: bool, is_request: bool
) -> ErrorKind:
    """Classify a :class:`~pyipsec.ikev2.errors.ProtocolError` raised on received bytes.

    ``protected`` tells whether the message passed its integrity check (an SK
    payload verified); ``is_request`` whether it was a request (errors in
    responses are never answered, §2.21).
    """
    if isinstance(exc, errors.IntegrityError):
        return ErrorKind.INTEGRITY_CHECK_FAILED
    if isinstance(exc, errors.InvalidMajorVersion):
        return ErrorKind.INVALID_MAJOR_VERSION if is_request else ErrorKind.MALFORMED_MESSAGE
    if not is_request:
        return ErrorKind.RESPONSE_INVALID if protected else ErrorKind.MALFORMED_MESSAGE
    if isinstance(exc, errors.UnsupportedCriticalPayload):
        return ErrorKind.UNSUPPORTED_CRITICAL_PAYLOAD
    by_notify: dict[int, ErrorKind] = {
        NotifyType.NO_PROPOSAL_CHOSEN: ErrorKind.NO_PROPOSAL_CHOSEN,
        NotifyType.INVALID_KE_PAYLOAD: ErrorKind.INVALID_KE_PAYLOAD,
        NotifyType.AUTHENTICATION_FAILED: ErrorKind.AUTHENTICATION_FAILED,
        NotifyType.TS_UNACCEPTABLE: ErrorKind.TS_UNACCEPTABLE,
        NotifyType.TEMPORARY_FAILURE: ErrorKind.TEMPORARY_FAILURE,
        NotifyType.CHILD_SA_NOT_FOUND: ErrorKind.CHILD_SA_NOT_FOUND,
    }
    kind = by_notify.get(exc.notify)
    if kind is not None:
        return kind
    if isinstance(exc, errors.KeyExchangeError):
        return ErrorKind.KEY_EXCHANGE_FAILED
    return ErrorKind.INVALID_SYNTAX if protected else ErrorKind.MALFORMED_MESSAGE


# ------------------------------------------------------------------------ the handler


@dataclass(frozen=True, slots=True)
class HandledError:
    """Result of :meth:`ErrorHandler.handle`: the decision plus rate-limit verdicts."""

    kind: ErrorKind
    decision: RecoveryDecision
    log: bool  # emit a log line now (False: suppressed by the rate limit)
    answer: bool  # NOTIFY_PEER may be sent now (False if not listed or rate-limited)
    count: int = 0  # how often this kind occurred, this one included


_TABLES: dict[tuple[tuple[ErrorKind, RecoveryDecision], ...], Mapping[ErrorKind, RecoveryDecision]]
_TABLES = {}


def _shared_table(
    overrides: Mapping[ErrorKind, RecoveryDecision] | None,
) -> Mapping[ErrorKind, RecoveryDecision]:
    """The table with ``overrides`` applied, one read-only copy per distinct set of
    overrides (every IKE SA of a connection shares it: no per-SA copy of the table)."""
    key = tuple(sorted((overrides or {}).items(), key=lambda kv: kv[0].value))
    table = _TABLES.get(key)
    if table is None:
        merged = dict(DEFAULT_TABLE)
        merged.update(key)
        table = _TABLES[key] = MappingProxyType(merged)
    return table


#: the shared table per (dpd_action, retransmit) configuration objects, by identity:
#: every new IKE SA asks (hashing the frozen configuration cost more than the lookup)
_CONNECTION_TABLES: IdentityMemo[Mapping[ErrorKind, RecoveryDecision]] = IdentityMemo(256)


def _connection_table(
    action: DpdAction, retransmit: RetransmitConfig
) -> Mapping[ErrorKind, RecoveryDecision]:
    """The shared table of a connection without explicit overrides."""
    return _CONNECTION_TABLES.value((action, retransmit), _build_connection_table)


def _build_connection_table(
    action: DpdAction, retransmit: RetransmitConfig
) -> Mapping[ErrorKind, RecoveryDecision]:
    return _shared_table(dict(_dpd_rows(action, retransmit)))


@functools.lru_cache(maxsize=256)
def _dpd_rows(
    action: DpdAction, retransmit: RetransmitConfig
) -> tuple[tuple[ErrorKind, RecoveryDecision], ...]:
    """The PEER_DEAD / RETRANSMITS_EXHAUSTED rows ``dpd_action`` changes (every new IKE
    SA of a connection asks: built once per configuration)."""
    rows: list[tuple[ErrorKind, RecoveryDecision]] = []
    for kind in (ErrorKind.PEER_DEAD, ErrorKind.RETRANSMITS_EXHAUSTED):
        base = DEFAULT_TABLE[kind]
        if action is DpdAction.RESTART:
            rows.append((kind, replace(
                base,
                actions=(*base.actions, RecoveryAction.RESET_CONNECTION),
                retry=RetryPolicy.from_retransmit_config(retransmit),
            )))
        elif action is DpdAction.TRAP:
            rows.append((kind, replace(base, actions=(*base.actions, RecoveryAction.TRAP))))
    return tuple(rows)


@dataclass(slots=True)
class _Limits:
    log: RateLimiter
    answer: RateLimiter


class ErrorHandler:
    """Looks up :class:`RecoveryDecision` s, counts errors and applies rate limits.

    ``overrides`` replace rows of :data:`DEFAULT_TABLE` (per connection).  Rate
    limits are per :class:`ErrorKind`: ``log_rate``/``log_burst`` for log lines of
    rate-limited rows and ``answer_rate``/``answer_burst`` for their NOTIFY_PEER
    answers (RFC 7296 §2.21.4).
    """

    __slots__ = ("_answer_params", "_limits", "_log_params", "_table", "counters")

    def __init__(
        self,
        overrides: Mapping[ErrorKind, RecoveryDecision] | None = None,
        *,
        log_rate: float = 1.0,
        log_burst: int = 5,
        answer_rate: float = 1.0,
        answer_burst: int = 10,
        table: Mapping[ErrorKind, RecoveryDecision] | None = None,
    ) -> None:
        """``table``: an already shared table (instead of ``overrides``)."""
        self._table = _shared_table(overrides) if table is None else table
        self._log_params = (log_rate, log_burst)
        self._answer_params = (answer_rate, answer_burst)
        self._limits: dict[ErrorKind, _Limits] = {}
        self.counters: dict[ErrorKind, int] = {}

    @classmethod
    def for_connection(
        cls,
        conn: ConnectionConfig,
        overrides: Mapping[ErrorKind, RecoveryDecision] | None = None,
        *,
        log_rate: float = 1.0,
        log_burst: int = 5,
        answer_rate: float = 1.0,
        answer_burst: int = 10,
    ) -> ErrorHandler:
        """A handler whose PEER_DEAD / RETRANSMITS_EXHAUSTED rows follow ``conn.dpd.action``.

        ``restart`` adds RESET_CONNECTION paced by the connection's retransmit
        policy, ``trap`` adds TRAP, ``clear`` keeps the default.  Explicit
        ``overrides`` win.
        """
        if not overrides:  # every IKE SA of a gateway: one shared table per configuration
            return cls(log_rate=log_rate, log_burst=log_burst, answer_rate=answer_rate,
                       answer_burst=answer_burst,
                       table=_connection_table(conn.dpd.action, conn.retransmit))  # fmt: skip
        table = dict(_dpd_rows(conn.dpd.action, conn.retransmit))
        table.update(overrides)
        return cls(
            table,
            log_rate=log_rate,
            log_burst=log_burst,
            answer_rate=answer_rate,
            answer_burst=answer_burst,
        )

    @property
    def table(self) -> Mapping[ErrorKind, RecoveryDecision]:
        return self._table

    def decide(self, kind: ErrorKind) -> RecoveryDecision:
        """The decision for ``kind`` (pure lookup; nothing is counted)."""
        return self._table[kind]

    def _limiter(self, kind: ErrorKind) -> _Limits:
        lim = self._limits.get(kind)
        if lim is None:
            lim = _Limits(RateLimiter(*self._log_params), RateLimiter(*self._answer_params))
            self._limits[kind] = lim
        return lim

    def handle(self, kind: ErrorKind, now: float, n: int = 1) -> HandledError:
        """Count ``n`` occurrences of ``kind`` (a batch reported at once counts as one
        log line and at most one answer) and resolve its rate limits at ``now``."""
        decision = self._table[kind]
        count = self.counters.get(kind, 0) + max(1, n)
        self.counters[kind] = count
        if decision.rate_limited:
            lim = self._limiter(kind)
            log = lim.log.allow(now)
            answer = decision.answers_peer and lim.answer.allow(now)
        else:
            log = True
            answer = decision.answers_peer
        return HandledError(kind, decision, log=log, answer=answer, count=count)

    def suppressed(self, kind: ErrorKind) -> int:
        """Log lines of ``kind`` suppressed since the last call."""
        lim = self._limits.get(kind)
        return lim.log.take_suppressed() if lim else 0

    def status(self) -> dict[str, int]:
        """Error counters keyed by the kind's value (JSON-ready)."""
        return {k.value: v for k, v in sorted(self.counters.items(), key=lambda kv: kv[0].value)}

