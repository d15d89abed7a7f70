"""strongSwan's VICI wire format (``src/libcharon/plugins/vici/README.md``): packets and
messages, no I/O.

Transport: every packet is prefixed by its length, 32 bits big-endian (at most
:data:`MAX_SEGMENT`).  Packet: one type octet; the named types (CMD_REQUEST,
EVENT_REGISTER, EVENT_UNREGISTER, EVENT) carry a name with an 8-bit length next; the
rest is a message.  Message: a sequence of elements -- SECTION_START name,
SECTION_END, KEY_VALUE name value, LIST_START name, LIST_ITEM value, LIST_END -- names
with an 8-bit length, values with a 16-bit big-endian length.

A decoded message is a :class:`dict`: key/values as :class:`bytes`, lists as
``list[bytes]``, sections as nested dicts.  :func:`encode_message` takes ``str``,
``bytes``, ``int``, ``float``, ``bool`` (``yes``/``no``) values, lists of them and
nested dicts; ``None`` values are left out.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Mapping
from typing import Any

__all__ = [
    "MAX_SEGMENT",
    "NAMED",
    "Element",
    "Packet",
    "PacketType",
    "ViciError",
    "decode_message",
    "decode_packet",
    "encode_message",
    "encode_packet",
    "frame",
    "printable",
    "text",
]

#: largest transport segment charon accepts (512 KiB)
MAX_SEGMENT = 512 * 1024
#: nesting depth beyond which a message is refused (no recursion bombs)
MAX_DEPTH = 64


class ViciError(ValueError):
    """A malformed packet or message."""


class PacketType(enum.IntEnum):
    CMD_REQUEST = 0
    CMD_RESPONSE = 1
    CMD_UNKNOWN = 2
    EVENT_REGISTER = 3
    EVENT_UNREGISTER = 4
    EVENT_CONFIRM = 5
    EVENT_UNKNOWN = 6
    EVENT = 7


NAMED = frozenset(
    {PacketType.CMD_REQUEST, PacketType.EVENT_REGISTER, PacketType.EVENT_UNREGISTER,
     PacketType.EVENT}
)  # fmt: skip


class Element(enum.IntEnum):
    SECTION_START = 1
    SECTION_END = 2
    KEY_VALUE = 3
    LIST_START = 4
    LIST_ITEM = 5
    LIST_END = 6


Message = dict[str, Any]


class Packet:
    """One decoded packet: its type, name (named types) and message."""

    __slots__ = ("message", "name", "type")

    def __init__(self, type: PacketType, name: str = "", message: Message | None = None) -> None:
        self.type = type
        self.name = name
        self.message: Message = message if message is not None else {}

    def __repr__(self) -> str:
        return f"Packet({self.type.name}, {self.name!r}, {self.message!r})"


def _name(name: str) -> bytes:
    b = name.encode()
    if len(b) > 255:
        raise ViciError(f"name too long: {name[:40]!r}...")
    return bytes([len(b)]) + b


def _value(v: object) -> bytes:
    if isinstance(v, bool):
        b = b"yes" if v else b"no"
    elif isinstance(v, bytes):
        b = v
    elif isinstance(v, str):
        b = v.encode()
    elif isinstance(v, int | float):
        b = str(v).encode()
    else:
        raise ViciError(f"cannot encode a {type(v).__name__} as a VICI value")
    if len(b) > 0xFFFF:
        raise ViciError("value longer than 65535 octets")
    return struct.pack("!H", len(b)) + b


def encode_message(msg: Mapping[str, Any]) -> bytes:
    """A message's elements (see the module docstring for the accepted values)."""
    out = bytearray()
    _encode_section(msg, out, 0)
    return bytes(out)


def _encode_section(msg: Mapping[str, Any], out: bytearray, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ViciError("message nested too deeply")
    for k, v in msg.items():
        if v is None:
            continue
        if isinstance(v, Mapping):
            out += bytes([Element.SECTION_START]) + _name(k)
            _encode_section(v, out, depth + 1)
            out.append(Element.SECTION_END)
        elif isinstance(v, list | tuple):
            out += bytes([Element.LIST_START]) + _name(k)
            for item in v:
                out += bytes([Element.LIST_ITEM]) + _value(item)
            out.append(Element.LIST_END)
        else:
            out += bytes([Element.KEY_VALUE]) + _name(k) + _value(v)


def decode_message(data: bytes) -> Message:
    """Parse a message; :class:`ViciError` when it is malformed (unbalanced sections,
    items outside lists, truncated names/values, unknown element types)."""
    root: Message = {}
    stack: list[Message] = [root]
    cur_list: list[bytes] | None = None
    pos, n = 0, len(data)

    def name() -> str:
        nonlocal pos
        if pos >= n:
            raise ViciError("truncated name")
        ln = data[pos]
        if pos + 1 + ln > n:
            raise ViciError("truncated name")
        raw = data[pos + 1 : pos + 1 + ln]
        pos += 1 + ln
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise ViciError("name is not UTF-8") from None

    def value() -> bytes:
        nonlocal pos
        if pos + 2 > n:
            raise ViciError("truncated value")
        (ln,) = struct.unpack_from("!H", data, pos)
        if pos + 2 + ln > n:
            raise ViciError("truncated value")
        v = data[pos + 2 : pos + 2 + ln]
        pos += 2 + ln
        return v

    while pos < n:
        t = data[pos]
        pos += 1
        if cur_list is not None and t not in (Element.LIST_ITEM, Element.LIST_END):
            raise ViciError(f"element type {t} inside a list")
        if t == Element.SECTION_START:
            if len(stack) > MAX_DEPTH:
                raise ViciError("message nested too deeply")
            sec: Message = {}
            stack[-1][name()] = sec
            stack.append(sec)
        elif t == Element.SECTION_END:
            if len(stack) == 1:
                raise ViciError("SECTION_END without a section")
            stack.pop()
        elif t == Element.KEY_VALUE:
            k = name()
            stack[-1][k] = value()
        elif t == Element.LIST_START:
            cur_list = []
            stack[-1][name()] = cur_list
        elif t == Element.LIST_ITEM:
            if cur_list is None:
                raise ViciError("LIST_ITEM outside a list")
            cur_list.append(value())
        elif t == Element.LIST_END:
            if cur_list is None:
                raise ViciError("LIST_END without a list")
            cur_list = None
        else:
            raise ViciError(f"unknown element type {t}")
    if cur_list is not None or len(stack) != 1:
        raise ViciError("unterminated list or section")
    return root


def encode_packet(
    type: PacketType, name: str = "", message: Mapping[str, Any] | None = None
) -> bytes:
    """A packet without its length prefix."""
    out = bytes([type])
    if type in NAMED:
        out += _name(name)
    if message:
        out += encode_message(message)
    return out


def decode_packet(data: bytes) -> Packet:
    """Parse one transport segment."""
    if not data:
        raise ViciError("empty packet")
    try:
        t = PacketType(data[0])
    except ValueError:
        raise ViciError(f"unknown packet type {data[0]}") from None
    pos = 1
    name = ""
    if t in NAMED:
        if len(data) < 2 or 2 + data[1] > len(data):
            raise ViciError("truncated packet name")
        try:
            name = data[2 : 2 + data[1]].decode()
        except UnicodeDecodeError:
            raise ViciError("packet name is not UTF-8") from None
        pos = 2 + data[1]
    return Packet(t, name, decode_message(data[pos:]))


def frame(packet: bytes) -> bytes:
    """The transport segment: 32-bit big-endian length, then the packet."""
    if len(packet) > MAX_SEGMENT:
        raise ViciError(f"packet of {len(packet)} octets exceeds {MAX_SEGMENT}")
    return struct.pack("!I", len(packet)) + packet


def text(msg: Mapping[str, Any], key: str, default: str | None = None) -> str | None:
    """A key/value of a decoded message as text (``default`` when absent or not a value)."""
    v = msg.get(key)
    if isinstance(v, bytes):
        return v.decode(errors="replace")
    return default


def printable(s: str) -> str:
    """``s`` as printable ASCII: libvici hands a client an empty string for a value
    with any other octet (``chunk_printable``), so swanctl would print an empty
    ``errmsg`` or log line.  ``§`` becomes ``Section``, other characters ``?``."""
    s = s.replace("§", "Section ")
    if s.isascii() and s.isprintable():
        return s
    return "".join(c if c.isascii() and c.isprintable() else "?" for c in s)
