"""The gateway side of EAP-RADIUS: a pass-through authenticator (RFC 3579 §2, RFC 3748
§2.3) that relays the peer's Responses to an AAA server and its answers back.

The session does no authentication itself.  :meth:`RadiusRelayServer.start` sends
EAP-Identity, or (identity known and ``ask_identity`` off) hands the backend an
Identity Response built locally, as strongSwan's eap-radius does without
``eap_start``.  Every Response of the peer becomes a PENDING step whose ``backend``
is the EAP packet for the Access-Request (EAP-Message, RFC 3579 §3.1; the step's
``identity`` is the User-Name, §2.1); the daemon answers with
:meth:`backend_reply`:

- CHALLENGE (Access-Challenge): the backend's EAP Request goes to the peer;
- ACCEPT (Access-Accept): SUCCESS with the MSK from the MS-MPPE keys and the
  backend's EAP-Success (or one built here with the Identifier of the last
  Response, §4.2).  An Accept before any Challenge reached the peer is refused
  (nothing was authenticated; strongSwan does the same for Windows NPS's quirk);
- REJECT / UNREACHABLE: FAILURE with an EAP-Failure and the reason.

Out of order input is discarded (a CONTINUE step without a packet, ``reason``
saying why) and changes nothing: a Response while the backend has not answered
yet, a Response whose Identifier is not the outstanding Request's, a
backend_reply while no Response is pending, anything after SUCCESS/FAILURE.  A
CHALLENGE whose packet is not an EAP Request ends the conversation with FAILURE.
"""

from __future__ import annotations

import enum

from ..constants import EapCode
from .base import BackendReply, BackendVerdict, EapError, EapStep, Outcome
from .method import Rng
from .packet import (
    EapType,
    code_of,
    failure,
    identity_of,
    identity_response,
    parse,
    request,
    success,
)
from .server import discard

__all__ = ["RadiusRelayServer"]

_DEFAULT_REASONS = {
    BackendVerdict.REJECT: "the RADIUS server rejected the client (Access-Reject)",
    BackendVerdict.UNREACHABLE: "the RADIUS server did not answer",
}


class _Phase(enum.Enum):
    NEW = "not started"
    PEER = "waiting for the peer"
    BACKEND = "waiting for the backend"
    DONE = "over"


class RadiusRelayServer:
    """Implements :class:`~pyipsec.eap.base.EapServerSession` by relaying to an AAA
    server (``remote.auth = "eap-radius"``)."""

    def __init__(self, rng: Rng, identity: bytes = b"", ask_identity: bool = True) -> None:
        self._identity = identity
        self._ask_identity = ask_identity or not identity
        self._first_id = rng(1)[0]
        self._phase = _Phase.NEW
        self._outstanding = -1  # Identifier of the Request the peer must answer
        self._last_response = self._first_id  # Identifier of the last relayed Response
        self._asking_identity = False
        self._challenges = 0

    def start(self) -> EapStep:
        if self._phase is not _Phase.NEW:
            return discard("the conversation has already started")
        if self._ask_identity:
            self._phase, self._outstanding = _Phase.PEER, self._first_id
            self._asking_identity = True
            return EapStep(request(self._first_id, EapType.IDENTITY), identity=self._identity)
        self._phase = _Phase.BACKEND
        built = identity_response(self._first_id, self._identity)
        return EapStep(None, Outcome.PENDING, identity=self._identity, backend=built)

    def process(self, packet: bytes) -> EapStep:
        try:
            pkt = parse(packet)
        except EapError as e:
            return discard(str(e))
        if self._phase is not _Phase.PEER:
            return discard(f"a Response while {self._phase.value}")
        if pkt.code != EapCode.RESPONSE:
            return discard(f"EAP Code {pkt.code} where a Response was expected")
        if pkt.identifier != self._outstanding:
            return discard(f"Identifier {pkt.identifier}, expected {self._outstanding}")
        if self._asking_identity and pkt.eap_type == EapType.IDENTITY:
            self._identity = identity_of(pkt.data) or self._identity
        self._asking_identity = False
        self._phase, self._last_response = _Phase.BACKEND, pkt.identifier
        length = int.from_bytes(packet[2:4], "big")
        return EapStep(None, Outcome.PENDING, identity=self._identity, backend=packet[:length])

    def backend_reply(self, reply: BackendReply) -> EapStep:
        if self._phase is not _Phase.BACKEND:
            return discard(f"a backend reply while {self._phase.value}")
        if reply.verdict is BackendVerdict.CHALLENGE:
            return self._challenge(reply)
        if reply.verdict is BackendVerdict.ACCEPT:
            return self._accept(reply)
        return self._fail(reply.eap, reply.reason or _DEFAULT_REASONS[reply.verdict])

    def _challenge(self, reply: BackendReply) -> EapStep:
        try:
            pkt = parse(reply.eap)
        except EapError as e:
            return self._fail(b"", f"the RADIUS server sent a malformed EAP message: {e}")
        if pkt.code != EapCode.REQUEST:
            return self._fail(reply.eap, f"Access-Challenge with EAP Code {pkt.code}")
        self._phase, self._outstanding = _Phase.PEER, pkt.identifier
        self._challenges += 1
        length = int.from_bytes(reply.eap[2:4], "big")
        return EapStep(reply.eap[:length], identity=self._identity)

    def _accept(self, reply: BackendReply) -> EapStep:
        if self._challenges == 0:
            return self._fail(b"", "Access-Accept before any EAP round reached the client")
        code = code_of(reply.eap)
        if code == EapCode.FAILURE:
            return self._fail(reply.eap, "Access-Accept carrying an EAP-Failure")
        packet = reply.eap[:4] if code == EapCode.SUCCESS else success(self._last_response)
        self._phase = _Phase.DONE
        return EapStep(packet, Outcome.SUCCESS, msk=reply.msk, identity=self._identity)

    def _fail(self, eap: bytes, reason: str) -> EapStep:
        packet = eap[:4] if code_of(eap) == EapCode.FAILURE else failure(self._last_response)
        self._phase = _Phase.DONE
        return EapStep(packet, Outcome.FAILURE, identity=self._identity, reason=reason)
