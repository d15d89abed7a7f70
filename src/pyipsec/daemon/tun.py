"""The TUN device of the userspace data plane, configured over netlink (pyroute2).

:func:`open_tun` creates the device with ``ioctl(TUNSETIFF, IFF_TUN | IFF_NO_PI)`` on
``/dev/net/tun`` (the packets read and written are bare IPv4/IPv6 packets) in the
network namespace of the calling process.  :class:`TunDevice` then sets the MTU,
adds addresses, brings the link up and adds/removes routes through the device with
:class:`pyroute2.IPRoute` — never by running ``ip``.  pyroute2 0.9's synchronous
``IPRoute`` drives its own asyncio loop and cannot be used from inside the daemon's
running loop, so every netlink call runs on one private worker thread (created, used
and closed there); the calls are rare (start-up, SA install) and take milliseconds.
"""

from __future__ import annotations

import fcntl
import ipaddress
import logging
import os
import struct
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any

__all__ = ["TunDevice", "TunError", "open_tun"]

log = logging.getLogger("pyipsec.net")

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
_IFREQ = "16sH22x"
# Transmit queue of the device (packets the kernel holds for the daemon to read).  The
# kernel's default for TUN is 500; when the queue is full the kernel drops, and TCP through
# the tunnel takes every such drop as congestion.  PYIPSEC_TUN_TXQLEN overrides (tuning).
TXQLEN = int(os.environ.get("PYIPSEC_TUN_TXQLEN", "2000"))


class TunError(OSError):
    """The TUN device could not be created or configured."""


def open_tun(name: str, path: str = "/dev/net/tun") -> tuple[int, str]:
    """Create (or attach to) TUN device ``name``; returns ``(fd, actual name)``.

    The fd is non-blocking and close-on-exec.  Needs CAP_NET_ADMIN.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise TunError(e.errno, f"cannot open {path}: {e.strerror}") from None
    try:
        ifr = struct.pack(_IFREQ, name.encode(), IFF_TUN | IFF_NO_PI)
        res = fcntl.ioctl(fd, TUNSETIFF, ifr)
    except OSError as e:
        os.close(fd)
        raise TunError(e.errno, f"TUNSETIFF {name!r}: {e.strerror}") from None
    actual = struct.unpack(_IFREQ, res)[0].rstrip(b"\0").decode()
    return fd, actual


def _iproute() -> Any:
    from pyroute2 import IPRoute

    return IPRoute()


class TunDevice:
    """An open, configured TUN device: ``fd`` for ``os.read``/``os.write``, netlink for the rest."""

    def __init__(self, name: str = "pyipsec0", mtu: int = 1400, txqlen: int = TXQLEN) -> None:
        self.requested_name = name
        self.mtu = mtu
        self.txqlen = txqlen
        self.fd = -1
        self.name = name
        self.index = 0
        self._ipr: Any = None
        self._pool: ThreadPoolExecutor | None = None
        self._routes: set[tuple[str, str | None]] = set()
        # the routed networks by (version, prefix length) -> network address -> refs:
        # "which routes contain this address" in one probe per prefix length in use
        self._by_prefix: dict[tuple[int, int], dict[int, int]] = {}

    def _nl(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """Run one netlink call on the worker thread and wait for it."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="pyipsec-netlink")
        return self._pool.submit(fn, *args, **kw).result()

    def _ipr_call(self, method: str, *args: Any, **kw: Any) -> Any:
        return self._nl(lambda: getattr(self._ipr, method)(*args, **kw))

    def open(self, addresses: tuple[str, ...] = ()) -> TunDevice:
        """Create the device, set MTU and addresses, bring it up."""
        self.fd, self.name = open_tun(self.requested_name)
        try:
            self._ipr = self._nl(_iproute)
            idx = self._ipr_call("link_lookup", ifname=self.name)
            if not idx:
                raise TunError(0, f"TUN device {self.name!r} vanished")
            self.index = int(idx[0])
            self._ipr_call("link", "set", index=self.index, mtu=self.mtu)
            if self.txqlen > 0:
                try:
                    self._ipr_call("link", "set", index=self.index, txqlen=self.txqlen)
                except Exception as e:  # not fatal: the kernel default queue still works
                    log.warning("txqueuelen %d on %s: %s", self.txqlen, self.name, e)
            for a in addresses:
                iface = ipaddress.ip_interface(a)
                kw: dict[str, Any] = {}
                if iface.version == 6:
                    kw["flags"] = 0x02  # IFA_F_NODAD: usable at once, no duplicate detection
                self._ipr_call(
                    "addr",
                    "add",
                    index=self.index,
                    address=str(iface.ip),
                    prefixlen=iface.network.prefixlen,
                    **kw,
                )
            self._ipr_call("link", "set", index=self.index, state="up")
        except Exception:
            self.close()
            raise
        log.info("TUN %s up (mtu %d, addresses %s)", self.name, self.mtu, ", ".join(addresses))
        return self

    def add_address(self, address: str) -> bool:
        """Put one host address on the device (a virtual IP, RFC 7296 §2.19: /32 or
        /128, no on-link route); False when it failed."""
        ip = ipaddress.ip_address(address)
        kw: dict[str, Any] = {"flags": 0x02} if ip.version == 6 else {}  # IFA_F_NODAD
        try:
            self._ipr_call(
                "addr", "add", index=self.index, address=str(ip),
                prefixlen=ip.max_prefixlen, **kw,
            )  # fmt: skip
        except Exception as e:
            if getattr(e, "code", None) != 17:  # EEXIST: it is there already
                log.warning("address %s on %s failed: %s", ip, self.name, e)
                return False
        log.info("address %s on %s", ip, self.name)
        return True

    def remove_address(self, address: str) -> None:
        """Take a virtual IP off the device.  The routes using it as their source go
        with it; the kernel also flushes every route of the device when its last
        address of that family goes, so the other routes of the family are put back
        (a route of the same network with another source included)."""
        ip = ipaddress.ip_address(address)
        for key in [k for k in self._routes if k[1] == str(ip)]:
            self.remove_route(*key)
        try:
            self._ipr_call(
                "addr", "del", index=self.index, address=str(ip), prefixlen=ip.max_prefixlen
            )
        except Exception as e:
            log.debug("removing address %s from %s: %s", ip, self.name, e)
        log.info("address %s removed from %s", ip, self.name)
        family = [k for k in self._routes if ipaddress.ip_network(k[0]).version == ip.version]
        for key in sorted(family, key=lambda k: (k[0], k[1] or "")):
            self._drop(key)
            self.add_route(*key)

    def add_route(self, network: str, prefsrc: str | None = None) -> bool:
        """Route ``network`` through the device (idempotent); False when it failed."""
        if (network, prefsrc) in self._routes:
            return True  # the common case (every Child SA of a connection): no parsing
        key = (str(ipaddress.ip_network(network, strict=False)), prefsrc)
        if key in self._routes:
            return True
        kw: dict[str, Any] = {"dst": key[0], "oif": self.index}
        if prefsrc:
            kw["prefsrc"] = prefsrc
        try:
            self._ipr_call("route", "replace", **kw)
        except Exception as e:  # netlink errors are NetlinkError (an OSError subclass)
            log.warning("route %s via %s failed: %s", key[0], self.name, e)
            return False
        self._routes.add(key)
        self._index(key[0], 1)
        log.debug("route %s dev %s%s", key[0], self.name, f" src {prefsrc}" if prefsrc else "")
        return True

    def _drop(self, key: tuple[str, str | None]) -> None:
        """Forget a route of ours (bookkeeping only: the caller talks to the kernel)."""
        if key in self._routes:
            self._routes.discard(key)
            self._index(key[0], -1)

    def _index(self, network: str, delta: int) -> None:
        net = ipaddress.ip_network(network)
        table = self._by_prefix.setdefault((net.version, net.prefixlen), {})
        addr = int(net.network_address)
        refs = table.get(addr, 0) + delta
        if refs > 0:
            table[addr] = refs
        else:
            table.pop(addr, None)
            if not table:
                del self._by_prefix[(net.version, net.prefixlen)]

    def routes_containing(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[str]:
        """The routed networks that contain ``ip``: one dictionary probe per prefix
        length in use, whatever the number of routes (an IKE datagram asks, see
        :func:`~pyipsec.daemon.routes.unroute_peer`)."""
        out = []
        value, bits, ip_version = int(ip), ip.max_prefixlen, ip.version
        for (version, plen), table in self._by_prefix.items():
            if version != ip_version:
                continue
            base = value >> (bits - plen) << (bits - plen)
            if base in table:
                out.append(str(ipaddress.ip_network((base, plen))))
        return out

    def remove_route(self, network: str, prefsrc: str | None = None) -> None:
        key = (str(ipaddress.ip_network(network, strict=False)), prefsrc)
        if key not in self._routes:
            return
        self._drop(key)
        try:
            self._ipr_call("route", "del", dst=key[0], oif=self.index)
        except Exception as e:
            log.debug("removing route %s: %s", key[0], e)

    def prune_routes(self, keep: set[str]) -> list[str]:
        """Remove every route whose network is not in ``keep``; return the removed ones."""
        gone = sorted((k for k in self._routes if k[0] not in keep), key=lambda k: k[0])
        for net, prefsrc in gone:
            self.remove_route(net, prefsrc)
        return [net for net, _ in gone]

    @property
    def routes(self) -> list[str]:
        return sorted(r for r, _ in self._routes)

    def close(self) -> None:
        """Close the fd (the kernel removes the non-persistent device and its routes)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self._routes.clear()
        self._by_prefix.clear()
        try:
            if self._ipr is not None:
                try:
                    self._ipr_call("close")
                finally:
                    self._ipr = None
        finally:  # the worker thread goes even when closing the netlink socket failed
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def __enter__(self) -> TunDevice:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
