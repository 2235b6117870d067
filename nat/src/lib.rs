//! Connection tracking, SNAT/masquerade and DNAT for published ports, for IPv4 and
//! IPv6 (NAT66). Pure: bytes in, decisions out; no I/O, no locks, no threads, so it is
//! unit-tested and fuzzed as is.
//!
//! # Use
//!
//! Each worker owns one [`Nat`]. Packets are IPv4 or IPv6 packets starting at the IP
//! header (the caller keeps the Ethernet header in front), told apart by their version
//! and rewritten in place; one `Nat` serves both families:
//!
//! ```
//! use std::net::{Ipv4Addr, Ipv6Addr};
//! use std::time::Instant;
//! use nat::{DropReason, Nat, NatConfig, PortMapping, Proto, Side, Verdict};
//!
//! let mut nat = Nat::new(NatConfig::default(), Ipv4Addr::new(203, 0, 113, 1)).unwrap();
//! nat.add_port_mapping(PortMapping {
//!     proto: Proto::Tcp,
//!     host_ip: None,
//!     host_port: 8080,
//!     target_ip: Ipv4Addr::new(172, 17, 0, 2).into(),
//!     target_port: 80,
//! })
//! .unwrap();
//! let now = Instant::now(); // once per burst
//! let mut pkt = [0u8; 20]; // not a valid packet: dropped, counted, never a panic
//! assert!(matches!(nat.outbound(&mut pkt, now), Verdict::Drop(_)));
//! let mut pkt6 = [0x60; 40]; // IPv6, but the uplink has no IPv6 address yet
//! assert_eq!(
//!     nat.outbound(&mut pkt6, now),
//!     Verdict::Drop(DropReason::NoExternalAddress)
//! );
//! nat.set_external_ip6(Some("2001:db8:113::1".parse().unwrap()));
//! // The same port published to the container's IPv6 address too.
//! nat.add_port_mapping(PortMapping {
//!     proto: Proto::Tcp,
//!     host_ip: None,
//!     host_port: 8080,
//!     target_ip: "fd00:17::2".parse::<Ipv6Addr>().unwrap().into(),
//!     target_port: 80,
//! })
//! .unwrap();
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
//! - The IPv4 external address is given to [`Nat::new`]; the IPv6 one, which a host
//!   may not have, by [`Nat::set_external_ip6`]. Until then IPv6 packets are dropped
//!   (`NoExternalAddress`, counted). [`Nat::add_external_ip`] adds further addresses
//!   of either family that published ports answer on.
//!
//! # Behaviour
//!
//! The same for both families, each with its own external addresses, sessions and
//! external ports; published ports, limits (`max_sessions` counts both families) and
//! counters are shared.
//!
//! - TCP (RFC 5382): sessions start on a bare SYN; SYN/SYN+ACK/FIN/RST drive a small
//!   state machine; established connections idle out after `tcp_established`
//!   (2 h 4 min), opening and closing ones (also after RST, RFC 7857) after
//!   `tcp_transitory` (4 min).
//! - UDP (RFC 4787): `udp` idle timeout (5 min). ICMP echo (ICMPv4, ICMPv6): keyed by
//!   identifier, which is translated like a port; `icmp` timeout (60 s).
//! - Endpoint-independent mapping: one internal ip:port has one external port for all
//!   destinations; the source port is kept when it is in `port_range` and free.
//!   Filtering is address-and-port dependent: only the contacted remote gets in.
//! - Published ports ([`PortMapping`]) belong to their target's family: an IPv6 target
//!   is reached on the IPv6 external addresses (a host address, if given, must be of
//!   the same family, else `NatError::FamilyMismatch`). A dual-stack container
//!   publishing a port has two mappings, which do not conflict.
//! - ICMP errors (unreachable, time exceeded, parameter problem; ICMPv6 packet too big
//!   too) about a session are translated with the quoted IP and transport headers and
//!   all checksums; the quote may be cut short.
//! - Checksums are updated incrementally (RFC 1624). IPv6 has no header checksum, but
//!   its TCP, UDP and ICMPv6 checksums cover the pseudo-header, so an address rewrite
//!   updates them (ICMPv6 unlike ICMPv4). IPv4 UDP checksum 0 stays 0; IPv6 UDP with
//!   checksum 0, which IPv6 forbids, is dropped (`UdpZeroChecksum`).
//! - TTL and hop limit are the router's: the NAT does not touch them.
//! - At `max_sessions`, the least recently used session is evicted (counted).
//! - Not handled: IP fragments (IPv6: a fragment header), dropped and counted either
//!   way; other IPv6 extension headers (hop-by-hop, routing, destination options, ESP,
//!   AH...) between the fixed header and the transport header are not walked: dropped
//!   outbound (`ExtensionHeader`, counted), `NotOurs` inbound; protocols other than
//!   TCP, UDP and ICMP (dropped outbound, `NotOurs` inbound); TCP sequence checking;
//!   translation between the families (NAT64). The kernel fast path's hooks
//!   ([`Nat::inside_session`], [`Nat::kernel_opened`]) are IPv4 only.
//!
//! # Several workers
//!
//! Give each worker's `Nat` a disjoint `port_range` of the same external address and
//! steer inbound packets by destination port (ICMP: identifier) to the owning worker;
//! outbound, steer by internal source address so one endpoint's mapping stays on one
//! worker (endpoint-independent mapping holds per worker).

mod conntrack;
mod error;
mod family;
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
