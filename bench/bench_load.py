"""Load benchmark on the wire: many IKE SAs against a pyipsec and a strongSwan responder.

Usage: ``sudo python3 bench/bench_load.py --tunnels 2000`` (``--tunnels 300`` for a quick
run; ``--only pyipsec`` or ``--only strongswan`` for one responder; ``--rounds 5`` to
alternate the responders five times; ``--tunnels 51000 --mark 50000`` for the cost of a
handshake at 50,000 existing SAs).

Not a test: run it by hand, as root, on an otherwise quiet machine.  On one
three-namespace topology in ``nonat`` mode (``tests/interop/topology.py``: left
198.51.100.2, right 192.0.2.2, routed, no NAT) the load generator ``bench/loadgen.py``
(one Python process in the left namespace: one ``IkeManager``, one UDP socket on ports
500/4500) sets up ``--tunnels`` IKE SAs, each with one tunnel-mode Child SA, at most
``--inflight`` handshakes at a time (and ``--rate`` per second if given), first against

* ``pyipsec``: a pyipsec daemon (``python3 -m pyipsec daemon``) in the right namespace,
* ``pyipsec-reuse`` (only with ``--ke-reuse SECONDS``, after ``pyipsec``): the same with
  ``ke_reuse_seconds = SECONDS`` (the responder reuses its IKE_SA_INIT key exchange
  value, RFC 7296 §2.12; off by default, reported on a line of its own),

then against

* ``strongswan``: strongSwan's charon (5.9.x, kernel-libipsec) in the right namespace,

each responder started fresh for its block and stopped by PID afterwards.  Every tunnel
has its own identity (``load-<n>@example.net``), the same PSK and no INITIAL_CONTACT;
both responders have one connection with ``remote.id = %any`` (strongSwan: a secret
without identities), local selector 203.0.113.64/26 and remote selector 203.0.113.0/26,
which they narrow to the tunnel's own 203.0.113.1/32 UDP port ``10000 + n``.  IKE
``--proposal`` (aes256gcm16-prfsha256-x25519), ESP ``--esp`` (aes256gcm16).  The
responders are set up for a load test the way strongSwan's load-tester documentation
suggests: no stateless cookies and no per-address half-open limit below 10 x
``--inflight`` (pyipsec and charon ``cookie_threshold``,
``cookie_threshold_ip``, ``block_threshold``), charon with a 1024-row IKE SA hash table
(``ikesa_table_size``); logs at warning (pyipsec) / level 0 (charon).

Per responder the table gives: established tunnels per second (generator's wall time,
first initiate -> last Child SA), setup latency (median, p99, max), the generator's mean
number of handshakes in flight (time-weighted; ``--inflight`` unless ``--rate`` paces
or the slots are not refilled: it does not show a CPU-bound generator, whose CPU per
tunnel is a row of its own), the responder's CPU
seconds per established tunnel (``/proc/PID/stat`` utime + stime, before the generator
starts -> when it has finished; the whole thread group for charon), its memory per
tunnel (``VmRSS`` delta / established, read while every tunnel is still up), and what
the generator saw go wrong (failures by reason, IKE retransmissions, COOKIE challenges),
with the ratio pyipsec / strongSwan.  The generator's own CPU time is shown too: at a
few hundred handshakes per second a Python initiator may well be the bottleneck, so
compare CPU per tunnel rather than tunnels per second when strongSwan is far ahead.
CPU per tunnel is an average over the whole run: a cost per new tunnel that grows with
the tunnels already up (quadratic in total) shows as CPU per tunnel growing with
``--tunnels``, so compare runs of different sizes (e.g. 300 and 2000), or use ``--mark``.

``--rounds N`` runs the blocks alternately N times (pyipsec, [pyipsec-reuse,]
strongSwan, pyipsec, ...; each responder fresh per block): the machine may change speed
by a factor of 1.7 within minutes, so one block per responder gives ratios that move
between runs far more than the code does.  The table then shows the median of each
row over the rounds (ratio column: ratio of the medians), and a rounds table the
responder handshakes per CPU-second of every round with the per-round ratio (round i
of each responder ran back to back) and, last, the median of the per-round ratios: the
number to quote.

``--mark K`` makes the generator print a progress line when K tunnels are established;
the bench reads the responder's CPU time at that moment, which splits the block into
the first K tunnels and the rest (K..N, set up with K or more SAs already up):
responder handshakes per CPU-second of each part (and the generator's CPU per tunnel
of each, which should not grow).  ``--tunnels 2000 --mark 1000`` measures handshakes at
1,000 existing SAs, ``--tunnels 51000 --mark 50000`` at 50,000.  The split is exact
to within the handshakes in flight at the mark (at most ``--inflight``, half done on
average): their work so far counts before the mark.

A 300-tunnel run takes about half a minute; 51,000 tunnels take a few minutes for
pyipsec, but charon's kernel-libipsec back end (this kernel has no ESP transform) walks
lists of every SA, and it reached only ~50,000 tunnels in the generator's 43 minutes
(the timeout is 30 s + 50 ms per tunnel; ``--timeout`` to give more).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from _common import (  # first: it puts src/ and the repository root on sys.path
    IKE_PROPOSAL,
    ROOT,
    arg_parser,
    cpu_seconds,
    header,
    median,
    missing_requirements,
    rss_kib,
    run_bench,
    run_cleanups,
    stop_process,
)

# isort: split
from tests.interop.pyipsec_daemon import PyipsecDaemon, pyipsec_toml
from tests.interop.strongswan import RIGHT_ID, TEST_PSK, Charon, swanctl_conf
from tests.interop.topology import (
    LEFT_INNER,
    LEFT_OUTER,
    LEFT_SUBNET,
    RIGHT_OUTER,
    RIGHT_SUBNET,
    Topology,
)

RESPONDERS = ("pyipsec", "strongswan")
REUSE = "pyipsec-reuse"  # with --ke-reuse: run after "pyipsec"
LABELS = {"pyipsec": "pyipsec", REUSE: "pyipsec+reuse", "strongswan": "strongSwan"}
CONN = "load"
CHILD = "net"
LOADGEN = Path(__file__).resolve().parent / "loadgen.py"


def pyipsec_responder_toml(state: Path, *, proposal: str, esp: str, cookie_threshold: int,
                           psk: str = TEST_PSK, ke_reuse: float = 0.0) -> str:
    """One ``%any`` connection on the right host accepting every identity with the PSK
    (``ke_reuse``: ``ke_reuse_seconds``, RFC 7296 §2.12; 0 = off, the default)."""
    return pyipsec_toml(
        side="right", state_dir=state, conn=CONN, child=CHILD, local_addrs=[RIGHT_OUTER],
        remote_addrs=["%any"], proposals=proposal, esp_proposals=esp, ipv6_inner=False,
        log_level="warning", remote_id_override="%any", psk=psk,
        local_ts_override=[RIGHT_SUBNET], remote_ts_override=[LEFT_SUBNET],
        extra_daemon={
            "keylog_file": "",
            "cookie_threshold": cookie_threshold,
            "cookie_threshold_ip": cookie_threshold,
            "block_threshold": cookie_threshold,
            **({"ke_reuse_seconds": ke_reuse} if ke_reuse > 0 else {}),
        },
        extra_conn={"mobike": False})


def strongswan_responder_conf(*, proposal: str, esp: str, psk: str = TEST_PSK) -> str:
    """swanctl.conf: one connection with ``remote.id = %any`` and a secret without ids."""
    return swanctl_conf({
        "connections": {CONN: {
            "version": 2,
            "local_addrs": RIGHT_OUTER,
            "remote_addrs": "%any",
            "proposals": proposal,
            "mobike": False,
            "dpd_delay": "0s",
            "rekey_time": "0s",
            "reauth_time": 0,
            "local": {"auth": "psk", "id": RIGHT_ID},
            "remote": {"auth": "psk", "id": "%any"},
            "children": {CHILD: {
                "mode": "tunnel",
                "local_ts": RIGHT_SUBNET,
                "remote_ts": LEFT_SUBNET,
                "esp_proposals": esp,
                "rekey_time": "0s",
                "start_action": "none",
            }},
        }},
        "secrets": {"ike-load": {"secret": f'"{psk}"'}},
    })


def strongswan_load_settings(threshold: int) -> str:
    """strongswan.conf additions for a load test (merged into the generated ``charon``)."""
    return ("charon {\n"
            f"  cookie_threshold = {threshold}\n"
            f"  cookie_threshold_ip = {threshold}\n"
            f"  block_threshold = {threshold}\n"
            "  ikesa_table_size = 1024\n"
            "  ikesa_table_segments = 16\n"
            "}\n")


def pyipsec_sa_count(d: PyipsecDaemon) -> int:
    """The daemon's IKE SAs, paged: an unpaged status lists at most 1,000 SAs."""
    n, page = 0, 1000
    while True:
        got = len(d.request("status", timeout=60, offset=n, limit=page)["ike_sas"])
        n += got
        if got < page:
            return n


def charon_sa_count(c: Charon) -> int:
    """charon's IKE SAs (``swanctl --stats``); -1 when it does not say."""
    for line in c.swanctl("--stats").splitlines():
        if line.strip().startswith("IKE_SAs:"):
            return int(line.split()[1])
    return -1


def read_generator(stdout: IO[str], responder_cpu: Callable[[], float]
                   ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The generator's lines up to its result: ``(result, mark)``.

    A line with ``mark`` is ``loadgen --mark``'s progress line: ``responder_cpu()`` is
    read the moment it arrives and added to it as ``responder_cpu_s``.  The line with
    ``tunnels`` is the result (it ends the reading; ``--hold`` keeps the process
    running).  ``result`` is None when the generator ended without one.
    """
    mark: dict[str, Any] | None = None
    for line in stdout:
        if not line.strip():
            continue
        obj: dict[str, Any] = json.loads(line)
        if "mark" in obj:
            mark = {**obj, "responder_cpu_s": responder_cpu()}
        elif "tunnels" in obj:
            return obj, mark
    return None, mark


def handshakes_per_cpu(r: dict[str, Any]) -> float:
    """Established tunnels per responder CPU-second over the whole block (NaN when
    none came up: no rate to compare)."""
    cpu = float(r["responder_cpu_s"])
    return r["established"] / cpu if cpu > 0 and r["established"] else math.nan


def handshakes_per_cpu_first(r: dict[str, Any]) -> float:
    """The same for the tunnels up to ``--mark`` (NaN without a mark line)."""
    m = r.get("mark")
    if not m or m["responder_cpu_s"] <= 0:
        return math.nan
    return float(m["established"]) / float(m["responder_cpu_s"])


def _rate_after_mark(r: dict[str, Any], total: str, at_mark: str) -> float:
    """Tunnels established after ``--mark`` per unit of ``r[total] - mark[at_mark]``."""
    m = r.get("mark")
    if not m:
        return math.nan
    span = float(r[total]) - float(m[at_mark])
    n = r["established"] - m["established"]
    return n / span if span > 0 and n > 0 else math.nan


def handshakes_per_cpu_after(r: dict[str, Any]) -> float:
    """The same for the tunnels after ``--mark`` (with that many SAs up already)."""
    return _rate_after_mark(r, "responder_cpu_s", "responder_cpu_s")


def wall_rate_after(r: dict[str, Any]) -> float:
    """Tunnels per second of wall time after ``--mark`` (generator's clock)."""
    return _rate_after_mark(r, "wall", "elapsed")


def generator_ms_first(r: dict[str, Any]) -> float:
    """The generator's CPU per tunnel up to ``--mark`` (ms)."""
    m = r.get("mark")
    return float(m["cpu_s"]) / m["established"] * 1e3 if m and m["established"] else math.nan


def generator_ms_after(r: dict[str, Any]) -> float:
    """The generator's CPU per tunnel after ``--mark`` (ms; includes its final summary)."""
    m = r.get("mark")
    n = r["established"] - m["established"] if m else 0
    return (float(r["cpu_s"]) - float(m["cpu_s"])) / n * 1e3 if m and n > 0 else math.nan


def ratio(p: float, s: float) -> float:
    """``p / s``, NaN when either is missing or ``s`` is 0."""
    return p / s if s and not math.isnan(p) and not math.isnan(s) else math.nan


def fmt(x: float, spec: str) -> str:
    return "-" if math.isnan(x) else format(x, spec)


class Bench:
    """The topology and one block per responder (and round)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.topo = Topology(mode="nonat")
        self.tmp = Path(tempfile.mkdtemp(prefix="pyi-load-"))
        self.results: dict[str, dict[str, Any]] = {}  # the latest block per responder
        self.runs: dict[str, list[dict[str, Any]]] = {}  # every block, round by round
        self.round = 0
        self.incomplete = ""  # why the rounds stopped early, if they did
        self.cleanups: list[Callable[[], None]] = []

    def up(self) -> None:
        self.topo.up()

    def down(self) -> None:
        run_cleanups(self.cleanups)
        self.topo.down()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ---------------------------------------------------------------- responders

    def start_pyipsec(self, ke_reuse: float = 0.0) -> tuple[int, Callable[[], int]]:
        a = self.args
        state = self.tmp / f"{'pyipsec-reuse' if ke_reuse else 'pyipsec'}-{self.round}"
        d = PyipsecDaemon(self.topo.right, pyipsec_responder_toml(
            state, proposal=a.proposal, esp=a.esp, cookie_threshold=10 * a.inflight,
            ke_reuse=ke_reuse), state_dir=state)
        self.cleanups.append(d.stop)
        d.start()
        assert d.proc is not None

        return d.proc.pid, lambda: pyipsec_sa_count(d)

    def start_strongswan(self) -> tuple[int, Callable[[], int]]:
        a = self.args
        c = Charon(self.topo.right, name="right", debug="ike 0", loglevel=0,
                   state_dir=self.tmp / f"strongswan-{self.round}",
                   extra_conf=strongswan_load_settings(10 * a.inflight))
        self.cleanups.append(c.stop)
        c.start(strongswan_responder_conf(proposal=a.proposal, esp=a.esp))
        assert c.pid is not None

        return c.pid, lambda: charon_sa_count(c)

    # ---------------------------------------------------------------- one block

    def generator(self) -> subprocess.Popen[str]:
        return self.spawn_generator(LOADGEN, ("--psk", TEST_PSK))

    def spawn_generator(self, script: Path, auth: tuple[str, ...]) -> subprocess.Popen[str]:
        """``script`` (``loadgen.py`` or a variant taking its options) in the initiator's
        namespace; ``auth``: how it authenticates."""
        a = self.args
        argv = [sys.executable, str(script), "--local", LEFT_OUTER, "--remote", RIGHT_OUTER,
                "--tunnels", str(a.tunnels), "--inflight", str(a.inflight),
                "--rate", str(a.rate), "--proposal", a.proposal, "--esp", a.esp,
                "--inner", LEFT_INNER, "--remote-ts", RIGHT_SUBNET, *auth, "--hold"]
        if a.timeout:
            argv += ["--timeout", str(a.timeout)]
        if getattr(a, "mark", 0):
            argv += ["--mark", str(a.mark)]
        err = open(self.tmp / "loadgen.err", "a")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(["ip", "netns", "exec", self.topo.left, *argv],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                text=True, cwd=ROOT, start_new_session=True)
        err.close()
        return proc

    def run_block(self, responder: str) -> dict[str, Any]:
        """One responder, started fresh, against one generator; the generator's result
        plus the responder's CPU and memory (and, with ``--mark``, its CPU at the mark)."""
        if responder == "strongswan":
            pid, count = self.start_strongswan()
        elif responder == REUSE:
            pid, count = self.start_pyipsec(ke_reuse=self.args.ke_reuse)
        else:
            pid, count = self.start_pyipsec()
        time.sleep(0.5)  # let the responder settle
        cpu0, rss0 = cpu_seconds(pid), rss_kib(pid)
        gen = self.generator()
        self.cleanups.append(lambda: stop_process(gen))  # type: ignore[arg-type]
        try:
            assert gen.stdout is not None
            res, mark = read_generator(gen.stdout, lambda: cpu_seconds(pid) - cpu0)
            cpu1, rss1 = cpu_seconds(pid), rss_kib(pid)
            if res is None:
                tail = (self.tmp / "loadgen.err").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"load generator failed:\n{tail}")
            if mark is not None:
                res["mark"] = mark
            try:
                res["responder_sas"] = count()
            except Exception as e:  # a report without this number is still a report
                print(f"  {responder}: counting its SAs failed: {e}", file=sys.stderr)
                res["responder_sas"] = -1
        finally:
            if gen.stdin is not None:
                gen.stdin.close()
            try:
                gen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                stop_process(gen)  # type: ignore[arg-type]
        n = max(1, res["established"])
        res["cpu_per_tunnel_ms"] = (cpu1 - cpu0) / n * 1e3
        res["responder_cpu_s"] = cpu1 - cpu0
        res["rss_per_tunnel_kib"] = (rss1 - rss0) / n
        res["rss_before_kib"], res["rss_after_kib"] = rss0, rss1
        return res

    def order(self) -> list[str]:
        """The responders of one round, in the order they run."""
        order = [r for r in RESPONDERS if r in self.args.only]
        if self.args.ke_reuse > 0 and "pyipsec" in order:
            order.insert(order.index("pyipsec") + 1, REUSE)
        return order

    def run(self) -> None:
        """``--rounds`` rounds; each runs every responder once, fresh, back to back."""
        rounds = max(1, self.args.rounds)
        for i in range(rounds):
            self.round = i
            for responder in self.order():
                try:
                    res = self.run_block(responder)
                except RuntimeError as e:
                    if self.round == 0:
                        raise
                    self.incomplete = f"round {self.round + 1}, {LABELS[responder]}: {e}"
                    print(f"stopping: {self.incomplete}", file=sys.stderr)
                    self._drop_unpaired()
                    return
                finally:
                    run_cleanups(self.cleanups)
                self.results[responder] = res
                self.runs.setdefault(responder, []).append(res)
                self._progress(responder, res, rounds)

    def _drop_unpaired(self) -> None:
        """After a failed block: keep only the rounds every responder finished."""
        done = min(len(self.runs.get(r, [])) for r in self.order())
        for r in self.runs:
            del self.runs[r][done:]

    def _progress(self, responder: str, res: dict[str, Any], rounds: int) -> None:
        grown = res["rss_after_kib"] - res["rss_before_kib"]
        prefix = f"round {self.round + 1}/{rounds} " if rounds > 1 else ""
        mark = res.get("mark")
        at_mark = (f", {handshakes_per_cpu_first(res):.0f} / "
                   f"{handshakes_per_cpu_after(res):.0f} handshakes per CPU-s before / "
                   f"after {mark['established']}" if mark else "")
        print(f"{prefix}{LABELS[responder]:10s}: {res['established']}/{res['tunnels']} "
              f"tunnels in {res['wall']:.1f} s ({res['rate']:.0f}/s, "
              f"{res.get('inflight_mean', math.nan):.1f} in flight on average), responder "
              f"CPU {res['responder_cpu_s']:.2f} s ({handshakes_per_cpu(res):.0f} "
              f"handshakes per CPU-s{at_mark}), RSS +{grown} KiB, {res['failed']} failed, "
              f"{res['retransmits']} retransmits, responder reports {res['responder_sas']} "
              f"IKE SAs", flush=True)

    # ---------------------------------------------------------------- report

    def report(self) -> str:
        a = self.args
        py, ss = self.runs.get("pyipsec", []), self.runs.get("strongswan", [])
        rounds = max(len(py), len(ss))
        k = getattr(a, "mark", 0)
        of = f", medians of {rounds} rounds" if rounds > 1 else ""
        lines = [
            header("load"),
            f"{a.tunnels} IKE SAs + 1 Child SA each from one pyipsec load generator, "
            f"{a.inflight} in flight, rate {a.rate or 'unlimited'}/s, IKE {a.proposal}, "
            f"ESP {a.esp}, no NAT{of}",
            "",
            f"| {'what':56s} | {'pyipsec':>12s} | {'strongSwan':>12s} | {'py/ss':>6s} |",
            f"|{'-' * 58}|{'-' * 14}|{'-' * 14}|{'-' * 8}|",
        ]

        def val(runs: list[dict[str, Any]], fn: Callable[[dict[str, Any]], float]) -> float:
            return median(float(fn(r)) for r in runs)

        def row(what: str, fn: Callable[[dict[str, Any]], float], spec: str) -> None:
            p, s = val(py, fn), val(ss, fn)
            lines.append(f"| {what:56s} | {fmt(p, spec):>12s} | {fmt(s, spec):>12s} "
                         f"| {fmt(ratio(p, s), '.2f'):>6s} |")

        row("established tunnels", lambda r: r["established"], ".0f")
        row("established tunnels / s (wall)", lambda r: r["rate"], ".1f")
        row("setup latency median (ms)", lambda r: r["latency_ms"]["median"], ".1f")
        row("setup latency p99 (ms)", lambda r: r["latency_ms"]["p99"], ".1f")
        row("setup latency max (ms)", lambda r: r["latency_ms"].get("max", math.nan), ".1f")
        row("handshakes in flight at the generator (mean)",
            lambda r: r.get("inflight_mean", math.nan), ".1f")
        row("responder CPU per tunnel (ms)", lambda r: r["cpu_per_tunnel_ms"], ".2f")
        row("responder handshakes per CPU-second", handshakes_per_cpu, ".0f")
        if k:
            row(f"responder handshakes per CPU-second, first {k} tunnels",
                handshakes_per_cpu_first, ".0f")
            row(f"... after {k} tunnels ({k}..{a.tunnels})", handshakes_per_cpu_after, ".0f")
            row(f"established tunnels / s (wall), after {k}", wall_rate_after, ".1f")
        row("responder RSS per tunnel (KiB)", lambda r: r["rss_per_tunnel_kib"], ".1f")
        row("responder RSS with all tunnels up (MiB)", lambda r: r["rss_after_kib"] / 1024,
            ".1f")
        row("IKE SAs the responder reports", lambda r: r["responder_sas"], ".0f")
        row("generator CPU per tunnel (ms)",
            lambda r: r["cpu_s"] / max(1, r["established"]) * 1e3, ".2f")
        if k:
            row(f"generator CPU per tunnel, first {k} (ms)", generator_ms_first, ".2f")
            row(f"... after {k}", generator_ms_after, ".2f")
        row("generator peak RSS (MiB)", lambda r: r.get("max_rss_mib", math.nan), ".1f")
        row("failures seen by the generator", lambda r: r["failed"], ".0f")
        row("IKE retransmissions by the generator", lambda r: r["retransmits"], ".0f")
        row("COOKIE challenges", lambda r: r["cookies"], ".0f")
        lines += self._reuse_rows()
        lines += self._rounds_table()
        lines.append("")
        lines.append("ratios: pyipsec / strongSwan (CPU, RSS, latency: lower is better; "
                     "rates and handshakes per CPU-second: higher is better).")
        if self.incomplete:
            lines.append(f"incomplete: {self.incomplete}")
        for name, runs in self.runs.items():
            for i, r in enumerate(runs):
                extra = {k: r[k] for k in ("failures", "errors") if r.get(k)}
                if extra:
                    lines.append(f"{LABELS[name]} round {i + 1}: {json.dumps(extra)}")
        return "\n".join(lines)

    def _rounds_table(self) -> list[str]:
        """Per round: handshakes per CPU-second of each responder and their ratio (the
        blocks of a round ran back to back), with ``--mark`` also before / after it;
        last the medians, the ratio column being the median of the per-round ratios."""
        names = [n for n in self.order() if self.runs.get(n)]
        rounds = min((len(self.runs[n]) for n in names), default=0)
        if rounds < 2:
            return []
        k = getattr(self.args, "mark", 0)
        measures: list[tuple[str, Callable[[dict[str, Any]], float]]] = [
            ("all", handshakes_per_cpu)]
        if k:
            measures += [(f"first {k}", handshakes_per_cpu_first),
                         (f"after {k}", handshakes_per_cpu_after)]
        pairs = [(n, "strongswan") for n in names if n != "strongswan"
                 and "strongswan" in names]
        cols: list[tuple[str, Callable[[int], float]]] = []
        for title, fn in measures:
            cols += [(f"{LABELS[n]} {title}", self._column(fn, n)) for n in names]
            cols += [(f"{'py+reuse' if n == REUSE else 'py'}/ss {title}",
                      self._column(fn, n, s)) for n, s in pairs]
        out = ["", "responder handshakes per CPU-second per round (each round: the "
               "responders back to back, in this order); ratios per round:", "",
               "| round | " + " | ".join(t for t, _ in cols) + " |",
               "|-------|" + "|".join("-" * (len(t) + 2) for t, _ in cols) + "|"]
        for i in range(rounds):
            out.append(f"| {i + 1:5d} | " + " | ".join(
                f"{fmt(fn(i), '.2f' if '/' in t else '.0f'):>{len(t)}s}" for t, fn in cols)
                + " |")
        meds = [(t, median(fn(i) for i in range(rounds))) for t, fn in cols]
        out.append("| med.  | " + " | ".join(
            f"{fmt(m, '.2f' if '/' in t else '.0f'):>{len(t)}s}" for t, m in meds) + " |")
        return out

    def _column(self, fn: Callable[[dict[str, Any]], float], name: str,
                over: str = "") -> Callable[[int], float]:
        """Round ``i`` -> ``fn`` of ``name``'s block (divided by ``over``'s if given)."""
        def cell(i: int) -> float:
            x = fn(self.runs[name][i])
            return ratio(x, fn(self.runs[over][i])) if over else x
        return cell

    def _reuse_rows(self) -> list[str]:
        """The pyipsec responder with ke_reuse_seconds (RFC 7296 §2.12), if it ran
        (medians over the rounds)."""
        ru = self.runs.get(REUSE)
        if not ru:
            return []
        cpu = median(r["cpu_per_tunnel_ms"] for r in ru)
        vs = []
        for name, key in (("strongSwan", "strongswan"), ("pyipsec", "pyipsec")):
            other = median(r["cpu_per_tunnel_ms"] for r in self.runs.get(key, []))
            if not math.isnan(other) and cpu:
                vs.append(f"{name} {cpu / other:.2f}")
        return ["", f"pyipsec with ke_reuse_seconds = {self.args.ke_reuse:g}: "
                f"{median(r['established'] for r in ru):.0f} tunnels, "
                f"{median(r['rate'] for r in ru):.1f}/s, responder CPU per tunnel "
                f"{cpu:.2f} ms ({1e3 / cpu if cpu else math.nan:.0f} per CPU-second); "
                f"CPU ratio to {', to '.join(vs) or '-'}"]


def main(argv: list[str] | None = None) -> int:
    ap = arg_parser(__doc__)
    ap.add_argument("--tunnels", type=int, default=2000, help="IKE SAs per responder (2000)")
    ap.add_argument("--inflight", type=int, default=50,
                    help="handshakes in flight at most (50)")
    ap.add_argument("--rate", type=float, default=0.0,
                    help="handshakes started per second (0 = only --inflight limits)")
    ap.add_argument("--proposal", default=IKE_PROPOSAL, help=f"IKE proposal ({IKE_PROPOSAL})")
    ap.add_argument("--esp", default="aes256gcm16", help="ESP proposal (aes256gcm16)")
    ap.add_argument("--timeout", type=float, default=0.0,
                    help="generator gives up after this many seconds (0 = 30 + tunnels/20)")
    ap.add_argument("--only", type=lambda s: [x.strip() for x in s.split(",")],
                    default=list(RESPONDERS), help=f"subset of {','.join(RESPONDERS)}")
    ap.add_argument("--ke-reuse", type=float, default=0.0, metavar="SECONDS",
                    help="also run a pyipsec responder with ke_reuse_seconds = SECONDS "
                         "(RFC 7296 §2.12; off by default) after the default one")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run the responders alternately this many times, each block "
                         "fresh; medians and per-round ratios (1)")
    ap.add_argument("--mark", type=int, default=0, metavar="K",
                    help="also measure handshakes per CPU-second of the first K tunnels "
                         "and of those after them (0 = off)")
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    if not 0 <= args.mark < args.tunnels:
        ap.error("--mark must be 0 or less than --tunnels")
    reason = missing_requirements(strongswan="strongswan" in args.only)
    if reason:
        print(f"bench_load: {reason}", file=sys.stderr)
        return 2
    bench = Bench(args)
    run_bench(bench)
    print()
    print(bench.report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
