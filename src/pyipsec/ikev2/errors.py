"""Re-export of :mod:`pyipsec.errors` (the ProtocolError family, RFC 7296 §2.21).

The errors live on the ground floor so that crypto/, esp/, nat and recovery do
not import from the protocol core; this module keeps the historical import path
``pyipsec.ikev2.errors`` working.
"""

from __future__ import annotations

from ..errors import AuthenticationFailed as AuthenticationFailed
from ..errors import IntegrityError as IntegrityError
from ..errors import InvalidKePayload as InvalidKePayload
from ..errors import InvalidMajorVersion as InvalidMajorVersion
from ..errors import KeyExchangeError as KeyExchangeError
from ..errors import NoProposalChosen as NoProposalChosen
from ..errors import ParseError as ParseError
from ..errors import ProposalStringError as ProposalStringError
from ..errors import ProtocolError as ProtocolError
from ..errors import TsUnacceptable as TsUnacceptable
from ..errors import UnsupportedCriticalPayload as UnsupportedCriticalPayload

__all__ = [
    "AuthenticationFailed",
    "IntegrityError",
    "InvalidKePayload",
    "InvalidMajorVersion",
    "KeyExchangeError",
    "NoProposalChosen",
    "ParseError",
    "ProposalStringError",
    "ProtocolError",
    "TsUnacceptable",
    "UnsupportedCriticalPayload",
]
