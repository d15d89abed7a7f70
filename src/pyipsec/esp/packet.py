"""Inner IP packet helpers for the ESP data plane (tunnel and transport mode).

* Tunnel mode (RFC 4303 §3.1.2): the whole inner packet is the ESP payload and the Next Header
  is 4 (IPv4) or 41 (IPv6): :func:`inner_next_header`.
* Selector checks (RFC 4301 §4.4.1, §5.1, §5.2): :func:`parse_ip_selectors` reads addresses,
  protocol and ports of an inner IPv4 or IPv6 packet.
* Transport mode (RFC 4303 §3.1.1): :func:`transport_encapsulate` splits a packet into the IP
  header (kept in clear) and the upper-layer payload (protected); :func:`build_ip_packet`
  (alias :func:`transport_decapsulate`) puts a header and a payload back together with the
  protocol / next header, the length fields and the IPv4 header checksum fixed.

Malformed packets raise :class:`~pyipsec.esp.errors.PacketError`.
"""

from __future__ import annotations

from .errors import PacketError

__all__ = [
    "build_ip_packet",
    "inner_next_header",
    "ipv4_checksum",
    "parse_ip_selectors",
    "transport_decapsulate",
    "transport_encapsulate",
]

_PORT_PROTOCOLS = frozenset({6, 17, 132, 136})  # TCP, UDP, SCTP, UDP-Lite: ports at offset 0
# IPv6 extension headers with the generic (next header, length in 8-octet units - 1) layout.
_IPV6_EXT_GENERIC = frozenset({0, 43, 60, 135, 139, 140, 253, 254})
_IPV6_FRAGMENT = 44
_IPV6_AH = 51
_MAX_EXT_HEADERS = 16


def inner_next_header(packet: bytes) -> int:
    """ESP Next Header for a tunnel-mode inner packet: 4 for IPv4, 41 for IPv6 (RFC 4303 §2.6)."""
    if not packet:
        raise PacketError("empty packet")
    version = packet[0] >> 4
    if version == 4:
        return 4
    if version == 6:
        return 41
    raise PacketError(f"not an IP packet (version {version})")


def ipv4_checksum(header: bytes) -> int:
    """RFC 791 §3.1 header checksum: one's complement of the one's complement sum of the
    16-bit words of ``header`` (whose checksum field must be zero)."""
    if len(header) & 1:
        header = bytes(header) + b"\x00"
    total = sum(int.from_bytes(header[i : i + 2], "big") for i in range(0, len(header), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ipv4_header_len(packet: bytes) -> int:
    if len(packet) < 20:
        raise PacketError(f"IPv4 packet of {len(packet)} bytes is shorter than its header")
    ihl = (packet[0] & 0x0F) * 4
    if ihl < 20 or len(packet) < ihl:
        raise PacketError(f"bad IPv4 header length {ihl}")
    return ihl


def _ipv6_walk(packet: bytes) -> tuple[int, int, bool]:
    """Walk the IPv6 extension headers (RFC 8200 §4): (upper protocol, its offset,
    non-initial fragment).  ESP (50) and unknown headers end the walk as the "protocol"."""
    if len(packet) < 40:
        raise PacketError(f"IPv6 packet of {len(packet)} bytes is shorter than its header")
    nh = packet[6]
    off = 40
    non_initial = False
    for _ in range(_MAX_EXT_HEADERS):
        if nh in _IPV6_EXT_GENERIC:
            if len(packet) < off + 2:
                raise PacketError("truncated IPv6 extension header")
            nh, off = packet[off], off + (packet[off + 1] + 1) * 8
        elif nh == _IPV6_FRAGMENT:
            if len(packet) < off + 8:
                raise PacketError("truncated IPv6 fragment header")
            if ((packet[off + 2] << 8) | packet[off + 3]) & 0xFFF8:
                non_initial = True
            nh, off = packet[off], off + 8
        elif nh == _IPV6_AH:
            if len(packet) < off + 2:
                raise PacketError("truncated AH header")
            nh, off = packet[off], off + (packet[off + 1] + 2) * 4
        else:
            if off > len(packet):
                raise PacketError("IPv6 extension headers run past the packet")
            return nh, off, non_initial
    raise PacketError("too many IPv6 extension headers")


def parse_ip_selectors(packet: bytes) -> tuple[bytes, bytes, int, int, int]:
    """(src, dst, protocol, source port, destination port) of an IPv4 or IPv6 packet.

    Addresses are 4 or 16 raw bytes.  Ports are 0 when the protocol has none (anything but
    TCP, UDP, SCTP, UDP-Lite) and for non-initial fragments, whose ports are OPAQUE
    (RFC 4301 §4.4.1.1, §7).  IPv6 extension headers (hop-by-hop, routing, fragment,
    destination options, AH, mobility, HIP, shim6, experimental) are skipped.
    """
    version = inner_next_header(packet)
    if version == 4:
        ihl = _ipv4_header_len(packet)
        src = bytes(packet[12:16])
        dst = bytes(packet[16:20])
        proto = packet[9]
        if (packet[6] << 8 | packet[7]) & 0x1FFF:  # fragment offset != 0
            return src, dst, proto, 0, 0
        off = ihl
    else:
        src = bytes(packet[8:24])
        dst = bytes(packet[24:40])
        proto, off, non_initial = _ipv6_walk(packet)
        if non_initial:
            return src, dst, proto, 0, 0
    if proto not in _PORT_PROTOCOLS:
        return src, dst, proto, 0, 0
    if len(packet) < off + 4:
        raise PacketError(f"protocol {proto} header truncated: no ports")
    sport = (packet[off] << 8) | packet[off + 1]
    dport = (packet[off + 2] << 8) | packet[off + 3]
    return src, dst, proto, sport, dport


def _ipv6_transport_split(packet: bytes) -> int:
    """Offset where transport-mode ESP goes in an IPv6 packet (RFC 4303 §3.1.1): after
    hop-by-hop, routing and fragment headers, and destination options that precede a routing
    header; other destination options are protected."""
    nh = packet[6]
    off = 40
    for _ in range(_MAX_EXT_HEADERS):
        if len(packet) < off + 2 and nh in (0, 43, 44, 60):
            raise PacketError("truncated IPv6 extension header")
        if nh in (0, 43):
            nxt, length = packet[off], (packet[off + 1] + 1) * 8
        elif nh == _IPV6_FRAGMENT:
            nxt, length = packet[off], 8
        elif nh == 60:
            if packet[off] != 43:
                return off
            nxt, length = 43, (packet[off + 1] + 1) * 8
        else:
            return off
        nh, off = nxt, off + length
        if off > len(packet):
            raise PacketError("IPv6 extension headers run past the packet")
    raise PacketError("too many IPv6 extension headers")


def _next_header_field(header: bytes) -> int:
    """Offset of the field naming the protocol after ``header`` (IPv4 protocol, or the last
    Next Header field of the IPv6 header chain)."""
    if header[0] >> 4 == 4:
        return 9
    field = 6
    nh = header[6]
    off = 40
    while off < len(header):
        field = off
        length = 8 if nh == _IPV6_FRAGMENT else (header[off + 1] + 1) * 8
        nh = header[off]
        off += length
    return field


def transport_encapsulate(ip_packet: bytes) -> tuple[bytes, int, bytes]:
    """Split ``ip_packet`` for transport-mode ESP (RFC 4303 §3.1.1).

    Returns (IP header incl. options / the IPv6 extension headers that stay in clear, upper
    protocol = ESP Next Header, upper-layer payload to protect).  Trailing bytes beyond the IP
    length field (link-layer padding) are dropped.  Send
    ``build_ip_packet(header, 50, esp_packet)``.  Also splits a received ESP packet: then the
    protocol is 50 and the payload is the ESP packet.
    """
    version = inner_next_header(ip_packet)
    if version == 4:
        ihl = _ipv4_header_len(ip_packet)
        total = (ip_packet[2] << 8) | ip_packet[3]
        if total < ihl or total > len(ip_packet):
            raise PacketError(f"bad IPv4 total length {total}")
        if (ip_packet[6] << 8 | ip_packet[7]) & 0x3FFF:
            raise PacketError("transport mode applies to whole datagrams, not fragments")
        return bytes(ip_packet[:ihl]), ip_packet[9], bytes(ip_packet[ihl:total])
    if len(ip_packet) < 40:
        raise PacketError("IPv6 packet shorter than its header")
    plen = (ip_packet[4] << 8) | ip_packet[5]
    total = 40 + plen
    if total > len(ip_packet) or plen == 0:
        raise PacketError(f"bad IPv6 payload length {plen}")
    packet = ip_packet[:total]
    off = _ipv6_transport_split(packet)
    header = bytes(packet[:off])
    return header, header[_next_header_field(header)], bytes(packet[off:])


def build_ip_packet(header: bytes, protocol: int, payload: bytes) -> bytes:
    """``header | payload`` with the protocol (IPv4) / last Next Header (IPv6) set to
    ``protocol``, the total / payload length fixed and the IPv4 checksum recomputed."""
    hdr = bytearray(header)
    if not hdr:
        raise PacketError("empty header")
    hdr[_next_header_field(header)] = protocol
    if hdr[0] >> 4 == 4:
        total = len(hdr) + len(payload)
        if total > 0xFFFF:
            raise PacketError(f"IPv4 packet too long: {total}")
        hdr[2:4] = total.to_bytes(2, "big")
        hdr[10:12] = b"\x00\x00"
        hdr[10:12] = ipv4_checksum(bytes(hdr)).to_bytes(2, "big")
    else:
        plen = len(hdr) - 40 + len(payload)
        if plen > 0xFFFF:
            raise PacketError(f"IPv6 payload too long: {plen}")
        hdr[4:6] = plen.to_bytes(2, "big")
    return bytes(hdr) + payload


transport_decapsulate = build_ip_packet
"""Inverse of :func:`transport_encapsulate` after ``EspInbound.unprotect``:
``transport_decapsulate(outer_header, next_header, payload)``."""
