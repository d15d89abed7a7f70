"""RADIUS packets for the EAP-RADIUS client: Access-Request encoding and answer checks.

Packet encoding, the Request/Response Authenticators (RFC 2865 §3) and the
Message-Authenticator (RFC 2869 §5.14, RFC 3579 §3.2) are pyrad's; this module
decides what goes into an Access-Request (RFC 3579 §2.1, RFC 2865 §5) and what an
answer means for the EAP conversation (RFC 3579 §2.6: Access-Challenge, -Accept,
-Reject), including the MSK from the MS-MPPE keys (RFC 2548 §2.4.2/§2.4.3).

Everything here is sans-I/O: bytes in, bytes and typed results out.  Octet-string
attributes (State, EAP-Message, the MPPE keys) are set and read by number, raw,
so pyrad never reinterprets them; the dictionary (``radius.dictionary``, shipped
as package data) names the typed ones.
"""

from __future__ import annotations

import functools
import hashlib
import io
import ipaddress
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import pyrad.dictionary
import pyrad.packet

from ..constants import EapCode
from ..eap.base import BackendReply, BackendVerdict
from ..eap.packet import code_of

__all__ = [
    "ACCESS_ACCEPT",
    "ACCESS_CHALLENGE",
    "ACCESS_REJECT",
    "ACCESS_REQUEST",
    "MAX_PACKET",
    "AccessRequestAttributes",
    "AnswerDropped",
    "RadiusAnswer",
    "RadiusRequest",
    "dictionary",
    "interpret",
    "join_eap",
    "mppe_decrypt",
    "msk_from_mppe",
    "split_eap",
]

ACCESS_REQUEST = 1
ACCESS_ACCEPT = 2
ACCESS_REJECT = 3
ACCESS_CHALLENGE = 11
CODE_NAMES = {
    ACCESS_REQUEST: "Access-Request",
    ACCESS_ACCEPT: "Access-Accept",
    ACCESS_REJECT: "Access-Reject",
    ACCESS_CHALLENGE: "Access-Challenge",
}

#: RFC 2865 §3: the maximum length of a RADIUS packet
MAX_PACKET = 4096
#: RFC 2865 §5: an attribute's value is at most 253 octets (Length is one octet)
MAX_VALUE = 253

ATTR_STATE = 24
ATTR_EAP_MESSAGE = 79
ATTR_REPLY_MESSAGE = 18
ATTR_CLASS = 25
ATTR_ACCT_INTERIM_INTERVAL = 85
VENDOR_MICROSOFT = 311
MS_MPPE_SEND_KEY = 16
MS_MPPE_RECV_KEY = 17

SERVICE_TYPE_FRAMED = 2  # RFC 2865 §5.6
NAS_PORT_TYPE_VIRTUAL = 5  # RFC 2865 §5.41
#: RFC 5247 §2.1: an MSK is at least 64 octets; strongSwan zero-pads Recv || Send to it
MSK_MIN_LENGTH = 64


@functools.cache
def dictionary() -> Any:
    """The package's RADIUS dictionary (a ``pyrad.dictionary.Dictionary``)."""
    text = resources.files(__package__).joinpath("radius.dictionary").read_text("utf-8")
    return pyrad.dictionary.Dictionary(io.StringIO(text))


def split_eap(eap: bytes) -> list[bytes]:
    """An EAP packet as the values of consecutive EAP-Message attributes, at most
    253 octets each (RFC 3579 §3.1)."""
    return [eap[i : i + MAX_VALUE] for i in range(0, len(eap), MAX_VALUE)]


def join_eap(values: list[bytes]) -> bytes:
    """The EAP packet carried by an answer's EAP-Message attributes, in order
    (RFC 3579 §3.1); ``b""`` when there are none."""
    return b"".join(values)


class AnswerDropped(Exception):
    """An answer that must be silently discarded (RFC 2865 §3, RFC 3579 §3.2):
    ``forged`` when it does not authenticate, else it is garbled or unexpected."""

    def __init__(self, reason: str, *, forged: bool = False) -> None:
        super().__init__(reason)
        self.forged = forged


@dataclass(frozen=True, slots=True)
class AccessRequestAttributes:
    """What one Access-Request carries besides EAP-Message and Message-Authenticator.

    ``nas_address``: NAS-IP-Address or NAS-IPv6-Address (RFC 2865 §5.4, RFC 3162
    §2.1); ``called``/``calling``: Called-/Calling-Station-Id (RFC 2865 §5.30/§5.31;
    the gateway's and the client's address, with ``[port]`` like strongSwan);
    ``nas_port``/``nas_port_id``: the IKE SA's number and connection name;
    ``framed_mtu`` 0: no Framed-MTU (RFC 3579 §2.4).
    """

    identity: bytes
    nas_identifier: str
    nas_address: str = ""
    nas_port: int | None = None
    nas_port_id: str = ""
    called: str = ""
    calling: str = ""
    framed_mtu: int = 0
    state: bytes | None = field(default=None, repr=False)


def _add_typed(pkt: Any, attrs: AccessRequestAttributes) -> None:
    """User-Name, the NAS attributes and the station ids (RFC 2865 §5, RFC 3579 §2.1)."""
    if attrs.identity:
        pkt.AddAttribute("User-Name", attrs.identity[:MAX_VALUE])
    pkt.AddAttribute("NAS-Identifier", attrs.nas_identifier.encode()[:MAX_VALUE])
    if attrs.nas_address:
        ip = ipaddress.ip_address(attrs.nas_address)
        name = "NAS-IP-Address" if ip.version == 4 else "NAS-IPv6-Address"
        pkt.AddAttribute(name, str(ip))
    if attrs.nas_port is not None:
        pkt.AddAttribute("NAS-Port", attrs.nas_port & 0xFFFFFFFF)
    if attrs.nas_port_id:
        pkt.AddAttribute("NAS-Port-Id", attrs.nas_port_id.encode()[:MAX_VALUE])
    pkt.AddAttribute("NAS-Port-Type", NAS_PORT_TYPE_VIRTUAL)
    pkt.AddAttribute("Service-Type", SERVICE_TYPE_FRAMED)
    if attrs.called:
        pkt.AddAttribute("Called-Station-Id", attrs.called.encode())
    if attrs.calling:
        pkt.AddAttribute("Calling-Station-Id", attrs.calling.encode())
    if attrs.framed_mtu:
        pkt.AddAttribute("Framed-MTU", attrs.framed_mtu)


class RadiusRequest:
    """One encoded Access-Request (RFC 2865 §4.1) with its EAP-Message attributes
    and a Message-Authenticator (RFC 3579 §3.2; first, as a BlastRADIUS
    countermeasure); keeps what is needed to check its answers.

    Raises ``ValueError`` when the packet would exceed :data:`MAX_PACKET`.
    """

    def __init__(
        self, identifier: int, secret: bytes, eap: bytes, attrs: AccessRequestAttributes
    ) -> None:
        pkt = pyrad.packet.AuthPacket(
            code=pyrad.packet.AccessRequest, id=identifier, secret=secret, dict=dictionary()
        )
        pkt.add_message_authenticator()
        _add_typed(pkt, attrs)
        if attrs.state is not None:
            pkt[ATTR_STATE] = [attrs.state]  # RFC 2865 §5.24: echoed unmodified
        pkt[ATTR_EAP_MESSAGE] = split_eap(eap) or [b""]
        raw: bytes = pkt.RequestPacket()
        if len(raw) > MAX_PACKET:
            raise ValueError(
                f"an Access-Request with a {len(eap)}-octet EAP packet is {len(raw)} octets, "
                f"more than RADIUS allows ({MAX_PACKET}, RFC 2865 §3)"
            )
        self._packet = pkt
        self.raw = raw
        self.identifier = identifier
        self.secret = secret
        self.authenticator: bytes = raw[4:20]

    def check_answer(self, data: bytes) -> RadiusAnswer:
        """Decode and authenticate an answer to this request: its identifier, the
        Response Authenticator (RFC 2865 §3) and the Message-Authenticator it must
        carry (RFC 3579 §3.2).  Raises :class:`AnswerDropped`."""
        if len(data) < 20 or data[1] != self.identifier:
            raise AnswerDropped("not an answer to this request")
        try:
            reply = self._packet.CreateReply(packet=data)
        except Exception as e:  # pyrad's PacketError and whatever garbage provokes
            raise AnswerDropped(f"malformed packet: {e}") from None
        if reply.code not in (ACCESS_ACCEPT, ACCESS_REJECT, ACCESS_CHALLENGE):
            raise AnswerDropped(f"unexpected RADIUS code {reply.code}")
        if 80 not in dict.keys(reply):
            raise AnswerDropped("no Message-Authenticator (RFC 3579 §3.2)", forged=True)
        try:
            ok = self._packet.VerifyReply(reply, data, enforce_ma=True)
        except Exception as e:
            raise AnswerDropped(f"malformed packet: {e}") from None
        if not ok:
            raise AnswerDropped(
                "Response Authenticator or Message-Authenticator does not verify", forged=True
            )
        return RadiusAnswer(
            code=reply.code,
            eap=join_eap(_raw(reply, ATTR_EAP_MESSAGE)),
            state=next(iter(_raw(reply, ATTR_STATE)), None),
            send_keys=tuple(_raw(reply, (VENDOR_MICROSOFT, MS_MPPE_SEND_KEY))),
            recv_keys=tuple(_raw(reply, (VENDOR_MICROSOFT, MS_MPPE_RECV_KEY))),
            reply_message=b" ".join(_raw(reply, ATTR_REPLY_MESSAGE)),
            classes=tuple(_raw(reply, ATTR_CLASS)),
            interim_interval=_integer(reply, ATTR_ACCT_INTERIM_INTERVAL),
        )


def _raw(reply: Any, key: int | tuple[int, int]) -> list[bytes]:
    """The raw values of one attribute (by number or (vendor, number))."""
    values = dict.get(reply, key, [])
    return [bytes(v) for v in values if isinstance(v, bytes | bytearray)]


def _integer(reply: Any, key: int) -> int | None:
    """The first value of an integer attribute (4 octets, RFC 2865 §5), None if absent
    or malformed."""
    return next((int.from_bytes(v, "big") for v in _raw(reply, key) if len(v) == 4), None)


@dataclass(frozen=True, slots=True)
class RadiusAnswer:
    """An authenticated answer: its code and the attributes that matter here.  An
    Access-Accept's Class values (RFC 2865 §5.25) and Acct-Interim-Interval (RFC 2869
    §5.16) are for the accounting of that session."""

    code: int
    eap: bytes = b""
    state: bytes | None = field(default=None, repr=False)
    send_keys: tuple[bytes, ...] = field(default=(), repr=False)
    recv_keys: tuple[bytes, ...] = field(default=(), repr=False)
    reply_message: bytes = b""
    classes: tuple[bytes, ...] = ()
    interim_interval: int | None = None


def mppe_decrypt(value: bytes, secret: bytes, request_authenticator: bytes) -> bytes:
    """The key in an MS-MPPE-Send-Key/-Recv-Key value (RFC 2548 §2.4.2, §2.4.3).

    ``value`` is Salt (2 octets) || String; String is P xor the key stream
    b(1) = MD5(S + R + A), b(i) = MD5(S + c(i-1)) with S the shared secret, R the
    Request Authenticator, A the salt and c(i) the ciphertext blocks; P is
    Key-Length (1 octet) || Key || zero padding.  Raises ``ValueError``.
    """
    salt, cipher = value[:2], value[2:]
    if len(value) < 2 + 16 or len(cipher) % 16:
        raise ValueError(f"{len(value)} octets: not salt + a multiple of 16")
    plain = bytearray()
    prev = request_authenticator + salt
    for i in range(0, len(cipher), 16):
        block = cipher[i : i + 16]
        stream = hashlib.md5(secret + prev).digest()
        plain += bytes(a ^ b for a, b in zip(block, stream, strict=True))
        prev = block
    length = plain[0]
    if length == 0 or length > len(plain) - 1:
        raise ValueError(f"key length {length} does not fit {len(plain) - 1} octets")
    return bytes(plain[1 : 1 + length])


def msk_from_mppe(recv_key: bytes, send_key: bytes) -> bytes:
    """MSK = MS-MPPE-Recv-Key || MS-MPPE-Send-Key, zero-padded to 64 octets (RFC 3748
    §7.10 / RFC 5247 §2.1 MSK size; the order and padding are strongSwan's
    eap-radius, so both ends of the IKE SA compute the same AUTH, RFC 7296 §2.16)."""
    msk = recv_key + send_key
    return msk + bytes(max(0, MSK_MIN_LENGTH - len(msk)))


def _accept(answer: RadiusAnswer, request: RadiusRequest) -> BackendReply:
    """Access-Accept: the EAP-Success it carries and the MSK from the MPPE keys."""
    if answer.eap and code_of(answer.eap, exact=True) != EapCode.SUCCESS:
        why = "Access-Accept whose EAP-Message is not an EAP-Success (RFC 3579 §2.6.3)"
        return BackendReply(BackendVerdict.REJECT, reason=why)
    msk = b""
    if answer.recv_keys or answer.send_keys:
        if len(answer.recv_keys) != 1 or len(answer.send_keys) != 1:
            why = "Access-Accept without exactly one MS-MPPE-Recv-Key and MS-MPPE-Send-Key"
            return BackendReply(BackendVerdict.REJECT, reason=why)
        try:
            recv = mppe_decrypt(answer.recv_keys[0], request.secret, request.authenticator)
            send = mppe_decrypt(answer.send_keys[0], request.secret, request.authenticator)
        except ValueError as e:
            why = f"Access-Accept with undecryptable MS-MPPE keys: {e} (RFC 2548 §2.4.2)"
            return BackendReply(BackendVerdict.REJECT, reason=why)
        msk = msk_from_mppe(recv, send)
    return BackendReply(BackendVerdict.ACCEPT, eap=answer.eap, msk=msk)


def interpret(answer: RadiusAnswer, request: RadiusRequest) -> BackendReply:
    """What an authenticated answer means for the EAP conversation (RFC 3579 §2.6).

    The verdict follows the RADIUS code; an Access-Challenge must carry an EAP
    Request and an Access-Accept may carry only an EAP-Success -- anything else ends
    the conversation as a REJECT with the reason (never a silent success).
    """
    msg = answer.reply_message.decode("utf-8", "replace")
    said = f" (Reply-Message {msg!r})" if msg else ""
    if answer.code == ACCESS_CHALLENGE:
        if code_of(answer.eap, exact=True) != EapCode.REQUEST:
            why = "Access-Challenge without a well-formed EAP Request (RFC 3579 §2.6.1)"
            return BackendReply(BackendVerdict.REJECT, reason=why)
        return BackendReply(BackendVerdict.CHALLENGE, eap=answer.eap)
    if answer.code == ACCESS_ACCEPT:
        return _accept(answer, request)
    eap = answer.eap if code_of(answer.eap, exact=True) == EapCode.FAILURE else b""
    return BackendReply(BackendVerdict.REJECT, eap=eap, reason=f"Access-Reject{said}")
