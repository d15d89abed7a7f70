"""IKE event counters, global and per connection, as strongSwan's ``counters`` plugin
keeps them (``swanctl --counters``, VICI ``get-counters``/``reset-counters``).

Twenty-one counters, in charon's order and with its names: IKE SA rekeys we initiated
or answered (RFC 7296 §2.18), Child SA rekeys (§2.8), invalid messages (they did not
parse, or failed their integrity check, §3.14) and messages for an unknown IKE SPI
(§2.21.4), and the messages of each exchange (IKE_SA_INIT, IKE_AUTH, CREATE_CHILD_SA,
INFORMATIONAL; §1.2-§1.5) received and sent, requests and responses apart.  A message
is counted once, when it is accepted (a retransmitted request too: it is received
again) or built (its retransmissions are not counted again); a fragmented one once,
when reassembled (RFC 7383).

Per connection the counters exist from the first event of an IKE SA of that
connection; an event outside any IKE SA (a message for an unknown SPI, a malformed
IKE_SA_INIT request) counts only globally.
"""

from __future__ import annotations

from ..recovery import ErrorKind
from .constants import ExchangeType

__all__ = ["COUNTER_NAMES", "MESSAGE_COUNTERS", "IkeCounters"]

#: charon's counter names (``vici_counter_type_names``), in its order
COUNTER_NAMES: tuple[str, ...] = (
    "ike-rekey-init", "ike-rekey-resp", "child-rekey", "invalid", "invalid-spi",
    "ike-init-in-req", "ike-init-in-resp", "ike-init-out-req", "ike-init-out-resp",
    "ike-auth-in-req", "ike-auth-in-resp", "ike-auth-out-req", "ike-auth-out-resp",
    "create-child-in-req", "create-child-in-resp", "create-child-out-req",
    "create-child-out-resp",
    "info-in-req", "info-in-resp", "info-out-req", "info-out-resp",
)  # fmt: skip
_INDEX = {name: i for i, name in enumerate(COUNTER_NAMES)}

_EXCHANGE_PREFIX = {
    ExchangeType.IKE_SA_INIT: "ike-init",
    ExchangeType.IKE_AUTH: "ike-auth",
    ExchangeType.CREATE_CHILD_SA: "create-child",
    ExchangeType.INFORMATIONAL: "info",
}
#: exchange -> index of its "-in-req" counter; "-in-resp", "-out-req", "-out-resp" follow
_MESSAGE_BASE: dict[int, int] = {
    int(x): _INDEX[f"{prefix}-in-req"] for x, prefix in _EXCHANGE_PREFIX.items()
}
#: the message counters by name: (exchange name, "in"/"out", "request"/"response")
MESSAGE_COUNTERS: dict[str, tuple[str, str, str]] = {
    f"{prefix}-{way}-{short}": (x.name, way, kind)
    for x, prefix in _EXCHANGE_PREFIX.items()
    for way in ("in", "out")
    for short, kind in (("req", "request"), ("resp", "response"))
}

#: error kinds that are "invalid" messages: they did not parse or verify (charon's
#: ALERT_PARSE_ERROR_HEADER / ALERT_PARSE_ERROR_BODY) ...
_INVALID = frozenset({
    ErrorKind.MALFORMED_MESSAGE, ErrorKind.INTEGRITY_CHECK_FAILED, ErrorKind.INVALID_SYNTAX,
    ErrorKind.UNSUPPORTED_CRITICAL_PAYLOAD, ErrorKind.INVALID_MAJOR_VERSION,
    ErrorKind.MALFORMED_IKE_AUTH, ErrorKind.MALFORMED_EAP_ROUND,
})  # fmt: skip
#: ... and those for an IKE SA we do not have (ALERT_INVALID_IKE_SPI)
_INVALID_SPI = frozenset({ErrorKind.INVALID_IKE_SPI, ErrorKind.UNKNOWN_IKE_SPI_RESPONSE})


class IkeCounters:
    """The global counters and those of each connection (by name)."""

    __slots__ = ("_by_conn", "_global")

    def __init__(self) -> None:
        self._global = [0] * len(COUNTER_NAMES)
        self._by_conn: dict[str, list[int]] = {}

    def _add(self, index: int, conn: str, n: int = 1) -> None:
        self._global[index] += n
        if conn:
            row = self._by_conn.get(conn)
            if row is None:
                row = self._by_conn[conn] = [0] * len(COUNTER_NAMES)
            row[index] += n

    def message(self, exchange: int, incoming: bool, request: bool, conn: str) -> None:
        """One IKE message accepted (``incoming``) or built; other exchanges than the
        four of RFC 7296 §1 (e.g. IKE_INTERMEDIATE) are not counted, as in charon.
        (Called for every message: positional arguments.)"""
        base = _MESSAGE_BASE.get(exchange)
        if base is not None:
            self._add(base + (0 if incoming else 2) + (0 if request else 1), conn)

    def rekeyed_ike(self, *, initiated: bool, conn: str) -> None:
        """An IKE SA rekey completed (§2.18), started by us or by the peer."""
        self._add(_INDEX["ike-rekey-init" if initiated else "ike-rekey-resp"], conn)

    def rekeyed_child(self, conn: str) -> None:
        """A Child SA rekey completed (§2.8)."""
        self._add(_INDEX["child-rekey"], conn)

    def error(self, kind: ErrorKind, conn: str = "", n: int = 1) -> None:
        """An error of the recovery table: counted when it is an invalid message or
        one for an unknown IKE SPI."""
        if kind in _INVALID:
            self._add(_INDEX["invalid"], conn, n)
        elif kind in _INVALID_SPI:
            self._add(_INDEX["invalid-spi"], conn, n)

    def get(
        self, conn: str | None = None, *, every: bool = False
    ) -> dict[str, dict[str, int]]:
        """The counters by name, keyed by connection: the global ones (``conn`` None,
        key ``""``), one connection's (nothing when it has none), or (``every``) those
        of every connection that has counters."""
        rows: dict[str, list[int]]
        if every:
            rows = self._by_conn
        elif conn is None:
            rows = {"": self._global}
        else:
            rows = {conn: self._by_conn[conn]} if conn in self._by_conn else {}
        return {name: dict(zip(COUNTER_NAMES, r, strict=True)) for name, r in rows.items()}

    def reset(self, conn: str | None = None) -> None:
        """Zero the global counters (``conn`` None) or forget those of ``conn``."""
        if conn is None:
            self._global = [0] * len(COUNTER_NAMES)
        else:
            self._by_conn.pop(conn, None)

    def reset_all(self) -> None:
        """Zero the global counters and forget every connection's."""
        self._global = [0] * len(COUNTER_NAMES)
        self._by_conn.clear()
