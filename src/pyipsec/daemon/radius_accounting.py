"""RADIUS accounting (RFC 2866) of the IKE SAs that EAP-RADIUS authenticated.

strongSwan's eap-radius plugin does this with ``accounting = yes``; so does pyipsec with
``[eap_radius] accounting = true``.  For an IKE SA whose peer a RADIUS server accepted
(:meth:`RadiusAccounting.accepted`, told by the
:class:`~pyipsec.daemon.eap_radius.RadiusBackend`):

* **Start** once it is established (after the IKE_AUTH exchange, with the virtual IP it
  leased, RFC 7296 §2.19); with ``accounting_requires_vip`` only if it leased one;
* **Interim-Update** every ``accounting_interval`` seconds, or every Acct-Interim-Interval
  of the Access-Accept (RFC 2869 §5.16: the server's value wins);
* **Stop** when it is deleted, with what its Child SAs carried (Acct-Input-/Output-Octets
  and -Packets, with -Gigawords beyond 2^32, RFC 2869 §5.1/§5.2; input is what the
  client sent) and Acct-Terminate-Cause (RFC 2866 §5.10): Lost-Service after DPD declared
  the peer dead, Admin-Reset when the daemon was told to end it, Admin-Reboot when the
  daemon stops, Session-Timeout when its lifetime ran out, else User-Request.

Every message carries Acct-Session-Id (unique: the daemon's start time and the IKE SA's
number), the Class values of the Access-Accept (RFC 2865 §5.25), User-Name (the EAP
identity), NAS-Identifier, NAS-IP-Address, NAS-Port (the IKE SA's number), NAS-Port-Id
(the connection), NAS-Port-Type Virtual, Service-Type Framed, Called-/Calling-Station-Id,
Framed-IP(v6)-Address and Event-Timestamp (RFC 2869 §5.3).  An IKE SA rekey (§2.18) keeps
the session (its Child SAs move along); usage of rekeyed and deleted Child SAs counts.

Sending: pyrad's client, from one worker thread (so a session's messages leave in
order and the asyncio loop never waits): each message to the servers by preference, each
server ``1 + retries`` times ``timeout`` apart (pyrad raises Acct-Delay-Time on each
retransmission, RFC 2866 §5.2), a server that did not answer tried last for a minute.
When no server acknowledges a Start and ``accounting_close_on_timeout`` is set, the IKE
SA is deleted (``close``): it would be a session nobody accounts for.  At most
:data:`MAX_QUEUED` messages wait; beyond that Interim-Updates are dropped (logged,
rate-limited), never a Start or Stop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import ipaddress
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pyrad.client
import pyrad.packet

from ..config.model import EapRadiusConfig, RadiusServerConfig
from ..recovery import RateLimiter
from .eap_radius import station_id
from .radius_codec import MAX_VALUE, RadiusAnswer, dictionary

__all__ = ["MAX_QUEUED", "AcctStatus", "RadiusAccounting", "TerminateCause", "Usage"]

log = logging.getLogger("pyipsec.ike.radius")

Address = tuple[str, int]

#: accounting messages waiting to be sent, at most, before Interim-Updates are dropped
MAX_QUEUED = 10_000
#: seconds a server that did not answer is asked last
UNREACHABLE_FOR = 60.0
NAS_PORT_TYPE_VIRTUAL = 5  # RFC 2865 §5.41
SERVICE_TYPE_FRAMED = 2  # RFC 2865 §5.6
ACCOUNTING_RESPONSE = 5  # RFC 2866 §4.2


class AcctStatus(enum.IntEnum):
    """Acct-Status-Type (RFC 2866 §5.1)."""

    START = 1
    STOP = 2
    INTERIM_UPDATE = 3


class TerminateCause(enum.IntEnum):
    """Acct-Terminate-Cause (RFC 2866 §5.10), the ones an IKE SA can end with."""

    USER_REQUEST = 1
    LOST_SERVICE = 3
    SESSION_TIMEOUT = 5
    ADMIN_RESET = 6
    ADMIN_REBOOT = 7


#: the core's reasons for deleting an IKE SA (IkeSaDeleted.reason, its own words) and
#: the Acct-Terminate-Cause they mean; anything else (the peer's Delete) is User-Request.
#: A dead peer comes as its own event (PeerDead: :meth:`RadiusAccounting.cause`).
_CAUSES = (
    ("lifetime expired", TerminateCause.SESSION_TIMEOUT),  # hard lifetime (§2.8)
    ("terminated", TerminateCause.ADMIN_RESET),  # pyipsec down, swanctl --terminate
    ("shutdown", TerminateCause.ADMIN_REBOOT),  # the daemon stops
)


@dataclass(frozen=True, slots=True)
class Usage:
    """What Child SAs carried: octets and packets in (from the client) and out."""

    bytes_in: int = 0
    bytes_out: int = 0
    packets_in: int = 0
    packets_out: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.bytes_in + other.bytes_in,
            self.bytes_out + other.bytes_out,
            self.packets_in + other.packets_in,
            self.packets_out + other.packets_out,
        )


@dataclass(eq=False)
class _Session:
    """One accounted IKE SA (it keeps its session through IKE SA rekeys)."""

    ike_id: int
    session_id: str
    user: bytes
    classes: tuple[bytes, ...]
    interval: float
    conn: str = ""
    local: Address | None = None
    remote: Address | None = None
    vips: tuple[str, ...] = ()
    started: float = 0.0  # monotonic, when established
    start_sent: bool = False
    closed: Usage = field(default_factory=Usage)  # of Child SAs no longer installed
    cause: TerminateCause = TerminateCause.USER_REQUEST
    timer: asyncio.TimerHandle | None = None


@dataclass(frozen=True, slots=True)
class _Message:
    """One Accounting-Request to send (built on the loop, sent by the worker)."""

    status: AcctStatus
    session_id: str
    ike_id: int
    attributes: tuple[tuple[str, Any], ...]
    classes: tuple[bytes, ...]


class RadiusAccounting:
    """The accounting client of one daemon (see the module docstring).

    ``usage(ike_id)`` gives what the IKE SA's installed Child SAs carried so far;
    ``close(ike_id, reason)`` deletes an IKE SA (``accounting_close_on_timeout``);
    ``send`` replaces the transport (tests): it gets a message's server list and packet
    fields and returns None when a server acknowledged it, else why not.
    """

    def __init__(
        self,
        config: EapRadiusConfig,
        *,
        usage: Callable[[int], Usage],
        close: Callable[[int, str], None],
        loop: asyncio.AbstractEventLoop | None = None,
        send: Callable[[list[RadiusServerConfig], _Message], str | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._usage = usage
        self._close = close
        self._loop = loop or asyncio.get_running_loop()
        self._send = send or self._send_with_pyrad
        self._clock = clock
        self._wall = wall
        self._prefix = f"{int(wall()) & 0xFFFFFFFF:08X}"
        self._accepted: dict[int, tuple[bytes, tuple[bytes, ...], int | None]] = {}
        self._sessions: dict[int, _Session] = {}
        self._vips: dict[int, tuple[str, ...]] = {}
        self._unreachable: dict[str, float] = {}  # server name -> until (monotonic)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="radius-acct"
        )
        self._pending: set[concurrent.futures.Future[str | None]] = set()
        self._drop_log = RateLimiter(rate=1.0, burst=5)
        self.sent = {s: 0 for s in AcctStatus}  # acknowledged, by status
        self.failed = {s: 0 for s in AcctStatus}  # no server acknowledged
        self.dropped = 0  # Interim-Updates dropped (queue full)

    # ------------------------------------------------------------ what happens

    def accepted(self, ike_id: int, identity: bytes, answer: RadiusAnswer) -> None:
        """An Access-Accept for this IKE SA's peer (EAP identity ``identity``)."""
        self._accepted[ike_id] = (identity, answer.classes, answer.interim_interval)

    def virtual_ips(self, ike_id: int, remote: Iterable[str]) -> None:
        """The virtual IPs leased to the peer of this IKE SA (RFC 7296 §2.19)."""
        vips = tuple(remote)
        s = self._sessions.get(ike_id)
        if s is not None:
            s.vips = vips
        else:
            self._vips[ike_id] = vips

    def established(self, ike_id: int, conn: str, local: Address, remote: Address) -> None:
        """The IKE SA is up: Start, once the events of this round (its virtual IP) are
        in -- the caller's loop runs this after them."""
        acc = self._accepted.pop(ike_id, None)
        if acc is None:
            return  # not authenticated by RADIUS: not ours to account for
        identity, classes, interim = acc
        interval = float(interim) if interim else self.config.accounting_interval
        if 0 < interval < 60:
            interval = 60.0  # RFC 2869 §5.16: "SHOULD NOT be smaller than 60"
        s = _Session(ike_id, f"{self._prefix}-{ike_id:08X}", identity, classes, interval,
                     conn, local, remote, self._vips.pop(ike_id, ()), self._clock())  # fmt: skip
        self._sessions[ike_id] = s
        self._loop.call_soon(self._start, s)

    def rekeyed(self, old_id: int, new_id: int) -> None:
        """IKE SA ``old_id`` was rekeyed (§2.18): the session goes on under ``new_id``
        (its Child SAs moved there; NAS-Port follows the new number)."""
        s = self._sessions.pop(old_id, None)
        if s is None:
            return
        s.ike_id = new_id
        self._sessions[new_id] = s

    def child_gone(self, ike_id: int, usage: Usage) -> None:
        """A Child SA of the IKE SA was removed (rekeyed, deleted): its last counters."""
        s = self._sessions.get(ike_id)
        if s is not None:
            s.closed = s.closed + usage

    def cause(self, ike_id: int, cause: TerminateCause) -> None:
        """Why the IKE SA is about to end (the first reason given is kept)."""
        s = self._sessions.get(ike_id)
        if s is not None and s.cause is TerminateCause.USER_REQUEST:
            s.cause = cause

    def deleted(self, ike_id: int, reason: str = "") -> None:
        """The IKE SA is gone: Stop (when a Start went out)."""
        self._accepted.pop(ike_id, None)
        self._vips.pop(ike_id, None)
        s = self._sessions.pop(ike_id, None)
        if s is None:
            return
        if s.timer is not None:
            s.timer.cancel()
            s.timer = None
        if not s.start_sent:
            return  # nothing was started (accounting_requires_vip), nothing to stop
        for words, cause in _CAUSES:
            if words in reason:
                if s.cause is TerminateCause.USER_REQUEST:
                    s.cause = cause
                break
        self._queue(self._message(s, AcctStatus.STOP))

    def close(self, timeout: float = 5.0) -> None:
        """The daemon stops: Stop (Admin-Reboot) for every session still open, up to
        ``timeout`` seconds for what is queued to be sent, and the rest dropped."""
        for ike_id in list(self._sessions):
            self.cause(ike_id, TerminateCause.ADMIN_REBOOT)
            self.deleted(ike_id)
        pending = set(self._pending)
        if pending:
            concurrent.futures.wait(pending, timeout=timeout)
        # what is still queued is dropped: the process would wait for it at exit (an
        # unreachable server costs (1 + retries) * timeout per message and server)
        self._executor.shutdown(wait=False, cancel_futures=True)

    def status(self) -> dict[str, Any]:
        """Sessions and counters (status output, tests)."""
        return {
            "sessions": len(self._sessions),
            "queued": len(self._pending),
            "sent": {s.name.lower(): n for s, n in self.sent.items()},
            "failed": {s.name.lower(): n for s, n in self.failed.items()},
            "dropped": self.dropped,
        }

    # ------------------------------------------------------------ messages

    def _start(self, s: _Session) -> None:
        if self._sessions.get(s.ike_id) is not s:
            return  # gone in the meantime
        if self.config.accounting_requires_vip and not s.vips:
            log.debug("IKE SA %s #%d: no virtual IP, not accounted", s.conn, s.ike_id)
            return
        s.start_sent = True
        self._queue(self._message(s, AcctStatus.START))
        self._schedule_interim(s)

    def _schedule_interim(self, s: _Session) -> None:
        if s.interval > 0:
            s.timer = self._loop.call_later(s.interval, self._interim, s)

    def _interim(self, s: _Session) -> None:
        s.timer = None
        if self._sessions.get(s.ike_id) is not s:
            return
        if len(self._pending) >= MAX_QUEUED:
            self.dropped += 1
            if self._drop_log.allow(self._clock()):
                log.warning("RADIUS accounting: %d messages queued, Interim-Update of "
                            "IKE SA %s #%d dropped", len(self._pending), s.conn,
                            s.ike_id)  # fmt: skip
        else:
            self._queue(self._message(s, AcctStatus.INTERIM_UPDATE))
        self._schedule_interim(s)

    def _message(self, s: _Session, status: AcctStatus) -> _Message:
        cfg = self.config
        attrs: list[tuple[str, Any]] = [
            ("Acct-Status-Type", int(status)),
            ("Acct-Session-Id", s.session_id),
            ("NAS-Identifier", cfg.nas_identifier.encode()[:MAX_VALUE]),
            ("NAS-Port-Type", NAS_PORT_TYPE_VIRTUAL),
            ("Service-Type", SERVICE_TYPE_FRAMED),
            ("NAS-Port", s.ike_id & 0xFFFFFFFF),
            ("NAS-Port-Id", s.conn.encode()[:MAX_VALUE]),
            ("Event-Timestamp", int(self._wall())),
        ]
        if s.user:
            attrs.append(("User-Name", s.user[:MAX_VALUE]))
        if s.local is not None:
            ip = ipaddress.ip_address(s.local[0])
            if not ip.is_unspecified:
                attrs.append(("NAS-IP-Address" if ip.version == 4 else "NAS-IPv6-Address",
                              str(ip)))  # fmt: skip
            attrs.append(("Called-Station-Id",
                          station_id(s.local, cfg.station_id_with_port).encode()))  # fmt: skip
        if s.remote is not None:
            attrs.append(("Calling-Station-Id",
                          station_id(s.remote, cfg.station_id_with_port).encode()))  # fmt: skip
        for vip in s.vips:
            ip = ipaddress.ip_address(vip)
            attrs.append(("Framed-IP-Address" if ip.version == 4 else "Framed-IPv6-Address",
                          str(ip)))  # fmt: skip
        if status is not AcctStatus.START:
            u = s.closed + self._usage(s.ike_id)
            attrs += [
                ("Acct-Input-Octets", u.bytes_in & 0xFFFFFFFF),
                ("Acct-Output-Octets", u.bytes_out & 0xFFFFFFFF),
                ("Acct-Input-Packets", u.packets_in & 0xFFFFFFFF),
                ("Acct-Output-Packets", u.packets_out & 0xFFFFFFFF),
                ("Acct-Session-Time", max(0, int(self._clock() - s.started))),
            ]
            if u.bytes_in >> 32:
                attrs.append(("Acct-Input-Gigawords", (u.bytes_in >> 32) & 0xFFFFFFFF))
            if u.bytes_out >> 32:
                attrs.append(("Acct-Output-Gigawords", (u.bytes_out >> 32) & 0xFFFFFFFF))
        if status is AcctStatus.STOP:
            attrs.append(("Acct-Terminate-Cause", int(s.cause)))
        return _Message(status, s.session_id, s.ike_id, tuple(attrs), s.classes)

    # ------------------------------------------------------------ sending

    def _servers(self) -> list[RadiusServerConfig]:
        """By preference; those that did not answer lately last."""
        now = self._clock()
        return sorted(self.config.servers, key=lambda c: (
            self._unreachable.get(c.name, 0.0) > now, -c.preference))  # fmt: skip

    def _queue(self, msg: _Message) -> None:
        try:
            future = self._executor.submit(self._send, self._servers(), msg)
        except RuntimeError:  # shut down: the daemon is stopping
            log.warning("RADIUS accounting %s of session %s not sent: stopping",
                        msg.status.name, msg.session_id)  # fmt: skip
            return
        self._pending.add(future)
        future.add_done_callback(lambda f: self._done(msg, f))

    def _done(self, msg: _Message, future: concurrent.futures.Future[str | None]) -> None:
        """In the worker thread: hand the outcome to the loop."""
        try:
            self._loop.call_soon_threadsafe(self._sent, msg, future)
        except RuntimeError:  # the loop is closed (the daemon stopped)
            self._pending.discard(future)

    def _sent(self, msg: _Message, future: concurrent.futures.Future[str | None]) -> None:
        self._pending.discard(future)
        if future.cancelled():
            return
        exc = future.exception()
        why = f"{type(exc).__name__}: {exc}" if exc is not None else future.result()
        if why is None:
            self.sent[msg.status] += 1
            log.debug("RADIUS accounting %s of session %s acknowledged",
                      msg.status.name, msg.session_id)  # fmt: skip
            return
        self.failed[msg.status] += 1
        log.warning("RADIUS accounting %s of session %s (IKE SA #%d) failed: %s",
                    msg.status.name, msg.session_id, msg.ike_id, why)  # fmt: skip
        if msg.status is AcctStatus.START and self.config.accounting_close_on_timeout:
            s = self._sessions.get(msg.ike_id)
            if s is not None and s.session_id == msg.session_id:
                self._close(msg.ike_id, "RADIUS accounting Start not acknowledged")

    def _send_with_pyrad(self, servers: list[RadiusServerConfig], msg: _Message) -> str | None:
        """In the worker thread: the message to one server after the other."""
        tried = []
        for server in servers:
            why = self._send_to(server, msg)
            if why is None:
                self._unreachable.pop(server.name, None)
                return None
            self._unreachable[server.name] = self._clock() + UNREACHABLE_FOR
            tried.append(f"{server.name}: {why}")
        return "; ".join(tried) or "no RADIUS server configured"

    def _send_to(self, server: RadiusServerConfig, msg: _Message) -> str | None:
        client = pyrad.client.Client(
            server=server.address, acctport=server.acct_port, secret=server.secret,
            dict=dictionary(), retries=self.config.retries + 1, timeout=self.config.timeout,
        )  # fmt: skip
        try:
            pkt = client.CreateAcctPacket()
            for name, value in msg.attributes:
                pkt.AddAttribute(name, value)
            if msg.classes:
                pkt[25] = list(msg.classes)  # Class, echoed unmodified (RFC 2865 §5.25)
            reply = client.SendPacket(pkt)
        except pyrad.client.Timeout:
            return f"no answer after {self.config.retries + 1} tries"
        except OSError as e:
            return str(e.strerror or e)
        finally:
            sock = getattr(client, "_socket", None)
            if sock is not None:
                sock.close()
        if reply.code != ACCOUNTING_RESPONSE:
            return f"answered with code {reply.code}, not Accounting-Response"
        return None
