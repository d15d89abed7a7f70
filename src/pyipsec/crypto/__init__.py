"""Cryptographic building blocks of IKEv2/IPsec, all on top of pyca ``cryptography``.

* :mod:`.prf`   — PRFs and prf+ (RFC 7296 §2.13, RFC 4868, RFC 4434)
* :mod:`.integ` — INTEG transforms (RFC 2404, RFC 4868, RFC 3566)
* :mod:`.encr`  — SK payload protectors (RFC 7296 §3.14, RFC 5282, RFC 7634)
* :mod:`.ke`    — key exchange methods (RFC 3526, RFC 5903, RFC 8031)
* :mod:`.keys`  — SKEYSEED, SK_*, rekey, Child KEYMAT, PSK AUTH (RFC 7296 §2.14-§2.18)
"""

from __future__ import annotations

from .encr import SkProtector, encr_key_size, is_aead, make_sk_protector, supported_encrs
from .integ import Integ, Signer, get_integ, supported_integs
from .ke import (
    KeyExchange,
    UnsupportedKeyExchange,
    is_supported,
    new_key_exchange,
    public_length,
    supported_groups,
)
from .keys import (
    ChildKeys,
    ChildSuite,
    IkeKeys,
    IkeSuite,
    child_keymat,
    derive_child_keys,
    derive_ike_keys,
    derive_rekeyed_ike_keys,
    key_lengths,
    psk_auth,
    signed_octets,
    skeyseed,
    split_child_keymat,
)
from .prf import Prf, get_prf, supported_prfs

__all__ = [
    "ChildKeys",
    "ChildSuite",
    "IkeKeys",
    "IkeSuite",
    "Integ",
    "KeyExchange",
    "Prf",
    "Signer",
    "SkProtector",
    "UnsupportedKeyExchange",
    "child_keymat",
    "derive_child_keys",
    "derive_ike_keys",
    "derive_rekeyed_ike_keys",
    "encr_key_size",
    "get_integ",
    "get_prf",
    "is_aead",
    "is_supported",
    "key_lengths",
    "make_sk_protector",
    "new_key_exchange",
    "psk_auth",
    "public_length",
    "signed_octets",
    "skeyseed",
    "split_child_keymat",
    "supported_encrs",
    "supported_groups",
    "supported_integs",
    "supported_prfs",
]
