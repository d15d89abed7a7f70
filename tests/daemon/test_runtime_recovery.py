"""Two in-process daemons (real IKE core, fake TUN): a daemon restart rebuilt from its
configuration, a reload that removes a connection in use, rekeying before the ESP
sequence numbers run out (RFC 4303 §3.3.3), ESP errors counted and never answered,
and INVALID_SPI for ESP on an unknown SPI (RFC 7296 §2.21.4)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from pyipsec.config.loader import load_config
from pyipsec.daemon.runtime import Daemon
from pyipsec.esp.sa import EspOutbound

from .test_runtime import FakeTun, _recv, _until, conf, icmp, loopback_pair


@pytest.fixture
def pair() -> tuple[str, str, int]:
    return loopback_pair(79)


def _confs(tmp: Path, pair: tuple[str, str, int]) -> tuple[Path, Path]:
    left_ip, right_ip, port = pair
    lconf = conf(tmp, left_ip, right_ip, port, True, str(tmp / "l" / "ctl.sock"))
    # the left child comes up on its own (start_action = start), as after a reboot
    text = lconf.read_text()
    i = text.index("[connections.c.children.net]")
    j = text.index("[connections.c.children.trapped]")
    lconf.write_text(text[:j] + 'start_action = "start"\n' + text[j:] if i < j else text)
    rconf = conf(tmp, right_ip, left_ip, port, False, str(tmp / "r" / "ctl.sock"))
    return lconf, rconf


def test_restart_and_reload_removing_the_connection(
    tmp_path: Path, pair: tuple[str, str, int]
) -> None:
    lconf, rconf = _confs(tmp_path, pair)

    async def scenario() -> None:
        right = Daemon(load_config(rconf), config_path=rconf, tun_factory=lambda c: FakeTun())
        left = Daemon(load_config(lconf), config_path=lconf, tun_factory=lambda c: FakeTun())
        await right.start()
        await left.start()
        try:
            await _until(lambda: len(left.dp.children) == 1 and len(right.dp.children) == 1)
            (old_spi,) = list(right.dp.children)
            # left "crashes": sockets closed, nothing sent, all state lost
            await left.close()
            left = Daemon(load_config(lconf), config_path=lconf, tun_factory=lambda c: FakeTun())
            await left.start()
            # rebuilt from the configuration: the tunnel is initiated again and the
            # peer drops the stale SAs on INITIAL_CONTACT (RFC 7296 §2.4)
            await _until(lambda: len(left.dp.children) == 1)
            await _until(lambda: len(right.dp.children) == 1 and old_spi not in right.dp.children)
            assert len(right.status()["ike_sas"]) == 1
            # reload with the connection removed: its SAs are deleted with a DELETE
            rtext = rconf.read_text()
            cut = rtext.index("[connections.c]")
            end = rtext.index("[secrets.s]")
            rconf.write_text(rtext[:cut] + rtext[end:])
            res = right.reload()
            assert res == {"connections": []}
            await _until(lambda: not right.dp.children and not left.dp.children)
            await _until(lambda: not left.status()["ike_sas"])
            assert not right.status()["ike_sas"]
        finally:
            await left.close()
            await right.close()

    asyncio.run(scenario())


def test_sequence_exhaustion_rekey_and_esp_errors(
    tmp_path: Path, pair: tuple[str, str, int]
) -> None:
    lconf, rconf = _confs(tmp_path, pair)
    ltun, rtun = FakeTun(), FakeTun()
    right_ip = pair[1]

    async def scenario() -> None:
        right = Daemon(load_config(rconf), config_path=rconf, tun_factory=lambda c: rtun)
        left = Daemon(load_config(lconf), config_path=lconf, tun_factory=lambda c: ltun)
        await right.start()
        await left.start()
        try:
            await _until(lambda: len(left.dp.children) == 1 and len(right.dp.children) == 1)
            (c,) = left.dp.children.values()
            i = c.info
            # the outbound SA is 100 packets away from 2^32: the next report rekeys it
            c.outbound = EspOutbound(
                i.spi_out, i.encr_id, i.key_bits or 0, i.integ_id, i.encr_key_out,
                i.integ_key_out, esn=i.esn, seq_start=2**32 - 100,
            )  # fmt: skip
            ltun.outside.send(icmp("203.0.113.1", "203.0.113.65"))
            assert await asyncio.to_thread(_recv, rtun) == icmp("203.0.113.1", "203.0.113.65")
            left.report_traffic()
            await _until(lambda: len(left.dp.children) == 1 and i.spi_in not in left.dp.children)
            (new,) = left.dp.children.values()
            assert new.outbound.seq == 0
            ltun.outside.send(icmp("203.0.113.1", "203.0.113.65", b"after"))
            assert await asyncio.to_thread(_recv, rtun) == icmp(
                "203.0.113.1", "203.0.113.65", b"after"
            )
            # forged/replayed ESP to the right: dropped, counted, never answered
            (rc,) = right.dp.children.values()
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((pair[0], 0))
            forged = rc.info.spi_in.to_bytes(4, "big") + (5000).to_bytes(4, "big") + bytes(56)
            s.sendto(forged, (right_ip, 4500))
            await _until(lambda: rc.inbound.stats.auth_failures == 1)
            right.report_traffic()
            assert right.status()["errors"] == {"esp-auth-failure": 1}
            half_open = right.status()["half_open"]  # nothing pre-authentication left
            assert (half_open["sas"], half_open["bytes"], half_open["budget"]) == (0, 0, 64 << 20)
            # ESP on an unknown SPI from the left's address: reported to the left
            # inside the IKE SA (INVALID_SPI), which counts and ignores it
            s.sendto(b"\x0b\xad\x00\x01" + bytes(60), (right_ip, 4500))
            await _until(lambda: left.status()["errors"].get("invalid-spi-received") == 1)
            assert right.status()["errors"]["invalid-spi"] == 1
            assert len(left.dp.children) == 1
            s.close()
        finally:
            await left.close()
            await right.close()

    asyncio.run(scenario())
