//! What a payload asks for: the commands of kchat's native protocol.

/// What a payload asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// `/nick NAME` (the name trimmed, empty if missing).
    Nick(&'a [u8]),
    /// `/who`.
    Who,
    /// `/join #room` (the name trimmed, empty if missing).
    Join(&'a [u8]),
    /// `/part`.
    Part,
    /// `/rooms`.
    Rooms,
    /// `/msg NICK TEXT` (NICK ends at the first space); `None` when either is missing.
    Msg(Option<Private<'a>>),
    /// Anything else: a chat message, relayed as it came.
    Chat,
}

/// The arguments of `/msg`.
#[derive(Debug, PartialEq, Eq)]
pub struct Private<'a> {
    pub nick: &'a [u8],
    pub text: &'a [u8],
}

/// Parses a payload; trailing whitespace is ignored around commands.
pub fn parse(payload: &[u8]) -> Command<'_> {
    let text = payload.trim_ascii_end();
    match text {
        b"/who" => return Command::Who,
        b"/part" => return Command::Part,
        b"/rooms" => return Command::Rooms,
        _ => {}
    }
    if let Some(name) = argument(text, b"/nick") {
        return Command::Nick(name.trim_ascii());
    }
    if let Some(name) = argument(text, b"/join") {
        return Command::Join(name.trim_ascii());
    }
    if let Some(args) = argument(text, b"/msg") {
        let args = args.trim_ascii_start();
        let private = args.iter().position(|&c| c == b' ').map(|at| Private {
            nick: &args[..at],
            text: args[at..].trim_ascii_start(),
        });
        return Command::Msg(private);
    }
    Command::Chat
}

/// What follows `name` in `text` if `text` is that command: the command alone (an empty
/// argument) or followed by a space.
fn argument<'a>(text: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    match text.strip_prefix(name)? {
        [] => Some(&[]),
        [b' ', rest @ ..] => Some(rest),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        let msg = |nick, text| Command::Msg(Some(Private { nick, text }));
        let cases: [(&[u8], Command<'_>); 23] = [
            (b"/who", Command::Who),
            (b"/who \r\n", Command::Who),
            (b"/nick bob", Command::Nick(b"bob")),
            (b"/nick  bob \r\n", Command::Nick(b"bob")),
            (b"/nick", Command::Nick(b"")),
            (b"/nickname", Command::Chat),
            (b"/whois x", Command::Chat),
            (b"hello /who", Command::Chat),
            (b"", Command::Chat),
            (b"/join #rust ", Command::Join(b"#rust")),
            (b"/join   #a b", Command::Join(b"#a b")),
            (b"/join", Command::Join(b"")),
            (b"/joined", Command::Chat),
            (b"/part\n", Command::Part),
            (b"/part #x", Command::Chat),
            (b"/rooms", Command::Rooms),
            (b"/msg bob hi there \n", msg(b"bob", b"hi there")),
            (b"/msg  [::1]:5   x", msg(b"[::1]:5", b"x")),
            (b"/msg bob\thi", Command::Msg(None)),
            (b"/msg bob", Command::Msg(None)),
            (b"/msg bob   ", Command::Msg(None)),
            (b"/msg", Command::Msg(None)),
            (b"/msgs bob hi", Command::Chat),
        ];
        for (payload, want) in cases {
            assert_eq!(
                parse(payload),
                want,
                "{:?}",
                String::from_utf8_lossy(payload)
            );
        }
    }
}
