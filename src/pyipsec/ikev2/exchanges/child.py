"""Child SA negotiation: the first child in IKE_AUTH and CREATE_CHILD_SA (RFC 7296
§1.3.1 new Child SA, §1.3.3 Child SA rekey, §2.8 rekeying, §2.8.1 collisions,
§2.9 traffic selectors, §2.17 keying material).

Request:  ``[N(REKEY_SA)], [N(USE_TRANSPORT_MODE)], SA, Ni, [KEi], TSi, TSr``
Response: ``[N(USE_TRANSPORT_MODE)], SA, Nr, [KEr], TSi, TSr, [N(ADDITIONAL_TS_POSSIBLE)]``
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...config.model import ChildConfig, Mode
from ...crypto.keys import ChildSuite, derive_child_keys
from ..constants import ExchangeType, NotifyType, PayloadType, ProtocolId, name_of
from ..errors import InvalidKePayload, NoProposalChosen, ProtocolError, TsUnacceptable
from ..events import ChildSaFailed, ChildSaInstalled, ChildSaRekeyed
from ..message import Message
from ..payloads import (
    KePayload,
    NoncePayload,
    NotifyPayload,
    Proposal,
    SaPayload,
    TrafficSelector,
    TsPayload,
)
from ..selectors import Selector, from_specs, from_wire, is_subset, narrow
from ..state import ChildSaState, IkeSaState
from .common import (
    build_proposals,
    check_chosen,
    child_suite,
    choose_proposal,
    our_transforms,
    proposal_groups,
    suite_string,
)

if TYPE_CHECKING:
    from ...crypto.ke import KeyExchange
    from ..sa import ChildSa, IkeSa, PayloadList

log = logging.getLogger("pyipsec.ike")

NONCE_SIZE = 32

#: Child-related error notifies that fail the child but not the IKE SA (§2.21.2)
CHILD_ERRORS = frozenset(
    {
        NotifyType.NO_PROPOSAL_CHOSEN,
        NotifyType.TS_UNACCEPTABLE,
        NotifyType.SINGLE_PAIR_REQUIRED,
        NotifyType.INTERNAL_ADDRESS_FAILURE,
        NotifyType.FAILED_CP_REQUIRED,
        NotifyType.INVALID_SELECTORS,
        NotifyType.NO_ADDITIONAL_SAS,
        NotifyType.INVALID_KE_PAYLOAD,
        NotifyType.TEMPORARY_FAILURE,
        NotifyType.CHILD_SA_NOT_FOUND,
    }
)


@dataclass
class ChildRequest:
    """Initiator state of one Child SA negotiation."""

    cfg: ChildConfig
    spi_in: int
    proposals: list[Proposal]
    ni: bytes
    ke: KeyExchange | None
    local_ts: tuple[Selector, ...]
    remote_ts: tuple[Selector, ...]
    transport: bool
    rekey_of: ChildSa | None = None
    ke_retries: int = 0


# --------------------------------------------------------------------------- helpers


def ts_payload(selectors: Sequence[Selector]) -> TsPayload:
    return TsPayload(
        [
            TrafficSelector(s.ts_type, s.protocol, s.start_port, s.end_port, s.start, s.end)
            for s in selectors
        ]
    )


def config_ts(sa: IkeSa, cfg: ChildConfig) -> tuple[tuple[Selector, ...], tuple[Selector, ...]]:
    """(local, remote) selectors of a child config; empty = ``dynamic`` (outer address)."""
    return from_specs(cfg.local_ts, sa.local[0]), from_specs(cfg.remote_ts, sa.remote[0])


def new_request(
    sa: IkeSa,
    cfg: ChildConfig,
    *,
    ike_auth: bool,
    rekey_of: ChildSa | None = None,
    group: int | None = None,
) -> ChildRequest:
    spi_in = sa.owner.new_child_spi()
    proposals = build_proposals(
        cfg.esp_proposals, ProtocolId.ESP, spi_in.to_bytes(4, "big"), strip_ke=ike_auth
    )
    ke: KeyExchange | None = None
    if not ike_auth:
        groups = proposal_groups(proposals)
        if group is None and groups:
            group = groups[0]
        if group:
            ke = sa.ke_factory(group)
    if rekey_of is not None:
        # §2.9.2: propose the selectors of the SA being rekeyed
        local_ts, remote_ts = rekey_of.local_ts, rekey_of.remote_ts
        transport = rekey_of.transport
    else:
        local_ts, remote_ts = config_ts(sa, cfg)
        transport = cfg.mode is Mode.TRANSPORT
    return ChildRequest(
        cfg, spi_in, proposals, sa.rng(NONCE_SIZE), ke, local_ts, remote_ts, transport, rekey_of
    )


def request_payloads(sa: IkeSa, req: ChildRequest, *, ike_auth: bool) -> PayloadList:
    out: PayloadList = []
    if req.rekey_of is not None:
        out.append(
            (
                PayloadType.NOTIFY,
                NotifyPayload(
                    ProtocolId.ESP, req.rekey_of.spi_in.to_bytes(4, "big"), NotifyType.REKEY_SA
                ),
            )
        )
    if req.transport:
        out.append((PayloadType.NOTIFY, NotifyPayload(0, b"", NotifyType.USE_TRANSPORT_MODE)))
    if not req.cfg.tfc_padding:
        out.append(
            (PayloadType.NOTIFY, NotifyPayload(0, b"", NotifyType.ESP_TFC_PADDING_NOT_SUPPORTED))
        )
    out.append((PayloadType.SA, SaPayload(req.proposals)))
    if not ike_auth:
        out.append((PayloadType.NONCE, NoncePayload(req.ni)))
        if req.ke is not None:
            out.append((PayloadType.KE, KePayload(req.ke.group, req.ke.public)))
    out.append((PayloadType.TSi, ts_payload(req.local_ts)))
    out.append((PayloadType.TSr, ts_payload(req.remote_ts)))
    return out


def install(
    sa: IkeSa,
    cfg: ChildConfig,
    chosen: Proposal,
    suite: ChildSuite,
    *,
    spi_in: int,
    spi_out: int,
    ni: bytes,
    nr: bytes,
    shared: bytes | None,
    we_initiated: bool,
    local_ts: tuple[Selector, ...],
    remote_ts: tuple[Selector, ...],
    transport: bool,
    tfc_ok: bool,
    now: float,
    rekey_of: ChildSa | None = None,
) -> ChildSa:
    """Derive keys (§2.17), register the child and emit its event."""
    from ..sa import ChildSa

    assert sa.keys is not None and sa.suite is not None
    keys = derive_child_keys(suite, sa.suite.prf_id, sa.keys.sk_d, ni, nr, shared)
    if we_initiated:
        e_out, a_out, e_in, a_in = keys.encr_i, keys.integ_i, keys.encr_r, keys.integ_r
    else:
        e_out, a_out, e_in, a_in = keys.encr_r, keys.integ_r, keys.encr_i, keys.integ_i
    soft, hard = sa.child_lifetimes(cfg.lifetimes, now)
    c = ChildSa(
        config=cfg,
        spi_in=spi_in,
        spi_out=spi_out,
        suite=suite,
        suite_str=suite_string(chosen),
        encr_in=e_in,
        integ_in=a_in,
        encr_out=e_out,
        integ_out=a_out,
        local_ts=local_ts,
        remote_ts=remote_ts,
        transport=transport,
        created=now,
        nonces=(ni, nr),
        initiated_by_us=we_initiated,
        soft_at=soft,
        hard_at=hard,
        last_used=now,
        tfc_ok=tfc_ok,
    )
    info = sa.add_child(c)
    if rekey_of is not None:
        sa.emit(ChildSaRekeyed(rekey_of.spi_in, info))
    else:
        sa.emit(ChildSaInstalled(info))
    log.info(
        "IKE SA %d: child %s installed, SPIs in %08x out %08x (%s)",
        sa.ike_id,
        cfg.name,
        spi_in,
        spi_out,
        c.suite_str,
    )
    return c


# --------------------------------------------------------------------------- responder


def respond_child(
    sa: IkeSa,
    msg: Message,
    now: float,
    *,
    ike_auth: bool,
    ni: bytes,
    nr: bytes,
    rekey_of: ChildSa | None = None,
) -> PayloadList:
    """Negotiate a child from the peer's request; returns the response payloads.

    Raises ProtocolError (NO_PROPOSAL_CHOSEN, TS_UNACCEPTABLE, INVALID_KE_PAYLOAD...)
    to answer with that error instead.
    """
    sa_p = msg.get(PayloadType.SA)
    tsi_p = msg.get(PayloadType.TSi)
    tsr_p = msg.get(PayloadType.TSr)
    if sa_p is None or tsi_p is None or tsr_p is None:
        raise ProtocolError("Child SA request lacks SA, TSi or TSr")
    tsi = from_wire(tsi_p.selectors)
    tsr = from_wire(tsr_p.selectors)
    cfgs = [rekey_of.config] if rekey_of is not None else list(sa.conn.children)
    # candidates: configs whose selectors overlap the proposal; exact matches first (§2.9)
    cands: list[tuple[bool, int, ChildConfig, tuple[Selector, ...], tuple[Selector, ...]]] = []
    for i, cfg in enumerate(cfgs):
        local_ts, remote_ts = config_ts(sa, cfg)
        n_tsi = narrow(tsi, remote_ts)
        n_tsr = narrow(tsr, local_ts)
        if n_tsi and n_tsr:
            exact = set(n_tsi) == set(tsi) and set(n_tsr) == set(tsr)
            cands.append((not exact, i, cfg, n_tsi, n_tsr))
    if not cands:
        raise TsUnacceptable("no child config matches the proposed traffic selectors")
    cands.sort(key=lambda c: (c[0], c[1]))
    selected: tuple[ChildConfig, tuple[Selector, ...], tuple[Selector, ...], Proposal] | None = None
    for _, _, cfg, n_tsi, n_tsr in cands:
        try:
            chosen = choose_proposal(
                our_transforms(cfg.esp_proposals, ProtocolId.ESP, strip_ke=ike_auth),
                sa_p.proposals,
                ProtocolId.ESP,
                ignore_dh=ike_auth,
            )
        except NoProposalChosen:
            continue
        selected = (cfg, n_tsi, n_tsr, chosen)
        break
    if selected is None:
        raise NoProposalChosen("no acceptable ESP proposal")
    cfg, n_tsi, n_tsr, chosen = selected
    if len(chosen.spi) != 4:
        raise ProtocolError("ESP proposal SPI must be 4 octets")
    suite = child_suite(chosen)
    shared: bytes | None = None
    our_ke_payload: KePayload | None = None
    if not ike_auth:
        ke = msg.get(PayloadType.KE)
        if suite.dh_group:
            if ke is None or ke.group != suite.dh_group:
                raise InvalidKePayload(
                    f"PFS group {suite.dh_group} expected", data=suite.dh_group.to_bytes(2, "big")
                )
            our_ke = sa.ke_factory(suite.dh_group)
            shared = our_ke.shared_secret(ke.data)
            our_ke_payload = KePayload(our_ke.group, our_ke.public)
    wants_transport = msg.notify(NotifyType.USE_TRANSPORT_MODE) is not None
    transport = wants_transport and cfg.mode is Mode.TRANSPORT
    tfc_ok = msg.notify(NotifyType.ESP_TFC_PADDING_NOT_SUPPORTED) is None
    spi_in = sa.owner.new_child_spi()
    spi_out = int.from_bytes(chosen.spi, "big")
    install(
        sa,
        cfg,
        chosen,
        suite,
        spi_in=spi_in,
        spi_out=spi_out,
        ni=ni,
        nr=nr,
        shared=shared,
        we_initiated=False,
        local_ts=n_tsr,
        remote_ts=n_tsi,
        transport=transport,
        tfc_ok=tfc_ok,
        now=now,
        rekey_of=rekey_of,
    )
    reply = Proposal(chosen.num, chosen.protocol, spi_in.to_bytes(4, "big"), chosen.transforms)
    out: PayloadList = []
    if transport:
        out.append((PayloadType.NOTIFY, NotifyPayload(0, b"", NotifyType.USE_TRANSPORT_MODE)))
    if not cfg.tfc_padding:
        out.append(
            (PayloadType.NOTIFY, NotifyPayload(0, b"", NotifyType.ESP_TFC_PADDING_NOT_SUPPORTED))
        )
    out.append((PayloadType.SA, SaPayload([reply])))
    if not ike_auth:
        out.append((PayloadType.NONCE, NoncePayload(nr)))
        if our_ke_payload is not None:
            out.append((PayloadType.KE, our_ke_payload))
    out.append((PayloadType.TSi, ts_payload(n_tsi)))
    out.append((PayloadType.TSr, ts_payload(n_tsr)))
    if set(n_tsi) != set(tsi) or set(n_tsr) != set(tsr):
        out.append((PayloadType.NOTIFY, NotifyPayload(0, b"", NotifyType.ADDITIONAL_TS_POSSIBLE)))
    return out


def handle_request(sa: IkeSa, msg: Message, now: float) -> PayloadList:
    """CREATE_CHILD_SA request: new child, child rekey, or IKE SA rekey (§1.3)."""
    sa_p = msg.get(PayloadType.SA)
    if sa_p is not None and sa_p.proposals and sa_p.proposals[0].protocol == ProtocolId.IKE:
        from . import ike_rekey

        return ike_rekey.handle_request(sa, msg, now)
    nonce = msg.get(PayloadType.NONCE)
    if sa_p is None or nonce is None:
        raise ProtocolError("CREATE_CHILD_SA request lacks SA or Nonce")
    if sa.state is not IkeSaState.ESTABLISHED:
        # §2.25.2: rekeying or closing the IKE SA
        raise ProtocolError("IKE SA is being rekeyed or closed", NotifyType.TEMPORARY_FAILURE)
    rekey_of: ChildSa | None = None
    rekey = msg.notify(NotifyType.REKEY_SA)
    if rekey is not None:
        spi = int.from_bytes(rekey.spi, "big") if len(rekey.spi) == 4 else -1
        rekey_of = sa.child_by_out(spi)
        if rekey_of is None:
            return [
                (
                    PayloadType.NOTIFY,
                    NotifyPayload(rekey.protocol, rekey.spi, NotifyType.CHILD_SA_NOT_FOUND),
                )
            ]
        if rekey_of.state in (ChildSaState.DELETING, ChildSaState.REKEYED, ChildSaState.DELETED):
            # §2.25.1: rekey of an SA we are closing
            raise ProtocolError("Child SA is being closed", NotifyType.TEMPORARY_FAILURE)
    nr = sa.rng(NONCE_SIZE)
    out = respond_child(sa, msg, now, ike_auth=False, ni=nonce.nonce, nr=nr, rekey_of=rekey_of)
    if rekey_of is not None:
        new = _last_child(sa)
        if rekey_of.state is ChildSaState.REKEYING:
            # §2.8.1: simultaneous rekey, settle by nonces when our response arrives
            log.info("IKE SA %d: simultaneous rekey of child %08x", sa.ike_id, rekey_of.spi_in)
            rekey_of.collision = new
        else:
            rekey_of.set_state(ChildSaState.REKEYED)
            rekey_of.replaced_by = new
    return out


def _last_child(sa: IkeSa) -> ChildSa:
    return list(sa.children.values())[-1]


# --------------------------------------------------------------------------- initiator


def start_create(sa: IkeSa, cfg: ChildConfig, now: float) -> None:
    """Queue a CREATE_CHILD_SA for a new child (§1.3.1)."""

    def go(t: float) -> bool:
        cur = sa.successor()
        if cur is not sa:  # the IKE SA was rekeyed meanwhile (§2.8.2)
            start_create(cur, cfg, t)
            return False
        if sa.state is not IkeSaState.ESTABLISHED:
            sa.pending_children.append(cfg)
            return False
        _send(sa, new_request(sa, cfg, ike_auth=False), t)
        return True

    sa.enqueue(go, f"create child {cfg.name}", now)


def start_rekey(sa: IkeSa, child: ChildSa, now: float) -> None:
    """Queue a rekey of ``child`` (§1.3.3); the old SA is deleted once the new one is up."""
    if child.state is not ChildSaState.INSTALLED:
        return
    child.set_state(ChildSaState.REKEYING)

    def go(t: float) -> bool:
        cur = sa.successor()
        if cur is not sa and child.spi_in in cur.children:  # moved by an IKE rekey
            if child.state is ChildSaState.REKEYING:
                child.set_state(ChildSaState.INSTALLED)
                start_rekey(cur, child, t)
            return False
        if child.spi_in not in sa.children or child.state is not ChildSaState.REKEYING:
            return False
        if child.collision is not None:
            # the peer rekeyed it meanwhile (we answered): nothing to do (§2.8.1)
            child.set_state(ChildSaState.REKEYED)
            child.replaced_by = child.collision
            return False
        if sa.state is not IkeSaState.ESTABLISHED:
            # retry once the IKE SA rekey is over
            child.set_state(ChildSaState.INSTALLED)
            child.soft_at = t + 5.0
            return False
        _send(sa, new_request(sa, child.config, ike_auth=False, rekey_of=child), t)
        return True

    sa.enqueue(go, f"rekey child {child.spi_in:08x}", now)


def _send(sa: IkeSa, req: ChildRequest, now: float) -> None:
    sa.send_request(
        ExchangeType.CREATE_CHILD_SA,
        request_payloads(sa, req, ike_auth=False),
        lambda msg, t: handle_response(sa, req, msg, t),
        now,
        label="CREATE_CHILD_SA rekey" if req.rekey_of else "CREATE_CHILD_SA",
    )


def _child_failed(
    sa: IkeSa, req: ChildRequest, reason: str, notify: int | None, now: float
) -> None:
    log.warning("IKE SA %d: child %s failed: %s", sa.ike_id, req.cfg.name, reason)
    old = req.rekey_of
    if old is not None and old.state is ChildSaState.REKEYING:
        old.set_state(ChildSaState.INSTALLED)
    sa.emit(ChildSaFailed(sa.ike_id, sa.conn.name, req.cfg.name, reason, notify))


def handle_response(sa: IkeSa, req: ChildRequest, msg: Message, now: float) -> None:
    try:
        _handle_response(sa, req, msg, now, ike_auth=False)
    except ProtocolError as exc:
        _child_failed(sa, req, str(exc), exc.notify, now)
        # §2.21.3: a bad response to our request: tell the peer to drop what it built
        sa_p = msg.get(PayloadType.SA)
        if sa_p is not None and len(sa_p.proposals) == 1 and len(sa_p.proposals[0].spi) == 4:
            from . import informational

            informational.start_delete_spis(sa, [sa_p.proposals[0].spi], now)


def complete_ike_auth_child(sa: IkeSa, req: ChildRequest, msg: Message, now: float) -> None:
    """The first child from the IKE_AUTH response (the IKE SA is already up)."""
    try:
        _handle_response(sa, req, msg, now, ike_auth=True)
    except ProtocolError as exc:
        _child_failed(sa, req, str(exc), exc.notify, now)


def _handle_response(
    sa: IkeSa, req: ChildRequest, msg: Message, now: float, *, ike_auth: bool
) -> None:
    old = req.rekey_of
    errors = [n for n in msg.error_notifies()]
    if errors:
        err = errors[0]
        etype = int(err.type)
        if etype == NotifyType.INVALID_KE_PAYLOAD and not ike_auth and req.ke_retries < 1:
            group = int.from_bytes(err.data[:2], "big") if len(err.data) >= 2 else 0
            if group in proposal_groups(req.proposals):
                again = new_request(sa, req.cfg, ike_auth=False, rekey_of=old, group=group)
                again.ke_retries = req.ke_retries + 1

                def resend(t: float) -> bool:
                    _send(sa, again, t)
                    return True

                sa.enqueue(resend, "child KE retry", now, front=True)
                return
        if etype == NotifyType.TEMPORARY_FAILURE and not ike_auth:
            if old is not None and old.collision is not None:
                # the peer won a race it did not notice; its new SA replaces ours (§2.8.1)
                if old.state is ChildSaState.REKEYING:
                    old.set_state(ChildSaState.REKEYED)
                old.replaced_by = old.collision
                return
            _retry_later(sa, req, now)
            return
        if etype == NotifyType.CHILD_SA_NOT_FOUND and old is not None:
            if old.collision is not None or old.state is not ChildSaState.REKEYING:
                return  # §2.8.1: we already know about the simultaneous rekey
            # §2.25: the peer lost the SA; drop ours and start afresh
            sa.remove_child(old, "peer does not know the Child SA")
            start_create(sa, old.config, now)
            return
        raise ProtocolError(f"peer refused the Child SA: {name_of(NotifyType, etype)}", etype)
    sa_p = msg.get(PayloadType.SA)
    chosen = check_chosen(req.proposals, sa_p)
    if len(chosen.spi) != 4:
        raise ProtocolError("responder ESP SPI must be 4 octets")
    suite = child_suite(chosen)
    nr = sa.nr if ike_auth else _nonce(msg)
    ni = sa.ni if ike_auth else req.ni
    shared: bytes | None = None
    if not ike_auth and suite.dh_group:
        ke = msg.get(PayloadType.KE)
        if (
            req.ke is None
            or ke is None
            or ke.group != req.ke.group
            or suite.dh_group != req.ke.group
        ):
            raise NoProposalChosen("PFS key exchange does not match")
        shared = req.ke.shared_secret(ke.data)
    tsi_p = msg.get(PayloadType.TSi)
    tsr_p = msg.get(PayloadType.TSr)
    if tsi_p is None or tsr_p is None:
        raise TsUnacceptable("response lacks TSi/TSr")
    tsi = from_wire(tsi_p.selectors)
    tsr = from_wire(tsr_p.selectors)
    if not tsi or not tsr or not is_subset(tsi, req.local_ts) or not is_subset(tsr, req.remote_ts):
        raise TsUnacceptable("responder selectors are not a subset of ours (§2.9)")
    transport = msg.notify(NotifyType.USE_TRANSPORT_MODE) is not None
    if req.transport and not transport:
        log.warning("IKE SA %d: peer refused transport mode, using tunnel mode", sa.ike_id)
    if transport and not req.transport:
        raise ProtocolError(
            "peer chose transport mode we did not ask for", NotifyType.NO_PROPOSAL_CHOSEN
        )
    new = install(
        sa,
        req.cfg,
        chosen,
        suite,
        spi_in=req.spi_in,
        spi_out=int.from_bytes(chosen.spi, "big"),
        ni=ni,
        nr=nr,
        shared=shared,
        we_initiated=True,
        local_ts=tsi,
        remote_ts=tsr,
        transport=transport,
        tfc_ok=msg.notify(NotifyType.ESP_TFC_PADDING_NOT_SUPPORTED) is None,
        now=now,
        rekey_of=old,
    )
    if old is not None:
        _settle_rekey(sa, old, new, now)


def _nonce(msg: Message) -> bytes:
    n = msg.get(PayloadType.NONCE)
    if n is None:
        raise ProtocolError("response lacks Nonce")
    return n.nonce


def _settle_rekey(sa: IkeSa, old: ChildSa, new: ChildSa, now: float) -> None:
    """Our rekey completed: delete the old SA, or settle a collision by nonces (§2.8.1)."""
    from . import informational

    peer_new = old.collision
    if peer_new is not None and peer_new.spi_in in sa.children:
        lowest = min(new.nonces + peer_new.nonces)
        if lowest in new.nonces:
            # our new SA is the redundant one: we created it, we delete it;
            # the peer (who initiated the surviving one) deletes the old SA
            log.info(
                "IKE SA %d: rekey collision lost, deleting redundant %08x", sa.ike_id, new.spi_in
            )
            if old.state is ChildSaState.REKEYING:
                old.set_state(ChildSaState.REKEYED)
            old.replaced_by = peer_new
            informational.start_delete_children(
                sa, [new], now, reason="redundant (rekey collision)"
            )
            return
        log.info("IKE SA %d: rekey collision won, keeping %08x", sa.ike_id, new.spi_in)
    old.replaced_by = new
    if old.spi_in not in sa.children:
        return  # the peer deleted it meanwhile
    if old.state is ChildSaState.REKEYING:
        old.set_state(ChildSaState.REKEYED)
    informational.start_delete_children(sa, [old], now, reason="rekeyed")


def _retry_later(sa: IkeSa, req: ChildRequest, now: float) -> None:
    """§2.25: wait before retrying after TEMPORARY_FAILURE."""
    from ..sa import TEMPORARY_FAILURE_RETRY, rand_fraction

    sa.temp_failures += 1
    delay = TEMPORARY_FAILURE_RETRY * (1 + rand_fraction(sa.rng)) * min(sa.temp_failures, 8)
    old = req.rekey_of

    def retry(t: float) -> None:
        cur = sa.successor()
        if old is not None:
            if old.spi_in in cur.children and old.state is ChildSaState.REKEYING:
                old.set_state(ChildSaState.INSTALLED)
                start_rekey(cur, old, t)
        else:
            start_create(cur, req.cfg, t)

    sa.deferred.append((now + delay, retry))


def first_child_failed_event(sa: IkeSa, cfg: ChildConfig, err: Any) -> ChildSaFailed:
    return ChildSaFailed(
        sa.ike_id, sa.conn.name, cfg.name, f"peer refused: {err.type!s}", int(err.type)
    )
