//! A segment of a room's log: one memfd, written once front to back, sent from with
//! `sendfile(2)`.

use std::{
    fs::File,
    io,
    os::{
        fd::{AsRawFd, FromRawFd},
        unix::fs::FileExt,
    },
};

/// One memfd of a room's log. Bytes written to it are never changed: a socket buffer may
/// still hold references to its pages (a retransmit re-reads them), and the pages are freed
/// only once the file is closed (its last [`std::sync::Arc`] dropped) and no socket buffer
/// holds them any more.
#[derive(Debug)]
pub struct Segment {
    file: File,
}

impl Segment {
    /// A new, empty segment.
    pub fn create() -> io::Result<Self> {
        // SAFETY: memfd_create reads the NUL-terminated name, a static C string, and returns
        // a new descriptor or -1.
        let fd = unsafe { libc::memfd_create(c"kchat-log".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and nothing else owns it.
        let file = unsafe { File::from_raw_fd(fd) };
        Ok(Self { file })
    }

    /// Writes `bytes` at offset `at` (with `pwrite`, as many calls as it takes).
    pub fn write_at(&self, bytes: &[u8], at: usize) -> io::Result<()> {
        self.file.write_all_at(bytes, at as u64)
    }

    /// Sends bytes `start..end` to the socket `sock` with one `sendfile`, which hands the
    /// socket references to the pages instead of copying them; returns the bytes the socket
    /// took. A non-blocking socket that is full fails with `WouldBlock`.
    pub fn send(&self, sock: &impl AsRawFd, start: usize, end: usize) -> io::Result<usize> {
        let mut offset = libc::off_t::try_from(start)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: both descriptors are open for the duration of the call, and sendfile writes
        // only to `offset`, a live local.
        let sent = unsafe {
            libc::sendfile(
                sock.as_raw_fd(),
                self.file.as_raw_fd(),
                &mut offset,
                end - start,
            )
        };
        usize::try_from(sent).map_err(|_| io::Error::last_os_error())
    }

    /// Reads bytes `start..end` back.
    #[cfg(test)]
    pub fn read(&self, start: usize, end: usize) -> Vec<u8> {
        let mut bytes = vec![0; end - start];
        self.file
            .read_exact_at(&mut bytes, start as u64)
            .expect("a written range reads back");
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{
        io::Read,
        net::{TcpListener, TcpStream},
    };

    #[test]
    fn written_once_and_sent_by_range() {
        let seg = Segment::create().unwrap();
        seg.write_at(b"hello ", 0).unwrap();
        seg.write_at(b"world", 6).unwrap();
        assert_eq!(seg.read(3, 11), b"lo world");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let tx = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut rx, _) = listener.accept().unwrap();
        assert_eq!(seg.send(&tx, 6, 11).unwrap(), 5);
        assert_eq!(seg.send(&tx, 0, 5).unwrap(), 5);
        let mut got = [0; 10];
        rx.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"worldhello");
    }
}
