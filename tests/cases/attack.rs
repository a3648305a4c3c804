//! Tools of the hostile-client cases: honest clients that keep chatting and measure their
//! latency while attackers do their worst, kchat's memory baseline, a seeded random source,
//! and fault injection.

use std::{
    io::{Read, Write},
    net::TcpStream,
    os::fd::AsRawFd,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use kchat_proto::{encode, encode_into, Conn, Decoder};

use crate::{
    ensure,
    util::{meminfo, recv_until, stat, Context, ADDR, STEP},
};

/// A small, fast, seedable random source (xorshift64*), so that a failing run can be replayed
/// from its printed seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Closes `s` with a reset (SO_LINGER 0) instead of a FIN.
pub fn reset(s: TcpStream) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `s` is an open socket and `l` a valid linger structure of the given size.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const l).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(s);
}

/// What two honest clients saw during an attack.
#[derive(Debug, Default)]
pub struct HonestReport {
    pub pings: u64,
    pub max_latency: Duration,
}

/// Two well-behaved clients, A and B, that ping each other at a steady interval during an attack
/// and time each ping. Each reads continuously (the attackers' messages reach them too), so neither
/// becomes a slow consumer.
pub struct Honest {
    stop: Arc<AtomicBool>,
    /// Set once the sender has stopped: `rounds` is final.
    sent_all: Arc<AtomicBool>,
    /// Pings sent by each of A and B.
    rounds: Arc<AtomicU64>,
    threads: Vec<JoinHandle<Result<(u64, Duration), String>>>,
    sender: JoinHandle<Result<(), String>>,
}

/// Reads frames from `s`, timing the pings that come from `peer`, until the sender has stopped
/// (`sent_all`) and every ping sent (`rounds`) has arrived, or `bound` has passed since it
/// stopped. (Checking the stop request itself would race with a ping being sent.)
fn honest_reader(
    mut s: TcpStream,
    peer: String,
    sent_all: Arc<AtomicBool>,
    rounds: Arc<AtomicU64>,
    bound: Duration,
    t0: Instant,
) -> Result<(u64, Duration), String> {
    let mut d = Decoder::new(2 << 20);
    let mut got = 0u64;
    let mut worst = Duration::ZERO;
    let mut stopped: Option<Instant> = None;
    let prefix = format!("{peer}: ping ");
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .ctx("timeout")?;
    loop {
        if sent_all.load(Ordering::SeqCst) {
            let since = *stopped.get_or_insert_with(Instant::now);
            if got >= rounds.load(Ordering::SeqCst) || since.elapsed() > bound {
                return Ok((got, worst));
            }
        }
        let spare = d.spare(64 * 1024);
        match s.read(spare) {
            Ok(0) => return Err("an honest client was disconnected".into()),
            Ok(n) => d.filled(n),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("an honest client's read failed: {e}")),
        }
        while let Some(f) = d.next_frame().map_err(|e| e.to_string())? {
            // Most frames are the attackers': skip them without decoding.
            let Some(rest) = f.strip_prefix(prefix.as_bytes()) else {
                continue;
            };
            let rest = String::from_utf8_lossy(rest);
            {
                let micros: u64 = rest
                    .split(' ')
                    .nth(1)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let latency = t0.elapsed().saturating_sub(Duration::from_micros(micros));
                if latency > worst {
                    worst = latency;
                    if latency > Duration::from_secs(1) {
                        println!("# honest ping late: {latency:?} at {:?}", t0.elapsed());
                    }
                }
                got += 1;
            }
        }
    }
}

impl Honest {
    /// Connects A and B (kchat must be loaded) and starts pinging every `interval`. Each ping
    /// must arrive within `bound`.
    pub fn start(interval: Duration, bound: Duration) -> Result<Self, String> {
        let a = TcpStream::connect(ADDR).ctx("honest connect")?;
        let b = TcpStream::connect(ADDR).ctx("honest connect")?;
        a.set_nodelay(true).ctx("nodelay")?;
        b.set_nodelay(true).ctx("nodelay")?;
        let (la, lb) = (
            a.local_addr().ctx("addr")?.to_string(),
            b.local_addr().ctx("addr")?.to_string(),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let sent_all = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicU64::new(0));
        let t0 = Instant::now();
        let threads = vec![
            {
                let (s, done, rounds) = (
                    a.try_clone().ctx("clone")?,
                    sent_all.clone(),
                    rounds.clone(),
                );
                let peer = lb.clone();
                thread::spawn(move || honest_reader(s, peer, done, rounds, bound, t0))
            },
            {
                let (s, done, rounds) = (
                    b.try_clone().ctx("clone")?,
                    sent_all.clone(),
                    rounds.clone(),
                );
                let peer = la.clone();
                thread::spawn(move || honest_reader(s, peer, done, rounds, bound, t0))
            },
        ];
        let (stop2, rounds2) = (stop.clone(), rounds.clone());
        let sender = thread::spawn(move || -> Result<(), String> {
            let (mut a, mut b) = (a, b);
            let mut i = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                let now = t0.elapsed().as_micros();
                for s in [&mut a, &mut b] {
                    s.write_all(&encode(format!("ping {i} {now}").as_bytes()))
                        .map_err(|e| format!("an honest client could not send: {e}"))?;
                }
                i += 1;
                rounds2.store(i, Ordering::SeqCst);
                thread::sleep(interval);
            }
            Ok(())
        });
        Ok(Self {
            stop,
            sent_all,
            rounds,
            threads,
            sender,
        })
    }

    /// Stops pinging and checks that every ping arrived within `bound`.
    pub fn stop(self, bound: Duration) -> Result<HonestReport, String> {
        // The readers wait for the last pings.
        self.stop.store(true, Ordering::Relaxed);
        let sender = self.sender.join();
        self.sent_all.store(true, Ordering::SeqCst);
        sender.map_err(|_| "honest sender panicked".to_string())??;
        let sent = 2 * self.rounds.load(Ordering::SeqCst);
        let mut report = HonestReport::default();
        for t in self.threads {
            let (got, worst) = t
                .join()
                .map_err(|_| "honest reader panicked".to_string())??;
            report.pings += got;
            report.max_latency = report.max_latency.max(worst);
        }
        ensure!(
            report.pings == sent,
            "honest clients got {} of {sent} pings",
            report.pings
        );
        ensure!(
            report.max_latency <= bound,
            "an honest ping took {:?} (bound {bound:?})",
            report.max_latency
        );
        Ok(report)
    }
}

/// Asks every slab cache to give back what it can (this also empties KASAN's quarantine of
/// freed objects), so that memory figures are comparable.
pub fn shrink_slabs() {
    if let Ok(dir) = std::fs::read_dir("/sys/kernel/slab") {
        for e in dir.flatten() {
            let _ = std::fs::write(e.path().join("shrink"), "1");
        }
    }
}

/// The `history` parameter in `params` (kchat's default, 20, when absent).
fn history_param(params: &str) -> u32 {
    params
        .split_whitespace()
        .find_map(|p| p.strip_prefix("history=")?.parse().ok())
        .unwrap_or(20)
}

/// Puts `#lobby`'s history in a known state: `history` identical messages from one client
/// (nick `hist.filler`), which then leaves. `#lobby` is never removed, so its history outlives
/// the clients of a case; filled this way before the baseline and again after the attack, it
/// holds frames of the same sizes both times, and kchat's memory compares exactly.
fn settle_lobby_history(history: u32) -> Result<(), String> {
    if history == 0 {
        return Ok(());
    }
    let before = stat("clients_allocated")?;
    let mut c = Conn::connect(ADDR).ctx("history filler")?;
    let mut batch = encode(b"/nick hist.filler");
    for _ in 0..history {
        encode_into(b"fill", &mut batch);
    }
    encode_into(b"/who", &mut batch);
    c.send_raw(&batch).ctx("history filler")?;
    // Answered once kchat has read (and kept) every message before it.
    recv_until(&mut c, "the history filler's /who", |f| {
        f.starts_with("* ") && f.contains(" online")
    })?;
    drop(c);
    let deadline = Instant::now() + STEP;
    while stat("clients_allocated")? > before {
        ensure!(
            Instant::now() < deadline,
            "the history filler is still allocated"
        );
        thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Log pages that may outlive a case's clients: `#lobby` keeps the page each of its two logs
/// (native, IRC) writes into, and its settled history may straddle one page boundary more or
/// one fewer than at the baseline. Every other log page goes with the last frame on it.
pub const LOG_PAGES_SLACK: u64 = 2;

/// Notes log pages that may outlive a case's clients: the page the server's notes log
/// writes into. Every other goes with the last frame on it.
pub const NOTE_PAGES_SLACK: u64 = 1;

/// Every slab cache's size, KiB, from `/proc/slabinfo` (empty where the kernel has none): when
/// the unreclaimable slab does not come back, the caches that grew say whose it is.
#[derive(Clone, Default)]
pub struct SlabCaches(Vec<(String, u64)>);

impl SlabCaches {
    fn sample() -> Self {
        let Ok(text) = std::fs::read_to_string("/proc/slabinfo") else {
            return Self::default();
        };
        // name active_objs num_objs objsize objperslab pagesperslab : tunables .. : slabdata
        // active_slabs num_slabs sharedavail
        let caches = text
            .lines()
            .skip(2)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let pages: u64 = f.get(5)?.parse().ok()?;
                let slabs: u64 = f.get(14)?.parse().ok()?;
                Some((f[0].to_string(), slabs * pages * 4))
            })
            .collect();
        Self(caches)
    }

    /// The `n` caches that grew most since `base`, as `name +KiB`.
    fn growth_since(&self, base: &SlabCaches, n: usize) -> String {
        let mut grew: Vec<(i64, &str)> = self
            .0
            .iter()
            .map(|(name, kib)| {
                let before = base.0.iter().find(|(b, _)| b == name).map_or(0, |b| b.1);
                (*kib as i64 - before as i64, name.as_str())
            })
            .filter(|(d, _)| *d > 0)
            .collect();
        grew.sort_unstable_by(|a, b| b.cmp(a));
        let top: Vec<String> = grew
            .iter()
            .take(n)
            .map(|(d, name)| format!("{name} +{d}"))
            .collect();
        if top.is_empty() {
            "none in /proc/slabinfo".into()
        } else {
            top.join(", ")
        }
    }
}

impl std::fmt::Debug for SlabCaches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} caches", self.0.len())
    }
}

/// kchat's memory, and the kernel's unreclaimable slab, at a quiet moment.
#[derive(Debug, Clone)]
pub struct Memory {
    clients_allocated: u64,
    buffer_bytes: u64,
    /// Pages of kchat's message logs (counted exactly; see [`LOG_PAGES_SLACK`]).
    log_pages: u64,
    /// Pages of the notes log (counted exactly; see [`NOTE_PAGES_SLACK`]).
    note_pages: u64,
    slab_kib: u64,
    /// kchat's `history` parameter: [`settle_lobby_history`] needs it.
    history: u32,
    /// Per cache, for the message when the slab does not come back.
    caches: SlabCaches,
}

impl Memory {
    /// The baseline of a case that loaded kchat with `params` and has no client yet, with
    /// `#lobby`'s history settled.
    pub fn baseline(params: &str) -> Result<Self, String> {
        let history = history_param(params);
        settle_lobby_history(history)?;
        Self::sample(history)
    }

    /// Measures now (after shrinking the caches).
    fn sample(history: u32) -> Result<Self, String> {
        shrink_slabs();
        Ok(Self {
            clients_allocated: stat("clients_allocated")?,
            buffer_bytes: stat("buffer_bytes")?,
            log_pages: stat("log_pages")?,
            note_pages: stat("note_pages")?,
            slab_kib: meminfo("SUnreclaim")?,
            history,
            caches: SlabCaches::sample(),
        })
    }

    /// Waits until kchat's own memory is back to exactly this baseline (its client objects
    /// and message buffers are counted precisely), then checks the kernel's unreclaimable
    /// slab is within `tolerance_kib` of it. The tolerance covers what outlives a connection
    /// by design and is not kchat's: TIME_WAIT sockets (tcp_max_tw_buckets is capped in the
    /// guest), SLUB's per-CPU partial slabs that a shrink keeps, and kmemleak's metadata.
    /// `#lobby`'s history is settled first, as it was for the baseline.
    pub fn expect_back(&self, tolerance_kib: u64) -> Result<Memory, String> {
        settle_lobby_history(self.history)?;
        // Sockets closed by either side are freed by the kernel over the following seconds
        // (orphans finishing their close, RCU, KASAN's quarantine): poll, do not sample once.
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let now = Memory::sample(self.history)?;
            let own = now.clients_allocated == self.clients_allocated
                && now.buffer_bytes == self.buffer_bytes
                && now.log_pages <= self.log_pages + LOG_PAGES_SLACK
                && now.note_pages <= self.note_pages.max(NOTE_PAGES_SLACK);
            let slab = now.slab_kib <= self.slab_kib + tolerance_kib;
            if own && slab {
                return Ok(now);
            }
            if Instant::now() > deadline {
                ensure!(
                    own,
                    "kchat memory did not return to baseline: {now:?}, baseline {self:?}"
                );
                return Err(format!(
                    "unreclaimable slab is {} KiB, baseline {} KiB (+{tolerance_kib} allowed); \
                     grew most (KiB): {}",
                    now.slab_kib,
                    self.slab_kib,
                    now.slab_growth_since(self)
                ));
            }
            thread::sleep(Duration::from_millis(500));
        }
    }

    /// The slab caches that grew most since `base`, KiB.
    pub fn slab_growth_since(&self, base: &Memory) -> String {
        self.caches.growth_since(&base.caches, 6)
    }
}

/// Fault injection into allocations made with kchat's code on the stack (failslab and
/// fail_page_alloc with a stack-trace filter over the module's text). Undone on drop.
pub struct FaultInjection {
    dirs: Vec<&'static str>,
}

/// kchat's text range, from /proc/kallsyms.
fn module_text() -> Result<(u64, u64), String> {
    let syms = std::fs::read_to_string("/proc/kallsyms").ctx("read kallsyms")?;
    let mut lo = u64::MAX;
    let mut hi = 0;
    for line in syms.lines().filter(|l| l.ends_with("[kchat]")) {
        let mut f = line.split_whitespace();
        let (Some(addr), Some(kind)) = (f.next(), f.next()) else {
            continue;
        };
        if !matches!(kind, "t" | "T") {
            continue;
        }
        let a = u64::from_str_radix(addr, 16).unwrap_or(0);
        if a != 0 {
            lo = lo.min(a);
            hi = hi.max(a);
        }
    }
    ensure!(lo < hi, "no kchat text symbols in /proc/kallsyms");
    // The last function's length is unknown: allow a page past its start.
    Ok((lo, hi + 4096))
}

impl FaultInjection {
    /// Fails `percent` % of kchat's allocations from now on.
    pub fn start(percent: u32) -> Result<Self, String> {
        let (lo, hi) = module_text()?;
        // Disarmed on drop, also when setting up fails half way.
        let mut armed = Self { dirs: Vec::new() };
        for d in [
            "/sys/kernel/debug/failslab",
            "/sys/kernel/debug/fail_page_alloc",
        ] {
            ensure!(
                std::path::Path::new(d).exists(),
                "{d} missing: fault injection is not configured"
            );
            armed.dirs.push(d);
            // In this order: the filters first, the probability last. Set the other way round,
            // the writes themselves would fail, and so would every allocation in the guest.
            let settings = [
                ("probability", "0".to_string()),
                ("task-filter", "N".into()),
                ("require-start", lo.to_string()),
                ("require-end", hi.to_string()),
                ("stacktrace-depth", "32".into()),
                ("ignore-gfp-wait", "N".into()),
                ("min-order", "0".into()),
                ("space", "0".into()),
                ("verbose", "0".into()),
                ("interval", "1".into()),
                ("times", "-1".into()),
                ("probability", percent.to_string()),
            ];
            for (k, v) in &settings {
                let p = format!("{d}/{k}");
                if std::path::Path::new(&p).exists() {
                    std::fs::write(&p, v).ctx(&format!("write {p}"))?;
                }
            }
        }
        Ok(armed)
    }
}

impl Drop for FaultInjection {
    fn drop(&mut self) {
        for d in &self.dirs {
            let _ = std::fs::write(format!("{d}/probability"), "0");
            let _ = std::fs::write(format!("{d}/times"), "0");
        }
    }
}

/// A process that holds `mib` MiB of touched memory until killed, the most likely victim of
/// the OOM killer (oom_score_adj 1000); the test runner protects itself (-1000).
pub struct Hog(std::process::Child);

impl Hog {
    pub fn start(mib: u64) -> Result<Self, String> {
        let _ = std::fs::write("/proc/self/oom_score_adj", "-1000");
        let exe = std::env::current_exe().ctx("current exe")?;
        let mut child = std::process::Command::new(exe)
            .args(["--hog", &mib.to_string()])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .ctx("spawn hog")?;
        let mut out = child.stdout.take().ok_or("no hog stdout")?;
        let mut ready = [0u8; 1];
        out.read_exact(&mut ready).ctx("hog did not start")?;
        Ok(Self(child))
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The hog's body (`kchat-vmtest --hog MIB`): allocate, touch every page, say so, sleep.
pub fn hog_main(mib: u64) -> ! {
    let _ = std::fs::write("/proc/self/oom_score_adj", "1000");
    let mut blocks = Vec::new();
    for _ in 0..mib {
        let mut v = vec![0u8; 1 << 20];
        for i in (0..v.len()).step_by(4096) {
            v[i] = 1;
        }
        blocks.push(v);
    }
    let _ = std::io::stdout().write_all(b"r");
    let _ = std::io::stdout().flush();
    loop {
        thread::sleep(Duration::from_secs(60));
        let _ = &blocks;
    }
}

/// Runs `f` in `n` threads (each given its index) and collects the first error.
pub fn in_threads<F>(n: usize, f: F) -> Result<(), String>
where
    F: Fn(usize) -> Result<(), String> + Send + Sync + 'static,
{
    let f = Arc::new(f);
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let f = f.clone();
            thread::spawn(move || f(i))
        })
        .collect();
    let mut first = Ok(());
    for h in handles {
        let r = h
            .join()
            .map_err(|_| "attacker thread panicked".to_string())
            .and_then(|r| r);
        if first.is_ok() {
            first = r;
        }
    }
    first
}
