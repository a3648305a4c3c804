// SPDX-License-Identifier: GPL-2.0
//! What the integration tests share: tiny in-test servers (a kchat relay with rooms, a
//! Redis-like pub/sub server, an IRC server), real IRC servers, and running the real binary.

#![allow(dead_code)] // Each test file uses a different part of this module.

pub mod ircd;
pub mod peer;
pub mod pubsub;
pub mod relay;

use std::{net::SocketAddr, process::Command};

use serde_json::Value;

/// 7 clients in 3 rooms ({0, 3, 6}, {1, 4}, {2, 5}), all sending 40 messages, window 2.
pub const ROOMS_7_3: [&str; 10] = [
    "--clients",
    "7",
    "--senders",
    "7",
    "--rooms",
    "3",
    "--messages",
    "40",
    "--window",
    "2",
];

/// Deliveries of a complete [`ROOMS_7_3`] run: 40 x (3 senders x 2 + 2 x 1 + 2 x 1).
pub const ROOMS_7_3_DELIVERIES: f64 = 400.0;

/// What one run of the binary left.
#[derive(Debug)]
pub struct Run {
    /// The exit status's code.
    pub code: Option<i32>,
    /// Its JSON record (exactly one is written, also for failed runs).
    pub record: Value,
    pub stdout: String,
    pub stderr: String,
}

/// Runs kchat-bench against `addr` with `args` (quiet, a 5 s idle timeout, the record in a
/// fresh file named after `name`).
pub fn run(addr: SocketAddr, args: &[&str], name: &str) -> Run {
    let json = std::env::temp_dir().join(format!("kchat-bench-{}-{name}.json", std::process::id()));
    let _ = std::fs::remove_file(&json);
    let out = Command::new(env!("CARGO_BIN_EXE_kchat-bench"))
        .arg("--addr")
        .arg(addr.to_string())
        .args(args)
        .arg("--json")
        .arg(&json)
        .args(["--quiet", "--idle-timeout", "5"])
        .output()
        .expect("run kchat-bench");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    let _ = std::fs::remove_file(&json);
    let mut records = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"));
    let record = records.next().expect("a record");
    assert!(records.next().is_none(), "one record per run");
    Run {
        code: out.status.code(),
        record,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    }
}

/// Field `k` of record `r` as a number.
pub fn num(r: &Value, k: &str) -> f64 {
    r[k].as_f64()
        .unwrap_or_else(|| panic!("field {k} missing in {r}"))
}

/// Asserts a complete, correct run (exit 0, nothing wrong, `ok`); returns its deliveries.
pub fn assert_clean(run: &Run) -> f64 {
    let r = &run.record;
    assert_eq!(run.code, Some(0), "{r}\n{}", run.stderr);
    for k in ["lost", "duplicated", "reordered", "corrupted", "errors"] {
        assert_eq!(num(r, k), 0.0, "{k}: {r}");
    }
    assert_eq!(r["ok"], true);
    num(r, "deliveries")
}

/// Asserts a failed run (exit 1, not `ok`); returns its record.
pub fn assert_failed(run: &Run) -> &Value {
    let r = &run.record;
    assert_eq!(run.code, Some(1), "{r}\n{}", run.stderr);
    assert_eq!(r["ok"], false);
    r
}
