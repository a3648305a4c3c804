//! How the frames the chat decides to send reach the clients' send queues: the interface
//! between the protocol ([`crate::chat::Shard`], which decides who receives what and in which
//! order) and an engine's queues (which decide how the bytes are held and sent).
//!
//! - [`SharedFrames`] (epoll, io_uring): every recipient's [`TxQueue`] holds a reference to
//!   the one frame built for all of them.
//! - [`crate::sendfile::Logs`] (sendfile): a frame broadcast to a room is written once into
//!   the room's log in a memfd, and every recipient's queue holds its place in the log.
//!
//! Either way a client's queue holds exactly the bytes, in exactly the order, that the chat
//! sent it: frames for it alone (answers, errors, notices about it, private messages,
//! history) are pushed with [`SendQueue::push`], a room's broadcast frames with
//! [`SendQueue::push_shared`], in the order the chat decided them.

use crate::{chat::RoomId, frame::Frame, queue::TxQueue};

/// A client's queue of unsent bytes.
pub trait SendQueue: Default {
    /// A broadcast frame as the queues of its recipients hold it (see [`Fanout::share`]).
    type Shared;

    /// Bytes queued and not yet sent.
    fn bytes(&self) -> usize;

    /// Whether `len` more bytes fit under `max`: they do if nothing is queued (one frame
    /// larger than the limit is allowed into an empty queue) or the total stays within it.
    fn fits(&self, len: usize, max: usize) -> bool {
        let queued = self.bytes();
        queued == 0 || queued + len <= max
    }

    /// Appends a frame for this client alone.
    fn push(&mut self, frame: Frame);

    /// Appends a broadcast frame, as [`Fanout::share`] made it shareable.
    fn push_shared(&mut self, shared: &Self::Shared);

    /// Drops everything.
    fn clear(&mut self);
}

/// How one engine thread's clients are sent the frames broadcast to their rooms.
pub trait Fanout: Default {
    /// The send queue of each client.
    type Queue: SendQueue;

    /// Makes `frame`, broadcast to members of `room`, shareable by their queues; called once
    /// per frame, when its first recipient is found.
    fn share(&mut self, room: RoomId, frame: &Frame) -> <Self::Queue as SendQueue>::Shared;

    /// A client of this thread entered `room`.
    fn enter(&mut self, _room: RoomId) {}

    /// A client of this thread left `room` (moved elsewhere or disconnected).
    fn leave(&mut self, _room: RoomId) {}
}

/// The fan-out of the epoll and io_uring engines: each recipient's queue holds a reference to
/// the frame, which the kernel copies into each socket.
#[derive(Debug, Default)]
pub struct SharedFrames;

impl Fanout for SharedFrames {
    type Queue = TxQueue;

    fn share(&mut self, _room: RoomId, frame: &Frame) -> Frame {
        frame.clone()
    }
}
