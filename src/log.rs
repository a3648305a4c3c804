// SPDX-License-Identifier: GPL-2.0

//! Kernel-log output: trace levels and the rate limiting of lines that clients cause.
//!
//! The Rust 7.3 kernel crate has only `pr_*_once!`, no rate-limited printing, so
//! [`RateLimit`] does what the C `___ratelimit` does: at most `burst` lines per interval, and
//! a count of the lines it held back, reported with the next line it lets through.

use kernel::{
    fmt, new_spinlock,
    prelude::*,
    sync::SpinLock,
    time::{
        Delta,
        Instant,
        Monotonic, //
    },
};

/// Trace level of errors (always logged).
pub(crate) const TRACE_ERRORS: u8 = 0;
/// Trace level of connections and disconnections.
pub(crate) const TRACE_CONNECTIONS: u8 = 1;
/// Trace level of every message.
pub(crate) const TRACE_MESSAGES: u8 = 2;

/// The current window of a [`RateLimit`].
struct Window {
    start: Instant<Monotonic>,
    printed: u32,
    missed: u32,
}

/// At most `burst` lines per `interval`.
#[pin_data]
pub(crate) struct RateLimit {
    #[pin]
    window: SpinLock<Window>,
    burst: u32,
    interval: Delta,
}

impl RateLimit {
    /// A limit of `burst` lines per `interval_ms` milliseconds.
    pub(crate) fn new(burst: u32, interval_ms: i64) -> impl PinInit<Self> {
        pin_init!(Self {
            window <- new_spinlock!(
                Window {
                    start: Instant::now(),
                    printed: 0,
                    missed: 0,
                },
                "RateLimit::window"
            ),
            burst,
            interval: Delta::from_millis(interval_ms),
        })
    }

    /// Whether a line may be printed now: `Some(missed)` with the number of lines suppressed
    /// since the last one printed, or `None` to suppress this one.
    pub(crate) fn check(&self) -> Option<u32> {
        let now = Instant::now();
        let mut w = self.window.lock();
        let mut missed = 0;
        if now - w.start >= self.interval {
            missed = w.missed;
            w.start = now;
            w.printed = 0;
            w.missed = 0;
        }
        if w.printed < self.burst {
            w.printed += 1;
            Some(missed)
        } else {
            w.missed += 1;
            None
        }
    }
}

/// Logs one line at trace `level` through rate limit `limit`, if the server's `trace`
/// parameter asks for that level.
///
/// Arguments are formatted only when the line is printed.
macro_rules! kchat_log {
    ($server:expr, $limit:ident, $level:expr, $($arg:tt)*) => {{
        let server = &$server;
        if server.params.trace >= $level {
            if let Some(missed) = server.$limit.check() {
                if missed > 0 {
                    kernel::pr_info!("{} log lines suppressed (rate limit)\n", missed);
                }
                if $level == $crate::log::TRACE_ERRORS {
                    kernel::pr_err!($($arg)*);
                } else {
                    kernel::pr_info!($($arg)*);
                }
            }
        }
    }};
}
pub(crate) use kchat_log;

/// Most bytes of client text that one log line shows.
pub(crate) const LOG_TEXT_MAX: usize = 80;

/// Client text made safe for the kernel log: printable ASCII passes, everything else
/// (control characters, newlines, bytes over 0x7e) and the backslash are shown as `\xNN` or
/// `\\`, so a client cannot forge log lines; more than [`LOG_TEXT_MAX`] bytes are cut with a
/// note of the full length.
pub(crate) struct Escaped<'a>(pub(crate) &'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = &self.0[..self.0.len().min(LOG_TEXT_MAX)];
        for &c in shown {
            match c {
                b'\\' => f.write_str("\\\\")?,
                0x20..=0x7e => fmt::Write::write_char(f, char::from(c))?,
                _ => f.write_fmt(fmt!("\\x{c:02x}"))?,
            }
        }
        if self.0.len() > LOG_TEXT_MAX {
            f.write_fmt(fmt!("... ({} bytes)", self.0.len()))?;
        }
        Ok(())
    }
}

#[kunit_tests(kchat_log)]
mod tests {
    use super::*;
    use kernel::str::CString;

    #[test]
    fn burst_then_suppress() -> Result {
        let limit = KBox::pin_init(RateLimit::new(3, 60_000), GFP_KERNEL)?;
        let mut allowed = 0;
        for _ in 0..10 {
            if limit.check().is_some() {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 3);
        Ok(())
    }

    #[test]
    fn escaping() -> Result {
        let check = |input: &[u8], want: &[u8]| -> Result {
            let s = CString::try_from_fmt(fmt!("{}", Escaped(input)))?;
            let got = s.to_bytes();
            assert_eq!(got, want);
            Ok(())
        };
        check(b"hi there", b"hi there")?;
        check(b"a\nb", b"a\\x0ab")?;
        check(b"\x1b[31mred", b"\\x1b[31mred")?;
        check(b"back\\slash", b"back\\\\slash")?;
        check("caf\u{e9}".as_bytes(), b"caf\\xc3\\xa9")?;
        check(&[b'y'; 100], b"yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy... (100 bytes)")?;
        Ok(())
    }
}
