// SPDX-License-Identifier: GPL-2.0

//! The chat core's events as native frames: `* ...` notices and answers, and
//! `LABEL (private): TEXT`.

use kernel::{
    fmt::{
        self,
        Write, //
    },
    prelude::*,
};

use crate::{
    chat::Event,
    frame::{
        Frame,
        TextFrame, //
    },
};

/// The frame for `event`, its text cut to `max` bytes with `...` where it is a list.
pub(crate) fn event(event: &Event<'_>, max: usize) -> Result<Frame> {
    let mut w = TextFrame::new(max)?;
    write(&mut w, event).map_err(|_| ENOMEM)?;
    w.finish()
}

fn write(w: &mut TextFrame, event: &Event<'_>) -> fmt::Result {
    match *event {
        Event::Joined(who) => w.write_fmt(fmt!("* {who} joined")),
        Event::Left(who) => w.write_fmt(fmt!("* {who} left")),
        Event::Renamed { old, new } => w.write_fmt(fmt!("* {old} is now {new}")),
        Event::Private { from, text } => {
            w.write_fmt(fmt!("{from} (private): "))?;
            w.bytes(text)
        }
        Event::Entered { room, roster } => {
            w.write_fmt(fmt!("* now in {room} ({}): ", roster.len()))?;
            labels(w, roster)
        }
        Event::Replay { room, count } => w.write_fmt(fmt!("* last {count} messages of {room}:")),
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
    roster.each(&mut |label| {
        let sep = if first { "" } else { ", " };
        first = false;
        result = w.write_fmt(fmt!("{sep}{label}"));
        result.is_ok() && !w.is_cut()
    });
    result
}
