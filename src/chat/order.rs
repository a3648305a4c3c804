// SPDX-License-Identifier: GPL-2.0

//! Sorting large elements without large stack frames.
//!
//! `core`'s slice sorts recurse, with frames of 0.8 KiB per level even for 16-byte elements,
//! and keep scratch copies of the elements on the stack at the leaves (48 of them in
//! `small_sort_general`: 4.6 KiB for the stats view's snapshot entries): relaying a batch
//! spread over 100 rooms overflowed a kworker's 16 KiB stack inside `sort_unstable_by_key`.
//! [`sort_by_key`] heap-sorts 16-byte keys instead (no recursion, no scratch), then moves the
//! elements into place by following the permutation's cycles, with swaps.

use kernel::prelude::*;

/// Sorts `v` by `key`, keeping the order of equal keys (stable). Fails only if the keys cannot
/// be allocated; `v` is then unchanged.
pub(super) fn sort_by_key<T>(v: &mut [T], key: impl Fn(&T) -> u64) -> Result {
    let mut keys = KVec::<(u64, usize)>::with_capacity(v.len(), GFP_KERNEL | __GFP_NOWARN)?;
    for (i, e) in v.iter().enumerate() {
        keys.push_within_capacity((key(e), i)).map_err(|_| ENOMEM)?;
    }
    // Distinct pairs (the index breaks ties), so unstable sorting is stable here.
    heapsort(&mut keys);
    // `keys[i].1` is where the element that belongs at `i` is now; a position done is
    // marked `usize::MAX`.
    for start in 0..keys.len() {
        if keys[start].1 == usize::MAX {
            continue;
        }
        let mut at = start;
        loop {
            let src = core::mem::replace(&mut keys[at].1, usize::MAX);
            if src == start {
                break;
            }
            v.swap(at, src);
            at = src;
        }
    }
    Ok(())
}

/// Sorts `v` in place, in O(n log n) time and constant stack.
pub(super) fn heapsort<K: Ord + Copy>(v: &mut [K]) {
    /// Moves `v[at]` down the max-heap `v[..end]` to where it belongs.
    fn sift_down<K: Ord + Copy>(v: &mut [K], mut at: usize, end: usize) {
        loop {
            let mut child = 2 * at + 1;
            if child >= end {
                return;
            }
            if child + 1 < end && v[child + 1] > v[child] {
                child += 1;
            }
            if v[at] >= v[child] {
                return;
            }
            v.swap(at, child);
            at = child;
        }
    }
    let n = v.len();
    for at in (0..n / 2).rev() {
        sift_down(v, at, n);
    }
    for end in (1..n).rev() {
        v.swap(0, end);
        sift_down(v, 0, end);
    }
}

#[kunit_tests(kchat_order)]
mod tests {
    use super::*;

    #[test]
    fn sorts_stably() -> Result {
        // (key, original position) pairs in a scrambled order, with ties.
        let mut v = KVec::new();
        for i in 0..300u64 {
            v.push(((i * 7919) % 13, i), GFP_KERNEL)?;
        }
        sort_by_key(&mut v, |e| e.0)?;
        let sorted = v
            .windows(2)
            .all(|w| w[0].0 < w[1].0 || (w[0].0 == w[1].0 && w[0].1 < w[1].1));
        assert!(sorted);
        let n = v.len();
        assert_eq!(n, 300);
        Ok(())
    }
}
