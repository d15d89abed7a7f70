"""Logging set-up with per-subsystem levels.

Subsystems are the loggers ``pyipsec.ike`` (IKE SAs, exchanges), ``pyipsec.child``
(Child SAs), ``pyipsec.esp`` (data plane), ``pyipsec.net`` (sockets, TUN, routes)
and ``pyipsec.cfg`` (configuration, control socket).  ``default`` sets the level of
the ``pyipsec`` logger itself, which every other module logger inherits.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import TextIO

__all__ = ["SUBSYSTEMS", "setup_logging"]

SUBSYSTEMS = ("ike", "child", "esp", "net", "cfg")
_FORMAT = "%(asctime)s %(levelname).1s [%(name)s] %(message)s"


def setup_logging(
    levels: Mapping[str, str] | None = None,
    *,
    stream: TextIO | None = None,
    verbose: bool = False,
) -> logging.Handler:
    """Install one stderr handler on ``pyipsec`` and apply ``levels`` (name -> level)."""
    levels = dict(levels or {})
    root = logging.getLogger("pyipsec")
    for h in list(root.handlers):
        if getattr(h, "_pyipsec", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler._pyipsec = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.propagate = False
    default = "debug" if verbose else levels.get("default", "info")
    root.setLevel(default.upper())
    for sub in SUBSYSTEMS:
        lg = logging.getLogger(f"pyipsec.{sub}")
        lg.setLevel(levels[sub].upper() if sub in levels else logging.NOTSET)
    return handler
