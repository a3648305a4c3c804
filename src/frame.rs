// SPDX-License-Identifier: GPL-2.0

//! The wire format: every frame is a u32 little-endian length, then that many payload bytes.
//!
//! [`FrameReader`] reassembles frames from whatever pieces TCP delivers (one byte at a time, a
//! header split across reads, many frames in one read). It checks a declared length against
//! `max_msg_len` before allocating anything, and reserves [`HEADROOM`] bytes in front of each
//! payload, so that [`Frame::relay`] can build the outgoing `[len]LABEL: payload` frame in
//! place, without copying the payload again.

use core::ops::{
    Deref,
    DerefMut, //
};
use kernel::{
    fmt,
    prelude::*,
    sync::atomic::{
        Atomic,
        Relaxed, //
    },
};

use crate::{
    label::{
        Label,
        MAX_LABEL_LEN, //
    },
    net::Segment,
    pages::{
        LogSlice,
        LogWriter, //
    },
};

/// Length of the frame header.
pub(crate) const HEADER_LEN: usize = 4;

/// Separator between a label and the message in a relayed frame.
const LABEL_SEP: &[u8] = b": ";

/// Bytes reserved before every received payload: room for a header, the longest label and the
/// separator.
pub(crate) const HEADROOM: usize = HEADER_LEN + MAX_LABEL_LEN + LABEL_SEP.len();

/// Bytes held by message buffers (payloads being received, frames waiting in queues), across
/// the module: the stats view shows it, and the hostile-client tests check that it returns to
/// zero once the attackers are gone.
static BUFFER_BYTES: Atomic<u64> = Atomic::new(0);

/// Bytes held by message buffers now.
pub(crate) fn buffer_bytes() -> u64 {
    BUFFER_BYTES.load(Relaxed)
}

/// A message buffer, counted in [`BUFFER_BYTES`] for as long as it lives.
pub(crate) struct Buf {
    v: KVVec<u8>,
    /// What was added to the count (the capacity when counted).
    counted: usize,
}

impl Buf {
    pub(crate) fn new(v: KVVec<u8>) -> Self {
        let counted = v.capacity();
        BUFFER_BYTES.add(counted as u64, Relaxed);
        Self { v, counted }
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        BUFFER_BYTES.fetch_sub(self.counted as u64, Relaxed);
    }
}

impl Deref for Buf {
    type Target = KVVec<u8>;

    fn deref(&self) -> &KVVec<u8> {
        &self.v
    }
}

impl DerefMut for Buf {
    fn deref_mut(&mut self) -> &mut KVVec<u8> {
        &mut self.v
    }
}

/// Why a byte stream is not a valid sequence of frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// A header declared a payload longer than `max_msg_len`.
    TooLong(u32),
    /// The payload buffer could not be allocated.
    NoMemory,
}

/// A complete payload received from a client, with [`HEADROOM`] bytes reserved in front.
pub(crate) struct Payload {
    /// `HEADROOM` reserved bytes, then the payload.
    buf: Buf,
}

impl Payload {
    /// The payload bytes as the client sent them.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf[HEADROOM..]
    }
}

/// Where the reader is within the current frame.
enum State {
    /// Reading the 4-byte header; `have` bytes of it are in `buf`.
    Header { buf: [u8; HEADER_LEN], have: usize },
    /// Reading a payload; `need` more bytes complete it.
    Payload { buf: Buf, need: usize },
}

/// Reassembles frames from a byte stream.
pub(crate) struct FrameReader {
    max_len: u32,
    state: State,
}

impl FrameReader {
    /// A reader that accepts payloads of up to `max_len` bytes.
    pub(crate) fn new(max_len: u32) -> Self {
        Self {
            max_len,
            state: State::Header {
                buf: [0; HEADER_LEN],
                have: 0,
            },
        }
    }

    /// Whether a frame has been started but not completed.
    pub(crate) fn mid_frame(&self) -> bool {
        !matches!(self.state, State::Header { have: 0, .. })
    }

    /// Consumes bytes from the front of `input`.
    ///
    /// Returns how many bytes were used and the payload they completed, if any; call again
    /// with the rest. Keep-alive frames (length 0) are consumed and produce nothing. After an
    /// error the stream is unusable: the caller disconnects.
    pub(crate) fn feed(&mut self, input: &[u8]) -> Result<(usize, Option<Payload>), FrameError> {
        match &mut self.state {
            State::Header { buf, have } => {
                let take = (HEADER_LEN - *have).min(input.len());
                buf[*have..*have + take].copy_from_slice(&input[..take]);
                *have += take;
                if *have < HEADER_LEN {
                    return Ok((take, None));
                }
                let len = u32::from_le_bytes(*buf);
                *have = 0;
                if len == 0 {
                    return Ok((take, None));
                }
                if len > self.max_len {
                    return Err(FrameError::TooLong(len));
                }
                // `len <= max_len <= 1 MiB`, so the sum cannot overflow.
                let need = len as usize;
                // The size is the client's to choose (within max_msg_len): a failure is its
                // problem, not worth a warning in the log.
                let flags = GFP_KERNEL | __GFP_NOWARN;
                let mut payload = KVVec::with_capacity(HEADROOM + need, flags)
                    .map_err(|_| FrameError::NoMemory)?;
                payload
                    .extend_with(HEADROOM, 0, flags)
                    .map_err(|_| FrameError::NoMemory)?;
                self.state = State::Payload {
                    buf: Buf::new(payload),
                    need,
                };
                Ok((take, None))
            }
            State::Payload { buf, need } => {
                let take = (*need).min(input.len());
                // The capacity was reserved when the header was read: this does not allocate.
                buf.extend_from_slice(&input[..take], GFP_KERNEL)
                    .map_err(|_| FrameError::NoMemory)?;
                *need -= take;
                if *need > 0 {
                    return Ok((take, None));
                }
                let done = core::mem::replace(
                    &mut self.state,
                    State::Header {
                        buf: [0; HEADER_LEN],
                        have: 0,
                    },
                );
                match done {
                    State::Payload { buf, .. } => Ok((take, Some(Payload { buf }))),
                    State::Header { .. } => Ok((take, None)),
                }
            }
        }
    }
}

/// A frame to send: built once, shared by every recipient through an `Arc`.
pub(crate) struct Frame {
    store: Store,
}

/// Where a frame's bytes are.
enum Store {
    /// In its own buffer, from `start` (relayed frames use only part of the headroom).
    Buf { buf: Buf, start: usize },
    /// In a page-backed log ([`Frame::sealed`]), which sends splice rather than copy.
    Log(LogSlice),
}

impl Frame {
    fn in_buf(buf: Buf, start: usize) -> Self {
        Self {
            store: Store::Buf { buf, start },
        }
    }

    /// Builds the relayed frame `LABEL: payload` in the payload's headroom.
    pub(crate) fn relay(payload: Payload, label: &Label) -> Result<Self> {
        let mut buf = payload.buf;
        let label = label.as_bytes();
        let body_len = buf.len() - HEADROOM + label.len() + LABEL_SEP.len();
        let len = u32::try_from(body_len).map_err(|_| EMSGSIZE)?;
        let start = HEADROOM - HEADER_LEN - label.len() - LABEL_SEP.len();
        let mut at = start;
        for part in [&len.to_le_bytes()[..], label, LABEL_SEP] {
            buf[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        Ok(Self::in_buf(buf, start))
    }

    /// A frame carrying server text (notices and errors), formatted from `args`.
    pub(crate) fn text(args: fmt::Arguments<'_>) -> Result<Self> {
        let mut w = TextFrame::new(usize::MAX)?;
        fmt::Write::write_fmt(&mut w, args).map_err(|_| ENOMEM)?;
        w.finish()
    }

    /// A frame that is already wire bytes (IRC lines).
    pub(crate) fn raw(bytes: KVVec<u8>) -> Self {
        Self::in_buf(Buf::new(bytes), 0)
    }

    /// The same bytes written into `log`, if they belong there (a frame in its own buffer, of at
    /// most [`crate::pages::MAX_LOG_FRAME`] bytes). `Ok(None)`: keep this one.
    pub(crate) fn sealed(&self, log: &mut LogWriter) -> Result<Option<Frame>> {
        if matches!(self.store, Store::Log(_)) {
            return Ok(None);
        }
        Ok(log.append(self.as_bytes())?.map(|slice| Self {
            store: Store::Log(slice),
        }))
    }

    /// The frame as it goes on the wire.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match &self.store {
            Store::Buf { buf, start } => &buf[*start..],
            Store::Log(slice) => slice.as_bytes(),
        }
    }

    /// The bytes from `skip` on, as a send takes them: copied, or spliced from a log page.
    pub(crate) fn segment(&self, skip: usize) -> Segment<'_> {
        match &self.store {
            Store::Buf { buf, start } => Segment::Copy(&buf[*start + skip..]),
            Store::Log(slice) => Segment::Splice {
                page: slice.page(),
                at: slice.offset() + skip,
                len: slice.len() - skip,
            },
        }
    }

    /// Where the frame is in a log, if it is in one.
    pub(crate) fn log_slice(&self) -> Option<&LogSlice> {
        match &self.store {
            Store::Buf { .. } => None,
            Store::Log(slice) => Some(slice),
        }
    }

    /// Length on the wire.
    pub(crate) fn len(&self) -> usize {
        match &self.store {
            Store::Buf { buf, start } => buf.len() - start,
            Store::Log(slice) => slice.len(),
        }
    }
}

/// A server text frame being written: at most `max` payload bytes are kept, and a text that
/// did not fit ends in `...` (lists such as `/who` answers are cut this way).
pub(crate) struct TextFrame {
    /// The header's room, then the text.
    buf: KVVec<u8>,
    max: usize,
    cut: bool,
}

impl TextFrame {
    /// An empty text of at most `max` bytes.
    pub(crate) fn new(max: usize) -> Result<Self> {
        let mut buf = KVVec::new();
        buf.extend_with(HEADER_LEN, 0, GFP_KERNEL)?;
        Ok(Self {
            buf,
            max,
            cut: false,
        })
    }

    /// Appends `bytes`, as much as fits.
    pub(crate) fn bytes(&mut self, bytes: &[u8]) -> fmt::Result {
        let room = self.max - (self.buf.len() - HEADER_LEN).min(self.max);
        let take = bytes.len().min(room);
        if take < bytes.len() {
            self.cut = true;
        }
        self.buf
            .extend_from_slice(&bytes[..take], GFP_KERNEL)
            .map_err(|_| fmt::Error)
    }

    /// Whether something did not fit.
    pub(crate) fn is_cut(&self) -> bool {
        self.cut
    }

    /// The frame: the header is filled in, and a cut text ends in `...` within the limit.
    pub(crate) fn finish(mut self) -> Result<Frame> {
        if self.cut {
            let keep = self.max.saturating_sub(3).min(self.buf.len() - HEADER_LEN);
            self.buf.truncate(HEADER_LEN + keep);
            self.buf
                .extend_from_slice(&b"..."[..self.max.min(3)], GFP_KERNEL)?;
        }
        let len = u32::try_from(self.buf.len() - HEADER_LEN).map_err(|_| EMSGSIZE)?;
        self.buf[..HEADER_LEN].copy_from_slice(&len.to_le_bytes());
        Ok(Frame::in_buf(Buf::new(self.buf), 0))
    }
}

impl fmt::Write for TextFrame {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.bytes(s.as_bytes())
    }
}

#[kunit_tests(kchat_frame)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `chunk` bytes; returns the payloads and any error.
    fn feed_all(
        r: &mut FrameReader,
        input: &[u8],
        chunk: usize,
    ) -> Result<(KVec<KVVec<u8>>, Option<FrameError>)> {
        let mut out = KVec::new();
        for piece in input.chunks(chunk) {
            let mut rest = piece;
            while !rest.is_empty() {
                match r.feed(rest) {
                    Ok((used, p)) => {
                        rest = &rest[used..];
                        if let Some(p) = p {
                            let mut v = KVVec::new();
                            v.extend_from_slice(p.bytes(), GFP_KERNEL)?;
                            out.push(v, GFP_KERNEL)?;
                        }
                    }
                    Err(e) => return Ok((out, Some(e))),
                }
            }
        }
        Ok((out, None))
    }

    fn frame(payload: &[u8], out: &mut KVec<u8>) -> Result {
        let len = u32::try_from(payload.len()).map_err(|_| EINVAL)?;
        out.extend_from_slice(&len.to_le_bytes(), GFP_KERNEL)?;
        out.extend_from_slice(payload, GFP_KERNEL)?;
        Ok(())
    }

    #[test]
    fn split_anywhere() -> Result {
        // Three frames (one keep-alive between them), fed in every chunk size: one byte at a
        // time splits the header, large chunks carry several frames.
        let mut stream = KVec::new();
        frame(b"hello", &mut stream)?;
        frame(b"", &mut stream)?;
        frame(b"x", &mut stream)?;
        frame(&[7u8; 300], &mut stream)?;
        for chunk in [1, 2, 3, 4, 5, 7, 64, 1000] {
            let mut r = FrameReader::new(4096);
            let (got, err) = feed_all(&mut r, &stream, chunk)?;
            assert!(err.is_none());
            assert_eq!(got.len(), 3);
            assert_eq!(&got[0][..], b"hello");
            assert_eq!(&got[1][..], b"x");
            assert_eq!(&got[2][..], &[7u8; 300][..]);
            let mid = r.mid_frame();
            assert!(!mid);
        }
        Ok(())
    }

    #[test]
    fn length_limits() -> Result {
        // Table of (declared length, max_msg_len, accepted).
        let cases: [(u32, u32, bool); 5] = [
            (1, 1, true),
            (4096, 4096, true),
            (4097, 4096, false),
            (u32::MAX, 4096, false),
            (u32::MAX, 1 << 20, false),
        ];
        for (len, max, ok) in cases {
            let mut r = FrameReader::new(max);
            let header = len.to_le_bytes();
            let result = r.feed(&header);
            if ok {
                let mid = r.mid_frame();
                assert!(mid);
                assert!(result.is_ok());
            } else {
                // Rejected on the header alone: nothing was allocated for the payload.
                assert_eq!(result.err(), Some(FrameError::TooLong(len)));
            }
        }
        Ok(())
    }

    #[test]
    fn relay_and_text_frames() -> Result {
        let mut r = FrameReader::new(100);
        let (used, none) = r.feed(b"\x02\x00\x00\x00hi").map_err(|_| EINVAL)?;
        assert_eq!(used, 4);
        assert!(none.is_none());
        let (_, p) = r.feed(b"hi").map_err(|_| EINVAL)?;
        let p = p.ok_or(EINVAL)?;
        let label = Label::nick(b"bob").map_err(|_| EINVAL)?;
        let f = Frame::relay(p, &label)?;
        assert_eq!(f.as_bytes(), b"\x07\x00\x00\x00bob: hi");
        assert_eq!(f.len(), 11);
        let t = Frame::text(fmt!("* {} joined", "bob"))?;
        assert_eq!(t.as_bytes(), b"\x0c\x00\x00\x00* bob joined");
        Ok(())
    }

    #[test]
    fn text_frames_are_cut_with_dots() -> Result {
        let mut w = TextFrame::new(10)?;
        fmt::Write::write_str(&mut w, "* 3 online: a, b").map_err(|_| EINVAL)?;
        let cut = w.is_cut();
        assert!(cut);
        let f = w.finish()?;
        assert_eq!(f.as_bytes(), b"\x0a\x00\x00\x00* 3 onl...");
        let mut w = TextFrame::new(10)?;
        w.bytes(b"exactly 10").map_err(|_| EINVAL)?;
        let f = w.finish()?;
        assert_eq!(f.as_bytes(), b"\x0a\x00\x00\x00exactly 10");
        Ok(())
    }
}
