"""RFC 7383 IKE fragmentation between pyipsec and strongSwan 5.9.8.

Both ends use a tiny fragment size (strongSwan ``charon.fragment_size``, pyipsec
``fragment_size``) so that IKE_AUTH is fragmented in both directions; the SA must come
up with traffic flowing, and strongSwan's log must show that it split and reassembled
IKE messages.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from .pyipsec_daemon import PyipsecDaemon, pyipsec_toml
from .strongswan import Charon, ConnSpec
from .topology import LEFT_INNER, RIGHT_INNER, RIGHT_OUTER, Topology

pytestmark = pytest.mark.interop

IKE = "aes256gcm16-prfsha256-x25519"
ESP = "aes256gcm16-x25519"
FRAGMENT_SIZE = 256  # pyipsec's (the loader's minimum): its IKE_AUTH response is ~300
SS_CONF = "charon {\n  fragment_size = 300\n}\n"


def _py_up(d: PyipsecDaemon) -> bool:
    return (any(str(sa.get("state", "")).upper() == "ESTABLISHED" for sa in d.ike_sas())
            and bool(d.child_sas()))


@pytest.mark.parametrize("pyipsec_side", ["left", "right"],
                         ids=["pyipsec-initiator", "pyipsec-responder"])
def test_fragmented_ike_auth(nat_topology: Topology, pyipsec_side: str, tmp_path: Path,
                             charon_factory: Callable[..., Charon],
                             pyipsec_factory: Callable[..., PyipsecDaemon]) -> None:
    topo = nat_topology
    state = tmp_path / "pyipsec"
    extra = {"fragment_size": FRAGMENT_SIZE}
    if pyipsec_side == "left":
        charon = charon_factory(topo.right, ConnSpec(
            name="ss", side="right", local_addrs=RIGHT_OUTER, proposals=IKE,
            esp_proposals=ESP).render(), name="right", extra_conf=SS_CONF)
        daemon = pyipsec_factory(topo.left, pyipsec_toml(
            side="left", state_dir=state, conn="py", remote_addrs=[RIGHT_OUTER],
            proposals=IKE, esp_proposals=ESP, extra_conn=extra), state_dir=state)
        daemon.up("py", "net")
    else:
        daemon = pyipsec_factory(topo.right, pyipsec_toml(
            side="right", state_dir=state, conn="py", local_addrs=[RIGHT_OUTER],
            proposals=IKE, esp_proposals=ESP, extra_conn=extra), state_dir=state)
        charon = charon_factory(topo.left, ConnSpec(
            name="ss", side="left", remote_addrs=RIGHT_OUTER, proposals=IKE,
            esp_proposals=ESP).render(), name="left", extra_conf=SS_CONF)
        charon.initiate("ss", "net")
    charon.wait_for(lambda c: c.established("ss"), timeout=15)
    daemon.wait_for(_py_up, timeout=15)
    sent, got = topo.ping(topo.left, RIGHT_INNER, count=2, interval=0.2, source=LEFT_INNER)
    assert (sent, got) == (2, 2)
    log = charon.log()
    assert "splitting IKE message" in log, charon.tail()
    assert "reassembled fragmented IKE message" in log, charon.tail()
