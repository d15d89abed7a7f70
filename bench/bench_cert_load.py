"""Responder cost of certificate handshakes, pyipsec vs strongSwan, on the wire.

Usage: ``sudo python3 bench/bench_cert_load.py`` (default 300 tunnels per block;
``--modes psk,ecdsa-p256,rsa3072``, ``--only pyipsec`` or ``--only strongswan``).

Not a test: run it by hand, as root.  The topology, the responders' load settings and
the measurement are ``bench/bench_load.py``'s (its ``Bench`` is reused): one pyipsec
load generator in the left namespace sets up ``--tunnels`` IKE SAs with one Child SA
each against a responder in the right namespace, once per authentication mode and
responder, each responder started fresh for its block.  Modes:

* ``psk``: the baseline, exactly ``bench_load``'s PSK handshake;
* ``ecdsa-p256``, ``rsa3072`` (and ``ed25519``, ``ecdsa-p384``, ``rsa2048`` on
  request): both ends authenticate with certificates of one CA of that key type (RFC
  7296 §2.15, RFC 7427 signatures with SHA-256), made for the run by
  :mod:`pyipsec.pki`.  The generator (``bench/cert_loadgen.py``) gives every tunnel
  its own certificate (same key), so the responder validates a new chain each time
  (strongSwan's certificate cache cannot skip it); the responder has one certificate
  and one CA in swanctl's layout (``x509/``, ``x509ca/``, ``private/``) for both
  pyipsec and charon, ``remote.id = %any``, CERTREQ on, no CRLs.

For each block the responder's CPU time (utime + stime of the process, charon's whole
thread group) over the run gives handshakes per responder CPU-second; the report shows
it per mode and responder, the ratio pyipsec / strongSwan per mode, and per responder
the cost of a certificate handshake relative to its PSK handshake (CPU per handshake,
certificate / PSK).  The machine may be shared: compare ratios from one invocation.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import (
    IKE_PROPOSAL,
    arg_parser,
    header,
    missing_requirements,
    run_bench,
    run_cleanups,
)

# isort: split
from tests.interop.pyipsec_daemon import PyipsecDaemon
from tests.interop.strongswan import RIGHT_ID, Charon, swanctl_conf
from tests.interop.topology import LEFT_SUBNET, RIGHT_OUTER, RIGHT_SUBNET

import bench_load
from bench_load import (
    CHILD,
    CONN,
    LABELS,
    RESPONDERS,
    Bench,
    handshakes_per_cpu,
    pyipsec_responder_toml,
    ratio,
)
from bench_load import fmt as _fmt
from pyipsec import pki

CERT_LOADGEN = Path(__file__).resolve().parent / "cert_loadgen.py"
MODES = ("psk", "ecdsa-p256", "rsa3072")
KEY_KINDS = ("ecdsa-p256", "ecdsa-p384", "rsa2048", "rsa3072", "ed25519")


def _write(path: Path, data: bytes, private: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


def make_pki(base: Path, kind: str) -> Path:
    """A CA, the responder's certificate (for RIGHT_ID) in swanctl's layout below
    ``base`` (x509/host.pem, x509ca/ca.pem, private/host.key) and, for the generator,
    gen/ca.key and gen/client.key.  Returns ``base``."""
    now = dt.datetime.now(dt.UTC)
    ca_key = pki.generate_key(kind)
    ca = pki.make_ca(ca_key, f"CN=bench {kind} CA,O=pyipsec", now=now)
    host_key = pki.generate_key(kind)
    host = pki.issue_host(ca, ca_key, host_key.public_key(), cn=RIGHT_ID, now=now)
    _write(base / "x509" / "host.pem", pki.cert_pem(host))
    _write(base / "x509ca" / "ca.pem", pki.cert_pem(ca))
    _write(base / "private" / "host.key", pki.key_pem(host_key), private=True)
    _write(base / "gen" / "ca.key", pki.key_pem(ca_key), private=True)
    _write(base / "gen" / "client.key", pki.key_pem(pki.generate_key(kind)), private=True)
    return base


def pyipsec_cert_toml(state: Path, *, proposal: str, esp: str, cookie_threshold: int) -> str:
    """``bench_load``'s responder with certificate authentication in both directions."""
    text = pyipsec_responder_toml(state, proposal=proposal, esp=esp,
                                  cookie_threshold=cookie_threshold)
    for end, extra in (("local", '\ncerts = ["host.pem"]'), ("remote", "")):
        old = f'[connections.{CONN}.{end}]\nauth = "psk"'
        if old not in text:
            raise RuntimeError(f"unexpected responder TOML: no {old!r}")
        text = text.replace(old, f'[connections.{CONN}.{end}]\nauth = "pubkey"{extra}')
    return text


def strongswan_cert_conf(*, proposal: str, esp: str) -> str:
    """``bench_load``'s charon responder with certificates (swanctl layout)."""
    return swanctl_conf({"connections": {CONN: {
        "version": 2,
        "local_addrs": RIGHT_OUTER,
        "remote_addrs": "%any",
        "proposals": proposal,
        "mobike": False,
        "dpd_delay": "0s",
        "rekey_time": "0s",
        "reauth_time": 0,
        "local": {"auth": "pubkey", "id": RIGHT_ID, "certs": "host.pem"},
        "remote": {"auth": "pubkey", "id": "%any", "cacerts": "ca.pem"},
        "children": {CHILD: {
            "mode": "tunnel",
            "local_ts": RIGHT_SUBNET,
            "remote_ts": LEFT_SUBNET,
            "esp_proposals": esp,
            "rekey_time": "0s",
            "start_action": "none",
        }},
    }}})


class CertBench(Bench):
    """``bench_load.Bench`` with one block per (mode, responder)."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self.mode = "psk"
        self.by_mode: dict[str, dict[str, dict[str, Any]]] = {}

    def _pki(self) -> Path:
        base = self.tmp / f"pki-{self.mode}"
        return base if (base / "gen").exists() else make_pki(base, self.mode)

    def start_pyipsec(self, ke_reuse: float = 0.0) -> tuple[int, Callable[[], int]]:
        if self.mode == "psk":
            return super().start_pyipsec(ke_reuse)
        a = self.args
        state = self._pki()
        d = PyipsecDaemon(self.topo.right, pyipsec_cert_toml(
            state, proposal=a.proposal, esp=a.esp, cookie_threshold=10 * a.inflight),
            state_dir=state)
        self.cleanups.append(d.stop)
        d.start()
        assert d.proc is not None
        return d.proc.pid, lambda: bench_load.pyipsec_sa_count(d)

    def start_strongswan(self) -> tuple[int, Callable[[], int]]:
        if self.mode == "psk":
            return super().start_strongswan()
        a = self.args
        c = Charon(self.topo.right, name="right", debug="ike 0", loglevel=0,
                   state_dir=self.tmp / f"strongswan-{self.mode}",
                   extra_conf=bench_load.strongswan_load_settings(10 * a.inflight))
        self.cleanups.append(c.stop)
        c.start(None)
        c.load_dir(strongswan_cert_conf(proposal=a.proposal, esp=a.esp), self._pki())
        assert c.pid is not None
        return c.pid, lambda: bench_load.charon_sa_count(c)

    def generator(self) -> subprocess.Popen[str]:
        if self.mode == "psk":
            return super().generator()
        pki_dir = self._pki()
        return self.spawn_generator(CERT_LOADGEN, (
            "--ca-cert", str(pki_dir / "x509ca" / "ca.pem"),
            "--ca-key", str(pki_dir / "gen" / "ca.key"),
            "--key", str(pki_dir / "gen" / "client.key")))

    def run(self) -> None:
        for mode in self.args.modes:
            self.mode = mode
            self.results = {}
            for responder in RESPONDERS:
                if responder not in self.args.only:
                    continue
                try:
                    res = self.run_block(responder)
                finally:
                    run_cleanups(self.cleanups)
                self.results[responder] = res
                print(f"{mode:10s} {LABELS[responder]:10s}: {res['established']}/"
                      f"{res['tunnels']} in {res['wall']:.1f} s, responder CPU "
                      f"{res['responder_cpu_s']:.2f} s "
                      f"({handshakes_per_cpu(res):.0f} handshakes/CPU-s), "
                      f"{res['failed']} failed, {res['retransmits']} retransmits",
                      flush=True)
                time.sleep(0.5)
            self.by_mode[mode] = dict(self.results)

    def report(self) -> str:
        return cert_report(self.args, self.by_mode)


def cert_report(args: argparse.Namespace, by_mode: dict[str, dict[str, dict[str, Any]]]
                ) -> str:
    """The table: per mode and responder handshakes per CPU-second and CPU per
    handshake, pyipsec / strongSwan, and certificate / PSK cost per responder."""
    lines = [
        header("certificate handshake"),
        f"{args.tunnels} IKE SAs + 1 Child SA each per block, {args.inflight} in flight, "
        f"IKE {args.proposal}, ESP {args.esp}, no NAT; responder CPU = utime + stime",
        "",
        f"| {'mode':11s} | {'pyipsec hs/CPU-s':>17s} | {'strongSwan hs/CPU-s':>19s} "
        f"| {'py/ss':>6s} | {'py ms/hs':>8s} | {'ss ms/hs':>8s} | {'py vs psk':>9s} "
        f"| {'ss vs psk':>9s} |",
        f"|{'-' * 13}|{'-' * 19}|{'-' * 21}|{'-' * 8}|{'-' * 10}|{'-' * 10}|{'-' * 11}"
        f"|{'-' * 11}|",
    ]
    nan = math.nan

    def rate(mode: str, who: str) -> float:
        r = by_mode.get(mode, {}).get(who)
        return nan if r is None else handshakes_per_cpu(r)

    for mode, _ in by_mode.items():
        py, ss = rate(mode, "pyipsec"), rate(mode, "strongswan")
        py_psk, ss_psk = rate("psk", "pyipsec"), rate("psk", "strongswan")
        lines.append(
            f"| {mode:11s} | {_fmt(py, '.0f'):>17s} | {_fmt(ss, '.0f'):>19s} "
            f"| {_fmt(ratio(py, ss), '.2f'):>6s} | {_fmt(1e3 / py, '.2f'):>8s} "
            f"| {_fmt(1e3 / ss, '.2f'):>8s} | {_fmt(py_psk / py, '.2f'):>9s} "
            f"| {_fmt(ss_psk / ss, '.2f'):>9s} |")
    lines += [
        "",
        "hs/CPU-s: handshakes per responder CPU-second (higher is better); py/ss: pyipsec's",
        "/ strongSwan's handshakes per CPU-second (above 1: pyipsec needs less CPU); ms/hs:",
        "responder CPU per handshake; vs psk: CPU per handshake of the mode / of the PSK",
        "handshake (same responder, same run).",
    ]
    for mode, results in by_mode.items():
        for who, r in results.items():
            if r.get("failed") or r.get("established") != r.get("tunnels"):
                lines.append(f"{mode} {LABELS[who]}: {r['established']}/{r['tunnels']}, "
                             f"failures {r.get('failures')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = arg_parser(__doc__)
    ap.add_argument("--tunnels", type=int, default=300, help="IKE SAs per block (300)")
    ap.add_argument("--inflight", type=int, default=50, help="handshakes in flight (50)")
    ap.add_argument("--rate", type=float, default=0.0,
                    help="handshakes started per second (0 = only --inflight limits)")
    ap.add_argument("--proposal", default=IKE_PROPOSAL, help=f"IKE proposal ({IKE_PROPOSAL})")
    ap.add_argument("--esp", default="aes256gcm16", help="ESP proposal (aes256gcm16)")
    ap.add_argument("--timeout", type=float, default=0.0,
                    help="generator gives up after this many seconds (0 = 30 + tunnels/20)")
    ap.add_argument("--modes", type=lambda s: [x.strip() for x in s.split(",")],
                    default=list(MODES),
                    help=f"psk and key types of {','.join(KEY_KINDS)} ({','.join(MODES)})")
    ap.add_argument("--only", type=lambda s: [x.strip() for x in s.split(",")],
                    default=list(RESPONDERS), help=f"subset of {','.join(RESPONDERS)}")
    args = ap.parse_args(argv)
    bad = [m for m in args.modes if m != "psk" and m not in KEY_KINDS]
    if bad:
        ap.error(f"unknown mode(s) {', '.join(bad)}")
    if "psk" not in args.modes:
        args.modes.insert(0, "psk")  # the baseline of the ratios
    reason = missing_requirements(strongswan="strongswan" in args.only)
    if reason:
        print(f"bench_cert_load: {reason}", file=sys.stderr)
        return 2
    bench = CertBench(args)
    run_bench(bench)
    print()
    print(bench.report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
