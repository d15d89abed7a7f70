"""INFORMATIONAL exchanges (RFC 7296 §1.4, §1.4.1, §2.4, §2.25).

* Delete of Child SAs: ``D(ESP, our inbound SPIs)``; the answer carries the
  peer's inbound SPIs of the same pairs (§1.4.1).  Simultaneous deletes are
  answered without a Delete payload; unknown SPIs are ignored.
* Delete of the IKE SA: ``D(IKE)``; answered with an empty response, after which
  both sides forget the IKE SA and its children.
* Liveness check: an empty request, always answered (§2.4).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ...config.model import StartAction
from ...recovery import kind_for_received_notify
from ..constants import ExchangeType, NotifyType, PayloadType, ProtocolId, name_of
from ..errors import ProtocolError
from ..events import IkeSaDeleted, IkeSaRekeyed, LivenessAnswered, NotifyReceived
from ..message import Message
from ..payloads import DeletePayload, NotifyPayload
from ..state import ChildSaState, IkeSaState

if TYPE_CHECKING:
    from ..sa import ChildSa, IkeSa, PayloadList

log = logging.getLogger("pyipsec.ike")


# --------------------------------------------------------------------------- requests we send


def start_delete_children(
    sa: IkeSa, children: Sequence[ChildSa], now: float, *, reason: str = "deleted"
) -> None:
    """Queue a DELETE for Child SAs; they are removed when the peer answers."""
    todo = [c for c in children if c.state not in (ChildSaState.DELETING, ChildSaState.DELETED)]
    if not todo:
        return
    for c in todo:
        c.set_state(ChildSaState.DELETING)
    _enqueue_delete(sa, todo, now, reason)


def _enqueue_delete(sa: IkeSa, todo: list[ChildSa], now: float, reason: str) -> None:
    def go(t: float) -> bool:
        cur = sa.successor()
        if cur is not sa:  # the children moved to a rekeyed IKE SA (§2.8.2)
            moved = [c for c in todo if c.spi_in in cur.children]
            if moved:
                _enqueue_delete(cur, moved, t, reason)
            return False
        live = [c for c in todo if c.spi_in in sa.children]
        if not live:
            return False
        payloads: PayloadList = [
            (PayloadType.DELETE, DeletePayload.delete_child_sa([c.spi_in for c in live]))
        ]

        def done(msg: Message, t2: float) -> None:
            for c in live:
                sa.remove_child(c, reason)

        sa.send_request(
            ExchangeType.INFORMATIONAL, payloads, done, t, label="INFORMATIONAL delete child"
        )
        return True

    sa.enqueue(go, "delete children", now)


def start_delete_spis(sa: IkeSa, spis: Sequence[bytes], now: float) -> None:
    """DELETE for inbound SPIs we allocated but never installed (a refused response)."""

    def go(t: float) -> bool:
        sa.send_request(
            ExchangeType.INFORMATIONAL,
            [(PayloadType.DELETE, DeletePayload.delete_child_sa(list(spis)))],
            lambda m, t2: None,
            t,
            label="INFORMATIONAL delete",
        )
        return True

    sa.enqueue(go, "delete spis", now)


def start_delete_ike(sa: IkeSa, now: float, *, reason: str = "deleted") -> None:
    """Delete the IKE SA (and so all its children): jumps the queue (§1.4.1)."""
    if sa.state in (IkeSaState.DELETING, IkeSaState.DELETED, IkeSaState.FAILED):
        return
    if sa.established_at is None:
        # half-open: nothing to tell, just forget it
        sa.fail(now, reason)
        return
    quiet = sa.state is IkeSaState.REKEYED
    sa.set_state(IkeSaState.DELETING)
    sa.queue.clear()

    def finish(t: float) -> None:
        if quiet:
            sa.vanish(t)
            sa.emit(IkeSaDeleted(sa.ike_id, sa.conn.name, reason))
        else:
            sa.finish(t, reason)

    def go(t: float) -> bool:
        if sa.state is not IkeSaState.DELETING:
            return False
        sa.send_request(
            ExchangeType.INFORMATIONAL,
            [(PayloadType.DELETE, DeletePayload.delete_ike_sa())],
            lambda m, t2: finish(t2),
            t,
            label="INFORMATIONAL delete IKE",
            on_timeout=lambda: finish(t),
        )
        return True

    sa.enqueue(go, "delete IKE SA", now, front=True)


def start_liveness(sa: IkeSa, now: float, *, report: bool = False) -> None:
    """An empty INFORMATIONAL request (§2.4); no answer after retransmissions = dead peer.
    ``report``: emit LivenessAnswered when the answer arrives (a requested check)."""
    if sa.dpd_probe:
        if report:
            sa.liveness_report = True
        return
    sa.dpd_probe = True
    sa.liveness_report = report
    sent_at = now  # queued: the round trip as the caller sees it

    def answered(msg: Message, t: float) -> None:
        sa.dpd_probe = False
        sa.dpd.on_check_answered(t)
        if sa.liveness_report:
            sa.liveness_report = False
            sa.emit(LivenessAnswered(sa.ike_id, sa.conn.name, sent_at, t))

    def go(t: float) -> bool:
        if not sa.established and sa.state is not IkeSaState.REKEYED:
            sa.dpd_probe = False
            return False
        sa.send_request(ExchangeType.INFORMATIONAL, [], answered, t, label="INFORMATIONAL liveness")
        sa.dpd.on_check_sent(t)
        return True

    sa.enqueue(go, "liveness", now)


def start_notify(sa: IkeSa, ntype: int, data: bytes, now: float) -> bool:
    """An INFORMATIONAL request carrying one error notify, e.g. INVALID_SPI for ESP on
    an unknown SPI (§2.21.4, §3.10.1: outside a request, report it in an INFORMATIONAL
    exchange of the IKE SA with that peer).  The answer changes nothing.  At most one
    such report is queued or in flight per IKE SA (never amplify): False if dropped."""
    label = f"INFORMATIONAL {name_of(NotifyType, ntype)}"
    if any(q.label == label for q in sa.queue) or any(
        r.label == label for r in sa.req_win.pending.values()
    ):
        return False

    def go(t: float) -> bool:
        if not sa.established:
            return False
        sa.send_request(
            ExchangeType.INFORMATIONAL,
            [(PayloadType.NOTIFY, NotifyPayload(0, b"", ntype, data))],
            lambda m, t2: None,
            t,
            label=label,
        )
        return True

    sa.enqueue(go, label, now)
    return True


# --------------------------------------------------------------------------- requests we answer


def handle_request(sa: IkeSa, msg: Message, now: float) -> PayloadList:
    out: PayloadList = []
    deletes = msg.get_all(PayloadType.DELETE)
    for d in deletes:
        # §3.11: SPI size 0 for the IKE SA, 4 for ESP/AH; anything else is malformed
        # (an 8-octet SPI with leading zeros must not match one of our 4-octet SPIs)
        want = 0 if d.protocol == ProtocolId.IKE else 4
        if d.protocol in (ProtocolId.IKE, ProtocolId.ESP, ProtocolId.AH) and d.spi_size != want:
            raise ProtocolError(f"Delete of protocol {d.protocol} with SPI size {d.spi_size}")
    for n in msg.notifies():
        if n.type in (NotifyType.INITIAL_CONTACT, NotifyType.SET_WINDOW_SIZE):
            continue
        sa.emit(NotifyReceived(sa.ike_id, int(n.type), n.data, n.is_error))
        kind = kind_for_received_notify(int(n.type), in_response=False) if n.is_error else None
        if kind is not None:
            # §3.10.1: errors in a request (e.g. INVALID_SPI, §2.21.4) never change state:
            # the recovery table's row is IGNORE (counted, rate-limited log)
            sa.on_error(kind, now, f"{name_of(NotifyType, int(n.type))} in an INFORMATIONAL")
        else:
            log.info("IKE SA %d: peer notifies %s", sa.ike_id, name_of(NotifyType, int(n.type)))
    ike_delete = any(d.protocol == ProtocolId.IKE for d in deletes)
    if ike_delete:
        _peer_deletes_ike(sa, now)
        return []
    ours: dict[int, list[int]] = {}
    for d in deletes:
        if d.protocol != ProtocolId.ESP:
            continue  # our Child SAs are ESP: an AH SPI (or another protocol) is not ours
        for spi in d.spi_values():
            c = sa.child_by_out(spi)
            if c is None:
                continue  # §1.4.1: unknown SPIs are ignored
            if c.state is not ChildSaState.DELETING:
                # simultaneous deletes are answered without the SPI (§2.25.1)
                ours.setdefault(d.protocol, []).append(c.spi_in)
            closed = c.state in (ChildSaState.INSTALLED, ChildSaState.REKEYING)
            sa.remove_child(c, "deleted by peer")
            if closed and c.config.close_action is StartAction.START and sa.initiator:
                # swanctl close_action=start: bring it up again (not for a rekeyed SA)
                from .child import start_create

                start_create(sa, c.config, now)
    for proto, spis in ours.items():
        out.append((PayloadType.DELETE, DeletePayload.delete_child_sa(spis, protocol=proto)))
    return out


def _peer_deletes_ike(sa: IkeSa, now: float) -> None:
    """§1.4.1, §2.25.2: the peer closes this IKE SA."""
    new = sa.rekey_collision
    if sa.state is IkeSaState.REKEYING and new is not None and new.state is IkeSaState.ESTABLISHED:
        # §2.8.2: the peer finished its rekey of this SA without noticing ours
        from .ike_rekey import move_children

        move_children(sa, new)
        sa.emit(IkeSaRekeyed(sa.ike_id, new.ike_id, sa.conn.name, new.key_material()))
        sa.vanish(now)
        sa.emit(IkeSaDeleted(sa.ike_id, sa.conn.name, "rekeyed"))
        return
    if sa.state is IkeSaState.REKEYED or (sa.replaced_by is not None and not sa.children):
        sa.vanish(now)
        sa.emit(IkeSaDeleted(sa.ike_id, sa.conn.name, "rekeyed"))
        return
    sa.finish(now, "deleted by peer")
