"""TOML configuration loader (swanctl.conf-shaped) producing :mod:`pyipsec.config.model`.

The file has three kinds of tables::

    [daemon]                      # listen addresses, ports, control socket, logging, keylog
    [daemon.tun]                  # name, mtu, addresses
    [daemon.log]                  # per-subsystem levels (default, ike, ...), format
    [connections.NAME]            # an IKE SA template
    [connections.NAME.local]      # id, auth = "psk" | "pubkey" | "eap-...", certs, pubkeys,
                                  # key, eap_id
    [connections.NAME.remote]     # id, auth = "psk" | "pubkey" | "eap-...", cacerts, pubkeys,
                                  # revocation, eap_id
    [connections.NAME.children.CHILD]
    [pools.NAME]                  # virtual IP pool: addrs, dns, nbns, split_include
    [secrets.NAME]                # id / ids, secret (a PSK)
    [secrets.eap-NAME]            # id / ids, secret: an EAP user's password
    [secrets.private-NAME]        # file (in private/), secret: a key's passphrase
    [secrets.radius-NAME]         # secret: the shared secret of RADIUS server NAME
    [eap_radius]                  # the RADIUS client of remote.auth = "eap-radius"
    [eap_radius.servers.NAME]     # address, auth_port, acct_port, preference
    secrets_file = "path"         # top-level: another TOML file holding [secrets.*] tables

Validation never stops at the first problem: every error is collected with its
location (``connections.gcm.children.net.esp_proposals``) and a hint where one
helps, and :class:`ConfigError` carries them all.  A configuration either loads
completely or not at all, so the daemon never half-applies a bad file.

Durations accept plain numbers (seconds) or strings with a unit suffix: ``"30s"``,
``"5m"``, ``"1h"``, ``"1d"``.  Byte counts accept integers or ``"10k"``, ``"5M"``,
``"1G"`` (powers of 1024).

Certificates, CA certificates, CRLs and private keys are files in swanctl's
directories next to the configuration file (``x509/``, ``x509ca/``, ``x509crl/``,
``pubkey/``, ``private/``), read by :mod:`pyipsec.config.credentials`.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import ipaddress
import logging
import math
import os
import re
import stat
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, Protocol

from ..constants import ProtocolId
from ..ikev2.payloads import IdPayload
from ..ikev2.proposals import expand_proposals, parse_proposals, proposal_tokens
from ..pools import pool_range, pools_overlap
from .credentials import CredentialStore, KeySecret
from .model import (
    ANY_ADDRESS,
    EAP_AUTH_KINDS,
    AuthKind,
    ChildConfig,
    Childless,
    ConnectionConfig,
    DaemonConfig,
    DpdAction,
    DpdConfig,
    EapRadiusConfig,
    IPAddress,
    Lifetimes,
    LocalCredentials,
    Mode,
    PoolConfig,
    RadiusServerConfig,
    RemoteTrust,
    RetransmitConfig,
    SendCert,
    StartAction,
    TrafficSelectorSpec,
    is_any_identity,
    is_eap,
)

__all__ = [
    "ConfigError",
    "ConfigIssue",
    "load_config",
    "load_config_text",
    "parse_bytes",
    "parse_duration",
    "parse_traffic_selector",
    "validate_proposal",
]

log = logging.getLogger("pyipsec.cfg")

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_SUBSYSTEMS = ("default", "ike", "child", "esp", "net", "cfg")
LOG_FORMATS = ("text", "json")

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$", re.IGNORECASE)
_DURATION_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_BYTES_RE = re.compile(r"^\s*(\d+)\s*([kmg]?)\s*$", re.IGNORECASE)
_BYTES_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_TS_RE = re.compile(r"^\s*([^\[\]\s]+)\s*(?:\[\s*([^\]]*)\s*\])?\s*$")
_PROTO_NAMES = {
    "any": 0,
    "icmp": 1,
    "tcp": 6,
    "udp": 17,
    "ipv6-icmp": 58,
    "icmpv6": 58,
    "sctp": 132,
}


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One validation problem: where it is and what is wrong."""

    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


class ConfigError(Exception):
    """The configuration is invalid; ``errors`` lists every problem found."""

    def __init__(self, errors: Iterable[ConfigIssue], source: str = "") -> None:
        self.errors: list[ConfigIssue] = list(errors)
        self.source = source
        head = f"{source}: " if source else ""
        n = len(self.errors)
        lines = [f"{head}{n} configuration error{'s' if n != 1 else ''}:"]
        lines += [f"  {e}" for e in self.errors]
        super().__init__("\n".join(lines))


# --------------------------------------------------------------------------- value parsers


def parse_duration(value: object) -> float:
    """``30`` / ``"30"`` / ``"30s"`` / ``"5m"`` / ``"1h"`` / ``"1d"`` -> seconds (float)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration, got a boolean")
    if isinstance(value, int | float):
        if not math.isfinite(value):  # TOML has inf and nan: a nan deadline never compares
            raise ValueError(f"duration must be a finite number, got {value}")
        if value < 0:
            raise ValueError(f"duration must not be negative: {value}")
        return float(value)
    if isinstance(value, str):
        m = _DURATION_RE.match(value)
        if m:
            return float(m.group(1)) * _DURATION_UNITS[m.group(2).lower()]
        raise ValueError(f'invalid duration {value!r} (hint: use e.g. 30, "30s", "5m", "4h", "1d")')
    raise ValueError(f"expected a duration, got {type(value).__name__}")


def parse_bytes(value: object) -> int:
    """``1000`` / ``"10k"`` / ``"5M"`` / ``"1G"`` (powers of 1024) -> int."""
    if isinstance(value, bool):
        raise ValueError("expected a byte count, got a boolean")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"must not be negative: {value}")
        return value
    if isinstance(value, str):
        m = _BYTES_RE.match(value)
        if m:
            return int(m.group(1)) * _BYTES_UNITS[m.group(2).lower()]
        raise ValueError(f'invalid count {value!r} (hint: use e.g. 1000, "64k", "1G")')
    raise ValueError(f"expected an integer, got {type(value).__name__}")


def _parse_ports(text: str) -> tuple[int, int]:
    if text in ("", "%any", "any"):
        return 0, 65535
    lo_s, _, hi_s = text.partition("-")
    lo = int(lo_s)
    hi = int(hi_s) if hi_s else lo
    if not (0 <= lo <= hi <= 65535):
        raise ValueError(f"invalid port range {text!r}")
    return lo, hi


def parse_traffic_selector(text: str, dynamic: IPAddress | None = None) -> TrafficSelectorSpec:
    """Parse one swanctl-style selector.

    Forms: ``203.0.113.0/26``, ``2001:db8::/64``, ``192.0.2.1-192.0.2.9``,
    ``192.0.2.1``, ``dynamic`` (needs ``dynamic``: the outer address), each optionally
    followed by ``[proto]`` or ``[proto/port]`` / ``[proto/lo-hi]``, e.g.
    ``10.0.0.0/8[tcp/443]``; protocol names (tcp, udp, icmp, ...) or numbers.
    """
    m = _TS_RE.match(text)
    if not m:
        raise ValueError(f"invalid traffic selector {text!r}")
    addr_part, extra = m.group(1), m.group(2)
    start: IPAddress
    end: IPAddress
    if addr_part == "dynamic":
        if dynamic is None:
            raise ValueError(
                "'dynamic' needs exactly one concrete address in local_addrs/remote_addrs"
            )
        start = end = dynamic
    elif "-" in addr_part and "/" not in addr_part:
        a, _, b = addr_part.partition("-")
        start, end = ipaddress.ip_address(a), ipaddress.ip_address(b)
        if start.version != end.version:
            raise ValueError(f"address range {addr_part!r} mixes IPv4 and IPv6")
        if int(start) > int(end):
            raise ValueError(f"address range {addr_part!r} is reversed")
    else:
        net = ipaddress.ip_network(addr_part, strict=False)
        start, end = net.network_address, net.broadcast_address
    proto, lo, hi = 0, 0, 65535
    if extra is not None and extra.strip():
        proto_s, _, port_s = extra.strip().partition("/")
        proto_s = proto_s.strip().lower()
        if proto_s in _PROTO_NAMES:
            proto = _PROTO_NAMES[proto_s]
        elif proto_s.isdigit() and int(proto_s) <= 255:
            proto = int(proto_s)
        else:
            raise ValueError(f"unknown protocol {proto_s!r} in selector {text!r}")
        lo, hi = _parse_ports(port_s.strip())
    return TrafficSelectorSpec(start, end, proto, lo, hi)


def validate_proposal(text: str, kind: str) -> None:
    """Validate one proposal string with the core's parser (raises ProposalStringError).

    ``kind`` is ``"ike"`` (``proposals``) or ``"esp"`` (``esp_proposals``); the
    syntax is strongSwan's (see :mod:`pyipsec.ikev2.proposals`), ``default``
    included.
    """
    parse_proposals([text], _protocol(kind))


def _protocol(kind: str) -> int:
    return ProtocolId.IKE if kind == "ike" else ProtocolId.ESP


def _proposal_hint(text: str) -> str:
    """A hint for the first word no proposal (IKE or ESP) knows, else ``""``."""
    words = sorted({*proposal_tokens(ProtocolId.IKE), *proposal_tokens(ProtocolId.ESP)})
    for tok in text.lower().split("-"):
        if tok not in words:
            close = difflib.get_close_matches(tok, words, n=3, cutoff=0.5)
            if close:
                return f" (hint: did you mean {' or '.join(repr(c) for c in close)}?)"
            return " (hint: e.g. 'aes256gcm16-prfsha256-x25519' for IKE, 'aes256gcm16' for ESP)"
    return ""


# --------------------------------------------------------------------------- the loader


@dataclass
class _Ctx:
    errors: list[ConfigIssue] = field(default_factory=list)
    check_proposal: Callable[[str, str], None] = validate_proposal

    def err(self, loc: str, msg: str) -> None:
        self.errors.append(ConfigIssue(loc, msg))


_MISSING = object()


class _Table:
    """A TOML table being consumed: tracks used keys so the rest are reported as unknown."""

    def __init__(self, ctx: _Ctx, loc: str, data: object) -> None:
        self.ctx = ctx
        self.loc = loc
        if isinstance(data, dict):
            self.data: dict[str, Any] = data
        else:
            ctx.err(loc, f"expected a table, got {type(data).__name__}")
            self.data = {}
        self.used: set[str] = set()

    def at(self, key: str) -> str:
        return f"{self.loc}.{key}" if self.loc else key

    def raw(self, key: str, *aliases: str) -> object:
        for k in (key, *aliases):
            if k in self.data:
                self.used.add(k)
                return self.data[k]
        return _MISSING

    def sub(self, key: str) -> _Table:
        v = self.raw(key)
        return _Table(self.ctx, self.at(key), {} if v is _MISSING else v)

    def get(self, key: str, conv: Callable[[object], Any], default: Any, *aliases: str) -> Any:
        v = self.raw(key, *aliases)
        if v is _MISSING:
            return default
        try:
            return conv(v)
        except (ValueError, TypeError) as e:
            self.ctx.err(self.at(key), str(e))
            return default

    def finish(self, known: Iterable[str]) -> None:
        known_l = list(known)
        for k in self.data:
            if k not in self.used:
                close = difflib.get_close_matches(k, known_l, n=1, cutoff=0.6)
                hint = f" (hint: did you mean {close[0]!r}?)" if close else ""
                self.ctx.err(self.at(k), f"unknown key{hint}")


def _str(v: object) -> str:
    if not isinstance(v, str):
        raise TypeError(f"expected a string, got {type(v).__name__}")
    return v


#: ``vici_socket = true``: where charon's own VICI socket would be, under pyipsec's name
DEFAULT_VICI_SOCKET = "/run/pyipsec/charon.vici"


def _vici_socket(v: object) -> str:
    """``[daemon] vici_socket``: a path, ``true`` (:data:`DEFAULT_VICI_SOCKET`) or
    ``false``/``""`` (off)."""
    if isinstance(v, bool):
        return DEFAULT_VICI_SOCKET if v else ""
    return _str(v)


def _bool(v: object) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("yes", "no", "true", "false"):
        return v.lower() in ("yes", "true")
    raise TypeError(f"expected true/false, got {v!r}")


def _int_range(lo: int, hi: int) -> Callable[[object], int]:
    def conv(v: object) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"expected an integer, got {v!r}")
        if not lo <= v <= hi:
            raise ValueError(f"must be between {lo} and {hi}, got {v}")
        return v

    return conv


def _str_list(v: object) -> tuple[str, ...]:
    """A list of strings, or one string with comma-separated items (swanctl style)."""
    if isinstance(v, str):
        return tuple(s.strip() for s in v.split(",") if s.strip())
    if isinstance(v, list) and all(isinstance(s, str) for s in v):
        return tuple(s.strip() for s in v if s.strip())
    raise TypeError("expected a string or a list of strings")


def _enum(cls: Any) -> Callable[[object], Any]:
    def conv(v: object) -> Any:
        s = _str(v).lower()
        try:
            return cls(s)
        except ValueError:
            choices = ", ".join(repr(m.value) for m in cls)
            raise ValueError(f"invalid value {v!r} (hint: one of {choices})") from None

    return conv


def _addr_list(v: object) -> tuple[str, ...]:
    items = _str_list(v)
    out = []
    for a in items:
        if a in ANY_ADDRESS and a.startswith("%"):  # prefixes: not addresses
            out.append(a)
            continue
        try:
            out.append(str(ipaddress.ip_address(a)))
        except ValueError:
            raise ValueError(f"invalid address {a!r} (hint: an IP address or '%any')") from None
    return tuple(out)


def parse_metrics_address(text: str) -> tuple[str, int] | None:
    """``[daemon] metrics``: ``"127.0.0.1:9712"``, ``"[::1]:9712"`` -> (host, port);
    ``""`` (off) -> None.  The host must be an IP address; port 0 = any free port."""
    text = text.strip()
    if not text:
        return None
    hint = ' (hint: "127.0.0.1:9712" or "[::1]:9712"; "" = off)'
    if text.startswith("["):
        host, sep, port_s = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"invalid address {text!r}{hint}")
    else:
        host, sep, port_s = text.rpartition(":")
        if not sep or ":" in host:
            raise ValueError(f"invalid address {text!r}: expected host:port{hint}")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"invalid IP address {host!r} in {text!r}{hint}") from None
    if not port_s.isdigit() or int(port_s) > 65535:
        raise ValueError(f"invalid port {port_s!r} in {text!r} (0-65535){hint}")
    return str(ip), int(port_s)


def _metrics(v: object) -> str:
    s = _str(v).strip()
    parse_metrics_address(s)
    return s


def _identity(v: object) -> str:
    """An identity string, checked with the parser the IKE core uses (RFC 7296 §3.5)."""
    text = _str(v)
    if not is_any_identity(text):
        try:
            IdPayload.from_string(text.strip())
        except ValueError as e:
            raise ValueError(
                f"invalid identity {text!r}: {e} (hint: e.g. 'moon.example.net', "
                "'198.51.100.2', 'user@example.net', 'keyid:text', 'keyid:#0a0b0c')"
            ) from None
    return text


def _log_level(v: object) -> str:
    s = _str(v).lower()
    if s not in LOG_LEVELS:
        raise ValueError(f"invalid log level {v!r} (hint: one of {', '.join(LOG_LEVELS)})")
    return s


def _log_format(v: object) -> str:
    s = _str(v).lower()
    if s not in LOG_FORMATS:
        raise ValueError(f"invalid log format {v!r} (hint: one of {', '.join(LOG_FORMATS)})")
    return s


def _concrete(addrs: tuple[str, ...]) -> IPAddress | None:
    concrete = [a for a in addrs if not a.startswith("%")]
    return ipaddress.ip_address(concrete[0]) if len(concrete) == 1 else None


def _parse_secret(v: object) -> bytes:
    s = _str(v)
    if s.startswith("0x"):
        try:
            return bytes.fromhex(s[2:])
        except ValueError:
            raise ValueError("invalid hex secret after '0x'") from None
    if s.startswith("0s"):
        try:
            return base64.b64decode(s[2:], validate=True)
        except binascii.Error:
            raise ValueError("invalid base64 secret after '0s'") from None
    if not s:
        raise ValueError("empty secret")
    return s.encode()


@dataclass(frozen=True, slots=True)
class _Secret:
    name: str
    ids: tuple[str, ...]
    secret: bytes = field(repr=False)
    eap: bool = False  # [secrets.eap-NAME]: an EAP user's password, never a PSK


def _is_eap_secret(name: str) -> bool:
    """swanctl's ``secrets.eap<suffix>`` sections (``eap-carol``, ``eap_carol``)."""
    return name == "eap" or name.startswith(("eap-", "eap_", "eap."))


#: swanctl's ``secrets.<type><suffix>`` sections for private key files
_KEY_SECRET_RE = re.compile(r"^(private|rsa|ecdsa|pkcs8)([-_.\w]*)$")


def _load_key_secret(t: _Table) -> KeySecret | None:
    """``[secrets.private-NAME]``: ``file`` (relative to ``private/``) and the
    optional passphrase ``secret`` (swanctl.conf ``secrets.private<suffix>``)."""
    file = t.get("file", _str, "")
    secret = t.get("secret", _str, None)
    t.finish(["file", "secret"])
    if not file:
        t.ctx.err(t.at("file"), "missing (the private key file, relative to private/)")
        return None
    return KeySecret(t.loc, file, None if secret is None else secret.encode())


def _load_secrets(ctx: _Ctx, tbl: _Table, keys: list[KeySecret]) -> list[_Secret]:
    """PSKs of ``[secrets.NAME]``; key passphrases (``private-NAME``) go to ``keys``."""
    out = []
    for name in list(tbl.data):
        t = tbl.sub(name)
        if _KEY_SECRET_RE.match(name) and isinstance(t.data, dict) and "file" in t.data:
            ks = _load_key_secret(t)
            if ks is not None:
                keys.append(ks)
            continue
        ids: tuple[str, ...] = ()
        single = t.get("id", _str, None)
        if single is not None:
            ids += (single,)
        ids += t.get("ids", _str_list, ())
        # swanctl writes id-1, id-2, ... keys; accept those too
        for k in sorted(t.data):
            if re.fullmatch(r"id-\w+", k):
                ids += (t.get(k, _str, ""),)
        secret = t.get("secret", _parse_secret, None)
        if secret is None and "secret" not in t.data:
            ctx.err(t.at("secret"), "missing (every [secrets.NAME] needs a secret)")
        t.finish(["id", "ids", "secret"])
        ids = tuple(i for i in ids if i)
        eap = _is_eap_secret(name)
        if eap and not ids:
            ctx.err(t.at("id"), 'missing: an EAP secret names its user (hint: id = "carol")')
        if secret is not None:
            out.append(_Secret(name, ids, secret, eap))
    return out


def _check_secrets_file(ctx: _Ctx, loc: str, path: Path) -> dict[str, Any] | None:
    try:
        with path.open("rb") as f:
            # the mode of the file actually opened (no stat-then-open race)
            mode = os.fstat(f.fileno()).st_mode
            if mode & 0o077:
                ctx.err(
                    loc,
                    f"secrets file {str(path)!r} is accessible by group/other (mode "
                    f"{stat.S_IMODE(mode):04o}) (hint: chmod 600 {path})",
                )
                return None
            return tomllib.load(f)
    except OSError as e:
        ctx.err(loc, f"cannot read secrets file {str(path)!r}: {e.strerror}")
    except tomllib.TOMLDecodeError as e:
        ctx.err(loc, f"secrets file {str(path)!r} is not valid TOML: {e}")
    return None


def _match_psk(secrets: list[_Secret], local_id: str, remote_id: str) -> bytes | None:
    """Best secret for a connection: both ids > remote id > local id > a secret without ids."""
    best: tuple[int, bytes] | None = None
    for s in secrets:
        if s.eap:
            continue
        score = 1
        if s.ids:
            matched = (2 if remote_id and remote_id in s.ids else 0) + (
                1 if local_id and local_id in s.ids else 0
            )
            if not matched:
                continue
            score += matched
        if best is None or score > best[0]:
            best = (score, s.secret)
    return None if best is None else best[1]


def _lifetimes(t: _Table, defaults: Lifetimes, child: bool) -> Lifetimes:
    rekey = t.get("rekey_time", parse_duration, defaults.rekey_time)
    over = t.get("over_time", parse_duration, None)
    life = t.get("life_time", parse_duration, None)
    if over is not None and life is not None:
        t.ctx.err(t.at("life_time"), "set either life_time or over_time, not both")
    if life is not None:
        if rekey and life <= rekey:
            t.ctx.err(
                t.at("life_time"),
                f"must be greater than rekey_time ({rekey:g}s) (hint: e.g. 10 % more)",
            )
            over = defaults.over_time
        else:
            over = life - rekey if rekey else life
    if over is None:
        over = rekey * 0.1 if "rekey_time" in t.used else defaults.over_time
    rand = t.get("rand_time", parse_duration, None)
    if rand is None:
        rand = over if "rekey_time" in t.used else defaults.rand_time
    if rekey and rand >= rekey:
        t.ctx.err(t.at("rand_time"), f"must be smaller than rekey_time ({rekey:g}s)")
    if not child:
        return Lifetimes(rekey_time=rekey, over_time=over, rand_time=rand)
    rb = t.get("rekey_bytes", parse_bytes, defaults.rekey_bytes)
    lb = t.get("life_bytes", parse_bytes, defaults.life_bytes)
    rp = t.get("rekey_packets", parse_bytes, defaults.rekey_packets)
    lp = t.get("life_packets", parse_bytes, defaults.life_packets)
    if rb and lb and lb <= rb:
        t.ctx.err(t.at("life_bytes"), "must be greater than rekey_bytes")
    if rp and lp and lp <= rp:
        t.ctx.err(t.at("life_packets"), "must be greater than rekey_packets")
    if rb and not lb:
        lb = rb + rb // 10
    if rp and not lp:
        lp = rp + rp // 10
    return Lifetimes(rekey, over, rand, rb, lb, rp, lp)


def _proposals(
    ctx: _Ctx, t: _Table, key: str, kind: str, default: tuple[str, ...]
) -> tuple[str, ...]:
    props: tuple[str, ...] = t.get(key, _str_list, default)
    if not props:
        ctx.err(t.at(key), "must not be empty")
        return default
    for p in props:
        try:
            ctx.check_proposal(p, kind)
        except ValueError as e:  # ProposalStringError is a ValueError
            msg = str(e)
            if "hint" not in msg and "did you mean" not in msg:
                msg += _proposal_hint(p)
            ctx.err(t.at(key), msg)
    # 'default' becomes strongSwan's default proposals (pyipsec.ikev2.proposals)
    return tuple(expand_proposals(props, _protocol(kind)))


def _selectors(
    t: _Table, key: str, dynamic: IPAddress | None, *, virtual: bool = False
) -> tuple[TrafficSelectorSpec, ...]:
    items: tuple[str, ...] = t.get(key, _str_list, ("dynamic",))
    if virtual and "dynamic" in items:
        return _virtual_selectors(t, key, items)
    out = []
    for item in items:
        try:
            out.append(parse_traffic_selector(item, dynamic))
        except ValueError as e:
            t.ctx.err(t.at(key), str(e))
    if not out and not any(e.location == t.at(key) for e in t.ctx.errors):
        t.ctx.err(t.at(key), "must not be empty")
    return tuple(out)


_CHILD_KEYS = (
    "local_ts",
    "remote_ts",
    "mode",
    "esp_proposals",
    "rekey_time",
    "life_time",
    "over_time",
    "rand_time",
    "rekey_bytes",
    "life_bytes",
    "rekey_packets",
    "life_packets",
    "start_action",
    "dpd_action",
    "close_action",
    "replay_window",
    "tfc_padding",
)


def _child(
    ctx: _Ctx,
    t: _Table,
    name: str,
    local: IPAddress | None,
    remote: IPAddress | None,
    virtual: tuple[bool, bool] = (False, False),
) -> ChildConfig:
    d = ChildConfig(name=name, local_ts=(), remote_ts=())
    child = ChildConfig(
        name=name,
        local_ts=_selectors(t, "local_ts", local, virtual=virtual[0]),
        remote_ts=_selectors(t, "remote_ts", remote, virtual=virtual[1]),
        esp_proposals=_proposals(ctx, t, "esp_proposals", "esp", d.esp_proposals),
        mode=t.get("mode", _enum(Mode), d.mode),
        lifetimes=_lifetimes(t, d.lifetimes, child=True),
        start_action=t.get("start_action", _enum(StartAction), d.start_action),
        dpd_action=t.get("dpd_action", _enum(DpdAction), None),
        close_action=t.get("close_action", _enum(StartAction), d.close_action),
        replay_window=t.get("replay_window", _int_range(0, 1 << 20), d.replay_window),
        tfc_padding=t.get("tfc_padding", _bool, d.tfc_padding),
    )
    t.finish(_CHILD_KEYS)
    return child


_CONN_KEYS = (
    "local_addrs",
    "remote_addrs",
    "local_port",
    "remote_port",
    "local",
    "remote",
    "proposals",
    "rekey_time",
    "over_time",
    "life_time",
    "rand_time",
    "reauth",
    "reauth_time",
    "dpd_delay",
    "dpd_timeout",
    "dpd_action",
    "encap",
    "keepalive",
    "children",
    "mobike",
    "nat_traversal",
    "initial_contact",
    "window_size",
    "keylog",
    "keyingtries",
    "fragmentation",
    "fragment_size",
    "version",
    "send_cert",
    "send_certreq",
    "childless",
    "rsa_pss",
    "pools",
    "vips",
)
_LOCAL_KEYS = ("id", "auth", "certs", "key", "pubkeys", "eap_id")
_REMOTE_KEYS = ("id", "auth", "cacerts", "revocation", "pubkeys", "eap_id")
_AUTH_KINDS: tuple[AuthKind, ...] = ("psk", "pubkey", *EAP_AUTH_KINDS)
_SEND_CERT = ("ifasked", "always", "never")
_CHILDLESS: dict[str, Childless] = {
    "allow": "allow", "prefer": "prefer", "force": "force", "never": "never"
}
_REVOCATION = ("relaxed", "strict", "ifuri")


def _choice(choices: tuple[str, ...]) -> Callable[[object], str]:
    def conv(v: object) -> str:
        s = _str(v).lower()
        if s not in choices:
            raise ValueError(
                f"invalid value {v!r} (hint: one of {', '.join(repr(c) for c in choices)})"
            )
        return s

    return conv


def _auth(end: _Table) -> AuthKind:
    """``local.auth`` / ``remote.auth``: ``"psk"``, ``"pubkey"`` (swanctl.conf(5);
    RFC 7296 §2.15 shared key or signature, RFC 7427 signature algorithms) or an EAP
    method (§2.16): ``"eap-md5"``, ``"eap-mschapv2"``, ``"eap-tls"``, ``"eap-radius"``,
    ``"eap"`` (any)."""
    v = end.get("auth", _str, "psk").lower()
    for kind in _AUTH_KINDS:
        if v == kind:
            return kind
    choices = ", ".join(repr(k) for k in _AUTH_KINDS)
    end.ctx.err(end.at("auth"), f"unsupported auth method {v!r} (hint: one of {choices})")
    return "psk"


class _Credentials(NamedTuple):
    """What :func:`_credentials` read for one connection."""

    local: LocalCredentials | None
    candidates: tuple[LocalCredentials, ...]
    remote: RemoteTrust | None


def _credentials(
    local: _Table, remote: _Table, la: AuthKind, ra: AuthKind, store: CredentialStore
) -> _Credentials:
    """The file-based credentials of one connection (swanctl ``local.certs``,
    ``local.pubkeys``, ``local.key``, ``remote.cacerts``, ``remote.pubkeys``,
    ``remote.revocation``): for public-key authentication, and for EAP-TLS (RFC 5216:
    our TLS certificate as client or server, the anchors the peer's TLS certificate
    is validated with)."""
    certs: tuple[str, ...] = local.get("certs", _str_list, ())
    key = local.get("key", _str, None)
    cacerts: tuple[str, ...] = remote.get("cacerts", _str_list, ())
    revocation = remote.get("revocation", _choice(_REVOCATION), "relaxed")
    pubkeys = _pubkey_options(local, remote, la, ra, certs, cacerts)
    tls = "eap-tls" in (la, ra) or (la == "eap" and bool(certs))
    found: list[LocalCredentials] | None = None
    rt = None
    if la == "pubkey" and pubkeys.local:
        raw = store.local_raw_key(local.loc, pubkeys.local, key)
        found = [raw] if raw is not None else None
    elif la == "pubkey" or (tls and certs):
        found = store.local_candidates(local.loc, certs, key)
    elif tls:
        local.ctx.err(
            local.at("certs"),
            'missing: EAP-TLS needs our certificate (hint: certs = ["gw.pem"] in x509/)',
        )
    elif certs or key is not None:
        local.ctx.err(local.at("certs" if certs else "key"), 'only with auth = "pubkey"')
    if ra == "pubkey" and pubkeys.remote:
        rt = store.remote_raw_keys(remote.loc, pubkeys.remote)
    elif ra == "pubkey":
        rt = store.remote_trust(remote.loc, cacerts, revocation == "strict")
    elif tls:
        rt = store.remote_trust(remote.loc, cacerts, revocation == "strict", '"eap-tls"')
    elif cacerts:
        remote.ctx.err(remote.at("cacerts"), 'only with auth = "pubkey"')
    if not found:
        return _Credentials(None, (), rt)
    return _Credentials(found[0], tuple(found[1:]), rt)


class _PubkeyOptions(NamedTuple):
    local: tuple[str, ...]
    remote: tuple[str, ...]


def _pubkey_options(
    local: _Table,
    remote: _Table,
    la: AuthKind,
    ra: AuthKind,
    certs: tuple[str, ...],
    cacerts: tuple[str, ...],
) -> _PubkeyOptions:
    """swanctl ``local.pubkeys`` / ``remote.pubkeys``: raw public keys (RFC 7670) in
    ``pubkey/``, instead of certificates (not together with ``certs`` / ``cacerts``)."""
    mine: tuple[str, ...] = local.get("pubkeys", _str_list, ())
    theirs: tuple[str, ...] = remote.get("pubkeys", _str_list, ())
    for end, names, auth, other, other_key in (
        (local, mine, la, certs, "certs"),
        (remote, theirs, ra, cacerts, "cacerts"),
    ):
        if not names:
            continue
        if auth != "pubkey":
            end.ctx.err(end.at("pubkeys"), 'only with auth = "pubkey"')
        elif other:
            end.ctx.err(
                end.at("pubkeys"),
                f"raw public keys and {other_key} exclude each other (hint: remove one)",
            )
    if la != "pubkey" or certs:
        mine = ()
    if ra != "pubkey" or cacerts:
        theirs = ()
    return _PubkeyOptions(mine, theirs)


@dataclass(frozen=True, slots=True)
class _Eap:
    """The EAP part of a connection (RFC 7296 §2.16)."""

    local_id: str = ""
    remote_id: str = ""
    secret: bytes = field(default=b"", repr=False)
    users: tuple[tuple[bytes, bytes], ...] = field(default=(), repr=False)


def _eap_id(v: object) -> str:
    """``local.eap_id`` / ``remote.eap_id``: an EAP identity (RFC 3748 §5.1), any text."""
    text = _str(v).strip()
    if not text:
        raise ValueError("empty EAP identity (hint: leave it out to use the IKE identity)")
    return text


def _eap(
    local: _Table, remote: _Table, auths: tuple[AuthKind, AuthKind], ike_id: str,
    secrets: list[_Secret], certs: bool,
    *, missing_secret: Callable[[str, str], None] | None = None,
) -> _Eap:
    """``local.eap_id``, ``remote.eap_id`` and the EAP secrets: ours as a client (matched
    by our EAP identity, else our IKE identity), every user's as a server.
    ``missing_secret(location, message)`` hears of a secret that is not there: by
    default an error of the configuration (VICI's load-conn only warns, as charon does:
    secrets may be loaded after their connections)."""
    la, ra = auths
    missing = missing_secret or local.ctx.err  # both ends report to one context
    local_eap_id = local.get("eap_id", _eap_id, "")
    remote_eap_id = remote.get("eap_id", _eap_id, "")
    if local_eap_id and not is_eap(la):
        local.ctx.err(local.at("eap_id"), 'only with an EAP local.auth (e.g. "eap-mschapv2")')
    if local_eap_id and is_any_identity(local_eap_id):
        local.ctx.err(local.at("eap_id"), "must be our EAP identity, not a wildcard")
    if remote_eap_id and not is_eap(ra):
        remote.ctx.err(remote.at("eap_id"), 'only with an EAP remote.auth (e.g. "eap-mschapv2")')
    if la == "eap-radius":
        local.ctx.err(
            local.at("auth"),
            "eap-radius is a server method (hint: remote.auth on the gateway; a client "
            'uses e.g. local.auth = "eap-mschapv2")',
        )
    eap = [s for s in secrets if s.eap]
    secret = b""
    if la in ("eap", "eap-md5", "eap-mschapv2"):
        who = local_eap_id or ike_id
        found = _match_eap(eap, who)
        if found is not None:
            secret = found
        elif la != "eap" or not certs:
            shown = who or "(no identity)"
            missing(
                local.at("auth"),
                f"no EAP secret in [secrets] for {shown!r} (hint: add [secrets.eap-NAME] "
                f"with id = {who or 'carol'!r} and secret = ..., or set local.eap_id)",
            )
    users: tuple[tuple[bytes, bytes], ...] = ()
    if ra in ("eap", "eap-md5", "eap-mschapv2"):
        users = tuple((i.encode(), s.secret) for s in eap for i in s.ids)
        if not users and ra != "eap":
            missing(
                remote.at("auth"),
                f"{ra} needs the users' secrets (hint: add [secrets.eap-NAME] with "
                'id = "carol" and secret = ...)',
            )
    return _Eap(local_eap_id, remote_eap_id, secret, users)


def _match_eap(secrets: list[_Secret], identity: str) -> bytes | None:
    """The EAP secret of ``identity`` (the first [secrets.eap-*] naming it)."""
    for s in secrets:
        if identity and identity in s.ids:
            return s.secret
    return None


class _ConnSource(Protocol):
    """Where a connection's secrets and credentials come from, and the few keys read
    differently, for :func:`_connection`: a TOML file's ``[secrets]`` and credential
    directories (:class:`_FileSource`), or the VICI credential set of ``load-conn``
    (:mod:`pyipsec.daemon.vici_conns`)."""

    @property
    def local_keys(self) -> tuple[str, ...]:
        """The keys a ``local`` table may hold."""
        ...

    @property
    def remote_keys(self) -> tuple[str, ...]:
        """The keys a ``remote`` table may hold."""
        ...

    def side(self, t: _Table, side: str) -> _Table:
        """The ``local`` / ``remote`` table of the connection ``t``."""
        ...

    def credentials(
        self, local: _Table, remote: _Table, auths: tuple[AuthKind, AuthKind]
    ) -> _Credentials:
        """Our certificates / keys and the peer's trust anchors (RFC 7296 §2.15)."""
        ...

    def eap(
        self, local: _Table, remote: _Table, auths: tuple[AuthKind, AuthKind],
        local_id: str, certs: bool,
    ) -> _Eap:  # fmt: skip
        """EAP identities and secrets (RFC 7296 §2.16); ``certs``: we have a certificate."""
        ...

    def psk(
        self, name: str, local: _Table, ids: tuple[str, str], auths: tuple[AuthKind, AuthKind]
    ) -> bytes:
        """The IKE shared secret of the identities ``ids`` (local, remote), or ``b""``."""
        ...

    def fragmentation(self, v: object) -> bool:
        """The ``fragmentation`` value (RFC 7383)."""
        ...


@dataclass(frozen=True, slots=True)
class _FileSource:
    """A TOML file's connections: secrets from ``[secrets]``, credentials from the
    swanctl directories next to the file (:class:`CredentialStore`)."""

    secrets: list[_Secret]
    store: CredentialStore
    local_keys: ClassVar[tuple[str, ...]] = _LOCAL_KEYS
    remote_keys: ClassVar[tuple[str, ...]] = _REMOTE_KEYS

    def side(self, t: _Table, side: str) -> _Table:
        return t.sub(side)

    def credentials(
        self, local: _Table, remote: _Table, auths: tuple[AuthKind, AuthKind]
    ) -> _Credentials:
        return _credentials(local, remote, auths[0], auths[1], self.store)

    def eap(
        self, local: _Table, remote: _Table, auths: tuple[AuthKind, AuthKind],
        local_id: str, certs: bool,
    ) -> _Eap:  # fmt: skip
        return _eap(local, remote, auths, local_id, self.secrets, certs)

    def psk(
        self, name: str, local: _Table, ids: tuple[str, str], auths: tuple[AuthKind, AuthKind]
    ) -> bytes:
        return _psk(local, self.secrets, ids[0], ids[1], auths)

    def fragmentation(self, v: object) -> bool:
        return _bool(v)


def _connection(ctx: _Ctx, t: _Table, name: str, source: _ConnSource) -> ConnectionConfig:
    """One ``connections.NAME`` table as an IKE SA template (RFC 7296), its secrets and
    credentials from ``source`` (a TOML file's, or those of VICI ``load-conn``)."""
    d = ConnectionConfig(name=name)
    local_addrs: tuple[str, ...] = t.get("local_addrs", _addr_list, ())
    remote_addrs: tuple[str, ...] = t.get("remote_addrs", _addr_list, ())
    if t.get("version", _int_range(0, 2), 2) not in (0, 2):
        ctx.err(t.at("version"), "only IKEv2 is supported (hint: version = 2)")
    local, remote = source.side(t, "local"), source.side(t, "remote")
    local_id = local.get("id", _identity, "")
    remote_id = remote.get("id", _identity, "")
    auths = (_auth(local), _auth(remote))
    if not local_id and local_addrs and not local_addrs[0].startswith("%"):
        local_id = local_addrs[0]  # swanctl: the IP address is the default identity
    creds = source.credentials(local, remote, auths)
    eap = source.eap(local, remote, auths, local_id, creds.local is not None)
    local.finish(source.local_keys)
    remote.finish(source.remote_keys)
    psk = source.psk(name, local, (local_id, remote_id), auths)
    reauth_time = t.get("reauth_time", parse_duration, 0.0)
    lifetimes = _lifetimes(t, d.lifetimes, child=False)
    reauth = t.get("reauth", _bool, bool(reauth_time))
    if reauth_time and not lifetimes.rekey_time:
        lifetimes = Lifetimes(reauth_time, lifetimes.over_time, lifetimes.rand_time)
    dpd = _dpd(t, d.dpd)
    children_tbl = t.sub("children")
    lc, rc = _concrete(local_addrs), _concrete(remote_addrs)
    pools, vips = _conn_virtual_ips(t)  # configuration payloads (RFC 7296 §2.19)
    virtual = (bool(vips), bool(pools))
    children = tuple(
        _child(ctx, children_tbl.sub(cname), cname, lc, rc, virtual)
        for cname in list(children_tbl.data)
    )
    conn = ConnectionConfig(
        name=name,
        local_addrs=local_addrs,
        remote_addrs=remote_addrs,
        local_port=t.get("local_port", _int_range(0, 65535), d.local_port),
        remote_port=t.get("remote_port", _int_range(1, 65535), d.remote_port),
        local_id=local_id,
        remote_id=remote_id,
        psk=psk,
        ike_proposals=_proposals(ctx, t, "proposals", "ike", d.ike_proposals),
        lifetimes=lifetimes,
        reauth=reauth,
        dpd=dpd,
        encap=t.get("encap", _bool, d.encap),
        nat_traversal=t.get("nat_traversal", _bool, d.nat_traversal),
        keepalive_interval=t.get("keepalive", parse_duration, d.keepalive_interval),
        children=children,
        initial_contact=t.get("initial_contact", _bool, d.initial_contact),
        window_size=t.get("window_size", _int_range(1, 1024), d.window_size),
        keylog=t.get("keylog", _bool, d.keylog),
        keyingtries=t.get("keyingtries", _int_range(0, 1_000_000), d.keyingtries),
        fragmentation=t.get("fragmentation", source.fragmentation, d.fragmentation),
        fragment_size=t.get("fragment_size", _int_range(256, 65535), d.fragment_size),
        local_auth=auths[0],
        remote_auth=auths[1],
        local_credentials=creds.local,
        local_candidates=creds.candidates,
        remote_trust=creds.remote,
        send_cert=_send_cert(t, d.send_cert),
        send_certreq=t.get("send_certreq", _bool, d.send_certreq),
        childless=_childless(t, d.childless),
        rsa_pss=t.get("rsa_pss", _bool, d.rsa_pss),
        local_eap_id=eap.local_id,
        remote_eap_id=eap.remote_id,
        eap_secret=eap.secret,
        eap_users=eap.users,
        pools=pools,
        vips=vips,
    )
    t.raw("mobike")  # accepted for swanctl compatibility, not implemented
    t.finish(_CONN_KEYS)
    return conn


def _psk(
    local: _Table,
    secrets: list[_Secret],
    local_id: str,
    remote_id: str,
    auths: tuple[str, str],
) -> bytes:
    """The connection's PSK from [secrets]; required only when one side uses ``psk``."""
    psk = _match_psk(secrets, local_id, remote_id)
    if "psk" not in auths:
        return psk or b""
    if psk is None:
        local.ctx.err(
            local.at("auth"),
            f"no PSK in [secrets] for ids {local_id or '%any'!r}/{remote_id or '%any'!r} "
            "(hint: add [secrets.NAME] with id = ... and secret = ...)",
        )
        return b""
    return psk


def _dpd(t: _Table, d: DpdConfig) -> DpdConfig:
    """``dpd_delay`` / ``dpd_timeout`` / ``dpd_action`` (RFC 7296 §2.4; 0 = off)."""
    dpd_delay = t.get("dpd_delay", parse_duration, d.interval)
    return DpdConfig(
        enabled=dpd_delay > 0,
        interval=dpd_delay,
        timeout=t.get("dpd_timeout", parse_duration, d.timeout),
        max_retries=d.max_retries,
        action=t.get("dpd_action", _enum(DpdAction), d.action),
    )


def _childless(t: _Table, default: Childless) -> Childless:
    """swanctl ``childless`` (RFC 6023): allow, prefer, force or never."""
    return _CHILDLESS[t.get("childless", _choice(tuple(_CHILDLESS)), default)]


def _send_cert(t: _Table, default: SendCert) -> SendCert:
    """swanctl ``send_cert``: CERT payloads (RFC 7296 §3.6) only when asked by a
    CERTREQ, always, or never."""
    v = t.get("send_cert", _choice(_SEND_CERT), default)
    return "always" if v == "always" else "never" if v == "never" else "ifasked"


# --------------------------------------------------------------------------- virtual IPs
# Configuration payloads (RFC 7296 §2.19, §3.15): [pools.NAME] tables, a connection's
# ``pools`` (responder) and ``vips`` (initiator), the daemon's ``vip_hook``.

_POOL_KEYS = ("addrs", "dns", "nbns", "split_include")


def _ip_list(v: object) -> tuple[IPAddress, ...]:
    out = []
    for a in _str_list(v):
        try:
            out.append(ipaddress.ip_address(a))
        except ValueError:
            raise ValueError(f"invalid address {a!r} (hint: e.g. '203.0.113.53')") from None
    return tuple(out)


def _net_list(v: object) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    out = []
    for a in _str_list(v):
        try:
            out.append(ipaddress.ip_network(a, strict=False))
        except ValueError:
            raise ValueError(f"invalid network {a!r} (hint: e.g. '203.0.113.64/26')") from None
    return tuple(out)


def _pool(t: _Table, name: str) -> PoolConfig | None:
    """One ``[pools.NAME]`` table (swanctl.conf ``pools.<name>``)."""
    addrs = t.get("addrs", _str, None)
    dns = t.get("dns", _ip_list, ())
    nbns = t.get("nbns", _ip_list, ())
    split = t.get("split_include", _net_list, ())
    t.finish(_POOL_KEYS)
    if any(a.version == 6 for a in nbns):
        t.ctx.err(t.at("nbns"), "NetBIOS name servers are IPv4 only (RFC 7296 §3.15.1)")
    if addrs is None:
        if "addrs" not in t.data:
            t.ctx.err(t.at("addrs"), "missing (hint: addrs = \"203.0.113.128/26\")")
        return None
    try:
        first, last = pool_range(addrs)
    except ValueError as e:
        t.ctx.err(t.at("addrs"), str(e))
        return None
    return PoolConfig(name, addrs.strip(), first, last, dns, nbns, split)


def _pools(ctx: _Ctx, tbl: _Table) -> tuple[PoolConfig, ...]:
    """Every ``[pools.NAME]``; overlapping ranges are an error (one address, one pool)."""
    pools = []
    for name in list(tbl.data):
        p = _pool(tbl.sub(name), name)
        if p is not None:
            pools.append(p)
    ranges = [(p.name, p.first, p.last) for p in pools]
    for later, earlier in pools_overlap(ranges):
        ctx.err(tbl.at(f"{later}.addrs"), f"overlaps pools.{earlier}.addrs")
    return tuple(pools)


def _vip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(
            f"invalid virtual IP {text!r} (hint: '0.0.0.0' or '::' to ask for any address, "
            "or the address wanted)"
        ) from None


def _conn_virtual_ips(t: _Table) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A connection's ``pools`` (names, checked by :func:`_check_pool_refs`) and
    ``vips`` (addresses to ask for with CP(CFG_REQUEST), RFC 7296 §2.19)."""
    pools: tuple[str, ...] = t.get("pools", _str_list, ())
    vips: list[str] = []
    for item in t.get("vips", _str_list, ()):
        try:
            v = _vip(item)
        except ValueError as e:
            t.ctx.err(t.at("vips"), str(e))
            continue
        if v in vips:
            t.ctx.err(t.at("vips"), f"{v} is listed twice")
        vips.append(v)
    if len(set(pools)) != len(pools):
        t.ctx.err(t.at("pools"), "a pool is listed twice")
    return pools, tuple(vips)


def _virtual_selectors(
    t: _Table, key: str, items: tuple[str, ...]
) -> tuple[TrafficSelectorSpec, ...]:
    """``dynamic`` on a side with virtual IPs means those addresses, known only at run
    time (the core's empty selector list: RFC 7296 §2.9 narrowing to the virtual IPs)."""
    if items != ("dynamic",):
        t.ctx.err(
            t.at(key),
            "'dynamic' stands for the virtual IP(s) here and cannot be combined with other "
            "selectors (hint: leave it out, or list the subnets only)",
        )
    return ()


def _check_pool_refs(
    ctx: _Ctx,
    conns: Iterable[ConnectionConfig],
    pools: Iterable[PoolConfig],
    *,
    define: str = "define it in [pools.{name}]",
) -> None:
    """Every pool a connection names exists; ``define`` says how to add a missing one
    (a configuration file's table by default; VICI: ``swanctl --load-pools``)."""
    names = [p.name for p in pools]
    for c in conns:
        for name in c.pools:
            if name not in names:
                close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
                hint = f" (hint: did you mean {close[0]!r}?)" if close else (
                    f" (hint: {define.format(name=name)})"
                )
                ctx.err(f"connections.{c.name}.pools", f"unknown pool {name!r}{hint}")


def _vip_hook(v: object) -> str:
    """``[daemon] vip_hook``: an absolute path of an executable ("" = off)."""
    s = _str(v).strip()
    if s and not os.path.isabs(s):
        raise ValueError(f"{s!r} must be an absolute path (hint: '/etc/pyipsec/vip-hook')")
    return s


_DAEMON_KEYS = (
    "listen",
    "listen_addrs",
    "ike_port",
    "natt_port",
    "control_socket",
    "vici_socket",
    "tun",
    "log",
    "keylog_file",
    "cookie_threshold",
    "half_open_timeout",
    "half_open_limit",
    "cookie_threshold_ip",
    "block_threshold",
    "half_open_memory",
    "max_fragment_bytes_unauthenticated",
    "max_fragment_bytes",
    "ke_reuse_seconds",
    "ke_reuse_count",
    "retransmit_tries",
    "retransmit_timeout",
    "retransmit_base",
    "metrics",
    "vip_hook",
)


def _daemon(ctx: _Ctx, t: _Table, conns: tuple[ConnectionConfig, ...]) -> DaemonConfig:
    d = DaemonConfig()
    tun = t.sub("tun")
    log_tbl = t.sub("log")
    levels: dict[str, str] = {}
    for k in list(log_tbl.data):
        if k in LOG_SUBSYSTEMS:
            levels[k] = log_tbl.get(k, _log_level, "info")
    log_format = log_tbl.get("format", _log_format, d.log_format)
    log_tbl.finish((*LOG_SUBSYSTEMS, "format"))
    tun_addrs: tuple[str, ...] = tun.get("addresses", _str_list, ())
    for a in tun_addrs:
        try:
            ipaddress.ip_interface(a)
        except ValueError:
            ctx.err(
                tun.at("addresses"), f"invalid interface address {a!r} (hint: '203.0.113.1/32')"
            )
    tun_name = tun.get("name", _str, d.tun_name)
    if not 0 < len(tun_name) < 16 or "/" in tun_name or " " in tun_name:
        ctx.err(tun.at("name"), f"invalid interface name {tun_name!r} (1-15 characters)")
    tun_mtu = tun.get("mtu", _int_range(576, 65535), d.tun_mtu)
    tun.finish(("name", "mtu", "addresses"))
    tries = t.get("retransmit_tries", _int_range(0, 100), None)
    timeout = t.get("retransmit_timeout", parse_duration, None)
    base = t.get("retransmit_base", _retransmit_base, None)
    if timeout is not None and timeout <= 0:
        ctx.err(t.at("retransmit_timeout"), "must be > 0 (hint: '4s', strongSwan's default)")
        timeout = None
    if tries is not None or timeout is not None or base is not None:
        r = RetransmitConfig()
        rc = RetransmitConfig(
            tries=r.tries if tries is None else tries,
            timeout=r.timeout if timeout is None else timeout,
            base=r.base if base is None else base,
        )
        conns = tuple(_replace_retransmit(c, rc) for c in conns)
    cfg = DaemonConfig(
        connections=conns,
        listen_addrs=t.get("listen", _addr_list, d.listen_addrs, "listen_addrs"),
        ike_port=t.get("ike_port", _int_range(0, 65535), d.ike_port),
        natt_port=t.get("natt_port", _int_range(0, 65535), d.natt_port),
        control_socket=t.get("control_socket", _str, d.control_socket),
        vici_socket=t.get("vici_socket", _vici_socket, d.vici_socket),
        tun_name=tun_name,
        tun_mtu=tun_mtu,
        tun_addresses=tun_addrs,
        log_levels=levels,
        log_format=log_format,
        keylog_file=t.get("keylog_file", _str, d.keylog_file),
        cookie_threshold=t.get("cookie_threshold", _int_range(0, 1 << 20), d.cookie_threshold),
        half_open_timeout=t.get("half_open_timeout", parse_duration, d.half_open_timeout),
        half_open_limit=t.get("half_open_limit", _int_range(0, 1 << 24), d.half_open_limit),
        cookie_threshold_ip=t.get(
            "cookie_threshold_ip", _int_range(0, 1 << 20), d.cookie_threshold_ip
        ),
        block_threshold=t.get("block_threshold", _int_range(0, 1 << 20), d.block_threshold),
        half_open_memory=t.get("half_open_memory", _half_open_memory, d.half_open_memory),
        max_fragment_bytes_unauthenticated=t.get(
            "max_fragment_bytes_unauthenticated",
            _fragment_bytes,
            d.max_fragment_bytes_unauthenticated,
        ),
        max_fragment_bytes=t.get("max_fragment_bytes", _fragment_bytes, d.max_fragment_bytes),
        ke_reuse_seconds=t.get("ke_reuse_seconds", _ke_reuse_seconds, d.ke_reuse_seconds),
        ke_reuse_count=t.get("ke_reuse_count", _int_range(1, 1 << 20), d.ke_reuse_count),
        metrics=t.get("metrics", _metrics, d.metrics),
        vip_hook=t.get("vip_hook", _vip_hook, d.vip_hook),
    )
    if cfg.ike_port and cfg.ike_port == cfg.natt_port:
        ctx.err(t.at("natt_port"), "must differ from ike_port")
    t.finish(_DAEMON_KEYS)
    return cfg


def _ke_reuse_seconds(v: object) -> float:
    """How long a responder key exchange value may be reused (RFC 7296 §2.12): a
    duration of at most an hour (forward secrecy returns only when it is dropped)."""
    seconds = parse_duration(v)
    if seconds > 3600:
        raise ValueError(f"{seconds:g} s: at most 1h (hint: '10s'; 0 = never reuse)")
    return seconds


def _fragment_bytes(v: object) -> int:
    """A reassembly byte budget: a byte count ("64k"), at least one IKE message of 1 KiB."""
    n = parse_bytes(v)
    if not 1024 <= n <= 1 << 24:
        raise ValueError(f"{n} octets: must be between 1024 and 16M (hint: '10000', '64k')")
    return n


def _half_open_memory(v: object) -> int:
    """The byte budget of half-open state (RFC 7296 §2.6): a byte count ("64M"), 0 = off,
    else at least 1 MiB (a few hundred half-open SAs)."""
    n = parse_bytes(v)
    if n and not 1 << 20 <= n <= 1 << 40:
        raise ValueError(f"{n} bytes: must be 0 (off) or between 1M and 1T (hint: '64M')")
    return n


def _retransmit_base(v: object) -> float:
    """RFC 7296 §2.4: retransmission intervals must not shrink (``RetryPolicy``)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise TypeError(f"expected a number, got {v!r}")
    if not math.isfinite(v) or v < 1.0:
        raise ValueError(f"must be a finite number >= 1, got {v!r}")
    return float(v)


def _replace_retransmit(c: ConnectionConfig, r: RetransmitConfig) -> ConnectionConfig:
    from dataclasses import replace

    return replace(c, retransmit=r)


# --------------------------------------------------------------------------- [eap_radius]

_EAP_RADIUS_KEYS = (
    "servers",
    "timeout",
    "retries",
    "backoff",
    "nas_identifier",
    "station_id_with_port",
    "framed_mtu",
    "sockets",
    "accounting",
    "accounting_interval",
    "accounting_requires_vip",
    "accounting_close_on_timeout",
)
_RADIUS_SERVER_KEYS = ("address", "auth_port", "port", "preference", "acct_port")
_RADIUS_SECRET_PREFIX = "radius-"


def _radius_secrets(ctx: _Ctx, secrets: list[_Secret]) -> tuple[list[_Secret], dict[str, bytes]]:
    """Split the RADIUS shared secrets (``[secrets.radius-NAME]``, RFC 2865 §3) from
    the PSKs: (PSKs, {server name: secret})."""
    psks: list[_Secret] = []
    radius: dict[str, bytes] = {}
    for s in secrets:
        if not s.name.startswith(_RADIUS_SECRET_PREFIX):
            psks.append(s)
            continue
        if s.ids:
            ctx.err(f"secrets.{s.name}", "a RADIUS shared secret has no id (hint: secret only)")
        radius[s.name.removeprefix(_RADIUS_SECRET_PREFIX)] = s.secret
    return psks, radius


def _ip_address(v: object) -> str:
    text = _str(v).strip()
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(f"invalid IP address {text!r} (hint: e.g. '192.0.2.10')") from None


def _framed_mtu(v: object) -> int:
    n: int = _int_range(0, 65535)(v)
    if 0 < n < 64:
        raise ValueError(f"must be 0 (not sent) or between 64 and 65535, got {n}")
    return n


def _nas_identifier(v: object) -> str:
    text = _str(v)
    if not 0 < len(text.encode()) <= 253:
        raise ValueError("must be 1 to 253 octets (RFC 2865 §5.32)")
    return text


def _radius_server(t: _Table, name: str, secrets: dict[str, bytes]) -> RadiusServerConfig:
    """``[eap_radius.servers.NAME]``: address, auth_port (or port), preference; the
    secret comes from ``[secrets.radius-NAME]``."""
    address = t.get("address", _ip_address, "")
    if "address" not in t.data:
        t.ctx.err(t.at("address"), "missing (the RADIUS server's IP address)")
    if "secret" in t.data:
        t.raw("secret")
        t.ctx.err(
            t.at("secret"),
            f"secrets go into the secrets: [secrets.{_RADIUS_SECRET_PREFIX}{name}] "
            'secret = "..." (hint: in a mode-0600 secrets_file)',
        )
    secret = secrets.get(name)
    if secret is None:
        t.ctx.err(
            t.loc,
            f"no shared secret (hint: add [secrets.{_RADIUS_SECRET_PREFIX}{name}] "
            'with secret = "..." to the secrets)',
        )
    server = RadiusServerConfig(
        name=name,
        address=address,
        secret=secret or b"",
        auth_port=t.get("auth_port", _int_range(1, 65535), 1812, "port"),
        preference=t.get("preference", _int_range(-1000, 1000), 0),
        acct_port=t.get("acct_port", _int_range(1, 65535), 1813),
    )
    t.finish(_RADIUS_SERVER_KEYS)
    return server


def _eap_radius(ctx: _Ctx, t: _Table, secrets: dict[str, bytes]) -> EapRadiusConfig:
    """``[eap_radius]``: the RADIUS client (RFC 3579), like strongSwan's eap-radius."""
    d = EapRadiusConfig()
    timeout = t.get("timeout", parse_duration, d.timeout)
    if timeout <= 0:
        ctx.err(t.at("timeout"), "must be > 0 (hint: '3s')")
        timeout = d.timeout
    interval = t.get("accounting_interval", parse_duration, d.accounting_interval)
    if interval and interval < 60:
        # RFC 2869 §5.16: an interval below 60 s SHOULD NOT be used
        ctx.err(t.at("accounting_interval"), "must be 0 (none) or at least 60s (RFC 2869 §5.16)")
        interval = d.accounting_interval
    servers_tbl = t.sub("servers")
    servers = tuple(
        _radius_server(servers_tbl.sub(name), name, secrets) for name in list(servers_tbl.data)
    )
    for name in secrets.keys() - {s.name for s in servers}:
        ctx.err(
            f"secrets.{_RADIUS_SECRET_PREFIX}{name}",
            f"no [eap_radius.servers.{name}] uses this RADIUS secret",
        )
    cfg = EapRadiusConfig(
        servers=servers,
        timeout=timeout,
        retries=t.get("retries", _int_range(0, 20), d.retries),
        backoff=t.get("backoff", _retransmit_base, d.backoff),
        nas_identifier=t.get("nas_identifier", _nas_identifier, d.nas_identifier),
        station_id_with_port=t.get("station_id_with_port", _bool, d.station_id_with_port),
        framed_mtu=t.get("framed_mtu", _framed_mtu, d.framed_mtu),
        sockets=t.get("sockets", _int_range(1, 64), d.sockets),
        accounting=t.get("accounting", _bool, d.accounting),
        accounting_interval=interval,
        accounting_requires_vip=t.get("accounting_requires_vip", _bool,
                                      d.accounting_requires_vip),
        accounting_close_on_timeout=t.get("accounting_close_on_timeout", _bool,
                                          d.accounting_close_on_timeout),
    )  # fmt: skip
    t.finish(_EAP_RADIUS_KEYS)
    return cfg


def _check_radius_servers(ctx: _Ctx, cfg: DaemonConfig) -> None:
    """A gateway with ``remote.auth = "eap-radius"`` (or accounting) needs a RADIUS
    server."""
    if cfg.eap_radius.servers:
        return
    if cfg.eap_radius.accounting:
        ctx.err("eap_radius.accounting", "RADIUS accounting needs a RADIUS server "
                '(hint: [eap_radius.servers.NAME] with address = "...")')  # fmt: skip
    for c in cfg.connections:
        if c.remote_auth == "eap-radius":
            ctx.err(
                f"connections.{c.name}.remote.auth",
                "eap-radius needs a RADIUS server (hint: [eap_radius.servers.NAME] with "
                'address = "..." and [secrets.radius-NAME] with its secret)',
            )


def _build(
    data: Mapping[str, Any],
    source: str,
    base_dir: Path,
    checker: Callable[[str, str], None],
) -> DaemonConfig:
    ctx = _Ctx(check_proposal=checker)
    root = _Table(ctx, "", dict(data))
    key_secrets: list[KeySecret] = []
    secrets: list[_Secret] = _load_secrets(ctx, root.sub("secrets"), key_secrets)
    sf = root.get("secrets_file", _str, None)
    if sf is not None:
        path = Path(sf) if os.path.isabs(sf) else base_dir / sf
        extra = _check_secrets_file(ctx, "secrets_file", path)
        if extra is not None:
            for k in extra:
                if k != "secrets":
                    ctx.err(f"{sf}:{k}", "unknown key (a secrets file holds [secrets.NAME] only)")
            secrets += _load_secrets(
                ctx, _Table(ctx, f"{sf}:secrets", extra.get("secrets", {})), key_secrets
            )
    secrets, radius_secrets = _radius_secrets(ctx, secrets)
    store = CredentialStore(base_dir, ctx.err, key_secrets)
    pools = _pools(ctx, root.sub("pools"))
    conns_tbl = root.sub("connections")
    sources = _FileSource(secrets, store)
    conns = []
    for name in list(conns_tbl.data):
        conns.append(_connection(ctx, conns_tbl.sub(name), name, sources))
    child_names: dict[str, str] = {}
    for c in conns:
        for ch in c.children:
            if ch.name in child_names:
                ctx.err(
                    f"connections.{c.name}.children.{ch.name}",
                    f"child name already used in connections.{child_names[ch.name]}",
                )
            child_names[ch.name] = c.name
    _check_pool_refs(ctx, conns, pools)
    cfg = replace(_daemon(ctx, root.sub("daemon"), tuple(conns)), pools=pools)
    cfg = replace(cfg, eap_radius=_eap_radius(ctx, root.sub("eap_radius"), radius_secrets))
    _check_radius_servers(ctx, cfg)
    root.finish(["daemon", "connections", "pools", "secrets", "secrets_file", "eap_radius"])
    if ctx.errors:
        raise ConfigError(ctx.errors, source)
    return cfg


def _parse_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([ConfigIssue("", f"invalid TOML: {e}")], source) from None


def load_config_text(
    text: str,
    source: str = "<string>",
    base_dir: str | Path = ".",
    check_proposal: Callable[[str, str], None] = validate_proposal,
) -> DaemonConfig:
    """Parse and validate TOML text; raise :class:`ConfigError` listing every problem.

    ``check_proposal(text, kind)`` (kind ``"ike"``/``"esp"``) validates one proposal
    string by raising ``ValueError``; by default :func:`validate_proposal` (the core's
    parser).
    """
    data = _parse_toml(text, source)
    return _build(data, source, Path(base_dir), check_proposal)


def load_config(
    path: str | Path, check_proposal: Callable[[str, str], None] = validate_proposal
) -> DaemonConfig:
    """Load and validate a configuration file (see :func:`load_config_text`).

    A ``secrets_file`` accessible by group/other is refused.  The main file itself is
    not (it may be a checked-out example), but when it holds ``[secrets]`` and is
    accessible by group/other a warning says so (``pyipsec.cfg``): keep secrets in a
    mode-0600 ``secrets_file`` or ``chmod 600`` the file.
    """
    p = Path(path)
    try:
        with p.open("rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            text = f.read().decode("utf-8")
    except OSError as e:
        raise ConfigError(
            [ConfigIssue("", f"cannot read {str(p)!r}: {e.strerror}")], str(p)
        ) from None
    except UnicodeDecodeError as e:
        raise ConfigError([ConfigIssue("", f"not UTF-8: {e}")], str(p)) from None
    data = _parse_toml(text, str(p))
    cfg = _build(data, str(p), p.parent, check_proposal)
    if data.get("secrets") and mode & 0o077:
        log.warning(
            "%s holds [secrets] and is accessible by group/other (mode %04o): "
            "chmod 600 it or move the secrets to a mode-0600 secrets_file",
            p,
            stat.S_IMODE(mode),
        )
    return cfg
