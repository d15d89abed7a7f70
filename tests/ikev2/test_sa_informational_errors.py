"""INFORMATIONAL exchanges, continued (RFC 7296 §1.4, §1.4.1, §2.21, §3.10.1):
several Child SAs in one Delete payload, unknown SPIs, every error NOTIFY path
(INVALID_SYNTAX, UNSUPPORTED_CRITICAL_PAYLOAD, out-of-window Message IDs,
INVALID_SPI for ESP on an unknown SPI -- rate-limited, never amplifying), status
notifies, and loss of the request or the response."""

from __future__ import annotations

from typing import Any

import pytest

from pyipsec.ikev2.constants import ExchangeType, NotifyType, PayloadType, ProtocolId
from pyipsec.ikev2.events import (
    ChildSaDeleted,
    ChildSaInstalled,
    IkeSaDeleted,
    NotifyReceived,
)
from pyipsec.ikev2.message import Message
from pyipsec.ikev2.payloads import DeletePayload, NotifyPayload, UnknownPayload
from pyipsec.ikev2.sa import IkeSa
from pyipsec.ikev2.state import IkeSaState
from pyipsec.ikev2.tasks.child_delete import ChildDelete
from pyipsec.ikev2.tasks.responders import RESPONDERS, Responder
from pyipsec.recovery import ErrorKind

from .harness import A_IP, B_IP, Harness, Packet, child, conn_pair, drop_first, is_exchange


def _sa(side: Any) -> IkeSa:
    sa: IkeSa = next(iter(side.mgr.by_id.values()))
    return sa


def _up(two: bool = False, **kw: Any) -> Harness:
    if two:
        kw["a_children"] = [child("net"), child("net2", local=("10.3.0.0/16",))]
        kw["b_children"] = [
            child("net", local=("10.2.0.0/16",), remote=("10.1.0.0/16",)),
            child("net2", local=("10.2.0.0/16",), remote=("10.3.0.0/16",)),
        ]
    a, b = conn_pair(**kw)
    h = Harness(a, b)
    h.up()
    if two:
        h.a.mgr.create_child(_sa(h.a).ike_id, "net2", h.now)
        h.run(3)
        assert len(_sa(h.a).children) == 2 and len(_sa(h.b).children) == 2
    return h


def _deletes(h: Harness, pkt: Packet) -> list[DeletePayload]:
    return h.decrypt(pkt).get_all(PayloadType.DELETE)


def _inject(h: Harness, payloads: list[tuple[int, Any]], mid: int | None = None) -> Message:
    """A protected request from A to B built with A's keys (message ID of A's window);
    returns B's decrypted answer."""
    sa_a = _sa(h.a)
    m = sa_a.req_win.allocate() if mid is None else mid
    data = sa_a.build(ExchangeType.INFORMATIONAL, m, payloads, response=False)
    h.b.mgr.receive_datagram(data, (B_IP, 500), (A_IP, 500), h.now)
    out = h.b.mgr.datagrams_to_send(h.now)
    assert len(out) == 1
    return h.decrypt(Packet(h.now, 0, out[0][0], out[0][1], out[0][2], "b"))


# ------------------------------------------------------------------- several SPIs


def test_delete_several_children_in_one_payload() -> None:
    h = _up(two=True)
    sa_a = _sa(h.a)
    kids = list(sa_a.children.values())
    ChildDelete.start(sa_a, kids, h.now)
    h.run(2)
    (req,) = h.sent("a", ExchangeType.INFORMATIONAL, response=False)
    (d,) = _deletes(h, req)
    assert d.protocol == ProtocolId.ESP and sorted(d.spi_values()) == sorted(
        c.spi_in for c in kids
    )
    # the answer names the peer's inbound SPIs of the same pairs, again in one payload
    (resp,) = h.sent("b", ExchangeType.INFORMATIONAL, response=True)
    (d2,) = _deletes(h, resp)
    assert sorted(d2.spi_values()) == sorted(c.spi_out for c in kids)
    assert len(h.a.of(ChildSaDeleted)) == 2 and len(h.b.of(ChildSaDeleted)) == 2
    assert not sa_a.children and not _sa(h.b).children
    assert sa_a.state is IkeSaState.ESTABLISHED


def test_peer_deletes_several_children_in_one_payload() -> None:
    h = _up(two=True)
    sa_b = _sa(h.b)
    ChildDelete.start(sa_b, list(sa_b.children.values()), h.now)
    h.run(2)
    (req,) = h.sent("b", ExchangeType.INFORMATIONAL, response=False)
    assert len(_deletes(h, req)[0].spis) == 2
    assert len(h.a.of(ChildSaDeleted)) == 2 and not _sa(h.a).children


def test_delete_with_known_and_unknown_spis() -> None:
    h = _up(two=True)
    sa_a = _sa(h.a)
    c1, c2 = sa_a.children.values()
    answer = _inject(
        h,
        [(PayloadType.DELETE, DeletePayload.delete_child_sa([c1.spi_in, 0xDEAD0001]))],
    )
    # §1.4.1: unknown SPIs are ignored; only the known pair is answered and removed
    (d,) = answer.get_all(PayloadType.DELETE)
    assert d.spi_values() == [c1.spi_out]
    assert c1.spi_out not in _sa(h.b).children and c2.spi_out in _sa(h.b).children


def test_simultaneous_delete_of_several_children() -> None:
    h = _up(two=True)
    sa_a, sa_b = _sa(h.a), _sa(h.b)
    ChildDelete.start(sa_a, list(sa_a.children.values()), h.now)
    ChildDelete.start(sa_b, list(sa_b.children.values()), h.now)
    h.run(3)
    # each side answers the crossing request without a Delete payload (§1.4.1)
    for resp in h.sent("a", ExchangeType.INFORMATIONAL, True) + h.sent(
        "b", ExchangeType.INFORMATIONAL, True
    ):
        assert _deletes(h, resp) == []
    assert len(h.a.of(ChildSaDeleted)) == 2 and len(h.b.of(ChildSaDeleted)) == 2
    assert sa_a.state is IkeSaState.ESTABLISHED and sa_b.state is IkeSaState.ESTABLISHED


def test_delete_of_ike_sa_removes_all_children_both_sides() -> None:
    h = _up(two=True)
    h.b.mgr.terminate("b2a", h.now)
    h.run(2)
    (req,) = h.sent("b", ExchangeType.INFORMATIONAL, response=False)
    (d,) = _deletes(h, req)
    assert d.protocol == ProtocolId.IKE and d.spis == []
    assert len(h.a.of(ChildSaDeleted)) == 2 and len(h.b.of(ChildSaDeleted)) == 2
    assert h.a.of(IkeSaDeleted)[0].reason == "deleted by peer"


# ------------------------------------------------------------------- error notifies


def test_invalid_syntax_in_authenticated_request_answered_and_fatal() -> None:
    h = _up()
    bad = UnknownPayload(PayloadType.NONCE, False, b"x")  # a 1-octet nonce (§3.9)
    answer = _inject(h, [(PayloadType.NONCE, bad)])
    (n,) = answer.notifies()
    assert n.type == NotifyType.INVALID_SYNTAX
    # §2.21.3: fatal for the IKE SA; no Delete is sent (the peer closes it too)
    (ev,) = h.b.of(IkeSaDeleted) or [e for e in h.b.mgr._events if isinstance(e, IkeSaDeleted)]
    assert "INVALID_SYNTAX" in ev.reason
    assert _sa(h.b).state is IkeSaState.DELETED
    assert h.b.mgr.error_status()[ErrorKind.INVALID_SYNTAX.value] == 1


def test_unsupported_critical_payload_answered_sa_survives() -> None:
    h = _up()
    answer = _inject(h, [(201, UnknownPayload(201, True, b"critical"))])
    (n,) = answer.notifies()
    assert n.type == NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD and n.data == bytes([201])
    assert _sa(h.b).state is IkeSaState.ESTABLISHED
    # an unknown NON-critical payload is skipped: an empty answer
    answer = _inject(h, [(202, UnknownPayload(202, False, b"skip me"))])
    assert answer.payloads == []


def test_request_outside_the_window_is_not_acknowledged() -> None:
    h = _up()
    sa_a, sa_b = _sa(h.a), _sa(h.b)
    data = sa_a.build(ExchangeType.INFORMATIONAL, 77, [], response=False)
    h.b.mgr.receive_datagram(data, (B_IP, 500), (A_IP, 500), h.now)
    # §2.3: no INVALID_MESSAGE_ID, no answer at all; the SA is unaffected
    assert h.b.mgr.datagrams_to_send(h.now) == []
    assert sa_b.state is IkeSaState.ESTABLISHED
    h.a.mgr.liveness(sa_a.ike_id, h.now)
    h.run(2)
    assert not sa_a.checking_liveness  # later exchanges still work


def test_status_and_unknown_notifies_in_request_ignored() -> None:
    h = _up()
    sa_b = _sa(h.b)
    kids = dict(sa_b.children)
    answer = _inject(
        h,
        [
            (PayloadType.NOTIFY, NotifyPayload.status(40000, b"private status")),
            (PayloadType.NOTIFY, NotifyPayload.error(NotifyType.INVALID_SPI, b"\x00\x00\x12\x34")),
            (PayloadType.NOTIFY, NotifyPayload.error(8191, b"unknown error type")),
        ],
    )
    assert answer.payloads == []  # answered, nothing else
    assert sa_b.state is IkeSaState.ESTABLISHED and sa_b.children == kids
    h.flush()
    assert {(e.type, e.error) for e in h.b.of(NotifyReceived)} == {
        (40000, False),
        (NotifyType.INVALID_SPI, True),
        (8191, True),
    }
    st = sa_b.errors.status()
    assert st == {"error-notify-in-request": 1, "invalid-spi-received": 1}


def test_error_notify_in_informational_response_is_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h = _up()
    sa_a, sa_b = _sa(h.a), _sa(h.b)
    # B answers A's next INFORMATIONAL request with an error notify
    orig = RESPONDERS[ExchangeType.INFORMATIONAL]

    def refuse(sa: IkeSa, msg: Message, now: float) -> list[tuple[int, Any]]:
        if sa is sa_b:
            return [(PayloadType.NOTIFY, NotifyPayload.error(NotifyType.INVALID_SYNTAX))]
        return orig.respond(sa, msg, now)

    monkeypatch.setitem(
        RESPONDERS, ExchangeType.INFORMATIONAL, Responder(refuse, orig.states)
    )
    h.a.mgr.liveness(sa_a.ike_id, h.now)
    h.run(2)
    (ev,) = h.a.of(NotifyReceived)
    assert ev.type == NotifyType.INVALID_SYNTAX and ev.error
    assert sa_a.errors.status() == {"invalid-syntax-received": 1}


# ------------------------------------------------------------------- INVALID_SPI


def test_esp_on_unknown_spi_answered_with_invalid_spi_rate_limited() -> None:
    h = _up()
    sa_a, _sa_b = _sa(h.a), _sa(h.b)
    kids = dict(sa_a.children)
    queued = [h.b.mgr.unknown_esp_spi(0xBAD00000 + i, (A_IP, 4500), h.now) for i in range(50)]
    # one report queued; the others are counted but never amplify into more messages
    assert queued.count(True) == 1
    h.run(2)
    (req,) = h.sent("b", ExchangeType.INFORMATIONAL, response=False)
    (n,) = h.decrypt(req).notifies()
    assert n.type == NotifyType.INVALID_SPI and n.data == (0xBAD00000).to_bytes(4, "big")
    # the recipient MUST NOT change SA state (§2.21.4): answered, ignored, counted
    assert len(h.sent("a", ExchangeType.INFORMATIONAL, response=True)) == 1
    assert sa_a.children == kids and sa_a.state is IkeSaState.ESTABLISHED
    assert sa_a.errors.status() == {"invalid-spi-received": 1}
    assert h.b.mgr.error_status()["invalid-spi"] == 50
    # the answer bucket (burst 10, 1/s) bounds reports over time as well
    sent = 0
    for _ in range(40):
        sent += h.b.mgr.unknown_esp_spi(0xBAD10000, (A_IP, 4500), h.now)
        h.run(0.1)
        h.now += 0.1
    assert 1 <= sent <= 5


def test_esp_on_unknown_spi_from_unknown_peer_is_only_counted() -> None:
    h = _up()
    assert not h.b.mgr.unknown_esp_spi(0x1234, ("198.51.100.77", 4500), h.now)
    h.run(1)
    assert not h.sent("b", ExchangeType.INFORMATIONAL)
    assert h.b.mgr.error_status() == {"invalid-spi": 1}


def test_esp_errors_counted_never_answered() -> None:
    h = _up()
    sa_b = _sa(h.b)
    (cb,) = sa_b.children.values()
    before = len(h.sent("b"))
    h.b.mgr.esp_errors(cb.spi_in, h.now, auth=3, replay=2, malformed=1)
    h.b.mgr.esp_errors(0x99999999, h.now, auth=1)  # SA already gone: still counted
    h.run(2)
    assert h.b.mgr.datagrams_to_send(h.now) == [] and len(h.sent("b")) == before
    assert sa_b.errors.status() == {"esp-auth-failure": 3, "esp-malformed": 1, "esp-replay": 2}
    assert h.b.mgr.error_status() == {"esp-auth-failure": 4, "esp-malformed": 1, "esp-replay": 2}
    st = h.b.mgr.status(h.now)[0]
    assert st["errors"]["esp-auth-failure"] == 3


# ------------------------------------------------------------------- loss


def test_lost_delete_request_is_retransmitted() -> None:
    h = _up(two=True)
    h.rules.append(drop_first(is_exchange("a", ExchangeType.INFORMATIONAL, False)))
    sa_a = _sa(h.a)
    ChildDelete.start(sa_a, list(sa_a.children.values()), h.now)
    h.run(5)
    reqs = h.sent("a", ExchangeType.INFORMATIONAL, response=False)
    assert len(reqs) == 2 and reqs[0].data == reqs[1].data  # verbatim (§2.1)
    assert len(h.a.of(ChildSaDeleted)) == 2 and len(h.b.of(ChildSaDeleted)) == 2


def test_lost_delete_ike_request_is_retransmitted() -> None:
    h = _up()
    h.rules.append(drop_first(is_exchange("a", ExchangeType.INFORMATIONAL, False), 2))
    h.a.mgr.terminate("a2b", h.now)
    h.run(10)
    assert len(h.sent("a", ExchangeType.INFORMATIONAL, response=False)) == 3
    assert h.a.of(IkeSaDeleted) and h.b.of(IkeSaDeleted)


def test_lost_delete_response_answered_from_cache() -> None:
    h = _up(two=True)
    h.rules.append(drop_first(is_exchange("b", ExchangeType.INFORMATIONAL, True)))
    sa_a = _sa(h.a)
    ChildDelete.start(sa_a, list(sa_a.children.values()), h.now)
    h.run(5)
    resps = h.sent("b", ExchangeType.INFORMATIONAL, response=True)
    assert len(resps) == 2 and resps[0].data == resps[1].data
    # processed once on B, removed once on A
    assert len(h.b.of(ChildSaDeleted)) == 2 and len(h.a.of(ChildSaDeleted)) == 2
    assert len(h.b.of(ChildSaInstalled)) == 2
