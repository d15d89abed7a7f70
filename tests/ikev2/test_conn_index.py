"""The connection index gives what testing every connection gives, in the same order."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyipsec.config.model import ConnectionConfig
from pyipsec.ikev2.conn_index import ConnectionIndex, ConnectionTable, addr_ok
from pyipsec.ikev2.constants import IdType
from pyipsec.ikev2.manager import IkeManager
from pyipsec.ikev2.payloads import IdPayload
from pyipsec.ikev2.tasks.common import identity_matches, parse_identity

LOCALS = ("192.0.2.1", "192.0.2.2", "2001:db8::1")
REMOTES = ("198.51.100.7", "198.51.100.8", "203.0.113.9", "2001:db8:1::7", "2001:DB8:1::8")
ADDRESS_SPECS = (
    "%any", "%any6", "0.0.0.0/0", "198.51.100.7", "198.51.100.8", "203.0.113.9",
    "198.51.100.0/24", "198.51.100.1-198.51.100.7", "2001:db8:1::7", "2001:db8:1:0:0:0:0:8",
    "2001:db8:1::/64", "not-an-address",
)  # fmt: skip
LOCAL_SPECS = ("%any", "192.0.2.1", "192.0.2.0/24", "2001:db8::1")
IDENTITIES = (
    "", "%any", "*", "branch-1.example.net", "BRANCH-1.example.net", "user@example.net",
    "198.51.100.7", "*.example.net", "keyid:6b6579",
)  # fmt: skip
PEERS = (
    IdPayload(IdType.ID_FQDN, b"branch-1.example.net"),
    IdPayload(IdType.ID_FQDN, b"Branch-1.Example.NET"),
    IdPayload(IdType.ID_RFC822_ADDR, b"user@example.net"),
    IdPayload(IdType.ID_IPV4_ADDR, bytes((198, 51, 100, 7))),
    IdPayload(IdType.ID_KEY_ID, b"key"),
    IdPayload(IdType.ID_FQDN, b"other.example.org"),
)


def _conn(i: int, rnd: random.Random) -> ConnectionConfig:
    remote = tuple(rnd.sample(ADDRESS_SPECS, rnd.choice((0, 1, 1, 1, 2))))
    local = tuple(rnd.sample(LOCAL_SPECS, rnd.choice((0, 1, 1))))
    return ConnectionConfig(
        f"c{i}",
        local_addrs=local,
        remote_addrs=remote,
        remote_id=rnd.choice(IDENTITIES),
        remote_auth=rnd.choice(("psk", "psk", "pubkey")),
    )


def _by_scan(conns: list[ConnectionConfig], local: str, remote: str) -> list[ConnectionConfig]:
    return [
        c for c in conns
        if addr_ok(tuple(c.local_addrs), local) and addr_ok(tuple(c.remote_addrs), remote)
    ]  # fmt: skip


def _may_accept(conn: ConnectionConfig, ident: IdPayload) -> bool:
    """What for_peer promises: every connection that accepts the identity is there."""
    if conn.remote_auth == "pubkey":
        return True  # patterns: decided by the caller
    return identity_matches(conn.remote_id, ident)


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 25))
def test_index_equals_scanning_every_connection(seed: int, n: int) -> None:
    rnd = random.Random(seed)
    conns = [_conn(i, rnd) for i in range(n)]
    index = ConnectionIndex(ConnectionTable((c.name, c) for c in conns))
    for local in LOCALS:
        for remote in REMOTES:
            expected = _by_scan(conns, local, remote)
            assert index.for_addresses(local, remote) == expected
            for peer in PEERS:
                got = index.for_peer(local, remote, peer)
                assert all(c in expected for c in got)  # addresses respected, order kept
                assert [c for c in got] == [c for c in expected if c in got]
                assert [c for c in expected if _may_accept(c, peer)] == [
                    c for c in got if _may_accept(c, peer)
                ]


def test_exact_identities_are_found_without_the_others() -> None:
    """A hub with many branches: only the branch's own connection and the wildcards."""
    conns = [
        ConnectionConfig(f"branch{i}", remote_id=f"branch-{i}.example.net") for i in range(500)
    ]
    conns.append(ConnectionConfig("anyone", remote_id="%any"))
    index = ConnectionIndex(ConnectionTable((c.name, c) for c in conns))
    peer = IdPayload(IdType.ID_FQDN, b"BRANCH-77.example.net")
    assert [c.name for c in index.for_peer("192.0.2.1", "198.51.100.7", peer)] == [
        "branch77", "anyone",
    ]  # fmt: skip
    assert len(index.for_addresses("192.0.2.1", "198.51.100.7")) == 501
    want = parse_identity("branch-77.example.net")
    assert (want.id_type, want.data) == (IdType.ID_FQDN, b"branch-77.example.net")


def test_table_counts_every_change() -> None:
    a, b, c = ConnectionConfig("a"), ConnectionConfig("b"), ConnectionConfig("c")
    t = ConnectionTable([("a", a)])
    versions = [t.version]
    changes = [
        lambda: t.__setitem__("b", b),
        lambda: t.__delitem__("a"),
        lambda: t.pop("b"),
        lambda: t.update({"a": a}),
        lambda: t.setdefault("b", b),
        lambda: t.__ior__({"c": c}),
        t.popitem,
        t.clear,
    ]
    for change in changes:
        change()
        versions.append(t.version)
    assert versions == sorted(set(versions)) and len(versions) == len(changes) + 1


@pytest.mark.parametrize("assign", ["item", "table", "dict", "reload"])
def test_manager_sees_configuration_changes(assign: str) -> None:
    old = ConnectionConfig("old", remote_addrs=("198.51.100.7",))
    new = ConnectionConfig("new", remote_addrs=("198.51.100.7",))
    mgr = IkeManager([old])
    here, there = ("192.0.2.1", 500), ("198.51.100.7", 500)
    assert mgr.conns_for(here, there) == [old]
    if assign == "item":
        mgr.conns["new"] = new
        expected = [old, new]
    elif assign == "table":
        mgr.conns = ConnectionTable([("new", new)])
        expected = [new]
    elif assign == "dict":
        mgr.conns = {"new": new}
        expected = [new]
    else:
        mgr.reload([new], 0.0)
        expected = [new]
    assert isinstance(mgr.conns, ConnectionTable)
    assert mgr.conns_for(here, there) == expected
