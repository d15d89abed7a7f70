"""EAP in IKE_AUTH (RFC 7296 §2.16, §1.2; RFC 5998 EAP-only), both roles.

The initiator leaves AUTH out of its first IKE_AUTH request; the responder answers with
its IDr, [CERT+], AUTH (left out with EAP-only) and the first EAP Request, keeps the
first request (its SA, TSi, TSr, CP and notifies build the first Child SA at the end)
and runs one IKE_AUTH exchange per EAP round, each with the next Message ID (§2.2):

    HDR, SK {IDi, [CERTREQ,] [IDr,] SAi2, TSi, TSr, [N(EAP_ONLY_AUTHENTICATION)]}  -->
                                      <--  HDR, SK {IDr, [CERT,] [AUTH,] EAP}
    HDR, SK {EAP}  -->
                                      <--  HDR, SK {EAP (Success)}
    HDR, SK {AUTH}  -->
                                      <--  HDR, SK {AUTH, SAr2, TSi, TSr}

After EAP Success both AUTH payloads use the shared-key formula (§2.15) with the MSK
as the key, or SK_pi/SK_pr when the method derives none (§2.16; EAP-MD5); EAP-only
(RFC 5998 §3) requires a method with an MSK.

Responder (:func:`start`, :func:`respond`, :func:`backend_reply`): the state of the
conversation is :class:`EapServer`, the one ``IkeSa.eap`` field, in the ``EAP`` state.
A session that relays to an AAA backend (EAP-RADIUS) answers PENDING: the request is
held (:class:`~.base.AnswerLater`; its retransmissions are ignored), an
:class:`~pyipsec.ikev2.events.EapBackendRequest` goes to the daemon, and
:func:`backend_reply` answers it.  Anything wrong -- an EAP Failure, a Response the
method discards, a request without EAP or with the wrong AUTH -- ends it with
AUTHENTICATION_FAILED (§2.21.2) and frees the IKE SA; the half-open timeout frees a
client that stops half-way.

Initiator (:class:`EapIkeAuth`, then one :class:`EapRound` task per round, each
queued at the front and owning its request): the responder's AUTH is verified (unless
EAP-only), the EAP peer session answers each Request, the final AUTH follows EAP
Success, and the last response carries the responder's AUTH and the first child.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, ParamSpec

from ...config.model import ANY_IDENTITY, ConnectionConfig, is_any_identity, is_eap
from ...constants import EapCode, IdType
from ...eap.base import (
    BackendReply,
    EapError,
    EapPeerSession,
    EapServerSession,
    EapStep,
    Outcome,
)
from ...eap.factory import peer_session, server_session
from ...eap.packet import EapType
from ...eap.settings import EapMethod, EapPeerSettings, EapServerSettings
from ...recovery import ErrorKind
from ..constants import AuthMethod, ExchangeType, NotifyType, PayloadType, ProtocolId
from ..events import EapBackendRequest
from ..message import Message
from ..payloads import AuthPayload, EapPayload, IdPayload, NotifyPayload
from ..state import IkeSaState
from . import child_create
from .base import AnswerLater, PayloadList, Task
from .common import id_from_config, identity_str
from .ike_auth import (
    IkeAuth,
    auth_value,
    authentication_failed,
    complete_initiator,
    complete_responder,
    peer_refused,
    responder_auth,
    select_conn,
    shared_key_verifies,
    wall_time,
)

if TYPE_CHECKING:
    from ..sa import IkeSa

#: IKE_AUTH rounds one conversation may take (EAP-TLS with small fragments needs dozens;
#: RFC 7296 §2.16 asks for at least ten)
MAX_ROUNDS = 256
#: EAP Types an EAP-only initiator accepts (RFC 5998 §4: mutual, key-generating,
#: dictionary-attack resistant -- of ours, EAP-TLS), besides Identity and Notification
EAP_ONLY_TYPES = frozenset({EapType.IDENTITY, EapType.NOTIFICATION, EapType.TLS})
_WILDCARDS = ANY_IDENTITY - {""}  # set, but to anyone
_P = ParamSpec("_P")


def eap_identity(idp: IdPayload) -> bytes:
    """The EAP identity that stands for an IKE identity (swanctl: the IKE identity is
    the default EAP identity): the octets of an FQDN, user@FQDN or key ID, else the
    printable form (an address, a DN)."""
    if idp.id_type in (IdType.ID_FQDN, IdType.ID_RFC822_ADDR, IdType.ID_KEY_ID):
        return idp.data
    return identity_str(idp).encode()


def _success(identifier: int) -> bytes:
    """An EAP Success (RFC 3748 §4.2) when a session gave none."""
    return bytes([EapCode.SUCCESS, identifier, 0, 4])


# =============================================================================== responder


@dataclass(slots=True, eq=False)
class EapServer:
    """The responder's EAP conversation with one initiator (``IkeSa.eap``, §2.16).

    ``first`` is the first IKE_AUTH request: its SA, TSi, TSr, CP and notifies build
    the first Child SA when the final AUTH arrives.  ``msk`` is None while EAP runs,
    the MSK after Success (``b""``: the method has none).  ``held``: a request waiting
    for the AAA backend, answered with ``prefix`` + the next EAP payload."""

    conn: ConnectionConfig
    session: EapServerSession
    first: Message
    idi: IdPayload
    idr: IdPayload
    eap_only: bool
    identity: bytes = b""
    msk: bytes | None = field(default=None, repr=False)
    rounds: int = 0
    last_id: int = 0  # the Identifier of the last EAP Response
    held: Message | None = None
    prefix: PayloadList = field(default_factory=list)


def _server_settings(sa: IkeSa, conn: ConnectionConfig, now: float) -> EapServerSettings:
    return EapServerSettings(
        method=EapMethod.from_auth(conn.remote_auth),
        users=conn.eap_users,
        ask_identity=conn.remote_eap_id.strip() in _WILDCARDS or "*" in conn.remote_eap_id,
        tls_credentials=conn.local_credentials,
        tls_trust=conn.remote_trust,
        when=wall_time(sa, conn.remote_trust, now),
    )


def _configured_identity(conn: ConnectionConfig, idi: IdPayload) -> bytes:
    """The peer's EAP identity before EAP-Identity: ``remote.eap_id`` when it names
    one, else the IKE identity (swanctl); empty when it is to be asked for."""
    want = conn.remote_eap_id.strip()
    if want in _WILDCARDS or "*" in want:
        return b""
    return want.encode() if want else eap_identity(idi)


def start(sa: IkeSa, msg: Message, idi: IdPayload, now: float) -> PayloadList:
    """The first IKE_AUTH request without AUTH (§2.16), its IDi ``idi``, on an SA in
    INIT_DONE: select the connection by IDi, answer with IDr, [CERT+], AUTH (not with
    EAP-only) and the first EAP Request."""
    if msg.get(PayloadType.EAP) is not None:
        return _refuse(sa, now, "EAP payload in the first IKE_AUTH request")
    conn = select_conn(sa, idi, msg.get(PayloadType.IDr), eap=True)
    if isinstance(conn, str):
        return _refuse(sa, now, conn)
    eap_only = is_eap(conn.local_auth)
    if eap_only:
        if msg.notify(NotifyType.EAP_ONLY_AUTHENTICATION) is None:
            return _refuse(sa, now, "EAP-only configured, the initiator does not support it")
        if conn.remote_auth not in ("eap-tls", "eap-radius"):
            why = f"EAP-only needs a mutual, key-generating method, not {conn.remote_auth}"
            return _refuse(sa, now, f"{why} (RFC 5998 §4)")
    try:
        session = server_session(
            _server_settings(sa, conn, now), sa.rng, _configured_identity(conn, idi)
        )
    except ValueError as exc:
        return _refuse(sa, now, f"cannot start {conn.remote_auth}: {exc}")
    sa.use_connection(conn)
    prefix = responder_auth(sa, conn, msg, now, sign=not eap_only)
    idr = id_from_config(conn.local_id, sa.local[0])  # as responder_auth sent it
    st = EapServer(
        conn, session, msg, idi, idr, eap_only, identity=_configured_identity(conn, idi)
    )
    sa.eap = st
    sa.set_state(IkeSaState.EAP)
    sa.log.info(
        "%s authenticates with %s%s",
        identity_str(idi),
        conn.remote_auth,
        " (EAP-only)" if eap_only else "",
    )
    return _step(sa, st, _run(st.session.start), msg, prefix, now)


def respond(sa: IkeSa, msg: Message, now: float) -> PayloadList:
    """A later IKE_AUTH request of the EAP state: the next EAP Response, or the final
    AUTH after EAP Success (§2.16)."""
    st = sa.eap
    if st is None:
        return _refuse(sa, now, "IKE_AUTH request without an EAP conversation")
    if st.held is not None:
        what = "retransmission" if msg.message_id == st.held.message_id else "request"
        sa.log.debug("%s #%d ignored: waiting for the AAA backend", what, msg.message_id)
        raise AnswerLater
    if st.msk is not None:
        return _final_auth(sa, st, msg, now)
    eap = msg.get(PayloadType.EAP)
    if eap is None:
        got = "AUTH before EAP Success" if msg.get(PayloadType.AUTH) else "no EAP payload"
        return _refuse(sa, now, f"IKE_AUTH request with {got}")
    if eap.code != EapCode.RESPONSE:
        return _refuse(sa, now, f"EAP code {eap.code} from the initiator, not a Response")
    st.rounds += 1
    if st.rounds > MAX_ROUNDS:
        return _refuse(sa, now, f"EAP did not finish in {MAX_ROUNDS} rounds")
    st.last_id = eap.identifier
    return _step(sa, st, _run(st.session.process, eap.data), msg, [], now)


def respond_informational(sa: IkeSa, msg: Message, now: float) -> PayloadList:
    """An INFORMATIONAL request during the EAP rounds (§2.21.2: an initiator may report
    its own authentication failure in a separate INFORMATIONAL exchange; strongSwan
    does when the method fails on its side): N(AUTHENTICATION_FAILED) or a Delete of
    the IKE SA ends the conversation; anything else is answered and ignored."""
    gave_up = msg.notify(NotifyType.AUTHENTICATION_FAILED) is not None or any(
        d.protocol == ProtocolId.IKE for d in msg.get_all(PayloadType.DELETE)
    )
    if gave_up:
        who = _who(sa.eap) if sa.eap is not None else "the initiator"
        authentication_failed(sa, now, f"{who} gave up the EAP authentication")
    return []


def backend_reply(sa: IkeSa, reply: BackendReply, now: float) -> None:
    """The AAA backend answered the held request (EAP-RADIUS, RFC 3579): go on and
    send the answer.  Ignored (debug log) when nothing is held any more."""
    st = sa.eap
    held = st.held if st is not None else None
    if st is None or held is None or sa.closed:
        sa.log.debug("backend reply (%s) ignored: nothing waits for it", reply.verdict.value)
        return
    st.held = None
    prefix, st.prefix = st.prefix, []
    try:
        payloads = _step(sa, st, _run(st.session.backend_reply, reply), held, prefix, now)
    except AnswerLater:
        return  # relayed once more (held again)
    sa.answer(held, payloads)


def _run(call: Callable[_P, EapStep], *args: _P.args, **kwargs: _P.kwargs) -> EapStep:
    """One step of a session; a method that cannot go on (a local problem, e.g. no
    credentials for what the peer asked for) ends the conversation as a failure."""
    try:
        return call(*args, **kwargs)
    except (EapError, ValueError) as exc:
        return EapStep(None, Outcome.FAILURE, reason=f"EAP method error: {exc}")


def _step(
    sa: IkeSa, st: EapServer, step: EapStep, msg: Message, prefix: PayloadList, now: float
) -> PayloadList:
    """What one step of the server session means for the IKE_AUTH answer to ``msg``."""
    if step.identity:
        st.identity = step.identity
    if step.outcome is Outcome.PENDING:
        st.held, st.prefix = msg, prefix
        sa.emit(
            EapBackendRequest(
                sa.ike_id, st.conn.name, st.identity, step.backend, sa.remote, sa.local
            )
        )
        raise AnswerLater
    if step.outcome is Outcome.FAILURE:
        reason = f"EAP authentication of {_who(st)} failed: {step.reason or 'EAP Failure'}"
        if step.packet is None:
            return _refuse(sa, now, reason)
        authentication_failed(sa, now, reason)
        return [*prefix, (PayloadType.EAP, EapPayload(step.packet))]
    if step.outcome is Outcome.SUCCESS:
        why = _success_problem(st, step)
        if why:
            return _refuse(sa, now, why)
        st.msk = step.msk
        msk = "with" if step.msk else "no"
        sa.log.info("EAP %s succeeded for %s (%s MSK)", st.conn.remote_auth, _who(st), msk)
        packet = step.packet if step.packet is not None else _success(st.last_id)
        return [*prefix, (PayloadType.EAP, EapPayload(packet))]
    if step.packet is None:
        reason = step.reason or "EAP Response discarded by the method"
        return _refuse(sa, now, f"EAP with {_who(st)}: {reason}")
    return [*prefix, (PayloadType.EAP, EapPayload(step.packet))]


def _success_problem(st: EapServer, step: EapStep) -> str:
    """Why an EAP Success cannot be accepted ("" when it can)."""
    if st.eap_only and not step.msk:
        return "EAP-only needs an MSK, the method derived none (RFC 5998 §3)"
    want = st.conn.remote_eap_id.strip()
    if "*" in want and want not in _WILDCARDS:
        got = st.identity.decode("utf-8", "replace")
        if not fnmatch.fnmatchcase(got, want):
            return f"EAP identity {got!r} does not match remote.eap_id {want!r}"
    return ""


def _final_auth(sa: IkeSa, st: EapServer, msg: Message, now: float) -> PayloadList:
    """The initiator's AUTH after EAP Success (§2.16): MSK-based; ours, then the IKE
    SA and the first child from the first request."""
    assert sa.keys is not None
    auth = msg.get(PayloadType.AUTH)
    if auth is None:
        return _refuse(sa, now, "no AUTH after EAP Success")
    key_i = st.msk or sa.keys.sk_pi
    if not shared_key_verifies(
        sa, key_i, auth, sa.msg1, sa.nr, sa.keys.sk_pi, st.idi, configured=False
    ):
        return _refuse(sa, now, f"AUTH of {_who(st)} after EAP does not verify")
    key_r = st.msk or sa.keys.sk_pr
    ours = auth_value(sa, key_r, sa.msg2, sa.ni, sa.keys.sk_pr, st.idr, configured=False)
    # §2.16: policy (here INITIAL_CONTACT, status) follows the authenticated identity
    ike_id = identity_str(st.idi)
    sa.remote_id = _who(st)
    same = sa.remote_id == ike_id
    sa.peer_auth = st.conn.remote_auth + ("" if same else f" (IKE identity {ike_id})")
    sa.eap = None
    out: PayloadList = [(PayloadType.AUTH, AuthPayload(AuthMethod.PSK, ours))]
    return out + complete_responder(sa, st.first, now)


def _who(st: EapServer) -> str:
    return (st.identity or eap_identity(st.idi)).decode("utf-8", "replace")


def _refuse(sa: IkeSa, now: float, reason: str) -> PayloadList:
    """§2.21.2: answer AUTHENTICATION_FAILED, forget the SA."""
    authentication_failed(sa, now, reason)
    return [(PayloadType.NOTIFY, NotifyPayload(0, b"", NotifyType.AUTHENTICATION_FAILED))]


# =============================================================================== initiator


def _peer_settings(
    sa: IkeSa, conn: ConnectionConfig, idi: IdPayload, now: float
) -> EapPeerSettings:
    method = EapMethod.from_auth(conn.local_auth)
    remote = conn.remote_id.strip()
    concrete = not is_any_identity(remote) and not any(c in remote for c in "*/")
    return EapPeerSettings(
        identity=conn.local_eap_id.encode() if conn.local_eap_id else eap_identity(idi),
        secret=conn.eap_secret,
        methods=() if method is None else (method,),
        tls_credentials=conn.local_credentials,
        tls_trust=conn.remote_trust,
        when=wall_time(sa, conn.remote_trust, now),
        tls_server_name=remote if concrete else "",
    )


@dataclass(slots=True, eq=False)
class EapClient:
    """What the initiator's EAP rounds share: the peer session, our IDi and the
    responder's IDr (both signed by the final AUTH payloads), the first child."""

    session: EapPeerSession
    idi: IdPayload
    idr: IdPayload
    child: child_create.ChildRequest | None
    eap_only: bool
    rounds: int = 0
    msk: bytes = field(default=b"", repr=False)  # after EAP Success (b"": none)


class EapIkeAuth(IkeAuth):
    """The initiator's first IKE_AUTH without AUTH (§2.16); its response carries the
    responder's AUTH (not with EAP-only, RFC 5998) and the first EAP Request."""

    def process_response(self, msg: Message, now: float) -> None:
        sa, conn = self.sa, self.sa.conn
        eap_only = is_eap(conn.remote_auth)
        if not self.authenticated(msg, now, auth_required=not eap_only):
            return
        idr = msg.get(PayloadType.IDr)
        assert idr is not None and self.idi is not None
        try:
            session = peer_session(_peer_settings(sa, conn, self.idi, now), sa.rng)
        except ValueError as exc:
            sa.fail(now, f"cannot start {conn.local_auth}: {exc}")
            return
        client = EapClient(session, self.idi, idr, self.child, eap_only)
        _next_round(sa, client, msg, now)


class EapRound(Task):
    """One IKE_AUTH exchange of the EAP conversation (§2.16): our EAP Response, or the
    final AUTH after EAP Success."""

    exchange: ClassVar[ExchangeType] = ExchangeType.IKE_AUTH

    def __init__(self, sa: IkeSa, client: EapClient, payload: EapPayload | AuthPayload) -> None:
        final = isinstance(payload, AuthPayload)
        super().__init__(sa, "IKE_AUTH (final AUTH)" if final else "IKE_AUTH (EAP)")
        self.client = client
        self.payload = payload

    @property
    def final(self) -> bool:
        return isinstance(self.payload, AuthPayload)

    def build_request(self, now: float) -> PayloadList | None:
        ptype = PayloadType.AUTH if self.final else PayloadType.EAP
        return [(ptype, self.payload)]

    def process_response(self, msg: Message, now: float) -> None:
        if self.final:
            self._final(msg, now)
        else:
            _next_round(self.sa, self.client, msg, now)

    def _final(self, msg: Message, now: float) -> None:
        """The responder's MSK-based AUTH and the first child (§2.16)."""
        sa, client = self.sa, self.client
        assert sa.keys is not None and isinstance(self.payload, AuthPayload)
        auth = msg.get(PayloadType.AUTH)
        if auth is None:
            peer_refused(sa, msg, now, "no AUTH in the last IKE_AUTH response")
            return
        key = client.msk or sa.keys.sk_pr
        if not shared_key_verifies(
            sa, key, auth, sa.msg2, sa.ni, sa.keys.sk_pr, client.idr, configured=False
        ):
            why = "responder AUTH after EAP does not verify"
            sa.on_error(ErrorKind.AUTHENTICATION_FAILED, now, why)
            sa.fail(now, why, NotifyType.AUTHENTICATION_FAILED, send_delete=True)
            return
        if not sa.peer_auth:  # EAP-only: the MSK-based AUTH is all it proved
            sa.peer_auth = f"{sa.conn.remote_auth} (EAP-only)"
        complete_initiator(sa, client.child, msg, now)


def _next_round(sa: IkeSa, client: EapClient, msg: Message, now: float) -> None:
    """The EAP Request (or Success/Failure) of a response: answer it in a new round,
    or send the final AUTH after Success (§2.16); fail the SA otherwise."""
    eap = msg.get(PayloadType.EAP)
    if eap is None:
        peer_refused(sa, msg, now, "no EAP payload in the IKE_AUTH response")
        return
    if client.eap_only and eap.code == EapCode.REQUEST and eap.eap_type not in EAP_ONLY_TYPES:
        why = f"EAP type {eap.eap_type} is not allowed with EAP-only (RFC 5998 §4)"
        authentication_failed(sa, now, why)
        return
    client.rounds += 1
    if client.rounds > MAX_ROUNDS:
        authentication_failed(sa, now, f"EAP did not finish in {MAX_ROUNDS} rounds")
        return
    step = _run(client.session.process, eap.data)
    if step.outcome is Outcome.FAILURE:
        authentication_failed(sa, now, f"EAP authentication failed: {step.reason or 'EAP Failure'}")
        return
    if step.outcome is Outcome.SUCCESS:
        if client.eap_only and not step.msk:
            authentication_failed(sa, now, "EAP-only needs an MSK, the method derived none")
            return
        assert sa.keys is not None
        client.msk = step.msk
        key = step.msk or sa.keys.sk_pi
        ours = auth_value(sa, key, sa.msg1, sa.nr, sa.keys.sk_pi, client.idi, configured=False)
        sa.log.info("EAP succeeded (%s MSK)", "with" if step.msk else "no")
        sa.enqueue(EapRound(sa, client, AuthPayload(AuthMethod.PSK, ours)), now, front=True)
        return
    if step.outcome is not Outcome.CONTINUE or step.packet is None:
        why = step.reason or f"EAP request discarded ({step.outcome.value})"
        authentication_failed(sa, now, f"EAP: {why}")
        return
    sa.enqueue(EapRound(sa, client, EapPayload(step.packet)), now, front=True)


def start_ike_auth(sa: IkeSa, now: float) -> None:
    """IKE_AUTH after IKE_SA_INIT: with EAP when we authenticate through it (§2.16),
    else with our AUTH (§2.15)."""
    (EapIkeAuth if is_eap(sa.conn.local_auth) else IkeAuth).start(sa, now)


__all__ = [
    "MAX_ROUNDS",
    "EapClient",
    "EapIkeAuth",
    "EapRound",
    "EapServer",
    "backend_reply",
    "eap_identity",
    "respond",
    "respond_informational",
    "start",
    "start_ike_auth",
]
