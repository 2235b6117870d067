//! What a resolver did, as plain numbers: one set per worker, summed on read.

use std::ops::AddAssign;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    /// Messages passed to `handle_query`.
    pub queries: u64,
    /// Answered from a network's table (including NOERROR without records).
    pub local_answers: u64,
    /// Single-label names no network owns, answered NXDOMAIN locally.
    pub nxdomain: u64,
    /// Client queries sent upstream (retries to the next upstream not counted again).
    pub forwarded: u64,
    /// Client retransmissions of a query already in flight (dropped, not re-forwarded).
    pub duplicates: u64,
    /// Upstream replies that matched a query in flight.
    pub upstream_replies: u64,
    /// Upstream replies matching nothing in flight (late, spoofed, garbage).
    pub unmatched_replies: u64,
    /// An upstream did not answer within the timeout.
    pub upstream_timeouts: u64,
    /// SERVFAIL made here: no upstream, every upstream silent, too many in flight, or a
    /// name outside an internal network's table.
    pub servfail: u64,
    /// Queries refused because `max_inflight` were already forwarded, or no source port
    /// was free (also in `servfail`).
    pub inflight_full: u64,
    /// Queries from an internal network for a name it does not own, answered SERVFAIL
    /// instead of forwarded (also in `servfail`).
    pub internal_not_forwarded: u64,
    /// Queries whose header parsed but whose body did not (or bad EDNS version).
    pub formerr: u64,
    /// Opcodes other than QUERY.
    pub notimp: u64,
    /// Messages with no answer at all: shorter than a header, or a response (the switch
    /// adds the answers it could not put in a frame).
    pub dropped: u64,
    /// Answers cut to fit the client's UDP size (or one frame), TC set.
    pub truncated: u64,
    /// How long forwarded queries took, from the client's query to the upstream answer
    /// relayed (retries included). Not in `stats`' JSON: the metrics show it.
    #[serde(skip)]
    pub upstream_latency: Latency,
}

/// A latency histogram with fixed buckets (Prometheus-style, cumulative on read).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Latency {
    /// Observations at or below each of [`Latency::BOUNDS`] (not cumulative).
    pub buckets: [u64; Latency::BOUNDS.len()],
    /// Above the last bound.
    pub over: u64,
    pub count: u64,
    pub sum_micros: u64,
}

impl Latency {
    /// The buckets' upper bounds, in seconds.
    pub const BOUNDS: [f64; 11] = [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    ];

    pub fn observe(&mut self, d: std::time::Duration) {
        let s = d.as_secs_f64();
        match Self::BOUNDS.iter().position(|b| s <= *b) {
            Some(i) => self.buckets[i] += 1,
            None => self.over += 1,
        }
        self.count += 1;
        self.sum_micros += d.as_micros() as u64;
    }

    /// `(upper bound, observations at or below it)`, as a histogram's buckets.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut n = 0;
        Self::BOUNDS
            .iter()
            .zip(self.buckets)
            .map(|(b, c)| {
                n += c;
                (*b, n)
            })
            .collect()
    }
}

impl AddAssign for Latency {
    fn add_assign(&mut self, o: Latency) {
        for (a, b) in self.buckets.iter_mut().zip(o.buckets) {
            *a += b;
        }
        self.over += o.over;
        self.count += o.count;
        self.sum_micros += o.sum_micros;
    }
}

impl AddAssign for Counters {
    fn add_assign(&mut self, o: Counters) {
        self.queries += o.queries;
        self.local_answers += o.local_answers;
        self.nxdomain += o.nxdomain;
        self.forwarded += o.forwarded;
        self.duplicates += o.duplicates;
        self.upstream_replies += o.upstream_replies;
        self.unmatched_replies += o.unmatched_replies;
        self.upstream_timeouts += o.upstream_timeouts;
        self.servfail += o.servfail;
        self.inflight_full += o.inflight_full;
        self.internal_not_forwarded += o.internal_not_forwarded;
        self.formerr += o.formerr;
        self.notimp += o.notimp;
        self.dropped += o.dropped;
        self.truncated += o.truncated;
        self.upstream_latency += o.upstream_latency;
    }
}
