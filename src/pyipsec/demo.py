"""``pyipsec demo``: two pyipsec peers behind a NAT router, in network namespaces of their own.

Topology (documentation addresses only; namespace names carry the PID so that parallel
runs never collide)::

  pyipsec-demo-<pid>-left         pyipsec-demo-<pid>-nat               pyipsec-demo-<pid>-right
  eth0 198.51.100.2/24 ---- lan0 198.51.100.1  wan0 192.0.2.1 ---- eth0 192.0.2.2/24
  pyipsec0 203.0.113.1            (nftables masquerade of              pyipsec0 203.0.113.65
  (inner 203.0.113.0/26)           198.51.100.0/24 to 192.0.2.1)       (inner 203.0.113.64/26)

The left daemon initiates to 192.0.2.2; the NAT makes both sides detect NAT, float to
UDP 4500 and use ESP-in-UDP.  The demo pings 203.0.113.65 from the left namespace
through the tunnel, shows ``pyipsec status`` of both daemons and removes everything —
processes (by PID), namespaces, temporary files — even on Ctrl-C, SIGTERM, SIGHUP or
failure.
With ``--auth pubkey`` the peers authenticate with certificates instead of the PSK: a
CA and a host certificate for each side (ECDSA P-256, subjectAltName the side's
identity) are made on the fly by :mod:`pyipsec.pki` into each side's state directory
(``x509ca/``, ``x509/``, ``private/`` next to its configuration; the CA key is never
written).
:class:`DemoLab` is reused by the namespace tests.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, Literal

from .daemon.control import ControlClient, ControlError

__all__ = ["DemoError", "DemoLab", "run_demo", "write_demo_pki"]

PSK = "pyipsec-demo-psk-0123456789abcdef"
LEFT_INNER = "203.0.113.1"
RIGHT_INNER = "203.0.113.65"
#: the IKE identities of the two sides (ID_FQDN; the dNSName of their certificates)
IDENTITIES = {"left": "left.example.net", "right": "right.example.net"}
DEMO_CA_DN = "CN=pyipsec demo CA"

DemoAuth = Literal["psk", "pubkey"]
AUTH_KINDS: tuple[DemoAuth, ...] = ("psk", "pubkey")


class DemoError(RuntimeError):
    """A demo step failed."""


def _auth_lines(side: str, auth: DemoAuth, which: str) -> str:
    """The ``auth``/``certs``/``key`` lines of ``[connections.demo.<which>]``."""
    if auth == "psk":
        return ""
    if which == "local":
        return f'auth = "pubkey"\ncerts = ["{side}.pem"]\nkey = "private/{side}.key"\n'
    return 'auth = "pubkey"\ncacerts = ["ca.pem"]\n'


def _config(side: str, sock: str, auth: DemoAuth = "psk") -> str:
    """The configuration of one side; ``auth``: the PSK below, or certificates."""
    text = _psk_config(side, sock)
    if auth == "psk":
        return text
    other = "right" if side == "left" else "left"
    text = text.replace(
        f'[connections.demo.local]\nid = "{IDENTITIES[side]}"\n',
        f'[connections.demo.local]\nid = "{IDENTITIES[side]}"\n' + _auth_lines(side, auth, "local"),
    )
    text = text.replace(
        f'[connections.demo.remote]\nid = "{IDENTITIES[other]}"\n',
        f'[connections.demo.remote]\nid = "{IDENTITIES[other]}"\n'
        + _auth_lines(side, auth, "remote"),
    )
    head, sep, _secrets = text.partition("\n[secrets.demo]\n")
    if not sep or text.count('auth = "pubkey"') != 2:
        raise AssertionError("demo configuration template changed")  # pragma: no cover
    return head


def write_demo_pki(dirs: dict[str, Path], now: dt.datetime | None = None) -> None:
    """A CA and a host certificate per side, in swanctl's layout under ``dirs[side]``:
    ``x509ca/ca.pem``, ``x509/<side>.pem`` (subject ``CN=<identity>``, subjectAltName
    dNSName ``<identity>``) and ``private/<side>.key`` (PKCS#8, mode 0600).  ECDSA
    P-256 throughout; the CA's private key only lives in memory."""
    from . import pki

    now = now or dt.datetime.now(dt.UTC)
    ca_key = pki.generate_key("ecdsa-p256")
    ca = pki.make_ca(ca_key, DEMO_CA_DN, now=now, days=30)
    ca_pem = pki.cert_pem(ca)
    for side, base in dirs.items():
        for sub, mode in (("x509ca", 0o755), ("x509", 0o755), ("private", 0o700)):
            (base / sub).mkdir(parents=True, exist_ok=True)
            os.chmod(base / sub, mode)
        key = pki.generate_key("ecdsa-p256")
        ident = IDENTITIES[side]
        cert = pki.issue_host(
            ca, ca_key, key.public_key(), cn=ident, sans=[f"dns:{ident}"], now=now, days=30
        )
        pki.write_file(str(base / "x509ca" / "ca.pem"), ca_pem)
        pki.write_file(str(base / "x509" / f"{side}.pem"), pki.cert_pem(cert))
        pki.write_file(str(base / "private" / f"{side}.key"), pki.key_pem(key), private=True)


def _psk_config(side: str, sock: str) -> str:
    if side == "left":
        return textwrap.dedent(
            f"""\
            # pyipsec demo: the initiator behind the NAT
            [daemon]
            listen = ["198.51.100.2"]
            control_socket = "{sock}"
            [daemon.tun]
            name = "pyipsec0"
            mtu = 1400
            addresses = ["{LEFT_INNER}/32"]
            [daemon.log]
            default = "info"

            [connections.demo]
            local_addrs = ["198.51.100.2"]
            remote_addrs = ["192.0.2.2"]
            proposals = ["aes256gcm16-prfsha256-x25519"]
            rekey_time = "4h"
            dpd_delay = "10s"
            keepalive = "20s"
            [connections.demo.local]
            id = "left.example.net"
            [connections.demo.remote]
            id = "right.example.net"
            [connections.demo.children.net]
            local_ts = ["203.0.113.0/26"]
            remote_ts = ["203.0.113.64/26"]
            esp_proposals = ["aes256gcm16"]
            rekey_time = "1h"
            start_action = "none"

            [secrets.demo]
            ids = ["left.example.net", "right.example.net"]
            secret = "{PSK}"
            """
        )
    return textwrap.dedent(
        f"""\
        # pyipsec demo: the responder on the "internet" side
        [daemon]
        listen = ["192.0.2.2"]
        control_socket = "{sock}"
        [daemon.tun]
        name = "pyipsec0"
        mtu = 1400
        addresses = ["{RIGHT_INNER}/32"]
        [daemon.log]
        default = "info"

        [connections.demo]
        local_addrs = ["192.0.2.2"]
        remote_addrs = ["%any"]
        proposals = ["aes256gcm16-prfsha256-x25519"]
        dpd_delay = "10s"
        [connections.demo.local]
        id = "right.example.net"
        [connections.demo.remote]
        id = "left.example.net"
        [connections.demo.children.net]
        local_ts = ["203.0.113.64/26"]
        remote_ts = ["203.0.113.0/26"]
        esp_proposals = ["aes256gcm16"]

        [secrets.demo]
        ids = ["left.example.net", "right.example.net"]
        secret = "{PSK}"
        """
    )


_NFT = """\
table ip pyipsec-demo-nat {
  chain post {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan0" ip saddr 198.51.100.0/24 masquerade
  }
  chain guard {
    type filter hook forward priority filter; policy accept;
    iifname "wan0" ct state new drop
  }
}
"""


class DemoLab:
    """Namespaces, NAT router and two daemons; a context manager that always cleans up."""

    def __init__(
        self,
        prefix: str | None = None,
        say: Callable[[str], None] = print,
        auth: DemoAuth = "psk",
    ) -> None:
        if auth not in AUTH_KINDS:
            raise ValueError(f"auth must be one of {', '.join(AUTH_KINDS)}, not {auth!r}")
        self.auth: DemoAuth = auth
        tag = prefix or f"pyipsec-demo-{os.getpid()}"
        self.ns = {side: f"{tag}-{side}" for side in ("left", "nat", "right")}
        self.say = say
        self.tmp = Path(tempfile.mkdtemp(prefix="pyipsec-demo-"))
        os.chmod(self.tmp, 0o700)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.sockets = {s: str(self.tmp / f"{s}.sock") for s in ("left", "right")}
        self.configs: dict[str, Path] = {}
        # each side's state directory: its configuration (and certificates, keys)
        self.dirs = {s: self.tmp / s for s in ("left", "right")}
        self._created: list[str] = []
        self._closed = False
        self._pid = os.getpid()  # forked helpers (pyroute2) must never clean up
        atexit.register(self.close)

    # -------------------------------------------------------------- topology

    def _run(self, *cmd: str, input: str | None = None) -> str:
        r = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise DemoError(f"{' '.join(cmd)}: {r.stderr.strip() or r.returncode}")
        return r.stdout

    def _nsexec(self, side: str, *cmd: str, input: str | None = None) -> str:
        return self._run("ip", "netns", "exec", self.ns[side], *cmd, input=input)

    def build(self) -> None:
        """Create the three namespaces, veth links, addresses, routes and the NAT."""
        from pyroute2 import NetNS, netns

        existing = set(netns.listnetns())
        for name in self.ns.values():
            if name in existing:
                raise DemoError(f"namespace {name} exists already")
        for name in self.ns.values():
            netns.create(name)
            self._created.append(name)
        left, nat, right = self.ns["left"], self.ns["nat"], self.ns["right"]
        for name in self.ns.values():
            with NetNS(name) as n:
                n.link("set", index=n.link_lookup(ifname="lo")[0], state="up")
        with NetNS(left) as n:
            n.link("add", ifname="eth0", kind="veth", peer={"ifname": "lan0", "net_ns_fd": nat})
        with NetNS(right) as n:
            n.link("add", ifname="eth0", kind="veth", peer={"ifname": "wan0", "net_ns_fd": nat})
        plan = [
            (left, "eth0", "198.51.100.2"),
            (nat, "lan0", "198.51.100.1"),
            (nat, "wan0", "192.0.2.1"),
            (right, "eth0", "192.0.2.2"),
        ]
        for ns, ifname, addr in plan:
            with NetNS(ns) as n:
                idx = n.link_lookup(ifname=ifname)[0]
                n.addr("add", index=idx, address=addr, prefixlen=24)
                n.link("set", index=idx, state="up")
        with NetNS(left) as n:
            n.route("add", dst="0.0.0.0/0", gateway="198.51.100.1")
        self._nsexec("nat", "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self._nsexec("nat", "nft", "-f", "-", input=_NFT)
        # veth carriers come up asynchronously: wait until the router reaches both sides
        for peer in ("198.51.100.2", "192.0.2.2"):
            for _ in range(50):
                r = subprocess.run(
                    ["ip", "netns", "exec", nat, "ping", "-c1", "-W1", peer],
                    capture_output=True,
                )
                if r.returncode == 0:
                    break
                time.sleep(0.1)
            else:
                raise DemoError(f"router cannot reach {peer}")

    # -------------------------------------------------------------- daemons

    def write_configs(self) -> None:
        """Each side's configuration in its state directory (with ``auth = "pubkey"``
        also a fresh CA and host certificates, see :func:`write_demo_pki`)."""
        for d in self.dirs.values():
            d.mkdir(mode=0o700, exist_ok=True)
        if self.auth == "pubkey":
            write_demo_pki(self.dirs)
        for side, d in self.dirs.items():
            p = d / f"{side}.toml"
            p.write_text(_config(side, self.sockets[side], self.auth))
            os.chmod(p, 0o600)
            self.configs[side] = p

    def start_daemon(self, side: str, extra: tuple[str, ...] = ()) -> None:
        log = open(self.tmp / f"{side}.log", "wb")  # noqa: SIM115 - handed to the child
        cmd = [
            "ip", "netns", "exec", self.ns[side],
            sys.executable, "-m", "pyipsec", "daemon",
            "--config", str(self.configs[side]), "--foreground", *extra,
        ]  # fmt: skip
        env = dict(os.environ)
        src = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if "PYTHONPATH" in env else "")
        try:
            self.procs[side] = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        finally:
            log.close()
        self.wait_ready(side)

    def wait_ready(self, side: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        client = ControlClient(self.sockets[side], timeout=2.0)
        while time.monotonic() < deadline:
            p = self.procs[side]
            if p.poll() is not None:
                raise DemoError(f"{side} daemon exited with {p.returncode}:\n{self.log_tail(side)}")
            if os.path.exists(self.sockets[side]):
                with contextlib.suppress(ControlError):
                    client.call("status")
                    return
            time.sleep(0.1)
        raise DemoError(f"{side} daemon did not come up:\n{self.log_tail(side)}")

    def log_tail(self, side: str, lines: int = 30) -> str:
        p = self.tmp / f"{side}.log"
        if not p.exists():
            return "(no log)"
        return "\n".join(p.read_text(errors="replace").splitlines()[-lines:])

    def client(self, side: str, timeout: float = 30.0) -> ControlClient:
        return ControlClient(self.sockets[side], timeout=timeout)

    def ping(self, side: str, dst: str, count: int = 3) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.ns[side], "ping", "-c", str(count), "-i", "0.2",
             "-W", "2", dst],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip

    # -------------------------------------------------------------- cleanup

    def stop_daemons(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)  # only the processes we started, by PID
        for side, p in list(self.procs.items()):
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
            self.procs.pop(side)

    def close(self) -> None:
        if self._closed or os.getpid() != self._pid:
            return
        self._closed = True
        try:
            self.stop_daemons()
        finally:
            try:
                from pyroute2 import netns

                for name in reversed(self._created):
                    with contextlib.suppress(Exception):
                        netns.remove(name)
                self._created.clear()
            finally:
                shutil.rmtree(self.tmp, ignore_errors=True)
                atexit.unregister(self.close)

    def __enter__(self) -> DemoLab:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


_MAIN_PID = os.getpid()


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    if os.getpid() == _MAIN_PID:  # not in a forked helper process
        raise KeyboardInterrupt
    os._exit(1)


# the commands the demo runs, and the Debian packages that provide them
DEMO_TOOLS = {"ip": "iproute2", "nft": "nftables", "ping": "iputils-ping"}


def ensure_tools(install: bool, out: Callable[[str], None]) -> bool:
    """Make sure ``ip``, ``nft`` and ``ping`` exist.  A fresh Debian machine lacks nft
    and ping: with ``install`` (the default) and apt-get present, the missing packages
    are installed first (the demo runs as root anyway); otherwise say what is needed."""
    missing = {t: pkg for t, pkg in DEMO_TOOLS.items() if shutil.which(t) is None}
    if not missing:
        return True
    pkgs = sorted(set(missing.values()))
    if not install or shutil.which("apt-get") is None:
        out(
            "pyipsec demo needs the command(s) "
            + ", ".join(repr(t) for t in missing)
            + f" (Debian packages: {' '.join(pkgs)})"
        )
        return False
    out(f"installing what the demo needs: apt-get install {' '.join(pkgs)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *pkgs],
    ):
        try:
            r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.SubprocessError) as exc:
            out(f"    {' '.join(argv[:2])} failed: {exc}")
            return False
        if r.returncode != 0:
            out(f"    {' '.join(argv[:2])} failed:\n" + textwrap.indent(r.stderr[-1500:], "    "))
            return False
    still = [t for t in missing if shutil.which(t) is None]
    if still:
        out(f"pyipsec demo still lacks {', '.join(still)} after the install")
        return False
    return True


if TYPE_CHECKING:  # typeshed's ``signal._HANDLER``
    _SignalHandler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None

#: the signals that clean up like Ctrl-C: SIGTERM and SIGHUP (terminal closed)
_CLEANUP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _prerequisites_met(install: bool, out: Callable[[str], None]) -> bool:
    """Root and the demo's tools (installed first if ``install``); says what is missing."""
    if os.geteuid() != 0:
        out(
            "pyipsec demo needs root: it creates network namespaces, veth links, a TUN "
            "device in each peer and nftables NAT rules (all removed afterwards).\n"
            "Run it as root, e.g.: sudo pyipsec demo"
        )
        return False
    return ensure_tools(install, out)


def _interrupt_on_cleanup_signals() -> dict[signal.Signals, _SignalHandler]:
    """Make SIGTERM and SIGHUP raise :class:`KeyboardInterrupt` in this process, so that
    they clean up like Ctrl-C; returns the previous handlers for
    :func:`_restore_signal_handlers`."""
    global _MAIN_PID
    _MAIN_PID = os.getpid()
    return {sig: signal.signal(sig, _raise_interrupt) for sig in _CLEANUP_SIGNALS}


def _restore_signal_handlers(old: dict[signal.Signals, _SignalHandler]) -> None:
    """Undo :func:`_interrupt_on_cleanup_signals`."""
    for sig, handler in old.items():
        signal.signal(sig, handler)


def _step_announcer(out: Callable[[str], None]) -> Callable[[str], None]:
    """A ``say(msg)`` that prints ``[n] msg``, numbering the demo's steps from 1."""
    step = 0

    def say(msg: str) -> None:
        nonlocal step
        step += 1
        out(f"[{step}] {msg}")

    return say


def _set_up_lab(lab: DemoLab, say: Callable[[str], None]) -> None:
    """Phase 1: namespaces and NAT, the configurations, both daemons (responder first)."""
    say(
        f"creating namespaces {lab.ns['left']}, {lab.ns['nat']}, {lab.ns['right']} "
        "(198.51.100.0/24 behind a NAT at 192.0.2.1, peer at 192.0.2.2)"
    )
    lab.build()
    if lab.auth == "pubkey":
        say(
            f"making a CA and certificates for {IDENTITIES['left']} and "
            f"{IDENTITIES['right']} (ECDSA P-256), writing configurations to {lab.tmp}"
        )
    else:
        say(f"writing configurations to {lab.tmp}")
    lab.write_configs()
    say("starting the responder daemon in the right namespace")
    lab.start_daemon("right")
    say("starting the initiator daemon in the left namespace")
    lab.start_daemon("left")


def _bring_tunnel_up(lab: DemoLab, say: Callable[[str], None], out: Callable[[str], None]) -> bool:
    """Phase 2: ``pyipsec up demo`` on the left daemon; False (logs shown) if it failed."""
    from .cli import format_up_result

    say("bringing the tunnel up: pyipsec up demo (IKE_SA_INIT, IKE_AUTH through the NAT)")
    t0 = time.monotonic()
    try:
        res = lab.client("left").call("up", name="demo", child="net", timeout=20)
    except ControlError as e:
        out(f"    up failed: {e}")
        out(lab.log_tail("left"))
        out(lab.log_tail("right"))
        return False
    out("    " + format_up_result(res, (time.monotonic() - t0) * 1000))
    return True


def _ping_across(lab: DemoLab, say: Callable[[str], None], out: Callable[[str], None]) -> bool:
    """Phase 3: ping the right inner address from the left one; True if it went through."""
    say(f"pinging {RIGHT_INNER} from {LEFT_INNER} through the tunnel")
    r = lab.ping("left", RIGHT_INNER, count=5)
    out(textwrap.indent(r.stdout.strip(), "    "))
    return r.returncode == 0


def _show_status(lab: DemoLab, say: Callable[[str], None], out: Callable[[str], None]) -> None:
    """Phase 4: ``pyipsec status`` of both daemons."""
    from .cli import format_status

    for side in ("left", "right"):
        say(f"status of the {side} daemon")
        try:
            out(textwrap.indent(format_status(lab.client(side).call("status")), "    "))
        except ControlError as e:
            out(f"    status failed: {e}")


def _verdict(lab: DemoLab, ok: bool, out: Callable[[str], None]) -> int:
    """Phase 5: say whether the ping went through (with both logs if not); the exit status."""
    if ok:
        out("demo: the ping went through the IPsec tunnel")
        return 0
    out("demo: FAILED - the ping did not go through")
    out("--- left log ---\n" + lab.log_tail("left"))
    out("--- right log ---\n" + lab.log_tail("right"))
    return 1


def _run_phases(
    lab: DemoLab, keep_going: bool, say: Callable[[str], None], out: Callable[[str], None]
) -> int:
    """The demo's steps in ``lab``; the exit status.  Exceptions go to :func:`run_demo`."""
    _set_up_lab(lab, say)
    if not _bring_tunnel_up(lab, say, out) and not keep_going:
        return 1
    ok = _ping_across(lab, say, out)
    _show_status(lab, say, out)
    return _verdict(lab, ok, out)


def run_demo(
    keep_going: bool = False,
    out: Callable[[str], None] = print,
    *,
    install: bool = True,
    auth: DemoAuth = "psk",
) -> int:
    """The README's main job; returns the exit status (0: the ping went through)."""
    if not _prerequisites_met(install, out):
        return 2
    old = _interrupt_on_cleanup_signals()
    say = _step_announcer(out)
    lab = DemoLab(say=out, auth=auth)
    try:
        return _run_phases(lab, keep_going, say, out)
    except KeyboardInterrupt:
        out("interrupted")
        return 130
    except (DemoError, OSError, subprocess.SubprocessError) as e:  # e.g. netlink, timeouts
        out(f"demo: FAILED - {e}")
        return 1
    finally:
        out("cleaning up: stopping daemons, removing namespaces and files")
        lab.close()
        _restore_signal_handlers(old)
