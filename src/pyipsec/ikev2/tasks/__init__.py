"""The exchanges an IKE SA initiates, one task class per sub-exchange (RFC 7296 §1.2-§1.5),
and the responder functions that answer the peer's requests (see :mod:`.responders`)."""
