"""Anti-replay sliding window (RFC 4303 §3.4.3 and Appendix A).

The window works on *full* sequence numbers: 32-bit ones without ESN, 64-bit ones with ESN
(RFC 4304).  For ESN, :meth:`ReplayWindow.infer` reconstructs the 64-bit number from the 32 bits
on the wire with the equations of RFC 4303 Appendix A2.2; from then on wrap-around of the low
half needs no special case, because the window compares 64-bit integers.

Verification is two-phase, as §3.4.3 requires: :meth:`ReplayWindow.check` before the integrity
check (cheap rejection of duplicates, no state change) and :meth:`ReplayWindow.update` only
after the ICV verified.

The bitmap is a Python ``int``: bit ``i`` set means sequence number ``top - i`` was received.
Shifting an int of ``size`` bits costs O(size / 30) machine words, measured at ~0.3 µs for 64
bits and ~0.6 µs for 4096 bits per check+update: constant per packet for any practical size.
"""

from __future__ import annotations

_M32 = 0xFFFFFFFF
_MAX_WINDOW = 1 << 31
# Inference window when anti-replay is disabled (size 0) but ESN still needs Seqh: accept
# sequence numbers within half the 32-bit space behind the highest one seen.
_NO_REPLAY_INFER_W = 1 << 31


class ReplayWindow:
    """RFC 4303 §3.4.3 receive window of ``size`` sequence numbers (0 disables the check).

    ``top`` is the right edge: the highest *authenticated* sequence number (0 before the first
    packet).  Sequence number 0 is never valid (§2.2: the first packet sent is 1), so it is
    marked as already received.
    """

    __slots__ = ("_infer_w", "_mask", "bitmap", "esn", "size", "top")

    def __init__(self, size: int = 128, *, esn: bool = False) -> None:
        if not 0 <= size <= _MAX_WINDOW:
            raise ValueError(f"replay window size must be 0..{_MAX_WINDOW}, got {size}")
        self.size = size
        self.esn = esn
        self.top = 0
        self.bitmap = 1  # bit 0 == sequence number 0: never acceptable
        self._mask = (1 << size) - 1 if size else 1
        self._infer_w = size if size else _NO_REPLAY_INFER_W

    # -- ESN (RFC 4303 Appendix A2.2) ----------------------------------------------------------

    def infer_high(self, seq_low: int) -> int:
        """Seqh for a received low half ``seq_low`` (RFC 4303 Appendix A2.2, cases A and B).

        May return -1 (Case B before the first wrap: the packet would belong to the subspace
        before the SA started) or 2**32 (beyond the 64-bit space); :meth:`infer` maps both to
        an invalid (negative) sequence number.
        """
        top = self.top
        th = top >> 32
        tl = top & _M32
        w = self._infer_w
        if tl >= w - 1:  # Case A: the window lies within one subspace
            return th if seq_low >= tl - w + 1 else th + 1
        # Case B: the window spans the boundary with the previous subspace
        return th - 1 if seq_low >= ((tl - w + 1) & _M32) else th

    def infer(self, seq_low: int) -> int:
        """The full sequence number for ``seq_low``: itself without ESN, Seqh|Seql with ESN.

        Returns -1 when no valid 64-bit number corresponds (see :meth:`infer_high`).
        """
        if not self.esn:
            return seq_low
        high = self.infer_high(seq_low)
        if high < 0 or high > _M32:
            return -1
        return (high << 32) | seq_low

    # -- two-phase check (RFC 4303 §3.4.3) -----------------------------------------------------

    def check(self, seq: int) -> bool:
        """Preliminary check: ``True`` when ``seq`` is new (right of, or unseen in, the window).

        Does not change state.  With ``size == 0`` every non-negative number passes.
        """
        top = self.top
        if seq > top:
            return True
        if seq < 0:
            return False
        if not self.size:
            return True
        diff = top - seq
        return diff < self.size and not (self.bitmap >> diff) & 1

    def update(self, seq: int) -> None:
        """Record an authenticated ``seq``: slide the window right or set its bit (§3.4.3).

        Must only be called after the ICV verified and :meth:`check` returned ``True``.
        """
        top = self.top
        if seq > top:
            shift = seq - top
            self.top = seq
            if shift < self.size:
                self.bitmap = ((self.bitmap << shift) | 1) & self._mask
            else:
                self.bitmap = 1
        elif self.size:
            diff = top - seq
            if diff < self.size:
                self.bitmap |= 1 << diff

    def classify(self, seq: int) -> str:
        """Why :meth:`check` rejected ``seq`` (for log messages; not on the hot path)."""
        if seq < 0:
            return "outside the sequence number space of the SA"
        if seq == 0:
            return "sequence number 0"
        if self.top - seq >= self.size:
            return f"too old (left of the window, top={self.top}, size={self.size})"
        return "duplicate"

    @property
    def lowest(self) -> int:
        """The left edge: the lowest sequence number that can still be accepted."""
        return max(1, self.top - self.size + 1) if self.size else 1

    def __repr__(self) -> str:
        return f"ReplayWindow(size={self.size}, esn={self.esn}, top={self.top})"
