// SPDX-License-Identifier: GPL-2.0

//! The server context shared by the listener and every client: parameters, the workqueue, the
//! chat core, the shards, flood control and the log rate limits; and the unload.

use kernel::{
    new_delayed_work, new_mutex, new_work,
    prelude::*,
    sync::{
        atomic::{
            Atomic,
            Relaxed, //
        },
        Arc,
        Mutex, //
    },
    time::{
        msecs_to_jiffies,
        Delta,
        Instant,
        Monotonic, //
    },
    workqueue::{
        DelayedWork,
        Work,
        WorkItem, //
    },
};

use crate::{
    accept::Parked,
    chat::{
        Core,
        Limits, //
    },
    client::Client,
    log::RateLimit,
    pages::LogWriter,
    params::Params,
    shard::{
        Shard,
        SHARDS, //
    },
    throttle::Rate,
    wq::{
        flush_delayed,
        OwnedQueue, //
    }, //
};

/// The throttle work looks again at least this often while clients wait, so a client that is
/// added while the work's timer is set for later waits at most this much too long.
const THROTTLE_TICK_MS: u32 = 10;

/// Clients waiting for their token bucket to refill.
struct Throttled {
    /// Each client with the time (ns on the server's clock) it may read again.
    clients: KVec<(i64, Arc<Client>)>,
    /// Set at unload: nobody is added, the work does not set its timer again.
    closing: bool,
}

/// Connection and error lines: at most this many per [`LOG_INTERVAL_MS`].
const CONN_LOG_BURST: u32 = 200;
/// Client text (`Client Say:`) lines: at most this many per [`LOG_INTERVAL_MS`].
const MSG_LOG_BURST: u32 = 100;
/// Window of the log rate limits.
const LOG_INTERVAL_MS: i64 = 5000;

/// What every part of kchat shares.
///
/// The workqueue lives here, so it is destroyed when the last reference goes. The module's
/// exit path makes that its own reference: [`Server::shutdown`] consumes it, drains the queue
/// (every work item's reference is dropped by then) and checks that nothing else is left.
#[pin_data]
pub(crate) struct Server {
    /// The parameters in force.
    pub(crate) params: Params,
    /// kchat's own workqueue: accept, receive and send work all run here.
    pub(crate) queue: OwnedQueue,
    /// The chat: members, rooms, history, who receives what.
    #[pin]
    pub(crate) core: Core<Client>,
    /// The notes log: a frame for one client alone (a reply, an error, a private message), at
    /// most half a page, is copied here as it is queued (with `zerocopy`), so that it goes out
    /// in the same splice as the client's room messages. Events for many (joins, parts) stay
    /// shared frames, copied when sent. Taken inside a client's `tx` lock; takes no lock.
    #[pin]
    pub(crate) notes: Mutex<LogWriter>,
    /// Rate limit of connection and error lines.
    #[pin]
    pub(crate) conn_log: RateLimit,
    /// Rate limit of client text lines.
    #[pin]
    pub(crate) msg_log: RateLimit,
    /// Set when the module starts unloading: work items stop reading and sending, so that
    /// the unload does not compete with the chat for CPU time.
    closing: Atomic<bool>,
    /// Source of client ids.
    next_id: Atomic<u64>,
    /// When the module was loaded.
    started: Instant<Monotonic>,
    /// The per-client rate limit in force.
    pub(crate) rate: Rate,
    /// Clients over their rate, waiting.
    #[pin]
    throttled: Mutex<Throttled>,
    /// Resumes the throttled clients whose time has come.
    #[pin]
    throttle_work: DelayedWork<Server>,
    /// The shards (see `src/shard.rs`).
    #[pin]
    pub(crate) shards: [Shard; SHARDS],
    /// Accept works waiting for the shard loops to catch up (see `src/accept.rs`).
    #[pin]
    pub(crate) parked: Parked,
    /// IRC connections that have not registered yet (`LUSERS`'s unknown connections).
    pub(crate) irc_unregistered: Atomic<u64>,
    /// Pings quiet IRC clients, drops those that do not answer or never register.
    #[pin]
    irc_tick: DelayedWork<Server, 3>,
    /// The shard loops.
    #[pin]
    shard_work_0: Work<Server, 1>,
    #[pin]
    shard_work_1: Work<Server, 2>,
}

kernel::impl_has_delayed_work! {
    impl HasDelayedWork<Self> for Server { self.throttle_work }
    impl HasDelayedWork<Self, 3> for Server { self.irc_tick }
}

kernel::impl_has_work! {
    impl HasWork<Self, 1> for Server { self.shard_work_0 }
    impl HasWork<Self, 2> for Server { self.shard_work_1 }
}

impl Server {
    /// Allocates the workqueue and the shared state.
    pub(crate) fn new(params: Params) -> Result<Arc<Self>> {
        let queue = OwnedQueue::new_unbound(c"kchat")?;
        let core = Core::new(Limits {
            max_members: params.max_clients,
            max_rooms: params.max_rooms,
            history: params.history,
            notices: params.notices,
            max_text: params.max_msg_len as usize,
            protocols: [true, params.irc_port != 0],
            zerocopy: params.zerocopy,
        })?;
        Arc::pin_init(
            try_pin_init!(Self {
                params,
                queue,
                core <- core,
                notes <- new_mutex!(LogWriter::for_notes(), "Server::notes"),
                conn_log <- RateLimit::new(CONN_LOG_BURST, LOG_INTERVAL_MS),
                msg_log <- RateLimit::new(MSG_LOG_BURST, LOG_INTERVAL_MS),
                closing: Atomic::new(false),
                next_id: Atomic::new(1),
                started: Instant::now(),
                rate: Rate::new(params.max_msg_rate),
                throttled <- new_mutex!(
                    Throttled {
                        clients: KVec::new(),
                        closing: false,
                    },
                    "Server::throttled"
                ),
                throttle_work <- new_delayed_work!("Server::throttle_work"),
                irc_unregistered: Atomic::new(0),
                irc_tick <- new_delayed_work!("Server::irc_tick"),
                shards <- pin_init::pin_init_array_from_fn(Shard::new),
                parked <- Parked::new(),
                shard_work_0 <- new_work!("Server::shard_work"),
                shard_work_1 <- new_work!("Server::shard_work"),
            }),
            GFP_KERNEL,
        )
    }

    /// Whether the module is unloading.
    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Relaxed)
    }

    /// Starts the unload: from now on work items only tear down.
    pub(crate) fn begin_shutdown(&self) {
        self.closing.store(true, Relaxed);
    }

    /// A new client id.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Relaxed)
    }

    /// Time since load.
    pub(crate) fn uptime(&self) -> Delta {
        self.started.elapsed()
    }

    /// The server's clock, for token buckets: ns since load.
    pub(crate) fn now_ns(&self) -> i64 {
        self.uptime().as_nanos()
    }

    /// Parks `client` until `wait_ns` from now; the throttle work then has it read again.
    pub(crate) fn throttle(this: &Arc<Self>, client: &Arc<Client>, wait_ns: i64) -> Result {
        let mut t = this.throttled.lock();
        if t.closing {
            return Ok(());
        }
        t.clients
            .push((this.now_ns() + wait_ns, client.clone()), GFP_KERNEL)?;
        this.core.stats.throttled.add(1, Relaxed);
        Self::arm_throttle(this, wait_ns);
        Ok(())
    }

    /// Sets the throttle work's timer for `wait_ns` from now (at most one tick), unless it is
    /// already set. Called with `throttled` locked, so that unload cannot miss a timer.
    fn arm_throttle(this: &Arc<Self>, wait_ns: i64) {
        let ms = u32::try_from(wait_ns / 1_000_000).unwrap_or(u32::MAX);
        let delay = msecs_to_jiffies(ms.clamp(1, THROTTLE_TICK_MS));
        // An error means the timer is set already; that tick looks at every client.
        let _ = this
            .queue
            .enqueue_delayed::<Arc<Server>, 0>(this.clone(), delay);
    }

    /// Starts the IRC keep-alive tick.
    pub(crate) fn start_irc_timer(this: &Arc<Self>) {
        Self::arm_irc_tick(this);
    }

    /// Sets the IRC tick's timer, unless the unload has begun. Under `throttled`'s lock, as
    /// the throttle timer, so that the unload cannot miss it.
    fn arm_irc_tick(this: &Arc<Self>) {
        let t = this.throttled.lock();
        if t.closing {
            return;
        }
        let ms = crate::irc::tick_ms(this.params.irc_ping);
        let _ = this
            .queue
            .enqueue_delayed::<Arc<Server>, 3>(this.clone(), msecs_to_jiffies(ms));
    }

    /// The unload, after the listener has stopped: disconnect every client, run every pending
    /// work item, and drop the server, destroying its workqueue here, in the module's exit
    /// path. If anything still held a reference, the queue would outlive this call; that is
    /// reported (it would be a bug) rather than waited for.
    pub(crate) fn shutdown(this: Arc<Self>) {
        this.begin_shutdown();
        // No timer may outlive the queue: stop the throttle work, then run it once now if it
        // was set (it sees `closing` and does not set it again).
        let waiting = {
            let mut t = this.throttled.lock();
            t.closing = true;
            core::mem::take(&mut t.clients)
        };
        drop(waiting);
        flush_delayed(&this.throttle_work);
        flush_delayed(&this.irc_tick);
        let mut n = 0u64;
        for c in this.core.close_all() {
            let mut owner = this.shard_owner(c.id).lock();
            Client::shutdown_now(&c, &mut owner);
            n += 1;
        }
        pr_info!("stopping: disconnected {} clients\n", n);
        // Callbacks are detached from every socket, so only our own work items can queue more
        // work now, and they stop once they see their client closing.
        this.queue.drain();
        // The shard loops emptied their lists when they last ran; make sure no list keeps a
        // client (and through it, this server) alive.
        for s in this.shards.iter() {
            s.clear();
        }
        if Arc::into_unique_or_drop(this).is_none() {
            pr_err!("unload: the server is still referenced; its workqueue stays\n");
        }
    }
}

impl WorkItem<3> for Server {
    type Pointer = Arc<Server>;

    /// The IRC tick: ping the quiet, drop the silent and the unregistered, and look again.
    fn run(this: Arc<Server>) {
        if this.is_closing() {
            return;
        }
        crate::irc::tick(&this);
        Self::arm_irc_tick(&this);
    }
}

impl WorkItem for Server {
    type Pointer = Arc<Server>;

    /// The throttle tick: have every client whose time has come read again, and look again
    /// while some still wait.
    fn run(this: Arc<Server>) {
        let now = this.now_ns();
        let mut due = KVec::new();
        {
            let mut t = this.throttled.lock();
            if t.closing {
                return;
            }
            if due.reserve(t.clients.len(), GFP_KERNEL).is_err() {
                // Try again next tick; nobody is lost.
                Self::arm_throttle(&this, 0);
                return;
            }
            let mut next = i64::MAX;
            let mut i = 0;
            while i < t.clients.len() {
                let when = t.clients[i].0;
                if when > now {
                    next = next.min(when);
                    i += 1;
                    continue;
                }
                if let Ok((_, c)) = t.clients.remove(i) {
                    // Within the capacity reserved above: cannot fail.
                    let _ = due.push_within_capacity(c);
                }
            }
            if next != i64::MAX {
                Self::arm_throttle(&this, next - now);
            }
        }
        for c in due.iter() {
            Client::resume(c);
        }
    }
}
