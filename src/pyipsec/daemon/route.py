"""Which local address the kernel would use to reach a peer (a cached route lookup).

A daemon listening on a wildcard address (``0.0.0.0``/``::``) does not know its own
address for a peer until a datagram arrives (``IP_PKTINFO``, see
:mod:`pyipsec.daemon.sockets`).  An initiator needs it *before* the first message:
the NAT_DETECTION_SOURCE_IP hash of IKE_SA_INIT covers the source address (RFC 7296
§2.23), and a hash over ``0.0.0.0`` makes the peer believe we are behind a NAT.

:class:`SourceAddressCache` asks the kernel with a *connected* UDP socket: ``connect``
on a datagram socket sends nothing, it only performs the route lookup and binds the
source address, which ``getsockname`` then reports.  Results are cached for ``ttl``
seconds (routes rarely change; a changed route is picked up after the TTL).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
from collections.abc import Callable

__all__ = ["SourceAddressCache", "route_source"]

log = logging.getLogger("pyipsec.net")

#: Port used for the lookup ``connect`` (nothing is ever sent to it).
_PROBE_PORT = 9


def route_source(remote_ip: str) -> str | None:
    """The source address the kernel picks for ``remote_ip``; None when unroutable."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(remote_ip).version == 6 else socket.AF_INET
    except ValueError:
        return None
    s = socket.socket(family, socket.SOCK_DGRAM)
    try:
        s.connect((remote_ip, _PROBE_PORT))
        local = str(s.getsockname()[0])
    except OSError as e:
        log.debug("no route to %s: %s", remote_ip, e)
        return None
    finally:
        s.close()
    if ipaddress.ip_address(local).is_unspecified:
        return None
    return local


class SourceAddressCache:
    """``cache(remote_ip) -> local ip | None`` with a per-peer TTL (sans state elsewhere).

    ``lookup`` and ``clock`` are injectable for tests.
    """

    __slots__ = ("_cache", "clock", "lookup", "ttl")

    def __init__(
        self,
        ttl: float = 30.0,
        *,
        lookup: Callable[[str], str | None] = route_source,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.lookup = lookup
        self.clock = clock
        self._cache: dict[str, tuple[float, str | None]] = {}

    def __call__(self, remote_ip: str) -> str | None:
        now = self.clock()
        hit = self._cache.get(remote_ip)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        local = self.lookup(remote_ip)
        self._cache[remote_ip] = (now, local)
        return local

    def forget(self) -> None:
        """Drop every cached answer (e.g. after a configuration reload)."""
        self._cache.clear()
