// SPDX-License-Identifier: GPL-2.0
//! Connecting, and waiting between attempts.

use std::{
    fs::File,
    io,
    net::{TcpStream, ToSocketAddrs},
    os::fd::AsRawFd,
    path::Path,
    thread,
    time::Duration,
};

/// How long one connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a peer may take to greet us (NATS' `INFO`, kchat's `=link`).
pub const GREETING_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to the first address of `addr` that answers, with `TCP_NODELAY` set.
pub fn connect(addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for a in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
            Ok(s) => {
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Connects to `addr` from inside the network namespace `netns` (a file such as
/// `/proc/PID/ns/net`): a thread enters it, connects and ends; the socket stays in that
/// namespace whichever thread uses it.
pub fn connect_in(netns: &Path, addr: &str) -> io::Result<TcpStream> {
    let ns = File::open(netns)?;
    let addr = addr.to_string();
    thread::Builder::new()
        .name("kchat-netns".into())
        .spawn(move || {
            // SAFETY: `ns` is an open namespace file for the call; setns changes only this
            // thread's network namespace, and this thread ends after the connection.
            let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            if r != 0 {
                return Err(io::Error::last_os_error());
            }
            connect(addr.as_str())
        })?
        .join()
        .map_err(|_| io::Error::other("the namespace thread panicked"))?
}

/// The wait before the next attempt: 50 ms, doubling up to a cap.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

/// The first wait.
const FIRST: Duration = Duration::from_millis(50);

impl Backoff {
    /// Waits that double from 50 ms up to `max`.
    pub fn new(max: Duration) -> Self {
        Self {
            next: FIRST.min(max),
            max,
        }
    }

    /// The wait before the next attempt.
    pub fn next_wait(&mut self) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(self.max);
        d
    }

    /// Starts again from 50 ms (after a connection that worked).
    pub fn reset(&mut self) {
        self.next = FIRST.min(self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(1000));
        let waits: Vec<_> = (0..7).map(|_| b.next_wait()).collect();
        assert_eq!(
            waits,
            [
                ms(50),
                ms(100),
                ms(200),
                ms(400),
                ms(800),
                ms(1000),
                ms(1000)
            ]
        );
        b.reset();
        assert_eq!(b.next_wait(), ms(50));
        assert_eq!(Backoff::new(ms(10)).next_wait(), ms(10));
    }
}
