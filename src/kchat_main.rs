// SPDX-License-Identifier: GPL-2.0

//! kchat: a TCP chat server in the kernel.
//!
//! `insmod kchat.ko port=10106` opens a listening TCP socket on `[::]` in every network
//! namespace; clients send length-prefixed frames (u32 little-endian length, then the payload)
//! and every message is relayed to the other members of the sender's room, in its namespace.
//! See DESIGN.md for the protocol and parameters.

#![crate_name = "kchat"]

mod accept;
mod chat;
mod client;
mod clock;
mod debugfs;
mod frame;
mod frontend;
mod instance;
mod irc;
mod label;
mod log;
mod native;
mod net;
mod netns;
mod pages;
mod params;
mod server;
mod shard;
mod stats;
mod throttle;
mod txqueue;
mod wq;

use kernel::prelude::*;

use instance::Instances;
use netns::Pernet;
use params::Params;

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
        link_secret: u64 {
            default: 0,
            description: "secret a kchat-bridge gives to connect as a link (docs/link.md), \
                          0 = links refused (default 0, any u64)",
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
        link_secret: module_parameters::link_secret.value(),
    }
}

/// The loaded module: one kchat per network namespace. Dropping it unregisters the pernet
/// hooks, which stops every instance (see `src/instance.rs`).
struct KChat {
    _instances: Pernet<Instances>,
}

impl kernel::Module for KChat {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let params = read_params();
        params.validate()?;
        // Starts the initial namespace's instance (its failure fails the load) and one in
        // every other namespace alive now.
        let instances = Pernet::register(Instances::new(params)?)?;
        Ok(Self {
            _instances: instances,
        })
    }
}
