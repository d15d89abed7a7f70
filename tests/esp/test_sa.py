"""EspOutbound / EspInbound behaviour (RFC 4303 §2-§3, RFC 4106, RFC 7634, RFC 4304)."""

from __future__ import annotations

import os
import struct
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pyipsec.esp import (
    EspAuthError,
    EspConfigError,
    EspDummyPacket,
    EspFormatError,
    EspInbound,
    EspOutbound,
    EspReplayError,
    EspSequenceExhausted,
    EspSpiMismatch,
    suite_sizes,
)
from pyipsec.ikev2.constants import EncrId, IntegId

M32 = 0xFFFFFFFF
SPI = 0x0A0B0C0D

# (name, encr_id, key_bits, integ_id)
SUITES: list[tuple[str, int, int, int | None]] = [
    ("aes128gcm16", EncrId.AES_GCM_16, 128, None),
    ("aes192gcm16", EncrId.AES_GCM_16, 192, None),
    ("aes256gcm16", EncrId.AES_GCM_16, 256, None),
    ("chacha20poly1305", EncrId.CHACHA20_POLY1305, 256, None),
    ("aes128-sha1", EncrId.AES_CBC, 128, IntegId.HMAC_SHA1_96),
    ("aes192-sha256", EncrId.AES_CBC, 192, IntegId.HMAC_SHA2_256_128),
    ("aes256-sha256", EncrId.AES_CBC, 256, IntegId.HMAC_SHA2_256_128),
    ("aes256-sha384", EncrId.AES_CBC, 256, IntegId.HMAC_SHA2_384_192),
    ("aes128-sha512", EncrId.AES_CBC, 128, IntegId.HMAC_SHA2_512_256),
    ("null-sha256", EncrId.NULL, 0, IntegId.HMAC_SHA2_256_128),
]
SUITE_IDS = [s[0] for s in SUITES]


def make_pair(
    suite: tuple[str, int, int, int | None], *, esn: bool = False, window: int = 128, **kw: Any
) -> tuple[EspOutbound, EspInbound]:
    _, encr, bits, integ = suite
    ek_len, ik_len = suite_sizes(encr, bits, integ)
    ek = os.urandom(ek_len)
    ik = os.urandom(ik_len)
    out = EspOutbound(SPI, encr, bits, integ, ek, ik, esn=esn, **kw)
    inb = EspInbound(SPI, encr, bits, integ, ek, ik, esn=esn, replay_window=window)
    return out, inb


def ip4(payload_len: int, total_extra: int = 0) -> bytes:  # payload_len <= 256
    """A minimal IPv4 packet whose total length covers ``payload_len`` bytes of payload."""
    total = 20 + payload_len
    hdr = bytes([0x45, 0, total >> 8, total & 0xFF]) + bytes(5) + b"\x11" + bytes(10)
    return hdr + bytes(range(256))[:payload_len] + bytes(total_extra)


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
@pytest.mark.parametrize("esn", [False, True], ids=["noesn", "esn"])
def test_round_trip_all_sizes(suite: tuple[str, int, int, int | None], esn: bool) -> None:
    out, inb = make_pair(suite, esn=esn)
    for size in [*range(0, 40), 255, 1400, 9000]:
        payload = os.urandom(size)
        esp = out.protect(payload, 6)
        assert struct.unpack("!II", esp[:8]) == (SPI, out.seq)
        # 4-byte alignment of the trailer (CBC: 16-byte ciphertext blocks), RFC 4303 §2.4
        assert (len(esp) - 8 - out._icv_len) % 4 == 0
        assert inb.unprotect(esp) == (6, payload)
    assert inb.stats.packets == out.stats.packets == 43
    assert inb.stats.bytes == out.stats.bytes


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
@pytest.mark.parametrize("esn", [False, True], ids=["noesn", "esn"])
def test_tamper_anywhere_is_auth_error(suite: tuple[str, int, int, int | None], esn: bool) -> None:
    out, inb = make_pair(suite, esn=esn)
    esp = out.protect(b"hello world" * 10, 17)
    for pos in range(4, len(esp)):  # the SPI is matched, not authenticated by us
        bad = bytearray(esp)
        bad[pos] ^= 0x40
        with pytest.raises((EspAuthError, EspReplayError)):
            inb.unprotect(bytes(bad))
    assert inb.stats.auth_failures + inb.stats.replay_drops == len(esp) - 4
    assert inb.stats.auth_failures > 0
    # The window was not updated by any failure: the genuine packet still goes through.
    assert inb.replay.top == 0
    assert inb.unprotect(esp) == (17, b"hello world" * 10)


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
def test_wrong_keys_fail(suite: tuple[str, int, int, int | None]) -> None:
    out, _ = make_pair(suite)
    _, inb = make_pair(suite)
    with pytest.raises(EspAuthError):
        inb.unprotect(out.protect(b"x" * 100, 4))
    assert inb.stats.auth_failures == 1


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
def test_replay_and_reorder(suite: tuple[str, int, int, int | None]) -> None:
    out, inb = make_pair(suite, window=32)
    pkts = [out.protect(bytes([i]) * 50, 4) for i in range(1, 41)]
    assert inb.unprotect(pkts[5])[1] == bytes([6]) * 50
    with pytest.raises(EspReplayError, match="duplicate"):
        inb.unprotect(pkts[5])
    assert inb.unprotect(pkts[0])[1] == bytes([1]) * 50
    assert inb.unprotect(pkts[39])[1] == bytes([40]) * 50  # top = 40, lowest = 9
    with pytest.raises(EspReplayError, match="too old"):
        inb.unprotect(pkts[7])  # seq 8
    assert inb.unprotect(pkts[8])[1] == bytes([9]) * 50  # seq 9: exactly the left edge
    assert inb.stats.replay_drops == 2
    assert inb.stats.packets == 4


def test_spi_mismatch_and_short_packets() -> None:
    out, inb = make_pair(SUITES[0])
    esp = out.protect(b"abc", 4)
    with pytest.raises(EspSpiMismatch):
        inb.unprotect(struct.pack("!I", SPI + 1) + esp[4:])
    for n in range(0, 8 + 8 + 2 + 16):
        with pytest.raises(EspFormatError):
            inb.unprotect(esp[:n])
    assert inb.stats.spi_mismatches == 1
    assert inb.stats.format_errors == 34


def test_cbc_misaligned_ciphertext_is_format_error() -> None:
    out, inb = make_pair(SUITES[6])
    esp = out.protect(b"a" * 30, 4)
    icv = 16
    body, tag = esp[:-icv], esp[-icv:]
    with pytest.raises(EspFormatError):
        inb.unprotect(body[:-1] + tag)
    with pytest.raises(EspFormatError):
        inb.unprotect(esp[: 8 + 16] + tag)  # IV but no ciphertext block
    assert inb.unprotect(esp) == (4, b"a" * 30)


def _gcm_raw(
    key: bytes, salt: bytes, seq: int, plaintext_with_trailer: bytes, esn_high: int | None = None
) -> bytes:
    """Build a GCM ESP packet by hand, with any trailer (to test the receiver's checks)."""
    header = struct.pack("!IIQ", SPI, seq & M32, seq)
    aad = header[:8] if esn_high is None else struct.pack("!III", SPI, esn_high, seq & M32)
    return header + AESGCM(key).encrypt(salt + header[8:], plaintext_with_trailer, aad)


@pytest.mark.parametrize(
    ("trailer_plaintext", "ok"),
    [
        (b"data" + b"\x01\x02\x02\x04", True),
        (b"data" + b"\x01\x03\x02\x04", False),  # non-monotonic padding (§2.4)
        (b"data" + b"\x00\x00\x02\x04", False),  # zero padding
        (b"da" + b"\x01\x02\x03\x04\x04\x04", True),
        (b"\x01\x02\x03\x04\x04\x04", True),  # empty payload
        (b"\x01\x02\x03\x05\x04", False),  # pad length 5 > available 3
        (b"\xff\x04", False),  # pad length 255 > available 0
        (b"\x00\x04", True),
        (b"\x00", False),  # shorter than pad length + next header
    ],
)
def test_padding_checks(trailer_plaintext: bytes, ok: bool) -> None:
    key, salt = os.urandom(16), os.urandom(4)
    inb = EspInbound(SPI, EncrId.AES_GCM_16, 128, None, key + salt)
    packet = _gcm_raw(key, salt, 1, trailer_plaintext)
    if ok:
        nh, payload = inb.unprotect(packet)
        assert nh == 4
        assert payload == trailer_plaintext[: len(trailer_plaintext) - 2 - trailer_plaintext[-2]]
    else:
        with pytest.raises(EspFormatError):
            inb.unprotect(packet)
        assert inb.stats.format_errors == 1
        assert inb.stats.packets == 0


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
def test_dummy_packets(suite: tuple[str, int, int, int | None]) -> None:
    out, inb = make_pair(suite, tfc_pad_to=100)
    dummy = out.make_dummy()
    with pytest.raises(EspDummyPacket):
        inb.unprotect(dummy)
    assert inb.stats.dummy_drops == 1
    assert inb.stats.packets == 0
    with pytest.raises(EspReplayError):  # authentic, so the window recorded it
        inb.unprotect(dummy)
    assert out.stats.dummy_sent == 1
    assert out.stats.packets == 0
    assert out.stats.bytes == 0
    with pytest.raises(EspDummyPacket):
        inb.unprotect(out.make_dummy(0))


@pytest.mark.parametrize("suite", [SUITES[0], SUITES[6]], ids=["gcm", "cbc"])
def test_tfc_padding_is_added_and_stripped(suite: tuple[str, int, int, int | None]) -> None:
    out, inb = make_pair(suite, tfc_pad_to=500)
    pkt = ip4(30)
    esp = out.protect(pkt, 4)
    assert len(esp) >= 8 + 500
    assert inb.unprotect(esp) == (4, pkt)
    # transport-mode payloads (no length field) are not padded
    assert len(out.protect(b"u" * 30, 17)) < 200
    # IPv6: payload length field
    v6 = bytes([0x60, 0, 0, 0, 0, 8, 17, 64]) + bytes(32) + b"12345678"
    assert inb.unprotect(out.protect(v6, 41)) == (41, v6)


def test_sequence_exhaustion_32bit() -> None:
    out, inb = make_pair(SUITES[0], seq_start=M32 - 1)
    assert not out.exhausted
    inb.replay.top = M32 - 2
    assert inb.unprotect(out.protect(b"a", 4)) == (4, b"a")
    assert not out.exhausted
    assert inb.unprotect(out.protect(b"b", 4)) == (4, b"b")
    assert out.seq == M32
    assert out.exhausted
    with pytest.raises(EspSequenceExhausted):
        out.protect(b"c", 4)
    assert out.seq == M32  # unchanged: never cycles (RFC 4303 §3.3.3)
    with pytest.raises(EspSequenceExhausted):
        out.make_dummy()


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
def test_sequence_exhaustion_every_suite(suite: tuple[str, int, int, int | None]) -> None:
    out, _ = make_pair(suite, seq_start=M32)
    out.protect(b"x", 4)
    with pytest.raises(EspSequenceExhausted):
        out.protect(b"y", 4)


def test_esn_counter_continues_past_32_bits() -> None:
    out, inb = make_pair(SUITES[0], esn=True, seq_start=M32 - 2)
    inb.replay.top = M32 - 3
    for expected in range(M32 - 2, M32 + 5):
        esp = out.protect(b"p", 4)
        assert out.seq == expected
        assert struct.unpack("!I", esp[4:8])[0] == expected & M32
        assert esp[8:16] == struct.pack("!Q", expected)  # IV = 64-bit sequence number
        assert inb.unprotect(esp) == (4, b"p")
    assert inb.replay.top == M32 + 4
    assert not out.exhausted


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
def test_esn_wrap_reordered_end_to_end(suite: tuple[str, int, int, int | None]) -> None:
    out, inb = make_pair(suite, esn=True, window=64, seq_start=M32 - 5)
    inb.replay.top = M32 - 6
    pkts: dict[int, bytes] = {}
    for i in range(12):
        esp = out.protect(b"%d" % i, 4)
        pkts[out.seq] = esp
    order = [(1 << 32) + 2, M32 - 5, (1 << 32) + 0, M32, (1 << 32) + 5, M32 - 1]
    for seq in order:
        assert inb.unprotect(pkts[seq])[0] == 4
    for seq in order:
        with pytest.raises(EspReplayError):
            inb.unprotect(pkts[seq])
    assert inb.replay.top == (1 << 32) + 5


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
def test_esn_wrong_inferred_high_is_auth_failure_without_window_update(
    suite: tuple[str, int, int, int | None],
) -> None:
    """Sender is in subspace 2, receiver believes subspace 0: the ICV fails (the high half
    is authenticated but not sent) and the window does not move (RFC 4303 App. A2.3)."""
    out, inb = make_pair(suite, esn=True, seq_start=(2 << 32) | 500)
    inb.esn_resync_after = 0
    inb.replay.update(400)
    esp = out.protect(b"z", 4)
    with pytest.raises(EspAuthError):
        inb.unprotect(esp)
    assert inb.stats.auth_failures == 1
    assert inb.replay.top == 400
    assert inb.replay.bitmap == 1


@pytest.mark.parametrize("suite", [SUITES[0], SUITES[6]], ids=["gcm", "cbc"])
def test_esn_resync_after_massive_loss(suite: tuple[str, int, int, int | None]) -> None:
    """RFC 4303 Appendix A3: after N consecutive ICV failures, retry with Seq-high + k."""
    _, encr, bits, integ = suite
    ek_len, ik_len = suite_sizes(encr, bits, integ)
    ek, ik = os.urandom(ek_len), os.urandom(ik_len)
    out = EspOutbound(SPI, encr, bits, integ, ek, ik, esn=True, seq_start=(3 << 32) | 10)
    inb = EspInbound(SPI, encr, bits, integ, ek, ik, esn=True, esn_resync_after=4)
    inb.replay.update(100)  # receiver still in subspace 0
    for _ in range(4):
        with pytest.raises(EspAuthError):
            inb.unprotect(out.protect(b"lost sync", 4))
    # 5th failure triggers the resync: Seqh inferred 0, tries 1, 2, 3 -> 3 verifies
    assert inb.unprotect(out.protect(b"back", 4)) == (4, b"back")
    assert inb.stats.esn_resyncs == 1
    assert inb.replay.top == (3 << 32) | 14
    assert inb.unprotect(out.protect(b"next", 4)) == (4, b"next")
    # forged packets do not resync
    bad = bytearray(out.protect(b"q", 4))
    bad[-1] ^= 1
    for _ in range(10):
        with pytest.raises(EspAuthError):
            inb.unprotect(bytes(bad))


def test_cbc_esn_icv_not_transmitted_high_bits() -> None:
    suite = SUITES[6]
    _, encr, bits, integ = suite
    ek, ik = os.urandom(32), os.urandom(32)
    out = EspOutbound(SPI, encr, bits, integ, ek, ik, esn=True, seq_start=(9 << 32) | 1)
    esp = out.protect(b"x" * 20, 4)
    body, icv = esp[:-16], esp[-16:]
    assert len(body) == 8 + 16 + 32  # high bits not on the wire
    h = hmac.HMAC(ik, hashes.SHA256())
    h.update(body + struct.pack("!I", 9))
    assert icv == h.finalize()[:16]


def test_cbc_without_integrity_requires_no_replay_window() -> None:
    key = os.urandom(16)
    with pytest.raises(EspConfigError):
        EspInbound(SPI, EncrId.AES_CBC, 128, None, key)
    with pytest.raises(EspConfigError):
        EspInbound(SPI, EncrId.AES_CBC, 128, None, key, esn=True, replay_window=0)
    with pytest.raises(EspConfigError):
        EspOutbound(SPI, EncrId.AES_CBC, 128, None, key, esn=True)
    inb = EspInbound(SPI, EncrId.AES_CBC, 128, None, key, replay_window=0)
    out = EspOutbound(SPI, EncrId.AES_CBC, 128, None, key)
    esp = out.protect(b"confidential only", 17)
    assert inb.unprotect(esp) == (17, b"confidential only")
    assert inb.unprotect(esp) == (17, b"confidential only")  # no anti-replay


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((SPI, EncrId.AES_GCM_16, 128, None, bytes(16)), {}),  # salt missing
        ((SPI, EncrId.AES_GCM_16, 64, None, bytes(12)), {}),
        ((SPI, EncrId.AES_GCM_16, 128, IntegId.HMAC_SHA2_256_128, bytes(20), bytes(32)), {}),
        ((SPI, EncrId.CHACHA20_POLY1305, 256, None, bytes(32)), {}),
        ((SPI, EncrId.AES_CBC, 256, IntegId.HMAC_SHA2_256_128, bytes(32), bytes(20)), {}),
        ((SPI, EncrId.AES_CBC, 100, IntegId.HMAC_SHA2_256_128, bytes(32), bytes(32)), {}),
        ((SPI, EncrId.NULL, 0, None, b""), {}),  # NULL/NULL
        ((SPI, EncrId.TRIPLE_DES, 192, IntegId.HMAC_SHA1_96, bytes(24), bytes(20)), {}),
        ((SPI, EncrId.AES_CBC, 128, IntegId.HMAC_MD5_96, bytes(16), bytes(16)), {}),
        ((0, EncrId.AES_GCM_16, 128, None, bytes(20)), {}),
        ((SPI, EncrId.AES_GCM_16, 128, None, bytes(20)), {"replay_window": -1}),
    ],
)
def test_config_errors(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    with pytest.raises(EspConfigError):
        EspInbound(*args, **kwargs)
    if not kwargs:
        with pytest.raises(EspConfigError):
            EspOutbound(*args)


def test_subclass_dispatch_and_isinstance() -> None:
    for suite in SUITES:
        out, inb = make_pair(suite)
        assert isinstance(out, EspOutbound)
        assert isinstance(inb, EspInbound)
        assert not hasattr(out, "__dict__")
        assert not hasattr(inb, "__dict__")
        assert not hasattr(inb.stats, "__dict__")
        assert "spi=0x0a0b0c0d" in repr(out)


def test_stats_snapshot() -> None:
    out, inb = make_pair(SUITES[0])
    inb.unprotect(out.protect(b"12345", 4))
    d = inb.stats.as_dict()
    assert d["packets"] == 1
    assert d["bytes"] == 5
    assert set(d) >= {"replay_drops", "auth_failures", "format_errors", "dummy_drops"}


def test_gcm_iv_is_sequence_number_and_unique() -> None:
    out, _ = make_pair(SUITES[0])
    ivs = {out.protect(b"", 4)[8:16] for _ in range(1000)}
    assert len(ivs) == 1000
    assert struct.pack("!Q", 1000) in ivs


@pytest.mark.parametrize("suite", SUITES, ids=SUITE_IDS)
def test_esn_packet_from_before_sa_start_is_replay_drop(
    suite: tuple[str, int, int, int | None],
) -> None:
    """Fresh ESN SA (Th = 0, Tl = 0, Case B): a low half in the top of the 32-bit space would
    belong to subspace -1, which does not exist (RFC 4303 App. A2.2)."""
    out, inb = make_pair(suite, esn=True, seq_start=M32 - 3)
    with pytest.raises(EspReplayError, match="outside"):
        inb.unprotect(out.protect(b"early", 4))
    assert inb.stats.replay_drops == 1
    assert inb.replay.top == 0
