//! The control socket's line framing, apart from any I/O so it can be fuzzed: bytes go
//! in as they are read, complete lines come out in order, each byte examined a bounded
//! number of times however the input is cut (no rescans, no drain per line).

/// A line longer than the limit. Its end cannot be told from the next request's start,
/// so the stream cannot be framed past it: the buffer takes nothing more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong;

/// Buffers a byte stream and cuts it into `\n`-terminated lines of at most `max` bytes
/// (the newline not counted).
#[derive(Debug)]
pub struct LineBuffer {
    buf: Vec<u8>,
    /// Where the first line not yet taken starts.
    start: usize,
    /// Just past the last newline pushed: `buf[start..tail]` holds the complete lines
    /// not yet taken, `buf[tail..]` the unfinished one.
    tail: usize,
    max: usize,
    failed: bool,
}

impl LineBuffer {
    pub fn new(max: usize) -> LineBuffer {
        LineBuffer {
            buf: Vec::new(),
            start: 0,
            tail: 0,
            max,
            failed: false,
        }
    }

    /// Append bytes as read. Returns whether they ended a line (so the unfinished line,
    /// if any, began in them). Ignored once a line was too long.
    pub fn push(&mut self, data: &[u8]) -> bool {
        if self.failed || data.is_empty() {
            return false;
        }
        // Drop what was taken once it is at least half the buffer: each byte is moved
        // at most once on average, whatever the sizes of the pushes.
        if self.start > 0 && self.start >= self.buf.len() - self.start {
            self.buf.drain(..self.start);
            self.tail -= self.start;
            self.start = 0;
        }
        let at = self.buf.len();
        self.buf.extend_from_slice(data);
        match data.iter().rposition(|b| *b == b'\n') {
            Some(i) => {
                self.tail = at + i + 1;
                true
            }
            None => false,
        }
    }

    /// The next complete line, without its newline; `Err(TooLong)` (once) for a line
    /// over the limit, finished or not, after which there is nothing more.
    pub fn next_line(&mut self) -> Option<Result<&[u8], TooLong>> {
        if self.failed {
            return None;
        }
        if self.start < self.tail {
            // There is a newline in buf[start..tail]: the one at tail - 1 at least.
            let len = self.buf[self.start..self.tail]
                .iter()
                .position(|b| *b == b'\n')
                .unwrap_or(self.tail - 1 - self.start);
            let line = self.start..self.start + len;
            self.start = line.end + 1;
            if len > self.max {
                return Some(Err(self.fail()));
            }
            return Some(Ok(&self.buf[line]));
        }
        if self.partial() > self.max {
            return Some(Err(self.fail()));
        }
        None
    }

    /// Whether a complete line is waiting to be taken.
    pub fn has_line(&self) -> bool {
        !self.failed && self.start < self.tail
    }

    /// Bytes of the unfinished last line.
    pub fn partial(&self) -> usize {
        if self.failed {
            0
        } else {
            self.buf.len() - self.tail
        }
    }

    /// At the end of the stream, once every complete line was taken: the last line if it
    /// had no newline (None if it is empty, if lines are still waiting, or after
    /// `TooLong`). The buffer is then empty.
    pub fn finish(&mut self) -> Option<&[u8]> {
        if self.failed || self.has_line() || self.partial() == 0 {
            return None;
        }
        if self.partial() > self.max {
            self.fail();
            return None;
        }
        let rest = self.tail..self.buf.len();
        self.start = rest.end;
        self.tail = rest.end;
        Some(&self.buf[rest])
    }

    fn fail(&mut self) -> TooLong {
        self.failed = true;
        self.buf = Vec::new();
        self.start = 0;
        self.tail = 0;
        TooLong
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(b: &mut LineBuffer) -> Vec<Result<Vec<u8>, TooLong>> {
        let mut out = Vec::new();
        while let Some(l) = b.next_line() {
            out.push(l.map(<[u8]>::to_vec));
        }
        out
    }

    #[test]
    fn cuts_lines_across_pushes() {
        let mut b = LineBuffer::new(8);
        assert!(!b.push(b"ab"));
        assert!(lines(&mut b).is_empty());
        assert_eq!(b.partial(), 2);
        assert!(b.push(b"c\n\nde"));
        assert_eq!(lines(&mut b), vec![Ok(b"abc".to_vec()), Ok(Vec::new())]);
        assert_eq!(b.partial(), 2);
        b.push(b"f");
        assert_eq!(b.finish(), Some(&b"def"[..]));
        assert_eq!(b.finish(), None);
    }

    #[test]
    fn refuses_a_line_over_the_limit_finished_or_not() {
        let mut b = LineBuffer::new(4);
        b.push(b"1234\n12345\nok\n");
        assert_eq!(lines(&mut b), vec![Ok(b"1234".to_vec()), Err(TooLong)]);
        assert!(!b.push(b"more\n"));
        assert!(b.next_line().is_none() && b.finish().is_none());

        let mut b = LineBuffer::new(4);
        b.push(b"a\n123");
        b.push(b"45");
        assert_eq!(lines(&mut b), vec![Ok(b"a".to_vec()), Err(TooLong)]);
    }

    #[test]
    fn many_short_lines_take_linear_time() {
        // 400 000 newlines then a request: quadratic draining took minutes.
        let mut data = vec![b'\n'; 400_000];
        data.extend_from_slice(b"x\n");
        let mut b = LineBuffer::new(1 << 20);
        let t = std::time::Instant::now();
        let mut n = 0;
        for chunk in data.chunks(16 * 1024) {
            b.push(chunk);
            while let Some(l) = b.next_line() {
                n += 1;
                assert!(l.is_ok());
            }
        }
        assert_eq!(n, 400_001);
        assert!(t.elapsed() < std::time::Duration::from_secs(2));
    }
}
