//! The registry: who is connected, under which label, in which room, and each room's history,
//! all behind one mutex shared by the threads of an engine.
//!
//! Everything that must be seen at once by every thread is decided here, in one critical
//! section each: admission against `max_clients`, nick uniqueness, room membership against
//! `max_rooms`, and the history. A chat message is recorded (given its sequence number and
//! kept in its room's history) in the same lock that a client entering the room takes its
//! copy of the history in, so every message is either in that copy or recorded after it:
//! replayed or relayed live, never both, never neither.

use std::{
    fmt::{Display, Write},
    sync::{Mutex, MutexGuard, PoisonError},
};

use super::{
    label::Label,
    rooms::{RoomId, RoomName, Rooms, LOBBY},
    Limits,
};
use crate::frame::Frame;

/// `max_clients` are connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// Why a `/nick` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NickRefused {
    Invalid(super::label::NickError),
    Taken,
}

/// Why a `/join` was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinRefused {
    /// The client is in that room already (its name as shown).
    Already(String),
    /// Creating the room would pass `max_rooms`.
    TooMany,
    /// The client is not connected (any more).
    Gone,
}

/// What a client entering a room gets: the room's history as it was when it entered, and
/// the sequence number of the last message recorded by then (see [`Registry::record`]).
#[derive(Debug)]
pub struct Entry {
    pub room: RoomId,
    /// The room's name as shown.
    pub name: String,
    pub history: Vec<Frame>,
    pub since: u64,
}

/// A client moved to another room.
#[derive(Debug)]
pub struct Joined {
    /// The room it left.
    pub left: RoomId,
    /// The answer it gets: `* now in #room (N): LABEL, ...`.
    pub answer: String,
    pub entry: Entry,
}

/// One connected client as everyone sees it.
#[derive(Debug)]
struct Member {
    /// Connection number, increasing: the list is sorted by it.
    id: u64,
    label: Label,
    room: RoomId,
}

#[derive(Debug, Default)]
struct State {
    /// In order of arrival (and so of `id`).
    members: Vec<Member>,
    next_id: u64,
    rooms: Rooms,
    /// The sequence number of the last chat message recorded, in any room.
    seq: u64,
}

impl State {
    fn member(&mut self, id: u64) -> Option<&mut Member> {
        let at = self.members.binary_search_by_key(&id, |m| m.id).ok()?;
        Some(&mut self.members[at])
    }

    /// The labels of the members of `room`, in order of arrival.
    fn labels_in(&self, room: RoomId) -> impl Iterator<Item = &Label> {
        self.members
            .iter()
            .filter(move |m| m.room == room)
            .map(|m| &m.label)
    }

    /// The name of `room` as shown.
    fn name(&self, room: RoomId) -> String {
        self.rooms
            .get(room)
            .map_or_else(String::new, |r| r.name.as_str().to_string())
    }

    /// What a client entering `room` now gets.
    fn entry(&self, room: RoomId) -> Entry {
        Entry {
            room,
            name: self.name(room),
            history: self
                .rooms
                .get(room)
                .map(|r| r.history.frames().cloned().collect())
                .unwrap_or_default(),
            since: self.seq,
        }
    }
}

/// The connected clients and the rooms of a server, shared by its threads.
#[derive(Debug)]
pub struct Registry {
    limits: Limits,
    state: Mutex<State>,
}

impl Registry {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            state: Mutex::default(),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent even if a thread panicked holding it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a new connection labelled `label` into `#lobby`, unless `max_clients` are
    /// connected; returns its member id.
    pub fn admit(&self, label: Label) -> Result<u64, Full> {
        let mut s = self.lock();
        if s.members.len() >= self.limits.max_clients as usize {
            return Err(Full);
        }
        let id = s.next_id;
        s.next_id += 1;
        s.members.push(Member {
            id,
            label,
            room: LOBBY,
        });
        s.rooms.enter(LOBBY);
        Ok(id)
    }

    /// What a new client gets when it starts being served: `#lobby`'s history.
    pub fn enter_lobby(&self) -> Entry {
        self.lock().entry(LOBBY)
    }

    /// Removes a member; its room goes too if that left it empty.
    pub fn remove(&self, id: u64) {
        let mut s = self.lock();
        if let Ok(at) = s.members.binary_search_by_key(&id, |m| m.id) {
            let gone = s.members.remove(at);
            s.rooms.leave(gone.room);
        }
    }

    /// Gives member `id` the nick `name` if it is valid and nobody else has it (ignoring
    /// case); returns the old and new labels, or `None` if the label is already exactly this.
    pub fn set_nick(&self, id: u64, name: &[u8]) -> Result<Option<(Label, Label)>, NickRefused> {
        let nick = Label::nick(name).map_err(NickRefused::Invalid)?;
        let mut s = self.lock();
        if s.members.iter().any(|m| m.id != id && m.label.is(name)) {
            return Err(NickRefused::Taken);
        }
        let m = s.member(id).ok_or(NickRefused::Taken)?;
        let old = m.label;
        if old == nick {
            return Ok(None);
        }
        m.label = nick;
        Ok(Some((old, nick)))
    }

    /// Moves member `id` to the room `name`, creating it (spelled so) unless that would pass
    /// `max_rooms`; the room it leaves goes if that left it empty.
    pub fn join(&self, id: u64, name: &RoomName) -> Result<Joined, JoinRefused> {
        let max_rooms = self.limits.max_rooms as usize;
        let mut s = self.lock();
        let left = s.member(id).ok_or(JoinRefused::Gone)?.room;
        let room = match s.rooms.find(name) {
            Some(room) if room == left => return Err(JoinRefused::Already(s.name(room))),
            Some(room) => room,
            None if s.rooms.len() >= max_rooms => return Err(JoinRefused::TooMany),
            None => s.rooms.create(name.clone()),
        };
        s.rooms.leave(left);
        s.rooms.enter(room);
        if let Some(m) = s.member(id) {
            m.room = room;
        }
        let entry = s.entry(room);
        let members = s.rooms.get(room).map_or(0, |r| r.members);
        let head = format!("* now in {} ({members}): ", entry.name);
        let answer = listing(head, s.labels_in(room), self.max_text());
        Ok(Joined {
            left,
            answer,
            entry,
        })
    }

    /// Records a chat message relayed in `room`: keeps it in the room's history and returns
    /// its sequence number, which is above every [`Entry::since`] given out before.
    pub fn record(&self, room: RoomId, frame: &Frame) -> u64 {
        let history = self.limits.history as usize;
        let mut s = self.lock();
        s.seq += 1;
        if let Some(r) = s.rooms.get_mut(room) {
            r.history.record(frame, history);
        }
        s.seq
    }

    /// The member whose label is `label`, ignoring case (a nick or an address).
    pub fn find(&self, label: &[u8]) -> Option<u64> {
        let s = self.lock();
        s.members.iter().find(|m| m.label.is(label)).map(|m| m.id)
    }

    /// The `/who` answer for `room`: `* N online in #room: LABEL, LABEL, ...` in order of
    /// arrival, cut to `max_msg_len`.
    pub fn who(&self, room: RoomId) -> String {
        let s = self.lock();
        let count = s.labels_in(room).count();
        let head = format!("* {count} online in {}: ", s.name(room));
        listing(head, s.labels_in(room), self.max_text())
    }

    /// The `/rooms` answer: `* N rooms: #lobby (5), #rust (2), ...`, `#lobby` first and the
    /// others by name ignoring case, cut to `max_msg_len`.
    pub fn rooms(&self) -> String {
        let s = self.lock();
        let head = format!("* {} rooms: ", s.rooms.len());
        let rooms = s
            .rooms
            .listed()
            .map(|r| format!("{} ({})", r.name.as_str(), r.members));
        listing(head, rooms, self.max_text())
    }

    /// The longest answer text.
    fn max_text(&self) -> usize {
        self.limits.max_msg_len as usize
    }
}

/// `head` followed by `items` separated by `, `, cut to `max` bytes ending in `...` if longer.
fn listing(mut text: String, items: impl Iterator<Item = impl Display>, max: usize) -> String {
    for (i, item) in items.enumerate() {
        if text.len() > max {
            break;
        }
        if i > 0 {
            text.push_str(", ");
        }
        // Writing to a String cannot fail.
        let _ = write!(text, "{item}");
    }
    cut_with_ellipsis(text, max)
}

/// `text` if it is at most `max` bytes, else its first `max - 3` bytes and `...` (labels,
/// room names and the heads are ASCII, so any cut is on a character boundary).
fn cut_with_ellipsis(mut text: String, max: usize) -> String {
    if text.len() > max {
        text.truncate(max.saturating_sub(3));
        text.push_str(&"..."[..max.min(3)]);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::build;

    fn limits() -> Limits {
        Limits {
            max_clients: 3,
            max_msg_len: 4096,
            max_queue_bytes: 1 << 16,
            max_msg_rate: 0,
            notices: true,
            history: 2,
            max_rooms: 2,
        }
    }

    fn addr(port: u16) -> Label {
        Label::from_addr(([1, 2, 3, 4], port).into())
    }

    fn room(name: &str) -> RoomName {
        RoomName::parse(name.as_bytes()).unwrap()
    }

    #[test]
    fn cut_with_an_ellipsis() {
        assert_eq!(cut_with_ellipsis("abcdef".into(), 6), "abcdef");
        assert_eq!(cut_with_ellipsis("abcdefg".into(), 6), "abc...");
        assert_eq!(cut_with_ellipsis("abcdefg".into(), 2), "..");
    }

    #[test]
    fn limits_and_nicks() {
        let r = Registry::new(limits());
        let a = r.admit(addr(5)).unwrap();
        let b = r.admit(addr(6)).unwrap();
        r.admit(addr(7)).unwrap();
        assert_eq!(r.admit(addr(8)), Err(Full));
        assert!(matches!(r.set_nick(a, b"bob"), Ok(Some(_))));
        assert_eq!(r.set_nick(a, b"bob"), Ok(None));
        assert_eq!(r.set_nick(b, b"BOB"), Err(NickRefused::Taken));
        assert!(matches!(r.set_nick(a, b"Bob"), Ok(Some(_))));
        assert_eq!(r.find(b"bOb"), Some(a));
        assert_eq!(r.find(b"1.2.3.4:6"), Some(b));
        assert_eq!(
            r.who(LOBBY),
            "* 3 online in #lobby: Bob, 1.2.3.4:6, 1.2.3.4:7"
        );
        r.remove(a);
        assert_eq!(r.find(b"bob"), None);
        assert_eq!(r.who(LOBBY), "* 2 online in #lobby: 1.2.3.4:6, 1.2.3.4:7");
    }

    #[test]
    fn rooms_and_history() {
        let r = Registry::new(limits());
        let a = r.admit(addr(5)).unwrap();
        let b = r.admit(addr(6)).unwrap();
        let rust = r.join(a, &room("#Rust")).unwrap();
        assert_eq!((rust.left, rust.entry.name.as_str()), (LOBBY, "#Rust"));
        assert_eq!(rust.answer, "* now in #Rust (1): 1.2.3.4:5");
        assert_eq!(
            r.join(b, &room("#go")).unwrap_err(),
            JoinRefused::TooMany,
            "max_rooms=2 counts #lobby"
        );
        assert_eq!(
            r.join(a, &room("#rust")).unwrap_err(),
            JoinRefused::Already("#Rust".into())
        );
        let room_id = rust.entry.room;
        for text in [b"1", b"2", b"3"] {
            r.record(room_id, &build(&[text]));
        }
        let seq = r.record(LOBBY, &build(&[b"lobby"]));
        let joined = r.join(b, &room("#RUST")).unwrap();
        assert_eq!(joined.answer, "* now in #Rust (2): 1.2.3.4:5, 1.2.3.4:6");
        let replay: Vec<&[u8]> = joined.entry.history.iter().map(|f| &f[4..]).collect();
        assert_eq!(replay, [b"2", b"3"]);
        assert_eq!(joined.entry.since, seq);
        assert_eq!(r.rooms(), "* 2 rooms: #lobby (0), #Rust (2)");
        assert_eq!(r.who(room_id), "* 2 online in #Rust: 1.2.3.4:5, 1.2.3.4:6");
        assert_eq!(r.enter_lobby().history.len(), 1);
        // The last member out removes the room with its history.
        r.join(a, &RoomName::lobby()).unwrap();
        r.remove(b);
        assert_eq!(r.rooms(), "* 1 rooms: #lobby (1)");
        let again = r.join(a, &room("#rust")).unwrap();
        assert_ne!(again.entry.room, room_id);
        assert_eq!(again.entry.name, "#rust");
        assert!(again.entry.history.is_empty());
    }
}
