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
    env = dict(
        os.environ, PATH=f"{bin_dir}:/usr/bin:/bin", PYI_POLICY_RC_D=str(tmp_path / "policy-rc.d")
    )
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


def test_install_test_packages_starts_no_service_while_installing(tmp_path: Path) -> None:
    """No policy-rc.d on the machine: one refusing every start is there during the
    install (freeradius ships a service) and gone afterwards."""
    env, log = _fake_tools(tmp_path, installed=set())
    policy = Path(env["PYI_POLICY_RC_D"])
    (tmp_path / "bin" / "apt-get").write_text(
        f'#!/bin/sh\n"{policy}"; echo "apt-get $* policy=$?" >> "{log}"\n'
    )
    subprocess.run(["bash", str(INSTALL)], env=env, check=True, timeout=30)
    calls = log.read_text().splitlines()
    assert len(calls) == 2 and all(c.endswith("policy=101") for c in calls)
    assert not policy.exists()
    # a policy-rc.d of the machine's own is left as it is
    policy.write_text("#!/bin/sh\nexit 0\n")
    policy.chmod(0o755)
    log.unlink()
    subprocess.run(["bash", str(INSTALL)], env=env, check=True, timeout=30)
    assert all(c.endswith("policy=0") for c in log.read_text().splitlines())
    assert policy.read_text() == "#!/bin/sh\nexit 0\n"


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


@pytest.mark.parametrize("script", ["install-test-packages", "test", "demo", "_venv.sh"])
def test_scripts_are_valid_bash(script: str) -> None:
    subprocess.run(["bash", "-n", str(ROOT / "scripts" / script)], check=True, timeout=30)


# --- scripts/test: the virtual environment bootstrap ---------------------------------


def _fake_checkout(
    tmp_path: Path, venv_works_after_apt: bool = True
) -> tuple[Path, Path, dict[str, str]]:
    """A copy of scripts/test in a scratch checkout with fake python3/apt-get/tools."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    for name in ("test", "demo", "_venv.sh"):
        (repo / "scripts" / name).write_text((ROOT / "scripts" / name).read_text())
    log = tmp_path / "calls.log"
    marker = tmp_path / "python3-venv-installed"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_venv_python = tmp_path / "venv-python"
    fake_venv_python.write_text(
        f'#!/bin/sh\necho "venv-python $*" >> "{log}"\n'
        'case "$*" in *"-m pytest"*) exit "${FAKE_PYTEST_RC:-0}";; esac\nexit 0\n'
    )
    ok = f'[ -f "{marker}" ]' if venv_works_after_apt else "false"
    (bin_dir / "python3").write_text(
        f'#!/bin/sh\necho "python3 $*" >> "{log}"\n'
        'if [ "$1 $2" = "-m venv" ]; then\n'
        '  mkdir -p "$3/bin"\n'
        f"  {ok} || exit 1\n"
        f'  cp "{fake_venv_python}" "$3/bin/python"\n'
        f'  printf "#!/bin/sh\\necho pyipsec \\"\\$*\\" >> {log}\\n" > "$3/bin/pyipsec"\n'
        '  chmod 755 "$3/bin/pyipsec"; exit 0\n'
        "fi\nexit 2\n"
    )
    (bin_dir / "apt-get").write_text(
        f'#!/bin/sh\necho "apt-get $*" >> "{log}"\n'
        f'[ "$1" = install ] && touch "{marker}"\nexit 0\n'
    )
    (repo / "scripts" / "install-test-packages").write_text(
        f'#!/bin/sh\necho "install-test-packages" >> "{log}"\n'
    )
    (repo / "scripts" / "compile-core").write_text(
        f'#!/bin/sh\necho compile-core $(ls "$1") >> "{log}"\n'
    )
    for name in ("src", "tests", "build_backend"):
        (repo / name).mkdir()
    for name in ("pyproject.toml", "setup.py"):
        (repo / name).touch()
    for f in [*bin_dir.iterdir(), fake_venv_python, *(repo / "scripts").iterdir()]:
        f.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:/usr/bin:/bin")
    return repo, log, env


def _run_test_script(
    repo: Path, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(repo / "scripts" / "test"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


root_only = pytest.mark.skipif(os.geteuid() != 0, reason="the root path of scripts/test")


@root_only
def test_scripts_test_installs_python3_venv_when_venv_fails(tmp_path: Path) -> None:
    repo, log, env = _fake_checkout(tmp_path)
    proc = _run_test_script(repo, env, "-k", "x y")
    assert proc.returncode == 0, proc.stderr
    calls = log.read_text().splitlines()
    assert calls[0] == "python3 -m venv .venv"
    assert calls[1:4] == [
        "apt-get update -q",
        "apt-get install -y -q --no-install-recommends --no-upgrade python3-venv",
        "python3 -m venv .venv",
    ]
    rest = calls[4:]
    assert rest[0] == "venv-python -m pip install -q --disable-pip-version-check -e .[test]"
    assert "install-test-packages" in rest
    assert "venv-python -m ruff check src tests bench" in rest
    assert "venv-python -m mypy" in rest
    assert rest[-3:] == [
        "venv-python -m pytest --cov=pyipsec --cov-report=term --cov-fail-under=90 -k x y",
        # then the unit tests again, against a compiled copy of the checkout
        "compile-core build_backend pyproject.toml scripts setup.py src tests",
        "venv-python -m pytest -q -p no:cacheprovider --ignore=tests/interop -k x y",
    ]
    assert not [c for c in calls if c.startswith("python3") and "venv" not in c]


@root_only
def test_scripts_test_reuses_a_working_venv_and_fails_with_pytest(tmp_path: Path) -> None:
    repo, log, env = _fake_checkout(tmp_path)
    (tmp_path / "python3-venv-installed").touch()
    assert _run_test_script(repo, env).returncode == 0
    log.unlink()
    proc = _run_test_script(repo, dict(env, FAKE_PYTEST_RC="5"))
    assert proc.returncode == 5  # pytest collected nothing: not green
    calls = log.read_text().splitlines()
    assert not [c for c in calls if c.startswith(("python3", "apt-get"))]
    assert calls[0] == "venv-python -c import sys; assert sys.prefix != sys.base_prefix"


@root_only
def test_scripts_test_gives_up_when_venv_cannot_be_made(tmp_path: Path) -> None:
    repo, log, env = _fake_checkout(tmp_path, venv_works_after_apt=False)
    proc = _run_test_script(repo, env)
    assert proc.returncode != 0
    assert "venv-python" not in log.read_text()


def test_readme_has_exactly_two_setup_commands_and_they_use_the_venv() -> None:
    blocks = re.findall(r"```sh\n(.*?)```", _setup_section(), re.S)
    assert len(blocks) == 2
    first, second = (b.strip() for b in blocks)
    # the demo script makes the venv, installs into it and runs the demo as root (sudo
    # only when not root: a fresh Debian machine's root has no sudo)
    assert first == "./scripts/demo"
    demo = (ROOT / "scripts" / "demo").read_text()
    for step in ("ensure_venv", "pip install", "as_root .venv/bin/pyipsec demo"):
        assert step in demo
    assert second == "./scripts/test"


def test_venv_is_ignored_by_git() -> None:
    ignored = (ROOT / ".gitignore").read_text().split()
    assert ".venv/" in ignored or ".venv" in ignored


@root_only
def test_scripts_demo_installs_into_the_venv_and_runs_the_demo(tmp_path: Path) -> None:
    """The README's first command: .venv/ (python3-venv installed when needed), pyipsec
    installed there, `pyipsec demo` run with the arguments (as root: no sudo needed)."""
    repo, log, env = _fake_checkout(tmp_path)
    proc = subprocess.run(
        ["bash", str(repo / "scripts" / "demo"), "--keep-going"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    calls = log.read_text().splitlines()
    assert "apt-get install -y -q --no-install-recommends --no-upgrade python3-venv" in calls
    assert "venv-python -m pip install -q --disable-pip-version-check -e ." in calls
    assert calls[-1] == "pyipsec demo --keep-going"
