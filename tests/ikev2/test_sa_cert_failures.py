"""Every way a peer's certificate can be wrong ends in AUTHENTICATION_FAILED with a log line
that says why -- never an exception, never a half-established SA (RFC 7296 §2.21.2,
§3.6; RFC 5280 §4.2.1.3 keyUsage, §4.2.1.12 extendedKeyUsage, §4.1.2.5 validity).

Both roles: the certificate of the initiator (refused by the responder, which answers
N(AUTHENTICATION_FAILED)) and of the responder (refused by the initiator, which deletes
the IKE SA).  The cases complement tests/ikev2/test_sa_cert_auth.py (expired, wrong CA,
revoked, identity not in the certificate, forged signature, PSK instead of a signature,
no CERT payload) and the unit tests of tests/auth/test_trust.py.  Last, the AUTH
signature's hash is one the peer announced in SIGNATURE_HASH_ALGORITHMS (RFC 7427 §4).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

import pytest
from cryptography import x509

from pyipsec import pki
from pyipsec.config.model import LocalCredentials
from pyipsec.constants import CertEncoding
from pyipsec.ikev2.events import IkeSaEstablished
from pyipsec.ikev2.tasks import ike_auth

from .test_sa_cert_auth import NOW, auth_failed, host, key, live, pubkey, root, trust, up

MOON, SUN = "moon.example.net", "sun.example.net"


def _with_key_usage(name: str) -> LocalCredentials:
    """A certificate whose keyUsage lacks digitalSignature (keyEncipherment only)."""
    rc, rk = root()
    k = key("ecdsa-p256", hash(name + "ku"))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name.from_rfc4514_string(f"CN={name}"))
        .issuer_name(rc.subject)
        .public_key(k.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(
            x509.KeyUsage(False, False, True, False, False, False, False, False, False),
            critical=True,
        )
        .sign(rk, pki._sign_args(rk, False)["algorithm"])  # type: ignore[arg-type]
    )
    return LocalCredentials(k, cert, (), rc)


def _issued_by_end_entity(name: str) -> LocalCredentials:
    """A certificate signed by another host's (end-entity) key: no CA on the path."""
    leaf = host("issuer.example.net")
    assert leaf.certificate is not None
    k = key("ecdsa-p256", hash(name + "ee"))
    cert = pki.issue_host(leaf.certificate, leaf.private_key, k.public_key(), cn=name,
                          now=NOW - dt.timedelta(days=1))
    return LocalCredentials(k, cert, (leaf.certificate,), root()[0])


Make = Callable[[str], LocalCredentials]

CERT_CASES: dict[str, tuple[Make, str]] = {
    "not-yet-valid": (lambda n: host(n, now=NOW + dt.timedelta(days=3)), "not-yet-valid"),
    "wrong-eku": (lambda n: host(n, flags=["ikeIntermediate"]), "wrong-eku"),
    "wrong-key-usage": (_with_key_usage, "bad-key-usage"),
    "issued-by-end-entity": (_issued_by_end_entity, "not-a-ca"),
    "expired": (lambda n: host(n, now=NOW - dt.timedelta(days=100), days=10), "expired"),
}


def _refused(h: Any, refusing: str, why: str, caplog: pytest.LogCaptureFixture) -> None:
    reason = auth_failed(h, refusing)
    assert why in reason, reason
    side = "b2a" if refusing == "b" else "a2b"
    lines = [r.getMessage() for r in caplog.records
             if r.levelno >= logging.WARNING and f"({side})" in r.getMessage()]
    assert any(why in line and "failed" in line for line in lines), lines
    assert not h.a.of(IkeSaEstablished) or refusing == "a"
    assert not live(h.a) and not live(h.b)


@pytest.mark.parametrize("bad_side", ["initiator", "responder"])
@pytest.mark.parametrize("case", sorted(CERT_CASES))
def test_bad_certificate(case: str, bad_side: str, caplog: pytest.LogCaptureFixture) -> None:
    make, why = CERT_CASES[case]
    moon = make(MOON) if bad_side == "initiator" else host(MOON)
    sun = make(SUN) if bad_side == "responder" else host(SUN)
    with caplog.at_level(logging.INFO, logger="pyipsec"):
        h = up(pubkey(moon, trust()), pubkey(sun, trust()))
    _refused(h, "b" if bad_side == "initiator" else "a", why, caplog)




PAYLOAD_CASES = {
    # §3.6: never announced HTTP_CERT_LOOKUP_SUPPORTED, so Hash and URL is refused
    "hash-and-url": (CertEncoding.HASH_URL_X509_CERT, bytes(20) + b"http://ca.example/c.der",
                     "Hash and URL"),
    "hash-and-url-bundle": (CertEncoding.HASH_URL_X509_BUNDLE, bytes(20) + b"http://x/b",
                            "Hash and URL"),
    "malformed-x509": (CertEncoding.X509_SIGNATURE, b"\x30\x03\x02\x01\x00", "malformed"),
    "pgp": (CertEncoding.PGP, b"\x99\x01", "not supported"),
    "garbage-raw-key": (CertEncoding.RAW_PUBLIC_KEY, b"\x04junk", "malformed"),
}


@pytest.mark.parametrize("bad_side", ["initiator", "responder"])
@pytest.mark.parametrize("case", sorted(PAYLOAD_CASES))
def test_unusable_cert_payload(case: str, bad_side: str, monkeypatch: pytest.MonkeyPatch,
                               caplog: pytest.LogCaptureFixture) -> None:
    """CERT payloads we cannot use (RFC 7296 §3.6): refused politely, with the reason."""
    encoding, data, why = PAYLOAD_CASES[case]
    moon, sun = host(MOON), host(SUN)
    bad = (moon if bad_side == "initiator" else sun).certificate
    real = ike_auth.cert_payload

    def payload(cert: x509.Certificate) -> tuple[int, bytes]:
        return (int(encoding), data) if cert == bad else real(cert)

    monkeypatch.setattr(ike_auth, "cert_payload", payload)
    with caplog.at_level(logging.INFO, logger="pyipsec"):
        h = up(pubkey(moon, trust()), pubkey(sun, trust()))
    _refused(h, "b" if bad_side == "initiator" else "a", why, caplog)


def test_raw_key_where_a_certificate_is_required(caplog: pytest.LogCaptureFixture) -> None:
    """The initiator sends a raw public key (RFC 7670) to a responder that pins none."""
    raw = LocalCredentials(key("ed25519", 55))
    with caplog.at_level(logging.INFO, logger="pyipsec"):
        h = up(pubkey(raw, trust(), send_cert="always"), pubkey(host(SUN), trust()))
    _refused(h, "b", "not trusted", caplog)


@pytest.mark.parametrize(("announced", "expected"), [
    ((3,), "sha384"),  # SHA2-384 only
    ((4,), "sha512"),  # SHA2-512 only
])
def test_signature_hash_announced_by_the_peer_is_honoured(
    announced: tuple[int, ...], expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RFC 7427 §4: we sign with a hash the peer listed in SIGNATURE_HASH_ALGORITHMS
    (here both sides announce one hash only; ECDSA P-256 keys, method 14)."""
    from pyipsec.auth import signatures
    from pyipsec.ikev2.tasks import ike_init

    def only(ids: Any = None) -> bytes:
        return signatures.build_hash_algorithms(announced)

    monkeypatch.setattr(ike_init, "build_hash_algorithms", only)
    h = up(pubkey(host(MOON), trust()), pubkey(host(SUN), trust()))
    (sa_a,), (sa_b,) = live(h.a), live(h.b)
    assert sa_a.peer_hashes == announced and sa_b.peer_hashes == announced
    assert expected in sa_a.peer_auth.lower() and expected in sa_b.peer_auth.lower()
