"""TUN device plumbing in-process: the test thread enters a private network namespace
(``setns``), so the device, its addresses and routes live only there."""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
from collections.abc import Iterator

import pytest

from pyipsec.daemon.tun import TunDevice, TunError, open_tun

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)"),
]
CLONE_NEWNET = 0x40000000


@contextlib.contextmanager
def inside_netns(name: str) -> Iterator[None]:
    libc = ctypes.CDLL(None, use_errno=True)
    subprocess.run(["ip", "netns", "add", name], check=True)
    orig = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        try:
            yield
        finally:
            if libc.setns(orig, CLONE_NEWNET) != 0:  # pragma: no cover
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(orig)
        os.close(target)
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_tun_in_private_namespace() -> None:
    with inside_netns(f"pyipsec-test-{os.getpid()}-tunip"):
        t = TunDevice("pyt0", 1380).open(("203.0.113.1/32", "2001:db8:a::1/128"))
        try:
            assert t.name == "pyt0" and t.index > 0 and t.fd >= 0
            assert t.add_route("203.0.113.64/26", "203.0.113.1")
            assert t.add_route("203.0.113.64/26", "203.0.113.1")
            assert t.add_route("2001:db8:b::/64")
            assert not t.add_route("203.0.113.128/26", "192.0.2.99")
            assert t.routes == ["2001:db8:b::/64", "203.0.113.64/26"]
            # a packet routed to the TUN comes out of its fd
            import socket

            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.sendto(b"x", ("203.0.113.65", 9))
            s.close()
            import select

            pkt = b""
            for _ in range(20):  # skip IPv6 router solicitations / MLD reports
                select.select([t.fd], [], [], 2)
                pkt = os.read(t.fd, 2000)
                if pkt[0] >> 4 == 4:
                    break
            assert pkt[16:20] == bytes([203, 0, 113, 65])
            t.remove_route("2001:db8:b::/64")
            t.remove_route("2001:db8:b::/64")
            assert t.routes == ["203.0.113.64/26"]
        finally:
            with t:
                pass
        assert t.fd == -1
        with pytest.raises(TunError):
            open_tun("x", path="/nonexistent/tun")
        with pytest.raises(TunError):
            open_tun("bad name with spaces too long")
        with pytest.raises(ValueError):
            TunDevice("pyt1").open(("not-an-address",))
