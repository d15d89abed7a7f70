"""INFORMATIONAL exchanges besides deletes and liveness (RFC 7296 §1.4, §2.21.4, §3.10.1):
our error reports (:class:`InformationalNotify`) and the responder of every INFORMATIONAL
request (:func:`respond`: Delete payloads, notifies, empty liveness checks)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from ...config.model import StartAction
from ...recovery import kind_for_received_notify
from ..constants import ExchangeType, NotifyType, PayloadType, ProtocolId, name_of
from ..errors import ProtocolError
from ..events import IkeSaDeleted, NotifyReceived
from ..message import Message
from ..payloads import DeletePayload, NotifyPayload
from ..state import ChildSaState, IkeSaState
from . import child_create, ike_rekey
from .base import PayloadList, Task

if TYPE_CHECKING:
    from ..sa import IkeSa


class InformationalNotify(Task):
    """An INFORMATIONAL request carrying one error notify, e.g. INVALID_SPI for ESP on an
    unknown SPI (§2.21.4, §3.10.1: outside a request, report it in an INFORMATIONAL
    exchange of the IKE SA with that peer).  The answer changes nothing."""

    exchange: ClassVar[ExchangeType] = ExchangeType.INFORMATIONAL

    def __init__(self, sa: IkeSa, ntype: int, data: bytes) -> None:
        super().__init__(sa, f"INFORMATIONAL {name_of(NotifyType, ntype)}")
        self.ntype = ntype
        self.data = data

    @classmethod
    def start(cls, sa: IkeSa, ntype: int, data: bytes, now: float) -> bool:
        """Queue the report; at most one per notify type is queued or in flight per IKE
        SA (never amplify): False if dropped."""
        if sa.find_task(cls, lambda t: t.ntype == ntype) is not None:
            return False
        sa.enqueue(cls(sa, ntype, data), now)
        return True

    def build_request(self, now: float) -> PayloadList | None:
        if not self.sa.established:
            return None
        return [(PayloadType.NOTIFY, NotifyPayload(0, b"", self.ntype, self.data))]


def _check_deletes(deletes: list[DeletePayload]) -> None:
    """§3.11: SPI size 0 for the IKE SA, 4 for ESP/AH; anything else is malformed (an
    8-octet SPI with leading zeros must not match one of our 4-octet SPIs)."""
    for d in deletes:
        want = 0 if d.protocol == ProtocolId.IKE else 4
        if d.protocol in (ProtocolId.IKE, ProtocolId.ESP, ProtocolId.AH) and d.spi_size != want:
            raise ProtocolError(f"Delete of protocol {d.protocol} with SPI size {d.spi_size}")


def _notifies(sa: IkeSa, msg: Message, now: float) -> None:
    for n in msg.notifies():
        if n.type in (NotifyType.INITIAL_CONTACT, NotifyType.SET_WINDOW_SIZE):
            continue
        sa.emit(NotifyReceived(sa.ike_id, int(n.type), n.data, n.is_error))
        kind = kind_for_received_notify(int(n.type), in_response=False) if n.is_error else None
        if kind is not None:
            # §3.10.1: errors in a request (e.g. INVALID_SPI, §2.21.4) never change state:
            # the recovery table's row is IGNORE (counted, rate-limited log)
            sa.on_error(kind, now, f"{name_of(NotifyType, int(n.type))} in an INFORMATIONAL")
        else:
            sa.log.info("peer notifies %s", name_of(NotifyType, int(n.type)))


def respond(sa: IkeSa, msg: Message, now: float) -> PayloadList:
    """Responder of an INFORMATIONAL request (§1.4)."""
    deletes = msg.get_all(PayloadType.DELETE)
    _check_deletes(deletes)
    _notifies(sa, msg, now)
    if any(d.protocol == ProtocolId.IKE for d in deletes):
        _peer_deletes_ike(sa, now)
        return []
    ours: list[int] = []
    for d in deletes:
        if d.protocol != ProtocolId.ESP:
            continue  # our Child SAs are ESP: an AH SPI (or another protocol) is not ours
        for spi in d.spi_values():
            ours += _peer_deletes_child(sa, spi, now)
    if not ours:
        return []
    return [(PayloadType.DELETE, DeletePayload.delete_child_sa(ours, protocol=ProtocolId.ESP))]


def _peer_deletes_child(sa: IkeSa, spi: int, now: float) -> list[int]:
    """The peer deletes the Child SA whose inbound SPI is ``spi``: our inbound SPI of the
    pair for the answer (none for unknown SPIs or simultaneous deletes, §1.4.1)."""
    c = sa.child_by_out(spi)
    if c is None:
        return []  # §1.4.1: unknown SPIs are ignored
    answer = [c.spi_in] if c.state is not ChildSaState.DELETING else []
    closed = c.state in (ChildSaState.INSTALLED, ChildSaState.REKEYING)
    sa.remove_child(c, "deleted by peer")
    if closed and c.config.close_action is StartAction.START and sa.initiator:
        # swanctl close_action=start: bring it up again (not for a rekeyed SA)
        child_create.start(sa, c.config, now)
    return answer


def _peer_deletes_ike(sa: IkeSa, now: float) -> None:
    """§1.4.1, §2.25.2: the peer closes this IKE SA."""
    ours = sa.find_task(ike_rekey.IkeRekey)
    if sa.state is IkeSaState.REKEYING and ours is not None and ours.peer_completed(now):
        return
    if sa.state is IkeSaState.REKEYED or (sa.replaced_by is not None and not sa.children):
        sa.vanish(now, IkeSaDeleted(sa.ike_id, sa.conn.name, "rekeyed"))
        return
    sa.finish(now, "deleted by peer")


__all__ = ["InformationalNotify", "respond"]
