// SPDX-License-Identifier: GPL-2.0

//! The relay batch: chat messages read in one pass of a shard loop, relayed together by
//! [`Core::publish`].

use kernel::{
    prelude::*,
    sync::Arc, //
};

use super::{
    Core,
    Member,
    MemberId,
    Message,
    RoomId,
    NO_SLOT, //
};

/// Most messages a relay batch holds before it goes out by itself.
pub(crate) const BATCH_MESSAGES: usize = 1024;

/// One message of a relay batch.
pub(super) struct Pending<M> {
    pub(super) who: Arc<M>,
    pub(super) msg: Message,
    /// Filled in by [`Core::publish`]; set at push for a remote member (`who` is then its
    /// link).
    pub(super) from: MemberId,
    /// The room it goes to ([`NO_SLOT`] until [`Core::publish`] fills it in, for a member of
    /// one room).
    pub(super) room: RoomId,
}

/// The chat messages a shard loop has read and not yet relayed, with their senders.
///
/// Relaying them together costs each recipient one lock and one dirty-list check per batch
/// instead of per message (measured on `fanout-1000`: per-message enqueueing was the module's
/// largest cost). The loop publishes the batch before it sends, and before anything else that
/// queues frames for the clients it read (commands, a disconnect), so the order of what each
/// client receives is the order in which kchat read it.
pub(crate) struct RelayBatch<M> {
    pub(super) entries: KVec<Pending<M>>,
}

impl<M: Member> RelayBatch<M> {
    /// An empty batch; its storage is allocated once, by the first push.
    pub(crate) const fn new() -> Self {
        Self {
            entries: KVec::new(),
        }
    }

    /// Puts the messages of each room together, keeping their order within a room (a batch
    /// is mostly one room: then nothing moves). Without memory to sort, the batch stays as
    /// it is: each run of one room is then relayed on its own, in order, which is correct,
    /// only slower.
    pub(super) fn group_by_room(&mut self) {
        let entries = &mut self.entries;
        if entries.windows(2).any(|w| w[0].room != w[1].room) {
            let _ = super::order::sort_by_key(entries, |e| e.room.into());
        }
    }

    /// Messages waiting.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Adds a chat message from `who`. A full batch goes out first; without memory for a
    /// larger batch, what waits goes out and the message starts a batch of one. Fails only
    /// if not even that can be allocated (the caller disconnects `who`).
    ///
    /// `room` is where it goes (checked by [`Core::speak_in`]); `None` for a member of one
    /// room, which speaks there.
    pub(crate) fn push(
        &mut self,
        core: &Core<M>,
        who: &Arc<M>,
        room: Option<RoomId>,
        msg: Message,
    ) -> Result {
        self.add(core, who, NO_SLOT, room.unwrap_or(NO_SLOT), msg)
    }

    /// Adds a chat message of remote member `from`, which `link` posted for `room` (both from
    /// [`Core::remote_speaker`]). The link publishes the batch before any other frame of
    /// its, so `from` is still that member when the batch goes out (which checks it again).
    pub(crate) fn push_remote(
        &mut self,
        core: &Core<M>,
        link: &Arc<M>,
        from: MemberId,
        room: RoomId,
        msg: Message,
    ) -> Result {
        self.add(core, link, from, room, msg)
    }

    fn add(
        &mut self,
        core: &Core<M>,
        who: &Arc<M>,
        from: MemberId,
        room: RoomId,
        msg: Message,
    ) -> Result {
        if self.entries.len() >= BATCH_MESSAGES {
            core.publish(self);
        }
        if self.entries.len() == self.entries.capacity()
            && self
                .entries
                .reserve(
                    BATCH_MESSAGES - self.entries.len(),
                    GFP_KERNEL | __GFP_NOWARN,
                )
                .is_err()
        {
            core.publish(self);
            self.entries.reserve(1, GFP_KERNEL | __GFP_NOWARN)?;
        }
        self.entries
            .push_within_capacity(Pending {
                who: who.clone(),
                msg,
                from,
                room,
            })
            .map_err(|_| ENOMEM)
    }
}
