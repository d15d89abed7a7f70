"""The load generator of ``bench/bench_load.py`` (``bench/loadgen.py``) keeps working.

The first tests check the connections it builds and how the bench reads and reports
its output (rounds, ``--mark``; no root needed); the last sets up five IKE SAs against a
pyipsec daemon responder in a namespace pair (``nonat`` topology) and skips cleanly
without root or network namespaces.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import loadgen  # noqa: E402


def test_connections_are_distinct_peers() -> None:
    conns = loadgen.build_connections(
        3, local="198.51.100.2", remote="192.0.2.2", psk=b"k" * 20,
        proposal="aes256gcm16-prfsha256-x25519", esp="aes256gcm16")
    assert [c.name for c in conns] == ["conn-0", "conn-1", "conn-2"]
    assert len({c.local_id for c in conns}) == 3
    assert conns[1].local_id == "load-1@example.net"
    assert not any(c.initial_contact for c in conns)
    ts = {c.children[0].local_ts for c in conns}
    assert len(ts) == 3  # one UDP port per tunnel
    with pytest.raises(ValueError):
        loadgen.build_connections(2, local="198.51.100.2", remote="192.0.2.2", psk=b"k",
                                  proposal="aes256gcm16-prfsha256-x25519",
                                  esp="aes256gcm16", base_port=65535)


def test_the_bench_reads_the_mark_line_then_the_result() -> None:
    import bench_load

    reads: list[int] = []

    def responder_cpu() -> float:
        reads.append(1)
        return 2.5

    out = io.StringIO("\n".join([
        json.dumps({"mark": 3, "established": 3, "elapsed": 0.5, "cpu_s": 0.1}), "",
        json.dumps({"tunnels": 5, "established": 5}),
        json.dumps({"tunnels": 99}),  # after the result: not read
    ]) + "\n")
    res, mark = bench_load.read_generator(out, responder_cpu)
    assert res == {"tunnels": 5, "established": 5}
    assert mark is not None and mark["established"] == 3 and mark["responder_cpu_s"] == 2.5
    assert len(reads) == 1
    assert bench_load.read_generator(io.StringIO(json.dumps({"mark": 1}) + "\n"),
                                     responder_cpu)[0] is None


def _block(established: int, cpu: float, mark_cpu: float | None = None) -> dict[str, Any]:
    """A block's result as ``Bench.run_block`` returns it (only what the report reads)."""
    r: dict[str, Any] = {
        "tunnels": established, "established": established, "rate": 100.0, "wall": 10.0,
        "latency_ms": {"median": 1.0, "p99": 2.0, "max": 3.0}, "inflight_mean": 50.0,
        "cpu_per_tunnel_ms": cpu / established * 1e3, "responder_cpu_s": cpu,
        "rss_per_tunnel_kib": 1.0, "rss_after_kib": 1024, "responder_sas": established,
        "cpu_s": 1.0, "failed": 0, "retransmits": 0, "cookies": 0}
    if mark_cpu is not None:
        r["mark"] = {"mark": 100, "established": 100, "elapsed": 4.0, "cpu_s": 0.5,
                     "responder_cpu_s": mark_cpu}
    return r


def test_split_at_the_mark() -> None:
    import bench_load

    r = _block(300, 3.0, mark_cpu=0.5)  # 100 tunnels in 0.5 s, then 200 in 2.5 s
    assert bench_load.handshakes_per_cpu(r) == pytest.approx(100.0)
    assert bench_load.handshakes_per_cpu_first(r) == pytest.approx(200.0)
    assert bench_load.handshakes_per_cpu_after(r) == pytest.approx(80.0)
    assert bench_load.wall_rate_after(r) == pytest.approx(200 / 6.0)
    assert math.isnan(bench_load.handshakes_per_cpu_after(_block(300, 3.0)))  # no mark


def test_report_gives_medians_and_the_median_of_per_round_ratios() -> None:
    import bench_load

    args = argparse.Namespace(tunnels=300, inflight=50, rate=0.0, proposal="p", esp="e",
                              only=["pyipsec", "strongswan"], ke_reuse=0.0, rounds=3,
                              mark=100)
    bench = bench_load.Bench(args)
    shutil.rmtree(bench.tmp)
    # handshakes per CPU-second: pyipsec 300, 150, 100; strongSwan 100, 100, 25
    bench.runs = {"pyipsec": [_block(300, 1.0, 0.2), _block(300, 2.0, 0.4),
                              _block(300, 3.0, 0.6)],
                  "strongswan": [_block(300, 3.0, 0.5), _block(300, 3.0, 0.5),
                                 _block(300, 12.0, 2.0)]}
    text = bench.report()
    table = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
             for line in text.splitlines() if line.startswith("| ")}
    # the main table: medians (150 and 100), ratio of the medians
    assert table["responder handshakes per CPU-second"] == ["150", "100", "1.50"]
    assert table["responder handshakes per CPU-second, first 100 tunnels"] == ["250", "200", "1.25"]
    # rounds: ratios 3.00, 1.50, 4.00 -> median 3.00 (not 1.50, the ratio of medians)
    rounds = [table[str(i)] for i in (1, 2, 3)]
    assert [r[2] for r in rounds] == ["3.00", "1.50", "4.00"]
    assert table["med."][:3] == ["150", "100", "3.00"]
    assert len(table["med."]) == 9  # all, first 100, after 100: py, ss, py/ss each


@pytest.mark.netns
def test_five_ike_sas_against_a_pyipsec_responder(tmp_path: Path) -> None:
    from tests.interop import topology

    reason = topology.missing_requirements()
    if reason:
        pytest.skip(reason)
    import bench_load
    from tests.interop.pyipsec_daemon import PyipsecDaemon
    from tests.interop.strongswan import TEST_PSK

    topo = topology.Topology(mode="nonat")
    daemon = None
    try:
        topo.up()
        state = tmp_path / "right"
        daemon = PyipsecDaemon(topo.right, bench_load.pyipsec_responder_toml(
            state, proposal="aes256gcm16-prfsha256-x25519", esp="aes256gcm16",
            cookie_threshold=100), state_dir=state).start()
        proc = topo.exec(topo.left, [
            sys.executable, str(BENCH / "loadgen.py"), "--local", topology.LEFT_OUTER,
            "--remote", topology.RIGHT_OUTER, "--tunnels", "5", "--inflight", "3",
            "--inner", topology.LEFT_INNER, "--remote-ts", topology.RIGHT_SUBNET,
            "--psk", TEST_PSK, "--timeout", "30", "--mark", "2"], check=False, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        mark, res = (json.loads(line) for line in proc.stdout.splitlines())
        assert mark["mark"] == mark["established"] == 2, mark
        assert res["established"] == 5 and res["failed"] == 0, res
        assert 0 < res["inflight_mean"] <= 3, res
        sas = daemon.request("status")["ike_sas"]
        assert len(sas) == 5  # five distinct peers: none replaced another
    finally:
        if daemon is not None:
            daemon.cleanup()
        topo.down()
