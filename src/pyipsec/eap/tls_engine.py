"""The TLS engine of EAP-TLS: OpenSSL (pyOpenSSL) over memory BIOs, sans-I/O.

:class:`TlsEngine` takes the other side's TLS bytes, runs the handshake and gives
back the bytes to send; it never touches a socket.  OpenSSL checks the handshake
(signatures, Finished); the certificate path is validated afterwards by
:func:`pyipsec.auth.trust.validate_chain` against the configured anchors at the
injected wall-clock time (OpenSSL would use the system clock), with the same rules
as IKE certificates; OpenSSL's own verdict is ignored.  The server requires a
client certificate (``VERIFY_FAIL_IF_NO_PEER_CERT``).

Key material (RFC 5216 §2.3; RFC 9190 §2.3): TLS 1.2: MSK = the first 64 octets
of PRF(master_secret, "client EAP encryption", client.random || server.random),
which is the TLS exporter with that label and no context (RFC 5705 §4);
TLS 1.3: MSK = the first 64 of TLS-Exporter("EXPORTER_EAP_TLS_Key_Material",
Type-Code 0x0D, 128).  No session resumption: tickets and the session cache are off.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL

from ..auth.certs import id_matches_certificate
from ..auth.errors import AuthError
from ..auth.trust import validate_chain
from ..config.model import LocalCredentials, RemoteTrust
from ..dn import name_to_string
from ..ikev2.payloads import IdPayload

__all__ = ["TlsEngine", "TlsFailure", "check_identity", "check_peer_chain"]

_VERSIONS = {"1.2": SSL.TLS1_2_VERSION, "1.3": SSL.TLS1_3_VERSION}
TLS12_LABEL = b"client EAP encryption"
TLS13_LABEL = b"EXPORTER_EAP_TLS_Key_Material"
EAP_TLS_TYPE_CODE = b"\x0d"
MSK_LEN = 64
_DER = Encoding.DER

#: Receives NSS key log lines (``CLIENT_RANDOM ...``, ``EXPORTER_SECRET ...``).
KeyLogSink = Callable[[bytes], None]


class TlsFailure(Exception):
    """The TLS handshake failed (the message says why, from OpenSSL)."""


def _describe(error: SSL.Error) -> str:
    """OpenSSL's error queue as text (``reason; reason``)."""
    parts: list[str] = []
    for item in error.args[0] if error.args and isinstance(error.args[0], list) else ():
        if isinstance(item, tuple) and len(item) == 3:
            parts.append(str(item[2]))
    return "; ".join(parts) or type(error).__name__


def _accept(*_args: object) -> bool:
    """OpenSSL's verdict on the chain is ignored: :func:`check_peer_chain` decides."""
    return True


def _context(
    server: bool,
    credentials: LocalCredentials | None,
    min_version: str,
    max_version: str,
    keylog: KeyLogSink | None,
) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(_VERSIONS[min_version])
    ctx.set_max_proto_version(_VERSIONS[max_version])
    ctx.set_options(SSL.OP_NO_TICKET | SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION)
    if not server:
        # servers without RFC 5746 renegotiation_info (strongSwan 5.9's own TLS stack):
        # harmless here, renegotiation is refused altogether (OP_NO_RENEGOTIATION)
        ctx.set_options(SSL.OP_LEGACY_SERVER_CONNECT)
    ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    if credentials is not None and credentials.certificate is not None:
        ctx.use_certificate(credentials.certificate)
        ctx.use_privatekey(credentials.private_key)
        for cert in credentials.intermediates:
            ctx.add_extra_chain_cert(cert)
        ctx.check_privatekey()
    mode = SSL.VERIFY_PEER | (SSL.VERIFY_FAIL_IF_NO_PEER_CERT if server else 0)
    ctx.set_verify(mode, _accept)
    if keylog is not None:
        sink = keylog
        ctx.set_keylog_callback(lambda _conn, line: sink(line))
    return ctx


class TlsEngine:
    """One TLS connection, either role, over memory BIOs.  ``keylog`` receives the
    secrets as NSS key log lines (SSLKEYLOGFILE format, for Wireshark)."""

    def __init__(
        self,
        *,
        server: bool,
        credentials: LocalCredentials | None,
        min_version: str = "1.2",
        max_version: str = "1.3",
        keylog: KeyLogSink | None = None,
    ) -> None:
        try:
            ctx = _context(server, credentials, min_version, max_version, keylog)
            self._conn = SSL.Connection(ctx, None)
        except (SSL.Error, ValueError, TypeError) as e:
            raise TlsFailure(f"cannot set up TLS: {_error_text(e)}") from None
        if server:
            self._conn.set_accept_state()
        else:
            self._conn.set_connect_state()
        self.complete = False

    def handshake(self, incoming: bytes = b"") -> bool:
        """Feed the other side's bytes and go on with the handshake; True once it is
        complete.  Raises :class:`TlsFailure`."""
        if incoming:
            self._conn.bio_write(incoming)
        try:
            self._conn.do_handshake()
        except SSL.WantReadError:
            return False
        except SSL.Error as e:
            raise TlsFailure(_describe(e)) from None
        self.complete = True
        return True

    def read_application(self, incoming: bytes = b"") -> bytes:
        """Application data after the handshake (post-handshake messages such as
        NewSessionTicket are consumed by OpenSSL)."""
        if incoming:
            self._conn.bio_write(incoming)
        try:
            return _drain(self._conn.recv, 4096)
        except SSL.Error as e:
            raise TlsFailure(_describe(e)) from None

    def write_application(self, data: bytes) -> None:
        try:
            self._conn.send(data)
        except SSL.Error as e:
            raise TlsFailure(_describe(e)) from None

    def output(self) -> bytes:
        """Everything OpenSSL wants to send (records, alerts)."""
        return _drain(self._conn.bio_read, 65536)

    @property
    def version(self) -> str:
        """``"1.2"`` or ``"1.3"`` once negotiated."""
        return self._conn.get_protocol_version_name().removeprefix("TLSv")

    def peer_certificates(self) -> tuple[x509.Certificate | None, list[x509.Certificate]]:
        """(the other side's end-entity certificate, the other certificates it sent)."""
        leaf = self._conn.get_peer_certificate(as_cryptography=True)
        chain = self._conn.get_peer_cert_chain(as_cryptography=True) or []
        if leaf is not None:
            leaf_der = leaf.public_bytes(_DER)
            chain = [c for c in chain if c.public_bytes(_DER) != leaf_der]
        return leaf, chain

    def msk(self) -> bytes:
        """RFC 5216 §2.3 / RFC 9190 §2.3 (see the module docstring)."""
        try:
            if self.version == "1.3":
                material = self._conn.export_keying_material(TLS13_LABEL, 128, EAP_TLS_TYPE_CODE)
            else:
                material = self._conn.export_keying_material(TLS12_LABEL, 128)
        except SSL.Error as e:
            raise TlsFailure(f"no keying material: {_describe(e)}") from None
        return bytes(material[:MSK_LEN])


def _drain(read: Callable[[int], bytes], size: int) -> bytes:
    """All ``read`` gives (``size`` octets at a time) until OpenSSL wants more input."""
    out = b""
    while True:
        try:
            out += read(size)
        except SSL.WantReadError:
            return out


def _error_text(e: Exception) -> str:
    return _describe(e) if isinstance(e, SSL.Error) else str(e)


def check_peer_chain(
    engine: TlsEngine, trust: RemoteTrust | None, when: dt.datetime | None
) -> tuple[x509.Certificate | None, str]:
    """Validate the other side's certificate path; (its certificate, "") when valid,
    else (None or the certificate, why not)."""
    leaf, others = engine.peer_certificates()
    if leaf is None:
        return None, "no certificate from the other side"
    if trust is None or not trust.anchors:
        return leaf, "no trust anchors configured for EAP-TLS"
    if when is None:
        return leaf, "no wall-clock time to check the certificate validity with"
    try:
        validate_chain(
            leaf,
            anchors=trust.anchors,
            intermediates=[*trust.intermediates, *others],
            now=when,
            crls=trust.crls,
            strict_crl=trust.strict_crl,
        )
    except AuthError as e:
        return leaf, f"certificate not accepted: {e}"
    return leaf, ""


def check_identity(identity: str, cert: x509.Certificate) -> str:
    """"" when ``identity`` (an IKE-style identity string: a DN, an email address, a
    host name or an IP address) is a name of ``cert``, else why not."""
    try:
        # strongSwan writes DNs "C=CH, O=Example, CN=carol": RFC 4514 has no blanks
        text = re.sub(r",\s+", ",", identity) if "=" in identity else identity
        ident = IdPayload.from_string(text)
    except ValueError as e:
        return f"identity {identity!r} is not an identity a certificate can hold ({e})"
    if id_matches_certificate(ident, cert):
        return ""
    return f"identity {identity!r} is not in certificate {name_to_string(cert.subject)!r}"
