"""IKEv2 payloads: one dataclass per payload of RFC 7296 §3 (plus SKF, RFC 7383 §2.5).

Every payload class offers

* ``parse_body(body: bytes) -> Self`` - decode the payload *body* (the bytes after
  the 4-octet generic payload header of §3.2).  Malformed input raises
  :class:`~pyipsec.ikev2.errors.ParseError` (INVALID_SYNTAX) and nothing else;
* ``serialise_body() -> bytes`` - the inverse.  Local mistakes (a field out of
  range, a wrong address family) raise :class:`ValueError`; they are programming
  errors, never peer-controlled.

Chains of payloads are handled by :func:`parse_payloads` and
:func:`serialise_payloads`; the IKE header lives in :mod:`pyipsec.ikev2.message`.

Conventions (§3.1, §3.2):

* RESERVED fields are sent as zero and ignored on receipt, so
  ``serialise(parse(b)) == b`` holds for every canonically encoded ``b`` and
  ``parse(serialise(x)) == x`` for every valid ``x``;
* the critical bit is sent as zero for every payload defined here and ignored
  on receipt of a payload we understand; an unknown payload with the critical
  bit set raises :class:`UnsupportedCriticalPayload`, an unknown non-critical
  one is kept as :class:`UnknownPayload` (and re-serialised unchanged);
* numbers an enum of :mod:`pyipsec.ikev2.constants` knows are returned as enum
  members, all others as plain ``int`` - both compare equal to the wire value.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Self, TypeVar, Union, cast

from ..dn import name_from_string
from ..identity_memo import IdentityMemo
from .constants import (
    AuthMethod,
    CertEncoding,
    CfgAttr,
    CfgType,
    DhId,
    EncrId,
    EsnId,
    IdType,
    IntegId,
    IpProto,
    NotifyType,
    PayloadType,
    PrfId,
    ProtocolId,
    TransformAttr,
    TransformType,
    TsType,
)
from .errors import ParseError, UnsupportedCriticalPayload

__all__ = [
    "MAX_PAYLOADS",
    "AuthPayload",
    "CertPayload",
    "CertReqPayload",
    "CpPayload",
    "DeletePayload",
    "EapPayload",
    "IPAddress",
    "IdPayload",
    "KePayload",
    "NoncePayload",
    "NotifyPayload",
    "Payload",
    "Proposal",
    "SaPayload",
    "SkPayload",
    "SkfPayload",
    "TrafficSelector",
    "Transform",
    "TsPayload",
    "UnknownPayload",
    "VendorIdPayload",
    "parse_payload",
    "parse_payloads",
    "payload_class",
    "serialise_payloads",
]

#: Upper bound on the number of payloads in one message (plaintext + inner chain).
MAX_PAYLOADS = 256

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_GENERIC = struct.Struct("!BBH")  # §3.2 Next Payload, C|RESERVED, Payload Length
_PROPOSAL = struct.Struct("!BBHBBBB")  # §3.3.1
_TRANSFORM = struct.Struct("!BBHBxH")  # §3.3.2
_HH = struct.Struct("!HH")
_TS = struct.Struct("!BBHHH")  # §3.13.1
_NOTIFY = struct.Struct("!BBH")  # §3.10
_DELETE = struct.Struct("!BBH")  # §3.11
_TYPE_RESERVED3 = struct.Struct("!B3x")  # ID, AUTH, CP, TS headers
_KE = struct.Struct("!H2x")  # §3.4

_CRITICAL = 0x80
_AF_TV = 0x8000

E = TypeVar("E", bound=enum.IntEnum)


def _e(enum_cls: type[E], value: int) -> E | int:
    """Fast ``enum_or_int``: the member for a known value, else the plain int."""
    member = enum_cls._value2member_map_.get(value)
    return value if member is None else cast(E, member)


def _enum_map(enum_cls: type[enum.IntEnum]) -> dict[int, int]:
    """value -> member table; ``table.get(v, v)`` is the fast ``enum_or_int``."""
    return {int(k): cast(int, m) for k, m in enum_cls._value2member_map_.items()}


_M_AuthMethod = _enum_map(AuthMethod)
_M_CertEncoding = _enum_map(CertEncoding)
_M_CfgAttr = _enum_map(CfgAttr)
_M_CfgType = _enum_map(CfgType)
_M_DhId = _enum_map(DhId)
_M_IdType = _enum_map(IdType)
_M_IpProto = _enum_map(IpProto)
_M_NotifyType = _enum_map(NotifyType)
_M_PayloadType = _enum_map(PayloadType)
_M_ProtocolId = _enum_map(ProtocolId)
_M_TransformAttr = _enum_map(TransformAttr)
_M_TransformType = _enum_map(TransformType)
_M_TsType = _enum_map(TsType)


# Addresses in traffic selectors repeat from peer to peer (a gateway's subnets, the
# peers' inner networks): built once each (ipaddress objects are immutable).
_v4 = functools.lru_cache(maxsize=4096)(ipaddress.IPv4Address)
_v6 = functools.lru_cache(maxsize=4096)(ipaddress.IPv6Address)


def _ip_literal(text: str) -> IPAddress | None:
    """``text`` as an IP address, None when it is none (without trying: an IPv4
    literal starts with a digit, an IPv6 one has a colon; identities such as
    ``user@example.net`` are looked at on every IKE_AUTH)."""
    if ":" not in text and not text[:1].isdigit():
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _need(body: bytes, n: int, what: str) -> None:
    if len(body) < n:
        raise ParseError(f"{what}: {len(body)} octets, at least {n} required")


def _u8(value: int, what: str) -> int:
    if not 0 <= value <= 0xFF:
        raise ValueError(f"{what} {value} does not fit in one octet")
    return value


def _u16(value: int, what: str) -> int:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{what} {value} does not fit in two octets")
    return value


# --------------------------------------------------------------------------- SA


_TRANSFORM_ID_ENUMS: dict[int, type[enum.IntEnum]] = {
    TransformType.ENCR: EncrId,
    TransformType.PRF: PrfId,
    TransformType.INTEG: IntegId,
    TransformType.DH: DhId,
    TransformType.ESN: EsnId,
    **{t: DhId for t in range(TransformType.ADDKE1, TransformType.ADDKE7 + 1)},
}
_TRANSFORM_ID_MAPS = {t: _enum_map(cls) for t, cls in _TRANSFORM_ID_ENUMS.items()}


_CODEC_CACHE_MAX = 1024
#: Encoded transform lists by the identities of their (immutable) Transform objects
#: (:class:`~pyipsec.identity_memo.IdentityMemo`).  Our answers repeat the peer's
#: parsed transforms, which :data:`_PARSED_TRANSFORMS` shares between the messages
#: carrying the same ones, so a gateway encodes each list once.  Bounded: peers can
#: offer any values.
_TRANSFORMS_WIRE: IdentityMemo[bytes] = IdentityMemo(_CODEC_CACHE_MAX)
#: Parsed transform lists by their encoding (the octets after a proposal's SPI): the
#: peers of a gateway offer the same few lists in every handshake.  Bounded.
_PARSED_TRANSFORMS: dict[bytes, tuple[Transform, ...]] = {}


@dataclass(frozen=True, slots=True)
class Transform:
    """RFC 7296 §3.3.2 Transform Substructure with its §3.3.5 attributes.

    ``key_length`` is the Key Length attribute (type 14, TV format).  Other
    attributes are kept in wire order in ``attributes`` as ``(type, value)``:
    an ``int`` value is a TV attribute (AF=1, 16-bit value), a ``bytes`` value a
    TLV attribute (AF=0).  On output the key length comes first.  Immutable: parsed
    transforms are shared between messages (:data:`_PARSED_TRANSFORMS`).
    """

    type: int
    id: int
    key_length: int | None = None
    attributes: tuple[tuple[int, bytes | int], ...] = ()

    def _encode(self, last: bool) -> bytes:
        attrs: list[bytes] = []
        if self.key_length is not None:
            attrs.append(
                _HH.pack(_AF_TV | TransformAttr.KEY_LENGTH, _u16(self.key_length, "key length"))
            )
        for atype, value in self.attributes:
            if not 0 <= atype <= 0x7FFF:
                raise ValueError(f"transform attribute type {atype} out of range")
            if isinstance(value, int):
                attrs.append(_HH.pack(_AF_TV | atype, _u16(value, "TV attribute value")))
            else:
                attrs.append(_HH.pack(atype, _u16(len(value), "TLV attribute length")))
                attrs.append(bytes(value))
        body = b"".join(attrs)
        length = _u16(8 + len(body), "transform length")
        return (
            _TRANSFORM.pack(
                0 if last else 3,
                0,
                length,
                _u8(self.type, "transform type"),
                _u16(self.id, "transform id"),
            )
            + body
        )


def encode_transforms(transforms: Sequence[Transform]) -> bytes:
    """The Transform Substructures of one proposal, the last one marked last (§3.3.2);
    memoised per list of Transform objects (:data:`_TRANSFORMS_WIRE`)."""
    key = tuple(map(id, transforms))
    data = _TRANSFORMS_WIRE.get(key)
    if data is not None:
        return data
    n = len(transforms)
    data = b"".join(t._encode(i == n - 1) for i, t in enumerate(transforms))
    return _TRANSFORMS_WIRE.put(key, tuple(transforms), data)


def _parse_attributes(
    buf: bytes, off: int, end: int
) -> tuple[int | None, tuple[tuple[int, bytes | int], ...]]:
    """§3.3.5 Transform Attributes in ``buf[off:end]``."""
    key_length: int | None = None
    attrs: list[tuple[int, bytes | int]] = []
    while off < end:
        if end - off < 4:
            raise ParseError("truncated transform attribute")
        atype, value = _HH.unpack_from(buf, off)
        if atype & _AF_TV:
            atype &= 0x7FFF
            if atype == TransformAttr.KEY_LENGTH and key_length is None:
                key_length = value
            else:
                attrs.append((_M_TransformAttr.get(atype, atype), value))
            off += 4
        else:
            vend = off + 4 + value
            if vend > end:
                raise ParseError("transform attribute length exceeds the transform")
            attrs.append((_M_TransformAttr.get(atype, atype), buf[off + 4 : vend]))
            off = vend
    return key_length, tuple(attrs)


def _parse_transforms(buf: bytes, off: int, end: int, count: int) -> list[Transform]:
    """§3.3.2 Transform Substructures in ``buf[off:end]``; ``count`` from the proposal.
    Memoised per encoding and count (:data:`_PARSED_TRANSFORMS`; only valid lists)."""
    wire = buf[off:end]
    known = _PARSED_TRANSFORMS.get(wire)
    if known is not None and len(known) == count:
        return list(known)
    transforms = _decode_transforms(buf, off, end, count)
    if len(_PARSED_TRANSFORMS) >= _CODEC_CACHE_MAX:
        _PARSED_TRANSFORMS.clear()
    _PARSED_TRANSFORMS[wire] = tuple(transforms)
    return transforms


def _decode_transforms(buf: bytes, off: int, end: int, count: int) -> list[Transform]:
    transforms: list[Transform] = []
    while off < end:
        if end - off < 8:
            raise ParseError("truncated transform substructure")
        more, _, tlen, ttype, tid = _TRANSFORM.unpack_from(buf, off)
        if tlen < 8 or off + tlen > end:
            raise ParseError(f"transform length {tlen} out of bounds")
        tend = off + tlen
        if more != (0 if tend == end else 3):
            raise ParseError(f"transform Last Substruc {more} inconsistent with its position")
        key_length, attrs = _parse_attributes(buf, off + 8, tend)
        id_map = _TRANSFORM_ID_MAPS.get(ttype)
        transforms.append(
            Transform(
                _M_TransformType.get(ttype, ttype),
                tid if id_map is None else id_map.get(tid, tid),
                key_length,
                attrs,
            )
        )
        off = tend
    if len(transforms) != count:
        raise ParseError(f"proposal announces {count} transforms, carries {len(transforms)}")
    return transforms


@dataclass(slots=True)
class Proposal:
    """RFC 7296 §3.3.1 Proposal Substructure."""

    num: int
    protocol: int
    spi: bytes = b""
    transforms: list[Transform] = field(default_factory=list)

    def _serialise(self, last: bool) -> bytes:
        n = len(self.transforms)
        body = encode_transforms(self.transforms)
        length = _u16(8 + len(self.spi) + len(body), "proposal length")
        return (
            _PROPOSAL.pack(
                0 if last else 2,
                0,
                length,
                _u8(self.num, "proposal number"),
                _u8(self.protocol, "protocol id"),
                _u8(len(self.spi), "SPI size"),
                _u8(n, "number of transforms"),
            )
            + self.spi
            + body
        )

    def transforms_of(self, ttype: int) -> list[Transform]:
        """The transforms of one Transform Type, in proposal order."""
        return [t for t in self.transforms if t.type == ttype]


@dataclass(slots=True)
class SaPayload:
    """RFC 7296 §3.3 Security Association payload: one or more proposals."""

    proposals: list[Proposal]

    def serialise_body(self) -> bytes:
        if not self.proposals:
            raise ValueError("an SA payload needs at least one proposal")
        n = len(self.proposals)
        return b"".join(p._serialise(i == n - 1) for i, p in enumerate(self.proposals))

    @classmethod
    def parse_body(cls, body: bytes) -> Self:
        end = len(body)
        if end == 0:
            raise ParseError("SA payload without proposals")
        proposals: list[Proposal] = []
        off = 0
        while off < end:
            if end - off < 8:
                raise ParseError("truncated proposal substructure")
            more, _, plen, num, proto, spi_size, ntrans = _PROPOSAL.unpack_from(body, off)
            if plen < 8 + spi_size or off + plen > end:
                raise ParseError(f"proposal length {plen} out of bounds")
            pend = off + plen
            if more != (0 if pend == end else 2):
                raise ParseError(f"proposal Last Substruc {more} inconsistent with its position")
            spi_end = off + 8 + spi_size
            proposals.append(
                Proposal(
                    num,
                    _M_ProtocolId.get(proto, proto),
                    body[off + 8 : spi_end],
                    _parse_transforms(body, spi_end, pend, ntrans),
                )
            )
            off = pend
        return cls(proposals)


# --------------------------------------------------------------------------- KE


@dataclass(slots=True)
class KePayload:
    """RFC 7296 §3.4 Key Exchange payload: method (DH group) number and public value."""

    group: int
    data: bytes

    def serialise_body(self) -> bytes:
        return _KE.pack(_u16(self.group, "KE method")) + self.data

    @classmethod
    def parse_body(cls, body: bytes) -> Self:
        _need(body, 4, "KE payload")
        group = _KE.unpack_from(body)[0]
        return cls(_M_DhId.get(group, group), body[4:])


# --------------------------------------------------------------------------- ID

_ID_PREFIXES: dict[str, int] = {
    "ipv4": IdType.ID_IPV4_ADDR,
    "ipv6": IdType.ID_IPV6_ADDR,
    "fqdn": IdType.ID_FQDN,
    "email": IdType.ID_RFC822_ADDR,
    "rfc822": IdType.ID_RFC822_ADDR,
    "keyid": IdType.ID_KEY_ID,
    "asn1dn": IdType.ID_DER_ASN1_DN,
    "asn1gn": IdType.ID_DER_ASN1_GN,
    "null": IdType.ID_NULL,
}
_ID_PREFIX_OF: dict[int, str] = {
    IdType.ID_IPV4_ADDR: "ipv4",
    IdType.ID_IPV6_ADDR: "ipv6",
    IdType.ID_FQDN: "fqdn",
    IdType.ID_RFC822_ADDR: "email",
    IdType.ID_KEY_ID: "keyid",
    IdType.ID_DER_ASN1_DN: "asn1dn",
    IdType.ID_DER_ASN1_GN: "asn1gn",
    IdType.ID_NULL: "null",
}
_ID_FIXED_LEN: dict[int, int] = {IdType.ID_IPV4_ADDR: 4, IdType.ID_IPV6_ADDR: 16, IdType.ID_NULL: 0}
_ID_NON_EMPTY = frozenset(
    {
        IdType.ID_FQDN,
        IdType.ID_RFC822_ADDR,
        IdType.ID_DER_ASN1_DN,
        IdType.ID_DER_ASN1_GN,
        IdType.ID_KEY_ID,
    }
)


def _id_value(id_type: int, value: str) -> bytes:
    """The Identification Data for ``value`` written after an explicit prefix.

    As in swanctl: ``#<hex>`` is raw data for any type; otherwise an address
    type is parsed, a DN is read as RFC 4514, and every other type (``keyid:``
    included) is the ASCII/UTF-8 octets of ``value``.
    """
    if value.startswith("#"):
        return bytes.fromhex(value[1:])
    if id_type == IdType.ID_IPV4_ADDR:
        return ipaddress.IPv4Address(value).packed
    if id_type == IdType.ID_IPV6_ADDR:
        return ipaddress.IPv6Address(value).packed
    if id_type == IdType.ID_DER_ASN1_DN:
        return name_from_string(value).public_bytes()
    if id_type == IdType.ID_NULL:
        if value:
            raise ValueError("ID_NULL carries no data")
        return b""
    return value.encode()


@dataclass(slots=True)
class IdPayload:
    """RFC 7296 §3.5 Identification payload (IDi and IDr; RFC 7619 ID_NULL).

    The payload type (IDi or IDr) is kept on the message entry, not here.
    """

    id_type: int
    data: bytes

    def serialise_body(self) -> bytes:
        return _TYPE_RESERVED3.pack(_u8(self.id_type, "ID type")) + self.data

    @classmethod
    def parse_body(cls, body: bytes) -> Self:
        _need(body, 4, "ID payload")
        id_type = body[0]
        data = body[4:]
        fixed = _ID_FIXED_LEN.get(id_type)
        if fixed is not None and len(data) != fixed:
            raise ParseError(f"ID type {id_type} needs {fixed} octets of data, got {len(data)}")
        if not data and id_type in _ID_NON_EMPTY:
            raise ParseError(f"ID type {id_type} with empty data")
        return cls(_M_IdType.get(id_type, id_type), data)

    @classmethod
    def from_string(cls, text: str) -> Self:
        """Build an identity from its configuration form.

        ``198.51.100.2`` and ``2001:db8::2`` give ID_IPV4_ADDR/ID_IPV6_ADDR,
        ``user@example.net`` ID_RFC822_ADDR, ``C=CH, O=Example, CN=moon``
        ID_DER_ASN1_DN (RDNs in the order written, :mod:`pyipsec.dn`), anything else
        ID_FQDN (a leading ``@`` is dropped).
        Explicit prefixes: ``ipv4:``, ``ipv6:``, ``fqdn:``, ``email:``/``rfc822:``,
        ``keyid:``, ``asn1dn:``, ``asn1gn:``, ``null:`` and ``id<N>:`` for any ID
        type N; after a prefix, ``#<hex>`` gives the raw data.  As in strongSwan's
        swanctl, ``keyid:TEXT`` is ID_KEY_ID (RFC 7296 §3.5) holding the octets of
        TEXT itself (``keyid:cafe0001`` is 8 octets) and only ``keyid:#cafe0001``
        is hex (4 octets).  Raises :class:`ValueError` for text that cannot be an
        identity.
        """
        prefix, sep, value = text.partition(":")
        if sep:
            lowered = prefix.lower()
            id_type = _ID_PREFIXES.get(lowered)
            if id_type is None and lowered.startswith("id") and lowered[2:].isdigit():
                id_type = _u8(int(lowered[2:]), "ID type")
            if id_type is not None:
                return cls(_e(IdType, id_type), _id_value(id_type, value))
        if not text:
            raise ValueError("empty identity")
        address = _ip_literal(text)
        if address is not None:
            if address.version == 4:
                return cls(IdType.ID_IPV4_ADDR, address.packed)
            return cls(IdType.ID_IPV6_ADDR, address.packed)
        if text.startswith("@") and len(text) > 1:
            return cls(IdType.ID_FQDN, text[1:].encode())
        if "=" in text:  # a DN first, as strongSwan does (``..., E=carol@example.net``)
            try:
                return cls(IdType.ID_DER_ASN1_DN, _id_value(IdType.ID_DER_ASN1_DN, text))
            except ValueError:
                if "@" not in text:
                    raise
        if "@" in text:
            return cls(IdType.ID_RFC822_ADDR, text.encode())
        return cls(IdType.ID_FQDN, text.encode())

    def to_string(self) -> str:
        """A string that :meth:`from_string` maps back to this identity. Never raises."""
        return _id_string(self.id_type, bytes(self.data))

    def _to_string(self) -> str:
        t, data = self.id_type, self.data
        prefix = _ID_PREFIX_OF.get(t, f"id{t}")
        if t == IdType.ID_NULL and not data:
            return "null:"
        if t in (IdType.ID_IPV4_ADDR, IdType.ID_IPV6_ADDR) and len(data) == _ID_FIXED_LEN[t]:
            return str(ipaddress.ip_address(data))
        if t == IdType.ID_KEY_ID:
            # keyid:TEXT when the octets are printable ASCII that reads back as
            # TEXT (not starting with '#', no surrounding blanks), else hex.
            try:
                text = data.decode("ascii")
            except UnicodeDecodeError:
                text = ""
            if text and text.isprintable() and text == text.strip() and text[0] != "#":
                return f"{prefix}:{text}"
            return f"{prefix}:#{data.hex()}"
        if t in (IdType.ID_FQDN, IdType.ID_RFC822_ADDR):
            try:
                text = data.decode("ascii")
            except UnicodeDecodeError:
                text = ""
            if text and text.isprintable():
                for candidate in (text, f"{prefix}:{text}"):
                    if self._maps_back(candidate):
                        return candidate
        return f"{prefix}:#{data.hex()}"

    def _maps_back(self, text: str) -> bool:
        try:
            other = type(self).from_string(text)
        except ValueError:
            return False
        return other.id_type == self.id_type and other.data == self.data

    def __str__(self) -> str:
        return self.to_string()


@functools.lru_cache(maxsize=4096)
def _id_string(id_type: int, data: bytes) -> str:
    """:meth:`IdPayload.to_string` (which parses candidates back): once per identity
    (ours in every IKE_AUTH, a peer's in each of its exchanges)."""
    return IdPayload(id_type, data)._to_string()


# --------------------------------------------------------------------------- CERT, CERTREQ


@dataclass(slots=True)
class _CertEncoded:
    """The shared body of CERT and CERTREQ: a 1-octet Cert Encoding, then the data."""

    encoding: int
    data: bytes

    def serialise_body(self) -> bytes:
        return bytes((_u8(self.encoding, "certificate encoding"),)) + self.data

    @classmethod
    def parse_body(cls, body: bytes) -> Self:
        _need(body, 1, "CERTREQ payload" if cls is CertReqPayload else "CERT payload")
        enc = body[0]
        return cls(_M_CertEncoding.get(enc, enc), body[1:])


@dataclass(slots=True)
class CertPayload(_CertEncoded):
    """RFC 7296 §3.6 Certificate payload."""


@dataclass(slots=True)
class CertReqPayload(_CertEncoded):
    """RFC 7296 §3.7 Certificate Request payload (Certification Authority data)."""
    def ca_hashes(self) -> list[bytes]:
        """The SHA-1 public key hashes of an X.509 CERTREQ (§3.7: 20 octets each)."""
        if len(self.data) % 20:
            raise ParseError("CERTREQ authority data is not a list of SHA-1 hashes")
        return [self.data[i : i + 20] for i in range(0, len(self.data), 20)]


# --------------------------------------------------------------------------- AUTH, Nonce


@dataclass(slots=True)
class AuthPayload:
    """RFC 7296 §3.8 Authentication payload."""

    method: int
    data: bytes

    def serialise_body(self) -> bytes:
        return _TYPE_RESERVED3.pack(_u8(self.method, "auth method")) + self.data

    @classmethod
    def parse_body(cls, body: bytes) -> Self:
        _need(body, 4, "AUTH payload")
        method = body[0]
        return cls(_M_AuthMethod.get(method, method), body[4:])


NONCE_MIN = 16
NONCE_MAX = 256


@dataclass(slots=True)
class NoncePayload:
    """RFC 7296 §3.9 Nonce payload: 16 to 256 octets."""

    nonce: bytes

    def serialise_body(self) -> bytes:
        return self.nonce

    @classmethod
    def parse_body(cls, body: bytes) -> Self:
        if not NONCE_MIN <= len(body) <= NONCE_MAX:
            raise ParseError(f"nonce of {len(body)} octets (§3.9: 16..256)")
        return cls(body)


# --------------------------------------------------------------------------- Notify, Delete, V


@dataclass(slots=True)
class NotifyPayload:
    """RFC 7296 §3.10 Notify payload."""

    protocol: int
    spi: bytes
    type: int
    data: bytes = b""

    @classmethod
    def error(cls, type: int, data: bytes = b"", protocol: int = 0, spi: bytes = b"") -> Self:
        """An error notification (§3.10.1: type < 16384)."""
        if not 0 < type < 16384:
            raise ValueError(f"notify type {type} is not an error type")
        return cls(protocol, spi, type, data)

    @classmethod
    def status(cls, type: int, data: bytes = b"", protocol: int = 0, spi: bytes = b"") -> Self:
        """A status notification (§3.10.1: type >= 16384)."""
        if not 16384 <= type <= 0xFFFF:
            raise ValueError(f"notify type {type} is not a status type")
        return cls(protocol, spi, type, data)

    @property
    def is_error(self) -> bool:
        return self.type < 16384

    def serialise_body(self) -> bytes:
        return (
            _NOTIFY.pack(
                _u8(self.protocol, "protocol id"),
                _u8(len(self.spi), "SPI size"),
                _u16(self.type, "notify type"),
            )
            + self.spi
            + self.data
        )

    @classmethod
    def parse_body(cls, body: bytes) -> Self:
        _need(body, 4, "Notify payload")
        protocol, spi_size, ntype = _NOTIFY.unpack_from(body)
        if 4 + spi_size > len(body):
            raise ParseError(f"Notify SPI size {spi_size} exceeds the payload")
        return cls(
            _M_ProtocolId.get(protocol, protocol),
            body[4 : 4 + spi_size],
            _M_NotifyType.get(ntype, ntype),
            body[4 + spi_size :],
        )


@dataclass(slots=True)
class DeletePayload:
    """RFC 7296 §3.11 Delete payload."""

    protocol: int
    spi_size: int
    spis: list[bytes] = field(default_factory=list)

    @classmethod
    def delete_ike_sa(cls) -> Self:
        """Delete the IKE SA the message is protected by (protocol IKE, no SPI)."""
        return cls(ProtocolId.IKE, 0, [])

    @classmethod
    def delete_child_sa(cls, spis: Iterable[int | bytes], protocol: int = ProtocolId.ESP) -> Self:
        """Delete Child SAs by their inbound SPIs (4 octets each for ESP/AH)."""
        out: list[bytes] = []
        for spi in spis:
            if isinstance(spi, int):
                if not 0 <= spi <= 0xFFFFFFFF:
                    raise ValueError(f"SPI {spi:#x} does not fit in 4 octets")
                out.append(spi.to_bytes(4, "big"))
            elif len(spi) == 4:
                out.append(bytes(spi))
            else:
                raise ValueError(f"Child SA SPI must be 4 octets, got {len(spi)}")
        return cls(protocol, 4, out)

    def spi_values(self) -> list[int]:
        """The SPIs as integers."""
        return [int.from_bytes(s, "big") for s in self.spis]

    def serialise_body(self) -> bytes:
        for spi in self.spis:
            if len(spi) != self.spi_size:
                raise ValueError(
                    f"SPI of {len(spi)} octets in a Delete of SPI size {self.spi_size}"
                )
        return _DELETE.pack(
            _u8(self.protocol, "protocol id"),
            _u8(self.spi_size, "SPI size"),
            _u16(len(self.spis), "number of SPIs"),
        ) + b"".join(self.spis)

    @classmethod
    def parse_body(cls, body: bytes) -> Self:
        _need(body, 4, "Delete payload")
        protocol, spi_size, count = _DELETE.unpack_from(body)
        if len(body) != 4 + spi_size * count:
            raise ParseError(
                f"Delete payload of {len(body)} octets for {count} SPIs of {spi_size} octets"
            )
        if spi_size:
            spis = [body[i : i + spi_size] for i in range(4, len(body), spi_size)]
        else:
            spis = [b""] * count  # IKE: SPI size 0 (the SPIs are in the header)
        return cls(_M_ProtocolId.get(protocol, protocol), spi_size, spis)


@dataclass(slots=True)
class VendorIdPayload:
    """RFC 7296 §3.12 Vendor ID payload."""

    data: bytes

    def serialise_body(self) -> bytes:
        return self.data

    @classmethod
    def parse_body(cls, body: bytes) -> Self:
        return cls(body)


# --------------------------------------------------------------------------- TS

_ANY_PORTS = (0, 0xFFFF)


@dataclass(slots=True)
class TrafficSelector:
    """RFC 7296 §3.13.1 Traffic Selector (TS_IPV4_ADDR_RANGE / TS_IPV6_ADDR_RANGE).

    ``ip_proto`` 0 means any protocol; ports 0..65535 mean any port and
    65535..0 "OPAQUE" (§3.13.1).  For ICMP the "port" is type << 8 | code.
    """

    ts_type: int
    ip_proto: int
    start_port: int
    end_port: int
    start_addr: IPAddress
    end_addr: IPAddress

    @classmethod
    def from_range(
        cls,
        start: str | IPAddress,
        end: str | IPAddress,
        ip_proto: int = 0,
        start_port: int = 0,
        end_port: int = 0xFFFF,
    ) -> Self:
        """A selector for the inclusive address range ``start``..``end``."""
        a = ipaddress.ip_address(start)
        b = ipaddress.ip_address(end)
        if a.version != b.version:
            raise ValueError("start and end address of a selector differ in family")
        ts_type = TsType.TS_IPV4_ADDR_RANGE if a.version == 4 else TsType.TS_IPV6_ADDR_RANGE
        return cls(ts_type, ip_proto, start_port, end_port, a, b)

    @classmethod
    def from_network(
        cls,
        network: str | ipaddress.IPv4Network | ipaddress.IPv6Network,
        ip_proto: int = 0,
        port: int | tuple[int, int] | None = None,
    ) -> Self:
        """A selector covering ``network`` (host bits ignored), e.g. ``"10.1.0.0/16"``."""
        net = ipaddress.ip_network(network, strict=False)
        lo, hi = _ANY_PORTS if port is None else (port, port) if isinstance(port, int) else port
        return cls.from_range(net.network_address, net.broadcast_address, ip_proto, lo, hi)

    @classmethod
    def any(cls, version: int = 4) -> Self:
        """Everything of one address family."""
        return cls.from_network("0.0.0.0/0" if version == 4 else "::/0")

    @property
    def version(self) -> int:
        return self.start_addr.version

    def _ports_contain(self, other: TrafficSelector) -> bool:
        if (self.start_port, self.end_port) == _ANY_PORTS:
            return True  # "ANY includes OPAQUE" (§3.13.1)
        if other.start_port > other.end_port:  # OPAQUE
            return self.start_port > self.end_port
        return self.start_port <= other.start_port and other.end_port <= self.end_port

    def contains(self, other: TrafficSelector) -> bool:
        """True when every packet ``other`` matches is matched by ``self``."""
        return (
            self.version == other.version
            and (self.ip_proto == 0 or self.ip_proto == other.ip_proto)
            and self.start_addr <= other.start_addr  # type: ignore[operator]
            and other.end_addr <= self.end_addr  # type: ignore[operator]
            and self._ports_contain(other)
        )

    def matches(self, address: str | IPAddress, ip_proto: int = 0, port: int | None = None) -> bool:
        """True when a packet to/from ``address`` (protocol, port) falls in this selector."""
        a = ipaddress.ip_address(address)
        if a.version != self.version or not self.start_addr <= a <= self.end_addr:  # type: ignore[operator]
            return False
        if self.ip_proto and ip_proto != self.ip_proto:
            return False
        if port is None or (self.start_port, self.end_port) == _ANY_PORTS:
            return True
        return self.start_port <= port <= self.end_port

    def _serialise(self) -> bytes:
        if self.ts_type == TsType.TS_IPV4_ADDR_RANGE:
            version, size = 4, 16
        elif self.ts_type == TsType.TS_IPV6_ADDR_RANGE:
            version, size = 6, 40
        else:
            raise ValueError(f"unsupported TS type {self.ts_type}")
        if self.start_addr.version != version or self.end_addr.version != version:
            raise ValueError(f"TS type {self.ts_type} with IPv{self.start_addr.version} addresses")
        return (
            _TS.pack(
                self.ts_type,
                _u8(self.ip_proto, "IP protocol"),
                size,
                _u16(self.start_port, "start port"),
                _u16(self.end_port, "end port"),
            )
            + self.start_addr.packed
            + self.end_addr.packed
        )

    def __str__(self) -> str:
        addr = f"{self.start_addr}-{self.end_addr}"
        if self.start_addr.version == self.end_addr.version and self.start_addr <= self.end_addr:  # type: ignore[operator]
            nets = list(ipaddress.summarize_address_range(self.start_addr, self.end_addr))
            if len(nets) == 1:
                addr = str(nets[0])
        if self.ip_proto == 0 and (self.start_port, self.end_port) == _ANY_PORTS:
            return addr
        proto = (
            IpProto(self.ip_proto).name.lower()
            if self.ip_proto in IpProto._value2member_map_
            else str(self.ip_proto)
        )
        if (self.start_port, self.end_port) == _ANY_PORTS:
            return f"{addr}[{proto}]"
        if self.start_port == self.end_port:
            return f"{addr}[{proto}/{self.start_port}]"
        return f"{addr}[{proto}/{self.start_port}-{self.end_port}]"


@dataclass(slots=True)
class TsPayload:
    """RFC 7296 §3.13 Traffic Selector payload (TSi and TSr): one or more selectors."""

    selectors: list[TrafficSelector]

    def serialise_body(self) -> bytes:
        if not self.selectors:
            raise ValueError("a TS payload needs at least one traffic selector")
        return _TYPE_RESERVED3.pack(_u8(len(self.selectors), "number of TSs")) + b"".join(
            ts._serialise() for ts in self.selectors
        )

    @classmethod
    def parse_body(cls, body: bytes) -> Self:
        _need(body, 4, "TS payload")
        count = body[0]
        if count == 0:
            raise ParseError("TS payload without traffic selectors")
        end = len(body)
        off = 4
        selectors: list[TrafficSelector] = []
        make: Callable[[bytes], IPAddress]
        for _ in range(count):
            if end - off < 8:
                raise ParseError("truncated traffic selector")
            ts_type, proto, slen, sport, eport = _TS.unpack_from(body, off)
            if ts_type == TsType.TS_IPV4_ADDR_RANGE:
                alen, make = 4, _v4
            elif ts_type == TsType.TS_IPV6_ADDR_RANGE:
                alen, make = 16, _v6
            else:
                raise ParseError(f"unsupported traffic selector type {ts_type}")
            if slen != 8 + 2 * alen:
                raise ParseError(f"selector length {slen} wrong for TS type {ts_type}")
            if off + slen > end:
                raise ParseError("traffic selector exceeds the payload")
            a = off + 8
            selectors.append(
                TrafficSelector(
                    _M_TsType[ts_type],
                    _M_IpProto.get(proto, proto),
                    sport,
                    eport,
                    make(body[a : a + alen]),
                    make(body[a + alen : a + 2 * alen]),
                )
            )
            off += slen
        if off != end:
            raise ParseError(f"{end - off} octets after the announced {count} traffic selectors")
        return cls(selectors)


# --------------------------------------------------------------------------- CP, EAP


@dataclass(slots=True)
class CpPayload:
    """RFC 7296 §3.15 Configuration payload; attributes (§3.15.1) as ``(type, value)``."""

    cfg_type: int
    attributes: list[tuple[int, bytes]] = field(default_factory=list)

    def get(self, attr_type: int) -> list[bytes]:
        """Values of every attribute of ``attr_type``, in order."""
        return [v for t, v in self.attributes if t == attr_type]

    def serialise_body(self) -> bytes:
        parts = [_TYPE_RESERVED3.pack(_u8(self.cfg_type, "CFG type"))]
        for atype, value in self.attributes:
            if not 0 <= atype <= 0x7FFF:
                raise ValueError(f"configuration attribute type {atype} out of range")
            parts.append(_HH.pack(atype, _u16(len(value), "attribute length")))
            parts.append(value)
        return b"".join(parts)

    @classmethod
    def parse_body(cls, body: bytes) -> Self:
        _need(body, 4, "CP payload")
        end = len(body)
        off = 4
        attrs: list[tuple[int, bytes]] = []
        while off < end:
            if end - off < 4:
                raise ParseError("truncated configuration attribute")
            atype, alen = _HH.unpack_from(body, off)
            vend = off + 4 + alen
            if vend > end:
                raise ParseError("configuration attribute exceeds the payload")
            atype &= 0x7FFF
            attrs.append((_M_CfgAttr.get(atype, atype), body[off + 4 : vend]))
            off = vend
        cfg_type = body[0]
        return cls(_M_CfgType.get(cfg_type, cfg_type), attrs)


@dataclass(slots=True)
class EapPayload:
    """RFC 7296 §3.16 EAP payload: one whole EAP message (RFC 3748 §4)."""

    data: bytes

    @property
    def code(self) -> int:
        return self.data[0]

    @property
    def identifier(self) -> int:
        return self.data[1]

    @property
    def eap_type(self) -> int | None:
        """The method Type (Request/Response only), None for Success/Failure."""
        return self.data[4] if len(self.data) > 4 else None

    def serialise_body(self) -> bytes:
        return self.data

    @classmethod
    def parse_body(cls, body: bytes) -> Self:
        _need(body, 4, "EAP payload")
        if _HH.unpack_from(body)[1] != len(body):
            raise ParseError("EAP Length differs from the payload length minus 4 (§3.16)")
        return cls(body)


# --------------------------------------------------------------------------- SK, SKF


@dataclass(slots=True)
class SkPayload:
    """RFC 7296 §3.14 Encrypted and Authenticated payload, still encrypted.

    ``first_payload`` is the type of the first inner payload (the SK header's
    Next Payload field); ``body`` is IV | ciphertext | ICV.
    """

    first_payload: int
    body: bytes

    def serialise_body(self) -> bytes:
        return self.body


@dataclass(slots=True)
class SkfPayload:
    """RFC 7383 §2.5 Encrypted and Authenticated Fragment payload, still encrypted."""

    fragment_number: int
    total_fragments: int
    first_payload: int
    body: bytes

    def serialise_body(self) -> bytes:
        return (
            _HH.pack(
                _u16(self.fragment_number, "fragment number"),
                _u16(self.total_fragments, "total fragments"),
            )
            + self.body
        )

    @classmethod
    def parse_fragment(cls, first_payload: int, body: bytes) -> Self:
        """Parse an SKF body; §2.6 validity checks on the fragment numbers."""
        _need(body, 4, "SKF payload")
        number, total = _HH.unpack_from(body)
        if number == 0 or total == 0 or number > total:
            raise ParseError(f"invalid fragment {number} of {total} (RFC 7383 §2.6)")
        return cls(number, total, _M_PayloadType.get(first_payload, first_payload), body[4:])


# --------------------------------------------------------------------------- unknown


@dataclass(slots=True)
class UnknownPayload:
    """A payload type this implementation does not understand (§2.5), kept verbatim.

    Also usable to send arbitrary bytes under any payload type (tests, probes).
    """

    type: int
    critical: bool
    body: bytes

    def serialise_body(self) -> bytes:
        return self.body


Payload = Union[  # noqa: UP007 - a runtime alias, kept readable
    SaPayload,
    KePayload,
    IdPayload,
    CertPayload,
    CertReqPayload,
    AuthPayload,
    NoncePayload,
    NotifyPayload,
    DeletePayload,
    VendorIdPayload,
    TsPayload,
    SkPayload,
    SkfPayload,
    CpPayload,
    EapPayload,
    UnknownPayload,
]

_PlainClass = (
    type[SaPayload]
    | type[KePayload]
    | type[IdPayload]
    | type[CertPayload]
    | type[CertReqPayload]
    | type[AuthPayload]
    | type[NoncePayload]
    | type[NotifyPayload]
    | type[DeletePayload]
    | type[VendorIdPayload]
    | type[TsPayload]
    | type[CpPayload]
    | type[EapPayload]
)

#: the payload types each plain class may be sent as (a table, not class attributes: a
#: class variable in a dataclass body is taken for a field when the core is compiled by
#: mypyc)
_PLAIN_TYPES: tuple[tuple[_PlainClass, tuple[int, ...]], ...] = (
    (SaPayload, (PayloadType.SA,)),
    (KePayload, (PayloadType.KE,)),
    (IdPayload, (PayloadType.IDi, PayloadType.IDr)),
    (CertPayload, (PayloadType.CERT,)),
    (CertReqPayload, (PayloadType.CERTREQ,)),
    (AuthPayload, (PayloadType.AUTH,)),
    (NoncePayload, (PayloadType.NONCE,)),
    (NotifyPayload, (PayloadType.NOTIFY,)),
    (DeletePayload, (PayloadType.DELETE,)),
    (VendorIdPayload, (PayloadType.VENDOR_ID,)),
    (TsPayload, (PayloadType.TSi, PayloadType.TSr)),
    (CpPayload, (PayloadType.CP,)),
    (EapPayload, (PayloadType.EAP,)),
)
_TYPES_OF: dict[type, tuple[int, ...]] = {
    **dict(_PLAIN_TYPES),
    SkPayload: (PayloadType.SK,),
    SkfPayload: (PayloadType.SKF,),
}
_PARSERS: dict[int, Callable[[bytes], Payload]] = {
    t: cls.parse_body for cls, types in _PLAIN_TYPES for t in types
}
_CLASS_OF: dict[int, type] = {t: cls for cls, types in _TYPES_OF.items() for t in types}
_ENCRYPTED = (PayloadType.SK, PayloadType.SKF)


#: (class, payload type) pairs that may be sent as they are (every type in range)
_SENDABLE: frozenset[tuple[type, int]] = frozenset(
    (cls, t) for cls, types in _TYPES_OF.items() for t in types if 0 < t <= 0xFF
)


def _unlisted_flags(ptype: int, payload: Payload) -> int:
    """The generic header flags of an entry not in :data:`_SENDABLE`: an
    :class:`UnknownPayload` of its own type (critical bit as it says); anything else
    is refused with :class:`ValueError`."""
    if not 0 < ptype <= 0xFF:
        raise ValueError(f"payload type {ptype} cannot be sent")
    if type(payload) is not UnknownPayload:
        raise ValueError(f"{type(payload).__name__} cannot be sent as payload type {ptype}")
    assert isinstance(payload, UnknownPayload)
    if payload.type != ptype:
        raise ValueError(f"UnknownPayload of type {payload.type} entered as {ptype}")
    return _CRITICAL if payload.critical else 0


def payload_class(ptype: int) -> type | None:
    """The class that carries payload type ``ptype``, None if not understood."""
    return _CLASS_OF.get(ptype)


def parse_payload(
    ptype: int, body: bytes, next_payload: int = 0, critical: bool = False
) -> Payload:
    """Parse one payload body of type ``ptype``.

    ``next_payload`` is only used by SK/SKF (the first inner payload type).
    Unknown types: :class:`UnsupportedCriticalPayload` when ``critical``, else
    an :class:`UnknownPayload`.
    """
    parser = _PARSERS.get(ptype)
    if parser is not None:
        return parser(body)
    if ptype == PayloadType.SK:
        return SkPayload(_M_PayloadType.get(next_payload, next_payload), body)
    if ptype == PayloadType.SKF:
        return SkfPayload.parse_fragment(next_payload, body)
    if critical:
        raise UnsupportedCriticalPayload(ptype)
    return UnknownPayload(ptype, False, body)


def parse_payloads(
    data: bytes,
    first: int,
    offset: int = 0,
    end: int | None = None,
    *,
    allow_encrypted: bool = True,
    max_payloads: int = MAX_PAYLOADS,
) -> list[tuple[int, Payload]]:
    """Parse the payload chain in ``data[offset:end]`` starting with type ``first``.

    RFC 7296 §3.2: each generic header names the type of the *next* payload;
    the chain must end (Next Payload 0) exactly at ``end``.  An SK/SKF payload
    ends the chain (its Next Payload is the first *inner* payload) and must
    reach ``end`` (§3.14: it is the last payload).  With ``allow_encrypted``
    False an SK/SKF payload is an error (inner chains).  At most
    ``max_payloads`` payloads are accepted.
    """
    if end is None:
        end = len(data)
    out: list[tuple[int, Payload]] = []
    append, unpack, parsers, names = out.append, _GENERIC.unpack_from, _PARSERS, _M_PayloadType
    ptype = first
    off = offset
    try:
        while ptype:
            if len(out) >= max_payloads:
                raise ParseError(f"more than {max_payloads} payloads")
            if end - off < 4:
                raise ParseError(f"truncated generic header of payload type {ptype}")
            nxt, flags, plen = unpack(data, off)
            if plen < 4:
                raise ParseError(f"payload length {plen} below the generic header size")
            pend = off + plen
            if pend > end:
                raise ParseError(f"payload type {ptype} length {plen} runs past the message end")
            body = data[off + 4 : pend]
            parser = parsers.get(ptype)  # the known plain payloads, parse_payload inlined
            if parser is not None:
                append((names.get(ptype, ptype), parser(body)))
            elif ptype in _ENCRYPTED:
                if not allow_encrypted:
                    raise ParseError("encrypted payload inside an encrypted payload")
                if pend != end:
                    raise ParseError("SK/SKF payload is not the last payload (§3.14)")
                append((names.get(ptype, ptype), parse_payload(ptype, body, nxt)))
                return out
            else:
                payload = parse_payload(ptype, body, nxt, bool(flags & _CRITICAL))
                append((names.get(ptype, ptype), payload))
            off = pend
            ptype = nxt
    except (struct.error, IndexError, ValueError, UnicodeDecodeError) as exc:  # pragma: no cover
        # Safety net only: every parser validates lengths before reading.
        raise ParseError(f"malformed payload: {exc}") from exc
    if off != end:
        raise ParseError(f"{end - off} octets after the last payload")
    return out


def serialise_payloads(payloads: Sequence[tuple[int, Payload]]) -> tuple[int, bytes]:
    """Serialise a chain: returns ``(type of the first payload, bytes)``.

    SK/SKF must be last; their Next Payload field is their ``first_payload``.
    Raises :class:`ValueError` for an entry whose type does not match its class.
    """
    n = len(payloads)
    if n == 0:
        return 0, b""
    parts: list[bytes] = []
    append, pack, sendable, last = parts.append, _GENERIC.pack, _SENDABLE, n - 1
    for i, (ptype, payload) in enumerate(payloads):
        cls = type(payload)
        flags = 0 if (cls, ptype) in sendable else _unlisted_flags(ptype, payload)
        if cls is SkPayload or cls is SkfPayload:
            assert isinstance(payload, SkPayload | SkfPayload)
            if i != last:
                raise ValueError("the SK/SKF payload must be the last payload")
            nxt = _u8(payload.first_payload, "next payload")
        else:
            nxt = payloads[i + 1][0] if i < last else 0  # checked as the next entry's type
        body = payload.serialise_body()
        length = 4 + len(body)
        if length > 0xFFFF:
            raise ValueError(f"payload length {length} does not fit in two octets")
        append(pack(nxt, flags, length))
        append(body)
    return payloads[0][0], b"".join(parts)
