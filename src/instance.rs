// SPDX-License-Identifier: GPL-2.0

//! One kchat per network namespace. An [`Instance`] is one namespace's chat: its listeners,
//! its server (clients, rooms, nicks, history, stats, workqueue) and its stats view. The
//! module's [`Instances`] starts one when a namespace comes up and stops it when the namespace
//! is dismantled; the unload stops every one left.
//!
//! The initial namespace's instance is the kchat of old: its start line, its stats view
//! (`/sys/kernel/debug/kchat/`), and its failure to listen fails `insmod`. Another namespace's
//! log lines start with `net INUM: ` (the inode number of `/proc/PID/ns/net`), its view is
//! `/sys/kernel/debug/kchat/net-INUM/`, and if it cannot start, the namespace goes on without
//! kchat.

use kernel::{
    debugfs::Dir,
    fmt, new_mutex,
    prelude::*,
    str::CString,
    sync::{
        atomic::Relaxed,
        Arc,
        Mutex, //
    },
};

use crate::{
    accept::Listener,
    debugfs::StatsFiles,
    frontend::Protocol,
    netns::{
        Net,
        NetHooks, //
    },
    params::Params,
    server::Server,
};

/// The prefix of an instance's own log lines: nothing for the initial namespace.
#[derive(Clone, Copy)]
struct NetTag(Option<u32>);

impl fmt::Display for NetTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(inum) => f.write_fmt(fmt!("net {}: ", inum)),
            None => Ok(()),
        }
    }
}

/// One namespace's kchat. Its fields are dropped in the order of its stop: the stats view
/// first (no reader left), then the listeners (nobody new arrives, no accept work left), then
/// the server (every client disconnected, the workqueue drained and destroyed).
struct Instance {
    /// The namespace it serves ([`Net::key`]); the instance never outlives it.
    net: usize,
    tag: NetTag,
    stats_files: Option<StatsFiles>,
    listener: Option<Listener>,
    irc_listener: Option<Listener>,
    /// Taken by the stop, which must hold the last reference (see [`Server::shutdown`]).
    server: Option<Arc<Server>>,
    /// Where it listened, for the stop line.
    addr: &'static str,
}

impl Instance {
    /// Starts the chat of `net`, with its stats view in `root` (or a directory of its own).
    fn start(params: Params, net: &Net, root: &Dir) -> Result<Self> {
        let tag = NetTag((!net.is_initial()).then(|| net.inum()));
        let server = Server::new(params)?;
        let listener = match Listener::start(&server, net, params.port, Protocol::Native) {
            Ok(l) => l,
            Err(e) => {
                pr_err!("{}cannot listen on port {}: {:?}\n", tag, params.port, e);
                Server::shutdown(server);
                return Err(e);
            }
        };
        let irc_listener = if params.irc_port == 0 {
            None
        } else {
            match Listener::start(&server, net, params.irc_port, Protocol::Irc) {
                Ok(l) => Some(l),
                Err(e) => {
                    pr_err!(
                        "{}cannot listen on irc_port {}: {:?}\n",
                        tag,
                        params.irc_port,
                        e
                    );
                    drop(listener);
                    Server::shutdown(server);
                    return Err(e);
                }
            }
        };
        let addr = if listener.dual_stack() {
            "[::]"
        } else {
            "0.0.0.0"
        };
        // The stats view is a convenience: kchat runs without it (no debugfs).
        let dir = match tag.0 {
            None => Ok(root.clone()),
            Some(inum) => CString::try_from_fmt(fmt!("net-{}", inum)).map(|n| root.subdir(&n)),
        };
        let stats_files = dir
            .and_then(|d| StatsFiles::new(&server, d))
            .inspect_err(|e| pr_warn!("{}no stats view in debugfs: {:?}\n", tag, e))
            .ok();
        pr_info!(
            "{}listening on {}:{} ({})\n",
            tag,
            addr,
            params.port,
            params
        );
        if irc_listener.is_some() {
            Server::start_irc_timer(&server);
        }
        Ok(Self {
            net: net.key(),
            tag,
            stats_files,
            listener: Some(listener),
            irc_listener,
            server: Some(server),
            addr,
        })
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let Some(server) = self.server.take() else {
            return;
        };
        // Stop the chat first: under a flood, the stop must not queue behind it.
        server.begin_shutdown();
        self.stats_files = None;
        self.listener = None;
        self.irc_listener = None;
        let stats = &server.core.stats;
        let (served, msgs, bytes) = (
            stats.served.load(Relaxed),
            stats.relayed_msgs.load(Relaxed),
            stats.relayed_bytes.load(Relaxed),
        );
        let (rejected, slow) = (
            stats.frames_rejected.load(Relaxed),
            stats.slow_consumers.load(Relaxed),
        );
        let port = server.params.port;
        Server::shutdown(server);
        pr_info!(
            "{}stopped listening on {}:{}: {} clients served, {} messages relayed ({} bytes), \
             {} frames rejected, {} slow consumers dropped\n",
            self.tag,
            self.addr,
            port,
            served,
            msgs,
            bytes,
            rejected,
            slow
        );
    }
}

/// Every namespace's kchat, started and stopped by the pernet hooks.
#[pin_data]
pub(crate) struct Instances {
    /// The parameters, checked once at load, in force in every namespace.
    params: Params,
    /// `/sys/kernel/debug/kchat`: the initial namespace's view, and the others' directories.
    root: Dir,
    /// The running instances, one per namespace (in no order).
    #[pin]
    running: Mutex<KVec<Instance>>,
}

impl Instances {
    /// No instance yet: the pernet registration starts them.
    pub(crate) fn new(params: Params) -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Self {
                params,
                root: Dir::new(c"kchat"),
                running <- new_mutex!(KVec::new(), "Instances::running"),
            }),
            GFP_KERNEL,
        )
    }
}

impl NetHooks for Instances {
    fn up(&self, net: &Net) -> Result {
        let instance = match Instance::start(self.params, net, &self.root) {
            Ok(i) => i,
            Err(e) if net.is_initial() => return Err(e),
            Err(e) => {
                // A container must not fail to start because kchat could not.
                pr_err!("net {}: kchat not started: {:?}\n", net.inum(), e);
                return Ok(());
            }
        };
        // Without memory for the entry, the instance stops again (dropped by `push`).
        match self.running.lock().push(instance, GFP_KERNEL) {
            Err(e) if net.is_initial() => Err(e.into()),
            Err(_) => {
                pr_err!("net {}: kchat not started: out of memory\n", net.inum());
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }

    fn down(&self, net: &Net) {
        let key = net.key();
        let gone = {
            let mut running = self.running.lock();
            let at = running.iter().position(|i| i.net == key);
            at.and_then(|at| running.remove(at).ok())
        };
        // Stopped outside the lock: other namespaces come and go meanwhile.
        drop(gone);
    }
}
