"""pyipsec: IKEv2/IPsec (RFC 7296, RFC 4303) -- a sans-I/O core, a daemon, a CLI."""

from .build_info import warn_if_stale

warn_if_stale()  # a compiled core older than its sources would run the old code
