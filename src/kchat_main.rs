// SPDX-License-Identifier: GPL-2.0

//! kchat: a TCP chat server in the kernel.
//!
//! `insmod kchat.ko port=10106` opens a listening TCP socket on 0.0.0.0; clients send
//! length-prefixed frames (u32 little-endian length, then the payload) and every message is
//! relayed to the other connected clients. See DESIGN.md for the protocol and parameters.

#![crate_name = "kchat"]

mod accept;
mod client;
mod debugfs;
mod frame;
mod log;
mod net;
mod params;
mod proto;
mod registry;
mod server;
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
            default: 10106,
            description: "TCP port to listen on, on 0.0.0.0 (default 10106, range 1..=65535)",
        },
        backlog: u32 {
            default: 512,
            description: "listen() backlog (default 512, range 1..=65535)",
        },
        max_clients: u32 {
            default: 10000,
            description: "connections beyond this get '! server full' and are closed \
                          (default 10000, range 1..=1000000)",
        },
        max_msg_len: u32 {
            default: 4096,
            description: "largest payload accepted, bytes (default 4096, range 1..=1048576)",
        },
        max_queue_bytes: u32 {
            default: 262144,
            description: "bytes queued to one client before it is dropped as a slow consumer \
                          (default 262144, range 4096..=1073741824)",
        },
        max_msg_rate: u32 {
            default: 1000,
            description: "messages per second one client may send, 0 = unlimited \
                          (default 1000, range 0..=1000000)",
        },
        notices: bool {
            default: true,
            description: "send join/leave/nick notices (default true)",
        },
        trace: u8 {
            default: 1,
            description: "kernel log verbosity: 0 errors, 1 connections, 2 every message \
                          (default 1, range 0..=2)",
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
    }
}

/// The loaded module.
struct KChat {
    /// The stats view; removed first at unload, so no reader is left.
    stats_files: Option<StatsFiles>,
    /// The listening socket; stopped second, so nobody new arrives.
    listener: Option<Listener>,
    /// Everything else; shut down last (see [`Server`] for why its last reference must be
    /// dropped here).
    server: Arc<Server>,
}

impl kernel::Module for KChat {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let params = read_params();
        params.validate()?;
        let server = Server::new(params)?;
        let listener = match Listener::start(&server) {
            Ok(l) => l,
            Err(e) => {
                pr_err!("cannot listen on 0.0.0.0:{}: {:?}\n", params.port, e);
                server.shutdown();
                return Err(e);
            }
        };
        // The stats view is a convenience: kchat runs without it (no debugfs).
        let stats_files = StatsFiles::new(&server)
            .inspect_err(|e| pr_warn!("no stats view in debugfs: {:?}\n", e))
            .ok();
        pr_info!("listening on 0.0.0.0:{} ({})\n", params.port, params);
        Ok(Self {
            stats_files,
            listener: Some(listener),
            server,
        })
    }
}

impl Drop for KChat {
    fn drop(&mut self) {
        // Stop the chat first: under a flood, the unload must not queue behind it.
        self.server.begin_shutdown();
        self.stats_files = None;
        self.listener = None;
        self.server.shutdown();
        let stats = &self.server.registry.stats;
        pr_info!(
            "stopped listening on 0.0.0.0:{}: {} clients served, {} messages relayed ({} bytes), \
             {} frames rejected, {} slow consumers dropped\n",
            self.server.params.port,
            stats.served.load(Relaxed),
            stats.relayed_msgs.load(Relaxed),
            stats.relayed_bytes.load(Relaxed),
            stats.frames_rejected.load(Relaxed),
            stats.slow_consumers.load(Relaxed)
        );
    }
}
