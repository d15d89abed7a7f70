"""IKE_AUTH with PSK or public-key authentication and the first Child SA (RFC 7296 §1.2,
§2.15).

Initiator (:class:`IkeAuth`): ``HDR, SK {IDi, [CERT+], [N(INITIAL_CONTACT)], [CERTREQ],
[IDr], AUTH, [N(USE_TRANSPORT_MODE)], SAi2, TSi, TSr}``.  Responder (:func:`respond`):
``HDR, SK {IDr, [CERT+], AUTH, [N...], SAr2, TSi, TSr}`` or ``HDR, SK
{N(AUTHENTICATION_FAILED)}``.  Errors of the child do not fail the IKE SA (§2.21.2).

With EAP (§2.16, :mod:`.eap_auth`) the initiator's first message has no AUTH, the
rounds of EAP follow, and the Child SA is built from the first message when the last
one arrives: the pieces here are split so that both flows share them --
:func:`responder_auth` (IDr, CERT, AUTH), :func:`complete_responder` and
:func:`complete_initiator` (the IKE SA established, the first child).

Each direction is PSK or public key on its own (``local_auth`` / ``remote_auth``,
§2.15).  Public keys: AUTH methods 1, 9-11 and 14 (RFC 7427; the scheme honours the
peer's SIGNATURE_HASH_ALGORITHMS), X.509 chains validated against ``remote_trust``
(anchors, intermediates from the configuration and the CERT payloads, CRLs) at the
wall-clock time of ``now``, the peer identity bound to the certificate, raw public keys
(RFC 7670).  Every failure is AUTHENTICATION_FAILED with the reason in the log.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hmac
from typing import TYPE_CHECKING, ClassVar

from cryptography.hazmat.primitives import serialization

from ...auth.certs import (
    LocalChain,
    cert_payload,
    certs_to_send,
    check_id_binding,
    match_id_pattern,
    parse_cert_payloads,
    parse_certreq,
    raw_public_key_payload,
    select_chain,
)
from ...auth.errors import AuthError
from ...auth.keys import load_public_key
from ...auth.signatures import (
    DEFAULT_HASHES,
    PublicKey,
    choose_scheme,
    sign_auth,
    verify_auth,
)
from ...auth.trust import validate_chain
from ...config.model import (
    ConnectionConfig,
    LocalCredentials,
    RemoteTrust,
    is_any_identity,
    is_eap,
)
from ...crypto.keys import configured_psk_auth, psk_auth, signed_octets
from ...dn import name_to_string
from ...recovery import ErrorKind, kind_for_exception
from ..constants import (
    AuthMethod,
    CertEncoding,
    ExchangeType,
    NotifyType,
    PayloadType,
    name_of,
)
from ..errors import AuthenticationFailed, ProtocolError
from ..events import ChildSaFailed, IkeSaEstablished
from ..message import Message
from ..payloads import AuthPayload, CertPayload, IdPayload, NotifyPayload
from ..state import IkeSaState
from ..timers import TimerKind
from . import child_create, config_payload, ike_delete
from .base import PayloadList, Task
from .common import (
    certreq_payloads,
    conn_matches_id,
    id_body,
    id_from_config,
    identity_str,
    parse_identity,
)

if TYPE_CHECKING:
    from ..sa import IkeSa



def auth_value(
    sa: IkeSa,
    key: bytes,
    message: bytes,
    nonce_peer: bytes,
    sk_p: bytes,
    idp: IdPayload,
    *,
    configured: bool,
) -> bytes:
    """The shared-key AUTH value (§2.15): prf(prf(key, "Key Pad for IKEv2"), octets).
    ``configured``: ``key`` is the PSK of the configuration, whose padded form may be
    kept (:func:`~pyipsec.crypto.keys.configured_psk_auth`); False for a per-session
    key (EAP's MSK, or SK_pi/SK_pr when the method has none, §2.16), never kept."""
    assert sa.suite is not None
    octets = _octets(sa, message, nonce_peer, sk_p, idp)
    return (configured_psk_auth if configured else psk_auth)(sa.suite.prf_id, key, octets)


def shared_key_verifies(
    sa: IkeSa,
    key: bytes,
    auth: AuthPayload,
    message: bytes,
    nonce_peer: bytes,
    sk_p: bytes,
    idp: IdPayload,
    *,
    configured: bool,
) -> bool:
    """Whether ``auth`` is the shared-key AUTH (§2.15) of ``key`` over these octets:
    the PSK (``configured``), or with EAP the MSK / SK_p (§2.16)."""
    if auth.method != AuthMethod.PSK:
        return False
    want = auth_value(sa, key, message, nonce_peer, sk_p, idp, configured=configured)
    return hmac.compare_digest(want, auth.data)


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


# --- public-key authentication (§2.15, §3.6-§3.8, RFC 7427) -------------------------


def _octets(sa: IkeSa, message: bytes, nonce_peer: bytes, sk_p: bytes, idp: IdPayload) -> bytes:
    assert sa.suite is not None
    return signed_octets(message, nonce_peer, sa.suite.prf_id, sk_p, id_body(idp))


def record_certreq(sa: IkeSa, msg: Message) -> None:
    """Keep the CA hashes of the peer's CERTREQ payloads (§3.7); None: none came."""
    reqs = msg.get_all(PayloadType.CERTREQ)
    if not reqs:
        return
    hashes: list[bytes] = list(sa.peer_certreq or [])
    for req in reqs:
        if req.encoding != CertEncoding.X509_SIGNATURE:
            continue  # e.g. an (empty) raw public key CERTREQ, RFC 7670 §3
        try:
            hashes += parse_certreq(req.data)
        except AuthError as exc:
            sa.log.info("ignoring CERTREQ: %s", exc)
    sa.peer_certreq = hashes


def choose_credentials(sa: IkeSa, conn: ConnectionConfig) -> LocalCredentials:
    """Which of our certificates to authenticate with (§3.7: CERTREQ "used to choose
    which certificate to send"): the first of ``local_credentials`` and
    ``local_candidates`` whose chain leads to a CA the peer named in its CERTREQ, else
    ``local_credentials``.  Raises ValueError when none is configured."""
    first = conn.local_credentials
    if first is None:
        raise ValueError("no local credentials configured for public-key authentication")
    if not conn.local_candidates or not sa.peer_certreq:
        return first
    all_creds = [first, *conn.local_candidates]
    chains = [
        LocalChain(c.certificate, c.intermediates, c.anchor)
        for c in all_creds
        if c.certificate is not None
    ]
    chosen = select_chain(chains, sa.peer_certreq)
    if chosen is None:
        sa.log.info(
            "no certificate of ours is issued by a CA the peer requested: sending the first"
        )
        return first
    creds = next(c for c in all_creds if c.certificate is chosen.certificate)
    if creds is not first:
        sa.log.info(
            "certificate %s chosen by the peer's CERTREQ",
            name_to_string(chosen.certificate.subject),
        )
    return creds


def _our_auth(
    sa: IkeSa,
    conn: ConnectionConfig,
    message: bytes,
    nonce_peer: bytes,
    sk_p: bytes,
    ours: IdPayload,
) -> PayloadList:
    """Our [CERT+] and AUTH payloads (§2.15).  Raises AuthError/ValueError (a local
    credential that cannot sign for this peer)."""
    if conn.local_auth != "pubkey":
        auth = auth_value(sa, conn.psk, message, nonce_peer, sk_p, ours, configured=True)
        return [(PayloadType.AUTH, AuthPayload(AuthMethod.PSK, auth))]
    creds = choose_credentials(sa, conn)
    out: PayloadList = []
    asked = sa.peer_certreq is not None
    if conn.send_cert == "always" or (conn.send_cert == "ifasked" and asked):
        if creds.certificate is None:
            enc, data = raw_public_key_payload(creds.private_key.public_key())
            out.append((PayloadType.CERT, CertPayload(enc, data)))
        else:
            chain = LocalChain(creds.certificate, creds.intermediates, creds.anchor)
            for cert in certs_to_send(chain, sa.peer_certreq):
                enc, data = cert_payload(cert)
                out.append((PayloadType.CERT, CertPayload(enc, data)))
    method, scheme = choose_scheme(creds.private_key, sa.peer_hashes, rsa_pss=conn.rsa_pss)
    octets = _octets(sa, message, nonce_peer, sk_p, ours)
    data = sign_auth(creds.private_key, octets, method, scheme)
    out.append((PayloadType.AUTH, AuthPayload(method, data)))
    return out


def wall_time(sa: IkeSa, trust: RemoteTrust | None, now: float) -> dt.datetime | None:
    """The wall-clock time of ``now`` for certificate validity: ``trust.clock``, else the
    owner's (``IkeManager(wall_clock=...)``: the daemon maps its loop clock); the core
    never reads a clock itself.  None: validity cannot be checked."""
    if trust is not None and trust.clock is not None:
        return trust.clock(now)
    return sa.owner.wall_time(now)


def _spki(key: PublicKey) -> bytes:
    """SubjectPublicKeyInfo DER of a key (how raw public keys are pinned, RFC 7670)."""
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _verify_peer(
    sa: IkeSa,
    conn: ConnectionConfig,
    msg: Message,
    ident: IdPayload,
    auth: AuthPayload,
    message: bytes,
    nonce_peer: bytes,
    sk_p: bytes,
    now: float,
) -> str | None:
    """Verify the peer's signature AUTH (§2.15, remote_auth "pubkey"): CERT payloads,
    the chain to our anchors, the identity binding, the ID pattern, the signature.
    None, or why it fails (never raises)."""
    who = identity_str(ident)
    if auth.method == AuthMethod.PSK:
        return f"{who} used PSK authentication, a public-key signature is required"
    trust = conn.remote_trust
    if trust is None:
        return "no trust anchors configured for public-key authentication"
    try:
        creds = parse_cert_payloads((c.encoding, c.data) for c in msg.get_all(PayloadType.CERT))
        cert = None
        if creds is None:
            if not trust.raw_keys:
                return f"{who} sent no CERT payload"
            candidates = list(trust.raw_keys)
        elif creds.certificate is None:
            if _spki(creds.public_key) not in trust.raw_keys:
                return f"raw public key of {who} is not trusted"
            candidates = [_spki(creds.public_key)]
        else:
            cert = creds.certificate
            when = wall_time(sa, trust, now)
            if when is None:
                return "no wall clock to check certificate validity (IkeManager wall_clock)"
            validate_chain(
                cert,
                anchors=trust.anchors,
                intermediates=(*trust.intermediates, *creds.intermediates),
                now=when,
                crls=trust.crls,
                strict_crl=trust.strict_crl,
            )
            check_id_binding(ident, cert)
            candidates = []
        if not is_any_identity(conn.remote_id) and not match_id_pattern(conn.remote_id, ident):
            return f"identity {who} does not match {conn.remote_id!r}"
        octets = _octets(sa, message, nonce_peer, sk_p, ident)
        if cert is not None:
            verified = verify_auth(
                cert.public_key(), auth.method, auth.data, octets, accepted_hashes=DEFAULT_HASHES
            )
        else:
            last: AuthError | None = None
            for der in candidates:
                try:
                    verified = verify_auth(
                        load_public_key(der),
                        auth.method,
                        auth.data,
                        octets,
                        accepted_hashes=DEFAULT_HASHES,
                    )
                    break
                except AuthError as exc:
                    last = exc
            else:
                assert last is not None
                raise last
    except AuthError as exc:
        return f"{who}: {exc} ({exc.reason.value})"
    sa.peer_cert = cert
    sa.peer_auth = verified.scheme.name
    return None


def _ids_ok(conn: ConnectionConfig, ident: IdPayload) -> bool:
    """Whether ``ident`` may be the peer of ``conn``: wildcards for public-key peers."""
    if conn.remote_auth == "pubkey":
        return is_any_identity(conn.remote_id) or match_id_pattern(conn.remote_id, ident)
    return conn_matches_id(conn, ident)


class IkeAuth(Task):
    """The initiator's IKE_AUTH, right after IKE_SA_INIT, with the first child.  With
    ``local_auth`` EAP the request carries no AUTH (§2.16) and the subclass
    :class:`~pyipsec.ikev2.tasks.eap_auth.EapIkeAuth` goes on with the EAP rounds."""

    exchange: ClassVar[ExchangeType] = ExchangeType.IKE_AUTH

    def __init__(self, sa: IkeSa) -> None:
        super().__init__(sa, "IKE_AUTH")
        self.child: child_create.ChildRequest | None = None
        self.idi: IdPayload | None = None  # as sent (the EAP rounds' AUTH signs it)

    @classmethod
    def start(cls, sa: IkeSa, now: float) -> None:
        why = config_problem(sa.conn)
        if why:
            sa.fail(now, why)
            return
        sa.enqueue(cls(sa), now, front=True)

    def build_request(self, now: float) -> PayloadList | None:
        sa, conn = self.sa, self.sa.conn
        assert sa.keys is not None
        idi = self.idi = id_from_config(conn.local_id, sa.local[0])
        try:
            # EAP: no AUTH in the first message (§2.16), it comes after EAP Success
            auth_payloads = (
                []
                if is_eap(conn.local_auth)
                else _our_auth(sa, conn, sa.msg1, sa.nr, sa.keys.sk_pi, idi)
            )
        except (AuthError, ValueError) as exc:
            sa.on_error(ErrorKind.AUTHENTICATION_FAILED, now, f"cannot authenticate: {exc}")
            sa.fail(now, f"cannot authenticate ourselves: {exc}")
            return None
        sa.set_state(IkeSaState.AUTH_SENT)
        sa.local_id = identity_str(idi)
        payloads: PayloadList = [(PayloadType.IDi, idi)]
        payloads += auth_payloads[:-1]  # CERT payloads (§3.6)
        if conn.initial_contact and sa.reauth_of is None:
            payloads.append((PayloadType.NOTIFY, NotifyPayload(0, b"", NotifyType.INITIAL_CONTACT)))
        payloads += certreq_payloads(conn)
        pattern = conn.remote_auth == "pubkey" and any(c in conn.remote_id for c in "*/")
        if not is_any_identity(conn.remote_id) and not pattern:
            with contextlib.suppress(ValueError):
                payloads.append((PayloadType.IDr, parse_identity(conn.remote_id)))
        payloads += auth_payloads[-1:]
        if is_eap(conn.remote_auth):
            # RFC 5998 §3: the responder may leave out its AUTH, EAP authenticates it
            payloads.append(
                (PayloadType.NOTIFY, NotifyPayload(0, b"", NotifyType.EAP_ONLY_AUTHENTICATION))
            )
        payloads += _window_notify(conn)
        payloads += config_payload.request_payloads(sa)  # CP(CFG_REQUEST), before SAi2 (§2.19)
        why_not = _childless_problem(sa)
        if why_not:
            sa.fail(now, why_not)
            return None
        if sa.pending_children and not _initiate_childless(sa):
            cfg = sa.pending_children.pop(0)
            self.child = child_create.new_request(sa, cfg, ike_auth=True)
            payloads += child_create.request_payloads(sa, self.child, ike_auth=True)
        return payloads

    def process_response(self, msg: Message, now: float) -> None:
        if not self.authenticated(msg, now):
            return
        complete_initiator(self.sa, self.child, msg, now)

    def authenticated(self, msg: Message, now: float, *, auth_required: bool = True) -> bool:
        """Verify the responder's identity and AUTH (§2.15); fail the SA otherwise.
        ``auth_required`` False: EAP-only (RFC 5998), the AUTH may be missing."""
        sa, conn = self.sa, self.sa.conn
        idr = msg.get(PayloadType.IDr)
        auth = msg.get(PayloadType.AUTH)
        if idr is None or (auth is None and auth_required):
            peer_refused(sa, msg, now, "IKE_AUTH refused by peer: no IDr/AUTH")
            return False
        if not _ids_ok(conn, idr):
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
        why = None if auth is None else _verify_responder(sa, conn, msg, idr, auth, now)
        if why is not None:
            sa.on_error(ErrorKind.AUTHENTICATION_FAILED, now, f"responder: {why}")
            sa.fail(
                now,
                f"responder authentication failed: {why}",
                NotifyType.AUTHENTICATION_FAILED,
                send_delete=True,
            )
            return False
        sa.remote_id = identity_str(idr)
        return True


def peer_refused(sa: IkeSa, msg: Message, now: float, what: str) -> None:
    """An IKE_AUTH response without what we need (``what``): fail the SA with the
    peer's error notify, if any."""
    errs = msg.error_notifies()
    notify = int(errs[0].type) if errs else None
    if notify is not None:
        what = f"IKE_AUTH refused by peer: {name_of(NotifyType, notify)}"
    sa.fail(now, what, notify)


def _initiate_childless(sa: IkeSa) -> bool:
    """RFC 6023 as initiator: leave the first Child SA out of IKE_AUTH (it follows in
    CREATE_CHILD_SA) when ``childless`` is prefer or force and the responder announced
    support in IKE_SA_INIT (§3: never without that announcement)."""
    return sa.peer_childless and sa.conn.childless in ("prefer", "force")


def _childless_problem(sa: IkeSa) -> str:
    """Why this IKE_AUTH request cannot be sent ("" when it can): ``childless = force``
    with a responder that does not support it, or no child to create (an IKE SA
    initiated without children is childless) while the responder did not announce
    RFC 6023 support -- strongSwan fails these IKE SAs too."""
    if sa.peer_childless:
        return ""
    if sa.conn.childless == "force":
        return "the responder does not support childless IKE SA initiation (RFC 6023)"
    if not sa.pending_children and sa.reauth_of is None:
        return ("no child to create, and the responder does not support childless IKE SA "
                "initiation (RFC 6023)")  # fmt: skip
    return ""


def config_problem(conn: ConnectionConfig) -> str:
    """Why ``conn`` cannot authenticate as initiator ("" when it can)."""
    if conn.local_auth == "pubkey" and conn.local_credentials is None:
        return "no local credentials configured for public-key authentication"
    if conn.remote_auth == "pubkey" and conn.remote_trust is None:
        return "no remote trust configured for public-key authentication"
    if "psk" in (conn.local_auth, conn.remote_auth) and not conn.psk:
        return "no PSK configured"
    if conn.local_auth == "eap-radius":
        return "eap-radius is a server method: it cannot authenticate us"
    if is_eap(conn.remote_auth) and not is_eap(conn.local_auth):
        return "the responder authenticates with EAP only when we do (RFC 5998)"
    if conn.local_auth in ("eap-md5", "eap-mschapv2") and not conn.eap_secret:
        return f"no EAP secret configured for {conn.local_auth}"
    if conn.local_auth == "eap-tls" and conn.local_credentials is None:
        return "no certificate configured for eap-tls"
    return ""


def _verify_responder(
    sa: IkeSa, conn: ConnectionConfig, msg: Message, idr: IdPayload, auth: AuthPayload, now: float
) -> str | None:
    """Check the responder's AUTH of its first IKE_AUTH response (§2.15): a signature
    for ``remote_auth`` pubkey, the PSK for psk; with EAP-only (RFC 5998) an AUTH the
    responder sent anyway is checked with what we have.  None, or why it fails."""
    assert sa.keys is not None
    signed = conn.remote_auth == "pubkey" or (
        is_eap(conn.remote_auth) and auth.method != AuthMethod.PSK
    )
    if signed:
        return _verify_peer(sa, conn, msg, idr, auth, sa.msg2, sa.ni, sa.keys.sk_pr, now)
    if not conn.psk:
        return "it sent a PSK AUTH and we have no PSK to verify it"
    if not shared_key_verifies(
        sa, conn.psk, auth, sa.msg2, sa.ni, sa.keys.sk_pr, idr, configured=True
    ):
        return "AUTH payload does not verify"
    sa.peer_auth = "psk"
    return None


def complete_initiator(
    sa: IkeSa, child: child_create.ChildRequest | None, msg: Message, now: float
) -> None:
    """§1.2: the responder is authenticated by the last IKE_AUTH response ``msg``: the
    IKE SA is established, the first child completed from ``msg``, the queued children
    started; a reauthentication closes the old IKE SA (§2.8.3)."""
    _peer_window(sa, msg)
    established(sa, now)
    if not config_payload.apply_reply(sa, msg, now):  # CP(CFG_REPLY) (§2.19)
        return
    if child is not None:
        _first_child(sa, child, msg, now)
    for cfg in sa.pending_children:
        child_create.start(sa, cfg, now)
    sa.pending_children = []
    if sa.reauth_of is not None:
        # §2.8.3 make-before-break: once our children exist here, close the old IKE SA
        sa.enqueue(CloseReauthenticated(sa, sa.reauth_of), now)


def _first_child(sa: IkeSa, req: child_create.ChildRequest, msg: Message, now: float) -> None:
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


def select_conn(
    sa: IkeSa, idi: IdPayload, idr: IdPayload | None, *, eap: bool
) -> ConnectionConfig | str:
    """Pick the connection for the peer identity (specific identities before %any)
    among those that authenticate the initiator with EAP (``eap``, §2.16: its first
    IKE_AUTH has no AUTH) or without; why none fits otherwise."""
    cands = sa.owner.conns_for_peer(sa.local, sa.remote, idi)  # a fresh list
    if sa.conn not in cands:
        cands.insert(0, sa.conn)
    ok: list[ConnectionConfig] = []
    for conn in cands:
        if not _ids_ok(conn, idi):
            continue
        if idr is not None and conn.local_id:
            ours = id_from_config(conn.local_id, sa.local[0])
            if (ours.id_type, ours.data) != (idr.id_type, idr.data):
                continue
        ok.append(conn)
    fits = [c for c in ok if is_eap(c.remote_auth) == eap]
    specific = [c for c in fits if not is_any_identity(c.remote_id)]
    best = specific or fits
    if best:
        return best[0]
    who = identity_str(idi)
    if ok:
        how = "wants EAP" if eap else "sent an AUTH payload"
        need = "EAP" if not eap else ok[0].remote_auth
        return f"{who} {how}, connection {ok[0].name} authenticates it with {need}"
    return f"no connection for peer identity {who}"


def respond(sa: IkeSa, msg: Message, now: float) -> PayloadList:
    """Responder: verify the initiator, authenticate ourselves, build the first child."""
    if sa.state is not IkeSaState.INIT_DONE:
        raise ProtocolError("unexpected IKE_AUTH", NotifyType.INVALID_SYNTAX)
    assert sa.keys is not None
    idi = msg.get(PayloadType.IDi)
    auth = msg.get(PayloadType.AUTH)
    if msg.get(PayloadType.EAP) is not None:
        return _auth_failed(sa, now, "EAP payload next to AUTH in the first IKE_AUTH request")
    if idi is None or auth is None:
        return _auth_failed(sa, now, "IKE_AUTH lacks IDi or AUTH")
    conn = select_conn(sa, idi, msg.get(PayloadType.IDr), eap=False)
    if isinstance(conn, str):
        return _auth_failed(sa, now, conn)
    if conn.remote_auth == "pubkey":
        why = _verify_peer(sa, conn, msg, idi, auth, sa.msg1, sa.nr, sa.keys.sk_pi, now)
        if why is not None:
            return _auth_failed(sa, now, f"initiator authentication failed: {why}")
    else:
        ok = conn.psk and shared_key_verifies(
            sa, conn.psk, auth, sa.msg1, sa.nr, sa.keys.sk_pi, idi, configured=True
        )
        if not ok:
            return _auth_failed(sa, now, f"initiator AUTH from {identity_str(idi)} does not verify")
        sa.peer_auth = "psk"
    sa.use_connection(conn)
    sa.remote_id = identity_str(idi)
    out = responder_auth(sa, conn, msg, now)
    return out + complete_responder(sa, msg, now)


def responder_auth(
    sa: IkeSa, conn: ConnectionConfig, msg: Message, now: float, *, sign: bool = True
) -> PayloadList:
    """Our IDr, [CERT+] and AUTH for the first IKE_AUTH response (§2.15); ``sign``
    False: IDr only (EAP-only, RFC 5998).  AUTHENTICATION_FAILED when we cannot."""
    assert sa.keys is not None
    idr = id_from_config(conn.local_id, sa.local[0])
    record_certreq(sa, msg)
    try:
        our = _our_auth(sa, conn, sa.msg2, sa.ni, sa.keys.sk_pr, idr) if sign else []
    except (AuthError, ValueError) as exc:
        return _auth_failed(sa, now, f"cannot authenticate ourselves: {exc}")
    sa.local_id = identity_str(idr)
    return [(PayloadType.IDr, idr), *our]


def complete_responder(sa: IkeSa, first: Message, now: float) -> PayloadList:
    """§1.2: the initiator is authenticated: the IKE SA is established and the first
    child negotiated from ``first``, the first IKE_AUTH request (its SA, TSi, TSr and
    notifies; with EAP that is not the request being answered, §2.16)."""
    _peer_window(sa, first)
    out = _window_notify(sa.conn)
    initial_contact = first.notify(NotifyType.INITIAL_CONTACT) is not None
    refused = _childless_refused(sa, first)
    if refused:
        # RFC 6023 §3, the recovery table's CHILDLESS_REFUSED row: the SA fails and the
        # response is N(INVALID_SYNTAX) alone (the dispatcher answers a closed SA's
        # ProtocolError with its notify, as for AUTHENTICATION_FAILED)
        h = sa.on_error(ErrorKind.CHILDLESS_REFUSED, now, refused)
        notify = h.decision.notify or NotifyType.INVALID_SYNTAX
        sa.fail(now, refused, notify)
        raise ProtocolError(refused, notify)
    established(sa, now)
    if initial_contact:
        sa.owner.initial_contact(sa)
    wants_child = first.get(PayloadType.SA) is not None
    # CP(CFG_REQUEST) -> leases and CP(CFG_REPLY) before the child (RFC 7296 §2.19)
    cp_payloads, child_ok = config_payload.respond(sa, first, now, child=wants_child)
    out += cp_payloads
    if wants_child and child_ok:
        out += _respond_first_child(sa, first, now)
    return out


def _childless_refused(sa: IkeSa, first: Message) -> str:
    """RFC 6023 as responder: a request without SA, TSi and TSr is childless; it is
    refused with ``childless = never`` (we did not announce support, §3: INVALID_SYNTAX),
    and a request with a child is refused with ``childless = force``."""
    child_parts = (PayloadType.SA, PayloadType.TSi, PayloadType.TSr)
    childless = all(first.get(t) is None for t in child_parts)
    policy = sa.conn.childless
    if childless and policy == "never":
        return "childless IKE SA initiation is not allowed (childless = never)"
    if not childless and policy == "force":
        return "the initiator did not initiate a childless IKE SA (childless = force)"
    return ""


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


def authentication_failed(sa: IkeSa, now: float, reason: str) -> None:
    """§2.21.2: the peer is not authenticated: counted and logged (the recovery
    table's AUTHENTICATION_FAILED row), the SA fails with that notify."""
    sa.on_error(ErrorKind.AUTHENTICATION_FAILED, now, reason)
    sa.fail(now, reason, NotifyType.AUTHENTICATION_FAILED)


def _auth_failed(sa: IkeSa, now: float, reason: str) -> PayloadList:
    """§2.21.2: answer AUTHENTICATION_FAILED and forget the SA."""
    authentication_failed(sa, now, reason)
    raise AuthenticationFailed(reason)


__all__ = [
    "CloseReauthenticated",
    "IkeAuth",
    "auth_value",
    "authentication_failed",
    "complete_initiator",
    "complete_responder",
    "config_problem",
    "established",
    "peer_refused",
    "respond",
    "responder_auth",
    "select_conn",
    "shared_key_verifies",
    "wall_time",
]
