// SPDX-License-Identifier: GPL-2.0
//! One event-loop thread: a mio (epoll, edge-triggered) poll over its share of the
//! connections. It connects them in batches, runs the barrier, sends within each sender's
//! window (or on the `--rate` schedule) and feeds every delivery to its tracker.

use std::{
    io,
    os::fd::AsRawFd,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use mio::{event::Event, net::TcpStream, unix::SourceFd, Events, Interest, Poll, Token, Waker};

use crate::{
    conn::{Conn, Rx, State},
    irc, kchat, layout,
    options::Protocol,
    payload::Format,
    recv::{After, Readable},
    redis, resp,
    shared::{Phase, Shared, SYNC_CONN},
    sys,
    tracker::{Row, Tracker},
};

/// The token of the thread's waker.
const WAKE: Token = Token(usize::MAX);

/// The token of the `--rate` schedule's timer.
const TIMER: Token = Token(usize::MAX - 1);

/// Poll timeout when nothing is scheduled; phase changes wake the thread anyway.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// Pause after the first barrier sync message, ns; each later pause doubles...
const SYNC_FIRST: u64 = 20_000_000;
/// ...up to this, ns.
const SYNC_MAX: u64 = 1_000_000_000;

/// The event loop of one thread.
struct Worker {
    shared: Arc<Shared>,
    /// `--netns`: the namespaces this thread connects in.
    netns: Namespaces,
    thread: usize,
    poll: Poll,
    conns: Vec<Conn>,
    /// Local indices still to connect, in reverse order (popped from the end).
    to_connect: Vec<usize>,
    /// Connections in flight (see [`Conn::in_flight`]), and the most this thread may have.
    connecting: usize,
    connect_batch: usize,
    /// Connections not yet connected or failed.
    unresolved: usize,
    connect_reported: bool,
    tracker: Tracker,
    /// Local indices of this thread's senders.
    senders: Vec<usize>,
    /// Senders to pump, and the buffer the remote queue is swapped with.
    ready: Vec<u32>,
    incoming: Vec<u32>,
    measuring: bool,
    /// Barrier: when to send the next sync, and the pause after it.
    sync_at: u64,
    sync_pause: u64,
    /// How payloads are carried.
    format: Format,
    /// RESP and IRC, per room: everything of a message to its channel before the payload
    /// (`PUBLISH`, `PRIVMSG`).
    prefixes: Vec<Vec<u8>>,
    /// `--rate`: ns between two messages of one sender; earliest next due time; the timer
    /// that wakes the thread then, and the time it is armed for.
    rate_interval: Option<u64>,
    next_due: Option<u64>,
    timer: Option<sys::Timer>,
    armed: u64,
}

/// Runs thread `thread` until the run is over; returns its accounting (the sockets close
/// here).
pub(crate) fn run(shared: Arc<Shared>, thread: usize) -> io::Result<Tracker> {
    let poll = Poll::new()?;
    let waker = Waker::new(poll.registry(), WAKE)?;
    shared.set_waker(thread, waker);
    let mut w = Worker::new(shared, thread, poll);
    if w.rate_interval.is_some() {
        let timer = sys::Timer::new()?;
        let fd = timer.as_raw_fd();
        w.poll
            .registry()
            .register(&mut SourceFd(&fd), TIMER, Interest::READABLE)?;
        w.timer = Some(timer);
    }
    let mut events = Events::with_capacity(1024);
    loop {
        let phase = w.shared.phase();
        if phase.is_over() {
            break;
        }
        w.step(phase);
        let timeout = w.timeout(phase);
        if let Err(e) = w.poll.poll(&mut events, Some(timeout)) {
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        for ev in events.iter() {
            match ev.token() {
                WAKE => {}
                TIMER => w.timer.iter().for_each(sys::Timer::clear),
                t => w.on_event(t.0, ev),
            }
        }
    }
    Ok(w.tracker)
}

impl Worker {
    /// The worker of thread `thread`, with its connections not yet started.
    fn new(shared: Arc<Shared>, thread: usize, poll: Poll) -> Self {
        let layout = shared.layout;
        let mut conns = Vec::new();
        let mut rows = Vec::new();
        let mut senders = Vec::new();
        for g in layout.conns_of(thread) {
            let role = layout.role(g);
            let row = role.receiver.then(|| {
                rows.push(Row {
                    // (A RESP receiver is a subscriber, never a sender.)
                    own_sender: role.sender,
                    room: role.room,
                    active: false,
                    remote: shared.opts.netns_of(g, role.sender.is_some()) != 0,
                });
                rows.len() as u32 - 1
            });
            if role.sender.is_some() {
                senders.push(conns.len());
            }
            let rx = match layout.protocol {
                Protocol::Kchat => Rx::Kchat(kchat::Inbox::new(layout.joins.then_some(role.room))),
                Protocol::Resp => Rx::Resp(resp::Reader::default()),
                Protocol::Irc => Rx::Irc(irc::Inbox::new(shared.irc.channel(role.room))),
            };
            conns.push(Conn::new(g, role, row, rx));
        }
        // Stalled clients first (so the server has them before the barrier proves the
        // others are registered), then the rest in order; popped from the end.
        let mut to_connect: Vec<usize> = (0..conns.len()).collect();
        to_connect.sort_by_key(|&i| (!conns[i].role.stalled, i));
        to_connect.reverse();
        let o = &shared.opts;
        let prefix = |room| match layout.protocol {
            Protocol::Kchat => Vec::new(),
            Protocol::Resp => resp::publish_prefix(layout::channel(o, room).as_bytes(), o.payload),
            Protocol::Irc => irc::privmsg_prefix(shared.irc.channel(room)),
        };
        let prefixes = (0..layout.rooms as u32).map(prefix).collect();
        let rate_interval = o.rate.map(|r| (1e9 / r).max(1.0) as u64);
        let unresolved = conns.len();
        Self {
            netns: Namespaces::new(&shared.opts.netns),
            connect_batch: (shared.opts.connect_batch() / layout.threads).max(1),
            tracker: Tracker::new(shared.clone(), thread, rows),
            thread,
            poll,
            conns,
            to_connect,
            connecting: 0,
            unresolved,
            connect_reported: false,
            senders,
            ready: Vec::new(),
            incoming: Vec::new(),
            measuring: false,
            sync_at: 0,
            sync_pause: SYNC_FIRST,
            format: layout.format(),
            prefixes,
            rate_interval,
            next_due: None,
            timer: None,
            armed: 0,
            shared,
        }
    }

    /// Does what the phase asks between two polls.
    fn step(&mut self, phase: Phase) {
        match phase {
            Phase::Connect => self.start_connects(),
            Phase::Barrier => self.maybe_sync(),
            Phase::Drain => {}
            Phase::Measure => {
                if !self.measuring {
                    self.start_measuring();
                }
                self.pump();
            }
            Phase::Done | Phase::Aborted => {}
        }
        self.tracker.flush();
    }

    /// How long the next poll may sleep.
    fn timeout(&self, phase: Phase) -> Duration {
        let until = |t: u64| Duration::from_nanos(t.saturating_sub(sys::monotonic_ns()));
        match phase {
            Phase::Barrier if self.owns_sync() => until(self.sync_at).min(IDLE_POLL),
            // The --rate schedule is kept by the timerfd, finer than this timeout.
            _ => IDLE_POLL,
        }
    }

    /// Starts connects up to the batch size; reports to the coordinator when all resolved.
    fn start_connects(&mut self) {
        while self.connecting < self.connect_batch {
            let Some(i) = self.to_connect.pop() else {
                break;
            };
            let c = &self.conns[i];
            let ns = self.shared.opts.netns_of(c.global, c.role.sender.is_some());
            if let Err(e) = self.netns.enter(ns) {
                self.connect_failed(i, &e);
                continue;
            }
            match TcpStream::connect(self.shared.opts.addr) {
                Ok(mut stream) => {
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    if let Err(e) = self
                        .poll
                        .registry()
                        .register(&mut stream, Token(i), interest)
                    {
                        self.connect_failed(i, &e);
                        continue;
                    }
                    // Nagle would hold small frames back waiting for ACKs: latency, not load.
                    let _ = stream.set_nodelay(true);
                    let c = &mut self.conns[i];
                    c.stream = Some(stream);
                    c.state = State::Connecting;
                    c.in_flight = true;
                    self.connecting += 1;
                }
                Err(e) => self.connect_failed(i, &e),
            }
        }
        if self.unresolved == 0 && !self.connect_reported {
            self.connect_reported = true;
            self.shared.connect_done.fetch_add(1, Ordering::AcqRel);
            self.shared.signal_main();
        }
    }

    /// Connection `i` is no longer in flight: the server has it, or it failed.
    fn landed(&mut self, i: usize) {
        if std::mem::take(&mut self.conns[i].in_flight) {
            self.connecting -= 1;
        }
    }

    /// Connect `i` failed before or while connecting.
    fn connect_failed(&mut self, i: usize, e: &io::Error) {
        self.landed(i);
        let c = &mut self.conns[i];
        c.state = State::Closed;
        c.stream = None;
        self.unresolved -= 1;
        let g = c.global;
        self.tracker.error(&format!("connect {g}: {e}"));
        self.shared.progress.fetch_add(1, Ordering::Relaxed);
    }

    /// An event on connection `i`.
    fn on_event(&mut self, i: usize, ev: &Event) {
        if self.conns[i].state == State::Connecting {
            self.on_connect_event(i);
        }
        if self.conns[i].state != State::Open {
            return;
        }
        let closing = ev.is_read_closed() || ev.is_error();
        if ev.is_readable() || closing {
            self.read(i, closing);
        }
        if ev.is_writable() && self.conns[i].pending_out() > 0 {
            self.flush(i);
        }
    }

    /// Connection `i` may have finished connecting.
    fn on_connect_event(&mut self, i: usize) {
        let Some(stream) = self.conns[i].stream.as_ref() else {
            return;
        };
        let result = match stream.take_error() {
            Ok(Some(e)) | Err(e) => Err(e),
            Ok(None) => match stream.peer_addr() {
                Ok(_) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => Err(e),
            },
        };
        if let Err(e) = result {
            self.connect_failed(i, &e);
            return;
        }
        if self.shared.layout.protocol != Protocol::Irc {
            // An IRC client stays in flight until the server welcomes it (see `read`).
            self.landed(i);
        }
        self.unresolved -= 1;
        self.connected(i);
    }

    /// Connection `i` is up: record it and do what its role needs first.
    fn connected(&mut self, i: usize) {
        let sh = &*self.shared;
        let c = &mut self.conns[i];
        c.state = State::Open;
        sh.alive[c.global].store(true, Ordering::Release);
        sh.progress.fetch_add(1, Ordering::Relaxed);
        let stream = c.stream.as_mut().expect("open connections have a stream");
        if let (Some(s), Ok(local)) = (c.role.sender, stream.local_addr()) {
            sh.ports[s as usize].store(local.port(), Ordering::Relaxed);
        }
        match sh.layout.protocol {
            Protocol::Kchat => {
                // A stalled client sends its join too, but does not wait for the reply.
                let stalled = c.role.stalled;
                if sh.layout.joins {
                    kchat::append_join(&mut c.out, c.role.room);
                    self.flush(i);
                }
                if stalled && self.conns[i].state == State::Open {
                    self.park(i);
                }
            }
            Protocol::Resp if c.role.subscriber => {
                redis::append_subscribe(&mut c.out, &layout::channel(&sh.opts, c.role.room));
                self.flush(i);
            }
            Protocol::Resp => {}
            // Stalled clients too: they stop reading once in their channel.
            Protocol::Irc => {
                irc::append_register(&mut c.out, &sh.irc.nick(c.global));
                self.flush(i);
            }
        }
    }

    /// Stops polling connection `i` (a stalled client): it stays connected, unread.
    fn park(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if let Some(stream) = c.stream.as_mut() {
            let _ = self.poll.registry().deregister(stream);
        }
        c.state = State::Parked;
    }

    /// Reads everything available on connection `i` (to EOF if `closing`), then sends what
    /// the reading asked for (IRC answers).
    fn read(&mut self, i: usize, closing: bool) {
        let ev = Readable {
            size: self.shared.read_size,
            closing,
        };
        let c = &mut self.conns[i];
        let Some(stream) = c.stream.as_mut() else {
            return;
        };
        let tracker = &mut self.tracker;
        let result = match &mut c.rx {
            Rx::Kchat(inbox) => {
                let Some(row) = c.row else {
                    return;
                };
                kchat::read(stream, inbox, row, ev, tracker)
            }
            Rx::Resp(rd) => {
                let who = redis::Conn {
                    row: c.row,
                    publisher: c.role.sender.is_some(),
                };
                redis::read(stream, rd, who, ev, tracker)
            }
            Rx::Irc(inbox) => {
                let who = irc::Client {
                    row: c.row,
                    out: &mut c.out,
                };
                irc::read(stream, inbox, who, ev, tracker)
            }
        };
        let after = match result {
            Ok(after) => after,
            Err(e) => return self.close(i, &e),
        };
        if matches!(&self.conns[i].rx, Rx::Irc(inbox) if inbox.welcomed()) {
            self.landed(i);
        }
        if self.conns[i].pending_out() > 0 {
            self.flush(i);
        }
        if after == After::StopReading && self.conns[i].state == State::Open {
            self.park(i);
        }
    }

    /// Writes what connection `i` has queued.
    fn flush(&mut self, i: usize) {
        if let Err(e) = self.conns[i].flush() {
            self.close(i, &e);
        }
    }

    /// Connection `i` is finished: an error, unless it is a stalled client (which the
    /// server is entitled to drop as a slow consumer).
    fn close(&mut self, i: usize, e: &io::Error) {
        self.landed(i);
        let c = &mut self.conns[i];
        if let Some(mut stream) = c.stream.take() {
            let _ = self.poll.registry().deregister(&mut stream);
        }
        c.state = State::Closed;
        let (g, stalled) = (c.global, c.role.stalled);
        self.shared.alive[g].store(false, Ordering::Release);
        if stalled {
            return;
        }
        let what = if e.kind() == io::ErrorKind::UnexpectedEof {
            "closed by the server".to_string()
        } else {
            e.to_string()
        };
        self.tracker.error(&format!("connection {g}: {what}"));
        self.shared.progress.fetch_add(1, Ordering::Relaxed);
        let phase = self.shared.phase();
        let syncs = self.shared.layout.syncs();
        if phase >= Phase::Drain || (phase == Phase::Barrier && syncs && g == SYNC_CONN) {
            self.shared
                .abort(format!("connection {g} {what} during {phase:?}"));
        }
    }

    /// True if this thread sends the barrier's syncs.
    fn owns_sync(&self) -> bool {
        self.shared.layout.syncs() && self.shared.layout.thread_of(SYNC_CONN) == self.thread
    }

    /// Barrier: sends the next sync when its time has come.
    fn maybe_sync(&mut self) {
        let now = sys::monotonic_ns();
        if !self.owns_sync() || now < self.sync_at {
            return;
        }
        let i = SYNC_CONN / self.shared.layout.threads;
        if self.conns[i].state != State::Open {
            return;
        }
        let Some(id) = kchat::next_sync_id(&self.tracker) else {
            self.shared
                .abort("barrier: no sync message reached every client".into());
            return;
        };
        kchat::append_sync(&mut self.conns[i].out, id);
        self.flush(i);
        self.sync_at = now + self.sync_pause;
        self.sync_pause = (self.sync_pause * 2).min(SYNC_MAX);
    }

    /// The measured interval begins: mark recipients and let every sender go.
    fn start_measuring(&mut self) {
        self.measuring = true;
        self.tracker.start();
        for c in &self.conns {
            if let Some(row) = c.row {
                self.tracker.rows[row as usize].active = c.state == State::Open;
            }
        }
        let senders = self.senders.iter().map(|&i| self.conns[i].role.sender);
        self.ready.extend(senders.flatten());
    }

    /// Lets every sender that may send do so.
    fn pump(&mut self) {
        let mut ready = std::mem::take(&mut self.ready);
        self.tracker.take_ready(&mut ready);
        if let Ok(mut q) = self.shared.ready[self.thread].lock() {
            std::mem::swap(&mut *q, &mut self.incoming);
        }
        ready.append(&mut self.incoming);
        let now = sys::monotonic_ns();
        if self.rate_interval.is_some() {
            // Open loop: every sender is checked against its schedule each time.
            self.next_due = None;
            ready.clear();
            let senders = self.senders.iter().map(|&i| self.conns[i].role.sender);
            ready.extend(senders.flatten());
        }
        for &s in &ready {
            self.fill_window(s, now);
        }
        ready.clear();
        self.ready = ready;
        if let (Some(t), Some(timer)) = (self.next_due, &self.timer) {
            if t != self.armed {
                self.armed = t;
                if let Err(e) = timer.arm_at(t) {
                    self.shared.abort(format!("timerfd: {e}"));
                }
            }
        }
    }

    /// Sends what sender `s` may send now.
    fn fill_window(&mut self, s: u32, now: u64) {
        let sh = &*self.shared;
        let i = sh.layout.sender_conn(s) / sh.layout.threads;
        let c = &mut self.conns[i];
        if c.state != State::Open {
            return;
        }
        let o = &sh.opts;
        let completed = sh.completed[s as usize].load(Ordering::Acquire);
        let t0 = sh.t0_ns.load(Ordering::Relaxed);
        let mut wrote = false;
        while c.next_seq < o.messages && c.next_seq - completed < sh.ring {
            let seq = c.next_seq;
            let sent_ns = match self.rate_interval {
                // Timestamp = when it was due, so a late send shows as latency.
                Some(iv) => {
                    let stagger = iv * u64::from(s) / o.senders as u64;
                    let due = t0 + stagger + iv * u64::from(seq);
                    if due > now {
                        self.next_due = Some(self.next_due.map_or(due, |d| d.min(due)));
                        break;
                    }
                    due
                }
                None => now,
            };
            // The slot's previous message completed (the window guarantees it): reuse it.
            sh.slot(s, seq).store(0, Ordering::Release);
            sh.sent[s as usize].store(seq + 1, Ordering::Release);
            match sh.layout.protocol {
                Protocol::Kchat => kchat::append_message(&mut c.out, o.payload, s, seq, sent_ns),
                Protocol::Resp | Protocol::Irc => self.format.append_line(
                    &mut c.out,
                    &self.prefixes[sh.layout.sender_room(s) as usize],
                    o.payload,
                    s,
                    seq,
                    sent_ns,
                ),
            }
            c.next_seq += 1;
            wrote = true;
        }
        if wrote {
            self.flush(i);
        }
    }
}

/// The network namespaces of `--netns`, which a thread enters in turn to connect (a socket
/// stays in the namespace it was made in).
struct Namespaces {
    files: Vec<std::io::Result<std::fs::File>>,
    /// The one this thread is in (0 also before any switch: the senders' namespace is the
    /// thread's own when `--netns` names it first, as it should).
    now: Option<usize>,
}

impl Namespaces {
    fn new(paths: &[std::path::PathBuf]) -> Self {
        Self {
            files: paths.iter().map(std::fs::File::open).collect(),
            now: None,
        }
    }

    /// Moves this thread into namespace `i` of `--netns` (nothing without `--netns`).
    fn enter(&mut self, i: usize) -> io::Result<()> {
        if self.files.is_empty() || self.now == Some(i) {
            return Ok(());
        }
        let f = match &self.files[i] {
            Ok(f) => f,
            Err(e) => return Err(io::Error::new(e.kind(), format!("--netns {i}: {e}"))),
        };
        // SAFETY: `f` is an open file; setns(2) only changes this thread's namespace.
        let r = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(f), libc::CLONE_NEWNET) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        self.now = Some(i);
        Ok(())
    }
}
