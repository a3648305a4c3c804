// SPDX-License-Identifier: GPL-2.0
//! Who is who in a run: how connections are numbered, what each one is for, which room it
//! is in, and which thread owns it.

use crate::{
    options::{Options, Protocol},
    payload::Format,
};

/// The name of room `room`: the kchat room and IRC channel `#bench-N` without its `#`, the
/// Redis channel `bench-N`.
pub(crate) fn room_name(room: u32) -> String {
    format!("bench-{room}")
}

/// The channel of room `room` (Redis; IRC puts a `#` in front): `--channel` without rooms,
/// else the room's name.
pub(crate) fn channel(o: &Options, room: u32) -> String {
    match o.rooms {
        Some(_) => room_name(room),
        None => o.channel.clone(),
    }
}

/// What a connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Role {
    /// Sender id if this connection sends (kchat and IRC: client `s`; RESP: publisher `s`).
    pub(crate) sender: Option<u32>,
    /// Connects and never reads (after subscribing, for RESP; after joining, for IRC); not a
    /// recipient.
    pub(crate) stalled: bool,
    /// Receives messages (kchat and IRC: every non-stalled client; RESP: non-stalled
    /// subscribers).
    pub(crate) receiver: bool,
    /// RESP: a subscriber connection (stalled or not).
    pub(crate) subscriber: bool,
    /// The room it joins, or publishes to (always 0 without `--rooms`).
    pub(crate) room: u32,
}

/// How connections are numbered, put in rooms and spread over threads.
///
/// Global connection numbers: kchat and IRC `0..C` are the clients (the first S send),
/// `C..C+N` the stalled ones; RESP `0..C` subscribers, `C..C+N` stalled subscribers, `C+N..C+N+S`
/// publishers. Connection `g` belongs to thread `g % T`, at index `g / T` there. With
/// `--rooms R`, client (or subscriber) `g` is in room `g % R` and sender `s` sends to room
/// `s % R`: for kchat and IRC that is the sender's own room.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    pub(crate) protocol: Protocol,
    pub(crate) clients: usize,
    pub(crate) stalled: usize,
    pub(crate) senders: usize,
    pub(crate) threads: usize,
    /// Whether kchat clients join rooms (`--rooms`) rather than all staying in `#lobby`.
    pub(crate) joins: bool,
    /// Rooms (1 without `--rooms`).
    pub(crate) rooms: usize,
}

impl Layout {
    /// The layout of a run with `o`.
    pub(crate) fn new(o: &Options) -> Self {
        Self {
            protocol: o.protocol,
            clients: o.clients,
            stalled: o.stalled,
            senders: o.senders,
            threads: o.threads,
            joins: o.rooms.is_some(),
            rooms: o.rooms.unwrap_or(1),
        }
    }

    /// Number of connections.
    pub(crate) fn total(&self) -> usize {
        match self.protocol {
            Protocol::Kchat | Protocol::Irc => self.clients + self.stalled,
            Protocol::Resp => self.clients + self.stalled + self.senders,
        }
    }

    /// The room of client, subscriber or sender number `n`.
    fn room_of(&self, n: usize) -> u32 {
        (n % self.rooms) as u32
    }

    /// The role of connection `g`.
    pub(crate) fn role(&self, g: usize) -> Role {
        let stalled = g >= self.clients && g < self.clients + self.stalled;
        match self.protocol {
            Protocol::Kchat | Protocol::Irc => Role {
                sender: (g < self.senders).then_some(g as u32),
                stalled,
                receiver: !stalled,
                subscriber: false,
                room: self.room_of(g),
            },
            Protocol::Resp => {
                let publisher = g.checked_sub(self.clients + self.stalled);
                Role {
                    sender: publisher.map(|s| s as u32),
                    stalled,
                    receiver: g < self.clients,
                    subscriber: publisher.is_none(),
                    room: self.room_of(publisher.unwrap_or(g)),
                }
            }
        }
    }

    /// The room sender `s` sends to.
    pub(crate) fn sender_room(&self, s: u32) -> u32 {
        self.room_of(s as usize)
    }

    /// The connection of sender `s`.
    pub(crate) fn sender_conn(&self, s: u32) -> usize {
        match self.protocol {
            Protocol::Kchat | Protocol::Irc => s as usize,
            Protocol::Resp => self.clients + self.stalled + s as usize,
        }
    }

    /// The thread that owns connection `g`.
    pub(crate) fn thread_of(&self, g: usize) -> usize {
        g % self.threads
    }

    /// Connections of thread `t`, in global order.
    pub(crate) fn conns_of(&self, t: usize) -> impl Iterator<Item = usize> {
        (t..self.total()).step_by(self.threads)
    }

    /// True if the kchat barrier's sync messages prove the server has every client: kchat
    /// without rooms. (Otherwise confirmations do: see [`Layout::confirms`].)
    pub(crate) fn syncs(&self) -> bool {
        self.protocol == Protocol::Kchat && !self.joins
    }

    /// True if a connection with `role` confirms, for the barrier, that the server has put
    /// it where the run needs it: a kchat client's join reply (not stalled clients, which
    /// do not read it), a RESP subscription, an IRC client's end of names (366) for its
    /// channel (stalled clients too: they stop reading after it).
    pub(crate) fn confirms(&self, role: Role) -> bool {
        match self.protocol {
            Protocol::Kchat => role.receiver,
            Protocol::Resp => role.subscriber,
            Protocol::Irc => true,
        }
    }

    /// How messages carry their payload: as text for IRC lines, else as bytes.
    pub(crate) fn format(&self) -> Format {
        match self.protocol {
            Protocol::Irc => Format::Text,
            Protocol::Kchat | Protocol::Resp => Format::Binary,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(protocol: Protocol, rooms: Option<usize>) -> Layout {
        Layout {
            protocol,
            clients: 4,
            stalled: 2,
            senders: 2,
            threads: 2,
            joins: rooms.is_some(),
            rooms: rooms.unwrap_or(1),
        }
    }

    /// Checks connection numbering for every protocol: senders, stalled and receivers are
    /// where the layout says (IRC's as kchat's), each thread gets every other connection,
    /// who confirms for the barrier, and the payload format.
    #[test]
    fn roles() {
        let k = layout(Protocol::Kchat, None);
        assert_eq!(k.total(), 6);
        assert_eq!(k.role(1).sender, Some(1));
        assert!(k.role(3).receiver && k.role(3).sender.is_none());
        assert!(k.role(4).stalled && !k.role(4).receiver);
        assert_eq!(k.sender_conn(1), 1);
        assert_eq!(k.conns_of(1).collect::<Vec<_>>(), vec![1, 3, 5]);
        assert!(k.syncs());
        let r = layout(Protocol::Resp, None);
        assert_eq!(r.total(), 8);
        assert!(r.role(0).receiver && r.role(0).subscriber);
        assert!(r.role(5).stalled && r.role(5).subscriber && !r.role(5).receiver);
        assert_eq!(r.role(7).sender, Some(1));
        assert!(!r.role(7).receiver && !r.role(7).subscriber);
        assert_eq!(r.sender_conn(1), 7);
        assert!(!r.syncs());
        assert!((0..8).all(|g| r.role(g).room == 0));
        let i = layout(Protocol::Irc, None);
        assert_eq!(i.total(), 6);
        assert_eq!(
            (0..6).map(|g| i.role(g)).collect::<Vec<_>>(),
            (0..6).map(|g| k.role(g)).collect::<Vec<_>>()
        );
        assert!(!i.syncs() && (0..6).all(|g| i.confirms(i.role(g))));
        assert!(k.confirms(k.role(3)) && !k.confirms(k.role(4)));
        assert!(r.confirms(r.role(5)) && !r.confirms(r.role(7)));
        assert_eq!((i.format(), k.format()), (Format::Text, Format::Binary));
    }

    /// Checks rooms: kchat client g (stalled too) is in room g % R and sends there; a RESP
    /// subscriber g is in room g % R, publisher s publishes to room s % R.
    #[test]
    fn rooms() {
        let k = layout(Protocol::Kchat, Some(3));
        let rooms: Vec<u32> = (0..6).map(|g| k.role(g).room).collect();
        assert_eq!(rooms, [0, 1, 2, 0, 1, 2]);
        assert_eq!(k.sender_room(1), k.role(k.sender_conn(1)).room);
        assert!(!k.syncs());
        let r = layout(Protocol::Resp, Some(3));
        let rooms: Vec<u32> = (0..8).map(|g| r.role(g).room).collect();
        assert_eq!(rooms, [0, 1, 2, 0, 1, 2, 0, 1]);
        assert_eq!(r.sender_room(1), 1);
    }
}
