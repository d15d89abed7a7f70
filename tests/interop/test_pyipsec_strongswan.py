"""pyipsec <-> strongSwan 5.9.8 through the NAT topology, both roles, three suites.

For each suite (AES-GCM-16-256/X25519, AES-CBC-256/HMAC-SHA2-256/MODP-2048,
ChaCha20-Poly1305/ECP-256; ESP the same with PFS on rekey) and each role (pyipsec on the
left initiating from behind the NAT, or pyipsec on the right answering strongSwan):

1. IKE SA + Child SA established on both sides (``swanctl --list-sas --raw`` and
   ``pyipsec status --json``); strongSwan sees the NAT as expected;
2. ping inner -> inner both ways (IPv4 and IPv6), a short iperf3 run;
3. a Child SA rekey started by strongSwan (``swanctl --rekey``) and one started by pyipsec
   (control ``rekey`` command when the daemon has it, else its ``rekey_time``), each with
   a ping running across the rekey and answered;
4. clean close from the initiator; no SA left on either side.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .pyipsec_daemon import PyipsecDaemon, pyipsec_toml
from .strongswan import Charon, ConnSpec
from .topology import (
    LEFT_INNER,
    LEFT_INNER6,
    NAT_WAN,
    RIGHT_INNER,
    RIGHT_INNER6,
    RIGHT_OUTER,
    Topology,
)

pytestmark = pytest.mark.interop

# seconds: pyipsec's own Child SA rekey, used when its control socket has no rekey command;
# long enough not to fire before strongSwan's rekey (which restarts the timer)
PYIPSEC_CHILD_REKEY = 10


@dataclass(frozen=True)
class Suite:
    """IKE and ESP proposals (strongSwan syntax) and what swanctl reports for them."""

    name: str
    ike: str
    esp: str
    ss_encr: str
    ss_dh: str


SUITES = [
    Suite("gcm-x25519", "aes256gcm16-prfsha256-x25519", "aes256gcm16-x25519",
          "AES_GCM_16", "CURVE_25519"),
    Suite("cbc-modp2048", "aes256-sha256-modp2048", "aes256-sha256-modp2048",
          "AES_CBC", "MODP_2048"),
    Suite("chacha-ecp256", "chacha20poly1305-prfsha256-ecp256", "chacha20poly1305-ecp256",
          "CHACHA20_POLY1305", "ECP_256"),
]


@dataclass
class Peers:
    """The two daemons of one test and which side each one is on."""

    topo: Topology
    charon: Charon
    pyipsec: PyipsecDaemon
    pyipsec_side: str  # "left" (initiator behind the NAT) or "right" (responder)
    ss_conn: str = "ss"
    py_conn: str = "py"

    @property
    def ss_ns(self) -> str:
        """strongSwan's namespace."""
        return self.topo.right if self.pyipsec_side == "left" else self.topo.left


def _start(topo: Topology, suite: Suite, pyipsec_side: str, tmp_path: Path,
           charon_factory: Callable[..., Charon],
           pyipsec_factory: Callable[..., PyipsecDaemon]) -> Peers:
    state = tmp_path / "pyipsec"
    if pyipsec_side == "left":
        charon = charon_factory(topo.right, ConnSpec(
            name="ss", side="right", local_addrs=RIGHT_OUTER, proposals=suite.ike,
            esp_proposals=suite.esp).render(), name="right")
        toml = pyipsec_toml(side="left", state_dir=state, conn="py", remote_addrs=[RIGHT_OUTER],
                            proposals=suite.ike, esp_proposals=suite.esp,
                            child_rekey_time=PYIPSEC_CHILD_REKEY)
        daemon = pyipsec_factory(topo.left, toml, state_dir=state)
    else:
        toml = pyipsec_toml(side="right", state_dir=state, conn="py", local_addrs=[RIGHT_OUTER],
                            proposals=suite.ike, esp_proposals=suite.esp,
                            child_rekey_time=PYIPSEC_CHILD_REKEY)
        daemon = pyipsec_factory(topo.right, toml, state_dir=state)
        charon = charon_factory(topo.left, ConnSpec(
            name="ss", side="left", remote_addrs=RIGHT_OUTER, proposals=suite.ike,
            esp_proposals=suite.esp).render(), name="left")
    return Peers(topo, charon, daemon, pyipsec_side)


def _py_established(d: PyipsecDaemon) -> bool:
    ike = d.ike_sas()
    states = [str(sa.get("state", "ESTABLISHED")).upper() for sa in ike]
    return any(s.endswith("ESTABLISHED") for s in states) and bool(d.child_sas())


def _ping_both(topo: Topology, count: int = 2) -> None:
    for ns, src, dst in ((topo.left, LEFT_INNER, RIGHT_INNER),
                         (topo.right, RIGHT_INNER, LEFT_INNER),
                         (topo.left, LEFT_INNER6, RIGHT_INNER6),
                         (topo.right, RIGHT_INNER6, LEFT_INNER6)):
        assert topo.ping(ns, dst, count=count, source=src) == (count, count), f"{src} -> {dst}"


def _iperf(topo: Topology, seconds: int = 2) -> float:
    """A short TCP iperf3 run left -> right through the tunnel; returns bits/s received."""
    server = topo.popen(topo.right, ["iperf3", "-s", "-B", RIGHT_INNER],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:  # until the server listens (busy CI machines)
            listening = topo.exec(topo.right, ["ss", "-Htln", "sport", "=", ":5201"],
                                  check=False).stdout
            if listening.strip():
                break
            time.sleep(0.1)
        out = ""
        for _ in range(5):
            proc = topo.exec(topo.left, ["iperf3", "-c", RIGHT_INNER, "-B", LEFT_INNER,
                                         "-t", str(seconds), "-J"], check=False,
                             timeout=seconds + 20)
            out = proc.stdout
            result = json.loads(out) if out.strip().startswith("{") else {}
            if proc.returncode == 0 and "sum_received" in result.get("end", {}):
                return float(result["end"]["sum_received"]["bits_per_second"])
            time.sleep(0.5)
        raise AssertionError(f"iperf3 through the tunnel failed: {out[-800:]}")
    finally:
        server.terminate()
        server.wait(timeout=5)


class _BackgroundPing:
    """A ping from left to right running while something else happens."""

    def __init__(self, topo: Topology) -> None:
        self.proc = topo.popen(topo.left, ["ping", "-n", "-q", "-i", "0.1", "-W", "1",
                                           "-I", LEFT_INNER, RIGHT_INNER],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def stop(self) -> tuple[int, int]:
        """SIGINT the ping (it prints its summary); return (transmitted, received)."""
        self.proc.send_signal(2)
        out, _ = self.proc.communicate(timeout=5)
        m = re.search(rb"(\d+) packets transmitted, (\d+) received", out or b"")
        return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _ss_child_spis(charon: Charon, conn: str) -> set[str]:
    sa = charon.established(conn)
    if sa is None:
        return set()
    return {c["spi-in"] for c in sa["child-sas"].values() if c.get("state") == "INSTALLED"}


def _assert_rekey_under_ping(peers: Peers, start: Callable[[], None], log_pattern: str,
                             timeout: float) -> None:
    """Start a rekey, wait for strongSwan to log ``log_pattern`` and the old SA to go."""
    topo, charon = peers.topo, peers.charon
    before_spis = _ss_child_spis(charon, peers.ss_conn)
    offset = len(charon.log())
    ping = _BackgroundPing(topo)
    try:
        time.sleep(0.3)
        start()
        charon.wait_log(log_pattern, timeout=timeout, start=offset)
        charon.wait_for(lambda c: (bool(_ss_child_spis(c, peers.ss_conn))
                                   and _ss_child_spis(c, peers.ss_conn).isdisjoint(before_spis)),
                        timeout=10)
        time.sleep(0.5)
    finally:
        sent, got = ping.stop()
    assert sent > 0 and sent - got <= 1, f"ping across the rekey: {got}/{sent} answered"
    assert topo.ping(topo.left, RIGHT_INNER, count=2, source=LEFT_INNER) == (2, 2)
    assert peers.pyipsec.child_sas(), "pyipsec lost its Child SA"


@pytest.mark.parametrize("pyipsec_side", ["left", "right"],
                         ids=["pyipsec-initiator", "pyipsec-responder"])
@pytest.mark.parametrize("suite", SUITES, ids=[s.name for s in SUITES])
def test_pyipsec_strongswan(nat_topology: Topology, suite: Suite, pyipsec_side: str,
                            tmp_path: Path, charon_factory: Callable[..., Charon],
                            pyipsec_factory: Callable[..., PyipsecDaemon]) -> None:
    """Establish, ping, iperf3, rekey from each side under ping, close; check both sides."""
    topo = nat_topology
    peers = _start(topo, suite, pyipsec_side, tmp_path, charon_factory, pyipsec_factory)
    charon, daemon = peers.charon, peers.pyipsec

    # 1. establish (the initiator is always left, behind the NAT)
    if pyipsec_side == "left":
        daemon.up("py", "net")
    else:
        charon.initiate("ss", "net")
    sa = charon.wait_for(lambda c: c.established("ss"), timeout=15)
    daemon.wait_for(_py_established, timeout=10)
    assert sa["encr-alg"] == suite.ss_encr and sa["dh-group"] == suite.ss_dh
    child = next(iter(sa["child-sas"].values()))
    assert child["encap"] == "yes"
    if pyipsec_side == "left":
        assert sa["remote-host"] == NAT_WAN and sa["nat-remote"] == "yes"
    else:
        assert sa["nat-local"] == "yes"
    status = daemon.status()
    assert status["child_sas"][0]["encap"] is True

    # 2. traffic
    _ping_both(topo)
    if shutil.which("iperf3"):
        assert _iperf(topo) > 0

    # 3. Child SA rekeys, one started by each side, with a ping running across each
    _assert_rekey_under_ping(peers, lambda: charon.rekey(child="net"),
                             r"generating CREATE_CHILD_SA request", timeout=10)
    _assert_rekey_under_ping(peers, lambda: daemon.rekey_child("py", "net") or None,
                             r"parsed CREATE_CHILD_SA request", timeout=PYIPSEC_CHILD_REKEY + 8)

    # 4. clean close from the initiator
    if pyipsec_side == "left":
        daemon.down("py")
    else:
        charon.terminate(ike="ss")
    charon.wait_for(lambda c: not c.list_sas(), timeout=10)
    daemon.wait_for(lambda d: not d.ike_sas() and not d.child_sas(), timeout=10)


def test_status_json_cli(nat_topology: Topology, tmp_path: Path,
                         pyipsec_factory: Callable[..., PyipsecDaemon]) -> None:
    """The daemon starts in a namespace and ``pyipsec --socket S status --json`` answers."""
    state = tmp_path / "pyipsec"
    daemon = pyipsec_factory(nat_topology.right, pyipsec_toml(
        side="right", state_dir=state, conn="py", local_addrs=[RIGHT_OUTER],
        proposals=SUITES[0].ike, esp_proposals=SUITES[0].esp), state_dir=state)
    status: dict[str, Any] = daemon.status()
    assert status["ike_sas"] == [] and status["child_sas"] == []
    assert [c["name"] for c in status["connections"]] == ["py"]
