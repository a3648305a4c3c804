//! Shared test support: start the real `kchat-ref` binary on a free port, connect clients.

#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader, ErrorKind, Read},
    net::{Ipv4Addr, SocketAddr, TcpStream},
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
    pub addr: SocketAddr,
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
    /// `None`, after printing why, if the engine cannot run on this machine (exit status 3:
    /// io_uring unavailable); the caller then skips the test.
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
        if let Some(port) = line.trim().strip_prefix("listening on 0.0.0.0:") {
            let port: u16 = port.parse().expect("a port number");
            return Some(Server {
                child,
                addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
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
            println!(
                "skipping: the {engine:?} engine cannot run here: {}",
                err.trim()
            );
            return None;
        }
        panic!("kchat-ref failed to start ({status}): {err}");
    }

    /// A new client, not yet known to be attached.
    pub fn connect(&self) -> Conn {
        Conn::connect(self.addr).expect("connect")
    }

    /// A new client that the server has attached: it asked `/who` and got the answer, so
    /// everything relayed from now on reaches it.
    pub fn join(&self) -> Conn {
        let mut c = self.connect();
        c.send(b"/who").expect("send /who");
        let answer = recv(&mut c);
        assert!(answer.contains(" online: "), "unexpected {answer:?}");
        c
    }
}

/// The label the server gives `c` before any nick: its `ip:port`.
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
