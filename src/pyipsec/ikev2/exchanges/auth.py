"""IKE_AUTH with PSK authentication and the first Child SA (RFC 7296 §1.2, §2.15).

Initiator: ``HDR, SK {IDi, [N(INITIAL_CONTACT)], [IDr], AUTH, [N(USE_TRANSPORT_MODE)],
SAi2, TSi, TSr}``.  Responder: ``HDR, SK {IDr, AUTH, [N...], SAr2, TSi, TSr}`` or
``HDR, SK {N(AUTHENTICATION_FAILED)}``.  Errors of the child do not fail the IKE
SA (§2.21.2).
"""

from __future__ import annotations

import contextlib
import hmac
import logging
from typing import TYPE_CHECKING

from ...config.model import ConnectionConfig
from ...crypto.keys import psk_auth, signed_octets
from ...recovery import ErrorKind, kind_for_exception
from ..constants import AuthMethod, ExchangeType, NotifyType, PayloadType, name_of
from ..errors import AuthenticationFailed, ProtocolError
from ..events import ChildSaFailed, IkeSaEstablished
from ..message import Message
from ..payloads import AuthPayload, IdPayload, NotifyPayload
from ..state import IkeSaState
from . import child as child_x
from .common import conn_matches_id, id_body, id_from_config, identity_str, parse_identity

if TYPE_CHECKING:
    from ..sa import IkeSa, PayloadList

log = logging.getLogger("pyipsec.ike")

_ANY = ("", "%any", "%any6", "*")


def _auth_value(
    sa: IkeSa, psk: bytes, message: bytes, nonce_peer: bytes, sk_p: bytes, idp: IdPayload
) -> bytes:
    assert sa.suite is not None
    prf = sa.suite.prf_id
    return psk_auth(prf, psk, signed_octets(message, nonce_peer, prf, sk_p, id_body(idp)))


def start(sa: IkeSa, now: float) -> None:
    """Initiator: send IKE_AUTH right after IKE_SA_INIT."""
    assert sa.keys is not None
    conn = sa.conn
    if not conn.psk:
        sa.fail(now, "no PSK configured (only PSK authentication is supported)")
        return
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
    if conn.window_size > 1:
        payloads.append(
            (
                PayloadType.NOTIFY,
                NotifyPayload(
                    0, b"", NotifyType.SET_WINDOW_SIZE, conn.window_size.to_bytes(4, "big")
                ),
            )
        )
    req: child_x.ChildRequest | None = None
    if sa.pending_children:
        cfg = sa.pending_children.pop(0)
        req = child_x.new_request(sa, cfg, ike_auth=True)
        payloads += child_x.request_payloads(sa, req, ike_auth=True)
    sa.auth_ctx = req
    sa.send_request(
        ExchangeType.IKE_AUTH,
        payloads,
        lambda msg, t: _handle_response(sa, req, msg, t),
        now,
        label="IKE_AUTH",
    )


def _handle_response(sa: IkeSa, req: child_x.ChildRequest | None, msg: Message, now: float) -> None:
    assert sa.keys is not None
    conn = sa.conn
    idr = msg.get(PayloadType.IDr)
    auth = msg.get(PayloadType.AUTH)
    if idr is None or auth is None:
        errs = msg.error_notifies()
        notify = int(errs[0].type) if errs else None
        what = name_of(NotifyType, notify) if notify is not None else "no IDr/AUTH"
        sa.fail(now, f"IKE_AUTH refused by peer: {what}", notify)
        return
    if not conn_matches_id(conn, idr):
        sa.on_error(ErrorKind.AUTHENTICATION_FAILED, now, f"responder identity {identity_str(idr)}")
        sa.fail(
            now,
            f"peer identity {identity_str(idr)} does not match {conn.remote_id!r}",
            NotifyType.AUTHENTICATION_FAILED,
            send_delete=True,
        )
        return
    want = _auth_value(sa, conn.psk, sa.msg2, sa.ni, sa.keys.sk_pr, idr)
    if auth.method != AuthMethod.PSK or not hmac.compare_digest(want, auth.data):
        sa.on_error(ErrorKind.AUTHENTICATION_FAILED, now, "responder AUTH does not verify")
        sa.fail(
            now,
            "responder AUTH payload does not verify",
            NotifyType.AUTHENTICATION_FAILED,
            send_delete=True,
        )
        return
    sa.remote_id = identity_str(idr)
    _window(sa, msg)
    established(sa, now)
    if req is not None:
        child_errors = [n for n in msg.error_notifies() if n.type in child_x.CHILD_ERRORS]
        if child_errors:
            sa.emit(child_x.first_child_failed_event(sa, req.cfg, child_errors[0]))
        elif msg.get(PayloadType.SA) is None:
            sa.emit(
                ChildSaFailed(
                    sa.ike_id, conn.name, req.cfg.name, "no Child SA in IKE_AUTH response"
                )
            )
        else:
            child_x.complete_ike_auth_child(sa, req, msg, now)
    for cfg in sa.pending_children:
        child_x.start_create(sa, cfg, now)
    sa.pending_children = []
    if sa.reauth_of is not None:
        # §2.8.3 make-before-break: once our children exist here, close the old IKE SA
        old = sa.reauth_of

        def close_old(t: float) -> bool:
            from . import informational

            sa.reauth_of = None
            informational.start_delete_ike(old, t, reason="reauthenticated")
            return False

        sa.enqueue(close_old, "close reauthenticated IKE SA", now)


def _window(sa: IkeSa, msg: Message) -> None:
    n = msg.notify(NotifyType.SET_WINDOW_SIZE)
    if n is not None and len(n.data) >= 4:
        sa.peer_window = max(1, int.from_bytes(n.data[:4], "big"))


def established(sa: IkeSa, now: float) -> None:
    """Common to both roles: the IKE SA is authenticated (§1.2)."""
    sa.set_state(IkeSaState.ESTABLISHED)
    sa.established_at = now
    sa.half_open_deadline = None
    sa.dpd.on_authenticated_traffic(now)
    sa.nat_established()
    lt = sa.conn.lifetimes
    soft, hard = sa.child_lifetimes(lt, now)
    sa.rekey_at = soft
    sa.expire_at = hard
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
    log.info(
        "IKE SA %d (%s) established with %s (%s) %s",
        sa.ike_id,
        sa.conn.name,
        sa.remote,
        sa.remote_id,
        sa.suite_str,
    )


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


def handle_request(sa: IkeSa, msg: Message, now: float) -> PayloadList:
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
    idr_req = msg.get(PayloadType.IDr)
    conn = _select_conn(sa, idi, idr_req)
    if conn is None:
        return _auth_failed(sa, now, f"no connection for peer identity {identity_str(idi)}")
    want = _auth_value(sa, conn.psk, sa.msg1, sa.nr, sa.keys.sk_pi, idi) if conn.psk else b""
    if auth.method != AuthMethod.PSK or not conn.psk or not hmac.compare_digest(want, auth.data):
        return _auth_failed(sa, now, f"initiator AUTH from {identity_str(idi)} does not verify")
    sa.conn = conn
    sa.remote_id = identity_str(idi)
    idr = id_from_config(conn.local_id, sa.local[0])
    sa.local_id = identity_str(idr)
    _window(sa, msg)
    out: PayloadList = [
        (PayloadType.IDr, idr),
        (
            PayloadType.AUTH,
            AuthPayload(
                AuthMethod.PSK, _auth_value(sa, conn.psk, sa.msg2, sa.ni, sa.keys.sk_pr, idr)
            ),
        ),
    ]
    if conn.window_size > 1:
        out.append(
            (
                PayloadType.NOTIFY,
                NotifyPayload(
                    0, b"", NotifyType.SET_WINDOW_SIZE, conn.window_size.to_bytes(4, "big")
                ),
            )
        )
    sa.initial_contact_seen = msg.notify(NotifyType.INITIAL_CONTACT) is not None
    established(sa, now)
    if sa.initial_contact_seen:
        sa.owner.initial_contact(sa)
    if msg.get(PayloadType.SA) is not None:
        try:
            out += child_x.respond_child(sa, msg, now, ike_auth=True, ni=sa.ni, nr=sa.nr)
        except ProtocolError as exc:
            # counted like a refused CREATE_CHILD_SA (status "errors"); the IKE SA stays
            sa.on_error(
                kind_for_exception(exc, protected=True, is_request=True),
                now,
                f"first child refused: {exc}",
            )
            out.append((PayloadType.NOTIFY, NotifyPayload(0, b"", exc.notify, exc.data)))
    return out


def _auth_failed(sa: IkeSa, now: float, reason: str) -> PayloadList:
    """§2.21.2: answer AUTHENTICATION_FAILED and forget the SA."""
    sa.on_error(ErrorKind.AUTHENTICATION_FAILED, now, reason)
    sa.fail(now, reason, NotifyType.AUTHENTICATION_FAILED)
    raise AuthenticationFailed(reason)
