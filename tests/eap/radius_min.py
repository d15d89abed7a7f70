"""Just enough of a RADIUS client (RFC 2865, RFC 3579, RFC 2548) to put our EAP peer
in front of a real RADIUS server in the tests: Access-Request with EAP-Message,
State and Message-Authenticator; the Response Authenticator checked; the
MS-MPPE keys of an Access-Accept decrypted."""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
import struct
from dataclasses import dataclass, field

ACCESS_REQUEST, ACCESS_ACCEPT, ACCESS_REJECT, ACCESS_CHALLENGE = 1, 2, 3, 11
USER_NAME, STATE, VENDOR_SPECIFIC, EAP_MESSAGE, MESSAGE_AUTHENTICATOR = 1, 24, 26, 79, 80
MICROSOFT, MS_MPPE_SEND_KEY, MS_MPPE_RECV_KEY = 311, 16, 17


@dataclass
class Answer:
    code: int
    eap: bytes
    state: bytes | None
    keys: dict[int, bytes] = field(default_factory=dict)


def _attr(kind: int, value: bytes) -> bytes:
    return bytes([kind, 2 + len(value)]) + value


def _attrs(data: bytes) -> list[tuple[int, bytes]]:
    out, off = [], 0
    while off + 2 <= len(data):
        kind, length = data[off], data[off + 1]
        if length < 2:
            raise ValueError("bad RADIUS attribute length")
        out.append((kind, data[off + 2 : off + length]))
        off += length
    return out


def _mppe_key(secret: bytes, authenticator: bytes, value: bytes) -> bytes:
    """RFC 2548 §2.4.2: salt, then the key length and key XORed with an MD5 chain."""
    salt, cipher = value[:2], value[2:]
    plain, prev = b"", authenticator + salt
    for off in range(0, len(cipher), 16):
        block = cipher[off : off + 16]
        pad = hashlib.md5(secret + prev).digest()
        plain += bytes(a ^ b for a, b in zip(block, pad, strict=True))
        prev = block
    return plain[1 : 1 + plain[0]]


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
        authenticator = os.urandom(16)
        body = _attr(USER_NAME, self.user)
        body += b"".join(_attr(EAP_MESSAGE, eap[i : i + 253]) for i in range(0, len(eap), 253))
        if self.state is not None:
            body += _attr(STATE, self.state)
        body += _attr(MESSAGE_AUTHENTICATOR, bytes(16))
        header = struct.pack("!BBH", ACCESS_REQUEST, self.ident, 20 + len(body)) + authenticator
        mac = hmac.new(self.secret, header + body, "md5").digest()
        packet = header + body[:-16] + mac
        self.sock.sendto(packet, self.addr)
        reply = self.sock.recv(4096)
        return self._answer(reply, authenticator)

    def _answer(self, reply: bytes, authenticator: bytes) -> Answer:
        code, ident, length = struct.unpack_from("!BBH", reply)
        assert ident == self.ident and length == len(reply)
        check = hashlib.md5(reply[:4] + authenticator + reply[20:] + self.secret).digest()
        assert hmac.compare_digest(check, reply[4:20]), "bad Response Authenticator"
        eap, keys = b"", {}
        self.state = None
        for kind, value in _attrs(reply[20:]):
            if kind == EAP_MESSAGE:
                eap += value
            elif kind == STATE:
                self.state = value
            elif kind == VENDOR_SPECIFIC and int.from_bytes(value[:4], "big") == MICROSOFT:
                for vtype, vvalue in _attrs(value[4:]):
                    if vtype in (MS_MPPE_SEND_KEY, MS_MPPE_RECV_KEY):
                        keys[vtype] = _mppe_key(self.secret, authenticator, vvalue)
        return Answer(code, eap, self.state, keys)
