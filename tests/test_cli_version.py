"""``pyipsec --version``."""

from __future__ import annotations

from importlib import metadata

import pytest

from pyipsec import build_info, cli


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ei:
        cli.main(["--version"])
    assert ei.value.code == 0
    core = "compiled by mypyc" if build_info.core_compiled() else "interpreted"
    assert capsys.readouterr().out.strip() == f"pyipsec {cli.version()} (core {core})"


def test_version_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", missing)
    assert cli.version() == "unknown (not installed)"
