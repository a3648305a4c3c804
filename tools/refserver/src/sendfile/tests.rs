//! The sendfile engine's queues against the epoll engine's: the same session, played into a
//! shard of each, must leave every client the same bytes to send, in the same order, and
//! drop the same slow consumers.

use std::sync::Arc;

use super::{
    log::SEGMENT_BYTES,
    piece::{LogQueue, Piece},
    Logs,
};
use crate::{
    chat::{CloseReason, Label, Limits, Registry, Shard},
    fanout::{Fanout, SharedFrames},
    frame::Frame,
    queue::{Chunk, Queue},
};

/// A chunk whose bytes a test can read.
trait Readable: Chunk {
    fn bytes(&self) -> Vec<u8>;
}

impl Readable for Frame {
    fn bytes(&self) -> Vec<u8> {
        self.to_vec()
    }
}

impl Readable for Piece {
    fn bytes(&self) -> Vec<u8> {
        Piece::bytes(self)
    }
}

/// One thing that happens in a session.
#[derive(Debug, Clone)]
enum Step {
    /// A client connects (tokens in order from 0, labelled `127.0.0.1:(1000 + token)`).
    Connect,
    /// Client `token` sends a frame with this payload.
    Say(usize, Vec<u8>),
    /// Client `token`'s socket takes this many bytes of its queue.
    Sent(usize, usize),
    /// Client `token` disconnects.
    Hangup(usize),
}

fn say(token: usize, text: impl AsRef<[u8]>) -> Step {
    Step::Say(token, text.as_ref().to_vec())
}

/// What a session left: each client's bytes, sent and unsent (in order of tokens), and the
/// clients disconnected, in order.
#[derive(Debug)]
struct Outcome {
    streams: Vec<Vec<u8>>,
    gone: Vec<usize>,
}

/// Plays `steps` into a shard with fan-out `F` and returns what the clients got, and how
/// many pieces the queues held at most (summed over clients, after each step).
fn play<F, T>(limits: Limits, steps: &[Step]) -> (Outcome, usize)
where
    F: Fanout<Queue = Queue<T>>,
    T: Readable + From<Frame>,
{
    let mut shard = Shard::<F>::new(Arc::new(Registry::new(limits)), false);
    let mut streams: Vec<Vec<u8>> = Vec::new();
    let mut gone = Vec::new();
    let mut most_pieces = 0;
    let unsent = |q: &Queue<T>| -> Vec<u8> {
        q.pending()
            .flat_map(|(c, at)| c.bytes()[at..].to_vec())
            .collect()
    };
    for step in steps {
        match step {
            Step::Connect => {
                let token = streams.len();
                let port = u16::try_from(1000 + token).expect("a port");
                let label = Label::from_addr(([127, 0, 0, 1], port).into());
                let id = shard.registry().admit(label).expect("admitted");
                shard.attach(token, id, label);
                streams.push(Vec::new());
            }
            Step::Say(token, payload) => shard.receive(*token, &kchat_proto::encode(payload)),
            Step::Sent(token, n) => {
                if let Some(q) = shard.queue(*token) {
                    let bytes = unsent(q);
                    let n = (*n).min(bytes.len());
                    streams[*token].extend_from_slice(&bytes[..n]);
                    q.advance(n);
                }
            }
            Step::Hangup(token) => shard.close(*token, CloseReason::Eof),
        }
        while let Some(token) = shard.next_dead() {
            gone.push(token);
            if let Some(departed) = shard.remove(token) {
                streams[token].extend(unsent(&departed.farewell));
            }
        }
        let pieces = (0..streams.len())
            .filter_map(|t| shard.queue(t).map(|q| q.pending().count()))
            .sum();
        most_pieces = most_pieces.max(pieces);
    }
    for (token, stream) in streams.iter_mut().enumerate() {
        if let Some(q) = shard.queue(token) {
            stream.extend(unsent(q));
        }
    }
    (Outcome { streams, gone }, most_pieces)
}

fn limits(max_queue_bytes: u32) -> Limits {
    Limits {
        max_clients: 100,
        max_msg_len: 4096,
        max_queue_bytes,
        max_msg_rate: 0,
        notices: true,
        history: 20,
        max_rooms: 10,
    }
}

/// Plays `steps` with both fan-outs; they must agree. Returns the outcome and the most
/// pieces the sendfile queues held.
fn both(limits: Limits, steps: &[Step]) -> (Outcome, usize) {
    let (copied, _) = play::<SharedFrames, Frame>(limits, steps);
    let (logged, pieces) = play::<Logs, Piece>(limits, steps);
    for (token, (c, l)) in copied.streams.iter().zip(&logged.streams).enumerate() {
        let at = c.iter().zip(l).position(|(a, b)| a != b);
        assert!(
            c == l,
            "client {token}: {} bytes copied, {} logged, first difference at {at:?}",
            c.len(),
            l.len()
        );
    }
    assert_eq!(copied.gone, logged.gone);
    (logged, pieces)
}

/// Private frames between broadcasts, own messages skipped, partial sends, rooms, history
/// replays, private messages, segments rotating, a departure and a message too long.
#[test]
fn every_client_gets_the_bytes_epoll_sends() {
    let mut steps = vec![Step::Connect, Step::Connect, Step::Connect, Step::Connect];
    steps.extend([
        say(0, "/nick ann"),
        say(1, "/nick bob"),
        say(2, "/nick cy"),
        say(0, "hello"),
        say(0, "again"),
        say(1, "/who"),
        say(2, "/msg ann psst"),
        say(1, "x"),
        Step::Sent(1, 30),
        say(2, "/join #r"),
        say(3, "/join #R"),
        say(2, "in r"),
        say(3, "me too"),
        say(0, "/rooms"),
        say(0, "/nick bob"),
    ]);
    // Enough for each room's log to start a new segment twice (half the rounds are each
    // room's), client 0 sending some of its queue as it goes.
    let big = 4000;
    let rounds = 4 * SEGMENT_BYTES / big + 8;
    for i in 0..rounds {
        let mut text = format!("{i:06} ").into_bytes();
        text.resize(big, b'.');
        steps.push(Step::Say(i % 4, text));
        if i % 7 == 0 {
            steps.push(Step::Sent(0, 9000));
        }
        if i % 50 == 0 {
            steps.push(say(1, "/who"));
        }
    }
    steps.extend([
        say(3, "/part"),
        say(1, "/msg 127.0.0.1:1003 hi"),
        Step::Connect,
        say(4, "newcomer"),
        Step::Hangup(1),
        say(0, "/join #r"),
        say(0, "bye"),
        Step::Sent(2, 100_000),
        Step::Say(2, vec![b'!'; 5000]),
        say(3, "last"),
    ]);
    let (outcome, pieces) = both(limits(1 << 30), &steps);
    assert_eq!(outcome.gone, [1, 2]);
    assert!(outcome.streams[0].len() > SEGMENT_BYTES);
    // Each queue holds a piece per run, not per frame: about one per message it sent (its
    // own skipped), per answer and per segment.
    let frames = steps.len();
    assert!(pieces < frames, "{pieces} pieces for {frames} steps");
}

/// With a small `max_queue_bytes`, the clients that stop reading are dropped at the same
/// frame, with the same bytes sent before, and the others keep everything.
#[test]
fn slow_consumers_are_dropped_at_the_same_frame() {
    let mut steps = vec![Step::Connect, Step::Connect, Step::Connect, Step::Connect];
    for i in 0..200 {
        let mut text = format!("{i:04} ").into_bytes();
        text.resize(1000 + i * 7, b'.');
        steps.push(Step::Say(i % 2, text));
        steps.push(Step::Sent(0, 5000));
        steps.push(Step::Sent(1, 5000));
        if i < 20 {
            steps.push(Step::Sent(3, 4000));
        }
        if i % 30 == 0 {
            steps.push(say(2, "/who"));
        }
    }
    let (outcome, _) = both(limits(16 * 1024), &steps);
    assert_eq!(outcome.gone, [2, 3]);
}

/// The log queues really are ranges of the log, sent from the memfd (not frame copies).
#[test]
fn broadcasts_are_queued_as_log_ranges() {
    let mut shard = Shard::<Logs>::new(Arc::new(Registry::new(limits(1 << 20))), false);
    for token in 0..3 {
        let label = Label::from_addr(([127, 0, 0, 1], 2000 + token).into());
        let id = shard.registry().admit(label).expect("admitted");
        shard.attach(usize::from(token), id, label);
    }
    for text in ["a", "b", "c"] {
        shard.receive(1, &kchat_proto::encode(text.as_bytes()));
    }
    shard.receive(2, &kchat_proto::encode(b"d"));
    let q: &LogQueue = shard.queue(0).expect("client 0");
    let kinds: Vec<&str> = q
        .pending()
        .map(|(p, _)| match p {
            Piece::Frame(_) => "frame",
            Piece::Range(_) => "range",
        })
        .collect();
    // Two join notices (one range: nobody else's frame in between), then a, b, c and d.
    assert_eq!(kinds, ["range"]);
    let q = shard.queue(1).expect("client 1");
    // Its history-less attach, the notice of 2 joining, its own a, b, c skipped, then d.
    assert_eq!(q.pending().count(), 2);
}
