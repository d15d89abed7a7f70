"""IKEv2 load generator with certificate authentication (``bench/loadgen.py`` + X.509).

Usage (as root, inside the initiator's network namespace; ``bench/bench_cert_load.py``
runs it for you)::

    ip netns exec NS python3 bench/cert_loadgen.py --local 198.51.100.2 \\
        --remote 192.0.2.2 --tunnels 300 --ca-cert ca.pem --ca-key ca.key --key client.key

The connections of :func:`loadgen.build_connections` (one identity per tunnel,
``load-{n}@example.net``), each authenticating with its own end-entity certificate
(RFC 7296 §2.15: AUTH signed with ``--key``; the certificate, issued here by the CA of
``--ca-cert`` / ``--ca-key`` before the run, names the tunnel's identity in its
subjectAltName) and verifying the responder's certificate against that CA (the CA
names itself in our CERTREQ, §3.7).  Every tunnel has its own certificate (so a
responder cannot reuse a cached verification of the previous tunnel's), all share one
key (the key does not change what the responder computes).  The signature scheme
follows the key (ECDSA, RSA PKCS#1 v1.5 with SHA-2 or ``--rsa-pss``, Ed25519; RFC 7427
method 14 when the responder announces SIGNATURE_HASH_ALGORITHMS).  Everything else
-- pacing, the JSON result, ``--mark``, ``--hold`` -- is ``loadgen``'s.
"""

from __future__ import annotations

import datetime as dt
import sys
from dataclasses import replace
from pathlib import Path

_HERE = Path(__file__).resolve().parent
for _p in (_HERE, _HERE.parent / "src"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import loadgen  # noqa: E402
from pyipsec import pki  # noqa: E402
from pyipsec.auth.keys import load_certificate, load_private_key  # noqa: E402
from pyipsec.config.model import (  # noqa: E402
    ConnectionConfig,
    LocalCredentials,
    RemoteTrust,
    RetransmitConfig,
)


def wall_clock(_now: float) -> dt.datetime:
    """Certificate validity is checked at the real time (the generator runs live)."""
    return dt.datetime.now(dt.UTC)


def with_certificates(conns: list[ConnectionConfig], *, ca_cert: bytes, ca_key: bytes,
                      key: bytes, rsa_pss: bool = False) -> list[ConnectionConfig]:
    """``conns`` authenticating with a certificate per tunnel (for its ``local_id``)
    issued by the CA now, and requiring the responder's certificate of that CA."""
    ca = load_certificate(ca_cert)
    signer = load_private_key(ca_key)
    own = load_private_key(key)
    trust = RemoteTrust(anchors=(ca,), clock=wall_clock)
    now = dt.datetime.now(dt.UTC)
    out = []
    for c in conns:
        cert = pki.issue_host(ca, signer, own.public_key(), cn=c.local_id, now=now,
                              pss=rsa_pss)
        out.append(replace(c, psk=b"", local_auth="pubkey", remote_auth="pubkey",
                           local_credentials=LocalCredentials(own, cert, (), ca),
                           remote_trust=trust, rsa_pss=rsa_pss))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = loadgen.arg_parser()
    ap.description = __doc__.split("\n\n")[0]
    ap.add_argument("--ca-cert", required=True, help="the CA certificate (PEM/DER)")
    ap.add_argument("--ca-key", required=True, help="the CA's private key (PEM/DER)")
    ap.add_argument("--key", required=True, help="our private key, shared by all tunnels")
    ap.add_argument("--rsa-pss", action="store_true", help="sign with RSASSA-PSS (RSA keys)")
    args = ap.parse_args(argv)
    conns = loadgen.build_connections(
        args.tunnels, local=args.local, remote=args.remote, psk=b"unused",
        proposal=args.proposal, esp=args.esp, id_format=args.id_format,
        remote_id=args.remote_id, inner=args.inner, base_port=args.base_port,
        remote_ts=args.remote_ts,
        retransmit=RetransmitConfig(tries=3, timeout=args.retransmit_timeout, base=1.5))
    conns = with_certificates(conns, ca_cert=Path(args.ca_cert).read_bytes(),
                              ca_key=Path(args.ca_key).read_bytes(),
                              key=Path(args.key).read_bytes(), rsa_pss=args.rsa_pss)
    return loadgen.run_and_hold(loadgen.generator_for(conns, args), args)


if __name__ == "__main__":
    sys.exit(main())
