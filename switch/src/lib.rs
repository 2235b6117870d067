//! The vswitch data plane: ports, poll-mode workers, per-network L2 forwarding and the
//! gateway. Control reaches it only through `Engine`.

pub mod port;
