"""Traffic selectors as the IKE core sees them (RFC 7296 §2.9, §3.13.1).

A :class:`Selector` is one address range with an IP protocol and a port range.
The core converts configured :class:`~pyipsec.config.model.TrafficSelectorSpec`
and the codec's wire ``TrafficSelector`` into these, narrows them (§2.9) and
hands them to the data plane inside :class:`~pyipsec.ikev2.events.ChildSaInfo`.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..config.model import IPAddress, TrafficSelectorSpec
from ..identity_memo import IdentityMemo
from .constants import TsType

_ANY_PORT_START = 0
_ANY_PORT_END = 65535


@dataclass(frozen=True, slots=True)
class Selector:
    """One traffic selector: ``start..end`` addresses, ``protocol`` (0 = any), ports."""

    start: IPAddress
    end: IPAddress
    protocol: int = 0
    start_port: int = _ANY_PORT_START
    end_port: int = _ANY_PORT_END

    @property
    def version(self) -> int:
        return self.start.version

    @property
    def ts_type(self) -> int:
        return TsType.TS_IPV4_ADDR_RANGE if self.version == 4 else TsType.TS_IPV6_ADDR_RANGE

    @classmethod
    def from_spec(cls, spec: TrafficSelectorSpec) -> Selector:
        return cls(spec.start, spec.end, spec.protocol, spec.start_port, spec.end_port)

    @classmethod
    def host(cls, address: str | IPAddress) -> Selector:
        """The selector for a single host, all protocols and ports (swanctl ``dynamic``)."""
        a = ipaddress.ip_address(address) if isinstance(address, str) else address
        return cls(a, a)

    @classmethod
    def network(cls, net: str, protocol: int = 0) -> Selector:
        n = ipaddress.ip_network(net, strict=False)
        return cls(n.network_address, n.broadcast_address, protocol)

    def contains(self, other: Selector) -> bool:
        """True when every packet matched by ``other`` is matched by ``self``."""
        if self.version != other.version:
            return False
        if self.protocol != 0 and self.protocol != other.protocol:
            return False
        return (
            int(self.start) <= int(other.start)
            and int(other.end) <= int(self.end)
            and self.start_port <= other.start_port
            and other.end_port <= self.end_port
        )

    def intersect(self, other: Selector) -> Selector | None:
        """The largest selector matched by both, or None when they are disjoint."""
        if self.version != other.version:
            return None
        if self.protocol == 0:
            proto = other.protocol
        elif other.protocol == 0 or other.protocol == self.protocol:
            proto = self.protocol
        else:
            return None
        lo = max(int(self.start), int(other.start))
        hi = min(int(self.end), int(other.end))
        if lo > hi:
            return None
        plo = max(self.start_port, other.start_port)
        phi = min(self.end_port, other.end_port)
        if plo > phi:
            # RFC 7296 §3.13.1: OPAQUE ports (start 65535, end 0) only match "any"
            return None
        mk = ipaddress.IPv4Address if self.version == 4 else ipaddress.IPv6Address
        return Selector(mk(lo), mk(hi), proto, plo, phi)

    def matches(self, address: IPAddress, protocol: int = 0, port: int = 0) -> bool:
        """True when a packet to/from ``address`` (and protocol/port) falls inside."""
        if address.version != self.version:
            return False
        if not int(self.start) <= int(address) <= int(self.end):
            return False
        if self.protocol and protocol and self.protocol != protocol:
            return False
        return self.start_port <= port <= self.end_port or not port

    def __str__(self) -> str:
        if self.start == self.end:
            addr = str(self.start)
        else:
            try:
                nets = list(ipaddress.summarize_address_range(self.start, self.end))
            except (TypeError, ValueError):
                nets = []
            addr = str(nets[0]) if len(nets) == 1 else f"{self.start}-{self.end}"
        if self.protocol == 0 and (self.start_port, self.end_port) == (0, 65535):
            return addr
        ports = (
            ""
            if (self.start_port, self.end_port) == (0, 65535)
            else f"{self.start_port}"
            if self.start_port == self.end_port
            else f"{self.start_port}-{self.end_port}"
        )
        return f"{addr}[{self.protocol}/{ports}]"

    def to_json(self) -> dict[str, Any]:
        return {
            "start": str(self.start),
            "end": str(self.end),
            "protocol": self.protocol,
            "ports": [self.start_port, self.end_port],
            "text": str(self),
        }


#: the selectors of a configuration's (immutable) tuple of specs, by its identity: every
#: Child SA negotiation asks, and hashing the specs (their addresses hash in Python)
#: cost more than building the selectors
_CONFIGURED: IdentityMemo[tuple[Selector, ...]] = IdentityMemo(4096)


def from_specs(
    specs: Sequence[TrafficSelectorSpec], dynamic_address: str | None
) -> tuple[Selector, ...]:
    """Configured selectors; an empty list means swanctl's ``dynamic`` (the outer address)."""
    if not specs:
        return _dynamic(dynamic_address)
    if type(specs) is not tuple:  # a list may change: not kept
        return tuple(Selector.from_spec(s) for s in specs)
    key = (id(specs),)
    got = _CONFIGURED.get(key)
    if got is None:
        got = _CONFIGURED.put(key, (specs,), tuple(Selector.from_spec(s) for s in specs))
    return got


@functools.lru_cache(maxsize=4096)
def _dynamic(address: str | None) -> tuple[Selector, ...]:
    """swanctl's ``dynamic``: the host selector of the outer address."""
    return () if address is None else (Selector.host(address),)


def _addr(value: Any, version: int) -> IPAddress:
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value
    if isinstance(value, bytes | bytearray):
        return ipaddress.ip_address(bytes(value))
    return ipaddress.ip_address(value)


def from_wire(selectors: Iterable[Any]) -> tuple[Selector, ...]:
    """Convert the codec's ``TrafficSelector`` objects, skipping types we do not know."""
    out: list[Selector] = []
    for ts in selectors:
        if ts.ts_type not in (TsType.TS_IPV4_ADDR_RANGE, TsType.TS_IPV6_ADDR_RANGE):
            continue
        version = 4 if ts.ts_type == TsType.TS_IPV4_ADDR_RANGE else 6
        start = _addr(ts.start_addr, version)
        end = _addr(ts.end_addr, version)
        if start.version != version or end.version != version or int(start) > int(end):
            continue
        out.append(Selector(start, end, ts.ip_proto, ts.start_port, ts.end_port))
    return tuple(out)


def _dedupe(selectors: Iterable[Selector]) -> tuple[Selector, ...]:
    """Drop selectors contained in another one (keeping the first of equal ones)."""
    items = list(selectors)
    if len(items) <= 1:
        return tuple(items)  # the common case: nothing to compare (nor to hash)
    items = list(dict.fromkeys(items))
    out: list[Selector] = []
    for i, s in enumerate(items):
        if any(j != i and o.contains(s) and (o != s) for j, o in enumerate(items)):
            continue
        out.append(s)
    return tuple(out)


def narrow(proposed: Sequence[Selector], allowed: Sequence[Selector]) -> tuple[Selector, ...]:
    """RFC 7296 §2.9: the part of the peer's ``proposed`` selectors our policy allows.

    Every proposed selector (well-formed: start <= end, as :func:`from_wire` gives
    them) is intersected with every allowed one; selectors
    contained in another result are dropped.  An empty result means
    TS_UNACCEPTABLE.  When the initiator's first selector is the specific
    "packet" selector of a trap (§2.9), it is kept if allowed: it is not
    removed by deduplication because it precedes the wider ones only when
    it is not contained in a wider result.
    """
    result: list[Selector] = []
    for p in proposed:
        for a in allowed:
            # allowed as proposed: the same object (an OPAQUE port range, start above
            # end, is "contained" but matches only "any": intersect decides that)
            x = p if p.start_port <= p.end_port and a.contains(p) else p.intersect(a)
            if x is not None:
                result.append(x)
    return _dedupe(result)


def same_set(a: Sequence[Selector], b: Sequence[Selector]) -> bool:
    """True when ``a`` and ``b`` hold the same selectors (in any order): narrowing
    that changed nothing usually returns the very same objects in the same order."""
    return tuple(a) == tuple(b) or set(a) == set(b)


def is_subset(selectors: Sequence[Selector], of: Sequence[Selector]) -> bool:
    """True when every selector is inside one of ``of`` (initiator checking a response)."""
    return all(any(o.contains(s) for o in of) for s in selectors)


def covers(a: Sequence[Selector], b: Sequence[Selector]) -> bool:
    """True when ``a`` and ``b`` describe the same set (each contains the other)."""
    return is_subset(a, b) and is_subset(b, a)
