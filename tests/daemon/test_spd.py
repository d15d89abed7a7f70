"""SPD lookup (elementary intervals + bisect) and inner-packet selector checks."""

from __future__ import annotations

import ipaddress
import struct

from pyipsec.config.model import TrafficSelectorSpec as Ts
from pyipsec.daemon.spd import Flow, Spd, flow_in, parse_flow


def v4(src: str, dst: str, proto: int = 1, sport: int = 0, dport: int = 0, frag: int = 0) -> bytes:
    hdr = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        28,
        0,
        frag,
        64,
        proto,
        0,
        ipaddress.IPv4Address(src).packed,
        ipaddress.IPv4Address(dst).packed,
    )
    return hdr + struct.pack("!HHI", sport, dport, 0)


def v6(
    src: str, dst: str, nh: int = 58, l4: bytes = b"\x80\x00\x00\x00", ext: bytes = b""
) -> bytes:
    return (
        struct.pack("!IHBB", 0x60000000, len(ext) + len(l4), nh if not ext else ext[-1], 64)
        + ipaddress.IPv6Address(src).packed
        + ipaddress.IPv6Address(dst).packed
        + ext[:-1]
        + l4
    )


def net(s: str, proto: int = 0, lo: int = 0, hi: int = 65535) -> Ts:
    return Ts.from_network(s, proto, lo, hi)


def flow(src: str, dst: str, proto: int = 1, sport: int = -1, dport: int = -1) -> Flow:
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    return Flow(s.version, int(s), int(d), proto, sport, dport)


def test_parse_flow_v4() -> None:
    f = parse_flow(v4("203.0.113.1", "203.0.113.65", 17, 1234, 53))
    assert f == flow("203.0.113.1", "203.0.113.65", 17, 1234, 53)
    assert str(f.src_addr) == "203.0.113.1" and str(f.dst_addr) == "203.0.113.65"
    # non-first fragment: no ports (OPAQUE)
    f = parse_flow(v4("203.0.113.1", "203.0.113.65", 17, 1, 2, frag=0x0010))
    assert f is not None and f.sport == -1 and f.dport == -1
    assert parse_flow(v4("1.2.3.4", "5.6.7.8", 1)) == flow("1.2.3.4", "5.6.7.8", 1)
    assert parse_flow(b"\x45" + bytes(10)) is None
    assert parse_flow(b"\x41" + bytes(30)) is None  # IHL < 5
    assert parse_flow(b"\x55" + bytes(30)) is None  # version 5


def test_parse_flow_v6() -> None:
    f = parse_flow(v6("2001:db8:a::1", "2001:db8:b::1"))
    assert f is not None and f.version == 6 and f.protocol == 58 and f.sport == -1
    assert str(f.dst_addr) == "2001:db8:b::1"
    tcp = struct.pack("!HH", 4000, 443) + bytes(16)
    f = parse_flow(v6("2001:db8:a::1", "2001:db8:b::1", 6, tcp))
    assert f is not None and (f.protocol, f.sport, f.dport) == (6, 4000, 443)
    # hop-by-hop options (8 octets) then UDP
    hbh = bytes([17, 0]) + bytes(6) + bytes([0])
    f = parse_flow(v6("2001:db8:a::1", "2001:db8:b::1", 0, struct.pack("!HH", 7, 9), hbh))
    assert f is not None and (f.protocol, f.sport, f.dport) == (17, 7, 9)
    # fragment header, first fragment then a later one
    frag0 = bytes([17, 0, 0, 0, 0, 0, 0, 1]) + bytes([44])
    f = parse_flow(v6("2001:db8:a::1", "2001:db8:b::1", 44, struct.pack("!HH", 7, 9), frag0))
    assert f is not None and (f.protocol, f.dport) == (17, 9)
    frag1 = bytes([17, 0, 0, 8, 0, 0, 0, 1]) + bytes([44])
    f = parse_flow(v6("2001:db8:a::1", "2001:db8:b::1", 44, struct.pack("!HH", 7, 9), frag1))
    assert f is not None and (f.protocol, f.dport) == (17, -1)
    assert parse_flow(b"\x60" + bytes(30)) is None
    truncated = v6("2001:db8:a::1", "2001:db8:b::1", 0, b"", b"\x00")[:44]
    f = parse_flow(truncated)
    assert f is not None and f.protocol == 0


def test_lookup_longest_match_and_removal() -> None:
    spd: Spd[str] = Spd()
    src = [net("203.0.113.0/26")]
    spd.add("wide", src, [net("10.0.0.0/8")], "wide")
    spd.add("narrow", src, [net("10.1.0.0/16")], "narrow")
    spd.add("host", src, [net("10.1.2.3/32")], "host")
    assert len(spd) == 3 and "wide" in spd
    assert spd.lookup(flow("203.0.113.1", "10.9.9.9")) == "wide"
    assert spd.lookup(flow("203.0.113.1", "10.1.9.9")) == "narrow"
    assert spd.lookup(flow("203.0.113.1", "10.1.2.3")) == "host"
    assert spd.lookup(flow("203.0.113.1", "11.0.0.0")) is None
    assert spd.lookup(flow("203.0.113.1", "9.255.255.255")) is None
    assert spd.lookup(flow("198.51.100.1", "10.1.2.3")) is None  # source not in local_ts
    assert spd.remove("narrow") == "narrow"
    assert spd.remove("narrow") is None
    assert spd.lookup(flow("203.0.113.1", "10.1.9.9")) == "wide"
    assert sorted(spd.values()) == ["host", "wide"]


def test_lookup_families_ports_and_protocols() -> None:
    spd: Spd[str] = Spd()
    spd.add("web", [net("0.0.0.0/0")], [net("192.0.2.0/24", 6, 443, 443)], "web")
    spd.add("dns", [net("0.0.0.0/0", 17)], [net("192.0.2.0/24", 17, 53, 53)], "dns")
    spd.add("v6", [net("2001:db8:a::/64")], [net("2001:db8:b::/64")], "v6")
    assert spd.lookup(flow("1.1.1.1", "192.0.2.5", 6, 5000, 443)) == "web"
    assert spd.lookup(flow("1.1.1.1", "192.0.2.5", 6, 5000, 80)) is None
    assert spd.lookup(flow("1.1.1.1", "192.0.2.5", 17, 5000, 53)) == "dns"
    assert spd.lookup(flow("1.1.1.1", "192.0.2.5", 1)) is None
    assert spd.lookup(flow("2001:db8:a::1", "2001:db8:b::9", 58)) == "v6"
    assert spd.lookup(flow("2001:db8:a::1", "2001:db8:c::9", 58)) is None
    empty: Spd[str] = Spd()
    assert empty.lookup(flow("1.1.1.1", "2.2.2.2")) is None


def test_newest_sa_wins_and_sa_beats_trap() -> None:
    spd: Spd[str] = Spd()
    loc, r = [net("203.0.113.0/26")], [net("203.0.113.64/26")]
    spd.add("trap", loc, r, "trap", trap=True)
    f = flow("203.0.113.1", "203.0.113.65")
    assert spd.lookup(f) == "trap"
    spd.add(1, loc, r, "old")
    assert spd.lookup(f) == "old"
    spd.add(2, loc, r, "new")  # rekeyed child: the new SA takes the traffic
    assert spd.lookup(f) == "new"
    spd.remove(2)
    assert spd.lookup(f) == "old"
    spd.add(1, loc, r, "replaced")  # same key replaces
    assert spd.lookup(f) == "replaced" and len(spd) == 2


def test_overlapping_ranges_many_entries() -> None:
    spd: Spd[int] = Spd()
    for i in range(200):
        spd.add(
            i,
            [net("0.0.0.0/0")],
            [Ts(ipaddress.ip_address(f"10.0.{i}.0"), ipaddress.ip_address(f"10.0.{i}.255"))],
            i,
        )
    spd.add("all", [net("0.0.0.0/0")], [net("10.0.0.0/8")], -1)
    for i in (0, 57, 199):
        assert spd.lookup(flow("1.1.1.1", f"10.0.{i}.7")) == i
    assert spd.lookup(flow("1.1.1.1", "10.0.200.1")) == -1
    # the table has one interval per boundary, not per address
    assert len(spd._tables[4].starts) <= 2 * 201 + 1


def test_flow_in() -> None:
    local, remote = [net("203.0.113.64/26")], [net("203.0.113.0/26")]
    ok = flow("203.0.113.1", "203.0.113.65")
    assert flow_in(ok, remote, local)
    assert not flow_in(flow("203.0.113.1", "203.0.113.200"), remote, local)
    assert not flow_in(flow("198.51.100.1", "203.0.113.65"), remote, local)
    assert not flow_in(flow("2001:db8::1", "2001:db8::2"), remote, local)
    tcp_only = [net("203.0.113.64/26", 6, 80, 80)]
    assert flow_in(flow("203.0.113.1", "203.0.113.65", 6, 1000, 80), remote, tcp_only)
    assert not flow_in(flow("203.0.113.1", "203.0.113.65", 6, 1000, 81), remote, tcp_only)
    assert not flow_in(flow("203.0.113.1", "203.0.113.65", 17, 1000, 80), remote, tcp_only)


def test_incremental_updates_match_a_rebuild() -> None:
    """Adding and removing policies one by one (a gateway installing Child SAs) gives the
    same lookups as building the table from scratch, through overlaps, replacements,
    traps and compaction."""
    import random

    rnd = random.Random(7)
    spd: Spd[str] = Spd()
    ref: Spd[str] = Spd()
    src = [net("203.0.113.0/26")]
    keys: list[str] = []
    for step in range(600):
        if keys and rnd.random() < 0.4:
            k = keys.pop(rnd.randrange(len(keys)))
            assert spd.remove(k) == ref.remove(k)
        else:
            k = f"p{rnd.randrange(200)}"
            plen = rnd.choice([8, 16, 24, 28, 32, 32, 32])
            addr = ipaddress.ip_address(0x0A000000 + rnd.randrange(1 << 24))
            dst = net(str(ipaddress.ip_network(f"{addr}/{plen}", strict=False)))
            trap = rnd.random() < 0.1
            spd.add(k, src, [dst], k, trap=trap)
            ref.add(k, src, [dst], k, trap=trap)
            if k not in keys:
                keys.append(k)
        ref._rebuild()
        for _ in range(20):
            d = ipaddress.ip_address(0x0A000000 + rnd.randrange(1 << 24))
            assert spd.lookup(flow("203.0.113.1", str(d))) == ref.lookup(
                flow("203.0.113.1", str(d))
            ), step
    # compaction keeps the table small after churn
    for k in list(keys):
        spd.remove(k)
    assert len(spd._tables[4].starts) <= 64


def test_many_sas_sharing_one_destination() -> None:
    """Road warriors narrowed to one inner host (one piece, many candidates): each SA
    found by its port, the newest first, removals exact -- and the candidates of that
    piece stay sorted without re-sorting them per install."""
    spd: Spd[int] = Spd()
    src = [net("203.0.113.64/26")]
    n = 300
    for i in range(n):
        spd.add(i, src, [net("203.0.113.1/32", 17, 10000 + i, 10000 + i)], i)
    spd.add("wide", src, [net("203.0.113.1/32")], -1)  # any port: newest, same size
    for i in (0, 150, n - 1):
        assert spd.lookup(flow("203.0.113.65", "203.0.113.1", 17, 500, 10000 + i)) == -1
    spd.remove("wide")
    for i in (0, 150, n - 1):
        assert spd.lookup(flow("203.0.113.65", "203.0.113.1", 17, 500, 10000 + i)) == i
    for i in range(0, n, 3):
        assert spd.remove(i) == i
    for i in range(n):
        want = None if i % 3 == 0 else i
        assert spd.lookup(flow("203.0.113.65", "203.0.113.1", 17, 500, 10000 + i)) == want
    table = spd._tables[4]
    for cands in table.cands:
        keys = [e.sort_key for e in cands]
        assert keys == sorted(keys)


def test_one_policy_with_selectors_in_the_same_piece() -> None:
    """Two remote selectors of one policy cover the same range (ports differ): both
    entries share the piece and the sort key; removing the policy removes both."""
    spd: Spd[str] = Spd()
    src = [net("0.0.0.0/0")]
    spd.add("other", src, [net("192.0.2.0/24", 6, 25, 25)], "other")
    spd.add("web", src, [net("192.0.2.0/24", 6, 80, 80), net("192.0.2.0/24", 6, 443, 443)], "web")
    assert spd.lookup(flow("1.1.1.1", "192.0.2.5", 6, 5000, 443)) == "web"
    assert spd.lookup(flow("1.1.1.1", "192.0.2.5", 6, 5000, 80)) == "web"
    assert spd.remove("web") == "web"
    assert spd.lookup(flow("1.1.1.1", "192.0.2.5", 6, 5000, 443)) is None
    assert spd.lookup(flow("1.1.1.1", "192.0.2.5", 6, 5000, 80)) is None
    assert spd.lookup(flow("1.1.1.1", "192.0.2.5", 6, 5000, 25)) == "other"
    assert all(e.value == "other" for cands in spd._tables[4].cands for e in cands)
