"""EAP-TLS (RFC 5216, RFC 9190) between our server and peer, with certificates made
by pyipsec.pki; the MSK checked against the TLS key schedule computed here."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from pyipsec.eap.base import EapPeerSession, EapServerSession, EapStep, Outcome
from pyipsec.eap.factory import peer_session, server_session
from pyipsec.eap.method import Reply
from pyipsec.eap.packet import EapType, parse, request, response, success
from pyipsec.eap.settings import EapMethod, EapPeerSettings, EapServerSettings
from pyipsec.eap.tls import TlsPeer, TlsServer
from pyipsec.eap.tls_engine import TlsEngine
from pyipsec.eap.tls_frag import FLAG_L, FLAG_M, FLAG_S

from .helpers import Transcript, converse, make_rng
from .pkiset import NOW, Pki, intermediate_pki, make_pki

IDENTITY = b"carol@example.net"


def server_settings(p: Pki, **kw: object) -> EapServerSettings:
    base = EapServerSettings(
        EapMethod.TLS, tls_credentials=p.server, tls_trust=p.trust, when=NOW
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def peer_settings(p: Pki, **kw: object) -> EapPeerSettings:
    base = EapPeerSettings(
        IDENTITY, tls_credentials=p.client, tls_trust=p.trust, when=NOW,
        tls_server_name="moon.example.net",
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def run(server: EapServerSettings, peer: EapPeerSettings, identity: bytes = b"") -> Transcript:
    s: EapServerSession = server_session(server, make_rng(b"s"), identity)
    c: EapPeerSession = peer_session(peer, make_rng(b"p"))
    return converse(s, c)


@pytest.mark.parametrize("version", ["1.2", "1.3"])
@pytest.mark.parametrize("kind", ["ecdsa-p256", "rsa2048", "ed25519"])
def test_success_with_equal_msk(version: str, kind: str) -> None:
    p = make_pki(f"Kind {kind}", kind)
    t = run(server_settings(p, tls_max_version=version), peer_settings(p))
    assert t.server.outcome is Outcome.SUCCESS, t.server.reason
    assert t.peer is not None and t.peer.outcome is Outcome.SUCCESS, t.peer.reason
    assert len(t.server.msk) == 64 and t.server.msk == t.peer.msk
    assert t.server.identity == IDENTITY
    start = parse(t.to_peer[1])
    assert start.eap_type == EapType.TLS and start.data == bytes([FLAG_S])
    # the peer's last Response is the empty ACK of the server's last flight
    assert parse(t.to_server[-1]).data == b"\x00"


def test_msk_differs_between_sessions() -> None:
    p = make_pki()
    first = run(server_settings(p), peer_settings(p)).server.msk
    assert first != run(server_settings(p), peer_settings(p)).server.msk


def test_dn_identity() -> None:
    p = make_pki()
    t = run(server_settings(p), peer_settings(p, identity=b"CN=carol, O=Example"))
    assert t.server.outcome is Outcome.SUCCESS, t.server.reason


def test_identity_not_in_the_client_certificate() -> None:
    p = make_pki()
    t = run(server_settings(p), peer_settings(p, identity=b"dave@example.net"))
    assert t.server.outcome is Outcome.FAILURE
    assert "does not match the EAP identity" in t.server.reason
    assert "dave@example.net" in t.server.reason
    assert t.peer is not None and t.peer.outcome is Outcome.FAILURE
    unchecked = run(
        server_settings(p, tls_check_identity=False), peer_settings(p, identity=b"dave")
    )
    assert unchecked.server.outcome is Outcome.SUCCESS


def test_identity_given_without_an_identity_round() -> None:
    p = make_pki()
    t = run(server_settings(p, ask_identity=False), peer_settings(p), identity=IDENTITY)
    assert t.server.outcome is Outcome.SUCCESS
    assert parse(t.to_peer[0]).data == bytes([FLAG_S])


def test_client_from_another_ca() -> None:
    p, other = make_pki(), make_pki("Other")
    t = run(server_settings(p), peer_settings(p, tls_credentials=other.client))
    assert t.server.outcome is Outcome.FAILURE
    assert "client certificate not accepted" in t.server.reason
    assert t.peer is not None and t.peer.outcome is Outcome.FAILURE
    assert "EAP-Failure" in t.peer.reason


def test_server_from_another_ca() -> None:
    p, other = make_pki(), make_pki("Other")
    t = run(server_settings(p, tls_credentials=other.server), peer_settings(p))
    assert t.peer is not None and t.peer.outcome is Outcome.FAILURE
    assert "server certificate not accepted" in t.peer.reason
    assert t.server.outcome is Outcome.CONTINUE  # the peer just gave up


def test_server_name_mismatch() -> None:
    p = make_pki()
    t = run(server_settings(p), peer_settings(p, tls_server_name="sun.example.net"))
    assert t.peer is not None and t.peer.outcome is Outcome.FAILURE
    assert "server certificate does not match" in t.peer.reason


@pytest.mark.parametrize("side", ["server", "peer"])
def test_expired_certificates(side: str) -> None:
    p = make_pki()
    late = NOW + dt.timedelta(days=3 * 365)
    server = server_settings(p, when=late if side == "server" else NOW)
    peer = peer_settings(p, when=late if side == "peer" else NOW)
    t = run(server, peer)
    failed = t.server if side == "server" else t.peer
    assert failed is not None and failed.outcome is Outcome.FAILURE
    assert "expired" in failed.reason


def test_no_wall_clock_time() -> None:
    p = make_pki()
    t = run(server_settings(p, when=None), peer_settings(p))
    assert t.server.outcome is Outcome.FAILURE and "wall-clock" in t.server.reason


def test_client_certificate_through_an_intermediate() -> None:
    chained, _sub = intermediate_pki()
    t = run(server_settings(chained), peer_settings(chained))
    assert t.server.outcome is Outcome.SUCCESS, t.server.reason


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_small_fragments(version: str) -> None:
    p = make_pki()
    t = run(
        server_settings(p, tls_fragment_size=64, tls_max_version=version),
        peer_settings(p, tls_fragment_size=64),
    )
    assert t.server.outcome is Outcome.SUCCESS, t.server.reason
    assert t.peer is not None and t.server.msk == t.peer.msk
    assert all(len(pkt) <= 64 for pkt in t.to_peer + t.to_server)
    flags = [parse(pkt).data[0] for pkt in t.to_peer[2:-1]]
    assert flags.count(FLAG_L | FLAG_M) >= 1  # first fragments: length and more
    assert FLAG_M in flags  # middle fragments
    sent = [parse(pkt).data[0] for pkt in t.to_server[1:]]
    assert sent[0] == FLAG_L | FLAG_M and FLAG_M in sent  # the ClientHello
    # every fragment with M is acknowledged by an empty Response
    for req, ans in zip(t.to_peer[2:-1], t.to_server[2:], strict=False):
        if parse(req).data[0] & FLAG_M:
            assert parse(ans).data == b"\x00"
    assert len(t.to_peer) > 30


def test_default_fragment_size_keeps_packets_small() -> None:
    p = make_pki("Big", "rsa4096")
    t = run(server_settings(p), peer_settings(p))
    assert t.server.outcome is Outcome.SUCCESS
    assert max(len(pkt) for pkt in t.to_peer + t.to_server) <= 1024


def test_version_mismatch_sends_an_alert() -> None:
    p = make_pki()
    t = run(server_settings(p, tls_max_version="1.2"), peer_settings(p, tls_min_version="1.3"))
    assert t.peer is not None and t.peer.outcome is Outcome.FAILURE
    assert "TLS handshake failed" in t.peer.reason


class RawTlsPeer:
    """A peer session around a bare TlsPeer (no Nak, whatever its credentials)."""

    def __init__(self, method: TlsPeer) -> None:
        self.method = method

    def process(self, packet: bytes) -> EapStep:
        pkt = parse(packet)
        if pkt.eap_type != EapType.TLS:
            return EapStep(None, Outcome.FAILURE, reason=f"code {pkt.code}")
        reply = self.method.process(pkt.identifier, pkt.data)
        if isinstance(reply, Reply):
            return EapStep(response(pkt.identifier, EapType.TLS, reply.type_data))
        return EapStep(None, Outcome.FAILURE, reason=reply.reason)


def test_peer_without_certificate_gets_an_alert() -> None:
    p = make_pki()
    s = server_session(server_settings(p, ask_identity=False), make_rng(), IDENTITY)
    peer = RawTlsPeer(TlsPeer(peer_settings(p, tls_credentials=None)))
    t = converse(s, peer)
    # the server's TLS alert went out in a Request (RFC 5216 §2.1.3) and reached the peer
    assert t.server.outcome is Outcome.CONTINUE
    assert t.peer is not None and t.peer.outcome is Outcome.FAILURE
    assert "alert certificate required" in t.peer.reason
    # whatever the peer answers, the server ends with EAP-Failure
    last = parse(t.to_peer[-1])
    end = s.process(response(last.identifier, EapType.TLS, b"\x00"))
    assert end.outcome is Outcome.FAILURE and "TLS handshake failed" in end.reason


def test_garbage_client_hello_gets_alert_then_failure() -> None:
    p = make_pki()
    s = server_session(server_settings(p, ask_identity=False), make_rng(), IDENTITY)
    ident = parse(s.start().packet or b"").identifier
    step = s.process(response(ident, EapType.TLS, b"\x00" + b"\x16\x03\x01\x00\x05hello"))
    assert step.outcome is Outcome.CONTINUE and step.packet is not None
    alert = parse(step.packet)
    assert alert.data[0] & FLAG_L and alert.data[5] == 0x15  # a TLS alert record
    end = s.process(response(alert.identifier, EapType.TLS, b"\x00"))
    assert end.outcome is Outcome.FAILURE and "TLS handshake failed" in end.reason


def test_oversized_message_is_refused() -> None:
    p = make_pki()
    s = server_session(server_settings(p, ask_identity=False), make_rng(), IDENTITY)
    ident = parse(s.start().packet or b"").identifier
    big = bytes([FLAG_L | FLAG_M]) + (70_000).to_bytes(4, "big") + b"x" * 100
    step = s.process(response(ident, EapType.TLS, big))
    assert step.outcome is Outcome.FAILURE and "too large" in step.reason


def test_fragments_beyond_the_declared_length() -> None:
    server = TlsServer(server_settings(make_pki()), IDENTITY)
    server.start(1)
    first = bytes([FLAG_L | FLAG_M]) + (10).to_bytes(4, "big") + b"x" * 8
    assert getattr(server.process(2, first), "type_data", None) == b"\x00"  # ACK
    with pytest.raises(Exception, match="exceed 10"):
        server.process(3, bytes([FLAG_M]) + b"y" * 8)


def test_fragments_without_declared_length_are_bounded() -> None:
    server = TlsServer(server_settings(make_pki()), IDENTITY)
    server.start(1)
    chunk = bytes([FLAG_M]) + b"z" * 60_000
    server.process(2, chunk)
    with pytest.raises(Exception, match="exceed 65536"):
        server.process(3, chunk)


def test_server_refuses_data_instead_of_an_ack() -> None:
    p = make_pki()
    s = TlsServer(server_settings(p, tls_fragment_size=64), IDENTITY)
    peer = TlsPeer(peer_settings(p, tls_max_version="1.2"))  # a ClientHello in one piece
    s.start(1)
    hello = getattr(peer.process(1, bytes([FLAG_S])), "type_data", b"")
    first = s.process(2, hello)
    assert getattr(first, "type_data", b"\x00")[0] & FLAG_M
    with pytest.raises(Exception, match="ACK of our fragment"):
        s.process(3, b"\x00" + b"\x16\x03\x03")


def test_peer_protocol_errors() -> None:
    p = make_pki()
    peer = TlsPeer(peer_settings(p))
    assert "before the Start" in getattr(peer.process(1, b"\x00abc"), "reason", "")
    peer.process(2, bytes([FLAG_S]))
    assert "second EAP-TLS Start" in getattr(peer.process(3, bytes([FLAG_S])), "reason", "")
    peer = TlsPeer(peer_settings(p, tls_max_version="1.2"))  # a ClientHello in one piece
    peer.process(2, bytes([FLAG_S]))
    assert "nothing to acknowledge" in getattr(peer.process(3, b"\x00"), "reason", "")
    assert not peer.verdict().ok


def test_peer_refuses_success_before_the_tls13_indication() -> None:
    p = make_pki()
    s = server_session(server_settings(p, tls_max_version="1.3"), make_rng(), IDENTITY)
    c = peer_session(peer_settings(p), make_rng())
    step = s.start()
    while True:
        answer = c.process(step.packet or b"")
        step = s.process(answer.packet or b"")
        if step.outcome is not Outcome.CONTINUE:
            pytest.fail(step.reason)
        pkt = parse(step.packet or b"")
        if pkt.eap_type == EapType.TLS and pkt.data[0] == 0x80 and pkt.data[5] == 0x17:
            break  # the server's last flight: application data (and tickets)
    forged = c.process(success(pkt.identifier))
    assert forged.outcome is Outcome.FAILURE
    assert "success indication" in forged.reason


def test_peer_naks_tls_without_a_certificate_and_the_server_falls_back() -> None:
    p = make_pki()
    settings = server_settings(p, method=None, users=((IDENTITY, b"pw"),))
    t = run(settings, EapPeerSettings(IDENTITY, b"pw"))
    assert t.server.outcome is Outcome.SUCCESS, t.server.reason
    kinds = [parse(pkt).eap_type for pkt in t.to_server]
    assert kinds[:3] == [EapType.IDENTITY, EapType.NAK, EapType.MSCHAPV2]


def test_peer_retransmission_of_an_ack() -> None:
    p = make_pki()
    c = peer_session(peer_settings(p, tls_fragment_size=64), make_rng())
    start = request(10, EapType.TLS, bytes([FLAG_S]))
    hello = c.process(start).packet
    assert c.process(start).packet == hello


# --- the MSK against the TLS key schedule ------------------------------------------------


def _handshake(p: Pki, version: str) -> tuple[TlsEngine, TlsEngine, list[bytes]]:
    lines: list[bytes] = []
    server = TlsEngine(server=True, credentials=p.server, max_version=version)
    client = TlsEngine(server=False, credentials=p.client, keylog=lines.append)
    client.handshake()
    data = client.output()
    for _ in range(6):
        server.handshake(data)
        data = server.output()
        client.handshake(data)
        data = client.output()
        if server.complete and client.complete:
            break
    return server, client, lines


def _p_hash(hash_name: str, secret: bytes, seed: bytes, size: int) -> bytes:
    """RFC 5246 §5 P_hash."""
    out, a = b"", seed
    while len(out) < size:
        a = hmac.new(secret, a, hash_name).digest()
        out += hmac.new(secret, a + seed, hash_name).digest()
    return out[:size]


def test_tls12_msk_is_the_rfc5216_prf() -> None:
    p = make_pki()
    server, client, _ = _handshake(p, "1.2")
    conn = client._conn
    hash_name = "sha384" if "SHA384" in (conn.get_cipher_name() or "") else "sha256"
    seed = b"client EAP encryption" + conn.client_random() + conn.server_random()
    expected = _p_hash(hash_name, conn.master_key(), seed, 64)
    assert server.msk() == client.msk() == expected


def _expand_label(
    secret: bytes, label: bytes, context: bytes, size: int, h: hashes.HashAlgorithm
) -> bytes:
    """RFC 8446 §7.1 HKDF-Expand-Label."""
    full = b"tls13 " + label
    info = size.to_bytes(2, "big") + bytes([len(full)]) + full + bytes([len(context)]) + context
    return HKDFExpand(h, size, info).derive(secret)


def test_tls13_msk_is_the_rfc9190_exporter() -> None:
    """RFC 8446 §7.5 exporter with label EXPORTER_EAP_TLS_Key_Material and context 0x0D,
    128 octets, the first 64 the MSK (RFC 9190 §2.3)."""
    p = make_pki()
    server, client, lines = _handshake(p, "1.3")
    exporter = next(bytes.fromhex(line.split()[2].decode()) for line in lines
                    if line.startswith(b"EXPORTER_SECRET "))
    h: hashes.HashAlgorithm = hashes.SHA384() if len(exporter) == 48 else hashes.SHA256()
    hash_fn = hashlib.sha384 if len(exporter) == 48 else hashlib.sha256
    derived = _expand_label(
        exporter, b"EXPORTER_EAP_TLS_Key_Material", hash_fn(b"").digest(), h.digest_size, h
    )
    material = _expand_label(derived, b"exporter", hash_fn(b"\x0d").digest(), 128, h)
    assert server.msk() == client.msk() == material[:64]
