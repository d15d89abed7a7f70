"""Certificates for the EAP-TLS tests, made with pyipsec.pki (cached per process)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cache

from cryptography import x509

from pyipsec import pki
from pyipsec.auth.signatures import PrivateKey
from pyipsec.config.model import LocalCredentials, RemoteTrust

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Pki:
    ca: x509.Certificate
    ca_key: PrivateKey
    server: LocalCredentials
    client: LocalCredentials
    trust: RemoteTrust


def _host(ca: x509.Certificate, ca_key: PrivateKey, kind: str, **kw: object) -> LocalCredentials:
    key = pki.generate_key(kind)
    cert = pki.issue_host(ca, ca_key, key.public_key(), now=NOW, **kw)  # type: ignore[arg-type]
    return LocalCredentials(key, cert)


@cache
def make_pki(name: str = "Example", kind: str = "ecdsa-p256") -> Pki:
    """A CA, a server certificate (moon.example.net) and a client certificate
    (carol@example.net, with the DN CN=carol,O=<name>)."""
    ca_key = pki.generate_key(kind)
    ca = pki.make_ca(ca_key, f"CN={name} Root CA,O={name}", now=NOW)
    server = _host(ca, ca_key, kind, cn="moon.example.net", flags=["serverAuth"])
    client = _host(
        ca, ca_key, kind, dn=f"CN=carol,O={name}", sans=["carol@example.net"],
        flags=["clientAuth"],
    )
    return Pki(ca, ca_key, server, client, RemoteTrust(anchors=(ca,)))


@cache
def intermediate_pki() -> tuple[Pki, x509.Certificate]:
    """A client certificate issued by an intermediate CA (sent along in TLS)."""
    base = make_pki("Chain")
    sub_key = pki.generate_key("ecdsa-p256")
    sub = pki.make_ca(
        sub_key, "CN=Chain Sub CA,O=Chain", now=NOW, issuer_cert=base.ca, issuer_key=base.ca_key
    )
    client = _host(sub, sub_key, "ecdsa-p256", dn="CN=carol,O=Chain", sans=["carol@example.net"])
    chained = LocalCredentials(client.private_key, client.certificate, (sub,))
    return Pki(base.ca, base.ca_key, base.server, chained, base.trust), sub
