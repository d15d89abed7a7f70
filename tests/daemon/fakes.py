"""Test doubles for the daemon: a scripted stand-in for the IKE core and a Child SA
description builder (shared by the runtime tests)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pyipsec.config.model import ConnectionConfig, Mode, PoolConfig
from pyipsec.eap.base import BackendReply
from pyipsec.ikev2 import events as ev
from pyipsec.ikev2.api import ChildSaView, IkeCore, IkeSaView, SaCounts
from pyipsec.ikev2.counters import IkeCounters
from pyipsec.ikev2.selectors import Selector
from pyipsec.ikev2.state import IKE_HALF_OPEN, ChildSaState, IkeSaState

Address = tuple[str, int]


class FakeManager:
    """A complete :class:`~pyipsec.ikev2.api.IkeCore` that does nothing by itself: it
    sends what the test puts in ``out``, has the timer in ``timer``, hands out
    ``events`` in order, answers the queries from ``ike_views``/``child_views``/``sas``
    and records every command in ``calls`` (``initiate`` also in ``initiated``).
    Tests set the knobs or subclass it to script the rest."""

    def __init__(self) -> None:
        self.events: list[ev.Event] = []
        self.out: list[tuple[bytes, Address, Address]] = []
        self.keepalives: list[tuple[Address, Address]] = []
        self.timer: float | None = None
        self.calls: list[tuple[str, Any]] = []
        self.initiated: list[tuple[str, str | None]] = []
        self.ike_views: list[IkeSaView] = []
        self.child_views: list[ChildSaView] = []
        self.sas: list[dict[str, Any]] = []  # what status() returns
        self.pool_views: list[dict[str, Any]] = []  # what pools_status() returns
        self.status_fails = False
        self.errors: dict[str, int] = {}
        self.half_open = {"sas": 0, "bytes": 0, "peak": 0, "budget": 0}
        self.ike_counters = IkeCounters()
        self.fail_receive = False
        self.fail_timer = False
        self.moves = False  # esp_activity with a new remote: PeerAddressChanged
        self.unknown_spi_answers = False

    # -- the five verbs
    def receive_datagram(self, data: bytes, local: Address, remote: Address, now: float) -> None:
        self.calls.append(("rx", data))
        if self.fail_receive:
            raise RuntimeError("core bug")

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address, Address]]:
        out, self.out = self.out, []
        return out

    def next_timer(self) -> float | None:
        return self.timer

    def handle_timer(self, now: float) -> None:
        self.calls.append(("timer", now))
        self.timer = None
        if self.fail_timer:
            raise RuntimeError("timer bug")

    def next_event(self) -> ev.Event | None:
        return self.events.pop(0) if self.events else None

    def keepalives_to_send(self, now: float) -> list[tuple[Address, Address]]:
        out, self.keepalives = self.keepalives, []
        return out

    # -- commands
    def initiate(
        self, conn_name: str, child_name: str | None, now: float, *, persistent: bool = False
    ) -> None:
        self.calls.append(("initiate", (conn_name, child_name)))
        self.initiated.append((conn_name, child_name))

    def terminate(self, target: int | str, now: float) -> int:
        self.calls.append(("terminate", target))
        return 0

    def rekey_ike(self, ike_id: int, now: float) -> None:
        self.calls.append(("rekey_ike", ike_id))

    def rekey_child(self, ike_id: int, child_spi_in: int, now: float) -> None:
        self.calls.append(("rekey_child", (ike_id, child_spi_in)))

    def delete_child(self, ike_id: int, spi_in: int, now: float) -> None:
        self.calls.append(("delete_child", (ike_id, spi_in)))

    def liveness(self, ike_id: int, now: float) -> None:
        self.calls.append(("liveness", ike_id))

    def reload(self, connections: Sequence[ConnectionConfig], now: float) -> None:
        self.calls.append(("reload", [c.name for c in connections]))

    def shutdown(self, now: float) -> None:
        self.calls.append(("shutdown", now))

    # -- virtual IP pools
    def load_pools(self, pools: Sequence[PoolConfig]) -> list[str]:
        self.calls.append(("load_pools", [p.name for p in pools]))
        return []

    def pools_status(
        self, *, leases: bool = False, name: str | None = None
    ) -> list[dict[str, Any]]:
        return list(self.pool_views)

    # -- reports from the data plane
    def esp_activity(
        self, spi_in: int, now: float, remote: Address | None = None, seq: int | None = None
    ) -> bool:
        self.calls.append(("esp_activity", (spi_in, remote, seq)))
        if self.moves and remote is not None:
            self.events.append(ev.PeerAddressChanged(1, ("127.0.0.2", 4500), remote))
            return True
        return False

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
    ) -> None:
        self.calls.append(("traffic", (spi_in, bytes_in, packets_in, bytes_out, packets_out)))

    def esp_errors(
        self,
        spi_in: int,
        now: float,
        *,
        auth: int = 0,
        replay: int = 0,
        malformed: int = 0,
        selectors: int = 0,
    ) -> None:
        self.calls.append(("esp_errors", (spi_in, auth, replay, malformed, selectors)))

    def unknown_esp_spi(self, spi: int, remote: Address, now: float) -> bool:
        self.calls.append(("unknown_spi", (spi, remote)))
        return self.unknown_spi_answers

    def eap_backend_reply(self, ike_id: int, reply: BackendReply, now: float) -> None:
        self.calls.append(("eap_backend_reply", (ike_id, reply)))

    # -- queries
    def ike_sas(self, conn: str | None = None) -> list[IkeSaView]:
        return [v for v in self.ike_views if conn is None or v.conn == conn]

    def child_sas(self, conn: str | None = None) -> list[ChildSaView]:
        return [v for v in self.child_views if conn is None or v.conn == conn]

    def ike_sa(self, ike_id: int) -> IkeSaView | None:
        return next((v for v in self.ike_views if v.ike_id == ike_id), None)

    def child_sa(self, spi_in: int) -> ChildSaView | None:
        return next((v for v in self.child_views if v.spi_in == spi_in), None)

    def status(
        self,
        now: float | None = None,
        *,
        conn: str | None = None,
        peer: str | None = None,
        offset: int = 0,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        if self.status_fails:
            raise RuntimeError("status bug")
        sas = [s for s in self.sas if conn is None or s.get("name") == conn]
        return sas[offset : None if limit is None else offset + limit]

    def error_status(self) -> dict[str, int]:
        return dict(self.errors)

    def half_open_status(self) -> dict[str, int]:
        return dict(self.half_open)

    def counters(
        self, conn: str | None = None, *, every: bool = False
    ) -> dict[str, dict[str, int]]:
        return self.ike_counters.get(conn, every=every)

    def reset_counters(self, conn: str | None = None, *, every: bool = False) -> None:
        self.calls.append(("reset_counters", (conn, every)))
        if every:
            self.ike_counters.reset_all()
        else:
            self.ike_counters.reset(conn)

    def sa_counts(self) -> SaCounts:
        """Counted from ``ike_views``/``child_views`` (the fake keeps no counters)."""
        by_state = dict.fromkeys(IkeSaState, 0)
        for v in self.ike_views:
            by_state[v.state] += 1
        responders = sum(not v.initiator and v.state in IKE_HALF_OPEN for v in self.ike_views)
        child_by_state = dict.fromkeys(ChildSaState, 0)
        for c in self.child_views:
            child_by_state[c.state] += 1
        return SaCounts(by_state, len(self.child_views), responders, child_by_state)


def _check(f: FakeManager) -> IkeCore:
    """Static check (mypy): the fake implements every call of the core's seam."""
    return f


def child_info(
    spi_in: int,
    *,
    ike_id: int = 1,
    child: str = "net",
    local_ts: str = "203.0.113.0/26",
    remote_ts: str = "203.0.113.64/26",
    mode: Mode = Mode.TUNNEL,
    encap: bool = True,
    local: tuple[str, int] = ("127.0.0.1", 4500),
    remote: tuple[str, int] = ("127.0.0.2", 4500),
) -> ev.ChildSaInfo:
    """An AES-GCM-128 Child SA of connection ``c`` with zero keys."""
    return ev.ChildSaInfo(
        ike_id=ike_id, conn="c", child=child, spi_in=spi_in, spi_out=spi_in + 1, encr_id=20,
        key_bits=128, integ_id=None, esn=False, encr_key_in=bytes(20), integ_key_in=b"",
        encr_key_out=bytes(20), integ_key_out=b"",
        local_ts=(Selector.network(local_ts),), remote_ts=(Selector.network(remote_ts),),
        mode=mode, encap=encap, local=local, remote=remote,
        lifetimes=ev.ChildLifetimes(soft=1e12, hard=2e12), suite="aes128gcm16",
    )  # fmt: skip
