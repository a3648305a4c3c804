//! Socket set-up shared by the engines: the listener, and the process limits.

use std::{
    io::{self, Write},
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener},
};

use socket2::{Domain, Protocol, SockRef, Socket, Type};

/// The notice a connection beyond `max_clients` gets before it is closed: a frame of 13 bytes.
pub const SERVER_FULL: &[u8] = b"\x0d\x00\x00\x00! server full";

/// Listens on `port` (0 picks a free port) with `backlog`, non-blocking: on `[::]` for IPv4
/// and IPv6 clients alike (`IPV6_V6ONLY` off), or on 0.0.0.0 where the system has no IPv6.
/// Prints `listening on ADDR:PORT` (`[::]:PORT` or `0.0.0.0:PORT`) to stdout, flushed, for
/// scripts and tests.
pub fn listen(port: u16, backlog: u32) -> io::Result<TcpListener> {
    let listener = match bind((Ipv6Addr::UNSPECIFIED, port).into(), backlog) {
        Err(e) if is_no_ipv6(&e) => bind((Ipv4Addr::UNSPECIFIED, port).into(), backlog)?,
        bound => bound?,
    };
    let mut out = io::stdout().lock();
    writeln!(out, "listening on {}", listener.local_addr()?)?;
    out.flush()?;
    Ok(listener)
}

/// A listening socket on `addr` (dual-stack if it is IPv6), with `SO_REUSEADDR`.
fn bind(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        sock.set_only_v6(false)?;
    }
    sock.set_reuse_address(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(sock.into())
}

/// Whether `e` says that the system has no IPv6 (not built, disabled, or no address).
fn is_no_ipv6(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAFNOSUPPORT | libc::EPROTONOSUPPORT | libc::EADDRNOTAVAIL)
    )
}

/// Refuses a connection: `! server full` if the socket takes it now, then shut down (the
/// caller closes it).
pub fn refuse(sock: SockRef<'_>) {
    let _ = sock.send_with_flags(SERVER_FULL, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL);
    let _ = sock.shutdown(std::net::Shutdown::Both);
}

/// Raises the soft limit on open files to the hard limit, so that `max_clients` sockets fit;
/// returns the limit in force.
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we pass, which lives on our stack.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        }
    }
    lim.rlim_cur
}
