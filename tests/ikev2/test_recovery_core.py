"""Recovery in the core (RFC 7296 §2.1, §2.4, §2.21, §2.23; RFC 4303 §3.3.3): restart
from configuration, reload removing a connection in use, errors counted through the
recovery table, the shared retransmission schedule, the real local address in NAT-D,
and rekeying before the ESP sequence number space runs out."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import pytest

from pyipsec.config.model import RetransmitConfig
from pyipsec.ikev2.constants import ExchangeType, NotifyType, PayloadType, ProtocolId
from pyipsec.ikev2.events import (
    ChildSaDeleted,
    ChildSaInstalled,
    ChildSaRekeyed,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaFailed,
)
from pyipsec.ikev2.manager import IkeManager
from pyipsec.ikev2.message import Message
from pyipsec.ikev2.sa import ESP_SEQ_MAX, IkeSa, esp_seq_soft_limit
from pyipsec.ikev2.state import ChildSaState, IkeSaState
from pyipsec.nat import NatDetection
from pyipsec.recovery import RetryPolicy

from .harness import A_IP, B_IP, Harness, conn_pair, det_ke_factory


def _live(side: Any) -> list[IkeSa]:
    return [sa for sa in side.mgr.by_id.values() if sa.state is IkeSaState.ESTABLISHED]


def _up(**kw: Any) -> Harness:
    a, b = conn_pair(**kw)
    h = Harness(a, b)
    h.up()
    assert _live(h.a) and _live(h.b)
    return h


# ------------------------------------------------------------------- restart / reload


def test_restart_rebuilds_state_from_config_and_reinitiates() -> None:
    h = _up()
    (old_b,) = _live(h.b)
    (old_child_b,) = old_b.children.values()
    # the daemon of A restarts: nothing survives but the configuration
    conns = list(h.a.mgr.conns.values())
    h.a.mgr = IkeManager(conns, rng=h.a.rng, ke_factory=det_ke_factory(h.a.rng))
    h.a.events.clear()
    for conn in conns:  # start actions run again
        h.a.mgr.initiate(conn.name, None, h.now)
    h.run(5)
    assert h.a.of(IkeSaEstablished) and h.a.of(ChildSaInstalled)
    # INITIAL_CONTACT (§2.4): B forgets the stale SA and its child
    assert old_b.state is IkeSaState.DELETED
    assert [e.spi_in for e in h.b.of(ChildSaDeleted)] == [old_child_b.spi_in]
    (new_b,) = _live(h.b)
    (new_a,) = _live(h.a)
    assert (new_a.spi_i, new_a.spi_r) == (new_b.spi_i, new_b.spi_r)


def test_reload_removing_a_connection_in_use_sends_delete() -> None:
    h = _up()
    (_sa_a,) = _live(h.a)
    h.a.mgr.reload([], h.now)
    h.run(3)
    (req,) = h.sent("a", ExchangeType.INFORMATIONAL, response=False)
    (d,) = h.decrypt(req).get_all(PayloadType.DELETE)
    assert d.protocol == ProtocolId.IKE
    assert h.a.of(ChildSaDeleted) and h.a.of(IkeSaDeleted)
    assert h.b.of(IkeSaDeleted)[0].reason == "deleted by peer" and h.b.of(ChildSaDeleted)
    assert not h.a.mgr.conns
    with pytest.raises(KeyError):
        h.a.mgr.initiate("a2b", None, h.now)


def test_reload_changing_a_connection_replaces_its_sa() -> None:
    h = _up()
    (old,) = _live(h.a)
    changed = replace(old.conn, keepalive_interval=5.0)
    h.a.mgr.reload([changed], h.now)
    h.run(3)
    assert h.a.of(IkeSaDeleted) and h.b.of(IkeSaDeleted)
    h.a.mgr.initiate("a2b", None, h.now)
    h.run(5)
    (new,) = _live(h.a)
    assert new.conn is changed and len(h.a.of(IkeSaEstablished)) == 2


# ------------------------------------------------------------------- errors


def test_setup_gives_up_after_the_retry_policy_schedule() -> None:
    rc = RetransmitConfig(tries=2, timeout=1.0, base=3.0, max_delay=5.0)
    a, b = conn_pair(a_kw={"retransmit": rc})
    h = Harness(a, b)
    h.down = True
    h.a.mgr.initiate("a2b", None, h.now)
    start = h.now
    h.run(60)
    sent = h.sent("a", ExchangeType.IKE_SA_INIT, response=False)
    policy = RetryPolicy.from_retransmit_config(rc)
    assert policy.schedule() == [1.0, 3.0, 5.0]
    assert [round(p.at - start, 3) for p in sent] == [0.0, 1.0, 4.0]
    (f,) = h.a.of(IkeSaFailed)
    assert "retransmissions exhausted" in f.reason
    assert h.a.mgr.error_status() == {"retransmits-exhausted": 1}


def test_half_open_responder_times_out_and_is_counted() -> None:
    h = Harness(*conn_pair(), b_kw={"half_open_timeout": 5.0})
    h.rules.append(lambda p: [] if p.exchange == ExchangeType.IKE_AUTH else None)
    h.a.mgr.initiate("a2b", None, h.now)
    h.run(20)
    assert h.b.mgr.error_status().get("half-open-timeout") == 1
    assert not h.b.mgr.status()


def test_authentication_failure_counted_on_both_sides() -> None:
    a, b = conn_pair()
    h = Harness(a, replace(b, psk=b"a different secret"))
    h.a.mgr.initiate("a2b", None, h.now)
    h.run(10)
    assert h.a.of(IkeSaFailed) and not h.b.of(IkeSaEstablished)
    assert h.b.mgr.error_status() == {"authentication-failed": 1}
    assert h.a.mgr.error_status() == {"authentication-failed-received": 1}


def test_integrity_failures_counted_and_logging_rate_limited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = _up()
    (sa_b,) = _live(h.b)
    last = h.sent("a", ExchangeType.IKE_AUTH, response=False)[-1]
    bad = bytearray(last.data)
    bad[-1] ^= 1
    caplog.set_level(logging.INFO, logger="pyipsec.ike")
    for _ in range(50):
        h.b.mgr.receive_datagram(bytes(bad), (B_IP, 500), (A_IP, 500), h.now)
    assert h.b.mgr.datagrams_to_send(h.now) == []  # never answered (§3.14)
    assert sa_b.errors.status() == {"integrity-check-failed": 50}
    lines = [r for r in caplog.records if "integrity-check-failed" in r.getMessage()]
    assert 1 <= len(lines) <= 5  # the table row is rate-limited


def test_invalid_ike_spi_counted() -> None:
    h = _up()
    (sa_a,) = _live(h.a)
    data = sa_a.build(ExchangeType.INFORMATIONAL, 5, [], response=False)
    hdr = Message.parse(data)
    forged = Message(
        hdr.spi_i, b"\x01" * 8, hdr.exchange, hdr.flags, hdr.message_id, hdr.payloads
    ).serialise()
    h.b.mgr.receive_datagram(forged, (B_IP, 500), (A_IP, 500), h.now)
    (reply,) = h.b.mgr.datagrams_to_send(h.now)
    assert Message.parse(reply[0]).notify(NotifyType.INVALID_IKE_SPI) is not None
    assert h.b.mgr.error_status() == {"invalid-ike-spi": 1}


# ------------------------------------------------------------------- local address


def test_initiator_nat_d_uses_the_routed_local_address() -> None:
    a, b = conn_pair(a_kw={"local_addrs": ()})
    asked: list[str] = []

    def route(ip: str) -> str | None:
        asked.append(ip)
        return A_IP

    h = Harness(a, b)
    h.a.mgr.local_address_for = route
    h.a.mgr.initiate("a2b", None, h.now)
    h.flush()
    (init,) = h.sent("a", ExchangeType.IKE_SA_INIT, response=False)
    assert init.src == (A_IP, 500) and asked == [B_IP]
    msg = init.message()
    assert msg is not None
    n = msg.notify(NotifyType.NAT_DETECTION_SOURCE_IP)
    assert n is not None and n.data == NatDetection.compute_hash(msg.spi_i, msg.spi_r, A_IP, 500)
    h.run(5)
    (sa_a,) = _live(h.a)
    (sa_b,) = _live(h.b)
    # no NAT on either side: no floating, no UDP encapsulation
    assert not (sa_a.nat_local or sa_a.nat_remote or sa_b.nat_local or sa_b.nat_remote)
    assert sa_a.local == (A_IP, 500)


def test_wildcard_local_address_is_the_last_resort(caplog: pytest.LogCaptureFixture) -> None:
    a, _b = conn_pair(a_kw={"local_addrs": ()})
    mgr = IkeManager([a], local_addresses=("198.51.100.9",), local_address_for=lambda ip: None)
    assert mgr._local_ip(a, B_IP) == "198.51.100.9"
    mgr = IkeManager([a], local_addresses=("198.51.100.9",), local_address_for=lambda ip: A_IP)
    assert mgr._local_ip(a, B_IP) == "198.51.100.9"  # routed address not one we listen on
    mgr = IkeManager([a])
    with caplog.at_level(logging.WARNING, logger="pyipsec.ike"):
        assert mgr._local_ip(a, B_IP) == "0.0.0.0"
        assert mgr._local_ip(a, "2001:db8::1") == "::"
    assert "NAT detection will see a NAT" in caplog.text


# ------------------------------------------------------------------- ESP sequence numbers


def test_rekey_before_the_sequence_number_space_runs_out() -> None:
    h = _up()
    (sa_a,) = _live(h.a)
    (ca,) = sa_a.children.values()
    assert esp_seq_soft_limit(False) == ESP_SEQ_MAX - (ESP_SEQ_MAX >> 6)
    h.a.mgr.notify_traffic(ca.spi_in, h.now, packets_out=10, seq_out=1000)
    assert ca.state is ChildSaState.INSTALLED
    # the data plane started near 2^32 (or sent a lot): rekey now, never wrap
    h.a.mgr.notify_traffic(ca.spi_in, h.now, packets_out=20, seq_out=2**32 - 50)
    assert ca.state is ChildSaState.REKEYING
    h.run(3)
    (ev,) = h.a.of(ChildSaRekeyed)
    assert ev.old_spi_in == ca.spi_in and ev.info.spi_in != ca.spi_in
    assert [e.spi_in for e in h.a.of(ChildSaDeleted)] == [ca.spi_in]
    assert h.a.mgr.status()[0]["children"][0]["seq_out"] == 0


def test_esn_sequence_space_is_64_bits() -> None:
    h = _up(esp=("aes256gcm16-esn",))
    (sa_a,) = _live(h.a)
    (ca,) = sa_a.children.values()
    assert ca.suite.esn
    h.a.mgr.notify_traffic(ca.spi_in, h.now, packets_out=1, seq_out=2**32 + 5)
    assert ca.state is ChildSaState.INSTALLED
    h.a.mgr.notify_traffic(ca.spi_in, h.now, packets_out=2, seq_out=esp_seq_soft_limit(True))
    assert ca.state is ChildSaState.REKEYING


def test_keepalive_deadline_is_part_of_next_timer() -> None:
    from .harness import Nat

    a, b = conn_pair(a_kw={"keepalive_interval": 7.0})
    h = Harness(a, b, nat=Nat())
    h.up()
    (sa_a,) = _live(h.a)
    assert sa_a.nat_local and sa_a.keepalive.enabled
    due = sa_a.keepalive.next_deadline()
    assert due is not None and h.a.mgr.next_timer() == due
    h.run(due - h.now + 0.001)
    # RFC 3948 §2.3/§4: handed out once, from the floated local address, no marker
    assert h.keepalives == [(h.keepalives[0][0], "a", (A_IP, 4500), ("192.0.2.2", 4500))]
    assert h.a.mgr.keepalives_to_send(h.now) == []
