"""The loader's EAP configuration (RFC 7296 §2.16, swanctl names): ``local.auth`` /
``remote.auth`` = ``eap-*``, ``local.eap_id`` / ``remote.eap_id``, ``[secrets.eap-NAME]``
user passwords (client: ours, matched by EAP identity; server: the users table), and
EAP-TLS certificates; every problem located."""

from __future__ import annotations

import datetime as dt
import os
import textwrap
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization as ser

from pyipsec.config.loader import ConfigError, load_config, load_config_text
from pyipsec.config.model import ConnectionConfig, is_eap
from pyipsec.pki import generate_key, issue_host, make_ca

GATEWAY = """
[connections.rw]
local_addrs = ["192.0.2.1"]
[connections.rw.local]
id = "gw.example.net"
auth = "psk"
[connections.rw.remote]
auth = "{method}"
{remote_extra}
[connections.rw.children.net]
local_ts = "10.1.0.0/16"
remote_ts = "0.0.0.0/0"

[secrets.ike-gw]
id = "gw.example.net"
secret = "gateway psk 0123456789"
"""

USERS = """
[secrets.eap-carol]
id = "carol"
secret = "carol's password"

[secrets.eap-dave]
id-1 = "dave@example.net"
id-2 = "dave"
secret = "0x64617665"
"""

CLIENT = """
[connections.home]
remote_addrs = ["192.0.2.1"]
[connections.home.local]
id = "carol@example.net"
auth = "{method}"
{local_extra}
[connections.home.remote]
id = "gw.example.net"
auth = "psk"
[connections.home.children.net]
local_ts = "0.0.0.0/0"
remote_ts = "10.1.0.0/16"

[secrets.ike-gw]
id = "gw.example.net"
secret = "gateway psk 0123456789"
"""


def _load(text: str) -> ConnectionConfig:
    return load_config_text(textwrap.dedent(text)).connections[0]


def _errors(text: str, base_dir: str | Path = ".") -> str:
    with pytest.raises(ConfigError) as ei:
        load_config_text(textwrap.dedent(text), base_dir=base_dir)
    return "\n".join(str(e) for e in ei.value.errors)


@pytest.mark.parametrize("method", ["eap-md5", "eap-mschapv2"])
def test_gateway_users_table(method: str) -> None:
    c = _load(GATEWAY.format(method=method, remote_extra="") + USERS)
    assert (c.local_auth, c.remote_auth) == ("psk", method)
    assert is_eap(c.remote_auth) and not is_eap(c.local_auth)
    assert c.psk == b"gateway psk 0123456789"  # the EAP secrets are not PSKs
    assert set(c.eap_users) == {
        (b"carol", b"carol's password"),
        (b"dave@example.net", b"dave"),
        (b"dave", b"dave"),
    }
    assert c.remote_eap_id == "" and c.eap_secret == b""
    assert "password" not in repr(c) and "carol" not in repr(c)


def test_gateway_eap_id_and_radius() -> None:
    c = _load(GATEWAY.format(method="eap-mschapv2", remote_extra='eap_id = "%any"') + USERS)
    assert c.remote_eap_id == "%any"
    radius = '[eap_radius.servers.r]\naddress = "192.0.2.10"\n[secrets.radius-r]\nsecret = "s"\n'
    r = _load(GATEWAY.format(method="eap-radius", remote_extra='eap_id = "%any"') + radius)
    assert r.remote_auth == "eap-radius" and r.eap_users == ()  # RADIUS knows the users


def test_gateway_without_users_is_refused() -> None:
    errs = _errors(GATEWAY.format(method="eap-mschapv2", remote_extra=""))
    assert "connections.rw.remote.auth: eap-mschapv2 needs the users' secrets" in errs


def test_eap_secret_needs_an_id() -> None:
    text = GATEWAY.format(method="eap-md5", remote_extra="") + (
        '\n[secrets.eap-nobody]\nsecret = "x"\n'
    )
    assert "secrets.eap-nobody.id: missing: an EAP secret names its user" in _errors(text)


def test_client_secret_by_ike_identity_and_by_eap_id() -> None:
    users = USERS.replace('id = "carol"', 'id = "carol@example.net"')
    c = _load(CLIENT.format(method="eap-mschapv2", local_extra="") + users)
    assert (c.local_auth, c.eap_secret, c.local_eap_id) == (
        "eap-mschapv2",
        b"carol's password",
        "",
    )
    d = _load(CLIENT.format(method="eap-md5", local_extra='eap_id = "dave"') + USERS)
    assert (d.local_eap_id, d.eap_secret) == ("dave", b"dave")
    e = _load(CLIENT.format(method="eap", local_extra='eap_id = "carol"') + USERS)
    assert e.local_auth == "eap" and e.eap_secret == b"carol's password"


def test_client_without_its_secret_is_refused() -> None:
    errs = _errors(CLIENT.format(method="eap-mschapv2", local_extra='eap_id = "eve"') + USERS)
    assert "connections.home.local.auth: no EAP secret in [secrets] for 'eve'" in errs


def test_located_eap_mistakes() -> None:
    errs = _errors(
        CLIENT.format(method="eap-radius", local_extra='eap_id = "%any"').replace(
            'auth = "psk"', 'auth = "psk"\neap_id = "x"'
        )
        + USERS
    )
    assert "connections.home.local.auth: eap-radius is a server method" in errs
    assert "connections.home.local.eap_id: must be our EAP identity, not a wildcard" in errs
    assert "connections.home.remote.eap_id: only with an EAP remote.auth" in errs
    errs = _errors(CLIENT.format(method="eap-md5", local_extra='eap_id = ""') + USERS)
    assert "connections.home.local.eap_id: empty EAP identity" in errs
    errs = _errors(CLIENT.format(method="eap-gtc", local_extra="") + USERS)
    assert "connections.home.local.auth: unsupported auth method 'eap-gtc'" in errs


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def test_eap_tls_certificates(tmp_path: Path) -> None:
    ca_key = generate_key("ecdsa-p256")
    now = dt.datetime.now(dt.UTC)
    ca = make_ca(ca_key, "CN=Test CA,O=pyipsec", now=now)
    key = generate_key("ecdsa-p256")
    cert = issue_host(ca, ca_key, key.public_key(), cn="carol@example.net", now=now)
    _write(tmp_path / "x509ca" / "ca.pem", ca.public_bytes(ser.Encoding.PEM))
    _write(tmp_path / "x509" / "carol.pem", cert.public_bytes(ser.Encoding.PEM))
    pem = key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())
    _write(tmp_path / "private" / "carol.key", pem, 0o600)
    conf = tmp_path / "pyipsec.toml"
    conf.write_text(
        textwrap.dedent(CLIENT.format(method="eap-tls", local_extra='certs = ["carol.pem"]'))
    )
    c = load_config(conf).connections[0]
    assert c.local_auth == "eap-tls" and c.eap_secret == b""
    assert c.local_credentials is not None and c.local_credentials.certificate == cert
    assert c.remote_trust is not None and c.remote_trust.anchors == (ca,)
    # a gateway running EAP-TLS signs with PSK here: its TLS certificate is still needed
    gw = textwrap.dedent(GATEWAY.format(method="eap-tls", remote_extra=""))
    errs = _errors(gw, tmp_path)
    assert "connections.rw.local.certs: missing: EAP-TLS needs our certificate" in errs
    no_ca = tmp_path / "empty"
    no_ca.mkdir()
    errs = _errors(CLIENT.format(method="eap-tls", local_extra=""), no_ca)
    assert "connections.home.local.certs: missing: EAP-TLS needs our certificate" in errs
    assert 'connections.home.remote.auth: "eap-tls" needs a trust anchor' in errs
