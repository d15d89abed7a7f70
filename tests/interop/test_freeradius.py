"""The EAP-RADIUS relay against a real FreeRADIUS 3 (Debian's), in a namespace of its own.

The tests play the EAP peer themselves (EAP-MD5, RFC 3748 §5.4: MD5 over Identifier,
password and challenge, RFC 1994) and relay every Response through
:class:`~pyipsec.daemon.eap_radius.RadiusBackend`, as the gateway does for
``remote.auth = "eap-radius"``.
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
from pyipsec.eap.base import BackendReply, BackendVerdict

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


def test_eap_mschapv2_with_the_peer_of_the_method_library(radius: FreeRadius) -> None:
    """FreeRADIUS proposes EAP-MD5, our peer Naks it for EAP-MSCHAPv2 (RFC 3748
    §5.3.1), the rest is RFC 2759 through the relay; the MSK from the MS-MPPE keys is
    the one the peer derives (so both ends of the IKE SA compute the same AUTH)."""
    factory = pytest.importorskip("pyipsec.eap.factory")
    settings_mod = pytest.importorskip("pyipsec.eap.settings")
    from pyipsec.eap.base import Outcome

    def run(password: str) -> tuple[BackendReply, object]:
        settings = settings_mod.EapPeerSettings(
            identity=b"carol",
            secret=password.encode(),
            methods=(settings_mod.EapMethod.MSCHAPV2,),
        )
        peer = factory.peer_session(settings, os.urandom)
        hello = peer.process(eap(EAP_REQUEST, 0, bytes([EAP_IDENTITY])))  # the gateway's

        def respond(request: bytes) -> bytes:
            step = peer.process(request)
            assert step.packet is not None, step
            return step.packet

        async def scenario() -> BackendReply:
            replies: asyncio.Queue[tuple[int, BackendReply]] = asyncio.Queue()
            backend = RadiusBackend(
                radius_config(radius.address), lambda i, r: replies.put_nowait((i, r))
            )
            try:
                reply, _ = await converse(backend, replies, 5, "carol", respond, hello.packet)
            finally:
                backend.close()
            return reply

        with radius.inside():
            reply = asyncio.run(scenario())
        return reply, peer.process(reply.eap) if reply.eap else None

    reply, last = run(USERS["carol"])
    assert reply.verdict is BackendVerdict.ACCEPT, (reply, radius.log_text()[-3000:])
    assert last is not None and last.outcome is Outcome.SUCCESS  # type: ignore[attr-defined]
    assert len(reply.msk) == 64 and reply.msk[32:] == bytes(32)
    assert reply.msk == last.msk  # type: ignore[attr-defined]
    wrong, last = run("not-carols-password")
    assert wrong.verdict is BackendVerdict.REJECT and wrong.msk == b""
