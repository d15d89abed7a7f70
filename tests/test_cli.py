"""CLI: argument parsing, the status table from a canned status dict, client commands."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from pyipsec import cli
from pyipsec.cli import format_status, main
from pyipsec.daemon.control import ControlClient

STATUS: dict[str, Any] = {
    "pid": 42,
    "uptime": 3725.0,
    "tun": {"name": "pyipsec0", "mtu": 1400, "routes": ["203.0.113.64/26"]},
    "listen": ["198.51.100.2[500]", "198.51.100.2[4500]"],
    "connections": [
        {"name": "gcm", "children": [{"name": "net", "start_action": "trap"}]},
        {"name": "bare", "children": []},
    ],
    "ike_sas": [
        {
            "name": "gcm",
            "id": 3,
            "state": "established",
            "role": "initiator",
            "local": {"address": "198.51.100.2", "port": 4500, "id": "left.example.net"},
            "remote": {"address": "192.0.2.2", "port": 4500, "id": "right.example.net"},
            "spi_i": "0102030405060708",
            "spi_r": "1112131415161718",
            "suite": "aes256gcm16-prfsha256-x25519",
            "nat": {"local": True, "remote": False, "encap": True, "forced": False},
            "rekey_in": 13000.0,
            "dpd": {"state": "idle", "idle_for": 7.4},
            "errors": {"bad-icv": 2},
        },
        {
            "conn": "old",
            "ike_id": 4,
            "state": "connecting",
            "local": ["192.0.2.9", 500],
            "remote": None,
            "local_id": "a",
            "nat_remote": True,
            "dpd": {"state": "probing", "idle_for": 95.0},
            "errors": {"a": 1, "b": 1, "c": 3, "d": 0},
        },
    ],
    "child_sas": [
        {
            "conn": "gcm",
            "child": "net",
            "spi_in": "c1234567",
            "spi_out": "c7654321",
            "suite": "aes256gcm16",
            "mode": "tunnel",
            "encap": True,
            "local_ts": ["203.0.113.0/26"],
            "remote_ts": ["203.0.113.64/26"],
            "bytes_in": 420,
            "packets_in": 5,
            "bytes_out": 5 * 1024 * 1024,
            "packets_out": 4000,
            "rekey_in": 3300.0,
            "expires_in": 59.0,
        }
    ],
    "drops": {"no_policy": 2, "unknown_spi": 0},
    "errors": {"bad-icv": 2, "retransmits-exhausted": 1, "x": 0},
}


def test_format_status() -> None:
    text = format_status(STATUS)
    lines = text.splitlines()
    assert lines[0] == "pyipsec daemon pid 42, up 1h02m, TUN pyipsec0 mtu 1400"
    assert "connections: gcm [net(trap)]; bare" in text
    assert "IKE SAs (2):" in text and "Child SAs (1):" in text
    row = next(line for line in lines if line.strip().startswith("gcm#3"))
    for part in (
        "established",
        "initiator",
        "198.51.100.2[4500]",
        "192.0.2.2[4500]",
        "left.example.net / right.example.net",
        "aes256gcm16-prfsha256-x25519",
        "0102030405060708_i 1112131415161718_r",
        "local",
        "3h36m",
        "7s ago",
        "bad-icv=2",
    ):
        assert part in row, part
    old = next(line for line in lines if line.strip().startswith("old#4"))
    assert "192.0.2.9[500]" in old and "a / -" in old and "remote" in old
    assert old.endswith("5 (3 kinds)")  # many kinds: the total only
    assert "1m35s ago (probing)" in old  # DPD state shown unless idle
    assert "(idle)" not in row
    child = next(line for line in lines if line.strip().startswith("gcm/net"))
    for part in (
        "c1234567_i c7654321_o",
        "tunnel+udp",
        "203.0.113.0/26 === 203.0.113.64/26",
        "420 B/5p",
        "5.0 MiB/4000p",
        "55m00s",
        "59s",
    ):
        assert part in child, part
    assert lines[-2] == "drops: no_policy=2 (packets on the TUN that matched no policy)"
    assert lines[-1] == "errors: bad-icv=2, retransmits-exhausted=1"
    assert format_status({"errors": {"bad-icv": 1}}).splitlines()[-2:] == ["", "errors: bad-icv=1"]
    # headers line up with the rows
    head = next(line for line in lines if line.strip().startswith("NAME"))
    assert head.index("STATE") == row.index("established")


def test_drop_counters_are_explained() -> None:
    drops = {"no_policy": 1, "unknown_spi": 3, "made_up": 4, "keepalives_in": 0}
    text = format_status({"drops": drops})
    lines = text.splitlines()
    start = lines.index("drops: made_up=4")  # unknown counters: just name=count
    assert lines[start:] == [
        "drops: made_up=4",
        "       no_policy=1 (packets on the TUN that matched no policy)",
        "       unknown_spi=3 (ESP packets for an SPI of no Child SA (RFC 4303 §3.4.2))",
    ]


def test_every_daemon_drop_counter_has_an_explanation() -> None:
    from pyipsec.daemon.dataplane import DropCounters

    assert set(DropCounters().as_dict()) == set(cli.DROP_EXPLANATIONS)


def test_format_up_result() -> None:
    res = {
        "established": True,
        "events": ["CHILD_SA installed"],
        "conn": "demo",
        "child": "net",
        "elapsed_ms": 12.345,
    }
    assert cli.format_up_result(res, 19.4) == (
        "demo/net: established in 19 ms (12.345 ms in the daemon): CHILD_SA installed"
    )
    assert cli.format_up_result(res) == "demo/net: established in 12.345 ms: CHILD_SA installed"
    failed = {
        "established": False,
        "events": ["IKE SA failed: AUTHENTICATION_FAILED"],
        "conn": "demo",
        "child": None,
    }
    assert cli.format_up_result(failed, 3.0) == (
        "demo/-: failed in 3 ms: IKE SA failed: AUTHENTICATION_FAILED"
    )
    timeout = {"established": False, "error": "no result within 20s", "conn": "c", "child": "n"}
    assert cli.format_up_result(timeout) == "c/n: failed: no result within 20s"
    assert "{" not in cli.format_up_result(res)  # not a raw dict


def _subcommand_parsers() -> dict[str, Any]:
    import argparse

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_subcommand_argument_has_help() -> None:
    missing = [
        f"{name} {action.dest}"
        for name, sp in _subcommand_parsers().items()
        for action in sp._actions
        if action.dest != "help" and not action.help
    ]
    assert missing == []


def test_up_help_describes_its_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["up", "--help"])
    out = capsys.readouterr().out
    assert "connection name" in out
    assert "default: the first configured" in out
    assert "seconds to wait for the Child SA (default: 30)" in out


def test_format_status_empty() -> None:
    text = format_status({"ike_sas": [], "child_sas": []})
    assert "IKE SAs (0):" in text and "Child SAs (0):" in text and "drops" not in text
    assert cli._fmt_secs(None) == "-" and cli._fmt_secs(-5) == "-5s"
    assert cli._fmt_bytes(None) == "-" and cli._fmt_bytes(3 << 30) == "3.0 GiB"
    assert cli._fmt_bytes(2048) == "2.0 KiB"
    assert cli._addr(None) == "-" and cli._addr("x") == "x"


class FakeClient:
    calls: list[tuple[str, dict[str, Any]]] = []

    def __init__(self, path: str, timeout: float = 10.0) -> None:
        self.path = path

    def call(self, cmd: str, **args: Any) -> Any:
        FakeClient.calls.append((cmd, dict(args, _path=self.path)))
        if cmd == "status":
            return STATUS
        if cmd == "up":
            return {
                "established": True,
                "events": ["CHILD_SA installed"],
                "conn": args["name"],
                "child": args.get("child") or "net",
                "elapsed_ms": 7.5,
            }
        if cmd == "reload":
            return {"connections": ["gcm"]}
        if cmd == "fail":
            raise AssertionError
        return {}


def test_client_commands(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "ControlClient", FakeClient)
    FakeClient.calls.clear()
    assert main(["--socket", "/tmp/s.sock", "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pid"] == 42
    assert main(["status", "--socket", "/tmp/t.sock"]) == 0
    assert "IKE SAs (2)" in capsys.readouterr().out
    assert main(["up", "gcm", "net", "--timeout", "3"]) == 0
    assert capsys.readouterr().out == "gcm/net: established in 7.5 ms: CHILD_SA installed\n"
    assert main(["down", "gcm"]) == 0
    assert main(["reload"]) == 0
    assert "reloaded: gcm" in capsys.readouterr().out
    assert main(["stop"]) == 0
    paths = [c[1]["_path"] for c in FakeClient.calls]
    assert paths[0] == "/tmp/s.sock" and paths[1] == "/tmp/t.sock"
    monkeypatch.setenv("PYIPSEC_SOCKET", "/tmp/env.sock")
    main(["down", "x"])
    assert FakeClient.calls[-1][1]["_path"] == "/tmp/env.sock"
    assert FakeClient.calls[2] == (
        "up",
        {"name": "gcm", "child": "net", "timeout": 3.0, "_path": cli.DEFAULT_SOCKET},
    )


def test_client_error_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--socket", str(tmp_path / "none.sock"), "status"]) == 1
    assert "is the daemon running" in capsys.readouterr().err


def test_daemon_check_and_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ex = Path(__file__).resolve().parents[1] / "examples" / "left.toml"
    assert main(["daemon", "--config", str(ex), "--check"]) == 0
    assert "OK (1 connections, 1 children)" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text("[daemon]\nike_port = -1\n")
    assert main(["daemon", "--config", str(bad)]) == 1
    assert "daemon.ike_port: must be between" in capsys.readouterr().err


def test_selfcheck(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["selfcheck"]) == 0
    out = capsys.readouterr().out
    assert out.count("ok    ") == 5 and "selfcheck passed" in out


def test_selfcheck_failure_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    from pyipsec.daemon import selfcheck

    def broken() -> str:
        raise ValueError("nope")

    monkeypatch.setattr(selfcheck, "CHECKS", [("broken", broken)])
    lines: list[str] = []
    assert selfcheck.run_selfcheck(lines.append) is False
    assert lines == ["FAIL  broken: ValueError: nope", "selfcheck FAILED"]


def test_demo_needs_root(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert main(["demo"]) == 2
    assert "needs root" in capsys.readouterr().out


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for cmd in ("daemon", "up", "down", "status", "reload", "selfcheck", "demo"):
        assert cmd in out


def test_real_client_class_is_used() -> None:
    assert cli.ControlClient is ControlClient


def test_rekey_and_liveness_commands(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class Client(FakeClient):
        def call(self, cmd: str, **args: Any) -> Any:
            FakeClient.calls.append((cmd, dict(args)))
            if cmd == "liveness":
                return {"conn": args["name"], "ike_id": 1, "rtt_ms": 1.25}
            if args.get("ike"):
                return {"conn": args["name"], "ike_sas": [3]}
            return {"conn": args["name"], "child_sas": [{"child": "net", "spi_in": "c1"}]}

    monkeypatch.setattr(cli, "ControlClient", Client)
    FakeClient.calls.clear()
    assert main(["rekey", "gcm", "--child", "net"]) == 0
    assert "gcm/net: rekeying c1" in capsys.readouterr().out
    assert main(["rekey", "gcm", "--ike"]) == 0
    assert "rekeying IKE SA #3" in capsys.readouterr().out
    assert main(["rekey", "gcm"]) == 0
    assert main(["liveness", "gcm", "--timeout", "2"]) == 0
    assert "round trip 1.25 ms" in capsys.readouterr().out
    assert FakeClient.calls == [
        ("rekey", {"name": "gcm", "child": "net", "ike": None}),
        ("rekey", {"name": "gcm", "child": None, "ike": True}),
        ("rekey", {"name": "gcm", "child": None, "ike": None}),
        ("liveness", {"name": "gcm", "timeout": 2.0}),
    ]
    with pytest.raises(SystemExit):
        main(["rekey", "gcm", "--child", "net", "--ike"])


def test_format_status_peer_certificate() -> None:
    sa = dict(STATUS["ike_sas"][0])
    sa["peer_auth"] = "ecdsa-with-SHA256"
    sa["peer_cert"] = {
        "subject": "CN=right.example.net",
        "issuer": "CN=pyipsec demo CA",
        "serial": "1f",
        "not_after": "2027-01-05T01:38:50+00:00",
    }
    text = format_status({"ike_sas": [sa, STATUS["ike_sas"][1]], "child_sas": []})
    lines = text.splitlines()
    row = next(i for i, line in enumerate(lines) if line.strip().startswith("gcm#3"))
    # under the table (after the last row), indented, only for the SA that has one
    assert lines[row + 1].strip().startswith("old#4")
    assert lines[row + 2] == (
        "  gcm#3 peer certificate: CN=right.example.net, issued by CN=pyipsec demo CA, "
        "expires 2027-01-05 01:38:50 UTC (auth ecdsa-with-SHA256)"
    )
    assert lines[row + 3] == ""
    assert text.count("peer certificate") == 1


def test_format_status_without_peer_certificate() -> None:
    sa = dict(STATUS["ike_sas"][0], peer_auth="psk", peer_cert=None)
    assert "peer certificate" not in format_status(STATUS)
    assert "peer certificate" not in format_status({"ike_sas": [sa]})
    # peer_auth is shown only with a certificate; a cert without not_after still prints
    sa["peer_cert"] = {"subject": "CN=x", "issuer": "CN=ca"}
    del sa["peer_auth"]
    assert "  gcm#3 peer certificate: CN=x, issued by CN=ca" in format_status({"ike_sas": [sa]})


def test_demo_auth_option(monkeypatch: pytest.MonkeyPatch) -> None:
    from pyipsec import demo

    seen: list[dict[str, Any]] = []

    def fake(**kw: Any) -> int:
        seen.append(kw)
        return 0

    monkeypatch.setattr(demo, "run_demo", fake)
    assert main(["demo"]) == 0
    assert main(["demo", "--auth", "pubkey", "--no-install"]) == 0
    assert seen[0]["auth"] == "psk" and seen[1] == {
        "keep_going": False,
        "install": False,
        "auth": "pubkey",
    }
    with pytest.raises(SystemExit):
        main(["demo", "--auth", "rsa"])
