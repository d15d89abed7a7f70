"""Our EAP peer against FreeRADIUS's EAP server (an independent implementation):
EAP-MD5, EAP-MSCHAPv2 (reached by a Nak of FreeRADIUS's default MD5) and EAP-TLS
with TLS 1.2 and 1.3, carried over RADIUS on loopback.  The MSK of our peer must
equal MS-MPPE-Recv-Key | MS-MPPE-Send-Key from the Access-Accept (RFC 2548, the
keys FreeRADIUS and strongSwan's eap-radius build the MSK from).

Skipped without the ``freeradius`` binary (Debian package freeradius).  The server
runs in the foreground (-X) on 127.0.0.1 with a configuration written to a
temporary directory, and is stopped by its PID."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from pyipsec.eap.base import Outcome
from pyipsec.eap.factory import peer_session
from pyipsec.eap.packet import EapType, identity_response, parse, request
from pyipsec.eap.settings import EapMethod, EapPeerSettings

from .helpers import make_rng
from .pkiset import NOW, Pki, make_pki
from .radius_min import (
    ACCESS_ACCEPT,
    ACCESS_CHALLENGE,
    ACCESS_REJECT,
    MS_MPPE_RECV_KEY,
    MS_MPPE_SEND_KEY,
    RadiusClient,
)

pytestmark = pytest.mark.skipif(shutil.which("freeradius") is None, reason="no freeradius")

SECRET = b"testing123"

CONFIG = """
prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
logdir = {dir}
raddbdir = {dir}
confdir = {dir}
run_dir = {dir}
libdir = /usr/lib/freeradius
pidfile = {dir}/radiusd.pid
name = radiusd
max_request_time = 30
cleanup_delay = 5
max_requests = 1024
hostname_lookups = no
log {{
    destination = stdout
}}
security {{
    allow_core_dumps = no
    max_attributes = 200
    reject_delay = 0
    status_server = no
}}
client localhost {{
    ipaddr = 127.0.0.1
    secret = {secret}
}}
modules {{
    files {{
        filename = {dir}/users
    }}
    mschap {{
    }}
    eap {{
        default_eap_type = md5
        timer_expire = 60
        max_sessions = 64
        md5 {{
        }}
        mschapv2 {{
        }}
        tls-config tls-common {{
            private_key_file = {dir}/server.key
            certificate_file = {dir}/server.pem
            ca_file = {dir}/ca.pem
            tls_min_version = "1.2"
            tls_max_version = "1.3"
            fragment_size = 1024
        }}
        tls {{
            tls = tls-common
        }}
    }}
}}
server default {{
    listen {{
        type = auth
        ipaddr = 127.0.0.1
        port = {port}
    }}
    authorize {{
        files
        mschap
        eap {{
            ok = return
        }}
    }}
    authenticate {{
        Auth-Type MS-CHAP {{
            mschap
        }}
        eap
    }}
}}
"""


@dataclass(frozen=True)
class Radius:
    port: int
    pki: Pki


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_config(where: Path, port: int, p: Pki) -> None:
    pem = serialization.Encoding.PEM
    assert p.server.certificate is not None
    (where / "server.pem").write_bytes(p.server.certificate.public_bytes(pem))
    (where / "server.key").write_bytes(
        p.server.private_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    (where / "ca.pem").write_bytes(p.ca.public_bytes(pem))
    (where / "users").write_text('carol Cleartext-Password := "carol-pass"\n')
    (where / "radiusd.conf").write_text(
        CONFIG.format(dir=where, port=port, secret=SECRET.decode())
    )


@pytest.fixture(scope="module")
def radius(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Radius]:
    where = tmp_path_factory.mktemp("freeradius")
    where.chmod(0o700)
    port, p = _free_port(), make_pki("Radius")
    _write_config(where, port, p)
    log = (where / "radiusd.log").open("wb")
    proc = subprocess.Popen(
        ["freeradius", "-X", "-d", str(where)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 15
        while b"Ready to process requests" not in (where / "radiusd.log").read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("freeradius did not start:\n" + (where / "radiusd.log").read_text())
            time.sleep(0.05)
        yield Radius(port, p)
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def authenticate(radius: Radius, settings: EapPeerSettings) -> tuple[Outcome, str, bytes, bytes]:
    """Run our peer through FreeRADIUS: (outcome, reason, our MSK, RADIUS MSK)."""
    peer = peer_session(settings, make_rng(b"peer"))
    client = RadiusClient(radius.port, SECRET, settings.identity)
    try:
        eap = peer.process(request(0, EapType.IDENTITY)).packet
        assert eap == identity_response(0, settings.identity)
        for _ in range(100):
            assert eap is not None
            answer = client.send(eap)
            step = peer.process(answer.eap)
            if answer.code != ACCESS_CHALLENGE:
                assert answer.code in (ACCESS_ACCEPT, ACCESS_REJECT)
                keys = answer.keys.get(MS_MPPE_RECV_KEY, b"") + answer.keys.get(
                    MS_MPPE_SEND_KEY, b""
                )
                return step.outcome, step.reason, step.msk, keys
            assert step.outcome is Outcome.CONTINUE, step.reason
            eap = step.packet
        raise AssertionError("no end")
    finally:
        client.close()


def test_md5(radius: Radius) -> None:
    settings = EapPeerSettings(b"carol", b"carol-pass", methods=(EapMethod.MD5,))
    outcome, reason, _msk, _ = authenticate(radius, settings)
    assert outcome is Outcome.SUCCESS, reason


def test_mschapv2_after_a_nak(radius: Radius) -> None:
    settings = EapPeerSettings(b"carol", b"carol-pass", methods=(EapMethod.MSCHAPV2,))
    outcome, reason, msk, keys = authenticate(radius, settings)
    assert outcome is Outcome.SUCCESS, reason
    assert len(keys) == 32 and msk == keys + bytes(32)


def test_mschapv2_wrong_password(radius: Radius) -> None:
    settings = EapPeerSettings(b"carol", b"wrong", methods=(EapMethod.MSCHAPV2,))
    outcome, reason, _msk, _ = authenticate(radius, settings)
    # FreeRADIUS (without send_error) rejects with a bare EAP-Failure
    assert outcome is Outcome.FAILURE
    assert "EAP-Failure" in reason


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_tls(radius: Radius, version: str) -> None:
    p = radius.pki
    settings = EapPeerSettings(
        b"carol@example.net",
        methods=(EapMethod.TLS,),
        tls_credentials=p.client,
        tls_trust=p.trust,
        when=NOW,
        tls_server_name="moon.example.net",
        tls_max_version=version,
    )
    outcome, reason, msk, keys = authenticate(radius, settings)
    assert outcome is Outcome.SUCCESS, reason
    assert len(msk) == 64 and msk == keys


def test_tls_small_fragments(radius: Radius) -> None:
    p = radius.pki
    settings = EapPeerSettings(
        b"carol@example.net", methods=(EapMethod.TLS,), tls_credentials=p.client,
        tls_trust=p.trust, when=NOW, tls_fragment_size=200,
    )
    outcome, reason, msk, keys = authenticate(radius, settings)
    assert outcome is Outcome.SUCCESS, reason
    assert msk == keys


def test_tls_untrusted_server(radius: Radius) -> None:
    other = make_pki("Other")
    settings = EapPeerSettings(
        b"carol@example.net", methods=(EapMethod.TLS,), tls_credentials=radius.pki.client,
        tls_trust=other.trust, when=NOW,
    )
    with pytest.raises(AssertionError, match="server certificate not accepted"):
        authenticate(radius, settings)
    assert parse(identity_response(0, b"x")).eap_type == EapType.IDENTITY
