// SPDX-License-Identifier: GPL-2.0
//! What the connection threads tell the bridge's core, over one bounded channel (a full
//! channel makes the readers wait, so TCP pushes back on kchat and NATS instead of memory
//! growing).

/// One thing that happened.
#[derive(Debug)]
pub enum Event {
    /// kchat answered `=link`: link generation `gen` is up, the snapshot follows.
    KchatUp { gen: u64 },
    /// The frames kchat sent on link generation `gen` that one read brought, in order (one
    /// event per read, not per frame: each event costs the reader and the core a wake-up).
    KchatFrames { gen: u64, frames: Vec<Vec<u8>> },
    /// Link generation `gen` is gone.
    KchatDown { gen: u64 },
    /// Connected to a NATS server, subscribed, and it answered our first `PING`.
    NatsUp,
    /// Messages on subjects we subscribed to, (subject, payload) in order: what one read
    /// brought.
    NatsMsgs(Vec<(String, Vec<u8>)>),
    /// The NATS connection that was up is gone.
    NatsDown,
    /// SIGTERM or SIGINT.
    Signal(i32),
}

/// How many events may wait for the core. A batch is what one read of at most
/// [`READ_BYTES`] decoded (plus at most one frame begun in the read before), so the channel
/// holds about `CHANNEL_BOUND` x (`READ_BYTES` + the longest frame) bytes at most.
pub const CHANNEL_BOUND: usize = 64;

/// The most one read of a reader thread asks for.
pub const READ_BYTES: usize = 64 * 1024;
