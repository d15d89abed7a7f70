"""UDP and raw ESP sockets of the daemon: plain non-blocking sockets, no asyncio transports.

The runtime registers each socket with ``loop.add_reader`` and drains it in a loop
(:data:`DRAIN_MAX` datagrams per wake-up) with ``recvfrom_into`` into a preallocated
buffer — asyncio's ``DatagramProtocol`` costs several times more per packet (see
PERFORMANCE-NOTES.md).  Sockets bound to a wildcard address (``0.0.0.0``/``::``)
enable ``IP_PKTINFO``/``IPV6_RECVPKTINFO`` so that IKE learns the local address each
datagram arrived on, and send with that address as the source.

Batching (Linux): NAT-T sockets enable ``UDP_GRO`` so that a burst of equal-sized
datagrams of one flow may arrive as one coalesced buffer (:meth:`UdpSocket.recv_segments_into`
reports the segment size), and :meth:`UdpSocket.send_segments` sends a run of equal-sized
ESP packets (the last one may be shorter) with one ``sendmsg`` and a ``UDP_SEGMENT``
control message (UDP GSO): the kernel cuts it into ordinary datagrams, so the peer needs
nothing special.  Either falls back to one datagram per call where the kernel refuses.
Socket buffers are 4 MiB (``SO_RCVBUFFORCE``/``SO_SNDBUFFORCE`` when privileged, so that
``net.core.rmem_max`` does not cap them).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import ipaddress
import logging
import socket
import struct

from ..nat import format_endpoint as _ep

__all__ = [
    "DRAIN_MAX",
    "GSO_MAX_BYTES",
    "GSO_MAX_SEGMENTS",
    "RAW_PEERS_MAX",
    "RawEspSocket",
    "UdpSocket",
]

log = logging.getLogger("pyipsec.net")

DRAIN_MAX = 64
RCVBUF = 4 << 20
SNDBUF = 4 << 20
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)
_CMSG_SPACE = socket.CMSG_SPACE(20) + socket.CMSG_SPACE(20)
IPPROTO_ESP = 50
SOL_UDP = 17
UDP_SEGMENT = 103  # linux/udp.h: GSO segment size (setsockopt or per-sendmsg cmsg)
UDP_GRO = 104  # linux/udp.h: receive coalesced datagrams, segment size in a cmsg
GSO_MAX_SEGMENTS = 32  # the kernel accepts up to UDP_MAX_SEGMENTS (64 or more)
GSO_MAX_BYTES = 60000  # one GSO send must fit an IP packet (64 KiB) with its headers
_GRO_CMSG_SPACE = socket.CMSG_SPACE(4)
LOCAL_NAMES_MAX = 64  # PKTINFO control messages remembered per wildcard socket
_SEG = struct.Struct("=H")
_INT = struct.Struct("=i")

Address = tuple[str, int]


def _family(addr: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ipaddress.ip_address(addr).version == 6 else socket.AF_INET


_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
_SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)


def _set_bufs(sock: socket.socket) -> None:
    for force, opt, size in (
        (_SO_RCVBUFFORCE, socket.SO_RCVBUF, RCVBUF),
        (_SO_SNDBUFFORCE, socket.SO_SNDBUF, SNDBUF),
    ):
        try:  # privileged: not capped by net.core.[rw]mem_max
            sock.setsockopt(socket.SOL_SOCKET, force, size)
        except OSError:
            with contextlib.suppress(OSError):  # limits differ per system
                sock.setsockopt(socket.SOL_SOCKET, opt, size)


def _try_opt(sock: socket.socket, level: int, opt: int, value: int) -> bool:
    try:
        sock.setsockopt(level, opt, value)
    except OSError:
        return False
    return True


_BIND_HINTS = {
    errno.EADDRNOTAVAIL: "the address is not configured on this host: add it to an "
    "interface, or listen on 0.0.0.0 / ::",
    errno.EADDRINUSE: "another process (another IKE daemon such as charon?) uses this port",
    errno.EACCES: "ports below 1024 need root or CAP_NET_BIND_SERVICE",
}


class BindError(OSError):
    """A listening socket could not be bound.

    Carries the address, the port and the configuration keys they come from
    (``daemon.listen`` and ``daemon.ike_port`` or ``daemon.natt_port``, RFC 7296
    §2.11 / RFC 3948 §2.2 ports); ``errno`` is the one of the failed ``bind()``.
    """

    def __init__(self, addr: str, port: int, *, natt: bool, cause: OSError) -> None:
        self.addr = addr
        self.port = port
        self.port_key = "daemon.natt_port" if natt else "daemon.ike_port"
        reason = cause.strerror or str(cause)
        hint = _BIND_HINTS.get(cause.errno or 0)
        self.message = (
            f"cannot listen on {_ep((addr, port))} "
            f"(daemon.listen = {addr!r}, {self.port_key} = {port}): {reason}"
            + (f" (hint: {hint})" if hint else "")
        )
        super().__init__(cause.errno, self.message)

    def __str__(self) -> str:
        return self.message


class UdpSocket:
    """One bound UDP socket (IKE on 500, IKE + ESP-in-UDP on 4500).

    A failed ``bind()`` raises :class:`BindError` (an :class:`OSError`).
    """

    __slots__ = (
        "_cmsg_space",
        "_local_names",
        "addr",
        "family",
        "fd",
        "gro",
        "gso",
        "natt",
        "port",
        "sock",
        "wildcard",
    )

    def __init__(self, addr: str, port: int, *, natt: bool) -> None:
        self.family = _family(addr)
        self.addr = addr
        self.natt = natt
        self.wildcard = ipaddress.ip_address(addr).is_unspecified
        sock = socket.socket(self.family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self.family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if self.wildcard:
                if self.family == socket.AF_INET:
                    sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
                else:
                    sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
            _set_bufs(sock)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        try:
            sock.bind((addr, port))
        except OSError as e:
            sock.close()
            raise BindError(addr, port, natt=natt, cause=e) from e
        # UDP GSO (send) and GRO (receive) for the ESP-in-UDP socket; setting the
        # socket-wide segment size to 0 only probes support (sends stay unsegmented).
        self.gso = natt and _try_opt(sock, SOL_UDP, UDP_SEGMENT, 0)
        self.gro = natt and _try_opt(sock, SOL_UDP, UDP_GRO, 1)
        self._cmsg_space = (_CMSG_SPACE if self.wildcard else 0) + (
            _GRO_CMSG_SPACE if self.gro else 0
        )
        self.sock = sock
        self.fd = sock.fileno()
        self.port = sock.getsockname()[1]
        # (level, type, data) of a PKTINFO control message -> the local address it
        # names: a wildcard socket receives on a handful of addresses, each datagram
        # brings the same few messages again (see _local_name)
        self._local_names: dict[tuple[int, int, bytes], str | None] = {}

    def __repr__(self) -> str:
        return f"UdpSocket({self.addr!r}, {self.port})"

    def recv_into(self, buf: bytearray | memoryview) -> tuple[int, Address, str] | None:
        """One datagram into ``buf``: ``(length, (src ip, src port), local ip)``; None when
        the socket is drained.  (With GRO the buffer may hold several coalesced datagrams:
        use :meth:`recv_segments_into` to learn their size.)"""
        r = self.recv_segments_into(buf)
        return None if r is None else r[:3]

    def recv_segments_into(
        self, buf: bytearray | memoryview
    ) -> tuple[int, Address, str, int] | None:
        """Like :meth:`recv_into`, plus the segment size: with UDP GRO the buffer may hold
        several datagrams of the same source, each ``seg`` bytes long (the last one may be
        shorter); ``seg`` is 0 when it holds exactly one."""
        try:
            if not self._cmsg_space:
                n, src = self.sock.recvfrom_into(buf)
            else:
                n, anc, _flags, src = self.sock.recvmsg_into([buf], self._cmsg_space)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as e:  # e.g. a queued ICMP error: report it, end this drain
            log.debug("receive on %r: %s", self, e)
            return None
        if len(src) != 2:  # IPv6: (address, port, flowinfo, scope id)
            src = (src[0], src[1])
        if not self._cmsg_space or not anc:
            return n, src, self.addr, 0
        seg = 0
        local = None
        names = self._local_names
        for level, typ, data in anc:
            if level == SOL_UDP and typ == UDP_GRO:
                seg = _INT.unpack_from(data)[0] if len(data) >= 4 else _SEG.unpack_from(data)[0]
            else:
                key = (level, typ, data)
                try:  # one lookup per datagram; a miss (a new address) is rare
                    local = names[key]
                except KeyError:
                    local = self._local_name(key)
        return n, src, local or self.addr, (seg if seg < n else 0)

    def _local_name(self, cmsg: tuple[int, int, bytes]) -> str | None:
        """The local address an ``IP_PKTINFO``/``IPV6_PKTINFO`` control message names
        (None for any other message), remembered for the next datagrams: converting
        the address is most of what a received datagram costs here.  At most
        :data:`LOCAL_NAMES_MAX` are kept (then they are forgotten and learnt again)."""
        names = self._local_names
        if len(names) >= LOCAL_NAMES_MAX:
            names.clear()
        local = names[cmsg] = _local_from_cmsg([cmsg], self.family)
        return local

    def send_segments(self, packets: list[bytes], remote: Address) -> int:
        """Send ``packets`` (equal sizes, the last one may be shorter) to ``remote``: one
        UDP GSO ``sendmsg`` when the socket has it, else one datagram each.  Returns how
        many were handed to the kernel."""
        if len(packets) > 1 and self.gso:
            try:
                self.sock.sendmsg(
                    [b"".join(packets)],
                    [(SOL_UDP, UDP_SEGMENT, _SEG.pack(len(packets[0])))],
                    0,
                    remote,
                )
                return len(packets)
            except (BlockingIOError, InterruptedError):
                return 0
            except OSError as e:
                if e.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ECONNREFUSED):
                    return 0
                # e.g. EIO/EINVAL: no GSO on this path; send datagram by datagram from now on
                log.info("UDP GSO to %s failed (%s): sending unsegmented", _ep(remote), e)
                self.gso = False
        sent = 0
        for p in packets:
            if self.sendto(p, remote):
                sent += 1
        return sent

    def sendto(self, data: bytes, remote: Address, local: str | None = None) -> bool:
        """Send one datagram; with a wildcard socket ``local`` picks the source address.
        False when it was dropped (full buffer, unreachable)."""
        try:
            if self.wildcard and local and (info := _pktinfo(self.family, local)) is not None:
                self.sock.sendmsg([data], [info], 0, remote)
            else:
                self.sock.sendto(data, remote)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as e:
            if e.errno not in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ECONNREFUSED):
                log.warning("send to %s failed: %s", _ep(remote), e)
            return False
        return True

    def close(self) -> None:
        self.sock.close()


@functools.lru_cache(maxsize=256)
def _pktinfo(family: socket.AddressFamily, local: str) -> tuple[int, int, bytes] | None:
    """The IP_PKTINFO / IPV6_PKTINFO control message choosing ``local`` as the source
    (None for the unspecified address: the kernel chooses); built once per address."""
    if ipaddress.ip_address(local).is_unspecified:
        return None
    if family == socket.AF_INET:
        data = struct.pack("=I4s4s", 0, socket.inet_pton(socket.AF_INET, local), bytes(4))
        return socket.IPPROTO_IP, IP_PKTINFO, data
    data = struct.pack("=16sI", socket.inet_pton(socket.AF_INET6, local), 0)
    return socket.IPPROTO_IPV6, IPV6_PKTINFO, data


def _local_from_cmsg(anc: list[tuple[int, int, bytes]], family: socket.AddressFamily) -> str | None:
    for level, typ, data in anc:
        if level == socket.IPPROTO_IP and typ == IP_PKTINFO and len(data) >= 12:
            return socket.inet_ntop(socket.AF_INET, data[8:12])  # ipi_addr: header dst
        if level == socket.IPPROTO_IPV6 and typ == IPV6_PKTINFO and len(data) >= 16:
            return socket.inet_ntop(socket.AF_INET6, data[:16])
    return None


RAW_PEERS_MAX = 256  # connected raw send sockets per family; more peers use sendto
_RAW_TX_RCVBUF = 1  # the kernel rounds it up to its minimum (a couple of packets)


class RawEspSocket:
    """Raw IP protocol 50 socket for non-encapsulated ESP (one per address family).

    IPv4 raw sockets deliver the IP header in front of the ESP packet; it is removed
    here.  The kernel builds the outer header on send.

    Sending: raw sockets have no GSO, so every ESP packet is a syscall of its own.
    :meth:`send` uses a *connected* raw socket per peer (``send`` instead of ``sendto``:
    no address conversion per packet, about 0.7 µs less per packet); these are never
    read, their receive buffer is the kernel's minimum (a connected raw socket would
    receive copies of that peer's ESP: they overflow and are dropped there, the
    unconnected socket still gets every packet).  Up to :data:`RAW_PEERS_MAX` peers;
    beyond that, and when connecting fails, one ``sendto`` per packet.
    """

    __slots__ = ("_tx", "family", "fd", "sock")

    def __init__(self, family: socket.AddressFamily) -> None:
        self.family = family
        sock = socket.socket(family, socket.SOCK_RAW, IPPROTO_ESP)
        sock.setblocking(False)
        _set_bufs(sock)
        self.sock = sock
        self.fd = sock.fileno()
        self._tx: dict[str, socket.socket | None] = {}

    def _connected(self, remote_ip: str) -> socket.socket | None:
        if remote_ip in self._tx:
            return self._tx[remote_ip]
        tx = None
        if len(self._tx) < RAW_PEERS_MAX:
            try:
                tx = socket.socket(self.family, socket.SOCK_RAW, IPPROTO_ESP)
            except OSError as e:
                log.debug("raw ESP send socket for %s: %s", remote_ip, e)
            else:
                try:
                    tx.setblocking(False)
                    _set_bufs(tx)
                    tx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RAW_TX_RCVBUF)
                    tx.connect((remote_ip, 0))
                except OSError as e:
                    log.debug("raw ESP send socket for %s: %s", remote_ip, e)
                    tx.close()
                    tx = None
            self._tx[remote_ip] = tx  # None: use sendto for this peer
        return tx

    def send(self, data: bytes, remote_ip: str) -> bool:
        """Send one ESP packet to ``remote_ip`` on its connected socket (else sendto)."""
        tx = self._tx.get(remote_ip) or self._connected(remote_ip)
        if tx is None:
            return self.sendto(data, remote_ip)
        try:
            tx.send(data)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as e:
            log.debug("raw ESP send to %s failed: %s", remote_ip, e)
            return False
        return True

    def forget(self, remote_ip: str) -> None:
        """Close the connected send socket of a peer we no longer have SAs with."""
        tx = self._tx.pop(remote_ip, None)
        if tx is not None:
            tx.close()

    def recv(self) -> tuple[bytes, str] | None:
        """One ESP packet (from the SPI on) and its source address; None when drained."""
        try:
            data, src = self.sock.recvfrom(65535)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as e:
            log.debug("raw ESP receive: %s", e)
            return None
        if self.family == socket.AF_INET:
            ihl = (data[0] & 0x0F) * 4 if data else 0
            data = data[ihl:]
        return data, src[0]

    def sendto(self, data: bytes, remote_ip: str) -> bool:
        try:
            self.sock.sendto(data, (remote_ip, 0))
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as e:
            log.debug("raw ESP send to %s failed: %s", remote_ip, e)
            return False
        return True

    def close(self) -> None:
        for tx in self._tx.values():
            if tx is not None:
                tx.close()
        self._tx.clear()
        self.sock.close()
