//! `kchat-ref`: the user-space reference chat servers that kchat is benchmarked against.
//!
//! Same protocol, limits and text as the kernel module (DESIGN.md sections 1-2), served by
//! one of two engines:
//!
//! - `kchat-ref epoll [options]`: mio (epoll), one thread or one per vCPU (`--threads`);
//! - `kchat-ref uring [options]`: io_uring, multishot accept and receive, a provided-buffer
//!   ring, one thread.
//!
//! The protocol logic is written once ([`chat`]); the engines only move bytes.

mod chat;
mod epoll;
mod frame;
mod net;
mod queue;
mod uring;

use std::{io, process::ExitCode};

use chat::Limits;

/// Why an engine stopped.
#[derive(Debug)]
pub enum Fatal {
    /// The engine cannot run on this system (io_uring disabled or missing).
    Unavailable(String),
    /// A system call the server cannot do without failed (listening, polling).
    Io(io::Error),
}

impl From<io::Error> for Fatal {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

const USAGE: &str = "\
usage: kchat-ref <epoll|uring> [options]

options (defaults and ranges as kchat's module parameters):
  --port N             TCP port on 0.0.0.0, 0 picks a free one  [10106, 0..=65535]
  --backlog N          listen(2) backlog                        [512, 1..=65535]
  --max-clients N      connections beyond this get `! server full` [10000, 1..=1000000]
  --max-msg-len N      largest payload accepted, bytes          [4096, 1..=1048576]
  --max-queue-bytes N  unsent bytes before a slow client is dropped [262144, 4096..=1073741824]
  --max-msg-rate N     messages per second per client (burst of as many); a client over it
                       is not read until it may send again; 0 = unlimited [1000, 0..=1000000]
  --notices 0|1        join, leave and nick notices             [1]
  --threads N          epoll only: threads, 0 = one per vCPU    [1, 0..=1024]

Prints `listening on 0.0.0.0:PORT` once listening. Exit status 2: bad options;
3: the engine cannot run on this system (io_uring unavailable).";

/// Which engine serves the clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Epoll,
    Uring,
}

/// The options in force.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub engine: Engine,
    pub port: u16,
    pub backlog: u32,
    /// Engine threads (resolved: at least 1).
    pub threads: usize,
    pub limits: Limits,
}

/// One numeric option: its name, default and inclusive range.
struct Spec {
    name: &'static str,
    default: u64,
    min: u64,
    max: u64,
}

const fn spec(name: &'static str, default: u64, min: u64, max: u64) -> Spec {
    Spec {
        name,
        default,
        min,
        max,
    }
}

const SPECS: [Spec; 8] = [
    spec("port", 10106, 0, 65535),
    spec("backlog", 512, 1, 65535),
    spec("max-clients", 10000, 1, 1_000_000),
    spec(
        "max-msg-len",
        4096,
        1,
        kchat_proto::MAX_MSG_LEN_LIMIT as u64,
    ),
    spec("max-queue-bytes", 262_144, 4096, 1 << 30),
    spec("max-msg-rate", 1000, 0, 1_000_000),
    spec("notices", 1, 0, 1),
    spec("threads", 1, 0, 1024),
];

/// Parses the command line; `Ok(None)` for `--help`.
fn parse(args: &[String]) -> Result<Option<Options>, String> {
    let mut args = args.iter();
    let engine = match args.next().map(String::as_str) {
        Some("epoll") => Engine::Epoll,
        Some("uring") => Engine::Uring,
        Some("-h" | "--help") => return Ok(None),
        Some(other) => return Err(format!("unknown engine `{other}`: use epoll or uring")),
        None => return Err("missing engine: epoll or uring".into()),
    };
    let mut values: Vec<u64> = SPECS.iter().map(|s| s.default).collect();
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(None);
        }
        let Some(opt) = arg.strip_prefix("--") else {
            return Err(format!("unexpected argument `{arg}`"));
        };
        let (name, value) = match opt.split_once('=') {
            Some((n, v)) => (n, v.to_string()),
            None => (
                opt,
                args.next()
                    .ok_or_else(|| format!("--{opt} needs a value"))?
                    .clone(),
            ),
        };
        let i = SPECS
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| format!("unknown option --{name}"))?;
        let spec = &SPECS[i];
        let range = format!("allowed range is {}..={}", spec.min, spec.max);
        let v: u64 = value
            .parse()
            .map_err(|_| format!("invalid --{name} {value}: {range}"))?;
        if v < spec.min || v > spec.max {
            return Err(format!("invalid --{name} {value}: {range}"));
        }
        values[i] = v;
    }
    // Every value was checked against its range above: the conversions cannot fail.
    let get = |name: &str| values[SPECS.iter().position(|s| s.name == name).unwrap_or(0)];
    let narrow = |name: &str| u32::try_from(get(name)).unwrap_or(u32::MAX);
    let threads = match get("threads") {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => usize::try_from(n).unwrap_or(1),
    };
    if engine == Engine::Uring && threads != 1 {
        return Err("--threads is for the epoll engine; the uring engine has one thread".into());
    }
    Ok(Some(Options {
        engine,
        port: u16::try_from(get("port")).unwrap_or(0),
        backlog: narrow("backlog"),
        threads,
        limits: Limits {
            max_clients: narrow("max-clients"),
            max_msg_len: narrow("max-msg-len"),
            max_queue_bytes: narrow("max-queue-bytes"),
            max_msg_rate: narrow("max-msg-rate"),
            notices: get("notices") == 1,
        },
    }))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match parse(&args) {
        Ok(Some(opts)) => opts,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("kchat-ref: {msg}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match opts.engine {
        Engine::Epoll => epoll::run(&opts),
        Engine::Uring => uring::run(&opts),
    };
    match result {
        Ok(never) => match never {},
        Err(Fatal::Unavailable(why)) => {
            eprintln!("kchat-ref: io_uring unavailable: {why}");
            ExitCode::from(3)
        }
        Err(Fatal::Io(e)) => {
            eprintln!("kchat-ref: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn defaults_and_ranges() {
        let o = parse(&args("epoll")).unwrap().unwrap();
        assert_eq!((o.port, o.backlog, o.threads), (10106, 512, 1));
        assert_eq!(o.limits.max_clients, 10000);
        assert_eq!(o.limits.max_msg_len, 4096);
        assert_eq!(o.limits.max_queue_bytes, 262144);
        assert_eq!(o.limits.max_msg_rate, 1000);
        assert!(o.limits.notices);
        let o = parse(&args("uring --port=0 --max-msg-len 1048576 --notices 0"))
            .unwrap()
            .unwrap();
        assert_eq!(
            (o.port, o.limits.max_msg_len, o.limits.notices),
            (0, 1 << 20, false)
        );
        let e = parse(&args("epoll --max-msg-len 0")).unwrap_err();
        assert!(
            e.contains("--max-msg-len") && e.contains("1..=1048576"),
            "{e}"
        );
        assert!(parse(&args("epoll --max-msg-len 1048577")).is_err());
        assert!(parse(&args("epoll --notices 2")).is_err());
        assert!(parse(&args("uring --threads 2")).is_err());
        assert!(parse(&args("epoll --bogus 1")).is_err());
    }
}
