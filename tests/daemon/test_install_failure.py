"""A Child SA the data plane cannot install is deleted at the IKE level (no blackhole):
whatever the reason (ESP refuses the keys, a socket error, a bug), the daemon logs it,
counts it (``dp.drops.install_failed``) and calls ``core.delete_child`` (DELETE sent)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from pyipsec.config.loader import load_config, load_config_text
from pyipsec.daemon.runtime import Daemon
from pyipsec.esp.errors import EspConfigError
from pyipsec.ikev2 import events as ev

from .fakes import FakeManager, child_info
from .test_runtime import FakeTun, _until, conf, loopback_pair

CONF = """
[daemon]
listen = ["127.0.0.1"]
ike_port = 0
natt_port = 0
control_socket = "{sock}"
[connections.c]
remote_addrs = ["127.0.0.2"]
[connections.c.children.net]
local_ts = ["203.0.113.0/26"]
remote_ts = ["203.0.113.64/26"]
[secrets.s]
secret = "install-failure-psk-0123456789"
"""


def _deleted(mgr: FakeManager) -> list[tuple[int, int]]:
    return [args for name, args in mgr.calls if name == "delete_child"]


def test_fake_core_child_refused_by_esp_or_failing_is_deleted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = load_config_text(CONF.format(sock=tmp_path / "c.sock"))
    mgr = FakeManager()

    async def go() -> None:
        d = Daemon(cfg, manager_factory=lambda c: mgr, use_tun=False, control=False)
        await d.start()
        try:
            good = child_info(0x500, ike_id=3)
            # ESP refuses the keys (EspConfigError inside the data plane)
            bad_keys = child_info(0x501, ike_id=3)
            object.__setattr__(bad_keys, "encr_key_in", b"short")
            mgr.events = [ev.ChildSaInstalled(good), ev.ChildSaInstalled(bad_keys)]
            with caplog.at_level(logging.ERROR, logger="pyipsec"):
                d.pump()
            assert set(d.dp.children) == {0x500}
            assert _deleted(mgr) == [(3, 0x501)]
            assert d.dp.drops.install_failed == 1
            assert any("cannot be installed" in r.getMessage() for r in caplog.records)

            # a rekeyed SA whose installation raises anything else (socket, bug...)
            real_install = d.dp.install

            def boom(info: ev.ChildSaInfo) -> Any:
                if info.spi_in == 0x502:
                    raise OSError("no buffer space")
                return real_install(info)

            d.dp.install = boom  # type: ignore[method-assign]
            mgr.events = [ev.ChildSaRekeyed(0x500, child_info(0x502, ike_id=3))]
            d.pump()
            assert _deleted(mgr) == [(3, 0x501), (3, 0x502)]
            assert 0x502 not in d.dp.children and 0x500 in d.dp.children
            assert d.dp.drops.install_failed == 2
            assert d.dp.drops.as_dict()["install_failed"] == 2
        finally:
            await d.close()

    asyncio.run(go())


@pytest.fixture
def addrs() -> tuple[str, str, int]:
    return loopback_pair(80)


def test_real_core_child_esp_cannot_carry_is_deleted_on_both_sides(
    tmp_path: Path, addrs: tuple[str, str, int]
) -> None:
    left_ip, right_ip, port = addrs
    lsock, rsock = str(tmp_path / "l" / "ctl.sock"), str(tmp_path / "r" / "ctl.sock")
    lconf = conf(tmp_path, left_ip, right_ip, port, True, lsock)
    rconf = conf(tmp_path, right_ip, left_ip, port, False, rsock)
    ltun, rtun = FakeTun(), FakeTun()

    async def scenario() -> None:
        left = Daemon(load_config(lconf), config_path=lconf, tun_factory=lambda c: ltun)
        right = Daemon(load_config(rconf), config_path=rconf, tun_factory=lambda c: rtun)
        await right.start()
        await left.start()

        def refuse(info: ev.ChildSaInfo) -> Any:
            raise EspConfigError(f"cannot carry {info.suite}")

        right.dp.install = refuse  # type: ignore[method-assign]
        try:
            await left.handle_request({"cmd": "up", "name": "c", "child": "net"})
            # right could not install its side: it deleted the Child SA (DELETE sent),
            # so left's half goes too -- no blackhole on either side
            await _until(lambda: right.dp.drops.install_failed == 1)
            await _until(lambda: not left.dp.children and not right.core.child_sas())
            assert not left.core.child_sas()
            ike = left.core.ike_sas()
            assert len(ike) == 1 and ike[0].established  # the IKE SA stays
        finally:
            await left.close()
            await right.close()

    asyncio.run(scenario())
