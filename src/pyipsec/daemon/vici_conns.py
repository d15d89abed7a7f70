"""``load-conn``: strongSwan's VICI connection message -> pyipsec's
:class:`~pyipsec.config.model.ConnectionConfig`.

``swanctl --load-conns`` sends each ``connections.<name>`` section of swanctl.conf
nearly verbatim (strongSwan's ``src/libcharon/plugins/vici/README.md``, swanctl.conf(5)):
values as strings, the list keys (``local_addrs``, ``proposals``, ``local_ts``, ...)
as lists, ``local``/``remote`` (or ``local-<round>``) and ``children.<name>``
as sections, and ``certs``/``cacerts``/``pubkeys`` as the files' contents.

The connection is built by the TOML loader's own
:func:`~pyipsec.config.loader._connection` (its parsers: durations, byte counts,
addresses, identities, proposals, selectors, lifetimes, DPD, children), given a
:class:`_ViciSource` for what differs (sides, secrets, credentials, ``fragmentation``),
so a swanctl.conf and a pyipsec TOML file mean the same.  Every key
strongSwan knows but pyipsec has no meaning for is refused with an error naming it
(:data:`UNSUPPORTED`); a few are accepted only with the value pyipsec behaves as
(:data:`ONLY`, e.g. ``mobike = no``); anything else is an unknown key.  pyipsec's own
TOML keys (``keepalive``, ``window_size``, ...) are accepted too.

Credentials come from the VICI credential set (:mod:`pyipsec.daemon.vici_creds`):
the PSK whose owners match the identities; the certificates and raw public keys the
message carries (``local.certs`` candidates, ``local.pubkeys``, ``remote.cacerts``,
``remote.pubkeys``) go through the TOML loader's own credential rules
(:func:`pyipsec.config.loader._credentials`) with the private keys and CA
certificates loaded with ``load-key`` / ``load-cert``; EAP (``auth = eap-md5 |
eap-mschapv2 | eap-tls | eap-radius | eap``, ``eap_id``) through the loader's
:func:`~pyipsec.config.loader._eap` with the EAP secrets of ``load-shared``, a missing
secret being a warning as for PSKs (RFC 7296 §2.16).  ``pools`` must name pools
that exist when the connection is loaded (:mod:`pyipsec.daemon.vici_pools`, checked
by :mod:`pyipsec.daemon.vici_load`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ..config.credentials import PUBKEY_DIR, X509_DIR, X509CA_DIR
from ..config.loader import (
    ConfigError,
    ConfigIssue,
    _connection,
    _Credentials,
    _credentials,
    _Ctx,
    _Eap,
    _eap,
    _Table,
)
from ..config.model import AuthKind, ConnectionConfig
from .vici_creds import ViciCredentials

__all__ = ["ONLY", "UNSUPPORTED", "connection_from_vici"]

log = logging.getLogger("pyipsec.cfg")

#: strongSwan keys pyipsec has no meaning for, by section kind, with the reason
UNSUPPORTED: dict[str, dict[str, str]] = {
    "conn": {
        "pull": "IKEv1 Mode Config is not supported (pyipsec speaks IKEv2 only)",
        "dscp": "DSCP-marked IKE packets are not supported",
        "ppk_id": "postquantum preshared keys (RFC 8784) are not supported",
        "ppk_required": "postquantum preshared keys (RFC 8784) are not supported",
        "if_id_in": "XFRM interface IDs have no meaning for the userspace data plane",
        "if_id_out": "XFRM interface IDs have no meaning for the userspace data plane",
        "mediation": "IKEv2 mediation (NAT hole punching) is not supported",
        "mediated_by": "IKEv2 mediation (NAT hole punching) is not supported",
        "mediation_peer": "IKEv2 mediation (NAT hole punching) is not supported",
        "ocsp": "OCSP is not supported (use CRLs in x509crl/)",
    },
    "end": {
        "aaa_id": "the AAA server identity (aaa_id) is not supported",
        "xauth_id": "XAuth is IKEv1 only",
        "groups": "group membership checks are not supported",
        "cert_policy": "certificate policy checks are not supported",
        "ca_id": "CA identities (ca_id) are not supported (use cacerts)",
    },
    "child": {
        "ah_proposals": "AH is not supported (ESP only)",
        "updown": "updown scripts are not supported",
        "reqid": "fixed reqids have no meaning for the userspace data plane",
        "priority": "policy priorities are not supported",
        "interface": "policies bound to an interface are not supported",
        "mark_in": "XFRM marks have no meaning for the userspace data plane",
        "mark_in_sa": "XFRM marks have no meaning for the userspace data plane",
        "mark_out": "XFRM marks have no meaning for the userspace data plane",
        "set_mark_in": "XFRM marks have no meaning for the userspace data plane",
        "set_mark_out": "XFRM marks have no meaning for the userspace data plane",
        "if_id_in": "XFRM interface IDs have no meaning for the userspace data plane",
        "if_id_out": "XFRM interface IDs have no meaning for the userspace data plane",
        "label": "security labels (RFC 9478) are not supported",
        "label_mode": "security labels (RFC 9478) are not supported",
        "inactivity": "closing idle Child SAs (inactivity) is not supported",
        "per_cpu_sas": "per-CPU SAs are not supported",
        "copy_df": "the DF bit handling of the data plane is not configurable",
        "copy_ecn": "the ECN handling of the data plane is not configurable",
        "copy_dscp": "the DSCP handling of the data plane is not configurable",
    },
}

#: strongSwan keys accepted only with the value pyipsec behaves as
ONLY: dict[str, dict[str, tuple[str, ...]]] = {
    "conn": {
        "mobike": ("no",),  # no MOBIKE (RFC 4555) in pyipsec
        "aggressive": ("no",),  # IKEv1 only
        "unique": ("no",),  # INITIAL_CONTACT replaces, nothing else enforced
    },
    "end": {"round": ("0", "1")},  # one authentication round
    "child": {
        "ipcomp": ("no",),
        "hostaccess": ("no",),
        "policies": ("yes",),
        "policies_fwd_out": ("no",),
        "hw_offload": ("no",),
        "sha256_96": ("no",),
        "rand_bytes": ("0",),
        "rand_packets": ("0",),
    },
}

#: keys whose strings become integers for the loader's range checks
_INTEGERS = {"local_port", "remote_port", "version", "keyingtries", "window_size",
             "fragment_size", "replay_window"}  # fmt: skip
#: strongSwan's aliases of action values
_ACTIONS = {
    "dpd_action": {"none": "clear", "hold": "trap"},
    "close_action": {"clear": "none", "hold": "trap", "restart": "start"},
    "start_action": {"route": "trap"},
}
_FRAGMENTATION = {"yes": True, "no": False}
_TFC = {"0": False, "no": False, "mtu": True, "yes": True}
_LOCAL_KEYS = ("id", "auth", "certs", "pubkeys", "eap_id", "round")
_REMOTE_KEYS = ("id", "auth", "cacerts", "pubkeys", "revocation", "eap_id", "round")
_BLOBS = ("certs", "cacerts", "pubkeys")


def connection_from_vici(
    msg: Mapping[str, Any], creds: ViciCredentials, *, strict_creds: bool = True
) -> ConnectionConfig:
    """The one ``<name> = {...}`` section of a ``load-conn`` request as a connection.

    Raises :class:`~pyipsec.config.loader.ConfigError` listing every problem, located
    as in swanctl.conf (``connections.gw.children.net.updown``).  ``strict_creds``:
    a ``pubkey`` side without a usable certificate/key/anchor is an error (at
    ``load-conn``); otherwise (credentials changed later) it is logged and the side
    is left without credentials, so its authentications fail with that reason.
    """
    sections = [k for k, v in msg.items() if isinstance(v, dict)]
    others = [k for k, v in msg.items() if not isinstance(v, dict)]
    if len(sections) != 1 or others:
        raise ConfigError(
            [ConfigIssue("", "load-conn needs exactly one section <connection name> = {...}")]
        )
    name = sections[0]
    ctx = _Ctx()
    loc = f"connections.{name}"
    data = _plain(ctx, loc, msg[name], "conn")
    if not name or len(name) > 64 or any(c in name for c in "./ \t\n"):
        ctx.err(loc, "invalid connection name (1-64 characters, no '.', '/' or blanks)")
    conn = _connection(ctx, _Table(ctx, loc, data), name, _ViciSource(creds, strict_creds))
    if not conn.children:
        log.info("connection %s has no children (nothing to initiate)", name)
    if ctx.errors:
        raise ConfigError(ctx.errors, f"load-conn '{name}'")
    return conn


# --------------------------------------------------------------------------- values


def _plain(ctx: _Ctx, loc: str, sec: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """A VICI section as the loader expects a TOML table: text values, integers for
    the numeric keys, refused keys reported (and dropped)."""
    out: dict[str, Any] = {}
    for key, v in sec.items():
        at = f"{loc}.{key}"
        if isinstance(v, dict):
            sub = _sub_kind(kind, key)
            if sub == "children":
                out[key] = {n: _plain(ctx, f"{at}.{n}", c, "child") if isinstance(c, dict)
                            else c for n, c in v.items()}  # fmt: skip
            else:
                out[key] = _plain(ctx, at, v, sub) if sub else v
            continue
        if key in _BLOBS:
            out[key] = v  # certificate / key data, read by the credential functions
            continue
        try:
            val = _text(v)
        except UnicodeDecodeError:
            ctx.err(at, "not UTF-8 text")
            continue
        if _refused(ctx, at, kind, key, val):
            continue
        out[key] = _convert(key, val)
    _strongswan_defaults(out, kind)
    return out


#: swanctl.conf(5) defaults that differ from pyipsec's TOML defaults
_DEFAULTS: dict[str, dict[str, object]] = {
    "conn": {"proposals": ["default"], "dpd_delay": "0", "keyingtries": 1},
    "end": {"auth": "pubkey"},
    "child": {"esp_proposals": ["default"]},
}


def _strongswan_defaults(out: dict[str, Any], kind: str) -> None:
    """What swanctl.conf means by a key left out, where pyipsec's TOML differs
    (strongSwan's default proposals, no DPD, one keying try, ``auth = pubkey``)."""
    for key, value in _DEFAULTS.get(kind, {}).items():
        out.setdefault(key, value)
    if kind == "conn":
        for side in ("local", "remote"):
            if not any(k == side or k.startswith(f"{side}-") for k in out):
                out[side] = dict(_DEFAULTS["end"])


def _sub_kind(kind: str, key: str) -> str:
    if kind == "conn" and key == "children":
        return "children"
    if kind == "conn" and (key.split("-")[0] in ("local", "remote")):
        return "end"
    return ""


def _text(v: object) -> str | list[str]:
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, list):
        return [x.decode() if isinstance(x, bytes) else str(x) for x in v]
    return str(v)


def _refused(ctx: _Ctx, at: str, kind: str, key: str, val: str | list[str]) -> bool:
    why = UNSUPPORTED.get(kind, {}).get(key)
    if why is not None:
        ctx.err(at, f"strongSwan's '{key}' is not supported by pyipsec: {why}")
        return True
    only = ONLY.get(kind, {}).get(key)
    if only is not None:
        if not isinstance(val, str) or val.strip().lower() not in only:
            ctx.err(
                at,
                f"strongSwan's '{key} = {val}' is not supported by pyipsec "
                f"(hint: only {' or '.join(repr(o) for o in only)}, pyipsec's behaviour)",
            )
        return True
    return False


def _convert(key: str, val: str | list[str]) -> object:
    if not isinstance(val, str):
        return val
    s = val.strip()
    if key in _INTEGERS and s.lstrip("-").isdigit():
        return int(s)
    if key in _ACTIONS:
        return _ACTIONS[key].get(s.lower(), s)
    if key == "fragmentation" and s.lower() in _FRAGMENTATION:
        return _FRAGMENTATION[s.lower()]
    if key == "tfc_padding" and s.lower() in _TFC:
        return _TFC[s.lower()]
    return s


# --------------------------------------------------------------------------- sections


def _round(t: _Table, side: str) -> _Table:
    """``local`` / ``remote``, or the one ``local-<suffix>`` section: pyipsec does one
    authentication round per side."""
    names = [k for k in t.data if k == side or k.startswith(f"{side}-")]
    if len(names) > 1:
        t.ctx.err(
            t.at(names[1]),
            f"multiple authentication rounds ({', '.join(names)}) are not supported "
            "by pyipsec (RFC 4739)",
        )
        for n in names[1:]:
            t.raw(n)
    return t.sub(names[0] if names else side)


@dataclass(frozen=True, slots=True)
class _ViciSource:
    """A ``load-conn`` message's connection for the TOML loader's
    :func:`~pyipsec.config.loader._connection`: one authentication round per side, the
    secrets and credentials of the VICI credential set, strongSwan's ``fragmentation``
    values.  ``strict``: credential problems are errors (else warnings)."""

    creds: ViciCredentials
    strict: bool
    local_keys: ClassVar[tuple[str, ...]] = _LOCAL_KEYS
    remote_keys: ClassVar[tuple[str, ...]] = _REMOTE_KEYS

    def side(self, t: _Table, side: str) -> _Table:
        return _round(t, side)

    def credentials(
        self, local: _Table, remote: _Table, auths: tuple[AuthKind, AuthKind]
    ) -> _Credentials:
        return _credentials_of(local, remote, auths, self.creds, self.strict)

    def eap(
        self, local: _Table, remote: _Table, auths: tuple[AuthKind, AuthKind],
        local_id: str, certs: bool,
    ) -> _Eap:  # fmt: skip
        return _eap_of(local, remote, auths, local_id, self.creds, certs)

    def psk(
        self, name: str, local: _Table, ids: tuple[str, str], auths: tuple[AuthKind, AuthKind]
    ) -> bytes:
        return _psk_of(name, self.creds, ids[0], ids[1], auths)

    def fragmentation(self, v: object) -> bool:
        return _fragmentation(v)


def _fragmentation(v: object) -> bool:
    """swanctl ``fragmentation``: yes/no (RFC 7383); ``accept``/``force`` are not
    pyipsec behaviours."""
    if isinstance(v, bool):
        return v
    raise ValueError(
        f"fragmentation = {v} is not supported by pyipsec (hint: yes or no: announce "
        "RFC 7383 and fragment when the peer does too, or not at all)"
    )


# --------------------------------------------------------------------------- secrets


def _psk_of(
    name: str, creds: ViciCredentials, local_id: str, remote_id: str,
    auths: tuple[AuthKind, AuthKind],
) -> bytes:  # fmt: skip
    """The IKE secret of the identities; a missing one is a warning (swanctl may load
    connections before their secrets: charon looks them up at authentication time)."""
    psk = creds.psk_for(local_id, remote_id)
    if psk is None and "psk" in auths:
        log.warning(
            "connection %s: no IKE shared secret for ids %r/%r (yet): load one with "
            "load-shared (swanctl: secrets.ike-NAME), or authentications fail",
            name,
            local_id or "%any",
            remote_id or "%any",
        )
    return psk or b""


def _eap_of(
    local: _Table, remote: _Table, auths: tuple[AuthKind, AuthKind], local_id: str,
    creds: ViciCredentials, certs: bool,
) -> _Eap:  # fmt: skip
    """``auth = eap-*``, ``local.eap_id`` / ``remote.eap_id`` and the EAP secrets
    (``load-shared`` type EAP) by the TOML loader's rules (:func:`pyipsec.config.loader
    ._eap`, RFC 7296 §2.16).  As for PSKs, a secret not loaded (yet) is a warning, not
    an error."""

    def missing(location: str, message: str) -> None:
        log.warning("%s: %s (yet): load it with load-shared (swanctl: secrets.eap-NAME), "
                    "or authentications fail", location, message)  # fmt: skip

    return _eap(local, remote, auths, local_id, creds.secrets(), certs, missing_secret=missing)


# --------------------------------------------------------------------------- credentials


def _problems(end: _Table, strict: bool) -> Callable[[str, str], None]:
    """Where credential problems go: errors at load-conn, warnings later."""
    if strict:
        return end.ctx.err
    return lambda loc, msg: log.warning("%s: %s (authentications will fail)", loc, msg)


#: the keys of a side carrying credential data, and the swanctl directory they stand for
_BLOB_KEYS = (("certs", X509_DIR), ("cacerts", X509CA_DIR), ("pubkeys", PUBKEY_DIR))


def _credentials_of(
    local: _Table, remote: _Table, auths: tuple[AuthKind, AuthKind],
    creds: ViciCredentials, strict: bool,
) -> _Credentials:  # fmt: skip
    """The TOML loader's credential rules (:func:`pyipsec.config.loader._credentials`:
    ``local.certs`` candidates chosen by the peer's CERTREQ, their chains and keys,
    ``local.pubkeys``, ``remote.cacerts`` / ``remote.pubkeys``, ``revocation``) over
    the certificates and keys the message carries and the VICI credential set."""
    store = creds.store(_problems(local, strict))
    for end in (local, remote):
        if "key" in end.data:  # pyipsec's TOML only: the key comes from load-key
            end.raw("key")
            end.ctx.err(end.at("key"), "unknown key (hint: load private keys with load-key: "
                        "swanctl's private/ directory)")  # fmt: skip
            del end.data["key"]
        for key, subdir in _BLOB_KEYS:
            if key not in end.data:
                continue
            blobs, at = end.data[key], end.at(key)
            if subdir == PUBKEY_DIR:
                end.data[key] = store.add_pubkeys(blobs, at, end.ctx.err)
            else:
                end.data[key] = store.add_certs(subdir, blobs, at, end.ctx.err)
    return _credentials(local, remote, auths[0], auths[1], store)
