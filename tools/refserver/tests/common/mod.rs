//! Shared test support: start the real `kchat-ref` binary on a free port, connect clients.

#![allow(dead_code)]

use std::{
    io::{self, BufRead, BufReader, ErrorKind, Read, Write},
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream},
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use kchat_proto::Conn;

/// How long any single expected event may take.
pub const T: Duration = Duration::from_secs(10);

/// The server variant under test.
#[derive(Debug, Clone, Copy)]
pub enum Engine {
    /// `kchat-ref epoll`, one thread.
    Epoll,
    /// `kchat-ref epoll --threads 2`: clients sharded across two threads.
    EpollThreads2,
    /// `kchat-ref uring`.
    Uring,
    /// `kchat-ref sendfile`, one thread.
    Sendfile,
    /// `kchat-ref sendfile --threads 2`.
    SendfileThreads2,
}

impl Engine {
    fn args(self) -> &'static [&'static str] {
        match self {
            Self::Epoll => &["epoll"],
            Self::EpollThreads2 => &["epoll", "--threads", "2"],
            Self::Uring => &["uring"],
            Self::Sendfile => &["sendfile"],
            Self::SendfileThreads2 => &["sendfile", "--threads", "2"],
        }
    }
}

/// A running server, killed when dropped.
pub struct Server {
    child: Child,
    /// Its IPv4 loopback address.
    pub addr: SocketAddr,
    /// Whether it listens on `[::]` (IPv4 and IPv6), not on 0.0.0.0 (no IPv6 here).
    pub dual_stack: bool,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The kchat-ref binary.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_kchat-ref")
}

impl Server {
    /// Starts `engine` with `--port 0` and `args`, and reads the port it prints. Returns
    /// `None`, after printing `SKIPPED: io_uring unavailable (WHY) [TEST]` (or `memfd
    /// unavailable` for sendfile; see [`skip`]), if the engine cannot run on this machine
    /// (exit status 3); the caller then returns.
    pub fn start(engine: Engine, args: &[&str]) -> Option<Server> {
        let mut child = Command::new(binary())
            .args(engine.args())
            .args(["--port", "0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kchat-ref starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(T).expect("kchat-ref prints its port");
        if let Some(listening) = line.trim().strip_prefix("listening on ") {
            let listening: SocketAddr = listening.parse().expect("an address and port");
            return Some(Server {
                child,
                addr: SocketAddr::from((Ipv4Addr::LOCALHOST, listening.port())),
                dual_stack: listening.ip() == Ipv6Addr::UNSPECIFIED,
            });
        }
        let status = child.wait().expect("kchat-ref exits");
        let mut err = String::new();
        let _ = child
            .stderr
            .take()
            .expect("stderr is piped")
            .read_to_string(&mut err);
        if status.code() == Some(3) {
            // `kchat-ref: WHAT unavailable: WHY`
            let line = err.trim();
            let line = line.strip_prefix("kchat-ref: ").unwrap_or(line);
            let (what, why) = line
                .split_once(" unavailable: ")
                .unwrap_or(("engine", line));
            skip(&format!("{what} unavailable ({why})"));
            return None;
        }
        panic!("kchat-ref failed to start ({status}): {err}");
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A new client, not yet known to be attached.
    pub fn connect(&self) -> Conn {
        Conn::connect(self.addr).expect("connect")
    }

    /// A new client that the server has attached: it asked `/who` and got the answer, so
    /// everything relayed from now on reaches it. `#lobby`'s history, if the server replayed
    /// any, is read and dropped.
    pub fn join(&self) -> Conn {
        let mut c = self.connect();
        c.send(b"/who").expect("send /who");
        let mut answer = recv(&mut c);
        if let Some(head) = answer.strip_prefix("* last ") {
            let count = head.strip_suffix(" messages of #lobby:");
            let count: usize = count
                .and_then(|n| n.parse().ok())
                .expect("a history header");
            for _ in 0..count {
                recv(&mut c);
            }
            answer = recv(&mut c);
        }
        assert!(
            answer.contains(" online in #lobby: "),
            "unexpected {answer:?}"
        );
        c
    }

    /// A new IPv6 client from `[::1]`, or `None` (after saying the test is skipped) if the
    /// server or this machine has no IPv6.
    pub fn connect_v6(&self) -> Option<Conn> {
        if !self.dual_stack {
            skip("IPv6 unavailable (the server listens on 0.0.0.0)");
            return None;
        }
        match Conn::connect((Ipv6Addr::LOCALHOST, self.addr.port())) {
            Ok(c) => Some(c),
            Err(e) => {
                skip(&format!("IPv6 unavailable (connecting to [::1]: {e})"));
                None
            }
        }
    }
}

/// Says that the running test is skipped, and why, in one line to stderr that the test
/// harness does not capture: `SKIPPED: WHY [TEST]` (TEST: the test's name, e.g.
/// `uring::relay_between_two_clients`). The test then returns, and is reported as passed.
pub fn skip(why: &str) {
    let test = thread::current().name().unwrap_or("?").to_string();
    let line = format!("SKIPPED: {why} [{test}]\n");
    // Written to the stream itself in one piece, not with `eprintln!`, which the test harness
    // captures.
    let _ = io::stderr().write_all(line.as_bytes());
}

/// Asks `/who` from `c` and returns the answer, dropping the frames that came before it. Also
/// a round trip: everything `c` sent before has been handled once the answer is back.
pub fn who(c: &mut Conn) -> String {
    c.send(b"/who").expect("send /who");
    loop {
        let frame = recv(c);
        if frame.starts_with("* ") && frame.contains(" online in #") {
            return frame;
        }
    }
}

/// The label the server gives `c` before any nick: its `ip:port` (`[ADDR]:PORT` for IPv6).
pub fn label(c: &Conn) -> String {
    c.local_addr().expect("local address").to_string()
}

/// The next frame or the end of the stream (`None`) within [`T`]; panics on a timeout.
/// (`Conn` reports an interrupted system call as an error: this retries it.)
pub fn next_frame(c: &mut Conn) -> Option<Vec<u8>> {
    let deadline = Instant::now() + T;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no frame within {T:?}");
        match c.recv_timeout(left) {
            Ok(Some(f)) => return Some(f),
            Ok(None) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
                ) =>
            {
                return None;
            }
            Err(e) => panic!("receiving: {e}"),
        }
    }
}

/// The next frame as bytes, within [`T`].
pub fn recv_bytes(c: &mut Conn) -> Vec<u8> {
    next_frame(c).expect("a frame, not the end of the stream")
}

/// The next frame, as text, within [`T`].
pub fn recv(c: &mut Conn) -> String {
    String::from_utf8_lossy(&recv_bytes(c)).into_owned()
}

/// Waits until `c` is closed by the server; returns the frames it got before, as text.
pub fn closed(c: &mut Conn) -> Vec<String> {
    let mut frames = Vec::new();
    while let Some(f) = next_frame(c) {
        frames.push(String::from_utf8_lossy(&f).into_owned());
    }
    frames
}

/// Connects a client whose receive buffer is tiny, so that a server writing to it fills its
/// socket quickly.
pub fn connect_small_window(addr: SocketAddr) -> Conn {
    let sock =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    sock.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    sock.connect(&addr.into()).expect("connect");
    let stream: TcpStream = sock.into();
    stream.set_nodelay(true).expect("nodelay");
    Conn::from_stream(stream)
}

/// Retries `f` until it returns `Some`, for at most [`T`].
pub fn eventually<R>(mut f: impl FnMut() -> Option<R>) -> R {
    let deadline = Instant::now() + T;
    loop {
        if let Some(r) = f() {
            return r;
        }
        assert!(Instant::now() < deadline, "condition not met within {T:?}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// Defines, for each named test body `fn NAME(engine: Engine)`, one `#[test]` per engine:
/// `epoll::NAME`, `epoll_threads::NAME`, `uring::NAME`, `sendfile::NAME` and
/// `sendfile_threads::NAME`.
#[macro_export]
macro_rules! engine_tests {
    ($($name:ident),* $(,)?) => {
        $crate::engine_module!(epoll, Epoll, "the epoll engine, one thread", $($name),*);
        $crate::engine_module!(
            epoll_threads, EpollThreads2, "the epoll engine, two threads", $($name),*
        );
        $crate::engine_module!(
            uring, Uring, "the io_uring engine (skipped where io_uring is unavailable)",
            $($name),*
        );
        $crate::engine_module!(sendfile, Sendfile, "the sendfile engine, one thread", $($name),*);
        $crate::engine_module!(
            sendfile_threads, SendfileThreads2, "the sendfile engine, two threads", $($name),*
        );
    };
}

/// The module `$module` of [`engine_tests!`]: each test body run with `Engine::$engine`.
#[macro_export]
macro_rules! engine_module {
    ($module:ident, $engine:ident, $what:literal, $($name:ident),*) => {
        mod $module {
            $(
                #[doc = concat!("[`super::", stringify!($name), "`] with ", $what, ".")]
                #[test]
                fn $name() {
                    super::$name(super::common::Engine::$engine)
                }
            )*
        }
    };
}

/// A slow-consumer scenario: `slow` (a tiny receive window; it asks `/who` once and never
/// reads again), `reader` and `flooder` connect in this order, then `flooder` sends numbered
/// messages of about 4 KB that `reader` checks as they come.
pub struct Flood {
    pub slow: Conn,
    pub reader: Conn,
    pub flooder: Conn,
    /// Flood messages sent so far.
    pub sent: usize,
}

impl Flood {
    /// Connects the three clients to `srv` (which must send notices); the reader has heard
    /// the flooder join.
    pub fn start(srv: &Server) -> Self {
        let mut slow = connect_small_window(srv.addr);
        slow.send(b"/who").unwrap();
        assert!(recv(&mut slow).contains(" online in #lobby: "));
        let mut reader = srv.join();
        let flooder = srv.join();
        assert_eq!(recv(&mut reader), format!("* {} joined", label(&flooder)));
        Flood {
            slow,
            reader,
            flooder,
            sent: 0,
        }
    }

    /// Flood message `n`.
    pub fn body(n: usize) -> String {
        format!("{n:08} {}", "f".repeat(4000))
    }

    /// Floods in batches of 8 messages (about 32 KiB, so the reader is never more than half
    /// of a 64 KiB `max_queue_bytes` behind, while the slow client falls behind without
    /// bound), the reader checking every one, until the reader hears that the slow client
    /// left; calls `after_batch` after each batch.
    pub fn until_slow_left(&mut self, mut after_batch: impl FnMut()) {
        let (ls, lf) = (label(&self.slow), label(&self.flooder));
        let deadline = Instant::now() + T * 3;
        let mut got = self.sent;
        let mut slow_left = false;
        while !slow_left {
            assert!(Instant::now() < deadline, "the slow client was not dropped");
            for _ in 0..8 {
                self.flooder.send(Self::body(self.sent).as_bytes()).unwrap();
                self.sent += 1;
            }
            while got < self.sent {
                let frame = recv(&mut self.reader);
                if frame == format!("* {ls} left") {
                    slow_left = true;
                    continue;
                }
                assert_eq!(frame, format!("{lf}: {}", Self::body(got)));
                got += 1;
            }
            after_batch();
        }
    }

    /// Waits until the slow client is closed; checks that what it got is an intact, in-order
    /// prefix of the flood (notices aside), not all of it.
    pub fn check_slow_prefix(&mut self) {
        let lf = label(&self.flooder);
        let frames = closed(&mut self.slow);
        assert!(frames.len() < self.sent, "the slow client got everything");
        let chat = frames.iter().filter(|f| !f.starts_with("* "));
        for (n, f) in chat.enumerate() {
            assert_eq!(
                *f,
                format!("{lf}: {}", Self::body(n)),
                "slow client frame {n}"
            );
        }
    }
}
