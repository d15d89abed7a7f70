"""IkeManager: many IKE SAs behind one sans-I/O interface (RFC 7296).

The manager dispatches datagrams to :class:`~pyipsec.ikev2.sa.IkeSa` objects by
SPI, creates responder SAs, answers with stateless cookies when too many SAs are
half-open (§2.6), answers unknown SPIs with INVALID_IKE_SPI (rate-limited,
§1.5, §2.21.4), handles INITIAL_CONTACT, and collects the datagrams, events
and timers of all SAs.  It never does I/O: the daemon feeds it bytes and time.

Usage (the daemon)::

    mgr = IkeManager(connections, rng=secrets.token_bytes)
    mgr.initiate("site", None, now)
    mgr.receive_datagram(data, local, remote, now)   # IKE bytes, marker stripped
    for data, local, remote in mgr.datagrams_to_send(now): ...
    while (ev := mgr.next_event()) is not None: ...
    mgr.handle_timer(now) when now >= mgr.next_timer()
"""

from __future__ import annotations

import datetime as dt
import hashlib
import heapq
import ipaddress
import logging
import secrets
import struct
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from ..config.model import ANY_ADDRESS, ChildConfig, ConnectionConfig, DpdAction, PoolConfig
from ..crypto.ke import KeyExchange, new_key_exchange
from ..eap.base import BackendReply
from ..nat import format_endpoint, packed_ip
from ..pools import PoolRegistry
from ..recovery import (
    ErrorHandler,
    ErrorKind,
    RateLimiter,
    RecoveryAction,
    RetryPolicy,
    kind_for_received_notify,
)
from .api import ChildSaView, IkeCore, IkeSaView, SaCounts
from .child_sa import ChildSa
from .conn_index import ConnectionIndex, ConnectionTable
from .constants import (
    IKE_HEADER_LEN,
    NAT_KEEPALIVE,
    ExchangeType,
    HeaderFlag,
    NotifyType,
    PayloadType,
)
from .counters import IkeCounters
from .errors import ProtocolError, UnsupportedCriticalPayload
from .events import (
    Address,
    ChildSaDeleted,
    ChildSaInstalled,
    ChildSaRekeyed,
    Event,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaFailed,
    IkeSaRekeyed,
    PeerAddressChanged,
    PeerDead,
)
from .fragments import MAX_FRAGMENT_BYTES, MAX_FRAGMENT_BYTES_UNAUTHENTICATED, FragmentBudget
from .half_open_memory import DEFAULT_HALF_OPEN_MEMORY, HALF_OPEN_SA_BYTES, HalfOpenMemory
from .ke_reuse import KeReuse
from .message import Message
from .payloads import IdPayload, NotifyPayload
from .sa import IkeSa
from .state import IKE_ESTABLISHED, IKE_FINAL, ChildSaState, IkeSaState
from .tasks import (
    child_create,
    child_rekey,
    eap_auth,
    ike_delete,
    ike_init,
    ike_rekey,
    liveness,
)
from .tasks.base import KeFactory, Rng
from .tasks.child_delete import ChildDelete
from .tasks.informational import InformationalNotify
from .timers import TimerKind

log = logging.getLogger("pyipsec.ike")

_ZERO_SPI = b"\x00" * 8
COOKIE_SECRET_LIFETIME = 120.0
#: Log lines per second (and burst) caused by unauthenticated network input
NETWORK_LOG_RATE = 2.0
NETWORK_LOG_BURST = 20
#: How long an allocated but not (yet) installed inbound SPI stays reserved.
SPI_RESERVATION = 600.0
_HDR = struct.Struct("!8s8sBBBBII")


def _default_ke_factory(group: int) -> Any:
    return new_key_exchange(group)



def _half_open_charge(sa: IkeSa) -> int:
    """What a half-open responder is charged against ``half_open_memory`` (§2.6): its
    objects and the two IKE_SA_INIT messages it keeps for AUTH (§2.15)."""
    return HALF_OPEN_SA_BYTES + len(sa.msg1) + len(sa.msg2)

class IkeManager:
    """All IKE SAs of the daemon (see the module docstring for the contract)."""

    def __init__(
        self,
        connections: Sequence[ConnectionConfig],
        *,
        rng: Rng = secrets.token_bytes,
        ke_factory: KeFactory | None = None,
        cookie_threshold: int = 32,
        half_open_timeout: float = 30.0,
        local_addresses: Sequence[str] = (),
        invalid_spi_rate: float = 10.0,
        local_address_for: Callable[[str], str | None] | None = None,
        half_open_limit: int = 5000,
        cookie_threshold_ip: int = 3,
        block_threshold: int = 5,
        max_fragment_bytes_unauthenticated: int = MAX_FRAGMENT_BYTES_UNAUTHENTICATED,
        max_fragment_bytes: int = MAX_FRAGMENT_BYTES,
        wall_clock: Callable[[float], dt.datetime] | None = None,
        pools: Sequence[PoolConfig] = (),
        ke_reuse_seconds: float = 0.0,
        ke_reuse_count: int = 128,
        half_open_memory: int = DEFAULT_HALF_OPEN_MEMORY,
    ) -> None:
        """``wall_clock`` maps ``now`` to calendar time for certificate validity (the
        core never reads a clock; without it certificates cannot be validated).
        ``pools``: the virtual IP pools the connections' ``pools`` name (§2.19).
        ``ke_reuse_seconds`` > 0: the responder reuses its IKE_SA_INIT key exchange
        value that long, for at most ``ke_reuse_count`` IKE SAs (RFC 7296 §2.12, see
        :mod:`~pyipsec.ikev2.ke_reuse`: it weakens forward secrecy; off by default).
        ``half_open_memory``: the bytes all half-open responders may hold together
        (:mod:`~pyipsec.ikev2.half_open_memory`; 0 = no byte budget)."""
        self._conn_index: ConnectionIndex | None = None
        self._conn_index_version = -1
        self.conns = ConnectionTable((c.name, c) for c in connections)
        self.pools = PoolRegistry(pools)  # read by the IKE SAs (tasks.config_payload)
        self.wall_clock = wall_clock
        self.rng = rng
        self.ke_factory: KeFactory = ke_factory or _default_ke_factory
        self.ke_reuse = KeReuse(self.ke_factory, ke_reuse_seconds, ke_reuse_count)
        self.cookie_threshold = cookie_threshold
        self.half_open_timeout = half_open_timeout
        # bounded pre-authentication state (§2.6; strongSwan's init_limit_half_open,
        # cookie_threshold_ip, block_threshold): 0 = no such limit
        self.half_open_limit = half_open_limit  # half-open responders in total
        self.cookie_threshold_ip = cookie_threshold_ip  # from one IP before cookies
        self.block_threshold = block_threshold  # from one IP: more are dropped
        self._half_open_by_ip: dict[str, int] = {}  # half-open responders per peer IP
        # their bytes (cookies above a share of the budget, refusals at it)
        self.half_open_memory = HalfOpenMemory(half_open_memory)
        self._cookie_log = RateLimiter(1.0, 5)
        # RFC 7383 reassembly byte budgets, read by every IkeSa of this owner
        self.fragment_budget = FragmentBudget(
            max_fragment_bytes_unauthenticated, max_fragment_bytes
        )
        self.local_addresses = tuple(local_addresses)
        # route lookup (the daemon's SourceAddressCache): our source address towards a
        # peer, so NAT_DETECTION_SOURCE_IP covers the real address (§2.23)
        self.local_address_for = local_address_for
        self.sas: dict[bytes, IkeSa] = {}  # by our SPI
        self.by_id: dict[int, IkeSa] = {}
        self.half_open: dict[tuple[bytes, Address], IkeSa] = {}  # responders by (SPIi, peer)
        self._next_id = 1
        self._init_indexes()
        self._clock = 0.0  # the latest ``now`` seen (SPI reservations, §2.12 KE reuse)
        self._events: deque[Event] = deque()
        self._out: list[tuple[bytes, Address, Address]] = []
        self._cookie_secret = rng(32)
        self._cookie_version = 0
        self._cookie_prev: bytes | None = None
        self._cookie_rotated_at: float | None = None
        self._invalid_spi_limiter = RateLimiter(invalid_spi_rate, max(1, int(invalid_spi_rate)))
        self._network_log = RateLimiter(NETWORK_LOG_RATE, NETWORK_LOG_BURST)
        # errors outside any IKE SA (unknown SPIs, data-plane reports), and the totals
        # of every error counted anywhere (status); decisions come from the recovery table
        self.errors = ErrorHandler()
        self.error_totals: dict[ErrorKind, int] = {}
        self.ike_counters = IkeCounters()  # swanctl --counters
        # an IKE message of an IKE SA accepted or built (SaOwner.count_message): the
        # counters' own method, one call per message (IkeSa calls it for every one)
        self.count_message: Callable[[int, bool, bool, str], None] = self.ike_counters.message
        # pending re-initiations: (due, connection, child names, attempt number)
        self._restart: list[tuple[float, str, list[str], int]] = []
        self._restart_of: dict[int, tuple[str, list[str], int]] = {}  # ike_id -> attempt
        self._sent_by: dict[IkeSa, None] = {}

    def _init_indexes(self) -> None:
        """Indexes, so that no entry point walks every SA (tens of thousands)."""
        self._child_spis: dict[int, IkeSa] = {}  # installed children by inbound SPI
        self._reserved: dict[int, float] = {}  # allocated inbound SPIs -> when
        self._reserved_order: deque[tuple[float, int]] = deque()
        self._by_conn: dict[str, dict[int, IkeSa]] = {}
        self._by_peer_id: _PeerIndex[tuple[str, str]] = _PeerIndex()  # (conn, remote id)
        self._by_remote_ip: _PeerIndex[str] = _PeerIndex()  # established, by peer IP
        self._responders: dict[tuple[bytes, Address], IkeSa] = {}  # until forgotten
        self._responder_key: dict[IkeSa, tuple[bytes, Address]] = {}
        # half-open responders: the IP each is counted under and what it was charged
        # when created (its fragments are charged by its reassembler)
        self._half_open_responders: dict[IkeSa, tuple[str, int]] = {}
        # ordered (dicts as ordered sets): what the core sends never depends on addresses
        self._keepalive_due: dict[IkeSa, None] = {}
        # SAs with datagrams, events or changed deadlines; the timer heap of all SAs
        self._dirty: dict[IkeSa, None] = {}
        self._deadline: dict[IkeSa, float] = {}
        self._heap: list[tuple[float, int, IkeSa]] = []
        self._heap_seq = 0
        # registered IKE SAs per state, and the state each one is counted under
        # (updated when a changed SA is collected): sa_counts() without a walk
        self._state_count: dict[IkeSaState, int] = dict.fromkeys(IkeSaState, 0)
        self._counted_state: dict[IkeSa, IkeSaState] = {}
        # the same for the states of each SA's children (a child changes state only
        # while its IKE SA is worked on, which marks that SA for collection)
        self._child_state_count: dict[ChildSaState, int] = dict.fromkeys(ChildSaState, 0)
        self._counted_children: dict[IkeSa, tuple[ChildSaState, ...]] = {}
        self._state_tuples: dict[tuple[ChildSaState, ...], tuple[ChildSaState, ...]] = {}

    # ================================================================== SaOwner

    def new_ike_spi(self) -> bytes:
        while True:
            spi = self.rng(8)
            if spi != _ZERO_SPI and spi not in self.sas:
                return spi

    def new_child_spi(self) -> int:
        while True:
            spi = int.from_bytes(self.rng(4), "big")
            if spi < 0x100 or spi in self._reserved or spi in self._child_spis:
                continue  # 1-255 are reserved by IANA (RFC 4303 §2.1)
            self._reserved[spi] = self._clock
            self._reserved_order.append((self._clock, spi))
            return spi

    def init_key_exchange(self, group: int) -> KeyExchange:
        """SaOwner: the responder's key exchange for an IKE_SA_INIT answer (RFC 7296
        §2.12: reused within bounds when ``ke_reuse_seconds`` says so, else fresh)."""
        return self.ke_reuse.get(group, self._clock)

    def adopt(self, sa: IkeSa) -> None:
        """Register an IKE SA created by a rekey (§2.18)."""
        sa.renumber(self._next_id)
        self._next_id += 1
        self._register(sa)
        self._index_established(sa)

    @property
    def conns(self) -> ConnectionTable:
        """The configured connections by name (configuration order)."""
        return self._conns

    @conns.setter
    def conns(self, value: Mapping[str, ConnectionConfig]) -> None:
        self._conns = (
            value if isinstance(value, ConnectionTable) else ConnectionTable(value.items())
        )
        self._conn_index = None

    def _connection_index(self) -> ConnectionIndex:
        """The address/identity index of the current configuration (rebuilt once after
        each change of :attr:`conns`)."""
        index, table = self._conn_index, self._conns
        if index is None or self._conn_index_version != table.version:
            index = self._conn_index = ConnectionIndex(table)
            self._conn_index_version = table.version
        return index

    def conns_for(self, local: Address, remote: Address) -> list[ConnectionConfig]:
        """SaOwner: the connections between these addresses, in configuration order."""
        return self._connection_index().for_addresses(local[0], remote[0])

    def conns_for_peer(
        self, local: Address, remote: Address, ident: IdPayload
    ) -> list[ConnectionConfig]:
        """SaOwner: :meth:`conns_for` narrowed to those that may accept the peer
        identity ``ident`` (exact identities by index, patterns and %any kept)."""
        return self._connection_index().for_peer(local[0], remote[0], ident)

    def initial_contact(self, sa: IkeSa) -> None:
        """§2.4 INITIAL_CONTACT: delete the other IKE SAs with the same peer identity."""
        for other in self._by_peer_id.get((sa.conn.name, sa.remote_id)):
            if other is sa or other.state in IKE_FINAL or not other.remote_id:
                continue
            if other.remote_id == sa.remote_id and other.conn.name == sa.conn.name:
                log.info(
                    "INITIAL_CONTACT from %s: forgetting IKE SA %d", sa.remote_id, other.ike_id
                )
                for c in list(other.children.values()):
                    other.remove_child(c, "initial contact")
                event = (
                    None
                    if other.half_open
                    else IkeSaDeleted(other.ike_id, other.conn.name, "initial contact")
                )
                other.vanish(0.0, event)
                other.timers.clear(TimerKind.LINGER)  # forgotten at once

    def reauthenticate(self, sa: IkeSa, now: float) -> bool:
        """§2.8.3 reauthentication, make-before-break: a new IKE SA (without
        INITIAL_CONTACT) with the same children; the old one is deleted once they
        are up.  False when impossible (no concrete peer address): rekey instead.
        Also when we leased the peer a virtual IP (§2.19): the peer asks for addresses,
        and a new IKE SA initiated by the gateway could not carry them over."""
        if sa.vips.leases:
            return False
        names = list(dict.fromkeys(c.config.name for c in sa.children.values()))
        conn = self.conns.get(sa.conn.name, sa.conn)
        remote_ip = sa.remote[0]
        version = ipaddress.ip_address(remote_ip).version
        local_ip = sa.local[0]
        if not _is_ip(local_ip, version) or ipaddress.ip_address(local_ip).is_unspecified:
            local_ip = self._local_ip(conn, remote_ip)
        new = self._new_sa(
            conn, True, (local_ip, conn.local_port), (remote_ip, conn.remote_port), now
        )
        new.reauth_of = sa
        new.timers.set(TimerKind.HALF_OPEN, now + max(self.half_open_timeout, _setup_time(conn)))
        children = [conn.child(n) for n in names if any(c.name == n for c in conn.children)]
        try:
            ike_init.start(new, children, now)
        except ProtocolError as exc:
            sa.log.warning("cannot reauthenticate: %s", exc)
            return False
        sa.log.info("reauthenticating as IKE SA %d", new.ike_id)
        self._register(new)
        return True

    # ================================================================== API

    def _new_sa(
        self, conn: ConnectionConfig, initiator: bool, local: Address, remote: Address, now: float
    ) -> IkeSa:
        sa = IkeSa(
            conn,
            ike_id=self._next_id,
            initiator=initiator,
            local=local,
            remote=remote,
            owner=self,
            rng=self.rng,
            ke_factory=self.ke_factory,
            now=now,
        )
        self._next_id += 1
        return sa

    def initiate(
        self, conn_name: str, child_name: str | None, now: float, *, persistent: bool = False
    ) -> IkeSa:
        """Bring up ``child_name`` (None = the first child) of a connection.

        Reuses an existing IKE SA of the connection (CREATE_CHILD_SA, §1.3.1);
        otherwise starts IKE_SA_INIT.  Raises KeyError for unknown names and
        ValueError when the connection has no concrete remote address.
        ``persistent`` (start actions, DPD restart): when this setup fails, try
        again after the connection's ``reinit_backoff``, ``keyingtries`` times
        (0 = until it succeeds).
        """
        sa = self._initiate(conn_name, child_name, now)
        if persistent and not sa.established and sa.ike_id not in self._restart_of:
            self._restart_of[sa.ike_id] = (conn_name, [child_name] if child_name else [], 0)
        return sa

    def _initiate(self, conn_name: str, child_name: str | None, now: float) -> IkeSa:
        self._clock = now
        conn = self.conns[conn_name]
        children: list[ChildConfig] = []
        if child_name is not None:
            children = [conn.child(child_name)]
        elif conn.children:
            children = [conn.children[0]]
        for sa in self._by_conn.get(conn_name, {}).values():
            if not sa.initiator and sa.half_open:
                continue
            if sa.state in IKE_ESTABLISHED:
                for cfg in children:
                    if not any(
                        c.config.name == cfg.name and c.state is ChildSaState.INSTALLED
                        for c in sa.children.values()
                    ):
                        child_create.start(sa, cfg, now)
                self._collect()
                return sa
            if sa.state in (IkeSaState.INIT_SENT, IkeSaState.AUTH_SENT):
                for cfg in children:
                    if cfg not in sa.pending_children:
                        sa.pending_children.append(cfg)
                return sa
        remote_ip = next(
            (
                a
                for a in conn.remote_addrs
                if a not in ANY_ADDRESS and "/" not in a and "-" not in a
            ),
            None,
        )
        if remote_ip is None:
            raise ValueError(f"connection {conn_name!r} has no concrete remote address")
        local_ip = self._local_ip(conn, remote_ip)
        sa = self._new_sa(
            conn, True, (local_ip, conn.local_port), (remote_ip, conn.remote_port), now
        )
        sa.timers.set(TimerKind.HALF_OPEN, now + max(self.half_open_timeout, _setup_time(conn)))
        ike_init.start(sa, children, now)
        self._register(sa)
        self._collect()
        return sa

    def _local_ip(self, conn: ConnectionConfig, remote_ip: str) -> str:
        """Our address towards ``remote_ip`` for a new IKE SA we initiate.

        A concrete configured ``local_addrs`` entry wins; otherwise the route lookup
        (``local_address_for``), if it names an address we listen on; otherwise the
        first listen address of the family; the wildcard only as a last resort (its
        NAT-D hash is wrong, §2.23: the peer would think we are behind a NAT).
        """
        version = ipaddress.ip_address(remote_ip).version
        configured = [a for a in conn.local_addrs if _is_ip(a, version)]
        if configured:
            return configured[0]
        listen = [a for a in self.local_addresses if _is_ip(a, version)]
        if self.local_address_for is not None:
            routed = self.local_address_for(remote_ip)
            if routed is not None and _is_ip(routed, version) and (not listen or routed in listen):
                return routed
        if listen:
            return listen[0]
        log.warning(
            "%s: no local address known towards %s; NAT detection will see a NAT",
            conn.name,
            remote_ip,
        )
        return "0.0.0.0" if version == 4 else "::"

    def receive_datagram(self, data: bytes, local: Address, remote: Address, now: float) -> None:
        """One UDP payload on 500/4500 (non-ESP marker already stripped).  Never raises."""
        self._clock = now
        try:
            self._receive(bytes(data), local, remote, now)
        except Exception:  # a bug must not take the daemon down
            self.count_error(ErrorKind.INTERNAL_ERROR)
            log.exception("error handling a datagram from %s", remote)
        self._collect()

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address, Address]]:
        """IKE messages to send: ``(bytes, local, remote)``; add the non-ESP marker on 4500."""
        self._collect()
        out, self._out = self._out, []
        for sa in self._sent_by:
            sa.keepalive.on_sent(now)
        self._sent_by.clear()
        return out

    def keepalives_to_send(self, now: float) -> list[tuple[Address, Address]]:
        """NAT keepalives due (RFC 3948 §4): send the single octet 0xFF, *without*
        a non-ESP marker, from ``local`` to ``remote``.  Only for SAs behind a NAT."""
        self._collect()
        out: list[tuple[Address, Address]] = []
        for sa in self._keepalive_due:
            if sa.keepalive_due:
                sa.keepalive_due = False
                if sa.established:
                    out.append((sa.local, sa.remote))
        self._keepalive_due.clear()
        return out

    def next_timer(self) -> float | None:
        """The earliest deadline of any IKE SA or re-initiation: O(1) amortised (a heap
        of the SAs' deadlines, kept current as SAs change)."""
        self._collect()
        heap = self._heap
        while heap and self._deadline.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)  # stale: the SA's deadline moved or it is gone
        best = heap[0][0] if heap else None
        for due, *_ in self._restart:
            if best is None or due < best:
                best = due
        forget = self.ke_reuse.next_deadline()  # a reused KE value is dropped on time
        if forget is not None and (best is None or forget < best):
            best = forget
        return best

    def handle_timer(self, now: float) -> None:
        """Handle the SAs whose deadline has come (only those)."""
        self._clock = now
        self._collect()
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, _, sa = heapq.heappop(heap)
            if self._deadline.get(sa) != when:
                continue  # stale entry
            del self._deadline[sa]
            self._dirty[sa] = None
            try:
                sa.handle_timer(now)
            except Exception:
                sa.log.exception("timer failed")
                self._internal_error(sa, now)
            if sa.keepalive_due:
                self._keepalive_due[sa] = None
        self._collect()
        self._prune_reservations(now)
        self._do_restarts(now)
        self.ke_reuse.expire(now)  # nothing is ever kept when reuse is off

    def next_event(self) -> Event | None:
        self._collect()
        return self._events.popleft() if self._events else None

    # ------------------------------------------------------------------ commands

    def _sa(self, ike: int | IkeSa) -> IkeSa:
        sa = ike if isinstance(ike, IkeSa) else self.by_id.get(ike)
        if sa is None:
            raise KeyError(f"no IKE SA {ike}")
        self._dirty[sa] = None  # a command: its deadlines may change
        return sa

    def rekey_child(self, ike_id: int, child_spi_in: int, now: float) -> None:
        sa = self._sa(ike_id)
        c = sa.children.get(child_spi_in)
        if c is None:
            raise KeyError(f"no Child SA {child_spi_in:08x}")
        child_rekey.start(sa, c, now)
        self._collect()

    def rekey_ike(self, ike_id: int, now: float) -> None:
        ike_rekey.start(self._sa(ike_id), now)
        self._collect()

    def delete_child(self, ike_id: int, spi_in: int, now: float) -> None:
        sa = self._sa(ike_id)
        c = sa.children.get(spi_in)
        if c is None:
            raise KeyError(f"no Child SA {spi_in:08x}")
        ChildDelete.start(sa, [c], now, reason="deleted locally")
        self._collect()

    def create_child(self, ike_id: int, child_name: str, now: float) -> None:
        sa = self._sa(ike_id)
        child_create.start(sa, sa.conn.child(child_name), now)
        self._collect()

    def terminate(self, target: int | str, now: float) -> int:
        """Delete an IKE SA by id, or all IKE SAs of a connection by name.  Returns the count."""
        if isinstance(target, int):
            sas = [self._sa(target)]
        else:
            sas = list(self._by_conn.get(target, {}).values())
        n = 0
        for sa in sas:
            if sa.state in IKE_FINAL:
                continue
            ike_delete.start(sa, now, reason="terminated")
            n += 1
        self._collect()
        return n

    def eap_backend_reply(self, ike_id: int, reply: BackendReply, now: float) -> None:
        """The AAA backend's answer to an :class:`EapBackendRequest` of IKE SA
        ``ike_id`` (EAP-RADIUS, RFC 3579): the held IKE_AUTH request is answered.  An
        unknown or ended IKE SA, or one that waits for nothing, ignores it."""
        self._clock = now
        sa = self.by_id.get(ike_id)
        if sa is None or sa.closed:
            log.debug("EAP backend reply for IKE SA %d ignored: no such IKE SA", ike_id)
            return
        self._dirty[sa] = None
        try:
            eap_auth.backend_reply(sa, reply, now)
        except Exception:  # a bug: this SA's state cannot be trusted any more
            sa.log.exception("error handling the EAP backend reply")
            self._internal_error(sa, now)
        self._collect()

    def liveness(self, ike_id: int, now: float) -> None:
        """Send an empty INFORMATIONAL request now (§2.4); LivenessAnswered follows."""
        liveness.start(self._sa(ike_id), now, report=True)
        self._collect()

    def esp_activity(
        self, spi_in: int, now: float, remote: Address | None = None, seq: int | None = None
    ) -> bool:
        """Authenticated ESP arrived on ``spi_in``: proof of liveness (§2.4).

        Pass the packet's outer source ``remote`` and its ESP sequence number
        ``seq`` (after the replay check) to let the core follow a NAT mapping
        change of the peer (§2.23).  True when the peer moved to ``remote`` (a
        PeerAddressChanged event follows)."""
        sa = self._owner_of(spi_in)
        if sa is None:
            return False
        before = sa.remote
        sa.esp_activity(now, remote, spi_in, seq)
        c = sa.children.get(spi_in)
        if c is not None:
            c.last_used = now
        self._collect()
        return remote is not None and sa.remote != before and sa.remote == remote

    def notify_traffic(
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
        """Cumulative counters of a Child SA pair (keyed by its inbound SPI), and the
        last outbound ESP sequence number (rekey before it runs out, RFC 4303 §3.3.3)."""
        sa = self._owner_of(spi_in)
        if sa is not None:
            sa.traffic(
                spi_in,
                now,
                bytes_in=bytes_in,
                packets_in=packets_in,
                bytes_out=bytes_out,
                packets_out=packets_out,
                seq_out=seq_out,
            )
            self._collect()

    def status(
        self,
        now: float | None = None,
        *,
        conn: str | None = None,
        peer: str | None = None,
        offset: int = 0,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """JSON-ready status of the live IKE SAs: all, or those of one connection and/or
        peer IP address, ``limit`` of them from ``offset`` on (in IKE SA id order)."""
        pool: Iterable[IkeSa]
        if conn is not None:
            pool = self._by_conn.get(conn, {}).values()
        elif peer is not None:
            pool = self._by_remote_ip.get(peer)  # authenticated SAs of that peer
        else:
            pool = self.by_id.values()
        out: list[dict[str, Any]] = []
        skipped = 0
        for sa in pool:
            if sa.state in IKE_FINAL or (conn is not None and sa.conn.name != conn):
                continue
            if peer is not None and sa.remote[0] != peer:
                continue
            if skipped < offset:
                skipped += 1
                continue
            if limit is not None and len(out) >= limit:
                break
            out.append(sa.status(now))
        return out

    def ike_sas(self, conn: str | None = None) -> list[IkeSaView]:
        """Snapshots of the live (not deleted or failed) IKE SAs, of one connection or all."""
        return [_ike_view(sa) for sa in self._pool(conn) if sa.state not in IKE_FINAL]

    def ike_sa(self, ike_id: int) -> IkeSaView | None:
        """A snapshot of the live IKE SA ``ike_id`` (one lookup), None when there is none."""
        sa = self.by_id.get(ike_id)
        return None if sa is None or sa.state in IKE_FINAL else _ike_view(sa)

    def child_sa(self, spi_in: int) -> ChildSaView | None:
        """A snapshot of the Child SA with inbound SPI ``spi_in`` of a live IKE SA (one
        lookup), None when there is none."""
        sa = self._child_spis.get(spi_in)
        if sa is None or sa.state in IKE_FINAL:
            return None
        c = sa.children.get(spi_in)
        return None if c is None else _child_view(sa, c)

    def _pool(self, conn: str | None) -> Iterable[IkeSa]:
        return (self._by_conn.get(conn, {}) if conn is not None else self.by_id).values()

    def child_sas(self, conn: str | None = None) -> list[ChildSaView]:
        """Snapshots of the Child SAs of live IKE SAs, of one connection or all."""
        return [
            _child_view(sa, c)
            for sa in self._pool(conn)
            if sa.state not in IKE_FINAL
            for c in sa.children.values()
        ]

    def sa_counts(self) -> SaCounts:
        """How many IKE SAs (per state) and Child SAs there are, from counters kept
        up to date as SAs change: O(1) in the number of SAs (the SAs changed since the
        last entry point's collection, normally none, are counted first)."""
        for sa in self._dirty:
            if self.by_id.get(sa.ike_id) is sa:
                self._count_state(sa)
                self._count_children(sa)
        return SaCounts(
            ike_by_state=dict(self._state_count),
            child=len(self._child_spis),
            half_open_responders=len(self._half_open_responders),
            child_by_state=dict(self._child_state_count),
        )

    def _count_state(self, sa: IkeSa) -> None:
        """Count the registered ``sa`` under its current state (once per change)."""
        old = self._counted_state.get(sa)
        new = sa.state
        if old is new:
            return
        if old is not None:
            self._state_count[old] -= 1
        self._state_count[new] += 1
        self._counted_state[sa] = new

    def _uncount_state(self, sa: IkeSa) -> None:
        old = self._counted_state.pop(sa, None)
        if old is not None:
            self._state_count[old] -= 1
        self._set_counted_children(sa, ())

    def _count_children(self, sa: IkeSa) -> None:
        """Count the children of the registered ``sa`` under their current states
        (none while ``sa`` is deleted or failed: ``child_sas()`` does not list them)."""
        now: tuple[ChildSaState, ...] = ()
        if sa.children and sa.state not in IKE_FINAL:
            now = tuple([c.state for c in sa.children.values()])  # no generator: faster
        if self._counted_children.get(sa, ()) != now:
            self._set_counted_children(sa, now)

    def _set_counted_children(self, sa: IkeSa, states: tuple[ChildSaState, ...]) -> None:
        count = self._child_state_count
        for s in self._counted_children.pop(sa, ()):
            count[s] -= 1
        if states:  # one shared tuple per combination (most SAs: one INSTALLED child)
            shared = self._state_tuples
            if len(shared) < 256:
                states = shared.setdefault(states, states)
            else:
                states = shared.get(states, states)
            self._counted_children[sa] = states
            for s in states:
                count[s] += 1

    # ------------------------------------------------------------------ errors

    def count_error(self, kind: ErrorKind, n: int = 1, conn: str = "") -> None:
        """Add to the daemon-wide error totals (IkeSa.on_error calls this, with its
        connection) and to the IKE counters."""
        self.error_totals[kind] = self.error_totals.get(kind, 0) + n
        self.ike_counters.error(kind, conn, n)

    def counters(
        self, conn: str | None = None, *, every: bool = False
    ) -> dict[str, dict[str, int]]:
        """The IKE counters (``swanctl --counters``) by connection: the global ones
        (key ``""``), one connection's (empty when it has none yet) or every one's."""
        return self.ike_counters.get(conn, every=every)

    def reset_counters(self, conn: str | None = None, *, every: bool = False) -> None:
        """Zero the global counters (``conn`` None), forget ``conn``'s, or (``every``)
        both for all."""
        if every:
            self.ike_counters.reset_all()
        else:
            self.ike_counters.reset(conn)

    def error_status(self) -> dict[str, int]:
        """Every error counted so far, by recovery.ErrorKind value (JSON-ready)."""
        return {k.value: v for k, v in sorted(self.error_totals.items(), key=lambda i: i[0].value)}

    def _handle(self, kind: ErrorKind, now: float, detail: str) -> bool:
        """An error outside any IKE SA: count, log (rate-limited); True = may answer."""
        h = self.errors.handle(kind, now)
        self.count_error(kind)
        if h.log:
            log.log(h.decision.log_level, "%s: %s", kind.value, detail)
        return h.answer

    def esp_errors(
        self,
        spi_in: int,
        now: float,
        *,
        auth: int = 0,
        replay: int = 0,
        malformed: int = 0,
        selectors: int = 0,
    ) -> None:
        """The data plane dropped ESP packets of ``spi_in`` (counts since its last report):
        ICV failures (RFC 4303 §3.4.4), replays (§3.4.3), undecodable packets (§3.4),
        inner packets outside the SA's selectors (RFC 4301 §5.2).
        They are counted -- in the IKE SA's status and the totals -- and logged
        rate-limited; the recovery table says DROP_SILENTLY: never answered."""
        sa = self._owner_of(spi_in)
        for kind, n in (
            (ErrorKind.ESP_AUTH_FAILURE, auth),
            (ErrorKind.ESP_REPLAY, replay),
            (ErrorKind.ESP_MALFORMED, malformed),
            (ErrorKind.INVALID_SELECTORS, selectors),
        ):
            if n <= 0:
                continue
            handler = sa.errors if sa is not None else self.errors
            h = handler.handle(kind, now, n)
            assert not h.answer  # DROP_SILENTLY rows are never answered
            self.count_error(kind, n)
            if h.log:
                log.log(h.decision.log_level, "ESP SA %08x: %d x %s", spi_in, n, kind.value)

    def unknown_esp_spi(self, spi: int, remote: Address, now: float) -> bool:
        """ESP arrived for an SPI we do not have (RFC 7296 §2.21.4, §3.10.1).

        If an established IKE SA with that peer (its IP address) exists, an
        INFORMATIONAL request with N(INVALID_SPI) (data: the SPI) is queued inside it --
        rate-limited by the recovery table's answer bucket, so a flood of bogus ESP is
        never amplified; otherwise the packet is only counted.  True when a notify was
        queued (the caller then flushes ``datagrams_to_send``).
        """
        self._clock = now
        target = None
        for sa in self._by_remote_ip.get(remote[0]):
            if sa.state is IkeSaState.ESTABLISHED and sa.remote[0] == remote[0]:
                target = sa
                break
        if target is None:
            self._handle(ErrorKind.INVALID_SPI, now, f"ESP SPI {spi:08x} from unknown {remote}")
            return False
        h = target.on_error(ErrorKind.INVALID_SPI, now, f"ESP SPI {spi:08x} from {remote}")
        if not h.answer:
            return False
        sent = InformationalNotify.start(
            target, NotifyType.INVALID_SPI, (spi & 0xFFFFFFFF).to_bytes(4, "big"), now
        )
        self._collect()
        return sent

    def reload(self, connections: Sequence[ConnectionConfig], now: float) -> None:
        """Replace the configuration: removed or changed connections lose their SAs."""
        new = ConnectionTable((c.name, c) for c in connections)
        for name, old in self.conns.items():
            if new.get(name) != old:
                self._config_removed(name, now)
        self.conns = new
        self._collect()

    def _config_removed(self, conn_name: str, now: float) -> None:
        """A connection was removed or changed (§1.4.1): its IKE SAs go, as the recovery
        table's CONFIG_REMOVED row says (a Delete each)."""
        for sa in list(self._by_conn.get(conn_name, {}).values()):
            if sa.closed:
                continue
            h = sa.on_error(ErrorKind.CONFIG_REMOVED, now, "connection removed or changed")
            if h.decision.send_delete:
                ike_delete.start(sa, now, reason="configuration changed")
            else:
                sa.finish(now, "configuration changed")

    def load_pools(self, pools: Sequence[PoolConfig]) -> list[str]:
        """Replace the virtual IP pools (§2.19); the problems, one line each (a pool
        whose range changed while addresses are online keeps its old range)."""
        problems = self.pools.load(pools)
        for p in problems:
            log.warning("%s", p)
        return problems

    def pools_status(
        self, *, leases: bool = False, name: str | None = None
    ) -> list[dict[str, Any]]:
        """Each pool: range, size, online/offline/free counts, and with ``leases`` every
        lease (address, identity, online or offline)."""
        return self.pools.status(leases=leases, name=name)

    def shutdown(self, now: float) -> None:
        self.ke_reuse.forget()
        for sa in list(self.by_id.values()):
            if sa.state not in IKE_FINAL:
                ike_delete.start(sa, now, reason="shutdown")
        self._collect()

    def find_ike(self, ike_id: int) -> IkeSa | None:
        return self.by_id.get(ike_id)

    # ================================================================== internals

    def _owner_of(self, spi_in: int) -> IkeSa | None:
        """The IKE SA of the installed Child SA ``spi_in`` (the index, no search)."""
        sa = self._child_spis.get(spi_in)
        if sa is not None and spi_in in sa.children and sa.state not in IKE_FINAL:
            self._dirty[sa] = None  # a data-plane report: liveness deadlines move
            return sa
        return None

    def _receive(self, data: bytes, local: Address, remote: Address, now: float) -> None:
        if data == NAT_KEEPALIVE or len(data) < IKE_HEADER_LEN:
            return
        try:
            hdr = Message.parse(data)
        except UnsupportedCriticalPayload as exc:
            self._unparseable(data, exc, local, remote)
            return
        except ProtocolError as exc:
            # unprotected garbage: counted, logged rate-limited (the table's row), no answer
            detail = f"from {format_endpoint(remote)}: {exc}"
            self._handle(ErrorKind.MALFORMED_MESSAGE, now, detail)
            return
        if hdr.exchange == ExchangeType.IKE_SA_INIT and not hdr.is_response:
            self._init_request(data, hdr, local, remote, now)
            return
        our_spi = hdr.spi_r if hdr.is_initiator else hdr.spi_i
        sa = self.sas.get(our_spi)
        if sa is None or (sa.state in IKE_FINAL and sa.linger_until is None):
            if not hdr.is_response and hdr.encrypted is not None:
                self._invalid_spi(hdr, local, remote, now)
            elif hdr.is_response:
                # §2.21.4: never answered (the table's DROP_SILENTLY, counted)
                detail = f"response for IKE SPI {our_spi.hex()} from {format_endpoint(remote)}"
                self._handle(ErrorKind.UNKNOWN_IKE_SPI_RESPONSE, now, detail)
            else:
                log.debug("message for unknown IKE SPI %s dropped", our_spi.hex())
            return
        if (sa.spi_i, sa.spi_r) != (
            hdr.spi_i,
            hdr.spi_r,
        ) and hdr.exchange != ExchangeType.IKE_SA_INIT:
            sa.log.debug("peer SPI mismatch, dropped")
            return
        if sa.local[0] in ("0.0.0.0", "::"):
            sa.local = (local[0], sa.local[1])
        self._dirty[sa] = None
        try:
            sa.receive(data, hdr, local, remote, now)
        except Exception:  # a bug: this SA's state cannot be trusted any more
            sa.log.exception("error handling a message")
            self._internal_error(sa, now)

    def _internal_error(self, sa: IkeSa, now: float) -> None:
        """§2.21.3: state that cannot be trusted is cleaned up (the recovery table's
        INTERNAL_ERROR row: delete the IKE SA, with a Delete when it says so)."""
        h = sa.on_error(ErrorKind.INTERNAL_ERROR, now)
        if not h.decision.has(RecoveryAction.DELETE_SA):
            return
        try:
            if h.decision.send_delete:
                ike_delete.start(sa, now, reason="internal error")
            else:
                sa.finish(now, "internal error")
        except Exception:
            sa.log.exception("cannot delete after an internal error")
            sa.vanish(now)

    def _init_request(
        self, data: bytes, hdr: Message, local: Address, remote: Address, now: float
    ) -> None:
        if hdr.spi_r != _ZERO_SPI or hdr.message_id != 0:
            log.debug("IKE_SA_INIT request with SPIr/Message ID set, dropped")
            return
        if hdr.spi_i == _ZERO_SPI:
            log.debug("IKE_SA_INIT request with SPIi zero dropped (RFC 7296 §3.1)")
            return
        key = (hdr.spi_i, remote)
        existing = self.half_open.get(key)
        if existing is not None and existing.state not in IKE_FINAL:
            existing.receive(data, hdr, local, remote, now)
            return
        up = self._responders.get(key)
        if up is not None and up.state not in IKE_FINAL:
            return  # late retransmission of an SA that is already up
        ip = remote[0]
        total, from_ip = self._half_open_count(), self._half_open_count(ip)
        memory = self.half_open_memory
        # §2.6: cookies first (stateless, proves the source address), then the limits
        if total >= self.cookie_threshold:
            why = "too many half-open SAs"
        elif memory.wants_cookies():
            why = f"half-open state at {memory.total} of {memory.budget} bytes"
        elif self.cookie_threshold_ip and from_ip >= self.cookie_threshold_ip:
            why = f"{from_ip} half-open SAs from this address"
        else:
            why = ""
        if why and not self._cookie_ok(hdr, remote, now):
            self._send_cookie(hdr, local, remote, now, why)
            return
        if self.block_threshold and from_ip >= self.block_threshold:
            detail = f"{from_ip} half-open SAs (block_threshold {self.block_threshold})"
            self._handle(ErrorKind.HALF_OPEN_LIMIT, now, f"IKE_SA_INIT from {ip} dropped: {detail}")
            return
        if self.half_open_limit and total >= self.half_open_limit:
            detail = f"{total} half-open SAs (half_open_limit {self.half_open_limit})"
            self._handle(ErrorKind.HALF_OPEN_LIMIT, now, f"IKE_SA_INIT from {ip} dropped: {detail}")
            return
        if not memory.room(HALF_OPEN_SA_BYTES + len(data)):
            detail = f"half-open state at {memory.total} bytes (half_open_memory {memory.budget})"
            self._handle(ErrorKind.HALF_OPEN_LIMIT, now, f"IKE_SA_INIT from {ip} dropped: {detail}")
            return
        conns = self.conns_for(local, remote)
        if not conns:
            self.network_log(
                now,
                logging.INFO,
                "IKE_SA_INIT from %s: no matching connection",
                format_endpoint(remote),
            )
            reply = Message(
                hdr.spi_i,
                _ZERO_SPI,
                ExchangeType.IKE_SA_INIT,
                int(HeaderFlag.RESPONSE),
                0,
                [(PayloadType.NOTIFY, NotifyPayload(0, b"", NotifyType.NO_PROPOSAL_CHOSEN))],
            )
            self._out.append((reply.serialise(), local, remote))
            return
        sa = self._new_sa(conns[0], False, local, remote, now)
        answered = ike_init.respond(sa, data, hdr, local, remote, now, conns=conns)
        # a request received (in the chosen connection's counters)
        self.ike_counters.message(ExchangeType.IKE_SA_INIT, True, True, sa.conn.name)
        if not answered:
            self._out.extend(sa.outbox)
            return
        if not memory.room(_half_open_charge(sa)):
            # the response is known only now: the budget holds exactly, the answer is
            # not sent and nothing is kept (as if refused before, §2.6)
            sa.outbox.clear()
            self._dirty.pop(sa, None)
            detail = f"half-open state at {memory.total} bytes (half_open_memory {memory.budget})"
            self._handle(ErrorKind.HALF_OPEN_LIMIT, now, f"IKE_SA_INIT from {ip} dropped: {detail}")
            return
        sa.timers.set(TimerKind.HALF_OPEN, now + self.half_open_timeout)
        self._register(sa)
        self.half_open[key] = sa
        self._responders[key] = sa
        self._responder_key[sa] = key
        self._half_open_by_ip[ip] = from_ip + 1
        self._charge_half_open(sa, ip)

    def _half_open_count(self, ip: str | None = None) -> int:
        """Half-open responder SAs: all of them, or those from peer address ``ip``."""
        if ip is not None:
            return self._half_open_by_ip.get(ip, 0)
        return len(self._half_open_responders)

    def _charge_half_open(self, sa: IkeSa, ip: str) -> None:
        """A new half-open responder from ``ip``: its objects and the IKE_SA_INIT
        messages it keeps for AUTH (§2.15) are charged now, its fragments (RFC 7383) as
        they come."""
        charged = _half_open_charge(sa)
        self._half_open_responders[sa] = (ip, charged)
        self.half_open_memory.charge(charged)
        sa.fragments.meter = self.half_open_memory

    def half_open_status(self) -> dict[str, int]:
        """Half-open responders (§2.6): their number, the bytes they hold (``bytes``,
        its ``peak`` so far) and the byte budget (``half_open_memory``, 0 = none)."""
        return {"sas": self._half_open_count(), **self.half_open_memory.status()}

    def _half_open_bytes_recount(self) -> int:
        """The half-open bytes added up from scratch (O(n): tests and benchmarks)."""
        return sum(c + sa.fragments.metered for sa, (_, c) in self._half_open_responders.items())

    # ------------------------------------------------------------------ cookies (§2.6)

    def _rotate(self, now: float) -> None:
        if self._cookie_rotated_at is None:
            self._cookie_rotated_at = now
        elif now - self._cookie_rotated_at >= COOKIE_SECRET_LIFETIME:
            self._cookie_prev = self._cookie_secret
            self._cookie_secret = self.rng(32)
            self._cookie_version = (self._cookie_version + 1) % 256
            self._cookie_rotated_at = now

    def _cookie(self, version: int, secret: bytes, hdr: Message, remote: Address) -> bytes:
        nonce = hdr.get(PayloadType.NONCE)
        ni = nonce.nonce if nonce is not None else b""
        ip = packed_ip(remote[0])
        digest = hashlib.sha256(ni + ip + hdr.spi_i + secret).digest()
        return bytes([version]) + digest

    def _cookie_ok(self, hdr: Message, remote: Address, now: float) -> bool:
        self._rotate(now)
        first = hdr.payloads[0][1] if hdr.payloads else None
        if (
            not isinstance(first, NotifyPayload)
            or first.type != NotifyType.COOKIE
            or not first.data
        ):
            return False
        version = first.data[0]
        if version == self._cookie_version:
            return first.data == self._cookie(version, self._cookie_secret, hdr, remote)
        if self._cookie_prev is not None and version == (self._cookie_version - 1) % 256:
            return first.data == self._cookie(version, self._cookie_prev, hdr, remote)
        return False

    def _send_cookie(
        self,
        hdr: Message,
        local: Address,
        remote: Address,
        now: float,
        why: str = "too many half-open SAs",
    ) -> None:
        self._rotate(now)
        cookie = self._cookie(self._cookie_version, self._cookie_secret, hdr, remote)
        reply = Message(
            hdr.spi_i,
            _ZERO_SPI,
            ExchangeType.IKE_SA_INIT,
            int(HeaderFlag.RESPONSE),
            0,
            [(PayloadType.NOTIFY, NotifyPayload(0, b"", NotifyType.COOKIE, cookie))],
        )
        if self._cookie_log.allow(now):  # a flood must not flood the log
            log.info("IKE_SA_INIT from %s: %s, asking for a cookie", format_endpoint(remote), why)
        self._out.append((reply.serialise(), local, remote))

    # ------------------------------------------------------------------ errors outside an SA

    def _invalid_spi(self, hdr: Message, local: Address, remote: Address, now: float) -> None:
        """§1.5: INVALID_IKE_SPI, unprotected, SPIs and Message ID copied (rate-limited)."""
        self.count_error(ErrorKind.INVALID_IKE_SPI)
        if not self._invalid_spi_limiter.allow(now):
            return
        flags = HeaderFlag.RESPONSE | (
            HeaderFlag.NONE if hdr.is_initiator else HeaderFlag.INITIATOR
        )
        reply = Message(
            hdr.spi_i,
            hdr.spi_r,
            ExchangeType.INFORMATIONAL,
            int(flags),
            hdr.message_id,
            [(PayloadType.NOTIFY, NotifyPayload(0, b"", NotifyType.INVALID_IKE_SPI))],
        )
        log.info(
            "message for unknown IKE SA %s/%s from %s: INVALID_IKE_SPI",
            hdr.spi_i.hex(),
            hdr.spi_r.hex(),
            remote,
        )
        self._out.append((reply.serialise(), local, remote))

    def _unparseable(
        self, data: bytes, exc: ProtocolError, local: Address, remote: Address
    ) -> None:
        """UNSUPPORTED_CRITICAL_PAYLOAD for an IKE_SA_INIT request (§2.5)."""
        spi_i, _spi_r, _np, _ver, exchange, flags, mid, _len = _HDR.unpack_from(data)
        if exchange != ExchangeType.IKE_SA_INIT or flags & HeaderFlag.RESPONSE or mid != 0:
            self.network_log(
                self._clock,
                logging.INFO,
                "message with unsupported critical payload from %s dropped",
                format_endpoint(remote),
            )
            return
        reply = Message(
            spi_i,
            _ZERO_SPI,
            ExchangeType.IKE_SA_INIT,
            int(HeaderFlag.RESPONSE),
            0,
            [(PayloadType.NOTIFY, NotifyPayload(0, b"", exc.notify, exc.data))],
        )
        self._out.append((reply.serialise(), local, remote))

    # ------------------------------------------------------------------ bookkeeping

    def network_log(self, now: float, level: int, msg: str, *args: object) -> None:
        """A log line caused by what someone sent us, unauthenticated: at most
        NETWORK_LOG_RATE per second (bursts of NETWORK_LOG_BURST), with the number of
        lines left out in the next one -- a flood of garbage must not fill the disk."""
        if not log.isEnabledFor(level):
            return
        if not self._network_log.allow(now):
            return
        left_out = self._network_log.take_suppressed()
        if left_out:
            msg += f" ({left_out} similar lines suppressed)"
        log.log(level, msg, *args)

    def wall_time(self, now: float) -> dt.datetime | None:
        """SaOwner: the calendar time of ``now`` (``wall_clock``), None when not given."""
        return self.wall_clock(now) if self.wall_clock is not None else None

    def touched(self, sa: IkeSa) -> None:
        """SaOwner: ``sa`` has datagrams, events or deadlines to look at."""
        self._dirty[sa] = None

    def _collect(self) -> None:
        """Gather what the SAs that changed since the last call have for us: datagrams,
        events, keepalives and new deadlines (the timer heap).  Only those SAs."""
        while self._dirty:
            dirty, self._dirty = self._dirty, {}
            for sa in dirty:
                if self.by_id.get(sa.ike_id) is not sa:
                    continue  # not (or no longer) registered: e.g. a refused responder
                self._collect_one(sa)

    def _collect_one(self, sa: IkeSa) -> None:
        if self._counted_state.get(sa) is not sa.state:
            self._count_state(sa)
        if sa.children or sa in self._counted_children:
            self._count_children(sa)
        if sa.outbox:
            self._sent_by[sa] = None
            self._out.extend(sa.outbox)
            sa.outbox.clear()
        if sa.events:
            events, sa.events = sa.events, []
            for ev in events:
                self._events.append(ev)
                self._on_event(sa, ev)
        if sa.keepalive_due:
            self._keepalive_due[sa] = None
        if not sa.half_open:
            self._leave_half_open(sa)
        if sa.closed:
            linger = sa.linger_until
            if linger is None or linger <= self._clock:
                self._forget(sa)
                return
        when = sa.next_timer()
        if when is None:
            self._deadline.pop(sa, None)
        elif self._deadline.get(sa) != when:
            self._deadline[sa] = when
            self._heap_seq += 1
            heapq.heappush(self._heap, (when, self._heap_seq, sa))

    def _on_event(self, sa: IkeSa, ev: Event) -> None:
        if isinstance(ev, ChildSaDeleted):
            if self._child_spis.get(ev.spi_in) is sa:
                del self._child_spis[ev.spi_in]
        elif isinstance(ev, (ChildSaInstalled, ChildSaRekeyed)):
            self._child_spis[ev.info.spi_in] = sa
            self._reserved.pop(ev.info.spi_in, None)
            if isinstance(ev, ChildSaRekeyed):
                self.ike_counters.rekeyed_child(sa.conn.name)
        elif isinstance(ev, IkeSaRekeyed):
            new = self.by_id.get(ev.new_id)
            if new is not None:
                for spi in new.children:
                    self._child_spis[spi] = new
                self._count_children(new)  # the children it took over (§2.8.2)
                # §2.18: who sent the CREATE_CHILD_SA is the new SA's original initiator
                self.ike_counters.rekeyed_ike(initiated=new.initiator, conn=sa.conn.name)
        elif isinstance(ev, PeerAddressChanged):
            self._unindex_ip(sa, ev.old[0])
            self._index_established(sa)
        elif isinstance(ev, PeerDead):
            # the children whose (own or inherited) dpd_action is restart; an SA that
            # carried none restarts the connection's first child when its action says so
            children = list(sa.dead_children)
            if children or (ev.action is DpdAction.RESTART and not ev.children):
                self._restart.append((self._clock, sa.conn.name, children, 0))
        elif isinstance(ev, IkeSaEstablished):
            self._restart_of.pop(sa.ike_id, None)
            key = self._responder_key.get(sa)
            if key is not None and self.half_open.get(key) is sa:
                del self.half_open[key]
            self._index_established(sa)
        elif isinstance(ev, IkeSaFailed) and sa.ike_id in self._restart_of:
            self._schedule_retry(sa, *self._restart_of.pop(sa.ike_id), notify=ev.notify)

    def _schedule_retry(
        self,
        sa: IkeSa,
        conn_name: str,
        children: list[str],
        attempt: int,
        *,
        notify: int | None = None,
    ) -> None:
        """A re-initiation after a restart failed: try again after the connection's
        ``reinit_backoff`` (RetryPolicy), ``keyingtries`` times (0 = for ever).

        A failure whose error notification has its own retry policy in the recovery
        table (AUTHENTICATION_FAILED: RESET_CONNECTION with a long backoff) is paced
        and bounded by that policy instead: a refused authentication is a
        configuration problem, not a peer that does not answer."""
        conn = self.conns.get(conn_name)
        if conn is None:
            return
        if conn.keyingtries and attempt + 1 >= conn.keyingtries:
            log.warning("%s: giving up after %d re-initiations", conn_name, attempt + 1)
            return
        policy = RetryPolicy.from_retransmit_config(conn.reinit_backoff)
        kind = kind_for_received_notify(notify, in_response=True) if notify else None
        if kind is not None:
            decision = sa.errors.decide(kind)
            if RecoveryAction.RESET_CONNECTION in decision.actions and decision.retry:
                policy = decision.retry
                if attempt + 1 > policy.max_attempts:
                    log.warning(
                        "%s: giving up after %d re-initiations (%s)",
                        conn_name,
                        attempt + 1,
                        kind.value,
                    )
                    return
        delay = policy.delay(attempt, self.rng)
        log.info("%s: re-initiation %d failed, next try in %.1f s", conn_name, attempt + 1, delay)
        self._restart.append((self._clock + delay, conn_name, children, attempt + 1))

    def _do_restarts(self, now: float) -> None:
        due = [r for r in self._restart if r[0] <= now]
        if not due:
            return
        self._restart = [r for r in self._restart if r[0] > now]
        for _, conn_name, children, attempt in due:
            if conn_name not in self.conns:
                continue
            log.info("restart of %s (attempt %d)", conn_name, attempt + 1)
            try:
                sa = self._initiate(conn_name, children[0] if children else None, now)
                for name in children[1:]:
                    sa.pending_children.append(self.conns[conn_name].child(name))
            except (KeyError, ValueError) as exc:
                log.warning("cannot restart %s: %s", conn_name, exc)
                continue
            if not sa.established:
                self._restart_of[sa.ike_id] = (conn_name, children, attempt)
        self._collect()

    def _prune_reservations(self, now: float) -> None:
        """An allocated SPI is in use once installed; forget stale reservations."""
        order = self._reserved_order
        while order and order[0][0] < now - SPI_RESERVATION:
            when, spi = order.popleft()
            if self._reserved.get(spi) == when:
                del self._reserved[spi]

    def _register(self, sa: IkeSa) -> None:
        self.by_id[sa.ike_id] = sa
        self.sas[sa.our_spi] = sa
        self._by_conn.setdefault(sa.conn.name, {})[sa.ike_id] = sa
        self._dirty[sa] = None
        self._count_state(sa)

    def _index_established(self, sa: IkeSa) -> None:
        """Index an authenticated SA by its peer's identity and IP address."""
        if sa.remote_id:
            self._by_peer_id.add((sa.conn.name, sa.remote_id), sa)
        self._by_remote_ip.add(sa.remote[0], sa)

    def _unindex_ip(self, sa: IkeSa, ip: str) -> None:
        self._by_remote_ip.remove(ip, sa)

    def _leave_half_open(self, sa: IkeSa) -> None:
        """``sa`` is no longer a half-open responder: the total and per-IP counts
        (cookie and block thresholds, §2.6) and the bytes it held go down."""
        entry = self._half_open_responders.pop(sa, None)
        if entry is not None:
            ip, charged = entry
            sa.fragments.meter = None
            self.half_open_memory.charge(-(charged + sa.fragments.metered))
            if self._half_open_by_ip[ip] > 1:
                self._half_open_by_ip[ip] -= 1
            else:
                del self._half_open_by_ip[ip]

    def _forget(self, sa: IkeSa) -> None:
        if self.by_id.get(sa.ike_id) is sa:
            del self.by_id[sa.ike_id]
            self._uncount_state(sa)
        if self.sas.get(sa.our_spi) is sa:
            del self.sas[sa.our_spi]
        _unindex(self._by_conn, sa.conn.name, sa)
        self._by_peer_id.remove((sa.conn.name, sa.remote_id), sa)
        self._unindex_ip(sa, sa.remote[0])
        key = self._responder_key.pop(sa, None)
        if key is not None:
            for table in (self.half_open, self._responders):
                if table.get(key) is sa:
                    del table[key]
        self._leave_half_open(sa)
        self._keepalive_due.pop(sa, None)
        self._deadline.pop(sa, None)
        for spi in sa.children:
            if self._child_spis.get(spi) is sa:
                del self._child_spis[spi]
        sa.dispose()


K = TypeVar("K")


def _unindex(index: dict[K, dict[int, IkeSa]], key: K, sa: IkeSa) -> None:
    """Remove ``sa`` from the bucket ``key`` of an index (and the bucket when empty)."""
    bucket = index.get(key)
    if bucket is not None and bucket.get(sa.ike_id) is sa:
        del bucket[sa.ike_id]
        if not bucket:
            del index[key]


class _PeerIndex(Generic[K]):
    """IKE SAs bucketed by a peer's key (IP address, identity), in insertion order.

    Almost every peer has one IKE SA, so a bucket of one is the SA itself and only a
    bucket of several is a ``{ike_id: sa}`` dict: no dict per tunnel (~220 B each)."""

    __slots__ = ("_buckets",)

    def __init__(self) -> None:
        self._buckets: dict[K, IkeSa | dict[int, IkeSa]] = {}

    def get(self, key: K) -> tuple[IkeSa, ...]:
        """The SAs of ``key`` (a snapshot: the caller may change the index meanwhile)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return ()
        if isinstance(bucket, dict):
            return tuple(bucket.values())
        return (bucket,)

    def add(self, key: K, sa: IkeSa) -> None:
        bucket = self._buckets.get(key)
        if isinstance(bucket, dict):
            bucket[sa.ike_id] = sa
        elif bucket is None or bucket.ike_id == sa.ike_id:
            self._buckets[key] = sa
        else:
            self._buckets[key] = {bucket.ike_id: bucket, sa.ike_id: sa}

    def remove(self, key: K, sa: IkeSa) -> None:
        """Remove ``sa`` from the bucket ``key`` (and the bucket when empty)."""
        bucket = self._buckets.get(key)
        if bucket is sa:
            del self._buckets[key]
        elif isinstance(bucket, dict) and bucket.get(sa.ike_id) is sa:
            del bucket[sa.ike_id]
            if len(bucket) == 1:
                (self._buckets[key],) = bucket.values()


def _is_ip(text: str, version: int) -> bool:
    try:
        return ipaddress.ip_address(text).version == version
    except ValueError:
        return False


def _ike_view(sa: IkeSa) -> IkeSaView:
    return IkeSaView(
        sa.ike_id, sa.conn.name, sa.state, sa.initiator, sa.local, sa.remote, sa.local_id,
        sa.remote_id,
    )  # fmt: skip


def _child_view(sa: IkeSa, c: ChildSa) -> ChildSaView:
    return ChildSaView(sa.ike_id, sa.conn.name, c.name, c.spi_in, c.spi_out, c.state)


def _setup_time(conn: ConnectionConfig) -> float:
    """Twice the retransmission schedule of one exchange (§2.1): the half-open bound."""
    return 2 * RetryPolicy.from_retransmit_config(conn.retransmit).total_time()


def _satisfies_core(mgr: IkeManager) -> IkeCore:
    """Static check (mypy) that IkeManager implements the daemon's seam."""
    return mgr
