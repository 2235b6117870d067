//! VXLAN Network Identifiers: the 24-bit number that keeps overlay networks apart, and
//! the control plane's allocator (one VNI per overlay network, `-o vxlan.id=N` or
//! allocated from 4096 upward so low numbers stay free for hand-picked ones).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::error::VniError;

/// A VNI. Values from configuration are 1..=16777215 ([`Vni::new`]); a value read off
/// the wire may be anything 24 bits hold, 0 included, and is refused as unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Vni(u32);

impl Vni {
    pub const MIN: u32 = 1;
    pub const MAX: u32 = (1 << 24) - 1;
    /// Where allocation starts (docker's overlay driver does the same).
    pub const FIRST_ALLOCATED: u32 = 4096;

    /// A VNI for configuration: 1..=16777215.
    pub fn new(v: u32) -> Result<Vni, VniError> {
        if (Self::MIN..=Self::MAX).contains(&v) {
            Ok(Vni(v))
        } else {
            Err(VniError::OutOfRange(v))
        }
    }

    /// A VNI as read from a header: the low 24 bits, unvalidated (0 included).
    pub fn from_wire(v: u32) -> Vni {
        Vni(v & Self::MAX)
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl std::fmt::Display for Vni {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The VNIs in use on this host (or cluster), for the control plane.
#[derive(Clone, Debug, Default)]
pub struct VniAllocator {
    taken: BTreeSet<u32>,
}

impl VniAllocator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Claims a VNI asked for by name (`-o vxlan.id=N`, or restored from state).
    pub fn reserve(&mut self, v: u32) -> Result<Vni, VniError> {
        let vni = Vni::new(v)?;
        if !self.taken.insert(v) {
            return Err(VniError::Taken(v));
        }
        Ok(vni)
    }

    /// The lowest free VNI from 4096 upward.
    pub fn allocate(&mut self) -> Result<Vni, VniError> {
        // Walk the taken set from 4096: the first gap is the answer.
        let mut candidate = Vni::FIRST_ALLOCATED;
        for &t in self.taken.range(Vni::FIRST_ALLOCATED..) {
            if t != candidate {
                break;
            }
            candidate += 1;
        }
        if candidate > Vni::MAX {
            return Err(VniError::Exhausted);
        }
        self.taken.insert(candidate);
        Ok(Vni(candidate))
    }

    /// Returns a VNI to the pool; true if it was taken.
    pub fn release(&mut self, vni: Vni) -> bool {
        self.taken.remove(&vni.0)
    }

    pub fn is_taken(&self, v: u32) -> bool {
        self.taken.contains(&v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_range() {
        assert_eq!(Vni::new(0), Err(VniError::OutOfRange(0)));
        assert_eq!(Vni::new(1).map(Vni::get), Ok(1));
        assert_eq!(Vni::new(16_777_215).map(Vni::get), Ok(16_777_215));
        assert_eq!(Vni::new(16_777_216), Err(VniError::OutOfRange(16_777_216)));
        assert_eq!(Vni::from_wire(0xff00_0001).get(), 1);
    }

    #[test]
    fn allocates_from_4096_and_skips_taken() {
        let mut a = VniAllocator::new();
        assert_eq!(a.allocate().map(Vni::get), Ok(4096));
        assert_eq!(a.reserve(4097).map(Vni::get), Ok(4097));
        assert_eq!(a.reserve(4097), Err(VniError::Taken(4097)));
        assert_eq!(a.reserve(42).map(Vni::get), Ok(42), "below 4096 by hand");
        assert_eq!(a.allocate().map(Vni::get), Ok(4098));
        assert!(a.release(Vni(4096)));
        assert!(!a.release(Vni(4096)));
        assert_eq!(
            a.allocate().map(Vni::get),
            Ok(4096),
            "freed ones are reused"
        );
        assert!(a.is_taken(42));
    }

    #[test]
    fn exhaustion_is_an_error() {
        let mut a = VniAllocator::new();
        a.taken = (Vni::FIRST_ALLOCATED..=Vni::MAX).collect();
        assert_eq!(a.allocate(), Err(VniError::Exhausted));
        a.release(Vni(Vni::MAX));
        assert_eq!(a.allocate().map(Vni::get), Ok(Vni::MAX));
    }

    #[test]
    fn serializes_as_a_number() {
        assert_eq!(serde_json::to_string(&Vni(42)).ok().as_deref(), Some("42"));
    }
}
