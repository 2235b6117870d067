//! Rate pacing: a token bucket refilled at the target rate (frames or bits per second)
//! that lets a sender go a burst at a time. Time is passed in, so the logic is testable
//! without a clock.

use crate::cli::Rate;

/// Slack for float rounding, so exactly-due tokens count as there.
const EPSILON: f64 = 1e-6;

/// Tokens are frames (pps) or bits (bps); the bucket holds at most one burst's worth so
/// an idle stretch does not turn into a line-rate spike afterwards.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    /// Tokens per nanosecond.
    per_ns: f64,
    bits: bool,
    tokens: f64,
    cap: f64,
    last_ns: u64,
}

impl TokenBucket {
    /// A bucket for `rate`, allowing bursts of `burst` frames of up to `max_frame` bytes.
    pub fn new(rate: Rate, burst: usize, max_frame: usize, now_ns: u64) -> Self {
        let (per_s, bits, cap) = match rate {
            Rate::Pps(p) => (p, false, burst as f64),
            Rate::Bps(b) => (b, true, (burst * max_frame * 8) as f64),
        };
        TokenBucket {
            per_ns: per_s / 1e9,
            bits,
            tokens: 0.0,
            cap,
            last_ns: now_ns,
        }
    }

    fn refill(&mut self, now_ns: u64) {
        let dt = now_ns.saturating_sub(self.last_ns);
        self.last_ns = now_ns;
        self.tokens = (self.tokens + dt as f64 * self.per_ns).min(self.cap);
    }

    /// What a frame of `len` bytes costs.
    pub fn cost(&self, len: usize) -> f64 {
        if self.bits {
            (len * 8) as f64
        } else {
            1.0
        }
    }

    /// Take the tokens for a frame of `len` bytes if they are there.
    pub fn try_take(&mut self, len: usize, now_ns: u64) -> bool {
        self.refill(now_ns);
        let c = self.cost(len);
        if self.tokens + EPSILON >= c {
            self.tokens = (self.tokens - c).max(0.0);
            true
        } else {
            false
        }
    }

    /// How many frames of `len` bytes (at most `max`) can go now; takes their tokens.
    pub fn take_up_to(&mut self, len: usize, max: u64, now_ns: u64) -> u64 {
        self.refill(now_ns);
        let c = self.cost(len);
        let n = (((self.tokens + EPSILON) / c).floor() as u64).min(max);
        self.tokens = (self.tokens - n as f64 * c).max(0.0);
        n
    }

    /// Nanoseconds until a frame of `len` bytes can go.
    pub fn wait_ns(&self, len: usize) -> u64 {
        let missing = self.cost(len) - self.tokens;
        if missing <= 0.0 {
            0
        } else {
            (missing / self.per_ns).ceil() as u64
        }
    }
}

/// Sleep until `ns` from now, spinning the last stretch: plain sleeps overshoot by tens
/// of microseconds, which would cap the rate at high pps.
pub fn pause_ns(ns: u64) {
    const SPIN_BELOW: u64 = 100_000;
    if ns > SPIN_BELOW {
        std::thread::sleep(std::time::Duration::from_nanos(ns - SPIN_BELOW / 2));
    } else {
        std::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn pps_bucket_admits_the_rate_over_time() {
        let mut b = TokenBucket::new(Rate::Pps(1000.0), 32, 64, 0);
        assert!(!b.try_take(64, 0), "starts empty");
        let mut sent = 0;
        // Poll every 100 us for one second.
        for t in (0..=SEC).step_by(100_000) {
            while b.try_take(64, t) {
                sent += 1;
            }
        }
        assert_eq!(sent, 1000);
    }

    #[test]
    fn bps_bucket_charges_by_frame_length() {
        // 1 Mbit/s of 125-byte (1000-bit) frames = 1000 frames/s.
        let mut b = TokenBucket::new(Rate::Bps(1e6), 32, 125, 0);
        let n = b.take_up_to(125, u64::MAX, SEC / 100);
        assert_eq!(n, 10);
        assert_eq!(b.take_up_to(1250, u64::MAX, SEC / 50), 1);
    }

    #[test]
    fn bucket_caps_at_one_burst_after_idle() {
        let mut b = TokenBucket::new(Rate::Pps(1e6), 32, 64, 0);
        assert_eq!(b.take_up_to(64, u64::MAX, 10 * SEC), 32);
        assert_eq!(b.take_up_to(64, u64::MAX, 10 * SEC), 0);
    }

    #[test]
    fn wait_says_when_the_next_frame_may_go() {
        let mut b = TokenBucket::new(Rate::Pps(1000.0), 32, 64, 0);
        assert_eq!(b.wait_ns(64), 1_000_000);
        assert_eq!(b.take_up_to(64, 10, 500_000), 0);
        assert_eq!(b.wait_ns(64), 500_000);
        assert_eq!(b.take_up_to(64, 10, 1_000_000), 1);
    }
}
