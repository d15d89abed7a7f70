"""A global byte budget for half-open (pre-authentication) responder state.

RFC 7296 §2.6 asks a responder to protect itself from a flood of IKE_SA_INIT requests
(cookies first, then refusing); the per-source and total *counts* of
:class:`~pyipsec.ikev2.manager.IkeManager` do that by number of SAs.  This module
bounds the *bytes* those SAs hold, so that a flood of peers that prove their address
(echo the cookie) and then send large IKE_AUTH fragments (RFC 7383 §5) cannot use
more memory than configured, whatever their number.

Each half-open responder IKE SA is charged, in O(1):

* :data:`HALF_OPEN_SA_BYTES`, the Python objects of one IKE SA right after its
  IKE_SA_INIT answer (measured, see the constant);
* the IKE_SA_INIT request and response it keeps for AUTH (§2.15), in octets;
* what its reassembler holds for incomplete fragment sets (RFC 7383): the decrypted
  octets, the encrypted body of the fragment each set keeps as its header, and the
  measured objects around them (:data:`~pyipsec.ikev2.fragments.FRAGMENT_OBJECT_BYTES`,
  :data:`~pyipsec.ikev2.fragments.SET_OBJECT_BYTES`), reported by the
  :class:`~pyipsec.ikev2.fragments.FragmentReassembler` on every change (its
  ``meter``).

The manager adds the first two when the SA is created and takes everything back when
the SA stops being half-open (authenticated, timed out, refused, deleted).
"""

from __future__ import annotations

from ..config.model import DEFAULT_HALF_OPEN_MEMORY

#: The bytes the Python objects of one half-open responder IKE SA hold, besides its two
#: IKE_SA_INIT messages and its fragments: measured with tracemalloc (the traced growth
#: of a responder ``IkeManager`` over 1,000 / 2,000 / 5,000 responders of
#: aes256gcm16-prfsha256-x25519 right after IKE_SA_INIT, divided by their number, minus
#: their messages: 5,329 to 5,371 bytes; 5,070 once the process-wide address and
#: selector caches are left out; CPython 3.11, 64-bit), rounded up.
#: ``bench/bench_preauth.py`` measures it again and prints both, and
#: ``tests/ikev2/test_preauth_memory.py`` checks it is within a factor 2.
HALF_OPEN_SA_BYTES = 5_400
#: Above this share of the budget, every new IKE_SA_INIT must carry a valid COOKIE
#: (§2.6), whatever the half-open counts: a flood from spoofed addresses then costs
#: one stateless answer per request, and only peers that prove their address are
#: admitted, until the budget itself refuses them.
COOKIE_SHARE = 0.5
#  The default budget (``half_open_memory``, config.model.DEFAULT_HALF_OPEN_MEMORY):
#  64 MiB.  A half-open responder holds
#: about 5.8 KB (:data:`HALF_OPEN_SA_BYTES` + ~420 octets of IKE_SA_INIT messages with
#  X25519), so the default ``half_open_limit`` of 5,000 SAs is ~29 MB: below the cookie
#  share (32 MiB), the byte budget changes nothing for ordinary handshakes.  But each
#  of them may also hold 10,000 octets of unauthenticated fragments
#  (``max_fragment_bytes_unauthenticated``) and the objects around them: ~69 MB for
#  5,000 SAs of a fragment flood (``bench/bench_preauth.py``), which the budget caps at
#  64 MiB -- a small part of any host that runs a gateway.


class HalfOpenMemory:
    """The running total of the bytes half-open responders hold, and its budget.

    ``budget`` 0 = no byte budget (the total and peak are still kept, for status).
    :meth:`charge` is the only way the total changes; it is O(1).
    """

    __slots__ = ("budget", "peak", "total")

    def __init__(self, budget: int = DEFAULT_HALF_OPEN_MEMORY) -> None:
        if budget < 0:
            raise ValueError(f"half_open_memory must not be negative: {budget}")
        self.budget = budget
        self.total = 0
        self.peak = 0

    def charge(self, delta: int) -> None:
        """Add ``delta`` bytes (negative: given back)."""
        self.total += delta
        if self.total > self.peak:
            self.peak = self.total

    def room(self, size: int) -> bool:
        """Whether ``size`` more bytes keep the total within the budget."""
        return not self.budget or self.total + size <= self.budget

    def wants_cookies(self) -> bool:
        """§2.6: above :data:`COOKIE_SHARE` of the budget every new IKE_SA_INIT needs
        a valid COOKIE."""
        return bool(self.budget) and self.total >= self.budget * COOKIE_SHARE

    def status(self) -> dict[str, int]:
        """The budget, the current total and its peak so far (JSON-ready)."""
        return {"budget": self.budget, "bytes": self.total, "peak": self.peak}


__all__ = ["COOKIE_SHARE", "DEFAULT_HALF_OPEN_MEMORY", "HALF_OPEN_SA_BYTES", "HalfOpenMemory"]
