// SPDX-License-Identifier: GPL-2.0
//! What the bridge knows of another node: its members, when it was last heard, and the
//! parts of a `state` still coming.

use std::{collections::BTreeSet, time::Instant};

use crate::{members::Members, payload::parse_rooms};

/// Another node.
#[derive(Debug)]
pub struct Remote {
    /// Its members, as posted to our kchat.
    pub members: Members,
    /// When any payload of it last came.
    pub last_heard: Instant,
    /// A state of several parts, not all come yet.
    assembly: Option<Assembly>,
}

/// The parts of one state seen so far.
#[derive(Debug)]
struct Assembly {
    seq: u64,
    total: u32,
    got: BTreeSet<u32>,
    members: Members,
}

impl Remote {
    /// A node first heard `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            members: Members::new(),
            last_heard: now,
            assembly: None,
        }
    }

    /// Takes part `part` (I of N) of state `seq`, whose rooms are `rooms`: the node's whole
    /// presence once every part of one state has come. A part of another state drops the
    /// parts gathered so far (a state is only used whole).
    pub fn state_part(&mut self, seq: u64, part: (u32, u32), rooms: &str) -> Option<Members> {
        let (i, total) = part;
        let fresh = match &self.assembly {
            Some(a) => a.seq != seq || a.total != total,
            None => true,
        };
        if fresh {
            self.assembly = Some(Assembly {
                seq,
                total,
                got: BTreeSet::new(),
                members: Members::new(),
            });
        }
        let a = self.assembly.as_mut().expect("just set");
        if a.got.insert(i) {
            for (room, nicks) in parse_rooms(rooms).unwrap_or_default() {
                for nick in nicks {
                    a.members.join(room, nick);
                }
            }
        }
        if a.got.len() as u64 == u64::from(a.total) {
            return self.assembly.take().map(|a| a.members);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_state_in_one_part() {
        let mut r = Remote::new(Instant::now());
        let m = r.state_part(1, (1, 1), "#lobby a,b;#x b").unwrap();
        assert_eq!(m.member_count(), 2);
        assert!(m.contains("#x", "b"));
        let empty = r.state_part(2, (1, 1), "").unwrap();
        assert_eq!(empty.member_count(), 0);
    }

    #[test]
    fn parts_in_any_order_and_a_newer_state_restarts() {
        let mut r = Remote::new(Instant::now());
        assert!(r.state_part(5, (2, 3), "#lobby b").is_none());
        assert!(
            r.state_part(5, (2, 3), "#lobby b").is_none(),
            "a repeated part"
        );
        assert!(r.state_part(5, (1, 3), "#lobby a").is_none());
        let m = r.state_part(5, (3, 3), "#lobby c;#x a").unwrap();
        assert_eq!(m.member_count(), 3);
        assert_eq!(m.room_count(), 2);
        // Parts of state 6 interrupted by state 7: only 7 counts.
        assert!(r.state_part(6, (1, 2), "#old z").is_none());
        assert!(r.state_part(7, (1, 2), "#new y").is_none());
        let m = r.state_part(7, (2, 2), "#new w").unwrap();
        assert!(m.contains("#new", "y") && m.contains("#new", "w"));
        assert!(!m.contains("#old", "z"));
    }
}
