//! The command line (clap): `kchat-ref <epoll|uring|sendfile> [options]`, with the names,
//! defaults and ranges of kchat's module parameters.

use clap::{value_parser, Args, Parser, Subcommand};

use crate::chat::Limits;

/// Shown after the options in `--help`.
const AFTER_HELP: &str = "\
Prints `listening on [::]:PORT` (IPv4 and IPv6 clients), or `listening on 0.0.0.0:PORT` where \
IPv6 is unavailable, once listening. Exit status: 2 for bad options; 3 when the engine cannot \
run on this system (io_uring, or memfd for sendfile, unavailable).";

/// Largest `--max-msg-len`, as kchat's `max_msg_len`.
const MAX_MSG_LEN_LIMIT: i64 = kchat_proto::MAX_MSG_LEN_LIMIT as i64;

/// kchat-ref: the user-space reference chat servers kchat is benchmarked against.
///
/// Same protocol, limits and text as the kernel module (DESIGN.md sections 1-2).
#[derive(Debug, Parser)]
#[command(
    name = "kchat-ref",
    version,
    after_help = AFTER_HELP,
    arg_required_else_help = false
)]
struct Cli {
    #[command(subcommand)]
    engine: EngineArgs,
}

#[derive(Debug, Subcommand)]
enum EngineArgs {
    /// Serve with mio (epoll), on one thread or several.
    #[command(after_help = AFTER_HELP)]
    Epoll {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        threads: Threads,
    },
    /// Serve with io_uring, on one thread.
    #[command(after_help = AFTER_HELP)]
    Uring {
        #[command(flatten)]
        common: Common,
    },
    /// Serve as epoll does, broadcasting from a log in a memfd with sendfile(2).
    #[command(after_help = AFTER_HELP)]
    Sendfile {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        threads: Threads,
    },
}

/// The thread count of the engines that have one.
#[derive(Debug, Args)]
struct Threads {
    /// Threads, 0 for one per vCPU [0..=1024].
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = value_parser!(u16).range(0..=1024))]
    threads: u16,
}

/// The options of every engine: kchat's module parameters.
#[derive(Debug, Args)]
struct Common {
    /// TCP port, 0 for any free one [0..=65535].
    #[arg(long, value_name = "N", default_value_t = 10106)]
    port: u16,
    /// The listen(2) backlog [1..=65535].
    #[arg(long, value_name = "N", default_value_t = 512,
          value_parser = value_parser!(u32).range(1..=65535))]
    backlog: u32,
    /// Connections beyond this many get `! server full` [1..=1000000].
    #[arg(long, value_name = "N", default_value_t = 10_000,
          value_parser = value_parser!(u32).range(1..=1_000_000))]
    max_clients: u32,
    /// Largest payload accepted, bytes [1..=1048576].
    #[arg(long, value_name = "N", default_value_t = 4096,
          value_parser = value_parser!(u32).range(1..=MAX_MSG_LEN_LIMIT))]
    max_msg_len: u32,
    /// Unsent bytes a client may have queued before it is dropped as a slow consumer
    /// [4096..=1073741824].
    #[arg(long, value_name = "N", default_value_t = 262_144,
          value_parser = value_parser!(u32).range(4096..=1 << 30))]
    max_queue_bytes: u32,
    /// Messages per second per client (a burst of as many); a client over it is not read
    /// until it may send again; 0 for unlimited [0..=1000000].
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = value_parser!(u32).range(0..=1_000_000))]
    max_msg_rate: u32,
    /// Join, leave and nick notices, 0 or 1.
    #[arg(long, value_name = "0|1", default_value_t = 1,
          value_parser = value_parser!(u8).range(0..=1))]
    notices: u8,
    /// Chat messages each room keeps for newcomers (at most 64 KiB of frames), 0 for none
    /// [0..=1000].
    #[arg(long, value_name = "N", default_value_t = 20,
          value_parser = value_parser!(u32).range(0..=1000))]
    history: u32,
    /// Rooms that may exist at once, #lobby included [1..=100000].
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = value_parser!(u32).range(1..=100_000))]
    max_rooms: u32,
}

/// Which engine serves the clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Epoll,
    Uring,
    Sendfile,
}

impl Engine {
    /// What the engine needs from the system beyond sockets and epoll, as named when it is
    /// unavailable.
    pub fn needs(self) -> &'static str {
        match self {
            Self::Epoll => "epoll",
            Self::Uring => "io_uring",
            Self::Sendfile => "memfd",
        }
    }
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

impl Options {
    /// The options of this process's command line; exits with `--help`, `--version` (status
    /// 0) or a usage error (status 2).
    pub fn from_env() -> Self {
        Cli::parse().into()
    }
}

impl From<Cli> for Options {
    fn from(cli: Cli) -> Self {
        let (engine, common, threads) = match cli.engine {
            EngineArgs::Epoll { common, threads } => (Engine::Epoll, common, threads.threads),
            EngineArgs::Uring { common } => (Engine::Uring, common, 1),
            EngineArgs::Sendfile { common, threads } => (Engine::Sendfile, common, threads.threads),
        };
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => usize::from(n),
        };
        Self {
            engine,
            port: common.port,
            backlog: common.backlog,
            threads,
            limits: Limits {
                max_clients: common.max_clients,
                max_msg_len: common.max_msg_len,
                max_queue_bytes: common.max_queue_bytes,
                max_msg_rate: common.max_msg_rate,
                notices: common.notices == 1,
                history: common.history,
                max_rooms: common.max_rooms,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(line: &str) -> Result<Options, clap::Error> {
        let args = std::iter::once("kchat-ref").chain(line.split_whitespace());
        Cli::try_parse_from(args).map(Options::from)
    }

    #[test]
    fn definition() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_and_ranges() {
        let o = parse("epoll").unwrap();
        assert_eq!(
            (o.engine, o.port, o.backlog, o.threads),
            (Engine::Epoll, 10106, 512, 1)
        );
        let l = o.limits;
        assert_eq!(
            (l.max_clients, l.max_msg_len, l.max_queue_bytes),
            (10000, 4096, 262_144)
        );
        assert_eq!((l.max_msg_rate, l.notices), (1000, true));
        assert_eq!((l.history, l.max_rooms), (20, 1000));
        let o = parse("uring --port=0 --max-msg-len 1048576 --notices 0 --history 0").unwrap();
        assert_eq!(o.engine, Engine::Uring);
        assert_eq!((o.port, o.limits.max_msg_len), (0, 1 << 20));
        assert_eq!((o.limits.notices, o.limits.history), (false, 0));
        let o = parse("epoll --threads 3 --max-rooms 100000 --history 1000").unwrap();
        assert_eq!(
            (o.threads, o.limits.max_rooms, o.limits.history),
            (3, 100_000, 1000)
        );
        let o = parse("sendfile --max-queue-bytes 4096").unwrap();
        assert_eq!(
            (o.engine, o.threads, o.limits.max_queue_bytes),
            (Engine::Sendfile, 1, 4096)
        );
        assert_eq!(parse("sendfile --threads 2").unwrap().threads, 2);
        for bad in [
            "epoll --max-msg-len 0",
            "epoll --max-msg-len 1048577",
            "epoll --notices 2",
            "epoll --history 1001",
            "epoll --max-rooms 0",
            "epoll --threads 1025",
            "sendfile --threads 1025",
            "uring --threads 2",
            "epoll --bogus 1",
            "",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
