"""Two in-process daemons on loopback with the real IKE core and fake TUN devices.

The "TUN" of each daemon is one end of a SOCK_SEQPACKET socketpair (packet boundaries
are kept, like a TUN fd); the test injects inner packets on the other end and reads
what the peer daemon decrypts.  IKE and ESP-in-UDP go over real UDP sockets on random
127.77.x.y addresses (NAT-T port 4500 is fixed by the core; ``encap = true``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import random
import socket
import struct
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pyipsec.config.loader import load_config
from pyipsec.config.model import TrafficSelectorSpec
from pyipsec.daemon.control import ControlClient, ControlError
from pyipsec.daemon.dataplane import sel_str as _sel_str
from pyipsec.daemon.runtime import Daemon


class FakeTun:
    def __init__(self) -> None:
        self.fd_pair = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.fd_pair[0].setblocking(False)
        self.fd = self.fd_pair[0].fileno()
        self.outside = self.fd_pair[1]
        self.outside.settimeout(3)
        self.name = "fake0"
        self.mtu = 1400
        self.routes: list[str] = []

    def add_route(self, net: str, prefsrc: str | None = None) -> bool:
        self.routes.append(net)
        return True

    def prune_routes(self, keep: set[str]) -> list[str]:
        gone = [r for r in self.routes if r not in keep]
        self.routes = [r for r in self.routes if r in keep]
        return gone

    def routes_containing(self, ip: object) -> list[str]:
        return [r for r in self.routes if ip in ipaddress.ip_network(r)]

    def add_address(self, address: str) -> bool:
        return True

    def remove_address(self, address: str) -> None:
        pass

    def close(self) -> None:
        for s in self.fd_pair:
            s.close()


def icmp(src: str, dst: str, payload: bytes = b"ping") -> bytes:
    body = b"\x08\x00\x00\x00\x00\x01\x00\x01" + payload
    return (
        struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(body),
            1,
            0,
            64,
            1,
            0,
            ipaddress.IPv4Address(src).packed,
            ipaddress.IPv4Address(dst).packed,
        )
        + body
    )


def conf(tmp: Path, me: str, peer: str, port: int, left: bool, sock: str) -> Path:
    lts, rts = (
        ("203.0.113.0/26", "203.0.113.64/26") if left else ("203.0.113.64/26", "203.0.113.0/26")
    )
    lid, rid = ("left.example.net", "right.example.net")[:: 1 if left else -1]
    tl, tr = ("203.0.113.0/26[udp]", "203.0.113.128/26[udp/9]")[:: 1 if left else -1]
    text = f"""
    [daemon]
    listen = ["{me}"]
    ike_port = {port}
    control_socket = "{sock}"
    [daemon.log]
    default = "debug"
    [connections.c]
    local_addrs = ["{me}"]
    remote_addrs = ["{peer if left else "%any"}"]
    local_port = {port}
    remote_port = {port}
    encap = true
    dpd_delay = 0
    [connections.c.local]
    id = "{lid}"
    [connections.c.remote]
    id = "{rid}"
    [connections.c.children.net]
    local_ts = ["{lts}"]
    remote_ts = ["{rts}"]
    esp_proposals = ["aes256gcm16"]
    [connections.c.children.trapped]
    local_ts = ["{tl}"]
    remote_ts = ["{tr}"]
    esp_proposals = ["aes128gcm16"]
    start_action = "{"trap" if left else "none"}"
    [secrets.s]
    ids = ["left.example.net", "right.example.net"]
    secret = "runtime-test-psk-0123456789"
    """
    p = tmp / f"{'left' if left else 'right'}.toml"
    p.write_text(textwrap.dedent(text))
    return p


async def _until(cond: Any, timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)


def _recv(tun: FakeTun) -> bytes:
    return tun.outside.recv(65535)


def loopback_pair(second_octet: int) -> tuple[str, str, int]:
    """Two free loopback addresses 127.<second_octet>.x.y/.y+1 (UDP 4500 bindable on
    both) and a random port for the pair's IKE: each test module uses its own octet."""
    a, b = random.randrange(1, 250), random.randrange(1, 250)
    left, right = f"127.{second_octet}.{a}.{b}", f"127.{second_octet}.{a}.{b + 1}"
    for ip in (left, right):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind((ip, 4500))
        except OSError as e:  # pragma: no cover - port taken on this host
            pytest.skip(f"cannot bind {ip}:4500: {e}")
        finally:
            s.close()
    return left, right, random.randrange(20000, 60000)


@pytest.fixture
def addrs() -> tuple[str, str, int]:
    return loopback_pair(77)


def test_two_daemons_tunnel(tmp_path: Path, addrs: tuple[str, str, int]) -> None:
    left_ip, right_ip, port = addrs
    lsock, rsock = str(tmp_path / "l" / "ctl.sock"), str(tmp_path / "r" / "ctl.sock")
    lconf = conf(tmp_path, left_ip, right_ip, port, True, lsock)
    rconf = conf(tmp_path, right_ip, left_ip, port, False, rsock)
    ltun, rtun = FakeTun(), FakeTun()
    keylog = str(tmp_path / "keys")

    async def scenario() -> None:
        left = Daemon(
            load_config(lconf), config_path=lconf, keylog_path=keylog, tun_factory=lambda c: ltun
        )
        right = Daemon(load_config(rconf), config_path=rconf, tun_factory=lambda c: rtun)
        await right.start()
        await left.start()
        try:
            # trap policy installed; routes to both children's remote selectors
            assert "203.0.113.64/26" in ltun.routes
            res = await left.handle_request({"cmd": "up", "name": "c", "child": "net"})
            assert res["established"] is True
            await _until(lambda: len(right.dp.children) == 1)
            # left -> right through ESP-in-UDP
            ltun.outside.send(icmp("203.0.113.1", "203.0.113.65"))
            got = await asyncio.to_thread(_recv, rtun)
            assert got == icmp("203.0.113.1", "203.0.113.65")
            # right -> left
            rtun.outside.send(icmp("203.0.113.65", "203.0.113.1", b"pong"))
            assert await asyncio.to_thread(_recv, ltun) == icmp(
                "203.0.113.65", "203.0.113.1", b"pong"
            )
            # not covered by any policy: dropped and counted
            ltun.outside.send(icmp("203.0.113.1", "198.51.100.7"))
            ltun.outside.send(b"\x00garbage")
            await _until(lambda: left.dp.drops.no_policy == 1 and left.dp.drops.tun_invalid == 1)
            # the trapped child: a UDP packet to port 9 starts it
            udp = struct.pack("!HHHH", 1000, 9, 8, 0)
            pkt = (
                struct.pack(
                    "!BBHHHBBH4s4s",
                    0x45,
                    0,
                    28,
                    1,
                    0,
                    64,
                    17,
                    0,
                    ipaddress.IPv4Address("203.0.113.1").packed,
                    ipaddress.IPv4Address("203.0.113.130").packed,
                )
                + udp
            )
            ltun.outside.send(pkt)
            await _until(lambda: len(left.dp.children) == 2)
            assert left.dp.drops.trap_pending >= 1
            ltun.outside.send(pkt)
            assert await asyncio.to_thread(_recv, rtun) == pkt
            # inbound selector check (RFC 4301 §5.2): a packet the SA may not carry
            c = next(x for x in left.dp.children.values() if x.info.child == "net")
            bad = icmp("198.51.100.9", "203.0.113.1")
            r = next(x for x in right.dp.children.values() if x.info.spi_in == c.info.spi_out)
            r.sock.sendto(r.outbound.protect(bad, 4), r.remote)  # type: ignore[union-attr]
            await _until(lambda: c.drops_selector == 1)
            # unknown SPI / garbage ESP / keepalive on 4500
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.sendto(b"\x12\x34\x56\x78" + bytes(40), (left_ip, 4500))
            s.sendto(b"\xff", (left_ip, 4500))
            s.sendto(c.info.spi_in.to_bytes(4, "big") + bytes(40), (left_ip, 4500))
            s.close()
            await _until(
                lambda: (
                    left.dp.drops.unknown_spi == 1
                    and left.dp.drops.keepalives_in == 1
                    and left.dp.drops.esp_errors == 1
                )
            )
            # traffic reporting to the core
            left.report_traffic()
            st = left.status()
            assert st["tun"]["name"] == "fake0"
            assert len(st["ike_sas"]) == 1 and st["ike_sas"][0]["state"] == "established"
            assert "rekey_in" in st["ike_sas"][0]
            assert {x["child"] for x in st["child_sas"]} == {"net", "trapped"}
            assert st["child_sas"][0]["packets_out"] >= 1
            # control socket round trip from a client thread
            out = await asyncio.to_thread(ControlClient(lsock).call, "status")
            assert out["pid"] == os.getpid()
            with pytest.raises(ControlError, match="unknown connection"):
                await left.handle_request({"cmd": "up", "name": "nope"})
            with pytest.raises(ControlError, match="has no child"):
                await left.handle_request({"cmd": "up", "name": "c", "child": "nope"})
            with pytest.raises(ControlError, match="unknown command"):
                await left.handle_request({"cmd": "dance"})
            assert (await left.handle_request({"cmd": "reload"}))["connections"] == ["c"]
            # down: the IKE SA and its children go away on both sides
            await left.handle_request({"cmd": "down", "name": "c"})
            await _until(lambda: not left.dp.children and not right.dp.children)
            await left.handle_request({"cmd": "stop"})
            await asyncio.wait_for(left.serve(), 5)
        finally:
            await left.close()
            await right.shutdown()

    asyncio.run(scenario())
    ike_lines = Path(keylog + ".ikev2_decryption_table").read_text().splitlines()
    esp_lines = Path(keylog + ".esp_sa").read_text().splitlines()
    assert ike_lines and "AES-GCM-256 with 16 octet ICV" in ike_lines[0]
    assert len(esp_lines) == 4 and all(x.startswith('"IPv4"') for x in esp_lines)


def test_reload_rejects_bad_file_and_up_failure(
    tmp_path: Path, addrs: tuple[str, str, int]
) -> None:
    left_ip, right_ip, port = addrs
    lconf = conf(tmp_path, left_ip, right_ip, port, True, str(tmp_path / "ctl.sock"))
    cfg = load_config(lconf)

    async def scenario() -> None:
        d = Daemon(cfg, config_path=lconf, use_tun=False, control=False)
        await d.start()
        try:
            lconf.write_text("[daemon]\nbogus = 1\n")
            with pytest.raises(ControlError, match=r"daemon\.bogus: unknown key"):
                d.reload()
            assert d.config is cfg
            # nobody answers: the up request reports failure after its timeout
            with pytest.raises(ControlError, match="no result within"):
                await d.handle_request({"cmd": "up", "name": "c", "timeout": 0.3})
        finally:
            await d.close()
        d2 = Daemon(cfg, use_tun=False, control=False)
        await d2.start()
        with pytest.raises(ControlError, match="not started from a file"):
            d2.reload()
        await d2.close()

    asyncio.run(scenario())


def test_sel_str() -> None:
    assert _sel_str(TrafficSelectorSpec.from_network("10.0.0.0/8")) == "10.0.0.0/8"
    s = TrafficSelectorSpec(
        ipaddress.ip_address("10.0.0.1"), ipaddress.ip_address("10.0.0.5"), 6, 80, 80
    )
    assert _sel_str(s) == "10.0.0.1-10.0.0.5[6/80]"
    s = TrafficSelectorSpec.from_network("10.0.0.0/8", 17, 1, 9)
    assert _sel_str(s) == "10.0.0.0/8[17/1-9]"
    assert _sel_str(TrafficSelectorSpec.from_network("10.0.0.0/8", 1)) == "10.0.0.0/8[1]"
