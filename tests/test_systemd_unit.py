"""contrib/pyipsec.service: the settings README.md documents, and systemd accepts it."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[1] / "contrib" / "pyipsec.service"


def unit() -> configparser.RawConfigParser:
    p = configparser.RawConfigParser(strict=False, interpolation=None)
    p.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    p.read_string(UNIT.read_text())
    return p


def test_unit_settings() -> None:
    u = unit()
    s = u["Service"]
    assert s["Type"] == "notify"
    assert s["ExecStart"].split() == [
        "/usr/local/bin/pyipsec",
        "daemon",
        "--config",
        "/etc/pyipsec/pyipsec.toml",
        "--foreground",
    ]
    assert s["ExecReload"].endswith(" reload")
    assert s["Restart"] == "on-failure"
    assert s["WatchdogSec"] == "30"
    caps = {"CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"}
    assert set(s["CapabilityBoundingSet"].split()) == caps
    assert set(s["AmbientCapabilities"].split()) == caps
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "RuntimeDirectory": "pyipsec",
        "DeviceAllow": "/dev/net/tun rw",
        "ProtectKernelModules": "yes",
        "LockPersonality": "yes",
    }.items():
        assert s[key] == value, key
    assert set(s["RestrictAddressFamilies"].split()) == {
        "AF_UNIX",
        "AF_INET",
        "AF_INET6",
        "AF_NETLINK",
    }
    assert u["Install"]["WantedBy"] == "multi-user.target"


def test_control_socket_is_in_the_runtime_directory() -> None:
    from pyipsec.config.model import DaemonConfig

    runtime_dir = "/run/" + unit()["Service"]["RuntimeDirectory"]
    assert str(Path(DaemonConfig().control_socket).parent) == runtime_dir


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify wants the executables to exist: stand /bin/true in for pyipsec
    text = UNIT.read_text().replace("/usr/local/bin/pyipsec", shutil.which("true") or "/bin/true")
    path = tmp_path / "pyipsec.service"
    path.write_text(text)
    r = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "pyipsec.service" not in out, out  # no warnings about our unit
