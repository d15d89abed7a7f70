"""bench/bench_responder_ir.py at a tiny size, so that the benchmark cannot rot: the
recorded datagrams replay into a fresh responder (in a subprocess, as the bench runs it)
and bring every SA up again; a recording cut short brings up only what it holds."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "bench_responder_ir.py"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)  # fmt: skip


def test_cpu_per_handshake_of_this_tree_against_itself() -> None:
    run = _run("--measure", "cpu", "--tunnels", "24", "--skip", "8", "--repeats", "1",
               "--against", str(ROOT))  # fmt: skip
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    per = [float(line.split(": ")[1].split()[0].replace(",", "")) for line in lines[:2]]
    assert all(v > 0 for v in per), run.stdout
    assert "this tree / --against" in lines[2]


def test_a_replay_brings_up_what_was_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import bench_responder_ir

    path = tmp_path / "rec.pickle"
    path.write_bytes(pickle.dumps(bench_responder_ir.record(6)))
    replayed = subprocess.run([sys.executable, str(SCRIPT), "--replay", str(path),
                               "--handshakes", "4"], capture_output=True, text=True,
                              timeout=120, cwd=ROOT)  # fmt: skip
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.startswith("established 4 cpu ")


@pytest.mark.parametrize("args", [["--skip", "0"], ["--tunnels", "5", "--skip", "5"]])
def test_refuses_a_skip_outside_the_recording(args: list[str]) -> None:
    run = _run(*args)
    assert run.returncode == 2 and "--skip" in run.stderr
