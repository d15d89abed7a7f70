"""JSON-ready status of IKE and Child SAs (what ``pyipsec status`` shows)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..dn import name_to_string
from .child_sa import ChildSa

if TYPE_CHECKING:
    from .sa import IkeSa


def ike_sa_status(sa: IkeSa, now: float | None = None) -> dict[str, Any]:
    """One IKE SA: role, endpoints and identities, SPIs, suite, NAT (§2.23), lifetimes
    (§2.8), liveness (§2.4), errors and its Child SAs."""
    return {
        "name": sa.conn.name,
        "id": sa.ike_id,
        "state": sa.state.value,
        "role": "initiator" if sa.initiator else "responder",
        "local": {"address": sa.local[0], "port": sa.local[1], "id": sa.local_id},
        "remote": {"address": sa.remote[0], "port": sa.remote[1], "id": sa.remote_id},
        "spi_i": sa.spi_i.hex(),
        "spi_r": sa.spi_r.hex(),
        "suite": sa.suite_str,
        "nat": {
            "local": sa.nat_local,
            "remote": sa.nat_remote,
            "encap": sa.encap,
            "forced": sa.conn.encap,
        },
        "established": sa.established_at,
        "rekey_at": sa.rekey_at,
        "expire_at": sa.expire_at,
        "dpd_last_heard": sa.last_heard,
        "dpd": sa.dpd.status(now),
        "errors": sa.errors.status(),
        "peer_auth": sa.peer_auth,
        "peer_cert": _cert_status(sa),
        "vips": sa.vips.status(),  # configuration payloads (RFC 7296 §2.19)
        "children": [child_sa_status(c, sa.encap) for c in sa.children.values()],
    }


def _cert_status(sa: IkeSa) -> dict[str, Any] | None:
    """The peer's verified certificate: subject, issuer, serial and expiry (RFC 5280)."""
    cert = sa.peer_cert
    if cert is None:
        return None
    return {
        "subject": name_to_string(cert.subject),
        "issuer": name_to_string(cert.issuer),
        "serial": f"{cert.serial_number:x}",
        "not_after": cert.not_valid_after_utc.isoformat(),
    }


def child_sa_status(c: ChildSa, encap: bool) -> dict[str, Any]:
    """One Child SA pair: SPIs, suite, selectors, lifetimes and counters."""
    return {
        "name": c.name,
        "state": c.state.value,
        "spi_in": f"{c.spi_in:08x}",
        "spi_out": f"{c.spi_out:08x}",
        "suite": c.suite_str,
        "mode": "transport" if c.transport else "tunnel",
        "encap": encap,
        "local_ts": [str(s) for s in c.local_ts],
        "remote_ts": [str(s) for s in c.remote_ts],
        "rekey_at": c.soft_at,
        "expire_at": c.hard_at,
        "bytes_in": c.bytes_in,
        "bytes_out": c.bytes_out,
        "packets_in": c.packets_in,
        "packets_out": c.packets_out,
        "seq_out": c.seq_out,
        "installed": c.created,
    }


__all__ = ["child_sa_status", "ike_sa_status"]
