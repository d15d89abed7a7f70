"""Dead peer detection in the core with the harness's fake clock (RFC 7296 §2.4):
exact check times, each dpd_action (read from the recovery table), answering the
peer's checks while we rekey, and liveness proof from ESP and IKE traffic."""

from __future__ import annotations

from typing import Any

from pyipsec.config.model import DpdAction, DpdConfig
from pyipsec.ikev2.constants import ExchangeType
from pyipsec.ikev2.events import ChildSaInstalled, IkeSaEstablished, IkeSaRekeyed, PeerDead
from pyipsec.ikev2.sa import IkeSa
from pyipsec.ikev2.state import ChildSaState, IkeSaState
from pyipsec.recovery import ErrorKind, RecoveryAction

from .harness import Harness, Packet, child, conn_pair, drop_first, is_exchange


def _sa(side: Any) -> IkeSa:
    sa: IkeSa = next(s for s in side.mgr.by_id.values() if s.state is not IkeSaState.DELETED)
    return sa


def _up(a_dpd: DpdConfig | None = None, b_dpd: DpdConfig | None = None) -> Harness:
    a, b = conn_pair(a_kw={"dpd": a_dpd} if a_dpd else None, b_kw={"dpd": b_dpd} if b_dpd else None)
    h = Harness(a, b)
    h.up()
    return h


def _checks(h: Harness, sender: str) -> list[Packet]:
    """Empty INFORMATIONAL requests (liveness checks) sent by ``sender``."""
    return [
        p
        for p in h.sent(sender, ExchangeType.INFORMATIONAL, response=False)
        if not h.decrypt(p).payloads
    ]


def test_check_after_exactly_the_interval_of_silence() -> None:
    h = _up(a_dpd=DpdConfig(interval=10.0))
    t0 = _sa(h.a).last_heard
    h.run(30 - (h.now - t0))
    checks = _checks(h, "a")
    assert len(checks) == 2
    assert abs(checks[0].at - (t0 + 10.0)) < 0.1
    # each answered check is proof of life: the next one follows an interval later
    assert abs(checks[1].at - checks[0].at - 10.0) < 0.1
    assert not h.a.of(PeerDead)


def test_action_comes_from_the_recovery_table() -> None:
    for action, expected in (
        (DpdAction.CLEAR, ()),
        (DpdAction.TRAP, (RecoveryAction.TRAP,)),
        (DpdAction.RESTART, (RecoveryAction.RESET_CONNECTION,)),
    ):
        h = _up(a_dpd=DpdConfig(interval=10.0, action=action))
        row = _sa(h.a).errors.decide(ErrorKind.RETRANSMITS_EXHAUSTED)
        assert row.actions == (RecoveryAction.DELETE_SA, *expected)
        h.down = True
        h.run(40)
        (pd,) = h.a.of(PeerDead)
        assert pd.action is action


def test_dead_verdict_at_the_end_of_the_retransmission_schedule() -> None:
    h = _up(a_dpd=DpdConfig(interval=10.0))
    h.down = True
    h.run(60)
    checks = h.sent("a", ExchangeType.INFORMATIONAL, response=False)
    # FAST_RETRANSMIT: 1 s * 2^n, 3 retransmissions -> give up 1+2+4+8 s after the check
    assert [round(p.at - checks[0].at, 2) for p in checks] == [0.0, 1.0, 3.0, 7.0]
    (_pd,) = h.a.of(PeerDead)
    assert h.a.mgr.error_status() == {"retransmits-exhausted": 1}


def test_restart_action_brings_the_children_back() -> None:
    h = _up(a_dpd=DpdConfig(interval=10.0, action=DpdAction.RESTART))
    h.down = True
    h.run(26)
    h.down = False
    h.run(30)
    assert len(h.a.of(IkeSaEstablished)) == 2 and len(h.a.of(ChildSaInstalled)) == 2
    # B learned of the restart through INITIAL_CONTACT: one IKE SA left
    assert len([s for s in h.b.mgr.by_id.values() if s.established]) == 1


def test_peer_check_answered_while_we_rekey_the_ike_sa() -> None:
    h = _up(b_dpd=DpdConfig(interval=5.0))
    sa_a = _sa(h.a)
    # A's rekey request gets lost once: A sits in REKEYING while B's check arrives
    h.rules.append(drop_first(is_exchange("a", ExchangeType.CREATE_CHILD_SA, False)))
    h.now = sa_a.last_heard + 4.9
    h.a.mgr.rekey_ike(sa_a.ike_id, h.now)
    h.flush()
    assert sa_a.state is IkeSaState.REKEYING
    h.run(0.5)  # B's liveness check is due now
    checks_b = _checks(h, "b")
    assert len(checks_b) == 1
    answers = h.sent("a", ExchangeType.INFORMATIONAL, response=True)
    assert len(answers) == 1 and answers[0].at < checks_b[0].at + 0.1
    h.run(10)
    assert h.a.of(IkeSaRekeyed) and not h.b.of(PeerDead) and not h.a.of(PeerDead)


def test_peer_check_answered_while_we_rekey_a_child() -> None:
    h = _up(b_dpd=DpdConfig(interval=5.0))
    sa_a = _sa(h.a)
    (ca,) = sa_a.children.values()
    h.rules.append(drop_first(is_exchange("a", ExchangeType.CREATE_CHILD_SA, False)))
    h.now = sa_a.last_heard + 4.9
    h.a.mgr.rekey_child(sa_a.ike_id, ca.spi_in, h.now)
    h.flush()
    assert ca.state is ChildSaState.REKEYING
    h.run(0.5)
    assert len(_checks(h, "b")) == 1
    assert len(h.sent("a", ExchangeType.INFORMATIONAL, response=True)) == 1
    h.run(10)
    assert not h.b.of(PeerDead) and len(_sa(h.a).children) == 1


def test_our_check_is_deferred_while_an_exchange_is_outstanding() -> None:
    h = _up(a_dpd=DpdConfig(interval=5.0))
    sa_a = _sa(h.a)
    h.rules.append(drop_first(is_exchange("a", ExchangeType.CREATE_CHILD_SA, False), 3))
    h.now = sa_a.last_heard + 4.0
    h.a.mgr.rekey_ike(sa_a.ike_id, h.now)
    h.run(3)
    # the rekey's retransmissions are the liveness test; no separate check meanwhile
    assert not _checks(h, "a")
    h.run(20)
    assert h.a.of(IkeSaRekeyed) and not h.a.of(PeerDead)


def test_esp_and_ike_traffic_are_proof_of_life() -> None:
    h = _up(a_dpd=DpdConfig(interval=10.0))
    sa_a = _sa(h.a)
    (ca,) = sa_a.children.values()
    for _ in range(6):
        h.a.mgr.notify_traffic(ca.spi_in, h.now, packets_in=ca.packets_in + 1)
        h.run(6)
    assert not _checks(h, "a")
    # a request from the peer counts as well
    h.b.mgr.liveness(_sa(h.b).ike_id, h.now)
    h.run(9)
    assert not _checks(h, "a")
    h.run(3)
    assert len(_checks(h, "a")) == 1


def test_manual_liveness_while_dpd_disabled() -> None:
    h = _up()
    sa_a = _sa(h.a)
    h.run(100)
    assert not _checks(h, "a")  # disabled: never on its own
    h.a.mgr.liveness(sa_a.ike_id, h.now)
    h.a.mgr.liveness(sa_a.ike_id, h.now)  # coalesced with the one in flight
    h.run(2)
    assert len(_checks(h, "a")) == 1 and not sa_a.checking_liveness


def _attempts(h: Harness) -> list[bytes]:
    """The distinct IKE SAs A tried to start (SPIi of its IKE_SA_INIT requests), in order."""
    spis: list[bytes] = []
    for p in h.sent("a", ExchangeType.IKE_SA_INIT, response=False):
        m = p.message()
        assert m is not None
        if m.spi_i not in spis:
            spis.append(m.spi_i)
    return spis


def test_restart_keeps_trying_until_the_peer_returns() -> None:
    """dpd_action=restart with keyingtries=0 (the default): a re-initiation that runs
    out of retransmissions is followed by another after the reinit backoff (1, 2, 4 ...
    s, capped at 60 s), until the peer is back -- here it stays away for 200 s, far
    longer than one retransmission schedule."""
    h = _up(a_dpd=DpdConfig(interval=10.0, action=DpdAction.RESTART))
    h.down = True
    h.run(200)
    tries = _attempts(h)
    assert len(tries) >= 1 + 5  # the first setup, then at least 5 whole re-initiations
    assert len(h.a.of(PeerDead)) == 1 and len(h.a.of(IkeSaEstablished)) == 1
    h.down = False
    h.run(80)  # at most one capped backoff plus the setup
    assert len(h.a.of(IkeSaEstablished)) == 2 and len(h.a.of(ChildSaInstalled)) == 2
    assert len([s for s in h.a.mgr.by_id.values() if s.established]) == 1
    # once up, no further re-initiation is scheduled
    n = len(_attempts(h))
    h.run(120)
    assert len(_attempts(h)) == n


def test_restart_gives_up_after_keyingtries() -> None:
    a, b = conn_pair(
        a_kw={"dpd": DpdConfig(interval=10.0, action=DpdAction.RESTART), "keyingtries": 2}
    )
    h = Harness(a, b)
    h.up()
    h.down = True
    h.run(400)
    # the first setup, the restart, one retry after it failed -- then nothing more
    assert len(_attempts(h)) == 1 + 2
    h.run(400)
    assert len(_attempts(h)) == 1 + 2


def test_persistent_initiation_retries_until_the_peer_answers() -> None:
    """start_action = start: the peer is not there yet when we start; a persistent
    initiation keeps trying (reinit backoff) and succeeds once the peer appears."""
    a, b = conn_pair()
    h = Harness(a, b)
    h.down = True
    h.a.mgr.initiate(a.name, None, h.now, persistent=True)
    h.run(120)
    assert len(_attempts(h)) >= 4 and not h.a.of(IkeSaEstablished)
    h.down = False
    h.run(70)
    assert len(h.a.of(IkeSaEstablished)) == 1 and len(h.a.of(ChildSaInstalled)) == 1


def test_plain_initiation_is_tried_once() -> None:
    a, b = conn_pair()
    h = Harness(a, b)
    h.down = True
    h.a.mgr.initiate(a.name, None, h.now)
    h.run(300)
    assert len(_attempts(h)) == 1 and h.a.mgr.next_timer() is None


def _children_pair(conn_action: DpdAction, **own: DpdAction | None) -> Harness:
    """A with children net, web, db (own dpd_action from ``own``; None = inherit)."""
    nets = {"net": ("10.1", "10.2"), "web": ("10.3", "10.4"), "db": ("10.5", "10.6")}
    a_ch = [
        child(n, local=(f"{lo}.0.0/16",), remote=(f"{r}.0.0/16",), dpd_action=own.get(n))
        for n, (lo, r) in nets.items()
    ]
    b_ch = [
        child(n, local=(f"{r}.0.0/16",), remote=(f"{lo}.0.0/16",)) for n, (lo, r) in nets.items()
    ]
    a, b = conn_pair(
        a_children=a_ch,
        b_children=b_ch,
        a_kw={"dpd": DpdConfig(interval=10.0, action=conn_action)},
    )
    h = Harness(a, b)
    h.up()
    for name in ("web", "db"):
        h.a.mgr.create_child(_sa(h.a).ike_id, name, h.now)
        h.run(2)
    assert len(_sa(h.a).children) == 3
    return h


def _installed(h: Harness) -> list[str]:
    return [e.info.child for e in h.a.of(ChildSaInstalled)]


def test_child_dpd_action_wins_for_that_child() -> None:
    """conn dpd_action = restart; web says clear, db says trap: only net is restarted,
    and PeerDead tells the daemon what each child wants (db: a trap policy)."""
    h = _children_pair(DpdAction.RESTART, web=DpdAction.CLEAR, db=DpdAction.TRAP)
    h.down = True
    h.run(26)
    (pd,) = h.a.of(PeerDead)
    assert pd.action is DpdAction.RESTART
    assert {n: a.value for n, a in pd.children} == {"net": "restart", "web": "clear", "db": "trap"}
    h.down = False
    h.run(30)
    assert len(h.a.of(IkeSaEstablished)) == 2
    assert _installed(h) == ["net", "web", "db", "net"]  # only net came back
    assert [c.config.name for c in _sa(h.a).children.values()] == ["net"]


def test_child_restart_under_a_clearing_connection() -> None:
    """conn dpd_action = clear; a child's own restart brings (only) that child back."""
    h = _children_pair(DpdAction.CLEAR, db=DpdAction.RESTART, web=DpdAction.RESTART)
    h.down = True
    h.run(26)
    (pd,) = h.a.of(PeerDead)
    want = {"net": "clear", "web": "restart", "db": "restart"}
    assert {n: a.value for n, a in pd.children} == want
    h.down = False
    h.run(30)
    assert _installed(h)[3:] == ["web", "db"]
    assert sorted(c.config.name for c in _sa(h.a).children.values()) == ["db", "web"]


def test_all_children_cleared_means_no_restart() -> None:
    h = _children_pair(
        DpdAction.RESTART, net=DpdAction.CLEAR, web=DpdAction.CLEAR, db=DpdAction.TRAP
    )
    h.down = True
    h.run(26)
    h.down = False
    h.run(60)
    assert len(h.a.of(IkeSaEstablished)) == 1 and len(_installed(h)) == 3
    assert len(_attempts(h)) == 1


def test_persistent_initiation_refused_authentication_backs_off_long() -> None:
    """start_action = start against a peer with another PSK: AUTHENTICATION_FAILED is a
    configuration problem, not a silent peer, so the re-initiations follow the recovery
    table's AUTHENTICATION_FAILED_RECEIVED policy (30 s, 60 s ..., at most 5 retries)
    and not the 1-s reinit backoff meant for unanswered setups (found against
    strongSwan: three full IKE_SA_INIT + IKE_AUTH attempts within 3 s)."""
    a, b = conn_pair(b_kw={"psk": b"another secret entirely"})
    h = Harness(a, b)
    h.a.mgr.initiate(a.name, None, h.now, persistent=True)
    h.run(20)
    assert len(_attempts(h)) == 1
    h.run(20)  # the first retry after 30 s
    assert len(_attempts(h)) == 2
    h.run(3000)
    assert len(_attempts(h)) == 1 + 5 and not h.a.of(IkeSaEstablished)
    h.run(3000)
    assert len(_attempts(h)) == 1 + 5
