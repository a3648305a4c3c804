// SPDX-License-Identifier: GPL-2.0

//! Kernel-log output: trace levels and the rate limiting of lines that clients cause.
//!
//! The Rust 7.3 kernel crate has only `pr_*_once!`, no rate-limited printing, so
//! [`RateLimit`] does what the C `___ratelimit` does: at most `burst` lines per interval, and
//! a count of the lines it held back, reported with the next line it lets through.

use kernel::{
    new_spinlock,
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
                kernel::pr_info!($($arg)*);
            }
        }
    }};
}
pub(crate) use kchat_log;

#[kunit_tests(kchat_log)]
mod tests {
    use super::*;

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
}
