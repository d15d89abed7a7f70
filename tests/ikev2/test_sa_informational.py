"""INFORMATIONAL: deletes, liveness checks and DPD (RFC 7296 §1.4, §2.4)."""

from __future__ import annotations

from pyipsec.config.model import DpdAction, DpdConfig
from pyipsec.ikev2.constants import ExchangeType
from pyipsec.ikev2.events import (
    ChildSaDeleted,
    ChildSaInstalled,
    IkeSaDeleted,
    IkeSaEstablished,
    PeerDead,
)
from pyipsec.ikev2.state import IkeSaState
from pyipsec.ikev2.tasks.child_delete import DeleteSpis

from .harness import Harness, conn_pair


def _sa(side):  # type: ignore[no-untyped-def]
    return next(iter(side.mgr.by_id.values()))


def _up(**kw) -> Harness:  # type: ignore[no-untyped-def]
    a, b = conn_pair(**kw)
    h = Harness(a, b)
    h.up()
    assert h.a.of(IkeSaEstablished) and h.b.of(IkeSaEstablished)
    return h


def test_delete_child_from_initiator() -> None:
    h = _up()
    (ia,) = [e.info for e in h.a.of(ChildSaInstalled)]
    h.a.mgr.delete_child(_sa(h.a).ike_id, ia.spi_in, h.now)
    h.run(2)
    assert [(e.spi_in, e.spi_out) for e in h.a.of(ChildSaDeleted)] == [(ia.spi_in, ia.spi_out)]
    assert [(e.spi_in, e.spi_out) for e in h.b.of(ChildSaDeleted)] == [(ia.spi_out, ia.spi_in)]
    assert not _sa(h.a).children and not _sa(h.b).children
    assert _sa(h.a).state is IkeSaState.ESTABLISHED


def test_delete_child_from_responder() -> None:
    h = _up()
    (ib,) = [e.info for e in h.b.of(ChildSaInstalled)]
    h.b.mgr.delete_child(_sa(h.b).ike_id, ib.spi_in, h.now)
    h.run(2)
    assert h.a.of(ChildSaDeleted) and h.b.of(ChildSaDeleted)
    assert not _sa(h.a).children and not _sa(h.b).children


def test_simultaneous_child_delete() -> None:
    h = _up()
    (ia,) = [e.info for e in h.a.of(ChildSaInstalled)]
    h.a.mgr.delete_child(_sa(h.a).ike_id, ia.spi_in, h.now)
    h.b.mgr.delete_child(_sa(h.b).ike_id, ia.spi_out, h.now)
    h.run(2)
    assert len(h.a.of(ChildSaDeleted)) == 1 and len(h.b.of(ChildSaDeleted)) == 1
    assert not _sa(h.a).children and not _sa(h.b).children
    assert _sa(h.a).state is IkeSaState.ESTABLISHED


def test_delete_unknown_spi_gets_empty_answer() -> None:
    h = _up()
    sa = _sa(h.a)
    sa.enqueue(DeleteSpis(sa, [b"\x00\x00\x12\x34"]), h.now)
    h.flush()
    h.run(2)
    assert len(h.sent("b", ExchangeType.INFORMATIONAL, response=True)) == 1
    assert len(_sa(h.b).children) == 1 and not h.b.of(ChildSaDeleted)


def test_delete_ike_sa() -> None:
    h = _up()
    n = h.a.mgr.terminate("a2b", h.now)
    assert n == 1
    h.run(2)
    assert h.a.of(IkeSaDeleted) and h.b.of(IkeSaDeleted)
    assert h.a.of(ChildSaDeleted) and h.b.of(ChildSaDeleted)
    h.run(20)
    assert not h.a.mgr.status() and not h.b.mgr.status()
    assert not h.a.mgr.by_id and not h.b.mgr.by_id


def test_delete_ike_sa_from_responder_and_lost_response() -> None:
    h = _up()
    h.rules.append(
        lambda p: [] if p.sender == "a" and p.exchange == ExchangeType.INFORMATIONAL else None
    )
    h.b.mgr.terminate(_sa(h.b).ike_id, h.now)
    h.run(30)
    # the responses are lost: B gives up retransmitting and forgets the SA anyway
    assert h.a.of(IkeSaDeleted) and h.b.of(IkeSaDeleted)
    assert not h.b.mgr.status()


def test_simultaneous_ike_delete() -> None:
    h = _up()
    h.a.mgr.terminate("a2b", h.now)
    h.b.mgr.terminate("b2a", h.now)
    h.run(5)
    assert len(h.a.of(IkeSaDeleted)) == 1 and len(h.b.of(IkeSaDeleted)) == 1


def test_liveness_answered() -> None:
    h = _up()
    sa = _sa(h.a)
    h.a.mgr.liveness(sa.ike_id, h.now)
    h.run(2)
    assert len(h.sent("b", ExchangeType.INFORMATIONAL, response=True)) == 1
    assert not h.a.of(PeerDead) and sa.state is IkeSaState.ESTABLISHED
    assert sa.last_heard > 1000


def test_dpd_probe_when_idle_and_esp_activity_suppresses_it() -> None:
    dpd = DpdConfig(interval=10.0)
    h = _up(a_kw={"dpd": dpd})
    (ia,) = [e.info for e in h.a.of(ChildSaInstalled)]
    for _ in range(5):
        h.a.mgr.esp_activity(ia.spi_in, h.now)
        h.run(4)
    assert not h.sent("a", ExchangeType.INFORMATIONAL, response=False)
    h.run(12)
    assert len(h.sent("a", ExchangeType.INFORMATIONAL, response=False)) == 1


def _dead(action: DpdAction, duration: float = 40.0) -> Harness:
    dpd = DpdConfig(interval=10.0, action=action)
    h = _up(a_kw={"dpd": dpd})
    h.down = True
    h.run(duration)
    return h


def test_dpd_clear() -> None:
    h = _dead(DpdAction.CLEAR)
    (pd,) = h.a.of(PeerDead)
    assert pd.action is DpdAction.CLEAR
    assert h.a.of(ChildSaDeleted) and h.a.of(IkeSaDeleted)
    assert not h.a.mgr.status()
    # INFORMATIONAL: 1 + 3 retransmissions, then nothing more
    assert len(h.sent("a", ExchangeType.INFORMATIONAL, response=False)) == 4


def test_dpd_restart_reinitiates() -> None:
    h = _dead(DpdAction.RESTART, 26.0)
    assert h.a.of(PeerDead)[0].action is DpdAction.RESTART
    assert h.sent("a", ExchangeType.IKE_SA_INIT, response=False)[-1].at > 1020
    h.down = False
    h.run(60)
    assert len(h.a.of(IkeSaEstablished)) == 2
    assert len(h.a.of(ChildSaInstalled)) == 2


def test_dpd_trap_is_reported() -> None:
    h = _dead(DpdAction.TRAP)
    assert h.a.of(PeerDead)[0].action is DpdAction.TRAP
    assert len(h.sent("a", ExchangeType.IKE_SA_INIT, response=False)) == 1


def test_retransmitted_request_answered_from_cache_not_reprocessed() -> None:
    h = _up()
    (ia,) = [e.info for e in h.a.of(ChildSaInstalled)]
    h.rules.append(
        lambda p: (
            []
            if p.sender == "b"
            and p.exchange == ExchangeType.INFORMATIONAL
            and len(
                [q for q in h.log if q.sender == "b" and q.exchange == ExchangeType.INFORMATIONAL]
            )
            == 1
            else None
        )
    )
    h.a.mgr.delete_child(_sa(h.a).ike_id, ia.spi_in, h.now)
    h.run(5)
    resps = h.sent("b", ExchangeType.INFORMATIONAL, response=True)
    assert len(resps) == 2 and resps[0].data == resps[1].data
    assert len(h.b.of(ChildSaDeleted)) == 1 and len(h.a.of(ChildSaDeleted)) == 1


def test_bad_icv_and_stale_ids_dropped() -> None:
    h = _up()
    sa_b = _sa(h.b)
    last = h.sent("a", ExchangeType.IKE_AUTH, response=False)[-1]
    # replay of an old request: answered from cache (it is the last one), no new state
    h.b.mgr.receive_datagram(last.data, (h.b.ip, 500), last.src, h.now)
    # corrupt ICV: dropped silently
    bad = bytearray(last.data)
    bad[-1] ^= 1
    n_out = len(h.b.mgr.datagrams_to_send(h.now))
    h.b.mgr.receive_datagram(bytes(bad), (h.b.ip, 500), last.src, h.now)
    assert h.b.mgr.datagrams_to_send(h.now) == []
    assert n_out == 1
    # garbage never raises
    for junk in (b"", b"\xff", b"\x00" * 27, b"\x01" * 40, last.data[:50]):
        h.b.mgr.receive_datagram(junk, (h.b.ip, 500), last.src, h.now)
    assert sa_b.state is IkeSaState.ESTABLISHED


def test_close_action_start_recreates_child() -> None:
    from pyipsec.config.model import StartAction

    from .harness import child

    h = _up(a_children=[child(close_action=StartAction.START)])
    (ib,) = [e.info for e in h.b.of(ChildSaInstalled)]
    h.b.mgr.delete_child(_sa(h.b).ike_id, ib.spi_in, h.now)
    h.run(3)
    assert len(h.a.of(ChildSaInstalled)) == 2 and len(h.a.of(ChildSaDeleted)) == 1
    assert len(_sa(h.a).children) == 1 and len(_sa(h.b).children) == 1
