// SPDX-License-Identifier: GPL-2.0
//! The real binary against a correct in-test kchat relay reports a clean run.

mod common;

use common::{assert_clean, num, relay::Relay, run};

/// Runs 4 clients (2 senders, 150 messages each, window 4) plus 1 stalled client against
/// the relay, and checks:
/// - exit status 0 and exactly one JSON line;
/// - every message reached the 3 other clients: deliveries = 2 x 150 x 3, the stalled
///   client not counted as a recipient;
/// - nothing lost, duplicated, reordered or corrupted, no errors, not aborted;
/// - sane numbers: positive rate, 0 < p50 <= p90 <= p99 <= max, MB/s matching 64-byte
///   payloads, a kernel release, labels copied through.
#[test]
fn clean_relay_one_thread() {
    let args = [
        "--clients",
        "4",
        "--senders",
        "2",
        "--messages",
        "150",
        "--window",
        "4",
        "--stalled",
        "1",
        "--server",
        "relay",
        "--scenario",
        "t",
    ];
    let out = run(Relay::default().start(), &args, "clean1");
    assert_eq!(assert_clean(&out), 900.0);
    assert!(out.stdout.contains("relay"), "table row: {}", out.stdout);
    let r = &out.record;
    assert_eq!(r["server"], "relay");
    assert_eq!(r["scenario"], "t");
    assert_eq!(num(r, "recipients"), 3.0);
    assert_eq!(r["aborted"], false);
    assert!(num(r, "msgs_per_s") > 0.0);
    let (p50, p90, p99, max) = (
        num(r, "p50_us"),
        num(r, "p90_us"),
        num(r, "p99_us"),
        num(r, "max_us"),
    );
    assert!(0.0 < p50 && p50 <= p90 && p90 <= p99 && p99 <= max, "{r}");
    let mb = num(r, "msgs_per_s") * 64.0 / 1e6;
    assert!((num(r, "mb_per_s") - mb).abs() < 1e-6 * mb.max(1.0), "{r}");
    assert!(num(r, "elapsed_s") > 0.0 && num(r, "connect_s") >= 0.0);
    assert!(!r["kernel"].as_str().unwrap_or("").is_empty());
}

/// Same relay with `--threads 2`, every client a sender, odd payload size: checks that the
/// cross-thread window bookkeeping completes the run cleanly (4 x 100 x 3 deliveries).
#[test]
fn clean_relay_two_threads() {
    let args = [
        "--clients",
        "4",
        "--senders",
        "4",
        "--messages",
        "100",
        "--window",
        "2",
        "--threads",
        "2",
        "--payload",
        "101",
    ];
    let out = run(Relay::default().start(), &args, "clean2");
    assert_eq!(assert_clean(&out), 1200.0);
}

/// Open loop: 2 senders at 1000 messages/s each, 60 messages: checks that the run follows
/// the schedule (the last message is due 59 ms after the start, so the measured interval
/// is at least that), that it completes cleanly, and that `rate` is in the record.
#[test]
fn clean_relay_rate() {
    let args = [
        "--clients",
        "3",
        "--senders",
        "2",
        "--messages",
        "60",
        "--rate",
        "1000",
    ];
    let out = run(Relay::default().start(), &args, "rate");
    assert_eq!(assert_clean(&out), 240.0);
    let r = &out.record;
    assert_eq!(num(r, "rate"), 1000.0);
    assert!(num(r, "elapsed_s") >= 0.059, "{r}");
}
