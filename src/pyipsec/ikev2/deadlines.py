"""What an IKE SA does when each of its named deadlines comes (:mod:`.timers`).

:data:`HANDLERS` maps every :class:`~pyipsec.ikev2.timers.TimerKind` to its handler;
:meth:`IkeSa.handle_timer <pyipsec.ikev2.sa.IkeSa.handle_timer>` runs the due ones in
``TimerKind`` order.  Retransmission and give-up (RFC 7296 §2.1), liveness (§2.4), the
half-open bound (§2.6), lifetimes (§2.8), the redundant SA of a rekey collision
(§2.8.2), NAT keepalives (RFC 3948 §4), fragments (RFC 7383 §2.6).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..recovery import ErrorKind
from .events import IkeSaDeleted
from .state import ChildSaState, IkeSaState
from .tasks import child_rekey, ike_delete, ike_rekey, liveness
from .tasks.child_delete import ChildDelete
from .timers import TimerKind

if TYPE_CHECKING:
    from .sa import IkeSa


def on_fragments(sa: IkeSa, now: float) -> None:
    sa.fragments.expire(now, sa.fragment_wanted)

def on_retransmit(sa: IkeSa, now: float) -> None:
    """Retransmit requests whose timeout passed; give up after the last one (§2.1)."""
    for req in list(sa.req_win.pending.values()):
        if req.deadline > now:
            continue
        policy = sa.retry_policy
        if not policy.exhausted(req.retransmits):
            req.retransmits += 1
            req.deadline = now + policy.delay(req.retransmits, sa.rng)
            sa.log.debug(
                "retransmit %s #%d (%d)", req.label, req.message_id, req.retransmits
            )
            for pkt in req.packets:
                sa.send_raw(pkt)
            continue
        sa.req_win.take(req.message_id)
        h = sa.on_error(
            ErrorKind.RETRANSMITS_EXHAUSTED, now, f"{req.label} #{req.message_id}"
        )
        if req.task.on_timeout(now):
            pass
        elif sa.half_open:
            sa.fail(now, f"{req.label}: no response (retransmissions exhausted)")
        else:
            sa.peer_dead(now, h.decision.actions)
        if sa.closed:
            return

def on_liveness_probe(sa: IkeSa, now: float) -> None:
    if sa.established and sa.dpd.probe_expired(now):
        # the liveness request stayed unanswered for probe_timeout (dpd_timeout caps
        # the retransmissions): dead now, as dpd.max_detection_time promises
        sa.on_error(ErrorKind.RETRANSMITS_EXHAUSTED, now, "INFORMATIONAL liveness")
        sa.peer_dead(now)

def on_half_open(sa: IkeSa, now: float) -> None:
    if not sa.half_open:
        return
    sa.on_error(ErrorKind.HALF_OPEN_TIMEOUT, now)
    if sa.initiator:
        sa.fail(now, "setup timeout")
    else:
        sa.vanish(now)

def on_linger(sa: IkeSa, now: float) -> None:
    """Nothing to do here: the manager forgets a closed SA whose LINGER is over."""

def on_delayed(sa: IkeSa, now: float) -> None:
    due = [t for t in sa.delayed if t.not_before <= now]
    sa.delayed = [t for t in sa.delayed if t.not_before > now]
    for task in due:
        task.sa.enqueue(task, now)

def on_queue(sa: IkeSa, now: float) -> None:
    """The pump at the end of :meth:`handle_timer` starts the queued tasks."""

def on_redundant(sa: IkeSa, now: float) -> None:
    """§2.8.2: the peer should have deleted this old SA after its rekey (its children
    moved to the new one); delete it ourselves."""
    if sa.state is IkeSaState.REKEYED and not sa.children:
        ike_delete.start(sa, now, reason="rekeyed")

def on_unclaimed(sa: IkeSa, now: float) -> None:
    """§2.8.2: we won a rekey collision and the loser never deleted the redundant SA
    that answering its request created.  It never completed that SA (our response was
    lost, or it read our Delete of the old SA first and dropped its rekey), so a Delete
    would go unanswered: forget the SA silently."""
    if sa.state is IkeSaState.REKEYED and not sa.children:
        sa.log.info("the loser of the rekey collision never deleted its redundant IKE SA")
        sa.vanish(now, IkeSaDeleted(sa.ike_id, sa.conn.name, "redundant (rekey collision)"))

def on_ike_expire(sa: IkeSa, now: float) -> None:
    if sa.established:
        sa.on_error(ErrorKind.LIFETIME_EXPIRED, now, "IKE SA hard lifetime")
        ike_delete.start(sa, now, reason="IKE SA lifetime expired")

def on_ike_rekey(sa: IkeSa, now: float) -> None:
    if not sa.established:
        return
    if sa.conn.reauth and sa.owner.reauthenticate(sa, now):
        return  # make-before-break: a new IKE SA replaces this one (§2.8.3)
    ike_rekey.start(sa, now)

def on_child_lifetimes(sa: IkeSa, now: float) -> None:
    if not sa.established:
        return
    for c in list(sa.children.values()):
        if c.hard_at is not None and now >= c.hard_at:
            c.hard_at = None
            sa.on_error(ErrorKind.LIFETIME_EXPIRED, now, f"child {c.name} hard lifetime")
            ChildDelete.start(sa, [c], now, reason="hard lifetime expired")
        elif c.soft_at is not None and now >= c.soft_at and c.state is ChildSaState.INSTALLED:
            c.soft_at = None
            child_rekey.start(sa, c, now)

def on_dpd(sa: IkeSa, now: float) -> None:
    if sa.established and sa.dpd.check_due(now):
        liveness.start(sa, now)

def on_keepalive(sa: IkeSa, now: float) -> None:
    if sa.established and sa.keepalive.due(now):
        # RFC 3948 §4: the manager hands it out via keepalives_to_send()
        sa.keepalive_due = True
        sa.keepalive.on_sent(now)


HANDLERS: dict[TimerKind, Callable[[IkeSa, float], None]] = {
    TimerKind.FRAGMENTS: on_fragments,
    TimerKind.RETRANSMIT: on_retransmit,
    TimerKind.LIVENESS_PROBE: on_liveness_probe,
    TimerKind.HALF_OPEN: on_half_open,
    TimerKind.LINGER: on_linger,
    TimerKind.DELAYED: on_delayed,
    TimerKind.QUEUE: on_queue,
    TimerKind.REDUNDANT: on_redundant,
    TimerKind.UNCLAIMED: on_unclaimed,
    TimerKind.IKE_EXPIRE: on_ike_expire,
    TimerKind.IKE_REKEY: on_ike_rekey,
    TimerKind.CHILD_LIFETIMES: on_child_lifetimes,
    TimerKind.DPD: on_dpd,
    TimerKind.KEEPALIVE: on_keepalive,
}
assert set(HANDLERS) == set(TimerKind)
