//! The embedded resolver: per-network name tables, query answering, upstream forwarding.
//! Pure: it takes DNS message bytes and returns bytes or decisions; the switch owns the
//! sockets (the gateway address exists only there) and drives forwarding and timeouts.
//!
//! Message encoding and decoding is `hickory-proto`'s; this crate only decides.
//!
//! How a worker drives it (the sockets are the switch's):
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Instant;
//! use dns::{Action, Client, NameTable, Record, Resolver, ResolverConfig, Transport};
//!
//! let mut r = Resolver::new(ResolverConfig {
//!     upstreams: vec!["198.51.100.53:53".parse().unwrap()],
//!     ..Default::default()
//! })
//! .unwrap();
//! // From the control plane, whenever network 1's endpoints change:
//! let table = NameTable::new(&[Record {
//!     name: "web".into(),
//!     aliases: vec!["frontend".into()],
//!     ipv4: Some("172.18.0.2".parse().unwrap()),
//!     ipv6: None,
//! }])
//! .unwrap();
//! r.set_network(1, Arc::new(table));
//! // Network 2 is internal: its own names only, nothing forwarded.
//! r.set_internal(2, true);
//!
//! // A UDP datagram to gateway:53 arrived on network 1:
//! # let datagram: &[u8] = &[0u8; 4];
//! let client = Client { net: 1, addr: "172.18.0.3:40000".parse().unwrap(), transport: Transport::Udp };
//! match r.handle_query(client, datagram, Instant::now()) {
//!     Action::Answer { client, bytes } => { /* send bytes to client from gateway:53 */ }
//!     Action::Forward { to, transport, bytes, local_port } => { /* send to the upstream
//!         from local_port; its reply, and the local port it came to, go to
//!         r.handle_upstream_reply(to, local_port, reply, now): an Action too */ }
//!     Action::Drop => {}
//! }
//! // Between bursts (and before sleeping no longer than r.next_deadline()):
//! for action in r.poll_timeouts(Instant::now()) { /* same */ }
//! ```

mod counters;
mod inflight;
mod reply;
mod resolver;
mod table;

pub use counters::{Counters, Latency};
pub use reply::{CLASSIC_UDP_LIMIT, FRAME_UDP_PAYLOAD, OUR_EDNS_PAYLOAD, TCP_LIMIT, TTL};
pub use resolver::{
    Action, Client, ConfigError, Resolver, ResolverConfig, Transport, DEFAULT_MAX_INFLIGHT,
    DEFAULT_SOURCE_PORTS, DEFAULT_TIMEOUT, MAX_UPSTREAMS,
};
pub use table::{NameError, NameTable, Record};
