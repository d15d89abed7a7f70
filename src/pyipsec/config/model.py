"""Validated configuration objects shared by the core and the daemon.

The shape follows strongSwan's swanctl.conf so its users feel at home: a
connection (IKE SA template) with local/remote addresses and identities, IKE
proposals, lifetimes and DPD, and children (Child SA templates) with traffic
selectors, mode and ESP proposals.  The TOML loader (:mod:`pyipsec.config.loader`)
produces these; tests build them directly.  All durations are seconds (float).
"""

from __future__ import annotations

import datetime as dt
import enum
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization

if TYPE_CHECKING:
    from ..auth.signatures import PrivateKey

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class StartAction(enum.Enum):
    """What to do with a child when the config is loaded (swanctl ``start_action``)."""

    NONE = "none"  # wait for the peer
    START = "start"  # initiate at load
    TRAP = "trap"  # initiate on the first matching outbound packet


class DpdAction(enum.Enum):
    """What to do when the peer is declared dead (swanctl ``dpd_action``)."""

    CLEAR = "clear"
    TRAP = "trap"
    RESTART = "restart"


class Mode(enum.Enum):
    TUNNEL = "tunnel"
    TRANSPORT = "transport"


@dataclass(frozen=True, slots=True)
class TrafficSelectorSpec:
    """One configured selector: an address range (or network), IP protocol and port range.

    ``protocol`` 0 means any; ports 0-65535 mean any.  ``dynamic`` stands for
    the swanctl ``dynamic`` keyword: the outer address of that side.
    """

    start: IPAddress
    end: IPAddress
    protocol: int = 0
    start_port: int = 0
    end_port: int = 65535

    @classmethod
    def from_network(
        cls, net: str | IPNetwork, protocol: int = 0, start_port: int = 0, end_port: int = 65535
    ) -> TrafficSelectorSpec:
        n = ipaddress.ip_network(net, strict=False) if isinstance(net, str) else net
        return cls(n.network_address, n.broadcast_address, protocol, start_port, end_port)


@dataclass(frozen=True, slots=True)
class Lifetimes:
    """Rekey/expiry limits for an SA.

    ``rekey_time`` is the soft limit (0 = never rekey), the hard limit is
    ``rekey_time + over_time`` (swanctl's ``life_time``), and ``rand_time`` is
    the maximum random jitter subtracted from the soft limit.  Bytes/packets
    limits apply to Child SAs only (0 = unlimited).
    """

    rekey_time: float = 0.0
    over_time: float = 0.0
    rand_time: float = 0.0
    rekey_bytes: int = 0
    life_bytes: int = 0
    rekey_packets: int = 0
    life_packets: int = 0


@dataclass(frozen=True, slots=True)
class DpdConfig:
    """RFC 7296 §2.4 liveness checks.  ``interval`` 0 disables them."""

    enabled: bool = True
    interval: float = 30.0
    timeout: float = 150.0
    max_retries: int = 5
    action: DpdAction = DpdAction.CLEAR


@dataclass(frozen=True, slots=True)
class RetransmitConfig:
    """Request retransmission (RFC 7296 §2.1): timeout * base**n, ``tries`` retransmits."""

    tries: int = 5
    timeout: float = 4.0
    base: float = 1.8
    max_delay: float = 0.0  # 0 = no cap
    jitter: float = 0.0  # fraction 0..1 subtracted at random


AuthKind = Literal["psk", "pubkey", "eap", "eap-md5", "eap-mschapv2", "eap-tls", "eap-radius"]
#: The EAP kinds of ``local_auth`` / ``remote_auth`` (swanctl names; "eap" = any method)
EAP_AUTH_KINDS: tuple[AuthKind, ...] = ("eap", "eap-md5", "eap-mschapv2", "eap-tls", "eap-radius")


#: Configured addresses (``local_addrs``, ``remote_addrs``) that match every address:
#: swanctl's ``%any``, ``%any4``, ``%any6``, and the prefixes of a whole family.
ANY_ADDRESS = frozenset(("%any", "%any4", "%any6", "0.0.0.0/0", "::/0"))

#: The bytes all half-open responders may hold together by default (``[daemon]
#: half_open_memory``; why this much: :mod:`pyipsec.ikev2.half_open_memory`).
DEFAULT_HALF_OPEN_MEMORY = 64 << 20

#: Configured identities (``remote.id``, ``eap_id``) that accept every peer identity:
#: swanctl's ``%any``, ``%any6`` and ``*``, and the empty (unset) value.
ANY_IDENTITY = frozenset(("", "%any", "%any6", "*"))


def is_any_identity(text: str) -> bool:
    """A configured identity that accepts every peer (:data:`ANY_IDENTITY`)."""
    return text.strip() in ANY_IDENTITY


def is_eap(kind: str) -> bool:
    """Whether an auth kind is EAP (RFC 7296 §2.16): the initiator authenticates with an
    EAP conversation in extra IKE_AUTH rounds instead of an AUTH payload."""
    return kind == "eap" or kind.startswith("eap-")
SendCert = Literal["ifasked", "always", "never"]
#: Childless IKE SA initiation (RFC 6023, strongSwan's ``childless``): ``allow`` (accept
#: it as responder; initiate with the first child in IKE_AUTH), ``prefer`` (also initiate
#: childless when the responder supports it), ``force`` (only childless, both roles),
#: ``never`` (neither: the responder does not announce support)
Childless = Literal["allow", "prefer", "force", "never"]


def _cert_der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _key_der(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True, slots=True, eq=False)
class LocalCredentials:
    """What we authenticate with (RFC 7296 §2.15, §3.6): our private key and either
    an end-entity ``certificate`` with its ``intermediates`` (issuer first), or no
    certificate (a raw public key, RFC 7670).  ``anchor`` (optional) is the root
    our chain leads to, used to answer the peer's CERTREQ (§3.7).

    Objects, not file names (the core is sans-I/O).  Equality and hash are by DER
    bytes, so a configuration reload with unchanged files compares equal.
    """

    private_key: PrivateKey = field(repr=False)
    certificate: x509.Certificate | None = None
    intermediates: tuple[x509.Certificate, ...] = ()
    anchor: x509.Certificate | None = None

    def _ders(self) -> tuple[bytes, bytes, tuple[bytes, ...], bytes]:
        return (
            _key_der(self.private_key),
            _cert_der(self.certificate) if self.certificate is not None else b"",
            tuple(_cert_der(c) for c in self.intermediates),
            _cert_der(self.anchor) if self.anchor is not None else b"",
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LocalCredentials):
            return NotImplemented
        return self._ders() == other._ders()

    def __hash__(self) -> int:
        return hash(self._ders())


#: Maps the core's ``now`` (monotonic seconds) to the wall-clock time used for
#: certificate validity and CRL freshness.
WallClock = Callable[[float], dt.datetime]


@dataclass(frozen=True, slots=True, eq=False)
class RemoteTrust:
    """How we validate the peer's certificate (RFC 5280 §6, RFC 4945 §5).

    ``anchors`` are the trusted roots (a pinned end-entity certificate works too),
    ``intermediates`` extra CA certificates we know, ``crls`` revocation lists
    (``strict_crl``: fail without a current CRL), ``raw_keys`` the raw public keys
    (DER SubjectPublicKeyInfo) accepted in CERT encoding 15 (RFC 7670).
    ``clock`` converts the core's ``now`` to wall-clock time (None: the monotonic
    clock offset of this process, i.e. ``now`` is ``time.monotonic()``).
    Equality and hash are by DER bytes (``clock`` is not compared).
    """

    anchors: tuple[x509.Certificate, ...] = ()
    intermediates: tuple[x509.Certificate, ...] = ()
    crls: tuple[x509.CertificateRevocationList, ...] = ()
    strict_crl: bool = False
    raw_keys: tuple[bytes, ...] = ()
    clock: WallClock | None = None

    def _ders(self) -> tuple[object, ...]:
        return (
            tuple(_cert_der(c) for c in self.anchors),
            tuple(_cert_der(c) for c in self.intermediates),
            tuple(c.public_bytes(serialization.Encoding.DER) for c in self.crls),
            self.strict_crl,
            self.raw_keys,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RemoteTrust):
            return NotImplemented
        return self._ders() == other._ders()

    def __hash__(self) -> int:
        return hash(self._ders())


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """A virtual IP pool (swanctl ``pools.<name>``, RFC 7296 §2.19): the addresses a
    gateway leases to road warriors that ask with CP(CFG_REQUEST), and the attributes
    sent along in CP(CFG_REPLY) (§3.15.1).

    ``addrs`` is the text as configured; ``first``/``last`` the addresses actually
    served (:func:`pyipsec.pools.pool_range`).  ``split_include`` networks are sent as
    INTERNAL_IP4_SUBNET / INTERNAL_IP6_SUBNET (§3.15.2).
    """

    name: str
    addrs: str
    first: IPAddress
    last: IPAddress
    dns: tuple[IPAddress, ...] = ()
    nbns: tuple[IPAddress, ...] = ()
    split_include: tuple[IPNetwork, ...] = ()


@dataclass(frozen=True, slots=True)
class ChildConfig:
    """A Child SA template (swanctl ``children.<name>``)."""

    name: str
    local_ts: tuple[TrafficSelectorSpec, ...]
    remote_ts: tuple[TrafficSelectorSpec, ...]
    esp_proposals: tuple[str, ...] = ("aes256gcm16-x25519", "aes256gcm16")
    mode: Mode = Mode.TUNNEL
    lifetimes: Lifetimes = Lifetimes(rekey_time=3600.0, over_time=360.0, rand_time=360.0)
    start_action: StartAction = StartAction.NONE
    dpd_action: DpdAction | None = None  # None: inherit from the connection
    replay_window: int = 128
    tfc_padding: bool = False
    close_action: StartAction = StartAction.NONE


@dataclass(frozen=True, slots=True)
class ConnectionConfig:
    """An IKE SA template (swanctl ``connections.<name>``)."""

    name: str
    local_addrs: tuple[str, ...] = ()  # empty = any
    remote_addrs: tuple[str, ...] = ()  # empty/"%any" = any (responder only)
    local_port: int = 500
    remote_port: int = 500
    local_id: str = ""  # e.g. "left.example.net", "198.51.100.2", "user@example.net", "keyid:..."
    remote_id: str = ""  # "" or "%any" = accept any identity
    psk: bytes = field(default=b"", repr=False)  # a secret: never in repr() or logs
    ike_proposals: tuple[str, ...] = ("aes256gcm16-prfsha256-x25519",)
    lifetimes: Lifetimes = Lifetimes(rekey_time=14400.0, over_time=1440.0, rand_time=1440.0)
    reauth: bool = False  # rekey by reauthentication instead of CREATE_CHILD_SA
    dpd: DpdConfig = DpdConfig()
    retransmit: RetransmitConfig = RetransmitConfig()
    encap: bool = False  # force UDP encapsulation (fake NAT-D), like swanctl ``encap = yes``
    nat_traversal: bool = True
    keepalive_interval: float = 20.0
    children: tuple[ChildConfig, ...] = ()
    initial_contact: bool = True
    window_size: int = 1
    keylog: bool = False
    # RFC 7383 IKE fragmentation: announce support; encrypted messages (IKE_AUTH and
    # later) longer than ``fragment_size`` octets (the IKE message, UDP payload) are
    # sent as SKF fragments when the peer supports it too
    fragmentation: bool = True
    childless: Childless = "allow"  # RFC 6023
    fragment_size: int = 1280
    # re-initiations after a DPD/close "restart" whose IKE_SA_INIT/IKE_AUTH failed
    # (swanctl ``keyingtries``): 0 = keep trying forever, with ``reinit_backoff``
    keyingtries: int = 0
    reinit_backoff: RetransmitConfig = RetransmitConfig(
        tries=0, timeout=1.0, base=2.0, max_delay=60.0
    )
    # public-key authentication (RFC 7296 §2.15; may differ per direction)
    local_auth: AuthKind = "psk"  # how we authenticate ourselves
    remote_auth: AuthKind = "psk"  # how the peer must authenticate
    local_credentials: LocalCredentials | None = None  # local_auth = "pubkey"
    # more certificates to choose from by the peer's CERTREQ (§3.7); local_credentials
    # is the first choice and the one used when no requested CA issued any of them
    local_candidates: tuple[LocalCredentials, ...] = ()
    remote_trust: RemoteTrust | None = None  # remote_auth = "pubkey"
    send_cert: SendCert = "ifasked"  # CERT payloads: on CERTREQ only, always, never
    send_certreq: bool = True  # CERTREQ naming our anchors (remote_auth = "pubkey")
    rsa_pss: bool = False  # sign with RSASSA-PSS instead of PKCS#1 v1.5 (RFC 7427)
    # EAP (RFC 7296 §2.16).  local_auth "eap-*": we are the EAP peer when we initiate
    # (as responder: EAP-only, RFC 5998); remote_auth "eap-*": we are the EAP server
    # ("eap-radius": relayed to a RADIUS server by the daemon) when we respond (as
    # initiator: the responder authenticates through EAP only, RFC 5998).  EAP-TLS uses
    # local_credentials and remote_trust.
    local_eap_id: str = ""  # the EAP identity we send; "" = our IKE identity
    remote_eap_id: str = ""  # "%any": ask (EAP-Identity); "" = the peer's IKE identity
    eap_secret: bytes = field(default=b"", repr=False)  # our EAP password (client)
    # the users we authenticate (server): (EAP identity, password) from [secrets.eap-*]
    eap_users: tuple[tuple[bytes, bytes], ...] = field(default=(), repr=False)
    # configuration payloads (RFC 7296 §2.19): as responder, lease addresses from these
    # pools (DaemonConfig.pools / IkeManager(pools=...)) to peers that ask; as
    # initiator, ask for these virtual IPs ("0.0.0.0" / "::" = any, else that address)
    pools: tuple[str, ...] = ()
    vips: tuple[str, ...] = ()

    def child(self, name: str) -> ChildConfig:
        for c in self.children:
            if c.name == name:
                return c
        raise KeyError(name)


@dataclass(frozen=True, slots=True)
class RadiusServerConfig:
    """One RADIUS server of the EAP-RADIUS relay (``[eap_radius.servers.NAME]``).

    ``secret`` (RFC 2865 §3, from ``[secrets.radius-NAME]``) is never in repr() or
    logs.  Servers with a higher ``preference`` are asked first (strongSwan's
    eap-radius ``preference``), in configuration order among equals.
    """

    name: str
    address: str  # an IP address
    secret: bytes = field(default=b"", repr=False)
    auth_port: int = 1812
    preference: int = 0
    acct_port: int = 1813  # RADIUS accounting (RFC 2866 §3)


@dataclass(frozen=True, slots=True)
class EapRadiusConfig:
    """The daemon's RADIUS client for ``remote.auth = "eap-radius"`` (``[eap_radius]``,
    RFC 3579), shaped like strongSwan's eap-radius plugin.

    A request is sent ``1 + retries`` times to one server, waiting ``timeout`` seconds,
    then ``timeout * backoff``, ``timeout * backoff**2``, ... (RFC 5080 §2.2.1), before
    the next server is tried.  ``sockets``: UDP sockets per server, each with its own
    256 RADIUS identifiers (outstanding requests).  ``framed_mtu`` 0: no Framed-MTU.

    ``accounting``: RADIUS accounting (RFC 2866) of the IKE SAs RADIUS authenticated:
    Start once established, Interim-Update every ``accounting_interval`` seconds (0:
    none; the server's Acct-Interim-Interval wins, RFC 2869 §5.16), Stop when they end;
    ``accounting_requires_vip``: only for IKE SAs with a virtual IP;
    ``accounting_close_on_timeout``: delete an IKE SA whose Start no server
    acknowledged (strongSwan's eap-radius options of the same names).
    """

    servers: tuple[RadiusServerConfig, ...] = ()
    timeout: float = 3.0
    retries: int = 3
    backoff: float = 1.0
    nas_identifier: str = "pyipsec"
    station_id_with_port: bool = True
    framed_mtu: int = 1200
    sockets: int = 1
    accounting: bool = False
    accounting_interval: float = 0.0
    accounting_requires_vip: bool = False
    accounting_close_on_timeout: bool = True


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    """The whole configuration file."""

    connections: tuple[ConnectionConfig, ...] = ()
    listen_addrs: tuple[str, ...] = ("0.0.0.0",)
    ike_port: int = 500
    natt_port: int = 4500
    control_socket: str = "/run/pyipsec/control.sock"
    # strongSwan's VICI protocol (swanctl) on this UNIX socket; "" = off
    vici_socket: str = ""
    tun_name: str = "pyipsec0"
    tun_mtu: int = 1400
    tun_addresses: tuple[str, ...] = ()
    log_levels: dict[str, str] = field(default_factory=dict)
    log_format: str = "text"  # [daemon.log] format: "text" or "json" (one object a line)
    keylog_file: str = ""
    cookie_threshold: int = 32
    half_open_timeout: float = 30.0
    # bounded pre-authentication state (0 = no such limit)
    half_open_limit: int = 5000  # half-open responder IKE SAs in total
    cookie_threshold_ip: int = 3  # half-open SAs from one IP before it must send cookies
    block_threshold: int = 5  # half-open SAs from one IP beyond which it is ignored
    # bytes all half-open responders may hold (cookies above half, refusals at it)
    half_open_memory: int = DEFAULT_HALF_OPEN_MEMORY
    # RFC 7383 reassembly: decrypted octets kept per IKE SA, before/after authentication
    max_fragment_bytes_unauthenticated: int = 10_000
    max_fragment_bytes: int = 65_536
    # RFC 7296 §2.12: reuse the responder's IKE_SA_INIT key exchange value this long
    # (0 = never: a fresh one per IKE SA) and for at most this many IKE SAs
    ke_reuse_seconds: float = 0.0
    ke_reuse_count: int = 128
    # Prometheus endpoint "host:port" ("[::1]:9712" for IPv6); "" = off
    metrics: str = ""
    # virtual IP pools ([pools.NAME]) the connections' ``pools`` name
    pools: tuple[PoolConfig, ...] = ()
    # run on virtual IPs assigned to us / removed again (env: README "vip_hook"); "" = off
    vip_hook: str = ""
    # the RADIUS client of remote.auth = "eap-radius" ([eap_radius], RFC 3579)
    eap_radius: EapRadiusConfig = EapRadiusConfig()
