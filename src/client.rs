// SPDX-License-Identifier: GPL-2.0

//! One connected client: its socket, receive and send state, and the work items that run it.
//!
//! A client is an `Arc<Client>`. Its socket callbacks ([`SocketEvents`]) only queue work on
//! the server's workqueue:
//!
//! - the **rx work** reads with `MSG_DONTWAIT` until `EAGAIN`, feeds the [`FrameReader`] and
//!   dispatches each complete payload (chat message, `/nick`, `/who`); it also runs the
//!   client's teardown, so that a disconnect is handled in one place whoever causes it;
//! - the **tx work** writes the [`TxQueue`] to the socket, many frames per send, until the
//!   socket is full (then `sk_write_space` queues it again) or the queue is empty.
//!
//! Anyone may [`Client::close`] a client (EOF, an error, a protocol violation, a slow
//! consumer); that records the first reason and queues the rx work, which tears down: detach
//! the callbacks, shut the socket down, leave the registry, log. The socket itself is released
//! when the last reference goes, after every queued work item has run.

use kernel::{
    new_mutex, new_spinlock, new_work,
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
    workqueue::{
        Work,
        WorkItem, //
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
        Role,
        Socket,
        SocketAddrV4,
        SocketEvents,
        MAX_SEND_BUFS, //
    },
    proto::{
        self,
        Command,
        Escaped,
        Label, //
    },
    registry::NickRefused,
    server::Server,
    throttle::Bucket,
    txqueue::TxQueue,
};

/// Work item id of the receive (and teardown) work.
const RX: u64 = 0;
/// Work item id of the send work.
const TX: u64 = 1;

/// The smallest frame that carries a message: a header and one byte. (A keep-alive is 4 bytes
/// but costs no token.)
const MIN_MESSAGE: usize = 5;

/// Bytes read per `recv` call.
const RX_CHUNK: usize = 16 * 1024;
/// Bytes one rx work run reads before it requeues itself, so that one busy client does not
/// hold a worker while others wait.
const RX_BUDGET: usize = 256 * 1024;
/// Bytes one tx work run sends before it requeues itself.
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

/// The client's receive side; only its rx work touches it.
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
    /// Frame reassembly; locked only by the rx work (the lock makes `Client` `Sync`).
    #[pin]
    rx: Mutex<RxState>,
    /// Frames waiting for the socket: broadcasters push, the tx work sends. Also held across
    /// the send, so frames go out whole and in order.
    #[pin]
    tx: Mutex<TxQueue>,
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
    #[pin]
    rx_work: Work<Client, RX>,
    #[pin]
    tx_work: Work<Client, TX>,
}

kernel::impl_has_work! {
    impl HasWork<Self, RX> for Client { self.rx_work }
    impl HasWork<Self, TX> for Client { self.tx_work }
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
                label <- new_spinlock!(Label::from_addr(*peer), "Client::label"),
                close: Atomic::new(0),
                torn_down: Atomic::new(false),
                throttled: Atomic::new(false),
                bytes_in: Atomic::new(0),
                bytes_out: Atomic::new(0),
                msgs_in: Atomic::new(0),
                rx_work <- new_work!("Client::rx_work"),
                tx_work <- new_work!("Client::tx_work"),
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
        self.tx.lock().bytes()
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

    /// Disconnects the client for `reason`: the rx work tears it down. Only the first reason
    /// counts; returns whether it was this one.
    pub(crate) fn close(this: &Arc<Self>, reason: CloseReason) -> bool {
        if !this.mark_closing(reason) {
            return false;
        }
        Self::queue_rx(this.clone());
        true
    }

    fn queue_rx(this: Arc<Self>) {
        let queue = &this.server.queue;
        // An error means the work is already queued; it runs anyway and sees the news.
        let _ = queue.enqueue::<Arc<Self>, RX>(this.clone());
    }

    fn queue_tx(this: Arc<Self>) {
        let queue = &this.server.queue;
        // An error means the work is already queued and will send what is there.
        let _ = queue.enqueue::<Arc<Self>, TX>(this.clone());
    }

    /// Queues `frame` for sending. A client whose queue would pass `max_queue_bytes` is
    /// disconnected as a slow consumer instead; nobody waits for it. A single frame larger
    /// than the limit is still accepted into an empty queue.
    pub(crate) fn enqueue(this: &Arc<Self>, frame: &Arc<Frame>) -> bool {
        let max = usize::try_from(this.server.params.max_queue_bytes).unwrap_or(usize::MAX);
        let mut tx = this.tx.lock();
        if this.is_closing() {
            return false;
        }
        let queued = tx.bytes();
        if queued > 0 && queued + frame.len() > max {
            drop(tx);
            let reason = CloseReason::SlowConsumer(u32::try_from(queued).unwrap_or(u32::MAX));
            if Self::close(this, reason) {
                this.server.registry.stats.slow_consumers.add(1, Relaxed);
            }
            return false;
        }
        let was_empty = tx.is_empty();
        if tx.push(frame.clone()).is_err() {
            drop(tx);
            Self::close(this, CloseReason::NoMemory);
            return false;
        }
        drop(tx);
        if was_empty {
            Self::queue_tx(this.clone());
        }
        true
    }

    /// Sends from `tx` until it is empty, the socket is full, or `budget` bytes went out.
    /// Returns whether the budget ran out with frames left.
    fn flush(&self, tx: &mut TxQueue, mut budget: usize) -> Result<bool, CloseReason> {
        while !tx.is_empty() {
            if budget == 0 {
                return Ok(true);
            }
            let sent = match self.sock.send_all(tx.front(MAX_SEND_BUFS)) {
                Ok(n) => n,
                Err(e) if e == EAGAIN => return Ok(false),
                Err(e) => return Err(CloseReason::SendError(e.to_errno())),
            };
            tx.advance(sent);
            self.bytes_out.add(sent as u64, Relaxed);
            budget = budget.saturating_sub(sent);
        }
        Ok(false)
    }

    /// Reads until `EAGAIN` (or the budget), dispatching every complete frame. Returns whether
    /// the budget ran out with data perhaps left.
    fn receive(this: &Arc<Self>) -> Result<bool, CloseReason> {
        let mut buf =
            KVVec::from_elem(0u8, RX_CHUNK, GFP_KERNEL).map_err(|_| CloseReason::NoMemory)?;
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
            let mut input = &buf[..n];
            while !input.is_empty() {
                let (used, payload) = rx.reader.feed(input).map_err(|e| match e {
                    FrameError::TooLong(len) => CloseReason::TooLong(len),
                    FrameError::NoMemory => CloseReason::NoMemory,
                })?;
                input = &input[used..];
                if let Some(payload) = payload {
                    rx.bucket.charge(rate, server.now_ns());
                    Self::dispatch(this, payload)?;
                }
            }
        }
    }

    /// Acts on one payload: a command, or a chat message for the others.
    fn dispatch(this: &Arc<Self>, payload: Payload) -> Result<(), CloseReason> {
        let server = &this.server;
        match proto::parse(payload.bytes()) {
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
                server.registry.relay(this, &frame);
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
    /// one, shut the socket down, leave the registry and log. Runs once, from the rx work or
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
        let mut tx = self.tx.lock();
        if tx.push(frame).is_ok() {
            let _ = self.flush(&mut tx, TX_BUDGET);
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
        // FIN or RST: the rx work's next read reports it (0 or an error).
        Self::queue_rx(this.into());
    }

    fn write_space(this: ArcBorrow<'_, Self>) {
        Self::queue_tx(this.into());
    }
}

impl WorkItem<RX> for Client {
    type Pointer = Arc<Client>;

    fn run(this: Arc<Client>) {
        // At unload the exit path tears down every registered client itself.
        if !this.is_closing() && !this.server.is_closing() {
            match Self::receive(&this) {
                Ok(false) => {}
                Ok(true) => Self::queue_rx(this.clone()),
                Err(reason) => {
                    this.mark_closing(reason);
                }
            }
        }
        if this.is_closing() {
            Self::teardown(&this);
        }
    }
}

impl WorkItem<TX> for Client {
    type Pointer = Arc<Client>;

    fn run(this: Arc<Client>) {
        let mut tx = this.tx.lock();
        if this.is_closing() || this.server.is_closing() {
            return;
        }
        match this.flush(&mut tx, TX_BUDGET) {
            Ok(false) => {}
            Ok(true) => {
                drop(tx);
                Self::queue_tx(this.clone());
            }
            Err(reason) => {
                drop(tx);
                Self::close(&this, reason);
            }
        }
    }
}
