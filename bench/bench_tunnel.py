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
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT / "src", ROOT):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from tests.interop import strongswan, topology  # noqa: E402
from tests.interop.pyipsec_daemon import PyipsecDaemon, pyipsec_toml  # noqa: E402
from tests.interop.strongswan import Charon, ConnSpec  # noqa: E402
from tests.interop.topology import RIGHT_INNER, RIGHT_OUTER, Topology, kill_pid  # noqa: E402

IKE_PROPOSAL = "aes256gcm16-prfsha256-x25519"
CONN = "bench"
CHILD = "net"
CONFIGS = ("plain", "ss-ss", "py-ss", "py-py")
LABELS = {
    "plain": "no tunnel (through the NAT)",
    "ss-ss": "strongSwan <-> strongSwan",
    "py-ss": "pyipsec (init) <-> strongSwan",
    "py-py": "pyipsec <-> pyipsec",
}
_LOG_TS = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})")


def median(xs: Iterable[float]) -> float:
    v = [x for x in xs if not math.isnan(x)]
    return statistics.median(v) if v else math.nan


def percentile(xs: Iterable[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1)."""
    v = sorted(x for x in xs if not math.isnan(x))
    if not v:
        return math.nan
    return v[max(0, min(len(v) - 1, math.ceil(q * len(v)) - 1))]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
        self.iperf = self.topo.popen(self.topo.right, ["iperf3", "-s"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)

    def down(self) -> None:
        for fn in reversed(self.cleanups):
            try:
                fn()
            except Exception as e:  # keep cleaning up
                print(f"clean-up: {e}", file=sys.stderr)
        self.cleanups.clear()
        if self.iperf is not None and self.iperf.poll() is None:
            kill_pid(self.iperf.pid)
            self.iperf.wait(timeout=5)
        self.topo.down()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def iperf3(self, dst: str) -> float:
        """One iperf3 TCP run left -> right; receiver Mbit/s (nan on failure).

        The sender's TCP retransmission count is left in ``last_retrans``."""
        self.last_retrans = -1
        secs = self.args.seconds
        proc = self.topo.exec(self.topo.left,
                              ["iperf3", "-c", dst, "-t", str(secs), "-J", "--connect-timeout",
                               "3000"], check=False, timeout=secs + 30)
        try:
            res = json.loads(proc.stdout)
            self.last_retrans = int(res["end"]["sum_sent"].get("retransmits", 0))
            return float(res["end"]["sum_received"]["bits_per_second"]) / 1e6
        except (ValueError, KeyError, TypeError):
            err = proc.stdout[-300:] + proc.stderr[-300:]
            print(f"    iperf3 to {dst} failed: {err.strip()}", file=sys.stderr)
            return math.nan

    def charon(self, side: str) -> Charon:
        ns = self.topo.left if side == "left" else self.topo.right
        spec = ConnSpec(name=CONN, side=side, proposals=IKE_PROPOSAL,
                        esp_proposals=self.args.esp,
                        **({"remote_addrs": RIGHT_OUTER} if side == "left"
                           else {"local_addrs": RIGHT_OUTER}))
        c = Charon(ns, name=side, debug="ike 1", loglevel=0,
                   state_dir=self.tmp / f"ss-{side}")
        self.cleanups.append(c.stop)
        return c.start(spec.render())

    def pyipsec(self, side: str) -> PyipsecDaemon:
        ns = self.topo.left if side == "left" else self.topo.right
        state = self.tmp / f"py-{side}"
        kw: dict[str, Any] = ({"remote_addrs": [RIGHT_OUTER]} if side == "left"
                              else {"local_addrs": [RIGHT_OUTER]})
        toml = pyipsec_toml(side=side, state_dir=state, conn=CONN, child=CHILD,
                            proposals=IKE_PROPOSAL, esp_proposals=self.args.esp,
                            log_level="info", extra_daemon={"keylog_file": ""}, **kw)
        d = PyipsecDaemon(ns, toml, state_dir=state)
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
        cpu0 = sum(cpu_seconds(p) for p in pids)
        t0 = time.monotonic()
        v = self.iperf3(RIGHT_INNER)
        wall = time.monotonic() - t0
        self.cpu[cfg].append((sum(cpu_seconds(p) for p in pids) - cpu0) / wall * 100)
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
            f"pyipsec tunnel benchmark, {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; "
            f"{os.cpu_count()} CPUs, kernel {os.uname().release}, "
            f"Python {sys.version.split()[0]}",
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
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
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
    reason = topology.missing_requirements() or strongswan.missing_requirements()
    if reason is None and shutil.which("iperf3") is None:
        reason = "iperf3 not installed"
    if reason:
        print(f"bench_tunnel: {reason}", file=sys.stderr)
        return 2
    bench = Bench(args)
    try:
        bench.up()
        bench.run()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    finally:
        bench.down()
    print()
    print(bench.report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
