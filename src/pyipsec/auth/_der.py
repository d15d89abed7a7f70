"""A tiny strict DER reader/writer (ITU-T X.690 §8, §10) for the few structures
this package decodes itself: AlgorithmIdentifier (RFC 5280 §4.1.1.2, RFC 4055 §3.1)
and Name (RFC 5280 §4.1.2.4).

Only single-octet tags and definite lengths in minimal form.  Errors raise
:class:`DerError` (a ``ValueError``); callers turn it into their own error.
"""

from __future__ import annotations

__all__ = [
    "DerError",
    "decode_int",
    "decode_oid",
    "encode_int",
    "encode_oid",
    "read_all",
    "read_single",
    "read_tlv",
    "tlv",
]

SEQUENCE = 0x30
SET = 0x31
OID = 0x06
NULL = 0x05
INTEGER = 0x02


class DerError(ValueError):
    """Bytes that are not the DER we expect."""


def read_tlv(data: bytes, offset: int = 0) -> tuple[int, bytes, int]:
    """``(tag, content, offset after)`` of the TLV at ``offset``."""
    if offset + 2 > len(data):
        raise DerError("truncated TLV header")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise DerError("multi-octet tags are not supported")
    first = data[offset + 1]
    pos = offset + 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 4:
            raise DerError("indefinite or oversized length")
        if pos + n > len(data):
            raise DerError("truncated length")
        length = int.from_bytes(data[pos : pos + n], "big")
        if length < 0x80 or data[pos] == 0:
            raise DerError("non-minimal length encoding")
        pos += n
    end = pos + length
    if end > len(data):
        raise DerError("TLV longer than its container")
    return tag, data[pos:end], end


def read_all(data: bytes) -> list[tuple[int, bytes]]:
    """Every TLV of ``data`` (the content of a SEQUENCE or SET), in order."""
    out: list[tuple[int, bytes]] = []
    offset = 0
    while offset < len(data):
        tag, content, offset = read_tlv(data, offset)
        out.append((tag, content))
    return out


def read_single(data: bytes, tag: int) -> bytes:
    """The content of ``data``, which must be exactly one TLV with ``tag``."""
    t, content, end = read_tlv(data)
    if t != tag or end != len(data):
        raise DerError(f"expected exactly one TLV with tag 0x{tag:02x}")
    return content


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def tlv(tag: int, content: bytes) -> bytes:
    """DER TLV of ``content``."""
    return bytes([tag]) + _length(len(content)) + content


def encode_oid(dotted: str) -> bytes:
    """The full DER OBJECT IDENTIFIER TLV of ``dotted`` (X.690 §8.19)."""
    arcs = [int(a) for a in dotted.split(".")]
    body = bytearray()
    for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(reversed(chunk))
    return tlv(OID, bytes(body))


def decode_oid(content: bytes) -> str:
    """Dotted form of an OBJECT IDENTIFIER's content octets."""
    if not content or content[-1] & 0x80:
        raise DerError("bad OBJECT IDENTIFIER")
    arcs: list[int] = []
    value = 0
    fresh = True
    for b in content:
        if fresh and b == 0x80:
            raise DerError("non-minimal OBJECT IDENTIFIER arc")
        value = (value << 7) | (b & 0x7F)
        fresh = not b & 0x80
        if fresh:
            arcs.append(value)
            value = 0
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(a) for a in head + arcs[1:])


def encode_int(value: int) -> bytes:
    """A DER INTEGER TLV of a non-negative ``value``."""
    raw = value.to_bytes(value.bit_length() // 8 + 1, "big")
    return tlv(INTEGER, raw)


def decode_int(content: bytes) -> int:
    """A non-negative DER INTEGER's content octets."""
    if not content or (len(content) > 1 and content[0] == 0 and content[1] < 0x80):
        raise DerError("bad INTEGER")
    if content[0] & 0x80:
        raise DerError("negative INTEGER")
    return int.from_bytes(content, "big")
