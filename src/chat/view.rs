// SPDX-License-Identifier: GPL-2.0

//! A read-only view of the chat, for a front end's answers (IRC's `WHO`, `WHOIS`, `LIST`,
//! `NAMES`, ...): it sees members and rooms as data, never the tables that hold them.

use kernel::prelude::*;

use super::{
    roster::RoomRoster,
    state::{
        Entry,
        Room, //
    },
    Inner,
    Member,
    MemberId,
    Modes,
    Origin,
    RoomId,
    Topic,
    LOBBY, //
};
use crate::label::RoomName;

/// The chat as one member sees it, under the core's lock.
pub(crate) struct View<'a, M> {
    inner: &'a Inner<M>,
    me: MemberId,
}

/// A member.
pub(crate) struct MemberView<'a, M> {
    inner: &'a Inner<M>,
    entry: &'a Entry<M>,
}

/// A room.
pub(crate) struct RoomView<'a, M> {
    inner: &'a Inner<M>,
    id: RoomId,
    room: &'a Room,
}

impl<'a, M: Member> View<'a, M> {
    pub(super) fn new(inner: &'a Inner<M>, me: MemberId) -> Self {
        Self { inner, me }
    }

    fn member_view(&self, id: MemberId) -> Option<MemberView<'a, M>> {
        Some(MemberView {
            inner: self.inner,
            entry: self.inner.members.get(id)?,
        })
    }

    fn room_view(&self, id: RoomId) -> Option<RoomView<'a, M>> {
        Some(RoomView {
            inner: self.inner,
            id,
            room: self.inner.rooms.get(id)?,
        })
    }

    /// The member asking.
    pub(crate) fn me(&self) -> Option<MemberView<'a, M>> {
        self.member_view(self.me)
    }

    /// The member `name` designates (a label, or `kchat-ID`).
    pub(crate) fn member(&self, name: &[u8]) -> Option<MemberView<'a, M>> {
        self.member_view(self.inner.find(name)?)
    }

    /// The room called `name`.
    pub(crate) fn room(&self, name: &[u8]) -> Option<RoomView<'a, M>> {
        self.room_view(self.inner.room_named(name)?)
    }

    /// Every room, `#lobby` first and then by name.
    pub(crate) fn rooms(&self) -> impl Iterator<Item = RoomView<'a, M>> + '_ {
        let lobby = self.room_view(LOBBY);
        let rest = self
            .inner
            .room_names
            .iter()
            .filter(|(_, id)| **id != LOBBY)
            .filter_map(|(_, id)| self.room_view(*id));
        Iterator::chain(lobby.into_iter(), rest)
    }

    /// Members in the chat.
    pub(crate) fn member_count(&self) -> usize {
        self.inner.members.len()
    }

    /// Rooms that exist.
    pub(crate) fn room_count(&self) -> usize {
        self.inner.rooms.len()
    }
}

impl<'a, M: Member> MemberView<'a, M> {
    /// How the member is shown.
    pub(crate) fn origin(&self) -> Origin<'a> {
        self.entry.origin()
    }

    /// Its away message.
    pub(crate) fn away(&self) -> Option<&'a [u8]> {
        self.entry.away.as_deref()
    }

    /// The rooms it is in, in the order it entered them, with its operator flag in each.
    pub(crate) fn rooms(&self) -> impl Iterator<Item = (&'a RoomName, bool)> + 'a {
        let inner = self.inner;
        self.entry.seats.iter().filter_map(move |s| {
            let r = inner.rooms.get(s.room)?;
            let op = r.members.get(s.pos as usize).is_some_and(|p| p.op);
            Some((&r.name, op))
        })
    }
}

impl<'a, M: Member> RoomView<'a, M> {
    /// The room's name as first spelled.
    pub(crate) fn name(&self) -> &'a RoomName {
        &self.room.name
    }

    pub(crate) fn topic(&self) -> Option<&'a Topic> {
        self.room.topic.as_deref()
    }

    pub(crate) fn modes(&self) -> Modes {
        self.room.modes
    }

    /// When it was created, in seconds since the epoch.
    pub(crate) fn created(&self) -> i64 {
        self.room.created
    }

    /// Members in it.
    pub(crate) fn len(&self) -> usize {
        self.room.members.len()
    }

    /// Its members, in order of connection, each with its operator flag.
    pub(crate) fn members(&self) -> Result<impl Iterator<Item = (MemberView<'a, M>, bool)> + 'a> {
        let inner = self.inner;
        let roster = RoomRoster::new(inner, self.id)?;
        Ok(roster.into_ids().into_iter().filter_map(move |(id, op)| {
            Some((
                MemberView {
                    inner,
                    entry: inner.members.get(id)?,
                },
                op,
            ))
        }))
    }
}
