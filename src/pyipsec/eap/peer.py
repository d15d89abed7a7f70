"""The peer's conversation (RFC 3748 §2, §4, §5.1-§5.3).

Each Request is answered with a Response carrying its Identifier (§4.1).  A Request
with the Identifier of the previous one is a retransmission: the last Response goes
out again without processing it twice (§4.1).  EAP-Identity is answered with our
identity, Notification with an empty Notification Response (§5.2, the text goes to
the step's ``reason`` for the log).  The first Request of a method we do not accept
gets a Nak listing those we do (§5.3.1; an Expanded Nak for an expanded Type,
§5.3.2).  A method in progress must not change (§2.1): a Request of another method
then is a failure.

EAP-Success is believed only when the method allows it (mutual methods insist on
having authenticated the server, §4.2 / §7.2); EAP-Failure ends the conversation.
Their Identifier is not checked (some servers do not echo it).  Malformed packets
and Responses are discarded; after Success or Failure every packet is.
"""

from __future__ import annotations

from collections.abc import Callable

from ..constants import EapCode
from .base import EapError, EapStep, Outcome
from .method import Done, PeerMethod
from .packet import (
    EapPacket,
    EapType,
    expanded_nak,
    identity_response,
    nak,
    parse,
    response,
    type_name,
)
from .server import discard
from .settings import EapMethod, EapPeerSettings

__all__ = ["PeerConversation", "PeerMethodFactory"]

#: ``make(method)`` -> the peer side of ``method``.
PeerMethodFactory = Callable[[EapMethod], PeerMethod]


class PeerConversation:
    """Implements :class:`~pyipsec.eap.base.EapPeerSession`."""

    def __init__(self, settings: EapPeerSettings, make: PeerMethodFactory) -> None:
        self._settings = settings
        self._make = make
        self._acceptable = settings.acceptable()
        self._method: PeerMethod | None = None
        self._method_name = ""
        self._last: tuple[int, bytes] | None = None  # (Request Identifier, our Response)
        self._done = False

    def process(self, packet: bytes) -> EapStep:
        try:
            pkt = parse(packet)
        except EapError as e:
            return discard(str(e))
        if self._done:
            return discard("the conversation is over")
        if pkt.is_request:
            if self._last is not None and self._last[0] == pkt.identifier:
                return EapStep(self._last[1], reason="retransmitted Request: Response resent")
            try:
                step = self._on_request(pkt)
            except EapError as e:
                step = self._give_up(f"malformed Request: {e}")
            if step.packet is not None:
                self._last = (pkt.identifier, step.packet)
            return step
        if pkt.is_response:
            return discard("a Response sent to the peer")
        return self._on_result(pkt)

    # --- Requests -----------------------------------------------------------------------

    def _on_request(self, pkt: EapPacket) -> EapStep:
        kind = pkt.eap_type or 0
        if kind == EapType.IDENTITY:
            return EapStep(identity_response(pkt.identifier, self._settings.identity))
        if kind == EapType.NOTIFICATION:
            text = pkt.data.decode("utf-8", "replace")
            answer = response(pkt.identifier, EapType.NOTIFICATION)
            return EapStep(answer, reason=f"notification: {text}")
        if kind == EapType.NAK:
            return discard("a Nak in a Request")
        if self._method is None:
            return self._first_request(pkt)
        if kind != self._method.eap_type:
            switched = f"the server switched to {type_name(kind)} during {self._method_name}"
            return self._give_up(switched)
        return self._run(pkt)

    def _first_request(self, pkt: EapPacket) -> EapStep:
        desired = [m.eap_type for m in self._acceptable if m.eap_type is not None]
        if pkt.eap_type == EapType.EXPANDED:
            return EapStep(expanded_nak(pkt.identifier, desired), reason="expanded Type refused")
        wanted = EapMethod.from_eap_type(pkt.eap_type or 0)
        if wanted is None or wanted not in self._acceptable:
            reason = f"{type_name(pkt.eap_type or 0)} refused with a Nak"
            return EapStep(nak(pkt.identifier, desired), reason=reason)
        self._method = self._make(wanted)
        self._method_name = wanted.value
        return self._run(pkt)

    def _run(self, pkt: EapPacket) -> EapStep:
        method = self._method
        assert method is not None
        result = method.process(pkt.identifier, pkt.data)
        if isinstance(result, Done):
            return self._give_up(result.reason)
        return EapStep(response(pkt.identifier, method.eap_type, result.type_data))

    # --- Success / Failure --------------------------------------------------------------

    def _on_result(self, pkt: EapPacket) -> EapStep:
        self._done = True
        if pkt.code == EapCode.SUCCESS:
            if self._method is None:
                return self._failed("EAP-Success before any method ran")
            verdict = self._method.verdict()
            if not verdict.ok:
                return self._failed(f"EAP-Success refused: {verdict.reason}")
            return EapStep(None, Outcome.SUCCESS, msk=verdict.msk)
        detail = self._method.failure_detail() if self._method is not None else ""
        return self._failed("EAP-Failure from the server" + (f" ({detail})" if detail else ""))

    def _give_up(self, reason: str) -> EapStep:
        self._done = True
        return self._failed(reason)

    def _failed(self, reason: str) -> EapStep:
        where = f"{self._method_name}: " if self._method_name else ""
        return EapStep(None, Outcome.FAILURE, reason=where + reason)

