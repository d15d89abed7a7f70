"""Peak memory of a responder's pre-authentication state under floods, per ``half_open_memory``.

In memory, no sockets, real crypto (X25519, AES-GCM, HMAC-SHA256; only the random numbers
come from deterministic generators).  One responder ``IkeManager`` (one ``%any``
connection, PSK) with the default cookie and per-IP limits, ``half_open_limit`` 0 (so
that the byte budget is what binds, not the count) and ``half_open_memory`` = each
budget in turn, is flooded by peers at distinct addresses (100.64.0.0/10), none of
which ever authenticates; the clock does not move, so nothing times out:

* ``cookie``: a cookie-echo flood.  Each peer sends one IKE_SA_INIT request (a real
  initiator's, under its own SPIi) and, when answered with a COOKIE (RFC 7296 §2.6),
  sends it again with the cookie; it never sends IKE_AUTH.  The responder does the
  full key exchange for every admitted peer.
* ``fragments``: a fragment flood.  Each peer is a real initiator (thrown away after
  use) that completes IKE_SA_INIT (echoing the cookie itself) and then sends an
  IKE_AUTH request of 60,000 octets as SKF fragments of 1,280 octets (RFC 7383), all
  but the last: each one is verified, decrypted and kept by the responder up to its
  per-SA budget (``max_fragment_bytes_unauthenticated``, 10,000) and the global one.

Each (flood, budget) runs twice in a fresh interpreter: once for VmRSS growth
(/proc/self/status) and once under tracemalloc (several times slower) for the traced
growth (what is still held at the end) and the traced peak (including transient
garbage, e.g. the thrown-away initiators).  Reported per row: peers, SAs admitted,
COOKIE answers sent, IKE_SA_INIT requests refused (HALF_OPEN_LIMIT), fragments dropped
(FRAGMENT_BUDGET_EXCEEDED), the accounted peak (``half_open_status()["peak"]``) and how
far it went over the budget, the traced growth and peak, the RSS growth, whether the
peak stayed within the budget plus one SA's charge, and the objects of one half-open
SA measured from the traced growth (traced growth minus the messages and fragments
kept, per SA; compare ``HALF_OPEN_SA_BYTES``).  No timing is asserted anywhere.

Usage::

    PYTHONPATH=src python3 bench/bench_preauth.py                    # budgets 0,16M,64M
    PYTHONPATH=src python3 bench/bench_preauth.py --budgets 0,4M --cookie-peers 2000 \\
        --fragment-peers 600 --no-rss

Defaults: 14,000 cookie-echo peers and 5,000 fragment peers (enough to reach 64 MiB
in both floods); the default run takes several minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import subprocess
import sys
import time
import tracemalloc
from typing import Any

from _common import (  # first: it puts src/ and the repository root on sys.path
    header,
    peer_ip,
    rss_kib,
)

# isort: split
from tests.ikev2.harness import DetRng, det_ke_factory

from bench_scale import IKE, RESP_IP, initiator_conn, responder_conn
from pyipsec.crypto.encr import make_sk_protector
from pyipsec.ikev2.constants import ExchangeType, HeaderFlag, NotifyType, PayloadType
from pyipsec.ikev2.fragments import FRAGMENT_OBJECT_BYTES, SET_OBJECT_BYTES
from pyipsec.ikev2.half_open_memory import HALF_OPEN_SA_BYTES
from pyipsec.ikev2.manager import IkeManager
from pyipsec.ikev2.message import Message, encrypt_fragments
from pyipsec.ikev2.payloads import NotifyPayload, VendorIdPayload

RESP: tuple[str, int] = (RESP_IP, 500)
NOW = 1000.0
AUTH_OCTETS = 60_000  # the IKE_AUTH request a fragment-flood peer never completes
FRAGMENT_SIZE = 1280  # ConnectionConfig.fragment_size's default
Address = tuple[str, int]


# ------------------------------------------------------------------ configuration
# bench_scale's gateway (one %any connection) and its peers (their own identities and
# addresses)


def new_responder(budget: int) -> IkeManager:
    rng = DetRng("responder")
    return IkeManager([responder_conn()], rng=rng, ke_factory=det_ke_factory(rng),
                      half_open_limit=0, half_open_memory=budget)


# ------------------------------------------------------------------ the floods


@dataclasses.dataclass
class Flood:
    """One flood against one responder; what it saw on the wire."""

    resp: IkeManager
    cookied: int = 0  # IKE_SA_INIT answers with a COOKIE
    fragments_sent: int = 0

    def answers(self) -> list[tuple[bytes, Address, Address]]:
        out = self.resp.datagrams_to_send(NOW)
        for data, _local, _remote in out:
            # data[18]: the header's exchange type
            if data[18] == ExchangeType.IKE_SA_INIT and Message.parse(data).notify(
                NotifyType.COOKIE
            ) is not None:
                self.cookied += 1
        return out

    def cookie_peer(self, template: bytes, i: int) -> None:
        """A peer that sends IKE_SA_INIT, echoes the cookie, and stops there."""
        data = (i + 1).to_bytes(8, "big") + template[8:]  # its own SPIi
        src = (peer_ip(i), 500)
        self.resp.receive_datagram(data, RESP, src, NOW)
        for answer, _, _ in self.answers():
            cookie = Message.parse(answer).notify(NotifyType.COOKIE)
            if cookie is not None:
                msg = Message.parse(data)
                msg.payloads.insert(0, (PayloadType.NOTIFY,
                                        NotifyPayload(0, b"", NotifyType.COOKIE, cookie.data)))
                self.resp.receive_datagram(msg.serialise(), RESP, src, NOW)
                self.answers()

    def fragment_peer(self, i: int, count: int | None = None) -> None:
        """A real initiator that completes IKE_SA_INIT, then sends all but the last
        fragment of a large IKE_AUTH request (or the first ``count``)."""
        rng = DetRng(f"peer{i}")
        conn = initiator_conn(i)
        init = IkeManager([conn], rng=rng, ke_factory=det_ke_factory(rng))
        init.initiate(conn.name, None, NOW)
        for _ in range(3):  # IKE_SA_INIT, then again with the cookie
            out = [d for d in init.datagrams_to_send(NOW) if d[0][18] == ExchangeType.IKE_SA_INIT]
            if not out:
                break
            for data, local, remote in out:
                self.resp.receive_datagram(data, remote, local, NOW)
            for data, local, remote in self.answers():
                init.receive_datagram(data, remote, local, NOW)
        (sa,) = init.by_id.values()
        k, suite = sa.keys, sa.suite
        if k is None or suite is None:
            return  # refused
        prot = make_sk_protector(suite.encr_id, suite.key_bits, suite.integ_id, k.sk_ei, k.sk_ai)
        msg = Message(sa.spi_i, sa.spi_r, ExchangeType.IKE_AUTH, int(HeaderFlag.INITIATOR), 1,
                      [(PayloadType.VENDOR_ID, VendorIdPayload(b"v" * AUTH_OCTETS))])
        src = (peer_ip(i), 500)
        frags = encrypt_fragments(msg, prot, FRAGMENT_SIZE)
        for data in frags[: len(frags) - 1 if count is None else count]:
            self.resp.receive_datagram(data, RESP, src, NOW)
            self.fragments_sent += 1
        self.answers()


def init_template() -> bytes:
    """A real initiator's IKE_SA_INIT request (its KE value reused by every cookie peer)."""
    rng = DetRng("template")
    conn = initiator_conn(0)
    init = IkeManager([conn], rng=rng, ke_factory=det_ke_factory(rng))
    init.initiate(conn.name, None, NOW)
    ((data, _, _),) = init.datagrams_to_send(NOW)
    return data


def clear_caches() -> None:
    """Empty pyipsec's functools caches: bounded, process-wide, filled mostly by the
    flood's own initiators (their configurations and addresses), not responder state."""
    for name, module in list(sys.modules.items()):
        if name.startswith("pyipsec"):
            for obj in list(vars(module).values()):
                clear = getattr(obj, "cache_clear", None)
                if callable(clear):
                    clear()


def traced_per_sa(kind: str, n: int, count: int | None = None) -> tuple[float, IkeManager]:
    """The traced growth of a responder (caches emptied) over ``n`` flood peers, per SA."""
    flood = Flood(new_responder(0))
    template = init_template()
    for i in range(20):
        flood.fragment_peer(1_000_000 + i, 0)
        flood.cookie_peer(template, 2_000_000 + i)
    clear_caches()
    gc.collect()
    tracemalloc.start()
    t0 = tracemalloc.get_traced_memory()[0]
    for i in range(n):
        if kind == "cookie":
            flood.cookie_peer(template, i)
        else:
            flood.fragment_peer(i, count)
    clear_caches()
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - t0
    tracemalloc.stop()
    return grown / n, flood.resp


def calibrate(n: int) -> None:
    """Measure HALF_OPEN_SA_BYTES, FRAGMENT_OBJECT_BYTES and SET_OBJECT_BYTES again."""
    def messages(resp: IkeManager) -> float:
        sas = list(resp._half_open_responders)[40:]
        return sum(len(sa.msg1) + len(sa.msg2) for sa in sas) / len(sas)

    per_sa, resp = traced_per_sa("cookie", n)
    print(f"HALF_OPEN_SA_BYTES: {per_sa - messages(resp):.0f} measured "
          f"(constant {HALF_OPEN_SA_BYTES})")
    base, resp = traced_per_sa("fragments", n, 0)
    base -= messages(resp)
    rows = {}
    for k in (1, 8):
        grown, resp = traced_per_sa("fragments", n, k)
        sets = [st for sa in list(resp._half_open_responders)[40:] for st in sa.fragments.sets()]
        plain = sum(st.size for st in sets) / n
        body = sum(len(st.header.encrypted.body) for st in sets  # type: ignore[union-attr]
                   if st.header.encrypted is not None) / n
        rows[k] = grown - messages(resp) - base - plain - body
        print(f"  {k} fragment(s) kept per SA: {grown - messages(resp) - base:.0f} bytes per SA "
              f"over the SA itself ({plain:.0f} decrypted octets, header body {body:.0f})")
    frag = (rows[8] - rows[1]) / 7
    print(f"FRAGMENT_OBJECT_BYTES: {frag:.0f} measured (constant {FRAGMENT_OBJECT_BYTES})")
    print(f"SET_OBJECT_BYTES: {rows[1] - frag:.0f} measured (constant {SET_OBJECT_BYTES})")


def run_flood(kind: str, budget: int, peers: int, trace: bool) -> dict[str, Any]:
    """One flood in this process: the numbers of one row (half of them: RSS or traced)."""
    flood = Flood(new_responder(budget))
    template = init_template()
    # first-use allocations (imports, caches, cookie secret) are not the flood's
    warm = Flood(new_responder(budget))
    for i in range(40):
        warm.cookie_peer(template, 10_000_000 + i)
    del warm
    clear_caches()
    gc.collect()
    rss0 = rss_kib()
    if trace:
        tracemalloc.start()
    traced0 = tracemalloc.get_traced_memory()[0] if trace else 0
    for i in range(peers):
        if kind == "cookie":
            flood.cookie_peer(template, i)
        else:
            flood.fragment_peer(i)
    clear_caches()
    gc.collect()
    resp = flood.resp
    row: dict[str, Any] = {"rss": (rss_kib() - rss0) * 1024}
    if trace:
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        row.update(traced=current - traced0, traced_peak=peak - traced0)
        kept = sum(len(sa.msg1) + len(sa.msg2) + sa.fragments.metered
                   for sa in resp._half_open_responders)
        row["per_sa"] = (current - traced0 - kept) / max(1, len(resp._half_open_responders))
    errors = resp.error_status()
    status = resp.half_open_status()
    charges = [charge for _, charge in resp._half_open_responders.values()]
    row.update(
        admitted=status["sas"], cookied=flood.cookied, fragments=flood.fragments_sent,
        refused=errors.get("half-open-limit", 0),
        fragment_drops=errors.get("fragment-budget-exceeded", 0),
        bytes=status["bytes"], peak=status["peak"], one_sa=max(charges, default=0),
        recount=resp._half_open_bytes_recount(),
    )
    return row


def run_child(kind: str, budget: int, peers: int, trace: bool) -> dict[str, Any]:
    """:func:`run_flood` in a fresh interpreter (a clean heap: RSS means something)."""
    cmd = [sys.executable, __file__, "--child", json.dumps([kind, budget, peers, trace])]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    try:
        out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        return out
    except (ValueError, IndexError):
        print(f"child failed: {proc.stderr[-800:]}", file=sys.stderr)
        return {}


# ------------------------------------------------------------------ report


def mib(n: float) -> str:
    return "-" if n is None or math.isnan(n) else f"{n / (1 << 20):7.1f}"


def budget_name(b: int) -> str:
    return "off" if b == 0 else f"{b >> 20}M" if b % (1 << 20) == 0 else str(b)


def print_report(rows: list[tuple[str, int, int, dict[str, Any]]]) -> None:
    print(f"\n{'flood':9} {'budget':>6} {'peers':>6} {'admit':>6} {'cookie':>6} "
          f"{'refuse':>6} {'fr.drop':>7} | {'acct.pk':>7} {'over':>6} {'traced':>7} "
          f"{'tr.peak':>7} {'RSS':>7} | within  {'obj/SA':>6}   (MiB; over in bytes)")
    for kind, budget, peers, r in rows:
        over = r["peak"] - budget if budget else 0
        within = "-" if not budget else "yes" if over <= r["one_sa"] else "NO"
        per_sa = r.get("per_sa", math.nan)
        print(f"{kind:9} {budget_name(budget):>6} {peers:>6} {r['admitted']:>6} "
              f"{r['cookied']:>6} {r['refused']:>6} {r['fragment_drops']:>7} | "
              f"{mib(r['peak'])} {over:>6} {mib(r.get('traced', math.nan))} "
              f"{mib(r.get('traced_peak', math.nan))} {mib(r.get('rss', math.nan))} | "
              f"{within:6}  {per_sa:6.0f}")
    print(f"\nHALF_OPEN_SA_BYTES = {HALF_OPEN_SA_BYTES} (obj/SA: traced growth minus messages "
          "and fragments kept, per admitted SA); 'within': accounted peak <= budget + one "
          "SA's charge (objects + its IKE_SA_INIT messages)")


def parse_budgets(text: str) -> list[int]:
    from pyipsec.config.loader import parse_bytes

    return [parse_bytes(x.strip()) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budgets", type=parse_budgets, default=parse_budgets("0,16M,64M"),
                   help="half_open_memory values, comma-separated (0 = off; default 0,16M,64M)")
    p.add_argument("--cookie-peers", type=int, default=14_000,
                   help="cookie-echo flood peers (default 14000)")
    p.add_argument("--fragment-peers", type=int, default=5_000,
                   help="fragment flood peers (default 5000)")
    p.add_argument("--floods", default="cookie,fragments", help="which floods (default both)")
    p.add_argument("--no-rss", dest="rss", action="store_false",
                   help="skip the runs without tracemalloc (RSS column empty)")
    p.add_argument("--calibrate", type=int, default=0, metavar="N",
                   help="only measure the accounting constants again, over N SAs each")
    p.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.calibrate:
        calibrate(args.calibrate)
        return 0
    if args.child:
        kind, budget, peers, trace = json.loads(args.child)
        print(json.dumps(run_flood(kind, budget, peers, trace)))
        return 0
    print(header("pre-authentication memory") + f"; suite {IKE}")
    rows = []
    t0 = time.monotonic()
    for kind in [f.strip() for f in args.floods.split(",") if f.strip()]:
        peers = args.cookie_peers if kind == "cookie" else args.fragment_peers
        for budget in args.budgets:
            print(f"{kind} flood, budget {budget_name(budget)}, {peers} peers", file=sys.stderr)
            row = run_child(kind, budget, peers, True)
            if args.rss and row:
                row["rss"] = run_child(kind, budget, peers, False).get("rss", math.nan)
            elif row:
                row["rss"] = math.nan
            if row:
                if row["recount"] != row["bytes"]:
                    print(f"  accounting mismatch: {row['bytes']} != {row['recount']}")
                rows.append((kind, budget, peers, row))
    print_report(rows)
    print(f"\ntotal {time.monotonic() - t0:.0f} s wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
