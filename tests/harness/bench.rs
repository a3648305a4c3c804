//! `make bench`: kchat, the reference servers and Redis, side by side in one guest of the
//! production-like kernel, then a table, a chart and the raw figures.
//!
//! The guest runs every scenario against every server, one server at a time, with the same
//! semantics: notices off, no per-client rate limit. `kchat-bench` appends one JSON record per
//! run; the guest prints them (`KCHAT-BENCH-JSON ...`) and the host collects them into
//! `target/bench/latest.json`.

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::{json, Value};

/// One scenario: a name and the load generator's arguments (for both protocols).
pub struct Scenario {
    pub name: &'static str,
    pub args: &'static str,
}

/// The scenarios, in order. Message counts are sized for a 2-vCPU TCG guest: each run moves
/// millions of deliveries in tens of seconds.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "small",
        args: "--clients 10 --senders 10 --payload 1024 --messages 4000",
    },
    Scenario {
        name: "fanout-1000",
        args: "--clients 1000 --senders 1000 --payload 64 --messages 6",
    },
    Scenario {
        name: "idle-10000",
        args: "--clients 10100 --senders 100 --payload 64 --messages 4",
    },
    Scenario {
        name: "slow-consumer",
        args: "--clients 999 --stalled 1 --senders 100 --payload 64 --messages 40",
    },
    Scenario {
        name: "slow-consumer-baseline",
        args: "--clients 999 --senders 100 --payload 64 --messages 40",
    },
];

/// Servers as the guest runs them: the label `kchat-bench` records, and a shell snippet that
/// starts it (port 10106, or 6379 for Redis) and one that stops it.
struct Server {
    label: &'static str,
    protocol: &'static str,
    port: u16,
    start: &'static str,
    stop: &'static str,
}

const SERVERS: &[Server] = &[
    Server {
        label: "kchat",
        protocol: "kchat",
        port: 10106,
        start: "insmod /lib/modules/kchat.ko notices=0 max_msg_rate=0 max_clients=20000 trace=0",
        stop: "rmmod kchat",
    },
    Server {
        label: "ref-epoll-t1",
        protocol: "kchat",
        port: 10106,
        start: "kchat-ref epoll --notices 0 --max-msg-rate 0 --max-clients 20000 --threads 1 > /dev/null &",
        stop: "kill $! ; wait $! 2>/dev/null",
    },
    Server {
        label: "ref-epoll-t2",
        protocol: "kchat",
        port: 10106,
        start: "kchat-ref epoll --notices 0 --max-msg-rate 0 --max-clients 20000 --threads 2 > /dev/null &",
        stop: "kill $! ; wait $! 2>/dev/null",
    },
    Server {
        label: "ref-uring",
        protocol: "kchat",
        port: 10106,
        start: "kchat-ref uring --notices 0 --max-msg-rate 0 --max-clients 20000 > /dev/null &",
        stop: "kill $! ; wait $! 2>/dev/null",
    },
    Server {
        label: "redis",
        protocol: "resp",
        port: 6379,
        start: "redis-server --port 6379 --save '' --appendonly no --maxclients 20000 \
                --protected-mode no --daemonize no --loglevel warning > /dev/null &",
        stop: "kill $! ; wait $! 2>/dev/null",
    },
];

/// The guest's script for the whole benchmark: `runs` rounds of every scenario against every
/// server. `scenarios` and `servers` (by name; empty: all) limit what runs, for quicker
/// experiments (`KCHAT_BENCH_SCENARIOS`, `KCHAT_BENCH_SERVERS`, `KCHAT_BENCH_RUNS`).
pub fn guest_script(scenarios: &[String], servers: &[String], runs: u32) -> String {
    let only = scenarios;
    let mut s = String::from(
        r#"ulimit -n 1048576
echo "KCHAT-BENCH-ENV kernel $(uname -r)"
for f in /sys/devices/system/cpu/vulnerabilities/*; do
    echo "KCHAT-BENCH-ENV vulnerability ${f##*/}: $(cat $f)"
done
echo "KCHAT-BENCH-ENV cpus $(nproc), memory $(awk '/MemTotal/ {print $2}' /proc/meminfo) kB"
# Waits until something listens on port $1 (hex in /proc/net/tcp, state 0A).
listening() {
    p=$(printf '%04X' $1)
    for i in $(seq 200); do
        grep -q ":$p 00000000:0000 0A" /proc/net/tcp && return 0
        sleep 0.05
    done
    echo "KCHAT-BENCH-ERROR nothing listens on port $1"
    return 1
}
J=/tmp/bench.jsonl
: > $J
"#,
    );
    // The memory measurement belongs to full runs only.
    if scenarios.is_empty() && servers.is_empty() {
        s.push_str("/bin/kchat-vmtest --idle-memory 10000\n");
    }
    // Rounds of every server in turn, rather than all of one server's runs in a row: the
    // machine's noise (other guests, the host) then spreads over all servers alike, and the
    // report takes each one's median.
    for round in 1..=runs.max(1) {
        for server in SERVERS.iter().filter(|sv| {
            servers.is_empty() || servers.iter().any(|n| sv.label.starts_with(n.as_str()))
        }) {
            let _ = writeln!(s, "echo '# bench: round {round}: {}'", server.label);
            let _ = writeln!(s, "{}", server.start);
            let _ = writeln!(s, "if listening {}; then", server.port);
            for sc in SCENARIOS
                .iter()
                .filter(|sc| only.is_empty() || only.iter().any(|o| o == sc.name))
            {
                let _ = writeln!(
                s,
                "    kchat-bench --quiet --addr 127.0.0.1:{} --protocol {} --server {} --scenario {} \
                 --idle-timeout 60 --duration-limit 600 --json $J {} > /dev/null 2>&1 || \
                 echo '# bench: {} {} reported a problem'",
                server.port, server.protocol, server.label, sc.name, sc.args, server.label, sc.name
            );
                if server.label == "kchat" {
                    // kchat's own counters after each scenario (cumulative since load).
                    let _ = writeln!(
                        s,
                        "    echo '# after {}:' $(tr '\\n' ' ' < /sys/kernel/debug/kchat/stats)",
                        sc.name
                    );
                }
            }
            let _ = writeln!(s, "fi\n{}\nsleep 1", server.stop);
        }
    }
    if std::env::var_os("KCHAT_BENCH_PROFILE").is_some() {
        s.push_str(&profile_script());
    }
    s.push_str("while read -r line; do echo \"KCHAT-BENCH-JSON $line\"; done < $J\n");
    s
}

/// With `KCHAT_BENCH_PROFILE=1`: where kchat's time goes in `fanout-1000`, from a system-wide
/// `perf record` in the guest (the bench kernel has PERF_EVENTS; the host's perf is copied in).
fn profile_script() -> String {
    let args = SCENARIOS
        .iter()
        .find(|s| s.name == "fanout-1000")
        .map_or("", |s| s.args);
    let mut s = String::new();
    for (label, start, stop) in [
        (
            "kchat",
            "insmod /lib/modules/kchat.ko notices=0 max_msg_rate=0 max_clients=20000 trace=0",
            "rmmod kchat",
        ),
        (
            "ref-epoll-t1",
            "kchat-ref epoll --notices 0 --max-msg-rate 0 --max-clients 20000 --threads 1 > /dev/null &",
            "kill $! ; wait $! 2>/dev/null",
        ),
    ] {
        // Per process (the generator, kchat's kworkers, the reference server, softirq
        // threads), then per symbol: the host's report groups the symbols (see README).
        let _ = write!(
            s,
            "echo '# bench: profiling {label} in fanout-1000'\n\
             {start}\n\
             listening 10106 && perf record -q -a -F 997 -o /tmp/perf.data -- \
             kchat-bench --quiet --server {label} --scenario profile {args} > /dev/null 2>&1\n\
             perf report -q -i /tmp/perf.data --stdio --no-children --sort comm --percent-limit 0.5 2>/dev/null \
             | grep -v '^$' | sed 's/^/# perf {label} comm /'\n\
             perf report -q -i /tmp/perf.data --stdio --no-children --sort symbol --percent-limit 0.05 2>/dev/null \
             | grep -v '^$' | sed 's/^/# perf {label} sym /'\n\
             {stop}\n"
        );
    }
    s
}

/// Extra guest binaries for `KCHAT_BENCH_PROFILE`.
pub fn profile_binaries() -> Vec<PathBuf> {
    if std::env::var_os("KCHAT_BENCH_PROFILE").is_none() {
        return Vec::new();
    }
    // Debian's /usr/bin/perf is the versioned binary itself (linux-perf).
    vec![PathBuf::from("/usr/bin/perf")]
}

/// Turns the guest's records into the published set: every run of kchat, `ref-uring` and
/// Redis; every run of the epoll server's better thread count (by median throughput) as
/// `ref-epoll`; and every run of the better of `ref-epoll` and `ref-uring` again as
/// `reference`. The report takes medians over the runs.
pub fn publish(records: Vec<Value>) -> Vec<Value> {
    let mut out = Vec::new();
    let mut scenarios: Vec<String> = Vec::new();
    for r in &records {
        if let Some(sc) = r["scenario"].as_str() {
            if !scenarios.iter().any(|s| s == sc) {
                scenarios.push(sc.to_string());
            }
        }
    }
    let relabel = |rs: &[&Value], label: &str| -> Vec<Value> {
        rs.iter()
            .map(|r| {
                let mut r = (*r).clone();
                if r["server"] != label {
                    r["server_variant"] = r["server"].clone();
                    r["server"] = json!(label);
                }
                r
            })
            .collect()
    };
    for sc in &scenarios {
        let of = |label: &str| -> Vec<&Value> {
            records
                .iter()
                .filter(|r| r["scenario"] == sc.as_str() && r["server"] == label)
                .collect()
        };
        for direct in ["kchat", "ref-uring", "redis"] {
            out.extend(relabel(&of(direct), direct));
        }
        let t1 = of("ref-epoll-t1");
        let t2 = of("ref-epoll-t2");
        let epoll = if median_rate(&t2) > median_rate(&t1) {
            t2
        } else {
            t1
        };
        out.extend(relabel(&epoll, "ref-epoll"));
        let uring = of("ref-uring");
        let reference = if median_rate(&uring) > median_rate(&epoll) {
            uring
        } else {
            epoll
        };
        out.extend(relabel(&reference, "reference"));
    }
    out
}

/// The median delivered messages per second of some runs (the lower middle one for an even
/// count; 0 for none), counting only complete, correct runs if there are any.
fn median_rate(runs: &[&Value]) -> f64 {
    let good: Vec<&&Value> = runs.iter().filter(|r| r["ok"] == true).collect();
    let pool: Vec<&&Value> = if good.is_empty() {
        runs.iter().collect()
    } else {
        good
    };
    let mut rates: Vec<f64> = pool
        .iter()
        .map(|r| r["msgs_per_s"].as_f64().unwrap_or(0.0))
        .collect();
    rates.sort_by(f64::total_cmp);
    rates
        .get(rates.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(0.0)
}

/// Writes latest.json, the markdown table and the chart; returns the markdown.
pub fn write_outputs(
    dir: &Path,
    records: &[Value],
    env: &[String],
    report_bin: &Path,
) -> Result<String, String> {
    fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let json_path = dir.join("latest.json");
    let text =
        serde_json::to_string_pretty(&Value::Array(records.to_vec())).map_err(|e| e.to_string())?;
    fs::write(&json_path, text).map_err(|e| e.to_string())?;
    let md = dir.join("latest.md");
    let svg = dir.join("latest.svg");
    let status = Command::new(report_bin)
        .args(["report", "--input"])
        .arg(&json_path)
        .arg("--markdown")
        .arg(&md)
        .arg("--svg")
        .arg(&svg)
        .status()
        .map_err(|e| format!("running {}: {e}", report_bin.display()))?;
    if !status.success() {
        return Err(format!("kchat-bench report failed: {status}"));
    }
    let mut table = fs::read_to_string(&md).map_err(|e| e.to_string())?;
    table.push_str("\nGuest:\n\n");
    for line in env {
        let _ = writeln!(table, "- {line}");
    }
    fs::write(&md, &table).map_err(|e| e.to_string())?;
    Ok(table)
}

/// A summary of the bench kernel's configuration (the options that shape the numbers).
pub fn kernel_config_summary(kernel: &Path) -> Vec<String> {
    // bzImage is KDIR/arch/x86/boot/bzImage.
    let config: PathBuf = kernel
        .ancestors()
        .nth(4)
        .map(|k| k.join(".config"))
        .unwrap_or_default();
    let text = fs::read_to_string(&config).unwrap_or_default();
    let keys = [
        "CONFIG_PREEMPT_LAZY",
        "CONFIG_HZ",
        "CONFIG_CPU_MITIGATIONS",
        "CONFIG_PROVE_LOCKING",
        "CONFIG_DEBUG_OBJECTS",
        "CONFIG_KASAN",
        "CONFIG_DEBUG_KMEMLEAK",
        "CONFIG_SLUB_DEBUG",
        "CONFIG_SLUB_DEBUG_ON",
        "CONFIG_RUST_OVERFLOW_CHECKS",
        "CONFIG_IO_URING",
        "CONFIG_CC_OPTIMIZE_FOR_PERFORMANCE",
    ];
    keys.iter()
        .map(|k| {
            let v = text
                .lines()
                .find_map(|l| {
                    l.strip_prefix(&format!("{k}="))
                        .map(str::to_string)
                        .or_else(|| (l == format!("# {k} is not set")).then(|| "n".to_string()))
                })
                .unwrap_or_else(|| "n".into());
            format!("kernel config {k}={v}")
        })
        .collect()
}
