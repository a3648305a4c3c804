// SPDX-License-Identifier: GPL-2.0

//! What payloads mean: commands (`/nick`, `/who`), labels and nicks, and the escaping of
//! client text before it reaches the kernel log.
//!
//! Labels live here and nowhere else, so that rooms and direct messages (DESIGN.md section 1,
//! "planned next") change this file and the registry, not the data path.

use kernel::{
    fmt,
    prelude::*, //
};

use crate::net::SocketAddrV4;

/// Longest nick, and so the longest label (`255.255.255.255:65535` is 21 bytes).
pub(crate) const MAX_LABEL_LEN: usize = 32;

/// How a client is shown to others: its nick, or its `ip:port` until it sets one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Label {
    bytes: [u8; MAX_LABEL_LEN],
    len: u8,
}

/// Why a requested nick was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NickError {
    /// No name given.
    Empty,
    /// Longer than [`MAX_LABEL_LEN`] bytes.
    TooLong,
    /// A byte outside `[A-Za-z0-9_.-]`.
    BadChar,
}

impl NickError {
    /// The `! ...` text the client gets back.
    pub(crate) fn message(self) -> &'static str {
        match self {
            Self::Empty => "usage: /nick NAME",
            Self::TooLong => "invalid nick: longer than 32 bytes",
            Self::BadChar => "invalid nick: use only A-Z a-z 0-9 _ . -",
        }
    }
}

impl Label {
    /// The default label, `ip:port`.
    pub(crate) fn from_addr(addr: SocketAddrV4) -> Self {
        let mut label = Self {
            bytes: [0; MAX_LABEL_LEN],
            len: 0,
        };
        // `a.b.c.d:port` is at most 21 bytes: it always fits.
        let _ = fmt::Write::write_fmt(&mut label, fmt!("{addr}"));
        label
    }

    /// A nick: 1 to 32 bytes of `[A-Za-z0-9_.-]`.
    pub(crate) fn nick(name: &[u8]) -> Result<Self, NickError> {
        if name.is_empty() {
            return Err(NickError::Empty);
        }
        if name.len() > MAX_LABEL_LEN {
            return Err(NickError::TooLong);
        }
        if !name
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
        {
            return Err(NickError::BadChar);
        }
        let mut bytes = [0; MAX_LABEL_LEN];
        bytes[..name.len()].copy_from_slice(name);
        Ok(Self {
            bytes,
            // At most MAX_LABEL_LEN (32): fits in a u8.
            len: name.len() as u8,
        })
    }

    /// The label's bytes (always ASCII).
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Whether two labels name the same nick, ignoring ASCII case, as IRC does: `Bob` cannot
    /// pass for `bob`.
    pub(crate) fn same_nick(&self, other: &Label) -> bool {
        self.as_bytes().eq_ignore_ascii_case(other.as_bytes())
    }
}

impl fmt::Write for Label {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let at = usize::from(self.len);
        let end = at + s.len();
        if end > MAX_LABEL_LEN {
            return Err(fmt::Error);
        }
        self.bytes[at..end].copy_from_slice(s.as_bytes());
        // `end <= MAX_LABEL_LEN` (32).
        self.len = end as u8;
        Ok(())
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Labels are ASCII by construction (digits and dots, or the nick alphabet).
        f.write_str(core::str::from_utf8(self.as_bytes()).unwrap_or("?"))
    }
}

/// What a client's payload asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Command<'a> {
    /// `/nick NAME`.
    Nick(&'a [u8]),
    /// `/who`.
    Who,
    /// Anything else: a chat message.
    Chat,
}

/// Parses a payload. Trailing whitespace (a newline from a line-based client) is ignored
/// around commands; everything that is not a command is chat, relayed as it came.
pub(crate) fn parse(payload: &[u8]) -> Command<'_> {
    let text = payload.trim_ascii_end();
    if text == b"/who" {
        return Command::Who;
    }
    if text == b"/nick" {
        return Command::Nick(b"");
    }
    if let Some(name) = text.strip_prefix(b"/nick ") {
        return Command::Nick(name.trim_ascii());
    }
    Command::Chat
}

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

#[kunit_tests(kchat_proto)]
mod tests {
    use super::*;
    use kernel::str::CString;

    #[test]
    fn commands() -> Result {
        let cases: [(&[u8], Command<'_>); 9] = [
            (b"/who", Command::Who),
            (b"/who\n", Command::Who),
            (b"/nick bob", Command::Nick(b"bob")),
            (b"/nick  bob \r\n", Command::Nick(b"bob")),
            (b"/nick", Command::Nick(b"")),
            (b"/nickname", Command::Chat),
            (b"/whois x", Command::Chat),
            (b"hello /who", Command::Chat),
            (b"", Command::Chat),
        ];
        for (payload, want) in cases {
            let got = parse(payload);
            assert_eq!(got, want);
        }
        Ok(())
    }

    #[test]
    fn nicks() -> Result {
        let cases: [(&[u8], Result<(), NickError>); 7] = [
            (b"bob", Ok(())),
            (b"A-z_0.9", Ok(())),
            (&[b'x'; 32], Ok(())),
            (&[b'x'; 33], Err(NickError::TooLong)),
            (b"", Err(NickError::Empty)),
            (b"bob smith", Err(NickError::BadChar)),
            (b"b:b", Err(NickError::BadChar)),
        ];
        for (name, want) in cases {
            let got = Label::nick(name).map(|_| ());
            assert_eq!(got, want);
        }
        let a = Label::nick(b"Bob").map_err(|_| EINVAL)?;
        let b = Label::nick(b"bOB").map_err(|_| EINVAL)?;
        let same = a.same_nick(&b);
        assert!(same);
        Ok(())
    }

    #[test]
    fn address_label() -> Result {
        let l = Label::from_addr(SocketAddrV4 {
            ip: [255, 255, 255, 255],
            port: 65535,
        });
        assert_eq!(l.as_bytes(), b"255.255.255.255:65535");
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
