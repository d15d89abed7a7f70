"""The interface between a conversation (server.py / peer.py) and one EAP method.

A method sees only its own Type-Data: the conversation owns the EAP header, the
Identifiers (RFC 3748 §4.1), Identity, Notification and Nak (§5.1-§5.3).  A method
raises :class:`~pyipsec.eap.base.EapError` for a message it cannot parse; the
conversation turns that into a FAILURE step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Done", "PeerMethod", "Reply", "Rng", "ServerMethod", "Verdict"]

#: ``rng(n)`` -> n random octets (injected: the core is sans-I/O and testable).
Rng = Callable[[int], bytes]


@dataclass(frozen=True, slots=True)
class Reply:
    """Send the next message of the method: a Request (server) or Response (peer)
    with this Type-Data."""

    type_data: bytes


@dataclass(frozen=True, slots=True)
class Done:
    """Server: the method is over.  ``ok``: the peer is authenticated; ``msk`` its
    MSK (empty if the method derives none); ``identity`` the identity the method
    authenticated (None: the EAP-Identity stands); ``reason`` why it failed."""

    ok: bool
    msk: bytes = b""
    identity: bytes | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Verdict:
    """Peer: whether an EAP-Success may be believed now (RFC 3748 §4.2: a peer only
    accepts Success once its method allows it; mutual methods insist on having
    authenticated the server), and the MSK; ``reason`` when it may not."""

    ok: bool
    msk: bytes = b""
    reason: str = ""


class ServerMethod(Protocol):
    """The authenticator side of one method."""

    @property
    def eap_type(self) -> int:
        """The method's EAP Type."""
        ...

    def start(self, identifier: int) -> bytes:
        """Type-Data of the first Request, which goes out with ``identifier``."""
        ...

    def process(self, identifier: int, type_data: bytes) -> Reply | Done:
        """The Type-Data of the peer's Response with ``identifier``."""
        ...


class PeerMethod(Protocol):
    """The peer side of one method."""

    @property
    def eap_type(self) -> int:
        """The method's EAP Type."""
        ...

    def process(self, identifier: int, type_data: bytes) -> Reply | Done:
        """A Request's Type-Data: a Reply, or ``Done(ok=False)`` to give up."""
        ...

    def verdict(self) -> Verdict:
        """Whether an EAP-Success received now completes the authentication."""
        ...

    def failure_detail(self) -> str:
        """What the method learned about a failure (e.g. an MS-CHAPv2 error code),
        for the reason of the FAILURE step on EAP-Failure; empty if nothing."""
        ...
