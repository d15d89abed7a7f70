"""``pyipsec pki``: a CA, an intermediate and host certificates made in tmp_path and
fed through :mod:`pyipsec.auth.trust`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from pyipsec import pki
from pyipsec.auth.errors import AuthError, AuthReason
from pyipsec.auth.keys import load_certificate, load_crl, load_private_key
from pyipsec.auth.trust import validate_chain
from pyipsec.cli import main


def run(*argv: str) -> int:
    return main(["pki", *argv])


@pytest.mark.parametrize("ca_type", ["ed25519", "ecdsa-p384", "rsa3072"])
def test_ca_intermediate_host_and_crl(
    tmp_path: Path, ca_type: str, capsys: pytest.CaptureFixture[str]
) -> None:
    p = {
        n: str(tmp_path / n)
        for n in ("ca.pem", "ca.key", "im.pem", "im.key", "host.pem", "host.key", "crl.pem")
    }
    pss = ["--pss"] if ca_type.startswith("rsa") else []
    assert (
        run(
            "--gen-ca",
            "--type",
            ca_type,
            "--dn",
            "CN=Test Root,O=Example",
            "--out-cert",
            p["ca.pem"],
            "--out-key",
            p["ca.key"],
            *pss,
        )
        == 0
    )
    assert (
        run(
            "--gen-ca",
            "--type",
            "ecdsa-p256",
            "--dn",
            "CN=Test Sub,O=Example",
            "--ca-cert",
            p["ca.pem"],
            "--ca-key",
            p["ca.key"],
            "--path-len",
            "0",
            "--out-cert",
            p["im.pem"],
            "--out-key",
            p["im.key"],
            *pss,
        )
        == 0
    )
    assert (
        run(
            "--issue",
            "--type",
            "ed25519",
            "--cn",
            "moon.example.net",
            "--san",
            "moon.example.net",
            "--san",
            "email:moon@example.net",
            "--san",
            "192.0.2.1",
            "--flag",
            "serverAuth",
            "--flag",
            "clientAuth",
            "--ca-cert",
            p["im.pem"],
            "--ca-key",
            p["im.key"],
            "--out-cert",
            p["host.pem"],
            "--out-key",
            p["host.key"],
        )
        == 0
    )
    assert Path(p["host.key"]).stat().st_mode & 0o077 == 0
    ca = load_certificate(Path(p["ca.pem"]).read_bytes())
    im = load_certificate(Path(p["im.pem"]).read_bytes())
    host = load_certificate(Path(p["host.pem"]).read_bytes())
    load_private_key(Path(p["host.key"]).read_bytes())
    now = dt.datetime.now(dt.UTC)
    path = validate_chain(host, anchors=[ca], intermediates=[im], now=now)
    assert path.chain == (host, im, ca)

    assert run("--print", p["host.pem"]) == 0
    out = capsys.readouterr().out
    assert "CN=moon.example.net" in out and "192.0.2.1" in out and "moon@example.net" in out
    assert "CN=Test Sub, O=Example" in out and "validity:" in out

    assert (
        run(
            "--crl",
            "--ca-cert",
            p["im.pem"],
            "--ca-key",
            p["im.key"],
            "--revoke",
            hex(host.serial_number),
            "--out-crl",
            p["crl.pem"],
        )
        == 0
    )
    crl = load_crl(Path(p["crl.pem"]).read_bytes())
    with pytest.raises(AuthError) as ei:
        validate_chain(host, anchors=[ca], intermediates=[im], now=now, crls=[crl])
    assert ei.value.reason is AuthReason.REVOKED
    assert f"0x{host.serial_number:x}" in str(ei.value)


def test_errors_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        run(
            "--issue",
            "--cn",
            "x",
            "--out-cert",
            str(tmp_path / "c"),
            "--out-key",
            str(tmp_path / "k"),
        )
        == 1
    )
    assert "--ca-cert" in capsys.readouterr().out
    bad = tmp_path / "bad.pem"
    bad.write_bytes(b"not a certificate")
    assert run("--print", str(bad)) == 1
    with pytest.raises(SystemExit):
        run("--gen-ca", "--issue")


def test_private_file_is_0600_even_when_it_existed(tmp_path: Path) -> None:
    path = tmp_path / "host.key"
    path.write_bytes(b"old")
    path.chmod(0o644)
    pki.write_file(str(path), b"new", private=True)
    assert path.read_bytes() == b"new"
    assert path.stat().st_mode & 0o777 == 0o600
