//! What every vswitch crate needs to know about frames on the wire, in one place below
//! all of them (nat, vxlan, dns, switch and pktgen depend on it, it depends on nothing):
//! the Internet checksum with its incremental update, and the Ethernet header's layout.
//!
//! The protocol crates keep their own typed views of the headers they own (vxlan's
//! VXLAN header, nat's translation tuples); this crate holds the pieces they would
//! otherwise each write again.

pub mod checksum;
pub mod ethernet;
pub mod ip;

pub use checksum::Delta;
pub use ethernet::{Mac, ETH_HLEN};
