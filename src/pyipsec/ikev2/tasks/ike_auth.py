"""IKE_AUTH with PSK authentication and the first Child SA (RFC 7296 §1.2, §2.15).

Initiator (:class:`IkeAuth`): ``HDR, SK {IDi, [N(INITIAL_CONTACT)], [IDr], AUTH,
[N(USE_TRANSPORT_MODE)], SAi2, TSi, TSr}``.  Responder (:func:`respond`): ``HDR, SK {IDr,
AUTH, [N...], SAr2, TSi, TSr}`` or ``HDR, SK {N(AUTHENTICATION_FAILED)}``.  Errors of the
child do not fail the IKE SA (§2.21.2).
"""

from __future__ import annotations

import contextlib
import hmac
from typing import TYPE_CHECKING, ClassVar

from ...config.model import ConnectionConfig
from ...crypto.keys import psk_auth, signed_octets
from ...recovery import ErrorKind, kind_for_exception
from ..constants import AuthMethod, ExchangeType, NotifyType, PayloadType, name_of
from ..errors import AuthenticationFailed, ProtocolError
from ..events import ChildSaFailed, IkeSaEstablished
from ..message import Message
from ..payloads import AuthPayload, IdPayload, NotifyPayload
from ..state import IkeSaState
from ..timers import TimerKind
from . import child_create, ike_delete
from .base import PayloadList, Task
from .common import conn_matches_id, id_body, id_from_config, identity_str, parse_identity

if TYPE_CHECKING:
    from ..sa import IkeSa

_ANY = ("", "%any", "%any6", "*")


def _auth_value(
    sa: IkeSa, psk: bytes, message: bytes, nonce_peer: bytes, sk_p: bytes, idp: IdPayload
) -> bytes:
    """The PSK AUTH value (§2.15): prf(prf(Shared Secret, "Key Pad for IKEv2"), octets)."""
    assert sa.suite is not None
    prf = sa.suite.prf_id
    return psk_auth(prf, psk, signed_octets(message, nonce_peer, prf, sk_p, id_body(idp)))


def _window_notify(conn: ConnectionConfig) -> PayloadList:
    """N(SET_WINDOW_SIZE) when we accept more than one request at a time (§2.3)."""
    if conn.window_size <= 1:
        return []
    data = conn.window_size.to_bytes(4, "big")
    return [(PayloadType.NOTIFY, NotifyPayload(0, b"", NotifyType.SET_WINDOW_SIZE, data))]


def _peer_window(sa: IkeSa, msg: Message) -> None:
    n = msg.notify(NotifyType.SET_WINDOW_SIZE)
    if n is not None and len(n.data) >= 4:
        sa.peer_window = max(1, int.from_bytes(n.data[:4], "big"))


class IkeAuth(Task):
    """The initiator's IKE_AUTH, right after IKE_SA_INIT, with the first child."""

    exchange: ClassVar[ExchangeType] = ExchangeType.IKE_AUTH

    def __init__(self, sa: IkeSa) -> None:
        super().__init__(sa, "IKE_AUTH")
        self.child: child_create.ChildRequest | None = None

    @classmethod
    def start(cls, sa: IkeSa, now: float) -> None:
        if not sa.conn.psk:
            sa.fail(now, "no PSK configured (only PSK authentication is supported)")
            return
        sa.enqueue(cls(sa), now, front=True)

    def build_request(self, now: float) -> PayloadList:
        sa, conn = self.sa, self.sa.conn
        assert sa.keys is not None
        sa.set_state(IkeSaState.AUTH_SENT)
        idi = id_from_config(conn.local_id, sa.local[0])
        sa.local_id = identity_str(idi)
        payloads: PayloadList = [(PayloadType.IDi, idi)]
        if conn.initial_contact and sa.reauth_of is None:
            payloads.append((PayloadType.NOTIFY, NotifyPayload(0, b"", NotifyType.INITIAL_CONTACT)))
        if conn.remote_id.strip() not in _ANY:
            with contextlib.suppress(ValueError):
                payloads.append((PayloadType.IDr, parse_identity(conn.remote_id)))
        auth = _auth_value(sa, conn.psk, sa.msg1, sa.nr, sa.keys.sk_pi, idi)
        payloads.append((PayloadType.AUTH, AuthPayload(AuthMethod.PSK, auth)))
        payloads += _window_notify(conn)
        if sa.pending_children:
            cfg = sa.pending_children.pop(0)
            self.child = child_create.new_request(sa, cfg, ike_auth=True)
            payloads += child_create.request_payloads(sa, self.child, ike_auth=True)
        return payloads

    def process_response(self, msg: Message, now: float) -> None:
        if not self._authenticated(msg, now):
            return
        sa = self.sa
        _peer_window(sa, msg)
        established(sa, now)
        if self.child is not None:
            self._first_child(msg, now)
        for cfg in sa.pending_children:
            child_create.start(sa, cfg, now)
        sa.pending_children = []
        if sa.reauth_of is not None:
            # §2.8.3 make-before-break: once our children exist here, close the old IKE SA
            sa.enqueue(CloseReauthenticated(sa, sa.reauth_of), now)

    def _authenticated(self, msg: Message, now: float) -> bool:
        """Verify the responder's identity and AUTH (§2.15); fail the SA otherwise."""
        sa, conn = self.sa, self.sa.conn
        assert sa.keys is not None
        idr = msg.get(PayloadType.IDr)
        auth = msg.get(PayloadType.AUTH)
        if idr is None or auth is None:
            errs = msg.error_notifies()
            notify = int(errs[0].type) if errs else None
            what = name_of(NotifyType, notify) if notify is not None else "no IDr/AUTH"
            sa.fail(now, f"IKE_AUTH refused by peer: {what}", notify)
            return False
        if not conn_matches_id(conn, idr):
            sa.on_error(
                ErrorKind.AUTHENTICATION_FAILED, now, f"responder identity {identity_str(idr)}"
            )
            sa.fail(
                now,
                f"peer identity {identity_str(idr)} does not match {conn.remote_id!r}",
                NotifyType.AUTHENTICATION_FAILED,
                send_delete=True,
            )
            return False
        want = _auth_value(sa, conn.psk, sa.msg2, sa.ni, sa.keys.sk_pr, idr)
        if auth.method != AuthMethod.PSK or not hmac.compare_digest(want, auth.data):
            sa.on_error(ErrorKind.AUTHENTICATION_FAILED, now, "responder AUTH does not verify")
            sa.fail(
                now,
                "responder AUTH payload does not verify",
                NotifyType.AUTHENTICATION_FAILED,
                send_delete=True,
            )
            return False
        sa.remote_id = identity_str(idr)
        return True

    def _first_child(self, msg: Message, now: float) -> None:
        sa, req = self.sa, self.child
        assert req is not None
        child_errors = [n for n in msg.error_notifies() if n.type in child_create.CHILD_ERRORS]
        if child_errors:
            err = child_errors[0]
            reason = f"peer refused: {err.type!s}"
            sa.emit(ChildSaFailed(sa.ike_id, sa.conn.name, req.cfg.name, reason, int(err.type)))
        elif msg.get(PayloadType.SA) is None:
            reason = "no Child SA in IKE_AUTH response"
            sa.emit(ChildSaFailed(sa.ike_id, sa.conn.name, req.cfg.name, reason))
        else:
            try:
                child_create.complete(sa, req, msg, now, ike_auth=True)
            except ProtocolError as exc:
                child_create.child_failed(sa, req, str(exc), exc.notify)
                # §2.21.3: the peer built the child we refuse: tell it to drop it
                child_create.refuse_bad_response(sa, req, msg, now)


class CloseReauthenticated(Task):
    """§2.8.3: the new IKE SA carries the children now; delete the old one."""

    def __init__(self, sa: IkeSa, old: IkeSa) -> None:
        super().__init__(sa, "close reauthenticated IKE SA")
        self.old = old

    def build_request(self, now: float) -> None:
        self.sa.reauth_of = None
        ike_delete.start(self.old, now, reason="reauthenticated")
        return None


def established(sa: IkeSa, now: float) -> None:
    """Common to both roles: the IKE SA is authenticated (§1.2)."""
    sa.set_state(IkeSaState.ESTABLISHED)
    sa.established_at = now
    sa.msg1 = sa.msg2 = b""  # only IKE_AUTH signs them (§2.15)
    sa.timers.clear(TimerKind.HALF_OPEN)
    sa.dpd.on_authenticated_traffic(now)
    sa.nat_established()
    soft, hard = sa.child_lifetimes(sa.conn.lifetimes, now)
    sa.timers.set(TimerKind.IKE_REKEY, soft)
    sa.timers.set(TimerKind.IKE_EXPIRE, hard)
    sa.emit(
        IkeSaEstablished(
            sa.ike_id,
            sa.conn.name,
            sa.local,
            sa.remote,
            sa.local_id,
            sa.remote_id,
            sa.nat_local,
            sa.nat_remote,
            sa.initiator,
            sa.key_material(),
        )
    )
    sa.log.info("established with %s (%s) %s", sa.remote, sa.remote_id, sa.suite_str)


def _select_conn(sa: IkeSa, idi: IdPayload, idr: IdPayload | None) -> ConnectionConfig | None:
    """Pick the connection for the peer identity (specific identities before %any)."""
    cands = sa.owner.conns_for(sa.local, sa.remote) or [sa.conn]
    if sa.conn not in cands:
        cands.insert(0, sa.conn)
    ok: list[ConnectionConfig] = []
    for conn in cands:
        if not conn_matches_id(conn, idi):
            continue
        if idr is not None and conn.local_id:
            ours = id_from_config(conn.local_id, sa.local[0])
            if (ours.id_type, ours.data) != (idr.id_type, idr.data):
                continue
        ok.append(conn)
    specific = [c for c in ok if c.remote_id.strip() not in _ANY]
    best = specific or ok
    return best[0] if best else None


def respond(sa: IkeSa, msg: Message, now: float) -> PayloadList:
    """Responder: verify the initiator, authenticate ourselves, build the first child."""
    if sa.state is not IkeSaState.INIT_DONE:
        raise ProtocolError("unexpected IKE_AUTH", NotifyType.INVALID_SYNTAX)
    assert sa.keys is not None
    idi = msg.get(PayloadType.IDi)
    auth = msg.get(PayloadType.AUTH)
    if msg.get(PayloadType.EAP) is not None or (idi is not None and auth is None):
        return _auth_failed(sa, now, "EAP is not supported")
    if idi is None or auth is None:
        return _auth_failed(sa, now, "IKE_AUTH lacks IDi or AUTH")
    conn = _select_conn(sa, idi, msg.get(PayloadType.IDr))
    if conn is None:
        return _auth_failed(sa, now, f"no connection for peer identity {identity_str(idi)}")
    want = _auth_value(sa, conn.psk, sa.msg1, sa.nr, sa.keys.sk_pi, idi) if conn.psk else b""
    if auth.method != AuthMethod.PSK or not conn.psk or not hmac.compare_digest(want, auth.data):
        return _auth_failed(sa, now, f"initiator AUTH from {identity_str(idi)} does not verify")
    sa.conn = conn
    sa.remote_id = identity_str(idi)
    idr = id_from_config(conn.local_id, sa.local[0])
    sa.local_id = identity_str(idr)
    _peer_window(sa, msg)
    our_auth = _auth_value(sa, conn.psk, sa.msg2, sa.ni, sa.keys.sk_pr, idr)
    out: PayloadList = [
        (PayloadType.IDr, idr),
        (PayloadType.AUTH, AuthPayload(AuthMethod.PSK, our_auth)),
    ]
    out += _window_notify(conn)
    initial_contact = msg.notify(NotifyType.INITIAL_CONTACT) is not None
    established(sa, now)
    if initial_contact:
        sa.owner.initial_contact(sa)
    if msg.get(PayloadType.SA) is not None:
        out += _respond_first_child(sa, msg, now)
    return out


def _respond_first_child(sa: IkeSa, msg: Message, now: float) -> PayloadList:
    try:
        return child_create.negotiate(sa, msg, now, ike_auth=True, ni=sa.ni, nr=sa.nr)[0]
    except ProtocolError as exc:
        # counted like a refused CREATE_CHILD_SA (status "errors"); the IKE SA stays
        sa.on_error(
            kind_for_exception(exc, protected=True, is_request=True),
            now,
            f"first child refused: {exc}",
        )
        return [(PayloadType.NOTIFY, NotifyPayload(0, b"", exc.notify, exc.data))]


def _auth_failed(sa: IkeSa, now: float, reason: str) -> PayloadList:
    """§2.21.2: answer AUTHENTICATION_FAILED and forget the SA."""
    sa.on_error(ErrorKind.AUTHENTICATION_FAILED, now, reason)
    sa.fail(now, reason, NotifyType.AUTHENTICATION_FAILED)
    raise AuthenticationFailed(reason)


__all__ = ["CloseReauthenticated", "IkeAuth", "established", "respond"]
