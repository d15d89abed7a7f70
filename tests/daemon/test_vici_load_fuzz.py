"""Property tests: random and mutated ``load-conn``, ``load-pool``, ``load-shared``,
``load-cert`` (and ``load-key``) messages against a running daemon's VICI server
(strongSwan's vici protocol; errors as ``success = no`` with an ``errmsg``).

One daemon (fake IKE core) serves the whole test; each example is sent by a fuzzing
client.  Checked: every request gets a command response with ``success`` yes or no
(no with an ``errmsg``), no handler raises (the server's safety net logs such a
failure with a traceback: any such record fails), the fuzzing client's connection
stays usable and a second, well-behaved client is served all along.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter
from collections.abc import Iterator
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyipsec.daemon import vici_load
from pyipsec.daemon.commands import load_daemon_config
from pyipsec.daemon.runtime import Daemon
from pyipsec.daemon.vici_codec import PacketType, ViciError, encode_packet

from .fakes import FakeManager
from .test_runtime import FakeTun
from .test_vici import Client
from .test_vici_conns import Pki, b, psk_conn, pubkey_conn
from .test_vici_load import CONF

EXAMPLES = int(os.environ.get("PYIPSEC_FUZZ_EXAMPLES", "200"))
#: (command, success) -> count, printed after a campaign (pytest -s)
OUTCOMES: Counter[tuple[str, bytes]] = Counter()


@dataclass
class Served:
    loop: asyncio.AbstractEventLoop
    daemon: Daemon
    fuzzer: Client
    good: Client
    pki: Pki

    def cmd(self, client: Client, name: str, msg: dict[str, Any]) -> Any:
        return self.loop.run_until_complete(client.cmd(name, msg))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = Path(tmp_path_factory.mktemp("vicifuzz"))
    sock = str(tmp / "charon.vici")
    conf = tmp / "pyipsec.toml"
    conf.write_text(CONF.format(sock=sock))
    conf.chmod(0o600)
    core = FakeManager()
    saved = vici_load.SETTLE
    vici_load.SETTLE = 0.0
    loop = asyncio.new_event_loop()
    d = Daemon(
        load_daemon_config(conf),
        config_path=conf,
        manager_factory=lambda c: core,
        control=False,
        tun_factory=lambda c: FakeTun(),
    )

    async def start() -> tuple[Client, Client]:
        await d.start()
        return await Client.connect(sock), await Client.connect(sock)

    fuzzer, good = loop.run_until_complete(start())
    try:
        yield Served(loop, d, fuzzer, good, Pki())
    finally:
        fuzzer.close()
        good.close()
        loop.run_until_complete(d.close())
        loop.close()
        vici_load.SETTLE = saved
        if os.environ.get("PYIPSEC_FUZZ_EXAMPLES"):
            print(dict(OUTCOMES))


# ---------------------------------------------------------------------------- messages

_LEAF = st.one_of(
    st.binary(max_size=24),
    st.sampled_from([b"", b"yes", b"no", b"0", b"-1", b"%any", b"10.3.0.0/24", b"psk",
                     b"pubkey", b"eap-md5", b"IKE", b"X509", b"CA", b"::/0", b"1-2",
                     b"0.0.0.0-255.255.255.255", b"99999999999999999999", b"\xff\xfe"]),
)  # fmt: skip
_VALUE = st.recursive(
    st.one_of(_LEAF, st.lists(_LEAF, max_size=3)),
    lambda inner: st.dictionaries(
        st.text("abcdefghijklmnopqrstuvwxyz_", max_size=12), inner, max_size=4
    ),
    max_leaves=8,
)
_KEYS = st.sampled_from(
    ["local_addrs", "remote_addrs", "local", "remote", "children", "auth", "id", "pools",
     "proposals", "esp_proposals", "local_ts", "remote_ts", "addrs", "dns", "data", "type",
     "flag", "owners", "id", "version", "vips", "certs", "cacerts", "eap_id", "mobike",
     "rekey_time", "start_action", "dpd_delay", "if_id_in", "mode", "split_include"]
)  # fmt: skip


def _templates(pki: Pki) -> dict[str, dict[str, Any]]:
    return {
        "load-conn": b({"gw": psk_conn(pools=["rw"], vips=["0.0.0.0"])}),
        "load-pool": b({"rw": {"addrs": "10.3.0.0/24", "dns": ["10.2.0.53", "2001:db8::53"]}}),
        "load-shared": b(
            {"id": "s1", "type": "IKE", "data": "s3cret", "owners": ["moon.example.net"]}
        ),
        "load-cert": {"type": b"X509", "flag": b"CA", "data": pki.pem(pki.ca)},
        # DER, so that a flipped octet lands in the ASN.1 (PEM flips mostly break base64)
        "load-cert-der": {"type": b"X509", "flag": b"CA", "data": _der(pki.ca)},
        "load-conn-pubkey": {"gw": pubkey_conn(pki, local={
            "auth": b"pubkey", "id": b"moon.example.net", "certs": [_der(pki.cert)]})},
        "load-key": {"type": b"any", "data": pki.key_pem()},
    }


def _der(cert: Any) -> bytes:
    return bytes(cert.public_bytes(serialization.Encoding.DER))


def _paths(msg: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [prefix]
    if isinstance(msg, dict):
        for k, v in msg.items():
            out += _paths(v, (*prefix, k))
    return out


_UNLOADS = st.tuples(
    st.sampled_from(["unload-conn", "unload-pool", "unload-shared", "unload-key",
                     "flush-certs", "get-pools", "get-shared", "get-conns"]),
    st.dictionaries(st.sampled_from(["name", "id", "type", "leases"]),
                    st.sampled_from([b"gw", b"rw", b"s1", b"", b"\xff", b"X509", b"yes"]),
                    max_size=2),
)  # fmt: skip


@st.composite
def requests(draw: Any, pki: Pki) -> tuple[str, dict[str, Any]]:
    if not draw(st.integers(0, 5)):
        unload: tuple[str, dict[str, Any]] = draw(_UNLOADS)
        return unload
    template = draw(st.sampled_from(["load-conn", "load-conn-pubkey", "load-pool",
                                     "load-shared", "load-cert", "load-cert-der",
                                     "load-key"]))  # fmt: skip
    name = template.removesuffix("-der").removesuffix("-pubkey")
    msg: Any = deepcopy(_templates(pki)[template])
    if draw(st.booleans()) and draw(st.booleans()):
        return name, draw(st.dictionaries(st.text(max_size=10), _VALUE, max_size=4))
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(_paths(msg)))
        parent: Any = msg
        for k in path[:-1]:
            parent = parent[k]
        op = draw(st.sampled_from(["set", "delete", "add", "flip"]))
        if not path:
            if op == "add":
                msg[draw(_KEYS)] = draw(_VALUE)
            continue
        key = path[-1]
        if op == "delete":
            del parent[key]
        elif op == "set":
            parent[key] = draw(_VALUE)
        elif op == "add" and isinstance(parent[key], dict):
            parent[key][draw(_KEYS)] = draw(_VALUE)
        elif op == "flip" and isinstance(parent[key], bytes) and parent[key]:
            v = parent[key]
            i = draw(st.integers(0, len(v) - 1))
            parent[key] = v[:i] + bytes([v[i] ^ draw(st.integers(1, 255))]) + v[i + 1 :]
    return name, msg


def _encodable(name: str, msg: dict[str, Any]) -> bool:
    try:
        encode_packet(PacketType.CMD_REQUEST, name, msg)
    except (ViciError, ValueError, TypeError, UnicodeError):
        return False
    return True


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("PYIPSEC_FUZZ_EXAMPLES") is None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_mutated_load_messages(
    served: Served, data: st.DataObject, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.clear()
    caplog.set_level(logging.ERROR, logger="pyipsec")
    name, msg = data.draw(requests(served.pki))
    if not _encodable(name, msg):
        return
    reply = served.cmd(served.fuzzer, name, msg)
    assert PacketType(reply.type) is PacketType.CMD_RESPONSE
    success = reply.message.get("success", b"-")
    OUTCOMES[name, success] += 1
    if name.startswith("get-"):
        assert success == b"-" or reply.message.get("errmsg"), reply.message
    else:
        assert success in (b"yes", b"no"), reply.message
    if success == b"no":
        assert reply.message.get("errmsg"), reply.message
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert not tracebacks, [(r.getMessage(), r.exc_info[1]) for r in tracebacks]  # type: ignore[index]
    version = served.cmd(served.good, "version", {})
    assert PacketType(version.type) is PacketType.CMD_RESPONSE
    assert served.cmd(served.fuzzer, "version", {}).message == version.message
