// SPDX-License-Identifier: GPL-2.0
//! Against the reference server `kchat-ref` (`tools/refserver`), which speaks kchat's rooms
//! and history exactly as the module does. It runs from the same target directory as
//! kchat-bench: `cargo test --workspace` builds both; with `-p kchat-bench` alone, build it
//! first (`cargo build -p kchat-refserver`, same profile), or these tests say so and pass.

mod common;

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
};

use common::{assert_clean, run};

/// A running `kchat-ref epoll`, stopped when dropped.
struct RefServer {
    child: Child,
    addr: SocketAddr,
}

impl Drop for RefServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `kchat-ref epoll` on a free port with the benchmark's settings and `history`;
/// `None` (said on stderr) if it is not built.
fn start(history: u32) -> Option<RefServer> {
    let bin: PathBuf = PathBuf::from(env!("CARGO_BIN_EXE_kchat-bench")).with_file_name("kchat-ref");
    if !bin.exists() {
        eprintln!("skipped: {} is not built", bin.display());
        return None;
    }
    let history = history.to_string();
    let args = [
        "epoll",
        "--port",
        "0",
        "--notices",
        "0",
        "--max-msg-rate",
        "0",
    ];
    let mut child = Command::new(&bin)
        .args(args)
        .args(["--history", &history])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start kchat-ref");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout");
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("kchat-ref's first line");
    let listening: SocketAddr = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("kchat-ref said {line:?}"));
    let addr = SocketAddr::from(([127, 0, 0, 1], listening.port()));
    Some(RefServer { child, addr })
}

/// 30 clients in 5 rooms of 6, all sending 20 messages: 20 x 30 x 5 deliveries.
const ROOMS: [&str; 8] = [
    "--clients",
    "30",
    "--senders",
    "30",
    "--rooms",
    "5",
    "--messages",
    "20",
];

/// 10 clients in `#lobby`, 3 sending 20 messages: 20 x 3 x 9 deliveries.
const LOBBY: [&str; 6] = ["--clients", "10", "--senders", "3", "--messages", "20"];

/// With `--history 0`, as `make bench` runs it: a rooms run is clean, and every message
/// reached exactly the 5 others of its sender's room.
#[test]
fn rooms_without_history() {
    let Some(server) = start(0) else { return };
    assert_eq!(assert_clean(&run(server.addr, &ROOMS, "ref-rooms")), 3000.0);
}

/// With the default history (20): runs one after the other against the same server get the
/// earlier runs' messages replayed on connecting to `#lobby`; every run is still clean and
/// counts only its own messages.
#[test]
fn history_replays_are_skipped() {
    let Some(server) = start(20) else { return };
    for (i, (args, deliveries)) in [(&LOBBY[..], 540.0), (&ROOMS, 3000.0), (&LOBBY, 540.0)]
        .into_iter()
        .enumerate()
    {
        let out = run(server.addr, args, &format!("ref-history{i}"));
        assert_eq!(assert_clean(&out), deliveries);
    }
}
