"""Typed errors of the protocol core.

Every error raised while handling peer-controlled bytes is a :class:`ProtocolError`
that carries the NOTIFY type to answer with (RFC 7296 §2.21, §3.10.1).  Callers
decide whether answering is allowed (never to an unauthenticated message where
the RFC forbids it).
"""

from __future__ import annotations

from .constants import NotifyType


class ProtocolError(Exception):
    """A protocol-level failure that maps to a NOTIFY error type."""

    default_notify: int = NotifyType.INVALID_SYNTAX

    def __init__(self, message: str, notify: int | None = None, data: bytes = b"") -> None:
        super().__init__(message)
        self.notify: int = self.default_notify if notify is None else notify
        self.data: bytes = data


class ParseError(ProtocolError):
    """Malformed bytes (RFC 7296 §2.21.1: INVALID_SYNTAX)."""


class UnsupportedCriticalPayload(ParseError):
    """An unknown payload with the critical bit set (§2.5): data is the 1-byte type."""

    default_notify = NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD

    def __init__(self, payload_type: int) -> None:
        super().__init__(
            f"unsupported critical payload type {payload_type}", data=bytes([payload_type & 0xFF])
        )
        self.payload_type = payload_type


class InvalidMajorVersion(ParseError):
    """IKE header major version is not 2 (§2.5)."""

    default_notify = NotifyType.INVALID_MAJOR_VERSION


class IntegrityError(ProtocolError):
    """SK payload failed its integrity check or decryption; drop silently (§2.21.1)."""

    default_notify = NotifyType.INVALID_SYNTAX


class KeyExchangeError(ProtocolError):
    """The peer's key exchange public value is invalid (RFC 7296 §3.4, RFC 8031 §2)."""

    default_notify = NotifyType.INVALID_SYNTAX


class InvalidKePayload(ProtocolError):
    """The KE group is not the selected one (§1.2); data is the 2-byte wanted group."""

    default_notify = NotifyType.INVALID_KE_PAYLOAD


class NoProposalChosen(ProtocolError):
    """No acceptable proposal (§2.7)."""

    default_notify = NotifyType.NO_PROPOSAL_CHOSEN


class AuthenticationFailed(ProtocolError):
    default_notify = NotifyType.AUTHENTICATION_FAILED


class TsUnacceptable(ProtocolError):
    default_notify = NotifyType.TS_UNACCEPTABLE


class ProposalStringError(ValueError):
    """A proposal string in the configuration could not be understood."""
