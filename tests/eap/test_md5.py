"""EAP-MD5-Challenge (RFC 3748 §5.4, RFC 1994 §4.1) between our server and peer."""

from __future__ import annotations

import hashlib

import pytest

from pyipsec.eap.base import EapError, EapPeerSession, EapServerSession, Outcome
from pyipsec.eap.factory import peer_session, server_session
from pyipsec.eap.md5 import Md5Peer, Md5Server, md5_response
from pyipsec.eap.packet import EapType, parse
from pyipsec.eap.settings import EapMethod, EapPeerSettings, EapServerSettings

from .helpers import converse, make_rng

USERS = ((b"carol", b"carol-secret"), (b"dave", b"dave-secret"))


def server() -> EapServerSession:
    settings = EapServerSettings(method=EapMethod.MD5, users=USERS)
    return server_session(settings, make_rng(b"server"))


def peer(identity: bytes = b"carol", secret: bytes = b"carol-secret") -> EapPeerSession:
    return peer_session(EapPeerSettings(identity, secret), make_rng(b"peer"))


def test_response_is_md5_of_identifier_secret_challenge() -> None:
    challenge = bytes(range(16))
    assert md5_response(7, b"pw", challenge) == hashlib.md5(b"\x07pw" + challenge).digest()


def test_success_without_msk() -> None:
    t = converse(server(), peer())
    assert t.server.outcome is Outcome.SUCCESS, t.server.reason
    assert t.server.identity == b"carol"
    assert t.peer is not None and t.peer.outcome is Outcome.SUCCESS
    assert t.server.msk == b"" == t.peer.msk
    # Identity, then one MD5 round; Success carries the Identifier of the last Response
    assert [parse(p).eap_type for p in t.to_peer[:2]] == [EapType.IDENTITY, EapType.MD5]
    assert parse(t.to_peer[-1]).identifier == parse(t.to_server[-1]).identifier
    challenge = parse(t.to_peer[1])
    answer = parse(t.to_server[1])
    assert challenge.data[0] == 16 and answer.data[0] == 16
    expected = md5_response(challenge.identifier, b"carol-secret", challenge.data[1:])
    assert answer.data[1:] == expected


def test_identifiers_increment_from_a_random_start() -> None:
    t = converse(server(), peer())
    first, second = (parse(p).identifier for p in t.to_peer[:2])
    assert second == (first + 1) & 0xFF
    other = converse(  # another rng, another first Identifier
        server_session(EapServerSettings(EapMethod.MD5, USERS), make_rng(b"x")), peer()
    )
    assert parse(other.to_peer[0]).identifier != first


def test_wrong_password() -> None:
    t = converse(server(), peer(secret=b"guess"))
    assert t.server.outcome is Outcome.FAILURE
    assert "wrong MD5 response" in t.server.reason and "carol" in t.server.reason
    assert t.peer is not None and t.peer.outcome is Outcome.FAILURE
    assert "EAP-Failure" in t.peer.reason


def test_unknown_identity_fails_after_the_challenge() -> None:
    t = converse(server(), peer(identity=b"mallory"))
    assert t.server.outcome is Outcome.FAILURE
    assert "no EAP secret for identity b'mallory'" in t.server.reason
    assert len(t.to_server) == 2  # the challenge went out as for a known user


def test_identity_given_skips_the_identity_round() -> None:
    settings = EapServerSettings(EapMethod.MD5, USERS, ask_identity=False)
    s = server_session(settings, make_rng(), identity=b"dave")
    t = converse(s, peer(b"dave", b"dave-secret"))
    assert t.server.outcome is Outcome.SUCCESS and t.server.identity == b"dave"
    assert parse(t.to_peer[0]).eap_type == EapType.MD5


def test_identity_round_when_the_given_identity_is_empty() -> None:
    settings = EapServerSettings(EapMethod.MD5, USERS, ask_identity=False)
    t = converse(server_session(settings, make_rng()), peer())
    assert parse(t.to_peer[0]).eap_type == EapType.IDENTITY
    assert t.server.outcome is Outcome.SUCCESS


def test_empty_identity_response_keeps_the_given_identity() -> None:
    s = server_session(EapServerSettings(EapMethod.MD5, USERS), make_rng(), identity=b"carol")
    t = converse(s, peer(identity=b""))
    assert t.server.outcome is Outcome.SUCCESS and t.server.identity == b"carol"


@pytest.mark.parametrize("value", [b"", b"\x00", b"\x10abc", b"\x05abcd"])
def test_malformed_value(value: bytes) -> None:
    s = Md5Server(b"carol", b"pw", make_rng())
    s.start(1)
    with pytest.raises(EapError, match="MD5-Challenge"):
        s.process(1, value)
    with pytest.raises(EapError):
        Md5Peer(b"pw").process(1, value)


def test_short_response_value_is_wrong() -> None:
    s = Md5Server(b"carol", b"pw", make_rng())
    s.start(1)
    result = s.process(1, b"\x01\x00")
    assert not getattr(result, "ok", True)


def test_peer_answers_any_challenge_size_and_ignores_the_name() -> None:
    reply = Md5Peer(b"pw").process(9, b"\x03abcNAME")
    assert getattr(reply, "type_data", b"") == b"\x10" + md5_response(9, b"pw", b"abc")
