//! Finishing TCP/UDP checksums a local sender left to "hardware" (CHECKSUM_PARTIAL): a
//! veth peer with tx checksumming on hands packet sockets frames whose L4 checksum field
//! holds only the pseudo-header seed. Once such a frame leaves the kernel through the
//! switch, nobody else will complete it, so the port does.

#[cfg(test)]
use wire::checksum::sum;
use wire::checksum::{finish, fold, pseudo_header, udp_sent};

use wire::ethernet::{field as eth, ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use wire::ip::{ipv4, IPV4_HLEN, IP_FRAGMENT_MASK, PROTO_TCP, PROTO_UDP};
use wire::{tcp, udp, vlan};

fn be16(f: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*f.get(off)?, *f.get(off + 1)?]))
}

/// Offsets in the fixed IPv6 header and its extension headers (RFC 8200).
mod ipv6 {
    pub const HLEN: usize = 40;
    pub const PAYLOAD_LEN: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    #[cfg(test)]
    pub const SRC: usize = 8;
    #[cfg(test)]
    pub const DST: usize = 24;
    /// Hop-by-hop, routing and destination options: they may precede TCP/UDP.
    pub const EXTENSIONS: [u8; 3] = [0, 43, 60];
    /// In an extension header: the next header, and the length in 8-byte units past
    /// the first 8.
    pub const EXT_NEXT: usize = 0;
    pub const EXT_LEN: usize = 1;
}

/// Where the IP header starts: behind the MACs and any 802.1Q / 802.1ad tags.
fn ip_off(f: &[u8]) -> Option<(usize, u16)> {
    let mut off = eth::ETHERTYPE;
    let mut ethertype = be16(f, off)?;
    while vlan::is_tpid(ethertype) {
        off += vlan::TAG_LEN;
        ethertype = be16(f, off)?;
    }
    Some((off + 2, ethertype))
}

/// Where the L4 header starts, its protocol, and where the IP payload ends.
fn locate_l4(f: &[u8]) -> Option<(usize, u8, usize)> {
    let (off, ethertype) = ip_off(f)?;
    match ethertype {
        ETHERTYPE_IPV4 => {
            let ihl = usize::from(*f.get(off + ipv4::VER_IHL)? & 0x0f) * 4;
            let total = usize::from(be16(f, off + ipv4::TOTAL_LEN)?);
            let frag = be16(f, off + ipv4::FRAG)?;
            // Only whole datagrams carry a partial checksum.
            if ihl < IPV4_HLEN || total < ihl || frag & IP_FRAGMENT_MASK != 0 {
                return None;
            }
            Some((off + ihl, *f.get(off + ipv4::PROTO)?, off + total))
        }
        ETHERTYPE_IPV6 => {
            let end = off + ipv6::HLEN + usize::from(be16(f, off + ipv6::PAYLOAD_LEN)?);
            let mut next = *f.get(off + ipv6::NEXT_HEADER)?;
            let mut l4 = off + ipv6::HLEN;
            while ipv6::EXTENSIONS.contains(&next) {
                let len = (usize::from(*f.get(l4 + ipv6::EXT_LEN)?) + 1) * 8;
                next = *f.get(l4 + ipv6::EXT_NEXT)?;
                l4 += len;
            }
            Some((l4, next, end))
        }
        _ => None,
    }
}

/// Complete the TCP or UDP checksum of an Ethernet frame whose checksum field holds the
/// pseudo-header seed. Returns false (frame untouched) when it is not TCP/UDP over IP or
/// does not parse.
pub fn complete_partial(f: &mut [u8]) -> bool {
    let Some((l4, proto, end)) = locate_l4(f) else {
        return false;
    };
    let field = match proto {
        PROTO_TCP => l4 + tcp::field::CHECKSUM,
        PROTO_UDP => l4 + udp::field::CHECKSUM,
        _ => return false,
    };
    if end > f.len() || field + 2 > end {
        return false;
    }
    let mut csum = finish(wire::checksum::sum(&f[l4..end]));
    if proto == PROTO_UDP {
        csum = udp_sent(csum);
    }
    f[field..field + 2].copy_from_slice(&csum.to_be_bytes());
    true
}

/// Finish the TCP/UDP checksum of an IPv4 frame whose field holds only the pseudo-header
/// seed, as a sender with checksum offload leaves it (CHECKSUM_PARTIAL) when the frame
/// reaches the switch by a socket that cannot say so (AF_XDP has no such flag). A
/// finished checksum is left alone: one that happens to equal the seed is what
/// completing it gives back. True when it finished one.
pub(crate) fn complete_if_partial(f: &mut [u8]) -> bool {
    let Some((l4, proto, end)) = locate_l4(f) else {
        return false;
    };
    let field = match proto {
        PROTO_TCP => l4 + tcp::field::CHECKSUM,
        PROTO_UDP => l4 + udp::field::CHECKSUM,
        _ => return false,
    };
    let Some((ip, ETHERTYPE_IPV4)) = ip_off(f) else {
        return false;
    };
    let (Some(src), Some(dst)) = (
        f.get(ip + ipv4::SRC..ip + ipv4::DST),
        f.get(ip + ipv4::DST..ip + IPV4_HLEN),
    ) else {
        return false;
    };
    let (Ok(src), Ok(dst)) = (<[u8; 4]>::try_from(src), <[u8; 4]>::try_from(dst)) else {
        return false;
    };
    if end > f.len() || field + 2 > end {
        return false;
    }
    let seed = fold(pseudo_header(src, dst, proto, end - l4));
    be16(f, field) == Some(seed) && complete_partial(f)
}

/// Does the frame's TCP/UDP checksum verify? None when it is not TCP/UDP over IP.
#[cfg(test)]
pub fn l4_checksum_ok(f: &[u8]) -> Option<bool> {
    let (l4, proto, end) = locate_l4(f)?;
    if !matches!(proto, PROTO_TCP | PROTO_UDP) || end > f.len() {
        return None;
    }
    let (ip, _) = ip_off(f)?;
    let (src, dst) = match f.get(ip)? >> 4 {
        4 => (
            f.get(ip + ipv4::SRC..ip + ipv4::DST)?,
            f.get(ip + ipv4::DST..ip + IPV4_HLEN)?,
        ),
        _ => (
            f.get(ip + ipv6::SRC..ip + ipv6::DST)?,
            f.get(ip + ipv6::DST..ip + ipv6::HLEN)?,
        ),
    };
    let len = (end - l4) as u32;
    let acc = sum(src) + sum(dst) + u32::from(proto) + len + sum(&f[l4..end]);
    Some(fold(acc) == 0xffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a socket that cannot flag CHECKSUM_PARTIAL (AF_XDP) hands over: only a
    /// pseudo-header seed is finished; a finished checksum is left as it is.
    #[test]
    fn only_a_seed_is_finished() {
        let good = udp4(b"hello");
        let mut f = good.clone();
        assert!(!complete_if_partial(&mut f), "finished already");
        assert_eq!(f, good);
        let seed = fold(pseudo_header([172, 16, 0, 1], [172, 16, 0, 2], 17, 8 + 5));
        f[40..42].copy_from_slice(&seed.to_be_bytes());
        assert!(complete_if_partial(&mut f), "the seed is finished");
        assert_eq!(f, good, "to the checksum the sender would have written");
    }

    /// A UDP/IPv4 frame (172.16.0.1:1234 -> 172.16.0.2:5678, payload "hello") with a
    /// correct checksum, built by hand.
    fn udp4(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00];
        let total = (20 + 8 + payload.len()) as u16;
        f.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0]);
        f[16..18].copy_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&[172, 16, 0, 1, 172, 16, 0, 2]);
        let ipsum = !fold(sum(&f[14..34]));
        f[24..26].copy_from_slice(&ipsum.to_be_bytes());
        let ulen = (8 + payload.len()) as u16;
        f.extend_from_slice(&1234u16.to_be_bytes());
        f.extend_from_slice(&5678u16.to_be_bytes());
        f.extend_from_slice(&ulen.to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(payload);
        let seed = pseudo_seed(&f);
        let csum = !fold(seed + sum(&f[34..]));
        f[40..42].copy_from_slice(&csum.to_be_bytes());
        f
    }

    fn pseudo_seed(f: &[u8]) -> u32 {
        sum(&f[26..34]) + 17 + (f.len() - 34) as u32
    }

    #[test]
    fn completes_udp_from_seed() {
        let good = udp4(b"hello");
        assert_eq!(l4_checksum_ok(&good), Some(true));
        let mut partial = good.clone();
        let seed = fold(pseudo_seed(&good));
        partial[40..42].copy_from_slice(&seed.to_be_bytes());
        assert_eq!(l4_checksum_ok(&partial), Some(false));
        assert!(complete_partial(&mut partial));
        assert_eq!(partial, good);
    }

    #[test]
    fn ignores_ethernet_padding_and_non_ip() {
        let good = udp4(b"hi");
        let mut padded = good.clone();
        let seed = fold(pseudo_seed(&good));
        padded[40..42].copy_from_slice(&seed.to_be_bytes());
        padded.resize(60, 0xaa);
        assert!(complete_partial(&mut padded));
        assert_eq!(&padded[..good.len()], &good[..]);

        let mut arp = vec![0xff; 12];
        arp.extend_from_slice(&[0x08, 0x06]);
        arp.resize(42, 0);
        let before = arp.clone();
        assert!(!complete_partial(&mut arp));
        assert_eq!(arp, before);
        assert!(!complete_partial(&mut [0u8; 5]));
    }
}
