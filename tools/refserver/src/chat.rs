//! The chat itself, written once for both engines: labels and nicks, commands, who receives
//! what, and the per-client state between the socket and the protocol.
//!
//! - [`Registry`] is the list of connected clients in order of arrival, with their labels. It
//!   is shared (behind a mutex) by all the threads of an engine and touched only on join,
//!   leave, `/nick` and `/who`, never on the relay path.
//! - [`Shard`] holds the clients one thread serves: frame reassembly, send queues, dispatch,
//!   flood control. An engine asks it whether a client may be read ([`Shard::may_read`]),
//!   feeds it the bytes it reads ([`Shard::receive`]) and asks it which clients have
//!   something to send ([`Shard::next_dirty`]), which must go ([`Shard::next_dead`]) and
//!   which may be read again after waiting for their rate ([`Shard::pop_due`]). Clients are
//!   named by the engine's token (a slab index or fixed-file slot).
//!
//! kchat's behaviour and text are mirrored exactly (its src/registry.rs, client.rs, proto.rs).

use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    fmt,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use crate::{
    frame::{self, Frame, FrameReader, Payload, TooLong},
    queue::TxQueue,
};

/// Longest nick, and so the longest label (`255.255.255.255:65535` is 21 bytes).
pub const MAX_LABEL_LEN: usize = 32;

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
}

/// How a client is shown to others: its nick, or its `ip:port` until it sets one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Label {
    bytes: [u8; MAX_LABEL_LEN],
    len: u8,
}

/// Why a requested nick is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NickError {
    /// No name given.
    Empty,
    /// Longer than [`MAX_LABEL_LEN`] bytes.
    TooLong,
    /// A byte outside `[A-Za-z0-9_.-]`.
    BadChar,
}

impl NickError {
    /// The text after `! ` that the client gets back.
    fn message(self) -> &'static str {
        match self {
            Self::Empty => "usage: /nick NAME",
            Self::TooLong => "invalid nick: longer than 32 bytes",
            Self::BadChar => "invalid nick: use only A-Z a-z 0-9 _ . -",
        }
    }
}

impl Label {
    /// The default label, `ip:port` (the listener is IPv4, so it always fits; an address that
    /// did not would be cut).
    pub fn from_addr(addr: SocketAddr) -> Self {
        let text = addr.to_string();
        let len = text.len().min(MAX_LABEL_LEN);
        let mut bytes = [0; MAX_LABEL_LEN];
        bytes[..len].copy_from_slice(&text.as_bytes()[..len]);
        // At most MAX_LABEL_LEN (32): fits in a u8.
        Self {
            bytes,
            len: len as u8,
        }
    }

    /// A nick: 1 to 32 bytes of `[A-Za-z0-9_.-]`.
    pub fn nick(name: &[u8]) -> Result<Self, NickError> {
        if name.is_empty() {
            return Err(NickError::Empty);
        }
        if name.len() > MAX_LABEL_LEN {
            return Err(NickError::TooLong);
        }
        if !name
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
        {
            return Err(NickError::BadChar);
        }
        let mut bytes = [0; MAX_LABEL_LEN];
        bytes[..name.len()].copy_from_slice(name);
        Ok(Self {
            bytes,
            len: name.len() as u8,
        })
    }

    /// The label's bytes (always ASCII).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The label as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("?")
    }

    /// Whether two labels name the same nick, ignoring ASCII case.
    fn same_nick(&self, other: &Label) -> bool {
        self.as_bytes().eq_ignore_ascii_case(other.as_bytes())
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Label({self})")
    }
}

/// What a payload asks for.
#[derive(Debug, PartialEq, Eq)]
enum Command<'a> {
    /// `/nick NAME`.
    Nick(&'a [u8]),
    /// `/who`.
    Who,
    /// Anything else: a chat message, relayed as it came.
    Chat,
}

/// Parses a payload; trailing whitespace is ignored around commands.
fn parse(payload: &[u8]) -> Command<'_> {
    let text = payload.trim_ascii_end();
    if text == b"/who" {
        return Command::Who;
    }
    if text == b"/nick" {
        return Command::Nick(b"");
    }
    if let Some(name) = text.strip_prefix(b"/nick ") {
        return Command::Nick(name.trim_ascii());
    }
    Command::Chat
}

/// Nanoseconds per second.
const NSEC_PER_SEC: i64 = 1_000_000_000;

/// The per-client rate limit, as kchat's src/throttle.rs: `max_msg_rate` messages per second
/// with a burst of as many, kept as the generic cell rate algorithm's theoretical arrival time.
#[derive(Debug, Clone, Copy)]
struct Rate {
    /// Time one message is worth, ns; 0 when unlimited.
    interval: i64,
    /// How far ahead of its rate a client may be (the burst less one message), ns.
    tolerance: i64,
}

impl Rate {
    fn new(per_sec: u32) -> Self {
        if per_sec == 0 {
            return Self {
                interval: 0,
                tolerance: 0,
            };
        }
        let interval = NSEC_PER_SEC / i64::from(per_sec);
        // A burst of exactly `per_sec`: the last message of the burst may be one interval
        // ahead of the bucket's tolerance.
        Self {
            interval,
            tolerance: interval * (i64::from(per_sec) - 1),
        }
    }
}

/// One client's token bucket.
#[derive(Debug, Default, Clone, Copy)]
struct Bucket {
    /// When the client's sending would be exactly on its rate (ns on the shard's clock).
    tat: i64,
}

impl Bucket {
    /// Takes one message's worth at `now`. The bucket may go into debt: every message of one
    /// read is charged, and the next read waits longer.
    fn charge(&mut self, rate: Rate, now: i64) {
        if rate.interval != 0 {
            self.tat = self.tat.max(now) + rate.interval;
        }
    }

    /// How long from `now` the client must wait before it is read again (0: it may be).
    fn wait(&self, rate: Rate, now: i64) -> i64 {
        if rate.interval == 0 {
            return 0;
        }
        (self.tat - rate.tolerance - now).max(0)
    }
}

/// `max_clients` are connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// Why a `/nick` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NickRefused {
    Invalid(NickError),
    Taken,
}

/// One connected client as everyone sees it.
#[derive(Debug)]
struct Member {
    /// Connection number, increasing: the list is sorted by it.
    id: u64,
    label: Label,
}

#[derive(Debug, Default)]
struct Members {
    /// In order of arrival (and so of `id`).
    list: Vec<Member>,
    next_id: u64,
}

/// The connected clients of a server, shared by its threads.
#[derive(Debug)]
pub struct Registry {
    limits: Limits,
    members: Mutex<Members>,
}

impl Registry {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            members: Mutex::default(),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn lock(&self) -> MutexGuard<'_, Members> {
        // The list stays consistent even if a thread panicked holding it.
        self.members.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a new connection labelled `label`, unless `max_clients` are connected; returns
    /// its member id.
    pub fn admit(&self, label: Label) -> Result<u64, Full> {
        let mut m = self.lock();
        if m.list.len() >= self.limits.max_clients as usize {
            return Err(Full);
        }
        let id = m.next_id;
        m.next_id += 1;
        m.list.push(Member { id, label });
        Ok(id)
    }

    /// Removes a member.
    pub fn remove(&self, id: u64) {
        let mut m = self.lock();
        if let Ok(at) = m.list.binary_search_by_key(&id, |c| c.id) {
            m.list.remove(at);
        }
    }

    /// Gives member `id` the nick `name` if it is valid and nobody else has it (ignoring
    /// case); returns the old label, or `None` if the label is already exactly this.
    fn set_nick(&self, id: u64, name: &[u8]) -> Result<Option<(Label, Label)>, NickRefused> {
        let nick = Label::nick(name).map_err(NickRefused::Invalid)?;
        let mut m = self.lock();
        let at = m
            .list
            .binary_search_by_key(&id, |c| c.id)
            .map_err(|_| NickRefused::Taken)?;
        let old = m.list[at].label;
        if old == nick {
            return Ok(None);
        }
        if m.list
            .iter()
            .any(|c| c.id != id && c.label.same_nick(&nick))
        {
            return Err(NickRefused::Taken);
        }
        m.list[at].label = nick;
        Ok(Some((old, nick)))
    }

    /// The `/who` answer: `* N online: LABEL, LABEL, ...` in order of arrival, cut to
    /// `max_msg_len` bytes ending in `...` if longer.
    pub fn who(&self) -> String {
        let max = self.limits.max_msg_len as usize;
        let m = self.lock();
        let mut text = format!("* {} online: ", m.list.len());
        for (i, c) in m.list.iter().enumerate() {
            if text.len() > max {
                break;
            }
            if i > 0 {
                text.push_str(", ");
            }
            text.push_str(c.label.as_str());
        }
        drop(m);
        cut_with_ellipsis(text, max)
    }
}

/// `text` if it is at most `max` bytes, else its first `max - 3` bytes and `...` (labels and
/// the prefix are ASCII, so any cut is on a character boundary).
fn cut_with_ellipsis(mut text: String, max: usize) -> String {
    if text.len() > max {
        text.truncate(max.saturating_sub(3));
        text.push_str(&"..."[..max.min(3)]);
    }
    text
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

/// One client of a shard.
#[derive(Debug)]
struct Client {
    /// Its member id in the registry.
    id: u64,
    /// The label its messages carry (the registry holds the same, for `/who` and nicks).
    label: Label,
    reader: FrameReader,
    tx: TxQueue,
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
pub struct Departed {
    pub farewell: TxQueue,
}

/// The clients one engine thread serves, and the protocol between their sockets.
#[derive(Debug)]
pub struct Shard {
    registry: Arc<Registry>,
    limits: Limits,
    rate: Rate,
    /// The clock of the token buckets.
    epoch: Instant,
    /// Parked clients with the time they may be read again, soonest first.
    parked: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Indexed by the engine's token.
    clients: Vec<Option<Client>>,
    /// Clients with frames queued since the engine last flushed them.
    dirty: Vec<usize>,
    /// Clients to disconnect.
    dead: Vec<usize>,
    /// Frames for the clients of the other shards (`None` when this shard is alone).
    remote: Option<Vec<Frame>>,
}

impl Shard {
    /// A shard of the server whose clients are in `registry`; `sharded` if other shards exist
    /// (then frames for everyone are also collected for them, see [`Shard::remote`]).
    pub fn new(registry: Arc<Registry>, sharded: bool) -> Self {
        Self {
            limits: *registry.limits(),
            rate: Rate::new(registry.limits().max_msg_rate),
            epoch: Instant::now(),
            parked: BinaryHeap::new(),
            registry,
            clients: Vec::new(),
            dirty: Vec::new(),
            dead: Vec::new(),
            remote: sharded.then(Vec::new),
        }
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Attaches a client already admitted to the registry as `id`, and tells the others it
    /// joined, before anything it sends is read.
    pub fn attach(&mut self, token: usize, id: u64, label: Label) {
        if self.clients.len() <= token {
            self.clients.resize_with(token + 1, || None);
        }
        self.clients[token] = Some(Client {
            id,
            label,
            reader: FrameReader::new(self.limits.max_msg_len),
            tx: TxQueue::default(),
            bucket: Bucket::default(),
            parked: false,
            closing: None,
            dirty: false,
        });
        if self.limits.notices {
            self.notice(Some(token), format_args!("* {label} joined"));
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
                    self.dispatch(token, payload);
                }
                Ok(None) => return,
                Err(TooLong(len)) => {
                    self.close(token, CloseReason::TooLong(len));
                    return;
                }
            }
        }
    }

    /// Acts on one payload from `token`.
    fn dispatch(&mut self, token: usize, payload: Payload<'_>) {
        let Some(Some(c)) = self.clients.get(token) else {
            return;
        };
        match parse(payload.bytes()) {
            Command::Chat => {
                let frame = frame::build(&[c.label.as_bytes(), b": ", payload.bytes()]);
                self.broadcast(Some(token), &frame);
            }
            Command::Who => {
                let text = self.registry.who();
                self.send(token, &frame::build(&[text.as_bytes()]));
            }
            Command::Nick(name) => match self.registry.set_nick(c.id, name) {
                Ok(None) => {}
                Ok(Some((old, new))) => {
                    if let Some(Some(c)) = self.clients.get_mut(token) {
                        c.label = new;
                    }
                    if self.limits.notices {
                        self.notice(Some(token), format_args!("* {old} is now {new}"));
                    }
                }
                Err(NickRefused::Taken) => {
                    // Only a valid nick can be taken: the name is plain ASCII.
                    let name = String::from_utf8_lossy(name);
                    self.error(token, format_args!("nick {name} is taken"));
                }
                Err(NickRefused::Invalid(e)) => self.error(token, format_args!("{}", e.message())),
            },
        }
    }

    /// Sends `! text` to `token` only.
    fn error(&mut self, token: usize, text: fmt::Arguments<'_>) {
        let text = format!("! {text}");
        self.send(token, &frame::build(&[text.as_bytes()]));
    }

    /// Sends the server notice `text` to the recipients of a frame from `from`.
    fn notice(&mut self, from: Option<usize>, text: fmt::Arguments<'_>) {
        let text = text.to_string();
        self.broadcast(from, &frame::build(&[text.as_bytes()]));
    }

    /// The one place that decides who receives a frame from `from` (`None`: from the
    /// server): every other connected client, here and, through [`Shard::remote`], in the
    /// other shards.
    fn broadcast(&mut self, from: Option<usize>, frame: &Frame) {
        for token in 0..self.clients.len() {
            if Some(token) != from {
                self.send(token, frame);
            }
        }
        if let Some(remote) = &mut self.remote {
            remote.push(frame.clone());
        }
    }

    /// Delivers a frame that another shard broadcast to every client of this one.
    pub fn deliver_remote(&mut self, frame: &Frame) {
        for token in 0..self.clients.len() {
            self.send(token, frame);
        }
    }

    /// Frames broadcast here since the engine last took them, for the other shards; the
    /// engine passes them on and clears the list.
    pub fn remote(&mut self) -> Option<&mut Vec<Frame>> {
        self.remote.as_mut()
    }

    /// Queues `frame` to `token`, or disconnects it as a slow consumer if its queue would
    /// pass `max_queue_bytes`; nobody waits for it.
    fn send(&mut self, token: usize, frame: &Frame) {
        let max = self.limits.max_queue_bytes as usize;
        let Some(Some(c)) = self.clients.get_mut(token) else {
            return;
        };
        if c.closing.is_some() {
            return;
        }
        if !c.tx.fits(frame.len(), max) {
            let queued = c.tx.bytes();
            self.close(token, CloseReason::SlowConsumer(queued));
            return;
        }
        c.tx.push(frame.clone());
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
    pub fn queue(&mut self, token: usize) -> Option<&mut TxQueue> {
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
            c.tx.push(frame::build(&[text.as_bytes()]));
        }
        self.dead.push(token);
    }

    /// The next client to tear down, if any.
    pub fn next_dead(&mut self) -> Option<usize> {
        self.dead.pop()
    }

    /// Removes a client that was closed: it leaves the registry and the others are told
    /// (`* LABEL left`). Returns what the engine still has to flush before shutting the
    /// socket down.
    pub fn remove(&mut self, token: usize) -> Option<Departed> {
        let c = self.clients.get_mut(token)?.take()?;
        self.registry.remove(c.id);
        if self.limits.notices {
            self.notice(None, format_args!("* {} left", c.label));
        }
        let mut farewell = c.tx;
        if !matches!(c.closing, Some(CloseReason::TooLong(_))) {
            farewell.clear();
        }
        Some(Departed { farewell })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        let cases: [(&[u8], Command<'_>); 9] = [
            (b"/who", Command::Who),
            (b"/who \r\n", Command::Who),
            (b"/nick bob", Command::Nick(b"bob")),
            (b"/nick  bob \r\n", Command::Nick(b"bob")),
            (b"/nick", Command::Nick(b"")),
            (b"/nickname", Command::Chat),
            (b"/whois x", Command::Chat),
            (b"hello /who", Command::Chat),
            (b"", Command::Chat),
        ];
        for (payload, want) in cases {
            assert_eq!(parse(payload), want);
        }
    }

    #[test]
    fn nicks() {
        assert!(Label::nick(b"A-z_0.9").is_ok());
        assert!(Label::nick(&[b'x'; 32]).is_ok());
        assert_eq!(Label::nick(&[b'x'; 33]), Err(NickError::TooLong));
        assert_eq!(Label::nick(b""), Err(NickError::Empty));
        assert_eq!(Label::nick(b"b:b"), Err(NickError::BadChar));
        let label = Label::from_addr("255.255.255.255:65535".parse().unwrap());
        assert_eq!(label.as_bytes(), b"255.255.255.255:65535");
    }

    #[test]
    fn bucket_burst_then_rate() {
        // kchat's formulas: 10 per second with a burst of 10. From a full bucket, ten
        // messages are read without waiting, then one per 100 ms.
        let rate = Rate::new(10);
        let mut b = Bucket::default();
        let t0 = 5 * NSEC_PER_SEC;
        for _ in 0..10 {
            assert_eq!(b.wait(rate, t0), 0);
            b.charge(rate, t0);
        }
        assert_eq!(b.wait(rate, t0), 100_000_000);
        let t1 = t0 + 100_000_000;
        assert_eq!(b.wait(rate, t1), 0);
        b.charge(rate, t1);
        assert_eq!(b.wait(rate, t1), 100_000_000);
        // 3000 messages in one read at 1000/s: 2 s of debt, plus the interval after the
        // burst. Unlimited never waits.
        let mut d = Bucket::default();
        for _ in 0..3000 {
            d.charge(Rate::new(1000), 0);
        }
        assert_eq!(d.wait(Rate::new(1000), 0), 2 * NSEC_PER_SEC + 1_000_000);
        let mut u = Bucket::default();
        u.charge(Rate::new(0), 0);
        assert_eq!(u.wait(Rate::new(0), 0), 0);
    }

    #[test]
    fn who_is_cut_with_an_ellipsis() {
        assert_eq!(cut_with_ellipsis("abcdef".into(), 6), "abcdef");
        assert_eq!(cut_with_ellipsis("abcdefg".into(), 6), "abc...");
        assert_eq!(cut_with_ellipsis("abcdefg".into(), 2), "..");
    }

    #[test]
    fn registry_limits_and_nicks() {
        let r = Registry::new(Limits {
            max_clients: 2,
            max_msg_len: 4096,
            max_queue_bytes: 1 << 16,
            max_msg_rate: 0,
            notices: true,
        });
        let a = r
            .admit(Label::from_addr("1.2.3.4:5".parse().unwrap()))
            .unwrap();
        let b = r
            .admit(Label::from_addr("1.2.3.4:6".parse().unwrap()))
            .unwrap();
        assert_eq!(r.admit(Label::nick(b"c").unwrap()), Err(Full));
        assert!(matches!(r.set_nick(a, b"bob"), Ok(Some(_))));
        assert_eq!(r.set_nick(a, b"bob"), Ok(None));
        assert_eq!(r.set_nick(b, b"BOB"), Err(NickRefused::Taken));
        assert!(matches!(r.set_nick(a, b"Bob"), Ok(Some(_))));
        assert_eq!(r.who(), "* 2 online: Bob, 1.2.3.4:6");
        r.remove(a);
        assert_eq!(r.who(), "* 1 online: 1.2.3.4:6");
    }
}
