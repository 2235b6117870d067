//! VXLAN encapsulation and the tunnel forwarding table (RFC 7348). Pure: bytes in,
//! decisions out; no I/O, no threads, no allocation per frame, so it is unit-tested
//! and fuzzed as is.
//!
//! # Use
//!
//! Each worker owns one [`Overlay`]: its [`Vtep`] (the uplink's MAC and address) and a
//! [`TunnelTable`] per overlay network (VNI).
//!
//! ```
//! use std::net::Ipv4Addr;
//! use std::time::{Duration, Instant};
//! use vxlan::{Decap, Origin, Overlay, Vni, VtepConfig};
//!
//! let local = Ipv4Addr::new(10, 200, 0, 1);
//! let remote = Ipv4Addr::new(10, 200, 0, 2);
//! let vni = Vni::new(42).unwrap();
//! let mut ov = Overlay::new(VtepConfig::new([2, 0, 0, 0, 0, 1], local), 4096, Duration::from_secs(300));
//! ov.add_network(vni, &[remote]);
//! let now = Instant::now(); // once per burst
//!
//! // A broadcast from a local port: replicate to every peer.
//! let inner = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 9, 0x08, 0x06];
//! let peers = ov.table_mut(vni).unwrap().flood_list(Origin::Local, local).to_vec();
//! let mut out = [0u8; 1514];
//! for peer in peers {
//!     let n = ov.send(vni, peer, [2, 0, 0, 0, 0, 2], &inner, &mut out).unwrap();
//!     assert_eq!(n, 50 + inner.len());
//! }
//! // A frame from the uplink that is not VXLAN passes on to the rest of the pipeline.
//! assert!(matches!(ov.receive(&inner, now), Decap::Pass(_)));
//! ```
//!
//! - Encapsulation: outer Ethernet / IPv4 (TTL 64, DF, header checksum) / UDP (to 4789,
//!   source port from a hash of the inner flow, checksum 0 unless configured) / VXLAN
//!   (I flag, VNI). A result over the underlay MTU is refused: the VTEP never fragments.
//! - Decapsulation: [`Decap::Frame`] (VNI, sending VTEP, inner frame slice),
//!   [`Decap::Pass`] (not VXLAN for us: route it), [`Decap::Drop`] (count it).
//! - A frame that arrived by tunnel floods only to local ports: [`Origin::Tunnel`]
//!   gets an empty replication list.
//! - [`VniAllocator`] for the control plane; [`RemoteEntry`] rows for `vswitchctl fdb`.

mod decap;
mod encap;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod overlay;
mod table;
mod vni;
pub mod wire;

#[cfg(test)]
mod tests;

/// An Ethernet address.
pub use ::wire::Mac;

pub use decap::{Decap, Decapsulated, DropReason, PassReason};
pub use encap::{fill_udp_checksum, flow_hash, source_port, PortRange, Vtep, VtepConfig};
pub use error::{EncapError, VniError};
pub use overlay::{Counters, Overlay};
pub use table::{Learned, Origin, RemoteEntry, TunnelTable, DEFAULT_MAX_AGE, DEFAULT_MAX_ENTRIES};
pub use vni::{Vni, VniAllocator};
