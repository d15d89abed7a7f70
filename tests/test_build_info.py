"""``pyipsec.build_info``: is the core compiled, and is a compiled core stale?"""

from __future__ import annotations

import importlib.machinery
import os
import warnings
from pathlib import Path

import pytest

from pyipsec import build_info

SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def _package(tmp_path: Path, *, compiled: bool) -> Path:
    """A checkout's ``src/pyipsec`` with one module in each compiled package."""
    (tmp_path / "pyproject.toml").touch()
    pkg = tmp_path / "src" / "pyipsec"
    for sub in build_info.COMPILED_PACKAGES:
        (pkg / sub).mkdir(parents=True)
    (pkg / "ikev2" / "manager.py").write_text("")
    (pkg / "crypto" / "ke.py").write_text("")
    if compiled:
        for py in ((pkg / "ikev2" / "manager.py"), (pkg / "crypto" / "ke.py")):
            ext = py.with_name(py.stem + SUFFIX)
            ext.write_bytes(b"")
            os.utime(py, (1_000_000, 1_000_000))  # the sources are older
            os.utime(ext, (2_000_000, 2_000_000))
    return pkg


def test_interpreted_core(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build_info, "_PACKAGE", _package(tmp_path, compiled=False))
    assert not build_info.core_compiled()
    assert build_info.core_description() == "interpreted"
    assert build_info.stale_extensions() == []


def test_compiled_core_and_a_stale_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg = _package(tmp_path, compiled=True)
    monkeypatch.setattr(build_info, "_PACKAGE", pkg)
    assert build_info.core_compiled()
    assert build_info.core_description() == "compiled by mypyc"
    assert build_info.stale_extensions() == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_info.warn_if_stale()  # nothing to say
    os.utime(pkg / "crypto" / "ke.py", (3_000_000, 3_000_000))  # edited after compiling
    assert build_info.stale_extensions() == ["pyipsec/crypto/ke.py"]
    with pytest.warns(RuntimeWarning, match=r"older than 1 of its sources .*crypto/ke\.py"):
        build_info.warn_if_stale()
    # installed (no checkout around it): the archive's file times say nothing
    (tmp_path / "pyproject.toml").unlink()
    assert build_info.stale_extensions() == []
