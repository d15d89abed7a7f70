"""Root-only tests: the TUN device in a private namespace, and the full demo topology
(two daemons through a NAT router, ping across).  Everything is removed afterwards."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from pyipsec.demo import RIGHT_INNER, DemoLab, run_demo

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)"),
    pytest.mark.skipif(shutil.which("nft") is None, reason="needs nftables"),
]


def test_tun_device_in_private_namespace() -> None:
    ns = f"pyipsec-test-{os.getpid()}-tun"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        code = textwrap.dedent(
            """
            import subprocess
            from pyipsec.daemon.tun import TunDevice, TunError, open_tun
            t = TunDevice("pyt0", 1380).open(("203.0.113.1/32", "2001:db8:a::1/128"))
            assert t.add_route("203.0.113.64/26", "203.0.113.1")
            assert t.add_route("203.0.113.64/26", "203.0.113.1")  # idempotent
            assert t.add_route("2001:db8:b::/64")
            assert not t.add_route("203.0.113.128/26", "192.0.2.99")  # bad prefsrc
            assert t.routes == ["2001:db8:b::/64", "203.0.113.64/26"]
            out = subprocess.run(["ip", "route"], capture_output=True, text=True).stdout
            assert "203.0.113.64/26 dev pyt0" in out and "src 203.0.113.1" in out
            link = subprocess.run(["ip", "link", "show", "pyt0"], capture_output=True,
                                  text=True).stdout
            assert "mtu 1380" in link and ",UP" in link
            t.remove_route("2001:db8:b::/64")
            t.remove_route("2001:db8:b::/64")
            assert t.routes == ["203.0.113.64/26"]
            with t:
                pass
            assert t.fd == -1
            try:
                open_tun("x", path="/nonexistent")
            except TunError:
                pass
            else:
                raise AssertionError
            try:
                open_tun("bad/name")
            except TunError:
                pass
            else:
                raise AssertionError
            print("tun-ok")
            """
        )
        r = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "tun-ok" in r.stdout, r.stderr
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def test_daemons_through_nat_ping_across() -> None:
    lab = DemoLab(prefix=f"pyipsec-test-{os.getpid()}", say=lambda s: None)
    try:
        lab.build()
        lab.write_configs()
        lab.start_daemon("right")
        lab.start_daemon("left")
        res = lab.client("left").call("up", name="demo", child="net", timeout=20)
        assert res["established"] is True
        r = lab.ping("left", RIGHT_INNER, count=3)
        assert r.returncode == 0, r.stdout + lab.log_tail("left") + lab.log_tail("right")
        st = lab.client("right").call("status")
        (sa,) = st["ike_sas"]
        assert sa["remote"]["address"] == "192.0.2.1" and sa["nat"]["remote"] is True
        (child,) = st["child_sas"]
        assert child["encap"] is True and child["packets_in"] >= 3
    finally:
        lab.close()
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"pyipsec-test-{os.getpid()}" not in out
    assert not lab.tmp.exists()


def test_run_demo(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_demo() == 0
    out = capsys.readouterr().out
    assert "the ping went through the IPsec tunnel" in out and "cleaning up" in out
