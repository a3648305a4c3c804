// SPDX-License-Identifier: GPL-2.0
//! The IRC driver: every client registers (`NICK`, `USER`) under a nick of its own, joins its
//! channel once welcomed (001), and confirms for the barrier when the server's end of names
//! (366) for that channel arrives; stalled clients stop reading there. Senders send
//! `PRIVMSG #channel :<text payload>`. Receivers account every PRIVMSG, answer every PING,
//! and let pass what servers send at any time besides (notices, other clients' joins,
//! numerics); an error numeric (but 422, no MOTD) or an `ERROR` is an error, and aborts the
//! run before the client is in its channel.

use std::io;

use kchat_proto::irc::{LineSplitter, Message, ParseError, MAX_LINE};
use mio::net::TcpStream;

use crate::{
    layout,
    options::Options,
    recv::{self, After, Readable},
    sys,
    tracker::{Origin, Tracker},
};

/// Longest payload: a relayed line is `:NICK!USER@HOST PRIVMSG #CHANNEL :PAYLOAD` and CR LF,
/// at most 512 bytes, and this leaves 110 bytes for the source and the channel.
pub(crate) const MAX_PAYLOAD: usize = 400;

/// The numeric that says a server has no MOTD: an "error" that is not one.
const ERR_NOMOTD: u16 = 422;

/// The nicks and channels of one run.
#[derive(Debug)]
pub(crate) struct Names {
    /// `kb` and a tag of this run, in front of every nick (so that a server still holding
    /// the nicks of an earlier run does not refuse them).
    prefix: String,
    /// Per room, its channel.
    channels: Box<[Box<[u8]>]>,
}

impl Names {
    /// The names of a run with `o`, its tag drawn from the process id and the clock.
    pub(crate) fn new(o: &Options) -> Self {
        let rooms = o.rooms.unwrap_or(1) as u32;
        let channels = (0..rooms)
            .map(|r| format!("#{}", layout::channel(o, r)).into_bytes().into())
            .collect();
        Self {
            prefix: format!("kb{}", run_tag()),
            channels,
        }
    }

    /// The nick of client `g`: the run's prefix and `g` in decimal.
    pub(crate) fn nick(&self, g: usize) -> String {
        format!("{}{g}", self.prefix)
    }

    /// True if `nick` is client `g`'s (without formatting one: this runs once per delivery).
    pub(crate) fn is_nick(&self, nick: &[u8], mut g: usize) -> bool {
        let Some(mut digits) = nick.strip_prefix(self.prefix.as_bytes()) else {
            return false;
        };
        // g's digits, from the last.
        loop {
            let Some((&d, rest)) = digits.split_last() else {
                return false;
            };
            if usize::from(d) != usize::from(b'0') + g % 10 {
                return false;
            }
            digits = rest;
            g /= 10;
            if g == 0 {
                return digits.is_empty();
            }
        }
    }

    /// The channel of room `room`.
    pub(crate) fn channel(&self, room: u32) -> &[u8] {
        &self.channels[room as usize]
    }
}

/// Four base-36 characters from the process id and the clock.
fn run_tag() -> String {
    let mut v = u64::from(std::process::id()) << 32 ^ sys::monotonic_ns();
    (0..4)
        .map(|_| {
            let c = char::from_digit((v % 36) as u32, 36).expect("a base-36 digit");
            v /= 36;
            c
        })
        .collect()
}

/// Appends a message that is known to be valid.
fn append(out: &mut Vec<u8>, m: Message<'_>) {
    m.write_to(out).expect("a valid IRC message");
}

/// Appends the registration of `nick`: `NICK nick` and `USER nick 0 * :kchat-bench`.
pub(crate) fn append_register(out: &mut Vec<u8>, nick: &str) {
    let n = nick.as_bytes();
    append(out, Message::new(b"NICK", &[n]));
    append(out, Message::new(b"USER", &[n, b"0", b"*", b"kchat-bench"]));
}

/// Everything of a message to `channel` before its payload: `PRIVMSG #channel :`.
pub(crate) fn privmsg_prefix(channel: &[u8]) -> Vec<u8> {
    let mut out = b"PRIVMSG ".to_vec();
    out.extend_from_slice(channel);
    out.extend_from_slice(b" :");
    out
}

/// Where a client is in its setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Waiting for the welcome (001).
    Registering,
    /// `JOIN` sent, waiting for the end of names (366).
    Joining,
    /// In its channel.
    Joined,
}

/// An IRC client's receive side: its lines and where it is in its setup.
#[derive(Debug)]
pub(crate) struct Inbox {
    lines: LineSplitter,
    channel: Box<[u8]>,
    stage: Stage,
}

impl Inbox {
    /// True once the server welcomed the client (001): it has accepted the connection.
    pub(crate) fn welcomed(&self) -> bool {
        self.stage != Stage::Registering
    }

    /// The receive side of a client that joins `channel` once registered.
    pub(crate) fn new(channel: &[u8]) -> Self {
        Self {
            lines: LineSplitter::new(MAX_LINE),
            channel: channel.into(),
            stage: Stage::Registering,
        }
    }
}

/// Whose connection a read is for.
#[derive(Debug)]
pub(crate) struct Client<'a> {
    /// The receiver row; `None` for a stalled client.
    pub(crate) row: Option<u32>,
    /// Its send buffer, for answers (`JOIN`, `PONG`); the caller flushes it.
    pub(crate) out: &'a mut Vec<u8>,
}

/// Reads everything available on `stream` and handles every line. `Err` means the
/// connection is finished.
pub(crate) fn read(
    stream: &mut TcpStream,
    inbox: &mut Inbox,
    client: Client<'_>,
    ev: Readable,
    tracker: &mut Tracker,
) -> io::Result<After> {
    let Inbox {
        lines,
        channel,
        stage,
    } = inbox;
    let Client { row, out } = client;
    let mut setup = Setup {
        stage,
        channel,
        out,
    };
    recv::read_all(stream, lines, ev, |lines, now| {
        while let Some(line) = lines.next_line() {
            let Ok(line) = line else {
                tracker.error(&format!("irc: a line over {MAX_LINE} bytes"));
                continue;
            };
            let m = match Message::parse(line) {
                Ok(m) => m,
                Err(ParseError::Empty) => continue,
                Err(e) => {
                    let line = String::from_utf8_lossy(line);
                    tracker.error(&format!("irc: {e}: {line}"));
                    continue;
                }
            };
            match row {
                Some(row) if m.is("PRIVMSG") => {
                    let origin = Origin::Irc {
                        nick: m.source_nick().unwrap_or_default(),
                        target: m.param(0).unwrap_or_default(),
                    };
                    tracker.deliver(row, origin, m.last().unwrap_or_default(), now);
                }
                _ => {
                    // A stalled client reads until it is in its channel.
                    if setup.on_message(&m, tracker) && row.is_none() {
                        return Ok(After::StopReading);
                    }
                }
            }
        }
        Ok(After::Continue)
    })
}

/// A client's setup, as a message other than a PRIVMSG moves it on.
struct Setup<'a> {
    stage: &'a mut Stage,
    channel: &'a [u8],
    out: &'a mut Vec<u8>,
}

impl Setup<'_> {
    /// Handles `m`; true when it put the client in its channel.
    fn on_message(&mut self, m: &Message<'_>, tracker: &mut Tracker) -> bool {
        if m.is("PING") {
            append(self.out, Message::new(b"PONG", m.params()));
            return false;
        }
        if m.is("ERROR") {
            tracker.error(&format!("server: {m}"));
            return false;
        }
        match m.numeric() {
            Some(1) if *self.stage == Stage::Registering => {
                append(self.out, Message::new(b"JOIN", &[self.channel]));
                *self.stage = Stage::Joining;
            }
            Some(366) if *self.stage == Stage::Joining => {
                let channel = m.param(1).unwrap_or_default();
                if channel.eq_ignore_ascii_case(self.channel) {
                    *self.stage = Stage::Joined;
                    tracker.shared().confirm();
                    return true;
                }
            }
            // 422 (no MOTD) is an answer to the MOTD a server sends on registration.
            Some(400..=599) if m.numeric() != Some(ERR_NOMOTD) => {
                tracker.error(&format!("server: {m}"));
                if *self.stage != Stage::Joined {
                    // The client is not where the run needs it: nothing it receives would count.
                    let what = match *self.stage {
                        Stage::Registering => "registering".to_string(),
                        _ => format!("joining {}", String::from_utf8_lossy(self.channel)),
                    };
                    tracker.shared().abort(format!("{what}: {m}"));
                }
            }
            _ => {}
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks nicks: client g's nick is the run's prefix and g, recognised as g's and no
    /// one else's (not with a leading zero, extra digits or another prefix); channels with and
    /// without rooms; two runs have different prefixes most of the time.
    #[test]
    fn names() {
        let o = |args: &[&str]| match crate::options::parse(args) {
            Ok(crate::options::Command::Run(o)) => *o,
            other => panic!("{other:?}"),
        };
        let n = Names::new(&o(&["--protocol", "irc", "--clients", "4", "--rooms", "2"]));
        let nick = n.nick(17);
        assert!(nick.starts_with("kb") && nick.len() == 8, "{nick}");
        assert!(n.is_nick(nick.as_bytes(), 17));
        assert!(!n.is_nick(nick.as_bytes(), 1) && !n.is_nick(nick.as_bytes(), 117));
        assert!(!n.is_nick(format!("{}017", n.prefix).as_bytes(), 17));
        assert!(!n.is_nick(n.prefix.as_bytes(), 0));
        assert_eq!(n.channel(1), b"#bench-1");
        let n = Names::new(&o(&["--protocol", "irc", "--channel", "lobby"]));
        assert_eq!(n.channel(0), b"#lobby");
    }

    /// Checks the lines a client sends: registration, and a message's prefix.
    #[test]
    fn lines() {
        let mut out = Vec::new();
        append_register(&mut out, "kbab12");
        assert_eq!(out, b"NICK kbab12\r\nUSER kbab12 0 * kchat-bench\r\n");
        assert_eq!(privmsg_prefix(b"#c"), b"PRIVMSG #c :");
    }
}
