"""IkeSa: the sans-I/O state machine of one IKE SA, either role (RFC 7296).

An :class:`IkeSa` never touches sockets, clocks or global randomness: bytes come
in through :meth:`IkeSa.receive` with the time ``now``, outgoing datagrams and
events are collected in :attr:`IkeSa.outbox` / :attr:`IkeSa.events`, and the
next deadline is :meth:`IkeSa.next_timer`.  The :class:`~pyipsec.ikev2.manager.IkeManager`
owns many of them and dispatches datagrams by SPI.

The generic machinery lives here (message IDs and the window, §2.3; request
retransmission and give-up, §2.1; answering retransmitted requests from the
response cache; timers for lifetimes and liveness checks).  The exchanges
themselves are in :mod:`pyipsec.ikev2.exchanges`.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..config.model import ChildConfig, ConnectionConfig, DpdAction, Lifetimes, Mode
from ..crypto.encr import is_aead, make_sk_protector
from ..crypto.keys import ChildSuite, IkeKeys, IkeSuite
from ..dpd import DpdState
from ..nat import MappingTracker, NatKeepalive, format_endpoint
from ..recovery import (
    ErrorHandler,
    ErrorKind,
    HandledError,
    RecoveryAction,
    RetryPolicy,
    Scope,
    kind_for_exception,
    kind_for_received_notify,
)
from .constants import ExchangeType, HeaderFlag, NotifyType, PayloadType, name_of
from .errors import IntegrityError, ProtocolError
from .events import (
    Address,
    ChildLifetimes,
    ChildSaDeleted,
    ChildSaInfo,
    Event,
    IkeSaDeleted,
    IkeSaFailed,
    IkeSaKeyMaterial,
    NotifyReceived,
    PeerAddressChanged,
    PeerDead,
)
from .message import (
    DecryptedFragment,
    Message,
    decrypt_fragment,
    decrypt_message,
    encrypt_fragments,
    encrypt_message,
    reassemble_fragments,
)
from .payloads import NotifyPayload, SkfPayload, SkPayload
from .selectors import Selector
from .state import IKE_AUTHENTICATED, ChildSaState, IkeSaState, check_child, check_ike
from .window import PendingRequest, RequestWindow, ResponderWindow

if TYPE_CHECKING:
    from ..crypto.encr import SkProtector
    from ..crypto.ke import KeyExchange

log = logging.getLogger("pyipsec.ike")

Rng = Callable[[int], bytes]
KeFactory = Callable[[int], "KeyExchange"]
PayloadList = list[tuple[int, Any]]
RequestHandler = Callable[["IkeSa", Message, float], PayloadList]

#: How long a failed/deleted SA lingers to answer retransmitted requests (§2.1).
LINGER = 10.0
#: Delay before retrying an exchange refused with TEMPORARY_FAILURE (§2.25).
TEMPORARY_FAILURE_RETRY = 2.0
#: Highest outbound ESP sequence number without / with ESN (RFC 4303 §2.2, §3.3.3).
ESP_SEQ_MAX = 2**32 - 1
ESP_SEQ_MAX_ESN = 2**64 - 1
#: Rekey a Child SA when its outbound sequence number is this close to the end
#: (a 64th of the space: ~67 million packets without ESN, many seconds of traffic
#: between two reports of the data plane; RFC 4303 §3.3.3: never let it cycle).
ESP_SEQ_SOFT_SHIFT = 6
#: RFC 7383: the most fragments one message may have (bounds reassembly memory, §5).
MAX_FRAGMENTS = 64
#: The non-ESP marker in front of IKE messages on port 4500 (RFC 3948 §2.2).
NON_ESP_MARKER_LEN = 4


def esp_seq_soft_limit(esn: bool) -> int:
    """The outbound sequence number from which a Child SA is rekeyed (§3.3.3)."""
    top = ESP_SEQ_MAX_ESN if esn else ESP_SEQ_MAX
    return top - (top >> ESP_SEQ_SOFT_SHIFT)


class SaOwner(Protocol):
    """What an IkeSa needs from its manager (SPI allocation, adoption, policy lookup)."""

    def new_ike_spi(self) -> bytes: ...

    def new_child_spi(self) -> int: ...

    def adopt(self, sa: IkeSa) -> None: ...

    def conns_for(self, local: Address, remote: Address) -> list[ConnectionConfig]: ...

    def initial_contact(self, sa: IkeSa) -> None: ...

    def reauthenticate(self, sa: IkeSa, now: float) -> bool: ...


def rand_fraction(rng: Rng) -> float:
    """A uniform float in [0, 1) from the injected rng."""
    return int.from_bytes(rng(4), "big") / 2**32


@dataclass(eq=False)
class ChildSa:
    """One Child SA pair as the IKE SA tracks it."""

    config: ChildConfig
    spi_in: int
    spi_out: int
    suite: ChildSuite
    suite_str: str
    encr_in: bytes = field(repr=False)
    integ_in: bytes = field(repr=False)
    encr_out: bytes = field(repr=False)
    integ_out: bytes = field(repr=False)
    local_ts: tuple[Selector, ...]
    remote_ts: tuple[Selector, ...]
    transport: bool
    created: float
    nonces: tuple[bytes, bytes]  # (Ni, Nr) of the exchange that created it
    initiated_by_us: bool
    state: ChildSaState = ChildSaState.INSTALLED
    soft_at: float | None = None
    hard_at: float | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    packets_in: int = 0
    packets_out: int = 0
    seq_out: int = 0  # last outbound ESP sequence number the data plane reported
    last_used: float = 0.0
    # §2.8.1 bookkeeping: the SA we created answering the peer's rekey of this one
    collision: ChildSa | None = None
    # the SA that replaced this one (set on REKEYED)
    replaced_by: ChildSa | None = None
    tfc_ok: bool = True
    info: ChildSaInfo | None = None

    @property
    def name(self) -> str:
        return self.config.name

    def set_state(self, new: ChildSaState) -> None:
        check_child(self.state, new)
        self.state = new


@dataclass(slots=True)
class _FragmentSet:
    """An IKE message being reassembled from its fragments (RFC 7383 §2.6)."""

    total: int
    header: Message  # a parsed fragment of the set (fragment 1 once it arrived)
    deadline: float  # discarded when still incomplete (§2.6)
    fragments: dict[int, DecryptedFragment] = field(default_factory=dict)


@dataclass(slots=True)
class _QueuedExchange:
    start: Callable[[float], bool]  # returns True when it sent a request
    label: str
    not_before: float = 0.0


class IkeSa:
    """One IKE SA (RFC 7296), either role.

    ``initiator`` is the *original initiator* role of this IKE SA (it decides the
    I flag, §3.1, and which SPI is ours).  Build with :meth:`IkeManager.initiate`
    or let the manager create responders; tests may build one directly.
    """

    def __init__(
        self,
        conn: ConnectionConfig,
        *,
        ike_id: int,
        initiator: bool,
        local: Address,
        remote: Address,
        owner: SaOwner,
        rng: Rng,
        ke_factory: KeFactory,
        now: float,
    ) -> None:
        self.conn = conn
        self._retry: tuple[Any, RetryPolicy] | None = None
        self.ike_id = ike_id
        self.initiator = initiator
        self.local: Address = local
        self.remote: Address = remote
        self.owner = owner
        self.rng = rng
        self.ke_factory = ke_factory
        self.created = now
        self.established_at: float | None = None
        self.state = IkeSaState.INIT_SENT if initiator else IkeSaState.INIT_DONE
        self.spi_i: bytes = b"\x00" * 8
        self.spi_r: bytes = b"\x00" * 8
        self.suite: IkeSuite | None = None
        self.suite_str = ""
        self.keys: IkeKeys | None = None
        self.prot_out: SkProtector | None = None
        self.prot_in: SkProtector | None = None
        self.ni = b""
        self.nr = b""
        self.msg1 = b""  # IKE_SA_INIT request as sent (AUTH, §2.15)
        self.msg2 = b""  # IKE_SA_INIT response as sent
        self.local_id = ""
        self.remote_id = ""
        # NAT traversal (§2.23)
        self.nat_local = False
        self.nat_remote = False
        self.nat_supported = False
        # IKE fragmentation (RFC 7383): both ends announced it in IKE_SA_INIT
        self.fragmentation = False
        self.frag_sets: dict[tuple[int, bool], _FragmentSet] = {}
        # window (§2.3)
        self.req_win = RequestWindow(1)
        self.resp_win = ResponderWindow(conn.window_size if conn.window_size > 0 else 1)
        self.peer_window = 1
        self.queue: deque[_QueuedExchange] = deque()
        self.children: dict[int, ChildSa] = {}
        self.outbox: list[tuple[bytes, Address, Address]] = []
        self.events: list[Event] = []
        # lifetimes
        self.rekey_at: float | None = None
        self.expire_at: float | None = None
        # liveness (§2.4)
        self.dpd = DpdState(conn.dpd, now, retransmit=conn.retransmit)
        self.dpd_probe = False  # our liveness request is in flight
        self.liveness_report = False  # emit LivenessAnswered for it (a requested check)
        self.keepalive = NatKeepalive(conn.keepalive_interval, enabled=False)
        self.keepalive_due = False
        self.mapping: MappingTracker | None = None
        self.esp_reports = 0
        self.reauth_of: IkeSa | None = None  # the IKE SA this one reauthenticates
        # misc state used by the exchanges
        self.remove_at: float | None = None
        self.half_open_deadline: float | None = None
        self.pending_children: list[ChildConfig] = []  # to create once established
        self.init_ctx: Any = None  # exchanges.init context (initiator)
        self.auth_ctx: Any = None
        self.rekey_ctx: Any = None  # exchanges.ike_rekey context while we rekey
        self.rekey_collision: Any = None  # the new IKE SA we created answering a peer rekey
        self.initial_contact_seen = False
        self.replaced_by: IkeSa | None = None
        self.temp_failures = 0
        self.deferred: list[tuple[float, Callable[[float], None]]] = []
        self.dead_children: list[str] = []
        # the recovery table (recovery.DEFAULT_TABLE with this connection's dpd_action
        # rows): every error decision of the SA is read there, counted and rate-limited
        self.errors = ErrorHandler.for_connection(conn)

    # ------------------------------------------------------------------ basics

    @property
    def retry_policy(self) -> RetryPolicy:
        """Request retransmission (§2.1): the connection's ``retransmit`` settings as
        the shared :class:`~pyipsec.recovery.RetryPolicy` (cached per config object)."""
        cfg = self.conn.retransmit
        cached = self._retry
        if cached is None or cached[0] is not cfg:
            cached = self._retry = (cfg, RetryPolicy.from_retransmit_config(cfg))
        return cached[1]

    @property
    def our_spi(self) -> bytes:
        return self.spi_i if self.initiator else self.spi_r

    @property
    def peer_spi(self) -> bytes:
        return self.spi_r if self.initiator else self.spi_i

    @property
    def name(self) -> str:
        return self.conn.name

    @property
    def established(self) -> bool:
        return self.state in (IkeSaState.ESTABLISHED, IkeSaState.REKEYING)

    @property
    def encap(self) -> bool:
        """UDP-encapsulate ESP: a NAT (real or faked by either side) was detected."""
        return self.nat_local or self.nat_remote

    def set_state(self, new: IkeSaState) -> None:
        check_ike(self.state, new)
        if new is not self.state:
            log.debug(
                "IKE SA %d (%s): %s -> %s", self.ike_id, self.name, self.state.value, new.value
            )
        self.state = new

    def emit(self, ev: Event) -> None:
        self.events.append(ev)

    def key_material(self) -> IkeSaKeyMaterial | None:
        """SPIs, suite and SK_e*/SK_a* for a key log (None before IKE_SA_INIT is done)."""
        if self.suite is None or self.keys is None:
            return None
        k = self.keys
        return IkeSaKeyMaterial(
            self.spi_i,
            self.spi_r,
            self.suite.encr_id,
            self.suite.key_bits,
            self.suite.integ_id,
            k.sk_ei,
            k.sk_er,
            k.sk_ai,
            k.sk_ar,
        )

    def install_keys(self, suite: IkeSuite, keys: IkeKeys) -> None:
        """Set SK_e/SK_a protectors for both directions (§2.14)."""
        self.suite = suite
        self.keys = keys
        iv = None if is_aead(suite.encr_id) else self.rng
        ei = make_sk_protector(
            suite.encr_id, suite.key_bits, suite.integ_id, keys.sk_ei, keys.sk_ai, iv_source=iv
        )
        er = make_sk_protector(
            suite.encr_id, suite.key_bits, suite.integ_id, keys.sk_er, keys.sk_ar, iv_source=iv
        )
        self.prot_out, self.prot_in = (ei, er) if self.initiator else (er, ei)

    def on_error(self, kind: ErrorKind, now: float, detail: str = "") -> HandledError:
        """Look ``kind`` up in the recovery table, count it (also in the manager's
        totals) and log it at the row's level, rate-limited where the row says so
        (RFC 7296 §2.21.4).  The caller acts on ``.decision`` / ``.answer``."""
        h = self.errors.handle(kind, now)
        count = getattr(self.owner, "count_error", None)
        if count is not None:
            count(kind)
        if h.log:
            suppressed = self.errors.suppressed(kind)
            log.log(
                h.decision.log_level,
                "IKE SA %d (%s): %s%s%s",
                self.ike_id,
                self.conn.name,
                kind.value,
                f": {detail}" if detail else "",
                f" ({suppressed} similar suppressed)" if suppressed else "",
            )
        return h

    # ------------------------------------------------------------------ sending

    def _flags(self, response: bool) -> int:
        f = HeaderFlag.INITIATOR if self.initiator else HeaderFlag.NONE
        if response:
            f |= HeaderFlag.RESPONSE
        return int(f)

    def build(self, exchange: int, message_id: int, payloads: PayloadList, response: bool) -> bytes:
        msg = Message(
            spi_i=self.spi_i,
            spi_r=self.spi_r,
            exchange=exchange,
            flags=self._flags(response),
            message_id=message_id,
            payloads=list(payloads),
        )
        if exchange == ExchangeType.IKE_SA_INIT:
            return msg.serialise()
        assert self.prot_out is not None
        return encrypt_message(msg, self.prot_out)

    def build_packets(
        self, exchange: int, message_id: int, payloads: PayloadList, response: bool
    ) -> list[bytes]:
        """Like :meth:`build`, as SKF fragments when the message is too long and the
        peer supports IKE fragmentation (RFC 7383 §2.5; IKE_AUTH and later only)."""
        try:
            data = self.build(exchange, message_id, payloads, response)
        except ValueError:  # too long for one SK payload
            if not self.fragmentation:
                raise
            data = b""
        limit = self.conn.fragment_size
        if self.remote[1] != 500:
            limit -= NON_ESP_MARKER_LEN  # §2.5.1: the datagram, marker included
        if (
            not self.fragmentation
            or exchange == ExchangeType.IKE_SA_INIT
            or (data and len(data) <= limit)
        ):
            return [data]
        assert self.prot_out is not None
        msg = Message(
            spi_i=self.spi_i,
            spi_r=self.spi_r,
            exchange=exchange,
            flags=self._flags(response),
            message_id=message_id,
            payloads=list(payloads),
        )
        packets = encrypt_fragments(msg, self.prot_out, limit)
        log.debug(
            "IKE SA %d: %s #%d as %d fragments",
            self.ike_id,
            name_of(ExchangeType, exchange),
            message_id,
            len(packets),
        )
        return packets

    def send_raw(self, data: bytes) -> None:
        self.outbox.append((data, self.local, self.remote))

    def enqueue(
        self, start: Callable[[float], bool], label: str, now: float, front: bool = False
    ) -> None:
        """Queue an exchange to start as soon as the window allows (§2.3)."""
        q = _QueuedExchange(start, label)
        if front:
            self.queue.appendleft(q)
        else:
            self.queue.append(q)
        self.pump(now)

    def pump(self, now: float) -> None:
        """Start queued exchanges while the window has room."""
        while (
            self.queue
            and self.req_win.can_send()
            and self.state
            not in (
                IkeSaState.DELETED,
                IkeSaState.FAILED,
            )
        ):
            q = self.queue[0]
            if q.not_before > now:
                break
            self.queue.popleft()
            try:
                q.start(now)
            except ProtocolError as exc:  # a local failure building the request
                log.warning("IKE SA %d: cannot start %s: %s", self.ike_id, q.label, exc)

    def send_request(
        self,
        exchange: int,
        payloads: PayloadList,
        handler: Callable[[Message, float], None],
        now: float,
        *,
        label: str = "",
        on_timeout: Callable[[], None] | None = None,
        message_id: int | None = None,
    ) -> PendingRequest:
        """Send a request now (the caller checked the window) and track its response."""
        mid = self.req_win.allocate() if message_id is None else message_id
        packets = self.build_packets(exchange, mid, payloads, response=False)
        if exchange == ExchangeType.IKE_SA_INIT:
            self.msg1 = packets[0]
        req = PendingRequest(
            message_id=mid,
            exchange=exchange,
            packets=packets,
            handler=handler,
            first_sent=now,
            deadline=now + self.retry_policy.delay(0, self.rng),
            label=label or name_of(ExchangeType, exchange),
            on_timeout=on_timeout,
        )
        self.req_win.add(req)
        for data in packets:
            self.send_raw(data)
        log.debug("IKE SA %d: -> %s request #%d", self.ike_id, req.label, mid)
        return req

    # ------------------------------------------------------------------ receiving

    def receive(
        self, data: bytes, hdr: Message, local: Address, remote: Address, now: float
    ) -> None:
        """One IKE message for this SA (header already parsed by the manager)."""
        from .exchanges import init as init_x

        if hdr.exchange == ExchangeType.IKE_SA_INIT:
            init_x.receive(self, data, hdr, local, remote, now)
            return
        if self.prot_in is None:
            log.debug("IKE SA %d: %s before keys, dropped", self.ike_id, hdr.exchange)
            return
        if isinstance(hdr.encrypted, SkfPayload):
            self._receive_fragment(data, hdr, hdr.encrypted, local, remote, now)
            self.pump(now)
            return
        if not isinstance(hdr.encrypted, SkPayload):
            # unprotected: never acted upon (§2.21.4); INVALID_IKE_SPI may hint a dead peer
            n = hdr.notify(NotifyType.INVALID_IKE_SPI) if hdr.is_response else None
            log.info(
                "IKE SA %d: unprotected %s dropped%s",
                self.ike_id,
                name_of(ExchangeType, hdr.exchange),
                " (INVALID_IKE_SPI)" if n is not None else "",
            )
            if n is not None and self.established and self.conn.dpd.enabled:
                from .exchanges import informational

                informational.start_liveness(self, now)
            return
        if hdr.flags & HeaderFlag.RESPONSE:
            self._receive_response(data, hdr, local, remote, now)
        else:
            self._receive_request(data, hdr, local, remote, now)
        self.pump(now)

    def _decrypt(self, data: bytes, now: float) -> Message | None:
        assert self.prot_in is not None
        try:
            return decrypt_message(data, self.prot_in)
        except IntegrityError as exc:
            # §3.14: dropped, never answered (the table's DROP_SILENTLY + COUNT)
            self.on_error(ErrorKind.INTEGRITY_CHECK_FAILED, now, str(exc))
            return None

    def _receive_fragment(
        self,
        data: bytes,
        hdr: Message,
        skf: SkfPayload,
        local: Address,
        remote: Address,
        now: float,
    ) -> None:
        """One IKE Fragment message (RFC 7383 §2.6): verify it, queue it, and process
        the reassembled message like an unfragmented one once the set is complete."""
        assert self.prot_in is not None
        mid, response = hdr.message_id, hdr.is_response
        self._expire_fragments(now)
        if not self.fragmentation:
            log.info("IKE SA %d: IKE fragment without negotiated support dropped", self.ike_id)
            return
        if response:
            req = self.req_win.pending.get(mid)
            if req is None or req.exchange != hdr.exchange:
                log.debug("IKE SA %d: unexpected response fragment #%d dropped", self.ike_id, mid)
                return
        else:
            kind = self.resp_win.classify(mid)
            if kind == "old":
                log.debug("IKE SA %d: stale request fragment #%d dropped", self.ike_id, mid)
                return
            if kind == "retransmit":
                # §2.6.1: only fragment 1 of an answered request triggers the resend
                if skf.fragment_number != 1 or self._open_fragment(data, hdr, now) is None:
                    return
                cached = self.resp_win.cached(mid)
                if cached:
                    log.debug("IKE SA %d: retransmitted request #%d, resending", self.ike_id, mid)
                    for pkt in cached:
                        self.outbox.append((pkt, local, remote))
                return
        if skf.total_fragments > MAX_FRAGMENTS:
            log.info(
                "IKE SA %d: message #%d in %d fragments (more than %d) dropped",
                self.ike_id,
                mid,
                skf.total_fragments,
                MAX_FRAGMENTS,
            )
            return
        key = (mid, response)
        st = self.frag_sets.get(key)
        # §2.6: an older set size is invalid; the same fragment again is a replay
        if st is not None and (
            skf.total_fragments < st.total
            or (skf.total_fragments == st.total and skf.fragment_number in st.fragments)
        ):
            return
        frag = self._open_fragment(data, hdr, now)
        if frag is None:
            return
        if st is None or frag.total_fragments > st.total:
            # §2.6: a set with more fragments replaces the one being reassembled
            st = _FragmentSet(frag.total_fragments, hdr, now + self.retry_policy.total_time())
            self.frag_sets[key] = st
        st.fragments[frag.fragment_number] = frag
        if frag.fragment_number == 1:
            st.header = hdr
        if len(st.fragments) < st.total:
            return
        del self.frag_sets[key]
        fragments = list(st.fragments.values())

        def opener() -> Message:
            return reassemble_fragments(st.header, fragments)

        log.debug(
            "IKE SA %d: %s #%d reassembled from %d fragments",
            self.ike_id,
            "response" if response else "request",
            mid,
            st.total,
        )
        if response:
            self._receive_response(data, st.header, local, remote, now, opener)
        else:
            self._receive_request(data, st.header, local, remote, now, opener)

    def _open_fragment(self, data: bytes, hdr: Message, now: float) -> DecryptedFragment | None:
        assert self.prot_in is not None
        try:
            return decrypt_fragment(data, self.prot_in, hdr)
        except IntegrityError as exc:
            # §2.6: silently discarded (counted like any ICV failure, §3.14)
            self.on_error(ErrorKind.INTEGRITY_CHECK_FAILED, now, f"fragment: {exc}")
        except ProtocolError as exc:
            log.debug("IKE SA %d: malformed fragment dropped: %s", self.ike_id, exc)
        return None

    def _expire_fragments(self, now: float) -> None:
        """Forget incomplete fragment sets past their timeout, or whose message is no
        longer wanted (its request was answered or given up, RFC 7383 §2.6)."""
        for (mid, response), st in list(self.frag_sets.items()):
            stale = (
                mid not in self.req_win.pending
                if response
                else self.resp_win.classify(mid) != "new"
            )
            if stale or st.deadline <= now:
                log.debug(
                    "IKE SA %d: incomplete fragments of #%d discarded", self.ike_id, mid
                )
                del self.frag_sets[(mid, response)]

    def _receive_response(
        self,
        data: bytes,
        hdr: Message,
        local: Address,
        remote: Address,
        now: float,
        opener: Callable[[], Message | None] | None = None,
    ) -> None:
        req = self.req_win.pending.get(hdr.message_id)
        if req is None or req.exchange != hdr.exchange:
            log.debug("IKE SA %d: unexpected response #%d dropped", self.ike_id, hdr.message_id)
            return
        try:
            msg = self._decrypt(data, now) if opener is None else opener()
        except ProtocolError as exc:
            # authenticated but malformed inside: give up on this exchange (§2.21)
            h = self.on_error(
                kind_for_exception(exc, protected=True, is_request=False),
                now,
                f"response #{hdr.message_id}: {exc}",
            )
            if self.req_win.take(hdr.message_id) is not None and h.decision.has(
                RecoveryAction.DELETE_SA
            ):
                self.fail(
                    now,
                    f"malformed response: {exc}",
                    exc.notify,
                    send_delete=h.decision.send_delete,
                )
            return
        if msg is None:
            return
        self.req_win.take(hdr.message_id)
        self.heard(local, remote, now, space="ike-response", sequence=hdr.message_id)
        fatal = False
        for n in msg.error_notifies():
            kind = kind_for_received_notify(int(n.type), in_response=True)
            if kind is not None:
                h = self.on_error(kind, now, f"in the {req.label} response")
                # §2.21.3: the peer found our request malformed and closed the IKE SA
                fatal |= kind is ErrorKind.INVALID_SYNTAX_RECEIVED and h.decision.has(
                    RecoveryAction.DELETE_SA
                )
            if hdr.exchange == ExchangeType.INFORMATIONAL:
                # §2.21.3: an error in an INFORMATIONAL response is reported, nothing more
                self.emit(NotifyReceived(self.ike_id, int(n.type), n.data, True))
        req.handler(msg, now)
        if fatal and self.state in IKE_AUTHENTICATED:
            self.finish(now, "INVALID_SYNTAX received")

    def _receive_request(
        self,
        data: bytes,
        hdr: Message,
        local: Address,
        remote: Address,
        now: float,
        opener: Callable[[], Message | None] | None = None,
    ) -> None:
        kind = self.resp_win.classify(hdr.message_id)
        if kind == "old":
            log.debug("IKE SA %d: stale request #%d dropped", self.ike_id, hdr.message_id)
            return
        try:
            msg = self._decrypt(data, now) if opener is None else opener()
        except ProtocolError as exc:
            self._malformed_request(hdr, exc, kind == "new", now)
            return
        if msg is None:
            return
        if kind == "retransmit":
            cached = self.resp_win.cached(hdr.message_id)
            if cached:
                log.debug(
                    "IKE SA %d: retransmitted request #%d, resending", self.ike_id, hdr.message_id
                )
                for pkt in cached:
                    self.outbox.append((pkt, local, remote))
            return
        if self.state is IkeSaState.INIT_DONE:
            # IKE_AUTH may arrive on the floated port (§2.23)
            self.local, self.remote = local, remote
        self.heard(local, remote, now, space="ike-request", sequence=hdr.message_id)
        handler = self._request_handler(hdr.exchange)
        if handler is None:
            what = name_of(ExchangeType, hdr.exchange)
            if self.state in IKE_AUTHENTICATED:
                # §2.21.3: every request of an authenticated IKE SA is answered; one we
                # cannot process at all is malformed (left unanswered, it would block
                # the window: the peer's next Message ID would be dropped as old)
                self._malformed_request(hdr, ProtocolError(f"unexpected {what}"), True, now)
            else:
                log.info("IKE SA %d: unsupported exchange %s dropped", self.ike_id, what)
            return
        try:
            payloads = handler(self, msg, now)
        except ProtocolError as exc:
            log.info(
                "IKE SA %d: %s request failed: %s",
                self.ike_id,
                name_of(ExchangeType, hdr.exchange),
                exc,
            )
            if exc.notify == NotifyType.INVALID_SYNTAX:
                # a badly formed request (missing or contradictory payloads, an invalid
                # KE value): answered like a malformed one, fatal (§2.21.3)
                self._malformed_request(hdr, exc, True, now)
                return
            payloads = [(PayloadType.NOTIFY, NotifyPayload(0, b"", exc.notify, exc.data))]
        self._answer(hdr, payloads)

    def _malformed_request(self, hdr: Message, exc: ProtocolError, new: bool, now: float) -> None:
        """A request that passed the ICV but does not parse (§2.21.3, §2.5): the
        recovery table decides -- INVALID_SYNTAX / UNSUPPORTED_CRITICAL_PAYLOAD is
        answered (never before IKE_AUTH authenticated the peer), and INVALID_SYNTAX
        is fatal for the IKE SA without a Delete (the peer closes it too)."""
        # never answered before IKE_AUTH authenticated the peer (also not in AUTH_SENT,
        # where the initiator has not yet verified the responder)
        authenticated = self.state in IKE_AUTHENTICATED
        h = self.on_error(
            kind_for_exception(exc, protected=authenticated, is_request=True),
            now,
            f"request #{hdr.message_id}: {exc}",
        )
        d = h.decision
        if not new or not authenticated or not h.answer or d.notify is None:
            return
        self._answer(hdr, [(PayloadType.NOTIFY, NotifyPayload(0, b"", int(d.notify), exc.data))])
        fatal = d.notify == NotifyType.INVALID_SYNTAX or (
            d.has(RecoveryAction.DELETE_SA) and d.scope is Scope.IKE_SA
        )
        if fatal and self.state in IKE_AUTHENTICATED:
            # §2.21.3: INVALID_SYNTAX is fatal in both peers, whatever the state
            self.finish(now, f"{d.notify.name} sent")

    def _answer(self, hdr: Message, payloads: PayloadList) -> None:
        packets = self.build_packets(hdr.exchange, hdr.message_id, payloads, response=True)
        # the cached response is the whole fragment list (RFC 7383 §2.6.1)
        self.resp_win.store(hdr.message_id, packets)
        for data in packets:
            self.send_raw(data)

    def _request_handler(self, exchange: int) -> RequestHandler | None:
        from .exchanges import auth, child, informational

        if exchange == ExchangeType.IKE_AUTH:
            return auth.handle_request if not self.initiator else None
        if self.state not in (
            IkeSaState.ESTABLISHED,
            IkeSaState.REKEYING,
            IkeSaState.REKEYED,
            IkeSaState.DELETING,
        ):
            return None
        if exchange == ExchangeType.CREATE_CHILD_SA:
            return child.handle_request
        if exchange == ExchangeType.INFORMATIONAL:
            return informational.handle_request
        return None

    def successor(self) -> IkeSa:
        """The IKE SA that now carries this one's children (itself unless rekeyed)."""
        cur = self
        seen = {id(cur)}
        while cur.replaced_by is not None and id(cur.replaced_by) not in seen:
            cur = cur.replaced_by
            seen.add(id(cur))
        return cur

    @property
    def last_heard(self) -> float:
        """When we last received something authenticated from the peer (§2.4)."""
        return self.dpd.last_received

    def nat_established(self) -> None:
        """NAT state is final (IKE SA up): start keepalives and mapping tracking (§2.23)."""
        self.keepalive.enabled = self.nat_local
        really_local = self.nat_local and not self.conn.encap
        self.mapping = MappingTracker(
            self.remote, peer_behind_nat=self.nat_remote, local_behind_nat=really_local
        )

    def heard(
        self,
        local: Address,
        remote: Address,
        now: float,
        *,
        space: object = "ike",
        sequence: int = 0,
    ) -> None:
        """An authenticated message (or ESP packet) arrived: proof of liveness (§2.4);
        follow the peer's NAT mapping when it moves (§2.23, no MOBIKE)."""
        self.dpd.on_authenticated_traffic(now)
        if not self.established or self.mapping is None:
            return
        if self.mapping.observe(remote, authenticated=True, space=space, sequence=sequence):
            old = self.remote
            self.remote = remote
            if local[1] == self.local[1] or space == "ike":
                self.local = local
            log.info(
                "IKE SA %d: peer moved from %s to %s",
                self.ike_id,
                format_endpoint(old),
                format_endpoint(remote),
            )
            self.emit(PeerAddressChanged(self.ike_id, old, remote))
            self.refresh_children()

    # ------------------------------------------------------------------ children

    def child_lifetimes(self, lt: Lifetimes, now: float) -> tuple[float | None, float | None]:
        """(soft, hard) deadlines with the random jitter of rand_time (§2.8)."""
        if lt.rekey_time <= 0:
            hard = now + lt.over_time if lt.over_time > 0 else None
            return None, hard
        soft = now + lt.rekey_time - lt.rand_time * rand_fraction(self.rng)
        hard = now + lt.rekey_time + lt.over_time if lt.over_time > 0 else None
        return soft, hard

    def make_info(self, c: ChildSa) -> ChildSaInfo:
        lt = c.config.lifetimes
        return ChildSaInfo(
            ike_id=self.ike_id,
            conn=self.conn.name,
            child=c.config.name,
            spi_in=c.spi_in,
            spi_out=c.spi_out,
            encr_id=c.suite.encr_id,
            key_bits=c.suite.key_bits,
            integ_id=c.suite.integ_id,
            esn=c.suite.esn,
            encr_key_in=c.encr_in,
            integ_key_in=c.integ_in,
            encr_key_out=c.encr_out,
            integ_key_out=c.integ_out,
            local_ts=c.local_ts,
            remote_ts=c.remote_ts,
            mode=Mode.TRANSPORT if c.transport else Mode.TUNNEL,
            encap=self.encap,
            local=self.local,
            remote=self.remote,
            lifetimes=ChildLifetimes(
                soft=c.soft_at,
                hard=c.hard_at,
                rekey_bytes=lt.rekey_bytes,
                life_bytes=lt.life_bytes,
                rekey_packets=lt.rekey_packets,
                life_packets=lt.life_packets,
            ),
            replay_window=c.config.replay_window,
            suite=c.suite_str,
            pfs_group=c.suite.dh_group or None,
            tfc_padding=c.config.tfc_padding and c.tfc_ok,
        )

    def add_child(self, c: ChildSa) -> ChildSaInfo:
        c.info = self.make_info(c)
        self.children[c.spi_in] = c
        return c.info

    def refresh_children(self) -> None:
        for c in self.children.values():
            c.info = self.make_info(c)

    def child_by_out(self, spi_out: int) -> ChildSa | None:
        for c in self.children.values():
            if c.spi_out == spi_out:
                return c
        return None

    def remove_child(self, c: ChildSa, reason: str) -> None:
        """Forget a child and tell the data plane to remove it."""
        if self.children.pop(c.spi_in, None) is None:
            return
        if c.state is not ChildSaState.DELETED:
            c.set_state(ChildSaState.DELETED)
        self.emit(ChildSaDeleted(c.spi_in, c.spi_out, reason, self.ike_id, self.conn.name, c.name))

    # ------------------------------------------------------------------ ending

    def _drop_children(self, reason: str) -> None:
        for c in list(self.children.values()):
            self.remove_child(c, reason)

    def finish(self, now: float, reason: str) -> None:
        """The IKE SA is gone (deleted by either side): remove children, emit, linger."""
        if self.state in (IkeSaState.DELETED, IkeSaState.FAILED):
            return
        self._drop_children(reason)
        was_established = self.established_at is not None
        self.set_state(IkeSaState.DELETED)
        self.queue.clear()
        self.req_win.pending.clear()
        self.remove_at = now + LINGER
        if was_established:
            self.emit(IkeSaDeleted(self.ike_id, self.conn.name, reason))
        else:
            self.emit(IkeSaFailed(self.ike_id, self.conn.name, reason, None))

    def fail(
        self, now: float, reason: str, notify: int | None = None, *, send_delete: bool = False
    ) -> None:
        """Setup or operation failure: IkeSaFailed; optionally tell the peer (§2.21.2)."""
        if self.state in (IkeSaState.DELETED, IkeSaState.FAILED):
            return
        log.warning("IKE SA %d (%s) failed: %s", self.ike_id, self.name, reason)
        old = self.reauth_of
        if old is not None and old.established:
            old.rekey_at = now + 30.0  # reauthentication failed: try again later
        if send_delete and self.prot_out is not None:
            from .payloads import DeletePayload

            mid = self.req_win.allocate()
            data = self.build(
                ExchangeType.INFORMATIONAL,
                mid,
                [(PayloadType.DELETE, DeletePayload.delete_ike_sa())],
                False,
            )
            self.send_raw(data)
        self._drop_children(reason)
        self.set_state(IkeSaState.FAILED)
        self.queue.clear()
        self.req_win.pending.clear()
        self.remove_at = now + LINGER
        self.emit(IkeSaFailed(self.ike_id, self.conn.name, reason, notify))

    def vanish(self, now: float) -> None:
        """Forget silently (replaced by a rekeyed SA, or a half-open responder timing out)."""
        if self.state not in (IkeSaState.DELETED, IkeSaState.FAILED):
            self.set_state(IkeSaState.DELETED)
        self.queue.clear()
        self.req_win.pending.clear()
        self.children.clear()
        self.remove_at = now + LINGER

    def peer_dead(self, now: float, actions: tuple[RecoveryAction, ...] | None = None) -> None:
        """Retransmissions exhausted on an established SA (§2.4).  What follows the
        deletion comes from the recovery table row (``ErrorHandler.for_connection``
        turns dpd_action into RESET_CONNECTION = restart or TRAP = trap); a child with
        its own ``dpd_action`` follows that instead (PeerDead.children), so only the
        children whose action is restart are re-initiated (``dead_children``)."""
        if actions is None:
            actions = self.errors.decide(ErrorKind.PEER_DEAD).actions
        if RecoveryAction.RESET_CONNECTION in actions:
            action = DpdAction.RESTART
        elif RecoveryAction.TRAP in actions:
            action = DpdAction.TRAP
        else:
            action = DpdAction.CLEAR
        # a child's own dpd_action wins for that child (None = the connection's action)
        per_child: dict[str, DpdAction] = {}
        for c in self.children.values():
            own = c.config.dpd_action
            per_child.setdefault(c.config.name, action if own is None else own)
        self.dead_children = [n for n, a in per_child.items() if a is DpdAction.RESTART]
        self.dpd.on_check_failed(now, "retransmissions exhausted")
        self.emit(PeerDead(self.ike_id, self.conn.name, action, tuple(per_child.items())))
        self._drop_children("peer dead")
        if self.state not in (IkeSaState.DELETED, IkeSaState.FAILED):
            self.set_state(IkeSaState.DELETED)
        self.queue.clear()
        self.req_win.pending.clear()
        self.remove_at = now
        self.emit(IkeSaDeleted(self.ike_id, self.conn.name, "peer dead"))

    # ------------------------------------------------------------------ timers

    def next_timer(self) -> float | None:
        cands: list[float] = []
        d = self.req_win.next_deadline()
        if d is not None:
            cands.append(d)
        if self.state in (IkeSaState.DELETED, IkeSaState.FAILED):
            if self.remove_at is not None:
                cands.append(self.remove_at)
            return min(cands, default=None)
        if self.half_open_deadline is not None:
            cands.append(self.half_open_deadline)
        cands.extend(st.deadline for st in self.frag_sets.values())
        for t, _ in self.deferred:
            cands.append(t)
        if self.queue and self.req_win.can_send():
            cands.append(self.queue[0].not_before)
        if self.established:
            if self.rekey_at is not None:
                cands.append(self.rekey_at)
            if self.expire_at is not None:
                cands.append(self.expire_at)
            for c in self.children.values():
                if c.soft_at is not None and c.state is ChildSaState.INSTALLED:
                    cands.append(c.soft_at)
                if c.hard_at is not None:
                    cands.append(c.hard_at)
            dpd = self.dpd_deadline()
            if dpd is not None:
                cands.append(dpd)
            ka = self.keepalive.next_deadline()
            if ka is not None:
                cands.append(ka)
        return min(cands, default=None)

    def dpd_deadline(self) -> float | None:
        """Next liveness check (DpdState); an outstanding one is governed by retransmission
        and, at the latest, by its probe timeout (``dpd_timeout``, see handle_timer)."""
        if self.dpd.outstanding:
            return self.dpd.next_deadline()
        if self.dpd_probe or not self.dpd.enabled:
            return None
        if self.req_win.pending or self.queue:
            # an exchange is under way: its answer is proof of life, its timeout is death
            return None
        return self.dpd.next_deadline()

    def handle_timer(self, now: float) -> None:
        from .exchanges import child, ike_rekey, informational

        if self.frag_sets:
            self._expire_fragments(now)
        # retransmissions (§2.1)
        for req in list(self.req_win.pending.values()):
            if req.deadline > now:
                continue
            policy = self.retry_policy
            if not policy.exhausted(req.retransmits):
                req.retransmits += 1
                req.deadline = now + policy.delay(req.retransmits, self.rng)
                log.debug(
                    "IKE SA %d: retransmit %s #%d (%d)",
                    self.ike_id,
                    req.label,
                    req.message_id,
                    req.retransmits,
                )
                for pkt in req.packets:
                    self.send_raw(pkt)
                continue
            self.req_win.take(req.message_id)
            h = self.on_error(
                ErrorKind.RETRANSMITS_EXHAUSTED, now, f"{req.label} #{req.message_id}"
            )
            if req.on_timeout is not None:
                req.on_timeout()
            elif self.established_at is None:
                self.fail(now, f"{req.label}: no response (retransmissions exhausted)")
            else:
                self.peer_dead(now, h.decision.actions)
            if self.state in (IkeSaState.DELETED, IkeSaState.FAILED):
                return
        if self.state in (IkeSaState.DELETED, IkeSaState.FAILED):
            return
        if self.established and self.dpd.probe_expired(now):
            # the liveness request stayed unanswered for probe_timeout (dpd_timeout caps
            # the retransmissions): dead now, as dpd.max_detection_time promises
            self.on_error(ErrorKind.RETRANSMITS_EXHAUSTED, now, "INFORMATIONAL liveness")
            self.peer_dead(now)
            return
        if self.half_open_deadline is not None and now >= self.half_open_deadline:
            self.half_open_deadline = None
            if self.established_at is None:
                self.on_error(ErrorKind.HALF_OPEN_TIMEOUT, now)
                if self.initiator:
                    self.fail(now, "setup timeout")
                else:
                    self.vanish(now)
                return
        due = [d for d in self.deferred if d[0] <= now]
        if due:
            self.deferred = [d for d in self.deferred if d[0] > now]
            for _, fn in due:
                fn(now)
        if self.established:
            if self.expire_at is not None and now >= self.expire_at:
                self.expire_at = None
                informational.start_delete_ike(self, now, reason="IKE SA lifetime expired")
                return
            if self.rekey_at is not None and now >= self.rekey_at:
                self.rekey_at = None
                if self.conn.reauth and self.owner.reauthenticate(self, now):
                    pass  # make-before-break: a new IKE SA replaces this one (§2.8.3)
                else:
                    ike_rekey.start(self, now)
            for c in list(self.children.values()):
                if c.hard_at is not None and now >= c.hard_at:
                    c.hard_at = None
                    informational.start_delete_children(
                        self, [c], now, reason="hard lifetime expired"
                    )
                elif (
                    c.soft_at is not None and now >= c.soft_at and c.state is ChildSaState.INSTALLED
                ):
                    c.soft_at = None
                    child.start_rekey(self, c, now)
            if self.dpd.check_due(now) and not self.req_win.pending and not self.queue:
                informational.start_liveness(self, now)
            if self.keepalive.due(now):
                # RFC 3948 §4: the manager hands it out via keepalives_to_send()
                self.keepalive_due = True
                self.keepalive.on_sent(now)
        self.pump(now)

    # ------------------------------------------------------------------ data plane input

    def esp_activity(
        self, now: float, remote: Address | None = None, spi: int = 0, seq: int | None = None
    ) -> None:
        """Authenticated ESP arrived for one of our children: the peer is alive (§2.4).

        With ``remote`` and the ESP sequence number ``seq``, a moved NAT mapping
        of the peer is followed (§2.23)."""
        if remote is not None:
            if seq is None:
                # the data plane did its replay check but gave no number: count arrivals
                self.esp_reports += 1
                space: object = "esp-reports"
                seq = self.esp_reports
            else:
                space = ("esp", spi)
            self.heard(self.local, remote, now, space=space, sequence=seq)
        else:
            self.dpd.on_authenticated_traffic(now)

    def traffic(
        self,
        spi_in: int,
        now: float,
        *,
        bytes_in: int = 0,
        packets_in: int = 0,
        bytes_out: int = 0,
        packets_out: int = 0,
        seq_out: int | None = None,
    ) -> None:
        """Counters from the data plane (cumulative values); volume-based rekey/expiry.

        ``seq_out`` is the last outbound ESP sequence number: near the end of the
        sequence space (:func:`esp_seq_soft_limit`) the Child SA is rekeyed like at
        its soft lifetime, before the data plane has to refuse packets (RFC 4303
        §3.3.3: the counter never cycles; EspSequenceExhausted)."""
        from .exchanges import child, informational

        c = self.children.get(spi_in)
        if c is None:
            return
        if seq_out is not None and seq_out > c.seq_out:
            c.seq_out = seq_out
        if bytes_in > c.bytes_in or packets_in > c.packets_in:
            c.last_used = now
            self.esp_activity(now)
        c.bytes_in = max(c.bytes_in, bytes_in)
        c.packets_in = max(c.packets_in, packets_in)
        if packets_out > c.packets_out:
            self.keepalive.on_sent(now)
        c.bytes_out = max(c.bytes_out, bytes_out)
        c.packets_out = max(c.packets_out, packets_out)
        lt = c.config.lifetimes
        volume = max(c.bytes_in, c.bytes_out)
        pkts = max(c.packets_in, c.packets_out)
        if (lt.life_bytes and volume >= lt.life_bytes) or (
            lt.life_packets and pkts >= lt.life_packets
        ):
            if c.state not in (ChildSaState.DELETING, ChildSaState.DELETED):
                informational.start_delete_children(self, [c], now, reason="volume limit")
            return
        over_soft = (
            bool(lt.rekey_bytes and volume >= lt.rekey_bytes)
            or bool(lt.rekey_packets and pkts >= lt.rekey_packets)
            or c.seq_out >= esp_seq_soft_limit(c.suite.esn)
        )
        if over_soft and c.state is ChildSaState.INSTALLED and self.established:
            c.soft_at = None
            child.start_rekey(self, c, now)

    # ------------------------------------------------------------------ status

    def status(self, now: float | None = None) -> dict[str, Any]:
        return {
            "name": self.conn.name,
            "id": self.ike_id,
            "state": self.state.value,
            "role": "initiator" if self.initiator else "responder",
            "local": {"address": self.local[0], "port": self.local[1], "id": self.local_id},
            "remote": {"address": self.remote[0], "port": self.remote[1], "id": self.remote_id},
            "spi_i": self.spi_i.hex(),
            "spi_r": self.spi_r.hex(),
            "suite": self.suite_str,
            "nat": {
                "local": self.nat_local,
                "remote": self.nat_remote,
                "encap": self.encap,
                "forced": self.conn.encap,
            },
            "established": self.established_at,
            "rekey_at": self.rekey_at,
            "expire_at": self.expire_at,
            "dpd_last_heard": self.last_heard,
            "dpd": self.dpd.status(now),
            "errors": self.errors.status(),
            "children": [self._child_status(c) for c in self.children.values()],
        }

    def _child_status(self, c: ChildSa) -> dict[str, Any]:
        return {
            "name": c.name,
            "state": c.state.value,
            "spi_in": f"{c.spi_in:08x}",
            "spi_out": f"{c.spi_out:08x}",
            "suite": c.suite_str,
            "mode": "transport" if c.transport else "tunnel",
            "encap": self.encap,
            "local_ts": [str(s) for s in c.local_ts],
            "remote_ts": [str(s) for s in c.remote_ts],
            "rekey_at": c.soft_at,
            "expire_at": c.hard_at,
            "bytes_in": c.bytes_in,
            "bytes_out": c.bytes_out,
            "packets_in": c.packets_in,
            "packets_out": c.packets_out,
            "seq_out": c.seq_out,
            "installed": c.created,
        }

    def __repr__(self) -> str:
        return f"<IkeSa {self.ike_id} {self.conn.name} {self.state.value} {self.our_spi.hex()}>"


__all__ = [
    "ESP_SEQ_MAX",
    "ESP_SEQ_MAX_ESN",
    "LINGER",
    "TEMPORARY_FAILURE_RETRY",
    "ChildSa",
    "IkeSa",
    "SaOwner",
    "esp_seq_soft_limit",
    "rand_fraction",
]
