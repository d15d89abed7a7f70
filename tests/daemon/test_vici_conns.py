"""``load-conn`` translation (swanctl.conf section -> ConnectionConfig) and the VICI
credential set, without a daemon."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from pyipsec.config.loader import ConfigError
from pyipsec.config.model import DpdAction, Mode, StartAction
from pyipsec.daemon.control import ControlError
from pyipsec.daemon.vici_conns import ONLY, UNSUPPORTED, connection_from_vici
from pyipsec.daemon.vici_creds import ViciCredentials, key_id
from pyipsec.pki import generate_key, issue_host, make_ca

NOW = dt.datetime.now(dt.UTC)


def b(v: Any) -> Any:
    """A VICI message as decoded: bytes values, lists of bytes, nested dicts."""
    if isinstance(v, dict):
        return {k: b(x) for k, x in v.items()}
    if isinstance(v, list):
        return [b(x) for x in v]
    return v if isinstance(v, bytes) else str(v).encode()


def psk_conn(**over: Any) -> dict[str, Any]:
    conn: dict[str, Any] = {
        "local_addrs": ["192.0.2.1"],
        "remote_addrs": ["192.0.2.2"],
        "local": {"auth": "psk", "id": "moon.example.net"},
        "remote": {"auth": "psk", "id": "sun.example.net"},
        "children": {"net": {"local_ts": ["10.1.0.0/16"], "remote_ts": ["10.2.0.0/16"]}},
    }
    conn.update(over)
    return conn


def creds_with_psk() -> ViciCredentials:
    c = ViciCredentials()
    c.load_shared(b({"id": "ike-1", "type": "IKE", "data": "s3cret",
                     "owners": ["moon.example.net", "sun.example.net"]}))  # fmt: skip
    return c


def translate(conn: dict[str, Any], creds: ViciCredentials | None = None, name: str = "gw") -> Any:
    return connection_from_vici(b({name: conn}), creds or creds_with_psk())


def errors(conn: dict[str, Any], creds: ViciCredentials | None = None) -> str:
    with pytest.raises(ConfigError) as ei:
        translate(conn, creds)
    return str(ei.value)


def test_mapped_connection_keys() -> None:
    c = translate(psk_conn(
        local_port="4501", remote_port="4502", version="2",
        proposals=["aes128gcm16-prfsha256-ecp256", "aes256-sha384-modp3072"],
        dpd_delay="10s", dpd_timeout="60s", rekey_time="2h", over_time="10m",
        rand_time="5m", keyingtries="3", encap="yes", mobike="no",
        fragmentation="no", send_certreq="no", send_cert="never", unique="no",
    ))  # fmt: skip
    assert (c.name, c.local_addrs, c.remote_addrs) == ("gw", ("192.0.2.1",), ("192.0.2.2",))
    assert (c.local_port, c.remote_port) == (4501, 4502)
    assert c.ike_proposals == ("aes128gcm16-prfsha256-ecp256", "aes256-sha384-modp3072")
    assert c.dpd.enabled and (c.dpd.interval, c.dpd.timeout) == (10.0, 60.0)
    lt = c.lifetimes
    assert (lt.rekey_time, lt.over_time, lt.rand_time) == (7200.0, 600.0, 300.0)
    assert c.keyingtries == 3 and c.encap and not c.fragmentation
    assert not c.send_certreq and c.send_cert == "never"
    assert (c.local_id, c.remote_id, c.psk) == ("moon.example.net", "sun.example.net", b"s3cret")
    assert c.local_auth == c.remote_auth == "psk" and not c.reauth


def test_reauth_time_and_strongswan_defaults() -> None:
    c = translate(psk_conn(reauth_time="3h", rekey_time="0"))
    assert c.reauth and c.lifetimes.rekey_time == 10800.0
    d = translate(psk_conn())
    # swanctl.conf(5): proposals/esp_proposals "default", no DPD, one keying try
    assert len(d.ike_proposals) > 1 and not d.dpd.enabled and d.keyingtries == 1
    assert len(d.children[0].esp_proposals) > 1
    # the IP address is the default local identity (and the PSK is looked up with it)
    e = translate(psk_conn(local={"auth": "psk"}), creds_with_psk())
    assert e.local_id == "192.0.2.1" and e.psk == b"s3cret"  # remote id matches


def test_mapped_child_keys() -> None:
    child = {
        "local_ts": ["10.1.0.0/16", "192.0.2.1[tcp/443]"], "remote_ts": ["dynamic"],
        "esp_proposals": ["aes256gcm16-modp3072", "aes128-sha256"], "mode": "tunnel",
        "start_action": "trap", "dpd_action": "restart", "close_action": "start",
        "rekey_time": "30m", "life_time": "40m", "rand_time": "1m",
        "rekey_bytes": "1G", "life_bytes": "2G", "rekey_packets": "1000000",
        "life_packets": "2000000", "replay_window": "64", "tfc_padding": "mtu",
        "ipcomp": "no", "hostaccess": "no", "policies": "yes", "rand_bytes": "0",
    }  # fmt: skip
    c = translate(psk_conn(children={"net": child}))
    ch = c.children[0]
    assert ch.local_ts[1].protocol == 6 and ch.local_ts[1].start_port == 443
    assert str(ch.remote_ts[0].start) == "192.0.2.2"  # dynamic: the peer's address
    assert ch.esp_proposals == ("aes256gcm16-modp3072", "aes128-sha256")
    assert ch.mode is Mode.TUNNEL and ch.start_action is StartAction.TRAP
    assert ch.dpd_action is DpdAction.RESTART and ch.close_action is StartAction.START
    lt = ch.lifetimes
    assert (lt.rekey_time, lt.over_time, lt.rand_time) == (1800.0, 600.0, 60.0)
    assert (lt.rekey_bytes, lt.life_bytes) == (1 << 30, 2 << 30)
    assert (lt.rekey_packets, lt.life_packets) == (1_000_000, 2_000_000)
    assert ch.replay_window == 64 and ch.tfc_padding


@pytest.mark.parametrize(
    ("key", "value", "alias"),
    [("dpd_action", "hold", DpdAction.TRAP), ("dpd_action", "none", DpdAction.CLEAR),
     ("close_action", "restart", StartAction.START), ("start_action", "route", StartAction.TRAP)],
)  # fmt: skip
def test_strongswan_action_aliases(key: str, value: str, alias: object) -> None:
    c = translate(psk_conn(children={"n": {key: value, "remote_ts": ["10.2.0.0/16"]}}))
    assert getattr(c.children[0], key) is alias


def _place(kind: str, key: str, value: Any) -> dict[str, Any]:
    if kind == "conn":
        return psk_conn(**{key: value})
    if kind == "end":
        return psk_conn(remote={"auth": "psk", "id": "sun.example.net", key: value})
    kid = {"remote_ts": ["10.2.0.0/16"], key: value}
    return psk_conn(children={"net": kid})


@pytest.mark.parametrize(
    ("kind", "key"), [(k, key) for k, keys in UNSUPPORTED.items() for key in keys]
)
def test_every_unsupported_key_is_refused_by_name(kind: str, key: str) -> None:
    msg = errors(_place(kind, key, ["x"] if key in ("pools", "vips") else "x"))
    assert f".{key}: strongSwan's '{key}' is not supported by pyipsec" in msg


@pytest.mark.parametrize(
    ("kind", "key", "ok"), [(k, key, v[0]) for k, keys in ONLY.items() for key, v in keys.items()]
)
def test_keys_accepted_only_with_pyipsecs_behaviour(kind: str, key: str, ok: str) -> None:
    translate(_place(kind, key, ok))
    msg = errors(_place(kind, key, "maybe"))
    assert f"strongSwan's '{key} = maybe' is not supported by pyipsec" in msg


def test_pools_and_virtual_ips() -> None:
    """``pools`` (responder) and ``vips`` (initiator) as in the TOML loader: names and
    addresses, ``dynamic`` selectors standing for the virtual IPs (RFC 7296 §2.19)."""
    gw = translate(psk_conn(pools=["rw4", "rw6"], children={"net": {"local_ts": ["10.1.0.0/16"]}}))
    assert gw.pools == ("rw4", "rw6") and gw.vips == ()
    net = gw.children[0]
    assert net.remote_ts == () and len(net.local_ts) == 1  # remote: the leased addresses
    rw = translate(psk_conn(vips=["0.0.0.0", "::"], children={"net": {"remote_ts": ["0.0.0.0/0"]}}))
    assert rw.vips == ("0.0.0.0", "::") and rw.pools == ()
    assert rw.children[0].local_ts == ()
    msg = errors(psk_conn(vips=["0.0.0.0", "0.0.0.0", "any"], pools=["a", "a"]))
    assert "connections.gw.vips: 0.0.0.0 is listed twice" in msg
    assert "connections.gw.vips: invalid virtual IP 'any'" in msg
    assert "connections.gw.pools: a pool is listed twice" in msg
    msg = errors(psk_conn(pools=["a"], children={"net": {"remote_ts": ["dynamic", "10.9.0.0/16"]}}))
    assert "children.net.remote_ts: 'dynamic' stands for the virtual IP(s)" in msg


@pytest.mark.parametrize(
    ("conn", "expected"),
    [
        (psk_conn(version="1"), "connections.gw.version: only IKEv2"),
        (psk_conn(fragmentation="force"), "fragmentation = force is not supported"),
        (psk_conn(local={"auth": "eap-ttls"}), "unsupported auth method 'eap-ttls'"),
        (psk_conn(remote_addrs=["not-an-ip"]), "invalid address 'not-an-ip'"),
        (psk_conn(local_port="http"), "connections.gw.local_port: expected an integer"),
        (psk_conn(rekey_time="soon"), "invalid duration 'soon'"),
        (psk_conn(proposals=["aes256gcm16-prfsha256-x2551"]), "connections.gw.proposals"),
        (psk_conn(dpd_dealy="30s"), "dpd_dealy: unknown key (hint: did you mean 'dpd_delay'?)"),
        (psk_conn(**{"local-1": {"auth": "psk"}, "local-2": {"auth": "psk"}}),
         "multiple authentication rounds"),
        (psk_conn(children={"net": {"mode": "pass"}}), "children.net.mode: invalid value"),
        (psk_conn(children={"net": {"local_ts": ["10.0.0.0/33"]}}), "children.net.local_ts"),
        (psk_conn(children={"net": {"tfc_padding": "1500"}}), "children.net.tfc_padding"),
        (psk_conn(children={"net": "x"}), "children.net: expected a table"),
    ],
)  # fmt: skip
def test_bad_values_are_located(conn: dict[str, Any], expected: str) -> None:
    assert expected in errors(conn)


def test_malformed_messages() -> None:
    creds = ViciCredentials()
    for msg in ({}, {"a": {}, "b": {}}, {"gw": {}, "x": b"1"}, {"x": b"1"}):
        with pytest.raises(ConfigError, match="exactly one section"):
            connection_from_vici(msg, creds)
    with pytest.raises(ConfigError, match="invalid connection name"):
        connection_from_vici(b({"a.b": psk_conn()}), creds)
    with pytest.raises(ConfigError, match="not UTF-8"):
        connection_from_vici({"gw": {"remote_addrs": b"\xff\xfe"}}, creds)


def test_missing_psk_is_not_an_error() -> None:
    """swanctl may load connections before their secrets (charon looks them up at
    authentication time): the connection loads, its authentications fail."""
    c = translate(psk_conn(), ViciCredentials())
    assert c.psk == b""


def test_psk_by_owners() -> None:
    cr = ViciCredentials()
    cr.load_shared(b({"id": "any", "type": "IKE", "data": "fallback"}))
    cr.load_shared(b({"id": "r", "type": "IKE", "data": "remote", "owners": ["sun.example.net"]}))
    cr.load_shared(b({"id": "l", "type": "IKE", "data": "local", "owners": ["moon.example.net"]}))
    assert translate(psk_conn(), cr).psk == b"remote"
    cr.load_shared(b({"id": "both", "type": "IKE", "data": "both",
                      "owners": ["moon.example.net", "sun.example.net"]}))  # fmt: skip
    assert translate(psk_conn(), cr).psk == b"both"
    other = psk_conn(remote={"auth": "psk", "id": "venus.example.net"})
    assert translate(other, cr).psk == b"local"
    assert cr.get_shared() == ["any", "r", "l", "both"]
    cr.unload_shared(b({"id": "both"}))
    with pytest.raises(ControlError, match="not found"):
        cr.unload_shared(b({"id": "both"}))


@pytest.mark.parametrize("typ", ["XAUTH", "NTLM", "PPK", "FOO", ""])
def test_shared_types_without_meaning_are_refused(typ: str) -> None:
    with pytest.raises(ControlError) as ei:
        ViciCredentials().load_shared(b({"id": "e", "type": typ, "data": "x"}))
    assert (typ or "(missing)") in str(ei.value)


class Pki:
    def __init__(self) -> None:
        self.ca_key = generate_key()
        self.ca = make_ca(self.ca_key, "CN=Test CA", now=NOW)
        self.key = generate_key()
        self.cert = issue_host(
            self.ca, self.ca_key, self.key.public_key(),
            cn="moon.example.net", sans=["moon.example.net"], now=NOW,
        )  # fmt: skip

    def pem(self, obj: Any) -> bytes:
        return bytes(obj.public_bytes(serialization.Encoding.PEM))

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def pubkey_conn(pki: Pki, **over: Any) -> dict[str, Any]:
    ends: dict[str, Any] = {
        "local": {"auth": "pubkey", "id": "moon.example.net", "certs": [pki.pem(pki.cert)]},
        "remote": {"id": "sun.example.net"},  # auth defaults to pubkey, as in swanctl.conf
    }
    return psk_conn(**(ends | over))


def test_certificates_from_the_credential_set() -> None:
    pki = Pki()
    cr = ViciCredentials()
    cr.load_cert({"type": b"X509", "flag": b"CA", "data": pki.pem(pki.ca)})
    kid = cr.load_key({"type": b"any", "data": pki.key_pem()})
    assert kid == key_id(pki.key) and cr.keys
    c = translate(pubkey_conn(pki), cr)
    assert c.local_auth == c.remote_auth == "pubkey"
    assert c.local_credentials is not None and c.local_credentials.certificate == pki.cert
    assert c.local_credentials.anchor == pki.ca
    assert c.remote_trust is not None and c.remote_trust.anchors == (pki.ca,)
    # remote.cacerts names the anchors instead of the loaded CA certificates
    other = make_ca(generate_key(), "CN=Other CA", now=NOW)
    conn = pubkey_conn(pki, remote={"id": "sun.example.net", "cacerts": [pki.pem(other)]})
    t = translate(conn, cr).remote_trust
    assert t is not None and t.anchors == (other,)


def test_certificates_only_where_they_mean_something() -> None:
    pki = Pki()
    conn = psk_conn(local={"auth": "psk", "certs": [pki.pem(pki.cert)]})
    assert "connections.gw.local.certs: only with auth" in errors(conn)
    conn = psk_conn(remote={"auth": "psk", "cacerts": [pki.pem(pki.ca)]})
    assert "connections.gw.remote.cacerts: only with auth" in errors(conn)


def test_certificate_problems_are_errors_at_load() -> None:
    pki = Pki()
    cr = ViciCredentials()
    assert "no private key matches the certificate" in errors(pubkey_conn(pki), cr)
    cr.load_key({"data": pki.key_pem()})
    assert "needs a trust anchor" in errors(pubkey_conn(pki), cr)
    bad = pubkey_conn(pki, local={"auth": "pubkey", "certs": [b"junk"]})
    assert "local.certs[0]: not a PEM/DER certificate" in errors(bad, cr)
    # later (credentials unloaded) the connection stays, without them
    cr.load_cert({"type": b"X509", "flag": b"CA", "data": pki.pem(pki.ca)})
    cr.clear()
    c = connection_from_vici(b({"gw": pubkey_conn(pki)}), cr, strict_creds=False)
    assert c.local_credentials is None and c.remote_trust is None


def test_raw_public_keys() -> None:
    peer = generate_key()
    spki = peer.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    conn = psk_conn(remote={"auth": "pubkey", "pubkeys": [spki]})
    t = translate(conn).remote_trust
    assert t is not None and len(t.raw_keys) == 1 and t.raw_keys[0].startswith(b"\x30")


def test_credential_commands_refuse_what_they_cannot_use() -> None:
    cr = ViciCredentials()
    with pytest.raises(ControlError, match="flag 'OCSP' is not supported"):
        cr.load_cert({"type": b"X509", "flag": b"OCSP", "data": b"x"})
    with pytest.raises(ControlError, match="certificate type 'X509_AC' is not supported"):
        cr.load_cert({"type": b"X509_AC", "data": b"x"})
    with pytest.raises(ControlError, match="parsing X509 certificate failed"):
        cr.load_cert({"type": b"X509", "data": b"junk"})
    with pytest.raises(ControlError, match="parsing any private key failed"):
        cr.load_key({"type": b"any", "data": b"junk"})
    with pytest.raises(ControlError, match="not found"):
        cr.unload_key({"id": b"00"})


def _second_identity() -> tuple[Any, Any, Any]:
    """Another CA with an intermediate, and a host certificate under it."""
    root_key, mid_key, key = generate_key(), generate_key(), generate_key()
    root = make_ca(root_key, "CN=Second Root", now=NOW)
    mid = make_ca(mid_key, "CN=Second Intermediate", now=NOW, issuer_cert=root,
                  issuer_key=root_key)  # fmt: skip
    cert = issue_host(mid, mid_key, key.public_key(), cn="moon.example.net",
                      sans=["moon.example.net"], now=NOW)  # fmt: skip
    return root, mid, (cert, key)


def test_several_local_certificates_are_candidates() -> None:
    """``local.certs`` with several certificates: the TOML loader's candidate rule
    (the first, then every later end-entity certificate; CA certificates in the list
    are intermediates), each with its own key and chain (RFC 7296 §3.7)."""
    pki = Pki()
    root, mid, (cert2, key2) = _second_identity()
    cr = ViciCredentials()
    for ca in (pki.ca, root):
        cr.load_cert({"type": b"X509", "flag": b"CA", "data": pki.pem(ca)})
    cr.load_key({"data": pki.key_pem()})
    key2_pem = key2.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())  # fmt: skip
    cr.load_key({"data": key2_pem})
    local = {"auth": "pubkey", "certs": [pki.pem(pki.cert), pki.pem(mid), pki.pem(cert2)]}
    c = translate(pubkey_conn(pki, local=local), cr)
    assert c.local_credentials is not None and c.local_credentials.certificate == pki.cert
    assert c.local_credentials.anchor == pki.ca and c.local_credentials.intermediates == ()
    (second,) = c.local_candidates
    assert second.certificate == cert2 and second.intermediates == (mid,)
    assert second.anchor == root
    assert second.private_key.public_key() == key2.public_key()
    # the second candidate's key missing: an error naming that certificate
    cr.unload_key({"id": key_id(key2).encode()})
    msg = errors(pubkey_conn(pki, local=local), cr)
    assert "local.certs[2]" in msg and "no private key matches the certificate" in msg


def test_local_raw_public_key() -> None:
    """``local.pubkeys``: authenticate with a raw public key (RFC 7670), its private
    key from load-key; not together with ``certs``; ``local.key`` is pyipsec's TOML."""
    pki = Pki()
    spki = pki.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    peer = psk_conn(remote={"auth": "pubkey", "pubkeys": [spki]})
    conn = peer | {"local": {"auth": "pubkey", "pubkeys": [spki]}}
    cr = creds_with_psk()
    assert "no private key matches the public key" in errors(conn, cr)
    cr.load_key({"data": pki.key_pem()})
    c = translate(conn, cr)
    assert c.local_credentials is not None and c.local_credentials.certificate is None
    assert c.local_credentials.private_key.public_key() == pki.key.public_key()
    both = peer | {"local": {"auth": "pubkey", "pubkeys": [spki], "certs": [pki.pem(pki.cert)]}}
    assert "raw public keys and certs exclude each other" in errors(both, cr)
    assert "local.pubkeys[0]: not a public key" in errors(
        peer | {"local": {"auth": "pubkey", "pubkeys": [b"junk"]}}, cr
    )
    assert "local.pubkeys: only with auth" in errors(
        peer | {"local": {"auth": "psk", "pubkeys": [spki]}}, cr
    )
    msg = errors(peer | {"local": {"auth": "pubkey", "pubkeys": [spki], "key": "k.pem"}}, cr)
    assert "local.key: unknown key (hint: load private keys with load-key" in msg


def creds_with_eap() -> ViciCredentials:
    c = creds_with_psk()
    for user, pw in (("carol", "carol-pw"), ("dave", "dave-pw")):
        c.load_shared(b({"id": f"eap-{user}", "type": "EAP", "data": pw, "owners": [user]}))
    return c


def test_eap_gateway_and_client() -> None:
    """``auth = eap-*``, ``eap_id`` and EAP secrets (load-shared type EAP) by the TOML
    loader's rules (RFC 7296 §2.16): a gateway's users, a client's own password."""
    cr = creds_with_eap()
    gw = translate(psk_conn(remote={"auth": "eap-mschapv2", "eap_id": "%any"}), cr)
    assert (gw.local_auth, gw.remote_auth, gw.remote_eap_id) == ("psk", "eap-mschapv2", "%any")
    assert gw.eap_users == ((b"carol", b"carol-pw"), (b"dave", b"dave-pw"))
    assert gw.psk == b"s3cret"  # an EAP secret is never a PSK
    client = translate(psk_conn(local={"auth": "eap-md5", "eap_id": "dave"},
                                remote={"auth": "psk", "id": "moon.example.net"}), cr)
    assert client.local_auth == "eap-md5" and client.local_eap_id == "dave"
    assert client.eap_secret == b"dave-pw" and client.eap_users == ()
    # EAP-only gateway auth as the server, method chosen per peer ("eap")
    anyeap = translate(psk_conn(remote={"auth": "eap", "eap_id": "%any"}), cr)
    assert anyeap.remote_auth == "eap" and len(anyeap.eap_users) == 2


def test_eap_secrets_loaded_later_are_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """As a PSK: swanctl may load the connection before its secrets; it loads, its
    authentications fail until they are there."""
    c = translate(psk_conn(local={"auth": "eap-mschapv2", "eap_id": "erin"}), creds_with_eap())
    assert c.eap_secret == b""
    assert "connections.gw.local.auth: no EAP secret in [secrets] for 'erin'" in caplog.text
    gw = translate(psk_conn(remote={"auth": "eap-md5"}), creds_with_psk())
    assert gw.eap_users == () and "eap-md5 needs the users' secrets" in caplog.text


@pytest.mark.parametrize(
    ("conn", "expected"),
    [
        (psk_conn(local={"auth": "psk", "eap_id": "carol"}),
         "connections.gw.local.eap_id: only with an EAP local.auth"),
        (psk_conn(remote={"auth": "psk", "eap_id": "%any"}),
         "connections.gw.remote.eap_id: only with an EAP remote.auth"),
        (psk_conn(local={"auth": "eap-radius"}),
         "connections.gw.local.auth: eap-radius is a server method"),
        (psk_conn(local={"auth": "eap-md5", "eap_id": "%any"}),
         "local.eap_id: must be our EAP identity, not a wildcard"),
        (psk_conn(local={"auth": "eap-md5", "eap_id": ""}), "local.eap_id: empty EAP identity"),
        (psk_conn(remote={"auth": "eap-tls"}), "remote.auth: \"eap-tls\" needs a trust anchor"),
    ],
)  # fmt: skip
def test_eap_errors_are_located(conn: dict[str, Any], expected: str) -> None:
    assert expected in errors(conn, creds_with_eap())


def test_eap_tls_certificates() -> None:
    """EAP-TLS (RFC 5216): the gateway's TLS certificate is ``local.certs`` (it may sign
    IKE with a PSK), the clients' certificates are checked against the loaded CAs."""
    pki = Pki()
    cr = creds_with_eap()
    cr.load_cert({"type": b"X509", "flag": b"CA", "data": pki.pem(pki.ca)})
    cr.load_key({"data": pki.key_pem()})
    tls_gw = psk_conn(local={"auth": "psk", "id": "moon.example.net"},
                      remote={"auth": "eap-tls", "eap_id": "%any"})
    assert "local.certs: missing: EAP-TLS needs our certificate" in errors(tls_gw, cr)
    tls_gw["local"]["certs"] = [pki.pem(pki.cert)]
    gw = translate(tls_gw, cr)
    assert gw.remote_auth == "eap-tls" and gw.remote_trust is not None
    assert gw.remote_trust.anchors == (pki.ca,)
    assert gw.local_credentials is not None and gw.local_credentials.certificate == pki.cert
    client = translate(psk_conn(local={"auth": "eap-tls", "certs": [pki.pem(pki.cert)]}), cr)
    assert client.local_credentials is not None
    assert client.local_credentials.certificate == pki.cert


def test_eap_shared_secrets() -> None:
    cr = ViciCredentials()
    with pytest.raises(ControlError, match="an EAP secret names its user"):
        cr.load_shared(b({"id": "eap-x", "type": "EAP", "data": "pw"}))
    cr.load_shared(b({"id": "eap-x", "type": "EAP", "data": "pw", "owners": ["x"]}))
    assert cr.get_shared() == ["eap-x"] and cr.psk_for("x", "x") is None


@pytest.mark.parametrize("value", ["allow", "prefer", "force", "never"])
def test_childless(value: str) -> None:
    """swanctl.conf ``childless`` (RFC 6023) maps to the connection's ``childless``."""
    conn = translate(psk_conn(childless=value))
    assert conn.childless == value
    assert "childless" in errors(psk_conn(childless="sometimes"))
