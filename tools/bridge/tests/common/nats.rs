// SPDX-License-Identifier: GPL-2.0
//! Real `nats-server` processes on free loopback ports, alone or in a cluster, and a tiny
//! NATS client that checks a cluster relays before the bridges rely on it.

use std::{
    env,
    io::{self, Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::{free_port, skip, wait_for, WAIT};

/// Where `nats-server` is: `$NATS_SERVER`, PATH, /usr/sbin, /sbin.
pub fn installed() -> Option<PathBuf> {
    if let Some(b) = env::var_os("NATS_SERVER") {
        return Path::new(&b).exists().then(|| b.into());
    }
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join("nats-server"))
        .find(|p| p.exists())
}

/// A running `nats-server`, killed when dropped.
pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    pub cluster_port: u16,
}

impl NatsServer {
    /// One server on a free port; `None`, after saying the test is skipped, if `nats-server`
    /// is not installed.
    pub fn start() -> Option<Self> {
        Self::start_with(&[])
    }

    /// One server on a free port, with more options (`--user`, `--pass`, ...); `None` as
    /// [`NatsServer::start`].
    pub fn start_with(extra: &[&str]) -> Option<Self> {
        let bin = Self::binary()?;
        Some(Self::spawn(&bin, free_port(), None, extra))
    }

    /// Two servers routed to each other in one cluster, checked to relay; `None` as
    /// [`NatsServer::start`].
    pub fn cluster() -> Option<(Self, Self)> {
        let bin = Self::binary()?;
        let (c1, c2) = (free_port(), free_port());
        let a = Self::spawn(&bin, free_port(), Some((c1, c2)), &[]);
        let b = Self::spawn(&bin, free_port(), Some((c2, c1)), &[]);
        assert!(
            relays(a.port, b.port) && relays(b.port, a.port),
            "the two nats-servers did not form a cluster"
        );
        Some((a, b))
    }

    fn binary() -> Option<PathBuf> {
        let bin = installed();
        if bin.is_none() {
            skip("nats-server not installed");
        }
        bin
    }

    /// Starts `nats-server` on `port` (with a cluster port and a route to another's, and
    /// `extra` options), and waits until it greets clients.
    fn spawn(bin: &Path, port: u16, cluster: Option<(u16, u16)>, extra: &[&str]) -> Self {
        let mut cmd = Command::new(bin);
        cmd.args(["-a", "127.0.0.1", "-p", &port.to_string()]);
        cmd.args(extra);
        if let Some((own, other)) = cluster {
            cmd.args([
                "--cluster_name",
                "kchat-test",
                "--cluster",
                &format!("nats://127.0.0.1:{own}"),
                "--routes",
                &format!("nats://127.0.0.1:{other}"),
            ]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        let s = Self {
            child: Some(child),
            port,
            cluster_port: cluster.map_or(0, |c| c.0),
        };
        assert!(
            wait_for(WAIT, || TcpStream::connect(("127.0.0.1", port))
                .and_then(|mut c| {
                    c.set_read_timeout(Some(Duration::from_secs(5)))?;
                    let mut b = [0; 5];
                    c.read_exact(&mut b)?;
                    Ok(b == *b"INFO ")
                })
                .unwrap_or(false)),
            "nats-server on port {port} never greeted a client"
        );
        s
    }

    /// Kills the server at once (SIGKILL: no goodbye to anyone).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// True once a message published on `from` reaches a subscriber on `to`.
fn relays(from: u16, to: u16) -> bool {
    let Ok(mut sub) = Client::connect(to) else {
        return false;
    };
    let Ok(mut publ) = Client::connect(from) else {
        return false;
    };
    sub.send(b"SUB cluster.probe 1\r\n").unwrap();
    sub.round_trip().unwrap();
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        publ.send(b"PUB cluster.probe 2\r\nhi\r\n").unwrap();
        if sub.next_msg(Duration::from_millis(200)).unwrap().is_some() {
            return true;
        }
    }
    false
}

/// A minimal NATS client for the tests' own checks.
pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    /// Connects and waits for the server to take our `CONNECT`.
    pub fn connect(port: u16) -> io::Result<Self> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        let mut c = Self {
            stream,
            buf: Vec::new(),
        };
        let info = c.line(Duration::from_secs(5))?;
        if !info.starts_with("INFO ") {
            return Err(io::Error::other(format!("no INFO: {info}")));
        }
        c.send(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\n")?;
        c.round_trip()?;
        Ok(c)
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends `PING` and reads up to its `PONG` (answering server `PING`s, skipping the rest).
    pub fn round_trip(&mut self) -> io::Result<()> {
        self.send(b"PING\r\n")?;
        loop {
            match self.line(Duration::from_secs(5))?.as_str() {
                "PONG" => return Ok(()),
                "PING" => self.send(b"PONG\r\n")?,
                _ => {}
            }
        }
    }

    /// Reads one control line within `timeout`.
    fn line(&mut self, timeout: Duration) -> io::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(nl) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..nl]).into_owned();
                self.buf.drain(..nl + 2);
                return Ok(line);
            }
            self.fill(deadline)?;
        }
    }

    fn fill(&mut self, deadline: Instant) -> io::Result<()> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        let mut chunk = [0; 8192];
        let n = self.stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// The next message within `timeout`: its subject and payload.
    pub fn next_msg(&mut self, timeout: Duration) -> io::Result<Option<(String, Vec<u8>)>> {
        let deadline = Instant::now() + timeout;
        loop {
            let line = match self.line(deadline.saturating_duration_since(Instant::now())) {
                Ok(l) => l,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) => return Err(e),
            };
            if line == "PING" {
                self.send(b"PONG\r\n")?;
                continue;
            }
            let Some(args) = line.strip_prefix("MSG ") else {
                continue;
            };
            let a: Vec<&str> = args.split(' ').collect();
            let len: usize = a.last().unwrap().parse().unwrap();
            let subject = a[0].to_string();
            while self.buf.len() < len + 2 {
                self.fill(Instant::now() + Duration::from_secs(5))?;
            }
            let payload = self.buf[..len].to_vec();
            self.buf.drain(..len + 2);
            return Ok(Some((subject, payload)));
        }
    }
}
