// SPDX-License-Identifier: GPL-2.0
//! RESP mode against an in-test Redis-like pub/sub server.

mod common;

use common::{assert_clean, num, pubsub::start_pubsub, run};

/// Runs 3 subscribers, 1 stalled subscriber and 2 publishers (80 messages each, window 3)
/// and checks: exit 0; each message reached the 3 reading subscribers (2 x 80 x 3
/// deliveries; the stalled one is not a recipient); nothing lost or corrupted; protocol
/// `resp` in the record.
#[test]
fn resp_clean() {
    let args = [
        "--protocol",
        "resp",
        "--clients",
        "3",
        "--senders",
        "2",
        "--messages",
        "80",
        "--window",
        "3",
        "--stalled",
        "1",
        "--threads",
        "2",
    ];
    let out = run(start_pubsub(), &args, "resp");
    assert_eq!(assert_clean(&out), 480.0);
    assert_eq!(out.record["protocol"], "resp");
    assert_eq!(num(&out.record, "recipients"), 3.0);
}

/// Rooms over pub/sub: 5 subscribers in 2 rooms (channels `bench-0`: 3 subscribers,
/// `bench-1`: 2) and 3 publishers (to rooms 0, 1, 0), 30 messages each: every message reaches
/// exactly its channel's subscribers (30 x (3 + 2 + 3) deliveries), nothing else.
#[test]
fn resp_rooms() {
    let args = [
        "--protocol",
        "resp",
        "--clients",
        "5",
        "--senders",
        "3",
        "--rooms",
        "2",
        "--messages",
        "30",
    ];
    assert_eq!(
        assert_clean(&run(start_pubsub(), &args, "resp-rooms")),
        240.0
    );
}
