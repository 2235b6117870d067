#!/usr/bin/env python3
"""make bench: vswitchd against the Linux kernel's own bridge, same topology, same run.

Every scenario builds namespaces (prefix vsb<pid>), drives 64-byte and 1500-byte UDP
frames with pktgen's kernel-assisted generator (XDP live frames) into one veth, counts
them with pktgen's XDP sink on the far veth, and prints reference pps, vswitchd pps and
the ratio. The generator is first measured alone into the same kind of veth so a result
that is generator-bound says so. Latency (p50/p99) is measured at a fixed moderate rate
with pktgen's userspace sink reading the sequence/timestamp payload.

vswitchd is measured in both of its data paths: the default tc one (sandbox veths keep
their offloads; known unicast goes by bpf_redirect_peer, the rest through the worker's
endpoint trunk) and `-o fastpath=xdp` (an AF_XDP socket per endpoint, XDP fast path).
The l2 and nat groups have IPv6 rows too: 64-byte IPv6 UDP frames between two sandboxes
of a dual-stack network (the bridge with its ip6 netfilter hooks as the reference) and
1024 IPv6 UDP flows through NAT66 (the kernel with an nftables ip6 masquerade as the
reference), in namespaces with IPv6 on and 2001:db8::/32 addresses.
TCP rows run iperf3 between two sandboxes, through SNAT and through a published port;
the scale row measures the daemon's memory and the control plane's latency with up to
1000 idle sandboxes. The cluster row (needs etcd-server and etcd-client) simulates 100
hosts of 100 endpoints each in an etcd 3.4 store and times one real vswitchd
(--cluster-store) until it has programmed all 10 000 remote endpoints (target < 10 s),
with its RSS before and after and the store's write rate.

BENCH_ONLY (comma list of generators, l2, tcp, nat, dns, overlay, latency, scale, cluster) runs
those groups alone (results then go to results-GROUP-GROUP.json/.svg); by default all
run. BENCH_SECONDS sets each measurement's length, BENCH_OUT the results' directory.
TCP and connection rows (single iperf3 or connect-loop runs, which swing by a third from
one run to the next on a small shared machine) and the IPv6 NAT row are measured
BENCH_TRIALS times (default 3), the reference and vswitchd interleaved, and report the
medians.

Results go to bench/results.json and bench/results.svg. Not run by CI (it takes
minutes and numbers depend on the machine); `make test` runs pktgen's smoke test.
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release"
DURATION = float(os.environ.get("BENCH_SECONDS", "5"))
LAT_RATE = os.environ.get("BENCH_LATENCY_PPS", "20000")
PFX = f"vsb{os.getpid() % 10000:04d}"
OUT_DIR = os.environ.get("BENCH_OUT", "bench")
SINK_MAC = "02:00:00:00:bb:02"
GEN_MAC = "02:00:00:00:aa:01"
GROUPS = ("generators", "l2", "tcp", "nat", "dns", "overlay", "latency", "scale", "cluster")
ONLY = [g for g in os.environ.get("BENCH_ONLY", "").replace(" ", "").split(",") if g]
TRIALS = max(1, int(os.environ.get("BENCH_TRIALS", "3")))
# The IPv6 rows: a dual-stack network's IPv6 prefix (documentation space, RFC 3849) and
# its sandboxes' addresses, and the frame size. IPv6 + UDP headers take 62 bytes, so 64
# is the smallest frame of the IPv4 rows' class that carries them (2 bytes of payload);
# every path measured carries it. The NAT rows' outside host and uplink, on their own
# IPv6 prefix.
NET6, GW6, GEN6, SINK6 = "2001:db8:31::/64", "2001:db8:31::1", "2001:db8:31::2", "2001:db8:31::3"
OUT6, UPLINK6 = "2001:db8:ff::1", "2001:db8:ff::2"
V6_SIZE = 64
L2_ADDRS6 = ["--src-ip", GEN6, "--dst-ip", SINK6]


def wanted(group):
    return not ONLY or group in ONLY


def medians(*fns):
    """Each of `fns` measured TRIALS times, interleaved (A B A B ...) so that a noisy spell
    of the machine hits every side alike: the medians, and every sample."""
    runs = [[] for _ in fns]
    for _ in range(TRIALS):
        for r, fn in zip(runs, fns):
            r.append(fn())
    return [statistics.median(r) for r in runs], runs


def sh(*args, check=True, capture=False, timeout=60):
    r = subprocess.run(args, check=False, capture_output=capture, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({r.returncode}): {r.stderr if capture else ''}")
    return r


def ip(*args, check=True):
    return sh("ip", *args, check=check)


def nsx(ns, *args, **kw):
    return sh("ip", "netns", "exec", ns, *args, **kw)


class Lab:
    """Namespaces created for one scenario, deleted afterwards (also on error)."""

    def __init__(self):
        self.namespaces = []

    def ns(self, tag, ipv6=False):
        """A namespace; IPv6 off (no chatter of the kernel's own), or with ipv6 on as a
        dual-stack host has it, without duplicate address detection (addresses usable
        at once, as vswitchd's sandboxes have theirs)."""
        name = f"{PFX}{tag}"
        ip("netns", "add", name)
        self.namespaces.append(name)
        nsx(name, "ip", "link", "set", "lo", "up")
        for key in ("all", "default"):
            if ipv6:
                nsx(name, "sysctl", "-qw", f"net.ipv6.conf.{key}.accept_dad=0")
            else:
                nsx(name, "sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=1")
        return name

    def veth(self, a_ns, a, b_ns, b, a_mac=None, b_mac=None):
        ip("-n", a_ns, "link", "add", a, "type", "veth", "peer", "name", b, "netns", b_ns)
        if a_mac:
            ip("-n", a_ns, "link", "set", a, "address", a_mac)
        if b_mac:
            ip("-n", b_ns, "link", "set", b, "address", b_mac)
        ip("-n", a_ns, "link", "set", a, "up")
        ip("-n", b_ns, "link", "set", b, "up")

    def close(self):
        for n in reversed(self.namespaces):
            ip("netns", "del", n, check=False)
        self.namespaces = []


# pktgen (generator and sink) runs on core 0 for every system measured: vswitchd's
# worker is pinned to core 1, and a sink thread left to the scheduler would share that
# core with it (an unpinned sink put 2.5 ms into vswitchd's p99, none into the bridge's).
PIN = ["taskset", "-c", "0"]


def pktgen_json(ns, *args, timeout):
    r = sh(*PIN, "ip", "netns", "exec", ns, f"{BIN}/pktgen", *args, "--json", capture=True, timeout=timeout)
    return json.loads(r.stdout.strip().splitlines()[-1])


def run_pair(gen_ns, gen_if, sink_ns, sink_if, size, dst_mac, extra_tx=(), sink_backend="xdp-count", rate=None,
             gen_backend="xdp-live"):
    """Start the sink, run the generator, return (tx report, rx report)."""
    sink_secs = DURATION + 2
    rx = subprocess.Popen(
        [*PIN, "ip", "netns", "exec", sink_ns, f"{BIN}/pktgen", "rx", "--iface", sink_if, "--backend", sink_backend,
         "--duration", str(sink_secs), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    addrs = [] if "--src-ip" in extra_tx else ["--src-ip", "172.31.0.2", "--dst-ip", "172.31.0.3"]
    tx_args = ["tx", "--iface", gen_if, "--size", str(size), "--duration", str(DURATION), "--dst-mac", dst_mac,
               *addrs, *extra_tx]
    if rate:
        tx_args += ["--rate", str(rate)]
    else:
        tx_args += ["--backend", gen_backend]
    tx = pktgen_json(gen_ns, *tx_args, timeout=DURATION + 30)
    out, err = rx.communicate(timeout=sink_secs + 30)
    if rx.returncode != 0:
        raise RuntimeError(f"pktgen rx failed: {err}")
    return tx, json.loads(out.strip().splitlines()[-1])


def rx_pps(rx):
    # The sink counts over its whole window; the frames arrived within the generator's.
    return rx["frames"] / DURATION


# ---------------------------------------------------------------- topologies


def generator_alone(size):
    lab = Lab()
    try:
        g, s = lab.ns("g"), lab.ns("s")
        lab.veth(g, "g0", s, "s0", GEN_MAC, SINK_MAC)
        _, rx = run_pair(g, "g0", s, "s0", size, SINK_MAC)
        return rx_pps(rx)
    finally:
        lab.close()


TRAFGEN_64 = bytes([0x02, 0, 0, 0, 0xbb, 0x02, 0x02, 0, 0, 0, 0xaa, 0x01, 0x08, 0x00,  # Ethernet
                    0x45, 0, 0, 50, 0, 0, 0x40, 0, 64, 17, 0, 0, 172, 31, 0, 1, 172, 31, 0, 2,  # IPv4
                    0x30, 0x39, 0, 9, 0, 30, 0, 0]) + bytes(22)  # UDP, payload: 64 bytes


def userspace_generator(name):
    """One userspace generator on core 0 sending 64-byte frames into one veth whose peer
    counts them with pktgen's XDP sink; returns the generator's own rate (pps). The
    peers users would pick instead: trafgen (AF_PACKET, qdisc bypass) and DPDK testpmd
    txonly over its AF_XDP PMD (copy mode: veth has no zero-copy)."""
    import re
    lab = Lab()
    try:
        g, s = lab.ns("g"), lab.ns("s")
        lab.veth(g, "g0", s, "s0", GEN_MAC, SINK_MAC)
        sink = subprocess.Popen([*PIN, "ip", "netns", "exec", s, f"{BIN}/pktgen", "rx", "--iface", "s0", "--backend",
                                 "xdp-count", "--duration", str(DURATION + 4), "--json"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)
        run = ["ip", "netns", "exec", g]
        if name.startswith("pktgen"):
            backend = name.split()[1]
            r = sh(*PIN, *run, f"{BIN}/pktgen", "tx", "--iface", "g0", "--backend", backend, "--size", "64",
                   "--duration", str(DURATION), "--dst-mac", SINK_MAC, "--json", capture=True, timeout=DURATION + 30)
            pps = json.loads(r.stdout.strip().splitlines()[-1])["pps"]
        elif name == "trafgen":
            with tempfile.NamedTemporaryFile("w", suffix=".cfg", delete=False) as f:
                f.write("{ " + ", ".join(f"0x{b:02x}" for b in TRAFGEN_64) + " }\n")
            r = sh("timeout", "-s", "INT", str(DURATION), *PIN, *run, "trafgen", "--dev", "g0", "--conf", f.name,
                   "-P", "1", check=False, capture=True, timeout=DURATION + 30)
            os.unlink(f.name)
            m = re.search(r"(\d+) sec, (\d+) usec on CPU0 \((\d+) packets\)", r.stdout + r.stderr)
            pps = int(m.group(3)) / (int(m.group(1)) + int(m.group(2)) / 1e6) if m else 0.0
        else:  # DPDK testpmd: forwarding lcore 0, its main lcore (stats, stdin) on 1
            cmd = (f"sleep {DURATION + 10} | timeout -s INT {DURATION + 1} ip netns exec {g} dpdk-testpmd -l 0,1 "
                   f"--main-lcore 1 --no-huge -m 512 --no-pci --no-shconf --vdev net_af_xdp0,iface=g0,force_copy=1 "
                   f"-- --forward-mode=txonly --txpkts=64 --auto-start --total-num-mbufs=8192 --stats-period 1")
            r = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=DURATION + 30)
            rates = sorted(int(x) for x in re.findall(r"Tx-pps:\s+(\d+)", r.stdout))
            pps = float(rates[len(rates) // 2]) if rates else 0.0  # the median second
        sink.communicate(timeout=DURATION + 30)
        return pps
    finally:
        lab.close()


def linux_bridge(size, netfilter, latency=False, tcp=False, streams=1, ipv6=False):
    """ipv6: IPv6 UDP between dual-stack namespaces; with netfilter, bridged IPv6 goes
    through br_netfilter's ip6 hooks and a stateful ip6 forward chain (a Docker host with
    IPv6: ip6tables' FORWARD)."""
    lab = Lab()
    try:
        g, b, s = lab.ns("g", ipv6), lab.ns("b", ipv6), lab.ns("s", ipv6)
        ip("-n", b, "link", "add", "br0", "type", "bridge")
        lab.veth(g, "g0", b, "g1", GEN_MAC)
        lab.veth(s, "s0", b, "s1", SINK_MAC)
        for p in ("g1", "s1"):
            ip("-n", b, "link", "set", p, "master", "br0")
            # A veth takes frames redirected by XDP (the generator's) only with GRO on
            # or an XDP program attached (vswitchd's xdp ports have theirs; its tc ports
            # get GRO on the generator's side like these). TCP rows leave the veths as
            # Docker does (GRO off), on both systems.
            if not tcp:
                nsx(b, "ethtool", "-K", p, "gro", "on", capture=True)
        ip("-n", b, "link", "set", "br0", "up")
        sh("bridge", "-n", b, "fdb", "add", SINK_MAC, "dev", "s1", "master", "static")
        family = "ip6" if ipv6 else "ip"
        nsx(b, "sysctl", "-qw", f"net.bridge.bridge-nf-call-{family}tables={1 if netfilter else 0}")
        if netfilter:
            # What a Docker host has: bridged IPv4 (IPv6) traverses a stateful forward chain.
            rules = (f"table {family} filter {{\n chain forward {{\n  type filter hook forward priority 0; policy accept;\n"
                     "  ct state established,related accept\n  accept\n }\n}\n")
            with tempfile.NamedTemporaryFile("w", suffix=".nft", delete=False) as f:
                f.write(rules)
            try:
                nsx(b, "nft", "-f", f.name)
            finally:
                os.unlink(f.name)
        if tcp:
            ip("-n", g, "addr", "add", "172.31.0.2/24", "dev", "g0")
            ip("-n", s, "addr", "add", "172.31.0.3/24", "dev", "s0")
            return iperf_bps(s, g, "172.31.0.3", streams)
        if latency:
            return run_pair(g, "g0", s, "s0", size, SINK_MAC, sink_backend="af_xdp", rate=LAT_RATE)[1]
        return rx_pps(run_pair(g, "g0", s, "s0", size, SINK_MAC, extra_tx=L2_ADDRS6 if ipv6 else ())[1])
    finally:
        lab.close()


def have_ovs():
    return all(shutil.which(b) for b in ("ovs-vswitchd", "ovsdb-server", "ovs-vsctl", "ovsdb-tool"))


def ovs(size, latency=False, ipv6=False):
    """Open vSwitch, userspace (netdev) datapath with AF_XDP ports, private db and run
    dirs, its PMD thread on core 1 like vswitchd's worker; the NORMAL action learns."""
    lab = Lab()
    d = tempfile.mkdtemp(prefix=f"{PFX}-ovs-")
    env = dict(os.environ, OVS_RUNDIR=d, OVS_DBDIR=d, OVS_LOGDIR=d, OVS_SYSCONFDIR=d)
    pids = []
    try:
        g, b, s = lab.ns("g"), lab.ns("b"), lab.ns("s")
        lab.veth(g, "g0", b, "g1", GEN_MAC)
        lab.veth(s, "s0", b, "s1", SINK_MAC)
        sh("ovsdb-tool", "create", f"{d}/conf.db", "/usr/share/openvswitch/vswitch.ovsschema")
        for args in (["ovsdb-server", f"{d}/conf.db", f"--remote=punix:{d}/db.sock", f"--pidfile={d}/db.pid", "--detach",
                      f"--log-file={d}/db.log"],
                     ["ovs-vswitchd", f"unix:{d}/db.sock", f"--pidfile={d}/vs.pid", "--detach", f"--log-file={d}/vs.log"]):
            subprocess.run(["ip", "netns", "exec", b, *args], env=env, check=True, capture_output=True, timeout=30)
        for f in ("db.pid", "vs.pid"):
            with open(f"{d}/{f}") as fh:
                pids.append(int(fh.read().strip()))
        vsctl = ["ovs-vsctl", f"--db=unix:{d}/db.sock"]
        sh(*vsctl, "--no-wait", "init")
        sh(*vsctl, "--no-wait", "set", "Open_vSwitch", ".", "other_config:pmd-cpu-mask=0x2")
        sh(*vsctl, "add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev", timeout=30)
        for p in ("g1", "s1"):
            sh(*vsctl, "add-port", "br0", p, "--", "set", "interface", p, "type=afxdp", "options:xdp-mode=native",
               timeout=30)
        time.sleep(1)
        # Let NORMAL learn where the sink is.
        nsx(s, f"{BIN}/pktgen", "tx", "--iface", "s0", "--count", "10", "--src-mac", SINK_MAC, "--dst-mac",
            "ff:ff:ff:ff:ff:ff", capture=True)
        if latency:
            return run_pair(g, "g0", s, "s0", size, SINK_MAC, sink_backend="af_xdp", rate=LAT_RATE)[1]
        return rx_pps(run_pair(g, "g0", s, "s0", size, SINK_MAC, extra_tx=L2_ADDRS6 if ipv6 else ())[1])
    finally:
        for pid in pids:
            try:
                os.kill(pid, 15)
            except OSError:
                pass
        time.sleep(0.5)
        lab.close()
        shutil.rmtree(d, ignore_errors=True)


class Vswitchd:
    def __init__(self, workers, netns=None, extra=()):
        self.dir = tempfile.mkdtemp(prefix=f"{PFX}-")
        self.netns = netns
        self.sock = os.path.join(self.dir, "s.sock")
        self.log = open(os.path.join(self.dir, "log"), "w")
        # nsenter joins only the network namespace, so sandboxes stay visible to us.
        wrap = ["nsenter", f"--net=/run/netns/{netns}", "--"] if netns else []
        self.p = subprocess.Popen([*wrap, f"{BIN}/vswitchd", "--socket", self.sock, "--state-dir", self.dir + "/state",
                                   "--workers", str(workers), "--log-level", "warn", *extra],
                                  stdout=self.log, stderr=self.log)
        for _ in range(100):
            if self.p.poll() is not None or self.ctl("network", "ls", check=False).returncode == 0:
                break
            time.sleep(0.1)

    def ctl(self, *args, check=True):
        return sh(f"{BIN}/vswitchctl", "--socket", self.sock, *args, check=check, capture=True)

    def port(self, sandbox):
        """A sandbox endpoint's stats entry: host end "name", "backend" (tc, af_xdp), counters."""
        ports = json.loads(self.ctl("--format", "json", "stats").stdout)["ports"]
        return next(p for p in ports if p.get("sandbox") == sandbox)

    def feed(self, sandbox):
        """Let XDP-live frames into `sandbox`'s eth0: a veth takes XDP-redirected frames only
        if its peer has NAPI (GRO on or an XDP program). An xdp endpoint's host end has
        vswitchd's program; a tc endpoint's has neither, so turn GRO on there, in the
        daemon's namespace, as linux_bridge does for its ports."""
        p = self.port(sandbox)
        if p["backend"] == "tc":
            self.run("ethtool", "-K", p["name"], "gro", "on")

    def run(self, *cmd):
        """A command in the daemon's network namespace (where the host ends are)."""
        return nsx(self.netns, *cmd, capture=True) if self.netns else sh(*cmd, capture=True)

    def expose(self, sandbox):
        """Make pktgen's sinks (xdp-count, af_xdp) on `sandbox`'s eth0 see what vswitchd
        delivers there. They attach natively when they can, falling back to generic XDP;
        a native program on a veth runs only for frames that come through the veth's own
        transmit (an skb from its peer, or XDP frames redirected to the peer), and that
        is how frames reach the references' sinks and the xdp data path's. The tc data
        path hands frames over by bpf_redirect_peer instead: they enter eth0 at the skb
        receive path, past the native hook, and the first hook there is generic XDP. So
        for a tc endpoint, raise its host end's MTU past what native XDP on the sandbox
        side accepts (the peer's MTU must fit a page): the sinks then attach in generic
        mode. The host end's own transmit carries nothing here, so nothing else changes,
        and the frames are skbs already (the generator's host end built them): the
        generic sink costs no allocation a native one would save (on the Linux bridge it
        read 3-10% below the native one, so if anything this understates the tc path).
        Vswitchd.count checks the sink against vswitchd's counters."""
        p = self.port(sandbox)
        if p["backend"] == "tc":
            self.run("ip", "link", "set", p["name"], "mtu", "9000")

    def count(self, sandbox, fn):
        """Run fn() -> (tx, rx) reports and check the sink against what vswitchd says it
        delivered to `sandbox` (its port's TX, kernel fast path included)."""
        before = self.port(sandbox)["tx_packets"]
        _, rx = fn()
        sent = self.port(sandbox)["tx_packets"] - before
        if sent and abs(rx["frames"] - sent) > 0.01 * sent:
            print(f"  warning: the sink counted {rx['frames']} frames, vswitchd delivered {sent} to {sandbox}",
                  flush=True)
        return rx

    def close(self, names):
        for n in names:
            self.ctl("sandbox", "rm", "-f", n, check=False)
        self.p.terminate()
        self.p.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


def fastpath_opts(mode):
    """The network options for a data path: tc is the default (no option, as it ships)."""
    return [] if mode == "tc" else ["-o", f"fastpath={mode}"]


def vswitch(size, workers, latency=False, fast=True, tcp=False, streams=1, mode="tc", ipv6=False):
    """mode: the network's data path, tc (default) or xdp (-o fastpath=xdp). fast=False:
    --fast-path off, every frame through the worker (through its endpoint trunk in tc
    mode, the endpoints' AF_XDP sockets in xdp mode). ipv6: a dual-stack network, IPv6
    UDP between the sandboxes' own IPv6 addresses (what port security lets the kernel
    forward)."""
    d = Vswitchd(workers, extra=() if fast else ("--fast-path", "off"))
    g, s = f"{PFX}g", f"{PFX}s"
    try:
        dual = ["--ipv6", "--subnet", "172.31.0.0/24", "--subnet", NET6] if ipv6 else ["--subnet", "172.31.0.0/24"]
        d.ctl("network", "create", *dual, *fastpath_opts(mode), f"{PFX}net")
        for n, a4, a6, mac in ((g, "172.31.0.2", GEN6, GEN_MAC), (s, "172.31.0.3", SINK6, SINK_MAC)):
            d.ctl("sandbox", "create", "--network", f"{PFX}net", "--ip", a4, *(["--ip6", a6] if ipv6 else []),
                  "--mac", mac, n)
        for n in (g, s):
            # Teach the switch where each MAC lives (and check the path works).
            nsx(n, "ping", "-c1", "-W1", "172.31.0.1", capture=True)
            if ipv6:
                nsx(n, "ping", "-6", "-c1", "-W1", GW6, capture=True)
        if tcp:
            return iperf_bps(s, g, "172.31.0.3", streams)
        d.expose(s)
        if latency:
            return run_pair(g, "eth0", s, "eth0", size, SINK_MAC, sink_backend="af_xdp", rate=LAT_RATE)[1]
        d.feed(g)
        extra = L2_ADDRS6 if ipv6 else ()
        return rx_pps(d.count(s, lambda: run_pair(g, "eth0", s, "eth0", size, SINK_MAC, extra_tx=extra)))
    finally:
        d.close([g, s])


# ---------------------------------------------------------------- NAT

OUT_IP, UPLINK_IP, CT_IP = "198.51.100.1", "198.51.100.2", "172.31.0.2"
# Routed traffic is generated with AF_XDP (an skb per frame, like a container's): GRO,
# which a veth needs to take XDP-live frames, coalesces identical UDP frames on a routed
# path and would make the kernel reference meaningless.
NAT_FLOWS = ["--src-ip", CT_IP, "--dst-ip", OUT_IP, "--sport", "1024-2047", "--dport", "9", "--flows", "1024"]
# The same 1024 flows over IPv6, from the container's IPv6 address to the outside's.
NAT_FLOWS6 = ["--src-ip", GEN6, "--dst-ip", OUT6, "--sport", "1024-2047", "--dport", "9", "--flows", "1024"]

CONN_SERVER = """
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 80)); s.listen(1024)
while True:
    c, _ = s.accept(); c.close()
"""

CONN_CLIENT = """
import socket, struct, sys, time
ip, secs = sys.argv[1], float(sys.argv[2])
for _ in range(50):  # wait (bounded) for the server
    try:
        socket.create_connection((ip, 8080), timeout=1).close(); break
    except OSError:
        time.sleep(0.1)
n, end = 0, time.time() + secs
while time.time() < end:
    s = socket.create_connection((ip, 8080), timeout=2)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST: no TIME_WAIT pile-up
    s.close(); n += 1
print(n / secs)
"""


def conn_rate(server_ns, client_ns):
    srv = subprocess.Popen(["ip", "netns", "exec", server_ns, "python3", "-c", CONN_SERVER],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        r = nsx(client_ns, "python3", "-c", CONN_CLIENT, UPLINK_IP, str(DURATION), capture=True, timeout=DURATION + 30)
        return float(r.stdout.strip() or 0)
    finally:
        srv.kill()
        srv.wait()


def outside(lab, host_ns, ipv6=False):
    """The outside namespace behind an uplink veth `up0` in `host_ns`. Its end sends
    finished, MTU-sized frames (tx checksum off, so no TSO), as a wire delivers them:
    vswitchd's uplink socket needs complete frames, and the kernel reference gets the
    same outside for fairness. ipv6: dual-stack, OUT6 on the uplink's IPv6 prefix too."""
    o = lab.ns("o", ipv6)
    lab.veth(host_ns, "up0", o, "o0")
    ip("-n", o, "addr", "add", f"{OUT_IP}/24", "dev", "o0")
    if ipv6:
        ip("-n", o, "addr", "add", f"{OUT6}/64", "dev", "o0", "nodad")
    nsx(o, "ethtool", "-K", "o0", "tx", "off", capture=True)
    return o


# NAT rows: "pps" (SNAT, UDP flows), "pps6" (the same over IPv6: NAT66 masquerade), "conn" (new connections/s via a published port),
# "snat-tcp" (iperf3 from the container to the outside), "pub-tcp" (iperf3 from the
# outside to a server in the container, published on the uplink's port 5201).
NAT_TCP = ("snat-tcp", "pub-tcp")


def nat_tcp(what, ct_ns, o):
    if what == "snat-tcp":
        return iperf_bps(o, ct_ns, OUT_IP)
    return iperf_bps(ct_ns, o, UPLINK_IP)


def kernel_nat(what):
    """The kernel as a Docker host does it: a router namespace forwarding with nftables
    masquerade and a DNAT for the published port. "pps6": the same router dual-stack,
    IPv6 forwarded and masqueraded by an ip6 nat table (Docker's NAT66 with ip6tables)."""
    v6 = what == "pps6"
    lab = Lab()
    try:
        g, r = lab.ns("g", v6), lab.ns("r", v6)
        o = outside(lab, r, v6)
        lab.veth(g, "g0", r, "r0")
        ip("-n", g, "addr", "add", f"{CT_IP}/24", "dev", "g0")
        ip("-n", g, "route", "add", "default", "via", "172.31.0.1")
        ip("-n", r, "addr", "add", "172.31.0.1/24", "dev", "r0")
        ip("-n", r, "addr", "add", f"{UPLINK_IP}/24", "dev", "up0")
        nsx(r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        if v6:
            ip("-n", g, "addr", "add", f"{GEN6}/64", "dev", "g0", "nodad")
            ip("-n", g, "-6", "route", "add", "default", "via", GW6)
            ip("-n", r, "addr", "add", f"{GW6}/64", "dev", "r0", "nodad")
            ip("-n", r, "addr", "add", f"{UPLINK6}/64", "dev", "up0", "nodad")
            nsx(r, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        if what not in NAT_TCP:
            # The container's end keeps its offloads for TCP (tx off would cripple the
            # kernel's TCP; vswitchd's sandboxes keep theirs too).
            nsx(g, "ethtool", "-K", "g0", "tx", "off", capture=True)
        rules = ("table ip nat {\n chain post { type nat hook postrouting priority 100; oifname \"up0\" masquerade; }\n"
                 " chain pre { type nat hook prerouting priority -100;\n"
                 f"  iifname \"up0\" tcp dport 8080 dnat to {CT_IP}:80\n"
                 f"  iifname \"up0\" tcp dport 5201 dnat to {CT_IP}:5201\n }}\n}}\n")
        if v6:
            rules += ("table ip6 nat {\n chain post { type nat hook postrouting priority 100; "
                      "oifname \"up0\" masquerade; }\n}\n")
        with tempfile.NamedTemporaryFile("w", suffix=".nft", delete=False) as f:
            f.write(rules)
        try:
            nsx(r, "nft", "-f", f.name)
        finally:
            os.unlink(f.name)
        mac = lambda ns, dev: sh("ip", "-n", ns, "-j", "link", "show", dev, capture=True).stdout
        o_mac = json.loads(mac(o, "o0"))[0]["address"]
        r_mac = json.loads(mac(r, "r0"))[0]["address"]
        ip("-n", r, "neigh", "replace", OUT_IP, "lladdr", o_mac, "dev", "up0", "nud", "permanent")
        if v6:
            ip("-n", r, "-6", "neigh", "replace", OUT6, "lladdr", o_mac, "dev", "up0", "nud", "permanent")
            return rx_pps(run_pair(g, "g0", o, "o0", V6_SIZE, r_mac, extra_tx=NAT_FLOWS6, gen_backend="af_xdp")[1])
        if what == "conn":
            return conn_rate(g, o)
        if what in NAT_TCP:
            return nat_tcp(what, g, o)
        return rx_pps(run_pair(g, "g0", o, "o0", 64, r_mac, extra_tx=NAT_FLOWS, gen_backend="af_xdp")[1])
    finally:
        lab.close()


def vswitch_nat(what):
    """pps6: the uplink dual-stack too, IPv6 egress masqueraded to UPLINK6 (NAT66, in
    the router's worker)."""
    v6 = what == "pps6"
    lab = Lab()
    h = lab.ns("h", v6)
    o = outside(lab, h, v6)
    up6 = ["--uplink-ip6", f"{UPLINK6}/64", "--uplink-gw6", OUT6] if v6 else []
    d = Vswitchd(1, netns=h, extra=["--uplink", "up0", "--uplink-ip", f"{UPLINK_IP}/24", "--uplink-gw", OUT_IP, *up6])
    g = f"{PFX}c"
    try:
        dual = ["--ipv6", "--subnet", "172.31.0.0/24", "--subnet", NET6] if v6 else ["--subnet", "172.31.0.0/24"]
        d.ctl("network", "create", *dual, f"{PFX}net")
        publish = {"conn": ["-p", "8080:80"], "pub-tcp": ["-p", "5201:5201"], "pps6": ["--ip6", GEN6]}.get(what, [])
        d.ctl("sandbox", "create", "--network", f"{PFX}net", *publish, g)
        # Resolve the next hop before the sink (which drops everything) takes over.
        nsx(g, "ping", "-c1", "-W1", OUT_IP, capture=True)
        if v6:
            nsx(g, "ping", "-6", "-c1", "-W1", OUT6, capture=True)
            return rx_pps(run_pair(g, "eth0", o, "o0", V6_SIZE, "02:42:ac:1f:00:01", extra_tx=NAT_FLOWS6,
                                   gen_backend="af_xdp")[1])
        if what == "conn":
            return conn_rate(g, o)
        if what in NAT_TCP:
            return nat_tcp(what, g, o)
        gw_mac = "02:42:ac:1f:00:01"
        return rx_pps(run_pair(g, "eth0", o, "o0", 64, gw_mac, extra_tx=NAT_FLOWS, gen_backend="af_xdp")[1])
    finally:
        d.close([g])
        lab.close()


# ---------------------------------------------------------------- DNS

DNS_LOCAL = [f"web{i}" for i in range(1, 5)]
DNS_FWD = [f"fwd{i}.example.test" for i in range(1, 5)]


def upstream_dnsmasq(ns):
    """The upstream behind the uplink, serving the forwarded names."""
    args = ["dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--bind-interfaces",
            f"--listen-address={OUT_IP}", "--port=53", "--cache-size=0"]
    args += [f"--address=/{n}/198.51.100.{10 + i}" for i, n in enumerate(DNS_FWD)]
    return subprocess.Popen(["ip", "netns", "exec", ns, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def dnsperf(client_ns, server, names):
    """dnsperf from a sandbox for DURATION seconds: (queries/s, average latency in µs)."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("".join(f"{n} A\n" for n in names))
    try:
        r = nsx(client_ns, "dnsperf", "-s", server, "-d", f.name, "-l", str(DURATION), "-c", "4", "-q", "64",
                capture=True, timeout=DURATION + 30)
    finally:
        os.unlink(f.name)
    qps = lat = 0.0
    for line in r.stdout.splitlines():
        if "Queries per second:" in line:
            qps = float(line.split(":")[1])
        if "Average Latency (s):" in line:
            lat = float(line.split(":")[1].split()[0]) * 1e6
    return qps, lat


def kernel_dns():
    """dnsmasq in a router namespace, answering the same local names and forwarding the
    rest upstream (cache off, as vswitchd does not cache)."""
    lab = Lab()
    up = None
    ref = None
    try:
        c, r = lab.ns("c"), lab.ns("r")
        o = outside(lab, r)
        lab.veth(c, "c0", r, "r0")
        ip("-n", c, "addr", "add", f"{CT_IP}/24", "dev", "c0")
        ip("-n", r, "addr", "add", "172.31.0.1/24", "dev", "r0")
        ip("-n", r, "addr", "add", f"{UPLINK_IP}/24", "dev", "up0")
        up = upstream_dnsmasq(o)
        args = ["dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--bind-interfaces",
                "--listen-address=172.31.0.1", "--port=53", "--cache-size=0", f"--server={OUT_IP}"]
        args += [f"--host-record={n},172.31.0.{10 + i}" for i, n in enumerate(DNS_LOCAL)]
        ref = subprocess.Popen(["ip", "netns", "exec", r, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)
        return dnsperf(c, "172.31.0.1", DNS_LOCAL), dnsperf(c, "172.31.0.1", DNS_FWD)
    finally:
        for p in (ref, up):
            if p:
                p.kill()
                p.wait()
        lab.close()


def vswitch_dns():
    lab = Lab()
    h = lab.ns("h")
    o = outside(lab, h)
    d = Vswitchd(1, netns=h, extra=["--uplink", "up0", "--uplink-ip", f"{UPLINK_IP}/24", "--uplink-gw", OUT_IP,
                                    "--dns-upstream", OUT_IP])
    names = [f"{PFX}cl"] + [f"{PFX}{n}" for n in DNS_LOCAL]
    up = upstream_dnsmasq(o)
    try:
        d.ctl("network", "create", "--subnet", "172.31.0.0/24", f"{PFX}net")
        for n, alias in zip(names, ["client"] + DNS_LOCAL):
            d.ctl("sandbox", "create", "--network", f"{PFX}net", "--alias", alias, n)
        time.sleep(1)
        return dnsperf(names[0], "172.31.0.1", DNS_LOCAL), dnsperf(names[0], "172.31.0.1", DNS_FWD)
    finally:
        up.kill()
        up.wait()
        d.close(names)
        lab.close()


# ---------------------------------------------------------------- overlay

VNI = "4242"
# The overlay rows count with an AF_PACKET sink on both sides. With tc uplinks the
# kernel carries the frames: encapsulated at the sender's endpoint and sent out of its
# uplink by bpf_redirect, which marks the skb redirected, a mark that survives the veth
# wire; generic XDP (the only XDP hook a frame delivered by bpf_redirect_peer meets)
# skips redirected skbs, so an XDP sink there would count nothing. A socket tap sees
# every skb on either path.
OV_SINK_BACKEND = "af_packet"
UNDERLAY = ("10.200.0.1", "10.200.0.2")
OV_GEN, OV_SINK = "172.31.0.2", "172.31.0.3"


# A single iperf3 run of a few seconds moves by +-30% on this 2-core machine (where the
# sender, the receiver and the kernel's softirq work land), and a noisy spell can last
# longer than one side's runs: TCP rows are measured by `medians`, the reference and
# vswitchd interleaved.
def iperf_bps(server_ns, client_ns, server_ip, streams=1):
    srv = subprocess.Popen(["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            r = nsx(server_ns, "ss", "-Hltn", "sport = :5201", capture=True)
            if r.stdout.strip():
                break
            time.sleep(0.1)
        r = nsx(client_ns, "iperf3", "-c", server_ip, "-t", str(max(1, int(DURATION))), "-P", str(streams), "-J",
                capture=True, check=False, timeout=DURATION + 30)
        v = json.loads(r.stdout or "{}")
        return v.get("end", {}).get("sum_received", {}).get("bits_per_second", 0.0)
    finally:
        srv.kill()
        srv.wait()


def kernel_overlay(what, size=64):
    """Two hosts as the kernel does it: a vxlan device and a bridge on each, one
    namespace per host standing in for the container."""
    lab = Lab()
    try:
        g, h1, h2, s = lab.ns("g"), lab.ns("k1"), lab.ns("k2"), lab.ns("s")
        lab.veth(h1, "u1", h2, "u2")
        for h, dev, (me, peer) in ((h1, "u1", UNDERLAY), (h2, "u2", UNDERLAY[::-1])):
            ip("-n", h, "addr", "add", f"{me}/24", "dev", dev)
            ip("-n", h, "link", "add", "vx0", "type", "vxlan", "id", VNI, "dstport", "4789", "local", me, "remote",
               peer, "dev", dev)
            ip("-n", h, "link", "add", "br0", "type", "bridge")
            ip("-n", h, "link", "set", "vx0", "master", "br0")
            for d in ("vx0", "br0"):
                ip("-n", h, "link", "set", d, "up")
        lab.veth(g, "g0", h1, "g1", GEN_MAC)
        lab.veth(s, "s0", h2, "s1", SINK_MAC)
        ip("-n", h1, "link", "set", "g1", "master", "br0")
        ip("-n", h2, "link", "set", "s1", "master", "br0")
        for ns, dev, addr in ((g, "g0", OV_GEN), (s, "s0", OV_SINK)):
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            ip("-n", ns, "link", "set", dev, "mtu", "1450")
            if what != "tcp":
                # For TCP the containers keep their offloads, as vswitchd's sandboxes do.
                nsx(ns, "ethtool", "-K", dev, "tx", "off", capture=True)
        nsx(g, "ping", "-c2", "-W1", OV_SINK, capture=True, check=False)
        if what == "tcp":
            return iperf_bps(s, g, OV_SINK)
        return rx_pps(run_pair(g, "g0", s, "s0", size, SINK_MAC, sink_backend=OV_SINK_BACKEND,
                               extra_tx=["--src-ip", OV_GEN, "--dst-ip", OV_SINK], gen_backend="af_xdp")[1])
    finally:
        lab.close()


def vswitch_overlay(what, size=64):
    lab = Lab()
    h1, h2 = lab.ns("h1"), lab.ns("h2")
    lab.veth(h1, "up1", h2, "up2")
    daemons, names = [], []
    try:
        # Two hosts, a core each for its worker (by default both would pin to core 1 and
        # take turns on it, which no two real hosts do).
        for h, up, (me, peer), sb, addr, mac, cpu in (
                (h1, "up1", UNDERLAY, f"{PFX}g", OV_GEN, GEN_MAC, "0"),
                (h2, "up2", UNDERLAY[::-1], f"{PFX}s", OV_SINK, SINK_MAC, "1")):
            d = Vswitchd(1, netns=h, extra=["--cpus", cpu, "--uplink", up, "--uplink-ip", f"{me}/24",
                                            "--uplink-gw", "10.200.0.254"])
            daemons.append((d, [sb]))
            d.ctl("network", "create", "-d", "overlay", "--subnet", "172.31.0.0/24", "-o", f"vxlan.id={VNI}",
                  "-o", f"vxlan.peers={peer}", f"{PFX}ov")
            d.ctl("sandbox", "create", "--network", f"{PFX}ov", "--ip", addr, "--mac", mac, sb)
            names.append(sb)
        g, s = names
        nsx(g, "ping", "-c2", "-W1", OV_SINK, capture=True, check=False)
        if what == "tcp":
            return iperf_bps(s, g, OV_SINK)
        d = daemons[1][0]
        d.expose(s)
        return rx_pps(d.count(s, lambda: run_pair(g, "eth0", s, "eth0", size, SINK_MAC,
                                                  sink_backend=OV_SINK_BACKEND,
                                                  extra_tx=["--src-ip", OV_GEN, "--dst-ip", OV_SINK],
                                                  gen_backend="af_xdp")))
    finally:
        for d, sbs in daemons:
            d.close(sbs)
        lab.close()


# ---------------------------------------------------------------- scale

SCALE_MARKS = (0, 100, 1000)
SCALE_TIMED = 100  # creates timed: the last SCALE_TIMED up to the top mark; then as many rm


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))


def vswitch_scale():
    """One daemon (--workers 1, default data path), idle sandboxes on one network: its
    RSS at each mark, and the mean wall time of `vswitchctl sandbox create` over the last
    SCALE_TIMED sandboxes up to the top mark and of `sandbox rm` over as many from it."""
    d = Vswitchd(1)
    names, create_s, rm_s, rss = [], [], [], {}
    top = SCALE_MARKS[-1]
    try:
        d.ctl("network", "create", "--subnet", "172.30.0.0/20", f"{PFX}big")  # room for 4094
        for mark in SCALE_MARKS:
            while len(names) < mark:
                names.append(f"{PFX}k{len(names):04d}")
                t = time.monotonic()
                d.ctl("sandbox", "create", "--network", f"{PFX}big", names[-1])
                if len(names) > top - SCALE_TIMED:
                    create_s.append(time.monotonic() - t)
            time.sleep(1)  # let the daemon settle (nothing is sent: the sandboxes stay idle)
            rss[mark] = vm_rss_kib(d.p.pid)
            print(f"scale: {mark:>5} sandboxes  vswitchd RSS {rss[mark] / 1024:.1f} MiB", flush=True)
        for n in reversed(names[top - SCALE_TIMED:]):
            t = time.monotonic()
            d.ctl("sandbox", "rm", n)
            rm_s.append(time.monotonic() - t)
            names.remove(n)
    finally:
        d.close(names)
    per = (rss[top] - rss[0]) / top / 1024
    return {"workers": 1, "rss_mib": {str(m): rss[m] / 1024 for m in SCALE_MARKS}, "per_endpoint_mib": per,
            "create_mean_ms": 1e3 * sum(create_s) / len(create_s), "rm_mean_ms": 1e3 * sum(rm_s) / len(rm_s),
            "timed": f"create of sandboxes {top - SCALE_TIMED + 1}..{top}, rm of the same {SCALE_TIMED} ({top} -> "
                     f"{top - SCALE_TIMED})"}


# ---------------------------------------------------------------- cluster

CLUSTER_HOSTS, CLUSTER_EPS = 100, 100  # simulated hosts, endpoints each
CLUSTER_TARGET_S = 10.0  # all remote endpoints programmed within this of the first write
CLUSTER_WAIT_S = 120.0  # give up (and report the failure) after this
ETCD_IP = "10.211.0.10"
ETCD_PORT = 2379
ETCD_MAX_TXN_OPS = 128  # etcd's default --max-txn-ops
ETCD_LEASE_TTL = 120
CLUSTER_PREFIX = "/vswitch/v1/"


def cluster_sim_keys(net_id, h):
    """Simulated host h's keys as vswitchd writes its own (mgmt/src/cluster/keys.rs), in
    groups that go into one txn together: its node record, then per endpoint its address
    claim and its endpoint record. All are under the host's lease."""
    name, vtep = f"sim{h}", f"10.201.{1 + h // 250}.{1 + h % 250}"  # never 10.201.0.1 or .254
    node = {"name": name, "vtep": vtep, "started": "2026-01-01T00:00:00Z", "version": "bench"}
    groups = [[(f"{CLUSTER_PREFIX}nodes/{name}", json.dumps(node))]]
    for e in range(CLUSTER_EPS):
        i = h * CLUSTER_EPS + e
        octets = (10, 240, 1 + i // 250, 1 + i % 250)  # never .0, .255 or the gateway 10.240.0.1
        addr = ".".join(map(str, octets))
        ep_id = f"ep{h}x{e}"
        ep = {"network": net_id, "node": name, "id": ep_id, "name": f"{name}-c{e}", "aliases": [],
              "mac": "02:42:" + ":".join(f"{o:02x}" for o in octets), "ip": addr, "vtep": vtep}
        groups.append([(f"{CLUSTER_PREFIX}ipam/{net_id}/{addr}", f"{name}/{ep_id}"),
                       (f"{CLUSTER_PREFIX}endpoints/{net_id}/{name}/{ep_id}", json.dumps(ep))])
    return groups


def cluster_writer(net_id):
    """The simulated hosts' writer, run inside the management namespace (see
    vswitch_cluster): one lease per host, then every host's keys by etcd 3.4's JSON gRPC
    gateway, sequential txns of at most ETCD_MAX_TXN_OPS puts over one connection (a
    claim and its endpoint never split). Prints one JSON line: CLOCK_MONOTONIC times
    (comparable with the caller's) before the first put (t0) and after the last (t1),
    keys and txns written."""
    import base64
    import http.client

    conn = http.client.HTTPConnection(ETCD_IP, ETCD_PORT, timeout=30)

    def post(path, body):
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        r = conn.getresponse()
        data = r.read()
        if r.status != 200:
            raise RuntimeError(f"POST {path}: HTTP {r.status}: {data[:300]!r}")
        return json.loads(data)

    b64 = lambda s: base64.b64encode(s.encode()).decode()
    tl = time.monotonic()
    leases = [post("/v3/lease/grant", {"TTL": ETCD_LEASE_TTL})["ID"] for _ in range(CLUSTER_HOSTS)]
    tl = time.monotonic() - tl
    txns, batch = [], []
    for h in range(CLUSTER_HOSTS):
        for g in cluster_sim_keys(net_id, h):
            if len(batch) + len(g) > ETCD_MAX_TXN_OPS:
                txns.append(batch)
                batch = []
            batch += [{"requestPut": {"key": b64(k), "value": b64(v), "lease": leases[h]}} for k, v in g]
    txns.append(batch)
    t0 = time.monotonic()
    for ops in txns:
        r = post("/v3/kv/txn", {"success": ops})
        if r.get("succeeded") is not True:
            raise RuntimeError(f"txn did not succeed: {json.dumps(r)[:300]}")
    t1 = time.monotonic()
    print(json.dumps({"t0": t0, "t1": t1, "keys": sum(map(len, txns)), "txns": len(txns), "leases_s": tl}),
          flush=True)


def die_with_parent():
    """preexec_fn: the child (etcd, exec'd in place by `ip netns exec`) is killed if the
    bench dies without its finally."""
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL


def etcd_start(ns, d):
    """One etcd 3.4 member in `ns`, clients at ETCD_IP:ETCD_PORT, data in `d`; waits
    (bounded) until it answers `endpoint health`."""
    url = f"http://{ETCD_IP}:{ETCD_PORT}"
    peer = "http://127.0.0.1:2380"
    log = open(os.path.join(d, "etcd.log"), "w")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
    p = subprocess.Popen(["ip", "netns", "exec", ns, "etcd", "--name", "bench", "--data-dir", os.path.join(d, "etcd"),
                          "--listen-client-urls", url, "--advertise-client-urls", url, "--listen-peer-urls", peer,
                          "--initial-advertise-peer-urls", peer, "--initial-cluster", f"bench={peer}",
                          "--logger", "zap", "--log-outputs", "stderr"],
                         stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, preexec_fn=die_with_parent)
    deadline = time.monotonic() + 20
    while True:
        if p.poll() is not None:
            raise RuntimeError(f"etcd exited ({p.returncode}); see {log.name}")
        if nsx(ns, "etcdctl", "--endpoints", url, "--dial-timeout", "1s", "endpoint", "health", check=False,
               capture=True, timeout=10).returncode == 0:
            return p
        if time.monotonic() > deadline:
            raise RuntimeError(f"etcd not healthy within 20 s; see {log.name}")
        time.sleep(0.2)


def vswitch_cluster():
    """The cluster control plane at the scale one plans past this machine: one real
    vswitchd (--workers 1) on an etcd 3.4 store, CLUSTER_HOSTS simulated hosts of
    CLUSTER_EPS endpoints each written to the store by this script; how long until the
    daemon has programmed every remote endpoint, its RSS before and after, and the
    store's write rate.

    Namespaces: <pfx>cm (etcd at 10.211.0.10, and the writer), <pfx>ch (the daemon's
    host: 10.211.0.1 towards the store, uplink up0 as 10.201.0.1/16) and <pfx>cu (the
    underlay: 10.201.0.254/16 and the simulated hosts' VTEPs on up1)."""
    lab = Lab()
    d = tmp = etcd = writer = None
    try:
        tmp = tempfile.mkdtemp(prefix=f"{PFX}-etcd-")
        mg, host, under = lab.ns("cm"), lab.ns("ch"), lab.ns("cu")
        lab.veth(mg, "m0", host, "m1")
        ip("-n", mg, "addr", "add", f"{ETCD_IP}/24", "dev", "m0")
        ip("-n", host, "addr", "add", "10.211.0.1/24", "dev", "m1")
        lab.veth(host, "up0", under, "up1")
        vteps = [f"10.201.{1 + h // 250}.{1 + h % 250}" for h in range(CLUSTER_HOSTS)]
        batch = "".join(f"addr add {a}/16 dev up1\n" for a in ["10.201.0.254", *vteps])
        subprocess.run(["ip", "-n", under, "-batch", "-"], input=batch, text=True, check=True)
        etcd = etcd_start(mg, tmp)
        d = Vswitchd(1, netns=host, extra=["--uplink", "up0", "--uplink-ip", "10.201.0.1/16", "--uplink-gw",
                                           "10.201.0.254", "--cluster-store", f"etcd://{ETCD_IP}:{ETCD_PORT}",
                                           "--node-name", "real", "--cluster-ttl", "30"])
        deadline = time.monotonic() + 20
        while True:
            if d.p.poll() is not None:
                raise RuntimeError(f"vswitchd exited ({d.p.returncode}): {open(d.log.name).read()[-2000:]}")
            r = d.ctl("--format", "json", "cluster", check=False)
            if r.returncode == 0 and json.loads(r.stdout)["store"]["connected"]:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"vswitchd not connected to etcd within 20 s: {r.stdout or r.stderr}")
            time.sleep(0.1)
        d.ctl("network", "create", "-d", "overlay", "--subnet", "10.240.0.0/16", "big")  # room for 10 000
        net_id = json.loads(d.ctl("--format", "json", "network", "inspect", "big").stdout)[0]["Id"]
        time.sleep(1)  # let the daemon settle
        rss_before = vm_rss_kib(d.p.pid)
        total = CLUSTER_HOSTS * CLUSTER_EPS
        here = os.path.dirname(os.path.abspath(__file__))
        writer = subprocess.Popen(["ip", "netns", "exec", mg, "/usr/bin/python3", "-c",
                                   f"import bench; bench.cluster_writer({net_id!r})"],
                                  cwd=here, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started = time.monotonic()
        remote, t2, failure = 0, None, None
        while time.monotonic() - started < CLUSTER_WAIT_S:
            if writer.poll() not in (None, 0):
                failure = f"the writer failed ({writer.returncode}): {writer.stderr.read()[-1000:]}"
                break
            r = d.ctl("--format", "json", "cluster", check=False)
            if r.returncode == 0:
                nets = [n for n in json.loads(r.stdout)["networks"] if n["name"] == "big"]
                remote = nets[0]["remote_endpoints"] if nets else 0
                if remote >= total:
                    t2 = time.monotonic()
                    break
            time.sleep(0.1)
        else:
            failure = f"{remote} of {total} remote endpoints programmed after {CLUSTER_WAIT_S:.0f} s"
        out, err = writer.communicate(timeout=60)
        if writer.returncode != 0 and failure is None:
            failure = f"the writer failed ({writer.returncode}): {err[-1000:]}"
        w = json.loads(out.strip().splitlines()[-1]) if writer.returncode == 0 else None
        fdb_static, t3 = 0, None
        if t2 is not None:
            while time.monotonic() - t2 < 30:
                rows = json.loads(d.ctl("--format", "json", "fdb", "big").stdout)
                fdb_static = sum(1 for row in rows if row.get("static"))
                if fdb_static >= total:
                    t3 = time.monotonic()
                    break
                time.sleep(0.1)
            if t3 is None:
                failure = f"fdb big holds {fdb_static} static rows of {total}, 30 s after the cluster said all"
        time.sleep(1)
        rss_after = vm_rss_kib(d.p.pid)
        errors = [l for l in open(d.log.name).read().splitlines() if " ERROR " in l or " WARN " in l]
        res = {"simulated_hosts": CLUSTER_HOSTS, "endpoints_per_host": CLUSTER_EPS, "remote_endpoints": remote,
               "target_s": CLUSTER_TARGET_S, "failure": failure,
               "rss_mib": {"before": rss_before / 1024, "after": rss_after / 1024},
               "per_remote_endpoint_kib": (rss_after - rss_before) / total, "fdb_static_rows": fdb_static,
               "daemon_log_warnings": len(errors), "daemon_log_first_warnings": errors[:5]}
        if w:
            res.update({"keys_written": w["keys"], "txns": w["txns"], "write_s": w["t1"] - w["t0"],
                        "keys_per_s": w["keys"] / (w["t1"] - w["t0"]), "txns_per_s": w["txns"] / (w["t1"] - w["t0"]),
                        "lease_grants_s": w["leases_s"],
                        "programmed_s": t2 - w["t0"] if t2 else None,
                        "programmed_after_writes_s": t2 - w["t1"] if t2 else None,
                        "fdb_after_writes_s": t3 - w["t1"] if t3 else None})
        res["met"] = failure is None and res.get("programmed_s") is not None and res["programmed_s"] < CLUSTER_TARGET_S
        return res
    finally:
        if writer and writer.poll() is None:
            writer.kill()
            writer.wait()
        if d:
            d.close([])
        if etcd:
            etcd.kill()
            etcd.wait()
        lab.close()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- report


def fmt_pps(x):
    return f"{x / 1e6:.2f} Mpps" if x >= 1e5 else f"{x / 1e3:.1f} kpps"


def fmt_value(row, v):
    """A row's figure in its own unit (the rows mix pps, bits/s, queries/s, connections/s)."""
    if "bits/s" in row["scenario"]:
        return f"{v / 1e9:.2f} Gbit/s"
    if "queries/s" in row["scenario"]:
        return f"{v / 1e3:.1f} k q/s"
    if "connections/s" in row["scenario"]:
        return f"{v:.0f}/s"
    return fmt_pps(v)


def svg_chart(rows, path):
    """One pair of bars per row, each row scaled to its own larger figure (the rows are in
    different units), labelled with the figures and the ratio."""
    w, bar_h, gap, left = 1140, 16, 10, 440
    h = 40 + len(rows) * (2 * bar_h + gap) + 20
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
             '<text x="10" y="20" font-size="14" font-weight="bold">vswitchd (green) vs the kernel, OVS, dnsmasq '
             '(grey), same run; each row to its own scale, higher is better</text>']
    y = 36
    for r in rows:
        label = f'{r["scenario"]} {r["size"]}B' if r["size"] else r["scenario"]
        if r.get("ratio"):
            label += f'  ({r["ratio"]:.2f}x)'
        parts.append(f'<text x="10" y="{y + bar_h + 4}">{label}</text>')
        top = max(r["reference_pps"], r["vswitchd_pps"]) or 1
        for i, (key, color, who) in enumerate((("reference_pps", "#999", r["reference"]), ("vswitchd_pps", "#2a7", "vswitchd"))):
            bw = (w - left - 260) * r[key] / top
            yy = y + i * bar_h
            parts.append(f'<rect x="{left}" y="{yy}" width="{bw:.1f}" height="{bar_h - 2}" fill="{color}"/>')
            parts.append(f'<text x="{left + bw + 4:.1f}" y="{yy + bar_h - 4}">{who}: {fmt_value(r, r[key])}</text>')
        y += 2 * bar_h + gap
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts))


def main():
    if os.geteuid() != 0:
        sys.exit("make bench needs root (namespaces, XDP)")
    for b in ("vswitchd", "vswitchctl", "pktgen"):
        if not os.path.exists(f"{BIN}/{b}"):
            sys.exit(f"{BIN}/{b} is missing: run make build")
    unknown = [g for g in ONLY if g not in GROUPS]
    if unknown:
        sys.exit(f"BENCH_ONLY: unknown group(s) {', '.join(unknown)}; groups: {','.join(GROUPS)}")
    os.makedirs(OUT_DIR, exist_ok=True)
    rows = []
    gen, gens = {}, {}
    if wanted("generators"):
        for size in (64, 1500):
            gen[size] = generator_alone(size)
            print(f"generator alone, {size} B: {fmt_pps(gen[size])}", flush=True)
        gens = {"pktgen af_xdp": userspace_generator("pktgen af_xdp"),
                "pktgen af_packet": userspace_generator("pktgen af_packet")}
        for name, tool in (("trafgen", "trafgen"), ("DPDK testpmd txonly, AF_XDP", "dpdk-testpmd")):
            if shutil.which(tool):
                gens[name] = userspace_generator(name)
        for name, pps in gens.items():
            print(f"userspace generator on one core, 64 B: {name:<28} {fmt_pps(pps)}", flush=True)

    def spread(extra):
        """The trials' range of ratios, for a row measured by `medians`."""
        if len(extra.get("vswitchd_samples", [])) < 2:
            return ""
        lo = min(v / r for v, r in zip(extra["vswitchd_samples"], extra["reference_samples"]) if r)
        hi = max(v / r for v, r in zip(extra["vswitchd_samples"], extra["reference_samples"]) if r)
        return f"  (median of {len(extra['vswitchd_samples'])}; trials {lo:.2f}-{hi:.2f})"

    def add(scenario, size, ref_name, ref, ours, **extra):
        g = gen.get(size)  # measured for the XDP-live generator's sizes only
        bound = g is not None and (ours >= 0.9 * g or ref >= 0.9 * g)
        row = {"scenario": scenario, "size": size, "reference": ref_name, "reference_pps": ref, "vswitchd_pps": ours,
               "ratio": ours / ref if ref else None, **extra, "generator_pps": g, "generator_bound": bound}
        rows.append(row)
        print(f'{scenario:<45} {size:>5} B  {ref_name:<28} {fmt_pps(ref):>12}  vswitchd {fmt_pps(ours):>12}  '
              f'ratio {row["ratio"] or 0:.2f}{"  (generator-bound)" if bound else ""}{spread(extra)}', flush=True)

    def add_rate(scenario, ref_name, ref, ours, **extra):
        """A row in another unit than pps (named in `scenario`, see fmt_value)."""
        row = {"scenario": scenario, "size": 0, "reference": ref_name, "reference_pps": ref, "vswitchd_pps": ours,
               "ratio": ours / ref if ref else None, **extra, "generator_pps": None, "generator_bound": False}
        rows.append(row)
        print(f'{scenario:<58} {ref_name:<28} {fmt_value(row, ref):>12}  vswitchd {fmt_value(row, ours):>12}  '
              f'ratio {row["ratio"] or 0:.2f}{spread(extra)}', flush=True)

    if wanted("l2"):
        # vswitchd as it ships (tc data path: known unicast by bpf_redirect_peer), with
        # -o fastpath=xdp (XDP fast path between AF_XDP endpoints), and with --fast-path
        # off (every frame through the worker: by the endpoint trunk in tc mode, by the
        # endpoints' AF_XDP sockets in xdp mode, the copy-mode forwarder OVS also is).
        for size in (64, 1500):
            refs = [("linux bridge (br_netfilter)", linux_bridge(size, netfilter=True)),
                    ("linux bridge (pure)", linux_bridge(size, netfilter=False))]
            if have_ovs():
                refs.append(("OVS 3 netdev + AF_XDP", ovs(size)))
            for scenario, ours in (("L2, tc fast path (default)", vswitch(size, workers=1)),
                                   ("L2, xdp fast path (-o fastpath=xdp)", vswitch(size, workers=1, mode="xdp")),
                                   ("L2, 1 worker, fast path off", vswitch(size, workers=1, fast=False)),
                                   ("L2, 1 worker, fast path off, -o fastpath=xdp",
                                    vswitch(size, workers=1, fast=False, mode="xdp"))):
                for ref_name, ref in refs:
                    add(scenario, size, ref_name, ref, ours)
        two = vswitch(64, workers=2, fast=False)
        add("L2, 2 workers, fast path off", 64, "linux bridge (pure)", linux_bridge(64, netfilter=False), two)
        # IPv6 UDP between two sandboxes of a dual-stack network, against the same traffic
        # through the bridge (its ip6 netfilter hooks in the br_netfilter reference).
        refs6 = [("linux bridge (br_netfilter)", linux_bridge(V6_SIZE, netfilter=True, ipv6=True)),
                 ("linux bridge (pure)", linux_bridge(V6_SIZE, netfilter=False, ipv6=True))]
        if have_ovs():
            refs6.append(("OVS 3 netdev + AF_XDP", ovs(V6_SIZE, ipv6=True)))
        for scenario, ours in ((f"L2 IPv6 UDP {V6_SIZE} B, tc fast path (default)", vswitch(V6_SIZE, 1, ipv6=True)),
                               (f"L2 IPv6 UDP {V6_SIZE} B, xdp fast path",
                                vswitch(V6_SIZE, 1, mode="xdp", ipv6=True))):
            for ref_name, ref in refs6:
                add(scenario, V6_SIZE, ref_name, ref, ours)

    if wanted("tcp"):
        # iperf3 between two sandboxes: the bridge carries 64 KiB GSO segments end to end,
        # and so does vswitchd's tc data path (bpf_redirect_peer keeps the skb whole);
        # the xdp data path's sandboxes send MTU-sized frames (offloads off: an AF_XDP
        # socket reads complete frames, and XDP on a veth cannot carry GSO).
        for streams in (1, 4):
            sides = [("linux bridge (br_netfilter)", lambda: linux_bridge(0, netfilter=True, tcp=True, streams=streams)),
                     ("linux bridge (pure)", lambda: linux_bridge(0, netfilter=False, tcp=True, streams=streams)),
                     ("tc fast path (default)", lambda: vswitch(0, 1, tcp=True, streams=streams))]
            if streams == 1:
                sides.append(("xdp fast path", lambda: vswitch(0, 1, tcp=True, mode="xdp")))
            figures, samples = medians(*(fn for _, fn in sides))
            measured = [(name, v, s) for (name, _), v, s in zip(sides, figures, samples)]
            for name, v, vs in measured[2:]:
                for ref_name, ref, rs in measured[:2]:
                    add_rate(f"L2 iperf3 TCP, {streams} stream{'s' if streams > 1 else ''}, {name}, bits/s",
                             ref_name, ref, v, reference_samples=rs, vswitchd_samples=vs)

    if wanted("nat"):
        add("NAT (SNAT), 1024 UDP flows", 64, "kernel + nft masquerade", kernel_nat("pps"), vswitch_nat("pps"))
        # Routed UDP through the worker swings by a fifth from one run to the next (where
        # the generator's and the worker's kernel work land): the IPv6 row is a median of
        # interleaved trials, as the TCP rows are.
        (k6, v6), (k6s, v6s) = medians(lambda: kernel_nat("pps6"), lambda: vswitch_nat("pps6"))
        add(f"NAT66 (masquerade), 1024 IPv6 UDP flows, {V6_SIZE} B", V6_SIZE, "kernel + nft ip6 masquerade", k6, v6,
            reference_samples=k6s, vswitchd_samples=v6s)
        for scenario, ref_name, what in (
                ("new TCP connections/s via published port", "kernel + nft dnat", "conn"),
                ("iperf3 TCP through SNAT to the outside, bits/s", "kernel + nft masquerade", "snat-tcp"),
                ("iperf3 TCP via published port 5201, bits/s", "kernel + nft dnat", "pub-tcp")):
            (k, v), (ks, vs) = medians(lambda: kernel_nat(what), lambda: vswitch_nat(what))
            add_rate(scenario, ref_name, k, v, reference_samples=ks, vswitchd_samples=vs)

    if wanted("dns") and shutil.which("dnsperf") and shutil.which("dnsmasq"):
        (kl, kf), (vl, vf) = kernel_dns(), vswitch_dns()
        for what, k, v in (("local names", kl, vl), ("forwarded names", kf, vf)):
            add_rate(f"DNS {what}, queries/s", "dnsmasq", k[0], v[0], reference_latency_us=k[1],
                     vswitchd_latency_us=v[1])
            print(f'{"  average latency":<58} {"dnsmasq":<28} {k[1]:>9.0f} us  vswitchd {v[1]:>9.0f} us', flush=True)

    if wanted("overlay"):
        for size in (64, 1464):
            add("overlay (VXLAN), 2 hosts", size, "kernel vxlan + bridge", kernel_overlay("pps", size),
                vswitch_overlay("pps", size))
        (k, v), (ks, vs) = medians(lambda: kernel_overlay("tcp"), lambda: vswitch_overlay("tcp"))
        add_rate("overlay iperf3 TCP, bits/s", "kernel vxlan + bridge", k, v, reference_samples=ks,
                 vswitchd_samples=vs)

    lat = {"rate_pps": int(LAT_RATE)}
    if wanted("latency"):
        lat_runs = [("linux bridge (br_netfilter)", lambda: linux_bridge(64, True, latency=True)),
                    ("vswitchd, tc fast path (default)", lambda: vswitch(64, 1, latency=True)),
                    ("vswitchd, xdp fast path", lambda: vswitch(64, 1, latency=True, mode="xdp")),
                    ("vswitchd, fast path off", lambda: vswitch(64, 1, latency=True, fast=False))]
        if have_ovs():
            lat_runs.append(("OVS 3 netdev + AF_XDP", lambda: ovs(64, latency=True)))
        for name, fn in lat_runs:
            r = fn()
            l = r.get("latency_ns") or {}
            lat[name] = {"p50_us": l.get("p50", 0) / 1e3, "p99_us": l.get("p99", 0) / 1e3, "loss": r.get("loss")}
            print(f'latency at {LAT_RATE} pps, {name:<34} p50 {lat[name]["p50_us"]:.1f} us  '
                  f'p99 {lat[name]["p99_us"]:.1f} us  loss {lat[name]["loss"]}', flush=True)

    scale = None
    if wanted("scale"):
        scale = vswitch_scale()
        print(f'scale: {scale["per_endpoint_mib"] * 1024:.1f} KiB per idle endpoint; sandbox create '
              f'{scale["create_mean_ms"]:.1f} ms, rm {scale["rm_mean_ms"]:.1f} ms mean ({scale["timed"]})', flush=True)

    cluster = None
    if wanted("cluster") and shutil.which("etcd") and shutil.which("etcdctl"):
        cluster = vswitch_cluster()
        c = cluster
        done = (f'all {c["remote_endpoints"]} programmed {c["programmed_s"]:.2f} s after the first write '
                f'({c["programmed_after_writes_s"]:.2f} s after the last; fdb {c["fdb_static_rows"]} static rows '
                f'{c["fdb_after_writes_s"]:.2f} s after it)') if c["failure"] is None else f'FAILED: {c["failure"]}'
        rate = (f'etcd {c["keys_per_s"] / 1e3:.1f} k keys/s, {c["txns_per_s"]:.0f} txns/s ({c["keys_written"]} keys in '
                f'{c["txns"]} txns, {c["write_s"]:.2f} s)') if "keys_per_s" in c else "etcd writes failed"
        print(f'cluster: {c["simulated_hosts"]} simulated hosts x {c["endpoints_per_host"]} endpoints: {done}; target '
              f'< {c["target_s"]:.0f} s {"met" if c["met"] else "NOT met"}; {rate}; vswitchd RSS '
              f'{c["rss_mib"]["before"]:.1f} -> {c["rss_mib"]["after"]:.1f} MiB', flush=True)
        if c["daemon_log_warnings"]:
            print(f'  vswitchd logged {c["daemon_log_warnings"]} warnings/errors, first: {c["daemon_log_first_warnings"][0]}',
                  flush=True)

    result = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "duration_s": DURATION, "trials": TRIALS,
              "kernel": os.uname().release, "cores": os.cpu_count(), "groups": ONLY or list(GROUPS), "rows": rows,
              "latency": lat, "generators": {"xdp_live_alone_pps": gen, "userspace_one_core_64B_pps": gens},
              "scale": scale, "cluster": cluster}
    # A partial run does not overwrite the full run's results.
    stem = f"{OUT_DIR}/results" + (f"-{'-'.join(ONLY)}" if ONLY else "")
    with open(f"{stem}.json", "w") as f:
        json.dump(result, f, indent=2)
    svg_chart(rows, f"{stem}.svg")
    print(f"wrote {stem}.json and {stem}.svg")


if __name__ == "__main__":
    main()
