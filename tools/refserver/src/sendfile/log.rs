//! The rooms' logs: each room's broadcast frames, written once into memfd segments, back to
//! back, for every recipient to send from.

use std::{
    collections::{hash_map, HashMap},
    io,
    sync::Arc,
};

use super::{
    piece::{LogQueue, LogRange, Piece},
    segment::Segment,
};
use crate::{chat::RoomId, fanout::Fanout, frame::Frame};

/// Bytes a segment is filled to before its log starts a new one (its last frame may go
/// past). A segment no queue points into any more is closed, so this is the granularity at
/// which a log's memory is given back.
pub const SEGMENT_BYTES: usize = 256 * 1024;

/// The sendfile engine's fan-out: a log per room that clients of this thread are in.
#[derive(Debug, Default)]
pub struct Logs {
    rooms: HashMap<RoomId, Log>,
    /// Whether a failure to write a log was reported (the first one is).
    warned: bool,
}

/// One room's log.
#[derive(Debug, Default)]
struct Log {
    /// This thread's clients in the room; the log goes when the last one leaves.
    members: usize,
    /// The segment being written and the offset its next frame goes at: `None` before the
    /// room's first broadcast, and after a failed write (the next frame starts a new
    /// segment, so nothing is ever written over).
    tail: Option<(Arc<Segment>, usize)>,
}

impl Log {
    /// Writes `frame` after the last one; returns where it went.
    fn append(&mut self, frame: &[u8]) -> io::Result<LogRange> {
        let (segment, start) = match self.tail.take() {
            Some((segment, head)) if head < SEGMENT_BYTES => (segment, head),
            _ => (Arc::new(Segment::create()?), 0),
        };
        segment.write_at(frame, start)?;
        let end = start + frame.len();
        self.tail = Some((segment.clone(), end));
        Ok(LogRange::new(segment, start, end))
    }
}

impl Fanout for Logs {
    type Queue = LogQueue;

    /// The frame's range in the room's log; the frame itself if the log cannot take it (no
    /// memfd or no memory), which its recipients then queue as epoll does.
    fn share(&mut self, room: RoomId, frame: &Frame) -> Piece {
        match self.rooms.entry(room).or_default().append(frame) {
            Ok(range) => Piece::Range(range),
            Err(e) => {
                if !std::mem::replace(&mut self.warned, true) {
                    eprintln!("kchat-ref: writing a room's log: {e}; queueing copies instead");
                }
                Piece::Frame(frame.clone())
            }
        }
    }

    fn enter(&mut self, room: RoomId) {
        self.rooms.entry(room).or_default().members += 1;
    }

    /// Drops the room's log with the last member: queues keep the segments they point
    /// into until they have sent those bytes.
    fn leave(&mut self, room: RoomId) {
        if let hash_map::Entry::Occupied(mut log) = self.rooms.entry(room) {
            let members = &mut log.get_mut().members;
            *members = members.saturating_sub(1);
            if *members == 0 {
                log.remove();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{fanout::SendQueue, frame::build, queue::Chunk};

    fn contents(q: &LogQueue) -> Vec<u8> {
        q.pending()
            .flat_map(|(p, at)| p.bytes()[at..].to_vec())
            .collect()
    }

    #[test]
    fn ranges_merge_only_when_contiguous() {
        let (lobby, other) = (RoomId::nth(0), RoomId::nth(1));
        let mut logs = Logs::default();
        logs.enter(lobby);
        logs.enter(other);
        let (a, b, c) = (build(&[b"a"]), build(&[b"bb"]), build(&[b"ccc"]));
        let private = build(&[b"private"]);
        let mut q = LogQueue::default();
        q.push_shared(&logs.share(lobby, &a));
        q.push_shared(&logs.share(lobby, &b));
        assert_eq!(q.pending().count(), 1, "a and b are one range");
        // c goes into the log but not to this queue (its own frame, say): the next range
        // starts a new piece, as do a private frame and another room's frame.
        logs.share(lobby, &c);
        q.push_shared(&logs.share(lobby, &a));
        q.push(private.clone());
        q.push_shared(&logs.share(lobby, &b));
        q.push_shared(&logs.share(other, &c));
        assert_eq!(q.pending().count(), 5);
        let want: Vec<u8> = [&a, &b, &a, &private, &b, &c]
            .iter()
            .flat_map(|f| f.to_vec())
            .collect();
        assert_eq!(q.bytes(), want.len());
        assert_eq!(contents(&q), want);
        q.advance(7);
        assert_eq!(contents(&q), want[7..]);
        assert_eq!(q.bytes(), want.len() - 7);
    }

    #[test]
    fn segments_rotate_and_close_once_sent() {
        let lobby = RoomId::nth(0);
        let mut logs = Logs::default();
        logs.enter(lobby);
        let frame = build(&[&[b'x'; 4000]]);
        let mut q = LogQueue::default();
        q.push_shared(&logs.share(lobby, &frame));
        let Some((Piece::Range(first), _)) = q.pending().next() else {
            panic!("a broadcast frame is queued as a range");
        };
        let first = Arc::downgrade(first.segment());
        let per_segment = SEGMENT_BYTES.div_ceil(frame.len());
        for _ in 0..per_segment {
            q.push_shared(&logs.share(lobby, &frame));
        }
        let lens: Vec<usize> = q.pending().map(|(p, _)| p.len()).collect();
        assert_eq!(lens, [per_segment * frame.len(), frame.len()]);
        q.advance(lens[0] - 1);
        assert!(first.upgrade().is_some(), "the queue still points into it");
        q.advance(1);
        assert!(first.upgrade().is_none(), "sent and rotated out: closed");
        assert_eq!(contents(&q), frame.to_vec());
        let Some((Piece::Range(second), _)) = q.pending().next() else {
            panic!("a range");
        };
        let second = Arc::downgrade(second.segment());
        logs.leave(lobby);
        assert!(
            logs.rooms.is_empty(),
            "the last member took the log with it"
        );
        assert!(second.upgrade().is_some(), "the queue still points into it");
        q.advance(frame.len());
        assert!(second.upgrade().is_none());
    }
}
