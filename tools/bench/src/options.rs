// SPDX-License-Identifier: GPL-2.0
//! The command line: `kchat-bench [run options]` and `kchat-bench report ...`.

use std::{
    net::{SocketAddr, ToSocketAddrs},
    path::PathBuf,
    time::Duration,
};

use crate::payload;

/// The usage text printed by `--help` and after an error.
pub(crate) const USAGE: &str = "\
usage: kchat-bench [OPTIONS]
       kchat-bench report --input FILE.json [--markdown OUT.md] [--svg OUT.svg]

Connects --clients clients to the server; the first --senders of them send --messages
messages of --payload bytes each, every message must reach every other client.

options (defaults in brackets):
  --addr HOST:PORT        server address [127.0.0.1:10106]
  --protocol kchat|resp   kchat frames, or Redis pub/sub (RESP2) [kchat]
  --clients C             receiving clients (resp: subscribers) [2]
  --senders S             senders among the clients (resp: extra publisher connections) [1]
  --stalled N             extra clients that connect and never read; not recipients [0]
  --payload P             payload bytes per message, at least 24 [64]
  --messages M            messages per sender [10000]
  --window W              messages per sender not yet delivered to all recipients [1]
                          (with --rate: [1024], the most a sender may fall behind)
  --rate R                open loop: R messages per second per sender [self-clocked]
  --threads T             event-loop threads [1]
  --server NAME           label copied into the JSON record [kchat]
  --scenario NAME         label copied into the JSON record [default]
  --json FILE             append the result to FILE as one JSON object per line
  --idle-timeout SECONDS  abort when nothing progresses for this long [10]
  --duration-limit SECONDS  abort when the whole run takes longer [none]
  --channel NAME          resp: the pub/sub channel [kchat]
  --quiet                 no progress line on stderr
  -h, --help              this text

Exit status: 0 if every message reached every recipient intact, in order and once;
1 if anything was lost, duplicated, reordered, corrupted, or any error or abort; 2 for
bad usage.";

/// Which wire protocol the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// kchat's length-prefixed frames, relayed as `LABEL: PAYLOAD`.
    Kchat,
    /// Redis pub/sub over RESP2.
    Resp,
}

impl Protocol {
    /// The name used on the command line and in the JSON record.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Protocol::Kchat => "kchat",
            Protocol::Resp => "resp",
        }
    }
}

/// Options of a benchmark run; each field is the option of the same name in [`USAGE`].
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) addr: SocketAddr,
    pub(crate) protocol: Protocol,
    pub(crate) clients: usize,
    pub(crate) senders: usize,
    pub(crate) stalled: usize,
    pub(crate) payload: usize,
    pub(crate) messages: u32,
    pub(crate) window: u32,
    pub(crate) rate: Option<f64>,
    pub(crate) threads: usize,
    pub(crate) server: String,
    pub(crate) scenario: String,
    pub(crate) json: Option<PathBuf>,
    pub(crate) idle_timeout: Duration,
    pub(crate) duration_limit: Option<Duration>,
    pub(crate) channel: String,
    pub(crate) quiet: bool,
}

/// Options of `kchat-bench report`.
#[derive(Debug, Clone)]
pub(crate) struct ReportOptions {
    pub(crate) input: PathBuf,
    pub(crate) markdown: Option<PathBuf>,
    pub(crate) svg: Option<PathBuf>,
}

/// What the command line asks for.
#[derive(Debug)]
pub(crate) enum Command {
    /// Run one benchmark.
    Run(Box<Options>),
    /// `kchat-bench report`.
    Report(ReportOptions),
    /// Print the usage.
    Help,
}

/// Most event-loop threads (completion wake-ups use a 64-bit mask).
const MAX_THREADS: usize = 64;

/// Parses a number-like option value.
fn num<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("{name}: not a valid number: {v:?}"))
}

/// Parses seconds (fractions allowed) into a duration.
fn seconds(name: &str, v: &str) -> Result<Duration, String> {
    let s: f64 = num(name, v)?;
    if !(s > 0.0 && s < 1e9) {
        return Err(format!("{name}: must be a positive number of seconds"));
    }
    Ok(Duration::from_secs_f64(s))
}

/// Splits `--name=value` / `--name value` pairs; flags without a value return `None`.
fn next_option(
    args: &mut impl Iterator<Item = String>,
) -> Option<Result<(String, Option<String>), String>> {
    let arg = args.next()?;
    if !arg.starts_with('-') {
        return Some(Err(format!("unexpected argument {arg:?}")));
    }
    if let Some((name, value)) = arg.split_once('=') {
        return Some(Ok((name.to_string(), Some(value.to_string()))));
    }
    if matches!(arg.as_str(), "-h" | "--help" | "--quiet") {
        return Some(Ok((arg, None)));
    }
    match args.next() {
        Some(v) => Some(Ok((arg, Some(v)))),
        None => Some(Err(format!("{arg}: missing value"))),
    }
}

/// Parses the arguments after the program name.
pub(crate) fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut args = args.into_iter().peekable();
    if args.peek().map(String::as_str) == Some("report") {
        args.next();
        return parse_report(args);
    }
    let mut o = Options {
        addr: SocketAddr::from(([127, 0, 0, 1], 10106)),
        protocol: Protocol::Kchat,
        clients: 2,
        senders: 1,
        stalled: 0,
        payload: 64,
        messages: 10_000,
        window: 1,
        rate: None,
        threads: 1,
        server: "kchat".into(),
        scenario: "default".into(),
        json: None,
        idle_timeout: Duration::from_secs(10),
        duration_limit: None,
        channel: "kchat".into(),
        quiet: false,
    };
    let mut window = None;
    while let Some(opt) = next_option(&mut args) {
        let (name, value) = opt?;
        let v = value.unwrap_or_default();
        match name.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--quiet" => o.quiet = true,
            "--addr" => o.addr = resolve(&v)?,
            "--protocol" => {
                o.protocol = match v.as_str() {
                    "kchat" => Protocol::Kchat,
                    "resp" | "redis" => Protocol::Resp,
                    _ => return Err(format!("--protocol: kchat or resp, not {v:?}")),
                }
            }
            "--clients" => o.clients = num(&name, &v)?,
            "--senders" => o.senders = num(&name, &v)?,
            "--stalled" => o.stalled = num(&name, &v)?,
            "--payload" => o.payload = num(&name, &v)?,
            "--messages" => o.messages = num(&name, &v)?,
            "--window" => window = Some(num(&name, &v)?),
            "--rate" => o.rate = Some(num(&name, &v)?),
            "--threads" => o.threads = num(&name, &v)?,
            "--server" => o.server = v,
            "--scenario" => o.scenario = v,
            "--json" => o.json = Some(v.into()),
            "--idle-timeout" => o.idle_timeout = seconds(&name, &v)?,
            "--duration-limit" => o.duration_limit = Some(seconds(&name, &v)?),
            "--channel" => o.channel = v,
            _ => return Err(format!("unknown option {name}")),
        }
    }
    o.window = window.unwrap_or(if o.rate.is_some() { 1024 } else { 1 });
    validate(&o)?;
    Ok(Command::Run(Box::new(o)))
}

/// Resolves `HOST:PORT` (a bare host means port 10106).
fn resolve(v: &str) -> Result<SocketAddr, String> {
    let with_port = if v.contains(':') {
        v.to_string()
    } else {
        format!("{v}:10106")
    };
    with_port
        .to_socket_addrs()
        .map_err(|e| format!("--addr {v}: {e}"))?
        .next()
        .ok_or_else(|| format!("--addr {v}: no address"))
}

/// Checks that the options make a runnable benchmark.
fn validate(o: &Options) -> Result<(), String> {
    let min_clients = match o.protocol {
        Protocol::Kchat => 2,
        Protocol::Resp => 1,
    };
    if o.clients < min_clients {
        return Err(format!("--clients must be at least {min_clients}"));
    }
    if o.senders == 0 || (o.protocol == Protocol::Kchat && o.senders > o.clients) {
        return Err("--senders must be 1 ..= --clients".into());
    }
    if o.payload < payload::HEADER_LEN || o.payload > kchat_proto::MAX_MSG_LEN_LIMIT {
        return Err(format!(
            "--payload must be {} ..= {} bytes",
            payload::HEADER_LEN,
            kchat_proto::MAX_MSG_LEN_LIMIT
        ));
    }
    if o.messages == 0 || o.window == 0 || o.window > 1 << 20 {
        return Err("--messages must be positive and --window 1 ..= 1048576".into());
    }
    if o.threads == 0 || o.threads > MAX_THREADS {
        return Err(format!("--threads must be 1 ..= {MAX_THREADS}"));
    }
    if let Some(r) = o.rate {
        if !(r > 0.0 && r.is_finite()) {
            return Err("--rate must be a positive number of messages per second".into());
        }
    }
    Ok(())
}

/// Parses `report` options.
fn parse_report(mut args: impl Iterator<Item = String>) -> Result<Command, String> {
    let (mut input, mut markdown, mut svg) = (None, None, None);
    while let Some(opt) = next_option(&mut args) {
        let (name, value) = opt?;
        let v = value.map(PathBuf::from);
        match name.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--input" => input = v,
            "--markdown" => markdown = v,
            "--svg" => svg = v,
            _ => return Err(format!("report: unknown option {name}")),
        }
    }
    let input = input.ok_or("report: --input FILE is required")?;
    if markdown.is_none() && svg.is_none() {
        return Err("report: give --markdown OUT.md and/or --svg OUT.svg".into());
    }
    Ok(Command::Report(ReportOptions {
        input,
        markdown,
        svg,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Options, String> {
        match parse(args.iter().map(|s| s.to_string()))? {
            Command::Run(o) => Ok(*o),
            other => Err(format!("{other:?}")),
        }
    }

    /// Checks defaults, both `--name value` and `--name=value`, the rate-mode window default,
    /// and that impossible combinations are refused.
    #[test]
    fn parsing() {
        let o = run(&[]).unwrap();
        assert_eq!((o.clients, o.senders, o.payload, o.window), (2, 1, 64, 1));
        assert_eq!(o.addr.port(), 10106);
        let o = run(&["--clients", "10", "--senders=3", "--protocol", "resp"]).unwrap();
        assert_eq!((o.clients, o.senders, o.protocol), (10, 3, Protocol::Resp));
        assert_eq!(run(&["--rate", "100"]).unwrap().window, 1024);
        assert_eq!(run(&["--rate", "100", "--window", "8"]).unwrap().window, 8);
        assert!(run(&["--clients", "1"]).is_err());
        assert!(run(&["--senders", "3"]).is_err());
        assert!(run(&["--payload", "10"]).is_err());
        assert!(run(&["--bogus", "1"]).is_err());
        assert!(run(&["--clients"]).is_err());
        assert!(matches!(
            parse(["report", "--input", "a.json", "--svg", "b.svg"].map(String::from)),
            Ok(Command::Report(_))
        ));
    }
}
