"""Certificate and private-key FILES for the configuration loader (swanctl layout).

This is the I/O side of public-key authentication: it reads files and hands the
bytes to :mod:`pyipsec.auth.keys`; the IKE core only ever sees the resulting
objects (:class:`~pyipsec.config.model.LocalCredentials`,
:class:`~pyipsec.config.model.RemoteTrust`).

The directory layout is swanctl's (swanctl.conf(5), "swanctl directory"), relative
to the directory of the configuration file::

    x509/      our end-entity certificates      (connections.N.local.certs)
    x509ca/    CA certificates: self-signed ones are the trust anchors of every
               connection with remote.auth = "pubkey" unless remote.cacerts names
               others; the rest are intermediates (for our chain and the peer's)
    x509crl/   CRLs (RFC 5280 §5), used for every connection that verifies a peer
    private/   private keys (PKCS#8, PKCS#1, SEC1; PEM or DER); the one whose public
               key matches the certificate is used, unless local.key names one

An encrypted key gets its passphrase from ``[secrets.private-NAME]`` with
``file = "left.key"`` (relative to ``private/``) and ``secret = "..."``, as in
swanctl's ``secrets.private<suffix>``.  A private key file readable or writable by
group/other is refused (like the PSK ``secrets_file``).  Every problem is reported
through ``report(location, message)`` and loading continues, so the loader can list
them all; files are read once per configuration load.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from ..auth.errors import AuthError, KeyLoadError
from ..auth.keys import load_certificates, load_crl, load_private_key
from ..auth.signatures import PrivateKey
from .model import LocalCredentials, RemoteTrust

__all__ = [
    "PRIVATE_DIR",
    "X509CA_DIR",
    "X509CRL_DIR",
    "X509_DIR",
    "CredentialFileError",
    "CredentialStore",
    "KeySecret",
    "read_credential_file",
]

log = logging.getLogger("pyipsec.cfg")

X509_DIR = "x509"
X509CA_DIR = "x509ca"
X509CRL_DIR = "x509crl"
PRIVATE_DIR = "private"

#: ``report(location, message)``: one configuration error
Report = Callable[[str, str], None]

_MAX_CHAIN = 8


class CredentialFileError(Exception):
    """A credential file cannot be used (unreadable, unsafe mode)."""


def read_credential_file(path: Path, *, private: bool = False) -> bytes:
    """The bytes of ``path``; with ``private`` refuse a file accessible by group/other.

    The mode checked is that of the file actually opened (no stat-then-open race).
    """
    try:
        with path.open("rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise CredentialFileError("not a regular file")
            if private and st.st_mode & 0o077:
                raise CredentialFileError(
                    f"private key file is accessible by group/other (mode "
                    f"{stat.S_IMODE(st.st_mode):04o}) (hint: chmod 600 {path})"
                )
            return f.read()
    except OSError as e:
        raise CredentialFileError(e.strerror or str(e)) from None


def _spki(pub: CertificatePublicKeyTypes) -> bytes:
    """DER SubjectPublicKeyInfo (RFC 5280 §4.1.2.7): how a key matches a certificate."""
    return pub.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """``issuer`` signed ``cert`` (names chain and the signature verifies)."""
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):  # unsupported algorithms too
        return False
    return True


def _self_signed(cert: x509.Certificate) -> bool:
    return _issued_by(cert, cert)


def _subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "(empty subject)"


@dataclass(frozen=True, slots=True)
class KeySecret:
    """``[secrets.private-NAME]``: a key ``file`` (relative to ``private/``) and its
    passphrase (None: the key is not encrypted); ``loc`` is the table's location."""

    loc: str
    file: str
    passphrase: bytes | None = field(default=None, repr=False)


@dataclass
class _Key:
    display: str
    key: PrivateKey = field(repr=False)


@dataclass
class CredentialStore:
    """The swanctl credential directories below ``base_dir``, read on first use.

    ``now`` is the wall-clock time for the expiry warnings (default: the current
    time).  Problems go to ``report``; expired or not yet valid certificates are
    logged as warnings (``pyipsec.cfg``): they load, the peer will refuse them.
    """

    base_dir: Path
    report: Report
    key_secrets: Sequence[KeySecret] = ()
    now: dt.datetime | None = None
    _cas: list[tuple[str, x509.Certificate]] | None = None
    _crls: list[x509.CertificateRevocationList] | None = None
    _keys: list[_Key] | None = None
    _key_failures: list[str] = field(default_factory=list)
    _cert_cache: dict[str, x509.Certificate | None] = field(default_factory=dict)
    _warned: set[bytes] = field(default_factory=set)

    # ------------------------------------------------------------------ helpers

    def _path(self, subdir: str, name: str) -> tuple[Path, str]:
        """(path, display name) of ``name``: absolute, or relative to ``subdir``."""
        if os.path.isabs(name):
            return Path(name), name
        return self.base_dir / subdir / name, f"{subdir}/{name}"

    def _files(self, subdir: str) -> list[tuple[Path, str]]:
        d = self.base_dir / subdir
        try:
            names = sorted(os.listdir(d))
        except FileNotFoundError:
            return []
        except OSError as e:
            self.report(subdir, f"cannot list {d}: {e.strerror}")
            return []
        return [(d / n, f"{subdir}/{n}") for n in names if not n.startswith(".")]

    def _warn_validity(self, loc: str, cert: x509.Certificate) -> None:
        der = _der(cert)
        if der in self._warned:
            return
        self._warned.add(der)
        now = self.now or dt.datetime.now(dt.UTC)
        if now.tzinfo is None:
            now = now.replace(tzinfo=dt.UTC)
        if cert.not_valid_after_utc < now:
            log.warning(
                "%s: certificate %r expired on %s",
                loc,
                _subject(cert),
                cert.not_valid_after_utc.isoformat(),
            )
        elif cert.not_valid_before_utc > now:
            log.warning(
                "%s: certificate %r is not valid before %s",
                loc,
                _subject(cert),
                cert.not_valid_before_utc.isoformat(),
            )

    def _read_certs(self, loc: str, path: Path, display: str) -> list[x509.Certificate]:
        try:
            data = read_credential_file(path)
            return load_certificates(data)
        except CredentialFileError as e:
            self.report(loc, f"cannot read {display}: {e}")
        except AuthError as e:
            self.report(loc, f"{display}: not a certificate ({e})")
        return []

    # ------------------------------------------------------------------ directories

    def ca_certs(self) -> list[tuple[str, x509.Certificate]]:
        """Every certificate of ``x509ca/`` with its display name."""
        if self._cas is None:
            self._cas = []
            for path, display in self._files(X509CA_DIR):
                for cert in self._read_certs(display, path, display):
                    self._warn_validity(display, cert)
                    self._cas.append((display, cert))
        return self._cas

    def crls(self) -> list[x509.CertificateRevocationList]:
        """Every CRL of ``x509crl/``."""
        if self._crls is None:
            self._crls = []
            for path, display in self._files(X509CRL_DIR):
                try:
                    self._crls.append(load_crl(read_credential_file(path)))
                except CredentialFileError as e:
                    self.report(display, f"cannot read {display}: {e}")
                except AuthError as e:
                    self.report(display, f"{display}: not a CRL ({e})")
        return self._crls

    def _passphrase(self, path: Path) -> tuple[bytes | None, str]:
        for s in self.key_secrets:
            p, _ = self._path(PRIVATE_DIR, s.file)
            if os.path.abspath(p) == os.path.abspath(path):
                return s.passphrase, s.loc
        return None, ""

    def _load_key(self, loc: str, path: Path, display: str, *, scanning: bool) -> PrivateKey | None:
        try:
            data = read_credential_file(path, private=True)
        except CredentialFileError as e:
            self.report(loc, f"cannot read {display}: {e}")
            return None
        passphrase, secret_loc = self._passphrase(path)
        try:
            return load_private_key(data, passphrase)
        except KeyLoadError as e:
            if scanning and passphrase is None:
                # maybe not needed: only mentioned if no key matches a certificate
                self._key_failures.append(f"{display}: {e}")
            else:
                self.report(secret_loc or loc, f"{display}: {e}")
        return None

    def private_keys(self) -> list[_Key]:
        """The keys of ``private/`` and of every ``[secrets.private-*]`` file."""
        if self._keys is None:
            self._keys = []
            seen: set[str] = set()
            files = self._files(PRIVATE_DIR)
            for s in self.key_secrets:
                files.append(self._path(PRIVATE_DIR, s.file))
            for path, display in files:
                real = os.path.abspath(path)
                if real in seen:
                    continue
                seen.add(real)
                key = self._load_key(display, path, display, scanning=True)
                if key is not None:
                    self._keys.append(_Key(display, key))
        return self._keys

    # ------------------------------------------------------------------ connections

    def certificate(self, loc: str, name: str, subdir: str = X509_DIR) -> x509.Certificate | None:
        """One certificate file (relative to ``subdir``, or absolute)."""
        path, display = self._path(subdir, name)
        if display in self._cert_cache:
            return self._cert_cache[display]
        certs = self._read_certs(loc, path, display)
        cert: x509.Certificate | None = None
        if len(certs) > 1:
            self.report(loc, f"{display}: holds {len(certs)} certificates, expected one")
        elif certs:
            cert = certs[0]
            self._warn_validity(loc, cert)
        self._cert_cache[display] = cert
        return cert

    def _chain(
        self, ee: x509.Certificate
    ) -> tuple[tuple[x509.Certificate, ...], x509.Certificate | None]:
        """Intermediates (issuer first) and root from ``x509ca/`` above ``ee``."""
        inter: list[x509.Certificate] = []
        cur = ee
        for _ in range(_MAX_CHAIN):
            if _self_signed(cur):
                return tuple(inter), (cur if cur is not ee else None)
            issuer = next((c for _, c in self.ca_certs() if _issued_by(cur, c)), None)
            if issuer is None:
                return tuple(inter), None
            if _self_signed(issuer):
                return tuple(inter), issuer
            inter.append(issuer)
            cur = issuer
        return tuple(inter), None

    def local_credentials(
        self, loc: str, certs: Sequence[str], key: str | None
    ) -> LocalCredentials | None:
        """``local.certs`` (first the end entity, then intermediates to send) and the
        matching private key (``local.key``, else searched in ``private/``)."""
        if not certs:
            self.report(
                f"{loc}.certs",
                'missing: local.auth = "pubkey" needs a certificate '
                '(hint: certs = ["left.pem"] in x509/)',
            )
            return None
        loaded = [self.certificate(f"{loc}.certs[{i}]", n) for i, n in enumerate(certs)]
        ee = loaded[0]
        if ee is None or any(c is None for c in loaded):
            return None
        ee_spki = _spki(ee.public_key())
        priv: PrivateKey | None = None
        if key is not None:
            path, display = self._path(".", key)
            display = key
            if not path.exists() and not os.path.isabs(key):
                path, display = self._path(PRIVATE_DIR, key)
            priv = self._load_key(f"{loc}.key", path, display, scanning=False)
            if priv is None:
                return None
            if _spki(priv.public_key()) != ee_spki:
                self.report(f"{loc}.key", f"{display}: does not match the certificate {certs[0]!r}")
                return None
        else:
            priv = next(
                (k.key for k in self.private_keys() if _spki(k.key.public_key()) == ee_spki), None
            )
            if priv is None:
                hint = "; ".join(self._key_failures)
                self.report(
                    f"{loc}.certs[0]",
                    f"{self._path(X509_DIR, certs[0])[1]}: no private key matches the "
                    f"certificate (hint: put it into {PRIVATE_DIR}/ or set local.key"
                    + (f"; unusable: {hint}" if hint else "")
                    + ")",
                )
                return None
        sent = tuple(c for c in loaded[1:] if c is not None)
        found, anchor = self._chain(sent[-1] if sent else ee)
        return LocalCredentials(
            private_key=priv,
            certificate=ee,
            intermediates=sent or found,
            anchor=anchor,
        )

    def remote_trust(
        self, loc: str, cacerts: Sequence[str], strict_crl: bool, why: str = '"pubkey"'
    ) -> RemoteTrust | None:
        """Anchors (``remote.cacerts``, else the self-signed ``x509ca/`` certificates),
        the other ``x509ca/`` certificates as intermediates, every CRL.  ``why``: what
        needs them (for the error message)."""
        cas = self.ca_certs()
        if cacerts:
            anchors = [
                self.certificate(f"{loc}.cacerts[{i}]", n, X509CA_DIR)
                for i, n in enumerate(cacerts)
            ]
            if any(a is None for a in anchors):
                return None
            anchor_t = tuple(a for a in anchors if a is not None)
        else:
            anchor_t = tuple(c for _, c in cas if _self_signed(c))
            if not anchor_t:
                self.report(
                    f"{loc}.auth",
                    f"{why} needs a trust anchor (hint: put the CA certificate into "
                    f"{X509CA_DIR}/ or set remote.cacerts)",
                )
                return None
        anchor_ders = {_der(a) for a in anchor_t}
        inter = tuple(c for _, c in cas if not _self_signed(c) and _der(c) not in anchor_ders)
        return RemoteTrust(
            anchors=anchor_t,
            intermediates=inter,
            crls=tuple(self.crls()),
            strict_crl=strict_crl,
        )
