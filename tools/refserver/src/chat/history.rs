//! A room's history: its last chat messages, as they were relayed, within bounds.

use std::collections::VecDeque;

use crate::frame::Frame;

/// Bytes of frames (headers included) one room's history may hold.
pub const MAX_HISTORY_BYTES: usize = 64 * 1024;

/// The last chat messages of a room, oldest first: at most `history` of them and at most
/// [`MAX_HISTORY_BYTES`] of frames.
///
/// The messages kept are always the most recent ones without a gap: a message that cannot be
/// kept at all (a frame over the byte bound) empties the history, so that a replay never
/// skips a message that a newer replayed one came after.
#[derive(Debug, Default)]
pub struct History {
    frames: VecDeque<Frame>,
    bytes: usize,
}

impl History {
    /// Adds the relayed `frame`, dropping the oldest messages to stay within `max_msgs`
    /// messages and [`MAX_HISTORY_BYTES`].
    pub fn record(&mut self, frame: &Frame, max_msgs: usize) {
        if max_msgs == 0 {
            return;
        }
        if frame.len() > MAX_HISTORY_BYTES {
            self.clear();
            return;
        }
        while self.frames.len() >= max_msgs || self.bytes + frame.len() > MAX_HISTORY_BYTES {
            let Some(old) = self.frames.pop_front() else {
                break;
            };
            self.bytes -= old.len();
        }
        self.bytes += frame.len();
        self.frames.push_back(frame.clone());
    }

    /// The messages kept, oldest first.
    pub fn frames(&self) -> impl ExactSizeIterator<Item = &Frame> {
        self.frames.iter()
    }

    fn clear(&mut self) {
        self.frames.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::build;

    fn payloads(h: &History) -> Vec<Vec<u8>> {
        h.frames().map(|f| f[4..].to_vec()).collect()
    }

    #[test]
    fn count_bound() {
        let mut h = History::default();
        for p in [b"a", b"b", b"c", b"d"] {
            h.record(&build(&[p]), 3);
        }
        assert_eq!(payloads(&h), [b"b", b"c", b"d"]);
        assert_eq!((h.frames.len(), h.bytes), (3, 15));
        let mut off = History::default();
        off.record(&build(&[b"x"]), 0);
        assert!(off.frames.is_empty());
    }

    #[test]
    fn byte_bound() {
        let mut h = History::default();
        // Frames of 30 000 bytes: two fit in 64 KiB, three do not.
        let big = vec![b'x'; 30_000 - 4];
        for _ in 0..3 {
            h.record(&build(&[&big]), 20);
        }
        assert_eq!((h.frames.len(), h.bytes), (2, 60_000));
        h.record(&build(&[b"small"]), 20);
        assert_eq!(h.frames.len(), 3);
        // A frame over the bound empties the history: nothing older may be replayed without it.
        h.record(&build(&[&vec![b'y'; MAX_HISTORY_BYTES]]), 20);
        assert_eq!((h.frames.len(), h.bytes), (0, 0));
        h.record(&build(&[b"after"]), 20);
        assert_eq!(payloads(&h), [b"after"]);
    }
}
