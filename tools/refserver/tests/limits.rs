//! The limits: message length, slow consumers, max_clients, and the options' ranges. Every
//! chat test runs against each engine (see `engine_tests!`).

mod common;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use common::{closed, label, recv, Engine, Flood, Server};

engine_tests!(
    message_length_limit,
    slow_consumer_is_dropped,
    server_full,
    rate_limit
);

/// - a payload of exactly max_msg_len bytes is relayed;
/// - max_msg_len + 1 gets `! message too long (N > MAX)` and is disconnected;
/// - a declared length of 0xFFFFFFFF (no payload sent) gets the notice too;
/// - the other clients keep chatting, and hear that the offenders left.
fn message_length_limit(engine: Engine) {
    let Some(srv) = Server::start(engine, &["--max-msg-len", "64"]) else {
        return;
    };
    let mut a = srv.join();
    let mut b = srv.join();
    let mut c = srv.join();
    let (la, lb, lc) = (label(&a), label(&b), label(&c));
    assert_eq!(recv(&mut a), format!("* {lb} joined"));
    assert_eq!(recv(&mut a), format!("* {lc} joined"));
    assert_eq!(recv(&mut b), format!("* {lc} joined"));

    let max = "m".repeat(64);
    a.send(max.as_bytes()).unwrap();
    assert_eq!(recv(&mut b), format!("{la}: {max}"));
    assert_eq!(recv(&mut c), format!("{la}: {max}"));

    a.send("n".repeat(65).as_bytes()).unwrap();
    assert_eq!(closed(&mut a), ["! message too long (65 > 64)"]);
    assert_eq!(recv(&mut b), format!("* {la} left"));
    assert_eq!(recv(&mut c), format!("* {la} left"));

    b.send_raw(&u32::MAX.to_le_bytes()).unwrap();
    assert_eq!(closed(&mut b), ["! message too long (4294967295 > 64)"]);
    assert_eq!(recv(&mut c), format!("* {lb} left"));

    let mut d = srv.join();
    assert_eq!(recv(&mut c), format!("* {} joined", label(&d)));
    c.send(b"still here").unwrap();
    assert_eq!(recv(&mut d), format!("{lc}: still here"));
}

/// - a client that never reads while another floods is disconnected as a slow consumer once
///   its queue would pass --max-queue-bytes, and the others hear it left;
/// - a client that reads gets every flood message, intact and in order, and is not dropped;
/// - the flooder is not slowed down or dropped;
/// - what the slow client did get before the close is an intact, in-order prefix.
fn slow_consumer_is_dropped(engine: Engine) {
    let Some(srv) = Server::start(engine, &["--max-queue-bytes", "65536"]) else {
        return;
    };
    let mut flood = Flood::start(&srv);
    flood.until_slow_left(|| {});
    let sent = flood.sent;
    assert!(sent > 16, "dropped after only {sent} frames");
    // The flooder is fine: the others still hear it, it hears them.
    let (ls, lr, lf) = (
        label(&flood.slow),
        label(&flood.reader),
        label(&flood.flooder),
    );
    flood.flooder.send(b"done").unwrap();
    assert_eq!(recv(&mut flood.reader), format!("{lf}: done"));
    flood.reader.send(b"ok").unwrap();
    assert_eq!(recv(&mut flood.flooder), format!("* {ls} left"));
    assert_eq!(recv(&mut flood.flooder), format!("{lr}: ok"));
    flood.check_slow_prefix();
}

/// - with --max-clients 5, five clients are served and the sixth gets `! server full` and is
///   closed, without the others hearing of it (no join or leave notice);
/// - once one of the five leaves, a new client is admitted, and the others hear it joined.
fn server_full(engine: Engine) {
    let Some(srv) = Server::start(engine, &["--max-clients", "5"]) else {
        return;
    };
    let mut five: Vec<_> = (0..5).map(|_| srv.join()).collect();
    for i in 1..5 {
        let l = label(&five[i]);
        assert_eq!(recv(&mut five[0]), format!("* {l} joined"));
    }
    let mut sixth = srv.connect();
    assert_eq!(closed(&mut sixth), ["! server full"]);
    five[0].send(b"/who").unwrap();
    assert!(recv(&mut five[0]).starts_with("* 5 online in #lobby: "));
    let gone = five.pop().expect("five clients");
    let lg = label(&gone);
    drop(gone);
    assert_eq!(recv(&mut five[0]), format!("* {lg} left"));
    let mut newcomer = common::eventually(|| {
        let mut c = srv.connect();
        let _ = c.send(b"/who");
        match common::next_frame(&mut c) {
            Some(f) if f != b"! server full" => Some(c),
            _ => None,
        }
    });
    assert_eq!(recv(&mut five[0]), format!("* {} joined", label(&newcomer)));
    newcomer.send(b"hello").unwrap();
    assert_eq!(recv(&mut five[0]), format!("{}: hello", label(&newcomer)));
}

/// - with --max-msg-rate 100, a burst of 150 messages in one write is relayed at once (as in
///   kchat, every message of one read is charged, and the bucket goes into debt);
/// - the sender is then not read until the debt is paid: its next message arrives no sooner
///   than 0.5 s after the burst was sent, after a message another client sent later;
/// - the flooder is slowed, not disconnected, and nothing is lost or reordered.
fn rate_limit(engine: Engine) {
    let Some(srv) = Server::start(engine, &["--notices", "0", "--max-msg-rate", "100"]) else {
        return;
    };
    let mut a = srv.join();
    let mut b = srv.join();
    let mut c = srv.join();
    let (la, lb) = (label(&a), label(&b));
    let mut burst = Vec::new();
    for i in 0..150 {
        burst.extend_from_slice(&kchat_proto::encode(format!("burst {i}").as_bytes()));
    }
    let start = Instant::now();
    a.send_raw(&burst).unwrap();
    for i in 0..150 {
        assert_eq!(recv(&mut c), format!("{la}: burst {i}"));
    }
    a.send(b"late").unwrap();
    b.send(b"not held back").unwrap();
    assert_eq!(recv(&mut c), format!("{lb}: not held back"));
    assert_eq!(recv(&mut c), format!("{la}: late"));
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(450),
        "read again after {waited:?}"
    );
    assert_eq!(recv(&mut a), format!("{lb}: not held back"));
    a.send(b"/who").unwrap();
    assert!(recv(&mut a).starts_with("* 3 online in #lobby: "));
}

/// - each out-of-range option makes kchat-ref exit with status 2 and a message naming the
///   option, the value and the range;
/// - so do an unknown option, `--threads` for the uring engine, an unknown engine and a
///   missing one;
/// - `--help`, for the program and for each engine, exits 0 and lists the options.
#[test]
fn bad_options_exit_2() {
    for (args, needle) in [
        (
            &["epoll", "--max-msg-len", "0"][..],
            "'--max-msg-len <N>': 0 is not in 1..=1048576",
        ),
        (
            &["uring", "--max-msg-len", "1048577"],
            "1048577 is not in 1..=1048576",
        ),
        (
            &["epoll", "--max-clients", "0"],
            "'--max-clients <N>': 0 is not in 1..=1000000",
        ),
        (
            &["epoll", "--max-queue-bytes", "4095"],
            "4095 is not in 4096..=1073741824",
        ),
        (
            &["epoll", "--backlog", "70000"],
            "'--backlog <N>': 70000 is not in 1..=65535",
        ),
        (
            &["epoll", "--notices", "2"],
            "'--notices <0|1>': 2 is not in 0..=1",
        ),
        (
            &["epoll", "--max-msg-rate", "1000001"],
            "'--max-msg-rate <N>': 1000001 is not in 0..=1000000",
        ),
        (
            &["epoll", "--port", "65536"],
            "'--port <N>': 65536 is not in 0..=65535",
        ),
        (
            &["uring", "--history", "1001"],
            "'--history <N>': 1001 is not in 0..=1000",
        ),
        (
            &["epoll", "--max-rooms", "0"],
            "'--max-rooms <N>': 0 is not in 1..=100000",
        ),
        (
            &["epoll", "--threads", "1025"],
            "'--threads <N>': 1025 is not in 0..=1024",
        ),
        (
            &["sendfile", "--max-queue-bytes", "1073741825"],
            "1073741825 is not in 4096..=1073741824",
        ),
        (&["epoll", "--bogus", "1"], "unexpected argument '--bogus'"),
        (
            &["uring", "--threads", "2"],
            "unexpected argument '--threads'",
        ),
        (&["fast"], "unrecognized subcommand 'fast'"),
        (&[], "requires a subcommand"),
    ] {
        let out = Command::new(common::binary()).args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(out.stdout.is_empty());
    }
    for (args, needle) in [
        (&["--help"][..], "uring"),
        (&["--help"], "sendfile"),
        (&["epoll", "--help"], "--threads <N>"),
        (&["uring", "--help"], "--max-rooms <N>"),
        (&["sendfile", "--help"], "--threads <N>"),
    ] {
        let out = Command::new(common::binary()).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(needle),
            "{args:?}"
        );
    }
}
