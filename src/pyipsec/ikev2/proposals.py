"""Proposal strings and proposal selection (RFC 7296 §2.7, §3.3, §3.3.6).

Proposal strings follow strongSwan's ``proposals``/``esp_proposals`` syntax:
dash-separated algorithm tokens, any number per transform type, forming *one*
proposal.  Examples::

    aes256gcm16-prfsha256-x25519         IKE, AEAD
    aes128-sha256-modp2048               IKE: sha256 = INTEG HMAC_SHA2_256_128 and
                                         PRF HMAC_SHA2_256 (no prf token given)
    aes256gcm16-aes128gcm16-prfsha256-x25519   two ENCR transforms in one proposal
    aes256gcm16 / aes256gcm16-x25519     ESP, without / with a PFS group
    aes256-sha256-esn                    ESP with extended sequence numbers

Rules (IKE): ENCR, PRF and a key exchange method are mandatory; INTEG is
mandatory unless the ciphers are AEAD; an integrity token implies the matching
PRF only when no ``prf*`` token is present.  (ESP): ENCR is mandatory, INTEG
unless AEAD, the key exchange (PFS) is optional, ESN defaults to ``noesn``.
AEAD and non-AEAD ciphers cannot share a proposal (RFC 5282 §8).  Problems raise
:class:`~pyipsec.ikev2.errors.ProposalStringError` naming the token.

Integrity tokens next to AEAD ciphers are read as strongSwan reads them (its
``proposal_create_from_string``, checked against libstrongswan 5.9.8): an AEAD
transform needs no INTEG (RFC 5282 §8, RFC 7296 §3.3.3), so INTEG tokens are
dropped, but in IKE, when no ``prf*`` token is present, they first give the
PRF.  ``aes256gcm16-sha256-x25519`` is AES-GCM-16-256 / PRF-HMAC-SHA2-256 /
Curve25519; in ``aes128gcm16-prfsha384-sha256-ecp256`` the explicit PRF wins
and ``sha256`` is ignored; the ESP proposal ``aes256gcm16-sha256`` is just
AES-GCM-16-256.

``default`` stands for strongSwan's default proposals (two of them, classic
first, then AEAD, as charon 5.9.8 sends them), restricted to what pyipsec
implements; see :data:`DEFAULT_IKE_PROPOSALS` and :data:`DEFAULT_ESP_PROPOSALS`.
:func:`expand_proposals` / :func:`parse_proposals` replace it;
:func:`parse_proposal` (one proposal) refuses it.

Selection (responder, §2.7/§3.3.6): the first offered proposal (initiator's
preference) that one of our proposals fully covers wins; per transform type the
first offered transform we accept is taken (ID and key length must match);
proposals with transform types we do not know are skipped.  An absent optional
type means NONE: a missing ESN for ESP is NO_ESN, a missing DH is "no PFS",
a missing INTEG is acceptable with AEAD only.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

from ..crypto.encr import is_aead
from ..crypto.keys import ChildSuite, IkeSuite
from .constants import (
    DhId,
    EncrId,
    EsnId,
    IntegId,
    PrfId,
    ProtocolId,
    TransformType,
)
from .errors import NoProposalChosen, ProposalStringError, ProtocolError
from .payloads import Proposal, Transform

__all__ = [
    "DEFAULT_ESP_PROPOSALS",
    "DEFAULT_IKE_PROPOSALS",
    "expand_proposals",
    "format_proposal",
    "make_proposals",
    "parse_proposal",
    "parse_proposals",
    "proposal_at",
    "proposal_tokens",
    "select_proposal",
    "select_proposal_index",
    "strip_dh",
    "suite_from_proposal",
    "verify_chosen_proposal",
]

_E: int = TransformType.ENCR
_P: int = TransformType.PRF
_I: int = TransformType.INTEG
_D: int = TransformType.DH
_N: int = TransformType.ESN
_TYPE_ORDER = (_E, _P, _I, _D, _N)
_Key = tuple[int, int, int | None]  # (type, id, key length)


def _build_tokens() -> dict[str, tuple[_Key, ...]]:
    t: dict[str, tuple[_Key, ...]] = {}
    for bits in (128, 192, 256):
        t[f"aes{bits}"] = ((_E, EncrId.AES_CBC, bits),)
        for icv, eid in ((8, EncrId.AES_GCM_8), (12, EncrId.AES_GCM_12), (16, EncrId.AES_GCM_16)):
            t[f"aes{bits}gcm{icv}"] = ((_E, eid, bits),)
        t[f"aes{bits}gcm"] = t[f"aes{bits}gcm16"]
    t["aes"] = t["aes128"]
    t["chacha20poly1305"] = ((_E, EncrId.CHACHA20_POLY1305, None),)
    # INTEG tokens; for IKE they also imply the PRF of the same hash (below).
    t["sha1"] = ((_I, IntegId.HMAC_SHA1_96, None),)
    t["sha"] = t["sha1"]
    t["sha256"] = ((_I, IntegId.HMAC_SHA2_256_128, None),)
    t["sha2_256"] = t["sha256"]
    t["sha384"] = ((_I, IntegId.HMAC_SHA2_384_192, None),)
    t["sha2_384"] = t["sha384"]
    t["sha512"] = ((_I, IntegId.HMAC_SHA2_512_256, None),)
    t["sha2_512"] = t["sha512"]
    t["aesxcbc"] = ((_I, IntegId.AES_XCBC_96, None),)
    for name, pid in (
        ("sha1", PrfId.HMAC_SHA1),
        ("sha256", PrfId.HMAC_SHA2_256),
        ("sha384", PrfId.HMAC_SHA2_384),
        ("sha512", PrfId.HMAC_SHA2_512),
        ("aesxcbc", PrfId.AES128_XCBC),
    ):
        t[f"prf{name}"] = ((_P, pid, None),)
    for name, gid in (
        ("modp2048", DhId.MODP_2048),
        ("modp3072", DhId.MODP_3072),
        ("modp4096", DhId.MODP_4096),
        ("ecp256", DhId.ECP_256),
        ("ecp384", DhId.ECP_384),
        ("ecp521", DhId.ECP_521),
        ("x25519", DhId.CURVE25519),
        ("curve25519", DhId.CURVE25519),
        ("x448", DhId.CURVE448),
        ("curve448", DhId.CURVE448),
    ):
        t[name] = ((_D, gid, None),)
    t["esn"] = ((_N, EsnId.ESN, None),)
    t["noesn"] = ((_N, EsnId.NO_ESN, None),)
    return t


_TOKENS = _build_tokens()

#: INTEG ID -> the PRF implied for IKE when no prf token is present.
_IMPLIED_PRF: dict[int, int] = {
    IntegId.HMAC_SHA1_96: PrfId.HMAC_SHA1,
    IntegId.HMAC_SHA2_256_128: PrfId.HMAC_SHA2_256,
    IntegId.HMAC_SHA2_384_192: PrfId.HMAC_SHA2_384,
    IntegId.HMAC_SHA2_512_256: PrfId.HMAC_SHA2_512,
    IntegId.AES_XCBC_96: PrfId.AES128_XCBC,
}

# Canonical token per transform (first name registered wins).
_CANONICAL: dict[_Key, str] = {}
for _name in (
    *(f"aes{b}" for b in (128, 192, 256)),
    *(f"aes{b}gcm{i}" for b in (128, 192, 256) for i in (8, 12, 16)),
    "chacha20poly1305",
    "sha1",
    "sha256",
    "sha384",
    "sha512",
    "aesxcbc",
    "prfsha1",
    "prfsha256",
    "prfsha384",
    "prfsha512",
    "prfaesxcbc",
    "modp2048",
    "modp3072",
    "modp4096",
    "ecp256",
    "ecp384",
    "ecp521",
    "x25519",
    "x448",
    "esn",
    "noesn",
):
    _CANONICAL.setdefault(_TOKENS[_name][0], _name)


def _valid_tokens(protocol: int) -> list[str]:
    if protocol == ProtocolId.IKE:
        return sorted(k for k, v in _TOKENS.items() if v[0][0] != _N)
    return sorted(k for k, v in _TOKENS.items() if v[0][0] != _P)


#: ``default`` for IKE: strongSwan 5.9.8's default IKE proposals without what pyipsec
#: lacks (AES-CTR, Camellia, 3DES, AES-CCM, AES-CMAC, Brainpool and MODP 6144/8192
#: groups); same order of algorithms.
DEFAULT_IKE_PROPOSALS: tuple[str, ...] = (
    "aes128-aes192-aes256-sha256-sha384-sha512-sha1-prfsha256-prfsha384-prfsha512-prfsha1"
    "-x25519-x448-ecp256-ecp384-ecp521-modp3072-modp4096-modp2048",
    "aes128gcm16-aes192gcm16-aes256gcm16-chacha20poly1305-aes128gcm12-aes192gcm12"
    "-aes256gcm12-aes128gcm8-aes192gcm8-aes256gcm8-prfsha256-prfsha384-prfsha512-prfsha1"
    "-x25519-x448-ecp256-ecp384-ecp521-modp3072-modp4096-modp2048",
)
#: ``default`` for ESP: strongSwan 5.9.8's default ESP proposals (all of whose
#: algorithms pyipsec implements): no PFS group, no ESN.
DEFAULT_ESP_PROPOSALS: tuple[str, ...] = (
    "aes128-aes192-aes256-sha256-sha384-sha512-sha1-aesxcbc",
    "aes128gcm16-aes192gcm16-aes256gcm16",
)


def _is_default(text: str) -> bool:
    return text.strip().lower() == "default"


def expand_proposals(texts: Iterable[str], protocol: int) -> list[str]:
    """``texts`` with every ``default`` replaced by the default proposals of ``protocol``."""
    defaults = DEFAULT_IKE_PROPOSALS if protocol == ProtocolId.IKE else DEFAULT_ESP_PROPOSALS
    out: list[str] = []
    for text in texts:
        out.extend(defaults if _is_default(text) else (text,))
    return out


def proposal_tokens(protocol: int) -> list[str]:
    """Every algorithm word :func:`parse_proposal` accepts for ``protocol``, sorted."""
    return _valid_tokens(protocol)


def _unknown(token: str, text: str, protocol: int) -> ProposalStringError:
    valid = _valid_tokens(protocol)
    close = difflib.get_close_matches(token, valid, n=4, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return ProposalStringError(
        f"unknown algorithm {token!r} in proposal {text!r}: {hint}valid tokens: {', '.join(valid)}"
    )


def _key(t: Transform) -> _Key:
    return (t.type, t.id, t.key_length)


def parse_proposal(text: str, protocol: int) -> list[Transform]:
    """Transforms of the proposal string ``text`` for ``protocol`` (IKE or ESP).

    The result is ordered ENCR, PRF, INTEG, DH, ESN, each type in string order,
    without duplicates.  Raises ProposalStringError.
    """
    if protocol not in (ProtocolId.IKE, ProtocolId.ESP):
        raise ProposalStringError(f"proposal strings exist for IKE and ESP only, not {protocol}")
    ike = protocol == ProtocolId.IKE
    if _is_default(text):
        raise ProposalStringError(
            "'default' stands for several proposals: expand it with expand_proposals()"
        )
    tokens = text.strip().lower().split("-")
    if not text.strip() or any(not tok for tok in tokens):
        raise ProposalStringError(f"empty algorithm token in proposal {text!r}")
    by_type: dict[int, list[_Key]] = {t: [] for t in _TYPE_ORDER}
    for tok in tokens:
        entry = _TOKENS.get(tok)
        if entry is None:
            raise _unknown(tok, text, protocol)
        for k in entry:
            if ike and k[0] == _N:
                raise ProposalStringError(f"{tok!r} is not valid in an IKE proposal ({text!r})")
            if not ike and k[0] == _P:
                raise ProposalStringError(f"{tok!r} is not valid in an ESP proposal ({text!r})")
            if k not in by_type[k[0]]:
                by_type[k[0]].append(k)
    encrs = by_type[_E]
    if not encrs:
        raise ProposalStringError(f"no encryption algorithm in proposal {text!r}")
    aead = {is_aead(k[1]) for k in encrs}
    if len(aead) > 1:
        raise ProposalStringError(
            f"AEAD and non-AEAD ciphers cannot share a proposal (RFC 5282 §8): {text!r}"
        )
    if aead != {True} and not by_type[_I]:
        raise ProposalStringError(f"no integrity algorithm in proposal {text!r}")
    if ike and not by_type[_P]:
        by_type[_P] = [(_P, _IMPLIED_PRF[k[1]], None) for k in by_type[_I]]
    if aead == {True}:
        by_type[_I] = []  # as strongSwan: INTEG words only gave the PRF (RFC 5282 §8)
    if ike:
        if not by_type[_P]:
            raise ProposalStringError(f"no PRF in IKE proposal {text!r} (add e.g. prfsha256)")
        if not by_type[_D]:
            raise ProposalStringError(f"no key exchange method in IKE proposal {text!r}")
    elif not by_type[_N]:
        by_type[_N] = [(_N, EsnId.NO_ESN, None)]
    return [Transform(t, i, kl) for ty in _TYPE_ORDER for (t, i, kl) in by_type[ty]]


def parse_proposals(texts: Iterable[str], protocol: int) -> list[list[Transform]]:
    """:func:`parse_proposal` for each string (one proposal per string) after
    :func:`expand_proposals` (``default`` gives several)."""
    return [parse_proposal(t, protocol) for t in expand_proposals(texts, protocol)]


def make_proposals(
    transform_lists: Sequence[Sequence[Transform]], protocol: int, spi: bytes = b""
) -> list[Proposal]:
    """Numbered :class:`Proposal` objects (1, 2, ...) for an SA payload (§3.3.1)."""
    return [Proposal(n, protocol, spi, list(ts)) for n, ts in enumerate(transform_lists, start=1)]


def strip_dh(transforms: Iterable[Transform]) -> list[Transform]:
    """The transforms without Transform Type 4, as needed in IKE_AUTH (RFC 7296 §1.2)."""
    return [t for t in transforms if t.type != _D]


def _token(t: Transform) -> str:
    name = _CANONICAL.get(_key(t))
    if name is not None:
        return name
    try:
        tname = TransformType(t.type).name.lower()
    except ValueError:
        tname = f"type{t.type}"
    suffix = f"_{t.key_length}" if t.key_length is not None else ""
    return f"{tname}#{t.id}{suffix}"


def format_proposal(transforms: Iterable[Transform]) -> str:
    """The proposal string of ``transforms`` (inverse of :func:`parse_proposal`).

    PRF tokens are left out when they equal what the INTEG tokens imply, and a
    lone ``noesn`` is left out (the ESP default), so canonical strings
    round-trip.  Unknown transforms are rendered as ``<type>#<id>[_<bits>]``.
    """
    ts = list(transforms)
    by_type: dict[int, list[Transform]] = {}
    for t in ts:
        by_type.setdefault(t.type, []).append(t)
    prfs = [t.id for t in by_type.get(_P, [])]
    implied = [_IMPLIED_PRF.get(t.id) for t in by_type.get(_I, [])]
    omit_prf = bool(prfs) and prfs == implied
    esns = [t.id for t in by_type.get(_N, [])]
    omit_esn = esns == [EsnId.NO_ESN]
    order = [_E, _I, _P, _D, _N, *sorted(set(by_type) - set(_TYPE_ORDER))]
    out: list[str] = []
    for ty in order:
        if (ty == _P and omit_prf) or (ty == _N and omit_esn):
            continue
        out.extend(_token(t) for t in by_type.get(ty, []))
    return "-".join(out)


def _is_none(ty: int, tid: int) -> bool:
    """Transform IDs meaning "none" for the optional types (0 in each registry)."""
    return ty in (_I, _D, _N) and tid == 0


def _match(
    offered: list[Transform], ours: Sequence[Transform], protocol: int, ignore_dh: bool
) -> list[Transform] | None:
    off: dict[int, list[Transform]] = {}
    for t in offered:
        if ignore_dh and t.type == _D:
            continue
        # A transform with an attribute we do not understand is unacceptable
        # (§3.3.6); the only attribute we know is Key Length, kept apart.
        entry = off.setdefault(t.type, [])
        if not t.attributes:
            entry.append(t)
    acc: dict[int, set[_Key]] = {}
    for t in ours:
        if ignore_dh and t.type == _D:
            continue
        acc.setdefault(t.type, set()).add(_key(t))
    # A type we do not know (or do not use) makes the whole proposal unacceptable.
    known = {_E, _P, _I, _D} if protocol == ProtocolId.IKE else {_E, _I, _D, _N}
    if set(off) - known:
        return None
    # Absent optional types accept only NONE (RFC 7296 §3.3.3).
    for ty in (_I, _D, _N):
        acc.setdefault(ty, {(ty, 0, None)})
    if protocol == ProtocolId.IKE:
        acc.pop(_N, None)
    mandatory = (_E, _P, _D) if protocol == ProtocolId.IKE else (_E,)
    if any(ty not in off for ty in mandatory):
        return None
    chosen: dict[int, Transform | None] = {}
    for ty in sorted(acc):
        if ty in (_E, _I):
            continue  # chosen together below (INTEG depends on the cipher)
        cands = off.get(ty)
        if cands is None:
            if (ty, 0, None) in acc[ty]:
                chosen[ty] = None  # absent means NONE and NONE is acceptable
                continue
            return None
        pick = next((t for t in cands if _key(t) in acc[ty]), None)
        if pick is None:
            return None
        chosen[ty] = pick
    encr_cands = [t for t in off.get(_E, []) if _key(t) in acc.get(_E, set())]
    for encr in encr_cands:
        integ_off = off.get(_I)
        if is_aead(encr.id):
            if integ_off is None:
                integ: Transform | None = None
            else:
                integ = next((t for t in integ_off if t.id == IntegId.NONE), None)
                if integ is None:
                    continue
        else:
            if integ_off is None:
                continue
            integ = next(
                (t for t in integ_off if not _is_none(_I, t.id) and _key(t) in acc[_I]), None
            )
            if integ is None:
                continue
        chosen[_E] = encr
        chosen[_I] = integ
        return [x for ty in _TYPE_ORDER if (x := chosen.get(ty)) is not None]
    return None


def select_proposal(
    offered: Sequence[Proposal],
    acceptable: Sequence[Sequence[Transform]],
    *,
    protocol: int | None = None,
    ignore_dh: bool = False,
) -> Proposal | None:
    """Pick the proposal to answer with (RFC 7296 §2.7, §3.3.6), or None.

    ``offered``: the peer's proposals in its preference order.  ``acceptable``:
    our transform lists (:func:`parse_proposal` output).  Only offered proposals
    of ``protocol`` are considered (default: the protocol of the first offered
    proposal).  ``ignore_dh`` drops Transform Type 4 on both sides, for the
    Child SA of IKE_AUTH (§1.2).  The result carries the initiator's proposal
    number and SPI and exactly one transform of each type the offer contained
    (the offered Transform objects, attributes unmodified); optional types
    absent from the offer stay absent.
    """
    found = select_proposal_index(offered, acceptable, protocol=protocol, ignore_dh=ignore_dh)
    return None if found is None else proposal_at(offered, found)


def proposal_at(offered: Sequence[Proposal], found: tuple[int, tuple[int, ...]]) -> Proposal:
    """The answer that a :func:`select_proposal_index` result ``found`` designates in
    ``offered``: the peer's proposal number, SPI and picked Transform objects."""
    prop = offered[found[0]]
    return Proposal(prop.num, prop.protocol, prop.spi, [prop.transforms[k] for k in found[1]])


def select_proposal_index(
    offered: Sequence[Proposal],
    acceptable: Sequence[Sequence[Transform]],
    *,
    protocol: int | None = None,
    ignore_dh: bool = False,
) -> tuple[int, tuple[int, ...]] | None:
    """:func:`select_proposal` as positions: the index of the accepted proposal in
    ``offered`` and the indices of the picked transforms in its transform list (in
    the order of the answer), or None.  The result depends only on the values of the
    offered transforms, so a caller may memoise it per offer."""
    if not offered:
        return None
    proto = offered[0].protocol if protocol is None else protocol
    for i, prop in enumerate(offered):
        if prop.protocol != proto:
            continue
        for ours in acceptable:
            picked = _match(list(prop.transforms), ours, proto, ignore_dh)
            if picked is not None:
                ids = [id(t) for t in prop.transforms]
                return i, tuple(ids.index(id(t)) for t in picked)
    return None


def verify_chosen_proposal(offered: Sequence[Proposal], chosen: Proposal) -> Proposal:
    """Initiator check of the responder's choice (RFC 7296 §3.3.6).

    The chosen proposal must name one of ours by number and protocol, contain
    exactly one transform per type, and each transform must be one we offered
    in that proposal.  Returns our matching proposal; raises NoProposalChosen.
    """
    ours = next((p for p in offered if p.num == chosen.num and p.protocol == chosen.protocol), None)
    if ours is None:
        raise NoProposalChosen(f"responder chose proposal #{chosen.num} which was not offered")
    seen: set[int] = set()
    for t in chosen.transforms:
        if t.type in seen:
            raise NoProposalChosen(f"responder chose two transforms of type {t.type}")
        seen.add(t.type)
        if not any(_key(t) == _key(o) for o in ours.transforms) and not _is_none(t.type, t.id):
            raise NoProposalChosen(f"responder chose transform {_token(t)} which was not offered")
    offered_types = {t.type for t in ours.transforms}
    for ty in offered_types - seen:
        if all(_is_none(ty, t.id) for t in ours.transforms if t.type == ty):
            continue  # NONE-only types may be omitted
        if ty == _I and any(is_aead(t.id) for t in chosen.transforms if t.type == _E):
            continue
        raise NoProposalChosen(f"responder omitted transform type {ty}")
    return ours


def _single(proposal: Proposal, ty: int) -> Transform | None:
    found = [t for t in proposal.transforms if t.type == ty]
    if len(found) > 1:
        raise ProtocolError(f"proposal #{proposal.num} has {len(found)} transforms of type {ty}")
    return found[0] if found else None


def suite_from_proposal(proposal: Proposal) -> IkeSuite | ChildSuite:
    """The negotiated suite of a *selected* proposal (one transform per type).

    IKE proposals give an :class:`IkeSuite`, ESP/AH ones a :class:`ChildSuite`
    (missing DH = no PFS, missing ESN = no ESN).  Raises ProtocolError
    (INVALID_SYNTAX) for duplicate types or missing mandatory ones.
    """
    encr = _single(proposal, _E)
    integ = _single(proposal, _I)
    dh = _single(proposal, _D)
    integ_id = None if integ is None or integ.id == IntegId.NONE else integ.id
    if proposal.protocol == ProtocolId.IKE:
        prf = _single(proposal, _P)
        if encr is None or prf is None or dh is None:
            raise ProtocolError(f"IKE proposal #{proposal.num} lacks ENCR, PRF or DH")
        if integ_id is None and not is_aead(encr.id):
            raise ProtocolError(f"IKE proposal #{proposal.num} lacks INTEG")
        return IkeSuite(encr.id, encr.key_length, prf.id, integ_id, dh.id)
    if encr is None:
        raise ProtocolError(f"proposal #{proposal.num} lacks ENCR")
    esn = _single(proposal, _N)
    return ChildSuite(
        encr.id,
        encr.key_length,
        integ_id,
        0 if dh is None else dh.id,
        esn is not None and esn.id == EsnId.ESN,
    )
