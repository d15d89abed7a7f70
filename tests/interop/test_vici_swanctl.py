"""strongSwan's own tools driving pyipsec over VICI, against a live tunnel to charon.

A pyipsec daemon (left namespace) starts with ``daemon.vici_socket`` set and no
connection in its TOML; charon (right namespace) answers.  Then, unchanged:

1. Debian's ``swanctl --load-all`` reads a real swanctl.conf + ``swanctl/`` directory
   (PSK) and loads the secret and the connection through ``load-shared``/``load-conn``;
2. ``swanctl --initiate --child`` brings the tunnel up, printing pyipsec's own log
   lines of that IKE SA as ``control-log``; traffic passes;
3. ``swanctl --list-sas`` shows it with the SPIs and addresses charon has;
4. ``swanctl --terminate --ike``; ``--counters --name`` counts that handshake and Delete;
   ``--load-conns`` with the connection gone unloads it;
5. the ``vici`` Python package does the same round (load-shared, load-conn, initiate
   with its control-log, list-sas, terminate, unload-conn);
6. a road-warrior gateway configured by ``swanctl --load-all`` alone (a ``pools``
   section and a connection using it): a strongSwan client gets its address from the
   pool loaded over VICI, ``swanctl --list-pools --leases`` and ``--list-sas`` show it;
7. the same with the gateway's certificate and EAP-MSCHAPv2 users from swanctl.conf
   (``secrets.eap-*``, ``remote.auth = eap-mschapv2``): a strongSwan EAP client;
   ``swanctl --list-certs`` shows the certificates it loaded.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .pyipsec_daemon import PyipsecDaemon, toml_text
from .strongswan import RIGHT_ID, Charon, ConnSpec, render_swanctl, swanctl_conf
from .test_eap_road_warrior import EAP_USER, PASSWORD, Pki, _swanctl_files
from .test_eap_road_warrior import client_conf as eap_client_conf
from .test_road_warrior import (
    DNS,
    FIRST,
    IKE,
    POOL,
    client_conf,
    leases,
    ping_from,
    strongswan_gateway_conf,
    wait_vips,
)
from .topology import LEFT_INNER, RIGHT_INNER, RIGHT_OUTER, RIGHT_SUBNET, Topology

pytestmark = pytest.mark.interop

SWANCTL = shutil.which("swanctl")
CONN = "vc"


def _daemon_toml(state: Path) -> str:
    """A daemon with the VICI socket and no connections (they come over VICI)."""
    return toml_text({
        "daemon": {"control_socket": str(state / "control.sock"),
                   "vici_socket": str(state / "charon.vici"),
                   "retransmit_tries": 3, "retransmit_timeout": 1.0, "retransmit_base": 1.5},
        "daemon.tun": {"name": "pyi0", "addresses": [f"{LEFT_INNER}/32"]},
        "daemon.log": {"default": "debug"},
    })


def _spec(name: str = CONN) -> ConnSpec:
    # mobike = no: pyipsec has no MOBIKE, and load-conn says so for "yes"
    return ConnSpec(name=name, side="left", remote_addrs=RIGHT_OUTER, mobike=False,
                    ipv6_inner=False)


def _swanctl_dir(tmp: Path, specs: list[ConnSpec]) -> Path:
    top = tmp / "swanctl"
    for sub in ("x509", "x509ca", "x509ocsp", "x509aa", "x509ac", "x509crl", "pubkey",
                "private", "rsa", "ecdsa", "bliss", "pkcs8", "pkcs12"):
        (top / sub).mkdir(parents=True, exist_ok=True)
    conf = top / "swanctl.conf"
    conf.write_text(render_swanctl(specs) if specs else "connections {\n}\n")
    return conf


def _swanctl(topo: Topology, sock: Path, *args: str, check: bool = True,
             ns: str | None = None) -> str:
    proc = topo.exec(ns or topo.left, ["swanctl", *args, "--uri", f"unix://{sock}"],
                     check=False, timeout=60)
    out = proc.stdout + proc.stderr
    if check and proc.returncode != 0:
        raise AssertionError(f"swanctl {' '.join(args)} failed ({proc.returncode}):\n{out}")
    return out


def _charon_child_spis(charon: Charon) -> set[tuple[str, str]]:
    """(spi-in, spi-out) of charon's Child SAs."""
    out = set()
    for sa in charon.list_sas().values():
        for child in (sa.get("child-sas") or {}).values():
            out.add((child["spi-in"], child["spi-out"]))
    return out


def _start(topo: Topology, tmp_path: Path, charon_factory: Callable[..., Charon],
           pyipsec_factory: Callable[..., PyipsecDaemon]) -> tuple[Charon, PyipsecDaemon]:
    charon = charon_factory(topo.right, ConnSpec(
        name="ss", side="right", local_addrs=RIGHT_OUTER, ipv6_inner=False).render(),
        name="right")
    state = tmp_path / "pyipsec"
    daemon = pyipsec_factory(topo.left, _daemon_toml(state), state_dir=state)
    assert daemon.status()["connections"] == []
    return charon, daemon


@pytest.mark.skipif(SWANCTL is None, reason="swanctl not installed")
def test_swanctl_load_all_initiate_list_terminate(
        nonat_topology: Topology, tmp_path: Path, charon_factory: Callable[..., Charon],
        pyipsec_factory: Callable[..., PyipsecDaemon]) -> None:
    topo = nonat_topology
    charon, daemon = _start(topo, tmp_path, charon_factory, pyipsec_factory)
    sock = daemon.state_dir / "charon.vici"
    conf = _swanctl_dir(tmp_path, [_spec()])

    out = _swanctl(topo, sock, "--load-all", "--noprompt", "--file", str(conf))
    assert "loaded ike secret 'ike-0'" in out, out
    assert "successfully loaded 1 connections, 0 unloaded" in out, out
    assert [c["name"] for c in daemon.status()["connections"]] == [CONN]

    # 2. initiate: the core's log lines of this IKE SA come back as control-log
    out = _swanctl(topo, sock, "--initiate", "--child", "net", "--timeout", "20")
    print(out)  # the control-log lines (pytest -s)
    assert "initiate completed successfully" in out, out
    assert re.search(rf"\[IKE\] IKE SA \d+ \({CONN}\): established with", out), out
    assert re.search(rf"IKE SA {CONN} #\d+ established", out), out
    charon.wait_for(lambda c: c.established("ss"), timeout=10)
    assert topo.ping(topo.left, RIGHT_INNER, count=3, source=LEFT_INNER)[1] >= 2

    # 3. list-sas: what charon sees, mirrored
    out = _swanctl(topo, sock, "--list-sas")
    assert re.search(rf"{CONN}: #\d+, ESTABLISHED, IKEv2", out), out
    # charon (kernel-libipsec) always fakes NAT-D: both sides float to 4500 and encapsulate
    assert re.search(rf"remote 'right.example.net' @ {RIGHT_OUTER}\[4500\]", out), out
    m = re.search(r"net: #\d+, reqid \d+, INSTALLED, TUNNEL-in-UDP, ESP:AES_GCM_16-256", out)
    assert m, out
    spi = re.search(r"in\s+([0-9a-f]{8}),.*\n\s+out\s+([0-9a-f]{8})", out)
    assert spi, out
    assert (spi.group(2), spi.group(1)) in _charon_child_spis(charon), out
    assert re.search(r"in\s+[0-9a-f]{8},\s+[1-9]\d* bytes", out), out  # the ping's bytes

    # 4. terminate, then unload through swanctl.conf losing the connection
    out = _swanctl(topo, sock, "--terminate", "--ike", CONN, "--timeout", "20")
    assert "terminate completed successfully" in out, out
    assert re.search(rf"deleting IKE_SA {CONN}\[\d+\]", out), out
    charon.wait_for(lambda c: not c.ike_sas("ss"), timeout=10)
    # the IKE counters of that connection: one handshake and one Delete, as initiator
    out = _swanctl(topo, sock, "--counters", "--name", CONN)
    counted = dict(re.findall(r"^\s*([a-z-]+)\s*: (\d+)$", out, re.M))
    for name in ("ike-init-out-req", "ike-init-in-resp", "ike-auth-out-req",
                 "ike-auth-in-resp", "info-out-req", "info-in-resp"):  # fmt: skip
        assert counted.get(name) == "1", out
    assert counted["invalid"] == "0" and counted["ike-init-in-req"] == "0", out
    assert daemon.status()["ike_sas"] == []
    conf = _swanctl_dir(tmp_path, [])
    out = _swanctl(topo, sock, "--load-conns", "--file", str(conf))
    assert "no connections found, 1 unloaded" in out, out
    assert daemon.status()["connections"] == []


def _vici_message(spec: ConnSpec) -> dict[str, Any]:
    """A swanctl.conf connection as the ``vici`` package sends it (strings, lists)."""
    def conv(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items() if x is not None}
        if isinstance(v, list):
            return [str(x) for x in v]
        if isinstance(v, bool):
            return "yes" if v else "no"
        return str(v)
    return {spec.name: conv(spec.connection())}


def test_vici_package_round(nonat_topology: Topology, tmp_path: Path,
                            charon_factory: Callable[..., Charon],
                            pyipsec_factory: Callable[..., PyipsecDaemon]) -> None:
    vici = pytest.importorskip("vici")
    topo = nonat_topology
    charon, daemon = _start(topo, tmp_path, charon_factory, pyipsec_factory)
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(daemon.state_dir / "charon.vici"))
    sess = vici.Session(s)
    try:
        from .strongswan import LEFT_ID, RIGHT_ID, TEST_PSK
        sess.load_shared({"id": "k", "type": "IKE", "data": TEST_PSK,
                          "owners": [LEFT_ID, RIGHT_ID]})
        assert sess.get_shared()["keys"] == [b"k"]
        sess.load_conn(_vici_message(_spec()))
        assert sess.get_conns()["conns"] == [CONN.encode()]
        logs = [m for m in sess.initiate({"child": "net", "timeout": 20000, "loglevel": 2})]
        lines = [m["msg"].decode() for m in logs]
        assert any("established with" in ln for ln in lines), lines
        sas = list(sess.list_sas({"ike": CONN}))
        assert len(sas) == 1
        ike = sas[0][CONN]
        assert ike["state"] == b"ESTABLISHED" and ike["remote-host"] == RIGHT_OUTER.encode()
        child = next(iter(ike["child-sas"].values()))
        assert (child["spi-out"].decode(), child["spi-in"].decode()) in \
            _charon_child_spis(charon)
        assert topo.ping(topo.left, RIGHT_INNER, count=2, source=LEFT_INNER)[1] >= 1
        res = list(sess.terminate({"ike": CONN, "timeout": 20000}))
        assert any("deleting IKE_SA" in m["msg"].decode() for m in res), res
        charon.wait_for(lambda c: not c.ike_sas("ss"), timeout=10)
        sess.unload_conn({"name": CONN})
        assert sess.get_conns()["conns"] == []
        with pytest.raises(vici.exception.CommandException, match="mobike"):
            sess.load_conn(_vici_message(ConnSpec(name="m", side="left", mobike=True)))
    finally:
        s.close()
    assert daemon.status()["connections"] == []


def _vici_gateway(topo: Topology, tmp_path: Path,
                  pyipsec_factory: Callable[..., PyipsecDaemon]) -> tuple[PyipsecDaemon, Path]:
    """pyipsec on the right with the VICI socket, no connections, no pools."""
    state = tmp_path / "gw"
    gw = pyipsec_factory(topo.right, toml_text({
        "daemon": {"control_socket": str(state / "control.sock"),
                   "vici_socket": str(state / "charon.vici")},
        "daemon.tun": {"name": "pyi0", "addresses": [f"{RIGHT_INNER}/32"]},
        "daemon.log": {"default": "debug"},
    }), state_dir=state)
    return gw, state / "charon.vici"


@pytest.mark.skipif(SWANCTL is None, reason="swanctl not installed")
def test_swanctl_configures_a_road_warrior_gateway(
        nonat_topology: Topology, tmp_path: Path, charon_factory: Callable[..., Charon],
        pyipsec_factory: Callable[..., PyipsecDaemon]) -> None:
    topo = nonat_topology
    gw, sock = _vici_gateway(topo, tmp_path, pyipsec_factory)
    conf = _swanctl_dir(tmp_path, [])
    conf.write_text(strongswan_gateway_conf())  # the swanctl.conf charon would run with
    out = _swanctl(topo, sock, "--load-all", "--file", str(conf), ns=topo.right)
    assert "loaded pool 'rw'" in out and "successfully loaded 1 pools, 0 unloaded" in out, out
    assert "successfully loaded 1 connections, 0 unloaded" in out, out

    charon = charon_factory(topo.left, client_conf([("carol", "carol@example.net")],
                                                   ipv6=False), name="carol")
    charon.initiate("carol", "net")
    assert wait_vips(charon, "carol", 1) == [FIRST]
    assert "processing INTERNAL_IP4_DNS attribute" in charon.log()
    out = _swanctl(topo, sock, "--list-pools", "--leases", ns=topo.right)
    lines = [" ".join(line.split()) for line in out.splitlines()]
    size = ipaddress.ip_network(POOL).num_addresses - 2
    assert f"rw {FIRST} 1 / 0 / {size}" in lines, out
    assert f"{FIRST} online 'carol@example.net'" in lines, out
    out = _swanctl(topo, sock, "--list-sas", ns=topo.right)
    assert re.search(rf"remote 'carol@example.net' @ [0-9.]+\[\d+\] \[{FIRST}\]", out), out
    assert ping_from(topo, FIRST, RIGHT_INNER) == (3, 3)
    # the client leaves: its lease goes offline; the pool can be unloaded again
    charon.terminate(ike="carol")
    gw.wait_for(lambda d: leases(d) == {FIRST: ("carol@example.net", "offline")}, timeout=10)
    conf.write_text(conf.read_text().split("pools {")[0])
    out = _swanctl(topo, sock, "--load-pools", "--file", str(conf), ns=topo.right)
    assert "no pools found, 1 unloaded" in out, out
    assert gw.request("pools")["pools"] == []


def _eap_gateway_conf() -> str:
    """A strongSwan road-warrior gateway: its certificate, EAP-MSCHAPv2 users, a pool."""
    return swanctl_conf({
        "connections": {"gw": {
            "version": 2, "local_addrs": RIGHT_OUTER, "proposals": IKE, "pools": "rw",
            "send_cert": "always", "rekey_time": "0s", "reauth_time": 0, "dpd_delay": "0s",
            "local": {"auth": "pubkey", "id": RIGHT_ID, "certs": "host.pem"},
            "remote": {"auth": "eap-mschapv2", "eap_id": "%any"},
            "children": {"net": {"mode": "tunnel", "local_ts": RIGHT_SUBNET,
                                 "esp_proposals": "aes256gcm16", "rekey_time": "0s"}},
        }},
        "pools": {"rw": {"addrs": POOL, "dns": DNS}},
        "secrets": {"eap-carol": {"id": EAP_USER, "secret": f'"{PASSWORD}"'}},
    })  # fmt: skip


@pytest.mark.skipif(SWANCTL is None, reason="swanctl not installed")
def test_swanctl_configures_an_eap_road_warrior_gateway(
        nonat_topology: Topology, tmp_path: Path, charon_factory: Callable[..., Charon],
        pyipsec_factory: Callable[..., PyipsecDaemon]) -> None:
    topo = nonat_topology
    gw, sock = _vici_gateway(topo, tmp_path, pyipsec_factory)
    pki = Pki()
    conf = _swanctl_dir(tmp_path / "gwconf", [])
    _swanctl_files(conf.parent, pki.gateway, pki.ca)
    conf.write_text(_eap_gateway_conf())
    out = _swanctl(topo, sock, "--load-all", "--file", str(conf), ns=topo.right)
    assert "loaded eap secret 'eap-carol'" in out and "loaded pool 'rw'" in out, out
    assert "loaded certificate from" in out, out
    assert "successfully loaded 1 connections, 0 unloaded" in out, out
    out = _swanctl(topo, sock, "--list-conns", ns=topo.right)
    assert "remote EAP_MSCHAPV2 authentication:" in out, out
    out = _swanctl(topo, sock, "--list-certs", ns=topo.right)  # what --load-all loaded
    assert "List of X.509 End Entity Certificates" in out and "has private key" in out, out
    assert "List of X.509 CA Certificates" in out, out

    client_dir = tmp_path / "carol"
    _swanctl_files(client_dir, None, pki.ca)
    charon = charon_factory(topo.left, None, name="carol", state_dir=tmp_path / "charon")
    charon.load_dir(eap_client_conf("eap-mschapv2"), client_dir)
    charon.initiate("carol", "net")
    assert wait_vips(charon, "carol", 1) == [FIRST]
    log = charon.log()
    assert "EAP method EAP_MSCHAPV2 succeeded, MSK established" in log, log[-3000:]
    assert "processing INTERNAL_IP4_DNS attribute" in log
    out = _swanctl(topo, sock, "--list-pools", "--leases", ns=topo.right)
    lines = [" ".join(line.split()) for line in out.splitlines()]
    assert f"{FIRST} online '{EAP_USER}'" in lines, out  # leased to the EAP identity
    assert ping_from(topo, FIRST, RIGHT_INNER) == (3, 3)
    charon.terminate(ike="carol")
    gw.wait_for(lambda d: not d.ike_sas(), timeout=10)
