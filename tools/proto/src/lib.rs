//! kchat's wire format, shared by everything in user space.
//!
//! Every message, both directions, is one frame: a `u32` little-endian length, then that many
//! payload bytes. Length 0 is a keep-alive. See DESIGN.md section 1.
//!
//! - [`encode`] / [`encode_into`] build frames;
//! - [`Decoder`] reassembles frames from arbitrary pieces of a byte stream (received into
//!   a [`StreamBuf`]);
//! - [`Conn`] is a small blocking client for tests and scripts;
//! - [`irc`] is the same for IRC: messages, lines and a blocking client.

mod buffer;
mod conn;
pub mod irc;

pub use buffer::StreamBuf;
pub use conn::Conn;

/// Length of the frame header.
pub const HEADER_LEN: usize = 4;

/// The server's default `max_msg_len`.
pub const DEFAULT_MAX_MSG_LEN: usize = 4096;

/// Largest `max_msg_len` the server accepts (1 MiB).
pub const MAX_MSG_LEN_LIMIT: usize = 1 << 20;

/// Appends the frame for `payload` to `out`.
///
/// # Panics
///
/// If `payload` is 4 GiB or longer (no frame can carry it).
pub fn encode_into(payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len()).expect("payload under 4 GiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(payload);
}

/// The frame for `payload`.
pub fn encode(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    encode_into(payload, &mut out);
    out
}

/// A frame header declared a payload longer than the decoder accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong(pub u32);

impl std::fmt::Display for TooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "frame declares {} bytes, over the limit", self.0)
    }
}

impl std::error::Error for TooLong {}

/// Reassembles frames from a byte stream: feed it whatever arrived, take complete payloads.
///
/// Bytes live in one [`StreamBuf`], grown only for a frame that does not fit, and are
/// parsed in place, so many frames per read cost no copy and no allocation.
#[derive(Debug)]
pub struct Decoder {
    buf: StreamBuf,
    max_len: usize,
}

impl Decoder {
    /// A decoder that refuses payloads longer than `max_len`.
    pub fn new(max_len: usize) -> Self {
        Self {
            buf: StreamBuf::new(),
            max_len,
        }
    }

    /// Adds received bytes.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend(bytes);
    }

    /// Room to receive at least `at_least` bytes into directly; then call
    /// [`Decoder::filled`] with the count received.
    pub fn spare(&mut self, at_least: usize) -> &mut [u8] {
        self.buf.spare(at_least)
    }

    /// Declares that `n` bytes were written at the start of the last [`Decoder::spare`].
    pub fn filled(&mut self, n: usize) {
        self.buf.filled(n);
    }

    /// The next complete payload, skipping keep-alives; `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, TooLong> {
        loop {
            let avail = self.buf.unread();
            if avail.len() < HEADER_LEN {
                return Ok(None);
            }
            let len = u32::from_le_bytes(avail[..HEADER_LEN].try_into().expect("4 bytes"));
            if len as usize > self.max_len {
                return Err(TooLong(len));
            }
            let total = HEADER_LEN + len as usize;
            if avail.len() < total {
                return Ok(None);
            }
            if len == 0 {
                self.buf.consume(HEADER_LEN);
                continue;
            }
            return Ok(Some(&self.buf.take(total)[HEADER_LEN..]));
        }
    }

    /// Bytes received but not yet returned as frames.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_split() {
        let mut stream = Vec::new();
        for p in [&b"hello"[..], b"", b"x", &[7u8; 300]] {
            encode_into(p, &mut stream);
        }
        for chunk in [1, 2, 3, 4, 5, 64, 1000] {
            let mut d = Decoder::new(4096);
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                d.extend(piece);
                while let Some(f) = d.next_frame().unwrap() {
                    got.push(f.to_vec());
                }
            }
            assert_eq!(got, vec![b"hello".to_vec(), b"x".to_vec(), vec![7u8; 300]]);
            assert_eq!(d.pending(), 0);
        }
    }

    #[test]
    fn too_long() {
        let mut d = Decoder::new(10);
        d.extend(&11u32.to_le_bytes());
        assert_eq!(d.next_frame(), Err(TooLong(11)));
    }

    #[test]
    fn spare_and_filled() {
        let mut d = Decoder::new(100);
        let frame = encode(b"abc");
        let spare = d.spare(64);
        spare[..frame.len()].copy_from_slice(&frame);
        d.filled(frame.len());
        assert_eq!(d.next_frame().unwrap(), Some(&b"abc"[..]));
    }
}
