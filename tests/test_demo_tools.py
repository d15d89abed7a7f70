"""`pyipsec demo` on a fresh Debian machine: missing ip/nft/ping are installed with
apt-get (the demo runs as root), or named clearly when that is refused or impossible."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from pyipsec import demo


def _fake_system(
    monkeypatch: pytest.MonkeyPatch, present: set[str], *, apt_ok: bool = True
) -> list[list[str]]:
    calls: list[list[str]] = []

    def which(cmd: str) -> str | None:
        return f"/usr/bin/{cmd}" if cmd in present else None

    def run(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        calls.append(list(argv))
        if argv[:2] == ["apt-get", "install"] and apt_ok:
            present.update(t for t, pkg in demo.DEMO_TOOLS.items() if pkg in argv)
        return subprocess.CompletedProcess(argv, 0 if apt_ok else 100, "", "E: no luck")

    monkeypatch.setattr(demo.shutil, "which", which)
    monkeypatch.setattr(demo.subprocess, "run", run)
    return calls


def test_nothing_missing_installs_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_system(monkeypatch, {"ip", "nft", "ping", "apt-get"})
    assert demo.ensure_tools(True, print)
    assert calls == []


def test_missing_tools_are_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    lines: list[str] = []
    calls = _fake_system(monkeypatch, {"ip", "apt-get"})
    assert demo.ensure_tools(True, lines.append)
    assert calls[0][:2] == ["apt-get", "update"]
    assert calls[1][:2] == ["apt-get", "install"]
    assert {"nftables", "iputils-ping"} <= set(calls[1]) and "iproute2" not in calls[1]
    assert "installing what the demo needs" in lines[0]


def test_no_install_names_the_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    lines: list[str] = []
    calls = _fake_system(monkeypatch, {"ip", "apt-get"})
    assert not demo.ensure_tools(False, lines.append)
    assert calls == []
    assert "'nft'" in lines[0] and "nftables" in lines[0] and "iputils-ping" in lines[0]


def test_failed_install_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    lines: list[str] = []
    _fake_system(monkeypatch, {"ip", "apt-get"}, apt_ok=False)
    assert not demo.ensure_tools(True, lines.append)
    assert any("failed" in line and "E: no luck" in line for line in lines)


def test_without_apt_get(monkeypatch: pytest.MonkeyPatch) -> None:
    lines: list[str] = []
    calls = _fake_system(monkeypatch, {"ip"})
    assert not demo.ensure_tools(True, lines.append)
    assert calls == [] and "nftables" in lines[0]
