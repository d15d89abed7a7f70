"""Malformed certificates from a configuration, VICI ``load-cert``/``load-conn`` or a
peer's CERT payload (RFC 7296 §3.6) are refused with a clear error: cryptography
raises more than ValueError for them (found by tests/daemon/test_vici_load_fuzz.py)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pyipsec.auth.certs import parse_cert_payload
from pyipsec.auth.errors import AuthError
from pyipsec.auth.keys import load_certificates
from pyipsec.auth.trust import issued_by
from pyipsec.constants import CertEncoding
from pyipsec.pki import generate_key, make_ca

NOW = dt.datetime.now(dt.UTC)
ID_EC_PUBLIC_KEY = bytes.fromhex("06072a8648ce3d0201")
P256 = bytes.fromhex("06082a8648ce3d030107")
CN_PRINTABLE = b"\x06\x03U\x04\x03\x13"  # commonName as PrintableString, as pki writes it


def _ca_der() -> bytes:
    ca = make_ca(generate_key(), "CN=Broken CA", now=NOW)
    return ca.public_bytes(serialization.Encoding.DER)


def _swap(der: bytes, old: bytes, new: bytes, count: int = 1) -> bytes:
    assert der.count(old) >= count and len(old) == len(new)
    return der.replace(old, new, count)


#: a certificate mutation and what cryptography raised for it before the fix
BROKEN: dict[str, Callable[[bytes], bytes]] = {
    # KeyError: a Name attribute with an ASN.1 string tag cryptography does not map
    "unknown string tag in the issuer": lambda d: _swap(d, CN_PRINTABLE, CN_PRINTABLE[:-1] + b"\n"),
    # x509.InvalidVersion (not a ValueError)
    "version 17": lambda d: _swap(d, bytes.fromhex("a003020102"), bytes.fromhex("a003020110")),
    # UnsupportedAlgorithm when the key is used (the credential store, remote trust)
    "unknown key type": lambda d: _swap(d, ID_EC_PUBLIC_KEY, ID_EC_PUBLIC_KEY[:-1] + b"\x09"),
}


@pytest.mark.parametrize("mutation", list(BROKEN))
@pytest.mark.parametrize("pem", [False, True])
def test_broken_certificate_is_refused_on_loading(mutation: str, pem: bool) -> None:
    der = BROKEN[mutation](_ca_der())
    data = der
    if pem:
        import base64

        body = base64.encodebytes(der).decode()
        data = f"-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n".encode()
    with pytest.raises(AuthError, match="not a PEM/DER certificate"):
        load_certificates(data)


@pytest.mark.parametrize("mutation", list(BROKEN))
def test_broken_certificate_in_a_cert_payload(mutation: str) -> None:
    der = BROKEN[mutation](_ca_der())
    with pytest.raises(AuthError, match=r"malformed X\.509 certificate"):
        parse_cert_payload(CertEncoding.X509_SIGNATURE, der)


def test_unsupported_curve_is_not_an_issuer() -> None:
    """verify_directly_issued_by raises UnsupportedAlgorithm (not a ValueError) for an
    issuer key on an unknown curve: the certificate is just not issued by that CA."""
    der = _swap(_ca_der(), P256, P256[:-1] + b"\x09")
    cert = x509.load_der_x509_certificate(der)
    assert issued_by(cert, cert) is False
