"""The userspace ESP data plane (RFC 4301 §5, RFC 4303, RFC 3948): installed Child SAs,
the SPD, and the packet paths between the TUN device and the UDP/raw ESP sockets.

Outbound: TUN read -> SPD lookup by destination -> ESP protect -> UDP (or raw) send.
Inbound: UDP/raw recv -> SPI table -> ESP unprotect -> inner packet checked against the
SA's selectors (RFC 4301 §5.2) -> TUN write.  Everything dropped is counted.

The data plane never calls the IKE core.  What the core must hear about leaves as typed
reports: :class:`UnknownSpi`, :class:`PeerMoved` and :class:`TrapHit` through the
``report`` callback as they happen (rare, never on the per-packet fast path), per-SA
traffic and ESP error deltas from :meth:`DataPlane.traffic_reports` (the runtime asks
once a second).  The per-SA counters on :class:`ChildState` are the only copy; where they
change, the SA is also marked in :attr:`DataPlane.changed`, so that a report visits only
the SAs that carried traffic (or errors) since the previous one, never every SA.
"""

from __future__ import annotations

import asyncio
import bisect
import ipaddress
import logging
import os
import socket
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .. import nat
from ..esp.errors import EspDummyPacket, EspError, EspSequenceExhausted
from ..esp.sa import EspInbound, EspOutbound
from ..ikev2 import events as ev
from ..ikev2.constants import NON_ESP_MARKER
from ..ikev2.selectors import Selector
from .sockets import DRAIN_MAX, GSO_MAX_BYTES, GSO_MAX_SEGMENTS, RawEspSocket, UdpSocket
from .spd import CACHE_MAX, Flow, SelectorLike, Spd, flow_in, flow_key, parse_flow

__all__ = [
    "ChildState",
    "DataPlane",
    "DropCounters",
    "EspErrorDelta",
    "PeerMoved",
    "Report",
    "TrafficReport",
    "TrapHit",
    "TrapPolicy",
    "UnknownSpi",
    "networks",
    "range_networks",
    "sel_str",
    "selectors_summary",
    "socket_for",
]

log = logging.getLogger("pyipsec.net")
log_child = logging.getLogger("pyipsec.child")
log_esp = logging.getLogger("pyipsec.esp")

Address = tuple[str, int]
TRAP_RETRY = 10.0
_MISS: Any = object()  # flow-cache miss marker
_ESP_MIN = 8  # SPI + sequence number
# inner packets a tunnel-mode SA carries: IPv4 and IPv6 (RFC 4303 §2.8), one shared set
_TUNNEL_NEXT_HEADERS = frozenset((4, 41))


class TunLike(Protocol):
    """The TUN device as the data plane and the routes see it (tests use doubles)."""

    @property
    def fd(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def mtu(self) -> int: ...
    @property
    def routes(self) -> list[str]: ...
    def add_route(self, network: str, prefsrc: str | None = None) -> bool: ...
    def prune_routes(self, keep: set[str]) -> list[str]: ...
    def routes_containing(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[str]: ...
    def add_address(self, address: str) -> bool: ...
    def remove_address(self, address: str) -> None: ...
    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class TrapPolicy:
    """A ``start_action = trap`` child: the first matching packet starts its IKE SA."""

    conn: str
    child: str


# ---------------------------------------------------------------- reports to the runtime


@dataclass(frozen=True, slots=True)
class UnknownSpi:
    """ESP for an SPI we do not have (the core may answer N(INVALID_SPI), RFC 7296
    §2.21.4)."""

    spi: int
    src: Address


@dataclass(frozen=True, slots=True)
class PeerMoved:
    """The newest authenticated ESP-in-UDP packet of an SA came from another address
    (a NAT mapping may have changed, RFC 7296 §2.23); ``seq`` is its sequence number."""

    spi_in: int
    src: Address
    seq: int


@dataclass(frozen=True, slots=True)
class TrapHit:
    """A packet matched a trap policy whose hold-down is over: start the tunnel."""

    conn: str
    child: str
    flow: Flow


Report = UnknownSpi | PeerMoved | TrapHit


@dataclass(frozen=True, slots=True)
class TrafficReport:
    """Cumulative counters of one SA that changed since the previous report; ``new_in``:
    packets arrived since then (authenticated arrivals, for DPD, RFC 7296 §2.4)."""

    spi_in: int
    new_in: bool
    last_in: float
    bytes_in: int
    packets_in: int
    bytes_out: int
    packets_out: int
    seq_out: int


@dataclass(frozen=True, slots=True)
class EspErrorDelta:
    """ICV failures / replays / garbage since the previous report (RFC 4303 §3.4.3,
    §3.4.4): counted by the core, never answered."""

    spi_in: int
    auth: int
    replay: int
    malformed: int
    selectors: int = 0  # inner packets outside the SA's selectors (RFC 4301 §5.2)


# ---------------------------------------------------------------- state


class PeerIndex:
    """The peers' IP addresses (counted: several SAs share one), kept sorted per family
    so that "does this network contain a peer?" is a bisection, not a walk over every
    SA (a route into the TUN device must never capture IKE/ESP traffic itself)."""

    __slots__ = ("_count", "_sorted")

    def __init__(self) -> None:
        self._count: dict[str, int] = {}
        self._sorted: dict[int, list[int]] = {4: [], 6: []}

    @staticmethod
    def _key(ip: str) -> tuple[int, int] | None:
        try:
            a = ipaddress.ip_address(ip)
        except ValueError:
            return None
        return a.version, int(a)

    def add(self, ip: str) -> None:
        n = self._count.get(ip, 0)
        self._count[ip] = n + 1
        key = self._key(ip) if n == 0 else None
        if key is not None:
            bisect.insort(self._sorted[key[0]], key[1])

    def remove(self, ip: str) -> None:
        n = self._count.get(ip, 0)
        if n > 1:
            self._count[ip] = n - 1
            return
        self._count.pop(ip, None)
        key = self._key(ip) if n == 1 else None
        if key is not None:
            lst = self._sorted[key[0]]
            i = bisect.bisect_left(lst, key[1])
            if i < len(lst) and lst[i] == key[1]:
                del lst[i]

    def __contains__(self, ip: str) -> bool:
        return ip in self._count

    def any_between(self, version: int, first: int, last: int) -> bool:
        """True when a peer's address of IP ``version`` lies in ``first``..``last``
        (integers: what a route install asks, without building address objects)."""
        lst = self._sorted[version]
        i = bisect.bisect_left(lst, first)
        return i < len(lst) and lst[i] <= last


@dataclass(slots=True, eq=False)
class ChildState:
    """One installed Child SA pair in the data plane; its counters are the only ones."""

    info: ev.ChildSaInfo
    inbound: EspInbound
    outbound: EspOutbound
    remote: Address
    local: Address
    encap: bool
    sock: UdpSocket | None
    raw: RawEspSocket | None
    local_ts: tuple[Selector, ...]
    remote_ts: tuple[Selector, ...]
    next_header_ok: frozenset[int]
    installed: float
    bytes_in: int = 0
    packets_in: int = 0
    bytes_out: int = 0
    packets_out: int = 0
    drops_selector: int = 0
    drops_send: int = 0
    drops_encap: int = 0  # arrived on the path the SA did not negotiate (RFC 3948 §3)
    last_in: float = 0.0
    # packets_in/packets_out at the last traffic report (what changed since then)
    reported_packets: tuple[int, int] = (0, 0)
    reported_errors: tuple[int, int, int, int] = (0, 0, 0, 0)  # auth, replay, format, selector
    # an ESP source the core refused to move the SA to (RFC 7296 §2.23): not reported again
    declined_src: Address | None = None
    # flow_key()s of inbound packets already checked against the selectors (RFC 4301 §5.2)
    ok_flows: set[Hashable] = field(default_factory=set)
    # the IKE SA that carries it now (an IKE SA rekey moves it, RFC 7296 §2.8.2)
    ike_id: int = 0

    def __post_init__(self) -> None:
        if not self.ike_id:
            self.ike_id = self.info.ike_id

    def status(self, now: float) -> dict[str, Any]:
        i = self.info
        soft, hard = i.lifetimes.soft, i.lifetimes.hard
        return {
            "conn": i.conn,
            "child": i.child,
            "ike_id": i.ike_id,
            "spi_in": f"{i.spi_in:08x}",
            "spi_out": f"{i.spi_out:08x}",
            "suite": i.suite,
            "mode": i.mode.value,
            "encap": self.encap,
            "local": f"{self.local[0]}[{self.local[1]}]",
            "remote": f"{self.remote[0]}[{self.remote[1]}]",
            "local_ts": [sel_str(s) for s in self.local_ts],
            "remote_ts": [sel_str(s) for s in self.remote_ts],
            "bytes_in": self.bytes_in,
            "packets_in": self.packets_in,
            "bytes_out": self.bytes_out,
            "packets_out": self.packets_out,
            "drops": {
                "selector": self.drops_selector,
                "send": self.drops_send,
                "encap": self.drops_encap,
                "replay": self.inbound.stats.replay_drops,
                "auth": self.inbound.stats.auth_failures,
                "format": self.inbound.stats.format_errors,
            },
            "age": round(now - self.installed, 1),
            "rekey_in": None if soft is None else round(soft - now, 1),
            "expires_in": None if hard is None else round(hard - now, 1),
        }


@dataclass(slots=True)
class DropCounters:
    """Data-plane drops that belong to no SA."""

    tun_invalid: int = 0
    no_policy: int = 0
    trap_pending: int = 0
    unknown_spi: int = 0
    invalid_udp: int = 0
    esp_errors: int = 0
    bad_inner: int = 0
    ike_errors: int = 0
    keepalives_in: int = 0
    wrong_encap: int = 0  # ESP of a known SA on the other path (UDP 4500 vs protocol 50)
    install_failed: int = 0  # negotiated Child SAs the data plane could not carry

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


# ---------------------------------------------------------------- helpers


def _summarize(
    start: ipaddress.IPv4Address | ipaddress.IPv6Address,
    end: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    if isinstance(start, ipaddress.IPv4Address) and isinstance(end, ipaddress.IPv4Address):
        return list(ipaddress.summarize_address_range(start, end))
    if isinstance(start, ipaddress.IPv6Address) and isinstance(end, ipaddress.IPv6Address):
        return list(ipaddress.summarize_address_range(start, end))
    raise TypeError(f"{start} and {end} are not of the same version")


def sel_str(s: SelectorLike) -> str:
    """One selector as ``203.0.113.0/26`` or ``203.0.113.0/26[17/53]``."""
    start, end = s.start, s.end
    try:
        nets = _summarize(start, end)
        addr = str(nets[0]) if len(nets) == 1 else f"{start}-{end}"
    except (TypeError, ValueError):
        addr = f"{start}-{end}"
    proto = s.protocol
    lo, hi = s.start_port, s.end_port
    if proto or (lo, hi) != (0, 65535):
        ports = "" if (lo, hi) == (0, 65535) else (f"/{lo}" if lo == hi else f"/{lo}-{hi}")
        return f"{addr}[{proto}{ports}]"
    return addr


def selectors_summary(sels: Sequence[SelectorLike]) -> str:
    """``203.0.113.0/26, 2001:db8:a::/64`` for log lines and tables."""
    return ", ".join(sel_str(s) for s in sels)


def networks(sel: SelectorLike) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The networks a selector's address range covers ([] for a mixed-family range)."""
    return range_networks(sel.start, sel.end)


def range_networks(
    start: ipaddress.IPv4Address | ipaddress.IPv6Address,
    end: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The networks the address range ``start``-``end`` covers ([] for a mixed-family
    or reversed range)."""
    try:
        return _summarize(start, end)
    except (TypeError, ValueError):
        return []


def socket_for(udp: Sequence[UdpSocket], local: Address, remote: Address) -> UdpSocket | None:
    """The UDP socket bound to ``local`` (or the wildcard one on its port)."""
    ip, port = local
    family = socket.AF_INET6 if ":" in remote[0] else socket.AF_INET
    best = None
    for us in udp:
        if us.family != family or us.port != port:
            continue
        if us.addr == ip:
            return us
        if us.wildcard or best is None:
            best = us
    return best


# ---------------------------------------------------------------- the data plane


class DataPlane:
    """Installed Child SAs, the SPD and the ESP packet paths.

    ``udp`` is the runtime's list of UDP sockets (shared, not copied); ``report`` gets
    the immediate reports; ``on_ike`` gets IKE datagrams found on the UDP sockets;
    ``clock`` is the monotonic clock of the core's ``now`` (trap hold-downs)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        udp: list[UdpSocket],
        report: Callable[[Report], None],
        *,
        on_ike: Callable[[bytes, Address, Address], None] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.loop = loop
        self.udp = udp
        self.report = report
        self.on_ike = on_ike
        self.clock: Callable[[], float] = clock or loop.time
        self.tun: TunLike | None = None
        self.raw: dict[int, RawEspSocket] = {}
        self.children: dict[int, ChildState] = {}
        # indexes so that installing, moving and removing one SA never walks them all
        self.by_ike: dict[int, dict[int, ChildState]] = {}  # IKE SA id -> spi_in -> SA
        self.peers = PeerIndex()  # the peers' IP addresses (routes must not capture them)
        # raw socket -> peer IP -> SAs using it (the socket is closed when none is left)
        self._raw_users: dict[int, dict[str, int]] = {}
        self.spd: Spd[ChildState | TrapPolicy] = Spd()
        self.drops = DropCounters()
        # the SAs whose packet or ESP error counters changed since the last traffic
        # report (an ordered set, one store per packet or GSO run): what the report visits
        self.changed: dict[ChildState, None] = {}
        # the same, kept for a second reader of the counters (the metrics) once it asks
        # (take_changed): reported and removed SAs collect here until it takes them
        self._taken_later: dict[ChildState, None] | None = None
        self.trap_pending: dict[tuple[str, str], float] = {}
        self._rbuf = bytearray(65536)
        self._rview = memoryview(self._rbuf)

    # ------------------------------------------------------------ SAs

    def install(self, info: ev.ChildSaInfo) -> ChildState | None:
        """Create both ESP directions of a negotiated (tunnel-mode) Child SA and put it
        in the SPD and the SPI table (RFC 4301 §4.4); None when ESP refuses its keys."""
        key_bits = info.key_bits or 0
        try:
            inbound = EspInbound(
                info.spi_in, info.encr_id, key_bits, info.integ_id, info.encr_key_in,
                info.integ_key_in, esn=info.esn, replay_window=info.replay_window,
            )  # fmt: skip
            outbound = EspOutbound(
                info.spi_out, info.encr_id, key_bits, info.integ_id, info.encr_key_out,
                info.integ_key_out, esn=info.esn,
            )  # fmt: skip
        except EspError as e:
            log_child.error("cannot install child %s: %s", info.child, e)
            return None
        local: Address = (info.local[0], info.local[1])
        remote: Address = (info.remote[0], info.remote[1])
        sock = socket_for(self.udp, local, remote) if info.encap else None
        raw = None
        if not info.encap:
            raw = self._raw_socket(socket.AF_INET6 if ":" in remote[0] else socket.AF_INET)
        state = ChildState(
            info=info, inbound=inbound, outbound=outbound, remote=remote, local=local,
            encap=bool(info.encap), sock=sock, raw=raw, local_ts=tuple(info.local_ts),
            remote_ts=tuple(info.remote_ts), next_header_ok=_TUNNEL_NEXT_HEADERS,
            installed=self.clock(),
        )  # fmt: skip
        self.children[info.spi_in] = state
        self.by_ike.setdefault(state.ike_id, {})[info.spi_in] = state
        self.peers.add(remote[0])
        if raw is not None:
            peers = self._raw_users.setdefault(id(raw), {})
            peers[remote[0]] = peers.get(remote[0], 0) + 1
        self.spd.add(info.spi_in, state.local_ts, state.remote_ts, state)
        self.trap_pending.pop((info.conn, info.child), None)
        if log_child.isEnabledFor(logging.INFO):  # formatting selectors is not free
            log_child.info(
                "CHILD_SA %s{%08x/%08x} installed: %s === %s, %s%s",
                info.child,
                info.spi_in,
                info.spi_out,
                selectors_summary(state.local_ts),
                selectors_summary(state.remote_ts),
                info.suite,
                " UDP-encap" if info.encap else "",
            )
        return state

    def uninstall(self, spi_in: int, reason: str = "") -> ChildState | None:
        """Remove a Child SA; a raw ESP socket no SA needs any more is closed."""
        state = self.children.pop(spi_in, None)
        if state is None:
            return None
        bucket = self.by_ike.get(state.ike_id)
        if bucket is not None:
            bucket.pop(spi_in, None)
            if not bucket:
                del self.by_ike[state.ike_id]
        self.peers.remove(state.remote[0])
        self.spd.remove(spi_in)
        self.changed.pop(state, None)
        if self._taken_later is not None:
            self._taken_later[state] = None  # its last counters, for the metrics
        log_child.info(
            "CHILD_SA %s{%08x} removed%s (in %d B/%d pkts, out %d B/%d pkts)",
            state.info.child,
            spi_in,
            f": {reason}" if reason else "",
            state.bytes_in,
            state.packets_in,
            state.bytes_out,
            state.packets_out,
        )
        if state.raw is not None:
            self._release_raw(state)
        return state

    def _drop_raw_user(self, raw: RawEspSocket, ip: str) -> dict[str, int]:
        """One SA less sends to ``ip`` through ``raw``: the last one lets the socket
        forget that peer.  The peers the socket still serves."""
        peers = self._raw_users.get(id(raw), {})
        if peers.get(ip, 0) > 1:
            peers[ip] -= 1
        else:
            peers.pop(ip, None)
            raw.forget(ip)
        return peers

    def _release_raw(self, state: ChildState) -> None:
        raw = state.raw
        assert raw is not None
        peers = self._drop_raw_user(raw, state.remote[0])
        if not peers:  # no SA needs it any more (counts: an uninstall never walks the SAs)
            self._raw_users.pop(id(raw), None)
            rs = self.raw.pop(int(raw.family), None)
            if rs is not None:
                self.loop.remove_reader(rs.fd)
                rs.close()

    def _raw_socket(self, family: socket.AddressFamily) -> RawEspSocket | None:
        rs = self.raw.get(int(family))
        if rs is None:
            try:
                rs = RawEspSocket(family)
            except OSError as e:
                log.error("cannot open a raw ESP socket: %s", e)
                return None
            self.raw[int(family)] = rs
            self.loop.add_reader(rs.fd, self._on_raw_readable, rs)
        return rs

    def peer_address_changed(self, ike_id: int, new: Address) -> None:
        """The core moved the IKE SA's peer (RFC 7296 §2.23): its children follow."""
        for c in self.by_ike.get(ike_id, {}).values():
            self.peers.remove(c.remote[0])
            self.peers.add(new[0])
            if c.raw is not None:
                peers = self._drop_raw_user(c.raw, c.remote[0])
                peers[new[0]] = peers.get(new[0], 0) + 1
                self._raw_users[id(c.raw)] = peers
            c.remote = new
            c.declined_src = None

    def ike_rekeyed(self, old_id: int, new_id: int) -> None:
        """The children of IKE SA ``old_id`` belong to ``new_id`` now (RFC 7296 §2.8.2):
        a later peer move (§2.23) or delete names the new one."""
        moved = self.by_ike.pop(old_id, None)
        if not moved:
            return
        for c in moved.values():
            c.ike_id = new_id
        self.by_ike.setdefault(new_id, {}).update(moved)

    def set_traps(
        self, traps: Sequence[tuple[Sequence[SelectorLike], Sequence[SelectorLike], TrapPolicy]]
    ) -> None:
        """Replace the configured trap policies (kept below installed SAs)."""
        for key in [k for k in list(self.spd._entries) if isinstance(k, tuple)]:
            self.spd.remove(key)
        for local_ts, remote_ts, trap in traps:
            self.add_trap(local_ts, remote_ts, trap)

    def add_trap(
        self, local_ts: Sequence[SelectorLike], remote_ts: Sequence[SelectorLike], trap: TrapPolicy
    ) -> None:
        self.spd.add(("trap", trap.conn, trap.child), local_ts, remote_ts, trap, trap=True)

    def remove_trap(self, conn: str, child: str) -> bool:
        """Remove the trap policy of ``conn``/``child``; False when there was none."""
        return self.spd.remove(("trap", conn, child)) is not None

    def trap_policies(
        self,
    ) -> list[tuple[TrapPolicy, tuple[SelectorLike, ...], tuple[SelectorLike, ...]]]:
        """The trap policies in the SPD, each with its ``(local_ts, remote_ts)``
        (``swanctl --list-pols``): the configured ones and those a dead peer left."""
        return [(v, local, remote) for v, local, remote in self.spd.policies()
                if isinstance(v, TrapPolicy)]  # fmt: skip

    def hold_traps(self, conn: str, child: str | None, now: float) -> None:
        """A failed trap-started setup holds the trap down for TRAP_RETRY from ``now``:
        re-initiating on every next packet is a storm (e.g. AUTHENTICATION_FAILED)."""
        for k in self.trap_pending:
            if k[0] == conn and (child is None or k[1] == child):
                self.trap_pending[k] = now

    def close(self) -> None:
        for rs in self.raw.values():
            self.loop.remove_reader(rs.fd)
            rs.close()
        self.raw.clear()

    # ------------------------------------------------------------ reports

    def take_changed(self) -> dict[ChildState, None]:
        """For a second reader of the per-SA counters (the metrics): the SAs whose
        counters changed, or that were removed, since its previous call -- whether or
        not :meth:`traffic_reports` has seen them meanwhile (it is not disturbed).
        Nothing is kept for such a reader before its first call."""
        taken = self._taken_later if self._taken_later is not None else {}
        self._taken_later = {}
        taken.update(self.changed)
        return taken

    def traffic_reports(self, now: float) -> tuple[list[EspErrorDelta], list[TrafficReport]]:
        """What changed per SA since the previous call: ESP error deltas and cumulative
        traffic (with the last outbound sequence number: the core rekeys long before it
        runs out, RFC 4303 §3.3.3).

        Only the SAs in :attr:`changed` are visited (in the order they first changed):
        an idle SA costs nothing here, whatever the number of tunnels."""
        errors: list[EspErrorDelta] = []
        traffic: list[TrafficReport] = []
        changed, self.changed = self.changed, {}
        if self._taken_later is not None:
            self._taken_later.update(changed)
        children = self.children
        for c in changed:
            if children.get(c.info.spi_in) is not c:
                continue  # replaced by a later install of its SPI: not reported
            st = c.inbound.stats
            errs = (st.auth_failures, st.replay_drops, st.format_errors, c.drops_selector)
            if errs != c.reported_errors:
                a, r, f, sel = (x - y for x, y in zip(errs, c.reported_errors, strict=True))
                errors.append(EspErrorDelta(c.info.spi_in, a, r, f, sel))
                c.reported_errors = errs
            pk = (c.packets_in, c.packets_out)
            if pk == c.reported_packets:
                continue
            new_in = c.packets_in != c.reported_packets[0]
            c.reported_packets = pk
            rep = TrafficReport(
                c.info.spi_in, new_in, c.last_in or now, c.bytes_in, c.packets_in,
                c.bytes_out, c.packets_out, c.outbound.seq,
            )  # fmt: skip
            traffic.append(rep)
        return errors, traffic

    # ------------------------------------------------------------ packets

    def on_tun_readable(self) -> None:
        """Drain the TUN device (up to DRAIN_MAX packets): SPD, ESP, send.

        The SPD decision is cached per flow (:func:`~pyipsec.daemon.spd.flow_key`; the
        cache is emptied when policies change).  Consecutive ESP packets for the same
        UDP-encapsulated SA form a *run* that goes out with one UDP GSO ``sendmsg`` while
        they have equal sizes (a shorter packet ends the run): nothing waits for a batch
        to fill, a run only collects what one wake-up finds in the TUN queue."""
        tun = self.tun
        if tun is None:
            return
        fd = tun.fd
        read = os.read
        spd = self.spd
        cache = spd.cache
        lookup = spd.lookup
        run: list[bytes] = []
        run_c: ChildState | None = None
        seg = size = inner = 0
        for _ in range(DRAIN_MAX):
            try:
                pkt = read(fd, 65535)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                log.error("TUN read failed: %s", e)
                break
            key = flow_key(pkt)
            target = _MISS if key is None else cache.get(key, _MISS)
            if target is _MISS:
                flow = parse_flow(pkt)
                if flow is None:
                    self.drops.tun_invalid += 1
                    continue
                target = lookup(flow)
                if isinstance(target, TrapPolicy):
                    self.trap(target, flow)
                    continue
                if key is not None:
                    if len(cache) >= CACHE_MAX:
                        cache.clear()
                    cache[key] = target
            if target is None:
                self.drops.no_policy += 1
                continue
            c: ChildState = target
            try:
                esp = c.outbound.protect(pkt, 4 if pkt[0] >> 4 == 4 else 41)
            except EspSequenceExhausted:
                c.drops_send += 1
                self.changed[c] = None
                continue
            if c.sock is None or not c.encap:
                self._send_one(c, esp, len(pkt))
                continue
            n = len(esp)
            if run and (
                c is not run_c
                or n > seg
                or len(run) >= GSO_MAX_SEGMENTS
                or size + n > GSO_MAX_BYTES
            ):
                self._send_run(run_c, run, inner)  # type: ignore[arg-type]
                run = []
            if not run:
                run_c, seg, size, inner = c, n, 0, 0
            run.append(esp)
            size += n
            inner += len(pkt)
            if n < seg:  # only the last segment of a GSO send may be shorter
                self._send_run(c, run, inner)
                run = []
        if run:
            self._send_run(run_c, run, inner)  # type: ignore[arg-type]

    def _send_run(self, c: ChildState, run: list[bytes], inner: int) -> None:
        assert c.sock is not None
        sent = c.sock.send_segments(run, c.remote)
        k = len(run)
        self.changed[c] = None
        if sent == k:
            c.packets_out += k
            c.bytes_out += inner
        else:
            c.packets_out += sent
            c.bytes_out += inner * sent // k
            c.drops_send += k - sent

    def _send_one(self, c: ChildState, esp: bytes, inner: int) -> None:
        if c.encap:
            ok = c.sock is not None and c.sock.sendto(esp, c.remote)
        else:
            ok = c.raw is not None and c.raw.send(esp, c.remote[0])  # connected per peer
        if ok:
            c.packets_out += 1
            c.bytes_out += inner
        else:
            c.drops_send += 1
        self.changed[c] = None

    def trap(self, trap: TrapPolicy, flow: Flow) -> None:
        """A packet hit a trap policy: dropped; reported (TrapHit) unless held down."""
        self.drops.trap_pending += 1
        key = (trap.conn, trap.child)
        now = self.clock()
        if now - self.trap_pending.get(key, -1e9) < TRAP_RETRY:
            return
        self.trap_pending[key] = now
        log_child.info(
            "trap %s/%s: packet %s -> %s starts the tunnel",
            trap.conn,
            trap.child,
            flow.src_addr,
            flow.dst_addr,
        )
        self.report(TrapHit(trap.conn, trap.child, flow))

    def on_udp_readable(self, us: UdpSocket) -> bool:
        """Drain one UDP socket (up to DRAIN_MAX receive calls; with UDP GRO one call may
        return several datagrams of equal size, handled one by one).  ESP-in-UDP and
        keepalives are told apart from IKE by RFC 3948 §2.2; IKE goes to ``on_ike``.
        True when IKE datagrams arrived (the core then has work)."""
        buf, view = self._rbuf, self._rview
        recv = us.recv_segments_into
        natt = us.natt
        on_esp = self.on_esp
        on_ike = self.on_ike
        now = self.loop.time()
        got_ike = False
        for _ in range(DRAIN_MAX):
            r = recv(buf)
            if r is None:
                break
            total, src, local, seg = r
            off = 0
            while off < total:
                n = min(seg, total - off) if seg else total
                data = bytes(view[off : off + n])
                off += n
                if natt and n >= _ESP_MIN and data[:4] != NON_ESP_MARKER:
                    on_esp(data, src, True, now)  # ESP-in-UDP: the fast path
                    continue
                kind = nat.detect_packet_type(data, port_4500=natt)
                if kind is nat.PacketType.ESP:
                    on_esp(data, src, True, now)
                elif kind is nat.PacketType.IKE:
                    if on_ike is not None:
                        on_ike(data[4:] if natt else data, (local, us.port), src)
                    got_ike = True
                elif kind is nat.PacketType.KEEPALIVE:
                    self.drops.keepalives_in += 1
                else:
                    self.drops.invalid_udp += 1
        return got_ike

    def _on_raw_readable(self, rs: RawEspSocket) -> None:
        now = self.loop.time()  # one clock read per wake-up
        recv = rs.recv
        on_esp = self.on_esp
        for _ in range(DRAIN_MAX):
            r = recv()
            if r is None:
                return
            data, src = r
            on_esp(data, (src, 0), False, now)

    def on_esp(self, data: bytes, src: Address, encap: bool, now: float | None = None) -> None:
        """One inbound ESP packet (RFC 4303 §3.4): SPI lookup, path check, unprotect,
        inner packet against the SA's selectors (RFC 4301 §5.2), TUN write."""
        c = self.children.get(int.from_bytes(data[:4], "big"))
        if c is None:
            self.drops.unknown_spi += 1
            if len(data) >= 4:
                self.report(UnknownSpi(int.from_bytes(data[:4], "big"), src))
            return
        if encap != c.encap:
            # RFC 3948 §3 / RFC 7296 §2.23: an SA negotiated with UDP encapsulation uses
            # it both ways, one without never does; nothing switches paths later (no
            # MOBIKE).  Dropped before the ICV check: it never touches the replay window.
            c.drops_encap += 1
            self.changed[c] = None
            self.drops.wrong_encap += 1
            return
        try:
            nh, payload = c.inbound.unprotect(data)
        except EspDummyPacket:
            return
        except EspError as e:
            self.drops.esp_errors += 1
            self.changed[c] = None  # counted in c.inbound.stats (RFC 4303 §3.4.3, §3.4.4)
            if log_esp.isEnabledFor(logging.DEBUG):
                log_esp.debug("ESP %08x from %s dropped: %s", c.info.spi_in, src[0], e)
            return
        c.last_in = self.loop.time() if now is None else now
        if nh not in c.next_header_ok:
            self.drops.bad_inner += 1
            return
        key = flow_key(payload)
        ok_flows = c.ok_flows
        if key is None or key not in ok_flows:
            flow = parse_flow(payload)
            if flow is None:
                self.drops.bad_inner += 1
                return
            if not flow_in(flow, c.remote_ts, c.local_ts):
                c.drops_selector += 1  # RFC 4301 §5.2: not what this SA may carry
                self.changed[c] = None
                return
            if key is not None:
                if len(ok_flows) >= CACHE_MAX:
                    ok_flows.clear()
                ok_flows.add(key)
        c.packets_in += 1
        c.bytes_in += len(payload)
        self.changed[c] = None
        if encap and src != c.remote and src != c.declined_src:
            self._peer_moved(c, src, data)
        tun = self.tun
        if tun is not None:
            try:
                os.write(tun.fd, payload)
            except OSError as e:
                log.debug("TUN write failed: %s", e)

    def _peer_moved(self, c: ChildState, src: Address, data: bytes) -> None:
        """Authenticated ESP-in-UDP from another address: the peer's NAT mapping may have
        changed (RFC 7296 §2.23).  The core decides, with the packet's sequence number:
        only a packet newer than every one before it, only when the peer is behind a NAT
        and we are not; it then moves the children (:meth:`peer_address_changed`, from
        the report handler).  So only the newest packet of the SA is reported (an older,
        reordered or replayed one never moves it), and a source the core declined is not
        reported again until the SA's address changes."""
        rw = c.inbound.replay
        if int.from_bytes(data[4:8], "big") != rw.top & 0xFFFFFFFF:
            return
        old = c.remote
        self.report(PeerMoved(c.info.spi_in, src, rw.top))
        if c.remote == src:
            log_esp.info(
                "ESP %08x now arrives from %s (was %s)",
                c.info.spi_in,
                nat.format_endpoint(src),
                nat.format_endpoint(old),
            )
        else:
            c.declined_src = src
            log_esp.info(
                "ESP %08x arrives from %s: the SA stays at %s (RFC 7296 §2.23)",
                c.info.spi_in,
                nat.format_endpoint(src),
                nat.format_endpoint(c.remote),
            )
