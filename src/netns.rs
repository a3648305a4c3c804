// SPDX-License-Identifier: GPL-2.0

//! Network namespaces: a borrowed `struct net`, and the pernet registration that tells kchat
//! when a namespace comes and goes.
//!
//! 7.3's Rust has no pernet abstraction, so the `pernet_operations` live in
//! `src/kchat_helpers.c`, which calls the hooks of the one [`Pernet`] registered. The kernel
//! calls `up` for every namespace alive at registration and for each new one, and `down` for
//! each namespace being dismantled and, at unregistration, for every namespace left; several
//! namespaces may come and go at once, on several CPUs.

use core::ffi::c_void;
use kernel::{
    bindings,
    error::{
        from_result,
        to_result, //
    },
    prelude::*,
    sync::Arc,
    types::Opaque,
};

mod ffi {
    use core::ffi::c_void;
    use kernel::bindings::net;

    #[allow(missing_docs)]
    extern "C" {
        pub(super) fn kchat_pernet_register(
            ctx: *mut c_void,
            up: unsafe extern "C" fn(*mut c_void, *mut net) -> kernel::ffi::c_int,
            down: unsafe extern "C" fn(*mut c_void, *mut net),
        ) -> kernel::ffi::c_int;
        pub(super) fn kchat_pernet_unregister();
    }
}

/// A network namespace.
///
/// # Invariants
///
/// A `&Net` is only handed out for a namespace that is alive (past its pernet `init`, before
/// its pernet `exit` returns) for as long as the borrow lasts.
#[repr(transparent)]
pub(crate) struct Net(Opaque<bindings::net>);

impl Net {
    /// # Safety
    ///
    /// `ptr` is a namespace that stays alive for `'a`.
    unsafe fn from_raw<'a>(ptr: *mut bindings::net) -> &'a Self {
        // SAFETY: `Net` is a transparent wrapper of `struct net`, and the caller guarantees
        // that the namespace lives for `'a`.
        unsafe { &*ptr.cast::<Self>() }
    }

    /// The namespace, for the kernel's socket calls.
    pub(crate) fn as_ptr(&self) -> *mut bindings::net {
        self.0.get()
    }

    /// Whether this is the initial namespace, the one the module was loaded from.
    pub(crate) fn is_initial(&self) -> bool {
        core::ptr::eq(self.as_ptr(), &raw const bindings::init_net)
    }

    /// The namespace's inode number, as `/proc/PID/ns/net` shows it (`net:[INUM]`).
    pub(crate) fn inum(&self) -> u32 {
        // SAFETY: The namespace is alive (type invariant); `ns.inum` is set before the
        // namespace is set up and never changes.
        unsafe { (*self.as_ptr()).ns.inum }
    }

    /// Identifies the namespace among those alive now.
    pub(crate) fn key(&self) -> usize {
        self.as_ptr() as usize
    }
}

/// What kchat does when a namespace comes and goes.
pub(crate) trait NetHooks: Send + Sync {
    /// A namespace is set up (or is alive at registration). An error fails the namespace's
    /// creation, or the registration.
    fn up(&self, net: &Net) -> Result;

    /// A namespace is being dismantled (or the registration is being removed); everything
    /// kchat holds in it must be gone when this returns.
    fn down(&self, net: &Net);
}

/// The pernet registration: `T`'s hooks run for every namespace while it lives; dropping it
/// runs `down` for every namespace still up.
///
/// # Invariants
///
/// `_hooks` is registered as the context of the one `pernet_operations` of
/// `src/kchat_helpers.c`, with `up_hook::<T>` and `down_hook::<T>`, until `drop`.
pub(crate) struct Pernet<T: NetHooks + 'static> {
    _hooks: Arc<T>,
}

impl<T: NetHooks + 'static> Pernet<T> {
    /// Registers `hooks`; `up` runs for every namespace alive now before this returns. Only
    /// one registration exists at a time (`EBUSY`).
    pub(crate) fn register(hooks: Arc<T>) -> Result<Self> {
        let ctx = Arc::as_ptr(&hooks).cast_mut().cast::<c_void>();
        // SAFETY: `ctx` points to a `T` that `hooks` keeps alive until `drop`, which
        // unregisters first; the hooks are the `T` instantiations, which cast it back.
        to_result(unsafe { ffi::kchat_pernet_register(ctx, up_hook::<T>, down_hook::<T>) })?;
        Ok(Self { _hooks: hooks })
    }
}

impl<T: NetHooks + 'static> Drop for Pernet<T> {
    fn drop(&mut self) {
        // SAFETY: Registered (type invariant); this runs `down` for every namespace and
        // returns when no hook can run any more, so `self._hooks` may go after it.
        unsafe { ffi::kchat_pernet_unregister() };
    }
}

/// # Safety
///
/// `ctx` is the context of a live [`Pernet<T>`] and `net` a namespace being set up.
unsafe extern "C" fn up_hook<T: NetHooks>(ctx: *mut c_void, net: *mut bindings::net) -> i32 {
    // SAFETY: The registration keeps the `T` alive while its hooks can run (`Pernet`
    // invariant), and only shared references to it exist.
    let hooks = unsafe { &*ctx.cast::<T>() };
    // SAFETY: The kernel calls the init hook with a namespace that lives at least until the
    // exit hook has run, after this returns.
    let net = unsafe { Net::from_raw(net) };
    from_result(|| hooks.up(net).map(|()| 0))
}

/// # Safety
///
/// `ctx` is the context of a live [`Pernet<T>`] and `net` a namespace being dismantled.
unsafe extern "C" fn down_hook<T: NetHooks>(ctx: *mut c_void, net: *mut bindings::net) {
    // SAFETY: As in `up_hook`.
    let hooks = unsafe { &*ctx.cast::<T>() };
    // SAFETY: The namespace is alive until its exit hook, this call, returns.
    let net = unsafe { Net::from_raw(net) };
    hooks.down(net);
}
