"""Anti-replay window (RFC 4303 §3.4.3) and ESN inference (RFC 4303 Appendix A2.2)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyipsec.esp.replay import ReplayWindow

M32 = 0xFFFFFFFF


def accept(w: ReplayWindow, seq: int) -> bool:
    """check + update as the SA does after a successful ICV."""
    if not w.check(seq):
        return False
    w.update(seq)
    return True


def test_sequence_zero_rejected() -> None:
    w = ReplayWindow(64)
    assert not w.check(0)
    assert w.classify(0) == "sequence number 0"
    assert accept(w, 1)
    assert not w.check(0)


def test_duplicates_rejected_and_check_has_no_side_effect() -> None:
    w = ReplayWindow(64)
    assert w.check(5)
    assert w.check(5)  # check alone does not record
    assert accept(w, 5)
    assert not w.check(5)
    assert w.classify(5) == "duplicate"
    assert accept(w, 3)
    assert not w.check(3)
    assert accept(w, 4)
    assert w.top == 5


@pytest.mark.parametrize("size", [32, 64, 128, 1024, 4096])
def test_window_edges(size: int) -> None:
    w = ReplayWindow(size)
    top = 10_000
    assert accept(w, top)
    lowest = top - size + 1
    assert w.lowest == lowest
    assert w.check(lowest)  # exactly at the left edge: accepted
    assert not w.check(lowest - 1)  # one below: too old
    assert "too old" in w.classify(lowest - 1)
    assert accept(w, lowest)
    assert not w.check(lowest)
    # Slide by one: the old left edge falls out, the new one is still usable.
    assert accept(w, top + 1)
    assert not w.check(lowest)
    assert w.check(lowest + 1)


def test_far_future_jump_clears_old_bits() -> None:
    w = ReplayWindow(64)
    for s in range(1, 65):
        assert accept(w, s)
    assert accept(w, 1_000_000)
    assert w.bitmap == 1
    # Everything in the new window except the top is acceptable again (never seen).
    assert w.check(1_000_000 - 63)
    assert not w.check(1_000_000 - 64)
    assert not w.check(1_000_000)
    # A jump of exactly the window size keeps no old bits either.
    assert accept(w, 1_000_000 + 64)
    assert w.bitmap == 1
    # A jump smaller than the window keeps the overlapping bits.
    assert accept(w, 1_000_000 + 64 + 10)
    assert not w.check(1_000_000 + 64)
    assert w.check(1_000_000 + 64 + 1)


def test_window_zero_disables_checks() -> None:
    w = ReplayWindow(0)
    assert accept(w, 5)
    assert accept(w, 5)
    assert accept(w, 1)
    assert w.top == 5


def test_invalid_sizes() -> None:
    with pytest.raises(ValueError):
        ReplayWindow(-1)
    with pytest.raises(ValueError):
        ReplayWindow((1 << 31) + 1)


def test_bitmap_stays_bounded() -> None:
    w = ReplayWindow(128)
    rng = random.Random(1)
    seq = 1
    for _ in range(5000):
        seq += rng.randint(1, 300)
        accept(w, seq)
        accept(w, seq - rng.randint(0, 200))
        assert w.bitmap.bit_length() <= 128


class ModelWindow:
    """Reference: the set of all accepted numbers, RFC 4303 §3.4.3 semantics."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.seen: set[int] = set()
        self.top = 0

    def accept(self, seq: int) -> bool:
        if seq <= 0 or seq in self.seen or seq <= self.top - self.size:
            return False
        self.seen.add(seq)
        self.top = max(self.top, seq)
        return True


@settings(max_examples=150, deadline=None)
@given(
    size=st.sampled_from([1, 2, 32, 64, 100, 128, 1024, 4096]),
    steps=st.lists(st.integers(min_value=-5000, max_value=5000), min_size=1, max_size=200),
)
def test_matches_model(size: int, steps: list[int]) -> None:
    w = ReplayWindow(size)
    model = ModelWindow(size)
    cur = 1
    for delta in steps:
        cur = max(0, cur + delta)
        assert accept(w, cur) == model.accept(cur), (cur, w.top)


def test_large_window_4096_in_order_and_reordered() -> None:
    w = ReplayWindow(4096)
    seqs = list(range(1, 20_001))
    rng = random.Random(7)
    # Reorder within blocks of 4000 (inside the window): all accepted exactly once.
    for i in range(0, len(seqs), 4000):
        block = seqs[i : i + 4000]
        rng.shuffle(block)
        seqs[i : i + 4000] = block
    assert all(accept(w, s) for s in seqs)
    assert not any(w.check(s) for s in range(20_000 - 4095, 20_001))
    assert not w.check(20_000 - 4096)  # left of the window


# --- ESN: Appendix A2.2 ----------------------------------------------------------------------


def test_non_esn_infer_is_identity() -> None:
    w = ReplayWindow(64)
    assert w.infer(0xFFFFFFF0) == 0xFFFFFFF0


def test_esn_case_a_same_and_next_subspace() -> None:
    w = ReplayWindow(64, esn=True)
    w.update((5 << 32) | 1000)  # Th = 5, Tl = 1000 >= W - 1: Case A, Bl = 937
    assert w.infer_high(937) == 5
    assert w.infer(2000) == (5 << 32) | 2000
    assert w.infer_high(936) == 6  # below Bl: the next subspace
    assert w.infer(10) == (6 << 32) | 10


def test_esn_case_b_previous_subspace() -> None:
    w = ReplayWindow(64, esn=True)
    w.update((5 << 32) | 10)  # Tl = 10 < W - 1: Case B, Bl = 10 - 63 mod 2^32
    bl = (10 - 64 + 1) & M32
    assert w.infer_high(bl) == 4  # just before the wrap: previous subspace
    assert w.infer_high(M32) == 4
    assert w.infer_high(bl - 1) == 5  # far below: this subspace (to the right)
    assert w.infer_high(11) == 5
    assert w.infer_high(0) == 5


def test_esn_wrap_in_order_and_reordered() -> None:
    # Packets around the 2^32 boundary, in order.
    w = ReplayWindow(64, esn=True)
    w.update(M32 - 10)
    for full in range(M32 - 9, M32 + 20):
        seq = w.infer(full & M32)
        assert seq == full
        assert accept(w, seq)
    # The old subspace's tail is still in the window and now rejected as duplicates.
    assert not w.check(w.infer((M32 - 5) & M32))
    # Reordered: the receiver saw 2^32 + 2 before 2^32 - 3.
    w = ReplayWindow(64, esn=True)
    w.update(M32 - 10)
    after = w.infer(2)
    assert after == (1 << 32) | 2
    assert accept(w, after)
    late = w.infer(M32 - 3)  # Case B now: belongs to subspace 0
    assert late == M32 - 3
    assert accept(w, late)
    assert not w.check(w.infer(M32 - 3))
    assert w.check(w.infer(M32 - 2))
    assert w.top == (1 << 32) | 2


def test_esn_before_sa_start_is_invalid() -> None:
    w = ReplayWindow(64, esn=True)
    # Th = 0, Tl = 0: Case B; a low half right of Bl would be subspace -1.
    assert w.infer(M32) == -1
    assert not w.check(-1)
    assert "outside" in w.classify(-1)
    assert w.infer(1) == 1


def test_esn_top_of_64_bit_space() -> None:
    w = ReplayWindow(64, esn=True)
    w.update((M32 << 32) | 1000)
    assert w.infer(5) == -1  # would need Seqh = 2^32


def test_esn_window_zero_uses_half_space() -> None:
    w = ReplayWindow(0, esn=True)
    w.update((2 << 32) | 0x90000000)
    assert w.infer(0x20000000) == (2 << 32) | 0x20000000  # within 2^31 behind
    assert w.infer(0x00000005) == (3 << 32) | 5
