#!/usr/bin/env bash
# Remove lab leftovers: namespaces whose names carry a test prefix (vt: end-to-end,
# vsp/vsx/vsn/vsg: port, AF_XDP, plumbing and pktgen unit tests, vsb: bench). Deleting a
# sandbox namespace also removes its veth pair. Never touches anything else.
set -u
removed=0
for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
  case "$ns" in
    vt[0-9]*|vsp[0-9]*|vsx[0-9]*|vsn[0-9]*|vsg[0-9]*|vsb[0-9]*)
      ip netns del "$ns" 2>/dev/null && removed=$((removed + 1))
      rm -rf "/etc/netns/$ns" ;;
  esac
done
echo "clean-lab: removed $removed leftover namespaces"
