"""ESP data-plane throughput, in memory, one core: ``python3 bench/bench_esp.py [--quick]``.

For 1400-byte payloads, per suite: packets/s and Gbit/s (inner payload bits) of
``EspOutbound.protect`` and ``EspInbound.unprotect`` (including the anti-replay window), each
beside the raw pyca ``cryptography`` rate for the same work measured in the same run
(one AEAD call per packet; for CBC a fresh ``Cipher(AES, CBC(iv))`` context plus a pre-keyed
HMAC ``.copy()``, i.e. the straightforward per-packet use of the library).  ``ratio`` is
ESP time / raw time: the cost of the ESP layer (headers, padding, sequence numbers, replay,
checks) on top of the crypto call.  Medians of several repeats of process CPU time (the
development machine is shared and noisy); total runtime ~10 s.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from pyipsec.esp import EspInbound, EspOutbound, ReplayWindow, suite_sizes
from pyipsec.ikev2.constants import EncrId, IntegId

PAYLOAD = 1400
POOL = 1000  # distinct packets for the decrypt runs (stay cache-resident)
SUITES: list[tuple[str, int, int, int | None]] = [
    ("AES-GCM-128", EncrId.AES_GCM_16, 128, None),
    ("AES-GCM-256", EncrId.AES_GCM_16, 256, None),
    ("ChaCha20-Poly1305", EncrId.CHACHA20_POLY1305, 256, None),
    ("AES-CBC-256+HMAC-SHA2-256", EncrId.AES_CBC, 256, IntegId.HMAC_SHA2_256_128),
]


def per_call(fn: Callable[[int], None], n: int, repeats: int) -> float:
    """Median seconds per call of ``fn`` run ``n`` times in a loop."""
    times = []
    for _ in range(repeats):
        t0 = time.process_time()  # CPU time: less sensitive to a busy shared machine
        fn(n)
        times.append((time.process_time() - t0) / n)
    return statistics.median(times)


def bench_suite(
    name: str, encr: int, bits: int, integ: int | None, n: int, repeats: int
) -> list[tuple[str, float, float]]:
    ek_len, ik_len = suite_sizes(encr, bits, integ)
    ek, ik = os.urandom(ek_len), os.urandom(ik_len)
    payload = os.urandom(PAYLOAD)
    spi = 0x1000

    out = EspOutbound(spi, encr, bits, integ, ek, ik)
    pool = [out.protect(payload, 4) for _ in range(POOL)]  # replayed with a fresh window
    out = EspOutbound(spi, encr, bits, integ, ek, ik)

    def esp_encrypt(k: int) -> None:
        protect = out.protect
        for _ in range(k):
            protect(payload, 4)

    inb = EspInbound(spi, encr, bits, integ, ek, ik, replay_window=128)
    verified = [0]

    def esp_decrypt(k: int) -> None:
        for i in range(0, k, POOL):
            inb.replay = ReplayWindow(128)  # once per POOL packets: negligible
            unprotect = inb.unprotect
            for pkt in pool[: min(POOL, k - i)]:
                unprotect(pkt)
            verified[0] += min(POOL, k - i)

    plaintext = payload + b"\x01\x02\x02\x04"  # what the ESP layer feeds the cipher
    if integ is None:
        aead = (AESGCM if encr == EncrId.AES_GCM_16 else ChaCha20Poly1305)(ek[:-4])
        nonce = ek[-4:] + bytes(8)
        aad = bytes(8)
        sealed = aead.encrypt(nonce, plaintext, aad)

        def raw_encrypt(k: int) -> None:
            enc = aead.encrypt
            for _ in range(k):
                enc(nonce, plaintext, aad)

        def raw_decrypt(k: int) -> None:
            dec = aead.decrypt
            for _ in range(k):
                dec(nonce, sealed, aad)

    else:
        algo = algorithms.AES(ek)
        mac = hmac.HMAC(ik, hashes.SHA256())
        block_pt = payload + b"\x01\x02\x03\x04\x05\x06\x06\x04"  # 1408 bytes
        iv = os.urandom(16)
        ct = Cipher(algo, modes.CBC(iv)).encryptor().update(block_pt)

        def raw_encrypt(k: int) -> None:
            for _ in range(k):
                e = Cipher(algo, modes.CBC(iv)).encryptor()
                c = e.update(block_pt) + e.finalize()
                h = mac.copy()
                h.update(c)
                h.finalize()

        def raw_decrypt(k: int) -> None:
            for _ in range(k):
                h = mac.copy()
                h.update(ct)
                h.finalize()
                d = Cipher(algo, modes.CBC(iv)).decryptor()
                d.update(ct)
                d.finalize()

    rows = []
    for label, esp_fn, raw_fn in (
        ("encrypt", esp_encrypt, raw_encrypt),
        ("decrypt", esp_decrypt, raw_decrypt),
    ):
        esp_fn(10)  # warm up (decrypt: consumes the 10 spare packets)
        raw_fn(10)
        rows.append((f"{name} {label}", per_call(esp_fn, n, repeats), per_call(raw_fn, n, repeats)))
    assert inb.stats.packets == verified[0], "every benchmark packet must verify"
    return rows


def main() -> None:
    quick = "--quick" in sys.argv
    n, repeats = (2000, 3) if quick else (20000, 5)
    print(f"ESP in memory, {PAYLOAD}-byte payloads, one core, median of {repeats} x {n} packets")
    print(f"Python {sys.version.split()[0]}")
    header = f"{'suite / direction':38} {'ESP kpps':>9} {'Gbit/s':>7} {'raw kpps':>9} "
    print(header + f"{'Gbit/s':>7} {'µs ESP':>7} {'µs raw':>7} {'ratio':>6}")
    t0 = time.perf_counter()
    for suite in SUITES:
        for label, esp_s, raw_s in bench_suite(*suite, n=n, repeats=repeats):
            gbit = PAYLOAD * 8 / 1e9
            print(
                f"{label:38} {1 / esp_s / 1e3:9.1f} {gbit / esp_s:7.2f} {1 / raw_s / 1e3:9.1f} "
                f"{gbit / raw_s:7.2f} {esp_s * 1e6:7.2f} {raw_s * 1e6:7.2f} {esp_s / raw_s:6.2f}"
            )
    print(f"total {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
