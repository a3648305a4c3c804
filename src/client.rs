// SPDX-License-Identifier: GPL-2.0

//! One connected client: its socket, receive and send state, and the work items that run it.
//!
//! A client is an `Arc<Client>`. Its socket callbacks ([`SocketEvents`]) only put it on one
//! of its server shard's lists and wake the shard's loop (a work item on the server's
//! workqueue; see `Server`):
//!
//! - **receiving** ([`Client::on_ready`]): read with `MSG_DONTWAIT` until `EAGAIN` (or a
//!   budget), feed the [`FrameReader`] and dispatch each complete payload (chat message,
//!   `/nick`, `/who`); a closing client is torn down here instead, so that a disconnect is
//!   handled in one place whoever causes it;
//! - **sending** ([`Client::flush_queue`]): a client whose [`TxQueue`] gets its first frame, or
//!   whose socket has room again (`sk_write_space`), goes on the dirty list, and the loop
//!   writes everything queued for it, many frames per send. The loop reads every ready client
//!   before it sends, so frames from many senders pile up per recipient: the busier the
//!   server, the more each send carries, as in a user-space event loop.
//!
//! Anyone may [`Client::close`] a client (EOF, an error, a protocol violation, a slow
//! consumer); that records the first reason and marks it ready, and the loop tears down: detach
//! the callbacks, shut the socket down, leave the registry, log. The socket itself is released
//! when the last reference goes, after every queued work item has run.

use kernel::{
    list::{
        AtomicTracker,
        ListLinks,
        TryNewListArc, //
    },
    new_mutex, new_spinlock,
    prelude::*,
    sync::{
        atomic::{
            Atomic,
            Full,
            Relaxed, //
        },
        Arc,
        ArcBorrow,
        Mutex,
        SpinLock, //
    },
};

use crate::{
    frame::{
        Frame,
        FrameError,
        FrameReader,
        Payload, //
    },
    log::{
        kchat_log,
        TRACE_CONNECTIONS,
        TRACE_MESSAGES, //
    },
    net::{
        IoVecs, //
        Role,
        Socket,
        SocketAddrV4,
        SocketEvents,
    },
    proto::{
        self,
        Command,
        Escaped,
        Label, //
    },
    registry::{
        NickRefused,
        RelayBatch, //
    },
    server::Server,
    throttle::Bucket,
    txqueue::TxQueue,
};

/// List id of the server's lists of clients with frames to send.
pub(crate) const DIRTY: u64 = 0;
/// List id of the server's lists of clients with something to read (or to tear down).
pub(crate) const READY: u64 = 1;

/// The smallest frame that carries a message: a header and one byte. (A keep-alive is 4 bytes
/// but costs no token.)
const MIN_MESSAGE: usize = 5;

/// Bytes read per `recv` call: the size of a shard's receive buffer.
pub(crate) const RX_CHUNK: usize = 16 * 1024;
/// Bytes read from one client per turn before it goes to the back of the ready list, so that
/// one busy client does not hold up the others (and what it sent is relayed before more is
/// read).
const RX_BUDGET: usize = RX_CHUNK;
/// Bytes sent to one client per turn before it goes to the back of the dirty list.
const TX_BUDGET: usize = 1024 * 1024;

/// Why a client is disconnected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// The peer closed its end (FIN) between frames.
    Eof,
    /// The peer closed its end in the middle of a frame.
    EofMidFrame,
    /// Receiving failed with this errno (for example `ECONNRESET`).
    RecvError(i32),
    /// Sending failed with this errno.
    SendError(i32),
    /// A frame declared this length, above `max_msg_len`.
    TooLong(u32),
    /// The send queue held this many bytes and the next frame would pass `max_queue_bytes`.
    SlowConsumer(u32),
    /// Memory for the client's data could not be allocated.
    NoMemory,
    /// The module is being unloaded.
    ServerShutdown,
}

impl CloseReason {
    /// Packs the reason into one word, so that it can be set atomically (0 = not closing).
    fn pack(self) -> u64 {
        let (code, detail): (u64, u64) = match self {
            Self::Eof => (1, 0),
            Self::EofMidFrame => (2, 0),
            Self::RecvError(e) => (3, u64::from(e.unsigned_abs())),
            Self::SendError(e) => (4, u64::from(e.unsigned_abs())),
            Self::TooLong(n) => (5, u64::from(n)),
            Self::SlowConsumer(n) => (6, u64::from(n)),
            Self::NoMemory => (7, 0),
            Self::ServerShutdown => (8, 0),
        };
        code | detail << 8
    }

    /// The reason packed by [`CloseReason::pack`], or `None` for 0.
    fn unpack(word: u64) -> Option<Self> {
        let detail = word >> 8;
        let errno = -i32::try_from(detail).unwrap_or(i32::MAX);
        let small = u32::try_from(detail).unwrap_or(u32::MAX);
        Some(match word & 0xff {
            1 => Self::Eof,
            2 => Self::EofMidFrame,
            3 => Self::RecvError(errno),
            4 => Self::SendError(errno),
            5 => Self::TooLong(small),
            6 => Self::SlowConsumer(small),
            7 => Self::NoMemory,
            8 => Self::ServerShutdown,
            _ => return None,
        })
    }
}

/// Client objects allocated and not yet freed, across the module (for the stats view and the
/// leak checks of the tests).
static ALLOCATED: Atomic<u64> = Atomic::new(0);

/// Client objects alive now.
pub(crate) fn allocated() -> u64 {
    ALLOCATED.load(Relaxed)
}

/// Bytes of one client object as allocated: the `Client` and the `Arc`'s reference count.
pub(crate) fn object_size() -> usize {
    size_of::<Client>() + size_of::<kernel::sync::Refcount>()
}

/// The client's receive side; only its shard loop touches it.
struct RxState {
    reader: FrameReader,
    /// Flood control.
    bucket: Bucket,
}

/// A connected client.
#[pin_data(PinnedDrop)]
pub(crate) struct Client {
    /// The server this client belongs to.
    server: Arc<Server>,
    /// The connection. While attached, its callbacks hold a reference to this client.
    sock: Socket,
    /// The peer's address: the default label.
    pub(crate) peer: SocketAddrV4,
    /// Connection number since load, for the stats view.
    pub(crate) id: u64,
    /// Frame reassembly; locked only by the shard loop (the lock makes `Client` `Sync`).
    #[pin]
    rx: Mutex<RxState>,
    /// Frames queued for the client: broadcasters push here. Never held across a send.
    #[pin]
    tx: Mutex<TxQueue>,
    /// Frames being sent: the client's shard loop moves `tx` here whole (a swap) and sends
    /// from it, so broadcasters never wait for a send. Only that loop and the teardown lock it.
    #[pin]
    out: Mutex<TxQueue>,
    /// Unsent bytes in `out`, for the slow-consumer check without taking its lock.
    out_bytes: Atomic<usize>,
    /// How others see this client. Changed only under the registry lock, so a nick is checked
    /// for uniqueness and set in one step.
    #[pin]
    label: SpinLock<Label>,
    /// Why the client is being disconnected ([`CloseReason::pack`]); 0 while connected.
    close: Atomic<u64>,
    /// Whether the teardown has run.
    torn_down: Atomic<bool>,
    /// Whether the client waits in the server's throttle list (flood control).
    throttled: Atomic<bool>,
    /// Bytes received from the client.
    pub(crate) bytes_in: Atomic<u64>,
    /// Bytes sent to the client.
    pub(crate) bytes_out: Atomic<u64>,
    /// Chat messages the client sent.
    pub(crate) msgs_in: Atomic<u64>,
    /// Links in the server's list of clients with frames to send, and whether the client is
    /// in it (once at most).
    #[pin]
    dirty_links: ListLinks<DIRTY>,
    #[pin]
    dirty_tracker: AtomicTracker<DIRTY>,
    /// Links in the server's list of clients with something to read, and whether the client
    /// is in it.
    #[pin]
    ready_links: ListLinks<READY>,
    #[pin]
    ready_tracker: AtomicTracker<READY>,
}

kernel::list::impl_list_arc_safe! {
    impl ListArcSafe<0> for Client { tracked_by dirty_tracker: AtomicTracker<DIRTY>; }
    impl ListArcSafe<1> for Client { tracked_by ready_tracker: AtomicTracker<READY>; }
}

kernel::list::impl_list_item! {
    impl ListItem<0> for Client { using ListLinks { self.dirty_links }; }
    impl ListItem<1> for Client { using ListLinks { self.ready_links }; }
}

impl Client {
    /// A client for a socket fresh from `accept`, not yet attached or registered.
    pub(crate) fn new(
        server: Arc<Server>,
        sock: Socket,
        peer: SocketAddrV4,
        id: u64,
    ) -> Result<Arc<Self>> {
        let max_len = server.params.max_msg_len;
        let client = Arc::pin_init(
            try_pin_init!(Self {
                server,
                sock,
                peer,
                id,
                rx <- new_mutex!(
                    RxState {
                        reader: FrameReader::new(max_len),
                        bucket: Bucket::new(),
                    },
                    "Client::rx"
                ),
                tx <- new_mutex!(TxQueue::new(), "Client::tx"),
                out <- new_mutex!(TxQueue::new(), "Client::out"),
                out_bytes: Atomic::new(0),
                label <- new_spinlock!(Label::from_addr(*peer), "Client::label"),
                close: Atomic::new(0),
                torn_down: Atomic::new(false),
                throttled: Atomic::new(false),
                bytes_in: Atomic::new(0),
                bytes_out: Atomic::new(0),
                msgs_in: Atomic::new(0),
                dirty_links <- ListLinks::new(),
                dirty_tracker <- AtomicTracker::new(),
                ready_links <- ListLinks::new(),
                ready_tracker <- AtomicTracker::new(),
            }),
            GFP_KERNEL,
        )?;
        ALLOCATED.add(1, Relaxed);
        Ok(client)
    }

    /// The throttle work's call: the client's bucket has refilled, read again.
    pub(crate) fn resume(this: &Arc<Self>) {
        this.throttled.store(false, Relaxed);
        Self::queue_rx(this.clone());
    }

    /// The server this client belongs to.
    pub(crate) fn server(&self) -> &Arc<Server> {
        &self.server
    }

    /// The label others see now.
    pub(crate) fn label(&self) -> Label {
        *self.label.lock()
    }

    /// Changes the label; the registry calls this with its lock held.
    pub(crate) fn set_label(&self, label: Label) {
        *self.label.lock() = label;
    }

    /// Bytes waiting in this client's send queue (for the stats view).
    pub(crate) fn queued_bytes(&self) -> usize {
        self.tx.lock().bytes() + self.out_bytes.load(Relaxed)
    }

    /// Memory charged to the socket's send queue, data not yet acknowledged included (for the
    /// stats view).
    pub(crate) fn socket_queued(&self) -> usize {
        self.sock.send_queued()
    }

    /// Installs the callbacks and looks once for data that arrived before them.
    pub(crate) fn start(this: &Arc<Self>) {
        if this.sock.attach(this.clone(), Role::Stream).is_err() {
            // A socket fresh from `accept` has no owner yet; this cannot happen.
            Self::close(this, CloseReason::NoMemory);
            return;
        }
        if this.torn_down.load(Relaxed) {
            // Unload tore the client down between its registration and now, and its detach
            // ran before this attach: undo it, or the socket would keep the client alive.
            // (`close` is set before `torn_down`, and the callback lock orders the two
            // sides: if the teardown's detach came first, this sees `torn_down`.)
            drop(this.sock.detach::<Self>());
            return;
        }
        Self::queue_rx(this.clone());
    }

    /// Refuses the client: one notice, sent if the socket takes it now, and no more.
    pub(crate) fn refuse(&self, notice: &[u8]) {
        let _ = self.sock.send(notice);
        self.sock.shutdown();
    }

    /// Whether the client is being disconnected.
    pub(crate) fn is_closing(&self) -> bool {
        self.close.load(Relaxed) != 0
    }

    /// Records why the client goes, if no reason was recorded yet; true if this call did.
    fn mark_closing(&self, reason: CloseReason) -> bool {
        self.close.cmpxchg(0, reason.pack(), Full).is_ok()
    }

    /// Disconnects the client for `reason`: its shard loop tears it down. Only the first reason
    /// counts; returns whether it was this one.
    pub(crate) fn close(this: &Arc<Self>, reason: CloseReason) -> bool {
        if !this.mark_closing(reason) {
            return false;
        }
        Self::queue_rx(this.clone());
        true
    }

    /// Has the client's shard loop look at it: read, or tear down if closing.
    fn queue_rx(this: Arc<Self>) {
        this.server.mark_ready(this.as_arc_borrow());
    }

    /// Queues `frame` for sending. A client whose queue would pass `max_queue_bytes` is
    /// disconnected as a slow consumer instead; nobody waits for it. A single frame larger
    /// than the limit is still accepted into an empty queue.
    pub(crate) fn enqueue(this: &Arc<Self>, frame: &Arc<Frame>) -> bool {
        Self::enqueue_frames(this, core::iter::once(frame)).0 == 1
    }

    /// Queues, in order, every frame of a relay batch that this client did not send itself,
    /// under one lock; returns how many frames it took and their bytes. Limits as
    /// [`Client::enqueue`]: on a slow consumer the frames after the limit are not queued.
    pub(crate) fn enqueue_batch(
        this: &Arc<Self>,
        batch: &[(Arc<Client>, Arc<Frame>)],
    ) -> (u64, u64) {
        let others = batch
            .iter()
            .filter(|(from, _)| !Arc::ptr_eq(from, this))
            .map(|(_, frame)| frame);
        Self::enqueue_frames(this, others)
    }

    fn enqueue_frames<'a>(
        this: &Arc<Self>,
        frames: impl Iterator<Item = &'a Arc<Frame>>,
    ) -> (u64, u64) {
        let max = usize::try_from(this.server.params.max_queue_bytes).unwrap_or(usize::MAX);
        let mut tx = this.tx.lock();
        if this.is_closing() {
            return (0, 0);
        }
        let out = this.out_bytes.load(Relaxed);
        let was_empty = tx.is_empty();
        let (mut n, mut bytes) = (0, 0);
        for frame in frames {
            let queued = tx.bytes() + out;
            if queued > 0 && queued + frame.len() > max {
                drop(tx);
                let reason = CloseReason::SlowConsumer(u32::try_from(queued).unwrap_or(u32::MAX));
                if Self::close(this, reason) {
                    this.server.registry.stats.slow_consumers.add(1, Relaxed);
                }
                return (n, bytes);
            }
            if tx.push(frame.clone()).is_err() {
                drop(tx);
                Self::close(this, CloseReason::NoMemory);
                return (n, bytes);
            }
            n += 1;
            bytes += frame.len() as u64;
        }
        drop(tx);
        if was_empty && n > 0 {
            this.server.mark_dirty(this.as_arc_borrow());
        }
        (n, bytes)
    }

    /// The shard loop's call: sends what is queued, until nothing is left, the socket is full
    /// (`sk_write_space` marks the client dirty again) or the budget is spent (then it is
    /// marked dirty again at once, behind the others). Frames queued while it sends wait in
    /// `tx` for the next round, which they make larger.
    pub(crate) fn flush_queue(this: &Arc<Self>, iov: &mut IoVecs) {
        let mut out = this.out.lock();
        let mut budget = TX_BUDGET;
        let result = loop {
            if this.is_closing() || this.server.is_closing() {
                return;
            }
            if out.is_empty() {
                let mut tx = this.tx.lock();
                if tx.is_empty() {
                    break Ok(false);
                }
                core::mem::swap(&mut *tx, &mut *out);
            }
            let before = out.bytes();
            let r = this.flush(iov, &mut out, budget);
            budget = budget.saturating_sub(before - out.bytes());
            this.out_bytes.store(out.bytes(), Relaxed);
            match r {
                // Sent everything: look for frames queued meanwhile.
                Ok(false) if out.is_empty() => continue,
                other => break other,
            }
        };
        drop(out);
        match result {
            Ok(false) => {}
            Ok(true) => this.server.mark_dirty(this.as_arc_borrow()),
            Err(reason) => {
                Self::close(this, reason);
            }
        }
    }

    /// Sends from `tx` until it is empty, the socket is full, or `budget` bytes went out.
    /// Returns whether the budget ran out with frames left.
    fn flush(
        &self,
        iov: &mut IoVecs,
        tx: &mut TxQueue,
        mut budget: usize,
    ) -> Result<bool, CloseReason> {
        while !tx.is_empty() {
            if budget == 0 {
                return Ok(true);
            }
            let sent = match self.sock.send_all(iov, tx.front(IoVecs::BATCH)) {
                Ok(n) => n,
                Err(e) if e == EAGAIN => return Ok(false),
                Err(e) => return Err(CloseReason::SendError(e.to_errno())),
            };
            let frames = tx.advance(sent);
            let stats = &self.server.registry.stats;
            stats.sends.add(1, Relaxed);
            stats.sent_frames.add(frames as u64, Relaxed);
            self.bytes_out.add(sent as u64, Relaxed);
            budget = budget.saturating_sub(sent);
        }
        Ok(false)
    }

    /// Reads until `EAGAIN` (or the budget), dispatching every complete frame. Returns whether
    /// the budget ran out with data perhaps left.
    fn receive(
        this: &Arc<Self>,
        buf: &mut [u8],
        batch: &mut RelayBatch,
    ) -> Result<bool, CloseReason> {
        let server = &this.server;
        let rate = server.rate;
        let mut rx = this.rx.lock();
        let mut budget = RX_BUDGET;
        loop {
            if this.is_closing() || server.is_closing() {
                return Ok(false);
            }
            if budget == 0 {
                return Ok(true);
            }
            // Over its rate: stop reading (TCP pushes back on the client alone) until the
            // throttle work resumes it. Near it, read only as much as can hold the messages it
            // may still send (a message is at least 5 bytes), so a burst is never exceeded.
            let allowance = rx.bucket.allowance(rate, server.now_ns());
            if allowance == 0 {
                let wait = rx.bucket.wait(rate, server.now_ns()).max(1);
                if !this.throttled.xchg(true, Full) {
                    Server::throttle(server, this, wait).map_err(|_| CloseReason::NoMemory)?;
                }
                return Ok(false);
            }
            let room = usize::try_from(allowance.saturating_mul(MIN_MESSAGE as u64))
                .unwrap_or(usize::MAX)
                .min(buf.len());
            let n = match this.sock.recv(&mut buf[..room]) {
                Ok(0) if rx.reader.mid_frame() => return Err(CloseReason::EofMidFrame),
                Ok(0) => return Err(CloseReason::Eof),
                Ok(n) => n,
                Err(e) if e == EAGAIN => return Ok(false),
                Err(e) => return Err(CloseReason::RecvError(e.to_errno())),
            };
            budget = budget.saturating_sub(n);
            this.bytes_in.add(n as u64, Relaxed);
            server.registry.stats.recvs.add(1, Relaxed);
            let mut input = &buf[..n];
            while !input.is_empty() {
                let (used, payload) = rx.reader.feed(input).map_err(|e| match e {
                    FrameError::TooLong(len) => CloseReason::TooLong(len),
                    FrameError::NoMemory => CloseReason::NoMemory,
                })?;
                input = &input[used..];
                if let Some(payload) = payload {
                    rx.bucket.charge(rate, server.now_ns());
                    Self::dispatch(this, payload, batch)?;
                }
            }
        }
    }

    /// Acts on one payload: a command, or a chat message for the others (into the shard
    /// loop's relay batch). Before a command, the batch goes out: a `/nick` notice or a
    /// `/who` answer comes after the messages read before it.
    fn dispatch(
        this: &Arc<Self>,
        payload: Payload,
        batch: &mut RelayBatch,
    ) -> Result<(), CloseReason> {
        let server = &this.server;
        let command = proto::parse(payload.bytes());
        if !matches!(command, Command::Chat) {
            batch.publish(&server.registry);
        }
        match command {
            Command::Chat => {
                let label = this.label();
                kchat_log!(
                    server,
                    msg_log,
                    TRACE_MESSAGES,
                    "Client Say: {}: {}\n",
                    label,
                    Escaped(payload.bytes())
                );
                this.msgs_in.add(1, Relaxed);
                let frame = Frame::relay(payload, &label).map_err(|_| CloseReason::NoMemory)?;
                let frame = Arc::new(frame, GFP_KERNEL).map_err(|_| CloseReason::NoMemory)?;
                batch.push(&server.registry, this, frame);
            }
            Command::Nick(name) => Self::nick(this, name),
            Command::Who => match server.registry.who() {
                Ok(frame) => {
                    if let Ok(frame) = Arc::new(frame, GFP_KERNEL) {
                        Self::enqueue(this, &frame);
                    }
                }
                Err(_) => return Err(CloseReason::NoMemory),
            },
        }
        Ok(())
    }

    /// `/nick NAME`: the registry checks and sets it, this client hears of a refusal.
    fn nick(this: &Arc<Self>, name: &[u8]) {
        let server = &this.server;
        match server.registry.set_nick(this, name) {
            Ok(Some(old)) => kchat_log!(
                server,
                conn_log,
                TRACE_CONNECTIONS,
                "Client Nick: {} ({}) is now {}\n",
                old,
                this.peer,
                this.label()
            ),
            Ok(None) => {}
            Err(NickRefused::Taken) => {
                Self::send_error(this, fmt!("nick {} is taken", Escaped(name)))
            }
            Err(NickRefused::Invalid(e)) => Self::send_error(this, fmt!("{}", e.message())),
        }
    }

    /// Sends `! text` to this client only.
    pub(crate) fn send_error(this: &Arc<Self>, text: kernel::fmt::Arguments<'_>) {
        if let Ok(frame) =
            Frame::text(fmt!("! {}", text)).and_then(|f| Ok(Arc::new(f, GFP_KERNEL)?))
        {
            Self::enqueue(this, &frame);
        }
    }

    /// Disconnects the client: detach the callbacks, send a last notice if the reason has
    /// one, shut the socket down, leave the registry and log. Runs once, from the shard loop or
    /// at unload; must not run in a callback.
    fn teardown(this: &Arc<Self>) {
        if this.torn_down.xchg(true, Full) {
            return;
        }
        let server = &this.server;
        let reason =
            CloseReason::unpack(this.close.load(Relaxed)).unwrap_or(CloseReason::ServerShutdown);
        // From here on no callback can see this client; the reference they held is dropped at
        // the end of this function, never the last one (the caller holds another).
        let attached = this.sock.detach::<Self>();
        if let CloseReason::TooLong(len) = reason {
            server.registry.stats.frames_rejected.add(1, Relaxed);
            this.last_word(fmt!(
                "! message too long ({} > {})",
                len,
                server.params.max_msg_len
            ));
        }
        this.sock.shutdown();
        this.out.lock().clear();
        this.out_bytes.store(0, Relaxed);
        this.tx.lock().clear();
        let label = this.label();
        kchat_log!(
            server,
            conn_log,
            TRACE_CONNECTIONS,
            "Client Disconnected: {} ({}): {}\n",
            label,
            this.peer,
            DisplayReason(reason, server.params.max_msg_len)
        );
        server.registry.remove(this, &label);
        drop(attached);
    }

    /// Tries once, without waiting, to send a final notice after what is already queued.
    fn last_word(&self, args: kernel::fmt::Arguments<'_>) {
        let Ok(frame) = Frame::text(args).and_then(|f| Ok(Arc::new(f, GFP_KERNEL)?)) else {
            return;
        };
        let mut out = self.out.lock();
        let mut tx = self.tx.lock();
        if tx.push(frame).is_err() {
            return;
        }
        // What is being sent goes first, then what waits, then the notice. One try, with the
        // few buffers a small table holds: whatever does not fit now is not waited for.
        let mut iov = IoVecs::small();
        if self.flush(&mut iov, &mut out, TX_BUDGET) == Ok(false) && out.is_empty() {
            let _ = self.flush(&mut iov, &mut tx, TX_BUDGET);
        }
    }

    /// Disconnects at unload, from the module's exit path: no work item may be left to do it.
    pub(crate) fn shutdown_now(this: &Arc<Self>) {
        this.mark_closing(CloseReason::ServerShutdown);
        Self::teardown(this);
    }
}

#[pinned_drop]
impl PinnedDrop for Client {
    fn drop(self: Pin<&mut Self>) {
        ALLOCATED.fetch_sub(1, Relaxed);
    }
}

/// A close reason as the disconnect log line shows it.
struct DisplayReason(CloseReason, u32);

impl kernel::fmt::Display for DisplayReason {
    fn fmt(&self, f: &mut kernel::fmt::Formatter<'_>) -> kernel::fmt::Result {
        match self.0 {
            CloseReason::Eof => f.write_str("end of stream"),
            CloseReason::EofMidFrame => f.write_str("end of stream in the middle of a frame"),
            CloseReason::RecvError(e) if e == ECONNRESET.to_errno() => {
                f.write_str("connection reset")
            }
            CloseReason::RecvError(e) => f.write_fmt(fmt!("receive error {e}")),
            CloseReason::SendError(e) if e == EPIPE.to_errno() || e == ECONNRESET.to_errno() => {
                f.write_str("connection reset (on send)")
            }
            CloseReason::SendError(e) => f.write_fmt(fmt!("send error {e}")),
            CloseReason::TooLong(n) => f.write_fmt(fmt!("message too long ({n} > {})", self.1)),
            CloseReason::SlowConsumer(n) => f.write_fmt(fmt!("slow consumer ({n} bytes queued)")),
            CloseReason::NoMemory => f.write_str("out of memory"),
            CloseReason::ServerShutdown => f.write_str("server shutting down"),
        }
    }
}

impl SocketEvents for Client {
    fn data_ready(this: ArcBorrow<'_, Self>) {
        Self::queue_rx(this.into());
    }

    fn state_change(this: ArcBorrow<'_, Self>) {
        // FIN or RST: the next read reports it (0 or an error).
        Self::queue_rx(this.into());
    }

    fn write_space(this: ArcBorrow<'_, Self>) {
        this.server.mark_dirty(this);
    }
}

impl Client {
    /// The shard loop's call for a client on its ready list: read what there is (a budget's
    /// worth; if more may remain the client goes back on the list, behind the others), or tear
    /// it down if it is closing.
    /// `buf` is the shard's receive buffer ([`RX_CHUNK`] bytes is plenty), `batch` its relay
    /// batch, where the chat messages read go.
    pub(crate) fn on_ready(this: &Arc<Client>, buf: &mut [u8], batch: &mut RelayBatch) {
        // At unload the exit path tears down every registered client itself.
        if !this.is_closing() && !this.server.is_closing() {
            match Self::receive(this, buf, batch) {
                Ok(false) => {}
                Ok(true) => Self::queue_rx(this.clone()),
                Err(reason) => {
                    this.mark_closing(reason);
                }
            }
        }
        if this.is_closing() {
            // Its last messages go out before its `left` notice.
            batch.publish(&this.server.registry);
            Self::teardown(this);
        }
    }
}
