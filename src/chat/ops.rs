// SPDX-License-Identifier: GPL-2.0

//! What members do in rooms: speak (the relay of a batch), part, kick, set the topic and the
//! modes. Each operation checks the rules (membership, operators, `+t`, `+n`) and tells the
//! room through [`route`](super::route).

use kernel::{
    prelude::*,
    sync::Arc, //
};

use super::{
    audience,
    Core,
    Event,
    Inner,
    Member,
    MemberId,
    RelayBatch,
    RoomId,
    Topic,
    What,
    NO_SLOT,
    TOPIC_LEN, //
};
use crate::{
    frontend::{
        self,
        Protocol, //
    },
    label::RoomName, //
};

/// Why a message to a room was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SayError {
    NoSuchRoom,
    /// The room is `+n` and the sender is not in it.
    NotMember,
    Gone,
}

/// Why a part failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PartError {
    NoSuchRoom,
    NotMember,
}

/// Why a kick failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KickError {
    NoSuchRoom,
    NotMember,
    NotOp,
    NoSuchNick,
    /// The victim is not in the room.
    TheyNotMember,
}

/// Why a topic was not set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TopicError {
    NoSuchRoom,
    NotMember,
    /// The room is `+t` and the setter is no operator.
    NotOp,
    NoMemory,
}

/// A change of a room's modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ModeChange {
    /// `+o` / `-o`: a member becomes or stops being an operator.
    Op(bool),
    /// `+t` / `-t`.
    TopicOps(bool),
    /// `+n` / `-n`.
    NoExternal(bool),
}

/// Why a mode was not changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ModeError {
    NoSuchRoom,
    NotOp,
    NoSuchNick,
    TheyNotMember,
}

impl<M: Member> Core<M> {
    /// The room `name` (with its name as first spelled) if `who` may speak there.
    pub(crate) fn speak_in(&self, who: &M, name: &[u8]) -> Result<(RoomId, RoomName), SayError> {
        let inner = self.inner.lock();
        let id = inner.id_of(who).ok_or(SayError::Gone)?;
        let room = inner.room_named(name).ok_or(SayError::NoSuchRoom)?;
        let open = inner.rooms.get(room).is_some_and(|r| !r.modes.no_external);
        if !open && inner.seat(id, room).is_none() {
            return Err(SayError::NotMember);
        }
        let shown = inner.rooms.get(room).ok_or(SayError::NoSuchRoom)?.name;
        Ok((room, shown))
    }

    /// `who` leaves `name`; the room, `who` included, is told (with `reason` if given).
    pub(crate) fn part(
        &self,
        who: &M,
        name: &[u8],
        reason: Option<&[u8]>,
    ) -> Result<(), PartError> {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        let id = inner.id_of(who).ok_or(PartError::NotMember)?;
        let room = inner.room_named(name).ok_or(PartError::NoSuchRoom)?;
        if inner.seat(id, room).is_none() {
            return Err(PartError::NotMember);
        }
        self.leave(inner, id, room, reason, true);
        Ok(())
    }

    /// `who` leaves every room it is in (IRC's `JOIN 0`).
    pub(crate) fn part_all(&self, who: &M) {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        let Some(id) = inner.id_of(who) else {
            return;
        };
        while let Some(room) = inner
            .members
            .get(id)
            .and_then(|e| e.seats.last().map(|s| s.room))
        {
            self.leave(inner, id, room, None, true);
        }
    }

    /// Checks that member `id` may act on room `name` as an operator.
    fn operator(inner: &Inner<M>, id: MemberId, name: &[u8]) -> Result<RoomId, KickError> {
        let room = inner.room_named(name).ok_or(KickError::NoSuchRoom)?;
        if inner.seat(id, room).is_none() {
            return Err(KickError::NotMember);
        }
        if !inner.is_op(id, room) {
            return Err(KickError::NotOp);
        }
        Ok(room)
    }

    /// `who`, an operator of `name`, puts `victim` out of it; the room, both included, is
    /// told.
    pub(crate) fn kick(
        &self,
        who: &M,
        name: &[u8],
        victim: &[u8],
        reason: &[u8],
    ) -> Result<(), KickError> {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        let id = inner.id_of(who).ok_or(KickError::NotMember)?;
        let room = Self::operator(inner, id, name)?;
        let v = inner.find(victim).ok_or(KickError::NoSuchNick)?;
        if inner.seat(v, room).is_none() {
            return Err(KickError::TheyNotMember);
        }
        if let (Some(e), Some(ve), Some(r)) = (
            inner.members.get(id),
            inner.members.get(v),
            inner.rooms.get(room),
        ) {
            let kicked = Event::Kicked {
                by: e.origin(),
                room: &r.name,
                victim: ve.origin(),
                reason,
            };
            inner.send(
                audience(What::Notice { room, echo: true }, id, self.limits.notices),
                &kicked,
            );
        }
        inner.leave_room(v, room, &self.stats);
        Ok(())
    }

    /// `who` sets the topic of `name` (cut to [`TOPIC_LEN`] bytes); the room, `who`
    /// included, is told.
    pub(crate) fn set_topic(&self, who: &M, name: &[u8], text: &[u8]) -> Result<(), TopicError> {
        let text = &text[..text.len().min(TOPIC_LEN)];
        let mut copy =
            KVec::with_capacity(text.len(), GFP_KERNEL).map_err(|_| TopicError::NoMemory)?;
        copy.extend_from_slice(text, GFP_KERNEL)
            .map_err(|_| TopicError::NoMemory)?;
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        let (id, setter) = inner
            .entry_of(who)
            .map(|(id, e)| (id, e.label))
            .ok_or(TopicError::NotMember)?;
        let room = inner.room_named(name).ok_or(TopicError::NoSuchRoom)?;
        if inner.seat(id, room).is_none() {
            return Err(TopicError::NotMember);
        }
        let ops_only = inner.rooms.get(room).is_some_and(|r| r.modes.topic_ops);
        if ops_only && !inner.is_op(id, room) {
            return Err(TopicError::NotOp);
        }
        let topic = KBox::new(
            Topic {
                text: copy,
                setter,
                time: crate::clock::unix_seconds(),
            },
            GFP_KERNEL,
        )
        .map_err(|_| TopicError::NoMemory)?;
        if let Some(r) = inner.rooms.get_mut(room) {
            r.topic = Some(topic);
        }
        if let (Some(e), Some(r)) = (inner.members.get(id), inner.rooms.get(room)) {
            let set = Event::TopicSet {
                who: e.origin(),
                room: &r.name,
                text,
            };
            inner.send(
                audience(What::Notice { room, echo: true }, id, self.limits.notices),
                &set,
            );
        }
        Ok(())
    }

    /// `who`, an operator of `name`, changes one of its modes (`target` names the member of
    /// an `Op` change); the room is told, unless nothing changed.
    pub(crate) fn set_mode(
        &self,
        who: &M,
        name: &[u8],
        change: ModeChange,
        target: &[u8],
    ) -> Result<(), ModeError> {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        let id = inner.id_of(who).ok_or(ModeError::NotOp)?;
        let room = Self::operator(inner, id, name).map_err(|e| match e {
            KickError::NoSuchRoom => ModeError::NoSuchRoom,
            _ => ModeError::NotOp,
        })?;
        let mut subject = None;
        let changed = match change {
            ModeChange::Op(op) => {
                let t = inner.find(target).ok_or(ModeError::NoSuchNick)?;
                if inner.seat(t, room).is_none() {
                    return Err(ModeError::TheyNotMember);
                }
                subject = inner.members.get(t).map(|e| e.label);
                let was = inner.is_op(t, room);
                inner.set_op(t, room, op);
                was != op
            }
            ModeChange::TopicOps(on) | ModeChange::NoExternal(on) => {
                let Some(r) = inner.rooms.get_mut(room) else {
                    return Err(ModeError::NoSuchRoom);
                };
                let flag = match change {
                    ModeChange::TopicOps(_) => &mut r.modes.topic_ops,
                    _ => &mut r.modes.no_external,
                };
                let was = *flag;
                *flag = on;
                was != on
            }
        };
        if !changed {
            return Ok(());
        }
        if let (Some(e), Some(r)) = (inner.members.get(id), inner.rooms.get(room)) {
            let set = Event::ModeSet {
                who: e.origin(),
                room: &r.name,
                change,
                target: subject.as_ref(),
            };
            inner.send(
                audience(What::Notice { room, echo: true }, id, self.limits.notices),
                &set,
            );
        }
        Ok(())
    }

    /// Relays a batch of chat messages, each to the others in its room, in order, and adds
    /// them to the rooms' histories: one walk of each room involved and one
    /// [`Member::deliver`] per recipient and room for the whole batch, each message rendered
    /// once for each protocol present. Messages whose sender is no longer in the chat (or,
    /// from a native member, that is in no room) are dropped.
    pub(crate) fn publish(&self, batch: &mut RelayBatch<M>) {
        if batch.entries.is_empty() {
            return;
        }
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        for e in batch.entries.iter_mut() {
            if e.from != NO_SLOT {
                // A remote member's, posted by its link: still that member?
                let still = inner.members.get(e.from).is_some_and(|m| {
                    m.node.is_some() && core::ptr::eq(Arc::as_ptr(&m.who), Arc::as_ptr(&e.who))
                });
                if !still {
                    e.from = NO_SLOT;
                    e.room = NO_SLOT;
                }
                continue;
            }
            e.from = inner.id_of(&e.who).unwrap_or(NO_SLOT);
            if e.room == NO_SLOT {
                // A member of one room speaks there.
                e.room = inner
                    .members
                    .get(e.from)
                    .and_then(|m| m.seats.first())
                    .map_or(NO_SLOT, |s| s.room);
            }
            if e.from == NO_SLOT {
                e.room = NO_SLOT;
            }
        }
        batch.group_by_room();
        let entries = &mut batch.entries;
        let (mut n, mut bytes) = (0, 0);
        let keep = self.limits.history as usize;
        let mut start = 0;
        while start < entries.len() {
            let room_id = entries[start].room;
            let end = start
                + entries[start..]
                    .iter()
                    .take_while(|e| e.room == room_id)
                    .count();
            let run = &mut entries[start..end];
            start = end;
            let Some(room) = inner.rooms.get(room_id) else {
                continue;
            };
            // Each message rendered for the protocols its recipients (and the history)
            // read.
            for p in Protocol::ALL {
                let wanted = room.by_protocol[p as usize] > 0
                    || (keep > 0 && self.limits.protocols[p as usize]);
                if !wanted {
                    continue;
                }
                for e in run.iter_mut() {
                    if let Some(m) = inner.members.get(e.from) {
                        e.msg.render(p, &m.origin(), &room.name);
                    }
                }
            }
            if self.limits.zerocopy {
                // Written once into the room's logs, to be spliced to every recipient.
                if let Some(room) = inner.rooms.get_mut(room_id) {
                    for e in run.iter_mut() {
                        e.msg.seal(&mut room.logs);
                    }
                }
            }
            let Some(room) = inner.rooms.get(room_id) else {
                continue;
            };
            let mut k = 0;
            for place in room.members.iter() {
                let Some(m) = inner.members.get(place.id) else {
                    continue;
                };
                let closing = m.who.is_closing();
                // A remote member has the room's messages through its node (`who` is its
                // link, which is told once per room, below).
                if m.node.is_some()
                    && !audience(What::Say { room: room_id }, NO_SLOT, false)
                        .admits_remote(place.id, closing)
                {
                    continue;
                }
                let protocol = m.who.protocol();
                let stateful = protocol.tracks_state();
                let (d, b) = M::deliver(
                    &m.who,
                    run.iter()
                        .filter(|e| {
                            audience(What::Say { room: room_id }, e.from, false)
                                .admits(place.id, closing, stateful)
                        })
                        .filter_map(|e| e.msg.frame(protocol)),
                );
                k += d;
                bytes += b;
            }
            n += k;
            if !inner.links.is_empty()
                && audience(What::Say { room: room_id }, NO_SLOT, false).reaches_links(true, false)
            {
                let mut frames = KVec::new();
                if frames.reserve(run.len(), GFP_KERNEL).is_ok() {
                    for e in run.iter() {
                        // A remote member's message is never told to a link.
                        let Some(m) = inner.members.get(e.from).filter(|m| m.node.is_none()) else {
                            continue;
                        };
                        if let Ok(f) = frontend::link_message(&room.name, &m.label, e.msg.text()) {
                            let _ = frames.push_within_capacity(f);
                        }
                    }
                    inner.to_links(&frames);
                }
            }
            if let Some(room) = inner.rooms.get_mut(room_id) {
                room.relayed += k;
                if keep > 0 {
                    for e in run.iter() {
                        room.history.push(&e.msg, keep);
                    }
                }
            }
        }
        drop(guard);
        batch.entries.clear();
        self.stats.relayed(n, bytes);
    }
}
