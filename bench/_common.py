"""What the topology benchmarks (``bench_tunnel``, ``bench_encap``, ``bench_recovery``) share.

Importing this module puts ``src/`` and the repository root on ``sys.path`` (for
``pyipsec`` and ``tests.interop``).  ``tests.interop`` itself is imported only inside the
helpers that need it, so that the parts of a bench that run without a topology (the
in-memory part of ``bench_encap``, the sniffer of ``bench_recovery``) do not load it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT / "src", ROOT):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

if TYPE_CHECKING:
    from tests.interop.pyipsec_daemon import PyipsecDaemon
    from tests.interop.strongswan import Charon
    from tests.interop.topology import Topology

IKE_PROPOSAL = "aes256gcm16-prfsha256-x25519"
CONN = "bench"
CHILD = "net"


# ------------------------------------------------------------------ numbers


def median(xs: Iterable[float]) -> float:
    """Median of the values that are not NaN (NaN when there are none)."""
    v = [x for x in xs if not math.isnan(x)]
    return statistics.median(v) if v else math.nan


def percentile(xs: Iterable[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1) of the values that are not NaN (NaN when
    there are none)."""
    v = sorted(x for x in xs if not math.isnan(x))
    if not v:
        return math.nan
    return v[max(0, min(len(v) - 1, math.ceil(q * len(v)) - 1))]


def per_call(fn: Callable[[], object], loops: int, repeats: int = 7) -> float:
    """Median over ``repeats`` of the CPU seconds per call of ``fn`` (``loops`` calls)."""
    samples = []
    for _ in range(repeats):
        t0 = time.process_time()
        for _ in range(loops):
            fn()
        samples.append((time.process_time() - t0) / loops)
    return statistics.median(samples)


def peer_ip(i: int) -> str:
    """The address of in-memory peer ``i``: 100.64.0.1 + i."""
    n = 0x64400000 + 1 + i
    return f"{n >> 24}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int | str = "self") -> int:
    """``VmRSS`` of a process in KiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def header(what: str) -> str:
    """The first line of a report: what, when, and on which machine."""
    return (f"pyipsec {what} benchmark, {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; "
            f"{os.cpu_count()} CPUs, kernel {os.uname().release}, "
            f"Python {sys.version.split()[0]}")


# ------------------------------------------------------------------ command line, skeleton


def arg_parser(doc: str) -> argparse.ArgumentParser:
    """A parser described by the first paragraph of a bench's docstring."""
    return argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def missing_requirements(*, strongswan: bool = False, iperf3: bool = False) -> str | None:
    """Why the bench cannot run here (root, namespaces, charon, iperf3), or None."""
    from tests.interop import strongswan as ss
    from tests.interop import topology

    reason = topology.missing_requirements()
    if reason is None and strongswan:
        reason = ss.missing_requirements()
    if reason is None and iperf3 and shutil.which("iperf3") is None:
        reason = "iperf3 not installed"
    return reason


class _Bench(Protocol):
    def up(self) -> None: ...
    def run(self) -> None: ...
    def down(self) -> None: ...


def run_bench(bench: _Bench) -> None:
    """``up``, ``run``, and ``down`` in any case (Ctrl-C ends the run, not the report)."""
    try:
        bench.up()
        bench.run()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    finally:
        bench.down()


def run_cleanups(cleanups: list[Callable[[], None]]) -> None:
    """Call the clean-ups, last first, each even when one before it failed; empty the list."""
    for fn in reversed(cleanups):
        try:
            fn()
        except Exception as e:  # keep cleaning up
            print(f"clean-up: {e}", file=sys.stderr)
    cleanups.clear()


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    """Stop a helper process started by the bench (by PID) if it is still running."""
    from tests.interop.topology import kill_pid

    if proc is not None and proc.poll() is None:
        kill_pid(proc.pid)
        proc.wait(timeout=5)


# ------------------------------------------------------------------ iperf3


def start_iperf_server(topo: Topology) -> subprocess.Popen[bytes]:
    """``iperf3 -s`` in the right namespace."""
    proc = topo.popen(topo.right, ["iperf3", "-s"], stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    return proc


def iperf3(topo: Topology, dst: str, seconds: int) -> tuple[float, int]:
    """One iperf3 TCP run left -> ``dst``: receiver's Mbit/s and the sender's TCP
    retransmissions; (nan, -1) on failure."""
    proc = topo.exec(topo.left,
                     ["iperf3", "-c", dst, "-t", str(seconds), "-J", "--connect-timeout",
                      "3000"], check=False, timeout=seconds + 30)
    try:
        res = json.loads(proc.stdout)
        return (float(res["end"]["sum_received"]["bits_per_second"]) / 1e6,
                int(res["end"]["sum_sent"].get("retransmits", 0)))
    except (ValueError, KeyError, TypeError):
        err = proc.stdout[-300:] + proc.stderr[-300:]
        print(f"    iperf3 to {dst} failed: {err.strip()}", file=sys.stderr)
        return math.nan, -1


def iperf3_cpu(topo: Topology, dst: str, seconds: int,
               pids: list[int]) -> tuple[float, int, float]:
    """:func:`iperf3`, plus the CPU the processes ``pids`` used meanwhile (% of one core)."""
    cpu0 = sum(cpu_seconds(p) for p in pids)
    t0 = time.monotonic()
    tput, retrans = iperf3(topo, dst, seconds)
    wall = time.monotonic() - t0
    return tput, retrans, (sum(cpu_seconds(p) for p in pids) - cpu0) / wall * 100


# ------------------------------------------------------------------ daemons


def pyipsec_daemon(topo: Topology, side: str, state: Path, esp: str,
                   **toml: Any) -> PyipsecDaemon:
    """A pyipsec daemon (not started) for ``side``, connection ``CONN``/``CHILD`` to or
    from the right host's outer address; ``toml`` adds to :func:`pyipsec_toml`."""
    from tests.interop.pyipsec_daemon import PyipsecDaemon, pyipsec_toml
    from tests.interop.topology import RIGHT_OUTER

    ns = topo.left if side == "left" else topo.right
    addrs: dict[str, Any] = ({"remote_addrs": [RIGHT_OUTER]} if side == "left"
                             else {"local_addrs": [RIGHT_OUTER]})
    conf = pyipsec_toml(side=side, state_dir=state, conn=CONN, child=CHILD,
                        proposals=IKE_PROPOSAL, esp_proposals=esp, log_level="info",
                        extra_daemon={"keylog_file": ""}, **addrs, **toml)
    return PyipsecDaemon(ns, conf, state_dir=state)


def ss_conf(side: str, esp: str, **spec: Any) -> str:
    """The swanctl configuration of connection ``CONN`` for ``side`` (to or from the right
    host's outer address); ``spec`` adds to :class:`ConnSpec`."""
    from tests.interop.strongswan import ConnSpec
    from tests.interop.topology import RIGHT_OUTER

    addrs: dict[str, Any] = ({"remote_addrs": RIGHT_OUTER} if side == "left"
                             else {"local_addrs": RIGHT_OUTER})
    return ConnSpec(name=CONN, side=side, proposals=IKE_PROPOSAL, esp_proposals=esp,
                    **addrs, **spec).render()


def charon(topo: Topology, side: str, state: Path) -> Charon:
    """A charon (not started) in ``side``'s namespace, logging ``ike 1``."""
    from tests.interop.strongswan import Charon

    ns = topo.left if side == "left" else topo.right
    return Charon(ns, name=side, debug="ike 1", loglevel=0, state_dir=state)
