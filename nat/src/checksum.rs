//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624), so that a
//! translation touches only the words it rewrites instead of summing the whole packet.

/// Folds a 32-bit one's-complement accumulator to 16 bits.
fn fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The one's-complement sum of `data` (odd length padded with a zero byte), unfolded.
pub fn sum(data: &[u8]) -> u32 {
    let mut acc: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc = fold_once(acc + u32::from(u16::from_be_bytes([c[0], c[1]])));
    }
    if let [b] = chunks.remainder() {
        acc = fold_once(acc + (u32::from(*b) << 8));
    }
    acc
}

fn fold_once(v: u32) -> u32 {
    (v & 0xffff) + (v >> 16)
}

/// The full RFC 1071 checksum of `data` plus a partial sum `extra` (e.g. a pseudo-header).
/// A buffer whose checksum field is correct yields 0.
pub fn checksum(data: &[u8], extra: u32) -> u16 {
    !fold(fold_once(sum(data)) + fold_once(extra))
}

/// The IPv4 pseudo-header sum for TCP/UDP checksums.
pub fn pseudo_header(src: [u8; 4], dst: [u8; 4], proto: u8, l4_len: usize) -> u32 {
    sum(&src) + sum(&dst) + u32::from(proto) + (l4_len as u32 & 0xffff) + (l4_len as u32 >> 16)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the sum of 0001 f203 f4f5 f6f7 is ddf2 (checksum 220d).
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&data, 0), 0x220d);
        assert_eq!(checksum(&[0x00, 0x01, 0xf2], 0), !(0x0001u16 + 0xf200));
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
}
