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
from dataclasses import dataclass

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
    peer_values = [v for p in peers if (v := _address_value(p)) is not None]
    sources = tuple(tun_addresses)
    for r in _networks(sel.start, sel.end):
        captures = any(
            version == r.version and r.first <= value <= r.last for version, value in peer_values
        ) or (known is not None and known.any_between(r.version, r.first, r.last))
        if r.prefixlen == 0 or captures:
            log.warning(
                "not routing %s through %s: it would capture the IKE/ESP traffic itself",
                r.net,
                tun.name,
            )
            continue
        tun.add_route(r.text, _prefsrc(sources, r.version))


# What a Child SA install asks again and again (the same selectors, peers and TUN
# addresses for every SA of a connection): parsed once.


@dataclass(frozen=True, slots=True)
class _Network:
    """One network a selector covers, with what routing it asks: its text (the route),
    family, prefix length and first and last address as integers."""

    net: ipaddress.IPv4Network | ipaddress.IPv6Network
    text: str
    version: int
    prefixlen: int
    first: int
    last: int


@functools.lru_cache(maxsize=4096)
def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(text)
    return None


def _address_value(text: str) -> tuple[int, int] | None:
    """``(version, integer)`` of an IP address (None when ``text`` is none; the
    address parsed once, by :func:`_address`)."""
    addr = _address(text)
    return None if addr is None else (addr.version, int(addr))


@functools.lru_cache(maxsize=4096)
def _networks(
    start: ipaddress.IPv4Address | ipaddress.IPv6Address,
    end: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> Sequence[_Network]:
    return tuple(
        _Network(net, str(net), net.version, net.prefixlen, int(net.network_address),
                 int(net.broadcast_address))
        for net in range_networks(start, end)
    )  # fmt: skip


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
    capture = tun.routes_containing(addr)  # an index, not a walk over every route
    if capture:
        for net in tun.prune_routes(set(tun.routes) - set(capture)):
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
