"""How the IKE core (one responder IkeManager) scales with the number of established tunnels.

In memory, no sockets, real crypto (X25519, AES-GCM, HMAC-SHA256; only the random numbers
come from one deterministic generator per side).  For each size N it builds N established
IKE SAs (default suite aes256gcm16-prfsha256-x25519, one Child SA each) on ONE responder
``IkeManager`` (one ``%any`` connection), driven by one initiator ``IkeManager`` that has N
connections -- each with its own identity (``peerN.example.net``, else INITIAL_CONTACT
would delete the previous tunnel) and its own address (100.64.0.0/10).  Then, on the
responder only, it reports:

* CPU time per call (``time.process_time``, median of repeats) of ``next_timer``,
  ``handle_timer`` with nothing due, ``datagrams_to_send`` / ``next_event`` when idle,
  ``receive_datagram`` of a liveness request (an empty INFORMATIONAL built by the
  initiator with ``liveness(ike_id, now)`` for an existing SA), ``esp_activity``,
  ``notify_traffic``, ``unknown_esp_spi`` (from a known peer: queues INVALID_SPI; from an
  unknown address: counted only), ``status()``, ``status(conn=..., limit=100)``,
  ``status(peer=..., limit=100)``, ``ike_sas()``, ``child_sas()``, and one new responder
  handshake (IKE_SA_INIT + IKE_AUTH with the first Child SA) at that size; also the pause
  of a full ``gc.collect()`` (Python runs one whenever the long-lived objects grew by a
  quarter: a stop-the-world pause that grows with N; it walks the initiator's objects
  too, which live in the same process: a daemon with only the responder's share pays
  roughly half);
* handshakes per responder CPU-second while the table fills (first 10 % vs last 10 %);
* memory per established tunnel, measured in a fresh child process that builds N
  tunnels with throw-away initiators (so only the responder's state stays alive): VmRSS
  growth (/proc/self/status) over the N tunnels, and tracemalloc growth over N/10 more
  (tracemalloc slows the build down 4-5 times);
* steady-state load: ``--steady`` (default 60) virtual seconds in which every tunnel's
  peer sends a DPD request every 30 s (at a per-tunnel phase), and peers rekey the IKE SA
  every 4 h and the Child SA every 1 h (so N*60/14400 IKE and N*60/3600 Child rekeys,
  each with its Delete, at random times); all built on the initiator side and fed to the
  responder, whose own timers run too.  Reported as responder CPU seconds per virtual
  second (= the share of one core).

Finally a table per metric and the ratio largest size / first size (ideally about 1 for
everything except the O(N) queries ``status()``, ``ike_sas()``, ``child_sas()``).

Usage::

    PYTHONPATH=src python3 bench/bench_scale.py                  # sizes 1000,10000
    PYTHONPATH=src python3 bench/bench_scale.py --sizes 1000,10000,50000
    PYTHONPATH=src python3 bench/bench_scale.py --sizes 10000 --profile
    PYTHONPATH=src python3 bench/bench_scale.py --sizes 200 --no-memory --steady 10
    PYTHONPATH=src python3 bench/bench_scale.py --gc daemon --ke-reuse 10 --no-memory

``--gc daemon`` applies the daemon's garbage-collector settings
(``pyipsec.daemon.gc_tuning.tune_gc``) before building; ``--ke-reuse SECONDS`` turns on
the responder's reuse of its key exchange value (RFC 7296 §2.12, off by default).

``--profile`` runs cProfile (enabled only around the responder's calls) over 200 new
responder handshakes at the largest size and prints the top 25 functions by cumulative
and by own time.  Building costs about 2 ms of CPU per tunnel (both sides, plus the same
again in the memory child): the default run takes a few minutes on a 2-core machine,
50,000 tunnels several more (see the ``build`` line of the output).  The machine may be
shared and noisy: every per-call number is a median.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import math
import os
import pstats
import random
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from _common import (  # first: it puts src/ and the repository root on sys.path
    peer_ip,
    per_call,
    rss_kib,
)

# isort: split
from tests.ikev2.harness import DetRng, det_ke_factory

from pyipsec.config.model import (
    ChildConfig,
    ConnectionConfig,
    DpdConfig,
    Lifetimes,
    TrafficSelectorSpec,
)
from pyipsec.ikev2.events import (
    ChildSaInstalled,
    ChildSaRekeyed,
    IkeSaEstablished,
    IkeSaRekeyed,
)
from pyipsec.ikev2.manager import IkeManager

IKE = "aes256gcm16-prfsha256-x25519"
ESP = "aes256gcm16"
PSK = b"bench scale pre-shared key"
RESP_IP = "192.0.2.2"
RESP_CONN = "gw"
Address = tuple[str, int]
process_time = time.process_time

DPD_INTERVAL = 30.0
IKE_REKEY = 4 * 3600.0
CHILD_REKEY = 3600.0
#: the defaults of ConnectionConfig / ChildConfig, spelled out: 4 h IKE, 1 h Child
IKE_LIFETIMES = Lifetimes(rekey_time=IKE_REKEY, over_time=1440.0, rand_time=1440.0)
CHILD_LIFETIMES = Lifetimes(rekey_time=CHILD_REKEY, over_time=360.0, rand_time=360.0)


# ------------------------------------------------------------------ configuration


def _child(local: str, remote: str, lifetimes: Lifetimes) -> ChildConfig:
    return ChildConfig(
        "net",
        (TrafficSelectorSpec.from_network(local),),
        (TrafficSelectorSpec.from_network(remote),),
        esp_proposals=(ESP,),
        lifetimes=lifetimes,
    )


def responder_conn() -> ConnectionConfig:
    """The gateway: one %any connection, 4 h IKE / 1 h Child lifetimes (the defaults),
    no DPD of its own (the peers probe it; see the module docstring)."""
    return ConnectionConfig(
        name=RESP_CONN,
        local_addrs=(RESP_IP,),
        remote_addrs=(),
        local_id="gw.example.net",
        remote_id="%any",
        psk=PSK,
        ike_proposals=(IKE,),
        dpd=DpdConfig(enabled=False),
        lifetimes=IKE_LIFETIMES,
        children=(_child("10.2.0.0/16", "10.1.0.0/16", CHILD_LIFETIMES),),
    )


_INIT_CHILD = _child("10.1.0.0/16", "10.2.0.0/16", Lifetimes())


def initiator_conn(i: int) -> ConnectionConfig:
    """Tunnel ``i``'s peer: its own identity and address; the bench drives its DPD and
    rekeys itself (no timers of its own)."""
    return ConnectionConfig(
        name=f"t{i}",
        local_addrs=(peer_ip(i),),
        remote_addrs=(RESP_IP,),
        local_id=f"peer{i}.example.net",
        remote_id="gw.example.net",
        psk=PSK,
        ike_proposals=(IKE,),
        dpd=DpdConfig(enabled=False),
        lifetimes=Lifetimes(),
        children=(_INIT_CHILD,),
    )


# ------------------------------------------------------------------ the fleet


@dataclass
class Tunnel:
    index: int
    ip: str
    init_id: int = 0  # the initiator's IKE SA id
    resp_id: int = 0  # the responder's IKE SA id
    resp_spi: int = 0  # the responder's inbound Child SA SPI


@dataclass
class Fleet:
    """One responder manager and the initiator(s) that build tunnels to it.

    ``keep_initiator=False`` (memory measurement): every tunnel gets a throw-away
    initiator manager, so only the responder's state stays alive."""

    keep_initiator: bool = True
    seed: str = "bench"
    now: float = 1000.0
    tunnels: list[Tunnel] = field(default_factory=list)
    resp_cpu: float = 0.0  # responder CPU spent in exchange() so far
    profiler: cProfile.Profile | None = None
    ke_reuse: float = 0.0  # the responder's ke_reuse_seconds (RFC 7296 §2.12; 0 = off)

    def __post_init__(self) -> None:
        self.rng_i = DetRng("I" + self.seed)
        self.rng_r = DetRng("R" + self.seed)
        self.ke_i = det_ke_factory(self.rng_i)
        self.resp = IkeManager([responder_conn()], rng=self.rng_r,
                               ke_factory=det_ke_factory(self.rng_r),
                               ke_reuse_seconds=self.ke_reuse)
        self.init = self._new_initiator([])
        self.by_init_id: dict[int, Tunnel] = {}
        self._resp_of: dict[int, Tunnel] = {}  # responder ike_id -> tunnel
        self._pending: Tunnel | None = None  # the tunnel being built

    def _new_initiator(self, conns: list[ConnectionConfig]) -> IkeManager:
        return IkeManager(conns, rng=self.rng_i, ke_factory=self.ke_i)

    # -- the wire: initiator datagrams -> responder (timed) -> initiator, until quiet

    def exchange(self, init: IkeManager | None = None) -> float:
        """Deliver what the initiator has queued, and every answer, until both are quiet.
        Returns the responder's CPU time (also added to ``resp_cpu``)."""
        init = init or self.init
        resp, now, prof = self.resp, self.now, self.profiler
        cpu = 0.0
        pending = init.datagrams_to_send(now)
        while pending:
            t0 = process_time()
            if prof is not None:
                prof.enable()
            for data, local, remote in pending:
                resp.receive_datagram(data, remote, local, now)
            out = resp.datagrams_to_send(now)
            events = []
            while (ev := resp.next_event()) is not None:
                events.append(ev)
            if prof is not None:
                prof.disable()
            cpu += process_time() - t0
            self._responder_events(events)
            for data, local, remote in out:
                init.receive_datagram(data, remote, local, now)
            while (ev := init.next_event()) is not None:
                if isinstance(ev, IkeSaRekeyed):
                    t = self.by_init_id.pop(ev.old_id, None)
                    if t is not None:
                        t.init_id = ev.new_id
                        self.by_init_id[ev.new_id] = t
            pending = init.datagrams_to_send(now)
        self.resp_cpu += cpu
        return cpu

    def _responder_events(self, events: list[Any]) -> None:
        for ev in events:
            if isinstance(ev, IkeSaEstablished) and self._pending is not None:
                self._pending.resp_id = ev.ike_id
                self._resp_of[ev.ike_id] = self._pending
            elif isinstance(ev, (ChildSaInstalled, ChildSaRekeyed)):
                t = self._resp_of.get(ev.info.ike_id)
                if t is not None:
                    t.resp_spi = ev.info.spi_in
            elif isinstance(ev, IkeSaRekeyed):
                t = self._resp_of.pop(ev.old_id, None)
                if t is not None:
                    t.resp_id = ev.new_id
                    self._resp_of[ev.new_id] = t

    def responder_timers(self) -> float:
        """Run the responder's due timers at ``now`` and deliver what they send (timed)."""
        resp, now = self.resp, self.now
        nxt = self.init.next_timer()
        if nxt is not None and nxt <= now:  # e.g. rekeyed SAs that lingered (not timed)
            self.init.handle_timer(now)
            self.exchange()
        nxt = resp.next_timer()
        if nxt is None or nxt > now:
            return 0.0
        t0 = process_time()
        resp.handle_timer(now)
        out = resp.datagrams_to_send(now)
        events = []
        while (ev := resp.next_event()) is not None:
            events.append(ev)
        cpu = process_time() - t0
        self._responder_events(events)
        for data, local, remote in out:
            self.init.receive_datagram(data, remote, local, now)
        self.resp_cpu += cpu
        return cpu + self.exchange()

    # -- building tunnels

    def add_tunnel(self) -> float:
        """One more established tunnel; returns the responder's CPU for the handshake."""
        i = len(self.tunnels)
        conn = initiator_conn(i)
        t = Tunnel(i, conn.local_addrs[0])
        if self.keep_initiator:
            init = self.init
            init.conns[conn.name] = conn  # N connections: a dict insert, not reload()
        else:
            init = self._new_initiator([conn])
        self.responder_timers()  # virtual time goes on: lingering old SAs expire
        sa = init.initiate(conn.name, None, self.now)
        t.init_id = sa.ike_id
        n_before = len(self.resp.by_id)
        cpu = self._handshake(init, t)
        if not sa.established or len(self.resp.by_id) != n_before + 1 or not t.resp_spi:
            raise RuntimeError(f"tunnel {i} did not come up ({sa.state})")
        if self.keep_initiator:
            self.by_init_id[t.init_id] = t
            self.tunnels.append(t)
        else:
            self.tunnels.append(Tunnel(i, t.ip))  # keep the count, not the objects
            while init.next_event() is not None:
                pass
        self.now += 0.001
        return cpu

    def _handshake(self, init: IkeManager, t: Tunnel) -> float:
        self._pending = t
        try:
            return self.exchange(init)
        finally:
            self._pending = None
            if not self.keep_initiator:
                self._resp_of.pop(t.resp_id, None)

    def build(self, n: int, on_progress: Callable[[int], None] | None = None) -> list[float]:
        """Grow to ``n`` tunnels; the responder CPU of each new handshake."""
        cpus = []
        while len(self.tunnels) < n:
            cpus.append(self.add_tunnel())
            if on_progress is not None and len(self.tunnels) % 5000 == 0:
                on_progress(len(self.tunnels))
        return cpus


# ------------------------------------------------------------------ measuring


def per_item(fn: Callable[[Any], object], items: list[Any], repeats: int = 7) -> float:
    """Median over ``repeats`` chunks of the CPU seconds per call of ``fn(item)``."""
    chunks = [items[k::repeats] for k in range(repeats)]
    samples = []
    for chunk in chunks:
        if not chunk:
            continue
        t0 = process_time()
        for item in chunk:
            fn(item)
        samples.append((process_time() - t0) / len(chunk))
    return statistics.median(samples)


def _calibration() -> int:
    """A fixed amount of pure-Python work: its row shows the machine's speed drifting."""
    d: dict[int, int] = {}
    for k in range(1000):
        d[k] = k * 3 + len(d)
    return sum(d.values())


def liveness_request(fleet: Fleet, t: Tunnel) -> tuple[bytes, Address, Address]:
    init = fleet.init
    init.liveness(t.init_id, fleet.now)
    (data, local, remote), = init.datagrams_to_send(fleet.now)
    return data, remote, local  # as the responder sees it


def answer_back(fleet: Fleet) -> None:
    """Deliver the responder's queued datagrams to the initiator and finish the exchange."""
    for data, local, remote in fleet.resp.datagrams_to_send(fleet.now):
        fleet.init.receive_datagram(data, remote, local, fleet.now)
    while fleet.resp.next_event() is not None:
        pass
    while fleet.init.next_event() is not None:
        pass
    fleet.exchange()


def measure_calls(fleet: Fleet, rnd: random.Random, samples: int) -> dict[str, float]:
    """CPU seconds per call of the responder's entry points at the current size."""
    resp, now = fleet.resp, fleet.now
    res: dict[str, float] = {"(calibration: fixed pure-Python)": per_call(_calibration, 20)}
    fleet.responder_timers()
    nxt = resp.next_timer()
    assert nxt is None or nxt > now, "a timer is due in an idle fleet"
    loops = 2000
    res["next_timer()"] = per_call(resp.next_timer, loops)
    res["handle_timer(now), none due"] = per_call(lambda: resp.handle_timer(now), loops)
    res["datagrams_to_send(), idle"] = per_call(lambda: resp.datagrams_to_send(now), loops)
    res["next_event(), idle"] = per_call(resp.next_event, loops)

    picks = rnd.sample(fleet.tunnels, min(samples, len(fleet.tunnels)))
    # receive_datagram of a liveness request (each on a different SA, timed one by one)
    lv: list[float] = []
    lv_all: list[float] = []
    for t in picks:
        data, local, remote = liveness_request(fleet, t)
        t0 = process_time()
        resp.receive_datagram(data, local, remote, now)
        t1 = process_time()
        out = resp.datagrams_to_send(now)
        while resp.next_event() is not None:
            pass
        t2 = process_time()
        lv.append(t1 - t0)
        lv_all.append(t2 - t0)
        for d, loc, rem in out:
            fleet.init.receive_datagram(d, rem, loc, now)
        while fleet.init.next_event() is not None:
            pass
    res["receive_datagram(liveness req)"] = statistics.median(lv)
    res["  + datagrams_to_send + events"] = statistics.median(lv_all)

    seq = [0]

    def esp(t: Tunnel) -> None:
        seq[0] += 1
        resp.esp_activity(t.resp_spi, now, (t.ip, 500), seq[0])

    res["esp_activity(spi, remote, seq)"] = per_item(esp, picks * 20)
    res["notify_traffic(spi, counters)"] = per_item(
        lambda t: resp.notify_traffic(t.resp_spi, now, bytes_in=1000, packets_in=10,
                                      bytes_out=1000, packets_out=10, seq_out=10),
        picks * 20)
    # unknown ESP SPI from a known peer: queues an INVALID_SPI notify (answered after)
    us: list[float] = []
    for t in picks:
        t0 = process_time()
        resp.unknown_esp_spi(0xDEAD0000 + t.index, (t.ip, 500), now)
        us.append(process_time() - t0)
        answer_back(fleet)
    res["unknown_esp_spi, known peer"] = statistics.median(us)
    res["unknown_esp_spi, unknown peer"] = per_item(
        lambda k: resp.unknown_esp_spi(0xBEEF0000 + k, ("203.0.113.9", 500), now),
        list(range(samples * 5)))
    reps = 3 if len(fleet.tunnels) > 5000 else 5
    res["status()"] = per_call(lambda: resp.status(now), 1, reps)
    res["status(conn=, limit=100)"] = per_call(
        lambda: resp.status(now, conn=RESP_CONN, limit=100), 20)
    res["status(peer=, limit=100)"] = per_item(
        lambda t: resp.status(now, peer=t.ip, limit=100), picks)
    res["ike_sas()"] = per_call(resp.ike_sas, 1, reps)
    res["child_sas()"] = per_call(resp.child_sas, 1, reps)
    # not an IkeCore call: the stop-the-world pause of a full cyclic GC, which Python
    # runs by itself whenever the long-lived objects grew by a quarter
    res["(full gc.collect() pause)"] = per_call(gc.collect, 1, reps)
    return res


def measure_handshakes(fleet: Fleet, count: int) -> float:
    """Median responder CPU of ``count`` new handshakes at the current size (they stay)."""
    return statistics.median(fleet.add_tunnel() for _ in range(count))


def steady_state(fleet: Fleet, seconds: float, rnd: random.Random) -> dict[str, float]:
    """Responder CPU per virtual second with DPD every 30 s and 4 h / 1 h rekeys."""
    n = len(fleet.tunnels)
    start = fleet.now + 1.0
    plan: list[tuple[float, int, str, Tunnel]] = []
    for t in fleet.tunnels:
        phase = rnd.uniform(0.0, DPD_INTERVAL)
        k = 0
        while phase + k * DPD_INTERVAL < seconds:
            plan.append((start + phase + k * DPD_INTERVAL, len(plan), "dpd", t))
            k += 1
    n_ike = round(n * seconds / IKE_REKEY)
    n_child = round(n * seconds / CHILD_REKEY)
    for kind, count in (("ike", n_ike), ("child", n_child)):
        for t in rnd.sample(fleet.tunnels, min(count, n)):
            plan.append((start + rnd.uniform(0.0, seconds), len(plan), kind, t))
    plan.sort(key=lambda p: (p[0], p[1]))
    cpu = {"dpd": 0.0, "ike": 0.0, "child": 0.0, "timers": 0.0}
    init = fleet.init
    for when, _, kind, t in plan:
        fleet.now = when
        cpu["timers"] += fleet.responder_timers()
        if kind == "dpd":
            init.liveness(t.init_id, when)
        elif kind == "ike":
            init.rekey_ike(t.init_id, when)
        else:
            sa = init.find_ike(t.init_id)
            assert sa is not None
            init.rekey_child(t.init_id, next(iter(sa.children)), when)
        cpu[kind] += fleet.exchange()
    fleet.now = start + seconds
    cpu["timers"] += fleet.responder_timers()
    total = sum(cpu.values())
    return {
        "cpu_per_s": total / seconds,
        "dpd": cpu["dpd"] / seconds,
        "rekeys": (cpu["ike"] + cpu["child"]) / seconds,
        "timers": cpu["timers"] / seconds,
        "n_dpd": sum(1 for p in plan if p[2] == "dpd"),
        "n_ike": n_ike,
        "n_child": n_child,
    }


def memory_child(n: int) -> dict[str, float]:
    """Run in a fresh process (``--memory-child N``): the responder's growth per tunnel.

    N tunnels with throw-away initiators, so that only the responder's state stays:
    the VmRSS growth per tunnel; then tracemalloc (4-5 times slower) over N/10 more
    tunnels: the traced growth per tunnel."""
    fleet = Fleet(keep_initiator=False, seed="mem")
    fleet.build(1)  # imports, caches and first-use allocations are not per tunnel
    gc.collect()
    rss0 = rss_kib()
    fleet.build(1 + n)
    gc.collect()
    rss = (rss_kib() - rss0) * 1024 / n
    m = max(1, n // 10)
    tracemalloc.start()
    tm0 = tracemalloc.get_traced_memory()[0]
    fleet.build(1 + n + m)
    gc.collect()
    traced = (tracemalloc.get_traced_memory()[0] - tm0) / m
    tracemalloc.stop()
    return {"rss": rss, "traced": traced, "responder_sas": len(fleet.resp.by_id)}


def memory_per_tunnel(n: int) -> dict[str, float]:
    """:func:`memory_child` in a fresh interpreter (a clean heap: RSS means something)."""
    proc = subprocess.run([sys.executable, __file__, "--memory-child", str(n)],
                          capture_output=True, text=True, check=False)
    try:
        return {k: float(v) for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items()}
    except (ValueError, IndexError):
        print(f"memory child failed: {proc.stderr[-500:]}", file=sys.stderr)
        return {"rss": math.nan, "traced": math.nan}


# ------------------------------------------------------------------ report


def fmt_time(s: float) -> str:
    if math.isnan(s):
        return "n/a"
    if s < 1e-3:
        return f"{s * 1e6:.2f} us"
    if s < 1.0:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def rate(cpus: list[float]) -> float:
    return len(cpus) / sum(cpus) if cpus and sum(cpus) > 0 else math.nan


def run_size(n: int, args: argparse.Namespace, fleet: Fleet, rnd: random.Random
             ) -> dict[str, Any]:
    row: dict[str, Any] = {}
    t0, c0 = time.monotonic(), process_time()
    start = len(fleet.tunnels)

    def progress(k: int) -> None:
        print(f"    ... {k} tunnels, {time.monotonic() - t0:.0f} s", file=sys.stderr)

    cpus = fleet.build(n, progress)
    wall, cpu = time.monotonic() - t0, process_time() - c0
    print(f"  build {start} -> {n} tunnels: {wall:.1f} s wall, {cpu:.1f} s CPU "
          f"(both sides), {sum(cpus):.1f} s responder CPU", file=sys.stderr)
    # the table fills from 0 to n only in the first size's build; later builds start at
    # the previous size: "first 10 %" / "last 10 %" are of this build's handshakes
    k = max(1, len(cpus) // 10)
    row["hs/s first 10%"] = rate(cpus[:k])
    row["hs/s last 10%"] = rate(cpus[-k:])
    gc.collect()
    row["calls"] = measure_calls(fleet, rnd, args.samples)
    row["calls"]["new handshake (responder)"] = measure_handshakes(fleet, args.handshakes)
    if args.memory:
        t1 = time.monotonic()
        row["mem"] = memory_per_tunnel(n)
        print(f"  memory child: {time.monotonic() - t1:.1f} s", file=sys.stderr)
    if args.steady > 0:
        t1 = time.monotonic()
        row["steady"] = steady_state(fleet, args.steady, rnd)
        print(f"  steady state: {time.monotonic() - t1:.1f} s wall", file=sys.stderr)
    return row


def print_report(sizes: list[int], rows: dict[int, dict[str, Any]]) -> None:
    first, last = sizes[0], sizes[-1]
    w = 34
    head = f"{'per call (responder CPU, median)':<{w}}" + "".join(
        f"{n:>12,}" for n in sizes) + f"{f'x {last}/{first}':>12}"
    print()
    print(head)
    print("-" * len(head))
    for name in rows[first]["calls"]:
        vals = [rows[n]["calls"][name] for n in sizes]
        ratio = vals[-1] / vals[0] if vals[0] > 0 else math.nan
        print(f"{name:<{w}}" + "".join(f"{fmt_time(v):>12}" for v in vals) + f"{ratio:>12.2f}")

    def line(name: str, vals: list[float], fmt: Callable[[float], str]) -> None:
        ratio = vals[-1] / vals[0] if vals[0] and not math.isnan(vals[0]) else math.nan
        print(f"{name:<{w}}" + "".join(f"{fmt(v):>12}" for v in vals) + f"{ratio:>12.2f}")

    print()
    line("handshakes/CPU-s, first 10 %", [rows[n]["hs/s first 10%"] for n in sizes],
         lambda v: f"{v:.0f}")
    line("handshakes/CPU-s, last 10 %", [rows[n]["hs/s last 10%"] for n in sizes],
         lambda v: f"{v:.0f}")
    if "mem" in rows[first]:
        line("memory/tunnel, tracemalloc", [rows[n]["mem"]["traced"] / 1024 for n in sizes],
             lambda v: f"{v:.1f} KiB")
        line("memory/tunnel, RSS", [rows[n]["mem"]["rss"] / 1024 for n in sizes],
             lambda v: f"{v:.1f} KiB")
    if "steady" in rows[first]:
        st = [rows[n]["steady"] for n in sizes]
        line("steady: CPU-s per s (core share)", [s["cpu_per_s"] for s in st],
             lambda v: f"{v * 100:.2f} %")
        per_tunnel = [s["cpu_per_s"] / n for s, n in zip(st, sizes, strict=True)]
        line("  per tunnel: CPU per second", per_tunnel, fmt_time)
        line("  of which DPD", [s["dpd"] for s in st], lambda v: f"{v * 100:.2f} %")
        line("  of which rekeys", [s["rekeys"] for s in st], lambda v: f"{v * 100:.2f} %")
        line("  of which own timers", [s["timers"] for s in st],
             lambda v: f"{v * 100:.3f} %")
        line("  DPD requests in the window", [s["n_dpd"] for s in st], lambda v: f"{v:.0f}")
        line("  IKE / Child rekeys", [s["n_ike"] + s["n_child"] for s in st],
             lambda v: f"{v:.0f}")


def profile_handshakes(fleet: Fleet, count: int) -> None:
    prof = cProfile.Profile()
    fleet.profiler = prof
    try:
        for _ in range(count):
            fleet.add_tunnel()
    finally:
        fleet.profiler = None
    for key in ("cumulative", "tottime"):
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).strip_dirs().sort_stats(key).print_stats(25)
        print(f"\n== cProfile, {count} responder handshakes at {len(fleet.tunnels) - count:,}"
              f" tunnels, top 25 by {key} ==")
        print(buf.getvalue())


def parse_sizes(text: str) -> list[int]:
    sizes = sorted({int(x.replace("_", "")) for x in text.split(",") if x.strip()})
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError("sizes must be positive integers")
    return sizes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=parse_sizes, default=parse_sizes("1000,10000"),
                   help="comma-separated numbers of tunnels (default 1000,10000)")
    p.add_argument("--profile", action="store_true",
                   help="cProfile 200 responder handshakes at the largest size")
    p.add_argument("--samples", type=int, default=200,
                   help="SAs sampled per per-call measurement (default 200)")
    p.add_argument("--handshakes", type=int, default=50,
                   help="new handshakes timed at each size (default 50)")
    p.add_argument("--steady", type=float, default=60.0,
                   help="virtual seconds of steady-state load (0 = skip; default 60)")
    p.add_argument("--no-memory", dest="memory", action="store_false",
                   help="skip the memory child (saves one build per size)")
    p.add_argument("--gc", choices=("default", "daemon"), default="default",
                   help="Python's garbage collector settings, or the daemon's (tune_gc: "
                        "start-up objects frozen, youngest generation every 10,000)")
    p.add_argument("--ke-reuse", type=float, default=0.0, metavar="SECONDS",
                   help="the responder reuses its IKE_SA_INIT key exchange value this "
                        "long (ke_reuse_seconds, RFC 7296 §2.12; default 0 = off)")
    p.add_argument("--memory-child", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child)))
        return 0
    if args.gc == "daemon":
        from pyipsec.daemon.gc_tuning import tune_gc

        tune_gc()
    print(f"pyipsec IKE scale benchmark: sizes {args.sizes}, {os.cpu_count()} CPUs, "
          f"Python {sys.version.split()[0]}, suite {IKE} / {ESP}, GC {args.gc}, "
          f"ke_reuse {args.ke_reuse:g} s")
    rnd = random.Random(1)
    fleet = Fleet(ke_reuse=args.ke_reuse)
    rows: dict[int, dict[str, Any]] = {}
    t0 = time.monotonic()
    for n in args.sizes:
        # the steady-state rekeys of the previous size leave the count unchanged
        print(f"size {n:,}", file=sys.stderr)
        rows[n] = run_size(n, args, fleet, rnd)
    print_report(args.sizes, rows)
    if args.profile:
        profile_handshakes(fleet, 200)
    print(f"\ntotal {time.monotonic() - t0:.0f} s wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
