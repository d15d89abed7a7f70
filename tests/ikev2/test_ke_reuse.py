"""RFC 7296 §2.12: reuse of the responder's IKE_SA_INIT key exchange value (off by
default; bounded by age and count; only Diffie-Hellman values; forgotten on time)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from pyipsec.crypto.ke import KeyExchange, new_key_exchange
from pyipsec.ikev2.constants import DhId, ExchangeType, PayloadType
from pyipsec.ikev2.ke_reuse import KeReuse
from pyipsec.ikev2.manager import IkeManager
from pyipsec.ikev2.message import Message

from .harness import conn_pair


def _responder(**kw: Any) -> tuple[IkeManager, list[IkeManager]]:
    a, b = conn_pair()
    b = dataclasses.replace(b, remote_id="%any")
    resp = IkeManager([b], **kw)
    inits = []
    for i in range(3):
        ai = dataclasses.replace(a, name=f"a{i}", local_id=f"moon{i}.example.net")
        inits.append(IkeManager([ai]))
    return resp, inits


def _handshake(resp: IkeManager, init: IkeManager, now: float) -> bytes:
    """Set up one tunnel; return the KE data of the responder's IKE_SA_INIT answer."""
    sa = init.initiate(next(iter(init.conns)), None, now)
    ke = b""
    pending = init.datagrams_to_send(now)
    while pending:
        for data, local, remote in pending:
            resp.receive_datagram(data, remote, local, now)
        for data, local, remote in resp.datagrams_to_send(now):
            msg = Message.parse(data)
            if msg.exchange == ExchangeType.IKE_SA_INIT:
                kp = msg.get(PayloadType.KE)
                assert kp is not None
                ke = kp.data
            init.receive_datagram(data, remote, local, now)
        pending = init.datagrams_to_send(now)
    assert sa.established
    while resp.next_event() is not None:
        pass
    return ke


def _sk_ei(resp: IkeManager) -> list[bytes]:
    keys = [sa.keys.sk_ei for sa in resp.by_id.values() if sa.keys is not None]
    assert len(set(keys)) == len(keys)  # every IKE SA has its own keys (nonces, SPIs)
    return keys


def test_off_by_default_every_ike_sa_gets_a_fresh_value() -> None:
    resp, inits = _responder()
    assert not resp.ke_reuse.enabled
    kes = [_handshake(resp, init, 100.0) for init in inits]
    assert len(set(kes)) == 3
    assert resp.ke_reuse.next_deadline() is None


def test_reused_within_the_bounds_then_forgotten() -> None:
    resp, inits = _responder(ke_reuse_seconds=10.0, ke_reuse_count=2)
    k0 = _handshake(resp, inits[0], 100.0)
    k1 = _handshake(resp, inits[1], 101.0)
    assert k0 == k1  # reused (§2.12) ...
    assert len(_sk_ei(resp)) == 2  # ... but the IKE SAs' keys differ
    k2 = _handshake(resp, inits[2], 102.0)
    assert k2 != k1  # the count bound: a new value after 2 IKE SAs
    # the age bound, and the value is dropped by the timer even when idle
    assert resp.ke_reuse.next_deadline() == 112.0
    nxt = resp.next_timer()
    assert nxt is not None and nxt <= 112.0
    resp.handle_timer(112.0)
    assert resp.ke_reuse.next_deadline() is None


def test_age_bound_and_clock_going_back() -> None:
    made: list[KeyExchange] = []

    def factory(group: int) -> KeyExchange:
        ke = new_key_exchange(group)
        made.append(ke)
        return ke

    reuse = KeReuse(factory, max_age=5.0, max_uses=100)
    first = reuse.get(DhId.CURVE25519, 10.0)
    assert reuse.get(DhId.CURVE25519, 14.9) is first
    assert reuse.get(DhId.CURVE25519, 15.0) is not first  # expired at born + max_age
    second = made[-1]
    third = reuse.get(DhId.CURVE25519, 3.0)  # a clock before its birth: a new one
    assert third is made[-1] and third is not second
    ecp = reuse.get(DhId.ECP_256, 3.5)  # one value per group
    assert ecp is made[-1] and reuse.get(DhId.CURVE25519, 3.5) is third
    assert len(made) == 4
    reuse.forget()
    assert reuse.next_deadline() is None


@pytest.mark.interpreted_core
def test_values_that_cannot_be_reused_are_never_kept() -> None:
    class Kem(KeyExchange):  # stands for a KEM (ML-KEM): no value to reuse
        def shared_secret(self, peer_public: bytes) -> bytes:
            return b"s" * 32

    reuse = KeReuse(lambda group: Kem(group, b"p" * 32), max_age=60.0)
    assert reuse.get(35, 1.0) is not reuse.get(35, 1.0)
    assert reuse.next_deadline() is None


def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError):
        KeReuse(new_key_exchange, max_age=-1.0)
    with pytest.raises(ValueError):
        KeReuse(new_key_exchange, max_age=1.0, max_uses=0)


def test_shutdown_forgets_the_value() -> None:
    resp, inits = _responder(ke_reuse_seconds=60.0)
    _handshake(resp, inits[0], 100.0)
    assert resp.ke_reuse.next_deadline() == 160.0
    resp.shutdown(101.0)
    assert resp.ke_reuse.next_deadline() is None
