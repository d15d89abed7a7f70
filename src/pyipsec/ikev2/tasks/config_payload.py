"""Configuration payloads and virtual IPs (RFC 7296 §2.19, §3.15), both roles.

Initiator (``conn.vips``): the first IKE_AUTH request -- the one with SAi2 -- carries
CP(CFG_REQUEST) asking for an INTERNAL_IP4_ADDRESS / INTERNAL_IP6_ADDRESS per configured
virtual IP (empty for ``0.0.0.0`` / ``::``, else the address wanted; a reauthentication
asks for the addresses the old IKE SA had, §2.8.3) and for DNS servers (empty
INTERNAL_IP4_DNS / INTERNAL_IP6_DNS); its TSi for a ``dynamic`` local side is
``0.0.0.0/0`` / ``::/0`` (as strongSwan proposes).  CP(CFG_REPLY) is recorded
(:func:`apply_reply`): the addresses become the ``dynamic`` local selectors of every
Child SA (the responder's TSi is narrowed to them, :func:`narrow_local`), DNS, NBNS and
subnets are reported (:class:`~pyipsec.ikev2.events.VirtualIpsAssigned`).

Responder (``conn.pools``): the CP(CFG_REQUEST) of the first IKE_AUTH request is kept
and answered once the peer is authenticated (:func:`respond`):
one address per requested address (of a family a pool serves), leased for the peer's
identity (:mod:`pyipsec.pools`), in CP(CFG_REPLY) with the DNS / NBNS / subnet attributes
of the pools that leased; the ``dynamic`` remote selectors become the leased addresses
(the peer's ``0.0.0.0/0`` TSi is narrowed to them, §2.9).  Nothing assigned:
N(INTERNAL_ADDRESS_FAILURE) and no Child SA (§3.15.4); pools but no address request:
N(FAILED_CP_REQUIRED) (§2.19) -- the IKE SA stays up in both cases, as in strongSwan.

Leases go back to the pool when the IKE SA ends (:func:`release`, from ``IkeSa.end``)
and move with the children to a rekeyed IKE SA (:func:`transfer`, from
``IkeSa.migrate_to``).  Unknown attributes are ignored (§3.15.1); a known attribute of
a wrong length is INVALID_SYNTAX (only ever sent in an authenticated IKE SA).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...config.model import ChildConfig, IPAddress, IPNetwork
from ...pools import Lease, PoolRegistry, acquire
from ...recovery import kind_for_exception
from ..constants import CfgAttr, CfgType, NotifyType, PayloadType
from ..errors import ParseError, ProtocolError, TsUnacceptable
from ..events import VirtualIpsAssigned
from ..message import Message
from ..payloads import CpPayload, NotifyPayload
from ..selectors import Selector, narrow
from .base import PayloadList

if TYPE_CHECKING:
    from ..sa import IkeSa

__all__ = [
    "CpAttributes",
    "VirtualIps",
    "apply_reply",
    "dynamic_selectors",
    "narrow_local",
    "parse_attributes",
    "release",
    "request_payloads",
    "respond",
    "transfer",
]

_ANY = {4: ipaddress.ip_address("0.0.0.0"), 6: ipaddress.ip_address("::")}
#: the prefix length sent with a leased INTERNAL_IP6_ADDRESS (one address, §3.15.3)
V6_PREFIX = 128


@dataclass(slots=True)
class VirtualIps:
    """The virtual IPs of one IKE SA (``IkeSa.vips``); both roles use the same record."""

    requested: tuple[IPAddress, ...] = ()  # initiator: what CP(CFG_REQUEST) asked for
    local: tuple[IPAddress, ...] = ()  # initiator: assigned to us (CFG_REPLY)
    leases: list[Lease] = field(default_factory=list)  # responder: to give back
    dns: tuple[IPAddress, ...] = ()
    nbns: tuple[IPAddress, ...] = ()
    subnets: tuple[IPNetwork, ...] = ()

    @property
    def remote(self) -> tuple[IPAddress, ...]:
        """Responder: the addresses leased to the peer."""
        return tuple(lease.address for lease in self.leases)

    def status(self) -> dict[str, list[str]]:
        return {
            "local": [str(a) for a in self.local],
            "remote": [str(a) for a in self.remote],
            "dns": [str(a) for a in self.dns],
            "nbns": [str(a) for a in self.nbns],
            "subnets": [str(n) for n in self.subnets],
        }


# --------------------------------------------------------------------------- codec (§3.15.1)


@dataclass
class CpAttributes:
    """The attributes of one CP payload we understand (§3.15.1); None = zero-length."""

    addresses: list[tuple[int, IPAddress | None]] = field(default_factory=list)  # (version, a)
    dns: list[IPAddress] = field(default_factory=list)
    nbns: list[IPAddress] = field(default_factory=list)
    subnets: list[IPNetwork] = field(default_factory=list)
    ignored: int = 0  # attributes we do not understand (ignored, §3.15.1)


def _v4(value: bytes) -> IPAddress:
    return ipaddress.IPv4Address(value)


def _v6(value: bytes) -> IPAddress:
    return ipaddress.IPv6Address(value)


def _mask_len(mask: bytes) -> int:
    bits = int.from_bytes(mask, "big")
    n = bin(bits).count("1")
    if bits != ((1 << 32) - 1) ^ ((1 << (32 - n)) - 1):
        mask_text = ipaddress.IPv4Address(mask)
        raise ParseError(f"INTERNAL_IP4_SUBNET netmask {mask_text} is not contiguous")
    return n


#: attribute -> the lengths RFC 7296 §3.15.1 allows
_LENGTHS: dict[int, tuple[int, ...]] = {
    CfgAttr.INTERNAL_IP4_ADDRESS: (0, 4),
    CfgAttr.INTERNAL_IP4_NETMASK: (0, 4),
    CfgAttr.INTERNAL_IP4_DNS: (0, 4),
    CfgAttr.INTERNAL_IP4_NBNS: (0, 4),
    CfgAttr.INTERNAL_IP4_DHCP: (0, 4),
    CfgAttr.INTERNAL_IP6_ADDRESS: (0, 17),
    CfgAttr.INTERNAL_IP6_DNS: (0, 16),
    CfgAttr.INTERNAL_IP6_DHCP: (0, 16),
    CfgAttr.INTERNAL_IP4_SUBNET: (0, 8),
    CfgAttr.INTERNAL_IP6_SUBNET: (0, 17),
}


def parse_attributes(cp: CpPayload) -> CpAttributes:
    """The attributes of ``cp`` we use; ParseError (INVALID_SYNTAX) for a known
    attribute of a length §3.15.1 does not allow."""
    out = CpAttributes()
    for atype, value in cp.attributes:
        allowed = _LENGTHS.get(atype)
        if allowed is None:
            if atype == CfgAttr.SUPPORTED_ATTRIBUTES and len(value) % 2:
                raise ParseError("SUPPORTED_ATTRIBUTES of an odd length")
            out.ignored += 1
            continue
        if len(value) not in allowed:
            raise ParseError(f"configuration attribute {atype!s} of {len(value)} octets")
        _attribute(out, atype, value)
    return out


def _attribute(out: CpAttributes, atype: int, value: bytes) -> None:
    if atype == CfgAttr.INTERNAL_IP4_ADDRESS:
        out.addresses.append((4, _v4(value) if value else None))
    elif atype == CfgAttr.INTERNAL_IP6_ADDRESS:
        if value and value[16] > 128:
            raise ParseError(f"INTERNAL_IP6_ADDRESS prefix length {value[16]}")
        out.addresses.append((6, _v6(value[:16]) if value else None))
    elif atype in (CfgAttr.INTERNAL_IP4_DNS, CfgAttr.INTERNAL_IP6_DNS) and value:
        out.dns.append(_v4(value) if len(value) == 4 else _v6(value))
    elif atype == CfgAttr.INTERNAL_IP4_NBNS and value:
        out.nbns.append(_v4(value))
    elif atype == CfgAttr.INTERNAL_IP4_SUBNET and value:
        plen = _mask_len(value[4:])
        out.subnets.append(ipaddress.IPv4Network((_v4(value[:4]), plen), strict=False))
    elif atype == CfgAttr.INTERNAL_IP6_SUBNET and value:
        if value[16] > 128:
            raise ParseError(f"INTERNAL_IP6_SUBNET prefix length {value[16]}")
        out.subnets.append(ipaddress.IPv6Network((_v6(value[:16]), value[16]), strict=False))
    else:
        out.ignored += 1  # NETMASK, DHCP, empty values in a reply: nothing to do


def address_attribute(address: IPAddress, *, request: bool = False) -> tuple[int, bytes]:
    """INTERNAL_IP4_ADDRESS / INTERNAL_IP6_ADDRESS for ``address`` (zero-length for the
    unspecified address in a request: "any address", §3.15.1)."""
    if address.version == 4:
        value = b"" if request and address.is_unspecified else address.packed
        return CfgAttr.INTERNAL_IP4_ADDRESS, value
    if request and address.is_unspecified:
        return CfgAttr.INTERNAL_IP6_ADDRESS, b""
    return CfgAttr.INTERNAL_IP6_ADDRESS, address.packed + bytes([V6_PREFIX])


def _server_attribute(v4: int, v6: int, address: IPAddress) -> tuple[int, bytes]:
    return (v4 if address.version == 4 else v6), address.packed


def subnet_attribute(net: IPNetwork) -> tuple[int, bytes]:
    """INTERNAL_IP4_SUBNET (address, netmask) / INTERNAL_IP6_SUBNET (address, prefix)."""
    if net.version == 4:
        return CfgAttr.INTERNAL_IP4_SUBNET, net.network_address.packed + net.netmask.packed
    return CfgAttr.INTERNAL_IP6_SUBNET, net.network_address.packed + bytes([net.prefixlen])


# --------------------------------------------------------------------------- selectors


def _vip_families(sa: IkeSa) -> list[int]:
    return sorted({ipaddress.ip_address(v).version for v in sa.conn.vips})


def dynamic_selectors(
    sa: IkeSa, cfg: ChildConfig, local: tuple[Selector, ...], remote: tuple[Selector, ...]
) -> tuple[tuple[Selector, ...], tuple[Selector, ...]]:
    """The child's (local, remote) selectors with ``dynamic`` sides (no configured
    selector) standing for virtual IPs (§2.9): ours once assigned (before: ``0.0.0.0/0``
    / ``::/0`` for each family we ask for, as strongSwan proposes in IKE_AUTH), and the
    addresses leased to the peer.  Other sides are returned unchanged."""
    if not cfg.local_ts and sa.conn.vips:
        if sa.vips.local:
            local = tuple(Selector.host(a) for a in sa.vips.local)
        elif sa.half_open:
            local = tuple(Selector(_ANY[v], _max(v)) for v in _vip_families(sa))
    if not cfg.remote_ts and sa.vips.remote:
        remote = tuple(Selector.host(a) for a in sa.vips.remote)
    return local, remote


def _max(version: int) -> IPAddress:
    return ipaddress.ip_address((1 << (32 if version == 4 else 128)) - 1)


def narrow_local(sa: IkeSa, cfg: ChildConfig, tsi: tuple[Selector, ...]) -> tuple[Selector, ...]:
    """Initiator: the responder's TSi for a ``dynamic`` local side with virtual IPs,
    narrowed to the addresses we were assigned (§2.9); TsUnacceptable when none was."""
    if cfg.local_ts or not sa.conn.vips:
        return tsi
    if not sa.vips.local:
        raise TsUnacceptable("no virtual IP was assigned (RFC 7296 §3.15.4)")
    narrowed = narrow(tsi, tuple(Selector.host(a) for a in sa.vips.local))
    if not narrowed:
        raise TsUnacceptable("the responder's TSi does not cover our virtual IP")
    return narrowed


# --------------------------------------------------------------------------- initiator


def request_payloads(sa: IkeSa) -> PayloadList:
    """CP(CFG_REQUEST) for the first IKE_AUTH request (§2.19); nothing without vips.

    A reauthentication asks for the addresses the old IKE SA holds (§2.8.3)."""
    if not sa.conn.vips:
        return []
    old = sa.reauth_of
    keep = list(old.vips.local) if old is not None else []
    wanted: list[IPAddress] = []
    for text in sa.conn.vips:
        addr = ipaddress.ip_address(text)
        same = next((a for a in keep if a.version == addr.version), None)
        if same is not None:  # the address the IKE SA we replace holds
            keep.remove(same)
            addr = same
        wanted.append(addr)
    sa.vips.requested = tuple(wanted)
    attrs = [address_attribute(a, request=True) for a in wanted]
    for version in _vip_families(sa):
        attrs.append((CfgAttr.INTERNAL_IP4_DNS if version == 4 else CfgAttr.INTERNAL_IP6_DNS, b""))
    return [(PayloadType.CP, CpPayload(CfgType.CFG_REQUEST, attrs))]


def apply_reply(sa: IkeSa, msg: Message, now: float) -> bool:
    """Initiator: record the CP(CFG_REPLY) of the last IKE_AUTH response (§2.19).
    False when it is malformed: the IKE SA has failed (a Delete was sent)."""
    if not sa.vips.requested:
        return True  # §2.19: a CFG_REPLY we did not ask for is not acted upon
    cp = next((c for c in msg.get_all(PayloadType.CP) if c.cfg_type == CfgType.CFG_REPLY), None)
    if cp is None:
        sa.log.warning("no CP(CFG_REPLY): no virtual IP assigned (RFC 7296 §3.15.4)")
        return True
    try:
        attrs = parse_attributes(cp)
    except ProtocolError as exc:
        sa.on_error(kind_for_exception(exc, protected=True, is_request=False), now, str(exc))
        sa.fail(now, f"malformed CP(CFG_REPLY): {exc}", NotifyType.INVALID_SYNTAX, send_delete=True)
        return False
    wanted = {v: sum(1 for a in sa.vips.requested if a.version == v) for v in (4, 6)}
    local: list[IPAddress] = []
    for version, addr in attrs.addresses:
        if addr is None or addr.is_unspecified or wanted[version] <= 0 or addr in local:
            sa.log.info("ignoring INTERNAL_IP%d_ADDRESS %s we did not ask for", version, addr)
            continue
        wanted[version] -= 1
        local.append(addr)
    v = sa.vips
    v.local, v.dns, v.nbns = tuple(local), tuple(attrs.dns), tuple(attrs.nbns)
    v.subnets = tuple(attrs.subnets)
    _announce(sa)
    return True


# --------------------------------------------------------------------------- responder


def respond(sa: IkeSa, msg: Message, now: float, *, child: bool) -> tuple[PayloadList, bool]:
    """Responder, the peer authenticated: the CP(CFG_REPLY) (or error notify) for the
    IKE_AUTH response, and whether the first Child SA may be built (§2.19, §3.15.4).
    ``msg``: the first IKE_AUTH request, whose CP(CFG_REQUEST) is answered (CFG_SET and
    others are ignored, §3.15); ``child``: it asks for a Child SA.  Raises ParseError
    (INVALID_SYNTAX) for a malformed CFG_REQUEST."""
    reqs = (c for c in msg.get_all(PayloadType.CP) if c.cfg_type == CfgType.CFG_REQUEST)
    cp = next(reqs, None)
    requested = parse_attributes(cp).addresses if cp is not None else []
    if not requested:
        if sa.conn.pools and child:
            sa.log.warning(
                "%s sent no address request, pools are configured: FAILED_CP_REQUIRED", sa.remote_id
            )
            return [_notify(NotifyType.FAILED_CP_REQUIRED)], False
        return [], True
    leases = _lease(sa, requested)
    if not leases:
        return [_notify(NotifyType.INTERNAL_ADDRESS_FAILURE)], False
    return [(PayloadType.CP, CpPayload(CfgType.CFG_REPLY, _reply_attributes(sa, leases)))], True


def _notify(ntype: int) -> tuple[int, NotifyPayload]:
    return PayloadType.NOTIFY, NotifyPayload(0, b"", ntype)


def _registry(sa: IkeSa) -> PoolRegistry | None:
    reg = getattr(sa.owner, "pools", None)
    return reg if isinstance(reg, PoolRegistry) else None


def _lease(sa: IkeSa, requested: Sequence[tuple[int, IPAddress | None]]) -> list[Lease]:
    """One lease per requested address a pool can serve (§3.15.4: the ones that fail
    are left out); logs what could not be assigned."""
    registry = _registry(sa)
    pools = registry.get(sa.conn.pools) if registry is not None else []
    # the peer's authenticated identity: its IDi, or the EAP identity (strongSwan)
    ident = sa.remote_id
    leases: list[Lease] = []
    for version, addr in requested:
        lease = acquire(pools, ident, version, peer=sa.remote, requested=addr)
        if lease is None:
            names = ", ".join(p.name for p in pools if p.version == version)
            why = f"pool(s) {names} full" if names else f"no IPv{version} pool configured"
            sa.log.warning("no virtual IP for %s (IPv%d requested): %s", ident, version, why)
            continue
        leases.append(lease)
        sa.log.info("leased %s from pool %s to %s", lease.address, lease.pool.name, ident)
    if not leases:
        sa.log.warning("no virtual IP for %s: INTERNAL_ADDRESS_FAILURE (RFC 7296 §3.15.4)", ident)
    return leases


def _reply_attributes(sa: IkeSa, leases: list[Lease]) -> list[tuple[int, bytes]]:
    """The leased addresses, then the attributes of the pools that leased (§3.15.1)."""
    registry = _registry(sa)
    dns: dict[IPAddress, None] = {}
    nbns: dict[IPAddress, None] = {}
    subnets: dict[IPNetwork, None] = {}
    for lease in leases:
        cfg = registry.config(lease.pool) if registry is not None else None
        if cfg is not None:
            dns.update(dict.fromkeys(cfg.dns))
            nbns.update(dict.fromkeys(cfg.nbns))
            subnets.update(dict.fromkeys(cfg.split_include))
    attrs = [address_attribute(lease.address) for lease in leases]
    attrs += [_server_attribute(CfgAttr.INTERNAL_IP4_DNS, CfgAttr.INTERNAL_IP6_DNS, a) for a in dns]
    attrs += [(CfgAttr.INTERNAL_IP4_NBNS, a.packed) for a in nbns if a.version == 4]
    attrs += [subnet_attribute(n) for n in subnets]
    v = sa.vips
    v.leases += leases
    v.dns, v.nbns, v.subnets = tuple(dns), tuple(nbns), tuple(subnets)
    _announce(sa)
    return attrs


# --------------------------------------------------------------------------- life cycle


def _announce(sa: IkeSa) -> None:
    v = sa.vips
    sa.emit(
        VirtualIpsAssigned(
            sa.ike_id,
            sa.conn.name,
            local=_strs(v.local),
            remote=_strs(v.remote),
            dns=_strs(v.dns),
            nbns=_strs(v.nbns),
            subnets=_strs(v.subnets),
            remote_id=sa.remote_id,
        )
    )
    if v.local:
        sa.log.info(
            "virtual IP %s assigned%s%s",
            ", ".join(map(str, v.local)),
            f", DNS {', '.join(map(str, v.dns))}" if v.dns else "",
            f", subnets {', '.join(map(str, v.subnets))}" if v.subnets else "",
        )


def _strs(items: Iterable[object]) -> tuple[str, ...]:
    return tuple(str(i) for i in items)


def release(sa: IkeSa) -> None:
    """The IKE SA ends: its leases go back to their pools (offline, remembered for the
    identity), its assigned addresses are forgotten."""
    for lease in sa.vips.leases:
        if lease.release():
            sa.log.info("lease %s of %s released", lease.address, lease.identity)
    sa.vips = VirtualIps()


def transfer(old: IkeSa, new: IkeSa) -> None:
    """An IKE SA rekey (§2.18): the leases and addresses belong to the new IKE SA."""
    new.vips, old.vips = old.vips, VirtualIps()
