"""Responder handshake cost with many configured connections (a hub of branch offices).

Usage: ``python3 bench/bench_conns.py [--conns 1,1000,10000] [--handshakes 300]``

In memory, as ``bench_scale.py`` (one responder ``IkeManager``, real crypto, the same
suite), but the responder is configured with N branch connections besides the ``%any``
one the tunnels use: branch ``k`` has its own ``remote_addrs`` (an address of
10.0.0.0/8) and its own ``remote.id`` (``branch-k.example.net``), as a hub's swanctl.conf
would.  Every IKE_SA_INIT looks for the connections between its addresses and every
IKE_AUTH for the one accepting the peer's identity (RFC 7296 §2.15):
``ikev2.conn_index.ConnectionIndex`` answers from dictionaries.  For comparison, in the
same invocation, the same handshakes with the linear scan the index replaced (every
connection tested per lookup: column "scan").  Printed per N: the responder's CPU per
handshake (median of 3 batches) with the index and with the scan, and the ratio of the
indexed cost to that of the first N given (``--conns``; 1 by default).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from _common import ROOT  # noqa: F401  (first: it puts src/ and the repository root on sys.path)

# isort: split
from bench_scale import Fleet
from pyipsec.config.model import ConnectionConfig
from pyipsec.ikev2.conn_index import addr_ok
from pyipsec.ikev2.manager import IkeManager
from pyipsec.ikev2.payloads import IdPayload
from pyipsec.ikev2.tasks.common import identity_matches

Address = tuple[str, int]


def branches(n: int, template: ConnectionConfig) -> list[ConnectionConfig]:
    """``n`` branch connections: their own remote address and identity each."""
    return [
        dataclasses.replace(
            template,
            name=f"branch{k}",
            remote_addrs=(f"10.{k >> 16 & 255}.{k >> 8 & 255}.{k & 255}",),
            remote_id=f"branch-{k}.example.net",
        )
        for k in range(n)
    ]


def _scan_for(mgr: IkeManager, local: Address, remote: Address) -> list[ConnectionConfig]:
    return [
        c
        for c in mgr.conns.values()
        if addr_ok(tuple(c.local_addrs), local[0]) and addr_ok(tuple(c.remote_addrs), remote[0])
    ]


def _scan_for_peer(
    mgr: IkeManager, local: Address, remote: Address, ident: IdPayload
) -> list[ConnectionConfig]:
    return [
        c for c in _scan_for(mgr, local, remote)
        if c.remote_auth == "pubkey" or identity_matches(c.remote_id, ident)
    ]  # fmt: skip


@contextmanager
def scanning(mgr: IkeManager) -> Iterator[None]:
    """The responder looks connections up by testing each one (before the index)."""
    mgr.conns_for = lambda local, remote: _scan_for(mgr, local, remote)  # type: ignore[method-assign]
    mgr.conns_for_peer = (  # type: ignore[method-assign]
        lambda local, remote, ident: _scan_for_peer(mgr, local, remote, ident)
    )
    try:
        yield
    finally:
        del mgr.conns_for, mgr.conns_for_peer


def per_handshake(fleet: Fleet, count: int) -> float:
    """Median over 3 batches of the responder's CPU per new handshake (seconds)."""
    batches = []
    for _ in range(3):
        cpus = fleet.build(len(fleet.tunnels) + count)
        batches.append(sum(cpus) / len(cpus))
    return statistics.median(batches)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--conns", default="1,1000,10000",
                   help="numbers of branch connections (default 1,1000,10000)")
    p.add_argument("--handshakes", type=int, default=300,
                   help="handshakes per batch with the index (default 300)")
    p.add_argument("--scan-handshakes", type=int, default=30,
                   help="handshakes per batch with the scan (default 30)")
    args = p.parse_args(argv)
    sizes = [int(x) for x in args.conns.split(",") if x.strip()]
    print(f"responder CPU per handshake with N branch connections configured "
          f"(Python {sys.version.split()[0]})")
    print(f"{'N':>8} {'index':>10} {'scan':>10} {f'/N={sizes[0]}':>10} {'scan/index':>11}")
    base = None
    for n in sizes:
        fleet = Fleet()
        gw = next(iter(fleet.resp.conns.values()))
        fleet.resp.reload([*branches(n, gw), gw], fleet.now)
        fleet.build(100)  # warm the caches
        indexed = per_handshake(fleet, args.handshakes)
        with scanning(fleet.resp):
            scanned = per_handshake(fleet, args.scan_handshakes)
        base = base or indexed
        print(f"{n:>8,} {indexed * 1e6:>8.0f}us {scanned * 1e6:>8.0f}us {indexed / base:>10.2f} "
              f"{scanned / indexed:>11.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
