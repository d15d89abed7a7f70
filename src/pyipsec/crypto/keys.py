"""Key derivation of IKEv2 (RFC 7296 §2.13-§2.18) and the PSK AUTH value (§2.15).

* SKEYSEED = prf(Ni | Nr, g^ir) (§2.14).  For PRF_AES128_XCBC and
  PRF_AES128_CMAC only the first 64 bits of Ni and of Nr form the key, while
  the full nonces are used for prf+ (§2.14, "historical backward-compatibility").
* {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr}
  = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr) (§2.14).  SK_d/SK_pi/SK_pr have the
  PRF's preferred key size; SK_e includes the AEAD salt and SK_a is empty for
  AEAD (RFC 5282 §7.1, RFC 7634 §3).
* Rekeyed IKE SA: SKEYSEED = prf_old(SK_d(old), g^ir(new) | Ni | Nr), then the
  §2.14 prf+ with the *new* PRF, nonces and SPIs (§2.18).
* Child SA: KEYMAT = prf+(SK_d, [g^ir(new) |] Ni | Nr) (§2.17), split as
  encr_i | integ_i | encr_r | integ_r (initiator-to-responder first, encryption
  key before integrity key; RFC 4301 order).
* PSK AUTH = prf(prf(PSK, "Key Pad for IKEv2"), <SignedOctets>), SignedOctets
  = RealMessage | Nonce(peer) | prf(SK_p, RestOfIDPayload) (§2.15).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from ..constants import IntegId, PrfId
from .encr import encr_key_size, is_aead
from .integ import get_integ
from .prf import Prf, get_prf

__all__ = [
    "KEY_PAD",
    "ChildKeys",
    "ChildSuite",
    "IkeKeys",
    "IkeSuite",
    "child_keymat",
    "configured_psk_auth",
    "derive_child_keys",
    "derive_ike_keys",
    "derive_rekeyed_ike_keys",
    "key_lengths",
    "psk_auth",
    "signed_octets",
    "skeyseed",
    "split_child_keymat",
]

#: RFC 7296 §2.15: 17 ASCII characters, no NUL.
KEY_PAD = b"Key Pad for IKEv2"

_FIXED_KEY_PRFS = (PrfId.AES128_XCBC, PrfId.AES128_CMAC)


@functools.lru_cache(maxsize=256)
def key_lengths(encr_id: int, key_bits: int | None, integ_id: int | None) -> tuple[int, int]:
    """``(encryption key octets incl. salt, integrity key octets)`` for one direction
    (a function of the transform IDs: computed once per suite)."""
    enc = encr_key_size(encr_id, key_bits)
    if is_aead(encr_id) or integ_id is None or integ_id == IntegId.NONE:
        return enc, 0
    return enc, get_integ(integ_id).key_size


def _as_prf(prf: Prf | int) -> Prf:
    return prf if isinstance(prf, Prf) else get_prf(prf)


@dataclass(frozen=True, slots=True)
class IkeSuite:
    """The negotiated IKE SA transforms (one of each type, RFC 7296 §3.3.2)."""

    encr_id: int
    key_bits: int | None
    prf_id: int
    integ_id: int | None
    dh_group: int

    @property
    def is_aead(self) -> bool:
        return is_aead(self.encr_id)

    @property
    def prf(self) -> Prf:
        return get_prf(self.prf_id)

    def key_lengths(self) -> tuple[int, int]:
        """``(len(SK_e), len(SK_a))`` — AEAD: salt included, SK_a 0."""
        return key_lengths(self.encr_id, self.key_bits, self.integ_id)


@dataclass(frozen=True, slots=True)
class ChildSuite:
    """The negotiated Child SA (ESP) transforms; ``dh_group`` 0 = no PFS."""

    encr_id: int
    key_bits: int | None
    integ_id: int | None
    dh_group: int = 0
    esn: bool = False

    @property
    def is_aead(self) -> bool:
        return is_aead(self.encr_id)

    def key_lengths(self) -> tuple[int, int]:
        """``(encryption key incl. salt, integrity key)`` octets per direction."""
        return key_lengths(self.encr_id, self.key_bits, self.integ_id)

    @property
    def keymat_length(self) -> int:
        """Total KEYMAT for both directions (§2.17)."""
        enc, integ = self.key_lengths()
        return 2 * (enc + integ)


@dataclass(frozen=True, slots=True)
class IkeKeys:
    """The seven IKE SA secrets of RFC 7296 §2.14 (not shown in ``repr``)."""

    sk_d: bytes = field(repr=False)
    sk_ai: bytes = field(repr=False)
    sk_ar: bytes = field(repr=False)
    sk_ei: bytes = field(repr=False)
    sk_er: bytes = field(repr=False)
    sk_pi: bytes = field(repr=False)
    sk_pr: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class ChildKeys:
    """Child SA keys per direction (§2.17); ``*_i`` protect initiator-to-responder traffic."""

    encr_i: bytes = field(repr=False)
    integ_i: bytes = field(repr=False)
    encr_r: bytes = field(repr=False)
    integ_r: bytes = field(repr=False)


def skeyseed(prf: Prf | int, ni: bytes, nr: bytes, shared: bytes) -> bytes:
    """SKEYSEED = prf(Ni | Nr, g^ir) (§2.14), with the XCBC/CMAC 64-bit nonce rule."""
    p = _as_prf(prf)
    key = ni[:8] + nr[:8] if p.id in _FIXED_KEY_PRFS else ni + nr
    return p(key, shared)


def _expand_ike_keys(
    suite: IkeSuite, seed_key: bytes, ni: bytes, nr: bytes, spi_i: bytes, spi_r: bytes
) -> IkeKeys:
    prf = suite.prf
    enc, integ = suite.key_lengths()
    sizes = (prf.key_size, integ, integ, enc, enc, prf.key_size, prf.key_size)
    stream = prf.plus(seed_key, ni + nr + spi_i + spi_r, sum(sizes))
    parts: list[bytes] = []
    pos = 0
    for n in sizes:
        parts.append(stream[pos : pos + n])
        pos += n
    return IkeKeys(*parts)


def derive_ike_keys(
    suite: IkeSuite, ni: bytes, nr: bytes, shared: bytes, spi_i: bytes, spi_r: bytes
) -> IkeKeys:
    """SK_d ... SK_pr of a new IKE SA from IKE_SA_INIT (§2.14)."""
    return _expand_ike_keys(suite, skeyseed(suite.prf, ni, nr, shared), ni, nr, spi_i, spi_r)


def derive_rekeyed_ike_keys(
    suite: IkeSuite,
    old_sk_d: bytes,
    shared: bytes,
    ni: bytes,
    nr: bytes,
    spi_i: bytes,
    spi_r: bytes,
    *,
    old_prf: Prf | int | None = None,
) -> IkeKeys:
    """Keys of the IKE SA created by a rekey (§2.18).

    SKEYSEED uses the *old* IKE SA's PRF (``old_prf``, default: the new suite's
    PRF); prf+ uses the new suite's PRF with the new nonces and SPIs.
    """
    prf_old = suite.prf if old_prf is None else _as_prf(old_prf)
    seed = prf_old(old_sk_d, shared + ni + nr)
    return _expand_ike_keys(suite, seed, ni, nr, spi_i, spi_r)


def child_keymat(
    prf: Prf | int, sk_d: bytes, ni: bytes, nr: bytes, length: int, shared: bytes | None = None
) -> bytes:
    """KEYMAT = prf+(SK_d, [g^ir(new) |] Ni | Nr) (§2.17)."""
    seed = (shared or b"") + ni + nr
    return _as_prf(prf).plus(sk_d, seed, length)


def split_child_keymat(keymat: bytes, encr_len: int, integ_len: int) -> ChildKeys:
    """Split KEYMAT into (encr_i, integ_i, encr_r, integ_r) per §2.17 ordering."""
    need = 2 * (encr_len + integ_len)
    if len(keymat) < need:
        raise ValueError(f"KEYMAT has {len(keymat)} octets, {need} needed")
    a = encr_len
    b = a + integ_len
    c = b + encr_len
    return ChildKeys(keymat[:a], keymat[a:b], keymat[b:c], keymat[c:need])


def derive_child_keys(
    suite: ChildSuite,
    prf: Prf | int,
    sk_d: bytes,
    ni: bytes,
    nr: bytes,
    shared: bytes | None = None,
) -> ChildKeys:
    """KEYMAT for ``suite`` (§2.17) split into per-direction keys."""
    enc, integ = suite.key_lengths()
    return split_child_keymat(
        child_keymat(prf, sk_d, ni, nr, suite.keymat_length, shared), enc, integ
    )


def psk_auth(prf: Prf | int, psk: bytes, signed: bytes) -> bytes:
    """AUTH = prf(prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>) (§2.15).

    Also the EAP form: pass the MSK (or SK_pi/SK_pr) as ``psk``.
    """
    p = _as_prf(prf)
    return p(p(psk, KEY_PAD), signed)


def configured_psk_auth(prf: Prf | int, psk: bytes, signed: bytes) -> bytes:
    """:func:`psk_auth` for a pre-shared key of the configuration: its inner
    ``prf(PSK, "Key Pad for IKEv2")`` is computed once per (PRF, PSK) and kept (a few
    per gateway; the PSK itself is in the configuration anyway).  Never for a
    per-session secret such as EAP's MSK: the cache would keep it."""
    p = _as_prf(prf)
    return p(_padded_psk(p.id, psk), signed)


@functools.lru_cache(maxsize=64)
def _padded_psk(prf_id: int, psk: bytes) -> bytes:
    return get_prf(prf_id)(psk, KEY_PAD)


def signed_octets(
    message_bytes: bytes, nonce_peer: bytes, prf: Prf | int, sk_p: bytes, id_payload_body: bytes
) -> bytes:
    """InitiatorSignedOctets / ResponderSignedOctets (§2.15).

    ``message_bytes`` is the own IKE_SA_INIT message as sent (from the first
    SPI octet, without a non-ESP marker), ``nonce_peer`` the peer's nonce data,
    ``sk_p`` SK_pi or SK_pr, ``id_payload_body`` the ID payload without its
    generic header (IDType | RESERVED | data).
    """
    return message_bytes + nonce_peer + _as_prf(prf)(sk_p, id_payload_body)
