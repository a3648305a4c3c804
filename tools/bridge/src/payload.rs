// SPDX-License-Identifier: GPL-2.0
//! The payloads bridges publish (docs/link.md, "NATS subjects"). Each starts with the origin
//! node and a space, so a bridge can ignore its own.

use crate::names::{exact_fields, is_nick, is_node, is_room, split_fields, text, Malformed};

/// Appends `parts` to a new payload.
fn join(parts: &[&[u8]]) -> Vec<u8> {
    let mut p = Vec::with_capacity(parts.iter().map(|x| x.len()).sum());
    for part in parts {
        p.extend_from_slice(part);
    }
    p
}

/// `NODE NICK TEXT` on `kchat.room.ROOM`: NICK of NODE said TEXT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomMsg<'a> {
    pub node: &'a str,
    pub nick: &'a str,
    pub text: &'a [u8],
}

impl<'a> RoomMsg<'a> {
    /// The payload.
    pub fn payload(&self) -> Vec<u8> {
        join(&[
            self.node.as_bytes(),
            b" ",
            self.nick.as_bytes(),
            b" ",
            self.text,
        ])
    }

    /// Parses a payload.
    pub fn parse(p: &'a [u8]) -> Result<Self, Malformed> {
        let ([node, nick], text_) = split_fields::<2>(p).ok_or(Malformed("wrong fields"))?;
        let node = text(node)
            .filter(|n| is_node(n))
            .ok_or(Malformed("bad node"))?;
        let nick = text(nick)
            .filter(|n| is_nick(n))
            .ok_or(Malformed("bad nick"))?;
        Ok(Self {
            node,
            nick,
            text: text_,
        })
    }
}

/// Several room messages of one node in one payload on `kchat.room.ROOM`, in the order they
/// were said: `NODE @COUNT` and a space, then COUNT records `NICK LEN TEXT`, where LEN is
/// TEXT's length in decimal and each record follows the previous one's TEXT directly.
/// (`@` starts no nick, so the form cannot be mistaken for [`RoomMsg`].) NATS then carries,
/// and every bridge parses, one payload for a run of messages instead of one each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomBatch {
    node_len: usize,
    records: Vec<u8>,
    count: usize,
}

/// The longest LEN a batch record may state (kchat's max_msg_len is at most 1 MiB).
const MAX_RECORD_TEXT: usize = 1 << 20;

impl RoomBatch {
    /// An empty batch of `node`'s.
    pub fn new(node: &str) -> Self {
        Self {
            node_len: node.len(),
            records: Vec::new(),
            count: 0,
        }
    }

    /// Messages in the batch.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The payload's length once `nick` saying `text` is added (a bound: the count may
    /// gain a digit).
    pub fn len_with(&self, nick: &str, text: &[u8]) -> usize {
        // "NODE @COUNT " + records + "NICK LEN TEXT"
        self.node_len + 2 + 20 + 1 + self.records.len() + nick.len() + 1 + 20 + 1 + text.len()
    }

    /// Adds `nick` saying `text`.
    pub fn push(&mut self, nick: &str, text: &[u8]) {
        self.records.extend_from_slice(nick.as_bytes());
        self.records
            .extend_from_slice(format!(" {} ", text.len()).as_bytes());
        self.records.extend_from_slice(text);
        self.count += 1;
    }

    /// The one message, if the batch holds exactly one.
    pub fn single(&self) -> Option<Said<'_>> {
        if self.count != 1 {
            return None;
        }
        parse_record(&self.records).ok().map(|(said, _)| said)
    }

    /// The payload of `node` (the node given to [`RoomBatch::new`]).
    pub fn payload(&self, node: &str) -> Vec<u8> {
        join(&[
            node.as_bytes(),
            format!(" @{} ", self.count).as_bytes(),
            &self.records,
        ])
    }
}

/// One room message: NICK and TEXT.
pub type Said<'a> = (&'a str, &'a [u8]);

/// The batch record `NICK LEN TEXT` at the start of `rest`, and what follows it.
fn parse_record(rest: &[u8]) -> Result<(Said<'_>, &[u8]), Malformed> {
    let ([nick, len], after) = split_fields::<2>(rest).ok_or(Malformed("bad batch record"))?;
    let nick = text(nick)
        .filter(|n| is_nick(n))
        .ok_or(Malformed("bad nick"))?;
    let len: usize = text(len)
        .filter(|l| l.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|l| l.parse().ok())
        .filter(|l| (1..=MAX_RECORD_TEXT).contains(l) && *l <= after.len())
        .ok_or(Malformed("bad batch record length"))?;
    let (text, after) = after.split_at(len);
    Ok(((nick, text), after))
}

/// A room payload, either form: the origin node and its messages, (NICK, TEXT) in order.
/// A single message's TEXT may be empty (the caller refuses it); a batch record's may not.
pub fn parse_room(p: &[u8]) -> Result<(&str, Vec<Said<'_>>), Malformed> {
    let ([node, second], mut rest) = split_fields::<2>(p).ok_or(Malformed("wrong fields"))?;
    let Some(count) = second.strip_prefix(b"@") else {
        let m = RoomMsg::parse(p)?;
        return Ok((m.node, vec![(m.nick, m.text)]));
    };
    let node = text(node)
        .filter(|n| is_node(n))
        .ok_or(Malformed("bad node"))?;
    let count: usize = text(count)
        .and_then(|c| c.parse().ok())
        .filter(|&c| c >= 1)
        .ok_or(Malformed("bad batch count"))?;
    // Each record takes at least 5 bytes ("N 1 x"): the count cannot ask for much memory.
    if count > rest.len() / 5 {
        return Err(Malformed("batch count beyond its records"));
    }
    let mut msgs = Vec::with_capacity(count);
    for _ in 0..count {
        let (said, after) = parse_record(rest)?;
        msgs.push(said);
        rest = after;
    }
    if !rest.is_empty() {
        return Err(Malformed("bytes after the batch's records"));
    }
    Ok((node, msgs))
}

/// `FROMNODE TO FROM TEXT` on `kchat.priv.NODE`: FROM of FROMNODE wrote privately to TO of
/// NODE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrivMsg<'a> {
    pub node: &'a str,
    pub to: &'a str,
    pub from: &'a str,
    pub text: &'a [u8],
}

impl<'a> PrivMsg<'a> {
    /// The payload.
    pub fn payload(&self) -> Vec<u8> {
        join(&[
            self.node.as_bytes(),
            b" ",
            self.to.as_bytes(),
            b" ",
            self.from.as_bytes(),
            b" ",
            self.text,
        ])
    }

    /// Parses a payload.
    pub fn parse(p: &'a [u8]) -> Result<Self, Malformed> {
        let ([node, to, from], text_) = split_fields::<3>(p).ok_or(Malformed("wrong fields"))?;
        let node = text(node)
            .filter(|n| is_node(n))
            .ok_or(Malformed("bad node"))?;
        let to = text(to)
            .filter(|n| is_nick(n))
            .ok_or(Malformed("bad nick"))?;
        let from = text(from)
            .filter(|n| is_nick(n))
            .ok_or(Malformed("bad nick"))?;
        Ok(Self {
            node,
            to,
            from,
            text: text_,
        })
    }
}

/// What a node says on `kchat.presence` after its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence<'a> {
    /// `hello`: a (re)started bridge asks every node for its state.
    Hello,
    /// `join #room NICK`.
    Join { room: &'a str, nick: &'a str },
    /// `part #room NICK`.
    Part { room: &'a str, nick: &'a str },
    /// `nick OLD NEW`.
    Nick { old: &'a str, new: &'a str },
    /// `quit NICK`.
    Quit { nick: &'a str },
    /// `state SEQ[ I/N][ ROOMS]`: part I of N (1 of 1 when absent) of the node's whole
    /// presence numbered SEQ; ROOMS is `#room NICK,NICK;#room NICK` (see [`parse_rooms`]).
    State {
        seq: u64,
        part: (u32, u32),
        rooms: &'a str,
    },
}

impl<'a> Presence<'a> {
    /// The payload of `node` saying this.
    pub fn payload(&self, node: &str) -> Vec<u8> {
        let n = node.as_bytes();
        match *self {
            Self::Hello => join(&[n, b" hello"]),
            Self::Join { room, nick } => {
                join(&[n, b" join ", room.as_bytes(), b" ", nick.as_bytes()])
            }
            Self::Part { room, nick } => {
                join(&[n, b" part ", room.as_bytes(), b" ", nick.as_bytes()])
            }
            Self::Nick { old, new } => join(&[n, b" nick ", old.as_bytes(), b" ", new.as_bytes()]),
            Self::Quit { nick } => join(&[n, b" quit ", nick.as_bytes()]),
            Self::State { seq, part, rooms } => {
                let mut head = format!("{node} state {seq}");
                if part != (1, 1) {
                    head.push_str(&format!(" {}/{}", part.0, part.1));
                }
                if !rooms.is_empty() {
                    head.push(' ');
                    head.push_str(rooms);
                }
                head.into_bytes()
            }
        }
    }

    /// Parses a payload: the origin node and what it says.
    pub fn parse(p: &'a [u8]) -> Result<(&'a str, Self), Malformed> {
        let bad = Malformed("wrong fields");
        let (node, rest) = match split_fields::<1>(p) {
            Some(([node], rest)) => (node, rest),
            None => return Err(bad),
        };
        let node = text(node)
            .filter(|n| is_node(n))
            .ok_or(Malformed("bad node"))?;
        let (verb, args) = match rest.iter().position(|&b| b == b' ') {
            Some(at) => (&rest[..at], &rest[at + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        let room_nick = |args: &'a [u8]| -> Result<(&'a str, &'a str), Malformed> {
            let [room, nick] = exact_fields(args).ok_or(bad)?;
            if !is_room(room) {
                return Err(Malformed("bad room"));
            }
            if !is_nick(nick) {
                return Err(Malformed("bad nick"));
            }
            Ok((room, nick))
        };
        let said = match verb {
            b"hello" if args.is_empty() && rest.len() == 5 => Self::Hello,
            b"join" => {
                let (room, nick) = room_nick(args)?;
                Self::Join { room, nick }
            }
            b"part" => {
                let (room, nick) = room_nick(args)?;
                Self::Part { room, nick }
            }
            b"nick" => {
                let [old, new] = exact_fields(args).ok_or(bad)?;
                if !is_nick(old) || !is_nick(new) {
                    return Err(Malformed("bad nick"));
                }
                Self::Nick { old, new }
            }
            b"quit" => {
                let [nick] = exact_fields(args).ok_or(bad)?;
                if !is_nick(nick) {
                    return Err(Malformed("bad nick"));
                }
                Self::Quit { nick }
            }
            b"state" => parse_state(args)?,
            _ => return Err(Malformed("unknown presence")),
        };
        Ok((node, said))
    }
}

/// Parses what follows `state `: `SEQ[ I/N][ ROOMS]`.
fn parse_state(args: &[u8]) -> Result<Presence<'_>, Malformed> {
    let bad = Malformed("bad state");
    let args = text(args).ok_or(bad)?;
    let (seq, mut rest) = args.split_once(' ').unwrap_or((args, ""));
    let seq = seq.parse::<u64>().map_err(|_| bad)?;
    let mut part = (1, 1);
    if !rest.is_empty() && !rest.starts_with('#') {
        let (p, r) = rest.split_once(' ').unwrap_or((rest, ""));
        let (i, n) = p.split_once('/').ok_or(bad)?;
        part = (i.parse().map_err(|_| bad)?, n.parse().map_err(|_| bad)?);
        if part.0 == 0 || part.0 > part.1 {
            return Err(bad);
        }
        rest = r;
    }
    parse_rooms(rest)?;
    Ok(Presence::State {
        seq,
        part,
        rooms: rest,
    })
}

/// The rooms of a `state`: `#room NICK,NICK;#room NICK` (empty: none), each room with its
/// members. A room may appear more than once (in one part or across parts of a state that was
/// cut to fit NATS' max_payload): its members are the union.
pub fn parse_rooms(rooms: &str) -> Result<Vec<(&str, Vec<&str>)>, Malformed> {
    if rooms.is_empty() {
        return Ok(Vec::new());
    }
    rooms
        .split(';')
        .map(|entry| {
            let (room, nicks) = entry
                .split_once(' ')
                .ok_or(Malformed("room without nicks"))?;
            if !is_room(room) {
                return Err(Malformed("bad room"));
            }
            let nicks: Vec<&str> = nicks.split(',').collect();
            if !nicks.iter().all(|n| is_nick(n)) {
                return Err(Malformed("bad nick"));
            }
            Ok((room, nicks))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_messages() {
        let m = RoomMsg {
            node: "n1",
            nick: "alice",
            text: b"hi there\r\nsecond line",
        };
        let p = m.payload();
        assert_eq!(p, b"n1 alice hi there\r\nsecond line");
        assert_eq!(RoomMsg::parse(&p), Ok(m));
        assert_eq!(RoomMsg::parse(b"n1 alice ").map(|m| m.text), Ok(&b""[..]));
        assert!(RoomMsg::parse(b"n1 alice").is_err());
        assert!(RoomMsg::parse(b"n.1 alice hi").is_err());
        assert!(RoomMsg::parse(b"n1 a@b hi").is_err());
    }

    #[test]
    fn room_batches() {
        let mut b = RoomBatch::new("n1");
        b.push("alice", b"hi there");
        b.push("bob", b"12 34\r\n");
        b.push("alice", b"x");
        let p = b.payload("n1");
        assert_eq!(p, b"n1 @3 alice 8 hi therebob 7 12 34\r\nalice 1 x");
        assert!(p.len() <= RoomBatch::new("n1").len_with("alice", b"hi there") + 30);
        assert_eq!(b.count(), 3);
        let (node, msgs) = parse_room(&p).unwrap();
        assert_eq!(node, "n1");
        let want: Vec<(&str, &[u8])> = vec![
            ("alice", b"hi there"),
            ("bob", b"12 34\r\n"),
            ("alice", b"x"),
        ];
        assert_eq!(msgs, want);
        // The single form still parses, its empty text left to the caller.
        assert_eq!(
            parse_room(b"n1 alice hi").unwrap(),
            ("n1", vec![("alice", &b"hi"[..])])
        );
        assert_eq!(
            parse_room(b"n1 alice ").unwrap(),
            ("n1", vec![("alice", &b""[..])])
        );
        for bad in [
            &b"n1 @2 alice 1 x"[..],      // fewer records than counted
            b"n1 @1 alice 1 xbob 1 y",    // more
            b"n1 @1 alice 0 ",            // empty text
            b"n1 @1 alice 5 abc",         // beyond the payload
            b"n1 @1 alice +1 x",          // not plain digits
            b"n1 @0 ",                    // no records
            b"n1 @x alice 1 x",           // no count
            b"n1 @99999999999 alice 1 x", // a count the payload cannot hold
            b"n.1 @1 alice 1 x",          // bad node
            b"n1 @1 a@b 1 x",             // bad nick
        ] {
            assert!(parse_room(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn private_messages() {
        let m = PrivMsg {
            node: "n1",
            to: "bob",
            from: "alice",
            text: b"a b  c",
        };
        let p = m.payload();
        assert_eq!(p, b"n1 bob alice a b  c");
        assert_eq!(PrivMsg::parse(&p), Ok(m));
        assert!(PrivMsg::parse(b"n1 bob alice").is_err());
    }

    #[test]
    fn presence_round_trips() {
        let cases: [(Presence<'_>, &[u8]); 8] = [
            (Presence::Hello, b"n1 hello"),
            (
                Presence::Join {
                    room: "#Rust",
                    nick: "alice",
                },
                b"n1 join #Rust alice",
            ),
            (
                Presence::Part {
                    room: "#rust",
                    nick: "alice",
                },
                b"n1 part #rust alice",
            ),
            (
                Presence::Nick {
                    old: "alice",
                    new: "al",
                },
                b"n1 nick alice al",
            ),
            (Presence::Quit { nick: "al" }, b"n1 quit al"),
            (
                Presence::State {
                    seq: 7,
                    part: (1, 1),
                    rooms: "#lobby alice,bob;#rust bob",
                },
                b"n1 state 7 #lobby alice,bob;#rust bob",
            ),
            (
                Presence::State {
                    seq: 8,
                    part: (1, 1),
                    rooms: "",
                },
                b"n1 state 8",
            ),
            (
                Presence::State {
                    seq: 9,
                    part: (2, 3),
                    rooms: "#lobby carol",
                },
                b"n1 state 9 2/3 #lobby carol",
            ),
        ];
        for (said, want) in cases {
            assert_eq!(said.payload("n1"), want);
            assert_eq!(Presence::parse(want), Ok(("n1", said)));
        }
        assert_eq!(
            Presence::parse(b"n1 state 9 3/3"),
            Ok((
                "n1",
                Presence::State {
                    seq: 9,
                    part: (3, 3),
                    rooms: ""
                }
            ))
        );
    }

    #[test]
    fn malformed_presence() {
        for bad in [
            &b"n1"[..],
            b"n1 ",
            b"n1 hello x",
            b"n1 hellox",
            b"n.1 hello",
            b"n1 join #rust",
            b"n1 join rust alice",
            b"n1 part #rust alice x",
            b"n1 nick alice",
            b"n1 quit",
            b"n1 state",
            b"n1 state x",
            b"n1 state 1 0/2",
            b"n1 state 1 3/2",
            b"n1 state 1 #lobby",
            b"n1 state 1 #lobby a,,b",
            b"n1 state 1 #lobby a;",
            b"n1 bye",
        ] {
            assert!(
                Presence::parse(bad).is_err(),
                "{:?} parsed",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn state_rooms() {
        assert_eq!(
            parse_rooms("#lobby alice,bob;#Rust bob;#lobby carol"),
            Ok(vec![
                ("#lobby", vec!["alice", "bob"]),
                ("#Rust", vec!["bob"]),
                ("#lobby", vec!["carol"]),
            ])
        );
        assert_eq!(parse_rooms(""), Ok(vec![]));
        assert!(parse_rooms("lobby alice").is_err());
        assert!(parse_rooms("#lobby alice bob").is_err());
    }
}
