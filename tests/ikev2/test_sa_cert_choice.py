"""Choosing among several local certificates by the peer's CERTREQ (RFC 7296 §3.7: the
CERTREQ is "used to choose which certificate to send") and raw public keys configured in
TOML (RFC 7670, swanctl ``local.pubkeys`` / ``remote.pubkeys``), both roles, in memory."""

from __future__ import annotations

import datetime as dt
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pyipsec import pki
from pyipsec.auth.certs import spki_sha1
from pyipsec.auth.signatures import PrivateKey
from pyipsec.config.loader import load_config
from pyipsec.config.model import ConnectionConfig, LocalCredentials, RemoteTrust
from pyipsec.constants import CertEncoding
from pyipsec.dn import name_from_string
from pyipsec.ikev2.constants import ExchangeType, PayloadType
from pyipsec.ikev2.payloads import CertPayload, CertReqPayload

from .harness import Harness, conn_pair
from .test_sa_cert_auth import NOW, auth_failed, clock, established, live, pubkey

CA_ONE = "CN=CA One,O=Example"
CA_TWO = "CN=CA Two,O=Example"


def _ca(name: str, kind: str) -> tuple[x509.Certificate, PrivateKey]:
    k = pki.generate_key(kind)
    return pki.make_ca(k, name, now=NOW - dt.timedelta(days=30)), k


CAS = {CA_ONE: _ca(CA_ONE, "ecdsa-p256"), CA_TWO: _ca(CA_TWO, "ed25519")}


def creds(cn: str, ca: str, kind: str) -> LocalCredentials:
    """A host certificate of ``ca`` with its own new key."""
    ca_cert, ca_key = CAS[ca]
    k = pki.generate_key(kind)
    cert = pki.issue_host(ca_cert, ca_key, k.public_key(), cn=cn, now=NOW - dt.timedelta(days=1))
    return LocalCredentials(k, cert, (), ca_cert)


def two_certs(cn: str) -> dict[str, Any]:
    """Connection keywords: certificates of CA One (first) and CA Two, different keys."""
    first, second = creds(cn, CA_ONE, "ecdsa-p256"), creds(cn, CA_TWO, "ed25519")
    return {"local_credentials": first, "local_candidates": (second,)}


def trusting(*cas: str, **kw: Any) -> RemoteTrust:
    return RemoteTrust(anchors=tuple(CAS[c][0] for c in cas), clock=clock, **kw)


def cert_sent(h: Harness, sender: str, response: bool) -> x509.Certificate:
    pkt = h.sent(sender, ExchangeType.IKE_AUTH, response=response)[0]
    certs = [p for t, p in h.decrypt(pkt).payloads if t == PayloadType.CERT]
    assert certs and isinstance(certs[0], CertPayload)
    return x509.load_der_x509_certificate(certs[0].data)


@pytest.mark.parametrize("chooser", ["responder", "initiator"])
def test_certificate_chosen_by_certreq(chooser: str) -> None:
    """The side with two certificates sends the one of the CA its peer trusts (the
    second), signs AUTH with that certificate's key, and the peer accepts it."""
    many = pubkey(None, trusting(CA_ONE, CA_TWO), **two_certs("sun.example.net"))
    many |= {"local_auth": "pubkey"}
    picky = pubkey(creds("moon.example.net", CA_TWO, "ecdsa-p256"), trusting(CA_TWO))
    if chooser == "responder":
        h = Harness(*conn_pair(a_kw=picky, b_kw=many))
    else:
        many["local_credentials"] = creds("moon.example.net", CA_ONE, "ecdsa-p384")
        many["local_candidates"] = (creds("moon.example.net", CA_TWO, "ed25519"),)
        picky["local_credentials"] = creds("sun.example.net", CA_TWO, "ecdsa-p256")
        h = Harness(*conn_pair(a_kw=many, b_kw=picky))
    h.up()
    established(h)
    sender, response = ("b", True) if chooser == "responder" else ("a", False)
    sent = cert_sent(h, sender, response)
    assert sent.issuer == name_from_string(CA_TWO)
    peer = live(h.a if chooser == "responder" else h.b)[0]
    assert peer.peer_cert == sent and peer.peer_auth.lower() == "ed25519"


def test_first_certificate_without_a_matching_certreq() -> None:
    """No CERTREQ names a CA of ours (the peer asks for none): the first certificate
    is sent -- here one the peer does not trust, so it refuses it."""
    b = pubkey(None, trusting(CA_TWO), send_cert="always", **two_certs("sun.example.net"))
    b |= {"local_auth": "pubkey"}
    a = pubkey(creds("moon.example.net", CA_TWO, "ecdsa-p256"), trusting(CA_TWO),
               send_certreq=False)
    h = Harness(*conn_pair(a_kw=a, b_kw=b))
    h.up()
    assert cert_sent(h, "b", True).issuer == name_from_string(CA_ONE)
    assert "untrusted" in auth_failed(h, "a")


def test_certreq_naming_only_unknown_cas_falls_back_to_the_first() -> None:
    """The CERTREQ names a CA b does not have (and a pinned certificate, which is no
    CA of b's chains): b sends its first certificate, which a accepts (pinned)."""
    b_kw = two_certs("sun.example.net")
    first = b_kw["local_credentials"].certificate
    b = pubkey(None, trusting(CA_ONE), **b_kw) | {"local_auth": "pubkey"}
    other = pki.make_ca(pki.generate_key("ecdsa-p256"), "CN=Elsewhere", now=NOW)
    a_trust = RemoteTrust(anchors=(other, first), clock=clock)
    a = pubkey(creds("moon.example.net", CA_ONE, "ecdsa-p256"), a_trust)
    h = Harness(*conn_pair(a_kw=a, b_kw=b))
    h.up()
    established(h)
    assert cert_sent(h, "b", True) == first
    init = h.sent("a", ExchangeType.IKE_AUTH, response=False)[0]
    (req,) = [p for t, p in h.decrypt(init).payloads if t == PayloadType.CERTREQ]
    assert isinstance(req, CertReqPayload)
    assert req.ca_hashes() == [spki_sha1(other), spki_sha1(first)]


def test_first_matching_certificate_in_configured_order() -> None:
    """Both of b's CAs requested: the first candidate in ``local.certs`` order wins."""
    b = pubkey(None, trusting(CA_ONE), **two_certs("sun.example.net")) | {"local_auth": "pubkey"}
    a = pubkey(creds("moon.example.net", CA_ONE, "ecdsa-p256"), trusting(CA_TWO, CA_ONE))
    h = Harness(*conn_pair(a_kw=a, b_kw=b))
    h.up()
    established(h)
    assert cert_sent(h, "b", True).issuer == name_from_string(CA_ONE)


# --- raw public keys from TOML (RFC 7670) -------------------------------------------


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _pub_pem(k: PrivateKey) -> bytes:
    return k.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _key_pem(k: PrivateKey) -> bytes:
    return k.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


RAW_CONF = """
[connections.c]
remote_addrs = ["{remote}"]
send_cert = "{send_cert}"
[connections.c.local]
id = "{me}"
auth = "pubkey"
pubkeys = ["me.pub"]
[connections.c.remote]
id = "{peer}"
auth = "pubkey"
pubkeys = ["peer.pub"]
[connections.c.children.net]
local_ts = "10.1.0.0/16"
remote_ts = "10.2.0.0/16"
"""


def raw_side(base: Path, me: str, peer: str, mine: PrivateKey, theirs: PrivateKey,
             send_cert: str = "ifasked") -> ConnectionConfig:
    """A connection loaded from TOML: our raw key in pubkey/ (its private key found in
    private/), the peer's pinned key in pubkey/."""
    _write(base / "pubkey" / "me.pub", _pub_pem(mine))
    _write(base / "pubkey" / "peer.pub", _pub_pem(theirs))
    _write(base / "private" / "me.key", _key_pem(mine), 0o600)
    conf = base / "c.toml"
    conf.write_text(textwrap.dedent(RAW_CONF.format(
        remote="192.0.2.2", me=me, peer=peer, send_cert=send_cert)))
    (c,) = load_config(conf).connections
    return c


def raw_kw(c: ConnectionConfig) -> dict[str, Any]:
    return {
        "psk": b"",
        "local_auth": c.local_auth,
        "remote_auth": c.remote_auth,
        "local_credentials": c.local_credentials,
        "remote_trust": RemoteTrust(raw_keys=c.remote_trust.raw_keys)
        if c.remote_trust is not None else None,
        "send_cert": c.send_cert,
        "remote_id": c.remote_id,
    }


@pytest.mark.parametrize("send_cert", ["ifasked", "never"])
def test_raw_public_keys_from_toml_both_roles(tmp_path: Path, send_cert: str) -> None:
    """Each side pins the other's key (``remote.pubkeys``) and signs with its own
    (``local.pubkeys``): with ``ifasked`` the empty raw-key CERTREQ (RFC 7670 §3) makes
    both send CERT encoding 15; with ``never`` the pinned key alone verifies AUTH."""
    ka, kb = pki.generate_key("ed25519"), pki.generate_key("ecdsa-p256")
    a = raw_side(tmp_path / "a", "moon.example.net", "sun.example.net", ka, kb, send_cert)
    b = raw_side(tmp_path / "b", "sun.example.net", "moon.example.net", kb, ka, send_cert)
    assert a.local_credentials is not None and a.local_credentials.certificate is None
    assert a.remote_trust is not None and a.remote_trust.anchors == ()
    h = Harness(*conn_pair(a_kw=raw_kw(a), b_kw=raw_kw(b)))
    h.up()
    established(h)
    (sa_a,), (sa_b,) = live(h.a), live(h.b)
    assert "ecdsa" in sa_a.peer_auth.lower()
    assert sa_b.peer_auth.lower() == "ed25519"
    assert sa_a.peer_cert is None and sa_b.peer_cert is None
    for sender, response in (("a", False), ("b", True)):
        pkt = h.sent(sender, ExchangeType.IKE_AUTH, response=response)[0]
        encs = [p.encoding for t, p in h.decrypt(pkt).payloads if t == PayloadType.CERT]
        assert encs == ([CertEncoding.RAW_PUBLIC_KEY] if send_cert == "ifasked" else [])
    init = h.sent("a", ExchangeType.IKE_AUTH, response=False)[0]
    reqs = [p for t, p in h.decrypt(init).payloads if t == PayloadType.CERTREQ]
    assert [(r.encoding, r.data) for r in reqs] == [(CertEncoding.RAW_PUBLIC_KEY, b"")]


def test_unpinned_raw_key_is_refused(tmp_path: Path) -> None:
    ka, kb, stranger = (pki.generate_key("ed25519") for _ in range(3))
    a = raw_side(tmp_path / "a", "moon.example.net", "sun.example.net", ka, kb)
    b = raw_side(tmp_path / "b", "sun.example.net", "moon.example.net", kb, stranger)
    h = Harness(*conn_pair(a_kw=raw_kw(a), b_kw=raw_kw(b)))
    h.up()
    assert "raw public key of moon.example.net is not trusted" in auth_failed(h, "b")
