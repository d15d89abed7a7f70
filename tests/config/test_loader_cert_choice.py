"""The loader's ``local.certs`` candidates (one is chosen per peer by its CERTREQ, RFC 7296
§3.7, as swanctl) and raw public keys (RFC 7670, swanctl ``local.pubkeys`` /
``remote.pubkeys`` in ``pubkey/``), with located errors."""

from __future__ import annotations

import logging

import pytest
from cryptography.hazmat.primitives import serialization

from pyipsec.auth.signatures import PrivateKey
from pyipsec.config.loader import load_config
from pyipsec.pki import generate_key, issue_host, make_ca

from .test_loader_certs import CONN, NOW, Pki, _errors, _pem, _write, _write_key, pki

__all__ = ["pki"]  # the fixture, imported for the tests below


def _second_ca(p: Pki, name: str = "CN=Second CA") -> tuple[PrivateKey, PrivateKey]:
    """A second CA in x509ca/ and a host certificate of it in x509/right-ca.pem with a
    new key in private/second.key.  Returns (CA key, host key)."""
    ca_key = generate_key("ed25519")
    ca = make_ca(ca_key, name, now=NOW)
    key = generate_key("ecdsa-p384")
    cert = issue_host(ca, ca_key, key.public_key(), cn="left.example.net", now=NOW)
    _write(p.dir / "x509ca" / "second.pem", _pem(ca))
    _write(p.dir / "x509" / "second.pem", _pem(cert))
    _write_key(p.dir / "private" / "second.key", key)
    return ca_key, key


def test_several_certificates_are_candidates(pki: Pki) -> None:
    _, key2 = _second_ca(pki)
    text = CONN.replace('certs = ["left.pem"]', 'certs = ["left.pem", "second.pem"]')
    c = load_config(pki.conf(text)).connections[0]
    first, (second,) = c.local_credentials, c.local_candidates
    assert first is not None and first.certificate == pki.cert
    assert first.private_key.public_key() == pki.key.public_key() and first.anchor == pki.ca
    assert second.certificate is not None
    assert second.certificate.issuer.rfc4514_string() == "CN=Second CA"
    assert second.private_key.public_key() == key2.public_key()
    assert second.anchor is not None and second.anchor.subject == second.certificate.issuer
    # one certificate: no candidates (as before)
    assert load_config(pki.conf(CONN)).connections[0].local_candidates == ()


def test_candidate_without_key_is_located(pki: Pki) -> None:
    _second_ca(pki)
    (pki.dir / "private" / "second.key").unlink()
    text = CONN.replace('certs = ["left.pem"]', 'certs = ["left.pem", "second.pem"]')
    errs = _errors(pki.conf(text))
    assert ("connections.c.local.certs[1]: x509/second.pem: no private key matches the "
            "certificate") in errs


def test_explicit_key_may_match_any_candidate(pki: Pki) -> None:
    _second_ca(pki)
    text = CONN.replace('certs = ["left.pem"]',
                        'certs = ["left.pem", "second.pem"]\nkey = "private/second.key"')
    c = load_config(pki.conf(text)).connections[0]
    assert c.local_credentials is not None and len(c.local_candidates) == 1
    _write_key(pki.dir / "private" / "stray.key", generate_key("ecdsa-p256"))
    bad = text.replace('key = "private/second.key"', 'key = "private/stray.key"')
    assert ("connections.c.local.key: private/stray.key: does not match the certificate "
            "'left.pem'") in _errors(pki.conf(bad))


def test_ca_certificates_in_certs_are_intermediates(pki: Pki,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """After the first entry, a CA certificate is an intermediate sent with the
    candidates it issued (issuer first); one that issued none is not sent (warning)."""
    ik = generate_key("ecdsa-p256")
    inter = make_ca(ik, "CN=Intermediate", now=NOW, issuer_cert=pki.ca, issuer_key=pki.ca_key)
    _write(pki.dir / "x509" / "left.pem", _pem(issue_host(inter, ik, pki.key.public_key(),
                                                          cn="left.example.net", now=NOW)))
    _write(pki.dir / "x509" / "inter.pem", _pem(inter))
    _second_ca(pki)
    unrelated = make_ca(generate_key("ecdsa-p256"), "CN=Unrelated", now=NOW,
                        issuer_cert=pki.ca, issuer_key=pki.ca_key)
    _write(pki.dir / "x509" / "unrelated.pem", _pem(unrelated))
    text = CONN.replace('certs = ["left.pem"]',
                        'certs = ["left.pem", "unrelated.pem", "second.pem", "inter.pem"]')
    with caplog.at_level(logging.WARNING, logger="pyipsec.cfg"):
        c = load_config(pki.conf(text)).connections[0]
    lc, (second,) = c.local_credentials, c.local_candidates
    assert lc is not None and lc.intermediates == (inter,) and lc.anchor == pki.ca
    assert second.intermediates == ()
    assert any("certs[1]" in r.getMessage() and "Unrelated" in r.getMessage()
               and "not sent" in r.getMessage() for r in caplog.records)


# --- raw public keys ------------------------------------------------------------------

RAW = """
[connections.c]
remote_addrs = ["192.0.2.2"]
[connections.c.local]
id = "left.example.net"
auth = "pubkey"
pubkeys = ["left.pub"]
[connections.c.remote]
id = "right.example.net"
auth = "pubkey"
pubkeys = ["right.pub", "right-next.pub"]
[connections.c.children.net]
local_ts = "10.1.0.0/16"
remote_ts = "10.2.0.0/16"
"""


def _spki(k: PrivateKey) -> bytes:
    return k.public_key().public_bytes(serialization.Encoding.DER,
                                       serialization.PublicFormat.SubjectPublicKeyInfo)


def _raw_files(p: Pki) -> tuple[PrivateKey, PrivateKey]:
    right, right_next = generate_key("ed25519"), generate_key("rsa2048")
    _write(p.dir / "pubkey" / "left.pub", p.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    _write(p.dir / "pubkey" / "right.pub", _spki(right))  # DER works too
    _write(p.dir / "pubkey" / "right-next.pub", right_next.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.PKCS1))
    return right, right_next


def test_raw_public_keys(pki: Pki) -> None:
    right, right_next = _raw_files(pki)
    c = load_config(pki.conf(RAW)).connections[0]
    lc, rt = c.local_credentials, c.remote_trust
    assert lc is not None and lc.certificate is None and lc.intermediates == ()
    assert lc.private_key.public_key() == pki.key.public_key()  # found in private/
    assert rt is not None and rt.anchors == () and rt.crls == ()
    assert rt.raw_keys == (_spki(right), _spki(right_next))
    # unchanged files compare equal (a reload keeps the SAs)
    assert load_config(pki.conf(RAW)).connections == (c,)


def test_raw_public_key_errors(pki: Pki) -> None:
    _raw_files(pki)
    errs = _errors(pki.conf(RAW.replace('"right.pub", ', '"nope.pub", ')))
    assert "connections.c.remote.pubkeys[0]: cannot read pubkey/nope.pub: No such file" in errs
    _write(pki.dir / "pubkey" / "junk.pub", b"junk")
    errs = _errors(pki.conf(RAW.replace('["left.pub"]', '["junk.pub"]')))
    assert "connections.c.local.pubkeys[0]: pubkey/junk.pub: not a public key" in errs
    (pki.dir / "private" / "left.key").unlink()
    errs = _errors(pki.conf(RAW))
    assert ("connections.c.local.pubkeys[0]: pubkey/left.pub: no private key matches the "
            "public key") in errs
    both = RAW.replace('pubkeys = ["left.pub"]', 'pubkeys = ["left.pub"]\ncerts = ["left.pem"]')
    assert ("connections.c.local.pubkeys: raw public keys and certs exclude each other"
            in _errors(pki.conf(both)))
    both = RAW.replace('pubkeys = ["right.pub",', 'cacerts = ["ca.pem"]\npubkeys = ["right.pub",')
    assert ("connections.c.remote.pubkeys: raw public keys and cacerts exclude each other"
            in _errors(pki.conf(both)))
    psk = RAW.replace('auth = "pubkey"\npubkeys = ["right', 'auth = "psk"\npubkeys = ["right')
    assert 'connections.c.remote.pubkeys: only with auth = "pubkey"' in _errors(pki.conf(psk))


def test_local_raw_key_with_explicit_key(pki: Pki) -> None:
    _raw_files(pki)
    text = RAW.replace('pubkeys = ["left.pub"]', 'pubkeys = ["left.pub"]\nkey = "private/left.key"')
    c = load_config(pki.conf(text)).connections[0]
    assert c.local_credentials is not None
    _write_key(pki.dir / "private" / "other.key", generate_key("ed25519"))
    bad = text.replace("private/left.key", "private/other.key")
    assert ("connections.c.local.key: private/other.key: does not match the public key "
            "'left.pub'" in _errors(pki.conf(bad)))
