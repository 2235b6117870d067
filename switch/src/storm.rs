//! Storm control: floods (broadcast, multicast, unknown unicast) from one port are
//! rate-limited with a token bucket per port (`--flood-rate` per second, a second's
//! worth of burst), so one sandbox cannot make every other port of its network carry
//! its storm. What is over the rate is dropped and counted (`storm`). 0 turns it off.

use std::collections::HashMap;
use std::time::Instant;

use crate::PortId;

/// Floods per second per port unless `--flood-rate` says otherwise: far above what ARP
/// and learning need on a busy host, far below what one sandbox can send.
pub const DEFAULT_FLOOD_RATE: u32 = 20_000;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: u32,
    at: Instant,
}

/// One network's buckets on one worker.
#[derive(Debug, Default)]
pub(crate) struct Storm {
    rate: u32,
    buckets: HashMap<PortId, Bucket, ahash::RandomState>,
}

impl Storm {
    pub fn new(rate: u32) -> Storm {
        Storm {
            rate,
            buckets: HashMap::default(),
        }
    }

    /// Whether `port` may flood one more frame at `now` (taking a token).
    pub fn allow(&mut self, port: PortId, now: Instant) -> bool {
        if self.rate == 0 {
            return true;
        }
        let rate = self.rate;
        let b = self.buckets.entry(port).or_insert(Bucket {
            tokens: rate,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at);
        let earned = (elapsed.as_micros() * u128::from(rate) / 1_000_000) as u64;
        if earned > 0 {
            b.tokens = (u64::from(b.tokens) + earned).min(u64::from(rate)) as u32;
            b.at = now;
        }
        if b.tokens == 0 {
            return false;
        }
        b.tokens -= 1;
        true
    }

    /// A port that went: its bucket goes too.
    pub fn forget(&mut self, port: PortId) {
        self.buckets.remove(&port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_port_floods_at_its_rate_and_others_are_not_charged() {
        let mut s = Storm::new(100);
        let t = Instant::now();
        assert_eq!(
            (0..150).filter(|_| s.allow(1, t)).count(),
            100,
            "a second's burst"
        );
        assert!(s.allow(2, t), "another port has its own bucket");
        assert!(
            !s.allow(1, t + Duration::from_millis(5)),
            "less than one token earned"
        );
        let later = t + Duration::from_millis(500);
        assert_eq!(
            (0..100).filter(|_| s.allow(1, later)).count(),
            50,
            "refilled at the rate"
        );
        let mut off = Storm::new(0);
        assert!((0..10_000).all(|_| off.allow(1, t)), "0: no limit");
    }
}
