// SPDX-License-Identifier: GPL-2.0
//! What the bridge counts, printed on exit and with `--stats`.

/// Counters since the bridge started.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Local room messages published.
    pub room_out: u64,
    /// The payloads that carried them (a run of messages to one room goes in one).
    pub room_batches_out: u64,
    /// Remote room messages posted to kchat.
    pub room_in: u64,
    /// Local private messages published.
    pub priv_out: u64,
    /// Remote private messages posted to kchat.
    pub priv_in: u64,
    /// Presence payloads published (events, states, hellos).
    pub presence_out: u64,
    /// Presence payloads taken from other nodes.
    pub presence_in: u64,
    /// Payloads of our own node seen on NATS, ignored.
    pub own_ignored: u64,
    /// Payloads or frames that could not be parsed.
    pub malformed: u64,
    /// `! ...` answers from kchat.
    pub refused: u64,
    /// Messages dropped for NATS (queue full) and their bytes.
    pub dropped_nats: u64,
    pub dropped_nats_bytes: u64,
    /// Publishes over the server's max_payload, not sent.
    pub oversize: u64,
    /// Frames dropped for kchat (queue full).
    pub dropped_kchat: u64,
    /// Remote messages longer than kchat takes, not posted.
    pub too_long: u64,
    /// Links to kchat made.
    pub kchat_links: u64,
    /// NATS connections made.
    pub nats_connections: u64,
    /// Nodes dropped for silence.
    pub nodes_dropped: u64,
    /// Protocol operations written to NATS, frames written to kchat.
    pub written_nats: u64,
    pub written_kchat: u64,
    /// Bytes waiting for NATS, for kchat.
    pub queued_nats: u64,
    pub queued_kchat: u64,
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "room messages out {} (in {} payloads) in {}, private out {} in {}, presence out {} in {}, \
             own echoes ignored {}, malformed {}, refused by kchat {}, \
             dropped for NATS {} ({} bytes), over max_payload {}, dropped for kchat {}, too long for kchat {}, \
             kchat links {}, NATS connections {}, nodes dropped {}, \
             written to NATS {} to kchat {}, bytes queued for NATS {} for kchat {}",
            self.room_out,
            self.room_batches_out,
            self.room_in,
            self.priv_out,
            self.priv_in,
            self.presence_out,
            self.presence_in,
            self.own_ignored,
            self.malformed,
            self.refused,
            self.dropped_nats,
            self.dropped_nats_bytes,
            self.oversize,
            self.dropped_kchat,
            self.too_long,
            self.kchat_links,
            self.nats_connections,
            self.nodes_dropped,
            self.written_nats,
            self.written_kchat,
            self.queued_nats,
            self.queued_kchat
        )
    }
}
