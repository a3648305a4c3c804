// SPDX-License-Identifier: GPL-2.0
//! `--protocol irc` against real IRC servers, Debian bookworm's ngircd 26.1 and InspIRCd
//! 3.15, configured by `tests/config/irc/` and run by `tests/scripts/irc-peer.sh`: 50
//! clients all sending, in one channel and in rooms, nothing lost and nobody dropped.
//! A server that is not installed skips its tests.

mod common;

use common::{assert_clean, peer::Peer, run, Run};

/// 50 clients in one channel, all sending 20 messages: 50 x 20 x 49 deliveries.
const ONE_CHANNEL: [&str; 8] = [
    "--protocol",
    "irc",
    "--clients",
    "50",
    "--senders",
    "50",
    "--messages",
    "20",
];

/// The same 50 clients in 5 channels of 10, one more client stalled, reads of 100 bytes:
/// 50 x 20 x 9 deliveries.
const ROOMS: [&str; 6] = ["--rooms", "5", "--stalled", "1", "--read-size", "100"];

/// What `server` needs besides: InspIRCd welcomes clients on its once-a-second tick, so many
/// connects are in flight at once (ngircd's listen backlog of 10 needs the default, 8).
fn server_args(server: &str) -> &'static [&'static str] {
    match server {
        "inspircd" => &["--connect-batch", "256"],
        _ => &[],
    }
}

/// Runs [`ONE_CHANNEL`] and `extra` against `server` (if installed) and checks a clean run
/// of `deliveries`, showing the server's log if it was not.
fn clean_run(server: &'static str, extra: &[&str], deliveries: f64) {
    let Some(peer) = Peer::start(server) else {
        return;
    };
    let args = [&ONE_CHANNEL[..], server_args(server), extra].concat();
    let out: Run = run(peer.addr, &args, &format!("{server}-{}", extra.len()));
    if out.code != Some(0) {
        eprintln!("{server} log:\n{}", peer.log());
    }
    assert_eq!(assert_clean(&out), deliveries, "{server}");
}

/// ngircd, 50 clients in one channel.
#[test]
fn ngircd_one_channel() {
    clean_run("ngircd", &[], 49_000.0);
}

/// ngircd, 50 clients in 5 channels, one stalled, small reads.
#[test]
fn ngircd_rooms() {
    clean_run("ngircd", &ROOMS, 9_000.0);
}

/// InspIRCd, 50 clients in one channel.
#[test]
fn inspircd_one_channel() {
    clean_run("inspircd", &[], 49_000.0);
}

/// InspIRCd, 50 clients in 5 channels, one stalled, small reads.
#[test]
fn inspircd_rooms() {
    clean_run("inspircd", &ROOMS, 9_000.0);
}
