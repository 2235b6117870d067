//! Building and sizing response messages: the response skeleton for a query, error
//! replies when only the header could be read, and fitting an answer into the client's
//! UDP payload limit (setting TC when it does not fit).

use hickory_proto::op::{
    Edns, Header, Message, MessageType, Metadata, OpCode, Query, ResponseCode,
};
use hickory_proto::rr::{RData, Record};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

/// Docker's embedded DNS answers with this TTL, and so do we.
pub const TTL: u32 = 600;
/// The UDP payload size we advertise in our own OPT record (the DNS flag day 2020 value:
/// no IP fragmentation on common paths).
pub const OUR_EDNS_PAYLOAD: u16 = 1232;
/// The size every DNS client accepts over UDP (RFC 1035 4.2.1).
pub const CLASSIC_UDP_LIMIT: usize = 512;
/// The UDP payload one IPv4 packet carries on a 1500-byte MTU (1500 - 20 - 8): the
/// default cap on UDP answers, whatever EDNS size the client gives.
pub const FRAME_UDP_PAYLOAD: usize = 1472;
/// The largest message DNS can frame over TCP (the 16-bit length prefix).
pub const TCP_LIMIT: usize = u16::MAX as usize;

/// A response to `req` with its ID, opcode, RD/CD and question copied, an OPT record if
/// the query had one, and `rcode`.
pub(crate) fn response_to(req: &Message, ra: bool, rcode: ResponseCode) -> Message {
    let mut m = Message::new(req.metadata.id, MessageType::Response, req.metadata.op_code);
    m.metadata = Metadata::response_from_request(&req.metadata);
    m.metadata.recursion_available = ra;
    m.metadata.response_code = rcode;
    m.add_queries(req.queries.iter().cloned());
    if req.edns.is_some() {
        m.set_edns(our_edns());
    }
    m
}

/// A response rebuilt from the parts of a query we kept (for SERVFAIL and truncated
/// relays of forwarded queries).
pub(crate) fn response_from_parts(
    id: u16,
    question: &Query,
    rd: bool,
    with_edns: bool,
    rcode: ResponseCode,
) -> Message {
    let mut m = Message::response(id, OpCode::Query);
    m.metadata.recursion_desired = rd;
    m.metadata.recursion_available = true;
    m.metadata.response_code = rcode;
    m.add_query(question.clone());
    if with_edns {
        m.set_edns(our_edns());
    }
    m
}

/// A question-less error reply for a query whose header parsed but whose body did not.
pub(crate) fn header_only_error(h: &Header, rcode: ResponseCode) -> Option<Vec<u8>> {
    let mut m = Message::error_msg(h.metadata.id, h.metadata.op_code, rcode);
    m.metadata.recursion_desired = h.metadata.recursion_desired;
    m.to_vec().ok()
}

fn our_edns() -> Edns {
    let mut e = Edns::new();
    e.set_max_payload(OUR_EDNS_PAYLOAD);
    e.set_version(0);
    e
}

/// The largest UDP response we send `req`'s sender: 512, or its EDNS0 payload size when
/// larger (RFC 6891 6.2.5: values below 512 are treated as 512), but never more than
/// `cap` (what one datagram in one frame carries; at least 512).
pub(crate) fn udp_limit(req: &Message, cap: usize) -> usize {
    req.edns.as_ref().map_or(CLASSIC_UDP_LIMIT, |e| {
        usize::from(e.max_payload()).max(CLASSIC_UDP_LIMIT).min(cap)
    })
}

/// Lower the UDP payload size `query`'s OPT record advertises to `cap`, in place (every
/// other byte stays as it was). Nothing changes without an OPT record, or when it asks
/// for `cap` or less.
pub(crate) fn cap_edns_payload(query: &mut [u8], cap: usize) {
    let Some(at) = opt_payload_offset(query) else {
        return;
    };
    let cap = u16::try_from(cap).unwrap_or(u16::MAX);
    if u16::from_be_bytes([query[at], query[at + 1]]) > cap {
        query[at..at + 2].copy_from_slice(&cap.to_be_bytes());
    }
}

/// Where the payload size (the CLASS field) of `msg`'s OPT record is.
fn opt_payload_offset(msg: &[u8]) -> Option<usize> {
    let mut d = BinDecoder::new(msg);
    let h = Header::read(&mut d).ok()?;
    for _ in 0..h.counts.queries {
        Query::read(&mut d).ok()?;
    }
    for _ in 0..u32::from(h.counts.answers) + u32::from(h.counts.authorities) {
        Record::<RData>::read(&mut d).ok()?;
    }
    for _ in 0..h.counts.additionals {
        let at = d.index();
        // The OPT record's owner is the root (one zero byte), then TYPE 41, then CLASS.
        if msg.get(at..at + 3) == Some(&[0, 0, 41][..]) {
            return Some(at + 3).filter(|&c| c + 2 <= msg.len());
        }
        Record::<RData>::read(&mut d).ok()?;
    }
    None
}

/// Encode `msg` in at most `limit` bytes. When the whole message does not fit, keep as
/// many answer records as do (so clients that never retry over TCP still get some
/// addresses), drop the other sections but the OPT record, and set TC. Returns the bytes
/// and whether they were truncated; `None` only if even the bare header and question
/// cannot be encoded.
pub(crate) fn encode_limited(msg: &Message, limit: usize) -> Option<(Vec<u8>, bool)> {
    if let Ok(full) = msg.to_vec() {
        if full.len() <= limit {
            return Some((full, false));
        }
    }
    let with_answers = |n: usize| {
        let mut m = msg.truncate();
        m.add_answers(msg.answers.iter().take(n).cloned());
        m.to_vec().ok()
    };
    // Binary search for the largest prefix of the answers that fits.
    let (mut lo, mut hi) = (0usize, msg.answers.len());
    let mut best = with_answers(0)?;
    if best.len() > limit {
        // Not even the question fits (a 512-byte limit cannot cause this; a huge OPT
        // could): send it anyway, TC set, rather than nothing.
        return Some((best, true));
    }
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        match with_answers(mid) {
            Some(b) if b.len() <= limit => {
                best = b;
                lo = mid;
            }
            _ => hi = mid - 1,
        }
    }
    Some((best, true))
}
