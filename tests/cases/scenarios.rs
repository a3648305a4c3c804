//! Short forms of the `make bench` scenarios, as correctness checks: `kchat-bench` against kchat
//! and both reference servers must deliver every message exactly once, intact and in
//! per-sender order. No timing is asserted (the machines are shared and noisy); the figures are
//! printed for the curious.

use std::{
    net::TcpStream,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{module, util, Case, CaseResult};

/// A scenario of `make bench` cut down for the debug kernel: the same shape (clients, senders,
/// payload, idle or stalled clients), fewer clients and messages.
struct Short {
    name: &'static str,
    args: &'static str,
}

const SHORT: &[Short] = &[
    Short {
        name: "small",
        args: "--clients 10 --senders 10 --payload 1024 --messages 200",
    },
    Short {
        name: "fanout-1000",
        args: "--clients 300 --senders 300 --payload 64 --messages 2",
    },
    Short {
        name: "idle-10000",
        args: "--clients 1520 --senders 20 --payload 64 --messages 3",
    },
    Short {
        name: "slow-consumer",
        args: "--clients 199 --stalled 1 --senders 20 --payload 64 --messages 10",
    },
];

const PORT: u16 = 10106;
const JSON: &str = "/tmp/scenarios.jsonl";

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "bench scenarios (short) against kchat: nothing lost, duplicated, reordered, corrupted",
            run: against_kchat,
        },
        Case {
            name: "bench scenarios (short) against ref-epoll (1 and 2 threads), ref-uring, ref-sendfile",
            run: against_references,
        },
    ]
}

fn against_kchat() -> CaseResult {
    let log = util::start("notices=0 max_msg_rate=0 max_clients=20000 trace=0")?;
    run_all("kchat")?;
    // kchat relays each message to every other connection, the stalled one included: its
    // counter holds at least that. (The generator's barrier adds a few sync messages, as many
    // as the barrier needed, so the count is not exact.)
    let want: u64 = SHORT
        .iter()
        .map(|sc| {
            let conns = arg(sc, "--clients") + arg(sc, "--stalled");
            arg(sc, "--senders") * arg(sc, "--messages") * (conns - 1)
        })
        .sum();
    let relayed = util::stat("messages_relayed")?;
    if relayed < want {
        return Err(format!(
            "kchat relayed {relayed} messages, the scenarios sent {want}"
        ));
    }
    drop(log);
    module::unload().map_err(|e| format!("rmmod: {e}"))
}

fn against_references() -> CaseResult {
    for (label, args) in [
        ("ref-epoll-t1", &["epoll", "--threads", "1"][..]),
        ("ref-epoll-t2", &["epoll", "--threads", "2"][..]),
        ("ref-uring", &["uring"][..]),
        // One thread only here: the engine's threads share epoll's code, which the
        // two-thread epoll run checks; make bench runs both.
        ("ref-sendfile-t1", &["sendfile", "--threads", "1"][..]),
    ] {
        // Stopped when dropped, whatever the result.
        let _server = RefServer::start(args)?;
        run_all(label)?;
    }
    Ok(())
}

/// Runs every short scenario against whatever listens on `PORT`, checking each record.
fn run_all(server: &str) -> CaseResult {
    for sc in SHORT {
        let _ = std::fs::remove_file(JSON);
        let mut cmd = Command::new("kchat-bench");
        cmd.args(["--quiet", "--addr", &format!("127.0.0.1:{PORT}")])
            .args(["--server", server, "--scenario", sc.name])
            .args([
                "--idle-timeout",
                "30",
                "--duration-limit",
                "180",
                "--json",
                JSON,
            ])
            .args(sc.args.split_whitespace())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let out = cmd
            .output()
            .map_err(|e| format!("running kchat-bench: {e}"))?;
        let text = std::fs::read_to_string(JSON)
            .map_err(|e| format!("{server} {}: no JSON record: {e}", sc.name))?;
        let rec: Value = serde_json::from_str(text.trim())
            .map_err(|e| format!("{server} {}: bad JSON record: {e}", sc.name))?;
        check(server, sc, &rec)?;
        if !out.status.success() {
            return Err(format!(
                "{server} {}: kchat-bench failed: {}",
                sc.name,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        println!(
            "# {server} {}: {} deliveries, {:.0} msgs/s, p99 {:.0} us",
            sc.name,
            rec["deliveries"],
            rec["msgs_per_s"].as_f64().unwrap_or(0.0),
            rec["p99_us"].as_f64().unwrap_or(0.0)
        );
    }
    Ok(())
}

/// A record is correct when every sent message reached every recipient once, intact, in order.
fn check(server: &str, sc: &Short, rec: &Value) -> CaseResult {
    let num = |k: &str| rec[k].as_u64().unwrap_or(u64::MAX);
    for k in ["lost", "duplicated", "reordered", "corrupted", "errors"] {
        if num(k) != 0 {
            return Err(format!("{server} {}: {k} = {} ({rec})", sc.name, rec[k]));
        }
    }
    if rec["aborted"].as_bool() != Some(false) || rec["ok"].as_bool() != Some(true) {
        return Err(format!(
            "{server} {}: run not ok: {}",
            sc.name, rec["abort_reason"]
        ));
    }
    let want = num("sent").saturating_mul(num("recipients"));
    let sent = arg(sc, "--senders") * arg(sc, "--messages");
    if num("sent") != sent || num("deliveries") != want || want == 0 {
        return Err(format!(
            "{server} {}: sent {} of {sent}, delivered {} of {want}",
            sc.name, rec["sent"], rec["deliveries"]
        ));
    }
    Ok(())
}

/// The value of the load generator's option `name` in a scenario, 0 if absent.
fn arg(sc: &Short, name: &str) -> u64 {
    let mut it = sc.args.split_whitespace();
    while let Some(a) = it.next() {
        if a == name {
            return it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        }
    }
    0
}

/// A reference server child process (kchat-ref with kchat's bench semantics), killed when
/// dropped.
pub struct RefServer(Child);

impl RefServer {
    pub fn start(args: &[&str]) -> Result<Self, String> {
        let child = Command::new("kchat-ref")
            .args(args)
            .args([
                "--notices",
                "0",
                "--max-msg-rate",
                "0",
                "--max-clients",
                "20000",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting kchat-ref {args:?}: {e}"))?;
        let server = RefServer(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", PORT)).is_err() {
            if Instant::now() > deadline {
                return Err(format!("kchat-ref {args:?} does not listen on {PORT}"));
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }
}

impl Drop for RefServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
