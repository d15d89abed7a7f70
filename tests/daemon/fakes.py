"""Test doubles for the daemon: a scripted stand-in for the IKE manager and a
Child SA description builder (shared by the runtime tests)."""

from __future__ import annotations

from typing import Any

from pyipsec.config.model import Mode
from pyipsec.ikev2 import events as ev
from pyipsec.ikev2.selectors import Selector


class ScriptedManager:
    """The part of ``IkeManagerLike`` the runtime always calls: it sends nothing, has
    no timer, hands out ``events`` in order and records ``initiate`` calls.  Tests
    subclass it to script the rest."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.initiated: list[tuple[str, str | None]] = []

    def receive_datagram(self, data: bytes, local: Any, remote: Any, now: float) -> None:
        pass

    def datagrams_to_send(self, now: float) -> list[Any]:
        return []

    def next_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        pass

    def next_event(self) -> Any:
        return self.events.pop(0) if self.events else None

    def initiate(self, conn: str, child: str | None, now: float, **kw: object) -> None:
        self.initiated.append((conn, child))

    def status(self, now: float | None = None) -> list[dict[str, Any]]:
        return []


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
