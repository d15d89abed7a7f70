"""Distinguished names written as strings, the way strongSwan writes them (RFC 4514
syntax, but in DER order: ``C=CH, O=Example, CN=moon`` is the RDN sequence C, O, CN --
what ``pki --dn`` puts into a certificate and what strongSwan sends as an
ID_DER_ASN1_DN identity, RFC 7296 §3.5).  One parser for identities, certificate
subjects made by :mod:`pyipsec.pki` and identity patterns (:mod:`pyipsec.auth.certs`).
"""

from __future__ import annotations

import string

from cryptography import x509
from cryptography.x509.name import _ASN1Type

ATTRIBUTES: dict[str, str] = {
    "CN": "2.5.4.3",
    "SN": "2.5.4.4",
    "SERIALNUMBER": "2.5.4.5",
    "C": "2.5.4.6",
    "L": "2.5.4.7",
    "ST": "2.5.4.8",
    "S": "2.5.4.8",
    "STREET": "2.5.4.9",
    "O": "2.5.4.10",
    "OU": "2.5.4.11",
    "T": "2.5.4.12",
    "TITLE": "2.5.4.12",
    "POSTALCODE": "2.5.4.17",
    "N": "2.5.4.41",
    "NAME": "2.5.4.41",
    "G": "2.5.4.42",
    "GN": "2.5.4.42",
    "I": "2.5.4.43",
    "INITIALS": "2.5.4.43",
    "DNQ": "2.5.4.46",
    "DNQUALIFIER": "2.5.4.46",
    "PSEUDONYM": "2.5.4.65",
    "DC": "0.9.2342.19200300.100.1.25",
    "UID": "0.9.2342.19200300.100.1.1",
    "E": "1.2.840.113549.1.9.1",
    "EMAIL": "1.2.840.113549.1.9.1",
    "EMAILADDRESS": "1.2.840.113549.1.9.1",
}


def _split_unescaped(text: str, sep: str) -> list[str]:
    out, cur, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur.append(text[i : i + 2])
            i += 2
            continue
        if ch == sep:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    out.append("".join(cur))
    return out


def _unescape(value: str) -> str:
    out, i = [], 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value):
            nxt = value[i + 1 : i + 3]
            if len(nxt) == 2 and all(c in "0123456789abcdefABCDEF" for c in nxt):
                out.append(chr(int(nxt, 16)))
                i += 3
                continue
            out.append(value[i + 1])
            i += 2
            continue
        out.append(value[i])
        i += 1
    return "".join(out)


def split_dn(text: str) -> list[list[tuple[str, str]]]:
    """The RDNs of ``text`` in written (= DER) order, each a list of (dotted OID, value)
    with escapes resolved (``\\,`` or ``\\2C``); blanks around separators are ignored.
    Attribute names as strongSwan/RFC 4514 (CN, C, O, OU, L, ST, DC, E, UID, ...) or
    dotted OIDs.  Raises ``ValueError`` for text that is not a DN."""
    rdns: list[list[tuple[str, str]]] = []
    for part in _split_unescaped(text, ","):
        attrs: list[tuple[str, str]] = []
        for atv in _split_unescaped(part, "+"):
            name, sep, value = atv.partition("=")
            name = name.strip()
            if not sep or not name:
                raise ValueError(f"not a DN attribute: {atv.strip()!r}")
            oid = ATTRIBUTES.get(name.upper())
            if oid is None:
                if not all(p.isdigit() for p in name.split(".")) or "." not in name:
                    raise ValueError(f"unknown DN attribute {name!r}")
                oid = name
            attrs.append((oid, _unescape(value.strip())))
        rdns.append(attrs)
    return rdns


#: RFC 5280 Appendix A PrintableString characters
_PRINTABLE = frozenset(string.ascii_letters + string.digits + " '()+,-./:=?")


def _attribute(oid: str, value: str) -> x509.NameAttribute[str]:
    """One attribute, a PrintableString when the value allows it and a UTF8String
    otherwise (an IA5String for emailAddress): the string types strongSwan chooses,
    so that the DER of an identity equals that of the subject ``pki --dn`` wrote."""
    if oid == ATTRIBUTES["E"]:
        kind = _ASN1Type.IA5String  # PKCS #9 emailAddress
    elif set(value) <= _PRINTABLE:
        kind = _ASN1Type.PrintableString
    else:
        kind = _ASN1Type.UTF8String
    return x509.NameAttribute(x509.ObjectIdentifier(oid), value, _type=kind)


def name_from_string(text: str) -> x509.Name:
    """The :class:`x509.Name` of a DN string, RDNs in the order written (strongSwan's
    convention, see the module docstring).  Raises ``ValueError``."""
    rdns = [
        x509.RelativeDistinguishedName([_attribute(oid, value) for oid, value in rdn])
        for rdn in split_dn(text)
    ]
    if not rdns:
        raise ValueError("empty DN")
    return x509.Name(rdns)


def name_to_string(name: x509.Name) -> str:
    """``name`` written the same way (``C=CH, O=Example, CN=moon``: RDNs in DER order,
    as strongSwan shows them), so what is printed can be configured back."""
    return ", ".join(rdn.rfc4514_string() for rdn in name.rdns)


__all__ = ["ATTRIBUTES", "name_from_string", "name_to_string", "split_dn"]
