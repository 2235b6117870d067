//! Sandbox endpoints on the tc data path, as a worker sees them: members of the
//! worker's trunk veth. What the kernel does not forward itself (`fastpath::tc`) arrives
//! on the trunk segmented and checksummed, with an 802.1ad tag whose TCI names the
//! endpoint's port; what the worker sends to an endpoint leaves by the trunk with the
//! same tag, which the trunk's tc program takes off before it delivers the frame.
//! An endpoint costs the worker this small record, not a socket, rings or buffers.

use std::sync::Arc;

use crate::capture::CaptureTap;
use crate::port::MAX_FRAME;
use crate::stats::PortCounters;
use crate::{NetId, PortId};

use wire::ethernet::ETHERTYPE_QINQ;
use wire::vlan::{self, TagRepr, Tagged as TaggedFrame};

// The trunk's tag: 802.1ad TPID and a 16-bit TCI holding the port.

/// One endpoint on a trunk this worker owns.
pub(crate) struct SkbMember {
    pub net: NetId,
    pub counters: Arc<PortCounters>,
    pub capture: Option<CaptureTap>,
}

/// The TCI bit of a copy the kernel sent only to be observed (it delivered the frame
/// itself): [`crate::fastpath::OBSERVED`].
const OBSERVED: u16 = crate::fastpath::OBSERVED;

/// Who a trunk frame is from: the endpoint its tag's TCI names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tagged {
    pub port: PortId,
    /// A copy of a frame the kernel already delivered: the router learns from it and
    /// nothing is forwarded.
    pub observed: bool,
}

/// The endpoint a trunk frame belongs to (its tag's TCI); None for a frame without the
/// trunk's tag or too short to hold one behind its MACs.
pub(crate) fn tagged_port(frame: &[u8]) -> Option<Tagged> {
    let t = TaggedFrame::new_checked(frame).ok()?;
    (t.tpid() == ETHERTYPE_QINQ).then(|| {
        let tci = t.tci();
        Tagged {
            port: (tci & !OBSERVED) as PortId,
            observed: tci & OBSERVED != 0,
        }
    })
}

/// Copy a tagged trunk frame into `slot` without its tag; returns the length.
pub(crate) fn untag_into(frame: &[u8], slot: &mut [u8; MAX_FRAME]) -> usize {
    TaggedFrame::new_checked(frame)
        .ok()
        .and_then(|t| vlan::pop_tag(&t, slot))
        .expect("a frame tagged_port accepted")
}

/// Write `frame` into `slot` with the trunk's tag for `port`; None when the tagged
/// frame would not fit or the frame has no Ethernet header.
pub(crate) fn tag_into(frame: &[u8], port: PortId, slot: &mut [u8; MAX_FRAME]) -> Option<usize> {
    let tci = u16::try_from(port).ok()?;
    if frame.len() < wire::ETH_HLEN {
        return None;
    }
    vlan::push_tag(frame, TagRepr::from_tci(ETHERTYPE_QINQ, tci), slot)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ARP request as a sandbox sends it, and the same with the trunk's tag for port 0x0102.
    const PLAIN: &[u8] = &[
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x42, 0xac, 0x12, 0x00, 0x02, 0x08, 0x06, 0x00,
        0x01,
    ];
    const TAGGED: &[u8] = &[
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x42, 0xac, 0x12, 0x00, 0x02, 0x88, 0xa8, 0x01,
        0x02, 0x08, 0x06, 0x00, 0x01,
    ];

    #[test]
    fn tag_and_untag_are_inverse_byte_for_byte() {
        let mut slot = [0u8; MAX_FRAME];
        let n = tag_into(PLAIN, 0x0102, &mut slot).expect("fits");
        assert_eq!(&slot[..n], TAGGED);
        let port = |port, observed| Some(Tagged { port, observed });
        assert_eq!(tagged_port(TAGGED), port(0x0102, false));
        let n = untag_into(TAGGED, &mut slot);
        assert_eq!(&slot[..n], PLAIN);
        let mut copy = TAGGED.to_vec();
        copy[14] |= 0x10;
        assert_eq!(tagged_port(&copy), port(0x0102, true), "the kernel's copy");
    }

    #[test]
    fn frames_without_the_tag_name_no_port() {
        assert_eq!(tagged_port(PLAIN), None, "untagged");
        let mut q = TAGGED.to_vec();
        q[12..14].copy_from_slice(&[0x81, 0x00]);
        assert_eq!(tagged_port(&q), None, "an 802.1Q tag is not the trunk's");
        assert_eq!(tagged_port(&TAGGED[..17]), None, "truncated");
        let mut slot = [0u8; MAX_FRAME];
        assert_eq!(
            tag_into(&[0u8; MAX_FRAME - 3], 1, &mut slot),
            None,
            "too big"
        );
        assert_eq!(tag_into(&PLAIN[..10], 1, &mut slot), None, "runt");
    }
}
