// SPDX-License-Identifier: GPL-2.0

//! The shard loop: the work item that reads every client with news, publishes what they said,
//! then sends to every client with frames waiting.
//!
//! Socket callbacks put a client on its shard's ready list (something to read, or a teardown)
//! or dirty list (frames to send) and wake the loop. The loop reads first, so that each send
//! carries everything relayed in the meantime: the busier the server, the more each send
//! carries, as in a user-space event loop.
//!
//! What a shard's clients keep for the loop alone (frame reassembly, the frames being sent) is
//! [`LockedBy`](kernel::sync::LockedBy) the shard's [`Owner`]: the loop holds it for as long
//! as it runs, and so does the unload while it tears clients down.

use kernel::{
    list::{
        List,
        ListArc,
        ListItem,
        TryNewListArc, //
    },
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
};

use crate::{
    chat::RelayBatch,
    client::{
        Client,
        RX_CHUNK, //
    },
    net::IoVecs,
    server::Server,
};

/// Shards: each has a list of clients to read, a list of clients to send to, and a loop (a
/// work item) that works through them; a client always belongs to the same shard. Measured on
/// the 2-vCPU test guests, one shard is faster than two: one loop reads every ready client
/// before it sends, so each send carries more (59 frames per send in fanout-1000 against 45),
/// and the other vCPU is left to the clients (the load generator takes one whole vCPU).
pub(crate) const SHARDS: usize = 1;

/// List id of the shard lists of clients with frames to send.
pub(crate) const DIRTY: u64 = 0;
/// List id of the shard lists of clients with something to read (or to tear down).
pub(crate) const READY: u64 = 1;

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

/// Clients waiting on a shard's ready list past which the accept path admits nobody new (see
/// [`Server::admitting`]): a sixteenth of what one pass reads at most. An honest client's turn
/// waits behind at most about this many newcomers; 256 let the full churns' honest pings reach
/// 5.5 s (native) and 6.0 s (IRC) on the debug kernel, 64 holds them to 2.6 and 1.5 s, and a
/// calm mass connect (10,000 clients in steps of 1,000) still never waits.
const ADMIT_BACKLOG: usize = READ_BATCH / 16;

/// The right to run a shard's clients: what they keep for their loop is locked by this.
pub(crate) struct Owner {
    /// The shard's number (and what makes the owner a real, addressable value).
    shard: usize,
}

/// What a shard loop works with, kept from run to run: its receive buffer, its relay batch
/// and its send table.
pub(crate) struct Scratch {
    buf: KVVec<u8>,
    batch: RelayBatch<Client>,
    iov: IoVecs,
}

/// One shard's lists, owner and buffers.
#[pin_data]
pub(crate) struct Shard {
    /// Clients with something to read (or to tear down), and clients with frames to send.
    /// Filled from process context and from socket callbacks (softirq), hence the
    /// IRQ-disabling locks.
    #[pin]
    ready: SpinLockIrq<List<Client, READY>>,
    #[pin]
    dirty: SpinLockIrq<List<Client, DIRTY>>,
    /// How many clients are on `ready`, changed under its lock: how far behind the loop is.
    backlog: Atomic<usize>,
    /// Taken first by the loop and by the unload.
    #[pin]
    owner: Mutex<Owner>,
    /// The loop's buffers.
    #[pin]
    scratch: Mutex<Scratch>,
}

impl Shard {
    pub(crate) fn new(shard: usize) -> impl PinInit<Self> {
        pin_init!(Self {
            ready <- kernel::new_spinlock_irq!(List::new(), "Shard::ready"),
            dirty <- kernel::new_spinlock_irq!(List::new(), "Shard::dirty"),
            backlog: Atomic::new(0),
            owner <- kernel::new_mutex!(Owner { shard }, "Shard::owner"),
            scratch <- kernel::new_mutex!(
                Scratch {
                    // Allocated on first use, by the loop.
                    buf: KVVec::new(),
                    batch: RelayBatch::new(),
                    iov: IoVecs::small(),
                },
                "Shard::scratch"
            ),
        })
    }

    /// The first client on the ready list, taken off it.
    fn pop_ready(&self) -> Option<ListArc<Client, READY>> {
        let mut list = self.ready.lock();
        let entry = list.pop_front()?;
        self.backlog.fetch_sub(1, Relaxed);
        Some(entry)
    }

    /// The lock of what this shard's clients keep for the loop.
    pub(crate) fn owner(&self) -> &Mutex<Owner> {
        &self.owner
    }

    /// Empties both lists (at unload, once the loop can no longer run), so that no list keeps a
    /// client alive.
    pub(crate) fn clear(&self) {
        // Taken out under the lock, dropped after it: dropping a client may sleep.
        let ready = {
            let mut list = self.ready.lock();
            self.backlog.store(0, Relaxed);
            core::mem::take(&mut *list)
        };
        let dirty = core::mem::take(&mut *self.dirty.lock());
        drop((ready, dirty));
    }
}

impl Server {
    /// The shard a client belongs to.
    fn shard_of(id: u64) -> usize {
        (id % SHARDS as u64) as usize
    }

    /// The owner lock of the shard of client `id`.
    pub(crate) fn shard_owner(&self, id: u64) -> &Mutex<Owner> {
        self.shards[Self::shard_of(id)].owner()
    }

    /// Puts `client` on its shard's ready list (read it, or tear it down), unless it is on it
    /// already. Callable from any context, socket callbacks included.
    pub(crate) fn mark_ready(&self, client: ArcBorrow<'_, Client>) {
        let shard = Self::shard_of(client.id);
        let s = &self.shards[shard];
        Self::enlist(&s.ready, Some(&s.backlog), client, shard);
    }

    /// Whether the accept path may admit a client now: no shard has more than
    /// [`ADMIT_BACKLOG`] clients waiting to be read.
    ///
    /// Admitting is cheap and runs beside the loop, on another CPU; each admission is work for
    /// the loop (a first read, a join notice to the lobby) and, when the peer goes away, a
    /// teardown. Clients that connect, say something and leave faster than the loop tears them
    /// down would otherwise pile up, every join and leave reaching more members, every honest
    /// client's turn coming later (measured: 88 s pings in the full room churn on the debug
    /// kernel). Those not admitted wait in the listen backlog, and beyond it in their SYN
    /// retries, as with a user-space server whose loop is busy; the accept work parks, and the
    /// loop that catches up wakes it.
    pub(crate) fn admitting(&self) -> bool {
        self.shards
            .iter()
            .all(|s| s.backlog.load(Relaxed) <= ADMIT_BACKLOG)
    }

    /// Puts `client` on its shard's dirty list (send what is queued for it), unless it is on
    /// it already. Callable from any context, `sk_write_space` included.
    pub(crate) fn mark_dirty(&self, client: ArcBorrow<'_, Client>) {
        let shard = Self::shard_of(client.id);
        Self::enlist(&self.shards[shard].dirty, None, client, shard);
    }

    /// Appends `client` to `list` (counted in `len` if given) and wakes the shard's loop if
    /// the list was empty. The tracker admits one entry per client and list: a client already
    /// waiting is not added twice.
    fn enlist<const ID: u64>(
        list: &SpinLockIrq<List<Client, ID>>,
        len: Option<&Atomic<usize>>,
        client: ArcBorrow<'_, Client>,
        shard: usize,
    ) where
        Client: ListItem<ID> + TryNewListArc<ID>,
    {
        let Some(entry) = ListArc::<Client, ID>::try_from_arc_borrow(client) else {
            return;
        };
        let was_empty = {
            let mut list = list.lock();
            let was_empty = list.is_empty();
            list.push_back(entry);
            if let Some(len) = len {
                len.add(1, Relaxed);
            }
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
    /// the recipients), then send to every client dirty at that moment, and again, until both
    /// lists are empty.
    fn run_shard(this: &Arc<Self>, shard: usize) {
        let s = &this.shards[shard];
        let mut owner = s.owner.lock();
        debug_assert_eq!(owner.shard, shard);
        let mut scratch = s.scratch.lock();
        let Scratch { buf, batch, iov } = &mut *scratch;
        // The loop's buffers, allocated by its first run and kept; under memory pressure,
        // small ones (slower, but the chat goes on).
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
        let stats = &this.core.stats;
        loop {
            let mut idle = true;
            let start = stats.relayed_msgs.load(Relaxed);
            let clients = stats.clients_now.load(Relaxed);
            let budget = READ_DELIVERIES.max(clients.saturating_mul(READ_DELIVERIES_PER_CLIENT));
            let began = this.now_ns();
            for _ in 0..READ_BATCH {
                // What the batch holds counts as delivered to everyone else (an upper bound:
                // with rooms, to fewer).
                let waiting = (batch.len() as u64).saturating_mul(clients.saturating_sub(1));
                if stats.relayed_msgs.load(Relaxed).wrapping_sub(start) + waiting >= budget
                    || this.now_ns() - began >= READ_TIME_NS
                {
                    break;
                }
                let Some(entry) = s.pop_ready() else {
                    break;
                };
                idle = false;
                // Off the list first: news that arrives while it is read marks it again.
                Client::on_ready(&entry.into_arc(), &mut owner, buf, batch);
            }
            // Caught up (and always on the way to idle): let a waiting accept path go on.
            // Once its entry is seen here or this pass is seen by its own second look (see
            // `Acceptor::park`), no waiting accept work is forgotten.
            if s.backlog.load(Relaxed) <= ADMIT_BACKLOG {
                this.parked.wake();
            }
            this.core.publish(batch);
            // The clients dirty now, and no more: those marked while they are sent to (by the
            // accept work or the IRC tick on another CPU, by `sk_write_space`, or by a spent
            // budget) wait for the next pass, after a read pass. Popping until the list is
            // empty let a busy accept path keep one send pass going for most of a second
            // (measured: 635 sends to 66 clients in 850 ms), while the ready clients waited.
            let mut dirty = core::mem::take(&mut *s.dirty.lock());
            while let Some(entry) = dirty.pop_front() {
                idle = false;
                Client::flush_queue(&entry.into_arc(), &mut owner, iov);
            }
            if idle {
                return;
            }
        }
    }
}

impl kernel::workqueue::WorkItem<1> for Server {
    type Pointer = Arc<Server>;

    fn run(this: Arc<Server>) {
        Self::run_shard(&this, 0);
    }
}

impl kernel::workqueue::WorkItem<2> for Server {
    type Pointer = Arc<Server>;

    fn run(this: Arc<Server>) {
        // Queued only when there is a second shard.
        Self::run_shard(&this, SHARDS - 1);
    }
}
