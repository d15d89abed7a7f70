"""The data plane shares one raw ESP socket per family among the SAs that need it:
a peer is forgotten by the socket when its last SA goes, the socket is closed when the
last SA of any peer goes (counted, never found by a walk over the SAs)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from pyipsec.daemon.dataplane import DataPlane

from .fakes import child_info


class FakeRaw:
    family = socket.AF_INET

    def __init__(self, r: int, w: int) -> None:
        self.fd = r
        self._w = w
        self.forgotten: list[str] = []
        self.closed = False

    def forget(self, ip: str) -> None:
        self.forgotten.append(ip)

    def close(self) -> None:
        self.closed = True


def test_raw_socket_users_counted_per_peer() -> None:
    import os

    loop = asyncio.new_event_loop()
    r, w = os.pipe()
    plane = DataPlane(loop, [], lambda report: None)
    raw = FakeRaw(r, w)

    def fake_raw(family: Any) -> FakeRaw:
        if int(family) not in plane.raw:
            plane.raw[int(family)] = raw  # type: ignore[assignment]
            loop.add_reader(raw.fd, lambda: None)
        return raw

    plane._raw_socket = fake_raw  # type: ignore[method-assign,assignment]
    try:
        a1 = child_info(0x1001, ike_id=1, encap=False, remote=("198.51.100.1", 0))
        a2 = child_info(0x1002, ike_id=1, encap=False, remote=("198.51.100.1", 0),
                        remote_ts="10.2.0.0/16")  # fmt: skip
        b1 = child_info(0x1003, ike_id=2, encap=False, remote=("198.51.100.2", 0),
                        remote_ts="10.3.0.0/16")  # fmt: skip
        for info in (a1, a2, b1):
            assert plane.install(info) is not None
        plane.peer_address_changed(2, ("198.51.100.3", 0))  # b moves (RFC 7296 §2.23)
        assert raw.forgotten == ["198.51.100.2"] and not raw.closed  # nothing sends there
        plane.uninstall(0x1001, "test")
        assert raw.forgotten == ["198.51.100.2"] and not raw.closed  # a2 still uses .1
        plane.uninstall(0x1002, "test")
        assert raw.forgotten == ["198.51.100.2", "198.51.100.1"] and not raw.closed
        plane.uninstall(0x1003, "test")  # b1 was the last user of the socket
        assert raw.forgotten == ["198.51.100.2", "198.51.100.1", "198.51.100.3"]
        assert raw.closed
        assert plane.raw == {}
    finally:
        plane.close()
        loop.close()
        os.close(r)
        os.close(w)
