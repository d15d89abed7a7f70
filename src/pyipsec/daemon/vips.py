"""Virtual IPs on the daemon's side (RFC 7296 §2.19): what the core's
:class:`~pyipsec.ikev2.events.VirtualIpsAssigned` events mean for the host.

Initiator: the addresses the gateway assigned to us go on the TUN device (host
addresses, reference counted by IKE SA: a reauthentication holds the same address twice
for a moment) and become the source address of the routes of that IKE SA's Child SAs
(``prefsrc``), so traffic into the tunnel leaves from the virtual IP.  They stay through
IKE SA rekeys (:meth:`VirtualIpTable.rekeyed`) and go when the IKE SA is deleted or
fails (:meth:`VirtualIpTable.gone`).  DNS servers and the other attributes are logged,
shown by ``pyipsec status`` and handed to the optional ``[daemon] vip_hook`` program
(run with ``PYIPSEC_VERB=up`` / ``down``; see README), which may e.g. call
``resolvconf`` -- the daemon itself never touches ``/etc/resolv.conf``.

Responder: the addresses leased to a peer are logged and shown; their routes into the
TUN come from the Child SAs' remote selectors like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..ikev2.events import VirtualIpsAssigned

__all__ = ["HOOK_TIMEOUT", "HookRunner", "VirtualIpTable", "hook_environment"]

log = logging.getLogger("pyipsec.net")

#: seconds a vip_hook run may take before it is killed
HOOK_TIMEOUT = 10.0


@dataclass(slots=True)
class _Assigned:
    conn: str
    local: tuple[str, ...]
    remote: tuple[str, ...]
    dns: tuple[str, ...]
    nbns: tuple[str, ...]
    subnets: tuple[str, ...]
    remote_id: str = ""
    on_tun: list[str] = field(default_factory=list)  # our addresses this SA holds on the TUN


def hook_environment(verb: str, ike_id: int, a: _Assigned, tun: str) -> dict[str, str]:
    """The variables the vip_hook program sees (README "vip_hook")."""
    return {
        "PYIPSEC_VERB": verb,
        "PYIPSEC_CONN": a.conn,
        "PYIPSEC_IKE_ID": str(ike_id),
        "PYIPSEC_TUN": tun,
        "PYIPSEC_VIPS": " ".join(a.local),
        "PYIPSEC_DNS": " ".join(a.dns),
        "PYIPSEC_NBNS": " ".join(a.nbns),
        "PYIPSEC_SUBNETS": " ".join(a.subnets),
        "PYIPSEC_PEER_ID": a.remote_id,
    }


class HookRunner:
    """Runs the vip_hook program, one run at a time in submission order (an ``up`` is
    never overtaken by its ``down``), each bounded by :data:`HOOK_TIMEOUT` (then its
    process group -- the hook and whatever it started -- is killed)."""

    def __init__(self, path: str, loop: asyncio.AbstractEventLoop) -> None:
        self.path = path
        self.loop = loop
        self._queue: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self.runs = 0  # finished runs (tests)

    def submit(self, env: dict[str, str]) -> None:
        self._queue.put_nowait(env)
        if self._worker is None or self._worker.done():
            self._worker = self.loop.create_task(self._work())

    async def _work(self) -> None:
        while not self._queue.empty():
            env = self._queue.get_nowait()
            try:
                await self._run(env)
            except Exception:
                log.exception("vip_hook %s failed", self.path)
            self.runs += 1

    async def _run(self, env: dict[str, str]) -> None:
        proc = await asyncio.create_subprocess_exec(
            self.path,
            env={**os.environ, **env},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own process group: killed as a whole
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), HOOK_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the hook and what it started
            await proc.wait()
            log.warning(
                "vip_hook %s (%s) killed after %gs", self.path, env["PYIPSEC_VERB"], HOOK_TIMEOUT
            )
            return
        text = out.decode(errors="replace").strip()
        level = logging.DEBUG if proc.returncode == 0 else logging.WARNING
        log.log(
            level,
            "vip_hook %s %s exited %s%s",
            self.path,
            env["PYIPSEC_VERB"],
            proc.returncode,
            f": {text}" if text else "",
        )

    async def close(self) -> None:
        """Wait for the queued runs (bounded by their timeouts)."""
        if self._worker is not None:
            with contextlib.suppress(Exception):
                await self._worker


class VirtualIpTable:
    """The virtual IPs of the daemon's IKE SAs (see the module docstring).

    ``tun`` returns the TUN device (or None); it needs ``add_address`` /
    ``remove_address`` (:class:`~pyipsec.daemon.tun.TunDevice`) for our addresses to be
    put on it.  ``hook`` receives the environment of each vip_hook run."""

    def __init__(
        self,
        tun: Callable[[], Any],
        hook: Callable[[dict[str, str]], None] | None = None,
    ) -> None:
        self._tun = tun
        self._hook = hook
        self.by_ike: dict[int, _Assigned] = {}
        self._refs: dict[str, set[int]] = {}  # our address on the TUN -> IKE SAs holding it

    def assigned(self, e: VirtualIpsAssigned) -> None:
        """The core assigned (``local``) or leased (``remote``) virtual IPs."""
        a = _Assigned(e.conn, e.local, e.remote, e.dns, e.nbns, e.subnets, e.remote_id)
        old = self.by_ike.pop(e.ike_id, None)
        if old is not None:
            self._drop(e.ike_id, old)
        self.by_ike[e.ike_id] = a
        if e.remote:
            log.info(
                "IKE SA #%d (%s): leased %s to %s",
                e.ike_id,
                e.conn,
                ", ".join(e.remote),
                e.remote_id or "the peer",
            )
        if not e.local:
            return
        tun = self._tun()
        for addr in e.local:
            holders = self._refs.setdefault(addr, set())
            if not holders and (tun is None or not tun.add_address(addr)):
                log.warning("virtual IP %s could not be put on the TUN device", addr)
            holders.add(e.ike_id)
            a.on_tun.append(addr)
        log.info(
            "IKE SA #%d (%s): virtual IP %s%s%s",
            e.ike_id,
            e.conn,
            ", ".join(e.local),
            f", DNS {' '.join(e.dns)}" if e.dns else "",
            f", subnets {' '.join(e.subnets)}" if e.subnets else "",
        )
        self._run_hook("up", e.ike_id, a)

    def rekeyed(self, old_id: int, new_id: int) -> None:
        """IKE SA rekey (§2.18): the addresses stay, held by the new IKE SA."""
        a = self.by_ike.pop(old_id, None)
        if a is None:
            return
        self.by_ike[new_id] = a
        for addr in a.on_tun:
            holders = self._refs.get(addr)
            if holders is not None and old_id in holders:
                holders.discard(old_id)
                holders.add(new_id)

    def gone(self, ike_id: int) -> None:
        """The IKE SA was deleted or failed: its addresses leave the TUN (unless
        another IKE SA still holds them) and the hook hears ``down``."""
        a = self.by_ike.pop(ike_id, None)
        if a is not None:
            self._drop(ike_id, a)

    def _drop(self, ike_id: int, a: _Assigned) -> None:
        if not a.on_tun:
            return
        tun = self._tun()
        for addr in a.on_tun:
            holders = self._refs.get(addr, set())
            holders.discard(ike_id)
            if not holders:
                self._refs.pop(addr, None)
                if tun is not None:
                    tun.remove_address(addr)
                log.info("virtual IP %s released (IKE SA #%d)", addr, ike_id)
        self._run_hook("down", ike_id, a)

    def sources(self, ike_id: int) -> tuple[str, ...]:
        """Our virtual IPs of ``ike_id`` as interface addresses (``a/32``, ``a/128``),
        to be the preferred source of its Child SAs' routes."""
        a = self.by_ike.get(ike_id)
        if a is None:
            return ()
        return tuple(f"{x}/{32 if ':' not in x else 128}" for x in a.on_tun)

    def _run_hook(self, verb: str, ike_id: int, a: _Assigned) -> None:
        if self._hook is None:
            return
        tun = self._tun()
        self._hook(hook_environment(verb, ike_id, a, tun.name if tun is not None else ""))

    def close(self) -> None:
        """The daemon stops: every address we put on the TUN is taken off again."""
        for ike_id in list(self.by_ike):
            self.gone(ike_id)

    def status(self) -> list[dict[str, Any]]:
        return [
            {
                "ike_id": ike_id,
                "conn": a.conn,
                "local": list(a.local),
                "remote": list(a.remote),
                "dns": list(a.dns),
                "nbns": list(a.nbns),
                "subnets": list(a.subnets),
            }
            for ike_id, a in self.by_ike.items()
        ]

    def addresses(self) -> Iterable[str]:
        """Our virtual IPs on the TUN device now."""
        return list(self._refs)
