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
}

impl Engine {
    fn args(self) -> &'static [&'static str] {
        match self {
            Self::Epoll => &["epoll"],
            Self::EpollThreads2 => &["epoll", "--threads", "2"],
            Self::Uring => &["uring"],
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
    /// `None`, after printing `SKIPPED: io_uring unavailable (WHY) [TEST]` (see [`skip`]), if
    /// the engine cannot run on this machine (exit status 3); the caller then returns.
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
            let why = err.trim();
            let why = why
                .strip_prefix("kchat-ref: io_uring unavailable: ")
                .unwrap_or(why);
            skip(&format!("io_uring unavailable ({why})"));
            return None;
        }
        panic!("kchat-ref failed to start ({status}): {err}");
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
/// `epoll::NAME`, `epoll_threads::NAME` and `uring::NAME`.
#[macro_export]
macro_rules! engine_tests {
    ($($name:ident),* $(,)?) => {
        mod epoll {
            $(
                #[doc = concat!("[`super::", stringify!($name), "`] with the epoll engine, one thread.")]
                #[test]
                fn $name() {
                    super::$name(super::common::Engine::Epoll)
                }
            )*
        }
        mod epoll_threads {
            $(
                #[doc = concat!("[`super::", stringify!($name), "`] with the epoll engine, two threads.")]
                #[test]
                fn $name() {
                    super::$name(super::common::Engine::EpollThreads2)
                }
            )*
        }
        mod uring {
            $(
                #[doc = concat!("[`super::", stringify!($name), "`] with the io_uring engine (skipped where io_uring is unavailable).")]
                #[test]
                fn $name() {
                    super::$name(super::common::Engine::Uring)
                }
            )*
        }
    };
}
