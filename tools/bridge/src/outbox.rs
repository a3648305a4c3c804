// SPDX-License-Identifier: GPL-2.0
//! What waits to be written to one peer (NATS or kchat), bounded in bytes, and the thread
//! that writes it.
//!
//! The queue outlives connections: the bridge keeps queueing while its peer is away, up to the
//! bound, and a new connection drains what is left. Beyond the bound a message is dropped
//! and counted (the bridge logs the count), so memory stays bounded whatever the peer does.
//!
//! A connection goes through [`Outbox::attach`] (a new generation, nothing written yet),
//! [`Outbox::open`] (what must go first, then the queue is written; or, held, only what must
//! go first until [`Outbox::release`], so that nothing waiting is spent on a connection the
//! peer has not accepted yet) and [`Outbox::detach`].
//! One writer thread per connection ([`write_loop`]) writes its generation's batches and
//! stops when the generation ends. Whoever attaches joins the previous writer before
//! attaching again, so a batch put back after a failed write is never overtaken by a new
//! connection's first frames.

use std::{
    collections::VecDeque,
    io::{self, Write},
    net::{Shutdown, TcpStream},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Condvar, Mutex, MutexGuard,
    },
};

/// How a queued message is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Always queued, even over the bound (protocol replies, hello and state after a
    /// reconnect: small and few).
    Control,
    /// Queued within the bound, kept across reconnects (messages).
    Data,
    /// Queued within the bound, discarded when a new connection opens (presence for kchat,
    /// which a reconnect posts again whole).
    Volatile,
    /// Always queued, first; discarded when a new connection opens (an answer to this
    /// connection's peer, `PONG`, or a `PING` of ours).
    Reply,
}

/// One queued message: bytes ready for the wire.
#[derive(Debug)]
struct Item {
    bytes: Vec<u8>,
    kind: Kind,
    /// For a NATS `PUB`, its payload's length (checked against the server's max_payload);
    /// 0 otherwise.
    payload_len: usize,
    /// The chat messages it carries (a batch of room messages carries several), as drops
    /// are counted.
    messages: u64,
}

/// Drops since they were last reported.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drops {
    /// Messages dropped because the queue was full.
    pub full: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Messages dropped because their publish exceeded the server's max_payload.
    pub oversize: u64,
}

#[derive(Debug, Default)]
struct State {
    items: VecDeque<Item>,
    /// Bytes of `items`.
    bytes: usize,
    /// The attached connection's generation, 0 when none.
    gen: u64,
    /// Generations handed out.
    last_gen: u64,
    /// True once the attached connection may be written to.
    open: bool,
    /// While opened held: how many more messages may be written before [`Outbox::release`].
    allowance: Option<usize>,
    drops: Drops,
    /// Messages written, ever.
    written: u64,
    /// Writers asleep in [`Outbox::next_batch`] (at most one: a writer is joined before the
    /// next attaches): a push wakes them only then (a wake-up is a system call; a writer
    /// still writing finds the push when it takes its next batch).
    writers_waiting: usize,
}

/// A bounded queue for one peer.
#[derive(Debug)]
pub struct Outbox {
    bound: usize,
    state: Mutex<State>,
    ready: Condvar,
}

/// Largest batch a writer takes at once.
const BATCH_BYTES: usize = 64 * 1024;

impl Outbox {
    /// An empty queue holding at most `bound` bytes of [`Kind::Data`] and [`Kind::Volatile`].
    pub fn new(bound: usize) -> Self {
        Self {
            bound,
            state: Mutex::new(State::default()),
            ready: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `bytes`; false if it was dropped (the queue is full).
    pub fn push(&self, bytes: Vec<u8>, kind: Kind) -> bool {
        self.push_pub(bytes, 0, 1, kind)
    }

    /// Queues a NATS `PUB` whose payload is `payload_len` bytes and carries `messages` chat
    /// messages; false if it was dropped.
    pub fn push_pub(&self, bytes: Vec<u8>, payload_len: usize, messages: u64, kind: Kind) -> bool {
        let mut s = self.lock();
        if matches!(kind, Kind::Data | Kind::Volatile) && s.bytes + bytes.len() > self.bound {
            s.drops.full += messages;
            s.drops.bytes += bytes.len() as u64;
            return false;
        }
        s.bytes += bytes.len();
        s.items.push_back(Item {
            bytes,
            kind,
            payload_len,
            messages,
        });
        if s.open && s.writers_waiting > 0 {
            self.ready.notify_all();
        }
        true
    }

    /// Puts `bytes` first in the queue: a [`Kind::Reply`], which must not wait behind the
    /// backlog (it may be written even while the connection is held).
    pub fn push_front(&self, bytes: Vec<u8>) {
        let mut s = self.lock();
        s.bytes += bytes.len();
        s.items.push_front(Item {
            bytes,
            kind: Kind::Reply,
            payload_len: 0,
            messages: 1,
        });
        if let Some(a) = s.allowance.as_mut() {
            *a += 1;
        }
        if s.open && s.writers_waiting > 0 {
            self.ready.notify_all();
        }
    }

    /// Starts a connection's generation; nothing is written until [`Outbox::open`].
    pub fn attach(&self) -> u64 {
        let mut s = self.lock();
        s.last_gen += 1;
        s.gen = s.last_gen;
        s.open = false;
        self.ready.notify_all();
        s.gen
    }

    /// Lets generation `gen` be written: discards [`Kind::Volatile`] and [`Kind::Reply`]
    /// messages, puts `first` before everything else. `hold`: only `first` is written until
    /// [`Outbox::release`]. False (and nothing done) if `gen` is no longer attached.
    pub fn open(&self, gen: u64, first: Vec<Vec<u8>>, hold: bool) -> bool {
        let mut s = self.lock();
        if s.gen != gen || s.open {
            return false;
        }
        let mut freed = 0;
        s.items.retain(|i| {
            let keep = matches!(i.kind, Kind::Control | Kind::Data);
            if !keep {
                freed += i.bytes.len();
            }
            keep
        });
        s.bytes -= freed;
        s.allowance = hold.then_some(first.len());
        for bytes in first.into_iter().rev() {
            s.bytes += bytes.len();
            s.items.push_front(Item {
                bytes,
                kind: Kind::Control,
                payload_len: 0,
                messages: 1,
            });
        }
        s.open = true;
        self.ready.notify_all();
        true
    }

    /// Lets a held generation `gen` write the whole queue.
    pub fn release(&self, gen: u64) {
        let mut s = self.lock();
        if s.gen == gen {
            s.allowance = None;
            self.ready.notify_all();
        }
    }

    /// Ends generation `gen` (its writer stops); queued messages stay.
    pub fn detach(&self, gen: u64) {
        let mut s = self.lock();
        if s.gen == gen {
            s.gen = 0;
            s.open = false;
            s.allowance = None;
            self.ready.notify_all();
        }
    }

    /// Waits for a batch for generation `gen`: `None` once `gen` has ended.
    fn next_batch(&self, gen: u64) -> Option<Vec<Item>> {
        let mut s = self.lock();
        loop {
            if s.gen != gen {
                return None;
            }
            if s.open && !s.items.is_empty() && s.allowance != Some(0) {
                break;
            }
            s.writers_waiting += 1;
            s = self.ready.wait(s).unwrap_or_else(|e| e.into_inner());
            s.writers_waiting -= 1;
        }
        let s = &mut *s;
        let mut batch = Vec::new();
        let mut size = 0;
        while let Some(item) = s.items.front() {
            if !batch.is_empty() && size + item.bytes.len() > BATCH_BYTES {
                break;
            }
            match s.allowance.as_mut() {
                Some(0) => break,
                Some(a) => *a -= 1,
                None => {}
            }
            size += item.bytes.len();
            batch.push(s.items.pop_front().expect("front exists"));
        }
        s.bytes -= size;
        Some(batch)
    }

    /// Puts back, first, what a failed write did not send.
    fn put_back(&self, items: Vec<Item>) {
        let mut s = self.lock();
        for item in items.into_iter().rev() {
            s.bytes += item.bytes.len();
            s.items.push_front(item);
        }
    }

    /// Counts what a writer sent or refused.
    fn written(&self, sent: u64, oversize: u64) {
        let mut s = self.lock();
        s.written += sent;
        s.drops.oversize += oversize;
    }

    /// The drops since the last call.
    pub fn take_drops(&self) -> Drops {
        std::mem::take(&mut self.lock().drops)
    }

    /// Messages and bytes queued now.
    pub fn queued(&self) -> (usize, usize) {
        let s = self.lock();
        (s.items.len(), s.bytes)
    }

    /// Messages written, ever.
    pub fn written_total(&self) -> u64 {
        self.lock().written
    }

    /// The queued messages' bytes, oldest first (for tests).
    #[cfg(test)]
    pub fn contents(&self) -> Vec<Vec<u8>> {
        self.lock().items.iter().map(|i| i.bytes.clone()).collect()
    }

    /// Takes every queued message, oldest first (for tests).
    #[cfg(test)]
    pub fn drain(&self) -> Vec<Vec<u8>> {
        let mut s = self.lock();
        s.bytes = 0;
        s.items.drain(..).map(|i| i.bytes).collect()
    }
}

/// Writes all of `buf`; on failure, how much was written before it.
fn write_counting(stream: &mut impl Write, buf: &[u8]) -> Result<(), (usize, io::Error)> {
    let mut done = 0;
    while done < buf.len() {
        match stream.write(&buf[done..]) {
            Ok(0) => {
                return Err((
                    done,
                    io::Error::new(io::ErrorKind::WriteZero, "peer took no bytes"),
                ))
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((done, e)),
        }
    }
    Ok(())
}

/// Writes generation `gen` of `outbox` to `stream` until the generation ends (`Ok`) or a
/// write fails (`Err`, after putting back every message not wholly written and shutting the
/// stream down so that its reader sees the end too). With `max_payload`, a `PUB` whose
/// payload exceeds it is dropped and counted, never sent (the server would close the
/// connection).
pub fn write_loop(
    outbox: &Outbox,
    gen: u64,
    mut stream: TcpStream,
    max_payload: Option<&AtomicUsize>,
) -> io::Result<()> {
    let mut buf = Vec::with_capacity(BATCH_BYTES);
    let mut ends = Vec::new();
    while let Some(batch) = outbox.next_batch(gen) {
        buf.clear();
        ends.clear();
        let limit = max_payload.map_or(usize::MAX, |m| m.load(Ordering::Relaxed));
        let mut oversize = 0;
        for item in &batch {
            if item.payload_len > limit {
                oversize += item.messages;
            } else {
                buf.extend_from_slice(&item.bytes);
            }
            ends.push(buf.len());
        }
        match write_counting(&mut stream, &buf) {
            Ok(()) => {
                let refused = batch.iter().filter(|i| i.payload_len > limit).count();
                outbox.written((batch.len() - refused) as u64, oversize);
            }
            Err((done, e)) => {
                let unsent: Vec<Item> = batch
                    .into_iter()
                    .zip(ends.iter())
                    .filter(|(_, &end)| end > done)
                    .map(|(item, _)| item)
                    .collect();
                outbox.written(ends.iter().filter(|&&end| end <= done).count() as u64, 0);
                outbox.put_back(unsent);
                let _ = stream.shutdown(Shutdown::Both);
                return Err(e);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{io::Read, net::TcpListener, sync::Arc, thread};

    fn v(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    #[test]
    fn bounded_with_drops_counted() {
        let o = Outbox::new(10);
        assert!(o.push(v("12345"), Kind::Data));
        assert!(o.push(v("67890"), Kind::Volatile));
        assert!(!o.push(v("x"), Kind::Data), "full");
        assert!(!o.push(v("yy"), Kind::Volatile), "full");
        assert!(
            o.push(v("control"), Kind::Control),
            "control goes over the bound"
        );
        assert_eq!(o.queued(), (3, 17));
        assert_eq!(
            o.take_drops(),
            Drops {
                full: 2,
                bytes: 3,
                oversize: 0
            }
        );
        assert_eq!(o.take_drops(), Drops::default(), "reported once");
    }

    #[test]
    fn open_discards_volatile_and_replies_and_puts_first_in_front() {
        let o = Outbox::new(1000);
        o.push(v("msg1"), Kind::Data);
        o.push(v("join"), Kind::Volatile);
        o.push_front(v("PONG"));
        o.push(v("hello"), Kind::Control);
        o.push(v("msg2"), Kind::Data);
        let gen = o.attach();
        assert!(
            !o.open(gen + 1, vec![], false),
            "not the attached generation"
        );
        assert!(o.open(gen, vec![v("a"), v("b")], false));
        assert!(!o.open(gen, vec![v("c")], false), "opened once");
        assert_eq!(
            o.contents(),
            vec![v("a"), v("b"), v("msg1"), v("hello"), v("msg2")]
        );
        assert_eq!(o.queued(), (5, 15));
        o.push_front(v("PONG"));
        assert_eq!(o.contents()[0], v("PONG"));
    }

    /// Held, a connection gets what goes first and the replies, nothing else until released.
    #[test]
    fn held_until_released() {
        let o = Arc::new(Outbox::new(1000));
        o.push(v("data"), Kind::Data);
        let gen = o.attach();
        o.open(gen, vec![v("CONNECT"), v("PING")], true);
        let taken = |o: &Outbox| {
            o.next_batch(gen)
                .unwrap()
                .into_iter()
                .map(|i| i.bytes)
                .collect::<Vec<_>>()
        };
        assert_eq!(taken(&o), vec![v("CONNECT"), v("PING")]);
        o.push_front(v("PONG"));
        assert_eq!(taken(&o), vec![v("PONG")]);
        // Nothing more until released: a writer waits.
        let waiting = {
            let o = o.clone();
            thread::spawn(move || o.next_batch(gen).map(|b| b.len()))
        };
        thread::sleep(std::time::Duration::from_millis(50));
        assert!(!waiting.is_finished());
        o.release(gen);
        assert_eq!(waiting.join().unwrap(), Some(1));
    }

    /// A writer writes the queue in order once opened, what is queued meanwhile too, skips
    /// oversized publishes, and stops when its generation ends, leaving later messages queued.
    #[test]
    fn writer_writes_in_order_and_stops_on_detach() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let o = Arc::new(Outbox::new(1 << 20));
        let max = Arc::new(AtomicUsize::new(4));
        o.push(v("one;"), Kind::Data);
        let gen = o.attach();
        let writer = {
            let (o, max) = (o.clone(), max.clone());
            thread::spawn(move || write_loop(&o, gen, client, Some(&max)))
        };
        o.open(gen, vec![v("first;")], false);
        o.push_pub(v("too-big;"), 5, 1, Kind::Data);
        o.push_pub(v("fits;"), 4, 1, Kind::Data);
        let want = b"first;one;fits;";
        let mut got = vec![0; want.len()];
        server.read_exact(&mut got).unwrap();
        assert_eq!(&got, want);
        o.detach(gen);
        writer.join().unwrap().unwrap();
        o.push(v("later"), Kind::Data);
        assert_eq!(o.contents(), vec![v("later")]);
        assert_eq!(o.written_total(), 3);
        assert_eq!(o.take_drops().oversize, 1);
    }

    /// A write that fails puts back what it did not send, first, in order.
    #[test]
    fn failed_write_puts_back_unsent() {
        struct Half(usize);
        impl Write for Half {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::new(io::ErrorKind::BrokenPipe, "gone"));
                }
                let n = b.len().min(self.0);
                self.0 -= n;
                Ok(n)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        assert!(write_counting(&mut Half(100), b"abc").is_ok());
        let (done, e) = write_counting(&mut Half(5), b"abcdefgh").unwrap_err();
        assert_eq!((done, e.kind()), (5, io::ErrorKind::BrokenPipe));
        let o = Outbox::new(100);
        o.push(v("c"), Kind::Data);
        o.put_back(vec![
            Item {
                bytes: v("a"),
                kind: Kind::Data,
                payload_len: 0,
                messages: 1,
            },
            Item {
                bytes: v("b"),
                kind: Kind::Data,
                payload_len: 0,
                messages: 1,
            },
        ]);
        assert_eq!(o.contents(), vec![v("a"), v("b"), v("c")]);
        assert_eq!(o.queued(), (3, 3));
    }
}
