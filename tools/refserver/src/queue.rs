//! A client's send queue: shared frames waiting for its socket.
//!
//! Relays push at the back; the engine sends from the front, many frames per `writev` /
//! `sendmsg`, and [`TxQueue::advance`] drops what the socket took, keeping the offset into a
//! frame that went out in part. The queue counts its unsent bytes, so the slow-consumer rule is
//! one comparison.

use std::collections::VecDeque;

use crate::frame::Frame;

/// Slots kept when a queue empties; a queue that grew beyond this during a burst gives the
/// memory back, so an idle client costs almost nothing.
const KEEP_SLOTS: usize = 64;

/// Frames waiting to be sent, oldest first.
#[derive(Debug, Default)]
pub struct TxQueue {
    frames: VecDeque<Frame>,
    /// Bytes of the oldest frame already sent.
    offset: usize,
    /// Bytes queued and not yet sent.
    bytes: usize,
}

impl TxQueue {
    /// Bytes queued and not yet sent.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Whether `len` more bytes fit under `max`: they do if the queue is empty (one frame
    /// larger than the limit is allowed into an empty queue) or the total stays within it.
    pub fn fits(&self, len: usize, max: usize) -> bool {
        self.bytes == 0 || self.bytes + len <= max
    }

    /// Appends a frame.
    pub fn push(&mut self, frame: Frame) {
        self.bytes += frame.len();
        self.frames.push_back(frame);
    }

    /// The unsent bytes, front first: each frame with the offset its unsent part starts at.
    pub fn pending(&self) -> impl Iterator<Item = (&Frame, usize)> {
        self.frames
            .iter()
            .enumerate()
            .map(|(i, f)| (f, if i == 0 { self.offset } else { 0 }))
    }

    /// Drops `n` sent bytes from the front.
    pub fn advance(&mut self, mut n: usize) {
        self.bytes = self.bytes.saturating_sub(n);
        while let Some(front) = self.frames.front() {
            let left = front.len() - self.offset;
            if n < left {
                self.offset += n;
                return;
            }
            n -= left;
            self.offset = 0;
            self.frames.pop_front();
        }
        self.bytes = 0;
        if self.frames.capacity() > KEEP_SLOTS {
            self.frames = VecDeque::new();
        }
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        self.frames = VecDeque::new();
        self.offset = 0;
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::build;

    #[test]
    fn partial_sends_keep_order() {
        let mut q = TxQueue::default();
        q.push(build(&[b"ab"]));
        q.push(build(&[b"cde"]));
        assert_eq!(q.bytes(), 13);
        q.advance(5);
        let rest: Vec<u8> = q.pending().flat_map(|(f, at)| f[at..].to_vec()).collect();
        assert_eq!(rest, b"b\x03\x00\x00\x00cde");
        assert_eq!(q.bytes(), 8);
        q.advance(8);
        assert!(q.is_empty());
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn limit() {
        let mut q = TxQueue::default();
        assert!(q.fits(10_000, 100), "an empty queue takes one big frame");
        q.push(build(&[&[0; 90]]));
        assert!(!q.fits(10, 100));
        assert!(q.fits(6, 100));
    }
}
