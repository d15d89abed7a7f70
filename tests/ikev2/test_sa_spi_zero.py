"""SPI 0 is refused everywhere (RFC 4303 §2.1 for ESP, RFC 7296 §3.1 for IKE): in Child
SA proposals of IKE_AUTH and CREATE_CHILD_SA, in IKE rekey proposals, in responses to
our proposals (bad responses: the peer's new SA is deleted) and in REKEY_SA."""

from __future__ import annotations

from typing import Any

import pytest

from pyipsec.ikev2.constants import ExchangeType, NotifyType, PayloadType, ProtocolId
from pyipsec.ikev2.events import ChildSaDeleted, ChildSaFailed, IkeSaEstablished
from pyipsec.ikev2.payloads import DeletePayload, NotifyPayload
from pyipsec.ikev2.sa import IkeSa
from pyipsec.ikev2.state import ChildSaState, IkeSaState
from pyipsec.ikev2.tasks import ike_rekey

from .harness import Harness, Side, conn_pair
from .test_sa_fuzz import _ts, esp_sa, forge, nonce, plain

ZERO4, ZERO8 = b"\x00" * 4, b"\x00" * 8


def _live(side: Side) -> list[IkeSa]:
    return [s for s in side.mgr.by_id.values() if s.state is IkeSaState.ESTABLISHED]


def _up() -> tuple[Harness, IkeSa, IkeSa]:
    h = Harness(*conn_pair())
    h.up()
    (sa_a,), (sa_b,) = _live(h.a), _live(h.b)
    assert len(sa_a.children) == 1 and len(sa_b.children) == 1
    return h, sa_a, sa_b


def _answers(h: Harness, rsa: IkeSa, sender: str, exchange: int) -> list[Any]:
    """Decrypted responses ``sender`` sent to ``rsa`` (the receiving SA)."""
    out = []
    for p in h.sent(sender, exchange, True):
        m = plain(rsa, p.data)
        if m is not None:
            out.append(m)
    return out


def _notify_types(msg: Any) -> list[int]:
    return [int(n.type) for n in msg.notifies()]


@pytest.mark.interpreted_core
def test_ike_auth_child_with_spi_zero_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(*conn_pair())
    monkeypatch.setattr(h.a.mgr, "new_child_spi", lambda: 0)
    h.up()
    # the IKE SA is up (§2.21.3: a refused first child does not stop it), no child
    assert len(h.a.of(IkeSaEstablished)) == 1 and len(h.b.of(IkeSaEstablished)) == 1
    (sa_a,), (sa_b,) = _live(h.a), _live(h.b)
    assert not sa_a.children and not sa_b.children
    (failed,) = h.a.of(ChildSaFailed)
    assert failed.notify == NotifyType.NO_PROPOSAL_CHOSEN
    assert h.b.mgr.error_status().get("no-proposal-chosen") == 1


@pytest.mark.interpreted_core
def test_create_child_sa_proposal_with_spi_zero_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h, sa_a, sa_b = _up()
    monkeypatch.setattr(h.a.mgr, "new_child_spi", lambda: 0)
    h.a.mgr.create_child(sa_a.ike_id, "net", h.now)
    h.run(1)
    (failed,) = h.a.of(ChildSaFailed)
    assert failed.notify == NotifyType.NO_PROPOSAL_CHOSEN
    (resp,) = _answers(h, sa_a, "b", ExchangeType.CREATE_CHILD_SA)
    assert _notify_types(resp) == [NotifyType.NO_PROPOSAL_CHOSEN]
    assert len(sa_a.children) == 1 and len(sa_b.children) == 1
    assert 0 not in sa_b.children and all(c.spi_out for c in sa_b.children.values())
    assert sa_a.established and sa_b.established


@pytest.mark.interpreted_core
def test_child_rekey_proposal_with_spi_zero_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    h, sa_a, sa_b = _up()
    (old,) = sa_a.children.values()
    monkeypatch.setattr(h.a.mgr, "new_child_spi", lambda: 0)
    h.a.mgr.rekey_child(sa_a.ike_id, old.spi_in, h.now)
    h.run(1)
    (failed,) = h.a.of(ChildSaFailed)
    assert failed.notify == NotifyType.NO_PROPOSAL_CHOSEN
    assert list(sa_a.children.values()) == [old] and old.state is ChildSaState.INSTALLED
    (b_old,) = sa_b.children.values()
    assert b_old.state is ChildSaState.INSTALLED


@pytest.mark.interpreted_core
def test_response_with_spi_zero_is_a_bad_response(monkeypatch: pytest.MonkeyPatch) -> None:
    h, sa_a, sa_b = _up()
    monkeypatch.setattr(h.b.mgr, "new_child_spi", lambda: 0)
    h.a.mgr.create_child(sa_a.ike_id, "net", h.now)
    h.run(1)
    (failed,) = h.a.of(ChildSaFailed)
    assert "SPI 0" in failed.reason
    assert len(sa_a.children) == 1
    # A deleted what B built (its inbound SPI 0), naming A's own inbound SPI (§3.11)
    (dreq,) = [
        m
        for p in h.sent("a", ExchangeType.INFORMATIONAL, False)
        if (m := plain(sa_b, p.data)) is not None
    ]
    d = dreq.get(PayloadType.DELETE)
    assert isinstance(d, DeletePayload) and d.protocol == ProtocolId.ESP
    assert 0 not in d.spi_values()
    assert 0 not in sa_b.children and len(sa_b.children) == 1
    assert [e.spi_in for e in h.b.of(ChildSaDeleted)] == [0]


@pytest.mark.interpreted_core
def test_ike_rekey_proposal_with_spi_zero_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    h, sa_a, sa_b = _up()
    monkeypatch.setattr(h.a.mgr, "new_ike_spi", lambda: ZERO8)
    t0 = h.now
    h.a.mgr.rekey_ike(sa_a.ike_id, h.now)
    h.run(1)
    (resp,) = _answers(h, sa_a, "b", ExchangeType.CREATE_CHILD_SA)
    assert _notify_types(resp) == [NotifyType.NO_PROPOSAL_CHOSEN]
    assert _live(h.a) == [sa_a] and _live(h.b) == [sa_b]
    assert sa_a.find_task(ike_rekey.IkeRekey) is None
    assert sa_a.rekey_at == pytest.approx(t0 + 30.0, abs=0.5)  # REKEY_FAILED backoff
    assert ZERO8 not in h.b.mgr.sas


@pytest.mark.interpreted_core
def test_ike_rekey_response_with_spi_zero_is_a_bad_response(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h, sa_a, _sa_b = _up()
    monkeypatch.setattr(h.b.mgr, "new_ike_spi", lambda: ZERO8)
    h.a.mgr.rekey_ike(sa_a.ike_id, h.now)
    h.run(1)
    # A keeps its IKE SA and deletes the peer's new one under that one's keys
    assert _live(h.a) == [sa_a] and len(sa_a.children) == 1
    assert sa_a.find_task(ike_rekey.IkeRekey) is None
    dels = [p.message() for p in h.sent("a", ExchangeType.INFORMATIONAL, False)]
    assert [(m.spi_r, m.message_id) for m in dels if m is not None] == [(ZERO8, 0)]
    orphans = [s for s in h.b.mgr.by_id.values() if s.spi_r == ZERO8]
    assert all(s.closed for s in orphans)
    # B's old SA carries on (its children moved to the orphan are the peer's problem,
    # as for any refused rekey response); A's SA still answers liveness checks
    assert sa_a.state is IkeSaState.ESTABLISHED


def test_rekey_sa_naming_spi_zero_is_invalid_syntax() -> None:
    h, sa_a, sa_b = _up()
    tsi, tsr = _ts(False)  # the receiver is B
    mid = sa_b.resp_win.expected
    payloads = [
        (PayloadType.NOTIFY, NotifyPayload(ProtocolId.ESP, ZERO4, NotifyType.REKEY_SA)),
        (PayloadType.SA, esp_sa()),
        (PayloadType.NONCE, nonce()),
        (PayloadType.TSi, tsi),
        (PayloadType.TSr, tsr),
    ]
    data = forge(sa_b, ExchangeType.CREATE_CHILD_SA, mid, payloads, response=False)
    h.b.mgr.receive_datagram(data, sa_b.local, sa_b.remote, h.now)
    h.flush()
    (resp,) = _answers(h, sa_a, "b", ExchangeType.CREATE_CHILD_SA)
    assert _notify_types(resp) == [NotifyType.INVALID_SYNTAX]
    assert sa_b.closed  # §2.21.3: fatal for the IKE SA
    assert h.b.mgr.error_status().get("invalid-syntax") == 1


@pytest.mark.interpreted_core
def test_ike_auth_response_with_spi_zero_is_deleted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first Child SA in the IKE_AUTH response with SPI 0: the IKE SA comes up, the
    child fails, and the initiator deletes what the responder built (§2.21.3, §3.11)."""
    h = Harness(*conn_pair())
    monkeypatch.setattr(h.b.mgr, "new_child_spi", lambda: 0)
    h.up()
    (sa_a,), (sa_b,) = _live(h.a), _live(h.b)
    (failed,) = h.a.of(ChildSaFailed)
    assert "SPI 0" in failed.reason
    h.run(1)
    assert not sa_a.children and not sa_b.children
    assert [e.spi_in for e in h.b.of(ChildSaDeleted)] == [0]
