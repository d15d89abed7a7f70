"""EAP in IKE_AUTH (RFC 7296 §2.16) between pyipsec and strongSwan 5.9.8, both roles,
through the NAT topology: EAP-MD5 (no MSK: the final AUTH payloads use SK_pi/SK_pr) and
EAP-MSCHAPv2 (MSK), the gateway authenticating itself with the PSK.

(a) a strongSwan road warrior (left, behind the NAT) authenticates with EAP to a
    pyipsec gateway, ``remote.eap_id = %any`` (EAP-Identity first); inner ping;
(b) pyipsec as the EAP client of a strongSwan gateway; inner ping;
(c) a wrong password is refused by the pyipsec gateway with EAP-Failure (charon's
    INFORMATIONAL N(AUTHENTICATION_FAILED) frees the gateway's SA at once);
(d) EAP-TLS (RFC 5216) both roles, with the gateway signing IKE with the PSK, and
    EAP-only (RFC 5998: no AUTH of the gateway before EAP, only the MSK-based one).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .pyipsec_daemon import PyipsecDaemon, pyipsec_toml, toml_text
from .strongswan import LEFT_ID, RIGHT_ID, TEST_PSK, Charon, available_plugins, swanctl_conf
from .topology import (
    LEFT_INNER,
    LEFT_SUBNET,
    RIGHT_INNER,
    RIGHT_OUTER,
    RIGHT_SUBNET,
    Topology,
)

pytestmark = pytest.mark.interop

IKE = "aes256gcm16-prfsha256-x25519"
ESP = "aes256gcm16"
USER, PASSWORD = "carol", "carol-eap-password-42"
METHODS = ["eap-md5", "eap-mschapv2"]


def _need(method: str) -> None:
    if method not in available_plugins():
        pytest.skip(f"strongSwan's {method} plugin is not installed")


def _pyipsec(side: str, state: Path, method: str, **kw: Any) -> str:
    """pyipsec's TOML: the gateway (right) verifies ``method``, the client (left) uses it."""
    text = pyipsec_toml(side=side, state_dir=state, conn="rw", proposals=IKE,
                        esp_proposals=ESP, ipv6_inner=False, **kw)  # fmt: skip
    if side == "right":
        text = text.replace(f'[connections.rw.remote]\nauth = "psk"\nid = "{LEFT_ID}"',
                            f'[connections.rw.remote]\nauth = "{method}"\nid = "%any"\n'
                            'eap_id = "%any"')  # fmt: skip
    else:
        text = text.replace('[connections.rw.local]\nauth = "psk"',
                            f'[connections.rw.local]\nauth = "{method}"\neap_id = "{USER}"')
    assert f'auth = "{method}"' in text
    return text + toml_text({"secrets.eap-carol": {"id": USER, "secret": PASSWORD}})


def _strongswan(side: str, method: str, password: str = PASSWORD) -> str:
    return swanctl_conf({
        "connections": {"rw": _ss_conn(side, method)},
        "secrets": {
            "ike-gw": {"id-a": LEFT_ID, "id-b": RIGHT_ID, "secret": f'"{TEST_PSK}"'},
            "eap-carol": {"id": USER, "secret": f'"{password}"'},
        },
    })  # fmt: skip


def _ss_conn(side: str, method: str) -> dict[str, Any]:
    """charon's connection: the road warrior (left) or the gateway (right)."""
    if side == "left":  # the road warrior
        local = {"auth": method, "id": LEFT_ID, "eap_id": USER}
        remote = {"auth": "psk", "id": RIGHT_ID}
        addrs = {"remote_addrs": RIGHT_OUTER}
        ts = {"local_ts": LEFT_SUBNET, "remote_ts": RIGHT_SUBNET}
    else:  # the gateway
        local = {"auth": "psk", "id": RIGHT_ID}
        remote = {"auth": method, "id": "%any", "eap_id": "%any"}
        addrs = {"local_addrs": RIGHT_OUTER}
        ts = {"local_ts": RIGHT_SUBNET, "remote_ts": LEFT_SUBNET}
    return {
        "version": 2, **addrs, "proposals": IKE, "rekey_time": "0s", "reauth_time": 0,
        "dpd_delay": "0s", "local": local, "remote": remote,
        "children": {"net": {"mode": "tunnel", **ts, "esp_proposals": ESP,
                             "rekey_time": "0s"}},
    }  # fmt: skip


def _up(d: PyipsecDaemon) -> bool:
    return any(str(s.get("state", "")).lower() == "established" for s in d.ike_sas())


@pytest.mark.parametrize("method", METHODS)
def test_strongswan_client_to_pyipsec_gateway(
    method: str, nat_topology: Topology, tmp_path: Path,
    charon_factory: Callable[..., Charon], pyipsec_factory: Callable[..., PyipsecDaemon],
) -> None:
    _need(method)
    topo, state = nat_topology, tmp_path / "gw"
    gw = pyipsec_factory(topo.right, _pyipsec("right", state, method,
                                              local_addrs=[RIGHT_OUTER]), state_dir=state)
    charon = charon_factory(topo.left, _strongswan("left", method), name="carol")
    charon.initiate("rw", "net")
    sa = charon.wait_for(lambda c: c.established("rw"), timeout=20)
    assert sa is not None
    gw.wait_for(_up, timeout=10)
    (ike,) = gw.ike_sas()
    assert ike["remote"]["id"] == USER  # the EAP identity (§2.16: the authenticated one)
    assert method in ike.get("peer_auth", "")
    assert topo.ping(topo.left, RIGHT_INNER, count=3, source=LEFT_INNER) == (3, 3)
    log = charon.log()
    assert "EAP method" in log and "succeeded" in log
    assert "authentication of 'right.example.net' with pre-shared key successful" in log


@pytest.mark.parametrize("method", METHODS)
def test_pyipsec_client_to_strongswan_gateway(
    method: str, nat_topology: Topology, tmp_path: Path,
    charon_factory: Callable[..., Charon], pyipsec_factory: Callable[..., PyipsecDaemon],
) -> None:
    _need(method)
    topo, state = nat_topology, tmp_path / "client"
    charon = charon_factory(topo.right, _strongswan("right", method), name="gw")
    client = pyipsec_factory(topo.left, _pyipsec("left", state, method,
                                                 remote_addrs=[RIGHT_OUTER]), state_dir=state)
    client.up("rw", "net")
    client.wait_for(_up, timeout=20)
    sa = charon.wait_for(lambda c: c.established("rw"), timeout=10)
    assert sa is not None and sa.get("remote-eap-id") == USER
    assert topo.ping(topo.left, RIGHT_INNER, count=3, source=LEFT_INNER) == (3, 3)


def test_wrong_password_refused_by_pyipsec_gateway(
    nat_topology: Topology, tmp_path: Path,
    charon_factory: Callable[..., Charon], pyipsec_factory: Callable[..., PyipsecDaemon],
) -> None:
    _need("eap-mschapv2")
    topo, state = nat_topology, tmp_path / "gw"
    gw = pyipsec_factory(topo.right, _pyipsec("right", state, "eap-mschapv2",
                                              local_addrs=[RIGHT_OUTER]), state_dir=state)
    charon = charon_factory(topo.left, _strongswan("left", "eap-mschapv2", "wrong"),
                            name="carol")
    charon.swanctl("--initiate", "--ike", "rw", "--child", "net", check=False)
    charon.wait_log(r"EAP_MSCHAPV2 method failed|received EAP_FAILURE", timeout=20)
    assert charon.established("rw") is None
    # charon reports its failure in an INFORMATIONAL N(AUTHENTICATION_FAILED) (§2.21.2):
    # the gateway frees the half-open SA at once, not at the half-open timeout
    gw.wait_for(lambda d: not d.ike_sas(), timeout=5)
    assert "gave up the EAP authentication" in gw.tail(200)



# -- EAP-TLS (RFC 5216): certificates inside EAP; the gateway signs IKE with the PSK -------


@pytest.mark.parametrize("eap_only", [False, True], ids=["gateway-psk", "eap-only"])
@pytest.mark.parametrize("pyipsec_side", ["right", "left"],
                         ids=["pyipsec-gateway", "pyipsec-client"])
def test_eap_tls(
    pyipsec_side: str, eap_only: bool, nat_topology: Topology, tmp_path: Path,
    charon_factory: Callable[..., Charon], pyipsec_factory: Callable[..., PyipsecDaemon],
) -> None:
    from .test_certificates import _make_pki, write_swanctl_dirs

    _need("eap-tls")
    topo = nat_topology
    left, right = _make_pki("ecdsa-p256")
    py_creds, ss_creds = (right, left) if pyipsec_side == "right" else (left, right)
    state, swan = tmp_path / "pyipsec", tmp_path / "swanctl"
    write_swanctl_dirs(state, py_creds, py_creds.ca)
    write_swanctl_dirs(swan, ss_creds, ss_creds.ca)
    certs = '\ncerts = ["host.pem"]'
    if pyipsec_side == "right":
        toml = pyipsec_toml(side="right", state_dir=state, conn="rw", proposals=IKE,
                            esp_proposals=ESP, ipv6_inner=False, local_addrs=[RIGHT_OUTER])
        own = "eap-tls" if eap_only else "psk"
        toml = toml.replace('[connections.rw.local]\nauth = "psk"',
                            f'[connections.rw.local]\nauth = "{own}"' + certs)
        toml = toml.replace('[connections.rw.remote]\nauth = "psk"',
                            '[connections.rw.remote]\nauth = "eap-tls"')
        conn = _ss_conn("left", "eap-tls")
        conn["local"] = {"auth": "eap-tls", "id": LEFT_ID, "certs": "host.pem"}
        if eap_only:
            conn["remote"] = {"auth": "eap-tls", "id": RIGHT_ID}
    else:
        toml = pyipsec_toml(side="left", state_dir=state, conn="rw", proposals=IKE,
                            esp_proposals=ESP, ipv6_inner=False, remote_addrs=[RIGHT_OUTER])
        toml = toml.replace('[connections.rw.local]\nauth = "psk"',
                            '[connections.rw.local]\nauth = "eap-tls"' + certs)
        if eap_only:
            toml = toml.replace('[connections.rw.remote]\nauth = "psk"',
                                '[connections.rw.remote]\nauth = "eap-tls"')
        conn = _ss_conn("right", "eap-tls")
        own = "eap-tls" if eap_only else "psk"
        conn["local"] = {"auth": own, "id": RIGHT_ID, "certs": "host.pem"}
        conn["remote"] = {"auth": "eap-tls", "id": "%any"}
    conf = swanctl_conf({"connections": {"rw": conn}, "secrets": {
        "ike-gw": {"id-a": LEFT_ID, "id-b": RIGHT_ID, "secret": f'"{TEST_PSK}"'}}})
    py_ns = topo.right if pyipsec_side == "right" else topo.left
    ss_ns = topo.left if pyipsec_side == "right" else topo.right
    daemon = pyipsec_factory(py_ns, toml, state_dir=state)
    charon = charon_factory(ss_ns, None, name="ss", state_dir=tmp_path / "charon")
    charon.load_dir(conf, swan)
    if pyipsec_side == "right":
        charon.initiate("rw", "net")
    else:
        daemon.up("rw", "net")
    assert charon.wait_for(lambda c: c.established("rw"), timeout=20) is not None
    daemon.wait_for(_up, timeout=10)
    assert topo.ping(topo.left, RIGHT_INNER, count=3, source=LEFT_INNER) == (3, 3)
    (ike,) = daemon.ike_sas()
    if pyipsec_side == "right":
        assert ike["remote"]["id"] == LEFT_ID and "eap-tls" in ike.get("peer_auth", "")
    elif eap_only:  # RFC 5998: no AUTH of charon's before EAP; the MSK-based one only
        assert ike.get("peer_auth") == "eap-tls (EAP-only)"
    log = charon.log()
    assert ("pre-shared key" in log) != eap_only
