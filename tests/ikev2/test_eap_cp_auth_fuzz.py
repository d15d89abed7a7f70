"""Property tests: hostile EAP, CP and AUTH payloads in authenticated IKE_AUTH rounds
(RFC 7296 §2.16 EAP, §3.15 CP, §2.15 AUTH, §2.21 error handling), in both roles.

A road-warrior client A (EAP-MD5 with a virtual IP request) and a gateway B (PSK,
leasing from a pool) run multi-round IKE_AUTH in step mode; one IKE_AUTH message of
either side is decrypted, its payload objects are mutated (dropped, duplicated,
replaced by random EAP/CP/AUTH payloads, bit-flipped bodies), re-protected with the
sender's keys under the same, an older or a later Message ID, and delivered (with or
without the original, possibly twice).  A second, healthy PSK IKE SA between the same
managers must not notice anything.

Checked: no exception escapes (the managers' safety nets log with a traceback: any
such record fails), the victim ends up established on both sides or freed -- no
half-open state and no online lease survive the half-open timeout -- and the bystander
still answers a liveness check.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyipsec.config.model import ChildConfig, ConnectionConfig, PoolConfig
from pyipsec.ikev2.constants import ExchangeType, NotifyType, PayloadType
from pyipsec.ikev2.events import IkeSaFailed
from pyipsec.ikev2.manager import IkeManager
from pyipsec.ikev2.payloads import (
    AuthPayload,
    CpPayload,
    EapPayload,
    NotifyPayload,
    UnknownPayload,
)
from pyipsec.ikev2.sa import IkeSa
from pyipsec.ikev2.state import IKE_FINAL, IkeSaState
from pyipsec.pools import pool_range

from .eap_pairs import PASSWORD, USER, USERS
from .harness import Harness, Held, Side, child, conn_pair, det_ke_factory
from .test_sa_cert_auth import host, trust

VICTIM = ("a2b", "b2a")
BYSTANDER = ("a2b2", "b2a2")
#: IKE_AUTH exchanges of the victim with EAP-MD5: IDi+CP | EAP-Identity | EAP-MD5 |
#: final AUTH (+CP); EAP-MSCHAPv2 and EAP-TLS take more
ROUNDS = 8
METHODS = st.sampled_from(["eap-md5", "eap-md5+pubkey", "eap-mschapv2", "eap-tls"])
#: examples per property in CI; PYIPSEC_FUZZ_EXAMPLES raises it for a campaign by hand
EXAMPLES = int(os.environ.get("PYIPSEC_FUZZ_EXAMPLES", "80"))


def _pool() -> PoolConfig:
    first, last = pool_range("10.3.0.0/28")
    return PoolConfig("rw", "10.3.0.0/28", first, last)


def _conns(method: str) -> tuple[list[ConnectionConfig], list[ConnectionConfig]]:
    a_kw: dict[str, Any] = {"local_auth": method}
    b_kw: dict[str, Any] = {"remote_auth": method}
    if method == "eap-tls":
        a_kw |= {"local_credentials": host(USER), "remote_trust": trust()}
        b_kw |= {"local_credentials": host("sun.example.net"), "remote_trust": trust()}
    if method.endswith("+pubkey"):  # the gateway authenticates with its certificate
        a_kw = {"local_auth": method.removesuffix("+pubkey"), "remote_auth": "pubkey",
                "remote_trust": trust()}
        b_kw = {"remote_auth": method.removesuffix("+pubkey"), "local_auth": "pubkey",
                "local_credentials": host("sun.example.net")}
    a1, b1 = conn_pair(
        a_children=[ChildConfig("net", (), child(local=("10.2.0.0/16",)).local_ts)],
        b_children=[ChildConfig("net", child(local=("10.2.0.0/16",)).local_ts, ())],
        a_kw={"local_id": USER, "eap_secret": PASSWORD, "vips": ("0.0.0.0",), **a_kw},
        b_kw={"remote_id": "%any", "eap_users": USERS, "remote_eap_id": "%any",
              "pools": ("rw",), **b_kw},
    )  # fmt: skip
    a2, b2 = conn_pair(
        a_children=[child("net2", local=("10.11.0.0/16",), remote=("10.12.0.0/16",))],
        b_children=[child("net2", local=("10.12.0.0/16",), remote=("10.11.0.0/16",))],
    )
    a2 = replace(a2, name="a2b2", local_id="moon2.example.net", remote_id="sun2.example.net")
    b2 = replace(b2, name="b2a2", local_id="sun2.example.net", remote_id="moon2.example.net")
    return [a2, a1], [b2, b1]


def make(method: str = "eap-md5") -> Harness:
    """The bystander up; the victim (EAP ``method``) not yet initiated."""
    (a2, a1), (b2, b1) = _conns(method)
    h = Harness(a1, b1, seed="eapfuzz")
    h.a.mgr = IkeManager([a2, a1], rng=h.a.rng, ke_factory=det_ke_factory(h.a.rng))
    h.b.mgr = IkeManager(
        [b2, b1], rng=h.b.rng, ke_factory=det_ke_factory(h.b.rng), pools=[_pool()]
    )
    h.a.mgr.initiate("a2b2", None, h.now)
    h.run(3)
    assert len(live(h.a, BYSTANDER)) == 1 and len(live(h.b, BYSTANDER)) == 1
    return h


def live(side: Side, names: tuple[str, ...]) -> list[IkeSa]:
    return [
        sa for sa in side.mgr.by_id.values() if sa.conn.name in names and sa.state not in IKE_FINAL
    ]


# ---------------------------------------------------------------------------- mutations

_TYPES = (PayloadType.EAP, PayloadType.CP, PayloadType.AUTH)
_FLIPPED = (*_TYPES, PayloadType.CERT, PayloadType.IDr)


def _random_payload(draw: Any) -> tuple[int, Any]:
    kind = draw(st.sampled_from(_TYPES))
    if kind == PayloadType.EAP:
        eap = draw(
            st.one_of(
                st.binary(max_size=40),
                st.builds(
                    lambda c, i, t, d: bytes([c, i]) + (6 + len(d)).to_bytes(2, "big")
                    + bytes([t]) + d[:1] + d,
                    st.integers(1, 6), st.integers(0, 255), st.integers(0, 60),
                    st.binary(max_size=24),
                ),
            )
        )  # fmt: skip
        return (PayloadType.EAP, EapPayload(eap))
    if kind == PayloadType.CP:
        attrs = draw(
            st.lists(
                st.tuples(st.integers(0, 30), st.binary(max_size=20)), max_size=5
            )
        )
        return (PayloadType.CP, CpPayload(draw(st.integers(0, 5)), attrs))
    method = draw(st.sampled_from([1, 2, 3, 9, 14, 0, 255]))
    return (PayloadType.AUTH, AuthPayload(method, draw(st.binary(max_size=64))))


@st.composite
def mutations(draw: Any) -> list[tuple[str, Any]]:
    """A list of operations on a payload list (applied in order by :func:`mutate`)."""
    ops: list[tuple[str, Any]] = []
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["drop", "dup", "add", "flip", "replace", "shuffle"]))
        if op in ("drop", "dup", "flip"):
            types = _FLIPPED if op == "flip" else _TYPES
            ops.append((op, (draw(st.sampled_from(types)), draw(st.integers(0, 4095)))))
        elif op in ("add", "replace"):
            ops.append((op, _random_payload(draw)))
        else:
            ops.append((op, draw(st.randoms(use_true_random=False))))
    return ops


def _body(p: Any) -> bytes:
    raw: bytes = p.serialise_body()
    return raw


def mutate(payloads: list[tuple[int, Any]], ops: list[tuple[str, Any]]) -> list[Any]:
    out = list(payloads)
    for op, arg in ops:
        if op == "drop":
            out = [p for p in out if p[0] != arg[0]]
        elif op == "dup":
            out += [p for p in out if p[0] == arg[0]]
        elif op == "add":
            out.append(arg)
        elif op == "replace":
            out = [p for p in out if p[0] != arg[0]] + [arg]
        elif op == "flip":
            ptype, salt = arg
            for i, (t, obj) in enumerate(out):
                if t == ptype:
                    body = _body(obj)
                    if body:
                        j = salt % len(body)
                        body = body[:j] + bytes([body[j] ^ ((salt & 0xFF) | 1)]) + body[j + 1 :]
                    out[i] = (t, UnknownPayload(t, False, body))
        elif op == "shuffle":
            arg.shuffle(out)
    return out


# ---------------------------------------------------------------------------- driving


def _victim_sa(side: Side) -> IkeSa | None:
    sas = [sa for sa in side.mgr.by_id.values() if sa.conn.name in VICTIM]
    return sas[-1] if sas else None


def _forge(h: Harness, held: Held, ops: list[tuple[str, Any]], mid_shift: int) -> bytes:
    sender = h.side(held.sender)
    sa = _victim_sa(sender)
    assert sa is not None
    msg = h.decrypt(held.pkt)
    payloads = mutate(list(msg.payloads), ops)
    mid = max(0, held.message_id + mid_shift)
    return sa.build(ExchangeType.IKE_AUTH, mid, payloads, held.is_response)


def _to(h: Harness, name: str, data: bytes, src_side: str) -> None:
    src = h.side(src_side)
    dst = h.side(name)
    dst.mgr.receive_datagram(data, (dst.ip, 500), (src.ip, 500), h.now)
    h.flush()


def _answered(h: Harness, mid: int) -> None:
    """§2.21.2: a protected IKE_AUTH request (before or during EAP) is answered; a
    refusal carries an error notify (AUTHENTICATION_FAILED, or INVALID_SYNTAX for a
    request that does not parse) or an EAP-Failure (RFC 3748 §4.2)."""
    answers = [x for x in h.pending("b") if x.message_id == mid and x.is_response]
    assert answers, f"the forged IKE_AUTH request #{mid} got no answer"
    if not h.b.of(IkeSaFailed):
        return
    answer = h.decrypt(answers[0].pkt)
    errors = [
        n for _, n in answer.payloads
        if (isinstance(n, NotifyPayload) and n.type < 16384)
        or (isinstance(n, EapPayload) and n.data[:1] == b"\x04")
    ]  # fmt: skip
    assert errors, f"refused without an error notify or EAP-Failure: {answer.payloads}"


def attack(
    h: Harness,
    role: str,
    rnd: int,
    ops: list[tuple[str, Any]],
    mid_shift: int,
    original: str,
) -> None:
    """Run the victim in step mode; the IKE_AUTH message #``rnd`` sent by ``role``'s
    peer ("responder": A's request to B; "initiator": B's response to A) is forged."""
    sender = "a" if role == "responder" else "b"
    receiver = "b" if sender == "a" else "a"
    h.hold()
    h.a.mgr.initiate("a2b", None, h.now)
    done = False
    for _ in range(60):
        pend = h.pending()
        if not pend:
            break
        p = pend[0]
        target = (
            not done
            and p.sender == sender
            and p.exchange == ExchangeType.IKE_AUTH
            and p.message_id == rnd
        )
        if not target:
            h.held.remove(p)
            h._deliver(p.pkt)
            h.flush()
            continue
        done = True
        h.held.remove(p)
        forged = _forge(h, p, ops, mid_shift)
        if original == "before":
            _to(h, receiver, p.pkt.data, sender)
        victim_b = _victim_sa(h.b)
        in_eap = victim_b is not None and victim_b.state in (
            IkeSaState.INIT_DONE,
            IkeSaState.EAP,
        )
        _to(h, receiver, forged, sender)
        if role == "responder" and mid_shift == 0 and original != "before" and in_eap:
            _answered(h, rnd)
        if original == "twice":
            _to(h, receiver, forged, sender)
        if original == "after":
            _to(h, receiver, p.pkt.data, sender)
    h.hold(False)
    h.run(90)


def check(h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert not tracebacks, [(r.getMessage(), r.exc_info[1]) for r in tracebacks]  # type: ignore[index]
    va, vb = live(h.a, VICTIM), live(h.b, VICTIM)
    for sa in va + vb:
        assert sa.state is IkeSaState.ESTABLISHED, f"victim left in {sa.state}"
    assert h.b.mgr._half_open_count() == 0
    assert h.a.mgr._half_open_count() == 0
    pairs = {(sa.spi_i, sa.spi_r) for sa in va} ^ {(sa.spi_i, sa.spi_r) for sa in vb}
    for side, sa in [(h.a, sa) for sa in va] + [(h.b, sa) for sa in vb]:
        if (sa.spi_i, sa.spi_r) in pairs:  # established on one side only: DPD ends it
            side.mgr.liveness(sa.ike_id, h.now)
            h.run(60)
            assert sa.state in IKE_FINAL, f"one-sided victim stays {sa.state}"
    if not vb:
        online = [
            x for p in h.b.mgr.pools_status(leases=True) for x in p["leases"]
            if x["status"] == "online"
        ]  # fmt: skip
        assert not online, online
    # the bystander is undisturbed and alive
    (ba,), (bb,) = live(h.a, BYSTANDER), live(h.b, BYSTANDER)
    assert ba.state is IkeSaState.ESTABLISHED and bb.state is IkeSaState.ESTABLISHED
    h.a.mgr.liveness(ba.ike_id, h.now)
    h.run(3)
    assert not ba.checking_liveness and ba.state is IkeSaState.ESTABLISHED


_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("PYIPSEC_FUZZ_EXAMPLES") is None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@_SETTINGS
@given(
    method=METHODS,
    role=st.sampled_from(["responder", "initiator"]),
    rnd=st.integers(1, ROUNDS),
    ops=mutations(),
    mid_shift=st.sampled_from([0, 0, 0, -1, 1, 2]),
    original=st.sampled_from(["none", "before", "after", "twice"]),
)
def test_mutated_ike_auth_rounds(
    method: str,
    role: str,
    rnd: int,
    ops: list[tuple[str, Any]],
    mid_shift: int,
    original: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.clear()
    caplog.set_level(logging.ERROR, logger="pyipsec")
    h = make(method)
    attack(h, role, rnd, ops, mid_shift, original)
    check(h, caplog)


@_SETTINGS
@given(
    method=METHODS,
    role=st.sampled_from(["responder", "initiator"]),
    rnd=st.integers(1, ROUNDS),
    replay=st.integers(1, ROUNDS),
)
def test_replayed_and_reordered_rounds(
    method: str, role: str, rnd: int, replay: int, caplog: pytest.LogCaptureFixture
) -> None:
    """An earlier (or later) round's message, replayed when round ``rnd`` is due."""
    caplog.clear()
    caplog.set_level(logging.ERROR, logger="pyipsec")
    ref = make(method)
    ref.a.mgr.initiate("a2b", None, ref.now)
    ref.run(10)
    sender = "a" if role == "responder" else "b"
    old = {
        p.message_id: p.data
        for p in ref.sent(sender, ExchangeType.IKE_AUTH)
        if p.is_response == (sender == "b")
    }
    h = make(method)  # same seed: same SPIs and keys
    h.hold()
    h.a.mgr.initiate("a2b", None, h.now)
    for _ in range(60):
        pend = h.pending()
        if not pend:
            break
        p = pend[0]
        due = p.sender == sender and p.exchange == ExchangeType.IKE_AUTH and p.message_id == rnd
        if due and replay in old:
            _to(h, "b" if sender == "a" else "a", old[replay], sender)
        h.held.remove(p)
        h._deliver(p.pkt)
        h.flush()
    h.hold(False)
    h.run(90)
    check(h, caplog)


def test_malformed_first_ike_auth_request_is_answered_invalid_syntax() -> None:
    """§2.21.2: an IKE_AUTH request that passes the ICV but does not parse (here an EAP
    payload of two octets, §3.16) "MUST only lead to ... INVALID_SYNTAX ... sent as a
    response"; the half-open SA is freed at once, the bystander stays."""
    h = make()
    h.hold()
    h.a.mgr.initiate("a2b", None, h.now)
    for _ in range(10):
        p = h.pending()[0]
        h.held.remove(p)
        if p.sender == "a" and p.exchange == ExchangeType.IKE_AUTH:
            break
        h._deliver(p.pkt)
        h.flush()
    else:
        raise AssertionError("no IKE_AUTH request")
    forged = _forge(h, p, [("add", (PayloadType.EAP, EapPayload(b"\x02\x01")))], 0)
    _to(h, "b", forged, "a")
    answers = [x for x in h.pending("b") if x.message_id == p.message_id and x.is_response]
    assert answers, "the malformed IKE_AUTH request got no answer"
    answer = h.decrypt(answers[0].pkt)
    notifies = [n.type for _, n in answer.payloads if isinstance(n, NotifyPayload)]
    assert notifies == [NotifyType.INVALID_SYNTAX]
    # the recovery table's row for it, counted once (not as unprotected garbage)
    errors = h.b.mgr.error_status()
    assert errors.get("malformed-ike-auth") == 1 and "malformed-message" not in errors
    assert live(h.b, VICTIM) == []
    assert len(live(h.b, BYSTANDER)) == 1
