// SPDX-License-Identifier: GPL-2.0

//! The chat core's state under its lock, and the steps [`Core`](super::Core)'s operations are
//! made of: sending an event to an audience, moving members in and out of rooms, replaying a
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
    route::Scope,
    Audience,
    Event,
    History,
    Member,
    MemberId,
    Origin,
    RoomId,
    Slab,
    User,
    LOBBY,
    NO_SLOT, //
};
use crate::{
    frame::Frame,
    frontend::{
        self,
        Protocol, //
    },
    label::{
        Key,
        Label,
        NodeName,
        RoomName, //
    },
    pages::LogWriter,
    stats::Stats,
};

/// A room a member is in: the room, and the member's index in the room's list.
#[derive(Clone, Copy)]
pub(super) struct Seat {
    pub(super) room: RoomId,
    pub(super) pos: u32,
}

/// A member of a room: who, the index of the room in the member's seats, and whether it is
/// one of the room's operators.
#[derive(Clone, Copy)]
pub(super) struct Place {
    pub(super) id: MemberId,
    pub(super) seat: u16,
    pub(super) op: bool,
}

/// One member's entry.
pub(super) struct Entry<M> {
    pub(super) who: Arc<M>,
    pub(super) label: Label,
    pub(super) user: User,
    /// The rooms it is in, in the order it entered them.
    pub(super) seats: KVec<Seat>,
    /// Its away message, if it set one.
    pub(super) away: Option<KVec<u8>>,
    /// For a remote member (docs/link.md), its node: `who` is then the link it came
    /// through, which receives for it only what is addressed to it alone.
    pub(super) node: Option<NodeName>,
}

impl<M: Member> Entry<M> {
    /// How events show this member.
    pub(super) fn origin(&self) -> Origin<'_> {
        Origin {
            label: &self.label,
            user: &self.user,
            host: self.who.peer(),
            conn: self.who.conn_id(),
        }
    }
}

/// A room's topic.
pub(crate) struct Topic {
    pub(crate) text: KVec<u8>,
    /// Who set it, and when (seconds since the epoch).
    pub(crate) setter: Label,
    pub(crate) time: i64,
}

/// A room's modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Modes {
    /// `+t`: only operators set the topic.
    pub(crate) topic_ops: bool,
    /// `+n`: only members speak.
    pub(crate) no_external: bool,
}

/// A room.
pub(super) struct Room {
    pub(super) name: RoomName,
    /// Its members, in no particular order (removal swaps the last one in).
    pub(super) members: KVec<Place>,
    /// Members of each protocol: a message is rendered only for protocols present.
    pub(super) by_protocol: [u32; Protocol::COUNT],
    pub(super) history: History,
    /// Where its chat messages are written once, per protocol, to be spliced to every member
    /// (`zerocopy`); the history holds the newest of them.
    pub(super) logs: [LogWriter; Protocol::COUNT],
    /// Deliveries of this room's messages.
    pub(super) relayed: u64,
    pub(super) topic: Option<KBox<Topic>>,
    pub(super) modes: Modes,
    /// When it was created (seconds since the epoch).
    pub(super) created: i64,
}

impl Room {
    /// An empty room called `name`, with no history or topic.
    pub(super) fn new(name: RoomName, modes: Modes, created: i64) -> Self {
        Self {
            name,
            members: KVec::new(),
            by_protocol: [0; Protocol::COUNT],
            history: History::new(),
            logs: [const { LogWriter::new() }; Protocol::COUNT],
            relayed: 0,
            topic: None,
            modes,
            created,
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
    /// The links: bridges to other nodes (docs/link.md), in no room and with no name, told
    /// what the local members do ([`Audience::reaches_links`]).
    pub(super) links: KVec<Link<M>>,
}

/// A link, and the node name its bridge gave.
pub(super) struct Link<M> {
    pub(super) who: Arc<M>,
    pub(super) node: NodeName,
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
    /// for that recipient, and the chat carries on) or the protocol shows nothing for it.
    fn get(&mut self, protocol: Protocol) -> Option<&Arc<Frame>> {
        let slot = &mut self.frames[protocol as usize];
        if slot.is_none() {
            *slot = protocol.render(self.event, self.max).ok().flatten();
        }
        slot.as_ref()
    }
}

impl<M: Member> Inner<M> {
    /// Calls `f` with the member id of each of `audience`'s candidates, once each. Only a
    /// member's neighbours across several rooms are collected (to drop the repeats); every
    /// other scope is walked in place, with no allocation per event.
    fn for_each_candidate(&self, audience: &Audience, mut f: impl FnMut(MemberId)) {
        let room_members = |room: RoomId| self.rooms.get(room).map_or(&[][..], |r| &r.members[..]);
        match audience.scope {
            Scope::Nobody => {}
            Scope::One(m) => f(m),
            Scope::Room(room) => room_members(room).iter().for_each(|p| f(p.id)),
            Scope::Neighbours(of) => {
                let Some(e) = self.members.get(of) else {
                    return;
                };
                match &e.seats[..] {
                    // A member in no room is told alone.
                    [] => f(of),
                    // A member in a room is in that room's list.
                    [seat] => room_members(seat.room).iter().for_each(|p| f(p.id)),
                    seats => {
                        let total = seats.iter().map(|s| room_members(s.room).len()).sum();
                        let mut ids = KVec::new();
                        if ids.reserve(total, GFP_KERNEL).is_err() {
                            return;
                        }
                        for s in seats {
                            for p in room_members(s.room) {
                                let _ = ids.push_within_capacity(p.id);
                            }
                        }
                        super::order::heapsort(&mut ids);
                        for (i, &id) in ids.iter().enumerate() {
                            if i == 0 || ids[i - 1] != id {
                                f(id);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Renders `event` and queues it to the members `audience` admits.
    pub(super) fn send(&self, audience: Audience, event: &Event<'_>) {
        let mut rendered = Rendered::new(event, self.max_text);
        let mut remote: Option<Option<Arc<Frame>>> = None;
        self.for_each_candidate(&audience, |id| {
            let Some(e) = self.members.get(id) else {
                return;
            };
            if e.node.is_some() {
                // Through its link, in the link protocol.
                if audience.admits_remote(id, e.who.is_closing()) {
                    let frame =
                        remote.get_or_insert_with(|| frontend::link_private(event).ok().flatten());
                    if let Some(frame) = frame {
                        M::deliver(&e.who, core::iter::once(&*frame));
                    }
                }
                return;
            }
            let protocol = e.who.protocol();
            if !audience.admits(id, e.who.is_closing(), protocol.tracks_state()) {
                return;
            }
            if let Some(frame) = rendered.get(protocol) {
                if matches!(audience.scope, Scope::One(_)) {
                    M::deliver_private(&e.who, frame);
                } else {
                    M::deliver(&e.who, core::iter::once(frame));
                }
            }
        });
        let seated = match audience.scope {
            Scope::Neighbours(of) => self.members.get(of).is_some_and(|e| !e.seats.is_empty()),
            _ => true,
        };
        let remote_origin = self
            .members
            .get(audience.about())
            .is_some_and(|e| e.node.is_some());
        if !self.links.is_empty() && audience.reaches_links(seated, remote_origin) {
            // Lost (like any frame that cannot be allocated) if there is no memory for it.
            if let Ok(Some(frame)) = frontend::link_event(event) {
                self.to_links(core::slice::from_ref(&frame));
            }
        }
    }

    /// Queues `frames` to every link.
    pub(super) fn to_links(&self, frames: &[Arc<Frame>]) {
        for link in self.links.iter() {
            if !link.who.is_closing() {
                M::deliver(&link.who, frames.iter());
            }
        }
    }

    /// The member id of `who`, if it is in the core.
    pub(super) fn id_of(&self, who: &M) -> Option<MemberId> {
        let id = who.slot().load(Relaxed);
        (id != NO_SLOT).then_some(id)
    }

    /// Member `id` of `who`, with its entry, if `who` is in the core.
    pub(super) fn entry_of(&self, who: &M) -> Option<(MemberId, &Entry<M>)> {
        let id = self.id_of(who)?;
        Some((id, self.members.get(id)?))
    }

    /// The member a name designates: its label (ignoring case), or `kchat-ID` for a member
    /// known by its address.
    pub(super) fn find(&self, name: &[u8]) -> Option<MemberId> {
        if let Some(&id) = self.labels.get(&Key::of(name)) {
            return Some(id);
        }
        let conn = Label::alias_conn(name)?;
        self.members
            .iter()
            .find(|(_, e)| e.who.conn_id() == conn && !e.label.is_nick())
            .map(|(id, _)| id)
    }

    /// The room called `name` (ignoring case).
    pub(super) fn room_named(&self, name: &[u8]) -> Option<RoomId> {
        self.room_names.get(&Key::of(name)).copied()
    }

    /// Member `id`'s index in its seats for `room`, if it is in it.
    pub(super) fn seat(&self, id: MemberId, room: RoomId) -> Option<usize> {
        self.members
            .get(id)?
            .seats
            .iter()
            .position(|s| s.room == room)
    }

    /// Whether member `id` is an operator of `room` (false if not in it).
    pub(super) fn is_op(&self, id: MemberId, room: RoomId) -> bool {
        let Some(i) = self.seat(id, room) else {
            return false;
        };
        let (Some(e), Some(r)) = (self.members.get(id), self.rooms.get(room)) else {
            return false;
        };
        r.members.get(e.seats[i].pos as usize).is_some_and(|p| p.op)
    }

    /// Sets or clears member `id`'s operator flag in `room`; false if it is not in it.
    pub(super) fn set_op(&mut self, id: MemberId, room: RoomId, op: bool) -> bool {
        let Some(i) = self.seat(id, room) else {
            return false;
        };
        let Some(pos) = self.members.get(id).map(|e| e.seats[i].pos as usize) else {
            return false;
        };
        match self
            .rooms
            .get_mut(room)
            .and_then(|r| r.members.get_mut(pos))
        {
            Some(p) => {
                p.op = op;
                true
            }
            None => false,
        }
    }

    /// Reserves what [`Inner::enter_room`] needs for member `id` to enter `room`.
    pub(super) fn reserve_seat(&mut self, id: MemberId, room: RoomId) -> Result {
        self.rooms
            .get_mut(room)
            .ok_or(ENOENT)?
            .members
            .reserve(1, GFP_KERNEL)?;
        self.members
            .get_mut(id)
            .ok_or(ENOENT)?
            .seats
            .reserve(1, GFP_KERNEL)?;
        Ok(())
    }

    /// Puts member `id` into `room`, for which [`Inner::reserve_seat`] succeeded.
    pub(super) fn enter_room(&mut self, id: MemberId, room_id: RoomId, op: bool) {
        let Some(e) = self.members.get_mut(id) else {
            return;
        };
        let protocol = e.who.protocol();
        let seat = e.seats.len();
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let pos = room.members.len() as u32;
        // Capacity was reserved by the caller; seats are fewer than CHANLIMIT.
        let place = Place {
            id,
            seat: seat as u16,
            op,
        };
        if room.members.push_within_capacity(place).is_err() {
            return;
        }
        room.by_protocol[protocol as usize] += 1;
        if let Some(e) = self.members.get_mut(id) {
            let _ = e.seats.push_within_capacity(Seat { room: room_id, pos });
        }
    }

    /// Takes member `id` out of `room` (the room is removed if it empties, `#lobby` aside);
    /// false if it was not in it.
    pub(super) fn leave_room(&mut self, id: MemberId, room_id: RoomId, stats: &Stats) -> bool {
        let Some(i) = self.seat(id, room_id) else {
            return false;
        };
        let Some(e) = self.members.get_mut(id) else {
            return false;
        };
        let protocol = e.who.protocol();
        let pos = e.seats[i].pos as usize;
        // The member's last seat takes this one's index: fix its room's back-reference.
        let last = e.seats.len() - 1;
        e.seats.swap(i, last);
        e.seats.pop();
        let moved_seat = e.seats.get(i).copied();
        if let Some(s) = moved_seat {
            if let Some(p) = self
                .rooms
                .get_mut(s.room)
                .and_then(|r| r.members.get_mut(s.pos as usize))
            {
                p.seat = i as u16;
            }
        }
        let Some(room) = self.rooms.get_mut(room_id) else {
            return true;
        };
        // The room's last member takes the leaver's place: fix that member's seat.
        let last = room.members.len() - 1;
        room.members.swap(pos, last);
        room.members.pop();
        room.by_protocol[protocol as usize] -= 1;
        let moved = room.members.get(pos).copied();
        let empty = room.members.is_empty();
        if let Some(p) = moved {
            if let Some(s) = self
                .members
                .get_mut(p.id)
                .and_then(|m| m.seats.get_mut(usize::from(p.seat)))
            {
                s.pos = pos as u32;
            }
        }
        if empty && room_id != LOBBY {
            self.remove_room(room_id, stats);
        }
        true
    }

    /// Removes room `room_id`, with its history, from the tables.
    pub(super) fn remove_room(&mut self, room_id: RoomId, stats: &Stats) {
        if let Some(room) = self.rooms.remove(room_id) {
            self.room_names.remove(&room.name.key());
            stats.rooms_now.fetch_sub(1, Relaxed);
        }
    }

    /// Sends member `id` the history of `room`, header first.
    pub(super) fn replay(&self, id: MemberId, room_id: RoomId, stats: &Stats) {
        let (Some(room), Some(e)) = (self.rooms.get(room_id), self.members.get(id)) else {
            return;
        };
        // A remote member's node has its own history.
        if room.history.len() == 0 || e.node.is_some() {
            return;
        }
        let header = Event::Replay {
            room: &room.name,
            count: room.history.len(),
        };
        self.send(super::audience(super::What::Reply, id, false), &header);
        let protocol = e.who.protocol();
        let (n, _) = M::deliver(
            &e.who,
            room.history.iter().filter_map(|m| m.frame(protocol)),
        );
        stats.history_replayed.add(n, Relaxed);
    }
}
