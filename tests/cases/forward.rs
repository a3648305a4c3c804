//! `kchat-vmtest --forward LISTEN NETNS TARGET`: a TCP forwarder for `make run CLUSTER=N`.
//! It listens on LISTEN in the guest's initial namespace (where QEMU's forwarded host ports
//! arrive) and connects each client to TARGET inside the network namespace NETNS (a node's
//! kchat), copying bytes both ways until either side closes.

use std::{
    fs::File,
    io::{self, Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    os::fd::AsRawFd,
    thread,
};

/// Runs the forwarder; returns only if it cannot listen.
pub fn main(listen: &str, netns: &str, target: &str) -> io::Result<()> {
    let listener = TcpListener::bind(listen)?;
    for client in listener.incoming() {
        let Ok(client) = client else {
            continue;
        };
        let (netns, target) = (netns.to_string(), target.to_string());
        thread::spawn(move || {
            if let Ok(server) = connect_in(&netns, &target) {
                splice(client, server);
            }
        });
    }
    Ok(())
}

/// Connects to `target` from inside the namespace `netns` (a thread enters it and ends).
fn connect_in(netns: &str, target: &str) -> io::Result<TcpStream> {
    let ns = File::open(netns)?;
    let target = target.to_string();
    thread::spawn(move || {
        // SAFETY: `ns` is an open namespace file; setns changes only this thread, which ends
        // after connecting.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        TcpStream::connect(target)
    })
    .join()
    .map_err(|_| io::Error::other("namespace thread panicked"))?
}

/// Copies both ways until both directions are done.
fn splice(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let up = thread::spawn(move || copy(a, b2));
    copy(b, a2);
    let _ = up.join();
}

fn copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16384];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
