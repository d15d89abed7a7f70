"""The EAP packet codec (RFC 3748 §4, §5.1-§5.3, §5.7)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyipsec.constants import EapCode
from pyipsec.eap.base import EapError
from pyipsec.eap.packet import (
    EapPacket,
    EapType,
    expanded_nak,
    expanded_type,
    failure,
    identity_of,
    identity_response,
    nak,
    nak_types,
    parse,
    request,
    response,
    success,
    type_name,
)


def test_request_layout() -> None:
    assert request(7, EapType.IDENTITY) == bytes.fromhex("0107000501")
    assert response(0xFF, EapType.MD5, b"\x01\xaa") == bytes.fromhex("02ff00070401aa")


def test_success_and_failure_have_no_type() -> None:
    assert success(9) == bytes.fromhex("03090004")
    assert failure(10) == bytes.fromhex("040a0004")
    assert parse(success(9)) == EapPacket(EapCode.SUCCESS, 9)
    assert parse(failure(10)).eap_type is None


def test_round_trip_keeps_enums() -> None:
    pkt = parse(request(3, EapType.MSCHAPV2, b"abc"))
    assert pkt == EapPacket(EapCode.REQUEST, 3, EapType.MSCHAPV2, b"abc")
    assert isinstance(pkt.code, EapCode)
    assert pkt.is_request and not pkt.is_response


def test_padding_after_length_is_ignored() -> None:
    pkt = parse(request(1, EapType.MD5, b"xy") + b"\x00\x00\x00")
    assert pkt.data == b"xy"
    assert parse(success(2) + b"junk").code == EapCode.SUCCESS


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "shorter than its header"),
        (b"\x01\x01\x00", "shorter than its header"),
        (bytes.fromhex("01010003"), "below the header size"),
        (bytes.fromhex("0101000901"), "exceeds"),
        (bytes.fromhex("01010004"), "without a Type"),
        (bytes.fromhex("05010005ff"), "unknown EAP Code 5"),
        (bytes.fromhex("00010004"), "unknown EAP Code 0"),
    ],
)
def test_malformed(data: bytes, message: str) -> None:
    with pytest.raises(EapError, match=message):
        parse(data)


@given(st.binary(max_size=64))
def test_parse_raises_only_eap_error(data: bytes) -> None:
    try:
        pkt = parse(data)
    except EapError:
        return
    again = parse(pkt.to_bytes())
    assert again == pkt


@given(
    st.sampled_from([EapCode.REQUEST, EapCode.RESPONSE]),
    st.integers(0, 255),
    st.integers(0, 255),
    st.binary(max_size=300),
)
def test_round_trip(code: EapCode, ident: int, eap_type: int, data: bytes) -> None:
    pkt = EapPacket(code, ident, eap_type, data)
    wire = pkt.to_bytes()
    assert int.from_bytes(wire[2:4], "big") == len(wire) == 5 + len(data)
    assert parse(wire) == pkt


def test_builders_refuse_local_mistakes() -> None:
    with pytest.raises(ValueError, match="Identifier"):
        request(256, EapType.MD5)
    with pytest.raises(ValueError, match="Type"):
        EapPacket(EapCode.REQUEST, 1).to_bytes()
    with pytest.raises(ValueError, match="too long"):
        request(1, EapType.TLS, bytes(0xFFFF))


def test_identity() -> None:
    assert parse(identity_response(4, b"carol")).data == b"carol"
    assert identity_of(b"carol\x00NAIRealms=example.com") == b"carol"  # RFC 4284
    assert identity_of(b"") == b""


def test_nak_lists_desired_types() -> None:
    pkt = parse(nak(5, [EapType.MSCHAPV2, EapType.TLS]))
    assert pkt.eap_type == EapType.NAK
    assert nak_types(pkt) == (26, 13)


def test_nak_without_alternative_is_type_zero() -> None:
    wire = nak(5, [])
    assert wire == bytes.fromhex("0205000603") + b"\x00"
    assert nak_types(parse(wire)) == ()
    # only method Types (4..253) may be desired
    assert nak_types(parse(nak(1, [1, 2, 3, 254, 4]))) == (4,)


def test_expanded_nak() -> None:
    wire = expanded_nak(8, [EapType.MSCHAPV2])
    pkt = parse(wire)
    assert pkt.eap_type == EapType.EXPANDED
    assert expanded_type(pkt.data) == (0, 3)
    assert pkt.data[7:] == bytes.fromhex("fe0000000000001a")
    assert nak_types(pkt) == (26,)
    assert nak_types(parse(expanded_nak(8, []))) == ()


@pytest.mark.parametrize(
    "data",
    [
        b"",  # legacy Nak without a Type
        bytes.fromhex("000000"),  # expanded header cut short
        bytes.fromhex("00000000000003") + b"\xfe\x00",  # entry cut short
        bytes.fromhex("00000000000003"),  # no entry
    ],
)
def test_malformed_nak(data: bytes) -> None:
    kind = EapType.NAK if not data else EapType.EXPANDED
    with pytest.raises(EapError):
        nak_types(EapPacket(EapCode.RESPONSE, 1, kind, data))


def test_nak_types_refuses_other_types() -> None:
    with pytest.raises(EapError, match="not a Nak"):
        nak_types(EapPacket(EapCode.RESPONSE, 1, EapType.MD5, b"\x04"))
    vendor = bytes.fromhex("0000090000002a")  # expanded, vendor 9: not a Nak
    with pytest.raises(EapError, match="not a Nak"):
        nak_types(EapPacket(EapCode.RESPONSE, 1, EapType.EXPANDED, vendor))


def test_type_name() -> None:
    assert type_name(26) == "MSCHAPV2"
    assert type_name(99) == "EapType(99)"


def test_code_of_well_formed_packets_only() -> None:
    from pyipsec.eap.packet import code_of

    ok = success(7)
    assert code_of(ok) == EapCode.SUCCESS
    assert code_of(ok + b"\x00") == EapCode.SUCCESS  # octets after Length: ignored
    assert code_of(ok + b"\x00", exact=True) is None  # RADIUS: the whole packet only
    assert code_of(ok, exact=True) == EapCode.SUCCESS
    assert code_of(b"\x01\x07\x00\x04") is None  # a Request without a Type
    assert code_of(b"\x09\x07\x00\x04") is None  # an unknown Code
    assert code_of(b"\x03\x07") is None
