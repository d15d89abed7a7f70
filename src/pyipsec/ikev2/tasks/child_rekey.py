"""Rekeying a Child SA with CREATE_CHILD_SA (RFC 7296 §1.3.3, §2.8, §2.8.1), both roles.

Request: ``N(REKEY_SA), [N(USE_TRANSPORT_MODE)], SA, Ni, [KEi], TSi, TSr`` (the selectors
of the SA being rekeyed, §2.9.2).  Once the new SA is up, its initiator deletes the old
one.  When both ends rekey the same Child SA at once (§2.8.1) each answers the other's
request; the pair created by the exchange whose nonces hold the lowest one is redundant
and is deleted by the end that created it (:meth:`ChildRekey.conclude_collision`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..child_sa import ChildSa
from ..constants import NotifyType, PayloadType, name_of
from ..errors import ProtocolError
from ..message import Message
from ..payloads import NotifyPayload
from ..state import ChildSaState, IkeSaState
from .base import NONCE_SIZE, PayloadList
from .child_create import (
    ChildExchange,
    child_failed,
    complete,
    negotiate,
    new_request,
    refuse_bad_response,
    request_payloads,
)
from .child_create import start as start_create
from .child_delete import ChildDelete

if TYPE_CHECKING:
    from ..sa import IkeSa

#: The retry of a rekey that waited for an IKE SA rekey to finish (§2.25.1)
RETRY_AFTER_IKE_REKEY = 5.0


def start(sa: IkeSa, child: ChildSa, now: float) -> None:
    """Queue a rekey of ``child`` (§1.3.3); the old SA is deleted once the new one is up."""
    if child.state is not ChildSaState.INSTALLED:
        return
    child.set_state(ChildSaState.REKEYING)
    sa.enqueue(ChildRekey(sa, child), now)


class ChildRekey(ChildExchange):
    """Our rekey of one Child SA, and its collision with the peer's (§2.8.1)."""

    def __init__(self, sa: IkeSa, child: ChildSa, *, attempt: int = 0) -> None:
        super().__init__(sa, f"rekey child {child.spi_in:08x}", attempt=attempt)
        self.child = child
        #: the SA we created answering the peer's rekey of the same child (§2.8.1)
        self.peer_new: ChildSa | None = None

    def again(self, *, attempt: int) -> ChildRekey:
        return ChildRekey(self.sa, self.child, attempt=attempt)

    def collide(self, peer_new: ChildSa) -> None:
        """§2.8.1: the peer rekeyed our child too; we answered with ``peer_new``."""
        self.sa.log.info("simultaneous rekey of child %08x", self.child.spi_in)
        self.peer_new = peer_new

    def build_request(self, now: float) -> PayloadList | None:
        sa, child = self.sa, self.child
        if child.spi_in not in sa.children or child.state is not ChildSaState.REKEYING:
            return None
        if self.peer_new is not None:
            # the peer rekeyed it meanwhile (we answered): nothing to do (§2.8.1)
            child.set_state(ChildSaState.REKEYED)
            return None
        if sa.state is not IkeSaState.ESTABLISHED:
            # retry once the IKE SA rekey is over
            child.set_state(ChildSaState.INSTALLED)
            child.soft_at = now + RETRY_AFTER_IKE_REKEY
            return None
        self.label = "CREATE_CHILD_SA rekey"
        self.req = new_request(sa, child.config, ike_auth=False, rekey_of=child, group=self.group)
        self.req.ke_retries = self.ke_retries
        return request_payloads(sa, self.req, ike_auth=False)

    def process_response(self, msg: Message, now: float) -> None:
        sa, req = self.sa, self.req
        assert req is not None
        errors = msg.error_notifies()
        try:
            if errors:
                self._refused(int(errors[0].type), errors[0].data, now)
            else:
                self.conclude_collision(complete(sa, req, msg, now, ike_auth=False), now)
        except ProtocolError as exc:
            child_failed(sa, req, str(exc), exc.notify)
            refuse_bad_response(sa, req, msg, now)

    def _refused(self, etype: int, data: bytes, now: float) -> None:
        sa, child = self.sa, self.child
        if self.retry_with_group(etype, data, now):
            return
        if etype == NotifyType.TEMPORARY_FAILURE:
            if self.peer_new is not None:
                # the peer won a race it did not notice; its new SA replaces ours (§2.8.1)
                if child.state is ChildSaState.REKEYING:
                    child.set_state(ChildSaState.REKEYED)
                return
            self.retry_later(now)
            return
        if etype == NotifyType.CHILD_SA_NOT_FOUND:
            if self.peer_new is not None or child.state is not ChildSaState.REKEYING:
                return  # §2.8.1: we already know about the simultaneous rekey
            # §2.25: the peer lost the SA; drop ours and start afresh
            sa.remove_child(child, "peer does not know the Child SA")
            start_create(sa, child.config, now)
            return
        raise ProtocolError(f"peer refused the Child SA: {name_of(NotifyType, etype)}", etype)

    def conclude_collision(self, new: ChildSa, now: float) -> None:
        """Our rekey completed: delete the old SA -- or, when the peer rekeyed it too and
        our new SA holds the lowest nonce, ours is redundant (:meth:`collision_lost`)."""
        sa, old, peer_new = self.sa, self.child, self.peer_new
        if peer_new is not None and peer_new.spi_in in sa.children:
            if min(new.nonces + peer_new.nonces) in new.nonces:
                self.collision_lost(new, now)
                return
            sa.log.info("rekey collision won, keeping %08x", new.spi_in)
        if old.spi_in not in sa.children:
            return  # the peer deleted it meanwhile
        if old.state is ChildSaState.REKEYING:
            old.set_state(ChildSaState.REKEYED)
        ChildDelete.start(sa, [old], now, reason="rekeyed")

    def collision_lost(self, new: ChildSa, now: float) -> None:
        """§2.8.1: we created the redundant SA, so we delete it; the peer, who created
        the surviving one, deletes the old SA."""
        sa, old = self.sa, self.child
        sa.log.info("rekey collision lost, deleting redundant %08x", new.spi_in)
        if old.state is ChildSaState.REKEYING:
            old.set_state(ChildSaState.REKEYED)
        ChildDelete.start(sa, [new], now, reason="redundant (rekey collision)")


def respond(sa: IkeSa, msg: Message, now: float, ni: bytes, rekey: NotifyPayload) -> PayloadList:
    """Responder of a Child SA rekey (§1.3.3): the new SA replaces the one REKEY_SA names
    (its inbound SPI is our outbound one); unknown: CHILD_SA_NOT_FOUND (§2.25)."""
    spi = int.from_bytes(rekey.spi, "big") if len(rekey.spi) == 4 else -1
    if spi == 0:
        # RFC 4303 §2.1: SPI 0 is reserved and never names a Child SA (we refuse it in
        # every proposal), so this is no unknown SA (CHILD_SA_NOT_FOUND, §2.25) but a
        # malformed notify in an authenticated request: INVALID_SYNTAX (§2.21.3)
        raise ProtocolError("REKEY_SA names the reserved SPI 0 (RFC 4303 §2.1)")
    rekey_of = sa.child_by_out(spi)
    if rekey_of is None:
        not_found = NotifyPayload(rekey.protocol, rekey.spi, NotifyType.CHILD_SA_NOT_FOUND)
        return [(PayloadType.NOTIFY, not_found)]
    if rekey_of.state in (ChildSaState.DELETING, ChildSaState.REKEYED, ChildSaState.DELETED):
        # §2.25.1: rekey of an SA we are closing
        raise ProtocolError("Child SA is being closed", NotifyType.TEMPORARY_FAILURE)
    out, new = negotiate(
        sa, msg, now, ike_auth=False, ni=ni, nr=sa.rng(NONCE_SIZE), rekey_of=rekey_of
    )
    ours = sa.find_task(ChildRekey, lambda t: t.child is rekey_of)
    if rekey_of.state is ChildSaState.REKEYING and ours is not None:
        ours.collide(new)  # settled by nonces when our own response arrives
    else:
        rekey_of.set_state(ChildSaState.REKEYED)
    return out


__all__ = ["ChildRekey", "respond", "start"]
