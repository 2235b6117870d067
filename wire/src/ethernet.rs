//! The Ethernet II header (IEEE 802.3): destination and source MAC, EtherType.

/// A MAC address as it stands in a frame.
pub type Mac = [u8; 6];

/// The Ethernet header: two MACs and the EtherType.
pub const ETH_HLEN: usize = 14;
/// Where the EtherType (or an 802.1Q/802.1ad TPID) stands.
pub const ETHERTYPE_AT: usize = 12;

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// 802.1Q C-VLAN tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// 802.1ad S-VLAN tag.
pub const ETHERTYPE_QINQ: u16 = 0x88a8;

pub const BROADCAST: Mac = [0xff; 6];

/// The EtherType of `frame` (the first one, before any tag), if it has a header.
pub fn ethertype(frame: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([
        *frame.get(ETHERTYPE_AT)?,
        *frame.get(ETHERTYPE_AT + 1)?,
    ]))
}

/// Whether `mac` is a group (multicast or broadcast) address: the I/G bit.
pub fn is_group(mac: &Mac) -> bool {
    mac[0] & 1 != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields() {
        let arp = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x42, 0xac, 0x12, 0x00, 0x02, 0x08, 0x06,
        ];
        assert_eq!(ethertype(&arp), Some(ETHERTYPE_ARP));
        assert_eq!(ethertype(&arp[..13]), None);
        assert!(is_group(&BROADCAST));
        assert!(!is_group(&[0x02, 0x42, 0xac, 0x12, 0, 2]));
        assert!(is_group(&[0x01, 0x00, 0x5e, 0, 0, 1]));
    }
}
