#!/bin/sh
# Capture what the Linux kernel's own vxlan device puts on the underlay, so the vxlan
# crate's unit tests compare against real bytes. Needs root, iproute2, tcpdump, ethtool.
# Creates namespaces vsv<pid>a and vsv<pid>b joined by a veth underlay (10.200.0.1/24 -
# 10.200.0.2/24), a kernel vxlan device vx0 (VNI 42, UDP 4789, DF set so the outer header
# matches what vswitch emits) in each with 172.16.42.1/24 and .2/24, pings across once and
# prints tcpdump hex of the underlay. Removes the namespaces on exit, also on failure.
# Fixed MACs on both ends so a re-run yields the same headers.
set -eu
P=vsv$$
A=${P}a B=${P}b
cleanup() { for n in $A $B; do ip netns del $n 2>/dev/null || true; done; rm -f /tmp/$P.pcap; }
trap cleanup EXIT INT TERM
for n in $A $B; do ip netns add $n; ip -n $n link set lo up; done
ip link add ${P}u netns $A address 02:00:0a:c8:00:01 type veth peer name ${P}v netns $B address 02:00:0a:c8:00:02
ip -n $A addr add 10.200.0.1/24 dev ${P}u; ip -n $A link set ${P}u up
ip -n $B addr add 10.200.0.2/24 dev ${P}v; ip -n $B link set ${P}v up
# Transmit checksum offload off: the captured inner checksums are final, not partial sums.
ip netns exec $A ethtool -K ${P}u tx off rx off >/dev/null
ip netns exec $B ethtool -K ${P}v tx off rx off >/dev/null
ip -n $A link add vx0 address 02:00:ac:10:2a:01 type vxlan id 42 dstport 4789 \
  local 10.200.0.1 remote 10.200.0.2 dev ${P}u df set
ip -n $B link add vx0 address 02:00:ac:10:2a:02 type vxlan id 42 dstport 4789 \
  local 10.200.0.2 remote 10.200.0.1 dev ${P}v df set
ip -n $A addr add 172.16.42.1/24 dev vx0; ip -n $A link set vx0 up
ip -n $B addr add 172.16.42.2/24 dev vx0; ip -n $B link set vx0 up
echo "== kernel vxlan details (A)"; ip -d -n $A link show vx0
echo "== local port range (A)"; ip netns exec $A cat /proc/sys/net/ipv4/ip_local_port_range
ip netns exec $B tcpdump -U -n -i ${P}v -w /tmp/$P.pcap udp port 4789 2>/dev/null &
T=$!
sleep 1
# Warm the inner ARP first (its frames are captured too), then one echo with a marker.
ip netns exec $A ping -c1 -W2 172.16.42.2 >/dev/null
ip netns exec $A ping -c1 -W2 -s 16 -p 76786c616e 172.16.42.2 >/dev/null
sleep 1
kill $T; wait $T 2>/dev/null || true
echo "== underlay (B's veth)"; tcpdump -n -e -r /tmp/$P.pcap -x 2>/dev/null
