// SPDX-License-Identifier: GPL-2.0

//! kchat: a TCP chat server in the kernel.
//!
//! `insmod kchat.ko port=10106` opens a listening TCP socket on 0.0.0.0; clients send
//! length-prefixed frames (u32 little-endian length, then the payload) and every message is
//! relayed to the other connected clients. See DESIGN.md for the protocol and parameters.

#![crate_name = "kchat"]

mod accept;
mod chat;
mod client;
mod clock;
mod debugfs;
mod frame;
mod frontend;
mod irc;
mod label;
mod log;
mod native;
mod net;
mod pages;
mod params;
mod server;
mod shard;
mod stats;
mod throttle;
mod txqueue;
mod wq;

use kernel::{
    prelude::*,
    sync::{
        atomic::Relaxed,
        Arc, //
    },
};

use accept::Listener;
use debugfs::StatsFiles;
use frontend::Protocol;
use params::Params;
use server::Server;

module! {
    type: KChat,
    name: "kchat",
    authors: ["kchat developers"],
    description: "TCP chat server in the kernel",
    license: "GPL",
    params: {
        port: u16 {
            default: crate::params::PORT.default as u16,
            description: "TCP port to listen on, IPv6 and IPv4 (default 10106, range 1..=65535)",
        },
        backlog: u32 {
            default: crate::params::BACKLOG.default as u32,
            description: "listen() backlog (default 512, range 1..=65535)",
        },
        max_clients: u32 {
            default: crate::params::MAX_CLIENTS.default as u32,
            description: "connections beyond this get '! server full' and are closed \
                          (default 10000, range 1..=1000000)",
        },
        max_msg_len: u32 {
            default: crate::params::MAX_MSG_LEN.default as u32,
            description: "largest payload accepted, bytes (default 4096, range 1..=1048576)",
        },
        max_queue_bytes: u32 {
            default: crate::params::MAX_QUEUE_BYTES.default as u32,
            description: "bytes queued to one client before it is dropped as a slow consumer \
                          (default 262144, range 4096..=1073741824)",
        },
        max_msg_rate: u32 {
            default: crate::params::MAX_MSG_RATE.default as u32,
            description: "messages per second one client may send, 0 = unlimited \
                          (default 1000, range 0..=1000000)",
        },
        notices: bool {
            default: crate::params::NOTICES.default != 0,
            description: "send join/leave/nick notices (default true)",
        },
        trace: u8 {
            default: crate::params::TRACE.default as u8,
            description: "kernel log verbosity: 0 errors, 1 connections, 2 every message \
                          (default 1, range 0..=2)",
        },
        history: u32 {
            default: crate::params::HISTORY.default as u32,
            description: "chat messages a room keeps and replays to a client entering it, \
                          0 = off (default 20, range 0..=1000)",
        },
        max_rooms: u32 {
            default: crate::params::MAX_ROOMS.default as u32,
            description: "rooms that may exist at once, #lobby included \
                          (default 1000, range 1..=100000)",
        },
        irc_port: u16 {
            default: crate::params::IRC_PORT.default as u16,
            description: "TCP port for IRC clients, IPv6 and IPv4, 0 = no IRC \
                          (default 6667, range 0..=65535)",
        },
        irc_ping: u32 {
            default: crate::params::IRC_PING.default as u32,
            description: "seconds of silence before an IRC client is pinged, and again before \
                          it is dropped; also the time to register (default 120, range 5..=3600)",
        },
        zerocopy: bool {
            default: crate::params::ZEROCOPY.default != 0,
            description: "write room messages once into page-backed logs and splice them to \
                          every recipient, instead of copying them into each socket (default true)",
        },
    },
}

/// Reads the module parameters once.
fn read_params() -> Params {
    Params {
        port: module_parameters::port.value(),
        backlog: module_parameters::backlog.value(),
        max_clients: module_parameters::max_clients.value(),
        max_msg_len: module_parameters::max_msg_len.value(),
        max_queue_bytes: module_parameters::max_queue_bytes.value(),
        max_msg_rate: module_parameters::max_msg_rate.value(),
        notices: module_parameters::notices.value(),
        trace: module_parameters::trace.value(),
        history: module_parameters::history.value(),
        max_rooms: module_parameters::max_rooms.value(),
        irc_port: module_parameters::irc_port.value(),
        irc_ping: module_parameters::irc_ping.value(),
        zerocopy: module_parameters::zerocopy.value(),
    }
}

/// The loaded module. Its fields are dropped in the order of the unload: the stats view
/// first (no reader left), then the listeners (nobody new arrives, no accept work left), then
/// the server (every client disconnected, the workqueue drained and destroyed).
struct KChat {
    stats_files: Option<StatsFiles>,
    listener: Option<Listener>,
    irc_listener: Option<Listener>,
    /// Taken by the exit path, which must hold the last reference (see [`Server::shutdown`]).
    server: Option<Arc<Server>>,
    /// Where it listened, for the exit line.
    addr: &'static str,
}

impl kernel::Module for KChat {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let params = read_params();
        params.validate()?;
        let server = Server::new(params)?;
        let listener = match Listener::start(&server, params.port, Protocol::Native) {
            Ok(l) => l,
            Err(e) => {
                pr_err!("cannot listen on port {}: {:?}\n", params.port, e);
                Server::shutdown(server);
                return Err(e);
            }
        };
        let irc_listener = if params.irc_port == 0 {
            None
        } else {
            match Listener::start(&server, params.irc_port, Protocol::Irc) {
                Ok(l) => Some(l),
                Err(e) => {
                    pr_err!("cannot listen on irc_port {}: {:?}\n", params.irc_port, e);
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
        let stats_files = StatsFiles::new(&server)
            .inspect_err(|e| pr_warn!("no stats view in debugfs: {:?}\n", e))
            .ok();
        pr_info!("listening on {}:{} ({})\n", addr, params.port, params);
        if irc_listener.is_some() {
            Server::start_irc_timer(&server);
        }
        Ok(Self {
            stats_files,
            listener: Some(listener),
            irc_listener,
            server: Some(server),
            addr,
        })
    }
}

impl Drop for KChat {
    fn drop(&mut self) {
        let Some(server) = self.server.take() else {
            return;
        };
        // Stop the chat first: under a flood, the unload must not queue behind it.
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
            "stopped listening on {}:{}: {} clients served, {} messages relayed ({} bytes), \
             {} frames rejected, {} slow consumers dropped\n",
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
