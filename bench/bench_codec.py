"""Throughput of the IKEv2 message codec (not a test): ``python3 bench/bench_codec.py``.

Measures, for a typical IKE_AUTH request (IDi, IDr, AUTH, SA with two ESP
proposals, TSi, TSr, CP and a few notifies):

* parse + serialise of the plaintext payload chain (messages/s),
* SK encrypt and decrypt with AES-256-GCM-16 (messages/s), through
  ``pyipsec.crypto.encr.make_sk_protector`` when available, else through a small
  local AESGCM protector,
* and, as a baseline in the same run, the raw AESGCM encrypt/decrypt rate for
  the same plaintext size, so the codec's overhead is visible as a ratio.

Runs in well under ten seconds.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pyipsec.ikev2.constants import (
    AuthMethod,
    CfgAttr,
    CfgType,
    EncrId,
    EsnId,
    ExchangeType,
    HeaderFlag,
    IntegId,
    IpProto,
    NotifyType,
    PayloadType,
    ProtocolId,
    TransformType,
)
from pyipsec.ikev2.errors import IntegrityError
from pyipsec.ikev2.message import (
    Message,
    SkProtector,
    decrypt_message,
    encrypt_message,
)
from pyipsec.ikev2.payloads import (
    AuthPayload,
    CpPayload,
    IdPayload,
    NotifyPayload,
    Proposal,
    SaPayload,
    TrafficSelector,
    Transform,
    TsPayload,
    serialise_payloads,
)

SECONDS_PER_CASE = 1.0


class _LocalGcm:
    """AES-256-GCM-16 SK protector (RFC 5282): salt | 8-octet counter IV, AAD = aad."""

    iv_size = 8
    icv_size = 16

    def __init__(self, keymat: bytes) -> None:
        self._aead = AESGCM(keymat[:32])
        self._salt = keymat[32:]
        self._iv = 0

    def sealed_length(self, plain_len: int) -> int:
        return 8 + plain_len + 1 + 16

    def seal(self, aad: bytes, plaintext: bytes) -> bytes:
        self._iv += 1
        iv = self._iv.to_bytes(8, "big")
        return iv + self._aead.encrypt(self._salt + iv, plaintext + b"\x00", aad)

    def open(self, aad: bytes, body: bytes) -> bytes:
        try:
            padded = self._aead.decrypt(self._salt + body[:8], body[8:], aad)
        except InvalidTag:
            raise IntegrityError("ICV mismatch") from None
        return padded[: len(padded) - padded[-1] - 1]


def make_protector(keymat: bytes) -> tuple[SkProtector, str]:
    try:
        from pyipsec.crypto.encr import make_sk_protector

        prot: SkProtector = make_sk_protector(EncrId.AES_GCM_16, 256, None, keymat, b"")
        msg = ike_auth_request()
        if decrypt_message(encrypt_message(msg, prot), prot) != msg:
            raise RuntimeError("round trip failed")
        return prot, "pyipsec.crypto.encr.make_sk_protector"
    except Exception as exc:  # the crypto module may not exist yet
        return _LocalGcm(keymat), f"local AESGCM protector ({type(exc).__name__})"


def ike_auth_request() -> Message:
    """A typical IKE_AUTH request of an initiator (RFC 7296 §1.2)."""
    esp = [
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
                Transform(TransformType.ENCR, EncrId.AES_CBC, 256),
                Transform(TransformType.INTEG, IntegId.HMAC_SHA2_256_128),
                Transform(TransformType.ESN, EsnId.NO_ESN),
            ],
        ),
    ]
    return Message(
        spi_i=os.urandom(8),
        spi_r=os.urandom(8),
        exchange=ExchangeType.IKE_AUTH,
        flags=HeaderFlag.INITIATOR,
        message_id=1,
        payloads=[
            (PayloadType.IDi, IdPayload.from_string("left.example.net")),
            (PayloadType.NOTIFY, NotifyPayload.status(NotifyType.INITIAL_CONTACT)),
            (PayloadType.IDr, IdPayload.from_string("right.example.net")),
            (PayloadType.AUTH, AuthPayload(AuthMethod.PSK, os.urandom(32))),
            (
                PayloadType.CP,
                CpPayload(CfgType.CFG_REQUEST, [(CfgAttr.INTERNAL_IP4_ADDRESS, b"")]),
            ),
            (PayloadType.SA, SaPayload(esp)),
            (
                PayloadType.TSi,
                TsPayload([TrafficSelector.from_network("10.1.0.0/16"), TrafficSelector.any(6)]),
            ),
            (
                PayloadType.TSr,
                TsPayload([TrafficSelector.from_network("10.2.0.0/16", IpProto.TCP, (1, 1024))]),
            ),
            (PayloadType.NOTIFY, NotifyPayload.status(NotifyType.MOBIKE_SUPPORTED)),
            (PayloadType.NOTIFY, NotifyPayload.status(NotifyType.ESP_TFC_PADDING_NOT_SUPPORTED)),
            (PayloadType.NOTIFY, NotifyPayload.status(NotifyType.NON_FIRST_FRAGMENTS_ALSO)),
        ],
    )


def rate(fn: Callable[[], object], seconds: float = SECONDS_PER_CASE) -> float:
    """Calls per second of ``fn`` over roughly ``seconds``."""
    n, batch = 0, 64
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(batch):
            fn()
        n += batch
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


def main() -> None:
    msg = ike_auth_request()
    wire = msg.serialise()
    _, inner = serialise_payloads(msg.payloads)
    keymat = os.urandom(36)
    protector, which = make_protector(keymat)
    sealed = encrypt_message(msg, protector)

    assert Message.parse(wire) == msg
    assert decrypt_message(sealed, protector) == msg

    aead = AESGCM(keymat[:32])
    nonce = keymat[32:] + bytes(8)
    aad = sealed[:32]
    plain = inner + b"\x00"
    raw_ct = aead.encrypt(nonce, plain, aad)

    print(f"IKE_AUTH request: {len(wire)} octets plaintext, {len(sealed)} octets protected")
    print(f"SK protector: {which}")
    results = [
        ("parse (plaintext chain)", rate(lambda: Message.parse(wire))),
        ("serialise (plaintext chain)", rate(msg.serialise)),
        ("parse + serialise", rate(lambda: Message.parse(wire).serialise())),
        ("SK encrypt_message", rate(lambda: encrypt_message(msg, protector))),
        ("SK decrypt_message (incl. parse)", rate(lambda: decrypt_message(sealed, protector))),
        ("baseline: raw AESGCM encrypt", rate(lambda: aead.encrypt(nonce, plain, aad))),
        ("baseline: raw AESGCM decrypt", rate(lambda: aead.decrypt(nonce, raw_ct, aad))),
    ]
    for name, r in results:
        print(f"  {name:34s} {r:>10,.0f} msg/s  {1e6 / r:8.1f} us/msg")
    r = dict(results)
    enc = r["SK encrypt_message"] / r["baseline: raw AESGCM encrypt"]
    dec = r["SK decrypt_message (incl. parse)"] / r["baseline: raw AESGCM decrypt"]
    print(f"  rate ratio encrypt_message / raw AESGCM encrypt: {enc:.3f}")
    print(f"  rate ratio decrypt_message / raw AESGCM decrypt: {dec:.3f}")


if __name__ == "__main__":
    main()
