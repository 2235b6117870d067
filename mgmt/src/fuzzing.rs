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

/// The body of the `store_keys` fuzz target: a key and a value from the cluster store
/// (anything another writer may have put under the prefix). Reading them never panics,
/// and what is taken matches its key: an endpoint record is at the key it names, a
/// network's id is its key's.
pub fn store_keys(data: &[u8]) {
    use crate::cluster::keys::{self, Change};
    let (key, value) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(key) = std::str::from_utf8(key) else {
        return;
    };
    match keys::put(key, value) {
        Ok(Some(Change::EndpointPut(e))) => {
            assert_eq!(keys::endpoint(&e), key);
            assert!(e.mac().is_some());
            assert!(!e.addresses().is_empty());
        }
        Ok(Some(Change::NetworkPut(n))) => {
            assert_eq!(keys::network(&n.id), key);
            let v4 = n.subnet.zip(n.gateway).map(|(s, g)| s.contains(&g));
            let v6 = n.subnet6.zip(n.gateway6).map(|(s, g)| s.contains(&g));
            assert!(v4 != Some(false) && v6 != Some(false) && (v4.is_some() || v6.is_some()));
        }
        Ok(Some(Change::NodePut(n))) => assert_eq!(keys::node(&n.name), key),
        Ok(Some(other)) => panic!("a put gave {other:?}"),
        Ok(None) | Err(_) => {}
    }
    if let Some(c) = keys::delete(key) {
        assert!(keys::parse(key).is_some(), "{c:?} from an unparsed key");
    }
}

#[cfg(test)]
mod tests {
    /// The store_keys body over records vswitchd writes, cut and corrupted.
    #[test]
    fn store_keys_hold_on_corrupted_records() {
        let rec = br#"{"network":"n1","node":"h1","id":"e1","name":"web","aliases":["a"],"mac":"02:42:ac:1c:00:02","ip":"172.28.0.2","vtep":"10.200.0.1"}"#;
        let net = br#"{"id":"abababababababababababababababababababababababababababababababab","name":"g","subnet":"172.28.0.0/24","gateway":"172.28.0.1","vni":4096,"created":"t","node":"h1"}"#;
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for (key, value) in [
            (&b"/vswitch/v1/endpoints/n1/h1/e1"[..], &rec[..]),
            (&b"/vswitch/v1/networks/abababababababababababababababababababababababababababababababab"[..], &net[..]),
        ] {
            for i in 0..3000usize {
                let mut v = value.to_vec();
                for _ in 0..(i % 4) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let at = (x as usize) % v.len();
                    v[at] = (x >> 16) as u8;
                }
                v.truncate(v.len() - (i % 7).min(v.len()));
                let mut data = key.to_vec();
                if i % 11 == 0 {
                    data.pop();
                }
                data.push(0);
                data.extend(v);
                super::store_keys(&data);
            }
        }
        super::store_keys(b"");
        super::store_keys(b"/vswitch/v1/nodes/a\0{}");
    }

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
