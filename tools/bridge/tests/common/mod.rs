// SPDX-License-Identifier: GPL-2.0
//! What the bridge's integration tests share: real `nats-server` processes ([`nats`]), a fake
//! kchat per node speaking kchat's side of the link ([`kchat`]), the bridge process itself
//! ([`bridge`]) and a TCP proxy that can cut a bridge off from NATS ([`proxy`]).
//!
//! A test that needs `nats-server` where it is not installed says so
//! (`SKIPPED: nats-server not installed [TEST]`, which the harness counts as skipped) and
//! returns.

#![allow(dead_code)]

pub mod bridge;
pub mod kchat;
pub mod nats;
pub mod proxy;

use std::{
    io::Write,
    net::TcpListener,
    thread,
    time::{Duration, Instant},
};

/// The link secret every fake kchat of the tests expects.
pub const SECRET: u64 = 918_273_645_546_372_819;

/// The longest any one wait of a test may take (a loaded 2-core machine is slow).
pub const WAIT: Duration = Duration::from_secs(20);

/// Says that the running test is skipped, and why, in one line to stderr that the test
/// harness does not capture: `SKIPPED: WHY [TEST]`.
pub fn skip(why: &str) {
    let test = thread::current().name().unwrap_or("?").to_string();
    let line = format!("SKIPPED: {why} [{test}]\n");
    // Written to the stream itself in one piece: `eprintln!` would be captured.
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("local addr").port()
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes; whether it held.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}
