"""Creating a Child SA: the first one in IKE_AUTH and CREATE_CHILD_SA (RFC 7296 §1.3.1,
§2.9 traffic selectors, §2.17 keying material), both roles.

Request:  ``[N(REKEY_SA)], [N(USE_TRANSPORT_MODE)], SA, Ni, [KEi], TSi, TSr``
Response: ``[N(USE_TRANSPORT_MODE)], SA, Nr, [KEr], TSi, TSr, [N(ADDITIONAL_TS_POSSIBLE)]``

The request building, negotiation and installation here are shared with
:mod:`.child_rekey` (a rekey is a CREATE_CHILD_SA with N(REKEY_SA), §1.3.3).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from ...config.model import ChildConfig, Mode
from ...crypto.keys import ChildSuite, derive_child_keys
from ...recovery import ErrorKind
from ..child_sa import ChildSa
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
from ..selectors import Selector, from_specs, from_wire, is_subset, narrow, same_set
from ..state import ChildSaState, IkeSaState
from . import config_payload, ike_delete
from .base import NONCE_SIZE, PayloadList, Task
from .child_delete import DeleteSpis
from .common import (
    build_proposals,
    check_chosen,
    child_suite,
    choose_configured,
    proposal_groups,
    suite_string,
)

if TYPE_CHECKING:
    from ...crypto.ke import KeyExchange
    from ..sa import IkeSa

#: RFC 4303 §2.1: SPI 0 is reserved ("no SA"), refused in every proposal
_ZERO_ESP_SPI = b"\x00" * 4

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
    """What we proposed for one Child SA (initiator)."""

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


# --------------------------------------------------------------------------- requests


def ts_payload(selectors: Sequence[Selector]) -> TsPayload:
    return TsPayload(
        [
            TrafficSelector(s.ts_type, s.protocol, s.start_port, s.end_port, s.start, s.end)
            for s in selectors
        ]
    )


def config_ts(sa: IkeSa, cfg: ChildConfig) -> tuple[tuple[Selector, ...], tuple[Selector, ...]]:
    """(local, remote) selectors of a child config; empty = ``dynamic`` (outer address,
    or the virtual IPs of that side, §2.19)."""
    local, remote = from_specs(cfg.local_ts, sa.local[0]), from_specs(cfg.remote_ts, sa.remote[0])
    return config_payload.dynamic_selectors(sa, cfg, local, remote)


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
        spi = req.rekey_of.spi_in.to_bytes(4, "big")
        out.append((PayloadType.NOTIFY, NotifyPayload(ProtocolId.ESP, spi, NotifyType.REKEY_SA)))
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


# --------------------------------------------------------------------------- installing


@dataclass
class Negotiated:
    """The outcome of one Child SA negotiation, ready to install (§2.17)."""

    cfg: ChildConfig
    chosen: Proposal
    suite: ChildSuite
    spi_in: int
    spi_out: int
    ni: bytes
    nr: bytes
    shared: bytes | None
    we_initiated: bool
    local_ts: tuple[Selector, ...]
    remote_ts: tuple[Selector, ...]
    transport: bool
    tfc_ok: bool


def install(sa: IkeSa, n: Negotiated, now: float, rekey_of: ChildSa | None = None) -> ChildSa:
    """Derive keys (§2.17), register the child and emit its event."""
    assert sa.keys is not None and sa.suite is not None
    keys = derive_child_keys(n.suite, sa.suite.prf_id, sa.keys.sk_d, n.ni, n.nr, n.shared)
    if n.we_initiated:
        e_out, a_out, e_in, a_in = keys.encr_i, keys.integ_i, keys.encr_r, keys.integ_r
    else:
        e_out, a_out, e_in, a_in = keys.encr_r, keys.integ_r, keys.encr_i, keys.integ_i
    soft, hard = sa.child_lifetimes(n.cfg.lifetimes, now)
    c = ChildSa(
        config=n.cfg,
        spi_in=n.spi_in,
        spi_out=n.spi_out,
        suite=n.suite,
        suite_str=suite_string(n.chosen),
        encr_in=e_in,
        integ_in=a_in,
        encr_out=e_out,
        integ_out=a_out,
        local_ts=n.local_ts,
        remote_ts=n.remote_ts,
        transport=n.transport,
        created=now,
        nonces=(n.ni, n.nr),
        initiated_by_us=n.we_initiated,
        soft_at=soft,
        hard_at=hard,
        last_used=now,
        tfc_ok=n.tfc_ok,
    )
    info = sa.add_child(c)
    if rekey_of is not None:
        sa.emit(ChildSaRekeyed(rekey_of.spi_in, info))
    else:
        sa.emit(ChildSaInstalled(info))
    sa.log.info(
        "child %s installed, SPIs in %08x out %08x (%s)",
        n.cfg.name,
        n.spi_in,
        n.spi_out,
        c.suite_str,
    )
    return c


# --------------------------------------------------------------------------- responder


def _candidates(
    sa: IkeSa, cfgs: Sequence[ChildConfig], tsi: tuple[Selector, ...], tsr: tuple[Selector, ...]
) -> list[tuple[ChildConfig, tuple[Selector, ...], tuple[Selector, ...]]]:
    """Configs whose selectors overlap the proposal, narrowed; exact matches first (§2.9)."""
    cands: list[tuple[bool, int, ChildConfig, tuple[Selector, ...], tuple[Selector, ...]]] = []
    for i, cfg in enumerate(cfgs):
        local_ts, remote_ts = config_ts(sa, cfg)
        n_tsi = narrow(tsi, remote_ts)
        n_tsr = narrow(tsr, local_ts)
        if n_tsi and n_tsr:
            exact = same_set(n_tsi, tsi) and same_set(n_tsr, tsr)
            cands.append((not exact, i, cfg, n_tsi, n_tsr))
    cands.sort(key=lambda c: (c[0], c[1]))
    return [(cfg, n_tsi, n_tsr) for _, _, cfg, n_tsi, n_tsr in cands]


def _select(
    sa: IkeSa,
    cfgs: Sequence[ChildConfig],
    tsi: tuple[Selector, ...],
    tsr: tuple[Selector, ...],
    proposals: Sequence[Proposal],
    *,
    ike_auth: bool,
) -> tuple[ChildConfig, tuple[Selector, ...], tuple[Selector, ...], Proposal]:
    """The first child config whose selectors fit (§2.9) and that accepts one of the
    peer's proposals (§2.7), with the narrowed selectors and the chosen proposal."""
    cands = _candidates(sa, cfgs, tsi, tsr)
    if not cands:
        raise TsUnacceptable("no child config matches the proposed traffic selectors")
    for cfg, n_tsi, n_tsr in cands:
        try:
            chosen = choose_configured(
                cfg.esp_proposals, ProtocolId.ESP, proposals, strip_ke=ike_auth, ignore_dh=ike_auth
            )
        except NoProposalChosen:
            continue
        return cfg, n_tsi, n_tsr, chosen
    raise NoProposalChosen("no acceptable ESP proposal")


def _pfs(sa: IkeSa, msg: Message, suite: ChildSuite) -> tuple[bytes | None, KePayload | None]:
    """The responder's side of the PFS key exchange of CREATE_CHILD_SA (§1.3.1)."""
    if not suite.dh_group:
        return None, None
    ke = msg.get(PayloadType.KE)
    if ke is None or ke.group != suite.dh_group:
        raise InvalidKePayload(
            f"PFS group {suite.dh_group} expected", data=suite.dh_group.to_bytes(2, "big")
        )
    our_ke = sa.ke_factory(suite.dh_group)
    return our_ke.shared_secret(ke.data), KePayload(our_ke.group, our_ke.public)


def negotiate(
    sa: IkeSa,
    msg: Message,
    now: float,
    *,
    ike_auth: bool,
    ni: bytes,
    nr: bytes,
    rekey_of: ChildSa | None = None,
) -> tuple[PayloadList, ChildSa]:
    """Negotiate and install a child from the peer's request: the response payloads and
    the new Child SA.

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
    selected = _select(sa, cfgs, tsi, tsr, sa_p.proposals, ike_auth=ike_auth)
    cfg, n_tsi, n_tsr, chosen = selected
    if len(chosen.spi) != 4:
        raise ProtocolError("ESP proposal SPI must be 4 octets")
    if chosen.spi == _ZERO_ESP_SPI:
        # RFC 4303 §2.1 reserves SPI 0 ("no SA exists").  The request itself is well
        # formed, so this is not INVALID_SYNTAX (§2.21.3: fatal for the whole IKE SA);
        # only this Child SA proposal is unacceptable: NO_PROPOSAL_CHOSEN, and the IKE
        # SA (and, in IKE_AUTH, its establishment) is unaffected (§2.21.3, §1.3.1).
        raise NoProposalChosen("ESP proposal SPI 0 is reserved (RFC 4303 §2.1)")
    suite = child_suite(chosen)
    shared, our_ke_payload = (None, None) if ike_auth else _pfs(sa, msg, suite)
    transport = msg.notify(NotifyType.USE_TRANSPORT_MODE) is not None and (
        cfg.mode is Mode.TRANSPORT
    )
    spi_in = sa.owner.new_child_spi()
    negotiated = Negotiated(
        cfg=cfg,
        chosen=chosen,
        suite=suite,
        spi_in=spi_in,
        spi_out=int.from_bytes(chosen.spi, "big"),
        ni=ni,
        nr=nr,
        shared=shared,
        we_initiated=False,
        local_ts=n_tsr,
        remote_ts=n_tsi,
        transport=transport,
        tfc_ok=msg.notify(NotifyType.ESP_TFC_PADDING_NOT_SUPPORTED) is None,
    )
    child = install(sa, negotiated, now, rekey_of)
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
    if not same_set(n_tsi, tsi) or not same_set(n_tsr, tsr):
        out.append((PayloadType.NOTIFY, NotifyPayload(0, b"", NotifyType.ADDITIONAL_TS_POSSIBLE)))
    return out, child


def respond_new(sa: IkeSa, msg: Message, now: float, ni: bytes) -> PayloadList:
    """Responder of a CREATE_CHILD_SA for a new Child SA (§1.3.1)."""
    return negotiate(sa, msg, now, ike_auth=False, ni=ni, nr=sa.rng(NONCE_SIZE))[0]


# --------------------------------------------------------------------------- initiator


def complete(sa: IkeSa, req: ChildRequest, msg: Message, now: float, *, ike_auth: bool) -> ChildSa:
    """Install the child a successful response describes (§1.3.1, §2.9); raises
    ProtocolError when the response does not fit our request."""
    chosen = check_chosen(req.proposals, msg.get(PayloadType.SA))
    if len(chosen.spi) != 4:
        raise ProtocolError("responder ESP SPI must be 4 octets")
    if chosen.spi == _ZERO_ESP_SPI:
        # a bad response (§2.21): the callers fail the child and delete what the peer
        # built (refuse_bad_response)
        raise ProtocolError("responder ESP SPI 0 is reserved (RFC 4303 §2.1)")
    suite = child_suite(chosen)
    nr = sa.nr if ike_auth else _nonce(msg)
    ni = sa.ni if ike_auth else req.ni
    shared: bytes | None = None
    if not ike_auth and suite.dh_group:
        ke = msg.get(PayloadType.KE)
        if req.ke is None or ke is None or ke.group != req.ke.group or suite.dh_group != ke.group:
            raise NoProposalChosen("PFS key exchange does not match")
        shared = req.ke.shared_secret(ke.data)
    tsi, tsr = _response_selectors(req, msg)
    tsi = config_payload.narrow_local(sa, req.cfg, tsi)  # to our virtual IPs (§2.19)
    transport = msg.notify(NotifyType.USE_TRANSPORT_MODE) is not None
    if req.transport and not transport:
        sa.log.warning("peer refused transport mode, using tunnel mode")
    if transport and not req.transport:
        raise ProtocolError(
            "peer chose transport mode we did not ask for", NotifyType.NO_PROPOSAL_CHOSEN
        )
    negotiated = Negotiated(
        cfg=req.cfg,
        chosen=chosen,
        suite=suite,
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
    )
    return install(sa, negotiated, now, req.rekey_of)


def _response_selectors(
    req: ChildRequest, msg: Message
) -> tuple[tuple[Selector, ...], tuple[Selector, ...]]:
    """The responder's TSi/TSr, which must be a subset of ours (§2.9)."""
    tsi_p = msg.get(PayloadType.TSi)
    tsr_p = msg.get(PayloadType.TSr)
    if tsi_p is None or tsr_p is None:
        raise TsUnacceptable("response lacks TSi/TSr")
    tsi = from_wire(tsi_p.selectors)
    tsr = from_wire(tsr_p.selectors)
    if not tsi or not tsr or not is_subset(tsi, req.local_ts) or not is_subset(tsr, req.remote_ts):
        raise TsUnacceptable("responder selectors are not a subset of ours (§2.9)")
    return tsi, tsr


def _nonce(msg: Message) -> bytes:
    n = msg.get(PayloadType.NONCE)
    if n is None:
        raise ProtocolError("response lacks Nonce")
    return n.nonce


def child_failed(sa: IkeSa, req: ChildRequest, reason: str, notify: int | None) -> None:
    sa.log.warning("child %s failed: %s", req.cfg.name, reason)
    old = req.rekey_of
    if old is not None and old.state is ChildSaState.REKEYING:
        old.set_state(ChildSaState.INSTALLED)
    sa.emit(ChildSaFailed(sa.ike_id, sa.conn.name, req.cfg.name, reason, notify))


def refuse_bad_response(sa: IkeSa, req: ChildRequest, msg: Message, now: float) -> None:
    """§2.21.3: a bad response to our request: tell the peer to drop what it built.

    A Delete names the SPI its *sender* receives on (§3.11): our inbound SPI of the
    request, which the peer's new SA sends to -- not the SPI the peer chose (which may
    be anything, 0 included)."""
    sa_p = msg.get(PayloadType.SA)
    if sa_p is not None and not msg.error_notifies():
        sa.enqueue(DeleteSpis(sa, [req.spi_in.to_bytes(4, "big")]), now)


def temporary_failure_delay(sa: IkeSa, attempt: int) -> float | None:
    """§2.25: when to retry after TEMPORARY_FAILURE (the recovery table's policy), or
    None when the retries are exhausted."""
    decision = sa.errors.decide(ErrorKind.TEMPORARY_FAILURE_RECEIVED)
    policy = decision.retry
    if policy is None or policy.exhausted(attempt):
        return None
    return policy.delay(attempt, sa.rng)


def retry_refused(sa: IkeSa, task: Task, attempt: int, now: float) -> None:
    """Schedule ``task`` again after TEMPORARY_FAILURE; after the table's last retry the
    state is taken as out of sync and the IKE SA is closed (§2.25)."""
    delay = temporary_failure_delay(sa, attempt)
    if delay is None:
        sa.log.warning("%s: TEMPORARY_FAILURE %d times, closing the IKE SA", task.label, attempt)
        ike_delete.start(sa, now, reason="TEMPORARY_FAILURE retries exhausted")
        return
    sa.schedule(task, now + delay)


class ChildExchange(Task):
    """What a new Child SA and a Child SA rekey share: the request we sent, a retry with
    the KE group the peer asks for (INVALID_KE_PAYLOAD, §1.3.1, §2.7, once) and the
    backoff after TEMPORARY_FAILURE (§2.25)."""

    exchange: ClassVar[ExchangeType] = ExchangeType.CREATE_CHILD_SA

    def __init__(self, sa: IkeSa, label: str, *, attempt: int) -> None:
        super().__init__(sa, label)
        self.attempt = attempt  # TEMPORARY_FAILURE answers so far (§2.25)
        self.req: ChildRequest | None = None
        self.group: int | None = None  # the KE group the peer asked for (§1.3.1)
        self.ke_retries = 0

    def again(self, *, attempt: int) -> ChildExchange:
        """A fresh copy of this exchange, to send again."""
        raise NotImplementedError

    def retry_with_group(self, etype: int, data: bytes, now: float) -> bool:
        """INVALID_KE_PAYLOAD naming a group we proposed: send again with it, at once."""
        req = self.req
        if etype != NotifyType.INVALID_KE_PAYLOAD or req is None or req.ke_retries >= 1:
            return False
        group = int.from_bytes(data[:2], "big") if len(data) >= 2 else 0
        if group not in proposal_groups(req.proposals):
            return False
        again = self.again(attempt=self.attempt)
        again.group, again.ke_retries = group, req.ke_retries + 1
        self.sa.enqueue(again, now, front=True)
        return True

    def retry_later(self, now: float) -> None:
        """TEMPORARY_FAILURE: the same exchange after the table's backoff (§2.25)."""
        retry_refused(self.sa, self.again(attempt=self.attempt + 1), self.attempt, now)


class ChildCreate(ChildExchange):
    """CREATE_CHILD_SA for a new Child SA (§1.3.1)."""

    def __init__(self, sa: IkeSa, cfg: ChildConfig, *, attempt: int = 0) -> None:
        super().__init__(sa, f"create child {cfg.name}", attempt=attempt)
        self.cfg = cfg

    def again(self, *, attempt: int) -> ChildCreate:
        return ChildCreate(self.sa, self.cfg, attempt=attempt)

    def build_request(self, now: float) -> PayloadList | None:
        sa = self.sa
        if sa.state is not IkeSaState.ESTABLISHED:
            sa.pending_children.append(self.cfg)
            return None
        self.label = "CREATE_CHILD_SA"
        self.req = new_request(sa, self.cfg, ike_auth=False, group=self.group)
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
                complete(sa, req, msg, now, ike_auth=False)
        except ProtocolError as exc:
            child_failed(sa, req, str(exc), exc.notify)
            refuse_bad_response(sa, req, msg, now)

    def _refused(self, etype: int, data: bytes, now: float) -> None:
        if self.retry_with_group(etype, data, now):
            return
        if etype == NotifyType.TEMPORARY_FAILURE:
            self.retry_later(now)
            return
        raise ProtocolError(f"peer refused the Child SA: {name_of(NotifyType, etype)}", etype)


def start(sa: IkeSa, cfg: ChildConfig, now: float) -> None:
    """Queue a CREATE_CHILD_SA for a new child (§1.3.1)."""
    sa.enqueue(ChildCreate(sa, cfg), now)


__all__ = [
    "CHILD_ERRORS",
    "ChildCreate",
    "ChildRequest",
    "Negotiated",
    "child_failed",
    "complete",
    "config_ts",
    "install",
    "negotiate",
    "new_request",
    "request_payloads",
    "respond_new",
    "retry_refused",
    "start",
    "ts_payload",
]
