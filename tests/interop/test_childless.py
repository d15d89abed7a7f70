"""Childless IKE SA initiation (RFC 6023) with strongSwan 5.9.8, both ways: the IKE_AUTH
exchange carries no Child SA, the first one follows in CREATE_CHILD_SA, and traffic
flows through it."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from .pyipsec_daemon import PyipsecDaemon, pyipsec_toml
from .strongswan import Charon, ConnSpec
from .topology import LEFT_INNER, RIGHT_INNER, RIGHT_OUTER, Topology

pytestmark = pytest.mark.interop

IKE = "aes256gcm16-prfsha256-x25519"
ESP = "aes256gcm16"


def test_pyipsec_initiates_childless_to_strongswan(
    nonat_topology: Topology, tmp_path: Path, charon_factory: Callable[..., Charon],
    pyipsec_factory: Callable[..., PyipsecDaemon],
) -> None:  # fmt: skip
    topo, state = nonat_topology, tmp_path / "py"
    charon = charon_factory(topo.right, ConnSpec(
        name="ss", side="right", local_addrs=RIGHT_OUTER, esp_proposals=ESP,
        ipv6_inner=False).render(), name="right")  # fmt: skip
    daemon = pyipsec_factory(topo.left, pyipsec_toml(
        side="left", state_dir=state, conn="py", remote_addrs=[RIGHT_OUTER], proposals=IKE,
        esp_proposals=ESP, ipv6_inner=False, extra_conn={"childless": "prefer"},
    ), state_dir=state)  # fmt: skip
    daemon.up("py", "net")
    charon.wait_for(lambda c: c.established("ss"), timeout=15)
    daemon.wait_for(lambda d: d.child_sas(), timeout=10)
    assert topo.ping(topo.left, RIGHT_INNER, count=2, source=LEFT_INNER) == (2, 2)
    log = charon.log()
    # charon saw an IKE_AUTH without SA/TS and a CREATE_CHILD_SA with them
    assert "parsed IKE_AUTH request 1 [ IDi N(INIT_CONTACT) IDr AUTH" in log, log[-4000:]
    assert "SA TSi TSr" not in _line(log, "parsed IKE_AUTH request 1"), log[-4000:]
    assert re.search(r"parsed CREATE_CHILD_SA request 2 \[.*SA No TSi TSr \]", log), log[-4000:]


def test_strongswan_initiates_childless_to_pyipsec(
    nonat_topology: Topology, tmp_path: Path, charon_factory: Callable[..., Charon],
    pyipsec_factory: Callable[..., PyipsecDaemon],
) -> None:  # fmt: skip
    topo, state = nonat_topology, tmp_path / "py"
    daemon = pyipsec_factory(topo.right, pyipsec_toml(
        side="right", state_dir=state, conn="py", local_addrs=[RIGHT_OUTER], proposals=IKE,
        esp_proposals=ESP, ipv6_inner=False,
    ), state_dir=state)  # fmt: skip
    charon = charon_factory(topo.left, ConnSpec(
        name="ss", side="left", remote_addrs=RIGHT_OUTER, esp_proposals=ESP, ipv6_inner=False,
        extra={"childless": "force"}).render(), name="left")  # fmt: skip
    charon.initiate("ss", "net")
    charon.wait_for(lambda c: c.established("ss"), timeout=15)
    daemon.wait_for(lambda d: d.child_sas(), timeout=10)
    assert topo.ping(topo.left, RIGHT_INNER, count=2, source=LEFT_INNER) == (2, 2)
    log = charon.log()
    # pyipsec announced it (charon: N(CHDLESS_SUP)); charon left the child out of IKE_AUTH
    assert "N(CHDLESS_SUP)" in _line(log, "parsed IKE_SA_INIT response 0"), log[-4000:]
    assert "SA TSi TSr" not in _line(log, "generating IKE_AUTH request 1"), log[-4000:]
    assert re.search(r"generating CREATE_CHILD_SA request 2 \[.*SA No TSi TSr \]", log)


def _line(log: str, start: str) -> str:
    return next((line for line in log.splitlines() if start in line), "")
