"""Liveness checks (RFC 7296 §2.4): an empty INFORMATIONAL request, always answered.

No answer after the retransmissions (or within ``dpd_timeout``) means the peer is dead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from ..constants import ExchangeType
from ..events import LivenessAnswered
from ..message import Message
from ..state import IkeSaState
from .base import PayloadList, Task

if TYPE_CHECKING:
    from ..sa import IkeSa


def start(sa: IkeSa, now: float, *, report: bool = False) -> None:
    """Queue a liveness check unless one is under way.  ``report``: emit
    LivenessAnswered when the answer arrives (a check someone asked for)."""
    ours = sa.find_task(Liveness)
    if ours is not None:
        ours.report |= report
        return
    sa.enqueue(Liveness(sa, now, report=report), now)


class Liveness(Task):
    """One empty INFORMATIONAL request (§2.4)."""

    exchange: ClassVar[ExchangeType] = ExchangeType.INFORMATIONAL

    def __init__(self, sa: IkeSa, queued_at: float, *, report: bool) -> None:
        super().__init__(sa, "INFORMATIONAL liveness")
        self.queued_at = queued_at  # the round trip as the caller sees it
        self.report = report

    def build_request(self, now: float) -> PayloadList | None:
        sa = self.sa
        if not sa.established and sa.state is not IkeSaState.REKEYED:
            return None
        sa.dpd.on_check_sent(now)
        return []

    def process_response(self, msg: Message, now: float) -> None:
        sa = self.sa
        sa.dpd.on_check_answered(now)
        if self.report:
            sa.emit(LivenessAnswered(sa.ike_id, sa.conn.name, self.queued_at, now))


__all__ = ["Liveness", "start"]
