#!/usr/bin/env python3
"""Capture real strongSwan IKEv2 exchanges, with their keys, as JSON codec fixtures.

usage (root, strongSwan 5.9.x with kernel-libipsec)::

    python3 tests/interop/capture_fixtures.py OUTDIR [--run NAME ...] [--keep-logs]

For every run (see ``RUNS``) this builds a private three-namespace topology
(:mod:`tests.interop.topology`: left behind an nftables masquerading NAT, right on the
"internet"), starts two charons (:mod:`tests.interop.strongswan`) with ``ike 4`` logging
(level 4 dumps the DH secret, SKEYSEED and SK_d/ai/ar/ei/er/pi/pr as hex), and sniffs
right's ``eth0`` with an ``AF_PACKET`` socket (this same script re-executed inside the
namespace with ``--sniff``).  Left initiates, pings cross the tunnel, Child SAs (and in
one run the IKE SA) are rekeyed by either side with PFS (KE in CREATE_CHILD_SA), the
responder's DPD sends an empty INFORMATIONAL, and the SAs are deleted.

The UDP payloads on ports 500/4500 become IKE messages (the 4-byte non-ESP marker is
stripped on 4500; ESP and NAT keepalives are skipped).  The key sets are read from
right's log and matched to their IKE SA SPIs by verifying the ICV of an encrypted message
of that SPI pair (with ``cryptography`` directly, independent of pyipsec's code).  Each
encrypted message is also decrypted here, and its inner payload chain (hex, without
padding) and payload types are stored as the expected result for pyipsec's codec, next
to strongSwan's own payload list from its ``generating``/``parsed`` log lines.

Only the public test PSK is used; the key material is of throw-away test SAs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from tests.interop.strongswan import CHARON_BIN, TEST_PSK, Charon, ConnSpec
from tests.interop.topology import LEFT_INNER, RIGHT_INNER, RIGHT_OUTER, Topology

EXCHANGES = {34: "IKE_SA_INIT", 35: "IKE_AUTH", 36: "CREATE_CHILD_SA", 37: "INFORMATIONAL"}
SK, SKF = 46, 53
# strongSwan's payload abbreviations (log) -> IKEv2 payload type numbers
SS_PAYLOAD_TYPES = {
    "SA": 33, "KE": 34, "IDi": 35, "IDr": 36, "CERT": 37, "CERTREQ": 38, "AUTH": 39,
    "No": 40, "N": 41, "D": 42, "V": 43, "TSi": 44, "TSr": 45, "EF": 53,
    "CPRQ": 47, "CPRP": 47, "CPS": 47, "CPA": 47, "EAP": 48,
}
DEBUG = "ike 4, enc 1, net 1, cfg 1, chd 2, knl 1"


@dataclass(frozen=True)
class Suite:
    """IANA numbers of an IKE SA's transforms (RFC 7296 §3.3.2)."""

    encr_id: int
    key_bits: int
    integ_id: int | None
    prf_id: int
    dh_id: int

    @property
    def aead(self) -> bool:
        """True for combined-mode ciphers (no separate integrity)."""
        return self.integ_id is None


@dataclass
class Run:
    """One capture scenario: proposals and the steps to drive through."""

    name: str
    description: str
    ike: str
    esp: str
    suite: Suite
    steps: list[str] = field(default_factory=list)


RUNS = [
    Run("gcm-x25519",
        "AES-GCM-16-256 / PRF-HMAC-SHA2-256 / X25519 IKE, ESP AES-GCM-16-256 with X25519 PFS; "
        "Child rekey by each side, IKE rekey, DPD, delete",
        "aes256gcm16-prfsha256-x25519", "aes256gcm16-x25519",
        Suite(20, 256, None, 5, 31),
        ["ping", "rekey-child-left", "ping", "rekey-ike-left", "ping", "rekey-child-right",
         "ping", "dpd", "terminate-ike-left"]),
    Run("cbc-modp2048",
        "AES-CBC-256 / HMAC-SHA2-256-128 / PRF-HMAC-SHA2-256 / MODP-2048 IKE, ESP AES-CBC-256 "
        "/ HMAC-SHA2-256-128 with MODP-2048 PFS; Child rekey, Child delete by right, IKE delete",
        "aes256-sha256-modp2048", "aes256-sha256-modp2048",
        Suite(12, 256, 12, 5, 14),
        ["ping", "rekey-child-left", "ping", "terminate-child-right", "terminate-ike-left"]),
    Run("chacha-ecp256",
        "ChaCha20-Poly1305 / PRF-HMAC-SHA2-256 / ECP-256 IKE, ESP ChaCha20-Poly1305 with ECP-256 "
        "PFS; Child rekey, IKE delete",
        "chacha20poly1305-prfsha256-ecp256", "chacha20poly1305-ecp256",
        Suite(28, 256, None, 5, 19),
        ["ping", "rekey-child-left", "ping", "terminate-ike-left"]),
]


# -- sniffer (runs inside the namespace) --------------------------------------------------


def sniff(iface: str, outfile: str) -> None:
    """Write every IPv4 UDP 500/4500 frame seen on ``iface`` as a JSON line until SIGTERM."""
    eth_p_all = 0x0003
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(eth_p_all))
    sock.bind((iface, eth_p_all))
    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    with open(outfile, "w") as out:
        print("ready", flush=True)
        while not stop:
            ready, _, _ = select.select([sock], [], [], 0.2)
            if not ready:
                continue
            frame = sock.recv(65535)
            if len(frame) < 14 + 20 + 8 or frame[12:14] != b"\x08\x00":
                continue
            ip = frame[14:]
            ihl = (ip[0] & 0x0F) * 4
            if ip[9] != 17:
                continue
            sport, dport = struct.unpack_from("!HH", ip, ihl)
            if not {sport, dport} & {500, 4500}:
                continue
            out.write(json.dumps({"t": time.time(), "ip": ip.hex()}) + "\n")
            out.flush()


def parse_frames(path: Path) -> list[dict[str, Any]]:
    """IKE messages from the sniffer's output (IP/UDP stripped, non-ESP marker removed)."""
    msgs: list[dict[str, Any]] = []
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        ip = bytes.fromhex(rec["ip"])
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack_from("!H", ip, 2)[0]
        if struct.unpack_from("!H", ip, 6)[0] & 0x3FFF:
            raise SystemExit("fragmented IP datagram in the capture: not supported")
        src, dst = socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
        sport, dport, ulen = struct.unpack_from("!HHH", ip, ihl)
        data = ip[ihl + 8:min(total, ihl + ulen)]
        marker = False
        if 4500 in (sport, dport):
            if len(data) == 1 and data == b"\xff":
                continue  # NAT keepalive
            if data[:4] != b"\x00\x00\x00\x00":
                continue  # ESP in UDP
            data, marker = data[4:], True
        if len(data) < 28:
            continue
        msgs.append({"t": rec["t"], "src": f"{src}:{sport}", "dst": f"{dst}:{dport}",
                     "sender": "right" if src == RIGHT_OUTER else "left",
                     "non_esp_marker": marker, "data": data})
    return msgs


# -- log parsing ----------------------------------------------------------------------------

_DUMP_HEAD = re.compile(r"^\S+ \S+ (\d+)\[(\w+)\] (?:<[^>]*> )?(.*?) => (\d+) bytes @ 0x[0-9a-f]+$")
_DUMP_LINE = re.compile(r"^\S+ \S+ (\d+)\[(\w+)\] (?:<[^>]*> )?\s*\d+: ((?:[0-9A-F]{2} ?)+)")
_PAYLOADS = re.compile(
    r"^\S+ \S+ \d+\[ENC\] <[^>]*> (generating|parsed) (\w+) (request|response) (\d+) \[(.*)\]$")
KEY_NAMES = {"shared Diffie Hellman secret": "shared_secret", "SKEYSEED": "skeyseed",
             "Sk_d secret": "sk_d", "Sk_ai secret": "sk_ai", "Sk_ar secret": "sk_ar",
             "Sk_ei secret": "sk_ei", "Sk_er secret": "sk_er", "Sk_pi secret": "sk_pi",
             "Sk_pr secret": "sk_pr"}


def parse_dumps(log: str) -> list[tuple[str, bytes]]:
    """All ``NAME => N bytes`` hex dumps of a charon log, in order, as (name, bytes)."""
    current: dict[str, tuple[str, int, bytearray]] = {}
    done: list[tuple[int, str, bytes]] = []
    order = 0
    for line in log.splitlines():
        m = _DUMP_HEAD.match(line)
        if m:
            thread, _, name, _size = m.groups()
            if thread in current:
                prev, idx, buf = current.pop(thread)
                done.append((idx, prev, bytes(buf)))
            current[thread] = (name, order, bytearray())
            order += 1
            continue
        m = _DUMP_LINE.match(line)
        if m and m.group(1) in current:
            name, idx, buf = current[m.group(1)]
            buf += bytes.fromhex(m.group(3).replace(" ", ""))
            continue
        # any other line of that thread ends its dump
        t = line.split(" ", 3)[2].split("[")[0] if line.count(" ") >= 3 else None
        if t in current:
            name, idx, buf = current.pop(t)
            done.append((idx, name, bytes(buf)))
    for name, idx, buf in current.values():
        done.append((idx, name, bytes(buf)))
    return [(name, data) for _, name, data in sorted(done, key=lambda d: d[0])]


def key_sets(log: str) -> list[dict[str, bytes]]:
    """The IKE key sets (shared secret .. Sk_pr) in the order charon derived them."""
    sets: list[dict[str, bytes]] = []
    cur: dict[str, bytes] = {}
    for name, data in parse_dumps(log):
        key = KEY_NAMES.get(name)
        if key is None:
            continue
        if key == "shared_secret" and cur:
            cur = {}
        cur[key] = data
        if key == "sk_pr":
            if cur not in sets:
                sets.append(cur)
            cur = {}
    return sets


def payload_lists(log: str) -> list[dict[str, Any]]:
    """strongSwan's ``generating``/``parsed`` lines (what it sent and received), in order."""
    out = []
    for line in log.splitlines():
        m = _PAYLOADS.match(line)
        if m:
            verb, exchange, kind, mid, payloads = m.groups()
            out.append({"sent": verb == "generating", "exchange": exchange,
                        "response": kind == "response", "message_id": int(mid),
                        "payloads": payloads.split()})
    return out


# -- independent decryption (for SPI matching and expected results) ----------------------


def header(data: bytes) -> dict[str, Any]:
    """The IKE header fields of a message."""
    spi_i, spi_r, np, ver, exch, flags, mid, length = struct.unpack_from("!8s8sBBBBII", data)
    return {"spi_i": spi_i.hex(), "spi_r": spi_r.hex(), "next_payload": np, "version": ver,
            "exchange": exch, "flags": flags, "message_id": mid, "length": length}


def walk_chain(first: int, data: bytes, offset: int) -> list[tuple[int, int, int]]:
    """(type, offset, length) of each payload of a chain starting at ``offset``."""
    out = []
    np = first
    while np != 0:
        if offset + 4 > len(data):
            raise ValueError("truncated payload chain")
        nxt, _, length = struct.unpack_from("!BBH", data, offset)
        if length < 4 or offset + length > len(data):
            raise ValueError("bad payload length")
        out.append((np, offset, length))
        if np in (SK, SKF):
            break
        np, offset = nxt, offset + length
    return out


def decrypt(data: bytes, suite: Suite, keys: dict[str, bytes]) -> tuple[int, bytes] | None:
    """Decrypt the SK payload with the sender's keys: (first inner type, inner chain) or None."""
    h = header(data)
    chain = walk_chain(h["next_payload"], data, 28)
    if not chain or chain[-1][0] != SK:
        return None
    _, off, length = chain[-1]
    first_inner = data[off]
    body = data[off + 4:off + length]
    initiator = bool(h["flags"] & 0x08)
    sk_e = keys["sk_ei" if initiator else "sk_er"]
    try:
        if suite.aead:
            iv, ct = body[:8], body[8:]
            aad = data[:off + 4]
            if suite.encr_id == 20:
                plain = AESGCM(sk_e[:-4]).decrypt(sk_e[-4:] + iv, ct, aad)
            elif suite.encr_id == 28:
                plain = ChaCha20Poly1305(sk_e[:-4]).decrypt(sk_e[-4:] + iv, ct, aad)
            else:
                raise ValueError(f"unsupported AEAD {suite.encr_id}")
        else:
            if suite.integ_id != 12:
                raise ValueError(f"unsupported integrity {suite.integ_id}")
            sk_a = keys["sk_ai" if initiator else "sk_ar"]
            mac = hmac.HMAC(sk_a, hashes.SHA256())
            mac.update(data[:-16])
            if mac.finalize()[:16] != data[-16:]:
                return None
            iv, ct = body[:16], body[16:-16]
            dec = Cipher(algorithms.AES(sk_e), modes.CBC(iv)).decryptor()
            plain = dec.update(ct) + dec.finalize()
    except Exception:  # wrong key set: InvalidTag and friends
        return None
    pad = plain[-1]
    return first_inner, plain[:-(pad + 1)]


# -- driving a run --------------------------------------------------------------------------


def wait_more(charon: Charon, pattern: str, before: str, timeout: float = 10.0) -> None:
    """Wait until ``pattern`` occurs once more in the log than it did in ``before``."""
    rx = re.compile(pattern, re.M)
    count = len(rx.findall(before)) + 1
    charon.wait_for(lambda c: len(rx.findall(c.log())) >= count, timeout)


def drive(run: Run, topo: Topology, left: Charon, right: Charon) -> None:
    """Initiate and perform the run's steps."""
    left.initiate("conn", "net")
    time.sleep(0.5)  # MOBIKE address updates (INFORMATIONAL) right after IKE_AUTH
    for step in run.steps:
        before = right.log()
        if step == "ping":
            for ns, dst in ((topo.left, RIGHT_INNER), (topo.right, LEFT_INNER)):
                sent, got = topo.ping(ns, dst, count=2, interval=0.2)
                if got != sent:
                    raise SystemExit(f"{run.name}: ping {dst} failed ({got}/{sent})")
        elif step == "rekey-child-left":
            left.rekey(child="net")
            wait_more(right, r"generating INFORMATIONAL response \d+ \[ D \]", before)
        elif step == "rekey-child-right":
            right.rekey(child="net")
            wait_more(right, r"parsed INFORMATIONAL response \d+ \[ D \]", before)
        elif step == "rekey-ike-left":
            left.rekey(ike="conn")
            wait_more(right, r"IKE_SA \S+ rekeyed between", before)
            wait_more(right, r"generating INFORMATIONAL response \d+ \[ \]", before)
        elif step == "dpd":
            wait_more(right, r"generating INFORMATIONAL request \d+ \[ \]", before, 8.0)
        elif step == "terminate-child-right":
            right.terminate(child="net")
        elif step == "terminate-ike-left":
            left.terminate(ike="conn")
        else:
            raise ValueError(step)
        time.sleep(0.3)
    time.sleep(0.5)


def capture_run(run: Run, outdir: Path, keep_logs: bool) -> Path:
    """Run one scenario in a fresh topology and write ``OUTDIR/<name>.json``."""
    work = Path(tempfile.mkdtemp(prefix=f"pyi-cap-{run.name}-"))
    try:
        return _capture(run, outdir, keep_logs, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _capture(run: Run, outdir: Path, keep_logs: bool, work: Path) -> Path:
    with Topology(mode="nat") as topo:
        right = Charon(topo.right, "right", debug=DEBUG, state_dir=work / "right")
        left = Charon(topo.left, "left", debug=DEBUG, state_dir=work / "left")
        frames = work / "frames.jsonl"
        sniffer = topo.popen(topo.right, [sys.executable, str(Path(__file__).resolve()),
                                          "--sniff", "eth0", str(frames)],
                             stdout=subprocess.PIPE)
        try:
            assert sniffer.stdout is not None
            if sniffer.stdout.readline().strip() != b"ready":
                raise SystemExit("sniffer did not start")
            right.start(ConnSpec(name="conn", side="right", local_addrs=RIGHT_OUTER,
                                 proposals=run.ike, esp_proposals=run.esp,
                                 dpd_delay=2 if "dpd" in run.steps else 0).render())
            left.start(ConnSpec(name="conn", side="left", remote_addrs=RIGHT_OUTER,
                                proposals=run.ike, esp_proposals=run.esp).render())
            drive(run, topo, left, right)
        finally:
            left.stop()
            right.stop()
            sniffer.terminate()
            sniffer.wait(timeout=5)
        log = right.log()
        if keep_logs:
            for c in (left, right):
                (outdir / f"{run.name}.{c.name}.log").write_text(c.log())
    fixture = build_fixture(run, parse_frames(frames), log)
    path = outdir / f"{run.name}.json"
    path.write_text(json.dumps(fixture, indent=1) + "\n")
    return path


def build_fixture(run: Run, msgs: list[dict[str, Any]], log: str) -> dict[str, Any]:
    """Match keys to SPI pairs, decrypt, attach strongSwan's payload lists."""
    sets = key_sets(log)
    ike_sas: list[dict[str, Any]] = []
    spi_of_set: dict[int, tuple[str, str]] = {}
    for m in msgs:
        h = header(m["data"])
        m["header"] = h
        if h["next_payload"] != SK:
            continue
        pair = (h["spi_i"], h["spi_r"])
        if pair in spi_of_set.values():
            continue
        for i, ks in enumerate(sets):
            if i not in spi_of_set and decrypt(m["data"], run.suite, ks) is not None:
                spi_of_set[i] = pair
                break
        else:
            raise SystemExit(f"{run.name}: no logged key set decrypts SPIs {pair}")
    sa_index: dict[tuple[str, str], int] = {}
    for i, ks in enumerate(sets):
        if i not in spi_of_set:
            continue
        spi_i, spi_r = spi_of_set[i]
        sa_index[(spi_i, spi_r)] = len(ike_sas)
        entry: dict[str, Any] = {
            "spi_i": spi_i, "spi_r": spi_r,
            "encr_id": run.suite.encr_id, "encr_key_bits": run.suite.key_bits,
            "integ_id": run.suite.integ_id, "prf_id": run.suite.prf_id,
            "dh_id": run.suite.dh_id,
            "rekey_of": None if not ike_sas else len(ike_sas) - 1,
        }
        entry.update({k: v.hex() for k, v in ks.items()})
        ike_sas.append(entry)
    ss_lists = payload_lists(log)
    used = [False] * len(ss_lists)
    out_msgs = []
    for idx, m in enumerate(msgs):
        h = m["header"]
        rec: dict[str, Any] = {
            "index": idx,
            "sender": m["sender"], "src": m["src"], "dst": m["dst"],
            "non_esp_marker": m["non_esp_marker"],
            "exchange": h["exchange"], "exchange_name": EXCHANGES.get(h["exchange"], "?"),
            "message_id": h["message_id"], "flags": h["flags"],
            "initiator": bool(h["flags"] & 0x08), "response": bool(h["flags"] & 0x20),
            "spi_i": h["spi_i"], "spi_r": h["spi_r"],
            "hex": m["data"].hex(),
        }
        if h["next_payload"] == SK:
            sa = sa_index[(h["spi_i"], h["spi_r"])]
            keys = {k: bytes.fromhex(v) for k, v in ike_sas[sa].items()
                    if k.startswith("sk_")}
            dec = decrypt(m["data"], run.suite, keys)
            if dec is None:
                raise SystemExit(f"{run.name}: message {idx} does not decrypt")
            first, inner = dec
            rec["ike_sa"] = sa
            rec["inner_first_payload"] = first
            rec["inner_hex"] = inner.hex()
            rec["inner_payload_types"] = [t for t, _, _ in walk_chain(first, inner, 0)]
        else:
            rec["ike_sa"] = None
            rec["payload_types"] = [t for t, _, _ in walk_chain(h["next_payload"],
                                                                 m["data"], 28)]
        # strongSwan's view (right's log): it sent what right sent, parsed what left sent
        for j, ss in enumerate(ss_lists):
            if (not used[j] and ss["sent"] == (m["sender"] == "right")
                    and ss["exchange"] == rec["exchange_name"]
                    and ss["response"] == rec["response"]
                    and ss["message_id"] == rec["message_id"]):
                used[j] = True
                rec["strongswan_payloads"] = ss["payloads"]
                break
        out_msgs.append(rec)
    return {
        "description": f"strongSwan 5.9.8 <-> strongSwan through a NAT: {run.description}",
        "generator": "python3 tests/interop/capture_fixtures.py OUTDIR "
                     f"--run {run.name} (see its docstring)",
        "strongswan_version": strongswan_version(),
        "psk": TEST_PSK,
        "initiator_id": "left.example.net", "responder_id": "right.example.net",
        "ike_proposal": run.ike, "esp_proposal": run.esp,
        "capture_point": "right eth0 (192.0.2.2); left is NATed to 192.0.2.1",
        "ike_sas": ike_sas,
        "messages": out_msgs,
    }


def strongswan_version() -> str:
    """charon's version string (``charon --version``)."""
    proc = subprocess.run([CHARON_BIN, "--version"], capture_output=True, text=True,
                          check=False, timeout=10)
    m = re.search(r"strongSwan (\d[\w.]*)", proc.stdout + proc.stderr)
    return m.group(1) if m else "unknown"


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir", nargs="?")
    ap.add_argument("--run", action="append", choices=[r.name for r in RUNS])
    ap.add_argument("--keep-logs", action="store_true", help="also write the charon logs")
    ap.add_argument("--sniff", nargs=2, metavar=("IFACE", "FILE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.sniff:
        sniff(*args.sniff)
        return 0
    if not args.outdir:
        ap.error("OUTDIR is required")
    if os.geteuid() != 0:
        ap.error("must run as root (network namespaces)")
    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    for run in RUNS:
        if args.run and run.name not in args.run:
            continue
        path = capture_run(run, outdir, args.keep_logs)
        data = json.loads(path.read_text())
        print(f"{path}: {len(data['messages'])} messages, {len(data['ike_sas'])} IKE SAs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
