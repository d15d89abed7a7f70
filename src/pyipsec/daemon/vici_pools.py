"""The VICI pool commands: ``load-pool``, ``unload-pool``, ``get-pools`` (what
``swanctl --load-pools``, ``--load-all`` and ``--list-pools [--leases]`` send; layout
of strongSwan's ``src/libcharon/plugins/vici/README.md``).

A ``load-pool`` section is a swanctl.conf ``pools.<name>`` section: ``addrs`` (a
subnet or an ``a-b`` range, strongSwan's rules: :func:`pyipsec.pools.pool_range`) as a
value, every attribute as a list.  The attributes with a pyipsec meaning become the
``[pools.NAME]`` keys of the TOML loader, whose parser checks them
(:func:`pyipsec.config.loader._pool`):

* ``dns`` -> INTERNAL_IP4_DNS / INTERNAL_IP6_DNS, ``nbns`` -> INTERNAL_IP4_NBNS
  (RFC 7296 §3.15.1);
* ``subnet`` -> INTERNAL_IP4_SUBNET / INTERNAL_IP6_SUBNET (§3.15.2), pyipsec's
  ``split_include``; strongSwan's ``split_include`` (a Cisco Unity attribute charon
  sends to IKEv1 clients only) is taken with the same IKEv2 meaning.

strongSwan's other attributes (:data:`REFUSED_ATTRIBUTES`, numeric types) are refused
with an error naming the key.

Pools loaded here live next to the configuration file's ``[pools.NAME]`` (which VICI
never changes; a name or a range of the file's is refused) and survive ``pyipsec
reload``, as VICI connections do.  ``get-pools`` lists VICI's pools only, as charon
lists only its VICI plugin's (``swanctl --load-pools`` unloads what it lists and does
not find in swanctl.conf); ``pyipsec pools`` lists every pool.

As charon: a pool loaded again keeps its leases when its range is unchanged (its
attributes are replaced); a changed range, and ``unload-pool``, are refused while an
address of the pool is online.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..config.loader import ConfigError, ConfigIssue, _Ctx, _pool, _Table
from ..config.model import PoolConfig
from ..pools import pools_overlap
from .vici_codec import text

if TYPE_CHECKING:
    from .runtime import Daemon

__all__ = ["ATTRIBUTES", "REFUSED_ATTRIBUTES", "ViciPools", "pools_from_vici"]

log = logging.getLogger("pyipsec.cfg")

Reply = dict[str, Any]

#: ``load-pool`` attributes with a pyipsec meaning -> the ``[pools.NAME]`` key
ATTRIBUTES = {"dns": "dns", "nbns": "nbns", "subnet": "split_include",
              "split_include": "split_include"}  # fmt: skip

#: strongSwan's other ``load-pool`` attributes, and why pyipsec refuses them
REFUSED_ATTRIBUTES = {
    "address": "INTERNAL_IP4/6_ADDRESS attributes besides the leased address are not "
    "supported (hint: the pool's addresses are its 'addrs')",
    "dhcp": "INTERNAL_IP4/6_DHCP (RFC 7296 §3.15.1) is not supported: pyipsec leases "
    "from 'addrs' only",
    "netmask": "INTERNAL_IP4/6_NETMASK is not sent by pyipsec (RFC 7296 §3.15.1: the "
    "virtual address is a host address; hint: 'subnet' for the networks behind)",
    "server": "INTERNAL_IP4/6_SERVER is not supported",
    "p_cscf": "P-CSCF server addresses (RFC 7651) are not supported",
    "split_exclude": "Cisco Unity split-exclude (UNITY_LOCAL_LAN) is IKEv1 only",
}

_NUMERIC = "raw configuration attributes by number are not supported"
_TRUE = ("yes", "true", "1", "on", "enabled")


def pools_from_vici(msg: Mapping[str, Any]) -> list[PoolConfig]:
    """Every ``<pool name> = {...}`` section of a ``load-pool`` request as a pool.

    Raises :class:`~pyipsec.config.loader.ConfigError` listing every problem, located
    as in swanctl.conf (``pools.rw.dhcp``)."""
    sections = [k for k, v in msg.items() if isinstance(v, dict)]
    others = [k for k, v in msg.items() if not isinstance(v, dict)]
    if not sections or others:
        raise ConfigError(
            [ConfigIssue("", "load-pool needs sections <pool name> = {addrs = ..., ...}")]
        )
    ctx = _Ctx()
    out = []
    for name in sections:
        pool = _one_pool(ctx, name, msg[name])
        if pool is not None:
            out.append(pool)
    if ctx.errors:
        raise ConfigError(ctx.errors, f"load-pool '{', '.join(sections)}'")
    return out


def _one_pool(ctx: _Ctx, name: str, section: Mapping[str, Any]) -> PoolConfig | None:
    loc = f"pools.{name}"
    if not name or len(name) > 64 or any(c in name for c in "./ \t\n"):
        ctx.err(loc, "invalid pool name (1-64 characters, no '.', '/' or blanks)")
    data: dict[str, Any] = {}
    for key, v in section.items():
        at = f"{loc}.{key}"
        try:
            values = _texts(v)
        except (UnicodeDecodeError, TypeError) as e:
            ctx.err(at, "not UTF-8 text" if isinstance(e, UnicodeDecodeError) else str(e))
            continue
        if key == "addrs":
            if len(values) != 1:
                ctx.err(at, "one subnet or range (hint: addrs = 203.0.113.128/26)")
                continue
            data["addrs"] = values[0]
        elif key in ATTRIBUTES:
            data.setdefault(ATTRIBUTES[key], []).extend(values)
        elif key in REFUSED_ATTRIBUTES:
            ctx.err(at, f"strongSwan's '{key}' is not supported by pyipsec: "
                    f"{REFUSED_ATTRIBUTES[key]}")  # fmt: skip
        elif key.isdigit():
            ctx.err(at, f"strongSwan's attribute type {key} is not supported by pyipsec: "
                    f"{_NUMERIC}")  # fmt: skip
        else:
            ctx.err(at, "unknown key (hint: addrs, dns, nbns, subnet, split_include)")
    if "addrs" not in section:
        ctx.err(f"{loc}.addrs", "missing (hint: addrs = 203.0.113.128/26)")
        return None
    if "addrs" not in data:
        return None
    return _pool(_Table(ctx, loc, data), name)


def _texts(v: object) -> list[str]:
    """A VICI value or list as text items (swanctl sends every attribute as a list)."""
    if isinstance(v, bytes):
        return [v.decode().strip()]
    if isinstance(v, list) and all(isinstance(x, bytes) for x in v):
        return [x.decode().strip() for x in v if x.strip()]
    raise TypeError("expected a value or a list of values, got a section")


class ViciPools:
    """The pools loaded over VICI, for one daemon (:attr:`pools`, in load order)."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon
        self.pools: dict[str, PoolConfig] = {}
        self._applied: set[str] = set()  # VICI's names in the daemon's configuration
        daemon.cmds.extra_pools = self.loaded

    def loaded(self) -> tuple[PoolConfig, ...]:
        return tuple(self.pools.values())

    def _file_pools(self) -> tuple[PoolConfig, ...]:
        vici = self._applied | set(self.pools)
        return tuple(p for p in self.d.config.pools if p.name not in vici)

    def _apply(self) -> None:
        """The file's pools and VICI's to the core and the running configuration."""
        pools = self._file_pools() + self.loaded()
        for problem in self.d.core.load_pools(pools):
            log.warning("vici: %s", problem)
        self.d.config = replace(self.d.config, pools=pools)
        self._applied = set(self.pools)

    # ------------------------------------------------------------ commands

    def load_pool(self, req: dict[str, Any]) -> Reply:
        try:
            new = pools_from_vici(req)
        except ConfigError as e:
            return _fail("; ".join(str(i) for i in e.errors))
        problem = self._refusal(new)
        if problem:
            return _fail(problem)
        changed = [p for p in new if self.pools.get(p.name) != p]
        for p in new:
            log.info("vici: pool %s %s (%s)", p.name,
                     "loaded" if p.name not in self.pools else "replaced" if p in changed
                     else "loaded again, unchanged", p.addrs)  # fmt: skip
            self.pools[p.name] = p
        if changed:
            self._apply()
        return {"success": "yes"}

    def _refusal(self, new: list[PoolConfig]) -> str:
        """Why ``new`` cannot join the running pools ("" = it can)."""
        file_pools = self._file_pools()
        for p in new:
            if any(f.name == p.name for f in file_pools):
                return (
                    f"pool '{p.name}' is defined in the configuration file "
                    f"{self.d.config_path or ''}; VICI does not replace it (hint: rename it)"
                )
            online = self._online(p.name)
            old = self.pools.get(p.name)
            if online and old is not None and (old.first, old.last) != (p.first, p.last):
                return (
                    f"vici pool {p.name} has {online} online lease(s), unable to replace "
                    f"its range {old.addrs} (hint: terminate the IKE SAs using it first)"
                )
        names = {n.name for n in new}
        others = [p for p in file_pools + self.loaded() if p.name not in names]
        ranges = [(f"pools.{p.name}", p.first, p.last) for p in (*others, *new)]
        clashes = pools_overlap(ranges)
        return "; ".join(f"{a}.addrs overlaps {b}.addrs" for a, b in clashes)

    def _online(self, name: str) -> int:
        for st in self.d.core.pools_status(name=name):
            if st.get("name") == name:
                return int(st.get("online", 0))
        return 0

    def unload_pool(self, req: dict[str, Any]) -> Reply:
        name = text(req, "name")
        if not name:
            return _fail("missing pool name to unload")
        if name not in self.pools:
            in_file = any(p.name == name for p in self.d.config.pools)
            return _fail(f"{name} not found" + (" (it is in the configuration file)"
                                                 if in_file else ""))  # fmt: skip
        online = self._online(name)
        if online:
            return _fail(f"{name} has {online} online lease(s), unable to unload")
        users = [c.name for c in self.d.config.connections if name in c.pools]
        if users:
            log.warning("vici: pool %s unloaded while connection(s) %s name it: their "
                        "peers get no address from it", name, ", ".join(users))  # fmt: skip
        del self.pools[name]
        self._apply()
        log.info("vici: pool %s unloaded", name)
        return {"success": "yes"}

    def get_pools(self, req: dict[str, Any]) -> Reply:
        """charon's layout: ``<name> = {base, size, online, offline[, leases = {<n> =
        {address, identity, status}}]}``, the VICI pools only."""
        leases = (text(req, "leases") or "no").strip().lower() in _TRUE
        only = text(req, "name")
        out: Reply = {}
        for st in self.d.core.pools_status(leases=leases, name=only):
            name = str(st.get("name"))
            if name not in self.pools:
                continue  # the configuration file's (pyipsec pools lists them)
            out[name] = _pool_message(st, leases)
        return out


def _pool_message(st: dict[str, Any], leases: bool) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "base": st.get("first"),  # charon's base: the first address it leases
        "size": st.get("size"),
        "online": st.get("online"),
        "offline": st.get("offline"),
    }
    if leases:
        msg["leases"] = {
            str(i): {
                "address": lease.get("address"),
                "identity": lease.get("identity"),
                "status": lease.get("status"),
            }
            for i, lease in enumerate(st.get("leases") or [])
        }
    return msg


def _fail(msg: str) -> Reply:
    return {"success": "no", "errmsg": msg}
