"""The EAP packet format (RFC 3748 §4, §5): Code, Identifier, Length, Type, Type-Data.

:func:`parse` turns bytes into an :class:`EapPacket` or raises
:class:`~pyipsec.eap.base.EapError`; the builders (:func:`request`, :func:`response`,
:func:`success`, :func:`failure`, :func:`nak`, :func:`expanded_nak`) make packets.

Parsing rules (§4): at least the 4-octet header; a Length below 4 (below 5 for a
Request/Response, which carry a Type) or above the bytes received is malformed;
octets beyond Length are data-link padding and ignored (§4.1).  Success and Failure
carry no data (§4.2); anything after their header inside Length is ignored too.
Codes other than 1-4 are malformed (§4: "silently discarded").  Expanded Types
(254, §5.7) parse, with their Vendor-Id/Vendor-Type available through
:func:`expanded_type`; the methods reject them (we implement none).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from ..constants import EapCode
from .base import EapError

__all__ = [
    "EapPacket",
    "EapType",
    "code_of",
    "expanded_nak",
    "expanded_type",
    "failure",
    "identity_response",
    "nak",
    "nak_types",
    "parse",
    "request",
    "response",
    "success",
]

_HDR = struct.Struct("!BBH")
HEADER_LEN = 4
MAX_LENGTH = 0xFFFF


class EapType(enum.IntEnum):
    """EAP method Types (IANA "Method Types" registry; RFC 3748 §5)."""

    IDENTITY = 1
    NOTIFICATION = 2
    NAK = 3
    MD5 = 4  # MD5-Challenge
    OTP = 5
    GTC = 6
    TLS = 13  # RFC 5216
    SIM = 18
    TTLS = 21
    AKA = 23
    PEAP = 25
    MSCHAPV2 = 26
    AKA_PRIME = 50
    EXPANDED = 254  # §5.7
    EXPERIMENTAL = 255  # §5.8


def type_name(eap_type: int) -> str:
    """``MSCHAPV2`` for 26, ``EapType(99)`` for numbers we do not know."""
    try:
        return EapType(eap_type).name
    except ValueError:
        return f"EapType({eap_type})"


@dataclass(frozen=True, slots=True)
class EapPacket:
    """One EAP packet.  ``eap_type`` is None for Success/Failure (no Type field);
    ``data`` is the Type-Data (Request/Response) and empty for Success/Failure."""

    code: int
    identifier: int
    eap_type: int | None = None
    data: bytes = b""

    @property
    def is_request(self) -> bool:
        return self.code == EapCode.REQUEST

    @property
    def is_response(self) -> bool:
        return self.code == EapCode.RESPONSE

    def to_bytes(self) -> bytes:
        """The packet on the wire (Length computed)."""
        if not 0 <= self.identifier <= 0xFF:
            raise ValueError(f"EAP Identifier {self.identifier} out of range")
        if self.code in (EapCode.SUCCESS, EapCode.FAILURE):
            return _HDR.pack(self.code, self.identifier, HEADER_LEN)
        if self.eap_type is None or not 0 <= self.eap_type <= 0xFF:
            raise ValueError("an EAP Request/Response needs a Type 0..255")
        length = HEADER_LEN + 1 + len(self.data)
        if length > MAX_LENGTH:
            raise ValueError(f"EAP packet of {length} octets is too long")
        return _HDR.pack(self.code, self.identifier, length) + bytes([self.eap_type]) + self.data


def parse(data: bytes) -> EapPacket:
    """Parse one EAP packet (RFC 3748 §4); raises :class:`EapError` when malformed."""
    if len(data) < HEADER_LEN:
        raise EapError(f"EAP packet of {len(data)} octets is shorter than its header")
    code, identifier, length = _HDR.unpack_from(data)
    if length < HEADER_LEN:
        raise EapError(f"EAP Length {length} is below the header size")
    if length > len(data):
        raise EapError(f"EAP Length {length} exceeds the {len(data)} octets received")
    if code in (EapCode.SUCCESS, EapCode.FAILURE):
        return EapPacket(EapCode(code), identifier)
    if code not in (EapCode.REQUEST, EapCode.RESPONSE):
        raise EapError(f"unknown EAP Code {code}")
    if length < HEADER_LEN + 1:
        raise EapError("EAP Request/Response without a Type")
    type_data = bytes(data[HEADER_LEN + 1 : length])
    return EapPacket(EapCode(code), identifier, data[HEADER_LEN], type_data)


def code_of(data: bytes, *, exact: bool = False) -> int | None:
    """The Code of a well-formed EAP packet (RFC 3748 §4), else None.  ``exact``: its
    Length must also cover exactly the octets given (RFC 3579 §3.1: RADIUS carries
    whole EAP packets in its EAP-Message attributes)."""
    try:
        packet = parse(data)
    except EapError:
        return None
    if exact and _HDR.unpack_from(data)[2] != len(data):
        return None
    return packet.code


def request(identifier: int, eap_type: int, data: bytes = b"") -> bytes:
    """An EAP Request (§4.1)."""
    return EapPacket(EapCode.REQUEST, identifier, eap_type, data).to_bytes()


def response(identifier: int, eap_type: int, data: bytes = b"") -> bytes:
    """An EAP Response (§4.1)."""
    return EapPacket(EapCode.RESPONSE, identifier, eap_type, data).to_bytes()


def success(identifier: int) -> bytes:
    """An EAP Success (§4.2): the Identifier of the Response it answers."""
    return EapPacket(EapCode.SUCCESS, identifier).to_bytes()


def failure(identifier: int) -> bytes:
    """An EAP Failure (§4.2): the Identifier of the Response it answers."""
    return EapPacket(EapCode.FAILURE, identifier).to_bytes()


def identity_response(identifier: int, identity: bytes) -> bytes:
    """An EAP-Identity Response (§5.1)."""
    return response(identifier, EapType.IDENTITY, identity)


def identity_of(data: bytes) -> bytes:
    """The identity in Identity Type-Data (§5.1): up to the first NUL, after which
    RFC 4284 puts network-selection options."""
    return data.split(b"\x00", 1)[0]


def nak(identifier: int, desired: Iterable[int]) -> bytes:
    """A legacy Nak Response (§5.3.1) listing the ``desired`` Types, or the single
    Type 0 ("no viable alternative") when there is none."""
    types = bytes(t for t in desired if 4 <= t <= 253) or b"\x00"
    return response(identifier, EapType.NAK, types)


_EXPANDED_HDR = struct.Struct("!B3sI")  # Type 254, Vendor-Id, Vendor-Type
_IETF = b"\x00\x00\x00"


def expanded_type(data: bytes) -> tuple[int, int]:
    """(Vendor-Id, Vendor-Type) of expanded Type-Data (§5.7: after the Type octet
    254 come 3 octets Vendor-Id and 4 octets Vendor-Type)."""
    if len(data) < 7:
        raise EapError("expanded EAP Type shorter than Vendor-Id and Vendor-Type")
    return int.from_bytes(data[:3], "big"), int.from_bytes(data[3:7], "big")


def expanded_nak(identifier: int, desired: Iterable[int]) -> bytes:
    """An Expanded Nak (§5.3.2), the answer to an expanded-Type Request: Vendor-Id 0,
    Vendor-Type 3, then one 8-octet expanded entry per desired IETF Type (or the
    single entry for Type 0 when there is none)."""
    entries = [t for t in desired if 4 <= t <= 253] or [0]
    body = _IETF + (3).to_bytes(4, "big")
    body += b"".join(_EXPANDED_HDR.pack(EapType.EXPANDED, _IETF, t) for t in entries)
    return response(identifier, EapType.EXPANDED, body)


def nak_types(packet: EapPacket) -> tuple[int, ...]:
    """The Types a Nak or Expanded Nak Response asks for (§5.3.1, §5.3.2), without
    the "no alternative" Type 0; raises :class:`EapError` when it is not a Nak."""
    if packet.eap_type == EapType.NAK:
        if not packet.data:
            raise EapError("Nak without a desired Type")
        return tuple(t for t in packet.data if t != 0)
    if packet.eap_type == EapType.EXPANDED and expanded_type(packet.data) == (0, EapType.NAK):
        rest = packet.data[7:]
        if not rest or len(rest) % 8:
            raise EapError("Expanded Nak entries are not 8-octet expanded Types")
        out: list[int] = []
        for off in range(0, len(rest), 8):
            kind, vendor, vtype = _EXPANDED_HDR.unpack_from(rest, off)
            if kind == EapType.EXPANDED and vendor == _IETF and 0 < vtype <= 0xFF:
                out.append(vtype)
        return tuple(out)
    raise EapError(f"not a Nak: Type {type_name(packet.eap_type or 0)}")
