"""Reuse of the responder's IKE_SA_INIT key exchange value (RFC 7296 §2.12), off by default.

§2.12 lets an endpoint reuse its Diffie-Hellman exponential for several IKE SA setups:
computing it is the most expensive step of a responder's handshake (an X25519 key pair
is two of the three scalar multiplications).  The price is forward secrecy: while a
value is kept, whoever obtains its private half (a memory dump, a compromised host) can
compute the shared secret of *every* IKE SA set up with it from the recorded
IKE_SA_INIT messages, and so all their keys -- not only those of the one connection
that is still up.  "Perfect" forward secrecy returns only when the value is forgotten.
So a value is kept at most ``max_age`` seconds and for at most ``max_uses`` IKE SAs,
whichever comes first, then dropped (Python cannot wipe the memory; the key object is
freed).  Each IKE SA still gets its own keys: the nonces and SPIs differ (§2.14).

Only the responder of IKE_SA_INIT uses this (never CREATE_CHILD_SA PFS nor an IKE SA
rekey), and only for Diffie-Hellman methods whose peer values are validated before use
(MODP range check, ECP point on the curve, Curve25519/448 all-zero check: the tests of
RFC 6989 that make reusing a value safe against small-subgroup attacks).  A key
encapsulation method (ML-KEM) has no reusable value: it is never cached.

With ``max_age`` 0 (the default) every call makes a fresh value.  Sans-I/O: the caller
passes ``now``.
"""

from __future__ import annotations

from ..crypto.ke import EcpKeyExchange, KeyExchange, ModpKeyExchange, MontgomeryKeyExchange
from .tasks.base import KeFactory

__all__ = ["KeReuse"]

_REUSABLE = (ModpKeyExchange, EcpKeyExchange, MontgomeryKeyExchange)


class _Held:
    """One kept value: when it was made and how many IKE SAs used it."""

    __slots__ = ("born", "ke", "uses")

    def __init__(self, ke: KeyExchange, born: float) -> None:
        self.ke = ke
        self.born = born
        self.uses = 0


class KeReuse:
    """The responder's key exchange values per group, reused within the bounds."""

    __slots__ = ("_factory", "_held", "max_age", "max_uses")

    def __init__(self, factory: KeFactory, max_age: float = 0.0, max_uses: int = 128) -> None:
        if max_age < 0 or max_uses < 1:
            raise ValueError("max_age must be >= 0 and max_uses >= 1")
        self._factory = factory
        self.max_age = max_age
        self.max_uses = max_uses
        self._held: dict[int, _Held] = {}

    @property
    def enabled(self) -> bool:
        return self.max_age > 0

    def get(self, group: int, now: float) -> KeyExchange:
        """A key exchange of ``group`` for a new IKE_SA_INIT response at ``now``."""
        if self.max_age <= 0:
            return self._factory(group)
        held = self._held.get(group)
        if (
            held is None
            or held.uses >= self.max_uses
            or not held.born <= now < held.born + self.max_age
        ):
            ke = self._factory(group)
            if not isinstance(ke, _REUSABLE):
                return ke  # a KEM: every encapsulation is new
            held = self._held[group] = _Held(ke, now)
        held.uses += 1
        return held.ke

    def expire(self, now: float) -> None:
        """Forget the values that are too old (called with the timers: an idle gateway
        does not keep one longer than ``max_age``)."""
        if not self._held:
            return  # the usual case (always when reuse is off), every handle_timer()
        for group, held in list(self._held.items()):
            if not held.born <= now < held.born + self.max_age:
                del self._held[group]

    def next_deadline(self) -> float | None:
        """When the oldest kept value must be forgotten (None: none kept)."""
        if not self._held:
            return None  # asked by every next_timer(): the usual answer at once
        return min(h.born + self.max_age for h in self._held.values())

    def forget(self) -> None:
        """Drop every kept value (shutdown)."""
        self._held.clear()
