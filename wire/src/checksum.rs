//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624), the one
//! implementation in the workspace: IPv4 header, ICMP, UDP and TCP checksums, the
//! translations that touch only the words they rewrite, and the checksums a port
//! finishes for frames a local sender left to "hardware".

/// The one's-complement sum of `data` as big-endian 16-bit words (an odd last byte is
/// padded with zero), folded to 16 bits but not inverted. Sums of pieces add: fold
/// (or [`finish`]) their total.
pub fn sum(data: &[u8]) -> u32 {
    // 64-bit accumulation of 32-bit words: no carry is lost before the final fold, and
    // a 1500-byte payload is summed in a few hundred additions.
    let mut acc: u64 = 0;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    let mut tail = [0u8; 4];
    tail[..rest.len()].copy_from_slice(rest);
    acc += u64::from(u32::from_be_bytes(tail));
    u32::from(fold64(acc))
}

/// Folds a one's-complement accumulator to 16 bits.
pub fn fold(sum: u32) -> u16 {
    fold64(u64::from(sum))
}

fn fold64(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The checksum field's value for an accumulated sum: folded and inverted.
pub fn finish(sum: u32) -> u16 {
    !fold(sum)
}

/// The RFC 1071 checksum of `data` plus a partial sum `extra` (a pseudo-header). Over a
/// buffer whose checksum field is right, it is 0.
pub fn checksum(data: &[u8], extra: u32) -> u16 {
    !fold64(u64::from(sum(data)) + u64::from(extra))
}

/// The IPv4 pseudo-header's sum for a TCP or UDP checksum (RFC 793, RFC 768).
pub fn pseudo_header(src: [u8; 4], dst: [u8; 4], proto: u8, l4_len: usize) -> u32 {
    sum(&src) + sum(&dst) + u32::from(proto) + (l4_len as u32 & 0xffff) + (l4_len as u32 >> 16)
}

/// A UDP checksum as sent: a computed 0 goes out as 0xffff, since 0 means "none" (RFC 768).
pub fn udp_sent(c: u16) -> u16 {
    if c == 0 {
        0xffff
    } else {
        c
    }
}

/// Accumulated changes of 16-bit words, applied to a checksum with RFC 1624 eqn. 3:
/// `HC' = ~(~HC + ~m + m')`. One `Delta` can update several checksums that cover the
/// same rewritten words (the IPv4 header and the TCP pseudo-header share the addresses).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delta(u32);

impl Delta {
    /// Records that a 16-bit word changed from `old` to `new`.
    pub fn word(&mut self, old: u16, new: u16) {
        self.0 = fold_once(fold_once(self.0 + u32::from(!old)) + u32::from(new));
    }

    /// Records that a 32-bit field (an IPv4 address) changed.
    pub fn addr(&mut self, old: [u8; 4], new: [u8; 4]) {
        self.word(
            u16::from_be_bytes([old[0], old[1]]),
            u16::from_be_bytes([new[0], new[1]]),
        );
        self.word(
            u16::from_be_bytes([old[2], old[3]]),
            u16::from_be_bytes([new[2], new[3]]),
        );
    }

    /// Both sets of changes.
    pub fn plus(self, other: Delta) -> Delta {
        Delta(fold_once(self.0 + other.0))
    }

    /// The checksum `check` updated for the recorded changes.
    pub fn apply(self, check: u16) -> u16 {
        !fold(u32::from(!check) + self.0)
    }
}

fn fold_once(v: u32) -> u32 {
    (v & 0xffff) + (v >> 16)
}

/// `check` updated for one 16-bit word changing from `old` to `new` (RFC 1624 eqn. 3).
pub fn adjust(check: u16, old: u16, new: u16) -> u16 {
    let mut d = Delta::default();
    d.word(old, new);
    d.apply(check)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 1071 as written: 16-bit words, folded at the end.
    fn reference(data: &[u8]) -> u16 {
        let mut s: u64 = 0;
        for (i, b) in data.iter().enumerate() {
            s += u64::from(*b) << if i % 2 == 0 { 8 } else { 0 };
        }
        while s >> 16 != 0 {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the sum of 0001 f203 f4f5 f6f7 is ddf2 (checksum 220d).
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&data, 0), 0x220d);
        assert_eq!(checksum(&[0x00, 0x01, 0xf2], 0), !(0x0001u16 + 0xf200));
    }

    #[test]
    fn every_length_matches_the_rfc_as_written() {
        let mut x: u32 = 0x9e37_79b9;
        let data: Vec<u8> = (0..1600)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        for len in 0..200 {
            assert_eq!(checksum(&data[..len], 0), reference(&data[..len]), "{len}");
        }
        assert_eq!(checksum(&data, 0), reference(&data));
        assert_eq!(
            checksum(&[0xff; 1500], 0),
            reference(&[0xff; 1500]),
            "all carries"
        );
        // Pieces at even offsets add up to the whole.
        let (a, b) = data.split_at(602);
        assert_eq!(finish(sum(a) + sum(b)), checksum(&data, 0));
    }

    #[test]
    fn incremental_matches_full_recompute() {
        // An IPv4 header captured on the wire (172.16.5.2 -> 203.0.113.7, UDP).
        let mut h = [
            0x45, 0x00, 0x00, 0x2c, 0x4a, 0xcc, 0x40, 0x00, 0x40, 0x11, 0x02, 0xdb, 172, 16, 5, 2,
            203, 0, 113, 7,
        ];
        assert_eq!(checksum(&h, 0), 0);
        let mut d = Delta::default();
        d.addr([172, 16, 5, 2], [203, 0, 113, 1]);
        let c = d.apply(u16::from_be_bytes([h[10], h[11]]));
        h[12..16].copy_from_slice(&[203, 0, 113, 1]);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(checksum(&h, 0), 0);
        h[10..12].fill(0);
        assert_eq!(checksum(&h, 0), c, "same value as a full recompute");
        // The TTL word: adjust() is one Delta.
        let old = u16::from_be_bytes([h[8], h[9]]);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h[8] -= 1;
        let new = u16::from_be_bytes([h[8], h[9]]);
        let c = adjust(c, old, new);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(checksum(&h, 0), 0);
    }

    #[test]
    fn deltas_compose_and_cancel() {
        let mut a = Delta::default();
        a.word(0x1234, 0xabcd);
        let mut b = Delta::default();
        b.word(0xabcd, 0x1234);
        assert_eq!(a.plus(b).apply(0x5555), 0x5555);
        assert_eq!(Delta::default().apply(0xffff), 0xffff);
    }

    #[test]
    fn udp_zero_goes_out_as_all_ones() {
        assert_eq!(udp_sent(0), 0xffff);
        assert_eq!(udp_sent(0x1234), 0x1234);
        // A UDP datagram 10.0.0.1:1 -> 10.0.0.2:2, "hi": its checksum verifies to 0.
        let mut u = [0, 1, 0, 2, 0, 10, 0, 0, b'h', b'i'];
        let ph = pseudo_header([10, 0, 0, 1], [10, 0, 0, 2], 17, u.len());
        let c = udp_sent(checksum(&u, ph));
        u[6..8].copy_from_slice(&c.to_be_bytes());
        assert_eq!(checksum(&u, ph), 0);
    }
}
