// SPDX-License-Identifier: GPL-2.0

//! One connected client: its socket, its receive and send state, and its life from admission
//! to teardown.
//!
//! A client is an `Arc<Client>`. Its socket callbacks ([`SocketEvents`]) only put it on one of
//! its shard's lists and wake the shard loop (`src/shard.rs`), which reads it
//! ([`client/rx.rs`](rx)), sends to it ([`client/tx.rs`](tx)) or tears it down. To the chat
//! core it is a [`Member`] of the native protocol.
//!
//! Anyone may [`Client::close`] a client (EOF, an error, a protocol violation, a slow
//! consumer); that records the first reason ([`CloseReason`]) and marks it ready, and the
//! shard loop tears it down: detach the callbacks, shut the socket down, leave the chat, log.
//! The socket itself is released when the last reference goes.

mod close;
mod rx;
mod tx;

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
        LockedBy,
        Mutex,
        SpinLock, //
    },
};

use crate::{
    chat::{
        Member,
        RelayBatch, //
    },
    frame::{
        Frame,
        FrameReader, //
    },
    frontend::Protocol,
    irc::{
        self,
        QuitText, //
    },
    label::Label,
    log::{
        kchat_log,
        TRACE_CONNECTIONS, //
    },
    net::{
        PeerAddr,
        Role,
        Socket,
        SocketEvents, //
    },
    server::Server,
    shard::{
        Owner,
        DIRTY,
        READY, //
    },
    throttle::Bucket,
    txqueue::TxQueue,
};

pub(crate) use close::CloseReason;
use close::DisplayReason;
pub(crate) use rx::RX_CHUNK;

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

/// How a client's bytes become messages: its protocol's reader and session.
enum Reader {
    /// Length-prefixed frames.
    Native(FrameReader),
    /// IRC lines, and the registration state.
    Irc(irc::Session),
}

/// The client's receive side.
struct RxState {
    reader: Reader,
    /// Flood control.
    bucket: Bucket,
}

/// [`Client::irc_state`]: an IRC client that has not registered yet.
pub(crate) const IRC_UNREGISTERED: i32 = 0;
/// ... registered, and heard from recently.
pub(crate) const IRC_REGISTERED: i32 = 1;
/// ... registered, and sent a `PING` it has not answered.
pub(crate) const IRC_PINGED: i32 = 2;

/// A connected client.
#[pin_data(PinnedDrop)]
pub(crate) struct Client {
    /// The server this client belongs to.
    server: Arc<Server>,
    /// The connection. While attached, its callbacks hold a reference to this client.
    sock: Socket,
    /// The peer's address: the default label.
    pub(crate) peer: PeerAddr,
    /// Connection number since load: the stats view's id, the order of rosters.
    pub(crate) id: u64,
    /// The protocol it speaks (the port it came in on).
    pub(crate) protocol: Protocol,
    /// When it connected, and when it last sent something (ns on the server's clock).
    pub(crate) started_ns: i64,
    pub(crate) heard_ns: Atomic<i64>,
    /// An IRC client's registration and keep-alive state ([`IRC_UNREGISTERED`], ...).
    pub(crate) irc_state: Atomic<i32>,
    /// Whether this native connection is a link (docs/link.md): set once, by its own
    /// receive path, when the chat core has taken it as one.
    link: Atomic<bool>,
    /// Frame reassembly and flood control: the shard loop's alone.
    rx: LockedBy<RxState, Owner>,
    /// Frames queued for the client: broadcasters push here. Never held across a send.
    #[pin]
    tx: Mutex<TxQueue>,
    /// Frames being sent: the shard loop moves `tx` here whole (a swap) and sends from it,
    /// so broadcasters never wait for a send.
    out: LockedBy<TxQueue, Owner>,
    /// What `out` is charged ([`TxQueue::charge`]), for the slow-consumer check without the
    /// shard's lock.
    out_charge: Atomic<usize>,
    /// The label the chat shows, as this client's relayed frames carry it: a copy of the
    /// chat core's, which is changed (by `/nick`, from the shard loop) before this one.
    #[pin]
    label: SpinLock<Label>,
    /// The client's id in the chat core ([`Member::slot`]).
    member_id: Atomic<u32>,
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
    /// Links in the shard's list of clients with frames to send, and whether the client is
    /// in it (once at most).
    #[pin]
    dirty_links: ListLinks<DIRTY>,
    #[pin]
    dirty_tracker: AtomicTracker<DIRTY>,
    /// Links in the shard's list of clients with something to read, and whether the client
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
    /// A client for a socket fresh from `accept`, not yet attached or in the chat.
    pub(crate) fn new(
        server: Arc<Server>,
        sock: Socket,
        peer: PeerAddr,
        id: u64,
        protocol: Protocol,
    ) -> Result<Arc<Self>> {
        let reader = match protocol {
            Protocol::Native => Reader::Native(FrameReader::new(server.params.max_msg_len)),
            Protocol::Irc => Reader::Irc(irc::Session::new()),
        };
        let rx = RxState {
            reader,
            bucket: Bucket::new(),
        };
        let now = server.now_ns();
        // Both belong to the shard loop that runs this client.
        let rx = LockedBy::new(server.shard_owner(id), rx);
        let out = LockedBy::new(server.shard_owner(id), TxQueue::new());
        let client = Arc::pin_init(
            try_pin_init!(Self {
                rx,
                out,
                server,
                sock,
                peer,
                id,
                protocol,
                started_ns: now,
                heard_ns: Atomic::new(now),
                irc_state: Atomic::new(IRC_UNREGISTERED),
                link: Atomic::new(false),
                tx <- new_mutex!(TxQueue::new(), "Client::tx"),
                out_charge: Atomic::new(0),
                label <- new_spinlock!(Label::from_addr(*peer), "Client::label"),
                member_id: Atomic::new(u32::MAX),
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
        if protocol == Protocol::Irc {
            client.server.irc_unregistered.add(1, Relaxed);
        }
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

    /// The label its relayed messages carry.
    pub(crate) fn label(&self) -> Label {
        *self.label.lock()
    }

    /// Records the label the chat core now shows (after a `/nick`).
    pub(crate) fn set_label(&self, label: Label) {
        *self.label.lock() = label;
    }

    /// Takes `nick`, which the chat core has just given this client in place of `old`, and
    /// logs the change if `log`. Both front ends call it, so the line is the same in both.
    pub(crate) fn renamed(&self, old: Label, nick: Label, log: bool) {
        self.set_label(nick);
        if log {
            kchat_log!(
                self.server,
                conn_log,
                TRACE_CONNECTIONS,
                "Client Nick: {} ({}) is now {}\n",
                old,
                self.peer,
                nick
            );
        }
    }

    /// Bytes waiting in this client's send queue, as the slow-consumer limit counts them
    /// ([`TxQueue::charge`]), for the stats view.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.tx.lock().charge() + self.out_charge.load(Relaxed)
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
            // Unload tore the client down between its admission and now, and its detach
            // ran before this attach: undo it, or the socket would keep the client alive.
            // (`close` is set before `torn_down`, and the callback lock orders the two
            // sides: if the teardown's detach came first, this sees `torn_down`.)
            drop(this.sock.detach(this));
            return;
        }
        Self::queue_rx(this.clone());
    }

    /// Refuses the client: one notice, sent if the socket takes it now, and no more.
    pub(crate) fn refuse(&self, notice: &[u8]) {
        let _ = self.sock.send(notice);
        self.sock.shutdown();
    }

    /// Whether this connection is a link.
    pub(crate) fn is_link(&self) -> bool {
        self.link.load(Relaxed)
    }

    /// Marks this connection a link (the chat core has taken it as one).
    pub(crate) fn set_link(&self) {
        self.link.store(true, Relaxed);
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

    /// The shard loop's call for a client on its ready list: read what there is (a budget's
    /// worth; if more may remain the client goes back on the list, behind the others), or tear
    /// it down if it is closing. `buf` is the shard's receive buffer ([`RX_CHUNK`] bytes is
    /// plenty), `batch` its relay batch, where the chat messages read go.
    pub(crate) fn on_ready(
        this: &Arc<Client>,
        owner: &mut Owner,
        buf: &mut [u8],
        batch: &mut RelayBatch<Client>,
    ) {
        // At unload the exit path tears down every client itself.
        if !this.is_closing() && !this.server.is_closing() {
            match Self::receive(this, owner, buf, batch) {
                Ok(false) => {}
                Ok(true) => Self::queue_rx(this.clone()),
                Err(reason) => {
                    this.mark_closing(reason);
                }
            }
        }
        if this.is_closing() {
            // Its last messages go out before its `left` notice.
            this.server.core.publish(batch);
            Self::teardown(this, owner);
        }
    }

    /// Disconnects the client: detach the callbacks, send a last notice if the reason has
    /// one, shut the socket down, leave the chat and log. Runs once, from the shard loop or
    /// at unload; must not run in a callback.
    fn teardown(this: &Arc<Self>, owner: &mut Owner) {
        if this.torn_down.xchg(true, Full) {
            return;
        }
        let server = &this.server;
        let reason =
            CloseReason::unpack(this.close.load(Relaxed)).unwrap_or(CloseReason::ServerShutdown);
        // From here on no callback can see this client; the reference they held is dropped at
        // the end of this function, never the last one (the caller holds another).
        let attached = this.sock.detach(this);
        if let CloseReason::TooLong(len) = reason {
            server.core.stats.frames_rejected.add(1, Relaxed);
            this.last_word(
                owner,
                Frame::text(fmt!(
                    "! message too long ({} > {})",
                    len,
                    server.params.max_msg_len
                ))
                .ok(),
            );
        }
        if reason == CloseReason::LinkRefused {
            this.last_word(owner, Frame::text(fmt!("! link refused")).ok());
        }
        // Why it left, as IRC members sharing a room with it are told.
        let mut why = QuitText::new();
        let session = match &this.rx.access(owner).reader {
            Reader::Irc(s) => Some(s),
            Reader::Native(_) => None,
        };
        irc::quit_reason(&mut why, reason, server.params.irc_ping, session);
        if this.protocol == Protocol::Irc {
            if this.irc_state.load(Relaxed) == IRC_UNREGISTERED {
                server.irc_unregistered.fetch_sub(1, Relaxed);
            }
            // What was queued (an answer to `QUIT`, say) and the `ERROR` that closes every
            // IRC connection, if the peer can still read.
            // Not to a peer that is gone, nor to a slow consumer: what is queued for it is
            // what it could not take.
            let last = !matches!(
                reason,
                CloseReason::Eof
                    | CloseReason::RecvError(_)
                    | CloseReason::SendError(_)
                    | CloseReason::SlowConsumer(_)
            );
            if last {
                this.last_word(owner, irc::render::closing_link(this.peer, &why).ok());
            }
        }
        this.sock.shutdown();
        this.clear_queues(owner);
        let label = server
            .core
            .remove(&**this, why.as_bytes())
            .unwrap_or_else(|| this.label());
        kchat_log!(
            server,
            conn_log,
            TRACE_CONNECTIONS,
            "Client Disconnected: {} ({}): {}\n",
            label,
            this.peer,
            DisplayReason(reason, server.params.max_msg_len)
        );
        drop(attached);
    }

    /// Disconnects at unload, from the module's exit path: no work item may be left to do it.
    pub(crate) fn shutdown_now(this: &Arc<Self>, owner: &mut Owner) {
        this.mark_closing(CloseReason::ServerShutdown);
        Self::teardown(this, owner);
    }
}

#[pinned_drop]
impl PinnedDrop for Client {
    fn drop(self: Pin<&mut Self>) {
        ALLOCATED.fetch_sub(1, Relaxed);
    }
}

impl Member for Client {
    fn conn_id(&self) -> u64 {
        self.id
    }

    fn slot(&self) -> &Atomic<u32> {
        &self.member_id
    }

    fn is_closing(&self) -> bool {
        Client::is_closing(self)
    }

    fn protocol(&self) -> Protocol {
        self.protocol
    }

    fn peer(&self) -> PeerAddr {
        self.peer
    }

    fn deliver<'a>(this: &Arc<Self>, frames: impl Iterator<Item = &'a Arc<Frame>>) -> (u64, u64) {
        Self::enqueue_frames(this, frames, false)
    }

    fn deliver_private(this: &Arc<Self>, frame: &Arc<Frame>) -> bool {
        Self::enqueue(this, frame)
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
