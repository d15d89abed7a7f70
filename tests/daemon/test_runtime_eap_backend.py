"""The daemon's side of EAP-RADIUS (RFC 3579): an ``EapBackendRequest`` of the core goes
to the configured AAA backend (``Daemon.eap_backend``), and without one the client is
refused at once (``eap_backend_reply`` with UNREACHABLE) with a log line."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from pyipsec.config.loader import load_config_text
from pyipsec.daemon.runtime import Daemon
from pyipsec.eap.base import BackendReply, BackendVerdict
from pyipsec.ikev2 import events as ev

from .fakes import FakeManager

CONF = """
[daemon]
listen = ["127.0.0.1"]
ike_port = 0
natt_port = 0
control_socket = "{sock}"
"""

REQUEST = ev.EapBackendRequest(
    7, "rw", b"carol", b"\x02\x01\x00\x0a\x01carol", ("192.0.2.9", 4500)
)


class Collector:
    def __init__(self) -> None:
        self.got: list[ev.EapBackendRequest] = []

    def submit(self, event: ev.EapBackendRequest) -> None:
        self.got.append(event)

    def forget(self, ike_id: int) -> None:
        pass

    def close(self) -> None:
        pass


def _run(tmp_path: Path, backend: Collector | None) -> FakeManager:
    cfg = load_config_text(CONF.format(sock=tmp_path / "c.sock"))
    mgr = FakeManager()

    async def go() -> None:
        d = Daemon(cfg, manager_factory=lambda c: mgr, use_tun=False, control=False)
        d.eap_backend = backend
        await d.start()
        try:
            mgr.events = [REQUEST]
            d.pump()
        finally:
            await d.close()

    asyncio.run(go())
    return mgr


def test_request_goes_to_the_backend(tmp_path: Path) -> None:
    backend = Collector()
    mgr = _run(tmp_path, backend)
    assert backend.got == [REQUEST]
    assert not [c for c in mgr.calls if c[0] == "eap_backend_reply"]


def test_without_a_backend_the_client_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        mgr = _run(tmp_path, None)
    replies = [c[1] for c in mgr.calls if c[0] == "eap_backend_reply"]
    assert len(replies) == 1
    ike_id, reply = replies[0]
    assert ike_id == 7 and isinstance(reply, BackendReply)
    assert reply.verdict is BackendVerdict.UNREACHABLE
    assert "none is configured" in caplog.text and "192.0.2.9:4500" in caplog.text
    assert "eap=" not in repr(REQUEST)  # the EAP packet stays out of repr() / logs
