// SPDX-License-Identifier: GPL-2.0
//! `kchat-bridge`: joins kchat nodes through NATS (docs/link.md, DESIGN.md section 6).
//!
//! One bridge per kchat node. It links to its kchat (a native connection that authenticates
//! with the link secret) and speaks the NATS client protocol directly over TCP, relaying
//! room messages, private messages and presence both ways.
//!
//! Threads: one reads kchat ([`kchat`]), one reads NATS ([`nats::conn`]), each with a writer
//! per connection draining its bounded [`outbox`]; one waits for signals; the main thread is
//! the core ([`bridge`]), which owns all state and is fed [`event`]s over a bounded channel.

mod bridge;
mod event;
mod kchat;
mod link;
mod log;
mod members;
mod names;
mod nats;
mod net;
mod options;
mod outbox;
mod payload;
mod remote;
mod stats;
mod subject;

use std::{
    process::ExitCode,
    sync::{
        atomic::AtomicUsize,
        mpsc::{self, RecvTimeoutError, TryRecvError},
        Arc,
    },
    thread,
    time::Instant,
};

use clap::Parser;
use signal_hook::{consts::signal, iterator::Signals};

use crate::{
    bridge::{Bridge, Config, Flow, TICK},
    event::{Event, CHANNEL_BOUND},
    kchat::KchatSide,
    log::log,
    nats::conn::NatsSide,
    options::Options,
    outbox::Outbox,
};

/// The most events the core takes in a row before it publishes its batch and looks at the
/// clock.
const EVENTS_BEFORE_TICK: usize = 64;

/// NATS' default max_payload, assumed until a server says otherwise.
const DEFAULT_MAX_PAYLOAD: usize = 1 << 20;

fn main() -> ExitCode {
    let opts = Options::parse();
    if let Err(e) = opts.check() {
        eprintln!("kchat-bridge: {e}");
        return ExitCode::from(2);
    }
    let secret = match opts.secret() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kchat-bridge: {e}");
            return ExitCode::from(2);
        }
    };
    log::init(&opts.node);
    match run(&opts, secret) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Starts the threads and runs the core until a signal.
fn run(opts: &Options, secret: u64) -> std::io::Result<()> {
    let bound = usize::try_from(opts.buffer_bytes).unwrap_or(usize::MAX);
    let nats_out = Arc::new(Outbox::new(bound));
    let kchat_out = Arc::new(Outbox::new(bound));
    let max_payload = Arc::new(AtomicUsize::new(DEFAULT_MAX_PAYLOAD));
    let (tx, rx) = mpsc::sync_channel(CHANNEL_BOUND);

    let mut signals = Signals::new([signal::SIGTERM, signal::SIGINT])?;
    {
        let tx = tx.clone();
        thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    let _ = tx.send(Event::Signal(sig));
                }
            })?;
    }
    let nats_urls: Vec<String> = opts.nats.iter().map(ToString::to_string).collect();
    log!(
        "starting: kchat {}, NATS {}, buffers of {} bytes, heartbeat {:?}, silence {:?}",
        opts.kchat,
        nats_urls.join(","),
        bound,
        opts.heartbeat,
        opts.silence
    );
    KchatSide {
        addr: opts.kchat.clone(),
        netns: opts.kchat_netns.clone(),
        secret,
        node: opts.node.clone(),
        max_backoff: opts.max_backoff,
        outbox: kchat_out.clone(),
        events: tx.clone(),
    }
    .spawn()?;
    NatsSide {
        urls: opts.nats.clone(),
        node: opts.node.clone(),
        max_backoff: opts.max_backoff,
        outbox: nats_out.clone(),
        max_payload: max_payload.clone(),
        events: tx,
    }
    .spawn()?;

    let cfg = Config {
        node: opts.node.clone(),
        heartbeat: opts.heartbeat,
        silence: opts.silence,
        stats_every: (!opts.stats.is_zero()).then_some(opts.stats),
        kchat_max_frame: usize::try_from(opts.kchat_max_frame).unwrap_or(usize::MAX),
    };
    let mut core = Bridge::new(cfg, nats_out, kchat_out, max_payload, Instant::now());
    loop {
        // What is already queued is handled before the core is idle (room messages batch up
        // meanwhile), at most EVENTS_BEFORE_TICK events before the clock is looked at.
        for i in 0..EVENTS_BEFORE_TICK {
            let next = if i == 0 {
                rx.recv_timeout(TICK)
            } else {
                match rx.try_recv() {
                    Ok(ev) => Ok(ev),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
                }
            };
            match next {
                Ok(ev) => {
                    if let Flow::Exit(sig) = core.handle(ev, Instant::now()) {
                        core.idle();
                        let (nodes, members) = core.remote_summary();
                        let line = core.stats().to_string();
                        log!(
                            "exiting on signal {sig}: {line}; {nodes} remote nodes, {members} \
                             remote members"
                        );
                        return Ok(());
                    }
                }
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(std::io::Error::other("every thread stopped"));
                }
            }
        }
        core.idle();
        core.tick(Instant::now());
    }
}
