"""TUN routes for the remote selectors of tunnel-mode policies (RFC 4301 §4.4.1: the
SPD decides, but only what the routing table sends into the TUN device reaches it).

A route never captures the IKE/ESP traffic to a peer itself: a selector covering a
peer's address is not routed, and a route that turns out to cover a peer we hear from
(a ``remote_addrs = %any`` responder) is withdrawn.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import logging
from collections.abc import Iterable, Sequence

from ..config.model import ConnectionConfig, Mode
from .dataplane import ChildState, PeerIndex, TunLike, networks, range_networks
from .spd import SelectorLike

__all__ = ["prune_routes", "route_selector", "unroute_peer"]

log = logging.getLogger("pyipsec.net")
log_cfg = logging.getLogger("pyipsec.cfg")


def route_selector(
    tun: TunLike,
    sel: SelectorLike,
    peers: Iterable[str],
    tun_addresses: Iterable[str],
    *,
    known: PeerIndex | None = None,
) -> None:
    """Route ``sel``'s networks into the TUN device, with a source address of the
    device's own (``tun_addresses``) of the same family; never a default route nor a
    network containing one of ``peers`` or of the ``known`` peers (O(log n) each)."""
    peer_ips = [ip for p in peers if (ip := _address(p)) is not None]
    for net, text in _networks(sel.start, sel.end):
        captures = any(ip in net for ip in peer_ips) or (known is not None and known.any_in(net))
        if net.prefixlen == 0 or captures:
            log.warning(
                "not routing %s through %s: it would capture the IKE/ESP traffic itself",
                net,
                tun.name,
            )
            continue
        tun.add_route(text, _prefsrc(tuple(tun_addresses), net.version))


# What a Child SA install asks again and again (the same selectors, peers and TUN
# addresses for every SA of a connection): parsed once.


@functools.lru_cache(maxsize=4096)
def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(text)
    return None


@functools.lru_cache(maxsize=4096)
def _networks(
    start: ipaddress.IPv4Address | ipaddress.IPv6Address,
    end: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> Sequence[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]]:
    return tuple((net, str(net)) for net in range_networks(start, end))


@functools.lru_cache(maxsize=64)
def _prefsrc(tun_addresses: tuple[str, ...], version: int) -> str | None:
    """The TUN device's own address of ``version`` (the routes' source address)."""
    for a in tun_addresses:
        iface = ipaddress.ip_interface(a)
        if iface.version == version:
            return str(iface.ip)
    return None


def unroute_peer(tun: TunLike, ip: str) -> None:
    """A peer we hear from lies inside a TUN route (a selector of a connection with
    ``remote_addrs = %any``, e.g. the peer's own address as ``remote_ts``, could not
    be checked against it when routed): withdraw that route before answering, or our
    IKE and ESP packets to the peer would be routed into the TUN device."""
    addr = _address(ip)
    if addr is None:
        return
    capture = set(tun.routes_containing(addr))  # an index, not a walk over every route
    if capture:
        for net in tun.prune_routes(set(tun.routes) - capture):
            log.warning("route %s through %s withdrawn: it captures the peer %s", net, tun.name, ip)


def prune_routes(
    tun: TunLike, connections: Iterable[ConnectionConfig], children: Iterable[ChildState]
) -> None:
    """Drop TUN routes that neither a configured tunnel child nor an installed Child
    SA of a configured connection needs any more (a reload removed them): traffic for
    a removed connection follows the ordinary routing table again."""
    conns = list(connections)
    names = {c.name for c in conns}
    sels: list[SelectorLike] = [
        s for c in conns for ch in c.children if ch.mode == Mode.TUNNEL for s in ch.remote_ts
    ]
    sels += [s for st in children if st.info.conn in names for s in st.remote_ts]
    keep = {str(net) for s in sels for net in networks(s)}
    for net in tun.prune_routes(keep):
        log_cfg.info("route %s through %s removed (no longer configured)", net, tun.name)
