"""EAP-RADIUS: the gateway relays a client's EAP conversation to RADIUS servers (RFC 3579).

The IKE core runs the EAP rounds of IKE_AUTH (RFC 7296 §2.16); for ``remote.auth =
"eap-radius"`` it hands every EAP Response to the daemon (an ``EapBackendRequest``
event), and the daemon gives it to :meth:`RadiusBackend.submit`.  The backend sends
it in an Access-Request and, when the answer comes, calls ``reply(ike_id,
BackendReply)``: CHALLENGE with the next EAP Request, ACCEPT with the EAP-Success
and the MSK from the MS-MPPE keys, REJECT, or UNREACHABLE when no server answered.
The runtime forwards that to ``IkeCore.eap_backend_reply``.

How it behaves (what strongSwan's eap-radius does, unless said otherwise):

* asyncio, never blocking the daemon's loop: non-blocking connected UDP sockets read
  with ``loop.add_reader``, one ``call_later`` timer per outstanding request;
* per IKE SA a conversation keeps the RADIUS State (RFC 2865 §5.24) of the last
  Access-Challenge and echoes it, until Accept/Reject or :meth:`RadiusBackend.forget`;
  once a server has challenged, the conversation stays with that server (the State
  means nothing to another one);
* a request is retransmitted unchanged (same Identifier and Request Authenticator)
  ``retries`` times, ``timeout`` seconds apart, growing by ``backoff`` (RFC 5080
  §2.2.1); a conversation's first request then goes to the next server (by
  preference; servers that did not answer recently come last), and when none is
  left the verdict is UNREACHABLE with the reason;
* answers are matched by socket and Identifier and must authenticate (Response
  Authenticator, RFC 2865 §3; Message-Authenticator, RFC 3579 §3.2); forged,
  garbled or unexpected ones are dropped and logged, rate-limited;
* every socket has 256 Identifiers; a server gets up to ``sockets`` sockets, and
  requests beyond those wait in a bounded queue for a free Identifier.

Accounting (RFC 2866) is :mod:`pyipsec.daemon.radius_accounting`'s, told of every
Access-Accept through ``accepted``.  Not done: Dynamic Authorization (CoA/Disconnect, RFC 5176),
Status-Server probes (RFC 5997), RADIUS over TLS/TCP, host names for servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..config.model import EapRadiusConfig, RadiusServerConfig
from ..eap.base import BackendReply, BackendVerdict
from ..recovery import RateLimiter
from .radius_codec import (
    CODE_NAMES,
    MAX_PACKET,
    AccessRequestAttributes,
    AnswerDropped,
    RadiusAnswer,
    RadiusRequest,
    interpret,
)

__all__ = [
    "EapRelayRequest",
    "RadiusBackend",
    "RadiusStats",
    "RelayRequest",
    "ReplyCallback",
]

log = logging.getLogger("pyipsec.ike.radius")

Address = tuple[str, int]
#: ``reply(ike_id, BackendReply)``: the runtime passes the core's eap_backend_reply
ReplyCallback = Callable[[int, BackendReply], None]
#: ``accepted(ike_id, identity, answer)``: an Access-Accept for the IKE SA's EAP
#: identity (its Class and Acct-Interim-Interval are for the accounting, RFC 2866)
AcceptCallback = Callable[[int, bytes, RadiusAnswer], None]

#: RADIUS Identifiers per socket (one octet, RFC 2865 §3)
IDS_PER_SOCKET = 256
#: requests waiting for a free Identifier, in all, before new ones fail at once
MAX_WAITING = 4096
#: datagrams read per readable event before giving the loop back
READ_BATCH = 64
#: SO_RCVBUF asked for each socket: answers to all 256 Identifiers at once
RECV_BUFFER = IDS_PER_SOCKET * MAX_PACKET


class EapRelayRequest(Protocol):
    """What :meth:`RadiusBackend.submit` needs (the core's ``EapBackendRequest``):
    the IKE SA, its connection, the peer's EAP identity, the EAP Response to relay
    and the client's address.  ``local`` (our address of the IKE SA) becomes
    NAS-IP-Address and Called-Station-Id; when None the source address of the RADIUS
    socket is used."""

    @property
    def ike_id(self) -> int: ...

    @property
    def conn(self) -> str: ...

    @property
    def identity(self) -> bytes: ...

    @property
    def eap(self) -> bytes: ...

    @property
    def remote(self) -> Address: ...

    @property
    def local(self) -> Address | None: ...


@dataclass(frozen=True, slots=True)
class RelayRequest:
    """A plain :class:`EapRelayRequest` (for callers without the core's event)."""

    ike_id: int
    identity: bytes
    eap: bytes
    remote: Address
    conn: str = ""
    local: Address | None = None


@dataclass
class RadiusStats:
    """Counters of the RADIUS client (``RadiusBackend.status()``)."""

    requests: int = 0  # Access-Requests sent (first transmissions)
    retransmits: int = 0
    server_timeouts: int = 0  # a server gave no answer to a request
    challenges: int = 0
    accepts: int = 0
    rejects: int = 0
    unreachable: int = 0
    forged: int = 0  # answers that did not authenticate
    malformed: int = 0  # undecodable or unexpected answers
    unmatched: int = 0  # answers to no outstanding request (late duplicates, strays)


class _Socket:
    """One connected UDP socket to a server: its own space of 256 Identifiers."""

    __slots__ = ("nas_address", "next_id", "pending", "server", "sock")

    def __init__(self, server: _Server, sock: socket.socket, first_id: int) -> None:
        self.server = server
        self.sock = sock
        self.pending: dict[int, _Pending] = {}
        self.next_id = first_id & 0xFF
        local = sock.getsockname()[0]
        self.nas_address = "" if ipaddress.ip_address(local).is_unspecified else str(local)

    def take_id(self) -> int | None:
        """A free Identifier, round-robin (a just-freed one is reused last)."""
        if len(self.pending) >= IDS_PER_SOCKET:
            return None
        for k in range(IDS_PER_SOCKET):
            ident = (self.next_id + k) & 0xFF
            if ident not in self.pending:
                self.next_id = (ident + 1) & 0xFF
                return ident
        return None  # pragma: no cover - excluded by the length check


@dataclass(eq=False)
class _Server:
    cfg: RadiusServerConfig
    index: int
    sockets: list[_Socket] = field(default_factory=list)
    waiting: deque[_Pending] = field(default_factory=deque)
    reachable: bool = True

    @property
    def label(self) -> str:
        host = f"[{self.cfg.address}]" if ":" in self.cfg.address else self.cfg.address
        return f"{self.cfg.name} ({host}:{self.cfg.auth_port})"


@dataclass(eq=False)
class _Conversation:
    """The RADIUS side of one IKE SA's EAP conversation."""

    ike_id: int
    conn: str
    identity: bytes
    remote: Address
    local: Address | None
    state: bytes | None = field(default=None, repr=False)
    server: _Server | None = None  # the server that challenged (holds the State)
    pending: _Pending | None = None


@dataclass(eq=False)
class _Pending:
    """One EAP packet on its way: to a server, then maybe the next ones."""

    conv: _Conversation
    eap: bytes
    candidates: list[_Server]
    tried: list[str] = field(default_factory=list)
    server: _Server | None = None
    sock: _Socket | None = None
    request: RadiusRequest | None = None
    sends: int = 0
    timer: asyncio.TimerHandle | None = None


def station_id(addr: Address, with_port: bool) -> str:
    """Called-/Calling-Station-Id: ``192.0.2.1[4500]`` (strongSwan's ``%#H``) or the
    address alone."""
    return f"{addr[0]}[{addr[1]}]" if with_port else addr[0]


class RadiusBackend:
    """The EAP-RADIUS relay (see the module docstring).  Build it inside the running
    loop (or pass ``loop``); :meth:`close` releases its sockets and timers."""

    def __init__(
        self,
        config: EapRadiusConfig,
        reply: ReplyCallback,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        random_id: Callable[[], int] | None = None,
        accepted: AcceptCallback | None = None,
    ) -> None:
        self.config = config
        self._reply = reply
        self._accepted = accepted
        self._loop = loop or asyncio.get_running_loop()
        self._random_id = random_id or (lambda: secrets.randbelow(IDS_PER_SOCKET))
        self._servers = [_Server(s, i) for i, s in enumerate(config.servers)]
        self._convs: dict[int, _Conversation] = {}
        self._deliveries: dict[int, asyncio.Handle] = {}
        self._waiting = 0
        self._drop_log = RateLimiter(rate=1.0, burst=10)
        self.stats = RadiusStats()

    # ------------------------------------------------------------------ interface

    def submit(self, request: EapRelayRequest) -> None:
        """Relay one EAP Response of an IKE SA; ``reply`` is called later (never
        from inside this call)."""
        conv = self._convs.get(request.ike_id)
        local = request.local
        if conv is None:
            conv = _Conversation(
                request.ike_id, request.conn, request.identity, request.remote, local
            )
            self._convs[request.ike_id] = conv
        else:
            conv.remote = request.remote
            conv.identity = request.identity or conv.identity
            conv.local = local or conv.local
        if conv.pending is not None:
            log.debug("IKE SA %s #%d: a new EAP packet replaces the one still pending",
                      conv.conn, conv.ike_id)  # fmt: skip
            self._abandon(conv.pending)
        servers = [conv.server] if conv.server is not None else self._ordered_servers()
        p = _Pending(conv, request.eap, candidates=servers[1:])
        conv.pending = p
        if not servers:
            why = "no RADIUS server configured ([eap_radius])"
            self._finish(p, BackendReply(BackendVerdict.UNREACHABLE, reason=why))
            return
        self._start_on(p, servers[0])

    def forget(self, ike_id: int) -> None:
        """The IKE SA is gone: drop its State and any request in flight (no reply)."""
        handle = self._deliveries.pop(ike_id, None)
        if handle is not None:
            handle.cancel()
        conv = self._convs.pop(ike_id, None)
        if conv is not None and conv.pending is not None:
            self._abandon(conv.pending)
            conv.pending = None

    def close(self) -> None:
        """Forget every conversation and close the sockets."""
        for ike_id in list(self._convs) + list(self._deliveries):
            self.forget(ike_id)
        for server in self._servers:
            for s in server.sockets:
                self._loop.remove_reader(s.sock.fileno())
                s.sock.close()
            server.sockets.clear()

    def status(self) -> dict[str, Any]:
        """Servers, conversations and counters (for status output and tests)."""
        return {
            "servers": [
                {
                    "name": s.cfg.name,
                    "address": s.cfg.address,
                    "port": s.cfg.auth_port,
                    "reachable": s.reachable,
                    "sockets": len(s.sockets),
                    "outstanding": sum(len(k.pending) for k in s.sockets),
                    "waiting": len(s.waiting),
                }
                for s in self._servers
            ],
            "conversations": len(self._convs),
            "stats": dict(vars(self.stats)),
        }

    # ------------------------------------------------------------------ sending

    def _ordered_servers(self) -> list[_Server]:
        """Reachable servers first, then by preference, then in configuration order."""
        return sorted(
            self._servers, key=lambda s: (not s.reachable, -s.cfg.preference, s.index)
        )

    def _start_on(self, p: _Pending, server: _Server) -> None:
        """Send ``p`` to ``server`` (a fresh Identifier and Request Authenticator)."""
        p.server = server
        try:
            slot = self._slot(server)
        except OSError as e:
            self._server_failed(p, f"cannot open a socket: {e.strerror or e}")
            return
        if slot is None:
            if self._waiting >= MAX_WAITING:
                why = f"too many requests waiting for RADIUS server {server.label}"
                self._finish(p, BackendReply(BackendVerdict.UNREACHABLE, reason=why))
                return
            server.waiting.append(p)
            self._waiting += 1
            return
        sock, ident = slot
        try:
            p.request = RadiusRequest(ident, server.cfg.secret, p.eap, self._attributes(p, sock))
        except ValueError as e:
            self._finish(p, BackendReply(BackendVerdict.REJECT, reason=str(e)))
            return
        p.sock = sock
        sock.pending[ident] = p
        p.sends = 0
        self.stats.requests += 1
        self._transmit(p)

    def _slot(self, server: _Server) -> tuple[_Socket, int] | None:
        for s in server.sockets:
            ident = s.take_id()
            if ident is not None:
                return s, ident
        if len(server.sockets) < max(1, self.config.sockets):
            s = self._open(server)
            ident = s.take_id()
            assert ident is not None
            return s, ident
        return None

    def _open(self, server: _Server) -> _Socket:
        """A non-blocking UDP socket connected to the server (only its answers arrive)."""
        ip = ipaddress.ip_address(server.cfg.address)
        family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            with contextlib.suppress(OSError):  # room for a burst of answers (best effort)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER)
            sock.connect((str(ip), server.cfg.auth_port))
            s = _Socket(server, sock, self._random_id())
            self._loop.add_reader(sock.fileno(), self._readable, s)
        except BaseException:
            sock.close()
            raise
        server.sockets.append(s)
        log.debug("RADIUS server %s: socket %s", server.label, sock.getsockname())
        return s

    def _attributes(self, p: _Pending, sock: _Socket) -> AccessRequestAttributes:
        cfg, conv = self.config, p.conv
        with_port = cfg.station_id_with_port
        nas = conv.local[0] if conv.local is not None else sock.nas_address
        called = station_id(conv.local, with_port) if conv.local is not None else nas
        return AccessRequestAttributes(
            identity=conv.identity,
            nas_identifier=cfg.nas_identifier,
            nas_address=nas,
            nas_port=conv.ike_id,
            nas_port_id=conv.conn,
            called=called,
            calling=station_id(conv.remote, with_port),
            framed_mtu=cfg.framed_mtu,
            state=conv.state,
        )

    def _transmit(self, p: _Pending) -> None:
        """(Re)send ``p`` unchanged (RFC 5080 §2.2.1) and arm its timer."""
        assert p.sock is not None and p.request is not None
        try:
            p.sock.sock.send(p.request.raw)
        except OSError as e:  # a full buffer, an ICMP error: the timer retransmits
            log.debug("sending to RADIUS server %s failed: %s", p.sock.server.label, e)
        p.sends += 1
        if p.sends > 1:
            self.stats.retransmits += 1
        delay = self.config.timeout * self.config.backoff ** (p.sends - 1)
        p.timer = self._loop.call_later(delay, self._on_timeout, p)

    def _on_timeout(self, p: _Pending) -> None:
        p.timer = None
        if p.sends <= self.config.retries:
            assert p.server is not None
            log.debug("IKE SA %s #%d: retransmitting to RADIUS server %s (try %d)",
                      p.conv.conn, p.conv.ike_id, p.server.label, p.sends + 1)  # fmt: skip
            self._transmit(p)
            return
        self._server_failed(p, f"no answer after {p.sends} tries")

    def _server_failed(self, p: _Pending, why: str) -> None:
        """The server did not answer ``p``: the next candidate, or UNREACHABLE."""
        server = p.server
        assert server is not None
        self._release(p)
        server.reachable = False
        self.stats.server_timeouts += 1
        p.tried.append(server.cfg.name)
        log.warning("IKE SA %s #%d: RADIUS server %s: %s",
                    p.conv.conn, p.conv.ike_id, server.label, why)  # fmt: skip
        if p.candidates:
            self._start_on(p, p.candidates.pop(0))
            return
        names = ", ".join(p.tried)
        why = f"RADIUS server{'s' if len(p.tried) > 1 else ''} {names} did not answer ({why})"
        self._finish(p, BackendReply(BackendVerdict.UNREACHABLE, reason=why))

    def _release(self, p: _Pending) -> None:
        """Stop ``p``'s timer and free its Identifier (a waiting request takes it)."""
        if p.timer is not None:
            p.timer.cancel()
            p.timer = None
        sock, p.sock = p.sock, None
        if sock is None or p.request is None:
            return
        if sock.pending.get(p.request.identifier) is p:
            del sock.pending[p.request.identifier]
        server = sock.server
        if server.waiting:
            nxt = server.waiting.popleft()
            self._waiting -= 1
            self._start_on(nxt, server)

    def _abandon(self, p: _Pending) -> None:
        """Drop ``p`` without a reply (superseded, or its IKE SA is gone)."""
        server = p.server
        if server is not None and p in server.waiting:
            server.waiting.remove(p)
            self._waiting -= 1
        self._release(p)

    def _finish(self, p: _Pending, reply: BackendReply) -> None:
        """``p`` is answered: free it, end the conversation unless challenged, and
        deliver ``reply`` from the loop (never re-entering the caller)."""
        self._release(p)
        conv = p.conv
        if conv.pending is p:
            conv.pending = None
        if reply.verdict is not BackendVerdict.CHALLENGE and self._convs.get(conv.ike_id) is conv:
            del self._convs[conv.ike_id]
        counter = {
            BackendVerdict.CHALLENGE: "challenges",
            BackendVerdict.ACCEPT: "accepts",
            BackendVerdict.REJECT: "rejects",
            BackendVerdict.UNREACHABLE: "unreachable",
        }[reply.verdict]
        setattr(self.stats, counter, getattr(self.stats, counter) + 1)
        old = self._deliveries.pop(conv.ike_id, None)
        if old is not None:  # pragma: no cover - the core waits for each reply
            old.cancel()
        self._deliveries[conv.ike_id] = self._loop.call_soon(self._deliver, conv.ike_id, reply)

    def _deliver(self, ike_id: int, reply: BackendReply) -> None:
        self._deliveries.pop(ike_id, None)
        try:
            self._reply(ike_id, reply)
        except Exception:
            log.exception("IKE SA #%d: handling the RADIUS verdict failed", ike_id)

    # ------------------------------------------------------------------ receiving

    def _readable(self, s: _Socket) -> None:
        for _ in range(READ_BATCH):
            try:
                data = s.sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # ECONNREFUSED from an ICMP error: the timers decide
                log.debug("RADIUS server %s: %s", s.server.label, e)
                continue
            self._on_datagram(s, data)

    def _on_datagram(self, s: _Socket, data: bytes) -> None:
        p = s.pending.get(data[1]) if len(data) >= 20 else None
        if p is None or p.request is None:
            self.stats.unmatched += 1
            self._dropped(s, data, "no outstanding request with that Identifier", logging.DEBUG)
            return
        try:
            answer = p.request.check_answer(data)
        except AnswerDropped as e:
            if e.forged:
                self.stats.forged += 1
            else:
                self.stats.malformed += 1
            self._dropped(s, data, str(e), logging.WARNING)
            return
        s.server.reachable = True
        reply = interpret(answer, p.request)
        conv = p.conv
        if reply.verdict is BackendVerdict.CHALLENGE:
            conv.state, conv.server = answer.state, s.server
        elif reply.verdict is BackendVerdict.ACCEPT and self._accepted is not None:
            self._accepted(conv.ike_id, conv.identity, answer)
        log.info("IKE SA %s #%d: %s from RADIUS server %s%s",
                 conv.conn, conv.ike_id, CODE_NAMES.get(answer.code, str(answer.code)),
                 s.server.label, f": {reply.reason}" if reply.reason else "")  # fmt: skip
        self._finish(p, reply)

    def _dropped(self, s: _Socket, data: bytes, why: str, level: int) -> None:
        """Log a discarded answer (RFC 2865 §3: silently discarded), rate-limited."""
        if not self._drop_log.allow(self._loop.time()):
            return
        n = self._drop_log.take_suppressed()
        ident = data[1] if len(data) > 1 else -1
        log.log(level, "dropped a %d-octet answer (Identifier %d) from RADIUS server %s: %s%s",
                len(data), ident, s.server.label, why,
                f" ({n} similar messages suppressed)" if n else "")  # fmt: skip
