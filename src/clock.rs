// SPDX-License-Identifier: GPL-2.0

//! Wall-clock time, for what clients see as dates (IRC's channel creation and topic times).
//! kchat's own timing (rate limits, timeouts) uses the monotonic clock.

/// Seconds since the epoch, UTC.
pub(crate) fn unix_seconds() -> i64 {
    // SAFETY: `ktime_get_real_seconds` reads the timekeeping core's current second; it takes
    // no argument, has no precondition and may be called from any context.
    unsafe { kernel::bindings::ktime_get_real_seconds() }
}
