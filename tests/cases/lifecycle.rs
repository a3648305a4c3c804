//! Loading and unloading the module, and its parameter validation.

use std::{
    collections::VecDeque,
    io::Write,
    net::TcpStream,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use kchat_proto::encode;

use crate::{
    ensure,
    kmsg::Kmsg,
    module,
    util::{start, Context, ADDR, ADDR6, STEP},
    Case, CaseResult,
};

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "module loads with defaults, logs start and exit, twice",
            run: load_unload_twice,
        },
        Case {
            name: "out-of-range parameters fail insmod with EINVAL and a message",
            run: bad_params_refused,
        },
        Case {
            name: "rmmod while clients keep connecting (IPv4 and IPv6), 5 times",
            run: rmmod_races_connects,
        },
    ]
}

const T: Duration = Duration::from_secs(10);

/// - `insmod kchat.ko` with no parameters succeeds and logs the start line with the values in
///   force;
/// - `rmmod` succeeds and logs the exit line;
/// - a second cycle works the same (nothing left behind by the first).
fn load_unload_twice() -> CaseResult {
    for round in 1..=2 {
        let mut log = Kmsg::from_now().map_err(|e| e.to_string())?;
        module::load("").map_err(|e| format!("round {round}: insmod failed: {e}"))?;
        // One dual-stack listener for IPv4 and IPv6 clients.
        let start = log.wait_contains("kchat: listening on [::]:10106", T)?;
        for value in [
            "backlog=512",
            "max_clients=10000",
            "max_msg_len=4096",
            "notices=1",
            "trace=1",
            "history=20",
            "max_rooms=1000",
        ] {
            if !start.contains(value) {
                return Err(format!("start line {start:?} lacks {value}"));
            }
        }
        module::unload().map_err(|e| format!("round {round}: rmmod failed: {e}"))?;
        log.wait_contains("kchat: stopped", T)?;
    }
    Ok(())
}

/// Every out-of-range value fails `insmod` with EINVAL and a `pr_err` naming the parameter
/// and its allowed range, and leaves the module unloaded.
fn bad_params_refused() -> CaseResult {
    let cases = [
        (
            "port=0",
            "invalid parameter port=0: allowed range is 1..=65535",
        ),
        (
            "max_msg_len=0",
            "invalid parameter max_msg_len=0: allowed range is 1..=1048576",
        ),
        (
            "max_msg_len=1048577",
            "invalid parameter max_msg_len=1048577: allowed range is 1..=1048576",
        ),
        (
            "max_clients=0",
            "invalid parameter max_clients=0: allowed range is 1..=1000000",
        ),
        (
            "trace=9",
            "invalid parameter trace=9: allowed range is 0..=2",
        ),
        (
            "backlog=0",
            "invalid parameter backlog=0: allowed range is 1..=65535",
        ),
        (
            "max_queue_bytes=100",
            "invalid parameter max_queue_bytes=100: allowed range is 4096..=1073741824",
        ),
        (
            "max_msg_rate=2000000",
            "invalid parameter max_msg_rate=2000000: allowed range is 0..=1000000",
        ),
        (
            "history=1001",
            "invalid parameter history=1001: allowed range is 0..=1000",
        ),
        (
            "max_rooms=0",
            "invalid parameter max_rooms=0: allowed range is 1..=100000",
        ),
        (
            "max_rooms=100001",
            "invalid parameter max_rooms=100001: allowed range is 1..=100000",
        ),
    ];
    for (params, message) in cases {
        let mut log = Kmsg::from_now().map_err(|e| e.to_string())?;
        match module::load(params) {
            Ok(()) => return Err(format!("insmod kchat.ko {params} succeeded")),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => return Err(format!("insmod kchat.ko {params}: {e}, expected EINVAL")),
        }
        log.wait_contains(&format!("kchat: {message}"), T)
            .map_err(|e| format!("{params}: {e}"))?;
        if module::is_loaded() {
            return Err(format!("kchat is loaded after insmod {params} failed"));
        }
    }
    Ok(())
}

/// Connects to `addr` in a loop until `stop`: each client asks for a room and says something
/// (so that kchat has work queued for it at once), and the last 16 stay connected. Counts the
/// connections made in `made`; returns how many were refused.
fn connect_loop(addr: &str, stop: &AtomicBool, made: &AtomicU64) -> u64 {
    let mut kept = VecDeque::new();
    let mut refused = 0;
    while !stop.load(Ordering::Relaxed) {
        match TcpStream::connect(addr) {
            Ok(mut s) => {
                let mut hello = encode(b"/join #race");
                hello.extend(encode(b"racing the unload"));
                // The server may be going: a failed write is part of the race.
                let _ = s.write_all(&hello);
                made.fetch_add(1, Ordering::Relaxed);
                kept.push_back(s);
                if kept.len() > 16 {
                    kept.pop_front();
                }
            }
            Err(_) => {
                refused += 1;
                thread::sleep(Duration::from_millis(5));
            }
        }
    }
    refused
}

/// A client admitted just before the unload must not queue work while kchat drains its queue
/// (review finding). Five times: 8 threads (half on IPv4, half on IPv6) connect, ask, talk and
/// leave in a loop, and kchat is removed in the middle of it, a little later each round:
/// - `rmmod` succeeds and logs its exit line;
/// - connections are refused afterwards (the listener is gone);
/// - no kernel report appears (the harness fails the case on any).
fn rmmod_races_connects() -> CaseResult {
    const ROUNDS: u64 = 5;
    const THREADS: usize = 8;
    for round in 0..ROUNDS {
        let mut log = start("notices=1")?;
        let stop = Arc::new(AtomicBool::new(false));
        let made = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..THREADS)
            .map(|i| {
                let (stop, made) = (stop.clone(), made.clone());
                let addr = if i % 2 == 0 { ADDR } else { ADDR6 };
                thread::spawn(move || connect_loop(addr, &stop, &made))
            })
            .collect();
        let deadline = Instant::now() + STEP;
        while made.load(Ordering::Relaxed) < 50 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        thread::sleep(Duration::from_millis(40 * round));
        let before = made.load(Ordering::Relaxed);
        let t = Instant::now();
        let unloaded = module::unload();
        let took = t.elapsed();
        // Keep connecting for a moment against the unloaded module.
        thread::sleep(Duration::from_millis(100));
        stop.store(true, Ordering::Relaxed);
        let mut refused = 0;
        for h in threads {
            refused += h
                .join()
                .map_err(|_| "connecting thread panicked".to_string())?;
        }
        unloaded.ctx(&format!("rmmod in round {round}"))?;
        log.wait_contains("kchat: stopped", STEP)?;
        println!(
            "# round {round}: rmmod after {before} connections took {:.2} s; {refused} refused after",
            took.as_secs_f64()
        );
        ensure!(
            before >= 50,
            "only {before} connections before rmmod in round {round}"
        );
        ensure!(
            refused > 0,
            "no connection was refused after rmmod in round {round}"
        );
    }
    Ok(())
}
