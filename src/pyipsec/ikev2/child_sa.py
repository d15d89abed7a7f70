"""The Child SA record an IKE SA keeps (RFC 7296 §1.3, §2.17), and the ESP sequence
number limits that trigger a rekey (RFC 4303 §3.3.3)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config.model import ChildConfig
from ..crypto.keys import ChildSuite
from .selectors import Selector
from .state import ChildSaState, check_child

#: Highest outbound ESP sequence number without / with ESN (RFC 4303 §2.2, §3.3.3).
ESP_SEQ_MAX = 2**32 - 1
ESP_SEQ_MAX_ESN = 2**64 - 1
#: Rekey a Child SA when its outbound sequence number is this close to the end
#: (a 64th of the space: ~67 million packets without ESN, many seconds of traffic
#: between two reports of the data plane; RFC 4303 §3.3.3: never let it cycle).
ESP_SEQ_SOFT_SHIFT = 6


def esp_seq_soft_limit(esn: bool) -> int:
    """The outbound sequence number from which a Child SA is rekeyed (§3.3.3)."""
    top = ESP_SEQ_MAX_ESN if esn else ESP_SEQ_MAX
    return top - (top >> ESP_SEQ_SOFT_SHIFT)


@dataclass(eq=False, slots=True)
class ChildSa:
    """One Child SA pair as the IKE SA tracks it.

    ``state`` changes only through :meth:`set_state` (the transition table of
    :mod:`pyipsec.ikev2.state`).  Rekey bookkeeping (a colliding rekey of the peer,
    §2.8.1) lives in the :class:`~pyipsec.ikev2.tasks.child_rekey.ChildRekey` task.
    """

    config: ChildConfig
    spi_in: int
    spi_out: int
    suite: ChildSuite
    suite_str: str
    encr_in: bytes = field(repr=False)
    integ_in: bytes = field(repr=False)
    encr_out: bytes = field(repr=False)
    integ_out: bytes = field(repr=False)
    local_ts: tuple[Selector, ...]
    remote_ts: tuple[Selector, ...]
    transport: bool
    created: float
    nonces: tuple[bytes, bytes]  # (Ni, Nr) of the exchange that created it
    initiated_by_us: bool
    state: ChildSaState = ChildSaState.INSTALLED
    soft_at: float | None = None
    hard_at: float | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    packets_in: int = 0
    packets_out: int = 0
    seq_out: int = 0  # last outbound ESP sequence number the data plane reported
    last_used: float = 0.0
    tfc_ok: bool = True

    @property
    def name(self) -> str:
        return self.config.name

    def set_state(self, new: ChildSaState) -> None:
        check_child(self.state, new)
        self.state = new

    def next_lifetime_deadline(self) -> float | None:
        """The soft (only while INSTALLED) or hard deadline that comes first."""
        soft = self.soft_at if self.state is ChildSaState.INSTALLED else None
        hard = self.hard_at
        if soft is None:
            return hard
        return soft if hard is None or soft < hard else hard


__all__ = [
    "ESP_SEQ_MAX",
    "ESP_SEQ_MAX_ESN",
    "ChildSa",
    "esp_seq_soft_limit",
]
