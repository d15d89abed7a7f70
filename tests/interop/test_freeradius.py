"""The EAP-RADIUS relay against a real FreeRADIUS 3 (Debian's), in a namespace of its own.

The tests play the EAP peer themselves (EAP-MD5, RFC 3748 §5.4: MD5 over Identifier,
password and challenge, RFC 1994) and relay every Response through
:class:`~pyipsec.daemon.eap_radius.RadiusBackend`, as the gateway does for
``remote.auth = "eap-radius"``; then the method library's peer (EAP-MSCHAPv2, EAP-MD5)
through the relay session and the backend.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import struct
from collections.abc import Callable, Iterator

import pytest

from pyipsec.config.model import EapRadiusConfig, RadiusServerConfig
from pyipsec.daemon.eap_radius import RadiusBackend, RelayRequest
from pyipsec.eap.base import BackendReply, BackendVerdict, EapPeerSession, EapStep, Outcome
from pyipsec.eap.factory import peer_session, relay_session
from pyipsec.eap.settings import EapMethod, EapPeerSettings

from . import freeradius
from .freeradius import FreeRadius

pytestmark = pytest.mark.interop

SECRET = "pyipsec-radius-test"
USERS = {"carol": "carol-password", "dave": "dave-password"}
CLIENT = ("198.51.100.2", 4500)
GATEWAY = ("192.0.2.1", 4500)
EAP_REQUEST, EAP_RESPONSE, EAP_SUCCESS, EAP_FAILURE = 1, 2, 3, 4
EAP_IDENTITY, EAP_MD5 = 1, 4

Respond = Callable[[bytes], bytes]


@pytest.fixture(scope="module")
def radius() -> Iterator[FreeRadius]:
    reason = freeradius.missing_requirements()
    if reason:
        pytest.skip(reason)
    with FreeRadius(SECRET, USERS) as server:
        yield server


def eap(code: int, ident: int, body: bytes = b"") -> bytes:
    return struct.pack("!BBH", code, ident, 4 + len(body)) + body


def md5_responder(password: str) -> Respond:
    """Answer an EAP-MD5 Challenge (RFC 3748 §5.4, RFC 1994 §4.1)."""

    def respond(request: bytes) -> bytes:
        assert request[0] == EAP_REQUEST and request[4] == EAP_MD5, request.hex()
        ident, size = request[1], request[5]
        challenge = request[6 : 6 + size]
        digest = hashlib.md5(bytes([ident]) + password.encode() + challenge).digest()
        return eap(EAP_RESPONSE, ident, bytes([EAP_MD5, len(digest)]) + digest)

    return respond


def radius_config(*addresses: tuple[str, int], **kw: object) -> EapRadiusConfig:
    servers = tuple(
        RadiusServerConfig(f"fr{i}", host, SECRET.encode(), port)
        for i, (host, port) in enumerate(addresses)
    )
    return EapRadiusConfig(servers=servers, **kw)  # type: ignore[arg-type]


async def converse(
    backend: RadiusBackend,
    replies: asyncio.Queue[tuple[int, BackendReply]],
    ike_id: int,
    identity: str,
    respond: Respond,
    first: bytes | None = None,
) -> tuple[BackendReply, int]:
    """``first`` (by default an EAP-Response/Identity), then answer each
    Access-Challenge until Accept/Reject; (last reply, rounds)."""
    packet = first or eap(EAP_RESPONSE, 0, bytes([EAP_IDENTITY]) + identity.encode())
    for rounds in range(1, 20):
        backend.submit(
            RelayRequest(ike_id, identity.encode(), packet, CLIENT, conn="rw", local=GATEWAY)
        )
        got_id, reply = await asyncio.wait_for(replies.get(), 15)
        assert got_id == ike_id
        if reply.verdict is not BackendVerdict.CHALLENGE:
            return reply, rounds
        packet = respond(reply.eap)
    raise AssertionError("no end to the conversation")


def run_md5(server: FreeRadius, identity: str, password: str) -> tuple[BackendReply, int]:
    async def scenario() -> tuple[BackendReply, int]:
        replies: asyncio.Queue[tuple[int, BackendReply]] = asyncio.Queue()
        backend = RadiusBackend(
            radius_config(server.address), lambda i, r: replies.put_nowait((i, r))
        )
        try:
            return await converse(backend, replies, 1, identity, md5_responder(password))
        finally:
            backend.close()

    with server.inside():
        return asyncio.run(scenario())


def test_eap_md5_correct_password_is_accepted(radius: FreeRadius) -> None:
    reply, rounds = run_md5(radius, "carol", USERS["carol"])
    assert reply.verdict is BackendVerdict.ACCEPT, (reply, radius.log_text()[-3000:])
    assert rounds == 2  # Identity -> MD5-Challenge -> Access-Accept
    assert reply.eap[0] == EAP_SUCCESS
    assert reply.msk == b""  # EAP-MD5 derives no keys
    log = radius.log_text()
    assert 'Calling-Station-Id = "198.51.100.2[4500]"' in log
    assert 'NAS-Identifier = "pyipsec"' in log


def test_eap_md5_wrong_password_is_rejected(radius: FreeRadius) -> None:
    reply, rounds = run_md5(radius, "dave", "not-daves-password")
    assert reply.verdict is BackendVerdict.REJECT
    assert rounds == 2
    assert reply.eap[:1] == bytes([EAP_FAILURE])


def test_unknown_user_is_rejected(radius: FreeRadius) -> None:
    reply, _ = run_md5(radius, "mallory", "guess")
    assert reply.verdict is BackendVerdict.REJECT


def test_two_conversations_at_once(radius: FreeRadius) -> None:
    async def scenario() -> list[BackendReply]:
        queues: dict[int, asyncio.Queue[tuple[int, BackendReply]]] = {
            1: asyncio.Queue(),
            2: asyncio.Queue(),
        }
        backend = RadiusBackend(
            radius_config(radius.address), lambda i, r: queues[i].put_nowait((i, r))
        )
        try:
            results = await asyncio.gather(
                converse(backend, queues[1], 1, "carol", md5_responder(USERS["carol"])),
                converse(backend, queues[2], 2, "dave", md5_responder("wrong")),
            )
        finally:
            backend.close()
        return [r for r, _ in results]

    with radius.inside():
        carol, dave = asyncio.run(scenario())
    assert carol.verdict is BackendVerdict.ACCEPT
    assert dave.verdict is BackendVerdict.REJECT


def test_no_freeradius_listening_is_unreachable_after_the_retries(radius: FreeRadius) -> None:
    async def scenario() -> tuple[BackendReply, RadiusBackend]:
        replies: asyncio.Queue[tuple[int, BackendReply]] = asyncio.Queue()
        dead = ("127.0.0.1", radius.port + 7)  # nothing listens there
        backend = RadiusBackend(
            radius_config(dead, timeout=0.2, retries=2), lambda i, r: replies.put_nowait((i, r))
        )
        try:
            reply, _ = await converse(backend, replies, 1, "carol", md5_responder("x"))
        finally:
            backend.close()
        return reply, backend

    with radius.inside():
        reply, backend = asyncio.run(scenario())
    assert reply.verdict is BackendVerdict.UNREACHABLE
    assert "fr0 did not answer (no answer after 3 tries)" in reply.reason
    assert backend.stats.retransmits == 2


async def relay_chain(
    server: FreeRadius, peer: EapPeerSession, ike_id: int = 5
) -> tuple[EapStep, EapStep]:
    """The gateway's whole EAP path without IKE: our peer <-> the relay session
    (:mod:`pyipsec.eap.relay`) <-> :class:`RadiusBackend` <-> FreeRADIUS.
    Returns the relay's and the peer's last steps."""
    replies: asyncio.Queue[tuple[int, BackendReply]] = asyncio.Queue()
    backend = RadiusBackend(radius_config(server.address), lambda i, r: replies.put_nowait((i, r)))
    relay = relay_session(os.urandom)
    try:
        to_peer = relay.start().packet
        for _ in range(20):
            assert to_peer is not None
            answer = peer.process(to_peer)
            assert answer.packet is not None, answer
            step = relay.process(answer.packet)
            assert step.outcome is Outcome.PENDING, step
            backend.submit(
                RelayRequest(ike_id, step.identity, step.backend, CLIENT, "rw", GATEWAY)
            )
            got, reply = await asyncio.wait_for(replies.get(), 15)
            assert got == ike_id
            step = relay.backend_reply(reply)
            assert step.packet is not None, step
            if step.outcome is not Outcome.CONTINUE:
                return step, peer.process(step.packet)
            to_peer = step.packet
    finally:
        backend.close()
    raise AssertionError("no end to the conversation")


@pytest.mark.parametrize(
    ("method", "password", "outcome"),
    [
        (EapMethod.MSCHAPV2, USERS["carol"], Outcome.SUCCESS),
        (EapMethod.MSCHAPV2, "not-carols-password", Outcome.FAILURE),
        (EapMethod.MD5, USERS["carol"], Outcome.SUCCESS),
    ],
)
def test_peer_relay_backend_freeradius(
    radius: FreeRadius, method: EapMethod, password: str, outcome: Outcome
) -> None:
    """EAP-MSCHAPv2 (after the peer's Nak of FreeRADIUS's EAP-MD5, RFC 3748 §5.3.1)
    and EAP-MD5 along the gateway's path; with MSCHAPv2 the MSK from the MS-MPPE keys
    is the peer's own (so both ends of the IKE SA compute the same AUTH, RFC 7296
    §2.16)."""
    settings = EapPeerSettings(identity=b"carol", secret=password.encode(), methods=(method,))
    peer = peer_session(settings, os.urandom)
    with radius.inside():
        gateway, client = asyncio.run(relay_chain(radius, peer))
    assert (gateway.outcome, client.outcome) == (outcome, outcome), (gateway, client)
    if outcome is Outcome.SUCCESS and method is EapMethod.MSCHAPV2:
        assert len(gateway.msk) == 64 and gateway.msk[32:] == bytes(32)
        assert gateway.msk == client.msk
    else:
        assert gateway.msk == b""


def test_accounting_start_and_stop_reach_freeradius(radius: FreeRadius) -> None:
    """RADIUS accounting (RFC 2866) through pyrad's client to FreeRADIUS's accounting
    port: it answers Accounting-Response and its ``detail`` module records Start and
    Stop with what :class:`RadiusAccounting` put in them."""
    from pyipsec.daemon.radius_accounting import RadiusAccounting, Usage
    from pyipsec.daemon.radius_codec import RadiusAnswer

    server = RadiusServerConfig("fr0", "127.0.0.1", SECRET.encode(), acct_port=radius.acct_port)
    cfg = EapRadiusConfig(servers=(server,), accounting=True, timeout=2.0, retries=2)

    async def scenario() -> dict[str, object]:
        acct = RadiusAccounting(cfg, usage=lambda i: Usage(1234, 5678, 12, 34),
                                close=lambda i, why: None)  # fmt: skip
        acct.accepted(11, b"carol", RadiusAnswer(code=2, classes=(b"fr-class",)))
        acct.virtual_ips(11, ["10.3.0.5"])
        acct.established(11, "rw", GATEWAY, CLIENT)
        for _ in range(100):
            await asyncio.sleep(0.05)
            if acct.status()["sent"]["start"]:  # type: ignore[index]
                break
        acct.deleted(11, "deleted by peer")
        acct.close(timeout=10)
        await asyncio.sleep(0.05)
        return acct.status()

    with radius.inside():
        status = asyncio.run(scenario())
    log = radius.log_text()
    assert status["sent"] == {"start": 1, "stop": 1, "interim_update": 0}, (status, log[-3000:])
    records = radius.accounting_records()
    assert "Acct-Status-Type = Start" in records and "Acct-Status-Type = Stop" in records
    assert 'User-Name = "carol"' in records and "Framed-IP-Address = 10.3.0.5" in records
    assert "Acct-Input-Octets = 1234" in records and "Acct-Output-Packets = 34" in records
    assert "Acct-Terminate-Cause = User-Request" in records
    assert 'Calling-Station-Id = "198.51.100.2[4500]"' in records
    assert "Class = 0x66722d636c617373" in records  # "fr-class", echoed
