"""Deleting the IKE SA (RFC 7296 §1.4.1): ``D(IKE)``, answered with an empty response,
after which both ends forget the IKE SA and all its children."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from ..constants import ExchangeType, PayloadType
from ..events import IkeSaDeleted
from ..message import Message
from ..payloads import DeletePayload
from ..state import IkeSaState
from .base import PayloadList, Task

if TYPE_CHECKING:
    from ..sa import IkeSa


def start(sa: IkeSa, now: float, *, reason: str = "deleted") -> None:
    """Delete the IKE SA (and so all its children): jumps the queue (§1.4.1)."""
    if sa.state in (IkeSaState.DELETING, IkeSaState.DELETED, IkeSaState.FAILED):
        return
    if sa.half_open:
        # half-open: nothing to tell, just forget it
        sa.fail(now, reason)
        return
    quiet = sa.state is IkeSaState.REKEYED
    sa.set_state(IkeSaState.DELETING)
    sa.queue.clear()
    sa.enqueue(IkeDelete(sa, reason, quiet=quiet), now, front=True)


class IkeDelete(Task):
    """Our DELETE of this IKE SA.  A ``quiet`` one closes an SA whose children moved to
    its successor (rekeyed, §2.8.2): nothing is removed from the data plane."""

    exchange: ClassVar[ExchangeType] = ExchangeType.INFORMATIONAL

    def __init__(self, sa: IkeSa, reason: str, *, quiet: bool) -> None:
        super().__init__(sa, "INFORMATIONAL delete IKE")
        self.reason = reason
        self.quiet = quiet

    def build_request(self, now: float) -> PayloadList | None:
        if self.sa.state is not IkeSaState.DELETING:
            return None
        return [(PayloadType.DELETE, DeletePayload.delete_ike_sa())]

    def process_response(self, msg: Message, now: float) -> None:
        self._done(now)

    def on_timeout(self, now: float) -> bool:
        self._done(now)  # no answer: gone all the same
        return True

    def migrate(self, new_sa: IkeSa) -> None:
        """Never moves: it deletes the SA it was made for."""

    def _done(self, now: float) -> None:
        sa = self.sa
        if self.quiet:
            sa.vanish(now, IkeSaDeleted(sa.ike_id, sa.conn.name, self.reason))
        else:
            sa.finish(now, self.reason)


__all__ = ["IkeDelete", "start"]
