"""EAP-MSCHAPv2: the RFC 2759 §9.2 and RFC 3079 §3.5.3 vectors, the EAP binding
(draft-kamath-pppext-eap-mschapv2-02) and conversations between our server and peer."""

from __future__ import annotations

import pytest
from Crypto.Hash import MD4

from pyipsec.eap.base import EapPeerSession, EapServerSession, Outcome
from pyipsec.eap.factory import peer_session, server_session
from pyipsec.eap.mschapv2 import (
    MsChapV2Peer,
    MsChapV2Server,
    asymmetric_start_key,
    authenticator_response,
    challenge_hash,
    challenge_response,
    generate_nt_response,
    master_key,
    msk,
    nt_password_hash,
    parse_failure,
)
from pyipsec.eap.packet import EapType, failure, nak, parse, request, response, success
from pyipsec.eap.settings import EapMethod, EapPeerSettings, EapServerSettings

from .helpers import converse, make_rng

# RFC 2759 §9.2 "Example of Generating Authenticator Response" (and RFC 3079 §3.5.3)
USER = b"User"
PASSWORD = b"clientPass"
AUTH_CHALLENGE = bytes.fromhex("5B5D7C7D7B3F2F3E3C2C602132262628")
PEER_CHALLENGE = bytes.fromhex("21402324255E262A28295F2B3A337C7E")
CHALLENGE = bytes.fromhex("D02E4386BCE91226")
PASSWORD_HASH = bytes.fromhex("44EBBA8D5312B8D611474411F56989AE")
NT_RESPONSE = bytes.fromhex("82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF")
PASSWORD_HASH_HASH = bytes.fromhex("41C00C584BD2D91C4017A2A12FA59F3F")
AUTH_RESPONSE = "S=407A5589115FD0D6209F510FE9C04566932CDA56"
# RFC 3079 §3.5.3 (128-bit keys)
MASTER_KEY = bytes.fromhex("FDECE3717A8C838CB388E527AE3CDD31")
SEND_START_KEY_128 = bytes.fromhex("8B7CDC149B993A1BA118CB153F56DCCB")
# the RFC 3079 §3.4 constant of the server's send key (Magic3)
MAGIC3 = b"On the client side, this is the receive key; on the server side, it is the send key."


def test_rfc2759_vectors() -> None:
    assert nt_password_hash(PASSWORD) == PASSWORD_HASH
    assert MD4.new(PASSWORD_HASH).digest() == PASSWORD_HASH_HASH
    assert challenge_hash(PEER_CHALLENGE, AUTH_CHALLENGE, USER) == CHALLENGE
    assert challenge_response(CHALLENGE, PASSWORD_HASH) == NT_RESPONSE
    assert generate_nt_response(AUTH_CHALLENGE, PEER_CHALLENGE, USER, PASSWORD) == NT_RESPONSE
    got = authenticator_response(PASSWORD, NT_RESPONSE, PEER_CHALLENGE, AUTH_CHALLENGE, USER)
    assert got == AUTH_RESPONSE


def test_rfc3079_vectors() -> None:
    master = master_key(PASSWORD, NT_RESPONSE)
    assert master == MASTER_KEY
    assert asymmetric_start_key(master, MAGIC3) == SEND_START_KEY_128


def test_msk_layout_is_strongswans() -> None:
    """Receive key (Magic2) | send key (Magic3, the RFC's SendStartKey128) | 32 zeros."""
    key = msk(PASSWORD, NT_RESPONSE)
    assert len(key) == 64
    assert key[16:32] == SEND_START_KEY_128
    assert key[:16] != key[16:32] and key[:16] != bytes(16)
    assert key[32:] == bytes(32)


def test_domain_is_stripped_from_the_challenge_hash() -> None:
    assert challenge_hash(PEER_CHALLENGE, AUTH_CHALLENGE, b"EXAMPLE\\User") == CHALLENGE


def test_password_is_hashed_as_utf16() -> None:
    umlaut = "pässwörd"
    expected = nt_password_hash(umlaut.encode())
    assert expected != nt_password_hash(b"passwoerd")
    assert len(expected) == 16


def test_failure_fields() -> None:
    fields = parse_failure(b"E=691 R=1 C=00112233445566778899AABBCCDDEEFF V=3 M=bad pass word\x00")
    assert fields["E"] == "691" and fields["R"] == "1" and fields["V"] == "3"
    assert fields["M"] == "bad pass word"


# --- conversations --------------------------------------------------------------------

USERS = ((b"carol", b"c\xc3\xa4rol-pass"), (b"EXAMPLE\\dave", b"dave-pass"))


def server(method: EapMethod | None = EapMethod.MSCHAPV2) -> EapServerSession:
    return server_session(EapServerSettings(method, USERS), make_rng(b"srv"))


def peer(
    identity: bytes = b"carol", secret: bytes = b"c\xc3\xa4rol-pass", **kw: object
) -> EapPeerSession:
    settings = EapPeerSettings(identity, secret, **kw)  # type: ignore[arg-type]
    return peer_session(settings, make_rng(b"peer"))


def test_success_with_equal_msk() -> None:
    t = converse(server(), peer())
    assert t.server.outcome is Outcome.SUCCESS, t.server.reason
    assert t.peer is not None and t.peer.outcome is Outcome.SUCCESS, t.peer.reason
    assert len(t.server.msk) == 64 and t.server.msk == t.peer.msk
    assert t.server.identity == b"carol"
    kinds = [parse(p).eap_type for p in t.to_peer]
    assert kinds == [EapType.IDENTITY, EapType.MSCHAPV2, EapType.MSCHAPV2, None]
    opcodes = [parse(p).data[0] for p in t.to_peer[1:3] + t.to_server[1:]]
    assert opcodes == [1, 3, 2, 3]  # Challenge, Success | Response, Success Response


def test_wire_layout() -> None:
    t = converse(server(), peer())
    challenge, success_req = (parse(p) for p in t.to_peer[1:3])
    answer, ack = (parse(p) for p in t.to_server[1:3])
    # Challenge: OpCode, MS-CHAPv2-ID = EAP Identifier, MS-Length, Value-Size 16, Name
    assert challenge.data[1] == challenge.identifier
    assert int.from_bytes(challenge.data[2:4], "big") == len(challenge.data)
    assert challenge.data[4] == 16 and challenge.data[21:] == b"pyipsec"
    # Response: Value-Size 49, 8 reserved zeros, Flags 0, Name = identity
    assert answer.data[1] == challenge.data[1] and answer.data[4] == 49
    assert answer.data[21:29] == bytes(8) and answer.data[53] == 0
    assert answer.data[54:] == b"carol"
    assert int.from_bytes(answer.data[2:4], "big") == len(answer.data)
    # Success request: S=<40 hex> M=...; the peer's Success Response is the bare OpCode
    assert success_req.data[4:6] == b"S=" and b" M=" in success_req.data
    assert ack.data == b"\x03"


def test_domain_user() -> None:
    t = converse(server(), peer(b"EXAMPLE\\dave", b"dave-pass"))
    assert t.server.outcome is Outcome.SUCCESS and t.server.identity == b"EXAMPLE\\dave"


def test_wrong_password() -> None:
    t = converse(server(), peer(secret=b"guess"))
    assert t.server.outcome is Outcome.FAILURE
    assert "wrong NT-Response for identity b'carol'" in t.server.reason
    # Failure request (E=691 R=0), the peer's Failure Response, then EAP-Failure
    fail_req = parse(t.to_peer[-2])
    assert fail_req.data[0] == 4 and fail_req.data[4:].startswith(b"E=691 R=0 C=")
    assert parse(t.to_server[-1]).data == b"\x04"
    assert t.to_peer[-1] == failure(parse(t.to_server[-1]).identifier)
    assert t.peer is not None and t.peer.outcome is Outcome.FAILURE
    assert "E=691" in t.peer.reason and "Authentication failed" in t.peer.reason


def test_unknown_user() -> None:
    t = converse(server(), peer(identity=b"mallory"))
    assert t.server.outcome is Outcome.FAILURE
    assert "no EAP secret for identity b'mallory'" in t.server.reason
    assert t.peer is not None and "E=691" in t.peer.reason


def test_nak_to_md5() -> None:
    t = converse(server(None), peer(methods=(EapMethod.MD5,)))
    assert t.server.outcome is Outcome.SUCCESS, t.server.reason
    assert t.server.msk == b""
    assert [parse(p).eap_type for p in t.to_server] == [EapType.IDENTITY, EapType.NAK, EapType.MD5]


def test_nak_to_a_method_not_offered() -> None:
    t = converse(server(EapMethod.MSCHAPV2), peer(methods=(EapMethod.MD5,)))
    assert t.server.outcome is Outcome.FAILURE and "no common EAP method" in t.server.reason
    assert "MD5" in t.server.reason


def test_any_method_prefers_mschapv2() -> None:
    t = converse(server(None), peer())
    assert t.server.outcome is Outcome.SUCCESS and len(t.server.msk) == 64


def test_nak_after_the_first_response_fails() -> None:
    s = server()
    p = peer()
    step = s.start()
    step = s.process(p.process(step.packet or b"").packet or b"")  # Identity -> Challenge
    step = s.process(p.process(step.packet or b"").packet or b"")  # Response -> Success req
    ident = parse(step.packet or b"").identifier
    late = s.process(nak(ident, [EapType.MD5]))
    assert late.outcome is Outcome.FAILURE and "NAK Response during eap-mschapv2" in late.reason


def test_peer_refuses_a_forged_authenticator_response() -> None:
    p = MsChapV2Peer(b"carol", b"pw", make_rng())
    p.process(1, bytes.fromhex("0101001a10") + bytes(16) + b"srv")
    forged = b"\x03\x01\x00\x31S=" + b"0" * 40 + b" M=hi"
    result = p.process(2, forged)
    assert not getattr(result, "ok", True)
    assert "wrong Authenticator Response" in getattr(result, "reason", "")
    assert not p.verdict().ok


def test_peer_refuses_success_without_the_success_request() -> None:
    p = peer()
    p.process(request(1, EapType.IDENTITY))
    p.process(request(2, EapType.MSCHAPV2, bytes.fromhex("0102001a10") + bytes(16) + b"srv"))
    step = p.process(success(2))
    assert step.outcome is Outcome.FAILURE
    assert "Authenticator Response was not verified" in step.reason


def test_peer_accepts_strongswan_success_format() -> None:
    """strongSwan's Success request ends with `` M=Welcome2strongSwan`` and a NUL."""
    p = MsChapV2Peer(b"carol", b"pw", make_rng(b"p"))
    challenge = bytes(range(16))
    reply = p.process(7, bytes.fromhex("0107001a10") + challenge + b"strongSwan")
    data = getattr(reply, "type_data", b"")
    nt, peer_ch = data[29:53], data[5:21]
    auth = "S=" + authenticator_response(b"pw", nt, peer_ch, challenge, b"carol")[2:].lower()
    message = f"{auth} M=Welcome2strongSwan".encode() + b"\x00"
    ok = p.process(8, bytes([3, 7]) + (4 + len(message)).to_bytes(2, "big") + message)
    assert getattr(ok, "type_data", b"") == b"\x03"
    assert p.verdict().ok and p.verdict().msk == msk(b"pw", nt)


def test_peer_answers_a_retryable_failure_with_a_failure_response() -> None:
    p = peer()
    p.process(request(1, EapType.MSCHAPV2, bytes.fromhex("0101001a10") + bytes(16) + b"srv"))
    text = b"E=691 R=1 C=" + b"A" * 32 + b" V=3 M=try again"
    step = p.process(request(2, EapType.MSCHAPV2, bytes([4, 1, 0, 4 + len(text)]) + text))
    assert step.packet == response(2, EapType.MSCHAPV2, b"\x04")
    end = p.process(failure(2))
    assert end.outcome is Outcome.FAILURE and "E=691: try again" in end.reason


def test_retransmitted_challenge_gets_the_same_response() -> None:
    p = peer()
    req = request(1, EapType.MSCHAPV2, bytes.fromhex("0101001a10") + bytes(16) + b"srv")
    assert p.process(req).packet == p.process(req).packet


@pytest.mark.parametrize(
    "data",
    [
        b"\x02",  # no header
        bytes.fromhex("02010008") + b"\x31abc",  # Value cut short
        bytes.fromhex("02010036") + b"\x30" + bytes(49),  # Value-Size 48
    ],
)
def test_server_malformed_response(data: bytes) -> None:
    settings = EapServerSettings(EapMethod.MSCHAPV2, USERS, ask_identity=False)
    s = server_session(settings, make_rng(), identity=b"carol")
    ident = parse(s.start().packet or b"").identifier
    step = s.process(response(ident, EapType.MSCHAPV2, data))
    assert step.outcome is Outcome.FAILURE and "malformed Response" in step.reason


def test_server_peer_abort_and_unexpected_opcodes() -> None:
    s = MsChapV2Server(lambda name: b"pw", b"srv", make_rng())
    s.start(1)
    assert "aborted" in getattr(s.process(1, b"\x04"), "reason", "")
    s = MsChapV2Server(lambda name: b"pw", b"srv", make_rng())
    s.start(1)
    assert "unexpected OpCode 3" in getattr(s.process(1, b"\x03\x01\x00\x04"), "reason", "")


@pytest.mark.parametrize(
    "data",
    [
        bytes.fromhex("01010014") + b"\x08" + bytes(8),  # 8-octet challenge
        bytes.fromhex("0101000a") + b"\x10",  # cut short
    ],
)
def test_peer_malformed_challenge(data: bytes) -> None:
    step = peer().process(request(1, EapType.MSCHAPV2, data))
    assert step.outcome is Outcome.FAILURE and "malformed Request" in step.reason


def test_peer_malformed_success_request() -> None:
    p = MsChapV2Peer(b"carol", b"pw", make_rng())
    p.process(1, bytes.fromhex("0101001a10") + bytes(16) + b"srv")
    with pytest.raises(Exception, match="without an Authenticator Response"):
        p.process(2, b"\x03\x01\x00\x08M=hi")
