// SPDX-License-Identifier: GPL-2.0
//! The command line (clap) and the link secret file.

use std::{path::PathBuf, time::Duration};

use clap::Parser;

use crate::{names::is_node, nats::url::ServerUrl};

/// Shown after the options in `--help`.
const AFTER_HELP: &str = "\
WHAT IT DOES
  Links to kchat (first frame `/link SECRET NODE`, answer `=link NODE`, then the snapshot of \
local members up to `=synced`, then live events) and connects to NATS (the client protocol, \
plain TCP, CONNECT with echo off). Local room messages are published to \
kchat.room.ROOM, private messages to kchat.priv.NODE, presence to kchat.presence; remote \
events are posted to kchat as `=join`, `=part`, `=nick`, `=quit`, `=msg`, `=priv` and \
`=drop` frames (docs/link.md). Payloads of this node are ignored, so nothing loops.

PRESENCE
  A `state` (every member of this node and its rooms) is published every --heartbeat, after \
kchat's snapshot, on another node's `hello`, and with a `hello` after each connection to \
NATS. Another node's state reconciles kchat (joins the new, parts and quits the vanished). A \
node silent for --silence is dropped (`=drop NODE`); while this bridge is itself cut off \
from NATS nobody is dropped. While the kchat link is down no state is published, so the \
other nodes drop this one after their --silence.

FAILURES
  Both connections are made again after any failure (the next NATS server in turn; waits \
double from 50 ms to --max-backoff). Meanwhile publishes for NATS and messages for kchat \
wait in two queues of --buffer-bytes each; what does not fit is dropped, counted and logged \
(`dropped N messages (B bytes) for NATS while disconnected: buffer full`). A new kchat link \
is first told every remote member again; a new NATS connection sends `hello` and the state.

LOG
  One line per event on stderr, `kchat-bridge NODE: ...`; a stats line on SIGTERM or SIGINT \
(then exit status 0) and every --stats. Exit status 2: bad options or secret file.";

/// kchat-bridge: joins kchat nodes through NATS, one bridge per node.
#[derive(Debug, Parser)]
#[command(name = "kchat-bridge", version, after_help = AFTER_HELP)]
pub struct Options {
    /// kchat's native TCP address to link to.
    #[arg(long, value_name = "HOST:PORT")]
    pub kchat: String,

    /// The network namespace kchat's address is in (e.g. /proc/PID/ns/net, /run/netns/NAME),
    /// if not the bridge's own: each connection to kchat is made from inside it (kchat runs
    /// one instance per namespace), while NATS is reached from the bridge's namespace.
    #[arg(long, value_name = "PATH")]
    pub kchat_netns: Option<PathBuf>,

    /// File holding kchat's `link_secret` module parameter: a decimal u64, not 0 (white
    /// space around it is ignored).
    #[arg(long, value_name = "FILE")]
    pub link_secret_file: PathBuf,

    /// This node's name, unique among the nodes: 1 to 15 bytes of [A-Za-z0-9_-].
    #[arg(long, value_name = "NAME", value_parser = parse_node)]
    pub node: String,

    /// NATS servers, tried in turn: nats://[USER:PASS@|TOKEN@]HOST[:PORT] or HOST[:PORT]
    /// (port 4222 by default); comma-separated or the option repeated. Servers of the same
    /// cluster announced by the server are added to the list.
    #[arg(long, value_name = "URL[,URL...]", required = true, value_delimiter = ',',
          value_parser = ServerUrl::parse)]
    pub nats: Vec<ServerUrl>,

    /// Bytes of messages queued for NATS, and as many for kchat, while the peer is away or
    /// slow; beyond, messages are dropped and counted [4096..=1073741824].
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20,
          value_parser = clap::value_parser!(u64).range(4096..=1 << 30))]
    pub buffer_bytes: u64,

    /// The longest frame kchat takes on the link: its `max_msg_len`. A remote message whose
    /// `=msg` or `=priv` frame is longer is not posted (kchat would close the link), but
    /// counted and logged [64..=1049600].
    #[arg(long, value_name = "BYTES", default_value_t = 4096,
          value_parser = clap::value_parser!(u64).range(64..=1_049_600))]
    pub kchat_max_frame: u64,

    /// Seconds between two `state` heartbeats (fractions allowed).
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_secs)]
    pub heartbeat: Duration,

    /// Seconds without a word from a node before it is dropped; more than twice
    /// --heartbeat, and the same on every bridge.
    #[arg(long, value_name = "SECS", default_value = "15", value_parser = parse_secs)]
    pub silence: Duration,

    /// Longest wait, in seconds, between two attempts to connect.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_secs)]
    pub max_backoff: Duration,

    /// Print a stats line every SECS seconds (0: only on exit).
    #[arg(long, value_name = "SECS", default_value = "0", value_parser = parse_secs_or_zero)]
    pub stats: Duration,
}

/// A node name.
fn parse_node(s: &str) -> Result<String, String> {
    if is_node(s) {
        Ok(s.to_string())
    } else {
        Err("a node name is 1 to 15 bytes of [A-Za-z0-9_-]".into())
    }
}

/// Seconds, zero allowed, at most a day.
fn parse_secs_or_zero(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(0.0..=86_400.0).contains(&secs) {
        return Err("seconds must be 0 to 86400".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Seconds, at least 10 ms.
fn parse_secs(s: &str) -> Result<Duration, String> {
    let d = parse_secs_or_zero(s)?;
    if d < Duration::from_millis(10) {
        return Err("at least 0.01 seconds".into());
    }
    Ok(d)
}

/// The secret in the text of a secret file.
pub fn parse_secret(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let secret: u64 = t
        .parse()
        .map_err(|_| "the link secret must be a decimal u64".to_string())?;
    if secret == 0 {
        return Err("the link secret is 0, which kchat refuses for every link".into());
    }
    Ok(secret)
}

impl Options {
    /// Reads the secret file.
    pub fn secret(&self) -> Result<u64, String> {
        let text = std::fs::read_to_string(&self.link_secret_file)
            .map_err(|e| format!("{}: {e}", self.link_secret_file.display()))?;
        parse_secret(&text).map_err(|e| format!("{}: {e}", self.link_secret_file.display()))
    }

    /// Checks what clap cannot check option by option.
    pub fn check(&self) -> Result<(), String> {
        if self.silence <= self.heartbeat * 2 {
            return Err(format!(
                "--silence ({:?}) must be more than twice --heartbeat ({:?})",
                self.silence, self.heartbeat
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn secrets() {
        assert_eq!(parse_secret(" 42\n"), Ok(42));
        assert_eq!(
            parse_secret("18446744073709551615"),
            Ok(18_446_744_073_709_551_615)
        );
        assert!(parse_secret("0").is_err());
        assert!(parse_secret("-1").is_err());
        assert!(parse_secret("0x10").is_err());
        assert!(parse_secret("18446744073709551616").is_err());
        assert!(parse_secret("").is_err());
    }

    #[test]
    fn command_line() {
        Options::command().debug_assert();
        let o = Options::try_parse_from([
            "kchat-bridge",
            "--kchat",
            "127.0.0.1:10106",
            "--link-secret-file",
            "/s",
            "--node",
            "n1",
            "--nats",
            "nats://a:1,b",
            "--nats",
            "c:3",
        ])
        .unwrap();
        let hosts: Vec<_> = o.nats.iter().map(|u| (u.host.as_str(), u.port)).collect();
        assert_eq!(hosts, [("a", 1), ("b", 4222), ("c", 3)]);
        assert_eq!(o.heartbeat, Duration::from_secs(5));
        assert_eq!(o.silence, Duration::from_secs(15));
        assert_eq!(o.buffer_bytes, 1 << 20);
        assert!(o.check().is_ok());
        let bad = |extra: &[&str]| {
            let mut args = vec![
                "kchat-bridge",
                "--kchat",
                "k:1",
                "--link-secret-file",
                "/s",
                "--node",
                "n1",
                "--nats",
                "h",
            ];
            args.extend_from_slice(extra);
            Options::try_parse_from(args).map(|o| o.check())
        };
        assert!(bad(&["--node", "a.b"]).is_err());
        assert!(bad(&["--nats", "tls://h"]).is_err());
        assert!(bad(&["--buffer-bytes", "10"]).is_err());
        assert!(bad(&["--heartbeat", "0"]).is_err());
        assert!(matches!(bad(&["--heartbeat", "8"]), Ok(Err(_))));
        assert!(matches!(
            bad(&["--heartbeat", "0.25", "--silence", "2"]),
            Ok(Ok(()))
        ));
    }
}
