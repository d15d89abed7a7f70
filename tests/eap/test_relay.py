"""The EAP-RADIUS pass-through session (RFC 3579 §2), with our own EAP server standing
in for the RADIUS server."""

from __future__ import annotations

from pyipsec.constants import EapCode
from pyipsec.eap.base import (
    BackendReply,
    BackendVerdict,
    EapServerSession,
    EapStep,
    Outcome,
)
from pyipsec.eap.factory import peer_session, relay_session, server_session
from pyipsec.eap.packet import EapType, failure, identity_response, parse, request, success
from pyipsec.eap.settings import EapMethod, EapPeerSettings, EapServerSettings

from .helpers import make_rng

USERS = ((b"carol", b"pw"),)
CAROL = EapPeerSettings(b"carol", b"pw")


def discarded(step: EapStep) -> bool:
    return step.packet is None and step.outcome is Outcome.CONTINUE


class FakeRadius:
    """An AAA server: our EAP server session, answering relayed EAP packets with
    verdicts as a RADIUS server would (Access-Challenge/-Accept/-Reject)."""

    def __init__(self, method: EapMethod = EapMethod.MSCHAPV2) -> None:
        self.session: EapServerSession | None = None
        self.settings = EapServerSettings(method, USERS, ask_identity=False)
        self.seen: list[bytes] = []

    def answer(self, eap: bytes) -> BackendReply:
        self.seen.append(eap)
        if self.session is None:  # the Identity Response starts the conversation
            identity = parse(eap).data
            self.session = server_session(self.settings, make_rng(b"aaa"), identity)
            step = self.session.start()
        else:
            step = self.session.process(eap)
        verdict = {
            Outcome.CONTINUE: BackendVerdict.CHALLENGE,
            Outcome.SUCCESS: BackendVerdict.ACCEPT,
            Outcome.FAILURE: BackendVerdict.REJECT,
        }[step.outcome]
        return BackendReply(verdict, step.packet or b"", step.msk, step.reason)


def relay_conversation(
    relay: EapServerSession, radius: FakeRadius, peer_settings: EapPeerSettings
) -> tuple[EapStep, EapStep]:
    peer = peer_session(peer_settings, make_rng(b"peer"))
    step = relay.start()
    peer_step = EapStep(None)
    for _ in range(50):
        if step.outcome is Outcome.PENDING:
            assert step.identity == b"carol"
            step = relay.backend_reply(radius.answer(step.backend))
            continue
        assert step.packet is not None
        peer_step = peer.process(step.packet)
        if step.outcome is not Outcome.CONTINUE or peer_step.outcome is not Outcome.CONTINUE:
            return step, peer_step
        assert peer_step.packet is not None
        step = relay.process(peer_step.packet)
    raise AssertionError("no end")


def test_relayed_mschapv2_success() -> None:
    radius = FakeRadius()
    relay = server_session(EapServerSettings(EapMethod.RADIUS), make_rng())
    step, peer = relay_conversation(relay, radius, CAROL)
    assert step.outcome is Outcome.SUCCESS and peer.outcome is Outcome.SUCCESS, peer.reason
    assert len(step.msk) == 64 and step.msk == peer.msk
    assert step.identity == b"carol"
    assert parse(step.packet or b"").code == EapCode.SUCCESS
    # the first relayed packet is the peer's Identity Response
    first = parse(radius.seen[0])
    assert first == parse(identity_response(first.identifier, b"carol"))


def test_relayed_wrong_password() -> None:
    radius = FakeRadius()
    relay = relay_session(make_rng())
    step, peer = relay_conversation(relay, radius, EapPeerSettings(b"carol", b"guess"))
    assert step.outcome is Outcome.FAILURE and "wrong NT-Response" in step.reason
    assert step.packet is not None and parse(step.packet).code == EapCode.FAILURE
    assert peer.outcome is Outcome.FAILURE


def test_identity_given_builds_the_identity_response() -> None:
    radius = FakeRadius(EapMethod.MD5)
    relay = relay_session(make_rng(), identity=b"carol", ask_identity=False)
    first = relay.start()
    assert first.outcome is Outcome.PENDING and first.packet is None
    built = parse(first.backend)
    assert built.code == EapCode.RESPONSE and built.eap_type == EapType.IDENTITY
    assert built.data == b"carol"
    relay2 = relay_session(make_rng(), identity=b"carol", ask_identity=False)
    step, peer = relay_conversation(relay2, radius, CAROL)
    assert step.outcome is Outcome.SUCCESS and step.msk == b""  # EAP-MD5: no MSK
    assert peer.outcome is Outcome.SUCCESS


def test_empty_identity_asks_even_when_told_not_to() -> None:
    relay = relay_session(make_rng(), identity=b"", ask_identity=False)
    assert parse(relay.start().packet or b"").eap_type == EapType.IDENTITY


def _pending(relay: EapServerSession) -> tuple[int, EapStep]:
    ident = parse(relay.start().packet or b"").identifier
    step = relay.process(identity_response(ident, b"carol"))
    assert step.outcome is Outcome.PENDING
    return ident, step


def test_out_of_order_input_is_discarded() -> None:
    relay = relay_session(make_rng())
    assert discarded(relay.backend_reply(BackendReply(BackendVerdict.ACCEPT)))  # not started
    assert discarded(relay.process(identity_response(0, b"x")))
    ident = parse(relay.start().packet or b"").identifier
    assert discarded(relay.start())
    assert discarded(relay.backend_reply(BackendReply(BackendVerdict.REJECT)))  # not pending
    assert discarded(relay.process(identity_response((ident + 1) & 0xFF, b"carol")))
    assert discarded(relay.process(request(ident, EapType.IDENTITY)))
    assert discarded(relay.process(b"\x02\x00"))
    pending = relay.process(identity_response(ident, b"carol"))
    assert pending.outcome is Outcome.PENDING and pending.identity == b"carol"
    # a second Response while the backend has not answered: ignored
    again = relay.process(identity_response(ident, b"carol"))
    assert discarded(again) and "waiting for the backend" in again.reason
    challenge = request(77, EapType.MD5, b"\x01x")
    step = relay.backend_reply(BackendReply(BackendVerdict.CHALLENGE, challenge))
    assert step.packet == challenge and step.outcome is Outcome.CONTINUE
    assert discarded(relay.process(identity_response(ident, b"carol")))  # old Identifier
    assert relay.process(identity_response(77, b"carol")).outcome is Outcome.PENDING


def test_padding_is_not_relayed() -> None:
    relay = relay_session(make_rng())
    ident = parse(relay.start().packet or b"").identifier
    step = relay.process(identity_response(ident, b"carol") + b"\x00\x00")
    assert step.backend == identity_response(ident, b"carol")


def test_reject_with_and_without_eap_failure() -> None:
    relay = relay_session(make_rng())
    ident, _ = _pending(relay)
    step = relay.backend_reply(BackendReply(BackendVerdict.REJECT, failure(99), reason="bad"))
    assert step.outcome is Outcome.FAILURE and step.packet == failure(99)
    assert step.reason == "bad"
    assert discarded(relay.backend_reply(BackendReply(BackendVerdict.REJECT)))  # over
    relay = relay_session(make_rng())
    ident, _ = _pending(relay)
    step = relay.backend_reply(BackendReply(BackendVerdict.REJECT))
    assert step.packet == failure(ident) and "Access-Reject" in step.reason


def test_unreachable_backend() -> None:
    relay = relay_session(make_rng())
    ident, _ = _pending(relay)
    step = relay.backend_reply(BackendReply(BackendVerdict.UNREACHABLE))
    assert step.outcome is Outcome.FAILURE and step.packet == failure(ident)
    assert "did not answer" in step.reason


def _challenged(relay: EapServerSession) -> int:
    _pending(relay)
    relay.backend_reply(BackendReply(BackendVerdict.CHALLENGE, request(50, EapType.MD5, b"\x01x")))
    assert relay.process(b"\x02\x32\x00\x07\x04\x01y").outcome is Outcome.PENDING
    return 50


def test_accept_without_eap_builds_success() -> None:
    relay = relay_session(make_rng())
    last = _challenged(relay)
    step = relay.backend_reply(BackendReply(BackendVerdict.ACCEPT, msk=b"k" * 64))
    assert step.outcome is Outcome.SUCCESS and step.packet == success(last)
    assert step.msk == b"k" * 64


def test_accept_with_its_success() -> None:
    relay = relay_session(make_rng())
    _challenged(relay)
    step = relay.backend_reply(BackendReply(BackendVerdict.ACCEPT, success(7)))
    assert step.packet == success(7)


def test_accept_carrying_failure_is_a_failure() -> None:
    relay = relay_session(make_rng())
    _challenged(relay)
    step = relay.backend_reply(BackendReply(BackendVerdict.ACCEPT, failure(7)))
    assert step.outcome is Outcome.FAILURE and step.packet == failure(7)


def test_accept_before_any_challenge_is_refused() -> None:
    relay = relay_session(make_rng())
    ident, _ = _pending(relay)
    step = relay.backend_reply(BackendReply(BackendVerdict.ACCEPT, success(ident), b"k" * 64))
    assert step.outcome is Outcome.FAILURE and "before any EAP round" in step.reason
    assert step.packet == failure(ident)


def test_bad_challenges() -> None:
    for eap, reason in ((b"\x01\x01", "malformed"), (success(3), "EAP Code 3")):
        relay = relay_session(make_rng())
        _pending(relay)
        step = relay.backend_reply(BackendReply(BackendVerdict.CHALLENGE, eap))
        assert step.outcome is Outcome.FAILURE and reason in step.reason
        assert step.packet is not None and parse(step.packet).code == EapCode.FAILURE
