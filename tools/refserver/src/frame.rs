//! The wire format on the server side: reassembling the frames a client sends, and building
//! the frames the server sends, once each, to be shared by every recipient.
//!
//! Received bytes land in the engine's read buffer (64 KiB for epoll, a provided buffer for
//! io_uring). [`FrameReader::next`] hands out payloads that lie whole in that buffer as borrowed
//! slices, with no copy; only a frame split across reads is gathered into a buffer of its own,
//! allocated once its header has been checked against `max_msg_len`.

use std::{mem::MaybeUninit, sync::Arc};

use kchat_proto::HEADER_LEN;

/// One frame as it goes on the wire (header, then payload). Built once, shared by reference
/// count between all the send queues it sits in.
pub type Frame = Arc<[u8]>;

/// Builds the frame whose payload is `parts` one after the other, in one allocation and one
/// copy of each part.
pub fn build(parts: &[&[u8]]) -> Frame {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    // Payloads are at most max_msg_len (1 MiB) plus a label: always below 4 GiB.
    let header = u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes();
    let mut frame = Arc::<[u8]>::new_uninit_slice(HEADER_LEN + len);
    let dst = Arc::get_mut(&mut frame).expect("a new Arc has no other owner");
    let mut at = 0;
    for part in std::iter::once(&header[..]).chain(parts.iter().copied()) {
        for (d, s) in dst[at..at + part.len()].iter_mut().zip(part) {
            *d = MaybeUninit::new(*s);
        }
        at += part.len();
    }
    debug_assert_eq!(at, dst.len());
    // SAFETY: the loop above wrote every byte: the header and the parts add up to the length
    // the slice was allocated with.
    unsafe { frame.assume_init() }
}

/// A header declared a payload longer than `max_msg_len` (the declared length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong(pub u32);

/// A complete payload.
#[derive(Debug)]
pub enum Payload<'a> {
    /// The payload lay whole in the bytes just read.
    Borrowed(&'a [u8]),
    /// The payload arrived in pieces and was gathered here.
    Owned(Vec<u8>),
}

impl Payload<'_> {
    /// The payload bytes as the client sent them.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Self::Borrowed(b) => b,
            Self::Owned(v) => v,
        }
    }
}

/// Where the reader is between two reads.
#[derive(Debug)]
enum State {
    /// Between frames, or `have` bytes into a header.
    Header { buf: [u8; HEADER_LEN], have: usize },
    /// Inside a payload: `buf` holds what arrived, `need` bytes are missing.
    Payload { buf: Vec<u8>, need: usize },
}

/// Reassembles one client's frames from whatever pieces its reads return.
#[derive(Debug)]
pub struct FrameReader {
    max_len: u32,
    state: State,
}

impl FrameReader {
    /// A reader that refuses payloads longer than `max_len`.
    pub fn new(max_len: u32) -> Self {
        Self {
            max_len,
            state: State::Header {
                buf: [0; HEADER_LEN],
                have: 0,
            },
        }
    }

    /// Takes the next complete payload from the front of `input`, advancing it, or returns
    /// `Ok(None)` once `input` is used up. Keep-alives (length 0) are skipped. A length over
    /// the limit is refused from the header alone, before anything is allocated for it; the
    /// stream is unusable after that.
    pub fn next<'a>(&mut self, input: &mut &'a [u8]) -> Result<Option<Payload<'a>>, TooLong> {
        loop {
            match &mut self.state {
                State::Header { have: 0, .. } if input.len() >= HEADER_LEN => {
                    // Fast path: a header at the start of the input.
                    let len = header_len(&input[..HEADER_LEN]);
                    let len = check(len, self.max_len)?;
                    let (frame, rest) = input.split_at(input.len().min(HEADER_LEN + len));
                    *input = rest;
                    let payload = &frame[HEADER_LEN..];
                    if payload.len() == len {
                        if len == 0 {
                            continue;
                        }
                        return Ok(Some(Payload::Borrowed(payload)));
                    }
                    let mut buf = Vec::with_capacity(len);
                    buf.extend_from_slice(payload);
                    self.state = State::Payload {
                        need: len - buf.len(),
                        buf,
                    };
                    return Ok(None);
                }
                State::Header { buf, have } => {
                    if input.is_empty() {
                        return Ok(None);
                    }
                    let take = (HEADER_LEN - *have).min(input.len());
                    buf[*have..*have + take].copy_from_slice(&input[..take]);
                    *have += take;
                    *input = &input[take..];
                    if *have < HEADER_LEN {
                        return Ok(None);
                    }
                    *have = 0;
                    let len = check(header_len(&buf[..]), self.max_len)?;
                    if len > 0 {
                        self.state = State::Payload {
                            buf: Vec::with_capacity(len),
                            need: len,
                        };
                    }
                }
                State::Payload { buf, need } => {
                    if input.is_empty() {
                        return Ok(None);
                    }
                    let take = (*need).min(input.len());
                    buf.extend_from_slice(&input[..take]);
                    *need -= take;
                    *input = &input[take..];
                    if *need > 0 {
                        return Ok(None);
                    }
                    let done = std::mem::replace(
                        &mut self.state,
                        State::Header {
                            buf: [0; HEADER_LEN],
                            have: 0,
                        },
                    );
                    if let State::Payload { buf, .. } = done {
                        return Ok(Some(Payload::Owned(buf)));
                    }
                }
            }
        }
    }
}

/// The declared length as a size, if it is within the limit.
fn check(len: u32, max_len: u32) -> Result<usize, TooLong> {
    if len > max_len {
        return Err(TooLong(len));
    }
    // At most 1 MiB: fits any usize.
    Ok(len as usize)
}

/// The length a 4-byte header declares.
fn header_len(header: &[u8]) -> u32 {
    let mut b = [0; HEADER_LEN];
    b.copy_from_slice(header);
    u32::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kchat_proto::encode_into;

    fn feed_all(r: &mut FrameReader, stream: &[u8], chunk: usize) -> Result<Vec<Vec<u8>>, TooLong> {
        let mut got = Vec::new();
        for piece in stream.chunks(chunk) {
            let mut input = piece;
            while let Some(p) = r.next(&mut input)? {
                got.push(p.bytes().to_vec());
            }
            assert!(input.is_empty());
        }
        Ok(got)
    }

    #[test]
    fn any_split() {
        let mut stream = Vec::new();
        for p in [&b"hello"[..], b"", b"x", &[7u8; 300]] {
            encode_into(p, &mut stream);
        }
        for chunk in [1, 2, 3, 4, 5, 7, 64, 1000] {
            let mut r = FrameReader::new(4096);
            let got = feed_all(&mut r, &stream, chunk).unwrap();
            assert_eq!(got, vec![b"hello".to_vec(), b"x".to_vec(), vec![7u8; 300]]);
        }
    }

    #[test]
    fn limits_on_the_header_alone() {
        for (len, max, ok) in [
            (4096, 4096, true),
            (4097, 4096, false),
            (u32::MAX, 1 << 20, false),
        ] {
            let mut r = FrameReader::new(max);
            let header = len.to_le_bytes();
            let mut input = &header[..];
            let got = r.next(&mut input);
            assert_eq!(got.is_ok(), ok, "{len} with max {max}");
            if !ok {
                assert_eq!(got.unwrap_err(), TooLong(len));
            }
        }
    }

    #[test]
    fn built_frames() {
        let f = build(&[b"bob", b": ", b"hi"]);
        assert_eq!(&f[..], b"\x07\x00\x00\x00bob: hi");
        assert_eq!(&build(&[])[..], b"\x00\x00\x00\x00");
    }
}
