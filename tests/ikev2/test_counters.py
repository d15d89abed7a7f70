"""IKE counters (strongSwan's counters plugin, ``swanctl --counters``): the table
itself, and what two real managers count through a handshake, rekeys, a Delete and
bad messages."""

from __future__ import annotations

import pytest

from pyipsec.ikev2.constants import ExchangeType
from pyipsec.ikev2.counters import COUNTER_NAMES, IkeCounters
from pyipsec.ikev2.sa import IkeSa
from pyipsec.ikev2.state import IkeSaState
from pyipsec.recovery import ErrorKind

from .harness import Harness, conn_pair


def _nonzero(by_conn: dict[str, dict[str, int]]) -> dict[str, int]:
    """The non-zero counters of the one connection (or the global ones) asked for."""
    (values,) = by_conn.values()
    return {k: v for k, v in values.items() if v}


def test_names_are_charons_in_its_order() -> None:
    assert len(COUNTER_NAMES) == 21 and len(set(COUNTER_NAMES)) == 21
    assert COUNTER_NAMES[:5] == (
        "ike-rekey-init", "ike-rekey-resp", "child-rekey", "invalid", "invalid-spi")
    assert COUNTER_NAMES[-1] == "info-out-resp"


def test_table() -> None:
    c = IkeCounters()
    c.message(ExchangeType.IKE_AUTH, True, False, "a")
    c.message(ExchangeType.INFORMATIONAL, False, True, "")
    c.message(43, True, True, "a")  # IKE_INTERMEDIATE: not counted
    c.rekeyed_ike(initiated=False, conn="a")
    c.rekeyed_child("b")
    c.error(ErrorKind.INTEGRITY_CHECK_FAILED, "a", 2)
    c.error(ErrorKind.INVALID_IKE_SPI)
    c.error(ErrorKind.TEMPORARY_FAILURE, "a")  # not a counter
    assert _nonzero(c.get()) == {
        "ike-auth-in-resp": 1, "info-out-req": 1, "ike-rekey-resp": 1, "child-rekey": 1,
        "invalid": 2, "invalid-spi": 1,
    }  # fmt: skip
    assert _nonzero(c.get("a")) == {"ike-auth-in-resp": 1, "ike-rekey-resp": 1, "invalid": 2}
    assert list(c.get(every=True)) == ["a", "b"] and c.get("nope") == {}
    c.reset("a")  # a connection's are forgotten, the global ones stay
    assert c.get("a") == {} and list(c.get(every=True)) == ["b"] and _nonzero(c.get())
    c.reset()
    assert not _nonzero(c.get()) and list(c.get(every=True)) == ["b"]
    c.rekeyed_child("b")
    c.reset_all()
    assert not _nonzero(c.get()) and c.get(every=True) == {}


def _established(side: object) -> list[IkeSa]:
    mgr = side.mgr  # type: ignore[attr-defined]
    return [s for s in mgr.by_id.values() if s.state is IkeSaState.ESTABLISHED]


def test_handshake_rekeys_and_delete_are_counted_on_both_sides() -> None:
    h = Harness(*conn_pair())
    h.up()
    a, b = h.a.mgr, h.b.mgr
    (conn,) = a.counters(every=True)
    (conn_b,) = b.counters(every=True)  # each side's name for it
    assert _nonzero(a.counters(conn)) == {
        "ike-init-out-req": 1, "ike-init-in-resp": 1, "ike-auth-out-req": 1,
        "ike-auth-in-resp": 1,
    }  # fmt: skip
    assert _nonzero(b.counters()) == {
        "ike-init-in-req": 1, "ike-init-out-resp": 1, "ike-auth-in-req": 1,
        "ike-auth-out-resp": 1,
    }  # fmt: skip
    (sa,) = _established(h.a)
    (child,) = sa.children.values()
    a.rekey_child(sa.ike_id, child.spi_in, h.now)
    h.run(10)
    a.rekey_ike(sa.ike_id, h.now)
    h.run(40)
    got_a, got_b = _nonzero(a.counters(conn)), _nonzero(b.counters(conn_b))
    assert got_a["child-rekey"] == 1 and got_b["child-rekey"] == 1
    assert got_a["ike-rekey-init"] == 1 and "ike-rekey-resp" not in got_a
    assert got_b["ike-rekey-resp"] == 1 and "ike-rekey-init" not in got_b
    # the child rekey and the IKE rekey are two CREATE_CHILD_SA exchanges; the old
    # Child SA and the old IKE SA are deleted in INFORMATIONAL exchanges
    assert got_a["create-child-out-req"] == 2 and got_b["create-child-in-req"] == 2
    assert got_b["create-child-out-resp"] == 2 and got_a["create-child-in-resp"] == 2
    assert got_a["info-out-req"] >= 2 and got_b["info-in-req"] == got_a["info-out-req"]
    assert got_a == _nonzero(a.counters()) and got_b == _nonzero(b.counters())


def test_bad_messages_count_as_invalid_and_invalid_spi() -> None:
    h = Harness(*conn_pair())
    h.up()
    (sa_b,) = _established(h.b)
    b = h.b.mgr
    # an INFORMATIONAL request on the established SA whose ICV does not verify
    sa_a = _established(h.a)[0]
    good = sa_a.build(ExchangeType.INFORMATIONAL, 2, [], response=False)  # the next ID
    bad = good[:-1] + bytes([good[-1] ^ 1])
    b.receive_datagram(bad, sa_b.local, sa_b.remote, h.now)
    # a request for an IKE SPI nobody has
    other = bad[:8] + bytes(8 * [7]) + bad[16:]  # SPIr: ours, unknown
    b.receive_datagram(other, sa_b.local, sa_b.remote, h.now)
    totals = _nonzero(b.counters())
    assert totals["invalid"] == 1 and totals["invalid-spi"] == 1
    per_conn = _nonzero(b.counters(sa_b.conn.name))
    assert per_conn["invalid"] == 1 and "invalid-spi" not in per_conn  # no SA, no conn


@pytest.mark.parametrize("every", [False, True])
def test_reset(every: bool) -> None:
    h = Harness(*conn_pair())
    h.up()
    a = h.a.mgr
    (conn,) = a.counters(every=True)
    a.reset_counters(None if not every else conn, every=every)
    assert not _nonzero(a.counters())
    assert (a.counters(conn) == {}) is every
