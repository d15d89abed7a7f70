"""A VICI server: strongSwan's Versatile IKE Control Interface, so that ``swanctl`` and
the ``vici`` client libraries can drive a pyipsec daemon (README "Using strongSwan's
tools").

A subset of charon's commands (``src/libcharon/plugins/vici/README.md``), mapped onto
the daemon's control verbs (:mod:`pyipsec.daemon.commands`) and the core's status:

* ``version``, ``stats``, ``get-algorithms``, ``reload-settings``;
* ``list-sas`` (streams ``list-sa`` events), ``list-conns`` (streams ``list-conn``);
* ``initiate`` (``child``/``ike``, ``timeout`` in ms: 0 waits, -1 returns at once;
  the daemon's log records about that connection's IKE SAs streamed as ``control-log``
  to a client registered for them, until the command completes);
* ``terminate`` (``ike``, ``ike-id``, ``child``, ``child-id``; waits until the SAs
  are gone unless ``timeout`` is -1, with their log records as ``control-log``);
* ``rekey`` (``ike``, ``ike-id``, ``child``, ``child-id``);
* ``load-conn``, ``unload-conn``, ``get-conns`` and the credential commands of
  ``swanctl --load-all`` (:mod:`pyipsec.daemon.vici_load`, translation in
  :mod:`~pyipsec.daemon.vici_conns`, credentials in :mod:`~pyipsec.daemon.vici_creds`);
* ``load-pool``, ``unload-pool``, ``get-pools`` (:mod:`pyipsec.daemon.vici_pools`).

Events: ``ike-updown``, ``child-updown``, ``ike-rekey``, ``child-rekey`` from the
core's events, ``log`` (the daemon's log records at INFO and above), ``control-log``.
Other commands are answered CMD_UNKNOWN, other events EVENT_UNKNOWN.

Robustness: a malformed packet (or one longer than 512 KiB) closes that client with a
log line; a client whose unread output exceeds :data:`MAX_CLIENT_BUFFER` is dropped --
events are written without ever waiting, so no client can block the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import platform
import re
import socket
import stat
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config.model import ChildConfig, ConnectionConfig, Mode, is_eap
from ..ikev2 import events as ev
from ..ikev2.api import ChildSaView, IkeCore, IkeSaView
from ..ikev2.state import ChildSaState, IkeSaState
from .commands import StatusFilter
from .control import ControlError, track_client
from .dataplane import TrapPolicy, sel_str
from .logsetup import IKE_SA_PREFIX
from .vici_certs import CertInventory, list_cert_events
from .vici_codec import (
    MAX_SEGMENT,
    PacketType,
    ViciError,
    decode_packet,
    encode_packet,
    frame,
    printable,
)
from .vici_load import CREDENTIAL_COMMANDS, ViciLoader
from .vici_pools import ViciPools

if TYPE_CHECKING:
    from .runtime import Daemon

__all__ = ["EVENTS", "MAX_CLIENT_BUFFER", "ViciServer", "ike_sa_message", "parse_suite"]

log = logging.getLogger("pyipsec.cfg")

#: a client with more unread output than this is dropped (it does not read its events)
MAX_CLIENT_BUFFER = 4 << 20
#: IKE SAs per ``list-sas`` page: the loop runs other work between pages
LIST_PAGE = 200
#: how long a streaming command waits for a slow client to read a page
DRAIN_TIMEOUT = 30.0
#: ``initiate`` with ``timeout = 0`` (charon: wait indefinitely) waits this long
INITIATE_MAX_WAIT = 24 * 3600.0

#: event names a client may register for
EVENTS = frozenset(
    {"log", "control-log", "ike-updown", "child-updown", "ike-rekey", "child-rekey",
     "list-sa", "list-conn", "list-policy", "list-cert", "list-authority"}
)  # fmt: skip

_IKE_STATES = {
    "init-sent": "CONNECTING",
    "init-done": "CONNECTING",
    "eap": "CONNECTING",
    "auth-sent": "CONNECTING",
    "established": "ESTABLISHED",
    "rekeying": "REKEYING",
    "rekeyed": "REKEYED",
    "deleting": "DELETING",
    "deleted": "DESTROYING",
    "failed": "DESTROYING",
}

_LOG_GROUPS = {
    "pyipsec.ike": "IKE",
    "pyipsec.child": "CHD",
    "pyipsec.cfg": "CFG",
    "pyipsec.net": "NET",
    "pyipsec.esp": "ESP",
}

# ---------------------------------------------------------------- algorithm names

_ENCR = {"gcm8": "AES_GCM_8", "gcm12": "AES_GCM_12", "gcm16": "AES_GCM_16",
         "gcm": "AES_GCM_16", "ccm8": "AES_CCM_8", "ccm12": "AES_CCM_12",
         "ccm16": "AES_CCM_16", "ctr": "AES_CTR", "": "AES_CBC"}  # fmt: skip
_INTEG = {
    "sha1": "HMAC_SHA1_96",
    "sha256": "HMAC_SHA2_256_128",
    "sha384": "HMAC_SHA2_384_192",
    "sha512": "HMAC_SHA2_512_256",
    "md5": "HMAC_MD5_96",
    "aesxcbc": "AES_XCBC_96",
    "aescmac": "AES_CMAC_96",
}
_PRF = {
    "prfsha1": "PRF_HMAC_SHA1",
    "prfsha256": "PRF_HMAC_SHA2_256",
    "prfsha384": "PRF_HMAC_SHA2_384",
    "prfsha512": "PRF_HMAC_SHA2_512",
    "prfmd5": "PRF_HMAC_MD5",
    "prfaesxcbc": "PRF_AES128_XCBC",
    "prfaescmac": "PRF_AES128_CMAC",
}
_KE = {
    "modp768": "MODP_768",
    "modp1024": "MODP_1024",
    "modp1536": "MODP_1536",
    "modp2048": "MODP_2048",
    "modp3072": "MODP_3072",
    "modp4096": "MODP_4096",
    "modp6144": "MODP_6144",
    "modp8192": "MODP_8192",
    "ecp256": "ECP_256",
    "ecp384": "ECP_384",
    "ecp521": "ECP_521",
    "x25519": "CURVE_25519",
    "curve25519": "CURVE_25519",
    "x448": "CURVE_448",
    "curve448": "CURVE_448",
    "mlkem512": "ML_KEM_512",
    "mlkem768": "ML_KEM_768",
    "mlkem1024": "ML_KEM_1024",
}


def parse_suite(suite: str) -> dict[str, Any]:
    """pyipsec's suite string (``aes256gcm16-prfsha256-x25519``) as charon's
    ``encr-alg``/``encr-keysize``/``integ-alg``/``prf-alg``/``dh-group``/``esn`` keys."""
    out: dict[str, Any] = {}
    for tok in suite.lower().split("-"):
        if tok.startswith("aes") and tok[3:6] in ("128", "192", "256") and "encr-alg" not in out:
            mode = tok[6:]
            if mode in _ENCR:
                out["encr-alg"], out["encr-keysize"] = _ENCR[mode], int(tok[3:6])
                continue
        if tok in ("chacha20poly1305", "chacha20poly1305-256") and "encr-alg" not in out:
            out["encr-alg"], out["encr-keysize"] = "CHACHA20_POLY1305", 256
        elif tok == "3des" and "encr-alg" not in out:
            out["encr-alg"] = "3DES_CBC"
        elif tok in _INTEG and "integ-alg" not in out:
            out["integ-alg"] = _INTEG[tok]
        elif tok in _PRF and "prf-alg" not in out:
            out["prf-alg"] = _PRF[tok]
        elif tok in _KE and "dh-group" not in out:
            out["dh-group"] = _KE[tok]
        elif tok == "esn":
            out["esn"] = 1
    return out


def _algorithms() -> dict[str, Any]:
    """``get-algorithms``: what the suite parser knows, all implemented by pyipsec."""
    enc = {f"{n}": "pyipsec" for n in sorted(set(_ENCR.values()) | {"CHACHA20_POLY1305"})}
    return {
        "encryption": enc,
        "integrity": {n: "pyipsec" for n in sorted(set(_INTEG.values()))},
        "prf": {n: "pyipsec" for n in sorted(set(_PRF.values()))},
        "ke": {n: "pyipsec" for n in sorted(set(_KE.values()))},
    }


# ---------------------------------------------------------------- status -> VICI


def _yes(v: object) -> str | None:
    """charon lists flags only when set."""
    return "yes" if v else None


def _secs(v: object) -> int | None:
    return max(0, int(v)) if isinstance(v, int | float) and not isinstance(v, bool) else None


def ike_sa_message(sa: dict[str, Any], now: float) -> dict[str, Any]:
    """One IKE SA of the core's ``status`` (with the daemon's relative ``rekey_in``)
    as the inside of a ``list-sa`` section, without ``child-sas``."""
    local, remote = sa.get("local") or {}, sa.get("remote") or {}
    nat = sa.get("nat") or {}
    est = sa.get("established")
    msg: dict[str, Any] = {
        "uniqueid": sa.get("id"),
        "version": 2,
        "state": _IKE_STATES.get(str(sa.get("state")), str(sa.get("state")).upper()),
        "local-host": local.get("address"),
        "local-port": local.get("port"),
        "local-id": local.get("id") or local.get("address"),
        "remote-host": remote.get("address"),
        "remote-port": remote.get("port"),
        "remote-id": remote.get("id") or remote.get("address"),
        "initiator": _yes(sa.get("role") == "initiator"),
        "initiator-spi": sa.get("spi_i"),
        "responder-spi": sa.get("spi_r"),
        "nat-local": _yes(nat.get("local")),
        "nat-remote": _yes(nat.get("remote")),
        "nat-fake": _yes(nat.get("forced")),
        "nat-any": _yes(nat.get("local") or nat.get("remote") or nat.get("forced")),
    }
    vips = sa.get("vips") or {}
    msg["local-vips"] = list(vips.get("local") or []) or None  # RFC 7296 §2.19
    msg["remote-vips"] = list(vips.get("remote") or []) or None
    msg.update(parse_suite(str(sa.get("suite") or "")))
    msg.pop("esn", None)
    if isinstance(est, int | float) and not isinstance(est, bool):
        msg["established"] = max(0, int(now - est))
    rekey = sa.get("rekey_in")
    if rekey is None and isinstance(sa.get("rekey_at"), int | float):
        rekey = sa["rekey_at"] - now
    msg["rekey-time"] = _secs(rekey)
    return msg


class _Ids:
    """charon's small unique ids for Child SAs (pyipsec names them by inbound SPI) and
    reqids per configured child."""

    def __init__(self) -> None:
        self.child: dict[int, int] = {}
        self.by_id: dict[int, int] = {}
        self.reqid: dict[tuple[str, str], int] = {}
        self._next = 1

    def child_id(self, spi_in: int) -> int:
        uid = self.child.get(spi_in)
        if uid is None:
            uid = self.child[spi_in] = self._next
            self.by_id[uid] = spi_in
            self._next += 1
        return uid

    def forget(self, spi_in: int) -> None:
        uid = self.child.pop(spi_in, None)
        if uid is not None:
            self.by_id.pop(uid, None)

    def reqid_of(self, conn: str, child: str) -> int:
        return self.reqid.setdefault((conn, child), len(self.reqid) + 1)


def _spi(v: object) -> int | None:
    try:
        return int(str(v), 16)
    except ValueError:
        return None


# ---------------------------------------------------------------- clients


def _ike_views(core: IkeCore, ike: str | None, ike_id: int | None) -> list[IkeSaView]:
    """The IKE SAs an ``ike`` name and/or ``ike-id`` select: by id one lookup, by
    name the connection's SAs."""
    if ike_id is None:
        return core.ike_sas(ike)
    v = core.ike_sa(ike_id)
    return [v] if v is not None and ike in (None, v.conn) else []


class _Client:
    def __init__(self, server: ViciServer, writer: asyncio.StreamWriter, n: int) -> None:
        self.server = server
        self.writer = writer
        self.n = n
        self.events: set[str] = set()
        self.control_level: int | None = None  # an initiate/terminate is active
        # ... and what it is about: the core's log records of these connections and
        # IKE SAs become this client's control-log events until the command completes
        self.control_conns: set[str] = set()
        self.control_ids: set[int] = set()
        self.closed = False

    def send(self, ptype: PacketType, name: str = "", msg: dict[str, Any] | None = None) -> bool:
        """Queue one packet; never waits.  False (and the client dropped) when its
        unread output grew beyond MAX_CLIENT_BUFFER."""
        if self.closed:
            return False
        try:
            data = frame(encode_packet(ptype, name, msg))
        except ViciError as e:
            log.error("vici: cannot encode %s %s: %s", ptype.name, name, e)
            return True
        return self._write(data)

    def _write(self, data: bytes) -> bool:
        self.writer.write(data)
        if self.writer.transport.get_write_buffer_size() > MAX_CLIENT_BUFFER:
            self.drop("does not read its messages (write buffer full)")
            return False
        return True

    def respond(self, command: str, res: dict[str, Any]) -> None:
        """The CMD_RESPONSE of ``command``; one too large for a VICI packet (e.g.
        ``get-pools`` with the leases of a huge pool) becomes an error reply, so the
        client is never left waiting."""
        if self.closed:
            return
        if isinstance(res.get("errmsg"), str):
            res["errmsg"] = printable(res["errmsg"])
        try:
            data = frame(encode_packet(PacketType.CMD_RESPONSE, "", res))
        except ViciError as e:
            log.warning("vici client %d: %s reply not sent: %s", self.n, command, e)
            why = printable(f"{command}: the reply exceeds VICI's packet size ({e}) "
                            "(hint: ask for less, e.g. one pool by name)")  # fmt: skip
            data = frame(encode_packet(PacketType.CMD_RESPONSE, "", {"success": "no",
                                                                    "errmsg": why}))
        self._write(data)

    def event(self, name: str, msg: dict[str, Any]) -> bool:
        if name not in self.events:
            return False
        return self.send(PacketType.EVENT, name, msg)

    def control_log(
        self, msg: str, level: int = 1, group: str = "CFG", ike: str = "", ike_id: int | None = None
    ) -> None:
        if self.control_level is not None and level <= self.control_level:
            self.event(
                "control-log",
                {"group": group, "level": level, "ikesa-name": ike or None,
                 "ikesa-uniqueid": ike_id, "msg": printable(msg)},
            )  # fmt: skip

    def control_start(self, req: dict[str, Any], conns: Iterable[str] = ()) -> None:
        """An initiate/terminate begins: its control-log level and scope."""
        self.control_level = _int(req, "loglevel") if "loglevel" in req else 1
        self.control_conns = set(conns)
        self.control_ids = set()

    def control_end(self) -> None:
        self.control_level = None
        self.control_conns.clear()
        self.control_ids.clear()

    def control_record(self, record: logging.LogRecord, msg: str) -> None:
        """A log record of the daemon: a control-log event when it is about an IKE SA
        (or connection) of the active command."""
        if self.control_level is None:
            return
        conn, ike_id = record_sa(msg)
        if conn is not None and conn in self.control_conns:
            if ike_id is not None:
                self.control_ids.add(ike_id)  # an IKE SA of the command's connection
        elif ike_id is None or ike_id not in self.control_ids:
            return
        self.control_log(
            msg, _record_level(record), _LOG_GROUPS.get(record.name, "DMN"), conn or "", ike_id
        )

    async def drain(self) -> bool:
        """Wait (this client's task only) until its output is read; False: dropped."""
        if self.closed:
            return False
        try:
            await asyncio.wait_for(self.writer.drain(), DRAIN_TIMEOUT)
        except (TimeoutError, ConnectionError):
            self.drop("does not read its messages")
            return False
        return not self.closed

    def drop(self, why: str) -> None:
        if self.closed:
            return
        self.closed = True
        log.warning("vici client %d dropped: %s", self.n, why)
        with contextlib.suppress(ValueError):
            self.server.clients.remove(self)
        self.writer.transport.abort()


class _LogForwarder(logging.Handler):
    """The daemon's log records as ``log`` events (INFO and above), and those about
    the IKE SAs of an active ``initiate``/``terminate`` as that client's
    ``control-log`` events (every level the loggers let through)."""

    def __init__(self, server: ViciServer) -> None:
        super().__init__(logging.DEBUG)
        self.server = server
        self.thread = threading.get_ident()
        self.busy = False

    def emit(self, record: logging.LogRecord) -> None:
        if self.busy or threading.get_ident() != self.thread:
            return
        self.busy = True
        try:
            clients = [c for c in self.server.clients if "log" in c.events]
            control = [c for c in self.server.clients if c.control_level is not None]
            if not clients and not control:
                return
            text = record.getMessage()
            msg = {
                "group": _LOG_GROUPS.get(record.name, "DMN"),
                "level": _record_level(record),
                "thread": 0,
                "msg": printable(text),
            }
            if record.levelno >= logging.INFO:
                for c in clients:
                    c.event("log", msg)
            for c in control:
                c.control_record(record, text)
        except Exception:
            self.handleError(record)
        finally:
            self.busy = False


Handler = Callable[[_Client, dict[str, Any]], Awaitable[dict[str, Any]]]

#: how the core and the runtime name an IKE SA or a connection in their log lines
_SA_INLINE = re.compile(r"(?:IKE SA|peer of) (\S+) #(\d+)\b")  # runtime
_CONN_LINE = re.compile(r"(?:initiating|child|restart of) ([^\s/(]+)")  # runtime, manager


def record_sa(msg: str) -> tuple[str | None, int | None]:
    """(connection, IKE SA id) a log line is about, as far as it says."""
    if (m := IKE_SA_PREFIX.match(msg)) is not None:
        return m.group(2), int(m.group(1))
    if (m := _SA_INLINE.search(msg)) is not None:
        return m.group(1), int(m.group(2))
    if (m := _CONN_LINE.match(msg)) is not None:
        return m.group(1), None
    return None, None


def _record_level(record: logging.LogRecord) -> int:
    """charon's levels: 0 basic (warnings, errors), 1 audit, 2 control flow."""
    if record.levelno >= logging.WARNING:
        return 0
    return 1 if record.levelno >= logging.INFO else 2


class ViciServer:
    """The VICI socket of one :class:`~pyipsec.daemon.runtime.Daemon`."""

    def __init__(self, daemon: Daemon, path: str | Path) -> None:
        self.d = daemon
        self.path = Path(path)
        self.clients: list[_Client] = []
        self.ids = _Ids()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._n = 0
        self._log: _LogForwarder | None = None
        # what the running terminate commands wait for: ("ike", id) / ("child", spi_in)
        self._gone: dict[tuple[str, int], list[asyncio.Future[None]]] = {}
        self.commands: dict[str, Handler] = {
            "version": self.cmd_version,
            "stats": self.cmd_stats,
            "list-sas": self.cmd_list_sas,
            "list-conns": self.cmd_list_conns,
            "list-policies": self.cmd_list_policies,
            "list-certs": self.cmd_list_certs,
            "install": self.cmd_install,
            "list-authorities": self.cmd_list_authorities,
            "get-counters": self.cmd_get_counters,
            "reset-counters": self.cmd_reset_counters,
            "uninstall": self.cmd_uninstall,
            "get-conns": self.cmd_get_conns,
            "get-algorithms": self.cmd_get_algorithms,
            "initiate": self.cmd_initiate,
            "terminate": self.cmd_terminate,
            "rekey": self.cmd_rekey,
            "reload-settings": self.cmd_reload_settings,
        }
        # configuration and credentials (swanctl --load-all): vici_load.py
        self.loader = ViciLoader(daemon)
        self.pools = ViciPools(daemon)
        self.commands.update(
            {name: self._credential_handler(name) for name in CREDENTIAL_COMMANDS}
        )
        self.commands.update({
            "load-conn": self.cmd_load_conn,
            "unload-conn": self.cmd_unload_conn,
            "get-keys": self.cmd_get_keys,
            "get-shared": self.cmd_get_shared,
            "get-authorities": self.cmd_get_authorities,
            "load-authority": self.cmd_load_authority,
            "unload-authority": self.cmd_unload_authority,
            "get-pools": self.cmd_get_pools,
            "load-pool": self.cmd_load_pool,
            "unload-pool": self.cmd_unload_pool,
        })  # fmt: skip

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        p = self.path
        if not p.parent.exists():
            p.parent.mkdir(mode=0o700, parents=True)
        if p.exists() or p.is_symlink():
            if not stat.S_ISSOCK(p.lstat().st_mode):
                raise OSError(errno.EEXIST, f"{p} exists and is not a socket")
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.settimeout(0.5)
                s.connect(str(p))
                raise OSError(errno.EADDRINUSE, f"another daemon listens on {p}")
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    raise
            finally:
                s.close()
            p.unlink()
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._accept, path=str(p))
        finally:
            os.umask(old)
        os.chmod(p, 0o600)
        self._log = _LogForwarder(self)
        logging.getLogger("pyipsec").addHandler(self._log)
        log.info("vici socket %s", p)

    async def close(self) -> None:
        self.loader.close()
        if self._log is not None:
            logging.getLogger("pyipsec").removeHandler(self._log)
            self._log = None
        if self._server is not None:
            self._server.close()
            self._server = None
            with contextlib.suppress(OSError):
                self.path.unlink()
        for c in list(self.clients):
            c.closed = True
            c.writer.transport.abort()
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self.clients.clear()

    # ------------------------------------------------------------ connections

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        track_client(self._tasks, self._serve(reader, writer), writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._n += 1
        client = _Client(self, writer, self._n)
        self.clients.append(client)
        try:
            while not client.closed:
                try:
                    head = await reader.readexactly(4)
                    (length,) = struct.unpack("!I", head)
                    if length > MAX_SEGMENT:
                        raise ViciError(f"segment of {length} octets exceeds {MAX_SEGMENT}")
                    pkt = decode_packet(await reader.readexactly(length))
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                except ViciError as e:
                    log.warning("vici client %d: malformed packet (%s): closing it", client.n, e)
                    break
                await self._dispatch(client, pkt.type, pkt.name, pkt.message)
        except asyncio.CancelledError:
            pass
        except Exception:  # a bad client never takes the server (or the daemon) down
            log.exception("vici client %d failed", client.n)
        finally:
            client.closed = True
            with contextlib.suppress(ValueError):
                self.clients.remove(client)

    async def _dispatch(
        self, client: _Client, ptype: PacketType, name: str, msg: dict[str, Any]
    ) -> None:
        if ptype is PacketType.CMD_REQUEST:
            handler = self.commands.get(name)
            if handler is None:
                log.debug("vici client %d: unknown command %r", client.n, name)
                client.send(PacketType.CMD_UNKNOWN)
                return
            try:
                res = await handler(client, msg)
            except ControlError as e:
                res = {"success": "no", "errmsg": str(e)}
            except Exception as e:
                log.exception("vici command %s failed", name)
                res = {"success": "no", "errmsg": f"{type(e).__name__}: {e}"}
            client.respond(name, res)
        elif ptype in (PacketType.EVENT_REGISTER, PacketType.EVENT_UNREGISTER):
            if name not in EVENTS:
                client.send(PacketType.EVENT_UNKNOWN)
                return
            if ptype is PacketType.EVENT_REGISTER:
                client.events.add(name)
            else:
                client.events.discard(name)
            client.send(PacketType.EVENT_CONFIRM)
        else:  # a server-side packet type from a client
            log.warning("vici client %d sent a %s packet: closing it", client.n, ptype.name)
            client.drop("protocol violation")

    # ------------------------------------------------------------ helpers

    def _registered(self, event: str) -> list[_Client]:
        return [c for c in self.clients if event in c.events and not c.closed]

    def _conn(self, name: str) -> ConnectionConfig:
        for c in self.d.config.connections:
            if c.name == name:
                return c
        raise ControlError(f"no config named '{name}'")

    def _conn_of_child(self, child: str) -> ConnectionConfig:
        for c in self.d.config.connections:
            if any(ch.name == child for ch in c.children):
                return c
        raise ControlError(f"CHILD_SA config '{child}' not found")

    def _child_message(self, ch: dict[str, Any], conn: str, now: float) -> dict[str, Any]:
        spi_in = _spi(ch.get("spi_in"))
        dpc = self.d.dp.children.get(spi_in) if spi_in is not None else None
        installed = ch.get("installed")
        msg: dict[str, Any] = {
            "name": ch.get("name"),
            "uniqueid": self.ids.child_id(spi_in) if spi_in is not None else 0,
            "reqid": self.ids.reqid_of(conn, str(ch.get("name"))),
            "state": str(ch.get("state", "")).upper(),
            "mode": str(ch.get("mode", "tunnel")).upper(),
            "protocol": "ESP",
            "encap": _yes(ch.get("encap")),
            "spi-in": ch.get("spi_in"),
            "spi-out": ch.get("spi_out"),
        }
        msg.update(parse_suite(str(ch.get("suite") or "")))
        if dpc is not None:  # the data plane's counters are the live ones
            msg["bytes-in"], msg["packets-in"] = dpc.bytes_in, dpc.packets_in
            msg["bytes-out"], msg["packets-out"] = dpc.bytes_out, dpc.packets_out
        else:
            for k in ("bytes_in", "packets_in", "bytes_out", "packets_out"):
                msg[k.replace("_", "-")] = int(ch.get(k) or 0)
        msg["rekey-time"] = _secs(ch.get("rekey_in"))
        msg["life-time"] = _secs(ch.get("expire_in"))
        msg["install-time"] = (
            max(0, int(now - installed)) if isinstance(installed, int | float) else 0
        )
        msg["local-ts"] = list(ch.get("local_ts") or [])
        msg["remote-ts"] = list(ch.get("remote_ts") or [])
        return msg

    def _info_child_message(self, info: ev.ChildSaInfo, now: float) -> dict[str, Any]:
        msg: dict[str, Any] = {
            "name": info.child,
            "uniqueid": self.ids.child_id(info.spi_in),
            "reqid": self.ids.reqid_of(info.conn, info.child),
            "state": "INSTALLED",
            "mode": info.mode.value.upper(),
            "protocol": "ESP",
            "encap": _yes(info.encap),
            "spi-in": f"{info.spi_in:08x}",
            "spi-out": f"{info.spi_out:08x}",
        }
        msg.update(parse_suite(info.suite))
        msg.update({"bytes-in": 0, "packets-in": 0, "bytes-out": 0, "packets-out": 0})
        msg["install-time"] = 0
        msg["local-ts"] = [sel_str(s) for s in info.local_ts]
        msg["remote-ts"] = [sel_str(s) for s in info.remote_ts]
        return msg

    def _ike_pages(self, conn: str | None) -> Iterable[list[dict[str, Any]]]:
        offset = 0
        while True:
            page = self.d.cmds.ike_status(  # the status verb's own view
                self.d.now(), StatusFilter(conn=conn, offset=offset, limit=LIST_PAGE)
            )
            page = [sa for sa in page if "error" not in sa]
            yield page
            if len(page) < LIST_PAGE:
                return
            offset += LIST_PAGE

    # ------------------------------------------------------------ commands

    async def cmd_version(self, client: _Client, req: dict[str, Any]) -> dict[str, Any]:
        u = platform.uname()
        return {
            "daemon": "pyipsec",
            "version": _version(),
            "sysname": u.system,
            "release": u.release,
            "machine": u.machine,
        }

    async def cmd_stats(self, client: _Client, req: dict[str, Any]) -> dict[str, Any]:
        counts = self.d.core.sa_counts()  # counters: no walk over the SAs
        up = max(0.0, time.time() - self.d.started)
        zero = {"critical": 0, "high": 0, "medium": 0, "low": 0}
        return {
            "uptime": {
                "running": _human(up),
                "since": time.strftime("%b %d %H:%M:%S %Y", time.localtime(self.d.started)),
            },
            # one asyncio loop does all the work
            "workers": {"total": 1, "idle": 0, "active": dict(zero, medium=1)},
            "queues": zero,
            "scheduled": int(self.d.core.next_timer() is not None),
            "ikesas": {"total": counts.ike, "half-open": counts.half_open},
            "plugins": ["pyipsec-ikev2", "pyipsec-esp", "vici"],
        }

    async def cmd_get_algorithms(self, client: _Client, req: dict[str, Any]) -> dict[str, Any]:
        return _algorithms()

    async def cmd_get_conns(self, client: _Client, req: dict[str, Any]) -> dict[str, Any]:
        # charon: the connections of its VICI backend only (swanctl --load-conns unloads
        # the listed ones it does not find in swanctl.conf); the file's stay out of it
        return self.loader.get_conns()

    async def cmd_load_conn(self, client: _Client, req: dict[str, Any]) -> dict[str, Any]:
        return self.loader.load_conn(req)

    async def cmd_unload_conn(self, client: _Client, req: dict[str, Any]) -> dict[str, Any]:
        return self.loader.unload_conn(req)

    def _credential_handler(self, name: str) -> Handler:
        async def handler(client: _Client, req: dict[str, Any]) -> dict[str, Any]:
            return self.loader.credential_command(name, req)

        return handler

    async def cmd_get_keys(self, client: _Client, req: dict[str, Any]) -> dict[str, Any]:
        return self.loader.get_keys()

    async def cmd_get_shared(self, client: _Client, req: dict[str, Any]) -> dict[str, Any]:
        return self.loader.get_shared()

    async def cmd_get_authorities(self, client: _Client, req: dict[str, Any]) -> dict[str, Any]:
        return {"authorities": []}

    async def cmd_load_authority(self, client: _Client, req: dict[str, Any]) -> dict[str, Any]:
        names = ", ".join(k for k in req) or "?"
        return {"success": "no", "errmsg": f"authority {names}: authorities sections "
                "(CRL/OCSP URIs per CA) are not supported by pyipsec (hint: put the CA "
                "certificate into x509ca/ and CRLs into x509crl/)"}  # fmt: skip

    async def cmd_unload_authority(self, client: _Client, req: dict[str, Any]) -> dict[str, Any]:
        return {"success": "no", "errmsg": f"authority '{_text(req, 'name')}' not found"}

    async def cmd_get_pools(self, client: _Client, req: dict[str, Any]) -> dict[str, Any]:
        return self.pools.get_pools(req)

    async def cmd_load_pool(self, client: _Client, req: dict[str, Any]) -> dict[str, Any]:
        return self.pools.load_pool(req)

    async def cmd_unload_pool(self, client: _Client, req: dict[str, Any]) -> dict[str, Any]:
        return self.pools.unload_pool(req)

    async def cmd_list_conns(self, client: _Client, req: dict[str, Any]) -> dict[str, Any]:
        only = _text(req, "ike")
        for c in self.d.config.connections:
            if only is not None and c.name != only:
                continue
            if not client.event("list-conn", {c.name: _conn_message(c)}) and client.closed:
                break
        return {}

    async def cmd_list_policies(self, client: _Client, req: dict[str, Any]) -> dict[str, Any]:
        """``swanctl --list-pols``: the trap policies (``trap = yes``); pyipsec has no
        bypass or drop policies (``pass``, ``drop``), so they list nothing."""
        if req.get("trap") is None:
            return {}
        ike, child = _text(req, "ike"), _text(req, "child")
        modes = {(c.name, ch.name): ch.mode for c in self.d.config.connections
                 for ch in c.children}  # fmt: skip
        for trap, local_ts, remote_ts in self.d.dp.trap_policies():
            if (ike is not None and trap.conn != ike) or (
                child is not None and trap.child != child
            ):
                continue
            mode = modes.get((trap.conn, trap.child), Mode.TUNNEL)
            msg = {
                "child": trap.child,
                "reqid": self.ids.reqid_of(trap.conn, trap.child),
                "ike": trap.conn,
                "mode": mode.value.upper(),
                "local-ts": [sel_str(s) for s in local_ts],
                "remote-ts": [sel_str(s) for s in remote_ts],
            }
            if not client.event("list-policy", {f"{trap.conn}/{trap.child}": msg}):
                break
        return {}

    def _child_config(self, req: dict[str, Any]) -> tuple[ConnectionConfig, ChildConfig]:
        """The ``child`` (under ``ike`` when given, else the first with that name)."""
        child = _text(req, "child")
        if not child:
            raise ControlError("missing CHILD_SA configuration name")
        ike = _text(req, "ike")
        conn = self._conn(ike) if ike is not None else self._conn_of_child(child)
        for ch in conn.children:
            if ch.name == child:
                return conn, ch
        raise ControlError(f"CHILD_SA config '{child}' not found")

    async def cmd_install(self, client: _Client, req: dict[str, Any]) -> dict[str, Any]:
        """``swanctl --install``: a trap policy for a child config (RFC 4301 §4.4.1:
        the first matching packet starts its IKE SA), as ``start_action = trap`` would;
        installing it again changes nothing.  It stays until ``uninstall`` or the next
        reload of the configuration."""
        conn, ch = self._child_config(req)
        self.d.dp.add_trap(ch.local_ts, ch.remote_ts, TrapPolicy(conn.name, ch.name))
        log.info("trap policy for %s/%s installed (vici)", conn.name, ch.name)
        return {"success": "yes"}

    async def cmd_uninstall(self, client: _Client, req: dict[str, Any]) -> dict[str, Any]:
        """``swanctl --uninstall``: remove the trap policy of a child config."""
        child = _text(req, "child") or ""
        ike = _text(req, "ike")
        conns = [c for c in self.d.config.connections if ike is None or c.name == ike]
        for c in conns:
            if any(ch.name == child for ch in c.children) and self.d.dp.remove_trap(
                c.name, child
            ):
                log.info("trap policy for %s/%s uninstalled (vici)", c.name, child)
                return {"success": "yes"}
        return {"success": "no", "errmsg": f"policy '{child}' does not exist"}

    async def cmd_list_authorities(self, client: _Client, req: dict[str, Any]) -> dict[str, Any]:
        """``swanctl --list-authorities``: no ``list-authority`` events -- pyipsec has no
        authorities sections (``load-authority`` is refused; CA certificates and CRLs
        are listed by ``list-certs``)."""
        return {}

    async def cmd_get_counters(self, client: _Client, req: dict[str, Any]) -> dict[str, Any]:
        """``swanctl --counters``: the IKE counters (:mod:`pyipsec.ikev2.counters`), global
        (no ``name``), of one connection, or (``all = yes``) of every connection that
        has counters, with charon's names."""
        every = _yes_value(req.get("all"))
        found = self.d.core.counters(_text(req, "name"), every=every)
        if not found and not every:
            return {"counters": {}, "success": "no",
                    "errmsg": "no counters found for this connection"}  # fmt: skip
        return {"counters": found, "success": "yes"}

    async def cmd_reset_counters(self, client: _Client, req: dict[str, Any]) -> dict[str, Any]:
        """``swanctl --counters --reset``: zero the global counters, forget one
        connection's (``name``), or (``all = yes``) both for every connection."""
        self.d.core.reset_counters(_text(req, "name"), every=_yes_value(req.get("all")))
        return {"success": "yes"}

    async def cmd_list_certs(self, client: _Client, req: dict[str, Any]) -> dict[str, Any]:
        """``swanctl --list-certs``: every certificate, CRL and raw public key the daemon
        knows (:mod:`~pyipsec.daemon.vici_certs`), as ``list-cert`` events."""
        self.loader.flush()  # what load-cert loaded a moment ago is listed too
        inventory = CertInventory.of(self.d.config.connections, self.loader.creds)
        for msg in list_cert_events(inventory, req):
            if not client.event("list-cert", msg):
                break
        return {}

    async def cmd_list_sas(self, client: _Client, req: dict[str, Any]) -> dict[str, Any]:
        if "list-sa" not in client.events:
            return {}
        ike, child = _text(req, "ike"), _text(req, "child")
        ike_id, child_id = _int(req, "ike-id"), _int(req, "child-id")
        for page in self._ike_pages(ike):
            now = self.d.now()
            for sa in page:
                if ike_id is not None and sa.get("id") != ike_id:
                    continue
                msg = ike_sa_message(sa, now)
                kids: dict[str, Any] = {}
                for ch in sa.get("children") or []:
                    cm = self._child_message(ch, str(sa.get("name")), now)
                    if child is not None and cm["name"] != child:
                        continue
                    if child_id is not None and cm["uniqueid"] != child_id:
                        continue
                    kids[f"{cm['name']}-{cm['uniqueid']}"] = cm
                msg["child-sas"] = kids
                if not client.event("list-sa", {str(sa.get("name")): msg}):
                    return {}
            if not await client.drain():
                return {}
        return {}

    async def cmd_initiate(self, client: _Client, req: dict[str, Any]) -> dict[str, Any]:
        self.loader.flush()  # credentials loaded a moment ago apply to this initiate
        child, ike = _text(req, "child"), _text(req, "ike")
        timeout_ms = _int(req, "timeout") or 0
        if child is None and ike is None:
            raise ControlError("missing configuration name to initiate")
        conn = self._conn(ike) if ike is not None else self._conn_of_child(str(child))
        if child is not None and not any(ch.name == child for ch in conn.children):
            raise ControlError(f"CHILD_SA config '{child}' not found")
        client.control_start(req, (conn.name,))
        what = f"CHILD_SA '{child}'" if child else f"IKE_SA '{conn.name}'"
        try:
            client.control_log(f"initiating {what} of '{conn.name}'", ike=conn.name, group="IKE")
            if timeout_ms < 0:  # charon: return at once
                self.d.initiate(conn.name, child)
                return {"success": "yes"}
            timeout = timeout_ms / 1000 if timeout_ms > 0 else INITIATE_MAX_WAIT
            try:
                res = await self.d.cmds.up({"name": conn.name, "child": child, "timeout": timeout})
            except ControlError as e:
                client.control_log(f"initiating {what} failed: {e}", 0, "IKE", conn.name)
                return {"success": "no", "errmsg": str(e)}
            client.control_log(
                f"{what} established in {res.get('elapsed_ms')} ms", ike=conn.name, group="IKE"
            )
            return {"success": "yes"}
        finally:
            client.control_end()

    async def cmd_terminate(self, client: _Client, req: dict[str, Any]) -> dict[str, Any]:
        """Delete the selected IKE SAs (``ike``, ``ike-id``) or Child SAs (``child``,
        ``child-id``) and, unless ``timeout`` is -1, wait until they are gone (at most
        ``timeout`` ms; 0 = charon's "indefinitely"), streaming their log lines."""
        ike, child = _text(req, "ike"), _text(req, "child")
        ike_id, child_id = _int(req, "ike-id"), _int(req, "child-id")
        timeout_ms = _int(req, "timeout") or 0
        if ike is None and ike_id is None and child is None and child_id is None:
            raise ControlError("missing terminate selector")
        client.control_start(req)
        try:
            if ike is not None or ike_id is not None:
                gone = self._terminate_ikes(client, ike, ike_id)
            else:
                gone = self._terminate_children(client, child, child_id)
            self.d.pump()
            n = len(gone)
            if n and timeout_ms >= 0:
                timeout = timeout_ms / 1000 if timeout_ms > 0 else INITIATE_MAX_WAIT
                done, _ = await asyncio.wait(gone, timeout=timeout)
                if len(done) < n:
                    return {"success": "no", "matches": n, "terminated": len(done),
                            "errmsg": "terminate timed out"}  # fmt: skip
        finally:
            client.control_end()
            self._forget_gone()
        if not n:
            return {"success": "no", "matches": 0, "terminated": 0,
                    "errmsg": "no matching SAs to terminate found"}  # fmt: skip
        return {"success": "yes", "matches": n, "terminated": n}

    def _terminate_ikes(
        self, client: _Client, ike: str | None, ike_id: int | None
    ) -> list[asyncio.Future[None]]:
        core, now = self.d.core, self.d.now()
        gone = []
        for v in _ike_views(core, ike, ike_id):
            client.control_conns.add(v.conn)
            client.control_ids.add(v.ike_id)
            gone.append(self._gone_future(("ike", v.ike_id)))
            client.control_log(
                f"deleting IKE_SA {v.conn}[{v.ike_id}]", ike=v.conn, ike_id=v.ike_id
            )
            core.terminate(v.ike_id, now)
        return gone

    def _terminate_children(
        self, client: _Client, child: str | None, child_id: int | None
    ) -> list[asyncio.Future[None]]:
        core, now = self.d.core, self.d.now()
        gone = []
        for ch in self._child_views(child, child_id):
            if ch.state is ChildSaState.DELETED:
                continue
            client.control_ids.add(ch.ike_id)
            gone.append(self._gone_future(("child", ch.spi_in)))
            client.control_log(
                f"deleting CHILD_SA {ch.child} {{{ch.spi_in:08x}}}", ike=ch.conn, ike_id=ch.ike_id
            )
            core.delete_child(ch.ike_id, ch.spi_in, now)
        return gone

    def _child_views(self, child: str | None, child_id: int | None) -> list[ChildSaView]:
        """The Child SAs a ``child`` name and/or ``child-id`` select: by id one lookup
        (the VICI id -> SPI map, then the core), by name a walk."""
        core = self.d.core
        if child_id is None:
            views = core.child_sas()
        else:
            spi = self.ids.by_id.get(child_id)
            found = core.child_sa(spi) if spi is not None else None
            views = [found] if found is not None else []
        return [v for v in views if child is None or v.child == child]

    def _gone_future(self, key: tuple[str, int]) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = self.d.loop.create_future()
        self._gone.setdefault(key, []).append(fut)
        return fut

    def _forget_gone(self) -> None:
        for key in [k for k, fs in self._gone.items() if all(f.done() for f in fs)]:
            del self._gone[key]

    def _resolve_gone(self, e: ev.Event) -> None:
        """An SA a ``terminate`` waits for is gone."""
        if isinstance(e, ev.IkeSaDeleted | ev.IkeSaFailed):
            key = ("ike", e.ike_id)
        elif isinstance(e, ev.ChildSaDeleted):
            key = ("child", e.spi_in)
        else:
            return
        for fut in self._gone.pop(key, []):
            if not fut.done():
                fut.set_result(None)

    async def cmd_rekey(self, client: _Client, req: dict[str, Any]) -> dict[str, Any]:
        core, now = self.d.core, self.d.now()
        ike, child = _text(req, "ike"), _text(req, "child")
        ike_id, child_id = _int(req, "ike-id"), _int(req, "child-id")
        n = 0
        if ike is not None or ike_id is not None:
            for v in _ike_views(core, ike, ike_id):
                if v.state is IkeSaState.ESTABLISHED:
                    core.rekey_ike(v.ike_id, now)
                    n += 1
        elif child is not None or child_id is not None:
            for ch in self._child_views(child, child_id):
                if ch.state is ChildSaState.INSTALLED:
                    core.rekey_child(ch.ike_id, ch.spi_in, now)
                    n += 1
        else:
            raise ControlError("missing rekey selector")
        self.d.pump()
        if not n:
            return {"success": "no", "matches": 0, "errmsg": "no matching SAs to rekey found"}
        return {"success": "yes", "matches": n}

    async def cmd_reload_settings(self, client: _Client, req: dict[str, Any]) -> dict[str, Any]:
        self.d.cmds.reload()
        return {"success": "yes"}

    # ------------------------------------------------------------ events

    def on_event(self, e: ev.Event) -> None:
        """Forward one of the core's events to the registered clients (never raises)."""
        if not self.clients:
            return
        try:
            if self._gone:
                self._resolve_gone(e)
            self._on_event(e)
        except Exception:
            log.exception("vici: forwarding %s failed", type(e).__name__)

    def _emit(self, name: str, msg: dict[str, Any]) -> None:
        for c in self._registered(name):
            c.event(name, msg)

    def _on_event(self, e: ev.Event) -> None:
        now = self.d.now()
        match e:
            case ev.IkeSaEstablished() if self._registered("ike-updown"):
                sa = {
                    "id": e.ike_id,
                    "state": "established",
                    "role": "initiator" if e.initiator else "responder",
                    "local": {"address": e.local[0], "port": e.local[1], "id": e.local_id},
                    "remote": {"address": e.remote[0], "port": e.remote[1], "id": e.remote_id},
                    "nat": {"local": e.nat_local, "remote": e.nat_remote},
                    "established": now,
                }
                self._emit("ike-updown", {"up": "yes", e.conn: ike_sa_message(sa, now)})
            case ev.IkeSaDeleted() | ev.IkeSaFailed() if self._registered("ike-updown"):
                msg = {"uniqueid": e.ike_id, "version": 2, "state": "DESTROYING"}
                self._emit("ike-updown", {e.conn or "": msg})
            case ev.ChildSaInstalled() if self._registered("child-updown"):
                i = e.info
                cm = self._info_child_message(i, now)
                self._emit("child-updown", {"up": "yes", i.conn: self._ike_stub(i, cm)})
            case ev.ChildSaDeleted():
                uid = self.ids.child.get(e.spi_in, 0)
                if self._registered("child-updown"):
                    cm = {"name": e.child, "uniqueid": uid, "state": "DELETED",
                          "spi-in": f"{e.spi_in:08x}", "spi-out": f"{e.spi_out:08x}"}  # fmt: skip
                    ike = {"uniqueid": e.ike_id, "version": 2,
                           "child-sas": {f"{e.child}-{uid}": cm}}  # fmt: skip
                    self._emit("child-updown", {e.conn or "": ike})
                self.ids.forget(e.spi_in)
            case ev.IkeSaRekeyed() if self._registered("ike-rekey"):
                self._emit(
                    "ike-rekey",
                    {e.conn or "": {"old": {"uniqueid": e.old_id, "version": 2},
                                    "new": {"uniqueid": e.new_id, "version": 2}}},
                )  # fmt: skip
            case ev.ChildSaRekeyed() if self._registered("child-rekey"):
                i = e.info
                old = {"uniqueid": self.ids.child.get(e.old_spi_in, 0),
                       "spi-in": f"{e.old_spi_in:08x}"}  # fmt: skip
                new = self._info_child_message(i, now)
                ike = {"uniqueid": i.ike_id, "version": 2,
                       "child-sas": {i.child: {"old": old, "new": new}}}  # fmt: skip
                self._emit("child-rekey", {i.conn: ike})
            case _:
                pass

    def _ike_stub(self, i: ev.ChildSaInfo, cm: dict[str, Any]) -> dict[str, Any]:
        return {
            "uniqueid": i.ike_id,
            "version": 2,
            "state": "ESTABLISHED",
            "local-host": i.local[0],
            "local-port": i.local[1],
            "remote-host": i.remote[0],
            "remote-port": i.remote[1],
            "child-sas": {f"{i.child}-{cm['uniqueid']}": cm},
        }


# ---------------------------------------------------------------- small helpers


def _auth_class(kind: str) -> str:
    """charon's ``auth_class_names`` of pyipsec's auth kinds (``list-conns``)."""
    if is_eap(kind):
        return "EAP"
    return {"psk": "pre-shared key", "pubkey": "public key"}.get(kind, kind)


def _auth_round(kind: str, ident: str, eap_id: str) -> dict[str, Any]:
    """One ``local-1`` / ``remote-1`` section of ``list-conn``: the class, for EAP the
    method as charon's ``eap_type_names`` (swanctl prints it) and the ``eap_id``."""
    out: dict[str, Any] = {"class": _auth_class(kind), "id": ident or "%any"}
    if is_eap(kind) and kind != "eap":
        out["eap-type"] = "EAP_" + kind[4:].upper()  # EAP_MD5, EAP_MSCHAPV2, EAP_TLS, ...
    if eap_id:
        out["eap_id"] = eap_id
    return out


def _conn_message(c: ConnectionConfig) -> dict[str, Any]:
    def ts(sels: Iterable[Any]) -> list[str]:
        out = []
        for s in sels:
            try:
                out.append(sel_str(s))
            except Exception:
                out.append(str(s))
        return out

    lt = c.lifetimes
    return {
        "local_addrs": list(c.local_addrs) or ["%any"],
        "remote_addrs": list(c.remote_addrs) or ["%any"],
        "local_port": c.local_port,
        "remote_port": c.remote_port,
        "version": "IKEv2",
        "reauth_time": int(lt.rekey_time) if c.reauth else 0,
        "rekey_time": 0 if c.reauth else int(lt.rekey_time),
        "unique": "UNIQUE_NO",
        "dpd_delay": int(c.dpd.interval) if c.dpd.enabled else 0,
        "local-1": _auth_round(c.local_auth, c.local_id, c.local_eap_id),
        "remote-1": _auth_round(c.remote_auth, c.remote_id, c.remote_eap_id),
        "children": {
            ch.name: {
                "mode": ch.mode.value.upper(),
                "rekey_time": int(ch.lifetimes.rekey_time),
                "rekey_bytes": ch.lifetimes.rekey_bytes,
                "rekey_packets": ch.lifetimes.rekey_packets,
                "dpd_action": (ch.dpd_action or c.dpd.action).value,
                "start_action": ch.start_action.value,
                "close_action": ch.close_action.value,
                "local-ts": ts(ch.local_ts),
                "remote-ts": ts(ch.remote_ts),
            }
            for ch in c.children
        },
    }


def _yes_value(v: object) -> bool:
    """A boolean of a request as charon reads it (``settings_value_as_bool``): yes,
    true, enabled or 1, in any case."""
    return isinstance(v, bytes) and v.strip().lower() in (b"yes", b"true", b"enabled", b"1")


def _text(req: dict[str, Any], key: str) -> str | None:
    v = req.get(key)
    return v.decode(errors="replace") if isinstance(v, bytes) else None


def _int(req: dict[str, Any], key: str) -> int | None:
    t = _text(req, key)
    if t is None or not t.strip():
        return None
    try:
        return int(t)
    except ValueError:
        raise ControlError(f"'{key}' must be a number, got {t!r}") from None


def _human(secs: float) -> str:
    """charon's ``%V``: ``5 minutes``, ``2 hours``, ``3 days``."""
    s = int(secs)
    for unit, n in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if s >= n:
            v = s // n
            return f"{v} {unit}{'s' if v != 1 else ''}"
    return f"{s} second{'s' if s != 1 else ''}"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pyipsec")
    except PackageNotFoundError:
        return "0.1.0"

