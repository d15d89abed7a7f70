"""Control protocol: server + client round trips over a temporary UNIX socket."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from pyipsec.daemon.control import (
    MAX_LINE,
    ControlClient,
    ControlError,
    ControlServer,
    decode_line,
    encode,
)


async def handler(req: dict[str, Any]) -> Any:
    if req["cmd"] == "status":
        return {"ike_sas": [], "n": 1}
    if req["cmd"] == "fail":
        raise ControlError("nope")
    if req["cmd"] == "boom":
        raise RuntimeError("kaputt")
    if req["cmd"] == "weird":
        return {(1, 2): "a tuple key JSON cannot encode"}
    return {"echo": req}


def test_encode_decode() -> None:
    line = encode({"cmd": "status", "x": b"raw"})
    assert line.endswith(b"\n") and b" " not in line
    assert decode_line(line) == {"cmd": "status", "x": "b'raw'"}
    with pytest.raises(ValueError):
        decode_line(b"[1]\n")


def test_dispatch_without_socket() -> None:
    srv = ControlServer("/nonexistent/x.sock", handler)

    async def go() -> list[dict[str, Any]]:
        return [
            await srv.dispatch(b'{"cmd": "status", "id": 7}'),
            await srv.dispatch(b'{"cmd": "fail"}'),
            await srv.dispatch(b'{"cmd": "boom"}'),
            await srv.dispatch(b"not json"),
            await srv.dispatch(b'{"nocmd": 1}'),
            await srv.dispatch(b"\xff\xfe"),
        ]

    r = asyncio.run(go())
    assert r[0] == {"ok": True, "result": {"ike_sas": [], "n": 1}, "id": 7}
    assert r[1] == {"ok": False, "error": "nope"}
    assert r[2] == {"ok": False, "error": "RuntimeError: kaputt"}
    assert r[3]["ok"] is False and "invalid request" in r[3]["error"]
    assert r[4] == {"ok": False, "error": "missing 'cmd'"}
    assert r[5]["ok"] is False


def test_dispatch_deeply_nested_request() -> None:
    srv = ControlServer("/nonexistent/x.sock", handler)
    r = asyncio.run(srv.dispatch(b"[" * 200_000))
    assert r["ok"] is False and "invalid request" in r["error"]


def test_bad_clients_never_stop_the_server(tmp_path: Path) -> None:
    path = tmp_path / "ctl.sock"
    t, loop = _serve_in_thread(path)
    try:
        # an over-long request line: refused, the connection closed
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(path))
            with contextlib.suppress(OSError):  # the server may close while we send
                s.sendall(b'{"cmd":"status","pad":"' + b"x" * (MAX_LINE + 16) + b'"}\n')
            buf = b""
            while chunk := s.recv(4096):
                buf += chunk
        assert decode_line(buf) == {"ok": False, "error": "request line too long"}
        # deep nesting, a result JSON cannot encode: answered, the connection lives on
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(path))
            s.sendall(b"[" * 100_000 + b"\n" + b'{"cmd":"weird","id":3}\n{"cmd":"status"}\n')
            buf = b""
            while buf.count(b"\n") < 3:
                buf += s.recv(4096)
        nested, weird, status = (decode_line(x) for x in buf.splitlines())
        assert nested["ok"] is False and "invalid request" in nested["error"]
        assert weird["ok"] is False and "not encodable" in weird["error"] and weird["id"] == 3
        assert status["ok"] is True
        # and the server still answers new clients
        assert ControlClient(path, timeout=5).call("status") == {"ike_sas": [], "n": 1}
    finally:
        loop.call_soon_threadsafe(loop.stop)
        t.join(5)


def _serve_in_thread(path: Path) -> tuple[threading.Thread, asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    srv = ControlServer(path, handler)

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(srv.start())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(srv.close())
        loop.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert ready.wait(5)
    return t, loop


def test_round_trip_and_permissions(tmp_path: Path) -> None:
    path = tmp_path / "run" / "ctl.sock"
    t, loop = _serve_in_thread(path)
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        c = ControlClient(path, timeout=5)
        assert c.call("status") == {"ike_sas": [], "n": 1}
        assert c.call("up", name="gcm", child=None) == {"echo": {"cmd": "up", "name": "gcm"}}
        with pytest.raises(ControlError, match="nope"):
            c.call("fail")
        # several requests on one connection, answered in order; blank lines ignored
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(path))
            s.sendall(b'{"cmd":"status","id":1}\n\n{"cmd":"fail","id":2}\n')
            buf = b""
            while buf.count(b"\n") < 2:
                buf += s.recv(4096)
        a, b = (decode_line(x) for x in buf.splitlines())
        assert a["id"] == 1 and a["ok"] and b["id"] == 2 and not b["ok"]
        # a second server on the same live socket must refuse
        with pytest.raises(OSError, match="another daemon"):
            asyncio.run(ControlServer(path, handler).start())
    finally:
        loop.call_soon_threadsafe(loop.stop)
        t.join(5)
    assert not path.exists()


def test_stale_socket_replaced_and_non_socket_refused(tmp_path: Path) -> None:
    path = tmp_path / "ctl.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()  # stale: nobody listens

    async def go() -> None:
        srv = ControlServer(path, handler)
        await srv.start()
        await srv.close()

    asyncio.run(go())
    path.write_text("not a socket")
    with pytest.raises(OSError, match="not a socket"):
        asyncio.run(go())


def test_client_errors(tmp_path: Path) -> None:
    with pytest.raises(ControlError, match="is the daemon running"):
        ControlClient(tmp_path / "none.sock").call("status")
    path = tmp_path / "silent.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(4)
    try:
        with pytest.raises(ControlError, match="no answer"):
            ControlClient(path, timeout=0.2).call("status")
        srv.accept()[0].close()  # the timed-out connection

        def answer(data: bytes) -> None:
            conn, _ = srv.accept()
            conn.recv(1024)
            conn.sendall(data)
            conn.close()

        for data, msg in [
            (b"", "without answering"),
            (b"garbage\n", "invalid response"),
            (b'{"ok": false}\n', "request failed"),
        ]:
            th = threading.Thread(target=answer, args=(data,))
            th.start()
            with pytest.raises(ControlError, match=msg):
                ControlClient(path, timeout=2).call("status")
            th.join()
    finally:
        srv.close()
        os.unlink(path)


def test_close_ends_a_client_whose_task_has_not_run_yet(tmp_path: Path) -> None:
    """A client accepted just before the daemon closes: its task is cancelled and
    awaited, not destroyed pending with its coroutine never awaited."""
    import gc
    import warnings

    path = tmp_path / "ctl.sock"

    async def main() -> None:
        srv = ControlServer(path, handler)
        await srv.start()
        _, writer = await asyncio.open_unix_connection(str(path))
        srv._accept(asyncio.StreamReader(), writer)  # accepted; its task has not run
        await srv.close()
        assert not srv._clients

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(main())
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)]
