// SPDX-License-Identifier: GPL-2.0
//! Who is in which room, for one node: the bridge keeps one table for its own node (from
//! kchat's snapshot and events) and one per remote node (from NATS), compares tables to
//! reconcile, and writes its own as `state` rooms.
//!
//! Rooms and nicks compare ignoring ASCII case, as in kchat; each keeps the spelling it was
//! first seen with.

use std::collections::{BTreeMap, BTreeSet};

use crate::names::key;

/// A room and who is in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Room {
    name: String,
    /// Nick keys.
    nicks: BTreeSet<String>,
}

/// A member and its rooms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Member {
    nick: String,
    /// Room keys.
    rooms: BTreeSet<String>,
}

/// One node's members and rooms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Members {
    rooms: BTreeMap<String, Room>,
    nicks: BTreeMap<String, Member>,
}

/// One step from a table to another, as [`Members::changes_to`] lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// NICK joined ROOM.
    Join { room: String, nick: String },
    /// NICK left ROOM, and is still in some room.
    Part { room: String, nick: String },
    /// NICK is in no room any more.
    Quit { nick: String },
}

impl Members {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts `nick` in `room`; false if it was there already.
    pub fn join(&mut self, room: &str, nick: &str) -> bool {
        let (rk, nk) = (key(room), key(nick));
        let r = self.rooms.entry(rk.clone()).or_insert_with(|| Room {
            name: room.to_string(),
            nicks: BTreeSet::new(),
        });
        if !r.nicks.insert(nk.clone()) {
            return false;
        }
        self.nicks
            .entry(nk)
            .or_insert_with(|| Member {
                nick: nick.to_string(),
                rooms: BTreeSet::new(),
            })
            .rooms
            .insert(rk);
        true
    }

    /// Takes `nick` out of `room` (a nick in no room is gone); false if it was not there.
    pub fn part(&mut self, room: &str, nick: &str) -> bool {
        let (rk, nk) = (key(room), key(nick));
        let Some(r) = self.rooms.get_mut(&rk) else {
            return false;
        };
        if !r.nicks.remove(&nk) {
            return false;
        }
        if r.nicks.is_empty() {
            self.rooms.remove(&rk);
        }
        if let Some(m) = self.nicks.get_mut(&nk) {
            m.rooms.remove(&rk);
            if m.rooms.is_empty() {
                self.nicks.remove(&nk);
            }
        }
        true
    }

    /// Renames `old` to `new` in every room; false if `old` is unknown.
    pub fn rename(&mut self, old: &str, new: &str) -> bool {
        let Some(m) = self.nicks.remove(&key(old)) else {
            return false;
        };
        let nk = key(new);
        for rk in &m.rooms {
            if let Some(r) = self.rooms.get_mut(rk) {
                r.nicks.remove(&key(old));
                r.nicks.insert(nk.clone());
            }
        }
        let entry = self.nicks.entry(nk).or_default();
        entry.nick = new.to_string();
        entry.rooms.extend(m.rooms);
        true
    }

    /// Takes `nick` out of every room; false if it is unknown.
    pub fn quit(&mut self, nick: &str) -> bool {
        let nk = key(nick);
        let Some(m) = self.nicks.remove(&nk) else {
            return false;
        };
        for rk in &m.rooms {
            if let Some(r) = self.rooms.get_mut(rk) {
                r.nicks.remove(&nk);
                if r.nicks.is_empty() {
                    self.rooms.remove(rk);
                }
            }
        }
        true
    }

    /// True if `nick` is in `room`.
    pub fn contains(&self, room: &str, nick: &str) -> bool {
        self.rooms
            .get(&key(room))
            .is_some_and(|r| r.nicks.contains(&key(nick)))
    }

    /// How many members.
    pub fn member_count(&self) -> usize {
        self.nicks.len()
    }

    /// How many rooms.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Every (room, nick), rooms in key order and each room's nicks in key order.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.rooms.values().flat_map(move |r| {
            r.nicks
                .iter()
                .map(move |nk| (r.name.as_str(), self.nicks[nk].nick.as_str()))
        })
    }

    /// What takes this table to `new`: joins first, then parts of members that stay in some
    /// room, then quits of members in no room of `new` (so a member moving between rooms is
    /// never in no room on the way, which would make kchat drop it).
    pub fn changes_to(&self, new: &Members) -> Vec<Change> {
        let mut out = Vec::new();
        for (room, nick) in new.pairs() {
            if !self.contains(room, nick) {
                out.push(Change::Join {
                    room: room.to_string(),
                    nick: nick.to_string(),
                });
            }
        }
        for (room, nick) in self.pairs() {
            if !new.contains(room, nick) && new.nicks.contains_key(&key(nick)) {
                out.push(Change::Part {
                    room: room.to_string(),
                    nick: nick.to_string(),
                });
            }
        }
        for (nk, m) in &self.nicks {
            if !new.nicks.contains_key(nk) {
                out.push(Change::Quit {
                    nick: m.nick.clone(),
                });
            }
        }
        out
    }

    /// The table as `state` rooms (`#room NICK,NICK;#room NICK`), cut into parts of at most
    /// `budget` bytes each (at least one part, empty for an empty table). A room too big for
    /// one part continues in the next. `budget` must hold one room and one nick (200 bytes do).
    pub fn state_parts(&self, budget: usize) -> Vec<String> {
        let mut parts = Vec::new();
        let mut cur = String::new();
        for r in self.rooms.values() {
            let mut room_open = false;
            for nk in &r.nicks {
                let nick = &self.nicks[nk].nick;
                let need = if room_open {
                    1 + nick.len()
                } else {
                    usize::from(!cur.is_empty()) + r.name.len() + 1 + nick.len()
                };
                if cur.len() + need > budget && !cur.is_empty() {
                    parts.push(std::mem::take(&mut cur));
                    room_open = false;
                }
                if room_open {
                    cur.push(',');
                } else {
                    if !cur.is_empty() {
                        cur.push(';');
                    }
                    cur.push_str(&r.name);
                    cur.push(' ');
                    room_open = true;
                }
                cur.push_str(nick);
            }
        }
        if !cur.is_empty() || parts.is_empty() {
            parts.push(cur);
        }
        parts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::parse_rooms;

    fn table(pairs: &[(&str, &str)]) -> Members {
        let mut m = Members::new();
        for (r, n) in pairs {
            m.join(r, n);
        }
        m
    }

    fn pairs(m: &Members) -> Vec<(String, String)> {
        m.pairs()
            .map(|(r, n)| (r.to_string(), n.to_string()))
            .collect()
    }

    #[test]
    fn join_part_rename_quit() {
        let mut m = Members::new();
        assert!(m.join("#Lobby", "alice"));
        assert!(!m.join("#lobby", "ALICE"), "same room and nick, other case");
        assert!(m.join("#rust", "alice"));
        assert!(m.join("#rust", "bob"));
        assert_eq!((m.member_count(), m.room_count()), (2, 2));
        assert!(m.contains("#LOBBY", "Alice"));
        assert!(m.part("#lobby", "alice"));
        assert!(!m.part("#lobby", "alice"));
        assert_eq!(m.room_count(), 1, "an empty room is gone");
        assert!(m.rename("alice", "al"));
        assert!(!m.rename("alice", "x"));
        assert!(m.contains("#rust", "al") && !m.contains("#rust", "alice"));
        assert!(m.part("#rust", "al"));
        assert_eq!(m.member_count(), 1, "a member in no room is gone");
        assert!(m.quit("bob"));
        assert!(!m.quit("bob"));
        assert_eq!((m.member_count(), m.room_count()), (0, 0));
    }

    #[test]
    fn keeps_first_spelling() {
        let m = table(&[("#Rust", "Alice"), ("#rust", "alice"), ("#RUST", "bob")]);
        assert_eq!(
            pairs(&m),
            vec![
                ("#Rust".to_string(), "Alice".to_string()),
                ("#Rust".to_string(), "bob".to_string())
            ]
        );
    }

    #[test]
    fn changes_join_before_part_and_quit_the_vanished() {
        let old = table(&[
            ("#lobby", "alice"),
            ("#lobby", "bob"),
            ("#rust", "bob"),
            ("#old", "carol"),
        ]);
        let new = table(&[("#lobby", "alice"), ("#go", "bob"), ("#lobby", "dave")]);
        let c = old.changes_to(&new);
        let s = |x: &str| x.to_string();
        assert_eq!(
            c,
            vec![
                Change::Join {
                    room: s("#go"),
                    nick: s("bob")
                },
                Change::Join {
                    room: s("#lobby"),
                    nick: s("dave")
                },
                Change::Part {
                    room: s("#lobby"),
                    nick: s("bob")
                },
                Change::Part {
                    room: s("#rust"),
                    nick: s("bob")
                },
                Change::Quit { nick: s("carol") },
            ]
        );
        let mut applied = old.clone();
        for ch in c {
            match ch {
                Change::Join { room, nick } => assert!(applied.join(&room, &nick)),
                Change::Part { room, nick } => assert!(applied.part(&room, &nick)),
                Change::Quit { nick } => assert!(applied.quit(&nick)),
            }
        }
        assert_eq!(pairs(&applied), pairs(&new));
        assert!(new.changes_to(&new).is_empty());
    }

    #[test]
    fn state_parts_fit_and_round_trip() {
        assert_eq!(Members::new().state_parts(200), vec![String::new()]);
        let m = table(&[("#lobby", "alice"), ("#lobby", "bob"), ("#rust", "bob")]);
        assert_eq!(m.state_parts(200), vec!["#lobby alice,bob;#rust bob"]);
        let mut big = Members::new();
        for i in 0..500 {
            big.join(&format!("#room{}", i % 7), &format!("nick{i:04}"));
        }
        for budget in [200, 1000, 4096, 1 << 20] {
            let parts = big.state_parts(budget);
            let mut back = Members::new();
            for p in &parts {
                assert!(p.len() <= budget, "{} > {budget}", p.len());
                for (room, nicks) in parse_rooms(p).unwrap() {
                    for n in nicks {
                        back.join(room, n);
                    }
                }
            }
            assert_eq!(back, big, "budget {budget}: {} parts", parts.len());
            if budget == 1 << 20 {
                assert_eq!(parts.len(), 1);
            } else {
                assert!(parts.len() > 1);
            }
        }
    }
}
