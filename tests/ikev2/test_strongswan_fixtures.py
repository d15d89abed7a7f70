"""pyipsec's codec and SK crypto against real strongSwan 5.9.8 IKEv2 traffic.

The fixtures in ``tests/fixtures/strongswan/*.json`` were made on a Debian 12 machine with
strongSwan 5.9.8 (charon + kernel-libipsec) by::

    sudo python3 tests/interop/capture_fixtures.py tests/fixtures/strongswan

which, per run (``gcm-x25519``, ``cbc-modp2048``, ``chacha-ecp256``), builds a private
namespace topology (left 198.51.100.2 behind an nftables masquerading NAT 192.0.2.1, right
192.0.2.2), runs a charon on each side with ``ike 4`` logging (which dumps the DH secret,
SKEYSEED and SK_d/ai/ar/ei/er/pi/pr), sniffs right's interface with an AF_PACKET socket and
drives: IKE_SA_INIT + IKE_AUTH (PSK ``interop-testbed-psk-0123456789``, IDs
``left.example.net``/``right.example.net``), MOBIKE address-update INFORMATIONALs, Child SA
rekeys with PFS (CREATE_CHILD_SA with KE, started by either side), an IKE SA rekey and a
DPD liveness check (gcm run), Child SA and IKE SA deletes.  The script strips IP/UDP and
the non-ESP marker, matches the logged key sets to SPI pairs by verifying ICVs, decrypts
every SK payload independently (``cryptography`` only) and stores, per message, the raw
bytes, the decrypted inner payload chain and strongSwan's own payload list from its log.
Re-running it produces new fixtures (new random SPIs/nonces/keys); the tests need no change.

What is checked, for every captured message:

* ``Message.parse`` accepts it, the header matches, and ``serialise()`` gives the same bytes
  (IKE_SA_INIT: all payloads; protected messages: the SK payload kept encrypted);
* the SK payload decrypts with the logged keys through ``make_sk_protector`` +
  ``decrypt_message``, the inner payload types are what strongSwan says it sent, and the
  decrypted chain re-serialises byte-identically;
* the logged keys are consistent: SKEYSEED and SK_* follow from the nonces, SPIs and DH
  secret (RFC 7296 §2.14, and §2.18 for the rekeyed IKE SA), computed both with
  ``cryptography`` directly and with ``pyipsec.crypto.keys``; the PSK AUTH payloads
  (§2.15) verify with SK_pi/SK_pr.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, hmac

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "strongswan"
FIXTURE_FILES = sorted(FIXTURES.glob("*.json"))

# strongSwan's payload abbreviations in its "generating"/"parsed" log lines
SS_TYPES = {
    "SA": 33,
    "KE": 34,
    "IDi": 35,
    "IDr": 36,
    "CERT": 37,
    "CERTREQ": 38,
    "AUTH": 39,
    "No": 40,
    "N": 41,
    "D": 42,
    "V": 43,
    "TSi": 44,
    "TSr": 45,
    "CPRQ": 47,
    "CPRP": 47,
    "EAP": 48,
    "EF": 53,
}
PRF_HASHES = {2: hashes.SHA1, 5: hashes.SHA256, 6: hashes.SHA384, 7: hashes.SHA512}
SK, NONCE, SA_PAYLOAD, KE_PAYLOAD, IDI, IDR, AUTH = 46, 40, 33, 34, 35, 36, 39


@dataclass(frozen=True)
class Captured:
    """One captured message with the fixture it belongs to."""

    fixture: str
    run: dict[str, Any]
    msg: dict[str, Any]

    @property
    def data(self) -> bytes:
        """The IKE message bytes (no non-ESP marker)."""
        return bytes.fromhex(self.msg["hex"])

    @property
    def ike_sa(self) -> dict[str, Any] | None:
        """The key set of the message's IKE SA (None for IKE_SA_INIT)."""
        idx = self.msg["ike_sa"]
        return None if idx is None else self.run["ike_sas"][idx]


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _all_messages() -> Iterator[Any]:
    for path in FIXTURE_FILES:
        run = _load(path)
        for msg in run["messages"]:
            ident = (
                f"{path.stem}-{msg['index']:02d}-{msg['exchange_name']}-"
                f"{'resp' if msg['response'] else 'req'}{msg['message_id']}"
            )
            yield pytest.param(Captured(path.stem, run, msg), id=ident)


MESSAGES = list(_all_messages())
PLAIN = [p for p in MESSAGES if p.values[0].msg["ike_sa"] is None]
ENCRYPTED = [p for p in MESSAGES if p.values[0].msg["ike_sa"] is not None]
RUNS = [pytest.param(_load(p), id=p.stem) for p in FIXTURE_FILES]


def _ss_types(names: list[str]) -> list[int]:
    return [SS_TYPES[n.split("(")[0]] for n in names]


# -- reference PRF / prf+ with cryptography only ----------------------------------------------


def _prf(prf_id: int, key: bytes, data: bytes) -> bytes:
    mac = hmac.HMAC(key, PRF_HASHES[prf_id]())
    mac.update(data)
    return mac.finalize()


def _prf_plus(prf_id: int, key: bytes, seed: bytes, length: int) -> bytes:
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = _prf(prf_id, key, t + seed + bytes([i]))
        out += t
        i += 1
    return out[:length]


def _split_keys(sa: dict[str, Any], stream: bytes) -> dict[str, bytes]:
    names = ("sk_d", "sk_ai", "sk_ar", "sk_ei", "sk_er", "sk_pi", "sk_pr")
    out, pos = {}, 0
    for name in names:
        n = len(bytes.fromhex(sa.get(name, "")))
        out[name] = stream[pos : pos + n]
        pos += n
    return out


def _key_stream_len(sa: dict[str, Any]) -> int:
    names = ("sk_d", "sk_ai", "sk_ar", "sk_ei", "sk_er", "sk_pi", "sk_pr")
    return sum(len(bytes.fromhex(sa.get(n, ""))) for n in names)


# -- fixture sanity (no pyipsec code involved) ----------------------------------------------


def test_fixtures_present() -> None:
    """The three captured runs are there and cover the exchanges the task needs."""
    names = {p.stem for p in FIXTURE_FILES}
    assert {"gcm-x25519", "cbc-modp2048", "chacha-ecp256"} <= names
    exchanges = {(p.values[0].fixture, p.values[0].msg["exchange_name"]) for p in MESSAGES}
    for run in names:
        for ex in ("IKE_SA_INIT", "IKE_AUTH", "CREATE_CHILD_SA", "INFORMATIONAL"):
            assert (run, ex) in exchanges


@pytest.mark.parametrize("cap", MESSAGES)
def test_fixture_matches_strongswan_log(cap: Captured) -> None:
    """The capture's payload types agree with strongSwan's own log of the message."""
    types = cap.msg.get("inner_payload_types", cap.msg.get("payload_types"))
    assert "strongswan_payloads" in cap.msg, "message not found in charon's log"
    assert _ss_types(cap.msg["strongswan_payloads"]) == types


# -- codec --------------------------------------------------------------------------------


@pytest.mark.parametrize("cap", MESSAGES)
def test_parse_header_and_reserialise(cap: Captured) -> None:
    """Every message parses, its header is right and it serialises back byte for byte."""
    message = pytest.importorskip("pyipsec.ikev2.message")
    msg = message.Message.parse(cap.data)
    assert msg.spi_i == bytes.fromhex(cap.msg["spi_i"])
    assert msg.spi_r == bytes.fromhex(cap.msg["spi_r"])
    assert msg.exchange == cap.msg["exchange"]
    assert msg.message_id == cap.msg["message_id"]
    assert msg.is_response == cap.msg["response"]
    assert msg.is_initiator == cap.msg["initiator"]
    if cap.msg["ike_sa"] is None:
        assert [t for t, _ in msg.payloads] == cap.msg["payload_types"]
    else:
        assert [t for t, _ in msg.payloads] == [SK]
        assert msg.payloads[-1][1].first_payload == cap.msg["inner_first_payload"]
    assert msg.serialise() == cap.data


@pytest.mark.parametrize("cap", PLAIN)
def test_ike_sa_init_contents(cap: Captured) -> None:
    """IKE_SA_INIT: one IKE proposal with the run's transforms, KE of its group, nonce."""
    message = pytest.importorskip("pyipsec.ikev2.message")
    msg = message.Message.parse(cap.data)
    sa = cap.run["ike_sas"][0]
    proposals = msg.get(SA_PAYLOAD).proposals
    assert len(proposals) == 1 and proposals[0].protocol == 1  # IKE
    ids = {(t.type, t.id) for t in proposals[0].transforms}
    assert (1, sa["encr_id"]) in ids and (2, sa["prf_id"]) in ids and (4, sa["dh_id"]) in ids
    if sa["integ_id"] is not None:
        assert (3, sa["integ_id"]) in ids
    encr = next(t for t in proposals[0].transforms if t.type == 1)
    # RFC 7634 §2: ChaCha20-Poly1305 has a fixed key size and no Key Length attribute
    expected_bits = None if sa["encr_id"] == 28 else sa["encr_key_bits"]
    assert encr.key_length == expected_bits
    assert msg.get(KE_PAYLOAD).group == sa["dh_id"]
    assert 16 <= len(msg.get(NONCE).nonce) <= 256


def _protector(cap: Captured) -> Any:
    encr = pytest.importorskip("pyipsec.crypto.encr")
    sa = cap.ike_sa
    assert sa is not None
    d = "i" if cap.msg["initiator"] else "r"
    return encr.make_sk_protector(
        sa["encr_id"],
        sa["encr_key_bits"],
        sa["integ_id"],
        bytes.fromhex(sa[f"sk_e{d}"]),
        bytes.fromhex(sa.get(f"sk_a{d}", "")),
    )


@pytest.mark.parametrize("cap", ENCRYPTED)
def test_decrypt_and_reserialise_inner(cap: Captured) -> None:
    """SK decrypts with the logged keys; inner payloads as strongSwan sent them; same bytes."""
    message = pytest.importorskip("pyipsec.ikev2.message")
    payloads = pytest.importorskip("pyipsec.ikev2.payloads")
    msg = message.decrypt_message(cap.data, _protector(cap))
    types = [t for t, _ in msg.payloads]
    assert types == cap.msg["inner_payload_types"]
    assert types == _ss_types(cap.msg["strongswan_payloads"])
    first, inner = payloads.serialise_payloads(msg.payloads)
    assert first == cap.msg["inner_first_payload"]
    assert inner.hex() == cap.msg["inner_hex"]


@pytest.mark.parametrize("cap", ENCRYPTED)
def test_wrong_direction_key_fails(cap: Captured) -> None:
    """The other direction's key must not open the message (IntegrityError, no crash)."""
    message = pytest.importorskip("pyipsec.ikev2.message")
    errors = pytest.importorskip("pyipsec.ikev2.errors")
    encr = pytest.importorskip("pyipsec.crypto.encr")
    sa = cap.ike_sa
    assert sa is not None
    d = "r" if cap.msg["initiator"] else "i"
    wrong = encr.make_sk_protector(
        sa["encr_id"],
        sa["encr_key_bits"],
        sa["integ_id"],
        bytes.fromhex(sa[f"sk_e{d}"]),
        bytes.fromhex(sa.get(f"sk_a{d}", "")),
    )
    with pytest.raises(errors.IntegrityError):
        message.decrypt_message(cap.data, wrong)


# -- key consistency ----------------------------------------------------------------------


def _init_pair(run: dict[str, Any]) -> tuple[bytes, bytes]:
    msgs = [m for m in run["messages"] if m["exchange_name"] == "IKE_SA_INIT"]
    req = next(bytes.fromhex(m["hex"]) for m in msgs if not m["response"])
    resp = next(bytes.fromhex(m["hex"]) for m in msgs if m["response"])
    return req, resp


def _nonce_of(data: bytes) -> bytes:
    message = pytest.importorskip("pyipsec.ikev2.message")
    nonce: bytes = message.Message.parse(data).get(NONCE).nonce
    return nonce


@pytest.mark.parametrize("run", RUNS)
def test_initial_keys_follow_from_nonces_and_dh(run: dict[str, Any]) -> None:
    """SKEYSEED = prf(Ni | Nr, g^ir), SK_* = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr) (§2.14)."""
    req, resp = _init_pair(run)
    ni, nr = _nonce_of(req), _nonce_of(resp)
    sa = run["ike_sas"][0]
    spis = bytes.fromhex(sa["spi_i"]) + bytes.fromhex(sa["spi_r"])
    assert resp[:16] == spis
    shared = bytes.fromhex(sa["shared_secret"])
    seed = _prf(sa["prf_id"], ni + nr, shared)
    assert seed.hex() == sa["skeyseed"]
    derived = _split_keys(sa, _prf_plus(sa["prf_id"], seed, ni + nr + spis, _key_stream_len(sa)))
    for name, value in derived.items():
        assert value.hex() == sa.get(name, ""), name
    # the same with pyipsec.crypto.keys
    keys_mod = pytest.importorskip("pyipsec.crypto.keys")
    suite = keys_mod.IkeSuite(
        sa["encr_id"], sa["encr_key_bits"], sa["prf_id"], sa["integ_id"], sa["dh_id"]
    )
    assert keys_mod.key_lengths(sa["encr_id"], sa["encr_key_bits"], sa["integ_id"]) == (
        len(bytes.fromhex(sa["sk_ei"])),
        len(bytes.fromhex(sa.get("sk_ai", ""))),
    )
    assert keys_mod.skeyseed(sa["prf_id"], ni, nr, shared).hex() == sa["skeyseed"]
    ours = keys_mod.derive_ike_keys(suite, ni, nr, shared, spis[:8], spis[8:])
    for name in ("sk_d", "sk_ai", "sk_ar", "sk_ei", "sk_er", "sk_pi", "sk_pr"):
        assert getattr(ours, name).hex() == sa.get(name, ""), name


def _rekey_exchange(run: dict[str, Any], old: int) -> tuple[Any, Any]:
    """The decrypted CREATE_CHILD_SA request/response pair that rekeyed IKE SA ``old``."""
    message = pytest.importorskip("pyipsec.ikev2.message")
    found: dict[bool, Any] = {}
    for m in run["messages"]:
        if m["ike_sa"] != old or m["exchange_name"] != "CREATE_CHILD_SA":
            continue
        cap = Captured("", run, m)
        msg = message.decrypt_message(cap.data, _protector(cap))
        sa_payload = msg.get(SA_PAYLOAD)
        if sa_payload is not None and sa_payload.proposals[0].protocol == 1:  # IKE
            found[m["response"]] = msg
    return found[False], found[True]


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in FIXTURE_FILES])
def test_rekeyed_ike_sa_keys(path: Path) -> None:
    """SKEYSEED' = prf(SK_d(old), g^ir(new) | Ni | Nr), new SPIs from the SA payloads (§2.18)."""
    run = _load(path)
    rekeyed = [(i, sa) for i, sa in enumerate(run["ike_sas"]) if sa["rekey_of"] is not None]
    if not rekeyed:
        pytest.skip("no IKE SA rekey in this run")
    keys_mod = pytest.importorskip("pyipsec.crypto.keys")
    for _, sa in rekeyed:
        old = run["ike_sas"][sa["rekey_of"]]
        req, resp = _rekey_exchange(run, sa["rekey_of"])
        ni, nr = req.get(NONCE).nonce, resp.get(NONCE).nonce
        spi_i, spi_r = req.get(SA_PAYLOAD).proposals[0].spi, resp.get(SA_PAYLOAD).proposals[0].spi
        assert (spi_i.hex(), spi_r.hex()) == (sa["spi_i"], sa["spi_r"])
        shared = bytes.fromhex(sa["shared_secret"])
        assert req.get(KE_PAYLOAD).group == resp.get(KE_PAYLOAD).group == sa["dh_id"]
        seed = _prf(old["prf_id"], bytes.fromhex(old["sk_d"]), shared + ni + nr)
        assert seed.hex() == sa["skeyseed"]
        stream = _prf_plus(sa["prf_id"], seed, ni + nr + spi_i + spi_r, _key_stream_len(sa))
        for name, value in _split_keys(sa, stream).items():
            assert value.hex() == sa.get(name, ""), name
        suite = keys_mod.IkeSuite(
            sa["encr_id"], sa["encr_key_bits"], sa["prf_id"], sa["integ_id"], sa["dh_id"]
        )
        ours = keys_mod.derive_rekeyed_ike_keys(
            suite, bytes.fromhex(old["sk_d"]), shared, ni, nr, spi_i, spi_r
        )
        assert ours.sk_d.hex() == sa["sk_d"] and ours.sk_er.hex() == sa["sk_er"]


@pytest.mark.parametrize("run", RUNS)
def test_psk_auth_payloads_verify(run: dict[str, Any]) -> None:
    """AUTH = prf(prf(PSK, "Key Pad for IKEv2"), <SignedOctets>) for both sides (§2.15)."""
    message = pytest.importorskip("pyipsec.ikev2.message")
    req, resp = _init_pair(run)
    ni, nr = _nonce_of(req), _nonce_of(resp)
    sa = run["ike_sas"][0]
    psk = run["psk"].encode()
    for m in run["messages"]:
        if m["exchange_name"] != "IKE_AUTH":
            continue
        cap = Captured("", run, m)
        msg = message.decrypt_message(cap.data, _protector(cap))
        if m["initiator"]:
            own_init, peer_nonce, sk_p, id_type = req, nr, sa["sk_pi"], IDI
        else:
            own_init, peer_nonce, sk_p, id_type = resp, ni, sa["sk_pr"], IDR
        ident = msg.get(id_type)
        id_body = ident.serialise_body()
        signed = own_init + peer_nonce + _prf(sa["prf_id"], bytes.fromhex(sk_p), id_body)
        expected = _prf(sa["prf_id"], _prf(sa["prf_id"], psk, b"Key Pad for IKEv2"), signed)
        auth = msg.get(AUTH)
        assert auth.method == 2  # shared key MIC
        assert auth.data == expected
        keys_mod = pytest.importorskip("pyipsec.crypto.keys")
        ours = keys_mod.psk_auth(
            sa["prf_id"],
            psk,
            keys_mod.signed_octets(
                own_init, peer_nonce, sa["prf_id"], bytes.fromhex(sk_p), id_body
            ),
        )
        assert ours == expected
