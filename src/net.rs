// SPDX-License-Identifier: GPL-2.0

//! Kernel TCP sockets: the one place kchat calls the socket API.
//!
//! 7.3 has no Rust socket abstraction (`rust/kernel/net` holds only `phy` and `netlink`), so
//! this file wraps the few calls kchat needs: [`Socket::listen_tcp`], non-blocking
//! [`Socket::accept`], [`Socket::recv`] and [`Socket::send_all`], [`Socket::shutdown`] and the
//! peer address. The socket callbacks (`sk_data_ready` and friends) are in [`callbacks`].
//!
//! Every call here is non-blocking (`MSG_DONTWAIT`, `O_NONBLOCK`): kchat runs on a workqueue
//! and never waits for a peer. `EAGAIN` means "nothing now, a callback will queue work when
//! there is".
//!
//! C header: [`include/linux/net.h`](srctree/include/linux/net.h)

mod callbacks;

use core::ptr::NonNull;
use kernel::{
    bindings,
    error::to_result,
    fmt,
    prelude::*, //
};

use callbacks::Callbacks;
pub(crate) use callbacks::{
    Role,
    SocketEvents, //
};

/// Functions of `src/kchat_helpers.c` and exported kernel functions that the 7.3 bindings lack
/// (they are declared in `net/sock.h` and `linux/tcp.h`, which bindgen does not read).
mod ffi {
    use super::callbacks::Callbacks;
    use kernel::bindings::sock;

    #[allow(missing_docs)]
    extern "C" {
        pub(super) fn kchat_sk_callback_read_lock(sk: *mut sock);
        pub(super) fn kchat_sk_callback_read_unlock(sk: *mut sock);
        pub(super) fn kchat_sk_callback_write_lock(sk: *mut sock);
        pub(super) fn kchat_sk_callback_write_unlock(sk: *mut sock);
        pub(super) fn kchat_sk_user_data(sk: *mut sock) -> *mut kernel::ffi::c_void;
        pub(super) fn kchat_sk_set_user_data(sk: *mut sock, data: *mut kernel::ffi::c_void);
        pub(super) fn kchat_sk_get_callbacks(sk: *mut sock, cb: *mut Callbacks);
        pub(super) fn kchat_sk_set_callbacks(sk: *mut sock, cb: *const Callbacks);
        pub(super) fn kchat_sk_is_listener(sk: *mut sock) -> bool;
        pub(super) fn kchat_sk_stream_writeable(sk: *mut sock) -> bool;
        pub(super) fn kchat_sk_wmem_queued(sk: *mut sock) -> kernel::ffi::c_int;
        pub(super) fn sock_set_reuseaddr(sk: *mut sock);
        pub(super) fn tcp_sock_set_nodelay(sk: *mut sock);
    }
}

/// An IPv4 address and port, as a client's default label shows it (`ip:port`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct SocketAddrV4 {
    /// Address octets in network order.
    pub(crate) ip: [u8; 4],
    /// Port in host order.
    pub(crate) port: u16,
}

impl fmt::Display for SocketAddrV4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d] = self.ip;
        f.write_fmt(fmt!("{a}.{b}.{c}.{d}:{}", self.port))
    }
}

/// Room for the buffers of one [`Socket::send_all`]: one send carries as many frames as this
/// holds, so a shard loop keeps a large one ([`IoVecs::BATCH`] entries) for all its sends.
pub(crate) struct IoVecs {
    /// The large table, or empty for a small one.
    heap: KVec<bindings::kvec>,
    /// The small table.
    inline: [bindings::kvec; 4],
}

// SAFETY: The table's pointers are written and read only within one `Socket::send_all` call,
// which borrows what they point at for its duration; between calls they are stale and never
// dereferenced, so moving the table to another thread shares nothing.
unsafe impl Send for IoVecs {}

/// An unused buffer entry.
const NO_KVEC: bindings::kvec = bindings::kvec {
    iov_base: core::ptr::null_mut(),
    iov_len: 0,
};

impl IoVecs {
    /// Frames per send, as the user-space reference server batches them.
    pub(crate) const BATCH: usize = 512;

    /// Room for [`IoVecs::BATCH`] buffers.
    pub(crate) fn new(flags: kernel::alloc::Flags) -> Result<Self> {
        Ok(Self {
            heap: KVec::from_elem(NO_KVEC, Self::BATCH, flags)?,
            inline: [NO_KVEC; 4],
        })
    }

    /// Room for a few buffers, allocating nothing.
    pub(crate) fn small() -> Self {
        Self {
            heap: KVec::new(),
            inline: [NO_KVEC; 4],
        }
    }

    fn slots(&mut self) -> &mut [bindings::kvec] {
        if self.heap.is_empty() {
            &mut self.inline
        } else {
            &mut self.heap
        }
    }
}

/// An owned kernel TCP socket.
///
/// # Invariants
///
/// - `ptr` points at a `struct socket` that this value owns (it is released on drop), whose
///   `sk` is a valid `struct sock` for as long as the socket is owned.
/// - `defaults` are the callbacks the kernel installed on the listening socket this socket
///   comes from (or on itself, for a listener) before kchat replaced any.
pub(crate) struct Socket {
    ptr: NonNull<bindings::socket>,
    defaults: Callbacks,
}

// SAFETY: A `struct socket` may be used and released from any thread; the socket calls do their
// own locking (`lock_sock`).
unsafe impl Send for Socket {}

// SAFETY: Every method takes `&self` and calls socket functions that may run concurrently on
// one socket (the kernel serialises them with the socket lock).
unsafe impl Sync for Socket {}

impl Socket {
    /// The `struct sock` of this socket.
    fn sk(&self) -> *mut bindings::sock {
        // SAFETY: By the type invariant, `ptr` points at a valid, owned `struct socket`.
        unsafe { (*self.ptr.as_ptr()).sk }
    }

    /// Creates a TCP socket listening on 0.0.0.0:`port` in the initial network namespace,
    /// with `SO_REUSEADDR`.
    pub(crate) fn listen_tcp(port: u16, backlog: u32) -> Result<Self> {
        let mut raw: *mut bindings::socket = core::ptr::null_mut();
        // The protocol constants are small positive values; the conversions cannot fail.
        let family = i32::try_from(bindings::AF_INET).map_err(|_| EINVAL)?;
        let kind = i32::try_from(bindings::sock_type_SOCK_STREAM).map_err(|_| EINVAL)?;
        let proto = i32::try_from(bindings::IPPROTO_TCP).map_err(|_| EINVAL)?;
        // SAFETY: `init_net` is the initial network namespace, which lives forever; `raw` is a
        // valid place for the result.
        to_result(unsafe {
            bindings::sock_create_kern(&raw mut bindings::init_net, family, kind, proto, &mut raw)
        })?;
        let ptr = NonNull::new(raw).ok_or(ENOMEM)?;
        // SAFETY: `sock_create_kern` succeeded, so `ptr` is a new socket with a valid `sk`,
        // and no callback has been replaced yet.
        let defaults = unsafe { Callbacks::read((*ptr.as_ptr()).sk) };
        // INVARIANT: The socket was just created and is owned here; `defaults` were read from
        // it before any change.
        let sock = Self { ptr, defaults };

        // SAFETY: `sk` is valid by the type invariant.
        unsafe { ffi::sock_set_reuseaddr(sock.sk()) };
        let mut addr = bindings::sockaddr_in {
            sin_family: u16::try_from(bindings::AF_INET).map_err(|_| EINVAL)?,
            sin_port: port.to_be(),
            ..Default::default()
        };
        let addr_len = i32::try_from(size_of::<bindings::sockaddr_in>()).map_err(|_| EINVAL)?;
        // SAFETY: The socket is valid by the type invariant; `addr` is a valid `sockaddr_in`
        // (INADDR_ANY, as zeroed) whose size is passed along.
        to_result(unsafe {
            bindings::kernel_bind(
                sock.ptr.as_ptr(),
                (&raw mut addr).cast::<bindings::sockaddr_unsized>(),
                addr_len,
            )
        })?;
        let backlog = i32::try_from(backlog).map_err(|_| EINVAL)?;
        // SAFETY: The socket is valid by the type invariant and bound.
        to_result(unsafe { bindings::kernel_listen(sock.ptr.as_ptr(), backlog) })?;
        Ok(sock)
    }

    /// Accepts one pending connection without waiting; `EAGAIN` when there is none.
    ///
    /// The new socket inherited this listener's callbacks and `sk_user_data` (`sock_copy`
    /// copies them); they are reset to the kernel's defaults before it is returned, so that
    /// nothing of this module stays reachable from it.
    pub(crate) fn accept(&self) -> Result<Self> {
        let mut raw: *mut bindings::socket = core::ptr::null_mut();
        let flags = i32::try_from(bindings::O_NONBLOCK).map_err(|_| EINVAL)?;
        // SAFETY: The listener is valid by the type invariant; `raw` is a valid place for the
        // result, which is NULL on error.
        to_result(unsafe { bindings::kernel_accept(self.ptr.as_ptr(), &mut raw, flags) })?;
        let ptr = NonNull::new(raw).ok_or(ENOMEM)?;
        // INVARIANT: `kernel_accept` succeeded, so `ptr` is a new connected socket owned here;
        // `defaults` are the listener's, which are the ones this socket had before it was
        // cloned from the listener.
        let sock = Self {
            ptr,
            defaults: self.defaults,
        };
        sock.reset_callbacks();
        Ok(sock)
    }

    /// Receives into `buf` without waiting: `Ok(0)` at end of stream, `EAGAIN` if no data.
    pub(crate) fn recv(&self, buf: &mut [u8]) -> Result<usize> {
        let mut vec = bindings::kvec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut msg = bindings::msghdr::default();
        let flags = i32::try_from(bindings::MSG_DONTWAIT).map_err(|_| EINVAL)?;
        // SAFETY: The socket is valid by the type invariant; `vec` describes `buf`, which is
        // valid for writes of its length and outlives the call; `msg` is a zeroed header,
        // which `kernel_recvmsg` fills in.
        let n = unsafe {
            bindings::kernel_recvmsg(self.ptr.as_ptr(), &mut msg, &mut vec, 1, buf.len(), flags)
        };
        to_result(n)?;
        usize::try_from(n).map_err(|_| EINVAL)
    }

    /// Sends as much of `bufs` (as many of them as `iov` has room for) as the socket takes
    /// now, in one `kernel_sendmsg`.
    ///
    /// Returns the bytes sent, which may be fewer than given; `EAGAIN` if none fit. TCP then
    /// calls `sk_write_space` when room frees up. `MSG_NOSIGNAL`: a reset peer must not send
    /// SIGPIPE to the kworker.
    pub(crate) fn send_all<'a>(
        &self,
        iov: &mut IoVecs,
        bufs: impl Iterator<Item = &'a [u8]>,
    ) -> Result<usize> {
        let slots = iov.slots();
        let mut total = 0usize;
        let mut n = 0;
        for (v, b) in slots.iter_mut().zip(bufs) {
            // The kernel only reads through `iov_base` here (the iterator is ITER_SOURCE), so
            // casting away `const` does not allow a write.
            v.iov_base = b.as_ptr().cast_mut().cast();
            v.iov_len = b.len();
            total += b.len();
            n += 1;
        }
        if total == 0 {
            return Ok(0);
        }
        let mut msg = bindings::msghdr {
            msg_flags: bindings::MSG_DONTWAIT | bindings::MSG_NOSIGNAL,
            ..Default::default()
        };
        // SAFETY: The socket is valid by the type invariant; the first `n` entries of `slots`
        // describe slices borrowed from `bufs`, valid for reads for the whole call, totalling
        // `total` bytes.
        let sent = unsafe {
            bindings::kernel_sendmsg(self.ptr.as_ptr(), &mut msg, slots.as_mut_ptr(), n, total)
        };
        to_result(sent)?;
        usize::try_from(sent).map_err(|_| EINVAL)
    }

    /// Sends `buf` if the socket takes it now; see [`Socket::send_all`].
    pub(crate) fn send(&self, buf: &[u8]) -> Result<usize> {
        self.send_all(&mut IoVecs::small(), core::iter::once(buf))
    }

    /// Shuts down both directions; the peer sees end of stream. Errors (a socket that is
    /// already closed) are of no interest to a caller that is tearing it down.
    pub(crate) fn shutdown(&self) {
        // SAFETY: The socket is valid by the type invariant. This calls `sk_state_change`
        // synchronously, so the caller must not hold `sk_callback_lock` (no caller of this
        // safe method can: the lock is only taken inside this file).
        unsafe {
            bindings::kernel_sock_shutdown(self.ptr.as_ptr(), bindings::sock_shutdown_cmd_SHUT_RDWR)
        };
    }

    /// The connected peer's address.
    pub(crate) fn peer_addr(&self) -> Result<SocketAddrV4> {
        let mut addr = bindings::sockaddr_in::default();
        // SAFETY: The socket is valid by the type invariant; `addr` is large enough for an
        // IPv4 address, the only family a socket accepted from an AF_INET listener has.
        let len = unsafe {
            bindings::kernel_getpeername(
                self.ptr.as_ptr(),
                (&raw mut addr).cast::<bindings::sockaddr>(),
            )
        };
        to_result(len)?;
        Ok(SocketAddrV4 {
            ip: addr.sin_addr.s_addr.to_ne_bytes(),
            port: u16::from_be(addr.sin_port),
        })
    }

    /// Sets `TCP_NODELAY`: chat frames go out as soon as they are queued.
    pub(crate) fn set_nodelay(&self) {
        // SAFETY: `sk` is valid by the type invariant.
        unsafe { ffi::tcp_sock_set_nodelay(self.sk()) };
    }

    /// Memory charged to the socket's send queue (`sk_wmem_queued`: data not yet acknowledged
    /// and its buffer overhead), for the stats view.
    pub(crate) fn send_queued(&self) -> usize {
        // SAFETY: `sk` is valid by the type invariant; the helper reads one field.
        let n = unsafe { ffi::kchat_sk_wmem_queued(self.sk()) };
        usize::try_from(n).unwrap_or(0)
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        // Nothing of this module may stay reachable from a socket it no longer owns: the
        // `struct sock` can outlive the `struct socket` (an orphan in FIN_WAIT) and still run
        // its callbacks. Owners detach before they drop; this makes sure.
        self.reset_callbacks();
        // SAFETY: By the type invariant the socket is owned by `self`, which is going away, so
        // nothing uses it after this.
        unsafe { bindings::sock_release(self.ptr.as_ptr()) };
    }
}
