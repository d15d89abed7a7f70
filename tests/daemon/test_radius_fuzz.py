"""Property tests: random and mutated RADIUS answers (RFC 2865 §3, RFC 3579 §2.6, §3.2,
RFC 2548 §2.4) against the EAP-RADIUS client's answer parsing.

Answers are built with random attributes (EAP-Message, State, Reply-Message,
Message-Authenticator, MS-MPPE keys in Vendor-Specific attributes, unknown ones, wrong
lengths) and correctly authenticated with the shared secret, so they reach the
attribute logic; or they are byte-mutated after signing.  Checked: ``check_answer``
only ever raises :class:`AnswerDropped`, ``interpret`` always returns a verdict; and
through a running backend against an in-process server answering garbage: no
exception is logged, every conversation ends with a verdict (or the timeout's).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyipsec.daemon import radius_codec as rc
from pyipsec.eap.base import BackendVerdict

from .radius_fake import FakeRadius, Received
from .test_eap_radius import SECRET, Harness, config, identity_response

EXAMPLES = int(os.environ.get("PYIPSEC_FUZZ_EXAMPLES", "300"))
ATTRS = rc.AccessRequestAttributes(identity=b"carol", nas_identifier="gw")


def _attr(t: int, value: bytes) -> bytes:
    return bytes([t, min(255, 2 + len(value))]) + value


def sign(code: int, ident: int, attrs: bytes, req_auth: bytes, secret: bytes = SECRET) -> bytes:
    """An answer with a valid Message-Authenticator (RFC 3579 §3.2, when ``attrs`` has
    a 16-octet zero one) and Response Authenticator (RFC 2865 §3)."""
    length = 20 + len(attrs)
    hdr = struct.pack("!BBH", code, ident, length)
    ma_at = attrs.find(b"\x50\x12" + bytes(16))
    if ma_at >= 0:
        mac = hmac.new(secret, hdr + req_auth + attrs, hashlib.md5).digest()
        attrs = attrs[: ma_at + 2] + mac + attrs[ma_at + 18 :]
    resp_auth = hashlib.md5(hdr + req_auth + attrs + secret).digest()
    return hdr + resp_auth + attrs


def _eap(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        return draw(st.binary(max_size=40))
    code = draw(st.integers(0, 6))
    body = draw(st.binary(max_size=300))
    fix = draw(st.integers(-2, 2))
    return struct.pack("!BBH", code, 1, max(0, 4 + len(body) + fix)) + body


@st.composite
def answer_attributes(draw: st.DrawFn) -> bytes:
    parts: list[bytes] = []
    if draw(st.integers(0, 9)):
        parts.append(_attr(80, bytes(16)))  # Message-Authenticator, filled in by sign()
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["eap", "state", "reply", "mppe", "vsa", "raw", "ma"]))
        if kind == "eap":
            parts += [_attr(79, v) for v in rc.split_eap(_eap(draw))]
        elif kind == "state":
            parts.append(_attr(24, draw(st.binary(max_size=40))))
        elif kind == "reply":
            parts.append(_attr(18, draw(st.binary(max_size=40))))
        elif kind in ("mppe", "vsa"):
            sub = draw(st.sampled_from([16, 17])) if kind == "mppe" else draw(st.integers(0, 255))
            val = draw(st.binary(max_size=60))
            inner = bytes([sub, min(255, 2 + len(val))]) + val
            vendor = 311 if draw(st.integers(0, 4)) else draw(st.integers(0, 2**32 - 1))
            parts.append(_attr(26, struct.pack("!I", vendor) + inner))
        elif kind == "ma":
            parts.append(_attr(80, draw(st.binary(max_size=20))))
        else:
            t, v = draw(st.integers(0, 255)), draw(st.binary(max_size=30))
            length = draw(st.sampled_from([2 + len(v), 0, 1, 255, len(v)]))
            parts.append(bytes([t, length & 0xFF]) + v)
    return b"".join(draw(st.permutations(parts)))


def _request() -> rc.RadiusRequest:
    return rc.RadiusRequest(7, SECRET, identity_response(), ATTRS)


_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("PYIPSEC_FUZZ_EXAMPLES") is None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _parse(req: rc.RadiusRequest, data: bytes) -> None:
    try:
        answer = req.check_answer(data)
    except rc.AnswerDropped:
        return
    reply = rc.interpret(answer, req)
    if reply.verdict is BackendVerdict.ACCEPT:
        assert answer.code == rc.ACCESS_ACCEPT
    if reply.verdict is BackendVerdict.CHALLENGE:
        assert answer.code == rc.ACCESS_CHALLENGE and reply.eap[:1] == b"\x01"


@_SETTINGS
@given(
    code=st.sampled_from([2, 3, 11, 11, 1, 4, 0, 255]),
    attrs=answer_attributes(),
    flip=st.one_of(st.none(), st.tuples(st.integers(0, 4200), st.integers(1, 255))),
    cut=st.one_of(st.none(), st.integers(0, 4200)),
)
def test_authenticated_random_answers(
    code: int, attrs: bytes, flip: tuple[int, int] | None, cut: int | None
) -> None:
    req = _request()
    data = sign(code, 7, attrs, req.authenticator)
    if flip is not None and data:
        i = flip[0] % len(data)
        data = data[:i] + bytes([data[i] ^ flip[1]]) + data[i + 1 :]
    if cut is not None:
        data = data[:cut]
    _parse(req, data)


@_SETTINGS
@given(data=st.binary(max_size=200))
def test_garbage_answers(data: bytes) -> None:
    req = _request()
    _parse(req, data)
    _parse(req, bytes([2, 7]) + data)


def test_backend_survives_garbage_answers(caplog: pytest.LogCaptureFixture) -> None:
    """A server answering each request with random (authenticated) junk: every
    conversation ends with a verdict, nothing is logged with a traceback."""
    caplog.set_level(logging.WARNING)
    rng = random.Random("radius-fuzz")

    def answer(r: Received) -> bytes:
        body = _random_attrs(rng)
        code = rng.choice([2, 3, 11, 11])
        return sign(code, r.raw[1], body, r.raw[4:20])

    async def scenario() -> None:
        srv = await FakeRadius(SECRET, answer).start()
        h = Harness(config(srv.address, timeout=0.05, retries=1))
        n = 40
        for i in range(1, n + 1):
            h.submit(i, identity_response())
        await h.reply(n)
        assert sorted(i for i, _ in h.replies) == list(range(1, n + 1))
        assert h.backend.status()["conversations"] <= n
        h.backend.close()
        srv.close()

    asyncio.run(scenario())
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert not tracebacks, [(r.getMessage(), r.exc_info[1]) for r in tracebacks]  # type: ignore[index]


def _random_attrs(rng: random.Random) -> bytes:
    parts = [_attr(80, bytes(16))] if rng.random() < 0.9 else []
    for _ in range(rng.randint(0, 5)):
        t = rng.choice([79, 79, 24, 18, 26, rng.randrange(256)])
        v = rng.randbytes(rng.randint(0, 40))
        if t == 79 and rng.random() < 0.6:
            v = struct.pack("!BBH", rng.choice([1, 3, 4]), 2, 4 + len(v)) + v
        if t == 26 and rng.random() < 0.7:
            v = struct.pack("!IBB", 311, rng.choice([16, 17]), 2 + len(v)) + v
        parts.append(_attr(t, v))
    rng.shuffle(parts)
    return b"".join(parts)
