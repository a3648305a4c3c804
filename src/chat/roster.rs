// SPDX-License-Identifier: GPL-2.0

//! Rosters and room lists as the core's events show them: the members of a room in order of
//! connection, and the rooms with `#lobby` first.

use kernel::prelude::*;

use super::{
    Inner,
    Member,
    MemberId,
    RoomId,
    RoomList,
    Roster,
    LOBBY, //
};
use crate::label::{
    Label,
    RoomName, //
};

/// A room's members, in order of connection.
pub(super) struct RoomRoster<'a, M> {
    inner: &'a Inner<M>,
    /// Member ids sorted by connection number.
    order: KVec<MemberId>,
}

impl<'a, M: Member> RoomRoster<'a, M> {
    pub(super) fn new(inner: &'a Inner<M>, room: RoomId) -> Result<Self> {
        let members = inner.rooms.get(room).map_or(&[][..], |r| &r.members[..]);
        let mut order = KVec::with_capacity(members.len(), GFP_KERNEL)?;
        order.extend_from_slice(members, GFP_KERNEL)?;
        let conn = |id: &MemberId| inner.members.get(*id).map_or(0, |e| e.who.conn_id());
        order.sort_unstable_by_key(conn);
        Ok(Self { inner, order })
    }
}

impl<M: Member> Roster for RoomRoster<'_, M> {
    fn len(&self) -> usize {
        self.order.len()
    }

    fn each(&self, f: &mut dyn FnMut(&Label) -> bool) {
        for id in self.order.iter() {
            if let Some(e) = self.inner.members.get(*id) {
                if !f(&e.label) {
                    return;
                }
            }
        }
    }
}

impl<M: Member> RoomList for Inner<M> {
    fn len(&self) -> usize {
        self.rooms.len()
    }

    fn each(&self, f: &mut dyn FnMut(&RoomName, usize) -> bool) {
        let lobby = self.rooms.get(LOBBY);
        if let Some(r) = lobby {
            if !f(&r.name, r.members.len()) {
                return;
            }
        }
        for (_, id) in self.room_names.iter() {
            if *id == LOBBY {
                continue;
            }
            if let Some(r) = self.rooms.get(*id) {
                if !f(&r.name, r.members.len()) {
                    return;
                }
            }
        }
    }
}
