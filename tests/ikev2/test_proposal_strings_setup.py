"""IKE_SA_INIT/IKE_AUTH between two pyipsec cores with the proposal spellings
strongSwan accepts: ``default`` and integrity words next to AEAD ciphers."""

from __future__ import annotations

from pyipsec.constants import DhId, EncrId, PrfId, ProtocolId
from pyipsec.ikev2.events import ChildSaInstalled, IkeSaEstablished
from pyipsec.ikev2.proposals import expand_proposals

from .harness import Harness, conn_pair


def test_default_proposals_on_both_sides_establish() -> None:
    a, b = conn_pair(
        ike=expand_proposals(["default"], ProtocolId.IKE),
        esp=expand_proposals(["default"], ProtocolId.ESP),
    )
    h = Harness(a, b)
    h.up()
    assert len(h.a.of(IkeSaEstablished)) == 1 and len(h.b.of(IkeSaEstablished)) == 1
    sa = next(iter(h.a.mgr.by_id.values()))
    assert sa.suite is not None
    # the first default proposal (classic, as in charon) wins with its first algorithms
    assert (sa.suite.encr_id, sa.suite.prf_id, sa.suite.dh_group) == (
        EncrId.AES_CBC,
        PrfId.HMAC_SHA2_256,
        DhId.CURVE25519,
    )
    (info,) = [e.info for e in h.a.of(ChildSaInstalled)]
    assert info.encr_id == EncrId.AES_CBC and info.key_bits == 128


def test_aead_with_integrity_word_establishes_with_that_prf() -> None:
    a, b = conn_pair(
        ike=["aes256gcm16-sha384-x25519"],
        ike_b=["aes256gcm16-prfsha384-x25519"],
        esp=["aes256gcm16-sha256"],
        esp_b=["aes256gcm16"],
    )
    h = Harness(a, b)
    h.up()
    sa = next(iter(h.a.mgr.by_id.values()))
    assert sa.suite is not None
    assert (sa.suite.encr_id, sa.suite.prf_id, sa.suite.integ_id) == (
        EncrId.AES_GCM_16,
        PrfId.HMAC_SHA2_384,
        None,
    )
    (info,) = [e.info for e in h.a.of(ChildSaInstalled)]
    assert info.encr_id == EncrId.AES_GCM_16 and info.integ_id is None
