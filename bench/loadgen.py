"""IKEv2 load generator: many IKE SAs from one process (like strongSwan's load-tester).

Usage (as root, inside the initiator's network namespace; ``bench/bench_load.py`` runs it
for you)::

    ip netns exec NS python3 bench/loadgen.py --local 198.51.100.2 --remote 192.0.2.2 \\
        --tunnels 2000 --inflight 50

One :class:`~pyipsec.ikev2.manager.IkeManager` (the sans-I/O core, nothing of the daemon)
driven by a plain ``select`` loop with one UDP socket on port 500 and one on 4500 of
``--local``.  It holds ``--tunnels`` connections ``conn-0`` .. ``conn-<N-1>``, each with
its own identity (``--id-format``, default ``load-{n}@example.net``), one shared PSK and
no INITIAL_CONTACT, so that the responder sees N distinct peers on one address and
replaces none of them.  Each connection has one tunnel-mode child whose local selector is
the single inner address ``--inner`` with UDP port ``--base-port + n`` (RFC 5737 offers
no 2,000 distinct /32s) and whose remote selector is ``--remote-ts``; a responder with a
wider ``remote_ts`` narrows to it, so every Child SA has its own selectors.  No ESP is
sent: the generator only sets SAs up.

Handshakes (IKE_SA_INIT + IKE_AUTH with the first Child SA) start at ``--rate`` per
second (0 = no pacing) with at most ``--inflight`` unfinished at a time.  A tunnel is
done when its Child SA is installed (success) or when its IKE or Child SA fails.  The
result is one JSON object on stdout: ``established``, ``failed`` (and ``failures`` by
reason), ``retransmits`` (IKE requests we sent again, from the wire), ``cookies``
(COOKIE challenges received), ``wall`` (first initiate -> last tunnel done),
``rate`` (established / wall), setup latency (initiate -> Child SA installed:
``latency_ms`` median / p90 / p99 / max), ``inflight_mean`` (started, unfinished
handshakes on average over ``wall``, time-weighted: below ``--inflight`` only with
``--rate`` pacing, at the end, or when the slots are not refilled; a CPU-bound generator
keeps them full of handshakes whose answers wait in its socket buffer, so compare
``cpu_s`` per tunnel for that), ``cpu_s`` and ``max_rss_mib`` (this process),
``errors`` (the core's non-zero error counters).  With ``--mark K`` a progress line
``{"mark": K, "established": K, "elapsed": ..., "cpu_s": ..., ...}`` comes first, as
soon as K tunnels are established
(the caller reads the responder's CPU time then); the result line is the one with
``tunnels``.  With ``--hold`` the SAs are kept (the loop keeps answering) until stdin
reaches EOF, so that the caller can measure the responder with every tunnel up; then
the process exits without deleting them (the caller stops the responder).

Per tunnel the generator keeps its configuration, its IKE SA and a few dict/set
entries (no list is scanned per event), so 50,000+ tunnels cost memory in proportion
(``max_rss_mib``) and CPU per tunnel independent of their number.
"""

from __future__ import annotations

import argparse
import json
import resource
import select
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from _common import percentile  # first: it puts src/ on sys.path

# isort: split
from pyipsec.config.model import (
    ChildConfig,
    ConnectionConfig,
    DpdConfig,
    Lifetimes,
    RetransmitConfig,
    TrafficSelectorSpec,
)
from pyipsec.ikev2.events import (
    ChildSaFailed,
    ChildSaInstalled,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaFailed,
)
from pyipsec.ikev2.manager import IkeManager

IKE_SA_INIT = 34
FLAG_RESPONSE = 0x20
NOTIFY_COOKIE = 16390
NON_ESP_MARKER = b"\x00\x00\x00\x00"
NO_LIFETIME = Lifetimes(rekey_time=0.0, over_time=0.0, rand_time=0.0)
_IDLE_WAIT = 0.2  # seconds a select waits at most when nothing else is due


def build_connections(n: int, *, local: str, remote: str, psk: bytes, proposal: str,
                      esp: str, id_format: str = "load-{n}@example.net",
                      remote_id: str = "", inner: str = "203.0.113.1",
                      base_port: int = 10000, remote_ts: str = "203.0.113.64/26",
                      retransmit: RetransmitConfig | None = None) -> list[ConnectionConfig]:
    """``conn-0`` .. ``conn-<n-1>``: distinct identities and child selectors, one PSK,
    no INITIAL_CONTACT, no rekeying, no DPD."""
    if base_port + n - 1 > 65535:
        raise ValueError(f"--base-port {base_port} + {n} tunnels exceeds port 65535")
    rts = (TrafficSelectorSpec.from_network(remote_ts),)
    inner_ip = TrafficSelectorSpec.from_network(f"{inner}/32").start
    conns = []
    for i in range(n):
        port = base_port + i
        child = ChildConfig(
            name="net",
            local_ts=(TrafficSelectorSpec(inner_ip, inner_ip, 17, port, port),),
            remote_ts=rts,
            esp_proposals=(esp,),
            lifetimes=NO_LIFETIME,
        )
        conns.append(ConnectionConfig(
            name=f"conn-{i}",
            local_addrs=(local,),
            remote_addrs=(remote,),
            local_id=id_format.format(n=i),
            remote_id=remote_id,
            psk=psk,
            ike_proposals=(proposal,),
            lifetimes=NO_LIFETIME,
            dpd=DpdConfig(enabled=False, interval=0.0),
            retransmit=retransmit or RetransmitConfig(tries=3, timeout=2.0, base=1.5),
            children=(child,),
            initial_contact=False,
        ))
    return conns


class LoadGenerator:
    """The select loop around one IkeManager; :meth:`run` returns the result dict."""

    def __init__(self, conns: list[ConnectionConfig], *, local: str, rate: float = 0.0,
                 inflight: int = 50, timeout: float = 120.0, port: int = 500,
                 natt_port: int = 4500, mark: int = 0,
                 progress: Callable[[dict[str, Any]], None] | None = None) -> None:
        """``mark`` > 0: call ``progress`` with :meth:`mark_line` when that many tunnels
        are established (``main`` prints it as a JSON line before the result)."""
        self.conns = conns
        self.local = local
        self.rate = rate
        self.max_inflight = max(1, inflight)
        self.timeout = timeout
        self.mgr = IkeManager(conns, local_addresses=(local,))
        self.socks: dict[int, socket.socket] = {}
        for p in (port, natt_port):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            s.bind((local, p))
            s.setblocking(False)
            self.socks[p] = s
        self.by_fd = {s.fileno(): (p, s) for p, s in self.socks.items()}
        self.started_at: dict[str, float] = {}
        self.inflight: set[str] = set()
        self.done: set[str] = set()
        self.latencies: list[float] = []
        self.failures: Counter[str] = Counter()
        self.established = 0
        self.ike_established = 0
        self.deleted = 0
        self.retransmits = 0
        self.cookies = 0
        self.sent = 0
        self.received = 0
        self._seen_requests: set[bytes] = set()
        self.first_start: float | None = None
        self.last_done: float | None = None
        self.mark = mark
        self.progress = progress
        # time-weighted in-flight count: sum of len(inflight) * seconds, from first_start
        self._inflight_area = 0.0
        self._inflight_since: float | None = None
        self.started = 0  # set again by run()
        self._cpu0 = 0.0

    # ------------------------------------------------------------------ wire

    def _send_all(self, now: float) -> None:
        for data, local, remote in self.mgr.datagrams_to_send(now):
            if len(data) >= 28 and not data[19] & FLAG_RESPONSE:
                key = data[:28]  # SPIs, exchange, flags, message ID, length
                if key in self._seen_requests:
                    self.retransmits += 1
                else:
                    self._seen_requests.add(key)
            use_4500 = local[1] == 4500 or remote[1] == 4500
            sock = self.socks[4500 if local[1] == 4500 else 500]
            try:
                sock.sendto(NON_ESP_MARKER + data if use_4500 else data, remote)
                self.sent += 1
            except BlockingIOError:
                self.failures["send: EAGAIN"] += 1  # counted; the retransmit recovers
            except OSError as e:
                self.failures[f"send: {e.strerror}"] += 1
        for local, remote in self.mgr.keepalives_to_send(now):
            self.socks[local[1] if local[1] in self.socks else 4500].sendto(b"\xff", remote)

    def _receive(self, port: int, sock: socket.socket) -> None:
        while True:
            try:
                data, remote = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            now = time.monotonic()
            if port == 4500:
                if data[:4] != NON_ESP_MARKER:
                    continue  # ESP or keepalive: we carry no traffic
                data = data[4:]
            self.received += 1
            if 28 <= len(data) < 128 and data[18] == IKE_SA_INIT and data[19] & FLAG_RESPONSE \
                    and NOTIFY_COOKIE.to_bytes(2, "big") in data[28:]:
                self.cookies += 1  # cheap: a COOKIE notify in a short (KE-less) response
            self.mgr.receive_datagram(data, (self.local, port), remote[:2], now)

    # ------------------------------------------------------------------ events

    def _finish(self, conn: str, now: float) -> None:
        if conn in self.inflight:
            self.inflight.discard(conn)
            self.done.add(conn)
            self.last_done = now

    def _events(self, now: float) -> None:
        while (ev := self.mgr.next_event()) is not None:
            if isinstance(ev, ChildSaInstalled):
                conn = ev.info.conn
                if conn in self.inflight:
                    self.established += 1
                    self.latencies.append((now - self.started_at[conn]) * 1e3)
                    self._finish(conn, now)
                    if self.established == self.mark and self.progress is not None:
                        self.progress(self.mark_line(now))
            elif isinstance(ev, IkeSaEstablished):
                self.ike_established += 1
            elif isinstance(ev, IkeSaFailed):
                if ev.conn in self.inflight:
                    self.failures[f"ike: {ev.reason}"] += 1
                    self._finish(ev.conn, now)
            elif isinstance(ev, ChildSaFailed):
                if ev.conn in self.inflight:
                    self.failures[f"child: {ev.reason}"] += 1
                    self._finish(ev.conn, now)
            elif isinstance(ev, IkeSaDeleted):
                self.deleted += 1

    # ------------------------------------------------------------------ loop

    def _step(self, timeout: float) -> None:
        ready, _, _ = select.select(list(self.by_fd), [], [], max(0.0, timeout))
        for fd in ready:
            self._receive(*self.by_fd[fd])

    def _timers_and_events(self, now: float) -> None:
        """Due timers, then the events (which finish tunnels and so free slots)."""
        nt = self.mgr.next_timer()
        if nt is not None and nt <= now:
            self.mgr.handle_timer(now)
        self._events(now)

    def _flush(self, now: float) -> float:
        """Send what is queued; the select timeout until the next deadline (at most 0.2 s)."""
        self._send_all(now)
        nt = self.mgr.next_timer()
        return 0.2 if nt is None else min(0.2, nt - now)

    def _pump(self, now: float) -> float:
        """Timers, events and datagrams; the select timeout until the next deadline."""
        self._timers_and_events(now)
        return self._flush(now)

    def _start_handshakes(self, pending: list[str], now: float, t0: float) -> float:
        """Start handshakes from ``pending`` (popped from the end) while fewer than
        ``--inflight`` are unfinished and ``--rate`` allows; how long until the rate
        allows the next one (0.2 s when it does not limit)."""
        while pending and len(self.inflight) < self.max_inflight:
            if self.rate > 0 and self.started >= (now - t0) * self.rate:
                return min(_IDLE_WAIT, t0 + self.started / self.rate - now)
            name = pending.pop()
            self.started_at[name] = now
            self.inflight.add(name)
            if self.first_start is None:
                self.first_start = now
                self._inflight_since = now
            self.mgr.initiate(name, None, now)
            self.started += 1
        return _IDLE_WAIT

    def _account_inflight(self, now: float) -> None:
        """Add the in-flight count since the previous iteration to the time integral.

        Called at the top of each iteration: the count changes only inside an iteration
        (events and new handshakes, each stamped with the iteration's ``now``), so it was
        constant since the previous call."""
        if self._inflight_since is not None:
            self._inflight_area += len(self.inflight) * (now - self._inflight_since)
            self._inflight_since = now

    def mean_inflight(self, until: float) -> float:
        """Unfinished handshakes on average (time-weighted), first initiate -> ``until``."""
        if self.first_start is None or until <= self.first_start:
            return 0.0
        return self._inflight_area / (until - self.first_start)

    def mark_line(self, now: float) -> dict[str, Any]:
        """The progress line at ``--mark``: the bench reads the responder's CPU then."""
        first = self.first_start or now
        return {"mark": self.mark, "established": self.established,
                "failed": sum(self.failures.values()), "elapsed": round(now - first, 3),
                "inflight_mean": round(self.mean_inflight(now), 1),
                "cpu_s": round(_cpu() - self._cpu0, 3)}

    def run(self) -> dict[str, Any]:
        """Set every tunnel up (or give up at the timeout); the result dict.

        One iteration: due timers and the events (tunnels done), then new handshakes
        into the freed slots, then everything queued is sent, then one ``select`` (at
        most 0.2 s, less when a timer or the rate says so) reads what arrived.  The
        slots are refilled *before* the select: refilled after it, a batch of
        handshakes that all finished in the same iteration left nothing in flight while
        the select waited its full 0.2 s for an answer that could not come.
        """
        self._cpu0 = _cpu()
        t0 = time.monotonic()
        deadline = t0 + self.timeout
        pending = [c.name for c in reversed(self.conns)]
        self.started = 0
        while True:
            now = time.monotonic()
            self._account_inflight(now)
            self._timers_and_events(now)
            if not (pending or self.inflight) or now >= deadline:
                break
            wait = self._start_handshakes(pending, now, t0)
            wait = min(wait, self._flush(now))
            self._step(wait)
        end = time.monotonic()
        self._events(end)
        if self.inflight:
            self.failures["timeout (unfinished at the end)"] += len(self.inflight)
        first = self.first_start or t0
        last = self.last_done or end
        wall = last - first
        return {
            "tunnels": len(self.conns),
            "started": self.started,
            "established": self.established,
            "ike_established": self.ike_established,
            "failed": sum(self.failures.values()),
            "failures": dict(self.failures),
            "unfinished": len(self.inflight) + len(pending),
            "deleted_by_peer": self.deleted,
            "retransmits": self.retransmits,
            "cookies": self.cookies,
            "datagrams_sent": self.sent,
            "datagrams_received": self.received,
            "wall": round(wall, 3),
            "rate": round(self.established / wall, 1) if wall > 0 else 0.0,
            "latency_ms": {"median": round(percentile(self.latencies, 0.5), 1),
                           "p90": round(percentile(self.latencies, 0.9), 1),
                           "p99": round(percentile(self.latencies, 0.99), 1),
                           "max": round(max(self.latencies, default=0.0), 1)},
            "inflight_mean": round(self.mean_inflight(last), 1),
            "cpu_s": round(_cpu() - self._cpu0, 3),
            "max_rss_mib": round(_max_rss_kib() / 1024, 1),
            "errors": {k: v for k, v in self.mgr.error_status().items() if v},
        }

    def hold(self) -> None:
        """Keep the SAs (answer the peer) until stdin reaches EOF."""
        stdin = sys.stdin.fileno()
        while True:
            now = time.monotonic()
            timeout = self._pump(now)
            ready, _, _ = select.select([*self.by_fd, stdin], [], [], max(0.0, timeout))
            for fd in ready:
                if fd == stdin:
                    if not sys.stdin.readline():
                        return
                else:
                    self._receive(*self.by_fd[fd])

    def close(self) -> None:
        for s in self.socks.values():
            s.close()


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _max_rss_kib() -> int:
    """This process's peak resident set (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def arg_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--local", required=True, help="our address (binds ports 500 and 4500)")
    ap.add_argument("--remote", required=True, help="the responder's address")
    ap.add_argument("--tunnels", type=int, default=2000, help="IKE SAs to set up (2000)")
    ap.add_argument("--rate", type=float, default=0.0,
                    help="handshakes started per second (0 = only --inflight limits; 0)")
    ap.add_argument("--inflight", type=int, default=50,
                    help="handshakes unfinished at a time, at most (50)")
    ap.add_argument("--psk", default="interop-testbed-psk-0123456789", help="shared PSK")
    ap.add_argument("--proposal", default="aes256gcm16-prfsha256-x25519",
                    help="IKE proposal (aes256gcm16-prfsha256-x25519)")
    ap.add_argument("--esp", default="aes256gcm16", help="ESP proposal (aes256gcm16)")
    ap.add_argument("--id-format", default="load-{n}@example.net",
                    help="our identity per tunnel, {n} = 0..N-1 (load-{n}@example.net)")
    ap.add_argument("--remote-id", default="", help="expected responder identity (any)")
    ap.add_argument("--inner", default="203.0.113.1", help="inner address of our selectors")
    ap.add_argument("--base-port", type=int, default=10000,
                    help="UDP port of tunnel 0's local selector; tunnel n has +n (10000)")
    ap.add_argument("--remote-ts", default="203.0.113.64/26",
                    help="remote traffic selector of every child (203.0.113.64/26)")
    ap.add_argument("--retransmit-timeout", type=float, default=2.0,
                    help="first retransmission after this many seconds (2.0; x1.5, 3 tries)")
    ap.add_argument("--timeout", type=float, default=0.0,
                    help="give up after this many seconds (0 = 30 + tunnels / 20)")
    ap.add_argument("--hold", action="store_true",
                    help="after the result, keep the SAs until stdin reaches EOF")
    ap.add_argument("--mark", type=int, default=0,
                    help="print a progress line when this many tunnels are established "
                         "(0 = none)")
    return ap


def generator_for(conns: list[ConnectionConfig], args: argparse.Namespace) -> LoadGenerator:
    """The generator :func:`arg_parser`'s options describe (``--mark`` progress on stdout)."""
    return LoadGenerator(conns, local=args.local, rate=args.rate, inflight=args.inflight,
                         timeout=args.timeout or default_timeout(args.tunnels),
                         mark=args.mark, progress=print_json)


def default_timeout(tunnels: int) -> float:
    """30 s + 50 ms per tunnel: 20 tunnels/s, far below any responder's rate (an hour
    at 70,000 tunnels); the run ends when the last tunnel is done, not at the timeout."""
    return 30.0 + tunnels / 20.0


def print_json(obj: dict[str, Any]) -> None:
    """One JSON line on stdout, flushed (the bench reads it as it comes)."""
    print(json.dumps(obj), flush=True)


def run_and_hold(gen: LoadGenerator, args: argparse.Namespace) -> int:
    """Run, print the result line, keep the SAs with ``--hold``; the exit status."""
    try:
        result = gen.run()
        print_json(result)
        if args.hold:
            gen.hold()
    finally:
        gen.close()
    return 0 if result["established"] == args.tunnels else 1


def main(argv: list[str] | None = None) -> int:
    args = arg_parser().parse_args(argv)
    conns = build_connections(
        args.tunnels, local=args.local, remote=args.remote, psk=args.psk.encode(),
        proposal=args.proposal, esp=args.esp, id_format=args.id_format,
        remote_id=args.remote_id, inner=args.inner, base_port=args.base_port,
        remote_ts=args.remote_ts,
        retransmit=RetransmitConfig(tries=3, timeout=args.retransmit_timeout, base=1.5))
    return run_and_hold(generator_for(conns, args), args)


if __name__ == "__main__":
    sys.exit(main())
