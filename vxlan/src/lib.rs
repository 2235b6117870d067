//! VXLAN encapsulation and the tunnel forwarding table (RFC 7348). Pure: bytes in, decisions out.
