"""The configured connections, indexed by peer address and peer identity.

A responder looks for the connections an IKE_SA_INIT may belong to (by the addresses
it came from and to, RFC 7296 §2.1 and swanctl's ``local_addrs``/``remote_addrs``) and,
in IKE_AUTH, for the one whose remote identity the initiator claims (§2.15, §3.5).  A
hub with thousands of branch connections (each with its own ``remote_addrs`` or
``remote.id``) must not compare every one of them per handshake, so the connections
are indexed once per configuration change:

* by exact remote address (connections whose ``remote_addrs`` are plain addresses),
  beside the connections whose remote addresses are subnets or ranges (checked one by
  one: a configuration has few) and those that accept any remote address;
* by exact remote identity (connections authenticating the peer with a shared key and
  a concrete ``remote.id``), beside those with ``%any`` or a wildcard pattern.

Lookups give the same connections, in the same (configuration) order, as testing every
connection would.  :class:`ConnectionTable` is the name -> connection mapping that
tells the index when it changed (reload, VICI ``load-conn``, or a direct assignment).
"""

from __future__ import annotations

import functools
import heapq
import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from ..config.model import ANY_ADDRESS, ConnectionConfig, is_any_identity
from ..ipv4text import canonical_ipv4_octets
from .payloads import IdPayload
from .tasks.common import identity_key, parse_identity

__all__ = ["ConnectionIndex", "ConnectionTable", "addr_ok"]


class ConnectionTable(dict[str, ConnectionConfig]):
    """The connections by name, in configuration order; ``version`` counts changes."""

    __slots__ = ("version",)

    def __init__(self, items: Iterable[tuple[str, ConnectionConfig]] = ()) -> None:
        super().__init__(items)
        self.version = 0

    def __setitem__(self, key: str, value: ConnectionConfig) -> None:
        super().__setitem__(key, value)
        self.version += 1

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self.version += 1

    def pop(self, key: str, *default: Any) -> Any:
        self.version += 1
        return super().pop(key, *default)

    def popitem(self) -> tuple[str, ConnectionConfig]:
        self.version += 1
        return super().popitem()

    def clear(self) -> None:
        super().clear()
        self.version += 1

    def update(self, *args: Any, **kw: ConnectionConfig) -> None:
        super().update(*args, **kw)
        self.version += 1

    def setdefault(self, key: str, default: Any = None) -> Any:
        self.version += 1
        return super().setdefault(key, default)

    def __ior__(self, other: Any) -> ConnectionTable:  # type: ignore[override,misc]
        super().update(other)
        self.version += 1
        return self


@functools.lru_cache(maxsize=8192)
def addr_ok(allowed: tuple[str, ...], address: str) -> bool:
    """swanctl-like address matching: empty/%any = any; IPs, CIDR subnets, ranges."""
    if not allowed:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for a in allowed:
        a = a.strip()
        if a in ANY_ADDRESS:
            return True
        try:
            if "/" in a:
                if ip in ipaddress.ip_network(a, strict=False):
                    return True
            elif "-" in a:
                lo, hi = (ipaddress.ip_address(x.strip()) for x in a.split("-", 1))
                if lo.version == ip.version and int(lo) <= int(ip) <= int(hi):
                    return True
            elif ipaddress.ip_address(a) == ip:
                return True
        except ValueError:
            continue
    return False


@functools.lru_cache(maxsize=8192)
def _normal_ip(text: str) -> str:
    """The canonical text of an address (the key of the exact-address index).  The
    socket layer hands us canonical IPv4 text: recognised without ``ipaddress``."""
    if canonical_ipv4_octets(text) is not None:
        return text
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return text.strip()


def _exact_addresses(addrs: tuple[str, ...]) -> list[str] | None:
    """The canonical addresses when every entry is one plain address, else None."""
    out: list[str] = []
    for a in addrs:
        a = a.strip()
        if a in ANY_ADDRESS or "/" in a or "-" in a:
            return None
        try:
            out.append(str(ipaddress.ip_address(a)))
        except ValueError:
            return None
    return out or None


def _exact_identity(conn: ConnectionConfig) -> tuple[int, bytes] | None:
    """The key of the one identity a connection accepts (shared-key peers with a
    concrete ``remote.id``), None when it accepts patterns or any identity."""
    if conn.remote_auth == "pubkey" or is_any_identity(conn.remote_id):
        return None
    try:
        want = parse_identity(conn.remote_id.strip())
    except ValueError:
        return None
    return identity_key(want.id_type, want.data)


class ConnectionIndex:
    """Address and identity indexes over one version of a :class:`ConnectionTable`."""

    __slots__ = ("_any_remote", "_by_id", "_by_local", "_by_remote", "_conns", "_id_wild",
                 "_is_id_wild", "_ranged")  # fmt: skip

    def __init__(self, conns: Mapping[str, ConnectionConfig]) -> None:
        self._conns = list(conns.values())
        self._by_remote: dict[str, list[int]] = {}
        self._ranged: list[int] = []  # subnets or ranges among the remote addresses
        self._any_remote: list[int] = []
        self._by_id: dict[tuple[int, bytes], list[int]] = {}
        self._id_wild: list[int] = []
        self._is_id_wild = [False] * len(self._conns)
        self._by_local: dict[str, list[int]] = {}  # _any_remote filtered per local IP
        for i, c in enumerate(self._conns):
            remote = tuple(c.remote_addrs)
            exact = _exact_addresses(remote)
            if exact is not None:
                for ip in dict.fromkeys(exact):
                    self._by_remote.setdefault(ip, []).append(i)
            elif not remote or any(a.strip() in ANY_ADDRESS for a in remote):
                self._any_remote.append(i)
            else:
                self._ranged.append(i)
            key = _exact_identity(c)
            if key is None:
                self._id_wild.append(i)
                self._is_id_wild[i] = True
            else:
                self._by_id.setdefault(key, []).append(i)

    def _local_any_remote(self, local_ip: str) -> list[int]:
        """The any-remote connections that accept ``local_ip`` (a host has few)."""
        got = self._by_local.get(local_ip)
        if got is None:
            got = [i for i in self._any_remote if addr_ok(tuple(self._conns[i].local_addrs),
                                                          local_ip)]  # fmt: skip
            if len(self._by_local) >= 256:
                self._by_local.clear()
            self._by_local[local_ip] = got
        return got

    def _addresses_ok(self, i: int, local_ip: str, remote_ip: str) -> bool:
        c = self._conns[i]
        return addr_ok(tuple(c.local_addrs), local_ip) and addr_ok(tuple(c.remote_addrs), remote_ip)

    def _address_indices(self, local_ip: str, remote_ip: str) -> list[int]:
        """The positions of the connections between these addresses, in order."""
        specific = [
            i
            for i in (*self._by_remote.get(_normal_ip(remote_ip), ()), *self._ranged)
            if self._addresses_ok(i, local_ip, remote_ip)
        ]
        anywhere = self._local_any_remote(local_ip)
        if not specific:
            return anywhere
        specific.sort()
        return list(heapq.merge(specific, anywhere))

    def for_addresses(self, local_ip: str, remote_ip: str) -> list[ConnectionConfig]:
        """The connections between these addresses, in configuration order."""
        return [self._conns[i] for i in self._address_indices(local_ip, remote_ip)]

    def for_peer(
        self, local_ip: str, remote_ip: str, ident: IdPayload
    ) -> list[ConnectionConfig]:
        """The connections between these addresses that may accept the identity
        ``ident`` (its exact match and every pattern or %any one), in configuration
        order; the caller still checks the identity itself.  Walks the shorter of the
        address and the identity candidates (a hub of certificate branches has many
        pattern connections but one per address; a road-warrior gateway the reverse)."""
        exact = self._by_id.get(identity_key(ident.id_type, ident.data), ())
        wild = self._id_wild
        by_address = self._address_indices(local_ip, remote_ip)
        if len(by_address) <= len(exact) + len(wild):
            same = set(exact)
            is_wild = self._is_id_wild
            return [self._conns[i] for i in by_address if is_wild[i] or i in same]
        cands: Iterable[int] = heapq.merge(exact, wild) if exact and wild else exact or wild
        return [self._conns[i] for i in cands if self._addresses_ok(i, local_ip, remote_ip)]
