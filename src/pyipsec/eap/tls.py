"""EAP-TLS (RFC 5216; TLS 1.3 per RFC 9190), server and peer.

Server: EAP-TLS Start (S flag), then each Response's TLS data goes into the TLS
engine and its output back out, fragmented (:mod:`.tls_frag`).  Once the handshake
is complete the client's certificate path is validated (``tls_trust`` at ``when``)
and, like strongSwan by default, the EAP identity must be one of its names
(subject DN or subjectAltName); then the last flight goes out: ChangeCipherSpec and
Finished in TLS 1.2, the one-octet 0x00 application data "protected success
indication" in TLS 1.3 (RFC 9190 §2.5).  The peer's empty Response to it (its ACK)
completes the method: EAP-Success with the MSK.  A TLS error on the server sends
the TLS alert in a Request (RFC 5216 §2.1.3) and ends with EAP-Failure after the
peer's answer; a rejected certificate ends with EAP-Failure at once.

Peer: answers Start with ClientHello, feeds the server's flights to the engine and
sends its own; validates the server's chain (and, when configured, that
``tls_server_name`` is in it) as soon as its handshake is complete and gives up if
it is not acceptable.  It answers the last flight with an empty Response and
believes EAP-Success only after a complete handshake with a valid server and, in
TLS 1.3, the 0x00 success indication.  A TLS error on the peer sends the alert in
its Response (the server then fails the conversation).
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import EapError
from .method import Done, Reply, Verdict
from .packet import EapType
from .settings import EapPeerSettings, EapServerSettings
from .tls_engine import TlsEngine, TlsFailure, check_identity, check_peer_chain
from .tls_frag import ACK, FLAG_S, Frame, Inbox, Outbox

__all__ = ["TlsPeer", "TlsServer"]

#: RFC 9190 §2.5: the server's protected success indication (TLS 1.3).
COMMITMENT = b"\x00"


@dataclass
class _Fragmented:
    """Both directions of fragmentation, shared by server and peer."""

    outbox: Outbox
    inbox: Inbox

    def step(self, frame: Frame) -> bytes | Reply | None:
        """A Reply when the frame only moves fragmentation along (the next fragment
        after an ACK, or our ACK of a fragment); a whole message; None for a bare
        ACK with nothing pending."""
        if self.outbox.pending:
            if not frame.is_ack:
                raise EapError("TLS data where the ACK of our fragment was expected")
            return Reply(self.outbox.next())
        message = self.inbox.add(frame)
        if message is None:
            return Reply(ACK)
        return message or None


class TlsServer:
    """The EAP-TLS server (authenticator)."""

    eap_type = EapType.TLS

    def __init__(self, settings: EapServerSettings, identity: bytes) -> None:
        self._settings = settings
        self._identity = identity
        self._io = _Fragmented(Outbox(settings.tls_fragment_size), Inbox())
        self._engine: TlsEngine | None = None
        self._msk = b""
        self._final_sent = False  # the last flight went out: the next ACK completes
        self._alert = ""  # a TLS alert went out: the next Response ends in Failure

    def start(self, identifier: int) -> bytes:
        return bytes([FLAG_S])

    def process(self, identifier: int, type_data: bytes) -> Reply | Done:
        step = self._io.step(Frame.parse(type_data))
        if isinstance(step, Reply):
            return step
        if self._alert:
            return Done(False, reason=self._alert)
        if step is None:
            if self._final_sent:
                return Done(True, msk=self._msk)
            return Done(False, reason="empty EAP-TLS Response before the handshake ended")
        if self._final_sent:
            return Done(False, reason="TLS data after the handshake")
        try:
            return self._handshake(step)
        except TlsFailure as e:
            return self._fail_with_alert(f"TLS handshake failed: {e}")

    def _handshake(self, message: bytes) -> Reply | Done:
        if self._engine is None:
            self._engine = TlsEngine(
                server=True,
                credentials=self._settings.tls_credentials,
                min_version=self._settings.tls_min_version,
                max_version=self._settings.tls_max_version,
            )
        engine = self._engine
        if not engine.handshake(message):
            out = engine.output()
            if not out:
                return Done(False, reason="the TLS handshake stalled (incomplete TLS data)")
            return Reply(self._io.outbox.send(out))
        problem = self._check_client(engine)
        if problem:
            return Done(False, reason=problem)
        if engine.version == "1.3":
            engine.write_application(COMMITMENT)
        self._msk = engine.msk()
        self._final_sent = True
        return Reply(self._io.outbox.send(engine.output()))

    def _check_client(self, engine: TlsEngine) -> str:
        cert, problem = check_peer_chain(engine, self._settings.tls_trust, self._settings.when)
        if problem or cert is None:
            return f"client {problem}"
        if self._settings.tls_check_identity and self._identity:
            text = self._identity.decode("utf-8", "replace")
            problem = check_identity(text, cert)
            if problem:
                return f"client certificate does not match the EAP identity: {problem}"
        return ""

    def _fail_with_alert(self, reason: str) -> Reply | Done:
        alert = self._engine.output() if self._engine is not None else b""
        if not alert:
            return Done(False, reason=reason)
        self._alert = reason
        return Reply(self._io.outbox.send(alert))


class TlsPeer:
    """The EAP-TLS peer (client)."""

    eap_type = EapType.TLS

    def __init__(self, settings: EapPeerSettings) -> None:
        self._settings = settings
        self._io = _Fragmented(Outbox(settings.tls_fragment_size), Inbox())
        self._engine: TlsEngine | None = None
        self._server_ok = False
        self._committed = False
        self._msk = b""
        self._detail = ""

    def process(self, identifier: int, type_data: bytes) -> Reply | Done:
        frame = Frame.parse(type_data)
        try:
            if frame.start:
                return self._start()
            if self._engine is None:
                return Done(False, reason="EAP-TLS Request before the Start")
            step = self._io.step(frame)
            if isinstance(step, Reply):
                return step
            if step is None:
                return Done(False, reason="EAP-TLS ACK with nothing to acknowledge")
            return self._continue(self._engine, step)
        except TlsFailure as e:
            return self._fail_with_alert(f"TLS handshake failed: {e}")

    def _start(self) -> Reply | Done:
        if self._engine is not None:
            return Done(False, reason="a second EAP-TLS Start")
        s = self._settings
        self._engine = TlsEngine(
            server=False,
            credentials=s.tls_credentials,
            min_version=s.tls_min_version,
            max_version=s.tls_max_version,
        )
        self._engine.handshake()
        return Reply(self._io.outbox.send(self._engine.output()))

    def _continue(self, engine: TlsEngine, message: bytes) -> Reply | Done:
        if self._detail:
            return Done(False, reason=self._detail)
        if not engine.complete:
            if engine.handshake(message):
                problem = self._check_server(engine)
                if problem:
                    self._detail = problem
                    return Done(False, reason=problem)
                self._server_ok = True
                self._msk = engine.msk()
            message = b""
        if engine.complete:
            data = engine.read_application(message)
            if data:
                if engine.version != "1.3" or self._committed or data != COMMITMENT:
                    return Done(False, reason=f"unexpected TLS application data {data[:8]!r}")
                self._committed = True
        out = engine.output()
        return Reply(self._io.outbox.send(out) if out else ACK)

    def _check_server(self, engine: TlsEngine) -> str:
        s = self._settings
        cert, problem = check_peer_chain(engine, s.tls_trust, s.when)
        if problem or cert is None:
            return f"server {problem}"
        if s.tls_server_name:
            problem = check_identity(s.tls_server_name, cert)
            if problem:
                return f"server certificate does not match: {problem}"
        return ""

    def _fail_with_alert(self, reason: str) -> Reply | Done:
        self._detail = reason
        alert = self._engine.output() if self._engine is not None else b""
        if not alert:
            return Done(False, reason=reason)
        return Reply(self._io.outbox.send(alert))

    def verdict(self) -> Verdict:
        engine = self._engine
        if engine is None or not engine.complete or not self._server_ok:
            return Verdict(False, reason=self._detail or "the TLS handshake is not complete")
        if engine.version == "1.3" and not self._committed:
            return Verdict(False, reason="no TLS 1.3 success indication (RFC 9190 §2.5)")
        return Verdict(True, msk=self._msk)

    def failure_detail(self) -> str:
        return self._detail
