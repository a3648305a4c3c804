// SPDX-License-Identifier: GPL-2.0

//! Counters for the admin: the stats view in debugfs and the exit line.

use kernel::{
    fmt,
    prelude::*,
    sync::atomic::{
        Atomic,
        Relaxed, //
    },
};

/// Server-wide counters. Updated with relaxed atomics: each is exact, but a reader may see one
/// a little ahead of another.
pub(crate) struct Stats {
    /// Clients connected now (changed under the chat core's lock).
    pub(crate) clients_now: Atomic<u64>,
    /// Most clients connected at once.
    pub(crate) clients_peak: Atomic<u64>,
    /// Connections accepted into the chat since load.
    pub(crate) served: Atomic<u64>,
    /// Chat messages delivered to a recipient's queue (one message to 5 others counts 5).
    pub(crate) relayed_msgs: Atomic<u64>,
    /// Bytes of those relayed frames, as sent (header, label and message).
    pub(crate) relayed_bytes: Atomic<u64>,
    /// Frames refused for declaring a length above `max_msg_len`.
    pub(crate) frames_rejected: Atomic<u64>,
    /// Clients dropped because their send queue passed `max_queue_bytes`.
    pub(crate) slow_consumers: Atomic<u64>,
    /// Connections refused with `! server full`.
    pub(crate) refused_full: Atomic<u64>,
    /// Times a client over `max_msg_rate` was paused (flood control).
    pub(crate) throttled: Atomic<u64>,
    /// Times the accept path waited for the shard loop to catch up before admitting more.
    pub(crate) accept_waits: Atomic<u64>,
    /// Calls to `kernel_sendmsg`, and the frames (or frame parts) they carried: their ratio is
    /// how much each send batches.
    pub(crate) sends: Atomic<u64>,
    pub(crate) sent_frames: Atomic<u64>,
    /// Sends that spliced log pages (`MSG_SPLICE_PAGES`) rather than copying.
    pub(crate) spliced_sends: Atomic<u64>,
    /// Calls to `kernel_recvmsg` that returned data.
    pub(crate) recvs: Atomic<u64>,
    /// Rooms that exist now, `#lobby` included.
    pub(crate) rooms_now: Atomic<u64>,
    /// Rooms created by `/join` since load.
    pub(crate) rooms_created: Atomic<u64>,
    /// History messages replayed to clients entering a room.
    pub(crate) history_replayed: Atomic<u64>,
    /// Private messages delivered (`/msg`).
    pub(crate) private_messages: Atomic<u64>,
}

impl Stats {
    pub(crate) const fn new() -> Self {
        Self {
            clients_now: Atomic::new(0),
            clients_peak: Atomic::new(0),
            served: Atomic::new(0),
            relayed_msgs: Atomic::new(0),
            relayed_bytes: Atomic::new(0),
            frames_rejected: Atomic::new(0),
            slow_consumers: Atomic::new(0),
            refused_full: Atomic::new(0),
            throttled: Atomic::new(0),
            accept_waits: Atomic::new(0),
            sends: Atomic::new(0),
            sent_frames: Atomic::new(0),
            spliced_sends: Atomic::new(0),
            recvs: Atomic::new(0),
            rooms_now: Atomic::new(0),
            rooms_created: Atomic::new(0),
            history_replayed: Atomic::new(0),
            private_messages: Atomic::new(0),
        }
    }

    /// A client joined; `now` are connected including it. Called under the chat core's lock.
    pub(crate) fn joined(&self, now: usize) {
        let now = now as u64;
        self.served.add(1, Relaxed);
        self.clients_now.store(now, Relaxed);
        if now > self.clients_peak.load(Relaxed) {
            self.clients_peak.store(now, Relaxed);
        }
    }

    /// Chat frames were queued `deliveries` times (one frame to one recipient), `bytes` in all.
    pub(crate) fn relayed(&self, deliveries: u64, bytes: u64) {
        self.relayed_msgs.add(deliveries, Relaxed);
        self.relayed_bytes.add(bytes, Relaxed);
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows: [(&str, &Atomic<u64>); 18] = [
            ("clients_now", &self.clients_now),
            ("clients_peak", &self.clients_peak),
            ("connections_served", &self.served),
            ("messages_relayed", &self.relayed_msgs),
            ("bytes_relayed", &self.relayed_bytes),
            ("frames_rejected", &self.frames_rejected),
            ("slow_consumers_dropped", &self.slow_consumers),
            ("connections_refused_full", &self.refused_full),
            ("clients_throttled", &self.throttled),
            ("accept_waits", &self.accept_waits),
            ("sends", &self.sends),
            ("sent_frames", &self.sent_frames),
            ("spliced_sends", &self.spliced_sends),
            ("recvs", &self.recvs),
            ("rooms_now", &self.rooms_now),
            ("rooms_created", &self.rooms_created),
            ("history_replayed", &self.history_replayed),
            ("private_messages", &self.private_messages),
        ];
        for (name, v) in rows {
            f.write_fmt(fmt!("{name}: {}\n", v.load(Relaxed)))?;
        }
        // Module-wide memory, for leak checks.
        f.write_fmt(fmt!("clients_allocated: {}\n", crate::client::allocated()))?;
        f.write_fmt(fmt!(
            "client_object_bytes: {}\n",
            crate::client::object_size()
        ))?;
        f.write_fmt(fmt!("buffer_bytes: {}\n", crate::frame::buffer_bytes()))?;
        f.write_fmt(fmt!("log_pages: {}\n", crate::pages::log_pages()))?;
        f.write_fmt(fmt!("note_pages: {}\n", crate::pages::note_pages()))
    }
}
