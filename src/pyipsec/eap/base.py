"""The contract between the IKE core and the EAP methods (RFC 3748, RFC 7296 §2.16).

A session is one EAP conversation inside one IKE SA's IKE_AUTH rounds.  It takes and gives
whole EAP packets (the body of an IKEv2 EAP payload, §3.16) and says where the
conversation stands with an :class:`EapStep`:

- server side (the authenticator; the IKE responder of a remote-access gateway):
  :meth:`EapServerSession.start` gives the first Request, :meth:`EapServerSession.process`
  answers each Response with the next Request, or with Success/Failure and the outcome;
- peer side (the IKE initiator being authenticated): :meth:`EapPeerSession.process`
  answers each Request with a Response and, on Success/Failure, reports the outcome.

A session never raises on bad input from the network: a malformed or unexpected packet
is either ignored (``EapStep(None, Outcome.CONTINUE)`` -- RFC 3748 §4.1 silently discards
bad Requests/Responses) or ends the conversation with ``Outcome.FAILURE`` and a reason.

A server session that relays to an AAA backend (EAP-RADIUS, RFC 3579) answers
``Outcome.PENDING`` with the packet to relay in ``backend``; the core then emits an event
for the daemon and waits for :meth:`EapServerSession.backend_reply`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol


class EapError(Exception):
    """A malformed EAP packet (RFC 3748 §4) or a method message that cannot be parsed."""


class Outcome(enum.Enum):
    """Where an EAP conversation stands after a step."""

    CONTINUE = "continue"  # send ``packet`` (if any) and wait for the next one
    SUCCESS = "success"  # authenticated; ``msk`` holds the MSK when the method has one
    FAILURE = "failure"  # authentication failed; ``reason`` says why
    PENDING = "pending"  # server relay: ``backend`` goes to the AAA server; wait for it


@dataclass(frozen=True, slots=True)
class EapStep:
    """The result of one step of a session.

    ``packet``: the whole EAP packet to send to the other side (server: Request, Success
    or Failure; peer: Response), None when there is nothing to send.  ``msk``: the Master
    Session Key (RFC 5247 §2.1, 64 octets or more) on SUCCESS for methods that derive one,
    ``b""`` otherwise (RFC 7296 §2.16: AUTH then uses SK_pi/SK_pr).  ``identity``: the
    peer's EAP identity once known (server side; RFC 3748 §5.1).  ``reason``: on FAILURE,
    why, for the log.  ``backend``: on PENDING, the EAP packet to relay.
    """

    packet: bytes | None
    outcome: Outcome = Outcome.CONTINUE
    msk: bytes = b""
    identity: bytes = b""
    reason: str = ""
    backend: bytes = b""


class BackendVerdict(enum.Enum):
    """What the AAA backend answered (RFC 3579 §2.6: Access-Challenge/-Accept/-Reject)."""

    CHALLENGE = "challenge"
    ACCEPT = "accept"
    REJECT = "reject"
    UNREACHABLE = "unreachable"  # no answer after the retries: a failure for the client


@dataclass(frozen=True, slots=True)
class BackendReply:
    """The daemon's answer to a relayed EAP packet: the backend's verdict, the EAP packet
    it carried (EAP-Message, RFC 3579 §3.1; may be empty on Reject/Unreachable) and the
    MSK on Accept (from MS-MPPE-Recv-Key || MS-MPPE-Send-Key, RFC 2548 §2.4, padded as
    RFC 5247 / strongSwan do: 64 octets)."""

    verdict: BackendVerdict
    eap: bytes = b""
    msk: bytes = b""
    reason: str = ""


class EapServerSession(Protocol):
    """The authenticator side of one conversation."""

    def start(self) -> EapStep:
        """The first Request (EAP-Identity, or the method's first Request when the
        identity is already known)."""
        ...

    def process(self, packet: bytes) -> EapStep:
        """The peer's Response; the next Request, or Success/Failure with the outcome."""
        ...

    def backend_reply(self, reply: BackendReply) -> EapStep:
        """Relay sessions only: the backend's answer to the last PENDING step."""
        ...


class EapPeerSession(Protocol):
    """The peer (client) side of one conversation."""

    def process(self, packet: bytes) -> EapStep:
        """The server's Request (answered with a Response) or Success/Failure (outcome
        SUCCESS with the MSK, or FAILURE; ``packet`` None)."""
        ...


__all__ = [
    "BackendReply",
    "BackendVerdict",
    "EapError",
    "EapPeerSession",
    "EapServerSession",
    "EapStep",
    "Outcome",
]
