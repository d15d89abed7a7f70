"""Responder CPU of one certificate handshake in memory (the IKE core alone), vs PSK.

Usage::

    PYTHONPATH=src python3 bench/bench_cert.py                        # 200 handshakes/mode
    PYTHONPATH=src python3 bench/bench_cert.py --count 500 --modes psk,ecdsa-p256,ed25519

No sockets, no daemon, no strongSwan (``bench/bench_cert_load.py`` compares with
strongSwan on the wire): one responder ``IkeManager`` with one ``%any`` connection and,
for every handshake, a throw-away initiator ``IkeManager`` whose connection has its own
identity and, in the certificate modes, its own end-entity certificate of the mode's CA
(RFC 7296 §2.15, RFC 7427: both sides sign, CERTREQ on, the responder validates the
initiator's chain and sends its certificate).  IKE_SA_INIT + IKE_AUTH with the first
Child SA (aes256gcm16-prfsha256-x25519, ESP aes256gcm16), real crypto and randomness.
Only the responder's calls are timed (``time.process_time`` around
``receive_datagram``, ``datagrams_to_send`` and the events): the report gives the
median responder CPU per handshake, handshakes per responder CPU-second and the cost
relative to the PSK handshake measured in the same run, and, for the certificate modes,
what the public-key operations alone cost (``sign_auth`` of the responder's AUTH,
``verify_auth`` of the initiator's, ``validate_chain`` of its certificate: medians of
direct calls).  The machine may be shared: report ratios from one run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

from _common import peer_ip, per_call  # first: it puts src/ on sys.path

# isort: split
from pyipsec import pki
from pyipsec.auth.signatures import (
    DEFAULT_HASHES,
    PrivateKey,
    choose_scheme,
    sign_auth,
    verify_auth,
)
from pyipsec.auth.trust import validate_chain
from pyipsec.config.model import (
    ChildConfig,
    ConnectionConfig,
    DpdConfig,
    LocalCredentials,
    RemoteTrust,
    TrafficSelectorSpec,
)
from pyipsec.ikev2.events import ChildSaInstalled
from pyipsec.ikev2.manager import IkeManager

IKE = "aes256gcm16-prfsha256-x25519"
ESP = "aes256gcm16"
PSK = b"bench cert pre-shared key 0123456789"
RESP_IP, RESP_ID = "192.0.2.2", "gw.example.net"
MODES = ("psk", "ecdsa-p256", "rsa3072")
KEY_KINDS = ("ecdsa-p256", "ecdsa-p384", "rsa2048", "rsa3072", "ed25519")
NOW = dt.datetime.now(dt.UTC)
process_time = time.process_time


def wall(_now: float) -> dt.datetime:
    return NOW


def _child(local: str, remote: str) -> ChildConfig:
    return ChildConfig("net", (TrafficSelectorSpec.from_network(local),),
                       (TrafficSelectorSpec.from_network(remote),), esp_proposals=(ESP,))


@dataclass
class Pki:
    """One CA of a key type, the responder's credentials and the initiators' key."""

    kind: str
    ca: Any
    ca_key: PrivateKey
    responder: LocalCredentials
    client_key: PrivateKey

    @classmethod
    def make(cls, kind: str) -> Pki:
        ca_key = pki.generate_key(kind)
        ca = pki.make_ca(ca_key, f"CN=bench {kind} CA", now=NOW - dt.timedelta(days=1))
        key = pki.generate_key(kind)
        cert = pki.issue_host(ca, ca_key, key.public_key(), cn=RESP_ID, now=NOW)
        return cls(kind, ca, ca_key, LocalCredentials(key, cert, (), ca),
                   pki.generate_key(kind))

    def client(self, ident: str) -> LocalCredentials:
        cert = pki.issue_host(self.ca, self.ca_key, self.client_key.public_key(), cn=ident,
                              now=NOW)
        return LocalCredentials(self.client_key, cert, (), self.ca)

    def trust(self) -> RemoteTrust:
        return RemoteTrust(anchors=(self.ca,), clock=wall)


def _auth_kw(creds: LocalCredentials | None, trust: RemoteTrust | None) -> dict[str, Any]:
    if creds is None or trust is None:
        return {"psk": PSK}
    return {"psk": b"", "local_auth": "pubkey", "remote_auth": "pubkey",
            "local_credentials": creds, "remote_trust": trust}


def responder(p: Pki | None) -> IkeManager:
    conn = ConnectionConfig(
        name="gw", local_addrs=(RESP_IP,), local_id=RESP_ID, remote_id="%any",
        ike_proposals=(IKE,), dpd=DpdConfig(enabled=False),
        children=(_child("10.2.0.0/16", "10.1.0.0/16"),),
        **_auth_kw(p.responder if p else None, p.trust() if p else None))
    return IkeManager([conn], wall_clock=wall)


def initiator(i: int, p: Pki | None) -> IkeManager:
    ident = f"peer{i}.example.net"
    conn = ConnectionConfig(
        name="t", local_addrs=(peer_ip(i),), remote_addrs=(RESP_IP,), local_id=ident,
        remote_id=RESP_ID, ike_proposals=(IKE,), dpd=DpdConfig(enabled=False),
        children=(_child("10.1.0.0/16", "10.2.0.0/16"),), initial_contact=False,
        **_auth_kw(p.client(ident) if p else None, p.trust() if p else None))
    return IkeManager([conn], wall_clock=wall)


def handshake(resp: IkeManager, init: IkeManager, now: float) -> float:
    """One handshake; the responder's CPU seconds.  Raises if it does not come up."""
    init.initiate("t", None, now)
    cpu = 0.0
    up = False
    pending = init.datagrams_to_send(now)
    while pending:
        t0 = process_time()
        for data, local, remote in pending:
            resp.receive_datagram(data, remote, local, now)
        out = resp.datagrams_to_send(now)
        while (ev := resp.next_event()) is not None:
            up = up or isinstance(ev, ChildSaInstalled)
        cpu += process_time() - t0
        for data, local, remote in out:
            init.receive_datagram(data, remote, local, now)
        while init.next_event() is not None:
            pass
        pending = init.datagrams_to_send(now)
    if not up:
        raise RuntimeError(f"handshake failed: {resp.error_status()}")
    return cpu


def run_mode(mode: str, count: int) -> dict[str, float]:
    """Median responder CPU per handshake over ``count`` handshakes (after 5 warm-up)."""
    p = None if mode == "psk" else Pki.make(mode)
    resp = responder(p)
    inits = [initiator(i, p) for i in range(count + 5)]  # certificates made beforehand
    cpus = [handshake(resp, init, 1000.0 + i) for i, init in enumerate(inits)][5:]
    med = statistics.median(cpus)
    out = {"median_s": med, "mean_s": statistics.fmean(cpus), "per_cpu_s": 1 / med}
    if p is not None:
        out |= crypto_costs(p)
    return out


def crypto_costs(p: Pki) -> dict[str, float]:
    """What the responder's public-key work costs by itself (median of direct calls)."""
    octets = bytes(range(256)) * 2
    key = p.responder.private_key
    method, scheme = choose_scheme(key, list(DEFAULT_HASHES))  # what pyipsec announces
    client = p.client("peer.example.net")
    cert = client.certificate
    assert cert is not None
    sig = sign_auth(client.private_key, octets, method, scheme)
    return {  # medians of 50 single calls
        "sign_s": per_call(lambda: sign_auth(key, octets, method, scheme), 1, 50),
        "verify_s": per_call(lambda: verify_auth(cert.public_key(), method, sig, octets), 1, 50),
        "chain_s": per_call(lambda: validate_chain(cert, anchors=(p.ca,), now=NOW), 1, 50),
    }


def report(results: dict[str, dict[str, float]], count: int) -> str:
    base = results.get("psk", {}).get("median_s")
    lines = [
        f"pyipsec in-memory certificate handshake benchmark, "
        f"{dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; Python {sys.version.split()[0]}",
        f"{count} handshakes per mode (median), IKE {IKE}, ESP {ESP}; responder CPU only",
        "",
        "| mode        | ms/handshake | handshakes/CPU-s | vs psk | sign ms | verify ms "
        "| chain ms |",
        "|-------------|--------------|------------------|--------|---------|-----------"
        "|----------|",
    ]
    for mode, r in results.items():
        ratio = f"{r['median_s'] / base:.2f}" if base else "-"

        def ms(k: str, r: dict[str, float] = r) -> str:
            return f"{r[k] * 1e3:.3f}" if k in r else "-"
        lines.append(f"| {mode:11s} | {r['median_s'] * 1e3:12.2f} | {r['per_cpu_s']:16.0f} "
                     f"| {ratio:>6s} | {ms('sign_s'):>7s} | {ms('verify_s'):>9s} "
                     f"| {ms('chain_s'):>8s} |")
    lines += ["", "vs psk: responder CPU per handshake of the mode / of the PSK handshake; "
              "sign/verify/chain:", "the public-key operations alone (responder's AUTH "
              "signature, the initiator's AUTH, its certificate chain)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=200, help="handshakes per mode (200)")
    ap.add_argument("--modes", type=lambda s: [x.strip() for x in s.split(",")],
                    default=list(MODES),
                    help=f"psk and key types of {','.join(KEY_KINDS)} ({','.join(MODES)})")
    args = ap.parse_args(argv)
    bad = [m for m in args.modes if m != "psk" and m not in KEY_KINDS]
    if bad:
        ap.error(f"unknown mode(s) {', '.join(bad)}")
    if "psk" not in args.modes:
        args.modes.insert(0, "psk")
    results = {}
    for mode in args.modes:
        results[mode] = run_mode(mode, args.count)
        print(f"{mode}: {results[mode]['median_s'] * 1e3:.2f} ms per handshake", flush=True)
    print()
    print(report(results, args.count))
    return 0


if __name__ == "__main__":
    sys.exit(main())
