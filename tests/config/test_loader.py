"""Tests of the TOML configuration loader: values, defaults and every error path."""

from __future__ import annotations

import ipaddress
import os
import textwrap
from pathlib import Path

import pytest

from pyipsec.config.loader import (
    ConfigError,
    ConfigIssue,
    load_config,
    load_config_text,
    parse_bytes,
    parse_duration,
    parse_traffic_selector,
)
from pyipsec.config.model import DpdAction, Mode, StartAction

GOOD = """
[daemon]
listen = ["198.51.100.2", "::"]
control_socket = "/tmp/x.sock"
keylog_file = "/tmp/keys"
retransmit_tries = 3
retransmit_timeout = "2s"
retransmit_base = 1.5
[daemon.tun]
name = "pyi0"
mtu = 1380
addresses = ["203.0.113.1/32", "2001:db8:a::1/128"]
[daemon.log]
default = "info"
ike = "debug"
esp = "warning"

[connections.gcm]
local_addrs = "198.51.100.2"
remote_addrs = ["192.0.2.2"]
remote_port = 500
proposals = "aes256gcm16-prfsha256-x25519"
rekey_time = "4h"
over_time = "10m"
rand_time = "5m"
dpd_delay = "5s"
dpd_timeout = "30s"
dpd_action = "restart"
encap = "yes"
keepalive = "15s"
[connections.gcm.local]
id = "left.example.net"
auth = "psk"
[connections.gcm.remote]
id = "right.example.net"
[connections.gcm.children.net]
local_ts = ["203.0.113.0/26", "2001:db8:a::/64"]
remote_ts = "203.0.113.64/26, 2001:db8:b::/64"
esp_proposals = ["aes256gcm16", "aes128-sha256-modp2048"]
rekey_time = "30m"
life_time = "40m"
rekey_bytes = "1G"
rekey_packets = 1000000
start_action = "trap"
dpd_action = "clear"
replay_window = 1024
[connections.gcm.children.host]
local_ts = ["dynamic"]
remote_ts = ["dynamic[udp/500-510]"]
mode = "transport"

[secrets.main]
ids = ["left.example.net", "right.example.net"]
secret = "0x00112233445566778899aabbccddeeff"
"""


def test_full_config() -> None:
    cfg = load_config_text(GOOD)
    assert cfg.listen_addrs == ("198.51.100.2", "::")
    assert cfg.tun_name == "pyi0" and cfg.tun_mtu == 1380
    assert cfg.tun_addresses == ("203.0.113.1/32", "2001:db8:a::1/128")
    assert cfg.log_levels == {"default": "info", "ike": "debug", "esp": "warning"}
    assert cfg.keylog_file == "/tmp/keys"
    (c,) = cfg.connections
    assert c.name == "gcm"
    assert c.local_addrs == ("198.51.100.2",) and c.remote_addrs == ("192.0.2.2",)
    assert c.local_id == "left.example.net" and c.remote_id == "right.example.net"
    assert c.psk == bytes.fromhex("00112233445566778899aabbccddeeff")
    assert c.ike_proposals == ("aes256gcm16-prfsha256-x25519",)
    assert c.lifetimes.rekey_time == 14400 and c.lifetimes.over_time == 600
    assert c.lifetimes.rand_time == 300
    assert c.dpd.interval == 5 and c.dpd.timeout == 30 and c.dpd.action is DpdAction.RESTART
    assert c.encap is True and c.keepalive_interval == 15
    assert c.retransmit.tries == 3 and c.retransmit.timeout == 2 and c.retransmit.base == 1.5
    net = c.child("net")
    assert net.start_action is StartAction.TRAP and net.dpd_action is DpdAction.CLEAR
    assert net.lifetimes.rekey_time == 1800 and net.lifetimes.over_time == 600
    assert net.lifetimes.rekey_bytes == 1 << 30 and net.lifetimes.life_bytes > 1 << 30
    assert net.lifetimes.rekey_packets == 1000000
    assert net.replay_window == 1024
    assert [str(s.start) for s in net.remote_ts] == ["203.0.113.64", "2001:db8:b::"]
    assert net.esp_proposals == ("aes256gcm16", "aes128-sha256-modp2048")
    host = c.child("host")
    assert host.mode is Mode.TRANSPORT
    assert host.local_ts[0].start == ipaddress.ip_address("198.51.100.2")
    assert host.remote_ts[0].protocol == 17 and host.remote_ts[0].start_port == 500
    assert host.remote_ts[0].end_port == 510


def test_defaults_minimal() -> None:
    cfg = load_config_text(
        """
        [connections.c]
        remote_addrs = ["192.0.2.2"]
        [connections.c.children.x]
        local_ts = ["203.0.113.0/26"]
        remote_ts = ["203.0.113.64/26"]
        [secrets.any]
        secret = "plain text secret"
        """.replace("        ", "")
    )
    c = cfg.connections[0]
    assert c.psk == b"plain text secret"
    assert c.lifetimes.rekey_time == 14400 and c.lifetimes.over_time == 1440
    assert c.child("x").lifetimes.rekey_time == 3600
    assert cfg.listen_addrs == ("0.0.0.0",)
    assert cfg.control_socket == "/run/pyipsec/control.sock"


def test_rekey_time_sets_over_and_rand_defaults() -> None:
    cfg = load_config_text(
        '[connections.c]\nrekey_time = "1000s"\n[secrets.s]\nsecret = "x"\n'
        '[connections.c.children.a]\nlocal_ts = ["10.0.0.0/8"]\nremote_ts = ["0.0.0.0/0"]\n'
        "rekey_time = 100\n"
    )
    c = cfg.connections[0]
    assert c.lifetimes.over_time == 100 and c.lifetimes.rand_time == 100
    a = c.child("a")
    assert a.lifetimes.over_time == 10 and a.lifetimes.rand_time == 10


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (30, 30.0),
        (1.5, 1.5),
        ("30", 30.0),
        ("30s", 30.0),
        ("5m", 300.0),
        ("4h", 14400.0),
        ("1d", 86400.0),
        (" 2 H ", 7200.0),
        ("0.5m", 30.0),
    ],
)
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    "value", ["4x", "", "h", "-5", -1, True, None, [1], float("nan"), float("inf")]
)
def test_parse_duration_errors(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


def test_parse_bytes() -> None:
    assert parse_bytes(10) == 10
    assert parse_bytes("10k") == 10240
    assert parse_bytes("2M") == 2 << 20
    assert parse_bytes("1g") == 1 << 30
    for bad in ("1.5k", "k", -1, True, 1.5):
        with pytest.raises(ValueError):
            parse_bytes(bad)


def test_parse_traffic_selector_forms() -> None:
    s = parse_traffic_selector("192.0.2.1-192.0.2.9[tcp/443]")
    assert (str(s.start), str(s.end), s.protocol, s.start_port, s.end_port) == (
        "192.0.2.1",
        "192.0.2.9",
        6,
        443,
        443,
    )
    s = parse_traffic_selector("10.1.2.3")
    assert s.start == s.end
    s = parse_traffic_selector("2001:db8::/32[58]")
    assert s.protocol == 58 and s.start_port == 0 and s.end_port == 65535
    s = parse_traffic_selector("0.0.0.0/0[udp/%any]")
    assert s.protocol == 17 and s.end_port == 65535
    for bad in (
        "192.0.2.9-192.0.2.1",
        "192.0.2.1-2001:db8::1",
        "dynamic",
        "10.0.0.0/8[bogus]",
        "10.0.0.0/8[tcp/70000]",
        "10.0.0.0/8[tcp/9-1]",
        "not-an-address",
        "[]",
    ):
        with pytest.raises(ValueError):
            parse_traffic_selector(bad)


def errors_of(text: str, **kw: object) -> list[str]:
    with pytest.raises(ConfigError) as ei:
        load_config_text(textwrap.dedent(text), **kw)  # type: ignore[arg-type]
    return [str(e) for e in ei.value.errors]


def test_every_error_is_reported_with_location() -> None:
    errs = errors_of(
        """
        bogus = 1
        [daemon]
        listen = ["not-an-ip"]
        ike_port = 70000
        natt_port = "x"
        cookie_threshold = true
        tun = { name = "this-name-is-way-too-long", mtu = 100, addresses = ["x/33"], foo = 1 }
        log = { ike = "loud", nonsense = "debug" }
        rekey = 1
        [connections.gcm]
        local_addrs = ["198.51.100.2"]
        remote_addrs = ["192.0.2.2", "nope"]
        proposals = ["aes999-prfsha256-x25519"]
        rekey_tim = "1h"
        rekey_time = "1x"
        dpd_action = "explode"
        encap = 3
        version = 1
        local = { auth = "pubkey", id = "left.example.net", extra = 1 }
        [connections.gcm.children.net]
        local_ts = ["203.0.113.0/33"]
        remote_ts = []
        esp_proposals = ["aes999"]
        mode = "tunel"
        start_action = "go"
        replay_window = -1
        rekey_time = "10m"
        life_time = "5m"
        rand_time = "20m"
        rekey_bytes = 100
        life_bytes = 50
        rekey_packets = 10
        life_packets = 5
        [connections.other.children.net]
        local_ts = "dynamic"
        [secrets.nosecret]
        id = "a"
        [secrets.badhex]
        secret = "0xzz"
        [secrets.badb64]
        secret = "0s!!!"
        [secrets.empty]
        secret = ""
        """
    )
    text = "\n".join(errs)
    expected = [
        "bogus: unknown key",
        "daemon.listen: invalid address 'not-an-ip'",
        "daemon.ike_port: must be between 0 and 65535",
        "daemon.natt_port: expected an integer",
        "daemon.cookie_threshold: expected an integer",
        "daemon.tun.name: invalid interface name",
        "daemon.tun.mtu: must be between 576 and 65535",
        "daemon.tun.addresses: invalid interface address 'x/33'",
        "daemon.tun.foo: unknown key",
        "daemon.log.ike: invalid log level 'loud'",
        "daemon.log.nonsense: unknown key",
        "daemon.rekey: unknown key",
        "connections.gcm.remote_addrs: invalid address 'nope'",
        "connections.gcm.proposals: unknown algorithm 'aes999'",
        "connections.gcm.rekey_tim: unknown key (hint: did you mean 'rekey_time'?)",
        "connections.gcm.rekey_time: invalid duration '1x'",
        "connections.gcm.dpd_action: invalid value 'explode' (hint: one of 'clear'",
        "connections.gcm.encap: expected true/false",
        "connections.gcm.version: only IKEv2 is supported",
        'connections.gcm.local.certs: missing: local.auth = "pubkey" needs a certificate',
        "connections.gcm.local.extra: unknown key",
        "connections.gcm.children.net.local_ts:",
        "connections.gcm.children.net.remote_ts: must not be empty",
        "connections.gcm.children.net.esp_proposals: unknown algorithm 'aes999'",
        "connections.gcm.children.net.mode: invalid value 'tunel'",
        "connections.gcm.children.net.start_action: invalid value 'go'",
        "connections.gcm.children.net.replay_window: must be between",
        "connections.gcm.children.net.life_time: must be greater than rekey_time",
        "connections.gcm.children.net.rand_time: must be smaller than rekey_time",
        "connections.gcm.children.net.life_bytes: must be greater than rekey_bytes",
        "connections.gcm.children.net.life_packets: must be greater than rekey_packets",
        "connections.other.children.net.local_ts: 'dynamic' needs exactly one",
        "connections.other.children.net: child name already used in connections.gcm",
        "secrets.nosecret.secret: missing",
        "secrets.badhex.secret: invalid hex secret",
        "secrets.badb64.secret: invalid base64 secret",
        "secrets.empty.secret: empty secret",
    ]
    for e in expected:
        assert e in text, f"missing {e!r} in:\n{text}"


def test_config_error_message_lists_everything() -> None:
    err = ConfigError([ConfigIssue("a.b", "bad"), ConfigIssue("", "worse")], "f.toml")
    assert str(err) == "f.toml: 2 configuration errors:\n  a.b: bad\n  worse"
    assert str(ConfigError([ConfigIssue("x", "y")])).startswith("1 configuration error:")


def test_invalid_toml() -> None:
    errs = errors_of("[daemon\n")
    assert errs[0].startswith("invalid TOML")


def test_missing_psk_is_an_error() -> None:
    errs = errors_of(
        """
        [connections.c.local]
        id = "a"
        [connections.c.remote]
        id = "b"
        [secrets.s]
        id = "zzz"
        secret = "x"
        """
    )
    assert any(e.startswith("connections.c.local.auth: no PSK in [secrets]") for e in errs)


def test_psk_best_match() -> None:
    cfg = load_config_text(
        textwrap.dedent(
            """
            [connections.c.local]
            id = "a"
            [connections.c.remote]
            id = "b"
            [connections.d.local]
            id = "a"
            [connections.d.remote]
            id = "q"
            [secrets.wild]
            secret = "wild"
            [secrets.local_only]
            id = "a"
            secret = "local"
            [secrets.both]
            id-1 = "a"
            id-2 = "b"
            secret = "0sYm90aA=="
            """
        )
    )
    c, d = cfg.connections
    assert c.psk == b"both"
    assert d.psk == b"local"


def test_local_id_defaults_to_address() -> None:
    cfg = load_config_text(
        '[connections.c]\nlocal_addrs = ["198.51.100.2"]\n[secrets.s]\nsecret = "x"\n'
    )
    assert cfg.connections[0].local_id == "198.51.100.2"


def test_misc_type_errors() -> None:
    errs = errors_of(
        """
        connections = 5
        secrets_file = 7
        [daemon]
        natt_port = 500
        """
    )
    text = "\n".join(errs)
    assert "connections: expected a table" in text
    assert "secrets_file: expected a string" in text
    assert "daemon.natt_port: must differ from ike_port" in text
    errs = errors_of('[connections.c]\nproposals = []\nreauth_time = "1h"\nlocal_addrs = 5\n')
    text = "\n".join(errs)
    assert "connections.c.proposals: must not be empty" in text
    assert "connections.c.local_addrs: expected a string or a list" in text


def test_life_and_over_time_conflict() -> None:
    errs = errors_of(
        '[connections.c]\nrekey_time = "1h"\nlife_time = "2h"\nover_time = "1m"\n'
        '[secrets.s]\nsecret = "x"\n'
    )
    assert any("set either life_time or over_time" in e for e in errs)


def test_reauth_time() -> None:
    cfg = load_config_text(
        '[connections.c]\nrekey_time = 0\nreauth_time = "2h"\n[secrets.s]\nsecret = "x"\n'
    )
    c = cfg.connections[0]
    assert c.reauth is True and c.lifetimes.rekey_time == 7200


def _secrets_file(tmp_path: Path, mode: int, body: str) -> Path:
    p = tmp_path / "secrets.toml"
    p.write_text(body)
    os.chmod(p, mode)
    main = tmp_path / "main.toml"
    main.write_text(
        'secrets_file = "secrets.toml"\n[connections.c.local]\nid = "a"\n'
        '[connections.c.remote]\nid = "b"\n'
    )
    return main


def test_secrets_file(tmp_path: Path) -> None:
    main = _secrets_file(tmp_path, 0o600, '[secrets.s]\nids = ["a", "b"]\nsecret = "s3cret"\n')
    cfg = load_config(main)
    assert cfg.connections[0].psk == b"s3cret"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_secrets_file_permissions_refused(tmp_path: Path, mode: int) -> None:
    main = _secrets_file(tmp_path, mode, '[secrets.s]\nsecret = "s3cret"\n')
    with pytest.raises(ConfigError) as ei:
        load_config(main)
    text = str(ei.value)
    assert "secrets_file: secrets file" in text and "accessible by group/other" in text
    assert f"{mode:04o}" in text and "chmod 600" in text


def test_secrets_file_errors(tmp_path: Path) -> None:
    main = _secrets_file(tmp_path, 0o600, "[secrets\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(main)
    main = _secrets_file(tmp_path, 0o600, 'other = 1\n[secrets.s]\nsecret = "x"\n')
    with pytest.raises(ConfigError, match=r"secrets\.toml:other: unknown key"):
        load_config(main)
    (tmp_path / "secrets.toml").unlink()
    with pytest.raises(ConfigError, match="cannot read secrets file"):
        load_config(main)


def test_non_finite_toml_numbers_refused() -> None:
    # TOML has nan/inf floats: a nan deadline never compares and would spin the timer
    with pytest.raises(ConfigError) as ei:
        load_config_text(
            "[daemon]\nretransmit_base = nan\n[connections.c]\ndpd_delay = nan\n"
            'rekey_time = inf\n[secrets.s]\nsecret = "x"\n'
        )
    text = str(ei.value)
    assert "daemon.retransmit_base: must be a finite number >= 1" in text
    assert "connections.c.dpd_delay: duration must be a finite number" in text
    assert "connections.c.rekey_time: duration must be a finite number" in text


@pytest.mark.parametrize("base", ["0.5", "0", "-2", "true", '"x"'])
def test_retransmit_base_below_one_refused(base: str) -> None:
    # RetryPolicy refuses a shrinking backoff (RFC 7296 §2.4): a located config error
    # instead of a ValueError when the core builds its first IKE SA
    with pytest.raises(ConfigError, match=r"daemon\.retransmit_base: "):
        load_config_text(f"[daemon]\nretransmit_base = {base}\n")


@pytest.mark.parametrize("timeout", ["0", '"0s"'])
def test_retransmit_timeout_must_be_positive(timeout: str) -> None:
    with pytest.raises(ConfigError, match=r"daemon\.retransmit_timeout: must be > 0"):
        load_config_text(f"[daemon]\nretransmit_timeout = {timeout}\n")


def test_secrets_not_in_repr(tmp_path: Path) -> None:
    cfg = load_config_text(
        '[connections.c]\n[secrets.s]\nsecret = "s3cret-value"\n'
    )
    assert cfg.connections[0].psk == b"s3cret-value"
    assert b"s3cret".hex() not in repr(cfg) and "s3cret" not in repr(cfg)


def test_main_config_with_secrets_warns_when_readable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    p = tmp_path / "main.toml"
    p.write_text('[connections.c]\n[secrets.s]\nsecret = "s3cret"\n')
    os.chmod(p, 0o644)
    with caplog.at_level("WARNING", logger="pyipsec.cfg"):
        assert load_config(p).connections[0].psk == b"s3cret"
    assert "holds [secrets] and is accessible by group/other (mode 0644)" in caplog.text
    assert "s3cret" not in caplog.text
    caplog.clear()
    os.chmod(p, 0o600)
    with caplog.at_level("WARNING", logger="pyipsec.cfg"):
        load_config(p)
    assert caplog.text == ""
    # no secrets in it: nothing to say about its mode
    p.write_text("[connections.c]\n")
    os.chmod(p, 0o644)
    with caplog.at_level("WARNING", logger="pyipsec.cfg"), pytest.raises(ConfigError):
        load_config(p)  # (no PSK for the connection)
    assert "holds [secrets]" not in caplog.text


def test_load_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(bad)


def test_proposal_checker_injection() -> None:
    calls: list[tuple[str, str]] = []

    def check(text: str, kind: str) -> None:
        calls.append((text, kind))
        if text == "nope":
            raise ValueError("no (hint: custom)")

    errs = errors_of(
        '[connections.c]\nproposals = ["nope"]\n[secrets.s]\nsecret = "x"\n'
        '[connections.c.children.n]\nlocal_ts = ["10.0.0.0/8"]\nremote_ts = ["10.0.0.0/8"]\n'
        'esp_proposals = ["fine"]\n',
        check_proposal=check,
    )
    assert errs == ["connections.c.proposals: no (hint: custom)"]
    assert ("fine", "esp") in calls and ("nope", "ike") in calls


def test_proposal_errors_come_from_the_core_parser_with_hints() -> None:
    errs = errors_of(
        '[connections.c]\nproposals = ["aes256gcm16-prfsha256-x2551"]\n[secrets.s]\nsecret = "x"\n'
    )
    assert errs[0].startswith(
        "connections.c.proposals: unknown algorithm 'x2551' in proposal "
        "'aes256gcm16-prfsha256-x2551': did you mean x25519"
    )
    errs = errors_of('[connections.c]\nproposals = ["zzzzzz"]\n[secrets.s]\nsecret = "x"\n')
    assert errs[0].startswith("connections.c.proposals: unknown algorithm 'zzzzzz'")
    assert errs[0].endswith(
        "(hint: e.g. 'aes256gcm16-prfsha256-x25519' for IKE, 'aes256gcm16' for ESP)"
    )
    errs = errors_of(
        '[connections.c]\nproposals = ["aes128-prfsha256-x25519"]\n[secrets.s]\nsecret = "x"\n'
    )
    assert errs == [
        "connections.c.proposals: no integrity algorithm in proposal 'aes128-prfsha256-x25519'"
    ]
    errs = errors_of(
        '[connections.c]\n[secrets.s]\nsecret = "x"\n[connections.c.children.n]\n'
        'local_ts = ["10.0.0.0/8"]\nremote_ts = ["10.0.0.0/8"]\n'
        'esp_proposals = ["aes128-prfsha256"]\n'
    )
    assert errs == [
        "connections.c.children.n.esp_proposals: 'prfsha256' is not valid in an ESP proposal "
        "('aes128-prfsha256')"
    ]


def test_default_and_strongswan_aead_spellings() -> None:
    from pyipsec.ikev2.proposals import DEFAULT_ESP_PROPOSALS, DEFAULT_IKE_PROPOSALS

    cfg = load_config_text(
        '[connections.c]\nproposals = ["aes256gcm16-sha256-x25519", "default"]\n'
        '[secrets.s]\nsecret = "x"\n[connections.c.children.n]\n'
        'local_ts = ["10.0.0.0/8"]\nremote_ts = ["10.0.0.0/8"]\n'
        'esp_proposals = ["default", "aes256gcm16-sha256"]\n'
    )
    conn = cfg.connections[0]
    assert conn.ike_proposals == ("aes256gcm16-sha256-x25519", *DEFAULT_IKE_PROPOSALS)
    assert conn.children[0].esp_proposals == (*DEFAULT_ESP_PROPOSALS, "aes256gcm16-sha256")


def test_loader_has_no_proposal_fallback() -> None:
    import pyipsec.config.loader as loader

    assert not hasattr(loader, "_fallback_check_proposal")
    assert "importlib" not in vars(loader)


def test_example_configs_load() -> None:
    ex = Path(__file__).resolve().parents[2] / "examples"
    files = sorted(ex.glob("*.toml"))
    assert files, "examples/*.toml missing"
    for f in files:
        cfg = load_config(f)
        assert cfg.connections


def test_fragmentation_keys() -> None:
    cfg = load_config_text(
        "[connections.c]\nfragmentation = false\nfragment_size = 576\n"
        '[secrets.s]\nsecret = "x"\n'
    )
    (c,) = cfg.connections
    assert c.fragmentation is False and c.fragment_size == 576
    (d,) = load_config_text('[connections.c]\n[secrets.s]\nsecret = "x"\n').connections
    assert d.fragmentation is True and d.fragment_size == 1280
    with pytest.raises(ConfigError, match=r"connections\.c\.fragment_size"):
        load_config_text('[connections.c]\nfragment_size = 100\n[secrets.s]\nsecret = "x"\n')
