"""Virtual IP lease operations at gateway scale (pyipsec.pools, RFC 7296 §2.19).

Per-operation time of a lease churn (release an online lease, give it back to its
identity, lease a never-used address to a newcomer, reassign the oldest offline lease)
with a small pool and with a pool holding tens of thousands of leases, in the same run.
The ratio large/small shows that an allocation does not scan the pool (about 1 for
O(1)); nothing is asserted on absolute times.

    python3 bench/bench_pools.py [--small 1000] [--large 60000] [--ops 20000]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from pyipsec.pools import Pool, acquire


def filled(n: int) -> tuple[Pool, list[str]]:
    """A /16 pool with ``n`` online leases (user0 .. user{n-1})."""
    pool = Pool("bench", ipaddress.ip_address("10.0.0.1"), ipaddress.ip_address("10.0.255.254"))
    addrs = []
    for i in range(n):
        lease = acquire([pool], f"user{i}", 4)
        assert lease is not None
        addrs.append(str(lease.address))
    return pool, addrs


def churn(n: int, ops: int) -> float:
    """Seconds per lease operation with ``n`` leases held."""
    pool, addrs = filled(n)
    step = max(1, n // ops)
    start = time.perf_counter()
    done = 0
    for k in range(ops):
        i = (k * step) % n
        ident = f"user{i}"
        pool.release(ident, ipaddress.ip_address(addrs[i]))  # goes offline
        lease = acquire([pool], ident, 4)  # and comes back to its owner
        assert lease is not None and str(lease.address) == addrs[i]
        done += 2
    newcomer = acquire([pool], "newcomer", 4)  # a never-used address
    done += 1
    assert newcomer is not None
    pool.release("user0", ipaddress.ip_address(addrs[0]))
    other = acquire([pool], "late", 4)  # never-used addresses left: not user0's
    done += 2
    assert other is not None
    return (time.perf_counter() - start) / done


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=1000)
    ap.add_argument("--large", type=int, default=60000)
    ap.add_argument("--ops", type=int, default=20000)
    args = ap.parse_args()
    small = churn(args.small, args.ops)
    large = churn(args.large, args.ops)
    print(json.dumps({
        "small_leases": args.small,
        "large_leases": args.large,
        "small_us_per_op": round(small * 1e6, 3),
        "large_us_per_op": round(large * 1e6, 3),
        "ratio_large_to_small": round(large / small, 2),
    }, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
