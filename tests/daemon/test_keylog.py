"""Wireshark key-table lines and the key log files."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from pyipsec.daemon.keylog import KeyLog, esp_sa_line, ikev2_line
from pyipsec.ikev2.constants import EncrId, IntegId


def test_ikev2_line_gcm() -> None:
    line = ikev2_line(
        bytes.fromhex("0102030405060708"),
        bytes(8),
        EncrId.AES_GCM_16,
        256,
        None,
        b"\xaa" * 36,
        b"\xbb" * 36,
    )
    assert line == (
        "0102030405060708,0000000000000000,"
        + "aa" * 36
        + ","
        + "bb" * 36
        + ',"AES-GCM-256 with 16 octet ICV [RFC5282]",,,"NONE [RFC4306]"'
    )


def test_ikev2_line_cbc_and_unsupported() -> None:
    line = ikev2_line(
        b"\x01" * 8,
        b"\x02" * 8,
        EncrId.AES_CBC,
        128,
        IntegId.HMAC_SHA2_256_128,
        b"e" * 16,
        b"f" * 16,
        b"a" * 32,
        b"b" * 32,
    )
    assert '"AES-CBC-128 [RFC3602]"' in line and line.endswith('"HMAC_SHA2_256_128 [RFC4868]"')
    assert ikev2_line(b"\0" * 8, b"\0" * 8, EncrId.AES_CTR, 256, IntegId.HMAC_SHA1_96, b"", b"")
    assert "AES-GCM-128 with 8 octet ICV" in ikev2_line(
        b"\0" * 8, b"\0" * 8, EncrId.AES_GCM_8, None, None, b"", b""
    )
    assert "3DES" in ikev2_line(b"\0" * 8, b"\0" * 8, EncrId.TRIPLE_DES, None, 2, b"", b"")
    assert "NULL [RFC2410]" in ikev2_line(b"\0" * 8, b"\0" * 8, EncrId.NULL, None, 2, b"", b"")
    assert "CHACHA20" in ikev2_line(
        b"\0" * 8, b"\0" * 8, EncrId.CHACHA20_POLY1305, 256, None, b"", b""
    )
    assert ikev2_line(b"\0" * 8, b"\0" * 8, 999, None, None, b"", b"").startswith("# unsupported")


def test_esp_sa_line() -> None:
    line = esp_sa_line(
        "198.51.100.2", "192.0.2.2", 0xC1234567, EncrId.AES_GCM_16, b"\x11" * 36, None, b""
    )
    assert line == (
        '"IPv4","198.51.100.2","192.0.2.2","0xc1234567","AES-GCM with 16 octet ICV [RFC4106]",'
        '"0x' + "11" * 36 + '","NULL","0x"'
    )
    line = esp_sa_line("2001:db8::1", "", 1, EncrId.AES_CBC, b"k", IntegId.HMAC_SHA1_96, b"i")
    assert line.startswith('"IPv6","2001:db8::1","*","0x00000001","AES-CBC [RFC3602]"')
    assert '"HMAC-SHA-1-96 [RFC2404]","0x69"' in line
    assert esp_sa_line("a", "b", 1, EncrId.CHACHA20_POLY1305, b"", None, b"").startswith("#")


def test_keylog_files(tmp_path: Path) -> None:
    kl = KeyLog(tmp_path / "keys.log")
    kl.ike("i1")
    kl.esp("e1")
    kl.esp("e2")
    assert (tmp_path / "keys.log.ikev2_decryption_table").read_text() == "i1\n"
    assert (tmp_path / "keys.log.esp_sa").read_text() == "e1\ne2\n"
    assert stat.S_IMODE((tmp_path / "keys.log.esp_sa").stat().st_mode) == 0o600
    d = tmp_path / "profile"
    d.mkdir()
    kl = KeyLog(d)
    kl.ike("x")
    assert (d / "ikev2_decryption_table").read_text() == "x\n"
    assert kl.esp_path == d / "esp_sa"


def test_keylog_write_failure_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kl = KeyLog(tmp_path / "missing-dir" / "keys")
    with caplog.at_level("ERROR", logger="pyipsec.cfg"):
        kl.ike("i1")
        kl.esp("e1")
    assert caplog.text.count("key log") == 2
