"""EAP (RFC 3748) as IKEv2 carries it (RFC 7296 §2.16): sans-I/O method state machines.

The IKE core drives one :class:`~pyipsec.eap.base.EapServerSession` (we authenticate the
peer) or :class:`~pyipsec.eap.base.EapPeerSession` (we are authenticated) per IKE SA; the
sessions take and give whole EAP packets and report the outcome and the MSK (RFC 5247).
Build them with :mod:`pyipsec.eap.factory` from :mod:`pyipsec.eap.settings`:

- :func:`~pyipsec.eap.factory.server_session` -- EAP-Identity, then EAP-TLS,
  EAP-MSCHAPv2 or EAP-MD5 (:mod:`.tls`, :mod:`.mschapv2`, :mod:`.md5`), the peer
  choosing by Nak when the settings allow any; for EAP-RADIUS the relay
  (:mod:`.relay`, RFC 3579) whose PENDING steps the daemon forwards;
- :func:`~pyipsec.eap.factory.peer_session` -- the client side of the same methods.
"""
