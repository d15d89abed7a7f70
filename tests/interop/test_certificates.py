"""Certificate authentication between pyipsec and strongSwan 5.9.8 through the NAT.

A test CA and the host certificates of both sides are made with :mod:`pyipsec.pki`
(ECDSA P-256, RSA 3072 with pyipsec signing RSASSA-PSS, Ed25519; RFC 7427 digital
signature AUTH), then written in each daemon's own layout: swanctl's ``x509/``, ``x509ca/``,
``private/`` directories next to pyipsec's TOML (:mod:`pyipsec.config.credentials`), and
the same layout for charon (``SWANCTL_DIR``, swanctl.conf(5)).  Both roles are run
(pyipsec initiating from behind the NAT, and charon initiating to pyipsec), with pings
through the tunnel; one refusal: charon presents a certificate of another CA and pyipsec
answers AUTHENTICATION_FAILED (RFC 7296 §2.21.2).  Further cases: host certificates of
an intermediate CA (only the root trusted, the intermediate sent in a CERT payload),
a CRL revoking the peer's certificate (on either side), pyipsec authenticating with a PSK
while charon uses its certificate (RFC 7296 §2.15), and ECDSA P-384.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pyipsec.auth.signatures import PrivateKey
from pyipsec.pki import generate_key, issue_host, make_ca, make_crl

from .pyipsec_daemon import PyipsecDaemon, PyipsecError, pyipsec_toml
from .strongswan import (
    LEFT_ID,
    RIGHT_ID,
    TEST_PSK,
    Charon,
    ConnSpec,
    StrongswanError,
    swanctl_conf,
)
from .topology import LEFT_INNER, LEFT_INNER6, RIGHT_INNER, RIGHT_INNER6, RIGHT_OUTER, Topology

pytestmark = pytest.mark.interop

IKE = "aes256gcm16-prfsha256-x25519"
ESP = "aes256gcm16-x25519"
NOW = dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class HostCreds:
    """One host's certificate and key, and the CA that issued it."""

    ca: x509.Certificate
    cert: x509.Certificate
    key: PrivateKey


def _make_pki(kind: str, ca_dn: str = "CN=pyipsec interop CA,O=pyipsec"
              ) -> tuple[HostCreds, HostCreds]:
    ca_key = generate_key(kind)
    ca = make_ca(ca_key, ca_dn, now=NOW)
    out = []
    for ident in (LEFT_ID, RIGHT_ID):
        key = generate_key(kind)
        cert = issue_host(ca, ca_key, key.public_key(), cn=ident, now=NOW)
        out.append(HostCreds(ca, cert, key))
    return out[0], out[1]


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write(path: Path, data: bytes, private: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def write_swanctl_dirs(base: Path, own: HostCreds, trusted_ca: x509.Certificate) -> None:
    """swanctl's layout below ``base``: x509/host.pem, x509ca/ca.pem, private/host.key."""
    _write(base / "x509" / "host.pem", _pem(own.cert))
    _write(base / "x509ca" / "ca.pem", _pem(trusted_ca))
    _write(base / "private" / "host.key", _key_pem(own.key), private=True)


def pubkey_toml(text: str, conn: str, extra_local: str = "") -> str:
    """Turn a PSK daemon TOML of :func:`pyipsec_toml` into certificate authentication."""
    text = text.replace(f'[connections.{conn}.local]\nauth = "psk"',
                        f'[connections.{conn}.local]\nauth = "pubkey"\ncerts = ["host.pem"]'
                        + extra_local)
    return text.replace(f'[connections.{conn}.remote]\nauth = "psk"',
                        f'[connections.{conn}.remote]\nauth = "pubkey"')


def charon_pubkey_conf(spec: ConnSpec, base: Path, own: HostCreds,
                       trusted_ca: x509.Certificate) -> str:
    """swanctl.conf for ``spec`` with certificate authentication, its files written in
    swanctl's layout below ``base`` (loaded with ``SWANCTL_DIR=base``, see
    :meth:`Charon.load_dir`): ``local.certs`` in x509/, ``remote.cacerts`` in x509ca/,
    the key found in private/ by its public key."""
    write_swanctl_dirs(base, own, trusted_ca)
    conn: dict[str, Any] = spec.connection()
    conn["local"] = {"auth": "pubkey", "id": conn["local"]["id"], "certs": "host.pem"}
    conn["remote"] = {"auth": "pubkey", "id": conn["remote"]["id"], "cacerts": "ca.pem"}
    conn["send_cert"] = "always"
    return swanctl_conf({"connections": {spec.name: conn}})


def _py_established(d: PyipsecDaemon) -> bool:
    states = [str(sa.get("state", "ESTABLISHED")).upper() for sa in d.ike_sas()]
    return any(s.endswith("ESTABLISHED") for s in states) and bool(d.child_sas())


def _spis(d: PyipsecDaemon) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    st = d.status()
    return ({(sa["spi_i"], sa["spi_r"]) for sa in st["ike_sas"]},
            {(c["spi_in"], c["spi_out"]) for c in st["child_sas"]})


def _ping_both(topo: Topology, count: int = 2) -> None:
    for ns, src, dst in ((topo.left, LEFT_INNER, RIGHT_INNER),
                         (topo.right, RIGHT_INNER, LEFT_INNER),
                         (topo.left, LEFT_INNER6, RIGHT_INNER6),
                         (topo.right, RIGHT_INNER6, LEFT_INNER6)):
        assert topo.ping(ns, dst, count=count, source=src) == (count, count), f"{src} -> {dst}"


KINDS = [("ecdsa-p256", False), ("rsa3072", True), ("ed25519", False)]


def _start(topo: Topology, tmp_path: Path, pyipsec_side: str, kind: str, rsa_pss: bool,
           charon_factory: Callable[..., Charon],
           pyipsec_factory: Callable[..., PyipsecDaemon],
           charon_creds: HostCreds | None = None) -> tuple[Charon, PyipsecDaemon]:
    left, right = _make_pki(kind)
    py_creds, ss_creds = (left, right) if pyipsec_side == "left" else (right, left)
    if charon_creds is not None:
        ss_creds = charon_creds
    state = tmp_path / "pyipsec"
    write_swanctl_dirs(state, py_creds, py_creds.ca)
    extra = {"send_cert": "always", "rsa_pss": rsa_pss}
    ss_side = "right" if pyipsec_side == "left" else "left"
    if pyipsec_side == "left":
        toml = pyipsec_toml(side="left", state_dir=state, conn="py", remote_addrs=[RIGHT_OUTER],
                            proposals=IKE, esp_proposals=ESP, extra_conn=extra)
        spec = ConnSpec(name="ss", side="right", local_addrs=RIGHT_OUTER, proposals=IKE,
                        esp_proposals=ESP)
    else:
        toml = pyipsec_toml(side="right", state_dir=state, conn="py", local_addrs=[RIGHT_OUTER],
                            proposals=IKE, esp_proposals=ESP, extra_conn=extra)
        spec = ConnSpec(name="ss", side="left", remote_addrs=RIGHT_OUTER, proposals=IKE,
                        esp_proposals=ESP)
    ss_ns = topo.right if ss_side == "right" else topo.left
    py_ns = topo.left if pyipsec_side == "left" else topo.right
    daemon = pyipsec_factory(py_ns, pubkey_toml(toml, "py"), state_dir=state)
    conf = charon_pubkey_conf(spec, tmp_path / "swanctl", ss_creds, py_creds.ca)
    charon = charon_factory(ss_ns, None, name=ss_side, state_dir=tmp_path / "charon")
    charon.load_dir(conf, tmp_path / "swanctl")
    return charon, daemon


@pytest.mark.parametrize("pyipsec_side", ["left", "right"],
                         ids=["pyipsec-initiator", "pyipsec-responder"])
@pytest.mark.parametrize(("kind", "rsa_pss"), KINDS, ids=[k for k, _ in KINDS])
def test_certificate_auth(nat_topology: Topology, tmp_path: Path, pyipsec_side: str,
                          kind: str, rsa_pss: bool, charon_factory: Callable[..., Charon],
                          pyipsec_factory: Callable[..., PyipsecDaemon]) -> None:
    """Certificates from the TOML's swanctl directories: up through the NAT, ping, reload
    with unchanged files (same SAs), close."""
    topo = nat_topology
    charon, daemon = _start(topo, tmp_path, pyipsec_side, kind, rsa_pss, charon_factory,
                            pyipsec_factory)
    if pyipsec_side == "left":
        daemon.up("py", "net")
    else:
        charon.initiate("ss", "net")
    sa = charon.wait_for(lambda c: c.established("ss"), timeout=20)
    daemon.wait_for(_py_established, timeout=10)
    assert sa["remote-id"] == (LEFT_ID if pyipsec_side == "left" else RIGHT_ID)
    log = charon.log()
    assert "authentication of" in log and "with pre-shared key" not in log
    if rsa_pss and pyipsec_side == "left":
        assert "RSASSA-PSS" in log or "RSA_EMSA_PSS" in log, log[-3000:]
    _ping_both(topo)
    # reload with unchanged files: the credentials compare equal, the SAs stay
    before = _spis(daemon)
    assert before[0] and before[1], before
    daemon.cli("reload")
    assert _spis(daemon) == before
    _ping_both(topo, count=1)
    if pyipsec_side == "left":
        daemon.down("py")
    else:
        charon.terminate(ike="ss")
    charon.wait_for(lambda c: not c.list_sas(), timeout=10)
    daemon.wait_for(lambda d: not d.ike_sas() and not d.child_sas(), timeout=10)


def test_certificate_of_another_ca_is_refused(nat_topology: Topology, tmp_path: Path,
                                              charon_factory: Callable[..., Charon],
                                              pyipsec_factory: Callable[..., PyipsecDaemon]
                                              ) -> None:
    """charon (initiator) presents a certificate of a CA pyipsec does not trust: pyipsec
    answers AUTHENTICATION_FAILED and keeps no SA."""
    rogue, _ = _make_pki("ecdsa-p256", ca_dn="CN=rogue CA,O=elsewhere")
    charon, daemon = _start(nat_topology, tmp_path, "right", "ecdsa-p256", False,
                            charon_factory, pyipsec_factory, charon_creds=rogue)
    with pytest.raises(StrongswanError):
        charon.initiate("ss", "net", timeout=10)
    charon.wait_log(r"received AUTHENTICATION_FAILED notify error", timeout=10)
    assert not daemon.child_sas()
    daemon.wait_for(lambda d: not d.ike_sas(), timeout=10)
    assert "AUTHENTICATION_FAILED" in daemon.tail(200) or "untrusted" in daemon.tail(200)


# -- intermediate CAs, CRLs, PSK + certificate, P-384 ----------------------------------


def _launch(topo: Topology, tmp_path: Path, pyipsec_side: str,
            charon_factory: Callable[..., Charon],
            pyipsec_factory: Callable[..., PyipsecDaemon], *,
            py: HostCreds, ss: HostCreds, py_chain: tuple[x509.Certificate, ...] = (),
            ss_chain: tuple[x509.Certificate, ...] = (),
            py_crl: x509.CertificateRevocationList | None = None,
            ss_crl: x509.CertificateRevocationList | None = None,
            py_psk: bool = False,
            extra_conn: dict[str, Any] | None = None) -> tuple[Charon, PyipsecDaemon]:
    """Like :func:`_start` with explicit credentials: each side trusts only the root of
    the other's certificate (``ca``); ``py_chain`` are intermediates pyipsec sends
    (``local.certs`` after the host certificate, from x509/); ``ss_chain`` go into charon's
    x509ca/ (charon sends them with its certificate); a CRL goes into x509crl/;
    ``py_psk``: pyipsec authenticates with the PSK, charon still with its certificate;
    ``extra_conn``: more keys for pyipsec's connection table."""
    state, ss_dir = tmp_path / "pyipsec", tmp_path / "swanctl"
    write_swanctl_dirs(state, py, ss.ca)
    for i, c in enumerate(py_chain):
        _write(state / "x509" / f"chain{i}.pem", _pem(c))
    for i, c in enumerate(ss_chain):
        _write(ss_dir / "x509ca" / f"chain{i}.pem", _pem(c))
    if py_crl is not None:
        _write(state / "x509crl" / "ca.crl", py_crl.public_bytes(serialization.Encoding.PEM))
    if ss_crl is not None:
        _write(ss_dir / "x509crl" / "ca.crl", ss_crl.public_bytes(serialization.Encoding.PEM))
    extra = {"send_cert": "always", **(extra_conn or {})}
    ss_side = "right" if pyipsec_side == "left" else "left"
    addrs: dict[str, Any] = ({"remote_addrs": [RIGHT_OUTER]} if pyipsec_side == "left"
                             else {"local_addrs": [RIGHT_OUTER]})
    toml = pyipsec_toml(side=pyipsec_side, state_dir=state, conn="py", proposals=IKE,
                        esp_proposals=ESP, extra_conn=extra, **addrs)
    if py_psk:
        toml = toml.replace('[connections.py.remote]\nauth = "psk"',
                            '[connections.py.remote]\nauth = "pubkey"')
    else:
        certs = ", ".join(['"host.pem"', *(f'"chain{i}.pem"' for i in range(len(py_chain)))])
        toml = pubkey_toml(toml, "py").replace('certs = ["host.pem"]', f"certs = [{certs}]")
    spec = (ConnSpec(name="ss", side="right", local_addrs=RIGHT_OUTER, proposals=IKE,
                     esp_proposals=ESP) if pyipsec_side == "left" else
            ConnSpec(name="ss", side="left", remote_addrs=RIGHT_OUTER, proposals=IKE,
                     esp_proposals=ESP))
    daemon = pyipsec_factory(topo.left if pyipsec_side == "left" else topo.right, toml,
                             state_dir=state)
    conf = charon_pubkey_conf(spec, ss_dir, ss, py.ca)
    if py_psk:
        conn = spec.connection()
        conn["local"] = {"auth": "pubkey", "id": conn["local"]["id"], "certs": "host.pem"}
        conn["remote"] = {"auth": "psk", "id": conn["remote"]["id"]}
        conn["send_cert"] = "always"
        conf = swanctl_conf({"connections": {"ss": conn}, "secrets": {"ike-0": {
            "id-a": LEFT_ID, "id-b": RIGHT_ID, "secret": f'"{TEST_PSK}"'}}})
    charon = charon_factory(topo.right if ss_side == "right" else topo.left, None,
                            name=ss_side, state_dir=tmp_path / "charon")
    charon.load_dir(conf, ss_dir)
    return charon, daemon


def _intermediate_pki(kind: str = "ecdsa-p256") -> tuple[HostCreds, HostCreds,
                                                        x509.Certificate, x509.Certificate]:
    """One root; under it one intermediate per side, each issuing that side's host
    certificate.  Returns left and right (``ca`` = the root) and both intermediates."""
    root_key = generate_key(kind)
    root = make_ca(root_key, "CN=pyipsec interop root,O=pyipsec", now=NOW)
    out: list[HostCreds] = []
    inters: list[x509.Certificate] = []
    for ident in (LEFT_ID, RIGHT_ID):
        ikey = generate_key(kind)
        inter = make_ca(ikey, f"CN=intermediate for {ident},O=pyipsec", now=NOW,
                        issuer_cert=root, issuer_key=root_key)
        key = generate_key(kind)
        out.append(HostCreds(root, issue_host(inter, ikey, key.public_key(), cn=ident,
                                              now=NOW), key))
        inters.append(inter)
    return out[0], out[1], inters[0], inters[1]


def _up(charon: Charon, daemon: PyipsecDaemon, pyipsec_side: str) -> dict[str, Any]:
    if pyipsec_side == "left":
        daemon.up("py", "net")
    else:
        charon.initiate("ss", "net")
    sa: dict[str, Any] = charon.wait_for(lambda c: c.established("ss"), timeout=20)
    daemon.wait_for(_py_established, timeout=10)
    return sa


@pytest.mark.parametrize("pyipsec_side", ["left", "right"],
                         ids=["pyipsec-initiator", "pyipsec-responder"])
def test_intermediate_ca(nat_topology: Topology, tmp_path: Path, pyipsec_side: str,
                         charon_factory: Callable[..., Charon],
                         pyipsec_factory: Callable[..., PyipsecDaemon]) -> None:
    """Host certificates of intermediates under one root; each side trusts only the root
    and does not have the peer's intermediate: it must arrive in a CERT payload."""
    left, right, i_left, i_right = _intermediate_pki()
    py, ss, i_py, i_ss = ((left, right, i_left, i_right) if pyipsec_side == "left"
                          else (right, left, i_right, i_left))
    charon, daemon = _launch(nat_topology, tmp_path, pyipsec_side, charon_factory,
                             pyipsec_factory, py=py, ss=ss, py_chain=(i_py,), ss_chain=(i_ss,))
    sa = _up(charon, daemon, pyipsec_side)
    assert sa["remote-id"] == (LEFT_ID if pyipsec_side == "left" else RIGHT_ID)
    log = charon.log()
    # charon got pyipsec's intermediate from the CERT payload (it has no copy of it)
    assert f"intermediate for {py.cert.subject.rfc4514_string().removeprefix('CN=')}" in log
    assert "with pre-shared key" not in log
    _ping_both(nat_topology, count=1)


def test_revoked_charon_certificate_is_refused(nat_topology: Topology, tmp_path: Path,
                                                charon_factory: Callable[..., Charon],
                                                pyipsec_factory: Callable[..., PyipsecDaemon]
                                                ) -> None:
    """pyipsec's x509crl/ revokes charon's certificate: charon (initiator) gets
    AUTHENTICATION_FAILED, pyipsec's log names the revoked serial."""
    ca_key = generate_key("ecdsa-p256")
    ca = make_ca(ca_key, "CN=pyipsec interop CA,O=pyipsec", now=NOW)
    creds = []
    for ident in (LEFT_ID, RIGHT_ID):
        key = generate_key("ecdsa-p256")
        creds.append(HostCreds(ca, issue_host(ca, ca_key, key.public_key(), cn=ident,
                                              now=NOW), key))
    ss, py = creds
    crl = make_crl(ca, ca_key, [ss.cert.serial_number], now=NOW - dt.timedelta(minutes=1))
    charon, daemon = _launch(nat_topology, tmp_path, "right", charon_factory, pyipsec_factory,
                             py=py, ss=ss, py_crl=crl)
    with pytest.raises(StrongswanError):
        charon.initiate("ss", "net", timeout=10)
    charon.wait_log(r"received AUTHENTICATION_FAILED notify error", timeout=10)
    assert not daemon.child_sas() and not charon.established("ss")
    daemon.wait_for(lambda d: not d.ike_sas(), timeout=10)
    tail = daemon.tail(300)
    assert f"serial 0x{ss.cert.serial_number:x} was revoked" in tail, tail[-3000:]


def test_revoked_pyipsec_certificate_is_refused(nat_topology: Topology, tmp_path: Path,
                                                 charon_factory: Callable[..., Charon],
                                                 pyipsec_factory: Callable[..., PyipsecDaemon]
                                                 ) -> None:
    """charon's x509crl/ revokes pyipsec's certificate: pyipsec (initiator) is refused
    and charon's log says the certificate was revoked."""
    ca_key = generate_key("ecdsa-p256")
    ca = make_ca(ca_key, "CN=pyipsec interop CA,O=pyipsec", now=NOW)
    creds = []
    for ident in (LEFT_ID, RIGHT_ID):
        key = generate_key("ecdsa-p256")
        creds.append(HostCreds(ca, issue_host(ca, ca_key, key.public_key(), cn=ident,
                                              now=NOW), key))
    py, ss = creds
    # make_crl's CRLs carry the authorityKeyIdentifier charon looks them up by (RFC 5280
    # §5.2.1); without it charon loaded the CRL but never used it (found by this test)
    crl = make_crl(ca, ca_key, [py.cert.serial_number], now=NOW - dt.timedelta(minutes=1))
    charon, daemon = _launch(nat_topology, tmp_path, "left", charon_factory, pyipsec_factory,
                             py=py, ss=ss, ss_crl=crl)
    with pytest.raises(PyipsecError):
        daemon.up("py", "net", timeout=15)
    charon.wait_log(r"certificate was revoked", timeout=10)
    assert not charon.established("ss")
    daemon.wait_for(lambda d: not d.ike_sas() and not d.child_sas(), timeout=10)
    assert "AUTHENTICATION_FAILED" in daemon.tail(300)


def test_psk_against_certificate(nat_topology: Topology, tmp_path: Path,
                                 charon_factory: Callable[..., Charon],
                                 pyipsec_factory: Callable[..., PyipsecDaemon]) -> None:
    """Asymmetric authentication (RFC 7296 §2.15): pyipsec (initiator) uses the PSK,
    charon its certificate, which pyipsec verifies against its x509ca/."""
    left, right = _make_pki("ecdsa-p256")
    charon, daemon = _launch(nat_topology, tmp_path, "left", charon_factory, pyipsec_factory,
                             py=left, ss=right, py_psk=True)
    _up(charon, daemon, "left")
    log = charon.log()
    assert f"authentication of '{LEFT_ID}' with pre-shared key successful" in log, log[-3000:]
    assert f"authentication of '{RIGHT_ID}' (myself) with" in log
    assert f"authentication of '{RIGHT_ID}' (myself) with pre-shared key" not in log
    _ping_both(nat_topology, count=1)


def test_ecdsa_p384(nat_topology: Topology, tmp_path: Path,
                    charon_factory: Callable[..., Charon],
                    pyipsec_factory: Callable[..., PyipsecDaemon]) -> None:
    """ECDSA P-384 certificates, pyipsec initiating."""
    charon, daemon = _start(nat_topology, tmp_path, "left", "ecdsa-p384", False,
                            charon_factory, pyipsec_factory)
    _up(charon, daemon, "left")
    log = charon.log()
    assert "authentication of" in log and "with pre-shared key" not in log
    _ping_both(nat_topology, count=1)
