"""bench/bench_scale.py's building blocks at a tiny size, so that the benchmark cannot rot."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_scale.py"
if str(BENCH.parent) not in sys.path:  # for its `from _common import ...`
    sys.path.insert(0, str(BENCH.parent))


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_scale", BENCH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_scale"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_building_blocks(bench: ModuleType) -> None:
    fleet = bench.Fleet()
    cpus = fleet.build(20)
    assert len(cpus) == 20 and all(c >= 0 for c in cpus)
    resp = fleet.resp
    assert len(resp.ike_sas()) == 20 and len(resp.child_sas()) == 20
    assert len({t.resp_spi for t in fleet.tunnels}) == 20
    assert len({sa.remote_id for sa in resp.by_id.values()}) == 20  # distinct identities

    rnd = random.Random(0)
    calls = bench.measure_calls(fleet, rnd, samples=5)
    assert calls["next_timer()"] > 0 and calls["receive_datagram(liveness req)"] > 0
    assert all(v >= 0 for v in calls.values())
    assert len(resp.ike_sas()) == 20  # the probes left the fleet as it was
    assert bench.measure_handshakes(fleet, 2) > 0
    assert len(resp.ike_sas()) == 22

    st = bench.steady_state(fleet, 600.0, rnd)  # 20 DPD rounds, 1 IKE and 4 Child rekeys
    assert st["n_dpd"] == 20 * 22 and (st["n_ike"], st["n_child"]) == (1, 4)
    assert st["cpu_per_s"] > 0
    assert len(resp.ike_sas()) == 22 and len(resp.child_sas()) == 22
    assert resp.next_timer() is None or resp.next_timer() > fleet.now


def test_memory_child_and_report(bench: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    mem = bench.memory_child(20)
    assert mem["responder_sas"] == 1 + 20 + 2 and mem["traced"] > 0

    assert bench.main(["--sizes", "10,20", "--samples", "3", "--handshakes", "2",
                       "--steady", "30", "--no-memory"]) == 0
    out = capsys.readouterr().out
    assert "next_timer()" in out and "steady: CPU-s per s" in out and "x 20/10" in out


def test_gc_and_ke_reuse_options(bench: ModuleType, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """--gc daemon applies the daemon's tune_gc (recorded here: it would change this
    process), --ke-reuse turns on the responder's RFC 7296 §2.12 reuse."""
    from pyipsec.daemon import gc_tuning

    tuned: list[bool] = []
    monkeypatch.setattr(gc_tuning, "tune_gc", lambda: tuned.append(True))
    assert bench.main(["--sizes", "5", "--samples", "2", "--handshakes", "2", "--steady", "0",
                       "--no-memory", "--gc", "daemon", "--ke-reuse", "30"]) == 0
    assert tuned == [True]
    assert "GC daemon, ke_reuse 30 s" in capsys.readouterr().out
    fleet = bench.Fleet(ke_reuse=30.0)
    fleet.build(3)
    assert fleet.resp.ke_reuse.enabled and fleet.resp.ke_reuse.next_deadline() is not None
