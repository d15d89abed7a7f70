"""The control socket: newline-delimited JSON over a UNIX stream socket.

Protocol (one JSON object per line, UTF-8, each request answered by one response line,
in order; a connection may carry any number of requests)::

    -> {"cmd": "status"}
    <- {"ok": true, "result": {...}}
    -> {"cmd": "up", "name": "gcm", "child": "net"}     # child optional
    -> {"cmd": "down", "name": "gcm"}
    -> {"cmd": "rekey", "name": "gcm", "child": "net"}   # or "ike": true; neither = all children
    -> {"cmd": "liveness", "name": "gcm", "timeout": 30}
    -> {"cmd": "reload"}
    -> {"cmd": "pools", "leases": true}                 # virtual IP pools; "name" optional
    -> {"cmd": "stop"}
    <- {"ok": false, "error": "unknown connection 'x'"}

A request may carry an ``"id"`` member, which is echoed in the response.  A request line
longer than :data:`MAX_LINE` (1 MiB) is answered with an error and the connection closed;
no request, however malformed, ends the server.  The socket
file is created with mode 0600; its directory is created with mode 0700 when it does
not exist yet (an existing directory is left alone).  A stale socket file (nobody
listening) is replaced; a live one makes the daemon refuse to start.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

__all__ = [
    "MAX_LINE",
    "ControlClient",
    "ControlError",
    "ControlServer",
    "Handler",
    "decode_line",
    "encode",
]

log = logging.getLogger("pyipsec.cfg")

MAX_LINE = 1 << 20
Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class ControlError(Exception):
    """A request failed: the daemon answered ``ok: false`` or could not be reached."""


def encode(obj: dict[str, Any]) -> bytes:
    """One protocol line (compact JSON + newline)."""
    return json.dumps(obj, separators=(",", ":"), default=str).encode() + b"\n"


def decode_line(line: bytes) -> dict[str, Any]:
    """Parse one request/response line; ValueError when it is not a JSON object."""
    obj = json.loads(line.decode("utf-8"))
    if not isinstance(obj, dict):
        raise ValueError("expected a JSON object")
    return obj


def _encode_response(resp: dict[str, Any]) -> bytes:
    """``encode(resp)``, or an error response when the result cannot be JSON-encoded."""
    try:
        return encode(resp)
    except (TypeError, ValueError, RecursionError) as e:
        log.error("control response not encodable: %s", e)
        err: dict[str, Any] = {"ok": False, "error": f"response not encodable: {e}"}
        if "id" in resp:
            err["id"] = resp["id"]
        return encode(err)


def _check_live(path: Path) -> bool:
    """True when something listens on ``path``."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(0.5)
        s.connect(str(path))
    except OSError:
        return False
    finally:
        s.close()
    return True


class ControlServer:
    """Serves the control protocol; ``handler(request) -> result`` does the work.

    The handler raises :class:`ControlError` (or any exception) to answer ``ok: false``.
    """

    def __init__(self, path: str | Path, handler: Handler) -> None:
        self.path = Path(path)
        self.handler = handler
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        d = self.path.parent
        if not d.exists():
            d.mkdir(mode=0o700, parents=True)
        if self.path.exists() or self.path.is_symlink():
            if not stat.S_ISSOCK(self.path.lstat().st_mode):
                raise OSError(errno.EEXIST, f"{self.path} exists and is not a socket")
            if _check_live(self.path):
                raise OSError(errno.EADDRINUSE, f"another daemon listens on {self.path}")
            self.path.unlink()
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._accept, path=str(self.path), limit=MAX_LINE
            )
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        log.info("control socket %s", self.path)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        track_client(self._clients, self._serve(reader, writer), writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    writer.write(encode({"ok": False, "error": "request line too long"}))
                    break
                except ConnectionError:
                    break
                if not line:
                    break
                if not line.strip():
                    continue
                resp = await self.dispatch(line)
                writer.write(_encode_response(resp))
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception:  # a bad client never takes the server (or the daemon) down
            log.exception("control connection failed")

    async def dispatch(self, line: bytes) -> dict[str, Any]:
        """Answer one request line (also usable without a socket, e.g. in tests)."""
        try:
            req = decode_line(line)
        except (ValueError, RecursionError) as e:  # RecursionError: absurdly deep nesting
            return {"ok": False, "error": f"invalid request: {e}"}
        resp: dict[str, Any]
        if not isinstance(req.get("cmd"), str):
            resp = {"ok": False, "error": "missing 'cmd'"}
        else:
            try:
                resp = {"ok": True, "result": await self.handler(req)}
            except ControlError as e:
                resp = {"ok": False, "error": str(e)}
            except Exception as e:
                log.exception("control command %r failed", req.get("cmd"))
                resp = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        if "id" in req:
            resp["id"] = req["id"]
        return resp

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            clients = list(self._clients)
            for t in clients:
                t.cancel()
            if clients:
                await asyncio.gather(*clients, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


class ControlClient:
    """Blocking client for the CLI: ``ControlClient(path).call("status")``."""

    def __init__(self, path: str | Path, timeout: float = 10.0) -> None:
        self.path = str(path)
        self.timeout = timeout

    def request(self, req: dict[str, Any]) -> dict[str, Any]:
        """Send one request, return the raw response object."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            try:
                s.connect(self.path)
            except OSError as e:
                raise ControlError(
                    f"cannot connect to {self.path}: {e.strerror or e} (is the daemon running?)"
                ) from None
            s.sendall(encode(req))
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
                if len(buf) > 64 * MAX_LINE:
                    raise ControlError("response too long")
        except TimeoutError:
            raise ControlError(f"no answer from {self.path} within {self.timeout:g}s") from None
        finally:
            s.close()
        if not buf:
            raise ControlError("the daemon closed the connection without answering")
        try:
            return decode_line(buf)
        except ValueError as e:
            raise ControlError(f"invalid response: {e}") from None

    def call(self, cmd: str, **args: Any) -> Any:
        """Send ``cmd`` with ``args``; return ``result`` or raise :class:`ControlError`."""
        resp = self.request({"cmd": cmd, **{k: v for k, v in args.items() if v is not None}})
        if not resp.get("ok"):
            raise ControlError(str(resp.get("error", "request failed")))
        return resp.get("result")


def track_client(
    tasks: set[asyncio.Task[None]],
    serve: Coroutine[Any, Any, None],
    writer: asyncio.StreamWriter,
) -> None:
    """Run a unix-socket server's connection handler as a task known from the moment the
    client is accepted, so that closing the server also ends one that has not run yet
    (else it is destroyed pending, its coroutine never awaited); the connection is
    closed when the task ends, however it ends."""
    task = asyncio.get_running_loop().create_task(serve)
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    task.add_done_callback(lambda _: _close_quietly(writer))


def _close_quietly(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.close()
