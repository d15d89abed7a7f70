"""Key logging for Wireshark (only when asked: ``--keylog FILE`` / ``daemon.keylog_file``).

Keys are never logged otherwise.  Wireshark reads IKEv2 and ESP keys from two separate
"user access tables" in its profile directory, so the key log is two files:

``FILE.ikev2_decryption_table``
    one line per IKE SA, the format of Wireshark's ``ikev2_decryption_table`` UAT
    (Preferences > Protocols > ISAKMP > IKEv2 Decryption Table)::

        <SPIi hex16>,<SPIr hex16>,<SK_ei hex>,<SK_er hex>,"<encryption>",
        <SK_ai hex>,<SK_ar hex>,"<integrity>"           (all on one line)

    e.g. ``"AES-GCM-256 with 16 octet ICV [RFC5282]"`` and ``"NONE [RFC4306]"`` for AEAD
    suites (SK_ai/SK_ar are then empty).  AEAD encryption keys include the 4-byte salt.

``FILE.esp_sa``
    one line per ESP SA direction, the format of the ``esp_sa`` UAT (Preferences >
    Protocols > ESP > ESP SAs; also tick "Attempt to detect/decode encrypted ESP payloads")::

        "IPv4","<src>","<dst>","0x<SPI 8 hex>","<encryption>","0x<key hex>",
        "<authentication>","0x<key hex>"                 (all on one line)

    e.g. ``"AES-GCM with 16 octet ICV [RFC4106]"`` with authentication ``"NULL"`` (keys
    include the 4-byte salt), or ``"AES-CBC [RFC3602]"`` with ``"HMAC-SHA-256-128 [RFC4868]"``.
    The addresses are the outer ones (for a NAT the ones seen on the capturing side may
    differ; Wireshark accepts ``*`` as a wildcard, which is written when the address is
    unknown).

If FILE is an existing directory, the files are named exactly ``ikev2_decryption_table``
and ``esp_sa`` inside it, so FILE can be a Wireshark profile directory.  Both files are
created with mode 0600 and appended to.  Suites Wireshark cannot decrypt (e.g.
ChaCha20-Poly1305 in older versions) are written as ``#`` comment lines.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..ikev2.constants import EncrId, IntegId

__all__ = ["KeyLog", "esp_sa_line", "ikev2_line"]

log = logging.getLogger("pyipsec.cfg")

_IKE_INTEG: dict[int | None, str] = {
    None: "NONE [RFC4306]",
    IntegId.NONE: "NONE [RFC4306]",
    IntegId.HMAC_MD5_96: "HMAC_MD5_96 [RFC2403]",
    IntegId.HMAC_SHA1_96: "HMAC_SHA1_96 [RFC2404]",
    IntegId.HMAC_MD5_128: "HMAC_MD5_128 [RFC4595]",
    IntegId.HMAC_SHA1_160: "HMAC_SHA1_160 [RFC4595]",
    IntegId.HMAC_SHA2_256_128: "HMAC_SHA2_256_128 [RFC4868]",
    IntegId.HMAC_SHA2_384_192: "HMAC_SHA2_384_192 [RFC4868]",
    IntegId.HMAC_SHA2_512_256: "HMAC_SHA2_512_256 [RFC4868]",
}
_ESP_INTEG: dict[int | None, str] = {
    None: "NULL",
    IntegId.NONE: "NULL",
    IntegId.HMAC_MD5_96: "HMAC-MD5-96 [RFC2403]",
    IntegId.HMAC_SHA1_96: "HMAC-SHA-1-96 [RFC2404]",
    IntegId.HMAC_SHA2_256_128: "HMAC-SHA-256-128 [RFC4868]",
    IntegId.HMAC_SHA2_384_192: "HMAC-SHA-384-192 [RFC4868]",
    IntegId.HMAC_SHA2_512_256: "HMAC-SHA-512-256 [RFC4868]",
}


def _ike_encr_name(encr_id: int, key_bits: int | None) -> str | None:
    bits = key_bits or 128
    if encr_id == EncrId.AES_CBC:
        return f"AES-CBC-{bits} [RFC3602]"
    if encr_id == EncrId.AES_CTR:
        return f"AES-CTR-{bits} [RFC5930]"
    icv = {int(EncrId.AES_GCM_8): 8, int(EncrId.AES_GCM_12): 12, int(EncrId.AES_GCM_16): 16}.get(
        encr_id
    )
    if icv:
        return f"AES-GCM-{bits} with {icv} octet ICV [RFC5282]"
    if encr_id == EncrId.TRIPLE_DES:
        return "3DES [RFC2451]"
    if encr_id == EncrId.NULL:
        return "NULL [RFC2410]"
    if encr_id == EncrId.CHACHA20_POLY1305:
        return "CHACHA20-POLY1305 [RFC7634]"
    return None


_ESP_ENCR: dict[int, str] = {
    EncrId.NULL: "NULL",
    EncrId.TRIPLE_DES: "TripleDES-CBC [RFC2451]",
    EncrId.AES_CBC: "AES-CBC [RFC3602]",
    EncrId.AES_CTR: "AES-CTR [RFC3686]",
    EncrId.AES_GCM_8: "AES-GCM with 8 octet ICV [RFC4106]",
    EncrId.AES_GCM_12: "AES-GCM with 12 octet ICV [RFC4106]",
    EncrId.AES_GCM_16: "AES-GCM with 16 octet ICV [RFC4106]",
}


def ikev2_line(
    spi_i: bytes,
    spi_r: bytes,
    encr_id: int,
    key_bits: int | None,
    integ_id: int | None,
    sk_ei: bytes,
    sk_er: bytes,
    sk_ai: bytes = b"",
    sk_ar: bytes = b"",
) -> str:
    """One ``ikev2_decryption_table`` line (a ``#`` comment when Wireshark lacks the suite)."""
    enc = _ike_encr_name(encr_id, key_bits)
    integ = _IKE_INTEG.get(integ_id)
    line = (
        f'{spi_i.hex()},{spi_r.hex()},{sk_ei.hex()},{sk_er.hex()},"{enc}",'
        f'{sk_ai.hex()},{sk_ar.hex()},"{integ}"'
    )
    return line if enc and integ else "# unsupported by Wireshark: " + line


def esp_sa_line(
    src: str,
    dst: str,
    spi: int,
    encr_id: int,
    encr_key: bytes,
    integ_id: int | None,
    integ_key: bytes,
) -> str:
    """One ``esp_sa`` line (a ``#`` comment when Wireshark lacks the suite)."""
    fam = "IPv6" if ":" in src or ":" in dst else "IPv4"
    enc = _ESP_ENCR.get(encr_id)
    integ = _ESP_INTEG.get(integ_id)
    line = (
        f'"{fam}","{src or "*"}","{dst or "*"}","0x{spi:08x}","{enc}","0x{encr_key.hex()}",'
        f'"{integ}","0x{integ_key.hex()}"'
    )
    return line if enc and integ else "# unsupported by Wireshark: " + line


class KeyLog:
    """Appends key lines to the two Wireshark tables next to (or inside) ``path``."""

    def __init__(self, path: str | Path) -> None:
        p = Path(path)
        if p.is_dir():
            self.ike_path = p / "ikev2_decryption_table"
            self.esp_path = p / "esp_sa"
        else:
            self.ike_path = p.with_name(p.name + ".ikev2_decryption_table")
            self.esp_path = p.with_name(p.name + ".esp_sa")
        log.warning("!! writing IKE and ESP keys to %s and %s", self.ike_path, self.esp_path)

    @staticmethod
    def _append(path: Path, line: str) -> None:
        """Append one line; a failure is logged, never raised (the key log is a debugging
        aid: an unwritable file must not keep an SA out of the data plane)."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)
        except OSError as e:
            log.error("key log %s: %s", path, e)

    def ike(self, line: str) -> None:
        self._append(self.ike_path, line)

    def esp(self, line: str) -> None:
        self._append(self.esp_path, line)
