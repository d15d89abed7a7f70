"""Userspace ESP data plane (RFC 4303): SAs, anti-replay window, inner-packet helpers."""

from __future__ import annotations

from .errors import (
    EspAuthError,
    EspConfigError,
    EspDummyPacket,
    EspError,
    EspFormatError,
    EspReplayError,
    EspSequenceExhausted,
    EspSpiMismatch,
    PacketError,
)
from .replay import ReplayWindow
from .sa import EspInbound, EspOutbound, EspStats, suite_sizes

__all__ = [
    "EspAuthError",
    "EspConfigError",
    "EspDummyPacket",
    "EspError",
    "EspFormatError",
    "EspInbound",
    "EspOutbound",
    "EspReplayError",
    "EspSequenceExhausted",
    "EspSpiMismatch",
    "EspStats",
    "PacketError",
    "ReplayWindow",
    "suite_sizes",
]
