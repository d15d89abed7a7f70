"""systemd's notification protocol (``Type=notify``), with the standard library only.

The service manager passes ``$NOTIFY_SOCKET`` (a file-system path, or an abstract
socket written ``@name``); we send it ``KEY=VALUE`` lines in one datagram each
(sd_notify(3)):

* ``READY=1`` once the sockets are bound and the configuration is loaded
  (after :meth:`Daemon.start <pyipsec.daemon.runtime.Daemon.start>`),
* ``STATUS=3 IKE SAs, 4 Child SAs``, refreshed every :data:`STATUS_INTERVAL` seconds
  (shown by ``systemctl status``),
* ``WATCHDOG=1`` every ``$WATCHDOG_USEC / 2`` when systemd asks for it
  (``WatchdogSec=``) and ``$WATCHDOG_PID``, if set, is ours: sent from the event
  loop, so a wedged loop gets the service restarted,
* ``RELOADING=1`` ... ``READY=1`` around a reload on SIGHUP,
* ``STOPPING=1`` when the shutdown starts.

Without ``$NOTIFY_SOCKET`` nothing is sent.  A failure to send is logged once per
socket address and is never fatal.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

from ..ikev2.api import IkeCore

__all__ = [
    "STATUS_INTERVAL",
    "STOPPING",
    "DaemonNotifier",
    "Notifier",
    "notify",
    "sa_counts",
]

log = logging.getLogger("pyipsec.cfg")

#: seconds between STATUS= updates (sent only when the text changed)
STATUS_INTERVAL = 10.0

#: what :meth:`Daemon.shutdown <pyipsec.daemon.runtime.Daemon.shutdown>` sends
STOPPING = ("STOPPING=1", "STATUS=stopping")

_warned: set[str] = set()


class Notifier:
    """One ``$NOTIFY_SOCKET`` (or none: then every call is a no-op)."""

    def __init__(self, address: str | None) -> None:
        self.address = address or None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def _sockaddr(self) -> str | bytes:
        assert self.address is not None
        if self.address.startswith("@"):  # Linux abstract namespace
            return b"\0" + self.address[1:].encode()
        return self.address

    def notify(self, *fields: str) -> bool:
        """Send ``fields`` (``"READY=1"``, ...) in one datagram; False if not sent."""
        if self.address is None or not fields:
            return False
        data = "\n".join(fields).encode("utf-8", "replace")
        try:
            # non-blocking: a service manager that does not read must not stall the loop
            flags = socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
            with socket.socket(socket.AF_UNIX, flags) as s:
                s.sendto(data, self._sockaddr())
        except OSError as e:
            if self.address not in _warned:
                _warned.add(self.address)
                log.warning(
                    "cannot notify systemd at %s: %s (further failures not logged)",
                    self.address,
                    e,
                )
            return False
        return True

    @staticmethod
    def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
        """Seconds between WATCHDOG=1 pings (half of ``$WATCHDOG_USEC``), or None when
        systemd wants none, or wants them from another process (``$WATCHDOG_PID``)."""
        env = os.environ if environ is None else environ
        pid = env.get("WATCHDOG_PID")
        if pid:
            try:
                if int(pid) != os.getpid():
                    return None
            except ValueError:
                return None
        try:
            usec = int(env.get("WATCHDOG_USEC", ""))
        except ValueError:
            return None
        if usec <= 0:
            return None
        return usec / 2 / 1e6


def notify(*fields: str) -> bool:
    """Send ``fields`` to ``$NOTIFY_SOCKET``, if set (a no-op otherwise)."""
    return Notifier.from_env().notify(*fields)


def sa_counts(core: IkeCore) -> str:
    """``"3 IKE SAs, 4 Child SAs"`` for an IKE core (live IKE SAs, installed Child SAs,
    from its counters: no walk over the SAs)."""
    counts = core.sa_counts()
    ike, child = counts.ike, counts.child
    return f"{ike} IKE SA{'' if ike == 1 else 's'}, {child} Child SA{'' if child == 1 else 's'}"


class DaemonNotifier:
    """The notifications of one running daemon: READY, periodic STATUS and WATCHDOG
    timers on the event loop, RELOADING/READY around reloads.

    ``status`` gives the STATUS= text (e.g. :func:`sa_counts` of the core)."""

    def __init__(
        self,
        status: Callable[[], str],
        *,
        notifier: Notifier | None = None,
        environ: Mapping[str, str] | None = None,
        status_interval: float = STATUS_INTERVAL,
    ) -> None:
        self.notifier = notifier or Notifier.from_env(environ)
        self.status = status
        self.status_interval = status_interval
        self.watchdog = Notifier.watchdog_interval(environ) if self.notifier.enabled else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._status_timer: asyncio.TimerHandle | None = None
        self._watchdog_timer: asyncio.TimerHandle | None = None
        self._last_status: str | None = None
        self.is_ready = False  # ready() was called (whether or not systemd listens)

    @property
    def enabled(self) -> bool:
        return self.notifier.enabled

    def _status_text(self) -> str | None:
        try:
            return self.status()
        except Exception:
            log.debug("status for systemd failed", exc_info=True)
            return None

    def ready(self) -> None:
        """READY=1 (with the current STATUS=), then start the timers."""
        self.is_ready = True
        if not self.enabled:
            return
        self._loop = asyncio.get_running_loop()
        fields = ["READY=1"]
        st = self._status_text()
        if st is not None:
            fields.append(f"STATUS={st}")
            self._last_status = st
        self.notifier.notify(*fields)
        if self._status_timer is None:
            self._status_timer = self._loop.call_later(self.status_interval, self._on_status)
        if self.watchdog is not None and self._watchdog_timer is None:
            log.debug("systemd watchdog: pinging every %.3f s", self.watchdog)
            self._on_watchdog()

    def _on_status(self) -> None:
        assert self._loop is not None
        self._status_timer = self._loop.call_later(self.status_interval, self._on_status)
        self.update_status()

    def update_status(self) -> None:
        """Send STATUS= if the text changed since the last one."""
        st = self._status_text()
        if st is not None and st != self._last_status:
            self._last_status = st
            self.notifier.notify(f"STATUS={st}")

    def _on_watchdog(self) -> None:
        assert self._loop is not None and self.watchdog is not None
        self._watchdog_timer = self._loop.call_later(self.watchdog, self._on_watchdog)
        self.notifier.notify("WATCHDOG=1")

    def reloading(self) -> None:
        # MONOTONIC_USEC: required by Type=notify-reload, harmless otherwise
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.notifier.notify("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading")

    def reloaded(self) -> None:
        fields = ["READY=1"]
        st = self._status_text()
        if st is not None:
            fields.append(f"STATUS={st}")
            self._last_status = st
        self.notifier.notify(*fields)

    def close(self) -> None:
        """Cancel the timers (idempotent)."""
        for h in (self._status_timer, self._watchdog_timer):
            if h is not None:
                h.cancel()
        self._status_timer = self._watchdog_timer = None
