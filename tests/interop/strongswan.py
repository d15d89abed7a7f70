"""strongSwan (charon + swanctl) instances for interop tests, one per network namespace.

Each :class:`Charon` gets its own state directory (a temporary directory unless one is
given) holding a generated ``strongswan.conf`` (passed through ``STRONGSWAN_CONF``),
``swanctl.conf``, the file log ``charon.log``, stdout/stderr ``charon.out``, the vici
socket ``charon.vici`` and ``run/``.  ``/usr/lib/ipsec/charon`` hard-codes
``/var/run/charon.pid``, so charon runs in a private mount namespace with ``run/``
bind-mounted over ``/run``::

    ip netns exec NS unshare --mount --propagation private \\
        sh -c 'mount --bind STATE/run /run && exec charon'

Every step execs, so the PID of the :class:`subprocess.Popen` is charon's own and the
instance is stopped by that PID only.  The generated config loads kernel-libipsec (ESP in
user space: this kernel has no ESP transform) and a short retransmission schedule
(``3 1.0 1.5``: a silent peer is given up after about 8 s).

swanctl is driven with ``swanctl --uri unix://STATE/charon.vici``;
:func:`parse_vici_raw` turns ``--raw`` output into dicts.
:func:`swanctl_conf` renders a ``swanctl.conf`` from nested dicts and
:class:`ConnSpec` builds the usual PSK tunnel connection from a few parameters.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .topology import (
    LEFT_SUBNET,
    LEFT_SUBNET6,
    RIGHT_SUBNET,
    RIGHT_SUBNET6,
    kill_pid,
)

CHARON_BIN = os.environ.get("PYI_CHARON_BIN", "/usr/lib/ipsec/charon")
PLUGIN_DIR = Path("/usr/lib/ipsec/plugins")
TEST_PSK = "interop-testbed-psk-0123456789"
LEFT_ID = "left.example.net"
RIGHT_ID = "right.example.net"

BASE_PLUGINS = [
    "random", "nonce", "openssl", "pem", "pkcs1", "pkcs8", "x509", "pubkey", "revocation",
    "constraints", "curve25519", "aes", "gcm", "sha1", "sha2", "hmac", "kdf",
    "kernel-libipsec", "kernel-netlink", "socket-default", "vici", "updown",
]
# EAP methods and the attr plugin (configuration payload attributes such as DNS) for the
# remote-access tests; md5 is EAP-MD5's hasher
OPTIONAL_PLUGINS = (
    "chapoly", "md5", "eap-identity", "eap-md5", "eap-mschapv2", "eap-tls", "eap-radius", "attr",
)

_live: list[Charon] = []


class StrongswanError(RuntimeError):
    """charon did not start, or a swanctl command failed."""


def missing_requirements() -> str | None:
    """Why strongSwan tests cannot run here, or ``None`` if they can."""
    if not os.access(CHARON_BIN, os.X_OK):
        return f"strongSwan charon not found at {CHARON_BIN}"
    if shutil.which("swanctl") is None:
        return "swanctl not installed"
    if not (PLUGIN_DIR / "libstrongswan-kernel-libipsec.so").exists():
        return "strongSwan kernel-libipsec plugin not installed"
    return None


def available_plugins() -> list[str]:
    """The plugins the generated strongswan.conf loads (optional ones only if installed)."""
    extra = [p for p in OPTIONAL_PLUGINS if (PLUGIN_DIR / f"libstrongswan-{p}.so").exists()]
    return [*BASE_PLUGINS, *extra]


# -- swanctl.conf rendering ---------------------------------------------------------

ConfValue = str | int | float | bool | Sequence[str] | Mapping[str, Any]


def _render_value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def swanctl_conf(tree: Mapping[str, Any], indent: int = 0) -> str:
    """Render nested mappings as swanctl/strongswan.conf syntax.

    Mappings become sections, lists comma-separated values, booleans yes/no. A key
    may carry an inheritance suffix (``"gcm-encap : connections.gcm"``).
    """
    pad = "    " * indent
    out: list[str] = []
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.append(f"{pad}{key} {{")
            out.append(swanctl_conf(value, indent + 1).rstrip("\n"))
            out.append(f"{pad}}}")
        elif value is not None:
            out.append(f"{pad}{key} = {_render_value(value)}")
    return "\n".join(line for line in out if line) + "\n"


@dataclass
class ConnSpec:
    """A PSK tunnel connection between the two sides of the topology.

    ``side`` is ``"left"`` or ``"right"`` and picks identities and subnets; times are
    seconds (0 disables); ``esp_proposals`` without a DH group mean no PFS on rekey.
    """

    name: str = "conn"
    side: str = "left"
    remote_addrs: str = "%any"
    local_addrs: str | None = None
    proposals: str = "aes256gcm16-prfsha256-x25519"
    esp_proposals: str = "aes256gcm16-x25519"
    child: str = "net"
    encap: bool = False
    mobike: bool = True
    ike_rekey_time: int = 0
    child_rekey_time: int = 0
    rand_time: int = 0
    dpd_delay: int = 0
    dpd_action: str = "clear"
    start_action: str = "none"
    ipv6_inner: bool = True
    psk: str = TEST_PSK
    extra: dict[str, Any] = field(default_factory=dict)
    child_extra: dict[str, Any] = field(default_factory=dict)

    def _ids_and_ts(self) -> tuple[str, str, list[str], list[str]]:
        left_ts = [LEFT_SUBNET, *([LEFT_SUBNET6] if self.ipv6_inner else [])]
        right_ts = [RIGHT_SUBNET, *([RIGHT_SUBNET6] if self.ipv6_inner else [])]
        if self.side == "left":
            return LEFT_ID, RIGHT_ID, left_ts, right_ts
        if self.side == "right":
            return RIGHT_ID, LEFT_ID, right_ts, left_ts
        raise ValueError("side must be 'left' or 'right'")

    def connection(self) -> dict[str, Any]:
        """The ``connections { NAME { ... } }`` entry as a dict."""
        local_id, remote_id, local_ts, remote_ts = self._ids_and_ts()
        conn: dict[str, Any] = {
            "version": 2,
            "local_addrs": self.local_addrs,
            "remote_addrs": self.remote_addrs,
            "proposals": self.proposals,
            "encap": self.encap,
            "mobike": self.mobike,
            "dpd_delay": f"{self.dpd_delay}s",
            "rekey_time": f"{self.ike_rekey_time}s",
            "reauth_time": 0,
            "rand_time": f"{self.rand_time}s",
            "local": {"auth": "psk", "id": local_id},
            "remote": {"auth": "psk", "id": remote_id},
            "children": {
                self.child: {
                    "mode": "tunnel",
                    "local_ts": local_ts,
                    "remote_ts": remote_ts,
                    "esp_proposals": self.esp_proposals,
                    "rekey_time": f"{self.child_rekey_time}s",
                    "rand_time": f"{self.rand_time}s",
                    "dpd_action": self.dpd_action,
                    "start_action": self.start_action,
                    **self.child_extra,
                }
            },
            **self.extra,
        }
        return conn

    def render(self) -> str:
        """A complete swanctl.conf with this connection and the PSK."""
        return render_swanctl([self])


def render_swanctl(conns: Iterable[ConnSpec]) -> str:
    """swanctl.conf text for several connections (secrets deduplicated)."""
    conns = list(conns)
    secrets: dict[str, Any] = {}
    for i, c in enumerate(conns):
        secrets[f"ike-{i}"] = {"id-a": LEFT_ID, "id-b": RIGHT_ID, "secret": f'"{c.psk}"'}
    return swanctl_conf({
        "connections": {c.name: c.connection() for c in conns},
        "secrets": secrets,
    })


# -- vici --raw output --------------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:(\{)|(\})|(\[)|(\])|([^\s{}\[\]=]+)=|([^\s{}\[\]]+))")


def parse_vici_raw(text: str) -> list[tuple[str, dict[str, Any]]]:
    """Parse ``swanctl --raw`` output: one ``NAME {k=v sec {..} list [a b]}`` per line.

    Returns (message name, body) pairs, e.g. ``("list-sa event", {"gcm": {...}})``.
    Values stay strings; lists become lists of strings.
    """
    results: list[tuple[str, dict[str, Any]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or "{" not in line:
            continue
        head, _, rest = line.partition("{")
        body, _ = _parse_section(rest, 0)
        results.append((head.strip(), body))
    return results


def _parse_section(text: str, pos: int) -> tuple[dict[str, Any], int]:
    out: dict[str, Any] = {}
    pending: str | None = None  # a bare word: either a section name or a value
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            break
        pos = m.end()
        lbrace, rbrace, lbrack, _rbrack, key, word = m.groups()
        if rbrace:
            return out, pos
        if lbrace:
            if pending is None:
                raise ValueError(f"section without a name at {pos}")
            out[pending], pos = _parse_section(text, pos)
            pending = None
        elif key is not None:
            # value: a list, or a word up to the next whitespace/brace
            m2 = re.compile(r"\s*\[").match(text, pos)
            if m2:
                end = text.index("]", m2.end())
                out[key] = text[m2.end():end].split()
                pos = end + 1
            else:
                m3 = re.compile(r"([^\s{}]*)").match(text, pos)
                assert m3 is not None
                out[key] = m3.group(1)
                pos = m3.end()
        elif word is not None:
            pending = word
        elif lbrack:
            raise ValueError(f"unexpected list at {pos}")
    return out, pos


# -- charon --------------------------------------------------------------------------


@dataclass
class Charon:
    """One charon daemon inside a network namespace; see the module docstring."""

    netns: str
    name: str = "charon"
    debug: str = "ike 2, cfg 1, knl 1"
    loglevel: int = 1
    retransmit: tuple[int, float, float] = (3, 1.0, 1.5)
    extra_conf: str = ""
    state_dir: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    _own_state: bool = False

    def __post_init__(self) -> None:
        if self.state_dir is None:
            self.state_dir = Path(tempfile.mkdtemp(prefix=f"pyi-ss-{self.name}-"))
            self._own_state = True
        self.state_dir.mkdir(parents=True, exist_ok=True)

    @property
    def dir(self) -> Path:
        """The state directory."""
        assert self.state_dir is not None
        return self.state_dir

    @property
    def vici(self) -> Path:
        """Path of the vici socket."""
        return self.dir / "charon.vici"

    @property
    def log_path(self) -> Path:
        """Path of the file log."""
        return self.dir / "charon.log"

    @property
    def pid(self) -> int | None:
        """charon's PID while it runs."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        return self.proc.pid

    def strongswan_conf(self) -> str:
        """The generated strongswan.conf text."""
        tries, timeout, base = self.retransmit
        groups = {}
        for part in self.debug.split(","):
            if part.strip():
                g, lvl = part.split()
                groups[g] = lvl
        tree = {
            "charon": {
                "load": " ".join(available_plugins()),
                "retransmit_tries": tries,
                "retransmit_timeout": timeout,
                "retransmit_base": base,
                "plugins": {"vici": {"socket": f"unix://{self.vici}"}},
                "syslog": {"daemon": {"default": -1}},
                "filelog": {
                    "interop": {
                        "path": str(self.log_path),
                        "time_format": "%F %T",
                        "time_add_ms": "yes",
                        "ike_name": "yes",
                        "append": "yes",
                        "flush_line": "yes",
                        "default": self.loglevel,
                        **groups,
                    }
                },
            }
        }
        return swanctl_conf(tree) + self.extra_conf

    def start(self, swanctl_text: str | None = None, timeout: float = 10.0) -> Charon:
        """Start charon in the namespace, wait for its vici socket, load ``swanctl_text``."""
        if self.pid is not None:
            raise StrongswanError(f"charon {self.name} already running (pid {self.pid})")
        run_dir = self.dir / "run"
        run_dir.mkdir(exist_ok=True)
        for stale in (run_dir / "charon.pid", self.vici):
            stale.unlink(missing_ok=True)
        (self.dir / "strongswan.conf").write_text(self.strongswan_conf())
        env = dict(os.environ, STRONGSWAN_CONF=str(self.dir / "strongswan.conf"))
        with open(self.dir / "charon.out", "ab") as out:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.netns, "unshare", "--mount", "--propagation",
                 "private", "sh", "-c", 'mount --bind "$1" /run && exec "$2"', "sh",
                 str(run_dir), CHARON_BIN],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                start_new_session=True)
        _live.append(self)
        deadline = time.monotonic() + timeout
        while not self.vici.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop(kill=True)
                raise StrongswanError(f"charon {self.name} did not come up:\n{self.tail()}")
            time.sleep(0.05)
        if swanctl_text is not None:
            self.load(swanctl_text)
        return self

    def tail(self, lines: int = 40) -> str:
        """The last lines of charon.out and charon.log (for error messages)."""
        out = []
        for p in (self.dir / "charon.out", self.log_path):
            if p.exists():
                out.append(f"--- {p}\n" + "\n".join(p.read_text(errors="replace")
                                                     .splitlines()[-lines:]))
        return "\n".join(out)

    def log(self) -> str:
        """The whole file log."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def swanctl(self, *args: str, timeout: float = 30.0, check: bool = True,
                swanctl_dir: Path | None = None) -> str:
        """Run ``swanctl ARGS --uri unix://.../charon.vici`` and return its stdout
        (``swanctl_dir``: its ``SWANCTL_DIR``, where x509/, x509ca/, private/ ... are)."""
        env = None if swanctl_dir is None else dict(os.environ, SWANCTL_DIR=str(swanctl_dir))
        proc = subprocess.run(["swanctl", *args, "--uri", f"unix://{self.vici}"],
                              capture_output=True, text=True, timeout=timeout, check=False,
                              env=env)
        if check and proc.returncode != 0:
            raise StrongswanError(f"swanctl {' '.join(args)} failed ({proc.returncode}):\n"
                                  f"{proc.stdout}{proc.stderr}\n{self.tail(20)}")
        return proc.stdout

    def load(self, swanctl_text: str) -> None:
        """Write ``swanctl.conf`` and load connections and secrets from it."""
        conf = self.dir / "swanctl.conf"
        conf.write_text(swanctl_text)
        self.swanctl("--load-all", "--noprompt", "--file", str(conf))

    def load_dir(self, swanctl_text: str, swanctl_dir: Path) -> None:
        """Load ``swanctl_text`` with credentials from swanctl's layout below
        ``swanctl_dir`` (``x509/``, ``x509ca/``, ``x509crl/``, ``private/``; relative names
        in ``local.certs``, ``remote.cacerts`` and ``secrets.private*.file`` resolve there)."""
        conf = swanctl_dir / "swanctl.conf"
        conf.write_text(swanctl_text)
        self.swanctl("--load-all", "--noprompt", "--file", str(conf), swanctl_dir=swanctl_dir)

    def initiate(self, ike: str, child: str | None = None, timeout: float = 15.0) -> str:
        """Initiate an IKE SA (and Child SA) and wait for the result."""
        args = ["--initiate", "--ike", ike, "--timeout", str(int(timeout))]
        if child:
            args += ["--child", child]
        return self.swanctl(*args, timeout=timeout + 5)

    def terminate(self, ike: str | None = None, child: str | None = None,
                  timeout: float = 10.0, check: bool = True) -> str:
        """Terminate (send DELETE for) an IKE or Child SA by name."""
        args = ["--terminate", "--timeout", str(int(timeout))]
        args += ["--ike", ike] if ike else []
        args += ["--child", child] if child else []
        return self.swanctl(*args, timeout=timeout + 5, check=check)

    def rekey(self, *, ike: str | None = None, child: str | None = None) -> str:
        """Ask charon to rekey an IKE or Child SA (asynchronous)."""
        args = ["--rekey"]
        args += ["--ike", ike] if ike else []
        args += ["--child", child] if child else []
        return self.swanctl(*args)

    def list_sas(self) -> dict[str, dict[str, Any]]:
        """IKE SAs by connection name, as parsed from ``--list-sas --raw``.

        Several IKE SAs of one connection (e.g. during a rekey) are merged by
        ``uniqueid`` under ``name#uniqueid`` keys besides the plain name (last one).
        """
        sas: dict[str, dict[str, Any]] = {}
        for kind, body in parse_vici_raw(self.swanctl("--list-sas", "--raw")):
            if kind != "list-sa event":
                continue
            for name, sa in body.items():
                sas[name] = sa
                sas[f"{name}#{sa.get('uniqueid', '')}"] = sa
        return sas

    def established(self, ike: str) -> dict[str, Any] | None:
        """The ESTABLISHED IKE SA of connection ``ike`` with an INSTALLED child, or None."""
        for key, sa in self.list_sas().items():
            if "#" not in key or key.split("#")[0] != ike:
                continue
            if sa.get("state") != "ESTABLISHED":
                continue
            children = sa.get("child-sas", {})
            if any(c.get("state") == "INSTALLED" for c in children.values()):
                return sa
        return None

    def ike_sas(self, ike: str) -> list[dict[str, Any]]:
        """Every IKE SA of connection ``ike`` (any state), one dict per ``uniqueid``."""
        return [sa for key, sa in self.list_sas().items()
                if "#" in key and key.split("#")[0] == ike]

    def wait_for(self, predicate: Any, timeout: float = 15.0, interval: float = 0.2) -> Any:
        """Poll ``predicate(self)`` until it returns something truthy (or time out)."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate(self)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout}s:\n{self.tail(30)}")
            time.sleep(interval)

    def wait_log(self, pattern: str, timeout: float = 15.0, start: int = 0) -> re.Match[str]:
        """Wait until ``pattern`` (a regex) appears in the log after offset ``start``."""
        rx = re.compile(pattern)

        def found(_: Charon) -> re.Match[str] | None:
            return rx.search(self.log()[start:])

        result: re.Match[str] = self.wait_for(found, timeout)
        return result

    def stop(self, kill: bool = False) -> None:
        """Stop charon by PID: SIGTERM (it sends DELETEs first) or SIGKILL (silent)."""
        if self.proc is not None:
            if self.proc.poll() is None:
                if kill:
                    self.proc.kill()
                else:
                    kill_pid(self.proc.pid, timeout=5.0)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.vici.unlink(missing_ok=True)
        if self in _live:
            _live.remove(self)

    def cleanup(self) -> None:
        """Stop charon and remove the state directory if it was a temporary one."""
        self.stop()
        if self._own_state and self.state_dir is not None:
            shutil.rmtree(self.state_dir, ignore_errors=True)


@atexit.register
def _cleanup_all() -> None:  # pragma: no cover - safety net
    for charon in list(_live):
        with contextlib.suppress(Exception):  # best effort at exit
            charon.stop(kill=True)
