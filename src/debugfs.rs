// SPDX-License-Identifier: GPL-2.0

//! The admin's read-only view, in debugfs: `/sys/kernel/debug/kchat/stats` (server counters)
//! and `/sys/kernel/debug/kchat/clients` (one line per connected client: id, label, peer, bytes
//! received from it, bytes sent to it, bytes in kchat's queue for it, and the memory charged to
//! its socket's send queue, unacknowledged data included).
//!
//! Reading takes the registry lock only to copy out references to the clients, so a reader
//! never holds up the chat while it formats, and never sees a freed client.

use kernel::{
    debugfs::{
        Dir,
        File, //
    },
    fmt,
    prelude::*,
    sync::{
        atomic::Relaxed,
        Arc, //
    },
};

use crate::server::Server;

/// The debugfs directory and its files; dropping it removes them, waiting for open readers.
pub(crate) struct StatsFiles {
    // Fields drop in order: the files before their directory.
    _stats: Pin<KBox<File<Arc<Server>>>>,
    _clients: Pin<KBox<File<Arc<Server>>>>,
    _dir: Dir,
}

impl StatsFiles {
    /// Creates `kchat/stats` and `kchat/clients`.
    pub(crate) fn new(server: &Arc<Server>) -> Result<Self> {
        let dir = Dir::new(c"kchat");
        let stats = KBox::pin_init(
            dir.read_callback_file(c"stats", server.clone(), &show_stats),
            GFP_KERNEL,
        )?;
        let clients = KBox::pin_init(
            dir.read_callback_file(c"clients", server.clone(), &show_clients),
            GFP_KERNEL,
        )?;
        Ok(Self {
            _stats: stats,
            _clients: clients,
            _dir: dir,
        })
    }
}

fn show_stats(server: &Arc<Server>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.write_fmt(fmt!("uptime_s: {}\n", server.uptime().as_millis() / 1000))?;
    f.write_fmt(fmt!("{}", server.registry.stats))
}

fn show_clients(server: &Arc<Server>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let clients = server.registry.snapshot().map_err(|_| fmt::Error)?;
    f.write_str("id label peer bytes_in bytes_out queued_bytes socket_wmem\n")?;
    for c in clients.iter() {
        f.write_fmt(fmt!(
            "{} {} {} {} {} {} {}\n",
            c.id,
            c.label(),
            c.peer,
            c.bytes_in.load(Relaxed),
            c.bytes_out.load(Relaxed),
            c.queued_bytes(),
            c.socket_queued()
        ))?;
    }
    Ok(())
}
