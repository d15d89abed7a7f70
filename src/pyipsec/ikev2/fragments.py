"""IKE message fragmentation (RFC 7383): reassembling SKF fragments of one IKE SA.

Sending is :func:`pyipsec.ikev2.message.encrypt_fragments` (called by
:meth:`IkeSa.build_packets`); this module keeps the incomplete fragment sets of
received messages, applies the §2.6 rules (a set with more fragments replaces one
being reassembled, an older set size or a repeated fragment is a replay, every
fragment's ICV is checked before it is kept) and bounds the memory a set may hold
(:data:`MAX_FRAGMENTS`, a deadline per set, and a byte budget per IKE SA: the
decrypted octets kept for incomplete sets, :class:`FragmentBudget`, smaller while the
peer is not authenticated; and, through the reassembler's ``meter``, a budget shared
by all half-open responders, :mod:`~pyipsec.ikev2.half_open_memory`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from .errors import IntegrityError, ProtocolError
from .message import DecryptedFragment, Message, decrypt_fragment, reassemble_fragments
from .payloads import SkfPayload

if TYPE_CHECKING:
    from ..crypto.encr import SkProtector

log = logging.getLogger("pyipsec.ike")

#: RFC 7383: the most fragments one message may have (bounds reassembly memory, §5).
MAX_FRAGMENTS = 64
#: What an unauthenticated peer may make us keep for reassembly, in decrypted octets
#: (strongSwan's ``charon.max_packet``): IKE_AUTH with a few certificates fits.
MAX_FRAGMENT_BYTES_UNAUTHENTICATED = 10_000
#: The same once the IKE SA is authenticated (larger messages, e.g. certificate chains).
MAX_FRAGMENT_BYTES = 65_536
#: What keeping one fragment costs besides its decrypted octets (its DecryptedFragment,
#: the bytes object, its slot in the set), and one incomplete set besides its fragments
#: and the encrypted body of the fragment it keeps as its header (FragmentSet, its dict,
#: the parsed Message, the decryption context made for the first fragment): measured
#: with tracemalloc (``bench/bench_preauth.py --calibrate 1000``: 131 and 1,169 bytes;
#: CPython 3.11, 64-bit), rounded up.  Only the ``meter`` is charged them (the per-SA
#: ``budget`` counts decrypted octets, like strongSwan's max_packet).
FRAGMENT_OBJECT_BYTES = 140
SET_OBJECT_BYTES = 1_200


@dataclass(frozen=True, slots=True)
class FragmentBudget:
    """Reassembly byte budgets of one IKE SA, before and after authentication."""

    unauthenticated: int = MAX_FRAGMENT_BYTES_UNAUTHENTICATED
    authenticated: int = MAX_FRAGMENT_BYTES

    def limit(self, authenticated: bool) -> int:
        return self.authenticated if authenticated else self.unauthenticated


@dataclass(slots=True)
class FragmentSet:
    """An IKE message being reassembled from its fragments (RFC 7383 §2.6)."""

    total: int
    header: Message  # a parsed fragment of the set (fragment 1 once it arrived)
    deadline: float  # discarded when still incomplete (§2.6)
    fragments: dict[int, DecryptedFragment] = field(default_factory=dict)
    size: int = 0  # decrypted octets kept (the reassembler's byte budget)
    metered: int = 0  # what the meter was charged for this set (objects included)

    def opener(self) -> Callable[[], Message]:
        """Reassemble the complete set (raises ProtocolError when it does not parse)."""
        header, fragments = self.header, list(self.fragments.values())
        return lambda: reassemble_fragments(header, fragments)


#: Called for a fragment whose ICV failed (counted like any ICV failure, §3.14).
IntegrityFailed = Callable[[str], None]
#: ``(message_id, is_response) -> still wanted`` (its request not answered / given up).
Wanted = Callable[[int, bool], bool]
#: Called when a fragment would take the kept octets past the budget (its set is gone).
OverBudget = Callable[[str], None]


class FragmentMeter(Protocol):
    """A byte budget shared by several reassemblers (the half-open responders' one,
    :class:`~pyipsec.ikev2.half_open_memory.HalfOpenMemory`)."""

    def room(self, size: int) -> bool:
        """Whether ``size`` more octets fit."""
        ...

    def charge(self, delta: int) -> None:
        """The octets kept changed by ``delta``."""
        ...


class FragmentReassembler:
    """The incomplete fragment sets of one IKE SA, by (Message ID, is_response).

    ``budget``: the most decrypted octets all incomplete sets may hold together (the
    owner lowers it while the peer is not authenticated); :attr:`kept` is the sum.
    ``meter``: when set, told every change of :attr:`metered` (O(1): the octets kept
    plus the objects that hold them, :data:`FRAGMENT_OBJECT_BYTES`,
    :data:`SET_OBJECT_BYTES`) and asked before a fragment is kept: a fragment it has
    no room for is dropped like one over ``budget``.  Whoever sets it takes
    :attr:`metered` back from it when unsetting it.
    """

    __slots__ = ("_kept", "_metered", "_sets", "budget", "meter")

    def __init__(self, budget: int = MAX_FRAGMENT_BYTES) -> None:
        self._sets: dict[tuple[int, bool], FragmentSet] = {}
        self._kept = 0
        self._metered = 0
        self.budget = budget
        self.meter: FragmentMeter | None = None

    def __bool__(self) -> bool:
        return bool(self._sets)

    def __len__(self) -> int:
        return len(self._sets)

    @property
    def kept(self) -> int:
        """Decrypted octets held by the incomplete sets."""
        return self._kept

    @property
    def metered(self) -> int:
        """Bytes held by the incomplete sets, as the meter is charged them."""
        return self._metered

    def clear(self) -> None:
        self._sets.clear()
        self._count(-self._kept, -self._metered)

    def _count(self, kept: int, metered: int) -> None:
        """The kept octets and the metered bytes change (the meter is told)."""
        self._kept += kept
        self._metered += metered
        if self.meter is not None and metered:
            self.meter.charge(metered)

    def _discard(self, key: tuple[int, bool]) -> FragmentSet | None:
        st = self._sets.pop(key, None)
        if st is not None:
            self._count(-st.size, -st.metered)
        return st

    def next_deadline(self) -> float | None:
        if not self._sets:
            return None  # the usual case, asked by every deadline computation
        return min(s.deadline for s in self._sets.values())

    def expire(self, now: float, wanted: Wanted) -> None:
        """Forget sets past their timeout, or whose message is no longer wanted (its
        request was answered or given up, RFC 7383 §2.6)."""
        for (mid, response), st in list(self._sets.items()):
            if st.deadline <= now or not wanted(mid, response):
                log.debug("incomplete fragments of #%d discarded", mid)
                self._discard((mid, response))

    @staticmethod
    def open(
        data: bytes, hdr: Message, prot_in: SkProtector, integrity_failed: IntegrityFailed
    ) -> DecryptedFragment | None:
        """Verify and decrypt one fragment; None when it must be dropped (§2.6)."""
        try:
            return decrypt_fragment(data, prot_in, hdr)
        except IntegrityError as exc:
            integrity_failed(f"fragment: {exc}")
        except ProtocolError as exc:
            log.debug("malformed fragment dropped: %s", exc)
        return None

    def add(
        self,
        data: bytes,
        hdr: Message,
        skf: SkfPayload,
        prot_in: SkProtector,
        deadline: float,
        integrity_failed: IntegrityFailed,
        over_budget: OverBudget | None = None,
    ) -> FragmentSet | None:
        """Keep one fragment of a new message; the complete set once the last one came.

        A verified fragment that would take the kept octets past :attr:`budget` is
        dropped and the set it belongs to discarded (``over_budget`` is told)."""
        mid, response = hdr.message_id, hdr.is_response
        if skf.total_fragments > MAX_FRAGMENTS:
            log.info(
                "message #%d in %d fragments (more than %d) dropped",
                mid,
                skf.total_fragments,
                MAX_FRAGMENTS,
            )
            return None
        key = (mid, response)
        st = self._sets.get(key)
        # §2.6: an older set size is invalid; the same fragment again is a replay
        if st is not None and (
            skf.total_fragments < st.total
            or (skf.total_fragments == st.total and skf.fragment_number in st.fragments)
        ):
            return None
        frag = self.open(data, hdr, prot_in, integrity_failed)
        if frag is None:
            return None
        if st is None or frag.total_fragments > st.total:
            # §2.6: a set with more fragments replaces the one being reassembled
            self._discard(key)
            st = FragmentSet(frag.total_fragments, hdr, deadline)
        size = len(frag.plaintext)
        header = hdr if frag.fragment_number == 1 else st.header
        cost = size + FRAGMENT_OBJECT_BYTES + _header_cost(header)
        if self._sets.get(key) is st:
            cost -= _header_cost(st.header)  # already charged
        shared_full = self.meter is not None and not self.meter.room(cost)
        if self._kept + size > self.budget or shared_full:
            # RFC 7383 §5: bounded reassembly memory; the message cannot be completed
            dropped = self._discard(key)
            budget = "the half-open budget" if shared_full else f"the budget of {self.budget}"
            detail = (
                f"fragment {frag.fragment_number}/{frag.total_fragments} of #{mid} "
                f"({size} octets) over {budget}, "
                f"{dropped.size if dropped else 0} octets of its set discarded"
            )
            if over_budget is not None:
                over_budget(detail)
            else:
                log.info("%s", detail)
            return None
        self._sets[key] = st
        st.fragments[frag.fragment_number] = frag
        st.size += size
        st.metered += cost
        st.header = header
        self._count(size, cost)
        if len(st.fragments) < st.total:
            return None
        self._discard(key)
        log.debug(
            "%s #%d reassembled from %d fragments",
            "response" if response else "request",
            mid,
            st.total,
        )
        return st

    def sets(self) -> list[FragmentSet]:
        """The incomplete sets (for tests and status)."""
        return list(self._sets.values())


def _header_cost(header: Message) -> int:
    """What a set keeping ``header`` (a parsed fragment) holds besides its fragments."""
    skf = header.encrypted
    return SET_OBJECT_BYTES + (len(skf.body) if isinstance(skf, SkfPayload) else 0)


__all__ = [
    "FRAGMENT_OBJECT_BYTES",
    "MAX_FRAGMENTS",
    "MAX_FRAGMENT_BYTES",
    "MAX_FRAGMENT_BYTES_UNAUTHENTICATED",
    "SET_OBJECT_BYTES",
    "FragmentBudget",
    "FragmentMeter",
    "FragmentReassembler",
    "FragmentSet",
]
