"""UDP encapsulation overhead: plain ESP vs ESP-in-UDP between two pyipsec daemons.

Usage: ``sudo python3 bench/bench_encap.py [--runs N] [--seconds S] [--no-tunnel]``.

Not a test: run it by hand, as root, on an otherwise quiet machine.  Two parts:

1. **Tunnel** (needs root, iperf3): one ``nonat`` topology (``tests/interop/topology.py``:
   the router only forwards, so the daemons detect no NAT), pyipsec (left, initiator) <->
   pyipsec (right), iperf3 TCP left -> right through the tunnel (inner 203.0.113.1 ->
   203.0.113.65, ESP ``--esp``, default AES-GCM-16-128), alternating

   * ``plain``: ``encap = false`` on both sides: ESP as IP protocol 50 (raw sockets);
   * ``encap``: ``encap = true`` on both sides: forced UDP encapsulation on port 4500;

   ``--runs`` times each (the order flips every run so that neither mode always goes
   first).  Every block checks what really went over the wire: the ``encap`` flags of
   ``pyipsec status --json`` (IKE SA ``nat.encap`` and the Child SA's ``encap``) and two
   nftables counters on the router (``meta l4proto esp`` and ``udp dport 4500``); a block
   whose traffic took the wrong form is reported and left out of the medians.
2. **In memory** (no root): the per-packet cost of the data-plane work that differs
   between the two modes, for 1400-byte inner IPv4 packets (the TUN MTU), median of
   process CPU time: outbound ``EspOutbound.protect`` alone (what the daemon does in both
   modes: the kernel adds the outer IP header for the raw socket and the UDP header for the
   UDP socket) and ``protect`` + building the 8-byte UDP header in user space (what a
   sender that framed it itself would pay: an upper bound of the framing); inbound the
   raw socket's IPv4-header strip + ``EspInbound.unprotect`` vs the NAT-T socket's
   non-ESP-marker check + ``unprotect`` (the daemon's fast path).  Also the extra bytes
   on the wire: 8 per packet.

The table gives medians and the overhead ``1 - encap / plain`` (positive = encapsulation
is slower).  The goal from the original plan: under 5 %.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (  # first: it puts src/ and the repository root on sys.path
    CHILD,
    CONN,
    arg_parser,
    header,
    iperf3_cpu,
    missing_requirements,
    pyipsec_daemon,
    run_bench,
    start_iperf_server,
    stop_process,
)

# isort: split
from pyipsec.esp import EspInbound, EspOutbound, ReplayWindow, suite_sizes
from pyipsec.ikev2.constants import NON_ESP_MARKER, EncrId
from pyipsec.nat import PacketType, detect_packet_type

MODES = ("plain", "encap")
COUNTERS = {"esp": "meta l4proto esp", "udp4500": "udp dport 4500"}
INNER = 1400  # the TUN MTU: the size of a full inner packet
POOL = 1000


def median(xs: list[float]) -> float:
    # unlike _common.median, NaN (a failed iperf3 run in a block of the right form) is kept
    return statistics.median(xs) if xs else float("nan")


# ------------------------------------------------------------------ part 2: in memory


def _inner_packet() -> bytes:
    """A 1400-byte IPv4/TCP packet 203.0.113.1 -> 203.0.113.65 (contents do not matter)."""
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, INNER, 1, 0, 64, 6, 0,
                      bytes([203, 0, 113, 1]), bytes([203, 0, 113, 65]))
    return hdr + os.urandom(INNER - len(hdr))


def in_memory(n: int, repeats: int, esp_bits: int) -> dict[str, float]:
    """Seconds per packet of each path (see the module docstring)."""
    encr = EncrId.AES_GCM_16
    ek_len, ik_len = suite_sizes(encr, esp_bits, None)
    ek, ik = os.urandom(ek_len), os.urandom(ik_len)
    pkt = _inner_packet()
    out = EspOutbound(0x1000, encr, esp_bits, None, ek, ik)
    pool = [out.protect(pkt, 4) for _ in range(POOL)]
    out = EspOutbound(0x1000, encr, esp_bits, None, ek, ik)
    udp_hdr = struct.Struct("!HHHH")
    ip_hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(pool[0]), 1, 0, 64, 50, 0,
                         bytes([192, 0, 2, 2]), bytes([198, 51, 100, 2]))
    raw_pool = [ip_hdr + p for p in pool]  # what an IPv4 raw socket hands the daemon
    # what recv_into leaves in the daemon's receive buffer (a memoryview made once)
    udp_pool = [memoryview(bytearray(p)) for p in pool]

    def out_plain(k: int) -> None:
        protect = out.protect
        for _ in range(k):
            protect(pkt, 4)

    def out_encap(k: int) -> None:
        protect, pack = out.protect, udp_hdr.pack
        for _ in range(k):
            esp = protect(pkt, 4)
            pack(4500, 4500, 8 + len(esp), 0) + esp  # the work is the point

    inb = EspInbound(0x1000, encr, esp_bits, None, ek, ik, replay_window=128)
    esp_min = 8

    def in_plain(k: int) -> None:
        for i in range(0, k, POOL):
            inb.replay = ReplayWindow(128)
            unprotect = inb.unprotect
            for data in raw_pool[: min(POOL, k - i)]:
                ihl = (data[0] & 0x0F) * 4 if data else 0  # RawEspSocket.recv
                unprotect(data[ihl:])

    def in_encap(k: int) -> None:
        for i in range(0, k, POOL):
            inb.replay = ReplayWindow(128)
            unprotect = inb.unprotect
            for view in udp_pool[: min(POOL, k - i)]:
                n = len(view)
                data = bytes(view[0:n])  # the daemon's copy out of the receive buffer
                if n >= esp_min and data[:4] != NON_ESP_MARKER:  # _on_udp_readable's fast path
                    unprotect(data)

    def classify(k: int) -> None:
        p = pool[0]
        for _ in range(k):
            detect_packet_type(p, port_4500=True)

    assert detect_packet_type(pool[0], port_4500=True) is PacketType.ESP
    fns = {"out-plain": out_plain, "out-encap": out_encap, "in-plain": in_plain,
           "in-encap": in_encap, "classify": classify}
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn(200)  # warm up
    for r in range(repeats):  # interleaved (order flipped each repeat): drift hits all
        for name in (list(fns) if r % 2 == 0 else list(reversed(fns))):
            t0 = time.process_time()
            fns[name](n)
            times[name].append((time.process_time() - t0) / n)
    res = {k: statistics.median(v) for k, v in times.items()}
    for d in ("out", "in"):  # median of the per-repeat ratios: robust against drift
        res[f"{d}-ratio"] = statistics.median(
            e / p for p, e in zip(times[f"{d}-plain"], times[f"{d}-encap"], strict=True))
    res["esp-len"] = float(len(pool[0]))
    return res


# ------------------------------------------------------------------ part 1: tunnel


class Bench:
    """The nonat topology, an iperf3 server on the right, one daemon pair per block."""

    def __init__(self, args: argparse.Namespace) -> None:
        from tests.interop.topology import Topology

        self.args = args
        self.topo = Topology(mode="nonat")
        self.iperf: subprocess.Popen[bytes] | None = None
        self.tmp = Path(tempfile.mkdtemp(prefix="pyi-encap-"))
        self.tput: dict[str, list[float]] = {m: [] for m in MODES}
        self.cpu: dict[str, list[float]] = {m: [] for m in MODES}
        self.retrans: dict[str, list[int]] = {m: [] for m in MODES}
        self.wire: dict[str, list[dict[str, int]]] = {m: [] for m in MODES}
        self.rejected: list[str] = []
        self.daemons: list[Any] = []
        self.started = 0

    def up(self) -> None:
        self.topo.up()
        self.iperf = start_iperf_server(self.topo)

    def down(self) -> None:
        self.stop_daemons()
        stop_process(self.iperf)
        self.topo.stop_counters()
        self.topo.down()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def stop_daemons(self) -> None:
        for d in reversed(self.daemons):
            try:
                d.stop()
            except Exception as e:  # keep cleaning up
                print(f"clean-up: {e}", file=sys.stderr)
        self.daemons.clear()
        time.sleep(0.2)  # TUN devices and sockets of the stopped daemons go away

    def daemon(self, side: str, encap: bool) -> Any:
        self.started += 1
        d = pyipsec_daemon(self.topo, side, self.tmp / f"{side}-{self.started}",
                           self.args.esp, encap=encap)
        self.daemons.append(d)
        return d.start()

    def block(self, mode: str) -> str:
        """One daemon pair in ``mode``; returns a one-line summary."""
        from tests.interop.topology import RIGHT_INNER

        encap = mode == "encap"
        right = self.daemon("right", encap)
        left = self.daemon("left", encap)
        left.up(CONN, CHILD)
        st = left.status()  # the CLI: pyipsec status --json
        ike = st["ike_sas"][0]
        child = st["child_sas"][0]
        flags = (bool(ike["nat"]["encap"]), bool(child["encap"]))
        self.topo.start_counters(COUNTERS)
        pids = [d.proc.pid for d in (left, right) if d.proc is not None]
        tput, retrans, cpu = iperf3_cpu(self.topo, RIGHT_INNER, self.args.seconds, pids)
        wire = self.topo.counters()
        self.topo.stop_counters()
        want_esp = not encap
        ok = (flags == (encap, encap)
              and (wire.get("esp", 0) > 0) == want_esp
              and (wire.get("udp4500", 0) > 0) == encap)
        note = (f"status encap ike={flags[0]} child={flags[1]}; router: "
                f"{wire.get('esp', 0)} ESP (proto 50), {wire.get('udp4500', 0)} UDP/4500 pkts")
        if ok:
            self.tput[mode].append(tput)
            self.cpu[mode].append(cpu)
            self.retrans[mode].append(retrans)
            self.wire[mode].append(wire)
        else:
            self.rejected.append(f"{mode}: {note}")
        self.stop_daemons()
        return (f"{tput:8.1f} Mbit/s, {retrans} TCP retransmits, daemons' CPU {cpu:.0f} %; "
                f"{note}{'' if ok else '  <-- WRONG FORM, not counted'}")

    def run(self) -> None:
        for i in range(1, self.args.runs + 1):
            order = MODES if i % 2 else tuple(reversed(MODES))
            for mode in order:
                try:
                    line = self.block(mode)
                except Exception as e:  # a failed block is reported, the run goes on
                    keep = Path(tempfile.mkdtemp(prefix="pyi-encap-failed-"))
                    for d in self.daemons:
                        shutil.copy(d.log_path, keep / f"{d.state_dir.name}.log")
                    line = (f"FAILED: {type(e).__name__}: {str(e).splitlines()[0][:200]} "
                            f"(daemon logs kept in {keep})")
                    self.rejected.append(f"{mode}: block failed: {type(e).__name__}")
                finally:
                    self.stop_daemons()
                print(f"run {i} {mode:5s}: {line}", flush=True)


def report(args: argparse.Namespace, bench: Bench | None, mem: dict[str, float] | None) -> str:
    lines = [header("encapsulation")]
    if bench is not None:
        a = args
        p, e = median(bench.tput["plain"]), median(bench.tput["encap"])
        lines += [
            f"tunnel: pyipsec <-> pyipsec, no NAT, iperf3 TCP {a.seconds} s x {a.runs} runs "
            f"per mode (alternating), ESP {a.esp}",
            "",
            "| mode | median Mbit/s | runs | daemons' CPU | TCP retransmits (median) |",
            "| --- | --- | --- | --- | --- |",
        ]
        for mode, label in (("plain", "plain ESP (IP proto 50)"),
                            ("encap", "ESP-in-UDP 4500 (encap = true)")):
            xs = bench.tput[mode]
            lines.append(
                f"| {label} | {median(xs):.0f} | {' '.join(f'{x:.0f}' for x in xs)} | "
                f"{median(bench.cpu[mode]):.0f} % | "
                f"{median([float(r) for r in bench.retrans[mode]]):.0f} |")
        lines.append("")
        lines.append(f"overhead of encapsulation (1 - encap/plain): {(1 - e / p) * 100:+.1f} % "
                     f"(goal: < 5 %)")
        for r in bench.rejected:
            lines.append(f"rejected block: {r}")
    if mem is not None:
        esp_len = int(mem["esp-len"])
        wire_plain = 20 + esp_len
        lines += [
            "",
            f"in memory: {INNER}-byte inner IPv4 packets, ESP {args.esp} ({esp_len} bytes), "
            f"median CPU time per packet, {args.repeats} interleaved repeats; overhead = "
            "median of the per-repeat ratios",
            "",
            "| path | plain µs | encap µs | encap - plain | overhead |",
            "| --- | --- | --- | --- | --- |",
        ]
        for d, what in (("out", "outbound: protect / protect + 8-byte UDP header built in "
                                "user space (the daemon leaves that to the kernel)"),
                        ("in", "inbound: IP-header strip / non-ESP-marker check + copy out "
                               "of the receive buffer, + unprotect")):
            pl, en = mem[f"{d}-plain"], mem[f"{d}-encap"]
            lines.append(f"| {what} | {pl * 1e6:.2f} | {en * 1e6:.2f} | "
                         f"{(en - pl) * 1e6:+.2f} | {(mem[f'{d}-ratio'] - 1) * 100:+.1f} % |")
        lines.append(f"| classification of a 4500 datagram (nat.detect_packet_type) | - | "
                     f"{mem['classify'] * 1e6:.2f} | | |")
        lines.append(f"| bytes on the wire per full packet | {wire_plain} | {wire_plain + 8} | "
                     f"+8 | {8 / wire_plain * 100:+.1f} % |")
        if bench is not None and bench.tput["encap"] and bench.cpu["encap"]:
            # both daemons' CPU time per inner packet in the encap tunnel runs
            pps = median(bench.tput["encap"]) * 1e6 / 8 / INNER
            per_pkt = median(bench.cpu["encap"]) / 100 / pps
            extra = (mem["out-encap"] - mem["out-plain"]) + (mem["in-encap"] - mem["in-plain"])
            lines.append("")
            lines.append(f"both daemons together spent {per_pkt * 1e6:.1f} µs of CPU per "
                         f"{INNER}-byte packet in the encap tunnel runs; the framing "
                         f"difference (out + in, {extra * 1e6:+.2f} µs) is "
                         f"{extra / per_pkt * 100:+.1f} % of that")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = arg_parser(__doc__)
    ap.add_argument("--runs", type=int, default=5, help="iperf3 runs per mode (5)")
    ap.add_argument("--seconds", type=int, default=5, help="iperf3 duration (5)")
    ap.add_argument("--esp", default="aes128gcm16", help="ESP proposal (aes128gcm16)")
    ap.add_argument("--packets", type=int, default=20000,
                    help="packets per in-memory repeat (20000)")
    ap.add_argument("--repeats", type=int, default=11, help="in-memory repeats (11)")
    ap.add_argument("--no-tunnel", action="store_true", help="only the in-memory part")
    ap.add_argument("--no-memory", action="store_true", help="only the tunnel part")
    args = ap.parse_args(argv)
    bits = 256 if "256" in args.esp else 128
    bench: Bench | None = None
    if not args.no_tunnel:
        reason = missing_requirements(iperf3=True)
        if reason:
            print(f"bench_encap: {reason} (use --no-tunnel for the in-memory part)",
                  file=sys.stderr)
            return 2
        bench = Bench(args)
        run_bench(bench)
    mem = None if args.no_memory else in_memory(args.packets, args.repeats, bits)
    print()
    print(report(args, bench, mem))
    return 0


if __name__ == "__main__":
    sys.exit(main())
