"""Negotiation against strongSwan 5.9.8: suites, proposal selection, errors, narrowing.

One NAT topology for the whole module (left behind the masquerading router, right on the
"internet" side).  strongSwan and pyipsec swap roles where it matters: ``pyipsec-initiator``
is pyipsec on the left initiating to strongSwan on the right, ``pyipsec-responder`` is
strongSwan on the left initiating to pyipsec on the right.

* other suites (SHA-1, SHA-384/512, ECP-384/521, MODP-3072, AES-128/192) with a Child SA
  rekey, with and without PFS;
* several proposals where the first one does not match (and the key exchange guessed by
  the initiator is not the chosen one: INVALID_KE_PAYLOAD and a retry);
* errors across implementations: wrong PSK, no common proposal, identity mismatch,
  traffic selector mismatch (the IKE SA stays, only the child fails);
* traffic selector narrowing in both directions;
* ``start_action = trap``;
* a responder with two connections told apart by the peer's identity.

Timeouts are short: every failure case must be decided within a few seconds, and the
initiator must not keep retrying an authentication failure.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .pyipsec_daemon import PyipsecDaemon, PyipsecError, connection_toml, pyipsec_toml
from .strongswan import (
    LEFT_ID,
    RIGHT_ID,
    TEST_PSK,
    Charon,
    ConnSpec,
    StrongswanError,
    swanctl_conf,
)
from .topology import (
    LEFT_INNER,
    LEFT_SUBNET,
    LEFT_SUBNET6,
    RIGHT_INNER,
    RIGHT_OUTER,
    RIGHT_SUBNET,
    RIGHT_SUBNET6,
    Topology,
)

pytestmark = [pytest.mark.interop]

ROLES = ["left", "right"]
ROLE_IDS = ["pyipsec-initiator", "pyipsec-responder"]

CharonFactory = Callable[..., Charon]
PyipsecFactory = Callable[..., PyipsecDaemon]


@dataclass
class Pair:
    """strongSwan and pyipsec of one test; ``py_side`` "left" means pyipsec initiates."""

    topo: Topology
    charon: Charon
    daemon: PyipsecDaemon
    py_side: str

    def initiate(self, timeout: float = 8.0) -> None:
        """The initiator (always left, behind the NAT) brings conn/net up."""
        if self.py_side == "left":
            self.daemon.up("conn", "net", timeout=timeout)
        else:
            self.charon.initiate("conn", "net", timeout=timeout)

    def try_initiate(self, timeout: float = 6.0) -> str:
        """Initiate and expect a failure; return the initiator's error text."""
        try:
            if self.py_side == "left":
                self.daemon.up("conn", "net", timeout=timeout)
            else:
                return self.charon.initiate("conn", "net", timeout=timeout) + "\n(no error)"
        except (PyipsecError, StrongswanError) as exc:  # the error text is what we check
            return str(exc)
        return "(no error)"

    def established(self) -> dict[str, Any]:
        """Both sides up: strongSwan's IKE SA (with an installed child) is returned."""
        sa: dict[str, Any] = self.charon.wait_for(lambda c: c.established("conn"), timeout=10)
        self.daemon.wait_for(lambda d: d.child_sas(), timeout=10)
        return sa

    def ping(self, count: int = 2) -> tuple[int, int]:
        """Left inner -> right inner through the tunnel."""
        return self.topo.ping(self.topo.left, RIGHT_INNER, count=count, source=LEFT_INNER)


def _start(topo: Topology, tmp_path: Path, charon_factory: CharonFactory,
           pyipsec_factory: PyipsecFactory, py_side: str, *,
           ss: dict[str, Any] | None = None, py: dict[str, Any] | None = None,
           py_append: str = "", ss_text: str | None = None) -> Pair:
    """Start both daemons with ``conn``/``net``; ``ss``: ConnSpec kwargs, ``py``:
    ``pyipsec_toml`` kwargs (both default to the GCM/X25519 suite)."""
    ss_kw: dict[str, Any] = {"name": "conn", "ipv6_inner": False, **(ss or {})}
    py_kw: dict[str, Any] = {"proposals": "aes256gcm16-prfsha256-x25519",
                             "esp_proposals": "aes256gcm16-x25519", "ipv6_inner": False,
                             "log_level": "debug", **(py or {})}
    state = tmp_path / "pyipsec"
    if py_side == "left":
        ss_kw.setdefault("local_addrs", RIGHT_OUTER)
        charon = charon_factory(topo.right, ss_text or ConnSpec(side="right", **ss_kw).render(),
                                name="right")
        toml = pyipsec_toml(side="left", state_dir=state, remote_addrs=[RIGHT_OUTER], **py_kw)
        daemon = pyipsec_factory(topo.left, toml + py_append, state_dir=state)
    else:
        toml = pyipsec_toml(side="right", state_dir=state, local_addrs=[RIGHT_OUTER], **py_kw)
        daemon = pyipsec_factory(topo.right, toml + py_append, state_dir=state)
        ss_kw.setdefault("remote_addrs", RIGHT_OUTER)
        charon = charon_factory(topo.left, ss_text or ConnSpec(side="left", **ss_kw).render(),
                                name="left")
    return Pair(topo, charon, daemon, py_side)


def _py_log(daemon: PyipsecDaemon) -> str:
    return daemon.log_path.read_text(errors="replace") if daemon.log_path.exists() else ""


def _py_errors(daemon: PyipsecDaemon) -> dict[str, int]:
    errors: dict[str, int] = daemon.status().get("errors", {})
    return errors


def _assert_clean(pair: Pair, settle: float = 0.5) -> None:
    """No IKE or Child SA left on either side (after a failed negotiation)."""
    time.sleep(settle)
    pair.daemon.wait_for(lambda d: not d.ike_sas() and not d.child_sas(), timeout=5)
    pair.charon.wait_for(lambda c: not c.list_sas(), timeout=5)


# -- 1. other suites -----------------------------------------------------------------


@dataclass(frozen=True)
class Suite:
    """IKE/ESP proposals and what ``swanctl --list-sas`` shows for them."""

    name: str
    ike: str
    esp: str
    ss_ike: dict[str, str]
    ss_esp: dict[str, str]


SUITES = [
    Suite("cbc128-sha1-modp2048", "aes128-sha1-modp2048", "aes128-sha1",
          {"encr-alg": "AES_CBC", "encr-keysize": "128", "integ-alg": "HMAC_SHA1_96",
           "prf-alg": "PRF_HMAC_SHA1", "dh-group": "MODP_2048"},
          {"encr-alg": "AES_CBC", "encr-keysize": "128", "integ-alg": "HMAC_SHA1_96"}),
    Suite("cbc256-sha384-ecp384-pfs", "aes256-sha384-ecp384", "aes256-sha512-ecp384",
          {"encr-alg": "AES_CBC", "encr-keysize": "256", "integ-alg": "HMAC_SHA2_384_192",
           "prf-alg": "PRF_HMAC_SHA2_384", "dh-group": "ECP_384"},
          {"encr-alg": "AES_CBC", "encr-keysize": "256", "integ-alg": "HMAC_SHA2_512_256",
           "dh-group": "ECP_384"}),
    Suite("gcm128-prfsha512-ecp521-pfs", "aes128gcm16-prfsha512-ecp521", "aes128gcm16-ecp521",
          {"encr-alg": "AES_GCM_16", "encr-keysize": "128", "prf-alg": "PRF_HMAC_SHA2_512",
           "dh-group": "ECP_521"},
          {"encr-alg": "AES_GCM_16", "encr-keysize": "128", "dh-group": "ECP_521"}),
    Suite("cbc192-sha512-modp3072", "aes192-sha512-modp3072", "aes256-sha512",
          {"encr-alg": "AES_CBC", "encr-keysize": "192", "integ-alg": "HMAC_SHA2_512_256",
           "prf-alg": "PRF_HMAC_SHA2_512", "dh-group": "MODP_3072"},
          {"encr-alg": "AES_CBC", "encr-keysize": "256", "integ-alg": "HMAC_SHA2_512_256"}),
]


def _installed_child(sa: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in sa["child-sas"].values() if c.get("state") == "INSTALLED")


def _check_fields(what: str, got: dict[str, Any], want: dict[str, str]) -> None:
    wrong = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
    assert not wrong, f"{what}: (got, want) {wrong}"


@pytest.mark.parametrize("py_side", ROLES, ids=ROLE_IDS)
@pytest.mark.parametrize("suite", SUITES, ids=[s.name for s in SUITES])
def test_suite(nat_topology: Topology, tmp_path: Path, charon_factory: CharonFactory,
               pyipsec_factory: PyipsecFactory, suite: Suite, py_side: str) -> None:
    """Establish with the suite, ping, rekey the Child SA from pyipsec (PFS if the ESP
    proposal has a group), ping, rekey the IKE SA from pyipsec, ping."""
    pair = _start(nat_topology, tmp_path, charon_factory, pyipsec_factory, py_side,
                  ss={"proposals": suite.ike, "esp_proposals": suite.esp},
                  py={"proposals": suite.ike, "esp_proposals": suite.esp})
    pair.initiate()
    sa = pair.established()
    _check_fields("IKE SA", sa, suite.ss_ike)
    child = _installed_child(sa)
    _check_fields("Child SA", child, {k: v for k, v in suite.ss_esp.items() if k != "dh-group"})
    assert pair.ping() == (2, 2)
    old = child["spi-in"]
    offset = len(pair.charon.log())
    assert pair.daemon.rekey_child("conn", "net")
    new = pair.charon.wait_for(
        lambda c: (sa2 := c.established("conn")) and (ch := _installed_child(sa2))
        and ch["spi-in"] != old and ch, timeout=8)
    _check_fields("rekeyed Child SA", new, suite.ss_esp)
    if "dh-group" not in suite.ss_esp:
        assert "dh-group" not in new
    req = re.search(r"parsed CREATE_CHILD_SA request \d+ \[([^\]]*)\]",
                    pair.charon.log()[offset:])
    assert req is not None and (" KE " in f" {req.group(1)} ") == ("dh-group" in suite.ss_esp)
    assert pair.ping() == (2, 2)
    # IKE SA rekey from pyipsec: the new SKEYSEED comes from this suite's PRF (§2.18)
    old_ike = sa["uniqueid"]
    assert pair.daemon.rekey_ike("conn")
    new_ike = pair.charon.wait_for(
        lambda c: (sa2 := c.established("conn")) and sa2["uniqueid"] != old_ike and sa2,
        timeout=8)
    _check_fields("rekeyed IKE SA", new_ike, suite.ss_ike)
    assert pair.ping() == (2, 2)


# -- proposal selection ----------------------------------------------------------------


@pytest.mark.parametrize("py_side", ROLES, ids=ROLE_IDS)
def test_first_proposal_unacceptable(nat_topology: Topology, tmp_path: Path,
                                     charon_factory: CharonFactory,
                                     pyipsec_factory: PyipsecFactory, py_side: str) -> None:
    """The initiator offers three IKE and three ESP proposals, the first one unacceptable
    to the responder (whose key exchange the initiator guessed: INVALID_KE_PAYLOAD and a
    retry).  The responder's choice: strongSwan prefers its own configured order, pyipsec
    the initiator's; either way the result is one both accept."""
    offer_ike = ["aes256gcm16-prfsha256-ecp521", "aes128-sha256-modp3072",
                 "aes256-sha384-ecp384"]
    offer_esp = ["aes256gcm16-ecp521", "aes128-sha256-modp3072", "aes256-sha384-ecp384"]
    accept_ike = ["aes256-sha384-ecp384", "aes128-sha256-modp3072"]
    accept_esp = ["aes256-sha384-ecp384", "aes128-sha256-modp3072"]
    if py_side == "left":  # pyipsec offers, strongSwan picks its own first: ECP-384
        ss = {"proposals": accept_ike, "esp_proposals": accept_esp}
        py_ike, py_esp = offer_ike, offer_esp
        want_ike = {"encr-keysize": "256", "dh-group": "ECP_384"}
        want_esp = {"encr-keysize": "256", "integ-alg": "HMAC_SHA2_384_192"}
    else:  # strongSwan offers, pyipsec picks the initiator's preferred acceptable one
        ss = {"proposals": offer_ike, "esp_proposals": offer_esp}
        py_ike, py_esp = accept_ike, accept_esp
        want_ike = {"encr-keysize": "128", "dh-group": "MODP_3072"}
        want_esp = {"encr-keysize": "128", "integ-alg": "HMAC_SHA2_256_128"}
    pair = _start(nat_topology, tmp_path, charon_factory, pyipsec_factory, py_side, ss=ss,
                  py={"proposals": py_ike[0], "esp_proposals": py_esp[0],
                      "extra_conn": {"proposals": py_ike},
                      "extra_child": {"esp_proposals": py_esp}})
    pair.initiate()
    sa = pair.established()
    _check_fields("IKE SA", sa, {"encr-alg": "AES_CBC", **want_ike})
    _check_fields("Child SA", _installed_child(sa), {"encr-alg": "AES_CBC", **want_esp})
    assert pair.ping() == (2, 2)
    # the initiator had guessed ECP-521 and was told the responder's group
    inits = re.findall(r"IKE_SA_INIT \w+ 0 \[[^\]]*\]", pair.charon.log())
    assert any("N(INVAL_KE)" in m for m in inits), inits


# -- 2. errors across implementations --------------------------------------------------


def _ike_sa_inits(charon: Charon) -> int:
    """IKE_SA_INIT requests strongSwan sent or received (retries included)."""
    return len(re.findall(r"(?:parsed|generating) IKE_SA_INIT request", charon.log()))


@pytest.mark.parametrize("py_side", ROLES, ids=ROLE_IDS)
def test_wrong_psk(nat_topology: Topology, tmp_path: Path, charon_factory: CharonFactory,
                   pyipsec_factory: PyipsecFactory, py_side: str) -> None:
    """Different PSKs: the responder rejects the initiator's AUTH, both sides log
    AUTHENTICATION_FAILED, nothing is left and the initiator does not retry (pyipsec has
    ``start_action = start``: an authentication failure is final, not a lost packet)."""
    pair = _start(nat_topology, tmp_path, charon_factory, pyipsec_factory, py_side,
                  ss={"psk": "another-psk-entirely-9876543210"},
                  py={"start_action": "start" if py_side == "left" else "none"})
    if py_side == "left":
        pair.charon.wait_log(r"received AUTHENTICATION_FAILED|tried \d+ shared key|"
                             r"authentication of .* failed", timeout=8)
    else:
        err = pair.try_initiate()
        assert "(no error)" not in err
    pair.charon.wait_log(r"(?:generating|parsed) IKE_AUTH response \d+ \[ N\(AUTH_FAILED\) \]",
                         timeout=8)
    pair.daemon.wait_for(lambda d: _py_errors(d).get(
        "authentication-failed" if py_side == "right" else "authentication-failed-received"),
                         timeout=5)
    _assert_clean(pair)
    inits = _ike_sa_inits(pair.charon)
    time.sleep(3.0)  # no retry storm: nothing new after the failure
    assert _ike_sa_inits(pair.charon) == inits == 1, pair.charon.tail(20)
    assert not pair.daemon.ike_sas()


@pytest.mark.parametrize("py_side", ROLES, ids=ROLE_IDS)
def test_no_proposal_chosen(nat_topology: Topology, tmp_path: Path,
                            charon_factory: CharonFactory, pyipsec_factory: PyipsecFactory,
                            py_side: str) -> None:
    """No common IKE proposal: NO_PROPOSAL_CHOSEN in the IKE_SA_INIT response, the
    initiator fails at once, nothing is left."""
    pair = _start(nat_topology, tmp_path, charon_factory, pyipsec_factory, py_side,
                  ss={"proposals": "aes128-sha256-modp2048", "esp_proposals": "aes128-sha256"})
    err = pair.try_initiate()
    assert "(no error)" not in err
    if py_side == "left":
        assert "NO_PROPOSAL_CHOSEN" in err.upper().replace(" ", "_"), err
    pair.charon.wait_log(r"(?:generating|parsed) IKE_SA_INIT response 0 \[ N\(NO_PROP\) \]",
                         timeout=5)
    _assert_clean(pair)
    # pyipsec waits for the refusal to be confirmed by the answer to a retransmission
    # before it gives up (an unprotected notify may be forged, RFC 7296 §2.21.1)
    assert _ike_sa_inits(pair.charon) == (2 if py_side == "left" else 1)


@pytest.mark.parametrize("py_side", ROLES, ids=ROLE_IDS)
def test_identity_mismatch(nat_topology: Topology, tmp_path: Path,
                           charon_factory: CharonFactory, pyipsec_factory: PyipsecFactory,
                           py_side: str) -> None:
    """pyipsec's ``remote.id`` is not strongSwan's local id: the IKE_AUTH fails with
    AUTHENTICATION_FAILED, nothing is left."""
    pair = _start(nat_topology, tmp_path, charon_factory, pyipsec_factory, py_side,
                  py={"remote_id_override": "other.example.net"})
    err = pair.try_initiate()
    assert "(no error)" not in err
    pair.charon.wait_log(r"AUTH_FAILED|AUTHENTICATION_FAILED", timeout=5)
    _assert_clean(pair)
    assert _ike_sa_inits(pair.charon) == 1


@pytest.mark.parametrize("what", ["ts", "esp"])
@pytest.mark.parametrize("py_side", ROLES, ids=ROLE_IDS)
def test_child_fails_ike_stays(nat_topology: Topology, tmp_path: Path,
                               charon_factory: CharonFactory,
                               pyipsec_factory: PyipsecFactory, py_side: str,
                               what: str) -> None:
    """The IKE SA can be made but its first Child SA cannot (disjoint selectors:
    TS_UNACCEPTABLE; no common ESP proposal: NO_PROPOSAL_CHOSEN): the IKE SA stays up on
    both sides, no Child SA is installed and pyipsec's status says why."""
    py: dict[str, Any] = {}
    if what == "ts":
        # pyipsec protects 203.0.113.192/26 on the right, or wants it from strongSwan
        py["local_ts_override" if py_side == "right" else "remote_ts_override"] = \
            ["203.0.113.192/26"]
    else:
        py["esp_proposals"] = "aes128-sha256"
    pair = _start(nat_topology, tmp_path, charon_factory, pyipsec_factory, py_side, py=py)
    err = pair.try_initiate()
    assert "(no error)" not in err
    notify = "TS_UNACCEPT" if what == "ts" else "NO_PROP"
    pair.charon.wait_log(rf"(?:generating|parsed) IKE_AUTH response 1 \[ .*N\({notify}\)",
                         timeout=5)
    sa = pair.charon.wait_for(lambda c: c.list_sas().get("conn"), timeout=5)
    assert sa["state"] == "ESTABLISHED" and not sa.get("child-sas"), sa
    time.sleep(0.5)
    status = pair.daemon.status()
    assert [s["state"].upper() for s in status["ike_sas"]] == ["ESTABLISHED"], status["ike_sas"]
    assert status["child_sas"] == []
    kind = "ts-unacceptable" if what == "ts" else "no-proposal-chosen"
    if py_side == "left":
        kind += "-received"
    assert status["errors"].get(kind), status["errors"]
    assert pair.ping(1) == (1, 0)


# -- traffic selector narrowing ----------------------------------------------------------

WIDE = "203.0.113.64/25"  # RIGHT_SUBNET (203.0.113.64/26) and the /26 above it


@pytest.mark.parametrize("dual_stack", [False, True], ids=["v4", "v4v6-offered"])
@pytest.mark.parametrize("py_side", ROLES, ids=ROLE_IDS)
def test_ts_narrowing(nat_topology: Topology, tmp_path: Path, charon_factory: CharonFactory,
                      pyipsec_factory: PyipsecFactory, py_side: str, dual_stack: bool) -> None:
    """The initiator asks for 203.0.113.64/25 on the right, the responder allows only
    203.0.113.64/26: it narrows (§2.9), both install the /26 and traffic flows.  With
    ``v4v6-offered`` the initiator also asks for IPv6 selectors on both sides, which the
    responder (IPv4 only) drops from its answer."""
    v6 = dual_stack
    if py_side == "left":
        pair = _start(nat_topology, tmp_path, charon_factory, pyipsec_factory, py_side,
                      py={"remote_ts_override": [WIDE, *([RIGHT_SUBNET6] if v6 else [])],
                          "local_ts_override": [LEFT_SUBNET, *([LEFT_SUBNET6] if v6 else [])]})
    else:
        pair = _start(nat_topology, tmp_path, charon_factory, pyipsec_factory, py_side,
                      ss={"child_extra": {
                          "remote_ts": [WIDE, *([RIGHT_SUBNET6] if v6 else [])],
                          "local_ts": [LEFT_SUBNET, *([LEFT_SUBNET6] if v6 else [])]}})
    pair.initiate()
    sa = pair.established()
    ss_child = _installed_child(sa)
    ss_right = ss_child["local-ts" if py_side == "left" else "remote-ts"]
    assert ss_right == [RIGHT_SUBNET], ss_child
    (py_child,) = pair.daemon.child_sas()
    py_right = py_child["remote_ts" if py_side == "left" else "local_ts"]
    py_left = py_child["local_ts" if py_side == "left" else "remote_ts"]
    assert [s.split("[")[0] for s in py_right] == [RIGHT_SUBNET], py_child
    assert [s.split("[")[0] for s in py_left] == [LEFT_SUBNET], py_child
    assert pair.ping() == (2, 2)
    assert nat_topology.ping(nat_topology.right, LEFT_INNER, count=2,
                             source=RIGHT_INNER) == (2, 2)


# -- 3. start_action = trap ----------------------------------------------------------------


def test_trap_first_packet_starts_tunnel(nat_topology: Topology, tmp_path: Path,
                                         charon_factory: CharonFactory,
                                         pyipsec_factory: PyipsecFactory) -> None:
    """pyipsec with ``start_action = trap`` and strongSwan answering: nothing is up until
    the first ping, which starts the IKE SA (it may be lost); the following pings pass and
    exactly one IKE SA results."""
    pair = _start(nat_topology, tmp_path, charon_factory, pyipsec_factory, "left",
                  py={"start_action": "trap"})
    time.sleep(0.5)
    assert not pair.charon.list_sas() and not pair.daemon.ike_sas()
    sent, got = nat_topology.ping(nat_topology.left, RIGHT_INNER, count=6, interval=0.3,
                                  source=LEFT_INNER)
    assert sent == 6 and got >= 4, (sent, got)
    pair.established()
    assert pair.ping(3) == (3, 3)
    assert len(pair.charon.ike_sas("conn")) == 1 and len(pair.daemon.ike_sas()) == 1
    # the trap is back after the peer closes the SA: the next packet starts a new one
    pair.charon.terminate(ike="conn")
    pair.daemon.wait_for(lambda d: not d.ike_sas() and not d.child_sas(), timeout=5)
    nat_topology.ping(nat_topology.left, RIGHT_INNER, count=1, source=LEFT_INNER)
    pair.established()
    assert pair.ping(2) == (2, 2)


# -- 4. one responder, two connections told apart by the peer's identity ----------------

ALT_ID = "alt.example.net"
ALT_LEFT_TS = "203.0.113.0/27"


def test_responder_picks_connection_by_identity(nat_topology: Topology, tmp_path: Path,
                                                charon_factory: CharonFactory,
                                                pyipsec_factory: PyipsecFactory) -> None:
    """pyipsec answers on one address with two connections: ``conn`` for
    left.example.net (GCM/X25519) and ``alt`` for alt.example.net (CBC/SHA-256/MODP-2048,
    narrower selectors).  strongSwan initiates both, each with its own local id: each IKE
    SA lands on the right connection with that connection's proposals and selectors."""
    alt_spec = ConnSpec(name="alt", side="left", remote_addrs=RIGHT_OUTER, ipv6_inner=False,
                        child="altnet", proposals="aes128-sha256-modp2048",
                        esp_proposals="aes128-sha256",
                        extra={"local": {"auth": "psk", "id": ALT_ID}},
                        child_extra={"local_ts": ALT_LEFT_TS})
    main_spec = ConnSpec(name="conn", side="left", remote_addrs=RIGHT_OUTER, ipv6_inner=False)
    ss_text = swanctl_conf({
        "connections": {"conn": main_spec.connection(), "alt": alt_spec.connection()},
        "secrets": {"ike-main": {"id-a": LEFT_ID, "id-b": RIGHT_ID, "secret": f'"{TEST_PSK}"'},
                    "ike-alt": {"id-a": ALT_ID, "id-b": RIGHT_ID, "secret": f'"{TEST_PSK}"'}},
    })
    alt_toml = connection_toml("alt", local_id=RIGHT_ID, remote_id=ALT_ID,
                               proposals="aes128-sha256-modp2048",
                               children={"altnet": ([RIGHT_SUBNET], [ALT_LEFT_TS])},
                               esp_proposals="aes128-sha256", local_addrs=[RIGHT_OUTER])
    pair = _start(nat_topology, tmp_path, charon_factory, pyipsec_factory, "right",
                  py_append=alt_toml, ss_text=ss_text)
    for name, child in (("alt", "altnet"), ("conn", "net")):
        pair.charon.initiate(name, child, timeout=8)
    alt = pair.charon.wait_for(lambda c: c.established("alt"), timeout=5)
    main = pair.charon.wait_for(lambda c: c.established("conn"), timeout=5)
    assert alt["encr-alg"] == "AES_CBC" and alt["dh-group"] == "MODP_2048", alt
    assert main["encr-alg"] == "AES_GCM_16" and main["dh-group"] == "CURVE_25519", main
    assert _installed_child(alt)["local-ts"] == [ALT_LEFT_TS]
    ike = {sa["name"]: sa for sa in pair.daemon.ike_sas()}
    assert set(ike) == {"conn", "alt"}, list(ike)
    assert ike["alt"]["remote"]["id"] == ALT_ID and ike["conn"]["remote"]["id"] == LEFT_ID
    children = {(c["conn"], c["child"]): c for c in pair.daemon.child_sas()}
    assert set(children) == {("alt", "altnet"), ("conn", "net")}, list(children)
    assert [s.split("[")[0] for s in children[("alt", "altnet")]["remote_ts"]] == [ALT_LEFT_TS]
    assert pair.ping() == (2, 2)


def test_trap_with_wrong_psk_is_no_storm(nat_topology: Topology, tmp_path: Path,
                                         charon_factory: CharonFactory,
                                         pyipsec_factory: PyipsecFactory) -> None:
    """A trap whose setup fails (AUTHENTICATION_FAILED) is held down after the failure:
    5 packets/s for 3 s start one IKE SA, not one per packet."""
    pair = _start(nat_topology, tmp_path, charon_factory, pyipsec_factory, "left",
                  ss={"psk": "another-psk-entirely-9876543210"},
                  py={"start_action": "trap"})
    sent, got = nat_topology.ping(nat_topology.left, RIGHT_INNER, count=15, interval=0.2,
                                  source=LEFT_INNER)
    assert sent == 15 and got == 0
    assert _ike_sa_inits(pair.charon) == 1, pair.charon.tail(20)
    assert _py_errors(pair.daemon).get("authentication-failed-received") == 1
    _assert_clean(pair, settle=0)
