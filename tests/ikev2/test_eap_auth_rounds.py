"""EAP in IKE_AUTH round by round (RFC 7296 §2.16, §2.1, §2.21.2): a client that stops
after each round (the half-open timeout frees the gateway's state), retransmitted
rounds (answered from the response cache, or retransmitted by the client), malformed
and out-of-order EAP, EAP towards a connection that does not do it."""

from __future__ import annotations

from typing import Any

import pytest

from pyipsec.ikev2.constants import ExchangeType, NotifyType, PayloadType
from pyipsec.ikev2.events import IkeSaEstablished, IkeSaFailed
from pyipsec.ikev2.message import Message
from pyipsec.ikev2.payloads import AuthPayload, EapPayload, NotifyPayload
from pyipsec.ikev2.state import IkeSaState
from pyipsec.ikev2.tasks import ike_auth

from .eap_pairs import auth_requests, auth_responses, eap_pair, only_sa, states
from .harness import A_IP, B_IP, Harness, Packet, conn_pair

EST = [IkeSaState.ESTABLISHED]
#: with remote.eap_id = %any: IDi | EAP-Identity | EAP-MD5 | final AUTH
ROUNDS = 4


def _harness(**b: Any) -> Harness:
    return Harness(*eap_pair("eap-md5", b_kw={"remote_eap_id": "%any", **b}))


def _auth_rule(sender: str, mid: int, *, response: bool, times: int = 1) -> Any:
    left = [times]

    def rule(p: Packet) -> list[float] | None:
        if (
            left[0] > 0
            and p.sender == sender
            and p.exchange == ExchangeType.IKE_AUTH
            and p.message_id == mid
            and p.is_response == response
        ):
            left[0] -= 1
            return []
        return None

    return rule


# --- a client that stops half-way -------------------------------------------------------


@pytest.mark.parametrize("rounds_done", range(1, ROUNDS))
def test_client_stopping_after_each_round_is_freed(rounds_done: int) -> None:
    """The client answers ``rounds_done`` IKE_AUTH exchanges, then goes silent: the
    gateway's half-open IKE SA is forgotten at the half-open timeout (30 s), counted."""
    h = _harness()
    h.rules.append(
        lambda p: []
        if p.sender == "a" and p.exchange == ExchangeType.IKE_AUTH and p.message_id > rounds_done
        else None
    )
    h.a.mgr.initiate("a2b", None, h.now)
    h.run(5.0)
    assert [p.message_id for p in auth_responses(h)] == list(range(1, rounds_done + 1))
    sa_b = only_sa(h.b)
    assert sa_b.state is IkeSaState.EAP and sa_b.eap is not None
    assert h.b.mgr._half_open_count() == 1  # still counted as half-open (cookies, §2.6)
    h.run(40.0)
    assert states(h.b) == [] and not h.b.mgr.by_id
    assert h.b.mgr._half_open_count() == 0
    assert h.b.mgr.error_status().get("half-open-timeout") == 1
    assert not h.b.of(IkeSaEstablished)
    (fail,) = h.a.of(IkeSaFailed)  # the client's own retransmissions ran out
    assert "no response" in fail.reason


# --- retransmissions ---------------------------------------------------------------------


@pytest.mark.parametrize("mid", range(1, ROUNDS + 1))
def test_lost_response_is_answered_from_the_cache(mid: int) -> None:
    h = _harness()
    h.rules.append(_auth_rule("b", mid, response=True))
    h.up(duration=15.0)
    assert states(h.a) == EST and states(h.b) == EST
    answers = [p for p in h.sent("b", ExchangeType.IKE_AUTH, response=True) if p.message_id == mid]
    assert len(answers) == 2 and answers[0].data == answers[1].data  # the cached bytes
    requests = [p for p in h.sent("a", ExchangeType.IKE_AUTH, response=False)
                if p.message_id == mid]
    assert len(requests) == 2 and requests[0].data == requests[1].data  # retransmitted


@pytest.mark.parametrize("mid", range(1, ROUNDS + 1))
def test_lost_request_is_retransmitted(mid: int) -> None:
    h = _harness()
    h.rules.append(_auth_rule("a", mid, response=False, times=2))
    h.up(duration=15.0)
    assert states(h.a) == EST and states(h.b) == EST
    assert [p.message_id for p in auth_requests(h)] == list(range(1, ROUNDS + 1))


# --- malformed and out-of-order EAP -------------------------------------------------------


def _to_round(h: Harness, rounds_done: int) -> None:
    """Step mode: deliver everything until the gateway answered ``rounds_done`` IKE_AUTH
    requests; the client's next request stays held (then dropped)."""
    h.hold()
    h.a.mgr.initiate("a2b", None, h.now)
    for _ in range(50):
        nxt = h.pending()
        if not nxt:
            break
        p = nxt[0]
        if p.sender == "a" and p.exchange == ExchangeType.IKE_AUTH and p.message_id > rounds_done:
            h.drop("a", ExchangeType.IKE_AUTH, False, message_id=p.message_id)
            break
        h.deliver(p.direction, p.exchange, p.is_response, message_id=p.message_id)


def _inject(
    h: Harness, mid: int, payloads: list[tuple[int, Any]], exchange: int = ExchangeType.IKE_AUTH
) -> Message | None:
    """A request from the client's IKE SA (its keys) to the gateway; the gateway's
    decrypted answer, None when it does not answer."""
    sa_a = only_sa(h.a)
    data = sa_a.build(exchange, mid, payloads, response=False)
    h.b.mgr.receive_datagram(data, (B_IP, 500), (A_IP, 500), h.now)
    out = h.b.mgr.datagrams_to_send(h.now)
    while (ev := h.b.mgr.next_event()) is not None:
        h.b.events.append(ev)
    if not out:
        return None
    (datagram,) = out
    return h.decrypt(Packet(h.now, 0, datagram[0], datagram[1], datagram[2], "b"))


def _refused(h: Harness, answer: Message | None, why: str) -> None:
    assert answer is not None
    n = answer.get(PayloadType.NOTIFY)
    assert n is not None and n.type == NotifyType.AUTHENTICATION_FAILED
    (fail,) = h.b.of(IkeSaFailed)
    assert why in fail.reason, fail.reason
    assert only_sa(h.b).state is IkeSaState.FAILED and only_sa(h.b).eap is None


@pytest.mark.parametrize(
    ("payloads", "why"),
    [
        # EAP Length 9 in a 7-octet payload (§3.16): does not parse
        ([(PayloadType.EAP, EapPayload(b"\x02\x05\x00\x09abc"))], "malformed IKE_AUTH request"),
        # an EAP Request from the client (code 1)
        ([(PayloadType.EAP, EapPayload(b"\x01\x05\x00\x06\x01x"))], "not a Response"),
        # no EAP at all
        ([(PayloadType.NOTIFY, NotifyPayload(0, b"", NotifyType.INITIAL_CONTACT))],
         "no EAP payload"),
        # the final AUTH before EAP Success
        ([(PayloadType.AUTH, AuthPayload(2, b"\x00" * 32))], "AUTH before EAP Success"),
        # a Response for another Identifier: the method discards it
        ([(PayloadType.EAP, EapPayload(b"\x02\xee\x00\x09\x01dave"))], "discarded"),
    ],
)
def test_bad_eap_rounds_are_refused(payloads: list[tuple[int, Any]], why: str) -> None:
    h = _harness()
    _to_round(h, 1)
    assert only_sa(h.b).state is IkeSaState.EAP
    _refused(h, _inject(h, 2, payloads), why)
    if why.startswith("malformed"):  # the recovery table's row for a broken EAP round
        assert h.b.mgr.error_status().get("malformed-eap-round") == 1


def test_eap_after_success_instead_of_auth() -> None:
    h = _harness()
    _to_round(h, 3)  # EAP Success sent
    sa_b = only_sa(h.b)
    assert sa_b.eap is not None and sa_b.eap.msk is not None
    _refused(h, _inject(h, 4, [(PayloadType.EAP, EapPayload(b"\x02\x07\x00\x04"))]),
             "no AUTH after EAP Success")


def test_retransmission_after_refusal_gets_the_same_answer() -> None:
    h = _harness()
    _to_round(h, 1)
    bad = [(PayloadType.EAP, EapPayload(b"\x01\x05\x00\x06\x01x"))]
    first = _inject(h, 2, bad)
    again = _inject(h, 2, bad)  # answered from the cache while the SA lingers
    assert first is not None and again is not None
    assert again.get(PayloadType.NOTIFY) is not None
    assert len(h.b.of(IkeSaFailed)) == 1


def test_initiator_giving_up_in_an_informational() -> None:
    """§2.21.2: the initiator reports its failure in an INFORMATIONAL exchange (charon
    does when its method fails): the gateway frees the SA at once; other INFORMATIONAL
    requests during EAP are answered and change nothing."""
    h = _harness()
    _to_round(h, 2)
    other = [(PayloadType.NOTIFY, NotifyPayload(0, b"", NotifyType.INITIAL_CONTACT))]
    answer = _inject(h, 3, other, ExchangeType.INFORMATIONAL)
    assert answer is not None and answer.payloads == []
    assert only_sa(h.b).state is IkeSaState.EAP
    gave_up = [(PayloadType.NOTIFY, NotifyPayload(0, b"", NotifyType.AUTHENTICATION_FAILED))]
    answer = _inject(h, 4, gave_up, ExchangeType.INFORMATIONAL)
    assert answer is not None and answer.payloads == []
    (fail,) = h.b.of(IkeSaFailed)
    assert "gave up the EAP authentication" in fail.reason
    assert only_sa(h.b).state is IkeSaState.FAILED


# --- EAP where the connection does not do it ------------------------------------------------


def test_eap_client_to_a_psk_only_gateway() -> None:
    a, _ = eap_pair("eap-md5")
    _, b = conn_pair(b_kw={"remote_id": "%any"})
    h = Harness(a, b)
    h.up(duration=10.0)
    assert states(h.a) == [] and states(h.b) == []
    (fb,) = h.b.of(IkeSaFailed)
    assert "wants EAP, connection b2a authenticates it with psk" in fb.reason
    (fa,) = h.a.of(IkeSaFailed)
    assert fa.notify == NotifyType.AUTHENTICATION_FAILED


def test_psk_client_to_an_eap_only_gateway() -> None:
    a, _ = conn_pair(a_kw={"local_id": "carol@example.net"})
    _, b = eap_pair("eap-md5")
    h = Harness(a, b)
    h.up(duration=10.0)
    (fb,) = h.b.of(IkeSaFailed)
    assert "sent an AUTH payload, connection b2a authenticates it with EAP" in fb.reason


@pytest.mark.interpreted_core
def test_eap_payload_in_the_first_request_with_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    """A first IKE_AUTH request with AUTH and an EAP payload: refused."""
    orig = ike_auth.IkeAuth.build_request

    def with_eap(self: ike_auth.IkeAuth, now: float) -> Any:
        out = orig(self, now)
        eap = (PayloadType.EAP, EapPayload(b"\x02\x01\x00\x04"))
        return None if out is None else [*out, eap]

    monkeypatch.setattr(ike_auth.IkeAuth, "build_request", with_eap)
    h = Harness(*conn_pair())
    h.up()
    (fb,) = h.b.of(IkeSaFailed)
    assert "EAP payload next to AUTH" in fb.reason


def test_half_open_limits_count_eap_state() -> None:
    """A responder in the EAP state stays half-open until established."""
    h = _harness()
    _to_round(h, 2)
    assert h.b.mgr._half_open_count() == 1 and h.b.mgr._half_open_count(A_IP) == 1
    sa = only_sa(h.b)
    assert sa.half_open and sa.state is IkeSaState.EAP
