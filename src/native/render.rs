// SPDX-License-Identifier: GPL-2.0

//! The chat core's events as native frames: `* ...` notices and answers,
//! `LABEL (private): TEXT`, and chat messages as `LABEL: TEXT`.

use kernel::{
    fmt::{
        self,
        Write, //
    },
    prelude::*,
};

use crate::{
    chat::{
        Event,
        Origin, //
    },
    frame::{
        Frame,
        TextFrame, //
    },
    frontend::mode_letters,
};

/// The frame for `event`, its text cut to `max` bytes with `...` where it is a list.
pub(crate) fn event(event: &Event<'_>, max: usize) -> Result<Option<Frame>> {
    let mut w = TextFrame::new(max)?;
    write(&mut w, event).map_err(|_| ENOMEM)?;
    Ok(Some(w.finish()?))
}

/// A chat message from `from`: `LABEL: TEXT`, or `* LABEL TEXT` for an IRC action
/// (`\x01ACTION TEXT\x01`, what `/me` sends).
pub(crate) fn message(from: &Origin<'_>, text: &[u8]) -> Result<Frame> {
    let mut w = TextFrame::new(usize::MAX)?;
    let action = text
        .strip_prefix(b"\x01ACTION ")
        .map(|t| t.strip_suffix(b"\x01").unwrap_or(t));
    match action {
        Some(act) => {
            w.write_fmt(fmt!("* {} ", from.label)).map_err(|_| ENOMEM)?;
            w.bytes(act).map_err(|_| ENOMEM)?;
        }
        None => {
            w.write_fmt(fmt!("{}: ", from.label)).map_err(|_| ENOMEM)?;
            w.bytes(text).map_err(|_| ENOMEM)?;
        }
    }
    w.finish()
}

fn write(w: &mut TextFrame, event: &Event<'_>) -> fmt::Result {
    match *event {
        Event::Joined { who, .. } => w.write_fmt(fmt!("* {} joined", who.label)),
        Event::Left { who, .. } | Event::Quit { who, .. } => {
            w.write_fmt(fmt!("* {} left", who.label))
        }
        Event::Kicked {
            by,
            room,
            victim,
            reason,
        } => {
            w.write_fmt(fmt!(
                "* {} was kicked from {room} by {} (",
                victim.label,
                by.label
            ))?;
            w.bytes(reason)?;
            w.write_str(")")
        }
        Event::Renamed { who, new } => w.write_fmt(fmt!("* {} is now {new}", who.label)),
        Event::TopicSet { who, room, text } => {
            w.write_fmt(fmt!("* {} set the topic of {room}: ", who.label))?;
            w.bytes(text)
        }
        Event::ModeSet {
            who,
            room,
            change,
            target,
        } => {
            let (sign, letter) = mode_letters(change);
            w.write_fmt(fmt!("* {} set mode {sign}{letter}", who.label))?;
            if let Some(t) = target {
                w.write_fmt(fmt!(" {t}"))?;
            }
            w.write_fmt(fmt!(" on {room}"))
        }
        Event::Private { from, text, .. } => {
            w.write_fmt(fmt!("{} (private): ", from.label))?;
            w.bytes(text)
        }
        Event::Entered { room, roster, .. } => {
            w.write_fmt(fmt!("* now in {room} ({}): ", roster.len()))?;
            labels(w, roster)
        }
        Event::Replay { room, count, .. } => {
            w.write_fmt(fmt!("* last {count} messages of {room}:"))
        }
        Event::Who { room, roster } => {
            w.write_fmt(fmt!("* {} online in {room}: ", roster.len()))?;
            labels(w, roster)
        }
        Event::Rooms(list) => {
            w.write_fmt(fmt!("* {} rooms: ", list.len()))?;
            let mut first = true;
            let mut result = Ok(());
            list.each(&mut |name, members| {
                let sep = if first { "" } else { ", " };
                first = false;
                result = w.write_fmt(fmt!("{sep}{name} ({members})"));
                result.is_ok() && !w.is_cut()
            });
            result
        }
    }
}

/// `LABEL, LABEL, ...` until the frame is full.
fn labels(w: &mut TextFrame, roster: &dyn crate::chat::Roster) -> fmt::Result {
    let mut first = true;
    let mut result = Ok(());
    roster.each(&mut |label, _, _| {
        let sep = if first { "" } else { ", " };
        first = false;
        result = w.write_fmt(fmt!("{sep}{label}"));
        result.is_ok() && !w.is_cut()
    });
    result
}
