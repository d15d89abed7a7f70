"""Mutation fuzzing of the codec: whatever the bytes, only ProtocolError escapes
``Message.parse``, ``decrypt_message``, ``decrypt_fragment``, the reassembly and
every payload parser; whatever is accepted re-serialises to an equal message."""

from __future__ import annotations

import random
import struct
from collections import Counter
from collections.abc import Callable

from pyipsec.ikev2.constants import ExchangeType, HeaderFlag, PayloadType
from pyipsec.ikev2.errors import ProtocolError
from pyipsec.ikev2.message import (
    Message,
    decrypt_fragment,
    decrypt_message,
    encrypt_fragments,
    encrypt_message,
    reassemble_fragments,
)
from pyipsec.ikev2.payloads import (
    CertPayload,
    CertReqPayload,
    DeletePayload,
    EapPayload,
    IdPayload,
    NotifyPayload,
    Payload,
    SkPayload,
    TrafficSelector,
    TsPayload,
    UnknownPayload,
    VendorIdPayload,
    parse_payload,
    serialise_payloads,
)

from .test_message import (
    IKE_SA_INIT_REQUEST,
    SPI_I,
    SPI_R,
    GcmTestProtector,
    _seal_raw,
    ike_auth_request,
)

ITERATIONS = 3000
_TYPES = [0, *range(33, 49), 49, 53, 54, 1, 32, 99, 200, 255]


def _everything() -> Message:
    msg = ike_auth_request(n_certreq=2)
    msg.add(PayloadType.CERT, CertPayload(4, b"\x30\x82" + b"c" * 40))
    msg.add(PayloadType.CERTREQ, CertReqPayload(4, b"h" * 20))
    msg.add(PayloadType.EAP, EapPayload(bytes.fromhex("0201000a01") + b"user\x00"))
    msg.add(PayloadType.DELETE, DeletePayload.delete_child_sa([1, 2, 3]))
    msg.add(PayloadType.DELETE, DeletePayload.delete_ike_sa())
    msg.add(PayloadType.TSi, TsPayload([TrafficSelector.from_network("2001:db8::/32", 17, 53)]))
    msg.add(PayloadType.NOTIFY, NotifyPayload(3, b"\x00\x00\x00\x01", 16393, b""))
    msg.add(PayloadType.GSPM, UnknownPayload(PayloadType.GSPM, False, b"opaque"))
    msg.add(PayloadType.VENDOR_ID, VendorIdPayload(b"v" * 16))
    return msg


def _chain_offsets(wire: bytes) -> list[int]:
    """Offsets of the generic payload headers of a valid message."""
    offsets = []
    off, ptype = 28, wire[16]
    while ptype and off + 4 <= len(wire):
        offsets.append(off)
        if ptype in (PayloadType.SK, PayloadType.SKF):
            break
        ptype = wire[off]
        off += struct.unpack_from("!H", wire, off + 2)[0]
    return offsets


Mutator = Callable[[random.Random, bytearray, list[int]], None]


def _bitflip(rng: random.Random, b: bytearray, _: list[int]) -> None:
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)


def _byte_set(rng: random.Random, b: bytearray, _: list[int]) -> None:
    for _ in range(rng.randint(1, 4)):
        b[rng.randrange(len(b))] = rng.choice([0, 1, 2, 3, 0x7F, 0x80, 0xFF, rng.randrange(256)])


def _u16_set(rng: random.Random, b: bytearray, _: list[int]) -> None:
    i = rng.randrange(len(b) - 1)
    value = rng.choice([0, 1, 4, 7, 8, 0xFFFF, rng.randrange(0x10000)])
    b[i : i + 2] = value.to_bytes(2, "big")


def _truncate(rng: random.Random, b: bytearray, _: list[int]) -> None:
    del b[rng.randrange(len(b)) :]


def _append(rng: random.Random, b: bytearray, _: list[int]) -> None:
    b.extend(rng.randbytes(rng.randint(1, 64)))


def _insert(rng: random.Random, b: bytearray, _: list[int]) -> None:
    i = rng.randrange(len(b) + 1)
    b[i:i] = rng.randbytes(rng.randint(1, 16))


def _delete(rng: random.Random, b: bytearray, _: list[int]) -> None:
    i = rng.randrange(len(b))
    del b[i : i + rng.randint(1, 16)]


def _duplicate(rng: random.Random, b: bytearray, _: list[int]) -> None:
    i = rng.randrange(len(b))
    piece = b[i : i + rng.randint(1, 64)]
    j = rng.randrange(len(b) + 1)
    b[j:j] = piece


def _payload_length_lie(rng: random.Random, b: bytearray, offsets: list[int]) -> None:
    if not offsets:
        return
    off = rng.choice(offsets) + 2
    if off + 2 > len(b):
        return
    old = int.from_bytes(b[off : off + 2], "big")
    new = rng.choice([0, 3, 4, old - 1, old + 1, old - 4, old + 4, 0xFFFF, rng.randrange(0x10000)])
    b[off : off + 2] = (new & 0xFFFF).to_bytes(2, "big")


def _next_payload(rng: random.Random, b: bytearray, offsets: list[int]) -> None:
    off = rng.choice([16, *offsets])
    if off < len(b):
        b[off] = rng.choice(_TYPES)


def _critical(rng: random.Random, b: bytearray, offsets: list[int]) -> None:
    if offsets:
        off = rng.choice(offsets) + 1
        if off < len(b):
            b[off] |= 0x80


def _header_length(rng: random.Random, b: bytearray, _: list[int]) -> None:
    if len(b) >= 28:
        b[24:28] = rng.choice([0, len(b) - 1, len(b) + 1, 0xFFFFFFFF]).to_bytes(4, "big")


MUTATORS: list[Mutator] = [
    _bitflip,
    _byte_set,
    _u16_set,
    _truncate,
    _append,
    _insert,
    _delete,
    _duplicate,
    _payload_length_lie,
    _payload_length_lie,
    _next_payload,
    _next_payload,
    _critical,
    _header_length,
]


def mutate(rng: random.Random, wire: bytes, offsets: list[int], fix_length: bool = True) -> bytes:
    b = bytearray(wire)
    for _ in range(rng.randint(1, 3)):
        if not b:
            break
        rng.choice(MUTATORS)(rng, b, offsets)
    if fix_length and len(b) >= 28 and rng.random() < 0.7:
        # keep the header honest most of the time so the chain parser gets exercised
        b[24:28] = len(b).to_bytes(4, "big")
    return bytes(b)


def _check_rejection(exc: ProtocolError, reasons: Counter[str]) -> None:
    # the parsers validate by themselves: the last-resort conversion of internal
    # exceptions (which sets __cause__) must never be what rejected the input
    assert exc.__cause__ is None, f"internal error converted: {exc.__cause__!r}"
    reasons[type(exc).__name__ + ":" + str(exc).split(" ")[0]] += 1


def _check_accepted(msg: Message) -> None:
    wire = msg.serialise()
    assert Message.parse(wire) == msg
    for _, p in msg.payloads:
        if isinstance(p, IdPayload):
            assert IdPayload.from_string(p.to_string()) == p
        elif isinstance(p, TsPayload):
            for ts in p.selectors:
                str(ts)
        elif isinstance(p, EapPayload):
            assert p.code == p.data[0] and p.identifier == p.data[1]


def test_fuzz_message_parse() -> None:
    rng = random.Random(0x1CE2)
    corpus = [
        IKE_SA_INIT_REQUEST.serialise(),
        ike_auth_request().serialise(),
        _everything().serialise(),
        encrypt_message(ike_auth_request(), GcmTestProtector()),
        encrypt_fragments(ike_auth_request(big_cert=400), GcmTestProtector(), 300)[1],
    ]
    offsets = [_chain_offsets(w) for w in corpus]
    reasons: Counter[str] = Counter()
    accepted = 0
    for _ in range(ITERATIONS):
        k = rng.randrange(len(corpus))
        data = mutate(rng, corpus[k], offsets[k])
        try:
            msg = Message.parse(data)
        except ProtocolError as exc:
            _check_rejection(exc, reasons)
        else:
            accepted += 1
            _check_accepted(msg)
    # the mutations reach many distinct checks, and some mutants are still valid
    assert len(reasons) >= 15, reasons
    assert 0 < accepted < ITERATIONS


def test_fuzz_decrypt_outer() -> None:
    rng = random.Random(0x5EC)
    p = GcmTestProtector()
    wire = encrypt_message(_everything(), p)
    frag = encrypt_fragments(_everything(), p, 400)[0]
    reasons: Counter[str] = Counter()
    for i in range(ITERATIONS // 3):
        source = wire if i % 2 else frag
        data = mutate(rng, source, _chain_offsets(source))
        try:
            if i % 2:
                decrypt_message(data, p)
            else:
                decrypt_fragment(data, p)
        except ProtocolError as exc:
            _check_rejection(exc, reasons)
    assert reasons["IntegrityError:ICV"] > 0


def test_fuzz_decrypt_inner_chain() -> None:
    """Mutate the *plaintext* inner chain, then protect it properly: the inner parser
    sees the garbage (authenticated garbage from a broken or hostile peer)."""
    rng = random.Random(0x1A2B)
    p = GcmTestProtector()
    sources = [
        serialise_payloads(m.payloads)
        for m in (ike_auth_request(), _everything(), IKE_SA_INIT_REQUEST)
    ]
    reasons: Counter[str] = Counter()
    accepted = 0
    for _ in range(ITERATIONS):
        first, inner = rng.choice(sources)
        # a fake header makes the chain offsets line up with the mutators
        fake = bytes(28) + inner
        offsets = [o for o in _chain_offsets(bytes(16) + bytes([first]) + fake[17:])]
        mutated = bytearray(mutate(rng, fake, offsets, fix_length=False)[28:])
        if rng.random() < 0.2:
            first = rng.choice(_TYPES)
        data = _seal_raw(first, bytes(mutated), p)
        try:
            msg = decrypt_message(data, p)
        except ProtocolError as exc:
            _check_rejection(exc, reasons)
        else:
            accepted += 1
            assert decrypt_message(encrypt_message(msg, p), p) == msg
    assert len(reasons) >= 15, reasons
    assert accepted > 0


def test_fuzz_reassembly() -> None:
    rng = random.Random(77)
    p = GcmTestProtector()
    frags = encrypt_fragments(_everything(), p, 200)
    header = Message.parse(frags[0])
    pieces = [decrypt_fragment(f, p) for f in frags]
    reasons: Counter[str] = Counter()
    for _ in range(ITERATIONS // 3):
        chosen = [d for d in pieces if rng.random() < 0.97]
        if chosen and rng.random() < 0.8:
            i = rng.randrange(len(chosen))
            text = bytearray(chosen[i].plaintext)
            if text:
                rng.choice(MUTATORS[:8])(rng, text, [])
            chosen[i] = chosen[i]._replace(plaintext=bytes(text))
        if chosen and rng.random() < 0.1:
            chosen[0] = chosen[0]._replace(fragment_number=rng.randrange(0x10000))
        try:
            reassemble_fragments(header, chosen)
        except ProtocolError as exc:
            _check_rejection(exc, reasons)
    assert reasons


def test_fuzz_payload_bodies() -> None:
    """Every payload parser, fed random and mutated bodies."""
    rng = random.Random(2024)
    valid: dict[int, list[bytes]] = {}
    for msg in (_everything(), IKE_SA_INIT_REQUEST):
        for ptype, payload in msg.payloads:
            valid.setdefault(ptype, []).append(payload.serialise_body())
    valid[PayloadType.SKF] = [b"\x00\x01\x00\x02" + b"x" * 30]
    valid[PayloadType.SK] = [b"y" * 30]
    types = sorted(valid)
    reasons: Counter[str] = Counter()
    for i in range(ITERATIONS):
        ptype = rng.choice(types)
        if i % 4 == 0:
            body = rng.randbytes(rng.randrange(64))
        else:
            b = bytearray(rng.choice(valid[ptype]))
            if b:
                rng.choice(MUTATORS[:8])(rng, b, [])
            body = bytes(b)
        try:
            payload = parse_payload(ptype, body, rng.randrange(256), rng.random() < 0.5)
        except ProtocolError as exc:
            _check_rejection(exc, reasons)
        else:
            entries: list[tuple[int, Payload]] = [(ptype, payload)]
            _, raw = serialise_payloads(entries)
            assert parse_payload(ptype, raw[4:], raw[0]) == payload
    assert len(reasons) >= 20, reasons


def test_fuzz_completely_random_datagrams() -> None:
    rng = random.Random(99)
    for _ in range(ITERATIONS):
        body = rng.randbytes(rng.randrange(200))
        header = struct.pack(
            "!8s8sBBBBII",
            SPI_I,
            SPI_R,
            rng.choice(_TYPES),
            0x20,
            ExchangeType.IKE_AUTH,
            HeaderFlag.INITIATOR,
            1,
            28 + len(body),
        )
        try:
            msg = Message.parse(header + body)
        except ProtocolError as exc:
            assert exc.__cause__ is None
        else:
            _check_accepted(msg)
    # an SK payload of random content never decrypts
    msg = Message(SPI_I, SPI_R, ExchangeType.IKE_AUTH, 0, 1, [(46, SkPayload(35, b"z" * 40))])
    try:
        decrypt_message(msg.serialise(), GcmTestProtector())
    except ProtocolError as exc:
        assert type(exc).__name__ == "IntegrityError"
    else:  # pragma: no cover
        raise AssertionError("random SK body decrypted")
