"""EAP-MD5-Challenge (RFC 3748 §5.4, the CHAP computation of RFC 1994 §4.1).

Type-Data: Value-Size (1 octet), Value, then an optional Name.  The Request's Value
is the challenge; the Response's Value is MD5(Identifier || secret || challenge),
the Identifier being that of the Request/Response pair.  One round, no MSK, no
server authentication: for test labs only (RFC 3748 §7.12 lists its weaknesses).
"""

from __future__ import annotations

import hashlib
import hmac

from .base import EapError
from .method import Done, Reply, Rng, Verdict
from .packet import EapType

__all__ = ["Md5Peer", "Md5Server", "md5_response"]

CHALLENGE_LEN = 16


def md5_response(identifier: int, secret: bytes, challenge: bytes) -> bytes:
    """RFC 1994 §4.1: MD5 over the Identifier, the secret and the challenge."""
    return hashlib.md5(bytes([identifier]) + secret + challenge).digest()


def _value(type_data: bytes) -> bytes:
    """The Value field of MD5-Challenge Type-Data (the Name after it is ignored)."""
    if not type_data:
        raise EapError("MD5-Challenge without Value-Size")
    size = type_data[0]
    if size == 0 or 1 + size > len(type_data):
        raise EapError(f"MD5-Challenge Value-Size {size} does not fit {len(type_data)} octets")
    return type_data[1 : 1 + size]


class Md5Server:
    """Sends a random 16-octet challenge; checks the one Response against the secret
    of the EAP identity (an unknown identity fails only then, so a probe cannot
    tell unknown users from wrong passwords)."""

    eap_type = EapType.MD5

    def __init__(self, identity: bytes, secret: bytes | None, rng: Rng) -> None:
        self._identity = identity
        self._secret = secret
        self._rng = rng
        self._challenge = b""
        self._identifier = -1

    def start(self, identifier: int) -> bytes:
        self._challenge = self._rng(CHALLENGE_LEN)
        self._identifier = identifier
        return bytes([CHALLENGE_LEN]) + self._challenge

    def process(self, identifier: int, type_data: bytes) -> Reply | Done:
        value = _value(type_data)
        if self._secret is None:
            return Done(False, reason=f"no EAP secret for identity {self._identity!r}")
        expected = md5_response(self._identifier, self._secret, self._challenge)
        if not hmac.compare_digest(value, expected):
            return Done(False, reason=f"wrong MD5 response for identity {self._identity!r}")
        return Done(True)


class Md5Peer:
    """Answers each MD5-Challenge with the hash of our secret.  An EAP-Success after
    that is believed (the method cannot authenticate the server)."""

    eap_type = EapType.MD5

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self._answered = False

    def process(self, identifier: int, type_data: bytes) -> Reply | Done:
        challenge = _value(type_data)
        self._answered = True
        value = md5_response(identifier, self._secret, challenge)
        return Reply(bytes([len(value)]) + value)

    def verdict(self) -> Verdict:
        if not self._answered:
            return Verdict(False, reason="EAP-Success before the MD5 challenge was answered")
        return Verdict(True)

    def failure_detail(self) -> str:
        return ""
