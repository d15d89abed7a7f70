"""Path validation (RFC 5280 §6, RFC 4945 §5), CERT/CERTREQ data and identity binding."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from functools import cache

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pyipsec import pki
from pyipsec.auth.certs import (
    LocalChain,
    build_certreq,
    cert_payload,
    certs_to_send,
    check_id_binding,
    dn_equal,
    id_matches_certificate,
    match_id_pattern,
    parse_cert_payload,
    parse_cert_payloads,
    parse_certreq,
    raw_public_key_payload,
    select_chain,
    spki_sha1,
)
from pyipsec.auth.errors import AuthError, AuthReason, KeyLoadError
from pyipsec.auth.keys import load_certificate, load_crl, load_private_key, load_public_key
from pyipsec.auth.signatures import PrivateKey
from pyipsec.auth.trust import validate_chain
from pyipsec.constants import CertEncoding, IdType
from pyipsec.ikev2.payloads import IdPayload

NOW = dt.datetime(2030, 6, 1, 12, 0, tzinfo=dt.UTC)


@cache
def pki_set() -> dict[str, tuple[x509.Certificate, PrivateKey]]:
    ca_key = pki.generate_key("ed25519")
    ca = pki.make_ca(ca_key, "CN=Root CA,O=Example", now=NOW - dt.timedelta(days=10), path_length=1)
    im_key = pki.generate_key("ecdsa-p384")
    im = pki.make_ca(
        im_key,
        "CN=Sub CA,O=Example",
        now=NOW - dt.timedelta(days=10),
        issuer_cert=ca,
        issuer_key=ca_key,
        path_length=0,
    )
    host_key = pki.generate_key("ecdsa-p256")
    host = pki.issue_host(
        im,
        im_key,
        host_key.public_key(),
        dn="CN=moon.example.net,O=Example",
        sans=["moon.example.net", "moon@example.net", "192.0.2.1", "2001:db8::1"],
        now=NOW,
        flags=["ipsecIKE"],
        serial=0x1234,
    )
    other_key = pki.generate_key("ecdsa-p256")
    other_ca = pki.make_ca(other_key, "CN=Other CA", now=NOW - dt.timedelta(days=10))
    return {
        "ca": (ca, ca_key),
        "im": (im, im_key),
        "host": (host, host_key),
        "other": (other_ca, other_key),
    }


def host_with(**kw: object) -> x509.Certificate:
    im, im_key = pki_set()["im"]
    args: dict[str, object] = {"cn": "sun.example.net", "now": NOW}
    args.update(kw)
    return pki.issue_host(im, im_key, pki.generate_key("ecdsa-p256").public_key(), **args)  # type: ignore[arg-type]


def validate(cert: x509.Certificate, **kw: object) -> list[x509.Certificate]:
    s = pki_set()
    args: dict[str, object] = {"anchors": [s["ca"][0]], "intermediates": [s["im"][0]], "now": NOW}
    args.update(kw)
    return list(validate_chain(cert, **args).chain)  # type: ignore[arg-type]


def reason(cert: x509.Certificate, **kw: object) -> AuthReason:
    with pytest.raises(AuthError) as ei:
        validate(cert, **kw)
    return ei.value.reason


def test_chain_with_separately_supplied_intermediate() -> None:
    s = pki_set()
    assert validate(s["host"][0]) == [s["host"][0], s["im"][0], s["ca"][0]]
    # intermediate missing: no path
    assert reason(s["host"][0], intermediates=[]) is AuthReason.UNTRUSTED
    # the intermediate itself as anchor
    assert validate(s["host"][0], anchors=[s["im"][0]], intermediates=[]) == [
        s["host"][0],
        s["im"][0],
    ]
    # pinned end-entity certificate
    assert validate(s["host"][0], anchors=[s["host"][0]]) == [s["host"][0]]


def test_distinct_failure_reasons() -> None:
    s = pki_set()
    host = s["host"][0]
    assert reason(host, now=NOW + dt.timedelta(days=800)) is AuthReason.EXPIRED
    assert reason(host, now=NOW - dt.timedelta(days=1)) is AuthReason.NOT_YET_VALID
    assert reason(host, anchors=[s["other"][0]]) is AuthReason.UNTRUSTED
    assert reason(host_with(flags=["ikeIntermediate"])) is AuthReason.WRONG_EKU
    for ok_flags in ([], ["serverAuth"], ["clientAuth"], ["ipsecIKE"]):
        validate(host_with(flags=ok_flags))
    # keyUsage without digitalSignature
    im, im_key = s["im"]
    bad_ku = (
        x509.CertificateBuilder()
        .subject_name(x509.Name.from_rfc4514_string("CN=ku"))
        .issuer_name(im.subject)
        .public_key(pki.generate_key("ecdsa-p256").public_key())
        .serial_number(7)
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(
            x509.KeyUsage(False, True, True, False, False, False, False, False, False),
            critical=True,
        )
        .sign(im_key, pki._sign_args(im_key, False)["algorithm"])  # type: ignore[arg-type]
    )
    assert reason(bad_ku) is AuthReason.BAD_KEY_USAGE
    # revoked by a CRL of the intermediate
    crl = pki.make_crl(im, im_key, [0x1234, 99], now=NOW)
    with pytest.raises(AuthError) as ei:
        validate(host, crls=[crl])
    assert ei.value.reason is AuthReason.REVOKED
    assert "0x1234" in str(ei.value)
    validate(host_with(), crls=[crl])
    # a CRL signed by someone else is ignored; strict needs a usable one
    fake = pki.make_crl(im, s["other"][1], [0x1234], now=NOW)
    validate(host, crls=[fake])
    assert reason(host, crls=[fake], strict_crl=True) is AuthReason.CRL_UNAVAILABLE
    # an end entity used as an issuer is not a CA
    leaf_issued = pki.issue_host(
        host, s["host"][1], pki.generate_key().public_key(), cn="x", now=NOW
    )
    assert reason(leaf_issued, intermediates=[s["im"][0], host]) is AuthReason.NOT_A_CA
    # pathLen 0 of the intermediate: one more CA below it is too many
    sub_key = pki.generate_key()
    sub = pki.make_ca(sub_key, "CN=Sub Sub CA", now=NOW, issuer_cert=im, issuer_key=im_key)
    deep = pki.issue_host(sub, sub_key, pki.generate_key().public_key(), cn="deep", now=NOW)
    assert reason(deep, intermediates=[im, sub]) is AuthReason.PATH_LEN_EXCEEDED
    # signature by another key with the right issuer name
    forged = pki.issue_host(im, s["other"][1], pki.generate_key().public_key(), cn="f", now=NOW)
    assert reason(forged) is AuthReason.BAD_CERT_SIGNATURE


def test_expired_intermediate_named() -> None:
    s = pki_set()
    ca, ca_key = s["ca"]
    old_key = pki.generate_key()
    old = pki.make_ca(
        old_key,
        "CN=Old CA",
        now=NOW - dt.timedelta(days=400),
        days=30,
        issuer_cert=ca,
        issuer_key=ca_key,
    )
    leaf = pki.issue_host(
        old, old_key, pki.generate_key().public_key(), cn="o", now=NOW - dt.timedelta(days=1)
    )
    with pytest.raises(AuthError) as ei:
        validate(leaf, intermediates=[old])
    assert ei.value.reason is AuthReason.EXPIRED and "Old CA" in str(ei.value)


def test_rsa_pss_ca(tmp_path: object) -> None:
    key = pki.generate_key("rsa2048")
    ca = pki.make_ca(key, "CN=PSS CA", now=NOW, pss=True)
    leaf = pki.issue_host(ca, key, pki.generate_key().public_key(), cn="p", now=NOW, pss=True)
    assert validate_chain(leaf, anchors=[ca], now=NOW).anchor == ca


# --- CERT / CERTREQ --------------------------------------------------------------------


def test_cert_payloads() -> None:
    s = pki_set()
    host, im = s["host"][0], s["im"][0]
    enc, data = cert_payload(host)
    assert enc == CertEncoding.X509_SIGNATURE and parse_cert_payload(enc, data) == host
    creds = parse_cert_payloads([cert_payload(host), cert_payload(im)])
    assert creds is not None and creds.certificate == host and creds.intermediates == (im,)
    enc, data = raw_public_key_payload(s["host"][1].public_key())
    assert enc == 15
    creds = parse_cert_payloads([(enc, data)])
    assert creds is not None and creds.certificate is None
    assert parse_cert_payloads([]) is None
    for bad_enc in (12, 13, 1, 200):
        with pytest.raises(AuthError) as ei:
            parse_cert_payload(bad_enc, b"http://x")
        assert ei.value.reason is AuthReason.UNSUPPORTED_CERT_ENCODING
    with pytest.raises(AuthError, match="Hash and URL"):
        parse_cert_payload(12, b"")
    with pytest.raises(AuthError):
        parse_cert_payloads([cert_payload(host), raw_public_key_payload(s["host"][1].public_key())])


def test_certreq_and_chain_choice() -> None:
    s = pki_set()
    ca, im, host = s["ca"][0], s["im"][0], s["host"][0]
    data = build_certreq([ca, s["other"][0], ca])
    assert len(data) == 40
    hashes = parse_certreq(data)
    spki = ca.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert hashes[0] == __import__("hashlib").sha1(spki).digest() == spki_sha1(ca)
    assert parse_certreq(b"") == []
    with pytest.raises(AuthError) as ei:
        parse_certreq(b"x" * 21)
    assert ei.value.reason is AuthReason.MALFORMED_CERTREQ
    mine = LocalChain(host, (im,), ca)
    other = LocalChain(s["other"][0])
    assert select_chain([other, mine], hashes) is mine
    assert select_chain([other, mine], [spki_sha1(im)]) is mine
    assert select_chain([other, mine], [b"\x00" * 20]) is None
    assert select_chain([other, mine], None) is other
    assert certs_to_send(mine, [spki_sha1(ca)]) == [host, im]
    assert certs_to_send(mine, [spki_sha1(im)]) == [host]
    assert certs_to_send(mine, None) == [host, im]


# --- identities ----------------------------------------------------------------------


def test_id_binding() -> None:
    host = pki_set()["host"][0]
    for text in (
        "moon.example.net",
        "MOON.Example.NET",
        "moon@example.net",
        "192.0.2.1",
        "2001:db8::1",
        "CN=moon.example.net,O=Example",
    ):
        ident = IdPayload.from_string(text)
        assert id_matches_certificate(ident, host), text
        check_id_binding(ident, host)
    # RFC 4514 strings list the RDNs reversed: this one is another DN (order matters)
    for text in (
        "sun.example.net",
        "other@example.net",
        "192.0.2.2",
        "O=Example,CN=moon.example.net",
        "keyid:#00112233",
    ):
        ident = IdPayload.from_string(text)
        assert not id_matches_certificate(ident, host), text
        with pytest.raises(AuthError) as ei:
            check_id_binding(ident, host)
        assert ei.value.reason is AuthReason.ID_MISMATCH
    assert id_matches_certificate(IdPayload(IdType.ID_KEY_ID, spki_sha1(host)), host)
    assert not id_matches_certificate(IdPayload(IdType.ID_DER_ASN1_DN, b"\x30\x05junk"), host)


def test_dn_canonical_comparison() -> None:
    a = x509.Name(
        [
            x509.NameAttribute(x509.NameOID.COUNTRY_NAME, "CH"),
            x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, "strongSwan  Project"),
            x509.NameAttribute(x509.NameOID.COMMON_NAME, " Moon "),
        ]
    ).public_bytes()
    b = x509.Name(
        [
            x509.NameAttribute(x509.NameOID.COUNTRY_NAME, "ch"),
            x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, "STRONGSWAN project"),
            x509.NameAttribute(x509.NameOID.COMMON_NAME, "moon"),
        ]
    ).public_bytes()
    assert a != b and dn_equal(a, b)
    reordered = x509.Name(
        list(reversed(list(x509.Name.from_rfc4514_string("CN=moon,O=strongSwan Project,C=CH"))))
    ).public_bytes()
    assert reordered != a and not dn_equal(a, reordered)
    assert not dn_equal(a, b"garbage")


@pytest.mark.parametrize(
    ("pattern", "ident", "expected"),
    [
        ("%any", "anything.example", True),
        ("*.example.net", "moon.example.net", True),
        ("*.example.net", "a.b.example.net", True),
        ("*.example.net", "example.net", False),
        ("*.example.net", "moon.example.org", False),
        ("*.example.net", "moon@example.net", False),
        ("*@example.net", "carol@example.net", True),
        ("*@example.net", "carol@example.org", False),
        ("*@example.net", "example.net", False),
        ("moon.example.net", "MOON.example.net", True),
        ("CN=*, O=Example", "O=Example,CN=moon", True),
        ("C=CH, O=Example, CN=*", "CN=moon,O=Example,C=CH", True),
        ("CN=*, O=Example", "O=Other,CN=moon", False),
        ("CN=*, O=Example", "O=Example,OU=x,CN=moon", False),
        ("cn=MOON,  o=example", "O=Example,CN=moon", True),
        ("10.0.0.0/8", "10.1.2.3", True),
        ("10.0.0.0/8", "11.1.2.3", False),
        ("192.0.2.1", "192.0.2.1", True),
        ("10.0.0.1-10.0.0.9", "10.0.0.5", True),
        ("2001:db8::/32", "2001:db8::7", True),
        ("fqdn:*.example.net", "moon.example.net", True),
        ("keyid:#0011", "keyid:#0011", True),
        ("keyid:#0011", "keyid:#0012", False),
        ("CN=((", "O=Example,CN=moon", False),
    ],
)
def test_id_patterns(pattern: str, ident: str, expected: bool) -> None:
    assert match_id_pattern(pattern, IdPayload.from_string(ident)) is expected


# --- garbage ----------------------------------------------------------------------------


def test_garbage_only_raises_auth_error() -> None:
    host = pki_set()["host"][0]
    der = host.public_bytes(serialization.Encoding.DER)
    blobs = [os.urandom(n) for n in (0, 1, 20, 100, 700)]
    blobs += [der[: len(der) // 2], der[:-1], b"\x30\x82\xff\xff" + der, b"-----BEGIN x"]
    for blob in blobs:
        for enc in (4, 15, 12):
            with pytest.raises(AuthError):
                parse_cert_payload(enc, blob)
        for fn in (load_certificate, load_crl, load_public_key, load_private_key):
            with pytest.raises(AuthError):
                fn(blob)
        with pytest.raises(KeyLoadError):
            load_private_key(blob, b"secret")
        with contextlib.suppress(AuthError):
            parse_certreq(blob)


def test_wrong_passphrase_that_decrypts_to_garbage_is_still_a_bad_passphrase() -> None:
    """About 1 in 128 wrong passphrases decrypt to octets with valid padding: OpenSSL
    then fails to parse a key instead of failing to decrypt.  Still BAD_PASSPHRASE."""
    k = ec.generate_private_key(ec.SECP256R1())
    S = serialization
    pem = k.private_bytes(S.Encoding.PEM, S.PrivateFormat.PKCS8, S.BestAvailableEncryption(b"x"))
    for n in range(3000):
        wrong = f"wrong-{n}".encode()
        try:
            S.load_pem_private_key(pem, wrong)
        except ValueError as e:
            if "decrypt" in str(e).lower() or "password" in str(e).lower():
                continue
            break  # garbage that decrypted: the case to check
    else:  # pragma: no cover - (127/128)**3000
        pytest.fail("no wrong passphrase decrypted to garbage")
    with pytest.raises(KeyLoadError) as ei:
        load_private_key(pem, wrong)
    assert ei.value.reason is AuthReason.BAD_PASSPHRASE


def test_key_loading_from_bytes() -> None:
    k = ec.generate_private_key(ec.SECP256R1())
    S = serialization
    for fmt in (S.PrivateFormat.PKCS8, S.PrivateFormat.TraditionalOpenSSL):
        for enc in (S.Encoding.PEM, S.Encoding.DER):
            data = k.private_bytes(enc, fmt, S.NoEncryption())
            assert load_private_key(data).private_numbers() == k.private_numbers()  # type: ignore[union-attr]
    enc_pem = k.private_bytes(
        S.Encoding.PEM, S.PrivateFormat.PKCS8, S.BestAvailableEncryption(b"pass")
    )
    assert load_private_key(enc_pem, "pass").public_key() == k.public_key()
    with pytest.raises(KeyLoadError) as ei:
        load_private_key(enc_pem)
    assert ei.value.reason is AuthReason.PASSPHRASE_REQUIRED
    with pytest.raises(KeyLoadError) as ei:
        load_private_key(enc_pem, b"wrong")
    assert ei.value.reason is AuthReason.BAD_PASSPHRASE
    # not a key at all: a passphrase does not make it a wrong passphrase
    for junk in (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", b"\x30\x03"):
        with pytest.raises(KeyLoadError) as ei:
            load_private_key(junk, b"pass")
        assert ei.value.reason is AuthReason.MALFORMED_KEY
    rsa_pem = pki.generate_key("rsa2048").private_bytes(
        S.Encoding.PEM, S.PrivateFormat.TraditionalOpenSSL, S.NoEncryption()
    )
    assert rsa_pem.startswith(b"-----BEGIN RSA PRIVATE KEY")
    load_private_key(rsa_pem)
    k224 = ec.generate_private_key(ec.SECP224R1())
    with pytest.raises(KeyLoadError) as ei:
        load_private_key(
            k224.private_bytes(S.Encoding.DER, S.PrivateFormat.PKCS8, S.NoEncryption())
        )
    assert ei.value.reason is AuthReason.UNSUPPORTED_KEY
    pub = k.public_key().public_bytes(S.Encoding.PEM, S.PublicFormat.SubjectPublicKeyInfo)
    assert load_public_key(pub) == k.public_key()
