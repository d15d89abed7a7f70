"""``[eap_radius]`` and ``[secrets.radius-NAME]``: the RADIUS client's configuration."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from pyipsec.config.loader import ConfigError, load_config, load_config_text
from pyipsec.config.model import EapRadiusConfig, RadiusServerConfig

FULL = """
[eap_radius]
timeout = "2s"
retries = 4
backoff = 1.5
nas_identifier = "gw-1"
station_id_with_port = false
framed_mtu = 1100
sockets = 2
[eap_radius.servers.primary]
address = "192.0.2.10"
auth_port = 11812
preference = 10
[eap_radius.servers.backup]
address = "2001:db8::10"
[secrets.radius-primary]
secret = "primary-secret"
[secrets.radius-backup]
secret = "0x0102"
"""


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load_config_text(textwrap.dedent(text))
    return [str(i) for i in e.value.errors]


def test_full_section() -> None:
    cfg = load_config_text(FULL).eap_radius
    assert cfg == EapRadiusConfig(
        servers=(
            RadiusServerConfig("primary", "192.0.2.10", b"primary-secret", 11812, 10),
            RadiusServerConfig("backup", "2001:db8::10", b"\x01\x02"),
        ),
        timeout=2.0,
        retries=4,
        backoff=1.5,
        nas_identifier="gw-1",
        station_id_with_port=False,
        framed_mtu=1100,
        sockets=2,
    )
    assert "secret" not in repr(cfg)  # secrets never in repr() or logs


def test_defaults_without_the_section() -> None:
    cfg = load_config_text("").eap_radius
    assert cfg == EapRadiusConfig()
    assert (cfg.servers, cfg.timeout, cfg.retries, cfg.nas_identifier) == ((), 3.0, 3, "pyipsec")


def test_port_alias() -> None:
    cfg = load_config_text(
        '[eap_radius.servers.a]\naddress = "192.0.2.1"\nport = 1645\n'
        '[secrets.radius-a]\nsecret = "s"\n'
    ).eap_radius
    assert cfg.servers[0].auth_port == 1645


def test_the_secret_belongs_in_the_secrets() -> None:
    errs = errors(
        """
        [eap_radius.servers.a]
        address = "192.0.2.1"
        secret = "in-the-wrong-place"
        """
    )
    assert any(
        e.startswith("eap_radius.servers.a.secret:") and "[secrets.radius-a]" in e for e in errs
    )
    assert any(e.startswith("eap_radius.servers.a:") and "no shared secret" in e for e in errs)
    assert not any("in-the-wrong-place" in e for e in errs)


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        ('[eap_radius.servers.a]\nauth_port = 1812', "eap_radius.servers.a.address", "missing"),
        ('[eap_radius.servers.a]\naddress = "radius.example"', "eap_radius.servers.a.address",
         "invalid IP address"),
        ('[eap_radius.servers.a]\naddress = "192.0.2.1"\nauth_port = 0',
         "eap_radius.servers.a.auth_port", "between 1 and 65535"),
        ('[eap_radius.servers.a]\naddress = "192.0.2.1"\nadress = 1',
         "eap_radius.servers.a.adress", "did you mean 'address'"),
        ("[eap_radius]\ntimeout = 0", "eap_radius.timeout", "must be > 0"),
        ('[eap_radius]\ntimeout = "soon"', "eap_radius.timeout", "invalid duration"),
        ("[eap_radius]\nretries = -1", "eap_radius.retries", "between 0 and 20"),
        ("[eap_radius]\nbackoff = 0.5", "eap_radius.backoff", ">= 1"),
        ("[eap_radius]\nframed_mtu = 10", "eap_radius.framed_mtu", "0 (not sent)"),
        ('[eap_radius]\nnas_identifier = ""', "eap_radius.nas_identifier", "1 to 253"),
        ("[eap_radius]\nsockets = 0", "eap_radius.sockets", "between 1 and 64"),
        ("[eap_radius]\ntimout = 3", "eap_radius.timout", "did you mean 'timeout'"),
        ('[eap_radius]\nservers = "a"', "eap_radius.servers", "expected a table"),
        ('[secrets.radius-x]\nsecret = "s"', "secrets.radius-x", "no [eap_radius.servers.x]"),
        ('[secrets.radius-a]\nid = "a"\nsecret = "s"\n[eap_radius.servers.a]\n'
         'address = "192.0.2.1"', "secrets.radius-a", "has no id"),
    ],
)  # fmt: skip
def test_located_errors(text: str, where: str, what: str) -> None:
    errs = errors(text)
    assert any(e.startswith(where + ":") and what in e for e in errs), errs


def test_a_radius_secret_is_never_a_psk() -> None:
    text = """
    [connections.c]
    remote_addrs = "192.0.2.2"
    [connections.c.local]
    id = "a.example"
    [eap_radius.servers.r]
    address = "192.0.2.10"
    [secrets.radius-r]
    secret = "radius-only"
    """
    errs = errors(text)
    assert any(e.startswith("connections.c.local.auth:") and "no PSK" in e for e in errs)


def test_radius_secret_from_the_secrets_file(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[secrets.radius-a]\nsecret = "from-the-file"\n')
    os.chmod(secrets, 0o600)
    main = tmp_path / "pyipsec.toml"
    main.write_text(
        'secrets_file = "secrets.toml"\n[eap_radius.servers.a]\naddress = "192.0.2.1"\n'
    )
    cfg = load_config(main).eap_radius
    assert cfg.servers[0].secret == b"from-the-file"


def test_an_eap_radius_gateway_needs_a_server() -> None:
    gateway = """
    [connections.rw]
    [connections.rw.local]
    id = "gw.example.net"
    auth = "psk"
    [connections.rw.remote]
    auth = "eap-radius"
    [secrets.ike-gw]
    id = "gw.example.net"
    secret = "gateway psk"
    """
    errs = errors(gateway)
    assert any(
        e.startswith("connections.rw.remote.auth:") and "needs a RADIUS server" in e
        for e in errs
    ), errs
    with_server = textwrap.dedent(gateway) + (
        '[eap_radius.servers.r]\naddress = "192.0.2.10"\n[secrets.radius-r]\nsecret = "s"\n'
    )
    (conn,) = load_config_text(with_server).connections
    assert conn.remote_auth == "eap-radius"
