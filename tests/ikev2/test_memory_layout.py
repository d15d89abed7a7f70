"""Per-tunnel objects carry no attribute dict (issue #13), and the manager's per-peer
indexes keep a bucket of one SA without a dict, yet find, replace and forget SAs the
way a ``{ike_id: sa}`` dict per peer did."""

from __future__ import annotations

import pytest

from pyipsec.ikev2.manager import _PeerIndex
from pyipsec.ikev2.sa import IkeSa
from pyipsec.ikev2.state import IkeSaState

from .harness import Harness, conn_pair


def _established() -> tuple[Harness, IkeSa, IkeSa]:
    h = Harness(*conn_pair())
    h.up()
    live = [
        [s for s in side.mgr.by_id.values() if s.state is IkeSaState.ESTABLISHED]
        for side in (h.a, h.b)
    ]
    (sa_a,), (sa_b,) = live
    return h, sa_a, sa_b


def test_established_ike_sa_and_its_parts_have_no_instance_dict() -> None:
    _, sa, peer = _established()
    for obj in (sa, peer):
        parts = [obj, obj.req_win, obj.resp_win, obj.timers, obj.dpd, obj.keepalive,
                 obj.errors, obj.fragments, *obj.children.values()]
        for part in parts:
            assert not hasattr(part, "__dict__"), type(part).__name__
    # SaLog keeps the SA's label, not the SA (no cycle)
    assert sa.log.process("x", {})[0] == f"IKE SA {sa.ike_id} ({sa.conn.name}): x"


def test_unknown_attribute_on_ike_sa_is_refused() -> None:
    _, sa, _ = _established()
    with pytest.raises(AttributeError):
        sa.no_such_field = 1  # type: ignore[attr-defined]


def test_peer_index_single_and_shared_buckets() -> None:
    _, a, b = _established()
    index: _PeerIndex[str] = _PeerIndex()
    assert index.get("p") == ()
    index.add("p", a)
    assert index.get("p") == (a,)
    index.add("p", a)  # same SA again: still one
    assert index.get("p") == (a,)
    if b.ike_id == a.ike_id:
        b.ike_id = a.ike_id + 1
    index.add("p", b)
    assert index.get("p") == (a, b)  # insertion order, like the dict it replaces
    index.remove("p", a)
    assert index.get("p") == (b,)
    index.remove("p", a)  # not there any more: nothing happens
    assert index.get("p") == (b,)
    index.add("q", a)
    index.remove("p", b)
    assert index.get("p") == () and index.get("q") == (a,)


def test_peer_index_replaces_an_sa_with_the_same_id_and_ignores_strangers() -> None:
    _, a, b = _established()
    b.ike_id = a.ike_id
    index: _PeerIndex[str] = _PeerIndex()
    index.add("p", a)
    index.remove("p", b)  # same id, other object: not removed
    assert index.get("p") == (a,)
    index.add("p", b)  # same id: replaces, as ``bucket[ike_id] = sa`` did
    assert index.get("p") == (b,)
