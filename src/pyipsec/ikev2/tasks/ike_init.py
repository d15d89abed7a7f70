"""IKE_SA_INIT (RFC 7296 §1.2, §2.6, §2.7, §2.23).

Initiator (:class:`IkeInit`): ``HDR, SAi1, KEi, Ni, N(NAT_DETECTION_*)`` (with
``N(COOKIE)`` first when retrying after a cookie, §2.6, and a new KE after
INVALID_KE_PAYLOAD, §1.2/§2.6.1).  Responder (:func:`respond`): ``HDR, SAr1, KEr, Nr,
N(NAT_DETECTION_*)``.  Both add ``N(IKEV2_FRAGMENTATION_SUPPORTED)`` for RFC 7383 (the
responder only in answer to the initiator's).  The stateless cookie logic of the
responder lives in the manager.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from ...auth.errors import AuthError
from ...auth.signatures import build_hash_algorithms, parse_hash_algorithms
from ...config.model import ChildConfig, ConnectionConfig
from ...crypto.keys import derive_ike_keys
from ...nat import PortFloating, format_endpoint
from ..constants import (
    NAT_T_PORT,
    ExchangeType,
    HeaderFlag,
    NotifyType,
    PayloadType,
    ProtocolId,
)
from ..errors import InvalidKePayload, NoProposalChosen, ProtocolError
from ..message import Message
from ..payloads import (
    KePayload,
    NoncePayload,
    NotifyPayload,
    Proposal,
    SaPayload,
)
from ..state import IkeSaState
from .base import NONCE_SIZE, PayloadList, Task
from .common import (
    build_proposals,
    certreq_payloads,
    check_chosen,
    check_nat,
    choose_configured,
    ike_suite,
    nat_notifies,
    proposal_groups,
    suite_string,
)
from .eap_auth import start_ike_auth
from .ike_auth import record_certreq

if TYPE_CHECKING:
    from ...crypto.ke import KeyExchange
    from ..events import Address
    from ..sa import IkeSa

MAX_COOKIE_RETRIES = 3
MAX_KE_RETRIES = 2
_ZERO_SPI = b"\x00" * 8


def start(sa: IkeSa, children: list[ChildConfig], now: float) -> None:
    """Send the first IKE_SA_INIT request (initiator).  Raises NoProposalChosen when the
    connection has no key exchange method."""
    sa.spi_i = sa.owner.new_ike_spi()
    sa.spi_r = _ZERO_SPI
    sa.pending_children = list(children)
    sa.enqueue(IkeInit(sa), now, front=True)


class IkeInit(Task):
    """The initiator's IKE_SA_INIT, kept across COOKIE and INVALID_KE_PAYLOAD retries."""

    exchange: ClassVar[ExchangeType] = ExchangeType.IKE_SA_INIT

    def __init__(self, sa: IkeSa) -> None:
        super().__init__(sa, "IKE_SA_INIT")
        self.message_id = 0  # also when retried (§2.2, §2.6)
        self.proposals: list[Proposal] = build_proposals(
            sa.conn.ike_proposals, ProtocolId.IKE, b""
        )
        groups = proposal_groups(self.proposals)
        if not groups:
            raise NoProposalChosen("no key exchange method configured")
        self.ke: KeyExchange = sa.ke_factory(groups[0])
        self.ni = sa.ni = sa.rng(NONCE_SIZE)
        self.cookie: bytes | None = None
        self.cookie_retries = 0
        self.ke_retries = 0
        self.tried_groups = [groups[0]]
        # an unauthenticated refusal seen (§2.21.1): (transmission it answered, reason, notify)
        self.refusal: tuple[int, str, int | None] | None = None

    def build_request(self, now: float) -> PayloadList:
        sa = self.sa
        payloads: PayloadList = []
        if self.cookie is not None:
            payloads.append(
                (PayloadType.NOTIFY, NotifyPayload(0, b"", NotifyType.COOKIE, self.cookie))
            )
        payloads += [
            (PayloadType.SA, SaPayload(self.proposals)),
            (PayloadType.KE, KePayload(self.ke.group, self.ke.public)),
            (PayloadType.NONCE, NoncePayload(self.ni)),
        ]
        if sa.conn.nat_traversal:
            for n in nat_notifies(
                sa.spi_i, sa.spi_r, sa.local, sa.remote, fake_source=sa.conn.encap, rng=sa.rng
            ):
                payloads.append((PayloadType.NOTIFY, n))
        if sa.conn.fragmentation:  # RFC 7383 §2.3
            fragmentation = NotifyPayload(0, b"", NotifyType.IKEV2_FRAGMENTATION_SUPPORTED)
            payloads.append((PayloadType.NOTIFY, fragmentation))
        if uses_pubkey(sa.conn):  # RFC 7427 §4 (a PSK-only connection sends as before)
            payloads.append((PayloadType.NOTIFY, _hash_algorithms_notify()))
        # a retry replaces the request in flight (same Message ID 0)
        sa.req_win.pending.clear()
        sa.req_win.next_id = 1
        return payloads

    def on_timeout(self, now: float) -> bool:
        """A refusal seen before the retransmissions ran out is the reason (§2.21.1)."""
        if self.refusal is None:
            return False
        _, reason, notify = self.refusal
        self.sa.fail(now, reason, notify)
        return True

    def _retry(self, now: float) -> None:
        """Send again at once, replacing the request in flight (§2.6, §1.2)."""
        self.sa.req_win.take(0)
        self.sa.enqueue(self, now, front=True)

    def process_init_response(
        self, data: bytes, msg: Message, local: Address, remote: Address, now: float
    ) -> None:
        try:
            self._process(data, msg, local, remote, now)
        except ProtocolError as exc:
            self._refused(f"IKE_SA_INIT: {exc}", exc.notify, now)

    def _refused(self, reason: str, notify: int | None, now: float) -> None:
        """An unusable IKE_SA_INIT response (an error notify, a bad proposal or KE).

        It is unauthenticated, so §2.21.1 says not to act on it at once: keep the
        request outstanding (a forged answer must not stop the setup) and fail only
        when the answer to a *retransmission* is refused as well, or when the
        retransmissions run out -- then with this refusal as the reason.
        """
        sa = self.sa
        req = sa.req_win.pending.get(0)
        if req is not None and (self.refusal is None or req.retransmits <= self.refusal[0]):
            if self.refusal is None:
                sa.log.info("%s; waiting for a confirmation (RFC 7296 §2.21.1)", reason)
            self.refusal = (req.retransmits, reason, notify)
            return
        sa.req_win.take(0)
        sa.fail(now, reason, notify)

    def _process(
        self, data: bytes, msg: Message, local: Address, remote: Address, now: float
    ) -> None:
        if self._cookie_requested(msg, now) or self._other_group(msg, now):
            return
        errors = msg.error_notifies()
        if errors:
            self._refused(f"IKE_SA_INIT refused: {errors[0].type!s}", int(errors[0].type), now)
            return
        sa = self.sa
        chosen = check_chosen(self.proposals, msg.get(PayloadType.SA))
        suite = ike_suite(chosen)
        ke = msg.get(PayloadType.KE)
        nonce = msg.get(PayloadType.NONCE)
        if ke is None or nonce is None:
            raise ProtocolError("IKE_SA_INIT response lacks KE or Nonce")
        if ke.group != suite.dh_group or ke.group != self.ke.group:
            raise NoProposalChosen(f"responder KE group {ke.group} does not match the chosen one")
        if msg.spi_r == _ZERO_SPI:
            raise ProtocolError("responder SPI is zero")
        shared = self.ke.shared_secret(ke.data)
        sa.req_win.take(0)
        sa.spi_r = msg.spi_r
        sa.nr = nonce.nonce
        sa.msg2 = data
        sa.install_keys(suite, derive_ike_keys(suite, sa.ni, sa.nr, shared, sa.spi_i, sa.spi_r))
        sa.suite_str = suite_string(chosen)
        _nat(sa, msg, local, remote)
        sa.fragmentation = sa.conn.fragmentation and _frag_supported(msg)
        sa.peer_childless = msg.notify(NotifyType.CHILDLESS_IKEV2_SUPPORTED) is not None
        _record_hash_algorithms(sa, msg)
        record_certreq(sa, msg)
        start_ike_auth(sa, now)

    def _cookie_requested(self, msg: Message, now: float) -> bool:
        """§2.6: retry with the cookie, same SPI, nonce and KE."""
        cookie = msg.notify(NotifyType.COOKIE)
        if cookie is None:
            return False
        if self.cookie_retries >= MAX_COOKIE_RETRIES or not 1 <= len(cookie.data) <= 64:
            raise ProtocolError("too many COOKIE requests", NotifyType.COOKIE)
        self.cookie_retries += 1
        self.cookie = cookie.data
        self.sa.log.info("responder asks for a cookie, retrying")
        self._retry(now)
        return True

    def _other_group(self, msg: Message, now: float) -> bool:
        """§1.2: INVALID_KE_PAYLOAD names the group the responder wants."""
        inv = msg.notify(NotifyType.INVALID_KE_PAYLOAD)
        if inv is None:
            return False
        group = int.from_bytes(inv.data[:2], "big") if len(inv.data) >= 2 else 0
        allowed = proposal_groups(self.proposals)
        if group not in allowed or group in self.tried_groups or self.ke_retries >= MAX_KE_RETRIES:
            raise InvalidKePayload(f"responder wants KE group {group}, which we cannot use")
        self.ke_retries += 1
        self.tried_groups.append(group)
        self.ke = self.sa.ke_factory(group)
        self.sa.log.info("INVALID_KE_PAYLOAD, retrying with group %d", group)
        self._retry(now)
        return True


def _nat(sa: IkeSa, msg: Message, local: Address, remote: Address) -> None:
    """§2.23: evaluate NAT-D and float to port 4500 when a NAT is in the path."""
    if not sa.conn.nat_traversal:
        return
    nat = check_nat(msg.notifies(), sa.spi_i, sa.spi_r, local, remote)
    supported = sa.nat_supported = nat.supported
    sa.nat_local = nat.local_behind_nat or (supported and sa.conn.encap)
    sa.nat_remote = nat.remote_behind_nat
    floating = PortFloating(sa.local[1], sa.remote[1], forced=sa.conn.encap)
    floating.update(nat)
    if floating.float_needed and sa.remote[1] != NAT_T_PORT:
        sa.log.info(
            "NAT detected (local=%s remote=%s), floating to port %d",
            sa.nat_local,
            sa.nat_remote,
            NAT_T_PORT,
        )
        sa.local = (sa.local[0], NAT_T_PORT)
        sa.remote = (sa.remote[0], NAT_T_PORT)


def respond(
    sa: IkeSa,
    data: bytes,
    msg: Message,
    local: Address,
    remote: Address,
    now: float,
    *,
    conns: Sequence[ConnectionConfig] = (),
) -> bool:
    """Responder: answer an IKE_SA_INIT request.  False = no state kept (error answered).
    ``conns``: the connections between these addresses when the caller has looked
    them up already (else they are looked up here)."""
    sa.spi_i = msg.spi_i
    sa.msg1 = data
    try:
        chosen, our_ke, shared, nonce = _negotiate(sa, msg, local, remote, conns)
    except ProtocolError as exc:
        sa.owner.network_log(
            now, logging.INFO, "IKE_SA_INIT from %s refused: %s", format_endpoint(remote), exc
        )
        if exc.notify != NotifyType.INVALID_SYNTAX:
            # §2.21: INVALID_SYNTAX only in a protected message of an authenticated IKE
            # SA; a malformed IKE_SA_INIT request (missing payloads, an invalid KE
            # value) is dropped -- unprotected, it is no one's business to hear why
            _stateless_error(sa, msg, exc.notify, exc.data, local, remote)
        return False
    suite = ike_suite(chosen)
    sa.spi_r = sa.owner.new_ike_spi()
    sa.ni = nonce
    sa.nr = sa.rng(NONCE_SIZE)
    sa.install_keys(suite, derive_ike_keys(suite, sa.ni, sa.nr, shared, sa.spi_i, sa.spi_r))
    sa.suite_str = suite_string(chosen)
    payloads: PayloadList = [
        (PayloadType.SA, SaPayload([chosen])),
        (PayloadType.KE, KePayload(our_ke.group, our_ke.public)),
        (PayloadType.NONCE, NoncePayload(sa.nr)),
    ]
    payloads += _responder_nat(sa, msg, local, remote)
    if sa.conn.fragmentation and _frag_supported(msg):
        # RFC 7383 §2.3: only in answer to the initiator's indication
        sa.fragmentation = True
        payloads.append(
            (PayloadType.NOTIFY, NotifyPayload(0, b"", NotifyType.IKEV2_FRAGMENTATION_SUPPORTED))
        )
    if _record_hash_algorithms(sa, msg):
        # RFC 7427 §4: answer the initiator's notify with ours
        payloads.append((PayloadType.NOTIFY, _hash_algorithms_notify()))
    if sa.conn.childless != "never":
        # RFC 6023 §3: a supporting responder announces it (the initiator may then leave
        # the first Child SA out of IKE_AUTH)
        payloads.append((PayloadType.NOTIFY, _CHILDLESS_SUPPORTED))
    payloads += certreq_payloads(sa.conn)
    out = sa.build(ExchangeType.IKE_SA_INIT, 0, payloads, response=True)
    sa.msg2 = out
    sa.resp_win.store(0, [out])
    sa.send_to(out, local, remote)
    sa.local, sa.remote = local, remote
    return True


def _negotiate(
    sa: IkeSa, msg: Message, local: Address, remote: Address, conns: Sequence[ConnectionConfig]
) -> tuple[Proposal, KeyExchange, bytes, bytes]:
    """(chosen proposal, our KE, shared secret, Ni) for the request (§2.7), choosing the
    first connection between these addresses that accepts a proposal."""
    sa_p = msg.get(PayloadType.SA)
    ke = msg.get(PayloadType.KE)
    nonce = msg.get(PayloadType.NONCE)
    if sa_p is None or ke is None or nonce is None:
        raise ProtocolError("IKE_SA_INIT request lacks SA, KE or Nonce")
    conns = conns or sa.owner.conns_for(local, remote) or [sa.conn]
    chosen: Proposal | None = None
    for conn in conns:
        try:
            chosen = choose_configured(conn.ike_proposals, ProtocolId.IKE, sa_p.proposals)
        except NoProposalChosen:
            continue
        sa.use_connection(conn)
        break
    if chosen is None:
        raise NoProposalChosen("no acceptable IKE proposal")
    suite = ike_suite(chosen)
    if ke.group != suite.dh_group:
        raise InvalidKePayload(
            f"KE group {ke.group}, want {suite.dh_group}",
            data=suite.dh_group.to_bytes(2, "big"),
        )
    our_ke = sa.owner.init_key_exchange(suite.dh_group)  # fresh unless §2.12 reuse is on
    return chosen, our_ke, our_ke.shared_secret(ke.data), nonce.nonce


def _responder_nat(sa: IkeSa, msg: Message, local: Address, remote: Address) -> PayloadList:
    """§2.23: evaluate the request's NAT-D (hashed with SPIr = 0) and answer with ours."""
    if not sa.conn.nat_traversal:
        return []
    nat = check_nat(msg.notifies(), sa.spi_i, _ZERO_SPI, local, remote)
    supported = sa.nat_supported = nat.supported
    sa.nat_local = nat.local_behind_nat or (supported and sa.conn.encap)
    sa.nat_remote = nat.remote_behind_nat
    if not supported:
        return []
    return [
        (PayloadType.NOTIFY, n)
        for n in nat_notifies(
            sa.spi_i, sa.spi_r, local, remote, fake_source=sa.conn.encap, rng=sa.rng
        )
    ]


#: N(CHILDLESS_IKEV2_SUPPORTED) (RFC 6023 §4), no SPI, no data.  Protocol ID 0: RFC
#: 7296 §3.10 (which replaced RFC 5996) wants zero without an SPI, as strongSwan sends
#: it (RFC 6023 asked for 1; it is ignored on receipt either way)
_CHILDLESS_SUPPORTED = NotifyPayload(0, b"", NotifyType.CHILDLESS_IKEV2_SUPPORTED)


def uses_pubkey(conn: ConnectionConfig) -> bool:
    """The connection authenticates one side (or both) with a public key."""
    return "pubkey" in (conn.local_auth, conn.remote_auth)


def _hash_algorithms_notify() -> NotifyPayload:
    """N(SIGNATURE_HASH_ALGORITHMS): SHA-256/384/512 and Identity (RFC 7427 §4, 8420)."""
    return NotifyPayload(0, b"", NotifyType.SIGNATURE_HASH_ALGORITHMS, build_hash_algorithms())


def _record_hash_algorithms(sa: IkeSa, msg: Message) -> bool:
    """Keep the peer's SIGNATURE_HASH_ALGORITHMS (RFC 7427 §4); True when it sent one."""
    n = msg.notify(NotifyType.SIGNATURE_HASH_ALGORITHMS)
    if n is None:
        return False
    try:
        sa.peer_hashes = tuple(int(h) for h in parse_hash_algorithms(n.data))
    except AuthError as exc:
        sa.log.info("ignoring SIGNATURE_HASH_ALGORITHMS: %s", exc)
        return False
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
        spi_r=_ZERO_SPI,
        exchange=ExchangeType.IKE_SA_INIT,
        flags=int(HeaderFlag.RESPONSE),
        message_id=0,
        payloads=[(PayloadType.NOTIFY, NotifyPayload(0, b"", ntype, data))],
    )
    sa.owner.count_message(ExchangeType.IKE_SA_INIT, False, False, sa.conn.name)  # sent
    sa.send_to(reply.serialise(), local, remote)


def answer_retransmission(
    sa: IkeSa, data: bytes, msg: Message, local: Address, remote: Address
) -> None:
    """The peer's IKE_SA_INIT request again: resend our cached answer (§2.1)."""
    if sa.initiator or sa.state is not IkeSaState.INIT_DONE or msg.message_id != 0:
        return
    cached = sa.resp_win.cached(0)
    if cached and data == sa.msg1:
        sa.log.debug("IKE_SA_INIT retransmission, resending response")
        for pkt in cached:
            sa.send_to(pkt, local, remote)


__all__ = ["IkeInit", "answer_retransmission", "respond", "start"]
