"""Network-namespace topology for interop tests: left host, NAT router, right host.

::

    <p>l (left)                   <p>n (router)                        <p>r (right)
    eth0 198.51.100.2/24 --- lan0 198.51.100.1  wan0 192.0.2.1 --- eth0 192.0.2.2/24
         2001:db8:51::2/64        2001:db8:51::1     2001:db8:2::1      2001:db8:2::2/64
    inner0 203.0.113.1/26                                          inner0 203.0.113.65/26
           2001:db8:a::1/64                                               2001:db8:b::1/64

``<p>`` is a per-run prefix (``pyi<pid><n>``) so that parallel runs, and any other
testbed on the machine, never share a namespace.  Only documentation addresses
(RFC 5737, RFC 3849) are used and no interface leaves the namespaces created here.

* ``mode="nat"``: the router masquerades 198.51.100.0/24 behind 192.0.2.1 (nftables)
  and drops new connections from the internet side; right has no route to the LAN.
* ``mode="nonat"``: the router only forwards; right routes 198.51.100.0/24 via it.

``inner0`` is a veth pair kept inside its namespace (this kernel has no ``dummy``
driver); it carries the inner subnet each side protects.

Impairments (:meth:`Topology.impair_loss`, :meth:`Topology.impair_dup`) are nftables
rules on the router's egress towards both sides (netem is not available here).

Every topology registers itself for an ``atexit`` clean-up as a safety net; tests
should still call :meth:`Topology.down` (the pytest fixtures do, in a finalizer).
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

LEFT_OUTER = "198.51.100.2"
LEFT_OUTER6 = "2001:db8:51::2"
NAT_LAN = "198.51.100.1"
NAT_WAN = "192.0.2.1"
RIGHT_OUTER = "192.0.2.2"
RIGHT_OUTER6 = "2001:db8:2::2"
LEFT_INNER = "203.0.113.1"
LEFT_INNER6 = "2001:db8:a::1"
RIGHT_INNER = "203.0.113.65"
RIGHT_INNER6 = "2001:db8:b::1"
LEFT_SUBNET = "203.0.113.0/26"
LEFT_SUBNET6 = "2001:db8:a::/64"
RIGHT_SUBNET = "203.0.113.64/26"
RIGHT_SUBNET6 = "2001:db8:b::/64"
# the optional second LAN host behind the NAT (``Topology(extra_left_host=True)``): its own
# router port lan1 in 198.51.100.128/25 (inside the masqueraded /24) and inner subnets
LEFT2_OUTER = "198.51.100.130"
LEFT2_OUTER6 = "2001:db8:52::2"
NAT_LAN2 = "198.51.100.129"
LEFT2_INNER = "203.0.113.129"
LEFT2_INNER6 = "2001:db8:c::1"
LEFT2_SUBNET = "203.0.113.128/26"
LEFT2_SUBNET6 = "2001:db8:c::/64"

_counter = itertools.count()
_live: list[Topology] = []


class TopologyError(RuntimeError):
    """A command building or changing the topology failed."""


def run(argv: Sequence[str], *, check: bool = True, timeout: float = 30.0,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command, capture its output as text; raise :class:`TopologyError` on failure."""
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                          input=input, check=False)
    if check and proc.returncode != 0:
        raise TopologyError(f"{' '.join(argv)} failed ({proc.returncode}): "
                            f"{proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def missing_requirements() -> str | None:
    """Why namespace tests cannot run here, or ``None`` if they can."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", "nft", "unshare"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    probe = f"pyi{os.getpid()}probe"
    try:
        run(["ip", "netns", "add", probe])
    except (TopologyError, OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot create network namespaces: {exc}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


def netns_exists(name: str) -> bool:
    """True if the named network namespace exists."""
    return os.path.exists(f"/run/netns/{name}")


def netns_pids(name: str) -> list[int]:
    """PIDs of the processes running inside a namespace (``ip netns pids``)."""
    proc = run(["ip", "netns", "pids", name], check=False)
    return [int(p) for p in proc.stdout.split() if p.isdigit()]


def kill_pid(pid: int, timeout: float = 3.0) -> None:
    """SIGTERM one process, SIGKILL it if it is still alive after ``timeout`` seconds."""
    for sig, wait in ((15, timeout), (9, 1.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            # reap it if it is our own child (otherwise it stays a zombie and "alive")
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done == pid:
                    return
            except ChildProcessError:
                pass
            time.sleep(0.05)


@dataclass
class Topology:
    """Three namespaces (left, router, right); see the module docstring."""

    mode: str = "nat"
    prefix: str = field(default_factory=lambda: f"pyi{os.getpid()}{next(_counter)}")
    is_up: bool = False
    #: also build ``left2``, a second host behind the NAT (router port ``lan1``)
    extra_left_host: bool = False

    @property
    def left(self) -> str:
        """Name of the left (LAN side, behind the NAT) namespace."""
        return f"{self.prefix}l"

    @property
    def router(self) -> str:
        """Name of the router namespace."""
        return f"{self.prefix}n"

    @property
    def right(self) -> str:
        """Name of the right (internet side) namespace."""
        return f"{self.prefix}r"

    @property
    def namespaces(self) -> tuple[str, str, str]:
        """All three namespace names."""
        return (self.left, self.router, self.right)

    @property
    def left2(self) -> str:
        """Name of the optional second LAN host namespace (``extra_left_host=True``)."""
        return f"{self.prefix}m"

    @property
    def all_namespaces(self) -> tuple[str, ...]:
        """Every namespace of this topology, including the optional second LAN host."""
        return (*self.namespaces, *((self.left2,) if self.extra_left_host else ()))

    @property
    def right_sees_left_as(self) -> str:
        """The address right sees left's packets coming from (NAT or not)."""
        return NAT_WAN if self.mode == "nat" else LEFT_OUTER

    # -- building -----------------------------------------------------------------

    def up(self) -> Topology:
        """Create the namespaces, links, addresses, routes and NAT rules."""
        if self.mode not in ("nat", "nonat"):
            raise ValueError("mode must be 'nat' or 'nonat'")
        for ns in self.all_namespaces:
            if netns_exists(ns):
                raise TopologyError(f"namespace {ns} exists already")
        _live.append(self)
        self.is_up = True
        try:
            self._build()
        except BaseException:
            self.down()
            raise
        return self

    def _build(self) -> None:
        left, nat, right = self.namespaces
        for ns in self.namespaces:
            run(["ip", "netns", "add", ns])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
        run(["ip", "-n", left, "link", "add", "eth0", "type", "veth",
             "peer", "name", "lan0", "netns", nat])
        run(["ip", "-n", right, "link", "add", "eth0", "type", "veth",
             "peer", "name", "wan0", "netns", nat])
        for ns, dev, addrs in (
            (left, "eth0", (f"{LEFT_OUTER}/24", f"{LEFT_OUTER6}/64")),
            (nat, "lan0", (f"{NAT_LAN}/24", "2001:db8:51::1/64")),
            (nat, "wan0", (f"{NAT_WAN}/24", "2001:db8:2::1/64")),
            (right, "eth0", (f"{RIGHT_OUTER}/24", f"{RIGHT_OUTER6}/64")),
        ):
            run(["ip", "-n", ns, "addr", "add", addrs[0], "dev", dev])
            run(["ip", "-n", ns, "addr", "add", addrs[1], "dev", dev, "nodad"])
            run(["ip", "-n", ns, "link", "set", dev, "up"])
        self.exec(nat, ["sysctl", "-qw", "net.ipv4.ip_forward=1",
                        "net.ipv6.conf.all.forwarding=1"])
        run(["ip", "-n", left, "route", "add", "default", "via", NAT_LAN])
        run(["ip", "-n", left, "-6", "route", "add", "default", "via", "2001:db8:51::1"])
        run(["ip", "-n", right, "-6", "route", "add", "2001:db8:51::/64", "via", "2001:db8:2::1"])
        for ns, v4, v6 in ((left, f"{LEFT_INNER}/26", f"{LEFT_INNER6}/64"),
                           (right, f"{RIGHT_INNER}/26", f"{RIGHT_INNER6}/64")):
            run(["ip", "-n", ns, "link", "add", "inner0", "type", "veth",
                 "peer", "name", "inner0-peer"])
            run(["ip", "-n", ns, "link", "set", "inner0-peer", "up"])
            run(["ip", "-n", ns, "link", "set", "inner0", "up"])
            run(["ip", "-n", ns, "addr", "add", v4, "dev", "inner0"])
            run(["ip", "-n", ns, "addr", "add", v6, "dev", "inner0", "nodad"])
        if self.extra_left_host:
            self._build_left2()
        self.set_mode(self.mode)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # veth carriers come up asynchronously
            out = run(["ip", "-n", nat, "-br", "link"]).stdout
            states = [ln.split()[1] for ln in out.splitlines()
                      if ln.startswith(("lan0@", "wan0@"))]
            if len(states) == 2 and all(s == "UP" for s in states):
                break
            time.sleep(0.05)

    def _build_left2(self) -> None:
        """A second LAN host behind the NAT: eth0 198.51.100.130/25 <-> router lan1."""
        left2, nat, right = self.left2, self.router, self.right
        run(["ip", "netns", "add", left2])
        run(["ip", "-n", left2, "link", "set", "lo", "up"])
        run(["ip", "-n", left2, "link", "add", "eth0", "type", "veth",
             "peer", "name", "lan1", "netns", nat])
        for ns, dev, v4, v6 in ((left2, "eth0", f"{LEFT2_OUTER}/25", f"{LEFT2_OUTER6}/64"),
                                (nat, "lan1", f"{NAT_LAN2}/25", "2001:db8:52::1/64")):
            run(["ip", "-n", ns, "addr", "add", v4, "dev", dev])
            run(["ip", "-n", ns, "addr", "add", v6, "dev", dev, "nodad"])
            run(["ip", "-n", ns, "link", "set", dev, "up"])
        run(["ip", "-n", left2, "route", "add", "default", "via", NAT_LAN2])
        run(["ip", "-n", left2, "-6", "route", "add", "default", "via", "2001:db8:52::1"])
        run(["ip", "-n", right, "-6", "route", "add", "2001:db8:52::/64", "via", "2001:db8:2::1"])
        run(["ip", "-n", left2, "link", "add", "inner0", "type", "veth",
             "peer", "name", "inner0-peer"])
        run(["ip", "-n", left2, "link", "set", "inner0-peer", "up"])
        run(["ip", "-n", left2, "link", "set", "inner0", "up"])
        run(["ip", "-n", left2, "addr", "add", f"{LEFT2_INNER}/26", "dev", "inner0"])
        run(["ip", "-n", left2, "addr", "add", f"{LEFT2_INNER6}/64", "dev", "inner0", "nodad"])

    def set_mode(self, mode: str) -> None:
        """Switch between ``nat`` (masquerade) and ``nonat`` (plain routing)."""
        if mode not in ("nat", "nonat"):
            raise ValueError("mode must be 'nat' or 'nonat'")
        nat = self.router
        self.exec(nat, ["nft", "delete", "table", "ip", "pyi-nat"], check=False)
        self.exec(nat, ["ip", "neigh", "flush", "all"], check=False)
        if shutil.which("conntrack"):
            self.exec(nat, ["conntrack", "-F"], check=False)
        if mode == "nat":
            rules = (
                "table ip pyi-nat {\n"
                "  chain post {\n"
                "    type nat hook postrouting priority srcnat; policy accept;\n"
                '    oifname "wan0" ip saddr 198.51.100.0/24 masquerade\n'
                "  }\n"
                "  chain guard {\n"
                "    type filter hook forward priority filter; policy accept;\n"
                '    iifname "wan0" ct state new drop\n'
                "  }\n"
                "}\n"
            )
            self.exec(nat, ["nft", "-f", "-"], input=rules)
            run(["ip", "-n", self.right, "route", "del", "198.51.100.0/24"], check=False)
        else:
            run(["ip", "-n", self.right, "route", "replace", "198.51.100.0/24", "via", NAT_WAN])
        self.mode = mode

    # -- impairments --------------------------------------------------------------

    def _impair_table(self) -> None:
        nat = self.router
        if self.exec(nat, ["nft", "list", "table", "netdev", "pyi-impair"],
                     check=False).returncode == 0:
            return
        self.exec(nat, ["nft", "-f", "-"], input=(
            "table netdev pyi-impair {\n"
            '  chain lan { type filter hook egress device "lan0" priority 0; }\n'
            '  chain wan { type filter hook egress device "wan0" priority 0; }\n'
            "}\n"))

    def impair_loss(self, percent: int) -> None:
        """Drop ``percent`` % of the packets the router forwards, in each direction."""
        if not 0 <= percent <= 100:
            raise ValueError("percent must be 0..100")
        if percent == 0:
            return
        self._impair_table()
        # numgen's range is 0..99: "< 100" is rejected, so 100 % is an unconditional drop
        chance = [] if percent == 100 else ["numgen", "random", "mod", "100", "<", str(percent)]
        for chain in ("lan", "wan"):
            self.exec(self.router, ["nft", "add", "rule", "netdev", "pyi-impair", chain,
                                    "meta", "protocol", "{ ip, ip6 }", *chance, "drop"])

    def impair_dup(self, percent: int) -> None:
        """Duplicate ``percent`` % of the packets the router forwards (once each)."""
        if not 0 <= percent <= 99:
            raise ValueError("percent must be 0..99")
        if percent == 0:
            return
        self._impair_table()
        for chain, dev in (("lan", "lan0"), ("wan", "wan0")):
            self.exec(self.router, ["nft", "add", "rule", "netdev", "pyi-impair", chain,
                                    "meta", "protocol", "{ ip, ip6 }", "meta", "mark", "!=",
                                    "0x1dd", "numgen", "random", "mod", "100", "<",
                                    str(percent), "meta", "mark", "set", "0x1dd",
                                    "dup", "to", f'"{dev}"'])

    def impair_drop_ike_requests(self, exchange: int, every: int = 2) -> None:
        """Drop every ``every``-th IKE *request* of exchange type ``exchange`` (e.g. 36,
        CREATE_CHILD_SA) on UDP 4500 in each direction, starting with the first.

        Matches the cleartext IKE header behind the non-ESP marker (``@th`` offsets:
        marker at UDP payload byte 0, exchange type at 22, flags at 23, R flag 0x20), so
        only IKE requests are touched, never ESP or responses.  ``numgen inc`` counts per
        direction: with ``every=2`` each first transmission is lost and its first
        retransmission passes, which keeps a request outstanding for one retransmission
        timeout (used to make two rekeys overlap deterministically).
        """
        if every < 1:
            raise ValueError("every must be >= 1")
        self._impair_table()
        nth = [] if every == 1 else ["numgen", "inc", "mod", str(every), "==", "0"]
        for chain in ("lan", "wan"):
            self.exec(self.router, ["nft", "add", "rule", "netdev", "pyi-impair", chain,
                                    "udp", "dport", "4500", "@th,64,32", "0",
                                    "@th,240,8", str(exchange), "@th,248,8", "&", "0x20",
                                    "==", "0", *nth, "counter", "drop"])

    def clear_impairments(self) -> None:
        """Remove every loss/duplication rule."""
        self.exec(self.router, ["nft", "delete", "table", "netdev", "pyi-impair"], check=False)

    # -- observing and changing the router ------------------------------------------

    def start_counters(self, matches: dict[str, str]) -> None:
        """Count forwarded packets on the router: ``{"esp": "meta l4proto esp", ...}``.

        Each value is an nftables match expression; one counter rule per entry in a
        forward-hook chain of table ``inet pyi-count`` (replaced if it exists).
        :meth:`counters` reads them, :meth:`stop_counters` removes the table.
        """
        self.stop_counters()
        rules = "".join(f'    {expr} counter comment "{name}"\n'
                        for name, expr in matches.items())
        self.exec(self.router, ["nft", "-f", "-"], input=(
            "table inet pyi-count {\n"
            "  chain count {\n"
            "    type filter hook forward priority -10; policy accept;\n"
            f"{rules}"
            "  }\n"
            "}\n"))

    def counters(self) -> dict[str, int]:
        """Packets counted so far by the rules of :meth:`start_counters`, by name."""
        out = self.exec(self.router, ["nft", "-j", "list", "table", "inet", "pyi-count"]).stdout
        result: dict[str, int] = {}
        for item in json.loads(out).get("nftables", []):
            rule = item.get("rule")
            if not rule or "comment" not in rule:
                continue
            for expr in rule.get("expr", []):
                if "counter" in expr:
                    result[rule["comment"]] = int(expr["counter"]["packets"])
        return result

    def stop_counters(self) -> None:
        """Remove the counter table (no error if there is none)."""
        self.exec(self.router, ["nft", "delete", "table", "inet", "pyi-count"], check=False)

    def set_nat_port_range(self, low: int | None, high: int | None = None) -> None:
        """Masquerade UDP from the LAN to source ports ``low-high`` (``None``: the default
        port-preserving masquerade).  Existing conntrack entries keep their mapping:
        call :meth:`flush_conntrack` to make the next packets pick a new one."""
        if self.mode != "nat":
            raise TopologyError("set_nat_port_range needs mode 'nat'")
        rules = ['oifname "wan0" ip saddr 198.51.100.0/24 masquerade']
        if low is not None:
            rules.insert(0, 'oifname "wan0" ip saddr 198.51.100.0/24 meta l4proto udp '
                            f"masquerade to :{low}-{high if high is not None else low}")
        body = "".join(f"add rule ip pyi-nat post {r}\n" for r in rules)
        self.exec(self.router, ["nft", "-f", "-"], input="flush chain ip pyi-nat post\n" + body)

    def flush_conntrack(self) -> None:
        """Forget every NAT mapping of the router (``conntrack -F``; Debian ``conntrack``)."""
        if shutil.which("conntrack") is None:
            raise TopologyError("conntrack (conntrack-tools) is not installed")
        self.exec(self.router, ["conntrack", "-F"])

    def conntrack_udp(self) -> list[str]:
        """The router's UDP conntrack entries (``conntrack -L -p udp`` lines)."""
        if shutil.which("conntrack") is None:
            raise TopologyError("conntrack (conntrack-tools) is not installed")
        out = self.exec(self.router, ["conntrack", "-L", "-p", "udp"], check=False).stdout
        return [ln for ln in out.splitlines() if ln.strip()]

    # -- running things -----------------------------------------------------------

    def exec(self, ns: str, argv: Sequence[str], *, check: bool = True, timeout: float = 30.0,
             input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command inside namespace ``ns`` and wait for it."""
        return run(["ip", "netns", "exec", ns, *argv], check=check, timeout=timeout,
                   input=input)

    def popen(self, ns: str, argv: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
        """Start a command inside ``ns`` (the caller stops it; :meth:`down` kills leftovers)."""
        return subprocess.Popen(["ip", "netns", "exec", ns, *argv], **kwargs)  # type: ignore[call-overload, no-any-return]

    def ping(self, ns: str, dest: str, *, count: int = 3, interval: float = 0.2,
             timeout: float = 1.0, source: str | None = None) -> tuple[int, int]:
        """Ping ``dest`` from ``ns``; return (transmitted, received)."""
        argv = ["ping", "-n", "-q", "-c", str(count), "-i", str(interval), "-W", str(timeout)]
        if ":" in dest:
            argv.insert(1, "-6")
        if source:
            argv += ["-I", source]
        proc = self.exec(ns, [*argv, dest], check=False, timeout=count * (interval + timeout) + 10)
        for line in proc.stdout.splitlines():
            if "packets transmitted" in line:
                parts = line.split(",")
                return int(parts[0].split()[0]), int(parts[1].split()[0])
        return 0, 0

    def ping_background(self, ns: str, dest: str, *, source: str | None = None,
                        interval: float = 0.1) -> BackgroundPing:
        """Start a ping that runs until :meth:`BackgroundPing.stop` (e.g. across a rekey)."""
        argv = ["ping", "-n", "-q", "-i", str(interval), "-W", "1"]
        if ":" in dest:
            argv.insert(1, "-6")
        if source:
            argv += ["-I", source]
        return BackgroundPing(self.popen(ns, [*argv, dest], stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT))

    def down(self) -> None:
        """End every process left in the namespaces (by PID) and delete them."""
        for ns in self.all_namespaces:
            if not netns_exists(ns):
                continue
            for pid in netns_pids(ns):
                kill_pid(pid, timeout=2.0)
            run(["ip", "netns", "del", ns], check=False)
        self.is_up = False
        if self in _live:
            _live.remove(self)

    def __enter__(self) -> Topology:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()


@dataclass
class BackgroundPing:
    """A running ``ping`` (see :meth:`Topology.ping_background`)."""

    proc: subprocess.Popen[bytes]

    def stop(self) -> tuple[int, int]:
        """SIGINT the ping (it prints its summary); return (transmitted, received)."""
        if self.proc.poll() is None:
            self.proc.send_signal(2)
        try:
            out, _ = self.proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate(timeout=5)
        m = re.search(rb"(\d+) packets transmitted, (\d+) received", out or b"")
        return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


@atexit.register
def _cleanup_all() -> None:  # pragma: no cover - safety net
    for topo in list(_live):
        with contextlib.suppress(Exception):  # best effort at exit
            topo.down()
