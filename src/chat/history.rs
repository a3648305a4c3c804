// SPDX-License-Identifier: GPL-2.0

//! A room's history: its last chat messages, replayed to a client entering it.
//!
//! Bounded twice: at most `history` messages (the module parameter) and at most
//! [`HISTORY_BYTES`] bytes of frames; the oldest go first. The frames are the ones that were
//! relayed (shared with the send queues, not copied).

use kernel::prelude::*;

use super::Message;

/// Most bytes of frames one room's history holds.
pub(crate) const HISTORY_BYTES: usize = 64 * 1024;

/// The last messages of a room, oldest first.
pub(crate) struct History {
    /// Ring storage; its length (a power of two, or 0) is the capacity.
    slots: KVec<Option<Message>>,
    head: usize,
    len: usize,
    /// Bytes of the frames held.
    bytes: usize,
}

impl History {
    pub(crate) const fn new() -> Self {
        Self {
            slots: KVec::new(),
            head: 0,
            len: 0,
            bytes: 0,
        }
    }

    /// Messages held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Bytes of the frames held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Appends `msg`, dropping the oldest messages beyond `keep` messages or
    /// [`HISTORY_BYTES`]. Without memory to grow, the oldest message makes room. A message
    /// larger than the byte bound alone is not kept (nor is anything else).
    pub(crate) fn push(&mut self, msg: &Message, keep: usize) {
        let size = msg.bytes();
        if keep == 0 || size > HISTORY_BYTES {
            self.clear();
            return;
        }
        while self.len > 0 && (self.len >= keep || self.bytes + size > HISTORY_BYTES) {
            self.pop();
        }
        if self.len == self.slots.len() && self.grow(keep).is_err() && self.pop().is_none() {
            return;
        }
        let mask = self.slots.len() - 1;
        self.slots[(self.head + self.len) & mask] = Some(msg.clone());
        self.len += 1;
        self.bytes += size;
    }

    /// Drops the oldest message.
    fn pop(&mut self) -> Option<Message> {
        if self.len == 0 {
            return None;
        }
        let mask = self.slots.len() - 1;
        let msg = self.slots[self.head].take()?;
        self.head = (self.head + 1) & mask;
        self.len -= 1;
        self.bytes -= msg.bytes();
        Some(msg)
    }

    /// Doubles the ring (up to the next power of two of `keep`), keeping the order.
    fn grow(&mut self, keep: usize) -> Result {
        let cap = (self.slots.len() * 2).clamp(4, keep.next_power_of_two().max(4));
        if cap <= self.slots.len() {
            return Err(ENOSPC);
        }
        let mut slots = KVec::with_capacity(cap, GFP_KERNEL | __GFP_NOWARN)?;
        let old = self.slots.len();
        for i in 0..self.len {
            let _ = slots.push_within_capacity(self.slots[(self.head + i) & (old - 1)].take());
        }
        while slots.len() < cap {
            let _ = slots.push_within_capacity(None);
        }
        self.slots = slots;
        self.head = 0;
        Ok(())
    }

    /// The messages, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Message> {
        let mask = self.slots.len().wrapping_sub(1);
        (0..self.len).filter_map(move |i| self.slots[(self.head + i) & mask].as_ref())
    }

    /// Drops everything.
    pub(crate) fn clear(&mut self) {
        self.slots = KVec::new();
        self.head = 0;
        self.len = 0;
        self.bytes = 0;
    }
}
