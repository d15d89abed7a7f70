"""The EAP-RADIUS relay (RFC 3579) against an in-process RADIUS server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import pyrad.packet
import pytest

from pyipsec.config.model import EapRadiusConfig, RadiusServerConfig
from pyipsec.daemon import radius_codec as rc
from pyipsec.daemon.eap_radius import RadiusBackend, RelayRequest
from pyipsec.eap.base import BackendReply, BackendVerdict

from .radius_fake import FakeRadius, Received

SECRET = b"radius-test-secret"
CLIENT = ("198.51.100.2", 4500)
GATEWAY = ("192.0.2.1", 4500)

Replies = list[tuple[int, BackendReply]]


def eap(code: int, ident: int, body: bytes = b"") -> bytes:
    """An EAP packet (RFC 3748 §4): Code, Identifier, Length, then Type and data."""
    return struct.pack("!BBH", code, ident, 4 + len(body)) + body


def identity_response(name: bytes = b"carol", ident: int = 1) -> bytes:
    return eap(2, ident, b"\x01" + name)


MD5_CHALLENGE = eap(1, 2, b"\x04\x10" + bytes(range(16)))
SUCCESS = eap(3, 3)
FAILURE = eap(4, 3)


def config(*servers: tuple[str, int], secret: bytes = SECRET, **kw: Any) -> EapRadiusConfig:
    kw.setdefault("timeout", 0.05)
    kw.setdefault("retries", 2)
    return EapRadiusConfig(
        servers=tuple(
            RadiusServerConfig(f"s{i}", host, secret=secret, auth_port=port)
            for i, (host, port) in enumerate(servers)
        ),
        **kw,
    )


async def until(cond: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())  # type: ignore[arg-type]


class Harness:
    """A backend and the replies it delivered."""

    def __init__(self, cfg: EapRadiusConfig) -> None:
        self.replies: Replies = []
        self.backend = RadiusBackend(cfg, lambda i, r: self.replies.append((i, r)))

    def submit(self, ike_id: int, packet: bytes, **kw: Any) -> None:
        kw.setdefault("identity", b"carol")
        kw.setdefault("remote", CLIENT)
        self.backend.submit(RelayRequest(ike_id=ike_id, eap=packet, conn="rw", **kw))

    async def reply(self, n: int = 1, timeout: float = 3.0) -> BackendReply:
        await until(lambda: len(self.replies) >= n, timeout)
        return self.replies[n - 1][1]


# --------------------------------------------------------------------------- conversations


def mschap_like_server(recv_key: bytes, send_key: bytes) -> Callable[[Received], Any]:
    """Challenge with a State, then Accept with MPPE keys if the State came back."""

    def answer(req: Received) -> Any:
        assert req.ma_valid
        if req.state is None:
            return req.reply(pyrad.packet.AccessChallenge, MD5_CHALLENGE, state=b"state-1")
        assert req.state == b"state-1"
        r = req.reply(pyrad.packet.AccessAccept, SUCCESS)
        r["MS-MPPE-Recv-Key"] = recv_key  # pyrad salt-encrypts (RFC 2548 §2.4)
        r["MS-MPPE-Send-Key"] = send_key
        return r

    return answer


def test_challenge_then_accept_with_state_echo_and_msk() -> None:
    recv_key, send_key = bytes(range(32)), bytes(range(100, 132))

    async def scenario() -> None:
        srv = await FakeRadius(SECRET, mschap_like_server(recv_key, send_key)).start()
        h = Harness(config(srv.address))
        h.submit(7, identity_response(), local=GATEWAY)
        first = await h.reply()
        assert first == BackendReply(BackendVerdict.CHALLENGE, eap=MD5_CHALLENGE)
        h.submit(7, eap(2, 2, b"\x04\x10" + bytes(16)), local=GATEWAY)
        second = await h.reply(2)
        assert second.verdict is BackendVerdict.ACCEPT
        assert second.eap == SUCCESS
        assert second.msk == recv_key + send_key  # 64 octets: no padding needed
        assert [i for i, _ in h.replies] == [7, 7]
        assert srv.received[1].state == b"state-1"
        assert all(r.ma_valid for r in srv.received)
        assert h.backend.status()["conversations"] == 0  # State dropped on Accept
        assert h.backend.stats.challenges == 1 and h.backend.stats.accepts == 1
        h.backend.close()
        srv.close()

    run(scenario)


def test_short_mppe_keys_are_padded_to_64_octets() -> None:
    recv_key, send_key = b"R" * 16, b"S" * 16  # EAP-MSCHAPv2 sizes

    async def scenario() -> None:
        srv = await FakeRadius(SECRET, mschap_like_server(recv_key, send_key)).start()
        h = Harness(config(srv.address))
        h.submit(1, identity_response())
        await h.reply()
        h.submit(1, eap(2, 2, b"\x04\x10" + bytes(16)))
        reply = await h.reply(2)
        assert reply.msk == recv_key + send_key + bytes(32)
        h.backend.close()
        srv.close()

    run(scenario)


def test_request_attributes() -> None:
    async def scenario() -> None:
        srv = await FakeRadius(
            SECRET, lambda r: r.reply(pyrad.packet.AccessReject, FAILURE)
        ).start()
        h = Harness(config(srv.address, nas_identifier="gw-1", framed_mtu=1100))
        h.submit(42, identity_response(), local=GATEWAY)
        reply = await h.reply()
        assert reply.verdict is BackendVerdict.REJECT and reply.eap == FAILURE
        req = srv.received[0]
        assert req.attr("User-Name") == ["carol"]
        assert req.attr("NAS-Identifier") == ["gw-1"]
        assert req.attr("NAS-IP-Address") == ["192.0.2.1"]
        assert req.attr("NAS-Port") == [42]
        assert req.attr("NAS-Port-Id") == ["rw"]
        assert req.attr("NAS-Port-Type") == ["Virtual"]
        assert req.attr("Service-Type") == ["Framed-User"]
        assert req.attr("Called-Station-Id") == ["192.0.2.1[4500]"]
        assert req.attr("Calling-Station-Id") == ["198.51.100.2[4500]"]
        assert req.attr("Framed-MTU") == [1100]
        assert req.state is None
        assert req.raw[20] == 80  # the Message-Authenticator comes first
        assert req.ma_valid
        h.backend.close()
        srv.close()

    run(scenario)


def test_without_local_address_and_ports_the_socket_address_is_the_nas() -> None:
    async def scenario() -> None:
        srv = await FakeRadius(SECRET, lambda r: r.reply(pyrad.packet.AccessReject)).start()
        h = Harness(config(srv.address, station_id_with_port=False, framed_mtu=0))
        h.submit(1, identity_response(), remote=("2001:db8::2", 500))
        reply = await h.reply()
        assert reply.verdict is BackendVerdict.REJECT and reply.eap == b""
        assert "Access-Reject" in reply.reason
        req = srv.received[0]
        assert req.attr("NAS-IP-Address") == ["127.0.0.1"]
        assert req.attr("Called-Station-Id") == ["127.0.0.1"]
        assert req.attr("Calling-Station-Id") == ["2001:db8::2"]
        assert req.attr("Framed-MTU") == []
        h.backend.close()
        srv.close()

    run(scenario)


def test_ipv6_server_and_nas_ipv6_address() -> None:
    async def scenario() -> None:
        try:
            srv = await FakeRadius(SECRET, lambda r: r.reply(pyrad.packet.AccessReject)).start(
                "::1"
            )
        except OSError:
            pytest.skip("no IPv6 loopback")
        h = Harness(config(srv.address))
        h.submit(1, identity_response(), local=("2001:db8::1", 500))
        await h.reply()
        assert srv.received[0].attr("NAS-IPv6-Address") == ["2001:db8::1"]
        assert srv.received[0].attr("Called-Station-Id") == ["2001:db8::1[500]"]
        h.backend.close()
        srv.close()

    run(scenario)


def test_eap_start_is_an_empty_eap_message_without_user_name() -> None:
    """RFC 3579 §2.1: an EAP-Message of length 2 asks the server to start (EAP-Start).
    FreeRADIUS 3.2.1 answers it with an Access-Challenge WITHOUT Message-Authenticator,
    which is dropped (RFC 3579 §3.2; strongSwan does the same): a gateway should send
    its own EAP-Request/Identity and relay the Response (strongSwan's eap_start = no)."""

    async def scenario() -> None:
        def answer(req: Received) -> Any:
            r = req.reply(pyrad.packet.AccessChallenge, eap(1, 0, b"\x01"), b"st")
            r.message_authenticator = None  # as FreeRADIUS 3.2.1 does here
            return r

        srv = await FakeRadius(SECRET, answer).start()
        h = Harness(config(srv.address, retries=0))
        h.submit(1, b"", identity=b"")
        reply = await h.reply()
        assert reply.verdict is BackendVerdict.UNREACHABLE and h.backend.stats.forged == 1
        req = srv.received[0]
        assert req.packet.get(79) == [b""] and req.raw.count(b"\x4f\x02") >= 1
        assert req.attr("User-Name") == []
        h.backend.close()
        srv.close()

    run(scenario)


def test_eap_message_fragmentation_both_ways() -> None:
    big_request = eap(1, 5, b"\x0d\x00" + bytes(range(256)) * 3)  # 774 octets
    big_response = eap(2, 5, b"\x0d\x00" + b"\xaa" * 600)

    async def scenario() -> None:
        srv = await FakeRadius(
            SECRET, lambda r: r.reply(pyrad.packet.AccessChallenge, big_request, b"st")
        ).start()
        h = Harness(config(srv.address))
        h.submit(3, big_response)
        reply = await h.reply()
        assert reply.verdict is BackendVerdict.CHALLENGE and reply.eap == big_request
        req = srv.received[0]
        parts = req.packet[79]
        assert [len(p) for p in parts] == [253, 253, len(big_response) - 506]
        assert req.eap == big_response
        # the EAP-Message attributes are consecutive (RFC 3579 §3.1)
        types, pos = [], 20
        while pos < len(req.raw):
            types.append(req.raw[pos])
            pos += req.raw[pos + 1]
        first = types.index(79)
        assert types[first : first + 3] == [79, 79, 79] and types.count(79) == 3
        h.backend.close()
        srv.close()

    run(scenario)


def test_oversized_eap_packet_is_refused_without_sending() -> None:
    async def scenario() -> None:
        srv = await FakeRadius(SECRET, lambda r: r.reply(pyrad.packet.AccessReject)).start()
        h = Harness(config(srv.address))
        h.submit(1, eap(2, 1, b"\x0d" + bytes(5000)))
        reply = await h.reply()
        assert reply.verdict is BackendVerdict.REJECT and "4096" in reply.reason
        assert srv.received == []
        assert h.backend.status()["servers"][0]["outstanding"] == 0
        h.backend.close()
        srv.close()

    run(scenario)


def test_the_conversation_state_is_per_ike_sa() -> None:
    async def scenario() -> None:
        def answer(req: Received) -> Any:
            user = req.attr("User-Name")[0].encode()
            if req.state is None:
                return req.reply(pyrad.packet.AccessChallenge, MD5_CHALLENGE, b"st-" + user)
            assert req.state == b"st-" + user
            return req.reply(pyrad.packet.AccessAccept, SUCCESS)

        srv = await FakeRadius(SECRET, answer).start()
        h = Harness(config(srv.address))
        h.submit(1, identity_response(b"carol"), identity=b"carol")
        h.submit(2, identity_response(b"dave"), identity=b"dave")
        await h.reply(2)
        h.submit(2, eap(2, 2), identity=b"dave")
        h.submit(1, eap(2, 2), identity=b"carol")
        await h.reply(4)
        assert sorted((i, r.verdict) for i, r in h.replies[2:]) == [
            (1, BackendVerdict.ACCEPT),
            (2, BackendVerdict.ACCEPT),
        ]
        assert [r.state for r in srv.received[2:]] == [b"st-dave", b"st-carol"]
        h.backend.close()
        srv.close()

    run(scenario)


# --------------------------------------------------------------------------- authentication


def test_forged_and_unsigned_answers_are_dropped(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        def answer(req: Received) -> Any:
            forged = pyrad.packet.AuthPacket(
                packet=req.raw, secret=b"not-the-secret", dict=rc.dictionary()
            ).CreateReply()
            forged.code = pyrad.packet.AccessAccept
            forged[79] = [SUCCESS]
            unsigned = req.reply(pyrad.packet.AccessAccept, SUCCESS)
            unsigned.message_authenticator = None  # Response Authenticator only
            tampered = bytearray(req.reply(pyrad.packet.AccessReject, FAILURE).ReplyPacket())
            tampered[-1] ^= 1
            for bad in (forged, unsigned, bytes(tampered)):
                srv.send(bad, req.source)
            return req.reply(pyrad.packet.AccessReject, FAILURE)

        srv = await FakeRadius(SECRET, answer).start()
        h = Harness(config(srv.address))
        h.submit(1, identity_response())
        reply = await h.reply()
        assert reply.verdict is BackendVerdict.REJECT  # the genuine answer, last
        assert h.backend.stats.forged == 3
        await asyncio.sleep(0.05)
        assert len(h.replies) == 1
        h.backend.close()
        srv.close()

    with caplog.at_level(logging.WARNING, "pyipsec.ike.radius"):
        run(scenario)
    assert "does not verify" in caplog.text
    assert "no Message-Authenticator" in caplog.text


def test_a_wrong_shared_secret_gives_unreachable() -> None:
    async def scenario() -> None:
        srv = await FakeRadius(
            b"server-secret", lambda r: r.reply(pyrad.packet.AccessAccept, SUCCESS)
        ).start()
        h = Harness(config(srv.address, secret=b"client-secret", retries=1))
        h.submit(1, identity_response())
        reply = await h.reply()
        assert reply.verdict is BackendVerdict.UNREACHABLE
        assert not any(r.ma_valid for r in srv.received)  # the server sees bad MAs too
        assert h.backend.stats.forged == 2
        h.backend.close()
        srv.close()

    run(scenario)


def test_dropped_answers_are_logged_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        def answer(req: Received) -> Any:
            for _ in range(50):
                srv.send(req.raw[:2] + b"\x00" * 30, req.source)  # garbage, right Identifier
            return req.reply(pyrad.packet.AccessReject)

        srv = await FakeRadius(SECRET, answer).start()
        h = Harness(config(srv.address))
        h.submit(1, identity_response())
        await h.reply()
        assert h.backend.stats.forged + h.backend.stats.malformed == 50
        h.backend.close()
        srv.close()

    with caplog.at_level(logging.WARNING, "pyipsec.ike.radius"):
        run(scenario)
    dropped = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert 1 <= len(dropped) <= 11


def test_malformed_and_unexpected_answers() -> None:
    async def scenario() -> None:
        def answer(req: Received) -> Any:
            ok = req.reply(pyrad.packet.AccessReject).ReplyPacket()
            junk = [
                b"\x02",  # shorter than a header
                ok[:1] + b"\x00" + ok[2:],  # another Identifier (unmatched)
                ok[:2] + struct.pack("!H", 4000) + ok[4:],  # Length beyond the datagram
                # an attribute shorter than its header, inside Length
                ok[:2] + struct.pack("!H", len(ok) + 2) + ok[4:] + b"\x4f\x01",
            ]
            acct = req.reply(pyrad.packet.AccessAccept)
            acct.code = pyrad.packet.AccountingResponse
            for bad in [*junk, acct]:
                srv.send(bad, req.source)
            return ok + b"\x00" * 8  # padding after Length is ignored (RFC 2865 §3)

        srv = await FakeRadius(SECRET, answer).start()
        h = Harness(config(srv.address))
        h.submit(1, identity_response())
        reply = await h.reply()
        assert reply.verdict is BackendVerdict.REJECT
        st = h.backend.stats
        assert st.unmatched == 2 and st.malformed + st.forged == 3
        h.backend.close()
        srv.close()

    run(scenario)


@pytest.mark.parametrize(
    ("code", "payload", "why"),
    [
        (pyrad.packet.AccessChallenge, b"", "without a well-formed EAP Request"),
        (pyrad.packet.AccessChallenge, SUCCESS, "without a well-formed EAP Request"),
        (pyrad.packet.AccessChallenge, MD5_CHALLENGE[:-1], "without a well-formed EAP Request"),
        (pyrad.packet.AccessAccept, FAILURE, "not an EAP-Success"),
    ],
)
def test_conflicting_answers_end_as_reject(code: int, payload: bytes, why: str) -> None:
    async def scenario() -> None:
        srv = await FakeRadius(SECRET, lambda r: r.reply(code, payload)).start()
        h = Harness(config(srv.address))
        h.submit(1, identity_response())
        reply = await h.reply()
        assert reply.verdict is BackendVerdict.REJECT and why in reply.reason
        assert reply.msk == b""
        h.backend.close()
        srv.close()

    run(scenario)


def test_accept_without_mppe_keys_has_no_msk_and_bad_keys_reject() -> None:
    async def scenario() -> None:
        plain = await FakeRadius(SECRET, lambda r: r.reply(pyrad.packet.AccessAccept)).start()

        def garbled(req: Received) -> Any:
            r = req.reply(pyrad.packet.AccessAccept, SUCCESS)
            r[(311, 17)] = [b"\x80\x01" + bytes(15)]  # not salt + 16n
            r[(311, 16)] = [b"\x80\x01" + bytes(16)]
            return r

        bad = await FakeRadius(SECRET, garbled).start()
        h = Harness(config(plain.address))
        h.submit(1, identity_response())
        assert await h.reply() == BackendReply(BackendVerdict.ACCEPT)
        h2 = Harness(config(bad.address))
        h2.submit(1, identity_response())
        reply = await h2.reply()
        assert reply.verdict is BackendVerdict.REJECT and "MS-MPPE" in reply.reason
        for x in (h.backend, h2.backend, plain, bad):
            x.close()

    run(scenario)


# --------------------------------------------------------------------------- MPPE keys


def rfc2548_encrypt(key: bytes, secret: bytes, authenticator: bytes, salt: bytes) -> bytes:
    """RFC 2548 §2.4.2, written out independently of pyrad and the module under test."""
    plain = bytes([len(key)]) + key
    plain += bytes(-len(plain) % 16)
    out, prev = b"", authenticator + salt
    for i in range(0, len(plain), 16):
        b = hashlib.md5(secret + prev).digest()
        c = bytes(x ^ y for x, y in zip(plain[i : i + 16], b, strict=True))
        out += c
        prev = c
    return salt + out


def test_mppe_decrypt_vectors() -> None:
    auth = bytes.fromhex("00112233445566778899aabbccddeeff")
    key = bytes(range(1, 33))  # 32 octets: three 16-octet blocks once length-prefixed
    value = rfc2548_encrypt(key, b"s3cret", auth, b"\x83\x45")
    assert len(value) == 2 + 48
    assert rc.mppe_decrypt(value, b"s3cret", auth) == key
    with contextlib.suppress(ValueError):  # the wrong secret: garbage or a bad length
        assert rc.mppe_decrypt(value, b"other", auth) != key
    # pyrad's salt encryption (the fake server's) decrypts the same way
    req = pyrad.packet.AuthPacket(secret=b"s3cret", authenticator=auth, dict=rc.dictionary())
    assert rc.mppe_decrypt(req.SaltCrypt(key), b"s3cret", auth) == key
    assert rc.mppe_decrypt(req.SaltCrypt(b"k" * 16), b"s3cret", auth) == b"k" * 16


@pytest.mark.parametrize(
    "value", [b"", b"\x80\x01", b"\x80\x01" + bytes(15), b"\x80\x01" + bytes(17)]
)
def test_mppe_decrypt_refuses_bad_lengths(value: bytes) -> None:
    with pytest.raises(ValueError):
        rc.mppe_decrypt(value, b"s", bytes(16))


def test_mppe_decrypt_refuses_a_key_length_beyond_the_value() -> None:
    auth = bytes(16)
    value = rfc2548_encrypt(b"x" * 15, b"s", auth, b"\x80\x00")
    tampered = value[:2] + bytes([value[2] ^ 0xFF]) + value[3:]  # Key-Length 15 -> 240
    with pytest.raises(ValueError, match="key length"):
        rc.mppe_decrypt(tampered, b"s", auth)


def test_msk_from_mppe() -> None:
    assert rc.msk_from_mppe(b"r" * 32, b"s" * 32) == b"r" * 32 + b"s" * 32
    assert rc.msk_from_mppe(b"r" * 16, b"s" * 16) == b"r" * 16 + b"s" * 16 + bytes(32)
    assert rc.split_eap(b"") == [] and rc.split_eap(b"x" * 506) == [b"x" * 253] * 2


# --------------------------------------------------------------------------- retries, failover


def test_retries_then_next_server_then_unreachable() -> None:
    async def scenario() -> None:
        dead1 = await FakeRadius(SECRET).start()
        dead2 = await FakeRadius(SECRET).start()
        h = Harness(config(dead1.address, dead2.address, retries=2))
        h.submit(1, identity_response())
        reply = await h.reply()
        assert reply.verdict is BackendVerdict.UNREACHABLE
        assert "s0, s1 did not answer" in reply.reason and "3 tries" in reply.reason
        assert len(dead1.received) == 3 and len(dead2.received) == 3
        # retransmissions are identical; the next server gets a fresh request
        assert {r.raw for r in dead1.received} == {dead1.received[0].raw}
        assert dead2.received[0].raw[4:20] != dead1.received[0].raw[4:20]
        assert h.backend.stats.retransmits == 4 and h.backend.stats.server_timeouts == 2
        status = h.backend.status()
        assert [s["reachable"] for s in status["servers"]] == [False, False]
        assert status["conversations"] == 0
        assert all(s["outstanding"] == 0 for s in status["servers"])
        for x in (h.backend, dead1, dead2):
            x.close()

    run(scenario)


def test_backoff_stretches_the_waits() -> None:
    async def scenario() -> None:
        dead = await FakeRadius(SECRET).start()
        times: list[float] = []
        loop = asyncio.get_running_loop()
        orig = dead.datagram_received

        def stamp(data: bytes, addr: tuple[str, int]) -> None:
            times.append(loop.time())
            orig(data, addr)

        dead.datagram_received = stamp  # type: ignore[method-assign]
        h = Harness(config(dead.address, timeout=0.05, retries=2, backoff=3.0))
        h.submit(1, identity_response())
        await h.reply()
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert len(gaps) == 2 and gaps[1] > 2 * gaps[0]
        h.backend.close()
        dead.close()

    run(scenario)


def test_failover_to_the_next_server_and_it_is_preferred_afterwards() -> None:
    async def scenario() -> None:
        dead = await FakeRadius(SECRET).start()
        live = await FakeRadius(SECRET, lambda r: r.reply(pyrad.packet.AccessAccept)).start()
        h = Harness(config(dead.address, live.address, retries=1))
        h.submit(1, identity_response())
        assert (await h.reply()).verdict is BackendVerdict.ACCEPT
        assert len(dead.received) == 2 and len(live.received) == 1
        h.submit(2, identity_response())  # the unreachable one is now tried last
        assert (await h.reply(2)).verdict is BackendVerdict.ACCEPT
        assert len(dead.received) == 2 and len(live.received) == 2
        for x in (h.backend, dead, live):
            x.close()

    run(scenario)


def test_preference_orders_the_servers() -> None:
    async def scenario() -> None:
        a = await FakeRadius(SECRET, lambda r: r.reply(pyrad.packet.AccessAccept)).start()
        b = await FakeRadius(SECRET, lambda r: r.reply(pyrad.packet.AccessAccept)).start()
        servers = (
            RadiusServerConfig("a", a.address[0], SECRET, a.address[1]),
            RadiusServerConfig("b", b.address[0], SECRET, b.address[1], preference=5),
        )
        h = Harness(EapRadiusConfig(servers=servers, timeout=0.05))
        h.submit(1, identity_response())
        await h.reply()
        assert (len(a.received), len(b.received)) == (0, 1)
        for x in (h.backend, a, b):
            x.close()

    run(scenario)


def test_a_challenged_conversation_stays_with_its_server() -> None:
    async def scenario() -> None:
        calls = 0

        def once(req: Received) -> Any:
            nonlocal calls
            calls += 1
            if calls == 1:
                return req.reply(pyrad.packet.AccessChallenge, MD5_CHALLENGE, b"st")
            return None  # then silent

        first = await FakeRadius(SECRET, once).start()
        other = await FakeRadius(SECRET, lambda r: r.reply(pyrad.packet.AccessAccept)).start()
        h = Harness(config(first.address, other.address, retries=1))
        h.submit(1, identity_response())
        assert (await h.reply()).verdict is BackendVerdict.CHALLENGE
        h.submit(1, eap(2, 2))
        reply = await h.reply(2)
        assert reply.verdict is BackendVerdict.UNREACHABLE and "s0 did not answer" in reply.reason
        assert other.received == []  # its State means nothing to another server
        for x in (h.backend, first, other):
            x.close()

    run(scenario)


def test_no_servers_is_unreachable_and_never_reentrant() -> None:
    async def scenario() -> None:
        h = Harness(EapRadiusConfig())
        h.submit(1, identity_response())
        assert h.replies == []  # delivered from the loop, not inside submit()
        reply = await h.reply()
        assert reply.verdict is BackendVerdict.UNREACHABLE and "no RADIUS server" in reply.reason
        h.backend.close()

    run(scenario)


def test_icmp_unreachable_server_is_survived() -> None:
    async def scenario() -> None:
        probe = await FakeRadius(SECRET).start()
        port = probe.address[1]
        probe.close()  # nothing listens there any more: ICMP port unreachable
        await asyncio.sleep(0.01)
        h = Harness(config(("127.0.0.1", port), retries=2))
        h.submit(1, identity_response())
        reply = await h.reply()
        assert reply.verdict is BackendVerdict.UNREACHABLE
        h.backend.close()

    run(scenario)


def test_forget_while_pending_sends_no_reply_and_frees_the_identifier() -> None:
    async def scenario() -> None:
        dead = await FakeRadius(SECRET).start()
        h = Harness(config(dead.address, retries=1))
        h.submit(1, identity_response())
        await until(lambda: len(dead.received) == 1)
        h.backend.forget(1)
        assert h.backend.status()["servers"][0]["outstanding"] == 0
        await asyncio.sleep(0.2)
        assert h.replies == [] and len(dead.received) == 1  # no more retransmissions
        h.backend.forget(1)  # idempotent
        h.backend.forget(999)
        h.backend.close()
        dead.close()

    run(scenario)


def test_forget_before_the_delivery_cancels_it() -> None:
    async def scenario() -> None:
        h = Harness(EapRadiusConfig())
        h.submit(1, identity_response())  # UNREACHABLE at once, delivered from the loop
        assert h.backend.stats.unreachable == 1
        h.backend.forget(1)
        await asyncio.sleep(0.02)
        assert h.replies == []
        h.backend.close()

    run(scenario)


def test_a_new_packet_replaces_a_pending_one() -> None:
    async def scenario() -> None:
        held: list[Received] = []
        srv = await FakeRadius(SECRET, held.append).start()
        h = Harness(config(srv.address, timeout=1.0))
        h.submit(1, identity_response(ident=1))
        h.submit(1, identity_response(ident=9))
        await until(lambda: len(held) == 2)
        srv.send(held[0].reply(pyrad.packet.AccessAccept), held[0].source)  # for the old one
        srv.send(held[1].reply(pyrad.packet.AccessReject), held[1].source)
        reply = await h.reply()
        assert reply.verdict is BackendVerdict.REJECT
        await asyncio.sleep(0.02)
        assert len(h.replies) == 1
        h.backend.close()
        srv.close()

    run(scenario)


def test_a_failing_reply_callback_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        srv = await FakeRadius(SECRET, lambda r: r.reply(pyrad.packet.AccessReject)).start()

        def boom(ike_id: int, reply: BackendReply) -> None:
            raise RuntimeError("core said no")

        backend = RadiusBackend(config(srv.address), boom)
        backend.submit(RelayRequest(1, b"carol", identity_response(), CLIENT))
        await until(lambda: backend.stats.rejects == 1)
        await asyncio.sleep(0.02)
        backend.submit(RelayRequest(2, b"carol", identity_response(), CLIENT))
        await until(lambda: backend.stats.rejects == 2)
        backend.close()
        srv.close()

    with caplog.at_level(logging.ERROR, "pyipsec.ike.radius"):
        run(scenario)
    assert "handling the RADIUS verdict failed" in caplog.text


# --------------------------------------------------------------------------- identifiers


def test_identifier_space_of_256_per_socket_and_the_waiting_queue() -> None:
    async def scenario() -> None:
        held: list[Received] = []
        answering = False

        def answer(req: Received) -> Any:
            if answering:
                return req.reply(pyrad.packet.AccessAccept)
            held.append(req)
            return None

        srv = await FakeRadius(SECRET, answer).start()
        h = Harness(config(srv.address, timeout=5.0))
        for i in range(300):  # in batches: the fake server's socket buffer is small
            h.submit(i, identity_response())
            if i % 50 == 49:
                await until(lambda i=i: len(held) == min(i + 1, 256))
        status = h.backend.status()["servers"][0]
        assert (status["outstanding"], status["waiting"], status["sockets"]) == (256, 44, 1)
        assert len({r.packet.id for r in held}) == 256  # every Identifier once
        answering = True
        for n, r in enumerate(held, 1):
            srv.send(r.reply(pyrad.packet.AccessAccept), r.source)
            if n % 32 == 0:
                await until(lambda n=n: len(h.replies) >= n)
        await h.reply(300)
        assert sorted(i for i, _ in h.replies) == list(range(300))
        assert all(r.verdict is BackendVerdict.ACCEPT for _, r in h.replies)
        assert h.backend.status()["servers"][0]["outstanding"] == 0
        h.backend.close()
        srv.close()

    run(scenario)


def test_more_sockets_more_identifiers() -> None:
    async def scenario() -> None:
        srv = await FakeRadius(SECRET).start()  # silent
        h = Harness(config(srv.address, timeout=5.0, sockets=2))
        for i in range(300):
            h.submit(i, identity_response())
            if i % 50 == 49:
                await until(lambda i=i: len(srv.received) == i + 1)
        status = h.backend.status()["servers"][0]
        assert (status["outstanding"], status["waiting"], status["sockets"]) == (300, 0, 2)
        assert len({(r.source, r.packet.id) for r in srv.received}) == 300
        h.backend.close()
        srv.close()

    run(scenario)


def test_identifiers_are_not_reused_at_once() -> None:
    async def scenario() -> None:
        srv = await FakeRadius(SECRET, lambda r: r.reply(pyrad.packet.AccessReject)).start()
        h = RadiusBackend(config(srv.address), lambda i, r: None, random_id=lambda: 250)
        for i in range(10):
            h.submit(RelayRequest(i, b"carol", identity_response(), CLIENT))
            await until(lambda i=i: h.stats.rejects == i + 1)
        assert [r.packet.id for r in srv.received] == [250, 251, 252, 253, 254, 255, 0, 1, 2, 3]
        h.close()
        srv.close()

    run(scenario)


def test_a_server_without_a_socket_fails_over() -> None:
    async def scenario() -> None:
        live = await FakeRadius(SECRET, lambda r: r.reply(pyrad.packet.AccessAccept)).start()
        # connect() to the broadcast address without SO_BROADCAST fails (EACCES)
        h = Harness(config(("255.255.255.255", 1812), live.address))
        h.submit(1, identity_response())
        assert (await h.reply()).verdict is BackendVerdict.ACCEPT
        assert h.backend.status()["servers"][0]["reachable"] is False
        h2 = Harness(config(("255.255.255.255", 1812)))
        h2.submit(1, identity_response())
        reply = await h2.reply()
        assert reply.verdict is BackendVerdict.UNREACHABLE
        assert "cannot open a socket" in reply.reason
        for x in (h.backend, h2.backend, live):
            x.close()

    run(scenario)


def test_queued_requests_forget_and_the_queue_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    from pyipsec.daemon import eap_radius

    monkeypatch.setattr(eap_radius, "MAX_WAITING", 3)

    async def scenario() -> None:
        srv = await FakeRadius(SECRET).start()  # silent
        h = Harness(config(srv.address, timeout=5.0))
        for i in range(256 + 3):
            h.submit(i, identity_response())
            if i % 50 == 49:
                await until(lambda i=i: len(srv.received) == min(i + 1, 256))
        assert h.backend.status()["servers"][0]["waiting"] == 3
        h.submit(1000, identity_response())
        reply = await h.reply()
        assert reply.verdict is BackendVerdict.UNREACHABLE and "too many" in reply.reason
        h.backend.forget(257)  # a queued one
        assert h.backend.status()["servers"][0]["waiting"] == 2
        h.backend.forget(0)  # an outstanding one: the first queued request takes its slot
        await until(lambda: len(srv.received) == 257)
        status = h.backend.status()["servers"][0]
        assert (status["outstanding"], status["waiting"]) == (256, 1)
        assert srv.received[-1].packet.id == srv.received[0].packet.id
        h.backend.close()
        assert h.backend.status()["servers"][0]["sockets"] == 0
        srv.close()

    run(scenario)


def test_an_accept_with_one_mppe_key_is_refused() -> None:
    async def scenario() -> None:
        def one_key(req: Received) -> Any:
            r = req.reply(pyrad.packet.AccessAccept, SUCCESS)
            r["MS-MPPE-Recv-Key"] = bytes(32)
            return r

        srv = await FakeRadius(SECRET, one_key).start()
        h = Harness(config(srv.address))
        h.submit(1, identity_response())
        reply = await h.reply()
        assert reply.verdict is BackendVerdict.REJECT and "exactly one" in reply.reason
        h.backend.close()
        srv.close()

    run(scenario)
