// SPDX-License-Identifier: GPL-2.0
//! The coordinator: starts the event-loop threads, moves the run through its phases
//! (connect, barrier, measure), watches for stalls, prints progress, and builds the record.

use std::{
    io::IsTerminal,
    sync::{atomic::Ordering, Arc},
    thread,
    time::{Duration, Instant},
};

use crate::{
    cpu::{CpuSample, CpuUse},
    event_loop,
    options::{Options, Protocol},
    record::Record,
    shared::{Phase, Shared, SYNC_CONN},
    sys,
    tracker::{latency_histogram, Counts, Tracker},
};

/// How often the coordinator looks at the run while waiting for a condition.
const TICK: Duration = Duration::from_millis(5);

/// How long to wait for the last barrier syncs to arrive before measuring anyway.
const DRAIN_MAX: Duration = Duration::from_millis(500);

/// Coordinator state while waiting.
struct Watch<'a> {
    shared: &'a Shared,
    started: Instant,
    last_progress: u64,
    last_change: Instant,
    quiet: bool,
    tty: bool,
    last_print: Instant,
    last_deliveries: u64,
}

impl Watch<'_> {
    /// Waits until `done()` is true; false if the run was aborted meanwhile (here or by a
    /// thread), for no progress within the idle timeout or the duration limit.
    fn until(&mut self, what: &str, mut done: impl FnMut(&Shared) -> bool) -> bool {
        loop {
            if self.shared.phase() == Phase::Aborted {
                return false;
            }
            if done(self.shared) {
                return true;
            }
            self.shared.wait_main(TICK);
            let now = Instant::now();
            let p = self.shared.progress.load(Ordering::Relaxed)
                + self.shared.deliveries.load(Ordering::Relaxed);
            if p != self.last_progress {
                self.last_progress = p;
                self.last_change = now;
            }
            let o = &self.shared.opts;
            if now - self.last_change > o.idle_timeout {
                let secs = o.idle_timeout.as_secs_f64();
                self.shared
                    .abort(format!("no progress for {secs} s while {what}"));
            } else if o.duration_limit.is_some_and(|d| now - self.started > d) {
                self.shared
                    .abort(format!("duration limit reached while {what}"));
            }
            self.progress(what, now);
        }
    }

    /// Prints the progress line (at most once a second).
    fn progress(&mut self, what: &str, now: Instant) {
        let dt = now - self.last_print;
        if self.quiet || dt < Duration::from_secs(if self.tty { 1 } else { 5 }) {
            return;
        }
        let sh = self.shared;
        let d = sh.deliveries.load(Ordering::Relaxed);
        let line = if sh.phase() == Phase::Measure {
            let total = sh.expected.load(Ordering::Relaxed);
            let rate = (d - self.last_deliveries) as f64 / dt.as_secs_f64();
            format!("measuring: {d}/{total} deliveries, {rate:.0} msg/s")
        } else {
            let up = sh.count_alive(|_| true);
            format!("{what}: {up}/{} connected", sh.layout.total())
        };
        if self.tty {
            eprint!("\r\x1b[Kkchat-bench: {line}");
        } else {
            eprintln!("kchat-bench: {line}");
        }
        self.last_print = now;
        self.last_deliveries = d;
    }

    /// Ends the progress line.
    fn done(&self) {
        if self.tty && !self.quiet {
            eprint!("\r\x1b[K");
        }
    }
}

/// Seconds between two monotonic timestamps.
fn secs(from: u64, to: u64) -> f64 {
    to.saturating_sub(from) as f64 / 1e9
}

/// Runs one benchmark and returns its record. `Err` only for failures to start at all.
pub(crate) fn run(opts: Options) -> Result<Record, String> {
    let limit = sys::raise_nofile_limit().map_err(|e| format!("RLIMIT_NOFILE: {e}"))?;
    let shared = Arc::new(Shared::new(opts));
    let need = shared.layout.total() as u64 + 16 + 2 * shared.opts.threads as u64;
    if need > limit {
        return Err(format!(
            "{need} file descriptors needed but RLIMIT_NOFILE is {limit} (hard limit)"
        ));
    }
    let handles = (0..shared.opts.threads)
        .map(|t| {
            let sh = shared.clone();
            thread::Builder::new()
                .name(format!("kchat-bench-{t}"))
                .spawn(move || {
                    let r = event_loop::run(sh.clone(), t);
                    if let Err(e) = &r {
                        sh.abort(format!("thread {t}: {e}"));
                    }
                    r
                })
                .map_err(|e| format!("spawning a thread: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    while shared.wakers_ready() < shared.opts.threads && !shared.phase().is_over() {
        thread::sleep(Duration::from_millis(1));
    }
    let now = Instant::now();
    let mut w = Watch {
        shared: &shared,
        started: now,
        last_progress: 0,
        last_change: now,
        quiet: shared.opts.quiet,
        tty: std::io::stderr().is_terminal(),
        last_print: now,
        last_deliveries: 0,
    };
    let phases = drive(&mut w);
    w.done();
    let end_sample = CpuSample::take(shared.opts.server_pid);
    // The phase is over (done or aborted); make sure every thread sees it now.
    shared.wake_all();
    let mut trackers = Vec::new();
    for h in handles {
        match h.join() {
            Ok(Ok(t)) => trackers.push(t),
            Ok(Err(_)) => {} // Already reported as the abort reason.
            Err(_) => return Err("an event-loop thread panicked".into()),
        }
    }
    Ok(build(&shared, phases, end_sample, trackers))
}

/// Timings of the setup phases, and what was fixed when measuring began.
struct Phases {
    connect_s: f64,
    barrier_s: f64,
    /// Recipients per message, averaged over the senders.
    recipients: f64,
    start: Option<CpuSample>,
}

/// Moves the run through its phases; returns when it is over.
fn drive(w: &mut Watch<'_>) -> Phases {
    let sh = w.shared;
    let mut ph = Phases {
        connect_s: 0.0,
        barrier_s: 0.0,
        recipients: 0.0,
        start: None,
    };
    let t = Instant::now();
    if !w.until("connecting", |sh| {
        sh.connect_done.load(Ordering::Acquire) == sh.opts.threads
    }) {
        return ph;
    }
    ph.connect_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    sh.set_phase(Phase::Barrier);
    if !barrier(w) {
        return ph;
    }
    ph.barrier_s = t.elapsed().as_secs_f64();
    match sh.fix_recipients() {
        Ok(r) => ph.recipients = r,
        Err(e) => {
            sh.abort(e);
            return ph;
        }
    }
    ph.start = Some(CpuSample::take(sh.opts.server_pid));
    sh.t0_ns.store(sys::monotonic_ns(), Ordering::Release);
    sh.set_phase(Phase::Measure);
    w.until("measuring", |sh| sh.phase().is_over());
    ph
}

/// The barrier: for kchat, until one sync reached every other client, then until the
/// last sync sent arrived everywhere (or [`DRAIN_MAX`]); for kchat with rooms, every
/// client's join confirmed; for RESP, every subscription; for IRC, every client's end of
/// names for its channel.
fn barrier(w: &mut Watch<'_>) -> bool {
    let sh = w.shared;
    if !sh.layout.syncs() {
        let what = match sh.layout.protocol {
            Protocol::Resp => "subscribing",
            Protocol::Kchat => "joining rooms",
            Protocol::Irc => "joining channels",
        };
        return w.until(what, |sh| {
            let confirmed = sh.confirmed.load(Ordering::Acquire) as usize;
            confirmed >= sh.count_alive(|r| sh.layout.confirms(r))
        });
    }
    if !sh.alive[SYNC_CONN].load(Ordering::Acquire) {
        sh.abort("the client that sends the barrier's syncs did not connect".into());
        return false;
    }
    // Clients a sync must reach, and the most any sync has reached so far.
    let all = |sh: &Shared| sh.count_alive(|r| r.receiver).saturating_sub(1) as u32;
    let best = |sh: &Shared| {
        let sent = (sh.sync_sent.load(Ordering::Acquire) as usize).min(sh.sync_counts.len());
        let counts = sh.sync_counts[..sent].iter();
        counts.map(|c| c.load(Ordering::Acquire)).max().unwrap_or(0)
    };
    let mut best_seen = 0;
    let passed = w.until("waiting for the barrier", |sh| {
        let b = best(sh);
        if b > best_seen {
            // Only a sync reaching more clients than any before counts as progress.
            best_seen = b;
            sh.progress.fetch_add(1, Ordering::Relaxed);
        }
        b >= all(sh)
    });
    if !passed {
        let (b, a) = (best(sh), all(sh));
        sh.show_error(&format!(
            "barrier: the best sync reached {b} of {a} clients"
        ));
        return false;
    }
    sh.set_phase(Phase::Drain);
    let t = Instant::now();
    w.until("draining the barrier", |sh| {
        let sent = (sh.sync_sent.load(Ordering::Acquire) as usize).min(sh.sync_counts.len());
        sh.sync_counts[sent - 1].load(Ordering::Acquire) >= all(sh) || t.elapsed() > DRAIN_MAX
    })
}

/// Builds the record from every thread's accounting.
fn build(sh: &Shared, ph: Phases, end: CpuSample, mut trackers: Vec<Tracker>) -> Record {
    let o = &sh.opts;
    let sent: Vec<u32> = sh.sent.iter().map(|s| s.load(Ordering::Acquire)).collect();
    let mut counts = Counts::default();
    let mut hist = latency_histogram();
    let (mut local, mut remote) = (latency_histogram(), latency_histogram());
    for t in &mut trackers {
        local
            .add(&t.local_hist)
            .expect("latency histograms share their bounds");
        remote
            .add(&t.remote_hist)
            .expect("latency histograms share their bounds");
        if ph.start.is_some() {
            t.count_tail_losses(&sent);
        }
        counts.add(&t.counts);
        hist.add(&t.hist)
            .expect("latency histograms share their bounds");
    }
    let aborted = sh.phase() != Phase::Done;
    let abort_reason = aborted.then(|| sh.abort_reason()).flatten();
    if aborted {
        counts.errors += 1;
    }
    let t0 = sh.t0_ns.load(Ordering::Acquire);
    let elapsed_s = if ph.start.is_some() {
        secs(t0, sh.end_ns.load(Ordering::Acquire))
    } else {
        0.0
    };
    let cpu = ph
        .start
        .map(|s| CpuUse::between(&s, &end))
        .unwrap_or_default();
    let per_s = |v: f64| if elapsed_s > 0.0 { v / elapsed_s } else { 0.0 };
    let us = |ns: u64| ns as f64 / 1e3;
    let ok = !aborted
        && counts.lost + counts.duplicated + counts.reordered + counts.corrupted + counts.errors
            == 0;
    Record {
        recipients: ph.recipients.round() as u64,
        sent: sent.iter().map(|&s| u64::from(s)).sum(),
        deliveries: counts.deliveries,
        msgs_per_s: per_s(counts.deliveries as f64),
        mb_per_s: per_s(counts.bytes as f64 / 1e6),
        p50_us: us(hist.value_at_quantile(0.50)),
        p90_us: us(hist.value_at_quantile(0.90)),
        p99_us: us(hist.value_at_quantile(0.99)),
        p999_us: us(hist.value_at_quantile(0.999)),
        max_us: us(hist.max()),
        mean_us: hist.mean() / 1e3,
        split: (o.netns.len() > 1).then(|| crate::record::Split {
            local_deliveries: local.len(),
            local_p50_us: us(local.value_at_quantile(0.50)),
            local_p99_us: us(local.value_at_quantile(0.99)),
            remote_deliveries: remote.len(),
            remote_p50_us: us(remote.value_at_quantile(0.50)),
            remote_p99_us: us(remote.value_at_quantile(0.99)),
        }),
        lost: counts.lost,
        duplicated: counts.duplicated,
        reordered: counts.reordered,
        corrupted: counts.corrupted,
        errors: counts.errors,
        connect_s: ph.connect_s,
        barrier_s: ph.barrier_s,
        elapsed_s,
        loadgen_cpu_s: cpu.loadgen_s,
        machine_busy_cpu_s: cpu.busy_s,
        steal_cpu_s: cpu.steal_s,
        server_cpu_us_per_msg: cpu
            .server_s()
            .filter(|_| counts.deliveries > 0)
            .map(|s| s * 1e6 / counts.deliveries as f64),
        server_process_cpu_s: cpu.server_process_s,
        server_process_us_per_msg: cpu
            .server_process_s
            .filter(|_| counts.deliveries > 0)
            .map(|s| s * 1e6 / counts.deliveries as f64),
        ok,
        aborted,
        abort_reason,
        ..Record::for_run(o)
    }
}
