// SPDX-License-Identifier: GPL-2.0

//! Reading IRC lines from a byte stream, and splitting a line into its parts.
//!
//! A line ends at LF (a CR before it is dropped); it may be at most [`MAX_BODY`] bytes
//! without its ending. A longer one is reported once and discarded up to its end; the
//! connection stays. A client's partial line waits in a buffer of at most [`MAX_BODY`] + 1
//! bytes, allocated only while a line is incomplete.

use kernel::prelude::*;

use super::lines::MAX_BODY;
use crate::frame::Buf;

/// What a [`LineReader`] found.
pub(crate) enum Input<'a> {
    /// A complete line, without its ending (possibly empty).
    Line(&'a [u8]),
    /// A line longer than the limit began; it is being discarded.
    TooLong,
}

/// Reassembles lines.
pub(crate) struct LineReader {
    /// The start of a line whose end has not arrived (counted in the module's buffer bytes).
    partial: Option<Buf>,
    /// A line over the limit is being skipped.
    skipping: bool,
}

impl LineReader {
    pub(crate) const fn new() -> Self {
        Self {
            partial: None,
            skipping: false,
        }
    }

    /// Bytes of a partial line held.
    pub(crate) fn held(&self) -> usize {
        self.partial.as_ref().map_or(0, |b| b.len())
    }

    /// Consumes `input`, calling `f` with each complete line (or [`Input::TooLong`]) in order.
    /// Stops at the first error `f` returns, or if memory for a partial line is lacking
    /// (`ENOMEM`, mapped by `oom`).
    pub(crate) fn feed<E>(
        &mut self,
        mut input: &[u8],
        oom: E,
        f: &mut dyn FnMut(Input<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        while !input.is_empty() {
            let Some(nl) = input.iter().position(|&c| c == b'\n') else {
                // No end yet: keep the start, unless it is too long already.
                if self.skipping {
                    return Ok(());
                }
                let held = self.held();
                if held + input.len() > MAX_BODY + 1 {
                    self.partial = None;
                    self.skipping = true;
                    return f(Input::TooLong);
                }
                let buf = match &mut self.partial {
                    Some(b) => b,
                    None => {
                        let v = KVVec::with_capacity(MAX_BODY + 1, GFP_KERNEL | __GFP_NOWARN)
                            .map_err(|_| oom)?;
                        self.partial.insert(Buf::new(v))
                    }
                };
                // Within the capacity reserved: at most MAX_BODY + 1 bytes in all.
                let _ = buf.extend_from_slice(input, GFP_KERNEL);
                return Ok(());
            };
            let piece = &input[..nl];
            input = &input[nl + 1..];
            if self.skipping {
                self.skipping = false;
                continue;
            }
            let Some(mut whole) = self.partial.take() else {
                Self::deliver(piece, f)?;
                continue;
            };
            if whole.len() + piece.len() > MAX_BODY + 1 {
                f(Input::TooLong)?;
                continue;
            }
            let _ = whole.extend_from_slice(piece, GFP_KERNEL);
            Self::deliver(&whole, f)?;
        }
        Ok(())
    }

    /// Hands `f` a line without its CR, or `TooLong` if it is over the limit.
    fn deliver<E>(line: &[u8], f: &mut dyn FnMut(Input<'_>) -> Result<(), E>) -> Result<(), E> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > MAX_BODY {
            f(Input::TooLong)
        } else {
            f(Input::Line(line))
        }
    }
}

/// Most parameters a message may have.
pub(crate) const MAX_PARAMS: usize = 15;

/// A line split into command and parameters (an IRCv3 tag section and a source prefix are
/// skipped: clients have no use for them towards a server).
pub(crate) struct Message<'a> {
    pub(crate) command: &'a [u8],
    params: [&'a [u8]; MAX_PARAMS],
    count: usize,
}

impl<'a> Message<'a> {
    /// Splits `line`; `None` if it holds no command.
    pub(crate) fn parse(line: &'a [u8]) -> Option<Self> {
        let mut rest = trim_spaces(line);
        // Tags (`@...`), then a source (`:...`): each a word.
        for mark in [b'@', b':'] {
            if rest.first() == Some(&mark) {
                rest = trim_spaces(split_word(rest).1);
            }
        }
        let (command, mut rest) = split_word(rest);
        if command.is_empty() {
            return None;
        }
        let mut m = Self {
            command,
            params: [&[]; MAX_PARAMS],
            count: 0,
        };
        loop {
            rest = trim_spaces(rest);
            if rest.is_empty() || m.count == MAX_PARAMS {
                break;
            }
            if rest[0] == b':' || m.count == MAX_PARAMS - 1 {
                let trailing = rest.strip_prefix(b":").unwrap_or(rest);
                m.params[m.count] = trailing;
                m.count += 1;
                break;
            }
            let (word, after) = split_word(rest);
            m.params[m.count] = word;
            m.count += 1;
            rest = after;
        }
        Some(m)
    }

    /// The command matches `name` (ignoring case).
    pub(crate) fn is(&self, name: &str) -> bool {
        self.command.eq_ignore_ascii_case(name.as_bytes())
    }

    /// Parameter `i`, if given.
    pub(crate) fn param(&self, i: usize) -> Option<&'a [u8]> {
        (i < self.count).then(|| self.params[i])
    }

    /// Parameter `i` if given and not empty.
    pub(crate) fn arg(&self, i: usize) -> Option<&'a [u8]> {
        self.param(i).filter(|p| !p.is_empty())
    }

    /// How many parameters were given.
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// The parameters from `i` on.
    pub(crate) fn params_from(&self, i: usize) -> &[&'a [u8]] {
        &self.params[i.min(self.count)..self.count]
    }
}

/// Leading spaces removed (only spaces separate parameters).
fn trim_spaces(s: &[u8]) -> &[u8] {
    let i = s.iter().position(|&c| c != b' ').unwrap_or(s.len());
    &s[i..]
}

/// The first word of `s`, and what follows it.
fn split_word(s: &[u8]) -> (&[u8], &[u8]) {
    let i = s.iter().position(|&c| c == b' ').unwrap_or(s.len());
    (&s[..i], &s[i..])
}

/// The comma-separated items of a parameter (empty items skipped).
pub(crate) fn items(list: &[u8]) -> impl Iterator<Item = &[u8]> {
    list.split(|&c| c == b',').filter(|i| !i.is_empty())
}

#[kunit_tests(kchat_irc_line)]
mod tests {
    use super::*;

    fn lines(reader: &mut LineReader, input: &[u8]) -> Result<KVec<KVec<u8>>> {
        let mut out = KVec::new();
        let mut f = |i: Input<'_>| -> Result {
            let mut v = KVec::new();
            match i {
                Input::Line(l) => v.extend_from_slice(l, GFP_KERNEL)?,
                Input::TooLong => v.extend_from_slice(b"<too long>", GFP_KERNEL)?,
            }
            out.push(v, GFP_KERNEL)?;
            Ok(())
        };
        reader.feed(input, ENOMEM, &mut f)?;
        Ok(out)
    }

    #[test]
    fn splits_lines_at_every_byte() -> Result {
        let text: &[u8] = b"NICK a\r\nUSER a 0 * :A b\nPING x\r\n";
        for step in 1..text.len() {
            let mut r = LineReader::new();
            let mut got = KVec::new();
            for piece in text.chunks(step) {
                for l in lines(&mut r, piece)? {
                    got.push(l, GFP_KERNEL)?;
                }
            }
            assert_eq!(got.len(), 3);
            assert_eq!(&got[0][..], b"NICK a");
            assert_eq!(&got[1][..], b"USER a 0 * :A b");
            assert_eq!(&got[2][..], b"PING x");
            assert_eq!(r.held(), 0);
        }
        Ok(())
    }

    #[test]
    fn long_lines_are_reported_once_and_skipped() -> Result {
        let mut r = LineReader::new();
        let mut long = KVec::new();
        long.extend_from_slice(&[b'x'; 600], GFP_KERNEL)?;
        let got = lines(&mut r, &long)?;
        assert_eq!(got.len(), 1);
        let more = lines(&mut r, &long)?;
        assert_eq!(more.len(), 0);
        let end = lines(&mut r, b"xx\nPING a\n")?;
        assert_eq!(end.len(), 1);
        assert_eq!(&end[0][..], b"PING a");
        // 510 bytes fit, 511 do not.
        let mut exact = KVec::new();
        exact.extend_from_slice(&[b'y'; 510], GFP_KERNEL)?;
        exact.extend_from_slice(b"\r\n", GFP_KERNEL)?;
        let ok = lines(&mut r, &exact)?;
        assert_eq!(ok[0].len(), 510);
        Ok(())
    }

    #[test]
    fn parses_messages() -> Result {
        let m = Message::parse(b":nick!u@h PRIVMSG #a,#b :hello  there").ok_or(EINVAL)?;
        assert!(m.is("privmsg"));
        assert_eq!(m.len(), 2);
        assert_eq!(m.param(0), Some(&b"#a,#b"[..]));
        assert_eq!(m.param(1), Some(&b"hello  there"[..]));
        let t = Message::parse(b"@a=b;c TOPIC #x :").ok_or(EINVAL)?;
        assert!(t.is("TOPIC"));
        assert_eq!(t.len(), 2);
        assert_eq!(t.arg(1), None);
        let none = Message::parse(b"   ").is_none();
        assert!(none);
        let u = Message::parse(b"USER  a  0 *   :Real Name").ok_or(EINVAL)?;
        assert_eq!(u.len(), 4);
        assert_eq!(u.param(3), Some(&b"Real Name"[..]));
        let names: KVec<&[u8]> = {
            let mut v = KVec::new();
            for i in items(b",#a,,#b,") {
                v.push(i, GFP_KERNEL)?;
            }
            v
        };
        assert_eq!(names.len(), 2);
        Ok(())
    }
}
