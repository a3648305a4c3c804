// SPDX-License-Identifier: GPL-2.0

//! The chat core's state under its lock, and the steps [`Core`](super::Core)'s operations are
//! made of: sending an event to an audience, moving a member between rooms, replaying a
//! room's history.

use kernel::{
    prelude::*,
    rbtree::RBTree,
    sync::{
        atomic::Relaxed,
        Arc, //
    },
};

use super::{
    audience,
    Audience,
    Event,
    History,
    Limits,
    Member,
    MemberId,
    Message,
    RoomId,
    Slab,
    What,
    LOBBY,
    NO_SLOT, //
};
use crate::{
    frame::Frame,
    frontend::Protocol,
    label::{
        Key,
        Label,
        RoomName, //
    },
    stats::Stats,
};

/// One member's entry.
pub(super) struct Entry<M> {
    pub(super) who: Arc<M>,
    pub(super) label: Label,
    pub(super) room: RoomId,
    /// Index in its room's member list.
    pub(super) pos: u32,
}

/// A room.
pub(super) struct Room {
    pub(super) name: RoomName,
    /// Member ids, in no particular order (removal swaps the last one in).
    pub(super) members: KVec<MemberId>,
    pub(super) history: History,
    /// Deliveries of this room's messages.
    pub(super) relayed: u64,
}

impl Room {
    /// An empty room called `name`, with no history.
    pub(super) fn new(name: RoomName) -> Self {
        Self {
            name,
            members: KVec::new(),
            history: History::new(),
            relayed: 0,
        }
    }
}

/// The core's state, under its lock.
pub(super) struct Inner<M> {
    pub(super) members: Slab<Entry<M>>,
    pub(super) rooms: Slab<Room>,
    /// Room ids by case-folded name.
    pub(super) room_names: RBTree<Key, RoomId>,
    /// Member ids by case-folded label (nicks and addresses).
    pub(super) labels: RBTree<Key, MemberId>,
    /// Set at unload: nobody joins any more, nobody is told of departures.
    pub(super) closing: bool,
    /// Longest text of a rendered list (`max_msg_len`).
    pub(super) max_text: usize,
}

/// A frame for each protocol, rendered from one event on first use.
struct Rendered<'e> {
    event: &'e Event<'e>,
    /// Longest text of a list.
    max: usize,
    frames: [Option<Arc<Frame>>; Protocol::COUNT],
}

impl<'e> Rendered<'e> {
    fn new(event: &'e Event<'e>, max: usize) -> Self {
        Self {
            event,
            max,
            frames: [const { None }; Protocol::COUNT],
        }
    }

    /// The frame for `protocol`; `None` if it cannot be allocated (the event is then lost
    /// for that recipient, and the chat carries on).
    fn get(&mut self, protocol: Protocol) -> Option<&Arc<Frame>> {
        let slot = &mut self.frames[protocol as usize];
        if slot.is_none() {
            *slot = protocol.render(self.event, self.max).ok();
        }
        slot.as_ref()
    }
}

impl<M: Member> Inner<M> {
    /// The member ids of `audience`'s candidates: a room's members, or one member.
    pub(super) fn candidates<'a>(&'a self, audience: &'a Audience) -> &'a [MemberId] {
        match audience {
            Audience::Nobody => &[],
            Audience::Room { room, .. } => self.rooms.get(*room).map_or(&[], |r| &r.members),
            Audience::One(m) => core::slice::from_ref(m),
        }
    }

    /// Renders `event` and queues it to the members `audience` admits.
    pub(super) fn send(&self, audience: Audience, event: &Event<'_>) {
        let mut rendered = Rendered::new(event, self.max_text);
        for &id in self.candidates(&audience) {
            let Some(e) = self.members.get(id) else {
                continue;
            };
            if !audience.admits(id, e.room, e.who.is_closing()) {
                continue;
            }
            if let Some(frame) = rendered.get(e.who.protocol()) {
                M::deliver(&e.who, core::iter::once(frame));
            }
        }
    }

    /// Sends a notice about `id` (a member of `room`) to the others in that room.
    pub(super) fn notice(&self, limits: &Limits, id: MemberId, room: RoomId, event: &Event<'_>) {
        self.send(audience(What::Notice, id, room, limits.notices), event);
    }

    /// The member id of `who`, if it is in the core.
    pub(super) fn id_of(&self, who: &M) -> Option<MemberId> {
        let id = who.slot().load(Relaxed);
        (id != NO_SLOT).then_some(id)
    }

    /// Takes member `id` out of its room (the room is removed if it empties, `#lobby`
    /// aside); returns the room it was in.
    pub(super) fn leave_room(&mut self, id: MemberId, stats: &Stats) -> RoomId {
        let Some(e) = self.members.get(id) else {
            return LOBBY;
        };
        let (room_id, pos) = (e.room, e.pos as usize);
        let Some(room) = self.rooms.get_mut(room_id) else {
            return room_id;
        };
        // The last member takes the leaver's place.
        let last = room.members.len() - 1;
        room.members.swap(pos, last);
        room.members.pop();
        let moved = room.members.get(pos).copied();
        let empty = room.members.is_empty();
        if let Some(m) = moved.and_then(|m| self.members.get_mut(m)) {
            m.pos = pos as u32;
        }
        if empty && room_id != LOBBY {
            self.remove_room(room_id, stats);
        }
        room_id
    }

    /// Removes room `room_id`, with its history, from the tables.
    pub(super) fn remove_room(&mut self, room_id: RoomId, stats: &Stats) {
        if let Some(room) = self.rooms.remove(room_id) {
            self.room_names.remove(&room.name.key());
            stats.rooms_now.fetch_sub(1, Relaxed);
        }
    }

    /// Member `id` of `who`, with its entry, if `who` is in the core.
    pub(super) fn entry_of(&self, who: &M) -> Option<(MemberId, &Entry<M>)> {
        let id = self.id_of(who)?;
        Some((id, self.members.get(id)?))
    }

    /// Puts member `id` into `room`, whose member list has room for it.
    pub(super) fn enter_room(&mut self, id: MemberId, room_id: RoomId) {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let pos = room.members.len() as u32;
        // Capacity was reserved by the caller.
        let _ = room.members.push_within_capacity(id);
        if let Some(e) = self.members.get_mut(id) {
            e.room = room_id;
            e.pos = pos;
        }
    }

    /// Sends member `id` the history of `room`, header first.
    pub(super) fn replay(&self, id: MemberId, room_id: RoomId, stats: &Stats) {
        let (Some(room), Some(e)) = (self.rooms.get(room_id), self.members.get(id)) else {
            return;
        };
        if room.history.len() == 0 {
            return;
        }
        let header = Event::Replay {
            room: &room.name,
            count: room.history.len(),
        };
        self.send(Audience::One(id), &header);
        let (n, _) = M::deliver(&e.who, room.history.iter().map(Message::frame));
        stats.history_replayed.add(n, Relaxed);
    }
}
