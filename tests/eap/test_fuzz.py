"""Hostile input: random packets into every session at every stage never raise, and
every step is well-formed (a packet that parses, an outcome, a reason on FAILURE)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyipsec.constants import EapCode
from pyipsec.eap.base import (
    BackendReply,
    BackendVerdict,
    EapPeerSession,
    EapServerSession,
    EapStep,
    Outcome,
)
from pyipsec.eap.factory import peer_session, relay_session, server_session
from pyipsec.eap.packet import EapPacket, EapType, parse
from pyipsec.eap.settings import EapMethod, EapPeerSettings, EapServerSettings

from .helpers import make_rng
from .pkiset import NOW, make_pki

TYPES = st.sampled_from([1, 2, 3, 4, 13, 26, 254, 255, 0, 99])
USERS = ((b"carol", b"pw"),)


def well_formed(step: EapStep) -> None:
    if step.packet is not None:
        parse(step.packet)
    if step.outcome is Outcome.FAILURE:
        assert step.reason


@st.composite
def hostile(draw: st.DrawFn) -> tuple[bool, int, int, bytes]:
    """(raw?, identifier offset, type, data): raw random bytes or an EAP packet."""
    raw = draw(st.booleans())
    return raw, draw(st.integers(-1, 1)), draw(TYPES), draw(st.binary(max_size=80))


def _server_settings(method: EapMethod | None) -> EapServerSettings:
    p = make_pki()
    return EapServerSettings(
        method, USERS, tls_credentials=p.server, tls_trust=p.trust, when=NOW
    )


def _drive_server(session: EapServerSession, inputs: list[tuple[bool, int, int, bytes]]) -> None:
    step = session.start()
    well_formed(step)
    last = parse(step.packet).identifier if step.packet else 0
    for raw, offset, eap_type, data in inputs:
        if raw:
            packet = data
        else:
            ident = (last + offset) & 0xFF
            packet = EapPacket(EapCode.RESPONSE, ident, eap_type, data).to_bytes()
        step = session.process(packet)
        well_formed(step)
        if step.outcome is Outcome.PENDING:
            step = session.backend_reply(
                BackendReply(BackendVerdict.CHALLENGE, b"\x01\x07\x00\x06\x04\x00")
            )
            well_formed(step)
        if step.packet is not None and parse(step.packet).code == EapCode.REQUEST:
            last = parse(step.packet).identifier


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([None, EapMethod.MD5, EapMethod.MSCHAPV2, EapMethod.TLS]),
    st.lists(hostile(), max_size=6),
)
def test_server_sessions(
    method: EapMethod | None, inputs: list[tuple[bool, int, int, bytes]]
) -> None:
    _drive_server(server_session(_server_settings(method), make_rng()), inputs)


@settings(max_examples=100, deadline=None)
@given(st.lists(hostile(), max_size=6))
def test_relay_session(inputs: list[tuple[bool, int, int, bytes]]) -> None:
    _drive_server(relay_session(make_rng()), inputs)


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["raw", "request", "request", "request", "success", "failure"]))
    ident = draw(st.integers(0, 3))
    if kind == "raw":
        return draw(st.binary(max_size=60))
    if kind == "success":
        return bytes([3, ident, 0, 4])
    if kind == "failure":
        return bytes([4, ident, 0, 4])
    data = draw(st.binary(max_size=80))
    eap_type = draw(TYPES)
    if eap_type == EapType.TLS and draw(st.booleans()):
        data = b"\x20"  # a Start, so that later packets reach the TLS engine
    return EapPacket(EapCode.REQUEST, ident, eap_type, data).to_bytes()


def _peer() -> EapPeerSession:
    p = make_pki()
    return peer_session(
        EapPeerSettings(b"carol", b"pw", tls_credentials=p.client, tls_trust=p.trust, when=NOW),
        make_rng(),
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(requests(), max_size=8))
def test_peer_session(packets: list[bytes]) -> None:
    session = _peer()
    for packet in packets:
        step = session.process(packet)
        well_formed(step)
        assert step.outcome is not Outcome.PENDING


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([EapMethod.MD5, EapMethod.MSCHAPV2, EapMethod.TLS]),
    st.integers(0, 12),
    st.booleans(),
    st.lists(st.tuples(TYPES, st.binary(max_size=60), st.integers(-1, 1)), min_size=1, max_size=3),
)
def test_hostile_input_mid_conversation(
    method: EapMethod,
    honest_rounds: int,
    attack_server: bool,
    attacks: list[tuple[int, bytes, int]],
) -> None:
    """Both sides run honestly for a while, then one of them gets forged packets
    (right or nearly right Identifiers, any Type and data)."""
    p = make_pki()
    server = server_session(_server_settings(method), make_rng(b"s"))
    peer = peer_session(
        EapPeerSettings(
            b"carol", b"pw", methods=(method,), tls_credentials=p.client, tls_trust=p.trust,
            when=NOW, tls_fragment_size=100,
        ),
        make_rng(b"p"),
    )
    to_peer = server.start()
    to_server: EapStep | None = None
    for _ in range(honest_rounds):
        if to_peer.packet is None or to_peer.outcome is not Outcome.CONTINUE:
            return
        to_server = peer.process(to_peer.packet)
        if to_server.packet is None or to_server.outcome is not Outcome.CONTINUE:
            return
        to_peer = server.process(to_server.packet)
    for eap_type, data, offset in attacks:
        if attack_server:
            ident = (parse(to_peer.packet).identifier + offset) & 0xFF if to_peer.packet else 0
            code = EapCode.RESPONSE
            step = server.process(EapPacket(code, ident, eap_type, data).to_bytes())
        else:
            base = to_peer.packet
            ident = (parse(base).identifier + offset + 1) & 0xFF if base else 0
            step = peer.process(EapPacket(EapCode.REQUEST, ident, eap_type, data).to_bytes())
        well_formed(step)
