"""Rekeying the IKE SA with CREATE_CHILD_SA (RFC 7296 §1.3.2, §2.8.2, §2.18, §2.25.2).

Request: ``SA(IKE, new SPIi), Ni, KEi``; response: ``SA(IKE, new SPIr), Nr, KEr``.
The new IKE SA's keys come from the old SK_d (§2.18); its message IDs start at
0; the children move to it atomically; the initiator of the rekey deletes the
old IKE SA.  Simultaneous rekeys are settled by the lowest nonce (§2.8.2).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...crypto.keys import derive_rekeyed_ike_keys
from ..constants import ExchangeType, NotifyType, PayloadType, ProtocolId, name_of
from ..errors import InvalidKePayload, ProtocolError
from ..events import IkeSaRekeyed
from ..message import Message
from ..payloads import KePayload, NoncePayload, Proposal, SaPayload
from ..state import ChildSaState, IkeSaState
from .common import (
    build_proposals,
    check_chosen,
    choose_proposal,
    ike_suite,
    our_transforms,
    proposal_groups,
    suite_string,
)

if TYPE_CHECKING:
    from ...crypto.ke import KeyExchange
    from ...crypto.keys import IkeSuite
    from ..sa import IkeSa, PayloadList

log = logging.getLogger("pyipsec.ike")

NONCE_SIZE = 32
RETRY_AFTER_FAILURE = 30.0
#: How long the winner of a rekey collision waits for the loser to delete its SA (§2.8.2)
REDUNDANT_TIMEOUT = 30.0


@dataclass
class RekeyContext:
    spi: bytes  # our SPI of the new IKE SA
    proposals: list[Proposal]
    ni: bytes
    ke: KeyExchange
    ke_retries: int = 0


def start(sa: IkeSa, now: float) -> None:
    """Queue an IKE SA rekey (soft lifetime or on request)."""

    def go(t: float) -> bool:
        if sa.state is not IkeSaState.ESTABLISHED:
            return False
        if any(c.state in (ChildSaState.REKEYING,) for c in sa.children.values()):
            # §2.25.1: do not overlap with a child rekey; try again shortly
            sa.deferred.append((t + 1.0, lambda t2: start(sa, t2)))
            return False
        _send(sa, None, t)
        return True

    sa.enqueue(go, "rekey IKE SA", now)


def _send(sa: IkeSa, group: int | None, now: float, retries: int = 0) -> None:
    spi = sa.owner.new_ike_spi()
    proposals = build_proposals(sa.conn.ike_proposals, ProtocolId.IKE, spi)
    groups = proposal_groups(proposals)
    ke = sa.ke_factory(group if group is not None else groups[0])
    ctx = RekeyContext(spi, proposals, sa.rng(NONCE_SIZE), ke, retries)
    sa.rekey_ctx = ctx
    sa.set_state(IkeSaState.REKEYING)
    payloads: PayloadList = [
        (PayloadType.SA, SaPayload(proposals)),
        (PayloadType.NONCE, NoncePayload(ctx.ni)),
        (PayloadType.KE, KePayload(ke.group, ke.public)),
    ]
    sa.send_request(
        ExchangeType.CREATE_CHILD_SA,
        payloads,
        lambda msg, t: _handle_response(sa, ctx, msg, t),
        now,
        label="CREATE_CHILD_SA rekey IKE",
    )


def _new_sa(
    sa: IkeSa,
    *,
    initiator: bool,
    spi_i: bytes,
    spi_r: bytes,
    suite: IkeSuite,
    chosen: Proposal,
    ni: bytes,
    nr: bytes,
    shared: bytes,
    now: float,
) -> IkeSa:
    """The IKE SA that replaces ``sa`` (§2.18)."""
    from ..sa import IkeSa

    assert sa.keys is not None and sa.suite is not None
    new = IkeSa(
        sa.conn,
        ike_id=0,
        initiator=initiator,
        local=sa.local,
        remote=sa.remote,
        owner=sa.owner,
        rng=sa.rng,
        ke_factory=sa.ke_factory,
        now=now,
    )
    new.spi_i, new.spi_r = spi_i, spi_r
    new.ni, new.nr = ni, nr
    keys = derive_rekeyed_ike_keys(
        suite, sa.keys.sk_d, shared, ni, nr, spi_i, spi_r, old_prf=sa.suite.prf_id
    )
    new.install_keys(suite, keys)
    new.suite_str = suite_string(chosen)
    new.local_id, new.remote_id = sa.local_id, sa.remote_id
    new.nat_local, new.nat_remote, new.nat_supported = sa.nat_local, sa.nat_remote, sa.nat_supported
    new.peer_window = sa.peer_window
    new.fragmentation = sa.fragmentation  # RFC 7383: as negotiated
    new.state = IkeSaState.ESTABLISHED
    new.established_at = now
    new.dpd.on_authenticated_traffic(now)
    new.nat_established()
    soft, hard = new.child_lifetimes(sa.conn.lifetimes, now)
    new.rekey_at, new.expire_at = soft, hard
    sa.owner.adopt(new)  # assigns new.ike_id and registers its SPI
    return new


def move_children(old: IkeSa, new: IkeSa) -> None:
    """The children of ``old`` now belong to ``new`` (§2.8.2): atomically."""
    for spi, c in list(old.children.items()):
        new.children[spi] = c
    old.children.clear()
    old.replaced_by = new
    # exchanges queued or deferred on the old SA continue on the new one
    new.queue.extend(old.queue)
    old.queue.clear()
    new.deferred.extend(old.deferred)
    old.deferred = []
    new.pending_children += old.pending_children
    old.pending_children = []
    new.refresh_children()
    if old.state in (IkeSaState.ESTABLISHED, IkeSaState.REKEYING):
        old.set_state(IkeSaState.REKEYED)


def handle_request(sa: IkeSa, msg: Message, now: float) -> PayloadList:
    """Responder of an IKE SA rekey (§1.3.2)."""
    if sa.state not in (IkeSaState.ESTABLISHED, IkeSaState.REKEYING):
        raise ProtocolError("IKE SA is being closed", NotifyType.TEMPORARY_FAILURE)
    busy = any(
        c.state in (ChildSaState.REKEYING, ChildSaState.DELETING) for c in sa.children.values()
    )
    if busy or (
        any(r.exchange == ExchangeType.CREATE_CHILD_SA for r in sa.req_win.pending.values())
        and (sa.state is not IkeSaState.REKEYING)
    ):
        # §2.25.1: we are creating, rekeying or closing a Child SA
        raise ProtocolError("a Child SA exchange is in progress", NotifyType.TEMPORARY_FAILURE)
    sa_p = msg.get(PayloadType.SA)
    nonce = msg.get(PayloadType.NONCE)
    ke = msg.get(PayloadType.KE)
    if sa_p is None or nonce is None or ke is None:
        raise ProtocolError("IKE rekey request lacks SA, Nonce or KE")
    chosen = choose_proposal(
        our_transforms(sa.conn.ike_proposals, ProtocolId.IKE), sa_p.proposals, ProtocolId.IKE
    )
    if len(chosen.spi) != 8:
        raise ProtocolError("IKE SPI in the rekey proposal must be 8 octets")
    suite = ike_suite(chosen)
    if ke.group != suite.dh_group:
        raise InvalidKePayload(
            f"want group {suite.dh_group}", data=suite.dh_group.to_bytes(2, "big")
        )
    our_ke = sa.ke_factory(suite.dh_group)
    shared = our_ke.shared_secret(ke.data)
    spi_r = sa.owner.new_ike_spi()
    nr = sa.rng(NONCE_SIZE)
    new = _new_sa(
        sa,
        initiator=False,
        spi_i=chosen.spi,
        spi_r=spi_r,
        suite=suite,
        chosen=chosen,
        ni=nonce.nonce,
        nr=nr,
        shared=shared,
        now=now,
    )
    if sa.state is IkeSaState.REKEYING:
        # §2.8.2: simultaneous rekey; settled when our own response arrives
        log.info("IKE SA %d: simultaneous IKE SA rekey", sa.ike_id)
        sa.rekey_collision = new
    else:
        move_children(sa, new)
        sa.emit(IkeSaRekeyed(sa.ike_id, new.ike_id, sa.conn.name, new.key_material()))
        # the initiator deletes the old SA; should that never come, we do it ourselves
        sa.deferred.append((now + 30.0, lambda t: _late_delete(sa, t)))
    reply = Proposal(chosen.num, chosen.protocol, spi_r, chosen.transforms)
    return [
        (PayloadType.SA, SaPayload([reply])),
        (PayloadType.NONCE, NoncePayload(nr)),
        (PayloadType.KE, KePayload(our_ke.group, our_ke.public)),
    ]


def _drop_redundant(sa: IkeSa, now: float) -> None:
    from . import informational

    if sa.state is IkeSaState.ESTABLISHED and not sa.children:
        sa.set_state(IkeSaState.REKEYED)  # quiet: it never carried children
        informational.start_delete_ike(sa, now, reason="redundant (rekey collision)")


def _late_delete(sa: IkeSa, now: float) -> None:
    from . import informational

    if sa.state is IkeSaState.REKEYED:
        informational.start_delete_ike(sa, now, reason="rekeyed")


def _abort(sa: IkeSa, now: float, retry_in: float | None) -> None:
    sa.rekey_ctx = None
    if sa.state is IkeSaState.REKEYING:
        sa.set_state(IkeSaState.ESTABLISHED)
    if retry_in is not None:
        sa.rekey_at = now + retry_in


def _accept(ctx: RekeyContext, msg: Message) -> tuple[Proposal, IkeSuite, bytes, bytes]:
    """(chosen proposal, suite, Nr, shared secret) of a successful rekey response;
    raises ProtocolError when it is not acceptable."""
    chosen = check_chosen(ctx.proposals, msg.get(PayloadType.SA))
    if len(chosen.spi) != 8:
        raise ProtocolError("responder IKE SPI must be 8 octets")
    suite = ike_suite(chosen)
    nonce = msg.get(PayloadType.NONCE)
    ke = msg.get(PayloadType.KE)
    if nonce is None or ke is None or ke.group != ctx.ke.group or suite.dh_group != ke.group:
        raise ProtocolError("IKE rekey response lacks Nonce/KE or uses another group")
    return chosen, suite, nonce.nonce, ctx.ke.shared_secret(ke.data)


def _orphan_keys(ctx: RekeyContext, msg: Message) -> tuple[Proposal, IkeSuite, bytes, bytes] | None:
    """What the responder of our rekey used for its new IKE SA, as far as we can tell
    from its response, even one we do not accept: (its proposal, suite, Nr, shared
    secret), or None when the keys cannot be derived (no single IKE proposal with an
    8-octet SPI and a suite we support, no Nonce, no KE in the group of our KEi, or a
    bad KE value)."""
    sa_p = msg.get(PayloadType.SA)
    nonce = msg.get(PayloadType.NONCE)
    ke = msg.get(PayloadType.KE)
    if sa_p is None or len(sa_p.proposals) != 1 or nonce is None or ke is None:
        return None
    chosen = sa_p.proposals[0]
    if len(chosen.spi) != 8 or ke.group != ctx.ke.group:
        return None
    try:
        return chosen, ike_suite(chosen), nonce.nonce, ctx.ke.shared_secret(ke.data)
    except (ProtocolError, ValueError, KeyError):
        return None


def _delete_orphan(sa: IkeSa, ctx: RekeyContext, msg: Message, now: float, why: str) -> bool:
    """The peer answered our rekey without an error, so it has built the new IKE SA (and
    moved its children to it), but we will not use it.  When its keys can be derived,
    delete it with an INFORMATIONAL DELETE protected by those keys (RFC 7296 §1.4.1,
    §2.18) so that it does not linger on the peer; True when that was started."""
    from . import informational

    if msg.error_notifies():
        return False
    got = _orphan_keys(ctx, msg)
    if got is None:
        return False
    chosen, suite, nr, shared = got
    try:
        new = _new_sa(
            sa,
            initiator=True,
            spi_i=ctx.spi,
            spi_r=chosen.spi,
            suite=suite,
            chosen=chosen,
            ni=ctx.ni,
            nr=nr,
            shared=shared,
            now=now,
        )
    except (ProtocolError, ValueError, KeyError) as exc:  # e.g. a transform we lack
        log.info("IKE SA %d: cannot derive the peer's new IKE SA: %s", sa.ike_id, exc)
        return False
    log.info("IKE SA %d: %s, closing the peer's new IKE SA %d", sa.ike_id, why, new.ike_id)
    new.state = IkeSaState.REKEYED  # no children here: quietly deleted
    informational.start_delete_ike(new, now, reason=why)
    return True


def _overtaken(sa: IkeSa, ctx: RekeyContext, msg: Message, now: float) -> None:
    """The answer to our rekey arrived after we started deleting this IKE SA: the peer
    has built the new IKE SA (and moved the children to it), and would keep it after
    our Delete of the old one -- on its side only.  Delete that new SA as well."""
    _delete_orphan(sa, ctx, msg, now, "rekey overtaken by a delete")


def _handle_response(sa: IkeSa, ctx: RekeyContext, msg: Message, now: float) -> None:
    from . import informational

    if sa.state is not IkeSaState.REKEYING:
        _overtaken(sa, ctx, msg, now)
        return
    errs = msg.error_notifies()
    if errs:
        etype = int(errs[0].type)
        if sa.rekey_collision is not None:
            # the peer's rekey (which we answered) wins by default (§2.8.2)
            new = sa.rekey_collision
            move_children(sa, new)
            sa.emit(IkeSaRekeyed(sa.ike_id, new.ike_id, sa.conn.name, new.key_material()))
            sa.deferred.append((now + 30.0, lambda t: _late_delete(sa, t)))
            return
        if etype == NotifyType.INVALID_KE_PAYLOAD and ctx.ke_retries < 1:
            group = int.from_bytes(errs[0].data[:2], "big") if len(errs[0].data) >= 2 else 0
            if group in proposal_groups(ctx.proposals):
                sa.set_state(IkeSaState.ESTABLISHED)

                def resend(t: float) -> bool:
                    _send(sa, group, t, ctx.ke_retries + 1)
                    return True

                sa.enqueue(resend, "IKE rekey KE retry", now, front=True)
                return
        log.warning("IKE SA %d: IKE rekey refused: %s", sa.ike_id, name_of(NotifyType, etype))
        retry = (
            2.0 + 8.0 * (int.from_bytes(sa.rng(1), "big") / 255)
            if etype == NotifyType.TEMPORARY_FAILURE
            else RETRY_AFTER_FAILURE
        )
        _abort(sa, now, retry)
        return
    try:
        chosen, suite, nr, shared = _accept(ctx, msg)
    except ProtocolError as exc:
        # The peer thinks the rekey succeeded.  The old SA stays ours (ESTABLISHED, the
        # rekey is tried again later); the peer's new SA is deleted when we can derive
        # its keys, else it is left to the peer's own timers (DPD: we answer it with
        # INVALID_IKE_SPI; its lifetime).
        log.warning("IKE SA %d: bad IKE rekey response: %s", sa.ike_id, exc)
        _abort(sa, now, RETRY_AFTER_FAILURE)
        _delete_orphan(sa, ctx, msg, now, "unacceptable IKE rekey response")
        return
    new = _new_sa(
        sa,
        initiator=True,
        spi_i=ctx.spi,
        spi_r=chosen.spi,
        suite=suite,
        chosen=chosen,
        ni=ctx.ni,
        nr=nr,
        shared=shared,
        now=now,
    )
    sa.rekey_ctx = None
    peer_new = sa.rekey_collision
    if peer_new is not None and peer_new.state is IkeSaState.ESTABLISHED:
        lowest = min(new.ni, new.nr, peer_new.ni, peer_new.nr)
        if lowest in (new.ni, new.nr):
            # ours is redundant: we delete it; the peer's survives and deletes the old one
            log.info("IKE SA %d: IKE rekey collision lost", sa.ike_id)
            move_children(sa, peer_new)
            sa.emit(IkeSaRekeyed(sa.ike_id, peer_new.ike_id, sa.conn.name, peer_new.key_material()))
            sa.deferred.append((now + 30.0, lambda t: _late_delete(sa, t)))
            new.state = IkeSaState.REKEYED  # no children, quietly deleted
            informational.start_delete_ike(new, now, reason="redundant (rekey collision)")
            return
        log.info("IKE SA %d: IKE rekey collision won", sa.ike_id)
        # the loser deletes its redundant SA; should its response have been lost and our
        # delete of the old SA made it forget its attempt (§2.8.2), we clean up ourselves
        peer_new.deferred.append((now + REDUNDANT_TIMEOUT, lambda t: _drop_redundant(peer_new, t)))
    move_children(sa, new)
    sa.emit(IkeSaRekeyed(sa.ike_id, new.ike_id, sa.conn.name, new.key_material()))
    informational.start_delete_ike(sa, now, reason="rekeyed")
