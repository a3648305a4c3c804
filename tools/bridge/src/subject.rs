// SPDX-License-Identifier: GPL-2.0
//! The NATS subjects bridges talk on (docs/link.md, "NATS subjects").
//!
//! A room's subject is `kchat.room.` and the room's name without `#`, lower-cased (kchat
//! compares rooms ignoring ASCII case), with every byte outside `[a-z0-9_-]` written `%XX`
//! (upper-case hex): a `.` would split the subject into two tokens, so `#Rust.Dev` is
//! `kchat.room.rust%2Edev`. The encoding is reversible and yields one valid subject token
//! for any room the bridge carries.

use crate::names::is_room;

/// Every room, for the subscription.
pub const ROOMS: &str = "kchat.room.>";

/// The prefix of a room's subject.
const ROOM_PREFIX: &str = "kchat.room.";

/// Presence: joins, parts, nicks, quits, states, hellos.
pub const PRESENCE: &str = "kchat.presence";

/// The prefix of a node's private subject.
const PRIV_PREFIX: &str = "kchat.priv.";

/// True if `b` stands for itself in a room's subject.
fn plain(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
}

/// The subject of `room` (`#` and its name).
pub fn room(room: &str) -> String {
    let name = room.strip_prefix('#').unwrap_or(room);
    let mut s = String::with_capacity(ROOM_PREFIX.len() + name.len() + 8);
    s.push_str(ROOM_PREFIX);
    for b in name.bytes().map(|b| b.to_ascii_lowercase()) {
        if plain(b) {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// The room (`#` and its lower-case name) whose subject is `subject`; `None` if it is not a
/// room's subject or does not decode to a room.
pub fn subject_room(subject: &str) -> Option<String> {
    let enc = subject.strip_prefix(ROOM_PREFIX)?.as_bytes();
    let mut room = String::with_capacity(enc.len() + 1);
    room.push('#');
    let mut i = 0;
    while i < enc.len() {
        let b = enc[i];
        if b == b'%' {
            let hex = std::str::from_utf8(enc.get(i + 1..i + 3)?).ok()?;
            room.push(char::from(u8::from_str_radix(hex, 16).ok()?));
            i += 3;
        } else if plain(b) {
            room.push(char::from(b));
            i += 1;
        } else {
            return None;
        }
    }
    is_room(&room).then(|| room.to_ascii_lowercase())
}

/// The private subject of `node`.
pub fn private(node: &str) -> String {
    format!("{PRIV_PREFIX}{node}")
}

/// True if `subject` is some node's private subject.
pub fn is_private(subject: &str) -> bool {
    subject.starts_with(PRIV_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_subjects_are_lower_case_with_dots_escaped() {
        assert_eq!(room("#lobby"), "kchat.room.lobby");
        assert_eq!(room("#Rust.Dev"), "kchat.room.rust%2Edev");
        assert_eq!(room("#a_b-C9"), "kchat.room.a_b-c9");
        assert_eq!(room("#a*b>c%d"), "kchat.room.a%2Ab%3Ec%25d");
        assert_eq!(room("#x.y"), room("#X.Y"), "one subject for both spellings");
    }

    #[test]
    fn room_subjects_decode() {
        assert_eq!(
            subject_room("kchat.room.rust%2Edev").as_deref(),
            Some("#rust.dev")
        );
        assert_eq!(subject_room("kchat.room.lobby").as_deref(), Some("#lobby"));
        assert_eq!(subject_room("kchat.room.a%2eb").as_deref(), Some("#a.b"));
        for room_name in ["#lobby", "#Rust.Dev", "#a*b>c%d", "#...", "#-_-"] {
            assert_eq!(
                subject_room(&room(room_name)),
                Some(room_name.to_ascii_lowercase()),
                "{room_name}"
            );
        }
        for bad in [
            "kchat.room.",
            "kchat.room.a.b",
            "kchat.room.A",
            "kchat.room.%2",
            "kchat.room.%zz",
            "kchat.room.%20",
            "kchat.room.%2C",
            "kchat.presence",
            "kchat.roomx",
        ] {
            assert_eq!(subject_room(bad), None, "{bad}");
        }
    }

    #[test]
    fn private_subjects() {
        assert_eq!(private("n2"), "kchat.priv.n2");
        assert!(is_private("kchat.priv.n2"));
        assert!(!is_private(PRESENCE));
    }
}
