// SPDX-License-Identifier: GPL-2.0

//! The link protocol's frames (docs/link.md), kchat's side: `/link SECRET NODE` from a bridge,
//! and the `=...` frames that tell a link what its node's local members do.
//!
//! The chat core decides what a link is told (`Core::attach_link`, and every event and room
//! message of a local member); this file only writes it.

use kernel::prelude::*;

use crate::{
    chat::Event,
    frame::{
        Frame,
        TextFrame, //
    },
    label::{
        Label,
        NodeName,
        RoomName, //
    },
};

/// `/link SECRET NODE`'s arguments, if well-formed: the secret (decimal) and the node.
pub(crate) fn parse_hello(args: &[u8]) -> Option<(u64, NodeName)> {
    let mut words = args.split(|&c| c == b' ').filter(|w| !w.is_empty());
    let secret = words.next()?;
    let node = NodeName::parse(words.next()?)?;
    if words.next().is_some() || secret.is_empty() || secret.len() > 20 {
        return None;
    }
    let mut value: u64 = 0;
    for &c in secret {
        if !c.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some((value, node))
}

/// A remote member's room message as native members get it, `NICK@NODE: TEXT`, and where
/// the text starts in it.
pub(crate) fn relayed(from: &Label, text: &[u8]) -> Result<(Frame, usize)> {
    let mut w = TextFrame::new(usize::MAX)?;
    for part in [from.as_bytes(), b": ", text] {
        w.bytes(part).map_err(|_| ENOMEM)?;
    }
    let frame = w.finish()?;
    let at = frame.len() - text.len();
    Ok((frame, at))
}

/// `=link NODE`: the link is up.
pub(crate) fn up(node: &NodeName) -> Result<Frame> {
    Frame::text(fmt!("=link {node}"))
}

/// `=synced`: the snapshot of the local members is complete.
pub(crate) fn synced() -> Result<Frame> {
    Frame::text(fmt!("=synced"))
}

/// `=join #room NICK`: a local member is in a room (in the snapshot, or as it enters).
pub(crate) fn joined(room: &RoomName, who: &Label) -> Result<Frame> {
    Frame::text(fmt!("=join {room} {who}"))
}

/// `=msg #room NICK TEXT`: a local member said `text` in `room`.
pub(crate) fn message(room: &RoomName, from: &Label, text: &[u8]) -> Result<Frame> {
    let mut w = TextFrame::new(usize::MAX)?;
    w.bytes(b"=msg ").map_err(|_| ENOMEM)?;
    w.bytes(room.as_bytes()).map_err(|_| ENOMEM)?;
    w.bytes(b" ").map_err(|_| ENOMEM)?;
    w.bytes(from.as_bytes()).map_err(|_| ENOMEM)?;
    w.bytes(b" ").map_err(|_| ENOMEM)?;
    w.bytes(text).map_err(|_| ENOMEM)?;
    w.finish()
}

/// `=priv TO@NODE FROM TEXT`: a local member's private message to a remote one.
pub(crate) fn private(event: &Event<'_>) -> Result<Option<Frame>> {
    let Event::Private { from, to, text, .. } = *event else {
        return Ok(None);
    };
    let mut w = TextFrame::new(usize::MAX)?;
    for part in [
        &b"=priv "[..],
        to.as_bytes(),
        b" ",
        from.label.as_bytes(),
        b" ",
        text,
    ] {
        w.bytes(part).map_err(|_| ENOMEM)?;
    }
    w.finish().map(Some)
}

/// The frame that tells a link about a local member's `event`, if it is one a link follows:
/// entering and leaving rooms (a kick is a leave), quitting, changing nick.
pub(crate) fn event(event: &Event<'_>) -> Result<Option<Frame>> {
    // A link is told only of local members (a remote one kicked here is its node's affair).
    let about = match *event {
        Event::Kicked { victim, .. } => Some(victim.label),
        Event::Joined { who, .. }
        | Event::Left { who, .. }
        | Event::Quit { who, .. }
        | Event::Renamed { who, .. } => Some(who.label),
        _ => None,
    };
    if about.is_some_and(|l| l.is_remote()) {
        return Ok(None);
    }
    let frame = match *event {
        Event::Joined { who, room } => joined(room, who.label)?,
        Event::Left { who, room, .. } => Frame::text(fmt!("=part {room} {}", who.label))?,
        Event::Kicked { room, victim, .. } => Frame::text(fmt!("=part {room} {}", victim.label))?,
        Event::Quit { who, .. } => Frame::text(fmt!("=quit {}", who.label))?,
        Event::Renamed { who, new } => Frame::text(fmt!("=nick {} {new}", who.label))?,
        _ => return Ok(None),
    };
    Ok(Some(frame))
}

#[kunit_tests(kchat_link)]
mod tests {
    use super::*;

    #[test]
    fn hello() -> Result {
        let ok = parse_hello(b"18446744073709551615 node-b_2");
        let good = matches!(ok, Some((u64::MAX, n)) if n.as_bytes() == b"node-b_2");
        assert!(good);
        for bad in [
            &b""[..],
            b"123",
            b"123 ",
            b"18446744073709551616 b",
            b"12a b",
            b"-1 b",
            b"1 node.b",
            b"1 sixteen-bytes-xy",
            b"1 b extra",
        ] {
            let refused = parse_hello(bad).is_none();
            assert!(refused);
        }
        Ok(())
    }

    #[test]
    fn frames() -> Result {
        let room = RoomName::parse(b"#rust").ok_or(EINVAL)?;
        let who = Label::nick(b"alice").map_err(|_| EINVAL)?;
        let m = message(&room, &who, b"hi \xff there")?;
        let msg_ok = m.as_bytes()[4..] == b"=msg #rust alice hi \xff there"[..];
        assert!(msg_ok);
        let j = joined(&room, &who)?;
        let join_ok = j.as_bytes()[4..] == b"=join #rust alice"[..];
        assert!(join_ok);
        Ok(())
    }
}
