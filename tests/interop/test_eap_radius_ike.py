"""A pyipsec gateway with ``remote.auth = "eap-radius"``: a strongSwan 5.9.8 road warrior
(left, behind the NAT) authenticates with EAP (RFC 7296 §2.16), which the gateway (right)
relays to FreeRADIUS 3 (RFC 3579) running in the gateway's namespace on 127.0.0.1.

EAP-MSCHAPv2: the AUTH payloads after EAP use the MSK, which the gateway gets from the
Access-Accept's MS-MPPE keys and charon from its own method -- the tunnel comes up only
when both are the same.  EAP-MD5 has no MSK (AUTH with SK_pi/SK_pr).  A wrong password
is rejected by FreeRADIUS and the IKE SA fails on both sides.  With ``accounting = true``
the gateway's Accounting Start and Stop (RFC 2866), the latter with the ping's octets,
land in FreeRADIUS's ``detail`` records.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from . import freeradius
from .freeradius import FreeRadius
from .pyipsec_daemon import PyipsecDaemon, pyipsec_toml, toml_text
from .strongswan import LEFT_ID, RIGHT_ID, TEST_PSK, Charon, available_plugins, swanctl_conf
from .test_eap import _ss_conn
from .topology import LEFT_INNER, RIGHT_INNER, RIGHT_OUTER, Topology

pytestmark = pytest.mark.interop

IKE = "aes256gcm16-prfsha256-x25519"
ESP = "aes256gcm16"
USER, PASSWORD = "carol", "carol-radius-password-7"
RADIUS_SECRET = "gateway-radius-secret"


@pytest.fixture
def need_freeradius() -> None:
    reason = freeradius.missing_requirements()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def radius_in_gateway(
    request: pytest.FixtureRequest, nat_topology: Topology, need_freeradius: None
) -> Iterator[Callable[[str], FreeRadius]]:
    """``start(default_eap_type)``: FreeRADIUS in the gateway's (right) namespace."""
    started: list[FreeRadius] = []

    def start(eap_type: str) -> FreeRadius:
        server = FreeRadius(
            RADIUS_SECRET, {USER: PASSWORD}, default_eap_type=eap_type, netns=nat_topology.right
        )
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


def _gateway_toml(state: Path) -> str:
    text = pyipsec_toml(side="right", state_dir=state, conn="rw", proposals=IKE,
                        esp_proposals=ESP, ipv6_inner=False, local_addrs=[RIGHT_OUTER])  # fmt: skip
    old = f'[connections.rw.remote]\nauth = "psk"\nid = "{LEFT_ID}"'
    assert old in text
    text = text.replace(
        old, '[connections.rw.remote]\nauth = "eap-radius"\nid = "%any"\neap_id = "%any"'
    )
    return text + toml_text({
        "eap_radius": {"timeout": 1, "retries": 2, "nas_identifier": "pyipsec-gw",
                       "accounting": True},
        "eap_radius.servers.fr": {"address": "127.0.0.1", "auth_port": 1812,
                                  "acct_port": 1813},
        "secrets.radius-fr": {"secret": RADIUS_SECRET},
    })  # fmt: skip


def _client_conf(method: str, password: str) -> str:
    return swanctl_conf({
        "connections": {"rw": _ss_conn("left", method)},
        "secrets": {
            "ike-gw": {"id-a": LEFT_ID, "id-b": RIGHT_ID, "secret": f'"{TEST_PSK}"'},
            "eap-carol": {"id": USER, "secret": f'"{password}"'},
        },
    })  # fmt: skip


def _up(d: PyipsecDaemon) -> bool:
    return any(str(s.get("state", "")).lower() == "established" for s in d.ike_sas())


@pytest.mark.parametrize(("method", "eap_type"), [("eap-mschapv2", "mschapv2"), ("eap-md5", "md5")])
def test_strongswan_client_through_the_gateway_to_freeradius(
    method: str, eap_type: str, nat_topology: Topology, tmp_path: Path,
    radius_in_gateway: Callable[[str], FreeRadius],
    charon_factory: Callable[..., Charon], pyipsec_factory: Callable[..., PyipsecDaemon],
) -> None:  # fmt: skip
    if method not in available_plugins():
        pytest.skip(f"strongSwan's {method} plugin is not installed")
    topo, state = nat_topology, tmp_path / "gw"
    radius = radius_in_gateway(eap_type)
    gw = pyipsec_factory(topo.right, _gateway_toml(state), state_dir=state)
    charon = charon_factory(topo.left, _client_conf(method, PASSWORD), name="carol")
    charon.initiate("rw", "net")
    assert charon.wait_for(lambda c: c.established("rw"), timeout=25) is not None
    gw.wait_for(_up, timeout=10)
    (ike,) = gw.ike_sas()
    assert ike["remote"]["id"] == USER  # the EAP identity, authenticated by FreeRADIUS
    assert topo.ping(topo.left, RIGHT_INNER, count=3, source=LEFT_INNER) == (3, 3)
    log = radius.log_text()
    assert "Sent Access-Accept" in log and 'NAS-Identifier = "pyipsec-gw"' in log
    if method == "eap-mschapv2":
        assert "MS-MPPE-Recv-Key" in log  # the MSK came over RADIUS and matched charon's
    # RADIUS accounting (RFC 2866): Start once up, Stop with the ping's traffic when the
    # client deletes the IKE SA
    charon.terminate(ike="rw")
    gw.wait_for(lambda d: not d.ike_sas(), timeout=10)
    deadline = time.monotonic() + 10
    while "Acct-Status-Type = Stop" not in radius.accounting_records():
        assert time.monotonic() < deadline, radius.log_text()[-3000:]
        time.sleep(0.1)
    records = radius.accounting_records()
    assert "Acct-Status-Type = Start" in records and f'User-Name = "{USER}"' in records
    assert 'NAS-Identifier = "pyipsec-gw"' in records
    assert "Acct-Terminate-Cause = User-Request" in records
    octets = [int(n) for n in re.findall(r"Acct-Input-Octets = (\d+)", records)]
    assert octets and octets[-1] >= 3 * 84, records  # the three pings' IP packets


def test_wrong_password_is_rejected_by_freeradius(
    nat_topology: Topology, tmp_path: Path,
    radius_in_gateway: Callable[[str], FreeRadius],
    charon_factory: Callable[..., Charon], pyipsec_factory: Callable[..., PyipsecDaemon],
) -> None:  # fmt: skip
    method = "eap-mschapv2"
    if method not in available_plugins():
        pytest.skip(f"strongSwan's {method} plugin is not installed")
    topo, state = nat_topology, tmp_path / "gw"
    radius = radius_in_gateway("mschapv2")
    gw = pyipsec_factory(topo.right, _gateway_toml(state), state_dir=state)
    charon = charon_factory(topo.left, _client_conf(method, "not-carols-password"), name="carol")
    charon.swanctl("--initiate", "--ike", "rw", "--child", "net", check=False)
    charon.wait_for(lambda c: "EAP authentication failed" in c.log(), timeout=25)
    assert not charon.established("rw")
    gw.wait_for(lambda d: not d.ike_sas(), timeout=10)
    assert "Sent Access-Reject" in radius.log_text()
