"""What the daemon's once-a-second work costs with many tunnels installed.

Part 1 (data plane, no IKE core): one ``DataPlane`` (no TUN device, no sockets) with N
installed Child SAs (AES-GCM-128, each its own remote network).  Per size it reports
the CPU time (``time.process_time``, median of repeats) of

* ``traffic_reports`` when 1 % of the SAs received one ESP packet since the previous
  call (the packets are fed through ``on_esp`` before the clock starts), and when
  none did;
* ``Daemon.report_traffic`` (the housekeeping tick: ``traffic_reports`` plus the calls
  into the core) with a core that does nothing, 1 % active;
* ``on_esp`` per inbound packet (one SA, in-order packets): the per-packet cost of
  marking the SA as changed.

Part 2 (``--fleet N``, 0 = skip): N real established IKE SAs on one responder
``IkeManager`` (``bench_scale.Fleet``: about 2 ms of CPU per tunnel to build), their
Child SAs installed in a ``DataPlane``, then the CPU time of the metrics refresh (the
daemon runs it every second, ``metrics.REFRESH_INTERVAL``; with 1 % of the SAs
carrying traffic since the previous refresh, and with none), of the sd_notify STATUS
text (``sdnotify.sa_counts``), of ``core.sa_counts()`` where the core has it, of the
housekeeping tick's frozen-garbage check (``gc_tuning.sweep_frozen_garbage`` after the
collector settings of ``gc_tuning.tune_gc``, when no sweep is due), and of
``ike_sas()`` / ``child_sas()`` for reference.

The same file runs against an older tree to compare (it uses only the public calls of
both): ``git archive <commit> src tests bench | tar -x -C /tmp/old``, copy this file to
/tmp/old/bench/, run it there.

Usage::

    PYTHONPATH=src python3 bench/bench_daemon_steady.py                  # 1k, 10k, 50k
    PYTHONPATH=src python3 bench/bench_daemon_steady.py --fleet 50000    # + part 2
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import random
import statistics
import sys
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from _common import header  # first: it puts src/ and the repository root on sys.path

# isort: split
from bench_scale import Fleet
from pyipsec.config.model import Mode
from pyipsec.daemon import gc_tuning, sdnotify
from pyipsec.daemon.dataplane import DataPlane, Report
from pyipsec.daemon.metrics import Metrics
from pyipsec.daemon.runtime import Daemon
from pyipsec.esp.sa import EspOutbound
from pyipsec.ikev2 import events as ev
from pyipsec.ikev2.selectors import Selector

process_time = time.process_time
PEER = ("192.0.2.9", 4500)
LOCAL_NET = "203.0.113.0/24"


def fmt(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.1f} us"
    return f"{s * 1e3:.2f} ms"


def median_cpu(fn: Callable[[], object], prepare: Callable[[], object], repeats: int) -> float:
    """Median CPU seconds of ``fn()``, ``prepare()`` run (untimed) before each call."""
    samples = []
    for _ in range(repeats):
        prepare()
        t0 = process_time()
        fn()
        samples.append(process_time() - t0)
    return statistics.median(samples)


# ------------------------------------------------------------------ part 1


def remote_net(i: int) -> str:
    return f"{ipaddress.IPv4Address(0x0A000000 + (i << 8))}/24"


def info(i: int) -> ev.ChildSaInfo:
    spi = 0x1000 + 2 * i
    return ev.ChildSaInfo(
        ike_id=i + 1, conn="c", child="net", spi_in=spi, spi_out=spi + 1, encr_id=20,
        key_bits=128, integ_id=None, esn=False, encr_key_in=bytes(20), integ_key_in=b"",
        encr_key_out=bytes(20), integ_key_out=b"",
        local_ts=(Selector.network(LOCAL_NET),), remote_ts=(Selector.network(remote_net(i)),),
        mode=Mode.TUNNEL, encap=True, local=("192.0.2.1", 4500), remote=PEER,
        lifetimes=ev.ChildLifetimes(soft=1e12, hard=2e12), suite="aes128gcm16",
    )  # fmt: skip


def icmp_from(i: int) -> bytes:
    src = ipaddress.ip_network(remote_net(i)).network_address + 1
    dst = ipaddress.ip_address("203.0.113.1")
    body = b"\x08\x00\x00\x00\x00\x01\x00\x01ping"
    hdr = bytes([0x45, 0, 0, 20 + len(body), 0, 1, 0, 0, 64, 1, 0, 0])
    return hdr + src.packed + dst.packed + body


class NullCore:
    """The calls report_traffic makes, doing nothing."""

    def esp_errors(self, *args: Any, **kw: Any) -> None:
        pass

    def esp_activity(self, *args: Any, **kw: Any) -> bool:
        return False

    def notify_traffic(self, *args: Any, **kw: Any) -> None:
        pass


def data_plane(n: int) -> tuple[DataPlane, asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    reports: list[Report] = []
    dp = DataPlane(loop, [], reports.append, clock=lambda: 1.0)
    for i in range(n):
        if dp.install(info(i)) is None:
            raise RuntimeError("install failed")
    return dp, loop


def part1(n: int, repeats: int, rnd: random.Random) -> dict[str, float]:
    dp, loop = data_plane(n)
    senders: dict[int, EspOutbound] = {}
    inner: dict[int, bytes] = {}
    active = max(1, n // 100)

    def traffic() -> None:
        for i in rnd.sample(range(n), active):
            out = senders.get(i)
            if out is None:
                out = senders[i] = EspOutbound(0x1000 + 2 * i, 20, 128, None, bytes(20), b"")
                inner[i] = icmp_from(i)
            dp.on_esp(out.protect(inner[i], 4), PEER, True, 1.0)

    def drain() -> None:
        dp.traffic_reports(1.0)

    row: dict[str, float] = {}
    drain()
    row["traffic_reports 1% active"] = median_cpu(drain, traffic, repeats)
    row["traffic_reports idle"] = median_cpu(drain, drain, repeats)
    stub: Any = SimpleNamespace(core=NullCore(), dp=dp, now=lambda: 1.0, pump=lambda: None)
    row["report_traffic 1% active"] = median_cpu(
        lambda: Daemon.report_traffic(stub), traffic, repeats
    )
    # on_esp per packet, in-order packets of one SA
    out = EspOutbound(0x1000, 20, 128, None, bytes(20), b"")
    pkt = icmp_from(0)
    packets = [out.protect(pkt, 4) for _ in range(20000)]
    on_esp = dp.on_esp
    samples = []
    size = len(packets) // repeats
    for k in range(repeats):  # consecutive slices: every packet is new to the replay window
        chunk = packets[k * size : (k + 1) * size]
        t0 = process_time()
        for p in chunk:
            on_esp(p, PEER, True, 1.0)
        samples.append((process_time() - t0) / len(chunk))
    row["on_esp per packet"] = statistics.median(samples)
    if dp.drops.esp_errors:
        raise RuntimeError(f"{dp.drops.esp_errors} ESP packets dropped: not the accept path")
    dp.close()
    loop.close()
    return row


# ------------------------------------------------------------------ part 2


class InstallingFleet(Fleet):
    """A Fleet whose responder's Child SAs are also installed in a data plane."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.loop = asyncio.new_event_loop()
        self.dp = DataPlane(self.loop, [], lambda r: None, clock=lambda: 1.0)

    def _responder_events(self, events: list[Any]) -> None:
        super()._responder_events(events)
        for e in events:
            if isinstance(e, (ev.ChildSaInstalled, ev.ChildSaRekeyed)):
                self.dp.install(e.info)
            elif isinstance(e, ev.ChildSaDeleted):
                self.dp.uninstall(e.spi_in)


def part2(n: int, repeats: int) -> dict[str, float]:
    gc_tuning.tune_gc()  # as the daemon does at start-up: what is built now gets frozen
    fleet = InstallingFleet()
    t0 = time.monotonic()
    fleet.build(n, lambda k: print(f"  built {k}", file=sys.stderr))
    print(f"  fleet of {n}: {time.monotonic() - t0:.0f} s wall", file=sys.stderr)
    core = fleet.resp
    daemon: Any = SimpleNamespace(core=core, dp=fleet.dp, now=lambda: fleet.now)
    metrics = Metrics(daemon, "127.0.0.1:0")
    metrics.refresh()
    row: dict[str, float] = {"installed": float(len(fleet.dp.children))}
    nothing: Callable[[], object] = lambda: None  # noqa: E731
    fleet.dp.traffic_reports(fleet.now)
    children = list(fleet.dp.children.values())
    rnd = random.Random(2)

    def traffic() -> None:
        """1 % of the SAs carried a packet (marked as the data plane marks them) and
        the housekeeping tick reported it to the core (untimed)."""
        changed = getattr(fleet.dp, "changed", None)  # absent in older trees
        for c in rnd.sample(children, max(1, len(children) // 100)):
            c.bytes_in += 100
            c.packets_in += 1
            if changed is not None:
                changed[c] = None
        fleet.dp.traffic_reports(fleet.now)

    def idle() -> None:
        fleet.dp.traffic_reports(fleet.now)

    row["metrics refresh 1% active"] = median_cpu(metrics.refresh, traffic, repeats)
    row["metrics refresh idle"] = median_cpu(metrics.refresh, idle, repeats)
    row["sdnotify status"] = median_cpu(lambda: sdnotify.sa_counts(core), nothing, repeats)
    if hasattr(core, "sa_counts"):
        row["core.sa_counts()"] = median_cpu(core.sa_counts, nothing, repeats)
    gc_tuning.sweep_frozen_garbage()  # a sweep that is due now (untimed), then the check
    row["frozen-garbage check"] = median_cpu(gc_tuning.sweep_frozen_garbage, nothing, repeats)
    row["core.ike_sas()"] = median_cpu(core.ike_sas, nothing, repeats)
    row["core.child_sas()"] = median_cpu(core.child_sas, nothing, repeats)
    print(f"  status: {sdnotify.sa_counts(core)}", file=sys.stderr)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1000,10000,50000")
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--fleet", type=int, default=0, help="part 2 with this many IKE SAs")
    args = p.parse_args(argv)
    print(header("daemon steady-state"))
    rnd = random.Random(1)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    rows = {n: part1(n, args.repeats, rnd) for n in sizes}
    names = list(rows[sizes[0]])
    print(f"{'CPU per call':28}" + "".join(f"{n:>12,}" for n in sizes))
    for name in names:
        print(f"{name:28}" + "".join(f"{fmt(rows[n][name]):>12}" for n in sizes))
    if args.fleet:
        row = part2(args.fleet, args.repeats)
        print(f"with {args.fleet:,} established IKE SAs, "
              f"{int(row.pop('installed')):,} Child SAs installed:")
        for name, v in row.items():
            print(f"  {name:26}{fmt(v):>12}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
