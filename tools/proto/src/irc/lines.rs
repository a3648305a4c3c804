//! Splitting a byte stream into IRC lines: CR LF or a bare LF ends a line, and a line may be
//! at most a bounded number of bytes, its terminator included.

use crate::StreamBuf;

/// A line passed the splitter's bound; it was discarded up to its LF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineTooLong;

impl std::fmt::Display for LineTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("line too long")
    }
}

impl std::error::Error for LineTooLong {}

/// Splits a byte stream into lines: feed it what arrived, take complete lines.
///
/// A line ends at LF; a CR just before the LF is removed with it (a CR elsewhere stays in
/// the line). A line whose LF does not come within `max` bytes (the terminator counted) is
/// reported once as [`LineTooLong`] and dropped as it arrives, up to and including its LF,
/// so the splitter never holds more than `max` bytes of a line. Bytes are kept in a
/// [`StreamBuf`] and lines are returned in place, like [`crate::Decoder`] frames.
#[derive(Debug)]
pub struct LineSplitter {
    buf: StreamBuf,
    /// Unread bytes already searched for a LF.
    scanned: usize,
    max: usize,
    /// Inside a line that was too long: drop everything up to the next LF.
    discarding: bool,
}

impl LineSplitter {
    /// A splitter for lines of at most `max` bytes, CR LF included.
    ///
    /// # Panics
    ///
    /// If `max` is 0.
    pub fn new(max: usize) -> Self {
        assert!(max > 0, "a line needs room for its LF");
        Self {
            buf: StreamBuf::new(),
            scanned: 0,
            max,
            discarding: false,
        }
    }

    /// The buffer to receive into ([`StreamBuf::spare`], [`StreamBuf::filled`],
    /// [`StreamBuf::extend`]); lines are taken with [`LineSplitter::next_line`].
    pub fn buffer(&mut self) -> &mut StreamBuf {
        &mut self.buf
    }

    /// The next line, without its CR LF or LF (it may be empty); `Some(Err(LineTooLong))`
    /// once for each line over the bound; `None` if more bytes are needed.
    pub fn next_line(&mut self) -> Option<Result<&[u8], LineTooLong>> {
        loop {
            let unread = self.buf.unread();
            let Some(i) = memchr::memchr(b'\n', &unread[self.scanned..]) else {
                let held = unread.len();
                if self.discarding {
                    self.buf.consume(held);
                    self.scanned = 0;
                    return None;
                }
                if held >= self.max {
                    // Even its LF would not fit: report it now, drop the rest as it comes.
                    self.discarding = true;
                    self.buf.consume(held);
                    self.scanned = 0;
                    return Some(Err(LineTooLong));
                }
                self.scanned = held;
                return None;
            };
            let len = self.scanned + i + 1;
            self.scanned = 0;
            if self.discarding || len > self.max {
                self.buf.consume(len);
                if std::mem::take(&mut self.discarding) {
                    continue;
                }
                return Some(Err(LineTooLong));
            }
            let line = &self.buf.take(len)[..len - 1];
            return Some(Ok(line.strip_suffix(b"\r").unwrap_or(line)));
        }
    }

    /// Bytes received but not yet returned as lines (none of a line being discarded).
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines of `stream` fed in pieces of `chunk` bytes to a splitter with bound `max`,
    /// as text (`TOO LONG` for each line over the bound).
    fn split(stream: &[u8], chunk: usize, max: usize) -> Vec<String> {
        let mut s = LineSplitter::new(max);
        let mut got = Vec::new();
        for piece in stream.chunks(chunk) {
            s.buffer().extend(piece);
            while let Some(line) = s.next_line() {
                got.push(match line {
                    Ok(l) => String::from_utf8_lossy(l).into_owned(),
                    Err(LineTooLong) => "TOO LONG".into(),
                });
            }
        }
        got
    }

    /// Checks CR LF and bare LF lines, empty lines, a CR inside a line, and a last line with
    /// no terminator yet (held back), split at every chunk size from one byte up.
    #[test]
    fn terminators_at_any_split() {
        let stream = b"PING :a\r\nNICK b\n\r\n\nX a\rb\r\nPART";
        let want = ["PING :a", "NICK b", "", "", "X a\rb"];
        for chunk in 1..=stream.len() {
            assert_eq!(split(stream, chunk, 512), want, "chunk {chunk}");
        }
        let mut s = LineSplitter::new(512);
        s.buffer().extend(stream);
        while s.next_line().is_some() {}
        assert_eq!(s.pending(), 4, "PART waits for its LF");
    }

    /// Checks the bound: a line of exactly `max` bytes with its CR LF passes, one byte more
    /// does not; a line over the bound is reported once whether its LF arrives with it or
    /// much later, is never buffered past the bound, and the lines around it are intact.
    #[test]
    fn bound() {
        let max = 16;
        let fits = format!("{}\r\n", "a".repeat(max - 2));
        let over = format!("{}\r\n", "b".repeat(max - 1));
        let huge = format!("{}\n", "c".repeat(10 * max));
        let stream = format!("{fits}{over}x\n{huge}y\r\n");
        let want = ["a".repeat(max - 2), "TOO LONG".into(), "x".into()];
        let want: Vec<String> = want
            .into_iter()
            .chain(["TOO LONG".into(), "y".into()])
            .collect();
        for chunk in 1..=stream.len() {
            assert_eq!(split(stream.as_bytes(), chunk, max), want, "chunk {chunk}");
        }
        let mut s = LineSplitter::new(max);
        for _ in 0..100 {
            s.buffer().extend(b"zzzzzzzzzz");
            while s.next_line().is_some() {}
            assert!(s.pending() < max, "{} bytes held", s.pending());
        }
        s.buffer().extend(b"\nok\n");
        assert_eq!(s.next_line(), Some(Ok(&b"ok"[..])));
    }

    /// Checks that bytes received straight into `spare` are split like `extend`ed ones.
    #[test]
    fn spare_and_filled() {
        let mut s = LineSplitter::new(512);
        let spare = s.buffer().spare(64);
        spare[..6].copy_from_slice(b"A\r\nB\nC");
        s.buffer().filled(6);
        assert_eq!(s.next_line(), Some(Ok(&b"A"[..])));
        assert_eq!(s.next_line(), Some(Ok(&b"B"[..])));
        assert_eq!(s.next_line(), None);
        assert_eq!(s.pending(), 1);
    }
}
