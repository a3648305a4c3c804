// SPDX-License-Identifier: GPL-2.0

//! The server context shared by the listener and every client: parameters, the workqueue, the
//! registry, the log rate limits.

use kernel::{
    prelude::*,
    sync::{
        atomic::{
            Atomic,
            Relaxed, //
        },
        Arc,
    },
    time::{
        Delta,
        Instant,
        Monotonic, //
    },
};

use crate::{client::Client, log::RateLimit, params::Params, registry::Registry, wq::OwnedQueue};

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

    /// Disconnects every client and runs every pending work item. The listener must already
    /// be stopped; afterwards nothing of kchat is reachable from any socket.
    pub(crate) fn shutdown(&self) {
        self.begin_shutdown();
        let clients = self.registry.close_all();
        pr_info!("stopping: disconnecting {} clients\n", clients.len());
        for c in clients.iter() {
            Client::shutdown_now(c);
        }
        // Callbacks are detached from every socket, so only our own work items can queue more
        // work now, and they stop once they see their client closing.
        self.queue.drain();
        // The last references to the clients go here, releasing their sockets.
        drop(clients);
    }
}
