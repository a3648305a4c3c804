//! `kchat-ref`: the user-space reference chat servers that kchat is benchmarked against.
//!
//! Same protocol, limits and text as the kernel module (DESIGN.md sections 1-2), served by
//! one of three engines:
//!
//! - `kchat-ref epoll [options]`: mio (epoll), one thread or one per vCPU (`--threads`);
//! - `kchat-ref uring [options]`: io_uring, multishot accept and receive, a provided-buffer
//!   ring, one thread;
//! - `kchat-ref sendfile [options]`: the epoll engine, each room's broadcast frames written
//!   once into a log in a memfd and sent to every recipient with `sendfile(2)`.
//!
//! The protocol logic is written once ([`chat`]); the engines only move bytes.

mod chat;
mod epoll;
mod fanout;
mod frame;
mod net;
mod options;
mod queue;
mod sendfile;
mod uring;

use std::{io, process::ExitCode};

use options::Engine;
pub use options::Options;

/// Why an engine stopped.
#[derive(Debug)]
pub enum Fatal {
    /// The engine cannot run on this system (io_uring disabled or missing, no memfd).
    Unavailable(String),
    /// A system call the server cannot do without failed (listening, polling).
    Io(io::Error),
}

impl From<io::Error> for Fatal {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

fn main() -> ExitCode {
    let opts = Options::from_env();
    let result = match opts.engine {
        Engine::Epoll => epoll::run::<fanout::SharedFrames>(&opts),
        Engine::Uring => uring::run(&opts),
        Engine::Sendfile => sendfile::run(&opts),
    };
    match result {
        Ok(never) => match never {},
        Err(Fatal::Unavailable(why)) => {
            eprintln!("kchat-ref: {} unavailable: {why}", opts.engine.needs());
            ExitCode::from(3)
        }
        Err(Fatal::Io(e)) => {
            eprintln!("kchat-ref: {e}");
            ExitCode::FAILURE
        }
    }
}
