"""Pinned public keys (no certificates) between pyipsec and strongSwan 5.9.8, both roles.

strongSwan does not implement RFC 7670 on the wire: it has no CERT encoding 15 (its
``cert_payload`` enumeration ends at 14, it cannot embed a raw key in a CERT payload and
ignores CERT and CERTREQ payloads of encodings it does not know).  What it has is
pre-distributed keys: swanctl's ``local.pubkeys`` / ``remote.pubkeys`` (files in
``pubkey/``; the remote key's subject is set to ``remote.id``).  pyipsec's options of the
same names interoperate with that: pyipsec asks with an empty raw-key CERTREQ and sends
its key in a CERT of encoding 15 (charon ignores both and verifies AUTH with the key it
pinned for pyipsec's identity; pyipsec uses ``send_cert = "always"`` here); charon
cannot send its key ("embedding PUBKEY certificate in payload failed") and pyipsec
verifies its AUTH with the key pinned in ``remote.pubkeys``.  A wrong pinned key fails
on either side.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from pyipsec.auth.signatures import PrivateKey
from pyipsec.pki import generate_key

from .pyipsec_daemon import PyipsecDaemon, PyipsecError, pyipsec_toml
from .strongswan import LEFT_ID, RIGHT_ID, Charon, ConnSpec, StrongswanError, swanctl_conf
from .test_certificates import _ping_both, _py_established
from .topology import RIGHT_OUTER, Topology

pytestmark = pytest.mark.interop

IKE = "aes256gcm16-prfsha256-x25519"
ESP = "aes256gcm16-x25519"


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def write_raw_keys(base: Path, own: PrivateKey, peer_public: PrivateKey) -> None:
    """swanctl layout: pubkey/host.pub, pubkey/peer.pub, private/host.key."""
    pem = serialization.Encoding.PEM
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    _write(base / "pubkey" / "host.pub", own.public_key().public_bytes(pem, spki))
    _write(base / "pubkey" / "peer.pub", peer_public.public_key().public_bytes(pem, spki))
    _write(base / "private" / "host.key", own.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()), 0o600)


def _start(topo: Topology, tmp_path: Path, pyipsec_side: str,
           charon_factory: Callable[..., Charon],
           pyipsec_factory: Callable[..., PyipsecDaemon],
           wrong_pin: str = "") -> tuple[Charon, PyipsecDaemon]:
    """pyipsec with an Ed25519 key, charon with an ECDSA P-256 key, each pinning the
    other's (``wrong_pin``: "pyipsec" or "charon" pins a stranger's key instead)."""
    py_key, ss_key = generate_key("ed25519"), generate_key("ecdsa-p256")
    # a stranger's key of the same type as the key it replaces: the signature is wrong
    stranger = generate_key("ecdsa-p256" if wrong_pin == "pyipsec" else "ed25519")
    state, ss_dir = tmp_path / "pyipsec", tmp_path / "swanctl"
    write_raw_keys(state, py_key, stranger if wrong_pin == "pyipsec" else ss_key)
    write_raw_keys(ss_dir, ss_key, stranger if wrong_pin == "charon" else py_key)
    addrs = ({"remote_addrs": [RIGHT_OUTER]} if pyipsec_side == "left"
             else {"local_addrs": [RIGHT_OUTER]})
    toml = pyipsec_toml(side=pyipsec_side, state_dir=state, conn="py", proposals=IKE,
                        esp_proposals=ESP, extra_conn={"send_cert": "always"},
                        **addrs)  # type: ignore[arg-type]
    toml = toml.replace('[connections.py.local]\nauth = "psk"',
                        '[connections.py.local]\nauth = "pubkey"\npubkeys = ["host.pub"]')
    toml = toml.replace('[connections.py.remote]\nauth = "psk"',
                        '[connections.py.remote]\nauth = "pubkey"\npubkeys = ["peer.pub"]')
    ss_side = "right" if pyipsec_side == "left" else "left"
    spec = (ConnSpec(name="ss", side="right", local_addrs=RIGHT_OUTER, proposals=IKE,
                     esp_proposals=ESP) if pyipsec_side == "left" else
            ConnSpec(name="ss", side="left", remote_addrs=RIGHT_OUTER, proposals=IKE,
                     esp_proposals=ESP))
    conn = spec.connection()
    conn["local"] = {"auth": "pubkey", "id": conn["local"]["id"], "pubkeys": "host.pub"}
    conn["remote"] = {"auth": "pubkey", "id": conn["remote"]["id"], "pubkeys": "peer.pub"}
    daemon = pyipsec_factory(topo.left if pyipsec_side == "left" else topo.right, toml,
                             state_dir=state)
    charon = charon_factory(topo.right if ss_side == "right" else topo.left, None,
                            name=ss_side, state_dir=tmp_path / "charon")
    charon.load_dir(swanctl_conf({"connections": {"ss": conn}}), ss_dir)
    return charon, daemon


@pytest.mark.parametrize("pyipsec_side", ["left", "right"],
                         ids=["pyipsec-initiator", "pyipsec-responder"])
def test_pinned_public_keys(nat_topology: Topology, tmp_path: Path, pyipsec_side: str,
                            charon_factory: Callable[..., Charon],
                            pyipsec_factory: Callable[..., PyipsecDaemon]) -> None:
    charon, daemon = _start(nat_topology, tmp_path, pyipsec_side, charon_factory,
                            pyipsec_factory)
    if pyipsec_side == "left":
        daemon.up("py", "net")
    else:
        charon.initiate("ss", "net")
    sa = charon.wait_for(lambda c: c.established("ss"), timeout=20)
    daemon.wait_for(_py_established, timeout=10)
    py_id = LEFT_ID if pyipsec_side == "left" else RIGHT_ID
    assert sa["remote-id"] == py_id
    log = charon.log()
    assert f"authentication of '{py_id}' with ED25519 successful" in log, log[-3000:]
    # charon ignored our CERTREQ and CERT of encoding 15 (RFC 7670) and sent no CERT
    assert "cert payload ANY not supported - ignored" in log
    assert "certificate encoding (15) not supported" in log, log[-3000:]
    assert "embedding PUBKEY certificate in payload failed" in log
    (ike,) = daemon.ike_sas()
    assert ike["peer_cert"] is None and "ecdsa" in str(ike["peer_auth"]).lower(), ike
    _ping_both(nat_topology, count=1)


def test_wrong_pinned_key_is_refused(nat_topology: Topology, tmp_path: Path,
                                     charon_factory: Callable[..., Charon],
                                     pyipsec_factory: Callable[..., PyipsecDaemon]) -> None:
    """pyipsec (responder) pins another key than charon's: AUTHENTICATION_FAILED."""
    charon, daemon = _start(nat_topology, tmp_path, "right", charon_factory,
                            pyipsec_factory, wrong_pin="pyipsec")
    with pytest.raises(StrongswanError):
        charon.initiate("ss", "net", timeout=10)
    charon.wait_log(r"received AUTHENTICATION_FAILED notify error", timeout=10)
    daemon.wait_for(lambda d: not d.ike_sas(), timeout=10)
    tail = daemon.tail(300)
    assert "authentication failed" in tail and "(bad-signature)" in tail, tail[-3000:]


def test_charon_refuses_an_unpinned_key(nat_topology: Topology, tmp_path: Path,
                                        charon_factory: Callable[..., Charon],
                                        pyipsec_factory: Callable[..., PyipsecDaemon]) -> None:
    """charon (responder) pins another key than pyipsec's: pyipsec's CERT of encoding 15
    does not help (charon ignores it), the initiation fails."""
    charon, daemon = _start(nat_topology, tmp_path, "left", charon_factory,
                            pyipsec_factory, wrong_pin="charon")
    with pytest.raises(PyipsecError):
        daemon.up("py", "net", timeout=15)
    assert not charon.established("ss")
    assert "AUTHENTICATION_FAILED" in daemon.tail(300)
