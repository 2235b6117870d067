#!/bin/sh
# Capture how the Linux kernel's nftables MASQUERADE translates a few packets, so the
# nat crate's unit tests can compare against real bytes. Needs root, nft, tcpdump,
# python3, ethtool (transmit checksum offload is turned off so the captured checksums
# are final, not CHECKSUM_PARTIAL pseudo-header sums). Creates namespaces vsq<pid>c (container), vsq<pid>r (router doing NAT) and
# vsq<pid>o (outside) and removes them on exit. Prints tcpdump hex of both sides.
set -eu
P=vsq$$
C=${P}c R=${P}r O=${P}o
cleanup() { for n in $C $R $O; do ip netns del $n 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM
for n in $C $R $O; do ip netns add $n; ip -n $n link set lo up; done
ip link add ${P}a netns $C type veth peer name ${P}b netns $R
ip link add ${P}d netns $R type veth peer name ${P}e netns $O
ip -n $C addr add 172.16.5.2/24 dev ${P}a; ip -n $C link set ${P}a up
ip -n $C route add default via 172.16.5.1
ip -n $R addr add 172.16.5.1/24 dev ${P}b; ip -n $R link set ${P}b up
ip -n $R addr add 203.0.113.1/24 dev ${P}d; ip -n $R link set ${P}d up
ip -n $O addr add 203.0.113.7/24 dev ${P}e; ip -n $O link set ${P}e up
for d in "$C ${P}a" "$R ${P}b" "$R ${P}d" "$O ${P}e"; do
  set -- $d; ip netns exec $1 ethtool -K $2 tx off rx off >/dev/null
done
ip netns exec $R sysctl -qw net.ipv4.ip_forward=1
ip netns exec $R nft -f - <<NFT
table ip vsq { chain post { type nat hook postrouting priority 100; oifname "${P}d" masquerade; }; }
NFT
# warm ARP so the captured packets are the first of their flows but not delayed
ip netns exec $C ping -c1 -W1 172.16.5.1 >/dev/null
ip netns exec $R ping -c1 -W1 203.0.113.7 >/dev/null
ip netns exec $R tcpdump -U -n -i ${P}b -w /tmp/$P-in.pcap ip 2>/dev/null &
T1=$!
ip netns exec $R tcpdump -U -n -i ${P}d -w /tmp/$P-out.pcap ip 2>/dev/null &
T2=$!
sleep 1
# UDP 172.16.5.2:40000 -> 203.0.113.7:7777 (closed port: the outside answers with an
# ICMP port unreachable, which the kernel translates back, inner header included).
ip netns exec $C python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("172.16.5.2", 40000))
s.sendto(b"vswitch nat test", ("203.0.113.7", 7777))
'
# TCP SYN 172.16.5.2:40001 -> 203.0.113.7:7778 (closed: answered with a RST)
ip netns exec $C python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("172.16.5.2", 40001))
try:
    s.connect(("203.0.113.7", 7778))
except OSError:
    pass
'
# ICMP echo, identifier chosen by ping
ip netns exec $C ping -c1 -W1 -p 6e6174 -s 16 203.0.113.7 >/dev/null
sleep 1
kill $T1 $T2; wait $T1 $T2 2>/dev/null || true
echo "== inside (router's container-facing port)"; tcpdump -n -r /tmp/$P-in.pcap -x 2>/dev/null
echo "== outside (router's uplink)"; tcpdump -n -r /tmp/$P-out.pcap -x 2>/dev/null
rm -f /tmp/$P-in.pcap /tmp/$P-out.pcap
