//! The pktgen header carried at the start of a UDP/TCP payload: a magic, the sending
//! stream (thread), a sequence number and the TX time in CLOCK_MONOTONIC nanoseconds.
//! Sender and sink share one machine, so the clocks agree. All fields big-endian.

/// Tells pktgen payloads from other traffic ("pg").
pub const MAGIC: u16 = 0x7067;
/// Bytes the header takes: magic(2) stream(2) seq(8) tx_ns(8). Small enough that a
/// 64-byte UDP frame carries it (42 bytes of headers + 20).
pub const HEADER_LEN: usize = 20;

mod field {
    use std::ops::Range;
    pub const MAGIC: Range<usize> = 0..2;
    pub const STREAM: Range<usize> = 2..4;
    pub const SEQ: Range<usize> = 4..12;
    pub const TX_NS: Range<usize> = 12..20;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub stream: u16,
    pub seq: u64,
    pub tx_ns: u64,
}

impl Header {
    /// Read a header from the start of a payload; None if it is too short or the magic
    /// is not there.
    pub fn parse(payload: &[u8]) -> Option<Header> {
        let p = payload.get(..HEADER_LEN)?;
        if u16::from_be_bytes([p[0], p[1]]) != MAGIC {
            return None;
        }
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&p[field::SEQ]);
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&p[field::TX_NS]);
        Some(Header {
            stream: u16::from_be_bytes([p[field::STREAM.start], p[field::STREAM.start + 1]]),
            seq: u64::from_be_bytes(seq),
            tx_ns: u64::from_be_bytes(ts),
        })
    }

    /// Write the header at the start of `out` (at least HEADER_LEN bytes).
    pub fn emit(&self, out: &mut [u8]) {
        out[field::MAGIC].copy_from_slice(&MAGIC.to_be_bytes());
        out[field::STREAM].copy_from_slice(&self.stream.to_be_bytes());
        Self::emit_seq_ts(out, self.seq, self.tx_ns);
    }

    /// Write only the per-frame fields (the rest of a template's header stays).
    pub fn emit_seq_ts(out: &mut [u8], seq: u64, tx_ns: u64) {
        out[field::SEQ].copy_from_slice(&seq.to_be_bytes());
        out[field::TX_NS].copy_from_slice(&tx_ns.to_be_bytes());
    }
}

/// CLOCK_MONOTONIC now, in nanoseconds.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip_and_bytes() {
        let h = Header {
            stream: 3,
            seq: 0x0102_0304_0506_0708,
            tx_ns: 42,
        };
        let mut buf = [0u8; HEADER_LEN + 4];
        h.emit(&mut buf);
        #[rustfmt::skip]
        let expected: [u8; HEADER_LEN] = [
            0x70, 0x67,             // magic "pg"
            0, 3,                   // stream
            1, 2, 3, 4, 5, 6, 7, 8, // seq
            0, 0, 0, 0, 0, 0, 0, 42 // tx_ns
        ];
        assert_eq!(&buf[..HEADER_LEN], &expected);
        assert_eq!(Header::parse(&buf), Some(h));
    }

    #[test]
    fn rejects_short_or_foreign_payloads() {
        assert_eq!(Header::parse(&[0x70, 0x67, 0, 0]), None);
        let mut buf = [0u8; HEADER_LEN];
        Header {
            stream: 0,
            seq: 1,
            tx_ns: 1,
        }
        .emit(&mut buf);
        buf[0] = 0;
        assert_eq!(Header::parse(&buf), None);
    }

    #[test]
    fn clock_moves_forward() {
        let a = now_ns();
        let b = now_ns();
        assert!(a > 0 && b >= a);
    }
}
