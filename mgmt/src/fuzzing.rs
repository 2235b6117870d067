//! The body of the `line_framing` fuzz target (`mgmt/fuzz`), here so a unit test runs
//! it too: whatever the bytes and however they are cut into reads, the control
//! socket's framing does not panic, gives every complete line within the limit exactly
//! once and in order, refuses the first line over it and nothing after, and keeps no
//! more than the limit of an unfinished line.

use crate::framing::{LineBuffer, TooLong};

/// `data[0]` is the line limit, `data[1]` seeds how the rest is cut into pushes and
/// how many lines are taken between them (as the server, which takes a bounded number
/// per turn), the rest is the stream.
pub fn line_framing(data: &[u8]) {
    let (max, seed, stream) = match data {
        [m, s, rest @ ..] => (*m as usize, *s, rest),
        _ => return,
    };
    let expected = oracle(stream, max);
    let mut b = LineBuffer::new(max);
    let mut got: Vec<Result<Vec<u8>, TooLong>> = Vec::new();
    let mut x = u64::from(seed) | 0x9e37_79b9_7f4a_7c00;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut rest = stream;
    while !rest.is_empty() {
        let n = if seed == 0 {
            rest.len()
        } else {
            (next() % 97) as usize + 1
        };
        let (chunk, tail) = rest.split_at(n.min(rest.len()));
        rest = tail;
        b.push(chunk);
        for _ in 0..next() % 4 {
            match b.next_line() {
                Some(l) => got.push(l.map(<[u8]>::to_vec)),
                None => break,
            }
        }
    }
    while let Some(l) = b.next_line() {
        got.push(l.map(<[u8]>::to_vec));
    }
    assert!(!b.has_line());
    assert!(
        b.partial() <= max,
        "an unfinished line over the limit is refused"
    );
    let last = b.finish().map(<[u8]>::to_vec);
    assert_eq!(got, expected.lines);
    assert_eq!(last, expected.last);
    assert!(b.next_line().is_none() && b.finish().is_none());
}

struct Expected {
    lines: Vec<Result<Vec<u8>, TooLong>>,
    last: Option<Vec<u8>>,
}

/// The lines of the whole stream, cut at once.
fn oracle(stream: &[u8], max: usize) -> Expected {
    let mut lines = Vec::new();
    let mut parts = stream.split(|b| *b == b'\n').peekable();
    while let Some(part) = parts.next() {
        let finished = parts.peek().is_some();
        if part.len() > max {
            lines.push(Err(TooLong));
            return Expected { lines, last: None };
        }
        if finished {
            lines.push(Ok(part.to_vec()));
        } else {
            let last = (!part.is_empty()).then(|| part.to_vec());
            return Expected { lines, last };
        }
    }
    Expected { lines, last: None }
}

#[cfg(test)]
mod tests {
    /// What the fuzz target does, on a few thousand inputs, so CI runs it too.
    #[test]
    fn line_framing_holds_on_random_input() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for i in 0..4000usize {
            let mut data = vec![(i % 40) as u8, (i % 7) as u8];
            for _ in 0..(i % 300) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Mostly text, newlines often, now and then a long run without one.
                data.push(match x % 16 {
                    0..=2 => b'\n',
                    3 => b'\r',
                    4 => (x >> 8) as u8,
                    _ => b'a' + (x >> 8) as u8 % 26,
                });
            }
            super::line_framing(&data);
        }
        super::line_framing(b"");
        super::line_framing(b"\x00\x00\n");
        super::line_framing(b"\x00\x01x");
    }
}
