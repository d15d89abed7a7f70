"""EAP in IKE_AUTH (RFC 7296 §2.16, §1.2), pyipsec against pyipsec in memory, both
roles: every method of the eap package, with and without MSK, EAP-Identity, the final
AUTH payloads, wrong passwords and wrong AUTH payloads, RFC 5998 EAP-only."""

from __future__ import annotations

from typing import Any

import pytest

from pyipsec.constants import EapCode
from pyipsec.ikev2.constants import AuthMethod, ExchangeType, NotifyType, PayloadType
from pyipsec.ikev2.events import (
    ChildSaInstalled,
    IkeSaEstablished,
    IkeSaFailed,
    VirtualIpsAssigned,
)
from pyipsec.ikev2.payloads import IdPayload
from pyipsec.ikev2.state import IkeSaState
from pyipsec.ikev2.tasks import eap_auth

from .eap_pairs import (
    METHODS,
    USER,
    USERS,
    WITH_MSK,
    auth_requests,
    auth_responses,
    only_sa,
    sk_p_auth,
    states,
    up,
)
from .harness import Harness
from .test_sa_config_payload import POOL4, road_warrior

EST = [IkeSaState.ESTABLISHED]


def payloads(h: Harness, pkt: Any) -> list[int]:
    return [t for t, _ in h.decrypt(pkt).payloads]


# --- every method, both roles --------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_each_method_establishes(method: str) -> None:
    h = up(method)
    assert states(h.a) == EST and states(h.b) == EST
    assert len(h.a.of(ChildSaInstalled)) == 1 and len(h.b.of(ChildSaInstalled)) == 1
    sa_a, sa_b = only_sa(h.a), only_sa(h.b)
    assert sa_b.remote_id == USER and sa_b.peer_auth == method
    assert sa_a.remote_id == "sun.example.net" and sa_a.peer_auth == "psk"
    assert sa_b.eap is None  # the conversation's state is freed
    reqs, resps = auth_requests(h), auth_responses(h)
    # §2.2: one Message ID per IKE_AUTH round, from 1 on
    assert [p.message_id for p in reqs] == list(range(1, len(reqs) + 1))
    assert len(reqs) == len(resps) >= 3
    first_req, first_resp = payloads(h, reqs[0]), payloads(h, resps[0])
    assert PayloadType.AUTH not in first_req and PayloadType.SA in first_req
    assert first_resp[:1] == [PayloadType.IDr]
    assert {PayloadType.AUTH, PayloadType.EAP} <= set(first_resp)
    assert PayloadType.SA not in first_resp  # §2.16: deferred until EAP is done
    # the last pair: AUTH alone, then AUTH with the first child
    assert payloads(h, reqs[-1]) == [PayloadType.AUTH]
    last = payloads(h, resps[-1])
    assert last[0] == PayloadType.AUTH and PayloadType.SA in last and PayloadType.TSr in last
    # the response before the final AUTH carries EAP Success
    eap = h.decrypt(resps[-2]).get(PayloadType.EAP)
    assert eap is not None and eap.code == EapCode.SUCCESS


@pytest.mark.parametrize("method", METHODS)
def test_final_auth_uses_msk_or_sk_p(method: str) -> None:
    """§2.16: with an MSK the AUTH payloads use it; without (EAP-MD5) SK_pi / SK_pr."""
    h = up(method)
    sa_a = only_sa(h.a)
    final_i = h.decrypt(auth_requests(h)[-1]).get(PayloadType.AUTH)
    final_r = h.decrypt(auth_responses(h)[-1]).get(PayloadType.AUTH)
    assert final_i is not None and final_r is not None
    assert final_i.method == final_r.method == AuthMethod.PSK
    idi = IdPayload.from_string(USER)
    idr = IdPayload.from_string("sun.example.net")
    sk_p_i = sk_p_auth(h, sa_a, initiator=True, ident=idi)
    sk_p_r = sk_p_auth(h, sa_a, initiator=False, ident=idr)
    if method in WITH_MSK:
        assert final_i.data != sk_p_i and final_r.data != sk_p_r
    else:
        assert (final_i.data, final_r.data) == (sk_p_i, sk_p_r)


@pytest.mark.parametrize("method", METHODS)
def test_session_keys_are_not_kept_by_the_psk_cache(method: str) -> None:
    """The final AUTH of EAP uses the MSK (or SK_p) as its key: a per-session secret
    must never enter the cache of padded configured PSKs (configured_psk_auth)."""
    from pyipsec.crypto import keys

    keys._padded_psk.cache_clear()
    up(method)
    cached = keys._padded_psk.cache_info().currsize
    assert cached <= 1  # at most the gateway's configured PSK (its own AUTH), no MSK


def test_eap_identity_round_with_eap_id_any() -> None:
    """remote.eap_id = %any: EAP-Identity first (RFC 3748 §5.1); the client answers with
    local.eap_id, which differs from its IKE identity; the gateway reports the EAP one."""
    h = up("eap-md5", a_kw={"local_eap_id": "dave", "eap_secret": b"dave's password"},
           b_kw={"remote_eap_id": "%any"})
    assert states(h.a) == EST and states(h.b) == EST
    sa_b = only_sa(h.b)
    assert sa_b.remote_id == "dave"
    assert sa_b.peer_auth == f"eap-md5 (IKE identity {USER})"
    first_eap = h.decrypt(auth_responses(h)[0]).get(PayloadType.EAP)
    assert first_eap is not None and first_eap.eap_type == 1  # Identity
    assert len(auth_requests(h)) == 4  # IDi, Identity, MD5, AUTH


def test_eap_id_pattern_checked_after_success() -> None:
    ok = up("eap-md5", a_kw={"local_eap_id": "dave", "eap_secret": b"dave's password"},
            b_kw={"remote_eap_id": "da*"})
    assert states(ok.b) == EST
    bad = up("eap-md5", b_kw={"remote_eap_id": "da*"})
    assert states(bad.b) == [] and states(bad.a) == []
    (fail,) = bad.b.of(IkeSaFailed)
    assert "does not match remote.eap_id 'da*'" in fail.reason


def test_gateway_signs_with_its_certificate() -> None:
    h = up("eap-md5", gateway_pubkey=True)
    assert states(h.a) == EST and states(h.b) == EST
    first = h.decrypt(auth_responses(h)[0])
    auth = first.get(PayloadType.AUTH)
    assert auth is not None and auth.method != AuthMethod.PSK
    assert PayloadType.CERT in [t for t, _ in first.payloads]
    assert "ecdsa" in only_sa(h.a).peer_auth.lower()


# --- failures ------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["eap-md5", "eap-mschapv2"])
def test_wrong_password(method: str) -> None:
    h = up(method, a_kw={"eap_secret": b"not carol's password"})
    assert states(h.a) == [] and states(h.b) == []
    (fa,) = h.a.of(IkeSaFailed)
    (fb,) = h.b.of(IkeSaFailed)
    assert fa.notify == fb.notify == NotifyType.AUTHENTICATION_FAILED
    assert "EAP authentication failed" in fa.reason
    assert f"EAP authentication of {USER} failed" in fb.reason
    eap = h.decrypt(auth_responses(h)[-1]).get(PayloadType.EAP)
    assert eap is not None and eap.code == EapCode.FAILURE  # §2.16: MUST send Failure
    assert not h.a.of(IkeSaEstablished) and not h.b.of(IkeSaEstablished)
    assert h.b.mgr.error_status().get("authentication-failed") == 1


def test_unknown_user() -> None:
    h = up("eap-md5", a_kw={"local_id": "eve@example.net"})
    assert states(h.a) == [] and states(h.b) == []
    assert h.a.of(IkeSaFailed) and h.b.of(IkeSaFailed)


def _corrupt(monkeypatch: pytest.MonkeyPatch, which: str) -> None:
    """Make one side's final AUTH wrong: the initiator's ("i") or the responder's."""
    orig = eap_auth.auth_value

    def wrong(sa: Any, key: bytes, message: bytes, *rest: Any, **kw: Any) -> bytes:
        value = orig(sa, key, message, *rest, **kw)
        ours = message == (sa.msg1 if sa.initiator else sa.msg2)
        if ours and (sa.initiator == (which == "i")):
            return bytes(b ^ 1 for b in value)
        return value

    monkeypatch.setattr(eap_auth, "auth_value", wrong)


@pytest.mark.interpreted_core
@pytest.mark.parametrize("method", ["eap-md5", "eap-mschapv2"])
def test_wrong_final_auth_of_initiator(monkeypatch: pytest.MonkeyPatch, method: str) -> None:
    _corrupt(monkeypatch, "i")
    h = up(method)
    assert states(h.a) == [] and states(h.b) == []
    (fb,) = h.b.of(IkeSaFailed)
    assert fb.notify == NotifyType.AUTHENTICATION_FAILED
    assert "after EAP does not verify" in fb.reason
    (fa,) = h.a.of(IkeSaFailed)
    assert fa.notify == NotifyType.AUTHENTICATION_FAILED  # answered, §2.21.2
    notify = h.decrypt(auth_responses(h)[-1]).get(PayloadType.NOTIFY)
    assert notify is not None and notify.type == NotifyType.AUTHENTICATION_FAILED


@pytest.mark.interpreted_core
@pytest.mark.parametrize("method", ["eap-md5", "eap-mschapv2"])
def test_wrong_final_auth_of_responder(monkeypatch: pytest.MonkeyPatch, method: str) -> None:
    _corrupt(monkeypatch, "r")
    h = up(method)
    (fa,) = h.a.of(IkeSaFailed)
    assert "responder AUTH after EAP does not verify" in fa.reason
    # the gateway had established it: the initiator deletes it (INFORMATIONAL)
    assert h.b.of(IkeSaEstablished)
    assert states(h.a) == [] and states(h.b) == []


def test_client_config_problems_fail_at_once() -> None:
    for a_kw, why in (
        ({"eap_secret": b""}, "no EAP secret configured for eap-md5"),
        ({"local_auth": "eap-radius"}, "eap-radius is a server method"),
        ({"local_auth": "psk", "remote_auth": "eap-md5"}, "authenticates with EAP only"),
        ({"local_auth": "eap-tls", "local_credentials": None}, "no certificate configured"),
    ):
        h = up("eap-md5", a_kw=a_kw)
        (fail,) = h.a.of(IkeSaFailed)
        assert why in fail.reason, (a_kw, fail.reason)
        assert not h.sent("a", ExchangeType.IKE_AUTH)


# --- RFC 5998 EAP-only -----------------------------------------------------------------


def _eap_only(method: str, **b: Any) -> Harness:
    return up(method, a_kw={"remote_auth": method}, b_kw={"local_auth": method, **b})


def test_eap_only_with_tls() -> None:
    h = _eap_only("eap-tls")
    assert states(h.a) == EST and states(h.b) == EST
    first_req = h.decrypt(auth_requests(h)[0])
    assert first_req.notify(NotifyType.EAP_ONLY_AUTHENTICATION) is not None
    first = payloads(h, auth_responses(h)[0])
    assert PayloadType.AUTH not in first and PayloadType.CERT not in first
    assert first[:1] == [PayloadType.IDr] and PayloadType.EAP in first
    assert only_sa(h.a).peer_auth == "eap-tls (EAP-only)"


def test_eap_only_refused_for_a_method_without_mutual_authentication() -> None:
    h = _eap_only("eap-md5")
    (fb,) = h.b.of(IkeSaFailed)
    assert "EAP-only needs a mutual, key-generating method" in fb.reason
    (fa,) = h.a.of(IkeSaFailed)
    assert fa.notify == NotifyType.AUTHENTICATION_FAILED
    assert states(h.a) == [] and states(h.b) == []


def test_eap_only_gateway_needs_the_clients_notify() -> None:
    """The client does not ask for EAP-only (its remote.auth is psk): refused."""
    h = up("eap-tls", b_kw={"local_auth": "eap-tls"})
    (fb,) = h.b.of(IkeSaFailed)
    assert "the initiator does not support it" in fb.reason


def test_eap_only_client_verifies_an_auth_sent_anyway() -> None:
    """RFC 5998 §3: a responder that ignores the notify sends AUTH: it is verified."""
    h = up("eap-tls", a_kw={"remote_auth": "eap-tls", "psk": b"wrong psk 0123456789"})
    (fa,) = h.a.of(IkeSaFailed)
    assert "responder authentication failed" in fa.reason
    good = up("eap-tls", a_kw={"remote_auth": "eap-tls"})
    assert states(good.a) == EST and only_sa(good.a).peer_auth == "psk"


# --- configuration payloads with EAP ---------------------------------------------------


def test_road_warrior_with_eap_gets_a_lease_for_its_eap_identity() -> None:
    """CP(CFG_REQUEST) rides in the first IKE_AUTH request, CP(CFG_REPLY) in the last
    response; the lease belongs to the authenticated (EAP) identity (§2.16, §2.19)."""
    a_kw = {"local_auth": "eap-mschapv2", "local_id": USER, "local_eap_id": "dave",
            "eap_secret": b"dave's password"}
    b_kw = {"remote_auth": "eap-mschapv2", "remote_id": "%any", "remote_eap_id": "%any",
            "eap_users": USERS}
    a, b = road_warrior(vips=("0.0.0.0",), pools=("rw",), a_kw=a_kw, b_kw=b_kw)
    h = Harness(a, b, b_kw={"pools": [POOL4]})
    h.up(duration=10.0)
    assert states(h.a) == EST and states(h.b) == EST
    reqs, resps = auth_requests(h), auth_responses(h)
    assert PayloadType.CP in payloads(h, reqs[0])
    assert PayloadType.CP not in payloads(h, resps[0])
    assert PayloadType.CP in payloads(h, resps[-1])
    (va,) = h.a.of(VirtualIpsAssigned)
    assert va.local == ("10.3.0.1",)
    leases = {x["address"]: x["identity"] for p in h.b.mgr.pools_status(leases=True)
              for x in p["leases"]}
    assert leases == {"10.3.0.1": "dave"}
