"""Shared helpers of the EAP tests: a repeatable rng and an in-memory conversation."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from pyipsec.eap.base import EapPeerSession, EapServerSession, EapStep, Outcome

FINAL = (Outcome.SUCCESS, Outcome.FAILURE)


def make_rng(seed: bytes = b"eap") -> Callable[[int], bytes]:
    """Deterministic octets (SHA-256 in counter mode): repeatable tests."""
    state = {"n": 0}

    def rng(n: int) -> bytes:
        out = b""
        while len(out) < n:
            state["n"] += 1
            out += hashlib.sha256(seed + state["n"].to_bytes(8, "big")).digest()
        return out[:n]

    return rng


@dataclass
class Transcript:
    """The last step of each side and every packet sent (server's and peer's)."""

    server: EapStep
    peer: EapStep | None
    to_peer: list[bytes] = field(default_factory=list)
    to_server: list[bytes] = field(default_factory=list)


def converse(
    server: EapServerSession,
    peer: EapPeerSession,
    *,
    max_rounds: int = 400,
    to_peer: Callable[[bytes], bytes] = lambda p: p,
    to_server: Callable[[bytes], bytes] = lambda p: p,
) -> Transcript:
    """Run a conversation to its end: the server's Success/Failure reaches the peer,
    or the peer gives up.  ``to_peer``/``to_server`` may alter packets on the way."""
    step = server.start()
    t = Transcript(step, None)
    for _ in range(max_rounds):
        assert step.packet is not None, step
        t.to_peer.append(step.packet)
        t.peer = peer.process(to_peer(step.packet))
        if step.outcome in FINAL or t.peer.outcome in FINAL:
            return t
        assert t.peer.packet is not None, t.peer
        t.to_server.append(t.peer.packet)
        step = t.server = server.process(to_server(t.peer.packet))
        assert step.outcome is not Outcome.PENDING
    raise AssertionError("conversation did not end")
