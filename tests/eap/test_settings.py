"""The EAP settings the core builds from the configuration."""

from __future__ import annotations

import pytest

from pyipsec.eap.settings import EapMethod, EapPeerSettings, EapServerSettings


@pytest.mark.parametrize(
    ("name", "method"),
    [
        ("eap-md5", EapMethod.MD5),
        ("eap-mschapv2", EapMethod.MSCHAPV2),
        ("EAP-TLS", EapMethod.TLS),
        ("eap-radius", EapMethod.RADIUS),
        ("eap", None),
    ],
)
def test_from_auth(name: str, method: EapMethod | None) -> None:
    assert EapMethod.from_auth(name) is method


def test_from_auth_unknown() -> None:
    with pytest.raises(ValueError, match="unknown EAP method 'eap-gtc'"):
        EapMethod.from_auth("eap-gtc")


def test_eap_types() -> None:
    assert EapMethod.MSCHAPV2.eap_type == 26
    assert EapMethod.RADIUS.eap_type is None
    assert EapMethod.from_eap_type(13) is EapMethod.TLS
    assert EapMethod.from_eap_type(6) is None


def test_server_secret_lookup() -> None:
    s = EapServerSettings(users=((b"a", b"1"), (b"b", b"2"), (b"a", b"3")))
    assert s.secret_of(b"a") == b"1"
    assert s.secret_of(b"A") is None


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"tls_min_version": "1.1"}, "TLS version '1.1'"),
        ({"tls_min_version": "1.3", "tls_max_version": "1.2"}, "above"),
        ({"tls_fragment_size": 63}, "tls_fragment_size 63"),
        ({"tls_fragment_size": 65536}, "tls_fragment_size"),
    ],
)
def test_tls_parameters_checked(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EapServerSettings(**kw)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        EapPeerSettings(b"x", **kw)  # type: ignore[arg-type]


def test_server_name_not_empty() -> None:
    with pytest.raises(ValueError, match="server_name"):
        EapServerSettings(server_name=b"")


def test_tls_server_needs_credentials() -> None:
    with pytest.raises(ValueError, match="eap-tls needs"):
        EapServerSettings(EapMethod.TLS)


def test_peer_cannot_use_radius() -> None:
    with pytest.raises(ValueError, match="server"):
        EapPeerSettings(b"x", methods=(EapMethod.RADIUS,))


def test_peer_acceptable_methods_need_credentials() -> None:
    assert EapPeerSettings(b"x").acceptable() == ()
    assert EapMethod.MD5 in EapPeerSettings(b"x", b"pw").acceptable()
    only = EapPeerSettings(b"x", b"pw", methods=(EapMethod.MD5, EapMethod.TLS))
    assert only.acceptable() == (EapMethod.MD5,)  # no certificate for TLS
