"""Security Policy Database lookup for the userspace data plane (RFC 4301 §4.4.1).

Outbound packets are matched by destination address first: per address family the
SPD keeps a table of *elementary intervals* — the address space cut at every
selector boundary — so that every address falls into exactly one interval, and
each interval holds the (few) entries whose destination range covers it, most
specific first.  A lookup is one :func:`bisect.bisect_right` over the interval
starts (O(log n) in the number of selector boundaries), followed by a check of
protocol, ports and source address on the candidates of that one interval.  No
lookup scans all SAs.  The table is rebuilt (O(n log n)) when entries are added or
removed, which happens at SA install/rekey/delete time, never per packet.

Candidates are ordered by the size of their destination range (longest-prefix
style: the narrowest range wins), then installed SAs before trap policies, then the
most recently added first, so that after a Child SA rekey the new SA takes the
traffic while the old one still exists.

:func:`parse_flow` extracts the selector fields of an inner IPv4/IPv6 packet and
:func:`flow_in` checks a decrypted inbound packet against the SA's selectors
(RFC 4301 §5.2: the inner header must match the SA it arrived on).
"""

from __future__ import annotations

import bisect
import ipaddress
import itertools
import operator
import struct
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["CACHE_MAX", "Flow", "SelectorLike", "Spd", "flow_in", "flow_key", "parse_flow"]

V = TypeVar("V")

_PORT_PROTOS = frozenset((6, 17, 132, 136))  # TCP, UDP, SCTP, UDP-Lite
_V6_EXT = frozenset((0, 43, 60))  # hop-by-hop, routing, destination options
_V6_FRAG = 44
CACHE_MAX = 4096  # flow-cache entries before the cache is emptied
_KEY4_PORTS = struct.Struct("!9xB2x12s")  # protocol, src | dst | sport | dport
_KEY4 = struct.Struct("!9xB2x8s")  # protocol, src | dst
_KEY6_PORTS = struct.Struct("!6xBx36s")  # next header, src | dst | sport | dport
_KEY6 = struct.Struct("!6xBx32s")


class SelectorLike(Protocol):
    """Anything with the fields of a traffic selector (core ``Selector``, config spec)."""

    @property
    def start(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address: ...
    @property
    def end(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address: ...
    @property
    def protocol(self) -> int: ...
    @property
    def start_port(self) -> int: ...
    @property
    def end_port(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Flow:
    """The selector-relevant fields of one IP packet.

    Ports are -1 when the protocol has none or the packet is a non-first fragment
    (RFC 4301 §4.4.1.3 OPAQUE): such a flow matches only "any port" selectors.
    """

    version: int
    src: int
    dst: int
    protocol: int
    sport: int = -1
    dport: int = -1

    @property
    def src_addr(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return (
            ipaddress.IPv4Address(self.src)
            if self.version == 4
            else ipaddress.IPv6Address(self.src)
        )

    @property
    def dst_addr(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return (
            ipaddress.IPv4Address(self.dst)
            if self.version == 4
            else ipaddress.IPv6Address(self.dst)
        )


def parse_flow(packet: bytes | bytearray | memoryview) -> Flow | None:
    """Selector fields of an IPv4/IPv6 packet, or None when it is not a well-formed one."""
    n = len(packet)
    if n < 20:
        return None
    v = packet[0] >> 4
    if v == 4:
        ihl = (packet[0] & 0x0F) * 4
        if ihl < 20 or n < ihl:
            return None
        proto = packet[9]
        src = int.from_bytes(packet[12:16], "big")
        dst = int.from_bytes(packet[16:20], "big")
        frag_off = ((packet[6] & 0x1F) << 8) | packet[7]
        if frag_off == 0 and proto in _PORT_PROTOS and n >= ihl + 4:
            sport, dport = struct.unpack_from("!HH", packet, ihl)
            return Flow(4, src, dst, proto, sport, dport)
        return Flow(4, src, dst, proto)
    if v == 6:
        if n < 40:
            return None
        src = int.from_bytes(packet[8:24], "big")
        dst = int.from_bytes(packet[24:40], "big")
        nh = packet[6]
        off = 40
        while nh in _V6_EXT or nh == _V6_FRAG:
            if n < off + 8:
                return Flow(6, src, dst, nh)
            if nh == _V6_FRAG:
                frag_off = struct.unpack_from("!H", packet, off + 2)[0] >> 3
                nh = packet[off]
                off += 8
                if frag_off:
                    return Flow(6, src, dst, nh)
                continue
            nxt = packet[off]
            off += (packet[off + 1] + 1) * 8
            nh = nxt
        if nh in _PORT_PROTOS and n >= off + 4:
            sport, dport = struct.unpack_from("!HH", packet, off)
            return Flow(6, src, dst, nh, sport, dport)
        return Flow(6, src, dst, nh)
    return None


def flow_key(packet: bytes) -> tuple[Any, ...] | None:
    """A hashable key made of exactly the selector fields of a common packet (IPv4
    without options and not a fragment, IPv6 without extension headers), or None for
    anything else (then :func:`parse_flow` must be used).  Two packets with the same key
    have equal :func:`parse_flow` results, so a policy decision can be cached per key."""
    n = len(packet)
    if n < 20:
        return None
    b0 = packet[0]
    if b0 == 0x45:
        if packet[7] or packet[6] & 0x1F:  # fragment offset: not the first fragment
            return None
        if packet[9] in _PORT_PROTOS:
            return _KEY4_PORTS.unpack_from(packet) if n >= 24 else None
        return _KEY4.unpack_from(packet)
    if b0 >> 4 == 6 and n >= 40:
        nh = packet[6]
        if nh in _PORT_PROTOS:
            return _KEY6_PORTS.unpack_from(packet) if n >= 44 else None
        if nh in _V6_EXT or nh == _V6_FRAG:
            return None
        return _KEY6.unpack_from(packet)
    return None


def _proto_ports_match(sel: SelectorLike, proto: int, port: int) -> bool:
    if sel.protocol and sel.protocol != proto:
        return False
    if sel.start_port == 0 and sel.end_port == 65535:
        return True
    return sel.start_port <= port <= sel.end_port


def _addr_in(sel: SelectorLike, version: int, addr: int) -> bool:
    return sel.start.version == version and int(sel.start) <= addr <= int(sel.end)


def flow_in(
    flow: Flow,
    src_sels: Sequence[SelectorLike],
    dst_sels: Sequence[SelectorLike],
) -> bool:
    """True when the flow's source matches one of ``src_sels`` and its destination one of
    ``dst_sels`` (addresses, protocol and ports).  For a decrypted inbound packet pass
    the SA's remote selectors as ``src_sels`` and its local ones as ``dst_sels``."""
    ok = False
    for s in src_sels:
        if _addr_in(s, flow.version, flow.src) and _proto_ports_match(s, flow.protocol, flow.sport):
            ok = True
            break
    if not ok:
        return False
    for s in dst_sels:
        if _addr_in(s, flow.version, flow.dst) and _proto_ports_match(s, flow.protocol, flow.dport):
            return True
    return False


@dataclass(slots=True, eq=False)
class _Entry(Generic[V]):
    key: Hashable
    seq: int
    rank: int  # 0 = SA, 1 = trap (SAs win over traps of the same range)
    dst: SelectorLike
    src_sels: tuple[SelectorLike, ...]
    value: V
    size: int = field(init=False)
    sort_key: tuple[int, int, int] = field(init=False)

    def __post_init__(self) -> None:
        self.size = int(self.dst.end) - int(self.dst.start)
        self.sort_key = (self.size, self.rank, -self.seq)


_sort_key = operator.attrgetter("sort_key")


@dataclass(slots=True)
class _Table(Generic[V]):
    starts: list[int] = field(default_factory=list)
    cands: list[list[_Entry[V]]] = field(default_factory=list)  # per piece, sorted


def _split(table: _Table[V], b: int) -> int:
    """Make ``b`` the start of a piece (it inherits the entries covering ``b``); its index."""
    starts = table.starts
    i = bisect.bisect_right(starts, b) - 1
    if i >= 0 and starts[i] == b:
        return i
    inherited = list(table.cands[i]) if i >= 0 else []
    starts.insert(i + 1, b)
    table.cands.insert(i + 1, inherited)
    return i + 1


def _insert(table: _Table[V], e: _Entry[V]) -> None:
    """Add one entry to a table: O(log n) to find its pieces plus the pieces it covers
    (one or two for a host or small subnet), instead of rebuilding the table -- a
    gateway installs Child SAs one by one while traffic flows.  The entry goes into
    each piece's sorted candidates by bisection: many SAs can share one piece (road
    warriors narrowed to the same inner address), and sorting it again per install
    made installing n SAs quadratic."""
    lo = _split(table, int(e.dst.start))
    hi = _split(table, int(e.dst.end) + 1)
    for k in range(lo, hi):
        bisect.insort(table.cands[k], e, key=_sort_key)


def _delete(table: _Table[V], e: _Entry[V]) -> None:
    """Remove one entry (its boundaries stay: harmless, and reused by the next SA)."""
    lo = bisect.bisect_left(table.starts, int(e.dst.start))
    hi = bisect.bisect_left(table.starts, int(e.dst.end) + 1)
    for k in range(lo, hi):
        cands = table.cands[k]
        i = bisect.bisect_left(cands, e.sort_key, key=_sort_key)
        while i < len(cands) and cands[i].sort_key == e.sort_key:  # one policy's
            if cands[i] is e:  # selectors may share a piece (and their sort key)
                del cands[i]
                break
            i += 1


class Spd(Generic[V]):
    """Outbound policy lookup: selectors (ranges) -> value (an SA or a trap policy)."""

    def __init__(self) -> None:
        self._entries: dict[Hashable, list[_Entry[V]]] = {}
        self._seq = itertools.count()
        self._tables: dict[int, _Table[V]] = {4: _Table(), 6: _Table()}
        self._count = 0  # entries in the tables (one per remote selector of a policy)
        # flow_key -> lookup result, for the data plane's fast path; emptied whenever the
        # policies change (and when it grows beyond CACHE_MAX)
        self.cache: dict[Hashable, V | None] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def add(
        self,
        key: Hashable,
        local_ts: Iterable[SelectorLike],
        remote_ts: Iterable[SelectorLike],
        value: V,
        *,
        trap: bool = False,
    ) -> None:
        """Add (or replace) the policy ``key``: packets from ``local_ts`` to ``remote_ts``."""
        self.remove(key)
        seq = next(self._seq)
        src = tuple(local_ts)
        entries = [_Entry(key, seq, 1 if trap else 0, d, src, value) for d in remote_ts]
        self._entries[key] = entries
        self._count += len(entries)
        self.cache.clear()
        for e in entries:
            _insert(self._tables[e.dst.start.version], e)

    def remove(self, key: Hashable) -> V | None:
        """Remove policy ``key``; returns its value (None when it was not there)."""
        entries = self._entries.pop(key, None)
        if entries is None:
            return None
        self.cache.clear()
        for e in entries:
            _delete(self._tables[e.dst.start.version], e)
        self._count -= len(entries)
        pieces = len(self._tables[4].starts) + len(self._tables[6].starts)
        if pieces > 4 * self._count + 64:
            self._rebuild()  # boundaries of removed policies pile up: compact (amortised)
        return entries[0].value if entries else None

    def values(self) -> list[V]:
        return [e[0].value for e in self._entries.values() if e]

    def policies(
        self,
    ) -> list[tuple[V, tuple[SelectorLike, ...], tuple[SelectorLike, ...]]]:
        """Every policy as added: ``(value, local_ts, remote_ts)``."""
        return [(es[0].value, es[0].src_sels, tuple(e.dst for e in es))
                for es in self._entries.values() if es]  # fmt: skip

    def _rebuild(self) -> None:
        """The tables from scratch (the reference for the incremental updates)."""
        self.cache.clear()
        for version in (4, 6):
            entries = [
                e for es in self._entries.values() for e in es if e.dst.start.version == version
            ]
            self._tables[version] = self._build(entries)

    @staticmethod
    def _build(entries: list[_Entry[V]]) -> _Table[V]:
        """Cut the address space at every boundary; list the covering entries per piece."""
        points: set[int] = set()
        for e in entries:
            points.add(int(e.dst.start))
            points.add(int(e.dst.end) + 1)
        bounds = sorted(points)
        table: _Table[V] = _Table()
        by_start = sorted(entries, key=lambda e: int(e.dst.start))
        active: list[_Entry[V]] = []
        i = 0
        for b in bounds:
            while i < len(by_start) and int(by_start[i].dst.start) <= b:
                active.append(by_start[i])
                i += 1
            active = [e for e in active if int(e.dst.end) >= b]
            cands = sorted(active, key=_sort_key)
            if table.cands and table.cands[-1] == cands:
                continue  # merge equal neighbours
            table.starts.append(b)
            table.cands.append(cands)
        return table

    def lookup(self, flow: Flow) -> V | None:
        """The value of the best policy matching ``flow`` (None: no policy, drop)."""
        table = self._tables.get(flow.version)
        if table is None or not table.starts:
            return None
        i = bisect.bisect_right(table.starts, flow.dst) - 1
        if i < 0:
            return None
        for e in table.cands[i]:
            if not _proto_ports_match(e.dst, flow.protocol, flow.dport):
                continue
            for s in e.src_sels:
                if _addr_in(s, flow.version, flow.src) and _proto_ports_match(
                    s, flow.protocol, flow.sport
                ):
                    return e.value
        return None
