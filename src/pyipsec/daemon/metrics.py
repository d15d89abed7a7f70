"""Prometheus metrics (``[daemon] metrics = "127.0.0.1:9712"``; opt-in).

Threading: ``prometheus_client``'s HTTP server answers scrapes in its own thread, but
the IKE core and the data plane belong to the asyncio loop thread and are not
thread-safe.  So the loop thread prepares an immutable :class:`Snapshot` every
:data:`REFRESH_INTERVAL` seconds (a ``loop.call_later`` timer) and on every event it
counts, and publishes it by replacing one attribute (atomic in CPython); the
collector only reads that reference.  A scrape never touches the core, never waits
for the loop (a busy or stuck loop cannot hang a scrape; it only makes the numbers
older: ``pyipsec_metrics_snapshot_age_seconds``) and costs nothing per packet.  The
alternative, ``loop.call_soon_threadsafe`` + a future with a timeout, would give
fresher numbers but ties the scrape latency to the loop and leaves orphaned
callbacks behind on a timeout.

Counters never go backwards: the traffic of every Child SA ever installed is summed
per (connection, child) in ``totals``, kept up to date incrementally: a refresh
visits only the SAs whose counters changed or that were removed since the previous
one (:meth:`DataPlane.take_changed`), never every SA; an SA the data plane removed is
handed over with its last values by the same call.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from ..config.loader import parse_metrics_address
from ..ikev2 import events as ev
from ..ikev2.counters import MESSAGE_COUNTERS
from ..ikev2.state import IKE_FINAL, ChildSaState, IkeSaState
from ..recovery import ErrorKind
from .dataplane import ChildState, DropCounters

if TYPE_CHECKING:
    from .runtime import Daemon

__all__ = ["HANDSHAKE_BUCKETS", "REFRESH_INTERVAL", "Metrics", "MetricsCollector", "Snapshot"]

log = logging.getLogger("pyipsec.net")

REFRESH_INTERVAL = 1.0
#: upper bounds (seconds) of the handshake latency histogram
HANDSHAKE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: an ``initiate`` older than this when its IKE SA comes up is not measured (the SA
#: existed already, or the core re-initiated on its own much later)
HANDSHAKE_MAX_AGE = 120.0

#: per Child SA counters, in this order
TRAFFIC_FIELDS = (
    "bytes_in",
    "packets_in",
    "bytes_out",
    "packets_out",
    "drops_selector",
    "drops_send",
    "drops_encap",
)
Traffic = tuple[int, ...]
ConnChild = tuple[str, str]


def _traffic(c: ChildState) -> Traffic:
    return (
        c.bytes_in, c.packets_in, c.bytes_out, c.packets_out,
        c.drops_selector, c.drops_send, c.drops_encap,
    )  # fmt: skip


_ZERO: Traffic = (0,) * len(TRAFFIC_FIELDS)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one scrape reports, prepared on the loop thread."""

    taken: float  # time.monotonic()
    ike_by_state: tuple[tuple[str, int], ...]
    half_open: int
    half_open_bytes: tuple[int, int, int]  # half-open responders: held, peak, budget
    child_by_state: tuple[tuple[str, int], ...]
    child_installed: int  # in the data plane
    traffic: tuple[tuple[str, str, Traffic], ...]  # conn, child, TRAFFIC_FIELDS
    drops: tuple[tuple[str, int], ...]
    errors: tuple[tuple[str, int], ...]
    ike_established: tuple[tuple[str, str, int], ...]  # conn, role, n
    ike_failed: tuple[tuple[str, int], ...]
    ike_rekeys: tuple[tuple[str, int], ...]
    child_rekeys: tuple[tuple[str, str, int], ...]
    dpd_failures: tuple[tuple[str, int], ...]
    handshake_buckets: tuple[int, ...]  # cumulative, one per HANDSHAKE_BUCKETS + +Inf
    handshake_sum: float
    ike_messages: tuple[tuple[str, str, str, int], ...] = ()  # exchange, direction, kind, n


def ike_message_counts(counters: dict[str, int]) -> list[tuple[str, str, str, int]]:
    """``(exchange, direction, kind, n)`` of the message counters among ``counters``
    (``ike-auth-in-req`` -> ``("IKE_AUTH", "in", "request", n)``)."""
    return [(*MESSAGE_COUNTERS[name], n) for name, n in counters.items()
            if name in MESSAGE_COUNTERS]  # fmt: skip


class MetricsCollector(Collector):
    """Turns the latest :class:`Snapshot` into metric families (the HTTP thread)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        s = self.metrics.snapshot
        if s is None:
            return
        age = GaugeMetricFamily(
            "pyipsec_metrics_snapshot_age_seconds",
            "Seconds since the daemon prepared the numbers of this scrape",
        )
        age.add_metric([], max(0.0, time.monotonic() - s.taken))
        yield age
        yield from _sa_families(s)
        yield from _traffic_families(s)
        yield from _error_families(s)
        yield from _event_families(s)


def _sa_families(s: Snapshot) -> Iterator[Metric]:
    """IKE and Child SAs by state (gauges)."""
    ike = GaugeMetricFamily("pyipsec_ike_sas", "IKE SAs by state", labels=["state"])
    for state, n in s.ike_by_state:
        ike.add_metric([state], n)
    yield ike
    ho = GaugeMetricFamily(
        "pyipsec_ike_sas_half_open", "IKE SAs not yet established (either role)"
    )
    ho.add_metric([], s.half_open)
    yield ho
    held, peak, budget = s.half_open_bytes
    for name, doc, value in (
        ("pyipsec_half_open_bytes", "Bytes half-open responder IKE SAs hold (§2.6)", held),
        ("pyipsec_half_open_bytes_peak", "The most they have held so far", peak),
        ("pyipsec_half_open_bytes_budget", "half_open_memory (0 = no byte budget)", budget),
    ):
        g = GaugeMetricFamily(name, doc)
        g.add_metric([], value)
        yield g
    ch = GaugeMetricFamily(
        "pyipsec_child_sas", "Child SAs by state (IKE core)", labels=["state"]
    )
    for state, n in s.child_by_state:
        ch.add_metric([state], n)
    yield ch
    inst = GaugeMetricFamily(
        "pyipsec_child_sas_installed", "Child SAs installed in the ESP data plane"
    )
    inst.add_metric([], s.child_installed)
    yield inst


def _traffic_families(s: Snapshot) -> Iterator[Metric]:
    """Per (connection, child) traffic and drops, and the data plane's own drops."""
    labels = ["conn", "child"]
    fams = {
        "bytes_in": CounterMetricFamily(
            "pyipsec_child_bytes_in", "ESP payload octets received (decrypted)", labels=labels
        ),
        "packets_in": CounterMetricFamily(
            "pyipsec_child_packets_in", "ESP packets received and accepted", labels=labels
        ),
        "bytes_out": CounterMetricFamily(
            "pyipsec_child_bytes_out", "Octets sent protected by ESP", labels=labels
        ),
        "packets_out": CounterMetricFamily(
            "pyipsec_child_packets_out", "ESP packets sent", labels=labels
        ),
    }
    drops = CounterMetricFamily(
        "pyipsec_child_drops",
        "Packets of a Child SA dropped by the data plane, by kind",
        labels=["conn", "child", "kind"],
    )
    for conn, child, t in s.traffic:
        for name, value in zip(TRAFFIC_FIELDS, t, strict=True):
            if name in fams:
                fams[name].add_metric([conn, child], value)
            else:
                drops.add_metric([conn, child, name.removeprefix("drops_")], value)
    yield from fams.values()
    yield drops
    dp = CounterMetricFamily(
        "pyipsec_dataplane_drops",
        "Data-plane drops that belong to no SA, by kind",
        labels=["kind"],
    )
    for kind, n in s.drops:
        dp.add_metric([kind], n)
    yield dp


def _error_families(s: Snapshot) -> Iterator[Metric]:
    """The core's error counters (recovery.ErrorKind), and two of them on their own."""
    err = CounterMetricFamily(
        "pyipsec_ike_errors", "Errors the IKE core counted, by kind", labels=["kind"]
    )
    retx = 0
    cookies = 0
    for kind, n in s.errors:
        err.add_metric([kind], n)
        if kind == ErrorKind.RETRANSMITS_EXHAUSTED.value:
            retx = n
        elif kind == ErrorKind.COOKIE_REQUIRED.value:
            cookies = n
    yield err
    rt = CounterMetricFamily(
        "pyipsec_ike_retransmits_exhausted",
        "IKE requests given up after the last retransmission",
    )
    rt.add_metric([], retx)
    yield rt
    ck = CounterMetricFamily(
        "pyipsec_ike_cookie_required_received",
        "COOKIE notifications received from peers (we had to retry with a cookie)",
    )
    ck.add_metric([], cookies)
    yield ck


def _event_families(s: Snapshot) -> Iterator[Metric]:
    """Counters and the handshake histogram built from the core's events."""
    est = CounterMetricFamily(
        "pyipsec_ike_established",
        "IKE SAs established, by connection and our role",
        labels=["conn", "role"],
    )
    for conn, role, n in s.ike_established:
        est.add_metric([conn, role], n)
    yield est
    yield _per_conn("pyipsec_ike_failed", "IKE SAs that failed to come up", s.ike_failed)
    yield _per_conn("pyipsec_ike_rekeys", "IKE SA rekeys (RFC 7296 §2.18)", s.ike_rekeys)
    msgs = CounterMetricFamily(
        "pyipsec_ike_messages",
        "IKE messages accepted (in) or built (out), by exchange and kind",
        labels=["exchange", "direction", "kind"],
    )
    for exchange, direction, kind, n in s.ike_messages:
        msgs.add_metric([exchange, direction, kind], n)
    yield msgs
    cr = CounterMetricFamily(
        "pyipsec_child_rekeys", "Child SA rekeys (RFC 7296 §2.8)", labels=["conn", "child"]
    )
    for conn, child, n in s.child_rekeys:
        cr.add_metric([conn, child], n)
    yield cr
    yield _per_conn(
        "pyipsec_dpd_failures", "Peers declared dead (RFC 7296 §2.4)", s.dpd_failures
    )
    h = HistogramMetricFamily(
        "pyipsec_ike_handshake_seconds",
        "Time from the daemon's initiate (start action, trap, control 'up') to the "
        "IKE SA being established (IKE_SA_INIT + IKE_AUTH); initiator only",
        buckets=[
            (str(b), n)
            for b, n in zip((*HANDSHAKE_BUCKETS, "+Inf"), s.handshake_buckets, strict=True)
        ],
        sum_value=s.handshake_sum,
    )
    yield h


def _per_conn(name: str, doc: str, items: tuple[tuple[str, int], ...]) -> CounterMetricFamily:
    f = CounterMetricFamily(name, doc, labels=["conn"])
    for conn, n in items:
        f.add_metric([conn], n)
    return f


class Metrics:
    """The loop-thread half: counts events, refreshes the snapshot, runs the server."""

    def __init__(self, daemon: Daemon, address: str) -> None:
        parsed = parse_metrics_address(address)
        if parsed is None:
            raise ValueError("metrics are off (empty address)")
        self.daemon = daemon
        self.host, self.port = parsed
        self.snapshot: Snapshot | None = None
        self.server: WSGIServer | None = None
        self.thread: threading.Thread | None = None
        self._timer: asyncio.TimerHandle | None = None
        # event counters (loop thread only)
        self.ike_established: dict[tuple[str, str], int] = {}
        self.ike_failed: dict[str, int] = {}
        self.ike_rekeys: dict[str, int] = {}
        self.child_rekeys: dict[ConnChild, int] = {}
        self.dpd_failures: dict[str, int] = {}
        self.pending: dict[str, float] = {}  # conn -> loop time of the first initiate
        self.hs_counts = [0] * (len(HANDSHAKE_BUCKETS) + 1)
        self.hs_sum = 0.0
        # traffic of every Child SA so far, and the values counted of the installed
        # ones (SPI -> SA, values) that carried any
        self.totals: dict[ConnChild, Traffic] = {}
        self._seen: dict[int, tuple[ChildState, Traffic]] = {}
        self._primed = False  # the SAs installed before the first refresh are counted
        self._traffic: tuple[tuple[str, str, Traffic], ...] = ()
        self._traffic_stale = True

    # ------------------------------------------------------------ server

    def start(self) -> None:
        """Take a first snapshot, listen (raises OSError), start the refresh timer."""
        self.refresh()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(MetricsCollector(self))
        self.server, self.thread = start_http_server(self.port, self.host, registry)
        self.port = self.server.server_port
        self._timer = self.daemon.loop.call_later(REFRESH_INTERVAL, self._tick)
        log.info("metrics on http://%s/metrics", self.address)

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        server, self.server = self.server, None
        if server is not None:
            # shutdown() waits for serve_forever's poll: not on the loop thread
            await asyncio.to_thread(server.shutdown)
            server.server_close()
        if self.thread is not None:
            self.thread.join(timeout=1.0)
            self.thread = None

    def _tick(self) -> None:
        self._timer = self.daemon.loop.call_later(REFRESH_INTERVAL, self._tick)
        try:
            self.refresh()
        except Exception:
            log.exception("refreshing the metrics snapshot failed")

    # ------------------------------------------------------------ hooks (loop thread)

    def initiated(self, conn: str, now: float) -> None:
        """The daemon asked the core to initiate ``conn`` (handshake latency start)."""
        t = self.pending.get(conn)
        if t is None or now - t > HANDSHAKE_MAX_AGE:
            self.pending[conn] = now

    def on_event(self, e: ev.Event) -> None:
        """One core event, before the daemon handles it (a deleted Child SA is still
        in the data plane here).  Cheap: the next refresh publishes it."""
        match e:
            case ev.IkeSaEstablished():
                role = "initiator" if e.initiator else "responder"
                key = (e.conn, role)
                self.ike_established[key] = self.ike_established.get(key, 0) + 1
                t = self.pending.pop(e.conn, None)
                if e.initiator and t is not None:
                    self._observe(self.daemon.now() - t)
            case ev.IkeSaFailed():
                self.ike_failed[e.conn] = self.ike_failed.get(e.conn, 0) + 1
                self.pending.pop(e.conn, None)
            case ev.IkeSaRekeyed():
                self.ike_rekeys[e.conn] = self.ike_rekeys.get(e.conn, 0) + 1
            case ev.ChildSaRekeyed():
                k = (e.info.conn, e.info.child)
                self.child_rekeys[k] = self.child_rekeys.get(k, 0) + 1
            case ev.ChildSaInstalled():
                # an initiate on an existing IKE SA only adds a child: nothing to time
                self.pending.pop(e.info.conn, None)
            case ev.ChildSaFailed():
                self.pending.pop(e.conn, None)
            case ev.PeerDead():
                self.dpd_failures[e.conn] = self.dpd_failures.get(e.conn, 0) + 1
            case _:
                pass

    def _observe(self, seconds: float) -> None:
        if not 0 <= seconds <= HANDSHAKE_MAX_AGE:
            return
        self.hs_counts[bisect.bisect_left(HANDSHAKE_BUCKETS, seconds)] += 1
        self.hs_sum += seconds

    def _count(self, c: ChildState) -> None:
        """Add what ``c`` carried since it was last counted to its (conn, child)."""
        spi = c.info.spi_in
        t = _traffic(c)
        seen = self._seen.get(spi)
        before = seen[1] if seen is not None and seen[0] is c else _ZERO
        if t == before:
            return
        k = (c.info.conn, c.info.child)
        total = self.totals.get(k, _ZERO)
        self.totals[k] = tuple(s + x - y for s, x, y in zip(total, t, before, strict=True))
        self._seen[spi] = (c, t)
        self._traffic_stale = True

    def _count_changed(self) -> None:
        """Count the SAs that changed or left since the last refresh (only those)."""
        dp = self.daemon.dp
        children = dp.children
        changed = dp.take_changed()
        if not self._primed:
            self._primed = True
            changed.update(dict.fromkeys(children.values()))
        for c in changed:
            spi = c.info.spi_in
            if children.get(spi) is c:
                self._count(c)
                continue
            seen = self._seen.get(spi)  # removed: counted one last time, then forgotten
            if seen is None or seen[0] is c:
                self._count(c)
                self._seen.pop(spi, None)

    # ------------------------------------------------------------ snapshot

    def refresh(self) -> None:
        """Prepare a new snapshot from the core and the data plane (loop thread)."""
        d = self.daemon
        core, dp = d.core, d.dp
        counts = core.sa_counts()  # counters: no walk over the IKE SAs
        live = counts.ike_by_state  # the final states are SAs lingering: not shown
        ike = {s.value: 0 if s in IKE_FINAL else live.get(s, 0) for s in IkeSaState}
        half_open = counts.half_open
        child = {s.value: counts.child_by_state.get(s, 0) for s in ChildSaState}
        self._count_changed()
        if self._traffic_stale:
            self._traffic_stale = False
            self._traffic = tuple((c, ch, t) for (c, ch), t in sorted(self.totals.items()))
        errors = {k.value: 0 for k in ErrorKind}
        errors.update(core.error_status())
        ho = core.half_open_status()
        drops = DropCounters.as_dict(dp.drops)
        cum, acc = [], 0
        for n in self.hs_counts:
            acc += n
            cum.append(acc)
        self.snapshot = Snapshot(
            taken=time.monotonic(),
            ike_by_state=tuple(ike.items()),
            half_open=half_open,
            half_open_bytes=(ho["bytes"], ho["peak"], ho["budget"]),
            child_by_state=tuple(child.items()),
            child_installed=len(dp.children),
            traffic=self._traffic,
            drops=tuple(drops.items()),
            errors=tuple(sorted(errors.items())),
            ike_established=tuple((c, r, n) for (c, r), n in sorted(self.ike_established.items())),
            ike_failed=tuple(sorted(self.ike_failed.items())),
            ike_rekeys=tuple(sorted(self.ike_rekeys.items())),
            child_rekeys=tuple((c, ch, n) for (c, ch), n in sorted(self.child_rekeys.items())),
            dpd_failures=tuple(sorted(self.dpd_failures.items())),
            handshake_buckets=tuple(cum),
            handshake_sum=self.hs_sum,
            ike_messages=tuple(ike_message_counts(core.counters().get("", {}))),
        )
