"""Connection pairs and helpers for the EAP-in-IKE_AUTH tests (RFC 7296 §2.16): a
road-warrior client A ("carol") and a gateway B, through the in-memory harness."""

from __future__ import annotations

from typing import Any

from pyipsec.config.model import ConnectionConfig
from pyipsec.constants import ExchangeType
from pyipsec.crypto.keys import psk_auth, signed_octets
from pyipsec.ikev2.message import Message
from pyipsec.ikev2.payloads import IdPayload
from pyipsec.ikev2.sa import IkeSa
from pyipsec.ikev2.state import IkeSaState
from pyipsec.ikev2.tasks.common import id_body

from .harness import Harness, Packet, conn_pair
from .test_sa_cert_auth import host, trust

USER = "carol@example.net"
PASSWORD = b"carol's password"
USERS = ((USER.encode(), PASSWORD), (b"dave", b"dave's password"))

#: The EAP methods of the eap package, as swanctl names.
METHODS = ("eap-md5", "eap-mschapv2", "eap-tls")
#: Methods deriving an MSK (RFC 5247): AUTH after EAP uses it; EAP-MD5 has none (SK_p).
WITH_MSK = ("eap-mschapv2", "eap-tls")


def eap_pair(
    method: str = "eap-md5",
    *,
    a_kw: dict[str, Any] | None = None,
    b_kw: dict[str, Any] | None = None,
    gateway_pubkey: bool = False,
) -> tuple[ConnectionConfig, ConnectionConfig]:
    """Client A authenticates with ``method``, gateway B with the PSK (or its
    certificate with ``gateway_pubkey``); B accepts any IKE identity."""
    a: dict[str, Any] = {"local_auth": method, "local_id": USER, "eap_secret": PASSWORD}
    b: dict[str, Any] = {"remote_auth": method, "remote_id": "%any", "eap_users": USERS}
    if method == "eap-tls":
        a |= {"local_credentials": host(USER), "remote_trust": trust(), "eap_secret": b""}
        b |= {"local_credentials": host("sun.example.net"), "remote_trust": trust()}
    if gateway_pubkey:
        a |= {"remote_auth": "pubkey", "remote_trust": trust()}
        b |= {"local_auth": "pubkey", "local_credentials": host("sun.example.net")}
    return conn_pair(a_kw=a | (a_kw or {}), b_kw=b | (b_kw or {}))


def up(method: str = "eap-md5", **kw: Any) -> Harness:
    h = Harness(*eap_pair(method, **kw))
    h.up(duration=10.0)
    return h


def states(side: Any) -> list[IkeSaState]:
    return [v.state for v in side.mgr.ike_sas()]


def only_sa(side: Any) -> IkeSa:
    (sa,) = side.mgr.by_id.values()
    assert isinstance(sa, IkeSa)
    return sa


def auth_requests(h: Harness) -> list[Packet]:
    """A's IKE_AUTH requests, one per Message ID (first copies)."""
    seen: dict[int, Packet] = {}
    for p in h.sent("a", ExchangeType.IKE_AUTH, response=False):
        seen.setdefault(p.message_id, p)
    return [seen[m] for m in sorted(seen)]


def auth_responses(h: Harness) -> list[Packet]:
    seen: dict[int, Packet] = {}
    for p in h.sent("b", ExchangeType.IKE_AUTH, response=True):
        seen.setdefault(p.message_id, p)
    return [seen[m] for m in sorted(seen)]


def sk_p_auth(h: Harness, sa: IkeSa, *, initiator: bool, ident: IdPayload) -> bytes:
    """The AUTH value an EAP method without MSK must produce (§2.16: SK_pi / SK_pr as
    the shared key of the §2.15 formula), rebuilt from the IKE_SA_INIT messages on
    the wire."""
    assert sa.keys is not None and sa.suite is not None
    init_req = h.sent("a", ExchangeType.IKE_SA_INIT, response=False)[-1]
    init_resp = h.sent("b", ExchangeType.IKE_SA_INIT, response=True)[-1]
    prf = sa.suite.prf_id
    nonce = sa.nr if initiator else sa.ni
    message = init_req.data if initiator else init_resp.data
    sk_p = sa.keys.sk_pi if initiator else sa.keys.sk_pr
    octets = signed_octets(message, nonce, prf, sk_p, id_body(ident))
    return psk_auth(prf, sk_p, octets)


def decrypted(h: Harness, pkt: Packet) -> Message:
    return h.decrypt(pkt)


__all__ = [
    "METHODS",
    "PASSWORD",
    "USER",
    "USERS",
    "WITH_MSK",
    "auth_requests",
    "auth_responses",
    "decrypted",
    "eap_pair",
    "only_sa",
    "sk_p_auth",
    "states",
    "up",
]
