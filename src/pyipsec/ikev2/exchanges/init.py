"""IKE_SA_INIT (RFC 7296 §1.2, §2.6, §2.7, §2.23).

Initiator: ``HDR, SAi1, KEi, Ni, N(NAT_DETECTION_*)`` (with ``N(COOKIE)`` first
when retrying after a cookie, §2.6, and a new KE after INVALID_KE_PAYLOAD,
§1.2/§2.6.1).  Responder: ``HDR, SAr1, KEr, Nr, N(NAT_DETECTION_*)``.  Both add
``N(IKEV2_FRAGMENTATION_SUPPORTED)`` for RFC 7383 (the responder only in answer
to the initiator's).  The
stateless cookie logic of the responder lives in the manager.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...config.model import ChildConfig
from ...crypto.keys import derive_ike_keys
from ...nat import format_endpoint
from ..constants import NAT_T_PORT, ExchangeType, HeaderFlag, NotifyType, PayloadType, ProtocolId
from ..errors import InvalidKePayload, NoProposalChosen, ProtocolError
from ..message import Message
from ..payloads import KePayload, NoncePayload, NotifyPayload, Proposal, SaPayload
from ..state import IkeSaState
from .common import (
    build_proposals,
    check_chosen,
    check_nat,
    choose_proposal,
    ike_suite,
    nat_notifies,
    our_transforms,
    proposal_groups,
    suite_string,
)

if TYPE_CHECKING:
    from ...crypto.ke import KeyExchange
    from ..events import Address
    from ..sa import IkeSa

log = logging.getLogger("pyipsec.ike")

NONCE_SIZE = 32
MAX_COOKIE_RETRIES = 3
MAX_KE_RETRIES = 2


@dataclass
class InitContext:
    """Initiator state kept across IKE_SA_INIT retries."""

    proposals: list[Proposal]
    ke: KeyExchange
    ni: bytes
    children: list[ChildConfig]
    cookie: bytes | None = None
    cookie_retries: int = 0
    ke_retries: int = 0
    tried_groups: list[int] = field(default_factory=list)
    # an unauthenticated refusal seen (§2.21.1): (transmission it answered, reason, notify)
    refusal: tuple[int, str, int | None] | None = None


def start(sa: IkeSa, children: list[ChildConfig], now: float) -> None:
    """Send the first IKE_SA_INIT request (initiator)."""
    conn = sa.conn
    sa.spi_i = sa.owner.new_ike_spi()
    sa.spi_r = b"\x00" * 8
    proposals = build_proposals(conn.ike_proposals, ProtocolId.IKE, b"")
    groups = proposal_groups(proposals)
    if not groups:
        raise NoProposalChosen("no key exchange method configured")
    ke = sa.ke_factory(groups[0])
    sa.ni = sa.rng(NONCE_SIZE)
    sa.init_ctx = InitContext(proposals, ke, sa.ni, list(children), tried_groups=[groups[0]])
    sa.pending_children = list(children)
    _send(sa, now)


def _send(sa: IkeSa, now: float) -> None:
    ctx: InitContext = sa.init_ctx
    payloads: list[tuple[int, object]] = []
    if ctx.cookie is not None:
        payloads.append((PayloadType.NOTIFY, NotifyPayload(0, b"", NotifyType.COOKIE, ctx.cookie)))
    payloads += [
        (PayloadType.SA, SaPayload(ctx.proposals)),
        (PayloadType.KE, KePayload(ctx.ke.group, ctx.ke.public)),
        (PayloadType.NONCE, NoncePayload(ctx.ni)),
    ]
    if sa.conn.nat_traversal:
        for n in nat_notifies(
            sa.spi_i, sa.spi_r, sa.local, sa.remote, fake_source=sa.conn.encap, rng=sa.rng
        ):
            payloads.append((PayloadType.NOTIFY, n))
    if sa.conn.fragmentation:
        # RFC 7383 §2.3
        payloads.append(
            (PayloadType.NOTIFY, NotifyPayload(0, b"", NotifyType.IKEV2_FRAGMENTATION_SUPPORTED))
        )
    # IKE_SA_INIT always uses Message ID 0, also when retried (§2.2, §2.6)
    sa.req_win.pending.clear()
    sa.req_win.next_id = 1
    sa.send_request(
        ExchangeType.IKE_SA_INIT,
        payloads,
        lambda msg, t: None,  # responses are routed through receive() below
        now,
        label="IKE_SA_INIT",
        message_id=0,
    )


def receive(
    sa: IkeSa, data: bytes, msg: Message, local: Address, remote: Address, now: float
) -> None:
    """An IKE_SA_INIT message for an existing SA."""
    if not msg.is_response:
        if not sa.initiator and sa.state is IkeSaState.INIT_DONE and msg.message_id == 0:
            cached = sa.resp_win.cached(0)
            if cached and data == sa.msg1:
                log.debug("IKE SA %d: IKE_SA_INIT retransmission, resending response", sa.ike_id)
                for pkt in cached:
                    sa.outbox.append((pkt, local, remote))
        return
    if not sa.initiator or sa.state is not IkeSaState.INIT_SENT or 0 not in sa.req_win.pending:
        log.debug("IKE SA %d: unexpected IKE_SA_INIT response dropped", sa.ike_id)
        return
    try:
        _handle_response(sa, data, msg, local, remote, now)
    except ProtocolError as exc:
        _refused(sa, f"IKE_SA_INIT: {exc}", exc.notify, now)


def _refused(sa: IkeSa, reason: str, notify: int | None, now: float) -> None:
    """An unusable IKE_SA_INIT response (an error notify, a bad proposal or KE).

    It is unauthenticated, so §2.21.1 says not to act on it at once: keep the
    request outstanding (a forged answer must not stop the setup) and fail only
    when the answer to a *retransmission* is refused as well, or when the
    retransmissions run out -- then with this refusal as the reason.
    """
    ctx: InitContext = sa.init_ctx
    req = sa.req_win.pending.get(0)
    if req is not None and (ctx.refusal is None or req.retransmits <= ctx.refusal[0]):
        if ctx.refusal is None:
            log.info(
                "IKE SA %d: %s; waiting for a confirmation (RFC 7296 §2.21.1)", sa.ike_id, reason
            )
        ctx.refusal = (req.retransmits, reason, notify)
        req.on_timeout = lambda: sa.fail(now, reason, notify)
        return
    sa.req_win.take(0)
    sa.fail(now, reason, notify)


def _handle_response(
    sa: IkeSa, data: bytes, msg: Message, local: Address, remote: Address, now: float
) -> None:
    ctx: InitContext = sa.init_ctx
    cookie = msg.notify(NotifyType.COOKIE)
    if cookie is not None:
        # §2.6: retry with the cookie, same SPI/nonce/KE
        if ctx.cookie_retries >= MAX_COOKIE_RETRIES or not 1 <= len(cookie.data) <= 64:
            raise ProtocolError("too many COOKIE requests", NotifyType.COOKIE)
        ctx.cookie_retries += 1
        ctx.cookie = cookie.data
        log.info("IKE SA %d: responder asks for a cookie, retrying", sa.ike_id)
        _send(sa, now)
        return
    inv = msg.notify(NotifyType.INVALID_KE_PAYLOAD)
    if inv is not None:
        group = int.from_bytes(inv.data[:2], "big") if len(inv.data) >= 2 else 0
        allowed = proposal_groups(ctx.proposals)
        if group not in allowed or group in ctx.tried_groups or ctx.ke_retries >= MAX_KE_RETRIES:
            raise InvalidKePayload(f"responder wants KE group {group}, which we cannot use")
        ctx.ke_retries += 1
        ctx.tried_groups.append(group)
        ctx.ke = sa.ke_factory(group)
        log.info("IKE SA %d: INVALID_KE_PAYLOAD, retrying with group %d", sa.ike_id, group)
        _send(sa, now)
        return
    errors = msg.error_notifies()
    if errors:
        _refused(sa, f"IKE_SA_INIT refused: {errors[0].type!s}", int(errors[0].type), now)
        return
    chosen = check_chosen(ctx.proposals, msg.get(PayloadType.SA))
    suite = ike_suite(chosen)
    ke = msg.get(PayloadType.KE)
    nonce = msg.get(PayloadType.NONCE)
    if ke is None or nonce is None:
        raise ProtocolError("IKE_SA_INIT response lacks KE or Nonce")
    if ke.group != suite.dh_group or ke.group != ctx.ke.group:
        raise NoProposalChosen(f"responder KE group {ke.group} does not match the chosen one")
    if msg.spi_r == b"\x00" * 8:
        raise ProtocolError("responder SPI is zero")
    shared = ctx.ke.shared_secret(ke.data)
    sa.req_win.take(0)
    sa.spi_r = msg.spi_r
    sa.nr = nonce.nonce
    sa.msg2 = data
    sa.install_keys(suite, derive_ike_keys(suite, sa.ni, sa.nr, shared, sa.spi_i, sa.spi_r))
    sa.suite_str = suite_string(chosen)
    _nat(sa, msg, local, remote)
    sa.fragmentation = sa.conn.fragmentation and _frag_supported(msg)
    from . import auth

    auth.start(sa, now)


def _nat(sa: IkeSa, msg: Message, local: Address, remote: Address) -> None:
    """§2.23: evaluate NAT-D and float to port 4500 when a NAT is in the path."""
    if not sa.conn.nat_traversal:
        return
    nat = check_nat(msg.notifies(), sa.spi_i, sa.spi_r, local, remote)
    supported = sa.nat_supported = nat.supported
    sa.nat_local = nat.local_behind_nat or (supported and sa.conn.encap)
    sa.nat_remote = nat.remote_behind_nat
    if supported and sa.encap and sa.remote[1] != NAT_T_PORT:
        log.info(
            "IKE SA %d: NAT detected (local=%s remote=%s), floating to port %d",
            sa.ike_id,
            sa.nat_local,
            sa.nat_remote,
            NAT_T_PORT,
        )
        sa.local = (sa.local[0], NAT_T_PORT)
        sa.remote = (sa.remote[0], NAT_T_PORT)


def respond(
    sa: IkeSa, data: bytes, msg: Message, local: Address, remote: Address, now: float
) -> bool:
    """Responder: answer an IKE_SA_INIT request.  False = no state kept (error answered)."""
    sa.spi_i = msg.spi_i
    sa.msg1 = data
    try:
        sa_p = msg.get(PayloadType.SA)
        ke = msg.get(PayloadType.KE)
        nonce = msg.get(PayloadType.NONCE)
        if sa_p is None or ke is None or nonce is None:
            raise ProtocolError("IKE_SA_INIT request lacks SA, KE or Nonce")
        conns = sa.owner.conns_for(local, remote) or [sa.conn]
        chosen: Proposal | None = None
        for conn in conns:
            try:
                chosen = choose_proposal(
                    our_transforms(conn.ike_proposals, ProtocolId.IKE),
                    sa_p.proposals,
                    ProtocolId.IKE,
                )
            except NoProposalChosen:
                continue
            sa.conn = conn
            break
        if chosen is None:
            raise NoProposalChosen("no acceptable IKE proposal")
        suite = ike_suite(chosen)
        if ke.group != suite.dh_group:
            raise InvalidKePayload(
                f"KE group {ke.group}, want {suite.dh_group}",
                data=suite.dh_group.to_bytes(2, "big"),
            )
        our_ke = sa.ke_factory(suite.dh_group)
        shared = our_ke.shared_secret(ke.data)
    except ProtocolError as exc:
        log.info("IKE_SA_INIT from %s refused: %s", format_endpoint(remote), exc)
        if exc.notify != NotifyType.INVALID_SYNTAX:
            # §2.21: INVALID_SYNTAX only in a protected message of an authenticated IKE
            # SA; a malformed IKE_SA_INIT request (missing payloads, an invalid KE
            # value) is dropped -- unprotected, it is no one's business to hear why
            _stateless_error(sa, msg, exc.notify, exc.data, local, remote)
        return False
    sa.spi_r = sa.owner.new_ike_spi()
    sa.ni = nonce.nonce
    sa.nr = sa.rng(NONCE_SIZE)
    sa.install_keys(suite, derive_ike_keys(suite, sa.ni, sa.nr, shared, sa.spi_i, sa.spi_r))
    sa.suite_str = suite_string(chosen)
    payloads: list[tuple[int, object]] = [
        (PayloadType.SA, SaPayload([chosen])),
        (PayloadType.KE, KePayload(our_ke.group, our_ke.public)),
        (PayloadType.NONCE, NoncePayload(sa.nr)),
    ]
    if sa.conn.nat_traversal:
        # the request's NAT-D hashes use SPIr = 0 (§2.23)
        nat = check_nat(msg.notifies(), sa.spi_i, b"\x00" * 8, local, remote)
        supported = sa.nat_supported = nat.supported
        sa.nat_local = nat.local_behind_nat or (supported and sa.conn.encap)
        sa.nat_remote = nat.remote_behind_nat
        if supported:
            for n in nat_notifies(
                sa.spi_i, sa.spi_r, local, remote, fake_source=sa.conn.encap, rng=sa.rng
            ):
                payloads.append((PayloadType.NOTIFY, n))
    if sa.conn.fragmentation and _frag_supported(msg):
        # RFC 7383 §2.3: only in answer to the initiator's indication
        sa.fragmentation = True
        payloads.append(
            (PayloadType.NOTIFY, NotifyPayload(0, b"", NotifyType.IKEV2_FRAGMENTATION_SUPPORTED))
        )
    out = sa.build(ExchangeType.IKE_SA_INIT, 0, payloads, response=True)
    sa.msg2 = out
    sa.resp_win.store(0, [out])
    sa.outbox.append((out, local, remote))
    sa.local, sa.remote = local, remote
    return True


def _frag_supported(msg: Message) -> bool:
    """The peer indicated IKE fragmentation support (RFC 7383 §2.3)."""
    return msg.notify(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED) is not None


def _stateless_error(
    sa: IkeSa, msg: Message, ntype: int, data: bytes, local: Address, remote: Address
) -> None:
    """An IKE_SA_INIT error response that keeps no state (§2.21.1)."""
    reply = Message(
        spi_i=msg.spi_i,
        spi_r=b"\x00" * 8,
        exchange=ExchangeType.IKE_SA_INIT,
        flags=int(HeaderFlag.RESPONSE),
        message_id=0,
        payloads=[(PayloadType.NOTIFY, NotifyPayload(0, b"", ntype, data))],
    )
    sa.outbox.append((reply.serialise(), local, remote))
