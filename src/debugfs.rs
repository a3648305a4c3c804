// SPDX-License-Identifier: GPL-2.0

//! The admin's read-only view, in debugfs, one directory per instance (`kchat/` for the
//! initial network namespace, `kchat/net-INUM/` for another, see `src/instance.rs`):
//!
//! - `/sys/kernel/debug/kchat/stats`: server counters;
//! - `/sys/kernel/debug/kchat/clients`: one line per connected client: id, label, peer, room,
//!   bytes received from it, bytes sent to it, bytes in kchat's queue for it, and the memory
//!   charged to its socket's send queue, unacknowledged data included;
//! - `/sys/kernel/debug/kchat/rooms`: one line per room: name, members, messages relayed
//!   (deliveries), history held (messages and bytes).
//!
//! Reading takes the chat core's lock only to copy out what it shows (references to the
//! clients, so none is freed while it is shown), so a reader never holds up the chat while it
//! formats.

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
    _rooms: Pin<KBox<File<Arc<Server>>>>,
    _dir: Dir,
}

impl StatsFiles {
    /// Creates `stats`, `clients` and `rooms` in `dir`.
    pub(crate) fn new(server: &Arc<Server>, dir: Dir) -> Result<Self> {
        // Each file's function is its own type (the adapter calls it by type), so no loop.
        let stats = dir.read_callback_file(c"stats", server.clone(), &show_stats);
        let clients = dir.read_callback_file(c"clients", server.clone(), &show_clients);
        let rooms = dir.read_callback_file(c"rooms", server.clone(), &show_rooms);
        Ok(Self {
            _stats: KBox::pin_init(stats, GFP_KERNEL)?,
            _clients: KBox::pin_init(clients, GFP_KERNEL)?,
            _rooms: KBox::pin_init(rooms, GFP_KERNEL)?,
            _dir: dir,
        })
    }
}

fn show_stats(server: &Arc<Server>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.write_fmt(fmt!("uptime_s: {}\n", server.uptime().as_millis() / 1000))?;
    f.write_fmt(fmt!("{}", server.core.stats))
}

fn show_clients(server: &Arc<Server>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let clients = server.core.snapshot().map_err(|_| fmt::Error)?;
    f.write_str("id label peer room bytes_in bytes_out queued_bytes socket_wmem\n")?;
    for (c, label, room) in clients.iter() {
        // An IRC client in no channel (or a native one kicked out of its room): `-`.
        let room: &dyn fmt::Display = match room {
            Some(r) => r,
            None => &"-",
        };
        f.write_fmt(fmt!(
            "{} {} {} {} {} {} {} {}\n",
            c.id,
            label,
            c.peer,
            room,
            c.bytes_in.load(Relaxed),
            c.bytes_out.load(Relaxed),
            c.queued_bytes(),
            c.socket_queued()
        ))?;
    }
    Ok(())
}

fn show_rooms(server: &Arc<Server>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let rooms = server.core.room_stats().map_err(|_| fmt::Error)?;
    f.write_str("name members relayed history_msgs history_bytes\n")?;
    for r in rooms.iter() {
        f.write_fmt(fmt!(
            "{} {} {} {} {}\n",
            r.name,
            r.members,
            r.relayed,
            r.history_msgs,
            r.history_bytes
        ))?;
    }
    Ok(())
}
