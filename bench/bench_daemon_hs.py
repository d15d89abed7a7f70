"""The daemon's own CPU per responder handshake, without (or with) the IKE core.

``bench_load`` measures a whole responder: the sans-I/O core (parsing, key exchange,
key derivation) is about four fifths of it, and machine noise (+-10-20 % between runs)
hides a change of a few percent in the rest.  This bench times only what the daemon
does around the core for one IKE_SA_INIT + IKE_AUTH exchange with one Child SA: a
``Daemon`` (its real sockets on loopback, the data plane, a TUN double with the real
route bookkeeping of :class:`~pyipsec.daemon.tun.TunDevice` but no netlink) whose core
is a script (``ScriptedCore``): every request "answers" with a datagram of a realistic
size, every IKE_AUTH request establishes an IKE SA and installs a Child SA (AES-256-GCM,
remote selector 203.0.113.1/32 and a UDP port of its own, as in ``bench_load``), and the
core's next deadline moves the way a responder's half-open timeouts move.

A client socket keeps ``--inflight`` handshakes going (IKE_SA_INIT of handshake
``i + inflight`` next to IKE_AUTH of handshake ``i``); the daemon drains each datagram
in a wake-up of its own (``Daemon._on_udp_readable``, what ``loop.add_reader`` calls).
Only those calls are timed (``time.process_time``): receive, the call into the core
(next to nothing here), sends, events, the Child SA install (ESP objects, SPD, routes),
the timer re-arm.  It reports the median over ``--repeats`` runs of µs per handshake.

``--core real`` runs the daemon with the real ``IkeManager`` instead (what
``make_ike_manager`` builds, responder settings as in ``bench_load``: one ``%any``
connection, PSK, x25519, AES-256-GCM) against in-process initiators (one more
``IkeManager`` with ``loadgen``'s connections) whose datagrams go over the client
socket: the timed wake-ups then hold the whole responder handshake, core included.

Process time on a shared machine moves by tens of percent between runs; for a change of
a few percent count instructions instead: run it under ``valgrind --tool=callgrind
--toggle-collect=_operator_call`` for two sizes and divide the difference of the
``Collected`` totals by the difference of the handshakes.  The timed wake-ups are
called through :func:`operator.call` (a C function nothing else here calls), so with
that option callgrind counts only them, not the in-process initiators.

The same file runs against an older tree (it uses only calls both have)::

    git archive <commit> src tests bench | tar -x -C /tmp/old
    cp bench/bench_daemon_hs.py /tmp/old/bench/
    cd /tmp/old && PYTHONPATH=src python3 bench/bench_daemon_hs.py

Usage: ``PYTHONPATH=src python3 bench/bench_daemon_hs.py [--handshakes 3000] [--core real]``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import ipaddress
import random
import socket
import statistics
import sys
import tempfile
import textwrap
import time
from operator import call as timed_call  # the C function callgrind can toggle on
from pathlib import Path
from typing import Any

from _common import IKE_PROPOSAL, ROOT  # first: it puts src/ and the repository root on sys.path

# isort: split
from tests.daemon.fakes import FakeManager
from tests.daemon.fakes import child_info as fake_child_info

from pyipsec.config.loader import load_config
from pyipsec.config.model import DaemonConfig
from pyipsec.daemon.runtime import Daemon
from pyipsec.daemon.tun import TunDevice
from pyipsec.ikev2 import events as ev
from pyipsec.ikev2.selectors import Selector

try:
    from pyipsec.daemon.gc_tuning import tune_gc
except ImportError:  # an older tree (see above)
    from pyipsec.daemon.runtime import tune_gc

Address = tuple[str, int]
INIT_REPLY = 248  # IKE_SA_INIT response (x25519, NAT-D, no cookie), bytes
AUTH_REPLY = 236  # IKE_AUTH response (PSK, one Child SA), bytes
HALF_OPEN_TIMEOUT = 30.0
LOCAL_TS = (Selector.network("203.0.113.64/32"),)
PSK = b"bench-daemon-hs-psk-0123456789"


class BenchTun(TunDevice):
    """A :class:`TunDevice` whose kernel side is a socketpair and a no-op netlink:
    the route bookkeeping (``add_route``, ``routes_containing``) is the real one."""

    def __init__(self) -> None:
        super().__init__("bench0")
        self._pair = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.fd = self._pair[0].fileno()

    def _ipr_call(self, method: str, *args: Any, **kw: Any) -> Any:
        return None

    def close(self) -> None:
        for s in self._pair:
            s.close()
        self.fd = -1


class ScriptedCore(FakeManager):
    """A responder core reduced to its effects on the daemon: the first datagram of a
    handshake (its first byte: 0) opens a half-open SA with a deadline, the second (1)
    establishes it with one Child SA; each is answered with one datagram."""

    def __init__(self, children: list[ev.ChildSaInfo]) -> None:
        super().__init__()
        self.children = children  # handshake n installs children[n] (built beforehand)
        self.half_open: dict[int, float] = {}  # handshake -> its half-open deadline
        self.established = 0
        self.init_reply, self.auth_reply = bytes(INIT_REPLY), bytes(AUTH_REPLY)

    def receive_datagram(self, data: bytes, local: Address, remote: Address, now: float) -> None:
        n = int.from_bytes(data[1:5], "big")
        if data[0] == 0:
            self.half_open[n] = now + HALF_OPEN_TIMEOUT
            self.out.append((self.init_reply, local, remote))
        else:
            self.half_open.pop(n, None)
            self.out.append((self.auth_reply, local, remote))
            self.established += 1
            self.events.append(ev.IkeSaEstablished(
                n, "bench", local, remote, "right.example.net", f"load-{n}@example.net",
                initiator=False,
            ))  # fmt: skip
            self.events.append(ev.ChildSaInstalled(self.children[n]))
        # the earliest half-open deadline (dicts keep insertion order: the oldest first)
        self.timer = next(iter(self.half_open.values()), None)


def child_info(n: int, local: Address, remote: Address) -> ev.ChildSaInfo:
    """The Child SA of handshake ``n``: the tests' (``tests.daemon.fakes.child_info``)
    with AES-256-GCM keys and selectors narrowed like bench_load's (new selector objects
    per SA, as the core parses them per exchange)."""
    net = Selector.network("203.0.113.1/32")
    port = 10000 + n % 50000
    rts = Selector(ipaddress.ip_address(str(net.start)), ipaddress.ip_address(str(net.end)),
                   17, port, port)  # fmt: skip
    return dataclasses.replace(
        fake_child_info(0x10000000 + 2 * n, ike_id=n, encap=False, local=local, remote=remote),
        conn="bench", key_bits=256, encr_key_in=random.randbytes(36),
        encr_key_out=random.randbytes(36), local_ts=LOCAL_TS, remote_ts=(rts,),
        lifetimes=ev.ChildLifetimes(soft=None, hard=None), suite="aes256gcm16",
    )  # fmt: skip


def config(tmp: Path, port: int) -> DaemonConfig:
    text = f"""
    [daemon]
    listen = ["0.0.0.0"]
    ike_port = {port}
    natt_port = {port + 1}
    cookie_threshold = 100000
    cookie_threshold_ip = 100000
    block_threshold = 100000
    [daemon.tun]
    addresses = ["203.0.113.65/26"]
    [daemon.log]
    default = "warning"
    [connections.bench]
    local_addrs = ["127.0.0.1"]
    remote_addrs = ["%any"]
    local_port = {port}
    proposals = ["{IKE_PROPOSAL}"]
    dpd_delay = 0
    [connections.bench.local]
    id = "right.example.net"
    [connections.bench.remote]
    id = "%any"
    [connections.bench.children.net]
    local_ts = ["203.0.113.64/26"]
    remote_ts = ["203.0.113.0/26"]
    esp_proposals = ["aes256gcm16"]
    [secrets.s]
    ids = ["%any"]
    secret = "{PSK.decode()}"
    """
    p = tmp / "bench.toml"
    p.write_text(textwrap.dedent(text))
    p.chmod(0o600)
    return load_config(p)


async def one_run(handshakes: int, inflight: int, port: int, tmp: Path) -> float:
    """µs of daemon CPU per handshake (process time of the timed wake-ups)."""
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    client.setblocking(False)
    target = ("127.0.0.1", port)
    peer = client.getsockname()
    core = ScriptedCore([child_info(n, target, peer) for n in range(handshakes)])
    d = Daemon(config(tmp, port), manager_factory=lambda _cfg: core, control=False,
               tun_factory=lambda _cfg: BenchTun())  # fmt: skip
    await d.start()
    us = next(u for u in d.udp if u.port == port)
    d.loop.remove_reader(us.fd)  # its wake-ups are called (and timed) below
    payload = bytes(300)
    spent = 0.0
    clock = time.process_time
    gc.collect()
    tune_gc()  # as the daemon does after its start (frozen start-up objects, thresholds)
    try:
        order = [(0, i) for i in range(min(inflight, handshakes))]
        for i in range(handshakes):
            if i + inflight < handshakes:
                order.append((0, i + inflight))
            order.append((1, i))
        for kind, n in order:
            client.sendto(bytes((kind,)) + n.to_bytes(4, "big") + payload, target)
            t = clock()
            timed_call(d._on_udp_readable, us)
            spent += clock() - t
            while True:  # the answers (not timed)
                try:
                    client.recv(2048)
                except BlockingIOError:
                    break
    finally:
        client.close()
        await d.close()
    assert core.established == handshakes, core.established
    return spent / handshakes * 1e6


async def one_real_run(handshakes: int, inflight: int, port: int, tmp: Path) -> float:
    """µs of daemon CPU per handshake with the real IKE core (``--core real``): the
    initiators are one ``IkeManager`` of this process (``loadgen``'s connections)."""
    from loadgen import build_connections
    from pyipsec.daemon.runtime import make_ike_manager
    from pyipsec.ikev2.manager import IkeManager

    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    client.setblocking(False)
    target = ("127.0.0.1", port)
    me = client.getsockname()
    conns = [dataclasses.replace(c, local_port=me[1], remote_port=port)
             for c in build_connections(handshakes, local="127.0.0.1", remote="127.0.0.1",
                                        psk=PSK, proposal=IKE_PROPOSAL, esp="aes256gcm16")]
    initiator = IkeManager(conns, local_addresses=("127.0.0.1",))
    d = Daemon(config(tmp, port), manager_factory=make_ike_manager, control=False,
               tun_factory=lambda _cfg: BenchTun())  # fmt: skip
    await d.start()
    us = next(u for u in d.udp if u.port == port)
    d.loop.remove_reader(us.fd)  # its wake-ups are called (and timed) below
    spent = 0.0
    clock = time.process_time
    started = done = 0
    gc.collect()
    tune_gc()
    try:
        while done < handshakes:
            now = d.loop.time()
            while started < handshakes and started - done < inflight:
                initiator.initiate(conns[started].name, None, now)
                started += 1
            for data, _local, _remote in initiator.datagrams_to_send(now):
                client.sendto(data, target)
                t = clock()
                timed_call(d._on_udp_readable, us)
                spent += clock() - t
            while True:  # the answers (not timed)
                try:
                    data, src = client.recvfrom(4096)
                except BlockingIOError:
                    break
                initiator.receive_datagram(data, me, src, d.loop.time())
            while (e := initiator.next_event()) is not None:
                if isinstance(e, ev.ChildSaInstalled):
                    done += 1
                elif isinstance(e, ev.IkeSaFailed | ev.ChildSaFailed):
                    raise RuntimeError(f"handshake failed: {e}")
    finally:
        client.close()
        await d.close()
    return spent / handshakes * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--handshakes", type=int, default=3000)
    ap.add_argument("--inflight", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--core", choices=("scripted", "real"), default="scripted",
                    help="the daemon's core: a script (default: the shell alone) or the "
                    "real IkeManager with in-process initiators (shell + core)")
    a = ap.parse_args()
    port = random.randrange(20000, 60000, 2)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-daemon-hs-") as tmp:
        for _ in range(a.repeats):
            run = one_real_run if a.core == "real" else one_run
            results.append(asyncio.run(run(a.handshakes, a.inflight, port, Path(tmp))))
    what = "daemon CPU (shell + core)" if a.core == "real" else "daemon shell CPU"
    print(f"{ROOT.name}: {what} per responder handshake: "
          f"{statistics.median(results):.1f} µs (median of {a.repeats}; "
          f"min {min(results):.1f}, max {max(results):.1f}; {a.handshakes} handshakes, "
          f"{a.inflight} in flight)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
