"""Virtual IP address pools and their leases (RFC 7296 §2.19, §3.15.1, §3.15.4), sans-I/O.

A :class:`Pool` hands out the addresses of one range to peers, keyed by their identity,
the way strongSwan's ``mem_pool`` does (so a gateway replacing charon behaves alike):

* an identity that had an address gets *the same one back* while it is free: its
  *offline* lease (released when its IKE SA ended) is reused first;
* an identity that already holds an *online* lease and connects again from the same
  peer endpoint (a second IKE SA, e.g. a reauthentication, RFC 7296 §2.8.3) gets that
  address again, reference counted: it goes offline when the last IKE SA holding it
  ends;
* a new identity takes a never-used address first, then the offline lease released
  longest ago (taking it away from its former owner);
* a full pool answers None (the caller sends INTERNAL_ADDRESS_FAILURE, §3.15.4).

Every operation is O(1) in the pool size (O(k) in the number of leases one identity
holds, normally one): never-used addresses are a counter, offline leases an ordered
dictionary in release order.  A requested specific address (§3.15.1) only selects an
online lease of the same identity and endpoint, as in strongSwan.

Ranges (:func:`pool_range`) follow strongSwan too: ``203.0.113.128/26`` serves the usable
hosts of the subnet (``.129``-``.190``: neither the network address nor the last one, for
IPv4 and IPv6 alike), ``10.3.0.5/24`` serves ``.5``-``.254``, ``a-b`` every address from
``a`` to ``b``.  A :class:`PoolRegistry` holds the configured pools by name and applies a
reload like ``swanctl --load-pools``: an unchanged range keeps its leases, a changed one
is replaced only while it has no online lease.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .config.model import IPAddress, PoolConfig

__all__ = [
    "Lease",
    "LeaseInfo",
    "Pool",
    "PoolRegistry",
    "acquire",
    "pool_range",
    "pools_overlap",
]

#: An opaque key for the peer's endpoint (strongSwan: a hash of address and port).
PeerKey = Hashable


def pool_range(text: str) -> tuple[IPAddress, IPAddress]:
    """The first and last address a pool serves, from ``"203.0.113.128/26"``,
    ``"10.3.0.5/24"`` or ``"203.0.113.10-203.0.113.20"`` (strongSwan's rules, see the
    module docstring).  ValueError for anything else."""
    text = text.strip()
    hint = "(hint: a subnet '203.0.113.128/26' or a range '203.0.113.10-203.0.113.20')"
    if "-" in text and "/" not in text:
        a, _, b = text.partition("-")
        try:
            first, last = ipaddress.ip_address(a.strip()), ipaddress.ip_address(b.strip())
        except ValueError:
            raise ValueError(f"invalid pool {text!r} {hint}") from None
        if first.version != last.version:
            raise ValueError(f"address range {text!r} mixes IPv4 and IPv6")
        if int(first) > int(last):
            raise ValueError(f"address range {text!r} is reversed")
        return first, last
    try:
        iface = ipaddress.ip_interface(text)
    except ValueError:
        raise ValueError(f"invalid pool {text!r} {hint}") from None
    base, net = iface.ip, iface.network
    size = net.num_addresses
    diff = int(base) - int(net.network_address)
    if size > 2:
        # skip the network address (when the base is it) and the last address
        count = size - 2 if diff == 0 else size - diff - 1
        start = int(base) + (1 if diff == 0 else 0)
    else:
        count, start = size - diff, int(base)
    if count < 1:
        raise ValueError(f"pool {text!r} has no usable address")
    mk = ipaddress.IPv4Address if base.version == 4 else ipaddress.IPv6Address
    return mk(start), mk(start + count - 1)


def pools_overlap(
    ranges: Sequence[tuple[str, IPAddress, IPAddress]],
) -> list[tuple[str, str]]:
    """Pairs of pool names whose ranges overlap, ``(later, earlier)`` in sorted order:
    O(n log n) (sorted by start address, each compared with the widest before it)."""
    items = sorted(ranges, key=lambda r: (r[1].version, int(r[1]), int(r[2])))
    out: list[tuple[str, str]] = []
    widest: tuple[str, IPAddress, IPAddress] | None = None
    for item in items:
        name, first, last = item
        if widest is not None and widest[2].version == first.version:
            if int(first) <= int(widest[2]):
                out.append((name, widest[0]))
            if int(last) <= int(widest[2]):
                continue
        widest = item
    return out


@dataclass(slots=True)
class _Entry:
    """The leases of one identity: ``online`` holds one (offset, peer) per holder (an
    address held twice is reference counted), ``offline`` the released ones, oldest
    first."""

    online: list[tuple[int, PeerKey]] = field(default_factory=list)
    offline: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """One lease, for status output."""

    address: IPAddress
    identity: str
    online: bool
    holders: int  # IKE SAs holding it (0 when offline)


@dataclass(frozen=True, slots=True, eq=False)
class Lease:
    """An address held by one IKE SA: give it back with :meth:`release`."""

    pool: Pool
    address: IPAddress
    identity: str

    def release(self) -> bool:
        """The IKE SA is gone; True when the pool knew the lease."""
        return self.pool.release(self.identity, self.address)


class Pool:
    """One address pool (see the module docstring for the lease rules)."""

    EXISTING, NEW, REASSIGN = "existing", "new", "reassign"
    PHASES = (EXISTING, NEW, REASSIGN)

    def __init__(self, name: str, first: IPAddress, last: IPAddress) -> None:
        if first.version != last.version or int(first) > int(last):
            raise ValueError(f"pool {name!r}: invalid range {first}-{last}")
        self.name = name
        self.first = first
        self.last = last
        self.version = first.version
        self._base = int(first)
        self.size = int(last) - int(first) + 1
        self._unused = 0  # offsets below this have been handed out at least once
        self._entries: dict[str, _Entry] = {}
        self._offline: OrderedDict[int, str] = OrderedDict()  # release order
        self._online = 0  # addresses with at least one holder

    # ------------------------------------------------------------------ queries

    @property
    def online(self) -> int:
        """Addresses held by at least one IKE SA."""
        return self._online

    @property
    def offline(self) -> int:
        """Released addresses remembered for their former owner."""
        return len(self._offline)

    @property
    def free(self) -> int:
        """Addresses never handed out."""
        return self.size - self._unused

    def contains(self, address: IPAddress) -> bool:
        return address.version == self.version and 0 <= int(address) - self._base < self.size

    def owner(self, address: IPAddress) -> str | None:
        """The identity an address is (or was last) leased to (O(leases): for status
        and tests, not the allocation path)."""
        off = self._offset(address)
        for ident, e in self._entries.items():
            if off in e.offline or any(held == off for held, _ in e.online):
                return ident
        return None

    def leases(self) -> Iterator[LeaseInfo]:
        """Every lease, online and offline, by identity."""
        for ident, e in self._entries.items():
            counts: dict[int, int] = {}
            for off, _ in e.online:
                counts[off] = counts.get(off, 0) + 1
            for off, n in counts.items():
                yield LeaseInfo(self._addr(off), ident, True, n)
            for off in e.offline:
                yield LeaseInfo(self._addr(off), ident, False, 0)

    def _addr(self, offset: int) -> IPAddress:
        return ipaddress.ip_address(self._base + offset)

    def _offset(self, address: IPAddress | None) -> int | None:
        if address is None or not self.contains(address):
            return None
        return int(address) - self._base

    # ------------------------------------------------------------------ leases

    def acquire(
        self,
        identity: str,
        phase: str,
        *,
        peer: PeerKey = None,
        requested: IPAddress | None = None,
    ) -> Lease | None:
        """One step of an allocation (strongSwan's three passes over all pools):
        ``EXISTING`` (this identity's offline lease, or its online one from the same
        ``peer``), ``NEW`` (a never-used address) or ``REASSIGN`` (the oldest offline
        lease of someone else).  None when that step has nothing."""
        if phase == self.EXISTING:
            off = self._existing(identity, peer, requested)
        elif phase == self.NEW:
            off = self._new(identity, peer)
        elif phase == self.REASSIGN:
            off = self._reassign(identity, peer)
        else:
            raise ValueError(f"unknown allocation phase {phase!r}")
        return None if off is None else Lease(self, self._addr(off), identity)

    def _existing(self, identity: str, peer: PeerKey, requested: IPAddress | None) -> int | None:
        e = self._entries.get(identity)
        if e is None:
            return None
        if e.offline:
            off = e.offline.pop(0)
            del self._offline[off]
            e.online.append((off, peer))
            self._online += 1
            return off
        if peer is None:
            return None
        want = self._offset(requested)
        for off, holder in e.online:
            if holder == peer and (requested is None or requested.is_unspecified or want == off):
                e.online.append((off, peer))  # one more holder of the same address
                return off
        return None

    def _take(self, identity: str, off: int, peer: PeerKey) -> int:
        e = self._entries.get(identity)
        if e is None:
            e = self._entries[identity] = _Entry()
        e.online.append((off, peer))
        self._online += 1
        return off

    def _new(self, identity: str, peer: PeerKey) -> int | None:
        if self._unused >= self.size:
            return None
        off = self._unused
        self._unused += 1
        return self._take(identity, off, peer)

    def _reassign(self, identity: str, peer: PeerKey) -> int | None:
        if not self._offline:
            return None
        off, former = self._offline.popitem(last=False)
        e = self._entries[former]
        e.offline.remove(off)
        if not e.online and not e.offline:
            del self._entries[former]
        return self._take(identity, off, peer)

    def release(self, identity: str, address: IPAddress) -> bool:
        """One IKE SA holding ``address`` is gone: the lease goes offline (remembered
        for ``identity``) once no IKE SA holds it.  False when there was no such lease."""
        e = self._entries.get(identity)
        off = self._offset(address)
        if e is None or off is None:
            return False
        for i, (held, _) in enumerate(e.online):
            if held == off:
                del e.online[i]
                break
        else:
            return False
        if not any(held == off for held, _ in e.online):
            e.offline.append(off)
            self._offline[off] = identity
            self._online -= 1
        return True

    def status(self, *, leases: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "first": str(self.first),
            "last": str(self.last),
            "size": self.size,
            "online": self.online,
            "offline": self.offline,
            "free": self.free,
        }
        if leases:
            out["leases"] = [
                {
                    "address": str(li.address),
                    "identity": li.identity,
                    "status": "online" if li.online else "offline",
                    "holders": li.holders,
                }
                for li in sorted(self.leases(), key=lambda li: int(li.address))
            ]
        return out

    def __repr__(self) -> str:
        return f"<Pool {self.name} {self.first}-{self.last} {self.online}/{self.size}>"


def acquire(
    pools: Sequence[Pool],
    identity: str,
    version: int,
    *,
    peer: PeerKey = None,
    requested: IPAddress | None = None,
) -> Lease | None:
    """An address of family ``version`` for ``identity`` from the first of ``pools``
    that has one, phase by phase like strongSwan's attribute manager: the identity's
    own leases in every pool first, then never-used addresses, then reassigned ones."""
    candidates = [p for p in pools if p.version == version]
    for phase in Pool.PHASES:
        for pool in candidates:
            lease = pool.acquire(identity, phase, peer=peer, requested=requested)
            if lease is not None:
                return lease
    return None


class PoolRegistry:
    """The configured pools by name (what the IKE manager allocates from)."""

    def __init__(self, configs: Sequence[PoolConfig] = ()) -> None:
        self.pools: dict[str, Pool] = {}
        self.configs: dict[str, PoolConfig] = {}
        self.load(configs)

    def load(self, configs: Sequence[PoolConfig]) -> list[str]:
        """Apply a (re)loaded set of pools; the problems, one line each.

        An unchanged range keeps its leases (its attributes are updated); a changed
        range replaces the pool only when no address of it is online (otherwise the
        old pool stays, as strongSwan does); a removed pool is forgotten -- IKE SAs
        still holding one of its addresses release it into the old object."""
        problems: list[str] = []
        pools: dict[str, Pool] = {}
        kept: dict[str, PoolConfig] = {}
        for cfg in configs:
            old = self.pools.get(cfg.name)
            if old is not None and (old.first, old.last) == (cfg.first, cfg.last):
                pools[cfg.name], kept[cfg.name] = old, cfg
            elif old is not None and old.online:
                problems.append(
                    f"pool {cfg.name} has {old.online} online lease(s): its range "
                    f"{old.first}-{old.last} stays until they are released"
                )
                pools[cfg.name], kept[cfg.name] = old, self.configs[cfg.name]
            else:
                pools[cfg.name], kept[cfg.name] = Pool(cfg.name, cfg.first, cfg.last), cfg
        self.pools, self.configs = pools, kept
        return problems

    def get(self, names: Sequence[str]) -> list[Pool]:
        """The pools of these names that exist, in that order."""
        return [p for n in names if (p := self.pools.get(n)) is not None]

    def config(self, pool: Pool) -> PoolConfig | None:
        cfg = self.configs.get(pool.name)
        return cfg if self.pools.get(pool.name) is pool else None

    def status(self, *, leases: bool = False, name: str | None = None) -> list[dict[str, Any]]:
        out = []
        for pname, pool in self.pools.items():
            if name is not None and pname != name:
                continue
            st = pool.status(leases=leases)
            st["addrs"] = self.configs[pname].addrs
            out.append(st)
        return out
