// SPDX-License-Identifier: GPL-2.0
//! The command line (clap): `kchat-bench [run options]` and `kchat-bench report ...`.

use std::{
    ffi::OsString,
    net::{SocketAddr, ToSocketAddrs},
    path::PathBuf,
    time::Duration,
};

use clap::{
    builder::RangedU64ValueParser, error::ErrorKind, value_parser, ArgGroup, Args, CommandFactory,
    Parser, Subcommand, ValueEnum,
};

use crate::{irc, payload};

/// Most event-loop threads (completion wake-ups use a 64-bit mask).
const MAX_THREADS: u64 = 64;

/// Largest `--read-size` (64 MiB).
const MAX_READ_SIZE: u64 = 64 << 20;

/// The exit statuses, shown after the options in `--help`.
const EXIT_STATUS: &str = "\
Exit status: 0 if every message reached every recipient intact, in order and once; 1 if \
anything was lost, duplicated, reordered, corrupted, or any error or abort (the JSON record \
is still written); 2 for bad usage.";

/// `kchat-bench`: measures a chat server's throughput, latency, correctness and CPU per message.
///
/// Connects --clients clients to the server; the first --senders of them send --messages
/// messages of --payload bytes each, and every message must reach every other client (with
/// --rooms: every other client of the sender's room).
#[derive(Debug, Parser)]
#[command(
    name = "kchat-bench",
    version,
    args_conflicts_with_subcommands = true,
    disable_help_subcommand = true,
    after_help = EXIT_STATUS
)]
struct Cli {
    #[command(subcommand)]
    report: Option<Sub>,
    #[command(flatten)]
    run: Options,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Sub {
    /// Markdown tables and an SVG chart from the JSON records of earlier runs.
    Report(ReportOptions),
}

/// Which wire protocol the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Protocol {
    // kchat's length-prefixed frames, relayed as `LABEL: PAYLOAD`. (Plain comments: doc
    // comments would turn `--help` into a list of values.)
    Kchat,
    // Redis pub/sub over RESP2.
    #[value(alias = "redis")]
    Resp,
    // IRC: PRIVMSG to a channel, the payload as text.
    Irc,
}

impl Protocol {
    /// The name used on the command line and in the JSON record.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Protocol::Kchat => "kchat",
            Protocol::Resp => "resp",
            Protocol::Irc => "irc",
        }
    }
}

/// Options of a benchmark run.
#[derive(Debug, Clone, Args)]
pub(crate) struct Options {
    /// Server address (a bare host means port 10106).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:10106", value_parser = resolve)]
    pub(crate) addr: SocketAddr,
    /// kchat frames, Redis pub/sub (RESP2), or IRC (PRIVMSG to channels).
    #[arg(long, value_enum, default_value_t = Protocol::Kchat)]
    pub(crate) protocol: Protocol,
    /// Receiving clients (resp: subscribers).
    #[arg(long, value_name = "C", default_value_t = 2, value_parser = at_least(1))]
    pub(crate) clients: usize,
    /// Senders among the clients (resp: extra publisher connections).
    #[arg(long, value_name = "S", default_value_t = 1, value_parser = at_least(1))]
    pub(crate) senders: usize,
    /// Extra clients that connect and never read; not recipients.
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = at_least(0))]
    pub(crate) stalled: usize,
    /// Payload bytes per message, at least the header (24 bytes; irc: 44 bytes of text, and
    /// at most 400).
    #[arg(long, value_name = "P", default_value_t = 64, value_parser = payload_len())]
    pub(crate) payload: usize,
    /// Messages per sender.
    #[arg(long, value_name = "M", default_value_t = 10_000, value_parser = value_parser!(u32).range(1..))]
    pub(crate) messages: u32,
    /// Messages per sender not yet delivered to all recipients [default: 1]; with --rate, the
    /// most a sender may fall behind [default: 1024].
    #[arg(long, value_name = "W", value_parser = value_parser!(u32).range(1..=1 << 20))]
    window: Option<u32>,
    /// Open loop: R messages per second per sender [default: self-clocked].
    #[arg(long, value_name = "R", value_parser = positive_rate)]
    pub(crate) rate: Option<f64>,
    /// Bytes each read(2) asks for, on every connection: small reads (one frame at a time,
    /// as naive clients read) or large buffered ones [default: 64 MiB / connections, 8 KiB
    /// to 256 KiB, at least two messages; more once a buffer grew].
    #[arg(long, value_name = "N", value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_READ_SIZE))]
    pub(crate) read_size: Option<usize>,
    /// Network namespaces (files such as /proc/PID/ns/net) to connect in: the senders in the
    /// first, every other client i in namespace i modulo their number. For a kchat cluster
    /// in one machine (one node per namespace): the record then also has the latencies of
    /// the clients in the first namespace (local) and in the others (remote) apart.
    #[arg(long, value_name = "PATH[,PATH...]", value_delimiter = ',')]
    pub(crate) netns: Vec<std::path::PathBuf>,
    /// Connects in flight at once, over all threads [default: 256; irc: 8]. An IRC client is
    /// in flight until the server welcomes it, so that a server with a short listen backlog
    /// (ngircd's is 10) is never sent more connections than it has accepted; a server that
    /// welcomes slowly wants more (InspIRCd welcomes on a once-a-second tick: 1000).
    #[arg(long, value_name = "N", value_parser = at_least(1))]
    connect_batch: Option<usize>,
    /// Event-loop threads.
    #[arg(long, value_name = "T", default_value_t = 1, value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_THREADS))]
    pub(crate) threads: usize,
    /// Rooms: client i joins `#bench-{i % R}` (resp: subscribes to channel `bench-{i % R}`,
    /// publisher s publishes to `bench-{s % R}`); a message must reach exactly the other
    /// members of its sender's room [default: no rooms, every client in one: kchat's
    /// `#lobby`, the --channel of resp and irc].
    #[arg(long, value_name = "R", value_parser = at_least(1))]
    pub(crate) rooms: Option<usize>,
    /// Label copied into the JSON record.
    #[arg(long, value_name = "NAME", default_value = "kchat")]
    pub(crate) server: String,
    /// A user-space server's process: its own CPU time over the measured interval goes into
    /// the record too (from /proc/PID/stat; meaningful where other work shares the machine).
    #[arg(long, value_name = "PID")]
    pub(crate) server_pid: Option<u32>,
    /// Label copied into the JSON record.
    #[arg(long, value_name = "NAME", default_value = "default")]
    pub(crate) scenario: String,
    /// Append the result to FILE as one JSON object per line.
    #[arg(long, value_name = "FILE")]
    pub(crate) json: Option<PathBuf>,
    /// Abort when nothing progresses for this long.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = seconds)]
    pub(crate) idle_timeout: Duration,
    /// Abort when the whole run takes longer [default: no limit].
    #[arg(long, value_name = "SECONDS", value_parser = seconds)]
    pub(crate) duration_limit: Option<Duration>,
    /// resp and irc without --rooms: the pub/sub channel (irc: `#NAME`).
    #[arg(
        long,
        value_name = "NAME",
        default_value = "kchat",
        conflicts_with = "rooms"
    )]
    pub(crate) channel: String,
    /// No progress line on stderr.
    #[arg(long)]
    pub(crate) quiet: bool,
    /// Run nothing: append the record of this run as one that did not happen, for REASON
    /// (its server is not installed, say), and exit 0. The report lists it as not run.
    #[arg(long, value_name = "REASON")]
    pub(crate) not_run: Option<String>,
}

impl Options {
    /// The index in `--netns` of the namespace client `g` connects in (0 without `--netns`).
    pub(crate) fn netns_of(&self, g: usize, sender: bool) -> usize {
        match self.netns.len() {
            0 | 1 => 0,
            _ if sender => 0,
            n => g % n,
        }
    }

    /// Connects in flight at once: `--connect-batch`, or its default for the protocol.
    pub(crate) fn connect_batch(&self) -> usize {
        let default = match self.protocol {
            Protocol::Irc => 8,
            Protocol::Kchat | Protocol::Resp => 256,
        };
        self.connect_batch.unwrap_or(default)
    }

    /// Messages a sender may have outstanding: `--window`, or its default for the mode.
    pub(crate) fn window(&self) -> u32 {
        self.window
            .unwrap_or(if self.rate.is_some() { 1024 } else { 1 })
    }
}

/// Options of `kchat-bench report`.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("output").required(true).multiple(true).args(["markdown", "svg", "irc_svg"])))]
pub(crate) struct ReportOptions {
    /// The records: JSON lines as `--json` writes them, or one JSON array.
    #[arg(long, value_name = "FILE.json")]
    pub(crate) input: PathBuf,
    /// Write the tables here.
    #[arg(long, value_name = "OUT.md")]
    pub(crate) markdown: Option<PathBuf>,
    /// Write the chart here (with --irc-svg: of the scenarios of the other protocols).
    #[arg(long, value_name = "OUT.svg")]
    pub(crate) svg: Option<PathBuf>,
    /// Write a chart of the IRC scenarios here, apart from the others.
    #[arg(long, value_name = "OUT.svg")]
    pub(crate) irc_svg: Option<PathBuf>,
}

/// What the command line asks for.
#[derive(Debug)]
pub(crate) enum Command {
    /// Run one benchmark.
    Run(Box<Options>),
    /// `kchat-bench report`.
    Report(ReportOptions),
}

/// A count of at least `min`.
fn at_least(min: u64) -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::new().range(min..)
}

/// A payload length the header fits in and the server accepts.
fn payload_len() -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::new()
        .range(payload::HEADER_LEN as u64..=kchat_proto::MAX_MSG_LEN_LIMIT as u64)
}

/// Seconds (fractions allowed) as a duration.
fn seconds(v: &str) -> Result<Duration, String> {
    match v.parse::<f64>() {
        Ok(s) if s > 0.0 && s < 1e9 => Ok(Duration::from_secs_f64(s)),
        _ => Err("expected a positive number of seconds".into()),
    }
}

/// Messages per second.
fn positive_rate(v: &str) -> Result<f64, String> {
    match v.parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() => Ok(r),
        _ => Err("expected a positive number of messages per second".into()),
    }
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
        .map_err(|e| e.to_string())?
        .next()
        .ok_or_else(|| "no address".into())
}

/// Parses the arguments after the program name. The error prints itself (usage, or the
/// help and version texts) and knows its exit status: `clap::Error::exit`.
pub(crate) fn parse<I, T>(args: I) -> Result<Command, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let program = std::iter::once(OsString::from("kchat-bench"));
    let cli = Cli::try_parse_from(program.chain(args.into_iter().map(Into::into)))?;
    match cli.report {
        Some(Sub::Report(r)) => Ok(Command::Report(r)),
        None => {
            check(&cli.run).map_err(|e| Cli::command().error(ErrorKind::ArgumentConflict, e))?;
            Ok(Command::Run(Box::new(cli.run)))
        }
    }
}

/// Checks what clap cannot see option by option: that the options make a runnable benchmark.
fn check(o: &Options) -> Result<(), String> {
    let text_min = payload::Format::Text.header_len();
    let p = o.protocol.name();
    match o.protocol {
        Protocol::Irc if !(text_min..=irc::MAX_PAYLOAD).contains(&o.payload) => Err(format!(
            "--payload must be {text_min} to {} for irc (a line of text)",
            irc::MAX_PAYLOAD
        )),
        Protocol::Kchat | Protocol::Irc if o.clients < 2 => {
            Err(format!("--clients must be at least 2 for {p}"))
        }
        Protocol::Kchat | Protocol::Irc if o.senders > o.clients => {
            Err(format!("--senders must not exceed --clients for {p}"))
        }
        // Every sender needs another client in its room.
        Protocol::Kchat | Protocol::Irc if o.rooms.is_some_and(|r| r * 2 > o.clients) => {
            Err(format!("--rooms R needs --clients of at least 2R for {p}"))
        }
        Protocol::Resp if o.rooms.is_some_and(|r| r > o.clients) => {
            Err("--rooms must not exceed --clients (every room needs a subscriber)".into())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Options, clap::Error> {
        match parse(args)? {
            Command::Run(o) => Ok(*o),
            other => panic!("{other:?}"),
        }
    }

    /// Checks clap's own consistency checks over the whole command definition.
    #[test]
    fn definition() {
        Cli::command().debug_assert();
    }

    /// Checks defaults, both `--name value` and `--name=value`, the rate-mode window default,
    /// rooms, irc, the read size, and that impossible values and combinations are refused as
    /// usage errors.
    #[test]
    fn parsing() {
        let o = run(&[]).unwrap();
        assert_eq!((o.clients, o.senders, o.payload, o.window()), (2, 1, 64, 1));
        assert_eq!(o.addr.port(), 10106);
        assert_eq!((o.rooms, o.idle_timeout), (None, Duration::from_secs(10)));
        let o = run(&["--clients", "10", "--senders=3", "--protocol", "resp"]).unwrap();
        assert_eq!((o.clients, o.senders, o.protocol), (10, 3, Protocol::Resp));
        assert_eq!(
            run(&["--protocol", "redis"]).unwrap().protocol,
            Protocol::Resp
        );
        assert_eq!(run(&["--rate", "100"]).unwrap().window(), 1024);
        assert_eq!(
            run(&["--rate", "100", "--window", "8"]).unwrap().window(),
            8
        );
        let o = run(&["--clients", "1000", "--senders", "1000", "--rooms", "100"]).unwrap();
        assert_eq!(o.rooms, Some(100));
        let o = run(&["--protocol", "irc", "--rooms", "1", "--read-size", "68"]).unwrap();
        assert_eq!((o.protocol, o.read_size), (Protocol::Irc, Some(68)));
        assert_eq!(run(&[]).unwrap().read_size, None);
        assert_eq!(
            (o.connect_batch(), run(&[]).unwrap().connect_batch()),
            (8, 256)
        );
        let o = run(&["--connect-batch", "3"]).unwrap();
        assert_eq!(o.connect_batch(), 3);
        for bad in [
            &["--clients", "1"][..],
            &["--senders", "3"],
            &["--payload", "10"],
            &["--threads", "65"],
            &["--window", "0"],
            &["--rate", "-1"],
            &["--idle-timeout", "0"],
            &["--bogus", "1"],
            &["--clients"],
            &["--clients", "5", "--rooms", "3"],
            &["--rooms", "2", "--channel", "x"],
            &["--protocol", "resp", "--clients", "2", "--rooms", "3"],
            &["--protocol", "irc", "--clients", "1"],
            &["--protocol", "irc", "--clients", "5", "--rooms", "3"],
            &["--protocol", "irc", "--payload", "43"],
            &["--protocol", "irc", "--payload", "401"],
            &["--read-size", "0"],
            &["--connect-batch", "0"],
        ] {
            let e = run(bad).expect_err(&format!("{bad:?} accepted"));
            assert_eq!(e.exit_code(), 2, "{bad:?}: {e}");
        }
        assert_eq!(run(&["--help"]).unwrap_err().exit_code(), 0);
    }

    /// Checks the report subcommand: input and at least one output required, no run options.
    #[test]
    fn report() {
        assert!(matches!(
            parse(["report", "--input", "a.json", "--svg", "b.svg"]),
            Ok(Command::Report(_))
        ));
        assert!(parse(["report", "--input", "a.json"]).is_err());
        assert!(parse(["--clients", "3", "report", "--input", "a", "--svg", "b"]).is_err());
    }
}
