//! One 802.1Q (C-VLAN) or 802.1ad (S-VLAN) tag behind the MACs: TPID, then a TCI of
//! priority (PCP), drop eligibility (DEI) and VLAN ID, then the inner EtherType.

use crate::ethernet::{field as eth, ETHERTYPE_QINQ, ETHERTYPE_VLAN};
use crate::{be16, put16, Error};

/// The tag's length: TPID and TCI.
pub const TAG_LEN: usize = 4;
/// MACs, one tag and the inner EtherType.
pub const TAGGED_HLEN: usize = eth::MACS_END + TAG_LEN + 2;

const PCP_SHIFT: u16 = 13;
const DEI: u16 = 0x1000;
const VID_MASK: u16 = 0x0fff;

/// Whether `ethertype` is a tag's TPID (802.1Q or 802.1ad).
#[inline]
pub fn is_tpid(ethertype: u16) -> bool {
    ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ
}

header! {
    /// A view of a frame whose EtherType is a TPID, long enough for the tag and the inner
    /// EtherType.
    Tagged, min: TAGGED_HLEN, check: |b| match is_tpid(be16(b, field::TPID)) {
        true => Ok(()),
        false => Err(Error::Malformed),
    };
    /// Offsets in a tagged frame, from its start.
    mod field {
        TPID = super::eth::ETHERTYPE => tpid: u16, set_tpid;
        /// The whole tag control information word.
        TCI = TPID + 2 => tci: u16, set_tci;
        INNER_ETHERTYPE = TCI + 2 => inner_ethertype: u16, set_inner_ethertype;
        PAYLOAD = super::TAGGED_HLEN;
    }
}

impl<T: AsRef<[u8]>> Tagged<T> {
    #[inline]
    pub fn pcp(&self) -> u8 {
        (self.tci() >> PCP_SHIFT) as u8
    }
    #[inline]
    pub fn dei(&self) -> bool {
        self.tci() & DEI != 0
    }
    #[inline]
    pub fn vid(&self) -> u16 {
        self.tci() & VID_MASK
    }
    /// What follows the inner EtherType.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<'a> Tagged<&'a [u8]> {
    /// What follows the inner EtherType, for as long as the buffer lives.
    #[inline]
    pub fn into_payload(self) -> &'a [u8] {
        &self.buffer[field::PAYLOAD..]
    }
}

/// What a tag says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TagRepr {
    pub tpid: u16,
    pub pcp: u8,
    pub dei: bool,
    pub vid: u16,
}

impl TagRepr {
    /// A tag from its TPID and whole TCI word (for a TCI used as one number, as the
    /// trunk does).
    #[inline]
    pub fn from_tci(tpid: u16, tci: u16) -> TagRepr {
        TagRepr {
            tpid,
            pcp: (tci >> PCP_SHIFT) as u8,
            dei: tci & DEI != 0,
            vid: tci & VID_MASK,
        }
    }

    #[inline]
    pub fn tci(&self) -> u16 {
        (u16::from(self.pcp & 0x7) << PCP_SHIFT)
            | if self.dei { DEI } else { 0 }
            | (self.vid & VID_MASK)
    }

    pub fn parse<T: AsRef<[u8]>>(t: &Tagged<T>) -> TagRepr {
        TagRepr::from_tci(t.tpid(), t.tci())
    }

    /// Writes TPID and TCI; the inner EtherType is the frame's.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, t: &mut Tagged<T>) {
        t.set_tpid(self.tpid);
        t.set_tci(self.tci());
    }
}

/// Copies `frame` into `out` with `tag` inserted behind the MACs; the new length, or
/// None when `frame` is shorter than the MACs or `out` is too short.
#[inline]
pub fn push_tag(frame: &[u8], tag: TagRepr, out: &mut [u8]) -> Option<usize> {
    let len = frame.len() + TAG_LEN;
    if frame.len() < eth::MACS_END || out.len() < len {
        return None;
    }
    let macs = eth::MACS_END;
    out[..macs].copy_from_slice(&frame[..macs]);
    put16(out, field::TPID, tag.tpid);
    put16(out, field::TCI, tag.tci());
    out[macs + TAG_LEN..len].copy_from_slice(&frame[macs..]);
    Some(len)
}

/// Copies the tagged frame `t` into `out` without its tag; the new length, or None when
/// `out` is too short.
#[inline]
pub fn pop_tag<T: AsRef<[u8]>>(t: &Tagged<T>, out: &mut [u8]) -> Option<usize> {
    let frame = t.buffer.as_ref();
    let len = frame.len() - TAG_LEN;
    if out.len() < len {
        return None;
    }
    let macs = eth::MACS_END;
    out[..macs].copy_from_slice(&frame[..macs]);
    out[macs..len].copy_from_slice(&frame[macs + TAG_LEN..]);
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ethernet::ETHERTYPE_ARP;

    /// The start of an ARP request, plain and with an 802.1Q tag: VLAN 100, PCP 5.
    const PLAIN: [u8; 16] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x42, 0xac, 0x12, 0x00, 0x02, 0x08, 0x06, 0x00,
        0x01,
    ];
    const TAGGED: [u8; 20] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x42, 0xac, 0x12, 0x00, 0x02, 0x81, 0x00, 0xa0,
        0x64, 0x08, 0x06, 0x00, 0x01,
    ];

    #[test]
    fn reads_the_tag_by_name() {
        let t = Tagged::new_checked(&TAGGED[..]).expect("tagged");
        assert_eq!(
            (t.tpid(), t.pcp(), t.dei(), t.vid()),
            (ETHERTYPE_VLAN, 5, false, 100)
        );
        assert_eq!(t.inner_ethertype(), ETHERTYPE_ARP);
        assert_eq!(t.payload(), &[0x00, 0x01]);
        assert_eq!(t.into_payload(), &[0x00, 0x01]);
        let r = TagRepr::parse(&t);
        assert_eq!(r.tci(), 0xa064);
        assert_eq!(TagRepr::from_tci(ETHERTYPE_QINQ, 0x1102).tci(), 0x1102);
        assert!(TagRepr::from_tci(ETHERTYPE_QINQ, 0x1102).dei);
    }

    #[test]
    fn push_and_pop_are_inverse_byte_for_byte() {
        let tag = TagRepr {
            tpid: ETHERTYPE_VLAN,
            pcp: 5,
            dei: false,
            vid: 100,
        };
        let mut out = [0u8; 64];
        let n = push_tag(&PLAIN, tag, &mut out).expect("fits");
        assert_eq!(&out[..n], &TAGGED);
        let t = Tagged::new_checked(&TAGGED[..]).expect("tagged");
        let n = pop_tag(&t, &mut out).expect("fits");
        assert_eq!(&out[..n], &PLAIN);
        let mut buf = TAGGED;
        let mut t = Tagged::new_checked(&mut buf[..]).expect("tagged");
        TagRepr { vid: 7, ..tag }.emit(&mut t);
        assert_eq!(t.vid(), 7);
        assert_eq!(push_tag(&PLAIN, tag, &mut [0u8; 19]), None, "too short");
        assert_eq!(push_tag(&PLAIN[..11], tag, &mut out), None, "runt");
    }

    #[test]
    fn refuses_untagged_and_short_frames() {
        let plain = [&PLAIN[..], &[0, 0]].concat();
        assert_eq!(Tagged::new_checked(&plain[..]), Err(Error::Malformed));
        assert_eq!(Tagged::new_checked(&TAGGED[..17]), Err(Error::Truncated));
        let mut ad = TAGGED;
        ad[12..14].copy_from_slice(&ETHERTYPE_QINQ.to_be_bytes());
        assert!(Tagged::new_checked(&ad[..]).is_ok());
    }
}
