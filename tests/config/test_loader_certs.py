"""The loader's certificate configuration: swanctl's x509/, x509ca/, x509crl/ and private/
directories, ``local.certs``/``local.key``/``remote.cacerts``, ``[secrets.private-*]``
passphrases, and located errors for every file problem."""

from __future__ import annotations

import datetime as dt
import logging
import os
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pyipsec.auth.signatures import PrivateKey
from pyipsec.config.loader import ConfigError, load_config
from pyipsec.pki import generate_key, issue_host, make_ca, make_crl

NOW = dt.datetime.now(dt.UTC)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: PrivateKey, passphrase: bytes | None = None) -> bytes:
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


def _write_key(path: Path, key: PrivateKey, passphrase: bytes | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(_key_pem(key, passphrase))


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@dataclass
class Pki:
    """A CA, its CRL and the left host's certificate and key, written as swanctl files."""

    dir: Path
    ca: x509.Certificate
    ca_key: PrivateKey
    cert: x509.Certificate
    key: PrivateKey

    def conf(self, body: str) -> Path:
        p = self.dir / "pyipsec.toml"
        p.write_text(textwrap.dedent(body))
        return p


CONN = """
[connections.c]
remote_addrs = ["192.0.2.2"]
[connections.c.local]
id = "left.example.net"
auth = "pubkey"
certs = ["left.pem"]
[connections.c.remote]
id = "right.example.net"
auth = "pubkey"
[connections.c.children.net]
local_ts = "10.1.0.0/16"
remote_ts = "10.2.0.0/16"
"""


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca_key = generate_key("ecdsa-p256")
    ca = make_ca(ca_key, "CN=Test CA,O=pyipsec", now=NOW)
    key = generate_key("ecdsa-p256")
    cert = issue_host(ca, ca_key, key.public_key(), cn="left.example.net", now=NOW)
    _write(tmp_path / "x509ca" / "ca.pem", _pem(ca))
    _write(tmp_path / "x509" / "left.pem", _pem(cert))
    _write(
        tmp_path / "x509crl" / "ca.crl",
        make_crl(ca, ca_key, [], now=NOW).public_bytes(serialization.Encoding.PEM),
    )
    _write_key(tmp_path / "private" / "left.key", key)
    return Pki(tmp_path, ca, ca_key, cert, key)


def _errors(path: Path) -> str:
    with pytest.raises(ConfigError) as ei:
        load_config(path)
    return "\n".join(str(e) for e in ei.value.errors)


def test_swanctl_layout_loads(pki: Pki) -> None:
    cfg = load_config(pki.conf(CONN))
    c = cfg.connections[0]
    assert (c.local_auth, c.remote_auth) == ("pubkey", "pubkey")
    assert c.psk == b""  # no PSK needed when neither side uses one
    lc, rt = c.local_credentials, c.remote_trust
    assert lc is not None and rt is not None
    assert lc.certificate == pki.cert and lc.anchor == pki.ca and lc.intermediates == ()
    assert lc.private_key.public_key() == pki.key.public_key()
    assert rt.anchors == (pki.ca,) and rt.intermediates == () and len(rt.crls) == 1
    assert not rt.strict_crl
    assert (c.send_cert, c.send_certreq, c.rsa_pss) == ("ifasked", True, False)


def test_send_cert_certreq_revocation_rsa_pss(pki: Pki) -> None:
    text = CONN.replace('[connections.c.local]', 'send_cert = "always"\nsend_certreq = false\n'
                        'rsa_pss = true\n[connections.c.local]')
    text = text.replace('id = "right.example.net"', 'id = "right.example.net"\n'
                        'revocation = "strict"')
    c = load_config(pki.conf(text)).connections[0]
    assert (c.send_cert, c.send_certreq, c.rsa_pss) == ("always", False, True)
    assert c.remote_trust is not None and c.remote_trust.strict_crl
    bad = CONN.replace('[connections.c.local]', 'send_cert = "sometimes"\n[connections.c.local]')
    assert "connections.c.send_cert: invalid value 'sometimes'" in _errors(pki.conf(bad))


def test_reload_with_unchanged_files_compares_equal(pki: Pki) -> None:
    """The daemon keeps SAs whose ConnectionConfig is unchanged: objects compare by DER."""
    path = pki.conf(CONN)
    a, b = load_config(path), load_config(path)
    assert a.connections == b.connections
    assert hash(a.connections[0].local_credentials) == hash(b.connections[0].local_credentials)
    # a new certificate (same key) is a change
    cert2 = issue_host(pki.ca, pki.ca_key, pki.key.public_key(), cn="left.example.net", now=NOW)
    _write(pki.dir / "x509" / "left.pem", _pem(cert2))
    assert load_config(path).connections != a.connections


def test_missing_and_bad_certificate_files_are_located(pki: Pki) -> None:
    text = CONN.replace('certs = ["left.pem"]', 'certs = ["nope.pem"]')
    errs = _errors(pki.conf(text))
    assert "connections.c.local.certs[0]: cannot read x509/nope.pem: No such file" in errs
    _write(pki.dir / "x509" / "junk.pem", b"hello")
    errs = _errors(pki.conf(CONN.replace('"left.pem"', '"junk.pem"')))
    assert "connections.c.local.certs[0]: x509/junk.pem: not a certificate" in errs
    _write(pki.dir / "x509ca" / "junk.pem", b"not a CA either")
    assert "x509ca/junk.pem: x509ca/junk.pem: not a certificate" in _errors(pki.conf(CONN))


def test_no_matching_private_key(pki: Pki) -> None:
    _write_key(pki.dir / "private" / "left.key", generate_key("ecdsa-p256"))
    errs = _errors(pki.conf(CONN))
    assert (
        "connections.c.local.certs[0]: x509/left.pem: no private key matches the certificate"
        in errs
    )


def test_private_key_readable_by_others_is_refused(pki: Pki) -> None:
    os.chmod(pki.dir / "private" / "left.key", 0o644)
    errs = _errors(pki.conf(CONN))
    assert "private/left.key: cannot read private/left.key: private key file is accessible" in errs
    assert "mode 0644" in errs


def test_encrypted_key_with_passphrase_secret(pki: Pki) -> None:
    _write_key(pki.dir / "private" / "left.key", pki.key, b"s3cret")
    # without the passphrase: no usable key, the hint says why
    errs = _errors(pki.conf(CONN))
    assert "no private key matches the certificate" in errs and "passphrase" in errs
    secret = '\n[secrets.private-left]\nfile = "left.key"\nsecret = "s3cret"\n'
    c = load_config(pki.conf(CONN + secret)).connections[0]
    assert c.local_credentials is not None
    assert c.local_credentials.private_key.public_key() == pki.key.public_key()
    wrong = secret.replace("s3cret", "wrong")
    errs = _errors(pki.conf(CONN + wrong))
    assert "secrets.private-left: private/left.key: cannot decrypt" in errs


def test_explicit_key(pki: Pki) -> None:
    _write_key(pki.dir / "private" / "other.key", generate_key("ed25519"))
    text = CONN.replace('certs = ["left.pem"]', 'certs = ["left.pem"]\nkey = "private/left.key"')
    c = load_config(pki.conf(text)).connections[0]
    assert c.local_credentials is not None
    bad = CONN.replace('certs = ["left.pem"]', 'certs = ["left.pem"]\nkey = "private/other.key"')
    errs = _errors(pki.conf(bad))
    assert "connections.c.local.key: private/other.key: does not match the certificate" in errs


def test_expired_certificate_warns_at_load(pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    old = issue_host(pki.ca, pki.ca_key, pki.key.public_key(), cn="left.example.net",
                     now=NOW - dt.timedelta(days=800), days=30)
    _write(pki.dir / "x509" / "left.pem", _pem(old))
    with caplog.at_level(logging.WARNING, logger="pyipsec.cfg"):
        load_config(pki.conf(CONN))
    assert any("connections.c.local.certs[0]" in r.getMessage() and "expired" in r.getMessage()
               for r in caplog.records)


def test_remote_cacerts_and_missing_anchor(pki: Pki) -> None:
    other_key = generate_key("ecdsa-p256")
    other = make_ca(other_key, "CN=Other CA", now=NOW)
    _write(pki.dir / "x509ca" / "other.pem", _pem(other))
    text = CONN.replace('id = "right.example.net"',
                        'id = "right.example.net"\ncacerts = ["other.pem"]')
    c = load_config(pki.conf(text)).connections[0]
    assert c.remote_trust is not None and c.remote_trust.anchors == (other,)
    (pki.dir / "x509ca" / "ca.pem").unlink()
    (pki.dir / "x509ca" / "other.pem").unlink()
    errs = _errors(pki.conf(CONN))
    assert 'connections.c.remote.auth: "pubkey" needs a trust anchor' in errs


def test_intermediate_ca_chain(pki: Pki) -> None:
    ik = generate_key("ecdsa-p256")
    inter = make_ca(ik, "CN=Intermediate", now=NOW, issuer_cert=pki.ca, issuer_key=pki.ca_key)
    cert = issue_host(inter, ik, pki.key.public_key(), cn="left.example.net", now=NOW)
    _write(pki.dir / "x509ca" / "inter.pem", _pem(inter))
    _write(pki.dir / "x509" / "left.pem", _pem(cert))
    c = load_config(pki.conf(CONN)).connections[0]
    lc, rt = c.local_credentials, c.remote_trust
    assert lc is not None and rt is not None
    assert lc.intermediates == (inter,) and lc.anchor == pki.ca
    assert rt.anchors == (pki.ca,) and rt.intermediates == (inter,)
    # sent explicitly as local.certs[1]
    _write(pki.dir / "x509" / "inter.pem", _pem(inter))
    (pki.dir / "x509ca" / "inter.pem").unlink()
    text = CONN.replace('certs = ["left.pem"]', 'certs = ["left.pem", "inter.pem"]')
    lc = load_config(pki.conf(text)).connections[0].local_credentials
    assert lc is not None and lc.intermediates == (inter,) and lc.anchor == pki.ca


def test_psk_with_certs_and_mixed_auth(pki: Pki) -> None:
    text = CONN.replace('auth = "pubkey"\ncerts', 'auth = "psk"\ncerts')
    errs = _errors(pki.conf(text))
    assert 'connections.c.local.certs: only with auth = "pubkey"' in errs
    # pubkey locally, PSK for the peer: a PSK is needed
    mixed = CONN.replace('id = "right.example.net"\nauth = "pubkey"',
                         'id = "right.example.net"\nauth = "psk"')
    assert "no PSK in [secrets]" in _errors(pki.conf(mixed))
    psk = '\n[secrets.ike]\nid = "right.example.net"\nsecret = "0123456789abcdef"\n'
    c = load_config(pki.conf(mixed + psk)).connections[0]
    assert (c.local_auth, c.remote_auth, c.psk) == ("pubkey", "psk", b"0123456789abcdef")
    assert c.remote_trust is None and c.local_credentials is not None
    bad = CONN.replace('auth = "pubkey"\ncerts', 'auth = "xauth"\ncerts')
    assert "unsupported auth method 'xauth' (hint: one of 'psk', 'pubkey'" in _errors(
        pki.conf(bad)
    )


def test_certificate_example_loads(tmp_path: Path) -> None:
    """examples/certificates/left.toml with the files its comment says how to make."""
    ex = Path(__file__).resolve().parents[2] / "examples" / "certificates" / "left.toml"
    conf = tmp_path / "left.toml"
    conf.write_text(ex.read_text())
    ca_key = generate_key("ecdsa-p256")
    ca = make_ca(ca_key, "CN=Example CA", now=NOW)
    key = generate_key("ecdsa-p256")
    _write(tmp_path / "x509ca" / "ca.pem", _pem(ca))
    _write(tmp_path / "x509" / "left.pem",
           _pem(issue_host(ca, ca_key, key.public_key(), cn="left.example.net", now=NOW)))
    _write_key(tmp_path / "private" / "left.key", key)
    (c,) = load_config(conf).connections
    assert c.local_credentials is not None and c.local_credentials.anchor == ca
    assert c.remote_trust is not None and c.remote_trust.anchors == (ca,)
