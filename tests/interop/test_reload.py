"""``pyipsec reload`` between two pyipsec daemons (routed topology, raw ESP).

One test walks through the reload cases with one pair of daemons:

1. tunnel ``py`` up, a ping running through it; both daemons reload a configuration that
   adds a second connection ``py2`` (own identities, own secret, other inner subnets) and
   changes nothing about ``py``: ``py``'s IKE and Child SPIs stay the same and the ping
   loses nothing; ``py2`` can be brought up and carries traffic;
2. a configuration with errors is refused by ``pyipsec reload`` (non-zero exit, every
   error with its location) and nothing changes: same connections, same SPIs;
3. the left daemon reloads a configuration without ``py``: its SAs are deleted with a
   DELETE (the right daemon, which still has ``py`` configured, loses them too) and its
   routes through the TUN device are gone; ``py2`` is untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .pyipsec_daemon import (
    PyipsecDaemon,
    PyipsecError,
    connection_toml,
    pyipsec_toml,
    toml_text,
)
from .topology import (
    LEFT_INNER,
    RIGHT_INNER,
    RIGHT_OUTER,
    RIGHT_SUBNET,
    Topology,
)

pytestmark = pytest.mark.interop

IKE = "aes256gcm16-prfsha256-x25519"
ESP = "aes256gcm16-x25519"
# the second connection: own identities and secret, inner subnets of its own
L2_ID, R2_ID = "left-b.example.net", "right-b.example.net"
L2_SUBNET, R2_SUBNET = "203.0.113.128/26", "203.0.113.192/26"
L2_INNER, R2_INNER = "203.0.113.129", "203.0.113.193"

Factory = Callable[..., Any]


def _base(side: str, state: Path, *, with_py: bool = True, with_py2: bool = False) -> str:
    """The daemon TOML of ``side``: connection ``py`` (IPv4 inner only), optionally
    ``py2``; without ``py`` the daemon/secret tables stay and only ``py`` is dropped."""
    kw: dict[str, Any] = ({"remote_addrs": [RIGHT_OUTER]} if side == "left"
                          else {"local_addrs": [RIGHT_OUTER]})
    text = pyipsec_toml(side=side, state_dir=state, conn="py", proposals=IKE,
                        esp_proposals=ESP, ipv6_inner=False, **kw)
    if not with_py:
        kept, skip = [], False
        for line in text.splitlines():
            if line.startswith("["):
                skip = line.startswith("[connections.py.") or line == "[connections.py]"
            if not skip:
                kept.append(line)
        text = "\n".join(kept) + "\n"
    if with_py2:
        lid, rid = (L2_ID, R2_ID) if side == "left" else (R2_ID, L2_ID)
        lts, rts = (L2_SUBNET, R2_SUBNET) if side == "left" else (R2_SUBNET, L2_SUBNET)
        text += connection_toml(
            "py2", local_id=lid, remote_id=rid, proposals=IKE, esp_proposals=ESP,
            children={"net2": ([lts], [rts])},
            remote_addrs=[RIGHT_OUTER] if side == "left" else ["%any"],
            local_addrs=[RIGHT_OUTER] if side == "right" else ())
        text += toml_text({"secrets.py2": {"ids": [L2_ID, R2_ID],
                                           "secret": "second-connection-psk-0123456789"}})
    return text


def _write(d: PyipsecDaemon, text: str) -> None:
    d.config_path.write_text(text)
    d.config_path.chmod(0o600)


def _sas(d: PyipsecDaemon, conn: str) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(IKE SPI pairs, Child SPI pairs) of connection ``conn``."""
    st = d.status()
    ike = {(sa["spi_i"], sa["spi_r"]) for sa in st["ike_sas"] if sa.get("name") == conn}
    child = {(c["spi_in"], c["spi_out"]) for c in st["child_sas"] if c.get("conn") == conn}
    return ike, child


def _up(conn: str) -> Callable[[PyipsecDaemon], bool]:
    def check(d: PyipsecDaemon) -> bool:
        ike, child = _sas(d, conn)
        return bool(ike) and bool(child)
    return check


def test_reload_keeps_adds_refuses_removes(nonat_topology: Topology, tmp_path: Path,
                                           pyipsec_factory: Factory) -> None:
    topo = nonat_topology
    lstate, rstate = tmp_path / "left", tmp_path / "right"
    right = pyipsec_factory(topo.right, _base("right", rstate), state_dir=rstate)
    left = pyipsec_factory(topo.left, _base("left", lstate), state_dir=lstate)
    # the second connection's inner addresses (pinged with -I, so the TUN needs no address)
    for ns, addr in ((topo.left, L2_INNER), (topo.right, R2_INNER)):
        topo.exec(ns, ["ip", "addr", "add", f"{addr}/32", "dev", "inner0"])
    try:
        assert left.up("py", "net")["established"] is True
        right.wait_for(_up("py"), timeout=10)
        before = {d.name + side: _sas(d, "py") for side, d in (("l", left), ("r", right))}
        assert all(ike and child for ike, child in before.values()), before

        # 1. add py2 on both sides under a running ping: py untouched
        ping = topo.ping_background(topo.left, RIGHT_INNER, source=LEFT_INNER, interval=0.05)
        try:
            for d, side, state in ((right, "right", rstate), (left, "left", lstate)):
                _write(d, _base(side, state, with_py2=True))
                assert "reloaded: py, py2" in d.cli("reload")
            assert left.up("py2", "net2")["established"] is True
            right.wait_for(_up("py2"), timeout=10)
            topo.ping(topo.left, R2_INNER, count=2, source=L2_INNER)  # warm-up (ARP)
        finally:
            sent, got = ping.stop()
        assert sent >= 5 and got == sent, f"ping across the reload: {got}/{sent}"
        after = {d.name + side: _sas(d, "py") for side, d in (("l", left), ("r", right))}
        assert after == before, (before, after)
        assert topo.ping(topo.left, R2_INNER, count=2, source=L2_INNER) == (2, 2)
        assert topo.ping(topo.left, RIGHT_INNER, count=2, source=LEFT_INNER) == (2, 2)
        py2 = _sas(left, "py2")

        # 2. a broken file is refused with located errors; nothing changes
        broken = _base("left", lstate, with_py2=True).replace(
            "[connections.py2]\n", "[connections.py2]\nrekey_tim = 5\n").replace(
            f'esp_proposals = ["{ESP}"]', 'esp_proposals = ["aes999"]', 1)
        _write(left, broken)
        with pytest.raises(PyipsecError) as err:
            left.cli("reload")
        msg = str(err.value)
        assert "connections.py2.rekey_tim: unknown key" in msg, msg
        assert "connections.py.children.net.esp_proposals" in msg and "aes999" in msg, msg
        st = left.status()
        assert [c["name"] for c in st["connections"]] == ["py", "py2"]
        assert _sas(left, "py") == before[left.name + "l"] and _sas(left, "py2") == py2

        # 3. left drops py: DELETE sent, both sides lose py's SAs, py2 stays
        _write(left, _base("left", lstate, with_py=False, with_py2=True))
        assert "reloaded: py2" in left.cli("reload")
        for d in (left, right):
            d.wait_for(lambda x: _sas(x, "py") == (set(), set()), timeout=3, interval=0.05)
        assert _sas(left, "py2") == py2
        st = left.status()
        assert [c["name"] for c in st["connections"]] == ["py2"]
        assert RIGHT_SUBNET not in (st["tun"] or {}).get("routes", []), st["tun"]
        assert topo.ping(topo.left, R2_INNER, count=2, source=L2_INNER) == (2, 2)
        assert topo.ping(topo.left, RIGHT_INNER, count=1, timeout=0.5,
                         source=LEFT_INNER) == (1, 0)
    finally:
        for ns, addr in ((topo.left, L2_INNER), (topo.right, R2_INNER)):
            topo.exec(ns, ["ip", "addr", "del", f"{addr}/32", "dev", "inner0"], check=False)
