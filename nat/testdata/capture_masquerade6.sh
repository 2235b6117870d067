#!/bin/sh
# Capture how the Linux kernel's nftables IPv6 masquerade (and DNAT for a published
# port) translates a few packets, so the nat crate's NAT66 unit tests can compare
# against real bytes. The IPv6 twin of capture_masquerade.sh. Needs root, nft, tcpdump,
# python3, ethtool (transmit checksum offload is turned off so the captured checksums
# are final, not CHECKSUM_PARTIAL pseudo-header sums). Creates namespaces vsr<pid>c
# (container), vsr<pid>r (router doing NAT) and vsr<pid>o (outside) and removes them
# on exit; every address is a ULA (inside) or documentation (2001:db8::/32, the
# uplink) address on links between them. Prints tcpdump hex of both sides.
set -eu
P=vsr$$
C=${P}c R=${P}r O=${P}o
IN6=fd00:16:5::2 GW6=fd00:16:5::1 EXT6=2001:db8:113::1 OUT6=2001:db8:113::7
cleanup() { for n in $C $R $O; do ip netns del $n 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM
for n in $C $R $O; do
  ip netns add $n; ip -n $n link set lo up
  # No router solicitations or DAD probes: only the test's own packets.
  ip netns exec $n sysctl -qw net.ipv6.conf.default.accept_ra=0 net.ipv6.conf.default.dad_transmits=0
done
ip link add ${P}a netns $C type veth peer name ${P}b netns $R
ip link add ${P}d netns $R type veth peer name ${P}e netns $O
ip -n $C -6 addr add $IN6/64 dev ${P}a nodad; ip -n $C link set ${P}a up
ip -n $R -6 addr add $GW6/64 dev ${P}b nodad; ip -n $R link set ${P}b up
ip -n $R -6 addr add $EXT6/64 dev ${P}d nodad; ip -n $R link set ${P}d up
ip -n $O -6 addr add $OUT6/64 dev ${P}e nodad; ip -n $O link set ${P}e up
ip -n $C -6 route add default via $GW6
for d in "$C ${P}a" "$R ${P}b" "$R ${P}d" "$O ${P}e"; do
  set -- $d; ip netns exec $1 ethtool -K $2 tx off rx off >/dev/null
done
ip netns exec $R sysctl -qw net.ipv6.conf.all.forwarding=1
# Masquerade out of the uplink; [EXT6]:8080/udp and :8081/tcp published to the
# container's ports 80 and 81 (nothing listens: it answers port unreachable and RST).
ip netns exec $R nft -f - <<NFT
table ip6 vsr {
  chain pre { type nat hook prerouting priority -100;
    iifname "${P}d" ip6 daddr $EXT6 udp dport 8080 dnat to [$IN6]:80;
    iifname "${P}d" ip6 daddr $EXT6 tcp dport 8081 dnat to [$IN6]:81; }
  chain post { type nat hook postrouting priority 100; oifname "${P}d" masquerade; }
}
NFT
# Warm the neighbour caches so the captured packets are the first of their flows but
# not delayed; the links may take a few seconds to come up (bounded).
warm() {
  i=0
  until ip netns exec $1 ping -6 -c1 -W1 $2 >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -lt 10 ] || { echo "no answer from $2 in $1" >&2; exit 1; }
  done
}
warm $C $GW6; warm $R $OUT6; warm $R $IN6
# Only the test's traffic: no neighbour discovery or MLD (ICMPv6 types 130 and up).
F='ip6 and (tcp or udp or (icmp6 and ip6[40] < 130))'
ip netns exec $R tcpdump -U -n -i ${P}b -w /tmp/$P-in.pcap "$F" 2>/dev/null &
T1=$!
ip netns exec $R tcpdump -U -n -i ${P}d -w /tmp/$P-out.pcap "$F" 2>/dev/null &
T2=$!
sleep 1
# One client socket: `client NS udp|tcp SRC SPORT DST DPORT`. UDP sends one datagram;
# TCP sends a SYN, and the answer (a RST: nothing listens) ends it.
client() {
  ip netns exec $1 python3 -c '
import socket, sys
proto, src, sport, dst, dport = sys.argv[1:]
udp = proto == "udp"
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
s.bind((src, int(sport)))
try:
    if udp:
        s.sendto(b"vswitch nat66 test", (dst, int(dport)))
    else:
        s.connect((dst, int(dport)))
except OSError:
    pass
' $2 $3 $4 $5 $6
}
# UDP [IN6]:40000 -> [OUT6]:7777 (closed port: the outside answers with an ICMPv6
# port unreachable, which the kernel translates back, quoted header included).
client $C udp $IN6 40000 $OUT6 7777
# TCP SYN [IN6]:40001 -> [OUT6]:7778 (closed: answered with a RST)
client $C tcp $IN6 40001 $OUT6 7778
# ICMPv6 echo, identifier chosen by ping
ip netns exec $C ping -6 -c1 -W1 -p 6e6174 -s 16 $OUT6 >/dev/null
# DNAT: the outside sends to the published ports; the container answers port
# unreachable (UDP) and RST (TCP), translated back out.
client $O udp $OUT6 40002 $EXT6 8080
client $O tcp $OUT6 40003 $EXT6 8081
sleep 1
kill $T1 $T2; wait $T1 $T2 2>/dev/null || true
echo "== inside (router's container-facing port)"; tcpdump -n -r /tmp/$P-in.pcap -x 2>/dev/null
echo "== outside (router's uplink)"; tcpdump -n -r /tmp/$P-out.pcap -x 2>/dev/null
rm -f /tmp/$P-in.pcap /tmp/$P-out.pcap
