// SPDX-License-Identifier: GPL-2.0
//! The kchat side: one thread that links to kchat, reads its frames, and links again when
//! the link fails.
//!
//! A session: connect; send `/link SECRET NODE`; read until `=link NODE` (frames before it,
//! which kchat may send any new connection, are skipped; `! ...` means refused); start the
//! writer, which waits until the core has queued the remote presence to post again first
//! ([`Event::KchatUp`]); then hand every frame to the core.

use std::{
    io::{self, Read, Write},
    net::{Shutdown, TcpStream},
    sync::{mpsc::SyncSender, Arc},
    thread,
    time::{Duration, Instant},
};

use kchat_proto::{Decoder, MAX_MSG_LEN_LIMIT};

use crate::{
    event::{Event, READ_BYTES},
    link::{self, FromKchat},
    log::{log, shown, Throttle},
    net::{self, Backoff, GREETING_TIMEOUT},
    outbox::{self, Outbox},
};

/// Longest frame accepted from kchat: its longest message and room for the fields before it.
pub const MAX_FRAME: usize = MAX_MSG_LEN_LIMIT + 1024;

/// The kchat side of the bridge.
pub struct KchatSide {
    /// kchat's native `HOST:PORT`.
    pub addr: String,
    /// The network namespace `addr` is in, if not ours.
    pub netns: Option<std::path::PathBuf>,
    pub secret: u64,
    pub node: String,
    pub max_backoff: Duration,
    /// What to post to kchat.
    pub outbox: Arc<Outbox>,
    pub events: SyncSender<Event>,
}

/// How a session ended.
enum Ended {
    /// It was up, then failed: why.
    Lost(String),
    /// It never came up: why.
    Failed(String),
    /// The core is gone: stop.
    Exit,
}

/// Reads into `decoder`; `Ok(false)` on timeout.
fn read_into(stream: &mut TcpStream, decoder: &mut Decoder) -> io::Result<bool> {
    // No more than READ_BYTES, though the buffer may have more room (it grows for a long
    // frame): one read is one event, and the channel's memory bound counts on that.
    match stream.read(&mut decoder.spare(READ_BYTES)[..READ_BYTES]) {
        Ok(0) => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "kchat closed the link",
        )),
        Ok(n) => {
            decoder.filled(n);
            Ok(true)
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

impl KchatSide {
    /// Starts the thread.
    pub fn spawn(self) -> io::Result<thread::JoinHandle<()>> {
        thread::Builder::new()
            .name("kchat".into())
            .spawn(move || self.run())
    }

    /// Links, and links again, until the core is gone.
    fn run(self) {
        let mut backoff = Backoff::new(self.max_backoff);
        let mut throttle = Throttle::new(Duration::from_secs(10));
        loop {
            match self.session() {
                Ended::Lost(why) => {
                    log!("kchat link lost: {why}; linking again");
                    backoff.reset();
                    throttle.reset();
                }
                Ended::Failed(why) => {
                    let msg = format!("cannot link to kchat {}: {why}", self.addr);
                    if let Some(line) = throttle.check(&msg, Instant::now()) {
                        log!("{line}");
                    }
                    thread::sleep(backoff.next_wait());
                }
                Ended::Exit => return,
            }
        }
    }

    /// Sends `/link` and waits for `=link`.
    fn handshake(&self, stream: &mut TcpStream, decoder: &mut Decoder) -> Result<(), String> {
        stream
            .write_all(&link::link_request(self.secret, &self.node))
            .map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_millis(250)))
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + GREETING_TIMEOUT;
        loop {
            while let Some(frame) = decoder.next_frame().map_err(|e| e.to_string())? {
                match link::parse(frame) {
                    Ok(FromKchat::Link { node }) if node == self.node => return Ok(()),
                    Ok(FromKchat::Link { node }) => {
                        return Err(format!("kchat linked us as {node:?}, not {:?}", self.node))
                    }
                    Ok(FromKchat::Refused(why)) => {
                        return Err(format!("refused: ! {}", shown(why, 200)))
                    }
                    // What kchat sends a new connection before it knows it is a link.
                    _ => {}
                }
            }
            if Instant::now() >= deadline {
                return Err("no =link within 5 s".into());
            }
            read_into(stream, decoder).map_err(|e| e.to_string())?;
        }
    }

    /// One link, from connect to failure.
    fn session(&self) -> Ended {
        let connected = match &self.netns {
            Some(ns) => net::connect_in(ns, &self.addr),
            None => net::connect(self.addr.as_str()),
        };
        let mut stream = match connected {
            Ok(s) => s,
            Err(e) => return Ended::Failed(e.to_string()),
        };
        let mut decoder = Decoder::new(MAX_FRAME);
        if let Err(why) = self.handshake(&mut stream, &mut decoder) {
            return Ended::Failed(why);
        }
        let writer_stream = match stream.try_clone() {
            Ok(s) => s,
            Err(e) => return Ended::Failed(e.to_string()),
        };
        let gen = self.outbox.attach();
        let writer = {
            let outbox = self.outbox.clone();
            thread::Builder::new()
                .name("kchat-writer".into())
                .spawn(move || outbox::write_loop(&outbox, gen, writer_stream, None))
        };
        log!("linked to kchat {} as node {}", self.addr, self.node);
        let end = match writer {
            Ok(_) => self.read_loop(&mut stream, &mut decoder, gen),
            Err(ref e) => Ended::Lost(e.to_string()),
        };
        let _ = stream.shutdown(Shutdown::Both);
        self.outbox.detach(gen);
        if let Ok(w) = writer {
            let _ = w.join();
        }
        if self.events.send(Event::KchatDown { gen }).is_err() {
            return Ended::Exit;
        }
        end
    }

    /// Hands kchat's frames to the core until the link fails.
    fn read_loop(&self, stream: &mut TcpStream, decoder: &mut Decoder, gen: u64) -> Ended {
        if self.events.send(Event::KchatUp { gen }).is_err() {
            return Ended::Exit;
        }
        if let Err(e) = stream.set_read_timeout(None) {
            return Ended::Lost(e.to_string());
        }
        loop {
            let mut frames = Vec::new();
            loop {
                match decoder.next_frame() {
                    Ok(Some(frame)) => frames.push(frame.to_vec()),
                    Ok(None) => break,
                    Err(e) => return Ended::Lost(e.to_string()),
                }
            }
            if !frames.is_empty()
                && self
                    .events
                    .send(Event::KchatFrames { gen, frames })
                    .is_err()
            {
                return Ended::Exit;
            }
            if let Err(e) = read_into(stream, decoder) {
                return Ended::Lost(e.to_string());
            }
        }
    }
}
