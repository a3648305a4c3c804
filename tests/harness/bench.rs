//! `make bench`: kchat, the reference servers and Redis, side by side in one guest of the
//! production-like kernel, then a table, a chart and the raw figures.
//!
//! The guest runs every scenario against every server, one server at a time, with the same
//! semantics: notices off, no per-client rate limit, no history replay. `kchat-bench` writes
//! one JSON record per run, which the guest prints (`KCHAT-BENCH-JSON ...`) as soon as the run
//! is over. The host collects them as they come and rewrites its outputs after each one
//! (`target/vm/bench/raw.json`, `target/bench/latest.{json,md,svg}`), so a guest that times
//! out, dies or is interrupted (Ctrl-C, SIGTERM) still leaves a report of what ran, marked
//! incomplete. The guest's time limit is sized from the work asked (scenarios x servers x
//! rounds) unless `--timeout` or `KCHAT_BENCH_TIMEOUT` (seconds) sets it.

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::{Command, ExitStatus},
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use serde_json::{json, Value};

use super::{boot, build_image_with, check_logs, Options, RunFiles};

/// One scenario: a name and the load generator's arguments (for both protocols).
struct Scenario {
    name: &'static str,
    args: &'static str,
}

/// The scenarios, in order. Message counts are sized for a 2-vCPU TCG guest: each run takes
/// seconds (kchat) to tens of seconds (Redis).
const SCENARIOS: &[Scenario] = &[
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
    // 100 rooms of 10, everyone sending: each message reaches the 9 others of its room (for
    // Redis, the 10 subscribers of its channel), 1.35 M deliveries in all.
    Scenario {
        name: "rooms",
        args: "--clients 1000 --senders 1000 --rooms 100 --payload 64 --messages 150",
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
        start: "insmod /lib/modules/kchat.ko notices=0 max_msg_rate=0 history=0 max_clients=20000 trace=0",
        stop: "rmmod kchat",
    },
    Server {
        label: "ref-epoll-t1",
        protocol: "kchat",
        port: 10106,
        start: "kchat-ref epoll --notices 0 --max-msg-rate 0 --history 0 --max-clients 20000 --threads 1 > /dev/null &",
        stop: "kill $! ; wait $! 2>/dev/null",
    },
    Server {
        label: "ref-epoll-t2",
        protocol: "kchat",
        port: 10106,
        start: "kchat-ref epoll --notices 0 --max-msg-rate 0 --history 0 --max-clients 20000 --threads 2 > /dev/null &",
        stop: "kill $! ; wait $! 2>/dev/null",
    },
    Server {
        label: "ref-uring",
        protocol: "kchat",
        port: 10106,
        start: "kchat-ref uring --notices 0 --max-msg-rate 0 --history 0 --max-clients 20000 > /dev/null &",
        stop: "kill $! ; wait $! 2>/dev/null",
    },
    Server {
        label: "ref-sendfile-t1",
        protocol: "kchat",
        port: 10106,
        start: "kchat-ref sendfile --notices 0 --max-msg-rate 0 --history 0 --max-clients 20000 --threads 1 > /dev/null &",
        stop: "kill $! ; wait $! 2>/dev/null",
    },
    Server {
        label: "ref-sendfile-t2",
        protocol: "kchat",
        port: 10106,
        start: "kchat-ref sendfile --notices 0 --max-msg-rate 0 --history 0 --max-clients 20000 --threads 2 > /dev/null &",
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

/// The servers profiled with `KCHAT_BENCH_PROFILE`, in `fanout-1000`.
const PROFILED: [&str; 2] = ["kchat", "ref-epoll-t1"];

/// Guest time for one run (one scenario against one server): the longest take about 18 s
/// on the machine of `docs/bench/`, and a machine several times slower must fit.
const PER_RUN: Duration = Duration::from_secs(60);
/// Guest time per server and round: starting it, waiting for its port, stopping it.
const PER_SERVER: Duration = Duration::from_secs(15);
/// Guest time to boot and reach the first run.
const STARTUP: Duration = Duration::from_secs(120);
/// Guest time for the idle-memory measurement of a full run (10,000 clients).
const IDLE_MEMORY: Duration = Duration::from_secs(180);
/// Guest time for each profiled run and its `perf report`s.
const PER_PROFILE: Duration = Duration::from_secs(300);

/// What one `make bench` runs: which scenarios against which servers, how many rounds.
struct Plan {
    scenarios: Vec<&'static Scenario>,
    servers: Vec<&'static Server>,
    rounds: u32,
    /// No scenario or server left out: the idle-memory measurement runs too.
    full: bool,
    /// `KCHAT_BENCH_PROFILE`: profile kchat and the epoll server in `fanout-1000`.
    profile: bool,
}

impl Plan {
    /// The plan from the environment: `KCHAT_BENCH_SCENARIOS` (names) and
    /// `KCHAT_BENCH_SERVERS` (label prefixes), comma-separated, empty for all;
    /// `KCHAT_BENCH_RUNS` rounds [3]; `KCHAT_BENCH_PROFILE`.
    fn from_env() -> Result<Self, String> {
        let only_scenarios = list_env("KCHAT_BENCH_SCENARIOS");
        let only_servers = list_env("KCHAT_BENCH_SERVERS");
        let scenarios = select(
            SCENARIOS,
            &only_scenarios,
            |sc, n| sc.name == n,
            |sc| sc.name,
        )
        .map_err(|e| format!("KCHAT_BENCH_SCENARIOS: {e}"))?;
        let servers = select(
            SERVERS,
            &only_servers,
            |sv, n| sv.label.starts_with(n),
            |sv| sv.label,
        )
        .map_err(|e| format!("KCHAT_BENCH_SERVERS: {e}"))?;
        let rounds = match std::env::var("KCHAT_BENCH_RUNS") {
            Err(_) => 3,
            Ok(v) => v
                .parse()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("KCHAT_BENCH_RUNS: not a positive number: {v:?}"))?,
        };
        Ok(Self {
            scenarios,
            servers,
            rounds,
            full: only_scenarios.is_empty() && only_servers.is_empty(),
            profile: std::env::var_os("KCHAT_BENCH_PROFILE").is_some(),
        })
    }

    /// Runs planned: one record each.
    fn runs(&self) -> usize {
        self.scenarios.len() * self.servers.len() * self.rounds as usize
    }

    /// The guest time this plan needs at most, with room for a machine several times slower
    /// than usual.
    fn time_needed(&self) -> Duration {
        let rounds = self.rounds as usize;
        let mut t = STARTUP + PER_RUN * self.runs() as u32;
        t += PER_SERVER * (self.servers.len() * rounds) as u32;
        if self.full {
            t += IDLE_MEMORY;
        }
        if self.profile {
            t += PER_PROFILE * PROFILED.len() as u32;
        }
        t
    }

    /// The guest's time limit, and where it comes from: `explicit` (`--timeout`), else
    /// `KCHAT_BENCH_TIMEOUT` (seconds), else what the plan needs.
    fn time_limit(&self, explicit: Option<Duration>) -> Result<(Duration, String), String> {
        if let Some(t) = explicit {
            return Ok((t, "--timeout".into()));
        }
        if let Ok(v) = std::env::var("KCHAT_BENCH_TIMEOUT") {
            let secs = v.parse().ok().filter(|&s| s > 0).ok_or_else(|| {
                format!("KCHAT_BENCH_TIMEOUT: not a positive number of seconds: {v:?}")
            })?;
            return Ok((Duration::from_secs(secs), "KCHAT_BENCH_TIMEOUT".into()));
        }
        let why = format!(
            "{} runs x {} s and the rest; KCHAT_BENCH_TIMEOUT=SECONDS sets it",
            self.runs(),
            PER_RUN.as_secs()
        );
        Ok((self.time_needed(), why))
    }

    /// The guest's script for the whole benchmark: `rounds` rounds of every scenario against
    /// every server, each run's record printed as soon as it is written.
    fn guest_script(&self) -> String {
        let mut s = String::from(
            r##"ulimit -n 1048576
echo "KCHAT-BENCH-ENV kernel $(uname -r)"
for f in /sys/devices/system/cpu/vulnerabilities/*; do
    echo "KCHAT-BENCH-ENV vulnerability ${f##*/}: $(cat $f)"
done
echo "KCHAT-BENCH-ENV cpus $(nproc), memory $(awk '/MemTotal/ {print $2}' /proc/meminfo) kB"
# Waits until something listens on port $1 (hex in /proc/net/tcp or tcp6, state 0A: kchat
# and the references listen on [::], IPv4 and IPv6).
listening() {
    p=$(printf '%04X' $1)
    for i in $(seq 200); do
        grep -qs ":$p 0*:0000 0A" /proc/net/tcp /proc/net/tcp6 && return 0
        sleep 0.05
    done
    echo "KCHAT-BENCH-ERROR nothing listens on port $1"
    return 1
}
J=/tmp/bench.jsonl
# bench_run SERVER SCENARIO PORT PROTOCOL ARGS...: one run, its record printed at once, so
# that the host has it even if the guest never finishes.
bench_run() {
    sv=$1 sc=$2 port=$3 proto=$4
    shift 4
    : > $J
    kchat-bench --quiet --addr 127.0.0.1:$port --protocol $proto --server $sv --scenario $sc \
        --idle-timeout 60 --duration-limit 600 --json $J "$@" > /dev/null 2>&1 ||
        echo "# bench: $sv $sc reported a problem"
    while read -r line; do echo "KCHAT-BENCH-JSON $line"; done < $J
}
"##,
        );
        // The memory measurement belongs to full runs only.
        if self.full {
            s.push_str("/bin/kchat-vmtest --idle-memory 10000\n");
        }
        // Rounds of every server in turn, rather than all of one server's runs in a row: the
        // machine's noise (other guests, the host) then spreads over all servers alike, and
        // the report takes each one's median.
        for round in 1..=self.rounds {
            for server in &self.servers {
                let _ = writeln!(s, "echo '# bench: round {round}: {}'", server.label);
                let _ = writeln!(s, "{}\nif listening {}; then", server.start, server.port);
                for sc in &self.scenarios {
                    let (label, port, protocol) = (server.label, server.port, server.protocol);
                    let _ = writeln!(
                        s,
                        "    bench_run {label} {} {port} {protocol} {}",
                        sc.name, sc.args
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
        if self.profile {
            s.push_str(&profile_script());
        }
        s
    }
}

/// The entries of `all` that `only` names (`matches`), in `all`'s order; all of them if
/// `only` is empty. A name that matches nothing is an error listing the valid ones.
fn select<T>(
    all: &'static [T],
    only: &[String],
    matches: impl Fn(&T, &str) -> bool,
    name: impl Fn(&T) -> &'static str,
) -> Result<Vec<&'static T>, String> {
    if let Some(bad) = only.iter().find(|n| !all.iter().any(|t| matches(t, n))) {
        let valid: Vec<&str> = all.iter().map(&name).collect();
        return Err(format!("{bad:?} matches none of {}", valid.join(", ")));
    }
    Ok(all
        .iter()
        .filter(|t| only.is_empty() || only.iter().any(|n| matches(t, n)))
        .collect())
}

/// A comma-separated list from the environment (empty if unset).
fn list_env(name: &str) -> Vec<String> {
    std::env::var(name)
        .map(|v| {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// The server labelled `label`.
fn server(label: &str) -> &'static Server {
    SERVERS
        .iter()
        .find(|s| s.label == label)
        .expect("a server of SERVERS")
}

/// With `KCHAT_BENCH_PROFILE=1`: where kchat's time goes in `fanout-1000`, from a system-wide
/// `perf record` in the guest (the bench kernel has PERF_EVENTS; the host's perf is copied in).
fn profile_script() -> String {
    let args = SCENARIOS
        .iter()
        .find(|s| s.name == "fanout-1000")
        .map_or("", |s| s.args);
    let mut s = String::new();
    for Server {
        label, start, stop, ..
    } in PROFILED.map(server)
    {
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

/// Extra guest binaries: Redis, and perf for `KCHAT_BENCH_PROFILE`.
fn guest_extras(plan: &Plan) -> Vec<PathBuf> {
    let mut extra = vec![PathBuf::from("/usr/bin/redis-server")];
    if plan.profile {
        // Debian's /usr/bin/perf is the versioned binary itself (linux-perf).
        extra.push(PathBuf::from("/usr/bin/perf"));
    }
    extra
}

/// Set by SIGINT or SIGTERM while the bench guest runs.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Makes the first SIGINT or SIGTERM stop the guest rather than this process, so that what
/// ran is still reported; a second one ends the process as usual. (QEMU, started later, gets
/// the default actions back at exec: Ctrl-C ends it too.)
fn catch_stop_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `sa` is a zeroed (valid) sigaction with its mask emptied; the handler only
        // stores to an atomic, which is async-signal-safe.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESETHAND | libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Where the bench's outputs go: the raw records and the environment (`out`, the VM
/// directory) and the published tables (`dir`, `target/bench`).
struct Outputs<'a> {
    out: &'a Path,
    dir: PathBuf,
    report_bin: PathBuf,
}

impl Outputs<'_> {
    /// The raw records, the environment and the completeness note (`incomplete.txt`, absent
    /// when complete) in `out`; the published JSON, table and chart in `dir`. Returns the
    /// table.
    fn write(
        &self,
        records: &[Value],
        env: &[String],
        note: Option<&str>,
    ) -> Result<String, String> {
        let raw = serde_json::to_string_pretty(records).map_err(|e| e.to_string())?;
        let notes = self.out.join("incomplete.txt");
        let saved = fs::write(self.out.join("raw.json"), raw)
            .and_then(|()| fs::write(self.out.join("env.txt"), env.join("\n")))
            .and_then(|()| match note {
                Some(n) => fs::write(&notes, n),
                None => fs::remove_file(&notes).or_else(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => Ok(()),
                    _ => Err(e),
                }),
            });
        saved.map_err(|e| format!("{}: {e}", self.out.display()))?;
        write_outputs(
            &self.dir,
            &publish(records.to_vec()),
            env,
            note,
            &self.report_bin,
        )
    }
}

/// What the host has from the bench guest so far, on disk after every record.
struct Collector<'a> {
    outputs: Outputs<'a>,
    planned: usize,
    records: Vec<Value>,
    /// The guest's environment lines, then the host's.
    guest_env: Vec<String>,
    host_env: Vec<String>,
    problems: Vec<String>,
    /// The guest's script ran to its end.
    finished: bool,
}

impl Collector<'_> {
    fn env(&self) -> Vec<String> {
        [&self.guest_env[..], &self.host_env[..]].concat()
    }

    /// Takes the guest's new output lines; rewrites the outputs if a record came.
    fn take(&mut self, lines: &[String]) {
        let before = self.records.len();
        for line in lines {
            if let Some(j) = line.strip_prefix("KCHAT-BENCH-JSON ") {
                match serde_json::from_str::<Value>(j) {
                    Ok(v) => self.records.push(v),
                    Err(e) => self.problems.push(format!("bad record: {e}")),
                }
            } else if let Some(e) = line.strip_prefix("KCHAT-BENCH-ENV ") {
                self.guest_env.push(e.to_string());
            } else if let Some(m) = line.strip_prefix("KCHAT-BENCH-MEM ") {
                self.guest_env.push(format!("memory per idle client: {m}"));
            } else if line.starts_with("KCHAT-BENCH-ERROR") || line.contains("reported a problem") {
                self.problems.push(line.clone());
            } else if line.starts_with("KCHAT-EXIT ") {
                self.finished = true;
            }
        }
        if self.records.len() > before {
            let note = format!(
                "**In progress**: {} of {} runs so far.",
                self.records.len(),
                self.planned
            );
            if let Err(e) = self.outputs.write(&self.records, &self.env(), Some(&note)) {
                eprintln!("kchat-vm: {e}");
            }
        }
    }

    /// What stopped the guest short of the plan, if anything did: `None` when every run is
    /// recorded and the guest finished on its own.
    fn shortfall(&self, status: Option<ExitStatus>, limit: Duration) -> Option<String> {
        let why = if STOP.load(Ordering::Relaxed) {
            "the benchmark was interrupted".to_string()
        } else if status.is_none() {
            format!(
                "the guest timed out after {} s (KCHAT_BENCH_TIMEOUT=SECONDS sets the limit)",
                limit.as_secs()
            )
        } else if !self.finished {
            format!(
                "the guest stopped early (qemu {})",
                status.map_or_else(String::new, |s| s.to_string())
            )
        } else if self.records.len() < self.planned {
            "some runs left no record (see the problems below the table)".to_string()
        } else {
            return None;
        };
        Some(format!(
            "**Incomplete**: {} of {} runs recorded; {why}. The numbers are those of the runs that completed.",
            self.records.len(),
            self.planned
        ))
    }
}

/// `make bench`: every scenario against every server in one guest, then the outputs.
pub fn run(o: &Options) -> i32 {
    let plan = match Plan::from_env() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("kchat-vm: {e}");
            return 2;
        }
    };
    let (limit, why) = match plan.time_limit(o.timeout) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("kchat-vm: {e}");
            return 2;
        }
    };
    eprintln!(
        "kchat-vm: {} runs planned; the guest may take {} min ({why})",
        plan.runs(),
        limit.as_secs().div_ceil(60)
    );
    let files = RunFiles::fresh(&o.out);
    let script = format!(
        "cat /dev/kmsg > /dev/ttyS2 &\nkp=$!\n(\n{}) > /dev/ttyS1 2>&1\necho KCHAT-EXIT 0 > /dev/ttyS1\nsleep 1\nkill $kp\n",
        plan.guest_script()
    );
    let initrd = build_image_with(o, script, guest_extras(&plan));
    let mut host_env = kernel_config_summary(&o.kernel);
    host_env.push(format!(
        "host: {} cores, QEMU TCG ({}), guest {} vCPUs, {} MiB",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::env::var("KCHAT_ACCEL").unwrap_or_else(|_| "tcg".into()),
        o.cpus,
        o.memory_mib
    ));
    let mut c = Collector {
        outputs: Outputs {
            out: &o.out,
            dir: PathBuf::from("target/bench"),
            report_bin: o.bin_dir.join("kchat-bench"),
        },
        planned: plan.runs(),
        records: Vec::new(),
        guest_env: Vec::new(),
        host_env,
        problems: Vec::new(),
        finished: false,
    };
    catch_stop_signals();
    let mut watch = |lines: &[String]| {
        c.take(lines);
        !STOP.load(Ordering::Relaxed)
    };
    let what = "bench guest (production-like kernel)";
    let Some((status, _, _)) = boot(o, &initrd, &files, 0, what, limit, &mut watch) else {
        return 1;
    };
    let shortfall = c.shortfall(status, limit);
    let mut problems = std::mem::take(&mut c.problems);
    if c.records.is_empty() {
        problems.push("no run completed: nothing to report".into());
    } else {
        match c.outputs.write(&c.records, &c.env(), shortfall.as_deref()) {
            Ok(table) => println!("\n{table}"),
            Err(e) => problems.push(e),
        }
    }
    problems.extend(shortfall);
    for l in check_logs(&files.kmsg, &files.console) {
        if !l.ok && l.name.starts_with("kernel log") {
            problems.push(format!("{}: {}", l.name, l.detail));
        }
    }
    println!(
        "results: {} (raw runs: {})",
        c.outputs.dir.join("latest.json").display(),
        o.out.join("raw.json").display()
    );
    for p in &problems {
        println!("problem: {p}");
    }
    i32::from(!problems.is_empty())
}

/// `publish`: the tables and the chart again from the last bench's raw records (after a change
/// to the report, say), without booting anything; still marked incomplete if that bench was.
pub fn republish(o: &Options) -> i32 {
    let records: Vec<Value> = match fs::read_to_string(o.out.join("raw.json"))
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kchat-vm: {}/raw.json: {e}", o.out.display());
            return 1;
        }
    };
    let read = |name: &str| fs::read_to_string(o.out.join(name)).ok();
    let env: Vec<String> = read("env.txt")
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    let note = read("incomplete.txt");
    let dir = PathBuf::from("target/bench");
    let published = publish(records);
    match write_outputs(
        &dir,
        &published,
        &env,
        note.as_deref(),
        &o.bin_dir.join("kchat-bench"),
    ) {
        Ok(table) => {
            println!("{table}");
            0
        }
        Err(e) => {
            eprintln!("kchat-vm: {e}");
            1
        }
    }
}

/// Turns the guest's records into the published set: every run of kchat, `ref-uring` and
/// Redis; every run of the epoll server's better thread count (by median throughput) as
/// `ref-epoll`, and of the sendfile server's as `ref-sendfile`; and every run of the best of
/// `ref-epoll`, `ref-uring` and `ref-sendfile` again as `reference`. The report takes
/// medians over the runs.
fn publish(records: Vec<Value>) -> Vec<Value> {
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
        let epoll = faster(of("ref-epoll-t1"), of("ref-epoll-t2"));
        out.extend(relabel(&epoll, "ref-epoll"));
        let sendfile = faster(of("ref-sendfile-t1"), of("ref-sendfile-t2"));
        out.extend(relabel(&sendfile, "ref-sendfile"));
        let reference = faster(faster(epoll, of("ref-uring")), sendfile);
        out.extend(relabel(&reference, "reference"));
    }
    out
}

/// Of two sets of runs, the one with the higher median throughput (`a` on a tie).
fn faster<'a>(a: Vec<&'a Value>, b: Vec<&'a Value>) -> Vec<&'a Value> {
    if median_rate(&b) > median_rate(&a) {
        b
    } else {
        a
    }
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

/// Writes latest.json, the markdown table (with `note`, if any, under its title) and the
/// chart; returns the markdown.
fn write_outputs(
    dir: &Path,
    records: &[Value],
    env: &[String],
    note: Option<&str>,
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
    if let Some(note) = note {
        // Under the title line.
        let at = table.find('\n').map_or(table.len(), |i| i + 1);
        table.insert_str(at, &format!("\n> {}\n", note.trim()));
    }
    table.push_str("\nGuest:\n\n");
    for line in env {
        let _ = writeln!(table, "- {line}");
    }
    fs::write(&md, &table).map_err(|e| e.to_string())?;
    Ok(table)
}

/// A summary of the bench kernel's configuration (the options that shape the numbers).
fn kernel_config_summary(kernel: &Path) -> Vec<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A plan of `rounds` rounds of the scenarios and servers named (all if empty).
    fn plan(scenarios: &[&str], servers: &[&str], rounds: u32) -> Plan {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Plan {
            scenarios: select(
                SCENARIOS,
                &own(scenarios),
                |sc, n| sc.name == n,
                |sc| sc.name,
            )
            .unwrap(),
            servers: select(
                SERVERS,
                &own(servers),
                |sv, n| sv.label.starts_with(n),
                |sv| sv.label,
            )
            .unwrap(),
            rounds,
            full: scenarios.is_empty() && servers.is_empty(),
            profile: false,
        }
    }

    /// Checks the selection by name: scenarios exactly, servers by prefix, in table order;
    /// a name matching nothing is refused with the valid names.
    #[test]
    fn selection() {
        let p = plan(&["rooms", "small"], &["ref-epoll"], 2);
        let names: Vec<&str> = p.scenarios.iter().map(|s| s.name).collect();
        assert_eq!(names, ["small", "rooms"]);
        let labels: Vec<&str> = p.servers.iter().map(|s| s.label).collect();
        assert_eq!(labels, ["ref-epoll-t1", "ref-epoll-t2"]);
        assert_eq!(p.runs(), 8);
        let e = select(
            SCENARIOS,
            &["room".into()],
            |sc, n| sc.name == n,
            |sc| sc.name,
        );
        assert!(e.is_err_and(|e| e.contains("small, fanout-1000")));
    }

    /// Checks the published set: each reference server's better thread count under its own
    /// name, the others as they are, and the fastest reference server again as `reference`.
    #[test]
    fn publishes_the_faster_variants() {
        let rec = |server: &str, rate: f64| {
            let mut r = json!({"scenario": "small", "ok": true});
            r["server"] = json!(server);
            r["msgs_per_s"] = json!(rate);
            r
        };
        let out = publish(vec![
            rec("ref-epoll-t1", 5.0),
            rec("ref-epoll-t2", 6.0),
            rec("ref-uring", 4.0),
            rec("ref-sendfile-t1", 8.0),
            rec("ref-sendfile-t2", 7.0),
        ]);
        let variants = |label: &str| -> Vec<Value> {
            out.iter()
                .filter(|r| r["server"] == label)
                .map(|r| r["server_variant"].clone())
                .collect()
        };
        assert_eq!(variants("ref-epoll"), [json!("ref-epoll-t2")]);
        assert_eq!(variants("ref-sendfile"), [json!("ref-sendfile-t1")]);
        assert_eq!(variants("ref-uring"), [Value::Null]);
        assert_eq!(variants("reference"), [json!("ref-sendfile-t1")]);
    }

    /// Checks the guest script of a full plan: one `bench_run` per run, each record printed
    /// by `bench_run` right after its run, the rooms scenario against every server, and no
    /// history replay on any kchat server.
    #[test]
    fn guest_script() {
        let p = plan(&[], &[], 3);
        let s = p.guest_script();
        assert_eq!(s.matches("\n    bench_run ").count(), p.runs());
        assert_eq!(p.runs(), 126);
        let run_fn = &s[s.find("bench_run() {").unwrap()..];
        assert!(run_fn[..run_fn.find("\n}\n").unwrap()].contains("KCHAT-BENCH-JSON"));
        assert!(
            s.contains("bench_run redis rooms 6379 resp --clients 1000 --senders 1000 --rooms 100")
        );
        assert!(s.contains("insmod /lib/modules/kchat.ko notices=0 max_msg_rate=0 history=0"));
        assert_eq!(s.matches("kchat-ref ").count(), 15);
        assert_eq!(s.matches("--history 0").count(), 15);
        assert!(s.contains("--idle-memory"));
        assert!(!plan(&["small"], &[], 1)
            .guest_script()
            .contains("--idle-memory"));
    }

    /// Checks the time limit: per run, per server and round, boot and the memory measurement.
    #[test]
    fn time_limit() {
        let full = plan(&[], &[], 3);
        assert_eq!(full.time_needed().as_secs(), 120 + 126 * 60 + 21 * 15 + 180);
        let one = plan(&["small"], &["kchat"], 1);
        assert_eq!(one.time_needed().as_secs(), 120 + 60 + 15);
        let explicit = Some(Duration::from_secs(5));
        assert_eq!(one.time_limit(explicit).unwrap().0, Duration::from_secs(5));
    }

    /// Feeds a collector the guest's lines as they come: after the first record the raw
    /// records, the environment, the in-progress note and latest.json are on disk (the
    /// report itself fails here: there is no report binary); a guest that stops early leaves
    /// the plan incomplete, one that ran everything does not.
    #[test]
    fn collects_as_it_goes() {
        let tmp = std::env::temp_dir().join(format!("kchat-vm-bench-{}", std::process::id()));
        let (out, dir) = (tmp.join("vm"), tmp.join("bench"));
        fs::create_dir_all(&out).unwrap();
        let mut c = Collector {
            outputs: Outputs {
                out: &out,
                dir: dir.clone(),
                report_bin: tmp.join("no-such-report"),
            },
            planned: 2,
            records: Vec::new(),
            guest_env: Vec::new(),
            host_env: vec!["host: test".into()],
            problems: Vec::new(),
            finished: false,
        };
        let record = r#"KCHAT-BENCH-JSON {"server":"kchat","scenario":"small","msgs_per_s":5}"#;
        c.take(&[
            "KCHAT-BENCH-ENV kernel 6.x".into(),
            "# bench: round 1: kchat".into(),
        ]);
        assert!(
            !out.join("raw.json").exists(),
            "nothing to write before a record"
        );
        c.take(&[record.into()]);
        let raw: Vec<Value> =
            serde_json::from_str(&fs::read_to_string(out.join("raw.json")).unwrap()).unwrap();
        assert_eq!(raw.len(), 1);
        assert!(dir.join("latest.json").exists());
        assert_eq!(
            fs::read_to_string(out.join("env.txt")).unwrap(),
            "kernel 6.x\nhost: test"
        );
        let note = fs::read_to_string(out.join("incomplete.txt")).unwrap();
        assert!(note.contains("1 of 2 runs"), "{note}");
        let limit = Duration::from_secs(9);
        let timed_out = c.shortfall(None, limit).unwrap();
        assert!(timed_out.contains("1 of 2 runs recorded; the guest timed out after 9 s"));
        c.take(&[record.into(), "KCHAT-EXIT 0".into()]);
        assert!(c.finished && c.problems.is_empty());
        let exited = Command::new("true").status().ok();
        assert_eq!(c.shortfall(exited, limit), None);
        let _ = fs::remove_dir_all(&tmp);
    }
}
