"""`pyipsec demo` on a fresh Debian machine: missing ip/nft/ping are installed with
apt-get (the demo runs as root), or named clearly when that is refused or impossible."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from pyipsec import demo
from pyipsec.dn import name_from_string


def _fake_system(
    monkeypatch: pytest.MonkeyPatch, present: set[str], *, apt_ok: bool = True
) -> list[list[str]]:
    calls: list[list[str]] = []

    def which(cmd: str) -> str | None:
        return f"/usr/bin/{cmd}" if cmd in present else None

    def run(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        calls.append(list(argv))
        if argv[:2] == ["apt-get", "install"] and apt_ok:
            present.update(t for t, pkg in demo.DEMO_TOOLS.items() if pkg in argv)
        return subprocess.CompletedProcess(argv, 0 if apt_ok else 100, "", "E: no luck")

    monkeypatch.setattr(demo.shutil, "which", which)
    monkeypatch.setattr(demo.subprocess, "run", run)
    return calls


def test_nothing_missing_installs_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_system(monkeypatch, {"ip", "nft", "ping", "apt-get"})
    assert demo.ensure_tools(True, print)
    assert calls == []


def test_missing_tools_are_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    lines: list[str] = []
    calls = _fake_system(monkeypatch, {"ip", "apt-get"})
    assert demo.ensure_tools(True, lines.append)
    assert calls[0][:2] == ["apt-get", "update"]
    assert calls[1][:2] == ["apt-get", "install"]
    assert {"nftables", "iputils-ping"} <= set(calls[1]) and "iproute2" not in calls[1]
    assert "installing what the demo needs" in lines[0]


def test_no_install_names_the_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    lines: list[str] = []
    calls = _fake_system(monkeypatch, {"ip", "apt-get"})
    assert not demo.ensure_tools(False, lines.append)
    assert calls == []
    assert "'nft'" in lines[0] and "nftables" in lines[0] and "iputils-ping" in lines[0]


def test_failed_install_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    lines: list[str] = []
    _fake_system(monkeypatch, {"ip", "apt-get"}, apt_ok=False)
    assert not demo.ensure_tools(True, lines.append)
    assert any("failed" in line and "E: no luck" in line for line in lines)


def test_without_apt_get(monkeypatch: pytest.MonkeyPatch) -> None:
    lines: list[str] = []
    calls = _fake_system(monkeypatch, {"ip"})
    assert not demo.ensure_tools(True, lines.append)
    assert calls == [] and "nftables" in lines[0]


# --- `pyipsec demo --auth pubkey`: configurations and certificates (no root needed) ---


def test_pubkey_configs_and_certificates() -> None:
    import stat

    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    from pyipsec.auth.certs import id_matches_certificate
    from pyipsec.auth.trust import validate_chain
    from pyipsec.config.loader import load_config
    from pyipsec.ikev2.tasks.common import parse_identity

    with demo.DemoLab(prefix="pyipsec-demo-test", say=lambda _: None, auth="pubkey") as lab:
        lab.write_configs()
        anchors: list[x509.Certificate] = []
        for side, other in (("left", "right"), ("right", "left")):
            base = lab.dirs[side]
            assert lab.configs[side] == base / f"{side}.toml"
            text = lab.configs[side].read_text()
            assert "[secrets" not in text and demo.PSK not in text
            for path in (lab.configs[side], base / "private" / f"{side}.key"):
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
            conn = load_config(lab.configs[side]).connections[0]  # the daemon's loader
            assert (conn.local_auth, conn.remote_auth) == ("pubkey", "pubkey")
            assert conn.local_id == demo.IDENTITIES[side]
            assert conn.remote_id == demo.IDENTITIES[other]
            creds, trust = conn.local_credentials, conn.remote_trust
            assert creds is not None and creds.certificate is not None and trust is not None
            cert = creds.certificate
            key = cert.public_key()
            assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
            # the configured identity is in the certificate (subjectAltName dNSName)
            assert id_matches_certificate(parse_identity(conn.local_id), cert)
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            assert san.get_values_for_type(x509.DNSName) == [demo.IDENTITIES[side]]
            # and it chains up to the anchor the other side trusts
            assert len(trust.anchors) == 1
            assert trust.anchors[0].subject == name_from_string(demo.DEMO_CA_DN)
            anchors.append(trust.anchors[0])
            validate_chain(cert, anchors=trust.anchors, now=cert.not_valid_before_utc)
        assert anchors[0] == anchors[1]  # one CA for both sides
        assert not list(lab.tmp.rglob("ca.key"))  # the CA key is never written
    assert not lab.tmp.exists()


def test_psk_configs_unchanged() -> None:
    from pyipsec.config.loader import load_config

    with demo.DemoLab(prefix="pyipsec-demo-test", say=lambda _: None) as lab:
        lab.write_configs()
        for side in ("left", "right"):
            assert lab.configs[side].read_text() == demo._config(side, lab.sockets[side])
            conn = load_config(lab.configs[side]).connections[0]
            assert conn.local_auth == conn.remote_auth == "psk"
            assert conn.psk == demo.PSK.encode()
        assert not (lab.dirs["left"] / "x509").exists()
    with pytest.raises(ValueError):
        demo.DemoLab(auth="cert")  # type: ignore[arg-type]
