//! The embedded resolver: name tables, query answering, upstream forwarding.
