"""Unit tests of the interop harness itself (no root, no namespaces, no strongSwan)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .capture_fixtures import key_sets, parse_dumps, payload_lists
from .pyipsec_daemon import pyipsec_toml, toml_text
from .strongswan import ConnSpec, parse_vici_raw, render_swanctl, swanctl_conf

RAW = (
    "list-sa event {gcm {uniqueid=1 version=2 state=ESTABLISHED local-host=198.51.100.2 "
    "initiator-spi=a56c9bb8e9f82619 nat-local=yes child-sas {net-1 {name=net state=INSTALLED "
    "spi-in=932f3e05 local-ts=[203.0.113.0/26 2001:db8:a::/64] remote-ts=[203.0.113.64/26]}}}}\n"
    "list-sas reply {}\n"
)


def test_parse_vici_raw() -> None:
    """Sections, key=value pairs and lists of ``swanctl --raw`` become dicts."""
    msgs = parse_vici_raw(RAW)
    assert [m[0] for m in msgs] == ["list-sa event", "list-sas reply"]
    sa = msgs[0][1]["gcm"]
    assert sa["state"] == "ESTABLISHED" and sa["nat-local"] == "yes"
    child = sa["child-sas"]["net-1"]
    assert child["spi-in"] == "932f3e05"
    assert child["local-ts"] == ["203.0.113.0/26", "2001:db8:a::/64"]
    assert child["remote-ts"] == ["203.0.113.64/26"]
    assert msgs[1][1] == {}


def test_swanctl_conf_rendering() -> None:
    """Nested dicts render as swanctl sections; booleans and lists as strongSwan expects."""
    text = swanctl_conf({"connections": {"a": {"encap": True, "local_ts": ["x", "y"],
                                               "skip": None, "local": {"id": "l"}}}})
    assert text == ("connections {\n    a {\n        encap = yes\n        local_ts = x, y\n"
                    "        local {\n            id = l\n        }\n    }\n}\n")


def test_connspec() -> None:
    """A ConnSpec carries identities and subnets of its side, and the PSK."""
    text = render_swanctl([ConnSpec(name="c", side="right", proposals="p", esp_proposals="e",
                                    child_rekey_time=30)])
    assert "id = right.example.net" in text and "remote_ts = 203.0.113.0/26" in text
    assert "rekey_time = 30s" in text and '"interop-testbed-psk-0123456789"' in text
    with pytest.raises(ValueError):
        ConnSpec(side="middle").render()


def test_pyipsec_toml_loads(tmp_path: Path) -> None:
    """The generated daemon TOML is accepted by pyipsec's own loader."""
    loader = pytest.importorskip("pyipsec.config.loader")
    text = pyipsec_toml(side="left", state_dir=tmp_path, remote_addrs=["192.0.2.2"],
                        proposals="aes256gcm16-prfsha256-x25519",
                        esp_proposals="aes256gcm16-x25519", child_rekey_time=10)
    cfg = loader.load_config_text(text)
    (conn,) = cfg.connections
    assert conn.local_id == "left.example.net" and conn.psk == b"interop-testbed-psk-0123456789"
    assert conn.children[0].lifetimes.rekey_time == 10
    assert cfg.control_socket == str(tmp_path / "control.sock")
    assert toml_text({"a.b": {"x": [1, "y"], "z": False}}) == '[a.b]\nx = [1, "y"]\nz = false\n'


LOG = """\
D T 09[IKE] <gcm|1> shared Diffie Hellman secret => 4 bytes @ 0x7f
D T 09[IKE] <gcm|1>    0: 01 02 03 04                                      ....
D T 10[ENC] <gcm|1> parsed IKE_AUTH response 1 [ IDr AUTH N(MOBIKE_SUP) ]
D T 09[IKE] <gcm|1> SKEYSEED => 2 bytes @ 0x7f
D T 09[IKE] <gcm|1>    0: AA BB                                            ..
D T 09[IKE] <gcm|1> Sk_d secret => 2 bytes @ 0x7f
D T 09[IKE] <gcm|1>    0: 0D 0D                                            ..
D T 09[IKE] <gcm|1> Sk_pr secret => 18 bytes @ 0x7f
D T 09[IKE] <gcm|1>    0: 00 01 02 03 04 05 06 07 08 09 0A 0B 0C 0D 0E 0F  ................
D T 09[IKE] <gcm|1>   16: 10 11                                            ..
D T 09[IKE] <gcm|1> reinitiating already active tasks
"""


def test_charon_log_parsing() -> None:
    """Hex dumps and payload lists are read back from a charon log."""
    dumps = dict(parse_dumps(LOG))
    assert dumps["SKEYSEED"] == b"\xaa\xbb" and dumps["Sk_pr secret"] == bytes(range(18))
    (ks,) = key_sets(LOG)
    assert ks == {"shared_secret": b"\x01\x02\x03\x04", "skeyseed": b"\xaa\xbb",
                  "sk_d": b"\x0d\x0d", "sk_pr": bytes(range(18))}
    (pl,) = payload_lists(LOG)
    assert pl == {"sent": False, "exchange": "IKE_AUTH", "response": True, "message_id": 1,
                  "payloads": ["IDr", "AUTH", "N(MOBIKE_SUP)"]}
