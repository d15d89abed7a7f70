"""Message codec tests: IKE header (RFC 7296 §3.1), chains, SK (§3.14) and SKF
(RFC 7383 §2.5) protection with test-only protectors."""

from __future__ import annotations

import hashlib
import random
import struct

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from pyipsec.ikev2.constants import (
    AuthMethod,
    CfgAttr,
    CfgType,
    DhId,
    EncrId,
    EsnId,
    ExchangeType,
    HeaderFlag,
    IdType,
    IntegId,
    IpProto,
    NotifyType,
    PayloadType,
    PrfId,
    ProtocolId,
    TransformType,
)
from pyipsec.ikev2.errors import (
    IntegrityError,
    InvalidMajorVersion,
    ParseError,
    UnsupportedCriticalPayload,
)
from pyipsec.ikev2.message import (
    DecryptedFragment,
    Message,
    decrypt_fragment,
    decrypt_message,
    encrypt_fragments,
    encrypt_message,
    reassemble_fragments,
)
from pyipsec.ikev2.payloads import (
    MAX_PAYLOADS,
    AuthPayload,
    CertReqPayload,
    CpPayload,
    DeletePayload,
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
    serialise_payloads,
)

from .test_payloads import payload_chains, plain_entries

# --------------------------------------------------------------------------- test protectors


class GcmTestProtector:
    """AES-256-GCM-16 the RFC 5282 way: 4-octet salt | 8-octet explicit IV, AAD = aad."""

    iv_size = 8
    icv_size = 16

    def __init__(self, key: bytes = bytes(range(32)), salt: bytes = b"salt") -> None:
        self._aead = AESGCM(key)
        self._salt = salt
        self._counter = 0

    def sealed_length(self, plain_len: int) -> int:
        return self.iv_size + plain_len + 1 + self.icv_size

    def seal(self, aad: bytes, plaintext: bytes) -> bytes:
        self._counter += 1
        iv = self._counter.to_bytes(8, "big")
        return iv + self._aead.encrypt(self._salt + iv, plaintext + b"\x00", aad)

    def open(self, aad: bytes, body: bytes) -> bytes:
        iv = body[: self.iv_size]
        try:
            padded = self._aead.decrypt(self._salt + iv, body[self.iv_size :], aad)
        except InvalidTag:
            raise IntegrityError("ICV mismatch") from None
        if not padded or padded[-1] + 1 > len(padded):
            raise IntegrityError("bad padding")
        return padded[: len(padded) - padded[-1] - 1]


class CbcTestProtector:
    """AES-128-CBC + HMAC-SHA2-256-128 (§3.14): ICV over aad | IV | ciphertext."""

    iv_size = 16
    icv_size = 16

    def __init__(self, key: bytes = b"k" * 16, mac_key: bytes = b"m" * 32) -> None:
        self._key = key
        self._mac_key = mac_key

    def sealed_length(self, plain_len: int) -> int:
        return self.iv_size + (plain_len + 1 + 15) // 16 * 16 + self.icv_size

    def _mac(self, data: bytes) -> bytes:
        h = hmac.HMAC(self._mac_key, hashes.SHA256())
        h.update(data)
        return h.finalize()[:16]

    def seal(self, aad: bytes, plaintext: bytes) -> bytes:
        pad = (-(len(plaintext) + 1)) % 16
        iv = random.Random(len(plaintext)).randbytes(16)
        enc = Cipher(algorithms.AES(self._key), modes.CBC(iv)).encryptor()
        ct = enc.update(plaintext + bytes(range(1, pad + 1)) + bytes([pad])) + enc.finalize()
        return iv + ct + self._mac(aad + iv + ct)

    def open(self, aad: bytes, body: bytes) -> bytes:
        iv, ct, icv = body[:16], body[16:-16], body[-16:]
        if not hmac_eq(self._mac(aad + iv + ct), icv) or not ct or len(ct) % 16:
            raise IntegrityError("ICV mismatch")
        dec = Cipher(algorithms.AES(self._key), modes.CBC(iv)).decryptor()
        padded = dec.update(ct) + dec.finalize()
        if padded[-1] + 1 > len(padded):
            raise IntegrityError("bad padding")
        return padded[: len(padded) - padded[-1] - 1]


def hmac_eq(a: bytes, b: bytes) -> bool:
    import hmac as std_hmac

    return std_hmac.compare_digest(a, b)


class RecordingProtector(GcmTestProtector):
    """Records the aad it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.aads: list[bytes] = []

    def seal(self, aad: bytes, plaintext: bytes) -> bytes:
        self.aads.append(aad)
        return super().seal(aad, plaintext)

    def open(self, aad: bytes, body: bytes) -> bytes:
        self.aads.append(aad)
        return super().open(aad, body)


# --------------------------------------------------------------------------- realistic messages

SPI_I = bytes.fromhex("0123456789abcdef")
SPI_R = bytes.fromhex("fedcba9876543210")


def _nat_d(spi_i: bytes, spi_r: bytes, ip: str, port: int) -> bytes:
    packed = bytes(int(x) for x in ip.split("."))
    return hashlib.sha1(spi_i + spi_r + packed + port.to_bytes(2, "big")).digest()


def _ike_proposal(num: int, encr: Transform, prf: int, integ: int | None, dh: int) -> Proposal:
    transforms = [encr, Transform(TransformType.PRF, prf)]
    if integ is not None:
        transforms.append(Transform(TransformType.INTEG, integ))
    transforms.append(Transform(TransformType.DH, dh))
    return Proposal(num, ProtocolId.IKE, b"", transforms)


#: A realistic IKE_SA_INIT request (RFC 7296 §1.2), as strongSwan would send it.
IKE_SA_INIT_REQUEST = Message(
    spi_i=SPI_I,
    spi_r=bytes(8),
    exchange=ExchangeType.IKE_SA_INIT,
    flags=HeaderFlag.INITIATOR,
    message_id=0,
    payloads=[
        (
            PayloadType.SA,
            SaPayload(
                [
                    _ike_proposal(
                        1,
                        Transform(TransformType.ENCR, EncrId.AES_GCM_16, 256),
                        PrfId.HMAC_SHA2_256,
                        None,
                        DhId.CURVE25519,
                    ),
                    _ike_proposal(
                        2,
                        Transform(TransformType.ENCR, EncrId.AES_CBC, 128),
                        PrfId.HMAC_SHA2_256,
                        IntegId.HMAC_SHA2_256_128,
                        DhId.CURVE25519,
                    ),
                    _ike_proposal(
                        3,
                        Transform(TransformType.ENCR, EncrId.CHACHA20_POLY1305),
                        PrfId.HMAC_SHA2_512,
                        None,
                        DhId.MODP_2048,
                    ),
                ]
            ),
        ),
        (PayloadType.KE, KePayload(DhId.CURVE25519, bytes.fromhex("9f" * 32))),
        (PayloadType.NONCE, NoncePayload(bytes(range(32)))),
        (
            PayloadType.NOTIFY,
            NotifyPayload.status(
                NotifyType.NAT_DETECTION_SOURCE_IP, _nat_d(SPI_I, bytes(8), "192.0.2.1", 500)
            ),
        ),
        (
            PayloadType.NOTIFY,
            NotifyPayload.status(
                NotifyType.NAT_DETECTION_DESTINATION_IP,
                _nat_d(SPI_I, bytes(8), "198.51.100.2", 500),
            ),
        ),
        (PayloadType.NOTIFY, NotifyPayload.status(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED)),
        (
            PayloadType.NOTIFY,
            NotifyPayload.status(
                NotifyType.SIGNATURE_HASH_ALGORITHMS, bytes.fromhex("000200030004")
            ),
        ),
        (PayloadType.VENDOR_ID, VendorIdPayload(hashlib.md5(b"pyipsec").digest())),
    ],
)


def ike_auth_request(n_certreq: int = 0, big_cert: int = 0) -> Message:
    """A typical IKE_AUTH request (RFC 7296 §1.2), optionally padded with CERTREQ/CERT."""
    payloads: list[tuple[int, Payload]] = [
        (PayloadType.IDi, IdPayload.from_string("left.example.net")),
        (PayloadType.NOTIFY, NotifyPayload.status(NotifyType.INITIAL_CONTACT)),
        (PayloadType.IDr, IdPayload.from_string("198.51.100.2")),
        (PayloadType.AUTH, AuthPayload(AuthMethod.PSK, bytes(range(32)))),
        (
            PayloadType.CP,
            CpPayload(
                CfgType.CFG_REQUEST,
                [(CfgAttr.INTERNAL_IP4_ADDRESS, b""), (CfgAttr.INTERNAL_IP6_ADDRESS, b"")],
            ),
        ),
        (
            PayloadType.SA,
            SaPayload(
                [
                    Proposal(
                        1,
                        ProtocolId.ESP,
                        bytes.fromhex("c0ffee01"),
                        [
                            Transform(TransformType.ENCR, EncrId.AES_GCM_16, 256),
                            Transform(TransformType.ESN, EsnId.NO_ESN),
                        ],
                    ),
                    Proposal(
                        2,
                        ProtocolId.ESP,
                        bytes.fromhex("c0ffee01"),
                        [
                            Transform(TransformType.ENCR, EncrId.AES_CBC, 128),
                            Transform(TransformType.INTEG, IntegId.HMAC_SHA2_256_128),
                            Transform(TransformType.ESN, EsnId.NO_ESN),
                        ],
                    ),
                ]
            ),
        ),
        (
            PayloadType.TSi,
            TsPayload([TrafficSelector.from_network("10.1.0.0/16"), TrafficSelector.any(6)]),
        ),
        (
            PayloadType.TSr,
            TsPayload([TrafficSelector.from_network("10.2.0.0/16", IpProto.TCP, (1, 1024))]),
        ),
        (PayloadType.NOTIFY, NotifyPayload.status(NotifyType.MOBIKE_SUPPORTED)),
        (PayloadType.NOTIFY, NotifyPayload.status(NotifyType.EAP_ONLY_AUTHENTICATION)),
    ]
    for i in range(n_certreq):
        payloads.insert(1, (PayloadType.CERTREQ, CertReqPayload(4, bytes([i]) * 20)))
    if big_cert:
        payloads.insert(1, (PayloadType.CERT, _cert(big_cert)))
    return Message(SPI_I, SPI_R, ExchangeType.IKE_AUTH, HeaderFlag.INITIATOR, 1, payloads)


def _cert(size: int) -> Payload:
    from pyipsec.ikev2.payloads import CertPayload

    return CertPayload(4, bytes(i & 0xFF for i in range(size)))


# --------------------------------------------------------------------------- header


def test_ike_sa_init_request_wire_format() -> None:
    wire = IKE_SA_INIT_REQUEST.serialise()
    assert wire[:28] == (
        SPI_I
        + bytes(8)
        + bytes([PayloadType.SA, 0x20, ExchangeType.IKE_SA_INIT, 0x08])
        + (0).to_bytes(4, "big")
        + len(wire).to_bytes(4, "big")
    )
    # SA follows: next payload KE, not critical
    assert wire[28:30] == bytes([PayloadType.KE, 0])
    msg = Message.parse(wire)
    assert msg == IKE_SA_INIT_REQUEST
    assert msg.serialise() == wire
    assert msg.is_initiator and not msg.is_response
    assert msg.encrypted is None
    sa = msg.get(PayloadType.SA)
    assert sa is not None and len(sa.proposals) == 3
    ke = msg.get(PayloadType.KE)
    assert ke is not None and ke.group == DhId.CURVE25519 and len(ke.data) == 32
    assert msg.notify(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED) is not None
    assert msg.notify(NotifyType.COOKIE) is None
    assert len(msg.notifies()) == 4 and msg.error_notifies() == []
    assert len(msg.get_all(PayloadType.NOTIFY)) == 4
    assert msg.get(PayloadType.EAP) is None and msg.get_all(PayloadType.CERT) == []
    sha = msg.notify(NotifyType.SIGNATURE_HASH_ALGORITHMS)
    assert sha is not None and sha.data == b"\x00\x02\x00\x03\x00\x04"


def _with_header(msg_bytes: bytes, **changes: int) -> bytes:
    fields = list(struct.unpack_from("!8s8sBBBBII", msg_bytes))
    names = ["spi_i", "spi_r", "next", "version", "exchange", "flags", "mid", "length"]
    for k, v in changes.items():
        fields[names.index(k)] = v
    return struct.pack("!8s8sBBBBII", *fields) + msg_bytes[28:]


def test_header_errors() -> None:
    wire = IKE_SA_INIT_REQUEST.serialise()
    with pytest.raises(ParseError):
        Message.parse(wire[:27])
    with pytest.raises(ParseError):
        Message.parse(b"")
    for version in (0x10, 0x30, 0xF0, 0x00):
        with pytest.raises(InvalidMajorVersion) as info:
            Message.parse(_with_header(wire, version=version))
        assert info.value.notify == NotifyType.INVALID_MAJOR_VERSION
    with pytest.raises(ParseError, match="length"):
        Message.parse(_with_header(wire, length=len(wire) + 1))
    with pytest.raises(ParseError, match="length"):
        Message.parse(_with_header(wire, length=len(wire) - 1))
    with pytest.raises(ParseError):
        Message.parse(wire + b"\x00")  # appended garbage
    with pytest.raises(ParseError):
        Message.parse(_with_header(wire + b"\x00", length=len(wire) + 1))  # after last payload
    with pytest.raises(ParseError):
        Message.parse(_with_header(wire, next=0))  # payloads but "no next payload"
    with pytest.raises(ParseError):
        Message.parse(_with_header(wire, next=PayloadType.TSi))  # SA bytes read as TSi


def test_header_minor_version_and_reserved_flags() -> None:
    wire = IKE_SA_INIT_REQUEST.serialise()
    msg = Message.parse(_with_header(wire, version=0x27, flags=0xFF))
    assert msg.minor_version == 7
    assert msg.flags == HeaderFlag.INITIATOR | HeaderFlag.VERSION | HeaderFlag.RESPONSE
    assert msg.is_response
    again = msg.serialise()
    assert again[17] == 0x27 and again[19] == 0x38


def test_unknown_exchange_and_empty_message() -> None:
    msg = Message(SPI_I, SPI_R, 250, HeaderFlag.RESPONSE, 0xFFFFFFFF)
    wire = msg.serialise()
    assert len(wire) == 28 and wire[16] == 0
    parsed = Message.parse(wire)
    assert parsed == msg and type(parsed.exchange) is int
    with pytest.raises(ValueError):
        Message(b"short", SPI_R, 34, 0, 0).serialise()


def test_unknown_payloads_in_message() -> None:
    msg = Message(SPI_I, SPI_R, ExchangeType.INFORMATIONAL, 0, 3)
    msg.add(PayloadType.NONCE, NoncePayload(b"\x01" * 16))
    msg.add(PayloadType.GSPM, UnknownPayload(PayloadType.GSPM, False, b"opaque"))
    msg.add(PayloadType.DELETE, DeletePayload.delete_ike_sa())
    wire = msg.serialise()
    assert Message.parse(wire) == msg
    msg.payloads[1] = (PayloadType.GSPM, UnknownPayload(PayloadType.GSPM, True, b"opaque"))
    with pytest.raises(UnsupportedCriticalPayload) as info:
        Message.parse(msg.serialise())
    assert info.value.data == bytes([PayloadType.GSPM])


def test_payload_limit_applies_to_messages() -> None:
    msg = Message(SPI_I, SPI_R, ExchangeType.INFORMATIONAL, 0, 3)
    for _ in range(MAX_PAYLOADS):
        msg.add(PayloadType.VENDOR_ID, VendorIdPayload(b""))
    assert len(Message.parse(msg.serialise()).payloads) == MAX_PAYLOADS
    msg.add(PayloadType.VENDOR_ID, VendorIdPayload(b""))
    with pytest.raises(ParseError):
        Message.parse(msg.serialise())


messages = st.builds(
    Message,
    spi_i=st.binary(min_size=8, max_size=8),
    spi_r=st.binary(min_size=8, max_size=8),
    exchange=st.integers(0, 255),
    flags=st.sampled_from([0, 0x08, 0x10, 0x18, 0x20, 0x28, 0x30, 0x38]),
    message_id=st.integers(0, 0xFFFFFFFF),
    payloads=payload_chains(),
    minor_version=st.integers(0, 15),
)


@settings(max_examples=300, deadline=None)
@given(messages)
def test_messages_round_trip(msg: Message) -> None:
    wire = msg.serialise()
    parsed = Message.parse(wire)
    assert parsed == msg
    assert parsed.serialise() == wire


# --------------------------------------------------------------------------- SK


@pytest.mark.parametrize("protector_cls", [GcmTestProtector, CbcTestProtector])
def test_encrypt_decrypt_round_trip(protector_cls: type[GcmTestProtector]) -> None:
    msg = ike_auth_request()
    wire = encrypt_message(msg, protector_cls())
    outer = Message.parse(wire)
    assert [t for t, _ in outer.payloads] == [PayloadType.SK]
    sk = outer.encrypted
    assert isinstance(sk, SkPayload)
    assert sk.first_payload == PayloadType.IDi  # SK Next Payload = first inner payload
    assert outer.serialise() == wire  # SK kept verbatim
    back = decrypt_message(wire, protector_cls())
    assert back == msg
    assert decrypt_message(wire, protector_cls(), parsed=outer) == msg


def test_sk_aad_is_header_and_sk_generic_header() -> None:
    rec = RecordingProtector()
    wire = encrypt_message(ike_auth_request(), rec)
    assert rec.aads == [wire[:32]]
    assert struct.unpack_from("!I", wire, 24)[0] == len(wire)
    assert struct.unpack_from("!H", wire, 30)[0] == len(wire) - 28
    assert wire[16] == PayloadType.SK
    decrypt_message(wire, rec)
    assert rec.aads[1] == wire[:32]


def test_sk_empty_message() -> None:
    msg = Message(SPI_I, SPI_R, ExchangeType.INFORMATIONAL, HeaderFlag.RESPONSE, 7)
    wire = encrypt_message(msg, GcmTestProtector())
    assert wire[28] == 0  # no inner payload
    assert decrypt_message(wire, GcmTestProtector()) == msg


@pytest.mark.parametrize("protector_cls", [GcmTestProtector, CbcTestProtector])
def test_sk_tampering_is_detected(protector_cls: type[GcmTestProtector]) -> None:
    wire = encrypt_message(ike_auth_request(), protector_cls())
    for pos in (5, 20, 23, 29, 40, len(wire) - 1):  # header, SK header, body, ICV
        bad = bytearray(wire)
        bad[pos] ^= 0x01
        with pytest.raises((IntegrityError, ParseError)):
            decrypt_message(bytes(bad), protector_cls())
    with pytest.raises(IntegrityError):
        decrypt_message(wire, GcmTestProtector(key=b"x" * 32))


def test_sk_body_shorter_than_iv_and_icv() -> None:
    msg = Message(SPI_I, SPI_R, ExchangeType.INFORMATIONAL, 0, 1)
    msg.add(PayloadType.SK, SkPayload(0, b"\x00" * 23))
    with pytest.raises(IntegrityError):
        decrypt_message(msg.serialise(), GcmTestProtector())


def test_decrypt_needs_sk() -> None:
    with pytest.raises(ParseError):
        decrypt_message(IKE_SA_INIT_REQUEST.serialise(), GcmTestProtector())
    frag = encrypt_fragments(ike_auth_request(), GcmTestProtector(), 1280)[0]
    with pytest.raises(ParseError):
        decrypt_message(frag, GcmTestProtector())
    with pytest.raises(ParseError):
        decrypt_fragment(
            encrypt_message(ike_auth_request(), GcmTestProtector()), GcmTestProtector()
        )


def _seal_raw(
    first: int, inner: bytes, protector: GcmTestProtector, plain: bytes = b"", plain_first: int = 0
) -> bytes:
    """An SK message around arbitrary inner bytes (optionally after plaintext payloads)."""
    body_len = protector.sealed_length(len(inner))
    total = 28 + len(plain) + 4 + body_len
    header = struct.pack(
        "!8s8sBBBBII", SPI_I, SPI_R, plain_first or PayloadType.SK, 0x20, 37, 0x08, 2, total
    )
    sk_header = struct.pack("!BBH", first, 0, 4 + body_len)
    return header + plain + sk_header + protector.seal(header + sk_header, inner)


def test_malformed_inner_chain_is_a_parse_error() -> None:
    p = GcmTestProtector()
    for first, inner in [
        (PayloadType.NONCE, bytes.fromhex("00000008") + b"abcd"),  # short nonce
        (PayloadType.VENDOR_ID, bytes.fromhex("00000009") + b"abcd"),  # length lie
        (PayloadType.VENDOR_ID, bytes.fromhex("2b000004")),  # chain continues past end
        (PayloadType.SK, bytes.fromhex("00000004")),  # nested SK
        (PayloadType.VENDOR_ID, bytes.fromhex("00000004") + b"junk"),  # trailing
        (0, b"junk"),  # content although SK says no payload
    ]:
        with pytest.raises(ParseError):
            decrypt_message(_seal_raw(first, inner, p), p)
    with pytest.raises(UnsupportedCriticalPayload):
        decrypt_message(_seal_raw(200, bytes.fromhex("00800004"), p), p)


def test_plaintext_payloads_before_sk_are_kept() -> None:
    p = GcmTestProtector()
    first, inner = serialise_payloads([(PayloadType.NONCE, NoncePayload(b"\x02" * 16))])
    plain = bytes.fromhex("2e000008") + b"vend"  # Vendor ID, next = SK
    wire = _seal_raw(first, inner, p, plain, plain_first=PayloadType.VENDOR_ID)
    msg = decrypt_message(wire, p)
    assert msg.payloads == [
        (PayloadType.VENDOR_ID, VendorIdPayload(b"vend")),
        (PayloadType.NONCE, NoncePayload(b"\x02" * 16)),
    ]
    assert msg.message_id == 2 and msg.exchange == ExchangeType.INFORMATIONAL


def test_inner_payload_limit_counts_outer_payloads() -> None:
    p = GcmTestProtector()
    entries: list[tuple[int, Payload]] = [
        (PayloadType.VENDOR_ID, VendorIdPayload(b""))
    ] * MAX_PAYLOADS
    first, inner = serialise_payloads(entries)
    assert len(decrypt_message(_seal_raw(first, inner, p), p).payloads) == MAX_PAYLOADS
    plain = bytes.fromhex("2e000004")
    with pytest.raises(ParseError):
        decrypt_message(_seal_raw(first, inner, p, plain, PayloadType.VENDOR_ID), p)


@settings(max_examples=100, deadline=None)
@given(st.lists(plain_entries, max_size=8))
def test_sk_round_trip_property(entries: list[tuple[int, Payload]]) -> None:
    msg = Message(SPI_I, SPI_R, ExchangeType.CREATE_CHILD_SA, HeaderFlag.INITIATOR, 9, entries)
    assert decrypt_message(encrypt_message(msg, GcmTestProtector()), GcmTestProtector()) == msg


# --------------------------------------------------------------------------- SKF


@pytest.mark.parametrize("protector_cls", [GcmTestProtector, CbcTestProtector])
@pytest.mark.parametrize("max_len", [100, 200, 576 - 28, 1280])
def test_fragments_round_trip(protector_cls: type[GcmTestProtector], max_len: int) -> None:
    msg = ike_auth_request(n_certreq=3, big_cert=1500)
    rec = RecordingProtector() if protector_cls is GcmTestProtector else protector_cls()
    frags = encrypt_fragments(msg, rec, max_len)
    inner_len = len(serialise_payloads(msg.payloads)[1])
    assert len(frags) > 1
    total = len(frags)
    decrypted: list[DecryptedFragment] = []
    for number, wire in enumerate(frags, 1):
        assert len(wire) <= max_len
        outer = Message.parse(wire)
        assert (outer.spi_i, outer.message_id, outer.exchange, outer.flags) == (
            SPI_I,
            1,
            ExchangeType.IKE_AUTH,
            HeaderFlag.INITIATOR,
        )
        skf = outer.encrypted
        assert isinstance(skf, SkfPayload)
        assert (skf.fragment_number, skf.total_fragments) == (number, total)
        assert skf.first_payload == (msg.payloads[0][0] if number == 1 else 0)
        assert wire[16] == PayloadType.SKF
        if isinstance(rec, RecordingProtector):
            assert rec.aads[number - 1] == wire[:36]  # header + SKF header + numbers
        decrypted.append(decrypt_fragment(wire, rec, parsed=outer))
    assert sum(len(d.plaintext) for d in decrypted) == inner_len
    first_header = Message.parse(frags[0])
    random.Random(1).shuffle(decrypted)
    assert reassemble_fragments(first_header, decrypted) == msg


def test_fragment_size_is_maximal() -> None:
    p = CbcTestProtector()
    frags = encrypt_fragments(ike_auth_request(big_cert=3000), p, 300)
    # all but the last fragment use the room up to one cipher block
    assert all(300 - 16 < len(f) <= 300 for f in frags[:-1])


def test_single_and_empty_fragments() -> None:
    p = GcmTestProtector()
    empty = Message(SPI_I, SPI_R, ExchangeType.INFORMATIONAL, 0, 4)
    (frag,) = encrypt_fragments(empty, p, 1280)
    d = decrypt_fragment(frag, p)
    assert d == DecryptedFragment(1, 1, 0, b"")
    assert reassemble_fragments(Message.parse(frag), [d]) == empty
    with pytest.raises(ValueError):
        encrypt_fragments(ike_auth_request(), p, 28 + 8 + 8 + 16)  # no room for content


def test_fragment_tampering_and_bad_sets() -> None:
    p = GcmTestProtector()
    frags = encrypt_fragments(ike_auth_request(big_cert=600), p, 300)
    assert len(frags) >= 3
    header = Message.parse(frags[0])
    ds = [decrypt_fragment(f, p) for f in frags]
    # Fragment Number / Total Fragments are authenticated
    bad = bytearray(frags[1])
    bad[32:34] = (3).to_bytes(2, "big")
    with pytest.raises(IntegrityError):
        decrypt_fragment(bytes(bad), p)
    # §2.6 validity checks happen before decryption
    for number, total in [(0, 3), (4, 3), (1, 0)]:
        bad = bytearray(frags[0])
        bad[32:36] = struct.pack("!HH", number, total)
        with pytest.raises(ParseError):
            decrypt_fragment(bytes(bad), p)
    with pytest.raises(ParseError):
        reassemble_fragments(header, ds[:-1])  # missing the last
    with pytest.raises(ParseError):
        reassemble_fragments(header, [*ds, ds[0]])  # duplicate
    with pytest.raises(ParseError):
        reassemble_fragments(header, [])
    inconsistent = [ds[0]._replace(total_fragments=len(ds) + 1), *ds[1:]]
    with pytest.raises(ParseError):
        reassemble_fragments(header, inconsistent)
    with pytest.raises(ParseError):  # corrupted content of one fragment
        reassemble_fragments(header, [ds[0], ds[1]._replace(plaintext=b"\xff" * 3), *ds[2:]])


def test_id_and_delete_helpers_through_message() -> None:
    msg = Message(SPI_I, SPI_R, ExchangeType.INFORMATIONAL, HeaderFlag.INITIATOR, 5)
    msg.add(PayloadType.DELETE, DeletePayload.delete_child_sa([0xC0FFEE01, 0xC0FFEE02]))
    msg.add(PayloadType.DELETE, DeletePayload.delete_ike_sa())
    msg.add(PayloadType.NOTIFY, NotifyPayload.error(NotifyType.INVALID_SYNTAX))
    back = decrypt_message(encrypt_message(msg, GcmTestProtector()), GcmTestProtector())
    dels = back.get_all(PayloadType.DELETE)
    assert [d.protocol for d in dels] == [ProtocolId.ESP, ProtocolId.IKE]
    assert dels[0].spi_values() == [0xC0FFEE01, 0xC0FFEE02]
    assert [n.type for n in back.error_notifies()] == [NotifyType.INVALID_SYNTAX]
    idp = ike_auth_request().get(PayloadType.IDr)
    assert idp is not None and idp.id_type == IdType.ID_IPV4_ADDR
    assert idp.to_string() == "198.51.100.2"


def test_serialise_rejects_misplaced_sk() -> None:
    msg = Message(SPI_I, SPI_R, ExchangeType.INFORMATIONAL, 0, 1)
    msg.add(PayloadType.SK, SkPayload(0, b"x" * 24))
    msg.add(PayloadType.NONCE, NoncePayload(b"\x00" * 16))
    with pytest.raises(ValueError):
        msg.serialise()
