//! The body of the `decap` fuzz target, here so the unit tests run it too: whatever the
//! bytes, decapsulation does not panic, what it returns lies inside the input, and a
//! frame it accepts re-encapsulates into one it accepts again with the same contents.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::{Decap, Overlay, Vni, Vtep, VtepConfig};

/// The VTEP address the fuzz target listens on (the kernel capture's receiver).
pub const LOCAL: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);

/// Feeds `data` to decapsulation (alone and through an [`Overlay`] with VNI 42) and
/// checks the invariants above. Returns whether it was accepted as VXLAN.
pub fn decap(data: &[u8]) -> bool {
    let cfg = VtepConfig::new([2, 0, 0x0a, 0xc8, 0, 2], LOCAL);
    let vtep = Vtep::new(cfg);
    let accepted = match vtep.decapsulate(data) {
        Decap::Frame(d) => {
            let range = data.as_ptr_range();
            let inner = d.inner.as_ptr_range();
            assert!(range.start <= inner.start && inner.end <= range.end);
            assert!(d.inner.len() >= 14, "an inner Ethernet header at least");
            assert!(d.vni.get() < 1 << 24);
            let mut out = vec![0u8; d.inner.len() + 50];
            let mut back = Vtep::new(VtepConfig::new([2, 0, 0, 0, 0, 1], d.outer_src));
            if let Ok(n) = back.encapsulate(d.vni, LOCAL, cfg.mac, d.inner, &mut out) {
                match vtep.decapsulate(&out[..n]) {
                    Decap::Frame(again) => {
                        assert_eq!(again.inner, d.inner);
                        assert_eq!(again.vni, d.vni);
                        assert_eq!(again.outer_src, d.outer_src);
                    }
                    other => panic!("re-encapsulated frame refused: {other:?}"),
                }
            }
            true
        }
        Decap::Pass(_) | Decap::Drop(_) => false,
    };
    let mut ov = Overlay::new(cfg, 4, Duration::from_secs(300));
    if let Ok(vni) = Vni::new(42) {
        ov.add_network(vni, &[Ipv4Addr::new(10, 200, 0, 1)]);
    }
    let now = Instant::now();
    let _ = ov.receive(data, now);
    assert!(ov.table(Vni::from_wire(42)).map_or(0, |t| t.len()) <= 4);
    accepted
}
