"""Run ``python3 -m pyipsec daemon`` inside a network namespace for interop tests.

:func:`pyipsec_toml` writes the daemon's TOML configuration (the swanctl-shaped format of
:mod:`pyipsec.config.loader`) for one side of the topology; :class:`PyipsecDaemon` starts
the daemon in a namespace with its control socket in a private state directory, waits for
the socket, talks to it (newline-delimited JSON, see :mod:`pyipsec.daemon.control`; the
client here is standard library only so that a broken daemon cannot break the harness) or
through the CLI (``python3 -m pyipsec --socket S status --json``), and stops it by PID:
SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .strongswan import LEFT_ID, RIGHT_ID, TEST_PSK
from .topology import (
    LEFT_INNER,
    LEFT_INNER6,
    LEFT_SUBNET,
    LEFT_SUBNET6,
    RIGHT_INNER,
    RIGHT_INNER6,
    RIGHT_SUBNET,
    RIGHT_SUBNET6,
    kill_pid,
)

_live: list[PyipsecDaemon] = []


class PyipsecError(RuntimeError):
    """The daemon did not start, or a control request failed."""


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a TOML basic string is JSON-compatible for our values


def toml_text(tables: dict[str, dict[str, Any]]) -> str:
    """Render ``{"table.name": {key: value}}`` as TOML (tables in the given order)."""
    out = []
    for name, body in tables.items():
        out.append(f"[{name}]")
        out.extend(f"{k} = {_toml_value(v)}" for k, v in body.items() if v is not None)
        out.append("")
    return "\n".join(out)


def pyipsec_toml(*, side: str, state_dir: Path, remote_addrs: Sequence[str] = ("%any",),
                 local_addrs: Sequence[str] = (), proposals: str, esp_proposals: str,
                 conn: str = "conn", child: str = "net", ike_rekey_time: int = 0,
                 child_rekey_time: int = 0, dpd_delay: int = 0, start_action: str = "none",
                 encap: bool = False, ipv6_inner: bool = True, log_level: str = "debug",
                 tun_name: str = "pyi0", psk: str = TEST_PSK,
                 retransmit: tuple[int, float, float] = (3, 1.0, 1.5),
                 extra_conn: dict[str, Any] | None = None,
                 extra_daemon: dict[str, Any] | None = None,
                 tun_addresses: Sequence[str] | None = None,
                 local_id_override: str | None = None,
                 remote_id_override: str | None = None,
                 local_ts_override: Sequence[str] | None = None,
                 remote_ts_override: Sequence[str] | None = None,
                 extra_child: dict[str, Any] | None = None) -> str:
    """The daemon TOML for the ``left`` or ``right`` side of the topology.

    ``tun_addresses`` replaces the TUN addresses derived from ``side``/``ipv6_inner``;
    ``local_id_override`` our identity (e.g. the second LAN host's), ``remote_id_override``
    the peer's; ``local_ts_override``/``remote_ts_override`` replace the selectors and
    ``extra_child`` adds keys to the child table.  More children or
    connections can be appended with :func:`child_toml` / :func:`connection_toml`.

    Identities, inner subnets and the TUN addresses (the inner address of that side, used
    as source of the routes through the TUN device) follow from ``side``.
    """
    if side == "left":
        local_id, remote_id = LEFT_ID, RIGHT_ID
        local_ts, remote_ts = [LEFT_SUBNET, LEFT_SUBNET6], [RIGHT_SUBNET, RIGHT_SUBNET6]
        tun_addrs = [f"{LEFT_INNER}/32", f"{LEFT_INNER6}/128"]
    elif side == "right":
        local_id, remote_id = RIGHT_ID, LEFT_ID
        local_ts, remote_ts = [RIGHT_SUBNET, RIGHT_SUBNET6], [LEFT_SUBNET, LEFT_SUBNET6]
        tun_addrs = [f"{RIGHT_INNER}/32", f"{RIGHT_INNER6}/128"]
    else:
        raise ValueError("side must be 'left' or 'right'")
    if not ipv6_inner:
        local_ts, remote_ts, tun_addrs = local_ts[:1], remote_ts[:1], tun_addrs[:1]
    if tun_addresses is not None:
        tun_addrs = list(tun_addresses)
    if local_id_override is not None:
        local_id = local_id_override
    if remote_id_override is not None:
        remote_id = remote_id_override
    if local_ts_override is not None:
        local_ts = list(local_ts_override)
    if remote_ts_override is not None:
        remote_ts = list(remote_ts_override)
    tries, timeout, base = retransmit
    tables: dict[str, dict[str, Any]] = {
        "daemon": {
            "control_socket": str(state_dir / "control.sock"),
            "retransmit_tries": tries, "retransmit_timeout": timeout,
            "retransmit_base": base,
            "keylog_file": str(state_dir / "keys.log"),
            **(extra_daemon or {}),
        },
        "daemon.tun": {"name": tun_name, "addresses": tun_addrs},
        "daemon.log": {"default": log_level},
        f"connections.{conn}": {
            "local_addrs": list(local_addrs) or None,
            "remote_addrs": list(remote_addrs),
            "proposals": [proposals],
            "encap": encap,
            "rekey_time": ike_rekey_time,
            "dpd_delay": dpd_delay,
            **(extra_conn or {}),
        },
        f"connections.{conn}.local": {"auth": "psk", "id": local_id},
        f"connections.{conn}.remote": {"auth": "psk", "id": remote_id},
        f"connections.{conn}.children.{child}": {
            "mode": "tunnel",
            "local_ts": local_ts,
            "remote_ts": remote_ts,
            "esp_proposals": [esp_proposals],
            "rekey_time": child_rekey_time,
            "start_action": start_action,
            **(extra_child or {}),
        },
        "secrets.psk": {"ids": [LEFT_ID, RIGHT_ID], "secret": psk},
    }
    return toml_text(tables)


def child_toml(conn: str, child: str, *, local_ts: Sequence[str], remote_ts: Sequence[str],
               esp_proposals: str, rekey_time: int = 0, start_action: str = "none") -> str:
    """One more ``[connections.CONN.children.CHILD]`` table, to append to a daemon TOML."""
    return toml_text({f"connections.{conn}.children.{child}": {
        "mode": "tunnel", "local_ts": list(local_ts), "remote_ts": list(remote_ts),
        "esp_proposals": [esp_proposals], "rekey_time": rekey_time,
        "start_action": start_action}})


def connection_toml(conn: str, *, local_id: str, remote_id: str, proposals: str,
                    children: dict[str, tuple[Sequence[str], Sequence[str]]],
                    esp_proposals: str, remote_addrs: Sequence[str] = ("%any",),
                    local_addrs: Sequence[str] = (), encap: bool = False,
                    extra_conn: dict[str, Any] | None = None) -> str:
    """One more connection (``children``: name -> (local_ts, remote_ts)) to append to a
    daemon TOML made by :func:`pyipsec_toml` (which carries the daemon and secrets)."""
    text = toml_text({
        f"connections.{conn}": {"local_addrs": list(local_addrs) or None,
                                "remote_addrs": list(remote_addrs), "proposals": [proposals],
                                "encap": encap, "rekey_time": 0, "dpd_delay": 0,
                                **(extra_conn or {})},
        f"connections.{conn}.local": {"auth": "psk", "id": local_id},
        f"connections.{conn}.remote": {"auth": "psk", "id": remote_id},
    })
    for name, (lts, rts) in children.items():
        text += child_toml(conn, name, local_ts=lts, remote_ts=rts, esp_proposals=esp_proposals)
    return text


@dataclass
class PyipsecDaemon:
    """One pyipsec daemon in a namespace; see the module docstring."""

    netns: str
    config_text: str
    state_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pyi-d-")))
    name: str = "pyipsec"
    python: str = sys.executable
    proc: subprocess.Popen[bytes] | None = None

    @property
    def config_path(self) -> Path:
        """Where the TOML configuration is written."""
        return self.state_dir / "pyipsec.toml"

    @property
    def socket_path(self) -> Path:
        """The control socket (the ``control_socket`` of the TOML must point here)."""
        return self.state_dir / "control.sock"

    @property
    def log_path(self) -> Path:
        """The daemon's stdout/stderr."""
        return self.state_dir / "daemon.out"

    def start(self, timeout: float = 10.0) -> PyipsecDaemon:
        """Start the daemon and wait until its control socket answers ``status``."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config_text)
        self.config_path.chmod(0o600)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        src = Path(__file__).resolve().parents[2] / "src"
        if src.is_dir():  # the checkout's code even without `pip install -e`
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src),
                                                              env.get("PYTHONPATH")]))
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.netns, self.python, "-m", "pyipsec",
                 "daemon", "--foreground", "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                start_new_session=True)
        _live.append(self)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise PyipsecError(f"pyipsec daemon exited ({self.proc.returncode}):\n"
                                   f"{self.tail()}")
            if self.socket_path.exists():
                try:
                    self.request("status")
                    return self
                except (OSError, PyipsecError):
                    pass
            if time.monotonic() > deadline:
                self.stop()
                raise PyipsecError(f"pyipsec daemon did not come up:\n{self.tail()}")
            time.sleep(0.1)

    def tail(self, lines: int = 60) -> str:
        """The last lines of the daemon's output."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def request(self, cmd: str, timeout: float = 20.0, **args: Any) -> Any:
        """One control request; returns ``result`` or raises :class:`PyipsecError`."""
        req = {"cmd": cmd, **{k: v for k, v in args.items() if v is not None}}
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(self.socket_path))
            s.sendall(json.dumps(req).encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    raise PyipsecError(f"control socket closed during {cmd!r}")
                buf += chunk
        resp = json.loads(buf)
        if not resp.get("ok"):
            raise PyipsecError(f"{cmd} failed: {resp.get('error')}\n{self.tail(30)}")
        return resp.get("result")

    def cli(self, *args: str, timeout: float = 20.0) -> str:
        """``python3 -m pyipsec --socket S ARGS`` (the user-facing CLI), stdout."""
        proc = subprocess.run([self.python, "-m", "pyipsec", "--socket", str(self.socket_path),
                               *args], capture_output=True, text=True, timeout=timeout,
                              check=False)
        if proc.returncode != 0:
            raise PyipsecError(f"pyipsec {' '.join(args)} failed ({proc.returncode}):\n"
                               f"{proc.stdout}{proc.stderr}")
        return proc.stdout

    def status(self) -> Any:
        """``pyipsec status --json`` parsed."""
        return json.loads(self.cli("status", "--json"))

    def up(self, conn: str, child: str | None = None, timeout: float = 20.0) -> Any:
        """Initiate ``conn`` (and ``child``) and wait for the result."""
        return self.request("up", timeout=timeout, name=conn, child=child)

    def rekey_child(self, conn: str, child: str) -> bool:
        """Ask the daemon to rekey a Child SA now; False if it has no such command (yet)."""
        try:
            self.request("rekey", name=conn, child=child)
        except PyipsecError as exc:
            if "unknown command" in str(exc):
                return False
            raise
        return True

    def rekey_ike(self, conn: str) -> bool:
        """Ask the daemon to rekey the IKE SA now; False if it has no such command (yet)."""
        try:
            self.request("rekey", name=conn, ike=True)
        except PyipsecError as exc:
            if "unknown command" in str(exc):
                return False
            raise
        return True

    @property
    def pid(self) -> int | None:
        """The daemon's PID while it runs (``ip netns exec`` execs, so it is Popen's)."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        return self.proc.pid

    def rss_kb(self) -> int:
        """Resident set size of the daemon (``VmRSS`` of /proc/PID/status), in KiB."""
        pid = self.pid
        if pid is None:
            raise PyipsecError("the daemon is not running")
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise PyipsecError(f"no VmRSS in /proc/{pid}/status")

    def ike_sas(self) -> list[dict[str, Any]]:
        """The IKE SAs of ``status --json``."""
        sas: list[dict[str, Any]] = self.status().get("ike_sas", [])
        return sas

    def child_sas(self) -> list[dict[str, Any]]:
        """The installed Child SAs of ``status --json``."""
        sas: list[dict[str, Any]] = self.status().get("child_sas", [])
        return sas

    def wait_for(self, predicate: Any, timeout: float = 15.0, interval: float = 0.2) -> Any:
        """Poll ``predicate(self)`` until it returns something truthy (or time out)."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate(self)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout}s:\n{self.tail(40)}")
            time.sleep(interval)

    def down(self, conn: str) -> Any:
        """Delete the IKE SA(s) of ``conn``."""
        return self.request("down", name=conn)

    def stop(self) -> None:
        """SIGTERM (the daemon deletes its SAs), then SIGKILL; by PID only."""
        if self.proc is not None and self.proc.poll() is None:
            kill_pid(self.proc.pid, timeout=5.0)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=2)
        if self in _live:
            _live.remove(self)

    def kill(self) -> None:
        """SIGKILL: vanish without DELETE (for DPD tests)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def cleanup(self) -> None:
        """Stop the daemon and remove its state directory."""
        self.stop()
        shutil.rmtree(self.state_dir, ignore_errors=True)


@atexit.register
def _cleanup_all() -> None:  # pragma: no cover - safety net
    for daemon in list(_live):
        with contextlib.suppress(Exception):
            daemon.stop()
