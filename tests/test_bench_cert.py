"""The certificate handshake benchmarks keep working: ``bench/bench_cert.py`` (in memory)
at a tiny size, ``bench/cert_loadgen.py``'s connections, and (needs root and network
namespaces) three certificate handshakes of ``cert_loadgen`` against the pyipsec
responder ``bench/bench_cert_load.py`` configures."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import bench_cert  # noqa: E402
import cert_loadgen  # noqa: E402
import loadgen  # noqa: E402
from pyipsec import pki  # noqa: E402


def test_in_memory_bench(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_cert.main(["--count", "2", "--modes", "ecdsa-p256,ed25519"]) == 0
    out = capsys.readouterr().out
    table = out[out.index("| mode"):]
    rows = {line.split("|")[1].strip(): line for line in table.splitlines()[2:]
            if line.startswith("| ")}
    assert list(rows) == ["psk", "ecdsa-p256", "ed25519"]  # psk added as the baseline
    assert rows["psk"].split("|")[4].strip() == "1.00"
    for mode in ("ecdsa-p256", "ed25519"):
        cells = [c.strip() for c in rows[mode].split("|")[1:-1]]
        assert float(cells[1]) > 0 and float(cells[4]) > 0 and float(cells[6]) > 0, cells


def _pem_key(kind: str) -> tuple[bytes, object]:
    k = pki.generate_key(kind)
    return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption()), k


def test_cert_loadgen_connections() -> None:
    ca_pem, ca_key = _pem_key("ecdsa-p256")
    ca = pki.make_ca(ca_key, "CN=t", now=cert_loadgen.wall_clock(0.0))  # type: ignore[arg-type]
    key_pem, _ = _pem_key("ed25519")
    conns = loadgen.build_connections(
        3, local="198.51.100.2", remote="192.0.2.2", psk=b"x",
        proposal="aes256gcm16-prfsha256-x25519", esp="aes256gcm16")
    out = cert_loadgen.with_certificates(
        conns, ca_cert=ca.public_bytes(serialization.Encoding.PEM), ca_key=ca_pem,
        key=key_pem)
    certs = [c.local_credentials.certificate for c in out if c.local_credentials]
    assert len({c.serial_number for c in certs if c}) == 3  # one certificate per tunnel
    for c in out:
        assert (c.local_auth, c.remote_auth, c.psk) == ("pubkey", "pubkey", b"")
        assert c.remote_trust is not None and c.remote_trust.anchors == (ca,)
        cert = c.local_credentials.certificate if c.local_credentials else None
        assert cert is not None and c.local_id in str(cert.extensions)


@pytest.mark.netns
def test_three_certificate_handshakes_against_pyipsec(tmp_path: Path) -> None:
    from tests.interop import topology

    reason = topology.missing_requirements()
    if reason:
        pytest.skip(reason)
    import bench_cert_load
    from tests.interop.pyipsec_daemon import PyipsecDaemon

    topo = topology.Topology(mode="nonat")
    daemon = None
    try:
        topo.up()
        base = bench_cert_load.make_pki(tmp_path / "pki", "ecdsa-p256")
        daemon = PyipsecDaemon(topo.right, bench_cert_load.pyipsec_cert_toml(
            base, proposal="aes256gcm16-prfsha256-x25519", esp="aes256gcm16",
            cookie_threshold=100), state_dir=base).start()
        proc = topo.exec(topo.left, [
            sys.executable, str(BENCH / "cert_loadgen.py"), "--local", topology.LEFT_OUTER,
            "--remote", topology.RIGHT_OUTER, "--tunnels", "3", "--inflight", "2",
            "--inner", topology.LEFT_INNER, "--remote-ts", topology.RIGHT_SUBNET,
            "--timeout", "30", "--ca-cert", str(base / "x509ca" / "ca.pem"),
            "--ca-key", str(base / "gen" / "ca.key"), "--key", str(base / "gen" / "client.key")],
            check=False, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        res = json.loads(proc.stdout.splitlines()[-1])
        assert res["established"] == 3 and res["failed"] == 0, res
        sas = daemon.request("status")["ike_sas"]
        assert len(sas) == 3
        assert all(sa["peer_cert"] and "load-" in str(sa["peer_cert"]) for sa in sas), sas
    finally:
        if daemon is not None:
            daemon.cleanup()
        topo.down()


def test_wire_report_ratios() -> None:
    """``bench_cert_load``'s table: handshakes per responder CPU-second and the ratios."""
    import argparse

    import bench_cert_load

    args = argparse.Namespace(tunnels=100, inflight=10, proposal="p", esp="e")

    def block(cpu: float) -> dict[str, object]:
        return {"established": 100, "tunnels": 100, "responder_cpu_s": cpu, "failed": 0}

    text = bench_cert_load.cert_report(args, {
        "psk": {"pyipsec": block(0.1), "strongswan": block(0.05)},
        "rsa3072": {"pyipsec": block(0.4), "strongswan": block(0.5)},
    })
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in text.splitlines() if line.startswith("| ") and "mode" not in line}
    assert rows["psk"] == ["1000", "2000", "0.50", "1.00", "0.50", "1.00", "1.00"]
    assert rows["rsa3072"] == ["250", "200", "1.25", "4.00", "5.00", "4.00", "10.00"]
