//! `kchat-vm`: boots a kchat guest under QEMU and judges what happened in it.
//!
//! ```text
//! kchat-vm test   --kernel BZIMAGE --module KO --bin-dir DIR --out DIR [--timeout S] [-- ARGS]
//! kchat-vm stress ...same, runs the hostile-client suite
//! kchat-vm run    --kernel BZIMAGE --module KO --bin-dir DIR --out DIR
//! kchat-vm bench  ...same, runs the benchmark
//! kchat-vm publish --bin-dir DIR --out DIR   (the last bench's tables again, from DIR's raw.json)
//! kchat-vm irc-clients --bin-dir DIR --out DIR [--chat-port P] [--irc-port P]
//!                  (the IRC clients' host step against a running kchat, e.g. `make run`'s)
//! ```
//!
//! `test` runs the guest suite (`kchat-vmtest`) in one boot, streams its output, then scans the
//! whole kernel log for splats and KUnit failures, and prints `N passed, N failed`.

mod bench;
mod cluster_run;
mod initramfs;
mod irc_clients;
mod logcheck;
mod qemu;

use std::{
    fs,
    io::{self, Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    process::{exit, Child, ExitStatus},
    thread,
    time::{Duration, Instant},
};

use qemu::{Guest, Serial};

/// Command-line options shared by the modes.
#[derive(Clone)]
struct Options {
    mode: String,
    kernel: PathBuf,
    module: PathBuf,
    bin_dir: PathBuf,
    out: PathBuf,
    /// `--timeout`; the default depends on the mode.
    timeout: Option<Duration>,
    cpus: u32,
    memory_mib: u32,
    /// Arguments passed through to the guest runner.
    guest_args: Vec<String>,
    /// Output of `cargo test` on the host, whose results join the summary.
    host_test_log: Option<PathBuf>,
    /// `irc-clients`: the host ports of a running kchat's native and IRC listeners.
    chat_port: u16,
    irc_port: u16,
}

/// The guest time limit of `test` and `stress` without `--timeout`.
const SUITE_TIMEOUT: Duration = Duration::from_secs(1800);

fn usage() -> ! {
    eprintln!(
        "usage: kchat-vm test|stress|run --kernel BZIMAGE --module KO --bin-dir DIR --out DIR \
         [--timeout SECONDS] [--cpus N] [--memory MIB] [--host-test-log FILE] [-- GUEST-ARGS]\n       \
         kchat-vm irc-clients --bin-dir DIR --out DIR [--chat-port 10106] [--irc-port 6667]"
    );
    exit(2)
}

fn parse_args() -> Options {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| usage());
    let mut o = Options {
        mode,
        kernel: PathBuf::new(),
        module: PathBuf::new(),
        bin_dir: PathBuf::new(),
        out: PathBuf::from("target/vm"),
        timeout: None,
        cpus: 2,
        memory_mib: 2048,
        guest_args: Vec::new(),
        host_test_log: None,
        chat_port: GUEST_CHAT_PORT,
        irc_port: GUEST_IRC_PORT,
    };
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--kernel" => o.kernel = val().into(),
            "--module" => o.module = val().into(),
            "--bin-dir" => o.bin_dir = val().into(),
            "--out" => o.out = val().into(),
            "--timeout" => {
                o.timeout = Some(Duration::from_secs(
                    val().parse().unwrap_or_else(|_| usage()),
                ))
            }
            "--cpus" => o.cpus = val().parse().unwrap_or_else(|_| usage()),
            "--memory" => o.memory_mib = val().parse().unwrap_or_else(|_| usage()),
            "--host-test-log" => o.host_test_log = Some(val().into()),
            "--chat-port" => o.chat_port = val().parse().unwrap_or_else(|_| usage()),
            "--irc-port" => o.irc_port = val().parse().unwrap_or_else(|_| usage()),
            "--" => {
                o.guest_args.extend(args.by_ref());
            }
            _ => usage(),
        }
    }
    let needs_guest = !matches!(o.mode.as_str(), "publish" | "irc-clients");
    if needs_guest && (o.kernel.as_os_str().is_empty() || o.module.as_os_str().is_empty()) {
        usage();
    }
    o
}

fn main() {
    let o = parse_args();
    if let Err(e) = fs::create_dir_all(&o.out) {
        eprintln!("kchat-vm: cannot create {}: {e}", o.out.display());
        exit(1);
    }
    let code = match o.mode.as_str() {
        "test" | "stress" => run_suite(&o),
        "run" => run_interactive(&o),
        "bench" => bench::run(&o),
        "publish" => bench::republish(&o),
        "irc-clients" => run_irc_clients(&o),
        _ => usage(),
    };
    exit(code);
}

/// Guest binaries every image carries.
fn guest_binaries(o: &Options) -> Vec<PathBuf> {
    // The load generator and the reference servers serve the scenario checks of `make test`
    // as well as `make bench`.
    let mut bins: Vec<PathBuf> = [
        "kchat-vmtest",
        "kchat",
        "kchat-bench",
        "kchat-ref",
        "kchat-bridge",
    ]
    .iter()
    .map(|b| o.bin_dir.join(b))
    .collect();
    // The NATS server of the cluster cases and of `make run CLUSTER=N` (bookworm's package,
    // installed by setup.sh); without it those cases report themselves skipped.
    let nats = PathBuf::from(NATS_SERVER);
    if nats.exists() {
        bins.push(nats);
    }
    bins
}

/// Where Debian's `nats-server` package installs the server.
const NATS_SERVER: &str = "/usr/sbin/nats-server";

fn build_image(o: &Options, run_script: String) -> PathBuf {
    build_image_with(o, run_script, Vec::new())
}

/// Builds the image with `extra` binaries besides the usual ones.
fn build_image_with(o: &Options, run_script: String, extra: Vec<PathBuf>) -> PathBuf {
    let mut binaries = guest_binaries(o);
    binaries.extend(extra);
    let image = initramfs::Image {
        module: &o.module,
        binaries,
        run_script,
    };
    let cpio = o.out.join("initramfs.cpio");
    if let Err(e) = initramfs::build(&image, &o.out.join("initramfs"), &cpio) {
        eprintln!("kchat-vm: building the initramfs: {e}");
        exit(1);
    }
    cpio
}

/// kchat's ports in the guest: the native protocol (`port`) and IRC (`irc_port`), defaults.
const GUEST_CHAT_PORT: u16 = 10106;
const GUEST_IRC_PORT: u16 = 6667;

/// The names of the nodes of `make run CLUSTER=N`: `node-a` is the guest's initial namespace.
const NODE_NAMES: [&str; 5] = ["node-a", "node-b", "node-c", "node-d", "node-e"];

/// What `make run CLUSTER=N` (N from 2 to 5) adds to the guest's script: a network namespace
/// per node beyond the first (each has its own kchat), two clustered `nats-server`s, a
/// `kchat-bridge` per node, and a forwarder per port of each namespace's kchat, listening in
/// the initial namespace on 10106 + 10 i and 6667 + 10 i, where QEMU forwards the host's.
fn cluster_script(nodes: usize, secret: u64) -> String {
    let mut s = format!(
        r#"echo {secret} > /tmp/link-secret
for i in 0 1; do
    nats-server -a 127.0.0.1 -p $((4222 + i)) --cluster nats://127.0.0.1:$((6222 + i)) \
        --routes nats://127.0.0.1:$((6223 - i)) --cluster_name kchat >/tmp/nats-$i.log 2>&1 &
done
kchat-bridge --kchat 127.0.0.1:10106 --link-secret-file /tmp/link-secret --node node-a \
    --nats 127.0.0.1:4222,127.0.0.1:4223 >/tmp/bridge-node-a.log 2>&1 &
"#
    );
    for (i, node) in NODE_NAMES.iter().enumerate().take(nodes).skip(1) {
        let (chat, irc) = (
            GUEST_CHAT_PORT + 10 * i as u16,
            GUEST_IRC_PORT + 10 * i as u16,
        );
        s.push_str(&format!(
            r#"unshare -n sh -c 'ifconfig lo up; exec sleep 2147483647' &
ns=/proc/$!/ns/net
sleep 0.2
kchat-vmtest --forward 0.0.0.0:{chat} $ns 127.0.0.1:{GUEST_CHAT_PORT} &
kchat-vmtest --forward 0.0.0.0:{irc} $ns 127.0.0.1:{GUEST_IRC_PORT} &
kchat-bridge --kchat 127.0.0.1:{GUEST_CHAT_PORT} --kchat-netns $ns \
    --link-secret-file /tmp/link-secret --node {node} \
    --nats 127.0.0.1:{nats},127.0.0.1:4222 >/tmp/bridge-{node}.log 2>&1 &
"#,
            nats = 4222 + (i % 2),
        ));
    }
    s
}

/// The lines of `make run`'s greeting that list the nodes of a cluster and their ports.
fn cluster_note(nodes: usize) -> String {
    if nodes < 2 {
        return String::new();
    }
    let mut n =
        format!("\n  A cluster of {nodes} nodes (kchat-bridge, nats-server; logs in /tmp):\n");
    for (i, node) in NODE_NAMES.iter().enumerate().take(nodes) {
        n.push_str(&format!(
            "    {node}: native 127.0.0.1:{}, IRC 127.0.0.1:{}\n",
            GUEST_CHAT_PORT + 10 * i as u16,
            GUEST_IRC_PORT + 10 * i as u16
        ));
    }
    n
}

/// `make run`: a console on the terminal, kchat loaded, ports 10106 and 6667 forwarded to the
/// same ports on the host's 127.0.0.1 (the IRC one unless the host's 6667 is taken). With
/// `KCHAT_CLUSTER=N` (`make run CLUSTER=N`), N nodes joined through NATS, node i's ports
/// forwarded to 10106 + 10 i and 6667 + 10 i on the host.
fn run_interactive(o: &Options) -> i32 {
    let mut params = std::env::var("KCHAT_PARAMS").unwrap_or_default();
    let nodes: usize = std::env::var("KCHAT_CLUSTER")
        .ok()
        .filter(|v| !v.is_empty())
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    if !(1..=NODE_NAMES.len()).contains(&nodes) {
        eprintln!("kchat-vm: CLUSTER is 1 to {} nodes", NODE_NAMES.len());
        return 2;
    }
    let cluster = if nodes > 1 {
        let secret = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64 | 1);
        params.push_str(&format!(" link_secret={secret}"));
        cluster_script(nodes, secret)
    } else {
        String::new()
    };
    let mut forwards = vec![(GUEST_CHAT_PORT, GUEST_CHAT_PORT)];
    for i in 1..nodes as u16 {
        forwards.push((GUEST_CHAT_PORT + 10 * i, GUEST_CHAT_PORT + 10 * i));
        forwards.push((GUEST_IRC_PORT + 10 * i, GUEST_IRC_PORT + 10 * i));
    }

    // A host port already in use would keep QEMU from starting at all.
    let irc_free = std::net::TcpListener::bind(("127.0.0.1", GUEST_IRC_PORT)).is_ok();
    let irc_where = if irc_free {
        forwards.push((GUEST_IRC_PORT, GUEST_IRC_PORT));
        "IRC at 127.0.0.1:6667 (irssi -c 127.0.0.1 -p 6667 -n alice)".to_string()
    } else {
        eprintln!(
            "kchat-vm: 127.0.0.1:6667 is in use on the host: the guest's IRC port is not forwarded"
        );
        "IRC not forwarded (the host's 6667 was taken)".to_string()
    };
    let cluster_note = cluster_note(nodes);
    let script = format!(
        r#"insmod /lib/modules/kchat.ko {params} || echo "insmod failed"
{cluster}cat <<'EOF'

  kchat is loaded in this guest; the host reaches it at 127.0.0.1:10106,
  {irc_where}.{cluster_note}
  Kernel log: dmesg | grep kchat      Stats: cat /sys/kernel/debug/kchat/stats
  Quit: exit or poweroff (or Ctrl-a x)

EOF
setsid cttyhack sh -l
"#
    );
    let initrd = build_image(o, script);
    let guest = Guest {
        kernel: &o.kernel,
        initrd: &initrd,
        cpus: o.cpus,
        memory_mib: o.memory_mib,
        append: String::new(),
        serial: Serial::Interactive,
        forwards,
    };
    eprintln!(
        "kchat-vm: booting (TCG; about 20 s); the guest's port 10106 is 127.0.0.1:10106 here{}",
        if irc_free {
            ", its IRC port 6667 is 127.0.0.1:6667"
        } else {
            ""
        }
    );
    match guest.command().status() {
        Ok(s) if s.success() => 0,
        Ok(s) => {
            eprintln!("kchat-vm: qemu exited with {s}");
            1
        }
        Err(e) => {
            eprintln!("kchat-vm: cannot start qemu-system-x86_64: {e}");
            1
        }
    }
}

/// Where a batch run's serial ports go: the console, the guest's output, its kernel log.
struct RunFiles {
    console: PathBuf,
    output: PathBuf,
    kmsg: PathBuf,
}

impl RunFiles {
    /// The files under `out`, emptied of any earlier run.
    fn fresh(out: &Path) -> Self {
        let files = Self {
            console: out.join("console.log"),
            output: out.join("output.log"),
            kmsg: out.join("kmsg.log"),
        };
        for f in [&files.console, &files.output, &files.kmsg] {
            let _ = fs::remove_file(f);
        }
        files
    }

    /// The test guest: `o`'s kernel, CPUs and memory, booting `initrd`, its serial ports
    /// written to these files, `forwards` (host port, guest port) forwarded.
    fn guest<'a>(&self, o: &'a Options, initrd: &'a Path, forwards: Vec<(u16, u16)>) -> Guest<'a> {
        Guest {
            kernel: &o.kernel,
            initrd,
            cpus: o.cpus,
            memory_mib: o.memory_mib,
            append: String::new(),
            serial: Serial::Files {
                console: self.console.clone(),
                output: self.output.clone(),
                kmsg: self.kmsg.clone(),
            },
            forwards,
        }
    }
}

/// Host ports forwarded to the guest's kchat ports (0: none).
#[derive(Clone, Copy)]
struct HostPorts {
    /// To the guest's 10106 (native protocol).
    chat: u16,
    /// To the guest's 6667 (IRC).
    irc: u16,
}

/// Boots `initrd` with its serial ports in `files` and, unless `host_port` is 0, that host
/// port forwarded to the guest's 10106; follows the guest's output, running the host steps it
/// asks for and showing `watch` the new lines, until QEMU exits, `timeout` passes or `watch`
/// says stop. `None` if QEMU could not be started.
fn boot(
    o: &Options,
    initrd: &Path,
    files: &RunFiles,
    host_port: u16,
    what: &str,
    timeout: Duration,
    watch: Watch<'_>,
) -> Option<(Option<ExitStatus>, Vec<String>, HostSteps)> {
    let ports = HostPorts {
        chat: host_port,
        irc: 0,
    };
    boot_with(o, initrd, files, ports, what, timeout, watch)
}

/// [`boot`] with a forward of each nonzero port of `ports`.
fn boot_with(
    o: &Options,
    initrd: &Path,
    files: &RunFiles,
    ports: HostPorts,
    what: &str,
    timeout: Duration,
    watch: Watch<'_>,
) -> Option<(Option<ExitStatus>, Vec<String>, HostSteps)> {
    let mut forwards = Vec::new();
    if ports.chat != 0 {
        forwards.push((ports.chat, GUEST_CHAT_PORT));
    }
    if ports.irc != 0 {
        forwards.push((ports.irc, GUEST_IRC_PORT));
    }
    let guest = files.guest(o, initrd, forwards);
    eprintln!(
        "kchat-vm: booting the {what}; output in {}",
        o.out.display()
    );
    let child = match guest.command().spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kchat-vm: cannot start qemu-system-x86_64: {e}");
            return None;
        }
    };
    let steps = HostSteps {
        kchat: o.bin_dir.join("kchat"),
        port: ports.chat,
        irc_port: ports.irc,
        work: o.out.clone(),
        running: Vec::new(),
    };
    Some(follow(child, &files.output, timeout, steps, watch))
}

/// One result line for the summary.
struct Outcome {
    ok: bool,
    /// Could not run here (reported as skipped, never as passed).
    skipped: bool,
    name: String,
    detail: String,
}

/// `make test` / `make stress`: the guest suite in one boot, then the log checks.
fn run_suite(o: &Options) -> i32 {
    let files = RunFiles::fresh(&o.out);
    let suite = if o.mode == "stress" { "stress" } else { "test" };
    // Each argument single-quoted for the guest's shell.
    let guest_args: Vec<String> = o
        .guest_args
        .iter()
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect();
    let guest_args = guest_args.join(" ");
    let script = format!(
        r#"cat /dev/kmsg > /dev/ttyS2 &
kp=$!
/bin/kchat-vmtest --suite {suite} --module /lib/modules/kchat.ko {guest_args} > /dev/ttyS1 2>&1
echo "KCHAT-EXIT $?" > /dev/ttyS1
echo "kchat-vm: end of guest run" > /dev/kmsg
sleep 1
kill $kp
wait $kp
"#
    );
    let initrd = build_image(o, script);
    // Two distinct free ports: both are bound while the second is picked.
    let ports = match (qemu::free_listener(), qemu::free_listener()) {
        (Ok(a), Ok(b)) => HostPorts {
            chat: a.local_addr().map(|a| a.port()).unwrap_or(0),
            irc: b.local_addr().map(|a| a.port()).unwrap_or(0),
        },
        _ => HostPorts { chat: 0, irc: 0 },
    };
    let started = Instant::now();
    let timeout = o.timeout.unwrap_or(SUITE_TIMEOUT);
    let what = format!("{suite} guest");
    let Some((status, guest_lines, steps)) =
        boot_with(o, &initrd, &files, ports, &what, timeout, &mut |_| true)
    else {
        return 1;
    };
    let elapsed = started.elapsed();

    let mut outcomes = Vec::new();
    let mut exit_seen = false;
    for line in &guest_lines {
        if let Some(rest) = line.strip_prefix("not ok ") {
            outcomes.push(outcome(false, rest));
        } else if let Some(rest) = line.strip_prefix("ok ") {
            outcomes.push(outcome(true, rest));
        } else if let Some(code) = line.strip_prefix("KCHAT-EXIT ") {
            // 0: all passed, 1: some failed (counted above); anything else: the runner itself
            // failed.
            exit_seen = matches!(code.trim(), "0" | "1");
        }
    }
    outcomes.push(Outcome {
        ok: exit_seen,
        skipped: false,
        name: "guest run completed".into(),
        detail: match status {
            Some(s) if exit_seen => format!("in {:.0} s, qemu {s}", elapsed.as_secs_f64()),
            Some(s) => format!(
                "guest died before the suite ended (qemu {s}); see {}",
                files.console.display()
            ),
            None => format!(
                "timed out after {} s; see {}",
                timeout.as_secs(),
                files.console.display()
            ),
        },
    });
    outcomes.extend(steps.finish());
    outcomes.extend(check_logs(&files.kmsg, &files.console));
    // `make run CLUSTER=3`, booted once more (about 30 s): with the whole suite, or on demand.
    let whole = o.guest_args.is_empty() || std::env::var_os("KCHAT_CLUSTER_CHECK").is_some();
    if o.mode == "test" && whole {
        outcomes.push(cluster_run::check(o));
    }
    if let Some(log) = &o.host_test_log {
        outcomes.extend(host_tests(log));
    }

    println!("\n== kchat {suite} summary ==");
    for r in &outcomes {
        let mark = match (r.skipped, r.ok) {
            (true, _) => "skip",
            (false, true) => "ok  ",
            (false, false) => "FAIL",
        };
        if r.detail.is_empty() {
            println!("{mark} {}", r.name);
        } else {
            println!("{mark} {} ({})", r.name, r.detail);
        }
    }
    let skipped = outcomes.iter().filter(|r| r.skipped).count();
    let passed = outcomes.iter().filter(|r| r.ok && !r.skipped).count();
    let failed = outcomes.len() - passed - skipped;
    println!("{passed} passed, {failed} failed, {skipped} skipped");
    i32::from(failed != 0)
}

fn outcome(ok: bool, rest: &str) -> Outcome {
    // "N name" or "N name # detail"; "ok N name # SKIP reason" did not run (TAP's form).
    let rest = rest.split_once(' ').map_or(rest, |(_, r)| r);
    let (name, detail) = rest.split_once(" # ").unwrap_or((rest, ""));
    let skip = detail.strip_prefix("SKIP ").filter(|_| ok);
    Outcome {
        ok,
        skipped: skip.is_some(),
        name: format!("guest: {name}"),
        detail: skip.unwrap_or(detail).to_string(),
    }
}

/// The whole-log checks: no kernel splat anywhere, and KUnit ran with no failure.
fn check_logs(kmsg: &Path, console: &Path) -> Vec<Outcome> {
    let kmsg_text = fs::read(kmsg)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let console_text = fs::read(console)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let k = logcheck::scan(&kmsg_text);
    let c = logcheck::scan(&console_text);
    let mut splats: Vec<String> = k
        .splats
        .iter()
        .map(|f| format!("kmsg.log:{}: {}", f.line, f.text))
        .collect();
    // The console has only warnings and worse; it matters when the guest died before the
    // kmsg stream could carry the report.
    splats.extend(
        c.splats
            .iter()
            .map(|f| format!("console.log:{}: {}", f.line, f.text)),
    );
    let mut out = vec![Outcome {
        ok: splats.is_empty() && !kmsg_text.is_empty(),
        skipped: false,
        name: "kernel log: no BUG, WARNING, Oops, lockdep, KASAN or kmemleak report".into(),
        detail: if kmsg_text.is_empty() {
            "no kernel log was captured".into()
        } else {
            splats
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        },
    }];
    let mut suites = k.ktap_suites_ok.clone();
    suites.sort();
    suites.dedup();
    let kchat_suites: Vec<&String> = suites.iter().filter(|s| s.starts_with("kchat_")).collect();
    out.push(Outcome {
        ok: k.ktap_failures.is_empty() && !kchat_suites.is_empty(),
        skipped: false,
        name: "KUnit: no `not ok` in the log, kchat suites ran".into(),
        detail: if k.ktap_failures.is_empty() {
            format!(
                "suites ok: {}",
                kchat_suites
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            k.ktap_failures
                .iter()
                .take(5)
                .map(|f| f.text.clone())
                .collect::<Vec<_>>()
                .join("; ")
        },
    });
    out
}

/// The results of `cargo test` on the host (unit tests of the tools and the harness, the
/// client's terminal tests), one outcome per test, from its output.
fn host_tests(log: &Path) -> Vec<Outcome> {
    let text = fs::read_to_string(log).unwrap_or_default();
    // A test that cannot run here says so on a line of its own (or after libtest's
    // "test NAME ... " when tests run one at a time): "SKIPPED: REASON [NAME]".
    let mut skips = std::collections::HashMap::new();
    for line in text.lines() {
        let Some((_, marker)) = line.split_once("SKIPPED: ") else {
            continue;
        };
        if let Some((reason, name)) = marker
            .trim_end()
            .strip_suffix(']')
            .and_then(|m| m.rsplit_once(" ["))
        {
            skips.insert(name.to_string(), reason.to_string());
        }
    }
    let mut out = Vec::new();
    for line in text.lines() {
        // "test path::name ... ok" / "... FAILED" / "... ignored"
        let Some(rest) = line.strip_prefix("test ") else {
            continue;
        };
        let Some((name, result)) = rest.rsplit_once(" ... ") else {
            continue;
        };
        let (ok, skipped) = match result.trim() {
            "ok" => (true, skips.contains_key(name)),
            "FAILED" => (false, false),
            "ignored" => (true, true),
            r if r.starts_with("SKIPPED: ") => (true, true),
            _ => continue,
        };
        out.push(Outcome {
            ok,
            skipped,
            name: format!("host: {name}"),
            detail: skips.get(name).cloned().unwrap_or_default(),
        });
    }
    if out.is_empty() || !text.contains("test result:") {
        out.push(Outcome {
            ok: false,
            skipped: false,
            name: "host: cargo test".into(),
            detail: format!("no test results in {}", log.display()),
        });
    }
    if text.contains("error: test failed") || text.contains("error: could not compile") {
        out.push(Outcome {
            ok: false,
            skipped: false,
            name: "host: cargo test finished".into(),
            detail: format!("see {}", log.display()),
        });
    }
    out
}

/// Steps the guest asks the host to run (`KCHAT-HOST-STEP NAME` on its output), each in a
/// thread while the guest waits for its effect.
struct HostSteps {
    /// The host build of the `kchat` client.
    kchat: PathBuf,
    /// Host port forwarded to the guest's 10106.
    port: u16,
    /// Host port forwarded to the guest's IRC port 6667 (0: none).
    irc_port: u16,
    /// The run's output directory: steps keep their logs under it.
    work: PathBuf,
    running: Vec<thread::JoinHandle<Vec<Outcome>>>,
}

impl HostSteps {
    fn start(&mut self, name: &str) {
        let (kchat, port, irc_port) = (self.kchat.clone(), self.port, self.irc_port);
        let work = self.work.join("irc-clients");
        let handle = match name {
            "chat" => thread::spawn(move || vec![host_chat(&kchat, port)]),
            "irc-clients" => thread::spawn(move || {
                // The guest's observer, a native client without a nick, is in #lobby.
                host_irc_clients(&kchat, port, irc_port, work, true)
            }),
            other => {
                let other = other.to_string();
                thread::spawn(move || {
                    vec![Outcome {
                        ok: false,
                        skipped: false,
                        name: format!("host step {other}"),
                        detail: "unknown step".into(),
                    }]
                })
            }
        };
        self.running.push(handle);
    }

    fn finish(self) -> Vec<Outcome> {
        self.running
            .into_iter()
            .flat_map(|h| {
                h.join().unwrap_or_else(|_| {
                    vec![Outcome {
                        ok: false,
                        skipped: false,
                        name: "host step".into(),
                        detail: "panicked".into(),
                    }]
                })
            })
            .collect()
    }
}

/// The `irc-clients` step (see irc_clients.rs): ii, irssi and WeeChat on the host chat with
/// the native `kchat` client through the forwarded ports, within 100 s.
fn host_irc_clients(
    kchat: &Path,
    port: u16,
    irc_port: u16,
    work: PathBuf,
    expect_kchat_id: bool,
) -> Vec<Outcome> {
    let fail = |detail: String| {
        vec![Outcome {
            ok: false,
            skipped: false,
            name: "host: IRC clients chat with the native kchat client".into(),
            detail,
        }]
    };
    if port == 0 || irc_port == 0 {
        return fail("no host port is forwarded to the guest's 10106 and 6667".into());
    }
    if let Err(e) = fs::create_dir_all(&work) {
        return fail(format!("cannot create {}: {e}", work.display()));
    }
    let native = match irc_clients::KchatClient::spawn(
        kchat,
        &format!("127.0.0.1:{port}"),
        &work.with_extension("native-stderr.log"),
    ) {
        Ok(n) => n,
        Err(e) => return fail(e),
    };
    irc_clients::run(irc_clients::Setup {
        native: Box::new(native),
        irc_port,
        work,
        expect_kchat_id,
        budget: Duration::from_secs(100),
    })
}

/// `kchat-vm irc-clients`: the step against a kchat already running (`make run` forwards
/// 10106 and 6667), prints the outcomes.
fn run_irc_clients(o: &Options) -> i32 {
    let outcomes = host_irc_clients(
        &o.bin_dir.join("kchat"),
        o.chat_port,
        o.irc_port,
        o.out.join("irc-clients"),
        false,
    );
    let mut failed = 0;
    for r in &outcomes {
        let mark = match (r.skipped, r.ok) {
            (true, _) => "skip",
            (false, true) => "ok  ",
            (false, false) => {
                failed += 1;
                "FAIL"
            }
        };
        println!("{mark} {} ({})", r.name, r.detail);
    }
    i32::from(failed != 0)
}

/// The `chat` step: the `kchat` client, scripted, on the host, through the forwarded port.
/// It sets a nick and says hello; the guest's client answers; the step passes when the host
/// client printed the answer, then ends its input so it leaves.
fn host_chat(kchat: &Path, port: u16) -> Outcome {
    let name = "host: kchat client on the host chats through the forwarded port".to_string();
    let fail = |detail: String| Outcome {
        ok: false,
        skipped: false,
        name: name.clone(),
        detail,
    };
    let mut child = match std::process::Command::new(kchat)
        .args([
            "--nick",
            "hostuser",
            "--linger",
            "300",
            &format!("127.0.0.1:{port}"),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return fail(format!("cannot run {}: {e}", kchat.display())),
    };
    let mut stdin = child.stdin.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        use std::io::BufRead;
        for line in io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    if let Err(e) = writeln!(stdin, "hello from the host") {
        return fail(format!("writing to the client: {e}"));
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut seen = Vec::new();
    let answered = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.ends_with(": hello from the guest") => break true,
            Ok(line) => seen.push(line),
            Err(_) => break false,
        }
    };
    drop(stdin);
    let status = child.wait();
    if !answered {
        return fail(format!(
            "no answer from the guest; the client printed {seen:?}"
        ));
    }
    match status {
        Ok(s) if s.success() => Outcome {
            ok: true,
            skipped: false,
            name,
            detail: "hello from the host, hello from the guest".into(),
        },
        Ok(s) => fail(format!("the client exited with {s}")),
        Err(e) => fail(format!("waiting for the client: {e}")),
    }
}

/// Sees the guest's new output lines as they come; returns false to stop the guest.
type Watch<'a> = &'a mut dyn FnMut(&[String]) -> bool;

/// Streams the guest's test output to stdout until QEMU exits, the time runs out or `watch`
/// says stop, starting the host steps the guest asks for. Returns QEMU's exit status (None on
/// timeout or stop), every output line, and the steps.
fn follow(
    mut child: Child,
    output: &Path,
    timeout: Duration,
    mut steps: HostSteps,
    watch: Watch<'_>,
) -> (Option<ExitStatus>, Vec<String>, HostSteps) {
    let deadline = Instant::now() + timeout;
    let mut pos = 0u64;
    let mut partial = String::new();
    let mut lines = Vec::new();
    let drain = |pos: &mut u64, partial: &mut String, lines: &mut Vec<String>| {
        if let Ok(mut f) = fs::File::open(output) {
            if f.seek(SeekFrom::Start(*pos)).is_ok() {
                let mut buf = Vec::new();
                if let Ok(n) = f.read_to_end(&mut buf) {
                    *pos += n as u64;
                    partial.push_str(&String::from_utf8_lossy(&buf));
                }
            }
        }
        let mut new = Vec::new();
        while let Some(i) = partial.find('\n') {
            let line: String = partial.drain(..=i).collect();
            let line = line.trim_end_matches(['\r', '\n']).to_string();
            println!("{line}");
            new.push(line);
        }
        let _ = io::stdout().flush();
        lines.extend(new.iter().cloned());
        new
    };
    let status = loop {
        let new = drain(&mut pos, &mut partial, &mut lines);
        for line in &new {
            if let Some(step) = line.strip_prefix("KCHAT-HOST-STEP ") {
                steps.start(step.trim());
            }
        }
        let go_on = watch(&new);
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) => {}
            Err(_) => break None,
        }
        if !go_on || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(200));
    };
    watch(&drain(&mut pos, &mut partial, &mut lines));
    if !partial.is_empty() {
        lines.push(partial);
    }
    (status, lines, steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_result_lines() {
        let ok = outcome(true, "3 name # 1.2 s");
        assert!(ok.ok && !ok.skipped && ok.name == "guest: name" && ok.detail == "1.2 s");
        let skip = outcome(true, "4 IRC clients # SKIP no client");
        assert!(skip.ok && skip.skipped && skip.detail == "no client");
        let fail = outcome(false, "5 name # SKIP is no skip here");
        assert!(!fail.ok && !fail.skipped);
    }
}
