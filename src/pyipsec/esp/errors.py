"""Errors of the userspace ESP data plane (RFC 4303).

Every failure of :meth:`pyipsec.esp.sa.EspInbound.unprotect` on peer-controlled bytes is an
:class:`EspError` subclass, and each one has already been counted in the SA's ``stats`` when it
is raised.  None of them is answered on the wire: RFC 4303 §3.4 says the packet is discarded
(and the event is auditable).
"""

from __future__ import annotations


class EspError(Exception):
    """Base class of every ESP data-plane error."""


class EspFormatError(EspError):
    """Malformed packet: too short, misaligned ciphertext, bad padding or pad length (§2.4)."""


class EspAuthError(EspError):
    """The ICV did not verify (RFC 4303 §3.4.4); also a wrongly inferred ESN high half (App. A)."""


class EspReplayError(EspError):
    """Duplicate or too old sequence number (RFC 4303 §3.4.3)."""


class EspDummyPacket(EspError):
    """Authentic dummy packet, next header 59 (RFC 4303 §2.6): the caller drops it silently."""


class EspSpiMismatch(EspError):
    """The packet's SPI is not the SA's (a demultiplexing bug in the caller)."""


class EspSequenceExhausted(EspError):
    """The outbound sequence number cannot advance without cycling (RFC 4303 §3.3.3): rekey."""


class EspConfigError(EspError, ValueError):
    """Unsupported suite, wrong key length or inconsistent SA parameters (never peer input)."""


class PacketError(ValueError):
    """An inner IP packet is not a well-formed IPv4/IPv6 packet (``esp.packet`` helpers)."""
