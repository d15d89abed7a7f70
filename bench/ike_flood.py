"""A bounded flood of spoofed IKE_SA_INIT requests and random UDP datagrams.

Usage (as root, inside the namespace the flood should come from)::

    ip netns exec NS python3 bench/ike_flood.py --target 192.0.2.2 --init 2000 --junk 2000

Not a benchmark of pyipsec itself but of its exposure: ``--init`` IKE_SA_INIT requests,
each with a fresh random SPIi, nonce and X25519 public value, built with pyipsec's own
codec (``pyipsec.ikev2.message``/``payloads``), are sent round-robin from ``--sockets``
UDP sockets bound to random ephemeral ports; ``--junk`` random datagrams (random
length, random bytes; half to port 500, half to port 4500, the 4500 ones without the
non-ESP marker so they look like ESP with a random SPI) follow.  Each socket also
receives: every answer is parsed and classified as a COOKIE request (RFC 7296 §2.6), a
regular IKE_SA_INIT response (the responder created a half-open SA and did a key
exchange), another notify-only answer, or unparseable.  ``--rate`` paces the sending
(datagrams per second, 0 = as fast as possible).  The result is one JSON object on
stdout (``sent_init``, ``sent_junk``, ``answers``, ``cookies``, ``init_responses``,
``other``, ``seconds``).

The interop tests (``tests/interop/test_recovery.py``) run it with a small count in CI
and with a large one under ``PYIPSEC_LONG_INTEROP=1``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from pyipsec.ikev2.constants import (
    ExchangeType,
    HeaderFlag,
    NotifyType,
    PayloadType,
    ProtocolId,
)
from pyipsec.ikev2.errors import ProtocolError
from pyipsec.ikev2.message import Message
from pyipsec.ikev2.payloads import (
    KePayload,
    NoncePayload,
    SaPayload,
)
from pyipsec.ikev2.proposals import make_proposals, parse_proposal

X25519 = 31


def init_request(proposal: str = "aes256gcm16-prfsha256-x25519") -> bytes:
    """One IKE_SA_INIT request with random SPIi, nonce and (random) X25519 public value."""
    transforms = parse_proposal(proposal, ProtocolId.IKE)
    msg = Message(spi_i=os.urandom(8), spi_r=bytes(8), exchange=ExchangeType.IKE_SA_INIT,
                  flags=HeaderFlag.INITIATOR, message_id=0)
    msg.add(PayloadType.SA, SaPayload(make_proposals([transforms], ProtocolId.IKE)))
    msg.add(PayloadType.KE, KePayload(X25519, os.urandom(32)))
    msg.add(PayloadType.NONCE, NoncePayload(os.urandom(32)))
    return msg.serialise()


def classify(data: bytes) -> str:
    """``cookie``, ``init_response``, ``other`` or ``invalid`` for one answer."""
    if data.startswith(b"\x00\x00\x00\x00"):
        data = data[4:]
    try:
        msg = Message.parse(data)
    except (ProtocolError, ValueError):
        return "invalid"
    if msg.exchange != ExchangeType.IKE_SA_INIT:
        return "other"
    if msg.notify(NotifyType.COOKIE) is not None:
        return "cookie"
    if msg.get(PayloadType.SA) is not None and msg.get(PayloadType.KE) is not None:
        return "init_response"
    return "other"


def flood(target: str, *, init: int, junk: int, sockets: int = 32, rate: float = 0.0,
          port: int = 500, natt_port: int = 4500, linger: float = 1.0) -> dict[str, float]:
    """Send the flood, collect the answers; returns the counters (see the module doc)."""
    family = socket.AF_INET6 if ":" in target else socket.AF_INET
    socks = []
    for _ in range(sockets):
        s = socket.socket(family, socket.SOCK_DGRAM)
        s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
        s.setblocking(False)
        socks.append(s)
    counts = {"answers": 0, "cookies": 0, "init_responses": 0, "other": 0, "invalid": 0}
    kinds = {"cookie": "cookies", "init_response": "init_responses", "other": "other",
             "invalid": "invalid"}

    def drain(wait: float) -> None:
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select(socks, [], [], max(0.0, left))
            if not ready:
                if left <= 0:
                    return
                continue
            for s in ready:
                while True:
                    try:
                        data = s.recv(65535)
                    except BlockingIOError:
                        break
                    counts["answers"] += 1
                    counts[kinds[classify(data)]] += 1

    rng = random.Random()
    packets: list[tuple[bytes, int]] = [(init_request(), port) for _ in range(init)]
    for i in range(junk):
        packets.append((rng.randbytes(rng.randint(1, 300)), port if i % 2 else natt_port))
    start = time.monotonic()
    sent_init = sent_junk = 0
    for n, (data, dport) in enumerate(packets):
        s = socks[n % len(socks)]
        try:
            s.sendto(data, (target, dport))
        except (BlockingIOError, OSError):
            drain(0.01)
            continue
        if n < init:
            sent_init += 1
        else:
            sent_junk += 1
        if rate > 0:
            pause = start + (n + 1) / rate - time.monotonic()
            if pause > 0:
                drain(pause)
        elif n % 64 == 63:
            drain(0.0)
    drain(linger)
    elapsed = time.monotonic() - start
    for s in socks:
        s.close()
    return {"sent_init": sent_init, "sent_junk": sent_junk, **counts,
            "seconds": round(elapsed, 3)}


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; prints the counters as JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", required=True)
    ap.add_argument("--init", type=int, default=500, help="IKE_SA_INIT requests")
    ap.add_argument("--junk", type=int, default=500, help="random datagrams (500/4500)")
    ap.add_argument("--sockets", type=int, default=32)
    ap.add_argument("--rate", type=float, default=0.0, help="datagrams/s, 0 = unpaced")
    ap.add_argument("--linger", type=float, default=1.0, help="seconds to wait for answers")
    args = ap.parse_args(argv)
    result = flood(args.target, init=args.init, junk=args.junk, sockets=args.sockets,
                   rate=args.rate, linger=args.linger)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
