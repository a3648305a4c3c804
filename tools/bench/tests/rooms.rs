// SPDX-License-Identifier: GPL-2.0
//! `--rooms` against the in-test kchat relay: clients join their rooms before the run, and a
//! message must reach exactly the other members of its sender's room.

mod common;

use common::{assert_clean, num, relay::Relay, run, ROOMS_7_3, ROOMS_7_3_DELIVERIES};

/// A correct relay: every client joins its room, and each message reaches the other members
/// of its sender's room only. Checks exit 0, the deliveries of exactly those members, nothing
/// wrong, `rooms` in the record and the mean recipients per message (10 / 7, rounded).
#[test]
fn rooms_clean() {
    let out = run(Relay::default().start(), &ROOMS_7_3, "rooms");
    assert_eq!(assert_clean(&out), ROOMS_7_3_DELIVERIES);
    let r = &out.record;
    assert_eq!((num(r, "rooms"), num(r, "recipients")), (3.0, 1.0));
}

/// A relay that sends every message to every other client, whatever its room: each copy to a
/// client of another room is an error (exit 1); the right members still get theirs.
#[test]
fn misrouted_messages_are_errors() {
    let relay = Relay {
        misroute: true,
        ..Relay::default()
    };
    let out = run(relay.start(), &ROOMS_7_3, "misroute");
    assert_eq!(out.code, Some(1));
    let r = &out.record;
    // Each message also went to the 6 - (room size - 1) clients of the other rooms; the
    // copies of the last messages may still be on their way when the run ends.
    let errors = num(r, "errors");
    assert!(errors > 0.0 && errors <= 40.0 * (7.0 * 6.0 - 10.0), "{r}");
    assert_eq!(num(r, "deliveries"), ROOMS_7_3_DELIVERIES);
    assert_eq!(num(r, "lost") + num(r, "corrupted"), 0.0);
    assert_eq!(r["ok"], false);
}

/// A relay with history: later runs get the earlier runs' messages replayed on connecting
/// (`#lobby`) and on joining a room. Checks that two runs without rooms and then two with
/// rooms, one after the other against the same relay, are all clean: the replays are skipped.
#[test]
fn history_replays_are_skipped() {
    let addr = Relay {
        history: 5,
        ..Relay::default()
    }
    .start();
    let lobby = ["--clients", "3", "--senders", "2", "--messages", "20"];
    for (i, args) in [&lobby[..], &lobby, &ROOMS_7_3, &ROOMS_7_3]
        .iter()
        .enumerate()
    {
        assert_clean(&run(addr, args, &format!("history{i}")));
    }
}

/// A relay that refuses the second room: the run aborts at once, saying which join failed.
#[test]
fn refused_join_aborts() {
    let relay = Relay {
        max_rooms: Some(1),
        ..Relay::default()
    };
    let out = run(relay.start(), &ROOMS_7_3, "refused");
    assert_eq!(out.code, Some(1));
    let r = &out.record;
    assert_eq!(r["aborted"], true);
    let reason = r["abort_reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("joining #bench-") && reason.ends_with("! too many rooms"),
        "{r}"
    );
}
