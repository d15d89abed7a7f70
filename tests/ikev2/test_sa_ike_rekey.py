"""IKE SA rekeying (RFC 7296 §1.3.2, §2.8.2, §2.18, §2.25)."""

from __future__ import annotations

import logging

import pytest

from pyipsec.config.model import Lifetimes
from pyipsec.ikev2.constants import ExchangeType, NotifyType
from pyipsec.ikev2.events import (
    ChildSaDeleted,
    ChildSaInstalled,
    ChildSaRekeyed,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaRekeyed,
)
from pyipsec.ikev2.state import IkeSaState

from .harness import Harness, conn_pair


def _live(side):  # type: ignore[no-untyped-def]
    return [sa for sa in side.mgr.by_id.values() if sa.state is IkeSaState.ESTABLISHED]


def _up(**kw) -> Harness:  # type: ignore[no-untyped-def]
    a, b = conn_pair(**kw)
    h = Harness(a, b)
    h.up()
    return h


def _check_single_sa(h: Harness) -> None:
    (sa_a,) = _live(h.a)
    (sa_b,) = _live(h.b)
    assert (sa_a.spi_i, sa_a.spi_r) == (sa_b.spi_i, sa_b.spi_r)
    assert sa_a.keys == sa_b.keys
    assert sa_a.initiator != sa_b.initiator
    (ca,) = sa_a.children.values()
    (cb,) = sa_b.children.values()
    assert ca.spi_out == cb.spi_in and ca.encr_out == cb.encr_in
    h.run(15)
    assert not [s for s in h.a.mgr.by_id.values() if s is not sa_a]
    assert not [s for s in h.b.mgr.by_id.values() if s is not sa_b]


def test_ike_rekey_moves_children_and_resets_message_ids() -> None:
    h = _up()
    (old_a,) = _live(h.a)
    (old_b,) = _live(h.b)
    old_keys = old_a.keys
    h.a.mgr.rekey_ike(old_a.ike_id, h.now)
    h.run(3)
    (ev_a,) = h.a.of(IkeSaRekeyed)
    (ev_b,) = h.b.of(IkeSaRekeyed)
    assert ev_a.old_id == old_a.ike_id and ev_b.old_id == old_b.ike_id
    (new_a,) = _live(h.a)
    assert new_a.ike_id == ev_a.new_id and new_a.keys != old_keys
    assert new_a.initiator  # the rekey initiator is the original initiator of the new SA
    # children were not reinstalled, only moved
    assert len(h.a.of(ChildSaInstalled)) == 1 and not h.a.of(ChildSaDeleted)
    assert not h.b.of(ChildSaDeleted)
    # the old IKE SA was deleted by the rekey initiator
    assert h.a.of(IkeSaDeleted)[0].ike_id == old_a.ike_id
    assert h.b.of(IkeSaDeleted)[0].ike_id == old_b.ike_id
    _check_single_sa(h)
    # the new SA works: message IDs restart at 0 and exchanges go through
    (new_a,) = _live(h.a)
    assert new_a.req_win.next_id == 0
    (c,) = new_a.children.values()
    h.a.mgr.rekey_child(new_a.ike_id, c.spi_in, h.now)
    h.run(3)
    assert h.a.of(ChildSaRekeyed) and h.b.of(ChildSaRekeyed)
    assert new_a.req_win.next_id == 2  # rekey + delete of the old child


def test_ike_rekey_by_responder_and_lifetime() -> None:
    lt = Lifetimes(rekey_time=100.0, over_time=20.0, rand_time=5.0)
    h = _up(ike_lifetimes=lt, b_kw={"lifetimes": Lifetimes(rekey_time=60.0, over_time=20.0)})
    h.run(70)
    # B's soft lifetime came first: B rekeyed
    assert len(h.b.of(IkeSaRekeyed)) >= 1
    (sa_b,) = _live(h.b)
    assert sa_b.initiator
    _check_single_sa(h)
    assert h.a.of(IkeSaEstablished) and len(h.a.of(IkeSaEstablished)) == 1


def test_ike_rekey_with_other_group_invalid_ke() -> None:
    h = _up(ike=["aes256gcm16-prfsha256-x25519-ecp256"], ike_b=["aes256gcm16-prfsha256-x25519"])
    (sa_a,) = _live(h.a)
    h.a.mgr.conns["a2b"] = sa_a.conn.__class__(
        **{
            **{f: getattr(sa_a.conn, f) for f in sa_a.conn.__dataclass_fields__},
            "ike_proposals": ("aes256gcm16-prfsha256-ecp256-x25519",),
        }
    )
    sa_a.use_connection(h.a.mgr.conns["a2b"])
    h.a.mgr.rekey_ike(sa_a.ike_id, h.now)
    h.run(3)
    assert h.a.of(IkeSaRekeyed)
    _check_single_sa(h)


def _collision(lowest: str) -> Harness:
    h = _up()
    high = [bytes([0x80 + i]) * 32 for i in range(4)]
    low = b"\x01" * 32
    a_ni, a_nr, b_ni, b_nr = high
    if lowest == "a_ni":
        a_ni = low
    elif lowest == "a_nr":
        a_nr = low
    elif lowest == "b_ni":
        b_ni = low
    else:
        b_nr = low
    h.a.rng.nonces.extend([a_ni, a_nr])
    h.b.rng.nonces.extend([b_ni, b_nr])
    (sa_a,) = _live(h.a)
    (sa_b,) = _live(h.b)
    h.a.mgr.rekey_ike(sa_a.ike_id, h.now)
    h.b.mgr.rekey_ike(sa_b.ike_id, h.now)
    h.run(5)
    return h


def _check_collision(h: Harness, a_wins: bool) -> None:
    (sa_a,) = _live(h.a)
    assert sa_a.initiator is a_wins
    assert not h.a.of(ChildSaDeleted) and not h.b.of(ChildSaDeleted)
    _check_single_sa(h)


def test_ike_rekey_collision_a_ni_lowest() -> None:
    _check_collision(_collision("a_ni"), a_wins=False)


def test_ike_rekey_collision_a_nr_lowest() -> None:
    _check_collision(_collision("a_nr"), a_wins=True)


def test_ike_rekey_collision_b_ni_lowest() -> None:
    _check_collision(_collision("b_ni"), a_wins=True)


def test_ike_rekey_collision_b_nr_lowest() -> None:
    _check_collision(_collision("b_nr"), a_wins=False)


def test_ike_rekey_refused_while_child_rekey_in_progress(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "pyipsec.ike")
    h = _up()
    (sa_a,) = _live(h.a)
    (sa_b,) = _live(h.b)
    (cb,) = sa_b.children.values()
    # B starts a child rekey whose request is delayed; A's IKE rekey arrives meanwhile
    h.rules.append(
        lambda p: (
            [0.5]
            if p.sender == "b" and p.exchange == ExchangeType.CREATE_CHILD_SA and not p.is_response
            else None
        )
    )
    h.b.mgr.rekey_child(sa_b.ike_id, cb.spi_in, h.now)
    h.a.mgr.rekey_ike(sa_a.ike_id, h.now)
    h.run(60)
    resp = [p for p in h.sent("b", ExchangeType.CREATE_CHILD_SA, response=True)]
    assert resp
    _check_single_sa(h)
    assert h.a.of(IkeSaRekeyed)
    assert f"IKE rekey refused: {NotifyType.TEMPORARY_FAILURE.name}" in caplog.text


def test_reauthentication_make_before_break() -> None:
    lt = Lifetimes(rekey_time=100.0, over_time=50.0, rand_time=0.0)
    h = _up(ike_lifetimes=lt, a_kw={"reauth": True}, b_kw={"lifetimes": Lifetimes()})
    (old_a,) = _live(h.a)
    (old_b,) = _live(h.b)
    (c_old,) = old_a.children.values()
    h.run(105)
    # a second IKE_SA_INIT/IKE_AUTH, without INITIAL_CONTACT; then the old SA is deleted
    assert len(h.a.of(IkeSaEstablished)) == 2 and len(h.b.of(IkeSaEstablished)) == 2
    auth = h.decrypt(h.sent("a", ExchangeType.IKE_AUTH, response=False)[-1])
    assert auth.notify(NotifyType.INITIAL_CONTACT) is None
    assert [e.ike_id for e in h.a.of(IkeSaDeleted)] == [old_a.ike_id]
    assert [e.ike_id for e in h.b.of(IkeSaDeleted)] == [old_b.ike_id]
    assert c_old.spi_in in [e.spi_in for e in h.a.of(ChildSaDeleted)]
    installed = [e for e in h.a.of(ChildSaInstalled)]
    deleted = [e for e in h.a.of(ChildSaDeleted)]
    # make-before-break: the new child came before the old one went
    assert h.a.events.index(installed[1]) < h.a.events.index(deleted[0])
    assert not h.a.of(IkeSaRekeyed)
    _check_single_sa(h)
