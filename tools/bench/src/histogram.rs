// SPDX-License-Identifier: GPL-2.0
//! A fixed-size log-linear latency histogram (HDR-like): constant memory, constant-time
//! recording, percentiles within about 3 %.

/// Sub-buckets per power of two, as a bit count: 2^5 = 32, so a bucket spans at most 1/32 of
/// its value.
const SUB_BITS: u32 = 5;
/// Sub-buckets per power of two.
const SUB: usize = 1 << SUB_BITS;
/// Buckets to cover every `u64`: values below `SUB` exactly, then `SUB` per power of two.
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * SUB;

/// Counts of values (nanoseconds here) in log-linear buckets.
#[derive(Debug, Clone)]
pub(crate) struct Histogram {
    counts: Box<[u64]>,
    total: u64,
    min: u64,
    max: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

/// The bucket holding `v`.
fn index(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros();
    let shift = exp - SUB_BITS;
    let sub = (v >> shift) as usize - SUB;
    (shift as usize + 1) * SUB + sub
}

/// The largest value that falls in bucket `i`.
fn bucket_high(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let shift = (i / SUB - 1) as u32;
    let sub = (i % SUB + SUB) as u64;
    // The last bucket's end would overflow: it ends at u64::MAX.
    ((sub + 1) << shift).wrapping_sub(1).max(sub << shift)
}

impl Histogram {
    /// An empty histogram.
    pub(crate) fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
            min: u64::MAX,
            max: 0,
            sum: 0,
        }
    }

    /// Adds one value.
    pub(crate) fn record(&mut self, v: u64) {
        self.counts[index(v)] += 1;
        self.total += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += u128::from(v);
    }

    /// Adds every value of `other`.
    pub(crate) fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.total += other.total;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    /// Largest value recorded (0 if none).
    pub(crate) fn max(&self) -> u64 {
        self.max
    }

    /// Mean of the values (0 if none).
    pub(crate) fn mean(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }

    /// The value at quantile `q` (0..=1): the upper end of the bucket holding the
    /// ceil(q * count)-th smallest value, never above the true maximum; 0 if empty.
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return bucket_high(i).clamp(self.min, self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks bucket boundaries: every value falls in a bucket whose upper end is at least the
    /// value and at most 1/32 above it, buckets are monotonic, and u64::MAX fits.
    #[test]
    fn buckets() {
        let mut last = 0;
        for v in 0..5000u64 {
            assert!(index(v) >= last, "monotonic at {v}");
            last = index(v);
        }
        for v in (0..5000u64).chain([1 << 20, (1 << 40) + 12345, u64::MAX - 1, u64::MAX]) {
            let i = index(v);
            assert!(i < BUCKETS);
            let high = bucket_high(i);
            assert!(high >= v, "{v} in bucket ending {high}");
            assert!((high - v) as f64 <= v as f64 / SUB as f64, "{v}: {high}");
        }
    }

    /// Checks percentiles on 1..=10000 (p50 near 5000, p99 near 9900, max exact, within 1/32),
    /// merge, and the empty histogram.
    #[test]
    fn quantiles() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        for v in 1..=10_000u64 {
            if v % 2 == 0 {
                a.record(v);
            } else {
                b.record(v);
            }
        }
        a.merge(&b);
        assert_eq!(a.total, 10_000);
        assert_eq!(a.max(), 10_000);
        assert!((a.mean() - 5000.5).abs() < 1e-9);
        for (q, want) in [
            (0.5, 5000.0),
            (0.9, 9000.0),
            (0.99, 9900.0),
            (1.0, 10_000.0),
        ] {
            let got = a.quantile(q) as f64;
            assert!(
                got >= want && got <= want * (1.0 + 1.0 / 32.0),
                "q{q}: {got}"
            );
        }
        assert_eq!(a.quantile(0.0), 1);
        assert_eq!(Histogram::new().quantile(0.5), 0);
        let mut one = Histogram::new();
        one.record(777_777);
        assert_eq!(one.quantile(0.5), 777_777, "clamped to the only value");
    }
}
