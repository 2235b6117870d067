//! The embedded resolver: per-network name tables, query answering, upstream forwarding.
//! Pure: it takes DNS message bytes and returns bytes or decisions; the switch owns the
//! sockets (the gateway address exists only there) and drives forwarding and timeouts.
//!
//! Message encoding and decoding is `hickory-proto`'s; this crate only decides.

mod counters;
mod inflight;
mod reply;
mod resolver;
mod table;

pub use counters::Counters;
pub use reply::{CLASSIC_UDP_LIMIT, OUR_EDNS_PAYLOAD, TCP_LIMIT, TTL};
pub use resolver::{
    Action, Client, ConfigError, Resolver, ResolverConfig, Transport, DEFAULT_MAX_INFLIGHT,
    DEFAULT_TIMEOUT, MAX_UPSTREAMS,
};
pub use table::{NameError, NameTable, Record};
