// SPDX-License-Identifier: GPL-2.0

//! The chat core's events and messages as IRC lines (docs/irc.md).

use kernel::{fmt, prelude::*};

use super::lines::{
    Lines,
    MAX_BODY, //
};
use crate::{
    chat::{
        Event,
        Origin,
        Roster,
        Topic, //
    },
    frame::Frame,
    frontend::mode_letters,
    label::Label,
    net::PeerAddr,
};

/// A member's nick as IRC shows it: its label, or `kchat-ID` for a member known by its
/// address; a remote member's `NICK@NODE` as `NICK|NODE` (`@` cannot be in an IRC nick).
pub(crate) struct Nick<'a>(pub(crate) &'a Label, pub(crate) u64);

impl fmt::Display for Nick<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.0.as_bytes();
        if let Some(at) = bytes.iter().position(|&c| c == b'@') {
            // Labels are ASCII by construction; a remote one holds one `@`.
            let text = |b| core::str::from_utf8(b).unwrap_or("?");
            return f.write_fmt(fmt!("{}|{}", text(&bytes[..at]), text(&bytes[at + 1..])));
        }
        if self.0.is_nick() {
            fmt::Display::fmt(self.0, f)
        } else {
            f.write_fmt(fmt!("kchat-{}", self.1))
        }
    }
}

/// `nick!user@host`.
pub(crate) struct Prefix<'a>(pub(crate) &'a Origin<'a>);

impl fmt::Display for Prefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = self.0;
        f.write_fmt(fmt!(
            "{}!{}@{}",
            Nick(o.label, o.conn),
            o.user,
            o.host.host()
        ))
    }
}

/// The lines that tell an IRC client about `event`; `None` for events IRC does not show.
pub(crate) fn event(event: &Event<'_>) -> Result<Option<Frame>> {
    let mut w = Lines::new();
    match *event {
        Event::Joined { who, room } => w.line(fmt!(":{} JOIN {room}", Prefix(&who))),
        Event::Left { who, room, reason } => {
            w.fmt(fmt!(":{} PART {room}", Prefix(&who)));
            if let Some(r) = reason {
                w.fmt(fmt!(" :"));
                w.text(r);
            }
            w.end();
        }
        Event::Quit { who, reason } => {
            w.fmt(fmt!(":{} QUIT :", Prefix(&who)));
            w.text(reason);
            w.end();
        }
        Event::Kicked {
            by,
            room,
            victim,
            reason,
        } => {
            w.fmt(fmt!(
                ":{} KICK {room} {} :",
                Prefix(&by),
                Nick(victim.label, victim.conn)
            ));
            w.text(reason);
            w.end();
        }
        Event::Renamed { who, new } => w.line(fmt!(":{} NICK :{new}", Prefix(&who))),
        Event::TopicSet { who, room, text } => {
            w.fmt(fmt!(":{} TOPIC {room} :", Prefix(&who)));
            w.text(text);
            w.end();
        }
        Event::ModeSet {
            who,
            room,
            change,
            target,
        } => {
            let (sign, letter) = mode_letters(change);
            w.fmt(fmt!(":{} MODE {room} {sign}{letter}", Prefix(&who)));
            if let Some(t) = target {
                w.fmt(fmt!(" {t}"));
            }
            w.end();
        }
        Event::Private {
            from,
            to,
            text,
            notice,
        } => {
            let target: &dyn fmt::Display = if to.is_nick() { to } else { &"*" };
            message_lines(&mut w, &from, target, text, notice);
        }
        Event::Entered {
            me,
            room,
            topic,
            roster,
        } => {
            w.line(fmt!(":{} JOIN {room}", Prefix(&me)));
            let nick = Nick(me.label, me.conn);
            if let Some(t) = topic {
                topic_lines(&mut w, &nick, room.as_bytes(), t);
            }
            names(&mut w, &nick, room.as_bytes(), roster);
        }
        Event::Replay { .. } | Event::Who { .. } | Event::Rooms(_) => return Ok(None),
    }
    w.finish()
}

/// `332` and `333` for a topic.
pub(crate) fn topic_lines(w: &mut Lines, me: &dyn fmt::Display, room: &[u8], t: &Topic) {
    let room = Bytes(room);
    w.numeric(332, me);
    w.fmt(fmt!("{room} :"));
    w.text(&t.text);
    w.end();
    w.reply(333, me, fmt!("{room} {} {}", t.setter, t.time));
}

/// `353` lines (as many as the members need) and `366`.
pub(crate) fn names(w: &mut Lines, me: &dyn fmt::Display, room: &[u8], roster: &dyn Roster) {
    let room = Bytes(room);
    let mut open = false;
    roster.each(&mut |label, conn, op| {
        // A nick is at most 32 bytes (an alias 26): with `@` and a space, 35.
        if open && w.room() < 40 {
            w.end();
            open = false;
        }
        if !open {
            w.numeric(353, me);
            w.fmt(fmt!("= {room} :"));
            open = true;
        } else {
            w.fmt(fmt!(" "));
        }
        let at = if op { "@" } else { "" };
        w.fmt(fmt!("{at}{}", Nick(label, conn)));
        true
    });
    if open {
        w.end();
    }
    w.reply(366, me, fmt!("{room} :End of /NAMES list."));
}

/// Bytes known to be ASCII (names), shown as text.
pub(crate) struct Bytes<'a>(pub(crate) &'a [u8]);

impl fmt::Display for Bytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &c in self.0 {
            let c = if c.is_ascii() && !c.is_ascii_control() && c != b' ' {
                c as char
            } else {
                '?'
            };
            fmt::Write::write_char(f, c)?;
        }
        Ok(())
    }
}

/// The largest cut of `text` at most `max` bytes long that does not split a UTF-8
/// character (unless a "character" is longer than 4 bytes, which is no UTF-8 anyway).
fn cut(text: &[u8], max: usize) -> usize {
    if text.len() <= max {
        return text.len();
    }
    let mut end = max;
    while end > 0 && max - end < 3 && (text[end] & 0xc0) == 0x80 {
        end -= 1;
    }
    if end == 0 || (text[end] & 0xc0) == 0x80 {
        max
    } else {
        end
    }
}

/// `PRIVMSG` (or `NOTICE`) lines from `from` to `target` carrying `text`, as many as it
/// needs.
fn message_lines(
    w: &mut Lines,
    from: &Origin<'_>,
    target: &dyn fmt::Display,
    text: &[u8],
    notice: bool,
) {
    let command = if notice { "NOTICE" } else { "PRIVMSG" };
    let mut rest = text;
    loop {
        w.fmt(fmt!(":{} {command} {target} :", Prefix(from)));
        let n = cut(rest, w.room().max(1));
        w.text(&rest[..n]);
        w.end();
        rest = &rest[n..];
        if rest.is_empty() {
            break;
        }
    }
}

/// A chat message to `room` as IRC shows it: one `PRIVMSG` line per 400-odd bytes of text.
pub(crate) fn message(from: &Origin<'_>, room: &[u8], text: &[u8], notice: bool) -> Result<Frame> {
    // A prefix is at most 1 + 32 + 1 + 16 + 1 + 40 bytes; with the command, the target and
    // the separators, under 160 per line.
    let mut w = Lines::with_capacity(text.len() + 160 * (1 + text.len() / 350));
    message_lines(&mut w, from, &Bytes(room), text, notice);
    w.finish()?.ok_or(ENOMEM)
}

/// A chat message from an IRC client to `room`, relayed as one line (cut if the prefix makes
/// it too long, as IRC servers do); with where its text is in the frame.
pub(crate) fn relay(
    from: &Origin<'_>,
    room: &[u8],
    text: &[u8],
    notice: bool,
) -> Result<(Frame, usize, usize)> {
    let command = if notice { "NOTICE" } else { "PRIVMSG" };
    let mut w = Lines::with_capacity(text.len().min(MAX_BODY) + 160);
    w.fmt(fmt!(":{} {command} {} :", Prefix(from), Bytes(room)));
    let at = w.len();
    let n = cut(text, w.room());
    w.text(&text[..n]);
    w.end();
    let frame = w.finish()?.ok_or(ENOMEM)?;
    Ok((frame, at, n))
}

/// `ERROR :Closing Link: HOST (WHY)`, the last line of every IRC connection.
pub(crate) fn closing_link(peer: PeerAddr, why: &super::QuitText) -> Result<Frame> {
    let mut w = Lines::new();
    w.fmt(fmt!("ERROR :Closing Link: {} (", peer.host()));
    w.text(why.as_bytes());
    w.fmt(fmt!(")"));
    w.end();
    w.finish()?.ok_or(ENOMEM)
}
