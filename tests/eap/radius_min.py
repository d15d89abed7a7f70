"""Just enough of a RADIUS client to put our EAP peer in front of a real RADIUS
server in the tests: a UDP socket around the daemon's sans-I/O codec
(:mod:`pyipsec.daemon.radius_codec`: Access-Request with EAP-Message, State and
Message-Authenticator; the answer authenticated; the MS-MPPE keys decrypted)."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from pyipsec.daemon.radius_codec import (
    ACCESS_ACCEPT,
    ACCESS_CHALLENGE,
    ACCESS_REJECT,
    MS_MPPE_RECV_KEY,
    MS_MPPE_SEND_KEY,
    AccessRequestAttributes,
    RadiusRequest,
    mppe_decrypt,
)

__all__ = [
    "ACCESS_ACCEPT",
    "ACCESS_CHALLENGE",
    "ACCESS_REJECT",
    "MS_MPPE_RECV_KEY",
    "MS_MPPE_SEND_KEY",
    "Answer",
    "RadiusClient",
]


@dataclass
class Answer:
    code: int
    eap: bytes
    state: bytes | None
    keys: dict[int, bytes] = field(default_factory=dict)


class RadiusClient:
    def __init__(self, port: int, secret: bytes, user: bytes) -> None:
        self.addr = ("127.0.0.1", port)
        self.secret = secret
        self.user = user
        self.state: bytes | None = None
        self.ident = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(5)

    def close(self) -> None:
        self.sock.close()

    def send(self, eap: bytes) -> Answer:
        self.ident = (self.ident + 1) & 0xFF
        attrs = AccessRequestAttributes(self.user, "pyipsec-test", state=self.state)
        req = RadiusRequest(self.ident, self.secret, eap, attrs)
        self.sock.sendto(req.raw, self.addr)
        reply = req.check_answer(self.sock.recv(4096))  # raises AnswerDropped
        self.state = reply.state
        keys = {
            kind: mppe_decrypt(values[0], self.secret, req.authenticator)
            for kind, values in (
                (MS_MPPE_SEND_KEY, reply.send_keys),
                (MS_MPPE_RECV_KEY, reply.recv_keys),
            )
            if values
        }
        return Answer(reply.code, reply.eap, reply.state, keys)
