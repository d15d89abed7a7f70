"""Protection of the IKEv2 Encrypted (SK) payload body: ``IV | ciphertext | ICV``.

Two constructions, both behind the :class:`SkProtector` protocol used by
:mod:`pyipsec.ikev2.message`:

* **CBC + INTEG** (RFC 7296 §3.14; AES-CBC per RFC 3602): a fresh unpredictable
  16-octet IV per message, plaintext ``payloads | padding | pad length`` aligned
  to the AES block, ICV = truncated MAC over ``aad | IV | ciphertext`` where
  ``aad`` is the IKE header and everything up to and including the SK generic
  payload header.  On receipt the ICV is checked *before* decrypting.
* **AEAD** (RFC 5282 for AES-GCM with 8/12/16-octet ICV, RFC 7634 §3 for
  ChaCha20-Poly1305): the SK_e key carries ``key | 4-octet salt``, the payload
  carries an 8-octet explicit IV, the nonce is ``salt | IV``, the associated
  data is ``aad`` (RFC 5282 §5.1) and the plaintext is ``payloads | pad length``
  with no padding (RFC 5282 §3 has no alignment; RFC 7634 §3: send none).

On receipt any amount of padding that fits is accepted (RFC 7296 §3.14).  Every
failure of :meth:`SkProtector.open` — short body, misaligned body, bad ICV/tag,
pad length larger than the plaintext — raises
:class:`~pyipsec.errors.IntegrityError` and nothing else.

IV generation (``iv_source``)
    CBC needs unpredictable IVs: the default is :func:`os.urandom`.  AEAD needs
    IVs that never repeat under one key: the default is a 64-bit counter that
    starts at a random value and is incremented per message, so a protector
    never repeats an IV, and two protectors accidentally built for the same key
    only collide if their random ranges overlap (probability about
    ``messages / 2**64``).  Tests pass ``iv_source=lambda n: fixed`` to get
    known-answer output; a caller-supplied source is used for every message.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from ..constants import EncrId, IntegId
from ..errors import IntegrityError
from .integ import Signer, get_integ

__all__ = [
    "AeadProtector",
    "CbcProtector",
    "IvSource",
    "SkProtector",
    "encr_key_size",
    "is_aead",
    "make_sk_protector",
    "supported_encrs",
]

IvSource = Callable[[int], bytes]

_AES_BLOCK = 16
_SALT = 4
_AEAD_IV = 8
_GCM_ICV: dict[int, int] = {EncrId.AES_GCM_8: 8, EncrId.AES_GCM_12: 12, EncrId.AES_GCM_16: 16}
_AES_BITS = (128, 192, 256)


class SkProtector(Protocol):
    """Seals/opens the body of an SK payload (see the module docstring)."""

    iv_size: int
    icv_size: int
    block_size: int

    def seal(self, aad: bytes, plaintext: bytes) -> bytes: ...

    def open(self, aad: bytes, body: bytes) -> bytes: ...

    def sealed_length(self, plain_len: int) -> int: ...


def is_aead(encr_id: int) -> bool:
    """Whether ``encr_id`` is a combined-mode cipher (no separate INTEG, RFC 5282 §8)."""
    return encr_id in _GCM_ICV or encr_id == EncrId.CHACHA20_POLY1305


def supported_encrs() -> tuple[EncrId, ...]:
    """The ENCR transform IDs this module implements."""
    return (EncrId.AES_CBC, *(EncrId(k) for k in _GCM_ICV), EncrId.CHACHA20_POLY1305)


def _cipher_key_bytes(encr_id: int, key_bits: int | None) -> int:
    if encr_id == EncrId.CHACHA20_POLY1305:
        # RFC 7634 §4: no Key Length attribute; the key is always 256 bits.
        if key_bits not in (None, 256):
            raise ValueError("ChaCha20-Poly1305 takes a 256-bit key only (RFC 7634 §4)")
        return 32
    if encr_id == EncrId.AES_CBC or encr_id in _GCM_ICV:
        if key_bits not in _AES_BITS:
            raise ValueError(f"AES needs a Key Length of 128, 192 or 256 bits, got {key_bits}")
        assert key_bits is not None
        return key_bits // 8
    raise ValueError(f"unsupported ENCR transform {encr_id}")


@functools.lru_cache(maxsize=256)
def encr_key_size(encr_id: int, key_bits: int | None) -> int:
    """Octets of keying material for one direction, salt included for AEAD
    (RFC 5282 §7.1: AES key + 4-octet salt; RFC 7634 §3: 32 + 4)."""
    n = _cipher_key_bytes(encr_id, key_bits)
    return n + _SALT if is_aead(encr_id) else n


class _CounterIv:
    """Unique 8-octet IVs: a random 64-bit start, incremented per message."""

    __slots__ = ("_left", "_next")

    def __init__(self) -> None:
        self._next = int.from_bytes(os.urandom(8), "big")
        self._left = 1 << 64

    def __call__(self, n: int) -> bytes:
        if self._left == 0:  # pragma: no cover - 2**64 messages
            raise RuntimeError("AEAD IV space exhausted; rekey the IKE SA")
        self._left -= 1
        value = self._next
        self._next = (value + 1) & 0xFFFFFFFFFFFFFFFF
        return value.to_bytes(n, "big")


class CbcProtector:
    """AES-CBC + INTEG protection of the SK payload (RFC 7296 §3.14, RFC 3602)."""

    __slots__ = ("_aes", "_iv_source", "_signer", "block_size", "icv_size", "iv_size")

    def __init__(self, key: bytes, signer: Signer, *, iv_source: IvSource = os.urandom) -> None:
        self._aes = algorithms.AES(key)
        self._signer = signer
        self._iv_source = iv_source
        self.iv_size: int = _AES_BLOCK
        self.block_size: int = _AES_BLOCK
        self.icv_size: int = signer.icv_size

    def sealed_length(self, plain_len: int) -> int:
        padded = (plain_len + 1 + _AES_BLOCK - 1) // _AES_BLOCK * _AES_BLOCK
        return self.iv_size + padded + self.icv_size

    def seal(self, aad: bytes, plaintext: bytes) -> bytes:
        """``IV | E(payloads | padding | pad length) | ICV`` with minimal padding."""
        pad = -(len(plaintext) + 1) % _AES_BLOCK
        iv = self._iv_source(_AES_BLOCK)
        if len(iv) != _AES_BLOCK:
            raise ValueError("iv_source returned an IV of the wrong size")
        enc = Cipher(self._aes, modes.CBC(iv)).encryptor()
        ct = enc.update(plaintext + bytes(pad) + bytes((pad,))) + enc.finalize()
        icv = self._signer.sign_parts((aad, iv, ct))
        return iv + ct + icv

    def open(self, aad: bytes, body: bytes) -> bytes:
        """Verify the ICV, then decrypt and strip the padding (IntegrityError on failure)."""
        ct_len = len(body) - self.iv_size - self.icv_size
        if ct_len < _AES_BLOCK or ct_len % _AES_BLOCK:
            raise IntegrityError("SK payload body too short or not block aligned")
        iv = body[: self.iv_size]
        ct = body[self.iv_size : self.iv_size + ct_len]
        if not self._signer.verify_parts((aad, iv, ct), body[self.iv_size + ct_len :]):
            raise IntegrityError("SK payload integrity check failed")
        dec = Cipher(self._aes, modes.CBC(iv)).decryptor()
        padded = dec.update(ct) + dec.finalize()
        return _strip_padding(padded)


class AeadProtector:
    """AES-GCM (RFC 5282) / ChaCha20-Poly1305 (RFC 7634 §3) protection of the SK payload."""

    __slots__ = (
        "_aead",
        "_iv_source",
        "_key",
        "_salt",
        "block_size",
        "encr_id",
        "icv_size",
        "iv_size",
    )

    def __init__(self, encr_id: int, keymat: bytes, *, iv_source: IvSource | None = None) -> None:
        self.encr_id = encr_id
        self._key, self._salt = keymat[:-_SALT], keymat[-_SALT:]
        self._aead: AESGCM | ChaCha20Poly1305
        if encr_id == EncrId.CHACHA20_POLY1305:
            self._aead = ChaCha20Poly1305(self._key)
            self.icv_size: int = 16
        else:
            self._aead = AESGCM(self._key)
            self.icv_size = _GCM_ICV[encr_id]
        self.iv_size: int = _AEAD_IV
        self.block_size: int = 1
        self._iv_source: IvSource = _CounterIv() if iv_source is None else iv_source

    def sealed_length(self, plain_len: int) -> int:
        return self.iv_size + plain_len + 1 + self.icv_size

    def seal(self, aad: bytes, plaintext: bytes) -> bytes:
        """``IV | AEAD(salt|IV, payloads | 0x00, aad)`` with the tag truncated to the ICV size."""
        iv = self._iv_source(_AEAD_IV)
        if len(iv) != _AEAD_IV:
            raise ValueError("iv_source returned an IV of the wrong size")
        sealed = self._aead.encrypt(self._salt + iv, plaintext + b"\x00", aad)
        if self.icv_size != 16:
            # GCM-8/12: the ICV is the leftmost bits of the full tag (RFC 4106 §6).
            sealed = sealed[: len(sealed) - 16 + self.icv_size]
        return iv + sealed

    def open(self, aad: bytes, body: bytes) -> bytes:
        """Authenticate and decrypt (IntegrityError on any failure)."""
        if len(body) < self.iv_size + 1 + self.icv_size:
            raise IntegrityError("SK payload body too short")
        nonce = self._salt + body[: self.iv_size]
        try:
            if self.icv_size == 16:
                padded = self._aead.decrypt(nonce, body[self.iv_size :], aad)
            else:
                tag = body[len(body) - self.icv_size :]
                dec = Cipher(
                    algorithms.AES(self._key), modes.GCM(nonce, tag, min_tag_length=self.icv_size)
                ).decryptor()
                dec.authenticate_additional_data(aad)
                padded = dec.update(body[self.iv_size : len(body) - self.icv_size])
                padded += dec.finalize()
        except InvalidTag:
            raise IntegrityError("SK payload authentication failed") from None
        return _strip_padding(padded)


def _strip_padding(padded: bytes) -> bytes:
    """Remove ``padding | pad length``; any length that fits is accepted (RFC 7296 §3.14)."""
    if not padded:
        raise IntegrityError("SK payload plaintext is empty")
    pad = padded[-1]
    if pad + 1 > len(padded):
        raise IntegrityError("SK payload pad length exceeds the plaintext")
    return padded[: len(padded) - pad - 1]


def make_sk_protector(
    encr_id: int,
    key_bits: int | None,
    integ_id: int | None,
    sk_e: bytes,
    sk_a: bytes,
    *,
    iv_source: IvSource | None = None,
) -> SkProtector:
    """Build the protector for one direction of an IKE SA.

    ``sk_e``/``sk_a`` are SK_ei/SK_ai (initiator-to-responder) or SK_er/SK_ar.
    For AEAD, ``integ_id`` must be None or NONE and ``sk_a`` empty (RFC 5282
    §7.1: SK_a has length zero).  ``iv_source`` defaults to :func:`os.urandom`
    for CBC and to a per-protector unique counter for AEAD (module docstring).
    Raises :class:`ValueError` for unsupported transforms or wrong key lengths
    (local programming/configuration errors, never peer-controlled).
    """
    expected = encr_key_size(encr_id, key_bits)
    if len(sk_e) != expected:
        raise ValueError(f"SK_e must be {expected} octets for this suite, got {len(sk_e)}")
    if is_aead(encr_id):
        if integ_id not in (None, IntegId.NONE):
            raise ValueError("an AEAD cipher must not be combined with an INTEG transform")
        if sk_a:
            raise ValueError("SK_a must be empty with an AEAD cipher (RFC 5282 §7.1)")
        return AeadProtector(encr_id, sk_e, iv_source=iv_source)
    if integ_id is None or integ_id == IntegId.NONE:
        raise ValueError("AES-CBC needs an INTEG transform (RFC 7296 §3.14)")
    signer = get_integ(integ_id).signer(sk_a)
    return CbcProtector(sk_e, signer, iv_source=os.urandom if iv_source is None else iv_source)
