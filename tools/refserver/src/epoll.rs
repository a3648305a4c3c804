//! The epoll engine, on mio: non-blocking sockets, edge-triggered readiness, one or more
//! threads each owning a shard of the clients.
//!
//! Per wake-up a worker reads each ready socket into one 64 KiB buffer and parses every frame
//! in it ([`Shard::receive`]); every relayed frame is built once and queued by reference to
//! each recipient. Once the events of a wake-up are handled, each client that got frames is
//! flushed with `writev` of its whole queue (as many iovecs as it holds, up to [`MAX_IOV`]),
//! so a burst of messages costs one system call per recipient, not one per message.
//!
//! The engine is generic over its [`Fanout`], which decides what a client's queue holds and
//! ([`Outgoing`]) how it is written: shared frames and `writev` for `kchat-ref epoll`, byte
//! ranges of a room's log and `sendfile` for `kchat-ref sendfile` ([`crate::sendfile`]).
//!
//! With `--threads N > 1`, worker 0 accepts and deals connections round-robin to the workers.
//! A frame for a room (or for one client) is delivered by its own worker to its clients there,
//! and passed once per wake-up, as a batch of shared frames with their audience
//! ([`Post`]s), to each other worker's inbox (a mutex-protected FIFO and a mio `Waker`); the
//! receiving worker delivers it to its clients in that room (or to that client). What this
//! keeps:
//!
//! - each sender's frames arrive in order, and a client's `joined` notice comes before its
//!   first message everywhere (FIFO inboxes);
//! - a client receives what was posted to its room after it connected: a handed-off
//!   connection travels through the same FIFO as the frames, after every frame its acceptor
//!   posted before it, and worker 0 empties its own inbox before it attaches a connection
//!   itself;
//! - a client receives each message of its room exactly once, replayed from the history or
//!   live: a chat message carries the sequence number it was recorded with, and a client
//!   that entered the room later (and so had it in its replay) skips it;
//! - causality: a batch is put into every other inbox at once (all their locks held, taken in
//!   ascending order), so no reply to a frame can overtake that frame anywhere.
//!
//! Unlike one thread (and kchat's registry mutex), the workers do not impose one total order
//! on frames from senders in different workers that are not causally related, and a frame
//! still on its way to another worker when its recipient leaves the room is not delivered.

use std::{
    convert::Infallible,
    io::{self, IoSlice, Read, Write},
    mem,
    net::{Shutdown, SocketAddr},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    thread,
    time::{Duration, Instant},
};

use mio::{
    net::{TcpListener, TcpStream},
    Events, Interest, Poll, Token, Waker,
};
use socket2::SockRef;

use crate::{
    chat::{CloseReason, Label, Post, Registry, Shard},
    fanout::Fanout,
    frame::Frame,
    net,
    queue::{Chunk, Queue, TxQueue},
    Fatal, Options,
};

/// The listener's token (worker 0 only).
const LISTENER: Token = Token(usize::MAX);
/// The inbox waker's token (when there are several workers).
const WAKER: Token = Token(usize::MAX - 1);

/// Bytes read per `read` call.
const READ_BUF: usize = 64 * 1024;
/// Bytes read from one client per wake-up before the others get their turn; the rest is read
/// before the worker sleeps again.
const READ_BUDGET: usize = 256 * 1024;
/// Connections accepted per wake-up before the clients get their turn.
const ACCEPT_BUDGET: usize = 128;
/// Most iovecs per `writev` (Linux allows 1024).
const MAX_IOV: usize = 512;

/// Runs the epoll engine, its queues filled by `F`; returns only on a fatal error.
pub fn run<F>(opts: &Options) -> Result<Infallible, Fatal>
where
    F: Fanout + Send + 'static,
    F::Queue: Flush + Send,
{
    net::raise_fd_limit();
    let mut listener = TcpListener::from_std(net::listen(opts.port, opts.backlog)?);
    let registry = Arc::new(Registry::new(opts.limits));
    let mut polls = Vec::new();
    for _ in 0..opts.threads {
        polls.push(Poll::new()?);
    }
    let hub = if opts.threads > 1 {
        let mut inboxes = Vec::new();
        for poll in &polls {
            inboxes.push(Inbox {
                mail: Mutex::default(),
                waker: Waker::new(poll.registry(), WAKER)?,
            });
        }
        Some(Arc::new(Hub { inboxes }))
    } else {
        None
    };
    let mut workers: Vec<Worker<F>> = polls
        .into_iter()
        .enumerate()
        .map(|(me, poll)| Worker::new(me, poll, registry.clone(), hub.clone()))
        .collect();
    let mut first = workers.remove(0);
    first
        .poll
        .registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    first.listener = Some(listener);
    for worker in workers {
        let name = format!("kchat-ref-{}", worker.me);
        thread::Builder::new().name(name).spawn(move || {
            let Err(e) = worker.run();
            eprintln!("kchat-ref: worker failed: {e}");
            std::process::exit(1);
        })?;
    }
    let Err(e) = first.run();
    Err(Fatal::Io(e))
}

/// What the workers share when there are several: one inbox each.
#[derive(Debug)]
struct Hub {
    inboxes: Vec<Inbox>,
}

/// Mail for one worker, and the waker that tells it there is some.
#[derive(Debug)]
struct Inbox {
    mail: Mutex<Mail>,
    waker: Waker,
}

/// A worker's mail, in the order it was posted.
type Mail = Vec<Item>;

#[derive(Debug)]
enum Item {
    /// A connection for the worker to serve, admitted to the registry already.
    Adopt(Adoption),
    /// A frame for the worker's clients in a room, or for one of them.
    Post(Post),
}

#[derive(Debug)]
struct Adoption {
    stream: TcpStream,
    id: u64,
    label: Label,
}

impl Inbox {
    fn lock(&self) -> MutexGuard<'_, Mail> {
        self.mail.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes the worker, if its inbox was empty before mail was added (if not, a wake-up is
    /// already on its way and the worker takes everything at once).
    fn wake(&self, was_empty: bool) {
        if was_empty {
            // Writing an eventfd fails only if its counter is full, and then a wake-up is
            // pending anyway.
            let _ = self.waker.wake();
        }
    }
}

impl Hub {
    /// Hands a connection to worker `to`.
    fn adopt(&self, to: usize, adoption: Adoption) {
        let inbox = &self.inboxes[to];
        let mut mail = inbox.lock();
        let was_empty = mail.is_empty();
        mail.push(Item::Adopt(adoption));
        drop(mail);
        inbox.wake(was_empty);
    }

    /// Puts `posts` into the inbox of every worker but `from`, all at once: every lock is
    /// held (taken in ascending order, so two posters cannot deadlock) until all have them.
    fn broadcast(&self, from: usize, posts: &[Post]) {
        let mut locked: Vec<(&Inbox, MutexGuard<'_, Mail>)> = self
            .inboxes
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != from)
            .map(|(_, inbox)| (inbox, inbox.lock()))
            .collect();
        let mut wake = Vec::with_capacity(locked.len());
        for (inbox, mail) in &mut locked {
            wake.push((*inbox, mail.is_empty()));
            mail.extend(posts.iter().cloned().map(Item::Post));
        }
        drop(locked);
        for (inbox, was_empty) in wake {
            inbox.wake(was_empty);
        }
    }
}

/// One thread of the engine and the clients it owns.
struct Worker<F: Fanout> {
    me: usize,
    poll: Poll,
    /// Worker 0's listener.
    listener: Option<TcpListener>,
    /// Sockets by token; the shard holds the same tokens' protocol state.
    conns: Vec<Option<TcpStream>>,
    free: Vec<usize>,
    shard: Shard<F>,
    hub: Option<Arc<Hub>>,
    /// The worker the next accepted connection goes to.
    next_worker: usize,
    buf: Box<[u8]>,
    /// Clients whose read budget ran out: read again before sleeping.
    unfinished: Vec<usize>,
    /// The listener may have connections waiting (edge-triggered: until `accept` says
    /// `WouldBlock`).
    accept_pending: bool,
    /// An empty mailbox to swap with the inbox, so mail is taken without holding the lock
    /// (and both keep their capacity).
    spare: Mail,
}

impl<F: Fanout> Worker<F>
where
    F::Queue: Flush,
{
    fn new(me: usize, poll: Poll, registry: Arc<Registry>, hub: Option<Arc<Hub>>) -> Self {
        Self {
            me,
            poll,
            listener: None,
            conns: Vec::new(),
            free: Vec::new(),
            shard: Shard::new(registry, hub.is_some()),
            hub,
            next_worker: 0,
            buf: vec![0; READ_BUF].into_boxed_slice(),
            unfinished: Vec::new(),
            accept_pending: false,
            spare: Mail::default(),
        }
    }

    fn run(mut self) -> io::Result<Infallible> {
        let mut events = Events::with_capacity(1024);
        let mut again = Vec::new();
        loop {
            let busy = self.accept_pending || !self.unfinished.is_empty();
            let timeout = if busy {
                Some(Duration::ZERO)
            } else {
                // Sleep until a client parked for its rate may be read again, at most.
                self.shard
                    .next_wake()
                    .map(|when| when.saturating_duration_since(Instant::now()))
            };
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept_pending = true,
                    WAKER => self.read_inbox(),
                    Token(t) => {
                        let closed = ev.is_read_closed() || ev.is_error();
                        if ev.is_readable() || closed {
                            self.read(t, closed);
                        }
                        if ev.is_writable() {
                            self.flush(t);
                        }
                    }
                }
            }
            // Clients read again without a new event read on to the end of the stream, so that
            // an end seen (and consumed) by an earlier event is not missed.
            mem::swap(&mut again, &mut self.unfinished);
            for t in again.drain(..) {
                self.read(t, true);
            }
            let now = Instant::now();
            while let Some(t) = self.shard.pop_due(now) {
                self.read(t, true);
            }
            if self.accept_pending {
                self.accept();
            }
            self.settle();
        }
    }

    /// Reads client `t` until its socket is drained, its budget is spent or it is over its
    /// rate, handing the bytes to the shard. A short read means the socket was drained;
    /// `to_end` (the peer closed or failed, or no event prompted this read) reads on until
    /// `WouldBlock` or the end of the stream.
    fn read(&mut self, t: usize, to_end: bool) {
        let Some(Some(stream)) = self.conns.get_mut(t) else {
            return;
        };
        let mut budget = READ_BUDGET;
        while self.shard.is_open(t) {
            if !self.shard.may_read(t) {
                return;
            }
            match stream.read(&mut self.buf) {
                Ok(0) => self.shard.close(t, CloseReason::Eof),
                Ok(n) => {
                    self.shard.receive(t, &self.buf[..n]);
                    if n < self.buf.len() && !to_end {
                        return;
                    }
                    budget = budget.saturating_sub(n);
                    if budget == 0 {
                        self.unfinished.push(t);
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => self.shard.close(t, CloseReason::RecvError),
            }
        }
    }

    /// Sends what client `t` has queued, as far as its socket takes it now. What this worker
    /// posted for the others goes to their inboxes first, so that no answer can overtake a
    /// frame posted before it (a client told its `/who` answer, say, must be able to rely on
    /// every worker having what it said before).
    fn flush(&mut self, t: usize) {
        self.pass_remote();
        if !self.shard.is_open(t) {
            return;
        }
        let Some(Some(stream)) = self.conns.get_mut(t) else {
            return;
        };
        let Some(queue) = self.shard.queue(t) else {
            return;
        };
        if queue.flush_to(stream).is_err() {
            self.shard.close(t, CloseReason::SendError);
        }
    }

    /// After the events of a wake-up: passes posts to the other workers, flushes every
    /// client that got frames and tears down every client that must go, until nothing is
    /// left to do (a teardown queues a `left` notice, a flush can find a dead socket).
    fn settle(&mut self) {
        loop {
            self.pass_remote();
            let mut busy = false;
            while let Some(t) = self.shard.next_dirty() {
                self.flush(t);
                busy = true;
            }
            while let Some(t) = self.shard.next_dead() {
                self.teardown(t);
                busy = true;
            }
            if !busy {
                return;
            }
        }
    }

    /// Disconnects client `t`: it leaves the registry (the others are told), its last word
    /// (if any) is written if the socket takes it now, and the socket is shut down and closed.
    fn teardown(&mut self, t: usize) {
        let departed = self.shard.remove(t);
        let Some(mut stream) = self.conns.get_mut(t).and_then(Option::take) else {
            return;
        };
        if let Some(mut d) = departed {
            let _ = d.farewell.flush_to(&mut stream);
        }
        let _ = self.poll.registry().deregister(&mut stream);
        let _ = stream.shutdown(Shutdown::Both);
        self.free.push(t);
    }

    /// Accepts waiting connections, up to the budget.
    fn accept(&mut self) {
        let Some(listener) = self.listener.take() else {
            return;
        };
        for _ in 0..ACCEPT_BUDGET {
            match listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.accept_pending = false;
                    break;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => {
                    // Out of file descriptors or memory: the connection waits in the backlog
                    // until the next one arrives.
                    eprintln!("kchat-ref: accept: {e}");
                    self.accept_pending = false;
                    break;
                }
            }
        }
        self.listener = Some(listener);
    }

    /// Admits a new connection (or refuses it when `max_clients` are connected) and gives it
    /// to the next worker in turn.
    fn admit(&mut self, stream: TcpStream, peer: SocketAddr) {
        let label = Label::from_addr(peer);
        let Ok(id) = self.shard.registry().admit(label) else {
            net::refuse(SockRef::from(&stream));
            return;
        };
        let _ = stream.set_nodelay(true);
        if let Some(hub) = &self.hub {
            let to = self.next_worker;
            self.next_worker = (to + 1) % hub.inboxes.len();
            if to != self.me {
                // Frames posted here before the connection was accepted go first.
                self.pass_remote();
                if let Some(hub) = &self.hub {
                    hub.adopt(to, Adoption { stream, id, label });
                }
                return;
            }
            // Frames other workers posted before the connection was accepted go to the
            // clients already here.
            self.read_inbox();
        }
        self.attach(stream, id, label);
    }

    /// Starts serving a connection admitted as member `id`.
    fn attach(&mut self, mut stream: TcpStream, id: u64, label: Label) {
        let t = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        let interest = Interest::READABLE | Interest::WRITABLE;
        if self
            .poll
            .registry()
            .register(&mut stream, Token(t), interest)
            .is_err()
        {
            self.shard.registry().remove(id);
            self.free.push(t);
            return;
        }
        self.conns[t] = Some(stream);
        self.shard.attach(t, id, label);
    }

    /// Passes the frames posted here since the last call to every other worker.
    fn pass_remote(&mut self) {
        let (Some(hub), Some(posts)) = (&self.hub, self.shard.remote()) else {
            return;
        };
        if posts.is_empty() {
            return;
        }
        hub.broadcast(self.me, posts);
        posts.clear();
    }

    /// Takes this worker's mail: connections to serve, frames to deliver.
    fn read_inbox(&mut self) {
        let Some(hub) = &self.hub else {
            return;
        };
        mem::swap(&mut *hub.inboxes[self.me].lock(), &mut self.spare);
        let mut mail = mem::take(&mut self.spare);
        for item in mail.drain(..) {
            match item {
                Item::Adopt(a) => self.attach(a.stream, a.id, a.label),
                Item::Post(post) => self.shard.deliver_remote(&post),
            }
        }
        self.spare = mail;
    }
}

/// A send queue the epoll engine can write to a socket.
pub trait Flush {
    /// Writes the queue to `stream` until it is empty or the socket is full.
    fn flush_to(&mut self, stream: &mut TcpStream) -> io::Result<()>;
}

/// What a send queue of the epoll engine holds, and how its front is written.
pub trait Outgoing: Chunk {
    /// Writes from the front of `queue`, which is not empty, with one system call; returns
    /// the bytes the socket took.
    fn write_front(queue: &Queue<Self>, stream: &mut TcpStream) -> io::Result<usize>;
}

impl<T: Outgoing> Flush for Queue<T> {
    fn flush_to(&mut self, stream: &mut TcpStream) -> io::Result<()> {
        while !self.is_empty() {
            match T::write_front(self, stream) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(sent) => self.advance(sent),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Outgoing for Frame {
    fn write_front(queue: &TxQueue, stream: &mut TcpStream) -> io::Result<usize> {
        write_frames(stream, queue.pending())
    }
}

/// Writes `frames` (each from the offset given with it) with one `writev` of up to
/// [`MAX_IOV`] of them; returns the bytes the socket took.
pub fn write_frames<'a>(
    stream: &mut TcpStream,
    frames: impl Iterator<Item = (&'a Frame, usize)>,
) -> io::Result<usize> {
    let mut iov = [IoSlice::new(&[]); MAX_IOV];
    let mut n = 0;
    for (slot, (frame, at)) in iov.iter_mut().zip(frames) {
        *slot = IoSlice::new(&frame[at..]);
        n += 1;
    }
    stream.write_vectored(&iov[..n])
}
