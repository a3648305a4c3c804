//! Limits: message length, client count, slow consumers. A client over a limit loses its
//! connection; nobody else loses anything.

use std::{
    io::Write,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use crate::{
    ensure,
    util::{
        connect, expect_frame, label, meminfo, start, stat, wait_clients, wait_stat, Context, STEP,
    },
    Case, CaseResult,
};

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "max_msg_len passes; max_msg_len+1 gets the notice and a disconnect, others carry on",
            run: msg_len_limits,
        },
        Case {
            name: "a declared length of 0xFFFFFFFF allocates nothing (memory counters)",
            run: huge_length_allocates_nothing,
        },
        Case {
            name: "max_clients=5: the sixth connection gets '! server full'",
            run: max_clients,
        },
        Case {
            name: "a client that never reads is dropped as a slow consumer, others carry on",
            run: slow_consumer,
        },
    ]
}

/// - a payload of exactly `max_msg_len` bytes is relayed intact;
/// - one byte more: the sender gets `! message too long (1001 > 1000)`, is disconnected, and
///   the disconnect is logged with that reason;
/// - the other clients keep chatting; `frames_rejected` counts 1.
fn msg_len_limits() -> CaseResult {
    let mut log = start("notices=0 max_msg_len=1000")?;
    let mut a = connect()?;
    let mut b = connect()?;
    let mut c = connect()?;
    wait_clients(3, STEP)?;
    let max = vec![b'x'; 1000];
    a.send(&max).ctx("send")?;
    expect_frame(&mut b, &format!("{}: {}", label(&a), "x".repeat(1000)))?;
    expect_frame(&mut c, &format!("{}: {}", label(&a), "x".repeat(1000)))?;

    a.send(&[b'y'; 1001]).ctx("send")?;
    let frames = a.expect_close(STEP).ctx("oversized sender")?;
    ensure!(
        frames == vec![b"! message too long (1001 > 1000)".to_vec()],
        "the oversized sender got {frames:?}"
    );
    log.wait_contains(
        &format!(
            "Client Disconnected: {0} ({0}): message too long (1001 > 1000)",
            label(&a)
        ),
        STEP,
    )?;
    wait_clients(2, STEP)?;
    b.send(b"still here").ctx("send")?;
    expect_frame(&mut c, &format!("{}: still here", label(&b)))?;
    ensure!(stat("frames_rejected")? == 1, "frames_rejected is not 1");
    Ok(())
}

/// Memory in use by the guest, in KiB (total minus available).
fn used_kib() -> Result<u64, String> {
    Ok(meminfo("MemTotal")? - meminfo("MemAvailable")?)
}

/// Waits until `pred(used KiB)` holds.
fn wait_used(timeout: Duration, what: &str, pred: impl Fn(u64) -> bool) -> Result<u64, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let used = used_kib()?;
        if pred(used) {
            return Ok(used);
        }
        if Instant::now() > deadline {
            return Err(format!("{what}: memory in use is {used} KiB"));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// - control: 20 clients that each declare a 1 MiB payload and send one byte of it make kchat
///   hold about 20 MiB (the meter sees allocations), released when they leave;
/// - 20 clients that declare 0xFFFFFFFF bytes are each told `! message too long` and
///   disconnected, and memory in use does not grow: nothing was allocated for them.
fn huge_length_allocates_nothing() -> CaseResult {
    const N: usize = 20;
    start("notices=0 max_msg_len=1048576")?;
    thread::sleep(Duration::from_millis(500));
    let base = used_kib()?;

    let mut holders = Vec::new();
    for _ in 0..N {
        let mut c = connect()?;
        c.send_raw(&(1u32 << 20).to_le_bytes()).ctx("send header")?;
        c.send_raw(b"x").ctx("send")?;
        holders.push(c);
    }
    let held = wait_used(STEP, "20 pending 1 MiB frames", |u| u >= base + 15 * 1024)?;
    drop(holders);
    wait_clients(0, STEP)?;
    let back = wait_used(STEP, "after the holders left", |u| u < base + 4 * 1024)?;

    let mut attackers = Vec::new();
    for _ in 0..N {
        let mut c = connect()?;
        c.send_raw(&u32::MAX.to_le_bytes()).ctx("send header")?;
        attackers.push(c);
    }
    for c in attackers.iter_mut() {
        let frames = c.expect_close(STEP).ctx("attacker")?;
        ensure!(
            frames == vec![b"! message too long (4294967295 > 1048576)".to_vec()],
            "an attacker got {frames:?}"
        );
    }
    wait_clients(0, STEP)?;
    let after = used_kib()?;
    println!("# memory in use (KiB): base {base}, 20 x 1 MiB pending {held}, after {back}, after 20 x 0xFFFFFFFF {after}");
    ensure!(
        after < back + 2048,
        "memory in use grew by {} KiB for 0xFFFFFFFF headers",
        after.saturating_sub(back)
    );
    ensure!(
        stat("frames_rejected")? == N as u64,
        "frames_rejected is not {N}"
    );
    Ok(())
}

/// - five clients connect; the sixth is told `! server full` and closed;
/// - the five are unaffected, and once one leaves a new client gets in.
fn max_clients() -> CaseResult {
    let mut log = start("notices=0 max_clients=5")?;
    let mut five = Vec::new();
    for _ in 0..5 {
        five.push(connect()?);
    }
    wait_clients(5, STEP)?;
    let mut sixth = connect()?;
    let frames = sixth.expect_close(STEP).ctx("sixth client")?;
    ensure!(
        frames == vec![b"! server full".to_vec()],
        "the sixth client got {frames:?}"
    );
    log.wait_contains(
        &format!("Client Refused: {} (server full)", label(&sixth)),
        STEP,
    )?;
    ensure!(
        stat("connections_refused_full")? == 1,
        "connections_refused_full is not 1"
    );
    five[0].send(b"five of us").ctx("send")?;
    let first = label(&five[0]);
    expect_frame(&mut five[4], &format!("{first}: five of us"))?;
    drop(five.remove(0));
    wait_clients(4, STEP)?;
    let mut late = connect()?;
    wait_clients(5, STEP)?;
    // The lobby's history first: the one message said so far.
    expect_frame(&mut late, "* last 1 messages of #lobby:")?;
    expect_frame(&mut late, &format!("{first}: five of us"))?;
    five[0].send(b"welcome").ctx("send")?;
    let sender = label(&five[0]);
    expect_frame(&mut late, &format!("{sender}: welcome"))?;
    Ok(())
}

/// - a client that never reads, while another floods 4 KiB messages, is disconnected as a
///   slow consumer (`slow_consumers_dropped` 1, a log line with the reason);
/// - the reading client receives every one of the flood's messages, in order, and later
///   messages too: nobody waited for the slow one.
fn slow_consumer() -> CaseResult {
    /// Upper bound of the flood: the slow client's socket buffers fill long before.
    const MAX_FLOOD: usize = 20_000;
    let mut log = start("notices=0 max_msg_len=4096 max_queue_bytes=65536 max_msg_rate=0")?;
    let slow = connect()?;
    let mut flooder = connect()?;
    let reader = connect()?;
    wait_clients(3, STEP)?;
    let flood_label = label(&flooder);
    let got = Arc::new(AtomicUsize::new(0));
    let progress = got.clone();
    let reader_thread = thread::spawn(move || -> Result<usize, String> {
        let mut reader = reader;
        for i in 0.. {
            let f = reader
                .recv_text(Duration::from_secs(60))
                .ctx(&format!("flood message {i}"))?;
            if f == format!("{flood_label}: after") {
                return Ok(i);
            }
            ensure!(
                f.starts_with(&format!("{flood_label}: {i:05} ")),
                "flood message {i} out of order"
            );
            progress.store(i + 1, Ordering::Relaxed);
        }
        unreachable!()
    });
    let started = Instant::now();
    let dropped = format!(
        "Client Disconnected: {0} ({0}): slow consumer",
        label(&slow)
    );
    let mut sent = 0;
    while sent < MAX_FLOOD {
        // The flood goes as fast as the reading client keeps up (under TCG a client reads more
        // slowly than another can write), so only the client that never reads falls behind.
        // At most 8 messages (32 KiB, half of max_queue_bytes) ahead of the reader.
        let wait_from = Instant::now();
        while sent - got.load(Ordering::Relaxed) > 8 {
            ensure!(
                wait_from.elapsed() < STEP,
                "the reading client stopped at {} of {sent}",
                got.load(Ordering::Relaxed)
            );
            thread::sleep(Duration::from_millis(1));
        }
        let mut batch = Vec::new();
        for _ in 0..4 {
            let mut m = format!("{sent:05} ").into_bytes();
            m.resize(4000, b'f');
            batch.extend(kchat_proto::encode(&m));
            sent += 1;
        }
        flooder.stream().write_all(&batch).ctx("flood")?;
        if log
            .wait_for(Duration::ZERO, |l| l.contains(&dropped))
            .is_some()
        {
            break;
        }
    }
    log.wait_contains(&dropped, STEP)?;
    wait_stat("slow_consumers_dropped", 1, STEP)?;
    wait_clients(2, STEP)?;
    flooder.send(b"after").ctx("send")?;
    let received = reader_thread
        .join()
        .map_err(|_| "reader panicked".to_string())??;
    ensure!(
        received == sent,
        "the reader got {received} of {sent} flood messages"
    );
    println!(
        "# slow consumer dropped after {sent} x 4 KiB messages in {:.1} s; the reader got all",
        started.elapsed().as_secs_f64()
    );
    drop(slow);
    Ok(())
}
