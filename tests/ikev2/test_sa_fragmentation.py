"""IKE fragmentation in the core (RFC 7383): negotiation, sending, reassembly."""

from __future__ import annotations

from typing import Any

import pytest

from pyipsec.ikev2.constants import ExchangeType, NotifyType, PayloadType
from pyipsec.ikev2.events import IkeSaEstablished
from pyipsec.ikev2.message import Message, encrypt_fragments
from pyipsec.ikev2.payloads import NotifyPayload, SkfPayload, SkPayload
from pyipsec.ikev2.sa import IkeSa
from pyipsec.ikev2.state import IkeSaState

from .harness import Harness, Packet, conn_pair

TINY = {"fragment_size": 128}


def _pair(a_kw: dict[str, Any] | None = None, b_kw: dict[str, Any] | None = None) -> Harness:
    a, b = conn_pair(a_kw={**TINY, **(a_kw or {})}, b_kw={**TINY, **(b_kw or {})})
    return Harness(a, b)


def _sa(side: Any) -> IkeSa:
    (sa,) = [s for s in side.mgr.by_id.values() if s.state is IkeSaState.ESTABLISHED]
    return sa  # type: ignore[no-any-return]


def _skf(p: Packet) -> SkfPayload | None:
    m = Message.parse(p.data)
    return m.encrypted if isinstance(m.encrypted, SkfPayload) else None


def _auth(h: Harness, sender: str, response: bool) -> list[Packet]:
    return h.sent(sender, ExchangeType.IKE_AUTH, response)


def _established(h: Harness) -> None:
    assert len(h.a.of(IkeSaEstablished)) == 1 and len(h.b.of(IkeSaEstablished)) == 1
    sa_a, sa_b = _sa(h.a), _sa(h.b)
    assert (sa_a.spi_i, sa_a.spi_r) == (sa_b.spi_i, sa_b.spi_r)
    assert len(sa_a.children) == 1 and len(sa_b.children) == 1
    assert not sa_a.fragments and not sa_b.fragments


def _frag_notify(p: Packet) -> bool:
    m = Message.parse(p.data)
    return m.notify(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED) is not None


def test_ike_auth_fragmented_both_ways() -> None:
    h = _pair()
    h.up()
    _established(h)
    (init_req,) = h.sent("a", ExchangeType.IKE_SA_INIT, False)
    (init_resp,) = h.sent("b", ExchangeType.IKE_SA_INIT, True)
    assert _frag_notify(init_req) and _frag_notify(init_resp)
    assert _sa(h.a).fragmentation and _sa(h.b).fragmentation
    for sender, response in (("a", False), ("b", True)):
        pkts = _auth(h, sender, response)
        frags = [_skf(p) for p in pkts]
        assert len(pkts) > 1 and all(f is not None for f in frags)
        assert all(len(p.data) <= TINY["fragment_size"] for p in pkts)
        assert [f.fragment_number for f in frags if f] == list(range(1, len(pkts) + 1))


def test_small_messages_stay_unfragmented() -> None:
    h = Harness(*conn_pair())  # default fragment_size 1280
    h.up()
    _established(h)
    assert _sa(h.a).fragmentation
    assert all(_skf(p) is None for p in h.log if p.exchange == ExchangeType.IKE_AUTH)


@pytest.mark.parametrize(("a_frag", "b_frag"), [(True, False), (False, True)])
def test_peer_without_support_gets_unfragmented_messages(a_frag: bool, b_frag: bool) -> None:
    h = _pair({"fragmentation": a_frag}, {"fragmentation": b_frag})
    h.up()
    _established(h)
    assert not _sa(h.a).fragmentation and not _sa(h.b).fragmentation
    (init_resp,) = h.sent("b", ExchangeType.IKE_SA_INIT, True)
    assert not _frag_notify(init_resp)  # never announced unless the initiator did
    auth = [p for p in h.log if p.exchange == ExchangeType.IKE_AUTH]
    assert len(auth) == 2
    assert all(isinstance(Message.parse(p.data).encrypted, SkPayload) for p in auth)
    assert all(len(p.data) > TINY["fragment_size"] for p in auth)


def _drop_fragment(sender: str, response: bool, number: int) -> Any:
    left = [1]

    def rule(p: Packet) -> list[float] | None:
        f = _skf(p) if p.exchange == ExchangeType.IKE_AUTH else None
        if (
            left[0]
            and f is not None
            and p.sender == sender
            and p.is_response == response
            and f.fragment_number == number
        ):
            left[0] -= 1
            return []
        return None

    return rule


def test_lost_request_fragment_is_recovered_by_retransmission() -> None:
    h = _pair()
    h.rules.append(_drop_fragment("a", False, 2))
    h.up(duration=10.0)
    _established(h)
    req = _auth(h, "a", False)
    n = _skf(req[0]).total_fragments  # type: ignore[union-attr]
    assert len(req) == 2 * n  # every fragment was sent again
    resp = _auth(h, "b", True)
    assert len(resp) == _skf(resp[0]).total_fragments  # type: ignore[union-attr]


def test_lost_response_fragment_resent_from_cache() -> None:
    h = _pair()
    h.rules.append(_drop_fragment("b", True, 2))
    h.up(duration=10.0)
    _established(h)
    resp = _auth(h, "b", True)
    n = _skf(resp[0]).total_fragments  # type: ignore[union-attr]
    # the retransmitted request's fragment 1 triggers the cached response once (§2.6.1)
    assert len(resp) == 2 * n
    assert [p.data for p in resp[:n]] == [p.data for p in resp[n:]]
    assert len(h.b.of(IkeSaEstablished)) == 1


def test_duplicated_and_reordered_fragments() -> None:
    h = _pair()

    def rule(p: Packet) -> list[float] | None:
        f = _skf(p) if p.exchange == ExchangeType.IKE_AUTH else None
        if f is None:
            return None
        # reversed arrival order; every fragment but the first twice
        delay = 0.1 * (f.total_fragments - f.fragment_number)
        return [delay] if f.fragment_number == 1 else [delay, delay + 0.001]

    h.rules.append(rule)
    h.up()
    _established(h)
    req, resp = _auth(h, "a", False), _auth(h, "b", True)
    # processed once, answered once, nothing retransmitted
    assert len(req) == _skf(req[0]).total_fragments  # type: ignore[union-attr]
    assert len(resp) == _skf(resp[0]).total_fragments  # type: ignore[union-attr]


def test_forged_fragment_is_dropped() -> None:
    h = _pair()

    def rule(p: Packet) -> list[float] | None:
        f = _skf(p) if p.exchange == ExchangeType.IKE_AUTH else None
        if f is not None and not p.is_response and f.fragment_number == 2:
            forged = bytearray(p.data)
            forged[-1] ^= 1  # bad ICV, arriving before the real one
            h.wire.append(Packet(p.at, -1, bytes(forged), p.src, p.dst, p.sender))
        return None

    h.rules.append(rule)
    h.up()
    _established(h)
    assert sum(_sa(h.b).errors.status().values()) == 1  # the ICV failure, counted
    req = _auth(h, "a", False)
    assert len(req) == _skf(req[0]).total_fragments  # type: ignore[union-attr]


def _info(sa: IkeSa, mid: int, size: int) -> Message:
    """An INFORMATIONAL request of ``sa`` with a private status notify of ``size`` octets."""
    notify = NotifyPayload(0, b"", 40000, b"x" * size)
    payloads: list[tuple[int, Any]] = [(PayloadType.NOTIFY, notify)]
    return Message(sa.spi_i, sa.spi_r, ExchangeType.INFORMATIONAL, 0x08, mid, payloads)


def _inject_request(h: Harness, sizes: list[tuple[int, list[int]]]) -> tuple[IkeSa, IkeSa]:
    """Send fragments of an INFORMATIONAL request of A (its next Message ID) to B:
    for each (fragment_size, fragment numbers), that encoding's chosen fragments."""
    sa_a, sa_b = _sa(h.a), _sa(h.b)
    assert sa_a.prot_out is not None
    mid = sa_a.req_win.allocate()
    msg = _info(sa_a, mid, 300)
    for size, numbers in sizes:
        frags = encrypt_fragments(msg, sa_a.prot_out, size)
        for n in numbers:
            h.b.mgr.receive_datagram(frags[n - 1], sa_b.local, sa_b.remote, h.now)
    return sa_a, sa_b


def _answers(h: Harness) -> list[bytes]:
    return [d for d, _l, _r in h.b.mgr.datagrams_to_send(h.now)]


def test_newer_total_fragments_replaces_the_set() -> None:
    h = _pair()
    h.up()
    _established(h)
    # 3 fragments of the short encoding, then a longer encoding of the same message
    # (more fragments) restarts reassembly; the short set's last fragment is then old
    sa_a, sa_b = _inject_request(h, [(200, [1, 2]), (150, [1]), (200, [3])])
    assert not _answers(h)
    (st,) = sa_b.fragments.sets()
    assert set(st.fragments) == {1} and st.total > 3
    sa_a.req_win.next_id -= 1
    _inject_request(h, [(150, list(range(2, st.total + 1)))])
    assert len(_answers(h)) == 1  # processed: the response was sent
    assert not sa_b.fragments


def test_incomplete_set_expires() -> None:
    h = _pair()
    h.up()
    _established(h)
    _sa_a, sa_b = _inject_request(h, [(150, [1])])
    assert sa_b.fragments
    h.now += sa_b.retry_policy.total_time() + 1
    h.b.mgr.handle_timer(h.now)
    assert not sa_b.fragments
    assert sa_b.state is IkeSaState.ESTABLISHED


def test_too_many_fragments_dropped() -> None:
    h = _pair()
    h.up()
    _established(h)
    sa_a, sa_b = _sa(h.a), _sa(h.b)
    assert sa_a.prot_out is not None
    msg = _info(sa_a, sa_a.req_win.allocate(), 3000)
    frags = encrypt_fragments(msg, sa_a.prot_out, 100)
    assert len(frags) > 64
    for f in frags:
        h.b.mgr.receive_datagram(f, sa_b.local, sa_b.remote, h.now)
    assert not sa_b.fragments and not _answers(h)


def test_fragmented_create_child_sa_after_setup() -> None:
    h = _pair()
    h.up()
    _established(h)
    before = len(h.log)
    sa_a = _sa(h.a)
    from pyipsec.ikev2.tasks import child_rekey

    child_rekey.start(sa_a, next(iter(sa_a.children.values())), h.now)
    h.run(5.0)
    ccsa = [p for p in h.log[before:] if p.exchange == ExchangeType.CREATE_CHILD_SA]
    assert ccsa and all(_skf(p) is not None for p in ccsa)
    assert len(_sa(h.a).children) == 1 and len(_sa(h.b).children) == 1
