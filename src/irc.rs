// SPDX-License-Identifier: GPL-2.0

//! The IRC front end: lines from an IRC client become calls into the chat core, and the core's
//! events become IRC lines ([`render`]). The replies kchat sends are listed in docs/irc.md.
//!
//! Like the native front end it keeps no chat state: nicks, channels (rooms), operators,
//! topics and away messages are the core's. What it owns is the protocol: line framing
//! ([`line`]), registration ([`register`]), the command set ([`command`], [`query`]), and the
//! keep-alive: a tick ([`tick`]) pings quiet clients and drops silent or unregistered ones.

mod command;
mod line;
mod lines;
mod query;
mod register;
pub(crate) mod render;

use kernel::{
    fmt,
    prelude::*,
    sync::{
        atomic::{
            Full,
            Relaxed, //
        },
        Arc,
    },
};

use crate::{
    chat::{
        RelayBatch,
        User, //
    },
    client::{
        Client,
        CloseReason,
        IRC_PINGED,
        IRC_REGISTERED,
        IRC_UNREGISTERED, //
    },
    frontend::Protocol,
    label::Label,
    server::Server,
};

pub(crate) use line::LineReader;
use lines::Lines;

/// Most channels an IRC client may be in (`CHANLIMIT`).
pub(crate) const CHANLIMIT: usize = 20;

/// An IRC client's protocol state: its line reader and its registration.
pub(crate) struct Session {
    lines: LineReader,
    state: State,
}

/// Where an IRC client is in its registration, and what it asked for.
pub(crate) struct State {
    /// The nick it has (also the core's label), once `NICK` was accepted.
    nick: Option<Label>,
    /// The user name `USER` gave.
    user: Option<User>,
    /// A `CAP` negotiation is open: registration waits for `CAP END`.
    cap: bool,
    /// User mode `+i`.
    invisible: bool,
    /// Its `QUIT` message, for the others and its `ERROR` line.
    quit: Option<KVec<u8>>,
}

impl Session {
    pub(crate) const fn new() -> Self {
        Self {
            lines: LineReader::new(),
            state: State {
                nick: None,
                user: None,
                cap: false,
                invisible: false,
                quit: None,
            },
        }
    }

    /// Whether part of a line is waiting for its end.
    pub(crate) fn mid_line(&self) -> bool {
        self.lines.held() > 0
    }

    /// Feeds bytes from the client: each complete line is handled (and charged to the
    /// client's rate through `charge`).
    pub(crate) fn feed(
        &mut self,
        client: &Arc<Client>,
        input: &[u8],
        batch: &mut RelayBatch<Client>,
        charge: &mut dyn FnMut(),
    ) -> Result<(), CloseReason> {
        let state = &mut self.state;
        self.lines.feed(input, CloseReason::NoMemory, &mut |i| {
            charge();
            command::handle(client, state, i, batch)
        })
    }
}

impl State {
    /// The client's nick as replies address it: `*` until it has one.
    fn me(&self) -> Me<'_> {
        Me(self.nick.as_ref())
    }
}

/// The nick numerics are addressed to.
struct Me<'a>(Option<&'a Label>);

impl fmt::Display for Me<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(n) => fmt::Display::fmt(n, f),
            None => f.write_str("*"),
        }
    }
}

/// Queues `w`'s lines to `client` (lost if they cannot be allocated).
fn send(client: &Arc<Client>, w: Lines) {
    if let Ok(Some(f)) = w.finish() {
        if let Ok(f) = Arc::new(f, GFP_KERNEL) {
            Client::enqueue(client, &f);
        }
    }
}

/// One numeric reply to `client`.
fn numeric(client: &Arc<Client>, st: &State, code: u16, args: fmt::Arguments<'_>) {
    let mut w = Lines::new();
    w.reply(code, &st.me(), args);
    send(client, w);
}

/// The text of a disconnect as the others see it in `QUIT` (and the client in `ERROR`).
pub(crate) struct QuitText {
    buf: [u8; QUIT_LEN],
    len: usize,
}

/// Longest quit text kept.
const QUIT_LEN: usize = 320;

impl QuitText {
    pub(crate) const fn new() -> Self {
        Self {
            buf: [0; QUIT_LEN],
            len: 0,
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn push(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(QUIT_LEN - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }
}

impl fmt::Write for QuitText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

/// Writes why an IRC client left, as its channels are told.
pub(crate) fn quit_reason(
    why: &mut QuitText,
    reason: CloseReason,
    irc_ping: u32,
    session: Option<&Session>,
) {
    use fmt::Write;
    let _ = match reason {
        CloseReason::Quit => match session.and_then(|s| s.state.quit.as_deref()) {
            Some(msg) => {
                why.push(b"Quit: ");
                why.push(msg);
                Ok(())
            }
            None => why.write_str("Client Quit"),
        },
        CloseReason::Eof | CloseReason::EofMidFrame => why.write_str("Connection closed"),
        CloseReason::RecvError(_) => why.write_str("Read error"),
        CloseReason::SendError(_) => why.write_str("Write error"),
        CloseReason::SlowConsumer(_) => why.write_str("Slow consumer"),
        CloseReason::PingTimeout => {
            why.write_fmt(fmt!("Ping timeout: {} seconds", u64::from(irc_ping) * 2))
        }
        CloseReason::RegistrationTimeout => why.write_str("Registration timed out"),
        CloseReason::LinkRefused => why.write_str("Link refused"),
        CloseReason::TooLong(_) => why.write_str("Line too long"),
        CloseReason::NoMemory => why.write_str("Out of memory"),
        CloseReason::ServerShutdown => why.write_str("Server shutting down"),
    };
}

/// How often the keep-alive tick runs for `irc_ping` seconds: five times per period, at
/// least every 30 s and at most every second.
pub(crate) fn tick_ms(irc_ping: u32) -> u32 {
    (irc_ping.saturating_mul(1000) / 5).clamp(1000, 30_000)
}

/// The keep-alive tick: an IRC client quiet for `irc_ping` seconds is sent a `PING`; one
/// still silent `irc_ping` seconds later, or one that has not registered within `irc_ping`
/// seconds of connecting, is disconnected.
pub(crate) fn tick(server: &Arc<Server>) {
    let Ok(clients) = server.core.members_of(Protocol::Irc) else {
        // Next tick.
        return;
    };
    let now = server.now_ns();
    let limit = i64::from(server.params.irc_ping) * 1_000_000_000;
    for c in clients.iter() {
        let quiet = now - c.heard_ns.load(Relaxed);
        match c.irc_state.load(Relaxed) {
            IRC_UNREGISTERED if now - c.started_ns > limit => {
                Client::close(c, CloseReason::RegistrationTimeout);
            }
            IRC_REGISTERED if quiet > limit => {
                if c.irc_state
                    .cmpxchg(IRC_REGISTERED, IRC_PINGED, Full)
                    .is_ok()
                {
                    let mut w = Lines::new();
                    w.line(fmt!("PING :{}", lines::SERVER));
                    send(c, w);
                }
            }
            IRC_PINGED if quiet > 2 * limit => {
                Client::close(c, CloseReason::PingTimeout);
            }
            _ => {}
        }
    }
}

/// Records that `client` was heard from: a pending `PING` counts as answered.
pub(crate) fn heard(client: &Client, now: i64) {
    client.heard_ns.store(now, Relaxed);
    if client.irc_state.load(Relaxed) == IRC_PINGED {
        let _ = client.irc_state.cmpxchg(IRC_PINGED, IRC_REGISTERED, Full);
    }
}
