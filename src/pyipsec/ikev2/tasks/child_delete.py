"""Deleting Child SAs with an INFORMATIONAL exchange (RFC 7296 §1.4, §1.4.1).

``D(ESP, our inbound SPIs)``; the answer carries the peer's inbound SPIs of the same
pairs.  The children are removed when the answer arrives.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from ..child_sa import ChildSa
from ..constants import ExchangeType, PayloadType
from ..message import Message
from ..payloads import DeletePayload
from ..state import ChildSaState
from .base import PayloadList, Task

if TYPE_CHECKING:
    from ..sa import IkeSa


class ChildDelete(Task):
    """Our DELETE of one or more Child SAs (§1.4.1)."""

    exchange: ClassVar[ExchangeType] = ExchangeType.INFORMATIONAL

    def __init__(self, sa: IkeSa, children: list[ChildSa], reason: str) -> None:
        super().__init__(sa, "delete children")
        self.children = children
        self.reason = reason
        self.live: list[ChildSa] = []

    @classmethod
    def start(
        cls, sa: IkeSa, children: Sequence[ChildSa], now: float, *, reason: str = "deleted"
    ) -> None:
        """Queue a DELETE for Child SAs; they are removed when the peer answers."""
        todo = [c for c in children if c.state not in (ChildSaState.DELETING, ChildSaState.DELETED)]
        if not todo:
            return
        for c in todo:
            c.set_state(ChildSaState.DELETING)
        sa.enqueue(cls(sa, todo, reason), now)

    def build_request(self, now: float) -> PayloadList | None:
        self.live = [c for c in self.children if c.spi_in in self.sa.children]
        if not self.live:
            return None
        self.label = "INFORMATIONAL delete child"
        spis = [c.spi_in for c in self.live]
        return [(PayloadType.DELETE, DeletePayload.delete_child_sa(spis))]

    def process_response(self, msg: Message, now: float) -> None:
        for c in self.live:
            self.sa.remove_child(c, self.reason)


class DeleteSpis(Task):
    """DELETE for inbound SPIs we allocated but never installed (a refused response,
    §2.21.3: the peer drops what it built)."""

    exchange: ClassVar[ExchangeType] = ExchangeType.INFORMATIONAL

    def __init__(self, sa: IkeSa, spis: Sequence[bytes]) -> None:
        super().__init__(sa, "INFORMATIONAL delete")
        self.spis = list(spis)

    def build_request(self, now: float) -> PayloadList:
        return [(PayloadType.DELETE, DeletePayload.delete_child_sa(self.spis))]


__all__ = ["ChildDelete", "DeleteSpis"]
