"""Sessions for the IKE core: :func:`server_session` (we authenticate the peer) and
:func:`peer_session` (we are authenticated), from the settings the core builds out
of the connection's configuration.

``rng(n)`` gives n random octets (``os.urandom`` in the daemon; injected so that the
core stays sans-I/O and tests are repeatable).
"""

from __future__ import annotations

from .base import EapPeerSession, EapServerSession
from .md5 import Md5Peer, Md5Server
from .method import PeerMethod, Rng, ServerMethod
from .mschapv2 import MsChapV2Peer, MsChapV2Server
from .peer import PeerConversation
from .relay import RadiusRelayServer
from .server import ServerConversation
from .settings import EapMethod, EapPeerSettings, EapServerSettings
from .tls import TlsPeer, TlsServer

__all__ = ["peer_session", "relay_session", "server_session"]


def server_session(
    settings: EapServerSettings, rng: Rng, identity: bytes = b""
) -> EapServerSession:
    """The authenticator's session.  ``identity``: the peer's identity when known
    (its IKE identity or ``remote.eap_id``), used when ``settings.ask_identity`` is
    off; the EAP-Identity round happens whenever it is empty.  With
    ``settings.method`` RADIUS it is :func:`relay_session`."""
    if settings.method is EapMethod.RADIUS:
        return relay_session(rng, identity, settings.ask_identity)

    def make(method: EapMethod, peer_identity: bytes) -> ServerMethod:
        return _server_method(settings, rng, method, peer_identity)

    return ServerConversation(settings, rng, identity, make)


def relay_session(rng: Rng, identity: bytes = b"", ask_identity: bool = True) -> EapServerSession:
    """The EAP-RADIUS pass-through session (:class:`~pyipsec.eap.relay.RadiusRelayServer`,
    RFC 3579): the daemon relays its PENDING steps to the RADIUS server."""
    return RadiusRelayServer(rng, identity, ask_identity)


def peer_session(settings: EapPeerSettings, rng: Rng) -> EapPeerSession:
    """The peer's session: answers the server's Requests with our credentials."""

    def make(method: EapMethod) -> PeerMethod:
        return _peer_method(settings, rng, method)

    return PeerConversation(settings, make)


def _server_method(
    settings: EapServerSettings, rng: Rng, method: EapMethod, identity: bytes
) -> ServerMethod:
    if method is EapMethod.MD5:
        return Md5Server(identity, settings.secret_of(identity), rng)
    if method is EapMethod.MSCHAPV2:
        return MsChapV2Server(settings.secret_of, settings.server_name, rng)
    if method is EapMethod.TLS:
        return TlsServer(settings, identity)
    raise ValueError(f"{method.value} has no local server implementation")


def _peer_method(settings: EapPeerSettings, rng: Rng, method: EapMethod) -> PeerMethod:
    if method is EapMethod.MD5:
        return Md5Peer(settings.secret)
    if method is EapMethod.MSCHAPV2:
        return MsChapV2Peer(settings.identity, settings.secret, rng)
    if method is EapMethod.TLS:
        return TlsPeer(settings)
    raise ValueError(f"{method.value} has no peer implementation")
