"""The set-up scripts and the README's Set-up section (run with fake system tools)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALL = ROOT / "scripts" / "install-test-packages"


def _fake_tools(tmp_path: Path, installed: set[str]) -> tuple[dict[str, str], Path]:
    """A PATH with logging fakes of dpkg-query, apt-get and systemctl."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    inst = " ".join(sorted(installed))
    (bin_dir / "dpkg-query").write_text(
        "#!/bin/sh\n"
        'pkg="$3"\n'
        f'for p in {inst}; do [ "$p" = "$pkg" ] && echo "install ok installed" && exit 0; done\n'
        "exit 1\n"
    )
    for tool in ("apt-get", "systemctl"):
        (bin_dir / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> "{log}"\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:/usr/bin:/bin")
    return env, log


def _packages() -> list[str]:
    body = re.search(r"PKGS=\((.*?)\)", INSTALL.read_text(), re.S)
    assert body is not None
    return body.group(1).split()


def test_install_test_packages_installs_only_what_is_missing(tmp_path: Path) -> None:
    pkgs = _packages()
    env, log = _fake_tools(tmp_path, installed=set(pkgs[1:]))
    subprocess.run(["bash", str(INSTALL)], env=env, check=True, timeout=30)
    calls = log.read_text().splitlines()
    assert calls == [
        "apt-get update -q",
        f"apt-get install -y -q --no-install-recommends --no-upgrade {pkgs[0]}",
    ]


def test_install_test_packages_touches_no_service(tmp_path: Path) -> None:
    env, log = _fake_tools(tmp_path, installed=set())
    subprocess.run(["bash", str(INSTALL)], env=env, check=True, timeout=30)
    calls = log.read_text().splitlines()
    assert not [c for c in calls if c.startswith("systemctl")]
    assert "systemctl" not in INSTALL.read_text()


def test_install_test_packages_nothing_missing_does_nothing(tmp_path: Path) -> None:
    env, log = _fake_tools(tmp_path, installed=set(_packages()))
    subprocess.run(["bash", str(INSTALL)], env=env, check=True, timeout=30)
    assert not log.exists()


def _setup_section() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"^## Set-up\n(.*?)^## ", text, re.S | re.M)
    assert m is not None
    return m.group(1)


def test_readme_names_every_package_the_test_script_installs() -> None:
    section = " ".join(_setup_section().split())
    for pkg in _packages():
        assert re.search(rf"(?<![\w-]){re.escape(pkg)}(?![\w-])", section), pkg


@pytest.mark.parametrize("script", ["install-test-packages", "test"])
def test_scripts_are_valid_bash(script: str) -> None:
    subprocess.run(["bash", "-n", str(ROOT / "scripts" / script)], check=True, timeout=30)
