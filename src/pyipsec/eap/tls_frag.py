"""EAP-TLS framing (RFC 5216 §3.1, §2.1.5): the Flags octet, the TLS Message Length,
fragmentation of our TLS messages and reassembly of the other side's.

Type-Data: Flags (L 0x80 = TLS Message Length included, M 0x40 = more fragments,
S 0x20 = Start, from the server only), the 4-octet TLS Message Length when L, then
TLS data.  A message that does not fit one EAP packet of ``max_packet`` octets goes
in fragments: the first with L and M, the middle ones with M, the last with
neither; the other side answers each but the last with an ACK (Flags 0, no data).
Like strongSwan (``include_length = yes``) we put L in every first packet, fragmented
or not.  Reassembly is bounded: a message above :data:`MAX_MESSAGE` octets, or
longer than its declared length, is malformed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .base import EapError

__all__ = ["ACK", "FLAG_L", "FLAG_M", "FLAG_S", "MAX_MESSAGE", "Frame", "Inbox", "Outbox"]

FLAG_L = 0x80
FLAG_M = 0x40
FLAG_S = 0x20
#: The largest TLS message we reassemble (a certificate chain fits many times).
MAX_MESSAGE = 64 * 1024
#: An EAP-TLS acknowledgement: Flags 0, no data (RFC 5216 §2.1.5).
ACK = b"\x00"
EAP_HEADER = 5  # Code, Identifier, Length, Type
_LEN = struct.Struct("!I")


@dataclass(frozen=True, slots=True)
class Frame:
    """One EAP-TLS Type-Data: flags, the declared TLS Message Length (None without
    L) and the TLS data."""

    flags: int
    length: int | None
    data: bytes

    @property
    def more(self) -> bool:
        return bool(self.flags & FLAG_M)

    @property
    def start(self) -> bool:
        return bool(self.flags & FLAG_S)

    @property
    def is_ack(self) -> bool:
        """No data and no more to come: an ACK (or the empty final Response)."""
        return not self.data and not self.more

    @classmethod
    def parse(cls, type_data: bytes) -> Frame:
        if not type_data:
            raise EapError("EAP-TLS message without Flags")
        flags = type_data[0]
        if not flags & FLAG_L:
            return cls(flags, None, type_data[1:])
        if len(type_data) < 1 + _LEN.size:
            raise EapError("EAP-TLS L flag without the 4-octet TLS Message Length")
        return cls(flags, _LEN.unpack_from(type_data, 1)[0], type_data[1 + _LEN.size :])


class Outbox:
    """Our TLS message cut into EAP-TLS fragments of at most ``max_packet`` octets
    (the whole EAP packet)."""

    def __init__(self, max_packet: int) -> None:
        self._first_room = max_packet - EAP_HEADER - 1 - _LEN.size
        self._room = max_packet - EAP_HEADER - 1
        if self._first_room < 1:
            raise ValueError(f"EAP-TLS fragment size {max_packet} leaves no room for data")
        self._message = b""
        self._offset = 0

    @property
    def pending(self) -> bool:
        """Fragments remain after the one sent last."""
        return 0 < self._offset < len(self._message)

    def send(self, message: bytes) -> bytes:
        """The Type-Data of the first fragment of ``message``."""
        self._message, self._offset = message, 0
        head = message[: self._first_room]
        self._offset = len(head)
        flags = FLAG_L | (FLAG_M if self.pending else 0)
        return bytes([flags]) + _LEN.pack(len(message)) + head

    def next(self) -> bytes:
        """The Type-Data of the next fragment (after the other side's ACK)."""
        chunk = self._message[self._offset : self._offset + self._room]
        self._offset += len(chunk)
        return bytes([FLAG_M if self.pending else 0]) + chunk


class Inbox:
    """Reassembles the other side's fragments into one TLS message."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._size = 0
        self._declared: int | None = None

    @property
    def busy(self) -> bool:
        """A fragmented message is partly received."""
        return bool(self._parts)

    def add(self, frame: Frame) -> bytes | None:
        """Add a fragment; the whole message once the last one is in, else None."""
        if not self._parts and frame.length is not None:
            if frame.length > MAX_MESSAGE:
                raise EapError(f"EAP-TLS message of {frame.length} octets is too large")
            self._declared = frame.length
        self._parts.append(frame.data)
        self._size += len(frame.data)
        limit = MAX_MESSAGE if self._declared is None else self._declared
        if self._size > limit:
            raise EapError(f"EAP-TLS fragments exceed {limit} octets")
        if frame.more:
            if not frame.data:
                raise EapError("EAP-TLS fragment without data")
            return None
        message = b"".join(self._parts)
        self._parts, self._size, self._declared = [], 0, None
        return message
