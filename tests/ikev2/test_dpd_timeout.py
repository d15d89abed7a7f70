"""``dpd_timeout`` bounds an unanswered liveness check (RFC 7296 §2.4, ``pyipsec.dpd``).

Regression test for a bug found by the interop suite (tests/interop/test_dpd.py): the IKE
SA left an outstanding liveness request entirely to the retransmission schedule and never
acted on ``DpdState.probe_expired``, so a peer killed with SIGKILL was declared dead only
after ``retransmit_tries`` retransmissions (``dpd_delay`` 2 s, ``dpd_timeout`` 4 s and
strongSwan-like "3 1.0 1.5" retransmits: 10.1 s instead of the promised
``max_detection_time`` = 6 s).
"""

from __future__ import annotations

from pyipsec.config.model import DpdAction, DpdConfig, RetransmitConfig
from pyipsec.dpd import max_detection_time
from pyipsec.ikev2.constants import ExchangeType
from pyipsec.ikev2.events import IkeSaDeleted, IkeSaEstablished, PeerDead

from .harness import Harness, conn_pair

RETRANSMIT = RetransmitConfig(tries=3, timeout=1.0, base=1.5)


def _dead_after(dpd: DpdConfig) -> tuple[Harness, float]:
    a, b = conn_pair(a_kw={"dpd": dpd, "retransmit": RETRANSMIT})
    h = Harness(a, b)
    h.up()
    assert h.a.of(IkeSaEstablished)
    last = h.now  # the last authenticated packet A received (IKE_AUTH response)
    h.down = True
    while not h.a.of(PeerDead) and h.now < last + 60:
        h.run(0.05)
    assert h.a.of(PeerDead), "never declared dead"
    return h, h.now - last


def test_dpd_timeout_caps_the_liveness_check() -> None:
    dpd = DpdConfig(interval=2.0, timeout=4.0, action=DpdAction.CLEAR)
    h, took = _dead_after(dpd)
    bound = max_detection_time(dpd, RETRANSMIT)
    assert bound == 6.0
    assert 3.0 < took <= bound + 0.1, took  # measured from the end of up(): <= bound
    assert h.a.of(IkeSaDeleted) and not h.a.mgr.status()
    # the last check: sent at t, retransmitted at t+1 and t+2.5, abandoned at t+4 (the
    # third retransmission, due at t+4.75, never goes out)
    probes = h.sent("a", ExchangeType.INFORMATIONAL, response=False)
    last = [p.at for p in probes if p.message_id == probes[-1].message_id]
    assert [round(t - last[0], 2) for t in last] == [0.0, 1.0, 2.5]
    assert round(h.now - last[0], 1) == 4.0


def test_without_timeout_retransmissions_decide() -> None:
    # dpd_timeout longer than the retransmission schedule: unchanged behaviour
    dpd = DpdConfig(interval=2.0, timeout=150.0, action=DpdAction.CLEAR)
    _, took = _dead_after(dpd)
    assert 7.0 < took <= max_detection_time(dpd, RETRANSMIT) + 0.1


def test_dpd_timeout_with_restart_reinitiates() -> None:
    dpd = DpdConfig(interval=2.0, timeout=4.0, action=DpdAction.RESTART)
    h, took = _dead_after(dpd)
    assert took <= 6.1 and h.a.of(PeerDead)[0].action is DpdAction.RESTART
    h.run(0.5)
    assert h.sent("a", ExchangeType.IKE_SA_INIT, response=False)[-1].at > h.now - 1
    h.down = False
    h.run(30)
    assert len(h.a.of(IkeSaEstablished)) == 2
