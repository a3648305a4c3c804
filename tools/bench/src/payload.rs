// SPDX-License-Identifier: GPL-2.0
//! The benchmark's message payload and the barrier's sync payload.
//!
//! A message payload is a 24-byte header followed by filler:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `KCB1` |
//! | 4 | 4 | sender id, u32 LE |
//! | 8 | 4 | sequence number (per sender, from 0), u32 LE |
//! | 12 | 4 | header check: hash of (sender, seq, payload length, send time), u32 LE |
//! | 16 | 8 | send time, `CLOCK_MONOTONIC` ns, u64 LE |
//! | 24 | .. | filler: u64 LE words derived from (sender, seq, word offset) |
//!
//! Receivers recompute the header check and the filler and compare every byte, so a
//! corrupted, truncated, extended, shifted or swapped message is caught. A sync payload is
//! `KCBS` + a u32 LE sync id. Protocols of text lines (IRC) carry the same message as
//! printable text ([`text`]); [`Format`] says which.

pub(crate) mod text;

/// Length of the message header; the smallest allowed `--payload`.
pub(crate) const HEADER_LEN: usize = 24;

/// First bytes of a message payload.
const MAGIC: [u8; 4] = *b"KCB1";

/// First bytes of a sync payload.
const SYNC_MAGIC: [u8; 4] = *b"KCBS";

/// Length of a sync payload.
pub(crate) const SYNC_LEN: usize = 8;

/// The fields a receiver reads from a message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) sender: u32,
    pub(crate) seq: u32,
    pub(crate) sent_ns: u64,
}

/// What [`check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// Header and every filler byte are as sent.
    Intact(Header),
    /// The header is readable but the length or some filler byte is wrong.
    Corrupt(Header),
    /// Not a message payload at all (too short or wrong magic).
    Unreadable,
}

/// How a protocol carries the message payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// Any bytes (kchat frames, RESP bulk strings): [`append`], [`check`].
    Binary,
    /// Printable ASCII without spaces (IRC lines): [`text::append`], [`text::check`].
    Text,
}

impl Format {
    /// The length of the header, the shortest payload.
    pub(crate) fn header_len(self) -> usize {
        match self {
            Format::Binary => HEADER_LEN,
            Format::Text => text::HEADER_LEN,
        }
    }

    /// Appends the `len`-byte payload of message `seq` of `sender`, sent at `sent_ns`.
    pub(crate) fn append(self, out: &mut Vec<u8>, len: usize, sender: u32, seq: u32, sent_ns: u64) {
        match self {
            Format::Binary => append(out, len, sender, seq, sent_ns),
            Format::Text => text::append(out, len, sender, seq, sent_ns),
        }
    }

    /// Appends `prefix`, the payload as [`Format::append`] makes it, and CR LF: a RESP
    /// `PUBLISH` (binary) or an IRC `PRIVMSG` (text).
    pub(crate) fn append_line(
        self,
        out: &mut Vec<u8>,
        prefix: &[u8],
        len: usize,
        sender: u32,
        seq: u32,
        sent_ns: u64,
    ) {
        out.extend_from_slice(prefix);
        self.append(out, len, sender, seq, sent_ns);
        out.extend_from_slice(b"\r\n");
    }

    /// Checks a received payload.
    pub(crate) fn check(self, p: &[u8]) -> Check {
        match self {
            Format::Binary => check(p),
            Format::Text => text::check(p),
        }
    }
}

/// Seed of the filler of one message: a splitmix64 finalizer of (sender, seq).
fn seed(sender: u32, seq: u32) -> u64 {
    let mut z = (u64::from(sender) << 32 | u64::from(seq)).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The header check of a `len`-byte payload: binds the length and the send time (which the
/// filler does not depend on) to (sender, seq).
fn header_check(seed: u64, len: usize, sent_ns: u64) -> u32 {
    let z = (seed ^ sent_ns ^ (len as u64).rotate_left(40)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (z >> 32) as u32
}

/// Filler word `k` of the message with filler seed `seed`: one multiply per 8 bytes, distinct
/// per position, so that moved bytes do not match either.
#[inline]
fn word(seed: u64, k: usize) -> u64 {
    (seed ^ (k as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)).wrapping_mul(0xd6e8_feb8_6659_fd93)
}

/// Appends the `len`-byte payload of message `seq` of `sender`, sent at `sent_ns`, to `out`.
///
/// Allocates only if `out` lacks capacity.
///
/// # Panics
///
/// If `len` is shorter than [`HEADER_LEN`].
pub(crate) fn append(out: &mut Vec<u8>, len: usize, sender: u32, seq: u32, sent_ns: u64) {
    assert!(len >= HEADER_LEN, "payload shorter than its header");
    out.reserve(len);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&sender.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    let s = seed(sender, seq);
    out.extend_from_slice(&header_check(s, len, sent_ns).to_le_bytes());
    out.extend_from_slice(&sent_ns.to_le_bytes());
    let filler = len - HEADER_LEN;
    for k in 0..filler / 8 {
        out.extend_from_slice(&word(s, k).to_le_bytes());
    }
    let tail = filler % 8;
    out.extend_from_slice(&word(s, filler / 8).to_le_bytes()[..tail]);
}

/// Reads a little-endian u32 at `at` (the caller checked the length).
fn u32_at(p: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]])
}

/// Checks a received payload against what [`append`] produced for its header.
pub(crate) fn check(p: &[u8]) -> Check {
    if p.len() < HEADER_LEN || p[..4] != MAGIC {
        return Check::Unreadable;
    }
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&p[16..24]);
    let header = Header {
        sender: u32_at(p, 4),
        seq: u32_at(p, 8),
        sent_ns: u64::from_le_bytes(ts),
    };
    let s = seed(header.sender, header.seq);
    if u32_at(p, 12) != header_check(s, p.len(), header.sent_ns) {
        return Check::Corrupt(header);
    }
    let filler = &p[HEADER_LEN..];
    let mut words = filler.chunks_exact(8);
    for (k, w) in words.by_ref().enumerate() {
        if u64::from_le_bytes(w.try_into().expect("8-byte chunk")) != word(s, k) {
            return Check::Corrupt(header);
        }
    }
    let tail = words.remainder();
    if *tail != word(s, filler.len() / 8).to_le_bytes()[..tail.len()] {
        return Check::Corrupt(header);
    }
    Check::Intact(header)
}

/// The sync payload with id `id`.
pub(crate) fn sync(id: u32) -> [u8; SYNC_LEN] {
    let mut p = [0u8; SYNC_LEN];
    p[..4].copy_from_slice(&SYNC_MAGIC);
    p[4..].copy_from_slice(&id.to_le_bytes());
    p
}

/// The id of a sync payload, or `None` if `p` is not one.
pub(crate) fn parse_sync(p: &[u8]) -> Option<u32> {
    (p.len() == SYNC_LEN && p[..4] == SYNC_MAGIC).then(|| u32_at(p, 4))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMATS: [Format; 2] = [Format::Binary, Format::Text];

    /// The `len`-byte payload of message `seq` of `sender` sent at `sent_ns`, in `format`.
    fn made(format: Format, len: usize, sender: u32, seq: u32, sent_ns: u64) -> Vec<u8> {
        let mut out = Vec::new();
        format.append(&mut out, len, sender, seq, sent_ns);
        out
    }

    /// Checks, in both formats, that a payload survives the round trip for every length from
    /// the header up to a few words (all tail sizes) and a large one, with the header fields
    /// intact; and that text payloads are printable ASCII without spaces.
    #[test]
    fn round_trip() {
        for format in FORMATS {
            let min = format.header_len();
            for len in (min..min + 40).chain([400, 65_536]) {
                let out = made(format, len, 0xdead_beef, 123_456, u64::MAX - 3);
                assert_eq!(out.len(), len);
                let want = Header {
                    sender: 0xdead_beef,
                    seq: 123_456,
                    sent_ns: u64::MAX - 3,
                };
                assert_eq!(format.check(&out), Check::Intact(want), "{format:?} {len}");
                if format == Format::Text {
                    assert!(out.iter().all(u8::is_ascii_graphic), "{out:?}");
                }
            }
        }
    }

    /// Checks, in both formats, that every single changed byte after the magic, a
    /// truncation, an extension and another message's filler under this header are all
    /// caught (binary: as corrupt; text: as corrupt, or unreadable where a header digit is no
    /// longer hex), and that a wrong magic or a short payload is unreadable.
    #[test]
    fn detects_corruption() {
        for format in FORMATS {
            let good = made(format, 64, 1, 2, 3);
            for i in 4..good.len() {
                let mut bad = good.clone();
                bad[i] ^= 0x01;
                let caught = match format.check(&bad) {
                    Check::Corrupt(_) => true,
                    Check::Unreadable => format == Format::Text,
                    Check::Intact(_) => false,
                };
                assert!(caught, "{format:?}: change at {i} not caught");
            }
            assert!(matches!(format.check(&good[..63]), Check::Corrupt(_)));
            let mut longer = good.clone();
            longer.push(b'A');
            assert!(matches!(format.check(&longer), Check::Corrupt(_)));
            let mut other = made(format, 64, 1, 3, 3);
            let header = format.header_len();
            other[..header].copy_from_slice(&good[..header]);
            assert!(matches!(format.check(&other), Check::Corrupt(_)));
            let mut bad_magic = good.clone();
            bad_magic[0] = b'X';
            assert_eq!(format.check(&bad_magic), Check::Unreadable);
            assert_eq!(format.check(&good[..10]), Check::Unreadable);
        }
    }

    /// Checks sync payloads: round trip, and neither kind is mistaken for the other.
    #[test]
    fn sync_payload() {
        assert_eq!(parse_sync(&sync(42)), Some(42));
        let mut msg = Vec::new();
        append(&mut msg, HEADER_LEN, 0, 0, 0);
        assert_eq!(parse_sync(&msg), None);
        assert_eq!(check(&sync(1)), Check::Unreadable);
    }
}
