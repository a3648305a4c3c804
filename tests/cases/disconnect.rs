//! Leaving: abrupt disconnects, unloading under load, and what reaches the kernel log.

use std::{
    net::Shutdown,
    os::fd::AsRawFd,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use crate::{
    ensure, module,
    util::{connect, expect_frame, label, start, wait_clients, Context, STEP},
    Case, CaseResult,
};

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "abrupt disconnects (RST, half-close, exit mid-frame) are logged and cleaned up",
            run: abrupt_disconnects,
        },
        Case {
            name: "control characters and newlines in messages never reach the log raw",
            run: log_escaping,
        },
        Case {
            name: "rmmod with 200 clients connected and sending, then reload",
            run: rmmod_under_load,
        },
    ]
}

/// Sets SO_LINGER to 0, so that closing the socket sends RST instead of FIN.
fn linger_zero(fd: i32) -> Result<(), String> {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `fd` is an open socket and `l` a valid linger structure of the given size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const l).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    ensure!(
        r == 0,
        "setsockopt(SO_LINGER): {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

/// - a client reset with SO_LINGER 0 is logged as `connection reset`;
/// - a client that shuts down its sending side is logged as `end of stream` and closed;
/// - a client that leaves in the middle of a frame is logged as such;
/// - each one leaves the registry, and the remaining client keeps chatting.
fn abrupt_disconnects() -> CaseResult {
    let mut log = start("notices=0")?;
    let mut watcher = connect()?;
    let rst = connect()?;
    let mut half = connect()?;
    let mut mid = connect()?;
    wait_clients(4, STEP)?;

    let rst_label = label(&rst);
    linger_zero(rst.stream().as_raw_fd())?;
    drop(rst);
    log.wait_contains(
        &format!(
            "Client Disconnected: {0} ({0}): connection reset",
            rst_label
        ),
        STEP,
    )?;

    half.stream().shutdown(Shutdown::Write).ctx("shutdown")?;
    half.expect_close(STEP).ctx("half-closed client")?;
    log.wait_contains(
        &format!(
            "Client Disconnected: {0} ({0}): end of stream",
            label(&half)
        ),
        STEP,
    )?;

    let mid_label = label(&mid);
    mid.send_raw(&100u32.to_le_bytes()).ctx("send")?;
    mid.send_raw(b"only ten b").ctx("send")?;
    drop(mid);
    log.wait_contains(
        &format!(
            "Client Disconnected: {0} ({0}): end of stream in the middle of a frame",
            mid_label
        ),
        STEP,
    )?;

    wait_clients(1, STEP)?;
    let mut other = connect()?;
    wait_clients(2, STEP)?;
    other.send(b"anyone left?").ctx("send")?;
    expect_frame(&mut watcher, &format!("{}: anyone left?", label(&other)))?;
    Ok(())
}

/// With trace=2 every message is logged as `Client Say: LABEL: TEXT`. The text is escaped:
/// /dev/kmsg shows a raw control byte as `\xNN`, and kchat's own escape of it as `\x5cxNN`
/// (its backslash escaped), so a raw newline, ESC or BEL in a kchat record is visible here.
fn log_escaping() -> CaseResult {
    let mut log = start("notices=0 trace=2")?;
    let mut a = connect()?;
    let mut b = connect()?;
    wait_clients(2, STEP)?;
    let evil = b"evil\nBUG: forged line\x1b[31m\x07end\\";
    a.send(evil).ctx("send")?;
    let relayed = b.recv_timeout(STEP).ctx("recv")?.ok_or("nothing relayed")?;
    ensure!(
        relayed.ends_with(evil),
        "the relayed message was altered: {relayed:?}"
    );
    let line = log.wait_contains(&format!("kchat: Client Say: {}: evil", label(&a)), STEP)?;
    ensure!(
        line.ends_with(r"evil\x5cx0aBUG: forged line\x5cx1b[31m\x5cx07end\x5c\x5c"),
        "the logged text is not escaped as expected: {line:?}"
    );
    for rec in log.records() {
        ensure!(
            !rec.starts_with("BUG: forged"),
            "a forged line reached the log: {rec:?}"
        );
    }
    ensure!(
        !line.contains(r"\x0a") && !line.contains(r"\x1b"),
        "raw control bytes in {line:?}"
    );
    Ok(())
}

/// - 200 clients connect and chat continuously;
/// - `rmmod` succeeds while they do: the module stops listening, disconnects everyone (each
///   client sees its connection end), drains its workqueue and frees everything;
/// - the whole-log check (no Oops, WARNING or lockdep report) covers the unload;
/// - the module loads and unloads again afterwards.
fn rmmod_under_load() -> CaseResult {
    const N: usize = 200;
    let mut log = start("notices=0 max_msg_rate=0")?;
    let mut conns = Vec::new();
    for _ in 0..N {
        conns.push(connect()?);
    }
    wait_clients(N as u64, STEP)?;
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let ended = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            let (stop, received, ended) = (stop.clone(), received.clone(), ended.clone());
            thread::spawn(move || {
                let mut n = 0u64;
                let mut last = Instant::now() - Duration::from_secs(1);
                while !stop.load(Ordering::Relaxed) {
                    // A chatty client: a message every half second (200 of them, each message
                    // to 199 others: some 80,000 deliveries a second), reading all the while.
                    if last.elapsed() >= Duration::from_millis(500) {
                        if c.send(format!("client {i} message {n}").as_bytes())
                            .is_err()
                        {
                            break;
                        }
                        n += 1;
                        last = Instant::now();
                    }
                    match c.recv_timeout(Duration::from_millis(100)) {
                        Ok(Some(_)) => {
                            received.fetch_add(1, Ordering::Relaxed);
                            while let Ok(Some(_)) = c.recv_timeout(Duration::ZERO) {
                                received.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Ok(None) => {}
                        Err(_) => break,
                    }
                }
                // The server is gone: the connection must end, not hang.
                if c.expect_close(Duration::from_secs(30)).is_ok() {
                    ended.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // Let the chat run a while (and make sure it does) before unloading.
    let deadline = Instant::now() + STEP;
    while received.load(Ordering::Relaxed) < 1000 {
        if Instant::now() > deadline {
            let s = crate::util::stats()?;
            return Err(format!(
                "no traffic flowed before rmmod: {} frames received, {} clients ended; kchat: relayed {:?}, sends {:?}, frames sent {:?}, recvs {:?}",
                received.load(Ordering::Relaxed),
                ended.load(Ordering::Relaxed),
                s.get("messages_relayed"),
                s.get("sends"),
                s.get("sent_frames"),
                s.get("recvs")
            ));
        }
        thread::sleep(Duration::from_millis(100));
    }
    thread::sleep(Duration::from_secs(1));
    let before = received.load(Ordering::Relaxed);
    let t = Instant::now();
    module::unload().ctx("rmmod under load")?;
    let took = t.elapsed();
    log.wait_contains("kchat: stopped listening", STEP)?;
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().map_err(|_| "client thread panicked".to_string())?;
    }
    let ended = ended.load(Ordering::Relaxed);
    println!(
        "# rmmod with {N} busy clients took {:.2} s; {before} frames received before it",
        took.as_secs_f64()
    );
    ensure!(
        ended == N as u64,
        "only {ended} of {N} clients saw their connection end"
    );
    start("")?;
    module::unload().ctx("rmmod after reload")?;
    Ok(())
}

/// Path of kmemleak's control file.
const KMEMLEAK: &str = "/sys/kernel/debug/kmemleak";

/// Forgets what kmemleak found so far (boot-time reports), so that the final scan shows
/// only what the suite left behind.
pub fn kmemleak_clear() {
    let _ = std::fs::write(KMEMLEAK, "clear");
}

/// After every other case (each unloads the module, several under load): a kmemleak scan
/// reports no unreferenced object.
pub fn kmemleak_clean() -> CaseResult {
    ensure!(
        std::path::Path::new(KMEMLEAK).exists(),
        "kmemleak is not enabled in this kernel"
    );
    // kmemleak reports an object only once it has been unreferenced for 5 s.
    thread::sleep(Duration::from_secs(6));
    let t = Instant::now();
    for _ in 0..2 {
        std::fs::write(KMEMLEAK, "scan").ctx("kmemleak scan")?;
    }
    let report = std::fs::read_to_string(KMEMLEAK).ctx("read kmemleak")?;
    println!(
        "# kmemleak: two scans in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let leaks = report.matches("unreferenced object").count();
    ensure!(
        leaks == 0,
        "kmemleak reports {leaks} unreferenced objects: {}",
        report.lines().take(12).collect::<Vec<_>>().join(" | ")
    );
    Ok(())
}
