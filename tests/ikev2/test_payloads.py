"""Payload codec tests: known answers, hypothesis round trips and every error path
(RFC 7296 §3, RFC 7383 §2.5)."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyipsec import build_info
from pyipsec.ikev2.constants import (
    AuthMethod,
    CfgAttr,
    CfgType,
    DhId,
    EncrId,
    IdType,
    IntegId,
    IpProto,
    NotifyType,
    PayloadType,
    PrfId,
    ProtocolId,
    TransformType,
    TsType,
)
from pyipsec.ikev2.errors import ParseError, UnsupportedCriticalPayload
from pyipsec.ikev2.payloads import (
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
    Proposal,
    SaPayload,
    SkfPayload,
    SkPayload,
    TrafficSelector,
    Transform,
    TsPayload,
    UnknownPayload,
    VendorIdPayload,
    parse_payload,
    parse_payloads,
    payload_class,
    serialise_payloads,
)

# --------------------------------------------------------------------------- strategies

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)

_tv_attr = st.tuples(st.integers(0, 0x7FFF).filter(lambda t: t != 14), u16)
_tlv_attr = st.tuples(st.integers(0, 0x7FFF), st.binary(max_size=12))
transforms = st.builds(
    Transform,
    type=u8,
    id=u16,
    key_length=st.none() | u16,
    attributes=st.lists(_tv_attr | _tlv_attr, max_size=3).map(tuple),
)
proposals = st.builds(
    Proposal,
    num=u8,
    protocol=u8,
    spi=st.binary(max_size=8),
    transforms=st.lists(transforms, max_size=5),
)
sa_payloads = st.builds(SaPayload, st.lists(proposals, min_size=1, max_size=3))
ke_payloads = st.builds(KePayload, u16, st.binary(max_size=300))

_KNOWN_ID = {1, 2, 3, 5, 9, 10, 11, 13}
id_payloads = st.one_of(
    st.builds(IdPayload, st.just(IdType.ID_IPV4_ADDR), st.binary(min_size=4, max_size=4)),
    st.builds(IdPayload, st.just(IdType.ID_IPV6_ADDR), st.binary(min_size=16, max_size=16)),
    st.builds(
        IdPayload,
        st.sampled_from(
            [
                IdType.ID_FQDN,
                IdType.ID_RFC822_ADDR,
                IdType.ID_KEY_ID,
                IdType.ID_DER_ASN1_DN,
                IdType.ID_DER_ASN1_GN,
            ]
        ),
        st.binary(min_size=1, max_size=64),
    ),
    st.builds(IdPayload, st.just(IdType.ID_NULL), st.just(b"")),
    st.builds(IdPayload, u8.filter(lambda t: t not in _KNOWN_ID), st.binary(max_size=32)),
)
cert_payloads = st.builds(CertPayload, u8, st.binary(max_size=200))
certreq_payloads = st.builds(CertReqPayload, u8, st.binary(max_size=100))
auth_payloads = st.builds(AuthPayload, u8, st.binary(max_size=100))
nonce_payloads = st.builds(NoncePayload, st.binary(min_size=16, max_size=256))
notify_payloads = st.builds(NotifyPayload, u8, st.binary(max_size=16), u16, st.binary(max_size=64))
delete_payloads = st.one_of(
    st.integers(1, 16).flatmap(
        lambda n: st.builds(
            DeletePayload, u8, st.just(n), st.lists(st.binary(min_size=n, max_size=n), max_size=6)
        )
    ),
    st.builds(DeletePayload, u8, st.just(0), st.integers(0, 5).map(lambda k: [b""] * k)),
)
vendor_payloads = st.builds(VendorIdPayload, st.binary(max_size=64))
_ts4 = st.builds(
    TrafficSelector,
    st.just(TsType.TS_IPV4_ADDR_RANGE),
    u8,
    u16,
    u16,
    st.ip_addresses(v=4),
    st.ip_addresses(v=4),
)
_ts6 = st.builds(
    TrafficSelector,
    st.just(TsType.TS_IPV6_ADDR_RANGE),
    u8,
    u16,
    u16,
    st.ip_addresses(v=6),
    st.ip_addresses(v=6),
)
ts_payloads = st.builds(TsPayload, st.lists(_ts4 | _ts6, min_size=1, max_size=6))
cp_payloads = st.builds(
    CpPayload,
    u8,
    st.lists(st.tuples(st.integers(0, 0x7FFF), st.binary(max_size=20)), max_size=6),
)
eap_payloads = st.tuples(st.integers(1, 4), u8, st.binary(max_size=60)).map(
    lambda t: EapPayload(bytes([t[0], t[1]]) + struct.pack("!H", len(t[2]) + 4) + t[2])
)
sk_payloads = st.builds(SkPayload, u8, st.binary(max_size=128))
skf_payloads = st.integers(1, 0xFFFF).flatmap(
    lambda total: st.builds(
        SkfPayload, st.integers(1, total), st.just(total), u8, st.binary(max_size=128)
    )
)
_KNOWN_TYPES = set(range(33, 49)) | {53}
unknown_types = st.integers(1, 255).filter(lambda t: t not in _KNOWN_TYPES)
unknown_payloads = unknown_types.flatmap(
    lambda t: st.builds(UnknownPayload, st.just(t), st.just(False), st.binary(max_size=64))
)

#: payload type -> strategy of valid payloads of that type
PAYLOAD_STRATEGIES: dict[int, st.SearchStrategy[Payload]] = {
    PayloadType.SA: sa_payloads,
    PayloadType.KE: ke_payloads,
    PayloadType.IDi: id_payloads,
    PayloadType.IDr: id_payloads,
    PayloadType.CERT: cert_payloads,
    PayloadType.CERTREQ: certreq_payloads,
    PayloadType.AUTH: auth_payloads,
    PayloadType.NONCE: nonce_payloads,
    PayloadType.NOTIFY: notify_payloads,
    PayloadType.DELETE: delete_payloads,
    PayloadType.VENDOR_ID: vendor_payloads,
    PayloadType.TSi: ts_payloads,
    PayloadType.TSr: ts_payloads,
    PayloadType.SK: sk_payloads,
    PayloadType.CP: cp_payloads,
    PayloadType.EAP: eap_payloads,
    PayloadType.SKF: skf_payloads,
}
PLAIN_TYPES = [t for t in PAYLOAD_STRATEGIES if t not in (PayloadType.SK, PayloadType.SKF)]

plain_entries = st.one_of(
    *[st.tuples(st.just(t), PAYLOAD_STRATEGIES[t]) for t in PLAIN_TYPES],
    unknown_payloads.map(lambda p: (p.type, p)),
)
encrypted_entries = st.one_of(
    sk_payloads.map(lambda p: (PayloadType.SK, p)),
    skf_payloads.map(lambda p: (PayloadType.SKF, p)),
)


@st.composite
def payload_chains(draw: st.DrawFn, max_size: int = 8) -> list[tuple[int, Payload]]:
    """A valid chain: plaintext payloads, optionally ending with SK or SKF."""
    chain: list[tuple[int, Payload]] = draw(st.lists(plain_entries, max_size=max_size))
    if draw(st.booleans()):
        chain.append(draw(encrypted_entries))
    return chain


def chain_bytes(entries: list[tuple[int, Payload]]) -> tuple[int, bytes]:
    return serialise_payloads(entries)


def body_of(ptype: int, body: bytes) -> Payload:
    return parse_payload(ptype, body)


def assert_parse_error(ptype: int, body: bytes, notify: int = NotifyType.INVALID_SYNTAX) -> None:
    with pytest.raises(ParseError) as info:
        parse_payload(ptype, body)
    assert info.value.notify == notify


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("ptype", list(PAYLOAD_STRATEGIES), ids=lambda t: PayloadType(t).name)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_every_payload_round_trips(ptype: int, data: st.DataObject) -> None:
    payload = data.draw(PAYLOAD_STRATEGIES[ptype])
    first, raw = serialise_payloads([(ptype, payload)])
    assert first == ptype
    parsed = parse_payloads(raw, first)
    assert parsed == [(ptype, payload)]
    assert serialise_payloads(parsed) == (first, raw)
    # the generic header is correct: no next payload (or the inner one), exact length
    nxt, flags, length = struct.unpack_from("!BBH", raw)
    assert length == len(raw)
    assert flags == 0
    expected_next = getattr(payload, "first_payload", 0)
    assert nxt == expected_next


@settings(max_examples=200, deadline=None)
@given(unknown_payloads)
def test_unknown_non_critical_payload_round_trips(payload: UnknownPayload) -> None:
    first, raw = serialise_payloads([(payload.type, payload)])
    parsed = parse_payloads(raw, first)
    assert parsed == [(payload.type, payload)]
    assert serialise_payloads(parsed)[1] == raw


@settings(max_examples=200, deadline=None)
@given(payload_chains())
def test_chains_round_trip(chain: list[tuple[int, Payload]]) -> None:
    first, raw = serialise_payloads(chain)
    parsed = parse_payloads(raw, first)
    assert parsed == chain
    assert serialise_payloads(parsed) == (first, raw)


@settings(max_examples=200, deadline=None)
@given(id_payloads)
def test_id_to_string_maps_back(payload: IdPayload) -> None:
    text = payload.to_string()
    assert IdPayload.from_string(text) == payload


def test_unknown_enum_values_stay_plain_ints() -> None:
    t = Transform(1, 0x7777, None, ((0x1234, 7),))
    n = NotifyPayload(0x77, b"", 0x7FFF, b"x")
    raw = serialise_payloads([(PayloadType.SA, SaPayload([Proposal(1, 0x55, b"", [t])]))])
    ((_, sa),) = parse_payloads(raw[1], raw[0])
    assert isinstance(sa, SaPayload)
    parsed_t = sa.proposals[0].transforms[0]
    assert type(parsed_t.id) is int and parsed_t.id == 0x7777
    assert type(sa.proposals[0].protocol) is int
    assert parsed_t.attributes == ((0x1234, 7),)
    again = NotifyPayload.parse_body(n.serialise_body())
    assert type(again.type) is int and again == n
    # known ones come back as enum members
    known = NotifyPayload.parse_body(
        NotifyPayload.status(NotifyType.COOKIE, b"c" * 8).serialise_body()
    )
    assert known.type == NotifyType.COOKIE
    if not build_info.core_compiled():  # a compiled dataclass stores an int field as an int
        assert known.type is NotifyType.COOKIE


# --------------------------------------------------------------------------- known answers


def test_sa_known_answer() -> None:
    wire = bytes.fromhex(
        "0000002c01010004"  # last proposal, len 44, #1, IKE, SPI size 0, 4 transforms
        "0300000c0100000c800e0080"  # ENCR AES-CBC, key length 128
        "0300000802000005"  # PRF HMAC-SHA2-256
        "030000080300000c"  # INTEG HMAC-SHA2-256-128
        "000000080400001f"  # KE Curve25519 (last transform)
    )
    sa = SaPayload.parse_body(wire)
    assert sa == SaPayload(
        [
            Proposal(
                1,
                ProtocolId.IKE,
                b"",
                [
                    Transform(TransformType.ENCR, EncrId.AES_CBC, 128),
                    Transform(TransformType.PRF, PrfId.HMAC_SHA2_256),
                    Transform(TransformType.INTEG, IntegId.HMAC_SHA2_256_128),
                    Transform(TransformType.DH, DhId.CURVE25519),
                ],
            )
        ]
    )
    assert sa.proposals[0].transforms_of(TransformType.PRF) == [Transform(2, 5)]
    assert sa.serialise_body() == wire


def test_two_esp_proposals_known_answer() -> None:
    wire = bytes.fromhex(
        "0200002001030402c0ffee01"  # more proposals, len 32, #1 ESP, SPI c0ffee01, 2 transforms
        "0300000c01000014800e0100"  # AES-GCM-16 256
        "0000000805000000"  # no ESN
        "0000001802030401c0ffee01"  # last, len 24, #2 ESP, SPI c0ffee01, 1 transform
        "0000000c0100001c"  # ChaCha20-Poly1305 with a TLV attribute (type 0x1234, 0 octets)
        "12340000"
    )
    sa = SaPayload.parse_body(wire)
    assert [p.num for p in sa.proposals] == [1, 2]
    assert sa.proposals[0].spi == bytes.fromhex("c0ffee01")
    assert sa.proposals[0].transforms[0].key_length == 256
    assert sa.proposals[1].transforms == [
        Transform(TransformType.ENCR, EncrId.CHACHA20_POLY1305, None, ((0x1234, b""),))
    ]
    assert sa.serialise_body() == wire


def test_transform_key_length_as_tlv_is_preserved_as_attribute() -> None:
    wire = bytes.fromhex("0000000e01000014000e00020100")
    sa_wire = bytes.fromhex("0000001601010001") + wire
    sa = SaPayload.parse_body(sa_wire)
    t = sa.proposals[0].transforms[0]
    assert t.key_length is None and t.attributes == ((14, b"\x01\x00"),)
    assert sa.serialise_body() == sa_wire


def test_parsed_transforms_are_shared_immutable_and_reencoded_once() -> None:
    """Two peers sending the same transforms get the same (frozen) Transform objects;
    the encoding of a list of them is computed once and reused; another SPI or
    proposal number does not matter, another count is still refused."""
    from dataclasses import FrozenInstanceError

    from pyipsec.ikev2 import payloads

    def esp(spi: bytes, num: int = 1) -> bytes:
        return bytes.fromhex("00000020") + bytes((num, 3, 4, 2)) + spi + bytes.fromhex(
            "0300000c01000014800e0100" "0000000805000000"
        )

    a, b = SaPayload.parse_body(esp(b"AAAA")), SaPayload.parse_body(esp(b"BBBB", num=7))
    assert a.proposals[0].spi == b"AAAA" and b.proposals[0].spi == b"BBBB"
    assert b.proposals[0].num == 7
    assert all(x is y for x, y in zip(a.proposals[0].transforms, b.proposals[0].transforms,
                                      strict=True))
    assert a.proposals[0].transforms is not b.proposals[0].transforms  # own lists
    with pytest.raises(FrozenInstanceError):
        a.proposals[0].transforms[0].key_length = 128  # type: ignore[misc]
    payloads._TRANSFORMS_WIRE.clear()
    assert a.serialise_body() == esp(b"AAAA")
    assert len(payloads._TRANSFORMS_WIRE) == 1
    assert b.serialise_body() == esp(b"BBBB", num=7)  # the same transforms: one entry
    assert len(payloads._TRANSFORMS_WIRE) == 1
    # equal values in new objects: a second entry, the same octets
    fresh = Proposal(1, ProtocolId.ESP, b"AAAA", [Transform(t.type, t.id, t.key_length,
                                                            t.attributes)
                                                  for t in a.proposals[0].transforms])
    assert SaPayload([fresh]).serialise_body() == esp(b"AAAA")
    assert len(payloads._TRANSFORMS_WIRE) == 2
    wrong_count = bytearray(esp(b"AAAA"))
    wrong_count[7] = 3
    with pytest.raises(ParseError):
        SaPayload.parse_body(bytes(wrong_count))


def test_transform_caches_stay_bounded() -> None:
    from pyipsec.ikev2 import payloads

    for n in range(payloads._CODEC_CACHE_MAX + 10):  # offers a peer may invent
        wire = SaPayload([Proposal(1, 1, b"", [Transform(1, n)])]).serialise_body()
        assert SaPayload.parse_body(wire).proposals[0].transforms == [Transform(1, n)]
    assert len(payloads._PARSED_TRANSFORMS) <= payloads._CODEC_CACHE_MAX
    assert len(payloads._TRANSFORMS_WIRE) <= payloads._CODEC_CACHE_MAX


def test_notify_known_answers() -> None:
    natd = bytes.fromhex("00004004") + bytes(range(20))
    n = NotifyPayload.parse_body(natd)
    assert n == NotifyPayload(0, b"", NotifyType.NAT_DETECTION_SOURCE_IP, bytes(range(20)))
    rekey = bytes.fromhex("03044009deadbeef")
    r = NotifyPayload.parse_body(rekey)
    assert (r.protocol, r.spi, r.type, r.data) == (ProtocolId.ESP, b"\xde\xad\xbe\xef", 16393, b"")
    assert r.serialise_body() == rekey
    assert NotifyPayload.error(NotifyType.INVALID_KE_PAYLOAD, b"\x00\x1f").serialise_body() == (
        bytes.fromhex("00000011001f")
    )


def test_delete_known_answers() -> None:
    assert DeletePayload.delete_ike_sa().serialise_body() == bytes.fromhex("01000000")
    d = DeletePayload.delete_child_sa([0xC0FFEE01, b"\x00\x00\x00\x02"])
    assert d.serialise_body() == bytes.fromhex("03040002c0ffee0100000002")
    assert DeletePayload.parse_body(d.serialise_body()) == d
    assert d.spi_values() == [0xC0FFEE01, 2]
    ah = DeletePayload.delete_child_sa([1], protocol=ProtocolId.AH)
    assert ah.protocol == ProtocolId.AH


def test_ts_known_answers() -> None:
    wire4 = bytes.fromhex("01000000070000100000ffff0a0000000a0000ff")
    ts = TsPayload.parse_body(wire4)
    assert ts.selectors == [TrafficSelector.from_network("10.0.0.0/24")]
    assert ts.serialise_body() == wire4
    wire6 = (
        bytes.fromhex("010000000806002800500050")
        + ipaddress.IPv6Address("2001:db8::1").packed
        + ipaddress.IPv6Address("2001:db8::1").packed
    )
    ts6 = TsPayload.parse_body(wire6)
    (sel,) = ts6.selectors
    assert sel.ts_type == TsType.TS_IPV6_ADDR_RANGE
    assert sel.ip_proto == IpProto.TCP and (sel.start_port, sel.end_port) == (80, 80)
    assert sel == TrafficSelector.from_network("2001:db8::1/128", IpProto.TCP, 80)
    assert ts6.serialise_body() == wire6


def test_other_known_answers() -> None:
    ke = bytes.fromhex("001f0000") + b"\x42" * 32
    assert KePayload.parse_body(ke) == KePayload(DhId.CURVE25519, b"\x42" * 32)
    idp = bytes.fromhex("02000000") + b"left.example.net"
    assert IdPayload.parse_body(idp) == IdPayload.from_string("left.example.net")
    auth = bytes.fromhex("02000000") + b"\x99" * 32
    assert AuthPayload.parse_body(auth) == AuthPayload(AuthMethod.PSK, b"\x99" * 32)
    cp = bytes.fromhex("010000000001000000030000")
    parsed = CpPayload.parse_body(cp)
    assert parsed == CpPayload(
        CfgType.CFG_REQUEST,
        [(CfgAttr.INTERNAL_IP4_ADDRESS, b""), (CfgAttr.INTERNAL_IP4_DNS, b"")],
    )
    assert parsed.get(CfgAttr.INTERNAL_IP4_DNS) == [b""]
    eap = bytes.fromhex("0101000501")
    e = EapPayload.parse_body(eap)
    assert (e.code, e.identifier, e.eap_type) == (1, 1, 1)
    assert EapPayload.parse_body(bytes.fromhex("03070004")).eap_type is None
    assert CertPayload.parse_body(b"\x04der") == CertPayload(4, b"der")
    creq = CertReqPayload.parse_body(b"\x04" + b"\x01" * 20 + b"\x02" * 20)
    assert creq.ca_hashes() == [b"\x01" * 20, b"\x02" * 20]
    assert VendorIdPayload.parse_body(b"") == VendorIdPayload(b"")


def test_generic_header_critical_bit_and_chaining() -> None:
    nonce = b"\x11" * 16
    raw = (
        bytes.fromhex("2b800014")
        + nonce  # Nonce, C=1 (ignored: we understand Nonce), next V
        + bytes.fromhex("00000008")
        + b"vend"  # Vendor ID, last
    )
    parsed = parse_payloads(raw, PayloadType.NONCE)
    assert parsed == [
        (PayloadType.NONCE, NoncePayload(nonce)),
        (PayloadType.VENDOR_ID, VendorIdPayload(b"vend")),
    ]
    # re-serialised with the critical bit cleared (§3.2: zero for payloads of RFC 7296)
    assert serialise_payloads(parsed)[1] == bytes.fromhex("2b000014") + raw[4:]


# --------------------------------------------------------------------------- chain errors


def test_unknown_critical_payload_raises_with_type() -> None:
    raw = bytes.fromhex("00800008") + b"abcd"
    with pytest.raises(UnsupportedCriticalPayload) as info:
        parse_payloads(raw, 200)
    assert info.value.notify == NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD
    assert info.value.data == b"\xc8"
    assert info.value.payload_type == 200


def test_unknown_non_critical_payload_is_skipped_and_preserved() -> None:
    raw = bytes.fromhex("28000008") + b"abcd" + bytes.fromhex("00000014") + b"\x01" * 16
    parsed = parse_payloads(raw, 49)  # GSPM: not implemented here, not critical
    assert parsed == [
        (49, UnknownPayload(49, False, b"abcd")),
        (PayloadType.NONCE, NoncePayload(b"\x01" * 16)),
    ]
    assert serialise_payloads(parsed) == (49, raw)
    assert payload_class(49) is None and payload_class(PayloadType.SA) is SaPayload


def test_unknown_critical_payload_serialises_with_c_bit() -> None:
    first, raw = serialise_payloads([(250, UnknownPayload(250, True, b"x"))])
    assert raw == bytes.fromhex("00800005") + b"x"
    with pytest.raises(UnsupportedCriticalPayload):
        parse_payloads(raw, first)


@pytest.mark.parametrize(
    "raw, first",
    [
        (b"", PayloadType.NONCE),  # announced payload missing
        (b"\x00\x00\x00", PayloadType.VENDOR_ID),  # truncated generic header
        (bytes.fromhex("00000003"), PayloadType.VENDOR_ID),  # length below 4
        (bytes.fromhex("00000009") + b"abcd", PayloadType.VENDOR_ID),  # length past end
        (bytes.fromhex("00000004") + b"zz", PayloadType.VENDOR_ID),  # trailing octets
        (bytes.fromhex("2b000004"), PayloadType.VENDOR_ID),  # next payload missing
        (bytes.fromhex("2e000004") + bytes.fromhex("00000004"), PayloadType.SK),  # SK not last
        (bytes.fromhex("35000008") + b"\x00\x01\x00\x01", PayloadType.VENDOR_ID),  # SKF missing
    ],
)
def test_chain_errors(raw: bytes, first: int) -> None:
    with pytest.raises(ParseError) as info:
        parse_payloads(raw, first)
    assert info.value.notify == NotifyType.INVALID_SYNTAX


def test_sk_must_be_last() -> None:
    sk_then_v = bytes.fromhex("29000008") + b"body" + bytes.fromhex("00000004")
    with pytest.raises(ParseError, match="last"):
        parse_payloads(sk_then_v, PayloadType.SK)
    # the SK next-payload is the first inner payload, not a continuation
    parsed = parse_payloads(bytes.fromhex("29000008") + b"body", PayloadType.SK)
    assert parsed == [(PayloadType.SK, SkPayload(PayloadType.NOTIFY, b"body"))]


def test_encrypted_payload_rejected_in_inner_chain() -> None:
    raw = bytes.fromhex("00000008") + b"body"
    with pytest.raises(ParseError):
        parse_payloads(raw, PayloadType.SK, allow_encrypted=False)
    with pytest.raises(ParseError):
        parse_payloads(
            bytes.fromhex("0000000c00010001") + b"body", PayloadType.SKF, allow_encrypted=False
        )


def test_payload_count_is_bounded() -> None:
    one = bytes.fromhex("2b000004")
    raw = one * (MAX_PAYLOADS - 1) + bytes.fromhex("00000004")
    assert len(parse_payloads(raw, PayloadType.VENDOR_ID)) == MAX_PAYLOADS
    raw = one * MAX_PAYLOADS + bytes.fromhex("00000004")
    with pytest.raises(ParseError, match="payloads"):
        parse_payloads(raw, PayloadType.VENDOR_ID)
    with pytest.raises(ParseError):
        parse_payloads(one * 3 + bytes.fromhex("00000004"), PayloadType.VENDOR_ID, max_payloads=3)


# --------------------------------------------------------------------------- payload errors

_PROP_HDR = "0000001001010001"  # last proposal, len 16, 1 transform


@pytest.mark.parametrize(
    "body",
    [
        "",  # SA without proposals
        "00000008010100",  # truncated proposal header
        "0000000701010000",  # proposal length below 8
        "0000000a010104000000",  # SPI size beyond proposal length
        "000000100101000100000008",  # proposal length past end
        "0200000801010000",  # "more proposals" on the last one
        "00000008010100000000000801010000",  # "last" but another follows
        "0100000801010000",  # Last Substruc neither 0 nor 2
        _PROP_HDR + "00000007010000",  # truncated transform
        "0000000f01010001" + "00000007010000",  # transform length below 8
        _PROP_HDR + "0000000c01000014",  # transform length past the proposal
        _PROP_HDR + "0300000801000014",  # "more transforms" on the last one
        "0000001801010001" + "00000008010000140000000801000014",  # "last" then another
        "0000001001010002" + "0000000801000014",  # announces 2 transforms, has 1
        "0000001001010000" + "0000000801000014",  # announces 0 transforms, has 1
        "0000001201010001" + "0000000a01000014800e",  # truncated attribute
        "0000001401010001" + "0000000c01000014000e0002",  # TLV attribute past transform
    ],
)
def test_sa_errors(body: str) -> None:
    assert_parse_error(PayloadType.SA, bytes.fromhex(body))


@pytest.mark.parametrize(
    "ptype, body",
    [
        (PayloadType.KE, "001f00"),
        (PayloadType.IDi, "020000"),
        (PayloadType.IDr, "01000000c0000201ff"),  # IPv4 with 5 octets
        (PayloadType.IDi, "01000000c00002"),  # IPv4 with 3 octets
        (PayloadType.IDi, "0500000020010db8"),  # IPv6 with 4 octets
        (PayloadType.IDi, "02000000"),  # empty FQDN
        (PayloadType.IDi, "03000000"),  # empty RFC822
        (PayloadType.IDi, "0b000000"),  # empty KEY_ID
        (PayloadType.IDi, "0d00000000"),  # ID_NULL with data (RFC 7619 §2.2)
        (PayloadType.CERT, ""),
        (PayloadType.CERTREQ, ""),
        (PayloadType.AUTH, "020000"),
        (PayloadType.NONCE, "00" * 15),
        (PayloadType.NONCE, "00" * 257),
        (PayloadType.NOTIFY, "000040"),
        (PayloadType.NOTIFY, "03044009deadbe"),  # SPI size past end
        (PayloadType.DELETE, "030400"),
        (PayloadType.DELETE, "03040002deadbeef"),  # 2 SPIs announced, 1 present
        (PayloadType.DELETE, "03040001deadbeef00"),  # trailing octet
        (PayloadType.TSi, "010000"),
        (PayloadType.TSi, "00000000"),  # no selectors
        (PayloadType.TSi, "01000000090000100000ffff0a0000000a0000ff"),  # FC type
        (PayloadType.TSr, "01000000000000100000ffff0a0000000a0000ff"),  # TS type 0
        (PayloadType.TSi, "01000000070000280000ffff" + "00" * 32),  # v4 with v6 length
        (PayloadType.TSi, "01000000080000100000ffff0a0000000a0000ff"),  # v6, len 16
        (PayloadType.TSi, "010000000700001000"),  # truncated selector header
        (PayloadType.TSi, "01000000070000100000ffff0a0000000a00"),  # truncated addr
        (PayloadType.TSi, "02000000070000100000ffff0a0000000a0000ff"),  # 2 said, 1
        (PayloadType.TSi, "01000000070000100000ffff0a0000000a0000ff00"),  # trail
        (PayloadType.CP, "010000"),
        (PayloadType.CP, "01000000000100"),  # truncated attribute
        (PayloadType.CP, "01000000000100040a00"),  # attribute past end
        (PayloadType.EAP, "010100"),
        (PayloadType.EAP, "0101000601"),  # EAP length says 6, payload has 5
        (PayloadType.EAP, "0101000401"),  # EAP length says 4, payload has 5
        (PayloadType.SKF, "000100"),
        (PayloadType.SKF, "0000000100"),  # fragment number 0
        (PayloadType.SKF, "0001000000"),  # total fragments 0
        (PayloadType.SKF, "0003000200"),  # number > total
    ],
)
def test_payload_errors(ptype: int, body: str) -> None:
    assert_parse_error(ptype, bytes.fromhex(body))


def test_certreq_bad_hash_list() -> None:
    with pytest.raises(ParseError):
        CertReqPayload(4, b"\x00" * 21).ca_hashes()


# --------------------------------------------------------------------------- serialise errors


@pytest.mark.parametrize(
    "entries",
    [
        [(PayloadType.KE, NoncePayload(b"\x00" * 16))],  # class does not match type
        [(PayloadType.IDi, TsPayload([TrafficSelector.any()]))],
        [(PayloadType.SK, SkPayload(0, b"")), (PayloadType.NONCE, NoncePayload(b"\x00" * 16))],
        [(60, UnknownPayload(61, False, b""))],
        [(0, UnknownPayload(0, False, b""))],
        [(PayloadType.SA, SaPayload([]))],
        [(PayloadType.TSi, TsPayload([]))],
        [
            (
                PayloadType.TSi,
                TsPayload(
                    [
                        TrafficSelector(
                            7, 0, 0, 65535, ipaddress.ip_address("::"), ipaddress.ip_address("::")
                        )
                    ]
                ),
            )
        ],
        [
            (
                PayloadType.TSi,
                TsPayload(
                    [
                        TrafficSelector(
                            9,
                            0,
                            0,
                            65535,
                            ipaddress.ip_address("1.1.1.1"),
                            ipaddress.ip_address("1.1.1.1"),
                        )
                    ]
                ),
            )
        ],
        [(PayloadType.KE, KePayload(0x10000, b""))],
        [(PayloadType.VENDOR_ID, VendorIdPayload(b"\x00" * 0xFFFC))],
        [(PayloadType.DELETE, DeletePayload(3, 4, [b"\x00" * 3]))],
        [(PayloadType.SA, SaPayload([Proposal(1, 1, b"", [Transform(1, 12, 0x10000)])]))],
        [(PayloadType.SA, SaPayload([Proposal(1, 1, b"", [Transform(1, 12, None, ((1, -1),))])]))],
        [(PayloadType.CP, CpPayload(1, [(0x8000, b"")]))],
    ],
)
def test_serialise_rejects_invalid_payloads(entries: list[tuple[int, Payload]]) -> None:
    with pytest.raises(ValueError):
        serialise_payloads(entries)


def test_convenience_constructors_validate() -> None:
    with pytest.raises(ValueError):
        NotifyPayload.error(NotifyType.COOKIE)
    with pytest.raises(ValueError):
        NotifyPayload.status(NotifyType.INVALID_SYNTAX)
    with pytest.raises(ValueError):
        DeletePayload.delete_child_sa([b"\x00" * 8])
    with pytest.raises(ValueError):
        DeletePayload.delete_child_sa([1 << 32])
    assert NotifyPayload.error(NotifyType.INVALID_SYNTAX).is_error
    assert not NotifyPayload.status(NotifyType.COOKIE, b"c").is_error


# --------------------------------------------------------------------------- ID strings


@pytest.mark.parametrize(
    "text, id_type, data, back",
    [
        ("198.51.100.2", IdType.ID_IPV4_ADDR, bytes([198, 51, 100, 2]), "198.51.100.2"),
        ("2001:db8::2", IdType.ID_IPV6_ADDR, ipaddress.ip_address("2001:db8::2").packed, None),
        ("left.example.net", IdType.ID_FQDN, b"left.example.net", None),
        ("@right.example.net", IdType.ID_FQDN, b"right.example.net", "right.example.net"),
        ("user@example.net", IdType.ID_RFC822_ADDR, b"user@example.net", None),
        (
            "email:alice@example.net",
            IdType.ID_RFC822_ADDR,
            b"alice@example.net",
            "alice@example.net",
        ),
        # swanctl: keyid:TEXT is the octets of TEXT, only keyid:#hex is hex
        ("keyid:0a0b0c", IdType.ID_KEY_ID, b"0a0b0c", None),
        ("keyid:cafe0001", IdType.ID_KEY_ID, b"cafe0001", None),
        ("keyid:hello", IdType.ID_KEY_ID, b"hello", None),
        ("KEYID:hello world", IdType.ID_KEY_ID, b"hello world", "keyid:hello world"),
        ("keyid:#0a0b0c", IdType.ID_KEY_ID, b"\x0a\x0b\x0c", None),
        ("keyid:#cafe0001", IdType.ID_KEY_ID, b"\xca\xfe\x00\x01", None),
        ("keyid:#6869", IdType.ID_KEY_ID, b"hi", "keyid:hi"),
        ("keyid:#2361", IdType.ID_KEY_ID, b"#a", None),  # '#a' would read back as hex
        ("keyid:#206120", IdType.ID_KEY_ID, b" a ", None),  # blanks would be stripped
        ("keyid:#", IdType.ID_KEY_ID, b"", None),
        ("fqdn:198.51.100.2", IdType.ID_FQDN, b"198.51.100.2", None),
        ("fqdn:#00ff", IdType.ID_FQDN, b"\x00\xff", None),
        ("ipv4:192.0.2.1", IdType.ID_IPV4_ADDR, b"\xc0\x00\x02\x01", "192.0.2.1"),
        ("null:", IdType.ID_NULL, b"", None),
        ("id200:#beef", 200, b"\xbe\xef", None),
        ("asn1dn:#3000", IdType.ID_DER_ASN1_DN, b"\x30\x00", None),
    ],
)
def test_id_strings(text: str, id_type: int, data: bytes, back: str | None) -> None:
    p = IdPayload.from_string(text)
    assert (p.id_type, p.data) == (id_type, data)
    assert p.to_string() == (text if back is None else back)
    assert str(p) == p.to_string()


def test_id_dn_from_rfc4514() -> None:
    p = IdPayload.from_string("CN=moon.example.net,O=Example")
    assert p.id_type == IdType.ID_DER_ASN1_DN and p.data.startswith(b"\x30")
    assert IdPayload.from_string(p.to_string()) == p


@pytest.mark.parametrize(
    "text", ["", "ipv4:300.1.1.1", "keyid:#zz", "keyid:#abc", "null:x", "id999:#00"]
)
def test_id_bad_strings(text: str) -> None:
    with pytest.raises(ValueError):
        IdPayload.from_string(text)


@pytest.mark.parametrize(
    "data", [b"\x00\x01\xff", "schlüssel".encode(), b"#x", b"tab\there", b"ok-id_1", b"\x7f"]
)
def test_keyid_to_string_round_trips(data: bytes) -> None:
    p = IdPayload(IdType.ID_KEY_ID, data)
    text = p.to_string()
    assert IdPayload.from_string(text) == p
    printable = data.isascii() and data.decode().isprintable() and not data.startswith(b"#")
    assert text == (f"keyid:{data.decode()}" if printable else f"keyid:#{data.hex()}")


def test_id_to_string_of_garbage_never_raises() -> None:
    assert IdPayload(IdType.ID_FQDN, b"\xff\xfe").to_string() == "fqdn:#fffe"
    assert IdPayload(IdType.ID_RFC822_ADDR, b"a\nb").to_string() == "email:#610a62"
    assert IdPayload(IdType.ID_IPV4_ADDR, b"\x01").to_string() == "ipv4:#01"


# --------------------------------------------------------------------------- traffic selectors


def test_traffic_selector_helpers() -> None:
    net = TrafficSelector.from_network("10.1.0.0/16")
    host = TrafficSelector.from_network("10.1.2.3/32", IpProto.TCP, 443)
    assert net.contains(host) and not host.contains(net)
    assert net.matches("10.1.200.1") and not net.matches("10.2.0.1")
    assert host.matches("10.1.2.3", IpProto.TCP, 443)
    assert not host.matches("10.1.2.3", IpProto.UDP, 443)
    assert not host.matches("10.1.2.3", IpProto.TCP, 80)
    assert not host.matches("::1")
    assert str(net) == "10.1.0.0/16"
    assert str(host) == "10.1.2.3/32[tcp/443]"
    assert str(TrafficSelector.from_range("10.0.0.1", "10.0.0.5", 17)) == "10.0.0.1-10.0.0.5[udp]"
    assert str(TrafficSelector.from_network("::/0", 99, (1000, 2000))) == "::/0[99/1000-2000]"
    v6 = TrafficSelector.any(6)
    assert v6.version == 6 and v6.ts_type == TsType.TS_IPV6_ADDR_RANGE
    assert not v6.contains(host)
    opaque = TrafficSelector.from_network("10.1.2.3/32", IpProto.UDP, (65535, 0))
    assert net.contains(opaque)  # ANY includes OPAQUE
    assert not TrafficSelector.from_network("10.0.0.0/8", 17, (1, 10)).contains(opaque)
    with pytest.raises(ValueError):
        TrafficSelector.from_range("10.0.0.1", "::1")
