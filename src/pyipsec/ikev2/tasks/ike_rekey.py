"""Rekeying the IKE SA with CREATE_CHILD_SA (RFC 7296 §1.3.2, §2.8.2, §2.18, §2.25.2).

Request: ``SA(IKE, new SPIi), Ni, KEi``; response: ``SA(IKE, new SPIr), Nr, KEr``.  The
new IKE SA's keys come from the old SK_d (§2.18); its message IDs start at 0; the
children move to it atomically (:meth:`IkeSa.migrate_to`); the initiator of the rekey
deletes the old IKE SA.  Simultaneous rekeys (§2.8.2) are settled by the lowest nonce:
the new SA created by the exchange holding it is redundant, and its initiator deletes
it (:meth:`IkeRekey.conclude_collision`, :meth:`IkeRekey.collision_lost`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from ...crypto.keys import IkeSuite, derive_rekeyed_ike_keys
from ...recovery import ErrorKind
from ..constants import ExchangeType, NotifyType, PayloadType, ProtocolId, name_of
from ..errors import InvalidKePayload, NoProposalChosen, ProtocolError
from ..events import IkeSaDeleted, IkeSaRekeyed
from ..message import Message
from ..payloads import KePayload, NoncePayload, Proposal, SaPayload
from ..state import IKE_ESTABLISHED, ChildSaState, IkeSaState
from ..timers import TimerKind
from . import ike_delete
from .base import NONCE_SIZE, PayloadList, Task
from .common import (
    build_proposals,
    check_chosen,
    choose_configured,
    ike_suite,
    proposal_groups,
    suite_string,
)

if TYPE_CHECKING:
    from ...crypto.ke import KeyExchange
    from ..sa import IkeSa

#: How long the responder of a rekey, or the loser of a collision, waits for the
#: winner to delete the old SA (§2.8.2)
REDUNDANT_TIMEOUT = 30.0
#: How long the winner of a collision keeps the loser's redundant new SA for the
#: loser to delete (§2.8.2).  The loser does so as soon as it reads our response, so
#: this only has to cover a lost response or Delete and its retransmission.
UNCLAIMED_TIMEOUT = 10.0
#: A rekey that must wait for a Child SA exchange tries again this much later (§2.25.1)
CHILD_BUSY_RETRY = 1.0
#: RFC 7296 §3.1: no IKE SPI is zero (the responder's is zero only in IKE_SA_INIT)
_ZERO_IKE_SPI = b"\x00" * 8


def start(sa: IkeSa, now: float) -> None:
    """Queue an IKE SA rekey (soft lifetime or on request)."""
    sa.enqueue(IkeRekey(sa), now)


@dataclass
class _Keys:
    """What both ends need to build the new IKE SA (§2.18)."""

    chosen: Proposal
    suite: IkeSuite
    spi_i: bytes
    spi_r: bytes
    ni: bytes
    nr: bytes
    shared: bytes


def _new_sa(sa: IkeSa, k: _Keys, *, initiator: bool, now: float) -> IkeSa:
    """The IKE SA that replaces ``sa`` (§2.18), established and adopted by the owner."""
    assert sa.keys is not None and sa.suite is not None
    new = sa.spawn_successor(initiator=initiator, now=now)
    new.spi_i, new.spi_r = k.spi_i, k.spi_r
    new.ni, new.nr = k.ni, k.nr
    keys = derive_rekeyed_ike_keys(
        k.suite, sa.keys.sk_d, k.shared, k.ni, k.nr, k.spi_i, k.spi_r, old_prf=sa.suite.prf_id
    )
    new.install_keys(k.suite, keys)
    new.suite_str = suite_string(k.chosen)
    new.local_id, new.remote_id = sa.local_id, sa.remote_id
    new.peer_cert, new.peer_auth = sa.peer_cert, sa.peer_auth  # authenticated once (§2.18)
    new.nat_local, new.nat_remote, new.nat_supported = sa.nat_local, sa.nat_remote, sa.nat_supported
    new.peer_window = sa.peer_window
    new.fragmentation = sa.fragmentation  # RFC 7383: as negotiated
    new.established_at = now
    new.dpd.on_authenticated_traffic(now)
    new.nat_established()
    soft, hard = new.child_lifetimes(sa.conn.lifetimes, now)
    new.timers.set(TimerKind.IKE_REKEY, soft)
    new.timers.set(TimerKind.IKE_EXPIRE, hard)
    sa.owner.adopt(new)  # assigns new.ike_id and registers its SPI
    return new


def _hand_over(sa: IkeSa, new: IkeSa) -> None:
    """The children move to ``new`` (§2.8.2), and the daemon learns its keys."""
    sa.migrate_to(new)
    sa.emit(IkeSaRekeyed(sa.ike_id, new.ike_id, sa.conn.name, new.key_material()))


class IkeRekey(Task):
    """Our rekey of the IKE SA, and its collision with the peer's (§2.8.2)."""

    exchange: ClassVar[ExchangeType] = ExchangeType.CREATE_CHILD_SA

    def __init__(self, sa: IkeSa, *, group: int | None = None, ke_retries: int = 0) -> None:
        super().__init__(sa, "rekey IKE SA")
        self.group = group
        self.ke_retries = ke_retries
        self.spi = b""  # our SPI of the new IKE SA
        self.proposals: list[Proposal] = []
        self.ni = b""
        self.ke: KeyExchange | None = None
        #: the new IKE SA we created answering the peer's rekey (§2.8.2)
        self.peer_new: IkeSa | None = None

    def migrate(self, new_sa: IkeSa) -> None:
        """A queued rekey of an SA that was rekeyed meanwhile is pointless: it stays
        with the old SA and is dropped there."""

    def collide(self, peer_new: IkeSa) -> None:
        """§2.8.2: the peer rekeyed this IKE SA too; we answered with ``peer_new``."""
        self.sa.log.info("simultaneous IKE SA rekey")
        self.peer_new = peer_new

    def build_request(self, now: float) -> PayloadList | None:
        sa = self.sa
        if sa.state is not IkeSaState.ESTABLISHED:
            return None
        if any(c.state is ChildSaState.REKEYING for c in sa.children.values()):
            # §2.25.1: do not overlap with a child rekey; try again shortly
            sa.schedule(IkeRekey(sa), now + CHILD_BUSY_RETRY)
            return None
        self.spi = sa.owner.new_ike_spi()
        self.proposals = build_proposals(sa.conn.ike_proposals, ProtocolId.IKE, self.spi)
        groups = proposal_groups(self.proposals)
        self.ke = ke = sa.ke_factory(self.group if self.group is not None else groups[0])
        self.ni = sa.rng(NONCE_SIZE)
        sa.set_state(IkeSaState.REKEYING)
        self.label = "CREATE_CHILD_SA rekey IKE"
        return [
            (PayloadType.SA, SaPayload(self.proposals)),
            (PayloadType.NONCE, NoncePayload(self.ni)),
            (PayloadType.KE, KePayload(ke.group, ke.public)),
        ]

    def process_response(self, msg: Message, now: float) -> None:
        sa = self.sa
        if sa.state is not IkeSaState.REKEYING:
            # the answer arrived after we started deleting this IKE SA: the peer has
            # built the new IKE SA and would keep it, on its side only
            self._delete_orphan(msg, now, "rekey overtaken by a delete")
            return
        errs = msg.error_notifies()
        if errs:
            self._refused(int(errs[0].type), errs[0].data, now)
            return
        try:
            keys = self._accept(msg)
        except ProtocolError as exc:
            # The peer thinks the rekey succeeded.  The old SA stays ours (ESTABLISHED,
            # the rekey is tried again later); the peer's new SA is deleted when we can
            # derive its keys, else it is left to the peer's own timers (DPD: we answer
            # it with INVALID_IKE_SPI; its lifetime).
            sa.log.warning("bad IKE rekey response: %s", exc)
            self._abort(now, ErrorKind.REKEY_FAILED)
            self._delete_orphan(msg, now, "unacceptable IKE rekey response")
            return
        self.conclude_collision(_new_sa(sa, keys, initiator=True, now=now), now)

    def _refused(self, etype: int, data: bytes, now: float) -> None:
        sa = self.sa
        if self.peer_new is not None:
            # the peer's rekey (which we answered) wins by default (§2.8.2)
            _hand_over(sa, self.peer_new)
            sa.timers.set(TimerKind.REDUNDANT, now + REDUNDANT_TIMEOUT)
            return
        if etype == NotifyType.INVALID_KE_PAYLOAD and self.ke_retries < 1:
            group = int.from_bytes(data[:2], "big") if len(data) >= 2 else 0
            if group in proposal_groups(self.proposals):
                sa.set_state(IkeSaState.ESTABLISHED)
                again = IkeRekey(sa, group=group, ke_retries=self.ke_retries + 1)
                sa.enqueue(again, now, front=True)
                return
        sa.log.warning("IKE rekey refused: %s", name_of(NotifyType, etype))
        if etype == NotifyType.TEMPORARY_FAILURE:
            self._abort(now, ErrorKind.TEMPORARY_FAILURE_RECEIVED)
        else:
            self._abort(now, ErrorKind.REKEY_FAILED)

    def _abort(self, now: float, kind: ErrorKind) -> None:
        """Back to ESTABLISHED; the next try is paced by the recovery table's retry
        policy for ``kind`` (until the hard lifetime ends the SA, §2.8)."""
        sa = self.sa
        if sa.state is IkeSaState.REKEYING:
            sa.set_state(IkeSaState.ESTABLISHED)
        policy = sa.errors.decide(kind).retry
        attempt = sa.rekey_failures
        sa.rekey_failures += 1
        if policy is not None and not policy.exhausted(attempt):
            sa.timers.set(TimerKind.IKE_REKEY, now + policy.delay(attempt, sa.rng))

    def _accept(self, msg: Message) -> _Keys:
        """The keys of a successful rekey response; ProtocolError when not acceptable."""
        assert self.ke is not None
        chosen = check_chosen(self.proposals, msg.get(PayloadType.SA))
        if len(chosen.spi) != 8:
            raise ProtocolError("responder IKE SPI must be 8 octets")
        if chosen.spi == _ZERO_IKE_SPI:
            # RFC 7296 §3.1: an IKE SPI is never zero; a bad response (abort, and the
            # peer's new IKE SA is deleted under its keys: _delete_orphan)
            raise ProtocolError("responder IKE SPI 0 (RFC 7296 §3.1)")
        suite = ike_suite(chosen)
        nonce = msg.get(PayloadType.NONCE)
        ke = msg.get(PayloadType.KE)
        if nonce is None or ke is None or ke.group != self.ke.group or suite.dh_group != ke.group:
            raise ProtocolError("IKE rekey response lacks Nonce/KE or uses another group")
        shared = self.ke.shared_secret(ke.data)
        return _Keys(chosen, suite, self.spi, chosen.spi, self.ni, nonce.nonce, shared)

    def conclude_collision(self, new: IkeSa, now: float) -> None:
        """Our rekey completed: the children move to ``new`` and the old SA is deleted --
        unless the peer rekeyed too and ``new`` holds the lowest nonce (§2.8.2)."""
        sa, peer_new = self.sa, self.peer_new
        if peer_new is not None and peer_new.state is IkeSaState.ESTABLISHED:
            if min(new.ni, new.nr, peer_new.ni, peer_new.nr) in (new.ni, new.nr):
                self.collision_lost(new, peer_new, now)
                return
            sa.log.info("IKE rekey collision won")
            # The loser deletes this redundant SA.  Until it does, the SA carries
            # nothing, is not rekeyed and is not listed as established; should the
            # loser never have completed it, we forget it later (on_unclaimed).
            peer_new.set_state(IkeSaState.REKEYED)
            peer_new.timers.set(TimerKind.UNCLAIMED, now + UNCLAIMED_TIMEOUT)
        sa.rekey_failures = 0
        _hand_over(sa, new)
        ike_delete.start(sa, now, reason="rekeyed")

    def collision_lost(self, new: IkeSa, peer_new: IkeSa, now: float) -> None:
        """§2.8.2: ours is redundant: we delete it; the peer's survives and its initiator
        deletes the old SA (we do it ourselves after REDUNDANT_TIMEOUT)."""
        sa = self.sa
        sa.log.info("IKE rekey collision lost")
        _hand_over(sa, peer_new)
        sa.timers.set(TimerKind.REDUNDANT, now + REDUNDANT_TIMEOUT)
        new.set_state(IkeSaState.REKEYED)  # no children, quietly deleted
        ike_delete.start(new, now, reason="redundant (rekey collision)")

    def peer_completed(self, now: float) -> bool:
        """The peer deleted this SA while our rekey was out: it finished its own rekey
        without noticing ours (§2.8.2), so its new SA (ours too) carries on."""
        sa, new = self.sa, self.peer_new
        if new is None or new.state is not IkeSaState.ESTABLISHED:
            return False
        _hand_over(sa, new)
        sa.vanish(now, IkeSaDeleted(sa.ike_id, sa.conn.name, "rekeyed"))
        return True

    def _orphan_keys(self, msg: Message) -> _Keys | None:
        """What the responder of our rekey used for its new IKE SA, as far as we can tell
        from a response we do not accept; None when the keys cannot be derived (no single
        IKE proposal with an 8-octet SPI and a suite we support, no Nonce, no KE in the
        group of our KEi, or a bad KE value)."""
        sa_p = msg.get(PayloadType.SA)
        nonce = msg.get(PayloadType.NONCE)
        ke = msg.get(PayloadType.KE)
        if self.ke is None or sa_p is None or len(sa_p.proposals) != 1:
            return None
        chosen = sa_p.proposals[0]
        if nonce is None or ke is None or len(chosen.spi) != 8 or ke.group != self.ke.group:
            return None
        try:
            suite = ike_suite(chosen)
            shared = self.ke.shared_secret(ke.data)
        except (ProtocolError, ValueError, KeyError):
            return None
        return _Keys(chosen, suite, self.spi, chosen.spi, self.ni, nonce.nonce, shared)

    def _delete_orphan(self, msg: Message, now: float, why: str) -> bool:
        """The peer answered our rekey without an error, so it has built the new IKE SA
        (and moved its children to it), but we will not use it.  When its keys can be
        derived, delete it with an INFORMATIONAL DELETE protected by those keys (§1.4.1,
        §2.18) so that it does not linger on the peer; True when that was started."""
        if msg.error_notifies():
            return False
        keys = self._orphan_keys(msg)
        if keys is None:
            return False
        sa = self.sa
        try:
            new = _new_sa(sa, keys, initiator=True, now=now)
        except (ProtocolError, ValueError, KeyError) as exc:  # e.g. a transform we lack
            sa.log.info("cannot derive the peer's new IKE SA: %s", exc)
            return False
        sa.log.info("%s, closing the peer's new IKE SA %d", why, new.ike_id)
        new.set_state(IkeSaState.REKEYED)  # no children here: quietly deleted
        ike_delete.start(new, now, reason=why)
        return True


def _busy(sa: IkeSa) -> bool:
    """§2.25.1: we are creating, rekeying or closing a Child SA."""
    if any(c.state in (ChildSaState.REKEYING, ChildSaState.DELETING) for c in sa.children.values()):
        return True
    return sa.state is not IkeSaState.REKEYING and any(
        r.exchange == ExchangeType.CREATE_CHILD_SA for r in sa.req_win.pending.values()
    )


def respond(sa: IkeSa, msg: Message, now: float) -> PayloadList:
    """Responder of an IKE SA rekey (§1.3.2)."""
    if sa.state not in IKE_ESTABLISHED:
        raise ProtocolError("IKE SA is being closed", NotifyType.TEMPORARY_FAILURE)
    if _busy(sa):
        raise ProtocolError("a Child SA exchange is in progress", NotifyType.TEMPORARY_FAILURE)
    sa_p = msg.get(PayloadType.SA)
    nonce = msg.get(PayloadType.NONCE)
    ke = msg.get(PayloadType.KE)
    if sa_p is None or nonce is None or ke is None:
        raise ProtocolError("IKE rekey request lacks SA, Nonce or KE")
    chosen = choose_configured(sa.conn.ike_proposals, ProtocolId.IKE, sa_p.proposals)
    if len(chosen.spi) != 8:
        raise ProtocolError("IKE SPI in the rekey proposal must be 8 octets")
    if chosen.spi == _ZERO_IKE_SPI:
        # RFC 7296 §3.1: an IKE SPI is never zero.  The request is well formed, only the
        # proposal is unusable: NO_PROPOSAL_CHOSEN refuses this rekey (the initiator
        # retries later), while INVALID_SYNTAX would end the IKE SA (§2.21.3)
        raise NoProposalChosen("IKE SPI 0 in the rekey proposal (RFC 7296 §3.1)")
    suite = ike_suite(chosen)
    if ke.group != suite.dh_group:
        raise InvalidKePayload(
            f"want group {suite.dh_group}", data=suite.dh_group.to_bytes(2, "big")
        )
    our_ke = sa.ke_factory(suite.dh_group)
    shared = our_ke.shared_secret(ke.data)
    keys = _Keys(
        chosen, suite, chosen.spi, sa.owner.new_ike_spi(), nonce.nonce, sa.rng(NONCE_SIZE), shared
    )
    new = _new_sa(sa, keys, initiator=False, now=now)
    ours = sa.find_task(IkeRekey) if sa.state is IkeSaState.REKEYING else None
    if ours is not None:
        ours.collide(new)  # settled when our own response arrives
    else:
        _hand_over(sa, new)
        # the initiator deletes the old SA; should that never come, we do it ourselves
        sa.timers.set(TimerKind.REDUNDANT, now + REDUNDANT_TIMEOUT)
    reply = Proposal(chosen.num, chosen.protocol, keys.spi_r, chosen.transforms)
    return [
        (PayloadType.SA, SaPayload([reply])),
        (PayloadType.NONCE, NoncePayload(keys.nr)),
        (PayloadType.KE, KePayload(our_ke.group, our_ke.public)),
    ]


__all__ = [
    "REDUNDANT_TIMEOUT",
    "UNCLAIMED_TIMEOUT",
    "IkeRekey",
    "respond",
    "start",
]
