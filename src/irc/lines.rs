// SPDX-License-Identifier: GPL-2.0

//! Writing IRC lines: each at most 512 bytes with its CR LF, client text made safe (no CR,
//! LF or NUL can end a line early or forge another), many lines in one frame.

use kernel::{
    fmt::{
        self,
        Write, //
    },
    prelude::*,
};

use crate::frame::Frame;

/// Longest line without its CR LF.
pub(crate) const MAX_BODY: usize = 510;

/// The server's name, as it prefixes its lines.
pub(crate) const SERVER: &str = "kchat";

/// IRC lines being written into one frame.
pub(crate) struct Lines {
    buf: KVVec<u8>,
    /// Where the line being written starts.
    start: usize,
    /// Set when an allocation failed: the frame is not sent.
    failed: bool,
}

impl Lines {
    pub(crate) fn new() -> Self {
        Self {
            buf: KVVec::new(),
            start: 0,
            failed: false,
        }
    }

    /// Lines with room for `bytes` written without growing (one allocation for a relayed
    /// message instead of one per doubling).
    pub(crate) fn with_capacity(bytes: usize) -> Self {
        let mut w = Self::new();
        if w.buf.reserve(bytes, GFP_KERNEL).is_err() {
            w.failed = true;
        }
        w
    }

    /// Bytes written.
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Room left in the line being written.
    pub(crate) fn room(&self) -> usize {
        MAX_BODY.saturating_sub(self.buf.len() - self.start)
    }

    fn put(&mut self, bytes: &[u8]) {
        let take = bytes.len().min(self.room());
        if self
            .buf
            .extend_from_slice(&bytes[..take], GFP_KERNEL)
            .is_err()
        {
            self.failed = true;
        }
    }

    /// Appends text from a client: CR, LF and NUL become spaces; cut where the line is full.
    pub(crate) fn text(&mut self, bytes: &[u8]) {
        let take = bytes.len().min(self.room());
        if self.buf.reserve(take, GFP_KERNEL).is_err() {
            self.failed = true;
            return;
        }
        for &c in &bytes[..take] {
            let c = if matches!(c, b'\r' | b'\n' | 0) {
                b' '
            } else {
                c
            };
            let _ = self.buf.push_within_capacity(c);
        }
    }

    /// Appends formatted server text (which holds no CR, LF or NUL).
    pub(crate) fn fmt(&mut self, args: fmt::Arguments<'_>) {
        let _ = self.write_fmt(args);
    }

    /// Ends the line being written.
    pub(crate) fn end(&mut self) {
        if self.buf.extend_from_slice(b"\r\n", GFP_KERNEL).is_err() {
            self.failed = true;
        }
        self.start = self.buf.len();
    }

    /// A whole line of server text.
    pub(crate) fn line(&mut self, args: fmt::Arguments<'_>) {
        self.fmt(args);
        self.end();
    }

    /// Starts a numeric reply to `me`: `:kchat NNN me `; the caller writes the rest and
    /// calls [`Lines::end`].
    pub(crate) fn numeric(&mut self, code: u16, me: &dyn fmt::Display) {
        self.fmt(fmt!(":{SERVER} {code:03} {me} "));
    }

    /// A whole numeric reply.
    pub(crate) fn reply(&mut self, code: u16, me: &dyn fmt::Display, args: fmt::Arguments<'_>) {
        self.numeric(code, me);
        self.fmt(args);
        self.end();
    }

    /// The frame, if anything was written and every allocation succeeded.
    pub(crate) fn finish(self) -> Result<Option<Frame>> {
        if self.failed {
            return Err(ENOMEM);
        }
        if self.buf.is_empty() {
            return Ok(None);
        }
        Ok(Some(Frame::raw(self.buf)))
    }
}

impl Write for Lines {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.put(s.as_bytes());
        Ok(())
    }
}
