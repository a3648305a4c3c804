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
        Arc, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

use kchat_proto::{encode, encode_into};

use crate::{
    attack::{in_threads, reset, FaultInjection, Hog, Honest, Memory, Rng},
    ensure, module,
    util::{
        debugfs_table, meminfo, recv_until, room_names, room_rows, start, stat, wait_clients,
        wait_stat, Context, ADDR, CLIENTS_HEADER, STEP,
    },
    Case, CaseResult,
};

/// The fixed seed of the fuzz case; printed, so that a failure can be replayed.
pub(crate) const SEED: u64 = 0x6b63_6861_7421;

/// How hard each case pushes.
pub struct Scale {
    pub(crate) name: &'static str,
    pub(crate) fuzz_attackers: usize,
    pub(crate) fuzz_rounds: usize,
    pub(crate) slowloris: usize,
    pub(crate) slowloris_secs: u64,
    pub(crate) churn: usize,
    pub(crate) flood_secs: u64,
    pub(crate) fault_secs: u64,
    pub(crate) pressure_attackers: usize,
    pub(crate) reload_cycles: usize,
    /// Threads of the room churn case, and the commands each sends.
    pub(crate) room_churners: usize,
    pub(crate) room_churn_ops: usize,
    /// `max_rooms` of the history case: every room's history is filled.
    pub(crate) history_rooms: u32,
    /// Largest latency an honest ping may see during an attack.
    pub(crate) latency_bound: Duration,
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
    room_churners: 6,
    room_churn_ops: 300,
    history_rooms: 16,
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
    room_churners: 32,
    room_churn_ops: 5_000,
    history_rooms: 1_000,
    // Measured worst cases with 32 fuzzers: 6 s on the debug kernel, more under KASAN (both
    // under TCG, sharing two vCPUs with the attackers). The bound catches stalls and lost
    // pings, it is not a benchmark.
    latency_bound: Duration::from_secs(30),
};

/// Unreclaimable slab allowed above the baseline after an attack, KiB (see
/// [`Memory::expect_back`] for what it covers).
pub(crate) const SLAB_TOLERANCE_KIB: u64 = 4096;

macro_rules! scaled_cases {
    ($($name:ident: $desc:literal),* $(,)?) => {
        /// The native cases at scale `SHORT` (`full` false) or `FULL`.
        fn native_cases(full: bool) -> Vec<Case> {
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
    room_churn: "hostile: room churn, /join and /part floods from many clients",
    history_fill: "hostile: every room's history filled with max-size messages, then left",
}

/// The cases at scale `SHORT` (`full` false) or `FULL`: the native ones, then their IRC forms.
pub fn cases(full: bool) -> Vec<Case> {
    let mut cases = native_cases(full);
    cases.extend(crate::irc::hostile::cases(full));
    cases
}

/// Loads kchat, takes the memory baseline (no client yet), and starts the honest pair, pinging
/// every 100 ms.
pub(crate) fn begin(scale: &Scale, params: &str) -> Result<(Honest, Memory), String> {
    begin_pinging(scale, params, Duration::from_millis(100))
}

/// As [`begin`], pinging every `interval`.
pub(crate) fn begin_pinging(
    scale: &Scale,
    params: &str,
    interval: Duration,
) -> Result<(Honest, Memory), String> {
    start(params)?;
    let base = Memory::baseline(params)?;
    NET_BASE.with(|b| b.set(net_counters()));
    let honest = Honest::start(interval, scale.latency_bound)?;
    wait_clients(2, STEP)?;
    Ok((honest, base))
}

/// Waits for the attackers to be gone, stops the honest pair and checks what it saw, then
/// checks kchat's memory is back to `base` once nobody is connected.
pub(crate) fn finish(scale: &Scale, honest: Honest, base: Memory, what: &str) -> CaseResult {
    wait_clients(2, Duration::from_secs(120))?;
    let report = honest.stop(scale.latency_bound)?;
    wait_clients(0, STEP)?;
    // Every room but #lobby went with its last member.
    wait_stat("rooms_now", 1, STEP)?;
    let rooms = room_names()?;
    ensure!(rooms == ["#lobby"], "rooms left behind: {rooms:?}");
    let after = base.expect_back(SLAB_TOLERANCE_KIB)?;
    let (retrans, drops) = net_counters();
    let (retrans0, drops0) = NET_BASE.with(|b| b.get());
    println!(
        "# {what} ({}): {} honest pings, worst {:?}; memory {after:?} vs {base:?}; \
         loopback: {} packets dropped from full backlogs, {} TCP segments retransmitted; \
         slab caches grown most (KiB): {}",
        scale.name,
        report.pings,
        report.max_latency,
        drops - drops0,
        retrans - retrans0,
        after.slab_growth_since(&base)
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

/// A room name for the fuzzer: mostly valid (often short, so that attackers meet in the same
/// rooms), sometimes without `#`, too long, or with a random byte.
fn fuzz_room_name(rng: &mut Rng) -> Vec<u8> {
    const CHARS: &[u8] = b"abcXYZ019_.-";
    let mut name = if rng.below(8) == 0 {
        Vec::new()
    } else {
        vec![b'#']
    };
    let len = if rng.below(2) == 0 {
        1 + rng.below(3)
    } else {
        rng.below(40)
    };
    for _ in 0..len {
        name.push(if rng.below(10) == 0 {
            rng.next() as u8
        } else {
            CHARS[rng.below(CHARS.len() as u64) as usize]
        });
    }
    name
}

/// A `/msg` target for the fuzzer: another attacker's nick (`fzN`, which may be taken or
/// not), an address that is probably nobody's, or random bytes.
fn fuzz_target(rng: &mut Rng, attackers: u64) -> Vec<u8> {
    match rng.below(4) {
        0 => format!("fz{}", rng.below(attackers)).into_bytes(),
        1 => format!("127.0.0.1:{}", 1024 + rng.below(64_000)).into_bytes(),
        2 => format!("[::1]:{}", 1024 + rng.below(64_000)).into_bytes(),
        _ => {
            let n = rng.below(40) as usize;
            rng.bytes(n)
        }
    }
}

/// A rooms-protocol command for the fuzzer: `/join` of a random name, `/part`, `/rooms`,
/// `/who`, `/nick fzN`, or `/msg` to a random target with random text.
fn fuzz_command(rng: &mut Rng, attackers: u64) -> Vec<u8> {
    match rng.below(7) {
        0 | 1 => [&b"/join "[..], &fuzz_room_name(rng)].concat(),
        2 => b"/part".to_vec(),
        3 => b"/rooms".to_vec(),
        4 => b"/who".to_vec(),
        5 => format!("/nick fz{}", rng.below(attackers)).into_bytes(),
        _ => {
            let target = fuzz_target(rng, attackers);
            let n = rng.below(64) as usize;
            [&b"/msg "[..], &target, b" ", &rng.bytes(n)].concat()
        }
    }
}

/// Many attackers at once, each a seeded random mix of: valid frames of random length and
/// content, lengths over the limit (up to 0xFFFFFFFF), raw random bytes, frames cut short by a
/// reset, frames dribbled in random pieces, room commands with random names and `/msg`
/// targets. Attackers never read, so some end as slow consumers too.
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
    let attackers = scale.fuzz_attackers as u64;
    in_threads(scale.fuzz_attackers, move |id| {
        let mut rng = Rng::new(SEED ^ (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        for _ in 0..rounds {
            // A pause between rounds: the attackers share the guest's two vCPUs with the
            // honest pair, and what is measured is kchat, not how starved a test thread gets.
            thread::sleep(Duration::from_millis(10 + rng.below(30)));
            let Ok(mut s) = TcpStream::connect(ADDR) else {
                continue;
            };
            match rng.below(6) {
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
                5 => {
                    for _ in 0..1 + rng.below(8) {
                        let _ = s.write_all(&encode(&fuzz_command(&mut rng, attackers)));
                    }
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
    // The lobby's history and the honest pair's pings reach the newcomer too; the answer is
    // among them.
    let deadline = Instant::now() + STEP;
    loop {
        let f = late.recv_text(STEP).ctx("late client's /who")?;
        if f.starts_with("* ") && f.contains(" online") {
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
    const PARAMS: &str = "notices=1";
    let mut log = start(PARAMS)?;
    let base = Memory::baseline(PARAMS)?;
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
    // b was replayed the lobby's history first.
    recv_until(&mut b, "the message after the injection", |f| {
        f.ends_with(": all well again")
    })?;
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

/// Reads whatever the non-blocking `s` has received; false once its connection has ended.
fn drain(s: &mut TcpStream) -> bool {
    let mut sink = [0u8; 16384];
    loop {
        match s.read(&mut sink) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

/// A connected, non-blocking client for the room churn.
fn churn_client() -> Result<TcpStream, String> {
    let s = TcpStream::connect(ADDR).ctx("room churn connect")?;
    s.set_nonblocking(true).ctx("nonblocking")?;
    Ok(s)
}

/// Clients that do little but move: each thread drives 4 clients through a seeded random mix
/// of `/join` among 60 names (with `max_rooms=10`, many are refused), `/part`, `/rooms`, chat
/// messages and reconnections (FIN or RST), reading what comes back. While they churn,
/// `rooms_now` and the rooms file never pass `max_rooms`; afterwards every room but `#lobby`
/// is gone and memory is back (both checked by [`finish`]).
fn room_churn(scale: &'static Scale) -> CaseResult {
    const MAX_ROOMS: u64 = 10;
    let (honest, base) = begin(scale, "notices=1 max_rooms=10")?;
    let (threads, ops) = (scale.room_churners, scale.room_churn_ops);
    let churners = thread::spawn(move || {
        in_threads(threads, move |id| {
            // Each churner first asks for a room of its own and waits for the answer, so
            // the churn surely creates rooms: the random ops below may all be lost to
            // resets before kchat reads them, depending on the guest's speed. Past
            // max_rooms the answer is the refusal.
            let mut first = crate::util::connect()?;
            crate::util::say(&mut first, &format!("/join #first{id}"))?;
            crate::util::recv_until(&mut first, "the first room's answer", |f| {
                f.starts_with("* now in #first") || f.starts_with("! too many rooms")
            })?;
            let mut rng = Rng::new(SEED ^ 0x726f_6f6d ^ id as u64);
            let mut clients = (0..4)
                .map(|_| churn_client())
                .collect::<Result<Vec<_>, _>>()?;
            for _ in 0..ops {
                let i = rng.below(4) as usize;
                let cmd = match rng.below(10) {
                    0..=3 => format!("/join #churn{}", rng.below(60)),
                    4 | 5 => "/part".to_string(),
                    6 => "/rooms".to_string(),
                    7 | 8 => format!("passing through {}", rng.next()),
                    _ => {
                        let old = std::mem::replace(&mut clients[i], churn_client()?);
                        if rng.below(2) == 0 {
                            reset(old);
                        }
                        continue;
                    }
                };
                let alive =
                    clients[i].write_all(&encode(cmd.as_bytes())).is_ok() && drain(&mut clients[i]);
                if !alive {
                    clients[i] = churn_client()?;
                }
            }
            Ok(())
        })
    });
    watch_churn(churners, MAX_ROOMS, "room churn")?;
    finish(scale, honest, base, "room churn")
}

/// Samples the room count while `churners` run (never above `max_rooms`), then prints what
/// the churn did (`what` names it) and checks it created rooms at all.
pub(crate) fn watch_churn(
    churners: thread::JoinHandle<Result<(), String>>,
    max_rooms: u64,
    what: &str,
) -> Result<(), String> {
    let mut peak = 0;
    while !churners.is_finished() {
        let now = stat("rooms_now")?;
        let listed = room_names()?.len() as u64;
        ensure!(
            now <= max_rooms && listed <= max_rooms,
            "{now} rooms ({listed} listed) with max_rooms={max_rooms}"
        );
        peak = peak.max(now);
        thread::sleep(Duration::from_millis(50));
    }
    churners
        .join()
        .map_err(|_| "churners panicked".to_string())??;
    // The samples may miss short-lived rooms on a slow guest; the counter does not.
    let created = stat("rooms_created")?;
    println!(
        "# {what}: {created} rooms created, up to {peak} at once (sampled); {} clients at \
         most, the accept path waited {} times for the loop",
        stat("clients_peak")?,
        stat("accept_waits")?
    );
    ensure!(created > 0, "no room was ever created");
    Ok(())
}

/// Every one of `max_rooms` rooms (`#lobby` included) gets 20 messages of `max_msg_len` (4,096)
/// bytes from one client: alone in its room, the client has them kept and relayed to nobody;
/// in `#lobby` the honest pair reads them. With `history=1000`, only the 64 KiB bound limits a
/// history: 15 such frames. While every history is full:
/// - the rooms file shows each room but `#lobby` keeping 15 messages, and none over 64 KiB;
/// - kchat's buffers stay under the bound the README states: `max_rooms` x 64 KiB, plus what
///   is queued to clients (the clients file), plus a partial frame per client.
///
/// Once the writers leave, their rooms go and memory is back to the baseline.
fn history_fill(scale: &'static Scale) -> CaseResult {
    const MSG: usize = 4096;
    const PER_ROOM: usize = 20;
    const HISTORY_BYTES: u64 = 64 * 1024;
    let rooms = scale.history_rooms as usize;
    // The IRC port closed: with it open, a history also holds each message as IRC shows
    // it, and the 64 KiB bound counts both (fewer messages fit; the bound is the same).
    let params = format!("notices=0 history=1000 max_msg_len={MSG} max_rooms={rooms} irc_port=0");
    let (honest, base) = begin(scale, &params)?;
    let writers = Arc::new(Mutex::new(Vec::new()));
    let parked = writers.clone();
    in_threads(4, move |t| {
        for r in (t..rooms).step_by(4) {
            let mut c = kchat_proto::Conn::connect(ADDR).ctx("history writer")?;
            if r > 0 {
                c.send(format!("/join #hist{r}").as_bytes()).ctx("send")?;
                recv_until(&mut c, "the roster", |f| f.starts_with("* now in #hist"))?;
            }
            let mut batch = Vec::new();
            for i in 0..PER_ROOM {
                let mut m = format!("{r} {i} ").into_bytes();
                m.resize(MSG, b'h');
                encode_into(&m, &mut batch);
            }
            encode_into(b"/who", &mut batch);
            c.send_raw(&batch).ctx("send")?;
            // Answered once kchat has read (and kept) the 20 messages.
            recv_until(&mut c, "/who", |f| {
                f.starts_with("* ") && f.contains(" online in ")
            })?;
            parked.lock().map_err(|_| "poisoned")?.push(c);
        }
        Ok(())
    })?;
    let rows = room_rows()?;
    ensure!(
        rows.len() == rooms,
        "{} rooms listed, expected {rooms}",
        rows.len()
    );
    for r in &rows {
        let bytes: u64 = r[4].parse().ctx("history_bytes")?;
        ensure!(
            bytes <= HISTORY_BYTES,
            "{} keeps {bytes} bytes of history",
            r[0]
        );
        ensure!(
            r[0] == "#lobby" || r[3] == "15",
            "{} keeps {} messages, expected the 15 that fit in 64 KiB",
            r[0],
            r[3]
        );
    }
    let clients = debugfs_table("clients", CLIENTS_HEADER)?;
    let mut queued = 0;
    for c in &clients {
        queued += c[6].parse::<u64>().ctx("queued_bytes")?;
    }
    let held = stat("buffer_bytes")?;
    let bound = rooms as u64 * HISTORY_BYTES + queued + clients.len() as u64 * (MSG as u64 + 38);
    println!(
        "# history fill: {rooms} rooms full, kchat holds {held} bytes of buffers (bound {bound}, {queued} queued)"
    );
    ensure!(
        held <= bound,
        "kchat holds {held} bytes of buffers with every history full, over {bound}"
    );
    drop(writers);
    wait_stat("rooms_now", 1, Duration::from_secs(120))?;
    finish(scale, honest, base, "history fill")
}
