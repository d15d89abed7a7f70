"""The one typed seam between the sans-I/O IKE core and whoever drives it (the daemon).

:class:`IkeCore` lists every call the daemon makes into the core.  :class:`IkeManager`
implements it; the daemon's tests use a fake that implements it too, so mypy catches a
rename on either side.  What the daemon needs to know arrives as events
(:mod:`pyipsec.ikev2.events`) or as the return values and views below -- never by
reading core internals.

The five verbs follow aioquic's ``QuicConnection``: ``receive_datagram``,
``datagrams_to_send``, ``next_timer``, ``handle_timer``, ``next_event``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..config.model import ConnectionConfig, PoolConfig
from ..eap.base import BackendReply
from .events import Address, Event
from .state import IKE_ESTABLISHED, IKE_FINAL, IKE_HALF_OPEN, ChildSaState, IkeSaState


@dataclass(frozen=True, slots=True)
class IkeSaView:
    """A read-only snapshot of one IKE SA (for control verbs, not for status output)."""

    ike_id: int
    conn: str
    state: IkeSaState
    initiator: bool
    local: Address
    remote: Address
    local_id: str
    remote_id: str

    @property
    def established(self) -> bool:
        return self.state in IKE_ESTABLISHED


@dataclass(frozen=True, slots=True)
class ChildSaView:
    """A read-only snapshot of one Child SA pair."""

    ike_id: int
    conn: str
    child: str
    spi_in: int
    spi_out: int
    state: ChildSaState


@dataclass(frozen=True, slots=True)
class SaCounts:
    """How many SAs the core holds, kept as counters (no walk over the SAs).

    ``ike_by_state``: registered IKE SAs per state, every state present (the final
    ones, DELETED and FAILED, are SAs lingering to answer retransmissions, RFC 7296
    §2.1); ``child``: installed Child SA pairs (from ChildSaInstalled/ChildSaRekeyed
    until ChildSaDeleted or their IKE SA is forgotten); ``half_open_responders``: the
    IKE SAs we answered IKE_SA_INIT for and that have not authenticated (§2.6);
    ``child_by_state``: the Child SAs of the live IKE SAs per state (what
    ``child_sas()`` lists), every state present."""

    ike_by_state: Mapping[IkeSaState, int]
    child: int
    half_open_responders: int
    child_by_state: Mapping[ChildSaState, int]

    @property
    def ike(self) -> int:
        """Live IKE SAs (not deleted or failed): ``len(ike_sas())``."""
        return sum(n for s, n in self.ike_by_state.items() if s not in IKE_FINAL)

    @property
    def half_open(self) -> int:
        """IKE SAs of either role that have not completed IKE_AUTH."""
        return sum(n for s, n in self.ike_by_state.items() if s in IKE_HALF_OPEN)


class IkeCore(Protocol):
    """Everything the daemon calls on the IKE core."""

    # -- the five verbs
    def receive_datagram(self, data: bytes, local: Address, remote: Address, now: float) -> None:
        ...

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address, Address]]: ...

    def next_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...

    def next_event(self) -> Event | None: ...

    # -- NAT keepalives (RFC 3948 §4)
    def keepalives_to_send(self, now: float) -> list[tuple[Address, Address]]: ...

    # -- commands
    def initiate(
        self, conn_name: str, child_name: str | None, now: float, *, persistent: bool = False
    ) -> Any: ...

    def terminate(self, target: int | str, now: float) -> int: ...

    def rekey_ike(self, ike_id: int, now: float) -> None: ...

    def rekey_child(self, ike_id: int, child_spi_in: int, now: float) -> None: ...

    def delete_child(self, ike_id: int, spi_in: int, now: float) -> None: ...

    def liveness(self, ike_id: int, now: float) -> None: ...

    def reload(self, connections: Sequence[ConnectionConfig], now: float) -> None: ...

    # -- virtual IP pools (RFC 7296 §2.19)
    def load_pools(self, pools: Sequence[PoolConfig]) -> list[str]: ...

    def pools_status(
        self, *, leases: bool = False, name: str | None = None
    ) -> list[dict[str, Any]]: ...

    def shutdown(self, now: float) -> None: ...

    # -- reports from the data plane
    def esp_activity(
        self, spi_in: int, now: float, remote: Address | None = None, seq: int | None = None
    ) -> bool: ...

    def notify_traffic(
        self,
        spi_in: int,
        now: float,
        *,
        bytes_in: int = 0,
        packets_in: int = 0,
        bytes_out: int = 0,
        packets_out: int = 0,
        seq_out: int | None = None,
    ) -> None: ...

    def esp_errors(
        self,
        spi_in: int,
        now: float,
        *,
        auth: int = 0,
        replay: int = 0,
        malformed: int = 0,
        selectors: int = 0,
    ) -> None: ...

    def unknown_esp_spi(self, spi: int, remote: Address, now: float) -> bool: ...

    # -- the AAA backend of EAP-RADIUS (events.EapBackendRequest)
    def eap_backend_reply(self, ike_id: int, reply: BackendReply, now: float) -> None: ...

    # -- queries
    def ike_sas(self, conn: str | None = None) -> list[IkeSaView]: ...

    def child_sas(self, conn: str | None = None) -> list[ChildSaView]: ...

    def ike_sa(self, ike_id: int) -> IkeSaView | None: ...

    def child_sa(self, spi_in: int) -> ChildSaView | None: ...

    def status(
        self,
        now: float | None = None,
        *,
        conn: str | None = None,
        peer: str | None = None,
        offset: int = 0,
        limit: int | None = None,
    ) -> list[dict[str, Any]]: ...

    def error_status(self) -> dict[str, int]: ...

    def half_open_status(self) -> dict[str, int]: ...

    # -- IKE counters (strongSwan's counters plugin: swanctl --counters)
    def counters(
        self, conn: str | None = None, *, every: bool = False
    ) -> dict[str, dict[str, int]]: ...

    def reset_counters(self, conn: str | None = None, *, every: bool = False) -> None: ...

    def sa_counts(self) -> SaCounts: ...


__all__ = ["ChildSaView", "IkeCore", "IkeSaView", "SaCounts"]
