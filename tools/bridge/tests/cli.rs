// SPDX-License-Identifier: GPL-2.0
//! The command line, the secret, and the process: `--help`, refused options and secret
//! files, a link kchat refuses (retried, logged), and SIGTERM (stats, exit status 0). No
//! nats-server needed: NATS is pointed at a port nobody listens on.

mod common;

use std::process::Command;

use common::{
    bridge::{binary, secret_file, Bridge},
    free_port,
    kchat::FakeKchat,
    SECRET, WAIT,
};

#[test]
fn help_documents_every_option() {
    let out = Command::new(binary()).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for word in [
        "--kchat",
        "--link-secret-file",
        "--node",
        "--nats",
        "--buffer-bytes",
        "--heartbeat",
        "--silence",
        "--max-backoff",
        "--kchat-max-frame",
        "--stats",
        "kchat.room.ROOM",
        "kchat.priv.NODE",
        "kchat.presence",
        "hello",
        "=drop",
        "SIGTERM",
        "dropped",
    ] {
        assert!(
            help.contains(word),
            "--help does not mention {word}:\n{help}"
        );
    }
}

#[test]
fn bad_options_and_secret_files_exit_2() {
    let run = |secret: &str, extra: &[&str]| {
        let file = secret_file("cli", secret);
        let node = if extra.contains(&"--node") {
            &[][..]
        } else {
            &["--node", "n1"][..]
        };
        let out = Command::new(binary())
            .args(["--kchat", "127.0.0.1:1", "--nats", "127.0.0.1:1"])
            .args(node)
            .arg("--link-secret-file")
            .arg(&file)
            .args(extra)
            .output()
            .unwrap();
        let _ = std::fs::remove_file(file);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for (secret, extra, says) in [
        ("0\n", &[][..], "is 0"),
        ("abc", &[][..], "decimal u64"),
        ("1", &["--node", "a.b"][..], "node name"),
        ("1", &["--nats", "tls://x:1"][..], "only nats://"),
        ("1", &["--heartbeat", "10"][..], "--silence"),
    ] {
        let (code, err) = run(secret, extra);
        assert_eq!(code, Some(2), "{secret:?} {extra:?}: {err}");
        assert!(err.contains(says), "{secret:?} {extra:?}: {err}");
    }
    let out = Command::new(binary())
        .args([
            "--kchat",
            "127.0.0.1:1",
            "--node",
            "n1",
            "--nats",
            "127.0.0.1:1",
        ])
        .args(["--link-secret-file", "/nonexistent/kchat-secret"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/kchat-secret"));
}

#[test]
fn a_refused_link_is_logged_and_retried() {
    // kchat expects another secret.
    let k = FakeKchat::start("A", SECRET + 1, &[("#lobby", "alice")]);
    let b = Bridge::start(&k, &[free_port()], &[]);
    assert!(k.wait(WAIT, |s| s.refused >= 2), "retried");
    assert!(b.wait_log(WAIT, "cannot link to kchat"));
    assert!(b.wait_log(WAIT, "refused: ! link refused"));
    assert_eq!(k.state().links, 0);
    // One line for the repeated refusals, not one per attempt.
    assert_eq!(b.count_log("refused: ! link refused"), 1, "{:?}", b.log());
}

#[test]
fn sigterm_prints_stats_and_exits_0() {
    let k = FakeKchat::start("A", SECRET, &[("#lobby", "alice")]);
    let mut b = Bridge::start(&k, &[free_port()], &["--stats", "0.1"]);
    assert!(b.wait_log(WAIT, "kchat synced: 1 members in 1 rooms"));
    assert!(b.wait_log(WAIT, "cannot connect to NATS"));
    // A message for NATS while it is away: queued (`PUB kchat.room.lobby 14`, 41 bytes).
    k.say("#lobby", "alice", b"hello?");
    assert!(b.wait_log(WAIT, "stats: room messages out 1"));
    let status = b.terminate();
    assert!(status.success(), "{status:?}");
    let log = b.log();
    let exit = log
        .iter()
        .find(|l| l.contains("exiting on signal 15"))
        .unwrap_or_else(|| panic!("no exit line: {log:?}"));
    assert!(exit.contains("room messages out 1"), "{exit}");
    assert!(exit.contains("kchat links 1"), "{exit}");
    assert!(exit.contains("NATS connections 0"), "{exit}");
    assert!(exit.contains("bytes queued for NATS 41 "), "{exit}");
}
