"""EAP (RFC 3748) as IKEv2 carries it (RFC 7296 §2.16): sans-I/O method state machines.

The IKE core drives one :class:`~pyipsec.eap.base.EapServerSession` (we authenticate the
peer) or :class:`~pyipsec.eap.base.EapPeerSession` (we are authenticated) per IKE SA; the
sessions take and give whole EAP packets and report the outcome and the MSK (RFC 5247).
"""
