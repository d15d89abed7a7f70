"""Remote access with EAP (RFC 7296 §2.16) between pyipsec and strongSwan 5.9.8, through
the NAT topology, with virtual IPs from pools (§2.19).

1. a strongSwan road warrior authenticating with EAP-MSCHAPv2 (``vips = 0.0.0.0``) to a
   pyipsec gateway that signs with a certificate and leases from a pool: the address is
   assigned, the DNS attribute arrives, an inner ping reaches the gateway's subnet; a wrong
   password is refused and leaves nothing behind;
2. the same with EAP-TLS (client certificate, MSK from TLS);
3. pyipsec as the road warrior (EAP-MSCHAPv2 and EAP-TLS, ``vips``) of a strongSwan gateway
   with a pool: the address lands on the TUN device, a ping passes;
4. IKE and Child SA rekeys of an EAP road warrior keep the address.

Method-by-method interop (MD5, MSCHAPv2, TLS, EAP-only) is in ``test_eap.py``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from pyipsec.pki import generate_key, issue_host, make_ca

from .pyipsec_daemon import PyipsecDaemon, pyipsec_toml, toml_text
from .strongswan import RIGHT_ID, Charon, swanctl_conf
from .test_certificates import HostCreds, _key_pem, _pem, _write
from .test_road_warrior import (
    DNS,
    FIRST,
    IKE,
    POOL,
    child_spis,
    ike_spis,
    leases,
    ping_from,
    vips_of,
    wait_child_rekeyed,
    wait_ike_rekeyed,
    wait_vips,
)
from .topology import RIGHT_INNER, RIGHT_OUTER, RIGHT_SUBNET, Topology

pytestmark = pytest.mark.interop

ESP = "aes256gcm16"
NOW = dt.datetime.now(dt.UTC)
CAROL = "carol@example.net"  # the client's IKE identity
EAP_USER = "carol"  # its EAP-MSCHAPv2 user name
PASSWORD = "carol's interop password 0123"


class Pki:
    """One CA; the gateway's certificate (right.example.net) and carol's (EAP-TLS)."""

    def __init__(self) -> None:
        ca_key = generate_key("ecdsa-p256")
        self.ca = make_ca(ca_key, "CN=pyipsec EAP interop CA,O=pyipsec", now=NOW)
        self.gateway = self._host(ca_key, RIGHT_ID)
        self.carol = self._host(ca_key, CAROL)

    def _host(self, ca_key: Any, ident: str) -> HostCreds:
        key = generate_key("ecdsa-p256")
        cert = issue_host(self.ca, ca_key, key.public_key(), cn=ident, now=NOW)
        return HostCreds(self.ca, cert, key)


def _swanctl_files(base: Path, own: HostCreds | None, ca: x509.Certificate) -> None:
    """swanctl's layout: x509ca/ca.pem, and x509/host.pem + private/host.key if ``own``."""
    _write(base / "x509ca" / "ca.pem", _pem(ca))
    if own is not None:
        _write(base / "x509" / "host.pem", _pem(own.cert))
        _write(base / "private" / "host.key", _key_pem(own.key), private=True)


# --------------------------------------------------------------------------- pyipsec gateway


def gateway_toml(state: Path, pki: Pki, method: str) -> str:
    """pyipsec on the right: certificate for its own AUTH, EAP for the road warriors,
    a pool."""
    _swanctl_files(state, pki.gateway, pki.ca)
    text = pyipsec_toml(
        side="right", state_dir=state, conn="gw", local_addrs=[RIGHT_OUTER],
        proposals=IKE, esp_proposals=ESP, remote_id_override="%any",
        remote_ts_override=["dynamic"], ipv6_inner=False,
        extra_conn={"pools": ["rw"], "dpd_delay": 0, "send_cert": "always"},
    )  # fmt: skip
    text = text.replace('[connections.gw.local]\nauth = "psk"',
                        '[connections.gw.local]\nauth = "pubkey"\ncerts = ["host.pem"]')
    text = text.replace('[connections.gw.remote]\nauth = "psk"',
                        f'[connections.gw.remote]\nauth = "{method}"\neap_id = "%any"')
    tables: dict[str, dict[str, Any]] = {"pools.rw": {"addrs": POOL, "dns": [DNS]}}
    if method == "eap-mschapv2":
        tables["secrets.eap-carol"] = {"id": EAP_USER, "secret": PASSWORD}
    return text + toml_text(tables)


def client_conf(method: str, password: str = PASSWORD) -> str:
    """strongSwan on the left: carol with EAP, trusting the CA for the gateway."""
    local: dict[str, Any] = {"auth": method, "id": CAROL}
    if method == "eap-mschapv2":
        local["eap_id"] = EAP_USER
    else:
        local["certs"] = "host.pem"
    conn = {
        "version": 2, "remote_addrs": RIGHT_OUTER, "proposals": IKE, "vips": "0.0.0.0",
        "rekey_time": "0s", "reauth_time": 0, "dpd_delay": "0s",
        "local": local,
        "remote": {"auth": "pubkey", "id": RIGHT_ID, "cacerts": "ca.pem"},
        "children": {"net": {"mode": "tunnel", "local_ts": "dynamic",
                             "remote_ts": RIGHT_SUBNET, "esp_proposals": ESP,
                             "rekey_time": "0s"}},
    }  # fmt: skip
    tree: dict[str, Any] = {"connections": {"carol": conn}}
    if method == "eap-mschapv2":
        tree["secrets"] = {"eap-carol": {"id": EAP_USER, "secret": f'"{password}"'}}
    return swanctl_conf(tree)


def _start_pair(topo: Topology, tmp_path: Path, method: str,
                charon_factory: Callable[..., Charon],
                pyipsec_factory: Callable[..., PyipsecDaemon],
                password: str = PASSWORD) -> tuple[PyipsecDaemon, Charon]:
    pki = Pki()
    state = tmp_path / "gw"
    gw = pyipsec_factory(topo.right, gateway_toml(state, pki, method), state_dir=state)
    ss_dir = tmp_path / "swanctl"
    _swanctl_files(ss_dir, pki.carol if method == "eap-tls" else None, pki.ca)
    charon = charon_factory(topo.left, None, name="carol", state_dir=tmp_path / "charon")
    charon.load_dir(client_conf(method, password), ss_dir)
    return gw, charon


@pytest.mark.parametrize("method", ["eap-mschapv2", "eap-tls"])
def test_strongswan_eap_client_of_pyipsec_gateway(
    nat_topology: Topology, tmp_path: Path, method: str,
    charon_factory: Callable[..., Charon], pyipsec_factory: Callable[..., PyipsecDaemon],
) -> None:
    topo = nat_topology
    gw, charon = _start_pair(topo, tmp_path, method, charon_factory, pyipsec_factory)
    charon.initiate("carol", "net")
    (vip,) = wait_vips(charon, "carol", 1)
    assert vip == FIRST
    log = charon.log()
    assert "processing INTERNAL_IP4_DNS attribute" in log
    want = "EAP_MSCHAPV2" if method == "eap-mschapv2" else "EAP_TLS"
    assert f"EAP method {want} succeeded, MSK established" in log, log[-3000:]
    assert re.search(r"authentication of 'right\.example\.net' with \S*ECDSA", log), log[-3000:]
    # the gateway: the lease is keyed by carol's EAP identity (as strongSwan does), her
    # traffic flows
    who = EAP_USER if method == "eap-mschapv2" else CAROL
    assert leases(gw) == {FIRST: (who, "online")}
    (ike,) = gw.ike_sas()
    assert ike["state"] == "established" and ike["vips"]["remote"] == [FIRST]
    assert ping_from(topo, FIRST, RIGHT_INNER) == (3, 3)
    charon.terminate(ike="carol")
    gw.wait_for(lambda d: not d.ike_sas(), timeout=10)
    assert {s for _, s in leases(gw).values()} == {"offline"}


def test_wrong_mschapv2_password_is_refused(
    nat_topology: Topology, tmp_path: Path,
    charon_factory: Callable[..., Charon], pyipsec_factory: Callable[..., PyipsecDaemon],
) -> None:
    topo = nat_topology
    gw, charon = _start_pair(topo, tmp_path, "eap-mschapv2", charon_factory, pyipsec_factory,
                             password="not carol's password")
    with pytest.raises(Exception):  # noqa: B017 - swanctl --initiate fails
        charon.initiate("carol", "net", timeout=15)
    assert charon.established("carol") is None
    # the gateway frees the half-done SA (EAP failure or the half-open timeout) and leases
    # nothing
    gw.wait_for(lambda d: not d.ike_sas(), timeout=40)
    assert leases(gw) == {}
    assert "EAP" in gw.tail(300)


def test_eap_road_warrior_rekeys_keep_the_address(
    nat_topology: Topology, tmp_path: Path,
    charon_factory: Callable[..., Charon], pyipsec_factory: Callable[..., PyipsecDaemon],
) -> None:
    topo = nat_topology
    gw, charon = _start_pair(topo, tmp_path, "eap-mschapv2", charon_factory, pyipsec_factory)
    charon.initiate("carol", "net")
    (vip,) = wait_vips(charon, "carol", 1)
    before = child_spis(charon, "carol")
    assert gw.rekey_child("gw", "net")
    wait_child_rekeyed(charon, "carol", before)
    before = ike_spis(charon, "carol")
    charon.rekey(ike="carol")
    wait_ike_rekeyed(charon, "carol", before)
    before = ike_spis(charon, "carol")
    assert gw.rekey_ike("gw")
    wait_ike_rekeyed(charon, "carol", before)
    gw.wait_for(lambda d: [s["state"] for s in d.ike_sas()] == ["established"], timeout=15)
    assert vips_of(charon, "carol") == [vip]
    assert leases(gw) == {vip: (EAP_USER, "online")}
    assert ping_from(topo, vip, RIGHT_INNER) == (3, 3)


# --------------------------------------------------------------------------- pyipsec client


def strongswan_gateway_conf(method: str) -> str:
    """strongSwan on the right: its certificate, EAP for the road warriors, a pool."""
    remote: dict[str, Any] = {"auth": method, "id": "%any"}
    if method == "eap-mschapv2":
        remote["eap_id"] = "%any"
    else:
        remote["cacerts"] = "ca.pem"
    tree: dict[str, Any] = {
        "connections": {
            "gw": {
                "version": 2, "local_addrs": RIGHT_OUTER, "proposals": IKE, "pools": "rw",
                "rekey_time": "0s", "reauth_time": 0, "dpd_delay": "0s",
                "send_cert": "always",
                "local": {"auth": "pubkey", "id": RIGHT_ID, "certs": "host.pem"},
                "remote": remote,
                "children": {"net": {"mode": "tunnel", "local_ts": RIGHT_SUBNET,
                                     "esp_proposals": ESP, "rekey_time": "0s"}},
            }
        },
        "pools": {"rw": {"addrs": POOL, "dns": DNS}},
    }  # fmt: skip
    if method == "eap-mschapv2":
        tree["secrets"] = {"eap-carol": {"id": EAP_USER, "secret": f'"{PASSWORD}"'}}
    return swanctl_conf(tree)


def pyipsec_client_toml(state: Path, pki: Pki, method: str) -> str:
    """pyipsec on the left: carol with EAP, asking for an address."""
    _swanctl_files(state, pki.carol if method == "eap-tls" else None, pki.ca)
    text = pyipsec_toml(
        side="left", state_dir=state, conn="rw", remote_addrs=[RIGHT_OUTER],
        proposals=IKE, esp_proposals=ESP, ipv6_inner=False, tun_addresses=[],
        local_id_override=CAROL, local_ts_override=["dynamic"],
        remote_ts_override=[RIGHT_SUBNET], extra_conn={"vips": ["0.0.0.0"]},
    )  # fmt: skip
    local = f'[connections.rw.local]\nauth = "{method}"\n'
    local += f'eap_id = "{EAP_USER}"\n' if method == "eap-mschapv2" else 'certs = ["host.pem"]\n'
    text = text.replace('[connections.rw.local]\nauth = "psk"\n', local)
    text = text.replace('[connections.rw.remote]\nauth = "psk"',
                        '[connections.rw.remote]\nauth = "pubkey"')
    if method == "eap-mschapv2":
        text += toml_text({"secrets.eap-carol": {"id": EAP_USER, "secret": PASSWORD}})
    return text


@pytest.mark.parametrize("method", ["eap-mschapv2", "eap-tls"])
def test_pyipsec_eap_client_of_strongswan_gateway(
    nat_topology: Topology, tmp_path: Path, method: str,
    charon_factory: Callable[..., Charon], pyipsec_factory: Callable[..., PyipsecDaemon],
) -> None:
    topo = nat_topology
    pki = Pki()
    ss_dir = tmp_path / "swanctl"
    _swanctl_files(ss_dir, pki.gateway, pki.ca)
    charon = charon_factory(topo.right, None, name="gw", state_dir=tmp_path / "charon")
    charon.load_dir(strongswan_gateway_conf(method), ss_dir)
    state = tmp_path / "rw"
    rw = pyipsec_factory(topo.left, pyipsec_client_toml(state, pki, method), state_dir=state)
    rw.up("rw", "net")
    st = rw.wait_for(lambda d: (s := d.status())["vips"] and s, timeout=20)
    (vip,) = st["vips"]
    assert vip["local"] == [FIRST] and vip["dns"] == [DNS]
    addr = topo.exec(topo.left, ["ip", "-o", "addr", "show", "dev", "pyi0"]).stdout
    assert f"inet {FIRST}/32" in addr
    sa = charon.wait_for(lambda c: c.established("gw"), timeout=10)
    assert sa.get("remote-vips") == [FIRST]
    want = "EAP_MSCHAPV2" if method == "eap-mschapv2" else "EAP_TLS"
    assert f"EAP method {want} succeeded, MSK established" in charon.log()
    assert topo.ping(topo.left, RIGHT_INNER, count=3) == (3, 3)
    rw.down("rw")
    rw.wait_for(lambda d: not d.status()["vips"], timeout=10)
