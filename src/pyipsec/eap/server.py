"""The authenticator's conversation (RFC 3748 §2, §4, §5.1, §5.3): EAP-Identity,
method selection with Nak, then one method, then Success or Failure.

Identifiers (§4.1): each new Request takes the next Identifier (the first one is
random); a Response whose Identifier is not the outstanding Request's, anything
but a Response, and malformed packets are silently discarded (a CONTINUE step
without a packet, its ``reason`` saying why for the log).  Success/Failure carry
the Identifier of the Response they answer (§4.2).

Nak (§5.3.1) is accepted only as the answer to a method's first Request; the
server then starts the first method the peer desires among those it still may
run, or fails.  A method that cannot parse a Response ends the conversation
with Failure.  Once Success or Failure went out, every further packet is
discarded.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from .base import BackendReply, EapError, EapStep, Outcome
from .method import Done, Rng, ServerMethod
from .packet import (
    EapPacket,
    EapType,
    failure,
    identity_of,
    nak_types,
    parse,
    request,
    success,
    type_name,
)
from .settings import EapMethod, EapServerSettings

__all__ = ["MAX_ROUNDS", "MethodFactory", "ServerConversation"]

#: Requests one conversation may send (EAP-TLS with small fragments needs dozens).
MAX_ROUNDS = 512

#: ``make(method, identity)`` -> the server side of ``method`` for ``identity``.
MethodFactory = Callable[[EapMethod, bytes], ServerMethod]


class _Phase(enum.Enum):
    NEW = "new"
    IDENTITY = "identity"
    METHOD = "method"
    DONE = "done"


def discard(reason: str) -> EapStep:
    """A step that sends nothing and leaves the conversation as it was."""
    return EapStep(None, Outcome.CONTINUE, reason=f"discarded: {reason}")


class ServerConversation:
    """Implements :class:`~pyipsec.eap.base.EapServerSession` for the local methods."""

    def __init__(
        self, settings: EapServerSettings, rng: Rng, identity: bytes, make: MethodFactory
    ) -> None:
        self._settings = settings
        self._identity = identity
        self._make = make
        self._next_id = rng(1)[0]
        self._outstanding: int | None = None
        self._phase = _Phase.NEW
        self._method: ServerMethod | None = None
        self._method_name = ""
        self._answered = False  # the current method got a Response (Nak no longer valid)
        self._remaining = list(settings.candidates())
        self._rounds = 0

    # --- EapServerSession -------------------------------------------------------------

    def start(self) -> EapStep:
        if self._phase is not _Phase.NEW:
            return discard("the conversation has already started")
        if self._settings.ask_identity or not self._identity:
            self._phase = _Phase.IDENTITY
            return self._request(EapType.IDENTITY, b"")
        return self._begin(self._remaining, self._next_id)

    def process(self, packet: bytes) -> EapStep:
        try:
            pkt = parse(packet)
        except EapError as e:
            return discard(str(e))
        if self._phase in (_Phase.NEW, _Phase.DONE):
            return discard(f"no Request outstanding ({self._phase.value})")
        if not pkt.is_response:
            return discard(f"EAP Code {pkt.code} where a Response was expected")
        if pkt.identifier != self._outstanding:
            return discard(f"Identifier {pkt.identifier}, expected {self._outstanding}")
        try:
            if self._phase is _Phase.IDENTITY:
                return self._on_identity(pkt)
            return self._on_method(pkt)
        except EapError as e:
            return self._finish(pkt.identifier, Done(False, reason=f"malformed Response: {e}"))

    def backend_reply(self, reply: BackendReply) -> EapStep:
        return discard("no AAA backend behind a local EAP method")

    # --- the rounds ---------------------------------------------------------------------

    def _request(self, eap_type: int, data: bytes) -> EapStep:
        self._rounds += 1
        if self._rounds > MAX_ROUNDS:
            return self._finish(self._next_id, Done(False, reason="too many EAP rounds"))
        ident = self._next_id
        self._next_id = (ident + 1) & 0xFF
        self._outstanding = ident
        return EapStep(request(ident, eap_type, data), identity=self._identity)

    def _on_identity(self, pkt: EapPacket) -> EapStep:
        if pkt.eap_type != EapType.IDENTITY:
            reason = f"{type_name(pkt.eap_type or 0)} Response to EAP-Identity"
            return self._finish(pkt.identifier, Done(False, reason=reason))
        self._identity = identity_of(pkt.data) or self._identity
        return self._begin(self._remaining, pkt.identifier)

    def _begin(self, choices: list[EapMethod], last_id: int) -> EapStep:
        """Start the first method of ``choices`` (all still allowed)."""
        if not choices:
            reason = "no EAP method can run (no users and no TLS credentials configured)"
            return self._finish(last_id, Done(False, reason=reason))
        kind = choices[0]
        self._remaining.remove(kind)
        method = self._make(kind, self._identity)
        self._method, self._method_name, self._answered = method, kind.value, False
        self._phase = _Phase.METHOD
        ident = self._next_id
        return self._request(method.eap_type, method.start(ident))

    def _on_method(self, pkt: EapPacket) -> EapStep:
        method = self._method
        assert method is not None
        if pkt.eap_type in (EapType.NAK, EapType.EXPANDED) and not self._answered:
            return self._on_nak(pkt)
        if pkt.eap_type != method.eap_type:
            got = type_name(pkt.eap_type or 0)
            reason = f"{got} Response during {self._method_name}"
            return self._finish(pkt.identifier, Done(False, reason=reason))
        self._answered = True
        result = method.process(pkt.identifier, pkt.data)
        if isinstance(result, Done):
            return self._finish(pkt.identifier, result)
        return self._request(method.eap_type, result.type_data)

    def _on_nak(self, pkt: EapPacket) -> EapStep:
        """The peer refused the method's first Request (§5.3.1)."""
        desired = nak_types(pkt)
        methods = [EapMethod.from_eap_type(t) for t in desired]
        choices = [m for m in methods if m is not None and m in self._remaining]
        if not choices:
            wanted = ", ".join(type_name(t) for t in desired) or "nothing"
            reason = f"the peer refused it and wants {wanted}: no common EAP method"
            return self._finish(pkt.identifier, Done(False, reason=reason))
        return self._begin(choices, pkt.identifier)

    def _finish(self, identifier: int, result: Done) -> EapStep:
        self._phase = _Phase.DONE
        self._outstanding = None
        if result.ok:
            identity = result.identity if result.identity is not None else self._identity
            return EapStep(success(identifier), Outcome.SUCCESS, msk=result.msk, identity=identity)
        where = f"{self._method_name}: " if self._method_name else ""
        return EapStep(
            failure(identifier), Outcome.FAILURE, identity=self._identity,
            reason=where + result.reason,
        )
