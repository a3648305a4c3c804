//! `make bench`: kchat, the reference servers and Redis, side by side in one guest of the
//! production-like kernel, then a table, a chart and the raw figures.
//!
//! The guest runs every scenario against every server of its protocol family, one server at
//! a time, with the same semantics: notices off, no per-client rate limit, no history replay.
//! The native scenarios go to kchat's own port, the reference servers and Redis; the IRC
//! scenarios (`irc-*`) to kchat's IRC port (`kchat-irc`) and to Debian's ngircd and InspIRCd,
//! copied from the host into the guest with their libraries and configured by
//! `tests/config/irc/` (a server whose package the host lacks is recorded as not run, with the
//! reason). A server that does not come up still has its runs made, and recorded as failed.
//! `kchat-bench` writes one JSON record per run, which the guest prints (`KCHAT-BENCH-JSON
//! ...`) as soon as the run is over. The host collects them as they come and rewrites its
//! outputs after each one (`target/vm/bench/raw.json`, `target/bench/latest.{json,md,svg}`
//! and `latest-irc.svg`), so a guest that times out, dies or is interrupted (Ctrl-C, SIGTERM)
//! still leaves a report of what ran, marked incomplete. The guest's time limit is sized from
//! the work asked (scenarios x servers x rounds) unless `--timeout` or `KCHAT_BENCH_TIMEOUT`
//! (seconds) sets it.

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::{Command, ExitStatus},
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use serde_json::{json, Value};

use super::{boot, check_logs, guest_binaries, initramfs, Options, RunFiles};

/// One scenario: a name and the load generator's arguments (for every protocol of its
/// family).
struct Scenario {
    name: &'static str,
    args: &'static str,
    /// An IRC scenario, for the IRC servers (the others are for the rest).
    irc: bool,
    /// A cluster scenario: for `kchat` (one node) and `kchat-cluster3` alone.
    cluster: bool,
}

/// The scenarios, in order. Message counts are sized for a 2-vCPU TCG guest: each run takes
/// seconds (kchat) to tens of seconds (Redis).
const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "small",
        args: "--clients 10 --senders 10 --payload 1024 --messages 4000",
        irc: false,
        cluster: false,
    },
    Scenario {
        name: "fanout-1000",
        args: "--clients 1000 --senders 1000 --payload 64 --messages 6",
        irc: false,
        cluster: false,
    },
    // The same with naive readers: each read(2) asks for 64 bytes, less than one frame, so a
    // server's advantage cannot come from one client's read pattern.
    Scenario {
        name: "fanout-1000-reads-64",
        args: "--clients 1000 --senders 1000 --payload 64 --messages 6 --read-size 64",
        irc: false,
        cluster: false,
    },
    Scenario {
        name: "idle-10000",
        args: "--clients 10100 --senders 100 --payload 64 --messages 4",
        irc: false,
        cluster: false,
    },
    Scenario {
        name: "slow-consumer",
        args: "--clients 999 --stalled 1 --senders 100 --payload 64 --messages 40",
        irc: false,
        cluster: false,
    },
    Scenario {
        name: "slow-consumer-baseline",
        args: "--clients 999 --senders 100 --payload 64 --messages 40",
        irc: false,
        cluster: false,
    },
    // 100 rooms of 10, everyone sending: each message reaches the 9 others of its room (for
    // Redis, the 10 subscribers of its channel), 1.35 M deliveries in all.
    Scenario {
        name: "rooms",
        args: "--clients 1000 --senders 1000 --rooms 100 --payload 64 --messages 150",
        irc: false,
        cluster: false,
    },
    // IRC: `small` and `fanout-1000` again, against kchat's IRC port and the IRC servers. An
    // IRC payload is a line of text of at most 400 bytes (not 1 KiB). ngircd and InspIRCd
    // set no TCP_NODELAY, so a line that follows another unacknowledged one waits for the
    // client's delayed ACK (about 40 ms on loopback): `irc-small` sends 1000 messages per
    // sender, not 4000, to stay within a minute against them.
    // A cluster: 6 senders on one node, 54 receivers spread over three (kchat-cluster3: a
    // namespace per node, kchat-bridge, two nats-servers), against the same clients on one
    // node (kchat). Up to 32 messages in flight per sender, as a bridge batches.
    Scenario {
        name: "cluster-60",
        args: "--clients 60 --senders 6 --payload 64 --messages 1000 --window 32",
        irc: false,
        cluster: true,
    },
    Scenario {
        name: "irc-small",
        args: "--clients 10 --senders 10 --payload 400 --messages 1000",
        irc: true,
        cluster: false,
    },
    Scenario {
        name: "irc-fanout-1000",
        args: "--clients 1000 --senders 1000 --payload 64 --messages 6",
        irc: true,
        cluster: false,
    },
];

/// Servers as the guest runs them: the label `kchat-bench` records, and a shell snippet that
/// starts it (port 10106, 6379 for Redis, 6667 for IRC) and one that stops it.
struct Server {
    label: &'static str,
    protocol: &'static str,
    port: u16,
    start: &'static str,
    stop: &'static str,
    /// `kchat-bench` arguments this server needs besides the scenario's.
    args: &'static str,
    /// The Debian package it comes from, copied from the host; `None` for what this
    /// repository builds, and Redis (always in the image).
    package: Option<Package>,
}

impl Server {
    /// True if this server runs `sc` (IRC scenarios for IRC servers, the others for the rest;
    /// cluster scenarios for `kchat` and `kchat-cluster3` alone, which runs nothing else).
    fn serves(&self, sc: &Scenario) -> bool {
        if sc.irc != (self.protocol == "irc") {
            return false;
        }
        match (sc.cluster, self.label) {
            (true, "kchat" | CLUSTER_LABEL) => true,
            (false, CLUSTER_LABEL) | (true, _) => false,
            (false, _) => true,
        }
    }

    /// kchat itself, loaded as a module.
    fn is_module(&self) -> bool {
        self.start.starts_with("insmod ")
    }
}

/// A server from a Debian package installed on the host: what of it the guest needs.
struct Package {
    /// The package.
    name: &'static str,
    /// Its binary, installed in the guest's /bin with the libraries it loads.
    binary: &'static str,
    /// Modules it loads at run time: a directory and the file-name prefix of those needed,
    /// installed at the same path, with their libraries.
    modules: Option<(&'static str, &'static str)>,
}

impl Package {
    /// The host's files of the package that the guest needs; `Err` says what is missing.
    fn host_files(&self) -> Result<(PathBuf, Vec<PathBuf>), String> {
        let missing = |what: &str| {
            format!(
                "{} is not installed on the host (no {what}; tests/scripts/setup.sh installs \
                 Debian's package)",
                self.name
            )
        };
        let binary = PathBuf::from(self.binary);
        if !binary.is_file() {
            return Err(missing(self.binary));
        }
        let mut modules = Vec::new();
        if let Some((dir, prefix)) = self.modules {
            let entries = fs::read_dir(dir).map_err(|_| missing(dir))?;
            for e in entries.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                if name.starts_with(prefix) && name.ends_with(".so") {
                    modules.push(e.path());
                }
            }
            if modules.is_empty() {
                return Err(missing(&format!("{dir}/{prefix}*.so")));
            }
            modules.sort();
        }
        Ok((binary, modules))
    }

    /// The package's version on the host, from dpkg.
    fn version(&self) -> Option<String> {
        let out = Command::new("dpkg-query")
            .args(["-W", "-f=${Version}", self.name])
            .output()
            .ok()?;
        let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (out.status.success() && !v.is_empty()).then_some(v)
    }
}

/// The IRC servers' configurations (`tests/config/irc/`) and the script that runs them, and
/// where they go in the guest.
const IRC_CONFIG_DIR: &str = "config/irc";
const IRC_CONFIG_FILES: [&str; 3] = ["ngircd.conf", "inspircd.conf", "inspircd.motd"];
const IRC_PEER_SCRIPT: &str = "scripts/irc-peer.sh";
const GUEST_IRC_CONFIG: &str = "/etc/kchat-irc";

/// Three kchat nodes in one guest (see `kchat-cluster3` below).
const CLUSTER_LABEL: &str = "kchat-cluster3";

const SERVERS: &[Server] = &[
    Server {
        label: "kchat",
        protocol: "kchat",
        port: 10106,
        start: "insmod /lib/modules/kchat.ko notices=0 max_msg_rate=0 history=0 max_clients=20000 trace=0",
        stop: "rmmod kchat",
        args: "",
        package: None,
    },
    // Three nodes: kchat in the initial namespace (node-a, where the senders are) and in two
    // more, each linked by a kchat-bridge to a cluster of two nats-servers; the receivers
    // are spread over the three (`--netns`). At the stop, the bridges' CPU time (user +
    // system, in ticks of 10 ms since they started) is printed for the report.
    Server {
        label: CLUSTER_LABEL,
        protocol: "kchat",
        port: 10106,
        start: r#"insmod /lib/modules/kchat.ko notices=0 max_msg_rate=0 history=0 max_clients=20000 trace=0 link_secret=4242 && echo 4242 > /tmp/ls
nats-server -a 127.0.0.1 -p 4222 --cluster nats://127.0.0.1:6222 --routes nats://127.0.0.1:6223 --cluster_name kchat > /dev/null 2>&1 & N0=$!
nats-server -a 127.0.0.1 -p 4223 --cluster nats://127.0.0.1:6223 --routes nats://127.0.0.1:6222 --cluster_name kchat > /dev/null 2>&1 & N1=$!
unshare -n sh -c 'ifconfig lo up; exec sleep 2147483647' & SB=$!
unshare -n sh -c 'ifconfig lo up; exec sleep 2147483647' & SC=$!
sleep 0.5
kchat-bridge --kchat 127.0.0.1:10106 --link-secret-file /tmp/ls --node node-a --nats 127.0.0.1:4222,127.0.0.1:4223 2> /tmp/bridge-a.log & BA=$!
kchat-bridge --kchat 127.0.0.1:10106 --kchat-netns /proc/$SB/ns/net --link-secret-file /tmp/ls --node node-b --nats 127.0.0.1:4223,127.0.0.1:4222 2> /tmp/bridge-b.log & BB=$!
kchat-bridge --kchat 127.0.0.1:10106 --kchat-netns /proc/$SC/ns/net --link-secret-file /tmp/ls --node node-c --nats 127.0.0.1:4222,127.0.0.1:4223 2> /tmp/bridge-c.log & BC=$!
sleep 5
CT0=$(for p in $BA $BB $BC $N0 $N1; do awk '{printf "%d ", $14 + $15}' /proc/$p/stat; done)"#,
        stop: r##"echo "# bench: cpu ticks of bridge a, b, c, nats 0, 1 at the start: $CT0; at the stop: $(for p in $BA $BB $BC $N0 $N1; do awk '{printf "%d ", $14 + $15}' /proc/$p/stat; done)"
kill $BA $BB $BC $SB $SC $N0 $N1; wait $BA $BB $BC $SB $SC $N0 $N1 2>/dev/null; rmmod kchat
for n in a b c; do grep 'exiting on signal' /tmp/bridge-$n.log | cut -c1-240 | sed 's/^/# bench: /'; done"##,
        args: "--netns /proc/self/ns/net,/proc/$SB/ns/net,/proc/$SC/ns/net",
        package: None,
    },
    // The same module with its plain-copy send path (`zerocopy=0`): what the page-backed
    // logs and MSG_SPLICE_PAGES change, side by side.
    Server {
        label: "kchat-copy",
        protocol: "kchat",
        port: 10106,
        start: "insmod /lib/modules/kchat.ko notices=0 max_msg_rate=0 history=0 max_clients=20000 trace=0 zerocopy=0",
        stop: "rmmod kchat",
        args: "",
        package: None,
    },
    Server {
        label: "ref-epoll-t1",
        protocol: "kchat",
        port: 10106,
        start: "kchat-ref epoll --notices 0 --max-msg-rate 0 --history 0 --max-clients 20000 --threads 1 > /dev/null &",
        stop: "kill $! ; wait $! 2>/dev/null",
        args: "",
        package: None,
    },
    Server {
        label: "ref-epoll-t2",
        protocol: "kchat",
        port: 10106,
        start: "kchat-ref epoll --notices 0 --max-msg-rate 0 --history 0 --max-clients 20000 --threads 2 > /dev/null &",
        stop: "kill $! ; wait $! 2>/dev/null",
        args: "",
        package: None,
    },
    Server {
        label: "ref-uring",
        protocol: "kchat",
        port: 10106,
        start: "kchat-ref uring --notices 0 --max-msg-rate 0 --history 0 --max-clients 20000 > /dev/null &",
        stop: "kill $! ; wait $! 2>/dev/null",
        args: "",
        package: None,
    },
    Server {
        label: "ref-sendfile-t1",
        protocol: "kchat",
        port: 10106,
        start: "kchat-ref sendfile --notices 0 --max-msg-rate 0 --history 0 --max-clients 20000 --threads 1 > /dev/null &",
        stop: "kill $! ; wait $! 2>/dev/null",
        args: "",
        package: None,
    },
    Server {
        label: "ref-sendfile-t2",
        protocol: "kchat",
        port: 10106,
        start: "kchat-ref sendfile --notices 0 --max-msg-rate 0 --history 0 --max-clients 20000 --threads 2 > /dev/null &",
        stop: "kill $! ; wait $! 2>/dev/null",
        args: "",
        package: None,
    },
    Server {
        label: "redis",
        protocol: "resp",
        port: 6379,
        start: "redis-server --port 6379 --save '' --appendonly no --maxclients 20000 \
                --protected-mode no --daemonize no --loglevel warning > /dev/null &",
        stop: "kill $! ; wait $! 2>/dev/null",
        args: "",
        package: None,
    },
    // IRC. kchat's IRC port is 6667 unless its irc_port parameter says otherwise. IRC
    // clients are in flight until welcomed: kchat welcomes at once; ngircd has a listen
    // backlog of 10 (kchat-bench's IRC default, 8, fits it); InspIRCd welcomes on its
    // once-a-second tick, so all of a scenario's clients may wait at once.
    Server {
        label: "kchat-irc",
        protocol: "irc",
        port: 6667,
        start: "insmod /lib/modules/kchat.ko notices=0 max_msg_rate=0 history=0 max_clients=20000 trace=0",
        stop: "rmmod kchat",
        args: "--connect-batch 256",
        package: None,
    },
    Server {
        label: "ngircd",
        protocol: "irc",
        port: 6667,
        start: "irc-peer.sh start ngircd 6667",
        stop: "irc-peer.sh stop ngircd 6667",
        args: "",
        package: Some(Package {
            name: "ngircd",
            binary: "/usr/sbin/ngircd",
            modules: None,
        }),
    },
    Server {
        label: "inspircd",
        protocol: "irc",
        port: 6667,
        start: "irc-peer.sh start inspircd 6667",
        stop: "irc-peer.sh stop inspircd 6667",
        args: "--connect-batch 1000",
        package: Some(Package {
            name: "inspircd",
            binary: "/usr/sbin/inspircd",
            // Only the core modules: the configuration loads no other.
            modules: Some(("/usr/lib/inspircd/modules", "core_")),
        }),
    },
];

/// The servers profiled with `KCHAT_BENCH_PROFILE`, in `fanout-1000`: kchat with and
/// without its zero-copy path, and the user-space references.
const PROFILED: [&str; 4] = ["kchat", "kchat-copy", "ref-sendfile-t1", "ref-epoll-t1"];

/// Guest time for one run (one scenario against one server): the longest take about 18 s
/// on the machine of `docs/bench/`, and a machine several times slower must fit.
const PER_RUN: Duration = Duration::from_secs(60);
/// Guest time for one IRC run. On a 2-core host that was also building (2 December 2026),
/// `irc-small` took 30-45 s against ngircd and InspIRCd (their replies wait for delayed
/// ACKs), and `irc-fanout-1000` 135 s against InspIRCd and 295 s against ngircd (84 s of it
/// registering the 1,000 clients, 8 at a time), the generator reading each line as its own
/// segment.
const PER_IRC_RUN: Duration = Duration::from_secs(300);
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
    /// The servers that run (each the scenarios it serves).
    servers: Vec<&'static Server>,
    /// Servers asked for that cannot run here (their package is not on the host), and why:
    /// each of their scenarios is recorded once as not run.
    missing: Vec<(&'static Server, String)>,
    rounds: u32,
    /// No scenario or server left out: the idle-memory measurement runs too.
    full: bool,
    /// `KCHAT_BENCH_PROFILE`: profile kchat and the epoll server in `fanout-1000`.
    profile: bool,
}

impl Plan {
    /// The plan from the environment: `KCHAT_BENCH_SCENARIOS` (names) and
    /// `KCHAT_BENCH_SERVERS` (labels, or label prefixes), comma-separated, empty for all;
    /// `KCHAT_BENCH_RUNS` rounds [3]; `KCHAT_BENCH_PROFILE`. Servers whose package the host
    /// lacks are set aside as missing.
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
        let selected = select(SERVERS, &only_servers, server_matches, |sv| sv.label)
            .map_err(|e| format!("KCHAT_BENCH_SERVERS: {e}"))?;
        let (mut servers, mut missing) = (Vec::new(), Vec::new());
        for sv in selected {
            match sv.package.as_ref().map(Package::host_files) {
                Some(Err(why)) => missing.push((sv, why)),
                _ => servers.push(sv),
            }
        }
        let rounds = match std::env::var("KCHAT_BENCH_RUNS") {
            Err(_) => 3,
            Ok(v) => v
                .parse()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("KCHAT_BENCH_RUNS: not a positive number: {v:?}"))?,
        };
        let plan = Self {
            scenarios,
            servers,
            missing,
            rounds,
            full: only_scenarios.is_empty() && only_servers.is_empty(),
            profile: std::env::var_os("KCHAT_BENCH_PROFILE").is_some(),
        };
        if plan.runs() == 0 {
            return Err(
                "KCHAT_BENCH_SCENARIOS, KCHAT_BENCH_SERVERS: no server selected runs a scenario \
                 selected (the irc-* scenarios are for kchat-irc, ngircd and inspircd, the \
                 others for the rest)"
                    .into(),
            );
        }
        Ok(plan)
    }

    /// The scenarios `server` runs.
    fn scenarios_of(&self, server: &Server) -> Vec<&'static Scenario> {
        let all = self.scenarios.iter().copied();
        all.filter(|sc| server.serves(sc)).collect()
    }

    /// The servers that run at least one scenario.
    fn busy_servers(&self) -> impl Iterator<Item = &'static Server> + '_ {
        let servers = self.servers.iter().copied();
        servers.filter(|sv| !self.scenarios_of(sv).is_empty())
    }

    /// Records planned: one per run, and one per scenario of a missing server.
    fn runs(&self) -> usize {
        let per_round: usize = self
            .servers
            .iter()
            .map(|sv| self.scenarios_of(sv).len())
            .sum();
        let not_run: usize = self
            .missing
            .iter()
            .map(|(sv, _)| self.scenarios_of(sv).len())
            .sum();
        per_round * self.rounds as usize + not_run
    }

    /// The guest time this plan needs at most, with room for a machine several times slower
    /// than usual.
    fn time_needed(&self) -> Duration {
        let rounds = self.rounds;
        let mut t = STARTUP;
        for sv in self.busy_servers() {
            t += PER_SERVER * rounds;
            for sc in self.scenarios_of(sv) {
                t += if sc.irc { PER_IRC_RUN } else { PER_RUN } * rounds;
            }
        }
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
            "{} runs x {} s ({} s for IRC) and the rest; KCHAT_BENCH_TIMEOUT=SECONDS sets it",
            self.runs(),
            PER_RUN.as_secs(),
            PER_IRC_RUN.as_secs()
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
# The IRC servers' configurations, for irc-peer.sh.
export KCHAT_IRC_CONFIG=__IRC_CONFIG__
# bench_run SERVER SCENARIO PORT PROTOCOL ARGS...: one run, its record printed at once, so
# that the host has it even if the guest never finishes. A server that does not listen
# still has its runs: they fail at once, and their records say why.
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
        s = s.replace("__IRC_CONFIG__", GUEST_IRC_CONFIG);
        // The memory measurement belongs to full runs only.
        if self.full {
            s.push_str("/bin/kchat-vmtest --idle-memory 10000\n");
        }
        // Servers that cannot run here: each scenario's record says so, once.
        for (server, why) in &self.missing {
            let note = format!("# bench: not run: {}: {why}", server.label);
            let _ = writeln!(s, "echo {}", sh_quote(&note));
            for sc in self.scenarios_of(server) {
                let (label, port, protocol) = (server.label, server.port, server.protocol);
                let _ = writeln!(
                    s,
                    "bench_run {label} {} {port} {protocol} --not-run {} {}",
                    sc.name,
                    sh_quote(why),
                    sc.args
                );
            }
        }
        // Rounds of every server in turn, rather than all of one server's runs in a row: the
        // machine's noise (other guests, the host) then spreads over all servers alike, and
        // the report takes each one's median.
        for round in 1..=self.rounds {
            for server in self.busy_servers() {
                let _ = writeln!(s, "echo '# bench: round {round}: {}'", server.label);
                let _ = writeln!(s, "{}\nlistening {}", server.start, server.port);
                for sc in self.scenarios_of(server) {
                    let (label, port, protocol) = (server.label, server.port, server.protocol);
                    let _ = writeln!(
                        s,
                        "bench_run {label} {} {port} {protocol} {}{}{}",
                        sc.name,
                        server.args,
                        if server.args.is_empty() { "" } else { " " },
                        sc.args
                    );
                    if server.is_module() {
                        // kchat's own counters after each scenario (cumulative since load).
                        let _ = writeln!(
                            s,
                            "echo '# after {}:' $(tr '\\n' ' ' < /sys/kernel/debug/kchat/stats)",
                            sc.name
                        );
                    }
                }
                let _ = writeln!(s, "{}\nsleep 1", server.stop);
            }
        }
        if self.profile {
            s.push_str(&profile_script());
        }
        s
    }
}

/// True if `name` selects `server`: its label, or a prefix of it that is no server's whole
/// label (`ref-epoll` selects both thread counts; `kchat` selects kchat, not `kchat-irc`).
fn server_matches(server: &Server, name: &str) -> bool {
    server.label == name
        || (server.label.starts_with(name) && !SERVERS.iter().any(|sv| sv.label == name))
}

/// `s` quoted for the guest's shell.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
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

/// Extra guest binaries and files: Redis, perf for `KCHAT_BENCH_PROFILE`, and the IRC servers
/// that run, with their modules, configurations and `irc-peer.sh`.
fn guest_extras(plan: &Plan) -> (Vec<PathBuf>, Vec<initramfs::File>) {
    let mut extra = vec![PathBuf::from("/usr/bin/redis-server")];
    if plan.profile {
        // Debian's /usr/bin/perf is the versioned binary itself (linux-perf).
        extra.push(PathBuf::from("/usr/bin/perf"));
    }
    let mut files = Vec::new();
    let packaged = plan.busy_servers().filter_map(|sv| sv.package.as_ref());
    for package in packaged {
        // Checked by the plan already.
        let Ok((binary, modules)) = package.host_files() else {
            continue;
        };
        extra.push(binary);
        files.extend(modules.into_iter().map(|m| initramfs::File {
            to: m.clone(),
            from: m,
            libraries: true,
        }));
        if !files.iter().any(|f| f.to.ends_with("irc-peer.sh")) {
            let tests = Path::new(env!("CARGO_MANIFEST_DIR"));
            files.push(initramfs::File {
                from: tests.join(IRC_PEER_SCRIPT),
                to: PathBuf::from("/bin/irc-peer.sh"),
                libraries: false,
            });
            for name in IRC_CONFIG_FILES {
                files.push(initramfs::File {
                    from: tests.join(IRC_CONFIG_DIR).join(name),
                    to: Path::new(GUEST_IRC_CONFIG).join(name),
                    libraries: false,
                });
            }
        }
    }
    (extra, files)
}

/// Builds the bench image: the usual binaries, `extra` ones and `files`.
fn build_bench_image(
    o: &Options,
    run_script: String,
    extra: Vec<PathBuf>,
    files: &[initramfs::File],
) -> Option<PathBuf> {
    let mut binaries = guest_binaries(o);
    binaries.extend(extra);
    let image = initramfs::Image {
        module: &o.module,
        binaries,
        run_script,
    };
    let cpio = o.out.join("initramfs.cpio");
    match initramfs::build_with_files(&image, files, &o.out.join("initramfs"), &cpio) {
        Ok(()) => Some(cpio),
        Err(e) => {
            eprintln!("kchat-vm: building the initramfs: {e}");
            None
        }
    }
}

/// The host's versions of the packaged servers that run, for the report's environment.
fn package_versions(plan: &Plan) -> Vec<String> {
    plan.busy_servers()
        .filter_map(|sv| sv.package.as_ref())
        .map(|p| {
            let v = p.version().unwrap_or_else(|| "(version unknown)".into());
            format!(
                "{} {v} (Debian package on the host, copied into the guest)",
                p.name
            )
        })
        .collect()
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
    for (server, why) in &plan.missing {
        eprintln!("kchat-vm: {} recorded as not run: {why}", server.label);
    }
    let files = RunFiles::fresh(&o.out);
    let script = format!(
        "cat /dev/kmsg > /dev/ttyS2 &\nkp=$!\n(\n{}) > /dev/ttyS1 2>&1\necho KCHAT-EXIT 0 > /dev/ttyS1\nsleep 1\nkill $kp\n",
        plan.guest_script()
    );
    let (extra, image_files) = guest_extras(&plan);
    let Some(initrd) = build_bench_image(o, script, extra, &image_files) else {
        return 1;
    };
    let mut host_env = kernel_config_summary(&o.kernel);
    host_env.extend(package_versions(&plan));
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
        for direct in [
            "kchat",
            "kchat-copy",
            "kchat-cluster3",
            "ref-uring",
            "redis",
            "kchat-irc",
            "ngircd",
            "inspircd",
        ] {
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
/// charts (latest.svg, and latest-irc.svg of the IRC scenarios; a chart with no scenario is
/// not written); returns the markdown.
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
        .arg("--irc-svg")
        .arg(dir.join("latest-irc.svg"))
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
            servers: select(SERVERS, &own(servers), server_matches, |sv| sv.label).unwrap(),
            missing: Vec::new(),
            rounds,
            full: scenarios.is_empty() && servers.is_empty(),
            profile: false,
        }
    }

    /// Checks the selection by name: scenarios exactly, servers by label or else by prefix,
    /// in table order; a name matching nothing is refused with the valid names. A server
    /// runs only the scenarios of its family.
    #[test]
    fn selection() {
        let p = plan(&["rooms", "small"], &["ref-epoll"], 2);
        let names: Vec<&str> = p.scenarios.iter().map(|s| s.name).collect();
        assert_eq!(names, ["small", "rooms"]);
        let labels: Vec<&str> = p.servers.iter().map(|s| s.label).collect();
        assert_eq!(labels, ["ref-epoll-t1", "ref-epoll-t2"]);
        assert_eq!(p.runs(), 8);
        let p = plan(&["small", "irc-small"], &["kchat", "ngircd"], 1);
        let labels: Vec<&str> = p.servers.iter().map(|s| s.label).collect();
        assert_eq!(labels, ["kchat", "ngircd"]);
        assert_eq!(p.runs(), 2);
        let p = plan(&["small"], &["kchat", "kchat-irc"], 3);
        let busy: Vec<&str> = p.busy_servers().map(|s| s.label).collect();
        assert_eq!(busy, ["kchat"], "no IRC scenario for kchat-irc");
        assert_eq!(p.runs(), 3);
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
        assert_eq!(s.matches("\nbench_run ").count(), p.runs());
        // 7 scenarios x 8 servers, 2 IRC scenarios x 3 IRC servers, the cluster scenario x 2
        // servers (kchat, kchat-cluster3), 3 rounds.
        assert_eq!(p.runs(), 192);
        let run_fn = &s[s.find("bench_run() {").unwrap()..];
        assert!(run_fn[..run_fn.find("\n}\n").unwrap()].contains("KCHAT-BENCH-JSON"));
        assert!(
            s.contains("bench_run redis rooms 6379 resp --clients 1000 --senders 1000 --rooms 100")
        );
        assert!(s.contains("insmod /lib/modules/kchat.ko notices=0 max_msg_rate=0 history=0"));
        assert_eq!(
            s.matches("insmod /lib/modules/kchat.ko notices=0 max_msg_rate=0 history=0 ")
                .count(),
            12,
            "kchat, kchat-copy, kchat-irc and kchat-cluster3, 3 rounds each"
        );
        assert!(s.contains("bench_run kchat-cluster3 cluster-60 10106 kchat --netns "));
        assert!(s.contains("bench_run kchat cluster-60 10106 kchat --clients 60"));
        assert!(!s.contains("bench_run kchat-copy cluster-60 "));
        assert!(!s.contains("bench_run kchat-cluster3 small "));
        assert_eq!(s.matches("kchat-ref ").count(), 15);
        assert!(!s.contains("bench_run kchat-irc small "));
        assert!(!s.contains("bench_run ngircd fanout-1000 "));
        assert_eq!(s.matches("--history 0").count(), 15);
        assert!(s.contains("--idle-memory"));
        assert!(!plan(&["small"], &[], 1)
            .guest_script()
            .contains("--idle-memory"));
    }

    /// Checks the IRC part of a script: the IRC servers on port 6667, each with its own
    /// arguments (InspIRCd's connect batch) before the scenario's, irc-peer.sh given its
    /// configuration, a missing server's scenarios recorded once as not run (its reason
    /// quoted for the shell), and kchat's counters after kchat-irc's runs too.
    #[test]
    fn irc_script() {
        let mut p = plan(
            &["irc-small", "irc-fanout-1000"],
            &["ngircd", "kchat-irc"],
            2,
        );
        p.missing
            .push((server("inspircd"), "inspircd's package is missing".into()));
        let s = p.guest_script();
        assert_eq!(p.runs(), 2 * 2 * 2 + 2);
        assert_eq!(s.matches("\nbench_run ").count(), p.runs());
        assert!(s.contains("export KCHAT_IRC_CONFIG=/etc/kchat-irc\n"));
        assert!(s.contains("irc-peer.sh start ngircd 6667\nlistening 6667\n"));
        assert!(s.contains(
            "\nbench_run ngircd irc-fanout-1000 6667 irc --clients 1000 --senders 1000 --payload 64"
        ));
        assert!(s.contains(
            "\nbench_run kchat-irc irc-small 6667 irc --connect-batch 256 --clients 10 --senders 10"
        ));
        assert_eq!(
            s.matches("bench_run inspircd irc-small 6667 irc --not-run 'inspircd'\\''s package is missing' --clients 10").count(),
            1
        );
        assert!(
            s.contains("echo '# bench: not run: inspircd: inspircd'\\''s package is missing'\n")
        );
        assert_eq!(s.matches("echo '# after irc-small:'").count(), 2);
        assert!(!s.contains("--idle-memory"));
        let full = plan(&[], &["inspircd"], 1);
        assert!(full
            .guest_script()
            .contains("bench_run inspircd irc-small 6667 irc --connect-batch 1000 --clients 10"));
    }

    /// Checks the time limit: per run, per server and round, boot and the memory measurement.
    #[test]
    fn time_limit() {
        let full = plan(&[], &[], 3);
        assert_eq!(
            full.time_needed().as_secs(),
            120 + 174 * 60 + 18 * 300 + 36 * 15 + 180
        );
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
