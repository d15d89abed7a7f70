"""What an EAP conversation needs from the configuration (frozen, built by the core).

The swanctl names of the authentication classes (``local.auth`` / ``remote.auth``)
map to :class:`EapMethod` with :meth:`EapMethod.from_auth`: ``eap-md5``,
``eap-mschapv2``, ``eap-tls``, ``eap-radius`` (the gateway relays to a RADIUS server,
RFC 3579), and plain ``eap`` (None: any method the other side offers or accepts).
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from ..config.model import LocalCredentials, RemoteTrust
from .packet import EapType

__all__ = [
    "TLS_VERSIONS",
    "EapMethod",
    "EapPeerSettings",
    "EapServerSettings",
]

#: TLS versions EAP-TLS may use (RFC 5216 for 1.2, RFC 9190 for 1.3).
TLS_VERSIONS = ("1.2", "1.3")
MIN_TLS_FRAGMENT = 64
MAX_TLS_FRAGMENT = 65535


class EapMethod(enum.Enum):
    """An EAP method we run, by its swanctl name."""

    MD5 = "eap-md5"
    MSCHAPV2 = "eap-mschapv2"
    TLS = "eap-tls"
    RADIUS = "eap-radius"  # server only: relayed to an AAA server

    @property
    def eap_type(self) -> int | None:
        """The EAP Type (None for RADIUS, whose method the backend chooses)."""
        return _TYPES.get(self)

    @classmethod
    def from_auth(cls, name: str) -> EapMethod | None:
        """``"eap-mschapv2"`` -> MSCHAPV2, ..., ``"eap"`` -> None (any method);
        ValueError for any other name."""
        lowered = name.strip().lower()
        if lowered == "eap":
            return None
        for member in cls:
            if member.value == lowered:
                return member
        names = ", ".join(repr(m.value) for m in cls)
        raise ValueError(f"unknown EAP method {name!r} (one of 'eap', {names})")

    @classmethod
    def from_eap_type(cls, eap_type: int) -> EapMethod | None:
        """The method of an EAP Type we implement, else None."""
        for member, value in _TYPES.items():
            if value == eap_type:
                return member
        return None


_TYPES: dict[EapMethod, int] = {
    EapMethod.MD5: EapType.MD5,
    EapMethod.MSCHAPV2: EapType.MSCHAPV2,
    EapMethod.TLS: EapType.TLS,
}

#: "any method": the order a server proposes them in (strongest first).
SERVER_PREFERENCE = (EapMethod.TLS, EapMethod.MSCHAPV2, EapMethod.MD5)


def _check_tls(min_version: str, max_version: str, fragment_size: int) -> None:
    for v in (min_version, max_version):
        if v not in TLS_VERSIONS:
            raise ValueError(f"TLS version {v!r} not supported (one of {', '.join(TLS_VERSIONS)})")
    if TLS_VERSIONS.index(min_version) > TLS_VERSIONS.index(max_version):
        raise ValueError(f"tls_min_version {min_version} is above tls_max_version {max_version}")
    if not MIN_TLS_FRAGMENT <= fragment_size <= MAX_TLS_FRAGMENT:
        raise ValueError(
            f"tls_fragment_size {fragment_size} outside {MIN_TLS_FRAGMENT}..{MAX_TLS_FRAGMENT}"
        )


@dataclass(frozen=True, slots=True)
class EapServerSettings:
    """The authenticator's side (``remote.auth = "eap-..."`` on a gateway).

    ``method``: the method to run, None for any we can (EAP-TLS when ``tls_*`` are
    set, then EAP-MSCHAPv2 and EAP-MD5 when ``users`` are), the peer choosing by Nak
    (RFC 3748 §5.3); RADIUS makes :func:`~pyipsec.eap.factory.server_session` return
    the relay.  ``users``: (identity, secret) pairs from ``[secrets.eap-*]``.
    ``ask_identity``: start with EAP-Identity (RFC 3748 §5.1); otherwise the
    ``identity`` given to the factory is used (the Identity round still happens
    when that is empty).  EAP-TLS: ``tls_credentials`` (our certificate and key),
    ``tls_trust`` (anchors for client certificates), ``when`` (wall-clock time of
    the validity check), ``tls_check_identity`` (the client certificate must
    contain the EAP identity, as strongSwan checks by default),
    ``tls_fragment_size`` (the largest EAP-TLS packet we send, RFC 5216 §2.1.5),
    TLS versions ``"1.2"``/``"1.3"``.  ``server_name``: the Name in EAP-MSCHAPv2
    Challenges (RFC 2759 §4).
    """

    method: EapMethod | None = None
    users: tuple[tuple[bytes, bytes], ...] = ()
    ask_identity: bool = True
    tls_credentials: LocalCredentials | None = None
    tls_trust: RemoteTrust | None = None
    when: dt.datetime | None = None
    tls_fragment_size: int = 1024
    tls_min_version: str = "1.2"
    tls_max_version: str = "1.3"
    tls_check_identity: bool = True
    server_name: bytes = b"pyipsec"

    def __post_init__(self) -> None:
        _check_tls(self.tls_min_version, self.tls_max_version, self.tls_fragment_size)
        if self.method is EapMethod.TLS and not self.tls_ready:
            raise ValueError("eap-tls needs tls_credentials with a certificate and tls_trust")
        if not 0 < len(self.server_name) < 200:
            # strongSwan's peer refuses a Challenge without a Name (RFC 2759 §4)
            raise ValueError("server_name must be 1..199 octets")

    @property
    def tls_ready(self) -> bool:
        """Whether EAP-TLS can run: a server certificate and anchors for clients."""
        return (
            self.tls_credentials is not None
            and self.tls_credentials.certificate is not None
            and self.tls_trust is not None
            and bool(self.tls_trust.anchors)
        )

    def secret_of(self, identity: bytes) -> bytes | None:
        """The configured secret of ``identity`` (exact match), None when unknown."""
        for user, secret in self.users:
            if user == identity:
                return secret
        return None

    def candidates(self) -> tuple[EapMethod, ...]:
        """The methods this server may run, preferred first."""
        if self.method is not None:
            return (self.method,)
        usable = {EapMethod.TLS: self.tls_ready}
        return tuple(m for m in SERVER_PREFERENCE if usable.get(m, bool(self.users)))


@dataclass(frozen=True, slots=True)
class EapPeerSettings:
    """The peer's side (``local.auth = "eap-..."`` on a client).

    ``identity``/``secret``: our EAP identity (RFC 3748 §5.1) and password (EAP-MD5,
    EAP-MSCHAPv2).  ``methods``: the methods we accept, empty for any we support and
    have credentials for; a Request for another one gets a Nak (§5.3.1).  EAP-TLS:
    ``tls_credentials`` (our client certificate and key), ``tls_trust`` (anchors for
    the server's certificate), ``when`` (wall-clock time of the validity check),
    ``tls_server_name`` (when not empty, an identity the server certificate must
    contain, e.g. the gateway's IKE identity ``vpn.example.net``).
    """

    identity: bytes
    secret: bytes = b""
    methods: tuple[EapMethod, ...] = ()
    tls_credentials: LocalCredentials | None = None
    tls_trust: RemoteTrust | None = None
    when: dt.datetime | None = None
    tls_fragment_size: int = 1024
    tls_min_version: str = "1.2"
    tls_max_version: str = "1.3"
    tls_server_name: str = ""

    def __post_init__(self) -> None:
        _check_tls(self.tls_min_version, self.tls_max_version, self.tls_fragment_size)
        if EapMethod.RADIUS in self.methods:
            raise ValueError("eap-radius is a server (gateway) method only")

    @property
    def tls_ready(self) -> bool:
        """Whether EAP-TLS can run: a client certificate and anchors for the server."""
        return (
            self.tls_credentials is not None
            and self.tls_credentials.certificate is not None
            and self.tls_trust is not None
            and bool(self.tls_trust.anchors)
        )

    def acceptable(self) -> tuple[EapMethod, ...]:
        """The methods we answer, in our order of preference (for a Nak)."""
        wanted = self.methods or SERVER_PREFERENCE
        return tuple(m for m in wanted if self._can(m))

    def _can(self, method: EapMethod) -> bool:
        if method is EapMethod.TLS:
            return self.tls_ready
        if method in (EapMethod.MD5, EapMethod.MSCHAPV2):
            return bool(self.secret)
        return False
