// SPDX-License-Identifier: GPL-2.0

//! Flood control: a token bucket per client, as IRC servers do it.
//!
//! A client may send `max_msg_rate` messages per second, with a burst of as many. A client over
//! its rate is neither dropped nor allowed to cost others anything: kchat stops reading its
//! socket until the bucket has refilled, so TCP flow control pushes back on the flooder alone.
//! The server's throttle work (see `Server`) puts the client back on its shard's ready list
//! when it may read.
//!
//! The bucket is kept as the generic cell rate algorithm's "theoretical arrival time": one
//! number per client, no timer per client.

use kernel::prelude::*;

/// Nanoseconds per second.
const NSEC_PER_SEC: i64 = 1_000_000_000;

/// One client's token bucket.
#[derive(Clone, Copy)]
pub(crate) struct Bucket {
    /// When the client's sending would be exactly on its rate (ns on the server's clock).
    tat: i64,
}

/// The rate limit in force, derived from `max_msg_rate`.
#[derive(Clone, Copy)]
pub(crate) struct Rate {
    /// Time one message is worth, ns; 0 when unlimited.
    interval: i64,
    /// How far ahead of its rate a client may be: the burst less one message, ns.
    tolerance: i64,
}

impl Rate {
    /// `per_sec` messages per second with a burst of as many; 0 means unlimited.
    pub(crate) fn new(per_sec: u32) -> Self {
        if per_sec == 0 {
            return Self {
                interval: 0,
                tolerance: 0,
            };
        }
        let interval = NSEC_PER_SEC / i64::from(per_sec);
        Self {
            interval,
            tolerance: interval * (i64::from(per_sec) - 1),
        }
    }

    /// Whether there is a limit at all.
    pub(crate) fn limited(&self) -> bool {
        self.interval != 0
    }
}

impl Bucket {
    /// A full bucket.
    pub(crate) const fn new() -> Self {
        Self { tat: 0 }
    }

    /// Takes one message's worth from the bucket at time `now`. The bucket may go into debt:
    /// the messages of one read are all charged, and the next read waits longer.
    pub(crate) fn charge(&mut self, rate: Rate, now: i64) {
        if rate.limited() {
            self.tat = self.tat.max(now) + rate.interval;
        }
    }

    /// How many messages the client may send at `now` (`u64::MAX` without a limit).
    pub(crate) fn allowance(&self, rate: Rate, now: i64) -> u64 {
        if !rate.limited() {
            return u64::MAX;
        }
        let slack = rate.tolerance - (self.tat.max(now) - now);
        if slack < 0 {
            return 0;
        }
        // `slack >= 0` and `interval > 0`: the quotient is a small non-negative number.
        (slack / rate.interval) as u64 + 1
    }

    /// How long, from `now`, the client must wait before it may send again (0: it may).
    pub(crate) fn wait(&self, rate: Rate, now: i64) -> i64 {
        if !rate.limited() {
            return 0;
        }
        (self.tat - rate.tolerance - now).max(0)
    }
}

#[kunit_tests(kchat_throttle)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() -> Result {
        // 10 messages per second: a burst of 10, then one per 100 ms.
        let rate = Rate::new(10);
        let mut b = Bucket::new();
        let t0 = 5 * NSEC_PER_SEC;
        for left in (1..=10).rev() {
            let w = b.wait(rate, t0);
            assert_eq!(w, 0);
            let a = b.allowance(rate, t0);
            assert_eq!(a, left);
            b.charge(rate, t0);
        }
        let a = b.allowance(rate, t0);
        assert_eq!(a, 0);
        let w = b.wait(rate, t0);
        assert_eq!(w, 100_000_000);
        // After waiting, one more, and so on.
        let t1 = t0 + w;
        let w = b.wait(rate, t1);
        assert_eq!(w, 0);
        b.charge(rate, t1);
        let w = b.wait(rate, t1);
        assert_eq!(w, 100_000_000);
        // A long pause refills the bucket, but never beyond the burst.
        let t2 = t1 + 60 * NSEC_PER_SEC;
        for _ in 0..10 {
            b.charge(rate, t2);
        }
        let w = b.wait(rate, t2);
        assert_eq!(w, 100_000_000);
        Ok(())
    }

    #[test]
    fn debt_and_unlimited() -> Result {
        let rate = Rate::new(1000);
        let mut b = Bucket::new();
        // 3000 messages at once: 1000 of burst, 2 s of debt (plus the one message interval
        // after the burst).
        for _ in 0..3000 {
            b.charge(rate, 0);
        }
        let w = b.wait(rate, 0);
        assert_eq!(w, 2 * NSEC_PER_SEC + 1_000_000);
        let unlimited = Rate::new(0);
        let mut u = Bucket::new();
        for _ in 0..100_000 {
            u.charge(unlimited, 0);
        }
        let w = u.wait(unlimited, 0);
        assert_eq!(w, 0);
        let a = u.allowance(unlimited, 0);
        assert_eq!(a, u64::MAX);
        Ok(())
    }
}
