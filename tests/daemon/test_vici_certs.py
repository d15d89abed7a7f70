"""``list-certs`` (``swanctl --list-certs``): what the daemon knows, once each, with
charon's types, flags, ``has_privkey`` and filters (vici_certs)."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pyipsec.config.model import ConnectionConfig, LocalCredentials, RemoteTrust
from pyipsec.daemon.control import ControlError
from pyipsec.daemon.vici_certs import CertInventory, list_cert_events, x509_flag
from pyipsec.daemon.vici_creds import ViciCredentials

from ..eap.pkiset import NOW, make_pki

DER = serialization.Encoding.DER


def _crl(issuer: x509.Certificate, key: Any) -> x509.CertificateRevocationList:
    return (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(NOW)
        .next_update(NOW + dt.timedelta(days=7))
        .sign(key, hashes.SHA256())
    )


def _raw_key() -> bytes:
    pub = ec.generate_private_key(ec.SECP256R1()).public_key()
    return pub.public_bytes(DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _inventory() -> tuple[CertInventory, dict[str, Any]]:
    """A gateway (its chain and key in one connection, the clients' CA and CRL in it
    too), a raw-key connection, and a VICI set holding the same CA again."""
    p = make_pki("Listing")
    crl = _crl(p.ca, p.ca_key)
    raw = _raw_key()
    gw = ConnectionConfig(
        "gw", local_auth="pubkey", remote_auth="pubkey", local_credentials=p.server,
        remote_trust=RemoteTrust(anchors=(p.ca,), crls=(crl,)),
    )  # fmt: skip
    rk = ConnectionConfig("rk", remote_auth="pubkey", remote_trust=RemoteTrust(raw_keys=(raw,)))
    creds = ViciCredentials()
    creds.ca_certs.append(p.ca)  # also in the connection: listed once
    creds.certs.append(p.client.certificate)  # type: ignore[arg-type]
    inv = CertInventory.of([gw, rk], creds)
    return inv, {"pki": p, "crl": crl, "raw": raw}


def _events(inv: CertInventory, **req: str) -> list[dict[str, Any]]:
    return list(list_cert_events(inv, {k: v.encode() for k, v in req.items()}))


def test_everything_once_in_charons_order() -> None:
    inv, x = _inventory()
    p = x["pki"]
    got = _events(inv)
    assert [(e["type"], e.get("flag")) for e in got] == [
        ("PUBKEY", None), ("X509", "NONE"), ("X509", "NONE"), ("X509", "CA"), ("X509_CRL", None),
    ]  # fmt: skip
    assert got[0]["data"] == x["raw"]
    by_der = {e["data"]: e for e in got}
    server = by_der[p.server.certificate.public_bytes(DER)]
    client = by_der[p.client.certificate.public_bytes(DER)]
    assert server.get("has_privkey") == "yes"  # the gateway's key is loaded
    assert "has_privkey" not in client  # only the client has its key
    assert by_der[p.ca.public_bytes(DER)]["flag"] == "CA"
    assert by_der[x["crl"].public_bytes(DER)]["type"] == "X509_CRL"


def test_type_and_flag_filters() -> None:
    inv, _ = _inventory()
    assert [e["flag"] for e in _events(inv, type="X509", flag="CA")] == ["CA"]
    assert [e["flag"] for e in _events(inv, type="X509", flag="NONE")] == ["NONE", "NONE"]
    assert _events(inv, type="X509", flag="OCSP") == []
    assert len(_events(inv, type="X509")) == 3
    assert [e["type"] for e in _events(inv, type="X509_CRL")] == ["X509_CRL"]
    assert [e["type"] for e in _events(inv, type="PUBKEY")] == ["PUBKEY"]
    assert _events(inv, type="X509_AC") == [] and _events(inv, type="OCSP_RESPONSE") == []
    # charon applies the flag only to X509: with type ANY every certificate is listed
    assert len(_events(inv, type="ANY", flag="CA")) == 5


def test_subject_filter_matches_as_a_peer_id_is_matched() -> None:
    inv, x = _inventory()
    p = x["pki"]
    got = _events(inv, subject="moon.example.net")  # a subjectAltName dNSName
    assert [e["data"] for e in got] == [p.server.certificate.public_bytes(DER)]
    got = _events(inv, subject="CN=Listing Root CA,O=Listing")  # a DN: the CA and its CRL
    assert [e["type"] for e in got] == ["X509", "X509_CRL"]
    keyid = hashlib.sha1(x["raw"]).hexdigest()
    got = _events(inv, subject=f"keyid:#{keyid}")  # a raw key by its key identifier
    assert [e["type"] for e in got] == ["PUBKEY"]
    assert _events(inv, subject="nobody.example.net") == []


@pytest.mark.parametrize(
    ("req", "why"),
    [({"type": "X509_BOGUS"}, "invalid certificate type"),
     ({"type": "X509", "flag": "ROOT"}, "invalid certificate flag"),
     ({"subject": "keyid:#zz"}, "invalid subject")],
)  # fmt: skip
def test_bad_filters_are_refused(req: dict[str, str], why: str) -> None:
    inv, _ = _inventory()
    with pytest.raises(ControlError, match=why):
        _events(inv, **req)


def test_flags() -> None:
    p = make_pki("Listing")
    assert x509_flag(p.ca) == "CA"
    assert x509_flag(p.server.certificate) == "NONE"  # type: ignore[arg-type]
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name.from_rfc4514_string("CN=responder")
    ocsp = (
        x509.CertificateBuilder().subject_name(name).issuer_name(p.ca.subject)
        .public_key(key.public_key()).serial_number(7)
        .not_valid_before(NOW).not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.OCSP_SIGNING]),
                       critical=False)
        .sign(p.ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )  # fmt: skip
    assert x509_flag(ocsp) == "OCSP"


def test_raw_key_of_our_own_is_listed_with_the_connection() -> None:
    """A connection authenticating with a raw public key (RFC 7670): our key is listed
    as PUBKEY."""
    key = ec.generate_private_key(ec.SECP256R1())
    conn = ConnectionConfig("raw", local_auth="pubkey", local_credentials=LocalCredentials(key))
    got = list(list_cert_events(CertInventory.of([conn], ViciCredentials()), {}))
    spki = key.public_key().public_bytes(DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert got == [{"type": "PUBKEY", "data": spki}]
