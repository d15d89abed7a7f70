"""The log adapter of one IKE SA: every line says which one (``IKE SA <id> (<conn>): ...``).

It keeps the SA's label, not the SA: no reference cycle (an SA is freed by reference
counting, issue #13).  It lives outside the IKEv2 package because that package may be
compiled by mypyc, whose classes derived from interpreted ones (``LoggerAdapter``) do
not clear their weak references when freed.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

#: the logger of the IKEv2 core
log = logging.getLogger("pyipsec.ike")


class SaLog(logging.LoggerAdapter[logging.Logger]):
    """The per-IKE-SA adapter of :data:`log`."""

    def __init__(self, ike_id: int, conn_name: str) -> None:
        super().__init__(log, {})
        self.prefix = ""
        self.label(ike_id, conn_name)

    def label(self, ike_id: int, conn_name: str) -> None:
        """The SA's number or connection changed (``IkeSa.renumber``, ``use_connection``)."""
        self.prefix = f"IKE SA {ike_id} ({conn_name}): "

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        return f"{self.prefix}{msg}", kwargs
