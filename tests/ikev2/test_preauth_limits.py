"""Bounded pre-authentication state: the IKE fragment reassembly byte budget (RFC 7383
§5) and the half-open limits of the manager (RFC 7296 §2.6: in total, cookies and
blocking per source IP)."""

from __future__ import annotations

from typing import Any

from pyipsec.crypto.encr import make_sk_protector
from pyipsec.ikev2.constants import ExchangeType, HeaderFlag, NotifyType, PayloadType
from pyipsec.ikev2.events import IkeSaEstablished
from pyipsec.ikev2.fragments import FragmentBudget
from pyipsec.ikev2.manager import IkeManager
from pyipsec.ikev2.message import Message, encrypt_fragments
from pyipsec.ikev2.payloads import NotifyPayload, VendorIdPayload
from pyipsec.ikev2.sa import IkeSa
from pyipsec.ikev2.state import IkeSaState
from pyipsec.ikev2.timers import TimerKind

from .harness import A_IP, B_IP, Harness, Packet, conn_pair

TINY = {"fragment_size": 256}


def _no_auth_from_a(p: Packet) -> list[float] | None:
    return [] if p.sender == "a" and p.exchange == ExchangeType.IKE_AUTH else None


def _half_open(b_kw: dict[str, Any] | None = None) -> tuple[Harness, IkeSa, IkeSa]:
    """A's IKE_SA_INIT answered, its IKE_AUTH never delivered: B's SA is half-open."""
    h = Harness(*conn_pair(a_kw=TINY, b_kw=TINY), b_kw=b_kw)
    h.rules.append(_no_auth_from_a)
    h.a.mgr.initiate("a2b", None, h.now)
    h.run(0.5)
    (sa_a,) = h.a.mgr.by_id.values()
    (sa_b,) = h.b.mgr.by_id.values()
    assert sa_b.state is IkeSaState.INIT_DONE and sa_b.fragmentation and sa_a.keys
    return h, sa_a, sa_b


def _fragments(sa: IkeSa, exchange: int, mid: int, size: int, frag_len: int) -> list[bytes]:
    """A request of ``size`` octets of Vendor ID from ``sa`` (the initiator) to its peer,
    protected with ``sa``'s keys, as fragments of at most ``frag_len`` octets."""
    k, suite = sa.keys, sa.suite
    assert k is not None and suite is not None
    prot = make_sk_protector(suite.encr_id, suite.key_bits, suite.integ_id, k.sk_ei, k.sk_ai)
    msg = Message(
        sa.spi_i,
        sa.spi_r,
        exchange,
        int(HeaderFlag.INITIATOR),
        mid,
        [(PayloadType.VENDOR_ID, VendorIdPayload(b"v" * size))],
    )
    return encrypt_fragments(msg, prot, frag_len)


def _feed(h: Harness, data: bytes) -> None:
    h.b.mgr.receive_datagram(data, (B_IP, 500), (A_IP, 500), h.now)


# ============================================================== fragment budget


def test_fragment_flood_from_unauthenticated_peer_is_bounded() -> None:
    h, sa_a, sa_b = _half_open()
    budget = sa_b.fragment_budget.unauthenticated
    assert budget == 10_000
    frags = _fragments(sa_a, ExchangeType.IKE_AUTH, 1, 60_000, 1200)
    assert 50 <= len(frags) <= 64
    peak = 0
    for data in frags[:-1]:  # never complete
        _feed(h, data)
        peak = max(peak, sa_b.fragments.kept)
        assert sa_b.fragments.kept <= budget
        assert sum(st.size for st in sa_b.fragments.sets()) == sa_b.fragments.kept
    assert peak > budget - 1200  # it was really filled, then discarded
    errors = h.b.mgr.error_status()
    assert errors.get("fragment-budget-exceeded", 0) >= 5
    assert sa_b.errors.counters  # counted per SA too
    assert sa_b.state is IkeSaState.INIT_DONE  # dropped, nothing else happened
    # the real (small) IKE_AUTH still gets through afterwards
    h.rules.clear()
    h.run(20.0)
    assert len(h.b.of(IkeSaEstablished)) == 1


def test_budget_grows_after_authentication() -> None:
    h = Harness(*conn_pair(a_kw=TINY, b_kw=TINY))
    h.up()
    (sa_a,) = h.a.mgr.by_id.values()
    (sa_b,) = h.b.mgr.by_id.values()
    assert sa_b.established
    mid = sa_b.resp_win.expected
    # 20,000 octets: over the unauthenticated budget, within the authenticated one
    frags = _fragments(sa_a, ExchangeType.INFORMATIONAL, mid, 20_000, 1200)
    for data in frags:
        _feed(h, data)
    assert sa_b.fragments.kept == 0
    assert "fragment-budget-exceeded" not in h.b.mgr.error_status()
    answers = [
        m
        for d, _, _ in h.b.mgr.datagrams_to_send(h.now)
        if (m := Message.parse(d)).exchange == ExchangeType.INFORMATIONAL and m.is_response
    ]
    assert [m.message_id for m in answers] == [mid]


def test_configured_budgets_reach_every_sa() -> None:
    h, _sa_a, sa_b = _half_open(
        {"max_fragment_bytes_unauthenticated": 3000, "max_fragment_bytes": 5000}
    )
    assert sa_b.fragment_budget == FragmentBudget(3000, 5000)
    assert isinstance(h.b.mgr, IkeManager)


def test_set_never_outlives_the_half_open_deadline() -> None:
    h, sa_a, sa_b = _half_open({"half_open_timeout": 5.0})
    half_open = sa_b.timers.get(TimerKind.HALF_OPEN)
    assert half_open is not None
    assert h.now + sa_b.retry_policy.total_time() > half_open  # retransmissions: longer
    frags = _fragments(sa_a, ExchangeType.IKE_AUTH, 1, 3000, 600)
    _feed(h, frags[0])
    (st,) = sa_b.fragments.sets()
    assert st.deadline == half_open
    h.rules.append(lambda p: [])  # nothing more gets through
    h.run(half_open - h.now + 0.1)
    assert not sa_b.fragments and sa_b.fragments.kept == 0
    assert sa_b.closed


# ============================================================== half-open limits


def _init_request(h: Harness) -> bytes:
    (pkt,) = h.sent("a", ExchangeType.IKE_SA_INIT, False)[:1]
    return pkt.data


def _variant(data: bytes, n: int, cookie: bytes | None = None) -> bytes:
    """The same IKE_SA_INIT request under another SPIi (another initiator)."""
    spi = n.to_bytes(8, "big")
    msg = Message.parse(spi + data[8:])
    if cookie is not None:
        msg.payloads.insert(
            0, (PayloadType.NOTIFY, NotifyPayload(0, b"", NotifyType.COOKIE, cookie))
        )
    return msg.serialise()


def _answers(mgr: IkeManager, now: float) -> list[Message]:
    return [Message.parse(d) for d, _, _ in mgr.datagrams_to_send(now)]


def _cookie_of(answers: list[Message]) -> bytes | None:
    for m in answers:
        n = m.notify(NotifyType.COOKIE)
        if n is not None:
            return n.data
    return None


def _responder(b_kw: dict[str, Any]) -> tuple[Harness, bytes]:
    h = Harness(*conn_pair(), b_kw=b_kw)
    h.rules.append(lambda p: [])  # record A's request, deliver nothing
    h.a.mgr.initiate("a2b", None, h.now)
    h.flush()
    return h, _init_request(h)


def _send(h: Harness, data: bytes, ip: str = A_IP, port: int = 500) -> list[Message]:
    h.b.mgr.receive_datagram(data, (B_IP, 500), (ip, port), h.now)
    return _answers(h.b.mgr, h.now)


def test_cookies_per_source_ip_then_block_threshold() -> None:
    h, req = _responder({})
    mgr = h.b.mgr
    assert (mgr.cookie_threshold_ip, mgr.block_threshold) == (3, 5)
    for n in range(1, 4):
        out = _send(h, _variant(req, n), port=1000 + n)
        assert _cookie_of(out) is None and out[0].get(PayloadType.SA) is not None
    assert mgr._half_open_count(A_IP) == 3
    # the fourth from this IP must prove its address
    out = _send(h, _variant(req, 4), port=1004)
    cookie = _cookie_of(out)
    assert cookie is not None and mgr._half_open_count(A_IP) == 3
    # another IP is not affected (total 3 < cookie_threshold 32)
    assert _cookie_of(_send(h, _variant(req, 50), ip="192.0.2.50")) is None
    assert mgr._half_open_count("192.0.2.50") == 1
    # with its cookie it gets state, up to block_threshold (5) half-open SAs
    out = _send(h, _variant(req, 4, cookie), port=1004)
    assert out and out[0].get(PayloadType.SA) is not None
    cookie5 = _cookie_of(_send(h, _variant(req, 5), port=1005))
    assert cookie5 is not None
    assert _send(h, _variant(req, 5, cookie5), port=1005)[0].get(PayloadType.SA) is not None
    assert mgr._half_open_count(A_IP) == 5
    cookie6 = _cookie_of(_send(h, _variant(req, 6), port=1006))
    assert cookie6 is not None
    assert _send(h, _variant(req, 6, cookie6), port=1006) == []  # dropped, even with cookie
    assert mgr._half_open_count(A_IP) == 5
    assert mgr.error_status()["half-open-limit"] == 1
    # leaving half-open (timeout) gives the counts back
    mgr.handle_timer(h.now + mgr.half_open_timeout + 1)
    assert mgr._half_open_count(A_IP) == 0 and mgr._half_open_count() == 0
    assert mgr._half_open_by_ip == {} and mgr._half_open_responders == {}


def test_global_half_open_limit_refuses_even_with_cookie() -> None:
    h, req = _responder(
        {"half_open_limit": 2, "cookie_threshold": 1, "cookie_threshold_ip": 0,
         "block_threshold": 0}
    )
    mgr = h.b.mgr
    assert _cookie_of(_send(h, _variant(req, 1), ip="198.51.100.1")) is None
    cookie = _cookie_of(_send(h, _variant(req, 2), ip="198.51.100.2"))
    assert cookie is not None
    out = _send(h, _variant(req, 2, cookie), ip="198.51.100.2")
    assert out[0].get(PayloadType.SA) is not None
    assert mgr._half_open_count() == 2
    cookie = _cookie_of(_send(h, _variant(req, 3), ip="198.51.100.3"))
    assert cookie is not None
    assert _send(h, _variant(req, 3, cookie), ip="198.51.100.3") == []
    assert mgr._half_open_count() == 2 and len(mgr.by_id) == 2
    assert mgr.error_status()["half-open-limit"] == 1


def test_flood_of_limit_drops_is_counted_and_log_rate_limited(caplog: Any) -> None:
    h, req = _responder({"cookie_threshold_ip": 0, "block_threshold": 1})
    _send(h, _variant(req, 1))
    with caplog.at_level("WARNING", logger="pyipsec.ike"):
        for n in range(2, 102):
            assert _send(h, _variant(req, n)) == []
    assert h.b.mgr.error_status()["half-open-limit"] == 100
    assert len([r for r in caplog.records if "half-open-limit" in r.getMessage()]) <= 10


def test_established_sa_leaves_the_per_ip_count() -> None:
    h = Harness(*conn_pair())
    h.up()
    mgr = h.b.mgr
    assert len(h.b.of(IkeSaEstablished)) == 1
    assert mgr._half_open_by_ip == {} and mgr._half_open_responders == {}


def test_zero_spi_i_is_dropped() -> None:
    h, req = _responder({})
    assert _send(h, b"\x00" * 8 + req[8:]) == []
    assert not h.b.mgr.by_id
