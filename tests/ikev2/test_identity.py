"""Configured identities (RFC 7296 §3.5) follow swanctl: ``keyid:TEXT`` is the
octets of TEXT, ``keyid:#hex`` is hex; the exchanges and the loader use the
same parser, :meth:`IdPayload.from_string`."""

from __future__ import annotations

import pytest

from pyipsec.config.loader import ConfigError, load_config_text
from pyipsec.ikev2.constants import IdType
from pyipsec.ikev2.payloads import IdPayload
from pyipsec.ikev2.tasks.common import identity_matches, parse_identity


@pytest.mark.parametrize(
    "text, data",
    [
        ("keyid:cafe0001", b"cafe0001"),  # 8 octets, as strongSwan sends it
        ("keyid:#cafe0001", b"\xca\xfe\x00\x01"),  # 4 octets
        ("keyid:hello", b"hello"),
        ("  keyid:hello\n", b"hello"),
    ],
)
def test_parse_identity_keyid_like_swanctl(text: str, data: bytes) -> None:
    assert parse_identity(text) == IdPayload(IdType.ID_KEY_ID, data)


@pytest.mark.parametrize(
    "text",
    ["keyid:hello", "keyid:#00ff", "moon.example.net", "@moon", "198.51.100.2", "a@b.example"],
)
def test_parse_identity_is_from_string(text: str) -> None:
    assert parse_identity(text) == IdPayload.from_string(text)


@pytest.mark.parametrize("text", ["keyid:#zz", "ipv4:1.2.3", "null:x"])
def test_parse_identity_rejects_what_from_string_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_identity(text)


def test_keyid_matching_distinguishes_the_spellings() -> None:
    got = IdPayload(IdType.ID_KEY_ID, b"\xca\xfe\x00\x01")
    assert identity_matches("keyid:#cafe0001", got)
    assert not identity_matches("keyid:cafe0001", got)
    assert identity_matches("keyid:cafe0001", IdPayload(IdType.ID_KEY_ID, b"cafe0001"))


def _conn(remote_id: str) -> str:
    return f'[connections.c]\nremote = {{ id = "{remote_id}" }}\n[secrets.s]\nsecret = "x"\n'


@pytest.mark.parametrize("ident", ["keyid:hello", "keyid:#cafe0001", "%any", "fqdn:#00ff"])
def test_loader_accepts_what_the_core_accepts(ident: str) -> None:
    cfg = load_config_text(_conn(ident))
    assert cfg.connections[0].remote_id == ident


@pytest.mark.parametrize(
    "ident, why",
    [("keyid:#zz", "non-hexadecimal"), ("ipv4:300.1.1.1", "300"), ("null:x", "ID_NULL")],
)
def test_loader_rejects_what_the_core_rejects(ident: str, why: str) -> None:
    with pytest.raises(ConfigError) as ei:
        load_config_text(_conn(ident))
    (issue,) = ei.value.errors
    assert issue.location == "connections.c.remote.id"
    assert issue.message.startswith(f"invalid identity {ident!r}")
    assert why in issue.message
    with pytest.raises(ValueError):
        IdPayload.from_string(ident)
