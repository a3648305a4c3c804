// SPDX-License-Identifier: GPL-2.0
//! Reading a connection: one edge-triggered read loop for every protocol, each read(2)
//! going straight into the protocol's receive buffer and parsed in place, with the run's
//! read size.

use std::io::{self, Read};

use kchat_proto::{irc::LineSplitter, Decoder};
use mio::net::TcpStream;

use crate::{resp, sys};

/// A receive buffer that is read into directly and parsed in place.
pub(crate) trait RecvBuf {
    /// Room for at least `at_least` bytes (possibly more).
    fn spare(&mut self, at_least: usize) -> &mut [u8];
    /// `n` bytes were written at the start of the last [`RecvBuf::spare`].
    fn filled(&mut self, n: usize);
}

/// Implements [`RecvBuf`] for a type by the `spare` and `filled` of what `$buf` (an
/// expression of `$this`, the receiver) gives.
macro_rules! recv_buf {
    ($($t:ty: |$this:ident| $buf:expr),*) => {$(
        impl RecvBuf for $t {
            fn spare(&mut self, at_least: usize) -> &mut [u8] {
                let $this = self;
                $buf.spare(at_least)
            }
            fn filled(&mut self, n: usize) {
                let $this = self;
                $buf.filled(n)
            }
        }
    )*};
}

recv_buf!(
    Decoder: |d| d,
    resp::Reader: |r| r,
    LineSplitter: |l| l.buffer()
);

/// How many bytes each read(2) asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadSize {
    /// All the room the buffer has once it has room for this many (the default, sized from
    /// the number of connections; a buffer that grew asks for more).
    AtLeast(usize),
    /// Exactly this many (`--read-size`): one frame at a time, say, as naive clients read.
    Exactly(usize),
}

/// A readable event on a connection, as the read loop needs it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Readable {
    /// Bytes to ask for per read(2).
    pub(crate) size: ReadSize,
    /// The event said the peer closed: read to EOF, even after a short read.
    pub(crate) closing: bool,
}

/// What a connection does after a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum After {
    /// Keep reading.
    Continue,
    /// A stalled client got what it waited for: stop reading it for good.
    StopReading,
}

/// Reads everything available on `stream` into `buf` (edge-triggered: until EAGAIN, or a
/// short read unless the peer is closing), calling `parse` after each read with the time of
/// that read. `Err` means the connection is finished (closed by the server or broken).
pub(crate) fn read_all<B: RecvBuf>(
    stream: &mut TcpStream,
    buf: &mut B,
    ev: Readable,
    mut parse: impl FnMut(&mut B, u64) -> io::Result<After>,
) -> io::Result<After> {
    loop {
        let room = match ev.size {
            ReadSize::AtLeast(n) => buf.spare(n),
            ReadSize::Exactly(n) => &mut buf.spare(n)[..n],
        };
        let want = room.len();
        let n = match stream.read(room) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(After::Continue),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        buf.filled(n);
        // One timestamp per read: everything in it had arrived by then.
        if parse(buf, sys::monotonic_ns())? == After::StopReading {
            return Ok(After::StopReading);
        }
        if n < want && !ev.closing {
            // A short read drained the socket; the next arrival raises a new edge, so the
            // read that would only say EAGAIN is skipped. Not when the peer's FIN came with
            // this edge: it raises none of its own, and only the next read sees the EOF.
            return Ok(After::Continue);
        }
    }
}
