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
/// The shortest frame Ethernet carries (without the FCS): shorter ones are padded.
pub const MIN_FRAME: usize = 60;

header! {
    /// A view of an Ethernet II frame, at least a header long.
    Frame, min: ETH_HLEN;
    /// Offsets in the Ethernet header.
    mod field {
        DST = 0 => dst: Mac, set_dst;
        SRC = 6 => src: Mac, set_src;
        /// Both MACs: what stays in front when a tag is pushed or popped.
        MACS_END = 12;
        ETHERTYPE = super::ETHERTYPE_AT => ethertype: u16, set_ethertype;
        PAYLOAD = super::ETH_HLEN;
    }
}

impl<T: AsRef<[u8]>> Frame<T> {
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

/// What an Ethernet header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr {
    pub src: Mac,
    pub dst: Mac,
    pub ethertype: u16,
}

impl Repr {
    pub fn parse<T: AsRef<[u8]>>(f: &Frame<T>) -> Repr {
        Repr {
            src: f.src(),
            dst: f.dst(),
            ethertype: f.ethertype(),
        }
    }

    /// Writes the header; the payload is the caller's.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, f: &mut Frame<T>) {
        f.set_dst(self.dst);
        f.set_src(self.src);
        f.set_ethertype(self.ethertype);
    }

    /// Writes the header at the start of `buf`, which must hold one.
    #[inline]
    pub fn emit_into(&self, buf: &mut [u8]) {
        let mut f = Frame {
            buffer: &mut buf[..ETH_HLEN],
        };
        self.emit(&mut f);
    }
}

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

        let f = Frame::new_checked(&arp[..]).expect("a header");
        let r = Repr::parse(&f);
        assert_eq!(
            r,
            Repr {
                src: [0x02, 0x42, 0xac, 0x12, 0x00, 0x02],
                dst: BROADCAST,
                ethertype: ETHERTYPE_ARP,
            }
        );
        assert!(f.payload().is_empty());
        let mut out = [0u8; ETH_HLEN];
        r.emit_into(&mut out);
        assert_eq!(out, arp, "emit mirrors parse");
        assert_eq!(Frame::new_checked(&arp[..13]), Err(crate::Error::Truncated));
    }
}
