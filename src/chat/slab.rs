// SPDX-License-Identifier: GPL-2.0

//! A slab: values in numbered slots, reused after removal, so that an id stays valid and
//! cheap to look up for as long as its value lives.

use kernel::prelude::*;

/// Values indexed by small ids.
pub(crate) struct Slab<T> {
    slots: KVec<Option<T>>,
    /// Ids of empty slots.
    free: KVec<u32>,
    len: usize,
}

impl<T> Slab<T> {
    pub(crate) const fn new() -> Self {
        Self {
            slots: KVec::new(),
            free: KVec::new(),
            len: 0,
        }
    }

    /// Values stored.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Stores `value`; returns its id.
    pub(crate) fn insert(&mut self, value: T) -> Result<u32> {
        // Room to give the slot back later, so that `remove` never allocates.
        self.free.reserve(1, GFP_KERNEL)?;
        if let Some(id) = self.free.pop() {
            self.slots[id as usize] = Some(value);
            self.len += 1;
            return Ok(id);
        }
        let id = u32::try_from(self.slots.len()).map_err(|_| ENOSPC)?;
        self.slots.push(Some(value), GFP_KERNEL)?;
        self.len += 1;
        Ok(id)
    }

    /// Takes the value out of slot `id`.
    pub(crate) fn remove(&mut self, id: u32) -> Option<T> {
        let value = self.slots.get_mut(id as usize)?.take()?;
        self.len -= 1;
        // Room was reserved by `insert`.
        let _ = self.free.push_within_capacity(id);
        Some(value)
    }

    pub(crate) fn get(&self, id: u32) -> Option<&T> {
        self.slots.get(id as usize)?.as_ref()
    }

    pub(crate) fn get_mut(&mut self, id: u32) -> Option<&mut T> {
        self.slots.get_mut(id as usize)?.as_mut()
    }

    /// The values with their ids, in id order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, v)| Some((i as u32, v.as_ref()?)))
    }

    /// The values, in id order.
    pub(crate) fn into_values(self) -> impl Iterator<Item = T> {
        self.slots.into_iter().flatten()
    }
}
