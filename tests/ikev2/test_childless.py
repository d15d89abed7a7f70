"""Childless IKE SA initiation (RFC 6023, strongSwan's ``childless``): the responder's
announcement, the initiator's choice, and the refusals of ``never`` and ``force``."""

from __future__ import annotations

from typing import Any

import pytest

from pyipsec.config.loader import ConfigError, load_config_text
from pyipsec.ikev2.constants import ExchangeType, NotifyType, PayloadType
from pyipsec.ikev2.events import ChildSaInstalled, IkeSaEstablished, IkeSaFailed
from pyipsec.ikev2.message import Message
from pyipsec.ikev2.sa import IkeSa
from pyipsec.ikev2.state import IkeSaState

from .harness import Harness, Side, conn_pair


def _harness(a: str = "allow", b: str = "allow", **kw: Any) -> Harness:
    return Harness(*conn_pair(a_kw={"childless": a}, b_kw={"childless": b}, **kw))


def _sa(side: Side) -> IkeSa:
    (sa,) = side.mgr.by_id.values()
    return sa


def _messages(h: Harness, sender: str, exchange: int, response: bool) -> list[Message]:
    """What ``sender`` sent of ``exchange``, decrypted where protected."""
    out = []
    for p in h.sent(sender, exchange, response):
        if exchange == ExchangeType.IKE_SA_INIT:
            out.append(Message.parse(p.data))
        else:
            other = _sa(h.b if sender == "a" else h.a)
            msg = other_plain(other, p.data)
            if msg is not None:
                out.append(msg)
    return out


def other_plain(sa: IkeSa, data: bytes) -> Message | None:
    from .test_sa_fuzz import plain

    return plain(sa, data)


def _announced(h: Harness) -> bool:
    (resp,) = _messages(h, "b", ExchangeType.IKE_SA_INIT, True)
    return resp.notify(NotifyType.CHILDLESS_IKEV2_SUPPORTED) is not None


def _auth_request_has_child(h: Harness) -> bool:
    (req,) = _messages(h, "a", ExchangeType.IKE_AUTH, False)
    return req.get(PayloadType.SA) is not None


def test_allow_announces_and_still_sends_the_first_child_in_ike_auth() -> None:
    h = _harness()
    h.up()
    assert _announced(h) and _sa(h.a).peer_childless
    assert _auth_request_has_child(h)
    assert len(_sa(h.a).children) == 1 and len(_sa(h.b).children) == 1
    assert not h.sent("a", ExchangeType.CREATE_CHILD_SA, False)


@pytest.mark.parametrize("policy", ["prefer", "force"])
def test_prefer_and_force_initiate_childless_then_create_the_child(policy: str) -> None:
    h = _harness(a=policy)
    h.up()
    assert len(h.a.of(IkeSaEstablished)) == 1 and len(h.b.of(IkeSaEstablished)) == 1
    assert not _auth_request_has_child(h)
    (resp,) = _messages(h, "b", ExchangeType.IKE_AUTH, True)
    assert resp.get(PayloadType.SA) is None and not resp.error_notifies()
    # the first child came in a CREATE_CHILD_SA exchange of its own
    assert len(h.sent("a", ExchangeType.CREATE_CHILD_SA, False)) == 1
    assert len(h.a.of(ChildSaInstalled)) == 1 and len(h.b.of(ChildSaInstalled)) == 1


def test_prefer_falls_back_to_a_regular_ike_auth_when_not_announced() -> None:
    h = _harness(a="prefer", b="never")
    h.up()
    assert not _announced(h) and _auth_request_has_child(h)
    assert len(_sa(h.a).children) == 1


def test_force_fails_without_the_responders_support() -> None:
    h = _harness(a="force", b="never")
    h.up()
    (failed,) = h.a.of(IkeSaFailed)
    assert "does not support childless IKE SA initiation" in failed.reason
    assert not h.sent("a", ExchangeType.IKE_AUTH, False)  # it never asked


def test_no_children_is_childless_and_needs_the_announcement() -> None:
    h = _harness(a_children=[])
    h.up()
    assert len(h.a.of(IkeSaEstablished)) == 1 and _sa(h.a).state is IkeSaState.ESTABLISHED
    assert not _sa(h.a).children and not _sa(h.b).children
    h = _harness(b="never", a_children=[])
    h.up()
    (failed,) = h.a.of(IkeSaFailed)
    assert "no child to create" in failed.reason


@pytest.mark.interpreted_core
def test_responder_never_refuses_a_childless_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """An initiator that sends the modified IKE_AUTH although it was not announced (a
    non-conforming one, played by patching ours) gets INVALID_SYNTAX; both IKE SAs fail
    (§3: "SHOULD reply with an INVALID_SYNTAX")."""
    from pyipsec.ikev2.tasks import ike_auth

    monkeypatch.setattr(ike_auth, "_initiate_childless", lambda sa: True)
    h = _harness(a="allow", b="never")
    h.up()
    assert not _announced(h) and not _auth_request_has_child(h)
    (resp,) = _messages(h, "b", ExchangeType.IKE_AUTH, True)
    assert [n.type for n in resp.error_notifies()] == [NotifyType.INVALID_SYNTAX]
    assert h.b.of(IkeSaFailed) and h.a.of(IkeSaFailed)
    assert not h.b.of(IkeSaEstablished)
    assert resp.get(PayloadType.AUTH) is None  # the notify alone
    # the recovery table's row for it, not a malformed message
    errors = h.b.mgr.error_status()
    assert errors.get("childless-refused") == 1 and "malformed-ike-auth" not in errors


def test_responder_force_refuses_a_regular_ike_auth() -> None:
    h = _harness(a="allow", b="force")
    h.up()
    assert _announced(h) and _auth_request_has_child(h)
    (resp,) = _messages(h, "b", ExchangeType.IKE_AUTH, True)
    assert [n.type for n in resp.error_notifies()] == [NotifyType.INVALID_SYNTAX]
    assert h.b.of(IkeSaFailed) and h.a.of(IkeSaFailed)
    assert not h.b.of(IkeSaEstablished)
    assert h.b.mgr.error_status().get("childless-refused") == 1


def test_config() -> None:
    text = """
[connections.c]
remote_addrs = ["192.0.2.2"]
childless = "{v}"
[secrets.s]
secret = "x"
"""
    for v in ("allow", "prefer", "force", "never"):
        (conn,) = load_config_text(text.format(v=v)).connections
        assert conn.childless == v
    with pytest.raises(ConfigError, match="childless"):
        load_config_text(text.format(v="sometimes"))
