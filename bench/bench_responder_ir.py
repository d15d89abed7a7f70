"""The responder's cost of one handshake, alone and exactly, of this tree and of another.

``bench_load`` measures the daemon on the wire, but the machine's speed changes by up to
1.7x within minutes, and ``bench_scale`` times both roles of an in-memory handshake.
This bench isolates the responder: a :class:`bench_scale.Fleet` builds ``--tunnels``
tunnels (IKE_SA_INIT + IKE_AUTH with one Child SA, aes256gcm16-prfsha256-x25519, one
``%any`` connection) while recording every datagram its responder receives.  A fresh
process then feeds the recording to a fresh responder ``IkeManager`` with the same
deterministic random numbers: it answers exactly as the recorded one did, so the
initiator's IKE_AUTH requests (their keys depend on the responder's IKE_SA_INIT answer)
still verify, and only the responder runs.  The cost per handshake is the difference
between replaying all the handshakes and only the first ``--skip`` of them, divided by
the difference in number (start-up, imports and the first allocations cancel out):

* ``--measure instructions`` (the default where valgrind is installed): callgrind's
  count of executed instructions.  It does not depend on the machine's speed or load:
  an A/B of a percent needs no repeats (it is not time: a cache miss counts one);
* ``--measure cpu``: the CPU time of the replay's feeding loop, best of ``--repeats``
  (alternating the trees).

``--against PATH`` replays the same recording with ``PATH/src`` (another checkout, e.g.
``git worktree add /tmp/prev HEAD~3``) in the same invocation and prints the ratio.  A
change that alters what the responder sends makes the replay fail (the SAs do not come
up): the bench says so instead of printing a number.

Usage::

    python3 bench/bench_responder_ir.py                       # this tree
    python3 bench/bench_responder_ir.py --against /tmp/prev   # and the previous commit

Takes about a minute per tree under valgrind (the replays of both sizes run in parallel).
"""

from __future__ import annotations

import argparse
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

Datagram = tuple[bytes, tuple[str, int], tuple[str, int], float]


def record(tunnels: int) -> list[Datagram]:
    """Build ``tunnels`` tunnels with this tree; what the responder received, in order."""
    import bench_scale

    fleet = bench_scale.Fleet()
    got: list[Datagram] = []
    fleet.resp = _Recording(fleet.resp, got)  # type: ignore[assignment]
    fleet.build(tunnels)
    return got


class _Recording:
    """A responder that records what it receives (a compiled ``IkeManager``'s methods
    cannot be replaced on the instance)."""

    def __init__(self, responder: Any, got: list[Datagram]) -> None:
        self._responder = responder
        self._got = got

    def receive_datagram(self, data: bytes, local: Any, remote: Any, now: float) -> None:
        self._got.append((data, local, remote, now))
        self._responder.receive_datagram(data, local, remote, now)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._responder, name)


def replay(path: Path, handshakes: int) -> tuple[int, float]:
    """Feed the first ``handshakes`` handshakes of the recording to a fresh responder
    (this process's ``pyipsec``): the number of IKE SAs it established, and the CPU
    seconds the feeding took."""
    import bench_scale
    try:
        from pyipsec.daemon.gc_tuning import tune_gc
    except ImportError:  # a tree from before gc_tuning (--against)
        from pyipsec.daemon.runtime import tune_gc

    tune_gc()  # the daemon's collector settings
    datagrams: list[Datagram] = pickle.loads(path.read_bytes())[: 2 * handshakes]
    resp = bench_scale.Fleet().resp
    t0 = time.process_time()
    for data, local, remote, now in datagrams:
        resp.receive_datagram(data, local, remote, now)
        resp.datagrams_to_send(now)
        while resp.next_event() is not None:
            pass
    spent = time.process_time() - t0
    return sum(1 for sa in resp.by_id.values() if sa.established), spent


def _replay_command(tree: Path, path: Path, handshakes: int, valgrind: bool) -> list[str]:
    cmd = [sys.executable, str(Path(__file__)), "--replay", str(path),
           "--handshakes", str(handshakes), "--tree", str(tree)]  # fmt: skip
    if valgrind:
        cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *cmd]
    return cmd


def _established(out: str) -> int:
    m = re.search(r"^established (\d+) ", out, re.M)
    return int(m.group(1)) if m else -1


def _cpu(out: str) -> float:
    m = re.search(r"^established \d+ cpu ([\d.e-]+)$", out, re.M)
    if m is None:
        raise RuntimeError(f"no CPU time from the replay:\n{out[-2000:]}")
    return float(m.group(1))


def _instructions(stderr: str) -> int:
    m = re.search(r"Collected : (\d+)", stderr)
    if m is None:
        raise RuntimeError(f"no instruction count from callgrind:\n{stderr[-2000:]}")
    return int(m.group(1))


def cost(tree: Path, path: Path, skip: int, total: int, measure: str) -> float:
    """Instructions (or CPU seconds) per handshake of ``tree``'s responder."""
    sizes = (skip, total)
    valgrind = measure == "instructions"
    procs = [subprocess.Popen(_replay_command(tree, path, n, valgrind), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for n in sizes] if valgrind else []  # fmt: skip
    values = []
    for i, n in enumerate(sizes):
        if valgrind:
            out, err = procs[i].communicate()
            code = procs[i].returncode
        else:  # one at a time: they would compete for the CPU
            run = subprocess.run(_replay_command(tree, path, n, False), text=True,
                                 capture_output=True)  # fmt: skip
            out, err, code = run.stdout, run.stderr, run.returncode
        if code != 0 or _established(out) != n:
            raise RuntimeError(f"{tree}: the replay of {n} handshakes failed "
                               f"(does its responder answer differently?)\n{err[-2000:]}")
        values.append(_instructions(err) if valgrind else _cpu(out))
    return (values[1] - values[0]) / (total - skip)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tunnels", type=int, default=1200, help="handshakes recorded (1200)")
    ap.add_argument("--skip", type=int, default=200,
                    help="handshakes subtracted as the baseline (200)")
    ap.add_argument("--against", type=Path, help="another checkout to compare with")
    ap.add_argument("--measure", choices=("instructions", "cpu"),
                    default="instructions" if shutil.which("valgrind") else "cpu")
    ap.add_argument("--repeats", type=int, default=3, help="--measure cpu: best of (3)")
    ap.add_argument("--replay", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--handshakes", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--tree", type=Path, default=ROOT, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.replay is not None:
        established, spent = replay(a.replay, a.handshakes)
        print(f"established {established} cpu {spent:.6f}")
        return 0
    if not 0 < a.skip < a.tunnels:
        ap.error("--skip must be between 0 and --tunnels")
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pyipsec-resp-ir-") as tmp:
        path = Path(tmp) / "responder-input.pickle"
        path.write_bytes(pickle.dumps(record(a.tunnels)))
        unit = "instructions" if a.measure == "instructions" else "µs CPU"
        scale = 1.0 if a.measure == "instructions" else 1e6
        trees = [("this tree", ROOT)] + ([("--against", a.against.resolve())] if a.against else [])
        rounds = a.repeats if a.measure == "cpu" else 1  # CPU: best of, trees alternating
        results = [cost(tree, path, a.skip, a.tunnels, a.measure) for _, tree in trees]
        for _ in range(rounds - 1):
            results = [min(best, cost(tree, path, a.skip, a.tunnels, a.measure))
                       for best, (_, tree) in zip(results, trees, strict=True)]  # fmt: skip
        results = [value * scale for value in results]
        for (label, tree), value in zip(trees, results, strict=True):
            print(f"{label:10s} {tree}: {value:,.0f} {unit} per responder handshake")
    if len(results) == 2:
        print(f"this tree / --against: {results[0] / results[1]:.4f}")
    print(f"({a.tunnels - a.skip} handshakes after {a.skip}; {time.monotonic() - t0:.0f} s)")
    return 0


def _paths() -> None:
    """This tree's bench/ and repository root on sys.path; with ``--tree`` (a replay
    for another checkout) that checkout's src/ first, so its ``pyipsec`` is the one
    imported (``_common`` adds nothing that is already there)."""
    tree = ROOT
    if "--tree" in sys.argv:
        tree = Path(sys.argv[sys.argv.index("--tree") + 1]).resolve()
    sys.path[:0] = [str(tree / "src"), str(HERE), str(ROOT)]
    sys.path.append(str(ROOT / "src"))


if __name__ == "__main__":
    _paths()
    sys.exit(main())
