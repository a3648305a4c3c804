// SPDX-License-Identifier: GPL-2.0
//! `--protocol irc` against the in-test IRC server: registration, joins and the barrier,
//! PINGs answered at any time, chatter let pass, a sender's own message caught, a refused
//! join aborting the run; and `--read-size` down to one byte.

mod common;

use common::{
    assert_clean, assert_failed, ircd::Ircd, num, relay::Relay, run, Run, ROOMS_7_3,
    ROOMS_7_3_DELIVERIES,
};

/// 6 clients in `#kchat`, 3 sending 60 messages, window 2: 3 x 60 x 5 deliveries.
const ONE_CHANNEL: [&str; 10] = [
    "--protocol",
    "irc",
    "--clients",
    "6",
    "--senders",
    "3",
    "--messages",
    "60",
    "--window",
    "2",
];

/// Runs [`ONE_CHANNEL`] against `ircd`; `name` names the record's file.
fn one_channel(ircd: Ircd, name: &str) -> Run {
    run(ircd.start(), &ONE_CHANNEL, name)
}

/// A plain server: the run is clean, every message reached the 5 others, and the record
/// says irc; with `--server-pid` (this test process, which runs the server) the record has
/// the server process's CPU time.
#[test]
fn clean() {
    let out = one_channel(Ircd::default(), "irc-clean");
    assert_eq!(assert_clean(&out), 900.0);
    let r = &out.record;
    assert_eq!(r["protocol"], "irc");
    assert_eq!(num(r, "recipients"), 5.0);
    assert!(r["server_process_cpu_s"].is_null(), "{r}");
    let pid = std::process::id().to_string();
    let args = [&ONE_CHANNEL[..], &["--server-pid", &pid]].concat();
    let out = run(Ircd::default().start(), &args, "irc-pid");
    assert_clean(&out);
    assert!(num(&out.record, "server_process_cpu_s") >= 0.0);
}

/// A server that holds the welcome until a PING is answered, PINGs every client after every
/// 50 messages it relays to it (dropping one that has not answered the previous), and sends
/// notices and numerics between the messages: the run is clean, so every PING was answered
/// and the chatter let pass.
#[test]
fn pings_and_chatter() {
    let ircd = Ircd {
        ping_every: Some(50),
        chatter: true,
        ..Ircd::default()
    };
    let out = one_channel(ircd, "irc-pings");
    assert_eq!(assert_clean(&out), 900.0);
}

/// [`ROOMS_7_3`] in channels, with a stalled client, read one byte at a time: clean, and
/// each message reached the other members of its sender's channel only.
#[test]
fn rooms_stalled_tiny_reads() {
    let irc = ["--protocol", "irc", "--stalled", "1", "--read-size", "1"];
    let args = [&irc[..], &ROOMS_7_3].concat();
    let out = run(Ircd::default().start(), &args, "irc-rooms");
    assert_eq!(assert_clean(&out), ROOMS_7_3_DELIVERIES);
    assert_eq!(num(&out.record, "read_size"), 1.0);
}

/// A server that echoes a sender's messages back to it: each echo is an error (exit 1),
/// and the others still got everything.
#[test]
fn own_messages_are_errors() {
    let out = one_channel(
        Ircd {
            echo: true,
            ..Ircd::default()
        },
        "irc-echo",
    );
    let r = assert_failed(&out);
    assert!(num(r, "errors") > 0.0, "{r}");
    assert_eq!(num(r, "deliveries"), 900.0);
    assert_eq!(num(r, "lost") + num(r, "corrupted"), 0.0);
}

/// A server that lets a client into no channel: the run aborts at once, with the numeric.
#[test]
fn refused_join_aborts() {
    let out = one_channel(
        Ircd {
            max_channels: Some(0),
            ..Ircd::default()
        },
        "irc-refused",
    );
    let r = assert_failed(&out);
    let reason = r["abort_reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("joining #kchat: ") && reason.contains(" 405 "),
        "{r}"
    );
}

/// kchat frames ([`ROOMS_7_3`]) read a few bytes at a time (headers and payloads split
/// across reads) and with one frame's worth per read: both clean.
#[test]
fn kchat_small_reads() {
    for size in ["3", "68"] {
        let args = [&ROOMS_7_3[..], &["--read-size", size]].concat();
        let out = run(
            Relay::default().start(),
            &args,
            &format!("read-size-{size}"),
        );
        assert_eq!(assert_clean(&out), ROOMS_7_3_DELIVERIES);
    }
}
