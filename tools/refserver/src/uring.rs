//! The io_uring engine: one thread, one ring, no readiness polling.
//!
//! - One multishot accept on the listener yields every new connection. Each accepted socket
//!   is installed in the ring's fixed file table (slot = the client's token) and its regular
//!   descriptor closed, so every later operation skips the file-table lookup and reference
//!   counting.
//! - One multishot receive per client, with buffer selection from a provided-buffer ring
//!   (`IORING_REGISTER_PBUF_RING`): receiving needs no new submission per read, and the data
//!   lands in a buffer chosen by the kernel, which goes back to the ring as soon as the frames
//!   in it are handled.
//! - Sending: a client with queued frames gets one `sendmsg` whose iovecs cover its whole queue
//!   (up to [`MAX_IOV`] frames; a plain `send` for a single frame); while it is in flight new
//!   frames wait, and its completion sends the rest with the next one.
//! - Every submission made while handling a batch of completions goes to the kernel in the
//!   next single `io_uring_enter`, which also waits for the next completions. The ring uses
//!   `SINGLE_ISSUER | DEFER_TASKRUN` where the kernel has them, so completion work runs only
//!   when the server asks for completions.
//!
//! A client that must go leaves the chat at once (the others hear it left); its slot then
//! cancels what it has in flight, sends its last word if it has one (without waiting), shuts
//! the socket down and closes the fixed file, and is reused only after every operation that
//! named it has completed, so a completion can never be taken for another client's.

use std::{
    convert::Infallible,
    io,
    net::TcpListener,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    ptr,
    sync::{atomic::AtomicU16, atomic::Ordering},
    time::Instant,
};

use io_uring::{cqueue, opcode, squeue, types, IoUring, Probe};
use socket2::SockRef;

use crate::{
    chat::{CloseReason, Label, Registry, Shard},
    frame::Frame,
    net,
    queue::TxQueue,
    Fatal, Options,
};

/// Submission queue entries.
const ENTRIES: u32 = 4096;
/// Provided buffers (a power of two, at most 32768).
const BUF_COUNT: u16 = 1024;
/// Bytes per provided buffer.
const BUF_SIZE: usize = 16 * 1024;
/// The provided-buffer group id.
const BGID: u16 = 0;
/// Most iovecs per `sendmsg`.
const MAX_IOV: usize = 512;
/// Fixed-file slots beyond `max_clients`, for clients whose slot is still closing.
const SPARE_SLOTS: usize = 64;

/// What a completion is for: the operation in the high half of `user_data`, the slot in the
/// low half.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Accept = 1,
    Recv = 2,
    Send = 3,
    Shutdown = 4,
    Cancel = 5,
    Close = 6,
}

impl Op {
    fn user_data(self, slot: u32) -> u64 {
        (self as u64) << 32 | u64::from(slot)
    }

    fn decode(user_data: u64) -> Option<(Self, u32)> {
        let op = match user_data >> 32 {
            1 => Self::Accept,
            2 => Self::Recv,
            3 => Self::Send,
            4 => Self::Shutdown,
            5 => Self::Cancel,
            6 => Self::Close,
            _ => return None,
        };
        Some((op, user_data as u32))
    }
}

/// Runs the io_uring engine; returns only on a fatal error, or at once with
/// [`Fatal::Unavailable`] (before listening) if io_uring cannot be used here.
pub fn run(opts: &Options) -> Result<Infallible, Fatal> {
    let nofile = net::raise_fd_limit();
    let slots = (opts.limits.max_clients as usize + SPARE_SLOTS)
        .min(
            usize::try_from(nofile)
                .unwrap_or(usize::MAX)
                .saturating_sub(16),
        )
        .max(1);
    let ring = setup_ring(slots)?;
    if slots < opts.limits.max_clients as usize {
        eprintln!("kchat-ref: the open-file limit leaves room for {slots} clients");
    }
    ring.submitter()
        .register_files_sparse(u32::try_from(slots).unwrap_or(u32::MAX))
        .map_err(|e| match e.raw_os_error() {
            Some(libc::EINVAL) => Fatal::Unavailable(format!("sparse fixed-file table: {e}")),
            _ => Fatal::Io(io::Error::new(e.kind(), format!("fixed-file table: {e}"))),
        })?;
    let bufs = BufRing::new(&ring)?;
    let listener = net::listen(opts.port, opts.backlog)?;
    let registry = std::sync::Arc::new(Registry::new(opts.limits));
    let mut engine = Engine {
        ring,
        bufs,
        listener,
        shard: Shard::new(registry, false),
        slots: (0..slots).map(|_| Slot::default()).collect(),
        free: (0..slots as u32).rev().collect(),
        cqes: Vec::with_capacity(ENTRIES as usize * 4),
        rearm: Vec::new(),
        accept_armed: false,
        error: None,
    };
    let err = engine.run();
    // Operations may still be in flight, pointing into the engine's buffers: the engine is
    // never freed (the process is about to exit).
    std::mem::forget(engine);
    Err(Fatal::Io(err))
}

/// Creates the ring, with the single-issuer, deferred-task-run set-up where the kernel has
/// it, and checks that the kernel has every operation the engine uses. The completion queue
/// holds a send and a receive completion per client (within the kernel's limit), so that a
/// batch rarely overflows it.
fn setup_ring(slots: usize) -> Result<IoUring, Fatal> {
    let unavailable = |why: String| Fatal::Unavailable(why);
    if let Ok(s) = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled") {
        if s.trim() == "2" {
            return Err(unavailable("disabled by kernel.io_uring_disabled=2".into()));
        }
    }
    let cq = u32::try_from(2 * slots)
        .unwrap_or(u32::MAX)
        .clamp(ENTRIES * 4, 65536);
    let ring = IoUring::builder()
        .setup_cqsize(cq)
        .setup_clamp()
        .setup_submit_all()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(ENTRIES)
        .or_else(|_| {
            IoUring::builder()
                .setup_cqsize(cq)
                .setup_clamp()
                .build(ENTRIES)
        })
        .map_err(|e| unavailable(format!("io_uring_setup: {e}")))?;
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| unavailable(format!("probe: {e}")))?;
    for (code, name) in [
        (opcode::AcceptMulti::CODE, "accept"),
        (opcode::RecvMulti::CODE, "recv"),
        (opcode::SendMsg::CODE, "sendmsg"),
        (opcode::Shutdown::CODE, "shutdown"),
        (opcode::AsyncCancel::CODE, "async cancel"),
        (opcode::Close::CODE, "close"),
    ] {
        if !probe.is_supported(code) {
            return Err(unavailable(format!("the kernel lacks IORING_OP {name}")));
        }
    }
    Ok(ring)
}

/// `struct io_uring_buf`: one entry of a provided-buffer ring. The ring's tail is the `resv`
/// field of entry 0.
#[repr(C)]
struct BufEntry {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

/// The provided-buffer ring and its buffers.
///
/// Both are allocated once and never freed: the kernel may use them for as long as the ring
/// exists, and the ring lives until the process exits.
struct BufRing {
    /// `BUF_COUNT` entries, page-aligned, shared with the kernel.
    entries: *mut BufEntry,
    /// `BUF_COUNT` buffers of `BUF_SIZE` bytes, one after the other.
    base: *mut u8,
    /// The tail as we will publish it next.
    tail: u16,
}

impl BufRing {
    /// Allocates the ring and the buffers, registers the ring as group [`BGID`] and gives the
    /// kernel every buffer.
    fn new(ring: &IoUring) -> Result<Self, Fatal> {
        let count = usize::from(BUF_COUNT);
        let entries_layout =
            std::alloc::Layout::from_size_align(count * std::mem::size_of::<BufEntry>(), 4096)
                .map_err(|e| Fatal::Io(io::Error::other(e)))?;
        let bufs_layout = std::alloc::Layout::from_size_align(count * BUF_SIZE, 4096)
            .map_err(|e| Fatal::Io(io::Error::other(e)))?;
        // SAFETY: both layouts have a non-zero size.
        let (entries, base) = unsafe {
            (
                std::alloc::alloc_zeroed(entries_layout).cast::<BufEntry>(),
                std::alloc::alloc(bufs_layout),
            )
        };
        if entries.is_null() || base.is_null() {
            return Err(Fatal::Io(io::ErrorKind::OutOfMemory.into()));
        }
        // SAFETY: `entries` points to BUF_COUNT zeroed, page-aligned entries that are never
        // freed, so they stay valid for as long as the ring can use them.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(entries as u64, BUF_COUNT, BGID, 0)
        }
        .map_err(|e| Fatal::Unavailable(format!("provided-buffer ring: {e}")))?;
        let mut bufs = Self {
            entries,
            base,
            tail: 0,
        };
        for bid in 0..BUF_COUNT {
            bufs.give(bid);
        }
        bufs.publish();
        Ok(bufs)
    }

    /// Puts buffer `bid` at the tail (seen by the kernel after [`BufRing::publish`]).
    fn give(&mut self, bid: u16) {
        let at = usize::from(self.tail & (BUF_COUNT - 1));
        let addr = self.base as u64 + u64::from(bid) * BUF_SIZE as u64;
        // SAFETY: `at` < BUF_COUNT, so the entry is inside the ring allocation. It lies beyond
        // the tail the kernel has seen, so the kernel does not read it until `publish`. Only
        // the entry's own fields are written, never `resv`, which in entry 0 is the tail.
        unsafe {
            let e = self.entries.add(at);
            ptr::addr_of_mut!((*e).addr).write(addr);
            ptr::addr_of_mut!((*e).len).write(BUF_SIZE as u32);
            ptr::addr_of_mut!((*e).bid).write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the buffers given since the last call visible to the kernel.
    fn publish(&self) {
        // SAFETY: the tail is entry 0's `resv`, a 2-byte-aligned u16 inside the allocation,
        // which the kernel reads concurrently: it is written as an atomic, with release
        // ordering so that the entries written before it are seen first.
        let tail = unsafe { &*ptr::addr_of!((*self.entries).resv).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }

    /// The `len` bytes the kernel received into buffer `bid`, if those are valid numbers.
    fn data(&self, bid: u16, len: usize) -> Option<&[u8]> {
        if bid >= BUF_COUNT || len > BUF_SIZE {
            return None;
        }
        // SAFETY: buffer `bid` is inside the allocation (checked above). The kernel filled its
        // first `len` bytes before posting the completion that named it, and does not touch it
        // again until we give it back with `give`, which needs `&mut self` and so cannot
        // happen while this slice lives.
        Some(unsafe { std::slice::from_raw_parts(self.base.add(usize::from(bid) * BUF_SIZE), len) })
    }
}

/// The memory a `sendmsg` in flight points to.
struct SendBuf {
    msg: libc::msghdr,
    iov: Vec<libc::iovec>,
    /// A reference to every frame the iovecs point into, so that none is freed before the
    /// kernel is done, whatever happens to the queue meanwhile.
    frames: Vec<Frame>,
}

impl SendBuf {
    fn new() -> Box<Self> {
        Box::new(Self {
            // SAFETY: all-zero bytes are a valid msghdr (null pointers, zero lengths).
            msg: unsafe { std::mem::zeroed() },
            iov: Vec::new(),
            frames: Vec::new(),
        })
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    #[default]
    Free,
    Open,
    Closing,
}

/// One fixed-file slot and the operations in flight on it.
#[derive(Default)]
struct Slot {
    state: SlotState,
    /// Operations submitted that have not completed for good.
    inflight: u32,
    recv_armed: bool,
    /// A cancel of the receive is in flight (the client went over its rate).
    recv_cancelling: bool,
    /// Bytes received while the client was over its rate, handled when it is resumed (not
    /// empty only while the client is parked).
    stash: Vec<u8>,
    /// The end of the stream came after the stash: close once it is handled.
    eof_after_stash: bool,
    sending: bool,
    /// Boxed so that its address does not change while the kernel uses it.
    send: Option<Box<SendBuf>>,
    /// While closing: what is left to send before the shutdown.
    farewell: Option<TxQueue>,
    shutdown_sent: bool,
    close_sent: bool,
}

struct Engine {
    ring: IoUring,
    bufs: BufRing,
    listener: TcpListener,
    shard: Shard,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Completions taken from the ring, handled after it is released.
    cqes: Vec<(u64, i32, u32)>,
    /// Slots whose multishot receive ended and must be re-armed.
    rearm: Vec<u32>,
    accept_armed: bool,
    /// A submission failure, reported by the main loop.
    error: Option<io::Error>,
}

impl Engine {
    fn run(&mut self) -> io::Error {
        self.arm_accept();
        loop {
            if let Some(e) = self.error.take() {
                return e;
            }
            let entered = match self.shard.next_wake() {
                // Wait no longer than until a client parked for its rate may be read again.
                Some(when) => {
                    let d = when.saturating_duration_since(Instant::now());
                    let ts = types::Timespec::new()
                        .sec(d.as_secs())
                        .nsec(d.subsec_nanos());
                    let args = types::SubmitArgs::new().timespec(&ts);
                    self.ring.submitter().submit_with_args(1, &args)
                }
                None => self.ring.submit_and_wait(1),
            };
            match entered {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EINTR | libc::EBUSY | libc::EAGAIN | libc::ETIME)
                    ) => {}
                Err(e) => return e,
            }
            let mut cqes = std::mem::take(&mut self.cqes);
            cqes.extend(
                self.ring
                    .completion()
                    .map(|c| (c.user_data(), c.result(), c.flags())),
            );
            for &(user_data, res, flags) in &cqes {
                self.complete(user_data, res, flags);
            }
            cqes.clear();
            self.cqes = cqes;
            self.bufs.publish();
            let now = Instant::now();
            while let Some(t) = self.shard.pop_due(now) {
                self.resume(t as u32);
            }
            self.settle();
        }
    }

    /// Queues submissions for the next `io_uring_enter` (entering now if the queue is full).
    /// All of `entries` go in together, so a linked pair is never split.
    fn push(&mut self, entries: &[squeue::Entry]) {
        loop {
            // SAFETY: every entry is built by this engine and points only to memory that
            // outlives its operation: the listener and fixed files are closed only after their
            // operations complete, and a send's msghdr, iovecs and frames live in the slot's
            // boxed `SendBuf`, which is neither changed nor dropped while the send is in
            // flight (`Slot::sending`), nor is the slot reused before all its operations have
            // completed.
            if unsafe { self.ring.submission().push_multiple(entries) }.is_ok() {
                return;
            }
            if let Err(e) = self.ring.submit() {
                if e.raw_os_error() != Some(libc::EINTR) {
                    self.error = Some(e);
                    return;
                }
            }
        }
    }

    fn arm_accept(&mut self) {
        let sqe = opcode::AcceptMulti::new(types::Fd(self.listener.as_raw_fd()))
            .build()
            .user_data(Op::Accept.user_data(0));
        self.push(&[sqe]);
        self.accept_armed = true;
    }

    fn arm_recv(&mut self, slot: u32) {
        let s = &mut self.slots[slot as usize];
        s.recv_armed = true;
        s.inflight += 1;
        let sqe = opcode::RecvMulti::new(types::Fixed(slot), BGID)
            .build()
            .user_data(Op::Recv.user_data(slot));
        self.push(&[sqe]);
    }

    /// Handles one completion.
    fn complete(&mut self, user_data: u64, res: i32, flags: u32) {
        let Some((op, slot)) = Op::decode(user_data) else {
            return;
        };
        if op == Op::Accept {
            if !cqueue::more(flags) {
                self.accept_armed = false;
            }
            if res >= 0 {
                // SAFETY: a successful accept's result is a new descriptor owned by nobody
                // else.
                self.admit(unsafe { OwnedFd::from_raw_fd(res) });
            }
            return;
        }
        let Some(s) = self.slots.get_mut(slot as usize) else {
            return;
        };
        match op {
            Op::Recv => self.on_recv(slot, res, flags),
            Op::Send => self.on_send(slot, res),
            Op::Shutdown | Op::Cancel => {
                s.inflight -= 1;
                self.progress_close(slot);
            }
            Op::Close => {
                // Every other operation on the slot has completed: it can be reused.
                *s = Slot::default();
                self.free.push(slot);
            }
            Op::Accept => {}
        }
    }

    /// Starts serving an accepted connection, or refuses it.
    fn admit(&mut self, fd: OwnedFd) {
        let sock = SockRef::from(&fd);
        let Some(peer) = sock.peer_addr().ok().and_then(|a| a.as_socket()) else {
            return;
        };
        let label = Label::from_addr(peer);
        let registry = self.shard.registry().clone();
        let Ok(id) = registry.admit(label) else {
            net::refuse(sock);
            return;
        };
        let Some(slot) = self.free.pop() else {
            // Every slot is still closing; like a full server.
            registry.remove(id);
            net::refuse(sock);
            return;
        };
        let _ = sock.set_tcp_nodelay(true);
        if self
            .ring
            .submitter()
            .register_files_update(slot, &[fd.as_raw_fd()])
            .is_err()
        {
            registry.remove(id);
            self.free.push(slot);
            return;
        }
        // The fixed table holds its own reference to the socket.
        drop(fd);
        self.slots[slot as usize].state = SlotState::Open;
        self.shard.attach(slot as usize, id, label);
        self.arm_recv(slot);
    }

    fn on_recv(&mut self, slot: u32, res: i32, flags: u32) {
        let t = slot as usize;
        let more = cqueue::more(flags);
        let s = &mut self.slots[t];
        if !more {
            s.recv_armed = false;
            s.recv_cancelling = false;
            s.inflight -= 1;
        }
        let open = s.state == SlotState::Open;
        match res {
            n if n > 0 => {
                if let Some(bid) = cqueue::buffer_select(flags) {
                    if let Some(data) = self.bufs.data(bid, n as usize) {
                        let s = &mut self.slots[t];
                        if self.shard.is_parked(t) || !s.stash.is_empty() {
                            // Over its rate: kchat would not have read this yet.
                            s.stash.extend_from_slice(data);
                        } else {
                            self.shard.receive(t, data);
                        }
                    }
                    self.bufs.give(bid);
                }
            }
            0 if !self.slots[t].stash.is_empty() => self.slots[t].eof_after_stash = true,
            0 => self.shard.close(t, CloseReason::Eof),
            // Every buffer was in use (receive again once they are back), or the receive
            // was cancelled for the client's rate.
            e if e == -libc::ENOBUFS || e == -libc::ECANCELED => {}
            _ => self.shard.close(t, CloseReason::RecvError),
        }
        if open && self.shard.is_open(t) {
            if !more {
                self.rearm.push(slot);
            } else if !self.shard.may_read(t) {
                self.cancel_recv(slot);
            }
        }
        self.progress_close(slot);
    }

    /// Stops the multishot receive of a client over its rate; [`Engine::resume`] arms it
    /// again when the client may be read.
    fn cancel_recv(&mut self, slot: u32) {
        let s = &mut self.slots[slot as usize];
        if !s.recv_armed || s.recv_cancelling {
            return;
        }
        s.recv_cancelling = true;
        s.inflight += 1;
        let sqe = opcode::AsyncCancel::new(Op::Recv.user_data(slot))
            .build()
            .user_data(Op::Cancel.user_data(slot));
        self.push(&[sqe]);
    }

    /// A client that waited for its rate may be read again: first what arrived meanwhile, a
    /// buffer's worth at a time with the rate checked before each (as kchat checks it before
    /// each read), then, once that is all handled, its receive is armed again (in `settle`).
    fn resume(&mut self, slot: u32) {
        let t = slot as usize;
        let s = &mut self.slots[t];
        if s.state != SlotState::Open {
            return;
        }
        let stash = std::mem::take(&mut s.stash);
        let mut at = 0;
        while at < stash.len() && self.shard.is_open(t) && self.shard.may_read(t) {
            let end = stash.len().min(at + BUF_SIZE);
            self.shard.receive(t, &stash[at..end]);
            at = end;
        }
        let s = &mut self.slots[t];
        if at < stash.len() && self.shard.is_open(t) {
            // Over its rate again (parked by `may_read`): the rest waits.
            s.stash = stash[at..].to_vec();
            return;
        }
        if std::mem::take(&mut s.eof_after_stash) {
            self.shard.close(t, CloseReason::Eof);
        }
        self.rearm.push(slot);
    }

    fn on_send(&mut self, slot: u32, res: i32) {
        let t = slot as usize;
        let s = &mut self.slots[t];
        s.inflight -= 1;
        s.sending = false;
        if let Some(buf) = &mut s.send {
            buf.frames.clear();
        }
        let sent = usize::try_from(res).ok();
        match s.state {
            SlotState::Open => match sent {
                Some(n) => {
                    if let Some(q) = self.shard.queue(t) {
                        q.advance(n);
                        if !q.is_empty() && self.shard.is_open(t) {
                            self.send(slot, 0, None);
                        }
                    }
                }
                None if res == -libc::ECANCELED => {}
                None => self.shard.close(t, CloseReason::SendError),
            },
            SlotState::Closing => {
                if let (Some(n), Some(q)) = (sent, &mut s.farewell) {
                    q.advance(n);
                }
                self.progress_close(slot);
            }
            SlotState::Free => {}
        }
    }

    /// Submits one `sendmsg` of the slot's queue (the client's, or its farewell while
    /// closing), with `msg_flags`, followed by `then` linked to it.
    fn send(&mut self, slot: u32, msg_flags: i32, then: Option<squeue::Entry>) {
        let t = slot as usize;
        let s = &mut self.slots[t];
        if s.sending {
            return;
        }
        let queue = match s.state {
            SlotState::Open if self.shard.is_open(t) => self.shard.queue(t),
            SlotState::Open => None,
            SlotState::Closing => s.farewell.as_mut(),
            SlotState::Free => None,
        };
        let Some(queue) = queue else {
            return;
        };
        let buf = s.send.get_or_insert_with(SendBuf::new);
        buf.iov.clear();
        buf.frames.clear();
        for (frame, at) in queue.pending().take(MAX_IOV) {
            buf.iov.push(libc::iovec {
                iov_base: frame[at..].as_ptr() as *mut libc::c_void,
                iov_len: frame.len() - at,
            });
            buf.frames.push(frame.clone());
        }
        if buf.iov.is_empty() {
            if let Some(then) = then {
                self.push(&[then]);
            }
            return;
        }
        let flags = libc::MSG_NOSIGNAL | msg_flags;
        let sqe = if let [one] = buf.iov[..] {
            // One frame: a plain send, with no msghdr or iovec for the kernel to import.
            let len = u32::try_from(one.iov_len).unwrap_or(u32::MAX);
            opcode::Send::new(types::Fixed(slot), one.iov_base as *const u8, len)
                .flags(flags)
                .build()
        } else {
            buf.msg.msg_iov = buf.iov.as_mut_ptr();
            buf.msg.msg_iovlen = buf.iov.len();
            opcode::SendMsg::new(types::Fixed(slot), &buf.msg)
                .flags(flags as u32)
                .build()
        }
        .user_data(Op::Send.user_data(slot));
        s.sending = true;
        s.inflight += 1;
        match then {
            Some(then) => self.push(&[sqe.flags(squeue::Flags::IO_HARDLINK), then]),
            None => self.push(&[sqe]),
        }
    }

    /// After the completions of a batch: re-arms receives, sends what was queued and closes
    /// the clients that must go, until nothing is left to do.
    fn settle(&mut self) {
        loop {
            for slot in std::mem::take(&mut self.rearm) {
                let t = slot as usize;
                let s = &self.slots[t];
                if s.state == SlotState::Open
                    && !s.recv_armed
                    && self.shard.is_open(t)
                    && self.shard.may_read(t)
                {
                    self.arm_recv(slot);
                }
            }
            let mut busy = false;
            while let Some(t) = self.shard.next_dirty() {
                self.send(t as u32, 0, None);
                busy = true;
            }
            while let Some(t) = self.shard.next_dead() {
                self.begin_close(t as u32);
                busy = true;
            }
            if !busy {
                break;
            }
        }
        if !self.accept_armed {
            self.arm_accept();
        }
    }

    /// Takes a dead client out of the chat and starts closing its slot.
    fn begin_close(&mut self, slot: u32) {
        let departed = self.shard.remove(slot as usize);
        let s = &mut self.slots[slot as usize];
        if s.state != SlotState::Open {
            return;
        }
        s.state = SlotState::Closing;
        s.farewell = departed.map(|d| d.farewell);
        if s.sending {
            // It may wait for a reader that never comes: stop it (its completion resumes the
            // close).
            s.inflight += 1;
            let sqe = opcode::AsyncCancel::new(Op::Send.user_data(slot))
                .build()
                .user_data(Op::Cancel.user_data(slot));
            self.push(&[sqe]);
        }
        self.progress_close(slot);
    }

    /// Moves a closing slot on: once no send is in flight, the last word (without waiting)
    /// and the shutdown, which ends the receive; once nothing is in flight, the close.
    fn progress_close(&mut self, slot: u32) {
        let s = &mut self.slots[slot as usize];
        if s.state != SlotState::Closing {
            return;
        }
        if !s.shutdown_sent && !s.sending {
            s.shutdown_sent = true;
            s.inflight += 1;
            let shutdown = opcode::Shutdown::new(types::Fixed(slot), libc::SHUT_RDWR)
                .build()
                .user_data(Op::Shutdown.user_data(slot));
            let cancel_recv = s.recv_armed;
            if s.farewell.as_ref().is_some_and(|q| !q.is_empty()) {
                self.send(slot, libc::MSG_DONTWAIT, Some(shutdown));
            } else {
                self.push(&[shutdown]);
            }
            if cancel_recv {
                self.cancel_recv(slot);
            }
        }
        let s = &mut self.slots[slot as usize];
        if s.shutdown_sent && s.inflight == 0 && !s.close_sent {
            s.close_sent = true;
            let sqe = opcode::Close::new(types::Fixed(slot))
                .build()
                .user_data(Op::Close.user_data(slot));
            self.push(&[sqe]);
        }
    }
}
