"""strongSwan <-> strongSwan through the project's own topology: proves the harness.

IKE + Child SA up through the NAT (and without it), NAT detection flags as expected,
ping inner -> inner in both directions (IPv4 and IPv6), a Child SA rekey by each side with
the ping still answered, loss impairment, and a clean close (no SA left on either side).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

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

IKE = "aes256gcm16-prfsha256-x25519"
ESP = "aes256gcm16-x25519"


def _pair(topo: Topology, factory: Callable[..., Charon], **conn: Any) -> tuple[Charon, Charon]:
    right = factory(topo.right, ConnSpec(name="rw", side="right", local_addrs=RIGHT_OUTER,
                                         **conn).render(), name="right")
    left = factory(topo.left, ConnSpec(name="gcm", side="left", remote_addrs=RIGHT_OUTER,
                                       **conn).render(), name="left")
    return left, right


def _child_spis(charon: Charon, ike: str) -> set[str]:
    sa = charon.established(ike)
    assert sa is not None
    return {c["spi-in"] for c in sa["child-sas"].values() if c["state"] == "INSTALLED"}


def test_sanity_nat(nat_topology: Topology, charon_factory: Callable[..., Charon]) -> None:
    """Through the NAT: up, NAT flags, ping both ways, rekey by each side, clean close."""
    topo = nat_topology
    left, right = _pair(topo, charon_factory, proposals=IKE, esp_proposals=ESP)
    left.initiate("gcm", "net")
    sa_l = left.established("gcm")
    sa_r = right.wait_for(lambda c: c.established("rw"), timeout=5)
    assert sa_l is not None
    assert sa_l["nat-local"] == "yes" and sa_r["nat-remote"] == "yes"
    assert sa_r["remote-host"] == NAT_WAN and sa_r["remote-port"] == "4500"
    assert sa_l["encr-alg"] == "AES_GCM_16" and sa_l["dh-group"] == "CURVE_25519"
    child = next(iter(sa_l["child-sas"].values()))
    assert child["encap"] == "yes" and child["mode"] == "TUNNEL"

    assert topo.ping(topo.left, RIGHT_INNER) == (3, 3)
    assert topo.ping(topo.right, LEFT_INNER) == (3, 3)
    assert topo.ping(topo.left, RIGHT_INNER6) == (3, 3)
    assert topo.ping(topo.right, LEFT_INNER6) == (3, 3)

    for rekeyer, other, name in ((left, right, "rw"), (right, left, "gcm")):
        before = _child_spis(other, name)
        rekeyer.rekey(child="net")
        other.wait_for(lambda c, b=before, n=name: (c.established(n) is not None
                                                    and _child_spis(c, n).isdisjoint(b)),
                       timeout=10)
        assert topo.ping(topo.left, RIGHT_INNER, count=2) == (2, 2)

    left.terminate(ike="gcm")
    right.wait_for(lambda c: not c.list_sas(), timeout=5)
    assert not left.list_sas()


def test_sanity_nonat_and_loss(nonat_topology: Topology,
                               charon_factory: Callable[..., Charon]) -> None:
    """Without NAT the responder sees the real address; 100 % loss breaks the tunnel."""
    topo = nonat_topology
    left, right = _pair(topo, charon_factory, proposals="aes256-sha256-modp2048",
                        esp_proposals="aes256-sha256-modp2048")
    left.initiate("gcm", "net")
    sa_r = right.wait_for(lambda c: c.established("rw"), timeout=5)
    assert sa_r["remote-host"] == topo.right_sees_left_as == "198.51.100.2"
    assert topo.ping(topo.left, RIGHT_INNER) == (3, 3)
    topo.impair_loss(100)
    assert topo.ping(topo.left, RIGHT_INNER, count=2, timeout=0.5)[1] == 0
    topo.clear_impairments()
    assert topo.ping(topo.left, RIGHT_INNER, count=2) == (2, 2)
    left.terminate(ike="gcm")
    right.wait_for(lambda c: not c.list_sas(), timeout=5)
