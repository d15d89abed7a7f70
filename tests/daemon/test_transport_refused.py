"""Transport mode is refused early by the daemon (its TUN data plane cannot carry it):
``--check``/start, ``reload``, and a transport Child SA negotiated anyway (programmatic
configuration) is deleted again instead of staying half-installed."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from pyipsec import cli
from pyipsec.config.loader import load_config, load_config_text
from pyipsec.config.model import ConnectionConfig, Mode
from pyipsec.daemon.control import ControlError
from pyipsec.daemon.runtime import Daemon, unsupported_config
from pyipsec.ikev2 import events as ev

from .fakes import FakeManager, child_info

CONF = """
[daemon]
listen = ["127.0.0.1"]
ike_port = 0
natt_port = 0
control_socket = "{sock}"
[connections.c]
remote_addrs = ["192.0.2.2"]
[connections.c.children.net]
local_ts = ["203.0.113.0/26"]
remote_ts = ["203.0.113.64/26"]
mode = "{mode}"
[connections.c.children.host]
local_ts = ["198.51.100.2/32"]
remote_ts = ["192.0.2.2/32"]
mode = "{mode2}"
[secrets.s]
secret = "transport-refused-psk-0123456789"
"""

WHERE = "connections.c.children.host.mode: transport mode is not supported"


def _write(path: Path, mode2: str) -> Path:
    path.write_text(CONF.format(sock=path.parent / "c.sock", mode="tunnel", mode2=mode2))
    return path


def test_unsupported_config_locates_transport_children(tmp_path: Path) -> None:
    cfg = load_config_text(CONF.format(sock="/x", mode="transport", mode2="transport"))
    issues = [str(i) for i in unsupported_config(cfg)]
    assert len(issues) == 2
    assert issues[0].startswith("connections.c.children.net.mode: transport mode")
    assert issues[1].startswith(WHERE)
    assert unsupported_config(load_config(_write(tmp_path / "ok.toml", "tunnel"))) == []


def test_daemon_check_refuses_transport(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    bad = _write(tmp_path / "bad.toml", "transport")
    assert cli.main(["daemon", "--config", str(bad), "--check"]) == 1
    err = capsys.readouterr().err
    assert f"{bad}: 1 configuration error:" in err and WHERE in err
    good = _write(tmp_path / "good.toml", "tunnel")
    assert cli.main(["daemon", "--config", str(good), "--check"]) == 0


class _Mgr(FakeManager):
    def __init__(self) -> None:
        super().__init__()
        self.deleted: list[tuple[int, int]] = []

    def reload(self, connections: Sequence[ConnectionConfig], now: float) -> None:
        raise AssertionError("a refused reload must not reach the core")

    def delete_child(self, ike_id: int, spi_in: int, now: float) -> None:
        self.deleted.append((ike_id, spi_in))
        if spi_in == 0x301:
            raise KeyError("gone already")


def _info(spi_in: int) -> ev.ChildSaInfo:
    return child_info(
        spi_in, ike_id=7, child="host", local_ts="198.51.100.2/32", remote_ts="192.0.2.2/32",
        mode=Mode.TRANSPORT, encap=False, local=("198.51.100.2", 500), remote=("192.0.2.2", 500),
    )


def test_reload_refuses_and_negotiated_transport_child_is_deleted(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.toml", "tunnel")
    cfg = load_config(path)
    mgr = _Mgr()

    async def go() -> None:
        d = Daemon(cfg, config_path=path, manager_factory=lambda c: mgr, use_tun=False,
                   control=False)
        await d.start()
        try:
            _write(path, "transport")
            with pytest.raises(ControlError, match=WHERE):
                d.reload()
            assert d.config is cfg
            # a transport child negotiated anyway: not installed, deleted, `up` fails
            up = asyncio.ensure_future(d.handle_request({"cmd": "up", "name": "c",
                                                         "child": "host", "timeout": 5}))
            await asyncio.sleep(0.01)
            mgr.events = [ev.ChildSaInstalled(_info(0x300)), ev.ChildSaInstalled(_info(0x301))]
            d.pump()
            with pytest.raises(ControlError, match="not installed"):
                await up
            assert d.dp.children == {}
            assert mgr.deleted == [(7, 0x300), (7, 0x301)]
        finally:
            await d.close()

    asyncio.run(go())
