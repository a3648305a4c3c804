// SPDX-License-Identifier: GPL-2.0

//! Kernel TCP sockets: the one place kchat calls the socket API.
//!
//! 7.3 has no Rust socket abstraction (`rust/kernel/net` holds only `phy` and `netlink`), so
//! this file wraps the few calls kchat needs: [`Socket::listen_tcp`], non-blocking
//! [`Socket::accept`], [`Socket::recv`] and [`Socket::send_segments`] (copying or splicing log pages), [`Socket::shutdown`] and the
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
    prelude::*,
    sync::atomic::Atomic, //
};

use crate::{
    netns::Net,
    pages::LogPage, //
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
        pub(super) fn kchat_sk_set_v6only(sk: *mut sock, v6only: bool);
    }
}

/// A peer's address and port, as a client's default label shows it: `A.B.C.D:PORT` for IPv4
/// (also when it reached the dual-stack listener as a v4-mapped IPv6 address), `[ADDR]:PORT`
/// for IPv6, in the RFC 5952 text form.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeerAddr {
    /// Octets in network order, port in host order.
    V4([u8; 4], u16),
    /// The sixteen octets in network order, port in host order.
    V6([u8; 16], u16),
}

impl PeerAddr {
    /// The address of an IPv6 peer, unmapping `::ffff:a.b.c.d`.
    fn from_v6(ip: [u8; 16], port: u16) -> Self {
        match ip {
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d] => Self::V4([a, b, c, d], port),
            _ => Self::V6(ip, port),
        }
    }
}

impl PeerAddr {
    /// The address without its port, as IRC shows a member's host.
    pub(crate) fn host(&self) -> Host {
        Host(*self)
    }

    /// Writes the IP address (RFC 5952 for IPv6, without brackets).
    fn fmt_ip(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::V4([a, b, c, d], _) => f.write_fmt(fmt!("{a}.{b}.{c}.{d}")),
            Self::V6(ip, _) => {
                let groups: [u16; 8] =
                    core::array::from_fn(|i| u16::from_be_bytes([ip[2 * i], ip[2 * i + 1]]));
                // RFC 5952: the longest run of two or more zero groups (the first of equals)
                // becomes `::`.
                let (mut best, mut best_len, mut run) = (8, 1, 0);
                for (i, g) in groups.iter().enumerate() {
                    run = if *g == 0 { run + 1 } else { 0 };
                    if run > best_len {
                        best_len = run;
                        best = i + 1 - run;
                    }
                }
                let mut i = 0;
                while i < 8 {
                    if i == best {
                        f.write_str("::")?;
                        i += best_len;
                        continue;
                    }
                    if i > 0 && i != best + best_len {
                        f.write_str(":")?;
                    }
                    f.write_fmt(fmt!("{:x}", groups[i]))?;
                    i += 1;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::V4(_, port) => {
                self.fmt_ip(f)?;
                f.write_fmt(fmt!(":{port}"))
            }
            Self::V6(_, port) => {
                f.write_str("[")?;
                self.fmt_ip(f)?;
                f.write_fmt(fmt!("]:{port}"))
            }
        }
    }
}

/// A peer's IP address as an IRC host: an IPv6 address that would start with `:` (and so
/// read as the start of a trailing parameter) gets a leading `0`.
#[derive(Clone, Copy)]
pub(crate) struct Host(PeerAddr);

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let PeerAddr::V6(ip, _) = self.0 {
            if ip[0] == 0 && ip[1] == 0 {
                f.write_str("0")?;
            }
        }
        self.0.fmt_ip(f)
    }
}

/// Room for any socket address, as `struct sockaddr_storage`: the `sockaddr_in` and
/// `sockaddr_in6` layouts of the UAPI (`linux/in.h`, `linux/in6.h`) are read and written here
/// byte by byte, so no union of the bindings is touched.
#[repr(C, align(8))]
struct SockAddr {
    bytes: [u8; 128],
    /// Length of the address written, for `bind`.
    len: i32,
}

impl SockAddr {
    const EMPTY: Self = Self {
        bytes: [0; 128],
        len: 0,
    };

    /// The wildcard address of IPv6 (`[::]`, a `sockaddr_in6` of 28 bytes) or IPv4 (0.0.0.0,
    /// a `sockaddr_in` of 16 bytes), with `port`.
    fn any(v6: bool, port: u16) -> Self {
        let mut a = Self::EMPTY;
        let family = if v6 {
            bindings::AF_INET6
        } else {
            bindings::AF_INET
        };
        // Address families are small numbers (2 and 10).
        a.bytes[0..2].copy_from_slice(&(family as u16).to_ne_bytes());
        a.bytes[2..4].copy_from_slice(&port.to_be_bytes());
        a.len = if v6 { 28 } else { 16 };
        a
    }

    /// The address `getpeername` wrote: `sin_port`/`sin6_port` at offset 2, `sin_addr` at 4,
    /// `sin6_addr` at 8.
    fn peer(&self) -> Option<PeerAddr> {
        let b = &self.bytes;
        let family = u32::from(u16::from_ne_bytes([b[0], b[1]]));
        let port = u16::from_be_bytes([b[2], b[3]]);
        if family == bindings::AF_INET {
            Some(PeerAddr::V4([b[4], b[5], b[6], b[7]], port))
        } else if family == bindings::AF_INET6 {
            let mut ip = [0; 16];
            ip.copy_from_slice(&b[8..24]);
            Some(PeerAddr::from_v6(ip, port))
        } else {
            None
        }
    }

    fn as_mut_ptr(&mut self) -> *mut u8 {
        self.bytes.as_mut_ptr()
    }
}

/// Part of a frame to send: bytes to copy into the socket, or a sealed range of a log page to
/// splice into it (the skb takes a page reference; nothing is copied).
pub(crate) enum Segment<'a> {
    Copy(&'a [u8]),
    /// `len` sealed bytes of a log page, from `at`.
    Splice {
        page: &'a LogPage,
        at: usize,
        len: usize,
    },
}

/// Room for the buffers of one [`Socket::send_segments`]: one send carries as many frames as
/// this holds, so a shard loop keeps a large one ([`IoVecs::BATCH`] entries) for all its sends.
pub(crate) struct IoVecs {
    /// The large tables, or empty for small ones.
    heap: KVec<bindings::kvec>,
    heap_pages: KVec<bindings::bio_vec>,
    /// The small tables.
    inline: [bindings::kvec; 4],
    inline_pages: [bindings::bio_vec; 4],
}

// SAFETY: The tables' pointers are written and read only within one `Socket::send_segments`
// call, which borrows what they point at for its duration; between calls they are stale and
// never dereferenced, so moving the tables to another thread shares nothing.
unsafe impl Send for IoVecs {}

/// An unused buffer entry.
const NO_KVEC: bindings::kvec = bindings::kvec {
    iov_base: core::ptr::null_mut(),
    iov_len: 0,
};

/// An unused page entry.
const NO_BVEC: bindings::bio_vec = bindings::bio_vec {
    bv_page: core::ptr::null_mut(),
    bv_len: 0,
    bv_offset: 0,
};

impl IoVecs {
    /// Frames per send, as the user-space reference server batches them.
    pub(crate) const BATCH: usize = 512;

    /// Room for [`IoVecs::BATCH`] buffers.
    pub(crate) fn new(flags: kernel::alloc::Flags) -> Result<Self> {
        Ok(Self {
            heap: KVec::from_elem(NO_KVEC, Self::BATCH, flags)?,
            heap_pages: KVec::from_elem(NO_BVEC, Self::BATCH, flags)?,
            inline: [NO_KVEC; 4],
            inline_pages: [NO_BVEC; 4],
        })
    }

    /// Room for a few buffers, allocating nothing.
    pub(crate) fn small() -> Self {
        Self {
            heap: KVec::new(),
            heap_pages: KVec::new(),
            inline: [NO_KVEC; 4],
            inline_pages: [NO_BVEC; 4],
        }
    }

    fn slots(&mut self) -> &mut [bindings::kvec] {
        if self.heap.is_empty() {
            &mut self.inline
        } else {
            &mut self.heap
        }
    }

    fn page_slots(&mut self) -> &mut [bindings::bio_vec] {
        if self.heap_pages.is_empty() {
            &mut self.inline_pages
        } else {
            &mut self.heap_pages
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
    /// Whether an owner was ever attached (at most once per socket).
    attached: Atomic<bool>,
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

    /// Creates a TCP socket listening on `port` in `net`, with `SO_REUSEADDR`: on `[::]`
    /// taking IPv4 clients too (`IPV6_V6ONLY` off), or on 0.0.0.0 where the kernel has no
    /// IPv6. Returns the socket and whether it is dual-stack.
    ///
    /// A kernel socket holds no reference to its namespace that keeps it running: its owner
    /// closes it (and the connections accepted from it) before the namespace is dismantled.
    pub(crate) fn listen_tcp(net: &Net, port: u16, backlog: u32) -> Result<(Self, bool)> {
        match Self::listen_family(net, bindings::AF_INET6, port, backlog) {
            Ok(sock) => Ok((sock, true)),
            Err(e) if e == EAFNOSUPPORT => Ok((
                Self::listen_family(net, bindings::AF_INET, port, backlog)?,
                false,
            )),
            Err(e) => Err(e),
        }
    }

    fn listen_family(net: &Net, family: u32, port: u16, backlog: u32) -> Result<Self> {
        let mut raw: *mut bindings::socket = core::ptr::null_mut();
        // The protocol constants are small positive values; the conversions cannot fail.
        let domain = i32::try_from(family).map_err(|_| EINVAL)?;
        let kind = i32::try_from(bindings::sock_type_SOCK_STREAM).map_err(|_| EINVAL)?;
        let proto = i32::try_from(bindings::IPPROTO_TCP).map_err(|_| EINVAL)?;
        // SAFETY: `net` is alive for the call (`Net` invariant); `raw` is a valid place for
        // the result.
        to_result(unsafe {
            bindings::sock_create_kern(net.as_ptr(), domain, kind, proto, &mut raw)
        })?;
        let ptr = NonNull::new(raw).ok_or(ENOMEM)?;
        // SAFETY: `sock_create_kern` succeeded, so `ptr` is a new socket with a valid `sk`,
        // and no callback has been replaced yet.
        let defaults = unsafe { Callbacks::read((*ptr.as_ptr()).sk) };
        // INVARIANT: The socket was just created and is owned here; `defaults` were read from
        // it before any change.
        let sock = Self {
            ptr,
            defaults,
            attached: Atomic::new(false),
        };

        // SAFETY: `sk` is valid by the type invariant.
        unsafe { ffi::sock_set_reuseaddr(sock.sk()) };
        let v6 = family == bindings::AF_INET6;
        if v6 {
            // SAFETY: `sk` is valid by the type invariant and an AF_INET6 socket, not yet bound.
            unsafe { ffi::kchat_sk_set_v6only(sock.sk(), false) };
        }
        let mut addr = SockAddr::any(v6, port);
        // SAFETY: The socket is valid by the type invariant; `addr` holds a valid `sockaddr_in`
        // or `sockaddr_in6` (the wildcard address) of the socket's family, of the length passed.
        to_result(unsafe {
            bindings::kernel_bind(
                sock.ptr.as_ptr(),
                addr.as_mut_ptr().cast::<bindings::sockaddr_unsized>(),
                addr.len,
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
            attached: Atomic::new(false),
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

    /// Sends as much of `segs` as the socket takes now, in one send: the leading segments to
    /// copy (as many as `iov` has room for) with `kernel_sendmsg`, or else the leading
    /// segments to splice with `sock_sendmsg(MSG_SPLICE_PAGES)`, ranges that continue each
    /// other on one page merged into one `bio_vec`. Call again for the rest.
    ///
    /// Returns the bytes sent, which may be fewer than given; `EAGAIN` if none fit. TCP then
    /// calls `sk_write_space` when room frees up. `MSG_NOSIGNAL`: a reset peer must not send
    /// SIGPIPE to the kworker.
    pub(crate) fn send_segments<'a>(
        &self,
        iov: &mut IoVecs,
        segs: impl Iterator<Item = Segment<'a>>,
    ) -> Result<usize> {
        let mut segs = segs.peekable();
        match segs.peek() {
            None => Ok(0),
            Some(Segment::Copy(_)) => self.send_vectored(
                iov,
                segs.map_while(|s| match s {
                    Segment::Copy(b) => Some(b),
                    Segment::Splice { .. } => None,
                }),
            ),
            Some(Segment::Splice { .. }) => self.splice(
                iov,
                segs.map_while(|s| match s {
                    Segment::Splice { page, at, len } => Some((page, at, len)),
                    Segment::Copy(_) => None,
                }),
            ),
        }
    }

    /// Splices the log ranges `ranges` (page, offset, length) in one `sock_sendmsg`.
    fn splice<'a>(
        &self,
        iov: &mut IoVecs,
        ranges: impl Iterator<Item = (&'a LogPage, usize, usize)>,
    ) -> Result<usize> {
        let slots = iov.page_slots();
        let mut total = 0usize;
        let mut n = 0;
        for (page, at, len) in ranges {
            let page = page.raw_page();
            // A range past its page would let TCP read beyond it: refuse the send (the
            // client is disconnected) rather than trust the caller.
            if at + len > kernel::page::PAGE_SIZE {
                return Err(EINVAL);
            }
            if len == 0 {
                continue;
            }
            // Both within one page: they fit in u32.
            let (at, len) = (at as u32, len as u32);
            let cap = slots.len();
            match slots[..n].last_mut() {
                Some(v) if v.bv_page == page && v.bv_offset + v.bv_len == at => v.bv_len += len,
                _ if n == cap => break,
                _ => {
                    slots[n] = bindings::bio_vec {
                        bv_page: page,
                        bv_len: len,
                        bv_offset: at,
                    };
                    n += 1;
                }
            }
            total += len as usize;
        }
        if total == 0 {
            return Ok(0);
        }
        let mut msg = bindings::msghdr {
            msg_flags: bindings::MSG_SPLICE_PAGES | bindings::MSG_DONTWAIT | bindings::MSG_NOSIGNAL,
            ..Default::default()
        };
        // SAFETY: `msg.msg_iter` is a plain struct that `iov_iter_bvec` initialises; the first
        // `n` entries of `slots` describe `total` bytes of pages.
        unsafe {
            bindings::iov_iter_bvec(
                &mut msg.msg_iter,
                bindings::ITER_SOURCE,
                slots.as_ptr(),
                n,
                total,
            )
        };
        // SAFETY: The socket is valid by the type invariant. Each `bio_vec` names a range of a
        // log page that the `LogPage` borrowed from `ranges` keeps allocated for the whole call,
        // and whose bytes are sealed (only sealed ranges are queued to be sent): they never change, so TCP may keep referring
        // to them (it takes a page reference per fragment, `skb_append_pagefrags`) until the
        // data is acknowledged. The pages are order-0 page-allocator pages, not slab, as
        // `MSG_SPLICE_PAGES` requires (`sendpage_ok`).
        let sent = unsafe { bindings::sock_sendmsg(self.ptr.as_ptr(), &mut msg) };
        to_result(sent)?;
        usize::try_from(sent).map_err(|_| EINVAL)
    }

    /// Sends as much of `bufs` (as many of them as `iov` has room for) as the socket takes
    /// now, in one `kernel_sendmsg`; see [`Socket::send_segments`].
    fn send_vectored<'a>(
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

    /// Sends `buf` if the socket takes it now; see [`Socket::send_vectored`].
    pub(crate) fn send(&self, buf: &[u8]) -> Result<usize> {
        self.send_vectored(&mut IoVecs::small(), core::iter::once(buf))
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
    pub(crate) fn peer_addr(&self) -> Result<PeerAddr> {
        let mut addr = SockAddr::EMPTY;
        // SAFETY: The socket is valid by the type invariant; `addr` has room for any socket
        // address (`sizeof(struct sockaddr_storage)`), which is what the call may write.
        let len = unsafe {
            bindings::kernel_getpeername(
                self.ptr.as_ptr(),
                addr.as_mut_ptr().cast::<bindings::sockaddr>(),
            )
        };
        to_result(len)?;
        addr.peer().ok_or(EAFNOSUPPORT)
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
