// SPDX-License-Identifier: GPL-2.0
//! The receiving side's accounting, one per thread: checks every delivered payload (and that
//! it reached a member of its sender's room), times it, tracks order per (receiver, sender),
//! and tells senders when a message reached everyone.

use std::{
    collections::HashMap,
    sync::{atomic::Ordering, Arc},
};

use hdrhistogram::Histogram;

use crate::{
    payload::Check,
    shared::{Phase, Shared},
};

/// The largest latency the histogram tells apart, ns (an hour); longer ones count as this.
const LATENCY_MAX_NS: u64 = 3_600_000_000_000;

/// An empty latency histogram (ns): 3 significant digits, so every percentile, the mean and
/// the maximum are within 0.1 %.
pub(crate) fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_max(LATENCY_MAX_NS, 3).expect("valid histogram bounds")
}

/// What went right and wrong, summed over receivers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Messages received by a recipient (including corrupted and late ones, not duplicates).
    pub(crate) deliveries: u64,
    /// Payload bytes of those deliveries.
    pub(crate) bytes: u64,
    /// Messages a recipient should have received and did not.
    pub(crate) lost: u64,
    /// Messages a recipient received more than once (extra copies).
    pub(crate) duplicated: u64,
    /// Messages that arrived after a later message of the same sender.
    pub(crate) reordered: u64,
    /// Messages whose bytes, length, label or timestamp were wrong.
    pub(crate) corrupted: u64,
    /// Everything else: connect failures, closed connections, server error replies,
    /// misrouted frames, protocol violations.
    pub(crate) errors: u64,
}

impl Counts {
    /// Adds `other` to these counts.
    pub(crate) fn add(&mut self, other: &Counts) {
        self.deliveries += other.deliveries;
        self.bytes += other.bytes;
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.reordered += other.reordered;
        self.corrupted += other.corrupted;
        self.errors += other.errors;
    }
}

/// Where a delivered message says it came from, beside its payload.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Origin<'a> {
    /// Nothing (RESP).
    Unlabelled,
    /// kchat: the label (`ip:port`), whose port must be the sender's.
    Label(&'a [u8]),
    /// IRC: the nick of the source, which must be the sender's, and the channel it was sent
    /// to, which must be the receiver's.
    Irc { nick: &'a [u8], target: &'a [u8] },
}

/// A receiving connection, as the tracker knows it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Row {
    /// kchat and IRC: this client's own sender id, whose messages it must not receive.
    pub(crate) own_sender: Option<u32>,
    /// The room it is in: it must receive exactly the messages sent to this room.
    pub(crate) room: u32,
    /// Connected when measuring started, so it counts as a recipient.
    pub(crate) active: bool,
    /// Connected outside the first `--netns` namespace: another node of a cluster.
    pub(crate) remote: bool,
}

/// Per-thread receive accounting.
pub(crate) struct Tracker {
    shared: Arc<Shared>,
    thread: usize,
    senders: usize,
    payload_len: usize,
    /// Per row: the facts above.
    pub(crate) rows: Vec<Row>,
    /// Per (row, sender): the sequence number expected next.
    pub(crate) next: Vec<u32>,
    /// Per (row, sender), only after a gap: sequence numbers counted lost so far, so a late
    /// arrival is told apart from a duplicate.
    missing: HashMap<(u32, u32), Vec<u32>>,
    pub(crate) counts: Counts,
    /// Latencies, ns.
    pub(crate) hist: Histogram<u64>,
    /// The same, of the rows in the first `--netns` namespace (local) and in the others
    /// (remote).
    pub(crate) local_hist: Histogram<u64>,
    pub(crate) remote_hist: Histogram<u64>,
    /// Senders of this thread that completed a message since the last pump.
    local_ready: Vec<u32>,
    /// Threads to wake because their senders completed a message.
    wake_mask: u64,
    published: u64,
    started: bool,
    t0: u64,
    /// Per sender: recipients of each message.
    recipients: Vec<u32>,
    target: u64,
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker")
            .field("thread", &self.thread)
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

impl Tracker {
    /// A tracker for thread `thread`, whose receivers are `rows`.
    pub(crate) fn new(shared: Arc<Shared>, thread: usize, rows: Vec<Row>) -> Self {
        let senders = shared.opts.senders;
        Self {
            thread,
            senders,
            payload_len: shared.opts.payload,
            next: vec![0; rows.len() * senders],
            rows,
            missing: HashMap::new(),
            counts: Counts::default(),
            hist: latency_histogram(),
            local_hist: latency_histogram(),
            remote_hist: latency_histogram(),
            local_ready: Vec::new(),
            wake_mask: 0,
            published: 0,
            started: false,
            t0: 0,
            recipients: Vec::new(),
            target: u64::MAX,
            shared,
        }
    }

    /// Reads the measured interval's parameters (set before the phase became Measure); false
    /// if measuring has not started yet.
    pub(crate) fn start(&mut self) -> bool {
        if !self.started && self.shared.phase() >= Phase::Measure {
            self.started = true;
            let sh = &*self.shared;
            self.t0 = sh.t0_ns.load(Ordering::Acquire);
            self.recipients = sh
                .recipients
                .iter()
                .map(|r| r.load(Ordering::Acquire))
                .collect();
            self.target = sh.target.load(Ordering::Acquire);
        }
        self.started
    }

    /// The state shared with the other threads.
    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Counts an error and shows its message.
    pub(crate) fn error(&mut self, msg: &str) {
        self.counts.errors += 1;
        self.shared.show_error(msg);
    }

    /// Accounts one received message payload at receiver `row`, received at `now` (ns), that
    /// came from `origin`.
    pub(crate) fn deliver(&mut self, row: u32, origin: Origin<'_>, p: &[u8], now: u64) {
        if !self.start() {
            // Nobody sent a message yet: this is none of them.
            self.counts.corrupted += 1;
            return;
        }
        let (h, intact) = match self.shared.layout.format().check(p) {
            Check::Intact(h) => (h, true),
            Check::Corrupt(h) => (h, false),
            Check::Unreadable => {
                self.counts.corrupted += 1;
                return;
            }
        };
        let s = h.sender as usize;
        if s >= self.senders || h.seq >= self.shared.sent[s].load(Ordering::Acquire) {
            // Not a message anybody sent: nothing to account it against.
            self.counts.corrupted += 1;
            return;
        }
        let r = &self.rows[row as usize];
        if r.own_sender == Some(h.sender) {
            self.error("the server sent a client its own message");
            return;
        }
        if self.shared.layout.sender_room(h.sender) != r.room {
            self.error("a message reached a client outside its sender's room");
            return;
        }
        let sh = &*self.shared;
        let origin_ok = match origin {
            Origin::Unlabelled => true,
            Origin::Label(l) => {
                crate::kchat::label_port(l) == Some(sh.ports[s].load(Ordering::Relaxed))
            }
            Origin::Irc { nick, target } => {
                sh.irc.is_nick(nick, sh.layout.sender_conn(h.sender))
                    && target.eq_ignore_ascii_case(sh.irc.channel(r.room))
            }
        };
        let time_ok = h.sent_ns >= self.t0 && h.sent_ns <= now;
        if !(intact && origin_ok && time_ok && p.len() == self.payload_len) {
            self.counts.corrupted += 1;
        }
        if !self.order(row, h.sender, h.seq) {
            return;
        }
        self.counts.deliveries += 1;
        self.counts.bytes += p.len() as u64;
        if time_ok {
            self.hist.saturating_record(now - h.sent_ns);
            if self.rows[row as usize].remote {
                self.remote_hist.saturating_record(now - h.sent_ns);
            } else {
                self.local_hist.saturating_record(now - h.sent_ns);
            }
        }
    }

    /// Order bookkeeping for message `seq` of `sender` at `row`; false for a duplicate.
    fn order(&mut self, row: u32, sender: u32, seq: u32) -> bool {
        let idx = row as usize * self.senders + sender as usize;
        let next = self.next[idx];
        if seq == next {
            self.next[idx] = seq + 1;
            self.complete(sender, seq);
            return true;
        }
        if seq > next {
            // Everything between was skipped: lost, unless it shows up later.
            self.counts.lost += u64::from(seq - next);
            let missing = self.missing.entry((row, sender)).or_default();
            missing.extend(next..seq);
            for k in next..=seq {
                self.complete(sender, k);
            }
            self.next[idx] = seq + 1;
            return true;
        }
        let late = self
            .missing
            .get_mut(&(row, sender))
            .and_then(|m| m.iter().position(|&k| k == seq).map(|i| m.swap_remove(i)));
        if late.is_some() {
            self.counts.lost -= 1;
            self.counts.reordered += 1;
            true
        } else {
            self.counts.duplicated += 1;
            false
        }
    }

    /// One more recipient has (or lost) message `seq` of `sender`; when all have, the
    /// message is complete and its sender may send another.
    fn complete(&mut self, sender: u32, seq: u32) {
        let sh = &*self.shared;
        let recipients = self.recipients[sender as usize];
        if sh.slot(sender, seq).fetch_add(1, Ordering::AcqRel) + 1 != recipients {
            return;
        }
        sh.completed[sender as usize].fetch_add(1, Ordering::AcqRel);
        let owner = sh.layout.thread_of(sh.layout.sender_conn(sender));
        if owner == self.thread {
            self.local_ready.push(sender);
        } else if let Ok(mut q) = sh.ready[owner].lock() {
            if q.is_empty() {
                self.wake_mask |= 1 << owner;
            }
            q.push(sender);
        }
        if sh.completed_total.fetch_add(1, Ordering::AcqRel) + 1 == self.target {
            sh.finish();
        }
    }

    /// Moves the senders of this thread that completed a message into `out`.
    pub(crate) fn take_ready(&mut self, out: &mut Vec<u32>) {
        out.append(&mut self.local_ready);
    }

    /// Wakes the threads whose senders completed messages, and publishes progress.
    pub(crate) fn flush(&mut self) {
        while self.wake_mask != 0 {
            let t = self.wake_mask.trailing_zeros() as usize;
            self.wake_mask &= self.wake_mask - 1;
            self.shared.wake(t);
        }
        let d = self.counts.deliveries - self.published;
        if d > 0 {
            self.shared.deliveries.fetch_add(d, Ordering::Relaxed);
            self.published = self.counts.deliveries;
        }
    }

    /// Counts, at the end of a run, what each active row never received of its room's
    /// messages (`sent` is each sender's final count).
    pub(crate) fn count_tail_losses(&mut self, sent: &[u32]) {
        let layout = self.shared.layout;
        for (r, row) in self.rows.iter().enumerate() {
            if !row.active {
                continue;
            }
            for (s, &sent) in sent.iter().enumerate() {
                let s32 = s as u32;
                if row.own_sender != Some(s32) && layout.sender_room(s32) == row.room {
                    let next = self.next[r * self.senders + s];
                    self.counts.lost += u64::from(sent.saturating_sub(next));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shared state of a run with `args`, every connection up, measuring, with sender 0 from
    /// port 5000 and sender 1 from 5001 having sent messages 0..5.
    fn shared(args: &[&str]) -> Arc<Shared> {
        let sh = Shared::from_args(args);
        for a in sh.alive.iter() {
            a.store(true, Ordering::Relaxed);
        }
        sh.fix_recipients().expect("recipients");
        for (s, port) in [5000, 5001].into_iter().enumerate().take(sh.opts.senders) {
            sh.sent[s].store(5, Ordering::Relaxed);
            sh.ports[s].store(port, Ordering::Relaxed);
        }
        sh.set_phase(Phase::Measure);
        Arc::new(sh)
    }

    /// The rows of every client of `sh`, as the event loop makes them.
    fn rows(sh: &Shared) -> Vec<Row> {
        (0..sh.layout.total())
            .map(|g| {
                let role = sh.layout.role(g);
                Row {
                    own_sender: role.sender,
                    room: role.room,
                    active: true,
                    remote: false,
                }
            })
            .collect()
    }

    /// Messages of sender `s` that reached all their recipients.
    fn completed(sh: &Shared, s: usize) -> u32 {
        sh.completed[s].load(Ordering::Relaxed)
    }

    fn msg(sender: u32, seq: u32) -> Vec<u8> {
        let mut p = Vec::new();
        crate::payload::append(&mut p, 40, sender, seq, 10);
        p
    }

    /// Checks the per-(receiver, sender) order accounting and window completion, with 3
    /// clients, client 0 sending (so 2 recipients per message), window 4:
    /// - a gap counts the skipped message lost at once and completes it (so the sender's
    ///   window moves on); its late arrival turns that loss into one reordering;
    /// - a second copy is a duplicate and not a delivery;
    /// - a message completes only when both recipients have it;
    /// - a wrong label, a flipped byte or a timestamp after `now` is corrupted but still
    ///   delivered; a message to its own sender is an error;
    /// - at the end, what a row never received of what was sent is lost;
    /// - latencies are recorded as `now - sent`.
    #[test]
    fn order_and_completion() {
        let args = [
            "--clients",
            "3",
            "--senders",
            "1",
            "--window",
            "4",
            "--payload",
            "40",
        ];
        let sh = shared(&args);
        let mut t = Tracker::new(sh.clone(), 0, rows(&sh));
        let label = Origin::Label(b"127.0.0.1:5000");
        t.deliver(1, label, &msg(0, 0), 100);
        assert_eq!(completed(&sh, 0), 0, "one of two recipients");
        t.deliver(2, label, &msg(0, 0), 100);
        assert_eq!(completed(&sh, 0), 1);
        t.deliver(1, label, &msg(0, 2), 100);
        assert_eq!(t.counts.lost, 1);
        t.deliver(1, label, &msg(0, 1), 100);
        assert_eq!((t.counts.lost, t.counts.reordered), (0, 1));
        t.deliver(1, label, &msg(0, 2), 100);
        assert_eq!(t.counts.duplicated, 1);
        t.deliver(2, label, &msg(0, 1), 100);
        t.deliver(2, Origin::Label(b"127.0.0.1:5001"), &msg(0, 2), 100);
        assert_eq!(completed(&sh, 0), 3);
        assert_eq!(t.counts.corrupted, 1, "wrong label");
        let mut flipped = msg(0, 3);
        flipped[39] ^= 1;
        t.deliver(2, label, &flipped, 100);
        t.deliver(1, label, &msg(0, 3), 5);
        assert_eq!(t.counts.corrupted, 3, "flipped byte, sent after now");
        t.deliver(0, label, &msg(0, 4), 100);
        assert_eq!(t.counts.errors, 1, "own message");
        assert_eq!(t.counts.deliveries, 8);
        assert_eq!(t.hist.max(), 90);
        assert_eq!(
            t.hist.len(),
            7,
            "the message sent after `now` has no latency"
        );
        t.count_tail_losses(&[5]);
        assert_eq!(
            t.counts.lost, 2,
            "seq 4 at rows 1 and 2; row 0 is the sender"
        );
        let mut ready = Vec::new();
        t.take_ready(&mut ready);
        assert_eq!(ready.len(), 4, "one wake per completed message: 0, 1, 2, 3");
    }

    /// Checks rooms: 5 clients in 2 rooms ({0, 2, 4} and {1, 3}), clients 0 and 1 sending:
    /// - sender 0 has 2 recipients, sender 1 one (fixed from the live members);
    /// - a message reaching a client of another room is an error, not a delivery, and does
    ///   not complete it;
    /// - at the end, a row misses only its own room's messages.
    #[test]
    fn rooms() {
        let args = [
            "--clients",
            "5",
            "--senders",
            "2",
            "--rooms",
            "2",
            "--payload",
            "40",
        ];
        let sh = shared(&args);
        let recipients: Vec<u32> = sh
            .recipients
            .iter()
            .map(|r| r.load(Ordering::Relaxed))
            .collect();
        assert_eq!(recipients, [2, 1]);
        assert_eq!(sh.expected.load(Ordering::Relaxed), 3 * 10_000);
        let mut t = Tracker::new(sh.clone(), 0, rows(&sh));
        let (l0, l1) = (
            Origin::Label(b"127.0.0.1:5000"),
            Origin::Label(b"127.0.0.1:5001"),
        );
        t.deliver(3, l0, &msg(0, 0), 100);
        assert_eq!(
            (t.counts.errors, t.counts.deliveries),
            (1, 0),
            "room 1 got room 0's"
        );
        t.deliver(3, l1, &msg(1, 0), 100);
        assert_eq!(completed(&sh, 1), 1, "its only recipient");
        t.deliver(2, l0, &msg(0, 0), 100);
        assert_eq!(completed(&sh, 0), 0);
        t.deliver(4, l0, &msg(0, 0), 100);
        assert_eq!(completed(&sh, 0), 1);
        t.count_tail_losses(&[1, 1]);
        assert_eq!(t.counts.lost, 0, "every row has its room's first messages");
        t.count_tail_losses(&[2, 1]);
        assert_eq!(t.counts.lost, 2, "message 1 of sender 0 at rows 2 and 4");
    }

    /// Checks IRC deliveries, 3 clients in `#c`, client 0 sending text payloads: one from the
    /// sender's nick to the receiver's channel (any case) is intact; another nick, another
    /// channel, or a binary payload is corrupted (each still delivered once, the last not).
    #[test]
    fn irc_origin() {
        let args = ["--protocol", "irc", "--clients", "3", "--channel", "c"];
        let sh = shared(&args);
        let mut t = Tracker::new(sh.clone(), 0, rows(&sh));
        let text = |seq| {
            let mut p = Vec::new();
            crate::payload::text::append(&mut p, 64, 0, seq, 10);
            p
        };
        let nick = sh.irc.nick(0);
        let from = |target| Origin::Irc {
            nick: nick.as_bytes(),
            target,
        };
        t.deliver(1, from(b"#C"), &text(0), 100);
        assert_eq!((t.counts.deliveries, t.counts.corrupted), (1, 0));
        let other = sh.irc.nick(2);
        let wrong_nick = Origin::Irc {
            nick: other.as_bytes(),
            target: b"#c",
        };
        t.deliver(1, wrong_nick, &text(1), 100);
        t.deliver(1, from(b"#d"), &text(2), 100);
        assert_eq!((t.counts.deliveries, t.counts.corrupted), (3, 2));
        t.deliver(1, from(b"#c"), &msg(0, 3), 100);
        assert_eq!((t.counts.deliveries, t.counts.corrupted), (3, 3));
    }

    /// Checks that a message arriving before measuring started is not accounted as one.
    #[test]
    fn before_measuring() {
        let sh = Arc::new(Shared::from_args(&["--payload", "40"]));
        let mut t = Tracker::new(sh.clone(), 0, rows(&sh));
        t.deliver(1, Origin::Unlabelled, &msg(0, 0), 100);
        assert_eq!((t.counts.corrupted, t.counts.deliveries), (1, 0));
        assert!(!t.started);
    }
}
