"""IKE SA and Child SA states, and the allowed transitions written down as data.

RFC 7296 does not define a state machine; this is the one the core uses
(cf. RFC 4718 §2 for the life cycle of an IKE SA).
"""

from __future__ import annotations

import enum


class IkeSaState(enum.Enum):
    """Life cycle of one IKE SA (either role)."""

    __hash__ = object.__hash__  # members are singletons: hash in C, not by name

    INIT_SENT = "init-sent"  # initiator: IKE_SA_INIT request out
    INIT_DONE = "init-done"  # responder: IKE_SA_INIT answered, waiting for IKE_AUTH
    EAP = "eap"  # responder: IKE_AUTH rounds of EAP with the initiator (§2.16)
    AUTH_SENT = "auth-sent"  # initiator: IKE_AUTH request out
    ESTABLISHED = "established"
    REKEYING = "rekeying"  # we initiated an IKE SA rekey (§1.3.2)
    REKEYED = "rekeyed"  # replaced by a new IKE SA, waiting for the delete
    DELETING = "deleting"  # our DELETE for this IKE SA is out
    DELETED = "deleted"  # final
    FAILED = "failed"  # final


IKE_TRANSITIONS: dict[IkeSaState, frozenset[IkeSaState]] = {
    IkeSaState.INIT_SENT: frozenset(
        {IkeSaState.INIT_SENT, IkeSaState.AUTH_SENT, IkeSaState.FAILED, IkeSaState.DELETED}
    ),
    IkeSaState.INIT_DONE: frozenset(
        {IkeSaState.EAP, IkeSaState.ESTABLISHED, IkeSaState.FAILED, IkeSaState.DELETED}
    ),
    IkeSaState.EAP: frozenset({IkeSaState.ESTABLISHED, IkeSaState.FAILED, IkeSaState.DELETED}),
    IkeSaState.AUTH_SENT: frozenset(
        {IkeSaState.ESTABLISHED, IkeSaState.FAILED, IkeSaState.DELETING, IkeSaState.DELETED}
    ),
    IkeSaState.ESTABLISHED: frozenset(
        {
            IkeSaState.REKEYING,
            IkeSaState.REKEYED,
            IkeSaState.DELETING,
            IkeSaState.DELETED,
            IkeSaState.FAILED,
        }
    ),
    IkeSaState.REKEYING: frozenset(
        {
            IkeSaState.ESTABLISHED,
            IkeSaState.REKEYED,
            IkeSaState.DELETING,
            IkeSaState.DELETED,
            IkeSaState.FAILED,
        }
    ),
    IkeSaState.REKEYED: frozenset({IkeSaState.DELETING, IkeSaState.DELETED, IkeSaState.FAILED}),
    IkeSaState.DELETING: frozenset({IkeSaState.DELETED, IkeSaState.FAILED}),
    IkeSaState.DELETED: frozenset(),
    IkeSaState.FAILED: frozenset({IkeSaState.DELETED}),
}

#: States in which the IKE SA is authenticated and may carry CREATE_CHILD_SA/INFORMATIONAL.
IKE_AUTHENTICATED = frozenset(
    {IkeSaState.ESTABLISHED, IkeSaState.REKEYING, IkeSaState.REKEYED, IkeSaState.DELETING}
)
#: States in which the IKE SA is up and usable (``IkeSa.established``).
IKE_ESTABLISHED = frozenset({IkeSaState.ESTABLISHED, IkeSaState.REKEYING})
IKE_FINAL = frozenset({IkeSaState.DELETED, IkeSaState.FAILED})
IKE_HALF_OPEN = frozenset(
    {IkeSaState.INIT_SENT, IkeSaState.INIT_DONE, IkeSaState.EAP, IkeSaState.AUTH_SENT}
)


class ChildSaState(enum.Enum):
    __hash__ = object.__hash__  # members are singletons: hash in C, not by name

    INSTALLED = "installed"
    REKEYING = "rekeying"  # we sent a rekey request for it
    REKEYED = "rekeyed"  # a new SA replaced it; delete pending
    DELETING = "deleting"  # our DELETE is out
    DELETED = "deleted"


CHILD_TRANSITIONS: dict[ChildSaState, frozenset[ChildSaState]] = {
    ChildSaState.INSTALLED: frozenset(
        {ChildSaState.REKEYING, ChildSaState.REKEYED, ChildSaState.DELETING, ChildSaState.DELETED}
    ),
    ChildSaState.REKEYING: frozenset(
        {ChildSaState.INSTALLED, ChildSaState.REKEYED, ChildSaState.DELETING, ChildSaState.DELETED}
    ),
    ChildSaState.REKEYED: frozenset({ChildSaState.DELETING, ChildSaState.DELETED}),
    ChildSaState.DELETING: frozenset({ChildSaState.DELETED}),
    ChildSaState.DELETED: frozenset(),
}


class IllegalTransition(Exception):
    """A bug in the core: a transition not listed in the tables above."""


def check_ike(old: IkeSaState, new: IkeSaState) -> None:
    if old is not new and new not in IKE_TRANSITIONS[old]:
        raise IllegalTransition(f"IKE SA {old.value} -> {new.value}")


def check_child(old: ChildSaState, new: ChildSaState) -> None:
    if old is not new and new not in CHILD_TRANSITIONS[old]:
        raise IllegalTransition(f"Child SA {old.value} -> {new.value}")
