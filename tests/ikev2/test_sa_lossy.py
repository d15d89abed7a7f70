"""Whole life cycles over a wire that drops, duplicates, delays and reorders (deterministic)."""

from __future__ import annotations

import hashlib
import logging

import pytest

from pyipsec.config.model import DpdAction, DpdConfig, Lifetimes, RetransmitConfig
from pyipsec.ikev2.constants import ExchangeType, NotifyType, PayloadType
from pyipsec.ikev2.events import ChildSaRekeyed, IkeSaEstablished, IkeSaRekeyed
from pyipsec.ikev2.message import Message
from pyipsec.ikev2.payloads import NotifyPayload
from pyipsec.ikev2.state import ChildSaState, IkeSaState

from .harness import Harness, Packet, child, conn_pair


def _chaos(seed: int, drop: float, dup: float, jitter: float):  # type: ignore[no-untyped-def]
    counter = [0]

    def rule(p: Packet) -> list[float] | None:
        counter[0] += 1
        h = hashlib.sha256(f"{seed}/{counter[0]}".encode()).digest()
        r1, r2, r3 = h[0] / 255, h[1] / 255, h[2] / 255
        if r1 < drop:
            return []
        delays = [r2 * jitter]
        if r3 < dup:
            delays.append(r3 * jitter * 3)
        return delays

    return rule


def _live(side):  # type: ignore[no-untyped-def]
    return [s for s in side.mgr.by_id.values() if s.state is IkeSaState.ESTABLISHED]


def _consistent(h: Harness) -> None:
    la, lb = _live(h.a), _live(h.b)
    assert len(la) == 1 and len(lb) == 1, (la, lb)
    sa_a, sa_b = la[0], lb[0]
    assert (sa_a.spi_i, sa_a.spi_r) == (sa_b.spi_i, sa_b.spi_r)
    ca = {c.spi_in: c for c in sa_a.children.values() if c.state is ChildSaState.INSTALLED}
    cb = {c.spi_out: c for c in sa_b.children.values() if c.state is ChildSaState.INSTALLED}
    assert ca.keys() == cb.keys() and ca
    for spi, c in ca.items():
        assert c.encr_in == cb[spi].encr_out and c.encr_out == cb[spi].encr_in


PATIENT = RetransmitConfig(tries=10, timeout=1.0, base=1.5, max_delay=4.0)


@pytest.mark.parametrize("seed", range(12))
def test_rekeys_over_a_bad_wire(seed: int, caplog: pytest.LogCaptureFixture) -> None:
    """20 % loss, 20 % duplicates, up to 0.5 s reordering; child rekeys every ~35 s and IKE
    rekeys every ~80 s from both sides (collisions included): both ends stay in sync."""
    child_lt = Lifetimes(rekey_time=40.0, over_time=30.0, rand_time=10.0)
    ike_lt = Lifetimes(rekey_time=90.0, over_time=60.0, rand_time=20.0)
    a, b = conn_pair(
        child_lifetimes=child_lt,
        ike_lifetimes=ike_lt,
        a_kw={"retransmit": PATIENT},
        b_kw={"retransmit": PATIENT},
    )
    h = Harness(a, b, seed=str(seed))
    h.rules.append(_chaos(seed, drop=0.2, dup=0.2, jitter=0.5))
    h.a.mgr.initiate("a2b", None, h.now)
    h.run(330)
    h.rules.clear()
    h.run(30)
    assert h.a.of(IkeSaEstablished)
    assert len(h.a.of(IkeSaRekeyed)) >= 3 and len(h.a.of(ChildSaRekeyed)) >= 6
    _consistent(h)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("seed", range(6))
def test_harsh_wire_never_raises(seed: int, caplog: pytest.LogCaptureFixture) -> None:
    """30 % loss and few retries: SAs die and are restarted; nothing escapes, nothing leaks."""
    child_lt = Lifetimes(rekey_time=20.0, over_time=10.0, rand_time=5.0)
    rt = RetransmitConfig(tries=2, timeout=1.0, base=1.5)
    dpd = DpdConfig(interval=5.0, action=DpdAction.RESTART)
    a, b = conn_pair(
        child_lifetimes=child_lt,
        a_kw={"retransmit": rt, "dpd": dpd},
        b_kw={"retransmit": rt},
    )
    h = Harness(a, b, seed=f"harsh{seed}")
    h.rules.append(_chaos(seed, drop=0.3, dup=0.3, jitter=0.5))
    h.a.mgr.initiate("a2b", None, h.now)
    h.run(200)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    for side in (h.a, h.b):
        for sa in side.mgr.by_id.values():
            assert len(sa.req_win.pending) <= 1


def test_reordered_child_rekey_and_delete() -> None:
    """The DELETE of the old child overtakes nothing it should not: delay the rekey response."""
    a, b = conn_pair()
    h = Harness(a, b)
    h.up()
    sa = _live(h.a)[0]
    (c,) = sa.children.values()
    h.rules.append(lambda p: [0.5] if p.sender == "b" else None)
    h.a.mgr.rekey_child(sa.ike_id, c.spi_in, h.now)
    h.b.mgr.liveness(_live(h.b)[0].ike_id, h.now)
    h.run(10)
    _consistent(h)


@pytest.mark.parametrize("seed", range(8))
def test_random_operations_over_a_bad_wire(seed: int, caplog: pytest.LogCaptureFixture) -> None:
    """Creates, deletes, rekeys (child and IKE, from both sides) and liveness checks at
    pseudo-random moments, over a lossy wire: the two ends end up with the same SAs."""
    clt = Lifetimes(rekey_time=30.0, over_time=30.0, rand_time=10.0)
    ilt = Lifetimes(rekey_time=70.0, over_time=60.0, rand_time=20.0)
    web = {"local": ("10.1.5.0/24",), "remote": ("10.2.5.0/24",)}
    pfs = ("aes128gcm16-ecp256",)
    a, b = conn_pair(
        a_children=[child(lifetimes=clt), child("web", **web, esp_proposals=pfs, lifetimes=clt)],
        b_children=[
            child(local=("10.2.0.0/16",), remote=("10.1.0.0/16",), lifetimes=clt),
            child(
                "web", local=web["remote"], remote=web["local"], esp_proposals=pfs, lifetimes=clt
            ),
        ],
        ike_lifetimes=ilt,
        a_kw={"retransmit": PATIENT},
        b_kw={"retransmit": PATIENT},
    )
    h = Harness(a, b, seed=f"ops{seed}")
    h.rules.append(_chaos(seed, drop=0.15, dup=0.15, jitter=0.5))
    h.a.mgr.initiate("a2b", None, h.now)
    h.run(10)
    for step in range(40):
        r = hashlib.sha256(f"{seed}:{step}".encode()).digest()
        side = h.a if r[0] & 1 else h.b
        live = _live(side)
        if live:
            sa = live[0]
            kids = [c for c in sa.children.values() if c.state is ChildSaState.INSTALLED]
            op = r[1] % 5
            if op == 0 and side is h.a:
                side.mgr.create_child(sa.ike_id, "web" if r[2] & 1 else "net", h.now)
            elif op == 1 and kids:
                side.mgr.delete_child(sa.ike_id, kids[r[2] % len(kids)].spi_in, h.now)
            elif op == 2 and kids:
                side.mgr.rekey_child(sa.ike_id, kids[r[2] % len(kids)].spi_in, h.now)
            elif op == 3:
                side.mgr.rekey_ike(sa.ike_id, h.now)
            elif op == 4:
                side.mgr.liveness(sa.ike_id, h.now)
        h.run(r[3] / 25)
    h.rules.clear()
    h.run(120)
    la, lb = _live(h.a), _live(h.b)
    assert len(la) == 1 and len(lb) == 1 and la[0].spi_i == lb[0].spi_i
    ka = {c.spi_in: c for c in la[0].children.values()}
    kb = {c.spi_out: c for c in lb[0].children.values()}
    assert ka.keys() == kb.keys()
    assert all(ka[k].encr_out == kb[k].encr_in for k in ka)
    assert all(c.state is ChildSaState.INSTALLED for c in [*ka.values(), *kb.values()])
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_unprotected_invalid_ike_spi_does_not_kill_the_sa() -> None:
    a, b = conn_pair()
    h = Harness(a, b)
    h.up()
    sa = _live(h.a)[0]
    h.a.mgr.liveness(sa.ike_id, h.now)
    (data, local, remote) = h.a.mgr.datagrams_to_send(h.now)[0]
    hdr = Message.parse(data)
    forged = Message(
        hdr.spi_i,
        hdr.spi_r,
        ExchangeType.INFORMATIONAL,
        0x20,
        hdr.message_id,
        [(PayloadType.NOTIFY, NotifyPayload(0, b"", NotifyType.INVALID_IKE_SPI))],
    )
    h.a.mgr.receive_datagram(forged.serialise(), local, remote, h.now)
    assert sa.state is IkeSaState.ESTABLISHED and hdr.message_id in sa.req_win.pending
    h.b.mgr.receive_datagram(data, remote, local, h.now)
    h.run(2)
    assert sa.state is IkeSaState.ESTABLISHED and not sa.req_win.pending
