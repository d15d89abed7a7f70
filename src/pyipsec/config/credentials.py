"""Certificate and private-key FILES for the configuration loader (swanctl layout).

This is the I/O side of public-key authentication: it reads files and hands the
bytes to :mod:`pyipsec.auth.keys`; the IKE core only ever sees the resulting
objects (:class:`~pyipsec.config.model.LocalCredentials`,
:class:`~pyipsec.config.model.RemoteTrust`).

The directory layout is swanctl's (swanctl.conf(5), "swanctl directory"), relative
to the directory of the configuration file::

    x509/      our end-entity certificates      (connections.N.local.certs: candidates,
               chosen per peer by its CERTREQ, RFC 7296 §3.7)
    x509ca/    CA certificates: self-signed ones are the trust anchors of every
               connection with remote.auth = "pubkey" unless remote.cacerts names
               others; the rest are intermediates (for our chain and the peer's)
    x509crl/   CRLs (RFC 5280 §5), used for every connection that verifies a peer
    pubkey/    raw public keys (RFC 7670; local.pubkeys / remote.pubkeys)
    private/   private keys (PKCS#8, PKCS#1, SEC1; PEM or DER); the one whose public
               key matches the certificate (or local raw key) is used, unless
               local.key names one

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
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from ..auth.errors import AuthError, KeyLoadError
from ..auth.keys import load_certificates, load_crl, load_private_key, load_public_key
from ..auth.signatures import PrivateKey, PublicKey
from ..auth.trust import issued_by
from ..dn import name_to_string
from .model import LocalCredentials, RemoteTrust

__all__ = [
    "PRIVATE_DIR",
    "PUBKEY_DIR",
    "X509CA_DIR",
    "X509CRL_DIR",
    "X509_DIR",
    "CredentialFileError",
    "CredentialStore",
    "KeySecret",
    "read_credential_file",
    "spki_der",
]

log = logging.getLogger("pyipsec.cfg")

X509_DIR = "x509"
X509CA_DIR = "x509ca"
X509CRL_DIR = "x509crl"
PRIVATE_DIR = "private"
PUBKEY_DIR = "pubkey"

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


def spki_der(pub: CertificatePublicKeyTypes) -> bytes:
    """DER SubjectPublicKeyInfo (RFC 5280 §4.1.2.7): how a key matches a certificate."""
    return pub.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _self_signed(cert: x509.Certificate) -> bool:
    return issued_by(cert, cert)


def _is_ca(cert: x509.Certificate) -> bool:
    """basicConstraints cA (RFC 5280 §4.2.1.9): a CA certificate, not an end entity."""
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    except (x509.ExtensionNotFound, ValueError):
        return False
    return bc.value.ca


def _subject(cert: x509.Certificate) -> str:
    return name_to_string(cert.subject) or "(empty subject)"


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

    def local_credentials(
        self, loc: str, certs: Sequence[str], key: str | None
    ) -> LocalCredentials | None:
        """The first of :meth:`local_candidates` (None after an error)."""
        found = self.local_candidates(loc, certs, key)
        return found[0] if found else None

    def local_candidates(
        self, loc: str, certs: Sequence[str], key: str | None
    ) -> list[LocalCredentials] | None:
        """``local.certs``: our certificate candidates, each with its matching private
        key (``local.key``, else searched in ``private/``) and its chain.

        As swanctl: the certificate sent is chosen by the peer's CERTREQ (RFC 7296
        §3.7), the first one when no CA the peer names issued any.  ``certs[0]`` is
        always a candidate; a later CA certificate (basicConstraints cA) is an
        intermediate to send with the candidates it issued, a later end-entity
        certificate another candidate.  None after a (reported) error.
        """
        if not certs:
            self.report(
                f"{loc}.certs",
                'missing: local.auth = "pubkey" needs a certificate '
                '(hint: certs = ["left.pem"] in x509/)',
            )
            return None
        loaded = [self.certificate(f"{loc}.certs[{i}]", n) for i, n in enumerate(certs)]
        if any(c is None for c in loaded):
            return None
        all_certs = [c for c in loaded if c is not None]
        ees = [(0, all_certs[0])] + [
            (i, c) for i, c in enumerate(all_certs) if i > 0 and not _is_ca(c)
        ]
        listed = [c for i, c in enumerate(all_certs) if i > 0 and _is_ca(c)]
        explicit = self._explicit_key(loc, key) if key is not None else None
        if key is not None and explicit is None:
            return None
        if explicit is not None and not any(
            spki_der(explicit.public_key()) == spki_der(c.public_key()) for _, c in ees
        ):
            self.report(f"{loc}.key", f"{key}: does not match the certificate {certs[0]!r}")
            return None
        out: list[LocalCredentials] = []
        used: set[bytes] = set()
        for i, ee in ees:
            priv = self._key_for(spki_der(ee.public_key()), explicit)
            if priv is None:
                self._no_key(f"{loc}.certs[{i}]", self._path(X509_DIR, certs[i])[1])
                return None
            inter, anchor = self._chain_via(ee, listed)
            used.update(_der(c) for c in inter)
            out.append(LocalCredentials(priv, ee, inter, anchor))
        for i, c in enumerate(all_certs):
            if i > 0 and _is_ca(c) and _der(c) not in used:
                log.warning(
                    "%s.certs[%d]: CA certificate %r issued none of the certificates in"
                    " local.certs: not sent",
                    loc,
                    i,
                    _subject(c),
                )
        return out

    def _explicit_key(self, loc: str, key: str) -> PrivateKey | None:
        """``local.key``: relative to the configuration file, else to ``private/``."""
        path, display = self._path(".", key)
        display = key
        if not path.exists() and not os.path.isabs(key):
            path, display = self._path(PRIVATE_DIR, key)
        return self._load_key(f"{loc}.key", path, display, scanning=False)

    def _key_for(self, spki: bytes, explicit: PrivateKey | None) -> PrivateKey | None:
        """The private key for a public key (DER SPKI): ``explicit`` or from ``private/``."""
        if explicit is not None and spki_der(explicit.public_key()) == spki:
            return explicit
        keys = self.private_keys()
        return next((k.key for k in keys if spki_der(k.key.public_key()) == spki), None)

    def _no_key(self, loc: str, display: str, what: str = "certificate") -> None:
        hint = "; ".join(self._key_failures)
        self.report(
            loc,
            f"{display}: no private key matches the {what} (hint: put it into"
            f" {PRIVATE_DIR}/ or set local.key" + (f"; unusable: {hint}" if hint else "") + ")",
        )

    def _chain_via(
        self, ee: x509.Certificate, listed: Sequence[x509.Certificate]
    ) -> tuple[tuple[x509.Certificate, ...], x509.Certificate | None]:
        """Intermediates (issuer first) and root above ``ee``: the CA certificates of
        ``local.certs`` first, then ``x509ca/``."""
        pool = [*listed, *(c for _, c in self.ca_certs())]
        inter: list[x509.Certificate] = []
        cur = ee
        for _ in range(_MAX_CHAIN):
            if _self_signed(cur):
                return tuple(inter), (cur if cur is not ee else None)
            issuer = next((c for c in pool if issued_by(cur, c)), None)
            if issuer is None:
                return tuple(inter), None
            if _self_signed(issuer):
                return tuple(inter), issuer
            inter.append(issuer)
            cur = issuer
        return tuple(inter), None

    # ------------------------------------------------------------------ raw public keys

    def public_key(self, loc: str, name: str) -> PublicKey | None:
        """One raw public key file (RFC 7670): PEM/DER SubjectPublicKeyInfo or PKCS#1,
        relative to ``pubkey/`` (or absolute)."""
        path, display = self._path(PUBKEY_DIR, name)
        try:
            return load_public_key(read_credential_file(path))
        except CredentialFileError as e:
            self.report(loc, f"cannot read {display}: {e}")
        except AuthError as e:
            self.report(loc, f"{display}: not a public key ({e})")
        return None

    def local_raw_key(
        self, loc: str, pubkeys: Sequence[str], key: str | None
    ) -> LocalCredentials | None:
        """``local.pubkeys``: authenticate with a raw public key (RFC 7670), no
        certificate; the private key matching it (``local.key`` or ``private/``).  As
        swanctl, only the first key of the list is used."""
        pub = self.public_key(f"{loc}.pubkeys[0]", pubkeys[0])
        if pub is None:
            return None
        if len(pubkeys) > 1:
            log.warning("%s.pubkeys: only the first raw public key is used (as swanctl)", loc)
        explicit = self._explicit_key(loc, key) if key is not None else None
        if key is not None and explicit is None:
            return None
        if explicit is not None and spki_der(explicit.public_key()) != spki_der(pub):
            self.report(f"{loc}.key", f"{key}: does not match the public key {pubkeys[0]!r}")
            return None
        priv = self._key_for(spki_der(pub), explicit)
        if priv is None:
            self._no_key(f"{loc}.pubkeys[0]", self._path(PUBKEY_DIR, pubkeys[0])[1], "public key")
            return None
        return LocalCredentials(priv)

    def remote_raw_keys(self, loc: str, pubkeys: Sequence[str]) -> RemoteTrust | None:
        """``remote.pubkeys``: the peer must sign with one of these raw public keys
        (RFC 7670; pinned, no CA).  None after a (reported) error."""
        keys = [self.public_key(f"{loc}.pubkeys[{i}]", n) for i, n in enumerate(pubkeys)]
        if any(k is None for k in keys):
            return None
        spkis = tuple(dict.fromkeys(spki_der(k) for k in keys if k is not None))
        return RemoteTrust(raw_keys=spkis)

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
