"""The asyncio runtime: drives the sans-I/O IKE core and runs the userspace ESP data plane.

One :class:`Daemon` owns

* UDP sockets on the IKE port (500) and the NAT-T port (4500) for every listen address,
  registered with ``loop.add_reader`` and drained in loops (no asyncio transports);
  datagrams on 4500 are classified with :func:`pyipsec.nat.detect_packet_type`
  (IKE behind the non-ESP marker, ESP-in-UDP, keepalives);
* raw IP protocol 50 sockets, opened only while a non-encapsulated Child SA exists;
* the :class:`~pyipsec.ikev2.manager.IkeManager`: datagrams in, datagrams and events
  out, one ``loop.call_at`` timer at ``mgr.next_timer()`` (``loop.time()`` is the
  monotonic clock the core sees as ``now``);
* the TUN device, with routes to the remote selectors of every configured child;
* the SPD (:class:`~pyipsec.daemon.spd.Spd`) and the inbound SPI table.

Outbound: TUN read -> SPD lookup by destination -> ESP protect -> UDP (or raw) send.
Inbound: UDP recv -> SPI table -> ESP unprotect -> inner packet checked against the
SA's selectors (RFC 4301 §5.2) -> TUN write.  Everything dropped is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import ipaddress
import logging
import math
import os
import signal
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .. import nat
from ..config.loader import ConfigError, ConfigIssue, load_config
from ..config.model import ConnectionConfig, DaemonConfig, DpdAction, Mode, StartAction
from ..esp.errors import EspDummyPacket, EspError, EspSequenceExhausted
from ..esp.sa import EspInbound, EspOutbound
from ..ikev2 import events as ev
from ..ikev2.constants import NAT_KEEPALIVE, NON_ESP_MARKER
from .control import ControlError, ControlServer
from .keylog import KeyLog, esp_sa_line, ikev2_line
from .route import SourceAddressCache
from .sockets import DRAIN_MAX, GSO_MAX_BYTES, GSO_MAX_SEGMENTS, RawEspSocket, UdpSocket
from .spd import CACHE_MAX, Flow, Spd, flow_in, flow_key, parse_flow
from .tun import TunDevice

__all__ = [
    "ChildState",
    "Daemon",
    "IkeManagerLike",
    "TrapPolicy",
    "load_daemon_config",
    "run_daemon",
    "unsupported_config",
]

log = logging.getLogger("pyipsec.net")
log_ike = logging.getLogger("pyipsec.ike")
log_child = logging.getLogger("pyipsec.child")
log_esp = logging.getLogger("pyipsec.esp")
log_cfg = logging.getLogger("pyipsec.cfg")

Address = tuple[str, int]
TRAFFIC_REPORT_INTERVAL = 1.0
TRAP_RETRY = 10.0
SHUTDOWN_GRACE = 2.0
_MISS: Any = object()  # flow-cache miss marker
_ESP_MIN = 8  # SPI + sequence number


class IkeManagerLike(Protocol):
    """The part of :class:`pyipsec.ikev2.manager.IkeManager` the daemon drives."""

    def receive_datagram(self, data: bytes, local: Address, remote: Address, now: float) -> Any: ...
    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address, Address]]: ...
    def next_timer(self) -> float | None: ...
    def handle_timer(self, now: float) -> Any: ...
    def next_event(self) -> Any: ...
    def initiate(
        self, conn_name: str, child_name: str | None, now: float, *, persistent: bool = ...
    ) -> Any: ...
    def status(self, now: float | None = None) -> list[dict[str, Any]]: ...


def default_manager_factory(config: DaemonConfig) -> IkeManagerLike:
    """Build the core's IkeManager (imported lazily: the daemon module loads without it)."""
    mod = importlib.import_module("pyipsec.ikev2.manager")
    local = tuple(a for a in config.listen_addrs if not ipaddress.ip_address(a).is_unspecified)
    mgr: IkeManagerLike = mod.IkeManager(
        config.connections,
        cookie_threshold=config.cookie_threshold,
        half_open_timeout=config.half_open_timeout,
        local_addresses=local,
        # our real source address towards a peer (NAT-D, RFC 7296 §2.23) when we
        # listen on a wildcard address: a cached connected-UDP route lookup
        local_address_for=SourceAddressCache(),
    )
    return mgr


@dataclass(frozen=True, slots=True)
class TrapPolicy:
    """A ``start_action = trap`` child: the first matching packet starts its IKE SA."""

    conn: str
    child: str


@dataclass(slots=True, eq=False)
class ChildState:
    """One installed Child SA pair in the data plane."""

    info: Any  # ev.ChildSaInfo
    inbound: EspInbound
    outbound: EspOutbound
    remote: Address
    local: Address
    encap: bool
    sock: UdpSocket | None
    raw: RawEspSocket | None
    local_ts: tuple[Any, ...]
    remote_ts: tuple[Any, ...]
    next_header_ok: frozenset[int]
    installed: float
    bytes_in: int = 0
    packets_in: int = 0
    bytes_out: int = 0
    packets_out: int = 0
    drops_selector: int = 0
    drops_send: int = 0
    drops_encap: int = 0  # arrived on the path the SA did not negotiate (RFC 3948 §3)
    last_in: float = 0.0
    reported: tuple[int, int, int, int] = (0, 0, 0, 0)
    reported_errors: tuple[int, int, int] = (0, 0, 0)  # auth, replay, format drops
    # an ESP source the core refused to move the SA to (RFC 7296 §2.23): not reported again
    declined_src: Address | None = None
    # flow_key()s of inbound packets already checked against the selectors (RFC 4301 §5.2)
    ok_flows: set[Any] = field(default_factory=set)

    def status(self, now: float) -> dict[str, Any]:
        i = self.info
        lt = getattr(i, "lifetimes", None)
        soft = getattr(lt, "soft", None)
        hard = getattr(lt, "hard", None)
        return {
            "conn": i.conn,
            "child": i.child,
            "ike_id": i.ike_id,
            "spi_in": f"{i.spi_in:08x}",
            "spi_out": f"{i.spi_out:08x}",
            "suite": i.suite,
            "mode": i.mode.value,
            "encap": self.encap,
            "local": f"{self.local[0]}[{self.local[1]}]",
            "remote": f"{self.remote[0]}[{self.remote[1]}]",
            "local_ts": [_sel_str(s) for s in self.local_ts],
            "remote_ts": [_sel_str(s) for s in self.remote_ts],
            "bytes_in": self.bytes_in,
            "packets_in": self.packets_in,
            "bytes_out": self.bytes_out,
            "packets_out": self.packets_out,
            "drops": {
                "selector": self.drops_selector,
                "send": self.drops_send,
                "encap": self.drops_encap,
                "replay": self.inbound.stats.replay_drops,
                "auth": self.inbound.stats.auth_failures,
                "format": self.inbound.stats.format_errors,
            },
            "age": round(now - self.installed, 1),
            "rekey_in": None if soft is None else round(soft - now, 1),
            "expires_in": None if hard is None else round(hard - now, 1),
        }


def _sel_str(s: Any) -> str:
    start, end = s.start, s.end
    try:
        nets = list(ipaddress.summarize_address_range(start, end))
        addr = str(nets[0]) if len(nets) == 1 else f"{start}-{end}"
    except (TypeError, ValueError):
        addr = f"{start}-{end}"
    proto = getattr(s, "protocol", 0)
    lo, hi = getattr(s, "start_port", 0), getattr(s, "end_port", 65535)
    if proto or (lo, hi) != (0, 65535):
        ports = "" if (lo, hi) == (0, 65535) else (f"/{lo}" if lo == hi else f"/{lo}-{hi}")
        return f"{addr}[{proto}{ports}]"
    return addr


def _networks(sel: Any) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    try:
        return list(ipaddress.summarize_address_range(sel.start, sel.end))
    except (TypeError, ValueError):
        return []


# DaemonConfig fields a reload cannot apply to the running daemon (sockets, TUN, logging)
_RESTART_KEYS = (
    "listen_addrs",
    "ike_port",
    "natt_port",
    "control_socket",
    "tun_name",
    "tun_mtu",
    "tun_addresses",
    "log_levels",
    "keylog_file",
    "cookie_threshold",
    "half_open_timeout",
)


@dataclass(slots=True)
class DropCounters:
    """Data-plane drops that belong to no SA."""

    tun_invalid: int = 0
    no_policy: int = 0
    trap_pending: int = 0
    unknown_spi: int = 0
    invalid_udp: int = 0
    esp_errors: int = 0
    bad_inner: int = 0
    ike_errors: int = 0
    keepalives_in: int = 0
    wrong_encap: int = 0  # ESP of a known SA on the other path (UDP 4500 vs protocol 50)

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _timeout_arg(req: dict[str, Any], default: float = 30.0) -> float:
    """A control request's ``timeout``: a positive, finite number of seconds."""
    v = req.get("timeout", default)
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v < math.inf:
        raise ControlError(f"'timeout' must be a positive number of seconds, got {v!r}")
    return float(v)


@dataclass(slots=True)
class _Waiter:
    conn: str
    child: str | None
    fut: asyncio.Future[dict[str, Any]]
    events: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    elapsed: float = 0.0


@dataclass(slots=True)
class _LivenessWaiter:
    ike_id: int
    started: float
    fut: asyncio.Future[float]


class Daemon:
    """The daemon: call :meth:`start`, then ``await`` :meth:`serve` until stopped."""

    def __init__(
        self,
        config: DaemonConfig,
        *,
        config_path: str | Path | None = None,
        keylog_path: str | None = None,
        manager_factory: Callable[[DaemonConfig], IkeManagerLike] = default_manager_factory,
        use_tun: bool = True,
        control: bool = True,
        tun_factory: Callable[[DaemonConfig], Any] | None = None,
    ) -> None:
        self.config = config
        self.config_path = Path(config_path) if config_path else None
        self.manager_factory = manager_factory
        self.use_tun = use_tun
        self.use_control = control
        self.tun_factory = tun_factory
        kl = keylog_path or config.keylog_file
        self.keylog: KeyLog | None = KeyLog(kl) if kl else None
        self.mgr: IkeManagerLike | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.tun: Any = None  # TunDevice (or a test double with fd/name/mtu/routes)
        self.udp: list[UdpSocket] = []
        self.raw: dict[int, RawEspSocket] = {}
        self.children: dict[int, ChildState] = {}
        self.spd: Spd[ChildState | TrapPolicy] = Spd()
        self.drops = DropCounters()
        self.ike_info: dict[int, dict[str, Any]] = {}
        self.control: ControlServer | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._housekeeping: asyncio.TimerHandle | None = None
        self._stop = asyncio.Event()
        self._trap_pending: dict[tuple[str, str], float] = {}
        self._waiters: list[_Waiter] = []
        self._liveness: list[_LivenessWaiter] = []
        self._rbuf = bytearray(65536)
        self._rview = memoryview(self._rbuf)
        self._started = time.time()
        self._routes: dict[str, str | None] = {}

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open sockets, the TUN device, the control socket; run start actions."""
        self.loop = asyncio.get_running_loop()
        self.mgr = self.manager_factory(self.config)
        try:
            self._open_sockets()
            if self.tun_factory is not None:
                self.tun = self.tun_factory(self.config)
                self.loop.add_reader(self.tun.fd, self._on_tun_readable)
            elif self.use_tun:
                self.tun = TunDevice(self.config.tun_name, self.config.tun_mtu).open(
                    self.config.tun_addresses
                )
                self.loop.add_reader(self.tun.fd, self._on_tun_readable)
            self._apply_policies(self.config.connections)
            if self.use_control:
                self.control = ControlServer(self.config.control_socket, self.handle_request)
                await self.control.start()
        except Exception:
            await self.close()
            raise
        self._housekeeping = self.loop.call_later(TRAFFIC_REPORT_INTERVAL, self._on_housekeeping)
        self._run_start_actions(self.config.connections)
        self._pump()

    def _open_sockets(self) -> None:
        assert self.loop is not None
        ports = [(self.config.ike_port, False), (self.config.natt_port, True)]
        for addr in self.config.listen_addrs:
            for port, natt in ports:
                us = UdpSocket(addr, port, natt=natt)
                self.udp.append(us)
                self.loop.add_reader(us.fd, self._on_udp_readable, us)
                log.info("listening on %s port %d%s", addr, us.port, " (NAT-T)" if natt else "")

    def _apply_policies(self, conns: Iterable[ConnectionConfig]) -> None:
        """Trap policies and TUN routes for the configured children."""
        for key in [k for k in list(self.spd._entries) if isinstance(k, tuple)]:
            self.spd.remove(key)
        for c in conns:
            for ch in c.children:
                if ch.start_action == StartAction.TRAP:
                    self.spd.add(
                        ("trap", c.name, ch.name),
                        ch.local_ts,
                        ch.remote_ts,
                        TrapPolicy(c.name, ch.name),
                        trap=True,
                    )
                if ch.mode == Mode.TUNNEL:
                    for s in ch.remote_ts:
                        self._route(s, c.remote_addrs)

    def _trap_dead_children(self, conn_name: str, children: Sequence[str]) -> None:
        """dpd_action = trap (the child's own or inherited): a trap policy for each of
        ``children``, so the next matching packet re-initiates it.  It stays, like a
        ``start_action = trap`` policy, until the next reload (installed SAs win)."""
        conn = next((c for c in self.config.connections if c.name == conn_name), None)
        for ch in conn.children if conn is not None else ():
            if ch.name in children and ch.start_action != StartAction.TRAP:
                self.spd.add(
                    ("trap", conn_name, ch.name),
                    ch.local_ts,
                    ch.remote_ts,
                    TrapPolicy(conn_name, ch.name),
                    trap=True,
                )
                log_child.info("trap policy for %s/%s installed (peer dead)", conn_name, ch.name)

    def _route(self, sel: Any, peers: Iterable[str]) -> None:
        if self.tun is None:
            return
        peer_ips = []
        # the configured peers plus those we have SAs with (a "%any" responder's peers)
        for p in [*peers, *(c.remote[0] for c in self.children.values())]:
            with contextlib.suppress(ValueError):
                peer_ips.append(ipaddress.ip_address(p))
        for net in _networks(sel):
            if net.prefixlen == 0 or any(ip in net for ip in peer_ips):
                log.warning(
                    "not routing %s through %s: it would capture the IKE/ESP traffic itself",
                    net,
                    self.tun.name,
                )
                continue
            prefsrc = None
            for a in self.config.tun_addresses:
                iface = ipaddress.ip_interface(a)
                if iface.version == net.version:
                    prefsrc = str(iface.ip)
                    break
            self.tun.add_route(str(net), prefsrc)

    def _run_start_actions(self, conns: Iterable[ConnectionConfig]) -> None:
        for c in conns:
            for ch in c.children:
                if ch.start_action == StartAction.START:
                    self.initiate(c.name, ch.name, persistent=True)

    async def serve(self) -> None:
        """Run until :meth:`request_stop` (SIGTERM/SIGINT, control ``stop``)."""
        await self._stop.wait()
        await self.shutdown()

    def request_stop(self) -> None:
        self._stop.set()

    async def shutdown(self) -> None:
        """Delete every IKE SA (DELETE sent), wait briefly for answers, then close."""
        mgr = self.mgr
        if mgr is not None and self.loop is not None:
            fn = getattr(mgr, "shutdown", None)
            if fn is not None:
                try:
                    fn(self.loop.time())
                except Exception:
                    log_ike.exception("shutdown of the IKE core failed")
                self._pump()
                deadline = self.loop.time() + SHUTDOWN_GRACE
                while self.loop.time() < deadline and self._live_ike_sas():
                    await asyncio.sleep(0.05)
                    self._pump()
        await self.close()

    def _live_ike_sas(self) -> int:
        assert self.mgr is not None
        try:
            return len(self.mgr.status())
        except Exception:
            return 0

    async def close(self) -> None:
        """Release everything (idempotent)."""
        for h in (self._timer, self._housekeeping):
            if h is not None:
                h.cancel()
        self._timer = self._housekeeping = None
        if self.control is not None:
            await self.control.close()
            self.control = None
        loop = self.loop
        for us in self.udp:
            if loop is not None:
                loop.remove_reader(us.fd)
            us.close()
        self.udp.clear()
        for rs in self.raw.values():
            if loop is not None:
                loop.remove_reader(rs.fd)
            rs.close()
        self.raw.clear()
        if self.tun is not None:
            if loop is not None and self.tun.fd >= 0:
                loop.remove_reader(self.tun.fd)
            self.tun.close()
            self.tun = None
        for w in self._waiters:
            if not w.fut.done():
                w.fut.set_result({"established": False, "error": "daemon stopped"})
        self._waiters.clear()
        for lw in self._liveness:
            if not lw.fut.done():
                lw.fut.set_exception(ControlError("daemon stopped"))
        self._liveness.clear()

    # ------------------------------------------------------------------ IKE plumbing

    def now(self) -> float:
        assert self.loop is not None
        return self.loop.time()

    def initiate(self, conn: str, child: str | None, *, persistent: bool = False) -> None:
        """Start ``conn``/``child``; ``persistent`` (start_action = start): keep
        re-initiating while the peer does not answer (``keyingtries``)."""
        assert self.mgr is not None
        log_ike.info("initiating %s%s", conn, f" (child {child})" if child else "")
        self.mgr.initiate(conn, child, self.now(), persistent=persistent)
        self._pump()

    def _pump(self) -> None:
        """Send what the core wants sent, consume its events, re-arm its timer."""
        mgr = self.mgr
        if mgr is None or self.loop is None:
            return
        for _ in range(8):  # events can produce datagrams (e.g. trap -> initiate)
            now = self.loop.time()
            out = mgr.datagrams_to_send(now)
            for data, local, remote in out:
                self._send_ike(data, local, remote)
            n = 0
            while (e := mgr.next_event()) is not None:
                n += 1
                try:
                    self._on_event(e)
                except Exception:
                    log.exception("handling %s failed", type(e).__name__)
            if not out and not n:
                break
        self._send_keepalives()
        if self._liveness:
            self._check_liveness()
        self._arm_timer()

    def _send_keepalives(self) -> None:
        """NAT keepalives the core says are due (RFC 3948 §2.3, §4): the single octet
        0xFF, without a non-ESP marker, from the IKE SA's (floated) local address."""
        fn = getattr(self.mgr, "keepalives_to_send", None)
        if fn is None or self.loop is None:
            return
        for local, remote in fn(self.loop.time()):
            self._send_ike(NAT_KEEPALIVE, local, remote)

    def _check_liveness(self) -> None:
        """Resolve ``liveness`` requests whose INFORMATIONAL exchange has completed."""
        find = getattr(self.mgr, "find_ike", None)
        now = time.perf_counter()
        for w in list(self._liveness):
            sa = find(w.ike_id) if find is not None else None
            if sa is not None and getattr(sa, "dpd_probe", False):
                continue  # still in flight
            self._liveness.remove(w)
            if not w.fut.done():
                if sa is None:
                    w.fut.set_exception(ControlError(f"IKE SA #{w.ike_id} is gone"))
                else:
                    w.fut.set_result(now - w.started)

    def _arm_timer(self) -> None:
        assert self.mgr is not None and self.loop is not None
        when = self.mgr.next_timer()
        if self._timer is not None:
            if when is not None and self._timer.when() == when:
                return
            self._timer.cancel()
            self._timer = None
        if when is not None:
            self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        assert self.mgr is not None
        try:
            self.mgr.handle_timer(self.now())
        except Exception:
            log_ike.exception("IKE timer handling failed")
        self._pump()

    def _socket_for(self, local: Address, remote: Address) -> UdpSocket | None:
        ip, port = local
        family = socket.AF_INET6 if ":" in remote[0] else socket.AF_INET
        best = None
        for us in self.udp:
            if us.family != family or us.port != port:
                continue
            if us.addr == ip:
                return us
            if us.wildcard or best is None:
                best = us
        return best

    def _send_ike(self, data: bytes, local: Address, remote: Address) -> None:
        us = self._socket_for(local, remote)
        if us is None:
            log_ike.warning(
                "no socket for %s -> %s", nat.format_endpoint(local), nat.format_endpoint(remote)
            )
            return
        if us.natt and data != NAT_KEEPALIVE:
            data = NON_ESP_MARKER + data
        us.sendto(data, remote, local[0] or None)

    # ------------------------------------------------------------------ events

    def _on_event(self, e: Any) -> None:
        if isinstance(e, ev.ChildSaInstalled):
            if self._install(e.info):
                self._resolve_waiters(e.info.conn, e.info.child, True, "CHILD_SA installed")
            else:
                self._resolve_waiters(
                    e.info.conn, e.info.child, False, "CHILD_SA not installed (see the log)"
                )
        elif isinstance(e, ev.ChildSaRekeyed):
            self._install(e.info)
            log_child.info(
                "child %s rekeyed: %08x -> %08x", e.info.child, e.old_spi_in, e.info.spi_in
            )
        elif isinstance(e, ev.ChildSaDeleted):
            self._uninstall(e.spi_in, e.reason)
        elif isinstance(e, ev.IkeSaEstablished):
            self.ike_info[e.ike_id] = {
                "nat_local": e.nat_local,
                "nat_remote": e.nat_remote,
                "since": self.now(),
            }
            log_ike.info(
                "IKE SA %s #%d established %s:%d <-> %s:%d (%s <-> %s)%s",
                e.conn,
                e.ike_id,
                *e.local,
                *e.remote,
                e.local_id,
                e.remote_id,
                " NAT" if e.nat_local or e.nat_remote else "",
            )
            self._keylog_ike(e.ike_id)
        elif isinstance(e, ev.IkeSaRekeyed):
            self.ike_info[e.new_id] = self.ike_info.pop(e.old_id, {})
            log_ike.info("IKE SA #%d rekeyed to #%d", e.old_id, e.new_id)
            self._keylog_ike(e.new_id)
        elif isinstance(e, ev.IkeSaDeleted):
            self.ike_info.pop(e.ike_id, None)
            log_ike.info("IKE SA %s #%d deleted: %s", e.conn, e.ike_id, e.reason)
        elif isinstance(e, ev.IkeSaFailed):
            self.ike_info.pop(e.ike_id, None)
            log_ike.warning("IKE SA %s #%d failed: %s", e.conn, e.ike_id, e.reason)
            # a failed trap-started setup holds the trap down for TRAP_RETRY from now:
            # re-initiating on every next packet is a storm (e.g. AUTHENTICATION_FAILED)
            self._trap_pending.update(
                {k: self.now() for k in self._trap_pending if k[0] == e.conn}
            )
            self._resolve_waiters(e.conn, None, False, f"IKE SA failed: {e.reason}")
        elif isinstance(e, ev.ChildSaFailed):
            log_child.warning("child %s/%s failed: %s", e.conn, e.child, e.reason)
            if (e.conn, e.child) in self._trap_pending:
                self._trap_pending[(e.conn, e.child)] = self.now()
            self._resolve_waiters(e.conn, e.child, False, f"CHILD_SA failed: {e.reason}")
        elif isinstance(e, ev.PeerDead):
            log_ike.warning("peer of %s #%d is dead (action %s)", e.conn, e.ike_id, e.action.value)
            self._trap_dead_children(e.conn, e.children_with(DpdAction.TRAP))
        elif isinstance(e, ev.PeerAddressChanged):
            log_ike.info(
                "peer of IKE SA #%d moved %s -> %s",
                e.ike_id,
                nat.format_endpoint(e.old),
                nat.format_endpoint(e.new),
            )
            for c in self.children.values():
                if c.info.ike_id == e.ike_id:
                    c.remote = e.new
                    c.declined_src = None
        elif isinstance(e, ev.NotifyReceived):
            log_ike.debug("notify %d received on IKE SA #%d", e.type, e.ike_id)
        else:
            log_ike.debug("event %r", e)

    def _keylog_ike(self, ike_id: int) -> None:
        """Log SK_e*/SK_a* of a new IKE SA (only with a key log configured)."""
        if self.keylog is None or self.mgr is None:
            return
        find = getattr(self.mgr, "find_ike", None)
        sa = find(ike_id) if find is not None else None
        keys = getattr(sa, "keys", None)
        suite = getattr(sa, "suite", None)
        if keys is None or suite is None:
            return
        self.keylog.ike(
            ikev2_line(
                sa.spi_i,  # type: ignore[union-attr]
                sa.spi_r,  # type: ignore[union-attr]
                suite.encr_id,
                suite.key_bits,
                suite.integ_id,
                keys.sk_ei,
                keys.sk_er,
                keys.sk_ai,
                keys.sk_ar,
            )
        )

    def _resolve_waiters(self, conn: str, child: str | None, ok: bool, what: str) -> None:
        for w in list(self._waiters):
            if w.conn != conn or (child is not None and w.child not in (None, child)):
                continue
            w.events.append(what)
            w.elapsed = time.perf_counter() - w.started
            if not w.fut.done():
                w.fut.set_result({"established": ok, "events": list(w.events)})
            self._waiters.remove(w)

    # ------------------------------------------------------------------ data plane: SAs

    def _install(self, info: Any) -> bool:
        """Create both ESP directions of a negotiated Child SA and put it in the SPD.

        False when the data plane cannot carry it: a mode other than tunnel (refused by
        :func:`unsupported_config` at start and reload; reachable only with a
        programmatic configuration) is deleted again (DELETE sent) rather than left
        half-installed, negotiated in the core but carrying nothing."""
        if info.mode is not Mode.TUNNEL:
            log_child.error(
                "child %s: %s mode is not supported by the TUN data plane: deleting it",
                info.child,
                info.mode.value,
            )
            delete = getattr(self.mgr, "delete_child", None)
            if delete is not None:
                try:
                    delete(info.ike_id, info.spi_in, self.now())
                except (KeyError, ValueError) as e:
                    log_child.debug("deleting child %08x: %s", info.spi_in, e)
            return False
        key_bits = info.key_bits or 0
        try:
            inbound = EspInbound(
                info.spi_in,
                info.encr_id,
                key_bits,
                info.integ_id,
                info.encr_key_in,
                info.integ_key_in,
                esn=info.esn,
                replay_window=info.replay_window,
            )
            outbound = EspOutbound(
                info.spi_out,
                info.encr_id,
                key_bits,
                info.integ_id,
                info.encr_key_out,
                info.integ_key_out,
                esn=info.esn,
            )
        except EspError as e:
            log_child.error("cannot install child %s: %s", info.child, e)
            return False
        local: Address = (info.local[0], info.local[1])
        remote: Address = (info.remote[0], info.remote[1])
        raw = None
        sock = None
        if info.encap:
            sock = self._socket_for(local, remote)
        else:
            raw = self._raw_socket(socket.AF_INET6 if ":" in remote[0] else socket.AF_INET)
        state = ChildState(
            info=info,
            inbound=inbound,
            outbound=outbound,
            remote=remote,
            local=local,
            encap=bool(info.encap),
            sock=sock,
            raw=raw,
            local_ts=tuple(info.local_ts),
            remote_ts=tuple(info.remote_ts),
            next_header_ok=frozenset((4, 41)),
            installed=self.now(),
        )
        self.children[info.spi_in] = state
        self.spd.add(info.spi_in, state.local_ts, state.remote_ts, state)
        self._trap_pending.pop((info.conn, info.child), None)
        for s in state.remote_ts:
            self._route(s, [remote[0]])
        log_child.info(
            "CHILD_SA %s{%08x/%08x} installed: %s === %s, %s%s",
            info.child,
            info.spi_in,
            info.spi_out,
            selectors_summary(state.local_ts),
            selectors_summary(state.remote_ts),
            info.suite,
            " UDP-encap" if info.encap else "",
        )
        if self.keylog is not None:
            self.keylog.esp(
                esp_sa_line(
                    remote[0],
                    local[0],
                    info.spi_in,
                    info.encr_id,
                    info.encr_key_in,
                    info.integ_id,
                    info.integ_key_in,
                )
            )
            self.keylog.esp(
                esp_sa_line(
                    local[0],
                    remote[0],
                    info.spi_out,
                    info.encr_id,
                    info.encr_key_out,
                    info.integ_id,
                    info.integ_key_out,
                )
            )
        return True

    def _uninstall(self, spi_in: int, reason: str = "") -> None:
        state = self.children.pop(spi_in, None)
        if state is None:
            return
        self.spd.remove(spi_in)
        log_child.info(
            "CHILD_SA %s{%08x} removed%s (in %d B/%d pkts, out %d B/%d pkts)",
            state.info.child,
            spi_in,
            f": {reason}" if reason else "",
            state.bytes_in,
            state.packets_in,
            state.bytes_out,
            state.packets_out,
        )
        if state.raw is not None and not any(
            c.raw is state.raw and c.remote[0] == state.remote[0] for c in self.children.values()
        ):
            state.raw.forget(state.remote[0])
        if state.raw is not None and not any(c.raw is state.raw for c in self.children.values()):
            fam = int(state.raw.family)
            rs = self.raw.pop(fam, None)
            if rs is not None:
                if self.loop is not None:
                    self.loop.remove_reader(rs.fd)
                rs.close()

    def _raw_socket(self, family: socket.AddressFamily) -> RawEspSocket | None:
        rs = self.raw.get(int(family))
        if rs is None:
            try:
                rs = RawEspSocket(family)
            except OSError as e:
                log.error("cannot open a raw ESP socket: %s", e)
                return None
            self.raw[int(family)] = rs
            assert self.loop is not None
            self.loop.add_reader(rs.fd, self._on_raw_readable, rs)
        return rs

    # ------------------------------------------------------------------ data plane: packets

    def _on_tun_readable(self) -> None:
        """Drain the TUN device (up to DRAIN_MAX packets): SPD, ESP, send.

        The SPD decision is cached per flow (:func:`~pyipsec.daemon.spd.flow_key`; the
        cache is emptied when policies change).  Consecutive ESP packets for the same
        UDP-encapsulated SA form a *run* that goes out with one UDP GSO ``sendmsg`` while
        they have equal sizes (a shorter packet ends the run): nothing waits for a batch
        to fill, a run only collects what one wake-up finds in the TUN queue."""
        tun = self.tun
        if tun is None:
            return
        fd = tun.fd
        read = os.read
        spd = self.spd
        cache = spd.cache
        lookup = spd.lookup
        run: list[bytes] = []
        run_c: ChildState | None = None
        seg = size = inner = 0
        for _ in range(DRAIN_MAX):
            try:
                pkt = read(fd, 65535)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                log.error("TUN read failed: %s", e)
                break
            key = flow_key(pkt)
            target = _MISS if key is None else cache.get(key, _MISS)
            if target is _MISS:
                flow = parse_flow(pkt)
                if flow is None:
                    self.drops.tun_invalid += 1
                    continue
                target = lookup(flow)
                if isinstance(target, TrapPolicy):
                    self._trap(target, flow)
                    continue
                if key is not None:
                    if len(cache) >= CACHE_MAX:
                        cache.clear()
                    cache[key] = target
            if target is None:
                self.drops.no_policy += 1
                continue
            c: ChildState = target
            try:
                esp = c.outbound.protect(pkt, 4 if pkt[0] >> 4 == 4 else 41)
            except EspSequenceExhausted:
                c.drops_send += 1
                continue
            if c.sock is None or not c.encap:
                self._send_one(c, esp, len(pkt))
                continue
            n = len(esp)
            if run and (
                c is not run_c
                or n > seg
                or len(run) >= GSO_MAX_SEGMENTS
                or size + n > GSO_MAX_BYTES
            ):
                self._send_run(run_c, run, inner)  # type: ignore[arg-type]
                run = []
            if not run:
                run_c, seg, size, inner = c, n, 0, 0
            run.append(esp)
            size += n
            inner += len(pkt)
            if n < seg:  # only the last segment of a GSO send may be shorter
                self._send_run(c, run, inner)
                run = []
        if run:
            self._send_run(run_c, run, inner)  # type: ignore[arg-type]

    def _send_run(self, c: ChildState, run: list[bytes], inner: int) -> None:
        assert c.sock is not None
        sent = c.sock.send_segments(run, c.remote)
        k = len(run)
        if sent == k:
            c.packets_out += k
            c.bytes_out += inner
        else:
            c.packets_out += sent
            c.bytes_out += inner * sent // k
            c.drops_send += k - sent

    def _send_one(self, c: ChildState, esp: bytes, inner: int) -> None:
        if c.encap:
            ok = c.sock is not None and c.sock.sendto(esp, c.remote)
        else:
            ok = c.raw is not None and c.raw.send(esp, c.remote[0])  # connected per peer
        if ok:
            c.packets_out += 1
            c.bytes_out += inner
        else:
            c.drops_send += 1

    def _trap(self, trap: TrapPolicy, flow: Flow) -> None:
        self.drops.trap_pending += 1
        key = (trap.conn, trap.child)
        now = self.now()
        if now - self._trap_pending.get(key, -1e9) < TRAP_RETRY:
            return
        self._trap_pending[key] = now
        log_child.info(
            "trap %s/%s: packet %s -> %s starts the tunnel",
            trap.conn,
            trap.child,
            flow.src_addr,
            flow.dst_addr,
        )
        try:
            self.initiate(trap.conn, trap.child)
        except Exception:
            log_ike.exception("trap-initiating %s failed", trap.conn)

    def _on_udp_readable(self, us: UdpSocket) -> None:
        """Drain one UDP socket (up to DRAIN_MAX receive calls; with UDP GRO one call may
        return several datagrams of equal size, handled one by one)."""
        assert self.loop is not None
        buf, view = self._rbuf, self._rview
        recv = us.recv_segments_into
        natt = us.natt
        on_esp = self._on_esp
        now = self.loop.time()
        got_ike = False
        for _ in range(DRAIN_MAX):
            r = recv(buf)
            if r is None:
                break
            total, src, local, seg = r
            off = 0
            while off < total:
                n = min(seg, total - off) if seg else total
                data = bytes(view[off : off + n])
                off += n
                if natt and n >= _ESP_MIN and data[:4] != NON_ESP_MARKER:
                    on_esp(data, src, True, now)  # ESP-in-UDP: the fast path
                    continue
                kind = nat.detect_packet_type(data, port_4500=natt)
                if kind is nat.PacketType.ESP:
                    on_esp(data, src, True, now)
                elif kind is nat.PacketType.IKE:
                    self._on_ike(data[4:] if natt else data, (local, us.port), src)
                    got_ike = True
                elif kind is nat.PacketType.KEEPALIVE:
                    self.drops.keepalives_in += 1
                else:
                    self.drops.invalid_udp += 1
        if got_ike:
            self._pump()

    def _on_raw_readable(self, rs: RawEspSocket) -> None:
        assert self.loop is not None
        now = self.loop.time()  # one clock read per wake-up
        recv = rs.recv
        on_esp = self._on_esp
        for _ in range(DRAIN_MAX):
            r = recv()
            if r is None:
                return
            data, src = r
            on_esp(data, (src, 0), False, now)

    def _unroute_peer(self, ip: str) -> None:
        """A peer we hear from lies inside a TUN route (a selector of a connection with
        ``remote_addrs = %any``, e.g. the peer's own address as ``remote_ts``, could not
        be checked against it when routed): withdraw that route before answering, or our
        IKE and ESP packets to the peer would be routed into the TUN device."""
        prune = getattr(self.tun, "prune_routes", None)
        if prune is None:
            return
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return
        routes = list(self.tun.routes)
        capture = {r for r in routes if addr in ipaddress.ip_network(r)}
        if capture:
            for net in prune(set(routes) - capture):
                log.warning(
                    "route %s through %s withdrawn: it captures the peer %s", net, self.tun.name, ip
                )

    def _on_ike(self, data: bytes, local: Address, remote: Address) -> None:
        assert self.mgr is not None
        if self.tun is not None:
            self._unroute_peer(remote[0])
        if local[0] in ("0.0.0.0", "::"):
            # a wildcard socket without IP_PKTINFO: ask the routing table which local
            # address answers this peer (the NAT-D hashes cover it, RFC 7296 §2.23)
            resolve = getattr(self.mgr, "local_address_for", None)
            ip = resolve(remote[0]) if resolve is not None else None
            if ip is not None:
                local = (ip, local[1])
        try:
            self.mgr.receive_datagram(data, local, remote, self.now())
        except Exception:
            self.drops.ike_errors += 1
            log_ike.exception(
                "IKE datagram from %s made the core fail", nat.format_endpoint(remote)
            )

    def _on_esp(self, data: bytes, src: Address, encap: bool, now: float | None = None) -> None:
        c = self.children.get(int.from_bytes(data[:4], "big"))
        if c is None:
            self.drops.unknown_spi += 1
            self._unknown_spi(data, src)
            return
        if encap != c.encap:
            # RFC 3948 §3 / RFC 7296 §2.23: an SA negotiated with UDP encapsulation uses
            # it both ways, one without never does; nothing switches paths later (no
            # MOBIKE).  Dropped before the ICV check: it never touches the replay window.
            c.drops_encap += 1
            self.drops.wrong_encap += 1
            return
        try:
            nh, payload = c.inbound.unprotect(data)
        except EspDummyPacket:
            return
        except EspError as e:
            self.drops.esp_errors += 1
            if log_esp.isEnabledFor(logging.DEBUG):
                log_esp.debug("ESP %08x from %s dropped: %s", c.info.spi_in, src[0], e)
            return
        c.last_in = self.now() if now is None else now
        if nh not in c.next_header_ok:
            self.drops.bad_inner += 1
            return
        key = flow_key(payload)
        ok_flows = c.ok_flows
        if key is None or key not in ok_flows:
            flow = parse_flow(payload)
            if flow is None:
                self.drops.bad_inner += 1
                return
            if not flow_in(flow, c.remote_ts, c.local_ts):
                c.drops_selector += 1  # RFC 4301 §5.2: not what this SA may carry
                return
            if key is not None:
                if len(ok_flows) >= CACHE_MAX:
                    ok_flows.clear()
                ok_flows.add(key)
        c.packets_in += 1
        c.bytes_in += len(payload)
        if encap and src != c.remote and src != c.declined_src:
            self._peer_moved(c, src, data)
        tun = self.tun
        if tun is not None:
            try:
                os.write(tun.fd, payload)
            except OSError as e:
                log.debug("TUN write failed: %s", e)

    def _unknown_spi(self, data: bytes, src: Address) -> None:
        """ESP for an SPI we do not have: the core may report it to that peer in an
        INFORMATIONAL N(INVALID_SPI) (RFC 7296 §2.21.4), rate-limited, never amplified."""
        fn = getattr(self.mgr, "unknown_esp_spi", None)
        if fn is None or len(data) < 4:
            return
        if fn(int.from_bytes(data[:4], "big"), src, self.now()):
            self._pump()

    def _peer_moved(self, c: ChildState, src: Address, data: bytes) -> None:
        """Authenticated ESP-in-UDP from another address: the peer's NAT mapping may have
        changed (RFC 7296 §2.23).  The core decides, with the packet's sequence number:
        only a packet newer than every one before it, only when the peer is behind a NAT
        and we are not; it then moves the children (PeerAddressChanged).  So only the
        newest packet of the SA is reported (an older, reordered or replayed one never
        moves it), and a source the core declined is not reported again until the SA's
        address changes."""
        rw = c.inbound.replay
        if int.from_bytes(data[4:8], "big") != rw.top & 0xFFFFFFFF:
            return
        fn = getattr(self.mgr, "esp_activity", None)
        if fn is None:
            return
        old = c.remote
        fn(c.info.spi_in, self.now(), src, rw.top)
        self._pump()
        if c.remote == src:
            log_esp.info(
                "ESP %08x now arrives from %s (was %s)",
                c.info.spi_in,
                nat.format_endpoint(src),
                nat.format_endpoint(old),
            )
        else:
            c.declined_src = src
            log_esp.info(
                "ESP %08x arrives from %s: the SA stays at %s (RFC 7296 §2.23)",
                c.info.spi_in,
                nat.format_endpoint(src),
                nat.format_endpoint(c.remote),
            )

    # ------------------------------------------------------------------ housekeeping

    def _on_housekeeping(self) -> None:
        assert self.loop is not None
        self._housekeeping = self.loop.call_later(TRAFFIC_REPORT_INTERVAL, self._on_housekeeping)
        try:
            self._report_traffic()
        except Exception:
            log.exception("reporting traffic to the IKE core failed")

    def _report_traffic(self) -> None:
        """Report per-SA volumes and authenticated arrivals to the core (DPD, lifetimes)."""
        mgr = self.mgr
        traffic = getattr(mgr, "notify_traffic", None)
        activity = getattr(mgr, "esp_activity", None)
        now = self.now()
        esp_errors = getattr(mgr, "esp_errors", None)
        changed = False
        for c in list(self.children.values()):
            st = c.inbound.stats
            errs = (st.auth_failures, st.replay_drops, st.format_errors)
            if errs != c.reported_errors:
                # ICV failures / replays / garbage: counted by the core, never answered
                # (RFC 4303 §3.4.3, §3.4.4)
                if esp_errors is not None:
                    a, r, f = (x - y for x, y in zip(errs, c.reported_errors, strict=True))
                    esp_errors(c.info.spi_in, now, auth=a, replay=r, malformed=f)
                c.reported_errors = errs
            cur = (c.bytes_in, c.packets_in, c.bytes_out, c.packets_out)
            if cur == c.reported:
                continue
            if activity is not None and c.packets_in != c.reported[1]:
                activity(c.info.spi_in, c.last_in or now)
            c.reported = cur
            changed = True
            if traffic is not None:
                traffic(
                    c.info.spi_in,
                    now,
                    bytes_in=c.bytes_in,
                    packets_in=c.packets_in,
                    bytes_out=c.bytes_out,
                    packets_out=c.packets_out,
                    # the last outbound sequence number: rekey long before it runs
                    # out (RFC 4303 §3.3.3)
                    seq_out=c.outbound.seq,
                )
        if changed:
            self._pump()

    # ------------------------------------------------------------------ control

    async def handle_request(self, req: dict[str, Any]) -> Any:
        cmd = req["cmd"]
        if cmd == "status":
            return self.status()
        if cmd == "up":
            return await self._cmd_up(req)
        if cmd == "down":
            return self._cmd_down(req)
        if cmd == "reload":
            return self.reload()
        if cmd == "liveness":
            return await self._cmd_liveness(req)
        if cmd == "rekey":
            return self._cmd_rekey(req)
        if cmd == "stop":
            assert self.loop is not None
            self.loop.call_soon(self.request_stop)
            return {"stopping": True}
        raise ControlError(
            f"unknown command {cmd!r} (status, up, down, rekey, liveness, reload, stop)"
        )

    def _conn(self, name: object) -> ConnectionConfig:
        for c in self.config.connections:
            if c.name == name:
                return c
        names = ", ".join(c.name for c in self.config.connections) or "none"
        raise ControlError(f"unknown connection {name!r} (configured: {names})")

    async def _cmd_up(self, req: dict[str, Any]) -> dict[str, Any]:
        conn = self._conn(req.get("name"))
        child = req.get("child")
        if child is not None and child not in [c.name for c in conn.children]:
            raise ControlError(f"connection {conn.name!r} has no child {child!r}")
        if child is None and conn.children:
            child = conn.children[0].name
        timeout = _timeout_arg(req)
        assert self.loop is not None
        fut: asyncio.Future[dict[str, Any]] = self.loop.create_future()
        w = _Waiter(conn.name, child, fut)
        self._waiters.append(w)
        try:
            self.initiate(conn.name, child)
            res = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            res = {"established": False, "error": f"no result within {timeout:g}s"}
        finally:  # also when initiate failed or the client went away
            with contextlib.suppress(ValueError):
                self._waiters.remove(w)
        # initiate -> Child SA installed (or failure), measured inside the daemon
        res.update(conn=conn.name, child=child, elapsed_ms=round(w.elapsed * 1e3, 3))
        if not res["established"]:
            raise ControlError(
                f"{conn.name}: " + (res.get("error") or "; ".join(res.get("events", [])))
            )
        return res

    async def _cmd_liveness(self, req: dict[str, Any]) -> dict[str, Any]:
        """Send an empty INFORMATIONAL request (RFC 7296 §2.4) on the connection's
        established IKE SA and wait for its answer: the round trip as the daemon sees it
        (request queued and sent -> response processed)."""
        conn = self._conn(req.get("name"))
        assert self.mgr is not None and self.loop is not None
        fn = getattr(self.mgr, "liveness", None)
        if fn is None:
            raise ControlError("the IKE core does not support liveness checks")
        ike_id = None
        for sa in self._established_sas(conn.name):
            ike_id = sa.get("id")
        if not isinstance(ike_id, int):
            raise ControlError(f"{conn.name}: no established IKE SA")
        timeout = _timeout_arg(req)
        fut: asyncio.Future[float] = self.loop.create_future()
        w = _LivenessWaiter(ike_id, time.perf_counter(), fut)
        self._liveness.append(w)
        try:
            fn(ike_id, self.now())
            self._pump()
            rtt = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise ControlError(f"{conn.name}: no liveness answer within {timeout:g}s") from None
        finally:
            with contextlib.suppress(ValueError):
                self._liveness.remove(w)
        return {"conn": conn.name, "ike_id": ike_id, "rtt_ms": round(rtt * 1e3, 3)}

    def _established_sas(self, conn: str) -> list[dict[str, Any]]:
        """The core's status entries of the connection's established IKE SAs."""
        assert self.mgr is not None
        return [
            sa
            for sa in self.mgr.status(self.now())
            if sa.get("name") == conn and str(sa.get("state", "")).lower() == "established"
        ]

    def _cmd_rekey(self, req: dict[str, Any]) -> dict[str, Any]:
        """Start a rekey now: the IKE SA (``ike``, RFC 7296 §1.3.2) or one (``child``) or
        all Child SAs of the connection (§1.3.3).  Returns once the CREATE_CHILD_SA
        requests are queued; ``status`` shows the new SPIs when they are done."""
        conn = self._conn(req.get("name"))
        child = req.get("child")
        ike = req.get("ike", False)
        if not isinstance(ike, bool):
            raise ControlError("rekey: 'ike' must be true or false")
        if child is not None and ike:
            raise ControlError("rekey: give either 'child' or 'ike', not both")
        if child is not None and child not in [c.name for c in conn.children]:
            raise ControlError(f"connection {conn.name!r} has no child {child!r}")
        assert self.mgr is not None
        sas = self._established_sas(conn.name)
        if not sas:
            raise ControlError(f"{conn.name}: no established IKE SA")
        now = self.now()
        if ike:
            fn = getattr(self.mgr, "rekey_ike", None)
            if fn is None:
                raise ControlError("the IKE core does not support rekeying")
            ids = [int(sa["id"]) for sa in sas]
            for ike_id in ids:
                fn(ike_id, now)
            self._pump()
            return {"conn": conn.name, "ike_sas": ids}
        fn = getattr(self.mgr, "rekey_child", None)
        if fn is None:
            raise ControlError("the IKE core does not support rekeying")
        started: list[dict[str, Any]] = []
        for sa in sas:
            for ch in sa.get("children", []):
                if str(ch.get("state", "")).lower() != "installed":
                    continue
                if child is not None and ch.get("name") != child:
                    continue
                fn(int(sa["id"]), int(str(ch["spi_in"]), 16), now)
                started.append(
                    {"ike_id": sa["id"], "child": ch.get("name"), "spi_in": ch["spi_in"]}
                )
        if not started:
            what = f"child {child!r}" if child is not None else "Child SA"
            raise ControlError(f"{conn.name}: no installed {what} to rekey")
        self._pump()
        return {"conn": conn.name, "child_sas": started}

    def _cmd_down(self, req: dict[str, Any]) -> dict[str, Any]:
        conn = self._conn(req.get("name"))
        assert self.mgr is not None
        fn = getattr(self.mgr, "terminate", None)
        if fn is None:
            raise ControlError("the IKE core does not support terminate")
        res = fn(conn.name, self.now())
        self._pump()
        return {"conn": conn.name, "terminated": res}

    def reload(self) -> dict[str, Any]:
        """Re-read the config file: all or nothing (a bad file changes nothing)."""
        if self.config_path is None:
            raise ControlError("the daemon was not started from a file")
        try:
            new = load_daemon_config(self.config_path)
        except ConfigError as e:
            raise ControlError(str(e)) from None
        assert self.mgr is not None
        fn = getattr(self.mgr, "reload", None)
        if fn is None:
            raise ControlError("the IKE core does not support reloading connections")
        fn(new.connections, self.now())
        # routes may have changed with the configuration: look source addresses up afresh
        forget = getattr(getattr(self.mgr, "local_address_for", None), "forget", None)
        if forget is not None:
            forget()
        old_names = {c.name for c in self.config.connections}
        restart = [k for k in _RESTART_KEYS if getattr(new, k) != getattr(self.config, k)]
        if restart:
            log_cfg.warning(
                "reload: changed daemon settings take effect at the next start: %s",
                ", ".join(restart),
            )
        self.config = new
        self._apply_policies(new.connections)
        self._run_start_actions(c for c in new.connections if c.name not in old_names)
        self._pump()
        self._prune_routes()
        log_cfg.info("configuration reloaded from %s", self.config_path)
        result: dict[str, Any] = {"connections": [c.name for c in new.connections]}
        if restart:
            result["restart_needed"] = restart
        return result

    def _prune_routes(self) -> None:
        """Drop TUN routes that neither a configured tunnel child nor an installed Child
        SA of a configured connection needs any more (a reload removed them): traffic for
        a removed connection follows the ordinary routing table again."""
        prune = getattr(self.tun, "prune_routes", None)
        if prune is None:
            return
        names = {c.name for c in self.config.connections}
        sels = [s for c in self.config.connections for ch in c.children
                if ch.mode == Mode.TUNNEL for s in ch.remote_ts]
        sels += [s for st in self.children.values() if st.info.conn in names
                 for s in st.remote_ts]
        keep = {str(net) for s in sels for net in _networks(s)}
        for net in prune(keep):
            log_cfg.info("route %s through %s removed (no longer configured)", net, self.tun.name)

    def status(self) -> dict[str, Any]:
        now = self.now()
        ike: list[dict[str, Any]] = []
        if self.mgr is not None:
            try:
                ike = self.mgr.status(now)
            except Exception as e:
                log.exception("status of the IKE core failed")
                ike = [{"error": str(e)}]
        for sa in ike:
            for k in ("rekey_at", "expire_at"):
                v = sa.get(k)
                if isinstance(v, int | float):
                    sa[k.replace("_at", "_in")] = round(v - now, 1)
            est = sa.get("established")
            if isinstance(est, int | float):
                sa["age"] = round(now - est, 1)
            for ch in sa.get("children", []):
                for k in ("rekey_at", "expire_at"):
                    v = ch.get(k)
                    if isinstance(v, int | float):
                        ch[k.replace("_at", "_in")] = round(v - now, 1)
        return {
            "pid": os.getpid(),
            "uptime": round(time.time() - self._started, 1),
            "tun": None
            if self.tun is None
            else {"name": self.tun.name, "mtu": self.tun.mtu, "routes": self.tun.routes},
            "listen": [f"{u.addr}[{u.port}]" for u in self.udp],
            "connections": [
                {
                    "name": c.name,
                    "remote_addrs": list(c.remote_addrs),
                    "children": [
                        {"name": ch.name, "start_action": ch.start_action.value}
                        for ch in c.children
                    ],
                }
                for c in self.config.connections
            ],
            "ike_sas": ike,
            "child_sas": [c.status(now) for c in self.children.values()],
            "drops": self.drops.as_dict(),
            # every error the core counted, by recovery.ErrorKind (ESP auth/replay too)
            "errors": self._error_status(),
        }

    def _error_status(self) -> dict[str, int]:
        fn = getattr(self.mgr, "error_status", None)
        return dict(fn()) if fn is not None else {}


async def _amain(daemon: Daemon) -> int:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.request_stop)
    try:
        await daemon.start()
        log.info("pyipsec daemon running (pid %d)", os.getpid())
        await daemon.serve()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return 0


def run_daemon(
    config: DaemonConfig,
    *,
    config_path: str | None = None,
    keylog_path: str | None = None,
    manager_factory: Callable[[DaemonConfig], IkeManagerLike] = default_manager_factory,
) -> int:
    """Run the daemon in the foreground until SIGTERM/SIGINT or ``stop``."""
    daemon = Daemon(
        config,
        config_path=config_path,
        keylog_path=keylog_path,
        manager_factory=manager_factory,
    )
    return asyncio.run(_amain(daemon))


def load_daemon_config(path: str | Path) -> DaemonConfig:
    """:func:`~pyipsec.config.loader.load_config` plus :func:`unsupported_config`: what
    ``pyipsec daemon`` (also ``--check``) and ``reload`` accept; ConfigError otherwise."""
    cfg = load_config(path)
    issues = unsupported_config(cfg)
    if issues:
        raise ConfigError(issues, str(path))
    return cfg


def unsupported_config(config: DaemonConfig) -> list[ConfigIssue]:
    """What this daemon's data plane cannot carry, located like the loader's errors.

    The configuration language and the IKE core know transport mode (USE_TRANSPORT_MODE,
    RFC 7296 §1.3.1), but the TUN data plane only sees packets routed into the device:
    a transport-mode SA between the two outer addresses would need the peer's address
    routed into the TUN except for the daemon's own IKE/ESP packets.  Such a child is
    refused when the daemon starts (and by ``--check`` and ``reload``) instead of being
    negotiated and then left without a data path.
    """
    return [
        ConfigIssue(
            f"connections.{c.name}.children.{ch.name}.mode",
            f"{ch.mode.value} mode is not supported by the userspace (TUN) data plane "
            '(known limitation: use tunnel mode between inner subnets)',
        )
        for c in config.connections
        for ch in c.children
        if ch.mode is not Mode.TUNNEL
    ]


def selectors_summary(sels: Sequence[Any]) -> str:
    """``203.0.113.0/26, 2001:db8:a::/64`` for log lines and tables."""
    return ", ".join(_sel_str(s) for s in sels)
