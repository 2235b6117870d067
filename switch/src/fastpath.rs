//! The in-kernel fast path for known unicast between AF_XDP veth ports.
//!
//! A frame on a veth port in copy mode costs the worker an skb to build, copy and free
//! on transmit: that, not the switch's own code, bounded L2 forwarding. Once a network
//! has learned both ends of a conversation, the switching decision is a pure table
//! lookup, so each fast-path port runs a program that makes it in the kernel: it looks
//! up the destination MAC in this network's part of a BPF hash map the workers keep,
//! and redirects the frame straight to the egress veth through a devmap. Anything the
//! program is not sure about goes to the port's AF_XDP socket exactly as before.
//!
//! What the program forwards, all of it required:
//! - the destination is unicast and not a VLAN tag;
//! - the source MAC is installed, in this network, on this very port (so learning,
//!   moves and the FDB's bound stay the worker's: a new or moved source goes to the
//!   worker, which learns it and installs it);
//! - the destination MAC is installed in this network on another port.
//!
//! Everything else (broadcast, the gateway's MAC, unknown or moved addresses, ports in
//! capture) reaches the worker. Workers install an entry for a MAC when they see it
//! learned on one of their fast-path ports, remove it when the FDB forgets or moves it,
//! and remove every entry of a port while it is captured or when it goes away. Entries
//! are keyed by network, so isolation between networks holds in the kernel as well.
//!
//! Per-port counters (frames and bytes each way) are per-CPU array slots, summed into
//! the port's counters by `stats`.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::bpf::{self, insn, BpfInsn};
use crate::fdb::Mac;
use crate::{NetId, PortId};

/// Ports with ids below this can use the fast path (array and devmap slots).
pub const MAX_PORTS: u32 = 4096;
/// Installed (network, MAC) entries, for every network together.
const FDB_ENTRIES: u32 = 65536;
const KEY_LEN: usize = 12;
const VALUE_LEN: usize = 8;
/// rx_packets, rx_bytes, tx_packets, tx_bytes.
const STATS_LEN: usize = 32;

const FUNC_MAP_LOOKUP: i32 = 1;
const FUNC_REDIRECT_MAP: i32 = 51;
const FUNC_XDP_GET_BUFF_LEN: i32 = 188;
const XDP_PASS: i32 = 2;
const XDP_REDIRECT: i32 = 4;

/// Frames and bytes the kernel forwarded for one port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FastCounters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
}

/// The maps every fast-path program shares. One per engine.
pub struct FastPath {
    fdb: OwnedFd,
    ports: OwnedFd,
    stats: OwnedFd,
    cpus: usize,
}

impl FastPath {
    pub fn new() -> io::Result<FastPath> {
        let hint = "run as root or with CAP_BPF and CAP_NET_ADMIN";
        let fdb = bpf::map_create(
            bpf::BPF_MAP_TYPE_HASH,
            KEY_LEN as u32,
            VALUE_LEN as u32,
            FDB_ENTRIES,
            "vsw_fast_fdb",
        )
        .map_err(|e| bpf::context(e, "create the fast path's FDB map", hint))?;
        let ports = bpf::map_create(bpf::BPF_MAP_TYPE_DEVMAP, 4, 4, MAX_PORTS, "vsw_fast_ports")
            .map_err(|e| bpf::context(e, "create the fast path's devmap", hint))?;
        let stats = bpf::map_create(
            bpf::BPF_MAP_TYPE_PERCPU_ARRAY,
            4,
            STATS_LEN as u32,
            MAX_PORTS,
            "vsw_fast_stats",
        )
        .map_err(|e| bpf::context(e, "create the fast path's counters", hint))?;
        Ok(FastPath {
            fdb,
            ports,
            stats,
            cpus: bpf::possible_cpus()?,
        })
    }

    /// The program for port `port` of network `net`, punting to the AF_XDP socket in
    /// `xsks` (slot = the receive queue).
    pub fn program(&self, xsks: &OwnedFd, net: NetId, port: PortId) -> Vec<BpfInsn> {
        program(
            xsks.as_raw_fd(),
            self.fdb.as_raw_fd(),
            self.ports.as_raw_fd(),
            self.stats.as_raw_fd(),
            net,
            port,
        )
    }

    /// Make `port` (the veth with `ifindex`) a redirect target with zeroed counters.
    pub fn add_port(&self, port: PortId, ifindex: u32) -> io::Result<()> {
        if port >= MAX_PORTS {
            return Err(io::Error::other(format!(
                "port {port} is past the fast path's {MAX_PORTS} slots"
            )));
        }
        let zero = vec![0u8; STATS_LEN * self.cpus];
        bpf::map_update_bytes(&self.stats, &port.to_ne_bytes(), &zero)
            .map_err(|e| bpf::context(e, "zero the fast path's counters", ""))?;
        bpf::map_update(&self.ports, port, ifindex)
            .map_err(|e| bpf::context(e, "add the port to the fast path's devmap", ""))
    }

    /// `port` is no longer a redirect target (frames for it go to the worker).
    pub fn remove_port(&self, port: PortId) {
        let _ = bpf::map_delete_bytes(&self.ports, &port.to_ne_bytes());
    }

    /// Frames addressed to `mac` in `net` go straight to `port`, and frames from it are
    /// accepted on `port`.
    pub fn install(&self, net: NetId, mac: Mac, port: PortId) -> io::Result<()> {
        let mut value = [0u8; VALUE_LEN];
        value[..4].copy_from_slice(&port.to_ne_bytes());
        bpf::map_update_bytes(&self.fdb, &key(net, mac), &value)
    }

    /// Remove `mac` in `net` if it is still installed on `port` (another worker may
    /// have installed it elsewhere since).
    pub fn remove(&self, net: NetId, mac: Mac, port: PortId) {
        let k = key(net, mac);
        let mut value = [0u8; VALUE_LEN];
        if bpf::map_lookup_bytes(&self.fdb, &k, &mut value).is_ok()
            && value[..4] == port.to_ne_bytes()
        {
            let _ = bpf::map_delete_bytes(&self.fdb, &k);
        }
    }

    /// Whether the kernel forwarded a frame from `mac` since the last call (clearing the
    /// mark); None when the entry is gone or now names another port.
    pub fn take_seen(&self, net: NetId, mac: Mac, port: PortId) -> Option<bool> {
        let k = key(net, mac);
        let mut value = [0u8; VALUE_LEN];
        bpf::map_lookup_bytes(&self.fdb, &k, &mut value).ok()?;
        if value[..4] != port.to_ne_bytes() {
            return None;
        }
        let seen = value[4..] != [0; 4];
        if seen {
            value[4..].fill(0);
            // Fails only if the entry went in between: the next look reinstalls it.
            let _ = bpf::map_update_bytes(&self.fdb, &k, &value);
        }
        Some(seen)
    }

    /// Whether `mac` of `net` is installed on `port`.
    pub fn installed_on(&self, net: NetId, mac: Mac, port: PortId) -> bool {
        let mut value = [0u8; VALUE_LEN];
        bpf::map_lookup_bytes(&self.fdb, &key(net, mac), &mut value).is_ok()
            && value[..4] == port.to_ne_bytes()
    }

    /// What the kernel forwarded for `port`, summed over CPUs.
    pub fn counters(&self, port: PortId) -> io::Result<FastCounters> {
        let mut buf = vec![0u8; STATS_LEN * self.cpus];
        bpf::map_lookup(&self.stats, port, &mut buf)?;
        let mut c = FastCounters::default();
        for cpu in buf.chunks_exact(STATS_LEN) {
            let field = |i: usize| u64::from_ne_bytes(cpu[i * 8..i * 8 + 8].try_into().unwrap());
            c.rx_packets += field(0);
            c.rx_bytes += field(1);
            c.tx_packets += field(2);
            c.tx_bytes += field(3);
        }
        Ok(c)
    }
}

/// The FDB map's key: the network, then the MAC, then two bytes of zero padding.
fn key(net: NetId, mac: Mac) -> [u8; KEY_LEN] {
    let mut k = [0u8; KEY_LEN];
    k[..4].copy_from_slice(&net.to_ne_bytes());
    k[4..10].copy_from_slice(&mac);
    k
}

/// Labels for forward jumps in `program`.
#[derive(Clone, Copy)]
enum Label {
    Punt,
    Tx,
    Done,
    Seen,
}

/// A few helpers to write the program with labels instead of counted offsets.
#[derive(Default)]
struct Asm {
    code: Vec<BpfInsn>,
    fixups: Vec<(usize, Label)>,
    labels: [Option<usize>; 4],
}

impl Asm {
    fn op(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.code.push(insn(code, dst, src, off, imm));
    }
    fn jump(&mut self, code: u8, dst: u8, src: u8, imm: i32, to: Label) {
        self.fixups.push((self.code.len(), to));
        self.op(code, dst, src, 0, imm);
    }
    fn bind(&mut self, l: Label) {
        self.labels[l as usize] = Some(self.code.len());
    }
    fn load_map(&mut self, dst: u8, fd: i32) {
        self.op(0x18, dst, bpf::BPF_PSEUDO_MAP_FD, 0, fd);
        self.op(0, 0, 0, 0, 0);
    }
    /// r2 = fp + off; call bpf_map_lookup_elem(r1 = map, r2)
    fn lookup(&mut self, map: i32, off: i32) {
        self.load_map(1, map);
        self.op(0xbf, 2, 10, 0, 0); // r2 = r10
        self.op(0x07, 2, 0, 0, off); // r2 += off
        self.op(0x85, 0, 0, 0, FUNC_MAP_LOOKUP);
    }
    /// *(u64 *)(r0 + off) += reg (or 1 with reg None)
    fn add_u64(&mut self, off: i16, reg: Option<u8>) {
        self.op(0x79, 1, 0, off, 0); // r1 = *(u64 *)(r0 + off)
        match reg {
            Some(r) => self.op(0x0f, 1, r, 0, 0), // r1 += reg
            None => self.op(0x07, 1, 0, 0, 1),    // r1 += 1
        }
        self.op(0x7b, 0, 1, off, 0); // *(u64 *)(r0 + off) = r1
    }
    fn finish(mut self) -> Vec<BpfInsn> {
        for (at, l) in self.fixups {
            let to = self.labels[l as usize].expect("every label is bound");
            let off = to as i64 - at as i64 - 1;
            let i = &mut self.code[at];
            *i = insn(i.code(), i.dst(), i.src(), off as i16, i.imm());
        }
        self.code
    }
}

/// The fast-path program (r6 = ctx, r7 = egress port, r8 = frame length; the FDB key
/// is built at fp-16: network u32, MAC, u16 zero; the counters' key at fp-20). An FDB
/// value is the port (u32) and a `seen` mark (u32) the program sets on a source.
fn program(xsks: i32, fdb: i32, ports: i32, stats: i32, net: NetId, port: PortId) -> Vec<BpfInsn> {
    use Label::*;
    let mut a = Asm::default();
    let port = port as i32;
    a.op(0xbf, 6, 1, 0, 0); // r6 = ctx
                            // Ethernet header in bounds, destination unicast, no VLAN tag.
    a.op(0x61, 2, 6, 0, 0); // r2 = ctx->data
    a.op(0x61, 3, 6, 4, 0); // r3 = ctx->data_end
    a.op(0xbf, 4, 2, 0, 0); // r4 = r2
    a.op(0x07, 4, 0, 0, 14); // r4 += 14
    a.jump(0x2d, 4, 3, 0, Punt); // if r4 > r3
    a.op(0x71, 5, 2, 0, 0); // r5 = dst[0]
    a.jump(0x45, 5, 0, 1, Punt); // if r5 & 1: group address
    a.op(0x69, 5, 2, 12, 0); // r5 = ethertype (network order)
    a.jump(0x15, 5, 0, 0x0081, Punt); // 802.1Q
    a.jump(0x15, 5, 0, 0xa888, Punt); // 802.1ad
                                      // The source must be installed on this port.
    a.op(0x62, 10, 0, -16, net as i32); // *(u32 *)(fp - 16) = net
    a.op(0x61, 5, 2, 6, 0); // r5 = src[0..4]
    a.op(0x63, 10, 5, -12, 0); // *(u32 *)(fp - 12) = r5
    a.op(0x69, 5, 2, 10, 0); // r5 = src[4..6]
    a.op(0x6b, 10, 5, -8, 0); // *(u16 *)(fp - 8) = r5
    a.op(0x6a, 10, 0, -6, 0); // *(u16 *)(fp - 6) = 0
    a.lookup(fdb, -16);
    a.jump(0x15, 0, 0, 0, Punt); // if !r0
    a.op(0x61, 5, 0, 0, 0); // r5 = value->port
    a.jump(0x55, 5, 0, port, Punt); // if r5 != port
                                    // Mark the source seen, for the worker's aging (a write only when it is not yet).
    a.op(0x61, 5, 0, 4, 0); // r5 = value->seen
    a.jump(0x55, 5, 0, 0, Seen);
    a.op(0x62, 0, 0, 4, 1); // value->seen = 1
    a.bind(Seen);
    // The destination must be installed on another port.
    a.op(0x61, 2, 6, 0, 0); // the call clobbered r2-r5: reload and recheck
    a.op(0x61, 3, 6, 4, 0);
    a.op(0xbf, 4, 2, 0, 0);
    a.op(0x07, 4, 0, 0, 14);
    a.jump(0x2d, 4, 3, 0, Punt);
    a.op(0x61, 5, 2, 0, 0); // r5 = dst[0..4]
    a.op(0x63, 10, 5, -12, 0);
    a.op(0x69, 5, 2, 4, 0); // r5 = dst[4..6]
    a.op(0x6b, 10, 5, -8, 0);
    a.lookup(fdb, -16);
    a.jump(0x15, 0, 0, 0, Punt);
    a.op(0x61, 7, 0, 0, 0); // r7 = value->port
    a.jump(0x15, 7, 0, port, Punt); // same port: the worker drops and counts it
    a.load_map(1, ports);
    a.op(0xbf, 2, 7, 0, 0); // r2 = r7
    a.op(0xb7, 3, 0, 0, 0); // r3 = 0: XDP_ABORTED when the slot is empty
    a.op(0x85, 0, 0, 0, FUNC_REDIRECT_MAP);
    a.jump(0x55, 0, 0, XDP_REDIRECT, Punt); // no such egress: the worker's
                                            // Count: rx on this port, tx on the egress.
    a.op(0xbf, 1, 6, 0, 0);
    a.op(0x85, 0, 0, 0, FUNC_XDP_GET_BUFF_LEN);
    a.op(0xbf, 8, 0, 0, 0); // r8 = length
    a.op(0x62, 10, 0, -20, port); // *(u32 *)(fp - 20) = port
    a.lookup(stats, -20);
    a.jump(0x15, 0, 0, 0, Tx);
    a.add_u64(0, None);
    a.add_u64(8, Some(8));
    a.bind(Tx);
    a.op(0x63, 10, 7, -20, 0); // *(u32 *)(fp - 20) = r7
    a.lookup(stats, -20);
    a.jump(0x15, 0, 0, 0, Done);
    a.add_u64(16, None);
    a.add_u64(24, Some(8));
    a.bind(Done);
    a.op(0xb7, 0, 0, 0, XDP_REDIRECT);
    a.op(0x95, 0, 0, 0, 0);
    // Everything else: the AF_XDP socket, as without the fast path.
    a.bind(Punt);
    a.op(0x61, 2, 6, 16, 0); // r2 = ctx->rx_queue_index
    a.load_map(1, xsks);
    a.op(0xb7, 3, 0, 0, XDP_PASS);
    a.op(0x85, 0, 0, 0, FUNC_REDIRECT_MAP);
    a.op(0x95, 0, 0, 0, 0);
    a.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jumps_land_on_their_labels() {
        let p = program(3, 4, 5, 6, 7, 8);
        let bytes = bpf::insn_bytes(&p);
        let at = |i: usize| &bytes[i * 8..i * 8 + 8];
        // The first bounds check jumps to the punt tail: r2 = ctx->rx_queue_index.
        let first = at(5);
        assert_eq!(first[0], 0x2d);
        let off = i16::from_le_bytes([first[2], first[3]]) as usize;
        assert_eq!(at(5 + 1 + off)[..4], [0x61, 0x62, 16, 0]);
        // The program ends with the punt's call and exit.
        assert_eq!(at(p.len() - 1)[0], 0x95);
        assert_eq!(at(p.len() - 2)[..1], [0x85]);
        assert_eq!(at(p.len() - 2)[4], FUNC_REDIRECT_MAP as u8);
    }

    const A: Mac = [2, 0, 0, 0, 0, 0xa];
    const B: Mac = [2, 0, 0, 0, 0, 0xb];

    fn frame(dst: Mac, src: Mac, ethertype: [u8; 2]) -> Vec<u8> {
        let mut f = vec![0u8; 64];
        f[..6].copy_from_slice(&dst);
        f[6..12].copy_from_slice(&src);
        f[12..14].copy_from_slice(&ethertype);
        f
    }

    /// The program, through the kernel's verifier, run over frames against real maps:
    /// it forwards (XDP_REDIRECT) only known unicast from an installed source, and
    /// counts what it forwards. Needs root (BPF), as the e2e tests do.
    #[test]
    fn forwards_only_known_unicast_from_its_own_sources() {
        let fp = FastPath::new().expect("create the fast path's maps (root?)");
        let xsks = bpf::map_create(bpf::BPF_MAP_TYPE_XSKMAP, 4, 4, 1, "t_xsks").unwrap();
        let (net, port, other) = (7, 1, 2);
        let prog = bpf::prog_load_xdp(&fp.program(&xsks, net, port), "t_fast")
            .expect("the verifier accepts the program");
        let run = |f: &[u8]| bpf::prog_test_run(&prog, f).expect("test run");
        let ip = [0x08, 0x00];
        let (pass, redirect) = (XDP_PASS as u32, XDP_REDIRECT as u32);

        assert_eq!(
            run(&frame(B, A, ip)),
            pass,
            "nothing installed: the worker's"
        );
        fp.install(net, A, port).unwrap();
        assert_eq!(run(&frame(B, A, ip)), pass, "unknown destination");
        fp.install(net, B, other).unwrap();
        assert_eq!(
            run(&frame(B, A, ip)),
            pass,
            "no devmap slot for the egress yet"
        );
        fp.add_port(port, 1).unwrap();
        fp.add_port(other, 1).unwrap();
        assert_eq!(
            run(&frame(B, A, ip)),
            redirect,
            "known unicast is forwarded"
        );
        assert_eq!(run(&frame([0xff; 6], A, ip)), pass, "broadcast");
        assert_eq!(run(&frame(B, A, [0x81, 0x00])), pass, "VLAN tag");
        assert_eq!(
            run(&frame(A, B, ip)),
            pass,
            "source installed on another port"
        );
        assert_eq!(run(&frame(A, A, ip)), pass, "destination on the same port");
        fp.install(net + 1, [2, 0, 0, 0, 0, 0xc], other).unwrap();
        assert_eq!(
            run(&frame([2, 0, 0, 0, 0, 0xc], A, ip)),
            pass,
            "a MAC of another network"
        );

        assert_eq!(
            fp.take_seen(net, A, port),
            Some(true),
            "A was seen as a source"
        );
        assert_eq!(
            fp.take_seen(net, A, port),
            Some(false),
            "and the mark was cleared"
        );
        assert_eq!(fp.take_seen(net, A, other), None, "not on that port");
        let rx = fp.counters(port).unwrap();
        let tx = fp.counters(other).unwrap();
        assert_eq!((rx.rx_packets, rx.rx_bytes, rx.tx_packets), (1, 64, 0));
        assert_eq!((tx.tx_packets, tx.tx_bytes, tx.rx_packets), (1, 64, 0));

        fp.remove(net, B, port); // not B's port: stays
        assert_eq!(run(&frame(B, A, ip)), redirect);
        fp.remove(net, B, other);
        assert_eq!(run(&frame(B, A, ip)), pass, "removed");
        fp.install(net, B, other).unwrap();
        fp.remove_port(other);
        assert_eq!(run(&frame(B, A, ip)), pass, "egress left the devmap");
    }

    #[test]
    fn key_layout() {
        let k = key(0x0102_0304, [2, 0, 0, 0, 0, 9]);
        assert_eq!(&k[..4], &0x0102_0304u32.to_ne_bytes());
        assert_eq!(&k[4..], &[2, 0, 0, 0, 0, 9, 0, 0]);
    }
}

/// The fast path in a real engine with two workers: AF_XDP ports on veths in a lab
/// namespace, frames from AF_PACKET sockets on the far ends.
#[cfg(test)]
mod engine_tests {
    use crate::engine::{Engine, EngineConfig};
    use crate::fdb::Mac;
    use crate::port::af_xdp::XdpPort;
    use crate::port::lab::{Netns, RawSock};
    use crate::{NetConfig, PortId};
    use std::time::{Duration, Instant};

    const A: Mac = [2, 0, 0, 0, 0, 0xa];
    const B: Mac = [2, 0, 0, 0, 0, 0xb];
    const C: Mac = [2, 0, 0, 0, 0, 0xc];

    fn frame(dst: Mac, src: Mac, seq: u8) -> Vec<u8> {
        let mut f = dst.to_vec();
        f.extend(src);
        f.extend([0x88, 0xb5, seq]);
        f.resize(60, seq);
        f
    }

    /// Whether `sock` receives `want` within a second (other frames are skipped).
    fn gets(sock: &RawSock, want: &[u8]) -> bool {
        let deadline = Instant::now() + Duration::from_secs(1);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match sock.recv(left).expect("recv") {
                Some(f) if f == want => return true,
                Some(_) => continue,
                None => return false,
            }
        }
        false
    }

    /// Frames from `src` on `from` reach `to` (one every 5 ms), and within 20 of them
    /// the kernel forwards them rather than a worker (the ingress port's fast-path count
    /// moves): well inside the workers' once-a-second sync, so a takeover that only the
    /// sync would bring about fails.
    fn until_fast(e: &Engine, from: (&RawSock, PortId), to: &RawSock, dst: Mac, src: Mac) {
        let fast = |id| {
            e.stats()
                .ports
                .iter()
                .find(|p| p.info.id == id)
                .map(|p| p.counters.fast_path_rx_packets)
                .expect("port")
        };
        let before = fast(from.1);
        for seq in 0..20u8 {
            let f = frame(dst, src, seq);
            from.0.send(&f).expect("send");
            assert!(gets(to, &f), "frame {seq} from {src:x?} to {dst:x?} lost");
            if fast(from.1) > before {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("the kernel never took over {src:x?} -> {dst:x?}");
    }

    #[test]
    fn follows_a_mac_across_workers_and_back() {
        let ns = Netns::new();
        for i in 0..3 {
            let (s, p) = (format!("s{i}"), format!("p{i}"));
            ns.ip(&["link", "add", &s, "type", "veth", "peer", "name", &p]);
            ns.ip(&["link", "set", &s, "up"]);
            ns.ip(&["link", "set", &p, "up"]);
            // The far end takes frames the fast path redirects to it (NAPI).
            ns.exec(&["ethtool", "-K", &p, "gro", "on"]);
        }
        ns.run(|| {
            let mut e = Engine::start(EngineConfig {
                workers: 2,
                pin: false,
                ..Default::default()
            })
            .expect("engine");
            e.add_network(NetConfig {
                id: 7,
                ..Default::default()
            })
            .expect("network");
            let ids: Vec<PortId> = (0..3)
                .map(|i| {
                    let port = XdpPort::open(&format!("s{i}")).expect("AF_XDP port");
                    e.add_port_with(7, Box::new(port), true).expect("port")
                })
                .collect();
            let ports = e.ports();
            assert!(ports.iter().all(|p| p.fast_path), "{ports:?}");
            assert_ne!(
                ports[0].worker, ports[1].worker,
                "ports 0 and 1 on two workers"
            );
            e.barrier().expect("barrier");
            let far: Vec<RawSock> = (0..3)
                .map(|i| RawSock::open(&format!("p{i}")).expect("raw socket"))
                .collect();

            // A behind port 0 (worker 0), B behind port 1 (worker 1), C behind port 2.
            for (i, mac) in [A, B, C].into_iter().enumerate() {
                far[i].send(&frame([0xff; 6], mac, 0)).expect("send");
            }
            std::thread::sleep(Duration::from_millis(100));
            until_fast(&e, (&far[2], ids[2]), &far[0], A, C);
            until_fast(&e, (&far[0], ids[0]), &far[1], B, A);

            // A moves to port 1 (the other worker) and speaks there: frames for it follow.
            until_fast(&e, (&far[1], ids[1]), &far[2], C, A);
            until_fast(&e, (&far[2], ids[2]), &far[1], A, C);
            // And back to port 0: worker 0 must install it again (it had let it go).
            until_fast(&e, (&far[0], ids[0]), &far[2], C, A);
            until_fast(&e, (&far[2], ids[2]), &far[0], A, C);
            // Entries the sync might race away come back within its second.
            std::thread::sleep(Duration::from_millis(1500));
            until_fast(&e, (&far[2], ids[2]), &far[0], A, C);
        });
    }
}
