"""A FreeRADIUS 3 server for the EAP-RADIUS interop tests, alone in a network namespace.

:class:`FreeRadius` creates a namespace of its own (``pyi<pid>rad<n>``, loopback up; or
runs in a given one, e.g. the pyipsec gateway's of a topology, which it leaves in place),
copies Debian's configuration (``/etc/freeradius/3.0``) to a temporary directory and
changes it there only:

* ``radiusd.conf``: no ``user``/``group`` switch (the copy is root's), ``logdir`` and
  ``run_dir`` in the temporary directory;
* ``clients.conf``: one client, 127.0.0.1, with the test's shared secret and
  ``require_message_authenticator = yes``;
* ``mods-config/files/authorize``: the test users with their Cleartext-Password;
* ``mods-enabled/eap``: EAP-MD5 and EAP-MSCHAPv2 only (no TLS: no certificates
  needed), ``default_eap_type`` as asked;
* ``sites-enabled/``: one virtual server listening on 127.0.0.1 at the given port
  (``authorize``: eap, files; ``authenticate``: eap, and MS-CHAP for EAP-MSCHAPv2).

``freeradius -X -d DIR`` runs in the foreground under ``ip netns exec`` (which execs,
so the PID is FreeRADIUS's own) and is stopped by that PID; the namespace and the
directory are removed in :meth:`FreeRadius.stop`, also when starting failed, and by an
``atexit`` safety net.  :meth:`FreeRadius.inside` moves the calling thread into the
namespace (``setns``), so a RADIUS client in the test process reaches the server.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import itertools
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from .topology import kill_pid, netns_exists, run

FREERADIUS = "freeradius"
DEBIAN_CONF = Path("/etc/freeradius/3.0")
CLONE_NEWNET = 0x40000000
READY = "Ready to process requests"

_counter = itertools.count()
_live: list[FreeRadius] = []


def missing_requirements() -> str | None:
    """Why FreeRADIUS tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if shutil.which(FREERADIUS) is None:
        return "FreeRADIUS is not installed (Debian package freeradius)"
    if not (DEBIAN_CONF / "radiusd.conf").is_file():
        return f"no FreeRADIUS configuration in {DEBIAN_CONF}"
    if shutil.which("ip") is None:
        return "ip (iproute2) is not installed"
    return None


def _site(port: int) -> str:
    return f"""server pyipsec {{
  listen {{
    type = auth
    ipaddr = 127.0.0.1
    port = {port}
  }}
  listen {{
    type = acct
    ipaddr = 127.0.0.1
    port = {port + 1}
  }}
  accounting {{
    detail
  }}
  authorize {{
    eap {{
      ok = return
    }}
    files
  }}
  authenticate {{
    Auth-Type MS-CHAP {{
      mschap
    }}
    eap
  }}
  post-auth {{
    Post-Auth-Type REJECT {{
      attr_filter.access_reject
      eap
    }}
  }}
}}
"""


def _eap_module(default_eap_type: str) -> str:
    return f"""eap {{
  default_eap_type = {default_eap_type}
  timer_expire = 60
  ignore_unknown_eap_types = no
  max_sessions = 4096
  md5 {{
  }}
  mschapv2 {{
  }}
}}
"""


def _quote(text: str) -> str:
    if any(c in text for c in '"\\\n'):
        raise ValueError(f"keep test secrets and passwords simple: {text!r}")
    return f'"{text}"'


class FreeRadius:
    """One FreeRADIUS in its own namespace (see the module docstring)."""

    def __init__(
        self,
        secret: str,
        users: Mapping[str, str],
        *,
        port: int = 1812,
        default_eap_type: str = "md5",
        netns: str | None = None,
    ) -> None:
        self.secret = secret
        self.users = dict(users)
        self.port = port
        self.default_eap_type = default_eap_type
        # a namespace of the caller (e.g. the gateway's of a topology) is used, not owned
        self.own_netns = netns is None
        self.netns = netns or f"pyi{os.getpid()}rad{next(_counter)}"
        self.dir = Path(tempfile.mkdtemp(prefix="pyipsec-freeradius-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def acct_port(self) -> int:
        """Its accounting port (RFC 2866): the next one; requests go to detail files."""
        return self.port + 1

    def accounting_records(self) -> str:
        """What the ``detail`` module wrote of the Accounting-Requests it got."""
        files = sorted((self.dir / "log" / "radacct").glob("*/detail-*"))
        return "".join(f.read_text(errors="replace") for f in files)

    @property
    def log_path(self) -> Path:
        return self.dir / "radiusd.out"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    # -- configuration --------------------------------------------------------------

    def write_config(self) -> Path:
        """The patched copy of Debian's configuration; returns its directory."""
        conf = self.dir / "raddb"
        shutil.copytree(DEBIAN_CONF, conf, symlinks=True)
        for sub in ("log", "run"):
            (self.dir / sub).mkdir()
        radiusd = conf / "radiusd.conf"
        text = radiusd.read_text()
        text = re.sub(r"(?m)^(\s*)(user|group)\s*=", r"\1#\2 =", text)
        text = re.sub(r"(?m)^logdir\s*=.*$", f"logdir = {self.dir / 'log'}", text)
        text = re.sub(r"(?m)^run_dir\s*=.*$", f"run_dir = {self.dir / 'run'}", text)
        radiusd.write_text(text)
        (conf / "clients.conf").write_text(
            "client pyipsec {\n  ipaddr = 127.0.0.1\n"
            f"  secret = {_quote(self.secret)}\n  require_message_authenticator = yes\n}}\n"
        )
        authorize = conf / "mods-config" / "files" / "authorize"
        users = "".join(
            f"{name} Cleartext-Password := {_quote(pw)}\n" for name, pw in self.users.items()
        )
        authorize.write_text(users + authorize.read_text())
        eap = conf / "mods-enabled" / "eap"
        eap.unlink()
        eap.write_text(_eap_module(self.default_eap_type))
        sites = conf / "sites-enabled"
        for site in sites.iterdir():
            site.unlink()
        (sites / "pyipsec").write_text(_site(self.port))
        return conf

    # -- lifecycle ------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> FreeRadius:
        """Create the namespace, start FreeRADIUS, wait until it listens."""
        _live.append(self)
        try:
            conf = self.write_config()
            if self.own_netns:
                if netns_exists(self.netns):
                    raise RuntimeError(f"namespace {self.netns} exists already")
                run(["ip", "netns", "add", self.netns])
            run(["ip", "-n", self.netns, "link", "set", "lo", "up"])
            with self.log_path.open("wb") as out:
                self.proc = subprocess.Popen(
                    ["ip", "netns", "exec", self.netns, FREERADIUS, "-X", "-d", str(conf)],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while READY not in self.log_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = "\n".join(self.log_text().splitlines()[-25:])
                raise RuntimeError(f"FreeRADIUS did not start:\n{tail}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop FreeRADIUS by its PID; remove the namespace and the directory."""
        if self.proc is not None:
            kill_pid(self.proc.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
            self.proc = None
        if self.own_netns and netns_exists(self.netns):
            run(["ip", "netns", "del", self.netns], check=False)
        shutil.rmtree(self.dir, ignore_errors=True)
        if self in _live:
            _live.remove(self)

    def __enter__(self) -> FreeRadius:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @contextlib.contextmanager
    def inside(self) -> Iterator[None]:
        """Run the ``with`` body (this thread) in the server's namespace: sockets it
        opens reach 127.0.0.1 there."""
        libc = ctypes.CDLL(None, use_errno=True)
        orig = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{self.netns}", os.O_RDONLY)
        try:
            if libc.setns(target, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns")
            try:
                yield
            finally:
                if libc.setns(orig, CLONE_NEWNET) != 0:  # pragma: no cover
                    raise OSError(ctypes.get_errno(), "setns back")
        finally:
            os.close(orig)
            os.close(target)


@atexit.register
def _cleanup_all() -> None:  # pragma: no cover - safety net
    for server in list(_live):
        with contextlib.suppress(Exception):
            server.stop()
