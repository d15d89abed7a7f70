"""The Prometheus endpoint (``[daemon] metrics``): a daemon with the fake core, scraped
over HTTP and parsed with prometheus_client's own parser."""

from __future__ import annotations

import asyncio
import socket
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pyipsec.config.loader import ConfigError, load_config_text, parse_metrics_address
from pyipsec.daemon.runtime import Daemon
from pyipsec.ikev2 import events as ev
from pyipsec.ikev2.api import ChildSaView, IkeSaView
from pyipsec.ikev2.constants import ExchangeType
from pyipsec.ikev2.state import ChildSaState, IkeSaState

from .fakes import FakeManager, child_info

CONF = """
[daemon]
listen = ["127.0.0.1"]
ike_port = 0
natt_port = 0
metrics = "{metrics}"
[connections.c]
remote_addrs = ["127.0.0.2"]
[connections.c.children.net]
local_ts = ["203.0.113.0/26"]
remote_ts = ["203.0.113.64/26"]
start_action = "{start}"
[secrets.s]
secret = "x"
"""

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(address: str) -> tuple[Samples, set[str]]:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as r:
        text = r.read().decode()
    samples: Samples = {}
    families = set()
    for fam in text_string_to_metric_families(text):
        families.add(fam.name)
        for s in fam.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples, families


def val(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def ike_view(ike_id: int, state: IkeSaState, initiator: bool = True) -> IkeSaView:
    return IkeSaView(
        ike_id, "c", state, initiator, ("127.0.0.1", 500), ("127.0.0.2", 500), "a", "b"
    )


def set_traffic(d: Daemon, spi: int, n: int) -> None:
    c = d.dp.children[spi]
    c.bytes_in, c.packets_in, c.bytes_out, c.packets_out = 100 * n, n, 200 * n, 2 * n
    c.drops_selector = n
    d.dp.changed[c] = None  # as the data plane marks an SA whose counters changed


def test_metrics_endpoint() -> None:
    cfg = load_config_text(CONF.format(metrics="127.0.0.1:0", start="start"))
    assert cfg.metrics == "127.0.0.1:0"
    mgr = FakeManager()

    async def go() -> None:
        d = Daemon(cfg, manager_factory=lambda c: mgr, use_tun=False, control=False)
        await d.start()
        try:
            assert mgr.initiated == [("c", "net")]  # start action: handshake timer running
            m = d.metrics
            assert m is not None and m.port != 0
            addr = m.address
            s, fams = await asyncio.to_thread(scrape, addr)
            assert val(s, "pyipsec_ike_sas", state="established") == 0
            assert val(s, "pyipsec_ike_sas_half_open") == 0
            assert val(s, "pyipsec_ike_handshake_seconds_count") == 0

            mgr.events += [
                ev.IkeSaEstablished(1, "c", ("127.0.0.1", 4500), ("127.0.0.2", 4500)),
                ev.ChildSaInstalled(child_info(100)),
            ]
            d.pump()
            set_traffic(d, 100, 3)
            mgr.ike_views = [
                ike_view(1, IkeSaState.ESTABLISHED),
                ike_view(5, IkeSaState.INIT_DONE, initiator=False),
            ]
            mgr.child_views = [ChildSaView(1, "c", "net", 100, 101, ChildSaState.INSTALLED)]
            mgr.errors = {"retransmits-exhausted": 2, "cookie-required": 1}
            mgr.half_open = {"sas": 1, "bytes": 5816, "peak": 9000, "budget": 64 << 20}
            d.dp.drops.unknown_spi = 4
            for _ in range(3):  # the core's IKE counters (ikev2.counters)
                mgr.ike_counters.message(ExchangeType.INFORMATIONAL, True, True, "c")
            # the 1 s refresh timer publishes it (the scrape never calls into the loop)
            await asyncio.sleep(1.3)
            s, fams = await asyncio.to_thread(scrape, addr)
            assert val(s, "pyipsec_ike_sas", state="established") == 1
            assert val(s, "pyipsec_ike_sas", state="init-done") == 1
            assert val(s, "pyipsec_ike_sas_half_open") == 1
            assert val(s, "pyipsec_half_open_bytes") == 5816
            assert val(s, "pyipsec_half_open_bytes_peak") == 9000
            assert val(s, "pyipsec_half_open_bytes_budget") == 64 << 20
            assert val(s, "pyipsec_child_sas", state="installed") == 1
            assert val(s, "pyipsec_child_sas_installed") == 1
            assert val(s, "pyipsec_child_bytes_in_total", conn="c", child="net") == 300
            assert val(s, "pyipsec_child_packets_out_total", conn="c", child="net") == 6
            assert val(s, "pyipsec_child_drops_total", conn="c", child="net", kind="selector") == 3
            assert val(s, "pyipsec_dataplane_drops_total", kind="unknown_spi") == 4
            assert val(s, "pyipsec_ike_errors_total", kind="retransmits-exhausted") == 2
            assert val(s, "pyipsec_ike_errors_total", kind="no-proposal-chosen") == 0
            assert val(s, "pyipsec_ike_retransmits_exhausted_total") == 2
            msgs = "pyipsec_ike_messages_total"
            assert val(s, msgs, exchange="INFORMATIONAL", direction="in", kind="request") == 3
            assert val(s, msgs, exchange="IKE_AUTH", direction="out", kind="response") == 0
            assert val(s, "pyipsec_ike_cookie_required_received_total") == 1
            assert val(s, "pyipsec_ike_established_total", conn="c", role="initiator") == 1
            assert val(s, "pyipsec_ike_handshake_seconds_count") == 1
            assert val(s, "pyipsec_ike_handshake_seconds_bucket", le="+Inf") == 1
            assert 0 <= val(s, "pyipsec_ike_handshake_seconds_sum") < 5
            assert s[("pyipsec_metrics_snapshot_age_seconds", frozenset())] < 2

            # rekeys, a deleted Child SA (its counters are kept), a dead peer
            mgr.events += [
                ev.ChildSaRekeyed(100, child_info(102)),
                ev.IkeSaRekeyed(1, 2, conn="c"),
            ]
            d.pump()
            set_traffic(d, 100, 5)  # traffic after the last refresh, before the delete
            set_traffic(d, 102, 1)
            mgr.events += [
                ev.ChildSaDeleted(100, 101, ike_id=2, conn="c", child="net"),
                ev.PeerDead(2, "c"),
            ]
            d.pump()
            assert 100 not in d.dp.children
            # a removal without an event (route failure path): last values seen are kept
            m.refresh()
            set_traffic(d, 102, 2)
            m.refresh()
            d.dp.uninstall(102, "test")
            m.refresh()
            s, _ = await asyncio.to_thread(scrape, addr)
            assert val(s, "pyipsec_child_bytes_in_total", conn="c", child="net") == 700
            assert val(s, "pyipsec_child_packets_in_total", conn="c", child="net") == 7
            assert val(s, "pyipsec_child_sas_installed") == 0
            assert val(s, "pyipsec_child_rekeys_total", conn="c", child="net") == 1
            assert val(s, "pyipsec_ike_rekeys_total", conn="c") == 1
            assert val(s, "pyipsec_dpd_failures_total", conn="c") == 1
            for name in (
                "pyipsec_ike_sas",
                "pyipsec_child_bytes_out",
                "pyipsec_ike_failed",
                "pyipsec_ike_handshake_seconds",
            ):
                assert name in fams
        finally:
            await d.close()
        assert d.metrics is None
        with pytest.raises(OSError):
            await asyncio.to_thread(scrape, addr)

    asyncio.run(go())


def test_handshake_not_timed_without_new_ike_sa() -> None:
    """An initiate that only adds a child (no IkeSaEstablished) is forgotten; a later
    IKE SA the core set up by itself is not timed from it."""
    cfg = load_config_text(CONF.format(metrics="127.0.0.1:0", start="none"))
    mgr = FakeManager()

    async def go() -> None:
        d = Daemon(cfg, manager_factory=lambda c: mgr, use_tun=False, control=False)
        await d.start()
        try:
            m = d.metrics
            assert m is not None
            d.initiate("c", "net")
            mgr.events.append(ev.ChildSaInstalled(child_info(100)))
            d.pump()
            assert m.pending == {}
            mgr.events.append(ev.IkeSaEstablished(3, "c", ("127.0.0.1", 500), ("127.0.0.2", 500)))
            mgr.events.append(
                ev.IkeSaEstablished(4, "c", ("127.0.0.1", 500), ("127.0.0.2", 500), initiator=False)
            )
            mgr.events.append(ev.IkeSaFailed(5, "c", "timeout"))
            d.pump()
            m.refresh()
            s, _ = await asyncio.to_thread(scrape, m.address)
            assert val(s, "pyipsec_ike_handshake_seconds_count") == 0
            assert val(s, "pyipsec_ike_established_total", conn="c", role="responder") == 1
            assert val(s, "pyipsec_ike_failed_total", conn="c") == 1
        finally:
            await d.close()

    asyncio.run(go())


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback")
def test_metrics_ipv6() -> None:
    cfg = load_config_text(CONF.format(metrics="[::1]:0", start="none"))
    mgr = FakeManager()

    async def go() -> None:
        d = Daemon(cfg, manager_factory=lambda c: mgr, use_tun=False, control=False)
        await d.start()
        try:
            assert d.metrics is not None
            assert d.metrics.address.startswith("[::1]:")
            s, _ = await asyncio.to_thread(scrape, d.metrics.address)
            assert val(s, "pyipsec_ike_sas", state="established") == 0
        finally:
            await d.close()

    asyncio.run(go())


def test_metrics_off_by_default() -> None:
    cfg = load_config_text(CONF.format(metrics="", start="none"))
    assert cfg.metrics == ""
    mgr = FakeManager()

    async def go() -> None:
        d = Daemon(cfg, manager_factory=lambda c: mgr, use_tun=False, control=False)
        await d.start()
        try:
            assert d.metrics is None
        finally:
            await d.close()

    asyncio.run(go())


def test_metrics_port_in_use_fails_start() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = load_config_text(CONF.format(metrics=f"127.0.0.1:{port}", start="none"))
        mgr = FakeManager()

        async def go() -> None:
            d = Daemon(cfg, manager_factory=lambda c: mgr, use_tun=False, control=False)
            with pytest.raises(OSError):
                await d.start()
            assert d.metrics is None and d.udp == []

        asyncio.run(go())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9712", ("127.0.0.1", 9712)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("[::1]:9712", ("::1", 9712)),
        ("[::]:80", ("::", 80)),
        ("", None),
        ("  ", None),
    ],
)
def test_parse_metrics_address(text: str, expected: Any) -> None:
    assert parse_metrics_address(text) == expected


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ('"127.0.0.1"', "expected host:port"),
        ('"9712"', "expected host:port"),
        ('"localhost:9712"', "invalid IP address"),
        ('"127.0.0.1:99999"', "invalid port"),
        ('"127.0.0.1:http"', "invalid port"),
        ('"::1:9712"', "expected host:port"),
        ('"[::1]9712"', "invalid address"),
        ('"[fe80::zz]:1"', "invalid IP address"),
        ("9712", "expected a string"),
    ],
)
def test_metrics_config_errors(value: str, needle: str) -> None:
    text = CONF.format(metrics="", start="none").replace('metrics = ""', f"metrics = {value}")
    with pytest.raises(ConfigError) as ei:
        load_config_text(text)
    errs = [e for e in ei.value.errors if e.location == "daemon.metrics"]
    assert len(errs) == 1, ei.value.errors
    assert needle in errs[0].message


def test_refresh_visits_only_the_child_sas_that_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    """After the first refresh, a refresh reads the counters of the SAs that changed or
    left since the previous one (DataPlane.take_changed), never every installed SA;
    the per-(conn, child) totals stay the sum over every SA ever installed."""
    from types import SimpleNamespace

    from pyipsec.daemon import metrics as metrics_mod
    from pyipsec.daemon.dataplane import ChildState, DataPlane

    loop = asyncio.new_event_loop()
    dp = DataPlane(loop, [], lambda r: None, clock=lambda: 1.0)
    for i in range(20):
        assert dp.install(child_info(0x100 + 2 * i, ike_id=i + 1)) is not None
    d: Any = SimpleNamespace(core=FakeManager(), dp=dp, now=lambda: 1.0)
    m = metrics_mod.Metrics(d, "127.0.0.1:0")
    read: list[int] = []
    real = metrics_mod._traffic

    def counting(c: ChildState) -> tuple[int, ...]:
        read.append(c.info.spi_in)
        return real(c)

    monkeypatch.setattr(metrics_mod, "_traffic", counting)

    def bytes_in() -> int:
        assert m.snapshot is not None
        ((_, _, t),) = m.snapshot.traffic
        return t[0]

    try:
        m.refresh()
        assert len(read) == 20 and m.snapshot is not None and m.snapshot.traffic == ()
        read.clear()
        c = dp.children[0x104]
        c.bytes_in, c.packets_in = 50, 1
        dp.changed[c] = None
        dp.traffic_reports(1.0)  # the core's report took it: the metrics still see it
        m.refresh()
        assert read == [0x104] and bytes_in() == 50
        read.clear()
        m.refresh()
        assert read == [] and bytes_in() == 50  # nothing changed: nothing read
        c.bytes_in, c.packets_in = 70, 2
        dp.changed[c] = None
        assert dp.uninstall(0x104) is c  # left without ChildSaDeleted: last values kept
        m.refresh()
        assert read == [0x104] and bytes_in() == 70
        assert m.snapshot is not None and m.snapshot.child_installed == 19
    finally:
        dp.close()
        loop.close()
