"""EAP-MSCHAPv2: MS-CHAP-V2 (RFC 2759) in EAP (draft-kamath-pppext-eap-mschapv2-02),
with the MSK of RFC 3079 §3 as strongSwan and Windows derive it.

Type-Data: OpCode (1 Challenge, 2 Response, 3 Success, 4 Failure), MS-CHAPv2-ID
(the EAP Identifier of the Challenge, kept for the whole exchange), MS-Length
(the Type-Data length), then per OpCode:

- Challenge (server): Value-Size 16, the 16-octet challenge, the server's Name;
- Response (peer): Value-Size 49, Peer-Challenge (16), 8 reserved zero octets,
  NT-Response (24), Flags 0, the peer's Name (its identity);
- Success request (server): ``S=<40 hex: Authenticator Response> M=<message>``; the
  peer checks it (mutual authentication, RFC 2759 §8.8) and answers with the bare
  OpCode 3, after which the server sends EAP-Success;
- Failure request (server): ``E=691 R=0 C=<32 hex> V=3 M=<message>``; the peer
  answers with the bare OpCode 4 and the server sends EAP-Failure.

The crypto (RFC 2759 §8): NtPasswordHash = MD4(UTF-16LE password);
ChallengeHash = SHA1(PeerChallenge | AuthenticatorChallenge | UserName)[0:8] with
the domain (``DOMAIN\\``) stripped from the name; NT-Response = three DES
encryptions of the ChallengeHash under the 21-octet zero-padded password hash.
The MSK (RFC 3079 §3.4, 128-bit keys): MasterKey = SHA1(PasswordHashHash |
NT-Response | Magic1)[0:16]; MSK = MasterReceiveKey | MasterSendKey | 32 zero
octets, the server's receive key (Magic2) first -- strongSwan's eap_mschapv2 order.
MD4 and DES come from pycryptodome.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import struct
from collections.abc import Callable

from Crypto.Cipher import DES
from Crypto.Hash import MD4

from .base import EapError
from .method import Done, Reply, Rng, Verdict
from .packet import EapType

__all__ = [
    "MsChapV2Peer",
    "MsChapV2Server",
    "authenticator_response",
    "challenge_hash",
    "generate_nt_response",
    "msk",
    "nt_password_hash",
]

CHALLENGE = 1
RESPONSE = 2
SUCCESS = 3
FAILURE = 4

CHALLENGE_LEN = 16
RESPONSE_VALUE_LEN = 49
ERROR_AUTHENTICATION_FAILURE = 691

_HDR = struct.Struct("!BBH")  # OpCode, MS-CHAPv2-ID, MS-Length

# RFC 2759 §8.7
_AUTH_MAGIC1 = b"Magic server to client signing constant"
_AUTH_MAGIC2 = b"Pad to make it do more than one iteration"
# RFC 3079 §3.4
_KEY_MAGIC1 = b"This is the MPPE Master Key"
_KEY_MAGIC2 = (
    b"On the client side, this is the send key; on the server side, it is the receive key."
)
_KEY_MAGIC3 = (
    b"On the client side, this is the receive key; on the server side, it is the send key."
)
_SHS_PAD1 = bytes(40)
_SHS_PAD2 = b"\xf2" * 40


# --- RFC 2759 §8 / RFC 3079 §3 ---------------------------------------------------------


def nt_password_hash(password: bytes) -> bytes:
    """MD4 of the password in UTF-16LE (RFC 2759 §8.3); ``password`` is UTF-8."""
    text = password.decode("utf-8", "replace")
    return MD4.new(text.encode("utf-16-le")).digest()


def _md4(data: bytes) -> bytes:
    return MD4.new(data).digest()


def user_name(name: bytes) -> bytes:
    """The user name ChallengeHash uses: without a ``DOMAIN\\`` prefix (RFC 2759 §4)."""
    return name.split(b"\\", 1)[1] if b"\\" in name else name


def challenge_hash(peer_challenge: bytes, authenticator_challenge: bytes, name: bytes) -> bytes:
    """RFC 2759 §8.2: the first 8 octets of SHA1(peer | authenticator | user name)."""
    digest = hashlib.sha1(peer_challenge + authenticator_challenge + user_name(name)).digest()
    return digest[:8]


def _des_key(seven: bytes) -> bytes:
    """Spread 56 key bits over 8 octets, 7 bits each (RFC 2759 §8.6 DesEncrypt; the
    low parity bit is left 0, DES ignores it)."""
    bits = int.from_bytes(seven, "big")
    return bytes(((bits >> (49 - 7 * i)) & 0x7F) << 1 for i in range(8))


def challenge_response(challenge: bytes, password_hash: bytes) -> bytes:
    """RFC 2759 §8.5: the challenge DES-encrypted under three 7-octet thirds of the
    zero-padded 21-octet password hash."""
    padded = password_hash.ljust(21, b"\x00")
    return b"".join(
        DES.new(_des_key(padded[i : i + 7]), DES.MODE_ECB).encrypt(challenge)
        for i in (0, 7, 14)
    )


def generate_nt_response(
    authenticator_challenge: bytes, peer_challenge: bytes, name: bytes, password: bytes
) -> bytes:
    """RFC 2759 §8.1 GenerateNTResponse (24 octets)."""
    hashed = challenge_hash(peer_challenge, authenticator_challenge, name)
    return challenge_response(hashed, nt_password_hash(password))


def authenticator_response(
    password: bytes,
    nt_response: bytes,
    peer_challenge: bytes,
    authenticator_challenge: bytes,
    name: bytes,
) -> str:
    """RFC 2759 §8.7 GenerateAuthenticatorResponse: ``S=`` and 40 uppercase hex."""
    hash_hash = _md4(nt_password_hash(password))
    digest = hashlib.sha1(hash_hash + nt_response + _AUTH_MAGIC1).digest()
    hashed = challenge_hash(peer_challenge, authenticator_challenge, name)
    return "S=" + hashlib.sha1(digest + hashed + _AUTH_MAGIC2).hexdigest().upper()


def master_key(password: bytes, nt_response: bytes) -> bytes:
    """RFC 3079 §3.4 GetMasterKey (16 octets)."""
    hash_hash = _md4(nt_password_hash(password))
    return hashlib.sha1(hash_hash + nt_response + _KEY_MAGIC1).digest()[:16]


def asymmetric_start_key(master: bytes, magic: bytes) -> bytes:
    """RFC 3079 §3.4 GetAsymmetricStartKey for 128-bit keys."""
    return hashlib.sha1(master + _SHS_PAD1 + magic + _SHS_PAD2).digest()[:16]


def msk(password: bytes, nt_response: bytes) -> bytes:
    """The 64-octet MSK: MasterReceiveKey | MasterSendKey (server's view, RFC 3079
    §3.4: Magic2 then Magic3) | 32 zero octets, as strongSwan's eap_mschapv2."""
    master = master_key(password, nt_response)
    receive = asymmetric_start_key(master, _KEY_MAGIC2)
    send = asymmetric_start_key(master, _KEY_MAGIC3)
    return receive + send + bytes(32)


# --- the EAP binding ----------------------------------------------------------------------


def _build(opcode: int, ms_id: int, data: bytes) -> bytes:
    return _HDR.pack(opcode, ms_id, _HDR.size + len(data)) + data


def _split(type_data: bytes) -> tuple[int, int, bytes]:
    """(OpCode, MS-CHAPv2-ID, data) of Type-Data with the 4-octet header; the peer's
    Success and Failure Responses are the bare OpCode (ID -1 then)."""
    if type_data[:1] in (b"\x03", b"\x04") and len(type_data) < _HDR.size:
        return type_data[0], -1, b""
    if len(type_data) < _HDR.size:
        raise EapError(f"MS-CHAPv2 message of {len(type_data)} octets has no header")
    opcode, ms_id, _ = _HDR.unpack_from(type_data)
    return opcode, ms_id, type_data[_HDR.size :]


def _text(data: bytes) -> str:
    return data.rstrip(b"\x00").decode("latin-1")


_FIELD = re.compile(r"(?:^|\s)([ERCVM])=(\S*)")


def parse_failure(data: bytes) -> dict[str, str]:
    """The fields of a Failure request (RFC 2759 §6): E, R, C, V, and M (the rest of
    the text after ``M=``)."""
    text = _text(data)
    fields = {k: v for k, v in _FIELD.findall(text)}
    if "M=" in text:
        fields["M"] = text.split("M=", 1)[1]
    return fields


#: ``secret_of(name)`` -> the password of the user ``name``, None when unknown.
SecretLookup = Callable[[bytes], bytes | None]


class MsChapV2Server:
    """The authenticator: Challenge, check of the NT-Response with the secret of the
    Name the peer gives, Success (with the Authenticator Response) or Failure."""

    eap_type = EapType.MSCHAPV2

    def __init__(self, secret_of: SecretLookup, server_name: bytes, rng: Rng) -> None:
        self._secret_of = secret_of
        self._server_name = server_name
        self._rng = rng
        self._challenge = b""
        self._ms_id = 0
        self._state = "new"
        self._msk = b""
        self._name = b""
        self._reason = ""

    def start(self, identifier: int) -> bytes:
        self._challenge = self._rng(CHALLENGE_LEN)
        self._ms_id = identifier
        self._state = "response"
        body = bytes([CHALLENGE_LEN]) + self._challenge + self._server_name
        return _build(CHALLENGE, self._ms_id, body)

    def process(self, identifier: int, type_data: bytes) -> Reply | Done:
        opcode, _, data = _split(type_data)
        if self._state == "response" and opcode == RESPONSE:
            return self._on_response(data)
        if self._state == "success" and opcode == SUCCESS:
            return Done(True, msk=self._msk, identity=self._name)
        if self._state == "failure":
            return Done(False, reason=self._reason)
        if opcode == FAILURE:
            return Done(False, reason="the peer aborted (Failure Response)")
        return Done(False, reason=f"unexpected OpCode {opcode} (waiting for {self._state})")

    def _on_response(self, data: bytes) -> Reply:
        if len(data) < 1 + RESPONSE_VALUE_LEN or data[0] != RESPONSE_VALUE_LEN:
            raise EapError("MS-CHAPv2 Response without its 49-octet Value")
        peer_challenge, nt_response = data[1:17], data[25:49]
        self._name = data[1 + RESPONSE_VALUE_LEN :]
        secret = self._secret_of(self._name)
        if secret is None:
            return self._failure(f"no EAP secret for identity {self._name!r}")
        expected = generate_nt_response(self._challenge, peer_challenge, self._name, secret)
        if not hmac.compare_digest(expected, nt_response):
            return self._failure(f"wrong NT-Response for identity {self._name!r}")
        auth = authenticator_response(
            secret, nt_response, peer_challenge, self._challenge, self._name
        )
        self._msk = msk(secret, nt_response)
        self._state = "success"
        return Reply(_build(SUCCESS, self._ms_id, f"{auth} M=Welcome".encode()))

    def _failure(self, reason: str) -> Reply:
        """Failure request, not retryable (R=0); the peer's Failure Response ends it."""
        self._reason = reason
        self._state = "failure"
        fresh = self._rng(CHALLENGE_LEN).hex().upper()
        text = f"E={ERROR_AUTHENTICATION_FAILURE} R=0 C={fresh} V=3 M=Authentication failed"
        return Reply(_build(FAILURE, self._ms_id, text.encode()))


class MsChapV2Peer:
    """Answers the Challenge with the NT-Response of our password and believes the
    server (and EAP-Success) only if its Authenticator Response proves it knows the
    password too."""

    eap_type = EapType.MSCHAPV2

    def __init__(self, identity: bytes, secret: bytes, rng: Rng) -> None:
        self._identity = identity
        self._secret = secret
        self._rng = rng
        self._state = "challenge"
        self._expected_auth = ""
        self._msk = b""
        self._verified = False
        self._detail = ""

    def process(self, identifier: int, type_data: bytes) -> Reply | Done:
        opcode, ms_id, data = _split(type_data)
        if self._state == "challenge" and opcode == CHALLENGE:
            return self._on_challenge(ms_id, data)
        if self._state == "result" and opcode == SUCCESS:
            return self._on_success(data)
        if self._state == "result" and opcode == FAILURE:
            return self._on_failure(data)
        return Done(False, reason=f"unexpected OpCode {opcode} (waiting for {self._state})")

    def _on_challenge(self, ms_id: int, data: bytes) -> Reply:
        if len(data) < 1 + CHALLENGE_LEN or data[0] != CHALLENGE_LEN:
            raise EapError("MS-CHAPv2 Challenge without its 16-octet Value")
        challenge = data[1 : 1 + CHALLENGE_LEN]
        peer_challenge = self._rng(CHALLENGE_LEN)
        nt = generate_nt_response(challenge, peer_challenge, self._identity, self._secret)
        self._expected_auth = authenticator_response(
            self._secret, nt, peer_challenge, challenge, self._identity
        )
        self._msk = msk(self._secret, nt)
        self._state = "result"
        value = peer_challenge + bytes(8) + nt + b"\x00"
        return Reply(_build(RESPONSE, ms_id, bytes([RESPONSE_VALUE_LEN]) + value + self._identity))

    def _on_success(self, data: bytes) -> Reply | Done:
        tokens = [t for t in _text(data).split(" ") if t.startswith("S=")]
        if not tokens or len(tokens[0]) != len(self._expected_auth):
            raise EapError("MS-CHAPv2 Success request without an Authenticator Response")
        if not hmac.compare_digest(tokens[0].upper().encode(), self._expected_auth.encode()):
            self._state = "done"
            return Done(False, reason="wrong Authenticator Response: the server is not who it says")
        self._verified = True
        self._state = "done"
        return Reply(bytes([SUCCESS]))

    def _on_failure(self, data: bytes) -> Reply:
        fields = parse_failure(data)
        self._detail = f"MS-CHAPv2 error E={fields.get('E', '?')}"
        if "M" in fields:
            self._detail += f": {fields['M']}"
        self._state = "failed"
        return Reply(bytes([FAILURE]))

    def verdict(self) -> Verdict:
        if not self._verified:
            return Verdict(False, reason="the server's Authenticator Response was not verified")
        return Verdict(True, msk=self._msk)

    def failure_detail(self) -> str:
        return self._detail
