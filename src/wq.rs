// SPDX-License-Identifier: GPL-2.0

//! An owned, dedicated workqueue.
//!
//! The 7.3 kernel crate wraps the system workqueues ([`kernel::workqueue::system`] and friends)
//! but has no type that allocates and destroys a queue of its own. kchat needs one: its work
//! functions live in module text, so at unload every pending item must have run before the
//! module is freed, and `destroy_workqueue` on a private queue guarantees exactly that.
//!
//! C header: [`include/linux/workqueue.h`](srctree/include/linux/workqueue.h)

use core::{
    ops::Deref,
    ptr::NonNull, //
};
use kernel::{
    bindings,
    prelude::*,
    workqueue::{
        DelayedWork,
        Queue,
        Work, //
    },
};

/// A workqueue allocated by this module and destroyed when dropped.
///
/// Dereferences to [`Queue`], so work items are enqueued with the kernel crate's safe API.
///
/// # Invariants
///
/// `ptr` points at a workqueue returned by `alloc_workqueue` that has not been destroyed.
pub(crate) struct OwnedQueue {
    ptr: NonNull<bindings::workqueue_struct>,
}

// SAFETY: A `struct workqueue_struct` may be used and destroyed from any thread; the C API does
// its own locking.
unsafe impl Send for OwnedQueue {}

// SAFETY: Every operation reachable through `&OwnedQueue` (enqueueing, draining) is thread-safe
// in C.
unsafe impl Sync for OwnedQueue {}

impl OwnedQueue {
    /// Allocates an unbound, high-priority workqueue that may be used during memory reclaim.
    ///
    /// `WQ_UNBOUND` lets the scheduler spread socket work over all CPUs; `WQ_MEM_RECLAIM` gives
    /// the queue a rescuer thread, so teardown work makes progress under memory pressure.
    /// `WQ_HIGHPRI` runs the items on the nice -20 worker pool, as nvmet-tcp's and DLM's socket
    /// queues do: the server's work then does not wait behind busy user tasks. Measured on the
    /// 2-vCPU debug guest with 24 busy-looping IRC churners in user space: an honest ping took
    /// up to 3.0-4.7 s at nice 0 and 0.6-1.0 s at nice -20. The 1,000-member IRC case then
    /// delivers its 200 messages in 10.5-14.2 s instead of 50.9 s; its joins took 224-516 s
    /// in four runs, against 288 s in the one run without (the host varies that much).
    pub(crate) fn new_unbound(name: &'static CStr) -> Result<Self> {
        let flags = bindings::wq_flags_WQ_UNBOUND
            | bindings::wq_flags_WQ_MEM_RECLAIM
            | bindings::wq_flags_WQ_HIGHPRI;
        // SAFETY: `name` is a NUL-terminated string that outlives the queue (it is `'static`),
        // and "%s" with one string argument is a valid format for the variadic name. A
        // `max_active` of 0 selects the default.
        let ptr = unsafe {
            bindings::alloc_workqueue_noprof(c"%s".as_char_ptr(), flags, 0, name.as_char_ptr())
        };
        // INVARIANT: `alloc_workqueue` returned a valid queue, or NULL, which is rejected here.
        Ok(Self {
            ptr: NonNull::new(ptr).ok_or(ENOMEM)?,
        })
    }

    /// Waits until the queue is empty, running every pending item.
    ///
    /// Items queued by items of this queue while it drains are run too; items queued from
    /// anywhere else meanwhile trigger a warning, so the caller must first stop every other
    /// source of work (socket callbacks).
    pub(crate) fn drain(&self) {
        // SAFETY: By the type invariant, `ptr` is a live workqueue.
        unsafe { bindings::drain_workqueue(self.ptr.as_ptr()) };
    }
}

impl Deref for OwnedQueue {
    type Target = Queue;

    fn deref(&self) -> &Queue {
        // SAFETY: By the type invariant, `ptr` is a live workqueue, and it stays live for as long
        // as `self`, which bounds the returned reference.
        unsafe { Queue::from_raw(self.ptr.as_ptr()) }
    }
}

impl Drop for OwnedQueue {
    fn drop(&mut self) {
        // SAFETY: By the type invariant, `ptr` is a live workqueue; nothing can use it after
        // this, since `self` is gone. `destroy_workqueue` drains it first.
        unsafe { bindings::destroy_workqueue(self.ptr.as_ptr()) };
    }
}

/// Runs `work` now if its timer is pending, and waits until it has run.
///
/// The kernel crate can queue delayed work but not flush or cancel it, and
/// `drain_workqueue` does not wait for timers that have not fired yet: a delayed item must be
/// flushed before its queue is destroyed. Flushing (rather than cancelling) runs the item, so
/// the reference its queueing holds is released by its own `run`. Must not be called from a
/// work item of the same queue.
pub(crate) fn flush_delayed<T: ?Sized, const ID: u64>(work: &DelayedWork<T, ID>) {
    // SAFETY: `DelayedWork` is `#[repr(transparent)]` over `Opaque<bindings::delayed_work>`, so
    // the pointer is a valid, initialised `struct delayed_work` (it was initialised by
    // `DelayedWork::new`, and `work` is borrowed for the call).
    unsafe { bindings::flush_delayed_work(core::ptr::from_ref(work).cast_mut().cast()) };
}

/// Waits until `work` has run if it is queued or running; afterwards it is idle until queued
/// again.
///
/// Flushing (rather than cancelling) lets the item run, so the reference its queueing holds
/// is released by its own `run`. Must not be called from a work item of the same queue.
pub(crate) fn flush<T: ?Sized, const ID: u64>(work: &Work<T, ID>) {
    // SAFETY: `work` is borrowed for the call, so it points at a live, initialised `Work`,
    // which is what `raw_get` requires; the result is its `struct work_struct`.
    unsafe { bindings::flush_work(Work::raw_get(work)) };
}
