"""Tunnel benchmark on the NAT testbed (pyipsec, strongSwan, no tunnel).

Usage: ``sudo python3 bench/bench_tunnel.py [--runs N] [--seconds S]``.

Not a test: run it by hand, as root, on an otherwise quiet machine.  In one invocation and
on one three-namespace NAT topology (``tests/interop/topology.py``: left behind a
masquerading router, right on the "internet" side) it measures

* iperf3 TCP throughput, left -> right (receiver's figure):

  - ``plain``: no tunnel, routed through the NAT router (192.0.2.2);
  - ``ss-ss``: strongSwan <-> strongSwan (charon with kernel-libipsec, userspace ESP);
  - ``py-ss``: pyipsec initiator (left, behind the NAT) <-> strongSwan responder;
  - ``py-py``: pyipsec <-> pyipsec;

  the tunnels carry inner 203.0.113.1 -> 203.0.113.65 in ESP-in-UDP (NAT-T), ESP
  ``--esp`` (default AES-GCM-16-128), IKE AES-GCM-16-256 / PRF-HMAC-SHA2-256 / X25519;
* the time to establish an IKE SA with its first Child SA, ``--setups`` times per run and
  configuration: strongSwan initiator from its log timestamps (``initiating IKE_SA`` ->
  ``CHILD_SA ... established``, 1 ms resolution) and ``swanctl --initiate`` wall time;
  pyipsec initiator as measured inside the daemon (``up`` control command: initiate ->
  Child SA installed, ``elapsed_ms``) and the ``up`` request's wall time;
* the DPD liveness round trip between two pyipsec daemons (control ``liveness``: empty
  INFORMATIONAL request queued and sent -> its response processed), median and p99.

Configurations are measured round-robin (each run goes through all of them) so that drift
of the shared machine hits all alike; daemons are started for each block and stopped by
PID afterwards, and the namespaces are removed at the end (also on Ctrl-C).  The table
gives medians and ratios against strongSwan <-> strongSwan.  Default: 3 runs x 5 s,
about two minutes.
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from _common import (  # first: it puts src/ and the repository root on sys.path
    CHILD,
    CONN,
    IKE_PROPOSAL,
    arg_parser,
    charon,
    header,
    iperf3,
    iperf3_cpu,
    median,
    missing_requirements,
    percentile,
    pyipsec_daemon,
    run_bench,
    run_cleanups,
    ss_conf,
    start_iperf_server,
    stop_process,
)

# isort: split
from tests.interop.pyipsec_daemon import PyipsecDaemon
from tests.interop.strongswan import Charon
from tests.interop.topology import RIGHT_INNER, RIGHT_OUTER, Topology

CONFIGS = ("plain", "ss-ss", "py-ss", "py-py")
LABELS = {
    "plain": "no tunnel (through the NAT)",
    "ss-ss": "strongSwan <-> strongSwan",
    "py-ss": "pyipsec (init) <-> strongSwan",
    "py-py": "pyipsec <-> pyipsec",
}
_LOG_TS = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})")


class Bench:
    """The topology, an iperf3 server on the right, and one block per configuration."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.topo = Topology(mode="nat")
        self.iperf: subprocess.Popen[bytes] | None = None
        self.tmp = Path(tempfile.mkdtemp(prefix="pyi-bench-"))
        self.tput: dict[str, list[float]] = {c: [] for c in CONFIGS}
        self.cpu: dict[str, list[float]] = {c: [] for c in CONFIGS}
        self.setup: dict[str, list[float]] = {
            "ss-log": [], "ss-wall": [], "py-ss": [], "py-ss-wall": [], "py-py": [],
            "py-py-wall": [],
        }
        self.liveness: list[float] = []
        self.retrans: dict[str, list[int]] = {c: [] for c in CONFIGS}
        self.last_retrans = 0
        self.drops: dict[str, dict[str, int]] = {}
        self.cleanups: list[Callable[[], None]] = []

    # ---------------------------------------------------------------- plumbing

    def up(self) -> None:
        self.topo.up()
        self.iperf = start_iperf_server(self.topo)

    def down(self) -> None:
        run_cleanups(self.cleanups)
        stop_process(self.iperf)
        self.topo.down()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def iperf3(self, dst: str) -> float:
        """One iperf3 TCP run left -> right; receiver Mbit/s (nan on failure).

        The sender's TCP retransmission count is left in ``last_retrans``."""
        v, self.last_retrans = iperf3(self.topo, dst, self.args.seconds)
        return v

    def charon(self, side: str) -> Charon:
        c = charon(self.topo, side, self.tmp / f"ss-{side}")
        self.cleanups.append(c.stop)
        return c.start(ss_conf(side, self.args.esp))

    def pyipsec(self, side: str) -> PyipsecDaemon:
        d = pyipsec_daemon(self.topo, side, self.tmp / f"py-{side}", self.args.esp)
        self.cleanups.append(d.stop)
        return d.start()

    def stop_all(self) -> None:
        for fn in reversed(self.cleanups):
            fn()
        self.cleanups.clear()
        time.sleep(0.2)  # TUN devices and sockets of the stopped daemons go away

    # ---------------------------------------------------------------- setups

    def ss_setup(self, left: Charon) -> None:
        start = len(left.log())
        t0 = time.perf_counter()
        left.initiate(CONN, CHILD)
        self.setup["ss-wall"].append((time.perf_counter() - t0) * 1e3)
        text = left.log()[start:]
        t_init = t_child = None
        for line in text.splitlines():
            m = _LOG_TS.match(line)
            if m is None:
                continue
            if t_init is None and "initiating IKE_SA" in line:
                t_init = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f")
            elif t_init is not None and "CHILD_SA" in line and "established" in line:
                t_child = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f")
                break
        if t_init is not None and t_child is not None:
            self.setup["ss-log"].append((t_child - t_init).total_seconds() * 1e3)

    def ss_teardown(self, left: Charon, right: Charon) -> None:
        left.terminate(ike=CONN)
        right.wait_for(lambda c: not c.list_sas(), timeout=10, interval=0.05)

    def py_setup(self, d: PyipsecDaemon, key: str) -> None:
        t0 = time.perf_counter()
        res = d.up(CONN, CHILD)
        self.setup[f"{key}-wall"].append((time.perf_counter() - t0) * 1e3)
        self.setup[key].append(float(res.get("elapsed_ms", math.nan)))

    def py_teardown(self, d: PyipsecDaemon, peer: Any) -> None:
        d.down(CONN)
        d.wait_for(lambda x: not x.request("status")["ike_sas"], timeout=10, interval=0.02)
        if isinstance(peer, PyipsecDaemon):
            peer.wait_for(lambda x: not x.request("status")["ike_sas"], timeout=10,
                          interval=0.02)
        else:
            peer.wait_for(lambda c: not c.list_sas(), timeout=10, interval=0.05)

    # ---------------------------------------------------------------- blocks

    def run_block(self, cfg: str) -> float:
        if cfg == "plain":
            return self.iperf3(RIGHT_OUTER)
        if cfg == "ss-ss":
            right = self.charon("right")
            left = self.charon("left")
            for _ in range(self.args.setups):
                self.ss_setup(left)
                self.ss_teardown(left, right)
            left.initiate(CONN, CHILD)
            pids = [p for p in (left.pid, right.pid) if p]
            return self.measured(cfg, pids, None)
        right_d: PyipsecDaemon | None = None
        if cfg == "py-ss":
            peer: Any = self.charon("right")
        else:
            right_d = peer = self.pyipsec("right")
        left_d = self.pyipsec("left")
        for _ in range(self.args.setups):
            self.py_setup(left_d, cfg)
            self.py_teardown(left_d, peer)
        left_d.up(CONN, CHILD)
        pids = [d.proc.pid for d in (left_d, right_d) if d is not None and d.proc is not None]
        if isinstance(peer, Charon) and peer.pid:
            pids.append(peer.pid)
        v = self.measured(cfg, pids, [left_d, *([right_d] if right_d else [])])
        if right_d is not None:
            for _ in range(self.args.liveness):
                self.liveness.append(float(left_d.request("liveness", name=CONN)["rtt_ms"]))
        return v

    def measured(self, cfg: str, pids: list[int], daemons: list[PyipsecDaemon] | None) -> float:
        v, self.last_retrans, cpu = iperf3_cpu(self.topo, RIGHT_INNER, self.args.seconds, pids)
        self.cpu[cfg].append(cpu)
        for d in daemons or []:
            st = d.request("status")
            agg = self.drops.setdefault(cfg, {})
            for k, n in st.get("drops", {}).items():
                agg[k] = agg.get(k, 0) + int(n)
            for ch in st.get("child_sas", []):
                for k, n in ch.get("drops", {}).items():
                    agg[f"sa.{k}"] = agg.get(f"sa.{k}", 0) + int(n)
        return v

    def run(self) -> None:
        cfgs = [c for c in CONFIGS if c in self.args.only]
        for i in range(1, self.args.runs + 1):
            for cfg in cfgs:
                try:
                    v = self.run_block(cfg)
                finally:
                    self.stop_all()
                self.tput[cfg].append(v)
                self.retrans[cfg].append(self.last_retrans)
                cpu = f", daemons' CPU {self.cpu[cfg][-1]:.0f} %" if self.cpu[cfg] else ""
                print(f"run {i} {cfg:6s}: {v:9.1f} Mbit/s, "
                      f"{self.last_retrans} TCP retransmits{cpu}", flush=True)

    # ---------------------------------------------------------------- report

    def report(self) -> str:
        a = self.args
        ss = median(self.tput["ss-ss"])
        lines = [
            header("tunnel"),
            f"iperf3 TCP {a.seconds} s x {a.runs} runs (round robin), ESP {a.esp}, "
            f"IKE {IKE_PROPOSAL}, NAT-T",
            "",
            f"| {'what':44s} | {'median':>14s} | {'vs ss-ss':>8s} | runs / notes",
            f"|{'-' * 46}|{'-' * 16}|{'-' * 10}|{'-' * 20}",
        ]

        def row(what: str, med: float, unit: str, ref: float, notes: str) -> None:
            ratio = f"{med / ref:.2f}" if ref and not math.isnan(ref) and not math.isnan(med) \
                else "-"
            val = "-" if math.isnan(med) else f"{med:.1f} {unit}"
            lines.append(f"| {what:44s} | {val:>14s} | {ratio:>8s} | {notes}")

        for cfg in CONFIGS:
            if not self.tput[cfg]:
                continue
            runs = " ".join(f"{v:.0f}" for v in self.tput[cfg])
            cpu = f"; daemons' CPU {median(self.cpu[cfg]):.0f} %" if self.cpu[cfg] else ""
            cpu += f"; retransmits {median(self.retrans[cfg]):.0f}"
            row(f"iperf3 TCP, {LABELS[cfg]}", median(self.tput[cfg]), "Mbit/s", ss,
                runs + cpu)
        sl = median(self.setup["ss-log"])
        for key, what in (("ss-log", "setup, strongSwan initiator (log)"),
                          ("ss-wall", "setup, strongSwan (swanctl --initiate wall)"),
                          ("py-ss", "setup, pyipsec -> strongSwan (daemon)"),
                          ("py-ss-wall", "setup, pyipsec -> strongSwan (up wall)"),
                          ("py-py", "setup, pyipsec -> pyipsec (daemon)"),
                          ("py-py-wall", "setup, pyipsec -> pyipsec (up wall)")):
            xs = self.setup[key]
            if xs:
                ref = median(self.setup["ss-wall"]) if key.endswith("wall") else sl
                row(what, median(xs), "ms", ref, f"n={len(xs)}, p90 {percentile(xs, 0.9):.1f}")
        if self.liveness:
            row("DPD liveness RTT, pyipsec <-> pyipsec", median(self.liveness), "ms",
                math.nan, f"n={len(self.liveness)}, p99 {percentile(self.liveness, 0.99):.2f} ms")
        lines.append("")
        lines.append("setup ratios: lower is better; the strongSwan log has 1 ms resolution.")
        for cfg, d in self.drops.items():
            nz = {k: v for k, v in d.items() if v and k != "keepalives_in"}
            lines.append(f"pyipsec drop counters after the {cfg} runs: {nz or 'none'}")
        return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = arg_parser(__doc__)
    ap.add_argument("--runs", type=int, default=3, help="iperf3 runs per configuration (3)")
    ap.add_argument("--seconds", type=int, default=5, help="iperf3 duration (5)")
    ap.add_argument("--setups", type=int, default=5,
                    help="IKE+Child setups per run and configuration (5)")
    ap.add_argument("--liveness", type=int, default=50,
                    help="DPD liveness round trips per pyipsec<->pyipsec run (50)")
    ap.add_argument("--esp", default="aes128gcm16",
                    help="ESP proposal for every tunnel (aes128gcm16; e.g. aes256gcm16)")
    ap.add_argument("--only", type=lambda s: [x.strip() for x in s.split(",")],
                    default=list(CONFIGS), help=f"subset of {','.join(CONFIGS)}")
    args = ap.parse_args(argv)
    reason = missing_requirements(strongswan=True, iperf3=True)
    if reason:
        print(f"bench_tunnel: {reason}", file=sys.stderr)
        return 2
    bench = Bench(args)
    run_bench(bench)
    print()
    print(bench.report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
