"""IkeSa: one IKE SA, either role (RFC 7296), sans-I/O.

An :class:`IkeSa` never touches sockets, clocks or global randomness: bytes come in
through :meth:`IkeSa.receive` with the time ``now``; outgoing datagrams and events are
collected in :attr:`IkeSa.outbox` / :attr:`IkeSa.events`; its deadlines are the named
:class:`~pyipsec.ikev2.timers.Timers`.  The :class:`~pyipsec.ikev2.manager.IkeManager`
owns many of them and dispatches datagrams by SPI.

The IKE SA keeps identity, keys, the two message-ID windows (§2.1-§2.3), its children
and a queue of :class:`~pyipsec.ikev2.tasks.base.Task` objects -- the exchanges it
initiates, each owning its own state.  Requests of the peer are dispatched through
:data:`pyipsec.ikev2.tasks.responders.RESPONDERS`.  ``state`` changes only through
:meth:`IkeSa.set_state`; the end of an IKE SA, whatever the cause, is :meth:`IkeSa.end`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ..config.model import ChildConfig, ConnectionConfig, DpdAction, Lifetimes, Mode
from ..crypto.encr import is_aead, make_sk_protector
from ..crypto.keys import IkeKeys, IkeSuite
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
from ..sa_log import SaLog
from . import deadlines
from . import status as status_view
from .child_sa import ESP_SEQ_MAX, ESP_SEQ_MAX_ESN, ChildSa, esp_seq_soft_limit
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
from .fragments import FragmentBudget, FragmentReassembler
from .message import Message, decrypt_message, encrypt_fragments, encrypt_message
from .payloads import DeletePayload, IdPayload, NotifyPayload, SkfPayload, SkPayload
from .selectors import Selector
from .state import (
    IKE_AUTHENTICATED,
    IKE_ESTABLISHED,
    IKE_FINAL,
    IKE_HALF_OPEN,
    ChildSaState,
    IkeSaState,
    check_ike,
)
from .tasks import child_rekey, config_payload, liveness
from .tasks.base import AnswerLater, KeFactory, PayloadList, Rng, Task, rand_fraction
from .tasks.child_delete import ChildDelete
from .tasks.ike_init import IkeInit, answer_retransmission
from .tasks.responders import RESPONDERS
from .timers import TimerKind, Timers
from .window import Arrival, PendingRequest, RequestWindow, ResponderWindow

if TYPE_CHECKING:
    from cryptography import x509

    from ..crypto.encr import SkProtector
    from ..crypto.ke import KeyExchange
    from .tasks.eap_auth import EapServer


#: How long a failed/deleted SA lingers to answer retransmitted requests (§2.1).
LINGER = 10.0
#: The non-ESP marker in front of IKE messages on port 4500 (RFC 3948 §2.2).
NON_ESP_MARKER_LEN = 4

T = TypeVar("T", bound=Task)

#: the header flags we send (§3.1), by (original initiator, response), as plain ints
_FLAGS = {
    (i, r): int(HeaderFlag.INITIATOR) * i | int(HeaderFlag.RESPONSE) * r
    for i in (False, True)
    for r in (False, True)
}


class SaOwner(Protocol):
    """What an IkeSa needs from its manager (SPI allocation, adoption, policy lookup)."""

    def new_ike_spi(self) -> bytes: ...

    def new_child_spi(self) -> int: ...

    def init_key_exchange(self, group: int) -> KeyExchange:
        """The responder's key exchange value for an IKE_SA_INIT answer (§2.12)."""

    def adopt(self, sa: IkeSa) -> None: ...

    def conns_for(self, local: Address, remote: Address) -> list[ConnectionConfig]: ...

    def conns_for_peer(
        self, local: Address, remote: Address, ident: IdPayload
    ) -> list[ConnectionConfig]: ...

    def initial_contact(self, sa: IkeSa) -> None: ...

    def reauthenticate(self, sa: IkeSa, now: float) -> bool: ...

    def count_error(self, kind: ErrorKind, n: int = 1, conn: str = "") -> None: ...

    def count_message(self, exchange: int, incoming: bool, request: bool, conn: str) -> None:
        """An IKE message accepted (``incoming``) or built: the IKE counters."""

    def touched(self, sa: IkeSa) -> None:
        """``sa`` has datagrams, events or deadlines the owner must look at."""

    def network_log(self, now: float, level: int, msg: str, *args: object) -> None:
        """Log a line caused by unauthenticated input, rate-limited across all SAs."""

    def wall_time(self, now: float) -> dt.datetime | None:
        """The calendar time of ``now`` (certificate validity), None when unknown."""


class IkeSa:
    """One IKE SA (RFC 7296), either role.

    ``initiator`` is the *original initiator* role of this IKE SA (it decides the
    I flag, §3.1, and which SPI is ours).  Build with :meth:`IkeManager.initiate`
    or let the manager create responders; tests may build one directly.
    """

    # no per-SA attribute dict (issue #13: ~1.6 KB per tunnel)
    __slots__ = (
        "_retry", "children", "conn", "created", "dead_children", "delayed", "dpd",
        "eap", "errors", "esp_reports", "established_at", "events", "fragment_budget",
        "fragmentation", "fragments", "ike_id", "initiator", "ke_factory", "keepalive",
        "keepalive_due", "keys", "local", "local_id", "log", "mapping", "msg1", "msg2", "nat_local",
        "nat_remote", "nat_supported", "ni", "nr", "outbox", "owner", "peer_auth", "peer_cert",
        "peer_certreq", "peer_childless", "peer_hashes", "peer_window", "pending_children",
        "prot_in", "prot_out",
        "queue", "reauth_of", "rekey_failures", "remote", "remote_id", "replaced_by", "req_win",
        "resp_win", "rng", "spi_i", "spi_r", "state", "suite", "suite_str", "timers", "vips",
    )

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
        born_established: bool = False,
        fragment_budget: FragmentBudget | None = None,
    ) -> None:
        """``born_established``: an IKE SA created by a rekey (§2.18), not by IKE_AUTH.
        ``fragment_budget``: reassembly byte budgets (RFC 7383); None = the owner's
        ``fragment_budget`` attribute if it has one, else the defaults."""
        self.conn = conn
        self._retry: tuple[Any, RetryPolicy] | None = None
        self.ike_id = ike_id
        self.initiator = initiator
        self.local: Address = local
        self.remote: Address = remote
        self.owner = owner
        self.rng = rng
        self.ke_factory = ke_factory
        self.log = SaLog(ike_id, conn.name)
        self.created = now
        self.established_at: float | None = None  # when IKE_AUTH completed (status)
        self.state = (
            IkeSaState.ESTABLISHED
            if born_established
            else IkeSaState.INIT_SENT
            if initiator
            else IkeSaState.INIT_DONE
        )
        self._init_keys()
        self.local_id = ""
        self.remote_id = ""
        # NAT traversal (§2.23)
        self.nat_local = False
        self.nat_remote = False
        self.nat_supported = False
        # IKE fragmentation (RFC 7383): both ends announced it in IKE_SA_INIT
        self.fragmentation = False
        # RFC 6023: the responder announced childless IKE SA initiation (initiator only)
        self.peer_childless = False
        if fragment_budget is None:
            owned = getattr(owner, "fragment_budget", None)
            fragment_budget = owned if isinstance(owned, FragmentBudget) else FragmentBudget()
        self.fragment_budget = fragment_budget
        self.fragments = FragmentReassembler(fragment_budget.limit(born_established))
        # windows (§2.3) and the exchanges we initiate
        self.req_win = RequestWindow(1)
        self.resp_win = ResponderWindow(conn.window_size if conn.window_size > 0 else 1)
        self.peer_window = 1
        self.queue: list[Task] = []  # short; a deque costs ~700 B even when empty
        self.delayed: list[Task] = []  # tasks waiting for their not_before time
        self.children: dict[int, ChildSa] = {}
        self.pending_children: list[ChildConfig] = []  # to create once established
        # responder: the EAP conversation authenticating the initiator (§2.16), owned
        # by tasks/eap_auth.py; None outside the EAP state
        self.eap: EapServer | None = None
        self.outbox: list[tuple[bytes, Address, Address]] = []
        self.events: list[Event] = []
        # liveness (§2.4) and NAT (§2.23, RFC 3948)
        self.dpd = DpdState(conn.dpd, now, retransmit=conn.retransmit)
        self.keepalive = NatKeepalive(conn.keepalive_interval, enabled=False)
        self.keepalive_due = False
        self.mapping: MappingTracker | None = None
        self.esp_reports = 0
        # reauthentication (§2.8.3) and rekeying (§2.8.2)
        self.reauth_of: IkeSa | None = None  # the IKE SA this one reauthenticates
        self.replaced_by: IkeSa | None = None  # the IKE SA that took over our children
        self.dead_children: list[str] = []
        # configuration payloads (RFC 7296 §2.19): our assigned / the peer's leased IPs
        self.vips = config_payload.VirtualIps()
        self.rekey_failures = 0  # refused IKE SA rekeys in a row (recovery table backoff)
        # the recovery table (recovery.DEFAULT_TABLE with this connection's dpd_action
        # rows): every error decision of the SA is read there, counted and rate-limited
        self.errors = ErrorHandler.for_connection(conn)
        self.timers = Timers(self._touched, self, _WATCHED)

    def _touched(self) -> None:
        self.owner.touched(self)

    def _init_keys(self) -> None:
        """SPIs, nonces and keys: set by IKE_SA_INIT (§1.2, §2.14) or a rekey (§2.18)."""
        self.spi_i: bytes = b"\x00" * 8
        self.spi_r: bytes = b"\x00" * 8
        self.suite: IkeSuite | None = None
        self.suite_str = ""
        self.keys: IkeKeys | None = None
        self.prot_out: SkProtector | None = None
        self.prot_in: SkProtector | None = None
        self.ni = b""
        self.nr = b""
        # public-key authentication (RFC 7427 §4, RFC 7296 §3.7): what IKE_SA_INIT
        # taught us, and the peer's certificate once verified (status)
        self.peer_hashes: tuple[int, ...] | None = None  # SIGNATURE_HASH_ALGORITHMS
        self.peer_certreq: list[bytes] | None = None  # CA hashes; None: no CERTREQ
        self.peer_cert: x509.Certificate | None = None
        self.peer_auth = ""  # how the peer authenticated ("psk", "ECDSA-SHA256", ...)
        self.msg1 = b""  # IKE_SA_INIT request as sent (AUTH, §2.15)
        self.msg2 = b""  # IKE_SA_INIT response as sent

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

    def use_connection(self, conn: ConnectionConfig) -> None:
        """The responder settled on ``conn`` (IKE_SA_INIT proposals, IKE_AUTH identities)."""
        self.conn = conn
        self.log.label(self.ike_id, conn.name)

    def renumber(self, ike_id: int) -> None:
        """The owner's number for this IKE SA (a rekeyed one is adopted, §2.18)."""
        self.ike_id = ike_id
        self.log.label(ike_id, self.conn.name)

    @property
    def name(self) -> str:
        return self.conn.name

    @property
    def established(self) -> bool:
        return self.state in IKE_ESTABLISHED

    @property
    def half_open(self) -> bool:
        """IKE_AUTH has not completed (yet)."""
        return self.state in IKE_HALF_OPEN

    @property
    def closed(self) -> bool:
        return self.state in IKE_FINAL

    @property
    def encap(self) -> bool:
        """UDP-encapsulate ESP: a NAT (real or faked by either side) was detected."""
        return self.nat_local or self.nat_remote

    @property
    def checking_liveness(self) -> bool:
        """A liveness check (§2.4) is queued or waiting for its answer."""
        return self.find_task(liveness.Liveness) is not None

    @property
    def rekey_at(self) -> float | None:
        return self.timers.get(TimerKind.IKE_REKEY)

    @property
    def expire_at(self) -> float | None:
        return self.timers.get(TimerKind.IKE_EXPIRE)

    @property
    def linger_until(self) -> float | None:
        """A closed SA answers retransmissions until then (§2.1); None = forget it now."""
        return self.timers.get(TimerKind.LINGER)

    @property
    def last_heard(self) -> float:
        """When we last received something authenticated from the peer (§2.4)."""
        return self.dpd.last_received

    def set_state(self, new: IkeSaState) -> None:
        """The only writer of :attr:`state` (transitions: :mod:`pyipsec.ikev2.state`)."""
        check_ike(self.state, new)
        if new is not self.state:
            self.log.debug("%s -> %s", self.state.value, new.value)
        self.state = new
        self.owner.touched(self)

    def emit(self, ev: Event) -> None:
        self.events.append(ev)
        self.owner.touched(self)

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
        self.owner.count_error(kind, conn=self.conn.name)
        if h.log:
            suppressed = self.errors.suppressed(kind)
            self.log.log(
                h.decision.log_level,
                "%s%s%s",
                kind.value,
                f": {detail}" if detail else "",
                f" ({suppressed} similar suppressed)" if suppressed else "",
            )
        return h

    # ------------------------------------------------------------------ sending

    def _message(
        self, exchange: int, message_id: int, payloads: PayloadList, response: bool
    ) -> Message:
        flags = _FLAGS[self.initiator, response]
        return Message(self.spi_i, self.spi_r, exchange, flags, message_id, list(payloads))

    def build(self, exchange: int, message_id: int, payloads: PayloadList, response: bool) -> bytes:
        msg = self._message(exchange, message_id, payloads, response)
        self.owner.count_message(exchange, False, not response, self.conn.name)  # built
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
        msg = self._message(exchange, message_id, payloads, response)
        packets = encrypt_fragments(msg, self.prot_out, limit)
        self.log.debug(
            "%s #%d as %d fragments", name_of(ExchangeType, exchange), message_id, len(packets)
        )
        return packets

    def send_raw(self, data: bytes) -> None:
        self.send_to(data, self.local, self.remote)

    def send_to(self, data: bytes, local: Address, remote: Address) -> None:
        """Queue one datagram (``datagrams_to_send`` of the manager hands it out)."""
        self.outbox.append((data, local, remote))
        self.owner.touched(self)

    # ------------------------------------------------------------------ tasks

    def _home(self, task: Task) -> IkeSa:
        """Where ``task`` runs: on the IKE SA that carries our children now, when it
        moves there (§2.8.2), else here."""
        target = self.successor()
        if target is not self:
            task.migrate(target)
        return task.sa if task.sa is target else self

    def enqueue(self, task: Task, now: float, *, front: bool = False) -> None:
        """Queue an exchange to start as soon as the window allows (§2.3)."""
        home = self._home(task)
        if front:
            home.queue.insert(0, task)
        else:
            home.queue.append(task)
        self.owner.touched(home)
        home.pump(now)

    def schedule(self, task: Task, at: float) -> None:
        """Queue ``task`` at ``at`` (a backoff, e.g. after TEMPORARY_FAILURE, §2.25)."""
        task.not_before = at
        home = self._home(task)
        home.delayed.append(task)
        self.owner.touched(home)

    def tasks(self) -> Iterator[Task]:
        """Every task of this IKE SA: queued, delayed, or waiting for its response."""
        yield from self.queue
        yield from self.delayed
        for req in self.req_win.pending.values():
            if isinstance(req.task, Task):
                yield req.task

    def find_task(self, kind: type[T], match: Callable[[T], bool] = lambda t: True) -> T | None:
        for task in self.tasks():
            if isinstance(task, kind) and match(task):
                return task
        return None

    def pump(self, now: float) -> None:
        """Start queued exchanges while the window has room."""
        while self.queue and self.req_win.can_send() and self.state not in IKE_FINAL:
            task = self.queue.pop(0)
            try:
                payloads = task.build_request(now)
            except ProtocolError as exc:  # a local failure building the request
                self.log.warning("cannot start %s: %s", task.label, exc)
                continue
            if payloads is not None:
                self.send_request(task, payloads, now)

    def send_request(self, task: Task, payloads: PayloadList, now: float) -> PendingRequest:
        """Send ``task``'s request now (the caller checked the window), track its response."""
        mid = self.req_win.allocate() if task.message_id is None else task.message_id
        packets = self.build_packets(task.exchange, mid, payloads, response=False)
        if task.exchange == ExchangeType.IKE_SA_INIT:
            self.msg1 = packets[0]
        req = PendingRequest(
            message_id=mid,
            exchange=task.exchange,
            packets=packets,
            task=task,
            first_sent=now,
            deadline=now + self.retry_policy.delay(0, self.rng),
        )
        self.req_win.add(req)
        for data in packets:
            self.send_raw(data)
        self.log.debug("-> %s request #%d", task.label, mid)
        return req

    def migrate_to(self, new: IkeSa) -> None:
        """Our children, and the work queued for them, now belong to ``new`` (§2.8.2):
        atomically.  This SA is REKEYED (the Delete of it follows)."""
        for spi, c in list(self.children.items()):
            new.children[spi] = c
        self.children.clear()
        config_payload.transfer(self, new)  # virtual IPs and leases stay (§2.19)
        self.replaced_by = new
        for task in [*self.queue, *self.delayed]:
            task.migrate(new)
        new.queue.extend(self.queue)
        self.queue.clear()
        new.delayed.extend(self.delayed)
        self.delayed = []
        new.pending_children += self.pending_children
        self.pending_children = []
        if self.state in IKE_ESTABLISHED:
            self.set_state(IkeSaState.REKEYED)

    def successor(self) -> IkeSa:
        """The IKE SA that now carries this one's children (itself unless rekeyed)."""
        cur = self
        seen = {id(cur)}
        while cur.replaced_by is not None and id(cur.replaced_by) not in seen:
            cur = cur.replaced_by
            seen.add(id(cur))
        return cur

    def spawn_successor(self, *, initiator: bool, now: float) -> IkeSa:
        """A new, established IKE SA of the same connection, peer and owner (an IKE SA
        rekey, §2.18: the caller sets SPIs and keys, then the owner adopts it)."""
        return IkeSa(
            self.conn,
            ike_id=0,
            initiator=initiator,
            local=self.local,
            remote=self.remote,
            owner=self.owner,
            rng=self.rng,
            ke_factory=self.ke_factory,
            now=now,
            born_established=True,
        )

    # ------------------------------------------------------------------ receiving

    def receive(
        self, data: bytes, hdr: Message, local: Address, remote: Address, now: float
    ) -> None:
        """One IKE message for this SA (header already parsed by the manager)."""
        if hdr.exchange == ExchangeType.IKE_SA_INIT:
            self._receive_init(data, hdr, local, remote, now)
            return
        if self.prot_in is None:
            self.log.debug("%s before keys, dropped", hdr.exchange)
            return
        # one local: mypyc 1.20 leaks the reference of a call inside isinstance()
        encrypted = hdr.encrypted
        if isinstance(encrypted, SkfPayload):
            self._receive_fragment(data, hdr, encrypted, local, remote, now)
        elif not isinstance(encrypted, SkPayload):
            self._receive_unprotected(hdr, now)
            return
        elif hdr.is_response:
            self._receive_response(data, hdr, local, remote, now)
        else:
            self._receive_request(data, hdr, local, remote, now)
        self.pump(now)

    def _receive_init(
        self, data: bytes, hdr: Message, local: Address, remote: Address, now: float
    ) -> None:
        """IKE_SA_INIT for an existing SA: our request's answer (§1.2, §2.6), or a
        retransmission of the peer's request (answered from the cache, §2.1)."""
        if not hdr.is_response:
            self._count_incoming(hdr)  # a retransmission of the peer's request (§2.1)
            answer_retransmission(self, data, hdr, local, remote)
            return
        req = self.req_win.pending.get(0)
        init = req.task if req is not None else None
        if (
            not self.initiator
            or self.state is not IkeSaState.INIT_SENT
            or not isinstance(init, IkeInit)
        ):
            self.log.debug("unexpected IKE_SA_INIT response dropped")
            return
        self._count_incoming(hdr)
        init.process_init_response(data, hdr, local, remote, now)
        self.pump(now)

    def _count_incoming(self, hdr: Message) -> None:
        """An accepted message (decrypted and verified, or an IKE_SA_INIT message we
        act on): the IKE counters."""
        self.owner.count_message(hdr.exchange, True, not hdr.is_response, self.conn.name)

    def _receive_unprotected(self, hdr: Message, now: float) -> None:
        """Unprotected: never acted upon (§2.21.4); INVALID_IKE_SPI may hint a dead peer."""
        n = hdr.notify(NotifyType.INVALID_IKE_SPI) if hdr.is_response else None
        self.owner.network_log(
            now,
            logging.INFO,
            "IKE SA %d (%s): unprotected %s dropped%s",
            self.ike_id,
            self.conn.name,
            name_of(ExchangeType, hdr.exchange),
            " (INVALID_IKE_SPI)" if n is not None else "",
        )
        if n is not None and self.established and self.conn.dpd.enabled:
            liveness.start(self, now)

    def _decrypt(self, data: bytes, hdr: Message, now: float) -> Message | None:
        """Verify and decrypt ``data`` (``hdr``: its parse, done by the manager)."""
        assert self.prot_in is not None
        try:
            return decrypt_message(data, self.prot_in, hdr)
        except IntegrityError as exc:
            # §3.14: dropped, never answered (the table's DROP_SILENTLY + COUNT)
            self.on_error(ErrorKind.INTEGRITY_CHECK_FAILED, now, str(exc))
            return None

    def _fragment_integrity_failed(self, now: float) -> Callable[[str], None]:
        def failed(detail: str) -> None:
            self.on_error(ErrorKind.INTEGRITY_CHECK_FAILED, now, detail)

        return failed

    def fragment_wanted(self, mid: int, response: bool) -> bool:
        if response:
            return mid in self.req_win.pending
        return self.resp_win.classify(mid) is Arrival.NEW

    def _fragment_deadline(self, now: float) -> float:
        """When a new incomplete set is dropped: after the retransmission give-up
        time, and never after the half-open deadline of an unauthenticated SA."""
        deadline = now + self.retry_policy.total_time()
        half_open = self.timers.get(TimerKind.HALF_OPEN) if self.half_open else None
        return deadline if half_open is None else min(deadline, half_open)

    def _fragment_over_budget(self, now: float) -> Callable[[str], None]:
        def over(detail: str) -> None:
            self.on_error(ErrorKind.FRAGMENT_BUDGET_EXCEEDED, now, detail)

        return over

    def _receive_fragment(
        self,
        data: bytes,
        hdr: Message,
        skf: SkfPayload,
        local: Address,
        remote: Address,
        now: float,
    ) -> None:
        """One IKE Fragment message (RFC 7383 §2.6): verify it, keep it, and process
        the reassembled message like an unfragmented one once the set is complete."""
        assert self.prot_in is not None
        mid, response = hdr.message_id, hdr.is_response
        # the byte budget follows authentication (IKE_AUTH: the unauthenticated one)
        self.fragments.budget = self.fragment_budget.limit(not self.half_open)
        self.fragments.expire(now, self.fragment_wanted)
        if not self.fragmentation:
            self.log.info("IKE fragment without negotiated support dropped")
            return
        if response:
            req = self.req_win.pending.get(mid)
            if req is None or req.exchange != hdr.exchange:
                self.log.debug("unexpected response fragment #%d dropped", mid)
                return
        else:
            arrival = self.resp_win.classify(mid)
            if arrival is Arrival.OLD:
                self.log.debug("stale request fragment #%d dropped", mid)
                return
            if arrival is Arrival.RETRANSMIT:
                # §2.6.1: only fragment 1 of an answered request triggers the resend
                failed = self._fragment_integrity_failed(now)
                if skf.fragment_number == 1 and self.fragments.open(
                    data, hdr, self.prot_in, failed
                ):
                    self._resend_response(mid, local, remote)
                return
        st = self.fragments.add(
            data,
            hdr,
            skf,
            self.prot_in,
            self._fragment_deadline(now),
            self._fragment_integrity_failed(now),
            self._fragment_over_budget(now),
        )
        if st is None:
            return
        if response:
            self._receive_response(data, st.header, local, remote, now, st.opener())
        else:
            self._receive_request(data, st.header, local, remote, now, st.opener())

    def _resend_response(self, mid: int, local: Address, remote: Address) -> None:
        cached = self.resp_win.cached(mid)
        if cached:
            self.log.debug("retransmitted request #%d, resending", mid)
            for pkt in cached:
                self.send_to(pkt, local, remote)

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
            self.log.debug("unexpected response #%d dropped", hdr.message_id)
            return
        try:
            msg = self._decrypt(data, hdr, now) if opener is None else opener()
        except ProtocolError as exc:
            self._malformed_response(hdr, exc, now)
            return
        if msg is None:
            return
        self._count_incoming(hdr)
        self.req_win.take(hdr.message_id)
        self.heard(local, remote, now, space="ike-response", sequence=hdr.message_id)
        fatal = self._response_errors(msg, req, hdr.exchange, now)
        req.task.process_response(msg, now)
        if fatal and self.state in IKE_AUTHENTICATED:
            self.finish(now, "INVALID_SYNTAX received")

    def _malformed_response(self, hdr: Message, exc: ProtocolError, now: float) -> None:
        """Authenticated but malformed inside: give up on this exchange (§2.21)."""
        h = self.on_error(
            kind_for_exception(exc, protected=True, is_request=False),
            now,
            f"response #{hdr.message_id}: {exc}",
        )
        if self.req_win.take(hdr.message_id) is not None and h.decision.has(
            RecoveryAction.DELETE_SA
        ):
            self.fail(
                now, f"malformed response: {exc}", exc.notify, send_delete=h.decision.send_delete
            )

    def _response_errors(
        self, msg: Message, req: PendingRequest, exchange: int, now: float
    ) -> bool:
        """Count the error notifies of a response (recovery table); True when one is
        fatal for the IKE SA (INVALID_SYNTAX: the peer closed it, §2.21.3)."""
        fatal = False
        for n in msg.error_notifies():
            kind = kind_for_received_notify(int(n.type), in_response=True)
            if kind is not None:
                h = self.on_error(kind, now, f"in the {req.label} response")
                fatal |= kind is ErrorKind.INVALID_SYNTAX_RECEIVED and h.decision.has(
                    RecoveryAction.DELETE_SA
                )
            if exchange == ExchangeType.INFORMATIONAL:
                # §2.21.3: an error in an INFORMATIONAL response is reported, nothing more
                self.emit(NotifyReceived(self.ike_id, int(n.type), n.data, True))
        return fatal

    def _receive_request(
        self,
        data: bytes,
        hdr: Message,
        local: Address,
        remote: Address,
        now: float,
        opener: Callable[[], Message | None] | None = None,
    ) -> None:
        arrival = self.resp_win.classify(hdr.message_id)
        if arrival is Arrival.OLD:
            # §2.3: outside the window: never acknowledged (the table's DROP_SILENTLY)
            self.on_error(ErrorKind.INVALID_MESSAGE_ID, now, f"request #{hdr.message_id}")
            return
        try:
            msg = self._decrypt(data, hdr, now) if opener is None else opener()
        except ProtocolError as exc:
            self._malformed_request(hdr, exc, arrival is Arrival.NEW, now)
            return
        if msg is None:
            return
        self._count_incoming(hdr)
        if arrival is Arrival.RETRANSMIT:
            self._resend_response(hdr.message_id, local, remote)
            return
        if self.state in (IkeSaState.INIT_DONE, IkeSaState.EAP):
            # IKE_AUTH may arrive on the floated port (§2.23)
            self.local, self.remote = local, remote
        self.heard(local, remote, now, space="ike-request", sequence=hdr.message_id)
        self._dispatch_request(hdr, msg, now)

    def _dispatch_request(self, hdr: Message, msg: Message, now: float) -> None:
        """Answer a new request through the responder table."""
        entry = RESPONDERS.get(hdr.exchange)
        if entry is None or self.state not in entry.states or (
            hdr.exchange == ExchangeType.IKE_AUTH and self.initiator
        ):
            what = name_of(ExchangeType, hdr.exchange)
            if self.state in IKE_AUTHENTICATED:
                # §2.21.3: every request of an authenticated IKE SA is answered; one we
                # cannot process at all is malformed (left unanswered, it would block
                # the window: the peer's next Message ID would be dropped as old)
                self._malformed_request(hdr, ProtocolError(f"unexpected {what}"), True, now)
            else:
                self.log.info("unsupported exchange %s dropped", what)
            return
        try:
            payloads = entry.respond(self, msg, now)
        except AnswerLater:
            return  # answered later with answer() (the request stays unprocessed)
        except ProtocolError as exc:
            self.log.info("%s request failed: %s", name_of(ExchangeType, hdr.exchange), exc)
            if exc.notify == NotifyType.INVALID_SYNTAX and not self.closed:
                # a badly formed request (missing or contradictory payloads, an invalid
                # KE value): answered like a malformed one, fatal (§2.21.3); an SA its
                # responder already failed (a refusal of its own) just answers
                self._malformed_request(hdr, exc, True, now)
                return
            payloads = [(PayloadType.NOTIFY, NotifyPayload(0, b"", exc.notify, exc.data))]
        self._answer(hdr, payloads)

    def _malformed_request(self, hdr: Message, exc: ProtocolError, new: bool, now: float) -> None:
        """A request that passed the ICV but does not parse (§2.21.3, §2.5): the
        recovery table decides (:meth:`_malformed_kind` names the row).  Once IKE_AUTH
        authenticated the peer, INVALID_SYNTAX / UNSUPPORTED_CRITICAL_PAYLOAD is
        answered and INVALID_SYNTAX is fatal for the IKE SA without a Delete (the peer
        closes it too); before that only a malformed IKE_AUTH request (or EAP round) is
        answered (§2.21.2), and it ends the half-open SA.  A retransmission of a request
        we could not read is never answered."""
        kind, may_answer = self._malformed_kind(hdr, exc)
        h = self.on_error(kind, now, f"request #{hdr.message_id}: {exc}")
        d = h.decision
        if not new or not may_answer or d.notify is None:
            return
        if h.answer:
            data = exc.data if d.notify == NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD else b""
            self._answer(hdr, [(PayloadType.NOTIFY, NotifyPayload(0, b"", int(d.notify), data))])
        if self.state not in IKE_AUTHENTICATED:
            if d.has(RecoveryAction.DELETE_SA):  # the half-open SA goes with its answer
                during = " during EAP" if self.state is IkeSaState.EAP else ""
                what = name_of(ExchangeType, hdr.exchange)
                self.fail(now, f"malformed {what} request{during}: {exc}", d.notify)
            return
        if not h.answer:
            return  # rate-limited: neither answered nor acted on (the row says so)
        if d.notify == NotifyType.INVALID_SYNTAX or (
            d.has(RecoveryAction.DELETE_SA) and d.scope is Scope.IKE_SA
        ):
            # §2.21.3: INVALID_SYNTAX is fatal in both peers, whatever the state
            self.finish(now, f"{d.notify.name} sent")

    def _malformed_kind(self, hdr: Message, exc: ProtocolError) -> tuple[ErrorKind, bool]:
        """The recovery table's row for a malformed request, and whether its notify may
        be sent at all: only to an authenticated peer, or in answer to the IKE_AUTH
        request (or EAP round) of a half-open SA, which passed the ICV of its keys
        (§2.21.2); never in AUTH_SENT, where the initiator has not verified us yet."""
        if self.state in IKE_AUTHENTICATED:
            return kind_for_exception(exc, protected=True, is_request=True), True
        if self.state is IkeSaState.EAP:
            return ErrorKind.MALFORMED_EAP_ROUND, True
        if self.state is IkeSaState.INIT_DONE and hdr.exchange == ExchangeType.IKE_AUTH:
            if exc.notify == NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD:
                return ErrorKind.UNSUPPORTED_CRITICAL_PAYLOAD, True
            return ErrorKind.MALFORMED_IKE_AUTH, True
        return kind_for_exception(exc, protected=False, is_request=True), False

    def answer(self, hdr: Message, payloads: PayloadList) -> None:
        """Answer the request ``hdr`` (its exchange and Message ID) that a responder
        held back with :class:`AnswerLater`: cached and sent like any response."""
        self._answer(hdr, payloads)

    def _answer(self, hdr: Message, payloads: PayloadList) -> None:
        packets = self.build_packets(hdr.exchange, hdr.message_id, payloads, response=True)
        # the cached response is the whole fragment list (RFC 7383 §2.6.1)
        self.resp_win.store(hdr.message_id, packets)
        for data in packets:
            self.send_raw(data)

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
            self.log.info("peer moved from %s to %s", format_endpoint(old), format_endpoint(remote))
            self.emit(PeerAddressChanged(self.ike_id, old, remote))

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
        self.children[c.spi_in] = c
        return self.make_info(c)

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

    # ------------------------------------------------------------------ end of life

    def end(
        self,
        now: float,
        *,
        state: IkeSaState,
        reason: str,
        event: Event | None,
        children_reason: str | None = None,
        linger: float = LINGER,
    ) -> None:
        """The one end of an IKE SA: children removed (ChildSaDeleted each, unless
        ``children_reason`` is None: then forgotten silently), work dropped, the final
        ``state`` set, ``event`` emitted, and kept ``linger`` seconds to answer
        retransmitted requests (§2.1)."""
        config_payload.release(self)  # leases back to their pools (§2.19)
        if children_reason is None:
            self.children.clear()
        else:
            for c in list(self.children.values()):
                self.remove_child(c, children_reason)
        if self.state is not state and self.state not in IKE_FINAL:
            self.set_state(state)
        self.queue.clear()
        self.delayed = []
        self.req_win.pending.clear()
        self.fragments.clear()
        self.eap = None
        self.timers.clear(*TimerKind)
        self.timers.set(TimerKind.LINGER, now + linger)
        if event is not None:
            self.emit(event)
        self.log.debug("closed: %s", reason)

    def finish(self, now: float, reason: str) -> None:
        """The IKE SA is gone (deleted by either side): remove children, emit, linger."""
        if self.closed:
            return
        was_established = not self.half_open
        event: Event = (
            IkeSaDeleted(self.ike_id, self.conn.name, reason)
            if was_established
            else IkeSaFailed(self.ike_id, self.conn.name, reason, None)
        )
        self.end(now, state=IkeSaState.DELETED, reason=reason, event=event, children_reason=reason)

    def fail(
        self, now: float, reason: str, notify: int | None = None, *, send_delete: bool = False
    ) -> None:
        """Setup or operation failure: IkeSaFailed; optionally tell the peer (§2.21.2)."""
        if self.closed:
            return
        self.log.warning("failed: %s", reason)
        old = self.reauth_of
        if old is not None and old.established:
            # reauthentication failed: try again later, paced like a refused rekey
            policy = old.errors.decide(ErrorKind.REKEY_FAILED).retry
            if policy is not None:
                old.timers.set(TimerKind.IKE_REKEY, now + policy.delay(0, self.rng))
        if send_delete and self.prot_out is not None:
            mid = self.req_win.allocate()
            payloads: PayloadList = [(PayloadType.DELETE, DeletePayload.delete_ike_sa())]
            self.send_raw(self.build(ExchangeType.INFORMATIONAL, mid, payloads, False))
        event = IkeSaFailed(self.ike_id, self.conn.name, reason, notify)
        self.end(now, state=IkeSaState.FAILED, reason=reason, event=event, children_reason=reason)

    def vanish(self, now: float, event: Event | None = None) -> None:
        """Forget silently (replaced by a rekeyed SA, or a half-open responder timing out)."""
        self.end(now, state=IkeSaState.DELETED, reason="vanished", event=event)

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
        self.end(
            now,
            state=IkeSaState.DELETED,
            reason="peer dead",
            event=IkeSaDeleted(self.ike_id, self.conn.name, "peer dead"),
            children_reason="peer dead",
            linger=0.0,
        )

    # ------------------------------------------------------------------ timers

    def next_timer(self) -> float | None:
        return self.timers.next_deadline()

    def _probe_deadline(self) -> float | None:
        if not self.established or not self.dpd.outstanding:
            return None
        return self.dpd.next_deadline()

    def _queue_deadline(self) -> float | None:
        """At once, when a queued task could start (it was queued where nothing pumps,
        e.g. moved here by a rekey): the pump after the timers starts it."""
        if self.queue and self.req_win.can_send() and not self.closed:
            return self.created
        return None

    def _delayed_deadline(self) -> float | None:
        if not self.delayed:
            return None
        return min(t.not_before for t in self.delayed)

    def _child_deadline(self) -> float | None:
        if not self.established:
            return None
        best: float | None = None
        for c in self.children.values():
            when = c.next_lifetime_deadline()
            if when is not None and (best is None or when < best):
                best = when
        return best

    def dpd_deadline(self) -> float | None:
        """The next liveness check (DpdState) while no exchange is under way: its answer
        is proof of life, its timeout death.  An outstanding check is the
        LIVENESS_PROBE timer."""
        if not self.established or self.dpd.outstanding or not self.dpd.enabled:
            return None
        if self.req_win.pending or self.queue or self.checking_liveness:
            return None
        return self.dpd.next_deadline()

    def _keepalive_deadline(self) -> float | None:
        return self.keepalive.next_deadline() if self.established else None

    def handle_timer(self, now: float) -> None:
        """Handle every due deadline, in :class:`TimerKind` order, then start work."""
        for kind in self.timers.due(now):
            if self.closed and kind not in (TimerKind.RETRANSMIT, TimerKind.LINGER):
                continue
            deadlines.HANDLERS[kind](self, now)
        if not self.closed:
            self.pump(now)

    # ------------------------------------------------------------------ data plane input

    def esp_activity(
        self, now: float, remote: Address | None = None, spi: int = 0, seq: int | None = None
    ) -> None:
        """Authenticated ESP arrived for one of our children: the peer is alive (§2.4).

        With ``remote`` and the ESP sequence number ``seq``, a moved NAT mapping
        of the peer is followed (§2.23)."""
        if remote is None:
            self.dpd.on_authenticated_traffic(now)
            return
        if seq is None:
            # the data plane did its replay check but gave no number: count arrivals
            self.esp_reports += 1
            space: object = "esp-reports"
            seq = self.esp_reports
        else:
            space = ("esp", spi)
        self.heard(self.local, remote, now, space=space, sequence=seq)

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
        self._volume_limits(c, now)

    def _volume_limits(self, c: ChildSa, now: float) -> None:
        """Delete at the hard, rekey at the soft byte/packet limit (§2.8)."""
        lt = c.config.lifetimes
        volume = max(c.bytes_in, c.bytes_out)
        pkts = max(c.packets_in, c.packets_out)
        if (lt.life_bytes and volume >= lt.life_bytes) or (
            lt.life_packets and pkts >= lt.life_packets
        ):
            if c.state not in (ChildSaState.DELETING, ChildSaState.DELETED):
                ChildDelete.start(self, [c], now, reason="volume limit")
            return
        over_soft = (
            bool(lt.rekey_bytes and volume >= lt.rekey_bytes)
            or bool(lt.rekey_packets and pkts >= lt.rekey_packets)
            or c.seq_out >= esp_seq_soft_limit(c.suite.esn)
        )
        if over_soft and c.state is ChildSaState.INSTALLED and self.established:
            c.soft_at = None
            child_rekey.start(self, c, now)

    # ------------------------------------------------------------------ status

    def status(self, now: float | None = None) -> dict[str, Any]:
        return status_view.ike_sa_status(self, now)

    def dispose(self) -> None:
        """Forgotten by the owner: drop the references back to this SA (timer sources,
        tasks, the successor chain) so that reference counting frees it at once instead
        of the cyclic garbage collector, much later (with tens of thousands of SAs a
        full collection is a long pause)."""
        self.timers.dispose()
        self.queue.clear()
        self.delayed = []
        self.req_win.pending.clear()
        self.replaced_by = None
        self.reauth_of = None

    def __repr__(self) -> str:
        return f"<IkeSa {self.ike_id} {self.conn.name} {self.state.value} {self.our_spi.hex()}>"




#: the deadlines an IKE SA's other state already keeps (read when asked, never copied)
_WATCHED: dict[TimerKind, Callable[[IkeSa], float | None]] = {
    TimerKind.FRAGMENTS: lambda sa: sa.fragments.next_deadline(),
    TimerKind.RETRANSMIT: lambda sa: sa.req_win.next_deadline(),
    TimerKind.LIVENESS_PROBE: IkeSa._probe_deadline,
    TimerKind.DELAYED: IkeSa._delayed_deadline,
    TimerKind.QUEUE: IkeSa._queue_deadline,
    TimerKind.CHILD_LIFETIMES: IkeSa._child_deadline,
    TimerKind.DPD: IkeSa.dpd_deadline,
    TimerKind.KEEPALIVE: IkeSa._keepalive_deadline,
}


__all__ = [
    "ESP_SEQ_MAX",
    "ESP_SEQ_MAX_ESN",
    "LINGER",
    "ChildSa",
    "IkeSa",
    "SaOwner",
    "Selector",
    "esp_seq_soft_limit",
    "rand_fraction",
]
