//! A blocking kchat connection, for tests and scripts.

use std::{
    io::{self, Read, Write},
    net::{SocketAddr, TcpStream, ToSocketAddrs},
    time::{Duration, Instant},
};

use crate::{encode, Decoder, MAX_MSG_LEN_LIMIT};

/// Reads once from `stream` into `into`, waiting at most `timeout`: the count read, `None`
/// on timeout, an `UnexpectedEof` error if the peer closed the connection.
pub(crate) fn read_within(
    stream: &mut TcpStream,
    into: &mut [u8],
    timeout: Duration,
) -> io::Result<Option<usize>> {
    stream.set_read_timeout(Some(timeout))?;
    match stream.read(into) {
        Ok(0) => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "server closed the connection",
        )),
        Ok(n) => Ok(Some(n)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// A connection to a kchat server.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    decoder: Decoder,
}

impl Conn {
    /// Connects to `addr`.
    pub fn connect(addr: impl ToSocketAddrs) -> io::Result<Self> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(Self::from_stream(stream))
    }

    /// Wraps an already connected stream.
    pub fn from_stream(stream: TcpStream) -> Self {
        Self {
            stream,
            // Relayed frames carry a label in front of a message of up to max_msg_len bytes.
            decoder: Decoder::new(MAX_MSG_LEN_LIMIT + 64),
        }
    }

    /// The underlying stream, for tests that need raw access.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Our own address, as the server sees it (`ip:port`), which is our default label.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.stream.local_addr()
    }

    /// Sends one frame.
    pub fn send(&mut self, payload: &[u8]) -> io::Result<()> {
        self.stream.write_all(&encode(payload))
    }

    /// Sends raw bytes (for malformed or split frames).
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Receives the next frame, waiting at most `timeout`. `Ok(None)` on timeout; an
    /// `UnexpectedEof` error if the server closed the connection.
    pub fn recv_timeout(&mut self, timeout: Duration) -> io::Result<Option<Vec<u8>>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(f) = self
                .decoder
                .next_frame()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
            {
                return Ok(Some(f.to_vec()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            match read_within(&mut self.stream, self.decoder.spare(16 * 1024), left)? {
                Some(n) => self.decoder.filled(n),
                None => return Ok(None),
            }
        }
    }

    /// Receives the next frame as text, failing on timeout or close.
    pub fn recv_text(&mut self, timeout: Duration) -> io::Result<String> {
        match self.recv_timeout(timeout)? {
            Some(f) => Ok(String::from_utf8_lossy(&f).into_owned()),
            None => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no frame within {timeout:?}"),
            )),
        }
    }

    /// Waits up to `timeout` for the server to close the connection, discarding frames.
    /// Returns the frames received before the close, or an error if it did not close.
    pub fn expect_close(&mut self, timeout: Duration) -> io::Result<Vec<Vec<u8>>> {
        let deadline = Instant::now() + timeout;
        let mut frames = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "server did not close the connection",
                ));
            }
            match self.recv_timeout(left) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
                    ) =>
                {
                    return Ok(frames);
                }
                Err(e) => return Err(e),
            }
        }
    }
}
