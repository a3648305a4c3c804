// SPDX-License-Identifier: GPL-2.0
//! The message payload as printable text, for protocols that carry lines of text (IRC): the
//! same fields, check and filler as the binary payload, spelled so that no byte is a space,
//! a control character or anything outside ASCII.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `KCT1` |
//! | 4 | 8 | sender id, lowercase hex |
//! | 12 | 8 | sequence number, lowercase hex |
//! | 20 | 8 | header check (as in the binary payload), lowercase hex |
//! | 28 | 16 | send time, `CLOCK_MONOTONIC` ns, lowercase hex |
//! | 44 | .. | filler: byte `k` is [`ALPHABET`] at the low 6 bits of byte `k % 8` of filler word `k / 8` |
//!
//! Receivers recompute and compare every byte, as for the binary payload (whose tests cover
//! both).

use super::{header_check, seed, word, Check, Header};

/// Length of the text header; the smallest text payload.
pub(crate) const HEADER_LEN: usize = 44;

/// First bytes of a text payload.
const MAGIC: [u8; 4] = *b"KCT1";

/// The 64 filler characters.
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Lowercase hex digits.
const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `v` as `digits` lowercase hex digits, most significant first.
fn put_hex(out: &mut Vec<u8>, v: u64, digits: u32) {
    for i in (0..digits).rev() {
        out.push(HEX[(v >> (4 * i)) as usize & 15]);
    }
}

/// The value of the lowercase hex digits `s`, or `None` if one is not a digit.
fn hex(s: &[u8]) -> Option<u64> {
    s.iter().try_fold(0u64, |v, &c| {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        Some(v << 4 | u64::from(d))
    })
}

/// Filler byte `k` of the message with filler seed `seed`.
#[inline]
fn filler(seed: u64, k: usize) -> u8 {
    ALPHABET[(word(seed, k / 8) >> (8 * (k % 8))) as usize & 63]
}

/// Appends the `len`-byte text payload of message `seq` of `sender`, sent at `sent_ns`.
///
/// # Panics
///
/// If `len` is shorter than [`HEADER_LEN`].
pub(crate) fn append(out: &mut Vec<u8>, len: usize, sender: u32, seq: u32, sent_ns: u64) {
    assert!(len >= HEADER_LEN, "text payload shorter than its header");
    out.reserve(len);
    out.extend_from_slice(&MAGIC);
    put_hex(out, u64::from(sender), 8);
    put_hex(out, u64::from(seq), 8);
    let s = seed(sender, seq);
    put_hex(out, u64::from(header_check(s, len, sent_ns)), 8);
    put_hex(out, sent_ns, 16);
    out.extend((0..len - HEADER_LEN).map(|k| filler(s, k)));
}

/// Checks a received text payload against what [`append`] produced for its header.
pub(crate) fn check(p: &[u8]) -> Check {
    if p.len() < HEADER_LEN || p[..4] != MAGIC {
        return Check::Unreadable;
    }
    let (Some(sender), Some(seq), Some(sum), Some(sent_ns)) = (
        hex(&p[4..12]),
        hex(&p[12..20]),
        hex(&p[20..28]),
        hex(&p[28..44]),
    ) else {
        return Check::Unreadable;
    };
    let header = Header {
        sender: sender as u32,
        seq: seq as u32,
        sent_ns,
    };
    let s = seed(header.sender, header.seq);
    let filler_ok = p[HEADER_LEN..]
        .iter()
        .enumerate()
        .all(|(k, &b)| b == filler(s, k));
    if sum != u64::from(header_check(s, p.len(), sent_ns)) || !filler_ok {
        return Check::Corrupt(header);
    }
    Check::Intact(header)
}
