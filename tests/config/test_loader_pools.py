"""The loader's virtual IP parts (RFC 7296 §2.19): [pools.NAME], a connection's
``pools`` and ``vips``, ``dynamic`` selectors standing for virtual IPs, ``vip_hook``,
and every error located."""

from __future__ import annotations

import ipaddress
import textwrap

import pytest

from pyipsec.config.loader import ConfigError, load_config_text

GATEWAY = """
[daemon]
vip_hook = "/usr/local/sbin/pyipsec-vip"

[pools.rw]
addrs = "203.0.113.192/26"
dns = ["203.0.113.65", "2001:db8:b::53"]
nbns = "203.0.113.66"
split_include = ["203.0.113.64/26", "2001:db8:b::/64"]

[pools.rw6]
addrs = "2001:db8:ee::1-2001:db8:ee::ff"

[connections.rw]
local_addrs = ["192.0.2.2"]
remote_addrs = ["%any"]
pools = ["rw", "rw6"]
[connections.rw.local]
id = "gw.example.net"
[connections.rw.remote]
id = "%any"
[connections.rw.children.net]
local_ts = ["203.0.113.64/26", "2001:db8:b::/64"]

[connections.client]
remote_addrs = ["192.0.2.9"]
vips = ["0.0.0.0", "::"]
[connections.client.children.office]
remote_ts = ["198.51.100.0/24"]

[secrets.psk]
secret = "a-long-enough-test-secret"
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as ei:
        load_config_text(textwrap.dedent(text))
    return [str(e) for e in ei.value.errors]


def test_pools_and_virtual_ips_load() -> None:
    cfg = load_config_text(GATEWAY)
    rw, rw6 = cfg.pools
    assert (rw.name, rw.addrs, str(rw.first), str(rw.last)) == (
        "rw", "203.0.113.192/26", "203.0.113.193", "203.0.113.254",
    )  # fmt: skip
    assert [str(a) for a in rw.dns] == ["203.0.113.65", "2001:db8:b::53"]
    assert [str(a) for a in rw.nbns] == ["203.0.113.66"]
    assert rw.split_include == (
        ipaddress.ip_network("203.0.113.64/26"),
        ipaddress.ip_network("2001:db8:b::/64"),
    )
    assert (str(rw6.first), str(rw6.last)) == ("2001:db8:ee::1", "2001:db8:ee::ff")
    gw, client = cfg.connections
    assert gw.pools == ("rw", "rw6") and gw.vips == ()
    assert gw.children[0].remote_ts == ()  # dynamic: the leased addresses, at run time
    assert client.vips == ("0.0.0.0", "::") and client.pools == ()
    assert client.children[0].local_ts == ()  # dynamic: our virtual IPs, at run time
    assert cfg.vip_hook == "/usr/local/sbin/pyipsec-vip"


def test_defaults_without_pools() -> None:
    cfg = load_config_text("")
    assert cfg.pools == () and cfg.vip_hook == ""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[pools.a]\ndns = ['10.0.0.1']\n", "pools.a.addrs: missing"),
        ("[pools.a]\naddrs = '10.0.0.9-10.0.0.1'\n", "pools.a.addrs: address range"),
        ("[pools.a]\naddrs = 'ten/8'\n", "pools.a.addrs: invalid pool 'ten/8'"),
        ("[pools.a]\naddrs = '10.0.0.0/24'\ndns = ['x']\n", "pools.a.dns: invalid address 'x'"),
        ("[pools.a]\naddrs = '10.0.0.0/24'\nnbns = ['2001:db8::1']\n", "pools.a.nbns: NetBIOS"),
        ("[pools.a]\naddrs = '10.0.0.0/24'\nsplit_include = ['10.0.0.0/40']\n",
         "pools.a.split_include: invalid network"),
        ("[pools.a]\naddrs = '10.0.0.0/24'\nadrs = 1\n", "pools.a.adrs: unknown key"),
        ("[pools.a]\naddrs = '10.0.0.0/24'\n[pools.b]\naddrs = '10.0.0.128-10.0.1.5'\n",
         "pools.b.addrs: overlaps pools.a.addrs"),
        ("[connections.c]\nremote_addrs = ['192.0.2.1']\npools = ['nope']\n"
         "[secrets.s]\nsecret = 'x'\n",
         "connections.c.pools: unknown pool 'nope' (hint: define it in [pools.nope])"),
        ("[pools.rw]\naddrs = '10.0.0.0/24'\n[connections.c]\nremote_addrs = ['192.0.2.1']\n"
         "pools = ['rww']\n[secrets.s]\nsecret = 'x'\n",
         "connections.c.pools: unknown pool 'rww' (hint: did you mean 'rw'?)"),
        ("[connections.c]\nremote_addrs = ['192.0.2.1']\nvips = ['any']\n"
         "[secrets.s]\nsecret = 'x'\n", "connections.c.vips: invalid virtual IP 'any'"),
        ("[connections.c]\nremote_addrs = ['192.0.2.1']\nvips = ['0.0.0.0', '0.0.0.0']\n"
         "[secrets.s]\nsecret = 'x'\n", "connections.c.vips: 0.0.0.0 is listed twice"),
        ("[connections.c]\nremote_addrs = ['192.0.2.1']\nvips = ['0.0.0.0']\n"
         "[connections.c.children.n]\nlocal_ts = ['dynamic', '10.0.0.0/8']\n"
         "[secrets.s]\nsecret = 'x'\n",
         "connections.c.children.n.local_ts: 'dynamic' stands for the virtual IP"),
        ("[daemon]\nvip_hook = 'relative/hook'\n", "daemon.vip_hook: 'relative/hook' must be"),
    ],
)
def test_errors_are_located(text: str, expected: str) -> None:
    assert any(expected in e for e in errors_of(text)), errors_of(text)


def test_dynamic_still_needs_an_address_without_virtual_ips() -> None:
    text = "[connections.c]\nremote_addrs = ['%any']\n[connections.c.children.n]\n" \
        "local_ts = ['10.0.0.0/8']\n[secrets.s]\nsecret = 'x'\n"
    assert any("remote_ts: 'dynamic' needs" in e for e in errors_of(text))
