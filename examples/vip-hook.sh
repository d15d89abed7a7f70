#!/bin/sh
# An example [daemon] vip_hook: hand the DNS servers a gateway assigned to resolvconf
# (Debian's resolvconf or systemd's resolvconf shim) while the tunnel is up.
# The daemon runs it with PYIPSEC_VERB=up when virtual IPs were assigned and
# PYIPSEC_VERB=down when the IKE SA holding them is gone (README "vip_hook").
set -eu
iface="${PYIPSEC_TUN:-pyipsec0}.pyipsec${PYIPSEC_IKE_ID:-0}"
case "${PYIPSEC_VERB:-}" in
up)
    [ -n "${PYIPSEC_DNS:-}" ] || exit 0
    for server in $PYIPSEC_DNS; do echo "nameserver $server"; done | resolvconf -a "$iface"
    ;;
down)
    resolvconf -d "$iface" -f
    ;;
esac
