"""The ``pyipsec`` command line.

::

    pyipsec --version
    pyipsec daemon --config FILE [--foreground | --detach] [--keylog FILE] [--check]
    pyipsec up NAME [CHILD] [--timeout S]
    pyipsec down NAME
    pyipsec rekey NAME [--child CHILD | --ike]
    pyipsec liveness NAME [--timeout S]
    pyipsec status [--json]
    pyipsec reload
    pyipsec pools [--leases] [--name POOL] [--json]
    pyipsec stop
    pyipsec selfcheck
    pyipsec demo [--keep-going] [--no-install] [--auth psk|pubkey]
    pyipsec pki --gen-ca | --issue | --crl | --print CERT  [options]

``--socket PATH`` (before or after the command; default ``$PYIPSEC_SOCKET`` or
``/run/pyipsec/control.sock``) selects the daemon's control socket.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from . import build_info
from .config.loader import ConfigError
from .config.model import DaemonConfig
from .daemon.control import ControlClient, ControlError

__all__ = ["format_pools", "format_status", "main"]

DEFAULT_SOCKET = DaemonConfig().control_socket

if TYPE_CHECKING:  # a generic only in typeshed, not at run time
    #: what ``ArgumentParser.add_subparsers`` returns
    _Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]


def _socket_path(args: argparse.Namespace) -> str:
    return str(args.socket or os.environ.get("PYIPSEC_SOCKET") or DEFAULT_SOCKET)


# ----------------------------------------------------------------------------- status table


def _fmt_bytes(n: Any) -> str:
    if not isinstance(n, int):
        return "-"
    if n < 1024:
        return f"{n} B"
    v = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        v /= 1024
        if v < 1024 or unit == "GiB":
            break
    return f"{v:.1f} {unit}"


def _fmt_secs(v: Any) -> str:
    if v is None or not isinstance(v, int | float):
        return "-"
    v = int(v)
    sign = "-" if v < 0 else ""
    v = abs(v)
    if v >= 3600:
        return f"{sign}{v // 3600}h{v % 3600 // 60:02d}m"
    if v >= 60:
        return f"{sign}{v // 60}m{v % 60:02d}s"
    return f"{sign}{v}s"


def _first(d: dict[str, Any], *keys: str, default: Any = None) -> Any:
    for k in keys:
        if k in d and d[k] not in (None, ""):
            return d[k]
    return default


def _addr(v: Any) -> str:
    if isinstance(v, dict):
        return f"{v.get('address', '?')}[{v.get('port', '?')}]"
    if isinstance(v, list | tuple) and len(v) == 2:
        return f"{v[0]}[{v[1]}]"
    return "-" if v is None else str(v)


def _ident(sa: dict[str, Any], side: str) -> str:
    end = sa.get(side)
    if isinstance(end, dict) and end.get("id"):
        return str(end["id"])
    return str(sa.get(f"{side}_id") or "-")


def _nat(sa: dict[str, Any]) -> str:
    nat = sa.get("nat")
    if not isinstance(nat, dict):
        nat = {"local": sa.get("nat_local"), "remote": sa.get("nat_remote")}
    parts = [k for k in ("local", "remote") if nat.get(k)]
    if nat.get("forced"):
        parts.append("forced")
    return "+".join(parts) or "no"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [len(h) for h in headers]
    for r in rows:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*headers).rstrip(), fmt.format(*("-" * w for w in widths)).rstrip()]
    out += [fmt.format(*r).rstrip() for r in rows]
    return out


IKE_SA_HEADERS = (
    "NAME",
    "STATE",
    "ROLE",
    "LOCAL",
    "REMOTE",
    "IDS",
    "SUITE",
    "SPIS",
    "NAT",
    "REKEY",
    "HEARD",
    "ERRORS",
)
CHILD_SA_HEADERS = ("CHILD", "SPIS", "SUITE", "MODE", "SELECTORS", "IN", "OUT", "REKEY", "EXPIRES")


def _status_header(st: dict[str, Any]) -> list[str]:
    """The daemon line (pid, uptime, TUN), the listen addresses and the connections."""
    lines: list[str] = []
    tun = st.get("tun")
    head = f"pyipsec daemon pid {st.get('pid', '?')}, up {_fmt_secs(st.get('uptime'))}"
    if tun:
        head += f", TUN {tun.get('name')} mtu {tun.get('mtu')}"
    lines.append(head)
    if st.get("listen"):
        lines.append("listening: " + ", ".join(st["listen"]))
    conns = st.get("connections") or []
    if conns:
        parts = []
        for c in conns:
            ch = ", ".join(f"{x['name']}({x['start_action']})" for x in c.get("children", []))
            parts.append(f"{c['name']} [{ch}]" if ch else c["name"])
        lines.append("connections: " + "; ".join(parts))
    return lines


def _sa_label(sa: dict[str, Any]) -> str:
    """``conn#ike_id``: how status names an IKE SA."""
    return f"{_first(sa, 'conn', 'name', default='?')}#{_first(sa, 'ike_id', 'id', default='?')}"


def _ike_sa_row(sa: dict[str, Any]) -> list[str]:
    """One row of the IKE SA table, in the order of :data:`IKE_SA_HEADERS`."""
    spi_i = _first(sa, "spi_i", default="-")
    spi_r = _first(sa, "spi_r", default="-")
    return [
        _sa_label(sa),
        str(_first(sa, "state", default="?")),
        str(_first(sa, "role", default="-")),
        _addr(sa.get("local")),
        _addr(sa.get("remote")),
        f"{_ident(sa, 'local')} / {_ident(sa, 'remote')}",
        str(_first(sa, "suite", default="-")),
        f"{spi_i}_i {spi_r}_r",
        _nat(sa),
        _fmt_secs(sa.get("rekey_in")),
        _heard(sa.get("dpd")),
        _errors(sa.get("errors")),
    ]


def _child_sa_row(c: dict[str, Any]) -> list[str]:
    """One row of the Child SA table, in the order of :data:`CHILD_SA_HEADERS`."""
    return [
        f"{c.get('conn', '?')}/{c.get('child', '?')}",
        f"{c.get('spi_in', '-')}_i {c.get('spi_out', '-')}_o",
        str(c.get("suite") or "-"),
        str(c.get("mode", "-")) + ("+udp" if c.get("encap") else ""),
        ", ".join(c.get("local_ts", [])) + " === " + ", ".join(c.get("remote_ts", [])),
        f"{_fmt_bytes(c.get('bytes_in'))}/{c.get('packets_in', 0)}p",
        f"{_fmt_bytes(c.get('bytes_out'))}/{c.get('packets_out', 0)}p",
        _fmt_secs(c.get("rekey_in")),
        _fmt_secs(c.get("expires_in")),
    ]


def _sa_section(
    title: str,
    sas: Sequence[dict[str, Any]],
    headers: Sequence[str],
    row: Callable[[dict[str, Any]], list[str]],
) -> list[str]:
    """``TITLE (n):`` and, if there are SAs, their table indented by two spaces."""
    lines = [f"{title} ({len(sas)}):"]
    if sas:
        lines += ["  " + s for s in _table(headers, [row(sa) for sa in sas])]
    return lines


def _status_footer(st: dict[str, Any]) -> list[str]:
    """The non-zero daemon-wide drop and error counters, after a blank line."""
    lines: list[str] = []
    drops = {k: v for k, v in (st.get("drops") or {}).items() if v}
    if drops:
        lines.append("")
        lines += format_drops(drops)
    errors = {k: v for k, v in (st.get("errors") or {}).items() if v}
    if errors:  # daemon totals, kept after the SAs that counted them are gone
        if not drops:
            lines.append("")
        lines.append("errors: " + ", ".join(f"{k}={v}" for k, v in sorted(errors.items())))
    return lines


def _peer_cert_line(sa: dict[str, Any]) -> str | None:
    """``  demo#1 peer certificate: CN=..., issued by CN=..., expires 2027-...`` (and how
    the peer authenticated), for an IKE SA whose peer showed a verified certificate."""
    cert = sa.get("peer_cert")
    if not isinstance(cert, dict):
        return None
    name = _sa_label(sa)
    text = f"  {name} peer certificate: {cert.get('subject', '?')}"
    text += f", issued by {cert.get('issuer', '?')}"
    not_after = cert.get("not_after")
    if not_after:
        text += f", expires {str(not_after).replace('T', ' ').replace('+00:00', ' UTC')}"
    if sa.get("peer_auth"):
        text += f" (auth {sa['peer_auth']})"
    return text


def _vips_line(sa: dict[str, Any]) -> str | None:
    """``  rw#4 virtual IP 203.0.113.193 (DNS 203.0.113.65)`` for our assigned addresses,
    ``  gw#2 leased 203.0.113.194 to carol@example.net`` for a peer's (RFC 7296 §2.19)."""
    v = sa.get("vips")
    if not isinstance(v, dict) or not (v.get("local") or v.get("remote")):
        return None
    name = _sa_label(sa)
    if v.get("local"):
        text = f"  {name} virtual IP {', '.join(v['local'])}"
    else:
        text = f"  {name} leased {', '.join(v['remote'])} to {_ident(sa, 'remote')}"
    extra = [f"{k.upper()} {' '.join(v[k])}" for k in ("dns", "nbns") if v.get(k)]
    if v.get("subnets"):
        extra.append(f"subnets {' '.join(v['subnets'])}")
    return text + (f" ({'; '.join(extra)})" if extra else "")


POOL_HEADERS = ("POOL", "ADDRESSES", "SIZE", "ONLINE", "OFFLINE", "FREE")


def _pool_row(p: dict[str, Any]) -> list[str]:
    return [
        str(p.get("name", "?")),
        str(p.get("addrs") or f"{p.get('first')}-{p.get('last')}"),
        str(p.get("size", "-")),
        str(p.get("online", "-")),
        str(p.get("offline", "-")),
        str(p.get("free", "-")),
    ]


def format_pools(res: dict[str, Any]) -> str:
    """``pyipsec pools``: one row per pool, and its leases when they were asked for."""
    pools = res.get("pools") or []
    lines = _sa_section("Pools", pools, POOL_HEADERS, _pool_row)
    for p in pools:
        leases = p.get("leases")
        if leases is None:
            continue
        lines.append(f"leases of {p.get('name', '?')} ({len(leases)}):")
        rows = [
            [str(x.get("address")), str(x.get("status")), str(x.get("identity"))]
            for x in leases
        ]
        if rows:
            lines += ["  " + r for r in _table(("ADDRESS", "STATUS", "IDENTITY"), rows)]
    return "\n".join(lines)


def format_status(st: dict[str, Any]) -> str:
    """The human-readable ``pyipsec status`` output for a status result dict."""
    lines = _status_header(st)
    lines.append("")
    ike_sas = st.get("ike_sas") or []
    lines += _sa_section("IKE SAs", ike_sas, IKE_SA_HEADERS, _ike_sa_row)
    lines += [line for sa in ike_sas if (line := _peer_cert_line(sa))]
    lines += [line for sa in ike_sas if (line := _vips_line(sa))]
    pools = [p for p in st.get("pools") or [] if "name" in p]
    if pools:
        lines.append("")
        lines += _sa_section("Pools", pools, POOL_HEADERS, _pool_row)
    lines.append("")
    lines += _sa_section("Child SAs", st.get("child_sas") or [], CHILD_SA_HEADERS, _child_sa_row)
    lines += _status_footer(st)
    return "\n".join(lines)


#: What each daemon-wide drop counter of ``pyipsec status`` counts (packets that
#: belong to no SA; per-SA drops are in the Child SA rows).
DROP_EXPLANATIONS: dict[str, str] = {
    "no_policy": "packets on the TUN that matched no policy",
    "tun_invalid": "packets on the TUN that were not valid IPv4/IPv6",
    "trap_pending": "packets on the TUN that matched a trap policy while its Child SA "
    "was not up yet (they start the negotiation, RFC 4301 §5.1)",
    "unknown_spi": "ESP packets for an SPI of no Child SA (RFC 4303 §3.4.2)",
    "wrong_encap": "ESP packets of a Child SA on the path it did not negotiate "
    "(UDP 4500 vs protocol 50, RFC 3948 §3)",
    "esp_errors": "ESP packets that failed decoding, the replay check or the ICV check",
    "bad_inner": "decrypted ESP packets whose inner packet was not valid IP",
    "invalid_udp": "datagrams on the IKE ports that were neither IKE, ESP nor a keepalive",
    "ike_errors": "IKE datagrams the IKE core failed on (see the log)",
    "keepalives_in": "NAT-T keepalives received (RFC 3948 §2.3; not an error)",
    "install_failed": "negotiated Child SAs the data plane could not install (deleted again "
    "with a DELETE, see the log)",
}


def format_drops(drops: dict[str, int]) -> list[str]:
    """``drops: name=count (what it counts)``, one counter per line, in name order."""
    lines: list[str] = []
    for i, (name, count) in enumerate(sorted(drops.items())):
        why = DROP_EXPLANATIONS.get(name)
        text = f"{name}={count}" + (f" ({why})" if why else "")
        lines.append(("drops: " if i == 0 else "       ") + text)
    return lines


def format_up_result(res: dict[str, Any], wall_ms: float | None = None) -> str:
    """One line for the answer of the control command ``up``.

    ``res`` holds ``established``, ``events``, ``conn``, ``child``, ``elapsed_ms``
    (initiate to Child SA installed, measured in the daemon) and on failure
    ``error``; ``wall_ms`` is the time the caller waited, when it measured it.
    """
    name = f"{res.get('conn', '?')}/{res.get('child') or '-'}"
    ok = res.get("established", True)
    elapsed = res.get("elapsed_ms")
    daemon_ms = f"{elapsed:g} ms" if isinstance(elapsed, int | float) else None
    if wall_ms is not None:
        when = f" in {wall_ms:.0f} ms" + (f" ({daemon_ms} in the daemon)" if daemon_ms else "")
    else:
        when = f" in {daemon_ms}" if daemon_ms else ""
    details = [str(e) for e in res.get("events") or []]
    if not ok and res.get("error"):
        details.append(str(res["error"]))
    tail = f": {'; '.join(details)}" if details else ""
    return f"{name}: {'established' if ok else 'failed'}{when}{tail}"


def _heard(dpd: Any) -> str:
    """When the peer was last heard from (RFC 7296 §2.4), and the DPD state unless idle."""
    if not isinstance(dpd, dict):
        return "-"
    idle = dpd.get("idle_for")
    text = f"{_fmt_secs(idle)} ago" if isinstance(idle, int | float) else "-"
    state = dpd.get("state")
    if state and state != "idle":
        text += f" ({state})"
    return text


def _errors(errs: Any) -> str:
    """A compact per-SA error column: the total, and the kinds when there are few."""
    if not isinstance(errs, dict):
        return "-"
    counts = {str(k): v for k, v in errs.items() if isinstance(v, int) and v}
    if not counts:
        return "-"
    total = sum(counts.values())
    if len(counts) > 2:
        return f"{total} ({len(counts)} kinds)"
    return ",".join(f"{k}={v}" for k, v in sorted(counts.items()))


# ----------------------------------------------------------------------------- commands


def _cmd_daemon(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from .daemon.runtime import load_daemon_config

    try:
        cfg = load_daemon_config(args.config)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 1
    if args.socket:
        cfg = replace(cfg, control_socket=args.socket)
    if args.check:
        n = sum(len(c.children) for c in cfg.connections)
        print(f"{args.config}: OK ({len(cfg.connections)} connections, {n} children)")
        return 0
    from .daemon.logsetup import setup_logging
    from .daemon.runtime import run_daemon

    if args.detach:
        _daemonize(args.log_file)
    setup_logging(cfg.log_levels, verbose=args.verbose, fmt=cfg.log_format)
    try:
        return run_daemon(cfg, config_path=args.config, keylog_path=args.keylog)
    except OSError as e:
        print(f"pyipsec daemon: {e}", file=sys.stderr)
        return 1


def _daemonize(log_file: str | None) -> None:  # pragma: no cover - forks
    """Classic double fork; stdio goes to ``log_file`` (or /dev/null)."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    fd_in = os.open(os.devnull, os.O_RDONLY)
    fd_out = (
        os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        if log_file
        else os.open(os.devnull, os.O_WRONLY)
    )
    os.dup2(fd_in, 0)
    os.dup2(fd_out, 1)
    os.dup2(fd_out, 2)


def _client(args: argparse.Namespace, timeout: float = 10.0) -> ControlClient:
    return ControlClient(_socket_path(args), timeout=timeout)


def _cmd_up(args: argparse.Namespace) -> int:
    res = _client(args, args.timeout + 5).call(
        "up", name=args.name, child=args.child, timeout=args.timeout
    )
    print(format_up_result(res))
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    _client(args).call("down", name=args.name)
    print(f"{args.name}: closing")
    return 0


def _cmd_rekey(args: argparse.Namespace) -> int:
    res = _client(args).call(
        "rekey", name=args.name, child=args.child, ike=True if args.ike else None
    )
    if args.ike:
        ids = ", ".join(f"#{i}" for i in res.get("ike_sas", []))
        print(f"{args.name}: rekeying IKE SA {ids}")
    else:
        for c in res.get("child_sas", []):
            print(f"{args.name}/{c.get('child')}: rekeying {c.get('spi_in')}")
    return 0


def _cmd_liveness(args: argparse.Namespace) -> int:
    res = _client(args, args.timeout + 5).call("liveness", name=args.name, timeout=args.timeout)
    print(f"{args.name}: alive, round trip {res.get('rtt_ms')} ms")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    filters = {
        k: v
        for k, v in (
            ("conn", args.conn),
            ("peer", args.peer),
            ("offset", args.offset),
            ("limit", args.limit),
        )
        if v is not None
    }
    st = _client(args).call("status", **filters)
    if args.json:
        print(json.dumps(st, indent=2, sort_keys=True))
    else:
        print(format_status(st))
    return 0


def _cmd_pools(args: argparse.Namespace) -> int:
    filters = {"leases": True} if args.leases else {}
    if args.name is not None:
        filters["name"] = args.name
    res = _client(args).call("pools", **filters)
    print(json.dumps(res, indent=2, sort_keys=True) if args.json else format_pools(res))
    return 0


def _cmd_reload(args: argparse.Namespace) -> int:
    res = _client(args).call("reload")
    print("reloaded: " + ", ".join(res.get("connections", [])))
    if res.get("restart_needed"):
        print("not applied until the daemon restarts: " + ", ".join(res["restart_needed"]))
    for problem in res.get("pool_problems") or []:
        print(f"pool not changed: {problem}")
    return 0


def _cmd_counters(args: argparse.Namespace) -> int:
    req: dict[str, Any] = {"all": True} if args.all else {}
    if args.name is not None and not args.all:
        req["name"] = args.name
    if args.reset:
        req["reset"] = True
    res = _client(args).call("counters", **req)
    if args.json:
        print(json.dumps(res, indent=2, sort_keys=True))
        return 0
    for conn, values in res.get("counters", {}).items():
        print(f"{conn or 'global'}:")  # swanctl --counters' layout
        for key, n in values.items():
            print(f"  {key:<22s}: {n}")
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    _client(args).call("stop")
    print("stopping")
    return 0


def _cmd_selfcheck(args: argparse.Namespace) -> int:
    from .daemon.selfcheck import run_selfcheck

    return 0 if run_selfcheck() else 1


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(keep_going=args.keep_going, install=not args.no_install, auth=args.auth)


_CONN_NAME_HELP = "connection name (a [connections.NAME] table)"


def _add_daemon_parser(sub: _Subparsers, common: argparse.ArgumentParser) -> None:
    """``pyipsec daemon``: run the IKE daemon (or only check its configuration)."""
    d = sub.add_parser("daemon", parents=[common], help="run the IKE daemon")
    d.add_argument("--config", "-c", required=True, help="TOML configuration file")
    d.add_argument(
        "--foreground", "-f", action="store_true", help="stay in the foreground (the default)"
    )
    d.add_argument("--detach", action="store_true", help="fork into the background")
    d.add_argument("--keylog", help="write IKE/ESP keys for Wireshark (see README)")
    d.add_argument("--log-file", help="stdout/stderr of a --detach'ed daemon")
    d.add_argument("--check", action="store_true", help="only validate the configuration")
    d.add_argument("--verbose", "-v", action="store_true", help="debug logging everywhere")
    d.set_defaults(func=_cmd_daemon)


def _add_connection_parsers(sub: _Subparsers, common: argparse.ArgumentParser) -> None:
    """The commands that act on one connection: ``up``, ``down``, ``rekey``, ``liveness``."""
    u = sub.add_parser("up", parents=[common], help="initiate a connection")
    u.add_argument("name", help=_CONN_NAME_HELP)
    u.add_argument(
        "child", nargs="?", help="child to bring up with it (default: the first configured)"
    )
    u.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds to wait for the Child SA (default: %(default)g)",
    )
    u.set_defaults(func=_cmd_up)

    dn = sub.add_parser("down", parents=[common], help="delete the IKE SAs of a connection")
    dn.add_argument("name", help=_CONN_NAME_HELP)
    dn.set_defaults(func=_cmd_down)

    rk = sub.add_parser("rekey", parents=[common], help="rekey Child SAs or the IKE SA now")
    rk.add_argument("name", help=_CONN_NAME_HELP)
    which = rk.add_mutually_exclusive_group()
    which.add_argument("--child", help="only this child (default: every Child SA)")
    which.add_argument("--ike", action="store_true", help="rekey the IKE SA instead")
    rk.set_defaults(func=_cmd_rekey)

    lv = sub.add_parser(
        "liveness", parents=[common], help="send a liveness check, print the round trip"
    )
    lv.add_argument("name", help=_CONN_NAME_HELP)
    lv.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds to wait for the answer (default: %(default)g)",
    )
    lv.set_defaults(func=_cmd_liveness)


def _add_daemon_control_parsers(sub: _Subparsers, common: argparse.ArgumentParser) -> None:
    """The commands that talk to the whole daemon: ``status``, ``reload``, ``stop``."""
    s = sub.add_parser("status", parents=[common], help="show IKE and Child SAs")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.add_argument("--conn", help="only the SAs of this connection")
    s.add_argument("--peer", help="only the SAs with this peer IP address")
    s.add_argument("--offset", type=int, help="skip this many IKE SAs (paging)")
    s.add_argument("--limit", type=int, help="show at most this many IKE SAs")
    s.set_defaults(func=_cmd_status)

    sub.add_parser("reload", parents=[common], help="re-read the configuration").set_defaults(
        func=_cmd_reload
    )
    pl = sub.add_parser("pools", parents=[common], help="show virtual IP pools and leases")
    pl.add_argument("--leases", action="store_true", help="list every lease")
    pl.add_argument("--name", help="only this pool")
    pl.add_argument("--json", action="store_true", help="machine-readable output")
    pl.set_defaults(func=_cmd_pools)
    ct = sub.add_parser("counters", parents=[common],
                        help="IKE counters: messages by exchange, rekeys, invalid messages")
    ct.add_argument("--name", help="only this connection's (default: the global ones)")
    ct.add_argument("--all", action="store_true", help="every connection's")
    ct.add_argument("--reset", action="store_true", help="zero them after showing them")
    ct.add_argument("--json", action="store_true", help="machine-readable output")
    ct.set_defaults(func=_cmd_counters)
    sub.add_parser("stop", parents=[common], help="stop the daemon").set_defaults(func=_cmd_stop)


def _add_local_parsers(sub: _Subparsers) -> None:
    """The commands that need no daemon (and no ``--socket``): ``selfcheck``, ``demo``."""
    sub.add_parser("selfcheck", help="codec/crypto self-test (no root needed)").set_defaults(
        func=_cmd_selfcheck
    )
    dm = sub.add_parser("demo", help="two peers behind a NAT in namespaces, ping across (root)")
    dm.add_argument("--keep-going", action="store_true", help="do not stop at the first failure")
    dm.add_argument(
        "--no-install",
        action="store_true",
        help="do not apt-get install missing tools (nftables, iputils-ping, iproute2)",
    )
    dm.add_argument(
        "--auth",
        choices=("psk", "pubkey"),
        default="psk",
        help="psk: a pre-shared key; pubkey: certificates of a CA made on the fly",
    )
    dm.set_defaults(func=_cmd_demo)
    from . import pki

    pk = sub.add_parser("pki", help="make CA/host certificates and CRLs, print certificates")
    pki.add_arguments(pk)
    pk.set_defaults(func=pki.run)


def version() -> str:
    """The installed distribution's version (``importlib.metadata``)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("pyipsec")
    except PackageNotFoundError:  # run from a source tree (PYTHONPATH=src)
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The ``pyipsec`` argument parser; each subcommand's ``func`` default runs it."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--socket",
        default=argparse.SUPPRESS,
        help=f"control socket (default $PYIPSEC_SOCKET or {DEFAULT_SOCKET})",
    )
    p = argparse.ArgumentParser(
        prog="pyipsec",
        description="IKEv2/IPsec daemon with a userspace ESP data plane",
        parents=[common],
    )
    core = f"core {build_info.core_description()}"
    p.add_argument("--version", action="version", version=f"%(prog)s {version()} ({core})")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_daemon_parser(sub, common)
    _add_connection_parsers(sub, common)
    _add_daemon_control_parsers(sub, common)
    _add_local_parsers(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not hasattr(args, "socket"):
        args.socket = None
    try:
        rc: int = args.func(args)
    except ControlError as e:
        print(f"pyipsec {args.command}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return rc


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
