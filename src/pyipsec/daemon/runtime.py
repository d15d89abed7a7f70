"""The asyncio runtime: drives the sans-I/O IKE core and hosts the userspace ESP data plane.

One :class:`Daemon` owns

* UDP sockets on the IKE port (500) and the NAT-T port (4500) for every listen address,
  registered with ``loop.add_reader`` and drained by the data plane
  (:mod:`pyipsec.daemon.dataplane`; no asyncio transports), which hands IKE datagrams
  back here;
* the IKE core, seen only through :class:`~pyipsec.ikev2.api.IkeCore`: datagrams in,
  datagrams and events out, one ``loop.call_at`` timer at ``core.next_timer()``
  (``loop.time()`` is the monotonic clock the core sees as ``now``);
* the TUN device, with routes to the remote selectors of every configured child
  (:mod:`pyipsec.daemon.routes`);
* the data plane (:class:`~pyipsec.daemon.dataplane.DataPlane`: SPD, SPI table, ESP),
  whose reports (unknown SPIs, moved peers, trap hits, traffic) this module feeds to
  the core;
* the control socket, whose verbs live in :mod:`pyipsec.daemon.commands`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import ipaddress
import logging
import os
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, assert_never

from .. import build_info, nat
from ..config.model import ConnectionConfig, DaemonConfig, DpdAction, Mode, StartAction
from ..eap.base import BackendReply, BackendVerdict
from ..ikev2 import events as ev
from ..ikev2.api import IkeCore
from ..ikev2.constants import NAT_KEEPALIVE, NON_ESP_MARKER
from . import sdnotify
from .commands import Commands, load_daemon_config, unsupported_config
from .control import ControlServer
from .dataplane import (
    TRAP_RETRY,
    ChildState,
    DataPlane,
    PeerMoved,
    Report,
    TrapHit,
    TrapPolicy,
    TunLike,
    UnknownSpi,
    selectors_summary,
    socket_for,
)
from .eap_radius import RadiusBackend
from .gc_tuning import sweep_frozen_garbage, tune_gc
from .keylog import KeyLog, esp_sa_line, ikev2_line
from .metrics import Metrics
from .radius_accounting import RadiusAccounting, TerminateCause, Usage
from .route import SourceAddressCache
from .routes import route_selector, unroute_peer
from .sockets import UdpSocket
from .spd import SelectorLike
from .tun import TunDevice
from .vici import ViciServer
from .vips import HookRunner, VirtualIpTable

__all__ = [
    "TRAP_RETRY",
    "ChildState",
    "Daemon",
    "TrapPolicy",
    "load_daemon_config",
    "make_ike_manager",
    "run_daemon",
    "selectors_summary",
    "unsupported_config",
]

log = logging.getLogger("pyipsec.net")
log_ike = logging.getLogger("pyipsec.ike")
log_child = logging.getLogger("pyipsec.child")
log_esp = logging.getLogger("pyipsec.esp")

Address = tuple[str, int]
TRAFFIC_REPORT_INTERVAL = 1.0
SHUTDOWN_GRACE = 2.0


def make_ike_manager(
    config: DaemonConfig, *, local_address_for: Callable[[str], str | None] | None = None
) -> IkeCore:
    """The core's IkeManager for ``config``.  ``local_address_for``: our real source
    address towards a peer (NAT-D, RFC 7296 §2.23) when we listen on a wildcard address."""
    from ..ikev2.manager import IkeManager

    local = tuple(a for a in config.listen_addrs if not ipaddress.ip_address(a).is_unspecified)
    return IkeManager(
        config.connections,
        cookie_threshold=config.cookie_threshold,
        half_open_timeout=config.half_open_timeout,
        half_open_limit=config.half_open_limit,
        cookie_threshold_ip=config.cookie_threshold_ip,
        block_threshold=config.block_threshold,
        half_open_memory=config.half_open_memory,
        max_fragment_bytes_unauthenticated=config.max_fragment_bytes_unauthenticated,
        max_fragment_bytes=config.max_fragment_bytes,
        ke_reuse_seconds=config.ke_reuse_seconds,
        ke_reuse_count=config.ke_reuse_count,
        local_addresses=local,
        local_address_for=local_address_for,
        wall_clock=monotonic_to_wall,
        pools=config.pools,
    )


def monotonic_to_wall(now: float) -> dt.datetime:
    """The calendar time of a ``now`` of the daemon's loop clock (``time.monotonic``)."""
    return dt.datetime.fromtimestamp(time.time() - time.monotonic() + now, dt.UTC)


def _usage_of(children: Iterable[ChildState]) -> Usage:
    """The traffic counters of Child SAs, summed (RADIUS accounting)."""
    u = Usage()
    for c in children:
        u = u + Usage(c.bytes_in, c.bytes_out, c.packets_in, c.packets_out)
    return u


class EapBackend(Protocol):
    """Where EAP packets of ``remote.auth = "eap-radius"`` connections go (the RADIUS
    client, RFC 3579: :class:`~pyipsec.daemon.eap_radius.RadiusBackend`): it answers
    each request later with ``daemon.core.eap_backend_reply(event.ike_id, reply, now)``
    and never raises."""

    def submit(self, event: ev.EapBackendRequest) -> None: ...

    def forget(self, ike_id: int) -> None:
        """The IKE SA is gone: drop its conversation and what is in flight (no reply)."""
        ...

    def close(self) -> None:
        """Release sockets and timers (the daemon stops)."""
        ...


class Daemon:
    """The daemon: call :meth:`start`, then ``await`` :meth:`serve` until stopped.

    ``manager_factory`` builds the IKE core; by default the real IkeManager, given the
    daemon's own source-address cache (:attr:`source_addresses`)."""

    def __init__(
        self,
        config: DaemonConfig,
        *,
        config_path: str | Path | None = None,
        keylog_path: str | None = None,
        manager_factory: Callable[[DaemonConfig], IkeCore] | None = None,
        use_tun: bool = True,
        control: bool = True,
        tun_factory: Callable[[DaemonConfig], TunLike] | None = None,
    ) -> None:
        self.config = config
        self.config_path = Path(config_path) if config_path else None
        # a cached connected-UDP route lookup, forgotten on reload
        self.source_addresses = SourceAddressCache()
        self.manager_factory: Callable[[DaemonConfig], IkeCore] = (
            manager_factory
            or functools.partial(make_ike_manager, local_address_for=self.source_addresses)
        )
        self.use_tun = use_tun
        self.use_control = control
        self.tun_factory = tun_factory
        kl = keylog_path or config.keylog_file
        self.keylog: KeyLog | None = KeyLog(kl) if kl else None
        self._core: IkeCore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dp: DataPlane | None = None
        self.udp: list[UdpSocket] = []
        self.cmds = Commands(self)
        self.control: ControlServer | None = None
        self.vici: ViciServer | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._housekeeping: asyncio.TimerHandle | None = None
        self._stop = asyncio.Event()
        self.started = time.time()
        self.metrics: Metrics | None = None  # [daemon] metrics: the Prometheus endpoint
        # the AAA backend for EAP-RADIUS (None: such EAP conversations are refused)
        self.eap_backend: EapBackend | None = None
        self.accounting: RadiusAccounting | None = None  # [eap_radius] accounting
        # virtual IPs (RFC 7296 §2.19): ours on the TUN, the peers' leases; vip_hook runs
        self.vips = VirtualIpTable(lambda: self._dp.tun if self._dp else None, self._vip_hook)
        self.hooks: HookRunner | None = None

    @property
    def core(self) -> IkeCore:
        assert self._core is not None, "the daemon is not started"
        return self._core

    @core.setter
    def core(self, core: IkeCore) -> None:
        self._core = core

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "the daemon is not started"
        return self._loop

    @property
    def dp(self) -> DataPlane:
        assert self._dp is not None, "the daemon is not started"
        return self._dp

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open sockets, the TUN device, the control socket; run start actions."""
        loop = self._loop = asyncio.get_running_loop()
        log.info("protocol core %s", build_info.core_description())
        self._core = self.manager_factory(self.config)
        dp = self._dp = DataPlane(
            loop, self.udp, self._on_report, on_ike=self._on_ike, clock=lambda: self.now()
        )
        radius = self.config.eap_radius
        if radius.accounting and radius.servers and self.accounting is None:
            # RFC 2866 for the IKE SAs the RADIUS servers authenticated
            self.accounting = RadiusAccounting(
                radius, usage=self._child_usage, close=self._close_unaccounted, loop=loop
            )
        if self.eap_backend is None and radius.servers:
            # [eap_radius]: the RADIUS client (sockets are opened on first use)
            acct = self.accounting
            self.eap_backend = RadiusBackend(
                radius, self._eap_backend_reply,
                accepted=acct.accepted if acct is not None else None,
            )  # fmt: skip
        try:
            self._open_sockets()
            if self.tun_factory is not None:
                dp.tun = self.tun_factory(self.config)
            elif self.use_tun:
                dp.tun = TunDevice(self.config.tun_name, self.config.tun_mtu).open(
                    self.config.tun_addresses
                )
            if dp.tun is not None:
                loop.add_reader(dp.tun.fd, dp.on_tun_readable)
            self.apply_policies(self.config.connections)
            if self.use_control:
                self.control = ControlServer(self.config.control_socket, self.handle_request)
                await self.control.start()
            if self.config.metrics:
                self.metrics = Metrics(self, self.config.metrics)
                self.metrics.start()
            if self.config.vici_socket:  # strongSwan's VICI (swanctl)
                self.vici = ViciServer(self, self.config.vici_socket)
                await self.vici.start()
        except Exception:
            await self.close()
            raise
        self._housekeeping = loop.call_later(TRAFFIC_REPORT_INTERVAL, self._on_housekeeping)
        self.run_start_actions(self.config.connections)
        self.pump()

    def _open_sockets(self) -> None:
        ports = [(self.config.ike_port, False), (self.config.natt_port, True)]
        for addr in self.config.listen_addrs:
            for port, natt in ports:
                us = UdpSocket(addr, port, natt=natt)
                self.udp.append(us)
                self.loop.add_reader(us.fd, self._on_udp_readable, us)
                log.info("listening on %s port %d%s", addr, us.port, " (NAT-T)" if natt else "")

    def run_start_actions(self, conns: Iterable[ConnectionConfig]) -> None:
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
        sdnotify.notify(*sdnotify.STOPPING)  # systemd Type=notify (no-op without it)
        core, loop = self._core, self._loop
        if core is not None and loop is not None:
            try:
                core.shutdown(loop.time())
            except Exception:
                log_ike.exception("shutdown of the IKE core failed")
            self.pump()
            deadline = loop.time() + SHUTDOWN_GRACE
            while loop.time() < deadline and core.sa_counts().ike:
                await asyncio.sleep(0.05)
                self.pump()
        await self.close()

    async def close(self) -> None:
        """Release everything (idempotent)."""
        for h in (self._timer, self._housekeeping):
            if h is not None:
                h.cancel()
        self._timer = self._housekeeping = None
        if self.metrics is not None:
            await self.metrics.close()
            self.metrics = None
        if self.control is not None:
            await self.control.close()
            self.control = None
        if self.vici is not None:
            await self.vici.close()
            self.vici = None
        loop = self._loop
        for us in self.udp:
            if loop is not None:
                loop.remove_reader(us.fd)
            us.close()
        self.udp.clear()
        self.vips.close()  # our virtual IPs off the TUN, vip_hook "down"
        if self.eap_backend is not None:
            self.eap_backend.close()
            self.eap_backend = None
        if self.accounting is not None:
            self.accounting.close()  # Stop (Admin-Reboot) for what is still open
            self.accounting = None
        if self.hooks is not None:
            await self.hooks.close()
        dp = self._dp
        if dp is not None:
            dp.close()
            if dp.tun is not None:
                if loop is not None and dp.tun.fd >= 0:
                    loop.remove_reader(dp.tun.fd)
                dp.tun.close()
                dp.tun = None
        self.cmds.close()

    # ------------------------------------------------------------------ policies

    def apply_policies(self, conns: Iterable[ConnectionConfig]) -> None:
        """Trap policies and TUN routes for the configured children (RFC 4301 §4.4.1)."""
        traps = []
        for c in conns:
            for ch in c.children:
                if ch.start_action == StartAction.TRAP:
                    traps.append((ch.local_ts, ch.remote_ts, TrapPolicy(c.name, ch.name)))
                if ch.mode == Mode.TUNNEL:
                    for s in ch.remote_ts:
                        self._route(s, c.remote_addrs)
        self.dp.set_traps(traps)

    def _route(self, sel: SelectorLike, peers: Iterable[str], sources: Iterable[str] = ()) -> None:
        dp = self.dp
        if dp.tun is None:
            return
        # the configured peers plus those we have SAs with (a "%any" responder's peers);
        # ``sources``: our virtual IPs for this child, preferred as the source (§2.19)
        addrs = (*sources, *self.config.tun_addresses)
        route_selector(dp.tun, sel, peers, addrs, known=dp.peers)

    def _trap_dead_children(self, conn_name: str, children: Sequence[str]) -> None:
        """dpd_action = trap (the child's own or inherited): a trap policy for each of
        ``children``, so the next matching packet re-initiates it.  It stays, like a
        ``start_action = trap`` policy, until the next reload (installed SAs win)."""
        conn = next((c for c in self.config.connections if c.name == conn_name), None)
        for ch in conn.children if conn is not None else ():
            if ch.name in children and ch.start_action != StartAction.TRAP:
                self.dp.add_trap(ch.local_ts, ch.remote_ts, TrapPolicy(conn_name, ch.name))
                log_child.info("trap policy for %s/%s installed (peer dead)", conn_name, ch.name)

    # ------------------------------------------------------------------ IKE plumbing

    def now(self) -> float:
        return self.loop.time()

    def initiate(self, conn: str, child: str | None, *, persistent: bool = False) -> None:
        """Start ``conn``/``child``; ``persistent`` (start_action = start): keep
        re-initiating while the peer does not answer (``keyingtries``)."""
        log_ike.info("initiating %s%s", conn, f" (child {child})" if child else "")
        if self.metrics is not None:
            self.metrics.initiated(conn, self.now())
        self.core.initiate(conn, child, self.now(), persistent=persistent)
        self.pump()

    def pump(self) -> None:
        """Send what the core wants sent, consume its events, re-arm its timer.

        Only handling an event can call into the core again (an install that fails
        deletes the Child SA, a trap initiates); sending cannot.  So another round
        follows only a round that handled events."""
        core, loop = self._core, self._loop
        if core is None or loop is None:
            return
        for _ in range(8):  # events can produce datagrams (e.g. trap -> initiate)
            for data, local, remote in core.datagrams_to_send(loop.time()):
                self._send_ike(data, local, remote)
            n = 0
            while (e := core.next_event()) is not None:
                n += 1
                try:
                    self._on_event(e)
                except Exception:
                    log.exception("handling %s failed", type(e).__name__)
            if not n:
                break
        # NAT keepalives the core says are due (RFC 3948 §2.3, §4): the single octet
        # 0xFF, without a non-ESP marker, from the IKE SA's (floated) local address
        for local, remote in core.keepalives_to_send(loop.time()):
            self._send_ike(NAT_KEEPALIVE, local, remote)
        self._arm_timer()

    def _arm_timer(self) -> None:
        """Have the loop call :meth:`_on_timer` at the core's next deadline.

        A timer already armed for that deadline or an earlier one stays: the core
        handles only what is due (``handle_timer``), so an early call just arms the
        timer again, here.  While responders set up tunnels the earliest deadline
        moves later with almost every handshake (the oldest half-open SA completes and
        its timeout goes): re-arming for each cost a cancel and a heap push in the
        loop per handshake, the early calls cost one no-op per timeout period."""
        when = self.core.next_timer()
        timer = self._timer
        if timer is not None:
            if when is not None and timer.when() <= when:
                return
            timer.cancel()
            self._timer = None
        if when is not None:
            self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        try:
            self.core.handle_timer(self.now())
        except Exception:
            log_ike.exception("IKE timer handling failed")
        self.pump()

    def _send_ike(self, data: bytes, local: Address, remote: Address) -> None:
        us = socket_for(self.udp, local, remote)
        if us is None:
            log_ike.warning(
                "no socket for %s -> %s", nat.format_endpoint(local), nat.format_endpoint(remote)
            )
            return
        if us.natt and data != NAT_KEEPALIVE:
            data = NON_ESP_MARKER + data  # RFC 3948 §2.2
        us.sendto(data, remote, local[0] or None)

    def _on_udp_readable(self, us: UdpSocket) -> None:
        dp = self._dp
        if dp is not None and dp.on_udp_readable(us):
            self.pump()

    def _on_ike(self, data: bytes, local: Address, remote: Address) -> None:
        """An IKE datagram from the data plane's UDP drain: to the core."""
        tun = self.dp.tun
        if tun is not None:
            unroute_peer(tun, remote[0])
        if local[0] in ("0.0.0.0", "::"):
            # a wildcard socket without IP_PKTINFO: ask the routing table which local
            # address answers this peer (the NAT-D hashes cover it, RFC 7296 §2.23)
            ip = self.source_addresses(remote[0])
            if ip is not None:
                local = (ip, local[1])
        try:
            self.core.receive_datagram(data, local, remote, self.now())
        except Exception:
            self.dp.drops.ike_errors += 1
            log_ike.exception(
                "IKE datagram from %s made the core fail", nat.format_endpoint(remote)
            )

    # ------------------------------------------------------------------ data-plane reports

    def _on_report(self, r: Report) -> None:
        """An immediate report of the data plane, fed to the core."""
        match r:
            case UnknownSpi():
                # the core may send N(INVALID_SPI) (RFC 7296 §2.21.4), rate-limited
                if self.core.unknown_esp_spi(r.spi, r.src, self.now()):
                    self.pump()
            case PeerMoved():
                # the core decides (RFC 7296 §2.23); PeerAddressChanged moves the SAs
                self.core.esp_activity(r.spi_in, self.now(), r.src, r.seq)
                self.pump()
            case TrapHit():
                try:
                    self.initiate(r.conn, r.child)
                except Exception:
                    log_ike.exception("trap-initiating %s failed", r.conn)
            case _:
                assert_never(r)

    def _on_housekeeping(self) -> None:
        self._housekeeping = self.loop.call_later(TRAFFIC_REPORT_INTERVAL, self._on_housekeeping)
        try:
            self.report_traffic()
        except Exception:
            log.exception("reporting traffic to the IKE core failed")
        sweep_frozen_garbage()

    def report_traffic(self) -> None:
        """Report per-SA volumes, authenticated arrivals (DPD, RFC 7296 §2.4; lifetimes,
        RFC 7296 §2.8) and ESP errors (RFC 4303 §3.4.3, §3.4.4) to the core."""
        core = self.core
        now = self.now()
        errors, traffic = self.dp.traffic_reports(now)
        for e in errors:
            core.esp_errors(
                e.spi_in,
                now,
                auth=e.auth,
                replay=e.replay,
                malformed=e.malformed,
                selectors=e.selectors,
            )
        for t in traffic:
            if t.new_in:
                core.esp_activity(t.spi_in, t.last_in)
            core.notify_traffic(
                t.spi_in,
                now,
                bytes_in=t.bytes_in,
                packets_in=t.packets_in,
                bytes_out=t.bytes_out,
                packets_out=t.packets_out,
                seq_out=t.seq_out,
            )
        if traffic:
            self.pump()

    # ------------------------------------------------------------------ events

    def _on_event(self, e: ev.Event) -> None:
        if self.metrics is not None:
            self.metrics.on_event(e)  # counts (a Child SA's traffic comes by take_changed)
        if self.vici is not None:
            self.vici.on_event(e)  # VICI clients' events; never raises
        match e:
            case ev.ChildSaInstalled():
                ok = self._install(e.info)
                what = "CHILD_SA installed" if ok else "CHILD_SA not installed (see the log)"
                self.cmds.resolve_waiters(e.info.conn, e.info.child, ok, what)
            case ev.ChildSaRekeyed():
                if self._install(e.info):
                    log_child.info(
                        "child %s rekeyed: %08x -> %08x",
                        e.info.child,
                        e.old_spi_in,
                        e.info.spi_in,
                    )
            case ev.ChildSaDeleted():
                gone = self.dp.uninstall(e.spi_in, e.reason)
                if gone is not None and self.accounting is not None:
                    self.accounting.child_gone(gone.ike_id, _usage_of((gone,)))
            case ev.ChildSaFailed():
                log_child.warning("child %s/%s failed: %s", e.conn, e.child, e.reason)
                self.dp.hold_traps(e.conn, e.child, self.now())
                self.cmds.resolve_waiters(e.conn, e.child, False, f"CHILD_SA failed: {e.reason}")
            case ev.IkeSaEstablished():
                self._ike_established(e)
                if self.accounting is not None:
                    self.accounting.established(e.ike_id, e.conn, e.local, e.remote)
            case ev.IkeSaRekeyed():
                log_ike.info("IKE SA #%d rekeyed to #%d", e.old_id, e.new_id)
                self.dp.ike_rekeyed(e.old_id, e.new_id)
                self.vips.rekeyed(e.old_id, e.new_id)
                if self.accounting is not None:
                    self.accounting.rekeyed(e.old_id, e.new_id)
                self._keylog_ike(e.keys)
            case ev.IkeSaDeleted():
                log_ike.info("IKE SA %s #%d deleted: %s", e.conn, e.ike_id, e.reason)
                self.vips.gone(e.ike_id)
                self._forget_eap(e.ike_id)
                if self.accounting is not None:
                    self.accounting.deleted(e.ike_id, e.reason)
                self.cmds.liveness_failed(e.ike_id, "is gone")
            case ev.IkeSaFailed():
                log_ike.warning("IKE SA %s #%d failed: %s", e.conn, e.ike_id, e.reason)
                self.vips.gone(e.ike_id)
                self._forget_eap(e.ike_id)
                if self.accounting is not None:
                    self.accounting.deleted(e.ike_id, e.reason)
                self.dp.hold_traps(e.conn, None, self.now())
                self.cmds.resolve_waiters(e.conn, None, False, f"IKE SA failed: {e.reason}")
                self.cmds.liveness_failed(e.ike_id, "is gone")
            case ev.PeerDead():
                log_ike.warning(
                    "peer of %s #%d is dead (action %s)", e.conn, e.ike_id, e.action.value
                )
                self._trap_dead_children(e.conn, e.children_with(DpdAction.TRAP))
                if self.accounting is not None:  # RFC 2866 §5.10: Lost-Service
                    self.accounting.cause(e.ike_id, TerminateCause.LOST_SERVICE)
                self.cmds.liveness_failed(e.ike_id, "lost its peer (dead)")
            case ev.PeerAddressChanged():
                log_ike.info(
                    "peer of IKE SA #%d moved %s -> %s",
                    e.ike_id,
                    nat.format_endpoint(e.old),
                    nat.format_endpoint(e.new),
                )
                self.dp.peer_address_changed(e.ike_id, e.new)
            case ev.LivenessAnswered():
                self.cmds.liveness_answered(e.ike_id, e.rtt)
            case ev.NotifyReceived():
                log_ike.debug("notify %d received on IKE SA #%d", e.type, e.ike_id)
            case ev.EapBackendRequest():
                self._eap_backend_request(e)
            case ev.VirtualIpsAssigned():
                self.vips.assigned(e)
                if self.accounting is not None:
                    self.accounting.virtual_ips(e.ike_id, e.remote)
            case _:
                assert_never(e)

    def _child_usage(self, ike_id: int) -> Usage:
        """What the installed Child SAs of IKE SA ``ike_id`` carried (accounting)."""
        return _usage_of(self.dp.by_ike.get(ike_id, {}).values())

    def _close_unaccounted(self, ike_id: int, reason: str) -> None:
        """``accounting_close_on_timeout``: no RADIUS server acknowledged the session's
        Start; delete the IKE SA (DELETE sent)."""
        log_ike.warning("IKE SA #%d: %s, deleting it", ike_id, reason)
        try:
            self.core.terminate(ike_id, self.now())
        except KeyError:
            return  # gone already
        self.pump()

    def _eap_backend_request(self, e: ev.EapBackendRequest) -> None:
        """EAP to relay to the AAA backend; without one the client is refused at once
        (the core answers with EAP Failure)."""
        if self.eap_backend is not None:
            self.eap_backend.submit(e)
            return
        log_ike.warning(
            "IKE SA %s #%d: EAP needs an AAA backend (eap-radius) and none is configured: "
            "refusing %s",
            e.conn,
            e.ike_id,
            nat.format_endpoint(e.remote),
        )
        reply = BackendReply(BackendVerdict.UNREACHABLE, reason="no AAA backend configured")
        self.core.eap_backend_reply(e.ike_id, reply, self.now())

    def _eap_backend_reply(self, ike_id: int, reply: BackendReply) -> None:
        """The RADIUS client's verdict for IKE SA ``ike_id``: to the core, then send
        what it answers (the held IKE_AUTH response)."""
        if self._core is None:
            return
        self.core.eap_backend_reply(ike_id, reply, self.now())
        self.pump()

    def _forget_eap(self, ike_id: int) -> None:
        """An IKE SA ended: its EAP-RADIUS conversation (State, requests) goes too."""
        if self.eap_backend is not None:
            self.eap_backend.forget(ike_id)

    def _ike_established(self, e: ev.IkeSaEstablished) -> None:
        if log_ike.isEnabledFor(logging.INFO):  # one per handshake: skip the arguments
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
        self._keylog_ike(e.keys)

    def _keylog_ike(self, k: ev.IkeSaKeyMaterial | None) -> None:
        """Log SK_e*/SK_a* of a new IKE SA (only with a key log configured)."""
        if self.keylog is None or k is None:
            return
        line = ikev2_line(
            k.spi_i, k.spi_r, k.encr_id, k.key_bits, k.integ_id,
            k.sk_ei, k.sk_er, k.sk_ai, k.sk_ar,
        )  # fmt: skip
        self.keylog.ike(line)

    def _install(self, info: ev.ChildSaInfo) -> bool:
        """Put a negotiated Child SA into the data plane, route its remote selectors,
        log its keys.

        False when the data plane cannot carry it, for whatever reason: a mode other
        than tunnel (refused by :func:`unsupported_config` at start and reload;
        reachable only with a programmatic configuration), keys or an algorithm ESP
        refuses (``EspConfigError``), a socket or route that cannot be set up.  Such a
        Child SA is deleted again at the IKE level (DELETE sent, counted in the data
        plane's ``install_failed``) rather than left half-installed: negotiated in
        the core, carrying nothing (a blackhole)."""
        if info.mode is not Mode.TUNNEL:
            why = f"{info.mode.value} mode is not supported by the TUN data plane"
            self._install_failed(info, why)
            return False
        try:
            state = self.dp.install(info)
            if state is None:
                raise ValueError("the ESP data plane refused it (see the log)")
            try:
                sources = self.vips.sources(info.ike_id)  # our virtual IPs (§2.19)
                for s in state.remote_ts:
                    self._route(s, [state.remote[0]], sources)
            except Exception:
                self.dp.uninstall(info.spi_in, "cannot route its selectors")
                raise
        except Exception as e:  # any reason: never leave a blackhole behind
            self._install_failed(info, f"{type(e).__name__}: {e}")
            return False
        if self.keylog is not None:
            self._keylog_esp(state)
        return True

    def _install_failed(self, info: ev.ChildSaInfo, why: str) -> None:
        """A Child SA the data plane cannot carry: log, count, delete it in the core."""
        self.dp.drops.install_failed += 1
        log_child.error(
            "child %s{%08x/%08x} of IKE SA #%d cannot be installed (%s): deleting it",
            info.child,
            info.spi_in,
            info.spi_out,
            info.ike_id,
            why,
        )
        try:
            self.core.delete_child(info.ike_id, info.spi_in, self.now())
        except (KeyError, ValueError) as e:
            log_child.debug("deleting child %08x: %s", info.spi_in, e)

    def _keylog_esp(self, c: ChildState) -> None:
        assert self.keylog is not None
        i, (local, remote) = c.info, (c.local[0], c.remote[0])
        self.keylog.esp(
            esp_sa_line(
                remote, local, i.spi_in, i.encr_id, i.encr_key_in, i.integ_id, i.integ_key_in
            )
        )
        self.keylog.esp(
            esp_sa_line(
                local, remote, i.spi_out, i.encr_id, i.encr_key_out, i.integ_id, i.integ_key_out
            )
        )

    def _vip_hook(self, env: dict[str, str]) -> None:
        """Run ``[daemon] vip_hook`` (if set) for a virtual IP change (README)."""
        path = self.config.vip_hook
        if not path or self._loop is None:
            return
        if self.hooks is None or self.hooks.path != path:
            self.hooks = HookRunner(path, self._loop)
        self.hooks.submit(env)

    # ------------------------------------------------------------------ control

    async def handle_request(self, req: dict[str, Any]) -> Any:
        return await self.cmds.handle_request(req)

    def status(self) -> dict[str, Any]:
        return self.cmds.status()

    def reload(self) -> dict[str, Any]:
        return self.cmds.reload()


def _reload_on_sighup(daemon: Daemon, sd: sdnotify.DaemonNotifier) -> None:
    """SIGHUP: re-read the configuration, like ``pyipsec reload`` (systemd hears
    RELOADING=1, then READY=1 whether or not the new file was good)."""
    if not sd.is_ready or daemon._stop.is_set():
        logging.getLogger("pyipsec.cfg").warning("SIGHUP while starting or stopping: ignored")
        return
    sd.reloading()
    try:
        daemon.reload()
    except Exception as e:  # a bad file changes nothing (ControlError), and never kills us
        logging.getLogger("pyipsec.cfg").error("reload on SIGHUP failed: %s", e)
    finally:
        sd.reloaded()


async def _amain(daemon: Daemon) -> int:
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.request_stop)
    sd = sdnotify.DaemonNotifier(lambda: sdnotify.sa_counts(daemon.core))
    loop.add_signal_handler(signal.SIGHUP, _reload_on_sighup, daemon, sd)
    try:
        await daemon.start()
        tune_gc()
        log.info("pyipsec daemon running (pid %d)", os.getpid())
        sd.ready()  # systemd Type=notify: sockets bound, configuration loaded
        await daemon.serve()
    finally:
        sd.close()
        for sig in signals:
            loop.remove_signal_handler(sig)
    return 0


def run_daemon(
    config: DaemonConfig,
    *,
    config_path: str | None = None,
    keylog_path: str | None = None,
    manager_factory: Callable[[DaemonConfig], IkeCore] | None = None,
) -> int:
    """Run the daemon in the foreground until SIGTERM/SIGINT or ``stop``."""
    daemon = Daemon(
        config,
        config_path=config_path,
        keylog_path=keylog_path,
        manager_factory=manager_factory,
    )
    return asyncio.run(_amain(daemon))
