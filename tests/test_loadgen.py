"""The load generator of ``bench/bench_load.py`` (``bench/loadgen.py``) keeps working.

The first test checks the connections it builds (no root needed); the second sets up five
IKE SAs against a pyipsec daemon responder in a namespace pair (``nonat`` topology) and
skips cleanly without root or network namespaces.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import loadgen  # noqa: E402


def test_connections_are_distinct_peers() -> None:
    conns = loadgen.build_connections(
        3, local="198.51.100.2", remote="192.0.2.2", psk=b"k" * 20,
        proposal="aes256gcm16-prfsha256-x25519", esp="aes256gcm16")
    assert [c.name for c in conns] == ["conn-0", "conn-1", "conn-2"]
    assert len({c.local_id for c in conns}) == 3
    assert conns[1].local_id == "load-1@example.net"
    assert not any(c.initial_contact for c in conns)
    ts = {c.children[0].local_ts for c in conns}
    assert len(ts) == 3  # one UDP port per tunnel
    with pytest.raises(ValueError):
        loadgen.build_connections(2, local="198.51.100.2", remote="192.0.2.2", psk=b"k",
                                  proposal="aes256gcm16-prfsha256-x25519",
                                  esp="aes256gcm16", base_port=65535)


@pytest.mark.netns
def test_five_ike_sas_against_a_pyipsec_responder(tmp_path: Path) -> None:
    from tests.interop import topology

    reason = topology.missing_requirements()
    if reason:
        pytest.skip(reason)
    import bench_load
    from tests.interop.pyipsec_daemon import PyipsecDaemon
    from tests.interop.strongswan import TEST_PSK

    topo = topology.Topology(mode="nonat")
    daemon = None
    try:
        topo.up()
        state = tmp_path / "right"
        daemon = PyipsecDaemon(topo.right, bench_load.pyipsec_responder_toml(
            state, proposal="aes256gcm16-prfsha256-x25519", esp="aes256gcm16",
            cookie_threshold=100), state_dir=state).start()
        proc = topo.exec(topo.left, [
            sys.executable, str(BENCH / "loadgen.py"), "--local", topology.LEFT_OUTER,
            "--remote", topology.RIGHT_OUTER, "--tunnels", "5", "--inflight", "3",
            "--inner", topology.LEFT_INNER, "--remote-ts", topology.RIGHT_SUBNET,
            "--psk", TEST_PSK, "--timeout", "30"], check=False, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        res = json.loads(proc.stdout.splitlines()[-1])
        assert res["established"] == 5 and res["failed"] == 0, res
        sas = daemon.request("status")["ike_sas"]
        assert len(sas) == 5  # five distinct peers: none replaced another
    finally:
        if daemon is not None:
            daemon.cleanup()
        topo.down()
