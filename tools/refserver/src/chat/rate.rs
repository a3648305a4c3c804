//! Flood control: the per-client token bucket, as kchat's src/throttle.rs.

/// Nanoseconds per second.
const NSEC_PER_SEC: i64 = 1_000_000_000;

/// The per-client rate limit, as kchat's src/throttle.rs: `max_msg_rate` messages per second
/// with a burst of as many, kept as the generic cell rate algorithm's theoretical arrival time.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    /// Time one message is worth, ns; 0 when unlimited.
    interval: i64,
    /// How far ahead of its rate a client may be (the burst less one message), ns.
    tolerance: i64,
}

impl Rate {
    /// `per_sec` messages per second, 0 for unlimited.
    pub fn new(per_sec: u32) -> Self {
        if per_sec == 0 {
            return Self {
                interval: 0,
                tolerance: 0,
            };
        }
        let interval = NSEC_PER_SEC / i64::from(per_sec);
        // A burst of exactly `per_sec`: the last message of the burst may be one interval
        // ahead of the bucket's tolerance.
        Self {
            interval,
            tolerance: interval * (i64::from(per_sec) - 1),
        }
    }
}

/// One client's token bucket.
#[derive(Debug, Default, Clone, Copy)]
pub struct Bucket {
    /// When the client's sending would be exactly on its rate (ns on the shard's clock).
    tat: i64,
}

impl Bucket {
    /// Takes one message's worth at `now`. The bucket may go into debt: every message of one
    /// read is charged, and the next read waits longer.
    pub fn charge(&mut self, rate: Rate, now: i64) {
        if rate.interval != 0 {
            self.tat = self.tat.max(now) + rate.interval;
        }
    }

    /// How long from `now` the client must wait before it is read again (0: it may be).
    pub fn wait(&self, rate: Rate, now: i64) -> i64 {
        if rate.interval == 0 {
            return 0;
        }
        (self.tat - rate.tolerance - now).max(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_burst_then_rate() {
        // kchat's formulas: 10 per second with a burst of 10. From a full bucket, ten
        // messages are read without waiting, then one per 100 ms.
        let rate = Rate::new(10);
        let mut b = Bucket::default();
        let t0 = 5 * NSEC_PER_SEC;
        for _ in 0..10 {
            assert_eq!(b.wait(rate, t0), 0);
            b.charge(rate, t0);
        }
        assert_eq!(b.wait(rate, t0), 100_000_000);
        let t1 = t0 + 100_000_000;
        assert_eq!(b.wait(rate, t1), 0);
        b.charge(rate, t1);
        assert_eq!(b.wait(rate, t1), 100_000_000);
        // 3000 messages in one read at 1000/s: 2 s of debt, plus the interval after the
        // burst. Unlimited never waits.
        let mut d = Bucket::default();
        for _ in 0..3000 {
            d.charge(Rate::new(1000), 0);
        }
        assert_eq!(d.wait(Rate::new(1000), 0), 2 * NSEC_PER_SEC + 1_000_000);
        let mut u = Bucket::default();
        u.charge(Rate::new(0), 0);
        assert_eq!(u.wait(Rate::new(0), 0), 0);
    }
}
