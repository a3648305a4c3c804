// SPDX-License-Identifier: GPL-2.0

//! A chat message as the core relays and keeps it: the frame its sender's front end built,
//! and the same message rendered for each other protocol among its recipients, once.

use kernel::{
    prelude::*,
    sync::Arc, //
};

use super::Origin;
use crate::{
    frame::Frame,
    frontend::Protocol,
    label::RoomName,
    pages::LogWriter, //
};

/// A chat message: shared by every recipient of a protocol and by the room's history.
#[derive(Clone)]
pub(crate) struct Message {
    /// The message as each protocol shows it; the sender's is always there.
    frames: [Option<Arc<Frame>>; Protocol::COUNT],
    source: Protocol,
    /// Where the text is in the sender's frame: start and length.
    text: (u32, u32),
    /// A notice (IRC's `NOTICE`) rather than a message.
    notice: bool,
}

impl Message {
    /// A message whose `source` frame holds its text at `text_at`, `text_len` bytes.
    pub(crate) fn new(
        frame: Arc<Frame>,
        source: Protocol,
        text_at: usize,
        text_len: usize,
        notice: bool,
    ) -> Self {
        let end = (text_at + text_len).min(frame.len());
        let at = text_at.min(end);
        let mut frames = [const { None }; Protocol::COUNT];
        frames[source as usize] = Some(frame);
        Self {
            frames,
            source,
            // Frames are shorter than 4 GiB (`max_msg_len` is at most 1 MiB).
            text: (at as u32, (end - at) as u32),
            notice,
        }
    }

    /// The message as `protocol` shows it, if it has been rendered for it.
    pub(crate) fn frame(&self, protocol: Protocol) -> Option<&Arc<Frame>> {
        self.frames[protocol as usize].as_ref()
    }

    /// The text as the sender wrote it.
    pub(crate) fn text(&self) -> &[u8] {
        let (at, len) = (self.text.0 as usize, self.text.1 as usize);
        self.frames[self.source as usize]
            .as_ref()
            .map_or(&[][..], |f| &f.as_bytes()[at..at + len])
    }

    /// Bytes of all its frames.
    pub(crate) fn bytes(&self) -> usize {
        self.frames.iter().flatten().map(|f| f.len()).sum()
    }

    /// Writes each of its frames into the log of its protocol, where sends splice it from
    /// (see [`Frame::sealed`]). A frame that does not go into a log (too long, already there,
    /// or no page to be had) stays as it is, and is copied to each recipient.
    pub(super) fn seal(&mut self, logs: &mut [LogWriter; Protocol::COUNT]) {
        for (slot, log) in self.frames.iter_mut().zip(logs.iter_mut()) {
            let Some(frame) = slot else {
                continue;
            };
            if let Ok(Some(sealed)) = frame.sealed(log) {
                if let Ok(sealed) = Arc::new(sealed, GFP_KERNEL | __GFP_NOWARN) {
                    *slot = Some(sealed);
                }
            }
        }
    }

    /// Renders the message for `protocol` unless it is already, as sent by `from` to
    /// `room`; false if that failed (it then reaches nobody of that protocol).
    pub(super) fn render(
        &mut self,
        protocol: Protocol,
        from: &Origin<'_>,
        room: &RoomName,
    ) -> bool {
        if self.frames[protocol as usize].is_some() {
            return true;
        }
        let frame = protocol
            .render_message(from, room, self.text(), self.notice)
            .and_then(|f| Ok(Arc::new(f, GFP_KERNEL)?));
        match frame {
            Ok(f) => {
                self.frames[protocol as usize] = Some(f);
                true
            }
            Err(_) => false,
        }
    }
}
