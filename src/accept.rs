// SPDX-License-Identifier: GPL-2.0

//! The accept path: the listening socket, its callback, and the work that admits clients.
//!
//! The listener's `sk_data_ready` queues the accept work, which calls `kernel_accept` with
//! `O_NONBLOCK` until `EAGAIN` (one wakeup may stand for several connections) and admits each
//! new socket: the chat (its join notice and the lobby's history), callbacks, a first read.
//! While a shard loop is behind (see [`Server::admitting`]) it admits nobody: it parks
//! ([`Parked`]) until a loop has caught up and wakes it; new connections wait in the listen
//! backlog meanwhile.

use kernel::{
    new_mutex, new_work,
    prelude::*,
    sync::{
        atomic::Relaxed,
        Arc,
        ArcBorrow,
        Mutex, //
    },
    workqueue::{
        Work,
        WorkItem, //
    },
};

use crate::{
    chat::AddError,
    client::Client,
    frontend::Protocol,
    label::Label,
    log::{
        kchat_log,
        TRACE_CONNECTIONS,
        TRACE_ERRORS, //
    },
    net::{
        PeerAddr,
        Role,
        Socket,
        SocketEvents, //
    },
    netns::Net,
    server::Server,
    wq, //
};

/// Connections one accept work run admits before it requeues itself, so that a connection
/// storm does not starve the clients' own work.
const ACCEPT_BUDGET: usize = 128;

/// The notice a connection gets when `max_clients` are connected: a frame of 13 bytes, or
/// an IRC `ERROR`.
fn server_full(protocol: Protocol) -> &'static [u8] {
    match protocol {
        Protocol::Native => b"\x0d\x00\x00\x00! server full",
        Protocol::Irc => b"ERROR :Closing Link: (Server full)\r\n",
    }
}

/// The listening socket and its accept work.
#[pin_data]
pub(crate) struct Acceptor {
    server: Arc<Server>,
    sock: Socket,
    /// The protocol of the clients it admits.
    protocol: Protocol,
    /// Set when the module stops listening; the accept work is queued again, and parked,
    /// only under this lock and only if it is not set, so that nothing queues it once the
    /// listener is gone.
    #[pin]
    stopped: Mutex<bool>,
    #[pin]
    work: Work<Acceptor>,
}

kernel::impl_has_work! {
    impl HasWork<Self> for Acceptor { self.work }
}

impl Acceptor {
    fn is_stopped(&self) -> bool {
        *self.stopped.lock()
    }

    /// Queues the accept work again, unless the listener is stopping.
    fn requeue(this: Arc<Self>) {
        let stopped = this.stopped.lock();
        if *stopped {
            return;
        }
        // An error means it is queued already, which is as good.
        let _ = this.server.queue.enqueue(this.clone());
        drop(stopped);
    }

    /// Waits for the shard loops: parks the accept work until a loop wakes it
    /// ([`Parked::wake`]), unless the listener is stopping.
    fn park(this: Arc<Self>) {
        let parked = &this.server.parked;
        {
            let stopped = this.stopped.lock();
            if *stopped {
                return;
            }
            // Dropped after the locks: it is this acceptor again, or nothing.
            let old = parked.put(this.clone());
            drop(stopped);
            drop(old);
        }
        // A loop that caught up before the entry was there did not see it; what it did is
        // seen now (the parked lock orders it): look again. A loop still behind sees the
        // entry when it catches up.
        if this.server.admitting() {
            if let Some(me) = parked.take(this.protocol) {
                Self::requeue(me);
            }
        }
    }
}

/// The accept works waiting for the shard loops to catch up (one per protocol), woken by the
/// loops ([`Parked::wake`]).
///
/// An entry holds its acceptor, which holds the server, which holds this: the listener's drop
/// takes its entry out, after which its acceptor parks no more.
#[pin_data]
pub(crate) struct Parked {
    #[pin]
    slots: Mutex<[Option<Arc<Acceptor>>; Protocol::COUNT]>,
}

impl Parked {
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            slots <- new_mutex!([const { None }; Protocol::COUNT], "Parked::slots"),
        })
    }

    /// Parks `acceptor`; returns what was in its slot (to be dropped outside any lock).
    fn put(&self, acceptor: Arc<Acceptor>) -> Option<Arc<Acceptor>> {
        let slot = acceptor.protocol as usize;
        self.slots.lock()[slot].replace(acceptor)
    }

    /// Takes the acceptor of `protocol` out, if it is parked.
    fn take(&self, protocol: Protocol) -> Option<Arc<Acceptor>> {
        self.slots.lock()[protocol as usize].take()
    }

    /// Queues every parked accept work (called by a shard loop that has caught up); each
    /// looks at the loops again and parks again if one is still behind.
    pub(crate) fn wake(&self) {
        // Taken out under the lock, queued (or dropped) after it.
        let all = core::mem::take(&mut *self.slots.lock());
        for acceptor in all.into_iter().flatten() {
            Acceptor::requeue(acceptor);
        }
    }
}

impl SocketEvents for Acceptor {
    fn data_ready(this: ArcBorrow<'_, Self>) {
        let this: Arc<Self> = this.into();
        // An error means the work is already queued: it accepts until EAGAIN anyway.
        let _ = this.server.queue.enqueue(this.clone());
    }

    // Only `sk_data_ready` is replaced on a listener.
    fn state_change(_this: ArcBorrow<'_, Self>) {}

    fn write_space(_this: ArcBorrow<'_, Self>) {}
}

impl WorkItem for Acceptor {
    type Pointer = Arc<Acceptor>;

    fn run(this: Arc<Acceptor>) {
        for _ in 0..ACCEPT_BUDGET {
            if this.is_stopped() {
                return;
            }
            if !this.server.admitting() {
                this.server.core.stats.accept_waits.add(1, Relaxed);
                return Self::park(this);
            }
            match this.sock.accept() {
                Ok(sock) => admit(&this.server, sock, this.protocol),
                Err(e) if e == EAGAIN => return,
                // The connection was reset while it waited in the backlog: next one.
                Err(e) if e == ECONNABORTED => continue,
                Err(e) => {
                    // ENOMEM, ENFILE, or the listener was shut down at unload. The next
                    // connection's wakeup retries.
                    if !this.is_stopped() {
                        kchat_log!(
                            this.server,
                            conn_log,
                            TRACE_ERRORS,
                            "accept failed: {:?}\n",
                            e
                        );
                    }
                    return;
                }
            }
        }
        Self::requeue(this);
    }
}

/// Turns a freshly accepted socket into a client, or refuses it.
fn admit(server: &Arc<Server>, sock: Socket, protocol: Protocol) {
    let Ok(peer) = sock.peer_addr() else {
        // Gone already (reset in the backlog): nothing to admit.
        return;
    };
    if server.core.len() >= server.params.max_clients as usize {
        refused(server, peer, "server full");
        let _ = sock.send(server_full(protocol));
        sock.shutdown();
        return;
    }
    sock.set_nodelay();
    let client = match Client::new(server.clone(), sock, peer, server.next_id(), protocol) {
        Ok(c) => c,
        Err(_) => {
            refused(server, peer, "out of memory");
            return;
        }
    };
    // A native client starts in `#lobby`; an IRC client in no channel, and is in the chat
    // (its nick reserved, counted in `max_clients`) while it registers.
    let lobby = protocol == Protocol::Native;
    match server.core.add(
        &client,
        Label::from_addr(peer),
        protocol.default_user(),
        lobby,
    ) {
        Ok(()) => {}
        Err(AddError::Full) => {
            refused(server, peer, "server full");
            client.refuse(server_full(protocol));
            return;
        }
        Err(AddError::NoMemory) => {
            refused(server, peer, "out of memory");
            client.refuse(b"");
            return;
        }
        Err(AddError::Closing) => return,
    }
    kchat_log!(
        server,
        conn_log,
        TRACE_CONNECTIONS,
        "New Client Connected: {}{}\n",
        peer,
        if lobby { "" } else { " (IRC)" }
    );
    Client::start(&client);
}

fn refused(server: &Server, peer: PeerAddr, why: &str) {
    if why == "server full" {
        server.core.stats.refused_full.add(1, Relaxed);
    }
    kchat_log!(
        server,
        conn_log,
        TRACE_CONNECTIONS,
        "Client Refused: {} ({})\n",
        peer,
        why
    );
}

/// The running listener, owned by the module. Dropping it stops listening and waits for the
/// accept work, so that no client is admitted after it is gone.
pub(crate) struct Listener {
    acceptor: Arc<Acceptor>,
    dual_stack: bool,
}

impl Listener {
    /// Listens on `port` in `net` (IPv6 and IPv4, or IPv4 alone where the kernel has no IPv6)
    /// for clients of `protocol`, and starts accepting. The listener must not outlive `net`.
    pub(crate) fn start(
        server: &Arc<Server>,
        net: &Net,
        port: u16,
        protocol: Protocol,
    ) -> Result<Self> {
        let (sock, dual_stack) = Socket::listen_tcp(net, port, server.params.backlog)?;
        let acceptor = Arc::pin_init(
            try_pin_init!(Acceptor {
                server: server.clone(),
                sock,
                protocol,
                stopped <- new_mutex!(false, "Acceptor::stopped"),
                work <- new_work!("Acceptor::work"),
            }),
            GFP_KERNEL,
        )?;
        acceptor
            .sock
            .attach(acceptor.clone(), Role::Listener)
            .map_err(|_| EBUSY)?;
        // Connections that completed before the callback was installed woke nobody.
        let _ = server.queue.enqueue(acceptor.clone());
        Ok(Self {
            acceptor,
            dual_stack,
        })
    }

    /// Whether IPv4 and IPv6 clients are both accepted.
    pub(crate) fn dual_stack(&self) -> bool {
        self.dual_stack
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let acceptor = &self.acceptor;
        // After this the accept work queues itself no more.
        *acceptor.stopped.lock() = true;
        // After this no callback can queue the accept work.
        drop(acceptor.sock.detach(acceptor));
        // Closes the backlog; an accept work still queued fails and returns.
        acceptor.sock.shutdown();
        // A parked accept work is woken no more (nor parks again: `stopped` is set); this
        // breaks the reference cycle through the server.
        drop(acceptor.server.parked.take(acceptor.protocol));
        // An accept work already running may be admitting a client: wait for it (as
        // nvmet-tcp cancels its accept work after restoring the callbacks), so that every
        // admitted client is in the chat before the unload closes it, and the acceptor's
        // reference to the server is gone with the listener's. A run queued before `stopped`
        // was set returns at once.
        wq::flush(&acceptor.work);
    }
}
