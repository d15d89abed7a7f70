"""Helpers shared by the exchanges: proposals, suites, identities, NAT-D, keys."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence

from ...auth.certs import build_certreq
from ...config.model import ConnectionConfig, is_any_identity
from ...crypto.keys import ChildSuite, IkeSuite
from ...identity_memo import IdentityMemo
from ...nat import NatDetection, NatResult
from ..constants import CertEncoding, IdType, NotifyType, PayloadType, TransformType
from ..errors import NoProposalChosen
from ..payloads import (
    CertReqPayload,
    IdPayload,
    NotifyPayload,
    Proposal,
    SaPayload,
    Transform,
)
from ..proposals import (
    format_proposal,
    make_proposals,
    parse_proposal,
    proposal_at,
    select_proposal_index,
    strip_dh,
    suite_from_proposal,
    verify_chosen_proposal,
)

log = logging.getLogger("pyipsec.ike")



# --------------------------------------------------------------------------- proposals


def our_transforms(
    texts: Sequence[str], protocol: int, *, strip_ke: bool = False
) -> list[list[Transform]]:
    """Our acceptable transform lists from configured proposal strings (§3.3).

    ``strip_ke`` removes KE transforms (the Child SA of IKE_AUTH has none,
    §1.2); duplicates that result are dropped.  Parsed once per configuration (the
    handshake path only copies the lists; the Transform objects are never changed).
    """
    return [list(ts) for ts in _our_transforms(tuple(texts), protocol, strip_ke)]


@functools.lru_cache(maxsize=256)
def _our_transforms(
    texts: tuple[str, ...], protocol: int, strip_ke: bool
) -> tuple[tuple[Transform, ...], ...]:
    out: list[tuple[Transform, ...]] = []
    seen: set[tuple[tuple[int, int, int | None], ...]] = set()
    for text in texts:
        transforms = list(parse_proposal(text, protocol))
        if strip_ke:
            transforms = strip_dh(transforms)
        key = tuple((t.type, t.id, t.key_length) for t in transforms)
        if key in seen:
            continue
        seen.add(key)
        out.append(tuple(transforms))
    return tuple(out)


def build_proposals(
    texts: Sequence[str], protocol: int, spi: bytes, *, strip_ke: bool = False
) -> list[Proposal]:
    """Numbered proposals for our SA payload."""
    return make_proposals(our_transforms(texts, protocol, strip_ke=strip_ke), protocol, spi)


#: choose_configured's memo: (proposal strings, protocol, strip_ke, ignore_dh, the
#: offer's protocols and Transform identities) -> ((index of the accepted proposal,
#: indices of its picked transforms) or None when nothing is acceptable, the offer's
#: Transform objects).  Keeping the (immutable) objects keeps their identities from
#: being reused while the entry lives; parsed transform lists are shared between
#: messages (``payloads._PARSED_TRANSFORMS``), so a gateway's handshakes hit.  Bounded:
#: the offers come from the network.
_Choice = tuple[int, tuple[int, ...]] | None
_CHOICES: dict[tuple[object, ...], tuple[_Choice, tuple[tuple[Transform, ...], ...]]] = {}
_CHOICES_MAX = 1024


def _offer_key(theirs: Sequence[Proposal]) -> tuple[object, ...]:
    """The offer as proposal selection sees it: protocols and (immutable) transforms."""
    return tuple([(p.protocol, tuple(map(id, p.transforms))) for p in theirs])


def choose_configured(
    texts: Sequence[str],
    protocol: int,
    theirs: Sequence[Proposal],
    *,
    strip_ke: bool = False,
    ignore_dh: bool = False,
) -> Proposal:
    """Responder: the peer's proposal we accept, one transform of each type (§2.7):
    :func:`~pyipsec.ikev2.proposals.select_proposal` of ``our_transforms(texts,
    protocol, strip_ke=...)``, memoised on the values of the offer (the selection is a
    function of them alone, and the peers of a gateway offer the same few proposal
    sets again and again).  The answer carries the peer's own proposal number, SPI
    and Transform objects.

    Raises :class:`NoProposalChosen`.
    """
    key = (tuple(texts), protocol, strip_ke, ignore_dh, _offer_key(theirs))
    try:
        found = _CHOICES[key][0]
    except KeyError:
        ours = our_transforms(texts, protocol, strip_ke=strip_ke)
        found = select_proposal_index(theirs, ours, protocol=protocol, ignore_dh=ignore_dh)
        if len(_CHOICES) >= _CHOICES_MAX:
            _CHOICES.clear()
        _CHOICES[key] = (found, tuple(tuple(p.transforms) for p in theirs))
    if found is None:
        raise NoProposalChosen("no acceptable proposal")
    return proposal_at(theirs, found)


def check_chosen(offered: Sequence[Proposal], sa: SaPayload | None) -> Proposal:
    """Initiator: the responder's single chosen proposal must be one of ours (§3.3.6)."""
    if sa is None or len(sa.proposals) != 1:
        raise NoProposalChosen("response must carry exactly one proposal")
    chosen = sa.proposals[0]
    verify_chosen_proposal(offered, chosen)
    return chosen


#: suite_from_proposal per protocol and Transform objects (by identity): every IKE SA of
#: a gateway negotiates one of a few suites from the same parsed transform lists
#: (:data:`~pyipsec.ikev2.payloads._PARSED_TRANSFORMS`); immutable, shared
_SUITES: IdentityMemo[IkeSuite | ChildSuite] = IdentityMemo(1024)


def _suite(p: Proposal) -> IkeSuite | ChildSuite:
    key = (id(p.protocol), *map(id, p.transforms))
    s = _SUITES.get(key)
    if s is None:
        # raises for a malformed choice (never cached)
        s = _SUITES.put(key, (p.protocol, *p.transforms), suite_from_proposal(p))
    return s


def ike_suite(p: Proposal) -> IkeSuite:
    s = _suite(p)
    if not isinstance(s, IkeSuite):
        raise NoProposalChosen("not an IKE proposal")
    return s


def child_suite(p: Proposal) -> ChildSuite:
    s = _suite(p)
    if not isinstance(s, ChildSuite):
        raise NoProposalChosen("not an ESP proposal")
    return s


def proposal_groups(props: Sequence[Proposal]) -> list[int]:
    """KE groups in preference order (for the initiator's KE payload and INVALID_KE)."""
    out: list[int] = []
    for p in props:
        for t in p.transforms:
            if t.type == TransformType.DH and t.id != 0 and t.id not in out:
                out.append(t.id)
    return out


def certreq_payloads(conn: ConnectionConfig) -> list[tuple[int, CertReqPayload]]:
    """CERTREQ naming the trust anchors we verify the peer with (§3.7): sent by the
    initiator in IKE_AUTH and by the responder in IKE_SA_INIT (§1.2)."""
    trust = conn.remote_trust
    if conn.remote_auth != "pubkey" or not conn.send_certreq or trust is None:
        return []
    out: list[tuple[int, CertReqPayload]] = []
    if trust.anchors:
        data = build_certreq(trust.anchors)
        out.append((PayloadType.CERTREQ, CertReqPayload(CertEncoding.X509_SIGNATURE, data)))
    if trust.raw_keys:  # RFC 7670 §3: ask for a raw public key, no authority data
        out.append((PayloadType.CERTREQ, CertReqPayload(CertEncoding.RAW_PUBLIC_KEY, b"")))
    return out


#: suite_string per Transform objects (by identity, like _SUITES)
_SUITE_NAMES: IdentityMemo[str] = IdentityMemo(1024)


def suite_string(p: Proposal) -> str:
    """The strongSwan-style name of a chosen proposal (status, logs); cached per list
    of Transform objects and, below that, per transform values."""
    return _SUITE_NAMES.value(tuple(p.transforms), _name_of_transforms)


def _name_of_transforms(*transforms: Transform) -> str:
    return _suite_string(tuple((t.type, t.id, t.key_length) for t in transforms))


@functools.lru_cache(maxsize=1024)
def _suite_string(key: tuple[tuple[int, int, int | None], ...]) -> str:
    return format_proposal([Transform(t, i, k) for t, i, k in key])




# --------------------------------------------------------------------------- identities


def id_from_config(text: str, default_address: str) -> IdPayload:
    """Our identity (§3.5): empty means the outer IP address (like strongSwan)."""
    return parse_identity(text or default_address)


@functools.lru_cache(maxsize=4096)
def parse_identity(text: str) -> IdPayload:
    """A configured identity: :meth:`IdPayload.from_string` of the stripped text
    (swanctl syntax: ``keyid:TEXT`` is the octets of TEXT, ``keyid:#hex`` is hex).
    Configured identities repeat: parsed once (the payload objects are never changed)."""
    return IdPayload.from_string(text.strip())


def identity_str(p: IdPayload) -> str:
    """Printable identity."""
    return p.to_string()


def id_body(p: IdPayload) -> bytes:
    """RestOfInitIDPayload / RestOfRespIDPayload (§2.15): type | 3 reserved | data."""
    return bytes([p.id_type & 0xFF, 0, 0, 0]) + p.data


def identity_key(id_type: int, data: bytes) -> tuple[int, bytes]:
    """What two identities are compared by: type and data, DNS names (FQDN, RFC 822
    address) without case."""
    return (id_type, data.lower() if id_type in (IdType.ID_FQDN, IdType.ID_RFC822_ADDR) else data)


def identity_matches(configured: str, got: IdPayload) -> bool:
    """True when the peer identity ``got`` is acceptable for ``configured``."""
    if is_any_identity(configured):
        return True
    try:
        want = parse_identity(configured)
    except ValueError:
        return False
    return identity_key(want.id_type, want.data) == identity_key(got.id_type, got.data)


def conn_matches_id(conn: ConnectionConfig, got: IdPayload) -> bool:
    return identity_matches(conn.remote_id, got)


# --------------------------------------------------------------------------- NAT-D




def nat_notifies(
    spi_i: bytes,
    spi_r: bytes,
    local: tuple[str, int],
    remote: tuple[str, int],
    *,
    fake_source: bool,
    rng: Callable[[int], bytes],
) -> list[NotifyPayload]:
    """N(NAT_DETECTION_SOURCE_IP), N(NAT_DETECTION_DESTINATION_IP) (§2.23).

    ``fake_source`` sends a random source hash so the peer believes we are
    behind a NAT and both sides use UDP encapsulation (swanctl ``encap``).
    """
    src, dst = NatDetection.outgoing_hashes(
        spi_i, spi_r, sent_from=local, sent_to=remote, force_encap=fake_source, rng=rng
    )
    return [
        NotifyPayload(0, b"", NotifyType.NAT_DETECTION_SOURCE_IP, src),
        NotifyPayload(0, b"", NotifyType.NAT_DETECTION_DESTINATION_IP, dst),
    ]


def check_nat(
    notifies: Sequence[NotifyPayload],
    spi_i: bytes,
    spi_r: bytes,
    local: tuple[str, int],
    remote: tuple[str, int],
) -> NatResult:
    """Evaluate the peer's NAT-D notifies of an IKE_SA_INIT message (§2.23).

    ``local_behind_nat``: our address was changed on the way; ``remote_behind_nat``:
    the peer's source hash does not match (peer behind a NAT, or faking it).
    """
    srcs = [n.data for n in notifies if n.type == NotifyType.NAT_DETECTION_SOURCE_IP]
    dsts = [n.data for n in notifies if n.type == NotifyType.NAT_DETECTION_DESTINATION_IP]
    return NatDetection.detect(
        spi_i,
        spi_r,
        source_hashes=srcs,
        destination_hash=dsts[0] if dsts else None,
        received_from=remote,
        received_on=local,
    )
