// SPDX-License-Identifier: GPL-2.0

//! The send side: queueing shared frames for a client (and the slow-consumer rule), and the
//! shard loop's sends of everything queued, many frames per `sock_sendmsg`. Room messages
//! are in their room's log; frames for one client alone (replies, errors, private messages)
//! are copied into the server's notes log as they are queued, so that they splice in the same
//! send as the room's messages.
//!
//! Broadcasters push into `tx` under its lock, which is never held across a send. The shard
//! loop swaps `tx` into `out` (its own, under the shard's [`Owner`]) and sends from there, so a
//! broadcaster never waits for a socket.

use kernel::{
    prelude::*,
    sync::{
        atomic::Relaxed,
        Arc, //
    },
};

use super::{
    Client,
    CloseReason, //
};
use crate::{
    frame::Frame,
    net::{
        IoVecs,
        Segment, //
    },
    pages::LogSlice,
    shard::Owner,
    txqueue::TxQueue, //
};

/// Bytes sent to one client per turn before it goes to the back of the dirty list.
const TX_BUDGET: usize = 1024 * 1024;

/// A link may queue this many times `max_queue_bytes` before it is dropped as a slow
/// consumer: it is told every room message and event of its node.
const LINK_QUEUE_FACTOR: usize = 16;

impl Client {
    /// Queues `frame`, which is for this client alone (a reply, an error, a private message),
    /// for sending; see [`Client::enqueue_frames`]. It is copied into the notes log on the way
    /// (see [`Client::note`]).
    pub(crate) fn enqueue(this: &Arc<Self>, frame: &Arc<Frame>) -> bool {
        Self::enqueue_frames(this, core::iter::once(frame), true).0 == 1
    }

    /// Queues `frames`, in order, under one lock; returns how many it took and their bytes.
    /// `private`: the frames are for this client alone, and are copied into the notes log
    /// (shared frames are not: that would copy one frame once per recipient, and scatter
    /// each recipient's frames over the log; they are copied when sent, as before).
    ///
    /// A client whose queue would pass `max_queue_bytes` (as [`TxQueue::charge`] counts it:
    /// bytes, or the log pages they keep) is disconnected as a slow consumer
    /// instead, and takes nothing more; nobody waits for it. A single frame larger than the
    /// limit is still accepted into an empty queue. A client being disconnected takes
    /// nothing (its queue has been emptied for good).
    pub(crate) fn enqueue_frames<'a>(
        this: &Arc<Self>,
        frames: impl Iterator<Item = &'a Arc<Frame>>,
        private: bool,
    ) -> (u64, u64) {
        let max = usize::try_from(this.server.params.max_queue_bytes).unwrap_or(usize::MAX);
        // A link carries its whole node's traffic (and, at first, its roster).
        let max = if this.is_link() {
            max.saturating_mul(LINK_QUEUE_FACTOR)
        } else {
            max
        };
        let mut tx = this.tx.lock();
        if this.is_closing() {
            return (0, 0);
        }
        let out = this.out_charge.load(Relaxed);
        let was_empty = tx.is_empty();
        let (mut n, mut bytes) = (0, 0);
        for frame in frames {
            let queued = tx.charge() + out;
            if queued > 0 && queued + frame.len() > max {
                drop(tx);
                let reason = CloseReason::SlowConsumer(u32::try_from(queued).unwrap_or(u32::MAX));
                if Self::close(this, reason) {
                    this.server.core.stats.slow_consumers.add(1, Relaxed);
                }
                return (n, bytes);
            }
            let note = if private { this.note(frame) } else { None };
            let pushed = match note {
                Some(slice) => tx.push_slice(&slice),
                None => tx.push(frame),
            };
            if pushed.is_err() {
                drop(tx);
                Self::close(this, CloseReason::NoMemory);
                return (n, bytes);
            }
            n += 1;
            bytes += frame.len() as u64;
        }
        drop(tx);
        if was_empty && n > 0 {
            this.server.mark_dirty(this.as_arc_borrow());
        }
        (n, bytes)
    }

    /// `frame` (for this client alone) copied into the server's notes log, if it goes there:
    /// sends splice (the
    /// `zerocopy` parameter), and it is in its own buffer, of at most half a page. Room
    /// messages are in their room's log already; a frame for which no page can be had is
    /// queued as it is (and copied when sent), like a longer one.
    fn note(&self, frame: &Frame) -> Option<LogSlice> {
        if !self.server.params.zerocopy || frame.log_slice().is_some() {
            return None;
        }
        self.server
            .notes
            .lock()
            .append(frame.as_bytes())
            .ok()
            .flatten()
    }

    /// The shard loop's call: sends what is queued, until nothing is left, the socket is full
    /// (`sk_write_space` marks the client dirty again) or the budget is spent (then it is
    /// marked dirty again at once, behind the others). Frames queued while it sends wait in
    /// `tx` for the next round, which they make larger.
    pub(crate) fn flush_queue(this: &Arc<Self>, owner: &mut Owner, iov: &mut IoVecs) {
        let out = this.out.access_mut(owner);
        let mut budget = TX_BUDGET;
        let result = loop {
            if this.is_closing() || this.server.is_closing() {
                return;
            }
            if out.is_empty() {
                let mut tx = this.tx.lock();
                if tx.is_empty() {
                    break Ok(false);
                }
                core::mem::swap(&mut *tx, out);
            }
            let before = out.bytes();
            let r = this.flush(iov, out, budget);
            budget = budget.saturating_sub(before - out.bytes());
            this.out_charge.store(out.charge(), Relaxed);
            match r {
                // Sent everything: look for frames queued meanwhile.
                Ok(false) if out.is_empty() => continue,
                other => break other,
            }
        };
        match result {
            Ok(false) => {}
            Ok(true) => this.server.mark_dirty(this.as_arc_borrow()),
            Err(reason) => {
                Self::close(this, reason);
            }
        }
    }

    /// Sends from `queue` until it is empty, the socket is full, or `budget` bytes went out.
    /// Returns whether the budget ran out with frames left.
    fn flush(
        &self,
        iov: &mut IoVecs,
        queue: &mut TxQueue,
        mut budget: usize,
    ) -> Result<bool, CloseReason> {
        while !queue.is_empty() {
            if budget == 0 {
                return Ok(true);
            }
            let splice = matches!(queue.front(1).next(), Some(Segment::Splice { .. }));
            let sent = match self.sock.send_segments(iov, queue.front(IoVecs::BATCH)) {
                Ok(n) => n,
                Err(e) if e == EAGAIN => return Ok(false),
                Err(e) => return Err(CloseReason::SendError(e.to_errno())),
            };
            let frames = queue.advance(sent);
            let stats = &self.server.core.stats;
            stats.sends.add(1, Relaxed);
            stats.sent_frames.add(frames as u64, Relaxed);
            if splice {
                stats.spliced_sends.add(1, Relaxed);
            }
            self.bytes_out.add(sent as u64, Relaxed);
            budget = budget.saturating_sub(sent);
        }
        Ok(false)
    }

    /// Tries once, without waiting, to send what is queued and then `last` (a final notice),
    /// if any; then drops everything queued.
    pub(super) fn last_word(&self, owner: &mut Owner, last: Option<Frame>) {
        let out = self.out.access_mut(owner);
        let mut tx = self.tx.lock();
        if let Some(frame) = last.and_then(|f| Arc::new(f, GFP_KERNEL).ok()) {
            if tx.push(&frame).is_err() {
                return;
            }
        }
        // What is being sent goes first, then what waits, then the notice. One try, with the
        // few buffers a small table holds: whatever does not fit now is not waited for.
        let mut iov = IoVecs::small();
        if self.flush(&mut iov, out, TX_BUDGET) == Ok(false) && out.is_empty() {
            let _ = self.flush(&mut iov, &mut tx, TX_BUDGET);
        }
    }

    /// Drops everything queued, for good.
    pub(super) fn clear_queues(&self, owner: &mut Owner) {
        self.out.access_mut(owner).clear();
        self.out_charge.store(0, Relaxed);
        self.tx.lock().clear();
    }
}
