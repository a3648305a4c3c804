// SPDX-License-Identifier: GPL-2.0
//! What the connection threads tell the bridge's core, over one bounded channel (a full
//! channel makes the readers wait, so TCP pushes back on kchat and NATS instead of memory
//! growing).

/// One thing that happened.
#[derive(Debug)]
pub enum Event {
    /// kchat answered `=link`: link generation `gen` is up, the snapshot follows.
    KchatUp { gen: u64 },
    /// A frame kchat sent on link generation `gen`.
    KchatFrame { gen: u64, frame: Vec<u8> },
    /// Link generation `gen` is gone.
    KchatDown { gen: u64 },
    /// Connected to a NATS server, subscribed, and it answered our first `PING`.
    NatsUp,
    /// A message on a subject we subscribed to.
    NatsMsg { subject: String, payload: Vec<u8> },
    /// The NATS connection that was up is gone.
    NatsDown,
    /// SIGTERM or SIGINT.
    Signal(i32),
}

/// How many events may wait for the core.
pub const CHANNEL_BOUND: usize = 256;
