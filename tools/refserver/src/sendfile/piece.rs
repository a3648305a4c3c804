//! What a sendfile client's queue holds: its own frames, and byte ranges of its rooms' logs.

use std::{io, sync::Arc};

use mio::net::TcpStream;

use super::segment::Segment;
use crate::{
    epoll::{self, Outgoing},
    frame::Frame,
    queue::{Chunk, Queue},
};

/// A sendfile client's send queue.
pub type LogQueue = Queue<Piece>;

/// Bytes `start..end` of a log segment: one or more broadcast frames, back to back.
#[derive(Debug, Clone)]
pub struct LogRange {
    segment: Arc<Segment>,
    start: usize,
    end: usize,
}

impl LogRange {
    /// The range `start..end` of `segment`, which holds those bytes already.
    pub fn new(segment: Arc<Segment>, start: usize, end: usize) -> Self {
        Self {
            segment,
            start,
            end,
        }
    }

    /// The bytes, read back from the segment.
    #[cfg(test)]
    pub fn bytes(&self) -> Vec<u8> {
        self.segment.read(self.start, self.end)
    }

    #[cfg(test)]
    pub fn segment(&self) -> &Arc<Segment> {
        &self.segment
    }
}

/// One run of bytes in a sendfile client's queue.
#[derive(Debug, Clone)]
pub enum Piece {
    /// A frame for this client alone (an answer, error, notice about it, private message or
    /// history), or a broadcast frame that its room's log could not take.
    Frame(Frame),
    /// Broadcast frames of one room, as its log holds them.
    Range(LogRange),
}

impl From<Frame> for Piece {
    fn from(frame: Frame) -> Self {
        Self::Frame(frame)
    }
}

impl Piece {
    /// The frame and offset of a pending frame piece; `None` for a range.
    fn frame((piece, at): (&Self, usize)) -> Option<(&Frame, usize)> {
        match piece {
            Self::Frame(frame) => Some((frame, at)),
            Self::Range(_) => None,
        }
    }

    /// The bytes (a frame's, or read back from the log).
    #[cfg(test)]
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Self::Frame(frame) => frame.to_vec(),
            Self::Range(range) => range.bytes(),
        }
    }
}

impl Chunk for Piece {
    fn len(&self) -> usize {
        match self {
            Self::Frame(frame) => frame.len(),
            Self::Range(range) => range.end - range.start,
        }
    }

    /// A range that starts where the last one ends, in the same segment, extends it: the
    /// client heard every frame in between. Anything else (a frame for it alone, its own
    /// frame skipped, a new segment, another room) starts a new piece.
    fn absorb(&mut self, next: &Self) -> bool {
        match (self, next) {
            (Self::Range(last), Self::Range(next))
                if last.end == next.start && Arc::ptr_eq(&last.segment, &next.segment) =>
            {
                last.end = next.end;
                true
            }
            _ => false,
        }
    }
}

impl Outgoing for Piece {
    /// A range goes out with one `sendfile` from its offset; a run of frames with one
    /// `writev`.
    fn write_front(queue: &LogQueue, stream: &mut TcpStream) -> io::Result<usize> {
        match queue.pending().next() {
            Some((Self::Range(range), at)) => {
                range.segment.send(stream, range.start + at, range.end)
            }
            _ => epoll::write_frames(stream, queue.pending().map_while(Self::frame)),
        }
    }
}
