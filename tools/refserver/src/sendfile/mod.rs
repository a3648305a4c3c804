//! The sendfile engine: the epoll engine ([`crate::epoll`], same threads, reads, protocol and
//! limits) whose broadcast frames are written once into a log in a memfd and sent to each
//! recipient with `sendfile(2)`, which hands the socket references to the log's pages
//! instead of copying the bytes (on loopback the only copy left is the client's own read).
//!
//! - **Logs** ([`log`]): each room that clients of a thread are in has its own log, so that
//!   what a member of the room receives is one run of the log, broken only where it must be.
//!   A frame broadcast to the room is appended (one `pwrite`) when its first recipient is
//!   found, after the frames before it, back to back, and never changed after. A log is a
//!   chain of memfd segments: once one holds [`log::SEGMENT_BYTES`], the next frame starts a
//!   new one.
//! - **Cursors** ([`piece`]): a recipient's queue is the same FIFO as epoll's, of pieces: a
//!   frame for it alone, or a byte range of a segment. The chat pushes, in the order it
//!   decides them, the frames only this client gets (answers, errors, a notice it caused,
//!   private messages, history replays) as frame pieces and each broadcast frame as its
//!   range; a range that starts where the client's last piece ends, in the same segment,
//!   extends that piece instead. So the queue's front is the client's cursor into the log,
//!   and the bytes it sends are exactly, in order, what the epoll engine would send it:
//!   - a frame for it alone between two broadcasts splits the run there, and goes out in
//!     its turn, after the range before it;
//!   - its own messages, which it must not receive, are in the log but not in its queue:
//!     the range stops before its message and the next one starts after it (as do frames
//!     of a room it was not in at the time, and segment boundaries).
//!
//!   Sending is the epoll engine's flush: ranges with one `sendfile` each, runs of frames
//!   with one `writev`, until the queue is empty or the socket is full. A client's unsent
//!   bytes are counted as epoll counts them, so the slow-consumer rule (`max_queue_bytes`)
//!   drops the same client at the same frame.
//! - **Trimming**: a segment is an `Arc`, held by its log while it is being written and by
//!   every queued range in it. Ranges are dropped as they are sent; when the log has moved
//!   on to a new segment and the last range in the old one is sent (or its client dropped),
//!   the memfd is closed and its pages are freed as soon as no socket buffer holds them.
//!   A room's log goes with its thread's last member (the queues keep what they point
//!   into). So the logs hold at most the segments being written (one per room with a
//!   broadcast) and those some unsent range is in: everything every cursor has passed is
//!   given back, a segment at a time. Rotating segments, rather than punching holes into
//!   one file, never touches a page a socket may still read: punching part of a large
//!   folio would zero bytes a retransmit could need.
//!
//! Whatever a log cannot take (no memfd can be created, no memory) is queued as the frame
//! itself, as in the epoll engine, so a client never misses a frame; the first such failure
//! is reported on stderr.

mod log;
mod piece;
mod segment;
#[cfg(test)]
mod tests;

use std::convert::Infallible;

pub use log::Logs;
use segment::Segment;

use crate::{epoll, Fatal, Options};

/// Runs the sendfile engine; returns only on a fatal error, or at once with
/// [`Fatal::Unavailable`] (before listening) if no memfd can be created.
pub fn run(opts: &Options) -> Result<Infallible, Fatal> {
    Segment::create().map_err(|e| Fatal::Unavailable(format!("memfd_create: {e}")))?;
    epoll::run::<Logs>(opts)
}
