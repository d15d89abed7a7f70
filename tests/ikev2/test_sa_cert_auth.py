"""Certificate / public-key authentication in IKE_AUTH (RFC 7296 §2.15, §3.6-§3.8,
RFC 7427, RFC 7670), both roles, through the in-memory harness."""

from __future__ import annotations

import datetime as dt
from functools import cache
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pyipsec import pki
from pyipsec.auth.signatures import PrivateKey
from pyipsec.config.model import LocalCredentials, RemoteTrust
from pyipsec.ikev2.constants import ExchangeType, NotifyType, PayloadType
from pyipsec.ikev2.events import IkeSaEstablished, IkeSaFailed, IkeSaRekeyed
from pyipsec.ikev2.state import IkeSaState

from .harness import Harness, conn_pair

NOW = dt.datetime(2030, 6, 1, 12, 0, tzinfo=dt.UTC)


def clock(_now: float) -> dt.datetime:
    return NOW


@cache
def key(kind: str, n: int = 0) -> PrivateKey:
    return pki.generate_key(kind)


@cache
def root(kind: str = "ecdsa-p256", name: str = "Root CA") -> tuple[x509.Certificate, PrivateKey]:
    k = key(kind, hash(name))
    return pki.make_ca(k, f"CN={name},O=Example", now=NOW - dt.timedelta(days=30)), k


@cache
def sub(kind: str = "ecdsa-p384") -> tuple[x509.Certificate, PrivateKey]:
    rc, rk = root()
    k = key(kind, 7)
    im = pki.make_ca(
        k, "CN=Sub CA,O=Example", now=NOW - dt.timedelta(days=30), issuer_cert=rc, issuer_key=rk
    )
    return im, k


def host(
    name: str,
    kind: str = "ecdsa-p256",
    *,
    ca: tuple[x509.Certificate, PrivateKey] | None = None,
    intermediates: tuple[x509.Certificate, ...] = (),
    **kw: Any,
) -> LocalCredentials:
    ca_cert, ca_key = ca or root()
    k = key(kind, hash(name))
    cert = pki.issue_host(
        ca_cert,
        ca_key,
        k.public_key(),
        cn=name,
        now=kw.pop("now", NOW - dt.timedelta(days=1)),
        pss=kind.startswith("rsa"),
        **kw,
    )
    return LocalCredentials(k, cert, intermediates, root()[0])


def trust(**kw: Any) -> RemoteTrust:
    kw.setdefault("anchors", (root()[0],))
    return RemoteTrust(clock=clock, **kw)


def pubkey(creds: LocalCredentials | None, tr: RemoteTrust | None, **kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"psk": b""}
    if creds is not None:
        out |= {"local_auth": "pubkey", "local_credentials": creds}
    if tr is not None:
        out |= {"remote_auth": "pubkey", "remote_trust": tr}
    return out | kw


def up(a_kw: dict[str, Any], b_kw: dict[str, Any], **pair: Any) -> Harness:
    h = Harness(*conn_pair(a_kw=a_kw, b_kw=b_kw, **pair))
    h.up()
    return h


def established(h: Harness) -> None:
    assert [v.state for v in h.a.mgr.ike_sas()] == [IkeSaState.ESTABLISHED]
    assert [v.state for v in h.b.mgr.ike_sas()] == [IkeSaState.ESTABLISHED]
    assert len(h.a.mgr.child_sas()) == 1 and len(h.b.mgr.child_sas()) == 1


def live(side: Any) -> list[Any]:
    return [s for s in side.mgr.by_id.values() if s.state is IkeSaState.ESTABLISHED]


def auth_failed(h: Harness, refusing: str) -> str:
    """Neither side is up; ``refusing`` failed with AUTHENTICATION_FAILED; its reason."""
    assert not h.a.of(IkeSaEstablished) or not h.b.of(IkeSaEstablished) or live(h.a) == []
    assert not live(h.a) and not live(h.b)
    side = h.a if refusing == "a" else h.b
    fails = side.of(IkeSaFailed)
    assert fails and fails[0].notify == NotifyType.AUTHENTICATION_FAILED
    other = h.b if refusing == "a" else h.a
    assert [f.notify for f in other.of(IkeSaFailed)] in (
        [NotifyType.AUTHENTICATION_FAILED],
        [],  # the responder's SA was deleted after the initiator refused it
    )
    return str(fails[0].reason)


def payload_types(h: Harness, sender: str, response: bool) -> list[int]:
    (pkt,) = [
        p
        for p in h.sent(sender, ExchangeType.IKE_AUTH, response=response)
        if p.message() is not None
    ][:1]
    return [t for t, _ in h.decrypt(pkt).payloads]


# --- success, both roles ----------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "rsa_pss", "scheme"),
    [
        ("ecdsa-p256", False, "ECDSA"),
        ("ecdsa-p384", False, "ECDSA"),
        ("rsa2048", True, "PSS"),
        ("rsa2048", False, "RSA"),
        ("ed25519", False, "Ed25519"),
    ],
)
def test_pubkey_both_roles(kind: str, rsa_pss: bool, scheme: str) -> None:
    a = pubkey(host("moon.example.net", kind), trust(), rsa_pss=rsa_pss)
    b = pubkey(host("sun.example.net", kind), trust(), rsa_pss=rsa_pss)
    h = up(a, b)
    established(h)
    (sa_a,), (sa_b,) = live(h.a), live(h.b)
    assert scheme.lower() in sa_a.peer_auth.lower() and scheme.lower() in sa_b.peer_auth.lower()
    st = h.a.mgr.status()[0]
    assert st["peer_cert"]["subject"] == "CN=sun.example.net"
    assert st["peer_cert"]["issuer"] == "CN=Root CA, O=Example"  # as written (DER order)
    assert st["peer_cert"]["not_after"].startswith("2032")
    assert h.b.mgr.status()[0]["peer_cert"]["subject"] == "CN=moon.example.net"
    # CERTREQ of the responder in IKE_SA_INIT, then CERT on both sides (ifasked)
    assert PayloadType.CERT in payload_types(h, "a", False)
    assert PayloadType.CERTREQ in payload_types(h, "a", False)
    assert PayloadType.CERT in payload_types(h, "b", True)
    if rsa_pss or kind != "rsa2048":
        assert sa_a.peer_hashes and sa_b.peer_hashes


def test_intermediate_in_cert_payloads() -> None:
    im = sub()
    a = pubkey(host("moon.example.net", ca=im, intermediates=(im[0],)), trust())
    b = pubkey(host("sun.example.net", "ed25519", ca=im, intermediates=(im[0],)), trust())
    h = up(a, b)
    established(h)
    assert payload_types(h, "a", False).count(PayloadType.CERT) == 2
    assert payload_types(h, "b", True).count(PayloadType.CERT) == 2


def test_send_cert_never_with_pinned_raw_key() -> None:
    """RFC 7670: raw public keys, known to the peer in advance, no CERT sent."""
    ka, kb = key("ed25519", 101), key("ecdsa-p256", 102)

    def spki(k: PrivateKey) -> bytes:
        return k.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    a = pubkey(LocalCredentials(ka), trust(anchors=(), raw_keys=(spki(kb),)), send_cert="never")
    b = pubkey(LocalCredentials(kb), trust(anchors=(), raw_keys=(spki(ka),)), send_cert="always")
    h = up(a, b)
    established(h)
    assert PayloadType.CERT not in payload_types(h, "a", False)
    assert PayloadType.CERT in payload_types(h, "b", True)  # raw public key (encoding 15)


@pytest.mark.parametrize("pubkey_side", ["a", "b"])
def test_asymmetric(pubkey_side: str) -> None:
    """§2.15: one side signs, the other uses the PSK."""
    from .harness import PSK

    cert_a = host("moon.example.net")
    cert_b = host("sun.example.net")
    if pubkey_side == "a":
        a = pubkey(cert_a, None, psk=PSK)  # we sign, the peer uses the PSK
        b = pubkey(None, trust(), psk=PSK)
    else:
        a = pubkey(None, trust(), psk=PSK)
        b = pubkey(cert_b, None, psk=PSK)
    h = up(a, b)
    established(h)
    (sa_a,), (sa_b,) = live(h.a), live(h.b)
    signer, psk_user = (sa_b, sa_a) if pubkey_side == "a" else (sa_a, sa_b)
    assert signer.peer_cert is not None and signer.peer_auth != "psk"
    assert psk_user.peer_auth == "psk" and psk_user.peer_cert is None


def test_psk_connection_sends_no_new_payloads() -> None:
    h = up({}, {})
    established(h)
    (init,) = h.sent("a", ExchangeType.IKE_SA_INIT, response=False)[:1]
    msg = init.message()
    assert msg is not None
    assert NotifyType.SIGNATURE_HASH_ALGORITHMS not in [n.type for n in msg.notifies()]
    assert PayloadType.CERT not in payload_types(h, "a", False)


def test_credentials_compare_by_der() -> None:
    c = host("moon.example.net")
    assert c.certificate is not None
    der = c.certificate.public_bytes(serialization.Encoding.DER)
    pem = c.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    again = LocalCredentials(
        serialization.load_pem_private_key(pem, None),  # type: ignore[arg-type]
        x509.load_der_x509_certificate(der),
        (),
        root()[0],
    )
    assert again == c and hash(again) == hash(c)
    assert trust() == RemoteTrust(anchors=(root()[0],)) and trust() != RemoteTrust()


# --- failures -------------------------------------------------------------------------


def test_expired_initiator_cert() -> None:
    old = host("moon.example.net", now=NOW - dt.timedelta(days=100), days=10)
    h = up(pubkey(old, trust()), pubkey(host("sun.example.net"), trust()))
    assert "expired" in auth_failed(h, "b")


def test_wrong_ca_responder_cert() -> None:
    other = root("ecdsa-p256", "Other CA")
    h = up(
        pubkey(host("moon.example.net"), trust()),
        pubkey(host("sun.example.net", ca=other), trust()),
    )
    assert "untrusted" in auth_failed(h, "a")
    assert [v.state for v in h.b.mgr.ike_sas()] != [IkeSaState.ESTABLISHED]


def test_revoked_initiator_cert() -> None:
    moon = host("moon.example.net")
    assert moon.certificate is not None
    rc, rk = root()
    crl = pki.make_crl(rc, rk, [moon.certificate.serial_number], now=NOW - dt.timedelta(hours=1))
    h = up(pubkey(moon, trust()), pubkey(host("sun.example.net"), trust(crls=(crl,))))
    assert "revoked" in auth_failed(h, "b")


def test_id_not_in_certificate() -> None:
    a = pubkey(host("moon.example.net"), trust(), local_id="mars.example.net")
    b = pubkey(host("sun.example.net"), trust(), remote_id="*.example.net")
    h = up(a, b)
    assert "id-mismatch" in auth_failed(h, "b")


def test_wrong_remote_id_pattern() -> None:
    b = pubkey(host("sun.example.net"), trust(), remote_id="*.other.net")
    h = up(pubkey(host("moon.example.net"), trust()), b)
    assert "no connection" in auth_failed(h, "b")


def test_remote_id_pattern_matches() -> None:
    b = pubkey(host("sun.example.net"), trust(), remote_id="*.example.net")
    a = pubkey(host("moon.example.net"), trust(), remote_id="*.example.net")
    established(up(a, b))


def test_forged_responder_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    from pyipsec.ikev2.tasks import ike_auth

    real = ike_auth.sign_auth

    def forged(k: Any, octets: bytes, method: int, scheme: Any = None) -> bytes:
        data = real(k, octets, method, scheme)
        return data[:-1] + bytes([data[-1] ^ 1]) if k is responder_key else data

    b_creds = host("sun.example.net")
    responder_key = b_creds.private_key
    monkeypatch.setattr(ike_auth, "sign_auth", forged)
    h = up(pubkey(host("moon.example.net"), trust()), pubkey(b_creds, trust()))
    reason = auth_failed(h, "a")
    assert "bad-signature" in reason or "malformed" in reason


def test_psk_instead_of_signature() -> None:
    """The responder requires a signature: PSK AUTH from the initiator is refused."""
    from .harness import PSK

    h = up(pubkey(None, trust(), psk=PSK), pubkey(host("sun.example.net"), trust(), psk=PSK))
    assert "public-key signature is required" in auth_failed(h, "b")


def test_missing_cert_payload() -> None:
    a = pubkey(host("moon.example.net"), trust(), send_cert="never")
    h = up(a, pubkey(host("sun.example.net"), trust()))
    assert "no CERT" in auth_failed(h, "b")


# --- after authentication -------------------------------------------------------------


def test_rekeys_after_cert_auth() -> None:
    a = pubkey(host("moon.example.net", "ed25519"), trust())
    b = pubkey(host("sun.example.net", "ecdsa-p384"), trust())
    h = up(a, b)
    established(h)
    (old_a,) = live(h.a)
    h.a.mgr.rekey_ike(old_a.ike_id, h.now)
    h.run(3)
    assert h.a.of(IkeSaRekeyed) and h.b.of(IkeSaRekeyed)
    (new_a,) = live(h.a)
    (child,) = h.a.mgr.child_sas()
    h.a.mgr.rekey_child(new_a.ike_id, child.spi_in, h.now)
    h.run(3)
    (child2,) = h.a.mgr.child_sas()
    assert child2.spi_in != child.spi_in
    assert len(live(h.a)) == 1 and len(live(h.b)) == 1
    # the rekeyed IKE SA still shows who the peer is (authenticated once, §2.18)
    (st,) = h.a.mgr.status(h.now)
    assert st["peer_cert"] is not None and st["peer_auth"]


def test_large_chain_fragmented() -> None:
    rc, rk = root()
    big = key("rsa4096", 3)
    im = pki.make_ca(
        big,
        "CN=Big Sub CA,O=Example",
        now=NOW - dt.timedelta(days=30),
        issuer_cert=rc,
        issuer_key=rk,
    )
    a = pubkey(
        host("moon.example.net", "rsa4096", ca=(im, big), intermediates=(im,)),
        trust(),
        rsa_pss=True,
        fragment_size=576,
    )
    b = pubkey(
        host("sun.example.net", "rsa4096", ca=(im, big), intermediates=(im,)),
        trust(),
        rsa_pss=True,
        fragment_size=576,
    )
    h = up(a, b)
    established(h)
    for sender, resp in (("a", False), ("b", True)):
        pkts = h.sent(sender, ExchangeType.IKE_AUTH, response=resp)
        assert len(pkts) > 3 and all(len(p.data) <= 576 for p in pkts)


def test_certificate_validity_needs_a_wall_clock_given_to_the_core() -> None:
    """The core reads no clock: without RemoteTrust.clock and IkeManager(wall_clock=...)
    a certificate cannot be validated (AUTHENTICATION_FAILED, saying why); with the
    manager's wall clock it can."""
    bare = RemoteTrust(anchors=(root()[0],))
    h = Harness(
        *conn_pair(
            a_kw=pubkey(host("moon.example.net"), trust()),
            b_kw=pubkey(host("sun.example.net"), bare),
        )
    )
    h.up()
    assert "no wall clock" in auth_failed(h, "b")
    h = Harness(
        *conn_pair(
            a_kw=pubkey(host("moon.example.net"), trust()),
            b_kw=pubkey(host("sun.example.net"), bare),
        )
    )
    h.b.mgr.wall_clock = clock
    h.up()
    established(h)
