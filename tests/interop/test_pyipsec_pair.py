"""pyipsec <-> pyipsec through the NAT topology (left initiator behind the NAT).

One test walks one tunnel through its life, so that only two daemons start:

1. establishment; NAT detection between two pyipsec daemons (neither fakes NAT-D: the
   initiator sees itself behind the NAT, the responder sees the initiator behind it), both
   on port 4500; ping both ways over IPv4 and IPv6;
2. Child SA rekeys started by the initiator and by the responder (control ``rekey``),
   each under a running ping: new SPIs on both sides, the old SA gone, SPIs crosswise
   equal, at most one ping lost; an IKE SA rekey keeps the child working;
3. ``pyipsec down`` on the initiator: nothing left on either side, traffic stops;
4. SIGTERM on the initiator sends DELETE: the responder's status empties promptly; and the
   same the other way round (SIGTERM on the responder, with a fresh initiator).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .pyipsec_daemon import PyipsecDaemon, pyipsec_toml
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
PROMPT = 2.0  # seconds until a peer's DELETE shows in status


def _up(d: PyipsecDaemon) -> bool:
    return (any(str(sa.get("state", "")).upper() == "ESTABLISHED" for sa in d.ike_sas())
            and bool(d.child_sas()))


def _empty(d: PyipsecDaemon) -> bool:
    st = d.status()
    return not st["ike_sas"] and not st["child_sas"]


def _spis(d: PyipsecDaemon) -> set[tuple[str, str]]:
    return {(c["spi_in"], c["spi_out"]) for c in d.child_sas()}


def _ping_both(topo: Topology, count: int = 2) -> None:
    for ns, src, dst in ((topo.left, LEFT_INNER, RIGHT_INNER),
                         (topo.right, RIGHT_INNER, LEFT_INNER),
                         (topo.left, LEFT_INNER6, RIGHT_INNER6),
                         (topo.right, RIGHT_INNER6, LEFT_INNER6)):
        assert topo.ping(ns, dst, count=count, source=src) == (count, count), f"{src} -> {dst}"


def _ping_fails(topo: Topology) -> bool:
    return topo.ping(topo.left, RIGHT_INNER, count=2, interval=0.2, timeout=0.5,
                     source=LEFT_INNER) == (2, 0)


def _rekey_under_ping(topo: Topology, left: PyipsecDaemon, right: PyipsecDaemon,
                      by: PyipsecDaemon) -> tuple[int, int]:
    """Rekey the child from ``by`` while pinging; check the SPIs; return (sent, got)."""
    old_l, old_r = _spis(left), _spis(right)
    ping = topo.ping_background(topo.left, RIGHT_INNER, source=LEFT_INNER, interval=0.05)
    try:
        time.sleep(0.3)
        assert by.rekey_child("py", "net"), "the control socket has no rekey command"
        # done when each side has exactly one child, a new one, and they match crosswise
        for d, old in ((left, old_l), (right, old_r)):
            d.wait_for(lambda x, old=old: len(_spis(x)) == 1 and _spis(x).isdisjoint(old),
                       timeout=10, interval=0.05)
        time.sleep(0.3)
    finally:
        sent, got = ping.stop()
    ((l_in, l_out),) = _spis(left)
    ((r_in, r_out),) = _spis(right)
    assert (l_in, l_out) == (r_out, r_in)
    assert sent > 0 and sent - got <= 1, f"ping across the rekey: {got}/{sent}"
    return sent, got


def test_pyipsec_pair_lifecycle(nat_topology: Topology, tmp_path: Path,
                                pyipsec_factory: Callable[..., PyipsecDaemon]) -> None:
    """Setup through the NAT, traffic, rekeys, ``down`` and DELETE on SIGTERM (both sides)."""
    topo = nat_topology

    def start_left(tag: str) -> PyipsecDaemon:
        state = tmp_path / f"left-{tag}"
        return pyipsec_factory(topo.left, pyipsec_toml(
            side="left", state_dir=state, conn="py", remote_addrs=[RIGHT_OUTER],
            proposals=IKE, esp_proposals=ESP), state_dir=state)

    rstate = tmp_path / "right"
    right = pyipsec_factory(topo.right, pyipsec_toml(
        side="right", state_dir=rstate, conn="py", local_addrs=[RIGHT_OUTER],
        proposals=IKE, esp_proposals=ESP), state_dir=rstate)
    left = start_left("1")

    # 1. setup and NAT detection between two pyipsec daemons
    res: dict[str, Any] = left.up("py", "net")
    assert res["established"] is True
    right.wait_for(_up, timeout=10)
    (li,) = left.ike_sas()
    (ri,) = right.ike_sas()
    assert (li["spi_i"], li["spi_r"]) == (ri["spi_i"], ri["spi_r"])
    assert li["role"] == "initiator" and ri["role"] == "responder"
    assert li["nat"] == {**li["nat"], "local": True, "remote": False, "encap": True}, li["nat"]
    assert ri["nat"] == {**ri["nat"], "local": False, "remote": True, "encap": True}, ri["nat"]
    assert li["local"]["port"] == 4500 and li["remote"] == {**li["remote"], "port": 4500}
    assert ri["remote"]["address"] == NAT_WAN and ri["local"]["port"] == 4500
    (lc,) = left.child_sas()
    (rc,) = right.child_sas()
    assert lc["encap"] is True and rc["encap"] is True
    assert (lc["spi_in"], lc["spi_out"]) == (rc["spi_out"], rc["spi_in"])
    _ping_both(topo)

    # 2. child rekeys from each side under ping, then an IKE rekey
    r1 = _rekey_under_ping(topo, left, right, by=left)
    r2 = _rekey_under_ping(topo, left, right, by=right)
    print(f"pyipsec pair child rekeys: initiator-started {r1[1]}/{r1[0]}, "
          f"responder-started {r2[1]}/{r2[0]} pings answered")
    assert left.rekey_ike("py")
    left.wait_for(lambda d: [sa for sa in d.ike_sas() if sa["spi_i"] != li["spi_i"]
                             and str(sa["state"]).upper() == "ESTABLISHED"]
                  and len(d.ike_sas()) == 1, timeout=10, interval=0.05)
    right.wait_for(lambda d: len(d.ike_sas()) == 1
                   and d.ike_sas()[0]["spi_i"] != li["spi_i"], timeout=5, interval=0.05)
    (li2,) = left.ike_sas()
    assert len(li2["children"]) == 1, li2
    _ping_both(topo, count=1)

    # 3. down from the initiator
    assert left.down("py")["terminated"] == 1
    right.wait_for(_empty, timeout=PROMPT + 3, interval=0.05)
    left.wait_for(_empty, timeout=5, interval=0.05)
    assert _ping_fails(topo)

    # 4a. SIGTERM on the initiator: its DELETE empties the responder
    left.up("py", "net")
    right.wait_for(_up, timeout=10)
    t0 = time.monotonic()
    left.stop()  # returns once the daemon has exited (it waits for the DELETE answers)
    right.wait_for(_empty, timeout=PROMPT + 3, interval=0.05)
    t_left = time.monotonic() - t0

    # 4b. SIGTERM on the responder (a fresh initiator): its DELETE empties the initiator
    left2 = start_left("2")
    left2.up("py", "net")
    right.wait_for(_up, timeout=10)
    _ping_both(topo, count=1)
    t0 = time.monotonic()
    right.stop()
    left2.wait_for(_empty, timeout=PROMPT + 3, interval=0.05)
    t_right = time.monotonic() - t0
    print(f"SIGTERM -> peer's status empty: initiator stopped {t_left:.2f}s, "
          f"responder stopped {t_right:.2f}s")
    assert _ping_fails(topo)
    assert max(t_left, t_right) < PROMPT
