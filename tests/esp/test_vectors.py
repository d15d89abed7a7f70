"""Known-answer tests: RFC 3602 §4 (cases 5-8), RFC 7634 Appendix A, RFC 4106 by hand."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pyipsec.esp import EspInbound, EspOutbound
from pyipsec.esp.packet import build_ip_packet, transport_encapsulate
from pyipsec.ikev2.constants import EncrId, IntegId

HERE = Path(__file__).parent
RFC3602 = json.loads((HERE / "rfc3602_esp_vectors.json").read_text())["cases"]
RFC7634 = json.loads((HERE / "rfc7634_esp_vector.json").read_text())


def _h(s: str) -> bytes:
    return bytes.fromhex(s)


def _fixed(value: bytes) -> Any:
    def source(n: int) -> bytes:
        assert n == len(value)
        return value

    return source


def _inner(case: dict[str, Any]) -> bytes:
    if case["mode"] == "tunnel":
        return _h(case["original_ip_header"]) + _h(case["original_payload"])
    return _h(case["original_payload"])


@pytest.mark.parametrize("case", RFC3602, ids=lambda c: f"case{c['case']}")
def test_rfc3602_protect_exact(case: dict[str, Any]) -> None:
    out = EspOutbound(
        int(case["spi"], 16),
        EncrId.AES_CBC,
        128,
        None,
        _h(case["key"]),
        iv_source=_fixed(_h(case["iv"])),
        seq_start=case["sequence_number"],
    )
    esp = out.protect(_inner(case), int(case["next_header"], 16))
    assert esp == _h(case["esp_header"]) + _h(case["iv"]) + _h(case["encrypted_data"])
    assert out.seq == case["sequence_number"]
    if case["mode"] == "transport":
        # The whole RFC packet, outer IPv4 header rebuilt (protocol 50, length, checksum).
        header, proto, payload = transport_encapsulate(
            _h(case["original_ip_header"]) + _h(case["original_payload"])
        )
        assert proto == int(case["next_header"], 16)
        assert payload == _inner(case)
        assert build_ip_packet(header, 50, esp) == _h(case["esp_packet"])
        assert build_ip_packet(header, 50, esp)[:20] == _h(case["post_encryption_ip_header"])


@pytest.mark.parametrize("case", RFC3602, ids=lambda c: f"case{c['case']}")
def test_rfc3602_unprotect_exact(case: dict[str, Any]) -> None:
    packet = _h(case["esp_packet"])
    outer, proto, esp = transport_encapsulate(packet)
    assert proto == 50
    inb = EspInbound(
        int(case["spi"], 16), EncrId.AES_CBC, 128, None, _h(case["key"]), replay_window=0
    )
    nh, payload = inb.unprotect(esp)
    assert nh == int(case["next_header"], 16)
    assert payload == _inner(case)
    if case["mode"] == "transport":
        original = _h(case["original_ip_header"]) + _h(case["original_payload"])
        assert build_ip_packet(outer, nh, payload) == original
    assert inb.stats.packets == 1
    assert inb.stats.bytes == len(payload)


def test_rfc3602_fast_path_decrypts_like_a_fresh_context() -> None:
    """Packets from the chained-CBC outbound path decrypt with a per-packet CBC(IV)."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    case = RFC3602[2]
    key = _h(case["key"])
    out = EspOutbound(0x8765, EncrId.AES_CBC, 128, None, key)
    ivs = set()
    for i in range(5):
        inner = _inner(case)[: 20 + i * 7]
        esp = out.protect(inner, 4)
        iv, ct = esp[8:24], esp[24:]
        ivs.add(iv)
        pt = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor().update(ct)
        pad = pt[-2]
        assert pt[-1] == 4
        assert pt[: len(pt) - 2 - pad] == inner
        assert pt[len(pt) - 2 - pad : -2] == bytes(range(1, pad + 1))
        assert len(pt) % 16 == 0
    assert len(ivs) == 5


def test_rfc7634_appendix_a_protect_exact() -> None:
    v = RFC7634
    out = EspOutbound(
        int(v["spi"], 16),
        EncrId.CHACHA20_POLY1305,
        256,
        None,
        _h(v["keymat"]),
        iv_source=_fixed(_h(v["iv"])),
        seq_start=v["sequence_number"],
    )
    esp = out.protect(_h(v["source_packet"]), 4)
    assert esp == _h(v["esp_packet"])[20:]
    assert esp[16:] == _h(v["ciphertext"]) + _h(v["tag"])


def test_rfc7634_appendix_a_unprotect_exact() -> None:
    v = RFC7634
    inb = EspInbound(int(v["spi"], 16), EncrId.CHACHA20_POLY1305, 256, None, _h(v["keymat"]))
    nh, payload = inb.unprotect(_h(v["esp_packet"])[20:])
    assert (nh, payload) == (4, _h(v["source_packet"]))
    assert inb.replay.top == v["sequence_number"]


@pytest.mark.parametrize("esn", [False, True])
@pytest.mark.parametrize("key_bits", [128, 192, 256])
def test_rfc4106_gcm_matches_direct_aesgcm(key_bits: int, esn: bool) -> None:
    """RFC 4106 has no vectors: rebuild the expected packet with AESGCM directly
    (§3.1 IV, §4 nonce = salt | IV, §5 AAD, RFC 4303 §2.4 padding)."""
    key = bytes(range(key_bits // 8))
    salt = b"\xca\xfe\xba\xbe"
    spi = 0xDEADBEEF
    seq = (7 << 32) | 0x1234 if esn else 0x1234
    payload = bytes(range(61))  # 61 + 2 -> 1 byte of padding to 64
    out = EspOutbound(spi, EncrId.AES_GCM_16, key_bits, None, key + salt, esn=esn, seq_start=seq)
    esp = out.protect(payload, 17)

    iv = struct.pack("!Q", seq)
    aad = (
        struct.pack("!III", spi, seq >> 32, seq & 0xFFFFFFFF)
        if esn
        else struct.pack("!II", spi, seq & 0xFFFFFFFF)
    )
    plaintext = payload + b"\x01" + b"\x01" + b"\x11"
    expected = (
        struct.pack("!II", spi, seq & 0xFFFFFFFF)
        + iv
        + AESGCM(key).encrypt(salt + iv, plaintext, aad)
    )
    assert esp == expected
    inb = EspInbound(spi, EncrId.AES_GCM_16, key_bits, None, key + salt, esn=esn)
    if esn:
        inb.replay.top = seq - 1  # receiver already in subspace 7
    assert inb.unprotect(esp) == (17, payload)


@pytest.mark.parametrize(
    ("integ_id", "hash_cls", "key_len", "icv_len"),
    [
        (IntegId.HMAC_SHA1_96, hashes.SHA1, 20, 12),
        (IntegId.HMAC_SHA2_256_128, hashes.SHA256, 32, 16),
        (IntegId.HMAC_SHA2_384_192, hashes.SHA384, 48, 24),
        (IntegId.HMAC_SHA2_512_256, hashes.SHA512, 64, 32),
    ],
)
@pytest.mark.parametrize("esn", [False, True])
def test_cbc_hmac_icv_by_hand(
    integ_id: int, hash_cls: Any, key_len: int, icv_len: int, esn: bool
) -> None:
    """ICV = truncated HMAC over SPI|Seq|IV|ciphertext (+ Seq-high with ESN, RFC 4303 §2.2.1,
    not transmitted); RFC 3602 case 5 gives the encrypted part."""
    case = RFC3602[0]
    ikey = bytes(range(1, key_len + 1))
    seq = (3 << 32) | 1 if esn else 1
    out = EspOutbound(
        0x4321,
        EncrId.AES_CBC,
        128,
        integ_id,
        _h(case["key"]),
        ikey,
        esn=esn,
        iv_source=_fixed(_h(case["iv"])),
        seq_start=seq,
    )
    esp = out.protect(_inner(case), 1)
    body = _h(case["esp_header"]) + _h(case["iv"]) + _h(case["encrypted_data"])
    mac = hmac.HMAC(ikey, hash_cls())
    mac.update(body + (struct.pack("!I", 3) if esn else b""))
    assert esp == body + mac.finalize()[:icv_len]
