"""Integrity (INTEG, Transform Type 3) algorithms for the IKEv2 SK payload and ESP.

* AUTH_HMAC_SHA1_96 (RFC 2404): HMAC-SHA1 truncated to 96 bits, 160-bit key.
* AUTH_HMAC_SHA2_256_128 / _384_192 / _512_256 (RFC 4868 §2.1.1, §2.2): HMAC
  with the key size equal to the hash output size, truncated to half of it.
* AUTH_AES_XCBC_96 (RFC 3566): AES-XCBC-MAC-128 truncated to 96 bits, 128-bit key.

A :class:`Signer` is bound to one key: it builds the keyed HMAC state once and
``copy()``\\ s it for every message, so per-packet work is the hash of the data
only.  :meth:`Signer.verify` compares in constant time (``hmac.compare_digest``).
"""

from __future__ import annotations

import hmac as _stdlib_hmac
from collections.abc import Iterable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as _hmac

from ..constants import IntegId
from .prf import AesXcbcMac

__all__ = ["HmacInteg", "Integ", "Signer", "XcbcInteg", "get_integ", "supported_integs"]


class Signer:
    """Computes and checks ICVs under one key."""

    __slots__ = ("icv_size",)

    def __init__(self, icv_size: int) -> None:
        self.icv_size: int = icv_size

    def sign_parts(self, parts: Iterable[bytes]) -> bytes:
        """The ICV over the concatenation of ``parts`` (no copy of the data)."""
        raise NotImplementedError

    def sign(self, data: bytes) -> bytes:
        """The (truncated) ICV of ``data``."""
        return self.sign_parts((data,))

    def verify_parts(self, parts: Iterable[bytes], icv: bytes) -> bool:
        """Constant-time check of ``icv`` against the ICV over ``parts``."""
        return _stdlib_hmac.compare_digest(self.sign_parts(parts), icv)

    def verify(self, data: bytes, icv: bytes) -> bool:
        """Constant-time check of ``icv`` against the ICV of ``data``."""
        return self.verify_parts((data,), icv)


class _HmacSigner(Signer):
    __slots__ = ("_keyed",)

    def __init__(self, key: bytes, algorithm: hashes.HashAlgorithm, icv_size: int) -> None:
        super().__init__(icv_size)
        self._keyed = _hmac.HMAC(key, algorithm)

    def sign_parts(self, parts: Iterable[bytes]) -> bytes:
        h = self._keyed.copy()
        for p in parts:
            h.update(p)
        return h.finalize()[: self.icv_size]


class _XcbcSigner(Signer):
    __slots__ = ("_mac",)

    def __init__(self, key: bytes, icv_size: int) -> None:
        super().__init__(icv_size)
        self._mac = AesXcbcMac(key)

    def sign_parts(self, parts: Iterable[bytes]) -> bytes:
        return self._mac.mac(b"".join(parts))[: self.icv_size]


class Integ:
    """An INTEG transform: ``key_size`` octets of key, ``icv_size`` octets of ICV."""

    __slots__ = ("icv_size", "id", "key_size")

    def __init__(self, integ_id: IntegId, key_size: int, icv_size: int) -> None:
        self.id: IntegId = integ_id
        self.key_size: int = key_size
        self.icv_size: int = icv_size

    def _check_key(self, key: bytes) -> None:
        if len(key) != self.key_size:
            raise ValueError(f"{self.id.name} needs a {self.key_size}-octet key, got {len(key)}")

    def signer(self, key: bytes) -> Signer:
        """A :class:`Signer` bound to ``key`` (``ValueError`` on a wrong key length)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id.name}>"


class HmacInteg(Integ):
    """HMAC-based INTEG transforms (RFC 2404, RFC 4868 §2.1.1)."""

    __slots__ = ("_algorithm",)

    def __init__(self, integ_id: IntegId, algorithm: hashes.HashAlgorithm, icv_size: int) -> None:
        super().__init__(integ_id, algorithm.digest_size, icv_size)
        self._algorithm = algorithm

    def signer(self, key: bytes) -> Signer:
        self._check_key(key)
        return _HmacSigner(key, self._algorithm, self.icv_size)


class XcbcInteg(Integ):
    """AUTH_AES_XCBC_96 (RFC 3566 §2-§4)."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(IntegId.AES_XCBC_96, 16, 12)

    def signer(self, key: bytes) -> Signer:
        self._check_key(key)
        return _XcbcSigner(key, self.icv_size)


_INTEGS: dict[int, Integ] = {
    IntegId.HMAC_SHA1_96: HmacInteg(IntegId.HMAC_SHA1_96, hashes.SHA1(), 12),
    IntegId.AES_XCBC_96: XcbcInteg(),
    IntegId.HMAC_SHA2_256_128: HmacInteg(IntegId.HMAC_SHA2_256_128, hashes.SHA256(), 16),
    IntegId.HMAC_SHA2_384_192: HmacInteg(IntegId.HMAC_SHA2_384_192, hashes.SHA384(), 24),
    IntegId.HMAC_SHA2_512_256: HmacInteg(IntegId.HMAC_SHA2_512_256, hashes.SHA512(), 32),
}


def supported_integs() -> tuple[IntegId, ...]:
    """The INTEG transform IDs this module implements."""
    return tuple(IntegId(k) for k in _INTEGS)


def get_integ(integ_id: int) -> Integ:
    """The INTEG transform for a Transform Type 3 ID.

    Raises :class:`ValueError` for NONE or an unimplemented ID (a configuration
    error: proposal selection only picks supported IDs).
    """
    integ = _INTEGS.get(integ_id)  # IntEnum keys: a plain int finds them (no enum call)
    if integ is None:
        raise ValueError(f"unsupported INTEG transform {integ_id}")
    return integ
