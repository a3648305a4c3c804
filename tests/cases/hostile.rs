//! Hostile clients and faults: fuzzing, slowloris, connection churn, floods, memory pressure,
//! allocation failures, and unloading through all of it. Each case keeps two honest clients
//! chatting (every ping delivered, latency bounded) and checks that kchat's memory returns to
//! its baseline once the attackers are gone.
//!
//! The short form runs in `make test` on the debug kernel; the full form is `make stress`, on
//! the KASAN kernel.

use std::{
    io::{Read, Write},
    net::{Shutdown, TcpStream},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use kchat_proto::encode;

use crate::{
    attack::{in_threads, reset, FaultInjection, Hog, Honest, Memory, Rng},
    ensure, module,
    util::{meminfo, start, stat, wait_clients, Context, ADDR, STEP},
    Case, CaseResult,
};

/// The fixed seed of the fuzz case; printed, so that a failure can be replayed.
const SEED: u64 = 0x6b63_6861_7421;

/// How hard each case pushes.
pub struct Scale {
    name: &'static str,
    fuzz_attackers: usize,
    fuzz_rounds: usize,
    slowloris: usize,
    slowloris_secs: u64,
    churn: usize,
    flood_secs: u64,
    fault_secs: u64,
    pressure_attackers: usize,
    reload_cycles: usize,
    /// Largest latency an honest ping may see during an attack.
    latency_bound: Duration,
}

/// `make test`: a taste of each attack, on the debug kernel.
pub const SHORT: Scale = Scale {
    name: "short",
    fuzz_attackers: 8,
    fuzz_rounds: 15,
    slowloris: 200,
    slowloris_secs: 3,
    churn: 2_000,
    flood_secs: 4,
    fault_secs: 4,
    pressure_attackers: 40,
    reload_cycles: 3,
    latency_bound: Duration::from_secs(5),
};

/// `make stress`: the full suite, on the KASAN kernel.
pub const FULL: Scale = Scale {
    name: "full",
    fuzz_attackers: 32,
    fuzz_rounds: 100,
    slowloris: 2_000,
    slowloris_secs: 20,
    churn: 100_000,
    flood_secs: 20,
    fault_secs: 20,
    pressure_attackers: 200,
    reload_cycles: 20,
    // Measured worst cases with 32 fuzzers: 6 s on the debug kernel, more under KASAN (both
    // under TCG, sharing two vCPUs with the attackers). The bound catches stalls and lost
    // pings, it is not a benchmark.
    latency_bound: Duration::from_secs(30),
};

/// Unreclaimable slab allowed above the baseline after an attack, KiB (see
/// [`Memory::expect_back`] for what it covers).
const SLAB_TOLERANCE_KIB: u64 = 4096;

macro_rules! scaled_cases {
    ($($name:ident: $desc:literal),* $(,)?) => {
        /// The cases at scale `SHORT` (`full` false) or `FULL`.
        pub fn cases(full: bool) -> Vec<Case> {
            mod short {
                $(pub fn $name() -> crate::CaseResult { super::$name(&super::SHORT) })*
            }
            mod full {
                $(pub fn $name() -> crate::CaseResult { super::$name(&super::FULL) })*
            }
            if full {
                vec![$(Case { name: $desc, run: full::$name }),*]
            } else {
                vec![$(Case { name: $desc, run: short::$name }),*]
            }
        }
    };
}

scaled_cases! {
    fuzz: "hostile: random bytes and frame lengths from many clients (seeded)",
    slowloris: "hostile: slowloris (stalled headers, one byte a second)",
    churn: "hostile: connection churn with RST, half-close, mid-frame",
    flood: "hostile: one flooder is throttled, others' latency stays bounded",
    allocation_failures: "hostile: injected allocation failures disconnect, never crash or leak",
    memory_pressure: "hostile: guest near its memory limit while clients connect and flood",
    reload_under_attack: "hostile: rmmod and insmod in a loop while attacks run",
}

/// Loads kchat, takes the memory baseline (no client yet), and starts the honest pair, pinging
/// every 100 ms.
fn begin(scale: &Scale, params: &str) -> Result<(Honest, Memory), String> {
    begin_pinging(scale, params, Duration::from_millis(100))
}

/// As [`begin`], pinging every `interval`.
fn begin_pinging(
    scale: &Scale,
    params: &str,
    interval: Duration,
) -> Result<(Honest, Memory), String> {
    start(params)?;
    let base = Memory::now()?;
    NET_BASE.with(|b| b.set(net_counters()));
    let honest = Honest::start(interval, scale.latency_bound)?;
    wait_clients(2, STEP)?;
    Ok((honest, base))
}

/// Waits for the attackers to be gone, stops the honest pair and checks what it saw, then
/// checks kchat's memory is back to `base` once nobody is connected.
fn finish(scale: &Scale, honest: Honest, base: Memory, what: &str) -> CaseResult {
    wait_clients(2, Duration::from_secs(120))?;
    let report = honest.stop(scale.latency_bound)?;
    wait_clients(0, STEP)?;
    let after = base.expect_back(SLAB_TOLERANCE_KIB)?;
    let (retrans, drops) = net_counters();
    let (retrans0, drops0) = NET_BASE.with(|b| b.get());
    println!(
        "# {what} ({}): {} honest pings, worst {:?}; memory {after:?} vs {base:?}; \
         loopback: {} packets dropped from full backlogs, {} TCP segments retransmitted",
        scale.name,
        report.pings,
        report.max_latency,
        drops - drops0,
        retrans - retrans0
    );
    Ok(())
}

thread_local! {
    /// [`net_counters`] when the case began.
    static NET_BASE: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) };
}

/// The guest's TCP retransmitted segments (/proc/net/snmp) and packets dropped because a
/// CPU's input backlog was full (/proc/net/softnet_stat, second column): when an honest ping
/// is late by seconds, these say whether loopback dropped it and TCP's backoff resent it.
fn net_counters() -> (u64, u64) {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let retrans = match (tcp.next(), tcp.next()) {
        (Some(names), Some(values)) => names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(n, _)| *n == "RetransSegs")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0),
        _ => 0,
    };
    let softnet = std::fs::read_to_string("/proc/net/softnet_stat").unwrap_or_default();
    let drops = softnet
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|v| u64::from_str_radix(v, 16).ok())
        .sum();
    (retrans, drops)
}

/// Many attackers at once, each a seeded random mix of: valid frames of random length and
/// content, lengths over the limit (up to 0xFFFFFFFF), raw random bytes, frames cut short by a
/// reset, frames dribbled in random pieces. Attackers never read, so some end as slow
/// consumers too.
fn fuzz(scale: &'static Scale) -> CaseResult {
    // The honest pair must read every valid frame the attackers send, and a reader thread of
    // the test (among dozens, in a KASAN guest) can fall behind by a few bursts: an 8 MiB queue
    // absorbs them (the frames are shared, so it costs little), while the attackers, who never
    // read, still fill theirs and are dropped. The rate limit bounds each connection's burst.
    let (honest, base) = begin(
        scale,
        "notices=0 max_msg_len=2048 max_queue_bytes=8388608 max_msg_rate=20",
    )?;
    println!(
        "# fuzz seed {SEED:#x} ({} attackers x {} rounds)",
        scale.fuzz_attackers, scale.fuzz_rounds
    );
    let rounds = scale.fuzz_rounds;
    in_threads(scale.fuzz_attackers, move |id| {
        let mut rng = Rng::new(SEED ^ (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        for _ in 0..rounds {
            // A pause between rounds: the attackers share the guest's two vCPUs with the
            // honest pair, and what is measured is kchat, not how starved a test thread gets.
            thread::sleep(Duration::from_millis(10 + rng.below(30)));
            let Ok(mut s) = TcpStream::connect(ADDR) else {
                continue;
            };
            match rng.below(5) {
                0 => {
                    for _ in 0..1 + rng.below(5) {
                        let len = rng.below(2049) as usize;
                        let _ = s.write_all(&encode(&rng.bytes(len)));
                    }
                }
                1 => {
                    let len = 2049 + rng.below(u64::from(u32::MAX) - 2049) as u32;
                    let _ = s.write_all(&len.to_le_bytes());
                    let n = rng.below(100) as usize;
                    let _ = s.write_all(&rng.bytes(n));
                    // The notice and the close come back; read them, briefly.
                    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                    let _ = s.read(&mut [0u8; 256]);
                }
                2 => {
                    let n = 1 + rng.below(4096) as usize;
                    let _ = s.write_all(&rng.bytes(n));
                }
                3 => {
                    let len = 100 + rng.below(1900) as u32;
                    let _ = s.write_all(&len.to_le_bytes());
                    let n = rng.below(u64::from(len)) as usize;
                    let _ = s.write_all(&rng.bytes(n));
                    reset(s);
                    continue;
                }
                _ => {
                    let n = rng.below(2049) as usize;
                    let frame = encode(&rng.bytes(n));
                    let mut at = 0;
                    while at < frame.len() {
                        let n = (1 + rng.below(64) as usize).min(frame.len() - at);
                        let _ = s.write_all(&frame[at..at + n]);
                        at += n;
                        thread::sleep(Duration::from_millis(rng.below(3)));
                    }
                }
            }
            if rng.below(2) == 0 {
                reset(s);
            }
        }
        Ok(())
    })?;
    finish(scale, honest, base, "fuzz")
}

/// Thousands of connections that send a header and stall, or dribble a frame one byte a
/// second. kchat's memory stays bounded by what they declared (each at most max_msg_len);
/// new clients still get in and chat. (The stalled clients are in the room too: every honest
/// ping goes to all of them, so the pair pings once a second here.)
fn slowloris(scale: &'static Scale) -> CaseResult {
    let (honest, base) =
        begin_pinging(scale, "notices=0 max_msg_len=4096", Duration::from_secs(1))?;
    let mut stalled = Vec::new();
    let mut dribblers = Vec::new();
    for i in 0..scale.slowloris {
        let mut s = TcpStream::connect(ADDR).ctx("slowloris connect")?;
        if i % 2 == 0 {
            s.write_all(&4096u32.to_le_bytes()).ctx("send")?;
            s.write_all(b"0123456789").ctx("send")?;
            stalled.push(s);
        } else {
            s.set_nonblocking(true).ctx("nonblocking")?;
            dribblers.push((s, encode(&[b'd'; 100]), 0usize));
        }
    }
    wait_clients(2 + scale.slowloris as u64, Duration::from_secs(120))?;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(scale.slowloris_secs) {
        for (s, frame, at) in dribblers.iter_mut() {
            if *at < frame.len() && s.write(&frame[*at..*at + 1]).is_ok() {
                *at += 1;
            }
        }
        thread::sleep(Duration::from_secs(1));
    }
    // A newcomer is served at once, however many stall.
    let mut late = kchat_proto::Conn::connect(ADDR).ctx("late client")?;
    late.send(b"/who").ctx("send")?;
    // The honest pair's pings reach the newcomer too; the answer is among them.
    let deadline = Instant::now() + STEP;
    loop {
        let f = late.recv_text(STEP).ctx("late client's /who")?;
        if f.starts_with("* ") {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "no /who answer for the late client"
        );
    }
    let held = stat("buffer_bytes")?;
    let bound = (scale.slowloris as u64).div_ceil(2) * 8192 + 65536;
    println!(
        "# slowloris: {} connections hold {held} bytes of buffers (bound {bound})",
        scale.slowloris
    );
    ensure!(
        held <= bound,
        "stalled clients hold {held} bytes, more than {bound}"
    );
    drop(late);
    drop(stalled);
    drop(dribblers);
    finish(scale, honest, base, "slowloris")
}

/// Connect/disconnect cycles from 4 threads, each ending one of five ways: FIN, RST,
/// half-close (then read to the end), mid-frame then RST, or one message then FIN.
fn churn(scale: &'static Scale) -> CaseResult {
    let (honest, base) = begin(scale, "notices=1")?;
    let per_thread = scale.churn / 4;
    let done = Arc::new(AtomicU64::new(0));
    let progress = done.clone();
    let t = Instant::now();
    in_threads(4, move |id| {
        for i in 0..per_thread {
            let mut s = TcpStream::connect(ADDR).map_err(|e| format!("churn connect {i}: {e}"))?;
            match (i + id) % 5 {
                0 => drop(s),
                1 => reset(s),
                2 => {
                    let _ = s.shutdown(Shutdown::Write);
                    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                    let mut sink = [0u8; 4096];
                    while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
                }
                3 => {
                    let _ = s.write_all(&50u32.to_le_bytes());
                    let _ = s.write_all(b"half a frame");
                    reset(s);
                }
                _ => {
                    let _ = s.write_all(&encode(b"hello and goodbye"));
                }
            }
            let n = progress.fetch_add(1, Ordering::Relaxed) + 1;
            if n % 20_000 == 0 {
                println!("# churn: {n} connections");
            }
        }
        Ok(())
    })?;
    println!(
        "# churn: {} connections in {:.1} s",
        done.load(Ordering::Relaxed),
        t.elapsed().as_secs_f64()
    );
    finish(scale, honest, base, "churn")
}

/// One client writes small messages as fast as it can (it reads what it receives, so only its
/// sending is at issue). With max_msg_rate=200 kchat relays at most about 200 a second from
/// it (plus the burst), pausing its socket rather than dropping it, and the honest pair's
/// latency stays bounded.
fn flood(scale: &'static Scale) -> CaseResult {
    const RATE: u64 = 200;
    let (honest, base) = begin(scale, "notices=0 max_msg_rate=200")?;
    let mut flooder = TcpStream::connect(ADDR).ctx("flooder")?;
    let mut watcher = kchat_proto::Conn::connect(ADDR).ctx("watcher")?;
    wait_clients(4, STEP)?;
    let flood_label = flooder.local_addr().ctx("addr")?.to_string();
    // The flooder drains what it receives, so it is not a slow consumer.
    let mut drain = flooder.try_clone().ctx("clone")?;
    thread::spawn(move || {
        let mut sink = [0u8; 65536];
        while matches!(drain.read(&mut sink), Ok(n) if n > 0) {}
    });
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let writer = thread::spawn(move || -> u64 {
        let mut batch = Vec::new();
        for i in 0..256 {
            batch.extend(encode(format!("flood {i:03}").as_bytes()));
        }
        let _ = flooder.set_write_timeout(Some(Duration::from_millis(100)));
        let mut written = 0u64;
        while !stop2.load(Ordering::Relaxed) {
            if let Ok(n) = flooder.write(&batch) {
                written += n as u64;
            }
        }
        // Ends the drain thread's read too.
        let _ = flooder.shutdown(Shutdown::Both);
        written
    });
    let t = Instant::now();
    let mut relayed = 0u64;
    while t.elapsed() < Duration::from_secs(scale.flood_secs) {
        if let Some(f) = watcher
            .recv_timeout(Duration::from_millis(100))
            .ctx("watcher")?
        {
            if f.starts_with(flood_label.as_bytes()) {
                relayed += 1;
            }
        }
    }
    let secs = t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let written = writer
        .join()
        .map_err(|_| "flood writer panicked".to_string())?;
    let ceiling = RATE + (RATE as f64 * secs * 1.1) as u64;
    println!(
        "# flood: {written} bytes written, {relayed} messages relayed in {secs:.1} s (rate {RATE}/s, ceiling {ceiling}); throttled {} times",
        stat("clients_throttled")?
    );
    ensure!(
        relayed <= ceiling,
        "{relayed} flood messages relayed in {secs:.1} s, over the rate"
    );
    ensure!(
        relayed >= RATE,
        "only {relayed} flood messages relayed: the flooder was starved, not throttled"
    );
    ensure!(
        stat("clients_throttled")? > 0,
        "the flooder was never throttled"
    );
    drop(watcher);
    finish(scale, honest, base, "flood")
}

/// With a fifth of kchat's allocations failing (fault injection on its own call paths),
/// clients chat, join and leave: the failures disconnect clients (or lose a notice) and never
/// crash, warn or leak. The honest pair is not expected to survive this one; after the
/// injection stops, new clients chat normally and kchat's memory is back to its baseline.
fn allocation_failures(scale: &'static Scale) -> CaseResult {
    let mut log = start("notices=1")?;
    let base = Memory::now()?;
    let stop = Arc::new(AtomicBool::new(false));
    let fi = FaultInjection::start(20)?;
    let stop2 = stop.clone();
    let workers = thread::spawn(move || {
        in_threads(6, move |id| {
            let mut rng = Rng::new(SEED ^ id as u64);
            while !stop2.load(Ordering::Relaxed) {
                let Ok(mut s) = TcpStream::connect(ADDR) else {
                    continue;
                };
                let _ = s.set_read_timeout(Some(Duration::from_millis(20)));
                for _ in 0..rng.below(30) {
                    let len = rng.below(3000) as usize;
                    let _ = s.write_all(&encode(&rng.bytes(len)));
                    let _ = s.read(&mut [0u8; 8192]);
                }
                if rng.below(2) == 0 {
                    reset(s);
                }
            }
            Ok(())
        })
    });
    thread::sleep(Duration::from_secs(scale.fault_secs));
    drop(fi);
    stop.store(true, Ordering::Relaxed);
    workers
        .join()
        .map_err(|_| "workers panicked".to_string())??;
    wait_clients(0, Duration::from_secs(60))?;
    let failed = log
        .records()
        .iter()
        .filter(|l| l.contains("out of memory"))
        .count();
    println!("# allocation failures: {failed} clients disconnected for lack of memory");
    ensure!(
        failed > 0,
        "no allocation failure reached kchat: is the injection working?"
    );
    base.expect_back(SLAB_TOLERANCE_KIB)?;
    let mut a = kchat_proto::Conn::connect(ADDR).ctx("after")?;
    let mut b = kchat_proto::Conn::connect(ADDR).ctx("after")?;
    wait_clients(2, STEP)?;
    a.send(b"all well again").ctx("send")?;
    let got = b.recv_text(STEP).ctx("after injection")?;
    ensure!(
        got.ends_with(": all well again"),
        "after the injection: {got:?}"
    );
    Ok(())
}

/// A process holds all but 48 MiB of the guest's available memory while attackers connect and
/// declare 1 MiB messages and send them slowly, and others flood 32 KiB messages. kchat's
/// large allocations may fail (the client is disconnected) or the OOM killer may take the hog;
/// kchat must not crash, the honest pair keeps chatting, and memory returns to its baseline.
fn memory_pressure(scale: &'static Scale) -> CaseResult {
    // The honest pair must read every flooded frame too: a queue large enough for the whole
    // burst keeps them from being dropped as slow consumers while the TCG guest catches up.
    let (honest, base) = begin(
        scale,
        "notices=0 max_msg_len=1048576 max_queue_bytes=33554432",
    )?;
    let avail = meminfo("MemAvailable")? / 1024;
    let hog = Hog::start(avail.saturating_sub(48))?;
    println!(
        "# memory pressure: hog holds {} MiB, {} MiB available",
        avail.saturating_sub(48),
        meminfo("MemAvailable")? / 1024
    );
    let attackers = scale.pressure_attackers;
    in_threads(4, move |id| {
        let mut conns = Vec::new();
        for i in 0..attackers / 4 {
            let Ok(mut s) = TcpStream::connect(ADDR) else {
                continue;
            };
            if (i + id) % 2 == 0 {
                let _ = s.write_all(&(1u32 << 20).to_le_bytes());
                let _ = s.write_all(&[b'p'; 1000]);
            } else {
                let _ = s.set_write_timeout(Some(Duration::from_millis(200)));
                for _ in 0..8 {
                    let _ = s.write_all(&encode(&[b'f'; 32 * 1024]));
                }
            }
            conns.push(s);
        }
        thread::sleep(Duration::from_secs(2));
        drop(conns);
        Ok(())
    })?;
    drop(hog);
    finish(scale, honest, base, "memory pressure")
}

/// Attackers (fuzzers, churners, a flooder) run in the background while the module is
/// unloaded and loaded again, `reload_cycles` times at random moments. Every unload must be
/// clean (the whole-log check sees it); attackers simply reconnect.
fn reload_under_attack(scale: &'static Scale) -> CaseResult {
    start("notices=1 max_msg_len=2048")?;
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let attackers = thread::spawn(move || {
        in_threads(6, move |id| {
            let mut rng = Rng::new(SEED.rotate_left(id as u32));
            while !stop2.load(Ordering::Relaxed) {
                let Ok(mut s) = TcpStream::connect(ADDR) else {
                    thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let _ = s.set_write_timeout(Some(Duration::from_millis(200)));
                for _ in 0..rng.below(50) {
                    let len = rng.below(2100) as usize;
                    let _ = s.write_all(&encode(&rng.bytes(len)));
                }
                if rng.below(3) == 0 {
                    reset(s);
                }
            }
            Ok(())
        })
    });
    let mut rng = Rng::new(SEED);
    for cycle in 0..scale.reload_cycles {
        thread::sleep(Duration::from_millis(200 + rng.below(800)));
        let t = Instant::now();
        module::unload().map_err(|e| format!("rmmod in cycle {cycle}: {e}"))?;
        let took = t.elapsed();
        ensure!(
            took < Duration::from_secs(60),
            "rmmod took {took:?} under attack"
        );
        thread::sleep(Duration::from_millis(rng.below(300)));
        start("notices=1 max_msg_len=2048")?;
    }
    stop.store(true, Ordering::Relaxed);
    attackers
        .join()
        .map_err(|_| "attackers panicked".to_string())??;
    println!("# reload under attack: {} cycles", scale.reload_cycles);
    Ok(())
}
