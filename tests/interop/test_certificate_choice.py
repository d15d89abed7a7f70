"""pyipsec picks the certificate charon asks for (RFC 7296 §3.7), both roles, through the NAT.

pyipsec has two certificates for its identity, ``local.certs = ["first.pem",
"second.pem"]``, of two CAs; charon trusts only the second CA (``remote.cacerts``) and
names it in its CERTREQ (in IKE_SA_INIT as responder, in IKE_AUTH as initiator).
pyipsec must send the second certificate and sign with its key: the SA comes up and
charon's log shows it authenticated pyipsec with the second CA's certificate.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from .pyipsec_daemon import PyipsecDaemon, pyipsec_toml
from .strongswan import LEFT_ID, RIGHT_ID, Charon, ConnSpec
from .test_certificates import (
    _key_pem,
    _make_pki,
    _pem,
    _ping_both,
    _up,
    _write,
    charon_pubkey_conf,
    pubkey_toml,
    write_swanctl_dirs,
)
from .topology import RIGHT_OUTER, Topology

pytestmark = pytest.mark.interop

IKE = "aes256gcm16-prfsha256-x25519"
ESP = "aes256gcm16-x25519"


@pytest.mark.parametrize("pyipsec_side", ["left", "right"],
                         ids=["pyipsec-initiator", "pyipsec-responder"])
def test_certificate_chosen_by_charons_certreq(nat_topology: Topology, tmp_path: Path,
                                                pyipsec_side: str,
                                                charon_factory: Callable[..., Charon],
                                                pyipsec_factory: Callable[..., PyipsecDaemon]
                                                ) -> None:
    one_left, one_right = _make_pki("ecdsa-p256", ca_dn="CN=pyipsec CA one,O=pyipsec")
    two_left, two_right = _make_pki("ed25519", ca_dn="CN=pyipsec CA two,O=pyipsec")
    py_one, py_two, ss = ((one_left, two_left, two_right) if pyipsec_side == "left"
                          else (one_right, two_right, two_left))
    state = tmp_path / "pyipsec"
    write_swanctl_dirs(state, py_two, ss.ca)  # x509/host.pem: CA two's, trusted by charon
    _write(state / "x509" / "first.pem", _pem(py_one.cert))
    _write(state / "private" / "first.key", _key_pem(py_one.key), private=True)
    addrs = ({"remote_addrs": [RIGHT_OUTER]} if pyipsec_side == "left"
             else {"local_addrs": [RIGHT_OUTER]})
    toml = pyipsec_toml(side=pyipsec_side, state_dir=state, conn="py", proposals=IKE,
                        esp_proposals=ESP, **addrs)  # type: ignore[arg-type]
    toml = pubkey_toml(toml, "py").replace('certs = ["host.pem"]',
                                           'certs = ["first.pem", "host.pem"]')
    daemon = pyipsec_factory(nat_topology.left if pyipsec_side == "left"
                             else nat_topology.right, toml, state_dir=state)
    ss_side = "right" if pyipsec_side == "left" else "left"
    spec = (ConnSpec(name="ss", side="right", local_addrs=RIGHT_OUTER, proposals=IKE,
                     esp_proposals=ESP) if pyipsec_side == "left" else
            ConnSpec(name="ss", side="left", remote_addrs=RIGHT_OUTER, proposals=IKE,
                     esp_proposals=ESP))
    conf = charon_pubkey_conf(spec, tmp_path / "swanctl", ss, py_two.ca)  # trusts CA two
    charon = charon_factory(nat_topology.right if ss_side == "right" else nat_topology.left,
                            None, name=ss_side, state_dir=tmp_path / "charon")
    charon.load_dir(conf, tmp_path / "swanctl")
    sa = _up(charon, daemon, pyipsec_side)
    py_id = LEFT_ID if pyipsec_side == "left" else RIGHT_ID
    assert sa["remote-id"] == py_id
    log = charon.log()
    # charon named CA two in its CERTREQ and validated pyipsec's certificate up to it
    assert 'cert request for "CN=pyipsec CA two, O=pyipsec"' in log, log[-3000:]
    assert 'using trusted ca certificate "CN=pyipsec CA two, O=pyipsec"' in log, log[-3000:]
    assert "CA one" not in log
    assert f"authentication of '{py_id}' with ED25519 successful" in log, log[-3000:]
    assert "chosen by the peer's CERTREQ" in daemon.tail(400)
    _ping_both(nat_topology, count=1)
