"""The daemon's garbage-collector settings (gc_tuning.tune_gc), in a fresh interpreter:
they change the whole process."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

SRC = Path(__file__).resolve().parents[2] / "src"

SCRIPT = textwrap.dedent(
    """
    import gc, json
    from pyipsec.daemon.gc_tuning import GC_THRESHOLD, frozen_objects, tune_gc

    tune_gc()
    tune_gc()  # idempotent: one hook
    start = gc.get_freeze_count()
    counted_start = frozen_objects()
    kept = [[i] for i in range(50_000)]  # long-lived objects (tunnels)
    cycle = [[]]
    cycle[0].append(cycle)  # garbage in a cycle, made before the full collection
    del cycle
    gc.collect()  # a full collection: its survivors are frozen
    after = gc.get_freeze_count()
    young = [[i] for i in range(20_000)]  # more tunnels, then a young collection
    gc.collect(0)  # its survivors are frozen too: no older generation scans them again
    after_young = gc.get_freeze_count()
    counted = frozen_objects()
    del kept[:25_000]  # tunnels gone: freed by reference counting, still counted
    gone = gc.get_freeze_count()
    counted_gone = frozen_objects()
    late = [[]]
    late[0].append(late)  # a cycle made after it is still collected
    del late
    found = gc.collect(0) + gc.collect()
    print(json.dumps({
        "threshold": list(gc.get_threshold()), "want": list(GC_THRESHOLD),
        "hooks": gc.callbacks.count(gc.callbacks[-1]) if gc.callbacks else 0,
        "start": start, "after": after, "kept": len(kept), "found": found,
        "after_young": after_young, "young": len(young), "counted_start": counted_start,
        "counted": counted, "gone": gone, "counted_gone": counted_gone,
    }))
    """
)


def _run(env_extra: dict[str, str]) -> dict[str, int | list[int]]:
    import json

    env = dict(os.environ, PYTHONPATH=str(SRC), **env_extra)
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                         text=True, check=True, timeout=120).stdout
    res: dict[str, int | list[int]] = json.loads(out.strip().splitlines()[-1])
    return res


def test_collections_freeze_their_survivors() -> None:
    res = _run({})
    assert res["threshold"] == res["want"] and res["hooks"] == 1
    after, start, after_young = res["after"], res["start"], res["after_young"]
    assert isinstance(after, int) and isinstance(start, int) and isinstance(after_young, int)
    assert after >= start + 50_000  # the long-lived objects left the collector's scans
    assert after_young >= after + 20_000  # also after a collection of the youngest only
    assert isinstance(res["found"], int) and res["found"] >= 2  # new cycles: collected
    # counted as they are frozen, without walking them: exact while nothing is freed,
    # an upper bound after reference counting freed some
    assert res["counted_start"] == start
    counted, gone, counted_gone = res["counted"], res["gone"], res["counted_gone"]
    assert isinstance(counted, int) and isinstance(gone, int)
    assert after_young <= counted <= after_young + 100
    assert gone <= after_young - 25_000 and counted_gone == counted


def test_python_defaults_on_request() -> None:
    res = _run({"PYIPSEC_GC": "default"})
    assert res["threshold"] != res["want"] and res["start"] == 0 and res["after"] == 0


SWEEP = textwrap.dedent(
    """
    import gc, json
    from pyipsec.daemon import gc_tuning

    gc_tuning.tune_gc()
    gc_tuning.FROZEN.sweep_min = 1000
    kept = [[i] for i in range(5_000)]
    leaked = []
    for _ in range(3_000):  # cycles that become garbage after a full collection froze them
        c = [[]]
        c[0].append(c)
        leaked.append(c)
    gc.collect()
    del leaked  # frozen garbage: no ordinary collection finds it
    before = gc.get_freeze_count()
    first = gc_tuning.sweep_frozen_garbage()
    after = gc.get_freeze_count()
    second = gc_tuning.sweep_frozen_garbage()  # nothing grew: no second sweep
    print(json.dumps({"first": first, "second": second, "before": before, "after": after,
                      "kept": len(kept)}))
    """
)


def _run_script(script: str) -> dict[str, Any]:
    import json

    env = dict(os.environ, PYTHONPATH=str(SRC))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, check=True, timeout=120).stdout
    res: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return res


def test_sweep_frees_garbage_cycles_among_frozen_objects() -> None:
    res = _run_script(SWEEP)
    assert res["first"] is True and res["second"] is False
    assert res["before"] - res["after"] >= 6_000  # the 3,000 two-object cycles freed


COUNTING = """
import gc, json
from pyipsec.daemon import gc_tuning

walks = [0]
_count = gc.get_freeze_count


def counting():
    walks[0] += 1
    return _count()


gc.get_freeze_count = counting  # how often the daemon's check walks the frozen objects
gc_tuning.tune_gc()
gc_tuning.FROZEN.sweep_min = 1000
gc_tuning.sweep_frozen_garbage()  # a first sweep: the start-up objects
live = gc.get_freeze_count()
walks[0] = 0
"""

CHURN = COUNTING + textwrap.dedent(
    """
    swept, bounds = 0, []
    for i in range(60):  # tunnels that come and go: the frozen objects stay as many
        batch = [[j] for j in range(live // 10)]
        gc.collect(0)  # frozen
        del batch  # freed by reference counting
        swept += gc_tuning.sweep_frozen_garbage()
        bounds.append(gc_tuning.frozen_objects())
    print(json.dumps({"swept": swept, "bounds": bounds, "live": live, "walks": walks[0],
                      "exact": _count()}))
    """
)


def test_churn_corrects_the_count_without_sweeps() -> None:
    """Objects frozen and freed again leave ``gc.get_freeze_count()`` flat but count in
    frozen_objects(): now and then it is counted exactly and corrected -- rarely, as
    the objects did not stay -- and no sweep (a pause) follows, since nothing grew."""
    res = _run_script(CHURN)
    live, bounds, exact = res["live"], res["bounds"], res["exact"]
    assert res["swept"] == 0
    assert exact <= live + 100  # flat
    drops = [i for i, (a, b) in enumerate(itertools.pairwise(bounds)) if b < a]
    assert 1 <= len(drops) == res["walks"] <= 4, (res["walks"], bounds)
    assert max(bounds) <= live * 6, bounds


GROWTH = COUNTING + textwrap.dedent(
    """
    kept, sweeps = [], 0
    for i in range(120):  # tunnels added: 60 % of what is frozen lives on
        batch = [[j] for j in range(live // 10)]
        gc.collect(0)  # frozen
        kept.append(batch[: len(batch) * 6 // 10])
        del batch
        sweeps += gc_tuning.sweep_frozen_garbage()
    print(json.dumps({"sweeps": sweeps, "walks": walks[0], "live": live,
                      "exact": _count()}))
    """
)


def test_growth_counts_about_twice_per_sweep() -> None:
    """While objects are added (only part of what is frozen lives on), the exact count
    comes about twice per sweep, not on every tick as the frozen objects near the
    threshold."""
    res = _run_script(GROWTH)
    assert res["sweeps"] >= 3, res
    assert res["walks"] <= 3 * res["sweeps"] + 2, res
