"""Recovery time: a peer vanishes and returns; how fast does pyipsec restore the tunnel?

Usage: ``sudo python3 bench/bench_recovery.py [--runs N] [--peers ss,py] [--vanish kill,loss]
[--retransmit TRIES,TIMEOUT,BASE] [--down-time S]``.

Not a test: run it by hand, as root (network namespaces, strongSwan for ``ss``).  On one
three-namespace topology (``tests/interop/topology.py``, default ``--mode nat``: pyipsec
behind the masquerading router) pyipsec (left) initiates to a responder on the right,
strongSwan (``ss``, charon with kernel-libipsec) and/or pyipsec (``py``).  The initiator
has ``dpd_action = restart``, ``dpd_delay = --dpd-delay`` (1 s), ``dpd_timeout =
--dpd-timeout`` (2 s) and the retransmission schedule ``--retransmit`` (default 5 tries,
0.5 s, base 1.5: retransmissions 0.5, 1.25, 2.38, 4.06, 6.59 s after the first send,
given up at 10.4 s).  Each run:

1. the tunnel is up and ``ping -D -i 0.002`` runs 203.0.113.1 -> 203.0.113.65 through it;
2. the peer vanishes: ``kill`` = SIGKILL of its process by PID (no DELETE), ``loss`` =
   100 % loss on the router (nftables, both directions; the peer keeps its SAs);
3. once pyipsec re-initiates (DPD declared the peer dead; the sniffer below sees the
   first new IKE_SA_INIT request), the bench waits ``--down-time`` seconds (1 s) and brings the
   peer back: charon restarted with the same configuration (``back`` = its vici socket
   answered and the connection is loaded), the pyipsec responder restarted (``back`` =
   its control socket answered), or the loss rule deleted (``back`` = ``nft`` returned);
4. it waits for the first answered ping.

Timestamps (all CLOCK_REALTIME, one machine): an AF_PACKET sniffer in the initiator's
namespace (``eth0``, kernel receive timestamps ``SO_TIMESTAMPNS``) sees every IKE message
(UDP 500, and 4500 behind the non-ESP marker): the first IKE_SA_INIT request pyipsec sends
after ``back`` (``retry``), the first IKE_SA_INIT response (``answer`` -- the moment the
peer answers) and the IKE_AUTH response; the daemon's log gives ``CHILD_SA ... installed``
(1 ms resolution); ping's ``-D`` the first reply (2 ms ping interval).

Reported per peer/vanish pair, medians over ``--runs`` (5):

* ``answer -> IKE_AUTH resp``, ``answer -> child installed``, ``answer -> ping``: what
  pyipsec and the peer need once the peer answers (the original plan's goal: < 100 ms);
* ``back -> retry``: the wait for pyipsec's next IKE_SA_INIT retransmission, set by the
  retry schedule and when in it the peer returns;
* ``back -> ping``: the whole outage as a user sees it from the peer's return.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from _common import (
    CHILD,
    CONN,
    arg_parser,
    header,
    median,
    missing_requirements,
    pyipsec_daemon,
    run_bench,
    run_cleanups,
    ss_conf,
    stop_process,
)
from _common import charon as new_charon

ESP_PROPOSAL = "aes128gcm16"
IKE_SA_INIT, IKE_AUTH = 34, 35
_LOG_TS = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ")
_PING = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from")
SO_TIMESTAMPNS = 35
PACKET_OUTGOING = 4
ETH_P_ALL = 0x0003


# ------------------------------------------------------------------ the sniffer


def sniff(iface: str) -> int:
    """Print one line per IKE message on ``iface``: ``TS in|out EXCH R|Q MID``.

    Runs inside the initiator's namespace (``--sniff IFACE``); kernel timestamps."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((iface, 0))
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    print("ready", flush=True)
    cmsg = socket.CMSG_SPACE(16)
    while True:
        data, anc, _flags, addr = s.recvmsg(2048, cmsg)
        if len(data) < 14 + 20 + 8 or data[12:14] != b"\x08\x00" or data[23] != 17:
            continue
        ihl = (data[14] & 0x0F) * 4
        udp = 14 + ihl
        sport, dport = struct.unpack_from("!HH", data, udp)
        payload = data[udp + 8:]
        if 4500 in (sport, dport):
            if payload[:4] != b"\x00\x00\x00\x00":
                continue  # ESP-in-UDP or a keepalive
            payload = payload[4:]
        elif 500 not in (sport, dport):
            continue
        if len(payload) < 28:
            continue
        ts = time.time()
        for level, typ, val in anc:
            if level == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS and len(val) >= 16:
                sec, nsec = struct.unpack("=qq", val[:16])
                ts = sec + nsec / 1e9
        exch, flags = payload[18], payload[19]
        (mid,) = struct.unpack_from("!I", payload, 24)
        direction = "out" if addr[2] == PACKET_OUTGOING else "in"
        print(f"{ts:.6f} {direction} {exch} {'R' if flags & 0x20 else 'Q'} {mid}", flush=True)


@dataclass
class Wire:
    ts: float
    out: bool
    exch: int
    response: bool


def read_wire(path: Path) -> list[Wire]:
    out = []
    for line in path.read_text().splitlines():
        f = line.split()
        if len(f) == 5:
            out.append(Wire(float(f[0]), f[1] == "out", int(f[2]), f[3] == "R"))
    return out


def log_times(text: str, needle: str) -> list[float]:
    """Epoch times of the daemon log lines containing ``needle`` (1 ms resolution)."""
    out = []
    for line in text.splitlines():
        if needle not in line:
            continue
        m = _LOG_TS.match(line)
        if m:
            t = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timestamp()
            out.append(t + int(m.group(2)) / 1e3)
    return out


def ping_replies(path: Path) -> list[float]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        m = _PING.match(line)
        if m:
            out.append(float(m.group(1)))
    return out


# ------------------------------------------------------------------ the bench


@dataclass
class Result:
    peer: str
    vanish: str
    restart_to_back: float = math.nan
    back_to_retry: float = math.nan
    back_to_answer: float = math.nan
    answer_to_auth: float = math.nan
    answer_to_child: float = math.nan
    answer_to_ping: float = math.nan
    back_to_ping: float = math.nan
    kill_to_restart: float = math.nan
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        from tests.interop.topology import Topology

        self.args = args
        self.topo = Topology(mode=args.mode)
        self.tmp = Path(tempfile.mkdtemp(prefix="pyi-recov-"))
        self.sniffer: subprocess.Popen[bytes] | None = None
        self.sniff_path = self.tmp / "wire.txt"
        self.results: list[Result] = []
        self.cleanups: list[Any] = []

    # -------------------------------------------------------------- plumbing

    def up(self) -> None:
        self.topo.up()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(self.sniff_path, "wb") as out:
            self.sniffer = self.topo.popen(
                self.topo.left, [sys.executable, str(Path(__file__).resolve()), "--sniff",
                                 "eth0"], stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 5
        while "ready" not in self.sniff_path.read_text():
            if time.monotonic() > deadline or self.sniffer.poll() is not None:
                raise RuntimeError(f"sniffer did not start: {self.sniff_path.read_text()}")
            time.sleep(0.02)

    def down(self) -> None:
        self.stop_all()
        stop_process(self.sniffer)
        self.topo.down()
        if self.args.keep:
            print(f"logs kept in {self.tmp}", file=sys.stderr)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def stop_all(self) -> None:
        run_cleanups(self.cleanups)
        self.topo.clear_impairments()
        time.sleep(0.2)

    def retransmit(self) -> tuple[int, float, float]:
        tries, timeout, base = self.args.retransmit.split(",")
        return int(tries), float(timeout), float(base)

    def initiator(self) -> Any:
        a = self.args
        d = pyipsec_daemon(self.topo, "left", self.tmp / "left", ESP_PROPOSAL,
                           ipv6_inner=False, dpd_delay=a.dpd_delay, retransmit=self.retransmit(),
                           extra_conn={"dpd_timeout": a.dpd_timeout, "dpd_action": "restart"})
        self.cleanups.append(d.stop)
        return d.start()

    def ss_conf(self) -> str:
        return ss_conf("right", ESP_PROPOSAL, ipv6_inner=False)

    def py_responder(self, state: Path) -> Any:
        d = pyipsec_daemon(self.topo, "right", state, ESP_PROPOSAL, ipv6_inner=False)
        self.cleanups.append(d.stop)
        return d.start()

    def ping_ok(self) -> bool:
        from tests.interop.topology import LEFT_INNER, RIGHT_INNER

        return self.topo.ping(self.topo.left, RIGHT_INNER, count=1, source=LEFT_INNER,
                              timeout=0.5) == (1, 1)

    # -------------------------------------------------------------- one block

    def block(self, peer: str, vanish: str) -> None:
        """Start the pair once, then ``--runs`` vanish/return cycles."""
        from tests.interop.strongswan import Charon

        charon: Charon | None = None
        resp: Any = None
        state = self.tmp / f"right-{peer}-{vanish}"
        if peer == "ss":
            charon = new_charon(self.topo, "right", state)
            self.cleanups.append(lambda: charon.stop() if charon is not None else None)
            charon.start(self.ss_conf())
        else:
            resp = self.py_responder(state)
        left = self.initiator()
        left.up(CONN, CHILD)
        for i in range(1, self.args.runs + 1):
            r = Result(peer, vanish)
            try:
                resp = self.cycle(r, left, charon, resp)
            except Exception as e:  # reported, the bench goes on
                r.note = f"FAILED: {type(e).__name__}: {str(e)[:300]}"
            self.results.append(r)
            print(f"{peer}/{vanish} run {i}: " + ", ".join(
                f"{k} {v * 1e3:.1f} ms" for k, v in vars(r).items()
                if isinstance(v, float) and not math.isnan(v)) + (f"  {r.note}" if r.note
                                                                    else ""), flush=True)
            if r.note.startswith("FAILED"):
                break
        self.stop_all()

    def cycle(self, r: Result, left: Any, charon: Any, resp: Any) -> Any:
        from tests.interop.topology import LEFT_INNER, RIGHT_INNER

        a = self.args
        deadline = time.monotonic() + 10
        while not self.ping_ok():
            if time.monotonic() > deadline:
                raise RuntimeError("tunnel not up before the run")
        ping_path = self.tmp / "ping.txt"
        with open(ping_path, "wb") as out:
            ping = self.topo.popen(self.topo.left, ["ping", "-n", "-D", "-i", "0.002", "-W",
                                                    "1", "-I", LEFT_INNER, RIGHT_INNER],
                                   stdout=out, stderr=subprocess.STDOUT)
        try:
            time.sleep(0.3)
            log0 = len(left.log_path.read_text(errors="replace"))
            time.sleep(0.05)
            t_kill = time.time()
            if r.vanish == "loss":
                self.topo.impair_loss(100)
            elif charon is not None:
                charon.stop(kill=True)
            else:
                resp.kill()
            # pyipsec notices (DPD) and re-initiates
            limit = time.monotonic() + a.dpd_delay + a.dpd_timeout + 20
            while True:  # the first IKE_SA_INIT request on the wire after the kill
                restarts = [w.ts for w in read_wire(self.sniff_path) if w.ts > t_kill
                            and w.out and w.exch == IKE_SA_INIT and not w.response]
                if restarts:
                    break
                if time.monotonic() > limit:
                    raise RuntimeError("no re-initiation (IKE_SA_INIT) after the peer vanished")
                time.sleep(0.01)
            t_restart = restarts[0]
            r.kill_to_restart = t_restart - t_kill
            time.sleep(max(0.0, t_restart + a.down_time - time.time()))
            t_down_end = time.time()
            if r.vanish == "loss":
                self.topo.clear_impairments()
            elif charon is not None:
                charon.start(self.ss_conf())
            else:
                resp = self.py_responder(resp.state_dir)
            t_back = time.time()
            r.restart_to_back = t_back - t_restart
            r.extra["back_cmd"] = t_back - t_down_end
            limit = time.monotonic() + sum(self.schedule()) + 10
            while not ping_replies(ping_path) or ping_replies(ping_path)[-1] < t_back:
                if time.monotonic() > limit:
                    raise RuntimeError("no ping through the tunnel after the peer returned")
                time.sleep(0.01)
        finally:
            ping.send_signal(2)
            try:
                ping.wait(timeout=5)
            except subprocess.TimeoutExpired:
                ping.kill()
                ping.wait(timeout=5)
        time.sleep(0.05)
        wire = [w for w in read_wire(self.sniff_path) if w.ts >= t_restart - 0.01]
        # the peer is back from t_down_end on (loss cleared / process starting); for a
        # restarted process the answer can only come once it is up
        answer = next((w.ts for w in wire if not w.out and w.exch == IKE_SA_INIT
                       and w.response and w.ts >= t_down_end), math.nan)
        # the request the peer answered: the last IKE_SA_INIT pyipsec sent before that
        retry = max((w.ts for w in wire if w.out and w.exch == IKE_SA_INIT
                     and not w.response and w.ts <= answer), default=math.nan)
        auth = next((w.ts for w in wire if not w.out and w.exch == IKE_AUTH and w.response
                     and w.ts >= answer), math.nan)
        child = next((t for t in log_times(left.log_path.read_text(errors="replace")[log0:],
                                          "} installed:") if t >= answer - 0.001), math.nan)
        first = next((t for t in ping_replies(ping_path) if t >= t_back), math.nan)
        r.back_to_retry = retry - t_back
        r.back_to_answer = answer - t_back
        r.answer_to_auth = auth - answer
        r.answer_to_child = child - answer
        r.answer_to_ping = first - answer
        r.back_to_ping = first - t_back
        st = left.request("status")
        n_ike = len([s for s in st["ike_sas"] if str(s.get("state", "")).lower()
                     == "established"])
        n_child = len(st["child_sas"])
        if (n_ike, n_child) != (1, 1):
            r.note = f"after recovery: {n_ike} IKE SAs, {n_child} Child SAs"
        return resp

    def schedule(self) -> list[float]:
        tries, timeout, base = self.retransmit()
        return [timeout * base**n for n in range(tries + 1)]

    def run(self) -> None:
        for peer in self.args.peers:
            for vanish in self.args.vanish:
                try:
                    self.block(peer, vanish)
                finally:
                    self.stop_all()

    # -------------------------------------------------------------- report

    def report(self) -> str:
        a = self.args
        sched = self.schedule()
        at, acc = [], 0.0
        for d in sched[:-1]:
            acc += d
            at.append(acc)
        lines = [
            header("recovery"),
            f"topology {a.mode}; initiator dpd_delay {a.dpd_delay} s, dpd_timeout "
            f"{a.dpd_timeout} s, dpd_action restart, retransmit tries/timeout/base "
            f"{a.retransmit} (retransmissions at "
            f"{', '.join(f'{x:.2f}' for x in at)} s, given up at {sum(sched):.1f} s); "
            f"peer back {a.down_time} s after the restart began",
            "",
            "| peer / vanish | n | answer -> IKE_AUTH resp | answer -> child installed "
            "| answer -> ping | back -> retry | back -> ping | vanish -> re-initiation |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        names = {"ss": "strongSwan", "py": "pyipsec", "kill": "SIGKILL + restart",
                 "loss": "100 % loss, cleared"}

        def ms(xs: list[float]) -> str:
            v = [x for x in xs if not math.isnan(x)]
            if not v:
                return "-"
            return f"{median(v) * 1e3:.1f} ms ({min(v) * 1e3:.0f}-{max(v) * 1e3:.0f})"

        for peer in a.peers:
            for vanish in a.vanish:
                rs = [r for r in self.results if r.peer == peer and r.vanish == vanish
                      and not r.note.startswith("FAILED")]
                if not rs:
                    continue
                lines.append(
                    f"| {names[peer]} / {names[vanish]} | {len(rs)} "
                    f"| {ms([r.answer_to_auth for r in rs])} "
                    f"| {ms([r.answer_to_child for r in rs])} "
                    f"| {ms([r.answer_to_ping for r in rs])} "
                    f"| {ms([r.back_to_retry for r in rs])} "
                    f"| {ms([r.back_to_ping for r in rs])} "
                    f"| {ms([r.kill_to_restart for r in rs])} |")
        lines.append("")
        lines.append("medians (min-max); 'back' = charon's vici answers and the connection "
                     "is loaded / the pyipsec responder's control socket answers / the loss "
                     "rule is gone; 'retry' = the IKE_SA_INIT request the peer answered.")
        for r in self.results:
            if r.note:
                lines.append(f"note {r.peer}/{r.vanish}: {r.note}")
        return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) == 3 and sys.argv[1] == "--sniff":
        return sniff(sys.argv[2])
    ap = arg_parser(__doc__)

    def csv(s: str) -> list[str]:
        return [x.strip() for x in s.split(",") if x.strip()]

    ap.add_argument("--runs", type=int, default=5, help="vanish/return cycles per pair (5)")
    ap.add_argument("--peers", type=csv, default=["ss", "py"],
                    help="responders: ss (strongSwan), py (pyipsec) (ss,py)")
    ap.add_argument("--vanish", type=csv, default=["kill", "loss"],
                    help="kill (SIGKILL + restart), loss (100 %% loss, cleared) (kill,loss)")
    ap.add_argument("--retransmit", default="5,0.5,1.5",
                    help="initiator's retransmit_tries,timeout,base (5,0.5,1.5)")
    ap.add_argument("--dpd-delay", type=int, default=1, help="initiator's dpd_delay (1 s)")
    ap.add_argument("--dpd-timeout", type=int, default=2, help="initiator's dpd_timeout (2 s)")
    ap.add_argument("--down-time", type=float, default=1.0,
                    help="seconds between the re-initiation and the peer's return (1.0)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the state directory (daemon and charon logs)")
    ap.add_argument("--mode", choices=("nat", "nonat"), default="nat", help="topology (nat)")
    args = ap.parse_args(argv)
    reason = missing_requirements(strongswan="ss" in args.peers)
    if reason:
        print(f"bench_recovery: {reason}", file=sys.stderr)
        return 2
    bench = Bench(args)
    run_bench(bench)
    print()
    print(bench.report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
