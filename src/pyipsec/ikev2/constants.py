"""Re-export of :mod:`pyipsec.constants` (the IANA IKEv2 registries).

The registries live on the ground floor so that crypto/, esp/, nat and recovery
do not import from the protocol core; this module keeps the historical import
path ``pyipsec.ikev2.constants`` working.
"""

from __future__ import annotations

from ..constants import GENERIC_PAYLOAD_HEADER_LEN as GENERIC_PAYLOAD_HEADER_LEN
from ..constants import IKE_HEADER_LEN as IKE_HEADER_LEN
from ..constants import IKE_MAJOR_VERSION as IKE_MAJOR_VERSION
from ..constants import IKE_MINOR_VERSION as IKE_MINOR_VERSION
from ..constants import IKE_PORT as IKE_PORT
from ..constants import NAT_KEEPALIVE as NAT_KEEPALIVE
from ..constants import NAT_T_PORT as NAT_T_PORT
from ..constants import NON_ESP_MARKER as NON_ESP_MARKER
from ..constants import AuthMethod as AuthMethod
from ..constants import CertEncoding as CertEncoding
from ..constants import CfgAttr as CfgAttr
from ..constants import CfgType as CfgType
from ..constants import DhId as DhId
from ..constants import EapCode as EapCode
from ..constants import EncrId as EncrId
from ..constants import EsnId as EsnId
from ..constants import ExchangeType as ExchangeType
from ..constants import HeaderFlag as HeaderFlag
from ..constants import IdType as IdType
from ..constants import IntegId as IntegId
from ..constants import IpProto as IpProto
from ..constants import KeId as KeId
from ..constants import NotifyType as NotifyType
from ..constants import PayloadType as PayloadType
from ..constants import PrfId as PrfId
from ..constants import ProtocolId as ProtocolId
from ..constants import TransformAttr as TransformAttr
from ..constants import TransformType as TransformType
from ..constants import TsType as TsType
from ..constants import enum_or_int as enum_or_int
from ..constants import name_of as name_of
from ..constants import notify_is_error as notify_is_error

__all__ = [
    "GENERIC_PAYLOAD_HEADER_LEN",
    "IKE_HEADER_LEN",
    "IKE_MAJOR_VERSION",
    "IKE_MINOR_VERSION",
    "IKE_PORT",
    "NAT_KEEPALIVE",
    "NAT_T_PORT",
    "NON_ESP_MARKER",
    "AuthMethod",
    "CertEncoding",
    "CfgAttr",
    "CfgType",
    "DhId",
    "EapCode",
    "EncrId",
    "EsnId",
    "ExchangeType",
    "HeaderFlag",
    "IdType",
    "IntegId",
    "IpProto",
    "KeId",
    "NotifyType",
    "PayloadType",
    "PrfId",
    "ProtocolId",
    "TransformAttr",
    "TransformType",
    "TsType",
    "enum_or_int",
    "name_of",
    "notify_is_error",
]
