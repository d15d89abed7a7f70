"""What the IKE core tells the outside world (frozen dataclasses).

The daemon drains these with :meth:`IkeManager.next_event` and installs or
removes ESP SAs from :class:`ChildSaInstalled`, :class:`ChildSaRekeyed` and
:class:`ChildSaDeleted`.  Nothing here holds references to mutable core state.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from ..config.model import DpdAction, Mode
from .selectors import Selector

Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class ChildLifetimes:
    """Absolute deadlines (same clock as ``now``) and volume limits of a Child SA.

    ``soft``/``hard`` are None when there is no time limit; byte/packet limits
    are 0 when unlimited.  The core rekeys at ``soft`` and deletes at ``hard``;
    the data plane reports volumes with :meth:`IkeManager.notify_traffic`.
    """

    soft: float | None = None
    hard: float | None = None
    rekey_bytes: int = 0
    life_bytes: int = 0
    rekey_packets: int = 0
    life_packets: int = 0


@dataclass(frozen=True, slots=True)
class ChildSaInfo:
    """Everything the data plane needs to install one Child SA pair (both directions).

    "in" keys protect packets we receive (SA ``spi_in``), "out" keys the ones we
    send (SA ``spi_out``).  ``encr_key_*`` include the 4-byte salt for AEAD
    transforms (RFC 4106 §8.1, RFC 7634 §4).
    """

    ike_id: int
    conn: str
    child: str
    spi_in: int
    spi_out: int
    encr_id: int
    key_bits: int | None
    integ_id: int | None
    esn: bool
    encr_key_in: bytes = field(repr=False)
    integ_key_in: bytes = field(repr=False)
    encr_key_out: bytes = field(repr=False)
    integ_key_out: bytes = field(repr=False)
    local_ts: tuple[Selector, ...]
    remote_ts: tuple[Selector, ...]
    mode: Mode
    encap: bool
    local: Address
    remote: Address
    lifetimes: ChildLifetimes
    replay_window: int = 128
    suite: str = ""
    pfs_group: int | None = None
    tfc_padding: bool = False


@dataclass(frozen=True, slots=True)
class IkeSaKeyMaterial:
    """The SPIs, suite and SK_e*/SK_a* of an IKE SA (RFC 7296 §2.14), for a key log.

    ``integ_id`` is None for AEAD suites (their SK_a* are empty).
    """

    spi_i: bytes
    spi_r: bytes
    encr_id: int
    key_bits: int | None
    integ_id: int | None
    sk_ei: bytes = field(repr=False)
    sk_er: bytes = field(repr=False)
    sk_ai: bytes = field(repr=False)
    sk_ar: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class IkeSaEstablished:
    """IKE_AUTH completed (RFC 7296 §1.2); ``keys`` for a key log."""

    ike_id: int
    conn: str
    local: Address
    remote: Address
    local_id: str = ""
    remote_id: str = ""
    nat_local: bool = False  # we are behind a NAT
    nat_remote: bool = False  # the peer is behind a NAT (or fakes it)
    initiator: bool = True
    keys: IkeSaKeyMaterial | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class IkeSaRekeyed:
    """The IKE SA ``old_id`` was replaced by ``new_id`` (RFC 7296 §1.3.2, §2.18); the
    children moved to it.  ``keys`` are the new IKE SA's."""

    old_id: int
    new_id: int
    conn: str = ""
    keys: IkeSaKeyMaterial | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class IkeSaDeleted:
    ike_id: int
    conn: str = ""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class IkeSaFailed:
    ike_id: int
    conn: str
    reason: str
    notify: int | None = None


@dataclass(frozen=True, slots=True)
class ChildSaInstalled:
    info: ChildSaInfo


@dataclass(frozen=True, slots=True)
class ChildSaRekeyed:
    """A rekeyed child: ``info`` is the new SA; the old one (``old_spi_in``) is deleted
    separately by a :class:`ChildSaDeleted` once the peer confirms (RFC 7296 §2.8)."""

    old_spi_in: int
    info: ChildSaInfo


@dataclass(frozen=True, slots=True)
class ChildSaDeleted:
    spi_in: int
    spi_out: int
    reason: str = ""
    ike_id: int = 0
    conn: str = ""
    child: str = ""


@dataclass(frozen=True, slots=True)
class ChildSaFailed:
    """A Child SA could not be created (the IKE SA stays up, RFC 7296 §2.21.2)."""

    ike_id: int
    conn: str
    child: str
    reason: str
    notify: int | None = None


@dataclass(frozen=True, slots=True)
class PeerDead:
    """The peer did not answer (§2.4).  ``action`` is the connection's ``dpd_action``;
    ``children`` maps each Child SA name the IKE SA carried to its effective action (the
    child's own ``dpd_action`` when set, else ``action``).  The manager re-initiates the
    children whose action is "restart"; the daemon re-installs trap policies for "trap"."""

    ike_id: int
    conn: str
    action: DpdAction = DpdAction.CLEAR
    children: tuple[tuple[str, DpdAction], ...] = ()

    def children_with(self, action: DpdAction) -> list[str]:
        """The names of the children whose effective action is ``action``."""
        return [name for name, a in self.children if a is action]


@dataclass(frozen=True, slots=True)
class PeerAddressChanged:
    ike_id: int
    old: Address
    new: Address


@dataclass(frozen=True, slots=True)
class LivenessAnswered:
    """The peer answered a liveness check asked for with :meth:`IkeManager.liveness`
    (an empty INFORMATIONAL request, RFC 7296 §2.4); times on the ``now`` clock."""

    ike_id: int
    conn: str
    sent_at: float
    answered_at: float

    @property
    def rtt(self) -> float:
        return self.answered_at - self.sent_at


@dataclass(frozen=True, slots=True)
class VirtualIpsAssigned:
    """Configuration payloads (RFC 7296 §2.19) of IKE SA ``ike_id``: ``local`` are the
    addresses the peer assigned to us (we asked with ``vips``; put them on the TUN and
    use them as the source of tunnel traffic), ``remote`` the ones we leased to the peer
    (``pools``; its Child SAs' remote selectors).  ``dns`` / ``nbns`` / ``subnets``: the
    attributes of the CFG_REPLY.  They stay with the IKE SA through rekeys
    (:class:`IkeSaRekeyed`) and are gone with it (:class:`IkeSaDeleted` /
    :class:`IkeSaFailed`)."""

    ike_id: int
    conn: str
    local: tuple[str, ...] = ()
    remote: tuple[str, ...] = ()
    dns: tuple[str, ...] = ()
    nbns: tuple[str, ...] = ()
    subnets: tuple[str, ...] = ()
    remote_id: str = ""


@dataclass(frozen=True, slots=True)
class NotifyReceived:
    ike_id: int
    type: int
    data: bytes = b""
    error: bool = False


@dataclass(frozen=True, slots=True)
class EapBackendRequest:
    """A responder's EAP conversation relays to the AAA backend (``remote.auth =
    "eap-radius"``, RFC 3579): send ``eap`` (a whole EAP packet from the peer, or the
    conversation's start) for the peer's EAP ``identity`` (empty while unknown) and
    answer with :meth:`IkeCore.eap_backend_reply`.  The IKE request waits unanswered
    meanwhile; the half-open timeout still applies.  ``local`` is our address of the IKE
    SA (the gateway's NAS-IP-Address / Called-Station-Id, RFC 3580 §3.20/§3.21)."""

    ike_id: int
    conn: str
    identity: bytes
    eap: bytes = field(repr=False)
    remote: Address
    local: Address | None = None


Event = (
    IkeSaEstablished
    | IkeSaRekeyed
    | IkeSaDeleted
    | IkeSaFailed
    | ChildSaInstalled
    | ChildSaRekeyed
    | ChildSaDeleted
    | ChildSaFailed
    | PeerDead
    | PeerAddressChanged
    | LivenessAnswered
    | NotifyReceived
    | EapBackendRequest
    | VirtualIpsAssigned
)


def event_to_json(ev: Any) -> dict[str, Any]:
    """A JSON-ready view of an event (keys omitted)."""
    out: dict[str, Any] = {"event": type(ev).__name__}
    for name in ev.__dataclass_fields__:
        v = getattr(ev, name)
        if isinstance(v, ChildSaInfo):
            v = {
                k: getattr(v, k)
                for k in ("ike_id", "conn", "child", "spi_in", "spi_out", "encap", "suite")
            } | {"mode": v.mode.value}
        elif isinstance(v, IkeSaKeyMaterial):
            continue
        elif isinstance(v, bytes):
            v = v.hex()
        elif isinstance(v, enum.Enum):
            v = v.value
        elif isinstance(v, tuple):
            v = [
                [x.value if isinstance(x, enum.Enum) else x for x in i]
                if isinstance(i, tuple)
                else i
                for i in v
            ]
        out[name] = v
    return out
