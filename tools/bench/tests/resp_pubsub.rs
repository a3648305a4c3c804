// SPDX-License-Identifier: GPL-2.0
//! RESP mode against an in-test Redis-like pub/sub server.

mod common;

use common::{bench, num, records, start_pubsub, temp_json};

/// Runs 3 subscribers, 1 stalled subscriber and 2 publishers (80 messages each, window 3)
/// and checks: exit 0; each message reached the 3 reading subscribers (2 x 80 x 3
/// deliveries; the stalled one is not a recipient); nothing lost or corrupted; protocol
/// `resp` in the record.
#[test]
fn resp_clean() {
    let addr = start_pubsub();
    let json = temp_json("resp");
    let out = bench(
        &[
            "--addr",
            &addr.to_string(),
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
        ],
        &json,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = &records(&json)[0];
    assert_eq!(r["protocol"], "resp");
    assert_eq!(num(r, "deliveries"), 480.0);
    assert_eq!(num(r, "recipients"), 3.0);
    for k in ["lost", "duplicated", "reordered", "corrupted", "errors"] {
        assert_eq!(num(r, k), 0.0, "{k}");
    }
}
