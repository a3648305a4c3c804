// SPDX-License-Identifier: GPL-2.0

//! What a native payload asks for: a command, or a chat message.

use kernel::prelude::*;

/// A parsed payload.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Command<'a> {
    /// `/nick NAME` (empty when no name was given).
    Nick(&'a [u8]),
    /// `/who`.
    Who,
    /// `/join #room` (empty when no room was given).
    Join(&'a [u8]),
    /// `/part`.
    Part,
    /// `/rooms`.
    Rooms,
    /// `/msg NICK TEXT` (either may be empty when missing).
    Msg { to: &'a [u8], text: &'a [u8] },
    /// `/link ARGS`: a bridge asking to be a link (docs/link.md).
    Link(&'a [u8]),
    /// `=VERB ...` with one of the link protocol's verbs: only a link may send it.
    LinkFrame,
    /// Anything else: a chat message, relayed as it came.
    Chat,
}

/// `text` split at its first run of spaces: the word, and the rest (leading spaces removed).
pub(super) fn word(text: &[u8]) -> (&[u8], &[u8]) {
    match text.iter().position(|&c| c == b' ') {
        Some(i) => (&text[..i], text[i..].trim_ascii_start()),
        None => (text, b""),
    }
}

/// A link frame's `FROM TEXT` tail split at its first space: the sender, and the text after that
/// one space, which keeps every other space of its own (unlike [`word`]).
pub(super) fn sender_and_text(rest: &[u8]) -> (&[u8], &[u8]) {
    match rest.iter().position(|&c| c == b' ') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, b""),
    }
}

/// Parses a payload. Trailing whitespace (a newline from a line-based client) is ignored
/// around commands; everything that is not a command is chat.
pub(crate) fn parse(payload: &[u8]) -> Command<'_> {
    let text = payload.trim_ascii_end();
    if text.starts_with(b"=") {
        return match word(text).0 {
            b"=link" | b"=synced" | b"=join" | b"=part" | b"=nick" | b"=quit" | b"=msg"
            | b"=priv" | b"=drop" => Command::LinkFrame,
            _ => Command::Chat,
        };
    }
    if !text.starts_with(b"/") {
        return Command::Chat;
    }
    let (name, args) = word(text);
    match name {
        b"/who" if args.is_empty() => Command::Who,
        b"/rooms" if args.is_empty() => Command::Rooms,
        b"/part" if args.is_empty() => Command::Part,
        b"/nick" => Command::Nick(args),
        b"/join" => Command::Join(args),
        b"/msg" => {
            let (to, text) = word(args);
            Command::Msg { to, text }
        }
        b"/link" => Command::Link(args),
        _ => Command::Chat,
    }
}

#[kunit_tests(kchat_command)]
mod tests {
    use super::*;

    #[test]
    fn commands() -> Result {
        let cases: [(&[u8], Command<'_>); 26] = [
            (b"/who", Command::Who),
            (b"/who\n", Command::Who),
            (b"/nick bob", Command::Nick(b"bob")),
            (b"/nick  bob \r\n", Command::Nick(b"bob")),
            (b"/nick", Command::Nick(b"")),
            (b"/nickname", Command::Chat),
            (b"/whois x", Command::Chat),
            (b"/who x", Command::Chat),
            (b"hello /who", Command::Chat),
            (b"", Command::Chat),
            (b"/join #rust", Command::Join(b"#rust")),
            (b"/join", Command::Join(b"")),
            (b"/join  #a b", Command::Join(b"#a b")),
            (b"/part\r\n", Command::Part),
            (b"/rooms", Command::Rooms),
            (
                b"/msg bob hi  there",
                Command::Msg {
                    to: b"bob",
                    text: b"hi  there",
                },
            ),
            (
                b"/msg bob",
                Command::Msg {
                    to: b"bob",
                    text: b"",
                },
            ),
            (b"/msg", Command::Msg { to: b"", text: b"" }),
            (b"/msgs", Command::Chat),
            (b" /who", Command::Chat),
            (b"/link 123 node-b", Command::Link(b"123 node-b")),
            (b"/link", Command::Link(b"")),
            (b"=msg #lobby bob@b hi", Command::LinkFrame),
            (b"=synced\n", Command::LinkFrame),
            (b"=D", Command::Chat),
            (b"=message", Command::Chat),
        ];
        for (payload, want) in cases {
            let got = parse(payload);
            assert_eq!(got, want);
        }
        Ok(())
    }

    #[test]
    fn link_tails() -> Result {
        // (tail, sender, text)
        let cases: [[&[u8]; 3]; 5] = [
            [b"bob@b hi", b"bob@b", b"hi"],
            [b"bob@b  two  spaces ", b"bob@b", b" two  spaces "],
            [b"bob@b", b"bob@b", b""],
            [b"bob@b ", b"bob@b", b""],
            [b"", b"", b""],
        ];
        for [rest, from, text] in cases {
            assert_eq!(sender_and_text(rest), (from, text));
        }
        Ok(())
    }
}
