"""Logging set-up and the UDP / raw ESP socket wrappers (loopback only)."""

from __future__ import annotations

import io
import logging
import os
import socket

import pytest

from pyipsec.daemon.logsetup import setup_logging
from pyipsec.daemon.sockets import RawEspSocket, UdpSocket


def test_setup_logging_levels() -> None:
    buf = io.StringIO()
    setup_logging({"default": "warning", "ike": "debug"}, stream=buf)
    setup_logging({"default": "warning", "ike": "debug", "esp": "error"}, stream=buf)
    root = logging.getLogger("pyipsec")
    assert sum(1 for h in root.handlers if getattr(h, "_pyipsec", False)) == 1
    logging.getLogger("pyipsec.ike").debug("ike detail")
    logging.getLogger("pyipsec.net").info("net info hidden")
    logging.getLogger("pyipsec.esp").warning("esp warning hidden")
    text = buf.getvalue()
    assert "[pyipsec.ike] ike detail" in text and "hidden" not in text
    setup_logging(verbose=True, stream=buf)
    assert root.level == logging.DEBUG
    assert logging.getLogger("pyipsec.ike").level == logging.NOTSET
    h = setup_logging({}, stream=buf)
    # leave logging as other tests (caplog) expect it
    root.removeHandler(h)
    root.propagate = True
    root.setLevel(logging.NOTSET)
    for sub in ("ike", "child", "esp", "net", "cfg"):
        logging.getLogger(f"pyipsec.{sub}").setLevel(logging.NOTSET)


def _pair(addr: str, peer: str) -> tuple[UdpSocket, socket.socket]:
    us = UdpSocket(addr, 0, natt=True)
    fam = socket.AF_INET6 if ":" in peer else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.bind((peer, 0))
    s.settimeout(2)
    return us, s


@pytest.mark.parametrize(("wild", "lo"), [("0.0.0.0", "127.0.0.1"), ("::", "::1")])
def test_udp_wildcard_learns_local_address(wild: str, lo: str) -> None:
    try:
        us, s = _pair(wild, lo)
    except OSError as e:  # pragma: no cover - no IPv6 on this host
        pytest.skip(str(e))
    try:
        assert us.wildcard and us.port > 0 and "UdpSocket" in repr(us)
        buf = bytearray(2048)
        assert us.recv_into(buf) is None  # drained
        s.sendto(b"hello", (lo, us.port))
        import select

        select.select([us.sock], [], [], 2)
        n, src, local = us.recv_into(buf)  # type: ignore[misc]
        assert bytes(buf[:n]) == b"hello" and local == lo and src[1] == s.getsockname()[1]
        assert us.sendto(b"back", src, local)  # with pktinfo
        assert s.recv(100) == b"back"
        assert us.sendto(b"plain", src)
        assert s.recv(100) == b"plain"
    finally:
        us.close()
        s.close()


def test_udp_wildcard_remembers_each_local_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """The PKTINFO names are remembered per control message: datagrams to two local
    addresses each report their own, again and again, also when the bounded memory
    has to forget one for the other."""
    import select

    from pyipsec.daemon import sockets

    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))

    def local_of_datagram(us: UdpSocket, to: str) -> str:
        peer.sendto(b"x", (to, us.port))
        select.select([us.sock], [], [], 2)
        r = us.recv_into(bytearray(100))
        assert r is not None
        return r[2]

    sockets_made = [UdpSocket("0.0.0.0", 0, natt=False)]
    try:
        us = sockets_made[0]
        for lo in ["127.0.0.1", "127.0.0.2", "127.0.0.1", "127.0.0.2"]:
            assert local_of_datagram(us, lo) == lo
        assert sorted(us._local_names.values()) == ["127.0.0.1", "127.0.0.2"]
        monkeypatch.setattr(sockets, "LOCAL_NAMES_MAX", 1)  # forgets at each new one
        us = UdpSocket("0.0.0.0", 0, natt=False)
        sockets_made.append(us)
        for lo in ["127.0.0.1", "127.0.0.2", "127.0.0.2", "127.0.0.1"]:
            assert local_of_datagram(us, lo) == lo
            assert list(us._local_names.values()) == [lo]
    finally:
        for us in sockets_made:
            us.close()
        peer.close()


def test_udp_bound_socket_and_errors() -> None:
    us, s = _pair("127.0.0.1", "127.0.0.1")
    try:
        assert not us.wildcard
        s.sendto(b"x", ("127.0.0.1", us.port))
        import select

        select.select([us.sock], [], [], 2)
        n, src, local = us.recv_into(bytearray(100))  # type: ignore[misc]
        assert (n, local) == (1, "127.0.0.1")
        assert not us.sendto(b"x" * 70000, src)  # too big: EMSGSIZE -> dropped, logged
    finally:
        us.close()
        s.close()
    with pytest.raises(OSError):
        UdpSocket("192.0.2.123", 0, natt=False)  # not a local address
    # a receive error other than "drained" ends the drain instead of raising into the loop
    us = UdpSocket("127.0.0.1", 0, natt=False)
    us.sock.close()
    assert us.recv_segments_into(bytearray(100)) is None


@pytest.mark.skipif(os.geteuid() != 0, reason="raw sockets need root")
def test_raw_esp_socket_loopback() -> None:
    rs = RawEspSocket(socket.AF_INET)
    try:
        assert rs.recv() is None
        esp = b"\x00\x00\x12\x34" + bytes(28)
        assert rs.sendto(esp, "127.0.0.1")
        import select

        select.select([rs.sock], [], [], 2)
        got = rs.recv()
        assert got == (esp, "127.0.0.1")
        assert not rs.sendto(esp, "256.0.0.1")
    finally:
        rs.close()
    assert rs.recv() is None  # closed: the error is logged, not raised


@pytest.mark.skipif(os.geteuid() != 0, reason="raw sockets need root")
def test_raw_esp_socket_connected_send(monkeypatch: pytest.MonkeyPatch) -> None:
    """send() goes out on a connected socket per peer (cached); the unconnected socket
    still receives; bad peers fall back to sendto, and so does a full peer table."""
    import select

    from pyipsec.daemon import sockets

    rs = RawEspSocket(socket.AF_INET)
    try:
        esp = b"\x00\x00\x56\x78" + bytes(28)
        assert rs.send(esp, "127.0.0.1") and rs.send(esp, "127.0.0.1")
        tx = rs._tx["127.0.0.1"]
        assert tx is not None and tx is rs._connected("127.0.0.1")  # cached
        for _ in range(2):
            select.select([rs.sock], [], [], 2)
            assert rs.recv() == (esp, "127.0.0.1")
        assert not rs.send(esp, "256.0.0.1") and rs._tx["256.0.0.1"] is None
        rs.forget("127.0.0.1")
        rs.forget("198.51.100.9")  # unknown: nothing to do
        assert "127.0.0.1" not in rs._tx
        monkeypatch.setattr(sockets, "RAW_PEERS_MAX", 1)
        assert rs.send(esp, "127.0.0.1") and "127.0.0.1" not in rs._tx  # sendto
        tx.close()
        rs._tx["127.0.0.3"] = tx  # a closed socket: the error is logged, not raised
        assert not rs.send(esp, "127.0.0.3")
    finally:
        rs.close()
    assert rs._tx == {}
