"""One module per IKEv2 exchange (RFC 7296 §1.2-§1.5).

Each module holds plain functions over an :class:`~pyipsec.ikev2.sa.IkeSa`:
``start_*`` builds and queues a request, ``handle_*_request`` returns the
response payloads, ``handle_*_response`` processes the answer.
"""
