// SPDX-License-Identifier: GPL-2.0

//! The server context shared by the listener and every client: parameters, the workqueue, the
//! registry, the log rate limits.

use kernel::{
    list::{
        List,
        ListArc,
        ListItem,
        TryNewListArc, //
    },
    new_delayed_work, new_mutex, new_spinlock_irq, new_work,
    prelude::*,
    sync::{
        atomic::{
            Atomic,
            Relaxed, //
        },
        Arc,
        ArcBorrow,
        Mutex,
        SpinLockIrq, //
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
    client::{
        Client,
        DIRTY,
        READY,
        RX_CHUNK, //
    },
    log::RateLimit,
    net::IoVecs,
    params::Params,
    registry::{
        Registry, //
        RelayBatch,
    },
    throttle::Rate,
    wq::{
        flush_delayed,
        OwnedQueue, //
    }, //
};

/// Shards: each has a list of clients to read, a list of clients to send to, and a loop (a
/// work item) that works through them; a client always belongs to the same shard. Measured on
/// the 2-vCPU test guests, one shard is faster than two: one loop reads every ready client
/// before it sends, so each send carries more (59 frames per send in fanout-1000 against 45),
/// and the other vCPU is left to the clients (the load generator takes one whole vCPU).
const SHARDS: usize = 1;

/// Clients a shard loop reads before it sends what they relayed: the larger, the more frames
/// each send carries, the longer a reply may wait.
const READ_BATCH: usize = 1024;

/// Deliveries (a message queued to one recipient) after which a shard loop stops reading and
/// sends, whatever [`READ_BATCH`] says: with many recipients, a few messages are a lot of work,
/// and nobody should wait for all of it before the first send (while the loop reads, the
/// clients on the other CPU have nothing to receive).
const READ_DELIVERIES: u64 = 262_144;

/// ... but at least this many deliveries per connected client: a send pass costs one
/// `kernel_sendmsg` per dirty client however little it carries, so with many clients each pass
/// must carry more (measured on `idle-10000`: 10,100 clients, 100 senders).
const READ_DELIVERIES_PER_CLIENT: u64 = 64;

/// ... and at most this long (ns) reading before it sends: reading is not always cheap
/// (a disconnect, a client dribbling a byte at a time), and with many such clients 1,024
/// of them took seconds in the fuzz case on the debug kernel, while what was queued for the
/// honest clients waited.
const READ_TIME_NS: i64 = 50_000_000;

/// The throttle work looks again at least this often while clients wait, so a client that is
/// added while the work's timer is set for later waits at most this much too long.
const THROTTLE_TICK_MS: u32 = 10;

/// What a shard loop works with, kept from run to run: its receive buffer, its relay batch
/// and its send table.
struct Scratch {
    buf: KVVec<u8>,
    batch: RelayBatch,
    iov: IoVecs,
}

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
/// Dropping the last reference destroys the workqueue, so that must happen in the module's
/// exit path after [`Server::shutdown`], never in a work item: every client holds a reference,
/// and the exit path drains the queue and drops the clients before its own reference.
#[pin_data]
pub(crate) struct Server {
    /// The parameters in force.
    pub(crate) params: Params,
    /// kchat's own workqueue: accept, receive and send work all run here.
    pub(crate) queue: OwnedQueue,
    /// The connected clients.
    #[pin]
    pub(crate) registry: Registry,
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
    /// Per shard: clients with something to read (or to tear down), and clients with frames
    /// to send. Filled from process context and from socket callbacks (softirq), hence the
    /// IRQ-disabling locks.
    #[pin]
    ready: [SpinLockIrq<List<Client, READY>>; SHARDS],
    #[pin]
    dirty: [SpinLockIrq<List<Client, DIRTY>>; SHARDS],
    /// Each shard loop's buffers (locked by that loop only, for as long as it runs).
    #[pin]
    scratch: [Mutex<Scratch>; SHARDS],
    /// The shard loops.
    #[pin]
    shard_work_0: Work<Server, 1>,
    #[pin]
    shard_work_1: Work<Server, 2>,
}

kernel::impl_has_delayed_work! {
    impl HasDelayedWork<Self> for Server { self.throttle_work }
}

kernel::impl_has_work! {
    impl HasWork<Self, 1> for Server { self.shard_work_0 }
    impl HasWork<Self, 2> for Server { self.shard_work_1 }
}

impl Server {
    /// Allocates the workqueue and the shared state.
    pub(crate) fn new(params: Params) -> Result<Arc<Self>> {
        let queue = OwnedQueue::new_unbound(c"kchat")?;
        Arc::pin_init(
            try_pin_init!(Self {
                params,
                queue,
                registry <- Registry::new(*params),
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
                ready <- pin_init::pin_init_array_from_fn(|_| {
                    new_spinlock_irq!(List::new(), "Server::ready")
                }),
                dirty <- pin_init::pin_init_array_from_fn(|_| {
                    new_spinlock_irq!(List::new(), "Server::dirty")
                }),
                scratch <- pin_init::pin_init_array_from_fn(|_| {
                    new_mutex!(
                        Scratch {
                            // Allocated on first use, by the loop.
                            buf: KVVec::new(),
                            batch: RelayBatch::new(),
                            iov: IoVecs::small(),
                        },
                        "Server::scratch"
                    )
                }),
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

    /// The shard a client belongs to.
    fn shard(client: &Client) -> usize {
        (client.id % SHARDS as u64) as usize
    }

    /// Puts `client` on its shard's ready list (read it, or tear it down), unless it is on it
    /// already. Callable from any context, socket callbacks included.
    pub(crate) fn mark_ready(&self, client: ArcBorrow<'_, Client>) {
        Self::enlist(&self.ready, client);
    }

    /// Puts `client` on its shard's dirty list (send what is queued for it), unless it is on
    /// it already. Callable from any context, `sk_write_space` included.
    pub(crate) fn mark_dirty(&self, client: ArcBorrow<'_, Client>) {
        Self::enlist(&self.dirty, client);
    }

    /// Appends `client` to its shard's list among `lists` and wakes the shard's loop if the
    /// list was empty. The tracker admits one entry per client and list: a client already
    /// waiting is not added twice.
    fn enlist<const ID: u64>(
        lists: &[SpinLockIrq<List<Client, ID>>; SHARDS],
        client: ArcBorrow<'_, Client>,
    ) where
        Client: ListItem<ID> + TryNewListArc<ID>,
    {
        let shard = Self::shard(&client);
        let Some(entry) = ListArc::<Client, ID>::try_from_arc_borrow(client) else {
            return;
        };
        let was_empty = {
            let mut list = lists[shard].lock();
            let was_empty = list.is_empty();
            list.push_back(entry);
            was_empty
        };
        if was_empty {
            Self::wake(client.server(), shard);
        }
    }

    /// Queues shard `shard`'s loop. An error means it is queued already; a loop that is
    /// running looks at its lists again before it returns, and queueing it while it runs
    /// makes it run once more, so no news is missed.
    fn wake(this: &Arc<Self>, shard: usize) {
        let _ = match shard {
            0 => this.queue.enqueue::<Arc<Server>, 1>(this.clone()),
            _ => this.queue.enqueue::<Arc<Server>, 2>(this.clone()),
        };
    }

    /// A shard's loop: read up to [`READ_BATCH`] ready clients (their messages are queued to
    /// the recipients), then send to every dirty client, and again, until both lists are
    /// empty.
    fn run_shard(this: &Arc<Self>, shard: usize) {
        // The loop's buffers, allocated by its first run and kept; under memory pressure, small
        // ones (slower, but the chat goes on).
        let mut scratch = this.scratch[shard].lock();
        let Scratch { buf, batch, iov } = &mut *scratch;
        if buf.is_empty() {
            if let Ok(b) = KVVec::from_elem(0u8, RX_CHUNK, GFP_KERNEL | __GFP_NOWARN) {
                *buf = b;
            }
            if let Ok(i) = IoVecs::new(GFP_KERNEL | __GFP_NOWARN) {
                *iov = i;
            }
        }
        let mut stack = [0u8; 512];
        let buf: &mut [u8] = if buf.is_empty() { &mut stack } else { buf };
        loop {
            let mut idle = true;
            let relayed = &this.registry.stats.relayed_msgs;
            let start = relayed.load(Relaxed);
            let clients = this.registry.stats.clients_now.load(Relaxed);
            let budget = READ_DELIVERIES.max(clients.saturating_mul(READ_DELIVERIES_PER_CLIENT));
            let began = this.now_ns();
            for _ in 0..READ_BATCH {
                // Both shards count here: the budget is shared, which is as well. What the
                // batch holds counts as delivered to everyone else.
                let waiting = (batch.len() as u64).saturating_mul(clients.saturating_sub(1));
                if relayed.load(Relaxed).wrapping_sub(start) + waiting >= budget
                    || this.now_ns() - began >= READ_TIME_NS
                {
                    break;
                }
                let Some(entry) = this.ready[shard].lock().pop_front() else {
                    break;
                };
                idle = false;
                // Off the list first: news that arrives while it is read marks it again.
                Client::on_ready(&entry.into_arc(), buf, batch);
            }
            batch.publish(&this.registry);
            loop {
                // Not `while let`: its scrutinee's lock guard would live through the body.
                let Some(entry) = this.dirty[shard].lock().pop_front() else {
                    break;
                };
                idle = false;
                Client::flush_queue(&entry.into_arc(), iov);
            }
            if idle {
                return;
            }
        }
    }

    /// Parks `client` until `wait_ns` from now; the throttle work then queues its rx work.
    pub(crate) fn throttle(this: &Arc<Self>, client: &Arc<Client>, wait_ns: i64) -> Result {
        let mut t = this.throttled.lock();
        if t.closing {
            return Ok(());
        }
        t.clients
            .push((this.now_ns() + wait_ns, client.clone()), GFP_KERNEL)?;
        this.registry.stats.throttled.add(1, Relaxed);
        Self::arm_throttle(this, wait_ns);
        Ok(())
    }

    /// Sets the throttle work's timer for `wait_ns` from now (at most one tick), unless it is
    /// already set. Called with `throttled` locked, so that unload cannot miss a timer.
    fn arm_throttle(this: &Arc<Self>, wait_ns: i64) {
        let ms = u32::try_from(wait_ns / 1_000_000).unwrap_or(u32::MAX);
        let delay = msecs_to_jiffies(ms.clamp(1, THROTTLE_TICK_MS));
        // An error means the timer is set already; that tick looks at every client.
        let _ = this.queue.enqueue_delayed(this.clone(), delay);
    }

    /// Disconnects every client and runs every pending work item. The listener must already
    /// be stopped; afterwards nothing of kchat is reachable from any socket.
    pub(crate) fn shutdown(&self) {
        self.begin_shutdown();
        // No timer may outlive the queue: stop the throttle work, then run it once now if it
        // was set (it sees `closing` and does not set it again).
        let waiting = {
            let mut t = self.throttled.lock();
            t.closing = true;
            core::mem::take(&mut t.clients)
        };
        drop(waiting);
        flush_delayed(&self.throttle_work);
        let clients = self.registry.close_all();
        pr_info!("stopping: disconnecting {} clients\n", clients.len());
        for c in clients.iter() {
            Client::shutdown_now(c);
        }
        // Callbacks are detached from every socket, so only our own work items can queue more
        // work now, and they stop once they see their client closing.
        self.queue.drain();
        // The shard loops emptied their lists when they last ran; make sure no list keeps a
        // client (and through it, this server) alive.
        for shard in 0..SHARDS {
            // Taken out under the lock, dropped after it: dropping a client may sleep.
            let ready = core::mem::take(&mut *self.ready[shard].lock());
            let dirty = core::mem::take(&mut *self.dirty[shard].lock());
            drop((ready, dirty));
        }
        // The last references to the clients go here, releasing their sockets.
        drop(clients);
    }
}

impl WorkItem for Server {
    type Pointer = Arc<Server>;

    /// The throttle tick: queue the rx work of every client whose time has come, and look
    /// again while some still wait.
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

impl WorkItem<1> for Server {
    type Pointer = Arc<Server>;

    fn run(this: Arc<Server>) {
        Self::run_shard(&this, 0);
    }
}

impl WorkItem<2> for Server {
    type Pointer = Arc<Server>;

    fn run(this: Arc<Server>) {
        Self::run_shard(&this, 1);
    }
}
