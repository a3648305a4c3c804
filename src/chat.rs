// SPDX-License-Identifier: GPL-2.0

//! The chat core: who is connected under which name, in which room, what each room said
//! recently, and who receives each event.
//!
//! It knows no wire format and no socket. A front end (the native protocol today) turns bytes
//! into calls here, and the core hands frames back through [`Member::deliver`], rendering its
//! events with the recipient's [`Protocol`] once per protocol per event. One mutex protects
//! the whole state, so a change of room, the history replayed to the member that entered, and
//! the messages relayed around it are ordered: every member sees each room message exactly
//! once, replayed or live ([`Core::join`], [`Core::publish`]).

mod batch;
mod history;
mod roster;
mod route;
mod slab;
mod state;
#[cfg(CONFIG_KUNIT)]
mod tests;

use kernel::{
    new_mutex,
    prelude::*,
    rbtree::{
        RBTree,
        RBTreeNodeReservation, //
    },
    sync::{
        atomic::{
            Atomic,
            Relaxed, //
        },
        Arc,
        Mutex, //
    },
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

pub(crate) use batch::RelayBatch;
use history::History;
use roster::RoomRoster;
use route::{
    audience,
    Audience,
    What, //
};
use slab::Slab;
use state::{
    Entry,
    Inner,
    Room, //
};

/// A member's number in the core (a slot, reused after it leaves).
pub(crate) type MemberId = u32;
/// A room's number in the core (a slot, reused after the room is removed).
pub(crate) type RoomId = u32;

/// `#lobby`'s id: created with the core, never removed.
const LOBBY: RoomId = 0;

/// What [`Member::slot`] holds while the member is not in the core.
const NO_SLOT: u32 = u32::MAX;

/// Someone in the chat: a connected client of some front end.
pub(crate) trait Member: Send + Sync + Sized + 'static {
    /// Connection number: rosters list members in this order.
    fn conn_id(&self) -> u64;
    /// Where the core keeps this member's id; read and written only under the core's lock.
    fn slot(&self) -> &Atomic<u32>;
    /// Whether the member is being disconnected: it receives nothing more.
    fn is_closing(&self) -> bool;
    /// The protocol its frames are rendered in.
    fn protocol(&self) -> Protocol;
    /// Queues `frames`, in order, without waiting; returns how many it took and their bytes
    /// (a member that cannot take more is disconnected by its front end).
    fn deliver<'a>(this: &Arc<Self>, frames: impl Iterator<Item = &'a Arc<Frame>>) -> (u64, u64);
}

/// A chat message as the core relays and keeps it: the frame its sender's front end built
/// (`LABEL: TEXT` in the native protocol), shared by every recipient of that protocol and by
/// the history.
#[derive(Clone)]
pub(crate) struct Message {
    frame: Arc<Frame>,
}

impl Message {
    pub(crate) fn new(frame: Arc<Frame>) -> Self {
        Self { frame }
    }

    /// The frame as relayed.
    pub(crate) fn frame(&self) -> &Arc<Frame> {
        &self.frame
    }
}

/// The members of a room as a roster shows them.
pub(crate) trait Roster {
    /// Members in the room.
    fn len(&self) -> usize;
    /// Calls `f` with each member's label in order of connection, until it returns false.
    fn each(&self, f: &mut dyn FnMut(&Label) -> bool);
}

/// The rooms as `/rooms` shows them.
pub(crate) trait RoomList {
    /// Rooms that exist.
    fn len(&self) -> usize;
    /// Calls `f` with each room's name and member count, `#lobby` first and then by name,
    /// until it returns false.
    fn each(&self, f: &mut dyn FnMut(&RoomName, usize) -> bool);
}

/// What the core tells members, for a front end to render.
pub(crate) enum Event<'a> {
    /// `who` entered the recipient's room (connected, or joined it).
    Joined(&'a Label),
    /// `who` left the recipient's room (disconnected, or moved).
    Left(&'a Label),
    /// A member of the recipient's room changed its nick.
    Renamed { old: &'a Label, new: &'a Label },
    /// A private message to the recipient.
    Private { from: &'a Label, text: &'a [u8] },
    /// The recipient entered `room` (with `/join`), now holding these members.
    Entered {
        room: &'a RoomName,
        roster: &'a dyn Roster,
    },
    /// The next `count` frames are `room`'s history.
    Replay { room: &'a RoomName, count: usize },
    /// The answer to `/who`.
    Who {
        room: &'a RoomName,
        roster: &'a dyn Roster,
    },
    /// The answer to `/rooms`.
    Rooms(&'a dyn RoomList),
}

/// Why a member could not be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AddError {
    /// `max_clients` are connected.
    Full,
    /// The module is unloading.
    Closing,
    /// The tables could not grow.
    NoMemory,
}

/// Why a nick was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NickError {
    /// Another member has it (ignoring case).
    Taken,
    /// The member is not in the chat (being disconnected).
    Gone,
    /// The index could not grow.
    NoMemory,
}

/// Why a `/join` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JoinError {
    /// The member is in that room already.
    Already(RoomName),
    /// `max_rooms` rooms exist.
    TooMany(u32),
    /// The room could not be created or grown.
    NoMemory,
    /// The member is not in the chat (being disconnected).
    Gone,
}

/// Why a private message found nobody.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NoSuchNick;

/// The limits the core enforces, from the module parameters.
#[derive(Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_members: u32,
    pub(crate) max_rooms: u32,
    /// Messages a room's history keeps (0: none).
    pub(crate) history: u32,
    /// Whether join, leave and nick notices are sent.
    pub(crate) notices: bool,
    /// Longest text of a frame (`max_msg_len`): rosters and room lists are cut to it.
    pub(crate) max_text: usize,
}

/// A room as the stats view shows it.
pub(crate) struct RoomStats {
    pub(crate) name: RoomName,
    pub(crate) members: usize,
    pub(crate) relayed: u64,
    pub(crate) history_msgs: usize,
    pub(crate) history_bytes: usize,
}

/// The chat.
#[pin_data]
pub(crate) struct Core<M: Member> {
    #[pin]
    inner: Mutex<Inner<M>>,
    limits: Limits,
    /// Counters for the stats view.
    pub(crate) stats: Stats,
}

impl<M: Member> Core<M> {
    /// A chat with `#lobby` and nobody in it.
    pub(crate) fn new(limits: Limits) -> Result<impl PinInit<Self, Error>> {
        let mut inner = Inner {
            members: Slab::new(),
            rooms: Slab::new(),
            room_names: RBTree::new(),
            labels: RBTree::new(),
            closing: false,
            max_text: limits.max_text,
        };
        let lobby = RoomName::lobby();
        let id = inner.rooms.insert(Room::new(lobby))?;
        inner
            .room_names
            .try_create_and_insert(lobby.key(), id, GFP_KERNEL)?;
        let stats = Stats::new();
        stats.rooms_now.store(1, Relaxed);
        Ok(try_pin_init!(Self {
            inner <- new_mutex!(inner, "Core::inner"),
            limits,
            stats,
        }))
    }

    /// Members now.
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().members.len()
    }

    /// Adds `who`, shown as `label`, to `#lobby`: the others there are told, and `who` gets
    /// the lobby's history. Everything it is sent is queued before this returns, so before
    /// anything it sends itself.
    pub(crate) fn add(&self, who: &Arc<M>, label: Label) -> Result<(), AddError> {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        if inner.closing {
            return Err(AddError::Closing);
        }
        if inner.members.len() >= self.limits.max_members as usize {
            return Err(AddError::Full);
        }
        let lobby = inner.rooms.get_mut(LOBBY).ok_or(AddError::NoMemory)?;
        lobby
            .members
            .reserve(1, GFP_KERNEL)
            .map_err(|_| AddError::NoMemory)?;
        let key = label.key();
        // Two connections can share an address label only while the older one is being
        // torn down; the index keeps the older until it goes.
        let indexed = inner.labels.get(&key).is_none();
        let node = if indexed {
            Some(RBTreeNodeReservation::new(GFP_KERNEL).map_err(|_| AddError::NoMemory)?)
        } else {
            None
        };
        let id = inner
            .members
            .insert(Entry {
                who: who.clone(),
                label,
                room: LOBBY,
                pos: 0,
            })
            .map_err(|_| AddError::NoMemory)?;
        if let Some(node) = node {
            inner.labels.insert(node.into_node(key, id));
        }
        who.slot().store(id, Relaxed);
        inner.enter_room(id, LOBBY);
        self.stats.joined(inner.members.len());
        inner.notice(&self.limits, id, LOBBY, &Event::Joined(&label));
        inner.replay(id, LOBBY, &self.stats);
        Ok(())
    }

    /// Removes `who` and tells its room; returns the label it had.
    pub(crate) fn remove(&self, who: &M) -> Option<Label> {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        let id = inner.id_of(who)?;
        let room = inner.leave_room(id, &self.stats);
        who.slot().store(NO_SLOT, Relaxed);
        let e = inner.members.remove(id)?;
        let key = e.label.key();
        if inner.labels.get(&key) == Some(&id) {
            inner.labels.remove(&key);
        }
        self.stats
            .clients_now
            .store(inner.members.len() as u64, Relaxed);
        if !inner.closing {
            inner.notice(&self.limits, id, room, &Event::Left(&e.label));
        }
        Some(e.label)
    }

    /// Sets `who`'s nick unless another member has it; its room is told. Returns the old
    /// label, or `None` if nothing changed.
    pub(crate) fn set_nick(&self, who: &M, nick: Label) -> Result<Option<Label>, NickError> {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        let (id, old, room) = inner
            .entry_of(who)
            .map(|(id, e)| (id, e.label, e.room))
            .ok_or(NickError::Gone)?;
        if old == nick {
            return Ok(None);
        }
        let key = nick.key();
        match inner.labels.get(&key) {
            Some(&other) if other != id => return Err(NickError::Taken),
            _ => {}
        }
        if key != old.key() {
            let node = RBTreeNodeReservation::new(GFP_KERNEL)
                .map_err(|_| NickError::NoMemory)?
                .into_node(key, id);
            if inner.labels.get(&old.key()) == Some(&id) {
                inner.labels.remove(&old.key());
            }
            inner.labels.insert(node);
        }
        if let Some(e) = inner.members.get_mut(id) {
            e.label = nick;
        }
        inner.notice(
            &self.limits,
            id,
            room,
            &Event::Renamed {
                old: &old,
                new: &nick,
            },
        );
        Ok(Some(old))
    }

    /// Moves `who` to the room `name` (created if it does not exist): the room it leaves and
    /// the room it enters are told, and `who` gets the new room's roster and history before
    /// any message relayed there after it entered. Returns the room's name as first spelled.
    pub(crate) fn join(&self, who: &M, name: &RoomName) -> Result<RoomName, JoinError> {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        let (id, label, old_room) = inner
            .entry_of(who)
            .map(|(id, e)| (id, e.label, e.room))
            .ok_or(JoinError::Gone)?;
        let key = name.key();
        let (room_id, created) = match inner.room_names.get(&key) {
            Some(&r) if r == old_room => {
                let shown = inner.rooms.get(r).map_or(*name, |r| r.name);
                return Err(JoinError::Already(shown));
            }
            Some(&r) => (r, false),
            None => {
                if inner.rooms.len() >= self.limits.max_rooms as usize {
                    return Err(JoinError::TooMany(self.limits.max_rooms));
                }
                let node =
                    RBTreeNodeReservation::new(GFP_KERNEL).map_err(|_| JoinError::NoMemory)?;
                let r = inner
                    .rooms
                    .insert(Room::new(*name))
                    .map_err(|_| JoinError::NoMemory)?;
                inner.room_names.insert(node.into_node(key, r));
                self.stats.rooms_now.add(1, Relaxed);
                self.stats.rooms_created.add(1, Relaxed);
                (r, true)
            }
        };
        let reserved = inner
            .rooms
            .get_mut(room_id)
            .map(|r| r.members.reserve(1, GFP_KERNEL).is_ok())
            .unwrap_or(false);
        if !reserved {
            if created {
                inner.remove_room(room_id, &self.stats);
            }
            return Err(JoinError::NoMemory);
        }
        inner.leave_room(id, &self.stats);
        inner.notice(&self.limits, id, old_room, &Event::Left(&label));
        inner.enter_room(id, room_id);
        inner.notice(&self.limits, id, room_id, &Event::Joined(&label));
        let room_name = inner.rooms.get(room_id).map_or(*name, |r| r.name);
        if let Ok(roster) = RoomRoster::new(inner, room_id) {
            let entered = Event::Entered {
                room: &room_name,
                roster: &roster,
            };
            inner.send(audience(What::Reply, id, room_id, false), &entered);
        }
        inner.replay(id, room_id, &self.stats);
        Ok(room_name)
    }

    /// Back to `#lobby`.
    pub(crate) fn part(&self, who: &M) -> Result<RoomName, JoinError> {
        self.join(who, &RoomName::lobby())
    }

    /// Answers `/who`: the members of `who`'s room.
    pub(crate) fn who(&self, who: &M) -> Result {
        let inner = self.inner.lock();
        let (id, room_id) = inner
            .entry_of(who)
            .map(|(id, e)| (id, e.room))
            .ok_or(ENOENT)?;
        let room = inner.rooms.get(room_id).ok_or(ENOENT)?;
        let roster = RoomRoster::new(&inner, room_id)?;
        let event = Event::Who {
            room: &room.name,
            roster: &roster,
        };
        inner.send(audience(What::Reply, id, room_id, false), &event);
        Ok(())
    }

    /// Answers `/rooms`.
    pub(crate) fn rooms(&self, who: &M) -> Result {
        let inner = self.inner.lock();
        let id = inner.id_of(who).ok_or(ENOENT)?;
        inner.send(
            audience(What::Reply, id, LOBBY, false),
            &Event::Rooms(&*inner),
        );
        Ok(())
    }

    /// Sends `text` from `from` to the member labelled `target` (ignoring case), wherever it
    /// is.
    pub(crate) fn private(&self, from: &M, target: &[u8], text: &[u8]) -> Result<(), NoSuchNick> {
        let inner = self.inner.lock();
        let (id, label, room) = inner
            .entry_of(from)
            .map(|(id, e)| (id, e.label, e.room))
            .ok_or(NoSuchNick)?;
        let to = *inner.labels.get(&Key::of(target)).ok_or(NoSuchNick)?;
        let event = Event::Private { from: &label, text };
        inner.send(audience(What::Private { to }, id, room, false), &event);
        self.stats.private_messages.add(1, Relaxed);
        Ok(())
    }

    /// Relays a batch of chat messages, each to the others in its sender's room, in order,
    /// and adds them to the rooms' histories: one walk of each room involved and one
    /// [`Member::deliver`] per recipient and room for the whole batch. Messages whose sender
    /// is no longer in the chat are dropped.
    pub(crate) fn publish(&self, batch: &mut RelayBatch<M>) {
        if batch.entries.is_empty() {
            return;
        }
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        // Each entry's sender and room, then the entries in (room, order) order: the runs of
        // one room are relayed together.
        for e in batch.entries.iter_mut() {
            e.from = inner.id_of(&e.who).unwrap_or(NO_SLOT);
            e.room = inner.members.get(e.from).map_or(NO_SLOT, |m| m.room);
        }
        let entries = &mut batch.entries;
        // A batch is mostly one room; sort only when it is not.
        if entries.windows(2).any(|w| w[0].room != w[1].room) {
            // Stable by construction: ties keep their order through the sequence number.
            entries.sort_unstable_by_key(|e| (e.room, e.seq));
        }
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
            let run = &entries[start..end];
            start = end;
            if room_id == NO_SLOT {
                continue;
            }
            let mut k = 0;
            let Some(room) = inner.rooms.get(room_id) else {
                continue;
            };
            for &member in room.members.iter() {
                let Some(m) = inner.members.get(member) else {
                    continue;
                };
                let closing = m.who.is_closing();
                let (d, b) = M::deliver(
                    &m.who,
                    run.iter()
                        .filter(|e| {
                            audience(What::Say, e.from, e.room, false)
                                .admits(member, m.room, closing)
                        })
                        .map(|e| e.msg.frame()),
                );
                k += d;
                bytes += b;
            }
            n += k;
            if let Some(room) = inner.rooms.get_mut(room_id) {
                room.relayed += k;
                if keep > 0 {
                    for e in run {
                        room.history.push(&e.msg, keep);
                    }
                }
            }
        }
        drop(guard);
        batch.entries.clear();
        self.stats.relayed(n, bytes);
    }

    /// Closes the chat at unload and takes every member out of it; the rooms and their
    /// history go too.
    pub(crate) fn close_all(&self) -> impl Iterator<Item = Arc<M>> {
        let mut inner = self.inner.lock();
        inner.closing = true;
        self.stats.clients_now.store(0, Relaxed);
        self.stats.rooms_now.store(0, Relaxed);
        let members = core::mem::replace(&mut inner.members, Slab::new());
        let rooms = core::mem::replace(&mut inner.rooms, Slab::new());
        inner.labels = RBTree::new();
        inner.room_names = RBTree::new();
        drop(inner);
        drop(rooms);
        members.into_values().map(|e| {
            e.who.slot().store(NO_SLOT, Relaxed);
            e.who
        })
    }

    /// The members with their labels and room names, for the stats view.
    pub(crate) fn snapshot(&self) -> Result<KVec<(Arc<M>, Label, RoomName)>> {
        let inner = self.inner.lock();
        let mut out = KVec::with_capacity(inner.members.len(), GFP_KERNEL)?;
        for (_, e) in inner.members.iter() {
            let room = inner
                .rooms
                .get(e.room)
                .map_or(RoomName::lobby(), |r| r.name);
            out.push((e.who.clone(), e.label, room), GFP_KERNEL)?;
        }
        out.sort_unstable_by_key(|(m, _, _)| m.conn_id());
        Ok(out)
    }

    /// The rooms, `#lobby` first and then by name, for the stats view.
    pub(crate) fn room_stats(&self) -> Result<KVec<RoomStats>> {
        let inner = self.inner.lock();
        let mut out = KVec::with_capacity(inner.rooms.len(), GFP_KERNEL)?;
        let mut ids = KVec::with_capacity(inner.rooms.len(), GFP_KERNEL)?;
        ids.push(LOBBY, GFP_KERNEL)?;
        for (_, id) in inner.room_names.iter() {
            if *id != LOBBY {
                ids.push(*id, GFP_KERNEL)?;
            }
        }
        for id in ids {
            if let Some(r) = inner.rooms.get(id) {
                out.push(
                    RoomStats {
                        name: r.name,
                        members: r.members.len(),
                        relayed: r.relayed,
                        history_msgs: r.history.len(),
                        history_bytes: r.history.bytes(),
                    },
                    GFP_KERNEL,
                )?;
            }
        }
        Ok(out)
    }
}
