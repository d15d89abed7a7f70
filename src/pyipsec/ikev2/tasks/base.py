"""What every exchange task shares (strongSwan's ``task_t``, written the Python way).

A :class:`Task` is one sub-exchange *we* initiate, with its own state: it waits in
its IKE SA's queue until the window (RFC 7296 §2.3) lets it send, builds its request
(:meth:`Task.build_request`), processes the response (:meth:`Task.process_response`)
and decides what a lost exchange means (:meth:`Task.on_timeout`).  When the IKE SA is
rekeyed while the task waits, it moves to the new IKE SA (:meth:`Task.migrate`,
§2.8.2: queued work continues on the SA that carries the children now).

Requests of the *peer* are answered by the responder functions of each task module,
found through the dispatch table of :mod:`pyipsec.ikev2.tasks.responders`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from ..constants import ExchangeType

if TYPE_CHECKING:
    from ...crypto.ke import KeyExchange
    from ..message import Message
    from ..sa import IkeSa

Rng = Callable[[int], bytes]
KeFactory = Callable[[int], "KeyExchange"]
#: Payloads of a message to build: (payload type, payload object)
PayloadList = list[tuple[int, Any]]

NONCE_SIZE = 32


def rand_fraction(rng: Rng) -> float:
    """A uniform float in [0, 1) from the injected rng."""
    return int.from_bytes(rng(4), "big") / 2**32


class AnswerLater(Exception):
    """Raised by a responder function that holds its request unanswered for now (an
    EAP round waiting for the AAA backend, RFC 3579): the request stays unprocessed in
    the responder window, and the answer is sent later with ``IkeSa.answer``."""


class Task:
    """One exchange we initiate on ``sa``."""

    exchange: ClassVar[ExchangeType] = ExchangeType.INFORMATIONAL
    #: a Message ID this task must use (IKE_SA_INIT: 0, §2.2); None = the next one
    message_id: int | None = None

    def __init__(self, sa: IkeSa, label: str) -> None:
        self.sa = sa
        self.label = label
        self.not_before = 0.0  # a delayed task waits until then (IkeSa.schedule)

    def build_request(self, now: float) -> PayloadList | None:
        """The request's payloads, or None when the task has become pointless and is
        dropped without sending anything."""
        raise NotImplementedError

    def process_response(self, msg: Message, now: float) -> None:
        """The decrypted response to our request."""

    def on_timeout(self, now: float) -> bool:
        """Retransmissions are exhausted (§2.1).  True when the task handled it; False
        leaves it to the IKE SA (setup failure, or a dead peer, §2.4)."""
        return False

    def migrate(self, new_sa: IkeSa) -> None:
        """The IKE SA was rekeyed while this task waited: continue on ``new_sa``."""
        self.sa = new_sa

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.label}>"


__all__ = ["NONCE_SIZE", "AnswerLater", "KeFactory", "PayloadList", "Rng", "Task", "rand_fraction"]
