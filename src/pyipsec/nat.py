"""NAT traversal: NAT detection, UDP encapsulation helpers and port floating.

Sans-I/O helpers for RFC 7296 §2.23 (NAT traversal in IKEv2) and RFC 3948
(UDP encapsulation of ESP):

* :class:`NatDetection` computes and checks the NAT_DETECTION_SOURCE_IP /
  NAT_DETECTION_DESTINATION_IP hashes exchanged in IKE_SA_INIT and yields a
  :class:`NatResult`.
* :func:`detect_packet_type`, :func:`add_non_esp_marker` and
  :func:`strip_non_esp_marker` demultiplex datagrams on the NAT-T port
  (RFC 3948 §2, RFC 7296 §2.23).
* :class:`PortFloating` decides the ports and encapsulation of one IKE SA.
* :class:`NatKeepalive` is the RFC 3948 §4 keepalive timer of the side behind NAT.
* :func:`transport_checksum_fixup` repairs TCP/UDP checksums of transport-mode
  packets that crossed a NAT (RFC 3948 §3.1.2).
* :func:`should_update_peer_address` / :class:`MappingTracker` implement the
  dynamic address update of §2.23.

Nothing here touches sockets or clocks: time is passed as ``now`` and
randomness is injected.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import ipaddress
import random
import struct
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

from .constants import (
    IKE_HEADER_LEN,
    IKE_PORT,
    NAT_KEEPALIVE,
    NAT_T_PORT,
    NON_ESP_MARKER,
    IpProto,
)
from .errors import ParseError
from .ipv4text import canonical_ipv4_octets

__all__ = [
    "KEEPALIVE_PAYLOAD",
    "NAT_D_HASH_LEN",
    "Address",
    "ChecksumFixup",
    "IpLike",
    "MappingTracker",
    "NatDetection",
    "NatKeepalive",
    "NatResult",
    "NatState",
    "PacketType",
    "PortFloating",
    "add_non_esp_marker",
    "detect_packet_type",
    "format_endpoint",
    "internet_checksum",
    "should_update_peer_address",
    "strip_non_esp_marker",
    "transport_checksum_fixup",
]

IpLike = str | ipaddress.IPv4Address | ipaddress.IPv6Address | bytes
"""An IP address as text, an :mod:`ipaddress` object or packed bytes (4 or 16)."""

Address = tuple[IpLike, int]
"""``(ip, port)`` of one end of a UDP flow."""

KEEPALIVE_PAYLOAD: bytes = NAT_KEEPALIVE
"""RFC 3948 §2.3: the NAT-keepalive payload is the single octet 0xFF."""

NAT_D_HASH_LEN = 20
"""Length of a NAT_DETECTION_*_IP notification's data (a SHA-1 digest)."""

_ESP_MIN_LEN = 8  # SPI + sequence number (RFC 4303 §2)

RandomSource = random.Random | Callable[[int], bytes]
"""A ``random.Random`` (``randbytes``) or a callable like :func:`secrets.token_bytes`."""


def _ip_bytes(ip: IpLike) -> bytes:
    """Packed form (4 or 16 bytes) of ``ip``."""
    if isinstance(ip, bytes):
        if len(ip) not in (4, 16):
            raise ValueError(f"packed IP address must be 4 or 16 bytes, got {len(ip)}")
        return ip
    if isinstance(ip, str):
        return packed_ip(ip)
    return ip.packed


@functools.lru_cache(maxsize=8192)
def packed_ip(text: str) -> bytes:
    """The packed form of an IP address string (peers repeat: parsed once; canonical
    IPv4 text, what the socket layer gives, without :mod:`ipaddress`)."""
    octets = canonical_ipv4_octets(text)
    return octets if octets is not None else ipaddress.ip_address(text).packed


def format_endpoint(addr: tuple[object, int] | None) -> str:
    """``(ip, port)`` for log lines: ``192.0.2.1:500``, ``[2001:db8::1]:500`` (RFC 5952
    §6); ``-`` for None.  (``pyipsec status`` writes ``addr[port]`` instead.)"""
    if addr is None:
        return "-"
    ip = str(addr[0])
    return f"[{ip}]:{addr[1]}" if ":" in ip else f"{ip}:{addr[1]}"


def _addr_key(addr: Address) -> tuple[bytes, int]:
    """Canonical form of an address, so that ``"::1"`` equals ``"0::1"``."""
    ip, port = addr
    return _ip_bytes(ip), int(port)


def _check_port(port: int) -> int:
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"port out of range: {port}")
    return port


def _random_bytes(rng: RandomSource, n: int) -> bytes:
    if isinstance(rng, random.Random):
        return rng.randbytes(n)
    data = rng(n)
    if len(data) != n:
        raise ValueError("random source returned the wrong number of bytes")
    return data


# --------------------------------------------------------------------------- detection


class NatState(enum.Enum):
    """Where the NAT is, seen from this end (RFC 7296 §2.23)."""

    NONE = "none"
    LOCAL = "local"  # we are behind a NAT
    REMOTE = "remote"  # the peer is behind a NAT
    BOTH = "both"


@dataclass(frozen=True, slots=True)
class NatResult:
    """Outcome of NAT detection for one IKE SA (RFC 7296 §2.23).

    ``supported`` is False when the peer did not send both NAT-D notifications:
    it does not do NAT-T and both ``*_behind_nat`` flags are then False.
    """

    local_behind_nat: bool = False
    remote_behind_nat: bool = False
    supported: bool = False

    @property
    def any(self) -> bool:
        """True when a NAT was detected on either side."""
        return self.local_behind_nat or self.remote_behind_nat

    @property
    def state(self) -> NatState:
        if self.local_behind_nat and self.remote_behind_nat:
            return NatState.BOTH
        if self.local_behind_nat:
            return NatState.LOCAL
        if self.remote_behind_nat:
            return NatState.REMOTE
        return NatState.NONE


class NatDetection:
    """NAT_DETECTION_SOURCE_IP / NAT_DETECTION_DESTINATION_IP (RFC 7296 §2.23).

    All methods are static; the class is a namespace.
    """

    __slots__ = ()

    @staticmethod
    def compute_hash(spi_i: bytes, spi_r: bytes, ip: IpLike, port: int) -> bytes:
        """SHA-1(SPIi | SPIr | IP | Port) as defined in RFC 7296 §2.23.

        The IP is 4 (IPv4) or 16 (IPv6) bytes, the port 2 bytes in network
        order.  In the IKE_SA_INIT request SPIr is eight zero bytes; the caller
        passes the SPIs exactly as they appear in the IKE header.
        """
        if len(spi_i) != 8 or len(spi_r) != 8:
            raise ValueError("IKE SPIs are 8 bytes")
        data = spi_i + spi_r + _ip_bytes(ip) + struct.pack("!H", _check_port(port))
        return hashlib.sha1(data).digest()

    @staticmethod
    def outgoing_hashes(
        spi_i: bytes,
        spi_r: bytes,
        *,
        sent_from: Address,
        sent_to: Address,
        force_encap: bool = False,
        rng: RandomSource | None = None,
    ) -> tuple[bytes, bytes]:
        """``(source_hash, destination_hash)`` for the NAT-D notifies we send.

        With ``force_encap`` the source hash is random (:meth:`fake_source_hash`),
        which makes the peer believe we are behind a NAT and so enables UDP
        encapsulation on both sides (strongSwan's ``encap = yes``).
        """
        if force_encap:
            if rng is None:
                raise ValueError("force_encap needs a random source")
            src = NatDetection.fake_source_hash(rng)
        else:
            src = NatDetection.compute_hash(spi_i, spi_r, sent_from[0], sent_from[1])
        dst = NatDetection.compute_hash(spi_i, spi_r, sent_to[0], sent_to[1])
        return src, dst

    @staticmethod
    def fake_source_hash(rng: RandomSource) -> bytes:
        """A random 20-byte NAT_DETECTION_SOURCE_IP value.

        It matches no real address, so the peer concludes "remote behind NAT"
        and both ends float to port 4500 and encapsulate ESP in UDP (forced
        encapsulation, RFC 7296 §2.23 allows either side to use UDP encapsulation).
        """
        return _random_bytes(rng, NAT_D_HASH_LEN)

    @staticmethod
    def detect(
        spi_i: bytes,
        spi_r: bytes,
        *,
        source_hashes: Sequence[bytes],
        destination_hash: bytes | None,
        received_from: Address,
        received_on: Address,
    ) -> NatResult:
        """Evaluate the peer's NAT-D notifies of one IKE_SA_INIT message (§2.23).

        * The peer is behind a NAT if *none* of its NAT_DETECTION_SOURCE_IP
          hashes (a multi-homed peer may send several) equals the hash of the
          packet's source address and port (``received_from``).
        * We are behind a NAT if its NAT_DETECTION_DESTINATION_IP hash differs
          from the hash of the address and port the packet arrived on
          (``received_on``).
        * Without both kinds of notifies the peer does not support NAT-T:
          ``supported`` is False and no NAT is reported.
        """
        if not source_hashes or destination_hash is None:
            return NatResult(supported=False)
        expected_src = NatDetection.compute_hash(spi_i, spi_r, received_from[0], received_from[1])
        expected_dst = NatDetection.compute_hash(spi_i, spi_r, received_on[0], received_on[1])
        remote_behind = all(h != expected_src for h in source_hashes)
        local_behind = destination_hash != expected_dst
        return NatResult(
            local_behind_nat=local_behind, remote_behind_nat=remote_behind, supported=True
        )


# ------------------------------------------------------------------ UDP encapsulation


class PacketType(enum.Enum):
    """What a received UDP datagram carries (RFC 3948 §2, RFC 7296 §2.23)."""

    IKE = "ike"
    ESP = "esp"
    KEEPALIVE = "keepalive"
    EMPTY = "empty"
    INVALID = "invalid"


def detect_packet_type(datagram: bytes, *, port_4500: bool) -> PacketType:
    """Classify a UDP payload received on the IKE (500) or NAT-T (4500) port.

    On the NAT-T port (RFC 3948 §2.2, §2.3):

    * ``b""`` is EMPTY, the single octet 0xFF a KEEPALIVE;
    * a leading non-ESP marker (four zero octets, which no ESP SPI can be)
      announces IKE and needs at least a full IKE header after it;
    * anything else is ESP and needs at least SPI + sequence number (8 octets).

    On port 500 there is no marker and no ESP ("UDP encapsulation MUST NOT be
    done on port 500", §2.23): everything is IKE, except a datagram that starts
    with four zero octets (the initiator SPI can never be zero, §3.1) or is
    shorter than an IKE header, which is INVALID.
    """
    n = len(datagram)
    if n == 0:
        return PacketType.EMPTY
    if port_4500:
        if datagram == KEEPALIVE_PAYLOAD:
            return PacketType.KEEPALIVE
        if n >= 4 and datagram[:4] == NON_ESP_MARKER:
            return PacketType.IKE if n >= 4 + IKE_HEADER_LEN else PacketType.INVALID
        return PacketType.ESP if n >= _ESP_MIN_LEN else PacketType.INVALID
    if n < IKE_HEADER_LEN or datagram[:4] == NON_ESP_MARKER:
        return PacketType.INVALID
    return PacketType.IKE


def add_non_esp_marker(ike: bytes) -> bytes:
    """Prefix an IKE message with the non-ESP marker for port 4500 (RFC 3948 §2.2)."""
    return NON_ESP_MARKER + ike


def strip_non_esp_marker(data: bytes) -> bytes:
    """Remove the non-ESP marker of an IKE message received on port 4500.

    Raises :class:`~pyipsec.ikev2.errors.ParseError` if the marker is missing.
    """
    if len(data) < 4 or data[:4] != NON_ESP_MARKER:
        raise ParseError("missing non-ESP marker")
    return data[4:]


# ---------------------------------------------------------------------- port floating


class PortFloating:
    """Ports and encapsulation of one IKE SA (RFC 7296 §2.23, RFC 3948).

    Create it with the ports the IKE SA starts on.  After IKE_SA_INIT call
    :meth:`update` with the :class:`NatResult`; from IKE_AUTH on, use
    :attr:`local_port` / :attr:`remote_port` and :attr:`use_marker`.  An end that
    starts on a port other than ``ike_port`` (e.g. an initiator that uses 4500
    from the start, which §2.23 allows, or a NAT-mapped remote port) keeps it.
    """

    __slots__ = (
        "_forced",
        "_ike_port",
        "_initial_local",
        "_initial_remote",
        "_nat",
        "_nat_t",
        "_natt_port",
    )

    def __init__(
        self,
        local_port: int = IKE_PORT,
        remote_port: int = IKE_PORT,
        *,
        nat_traversal: bool = True,
        forced: bool = False,
        ike_port: int = IKE_PORT,
        natt_port: int = NAT_T_PORT,
    ) -> None:
        self._initial_local = _check_port(local_port)
        self._initial_remote = _check_port(remote_port)
        self._nat_t = nat_traversal
        self._forced = forced
        self._ike_port = ike_port
        self._natt_port = natt_port
        self._nat: NatResult | None = None

    def update(self, nat: NatResult) -> None:
        """Record the NAT detection result of IKE_SA_INIT (or of a later update)."""
        self._nat = nat

    @property
    def nat(self) -> NatResult | None:
        """The last :class:`NatResult` given to :meth:`update`, if any."""
        return self._nat

    @property
    def nat_traversal(self) -> bool:
        """NAT-T is enabled locally and the peer sent NAT-D notifies."""
        return self._nat_t and self._nat is not None and self._nat.supported

    @property
    def forced(self) -> bool:
        return self._forced

    @property
    def float_needed(self) -> bool:
        """A NAT was detected (or encapsulation is forced) and NAT-T is usable.

        §2.23: "An IPsec endpoint that discovers a NAT between it and its
        correspondent MUST send all subsequent traffic from port 4500".
        """
        nat = self._nat
        if not self._nat_t or nat is None or not nat.supported:
            return False
        return nat.any or self._forced

    def _floated(self, port: int) -> int:
        if self.float_needed and port == self._ike_port:
            return self._natt_port
        return port

    @property
    def local_port(self) -> int:
        """Our port for the IKE SA's traffic from now on."""
        return self._floated(self._initial_local)

    @property
    def remote_port(self) -> int:
        """The peer's port from now on (4500 after floating, unless NAT-mapped)."""
        return self._floated(self._initial_remote)

    @property
    def floated(self) -> bool:
        """True when :attr:`local_port` moved away from the starting port."""
        return self.local_port != self._initial_local

    @property
    def use_marker(self) -> bool:
        """IKE messages carry the non-ESP marker (any port but the IKE port, RFC 3948 §2.2)."""
        return self.local_port != self._ike_port

    @property
    def encapsulate_esp(self) -> bool:
        """Child SAs use UDP-encapsulated ESP (§2.23: MUST when a NAT is detected)."""
        return self.float_needed


# -------------------------------------------------------------------------- keepalives


class NatKeepalive:
    """NAT-keepalive timer of the end behind a NAT (RFC 3948 §4, RFC 7296 §2.23).

    A keepalive (:data:`KEEPALIVE_PAYLOAD` on the NAT-T port) is due when nothing
    at all was sent to the peer for ``interval`` seconds; every packet sent to the
    peer (IKE, ESP or keepalive) must be reported with :meth:`on_sent`.  The timer
    starts with the first packet sent: before that there is no mapping to keep.
    It is off while ``enabled`` is False (we are not behind a NAT) or
    ``interval <= 0``.
    """

    __slots__ = ("_enabled", "_last_sent", "interval")

    def __init__(self, interval: float = 20.0, *, enabled: bool = False) -> None:
        self.interval = float(interval)
        self._enabled = enabled
        self._last_sent: float | None = None

    @property
    def enabled(self) -> bool:
        return self._enabled and self.interval > 0

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._enabled = value

    def update(self, nat: NatResult) -> None:
        """Enable exactly when we are behind a NAT (§2.23: "SHOULD start sending keepalive")."""
        self._enabled = nat.supported and nat.local_behind_nat

    def on_sent(self, now: float) -> None:
        """Anything sent to the peer refreshes the NAT mapping and resets the timer."""
        if self._last_sent is None or now > self._last_sent:
            self._last_sent = now

    def next_deadline(self) -> float | None:
        """When the next keepalive is due, or None when keepalives are off."""
        if not self.enabled or self._last_sent is None:
            return None
        return self._last_sent + self.interval

    def due(self, now: float) -> bool:
        deadline = self.next_deadline()
        return deadline is not None and now >= deadline


# ------------------------------------------------------------- transport-mode checksums


class ChecksumFixup(enum.Enum):
    """RFC 3948 §3.1.2 options for transport-mode TCP/UDP checksums after NAT."""

    AUTO = "auto"  # INCREMENTAL when an original address is known, else RECOMPUTE
    INCREMENTAL = "incremental"  # option 1: adjust by the NAT-OA/received address delta
    RECOMPUTE = "recompute"  # option 2: compute the checksum afresh
    ZERO_UDP = "zero-udp"  # option 3: zero UDP checksums (TCP is recomputed)


def _ones_sum(data: bytes, initial: int = 0) -> int:
    """16-bit one's complement sum (RFC 1071), folded."""
    if len(data) % 2:
        data += b"\x00"
    words: tuple[int, ...] = struct.unpack(f"!{len(data) // 2}H", data)
    total = initial + sum(words)
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def internet_checksum(data: bytes) -> int:
    """The Internet checksum of ``data`` (RFC 1071)."""
    return ~_ones_sum(data) & 0xFFFF


def transport_checksum_fixup(
    packet: bytes,
    *,
    original_src: IpLike | None = None,
    original_dst: IpLike | None = None,
    method: ChecksumFixup = ChecksumFixup.AUTO,
) -> bytes:
    """Repair the TCP/UDP checksum of a decapsulated transport-mode IPv4 packet.

    RFC 3948 §3.1.2: the sender computed the checksum over a pseudo-header with
    the *original* addresses (learned from the traffic selectors / NAT-OA,
    RFC 7296 §2.23.1); the packet now carries the addresses seen after NAT.
    ``original_src``/``original_dst`` of None mean "unchanged".

    * INCREMENTAL (option 1) removes the original and adds the received
      addresses (RFC 1624 eqn. 3); it also works on a first fragment.
    * RECOMPUTE (option 2) computes the checksum over the whole segment.
    * ZERO_UDP (option 3) sets a UDP checksum to 0 (IPv4 only); TCP is recomputed.

    Non-TCP/UDP packets, non-IPv4 packets, non-first fragments and UDP packets
    sent without a checksum (0) are returned unchanged.  A first fragment cannot
    be recomputed and is handled incrementally (or left alone if no original
    address is known).  Truncated headers raise :class:`ParseError`.
    """
    if len(packet) < 20 or packet[0] >> 4 != 4:
        if packet and packet[0] >> 4 == 4:
            raise ParseError("truncated IPv4 header")
        return packet
    ihl = (packet[0] & 0x0F) * 4
    total_len = struct.unpack_from("!H", packet, 2)[0]
    if ihl < 20 or total_len < ihl or len(packet) < total_len:
        raise ParseError("malformed IPv4 header")
    proto = packet[9]
    if proto not in (IpProto.TCP, IpProto.UDP):
        return packet
    frag = struct.unpack_from("!H", packet, 6)[0]
    offset = frag & 0x1FFF
    more_fragments = bool(frag & 0x2000)
    if offset:
        return packet  # no transport header in this fragment
    is_udp = proto == IpProto.UDP
    csum_pos = ihl + (6 if is_udp else 16)
    if total_len < csum_pos + 2:
        raise ParseError("truncated TCP/UDP header")
    current = struct.unpack_from("!H", packet, csum_pos)[0]
    if is_udp and current == 0:
        return packet  # sent without a checksum (RFC 768)

    src = packet[12:16]
    dst = packet[16:20]
    orig_src = _ip_bytes(original_src) if original_src is not None else src
    orig_dst = _ip_bytes(original_dst) if original_dst is not None else dst
    if len(orig_src) != 4 or len(orig_dst) != 4:
        raise ValueError("original addresses of an IPv4 packet must be IPv4")

    if method is ChecksumFixup.AUTO:
        known = original_src is not None or original_dst is not None
        method = ChecksumFixup.INCREMENTAL if known else ChecksumFixup.RECOMPUTE
    if method is ChecksumFixup.ZERO_UDP and is_udp:
        new = 0
    elif more_fragments or method is ChecksumFixup.INCREMENTAL:
        if orig_src == src and orig_dst == dst:
            return packet
        # RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), m = original, m' = received.
        total = _ones_sum(orig_src + orig_dst)
        acc = _ones_sum(src + dst, (~current & 0xFFFF) + (~total & 0xFFFF))
        new = ~acc & 0xFFFF
        if is_udp and new == 0:
            new = 0xFFFF
    else:
        segment = bytearray(packet[ihl:total_len])
        struct.pack_into("!H", segment, csum_pos - ihl, 0)
        pseudo = src + dst + struct.pack("!BBH", 0, proto, len(segment))
        new = internet_checksum(pseudo + bytes(segment))
        if is_udp and new == 0:
            new = 0xFFFF
    out = bytearray(packet)
    struct.pack_into("!H", out, csum_pos, new)
    return bytes(out)


# ------------------------------------------------------------ dynamic address update


def should_update_peer_address(
    authenticated: bool,
    peer_behind_nat: bool,
    current: Address,
    seen: Address,
    *,
    sequence: int,
    newest_seen: int,
    local_behind_nat: bool = False,
) -> bool:
    """Whether to move the IKE SA (and its Child SAs) to the address ``seen`` (§2.23).

    RFC 7296 §2.23: when a packet *whose integrity protection validates* arrives
    from a different address or port, a host that is not behind a NAT SHOULD
    dynamically update the peer's address; a host behind a NAT SHOULD NOT (a
    single packet could break the connection); and the update must only follow
    a *new* packet, otherwise replayed old packets could revert it.

    ``sequence`` is the packet's Message ID (IKE) or ESP sequence number and
    ``newest_seen`` the highest one accepted in the same number space *before*
    this packet.  Returns True only if all of: ``authenticated``,
    ``peer_behind_nat``, not ``local_behind_nat``, ``sequence > newest_seen`` and
    ``seen`` differs from ``current``.
    """
    if not authenticated or not peer_behind_nat or local_behind_nat:
        return False
    if sequence <= newest_seen:
        return False
    return _addr_key(current) != _addr_key(seen)


class MappingTracker:
    """Stateful wrapper of :func:`should_update_peer_address` for one IKE SA (§2.23).

    It remembers the peer's current address and the newest sequence number per
    number space (``space`` is any hashable key, e.g. ``"ike"`` or
    ``("esp", spi)``).  Call :meth:`observe` for every *authenticated* packet
    after its integrity and replay checks passed.
    """

    __slots__ = ("_newest", "current", "local_behind_nat", "peer_behind_nat")

    def __init__(
        self, current: Address, *, peer_behind_nat: bool, local_behind_nat: bool = False
    ) -> None:
        self.current: Address = current
        self.peer_behind_nat = peer_behind_nat
        self.local_behind_nat = local_behind_nat
        self._newest: dict[Hashable, int] = {}

    def update_nat(self, nat: NatResult) -> None:
        self.peer_behind_nat = nat.remote_behind_nat
        self.local_behind_nat = nat.local_behind_nat

    def observe(
        self, seen: Address, *, authenticated: bool, space: Hashable, sequence: int
    ) -> bool:
        """Record a packet; True (and :attr:`current` updated) if the peer moved."""
        if not authenticated:
            return False
        newest = self._newest.get(space, -1)
        changed = should_update_peer_address(
            authenticated,
            self.peer_behind_nat,
            self.current,
            seen,
            sequence=sequence,
            newest_seen=newest,
            local_behind_nat=self.local_behind_nat,
        )
        if sequence > newest:
            self._newest[space] = sequence
        if changed:
            self.current = seen
        return changed
