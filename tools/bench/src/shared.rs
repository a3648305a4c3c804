// SPDX-License-Identifier: GPL-2.0
//! State shared by the coordinator and the event-loop threads: the run's phase, which
//! connections are up, and each sender's window (which messages every recipient has).

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering},
        Condvar, Mutex, OnceLock,
    },
    time::Duration,
};

use mio::Waker;

use crate::{
    irc,
    layout::{Layout, Role},
    options::Options,
    recv::ReadSize,
    sys,
};

/// Where a run is. Threads move forward only; the coordinator sets all but `Done`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub(crate) enum Phase {
    /// Connecting every client.
    Connect,
    /// kchat: sync messages until one reached every client; otherwise until every join or
    /// subscription is confirmed.
    Barrier,
    /// kchat: no more syncs; waiting for the last ones to arrive.
    Drain,
    /// Senders send; every delivery is checked and timed.
    Measure,
    /// Every message reached every recipient.
    Done,
    /// Stopped early: timeout, a dead connection, or an error that stalls the run.
    Aborted,
}

impl Phase {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Phase::Connect,
            1 => Phase::Barrier,
            2 => Phase::Drain,
            3 => Phase::Measure,
            4 => Phase::Done,
            _ => Phase::Aborted,
        }
    }

    /// True once the run is over.
    pub(crate) fn is_over(self) -> bool {
        self >= Phase::Done
    }
}

/// The connection that sends the kchat barrier's sync messages.
pub(crate) const SYNC_CONN: usize = 0;

/// Most sync messages before the barrier gives up.
pub(crate) const MAX_SYNCS: usize = 512;

/// Everything the threads share. Counters are atomics updated once per event batch (progress)
/// or once per delivery (the window slots).
pub(crate) struct Shared {
    pub(crate) opts: Options,
    pub(crate) layout: Layout,
    phase: AtomicU8,
    /// One waker per thread, set by the thread when its poll exists.
    wakers: Box<[OnceLock<Waker>]>,
    /// Per thread: senders of that thread whose window may have opened.
    pub(crate) ready: Box<[Mutex<Vec<u32>>]>,
    /// Per connection: connected and not closed.
    pub(crate) alive: Box<[AtomicBool]>,
    /// Per sender: its local port, which kchat shows in the label (`ip:port`).
    pub(crate) ports: Box<[AtomicU16]>,
    /// IRC: the nicks and channels.
    pub(crate) irc: irc::Names,
    /// Per sender: messages sent so far.
    pub(crate) sent: Box<[AtomicU32]>,
    /// Per sender: messages that reached every recipient (or were counted lost at one).
    pub(crate) completed: Box<[AtomicU32]>,
    /// Per sender, `ring` slots: recipients that have message `seq` at slot `seq % ring`.
    slots: Box<[AtomicU32]>,
    /// Slots per sender: the most messages a sender may have outstanding.
    pub(crate) ring: u32,
    /// Per sender: recipients of each of its messages, fixed when measuring starts.
    pub(crate) recipients: Box<[AtomicU32]>,
    /// Messages to complete in all (live senders x messages).
    pub(crate) target: AtomicU64,
    /// Deliveries that make a complete run (each message times its recipients).
    pub(crate) expected: AtomicU64,
    pub(crate) completed_total: AtomicU64,
    /// Deliveries so far (published by the threads once per event batch).
    pub(crate) deliveries: AtomicU64,
    /// Setup events (connections, subscriptions, syncs) for the no-progress timeout.
    pub(crate) progress: AtomicU64,
    /// Threads that have resolved every connect.
    pub(crate) connect_done: AtomicUsize,
    /// Sync messages sent, and per sync id the clients that received it.
    pub(crate) sync_sent: AtomicU32,
    pub(crate) sync_counts: Box<[AtomicU32]>,
    /// Confirmations received (see [`Layout::confirms`]): of joins, of subscriptions.
    pub(crate) confirmed: AtomicU32,
    /// Start and end of the measured interval, monotonic ns.
    pub(crate) t0_ns: AtomicU64,
    pub(crate) end_ns: AtomicU64,
    /// Bytes to read per read(2) call on one connection.
    pub(crate) read_size: ReadSize,
    abort_reason: Mutex<Option<String>>,
    errors_shown: AtomicUsize,
    /// The first error shown: the abort reason of a run where nobody connected says it.
    first_error: Mutex<Option<String>>,
    main_signal: (Mutex<bool>, Condvar),
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("phase", &self.phase())
            .finish_non_exhaustive()
    }
}

/// Total receive-buffer memory to aim for over all connections.
const READ_BUDGET: usize = 64 << 20;

/// Error messages printed on stderr before the rest are only counted.
const ERRORS_SHOWN: usize = 10;

/// An array of `n` zeroed atomics.
fn atomics<T: Default>(n: usize) -> Box<[T]> {
    (0..n).map(|_| T::default()).collect()
}

impl Shared {
    /// State for a run with `opts`.
    pub(crate) fn new(opts: Options) -> Self {
        let layout = Layout::new(&opts);
        let ring = opts.window();
        let s = opts.senders;
        // Unless --read-size says: large reads when there are few connections, bounded memory
        // when there are many; always room for two of the largest frames.
        let frame = opts.payload + 128;
        let read_size = match opts.read_size {
            Some(n) => ReadSize::Exactly(n),
            None => ReadSize::AtLeast(
                (READ_BUDGET / layout.total().max(1))
                    .clamp(8 << 10, 256 << 10)
                    .max(2 * frame),
            ),
        };
        Self {
            layout,
            phase: AtomicU8::new(Phase::Connect as u8),
            wakers: atomics(opts.threads),
            ready: (0..opts.threads).map(|_| Mutex::new(Vec::new())).collect(),
            alive: atomics(layout.total()),
            ports: atomics(s),
            irc: irc::Names::new(&opts),
            sent: atomics(s),
            completed: atomics(s),
            slots: atomics(s * ring as usize),
            ring,
            recipients: atomics(s),
            target: AtomicU64::new(u64::MAX),
            expected: AtomicU64::new(u64::MAX),
            completed_total: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            progress: AtomicU64::new(0),
            connect_done: AtomicUsize::new(0),
            sync_sent: AtomicU32::new(0),
            sync_counts: atomics(MAX_SYNCS),
            confirmed: AtomicU32::new(0),
            t0_ns: AtomicU64::new(0),
            end_ns: AtomicU64::new(0),
            read_size,
            abort_reason: Mutex::new(None),
            errors_shown: AtomicUsize::new(0),
            first_error: Mutex::new(None),
            main_signal: (Mutex::new(false), Condvar::new()),
            opts,
        }
    }

    /// The current phase.
    pub(crate) fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    /// Moves to `to` (coordinator only) and wakes every thread.
    pub(crate) fn set_phase(&self, to: Phase) {
        self.phase.store(to as u8, Ordering::Release);
        self.wake_all();
    }

    /// Registers thread `t`'s waker.
    pub(crate) fn set_waker(&self, t: usize, waker: Waker) {
        let _ = self.wakers[t].set(waker);
    }

    /// Threads whose waker is registered.
    pub(crate) fn wakers_ready(&self) -> usize {
        self.wakers.iter().filter(|w| w.get().is_some()).count()
    }

    /// Wakes thread `t` from its poll.
    pub(crate) fn wake(&self, t: usize) {
        if let Some(w) = self.wakers[t].get() {
            // A failed wake (eventfd full) means a wake is already pending.
            let _ = w.wake();
        }
    }

    /// Wakes every thread.
    pub(crate) fn wake_all(&self) {
        for t in 0..self.wakers.len() {
            self.wake(t);
        }
    }

    /// The window slot of message `seq` of sender `s`.
    pub(crate) fn slot(&self, s: u32, seq: u32) -> &AtomicU32 {
        &self.slots[s as usize * self.ring as usize + (seq % self.ring) as usize]
    }

    /// Ends the measured interval successfully (first caller wins).
    pub(crate) fn finish(&self) {
        let was = self.phase.compare_exchange(
            Phase::Measure as u8,
            Phase::Done as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        if was.is_ok() {
            self.end_ns.store(sys::monotonic_ns(), Ordering::Release);
            self.signal_main();
            self.wake_all();
        }
    }

    /// Stops the run with `reason`, unless it is already over.
    pub(crate) fn abort(&self, reason: String) {
        let mut cur = self.phase.load(Ordering::Acquire);
        while !Phase::from_u8(cur).is_over() {
            match self.phase.compare_exchange(
                cur,
                Phase::Aborted as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.end_ns.store(sys::monotonic_ns(), Ordering::Release);
                    if let Ok(mut r) = self.abort_reason.lock() {
                        *r = Some(reason);
                    }
                    self.signal_main();
                    self.wake_all();
                    return;
                }
                Err(now) => cur = now,
            }
        }
    }

    /// The first error shown, if any.
    pub(crate) fn first_error(&self) -> Option<String> {
        self.first_error.lock().ok().and_then(|e| e.clone())
    }

    /// Why the run was aborted, if it was.
    pub(crate) fn abort_reason(&self) -> Option<String> {
        self.abort_reason.lock().ok().and_then(|r| r.clone())
    }

    /// Prints an error on stderr (only the first few; all are counted by the caller).
    pub(crate) fn show_error(&self, msg: &str) {
        let n = self.errors_shown.fetch_add(1, Ordering::Relaxed);
        if n == 0 {
            if let Ok(mut e) = self.first_error.lock() {
                *e = Some(msg.to_string());
            }
        }
        if n < ERRORS_SHOWN {
            eprintln!("kchat-bench: error: {msg}");
        } else if n == ERRORS_SHOWN {
            eprintln!("kchat-bench: (further errors only counted)");
        }
    }

    /// One more connection confirmed that it is where the run needs it.
    pub(crate) fn confirm(&self) {
        self.confirmed.fetch_add(1, Ordering::AcqRel);
        self.progress.fetch_add(1, Ordering::Relaxed);
    }

    /// Wakes the coordinator.
    pub(crate) fn signal_main(&self) {
        let (lock, cv) = &self.main_signal;
        if let Ok(mut s) = lock.lock() {
            *s = true;
            cv.notify_all();
        }
    }

    /// Waits (coordinator) until signalled or `timeout` passes.
    pub(crate) fn wait_main(&self, timeout: Duration) {
        let (lock, cv) = &self.main_signal;
        let Ok(mut s) = lock.lock() else { return };
        if !*s {
            if let Ok((g, _)) = cv.wait_timeout(s, timeout) {
                s = g;
            } else {
                return;
            }
        }
        *s = false;
    }

    /// Live connections with `role` matching `pred`.
    pub(crate) fn count_alive(&self, pred: impl Fn(Role) -> bool) -> usize {
        (0..self.layout.total())
            .filter(|&g| pred(self.layout.role(g)) && self.alive[g].load(Ordering::Acquire))
            .count()
    }

    /// Fixes, as measuring starts, each live sender's recipients (the live receivers of its
    /// room, itself excluded), the target and the expected deliveries. Returns the recipients
    /// per message averaged over the live senders, or why the run cannot measure anything.
    pub(crate) fn fix_recipients(&self) -> Result<f64, String> {
        let layout = &self.layout;
        let alive = |g: usize| self.alive[g].load(Ordering::Acquire);
        let mut per_room = vec![0u32; layout.rooms];
        for g in (0..layout.total()).filter(|&g| alive(g)) {
            let role = layout.role(g);
            if role.receiver {
                per_room[role.room as usize] += 1;
            }
        }
        let (mut senders, mut sum) = (0u64, 0u64);
        for s in 0..layout.senders as u32 {
            let g = layout.sender_conn(s);
            if !alive(g) {
                continue;
            }
            let role = layout.role(g);
            // A kchat or IRC sender is a receiver of its own room, but not of its own messages.
            let n = per_room[role.room as usize] - u32::from(role.receiver);
            if n == 0 {
                return Err(format!("sender {s} has no recipient connected"));
            }
            self.recipients[s as usize].store(n, Ordering::Release);
            senders += 1;
            sum += u64::from(n);
        }
        if senders == 0 {
            return Err(match self.first_error() {
                Some(e) => format!("no sender connected (first error: {e})"),
                None => "no sender connected".into(),
            });
        }
        let messages = u64::from(self.opts.messages);
        self.target.store(senders * messages, Ordering::Release);
        self.expected.store(sum * messages, Ordering::Release);
        Ok(sum as f64 / senders as f64)
    }
}

#[cfg(test)]
impl Shared {
    /// State for a run with the command line `args`.
    pub(crate) fn from_args(args: &[&str]) -> Self {
        match crate::options::parse(args) {
            Ok(crate::options::Command::Run(o)) => Shared::new(*o),
            other => panic!("{args:?}: {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shared state of a run with `args` whose connections `up` are connected.
    fn shared(args: &[&str], up: &[usize]) -> Shared {
        let sh = Shared::from_args(args);
        for &g in up {
            sh.alive[g].store(true, Ordering::Relaxed);
        }
        sh
    }

    /// Checks the recipients fixed as measuring starts, with 4 kchat clients in 2 rooms
    /// ({0, 2}, {1, 3}), clients 0 and 1 sending 10 messages: one recipient each when all are
    /// up; a dead sender is left out; a sender whose room has nobody else, or no sender at
    /// all, stops the run.
    #[test]
    fn recipients() {
        let args = [
            "--clients",
            "4",
            "--senders",
            "2",
            "--rooms",
            "2",
            "--messages",
            "10",
        ];
        let sh = shared(&args, &[0, 1, 2, 3]);
        assert_eq!(sh.fix_recipients(), Ok(1.0));
        assert_eq!(sh.target.load(Ordering::Relaxed), 20);
        assert_eq!(sh.expected.load(Ordering::Relaxed), 20);
        let sh = shared(&args, &[1, 2, 3]);
        assert_eq!(sh.fix_recipients(), Ok(1.0));
        assert_eq!(sh.target.load(Ordering::Relaxed), 10);
        let sh = shared(&args, &[0, 1, 3]);
        assert_eq!(
            sh.fix_recipients(),
            Err("sender 0 has no recipient connected".into())
        );
        assert!(shared(&args, &[2, 3]).fix_recipients().is_err());
    }
}
