// SPDX-License-Identifier: GPL-2.0

//! The receive loop: read a client's socket without waiting, reassemble frames, hand each
//! payload to the native front end, and stop reading a client that is over its rate.

use kernel::{
    prelude::*,
    sync::{
        atomic::{
            Full,
            Relaxed, //
        },
        Arc,
    },
};

use super::{
    Client,
    CloseReason,
    Reader,
    RxState, //
};
use crate::{
    chat::RelayBatch,
    frame::FrameError,
    frontend::Protocol,
    irc,
    native,
    server::Server,
    shard::Owner,
    throttle::Rate, //
};

/// The smallest frame that carries a message: a header and one byte. (A keep-alive is 4 bytes
/// but costs no token.)
const MIN_MESSAGE: usize = 5;

/// Bytes read per `recv` call: the size of a shard's receive buffer.
pub(crate) const RX_CHUNK: usize = 16 * 1024;

/// Bytes read from one client per turn before it goes to the back of the ready list, so that
/// one busy client does not hold up the others (and what it sent is relayed before more is
/// read).
const RX_BUDGET: usize = RX_CHUNK;

/// The same for an IRC client: its lines are small and each may be a command that reaches a
/// whole channel (`JOIN`, `NICK`), so a turn reads less (16 KiB of `JOIN`/`PART` lines took
/// seconds on the debug kernel while honest clients waited behind them).
const IRC_RX_BUDGET: usize = 2048;

impl Client {
    /// Reads until `EAGAIN` (or the budget), handling every complete frame. Returns whether
    /// the budget ran out with data perhaps left.
    pub(super) fn receive(
        this: &Arc<Self>,
        owner: &mut Owner,
        buf: &mut [u8],
        batch: &mut RelayBatch<Client>,
    ) -> Result<bool, CloseReason> {
        let server = &this.server;
        // A link carries its whole node's messages: `max_msg_rate` is per person.
        let rate = if this.is_link() {
            Rate::new(0)
        } else {
            server.rate
        };
        let rx = this.rx.access_mut(owner);
        let mut budget = match this.protocol {
            Protocol::Native => RX_BUDGET,
            Protocol::Irc => IRC_RX_BUDGET,
        };
        loop {
            if this.is_closing() || server.is_closing() {
                return Ok(false);
            }
            if budget == 0 {
                return Ok(true);
            }
            // Over its rate: stop reading (TCP pushes back on the client alone) until the
            // throttle work resumes it. Near it, read only as much as can hold the messages it
            // may still send (a message is at least 5 bytes), so a burst is never exceeded.
            let allowance = rx.bucket.allowance(rate, server.now_ns());
            if allowance == 0 {
                let wait = rx.bucket.wait(rate, server.now_ns()).max(1);
                if !this.throttled.xchg(true, Full) {
                    Server::throttle(server, this, wait).map_err(|_| CloseReason::NoMemory)?;
                }
                return Ok(false);
            }
            let room = usize::try_from(allowance.saturating_mul(MIN_MESSAGE as u64))
                .unwrap_or(usize::MAX)
                .min(buf.len());
            // An IRC client's turn ends at its budget exactly (a native one's may run over by
            // one read, as before).
            let room = match this.protocol {
                Protocol::Irc => room.min(budget),
                Protocol::Native => room,
            };
            let mid = match &rx.reader {
                Reader::Native(r) => r.mid_frame(),
                Reader::Irc(s) => s.mid_line(),
            };
            let n = match this.sock.recv(&mut buf[..room]) {
                Ok(0) if mid => return Err(CloseReason::EofMidFrame),
                Ok(0) => return Err(CloseReason::Eof),
                Ok(n) => n,
                Err(e) if e == EAGAIN => return Ok(false),
                Err(e) => return Err(CloseReason::RecvError(e.to_errno())),
            };
            budget = budget.saturating_sub(n);
            this.bytes_in.add(n as u64, Relaxed);
            server.core.stats.recvs.add(1, Relaxed);
            let input = &buf[..n];
            let RxState { reader, bucket } = &mut *rx;
            match reader {
                Reader::Native(r) => {
                    let mut input = input;
                    while !input.is_empty() {
                        let (used, payload) = r.feed(input).map_err(|e| match e {
                            FrameError::TooLong(len) => CloseReason::TooLong(len),
                            FrameError::NoMemory => CloseReason::NoMemory,
                        })?;
                        input = &input[used..];
                        if let Some(payload) = payload {
                            bucket.charge(rate, server.now_ns());
                            native::handle(this, payload, batch)?;
                        }
                    }
                }
                Reader::Irc(session) => {
                    let now = server.now_ns();
                    irc::heard(this, now);
                    session.feed(this, input, batch, &mut || bucket.charge(rate, now))?;
                }
            }
        }
    }
}
