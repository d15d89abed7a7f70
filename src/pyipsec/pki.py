"""A small PKI tool (like strongSwan's ``pki``), on ``cryptography`` only.

Pure functions make keys, CA and host certificates and CRLs (``now`` injected);
:func:`run` is the ``pyipsec pki`` subcommand that reads and writes PEM files.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .auth.errors import AuthError
from .auth.keys import load_certificate, load_certificates, load_private_key
from .auth.signatures import PrivateKey
from .auth.trust import IPSEC_IKE_EKU
from .dn import name_from_string, name_to_string

__all__ = [
    "KEY_TYPES",
    "describe_certificate",
    "generate_key",
    "issue_host",
    "make_ca",
    "make_crl",
    "parse_san",
    "run",
]

KEY_TYPES = ("rsa3072", "rsa2048", "rsa4096", "ecdsa-p256", "ecdsa-p384", "ed25519")
FLAGS = {
    "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH,
    "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "ikeIntermediate": x509.ObjectIdentifier("1.3.6.1.5.5.8.2.2"),
    "ipsecIKE": IPSEC_IKE_EKU,
}


def generate_key(kind: str = "ecdsa-p256") -> PrivateKey:
    """A new private key: ``rsa3072`` (the default RSA size; usable for PKCS#1 v1.5
    and PSS), ``rsa2048``/``rsa4096``, ``ecdsa-p256``, ``ecdsa-p384``, ``ed25519``."""
    if kind.startswith("rsa"):
        return rsa.generate_private_key(65537, int(kind[3:] or 3072))
    if kind == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ecdsa-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown key type {kind!r} (one of {', '.join(KEY_TYPES)})")


def _sign_args(key: PrivateKey, pss: bool) -> dict[str, object]:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return {"algorithm": None}
    if isinstance(key, ec.EllipticCurvePrivateKey):
        h: hashes.HashAlgorithm = hashes.SHA384() if key.curve.key_size > 256 else hashes.SHA256()
        return {"algorithm": h}
    if isinstance(key, rsa.RSAPrivateKey):
        args: dict[str, object] = {"algorithm": hashes.SHA256()}
        if pss:
            args["rsa_padding"] = padding.PSS(padding.MGF1(hashes.SHA256()), 32)
        return args
    raise ValueError(f"cannot sign certificates with {type(key).__name__}")


def _name(dn: str) -> x509.Name:
    """A DN string in strongSwan's order (``C=CH, O=Example, CN=moon``: as written, the
    RDNs in DER order, like ``pki --dn``), :func:`pyipsec.dn.name_from_string`."""
    return name_from_string(dn)


def make_ca(
    key: PrivateKey,
    dn: str,
    *,
    now: dt.datetime,
    days: int = 3650,
    path_length: int | None = None,
    issuer_cert: x509.Certificate | None = None,
    issuer_key: PrivateKey | None = None,
    pss: bool = False,
    serial: int | None = None,
) -> x509.Certificate:
    """A CA certificate: self-signed, or an intermediate when ``issuer_cert`` and
    ``issuer_key`` are given (basicConstraints cA, keyUsage keyCertSign|cRLSign)."""
    subject = _name(dn)
    signer = issuer_key or key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject if issuer_cert is not None else subject)
        .public_key(key.public_key())
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    issuer_pub = issuer_cert.public_key() if issuer_cert is not None else key.public_key()
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_pub),  # type: ignore[arg-type]
        False,
    )
    return builder.sign(signer, **_sign_args(signer, pss))  # type: ignore[arg-type]


def parse_san(text: str) -> x509.GeneralName:
    """A subjectAltName from ``dns:NAME``, ``email:ADDR``, ``ip:ADDR`` or a bare
    value (an IP address, ``x@y`` an email, else a DNS name), like ``pki --san``."""
    kind, sep, value = text.partition(":")
    if sep and kind.lower() in ("dns", "email", "ip"):
        k = kind.lower()
    else:
        value = text
        try:
            ipaddress.ip_address(text)
            k = "ip"
        except ValueError:
            k = "email" if "@" in text else "dns"
    if k == "ip":
        return x509.IPAddress(ipaddress.ip_address(value))
    if k == "email":
        return x509.RFC822Name(value)
    return x509.DNSName(value)


def issue_host(
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    public_key: object,
    *,
    cn: str | None = None,
    dn: str | None = None,
    sans: Sequence[str] = (),
    now: dt.datetime,
    days: int = 730,
    flags: Sequence[str] = (),
    pss: bool = False,
    serial: int | None = None,
    not_before: dt.datetime | None = None,
) -> x509.Certificate:
    """A host (end-entity) certificate for ``public_key`` signed by the CA.

    Subject ``dn`` (RFC 4514) or ``CN=cn``; SANs as :func:`parse_san` (the CN is
    added as a SAN too when no SAN is given, as strongSwan's pki does); keyUsage
    digitalSignature; ``flags`` add EKUs (serverAuth, clientAuth, ikeIntermediate,
    ipsecIKE).
    """
    if dn is None:
        if cn is None:
            raise ValueError("a host certificate needs a CN or a DN")
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    else:
        subject = _name(dn)
    names = [parse_san(s) for s in sans] or ([parse_san(cn)] if cn else [])
    start = not_before or now - dt.timedelta(minutes=5)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            False,
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), False)
    if flags:
        builder = builder.add_extension(x509.ExtendedKeyUsage([FLAGS[f] for f in flags]), False)
    return builder.sign(ca_key, **_sign_args(ca_key, pss))  # type: ignore[arg-type]


def make_crl(
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    revoked: Sequence[int],
    *,
    now: dt.datetime,
    days: int = 15,
    pss: bool = False,
) -> x509.CertificateRevocationList:
    """A CRL of the CA listing ``revoked`` serial numbers, valid for ``days``, with the
    authorityKeyIdentifier and cRLNumber every CRL must have (RFC 5280 §5.2.1, §5.2.3;
    strongSwan finds a CA's CRLs by that key identifier)."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now)
        .next_update(now + dt.timedelta(days=days))
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_cert.public_key()  # type: ignore[arg-type]
            ),
            critical=False,
        )
        .add_extension(x509.CRLNumber(int(now.timestamp())), critical=False)
    )
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
        )
    return builder.sign(ca_key, **_sign_args(ca_key, pss))  # type: ignore[arg-type]


def describe_certificate(cert: x509.Certificate) -> str:
    """Subject, issuer, serial, SANs, validity and key of a certificate (``--print``)."""
    try:
        sans = ", ".join(
            str(n.value)
            for n in cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        )
    except x509.ExtensionNotFound:
        sans = "-"
    key = cert.public_key()
    size = getattr(key, "key_size", None)
    key_desc = type(key).__name__.replace("PublicKey", "").lstrip("_") + (
        f" {size}" if size else ""
    )
    return "\n".join(
        [
            f"subject:  {name_to_string(cert.subject)}",
            f"issuer:   {name_to_string(cert.issuer)}",
            f"serial:   0x{cert.serial_number:x}",
            f"altNames: {sans}",
            f"validity: {cert.not_valid_before_utc.isoformat()}"
            f" .. {cert.not_valid_after_utc.isoformat()}",
            f"pubkey:   {key_desc}",
        ]
    )


# --- the CLI (file I/O happens here only) ---------------------------------------------


def write_file(path: str, data: bytes, private: bool = False) -> None:
    """Write ``data`` to ``path``; ``private``: mode 0600, also when the file existed
    (O_CREAT's mode applies only to a new file)."""
    p = Path(path)
    if private:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(data)
    else:
        p.write_bytes(data)


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _load_ca(args: argparse.Namespace) -> tuple[x509.Certificate, PrivateKey]:
    if not args.ca_cert or not args.ca_key:
        raise ValueError("--ca-cert and --ca-key are needed")
    return (
        load_certificate(Path(args.ca_cert).read_bytes()),
        load_private_key(Path(args.ca_key).read_bytes()),
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``pyipsec pki``."""
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument(
        "--gen-ca",
        action="store_true",
        help="make a CA (self-signed or intermediate with --ca-cert/--ca-key)",
    )
    mode.add_argument("--issue", action="store_true", help="issue a host certificate")
    mode.add_argument("--crl", action="store_true", help="make a CRL (with --revoke)")
    mode.add_argument("--print", metavar="CERT", help="show a certificate")
    p.add_argument("--type", default="ecdsa-p256", choices=KEY_TYPES, help="new key type")
    p.add_argument("--dn", help="subject DN, RFC 4514 (CN=moon,O=Example)")
    p.add_argument("--cn", help="subject common name of a host certificate")
    p.add_argument(
        "--san",
        action="append",
        default=[],
        help="subjectAltName: dns:/email:/ip: or a bare value (repeatable)",
    )
    p.add_argument(
        "--flag",
        action="append",
        default=[],
        choices=sorted(FLAGS),
        help="extendedKeyUsage of a host certificate (repeatable)",
    )
    p.add_argument("--ca-cert", help="issuing CA certificate (PEM)")
    p.add_argument("--ca-key", help="issuing CA private key (PEM)")
    p.add_argument("--in-key", help="use this private key instead of generating one")
    p.add_argument("--path-len", type=int, help="pathLenConstraint of a CA")
    p.add_argument("--days", type=int, help="lifetime in days")
    p.add_argument("--pss", action="store_true", help="sign with RSASSA-PSS (RSA CA keys)")
    p.add_argument(
        "--revoke",
        action="append",
        default=[],
        help="serial to revoke (hex 0x.. or decimal; repeatable)",
    )
    p.add_argument("--out-cert", help="write the certificate here (PEM)")
    p.add_argument("--out-key", help="write the new private key here (PEM, mode 0600)")
    p.add_argument("--out-crl", help="write the CRL here (PEM)")


def run(args: argparse.Namespace, now: dt.datetime | None = None) -> int:
    """Run ``pyipsec pki`` with parsed ``args``; 0 on success, 1 with a message."""
    now = now or dt.datetime.now(dt.UTC)
    try:
        if args.print:
            for cert in load_certificates(Path(args.print).read_bytes()):
                print(describe_certificate(cert))
            return 0
        if args.crl:
            ca_cert, ca_key = _load_ca(args)
            serials = [int(s, 0) for s in args.revoke]
            crl = make_crl(ca_cert, ca_key, serials, now=now, days=args.days or 15, pss=args.pss)
            if not args.out_crl:
                raise ValueError("--out-crl is needed")
            write_file(args.out_crl, crl.public_bytes(serialization.Encoding.PEM))
            return 0
        if not args.out_cert:
            raise ValueError("--out-cert is needed")
        if args.in_key:
            key = load_private_key(Path(args.in_key).read_bytes())
        else:
            if not args.out_key:
                raise ValueError("--out-key is needed for a new key (or give --in-key)")
            key = generate_key(args.type)
        if args.gen_ca:
            issuer_cert = issuer_key = None
            if args.ca_cert or args.ca_key:
                issuer_cert, issuer_key = _load_ca(args)
            cert = make_ca(
                key,
                args.dn or "CN=pyipsec CA",
                now=now,
                days=args.days or 3650,
                path_length=args.path_len,
                issuer_cert=issuer_cert,
                issuer_key=issuer_key,
                pss=args.pss,
            )
        else:
            ca_cert, ca_key = _load_ca(args)
            cert = issue_host(
                ca_cert,
                ca_key,
                key.public_key(),
                cn=args.cn,
                dn=args.dn,
                sans=args.san,
                now=now,
                days=args.days or 730,
                flags=args.flag,
                pss=args.pss,
            )
        if not args.in_key:
            write_file(args.out_key, key_pem(key), private=True)
        write_file(args.out_cert, cert_pem(cert))
        return 0
    except (AuthError, ValueError, OSError) as e:
        print(f"pyipsec pki: {e}")
        return 1
