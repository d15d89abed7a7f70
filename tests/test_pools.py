"""The virtual IP lease manager (pyipsec.pools): ranges, lease reuse by identity,
reference counts, exhaustion, reassignment order, several pools, reloads, scale."""

from __future__ import annotations

import ipaddress

import pytest

from pyipsec.config.model import PoolConfig
from pyipsec.pools import Pool, PoolRegistry, acquire, pool_range, pools_overlap

ip = ipaddress.ip_address


def make_pool(text: str, name: str = "p") -> Pool:
    first, last = pool_range(text)
    return Pool(name, first, last)


def config(name: str, text: str) -> PoolConfig:
    first, last = pool_range(text)
    return PoolConfig(name, text, first, last)


# --------------------------------------------------------------------------- ranges


@pytest.mark.parametrize(
    ("text", "first", "last"),
    [
        ("203.0.113.128/26", "203.0.113.129", "203.0.113.190"),  # network/last skipped
        ("10.3.0.5/24", "10.3.0.5", "10.3.0.254"),  # from the base on, last skipped
        ("10.3.0.0/30", "10.3.0.1", "10.3.0.2"),
        ("10.3.0.0/31", "10.3.0.0", "10.3.0.1"),  # strongSwan: both of a /31
        ("10.3.0.1/31", "10.3.0.1", "10.3.0.1"),  # only the second address
        ("10.3.0.9/32", "10.3.0.9", "10.3.0.9"),
        ("2001:db8:ee::/120", "2001:db8:ee::1", "2001:db8:ee::fe"),  # IPv6 alike
        ("2001:db8:ee::/64", "2001:db8:ee::1", "2001:db8:ee::ffff:ffff:ffff:fffe"),
        ("192.0.2.10-192.0.2.20", "192.0.2.10", "192.0.2.20"),  # a range: all of it
        (" 2001:db8::5 - 2001:db8::5 ", "2001:db8::5", "2001:db8::5"),
    ],
)
def test_pool_range(text: str, first: str, last: str) -> None:
    assert pool_range(text) == (ip(first), ip(last))


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("192.0.2.20-192.0.2.10", "reversed"),
        ("192.0.2.1-2001:db8::1", "mixes"),
        ("not-an-address", "invalid"),
        ("192.0.2.0/33", "invalid pool"),
        ("", "invalid pool"),
    ],
)
def test_pool_range_errors(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        pool_range(text)


def test_overlaps_found_in_sorted_order() -> None:
    ranges = [
        ("a", *pool_range("10.0.0.0/24")),
        ("b", *pool_range("10.0.1.0/24")),
        ("c", *pool_range("10.0.0.200-10.0.1.5")),  # overlaps a (and b)
        ("d", *pool_range("2001:db8::/120")),
        ("e", *pool_range("2001:db8::/64")),  # contains d
        ("f", *pool_range("10.0.2.0/24")),
    ]
    pairs = pools_overlap(ranges)
    assert ("c", "a") in pairs
    assert {frozenset(p) for p in pairs} >= {frozenset({"b", "c"}), frozenset({"d", "e"})}
    assert not any("f" in p for p in pairs)


# --------------------------------------------------------------------------- leases


def take(pool: Pool, ident: str, peer: object = None, requested: str | None = None) -> str | None:
    want = ip(requested) if requested else None
    lease = acquire([pool], ident, pool.version, peer=peer, requested=want)
    return None if lease is None else str(lease.address)


def test_new_identities_get_distinct_addresses_in_order() -> None:
    pool = make_pool("10.3.0.0/29")  # .1 - .6
    got = [take(pool, f"user{i}") for i in range(6)]
    assert got == [f"10.3.0.{i}" for i in range(1, 7)]
    assert (pool.online, pool.offline, pool.free) == (6, 0, 0)


def test_exhaustion_returns_none() -> None:
    pool = make_pool("10.3.0.0/30")  # two addresses
    assert take(pool, "a") and take(pool, "b")
    assert take(pool, "c") is None
    assert pool.online == 2


def test_same_identity_gets_its_released_address_back() -> None:
    pool = make_pool("10.3.0.0/24")
    a = take(pool, "alice")
    b = take(pool, "bob")
    assert pool.release("alice", ip(a))
    assert (pool.online, pool.offline) == (1, 1)
    take(pool, "carol")  # a new identity takes a never-used address, not alice's
    assert pool.owner(ip(a)) == "alice"
    assert take(pool, "alice") == a
    assert take(pool, "bob", peer=("198.51.100.9", 4500)) != b  # bob's is online, other peer


def test_online_lease_is_shared_with_the_same_peer_and_reference_counted() -> None:
    pool = make_pool("10.3.0.0/24")
    peer = ("198.51.100.2", 4500)
    a = take(pool, "alice", peer)
    assert take(pool, "alice", peer) == a  # a second IKE SA from the same endpoint
    assert take(pool, "alice", peer, requested=a) == a  # asking for it by address too
    assert pool.online == 1
    info = next(pool.leases())
    assert info.holders == 3 and info.online
    assert pool.release("alice", ip(a)) and pool.release("alice", ip(a))
    assert pool.online == 1  # one holder left
    assert pool.release("alice", ip(a))
    assert (pool.online, pool.offline) == (0, 1)
    assert not pool.release("alice", ip(a))  # nothing left to release


def test_online_lease_not_shared_with_another_endpoint_or_address() -> None:
    pool = make_pool("10.3.0.0/24")
    a = take(pool, "alice", ("198.51.100.2", 4500))
    assert take(pool, "alice", ("198.51.100.3", 4500)) != a  # another device, same user
    assert take(pool, "alice", ("198.51.100.2", 4500), requested="10.3.0.77") != a
    assert pool.online == 3


def test_reassignment_takes_the_least_recently_released() -> None:
    pool = make_pool("10.3.0.0/29")  # six addresses
    addrs = {u: take(pool, u) for u in "abcdef"}
    for u in ("c", "a", "e"):
        pool.release(u, ip(addrs[u]))
    assert take(pool, "x") == addrs["c"]  # the oldest offline lease
    assert take(pool, "y") == addrs["a"]
    assert pool.owner(ip(addrs["c"])) == "x"
    assert take(pool, "c") == addrs["e"]  # c's own lease is gone: e's, the last offline one
    assert take(pool, "z") is None


def test_offline_lease_survives_other_identities_while_free_addresses_remain() -> None:
    pool = make_pool("10.3.0.0/24")
    a = take(pool, "alice")
    pool.release("alice", ip(a))
    for i in range(200):
        assert take(pool, f"u{i}") != a
    assert take(pool, "alice") == a


def test_release_of_unknown_or_foreign_lease_is_refused() -> None:
    pool = make_pool("10.3.0.0/24")
    a = take(pool, "alice")
    assert not pool.release("bob", ip(a))
    assert not pool.release("alice", ip("10.9.9.9"))
    assert not pool.release("alice", ip("2001:db8::1"))
    assert pool.online == 1


def test_ipv6_pool_and_family_selection() -> None:
    p4, p6 = make_pool("10.3.0.0/24", "v4"), make_pool("2001:db8:ee::/64", "v6")
    lease6 = acquire([p4, p6], "alice", 6)
    lease4 = acquire([p4, p6], "alice", 4)
    assert lease6 is not None and lease6.pool is p6 and str(lease6.address) == "2001:db8:ee::1"
    assert lease4 is not None and lease4.pool is p4
    assert acquire([p4], "bob", 6) is None
    assert lease6.release() and p6.offline == 1


def test_several_pools_existing_then_new_then_reassigned() -> None:
    first, second = make_pool("10.3.0.0/30", "first"), make_pool("10.4.0.0/30", "second")
    pools = [first, second]
    leases = {u: acquire(pools, u, 4) for u in "abcd"}
    assert [str(x.address) for x in leases.values() if x] == [
        "10.3.0.1", "10.3.0.2", "10.4.0.1", "10.4.0.2",
    ]  # fmt: skip
    b = leases["b"]
    assert b is not None and b.release()
    d = leases["d"]
    assert d is not None and d.release()
    again = acquire(pools, "d", 4)  # d's own lease in the second pool wins over b's
    assert again is not None and str(again.address) == "10.4.0.2"
    other = acquire(pools, "e", 4)  # full: b's offline lease is reassigned
    assert other is not None and str(other.address) == "10.3.0.2"
    assert acquire(pools, "f", 4) is None


def test_status_lists_leases() -> None:
    pool = make_pool("10.3.0.0/24")
    a = take(pool, "alice")
    take(pool, "bob")
    pool.release("alice", ip(a))
    st = pool.status(leases=True)
    assert (st["size"], st["online"], st["offline"], st["free"]) == (254, 1, 1, 252)
    assert st["leases"] == [
        {"address": "10.3.0.1", "identity": "alice", "status": "offline", "holders": 0},
        {"address": "10.3.0.2", "identity": "bob", "status": "online", "holders": 1},
    ]


def test_unknown_phase_is_a_bug() -> None:
    with pytest.raises(ValueError):
        make_pool("10.3.0.0/24").acquire("a", "sometime")


def test_big_pool_sanity() -> None:
    """A gateway pool: 60,000 leases, churn, reuse -- counters stay right (every
    operation is O(1): no scan of the pool per allocation)."""
    pool = make_pool("10.0.0.0/16")  # 65,534 addresses
    n = 60_000
    addrs = [take(pool, f"user{i}") for i in range(n)]
    assert len(set(addrs)) == n and pool.online == n
    for i in range(0, n, 2):
        assert pool.release(f"user{i}", ip(addrs[i]))
    assert (pool.online, pool.offline) == (n // 2, n // 2)
    for i in range(0, n, 2):  # everyone gets their own address back
        assert take(pool, f"user{i}") == addrs[i]
    newcomers = [take(pool, f"new{i}") for i in range(pool.free)]
    assert None not in newcomers and pool.free == 0
    assert take(pool, "late") is None


# --------------------------------------------------------------------------- registry


def test_registry_reload_keeps_unchanged_and_idle_changed_pools() -> None:
    reg = PoolRegistry([config("a", "10.3.0.0/24"), config("b", "10.4.0.0/24")])
    pa, pb = reg.pools["a"], reg.pools["b"]
    lease = acquire([pa], "alice", 4)
    assert lease is not None
    dns_cfg = PoolConfig("a", "10.3.0.0/24", pa.first, pa.last, dns=(ip("10.3.0.53"),))
    problems = reg.load([dns_cfg, config("b", "10.5.0.0/24"), config("c", "10.6.0.0/24")])
    assert problems == []
    assert reg.pools["a"] is pa and reg.config(pa) is dns_cfg  # leases kept, new attributes
    assert reg.pools["b"] is not pb and str(reg.pools["b"].first) == "10.5.0.1"
    assert reg.config(pb) is None  # a replaced pool is no longer configured
    assert [p.name for p in reg.get(["c", "x", "a"])] == ["c", "a"]


def test_registry_reload_refuses_to_move_online_addresses() -> None:
    reg = PoolRegistry([config("a", "10.3.0.0/24")])
    pa = reg.pools["a"]
    lease = acquire([pa], "alice", 4)
    assert lease is not None
    problems = reg.load([config("a", "10.9.0.0/24")])
    assert len(problems) == 1 and "online" in problems[0]
    assert reg.pools["a"] is pa
    assert reg.status()[0]["addrs"] == "10.3.0.0/24"
    reg.load([])  # removed: SAs still release into the old object
    assert reg.pools == {} and lease.release() and pa.offline == 1
