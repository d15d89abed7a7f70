"""An in-process RADIUS server for the EAP-RADIUS client tests (asyncio UDP on 127.0.0.1).

Requests are decoded and their Message-Authenticator checked with pyrad; a test-given
``answer(request) -> reply | bytes | None`` builds what goes back (a pyrad reply packet
is encoded with its Response Authenticator and Message-Authenticator; bytes are sent
as they are; None sends nothing).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyrad.packet

from pyipsec.daemon.radius_codec import dictionary, split_eap

Answer = Callable[["Received"], Any]


@dataclass
class Received:
    """One request as the server saw it."""

    packet: Any  # pyrad AuthPacket
    raw: bytes
    source: tuple[str, int]
    ma_valid: bool

    @property
    def eap(self) -> bytes:
        return b"".join(self.packet.get(79, []))

    @property
    def state(self) -> bytes | None:
        values = self.packet.get(24, [])
        return values[0] if values else None

    def attr(self, name: str) -> list[Any]:
        return list(self.packet.get(name, []))

    def reply(self, code: int, eap: bytes = b"", state: bytes | None = None) -> Any:
        """A pyrad reply of ``code`` with EAP-Message(s) and State."""
        r = self.packet.CreateReply()
        r.code = code
        if eap:
            r[79] = split_eap(eap)
        if state is not None:
            r[24] = [state]
        return r


@dataclass
class FakeRadius(asyncio.DatagramProtocol):
    """A RADIUS server: ``await start()``, ``address``, ``received``, ``close()``."""

    secret: bytes
    answer: Answer | None = None  # None: never answers
    received: list[Received] = field(default_factory=list)
    transport: asyncio.DatagramTransport | None = None

    async def start(self, host: str = "127.0.0.1") -> FakeRadius:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(host, 0))
        self.transport = transport
        return self

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        addr: tuple[str, int] = self.transport.get_extra_info("sockname")[:2]
        return addr

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        pkt = pyrad.packet.AuthPacket(packet=data, secret=self.secret, dict=dictionary())
        ma_valid = bool(pkt.message_authenticator) and pkt.verify_message_authenticator()
        req = Received(pkt, data, addr, ma_valid)
        self.received.append(req)
        if self.answer is None:
            return
        out = self.answer(req)
        self.send(out, addr)

    def send(self, out: Any, addr: tuple[str, int]) -> None:
        if out is None:
            return
        data = out if isinstance(out, bytes) else out.ReplyPacket()
        assert self.transport is not None
        self.transport.sendto(data, addr)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
