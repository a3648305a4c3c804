// SPDX-License-Identifier: GPL-2.0

//! A client's send queue: shared frames waiting to be written to its socket.
//!
//! A ring of `Arc<Frame>`: broadcasters push at the back, the shard loop sends from the
//! front, many frames per send, and [`TxQueue::advance`] drops what the socket took, keeping
//! the offset into a frame that went out only in part. The queue counts its unsent bytes so
//! that the slow-consumer limit is a comparison. An emptied queue keeps a small ring (up to
//! [`KEEP_SLOTS`] slots) for the next burst and frees a larger one, so an idle client costs
//! little queue memory and a busy one does not reallocate on every round.

use kernel::{
    prelude::*,
    sync::Arc, //
};

use crate::frame::Frame;

/// Slots allocated for the first frame; the ring doubles from there.
const INITIAL_SLOTS: usize = 16;

/// The largest ring an emptied queue keeps (512 bytes of slots).
const KEEP_SLOTS: usize = 64;

/// Frames waiting to be sent, oldest first.
pub(crate) struct TxQueue {
    /// Ring storage; its length (a power of two, or 0) is the capacity.
    slots: KVec<Option<Arc<Frame>>>,
    /// Index of the oldest frame.
    head: usize,
    /// Frames queued.
    len: usize,
    /// Bytes of the oldest frame already sent.
    offset: usize,
    /// Bytes queued and not yet sent.
    bytes: usize,
}

impl TxQueue {
    /// An empty queue; allocates nothing.
    pub(crate) const fn new() -> Self {
        Self {
            slots: KVec::new(),
            head: 0,
            len: 0,
            offset: 0,
            bytes: 0,
        }
    }

    /// Bytes queued and not yet sent.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends a frame.
    pub(crate) fn push(&mut self, frame: Arc<Frame>) -> Result {
        if self.len == self.slots.len() {
            self.grow()?;
        }
        let mask = self.slots.len() - 1;
        self.bytes += frame.len();
        self.slots[(self.head + self.len) & mask] = Some(frame);
        self.len += 1;
        Ok(())
    }

    /// Doubles the ring, keeping the frames in order at the start of the new storage.
    fn grow(&mut self) -> Result {
        let cap = (self.slots.len() * 2).max(INITIAL_SLOTS);
        let mut slots = KVec::with_capacity(cap, GFP_KERNEL)?;
        for i in 0..self.len {
            let at = (self.head + i) & (self.slots.len() - 1);
            slots.push(self.slots[at].take(), GFP_KERNEL)?;
        }
        slots.extend_with(cap - self.len, None, GFP_KERNEL)?;
        self.slots = slots;
        self.head = 0;
        Ok(())
    }

    /// The unsent bytes of up to `max` frames from the front, in order.
    pub(crate) fn front(&self, max: usize) -> impl Iterator<Item = &[u8]> {
        let mask = self.slots.len().wrapping_sub(1);
        (0..self.len.min(max)).filter_map(move |i| {
            let frame = self.slots[(self.head + i) & mask].as_ref()?;
            let skip = if i == 0 { self.offset } else { 0 };
            Some(&frame.as_bytes()[skip..])
        })
    }

    /// Drops `sent` bytes from the front: whole frames, then part of the next one. Returns
    /// how many frames were completed.
    pub(crate) fn advance(&mut self, mut sent: usize) -> usize {
        let mut done = 0;
        self.bytes -= sent.min(self.bytes);
        while sent > 0 && self.len > 0 {
            let mask = self.slots.len() - 1;
            let Some(frame) = self.slots[self.head].as_ref() else {
                break;
            };
            let left = frame.len() - self.offset;
            if sent < left {
                self.offset += sent;
                return done;
            }
            sent -= left;
            self.slots[self.head] = None;
            self.head = (self.head + 1) & mask;
            self.len -= 1;
            self.offset = 0;
            done += 1;
        }
        if self.len == 0 {
            self.head = 0;
            self.offset = 0;
            self.bytes = 0;
            if self.slots.len() > KEEP_SLOTS {
                self.slots = KVec::new();
            }
        }
        done
    }

    /// Whether the oldest frame went out in part (a new frame must not be written before it).
    #[cfg(CONFIG_KUNIT)]
    pub(crate) fn mid_frame(&self) -> bool {
        self.offset != 0
    }

    /// Drops every frame and frees the storage.
    pub(crate) fn clear(&mut self) {
        self.slots = KVec::new();
        self.head = 0;
        self.len = 0;
        self.offset = 0;
        self.bytes = 0;
    }
}

#[kunit_tests(kchat_txqueue)]
mod tests {
    use super::*;

    fn frame(n: usize) -> Result<Arc<Frame>> {
        // A text frame of 4 + n bytes.
        let spaces = [b' '; 32];
        let text = core::str::from_utf8(&spaces[..n]).map_err(|_| EINVAL)?;
        let f = Frame::text(fmt!("{text}"))?;
        Ok(Arc::new(f, GFP_KERNEL)?)
    }

    fn front_len(q: &TxQueue) -> usize {
        q.front(usize::MAX).map(<[u8]>::len).sum()
    }

    #[test]
    fn push_send_in_pieces() -> Result {
        let mut q = TxQueue::new();
        for n in 0..20 {
            q.push(frame(n)?)?;
        }
        // 20 headers plus 0 + 1 + ... + 19 payload bytes.
        let total = 20 * 4 + 190;
        assert_eq!(q.bytes(), total);
        let front = front_len(&q);
        assert_eq!(front, total);
        // Send in odd pieces, through frame boundaries.
        let mut left = total;
        for piece in [1, 3, 4, 7, 50, 100] {
            q.advance(piece);
            left -= piece;
            assert_eq!(q.bytes(), left);
            let front = front_len(&q);
            assert_eq!(front, left);
        }
        q.advance(left);
        let empty = q.is_empty();
        assert!(empty);
        // A small ring is kept for the next burst.
        let cap = q.slots.len();
        let kept = cap > 0 && cap <= KEEP_SLOTS;
        assert!(kept);
        q.clear();
        let cap = q.slots.len();
        assert_eq!(cap, 0);
        Ok(())
    }

    #[test]
    fn wraps_around() -> Result {
        let mut q = TxQueue::new();
        for round in 0..50 {
            q.push(frame(round % 5)?)?;
            q.push(frame(1)?)?;
            // Send the older of the two whole frames.
            let first = q.front(1).next().map_or(0, <[u8]>::len);
            q.advance(first);
            let len = q.len;
            assert_eq!(len, round + 1);
        }
        let cap = q.slots.len();
        assert!(cap >= 50);
        let mid = q.mid_frame();
        assert!(!mid);
        Ok(())
    }
}
