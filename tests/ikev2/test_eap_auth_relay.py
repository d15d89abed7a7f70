"""EAP relayed to an AAA backend (``remote.auth = "eap-radius"``, RFC 3579) through the
core's seam: the IKE_AUTH request is held while the backend thinks
(:class:`EapBackendRequest` out, ``IkeManager.eap_backend_reply`` in), retransmissions
of it are ignored meanwhile, and accept / challenge / reject / unreachable answers,
late answers and answers for unknown IKE SAs are handled.

The gateway runs the eap package's relay (:class:`pyipsec.eap.relay.RadiusRelayServer`);
the "AAA server" here runs an EAP-MD5 server session of the eap package."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import pytest

from pyipsec.constants import EapCode
from pyipsec.eap.base import BackendReply, BackendVerdict, EapServerSession, Outcome
from pyipsec.eap.factory import server_session
from pyipsec.eap.settings import EapMethod, EapServerSettings
from pyipsec.ikev2.constants import ExchangeType, NotifyType, PayloadType
from pyipsec.ikev2.events import EapBackendRequest, IkeSaEstablished, IkeSaFailed
from pyipsec.ikev2.state import IkeSaState

from .eap_pairs import USER, USERS, auth_responses, eap_pair, only_sa, states
from .harness import Harness

EST = [IkeSaState.ESTABLISHED]


@dataclass
class Backend:
    """The AAA server: an EAP-MD5 server session per IKE SA."""

    verdict: BackendVerdict | None = None  # force this verdict (else: what MD5 says)
    sessions: dict[int, EapServerSession] = field(default_factory=dict)
    seen: int = 0  # events handled so far

    def answer(self, ev: EapBackendRequest) -> BackendReply:
        if self.verdict in (BackendVerdict.UNREACHABLE, BackendVerdict.REJECT):
            return BackendReply(self.verdict, reason="backend says no")
        if ev.ike_id not in self.sessions:  # the Identity Response: start the method
            assert ev.eap[0] == EapCode.RESPONSE and ev.eap[4] == 1
            settings = EapServerSettings(method=EapMethod.MD5, users=USERS, ask_identity=False)
            s = self.sessions[ev.ike_id] = server_session(settings, os.urandom, ev.identity)
            step = s.start()
        else:
            step = self.sessions[ev.ike_id].process(ev.eap)
        assert step.packet is not None
        if step.outcome is Outcome.SUCCESS:
            return BackendReply(BackendVerdict.ACCEPT, step.packet, step.msk)
        if step.outcome is Outcome.FAILURE:
            return BackendReply(BackendVerdict.REJECT, step.packet, reason="wrong password")
        return BackendReply(BackendVerdict.CHALLENGE, step.packet)

    def pending(self, h: Harness) -> list[EapBackendRequest]:
        h.flush()
        evs = h.b.of(EapBackendRequest)
        new, self.seen = evs[self.seen :], len(evs)
        return new

    def serve(self, h: Harness) -> int:
        """Answer every request the gateway made so far; how many."""
        new = self.pending(h)
        for ev in new:
            h.b.mgr.eap_backend_reply(ev.ike_id, self.answer(ev), h.now)
        h.flush()
        return len(new)


def _run(h: Harness, backend: Backend, seconds: float = 10.0) -> None:
    """Run the pair for ``seconds``, the backend answering every request at once."""
    end = h.now + seconds
    while h.now < end:
        target = h.now + 0.2
        h.run(0.2)
        h.now = max(h.now, target)  # run() stands still when nothing is scheduled
        backend.serve(h)


def _harness(**b: Any) -> Harness:
    return Harness(*eap_pair("eap-md5", b_kw={"remote_auth": "eap-radius", **b}))


def test_accept_after_a_challenge() -> None:
    h, backend = _harness(), Backend()
    h.a.mgr.initiate("a2b", None, h.now)
    _run(h, backend)
    assert states(h.a) == EST and states(h.b) == EST
    evs = h.b.of(EapBackendRequest)
    assert len(evs) == 2  # the Identity Response (built by the relay), the MD5 Response
    assert all(e.identity == USER.encode() and e.conn == "b2a" for e in evs)
    assert evs[1].eap[0] == EapCode.RESPONSE and evs[1].eap[4] == 4  # MD5-Challenge
    assert evs[0].remote == ("192.0.2.1", 500)
    assert evs[0].local == only_sa(h.b).local  # the gateway's address: NAS-IP-Address
    assert only_sa(h.b).peer_auth == "eap-radius"


def test_identity_asked_by_the_relay() -> None:
    """remote.eap_id = %any: the relay asks EAP-Identity itself; the backend gets the
    EAP identity as User-Name."""
    a_kw = {"local_eap_id": "dave", "eap_secret": b"dave's password"}
    b_kw = {"remote_auth": "eap-radius", "remote_eap_id": "%any"}
    h = Harness(*eap_pair("eap-md5", a_kw=a_kw, b_kw=b_kw))
    backend = Backend()
    h.a.mgr.initiate("a2b", None, h.now)
    _run(h, backend)
    assert states(h.a) == EST and states(h.b) == EST
    assert [e.identity for e in h.b.of(EapBackendRequest)] == [b"dave", b"dave"]
    assert only_sa(h.b).remote_id == "dave"


def test_retransmissions_are_ignored_while_the_backend_thinks() -> None:
    h, backend = _harness(), Backend()
    h.a.mgr.initiate("a2b", None, h.now)
    h.run(3.5)  # the first IKE_AUTH request is retransmitted twice (1 s, 2 s)
    requests = [p for p in h.sent("a", ExchangeType.IKE_AUTH, response=False)]
    assert len(requests) >= 2 and {p.message_id for p in requests} == {1}
    assert h.sent("b", ExchangeType.IKE_AUTH, response=True) == []  # held, unanswered
    assert len(h.b.of(EapBackendRequest)) == 1  # relayed once
    sa_b = only_sa(h.b)
    assert sa_b.state is IkeSaState.EAP and sa_b.eap is not None and sa_b.eap.held is not None
    backend.serve(h)
    (first,) = h.sent("b", ExchangeType.IKE_AUTH, response=True)
    resp = h.decrypt(first)
    assert resp.get(PayloadType.IDr) is not None and resp.get(PayloadType.AUTH) is not None
    eap = resp.get(PayloadType.EAP)
    assert eap is not None and eap.code == EapCode.REQUEST
    _run(h, backend)
    assert states(h.a) == EST and states(h.b) == EST
    assert len(auth_responses(h)) == 3


@pytest.mark.parametrize("verdict", [BackendVerdict.REJECT, BackendVerdict.UNREACHABLE])
def test_reject_and_unreachable(verdict: BackendVerdict) -> None:
    h, backend = _harness(), Backend(verdict=verdict)
    h.a.mgr.initiate("a2b", None, h.now)
    _run(h, backend)
    assert states(h.a) == [] and states(h.b) == []
    (fb,) = h.b.of(IkeSaFailed)
    assert "backend says no" in fb.reason and fb.notify == NotifyType.AUTHENTICATION_FAILED
    (fa,) = h.a.of(IkeSaFailed)
    assert fa.notify == NotifyType.AUTHENTICATION_FAILED


def test_wrong_password_rejected_by_the_backend() -> None:
    h = Harness(*eap_pair("eap-md5", a_kw={"eap_secret": b"nope"},
                          b_kw={"remote_auth": "eap-radius"}))
    backend = Backend()
    h.a.mgr.initiate("a2b", None, h.now)
    _run(h, backend)
    (fb,) = h.b.of(IkeSaFailed)
    assert "wrong password" in fb.reason
    eap = h.decrypt(auth_responses(h)[-1]).get(PayloadType.EAP)
    assert eap is not None and eap.code == EapCode.FAILURE
    assert "EAP authentication failed" in h.a.of(IkeSaFailed)[0].reason


def test_unknown_ike_sa_and_nothing_waiting() -> None:
    h, backend = _harness(), Backend()
    accept = BackendReply(BackendVerdict.ACCEPT, b"\x03\x01\x00\x04")
    h.b.mgr.eap_backend_reply(4711, accept, h.now)  # no such IKE SA: ignored
    h.a.mgr.initiate("a2b", None, h.now)
    _run(h, backend)
    assert states(h.b) == EST
    sent = len(h.log)
    ike_id = only_sa(h.b).ike_id
    h.b.mgr.eap_backend_reply(ike_id, accept, h.now)  # established: nothing waits
    h.flush()
    assert len(h.log) == sent and states(h.b) == EST


def test_reply_twice_is_answered_once() -> None:
    h, backend = _harness(), Backend()
    h.a.mgr.initiate("a2b", None, h.now)
    h.run(0.5)
    (ev,) = backend.pending(h)
    reply = backend.answer(ev)
    h.b.mgr.eap_backend_reply(ev.ike_id, reply, h.now)
    h.b.mgr.eap_backend_reply(ev.ike_id, reply, h.now)
    h.flush()
    assert len(h.sent("b", ExchangeType.IKE_AUTH, response=True)) == 1


def test_reply_after_the_half_open_timeout_is_ignored() -> None:
    h, backend = _harness(), Backend()
    h.a.mgr.initiate("a2b", None, h.now)
    h.run(0.5)
    (ev,) = backend.pending(h)
    h.run(45.0)  # the backend never answers in time: the half-open SA is gone
    assert states(h.b) == [] and not h.b.mgr.by_id
    assert h.b.mgr.error_status().get("half-open-timeout") == 1
    sent = len(h.log)
    h.b.mgr.eap_backend_reply(ev.ike_id, backend.answer(ev), h.now)
    h.flush()
    assert len(h.log) == sent
    assert not h.b.of(IkeSaEstablished)
