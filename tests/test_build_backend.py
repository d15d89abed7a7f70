"""The in-tree build backend: mypy is a build requirement only of a compiled build."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "build_backend"))

import pyipsec_build


@pytest.mark.filterwarnings("ignore::UserWarning")  # setuptools: [tool.setuptools] is beta
def test_a_pure_python_build_needs_only_setuptools(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYIPSEC_MYPYC", raising=False)
    assert pyipsec_build.MYPYC_REQUIREMENT not in pyipsec_build.get_requires_for_build_wheel()
    assert pyipsec_build.MYPYC_REQUIREMENT not in pyipsec_build.get_requires_for_build_editable()


def test_a_compiled_build_needs_mypy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYIPSEC_MYPYC", "1")
    for hook in (
        pyipsec_build.get_requires_for_build_wheel,
        pyipsec_build.get_requires_for_build_editable,
    ):
        assert hook() == ["wheel", pyipsec_build.MYPYC_REQUIREMENT]


def test_the_backend_offers_the_pep517_hooks() -> None:
    hooks = ("build_wheel", "build_sdist", "build_editable", "prepare_metadata_for_build_wheel")
    for hook in hooks:
        assert callable(getattr(pyipsec_build, hook))
