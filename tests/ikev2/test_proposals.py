"""Proposal strings and proposal selection (RFC 7296 §2.7, §3.3.3, §3.3.6)."""

from __future__ import annotations

import pytest

from pyipsec.crypto.keys import ChildSuite, IkeSuite
from pyipsec.ikev2.constants import (
    DhId,
    EncrId,
    EsnId,
    IntegId,
    PrfId,
    ProtocolId,
    TransformType,
)
from pyipsec.ikev2.errors import NoProposalChosen, ProposalStringError, ProtocolError
from pyipsec.ikev2.payloads import Proposal, SaPayload, Transform
from pyipsec.ikev2.proposals import (
    DEFAULT_ESP_PROPOSALS,
    DEFAULT_IKE_PROPOSALS,
    expand_proposals,
    format_proposal,
    make_proposals,
    parse_proposal,
    parse_proposals,
    select_proposal,
    strip_dh,
    suite_from_proposal,
    verify_chosen_proposal,
)
from pyipsec.ikev2.tasks import common
from pyipsec.ikev2.tasks.common import choose_configured

IKE, ESP = ProtocolId.IKE, ProtocolId.ESP
T = TransformType


def E(eid: int, bits: int | None = None) -> Transform:
    return Transform(T.ENCR, eid, bits)


def P(pid: int) -> Transform:
    return Transform(T.PRF, pid)


def I(iid: int) -> Transform:  # noqa: E743
    return Transform(T.INTEG, iid)


def D(gid: int) -> Transform:
    return Transform(T.DH, gid)


def N(esn: int) -> Transform:
    return Transform(T.ESN, esn)


# --- parsing ---------------------------------------------------------------------

PARSE_CASES = [
    (
        "aes256gcm16-prfsha256-x25519",
        IKE,
        [E(EncrId.AES_GCM_16, 256), P(PrfId.HMAC_SHA2_256), D(DhId.CURVE25519)],
    ),
    (
        "aes128-sha256-modp2048",
        IKE,
        [
            E(EncrId.AES_CBC, 128),
            P(PrfId.HMAC_SHA2_256),
            I(IntegId.HMAC_SHA2_256_128),
            D(DhId.MODP_2048),
        ],
    ),
    (
        "aes256-sha256-modp2048",
        IKE,
        [
            E(EncrId.AES_CBC, 256),
            P(PrfId.HMAC_SHA2_256),
            I(IntegId.HMAC_SHA2_256_128),
            D(DhId.MODP_2048),
        ],
    ),
    (
        "chacha20poly1305-prfsha512-curve448",
        IKE,
        [E(EncrId.CHACHA20_POLY1305), P(PrfId.HMAC_SHA2_512), D(DhId.CURVE448)],
    ),
    (
        "aes256gcm16-aes128gcm16-prfsha256-x25519",
        IKE,
        [
            E(EncrId.AES_GCM_16, 256),
            E(EncrId.AES_GCM_16, 128),
            P(PrfId.HMAC_SHA2_256),
            D(DhId.CURVE25519),
        ],
    ),
    (
        "aes128-sha1-prfsha384-ecp384-ecp256",
        IKE,
        [
            E(EncrId.AES_CBC, 128),
            P(PrfId.HMAC_SHA2_384),
            I(IntegId.HMAC_SHA1_96),
            D(DhId.ECP_384),
            D(DhId.ECP_256),
        ],
    ),
    (
        "aes192-sha512-sha384-modp4096",
        IKE,
        [
            E(EncrId.AES_CBC, 192),
            P(PrfId.HMAC_SHA2_512),
            P(PrfId.HMAC_SHA2_384),
            I(IntegId.HMAC_SHA2_512_256),
            I(IntegId.HMAC_SHA2_384_192),
            D(DhId.MODP_4096),
        ],
    ),
    (
        "aes128-aesxcbc-modp3072",
        IKE,
        [E(EncrId.AES_CBC, 128), P(PrfId.AES128_XCBC), I(IntegId.AES_XCBC_96), D(15)],
    ),
    ("aes256gcm16", ESP, [E(EncrId.AES_GCM_16, 256), N(EsnId.NO_ESN)]),
    (
        "aes256gcm16-x25519",
        ESP,
        [E(EncrId.AES_GCM_16, 256), D(DhId.CURVE25519), N(EsnId.NO_ESN)],
    ),
    (
        "aes256-sha256",
        ESP,
        [E(EncrId.AES_CBC, 256), I(IntegId.HMAC_SHA2_256_128), N(EsnId.NO_ESN)],
    ),
    ("aes128gcm16-esn", ESP, [E(EncrId.AES_GCM_16, 128), N(EsnId.ESN)]),
    ("aes128gcm16-noesn", ESP, [E(EncrId.AES_GCM_16, 128), N(EsnId.NO_ESN)]),
    ("aes128gcm16-esn-noesn", ESP, [E(EncrId.AES_GCM_16, 128), N(EsnId.ESN), N(EsnId.NO_ESN)]),
    ("aes128gcm8-aes256gcm12", ESP, [E(18, 128), E(19, 256), N(EsnId.NO_ESN)]),
    ("chacha20poly1305", ESP, [E(EncrId.CHACHA20_POLY1305), N(EsnId.NO_ESN)]),
    (
        "aes128-sha1-modp2048",
        ESP,
        [E(EncrId.AES_CBC, 128), I(IntegId.HMAC_SHA1_96), D(14), N(EsnId.NO_ESN)],
    ),
]


@pytest.mark.parametrize(("text", "protocol", "expected"), PARSE_CASES)
def test_parse(text: str, protocol: int, expected: list[Transform]) -> None:
    assert parse_proposal(text, protocol) == expected


@pytest.mark.parametrize(("text", "protocol", "expected"), PARSE_CASES)
def test_format_round_trip(text: str, protocol: int, expected: list[Transform]) -> None:
    formatted = format_proposal(expected)
    assert parse_proposal(formatted, protocol) == expected
    if text not in ("aes128gcm16-noesn",):  # the ESP default noesn is not printed
        canonical = text.replace("curve448", "x448")
        assert formatted == canonical


@pytest.mark.parametrize(
    ("alias", "canonical", "protocol"),
    [
        ("AES256GCM16-PRFSHA256-X25519", "aes256gcm16-prfsha256-x25519", IKE),
        ("aes256gcm-prfsha256-curve25519", "aes256gcm16-prfsha256-x25519", IKE),
        ("aes-sha-modp2048", "aes128-sha1-modp2048", IKE),
        ("aes128-sha2_256-modp2048", "aes128-sha256-modp2048", IKE),
        ("aes128-sha256-sha256-modp2048-modp2048", "aes128-sha256-modp2048", IKE),
        (" aes256gcm16 ", "aes256gcm16", ESP),
    ],
)
def test_aliases_and_duplicates(alias: str, canonical: str, protocol: int) -> None:
    assert parse_proposal(alias, protocol) == parse_proposal(canonical, protocol)
    assert format_proposal(parse_proposal(alias, protocol)) == canonical


def test_explicit_prf_differing_from_integ_is_kept() -> None:
    ts = parse_proposal("aes128-sha256-prfsha512-modp2048", IKE)
    assert [t for t in ts if t.type == T.PRF] == [P(PrfId.HMAC_SHA2_512)]
    assert format_proposal(ts) == "aes128-sha256-prfsha512-modp2048"


def test_format_unknown_transforms() -> None:
    text = format_proposal([E(1234, 128), Transform(9, 3), D(DhId.CURVE25519)])
    assert text == "encr#1234_128-x25519-addke4#3"


def test_unknown_token_error_names_token_and_suggests() -> None:
    with pytest.raises(ProposalStringError) as err:
        parse_proposal("aes256gcm16-prfsha265-x25519", IKE)
    msg = str(err.value)
    assert "'prfsha265'" in msg
    assert "prfsha256" in msg  # close match
    assert "valid tokens" in msg
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize(
    ("text", "protocol", "fragment"),
    [
        ("aes256gcm16-x25519", IKE, "no PRF"),
        ("aes128-sha256", IKE, "no key exchange"),
        ("sha256-modp2048", IKE, "no encryption"),
        ("aes128-modp2048-prfsha256", IKE, "no integrity"),
        ("aes128", ESP, "no integrity"),
        ("default", IKE, "expand_proposals"),
        ("aes256gcm16-aes128-sha256", ESP, "cannot share"),
        ("aes256gcm16-prfsha256", ESP, "not valid in an ESP"),
        ("aes256gcm16-prfsha256-x25519-esn", IKE, "not valid in an IKE"),
        ("aes256gcm16--x25519", ESP, "empty"),
        ("", ESP, "empty"),
        ("aes512", ESP, "'aes512'"),
        ("3des-sha1", ESP, "'3des'"),
    ],
)
def test_invalid_strings(text: str, protocol: int, fragment: str) -> None:
    with pytest.raises(ProposalStringError, match=fragment):
        parse_proposal(text, protocol)


# strongSwan (proposal_create_from_string in libstrongswan 5.9.8, checked with Debian's
# library): with AEAD ciphers INTEG words give the IKE PRF when no prf word is present,
# then are dropped, in IKE and in ESP.
@pytest.mark.parametrize(
    ("text", "protocol", "expected"),
    [
        (
            "aes256gcm16-sha256-x25519",
            IKE,
            [E(EncrId.AES_GCM_16, 256), P(PrfId.HMAC_SHA2_256), D(DhId.CURVE25519)],
        ),
        (
            "aes128gcm16-prfsha384-sha256-ecp256",
            IKE,
            [E(EncrId.AES_GCM_16, 128), P(PrfId.HMAC_SHA2_384), D(DhId.ECP_256)],
        ),
        (
            "aes256gcm16-sha256-sha384-x25519",
            IKE,
            [
                E(EncrId.AES_GCM_16, 256),
                P(PrfId.HMAC_SHA2_256),
                P(PrfId.HMAC_SHA2_384),
                D(DhId.CURVE25519),
            ],
        ),
        ("aes256gcm16-sha256", ESP, [E(EncrId.AES_GCM_16, 256), N(EsnId.NO_ESN)]),
        (
            "chacha20poly1305-sha512-x25519",
            ESP,
            [E(EncrId.CHACHA20_POLY1305), D(DhId.CURVE25519), N(EsnId.NO_ESN)],
        ),
    ],
)
def test_integrity_words_with_aead_like_strongswan(
    text: str, protocol: int, expected: list[Transform]
) -> None:
    assert parse_proposal(text, protocol) == expected


def test_aead_with_integrity_round_trips_to_the_canonical_string() -> None:
    ts = parse_proposal("aes256gcm16-sha256-x25519", IKE)
    assert format_proposal(ts) == "aes256gcm16-prfsha256-x25519"
    assert parse_proposal(format_proposal(ts), IKE) == ts


def test_default_expands_to_strongswans_defaults() -> None:
    assert expand_proposals(["Default "], IKE) == list(DEFAULT_IKE_PROPOSALS)
    assert expand_proposals(["default"], ESP) == list(DEFAULT_ESP_PROPOSALS)
    assert expand_proposals(["aes256gcm16", "default"], ESP) == [
        "aes256gcm16",
        *DEFAULT_ESP_PROPOSALS,
    ]
    ike = parse_proposals(["default"], IKE)
    assert len(ike) == 2  # classic first, then AEAD, as charon sends them
    classic, aead = ike
    assert classic[:3] == [E(EncrId.AES_CBC, 128), E(EncrId.AES_CBC, 192), E(EncrId.AES_CBC, 256)]
    assert [t.id for t in classic if t.type == T.INTEG] == [
        IntegId.HMAC_SHA2_256_128,
        IntegId.HMAC_SHA2_384_192,
        IntegId.HMAC_SHA2_512_256,
        IntegId.HMAC_SHA1_96,
    ]
    groups = [
        DhId.CURVE25519,
        DhId.CURVE448,
        DhId.ECP_256,
        DhId.ECP_384,
        DhId.ECP_521,
        DhId.MODP_3072,
        DhId.MODP_4096,
        DhId.MODP_2048,
    ]
    for proposal in ike:
        assert [t.id for t in proposal if t.type == T.DH] == groups
        assert [t.id for t in proposal if t.type == T.PRF] == [
            PrfId.HMAC_SHA2_256,
            PrfId.HMAC_SHA2_384,
            PrfId.HMAC_SHA2_512,
            PrfId.HMAC_SHA1,
        ]
    assert aead[0] == E(EncrId.AES_GCM_16, 128)
    assert E(EncrId.CHACHA20_POLY1305) in aead
    assert not [t for t in aead if t.type == T.INTEG]
    esp_classic, esp_aead = parse_proposals(["default"], ESP)
    assert IntegId.AES_XCBC_96 in [t.id for t in esp_classic if t.type == T.INTEG]
    assert esp_aead == [
        E(EncrId.AES_GCM_16, 128),
        E(EncrId.AES_GCM_16, 192),
        E(EncrId.AES_GCM_16, 256),
        N(EsnId.NO_ESN),
    ]
    assert not [t for ts in (esp_classic, esp_aead) for t in ts if t.type == T.DH]


def test_default_proposals_select_against_each_other() -> None:
    ours = parse_proposals(["default"], IKE)
    offered = make_proposals(parse_proposals(["aes256gcm16-prfsha384-ecp384"], IKE), IKE)
    chosen = select_proposal(offered, ours)
    assert chosen is not None
    assert suite_from_proposal(chosen) == IkeSuite(
        EncrId.AES_GCM_16, 256, PrfId.HMAC_SHA2_384, None, DhId.ECP_384
    )


def test_parse_rejects_ah() -> None:
    with pytest.raises(ProposalStringError):
        parse_proposal("sha256", ProtocolId.AH)


def test_parse_proposals_and_make_proposals() -> None:
    lists = parse_proposals(["aes256gcm16", "aes128-sha256"], ESP)
    props = make_proposals(lists, ESP, b"\x01\x02\x03\x04")
    assert [p.num for p in props] == [1, 2]
    assert all(p.protocol == ESP and p.spi == b"\x01\x02\x03\x04" for p in props)
    assert props[1].transforms == lists[1]


def test_strip_dh() -> None:
    ts = parse_proposal("aes256gcm16-x25519-esn", ESP)
    assert strip_dh(ts) == [E(EncrId.AES_GCM_16, 256), N(EsnId.ESN)]


# --- selection ---------------------------------------------------------------------


def offer(protocol: int, *texts: str, spi: bytes = b"") -> list[Proposal]:
    return make_proposals(parse_proposals(texts, protocol), protocol, spi)


def test_select_follows_initiator_order() -> None:
    offered = offer(IKE, "aes128-sha256-modp2048", "aes256gcm16-prfsha256-x25519", spi=b"S" * 8)
    ours = parse_proposals(["aes256gcm16-prfsha256-x25519", "aes128-sha256-modp2048"], IKE)
    chosen = select_proposal(offered, ours)
    assert chosen is not None
    assert chosen.num == 1 and chosen.spi == b"S" * 8 and chosen.protocol == IKE
    assert chosen.transforms == parse_proposal("aes128-sha256-modp2048", IKE)


def test_select_skips_unacceptable_and_keeps_number() -> None:
    offered = offer(IKE, "aes128-sha1-modp3072", "aes256gcm16-prfsha256-x25519")
    chosen = select_proposal(offered, parse_proposals(["aes256gcm16-prfsha256-x25519"], IKE))
    assert chosen is not None and chosen.num == 2


def test_select_one_transform_per_type_in_offer_order() -> None:
    offered = offer(IKE, "aes256gcm16-aes128gcm16-prfsha512-prfsha256-ecp256-x25519-modp2048")
    ours = parse_proposals(["aes128gcm16-aes256gcm16-prfsha256-prfsha512-x25519-ecp256"], IKE)
    chosen = select_proposal(offered, ours)
    assert chosen is not None
    assert chosen.transforms == [
        E(EncrId.AES_GCM_16, 256),
        P(PrfId.HMAC_SHA2_512),
        D(DhId.ECP_256),
    ]
    assert isinstance(suite_from_proposal(chosen), IkeSuite)


def test_select_key_length_must_match() -> None:
    offered = offer(IKE, "aes256gcm16-prfsha256-x25519")
    assert select_proposal(offered, parse_proposals(["aes128gcm16-prfsha256-x25519"], IKE)) is None
    no_attr = [Proposal(1, IKE, b"", [E(EncrId.AES_GCM_16), P(PrfId.HMAC_SHA2_256), D(31)])]
    assert select_proposal(no_attr, parse_proposals(["aes256gcm16-prfsha256-x25519"], IKE)) is None


def test_select_missing_mandatory_type() -> None:
    ours = parse_proposals(["aes256gcm16-prfsha256-x25519"], IKE)
    for drop in (T.ENCR, T.PRF, T.DH):
        ts = [t for t in parse_proposal("aes256gcm16-prfsha256-x25519", IKE) if t.type != drop]
        assert select_proposal([Proposal(1, IKE, b"", ts)], ours) is None
    ts = [t for t in parse_proposal("aes128-sha256-modp2048", IKE) if t.type != T.INTEG]
    assert (
        select_proposal(
            [Proposal(1, IKE, b"", ts)], parse_proposals(["aes128-sha256-modp2048"], IKE)
        )
        is None
    )


def test_select_unknown_transform_type_or_attribute_skips() -> None:
    ours = parse_proposals(["aes256gcm16-prfsha256-x25519"], IKE)
    base = parse_proposal("aes256gcm16-prfsha256-x25519", IKE)
    unknown_type = Proposal(1, IKE, b"", [*base, Transform(200, 1)])
    assert select_proposal([unknown_type], ours) is None
    # An unknown attribute makes that transform unacceptable, others still count.
    odd = Transform(T.ENCR, EncrId.AES_GCM_16, 256, attributes=((99, 1),))
    prop = Proposal(3, IKE, b"", [odd, *base])
    chosen = select_proposal([prop], ours)
    assert chosen is not None and chosen.transforms[0] is base[0]
    assert select_proposal([Proposal(1, IKE, b"", [odd, *base[1:]])], ours) is None


def test_select_returns_offered_objects_unmodified() -> None:
    offered = offer(ESP, "aes256gcm16-esn")
    chosen = select_proposal(offered, parse_proposals(["aes256gcm16-esn"], ESP))
    assert chosen is not None
    assert chosen.transforms[0] is offered[0].transforms[0]


def test_memoised_choice_answers_each_offer_with_its_own_objects() -> None:
    """choose_configured remembers the choice per offered transforms: a second peer
    sending the same transforms (parsed into the same shared Transform objects) gets
    its own proposal number and SPI back; different values (an unknown attribute) are
    decided anew; a refusal is remembered too."""
    texts = ("aes256gcm16-prfsha256-x25519",)

    def received(spi: bytes) -> list[Proposal]:  # as parsed from a peer's SA payload
        sent = SaPayload(offer(IKE, "aes128-sha256-modp2048", texts[0], spi=spi))
        return SaPayload.parse_body(sent.serialise_body()).proposals

    first, second = received(b"A" * 8), received(b"B" * 8)
    common._CHOICES.clear()
    for offered in (first, second, first):
        chosen = choose_configured(texts, IKE, offered)
        assert len(common._CHOICES) == 1  # one decision for the three offers
        assert chosen == select_proposal(offered, parse_proposals(texts, IKE))
        assert chosen.spi == offered[1].spi and chosen.num == 2
        assert all(t is o for t, o in zip(chosen.transforms, offered[1].transforms,
                                          strict=True))
    odd = Transform(T.ENCR, EncrId.AES_GCM_16, 256, attributes=((99, 1),))
    with pytest.raises(NoProposalChosen):
        choose_configured(texts, IKE, [Proposal(1, IKE, b"", [odd, *first[1].transforms[1:]])])
    for _ in range(2):
        with pytest.raises(NoProposalChosen):
            choose_configured(texts, IKE, offer(IKE, "aes128-sha1-modp3072"))
    # the configured proposals are part of the key: another configuration (a reload)
    # decides anew, never from the memo of the old one
    with pytest.raises(NoProposalChosen):
        choose_configured(("aes128gcm16-prfsha256-x25519",), IKE, first)
    assert choose_configured(texts, IKE, first).num == 2
    # the ESP choice of IKE_AUTH ignores the KE transform on both sides (§1.2)
    esp = offer(ESP, "aes256gcm16-x25519-esn", spi=b"\x01\x02\x03\x04")
    chosen = choose_configured(["aes256gcm16-esn"], ESP, esp, strip_ke=True, ignore_dh=True)
    assert [t.type for t in chosen.transforms] == [T.ENCR, T.ESN]


def test_esn_absent_in_offer_means_no_esn() -> None:
    no_esn_type = [Proposal(1, ESP, b"\x00" * 4, [E(EncrId.AES_GCM_16, 256)])]
    chosen = select_proposal(no_esn_type, parse_proposals(["aes256gcm16"], ESP))
    assert chosen is not None
    assert chosen.transforms == [E(EncrId.AES_GCM_16, 256)]
    suite = suite_from_proposal(chosen)
    assert isinstance(suite, ChildSuite) and suite.esn is False
    assert select_proposal(no_esn_type, parse_proposals(["aes256gcm16-esn"], ESP)) is None


def test_esn_negotiation() -> None:
    both = offer(ESP, "aes256gcm16-esn-noesn")
    chosen = select_proposal(both, parse_proposals(["aes256gcm16-noesn-esn"], ESP))
    assert chosen is not None and chosen.transforms[-1] == N(EsnId.ESN)  # initiator's order
    chosen = select_proposal(both, parse_proposals(["aes256gcm16"], ESP))
    assert chosen is not None and chosen.transforms[-1] == N(EsnId.NO_ESN)
    only_esn = offer(ESP, "aes256gcm16-esn")
    assert select_proposal(only_esn, parse_proposals(["aes256gcm16"], ESP)) is None


def test_pfs_group_and_dh_none() -> None:
    ours_pfs = parse_proposals(["aes256gcm16-x25519"], ESP)
    ours_nopfs = parse_proposals(["aes256gcm16"], ESP)
    with_pfs = offer(ESP, "aes256gcm16-x25519")
    without = offer(ESP, "aes256gcm16")
    assert select_proposal(with_pfs, ours_nopfs) is None
    assert select_proposal(without, ours_pfs) is None
    chosen = select_proposal(with_pfs, ours_pfs)
    assert chosen is not None
    suite = suite_from_proposal(chosen)
    assert isinstance(suite, ChildSuite) and suite.dh_group == DhId.CURVE25519
    # An explicit DH NONE in the offer is selected when we do not want PFS.
    optional = [Proposal(1, ESP, b"", [E(EncrId.AES_GCM_16, 256), D(31), D(0), N(0)])]
    chosen = select_proposal(optional, ours_nopfs)
    assert chosen is not None and D(0) in chosen.transforms
    assert suite_from_proposal(chosen) == ChildSuite(EncrId.AES_GCM_16, 256, None, 0, False)
    chosen = select_proposal(optional, ours_pfs)
    assert chosen is not None and D(31) in chosen.transforms


def test_ignore_dh_for_ike_auth() -> None:
    with_pfs = offer(ESP, "aes256gcm16-x25519")
    chosen = select_proposal(with_pfs, parse_proposals(["aes256gcm16"], ESP), ignore_dh=True)
    assert chosen is not None and all(t.type != T.DH for t in chosen.transforms)
    chosen = select_proposal(
        offer(ESP, "aes256gcm16"), parse_proposals(["aes256gcm16-ecp256"], ESP), ignore_dh=True
    )
    assert chosen is not None


def test_aead_with_integ_none_and_mixed_offers() -> None:
    ours = parse_proposals(["aes256gcm16", "aes128-sha256"], ESP)
    with_none = [Proposal(1, ESP, b"", [E(EncrId.AES_GCM_16, 256), I(0), N(0)])]
    chosen = select_proposal(with_none, ours)
    assert chosen is not None and chosen.transforms == [E(EncrId.AES_GCM_16, 256), I(0), N(0)]
    suite = suite_from_proposal(chosen)
    assert isinstance(suite, ChildSuite) and suite.integ_id is None
    # A (non-conforming) mixed offer: GCM with a real INTEG is skipped, CBC taken.
    mixed = [
        Proposal(
            1,
            ESP,
            b"",
            [E(EncrId.AES_GCM_16, 256), E(EncrId.AES_CBC, 128), I(IntegId.HMAC_SHA2_256_128), N(0)],
        )
    ]
    chosen = select_proposal(mixed, ours)
    assert chosen is not None
    assert chosen.transforms == [E(EncrId.AES_CBC, 128), I(IntegId.HMAC_SHA2_256_128), N(0)]
    # CBC offered without INTEG is never acceptable.
    bare = [Proposal(1, ESP, b"", [E(EncrId.AES_CBC, 128), N(0)])]
    assert select_proposal(bare, ours) is None
    bare_none = [Proposal(1, ESP, b"", [E(EncrId.AES_CBC, 128), I(0), N(0)])]
    assert select_proposal(bare_none, ours) is None


def test_select_protocol_filter_and_empty() -> None:
    assert select_proposal([], parse_proposals(["aes256gcm16"], ESP)) is None
    ah = Proposal(1, ProtocolId.AH, b"", [I(IntegId.HMAC_SHA2_256_128), N(0)])
    offered = [ah, Proposal(2, ESP, b"", parse_proposal("aes256gcm16", ESP))]
    assert select_proposal(offered, parse_proposals(["aes256gcm16"], ESP)) is None
    chosen = select_proposal(offered, parse_proposals(["aes256gcm16"], ESP), protocol=ESP)
    assert chosen is not None and chosen.num == 2
    # PRF transforms are not valid in ESP; ESN not in IKE.
    weird = [Proposal(1, ESP, b"", [E(EncrId.AES_GCM_16, 256), P(5), N(0)])]
    assert select_proposal(weird, parse_proposals(["aes256gcm16"], ESP)) is None
    weird_ike = [
        Proposal(1, IKE, b"", [*parse_proposal("aes256gcm16-prfsha256-x25519", IKE), N(0)])
    ]
    assert (
        select_proposal(weird_ike, parse_proposals(["aes256gcm16-prfsha256-x25519"], IKE)) is None
    )


# --- initiator-side check and suites -------------------------------------------------


def test_verify_chosen_proposal() -> None:
    offered = offer(IKE, "aes128-sha256-modp2048", "aes256gcm16-aes128gcm16-prfsha256-x25519")
    ours = parse_proposals(["aes128gcm16-prfsha256-x25519"], IKE)
    chosen = select_proposal(offered, ours)
    assert chosen is not None
    assert verify_chosen_proposal(offered, chosen) is offered[1]
    bad_num = Proposal(5, IKE, b"", chosen.transforms)
    with pytest.raises(NoProposalChosen):
        verify_chosen_proposal(offered, bad_num)
    two = Proposal(2, IKE, b"", [E(EncrId.AES_GCM_16, 256), *chosen.transforms])
    with pytest.raises(NoProposalChosen, match="two transforms"):
        verify_chosen_proposal(offered, two)
    not_offered = Proposal(2, IKE, b"", [E(EncrId.AES_GCM_16, 192), *chosen.transforms[1:]])
    with pytest.raises(NoProposalChosen, match="not offered"):
        verify_chosen_proposal(offered, not_offered)
    missing = Proposal(2, IKE, b"", chosen.transforms[:-1])
    with pytest.raises(NoProposalChosen, match="omitted"):
        verify_chosen_proposal(offered, missing)


def test_suite_from_proposal() -> None:
    ike = Proposal(1, IKE, b"", parse_proposal("aes128-sha256-modp2048", IKE))
    assert suite_from_proposal(ike) == IkeSuite(
        EncrId.AES_CBC, 128, PrfId.HMAC_SHA2_256, IntegId.HMAC_SHA2_256_128, DhId.MODP_2048
    )
    gcm = Proposal(1, IKE, b"", parse_proposal("aes256gcm16-prfsha384-ecp384", IKE))
    assert suite_from_proposal(gcm) == IkeSuite(
        EncrId.AES_GCM_16, 256, PrfId.HMAC_SHA2_384, None, DhId.ECP_384
    )
    esp = Proposal(1, ESP, b"1234", parse_proposal("aes256-sha512-ecp521-esn", ESP))
    assert suite_from_proposal(esp) == ChildSuite(
        EncrId.AES_CBC, 256, IntegId.HMAC_SHA2_512_256, DhId.ECP_521, True
    )
    chacha = Proposal(1, ESP, b"1234", parse_proposal("chacha20poly1305", ESP))
    assert suite_from_proposal(chacha) == ChildSuite(EncrId.CHACHA20_POLY1305, None, None, 0, False)


@pytest.mark.parametrize(
    "transforms",
    [
        [E(EncrId.AES_GCM_16, 256), E(EncrId.AES_GCM_16, 128), P(5), D(31)],
        [E(EncrId.AES_GCM_16, 256), D(31)],
        [P(5), D(31)],
        [E(EncrId.AES_CBC, 128), P(5), D(31)],
    ],
)
def test_suite_from_bad_ike_proposal(transforms: list[Transform]) -> None:
    with pytest.raises(ProtocolError):
        suite_from_proposal(Proposal(1, IKE, b"", transforms))


def test_suite_from_bad_esp_proposal() -> None:
    with pytest.raises(ProtocolError):
        suite_from_proposal(Proposal(1, ESP, b"1234", [N(0)]))
