// SPDX-License-Identifier: GPL-2.0
//! One client connection of an event-loop thread: its socket, receive state and send buffer.

use std::io::{self, Write};

use mio::net::TcpStream;

use crate::{irc, kchat, layout::Role, resp};

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Not started yet.
    Idle,
    /// connect(2) in progress.
    Connecting,
    /// Connected and registered with the poll.
    Open,
    /// Connected but deliberately no longer polled (stalled clients).
    Parked,
    /// Failed or closed.
    Closed,
}

/// Receive state, per protocol.
#[derive(Debug)]
pub(crate) enum Rx {
    /// kchat frames, reassembled in the decoder's buffer.
    Kchat(kchat::Inbox),
    /// RESP replies and pushes.
    Resp(resp::Reader),
    /// IRC lines.
    Irc(irc::Inbox),
}

/// A client connection.
#[derive(Debug)]
pub(crate) struct Conn {
    /// Global connection number (see [`crate::layout::Layout`]).
    pub(crate) global: usize,
    pub(crate) role: Role,
    /// Receiver row in this thread's tracker.
    pub(crate) row: Option<u32>,
    pub(crate) state: State,
    pub(crate) stream: Option<TcpStream>,
    pub(crate) rx: Rx,
    /// Bytes to send; `out[out_pos..]` is not yet written. Keeps its capacity between uses.
    pub(crate) out: Vec<u8>,
    pub(crate) out_pos: usize,
    /// Senders: the next sequence number to send.
    pub(crate) next_seq: u32,
    /// Counts against `--connect-batch`: from the connect until the server has the
    /// connection (connected; for IRC, welcomed), or it failed.
    pub(crate) in_flight: bool,
}

impl Conn {
    /// A connection not yet started.
    pub(crate) fn new(global: usize, role: Role, row: Option<u32>, rx: Rx) -> Self {
        Self {
            global,
            role,
            row,
            state: State::Idle,
            stream: None,
            rx,
            out: Vec::new(),
            out_pos: 0,
            next_seq: 0,
            in_flight: false,
        }
    }

    /// Writes as much of the send buffer as the socket takes. `Ok` also when the socket is
    /// full: the rest goes on the next writable event.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(());
        };
        while self.out_pos < self.out.len() {
            match stream.write(&self.out[self.out_pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.out_pos = 0;
        Ok(())
    }

    /// Bytes waiting to be written.
    pub(crate) fn pending_out(&self) -> usize {
        self.out.len() - self.out_pos
    }
}
