//! A receive buffer for a byte stream: bytes are read straight into it and consumed in
//! place, so many messages per read cost no copy and no allocation.

/// Bytes received from a stream and not yet consumed.
///
/// One buffer, allocated once and grown (doubling) only for a message that does not fit;
/// what is left unconsumed moves to the front when room is needed.
#[derive(Debug, Default)]
pub struct StreamBuf {
    /// Storage; `data[start..end]` holds bytes received and not yet consumed.
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl StreamBuf {
    /// An empty buffer (nothing is allocated until bytes arrive).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds received bytes.
    pub fn extend(&mut self, bytes: &[u8]) {
        let spare = self.spare(bytes.len());
        spare[..bytes.len()].copy_from_slice(bytes);
        self.filled(bytes.len());
    }

    /// Room to receive at least `at_least` bytes into directly; then call
    /// [`StreamBuf::filled`] with the count received.
    pub fn spare(&mut self, at_least: usize) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.data.len() - self.end < at_least {
            // Move the unconsumed tail to the front, then grow if that is not enough.
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.data.len() - self.end < at_least {
                let want = (self.end + at_least).max(self.data.len() * 2);
                self.data.resize(want, 0);
            }
        }
        &mut self.data[self.end..]
    }

    /// Declares that `n` bytes were written at the start of the last [`StreamBuf::spare`].
    ///
    /// # Panics
    ///
    /// If that is more than the room there was.
    pub fn filled(&mut self, n: usize) {
        self.end += n;
        assert!(
            self.end <= self.data.len(),
            "filled more than the spare room"
        );
    }

    /// The bytes received and not yet consumed.
    pub fn unread(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    /// Consumes the first `n` unread bytes and returns them (they stay valid until the
    /// buffer is next written to).
    ///
    /// # Panics
    ///
    /// If fewer than `n` bytes are unread.
    pub fn take(&mut self, n: usize) -> &[u8] {
        assert!(n <= self.len(), "took more than was unread");
        self.start += n;
        &self.data[self.start - n..self.start]
    }

    /// Parses the unread bytes with `parse`, which returns a value (borrowing them) and how
    /// many bytes it took, or `None` if more are needed; consumes those bytes.
    pub fn consume_with<'a, T, E>(
        &'a mut self,
        parse: impl FnOnce(&'a [u8]) -> Result<Option<(T, usize)>, E>,
    ) -> Result<Option<T>, E> {
        let unread = &self.data[self.start..self.end];
        let Some((v, n)) = parse(unread)? else {
            return Ok(None);
        };
        assert!(n <= unread.len(), "parsed more than was unread");
        self.start += n;
        Ok(Some(v))
    }

    /// Consumes the first `n` unread bytes.
    pub fn consume(&mut self, n: usize) {
        self.take(n);
    }

    /// How many bytes are unread.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// True if every byte received was consumed.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks that unconsumed bytes survive the moves and growth that make room, whatever
    /// was consumed before, and that taking returns exactly the bytes consumed.
    #[test]
    fn room_keeps_unread_bytes() {
        let mut b = StreamBuf::new();
        b.extend(b"abcdef");
        assert_eq!(b.take(4), b"abcd");
        let spare = b.spare(100);
        assert!(spare.len() >= 100);
        spare[..3].copy_from_slice(b"ghi");
        b.filled(3);
        assert_eq!(b.unread(), b"efghi");
        b.consume(5);
        assert!(b.is_empty());
        b.extend(&[7; 1000]);
        assert_eq!((b.len(), b.unread()[999]), (1000, 7));
        let first = |s: &[u8]| Ok::<_, ()>(s.first().map(|&v| (v, 600)));
        assert_eq!(b.consume_with(first), Ok(Some(7)));
        assert_eq!(b.len(), 400);
        b.consume(400);
        assert_eq!(b.consume_with(first), Ok(None));
    }
}
