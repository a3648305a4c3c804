// SPDX-License-Identifier: GPL-2.0

//! Why a client is disconnected, packed into one word so that the first reason wins
//! atomically, and shown in the disconnect log line.

use kernel::{
    fmt,
    prelude::*, //
};

/// Why a client is disconnected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// The peer closed its end (FIN) between frames.
    Eof,
    /// The peer closed its end in the middle of a frame.
    EofMidFrame,
    /// Receiving failed with this errno (for example `ECONNRESET`).
    RecvError(i32),
    /// Sending failed with this errno.
    SendError(i32),
    /// A frame declared this length, above `max_msg_len`.
    TooLong(u32),
    /// The send queue held this many bytes and the next frame would pass `max_queue_bytes`.
    SlowConsumer(u32),
    /// Memory for the client's data could not be allocated.
    NoMemory,
    /// The module is being unloaded.
    ServerShutdown,
    /// An IRC client sent `QUIT`.
    Quit,
    /// An IRC client did not answer a `PING`.
    PingTimeout,
    /// An IRC client did not register in time.
    RegistrationTimeout,
    /// A native client asked to be a link (`/link`), which this kchat refuses.
    LinkRefused,
}

impl CloseReason {
    /// Packs the reason into one word, so that it can be set atomically (0 = not closing).
    pub(crate) fn pack(self) -> u64 {
        let (code, detail): (u64, u64) = match self {
            Self::Eof => (1, 0),
            Self::EofMidFrame => (2, 0),
            Self::RecvError(e) => (3, u64::from(e.unsigned_abs())),
            Self::SendError(e) => (4, u64::from(e.unsigned_abs())),
            Self::TooLong(n) => (5, u64::from(n)),
            Self::SlowConsumer(n) => (6, u64::from(n)),
            Self::NoMemory => (7, 0),
            Self::ServerShutdown => (8, 0),
            Self::Quit => (9, 0),
            Self::PingTimeout => (10, 0),
            Self::RegistrationTimeout => (11, 0),
            Self::LinkRefused => (12, 0),
        };
        code | detail << 8
    }

    /// The reason packed by [`CloseReason::pack`], or `None` for 0.
    pub(crate) fn unpack(word: u64) -> Option<Self> {
        let detail = word >> 8;
        let errno = -i32::try_from(detail).unwrap_or(i32::MAX);
        let small = u32::try_from(detail).unwrap_or(u32::MAX);
        Some(match word & 0xff {
            1 => Self::Eof,
            2 => Self::EofMidFrame,
            3 => Self::RecvError(errno),
            4 => Self::SendError(errno),
            5 => Self::TooLong(small),
            6 => Self::SlowConsumer(small),
            7 => Self::NoMemory,
            8 => Self::ServerShutdown,
            9 => Self::Quit,
            10 => Self::PingTimeout,
            11 => Self::RegistrationTimeout,
            12 => Self::LinkRefused,
            _ => return None,
        })
    }
}

/// A close reason as the disconnect log line shows it, with `max_msg_len`.
pub(crate) struct DisplayReason(pub(crate) CloseReason, pub(crate) u32);

impl fmt::Display for DisplayReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            CloseReason::Eof => f.write_str("end of stream"),
            CloseReason::EofMidFrame => f.write_str("end of stream in the middle of a frame"),
            CloseReason::RecvError(e) if e == ECONNRESET.to_errno() => {
                f.write_str("connection reset")
            }
            CloseReason::RecvError(e) => f.write_fmt(fmt!("receive error {e}")),
            CloseReason::SendError(e) if e == EPIPE.to_errno() || e == ECONNRESET.to_errno() => {
                f.write_str("connection reset (on send)")
            }
            CloseReason::SendError(e) => f.write_fmt(fmt!("send error {e}")),
            CloseReason::TooLong(n) => f.write_fmt(fmt!("message too long ({n} > {})", self.1)),
            CloseReason::SlowConsumer(n) => f.write_fmt(fmt!("slow consumer ({n} bytes queued)")),
            CloseReason::NoMemory => f.write_str("out of memory"),
            CloseReason::ServerShutdown => f.write_str("server shutting down"),
            CloseReason::Quit => f.write_str("quit"),
            CloseReason::PingTimeout => f.write_str("ping timeout"),
            CloseReason::RegistrationTimeout => f.write_str("registration timed out"),
            CloseReason::LinkRefused => f.write_str("link refused"),
        }
    }
}

#[kunit_tests(kchat_close)]
mod tests {
    use super::*;

    #[test]
    fn packs_and_unpacks() -> Result {
        let reasons = [
            CloseReason::Eof,
            CloseReason::EofMidFrame,
            CloseReason::RecvError(ECONNRESET.to_errno()),
            CloseReason::SendError(EPIPE.to_errno()),
            CloseReason::TooLong(u32::MAX),
            CloseReason::SlowConsumer(262_144),
            CloseReason::NoMemory,
            CloseReason::ServerShutdown,
            CloseReason::Quit,
            CloseReason::PingTimeout,
            CloseReason::RegistrationTimeout,
            CloseReason::LinkRefused,
        ];
        for r in reasons {
            let word = r.pack();
            assert!(word != 0);
            let back = CloseReason::unpack(word);
            assert_eq!(back, Some(r));
        }
        let none = CloseReason::unpack(0);
        assert_eq!(none, None);
        Ok(())
    }
}
