// SPDX-License-Identifier: GPL-2.0

//! The chat core: who is connected under which name, in which rooms, what each room said
//! recently, and who receives each event.
//!
//! It knows no wire format and no socket. A front end (native frames, IRC lines) turns bytes
//! into calls here, and the core hands frames back through [`Member::deliver`], rendering its
//! events with the recipient's [`Protocol`] once per protocol per event. One mutex protects
//! the whole state, so a change of room, the history replayed to the member that entered, and
//! the messages relayed around it are ordered: every member sees each room message exactly
//! once, replayed or live ([`Core::join`], [`Core::publish`]).
//!
//! A member may be in several rooms (IRC channels, up to the limit its front end asks for) or
//! in one (a native client moves from room to room).

mod batch;
mod history;
mod message;
mod ops;
mod order;
mod remote;
mod roster;
mod route;
mod slab;
mod state;
#[cfg(CONFIG_KUNIT)]
mod tests;
mod view;

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
    frontend::{
        self,
        Protocol, //
    },
    label::{
        Label,
        Name,
        NodeName,
        RoomName, //
    },
    net::PeerAddr,
    stats::Stats,
};

pub(crate) use batch::RelayBatch;
use history::History;
pub(crate) use message::Message;
pub(crate) use ops::{
    KickError,
    ModeChange,
    ModeError,
    PartError,
    SayError,
    TopicError, //
};
pub(crate) use remote::RemoteError;
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
    Link,
    Room, //
};
pub(crate) use state::{
    Modes,
    Topic, //
};
pub(crate) use view::{
    MemberView,
    View, //
};

/// A member's number in the core (a slot, reused after it leaves).
pub(crate) type MemberId = u32;
/// A room's number in the core (a slot, reused after the room is removed).
pub(crate) type RoomId = u32;

/// `#lobby`'s id: created with the core, never removed.
const LOBBY: RoomId = 0;

/// What [`Member::slot`] holds while the member is not in the core.
const NO_SLOT: u32 = u32::MAX;

/// Longest user name (IRC's `USER`).
pub(crate) const USER_LEN: usize = 16;

/// A member's user name, as IRC shows it in `nick!user@host`.
pub(crate) type User = Name<USER_LEN>;

/// Longest away message.
pub(crate) const AWAY_LEN: usize = 200;

/// Longest topic.
pub(crate) const TOPIC_LEN: usize = 300;

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
    /// The peer's address (IRC shows it as the member's host).
    fn peer(&self) -> PeerAddr;
    /// Queues `frames`, in order, without waiting; returns how many it took and their bytes
    /// (a member that cannot take more is disconnected by its front end).
    fn deliver<'a>(this: &Arc<Self>, frames: impl Iterator<Item = &'a Arc<Frame>>) -> (u64, u64);
    /// Queues a frame for this member alone (a reply, a private message, a notice to it), as
    /// [`Member::deliver`] does; whether it took it. As nobody else holds the frame, the
    /// member may copy it on the way (kchat's clients copy it into their server's notes log,
    /// so that it goes out in the same send as their room messages). A frame for several
    /// members goes through `deliver`, shared.
    fn deliver_private(this: &Arc<Self>, frame: &Arc<Frame>) -> bool {
        Self::deliver(this, core::iter::once(frame)).0 == 1
    }
}

/// How an event shows a member: its label, user name, address and connection number.
#[derive(Clone, Copy)]
pub(crate) struct Origin<'a> {
    pub(crate) label: &'a Label,
    pub(crate) user: &'a User,
    pub(crate) host: PeerAddr,
    pub(crate) conn: u64,
}

/// The members of a room as a roster shows them.
pub(crate) trait Roster {
    /// Members in the room.
    fn len(&self) -> usize;
    /// Calls `f` with each member's label, connection number and operator flag, in order of
    /// connection, until it returns false.
    fn each(&self, f: &mut dyn FnMut(&Label, u64, bool) -> bool);
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
    /// `who` entered `room`.
    Joined { who: Origin<'a>, room: &'a RoomName },
    /// `who` left `room` (parted, or moved to another room), with its reason if it gave one.
    Left {
        who: Origin<'a>,
        room: &'a RoomName,
        reason: Option<&'a [u8]>,
    },
    /// `who` left the chat (disconnected).
    Quit { who: Origin<'a>, reason: &'a [u8] },
    /// `by` put `victim` out of `room`.
    Kicked {
        by: Origin<'a>,
        room: &'a RoomName,
        victim: Origin<'a>,
        reason: &'a [u8],
    },
    /// `who` changed its nick to `new`.
    Renamed { who: Origin<'a>, new: &'a Label },
    /// `who` set `room`'s topic.
    TopicSet {
        who: Origin<'a>,
        room: &'a RoomName,
        text: &'a [u8],
    },
    /// `who` changed a mode of `room`.
    ModeSet {
        who: Origin<'a>,
        room: &'a RoomName,
        change: ModeChange,
        target: Option<&'a Label>,
    },
    /// A private message (or notice) to `to`.
    Private {
        from: Origin<'a>,
        to: &'a Label,
        text: &'a [u8],
        notice: bool,
    },
    /// The recipient (`me`) entered `room`, now holding these members.
    Entered {
        me: Origin<'a>,
        room: &'a RoomName,
        topic: Option<&'a Topic>,
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

/// Why a join failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JoinError {
    /// The member is in that room already.
    Already(RoomName),
    /// `max_rooms` rooms exist.
    TooMany(u32),
    /// The member is in as many rooms as its front end allows.
    TooManyJoined,
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
    /// The protocols kchat listens for: history keeps each message rendered for all of them.
    pub(crate) protocols: [bool; Protocol::COUNT],
    /// Whether room messages are written into page-backed logs and spliced.
    pub(crate) zerocopy: bool,
}

/// A member as the stats view shows it: with its label and its first room.
pub(crate) type Snapshot<M> = (Arc<M>, Label, Option<RoomName>);

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

/// The modes of `#lobby`: anyone may set its topic, it has no operator.
const LOBBY_MODES: Modes = Modes {
    topic_ops: false,
    no_external: true,
};

/// The modes of a new room.
const ROOM_MODES: Modes = Modes {
    topic_ops: true,
    no_external: true,
};

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
            links: KVec::new(),
        };
        let lobby = RoomName::lobby();
        let id = inner
            .rooms
            .insert(Room::new(lobby, LOBBY_MODES, crate::clock::unix_seconds()))?;
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

    /// Adds `who`, shown as `label` with user name `user`; in `#lobby` if `lobby` (the others
    /// there are told, and `who` gets the lobby's history), else in no room. Everything it is
    /// sent is queued before this returns, so before anything it sends itself.
    pub(crate) fn add(
        &self,
        who: &Arc<M>,
        label: Label,
        user: User,
        lobby: bool,
    ) -> Result<(), AddError> {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        if inner.closing {
            return Err(AddError::Closing);
        }
        if inner.members.len() >= self.limits.max_members as usize {
            return Err(AddError::Full);
        }
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
                user,
                seats: KVec::new(),
                away: None,
                node: None,
            })
            .map_err(|_| AddError::NoMemory)?;
        if lobby && inner.reserve_seat(id, LOBBY).is_err() {
            inner.members.remove(id);
            return Err(AddError::NoMemory);
        }
        if let Some(node) = node {
            inner.labels.insert(node.into_node(key, id));
        }
        who.slot().store(id, Relaxed);
        self.stats.joined(inner.members.len());
        if lobby {
            inner.enter_room(id, LOBBY, false);
            // A native client is not told the lobby's roster on arrival (the protocol's
            // greeting is the history alone).
            self.announce_entry(inner, id, LOBBY, false);
        }
        Ok(())
    }

    /// Tells `room` that member `id` entered it, and the member the room's roster (if
    /// `roster`) and history.
    fn announce_entry(&self, inner: &Inner<M>, id: MemberId, room_id: RoomId, roster: bool) {
        let (Some(e), Some(room)) = (inner.members.get(id), inner.rooms.get(room_id)) else {
            return;
        };
        let joined = Event::Joined {
            who: e.origin(),
            room: &room.name,
        };
        inner.send(
            audience(
                What::Notice {
                    room: room_id,
                    echo: false,
                },
                id,
                self.limits.notices,
            ),
            &joined,
        );
        if let Some(roster) = roster
            .then(|| RoomRoster::new(inner, room_id).ok())
            .flatten()
        {
            let entered = Event::Entered {
                me: e.origin(),
                room: &room.name,
                topic: room.topic.as_deref(),
                roster: &roster,
            };
            inner.send(audience(What::Reply, id, false), &entered);
        }
        inner.replay(id, room_id, &self.stats);
    }

    /// Makes `who`, a member that has just proven to be a bridge, the link of node `node`
    /// (docs/link.md): it leaves the chat (its departure told as any other), then, under the
    /// one lock, gets `=link NODE`, a `=join` for each local member of each room and
    /// `=synced`, and from then on every event and room message of a local member, in order.
    pub(crate) fn attach_link(&self, who: &Arc<M>, node: &NodeName) -> Result<(), AddError> {
        self.remove(who, b"link");
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        if inner.closing {
            return Err(AddError::Closing);
        }
        inner
            .links
            .reserve(1, GFP_KERNEL)
            .map_err(|_| AddError::NoMemory)?;
        let seats = inner.rooms.iter().flat_map(|(_, room)| {
            let members = &inner.members;
            room.members
                .iter()
                .filter_map(move |p| members.get(p.id).map(|e| (&room.name, &e.label)))
        });
        let seats = seats.filter(|(_, label)| !label.is_remote());
        let snapshot = frontend::link_snapshot(node, seats).map_err(|_| AddError::NoMemory)?;
        M::deliver(who, snapshot.iter());
        // Reserved above.
        let _ = inner.links.push_within_capacity(Link {
            who: who.clone(),
            node: *node,
        });
        Ok(())
    }

    /// Removes `who` and tells the members sharing a room with it, with `reason`; returns
    /// the label it had.
    pub(crate) fn remove(&self, who: &M, reason: &[u8]) -> Option<Label> {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        let Some(id) = inner.id_of(who) else {
            // A link is not a member: it stops being told, and the remote members it
            // brought quit.
            let link = |l: &Link<M>| core::ptr::eq(Arc::as_ptr(&l.who), who);
            if inner.links.iter().any(link) {
                inner.links.retain(|l| !link(l));
                self.quit_remote(inner, who, None, b"link lost");
            }
            return None;
        };
        who.slot().store(NO_SLOT, Relaxed);
        self.quit_member(inner, id, reason).map(|e| e.label)
    }

    /// Takes member `id` out of the chat: the members sharing a room with it are told it
    /// quit with `reason` (unless the chat is closing), then it leaves its rooms and the
    /// index. The slot of its `who` is the caller's to clear.
    fn quit_member(&self, inner: &mut Inner<M>, id: MemberId, reason: &[u8]) -> Option<Entry<M>> {
        if !inner.closing {
            if let Some(e) = inner.members.get(id) {
                let quit = Event::Quit {
                    who: e.origin(),
                    reason,
                };
                inner.send(
                    audience(What::Change { echo: false }, id, self.limits.notices),
                    &quit,
                );
            }
        }
        while let Some(room) = inner
            .members
            .get(id)
            .and_then(|e| e.seats.last().map(|s| s.room))
        {
            inner.leave_room(id, room, &self.stats);
        }
        let e = inner.members.remove(id)?;
        let key = e.label.key();
        if inner.labels.get(&key) == Some(&id) {
            inner.labels.remove(&key);
        }
        self.stats
            .clients_now
            .store(inner.members.len() as u64, Relaxed);
        Some(e)
    }

    /// Sets `who`'s nick unless another member has it; the members sharing a room with it
    /// are told (and `who` too if `echo`). Returns the old label, or `None` if nothing
    /// changed.
    pub(crate) fn set_nick(
        &self,
        who: &M,
        nick: Label,
        echo: bool,
    ) -> Result<Option<Label>, NickError> {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        let id = inner.id_of(who).ok_or(NickError::Gone)?;
        self.rename_member(inner, id, nick, echo)
    }

    /// Renames member `id` unless another member has `nick`; the members sharing a room with
    /// it are told (and it too if `echo`). Returns the old label, or `None` if nothing
    /// changed.
    fn rename_member(
        &self,
        inner: &mut Inner<M>,
        id: MemberId,
        nick: Label,
        echo: bool,
    ) -> Result<Option<Label>, NickError> {
        let old = inner
            .members
            .get(id)
            .map(|e| e.label)
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
        if let Some(e) = inner.members.get(id) {
            let renamed = Event::Renamed {
                who: e.origin(),
                new: &nick,
            };
            inner.send(
                audience(What::Change { echo }, id, self.limits.notices),
                &renamed,
            );
        }
        if let Some(e) = inner.members.get_mut(id) {
            e.label = nick;
        }
        Ok(Some(old))
    }

    /// Sets `who`'s user name.
    pub(crate) fn set_user(&self, who: &M, user: User) {
        let mut guard = self.inner.lock();
        if let Some(id) = guard.id_of(who) {
            if let Some(e) = guard.members.get_mut(id) {
                e.user = user;
            }
        }
    }

    /// Sets (or with `None` clears) `who`'s away message, cut to [`AWAY_LEN`] bytes.
    pub(crate) fn set_away(&self, who: &M, text: Option<&[u8]>) -> Result {
        let away = match text {
            Some(t) => {
                let t = &t[..t.len().min(AWAY_LEN)];
                let mut v = KVec::with_capacity(t.len(), GFP_KERNEL)?;
                v.extend_from_slice(t, GFP_KERNEL)?;
                Some(v)
            }
            None => None,
        };
        let mut guard = self.inner.lock();
        let id = guard.id_of(who).ok_or(ENOENT)?;
        if let Some(e) = guard.members.get_mut(id) {
            e.away = away;
        }
        Ok(())
    }

    /// Puts `who` in the room `name` (created if it does not exist, with `who` its
    /// operator): the room is told, and `who` gets its roster and history before any message
    /// relayed there after it entered. `max_joined` is the most rooms its front end allows:
    /// at 1, `who` moves out of the room it is in. Returns the room's name as first spelled.
    pub(crate) fn join(
        &self,
        who: &M,
        name: &RoomName,
        max_joined: usize,
    ) -> Result<RoomName, JoinError> {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        let id = inner.id_of(who).ok_or(JoinError::Gone)?;
        self.join_member(inner, id, name, max_joined)
    }

    /// Member `id` enters `name` (see [`Core::join`]).
    fn join_member(
        &self,
        inner: &mut Inner<M>,
        id: MemberId,
        name: &RoomName,
        max_joined: usize,
    ) -> Result<RoomName, JoinError> {
        let joined = inner
            .members
            .get(id)
            .map(|e| e.seats.len())
            .ok_or(JoinError::Gone)?;
        let key = name.key();
        let existing = inner.room_names.get(&key).copied();
        if let Some(r) = existing {
            if inner.seat(id, r).is_some() {
                let shown = inner.rooms.get(r).map_or(*name, |r| r.name);
                return Err(JoinError::Already(shown));
            }
        }
        if max_joined > 1 && joined >= max_joined {
            return Err(JoinError::TooManyJoined);
        }
        let (room_id, created) = match existing {
            Some(r) => (r, false),
            None => {
                if inner.rooms.len() >= self.limits.max_rooms as usize {
                    return Err(JoinError::TooMany(self.limits.max_rooms));
                }
                let node =
                    RBTreeNodeReservation::new(GFP_KERNEL).map_err(|_| JoinError::NoMemory)?;
                let r = inner
                    .rooms
                    .insert(Room::new(*name, ROOM_MODES, crate::clock::unix_seconds()))
                    .map_err(|_| JoinError::NoMemory)?;
                inner.room_names.insert(node.into_node(key, r));
                self.stats.rooms_now.add(1, Relaxed);
                self.stats.rooms_created.add(1, Relaxed);
                (r, true)
            }
        };
        if inner.reserve_seat(id, room_id).is_err() {
            if created {
                inner.remove_room(room_id, &self.stats);
            }
            return Err(JoinError::NoMemory);
        }
        if max_joined <= 1 {
            while let Some(old) = inner
                .members
                .get(id)
                .and_then(|e| e.seats.last().map(|s| s.room))
            {
                self.leave(inner, id, old, None, false);
            }
        }
        inner.enter_room(id, room_id, created && room_id != LOBBY);
        self.announce_entry(inner, id, room_id, true);
        let room_name = inner.rooms.get(room_id).map_or(*name, |r| r.name);
        Ok(room_name)
    }

    /// Takes member `id` out of `room_id`, telling the room (and the member too if `echo`).
    fn leave(
        &self,
        inner: &mut Inner<M>,
        id: MemberId,
        room_id: RoomId,
        reason: Option<&[u8]>,
        echo: bool,
    ) {
        if let (Some(e), Some(room)) = (inner.members.get(id), inner.rooms.get(room_id)) {
            let left = Event::Left {
                who: e.origin(),
                room: &room.name,
                reason,
            };
            inner.send(
                audience(
                    What::Notice {
                        room: room_id,
                        echo,
                    },
                    id,
                    self.limits.notices,
                ),
                &left,
            );
        }
        inner.leave_room(id, room_id, &self.stats);
    }

    /// Back to `#lobby` (the native `/part`).
    pub(crate) fn part_to_lobby(&self, who: &M) -> Result<RoomName, JoinError> {
        self.join(who, &RoomName::lobby(), 1)
    }

    /// Answers `/who`: the members of `who`'s room.
    pub(crate) fn who(&self, who: &M) -> Result {
        let inner = self.inner.lock();
        let (id, room_id) = inner
            .entry_of(who)
            .and_then(|(id, e)| Some((id, e.seats.first()?.room)))
            .ok_or(ENOENT)?;
        let room = inner.rooms.get(room_id).ok_or(ENOENT)?;
        let roster = RoomRoster::new(&inner, room_id)?;
        let event = Event::Who {
            room: &room.name,
            roster: &roster,
        };
        inner.send(audience(What::Reply, id, false), &event);
        Ok(())
    }

    /// Answers `/rooms`.
    pub(crate) fn rooms(&self, who: &M) -> Result {
        let inner = self.inner.lock();
        let id = inner.id_of(who).ok_or(ENOENT)?;
        inner.send(audience(What::Reply, id, false), &Event::Rooms(&*inner));
        Ok(())
    }

    /// Sends `text` from `from` to the member `target` names, wherever it is.
    pub(crate) fn private(
        &self,
        from: &M,
        target: &[u8],
        text: &[u8],
        notice: bool,
    ) -> Result<(), NoSuchNick> {
        let inner = self.inner.lock();
        let (id, e) = inner.entry_of(from).ok_or(NoSuchNick)?;
        let to = inner.find(target).ok_or(NoSuchNick)?;
        let to_label = inner.members.get(to).ok_or(NoSuchNick)?.label;
        let event = Event::Private {
            from: e.origin(),
            to: &to_label,
            text,
            notice,
        };
        inner.send(audience(What::Private { to }, id, false), &event);
        self.stats.private_messages.add(1, Relaxed);
        Ok(())
    }

    /// Calls `f` with a view of the chat from `who`'s side, under the core's lock, and
    /// queues the frame it returns to `who`: an answer built from the chat's state, in order
    /// with every other frame `who` is sent.
    pub(crate) fn reply(
        &self,
        who: &M,
        f: impl FnOnce(&View<'_, M>) -> Result<Option<Frame>>,
    ) -> Result {
        let inner = self.inner.lock();
        let (id, e) = inner.entry_of(who).ok_or(ENOENT)?;
        let view = View::new(&inner, id);
        if let Some(frame) = f(&view)? {
            let frame = Arc::new(frame, GFP_KERNEL)?;
            M::deliver_private(&e.who, &frame);
        }
        Ok(())
    }

    /// Every member of `protocol`, for the front end's timers.
    pub(crate) fn members_of(&self, protocol: Protocol) -> Result<KVec<Arc<M>>> {
        let inner = self.inner.lock();
        let mut out = KVec::new();
        for (_, e) in inner.members.iter() {
            if e.who.protocol() == protocol {
                out.push(e.who.clone(), GFP_KERNEL)?;
            }
        }
        Ok(out)
    }

    /// Closes the chat at unload and takes every member and link out of it (each connection
    /// once: a remote member is its link's); the rooms and their history go too.
    pub(crate) fn close_all(&self) -> impl Iterator<Item = Arc<M>> {
        let mut inner = self.inner.lock();
        inner.closing = true;
        self.stats.clients_now.store(0, Relaxed);
        self.stats.rooms_now.store(0, Relaxed);
        let members = core::mem::replace(&mut inner.members, Slab::new());
        let rooms = core::mem::replace(&mut inner.rooms, Slab::new());
        let links = core::mem::take(&mut inner.links);
        inner.labels = RBTree::new();
        inner.room_names = RBTree::new();
        drop(inner);
        drop(rooms);
        let locals = members.into_values().filter(|e| e.node.is_none()).map(|e| {
            e.who.slot().store(NO_SLOT, Relaxed);
            e.who
        });
        Iterator::chain(locals, links.into_iter().map(|l| l.who))
    }

    /// The members with their labels and first room, for the stats view.
    pub(crate) fn snapshot(&self) -> Result<KVec<Snapshot<M>>> {
        let inner = self.inner.lock();
        let mut out = KVec::with_capacity(inner.members.len(), GFP_KERNEL)?;
        for (_, e) in inner.members.iter() {
            let room = e
                .seats
                .first()
                .and_then(|s| inner.rooms.get(s.room))
                .map(|r| r.name);
            out.push((e.who.clone(), e.label, room), GFP_KERNEL)?;
        }
        order::sort_by_key(&mut out, |(m, _, _)| m.conn_id())?;
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
