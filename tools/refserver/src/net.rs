//! Socket set-up shared by the engines: the listener, and the process limits.

use std::{
    io::{self, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener},
};

use socket2::{Domain, Protocol, SockRef, Socket, Type};

/// The notice a connection beyond `max_clients` gets before it is closed: a frame of 13 bytes.
pub const SERVER_FULL: &[u8] = b"\x0d\x00\x00\x00! server full";

/// Listens on 0.0.0.0:`port` (0 picks a free port) with `backlog`, non-blocking, and prints
/// `listening on 0.0.0.0:PORT` to stdout, flushed, for scripts and tests.
pub fn listen(port: u16, backlog: u32) -> io::Result<TcpListener> {
    let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())?;
    sock.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    let listener = TcpListener::from(sock);
    let port = listener.local_addr()?.port();
    let mut out = io::stdout().lock();
    writeln!(out, "listening on 0.0.0.0:{port}")?;
    out.flush()?;
    Ok(listener)
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
