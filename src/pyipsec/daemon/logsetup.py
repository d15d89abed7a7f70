"""Logging set-up with per-subsystem levels.

Subsystems are the loggers ``pyipsec.ike`` (IKE SAs, exchanges), ``pyipsec.child``
(Child SAs), ``pyipsec.esp`` (data plane), ``pyipsec.net`` (sockets, TUN, routes)
and ``pyipsec.cfg`` (configuration, control socket).  ``default`` sets the level of
the ``pyipsec`` logger itself, which every other module logger inherits.

Two formats (``[daemon.log] format``): ``text`` (one human line per record) and
``json`` (one JSON object per line, for log shippers: ``time`` in ISO 8601 UTC,
``level``, ``subsystem``, ``message``, plus ``conn`` and ``ike_sa`` when the record
is about an IKE SA, and ``exception`` with a traceback).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

__all__ = ["LOG_FORMATS", "SUBSYSTEMS", "JsonFormatter", "setup_logging"]

SUBSYSTEMS = ("ike", "child", "esp", "net", "cfg")
LOG_FORMATS = ("text", "json")
_FORMAT = "%(asctime)s %(levelname).1s [%(name)s] %(message)s"

#: the prefix of the core's per-IKE-SA log adapter (sa_log.SaLog): "IKE SA <id> (<conn>): "
IKE_SA_PREFIX = re.compile(r"IKE SA (\d+) \(([^)]*)\): ")
#: the runtime's "IKE SA <conn> #<id> ..." (kept in the message)
_IKE_SA_INLINE = re.compile(r"IKE SA (\S+) #(\d+)\b")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "subsystem": record.name.removeprefix("pyipsec."),
        }
        conn = getattr(record, "conn", None)
        ike_sa = getattr(record, "ike_sa", None)
        m = IKE_SA_PREFIX.match(msg)
        if m is not None:
            ike_sa = int(m.group(1)) if ike_sa is None else ike_sa
            conn = m.group(2) if conn is None else conn
            msg = msg[m.end() :]
        elif (m := _IKE_SA_INLINE.search(msg)) is not None:
            ike_sa = int(m.group(2)) if ike_sa is None else ike_sa
            conn = m.group(1) if conn is None else conn
        out["message"] = msg
        if conn is not None:
            out["conn"] = conn
        if ike_sa is not None:
            out["ike_sa"] = ike_sa
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def setup_logging(
    levels: Mapping[str, str] | None = None,
    *,
    stream: TextIO | None = None,
    verbose: bool = False,
    fmt: str = "text",
) -> logging.Handler:
    """Install one stderr handler on ``pyipsec`` and apply ``levels`` (name -> level);
    ``fmt``: one of :data:`LOG_FORMATS`."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"invalid log format {fmt!r} (one of {', '.join(LOG_FORMATS)})")
    levels = dict(levels or {})
    root = logging.getLogger("pyipsec")
    for h in list(root.handlers):
        if getattr(h, "_pyipsec", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(_FORMAT))
    handler._pyipsec = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.propagate = False
    default = "debug" if verbose else levels.get("default", "info")
    root.setLevel(default.upper())
    for sub in SUBSYSTEMS:
        lg = logging.getLogger(f"pyipsec.{sub}")
        lg.setLevel(levels[sub].upper() if sub in levels else logging.NOTSET)
    return handler
