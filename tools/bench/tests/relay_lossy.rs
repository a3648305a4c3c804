// SPDX-License-Identifier: GPL-2.0
//! A relay that loses one message is caught.

mod common;

use common::{num, relay::Relay, run};

/// The relay drops the 5th benchmark message for one of its recipients. With a window of 4
/// the sender goes on, and the recipient sees the gap when the next message arrives. Checks:
/// - exit status 1, and the JSON record is still written;
/// - lost = 1 exactly, nothing duplicated, reordered or corrupted;
/// - the run was not aborted (the gap resolved the window) and `ok` is false.
#[test]
fn one_lost_message_is_reported() {
    let relay = Relay {
        drop_nth: Some(5),
        ..Relay::default()
    };
    let args = [
        "--clients",
        "3",
        "--senders",
        "1",
        "--messages",
        "50",
        "--window",
        "4",
    ];
    let out = run(relay.start(), &args, "lossy");
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let r = &out.record;
    assert_eq!(num(r, "lost"), 1.0, "{r}");
    assert_eq!(
        num(r, "duplicated") + num(r, "reordered") + num(r, "corrupted"),
        0.0
    );
    assert_eq!(num(r, "deliveries"), 99.0);
    assert_eq!(r["aborted"], false);
    assert_eq!(r["ok"], false);
}
