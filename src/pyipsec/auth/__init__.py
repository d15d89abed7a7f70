"""Public-key authentication for IKEv2 (RFC 7296 §2.15, §3.6-3.8; RFC 4754, 7427, 7670, 8420).

Sans-I/O: functions take bytes, ``cryptography`` objects and ``now``; they never read
files or the clock.  :mod:`.signatures` (AUTH payloads), :mod:`.certs` (CERT/CERTREQ
payloads, identity binding, ID patterns), :mod:`.trust` (path validation, CRLs),
:mod:`.keys` (key/certificate loading from bytes).  The one error type is
:class:`~pyipsec.auth.errors.AuthError`.
"""

from .errors import AuthError, AuthReason, KeyLoadError

__all__ = ["AuthError", "AuthReason", "KeyLoadError"]
