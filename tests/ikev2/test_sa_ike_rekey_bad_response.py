"""An unacceptable response to our IKE SA rekey (RFC 7296 §2.18, §3.3.6): we abort and
keep the old IKE SA; the peer's new IKE SA is deleted with its own keys when they can be
derived from the response, else left to the peer's timers."""

from __future__ import annotations

from typing import Any

import pytest

from pyipsec.ikev2.constants import DhId, ExchangeType, PayloadType, TransformType
from pyipsec.ikev2.events import IkeSaDeleted
from pyipsec.ikev2.payloads import KePayload, Proposal, SaPayload, Transform
from pyipsec.ikev2.sa import IkeSa
from pyipsec.ikev2.state import IkeSaState
from pyipsec.ikev2.tasks import ike_rekey

from .harness import Harness, conn_pair


def _live(side: Any) -> list[IkeSa]:
    return [sa for sa in side.mgr.by_id.values() if sa.state is IkeSaState.ESTABLISHED]


def _spoil(monkeypatch: pytest.MonkeyPatch, how: str) -> list[bytes]:
    """B answers IKE rekeys (and builds its new SA) but spoils its response: ``dh`` names
    another DH group in the proposal than the KE it sends (keys derivable), ``ke`` sends
    a KE of a group we did not use (keys not derivable).  Returns B's new SPIs."""
    real = ike_rekey.respond
    spis: list[bytes] = []

    def spoiled(sa: IkeSa, msg: Any, now: float) -> Any:
        out = real(sa, msg, now)
        fixed = []
        for ptype, p in out:
            if ptype == PayloadType.SA and how == "dh":
                (prop,) = p.proposals
                spis.append(prop.spi)
                ts = [
                    Transform(t.type, DhId.ECP_256) if t.type == TransformType.DH else t
                    for t in prop.transforms
                ]
                p = SaPayload([Proposal(prop.num, prop.protocol, prop.spi, ts)])
            elif ptype == PayloadType.SA:
                spis.append(p.proposals[0].spi)
            elif ptype == PayloadType.KE and how == "ke":
                p = KePayload(DhId.ECP_256, bytes(64))
            fixed.append((ptype, p))
        return fixed

    monkeypatch.setattr(ike_rekey, "respond", spoiled)
    return spis


def _rekey_with_bad_response(monkeypatch: pytest.MonkeyPatch, how: str) -> tuple[Harness, IkeSa]:
    a, b = conn_pair()
    h = Harness(a, b)
    h.up()
    (sa_a,) = _live(h.a)
    spis = _spoil(monkeypatch, how)
    h.a.mgr.rekey_ike(sa_a.ike_id, h.now)
    t0 = h.now
    h.run(1)
    assert len(spis) == 1
    # the old IKE SA stays ours, with its child, and the rekey is tried again later
    assert sa_a.state is IkeSaState.ESTABLISHED and sa_a.find_task(ike_rekey.IkeRekey) is None
    assert len(sa_a.children) == 1 and sa_a.rekey_at == pytest.approx(t0 + 30.0, abs=0.5)
    return h, sa_a


@pytest.mark.interpreted_core
def test_derivable_orphan_is_deleted_with_its_own_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    h, sa_a = _rekey_with_bad_response(monkeypatch, "dh")
    # A derived the peer's new SA, deleted it (protected with its keys), and forgot it
    dels = h.sent("a", ExchangeType.INFORMATIONAL, response=False)
    assert len(dels) == 1
    m = dels[0].message()
    assert m is not None and m.spi_i != sa_a.spi_i and m.message_id == 0
    assert h.sent("b", ExchangeType.INFORMATIONAL, response=True)  # B could decrypt it
    orphan_b = [s for s in h.b.mgr.by_id.values() if s.spi_i == m.spi_i]
    assert all(s.state is IkeSaState.DELETED for s in orphan_b)
    assert any(e.reason for e in h.b.of(IkeSaDeleted))
    assert [s.ike_id for s in _live(h.a)] == [sa_a.ike_id]


@pytest.mark.interpreted_core
def test_underivable_orphan_is_left_to_the_peer(monkeypatch: pytest.MonkeyPatch) -> None:
    h, sa_a = _rekey_with_bad_response(monkeypatch, "ke")
    assert not h.sent("a", ExchangeType.INFORMATIONAL, response=False)  # nothing to delete
    assert [s.ike_id for s in _live(h.a)] == [sa_a.ike_id]
    # the old SA still works: a liveness check on it is answered
    h.a.mgr.liveness(sa_a.ike_id, h.now)
    h.run(1)
    assert len(h.sent("a", ExchangeType.INFORMATIONAL, response=False)) == 1
    assert len(h.sent("b", ExchangeType.INFORMATIONAL, response=True)) == 1
    assert sa_a.state is IkeSaState.ESTABLISHED and not sa_a.req_win.pending

