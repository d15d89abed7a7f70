"""The conversations around the methods (RFC 3748 §4.1 Identifiers, §4.2 Success and
Failure, §5.1 Identity, §5.2 Notification, §5.3 Nak), run with EAP-MD5."""

from __future__ import annotations

import pytest

from pyipsec.eap.base import BackendReply, BackendVerdict, EapStep, Outcome
from pyipsec.eap.factory import peer_session, server_session
from pyipsec.eap.packet import (
    EapType,
    expanded_type,
    failure,
    identity_response,
    nak,
    nak_types,
    parse,
    request,
    response,
    success,
)
from pyipsec.eap.settings import EapMethod, EapPeerSettings, EapServerSettings

from .helpers import converse, make_rng

USERS = ((b"carol", b"pw"),)
MD5 = EapServerSettings(EapMethod.MD5, USERS)
CAROL = EapPeerSettings(b"carol", b"pw")


def discarded(step: EapStep) -> bool:
    return step.packet is None and step.outcome is Outcome.CONTINUE


# --- server side --------------------------------------------------------------------------


def test_server_discards_before_start_and_after_the_end() -> None:
    s = server_session(MD5, make_rng())
    assert discarded(s.process(identity_response(0, b"carol")))
    first = s.start()
    assert discarded(s.start())  # no second start
    t = converse(server_session(MD5, make_rng()), peer_session(CAROL, make_rng()))
    assert t.server.outcome is Outcome.SUCCESS
    assert first.packet == t.to_peer[0]  # same rng: same first Request


def test_server_discards_wrong_identifier_code_and_garbage() -> None:
    s = server_session(MD5, make_rng())
    first = parse(s.start().packet or b"")
    ident = first.identifier
    for bad in (
        identity_response((ident + 1) & 0xFF, b"carol"),  # wrong Identifier
        request(ident, EapType.IDENTITY),  # a Request
        success(ident),
        b"\x02",  # truncated
        identity_response(ident, b"carol")[:-3],  # Length beyond the data
    ):
        step = s.process(bad)
        assert discarded(step), bad
        assert step.reason.startswith("discarded")
    # still waiting: the right Response goes on with the method
    step = s.process(identity_response(ident, b"carol"))
    assert step.outcome is Outcome.CONTINUE and step.identity == b"carol"
    assert parse(step.packet or b"").eap_type == EapType.MD5


def test_server_after_success_discards_everything() -> None:
    s = server_session(MD5, make_rng())
    t = converse(s, peer_session(CAROL, make_rng()))
    assert t.server.outcome is Outcome.SUCCESS
    assert discarded(s.process(t.to_server[-1]))


def test_server_identity_round_refused() -> None:
    s = server_session(MD5, make_rng())
    ident = parse(s.start().packet or b"").identifier
    step = s.process(nak(ident, [EapType.MD5]))
    assert step.outcome is Outcome.FAILURE and "Response to EAP-Identity" in step.reason
    assert step.packet == failure(ident)


def test_server_wrong_type_during_the_method_fails() -> None:
    s = server_session(MD5, make_rng())
    ident = parse(s.start().packet or b"").identifier
    s.process(identity_response(ident, b"carol"))
    step = s.process(response((ident + 1) & 0xFF, EapType.MSCHAPV2, b"\x02"))
    assert step.outcome is Outcome.FAILURE and "MSCHAPV2 Response during eap-md5" in step.reason


def test_server_malformed_method_response_fails_with_failure() -> None:
    s = server_session(MD5, make_rng())
    ident = parse(s.start().packet or b"").identifier
    s.process(identity_response(ident, b"carol"))
    nxt = (ident + 1) & 0xFF
    step = s.process(response(nxt, EapType.MD5, b"\x20abc"))
    assert step.outcome is Outcome.FAILURE and "malformed Response" in step.reason
    assert step.packet == failure(nxt)


def test_server_with_nothing_to_run_fails_after_identity() -> None:
    s = server_session(EapServerSettings(), make_rng())
    ident = parse(s.start().packet or b"").identifier
    step = s.process(identity_response(ident, b"carol"))
    assert step.outcome is Outcome.FAILURE and "no EAP method can run" in step.reason


def test_local_server_ignores_backend_replies() -> None:
    s = server_session(MD5, make_rng())
    s.start()
    assert discarded(s.backend_reply(BackendReply(BackendVerdict.ACCEPT)))


def test_no_common_method() -> None:
    no_secret = peer_session(EapPeerSettings(b"carol"), make_rng())
    t = converse(server_session(MD5, make_rng()), no_secret)
    nak_pkt = parse(t.to_server[-1])
    assert nak_pkt.eap_type == EapType.NAK and nak_pkt.data == b"\x00"
    assert t.server.outcome is Outcome.FAILURE and "no common EAP method" in t.server.reason
    assert t.peer is not None and t.peer.outcome is Outcome.FAILURE


def test_nak_to_a_method_the_server_may_not_run() -> None:
    s = server_session(MD5, make_rng())
    ident = parse(s.start().packet or b"").identifier
    s.process(identity_response(ident, b"carol"))
    nxt = (ident + 1) & 0xFF
    step = s.process(nak(nxt, [EapType.TLS, EapType.MSCHAPV2]))
    assert step.outcome is Outcome.FAILURE
    assert "wants TLS, MSCHAPV2: no common EAP method" in step.reason


# --- peer side ----------------------------------------------------------------------------


def test_peer_answers_identity_and_notification() -> None:
    p = peer_session(CAROL, make_rng())
    step = p.process(request(1, EapType.IDENTITY))
    assert step.packet == identity_response(1, b"carol")
    step = p.process(request(2, EapType.NOTIFICATION, b"password expires soon"))
    assert step.packet == response(2, EapType.NOTIFICATION)
    assert "password expires soon" in step.reason
    assert step.outcome is Outcome.CONTINUE


def test_peer_resends_its_response_to_a_retransmitted_request() -> None:
    p = peer_session(CAROL, make_rng())
    req = request(5, EapType.MD5, b"\x04abcd")
    first = p.process(req)
    again = p.process(req)
    assert again.packet == first.packet and "retransmitted" in again.reason
    # a new Identifier is a new Request (answered afresh)
    other = p.process(request(6, EapType.MD5, b"\x04abcd"))
    assert other.packet is not None and parse(other.packet).identifier == 6


def test_peer_echoes_identifiers() -> None:
    p = peer_session(CAROL, make_rng())
    for ident in (200, 17, 0):
        step = p.process(request(ident, EapType.IDENTITY))
        assert parse(step.packet or b"").identifier == ident


def test_peer_naks_methods_it_does_not_accept() -> None:
    p = peer_session(CAROL, make_rng())
    step = p.process(request(3, EapType.OTP, b"otp-challenge"))
    pkt = parse(step.packet or b"")
    assert pkt.eap_type == EapType.NAK and nak_types(pkt) == (EapType.MSCHAPV2, EapType.MD5)
    # after the Nak the server may propose another method
    step = p.process(request(4, EapType.MD5, b"\x01x"))
    assert parse(step.packet or b"").eap_type == EapType.MD5


def test_peer_answers_expanded_types_with_an_expanded_nak() -> None:
    p = peer_session(CAROL, make_rng())
    vendor_request = request(3, EapType.EXPANDED, bytes.fromhex("00137f00000001") + b"data")
    pkt = parse(p.process(vendor_request).packet or b"")
    assert pkt.eap_type == EapType.EXPANDED and expanded_type(pkt.data) == (0, 3)
    assert nak_types(pkt) == (EapType.MSCHAPV2, EapType.MD5)


def test_peer_limited_to_listed_methods() -> None:
    settings = EapPeerSettings(b"carol", b"pw", methods=(EapMethod.MSCHAPV2,))
    p = peer_session(settings, make_rng())
    pkt = parse(p.process(request(1, EapType.MD5, b"\x01x")).packet or b"")
    assert pkt.eap_type == EapType.NAK


def test_peer_refuses_a_method_switch() -> None:
    p = peer_session(CAROL, make_rng())
    p.process(request(1, EapType.MD5, b"\x01x"))
    step = p.process(request(2, EapType.TLS, b"\x20"))
    assert step.outcome is Outcome.FAILURE and "switched to TLS during eap-md5" in step.reason
    assert discarded(p.process(request(3, EapType.IDENTITY)))  # over


def test_peer_malformed_method_request_fails() -> None:
    p = peer_session(CAROL, make_rng())
    step = p.process(request(1, EapType.MD5, b"\x09x"))
    assert step.outcome is Outcome.FAILURE and "malformed Request" in step.reason


@pytest.mark.parametrize(
    "packet",
    [b"", b"\x01\x01\x00\x09\x01", response(1, EapType.IDENTITY), request(1, EapType.NAK, b"\x04")],
)
def test_peer_discards(packet: bytes) -> None:
    p = peer_session(CAROL, make_rng())
    assert discarded(p.process(packet))
    assert p.process(request(2, EapType.IDENTITY)).packet is not None  # still alive


def test_peer_refuses_early_success() -> None:
    p = peer_session(CAROL, make_rng())
    step = p.process(success(1))
    assert step.outcome is Outcome.FAILURE and "before any method" in step.reason
    p = peer_session(CAROL, make_rng())
    p.process(request(1, EapType.IDENTITY))
    assert p.process(success(1)).outcome is Outcome.FAILURE


def test_peer_failure() -> None:
    p = peer_session(CAROL, make_rng())
    p.process(request(1, EapType.MD5, b"\x01x"))
    step = p.process(failure(1))
    assert step.outcome is Outcome.FAILURE and step.packet is None
    assert discarded(p.process(success(1)))


def test_peer_that_stops_leaves_the_server_waiting() -> None:
    s = server_session(MD5, make_rng())
    p = peer_session(CAROL, make_rng())
    first = s.start()
    answer = p.process(first.packet or b"")
    challenge = s.process(answer.packet or b"")
    assert challenge.outcome is Outcome.CONTINUE
    # the peer goes silent; whenever its (late) answer comes, the server goes on
    late = p.process(challenge.packet or b"")
    done = s.process(late.packet or b"")
    assert done.outcome is Outcome.SUCCESS
