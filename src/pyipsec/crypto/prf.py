"""Pseudorandom functions of IKEv2 and the ``prf+`` construction.

* PRF_HMAC_SHA1 (RFC 2104), PRF_HMAC_SHA2_256/384/512 (RFC 4868 §2.1.2): the
  full HMAC output; the preferred key size is the hash output size (RFC 7296 §2.13).
* PRF_AES128_XCBC (RFC 4434): AES-XCBC-MAC-128 (RFC 3566 §4) with the RFC 4434
  §2 key handling — keys shorter than 16 octets are padded with zero octets on
  the right, longer keys are first reduced with AES-XCBC-MAC-128 under the
  all-zero key.
* ``prf+`` (RFC 7296 §2.13): ``T1 | T2 | ...`` with ``Tn = prf(K, Tn-1 | S | n)``,
  undefined beyond 255 blocks.

All primitives come from pyca ``cryptography``: HMAC from
``cryptography.hazmat.primitives.hmac``, and the XCBC *mode* is assembled from
the AES block cipher (an AES-CBC pass with a zero IV for the chained blocks and
one AES-ECB call for the final block, exactly RFC 3566 §4 steps 1-3).
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as _hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ..constants import PrfId

__all__ = [
    "PRF_PLUS_MAX_BLOCKS",
    "AesXcbcMac",
    "HmacPrf",
    "Prf",
    "XcbcPrf",
    "get_prf",
    "prf_plus",
    "supported_prfs",
]

#: RFC 7296 §2.13: "The prf+ function is not defined beyond 255 times the size
#: of the prf function output."
PRF_PLUS_MAX_BLOCKS = 255

_AES_BLOCK = 16
#: the one-octet block counters of prf+ (§2.13), 1..255
_BLOCK_NUMBERS = tuple(bytes((n,)) for n in range(PRF_PLUS_MAX_BLOCKS + 1))


class Prf:
    """A negotiated PRF (RFC 7296 §2.13).

    ``key_size`` is the preferred key size (the length of SK_d, SK_pi, SK_pr,
    RFC 7296 §2.14), ``output_size`` the length of one output block.
    """

    __slots__ = ("id", "key_size", "output_size")

    def __init__(self, prf_id: PrfId, key_size: int, output_size: int) -> None:
        self.id: PrfId = prf_id
        self.key_size: int = key_size
        self.output_size: int = output_size

    def __call__(self, key: bytes, data: bytes) -> bytes:
        """``prf(key, data)``."""
        raise NotImplementedError

    def plus(self, key: bytes, seed: bytes, length: int) -> bytes:
        """``prf+(key, seed)`` truncated to ``length`` octets (RFC 7296 §2.13).

        Raises :class:`ValueError` when more than 255 blocks would be needed.
        """
        return prf_plus(self, key, seed, length)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id.name}>"


class HmacPrf(Prf):
    """PRF_HMAC_* (RFC 2104; RFC 4868 §2.1.2 for the SHA-2 family)."""

    __slots__ = ("_algorithm",)

    def __init__(self, prf_id: PrfId, algorithm: hashes.HashAlgorithm) -> None:
        super().__init__(prf_id, algorithm.digest_size, algorithm.digest_size)
        self._algorithm = algorithm

    def __call__(self, key: bytes, data: bytes) -> bytes:
        h = _hmac.HMAC(key, self._algorithm)
        h.update(data)
        return h.finalize()

    def plus(self, key: bytes, seed: bytes, length: int) -> bytes:
        # Same construction as prf_plus(), but the keyed HMAC state is built once
        # and copied for every block.
        blocks = _blocks_needed(self.output_size, length)
        keyed = _hmac.HMAC(key, self._algorithm)
        out: list[bytes] = []
        prev = b""
        for n in range(1, blocks + 1):
            h = keyed.copy()
            h.update(b"".join((prev, seed, _BLOCK_NUMBERS[n])))  # Tn-1 | S | n: one call
            prev = h.finalize()
            out.append(prev)
        return b"".join(out)[:length]


class AesXcbcMac:
    """AES-XCBC-MAC-128 under one 128-bit key (RFC 3566 §4), precomputed subkeys.

    K1 = AES-K(0x01^16), K2 = AES-K(0x02^16), K3 = AES-K(0x03^16).  The message
    blocks but the last are chained with AES-K1 in CBC mode (zero IV); the last
    block is XORed with K2 (complete) or, after 10* padding, with K3, XORed with
    the chaining value and enciphered with K1.
    """

    __slots__ = ("_aes_k1", "_k2", "_k3")

    def __init__(self, key: bytes) -> None:
        if len(key) != _AES_BLOCK:
            raise ValueError("AES-XCBC-MAC needs a 128-bit key (RFC 3566 §4)")
        ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
        k1 = ecb.update(b"\x01" * 16)
        self._k2 = int.from_bytes(ecb.update(b"\x02" * 16), "big")
        self._k3 = int.from_bytes(ecb.update(b"\x03" * 16), "big")
        self._aes_k1 = algorithms.AES(k1)

    def mac(self, data: bytes) -> bytes:
        """The full 128-bit AES-XCBC-MAC of ``data``."""
        n = len(data)
        if n and n % _AES_BLOCK == 0:
            head, last, sub = data[: n - _AES_BLOCK], data[n - _AES_BLOCK :], self._k2
        else:
            cut = n - n % _AES_BLOCK
            tail = data[cut:] + b"\x80"
            head, last = data[:cut], tail + b"\x00" * (_AES_BLOCK - len(tail))
            sub = self._k3
        chain = 0
        if head:
            cbc = Cipher(self._aes_k1, modes.CBC(b"\x00" * _AES_BLOCK)).encryptor()
            chain = int.from_bytes(cbc.update(head)[-_AES_BLOCK:], "big")
        block = (int.from_bytes(last, "big") ^ chain ^ sub).to_bytes(_AES_BLOCK, "big")
        ecb = Cipher(self._aes_k1, modes.ECB()).encryptor()
        return ecb.update(block)


class XcbcPrf(Prf):
    """PRF_AES128_XCBC (RFC 4434): variable-length keys mapped to 128 bits (§2)."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(PrfId.AES128_XCBC, 16, 16)

    @staticmethod
    def normalise_key(key: bytes) -> bytes:
        """RFC 4434 §2: zero-pad short keys; reduce long keys with AES-XCBC-MAC(0^128, key)."""
        if len(key) == _AES_BLOCK:
            return key
        if len(key) < _AES_BLOCK:
            return key + b"\x00" * (_AES_BLOCK - len(key))
        return AesXcbcMac(b"\x00" * _AES_BLOCK).mac(key)

    def __call__(self, key: bytes, data: bytes) -> bytes:
        return AesXcbcMac(self.normalise_key(key)).mac(data)

    def plus(self, key: bytes, seed: bytes, length: int) -> bytes:
        blocks = _blocks_needed(self.output_size, length)
        mac = AesXcbcMac(self.normalise_key(key))
        out: list[bytes] = []
        prev = b""
        for n in range(1, blocks + 1):
            prev = mac.mac(prev + seed + bytes((n,)))
            out.append(prev)
        return b"".join(out)[:length]


def _blocks_needed(output_size: int, length: int) -> int:
    if length < 0:
        raise ValueError("prf+ length must not be negative")
    blocks = -(-length // output_size)
    if blocks > PRF_PLUS_MAX_BLOCKS:
        raise ValueError(
            f"prf+ is not defined beyond {PRF_PLUS_MAX_BLOCKS} blocks "
            f"({PRF_PLUS_MAX_BLOCKS * output_size} octets), {length} requested (RFC 7296 §2.13)"
        )
    return blocks


def prf_plus(prf: Prf, key: bytes, seed: bytes, length: int) -> bytes:
    """Generic ``prf+`` (RFC 7296 §2.13) for any :class:`Prf`."""
    blocks = _blocks_needed(prf.output_size, length)
    out: list[bytes] = []
    prev = b""
    for n in range(1, blocks + 1):
        prev = prf(key, prev + seed + bytes((n,)))
        out.append(prev)
    return b"".join(out)[:length]


_PRFS: dict[int, Prf] = {
    PrfId.HMAC_SHA1: HmacPrf(PrfId.HMAC_SHA1, hashes.SHA1()),
    PrfId.HMAC_SHA2_256: HmacPrf(PrfId.HMAC_SHA2_256, hashes.SHA256()),
    PrfId.HMAC_SHA2_384: HmacPrf(PrfId.HMAC_SHA2_384, hashes.SHA384()),
    PrfId.HMAC_SHA2_512: HmacPrf(PrfId.HMAC_SHA2_512, hashes.SHA512()),
    PrfId.AES128_XCBC: XcbcPrf(),
}


def supported_prfs() -> tuple[PrfId, ...]:
    """The PRF transform IDs this module implements."""
    return tuple(PrfId(k) for k in _PRFS)


def get_prf(prf_id: int) -> Prf:
    """The PRF for a Transform Type 2 ID (stateless, shared instances).

    Raises :class:`ValueError` for an ID this module does not implement; proposal
    selection only ever picks supported IDs, so this is a configuration error.
    """
    prf = _PRFS.get(prf_id)  # IntEnum keys: a plain int finds them (no enum call)
    if prf is None:
        raise ValueError(f"unsupported PRF transform {prf_id}")
    return prf
