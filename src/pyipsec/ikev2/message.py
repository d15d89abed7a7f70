"""IKEv2 messages: the IKE header (RFC 7296 §3.1), the payload chain (§3.2) and the
Encrypted payload SK (§3.14) and Encrypted Fragment payload SKF (RFC 7383 §2.5).

The cryptography itself is delegated to an :class:`SkProtector` (see
``pyipsec.crypto.encr``); this module decides *what* is authenticated:

* SK: the "aad" given to the protector is the IKE header followed by the SK
  generic payload header, both with their final lengths (RFC 5282 §5.1 for
  AEAD; a CBC+HMAC protector MACs aad | IV | ciphertext, §3.14);
* SKF: the IKE header, the SKF generic header and the Fragment Number / Total
  Fragments fields (RFC 7383 §2.5).

The protector adds and removes the §3.14 padding; this module hands it the
plaintext inner payload chain.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, Protocol, Self, overload

from .constants import (
    GENERIC_PAYLOAD_HEADER_LEN,
    IKE_HEADER_LEN,
    IKE_MAJOR_VERSION,
    IKE_MINOR_VERSION,
    ExchangeType,
    HeaderFlag,
    PayloadType,
)
from .errors import IntegrityError, InvalidMajorVersion, ParseError
from .payloads import (
    MAX_PAYLOADS,
    AuthPayload,
    CertPayload,
    CertReqPayload,
    CpPayload,
    DeletePayload,
    EapPayload,
    IdPayload,
    KePayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    SaPayload,
    SkfPayload,
    SkPayload,
    TsPayload,
    VendorIdPayload,
    parse_payloads,
    serialise_payloads,
)

__all__ = [
    "DecryptedFragment",
    "Message",
    "SkProtector",
    "decrypt_fragment",
    "decrypt_message",
    "encrypt_fragments",
    "encrypt_message",
    "reassemble_fragments",
]

_HEADER = struct.Struct("!8s8sBBBBII")  # §3.1
_GENERIC = struct.Struct("!BBH")  # §3.2
_SKF_NUMBERS = struct.Struct("!HH")  # RFC 7383 §2.5
_FLAG_MASK = int(HeaderFlag.INITIATOR | HeaderFlag.VERSION | HeaderFlag.RESPONSE)
# plain ints: an IntFlag operand makes every ``&`` a Python-level enum call
_RESPONSE = int(HeaderFlag.RESPONSE)
_INITIATOR = int(HeaderFlag.INITIATOR)
_SKF_HEADER_LEN = GENERIC_PAYLOAD_HEADER_LEN + _SKF_NUMBERS.size


class SkProtector(Protocol):
    """Encrypts/authenticates the content of an SK or SKF payload (§3.14).

    ``seal`` pads the plaintext (§3.14: padding + Pad Length octet) and returns
    IV | ciphertext | ICV, exactly ``sealed_length(len(plaintext))`` octets.
    ``open`` verifies and decrypts such a body and strips the padding; any
    failure raises :class:`~pyipsec.ikev2.errors.IntegrityError`.
    """

    @property
    def iv_size(self) -> int: ...

    @property
    def icv_size(self) -> int: ...

    def seal(self, aad: bytes, plaintext: bytes) -> bytes: ...

    def open(self, aad: bytes, body: bytes) -> bytes: ...

    def sealed_length(self, plain_len: int) -> int: ...


@dataclass(slots=True)
class Message:
    """An IKEv2 message: header fields (§3.1) and the payloads, in order.

    ``payloads`` holds ``(payload type, payload)``; the type is needed because
    some classes serve two types (IDi/IDr, TSi/TSr).  After :meth:`parse` of a
    protected message the last entry is the still-encrypted SK/SKF payload;
    :func:`decrypt_message` returns the inner payloads instead.

    ``flags`` keeps the I, V and R bits only (other bits are reserved: sent as
    zero, ignored on receipt); ``minor_version`` is preserved but never checked.
    """

    spi_i: bytes
    spi_r: bytes
    exchange: int
    flags: int
    message_id: int
    payloads: list[tuple[int, Payload]] = field(default_factory=list)
    minor_version: int = IKE_MINOR_VERSION

    # ------------------------------------------------------------------ codec

    @classmethod
    def parse(cls, data: bytes) -> Self:
        """Parse a datagram (without the non-ESP marker) into a :class:`Message`.

        Raises :class:`InvalidMajorVersion` when the major version is not 2,
        :class:`~pyipsec.ikev2.errors.UnsupportedCriticalPayload` for an unknown
        critical payload and :class:`ParseError` for any other malformation.
        """
        if not isinstance(data, bytes):
            data = bytes(data)
        if len(data) < IKE_HEADER_LEN:
            raise ParseError(f"IKE message of {len(data)} octets is shorter than the header")
        spi_i, spi_r, first, version, exchange, flags, message_id, length = _HEADER.unpack_from(
            data
        )
        if version >> 4 != IKE_MAJOR_VERSION:
            raise InvalidMajorVersion(f"IKE major version {version >> 4} is not supported")
        if length != len(data):
            raise ParseError(f"IKE header length {length} but datagram of {len(data)} octets")
        payloads = parse_payloads(data, first, IKE_HEADER_LEN)
        return cls(
            spi_i,
            spi_r,
            ExchangeType._value2member_map_.get(exchange, exchange),
            flags & _FLAG_MASK,
            message_id,
            payloads,
            version & 0x0F,
        )

    def header_bytes(self, next_payload: int, length: int) -> bytes:
        """The 28-octet IKE header with the given Next Payload and Length."""
        if len(self.spi_i) != 8 or len(self.spi_r) != 8:
            raise ValueError("IKE SPIs must be 8 octets")
        if not 0 <= self.minor_version <= 0x0F:
            raise ValueError(f"minor version {self.minor_version} out of range")
        return _HEADER.pack(
            self.spi_i,
            self.spi_r,
            next_payload,
            IKE_MAJOR_VERSION << 4 | self.minor_version,
            self.exchange,
            self.flags & 0xFF,
            self.message_id,
            length,
        )

    def serialise(self) -> bytes:
        """The message as it goes on the wire (payloads as they are, SK included)."""
        first, chain = serialise_payloads(self.payloads)
        return self.header_bytes(first, IKE_HEADER_LEN + len(chain)) + chain

    # ------------------------------------------------------------------ flags

    @property
    def is_response(self) -> bool:
        """§3.1 R flag: this message is a response."""
        return bool(self.flags & _RESPONSE)

    @property
    def is_initiator(self) -> bool:
        """§3.1 I flag: sent by the original initiator of the IKE SA."""
        return bool(self.flags & _INITIATOR)

    @property
    def encrypted(self) -> SkPayload | SkfPayload | None:
        """The (still encrypted) SK or SKF payload, when the message carries one."""
        if self.payloads:
            last = self.payloads[-1][1]
            if isinstance(last, SkPayload | SkfPayload):
                return last
        return None

    # ------------------------------------------------------------------ access

    def add(self, ptype: int, payload: Payload) -> None:
        """Append a payload (its class must match ``ptype``, checked on serialise)."""
        self.payloads.append((ptype, payload))

    @overload
    def get(self, ptype: Literal[PayloadType.SA]) -> SaPayload | None: ...
    @overload
    def get(self, ptype: Literal[PayloadType.KE]) -> KePayload | None: ...
    @overload
    def get(self, ptype: Literal[PayloadType.IDi, PayloadType.IDr]) -> IdPayload | None: ...
    @overload
    def get(self, ptype: Literal[PayloadType.CERT]) -> CertPayload | None: ...
    @overload
    def get(self, ptype: Literal[PayloadType.CERTREQ]) -> CertReqPayload | None: ...
    @overload
    def get(self, ptype: Literal[PayloadType.AUTH]) -> AuthPayload | None: ...
    @overload
    def get(self, ptype: Literal[PayloadType.NONCE]) -> NoncePayload | None: ...
    @overload
    def get(self, ptype: Literal[PayloadType.NOTIFY]) -> NotifyPayload | None: ...
    @overload
    def get(self, ptype: Literal[PayloadType.DELETE]) -> DeletePayload | None: ...
    @overload
    def get(self, ptype: Literal[PayloadType.VENDOR_ID]) -> VendorIdPayload | None: ...
    @overload
    def get(self, ptype: Literal[PayloadType.TSi, PayloadType.TSr]) -> TsPayload | None: ...
    @overload
    def get(self, ptype: Literal[PayloadType.CP]) -> CpPayload | None: ...
    @overload
    def get(self, ptype: Literal[PayloadType.EAP]) -> EapPayload | None: ...
    @overload
    def get(self, ptype: int) -> Payload | None: ...

    def get(self, ptype: int) -> Payload | None:
        """The first payload of type ``ptype``, or None."""
        for t, p in self.payloads:
            if t == ptype:
                return p
        return None

    @overload
    def get_all(self, ptype: Literal[PayloadType.CERT]) -> list[CertPayload]: ...
    @overload
    def get_all(self, ptype: Literal[PayloadType.CERTREQ]) -> list[CertReqPayload]: ...
    @overload
    def get_all(self, ptype: Literal[PayloadType.NOTIFY]) -> list[NotifyPayload]: ...
    @overload
    def get_all(self, ptype: Literal[PayloadType.DELETE]) -> list[DeletePayload]: ...
    @overload
    def get_all(self, ptype: Literal[PayloadType.VENDOR_ID]) -> list[VendorIdPayload]: ...
    @overload
    def get_all(self, ptype: Literal[PayloadType.CP]) -> list[CpPayload]: ...
    @overload
    def get_all(self, ptype: int) -> list[Payload]: ...

    def get_all(self, ptype: int) -> Sequence[Payload]:
        """Every payload of type ``ptype``, in message order."""
        return [p for t, p in self.payloads if t == ptype]

    def notifies(self) -> list[NotifyPayload]:
        """Every Notify payload, in message order."""
        return [p for _, p in self.payloads if isinstance(p, NotifyPayload)]

    def notify(self, ntype: int) -> NotifyPayload | None:
        """The first Notify payload of Notify Message Type ``ntype``, or None."""
        for _, p in self.payloads:
            if isinstance(p, NotifyPayload) and p.type == ntype:
                return p
        return None

    def error_notifies(self) -> list[NotifyPayload]:
        """The error notifications (§3.10.1: type < 16384)."""
        return [p for p in self.notifies() if p.is_error]


# ---------------------------------------------------------------------- SK (§3.14)


def _check_sealed(protector: SkProtector, body: bytes, expected: int) -> bytes:
    if len(body) != expected:
        raise RuntimeError(f"protector produced {len(body)} octets, announced {expected}")
    return body


def encrypt_message(msg: Message, protector: SkProtector) -> bytes:
    """Serialise ``msg`` with all its payloads inside an SK payload (§3.14).

    The SK header's Next Payload is the type of the first inner payload (0 for
    an empty message such as a liveness check).
    """
    first, inner = serialise_payloads(msg.payloads)
    body_len = protector.sealed_length(len(inner))
    sk_len = GENERIC_PAYLOAD_HEADER_LEN + body_len
    if sk_len > 0xFFFF:
        raise ValueError(f"SK payload of {sk_len} octets does not fit; fragment it")
    aad = msg.header_bytes(PayloadType.SK, IKE_HEADER_LEN + sk_len) + _GENERIC.pack(
        first, 0, sk_len
    )
    return aad + _check_sealed(protector, protector.seal(aad, inner), body_len)


def _open(protector: SkProtector, aad: bytes, body: bytes) -> bytes:
    if len(body) < protector.iv_size + protector.icv_size:
        raise IntegrityError("encrypted payload shorter than IV and ICV")
    return protector.open(aad, body)


def decrypt_message(data: bytes, protector: SkProtector, parsed: Message | None = None) -> Message:
    """Verify and decrypt a message protected by an SK payload (§3.14).

    Returns a :class:`Message` with the header of ``data`` whose payloads are
    the plaintext payloads preceding SK (normally none) followed by the inner
    payloads.  ``parsed`` is ``Message.parse(data)`` when the caller already has
    it.  Raises :class:`IntegrityError` when the ICV does not verify and
    :class:`ParseError` for malformed bytes (inside or outside).
    """
    if not isinstance(data, bytes):
        data = bytes(data)
    msg = Message.parse(data) if parsed is None else parsed
    sk = msg.encrypted
    if not isinstance(sk, SkPayload):
        raise ParseError("message has no SK payload")
    sk_off = len(data) - GENERIC_PAYLOAD_HEADER_LEN - len(sk.body)
    if sk_off < IKE_HEADER_LEN:
        raise ParseError("SK payload does not match the datagram")
    aad = data[:IKE_HEADER_LEN] + data[sk_off : sk_off + GENERIC_PAYLOAD_HEADER_LEN]
    plaintext = _open(protector, aad, sk.body)
    outer = msg.payloads[:-1]
    inner = parse_payloads(
        plaintext,
        sk.first_payload,
        allow_encrypted=False,
        max_payloads=MAX_PAYLOADS - len(outer),
    )
    return Message(
        msg.spi_i,
        msg.spi_r,
        msg.exchange,
        msg.flags,
        msg.message_id,
        outer + inner,
        msg.minor_version,
    )


# ---------------------------------------------------------------------- SKF (RFC 7383)


class DecryptedFragment(NamedTuple):
    """The verified content of one IKE Fragment message (RFC 7383 §2.6)."""

    fragment_number: int
    total_fragments: int
    first_payload: int
    plaintext: bytes


def encrypt_fragments(msg: Message, protector: SkProtector, max_fragment_len: int) -> list[bytes]:
    """Fragment ``msg`` into IKE Fragment messages (RFC 7383 §2.5).

    The serialised inner chain is split regardless of payload boundaries into
    chunks such that each resulting IKE message (header + SKF payload) is at
    most ``max_fragment_len`` octets (the UDP payload size, without the non-ESP
    marker).  Every fragment keeps the header of ``msg`` (same Message ID);
    only fragment 1 carries the first inner payload type.
    """
    first, inner = serialise_payloads(msg.payloads)
    overhead = IKE_HEADER_LEN + _SKF_HEADER_LEN
    room = max_fragment_len - overhead
    chunk = room - protector.iv_size - protector.icv_size
    while chunk > 0 and protector.sealed_length(chunk) > room:
        chunk -= 1
    if chunk <= 0:
        raise ValueError(f"max_fragment_len {max_fragment_len} leaves no room for content")
    pieces = [inner[i : i + chunk] for i in range(0, len(inner), chunk)] or [b""]
    total = len(pieces)
    if total > 0xFFFF:
        raise ValueError(f"{total} fragments exceed the 16-bit Total Fragments field")
    out: list[bytes] = []
    for number, piece in enumerate(pieces, 1):
        body_len = protector.sealed_length(len(piece))
        skf_len = _SKF_HEADER_LEN + body_len
        aad = (
            msg.header_bytes(PayloadType.SKF, IKE_HEADER_LEN + skf_len)
            + _GENERIC.pack(first if number == 1 else 0, 0, skf_len)
            + _SKF_NUMBERS.pack(number, total)
        )
        out.append(aad + _check_sealed(protector, protector.seal(aad, piece), body_len))
    return out


def decrypt_fragment(
    data: bytes, protector: SkProtector, parsed: Message | None = None
) -> DecryptedFragment:
    """Verify and decrypt one IKE Fragment message (RFC 7383 §2.6).

    The Fragment Number / Total Fragments checks of §2.6 are done while
    parsing (:class:`ParseError`); the ICV covers them (:class:`IntegrityError`).
    Reassembly bookkeeping (replays, newer sets) is the caller's job; finish
    with :func:`reassemble_fragments`.
    """
    if not isinstance(data, bytes):
        data = bytes(data)
    msg = Message.parse(data) if parsed is None else parsed
    skf = msg.encrypted
    if not isinstance(skf, SkfPayload):
        raise ParseError("message has no SKF payload")
    skf_off = len(data) - _SKF_HEADER_LEN - len(skf.body)
    if skf_off < IKE_HEADER_LEN:
        raise ParseError("SKF payload does not match the datagram")
    aad = data[:IKE_HEADER_LEN] + data[skf_off : skf_off + _SKF_HEADER_LEN]
    plaintext = _open(protector, aad, skf.body)
    return DecryptedFragment(skf.fragment_number, skf.total_fragments, skf.first_payload, plaintext)


def reassemble_fragments(header: Message, fragments: Iterable[DecryptedFragment]) -> Message:
    """Merge a complete set of fragments into the original message (RFC 7383 §2.6).

    ``header`` is a parsed fragment of the set (normally fragment 1: its
    plaintext payloads before SKF, if any, are kept).  The set must hold each
    fragment number 1..Total Fragments exactly once with one common total.
    """
    frags = sorted(fragments, key=lambda f: f.fragment_number)
    if not frags:
        raise ParseError("no fragments to reassemble")
    total = frags[0].total_fragments
    if len(frags) != total or any(
        f.fragment_number != i or f.total_fragments != total for i, f in enumerate(frags, 1)
    ):
        raise ParseError("incomplete or inconsistent fragment set")
    outer = header.payloads[:-1] if header.encrypted is not None else list(header.payloads)
    inner = parse_payloads(
        b"".join(f.plaintext for f in frags),
        frags[0].first_payload,
        allow_encrypted=False,
        max_payloads=MAX_PAYLOADS - len(outer),
    )
    return Message(
        header.spi_i,
        header.spi_r,
        header.exchange,
        header.flags,
        header.message_id,
        outer + inner,
        header.minor_version,
    )
