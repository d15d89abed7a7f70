"""IkeManager: dispatch, INVALID_IKE_SPI, INITIAL_CONTACT, cookies, reload, status."""

from __future__ import annotations

import ipaddress
import json

import pytest

from pyipsec.ikev2.conn_index import addr_ok as _addr_ok
from pyipsec.ikev2.constants import ExchangeType, HeaderFlag, NotifyType, PayloadType
from pyipsec.ikev2.events import (
    ChildSaDeleted,
    ChildSaInstalled,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaFailed,
    event_to_json,
)
from pyipsec.ikev2.manager import COOKIE_SECRET_LIFETIME, IkeManager
from pyipsec.ikev2.message import Message
from pyipsec.ikev2.payloads import NoncePayload, NotifyPayload, UnknownPayload
from pyipsec.ikev2.selectors import Selector, covers, from_wire, is_subset, narrow, same_set
from pyipsec.ikev2.state import IkeSaState

from .harness import A_IP, B_IP, Harness, Packet, conn_pair


def _up() -> Harness:
    a, b = conn_pair()
    h = Harness(a, b)
    h.up()
    return h


def test_status_is_json_ready() -> None:
    h = _up()
    st = h.a.mgr.status()
    text = json.dumps(st)
    assert "a2b" in text and st[0]["role"] == "initiator"
    assert st[0]["remote"]["id"] == "sun.example.net"
    assert st[0]["children"][0]["local_ts"] == ["10.1.0.0/16"]
    assert json.dumps([event_to_json(e) for e in h.a.events])


def test_single_sa_lookups_equal_the_views() -> None:
    """ike_sa / child_sa (one lookup each, for VICI's terminate and rekey by id) give
    exactly what the full views give, and None once the SA is gone or never was."""
    h = _up()
    mgr = h.b.mgr
    (ike,) = mgr.ike_sas()
    (child,) = mgr.child_sas()
    assert mgr.ike_sa(ike.ike_id) == ike
    assert mgr.child_sa(child.spi_in) == child
    assert mgr.ike_sa(ike.ike_id + 1000) is None
    assert mgr.child_sa(child.spi_in ^ 0xFFFF) is None
    mgr.terminate(ike.ike_id, h.now)
    h.run()
    assert mgr.ike_sa(ike.ike_id) is None and mgr.ike_sas() == []
    assert mgr.child_sa(child.spi_in) is None


def test_invalid_ike_spi_answered_and_rate_limited() -> None:
    h = _up()
    sa = next(iter(h.a.mgr.by_id.values()))
    pkt = h.sent("a", ExchangeType.IKE_AUTH, response=False)[0]
    msg = Message.parse(pkt.data)
    # a request for an IKE SA B does not know
    forged = bytearray(pkt.data)
    forged[8:16] = b"\x99" * 8
    out = []
    for _ in range(30):
        h.b.mgr.receive_datagram(bytes(forged), (B_IP, 500), (A_IP, 500), h.now)
        out += h.b.mgr.datagrams_to_send(h.now)
    assert 1 <= len(out) <= 11
    reply = Message.parse(out[0][0])
    assert reply.is_response and reply.exchange == ExchangeType.INFORMATIONAL
    assert reply.message_id == msg.message_id and reply.spi_i == msg.spi_i
    assert reply.notify(NotifyType.INVALID_IKE_SPI) is not None
    assert sa.state is IkeSaState.ESTABLISHED


def test_initial_contact_replaces_old_sa() -> None:
    h = _up()
    (old_b,) = h.b.mgr.by_id.values()
    # A "reboots": a fresh manager with the same config initiates again
    a_conn = next(iter(h.a.mgr.conns.values()))
    h.a.mgr = IkeManager([a_conn], rng=h.a.rng)
    h.a.events.clear()
    h.up()
    assert h.a.of(IkeSaEstablished)
    assert old_b.state is IkeSaState.DELETED
    assert [e.ike_id for e in h.b.of(IkeSaDeleted)] == [old_b.ike_id]
    assert len(h.b.of(ChildSaDeleted)) == 1
    live = [s for s in h.b.mgr.by_id.values() if s.state is IkeSaState.ESTABLISHED]
    assert len(live) == 1


def test_initiate_reuses_established_sa() -> None:
    h = _up()
    sa = h.a.mgr.initiate("a2b", None, h.now)
    h.run(2)
    assert len(h.a.of(IkeSaEstablished)) == 1
    assert sa is next(iter(h.a.mgr.by_id.values()))
    assert len(h.a.of(ChildSaInstalled)) == 1  # already installed: nothing new
    with pytest.raises(KeyError):
        h.a.mgr.initiate("nope", None, h.now)


def test_no_matching_connection() -> None:
    a, b = conn_pair(b_kw={"remote_addrs": ("198.51.100.0/24",)})
    h = Harness(a, b)
    h.up()
    assert not h.a.of(IkeSaEstablished)
    # the unauthenticated refusal is believed once it answers a retransmission too
    # (RFC 7296 §2.21.1): two requests, two refusals, then the failure
    reps = h.sent("b", ExchangeType.IKE_SA_INIT, response=True)
    assert len(reps) == 2
    assert all(r.message().notify(NotifyType.NO_PROPOSAL_CHOSEN) is not None for r in reps)
    (failed,) = h.a.of(IkeSaFailed)
    assert failed.notify == NotifyType.NO_PROPOSAL_CHOSEN


def test_unsupported_critical_payload_in_init() -> None:
    h = Harness(*conn_pair())
    msg = Message(
        b"\x11" * 8,
        b"\x00" * 8,
        ExchangeType.IKE_SA_INIT,
        int(HeaderFlag.INITIATOR),
        0,
        [(PayloadType.NONCE, NoncePayload(b"n" * 32)), (200, UnknownPayload(200, True, b"xx"))],
    )
    h.b.mgr.receive_datagram(msg.serialise(), (B_IP, 500), (A_IP, 500), h.now)
    (out,) = h.b.mgr.datagrams_to_send(h.now)
    reply = Message.parse(out[0])
    n = reply.notify(NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD)
    assert n is not None and n.data == bytes([200])
    assert not h.b.mgr.by_id


def test_cookie_secret_rotation() -> None:
    h = Harness(*conn_pair(), b_kw={"cookie_threshold": 0})
    mgr = h.b.mgr
    req = Message(
        b"\x22" * 8,
        b"\x00" * 8,
        ExchangeType.IKE_SA_INIT,
        int(HeaderFlag.INITIATOR),
        0,
        [(PayloadType.NONCE, NoncePayload(b"n" * 32))],
    )
    remote = (A_IP, 500)
    mgr._send_cookie(req, (B_IP, 500), remote, 0.0)
    (out,) = mgr.datagrams_to_send(0.0)
    cookie = Message.parse(out[0]).notify(NotifyType.COOKIE)
    assert cookie is not None
    with_cookie = Message(
        req.spi_i,
        req.spi_r,
        req.exchange,
        req.flags,
        0,
        [
            (PayloadType.NOTIFY, NotifyPayload(0, b"", NotifyType.COOKIE, cookie.data)),
            *req.payloads,
        ],
    )
    assert mgr._cookie_ok(with_cookie, remote, 1.0)
    assert not mgr._cookie_ok(with_cookie, (B_IP, 500), 1.0)  # other address
    assert mgr._cookie_ok(with_cookie, remote, COOKIE_SECRET_LIFETIME + 1)  # previous secret
    assert not mgr._cookie_ok(with_cookie, remote, 3 * COOKIE_SECRET_LIFETIME + 2)


def test_reload_and_shutdown() -> None:
    h = _up()
    a_conn = next(iter(h.a.mgr.conns.values()))
    h.a.mgr.reload([a_conn], h.now)
    h.run(2)
    assert not h.a.of(IkeSaDeleted)  # unchanged: kept
    h.a.mgr.reload([], h.now)
    h.run(2)
    assert h.a.of(IkeSaDeleted) and h.b.of(IkeSaDeleted)
    h2 = _up()
    h2.b.mgr.shutdown(h2.now)
    h2.run(2)
    assert h2.a.of(IkeSaDeleted) and h2.b.of(IkeSaDeleted)


def test_commands_on_unknown_ids() -> None:
    h = _up()
    sa = next(iter(h.a.mgr.by_id.values()))
    with pytest.raises(KeyError):
        h.a.mgr.rekey_child(sa.ike_id, 1234, h.now)
    with pytest.raises(KeyError):
        h.a.mgr.delete_child(999, 1234, h.now)
    h.a.mgr.esp_activity(4321, h.now)
    h.a.mgr.notify_traffic(4321, h.now, bytes_in=5)


def test_addr_matching() -> None:
    assert _addr_ok((), "1.2.3.4")
    assert _addr_ok(("%any",), "1.2.3.4")
    assert _addr_ok(("10.0.0.0/8",), "10.1.2.3")
    assert not _addr_ok(("10.0.0.0/8",), "11.1.2.3")
    assert _addr_ok(("10.0.0.1-10.0.0.9",), "10.0.0.5")
    assert not _addr_ok(("10.0.0.1",), "2001:db8::1")


def test_selectors() -> None:
    wide = Selector.network("10.0.0.0/8")
    net = Selector.network("10.1.0.0/16")
    tcp = Selector.network("10.1.2.3/32", protocol=6)
    v6 = Selector.network("2001:db8::/32")
    assert wide.contains(net) and not net.contains(wide)
    assert net.intersect(tcp) == tcp and wide.intersect(v6) is None
    assert narrow([wide, v6], [net]) == (net,)
    # the trap "packet" selector first, then the wider one: both narrowed, deduplicated
    assert narrow([tcp, wide], [net]) == (net,)
    assert is_subset([tcp], [net]) and not is_subset([wide], [net])
    assert covers([net], [net])
    assert str(tcp) == "10.1.2.3[6/]" or str(tcp).startswith("10.1.2.3")
    assert Selector(ipaddress.ip_address("10.0.0.1"), ipaddress.ip_address("10.0.0.5")).to_json()
    ports = Selector(net.start, net.end, 17, 500, 500)
    assert str(ports) == "10.1.0.0/16[17/500]"
    assert ports.intersect(Selector(net.start, net.end, 6)) is None
    assert ports.matches(ipaddress.ip_address("10.1.9.9"), 17, 500)
    assert from_wire([]) == ()


def test_narrowing_a_contained_selector_keeps_it_and_agrees_with_intersect() -> None:
    """narrow() hands back the proposed object when the policy allows it as it is,
    and otherwise exactly what intersect() gives (OPAQUE ports included, §3.13.1)."""
    import random

    rnd = random.Random(5)

    def sel() -> Selector:
        lo = rnd.randrange(0, 64)
        hi = lo + rnd.randrange(0, 64)
        plo = rnd.choice([0, 0, 80, 500, 65535])
        phi = rnd.choice([65535, 65535, 80, 500, 0])
        base = 0x0A000000
        return Selector(ipaddress.ip_address(base + lo), ipaddress.ip_address(base + hi),
                        rnd.choice([0, 0, 6, 17]), plo, phi)

    for _ in range(2000):
        p, a = sel(), sel()
        x = p.intersect(a)
        got = narrow([p], [a])
        assert got == ((x,) if x is not None else ()), (p, a)
        if got and got[0] == p:
            assert got[0] is p
    p = Selector.network("10.1.2.3/32", protocol=17)
    assert same_set((p, Selector.network("10.0.0.0/8")), (Selector.network("10.0.0.0/8"), p))
    assert not same_set((p,), (Selector.network("10.1.2.3/32"),))


def test_forged_init_refusal_does_not_stop_the_setup() -> None:
    """RFC 7296 §2.21.1: an unauthenticated error answer to IKE_SA_INIT is not acted
    on at once.  An on-path forger answers first with NO_PROPOSAL_CHOSEN; the real
    response (delayed) still establishes the SA."""
    a, b = conn_pair()
    h = Harness(a, b)
    h.rules.append(
        lambda p: [0.3] if p.sender == "b" and p.exchange == ExchangeType.IKE_SA_INIT else None
    )
    h.a.mgr.initiate(a.name, None, h.now)
    h.flush()
    (req,) = h.sent("a", ExchangeType.IKE_SA_INIT, response=False)
    m = req.message()
    assert m is not None
    forged = Message(
        m.spi_i,
        b"\x00" * 8,
        ExchangeType.IKE_SA_INIT,
        int(HeaderFlag.RESPONSE),
        0,
        [(PayloadType.NOTIFY, NotifyPayload.error(NotifyType.NO_PROPOSAL_CHOSEN))],
    )
    h.seq += 1
    h.wire.append(Packet(h.now + 0.01, h.seq, forged.serialise(), req.dst, req.src, "b"))
    h.run(5)
    assert not h.a.of(IkeSaFailed)
    assert len(h.a.of(IkeSaEstablished)) == 1 and len(h.a.of(ChildSaInstalled)) == 1


def test_status_filters_and_pages() -> None:
    """status() by connection and peer IP, and a page of it (a big gateway's status)."""
    h = Harness(*conn_pair())
    h.up()
    h.a.mgr.initiate("a2b", None, h.now)  # reuses the SA: still one
    (st,) = h.a.mgr.status(h.now)
    assert h.a.mgr.status(h.now, conn="a2b") == [st]
    assert h.a.mgr.status(h.now, conn="nope") == []
    assert h.a.mgr.status(h.now, peer=B_IP) == [st]
    assert h.a.mgr.status(h.now, peer=A_IP) == []
    assert h.a.mgr.status(h.now, conn="a2b", peer=B_IP, limit=1) == [st]
    assert h.a.mgr.status(h.now, offset=1) == []


def test_indexes_follow_rekeys_and_deletes() -> None:
    """The manager's indexes (Child SA SPIs, peers, deadlines) stay right through an IKE
    rekey, a Child rekey and a delete: traffic reports find the SA, INVALID_SPI reports
    go to the peer, the timer heap has the new SA's deadlines and forgets the old."""
    h = Harness(*conn_pair())
    h.up()
    mgr = h.a.mgr
    (ike,) = mgr.ike_sas()
    mgr.rekey_ike(ike.ike_id, h.now)
    h.run(2)
    (new,) = mgr.ike_sas()
    assert new.ike_id != ike.ike_id
    (c,) = mgr.child_sas()
    assert c.ike_id == new.ike_id
    assert not mgr.esp_activity(c.spi_in, h.now)  # found (no move), no error
    mgr.rekey_child(new.ike_id, c.spi_in, h.now)
    h.run(2)
    (c2,) = mgr.child_sas()
    assert c2.spi_in != c.spi_in
    mgr.notify_traffic(c2.spi_in, h.now, bytes_in=10, packets_in=1)
    assert mgr.unknown_esp_spi(0x1234, (B_IP, 4500), h.now)  # INVALID_SPI to the peer
    h.run(1)
    nxt = mgr.next_timer()
    assert nxt is not None and nxt > h.now
    mgr.terminate(new.ike_id, h.now)
    h.run(20)
    assert mgr.ike_sas() == [] and mgr.child_sas() == []
    assert not mgr.unknown_esp_spi(0x1234, (B_IP, 4500), h.now)  # no SA with that peer


def test_garbage_from_the_network_is_logged_rate_limited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """10,000 datagrams of garbage and unmatched IKE_SA_INIT requests in one second:
    counted every one, logged a bounded number of times (a sender cannot fill the disk)."""
    import logging
    import random

    from pyipsec.ikev2.manager import NETWORK_LOG_BURST

    rnd = random.Random(3)
    mgr = IkeManager([], cookie_threshold=10**6)
    init = Message(
        b"\x01" * 8, b"\x00" * 8, ExchangeType.IKE_SA_INIT, int(HeaderFlag.INITIATOR), 0,
        [(PayloadType.NONCE, NoncePayload(b"n" * 32))],
    ).serialise()  # fmt: skip
    caplog.set_level(logging.DEBUG, logger="pyipsec.ike")
    for i in range(10_000):
        data = init if i % 2 else bytes(rnd.randrange(256) for _ in range(40))
        mgr.receive_datagram(data, (B_IP, 500), (A_IP, 500), 1000.0 + i * 1e-4)
    lines = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert len(lines) <= 2 * NETWORK_LOG_BURST + 5
    assert sum(mgr.error_status().values()) >= 4000  # the garbage was counted


def test_forgotten_sas_are_freed_without_the_garbage_collector() -> None:
    """A forgotten IKE SA has no reference cycles left (timer sources, tasks, logger):
    reference counting frees it at once -- with tens of thousands of SAs, leaving them
    to the cyclic collector means long full-collection pauses and memory held."""
    import gc
    import weakref

    h = Harness(*conn_pair())
    h.up()
    gc.collect()
    gc.disable()
    try:
        # the SA's logger adapter is its own (and, unlike a compiled IkeSa, takes weak
        # references): it goes when the SA goes
        (sa,) = [s for s in h.a.mgr.by_id.values()]
        ref = weakref.ref(sa.log)
        del sa
        h.a.mgr.terminate("a2b", h.now)
        h.run(30)
        assert h.a.mgr.by_id == {}
        assert ref() is None
    finally:
        gc.enable()
