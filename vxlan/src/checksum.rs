//! The Internet checksum (RFC 1071): the outer IPv4 header's, and the outer UDP
//! checksum when a peer sends one (or when asked to send one).

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

/// The checksum of `data` plus a partial sum `extra` (a pseudo-header). A buffer whose
/// checksum field is correct yields 0.
pub fn checksum(data: &[u8], extra: u32) -> u16 {
    let mut s = fold_once(sum(data)) + fold_once(extra);
    while s >> 16 != 0 {
        s = fold_once(s);
    }
    !(s as u16)
}

/// The IPv4 pseudo-header sum for a UDP checksum.
pub fn udp_pseudo_header(src: [u8; 4], dst: [u8; 4], udp_len: usize) -> u32 {
    sum(&src) + sum(&dst) + 17 + (udp_len as u32 & 0xffff) + (udp_len as u32 >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the sum of 0001 f203 f4f5 f6f7 is ddf2 (checksum 220d).
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7], 0),
            0x220d
        );
    }
}
