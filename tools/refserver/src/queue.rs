//! A client's send queue: chunks of bytes waiting for its socket.
//!
//! Relays push at the back; the engine sends from the front, many chunks per system call,
//! and [`Queue::advance`] drops what the socket took, keeping the offset into a chunk that
//! went out in part. The queue counts its unsent bytes, so the slow-consumer rule is one
//! comparison. The chunks are shared frames ([`TxQueue`], epoll and io_uring) or the pieces
//! of the sendfile engine (its clients' frames and byte ranges of a room's log).

use std::collections::VecDeque;

use crate::{fanout::SendQueue, frame::Frame};

/// Slots kept when a queue empties; a queue that grew beyond this during a burst gives the
/// memory back, so an idle client costs almost nothing.
const KEEP_SLOTS: usize = 64;

/// What a queue holds: some bytes to send, in one piece.
pub trait Chunk: Clone {
    /// Its length in bytes.
    fn len(&self) -> usize;

    /// Takes `next`, the chunk about to be queued after this one, into this one if they are
    /// one run of bytes; returns whether it did.
    fn absorb(&mut self, _next: &Self) -> bool {
        false
    }
}

impl Chunk for Frame {
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }
}

/// Chunks waiting to be sent, oldest first.
#[derive(Debug)]
pub struct Queue<T> {
    chunks: VecDeque<T>,
    /// Bytes of the oldest chunk already sent.
    offset: usize,
    /// Bytes queued and not yet sent.
    bytes: usize,
}

/// The send queue of the epoll and io_uring engines: shared frames.
pub type TxQueue = Queue<Frame>;

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Self {
            chunks: VecDeque::new(),
            offset: 0,
            bytes: 0,
        }
    }
}

/// A frame for the client alone becomes a chunk; a broadcast frame is shared as a chunk
/// (the frame itself, or the piece of a log that holds it) and merged into the last one
/// where it continues it.
impl<T: Chunk + From<Frame>> SendQueue for Queue<T> {
    type Shared = T;

    fn bytes(&self) -> usize {
        self.bytes
    }

    fn push(&mut self, frame: Frame) {
        self.push_chunk(T::from(frame));
    }

    fn push_shared(&mut self, shared: &T) {
        self.bytes += shared.len();
        let absorbed = self
            .chunks
            .back_mut()
            .is_some_and(|last| last.absorb(shared));
        if !absorbed {
            self.chunks.push_back(shared.clone());
        }
    }

    fn clear(&mut self) {
        self.chunks = VecDeque::new();
        self.offset = 0;
        self.bytes = 0;
    }
}

impl<T: Chunk> Queue<T> {
    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Appends a chunk as it is.
    fn push_chunk(&mut self, chunk: T) {
        self.bytes += chunk.len();
        self.chunks.push_back(chunk);
    }

    /// The unsent bytes, front first: each chunk with the offset its unsent part starts at.
    pub fn pending(&self) -> impl Iterator<Item = (&T, usize)> {
        self.chunks
            .iter()
            .enumerate()
            .map(|(i, c)| (c, if i == 0 { self.offset } else { 0 }))
    }

    /// Drops `n` sent bytes from the front.
    pub fn advance(&mut self, mut n: usize) {
        self.bytes = self.bytes.saturating_sub(n);
        while let Some(front) = self.chunks.front() {
            let left = front.len() - self.offset;
            if n < left {
                self.offset += n;
                return;
            }
            n -= left;
            self.offset = 0;
            self.chunks.pop_front();
        }
        self.bytes = 0;
        if self.chunks.capacity() > KEEP_SLOTS {
            self.chunks = VecDeque::new();
        }
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
        q.push_shared(&build(&[b"cde"]));
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
