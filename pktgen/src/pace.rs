//! Rate pacing: a token bucket refilled at the target rate (frames or bits per second)
//! that lets a sender go a burst at a time. Time is passed in, so the logic is testable
//! without a clock.

use crate::cli::Rate;

/// Slack for float rounding, so exactly-due tokens count as there.
const EPSILON: f64 = 1e-6;

/// Longest stretch of traffic the bucket saves up: enough to make up for a sleep that
/// overshot, short enough that an idle stretch does not become a line-rate spike.
const SAVE_NS: f64 = 2_000_000.0;
/// How long a sender lets tokens gather before sending: bursts instead of one syscall
/// per frame, and still smooth at a microsecond scale.
const GATHER_NS: f64 = 200_000.0;

/// Tokens are frames (pps) or bits (bps).
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
    /// A bucket for `rate` that always holds at least `burst` frames of up to
    /// `max_frame` bytes.
    pub fn new(rate: Rate, burst: usize, max_frame: usize, now_ns: u64) -> Self {
        let (per_s, bits, burst_cost) = match rate {
            Rate::Pps(p) => (p, false, burst as f64),
            Rate::Bps(b) => (b, true, (burst * max_frame * 8) as f64),
        };
        TokenBucket {
            per_ns: per_s / 1e9,
            bits,
            tokens: 0.0,
            cap: burst_cost.max(per_s / 1e9 * SAVE_NS),
            last_ns: now_ns,
        }
    }

    /// Frames worth gathering before a send (1 at low rates, up to `burst`), for
    /// frames of `len` bytes.
    pub fn gather(&self, len: usize, burst: usize) -> usize {
        let n = (self.per_ns * GATHER_NS / self.cost(len)).floor() as usize;
        n.clamp(1, burst.max(1))
    }

    /// Add the tokens earned since the last call.
    pub fn refill(&mut self, now_ns: u64) {
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
        self.wait_n_ns(len, 1)
    }

    /// Nanoseconds (from the last refill) until `n` frames of `len` bytes can go.
    pub fn wait_n_ns(&self, len: usize, n: usize) -> u64 {
        let missing = self.cost(len) * n as f64 - self.tokens;
        if missing <= EPSILON {
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
    fn bucket_saves_at_most_2ms_or_a_burst_after_idle() {
        let mut b = TokenBucket::new(Rate::Pps(1e6), 32, 64, 0);
        assert_eq!(b.take_up_to(64, u64::MAX, 10 * SEC), 2000);
        assert_eq!(b.take_up_to(64, u64::MAX, 10 * SEC), 0);
        let mut b = TokenBucket::new(Rate::Pps(1000.0), 32, 64, 0);
        assert_eq!(b.take_up_to(64, u64::MAX, 10 * SEC), 32);
    }

    #[test]
    fn senders_gather_small_bursts_at_moderate_rates() {
        let b = TokenBucket::new(Rate::Pps(50_000.0), 32, 64, 0);
        assert_eq!(b.gather(64, 32), 10);
        assert_eq!(
            TokenBucket::new(Rate::Pps(10.0), 32, 64, 0).gather(64, 32),
            1
        );
        assert_eq!(
            TokenBucket::new(Rate::Pps(1e7), 32, 64, 0).gather(64, 32),
            32
        );
        // 100 Mbit/s of 1000-bit frames is 100 kpps: 20 frames per 200 us.
        let b = TokenBucket::new(Rate::Bps(100e6), 32, 125, 0);
        assert_eq!(b.gather(125, 32), 20);
        assert_eq!(b.wait_n_ns(125, 20), 200_000);
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
