//! The chat itself, written once for both engines: labels and nicks, rooms, history,
//! commands, who receives what, and the per-client state between the socket and the protocol.
//!
//! - [`Registry`] holds the connected clients in order of arrival with their labels and
//!   rooms, and the rooms with their history. It is shared (behind one mutex) by all the
//!   threads of an engine.
//! - [`Shard`] holds the clients one thread serves: frame reassembly, send queues, dispatch,
//!   flood control. An engine asks it whether a client may be read ([`Shard::may_read`]),
//!   feeds it the bytes it reads ([`Shard::receive`]) and asks it which clients have
//!   something to send ([`Shard::next_dirty`]), which must go ([`Shard::next_dead`]) and
//!   which may be read again after waiting for their rate ([`Shard::pop_due`]). Clients are
//!   named by the engine's token (a slab index or fixed-file slot).
//! - When an engine has several shards, each passes the frames its clients' messages make
//!   for the others as [`Post`]s, which [`Shard::deliver_remote`] hands to the right clients.
//! - How a frame sits in a client's send queue is the engine's [`Fanout`]: the shard pushes
//!   frames for one client with [`SendQueue::push`] and shares a room's broadcast frame
//!   once ([`Fanout::share`]) for all its recipients.
//!
//! kchat's behaviour and text are mirrored exactly (its src/registry.rs, client.rs, proto.rs,
//! and DESIGN.md section 1).

mod command;
mod dispatch;
mod history;
mod label;
mod rate;
mod registry;
mod rooms;

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

pub use label::Label;
use rate::{Bucket, Rate};
pub use registry::Registry;
pub use rooms::RoomId;
use rooms::LOBBY;

use crate::{
    fanout::{Fanout, SendQueue, SharedFrames},
    frame::{Frame, FrameReader, TooLong},
};

/// The limits and switches that the protocol logic obeys (the engine-independent options).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections beyond this many are told `! server full` and closed.
    pub max_clients: u32,
    /// Largest payload accepted from a client.
    pub max_msg_len: u32,
    /// Unsent bytes one client may have queued before it is dropped as a slow consumer.
    pub max_queue_bytes: u32,
    /// Messages per second one client may send (burst of as many); 0 means unlimited.
    pub max_msg_rate: u32,
    /// Whether join, leave and nick notices are sent.
    pub notices: bool,
    /// Chat messages each room keeps for newcomers; 0 turns history off.
    pub history: u32,
    /// Rooms that may exist at once, `#lobby` included.
    pub max_rooms: u32,
}

/// Why a client is disconnected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed its end.
    Eof,
    /// Reading failed.
    RecvError,
    /// Sending failed.
    SendError,
    /// A header declared this length, over `max_msg_len`.
    TooLong(u32),
    /// The queue held this many bytes and the next frame would pass `max_queue_bytes`.
    SlowConsumer(usize),
}

/// Who a frame is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// The members of a room. A chat message carries its sequence number: a member that
    /// entered the room after it was recorded had it in its replay, and does not get it again.
    Room { room: RoomId, seq: Option<u64> },
    /// One client, by member id (a private message).
    Member(u64),
}

/// A frame for the clients of the other shards.
#[derive(Debug, Clone)]
pub struct Post {
    pub to: Audience,
    pub frame: Frame,
}

/// One client of a shard, with its send queue `Q`.
#[derive(Debug)]
struct Client<Q> {
    /// Its member id in the registry.
    id: u64,
    /// The label its messages carry (the registry holds the same, for `/who` and nicks).
    label: Label,
    /// Its room (the registry holds the same; only this shard changes it).
    room: RoomId,
    /// The last sequence number recorded (in any room) when it entered its room: its room's
    /// messages up to that one were replayed to it (or older than its history), the others
    /// come live.
    since: u64,
    reader: FrameReader,
    tx: Q,
    bucket: Bucket,
    /// Over its rate: not read until [`Shard::pop_due`] returns it.
    parked: bool,
    /// Set once it is being disconnected: it neither sends nor receives any more.
    closing: Option<CloseReason>,
    /// Whether it is in the shard's dirty list.
    dirty: bool,
}

/// What is left of a removed client for its engine: the queue to flush once, without
/// waiting, before the socket is shut down (empty unless there is a last word to say).
#[derive(Debug)]
pub struct Departed<Q> {
    pub farewell: Q,
}

/// The clients one engine thread serves, and the protocol between their sockets; `F` puts
/// the frames into their send queues.
#[derive(Debug)]
pub struct Shard<F: Fanout = SharedFrames> {
    registry: Arc<Registry>,
    fanout: F,
    limits: Limits,
    rate: Rate,
    /// The clock of the token buckets.
    epoch: Instant,
    /// Parked clients with the time they may be read again, soonest first.
    parked: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Indexed by the engine's token.
    clients: Vec<Option<Client<F::Queue>>>,
    /// The tokens of the clients, by member id (for private messages).
    tokens: HashMap<u64, usize>,
    /// Clients with frames queued since the engine last flushed them.
    dirty: Vec<usize>,
    /// Clients to disconnect.
    dead: Vec<usize>,
    /// Frames for the clients of the other shards (`None` when this shard is alone).
    remote: Option<Vec<Post>>,
}

impl<F: Fanout> Shard<F> {
    /// A shard of the server whose clients are in `registry`; `sharded` if other shards exist
    /// (then frames for their clients are collected for them, see [`Shard::remote`]).
    pub fn new(registry: Arc<Registry>, sharded: bool) -> Self {
        Self {
            fanout: F::default(),
            limits: *registry.limits(),
            rate: Rate::new(registry.limits().max_msg_rate),
            epoch: Instant::now(),
            parked: BinaryHeap::new(),
            registry,
            clients: Vec::new(),
            tokens: HashMap::new(),
            dirty: Vec::new(),
            dead: Vec::new(),
            remote: sharded.then(Vec::new),
        }
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Attaches a client already admitted to the registry as `id`: it gets `#lobby`'s
    /// history, and the others there are told it joined, before anything it sends is read.
    pub fn attach(&mut self, token: usize, id: u64, label: Label) {
        if self.clients.len() <= token {
            self.clients.resize_with(token + 1, || None);
        }
        self.clients[token] = Some(Client {
            id,
            label,
            room: LOBBY,
            since: 0,
            reader: FrameReader::new(self.limits.max_msg_len),
            tx: F::Queue::default(),
            bucket: Bucket::default(),
            parked: false,
            closing: None,
            dirty: false,
        });
        self.tokens.insert(id, token);
        let entry = self.registry.enter_lobby();
        self.enter(token, entry);
        if self.limits.notices {
            self.notice(LOBBY, Some(token), format_args!("* {label} joined"));
        }
    }

    /// Whether `token` is a client that is not being disconnected.
    pub fn is_open(&self, token: usize) -> bool {
        matches!(self.clients.get(token), Some(Some(c)) if c.closing.is_none())
    }

    /// The token buckets' clock: ns since the shard started.
    fn now_ns(&self) -> i64 {
        i64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(i64::MAX)
    }

    /// Whether client `token` may be read now (as kchat, the rate is checked before each
    /// read). A client over its rate is parked instead: the engine stops reading it, so TCP
    /// pushes back on it alone, until [`Shard::pop_due`] returns it.
    pub fn may_read(&mut self, token: usize) -> bool {
        let now = self.now_ns();
        let Some(Some(c)) = self.clients.get_mut(token) else {
            return false;
        };
        if c.parked {
            return false;
        }
        let wait = c.bucket.wait(self.rate, now);
        if wait == 0 {
            return true;
        }
        c.parked = true;
        let when = Instant::now() + Duration::from_nanos(wait.unsigned_abs());
        self.parked.push(Reverse((when, token)));
        false
    }

    /// Whether client `token` is parked (over its rate).
    pub fn is_parked(&self, token: usize) -> bool {
        matches!(self.clients.get(token), Some(Some(c)) if c.parked)
    }

    /// When the first parked client may be read again.
    pub fn next_wake(&self) -> Option<Instant> {
        self.parked.peek().map(|Reverse((when, _))| *when)
    }

    /// A parked client whose time has come by `now`, unparked; the engine reads it again.
    pub fn pop_due(&mut self, now: Instant) -> Option<usize> {
        while let Some(&Reverse((when, token))) = self.parked.peek() {
            if when > now {
                return None;
            }
            self.parked.pop();
            if let Some(Some(c)) = self.clients.get_mut(token) {
                if c.parked {
                    c.parked = false;
                    return Some(token);
                }
            }
        }
        None
    }

    /// Handles bytes read from client `token`: every complete frame is charged to its rate
    /// and dispatched.
    pub fn receive(&mut self, token: usize, mut input: &[u8]) {
        let now = self.now_ns();
        loop {
            let Some(Some(c)) = self.clients.get_mut(token) else {
                return;
            };
            if c.closing.is_some() {
                return;
            }
            match c.reader.next(&mut input) {
                Ok(Some(payload)) => {
                    c.bucket.charge(self.rate, now);
                    self.dispatch(token, payload.bytes());
                }
                Ok(None) => return,
                Err(TooLong(len)) => {
                    self.close(token, CloseReason::TooLong(len));
                    return;
                }
            }
        }
    }

    /// Delivers a frame that another shard posted to the clients of this one it is for.
    pub fn deliver_remote(&mut self, post: &Post) {
        self.deliver(post.to, None, &post.frame);
    }

    /// Frames posted here since the engine last took them, for the other shards; the engine
    /// passes them on and clears the list.
    pub fn remote(&mut self) -> Option<&mut Vec<Post>> {
        self.remote.as_mut()
    }

    /// Queues `frame` to `token` alone (see [`Shard::enqueue`]).
    fn send(&mut self, token: usize, frame: &Frame) {
        self.enqueue(token, frame.len(), |tx| tx.push(frame.clone()));
    }

    /// Queues `len` bytes to `token` with `push`, or disconnects it as a slow consumer if its
    /// queue would pass `max_queue_bytes`; nobody waits for it.
    fn enqueue(&mut self, token: usize, len: usize, push: impl FnOnce(&mut F::Queue)) {
        let max = self.limits.max_queue_bytes as usize;
        let Some(Some(c)) = self.clients.get_mut(token) else {
            return;
        };
        if c.closing.is_some() {
            return;
        }
        if !c.tx.fits(len, max) {
            let queued = c.tx.bytes();
            self.close(token, CloseReason::SlowConsumer(queued));
            return;
        }
        push(&mut c.tx);
        if !c.dirty {
            c.dirty = true;
            self.dirty.push(token);
        }
    }

    /// The next client with frames queued since its last flush, if any.
    pub fn next_dirty(&mut self) -> Option<usize> {
        while let Some(token) = self.dirty.pop() {
            if let Some(Some(c)) = self.clients.get_mut(token) {
                c.dirty = false;
                if c.closing.is_none() {
                    return Some(token);
                }
            }
        }
        None
    }

    /// The send queue of client `token` (closing or not, so that the engine can account for
    /// a send that was in flight), for the engine to send from and advance.
    pub fn queue(&mut self, token: usize) -> Option<&mut F::Queue> {
        match self.clients.get_mut(token) {
            Some(Some(c)) => Some(&mut c.tx),
            _ => None,
        }
    }

    /// Disconnects `token` for `reason` (only the first reason counts). It stops sending and
    /// receiving now; the engine tears it down when it takes it from [`Shard::next_dead`].
    pub fn close(&mut self, token: usize, reason: CloseReason) {
        let Some(Some(c)) = self.clients.get_mut(token) else {
            return;
        };
        if c.closing.is_some() {
            return;
        }
        c.closing = Some(reason);
        if let CloseReason::TooLong(len) = reason {
            // The last word goes after what is already queued, as kchat does.
            let text = format!("! message too long ({len} > {})", self.limits.max_msg_len);
            c.tx.push(crate::frame::build(&[text.as_bytes()]));
        }
        self.dead.push(token);
    }

    /// The next client to tear down, if any.
    pub fn next_dead(&mut self) -> Option<usize> {
        self.dead.pop()
    }

    /// Removes a client that was closed: it leaves the registry and the others in its room
    /// are told (`* LABEL left`). Returns what the engine still has to flush before shutting
    /// the socket down.
    pub fn remove(&mut self, token: usize) -> Option<Departed<F::Queue>> {
        let c = self.clients.get_mut(token)?.take()?;
        self.tokens.remove(&c.id);
        self.registry.remove(c.id);
        if self.limits.notices {
            self.notice(c.room, None, format_args!("* {} left", c.label));
        }
        self.fanout.leave(c.room);
        let mut farewell = c.tx;
        if !matches!(c.closing, Some(CloseReason::TooLong(_))) {
            farewell.clear();
        }
        Some(Departed { farewell })
    }
}
