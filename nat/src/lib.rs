//! Connection tracking, SNAT/masquerade and DNAT for published ports. Pure: bytes in,
//! decisions out; no I/O, no locks, no threads, so it is unit-tested and fuzzed as is.
//!
//! # Use
//!
//! Each worker owns one [`Nat`]. Packets are IPv4 packets starting at the IP header
//! (the caller keeps the Ethernet header in front), rewritten in place:
//!
//! ```
//! use std::net::Ipv4Addr;
//! use std::time::Instant;
//! use nat::{Nat, NatConfig, PortMapping, Proto, Side, Verdict};
//!
//! let mut nat = Nat::new(NatConfig::default(), Ipv4Addr::new(203, 0, 113, 1)).unwrap();
//! nat.add_port_mapping(PortMapping {
//!     proto: Proto::Tcp,
//!     host_ip: None,
//!     host_port: 8080,
//!     target_ip: Ipv4Addr::new(172, 17, 0, 2),
//!     target_port: 80,
//! })
//! .unwrap();
//! let now = Instant::now(); // once per burst
//! let mut pkt = [0u8; 20]; // not a valid packet: dropped, counted, never a panic
//! assert!(matches!(nat.outbound(&mut pkt, now), Verdict::Drop(_)));
//! ```
//!
//! - [`Nat::outbound`]: a container's packet routed by the gateway towards a
//!   non-container address, *including the switch's external addresses* (hairpin).
//! - [`Nat::inbound`]: a packet from the uplink addressed to an external address.
//! - [`Verdict::Translated`] says where the rewritten packet goes: `Side::Outside` (the
//!   uplink) or `Side::Inside` (route by the new destination to a container; hairpin
//!   packets come back inside, their source rewritten to the external address so the
//!   target's replies return through the switch and are translated back).
//! - [`Nat::expire`] every second or so between bursts; [`Nat::sessions`] and
//!   [`Nat::counters`] for `vswitchctl conntrack` / `stats`.
//!
//! # Behaviour
//!
//! - TCP (RFC 5382): sessions start on a bare SYN; SYN/SYN+ACK/FIN/RST drive a small
//!   state machine; established connections idle out after `tcp_established`
//!   (2 h 4 min), opening and closing ones (also after RST, RFC 7857) after
//!   `tcp_transitory` (4 min).
//! - UDP (RFC 4787): `udp` idle timeout (5 min). ICMP echo: keyed by identifier, which
//!   is translated like a port; `icmp` timeout (60 s).
//! - Endpoint-independent mapping: one internal ip:port has one external port for all
//!   destinations; the source port is kept when it is in `port_range` and free.
//!   Filtering is address-and-port dependent: only the contacted remote gets in.
//! - ICMP errors (unreachable, time exceeded, parameter problem) about a session are
//!   translated with the quoted IP and transport headers and all checksums.
//! - Checksums are updated incrementally (RFC 1624); UDP checksum 0 stays 0.
//! - At `max_sessions`, the least recently used session is evicted (counted).
//! - Not handled: IP fragments (dropped, counted), IPv6, protocols other than TCP,
//!   UDP and ICMP (dropped outbound, `NotOurs` inbound), TCP sequence checking.
//!
//! # Several workers
//!
//! Give each worker's `Nat` a disjoint `port_range` of the same external address and
//! steer inbound packets by destination port (ICMP: identifier) to the owning worker;
//! outbound, steer by internal source address so one endpoint's mapping stays on one
//! worker (endpoint-independent mapping holds per worker).

mod conntrack;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod nat;
mod ports;
mod published;
mod wire;

pub use conntrack::{Kind, Side, TcpState};
pub use error::NatError;
pub use nat::{
    DropReason, FlowTuple, Nat, NatConfig, NatCounters, SessionRow, SessionState, Verdict,
};
pub use ports::PortRange;
pub use published::PortMapping;
pub use wire::Proto;
