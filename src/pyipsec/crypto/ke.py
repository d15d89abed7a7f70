"""Key exchange methods (Transform Type 4) for IKE_SA_INIT and CREATE_CHILD_SA.

* MODP groups 14, 15, 16 (RFC 3526 §3-§5, generator 2).  The public value is
  ``g^x mod p`` as a big-endian integer zero-padded to the length of the
  prime, and so is the shared secret (RFC 7296 §2.14, §3.4).  All modular
  exponentiation is done by pyca ``cryptography``'s DH with the fixed RFC 3526
  parameters (never generated).  A peer value must have exactly the prime's
  length and satisfy ``1 < y < p - 1``.
* ECP groups 19, 20, 21 (RFC 5903): the KE data is ``x | y`` of the public
  point, each coordinate zero-padded to the field size, with no ``0x04``
  prefix (§7); the shared secret is the x coordinate of the shared point
  (§7, §9), fixed length.  A peer point that is not on the curve is rejected.
* Curve25519 / Curve448, groups 31/32 (RFC 8031 §2-§3.1, RFC 7748): the KE data
  and the shared secret are the raw 32/56-octet values; an all-zero shared
  secret is rejected (RFC 8031 §2).

Every problem with a peer value raises
:class:`~pyipsec.errors.KeyExchangeError` (a ProtocolError answered with
INVALID_SYNTAX), never anything else.

Unknown or unimplemented groups
    :func:`new_key_exchange` raises :class:`UnsupportedKeyExchange`, a
    :class:`ValueError`: choosing a group is a local decision (configuration or
    proposal selection, which only ever selects groups that
    :func:`is_supported` accepts).  A responder that receives a KE payload for
    a group other than the selected one answers INVALID_KE_PAYLOAD
    (:class:`~pyipsec.errors.InvalidKePayload`) before it gets here.

Uniform interface and KEMs (RFC 9370, ML-KEM later)
    A :class:`KeyExchange` is created by either side.  The initiator sends
    ``.public`` and later calls ``.shared_secret(peer_public)`` with the
    responder's KE data.  The responder calls ``.respond(peer_public)`` which
    returns ``(reply_public, shared_secret)``.  For Diffie-Hellman groups
    ``respond`` simply returns the own public value and the shared secret.  A
    KEM such as ML-KEM fits the same shape: the initiator's ``public`` is the
    encapsulation key and ``shared_secret(ciphertext)`` decapsulates; the
    responder's ``respond(encapsulation_key)`` encapsulates and returns
    ``(ciphertext, secret)`` — the responder never needs its own ``.public``
    before seeing the initiator's value.  Callers should therefore always use
    ``respond`` on the responder side.
"""

from __future__ import annotations

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dh, ec, x448, x25519

from ..constants import DhId
from ..errors import KeyExchangeError

__all__ = [
    "MODP_PRIMES",
    "EcpKeyExchange",
    "KeyExchange",
    "ModpKeyExchange",
    "MontgomeryKeyExchange",
    "UnsupportedKeyExchange",
    "is_supported",
    "new_key_exchange",
    "public_length",
    "supported_groups",
]


class UnsupportedKeyExchange(ValueError):
    """The key exchange method is not implemented (a local, configuration-time error)."""

    def __init__(self, group: int) -> None:
        super().__init__(f"unsupported key exchange method (DH group) {group}")
        self.group = group


def _hex(*lines: str) -> int:
    return int("".join(lines), 16)


#: RFC 3526 primes (generator 2), by IKEv2 group number.
MODP_PRIMES: dict[int, int] = {
    # RFC 3526 §3, 2048-bit MODP Group, id 14
    DhId.MODP_2048: _hex(
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
        "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
        "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
        "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
        "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
        "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
        "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
        "3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF",
    ),
    # RFC 3526 §4, 3072-bit MODP Group, id 15
    DhId.MODP_3072: _hex(
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
        "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
        "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
        "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
        "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
        "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
        "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
        "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33",
        "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7",
        "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864",
        "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2",
        "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF",
    ),
    # RFC 3526 §5, 4096-bit MODP Group, id 16
    DhId.MODP_4096: _hex(
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
        "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
        "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
        "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
        "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
        "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
        "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
        "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33",
        "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7",
        "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864",
        "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2",
        "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A92108011A723C12A787E6D7",
        "88719A10BDBA5B2699C327186AF4E23C1A946834B6150BDA2583E9CA2AD44CE8",
        "DBBBC2DB04DE8EF92E8EFC141FBECAA6287C59474E6BC05D99B2964FA090C3A2",
        "233BA186515BE7ED1F612970CEE2D7AFB81BDD762170481CD0069127D5B05AA9",
        "93B4EA988D8FDDC186FFB7DC90A6C08F4DF435C934063199FFFFFFFFFFFFFFFF",
    ),
}
MODP_GENERATOR = 2

_ECP_CURVES: dict[int, tuple[type[ec.EllipticCurve], int]] = {
    DhId.ECP_256: (ec.SECP256R1, 32),
    DhId.ECP_384: (ec.SECP384R1, 48),
    DhId.ECP_521: (ec.SECP521R1, 66),
}
_MONTGOMERY_LEN: dict[int, int] = {DhId.CURVE25519: 32, DhId.CURVE448: 56}

_MODP_PARAMS: dict[int, dh.DHParameters] = {}


def _modp_parameters(group: int) -> dh.DHParameters:
    params = _MODP_PARAMS.get(group)
    if params is None:
        params = dh.DHParameterNumbers(MODP_PRIMES[group], MODP_GENERATOR).parameters()
        _MODP_PARAMS[group] = params
    return params


class KeyExchange:
    """One ephemeral key exchange (see the module docstring for the interface)."""

    __slots__ = ("group", "public")

    def __init__(self, group: int, public: bytes) -> None:
        self.group: int = group
        self.public: bytes = public

    def shared_secret(self, peer_public: bytes) -> bytes:
        """The shared secret g^ir from the peer's KE data (KeyExchangeError if invalid)."""
        raise NotImplementedError

    def respond(self, peer_public: bytes) -> tuple[bytes, bytes]:
        """Responder side: ``(own KE data to send, shared secret)``."""
        return self.public, self.shared_secret(peer_public)

    def __repr__(self) -> str:
        try:
            name = DhId(self.group).name
        except ValueError:
            name = str(self.group)
        return f"<{type(self).__name__} group={name}>"


class ModpKeyExchange(KeyExchange):
    """Finite-field DH over an RFC 3526 group."""

    __slots__ = ("_key", "_numbers", "_size")

    def __init__(self, group: int, private: bytes | None = None) -> None:
        params = _modp_parameters(group)
        numbers = params.parameter_numbers()
        p = numbers.p
        size = (p.bit_length() + 7) // 8
        if private is None:
            key = params.generate_private_key()
        else:
            x = int.from_bytes(private, "big")
            if not 1 < x < p - 1:
                raise ValueError("MODP private exponent out of range")
            # DHPrivateNumbers needs y = g^x mod p.  Let cryptography compute it:
            # a key object with a placeholder public value, exchanged with the
            # "public key" g, yields g^x mod p.
            gen = dh.DHPublicNumbers(MODP_GENERATOR, numbers)
            tmp = dh.DHPrivateNumbers(x, gen).private_key()
            y = int.from_bytes(tmp.exchange(gen.public_key()), "big")
            key = dh.DHPrivateNumbers(x, dh.DHPublicNumbers(y, numbers)).private_key()
        y_own = key.public_key().public_numbers().y
        super().__init__(group, y_own.to_bytes(size, "big"))
        self._key = key
        self._numbers = numbers
        self._size = size

    def shared_secret(self, peer_public: bytes) -> bytes:
        if len(peer_public) != self._size:
            raise KeyExchangeError(
                f"MODP group {self.group}: KE data is {len(peer_public)} octets, "
                f"expected {self._size}"
            )
        y = int.from_bytes(peer_public, "big")
        if not 1 < y < self._numbers.p - 1:
            raise KeyExchangeError(f"MODP group {self.group}: peer value out of range")
        try:
            peer = dh.DHPublicNumbers(y, self._numbers).public_key()
            secret = self._key.exchange(peer)
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise KeyExchangeError(f"MODP group {self.group}: invalid peer value") from exc
        return secret.rjust(self._size, b"\x00")


class EcpKeyExchange(KeyExchange):
    """ECDH over a NIST prime curve with the RFC 5903 §7 encoding."""

    __slots__ = ("_coord", "_curve", "_key")

    def __init__(self, group: int, private: bytes | None = None) -> None:
        curve_cls, coord = _ECP_CURVES[group]
        curve = curve_cls()
        if private is None:
            key = ec.generate_private_key(curve)
        else:
            key = ec.derive_private_key(int.from_bytes(private, "big"), curve)
        nums = key.public_key().public_numbers()
        super().__init__(group, nums.x.to_bytes(coord, "big") + nums.y.to_bytes(coord, "big"))
        self._key = key
        self._curve = curve
        self._coord = coord

    def shared_secret(self, peer_public: bytes) -> bytes:
        if len(peer_public) != 2 * self._coord:
            raise KeyExchangeError(
                f"ECP group {self.group}: KE data is {len(peer_public)} octets, "
                f"expected {2 * self._coord}"
            )
        try:
            peer = ec.EllipticCurvePublicKey.from_encoded_point(self._curve, b"\x04" + peer_public)
            secret = self._key.exchange(ec.ECDH(), peer)
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise KeyExchangeError(f"ECP group {self.group}: peer point not on the curve") from exc
        return secret.rjust(self._coord, b"\x00")


class MontgomeryKeyExchange(KeyExchange):
    """X25519 / X448 (RFC 8031, RFC 7748 §6)."""

    __slots__ = ("_key", "_size")

    def __init__(self, group: int, private: bytes | None = None) -> None:
        size = _MONTGOMERY_LEN[group]
        key: x25519.X25519PrivateKey | x448.X448PrivateKey
        if group == DhId.CURVE25519:
            key = (
                x25519.X25519PrivateKey.generate()
                if private is None
                else x25519.X25519PrivateKey.from_private_bytes(private)
            )
        else:
            key = (
                x448.X448PrivateKey.generate()
                if private is None
                else x448.X448PrivateKey.from_private_bytes(private)
            )
        super().__init__(group, key.public_key().public_bytes_raw())
        self._key = key
        self._size = size

    def shared_secret(self, peer_public: bytes) -> bytes:
        if len(peer_public) != self._size:
            raise KeyExchangeError(
                f"group {self.group}: KE data is {len(peer_public)} octets, expected {self._size}"
            )
        try:
            if isinstance(self._key, x25519.X25519PrivateKey):
                secret = self._key.exchange(x25519.X25519PublicKey.from_public_bytes(peer_public))
            else:
                secret = self._key.exchange(x448.X448PublicKey.from_public_bytes(peer_public))
        except (ValueError, UnsupportedAlgorithm) as exc:
            # cryptography refuses an all-zero result (small-order peer point).
            raise KeyExchangeError(f"group {self.group}: invalid peer public value") from exc
        if not any(secret):  # RFC 8031 §2: MUST check for the all-zero value
            raise KeyExchangeError(f"group {self.group}: all-zero shared secret")
        return secret


def supported_groups() -> tuple[DhId, ...]:
    """The key exchange methods implemented here, strongest-first within each family."""
    return (
        DhId.CURVE25519,
        DhId.CURVE448,
        DhId.ECP_256,
        DhId.ECP_384,
        DhId.ECP_521,
        DhId.MODP_2048,
        DhId.MODP_3072,
        DhId.MODP_4096,
    )


def is_supported(group: int) -> bool:
    """Whether :func:`new_key_exchange` can create ``group``."""
    return group in MODP_PRIMES or group in _ECP_CURVES or group in _MONTGOMERY_LEN


def public_length(group: int) -> int:
    """Length of the KE data for ``group`` (UnsupportedKeyExchange if unknown)."""
    if group in MODP_PRIMES:
        return (MODP_PRIMES[group].bit_length() + 7) // 8
    if group in _ECP_CURVES:
        return 2 * _ECP_CURVES[group][1]
    if group in _MONTGOMERY_LEN:
        return _MONTGOMERY_LEN[group]
    raise UnsupportedKeyExchange(group)


def new_key_exchange(group: int, *, private: bytes | None = None) -> KeyExchange:
    """A fresh key exchange for ``group``.

    ``private`` fixes the private value (tests): the raw 32/56-octet X25519/X448
    scalar, the big-endian ECP scalar, or the big-endian MODP exponent.
    Raises :class:`UnsupportedKeyExchange` (a ValueError) for unknown groups and
    ValueError for an invalid ``private``.
    """
    if group in MODP_PRIMES:
        return ModpKeyExchange(group, private)
    if group in _ECP_CURVES:
        return EcpKeyExchange(group, private)
    if group in _MONTGOMERY_LEN:
        return MontgomeryKeyExchange(group, private)
    raise UnsupportedKeyExchange(group)
