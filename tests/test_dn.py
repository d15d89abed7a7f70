"""DN strings in strongSwan's convention (pyipsec.dn): RDNs in the order written, the
string types strongSwan picks, so an ID_DER_ASN1_DN identity (RFC 7296 §3.5) configured
as ``C=CH, O=Example, CN=moon`` is the same DER as the subject ``pki --dn`` writes."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from pyipsec import pki
from pyipsec.auth.certs import check_id_binding
from pyipsec.constants import IdType
from pyipsec.dn import name_from_string, name_to_string, split_dn
from pyipsec.ikev2.payloads import IdPayload

NOW = dt.datetime.now(dt.UTC)
DNS = [
    "C=CH, O=strongSwan Project, CN=moon.example.net",
    "C=DE, O=Müller GmbH, CN=carol, E=carol@example.net",
    "DC=net, DC=example, OU=VPN Users, CN=dave (laptop)",
]


def test_order_as_written_and_blanks_ignored() -> None:
    name = name_from_string("C=CH,  O=Example ,CN=moon")
    assert [a.oid for a in name] == [NameOID.COUNTRY_NAME, NameOID.ORGANIZATION_NAME,
                                     NameOID.COMMON_NAME]  # fmt: skip
    assert [a.value for a in name] == ["CH", "Example", "moon"]
    assert name_to_string(name) == "C=CH, O=Example, CN=moon"
    assert name_from_string(name_to_string(name)) == name


def test_escapes_multivalued_rdns_and_oids() -> None:
    assert split_dn(r"CN=a\, b+UID=7, 2.5.4.10=Ex") == [
        [("2.5.4.3", "a, b"), ("0.9.2342.19200300.100.1.1", "7")],
        [("2.5.4.10", "Ex")],
    ]
    for bad in ("", "CN", "XX=1", "CN=a, =b"):
        with pytest.raises(ValueError):
            name_from_string(bad)


def test_identity_from_string_binds_to_the_certificate_pki_made() -> None:
    key = pki.generate_key("ecdsa-p256")
    ca = pki.make_ca(key, "C=CH, O=Example, CN=Root", now=NOW)
    assert name_to_string(ca.subject) == "C=CH, O=Example, CN=Root"
    ident = IdPayload.from_string(DNS[0])
    assert ident.id_type == IdType.ID_DER_ASN1_DN
    # written order, not RFC 4514's (which reads the string last RDN first)
    assert x509.Name.from_rfc4514_string(DNS[0].replace(", ", ",")).public_bytes() != ident.data
    host_key = pki.generate_key("ecdsa-p256")
    cert = pki.issue_host(ca, key, host_key.public_key(), dn=DNS[0], now=NOW)
    check_id_binding(ident, cert)  # raises when the DER differs


@pytest.mark.skipif(shutil.which("pki") is None, reason="strongSwan's pki (strongswan-pki) missing")
@pytest.mark.parametrize("dn", DNS)
def test_same_der_as_strongswan_pki(dn: str, tmp_path: Path) -> None:
    key, cert = tmp_path / "k.der", tmp_path / "c.der"
    with key.open("wb") as f:
        subprocess.run(["pki", "--gen", "--type", "ecdsa", "--size", "256"], stdout=f,
                       stderr=subprocess.DEVNULL, check=True, timeout=30)  # fmt: skip
    with cert.open("wb") as f:
        subprocess.run(["pki", "--self", "--in", str(key), "--type", "ecdsa", "--dn", dn],
                       stdout=f, stderr=subprocess.DEVNULL, check=True, timeout=30)  # fmt: skip
    subject = x509.load_der_x509_certificate(cert.read_bytes()).subject
    assert subject.public_bytes() == name_from_string(dn).public_bytes()
    assert IdPayload.from_string(dn).data == subject.public_bytes()
