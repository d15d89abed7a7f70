"""IPv4 addresses in their canonical text form, recognised without :mod:`ipaddress`.

Every datagram names its peer as the text the socket layer gives (``inet_ntop``: the
canonical dotted quad of RFC 4001 §2 / RFC 5952's IPv4 form).  Parsing that text with
:func:`ipaddress.ip_address` costs several microseconds per handshake on a gateway
whose peers are all new; these helpers take the canonical form directly and leave
everything else (IPv6, non-canonical text, garbage) to :mod:`ipaddress`.
"""

from __future__ import annotations

__all__ = ["canonical_ipv4_octets"]


def canonical_ipv4_octets(text: str) -> bytes | None:
    """The four octets of ``text`` when it is an IPv4 address in canonical dotted-quad
    form (four decimal numbers 0-255 without leading zeros), else None."""
    parts = text.split(".")
    if len(parts) != 4:
        return None
    for part in parts:
        # one to three ASCII digits (int() never sees a long string), no leading zero
        if not (0 < len(part) <= 3 and part.isdigit() and part.isascii()):
            return None
        if part[0] == "0" and len(part) > 1:
            return None
    try:
        return bytes(map(int, parts))
    except ValueError:  # a number above 255
        return None
