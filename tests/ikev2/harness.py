"""Two IkeManagers wired back to back in memory, with a fake clock and a lossy wire.

The wire delivers datagrams in (delivery time, send order); a test installs
``rules`` that can drop, duplicate, delay or hold back (reorder) datagrams,
deterministically.  Each side has its own deterministic rng (:class:`DetRng`)
whose 32-octet outputs (nonces) can be scripted, so a test decides who wins a
collision.  An optional NAT box rewrites the initiator's source address.

Step mode (:meth:`Harness.hold`, e.g. via :func:`established_pair`) holds every datagram
on the wire until the test delivers or drops it (:meth:`Harness.pending`,
:meth:`Harness.deliver`, :meth:`Harness.drop`, :meth:`Harness.wait`,
:meth:`Harness.drive`) and checks the public state of both sides after each message
(:meth:`Harness.assert_state`), in the style of strongSwan's exchange tests.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyipsec.config.model import (
    ChildConfig,
    ConnectionConfig,
    DpdConfig,
    Lifetimes,
    RetransmitConfig,
    TrafficSelectorSpec,
)
from pyipsec.crypto.ke import KeyExchange, new_key_exchange
from pyipsec.ikev2.constants import DhId, ExchangeType
from pyipsec.ikev2.events import Event, IkeSaEstablished, IkeSaRekeyed
from pyipsec.ikev2.manager import IkeManager
from pyipsec.ikev2.message import Message
from pyipsec.ikev2.state import ChildSaState, IkeSaState

Address = tuple[str, int]

A_IP = "192.0.2.1"
B_IP = "192.0.2.2"
PSK = b"correct horse battery staple"


class DetRng:
    """SHA-256 counter-mode bytes from a seed; 32-octet outputs can be scripted."""

    def __init__(self, seed: str) -> None:
        self.seed = seed.encode()
        self.counter = 0
        self.nonces: deque[bytes] = deque()

    def __call__(self, n: int) -> bytes:
        if n == 32 and self.nonces:
            return self.nonces.popleft()
        out = b""
        while len(out) < n:
            out += hashlib.sha256(self.seed + self.counter.to_bytes(8, "big")).digest()
            self.counter += 1
        return out[:n]


_PRIV_LEN = {
    DhId.CURVE25519: 32,
    DhId.CURVE448: 56,
    DhId.ECP_256: 32,
    DhId.ECP_384: 48,
    DhId.MODP_2048: 32,
    DhId.MODP_3072: 32,
    DhId.MODP_4096: 32,
}


def det_ke_factory(rng: DetRng) -> Callable[[int], KeyExchange]:
    def make(group: int) -> KeyExchange:
        n = _PRIV_LEN.get(group)
        if n is None:
            return new_key_exchange(group)
        priv = bytearray(hashlib.sha512(b"ke" + rng(16)).digest()[:n])
        if group in (DhId.ECP_256, DhId.ECP_384):
            priv[0] &= 0x7F
            priv[-1] |= 1
        if group in (DhId.MODP_2048, DhId.MODP_3072, DhId.MODP_4096):
            priv[0] |= 0x40
        return new_key_exchange(group, private=bytes(priv))

    return make


def child(
    name: str = "net",
    local: Sequence[str] = ("10.1.0.0/16",),
    remote: Sequence[str] = ("10.2.0.0/16",),
    **kw: Any,
) -> ChildConfig:
    return ChildConfig(
        name,
        tuple(TrafficSelectorSpec.from_network(n) for n in local),
        tuple(TrafficSelectorSpec.from_network(n) for n in remote),
        **kw,
    )


FAST_RETRANSMIT = RetransmitConfig(tries=3, timeout=1.0, base=2.0)
NO_DPD = DpdConfig(enabled=False)
_NO_LIFETIMES = Lifetimes()


def conn_pair(
    *,
    ike: Sequence[str] = ("aes256gcm16-prfsha256-x25519",),
    ike_b: Sequence[str] | None = None,
    esp: Sequence[str] = ("aes256gcm16",),
    esp_b: Sequence[str] | None = None,
    a_children: Sequence[ChildConfig] | None = None,
    b_children: Sequence[ChildConfig] | None = None,
    a_kw: dict[str, Any] | None = None,
    b_kw: dict[str, Any] | None = None,
    ike_lifetimes: Lifetimes = _NO_LIFETIMES,
    child_lifetimes: Lifetimes = _NO_LIFETIMES,
) -> tuple[ConnectionConfig, ConnectionConfig]:
    """A matching initiator (A, "moon") / responder (B, "sun") connection pair."""
    ac = (
        a_children
        if a_children is not None
        else [child(esp_proposals=tuple(esp), lifetimes=child_lifetimes)]
    )
    bc = (
        b_children
        if b_children is not None
        else [
            child(
                local=("10.2.0.0/16",),
                remote=("10.1.0.0/16",),
                esp_proposals=tuple(esp_b if esp_b is not None else esp),
                lifetimes=child_lifetimes,
            )
        ]
    )
    common: dict[str, Any] = dict(
        psk=PSK, retransmit=FAST_RETRANSMIT, dpd=NO_DPD, lifetimes=ike_lifetimes
    )
    a = ConnectionConfig(
        **{
            **common,
            "name": "a2b",
            "local_addrs": (A_IP,),
            "remote_addrs": (B_IP,),
            "local_id": "moon.example.net",
            "remote_id": "sun.example.net",
            "ike_proposals": tuple(ike),
            "children": tuple(ac),
            **(a_kw or {}),
        }
    )
    b = ConnectionConfig(
        **{
            **common,
            "name": "b2a",
            "local_addrs": (B_IP,),
            "remote_addrs": (),
            "local_id": "sun.example.net",
            "remote_id": "moon.example.net",
            "ike_proposals": tuple(ike_b if ike_b is not None else ike),
            "children": tuple(bc),
            **(b_kw or {}),
        }
    )
    return a, b


@dataclass
class Packet:
    at: float
    seq: int
    data: bytes
    src: Address
    dst: Address
    sender: str

    def message(self) -> Message | None:
        try:
            return Message.parse(self.data)
        except Exception:
            return None

    @property
    def exchange(self) -> int:
        m = self.message()
        return m.exchange if m is not None else -1

    @property
    def is_response(self) -> bool:
        m = self.message()
        return bool(m is not None and m.is_response)

    @property
    def message_id(self) -> int:
        m = self.message()
        return m.message_id if m is not None else -1


# A rule sees each packet entering the wire; it returns a list of delays (one
# per copy to deliver: [] = drop, [0.0] = normal, [0.0, 0.0] = duplicate,
# [5.0] = delay) or None to leave the packet to later rules.
Rule = Callable[[Packet], "list[float] | None"]


@dataclass
class Side:
    name: str
    mgr: IkeManager
    ip: str
    rng: DetRng
    events: list[Event] = field(default_factory=list)

    def of(self, cls: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, cls)]


class Nat:
    """A NAPT in front of side A: private A_IP <-> public NAT_IP with new ports."""

    def __init__(self, public_ip: str = "203.0.113.7", port_base: int = 30000) -> None:
        self.public_ip = public_ip
        self.port_base = port_base
        self.out_map: dict[Address, Address] = {}
        self.in_map: dict[Address, Address] = {}

    def outbound(self, src: Address) -> Address:
        if src not in self.out_map:
            pub = (self.public_ip, self.port_base + len(self.out_map))
            self.out_map[src] = pub
            self.in_map[pub] = src
        return self.out_map[src]

    def rebind(self) -> None:
        """Forget all mappings (a NAT reboot): the next packet gets a new port."""
        self.port_base += 100
        self.out_map.clear()
        self.in_map.clear()


@dataclass(frozen=True)
class Held:
    """A datagram held on the wire in step mode: its header, parsed (payloads stay encrypted)."""

    pkt: Packet
    direction: str  # "a->b" or "b->a"
    exchange: int  # -1: not an IKE message
    message_id: int
    is_response: bool
    spi_i: bytes
    spi_r: bytes

    @classmethod
    def of(cls, pkt: Packet) -> Held:
        m = pkt.message()
        other = "b" if pkt.sender == "a" else "a"
        if m is None:
            return cls(pkt, f"{pkt.sender}->{other}", -1, -1, False, b"", b"")
        return cls(
            pkt, f"{pkt.sender}->{other}", m.exchange, m.message_id, m.is_response, m.spi_i, m.spi_r
        )

    @property
    def sender(self) -> str:
        return self.pkt.sender

    @property
    def key(self) -> tuple[str, int, int, bool, bytes, bytes]:
        """Identifies the message (a retransmission has the same key)."""
        return (
            self.direction,
            self.exchange,
            self.message_id,
            self.is_response,
            self.spi_i,
            self.spi_r,
        )

    @property
    def label(self) -> str:
        try:
            ex = ExchangeType(self.exchange).name
        except ValueError:
            ex = str(self.exchange)
        kind = "response" if self.is_response else "request"
        return f"{ex} {kind} #{self.message_id} {self.direction} [{self.spi_i.hex()[:8]}]"

    def __repr__(self) -> str:
        return f"<{self.label}>"


def _norm_counts(spec: Any, enum_cls: Any) -> dict[Any, int]:
    """{state: count} from a dict keyed by states or their values/names, or a list of
    states, or a string of state names ("rekeying established")."""
    if isinstance(spec, str):
        spec = spec.replace(",", " ").split()
    items = list(spec.items()) if isinstance(spec, dict) else [(s, 1) for s in spec]
    out: dict[Any, int] = {}
    for k, n in items:
        if not isinstance(k, enum_cls):
            k = enum_cls[k.upper()] if k.upper() in enum_cls.__members__ else enum_cls(k)
        out[k] = out.get(k, 0) + n
    return {k: n for k, n in out.items() if n}


class Harness:
    """Initiator ``a`` and responder ``b``; ``run()`` delivers until the wire is quiet."""

    def __init__(
        self,
        conn_a: ConnectionConfig,
        conn_b: ConnectionConfig,
        *,
        seed: str = "",
        latency: float = 0.01,
        nat: Nat | None = None,
        b_kw: dict[str, Any] | None = None,
    ) -> None:
        self.now = 1000.0
        self.latency = latency
        ra, rb = DetRng("A" + seed), DetRng("B" + seed)
        self.a = Side("a", IkeManager([conn_a], rng=ra, ke_factory=det_ke_factory(ra)), A_IP, ra)
        self.b = Side(
            "b",
            IkeManager([conn_b], rng=rb, ke_factory=det_ke_factory(rb), **(b_kw or {})),
            B_IP,
            rb,
        )
        self.wire: list[Packet] = []
        self.log: list[Packet] = []
        self.rules: list[Rule] = []
        self.seq = 0
        self.nat = nat
        self.down = False  # drop everything
        self.keepalives: list[tuple[float, str, Address, Address]] = []
        # step mode (see hold()): datagrams wait in ``held`` until a test delivers them
        self.stepping = False
        self.held: list[Held] = []

    # ------------------------------------------------------------------ wire

    def _side_for(self, ip: str) -> Side | None:
        if ip == B_IP:
            return self.b
        if ip == A_IP:
            return self.a
        return None

    def flush(self) -> None:
        for side in (self.a, self.b):
            for data, local, remote in side.mgr.datagrams_to_send(self.now):
                src = local
                if side is self.a and self.nat is not None:
                    src = self.nat.outbound(local)
                self.seq += 1
                pkt = Packet(self.now, self.seq, data, src, remote, side.name)
                self.log.append(pkt)
                if self.stepping:
                    self.held.append(Held.of(pkt))
                    continue
                delays: list[float] | None = [] if self.down else None
                for rule in self.rules:
                    if delays is not None:
                        break
                    delays = rule(pkt)
                for d in [0.0] if delays is None else delays:
                    self.seq += 1
                    self.wire.append(
                        Packet(self.now + self.latency + d, self.seq, data, src, remote, side.name)
                    )
            while (ev := side.mgr.next_event()) is not None:
                side.events.append(ev)
            for local, remote in side.mgr.keepalives_to_send(self.now):
                self.keepalives.append((self.now, side.name, local, remote))

    def _deliver(self, pkt: Packet) -> None:
        dst = pkt.dst
        if self.nat is not None and pkt.sender == "b":
            if dst not in self.nat.in_map:
                return  # no mapping: the NAT drops it
            dst = self.nat.in_map[dst]
        side = self._side_for(dst[0])
        if side is None:
            return
        side.mgr.receive_datagram(pkt.data, dst, pkt.src, self.now)

    def step(self, until: float | None = None) -> bool:
        """Deliver the next packet or fire the next timer; False when nothing is left."""
        self.flush()
        nxt_pkt = min(self.wire, key=lambda p: (p.at, p.seq), default=None)
        timers = [t for t in (self.a.mgr.next_timer(), self.b.mgr.next_timer()) if t is not None]
        nxt_timer = min(timers, default=None)
        candidates = [t for t in (nxt_pkt.at if nxt_pkt else None, nxt_timer) if t is not None]
        if not candidates:
            return False
        t = min(candidates)
        if until is not None and t > until:
            self.now = max(self.now, until)
            return False
        self.now = max(self.now, t)
        if nxt_pkt is not None and nxt_pkt.at <= t:
            self.wire.remove(nxt_pkt)
            self._deliver(nxt_pkt)
        else:
            self.a.mgr.handle_timer(self.now)
            self.b.mgr.handle_timer(self.now)
        self.flush()
        return True

    def run(self, duration: float = 5.0, max_steps: int = 20000) -> None:
        """Run for ``duration`` fake seconds (timers included)."""
        until = self.now + duration
        for _ in range(max_steps):
            if not self.step(until):
                break
        else:  # pragma: no cover - a livelock is a test failure
            raise AssertionError("harness did not settle")
        self.flush()

    def advance(self, seconds: float) -> None:
        self.run(seconds)

    # ------------------------------------------------------------------ helpers

    def up(self, child_name: str | None = None, duration: float = 5.0) -> None:
        self.a.mgr.initiate(
            self.a.mgr.conns[next(iter(self.a.mgr.conns))].name, child_name, self.now
        )
        self.run(duration)

    def decrypt(self, pkt: Packet) -> Message:
        """The plaintext of a protected message on the wire (using the SA's keys)."""
        from pyipsec.crypto.encr import make_sk_protector
        from pyipsec.ikev2.message import decrypt_message

        hdr = Message.parse(pkt.data)
        for side in (self.a, self.b):
            for sa in side.mgr.by_id.values():
                if (sa.spi_i, sa.spi_r) != (hdr.spi_i, hdr.spi_r) or sa.keys is None:
                    continue
                assert sa.suite is not None
                k = sa.keys
                e, a = (k.sk_ei, k.sk_ai) if hdr.is_initiator else (k.sk_er, k.sk_ar)
                prot = make_sk_protector(
                    sa.suite.encr_id, sa.suite.key_bits, sa.suite.integ_id, e, a
                )
                return decrypt_message(pkt.data, prot)
        raise LookupError("no SA for this packet")

    def sent(
        self, sender: str, exchange: int | None = None, response: bool | None = None
    ) -> list[Packet]:
        out = []
        for p in self.log:
            if p.sender != sender:
                continue
            if exchange is not None and p.exchange != exchange:
                continue
            if response is not None and p.is_response != response:
                continue
            out.append(p)
        return out

    # ------------------------------------------------------------------ step mode

    def hold(self, on: bool = True) -> None:
        """Step mode: from now on every datagram sent is held on the wire (rules and
        latency do not apply) until the test calls :meth:`deliver` or :meth:`drop`.
        Timers still fire in :meth:`run`/:meth:`advance` (retransmissions get held too)."""
        self.flush()
        self.stepping = on

    def side(self, name: str) -> Side:
        """Side "a" or "b"."""
        return self.a if name == "a" else self.b

    _side = side

    def pending(self, side: str | None = None) -> list[Held]:
        """Held datagrams, oldest first; ``side`` is the sender ("a", "b") or a direction
        ("a->b")."""
        self.flush()
        if side is None:
            return list(self.held)
        return [h for h in self.held if side in (h.sender, h.direction)]

    def _find(
        self,
        direction: str,
        exchange: int | None,
        response: bool | None,
        message_id: int | None,
        spi_i: bytes | None,
    ) -> Held:
        if direction in ("a", "b"):
            direction = f"{direction}->{'b' if direction == 'a' else 'a'}"
        found = [
            h
            for h in self.pending()
            if h.direction == direction
            and (exchange is None or h.exchange == exchange)
            and (response is None or h.is_response == response)
            and (message_id is None or h.message_id == message_id)
            and (spi_i is None or h.spi_i == spi_i)
        ]
        want = f"{direction} exchange={exchange} response={response} mid={message_id}"
        if not found:
            raise AssertionError(f"no held datagram {want}; held: {self.held}")
        if len({h.key for h in found}) > 1:
            raise AssertionError(f"ambiguous {want}: {found}")
        return found[0]

    def deliver(
        self,
        direction: str,
        exchange: int | None = None,
        response: bool | None = None,
        *,
        message_id: int | None = None,
        spi_i: bytes | None = None,
    ) -> Held:
        """Deliver exactly the next held datagram that matches (``direction`` "a->b" or
        the sender "a"); fails when none matches or the matches are different messages
        (copies of one retransmitted message are fine: the oldest goes)."""
        h = self._find(direction, exchange, response, message_id, spi_i)
        self.held.remove(h)
        self._deliver(h.pkt)
        self.flush()
        return h

    def drop(
        self,
        direction: str,
        exchange: int | None = None,
        response: bool | None = None,
        *,
        message_id: int | None = None,
        spi_i: bytes | None = None,
    ) -> Held:
        """Lose the next held datagram that matches (same matching as :meth:`deliver`)."""
        h = self._find(direction, exchange, response, message_id, spi_i)
        self.held.remove(h)
        return h

    def deliver_all(self, max_messages: int = 100) -> list[Held]:
        """Deliver held datagrams oldest first until none is left; returns them."""
        out: list[Held] = []
        for _ in range(max_messages):
            self.flush()
            if not self.held:
                return out
            h = self.held.pop(0)
            self._deliver(h.pkt)
            out.append(h)
        raise AssertionError(f"still exchanging after {max_messages} messages")

    def drive(
        self,
        duration: float,
        check: Callable[[Held], None] | None = None,
        *,
        tick: float | None = None,
        until: Callable[[], bool] | None = None,
    ) -> list[Held]:
        """Step mode with a prompt wire: let time pass from timer to timer (at most
        ``tick`` at a time when given) and deliver every datagram as soon as it is held,
        one at a time, calling ``check(held)`` after each; stops after ``duration`` fake
        seconds, or as soon as the wire is empty and ``until()`` is true.  Returns the
        delivered datagrams."""
        end = self.now + duration
        out: list[Held] = []
        while True:
            self.flush()
            if self.held:
                h = self.held.pop(0)
                self._deliver(h.pkt)
                self.flush()
                out.append(h)
                if check is not None:
                    check(h)
                continue
            if (until is not None and until()) or self.now >= end:
                return out
            self._to_next_timer(end, tick)

    def _to_next_timer(self, end: float, tick: float | None) -> None:
        """Move the clock to the next timer of either side (at most ``tick`` ahead when
        given, never past ``end``) and fire the timers due by then."""
        timers = [t for t in (self.a.mgr.next_timer(), self.b.mgr.next_timer()) if t is not None]
        target = min([end] + [max(t, self.now) for t in timers])
        if tick is not None:
            target = min(target, self.now + tick)
        self.run(target - self.now + 1e-9)
        self.now = max(self.now, target)  # run() stands still when no timer is set

    def wait(self, max_seconds: float, *, tick: float | None = None) -> list[Held]:
        """Step mode: let time pass from timer to timer (or in ``tick`` steps) until a
        datagram is held, at most ``max_seconds``; returns the held datagrams (possibly
        none)."""
        end = self.now + max_seconds
        while not self.pending() and self.now < end:
            self._to_next_timer(end, tick)
        return self.pending()

    def counts(self, side: str) -> tuple[dict[IkeSaState, int], dict[ChildSaState, int]]:
        """(IKE SAs per state, Child SAs per state) of one side, from the public views."""
        mgr = self._side(side).mgr
        ike: dict[IkeSaState, int] = {}
        for v in mgr.ike_sas():
            ike[v.state] = ike.get(v.state, 0) + 1
        ch: dict[ChildSaState, int] = {}
        for c in mgr.child_sas():
            ch[c.state] = ch.get(c.state, 0) + 1
        return ike, ch

    def assert_state(
        self,
        a_ike: Any = None,
        a_children: Any = None,
        b_ike: Any = None,
        b_children: Any = None,
        *,
        step: str = "",
    ) -> None:
        """Compare the number of IKE/Child SAs per state on each side with the given
        ``{state: count}`` dicts (keys: IkeSaState/ChildSaState, or names such as
        "established"/"REKEYING") or lists of states; None skips a check."""
        self.flush()
        errors = []
        for side, ike_spec, ch_spec in (("a", a_ike, a_children), ("b", b_ike, b_children)):
            ike, ch = self.counts(side)
            if ike_spec is not None and _norm_counts(ike_spec, IkeSaState) != ike:
                errors.append(
                    f"{side} IKE SAs {_fmt(ike)} != {_fmt(_norm_counts(ike_spec, IkeSaState))}"
                )
            if ch_spec is not None and _norm_counts(ch_spec, ChildSaState) != ch:
                errors.append(
                    f"{side} Child SAs {_fmt(ch)} != {_fmt(_norm_counts(ch_spec, ChildSaState))}"
                )
        if errors:
            raise AssertionError(f"after {step or 'this step'}: " + "; ".join(errors))

    def ike_spis(self, side: str, ike_id: int) -> tuple[bytes, bytes] | None:
        """(SPIi, SPIr) of an IKE SA, from the IkeSaEstablished/IkeSaRekeyed events
        (None for an SA no event announced, e.g. the redundant SA of a collision)."""
        for ev in self._side(side).events:
            if isinstance(ev, IkeSaEstablished) and ev.ike_id == ike_id and ev.keys:
                return ev.keys.spi_i, ev.keys.spi_r
            if isinstance(ev, IkeSaRekeyed) and ev.new_id == ike_id and ev.keys:
                return ev.keys.spi_i, ev.keys.spi_r
        return None


def drop_first(pred: Callable[[Packet], bool], count: int = 1) -> Rule:
    """Drop the first ``count`` packets matching ``pred``."""
    left = [count]

    def rule(p: Packet) -> list[float] | None:
        if left[0] > 0 and pred(p):
            left[0] -= 1
            return []
        return None

    return rule


def _fmt(counts: dict[Any, int]) -> str:
    return "{" + ", ".join(f"{k.value}: {n}" for k, n in sorted(counts.items(), key=str)) + "}"


#: The four nonces of a rekey collision (§2.8.1, §2.8.2): "a_ni" is A's nonce in its own
#: rekey request, "a_nr" A's nonce in its response to B's request, likewise "b_ni"/"b_nr".
COLLISION_NONCES = ("a_ni", "a_nr", "b_ni", "b_nr")


def script_collision_nonces(h: Harness, lowest: str) -> bool:
    """Script the next two 32-octet rng outputs of each side so that the nonce named
    ``lowest`` (see COLLISION_NONCES) is 0x00...00 and the others 0x80.., 0x81.., ...;
    A must send its rekey request before it answers B's (and B likewise).  Returns
    whether A's rekey wins: the SA whose nonces include the lowest one is the redundant
    one (RFC 7296 §2.8.1, §2.8.2), and A's rekey SA has Ni=a_ni, Nr=b_nr."""
    nonces = {n: bytes([0x80 + i]) * 32 for i, n in enumerate(COLLISION_NONCES)}
    nonces[lowest] = b"\x00" * 32
    h.a.rng.nonces.extend([nonces["a_ni"], nonces["a_nr"]])
    h.b.rng.nonces.extend([nonces["b_ni"], nonces["b_nr"]])
    return lowest not in ("a_ni", "b_nr")


def established_pair(step: bool = True, **conn_kw: Any) -> Harness:
    """Both sides up with one IKE SA and one Child SA (``conn_pair(**conn_kw)``), then
    (``step``) in step mode with an empty wire."""
    a, b = conn_pair(**conn_kw)
    h = Harness(a, b)
    h.up()
    assert [v.state for v in h.a.mgr.ike_sas()] == [IkeSaState.ESTABLISHED]
    assert [v.state for v in h.b.mgr.ike_sas()] == [IkeSaState.ESTABLISHED]
    assert len(h.a.mgr.child_sas()) == 1 and len(h.b.mgr.child_sas()) == 1
    if step:
        h.hold()
    return h


def is_exchange(sender: str, exchange: int, response: bool) -> Callable[[Packet], bool]:
    return lambda p: p.sender == sender and p.exchange == exchange and p.is_response == response


__all__ = [
    "A_IP",
    "B_IP",
    "COLLISION_NONCES",
    "PSK",
    "ExchangeType",
    "Harness",
    "Held",
    "Nat",
    "conn_pair",
    "drop_first",
    "established_pair",
    "script_collision_nonces",
]
