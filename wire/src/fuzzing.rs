//! The body of the `ndp` fuzz target (`wire/fuzz`), here so the unit tests run it too:
//! whatever the bytes, the IPv6, ICMPv6 and NDP views and `Repr`s do not panic, and a
//! message they accept emits back into one that parses to the same `Repr`.

use std::net::Ipv6Addr;

use crate::icmpv6::{self, NdpRepr, Packet, Repr};
use crate::ipv6::{Ipv6Frame, Ipv6Packet, Ipv6Repr};

/// The longest message tried (the rest of the input is ignored).
const MAX: usize = 1500;

/// Reads `data` as an Ethernet frame and as an IPv6 packet, and as an ICMPv6 message
/// (its checksum filled first so the fuzzer gets past it) between two fixed addresses
/// chosen by the first byte. Returns how many readings `NdpRepr` accepted.
pub fn ndp(data: &[u8]) -> usize {
    let mut accepted = 0;
    if let Some(f) = Ipv6Frame::new(data) {
        let ip = Ipv6Repr::parse(&f.packet());
        assert_eq!(f.payload().len(), ip.payload_len);
        accepted += message(&ip.src, &ip.dst, f.payload());
    }
    if let Ok(p) = Ipv6Packet::new_checked(data) {
        assert!(p.packet().len() <= data.len());
        accepted += message(&p.src(), &p.dst(), p.payload());
    }
    let Some((&sel, rest)) = data.split_first() else {
        return accepted;
    };
    let src = match sel & 3 {
        0 => Ipv6Addr::UNSPECIFIED,
        1 => Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1),
        _ => Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
    };
    let dst = match sel >> 2 & 3 {
        0 => crate::ipv6::solicited_node(&Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2)),
        1 => crate::ipv6::ALL_NODES,
        _ => Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2),
    };
    let n = rest.len().min(MAX);
    let mut buf = [0u8; MAX];
    buf[..n].copy_from_slice(&rest[..n]);
    if let Ok(mut p) = Packet::new_checked(&mut buf[..n]) {
        p.fill_checksum(&src, &dst);
    }
    accepted + message(&src, &dst, &buf[..n])
}

fn message(src: &Ipv6Addr, dst: &Ipv6Addr, m: &[u8]) -> usize {
    let Ok(p) = Packet::new_checked(m) else {
        return 0;
    };
    if let Ok(opts) = p.ndp_options() {
        for o in opts {
            let _ = o;
        }
    }
    let mut out = [0u8; MAX];
    let mut accepted = 0;
    if let Ok(r) = NdpRepr::parse(src, dst, &p) {
        accepted = 1;
        let len = r.buffer_len();
        assert!(len <= m.len());
        r.emit(src, dst, &mut out);
        let again = Packet::new_checked(&out[..len]).expect("a header");
        assert_eq!(NdpRepr::parse(src, dst, &again), Ok(r));
    }
    if let Ok(r) = Repr::parse(src, dst, &p) {
        let len = r.buffer_len();
        assert_eq!(len, m.len());
        r.emit(src, dst, &mut out);
        let again = Packet::new_checked(&out[..len]).expect("a header");
        assert_eq!(Repr::parse(src, dst, &again), Ok(r));
        if !icmpv6::is_error(p.msg_type()) {
            // An error's unused word is written as 0; an echo has none.
            assert_eq!(&out[..len], m, "echo emits back byte for byte");
        }
    }
    accepted
}

#[cfg(test)]
mod tests {
    fn random_bytes(x: &mut u64, n: usize, buf: &mut Vec<u8>) {
        buf.clear();
        for _ in 0..n {
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
            buf.push(*x as u8);
        }
    }

    #[test]
    fn ndp_survives_random_inputs() {
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let mut buf = Vec::new();
        let mut accepted = 0;
        for i in 0..4000 {
            random_bytes(&mut x, i % 200, &mut buf);
            // Bias most inputs toward NDP: a type from 133..=136, code 0, and options
            // with plausible lengths.
            if i % 4 != 0 && buf.len() > 3 {
                buf[1] = 133 + (buf[1] & 3);
                buf[2] = 0;
                let mut at = 1 + [8, 16, 24, 24][usize::from(buf[1] - 133)];
                while at + 1 < buf.len() {
                    buf[at] = [1, 2, 3, 5, 9][usize::from(buf[at]) % 5];
                    buf[at + 1] = if i % 7 == 0 {
                        buf[at + 1] % 3
                    } else {
                        [1, 1, 4][usize::from(buf[at + 1]) % 3]
                    };
                    at += usize::from(buf[at + 1]).max(1) * 8;
                }
                if i % 3 == 0 && buf.len() > 9 {
                    buf[9] &= 0x7f; // a target that is not multicast
                }
            }
            accepted += super::ndp(&buf);
        }
        assert!(accepted > 20, "the bias reaches NdpRepr: {accepted}");
    }
}
