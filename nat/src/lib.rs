//! Connection tracking, SNAT/masquerade and DNAT for published ports. Pure: bytes in, decisions out.
