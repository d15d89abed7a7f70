"""The VICI commands that change the daemon's configuration: ``load-conn``,
``unload-conn``, ``get-conns`` and the credential commands ``swanctl --load-all``
sends (in this order: [``clear-creds``], ``get-keys``, ``get-shared``,
``load-cert`` per file of ``x509*/``, ``load-key`` per file of ``private/`` ...,
``load-shared`` per ``secrets.ike*`` section, ``unload-key`` / ``unload-shared`` of
what is no longer there; ``get-authorities`` ...; ``get-pools`` ...; ``get-conns``,
``load-conn`` per connection, ``unload-conn`` of the rest).

Connections loaded here live next to those of the configuration file (which VICI
never changes: ``get-conns`` lists only VICI's, as charon lists only its VICI
backend's, so ``swanctl --load-all`` never unloads the file's connections) and
survive ``pyipsec reload``.  They reach the IKE core the way a reload does
(:meth:`pyipsec.daemon.commands.Commands.apply_config`).

SAs of an unloaded or changed connection: the core deletes every IKE SA of a
connection that is removed or changed (their SAs are bound to the configuration they
were made with), where charon deletes only the Child SAs of ``start_action = start``
children and keeps the others with the old configuration.  A ``load-conn`` that
changes nothing touches nothing.

Credential changes are applied to the connections (their PSK or keys may change) a
moment after the last credential command (:data:`SETTLE`), so the burst of
``swanctl --load-all --clear`` (clear, then load the same again) leaves unchanged
connections and their SAs alone.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..config.loader import ConfigError, _check_pool_refs, _check_radius_servers, _Ctx
from ..config.model import ConnectionConfig
from .commands import unsupported_config
from .control import ControlError
from .vici_codec import text
from .vici_conns import connection_from_vici
from .vici_creds import ViciCredentials

if TYPE_CHECKING:
    from .runtime import Daemon

__all__ = ["CREDENTIAL_COMMANDS", "SETTLE", "ViciLoader"]

log = logging.getLogger("pyipsec.cfg")

#: seconds after the last credential command before connections are re-derived
SETTLE = 0.3

Reply = dict[str, Any]

#: the commands :meth:`ViciLoader.credential_command` handles
CREDENTIAL_COMMANDS = ("load-shared", "unload-shared", "load-cert", "load-key", "unload-key",
                       "clear-creds", "flush-certs")  # fmt: skip


class ViciLoader:
    """Connections and credentials loaded over VICI, for one daemon."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon
        self.creds = ViciCredentials()
        self.messages: dict[str, dict[str, Any]] = {}  # load-conn requests, by name
        self.conns: dict[str, ConnectionConfig] = {}
        self._settle: asyncio.TimerHandle | None = None
        self._applied: set[str] = set()  # VICI's names in the daemon's configuration
        daemon.cmds.extra_connections = self.connections

    def connections(self) -> tuple[ConnectionConfig, ...]:
        return tuple(self.conns.values())

    def close(self) -> None:
        if self._settle is not None:
            self._settle.cancel()
            self._settle = None

    # ------------------------------------------------------------ connections

    def _file_connections(self) -> tuple[ConnectionConfig, ...]:
        vici = self._applied | set(self.conns)
        return tuple(c for c in self.d.config.connections if c.name not in vici)

    def _apply(self, start_changed: bool = True) -> None:
        new = replace(self.d.config, connections=self._file_connections() + self.connections())
        self.d.cmds.apply_config(new, start_changed=start_changed)
        self._applied = set(self.conns)

    def load_conn(self, req: dict[str, Any]) -> Reply:
        self.flush()  # credentials first: their changes belong to the connection
        try:
            conn = connection_from_vici(req, self.creds)
        except ConfigError as e:
            return _fail(_errmsg(e))
        problem = self._clash(conn)
        if problem:
            return _fail(problem)
        self.messages[conn.name] = req
        old = self.conns.get(conn.name)
        self.conns[conn.name] = conn
        if old == conn:
            log.info("vici: connection %s loaded again, unchanged", conn.name)
            return {"success": "yes"}
        self._apply()
        log.info("vici: connection %s %s", conn.name, "replaced" if old else "loaded")
        return {"success": "yes"}

    def _clash(self, conn: ConnectionConfig) -> str:
        """Why ``conn`` cannot join the running configuration ("" = it can)."""
        if any(c.name == conn.name for c in self._file_connections()):
            return (
                f"connection '{conn.name}' is defined in the configuration file "
                f"{self.d.config_path or ''}; VICI does not replace it (hint: rename it)"
            )
        alone = replace(self.d.config, connections=(conn,))
        ctx = _Ctx()
        _check_pool_refs(ctx, [conn], self.d.config.pools,
                         define="load it first: swanctl --load-pools; or define "
                                "[pools.{name}] in the configuration file")  # fmt: skip
        _check_radius_servers(ctx, alone)  # eap-radius: [eap_radius] of the file
        issues = ctx.errors + unsupported_config(alone)
        return "; ".join(str(i) for i in issues)

    def unload_conn(self, req: dict[str, Any]) -> Reply:
        name = text(req, "name")
        if not name:
            return _fail("unload: missing connection name")
        if name not in self.conns:
            why = " (it is in the configuration file)" if any(
                c.name == name for c in self.d.config.connections) else ""  # fmt: skip
            return _fail(f"unload: connection '{name}' not found{why}")
        del self.conns[name]
        self.messages.pop(name, None)
        self._apply()
        log.info("vici: connection %s unloaded", name)
        return {"success": "yes"}

    def get_conns(self) -> Reply:
        return {"conns": list(self.conns)}

    # ------------------------------------------------------------ credentials

    def changed(self) -> None:
        """A credential command changed the set: re-derive the connections soon."""
        if not self.conns:
            return
        if self._settle is not None:
            self._settle.cancel()
        self._settle = self.d.loop.call_later(SETTLE, self.flush)

    def flush(self) -> None:
        """Re-derive every VICI connection from its message and the current
        credentials, now; apply what changed."""
        if self._settle is None:
            return
        self._settle.cancel()
        self._settle = None
        changed = False
        for name, msg in self.messages.items():
            try:
                conn = connection_from_vici(msg, self.creds, strict_creds=False)
            except ConfigError as e:  # pragma: no cover - it loaded before
                log.error("vici: connection %s cannot be re-derived: %s", name, e)
                continue
            if conn != self.conns.get(name):
                log.info("vici: credentials of connection %s changed", name)
                self.conns[name] = conn
                changed = True
        if changed:
            self._apply(start_changed=False)

    def credential_command(self, name: str, req: dict[str, Any]) -> Reply:
        """``load-shared``, ``unload-shared``, ``load-cert``, ``load-key``,
        ``unload-key``, ``clear-creds``, ``flush-certs``."""
        c = self.creds
        out: Reply = {"success": "yes"}
        try:
            if name == "load-shared":
                c.load_shared(req)
            elif name == "unload-shared":
                c.unload_shared(req)
            elif name == "load-cert":
                c.load_cert(req)
            elif name == "load-key":
                out["id"] = c.load_key(req)
            elif name == "unload-key":
                c.unload_key(req)
            elif name == "clear-creds":
                c.clear()
            elif name == "flush-certs":
                c.flush(text(req, "type") or "ANY")
            else:  # pragma: no cover - the server registers only these
                raise ControlError(f"unknown credential command {name}")
        except ControlError as e:
            log.warning("vici %s: %s", name, e)
            return _fail(str(e))
        self.changed()
        return out

    def get_keys(self) -> Reply:
        return {"keys": list(self.creds.keys)}

    def get_shared(self) -> Reply:
        return {"keys": self.creds.get_shared()}


def _fail(msg: str) -> Reply:
    return {"success": "no", "errmsg": msg}


def _errmsg(e: ConfigError) -> str:
    """One line per problem, as swanctl prints ``errmsg`` as is."""
    return "; ".join(str(i) for i in e.errors)
