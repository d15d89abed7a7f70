"""Two in-process daemons (real IKE core, fake TUN): NAT keepalives on the wire
(RFC 3948 §2.3, §4), the ``rekey`` and ``liveness`` control commands and the CLI,
and the initiator's NAT-D source hash when listening on a wildcard address (§2.23)."""

from __future__ import annotations

import asyncio
import random
import socket
from pathlib import Path
from typing import Any

import pytest

from pyipsec import cli
from pyipsec.config.loader import load_config, load_config_text
from pyipsec.daemon.control import ControlError
from pyipsec.daemon.route import SourceAddressCache, route_source
from pyipsec.daemon.runtime import Daemon
from pyipsec.ikev2.constants import ExchangeType, NotifyType
from pyipsec.ikev2.message import Message
from pyipsec.nat import NatDetection

from .test_runtime import FakeTun, _until, conf, loopback_pair


@pytest.fixture
def pair() -> tuple[str, str, int]:
    return loopback_pair(78)


def _with(path: Path, extra: str) -> Path:
    """Add connection options (after ``dpd_delay = 0``) to a config from ``conf``."""
    path.write_text(path.read_text().replace("dpd_delay = 0", "dpd_delay = 0\n" + extra))
    return path


def test_keepalives_rekey_and_liveness(tmp_path: Path, pair: tuple[str, str, int]) -> None:
    left_ip, right_ip, port = pair
    lsock, rsock = str(tmp_path / "l" / "ctl.sock"), str(tmp_path / "r" / "ctl.sock")
    lconf = _with(conf(tmp_path, left_ip, right_ip, port, True, lsock), "keepalive = 0.2")
    rconf = conf(tmp_path, right_ip, left_ip, port, False, rsock)
    ltun, rtun = FakeTun(), FakeTun()

    async def scenario() -> None:
        left = Daemon(load_config(lconf), config_path=lconf, tun_factory=lambda c: ltun)
        right = Daemon(load_config(rconf), config_path=rconf, tun_factory=lambda c: rtun)
        await right.start()
        await left.start()
        try:
            with pytest.raises(ControlError, match="no established IKE SA"):
                await left.handle_request({"cmd": "rekey", "name": "c"})
            with pytest.raises(ControlError, match="no established IKE SA"):
                await left.handle_request({"cmd": "liveness", "name": "c"})
            await left.handle_request({"cmd": "up", "name": "c", "child": "net"})
            await _until(lambda: len(right.dp.children) == 1)
            # forced encapsulation: left believes it is behind a NAT and keeps the
            # mapping alive with single 0xFF octets on port 4500 (no non-ESP marker)
            await _until(lambda: right.dp.drops.keepalives_in >= 2, timeout=15)
            assert right.dp.drops.invalid_udp == 0 and right.dp.drops.ike_errors == 0
            assert left.dp.drops.keepalives_in == 0  # the responder is not behind a NAT

            # rekey one child by name
            (old,) = list(left.dp.children)
            with pytest.raises(ControlError, match="has no child"):
                await left.handle_request({"cmd": "rekey", "name": "c", "child": "zzz"})
            with pytest.raises(ControlError, match="not both"):
                await left.handle_request(
                    {"cmd": "rekey", "name": "c", "child": "net", "ike": True}
                )
            with pytest.raises(ControlError, match="'ike' must be true or false"):
                await left.handle_request({"cmd": "rekey", "name": "c", "ike": "false"})
            with pytest.raises(ControlError, match="no installed child 'trapped'"):
                await left.handle_request({"cmd": "rekey", "name": "c", "child": "trapped"})
            res = await left.handle_request({"cmd": "rekey", "name": "c", "child": "net"})
            assert res["child_sas"] == [{"ike_id": 1, "child": "net", "spi_in": f"{old:08x}"}]
            await _until(lambda: len(left.dp.children) == 1 and old not in left.dp.children)
            await _until(lambda: len(right.dp.children) == 1)
            # rekey all children of the connection from the responder side
            (old_r,) = list(right.dp.children)
            res = await right.handle_request({"cmd": "rekey", "name": "c"})
            assert [c["child"] for c in res["child_sas"]] == ["net"]
            await _until(lambda: len(right.dp.children) == 1 and old_r not in right.dp.children)
            # rekey the IKE SA: the children move to the new IKE SA
            (ike_before,) = [sa["id"] for sa in left.status()["ike_sas"]]
            res = await left.handle_request({"cmd": "rekey", "name": "c", "ike": True})
            assert res == {"conn": "c", "ike_sas": [ike_before]}
            await _until(
                lambda: [(sa["id"] != ike_before, sa["state"]) for sa in left.status()["ike_sas"]]
                == [(True, "established")]
            )
            # liveness: answered, with the round trip in milliseconds
            res = await left.handle_request({"cmd": "liveness", "name": "c"})
            assert res["conn"] == "c" and res["ike_id"] != ike_before and res["rtt_ms"] >= 0
            # the same through the CLI (blocking client in a thread)
            rc = await asyncio.to_thread(cli.main, ["--socket", lsock, "liveness", "c"])
            assert rc == 0
            (ike_mid,) = [sa["id"] for sa in left.status()["ike_sas"]]
            rc = await asyncio.to_thread(cli.main, ["--socket", lsock, "rekey", "c", "--ike"])
            assert rc == 0
            await _until(
                lambda: [(sa["id"] != ike_mid, sa["state"]) for sa in left.status()["ike_sas"]]
                == [(True, "established")]
            )
            # the IKE counters (swanctl --counters' numbers) of all that
            res = await left.handle_request({"cmd": "counters", "name": "c"})
            c = res["counters"]["c"]
            assert c["child-rekey"] == 2 and c["ike-rekey-init"] == 2
            assert c["ike-auth-out-req"] == 1 and c["info-out-req"] >= 1
            assert c["create-child-out-req"] == 3 and c["create-child-in-req"] == 1
            assert (await left.handle_request({"cmd": "counters"}))["counters"][""] == c
            with pytest.raises(ControlError, match="no counters for connection 'zzz'"):
                await left.handle_request({"cmd": "counters", "name": "zzz"})
            with pytest.raises(ControlError, match="'all' and 'reset' must be true or false"):
                await left.handle_request({"cmd": "counters", "reset": "yes"})
            rc = await asyncio.to_thread(
                cli.main, ["--socket", lsock, "counters", "--all", "--reset"]
            )
            assert rc == 0
            res = await left.handle_request({"cmd": "counters", "all": True})
            assert res == {"counters": {}}  # every connection's forgotten
            # the peer vanishes: the liveness check fails instead of hanging
            await right.close()
            with pytest.raises(ControlError, match="no liveness answer within"):
                await left.handle_request({"cmd": "liveness", "name": "c", "timeout": 0.3})
        finally:
            await left.close()
            await right.close()

    asyncio.run(scenario())


WILD = """
[daemon]
listen = ["0.0.0.0"]
ike_port = {port}
natt_port = {natt}
control_socket = "{sock}"
[connections.w]
remote_addrs = ["127.0.0.1"]
local_port = {port}
remote_port = {peer_port}
[connections.w.children.net]
local_ts = ["203.0.113.0/26"]
remote_ts = ["203.0.113.64/26"]
[secrets.s]
secret = "wildcard-test-psk-0123456789"
"""


def test_wildcard_listener_sends_real_source_nat_d(tmp_path: Path) -> None:
    """Listening on 0.0.0.0, the initiator's NAT_DETECTION_SOURCE_IP hash covers the
    address the kernel sends from (a route lookup), not 0.0.0.0 (RFC 7296 §2.23)."""
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.settimeout(3)
    port = random.randrange(20000, 60000)
    text = WILD.format(
        port=port,
        natt=port + 1,
        sock=tmp_path / "w.sock",
        peer_port=peer.getsockname()[1],
    )
    cfg = load_config_text(text)

    async def scenario() -> tuple[bytes, tuple[str, int]]:
        d = Daemon(cfg, use_tun=False, control=False)
        try:
            await d.start()
        except OSError as e:  # pragma: no cover - port taken on this host
            pytest.skip(f"cannot bind: {e}")
        try:
            d.initiate("w", None)
            data, src = await asyncio.to_thread(peer.recvfrom, 65535)
            # an IKE datagram on a wildcard socket without PKTINFO data: resolved
            d._on_ike(b"\x00" * 8, ("0.0.0.0", port), ("127.0.0.1", 9))
            return data, src
        finally:
            await d.close()

    try:
        data, src = asyncio.run(scenario())
    finally:
        peer.close()
    assert src == ("127.0.0.1", port)
    msg = Message.parse(data)
    assert msg.exchange == ExchangeType.IKE_SA_INIT
    n = msg.notify(NotifyType.NAT_DETECTION_SOURCE_IP)
    assert n is not None
    assert n.data == NatDetection.compute_hash(msg.spi_i, msg.spi_r, "127.0.0.1", port)
    assert n.data != NatDetection.compute_hash(msg.spi_i, msg.spi_r, "0.0.0.0", port)


def test_source_address_cache() -> None:
    assert route_source("127.0.0.1") == "127.0.0.1"
    assert route_source("not an address") is None
    calls: list[str] = []
    now = [0.0]

    def lookup(ip: str) -> str | None:
        calls.append(ip)
        return None if ip == "192.0.2.99" else "198.51.100.2"

    cache = SourceAddressCache(10.0, lookup=lookup, clock=lambda: now[0])
    assert cache("192.0.2.2") == "198.51.100.2"
    assert cache("192.0.2.2") == "198.51.100.2"
    assert cache("192.0.2.99") is None and cache("192.0.2.99") is None
    assert calls == ["192.0.2.2", "192.0.2.99"]  # cached, negative answers too
    now[0] = 11.0
    cache("192.0.2.2")
    assert calls[-1] == "192.0.2.2" and len(calls) == 3  # expired: asked again
    cache.forget()
    cache("192.0.2.2")
    assert len(calls) == 4


def test_unroutable_source(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoRoute:
        def __init__(self, *a: Any) -> None:
            pass

        def connect(self, addr: Any) -> None:
            raise OSError(101, "Network is unreachable")

        def close(self) -> None:
            pass

    monkeypatch.setattr(socket, "socket", NoRoute)
    assert route_source("192.0.2.1") is None


def test_status_filter_arguments_are_checked() -> None:
    """``status`` takes ``conn``/``peer`` strings and an ``offset``/``limit`` page; bad
    types are refused with a clear error (a 50,000-tunnel gateway pages its status)."""
    from pyipsec.daemon.commands import StatusFilter

    f = StatusFilter.from_request({"conn": "c", "peer": "192.0.2.2", "offset": 10, "limit": 5})
    assert f.used and f.shows("c", "192.0.2.2") and not f.shows("d", "192.0.2.2")
    assert not StatusFilter.from_request({}).used
    for bad in ({"conn": 1}, {"peer": ["x"]}, {"offset": -1}, {"limit": 0}, {"limit": True}):
        with pytest.raises(ControlError):
            StatusFilter.from_request(bad)


def test_status_without_limit_is_capped() -> None:
    """Unpaged ``status`` lists at most STATUS_DEFAULT_LIMIT IKE SAs and says so."""
    from types import SimpleNamespace

    from pyipsec.daemon import commands
    from pyipsec.daemon.commands import Commands

    from .fakes import FakeManager

    core = FakeManager()
    core.sas = [{"name": "c", "id": i} for i in range(commands.STATUS_DEFAULT_LIMIT + 5)]
    d = SimpleNamespace(
        core=core, now=lambda: 0.0, started=0.0, udp=[], config=SimpleNamespace(connections=[]),
        dp=SimpleNamespace(tun=None, children={}, drops=SimpleNamespace(as_dict=dict)),
        vips=SimpleNamespace(status=list),
    )  # fmt: skip
    cmds = Commands(d)  # type: ignore[arg-type]
    st = cmds.status({})
    assert len(st["ike_sas"]) == commands.STATUS_DEFAULT_LIMIT and st["truncated"] is True
    st = cmds.status({"limit": 10, "offset": commands.STATUS_DEFAULT_LIMIT})
    assert [s["id"] for s in st["ike_sas"]][:2] == [1000, 1001] and "truncated" not in st
    few = cmds.status({"conn": "c", "limit": 3})
    assert len(few["ike_sas"]) == 3 and few["filter"]["conn"] == "c"
