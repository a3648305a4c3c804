//! What each payload does, and who receives the frames it makes.

use std::fmt;

use super::{
    command::{parse, Command, Private},
    label::Label,
    registry::{Entry, JoinRefused, NickRefused},
    rooms::{RoomId, RoomName},
    Audience, Post, Shard,
};
use crate::{
    fanout::{Fanout, SendQueue},
    frame::{self, Frame},
};

impl<F: Fanout> Shard<F> {
    /// Acts on one payload from `token`.
    pub(super) fn dispatch(&mut self, token: usize, payload: &[u8]) {
        let Some(Some(c)) = self.clients.get(token) else {
            return;
        };
        let (id, label, room) = (c.id, c.label, c.room);
        match parse(payload) {
            Command::Chat => {
                let frame = frame::build(&[label.as_bytes(), b": ", payload]);
                let seq = self.registry.record(room, &frame);
                let to = Audience::Room {
                    room,
                    seq: Some(seq),
                };
                self.post(to, Some(token), frame);
            }
            Command::Who => {
                let text = self.registry.who(room);
                self.reply(token, &text);
            }
            Command::Rooms => {
                let text = self.registry.rooms();
                self.reply(token, &text);
            }
            Command::Nick(name) => self.nick(token, id, room, name),
            Command::Join([]) => {
                self.error(token, format_args!("usage: /join #room"));
            }
            Command::Join(name) => match RoomName::parse(name) {
                Some(name) => self.move_to(token, id, label, &name),
                None => self.error(
                    token,
                    format_args!("invalid room name: use # and 1 to 32 of A-Z a-z 0-9 _ . -"),
                ),
            },
            Command::Part => self.move_to(token, id, label, &RoomName::lobby()),
            Command::Msg(Some(private)) => self.private(token, label, private),
            Command::Msg(None) => self.error(token, format_args!("usage: /msg NICK TEXT")),
        }
    }

    /// `/nick`: member `id`, client `token` in `room`, asks for the nick `name`.
    fn nick(&mut self, token: usize, id: u64, room: RoomId, name: &[u8]) {
        match self.registry.set_nick(id, name) {
            Ok(None) => {}
            Ok(Some((old, new))) => {
                if let Some(Some(c)) = self.clients.get_mut(token) {
                    c.label = new;
                }
                if self.limits.notices {
                    self.notice(room, Some(token), format_args!("* {old} is now {new}"));
                }
            }
            Err(NickRefused::Taken) => {
                // Only a valid nick can be taken: the name is plain ASCII.
                let name = String::from_utf8_lossy(name);
                self.error(token, format_args!("nick {name} is taken"));
            }
            Err(NickRefused::Invalid(e)) => self.error(token, format_args!("{}", e.message())),
        }
    }

    /// `/join` and `/part`: member `id`, client `token`, moves to the room `name`.
    fn move_to(&mut self, token: usize, id: u64, label: Label, name: &RoomName) {
        match self.registry.join(id, name) {
            Ok(joined) => {
                let room = joined.entry.room;
                if self.limits.notices {
                    self.notice(joined.left, Some(token), format_args!("* {label} left"));
                }
                self.fanout.leave(joined.left);
                self.reply(token, &joined.answer);
                self.enter(token, joined.entry);
                if self.limits.notices {
                    self.notice(room, Some(token), format_args!("* {label} joined"));
                }
            }
            Err(JoinRefused::Already(name)) => {
                self.error(token, format_args!("already in {name}"));
            }
            Err(JoinRefused::TooMany) => {
                let max = self.limits.max_rooms;
                self.error(token, format_args!("too many rooms (max_rooms={max})"));
            }
            // Not reached: a client is a member for as long as its shard serves it.
            Err(JoinRefused::Gone) => {}
        }
    }

    /// Puts client `token` in the room it entered, and sends it the room's history:
    /// `* last K messages of #room:` and the K frames as they were relayed.
    pub(super) fn enter(&mut self, token: usize, entry: Entry) {
        let Some(Some(c)) = self.clients.get_mut(token) else {
            return;
        };
        c.room = entry.room;
        c.since = entry.since;
        self.fanout.enter(entry.room);
        if entry.history.is_empty() {
            return;
        }
        let head = format!("* last {} messages of {}:", entry.history.len(), entry.name);
        self.reply(token, &head);
        for frame in &entry.history {
            self.send(token, frame);
        }
    }

    /// `/msg NICK TEXT` from client `token`, labelled `label`.
    fn private(&mut self, token: usize, label: Label, private: Private<'_>) {
        let Some(to) = self.registry.find(private.nick) else {
            let nick = String::from_utf8_lossy(private.nick);
            self.error(token, format_args!("no such nick: {nick}"));
            return;
        };
        let frame = frame::build(&[label.as_bytes(), b" (private): ", private.text]);
        self.post(Audience::Member(to), None, frame);
    }

    /// Sends `text` to `token` only.
    fn reply(&mut self, token: usize, text: &str) {
        self.send(token, &frame::build(&[text.as_bytes()]));
    }

    /// Sends `! text` to `token` only.
    fn error(&mut self, token: usize, text: fmt::Arguments<'_>) {
        self.reply(token, &format!("! {text}"));
    }

    /// Sends the server notice `text` to the members of `room` but `from`.
    pub(super) fn notice(&mut self, room: RoomId, from: Option<usize>, text: fmt::Arguments<'_>) {
        let text = text.to_string();
        let to = Audience::Room { room, seq: None };
        self.post(to, from, frame::build(&[text.as_bytes()]));
    }

    /// Delivers `frame` to the clients of this shard it is for, but not to `from` (its
    /// sender), and through [`Shard::remote`] to those of the other shards.
    fn post(&mut self, to: Audience, from: Option<usize>, frame: Frame) {
        self.deliver(to, from, &frame);
        let here = matches!(to, Audience::Member(id) if self.tokens.contains_key(&id));
        if let (false, Some(remote)) = (here, &mut self.remote) {
            remote.push(Post { to, frame });
        }
    }

    /// The one place that decides which clients of this shard receive a frame for `to`:
    /// the client named, or the members of the room (but `from`) that did not have it in
    /// their replay. A room's frame is shared ([`Fanout::share`]) when its first recipient
    /// is found, once for all of them.
    pub(super) fn deliver(&mut self, to: Audience, from: Option<usize>, frame: &Frame) {
        let (room, seq) = match to {
            Audience::Member(id) => {
                if let Some(&token) = self.tokens.get(&id) {
                    self.send(token, frame);
                }
                return;
            }
            Audience::Room { room, seq } => (room, seq),
        };
        let mut shared = None;
        for token in 0..self.clients.len() {
            let hears = matches!(
                &self.clients[token],
                Some(c) if c.room == room && seq.is_none_or(|s| s > c.since)
            );
            if hears && Some(token) != from {
                let shared = shared.get_or_insert_with(|| self.fanout.share(room, frame));
                self.enqueue(token, frame.len(), |tx| tx.push_shared(shared));
            }
        }
    }
}
