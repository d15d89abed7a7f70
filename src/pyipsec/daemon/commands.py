"""The control verbs (README "Control protocol"): status, up, down, rekey, liveness,
reload, pools, stop -- and the waiters that ``up`` and ``liveness`` park until the core's
events answer them."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config.loader import ConfigError, ConfigIssue, load_config
from ..config.model import ConnectionConfig, DaemonConfig, Mode, PoolConfig
from ..ikev2.state import ChildSaState, IkeSaState
from ..pools import pools_overlap
from .control import ControlError
from .routes import prune_routes

if TYPE_CHECKING:
    from .runtime import Daemon

__all__ = ["Commands", "load_daemon_config", "unsupported_config"]

log = logging.getLogger("pyipsec.net")
log_cfg = logging.getLogger("pyipsec.cfg")

# DaemonConfig fields a reload cannot apply to the running daemon (sockets, TUN, logging)
_RESTART_KEYS = (
    "eap_radius",
    "listen_addrs",
    "ike_port",
    "natt_port",
    "control_socket",
    "tun_name",
    "tun_mtu",
    "tun_addresses",
    "log_levels",
    "keylog_file",
    "cookie_threshold",
    "half_open_timeout",
    "half_open_limit",
    "cookie_threshold_ip",
    "block_threshold",
    "half_open_memory",
    "max_fragment_bytes_unauthenticated",
    "max_fragment_bytes",
    "ke_reuse_seconds",
    "ke_reuse_count",
    "metrics",
    "vici_socket",
    "log_format",
)


def _timeout_arg(req: dict[str, Any], default: float = 30.0) -> float:
    """A control request's ``timeout``: a positive, finite number of seconds."""
    v = req.get("timeout", default)
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v < math.inf:
        raise ControlError(f"'timeout' must be a positive number of seconds, got {v!r}")
    return float(v)


@dataclass(slots=True)
class _Waiter:
    conn: str
    child: str | None
    fut: asyncio.Future[dict[str, Any]]
    events: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    elapsed: float = 0.0


@dataclass(slots=True)
class _LivenessWaiter:
    ike_id: int
    fut: asyncio.Future[float]


#: ``status`` without a ``limit`` shows at most this many IKE (and Child) SAs, and says
#: ``"truncated": true`` when there are more (page with ``offset``/``limit``)
STATUS_DEFAULT_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class StatusFilter:
    """Which SAs ``status`` shows: one connection and/or peer IP, a page of them."""

    conn: str | None = None
    peer: str | None = None
    offset: int = 0
    limit: int | None = None

    @classmethod
    def from_request(cls, req: dict[str, Any]) -> StatusFilter:
        conn, peer = req.get("conn"), req.get("peer")
        offset, limit = req.get("offset", 0), req.get("limit")
        for key, v in (("conn", conn), ("peer", peer)):
            if v is not None and not isinstance(v, str):
                raise ControlError(f"status: {key!r} must be a string")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ControlError("status: 'offset' must be an integer >= 0")
        bad_limit = isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        if limit is not None and bad_limit:
            raise ControlError("status: 'limit' must be an integer >= 1")
        return cls(conn, peer, offset, limit)

    @property
    def used(self) -> bool:
        return self != StatusFilter()

    def shows(self, conn: str, peer: str) -> bool:
        return (self.conn is None or conn == self.conn) and (self.peer is None or peer == self.peer)

    def as_dict(self) -> dict[str, Any]:
        return {"conn": self.conn, "peer": self.peer, "offset": self.offset, "limit": self.limit}


class Commands:
    """The control verbs of one :class:`~pyipsec.daemon.runtime.Daemon`."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon
        self.waiters: list[_Waiter] = []
        self.liveness_waiters: list[_LivenessWaiter] = []
        # connections the configuration file does not hold (VICI load-conn): kept by reload
        self.extra_connections: Callable[[], tuple[ConnectionConfig, ...]] = tuple
        # pools the configuration file does not hold (VICI load-pool): kept by reload
        self.extra_pools: Callable[[], tuple[PoolConfig, ...]] = tuple

    async def handle_request(self, req: dict[str, Any]) -> Any:
        cmd = req["cmd"]
        if cmd == "status":
            return self.status(req)
        if cmd == "up":
            return await self.up(req)
        if cmd == "down":
            return self.down(req)
        if cmd == "reload":
            return self.reload()
        if cmd == "liveness":
            return await self.liveness(req)
        if cmd == "rekey":
            return self.rekey(req)
        if cmd == "pools":
            return self.pools(req)
        if cmd == "counters":
            return self.counters(req)
        if cmd == "stop":
            self.d.loop.call_soon(self.d.request_stop)
            return {"stopping": True}
        raise ControlError(
            f"unknown command {cmd!r} (status, up, down, rekey, liveness, reload, pools, "
            "counters, stop)"
        )

    def _conn(self, name: object) -> ConnectionConfig:
        for c in self.d.config.connections:
            if c.name == name:
                return c
        names = ", ".join(c.name for c in self.d.config.connections) or "none"
        raise ControlError(f"unknown connection {name!r} (configured: {names})")

    # ------------------------------------------------------------ waiters

    def resolve_waiters(self, conn: str, child: str | None, ok: bool, what: str) -> None:
        """An ``up`` of ``conn`` (``child``) got its answer from an event."""
        for w in list(self.waiters):
            if w.conn != conn or (child is not None and w.child not in (None, child)):
                continue
            w.events.append(what)
            w.elapsed = time.perf_counter() - w.started
            if not w.fut.done():
                w.fut.set_result({"established": ok, "events": list(w.events)})
            self.waiters.remove(w)

    def liveness_answered(self, ike_id: int, rtt: float) -> None:
        """LivenessAnswered: the round trip on the core's clock."""
        for w in [w for w in self.liveness_waiters if w.ike_id == ike_id]:
            self.liveness_waiters.remove(w)
            if not w.fut.done():
                w.fut.set_result(rtt)

    def liveness_failed(self, ike_id: int, why: str) -> None:
        """The IKE SA a ``liveness`` waits on was deleted, failed or its peer is dead."""
        for w in [w for w in self.liveness_waiters if w.ike_id == ike_id]:
            self.liveness_waiters.remove(w)
            if not w.fut.done():
                w.fut.set_exception(ControlError(f"IKE SA #{ike_id} {why}"))

    def close(self) -> None:
        """The daemon stops: every waiter gets its answer now."""
        for w in self.waiters:
            if not w.fut.done():
                w.fut.set_result({"established": False, "error": "daemon stopped"})
        self.waiters.clear()
        for lw in self.liveness_waiters:
            if not lw.fut.done():
                lw.fut.set_exception(ControlError("daemon stopped"))
        self.liveness_waiters.clear()

    # ------------------------------------------------------------ verbs

    async def up(self, req: dict[str, Any]) -> dict[str, Any]:
        conn = self._conn(req.get("name"))
        child = req.get("child")
        if child is not None and child not in [c.name for c in conn.children]:
            raise ControlError(f"connection {conn.name!r} has no child {child!r}")
        if child is None and conn.children:
            child = conn.children[0].name
        timeout = _timeout_arg(req)
        fut: asyncio.Future[dict[str, Any]] = self.d.loop.create_future()
        w = _Waiter(conn.name, child, fut)
        self.waiters.append(w)
        try:
            self.d.initiate(conn.name, child)
            res = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            res = {"established": False, "error": f"no result within {timeout:g}s"}
        finally:  # also when initiate failed or the client went away
            with contextlib.suppress(ValueError):
                self.waiters.remove(w)
        # initiate -> Child SA installed (or failure), measured inside the daemon
        res.update(conn=conn.name, child=child, elapsed_ms=round(w.elapsed * 1e3, 3))
        if not res["established"]:
            raise ControlError(
                f"{conn.name}: " + (res.get("error") or "; ".join(res.get("events", [])))
            )
        return res

    async def liveness(self, req: dict[str, Any]) -> dict[str, Any]:
        """Send an empty INFORMATIONAL request (RFC 7296 §2.4) on the connection's
        established IKE SA and wait for its answer (LivenessAnswered): the round trip
        as the core sees it (request sent -> response processed)."""
        conn = self._conn(req.get("name"))
        mgr = self.d.core
        ids = [v.ike_id for v in mgr.ike_sas(conn.name) if v.state is IkeSaState.ESTABLISHED]
        if not ids:
            raise ControlError(f"{conn.name}: no established IKE SA")
        ike_id = ids[-1]
        timeout = _timeout_arg(req)
        fut: asyncio.Future[float] = self.d.loop.create_future()
        w = _LivenessWaiter(ike_id, fut)
        self.liveness_waiters.append(w)
        try:
            mgr.liveness(ike_id, self.d.now())
            self.d.pump()
            rtt = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise ControlError(f"{conn.name}: no liveness answer within {timeout:g}s") from None
        finally:
            with contextlib.suppress(ValueError):
                self.liveness_waiters.remove(w)
        return {"conn": conn.name, "ike_id": ike_id, "rtt_ms": round(rtt * 1e3, 3)}

    def rekey(self, req: dict[str, Any]) -> dict[str, Any]:
        """Start a rekey now: the IKE SA (``ike``, RFC 7296 §1.3.2) or one (``child``) or
        all Child SAs of the connection (§1.3.3).  Returns once the CREATE_CHILD_SA
        requests are queued; ``status`` shows the new SPIs when they are done."""
        conn = self._conn(req.get("name"))
        child = req.get("child")
        ike = req.get("ike", False)
        if not isinstance(ike, bool):
            raise ControlError("rekey: 'ike' must be true or false")
        if child is not None and ike:
            raise ControlError("rekey: give either 'child' or 'ike', not both")
        if child is not None and child not in [c.name for c in conn.children]:
            raise ControlError(f"connection {conn.name!r} has no child {child!r}")
        mgr = self.d.core
        ids = [v.ike_id for v in mgr.ike_sas(conn.name) if v.state is IkeSaState.ESTABLISHED]
        if not ids:
            raise ControlError(f"{conn.name}: no established IKE SA")
        now = self.d.now()
        if ike:
            for ike_id in ids:
                mgr.rekey_ike(ike_id, now)
            self.d.pump()
            return {"conn": conn.name, "ike_sas": ids}
        started: list[dict[str, Any]] = []
        for ch in mgr.child_sas(conn.name):
            if ch.ike_id not in ids or ch.state is not ChildSaState.INSTALLED:
                continue
            if child is not None and ch.child != child:
                continue
            mgr.rekey_child(ch.ike_id, ch.spi_in, now)
            started.append({"ike_id": ch.ike_id, "child": ch.child, "spi_in": f"{ch.spi_in:08x}"})
        if not started:
            what = f"child {child!r}" if child is not None else "Child SA"
            raise ControlError(f"{conn.name}: no installed {what} to rekey")
        self.d.pump()
        return {"conn": conn.name, "child_sas": started}

    def down(self, req: dict[str, Any]) -> dict[str, Any]:
        conn = self._conn(req.get("name"))
        res = self.d.core.terminate(conn.name, self.d.now())
        self.d.pump()
        return {"conn": conn.name, "terminated": res}

    def reload(self) -> dict[str, Any]:
        """Re-read the config file: all or nothing (a bad file changes nothing).
        Connections and pools loaded over VICI (``load-conn``, ``load-pool``) stay."""
        d = self.d
        if d.config_path is None:
            raise ControlError("the daemon was not started from a file")
        try:
            new = load_daemon_config(d.config_path)
        except ConfigError as e:
            raise ControlError(str(e)) from None
        extra = self.extra_connections()
        clash = sorted({c.name for c in new.connections} & {c.name for c in extra})
        if clash:
            raise ControlError(
                f"{d.config_path}: connection {', '.join(clash)} is also loaded over VICI "
                "(hint: unload-conn it first, e.g. swanctl --unload-conn --name NAME)"
            )
        extra_pools = self.extra_pools()
        problem = _vici_pool_clash(new.pools, extra_pools)
        if problem:
            raise ControlError(f"{d.config_path}: {problem}")
        new = replace(new, connections=new.connections + extra, pools=new.pools + extra_pools)
        pool_problems = d.core.load_pools(new.pools)  # before the connections using them
        restart = self.apply_config(new)
        log_cfg.info("configuration reloaded from %s", d.config_path)
        result: dict[str, Any] = {"connections": [c.name for c in new.connections]}
        if restart:
            result["restart_needed"] = restart
        if pool_problems:
            result["pool_problems"] = pool_problems
        return result

    def apply_config(self, new: DaemonConfig, *, start_changed: bool = False) -> list[str]:
        """Make ``new`` the running configuration: the core's connections (removed or
        changed ones lose their SAs), trap policies, routes, start actions of new
        connections (``start_changed``: of changed ones too).  Returns the changed
        [daemon] keys that need a restart."""
        d = self.d
        old = {c.name: c for c in d.config.connections}
        d.core.reload(new.connections, d.now())
        # routes may have changed with the configuration: look source addresses up afresh
        d.source_addresses.forget()
        restart = [k for k in _RESTART_KEYS if getattr(new, k) != getattr(d.config, k)]
        if restart:
            log_cfg.warning(
                "reload: changed daemon settings take effect at the next start: %s",
                ", ".join(restart),
            )
        d.config = new
        d.apply_policies(new.connections)
        d.run_start_actions(
            c for c in new.connections
            if c.name not in old or (start_changed and old[c.name] != c)
        )  # fmt: skip
        d.pump()
        if d.dp.tun is not None:
            prune_routes(d.dp.tun, new.connections, d.dp.children.values())
        return restart

    def pools(self, req: dict[str, Any]) -> dict[str, Any]:
        """The virtual IP pools (RFC 7296 §2.19): range, size, online / offline / free
        counts; ``leases: true`` adds every lease, ``name`` picks one pool."""
        leases, name = req.get("leases", False), req.get("name")
        if not isinstance(leases, bool):
            raise ControlError("pools: 'leases' must be true or false")
        if name is not None and not isinstance(name, str):
            raise ControlError("pools: 'name' must be a string")
        pools = self.d.core.pools_status(leases=leases, name=name)
        if name is not None and not pools:
            names = ", ".join(p.name for p in self.d.config.pools) or "none"
            raise ControlError(f"unknown pool {name!r} (configured: {names})")
        return {"pools": pools}

    def counters(self, req: dict[str, Any]) -> dict[str, Any]:
        """The IKE counters (:mod:`pyipsec.ikev2.counters`): global, of connection
        ``name``, or (``all``) of every connection that has counters; ``reset`` zeroes
        them (the global ones, or forgets ``name``'s; with ``all`` both for all) after
        reporting what they were."""
        name, every, reset = req.get("name"), req.get("all", False), req.get("reset", False)
        if name is not None and not isinstance(name, str):
            raise ControlError("counters: 'name' must be a string")
        if not isinstance(every, bool) or not isinstance(reset, bool):
            raise ControlError("counters: 'all' and 'reset' must be true or false")
        core = self.d.core
        found = core.counters(name, every=every)
        if name is not None and not every and not found:
            raise ControlError(f"no counters for connection {name!r} (no IKE SA of it yet)")
        if reset:
            core.reset_counters(None if every else name, every=every)
        return {"counters": found}

    # ------------------------------------------------------------ status

    def ike_status(self, now: float, f: StatusFilter) -> list[dict[str, Any]]:
        """The core's status entries, with relative times (``*_in``, ``age``) added."""
        try:
            ike = self.d.core.status(
                now, conn=f.conn, peer=f.peer, offset=f.offset, limit=f.limit
            )
        except Exception as e:
            log.exception("status of the IKE core failed")
            return [{"error": str(e)}]
        for sa in ike:
            for k in ("rekey_at", "expire_at"):
                v = sa.get(k)
                if isinstance(v, int | float):
                    sa[k.replace("_at", "_in")] = round(v - now, 1)
            est = sa.get("established")
            if isinstance(est, int | float):
                sa["age"] = round(now - est, 1)
            for ch in sa.get("children", []):
                for k in ("rekey_at", "expire_at"):
                    v = ch.get(k)
                    if isinstance(v, int | float):
                        ch[k.replace("_at", "_in")] = round(v - now, 1)
        return ike

    def _pools_status(self) -> list[dict[str, Any]]:
        try:
            return self.d.core.pools_status()
        except Exception as e:
            log.exception("pool status of the IKE core failed")
            return [{"error": str(e)}]

    def status(self, req: dict[str, Any] | None = None) -> dict[str, Any]:
        """The daemon's status; ``conn``/``peer`` filter the SAs, ``offset``/``limit``
        page through them (a gateway with tens of thousands of tunnels)."""
        f = StatusFilter.from_request(req or {})
        capped = f.limit is None
        if capped:  # never block the loop building a 50,000-SA answer by accident
            f = replace(f, limit=STATUS_DEFAULT_LIMIT + 1)
        d = self.d
        now = d.now()
        tun = d.dp.tun
        # a generator: only the page is built, not a list of every Child SA first
        children = (c for c in d.dp.children.values() if f.shows(c.info.conn, c.remote[0]))
        end = None if f.limit is None else f.offset + f.limit
        out: dict[str, Any] = {
            "pid": os.getpid(),
            "uptime": round(time.time() - d.started, 1),
            "tun": None
            if tun is None
            else {"name": tun.name, "mtu": tun.mtu, "routes": tun.routes},
            "listen": [f"{u.addr}[{u.port}]" for u in d.udp],
            "connections": [
                {
                    "name": c.name,
                    "remote_addrs": list(c.remote_addrs),
                    "children": [
                        {"name": ch.name, "start_action": ch.start_action.value}
                        for ch in c.children
                    ],
                }
                for c in d.config.connections
            ],
            "ike_sas": self.ike_status(now, f),
            "child_sas": [c.status(now) for c in itertools.islice(children, f.offset, end)],
            "drops": d.dp.drops.as_dict(),
            # every error the core counted, by recovery.ErrorKind (ESP auth/replay too)
            "errors": dict(d.core.error_status()),
            # half-open responders (RFC 7296 §2.6): count, bytes held, peak, byte budget
            "half_open": d.core.half_open_status(),
            # configuration payloads (RFC 7296 §2.19): pool usage, virtual IPs by IKE SA
            "pools": self._pools_status(),
            "vips": d.vips.status(),
        }
        if capped:
            for key in ("ike_sas", "child_sas"):
                listed: list[Any] = out[key]
                if len(listed) > STATUS_DEFAULT_LIMIT:
                    del listed[STATUS_DEFAULT_LIMIT:]
                    out["truncated"] = True
            f = replace(f, limit=None)
        if f.used:
            out["filter"] = f.as_dict()
        return out


def load_daemon_config(path: str | Path) -> DaemonConfig:
    """:func:`~pyipsec.config.loader.load_config` plus :func:`unsupported_config`: what
    ``pyipsec daemon`` (also ``--check``) and ``reload`` accept; ConfigError otherwise."""
    cfg = load_config(path)
    issues = unsupported_config(cfg)
    if issues:
        raise ConfigError(issues, str(path))
    return cfg


def _vici_pool_clash(file_pools: tuple[PoolConfig, ...], vici: tuple[PoolConfig, ...]) -> str:
    """Why the file's pools cannot join those loaded over VICI ("" = they can): one
    name, one pool; one address, one pool."""
    same = sorted({p.name for p in file_pools} & {p.name for p in vici})
    if same:
        return (
            f"pool {', '.join(same)} is also loaded over VICI (hint: unload-pool it first, "
            "e.g. swanctl --load-pools with a swanctl.conf without it)"
        )
    ranges = [(p.name, p.first, p.last) for p in (*file_pools, *vici)]
    vici_names = {p.name for p in vici}
    clashes = []
    for a, b in pools_overlap(ranges):
        mine, theirs = (b, a) if a in vici_names else (a, b)
        clashes.append(f"pools.{mine}.addrs overlaps pool {theirs} loaded over VICI")
    return "; ".join(clashes)


def unsupported_config(config: DaemonConfig) -> list[ConfigIssue]:
    """What this daemon's data plane cannot carry, located like the loader's errors.

    The configuration language and the IKE core know transport mode (USE_TRANSPORT_MODE,
    RFC 7296 §1.3.1), but the TUN data plane only sees packets routed into the device:
    a transport-mode SA between the two outer addresses would need the peer's address
    routed into the TUN except for the daemon's own IKE/ESP packets.  Such a child is
    refused when the daemon starts (and by ``--check`` and ``reload``) instead of being
    negotiated and then left without a data path.
    """
    return [
        ConfigIssue(
            f"connections.{c.name}.children.{ch.name}.mode",
            f"{ch.mode.value} mode is not supported by the userspace (TUN) data plane "
            "(known limitation: use tunnel mode between inner subnets)",
        )
        for c in config.connections
        for ch in c.children
        if ch.mode is not Mode.TUNNEL
    ]
