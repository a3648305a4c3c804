// SPDX-License-Identifier: GPL-2.0

//! Socket callbacks: how softirq-context socket events reach kchat's workqueue.
//!
//! kchat replaces a socket's `sk_data_ready` (and, on connected sockets, `sk_state_change`
//! and `sk_write_space`) with trampolines that look up the owner through `sk_user_data` and
//! call a [`SocketEvents`] method, which only queues work. The pattern is nvmet-tcp's
//! (`nvmet_tcp_set_queue_sock` / `nvmet_tcp_restore_socket_callbacks`):
//!
//! - `sk_user_data` holds one strong reference to the owner (`Arc::into_foreign`); it is set,
//!   together with the callbacks, under `write_lock_bh(&sk->sk_callback_lock)`, and read by the
//!   trampolines under `read_lock_bh`. [`Socket::detach`] takes the write lock, which waits for
//!   every running trampoline, restores the defaults and takes the reference back; after it no
//!   callback can see the owner.
//! - Whose the socket is, is decided by that pointer alone, as nvmet-tcp does: a socket is
//!   attached at most once in its life, so a non-NULL `sk_user_data` is always the owner that
//!   was installed with the trampoline that reads it, and `detach` is given the owner and
//!   compares pointers (function addresses, which Rust does not promise to be unique, are
//!   never compared).
//! - Accepted sockets inherit the listener's callbacks (`sock_copy`); `SK_USER_DATA_NOCOPY`
//!   keeps them from inheriting `sk_user_data`, the listener trampoline ignores sockets that
//!   are not listening, and [`Socket::accept`] resets them to the defaults at once.

use core::ptr;
use kernel::{
    bindings,
    ffi::c_void,
    prelude::*,
    sync::{
        atomic::Relaxed,
        Arc,
        ArcBorrow, //
    },
    types::ForeignOwnable,
};

use super::{ffi, Socket};

/// A `struct sock` callback.
type SockFn = unsafe extern "C" fn(sk: *mut bindings::sock);

/// The three callbacks kchat replaces, laid out as `struct kchat_sk_callbacks`
/// (`src/kchat_helpers.h`).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Callbacks {
    data_ready: Option<SockFn>,
    state_change: Option<SockFn>,
    write_space: Option<SockFn>,
}

impl Callbacks {
    /// No callbacks, to be filled in by `kchat_sk_get_callbacks`.
    const NONE: Self = Self {
        data_ready: None,
        state_change: None,
        write_space: None,
    };

    /// Reads the callbacks installed on `sk` now.
    ///
    /// # Safety
    ///
    /// `sk` must be a valid `struct sock` whose `sk_callback_lock` the caller does not hold.
    pub(super) unsafe fn read(sk: *mut bindings::sock) -> Self {
        // SAFETY: `sk` is valid and unlocked (caller).
        unsafe { ffi::kchat_sk_callback_read_lock(sk) };
        // SAFETY: `sk` is valid and now locked.
        let cb = unsafe { Self::read_locked(sk) };
        // SAFETY: Locked above.
        unsafe { ffi::kchat_sk_callback_read_unlock(sk) };
        cb
    }

    /// Reads the callbacks of `sk` with `sk_callback_lock` already held.
    ///
    /// # Safety
    ///
    /// `sk` must be valid and its `sk_callback_lock` held by the caller, for reading or
    /// writing.
    unsafe fn read_locked(sk: *mut bindings::sock) -> Self {
        let mut cb = Self::NONE;
        // SAFETY: `sk` is valid and locked (caller).
        unsafe { ffi::kchat_sk_get_callbacks(sk, &mut cb) };
        cb
    }
}

/// What a socket's owner does when the socket has news.
///
/// The methods run in softirq context (or nested inside the owner's own socket calls, when
/// `release_sock` processes the backlog), with `sk_callback_lock` held for reading: they must
/// not sleep, allocate with `GFP_KERNEL`, take a mutex, or call back into the socket. Queueing
/// work is what they are for.
pub(crate) trait SocketEvents: Send + Sync + Sized + 'static {
    /// Data arrived (on a listener: a connection is ready to accept).
    fn data_ready(this: ArcBorrow<'_, Self>);
    /// The TCP state changed (FIN or RST from the peer, or our own shutdown).
    fn state_change(this: ArcBorrow<'_, Self>);
    /// Send buffer space freed up after a short or refused send.
    fn write_space(this: ArcBorrow<'_, Self>);
}

/// Calls `event` with the owner stored in `sk`'s `sk_user_data`, if there is one (otherwise
/// the socket was detached since the caller read the callback pointer).
///
/// # Safety
///
/// `sk` must be a valid `struct sock` on which [`Socket::attach`] installed the trampolines of
/// `T` (this function is only called from them); `attach` runs at most once per socket, so a
/// non-NULL `sk_user_data` is the `Arc<T>` it installed with them.
unsafe fn with_owner<T: SocketEvents>(sk: *mut bindings::sock, event: fn(ArcBorrow<'_, T>)) {
    // SAFETY: `sk` is valid (caller). The read lock excludes `attach` and `detach`, so
    // `sk_user_data` read below stays what it is until the unlock.
    unsafe { ffi::kchat_sk_callback_read_lock(sk) };
    // SAFETY: `sk` is valid and the lock is held.
    let data = unsafe { ffi::kchat_sk_user_data(sk) };
    if !data.is_null() {
        // SAFETY: `data` came from `Arc::<T>::into_foreign` in the one `attach` of this
        // socket (caller). The reference it stands for is only taken back by `detach`, under
        // the write lock, which cannot be taken before we unlock: the borrow ends first.
        event(unsafe { <Arc<T> as ForeignOwnable>::borrow(data) });
    }
    // SAFETY: Taken above.
    unsafe { ffi::kchat_sk_callback_read_unlock(sk) };
}

/// `sk_data_ready` of a listening socket.
///
/// # Safety
///
/// Called by the network stack with a valid `sk`; installed only by [`Socket::attach`].
unsafe extern "C" fn listen_data_ready<T: SocketEvents>(sk: *mut bindings::sock) {
    // Accepted sockets inherit this callback; only the listener itself has news for `T`.
    // SAFETY: `sk` is valid (the network stack calls callbacks with their socket).
    if !unsafe { ffi::kchat_sk_is_listener(sk) } {
        return;
    }
    // SAFETY: `sk` is valid, and `attach::<T>` installed this function, as `with_owner`
    // requires.
    unsafe { with_owner::<T>(sk, T::data_ready) };
}

/// `sk_data_ready` of a connected socket.
///
/// # Safety
///
/// Called by the network stack with a valid `sk`; installed only by [`Socket::attach`].
unsafe extern "C" fn stream_data_ready<T: SocketEvents>(sk: *mut bindings::sock) {
    // SAFETY: As for `listen_data_ready`.
    unsafe { with_owner::<T>(sk, T::data_ready) };
}

/// `sk_state_change` of a connected socket.
///
/// # Safety
///
/// Called by the network stack with a valid `sk`; installed only by [`Socket::attach`].
unsafe extern "C" fn stream_state_change<T: SocketEvents>(sk: *mut bindings::sock) {
    // SAFETY: As for `listen_data_ready`.
    unsafe { with_owner::<T>(sk, T::state_change) };
}

/// `sk_write_space` of a connected socket.
///
/// # Safety
///
/// Called by the network stack with a valid `sk`; installed only by [`Socket::attach`].
unsafe extern "C" fn stream_write_space<T: SocketEvents>(sk: *mut bindings::sock) {
    // As `sk_stream_write_space` does: only when there is real room, clearing SOCK_NOSPACE so
    // that the next short send arms this callback again.
    // SAFETY: `sk` is valid (the network stack calls callbacks with their socket).
    if !unsafe { ffi::kchat_sk_stream_writeable(sk) } {
        return;
    }
    // SAFETY: As for `listen_data_ready`.
    unsafe { with_owner::<T>(sk, T::write_space) };
}

/// Whether a socket is attached as a listener or as a connection.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Only `sk_data_ready` is replaced; it reports connections to accept.
    Listener,
    /// `sk_data_ready`, `sk_state_change` and `sk_write_space` are replaced.
    Stream,
}

/// The trampolines of owner type `T` for `role`, over the socket's `defaults`.
fn trampolines<T: SocketEvents>(role: Role, defaults: &Callbacks) -> Callbacks {
    match role {
        Role::Listener => Callbacks {
            data_ready: Some(listen_data_ready::<T>),
            ..*defaults
        },
        Role::Stream => Callbacks {
            data_ready: Some(stream_data_ready::<T>),
            state_change: Some(stream_state_change::<T>),
            write_space: Some(stream_write_space::<T>),
        },
    }
}

/// Holds `sk_callback_lock` for writing while alive.
struct WriteLocked(*mut bindings::sock);

impl WriteLocked {
    /// # Safety
    ///
    /// `sk` must be valid for the guard's lifetime, and the caller must not hold
    /// `sk_callback_lock` already.
    unsafe fn new(sk: *mut bindings::sock) -> Self {
        // SAFETY: `sk` is valid (caller).
        unsafe { ffi::kchat_sk_callback_write_lock(sk) };
        Self(sk)
    }
}

impl Drop for WriteLocked {
    fn drop(&mut self) {
        // SAFETY: The lock was taken in `new` on a socket that is still valid.
        unsafe { ffi::kchat_sk_callback_write_unlock(self.0) };
    }
}

impl Socket {
    /// Installs `owner`'s callbacks; the socket keeps a reference to `owner` until
    /// [`Socket::detach`].
    ///
    /// A socket is attached at most once in its life: a second call fails with the owner
    /// handed back, as does a socket that has an owner already. Events that arrived before
    /// this call were not reported: the caller must look once (queue a read) after attaching,
    /// as nvmet-tcp does.
    pub(crate) fn attach<T: SocketEvents>(&self, owner: Arc<T>, role: Role) -> Result<(), Arc<T>> {
        if self.attached.xchg(true, Relaxed) {
            return Err(owner);
        }
        let sk = self.sk();
        // SAFETY: `sk` is valid by the type invariant; this file takes the lock nowhere else
        // on this call path.
        let _guard = unsafe { WriteLocked::new(sk) };
        // SAFETY: `sk` is valid and the write lock is held.
        if !unsafe { ffi::kchat_sk_user_data(sk) }.is_null() {
            return Err(owner);
        }
        let cb = trampolines::<T>(role, &self.defaults);
        // SAFETY: `sk` is valid and the write lock is held, so no trampoline runs meanwhile.
        // The trampolines of `T` are installed together with an `Arc<T>`, once in the
        // socket's life, which is what `with_owner` requires; the reference is taken back by
        // `detach` or leaked by `reset_callbacks`, never dropped while installed.
        unsafe {
            ffi::kchat_sk_set_user_data(sk, owner.into_foreign());
            ffi::kchat_sk_set_callbacks(sk, &cb);
        }
        Ok(())
    }

    /// Restores the default callbacks and returns the socket's reference to `owner`, if
    /// `owner` is attached.
    ///
    /// Once this returns, no callback of this socket can see the owner: the write lock waited
    /// for any trampoline still running. Idempotent; must not be called from a callback.
    pub(crate) fn detach<T: SocketEvents>(&self, owner: &Arc<T>) -> Option<Arc<T>> {
        // What `attach` stored for this owner: `into_foreign` of any reference to the same
        // object gives the same pointer. The probe's reference is given back at once.
        let probe = owner.clone().into_foreign();
        // SAFETY: `probe` came from `into_foreign` just above and is used nowhere else.
        drop(unsafe { <Arc<T> as ForeignOwnable>::from_foreign(probe) });
        let sk = self.sk();
        // SAFETY: `sk` is valid by the type invariant; callers are not callbacks, so the lock
        // is not held.
        let _guard = unsafe { WriteLocked::new(sk) };
        // SAFETY: `sk` is valid and the lock is held.
        let data = unsafe { ffi::kchat_sk_user_data(sk) };
        if data.is_null() || data != probe {
            return None;
        }
        // SAFETY: `sk` is valid and the lock is held; the defaults are the kernel's own.
        unsafe {
            ffi::kchat_sk_set_callbacks(sk, &self.defaults);
            ffi::kchat_sk_set_user_data(sk, ptr::null_mut());
        }
        // SAFETY: `data` is the pointer of `owner`'s allocation, a live `Arc<T>`, so it is the
        // one `attach` stored with `Arc::<T>::into_foreign`; it is no longer reachable from
        // the socket, so its reference is ours.
        Some(unsafe { <Arc<T> as ForeignOwnable>::from_foreign(data) })
    }

    /// Puts back the default callbacks and clears `sk_user_data`, whatever was there.
    ///
    /// Used on sockets fresh from `accept` (which carry the listener's trampoline) and in
    /// `Drop`. An owner reference still stored would be leaked, never freed while reachable;
    /// owners hold their socket, so they always `detach` before it can drop.
    pub(super) fn reset_callbacks(&self) {
        let sk = self.sk();
        // SAFETY: `sk` is valid by the type invariant; not called from a callback.
        let _guard = unsafe { WriteLocked::new(sk) };
        // SAFETY: `sk` is valid and the lock is held.
        unsafe {
            ffi::kchat_sk_set_callbacks(sk, &self.defaults);
            ffi::kchat_sk_set_user_data(sk, ptr::null_mut::<c_void>());
        }
    }
}
