"""Message IDs, the request window and retransmission (RFC 7296 §2.1-§2.3).

Each IKE SA has two independent message-ID spaces: the requests *we* send
(:class:`RequestWindow`) and the requests the *peer* sends, whose responses we
cache so that a retransmitted request is answered from the cache without
being processed again (:class:`ResponderWindow`, §2.1).

The retransmission schedule itself (timeout * base^n, cap, jitter, give-up) is
:class:`pyipsec.recovery.RetryPolicy`, the one implementation shared with DPD.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .message import Message


class RequestOwner(Protocol):
    """The task that sent a request (:class:`pyipsec.ikev2.tasks.base.Task`)."""

    label: str

    def process_response(self, msg: Message, now: float) -> None: ...

    def on_timeout(self, now: float) -> bool: ...


class Arrival(enum.Enum):
    """What a request with a given Message ID is to the responder window (§2.2)."""

    NEW = "new"  # process it
    RETRANSMIT = "retransmit"  # answered before: resend the cached response
    OLD = "old"  # outside the window: drop


@dataclass(slots=True)
class PendingRequest:
    """One request of ours waiting for its response."""

    message_id: int
    exchange: int
    packets: list[bytes]  # the wire bytes (retransmitted verbatim, §2.1)
    task: RequestOwner
    first_sent: float
    deadline: float  # next retransmission, or give-up when tries are exhausted
    retransmits: int = 0

    @property
    def label(self) -> str:
        return self.task.label


class RequestWindow:
    """Our outgoing requests (§2.3): IDs count up from 0; at most ``size`` outstanding."""

    __slots__ = ("next_id", "pending", "size")

    def __init__(self, size: int = 1, first_id: int = 0) -> None:
        self.size = max(1, size)
        self.next_id = first_id
        self.pending: dict[int, PendingRequest] = {}

    def can_send(self) -> bool:
        if not self.pending:
            return True
        return self.next_id < min(self.pending) + self.size

    def allocate(self) -> int:
        mid = self.next_id
        self.next_id += 1
        return mid

    def add(self, req: PendingRequest) -> None:
        self.pending[req.message_id] = req

    def take(self, message_id: int) -> PendingRequest | None:
        """The pending request a response with ``message_id`` answers (removed), if any."""
        return self.pending.pop(message_id, None)

    def next_deadline(self) -> float | None:
        if not self.pending:
            return None
        return min(r.deadline for r in self.pending.values())


class ResponderWindow:
    """Requests from the peer (§2.2, §2.3): expected ID and cached responses."""

    __slots__ = ("cache", "expected", "processed", "size")

    def __init__(self, size: int = 1, first_id: int = 0) -> None:
        self.size = max(1, size)
        self.expected = first_id
        self.cache: dict[int, list[bytes]] = {}
        self.processed: set[int] = set()

    def classify(self, message_id: int) -> Arrival:
        """NEW (process it), RETRANSMIT (answer from cache) or OLD (drop)."""
        if message_id in self.processed:
            return Arrival.RETRANSMIT
        if self.expected <= message_id < self.expected + self.size:
            return Arrival.NEW
        return Arrival.OLD

    def store(self, message_id: int, packets: list[bytes]) -> None:
        """Remember the response to ``message_id`` and move the window."""
        self.processed.add(message_id)
        self.cache[message_id] = packets
        while self.expected in self.processed:
            self.expected += 1
        # keep only the last ``size`` responses (§2.3); the IDs below ``expected`` are
        # consecutive, so at most ``size`` entries are never too old to keep
        low = self.expected - self.size
        if len(self.cache) > self.size:
            for mid in [m for m in self.cache if m < low]:
                del self.cache[mid]
        if len(self.processed) > self.size:
            self.processed = {m for m in self.processed if m >= low}

    def cached(self, message_id: int) -> list[bytes] | None:
        return self.cache.get(message_id)
