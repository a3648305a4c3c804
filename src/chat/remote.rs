// SPDX-License-Identifier: GPL-2.0

//! Remote members: the members of other nodes, as a link (docs/link.md) posts them.
//!
//! A remote member is an entry like any other (a label `NICK@NODE`, rooms, a place in every
//! roster, `/msg`-able), whose `who` is the link it came through and which has a node. The
//! link receives for it only what is addressed to it alone (a private message, see
//! `Audience::admits_remote`); what it says or does is never told to a link
//! (`Audience::reaches_links`). Only its own link may move, rename or remove it. It counts
//! against `max_clients`, its rooms against `max_rooms`, and it is in at most
//! [`REMOTE_ROOMS`] rooms: a link cannot make kchat hold more than local clients could.

use kernel::{
    prelude::*,
    rbtree::RBTreeNodeReservation,
    sync::{
        atomic::Relaxed,
        Arc, //
    },
};

use super::{
    audience,
    Core,
    Entry,
    Event,
    Inner,
    JoinError,
    Member,
    MemberId,
    NickError,
    RoomId,
    What, //
};
use crate::{
    frontend::Protocol,
    label::{
        Label,
        NodeName,
        RoomName, //
    },
};

/// Rooms a remote member may be in at once (IRC's `CHANLIMIT` here).
pub(crate) const REMOTE_ROOMS: usize = 20;

/// Why a link's frame could not be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RemoteError {
    /// The connection is not a link (any more).
    NotLink,
    /// The node is the link's own (a bridge posts only other nodes' members).
    OwnNode,
    /// No member has that name.
    NoSuchMember,
    /// The name is a local member's, or another link's.
    NotYours,
    /// The new name of a rename is someone else's, or of another node.
    NickTaken,
    NoSuchRoom,
    /// The member is not in that room.
    NotMember,
    /// `max_clients` members exist.
    Full,
    /// `max_rooms` rooms exist.
    TooManyRooms(u32),
    /// The member is in [`REMOTE_ROOMS`] rooms.
    TooManyJoined,
    /// The member is in that room already.
    Already,
    NoMemory,
    /// The chat is closing.
    Closing,
}

impl<M: Member> Core<M> {
    /// Checks that `link` is a link and `node` not its own node.
    fn check_link(inner: &Inner<M>, link: &M, node: &NodeName) -> Result<(), RemoteError> {
        let l = inner
            .links
            .iter()
            .find(|l| is(&l.who, link))
            .ok_or(RemoteError::NotLink)?;
        if l.node.key() == node.key() {
            return Err(RemoteError::OwnNode);
        }
        Ok(())
    }

    /// The remote member called `label`, if it is one of `link`'s.
    fn remote_id(inner: &Inner<M>, link: &M, label: &Label) -> Result<MemberId, RemoteError> {
        let id = *inner
            .labels
            .get(&label.key())
            .ok_or(RemoteError::NoSuchMember)?;
        let e = inner.members.get(id).ok_or(RemoteError::NoSuchMember)?;
        if e.node.is_none() || !is(&e.who, link) {
            return Err(RemoteError::NotYours);
        }
        Ok(id)
    }

    /// `=join #room NICK@NODE`: the remote member (made if new) enters `room` (made if
    /// new); the room is told as of any member.
    pub(crate) fn remote_join(
        &self,
        link: &Arc<M>,
        room: &RoomName,
        label: Label,
        node: &NodeName,
    ) -> Result<(), RemoteError> {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        if inner.closing {
            return Err(RemoteError::Closing);
        }
        Self::check_link(inner, link, node)?;
        let (id, new) = match inner.labels.get(&label.key()) {
            Some(_) => (Self::remote_id(inner, link, &label)?, false),
            None => {
                if inner.members.len() >= self.limits.max_members as usize {
                    return Err(RemoteError::Full);
                }
                let index =
                    RBTreeNodeReservation::new(GFP_KERNEL).map_err(|_| RemoteError::NoMemory)?;
                let id = inner
                    .members
                    .insert(Entry {
                        who: link.clone(),
                        label,
                        user: Protocol::Native.default_user(),
                        seats: KVec::new(),
                        away: None,
                        node: Some(*node),
                    })
                    .map_err(|_| RemoteError::NoMemory)?;
                inner.labels.insert(index.into_node(label.key(), id));
                self.stats.joined(inner.members.len());
                (id, true)
            }
        };
        let joined = self.join_member(inner, id, room, REMOTE_ROOMS);
        if joined.is_err() && new {
            // A remote member in no room is gone (it was never seen).
            self.quit_member(inner, id, b"");
        }
        joined.map(|_| ()).map_err(|e| match e {
            JoinError::Already(_) => RemoteError::Already,
            JoinError::TooMany(n) => RemoteError::TooManyRooms(n),
            JoinError::TooManyJoined => RemoteError::TooManyJoined,
            JoinError::NoMemory => RemoteError::NoMemory,
            JoinError::Gone => RemoteError::NoSuchMember,
        })
    }

    /// `=part #room NICK@NODE`: the member leaves `room` (the room is told); a remote member
    /// in no room is gone.
    pub(crate) fn remote_part(
        &self,
        link: &M,
        room: &RoomName,
        label: &Label,
    ) -> Result<(), RemoteError> {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        let id = Self::remote_id(inner, link, label)?;
        let room_id = inner
            .room_named(room.as_bytes())
            .ok_or(RemoteError::NoSuchRoom)?;
        inner.seat(id, room_id).ok_or(RemoteError::NotMember)?;
        self.leave(inner, id, room_id, None, false);
        if inner.members.get(id).is_some_and(|e| e.seats.is_empty()) {
            self.quit_member(inner, id, b"");
        }
        Ok(())
    }

    /// `=nick OLD@NODE NEW@NODE`: renamed, as a local member would be.
    pub(crate) fn remote_nick(
        &self,
        link: &M,
        old: &Label,
        new: Label,
        node: &NodeName,
    ) -> Result<(), RemoteError> {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        let id = Self::remote_id(inner, link, old)?;
        let same_node = inner
            .members
            .get(id)
            .and_then(|e| e.node)
            .is_some_and(|n| n.key() == node.key());
        if !same_node {
            return Err(RemoteError::NickTaken);
        }
        match self.rename_member(inner, id, new, false) {
            Ok(_) => Ok(()),
            Err(NickError::Taken) => Err(RemoteError::NickTaken),
            Err(NickError::NoMemory) => Err(RemoteError::NoMemory),
            Err(NickError::Gone) => Err(RemoteError::NoSuchMember),
        }
    }

    /// `=quit NICK@NODE`: the member leaves every room and the chat (its rooms are told).
    pub(crate) fn remote_quit(&self, link: &M, label: &Label) -> Result<(), RemoteError> {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        let id = Self::remote_id(inner, link, label)?;
        self.quit_member(inner, id, b"Quit");
        Ok(())
    }

    /// `=drop NODE`: every remote member of `node` that came through `link` quits.
    pub(crate) fn drop_node(&self, link: &M, node: &NodeName) -> Result<(), RemoteError> {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        Self::check_link(inner, link, node)?;
        self.quit_remote(inner, link, Some(node), b"node lost");
        Ok(())
    }

    /// The member id and room of a remote member that says something in `room` (which it
    /// must be in), for [`RelayBatch::push_remote`](super::RelayBatch::push_remote).
    pub(crate) fn remote_speaker(
        &self,
        link: &M,
        room: &RoomName,
        label: &Label,
    ) -> Result<(MemberId, RoomId), RemoteError> {
        let inner = self.inner.lock();
        let id = Self::remote_id(&inner, link, label)?;
        let room_id = inner
            .room_named(room.as_bytes())
            .ok_or(RemoteError::NoSuchRoom)?;
        inner.seat(id, room_id).ok_or(RemoteError::NotMember)?;
        Ok((id, room_id))
    }

    /// `=priv TO NICK@NODE TEXT`: local member `to` gets a private message from the remote
    /// member `from`.
    pub(crate) fn remote_private(
        &self,
        link: &M,
        to: &[u8],
        from: &Label,
        text: &[u8],
    ) -> Result<(), RemoteError> {
        let inner = self.inner.lock();
        let id = Self::remote_id(&inner, link, from)?;
        let to = inner.find(to).ok_or(RemoteError::NoSuchMember)?;
        let target = inner.members.get(to).ok_or(RemoteError::NoSuchMember)?;
        // Only local members are reached this way.
        if target.node.is_some() {
            return Err(RemoteError::NoSuchMember);
        }
        let e = inner.members.get(id).ok_or(RemoteError::NoSuchMember)?;
        let event = Event::Private {
            from: e.origin(),
            to: &target.label,
            text,
            notice: false,
        };
        inner.send(audience(What::Private { to }, id, false), &event);
        self.stats.private_messages.add(1, Relaxed);
        Ok(())
    }

    /// Every remote member that came through `link` (of `node` only, if given) quits.
    pub(super) fn quit_remote(
        &self,
        inner: &mut Inner<M>,
        link: &M,
        node: Option<&NodeName>,
        reason: &[u8],
    ) {
        let theirs = |e: &Entry<M>| {
            e.node
                .is_some_and(|n| node.is_none_or(|want| want.key() == n.key()))
                && is(&e.who, link)
        };
        let mut ids = KVec::new();
        let collected = ids.reserve(inner.members.len(), GFP_KERNEL).is_ok();
        if collected {
            for (id, e) in inner.members.iter() {
                if theirs(e) {
                    let _ = ids.push_within_capacity(id);
                }
            }
            for id in ids {
                self.quit_member(inner, id, reason);
            }
        } else {
            // Without memory for the list, one scan per member: slower, as complete.
            loop {
                let next = inner
                    .members
                    .iter()
                    .find(|(_, e)| theirs(e))
                    .map(|(id, _)| id);
                let Some(id) = next else {
                    break;
                };
                self.quit_member(inner, id, reason);
            }
        }
    }
}

/// Whether `a` is the member object `b`.
fn is<M>(a: &Arc<M>, b: &M) -> bool {
    core::ptr::eq(Arc::as_ptr(a), b)
}
