//! Rooms: their names, members count and history, and the set of rooms that exist.

use std::collections::{BTreeMap, HashMap};

use super::{history::History, label::is_name_byte};

/// Longest room name after its `#`.
const MAX_ROOM_NAME_LEN: usize = 32;

/// A room as long as it exists: never reused, so a frame for a room that was removed is
/// never taken for a new room of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RoomId(u64);

/// `#lobby`, which always exists and where every client starts.
pub const LOBBY: RoomId = RoomId(0);

#[cfg(test)]
impl RoomId {
    /// The `n`th room created (`#lobby` is 0), for tests of what is kept per room.
    pub fn nth(n: u64) -> Self {
        Self(n)
    }
}

/// A valid room name, as spelled: `#` and 1 to 32 bytes of `[A-Za-z0-9_.-]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomName(String);

impl RoomName {
    /// The name `name`, if it is valid.
    pub fn parse(name: &[u8]) -> Option<Self> {
        let rest = name.strip_prefix(b"#")?;
        let valid =
            (1..=MAX_ROOM_NAME_LEN).contains(&rest.len()) && rest.iter().all(|&c| is_name_byte(c));
        // Valid names are ASCII.
        valid.then(|| Self(String::from_utf8_lossy(name).into_owned()))
    }

    /// `#lobby`.
    pub fn lobby() -> Self {
        Self("#lobby".into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What names are compared by: the name in lower case.
    fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

/// One room.
#[derive(Debug)]
pub struct Room {
    /// As spelled by the client that created it.
    pub name: RoomName,
    /// How many clients are in it.
    pub members: usize,
    pub history: History,
}

/// The rooms that exist: `#lobby` always, any other while it has members.
#[derive(Debug)]
pub struct Rooms {
    by_id: HashMap<RoomId, Room>,
    /// The same rooms by name ignoring case, in the order `/rooms` lists them.
    by_key: BTreeMap<String, RoomId>,
    next_id: u64,
}

impl Default for Rooms {
    fn default() -> Self {
        let mut rooms = Self {
            by_id: HashMap::new(),
            by_key: BTreeMap::new(),
            next_id: 0,
        };
        rooms.create(RoomName::lobby());
        rooms
    }
}

impl Rooms {
    /// How many rooms exist, `#lobby` included.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// The room named `name`, ignoring case.
    pub fn find(&self, name: &RoomName) -> Option<RoomId> {
        self.by_key.get(&name.key()).copied()
    }

    pub fn get(&self, id: RoomId) -> Option<&Room> {
        self.by_id.get(&id)
    }

    pub fn get_mut(&mut self, id: RoomId) -> Option<&mut Room> {
        self.by_id.get_mut(&id)
    }

    /// Creates the room `name`, empty, which must not exist yet.
    pub fn create(&mut self, name: RoomName) -> RoomId {
        let id = RoomId(self.next_id);
        self.next_id += 1;
        self.by_key.insert(name.key(), id);
        self.by_id.insert(
            id,
            Room {
                name,
                members: 0,
                history: History::default(),
            },
        );
        id
    }

    /// A client enters room `id`.
    pub fn enter(&mut self, id: RoomId) {
        if let Some(room) = self.by_id.get_mut(&id) {
            room.members += 1;
        }
    }

    /// A client leaves room `id`; the room is removed, with its history, if that left it
    /// empty (unless it is `#lobby`).
    pub fn leave(&mut self, id: RoomId) {
        let Some(room) = self.by_id.get_mut(&id) else {
            return;
        };
        room.members = room.members.saturating_sub(1);
        if room.members == 0 && id != LOBBY {
            if let Some(room) = self.by_id.remove(&id) {
                self.by_key.remove(&room.name.key());
            }
        }
    }

    /// Every room: `#lobby` first, then the others by name ignoring case.
    pub fn listed(&self) -> impl Iterator<Item = &Room> {
        let others = self
            .by_key
            .values()
            .filter(|&&id| id != LOBBY)
            .filter_map(|id| self.by_id.get(id));
        self.by_id.get(&LOBBY).into_iter().chain(others)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for (name, ok) in [
            (&b"#a"[..], true),
            (b"#Rust-1.9_x", true),
            (&[b"#".as_slice(), &[b'x'; 32]].concat(), true),
            (&[b"#".as_slice(), &[b'x'; 33]].concat(), false),
            (b"#", false),
            (b"rust", false),
            (b"##", false),
            (b"#a b", false),
            (b"#caf\xc3\xa9", false),
        ] {
            assert_eq!(RoomName::parse(name).is_some(), ok, "{name:?}");
        }
    }

    #[test]
    fn empty_rooms_go_and_lobby_stays() {
        let mut rooms = Rooms::default();
        let rust = rooms.create(RoomName::parse(b"#Rust").unwrap());
        let b = rooms.create(RoomName::parse(b"#b").unwrap());
        rooms.enter(rust);
        rooms.enter(b);
        assert_eq!(rooms.find(&RoomName::parse(b"#rUST").unwrap()), Some(rust));
        let order: Vec<&str> = rooms.listed().map(|r| r.name.as_str()).collect();
        assert_eq!(order, ["#lobby", "#b", "#Rust"]);
        rooms.leave(rust);
        rooms.leave(LOBBY);
        assert_eq!(rooms.len(), 2);
        assert_eq!(rooms.find(&RoomName::parse(b"#rust").unwrap()), None);
        assert_eq!(rooms.find(&RoomName::lobby()), Some(LOBBY));
    }
}
