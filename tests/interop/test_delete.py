"""INFORMATIONAL DELETE between pyipsec and strongSwan 5.9.8, through the NAT topology.

For each role of pyipsec (initiator behind the NAT, or responder on the right):

1. ``swanctl --terminate --child``: strongSwan deletes the Child SA; pyipsec removes it
   (data plane and core) and keeps the IKE SA; traffic stops.
2. The child is created again on the same IKE SA (``pyipsec up``: CREATE_CHILD_SA from
   pyipsec in either role); traffic flows again.
3. ``swanctl --terminate --ike``: pyipsec drops the IKE SA and its child; traffic stops.
4. The tunnel is brought up again by the initiator, then ``pyipsec down``: strongSwan
   has no SA left, nor has pyipsec; traffic stops.

"Promptly" is measured: pyipsec must reflect a peer's DELETE within ``PROMPT`` seconds
(the time is printed).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .pyipsec_daemon import PyipsecDaemon, pyipsec_toml
from .strongswan import Charon, ConnSpec
from .topology import LEFT_INNER, RIGHT_INNER, RIGHT_OUTER, Topology

pytestmark = pytest.mark.interop

IKE = "aes256gcm16-prfsha256-x25519"
ESP = "aes256gcm16-x25519"
PROMPT = 2.0  # seconds: a DELETE is one round trip; allow status polling and a slow box


def _py_up(d: PyipsecDaemon) -> bool:
    return (any(str(sa.get("state", "")).upper() == "ESTABLISHED" for sa in d.ike_sas())
            and bool(d.child_sas()))


def _ss_children(c: Charon) -> list[dict[str, Any]]:
    sa = c.list_sas().get("ss")
    return [ch for ch in (sa or {}).get("child-sas", {}).values()
            if ch.get("state") == "INSTALLED"]


def _timed(d: PyipsecDaemon, predicate: Callable[[PyipsecDaemon], Any]) -> float:
    t0 = time.monotonic()
    d.wait_for(predicate, timeout=PROMPT + 3, interval=0.05)
    return time.monotonic() - t0


def _ping_works(topo: Topology) -> bool:
    sent, got = topo.ping(topo.left, RIGHT_INNER, count=2, interval=0.2, source=LEFT_INNER)
    return sent == 2 and got == 2


def _ping_fails(topo: Topology) -> bool:
    sent, got = topo.ping(topo.left, RIGHT_INNER, count=2, interval=0.2, timeout=0.5,
                          source=LEFT_INNER)
    return sent == 2 and got == 0


@pytest.mark.parametrize("pyipsec_side", ["left", "right"],
                         ids=["pyipsec-initiator", "pyipsec-responder"])
def test_delete_both_ways(nat_topology: Topology, pyipsec_side: str, tmp_path: Path,
                          charon_factory: Callable[..., Charon],
                          pyipsec_factory: Callable[..., PyipsecDaemon]) -> None:
    """Child and IKE DELETEs from strongSwan remove the SAs in pyipsec promptly, pyipsec's
    ``down`` removes them in strongSwan; no SA is left anywhere and traffic stops."""
    topo = nat_topology
    state = tmp_path / "pyipsec"
    if pyipsec_side == "left":
        charon = charon_factory(topo.right, ConnSpec(
            name="ss", side="right", local_addrs=RIGHT_OUTER, proposals=IKE,
            esp_proposals=ESP).render(), name="right")
        daemon = pyipsec_factory(topo.left, pyipsec_toml(
            side="left", state_dir=state, conn="py", remote_addrs=[RIGHT_OUTER],
            proposals=IKE, esp_proposals=ESP), state_dir=state)
    else:
        daemon = pyipsec_factory(topo.right, pyipsec_toml(
            side="right", state_dir=state, conn="py", local_addrs=[RIGHT_OUTER],
            proposals=IKE, esp_proposals=ESP), state_dir=state)
        charon = charon_factory(topo.left, ConnSpec(
            name="ss", side="left", remote_addrs=RIGHT_OUTER, proposals=IKE,
            esp_proposals=ESP).render(), name="left")

    def establish() -> None:
        if pyipsec_side == "left":
            daemon.up("py", "net")
        else:
            charon.initiate("ss", "net")
        charon.wait_for(lambda c: c.established("ss"), timeout=10)
        daemon.wait_for(_py_up, timeout=10)
        assert _ping_works(topo)

    establish()
    (ike0,) = daemon.ike_sas()

    # 1. strongSwan deletes the Child SA: gone in pyipsec, the IKE SA stays
    charon.terminate(child="net")
    t_child = _timed(daemon, lambda d: not d.child_sas())
    (ike,) = daemon.ike_sas()
    assert ike["spi_i"] == ike0["spi_i"] and ike["children"] == [], ike
    assert not _ss_children(charon)
    assert _ping_fails(topo)

    # 2. a new child on the same IKE SA (CREATE_CHILD_SA from pyipsec)
    daemon.up("py", "net")
    charon.wait_for(lambda c: _ss_children(c), timeout=10)
    assert _ping_works(topo)
    (ike,) = daemon.ike_sas()
    assert ike["spi_i"] == ike0["spi_i"] and len(ike["children"]) == 1

    # 3. strongSwan deletes the IKE SA: pyipsec has nothing left
    charon.terminate(ike="ss")
    t_ike = _timed(daemon, lambda d: not d.ike_sas() and not d.child_sas())
    assert not charon.list_sas()
    assert _ping_fails(topo)

    # 4. up again, then pyipsec deletes the IKE SA
    establish()
    res = daemon.down("py")
    assert res["terminated"] == 1, res
    t0 = time.monotonic()
    charon.wait_for(lambda c: not c.list_sas(), timeout=PROMPT + 3, interval=0.05)
    t_down = time.monotonic() - t0
    daemon.wait_for(lambda d: not d.ike_sas() and not d.child_sas(), timeout=5)
    assert _ping_fails(topo)
    assert not charon.list_sas() and daemon.status()["child_sas"] == []

    print(f"DELETE ({pyipsec_side}): child seen by pyipsec after {t_child:.2f}s, IKE after "
          f"{t_ike:.2f}s; pyipsec down -> strongSwan empty after {t_down:.2f}s")
    assert max(t_child, t_ike, t_down) < PROMPT
