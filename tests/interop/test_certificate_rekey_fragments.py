"""After certificate authentication against strongSwan 5.9.8, through the NAT: rekeys, and
IKE fragmentation carrying a large certificate chain.

* ``test_rekeys_after_certificate_auth``: ECDSA P-256 certificates, both roles (pyipsec
  as IKE initiator behind the NAT, and as responder).  The IKE SA is rekeyed by pyipsec
  and then by charon (RFC 7296 §2.18: no new authentication, the children move to the
  new SA), then the Child SA by pyipsec and by charon (§2.8); after each, both sides
  hold one agreed SA with new SPIs and the tunnel carries pings; pyipsec's status still
  shows the peer's certificate.
* ``test_fragmented_certificate_chain``: RSA 4096 host certificates issued by RSA 4096
  intermediates under one root, each side trusting only the root, so that the
  intermediate must travel in a CERT payload of IKE_AUTH; both sides have small
  fragment sizes (RFC 7383), so IKE_AUTH goes as several SKF fragments in both
  directions: charon's log shows it split and reassembled, pyipsec's that it reassembled
  the peer's.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509

from pyipsec.pki import generate_key, issue_host, make_ca

from .pyipsec_daemon import PyipsecDaemon
from .strongswan import LEFT_ID, RIGHT_ID, Charon
from .test_certificates import HostCreds, _launch, _ping_both, _start, _up
from .test_ike_rekey import _agreed_single_sa, _child_spis
from .topology import Topology

pytestmark = pytest.mark.interop

ROLES = pytest.mark.parametrize("pyipsec_side", ["left", "right"],
                                ids=["pyipsec-initiator", "pyipsec-responder"])


def _new_ike_sa(charon: Charon, daemon: PyipsecDaemon,
                seen: list[tuple[str, str]]) -> tuple[str, str]:
    pair: tuple[str, str] = daemon.wait_for(lambda d: _agreed_single_sa(charon, d, seen),
                                            timeout=20, interval=0.2)
    seen.append(pair)
    return pair


def _new_child_sa(charon: Charon, daemon: PyipsecDaemon, before: set[str]) -> set[str]:
    """Wait until both sides have the same, single pair of Child SA SPIs, all new."""
    def agreed(d: PyipsecDaemon) -> set[str] | None:
        ss, py = _child_spis(charon, d)
        return py if len(py) == 2 and ss == py and not py & before else None

    spis: set[str] = daemon.wait_for(agreed, timeout=20, interval=0.2)
    return spis


@ROLES
def test_rekeys_after_certificate_auth(nat_topology: Topology, tmp_path: Path,
                                       pyipsec_side: str,
                                       charon_factory: Callable[..., Charon],
                                       pyipsec_factory: Callable[..., PyipsecDaemon]) -> None:
    topo = nat_topology
    charon, daemon = _start(topo, tmp_path, pyipsec_side, "ecdsa-p256", False,
                            charon_factory, pyipsec_factory)
    _up(charon, daemon, pyipsec_side)
    first = _agreed_single_sa(charon, daemon, [])
    assert first is not None
    seen = [first]
    # IKE SA: rekeyed by pyipsec, then by charon
    assert daemon.rekey_ike("py")
    _new_ike_sa(charon, daemon, seen)
    _ping_both(topo, count=1)
    charon.rekey(ike="ss")
    _new_ike_sa(charon, daemon, seen)
    _ping_both(topo, count=1)
    # Child SA: rekeyed by pyipsec, then by charon
    _, spis = _child_spis(charon, daemon)
    assert len(spis) == 2
    assert daemon.rekey_child("py", "net")
    spis = _new_child_sa(charon, daemon, spis)
    _ping_both(topo, count=1)
    charon.rekey(child="net")
    _new_child_sa(charon, daemon, spis)
    _ping_both(topo, count=1)
    assert len(seen) == 3
    (sa,) = daemon.ike_sas()
    peer_id = RIGHT_ID if pyipsec_side == "left" else LEFT_ID
    assert sa["peer_cert"] is not None and peer_id in sa["peer_cert"]["subject"], sa
    log = charon.log()
    assert "authentication of" in log and "with pre-shared key" not in log


Chain = tuple[x509.Certificate, ...]


def _big_chain_pki() -> tuple[HostCreds, HostCreds, Chain, Chain]:
    """One RSA 4096 root; per side an RSA 4096 intermediate and an RSA 4096 host
    certificate (RSASSA-PSS signatures).  (left, right, (left inter,), (right inter,))"""
    now = dt.datetime.now(dt.UTC)
    root_key = generate_key("rsa4096")
    root = make_ca(root_key, "CN=pyipsec big root,O=pyipsec", now=now, pss=True)
    hosts: list[HostCreds] = []
    inters: list[Chain] = []
    for ident in (LEFT_ID, RIGHT_ID):
        ikey = generate_key("rsa4096")
        inter = make_ca(ikey, f"CN=big intermediate for {ident},O=pyipsec", now=now,
                        issuer_cert=root, issuer_key=root_key, pss=True)
        key = generate_key("rsa4096")
        cert = issue_host(inter, ikey, key.public_key(), cn=ident, now=now, pss=True)
        hosts.append(HostCreds(root, cert, key))
        inters.append((inter,))
    return hosts[0], hosts[1], inters[0], inters[1]


PY_FRAGMENT_SIZE = 576
SS_FRAGMENT_CONF = "charon {\n  fragment_size = 600\n}\n"


@ROLES
def test_fragmented_certificate_chain(nat_topology: Topology, tmp_path: Path,
                                      pyipsec_side: str,
                                      charon_factory: Callable[..., Charon],
                                      pyipsec_factory: Callable[..., PyipsecDaemon]) -> None:
    left, right, i_left, i_right = _big_chain_pki()
    py, ss, i_py, i_ss = ((left, right, i_left, i_right) if pyipsec_side == "left"
                          else (right, left, i_right, i_left))

    def charon_with_small_fragments(*args: object, **kw: object) -> Charon:
        return charon_factory(*args, extra_conf=SS_FRAGMENT_CONF, **kw)

    charon, daemon = _launch(nat_topology, tmp_path, pyipsec_side, charon_with_small_fragments,
                             pyipsec_factory, py=py, ss=ss, py_chain=i_py, ss_chain=i_ss,
                             extra_conn={"fragment_size": PY_FRAGMENT_SIZE, "rsa_pss": True})
    sa = _up(charon, daemon, pyipsec_side)
    assert sa["remote-id"] == (LEFT_ID if pyipsec_side == "left" else RIGHT_ID)
    log = charon.log()
    assert "splitting IKE message" in log, charon.tail()
    assert "reassembled fragmented IKE message" in log, charon.tail()
    # charon had no copy of pyipsec's intermediate: it came in a CERT payload
    assert f"big intermediate for {LEFT_ID if pyipsec_side == 'left' else RIGHT_ID}" in log
    tail = daemon.tail(400)
    direction = "response" if pyipsec_side == "left" else "request"
    assert f"{direction} #1 reassembled from" in tail, tail[-3000:]
    _ping_both(nat_topology, count=1)
