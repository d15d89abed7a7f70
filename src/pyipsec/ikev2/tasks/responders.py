"""Requests of the peer, dispatched by exchange type (RFC 7296 §1.2-§1.5).

:data:`RESPONDERS` maps each exchange to the function that answers it and the IKE SA
states in which it may arrive; :class:`~pyipsec.ikev2.sa.IkeSa` looks requests up here
instead of walking an if-chain.  IKE_SA_INIT requests for new SAs are the manager's
(cookies, §2.6); a retransmitted one for an existing SA is answered from the cache.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..constants import ExchangeType, NotifyType, PayloadType, ProtocolId
from ..errors import ProtocolError
from ..message import Message
from ..state import IKE_AUTHENTICATED, IkeSaState
from . import child_create, child_rekey, eap_auth, ike_auth, ike_rekey, informational
from .base import PayloadList

if TYPE_CHECKING:
    from ..sa import IkeSa


@dataclass(frozen=True, slots=True)
class Responder:
    """How to answer one exchange type: the function and where it is allowed."""

    respond: Callable[[IkeSa, Message, float], PayloadList]
    states: frozenset[IkeSaState]


def respond_create_child_sa(sa: IkeSa, msg: Message, now: float) -> PayloadList:
    """CREATE_CHILD_SA request: an IKE SA rekey (§1.3.2), a Child SA rekey (§1.3.3) or a
    new Child SA (§1.3.1)."""
    sa_p = msg.get(PayloadType.SA)
    if sa_p is not None and sa_p.proposals and sa_p.proposals[0].protocol == ProtocolId.IKE:
        return ike_rekey.respond(sa, msg, now)
    nonce = msg.get(PayloadType.NONCE)
    if sa_p is None or nonce is None:
        raise ProtocolError("CREATE_CHILD_SA request lacks SA or Nonce")
    if sa.state is not IkeSaState.ESTABLISHED:
        # §2.25.2: rekeying or closing the IKE SA
        raise ProtocolError("IKE SA is being rekeyed or closed", NotifyType.TEMPORARY_FAILURE)
    rekey = msg.notify(NotifyType.REKEY_SA)
    if rekey is not None:
        return child_rekey.respond(sa, msg, now, nonce.nonce, rekey)
    return child_create.respond_new(sa, msg, now, nonce.nonce)


def respond_ike_auth(sa: IkeSa, msg: Message, now: float) -> PayloadList:
    """IKE_AUTH request: the first one with AUTH (§2.15), the first one without AUTH
    (EAP, §2.16), or a later one of the EAP rounds."""
    if sa.state is IkeSaState.EAP:
        return eap_auth.respond(sa, msg, now)
    idi = msg.get(PayloadType.IDi)
    if msg.get(PayloadType.AUTH) is None and idi is not None:
        return eap_auth.start(sa, msg, idi, now)  # state INIT_DONE (RESPONDERS)
    return ike_auth.respond(sa, msg, now)


def respond_informational(sa: IkeSa, msg: Message, now: float) -> PayloadList:
    """INFORMATIONAL request (§1.4); during the EAP rounds only an initiator giving up
    matters (§2.21.2)."""
    if sa.state is IkeSaState.EAP:
        return eap_auth.respond_informational(sa, msg, now)
    return informational.respond(sa, msg, now)


RESPONDERS: dict[int, Responder] = {
    ExchangeType.IKE_AUTH: Responder(
        respond_ike_auth, frozenset({IkeSaState.INIT_DONE, IkeSaState.EAP})
    ),
    ExchangeType.CREATE_CHILD_SA: Responder(respond_create_child_sa, IKE_AUTHENTICATED),
    ExchangeType.INFORMATIONAL: Responder(
        respond_informational, IKE_AUTHENTICATED | {IkeSaState.EAP}
    ),
}

__all__ = [
    "RESPONDERS",
    "Responder",
    "respond_create_child_sa",
    "respond_ike_auth",
    "respond_informational",
]
