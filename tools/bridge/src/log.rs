// SPDX-License-Identifier: GPL-2.0
//! Log lines on stderr, `kchat-bridge NODE: what happened`, one write each; text that came
//! from a peer is shown escaped and cut short, so no peer can forge or flood log lines.

use std::{
    io::Write,
    sync::OnceLock,
    time::{Duration, Instant},
};

static NODE: OnceLock<String> = OnceLock::new();

/// Sets the node name every line starts with.
pub fn init(node: &str) {
    let _ = NODE.set(node.to_string());
}

/// Writes one line.
pub fn line(msg: std::fmt::Arguments<'_>) {
    let node = NODE.get().map_or("?", String::as_str);
    let text = format!("kchat-bridge {node}: {msg}\n");
    if cfg!(test) {
        // Where the test harness captures it.
        eprint!("{text}");
    } else {
        let _ = std::io::stderr().write_all(text.as_bytes());
    }
}

/// Logs a line: `log!("connected to {url}")`.
macro_rules! log {
    ($($arg:tt)*) => {
        $crate::log::line(format_args!($($arg)*))
    };
}
pub(crate) use log;

/// Peer bytes, fit for a log line: at most `max` characters, control characters escaped.
pub fn shown(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == max {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Keeps a repeated complaint (a server refusing connections, kchat refusing frames) to one
/// line per `every`, with the count of those not logged.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    last: Option<(Instant, String)>,
    suppressed: u64,
}

impl Throttle {
    /// At most one line per `every` for the same message (a new message logs at once).
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// The line to log for `msg` now, or `None` to stay quiet.
    pub fn check(&mut self, msg: &str, now: Instant) -> Option<String> {
        if let Some((at, last)) = &self.last {
            if last == msg && now.duration_since(*at) < self.every {
                self.suppressed += 1;
                return None;
            }
        }
        let line = match std::mem::take(&mut self.suppressed) {
            0 => msg.to_string(),
            n => format!("{msg} (and {n} more like it)"),
        };
        self.last = Some((now, msg.to_string()));
        Some(line)
    }

    /// Forgets the last message (after a success: the next failure logs at once).
    pub fn reset(&mut self) {
        self.last = None;
        self.suppressed = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_escapes_and_cuts() {
        assert_eq!(shown(b"a\nb\r\x1b[31m", 100), "a\\nb\\r\\u{1b}[31m");
        assert_eq!(shown(b"abcdef", 3), "abc...");
        assert_eq!(shown(b"\xff", 3), "\u{fffd}");
    }

    #[test]
    fn throttle() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut t = Throttle::new(Duration::from_secs(10));
        assert_eq!(t.check("refused", t0).as_deref(), Some("refused"));
        assert_eq!(t.check("refused", t0 + s), None);
        assert_eq!(t.check("refused", t0 + 2 * s), None);
        assert_eq!(
            t.check("refused", t0 + 11 * s).as_deref(),
            Some("refused (and 2 more like it)")
        );
        assert_eq!(t.check("other", t0 + 12 * s).as_deref(), Some("other"));
        t.reset();
        assert_eq!(t.check("other", t0 + 12 * s).as_deref(), Some("other"));
    }
}
