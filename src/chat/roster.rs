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
    /// Member ids with their operator flags, sorted by connection number.
    order: KVec<(MemberId, bool)>,
}

impl<'a, M: Member> RoomRoster<'a, M> {
    pub(super) fn new(inner: &'a Inner<M>, room: RoomId) -> Result<Self> {
        let places = inner.rooms.get(room).map_or(&[][..], |r| &r.members[..]);
        let mut order = KVec::with_capacity(places.len(), GFP_KERNEL)?;
        for p in places {
            order.push((p.id, p.op), GFP_KERNEL)?;
        }
        let conn = |m: &(MemberId, bool)| inner.members.get(m.0).map_or(0, |e| e.who.conn_id());
        super::order::sort_by_key(&mut order, conn)?;
        Ok(Self { inner, order })
    }

    /// The member ids with their operator flags, in order.
    pub(super) fn into_ids(self) -> KVec<(MemberId, bool)> {
        self.order
    }
}

impl<M: Member> Roster for RoomRoster<'_, M> {
    fn len(&self) -> usize {
        self.order.len()
    }

    fn each(&self, f: &mut dyn FnMut(&Label, u64, bool) -> bool) {
        for (id, op) in self.order.iter() {
            if let Some(e) = self.inner.members.get(*id) {
                if !f(&e.label, e.who.conn_id(), *op) {
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
