// SPDX-License-Identifier: GPL-2.0
//! The kchat protocol driver: sending messages, syncs and room joins as frames, and reading
//! relayed frames (`LABEL: PAYLOAD`) into the tracker.

use std::{io, sync::atomic::Ordering};

use kchat_proto::{encode_into, Decoder};
use mio::net::TcpStream;

use crate::{
    layout::room_name,
    payload,
    recv::{self, After, Readable},
    shared::MAX_SYNCS,
    tracker::{Origin, Tracker},
};

/// What one relayed frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Frame<'a> {
    /// `LABEL: PAYLOAD`: another client's message.
    Relay { label: &'a [u8], payload: &'a [u8] },
    /// `* ...`: a notice (joins and leaves, when the server has notices on).
    Notice,
    /// `! ...`: an error from the server to this client.
    ServerError(&'a [u8]),
    /// None of the above.
    Unknown,
}

/// Classifies a frame the server sent. The label ends at the first `": "`.
pub(crate) fn classify(frame: &[u8]) -> Frame<'_> {
    if frame.starts_with(b"* ") {
        return Frame::Notice;
    }
    if frame.starts_with(b"! ") {
        return Frame::ServerError(frame);
    }
    match frame.windows(2).position(|w| w == b": ") {
        Some(i) => Frame::Relay {
            label: &frame[..i],
            payload: &frame[i + 2..],
        },
        None => Frame::Unknown,
    }
}

/// The port at the end of an `ip:port` label (any IP spelling), if there is one.
pub(crate) fn label_port(label: &[u8]) -> Option<u16> {
    // A member of another node of a cluster is `LABEL@NODE`.
    let label = match label.iter().rposition(|&b| b == b'@') {
        Some(at) => &label[..at],
        None => label,
    };
    let colon = label.iter().rposition(|&b| b == b':')?;
    let digits = &label[colon + 1..];
    if digits.is_empty() || digits.len() > 5 {
        return None;
    }
    // By hand: this runs once per delivery, and str::parse costs more than the rest.
    let mut port: u32 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        port = port * 10 + u32::from(d - b'0');
    }
    u16::try_from(port).ok()
}

/// Appends the frame of message `seq` of `sender`, `len` payload bytes sent at `sent_ns`.
pub(crate) fn append_message(out: &mut Vec<u8>, len: usize, sender: u32, seq: u32, sent_ns: u64) {
    out.extend_from_slice(&(len as u32).to_le_bytes());
    payload::append(out, len, sender, seq, sent_ns);
}

/// Appends the frame of sync message `id`.
pub(crate) fn append_sync(out: &mut Vec<u8>, id: u32) {
    encode_into(&payload::sync(id), out);
}

/// Appends the frame `/join #ROOM` of room `room`.
pub(crate) fn append_join(out: &mut Vec<u8>, room: u32) {
    encode_into(format!("/join #{}", room_name(room)).as_bytes(), out);
}

/// The start of the server's reply to the joiner of room `room`: `* now in #ROOM (`.
fn join_reply(room: u32) -> String {
    format!("* now in #{} (", room_name(room))
}

/// K from a history replay's heading, `* last K messages of #ROOM:`.
fn replay_len(notice: &[u8]) -> Option<u32> {
    let rest = notice.strip_prefix(b"* last ")?;
    let digits = rest.iter().position(|&b| b == b' ')?;
    if !rest[digits..].starts_with(b" messages of #") {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// A kchat client's receive side: its decoder, and what it expects before the run's messages.
#[derive(Debug)]
pub(crate) struct Inbox {
    dec: Decoder,
    expect: Expect,
}

/// What a client expects from the server besides the run's messages.
#[derive(Debug, Clone, Copy)]
struct Expect {
    /// The room whose join reply the client waits for.
    joining: Option<u32>,
    /// Frames of a history replay still to come: messages of earlier runs, not accounted.
    replay: u32,
}

impl Inbox {
    /// The receive side of a client that joins room `joining` (if any) once connected.
    pub(crate) fn new(joining: Option<u32>) -> Self {
        Self {
            // Relayed frames carry a label (at most `[ipv6]:port: `) in front of the message.
            dec: Decoder::new(kchat_proto::MAX_MSG_LEN_LIMIT + 64),
            expect: Expect { joining, replay: 0 },
        }
    }
}

impl Expect {
    /// A notice arrived: it may head a history replay, or be the awaited join reply, which
    /// counts for the barrier.
    fn notice(&mut self, text: &[u8], tracker: &Tracker) {
        if let Some(k) = replay_len(text) {
            self.replay = k;
            return;
        }
        let Some(room) = self.joining else { return };
        let reply = join_reply(room);
        if text.len() >= reply.len() && text[..reply.len()].eq_ignore_ascii_case(reply.as_bytes()) {
            self.joining = None;
            tracker.shared().confirm();
        }
    }
}

/// Reads everything available on `stream` for receiver `row` and accounts every frame.
/// `Err` means the connection is finished (closed by the server or broken).
pub(crate) fn read(
    stream: &mut TcpStream,
    inbox: &mut Inbox,
    row: u32,
    ev: Readable,
    tracker: &mut Tracker,
) -> io::Result<After> {
    let Inbox { dec, expect } = inbox;
    recv::read_all(stream, dec, ev, |dec, now| {
        while let Some(frame) = dec
            .next_frame()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
        {
            on_frame(frame, expect, row, now, tracker);
        }
        Ok(After::Continue)
    })
}

/// Accounts one frame received by `row`.
fn on_frame(frame: &[u8], expect: &mut Expect, row: u32, now: u64, tracker: &mut Tracker) {
    if expect.replay > 0 {
        expect.replay -= 1;
        return;
    }
    match classify(frame) {
        Frame::Relay { label, payload } => {
            if let Some(id) = payload::parse_sync(payload) {
                on_sync(id, tracker);
            } else {
                tracker.deliver(row, Origin::Label(label), payload, now);
            }
        }
        Frame::Notice => expect.notice(frame, tracker),
        Frame::ServerError(text) => {
            let text = String::from_utf8_lossy(text);
            tracker.error(&format!("server: {text}"));
            if let Some(room) = expect.joining {
                // The client is not where the run needs it: nothing it receives would count.
                let room = room_name(room);
                tracker.shared().abort(format!("joining #{room}: {text}"));
            }
        }
        Frame::Unknown => tracker.counts.corrupted += 1,
    }
}

/// A sync message arrived: count it for the barrier (late ones are simply dropped).
fn on_sync(id: u32, tracker: &mut Tracker) {
    if let Some(c) = tracker.shared().sync_counts.get(id as usize) {
        c.fetch_add(1, Ordering::AcqRel);
    }
}

/// The next sync id to send, or `None` if the barrier has used them all.
pub(crate) fn next_sync_id(tracker: &Tracker) -> Option<u32> {
    let id = tracker.shared().sync_sent.fetch_add(1, Ordering::AcqRel);
    ((id as usize) < MAX_SYNCS).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks frame classification: the label ends at the first ": " (so a payload containing
    /// ": " stays whole), notices and errors are recognised, and a frame with no separator is
    /// unknown.
    #[test]
    fn classify_frames() {
        assert_eq!(
            classify(b"127.0.0.1:5000: a: b"),
            Frame::Relay {
                label: b"127.0.0.1:5000",
                payload: b"a: b"
            }
        );
        assert_eq!(
            classify(b"x: "),
            Frame::Relay {
                label: b"x",
                payload: b""
            }
        );
        assert_eq!(classify(b"* 1.2.3.4:5 joined"), Frame::Notice);
        assert!(matches!(classify(b"! too long"), Frame::ServerError(_)));
        assert_eq!(classify(b"no separator"), Frame::Unknown);
    }

    /// Checks port extraction from IPv4, IPv6 and nick labels.
    #[test]
    fn ports() {
        assert_eq!(label_port(b"127.0.0.1:54321"), Some(54321));
        assert_eq!(label_port(b"[::1]:80"), Some(80));
        assert_eq!(label_port(b"alice"), None);
        assert_eq!(label_port(b"127.0.0.1:54321@node-a"), Some(54321));
        assert_eq!(label_port(b"1.2.3.4:99999"), None);
        assert_eq!(label_port(b"1.2.3.4:"), None);
    }

    /// Checks the texts of rooms: the join command, the reply it waits for, and the heading
    /// of a history replay (anything else is not one).
    #[test]
    fn room_texts() {
        let mut out = Vec::new();
        append_join(&mut out, 7);
        assert_eq!(&out[4..], b"/join #bench-7");
        assert_eq!(join_reply(7), "* now in #bench-7 (");
        assert_eq!(replay_len(b"* last 20 messages of #lobby:"), Some(20));
        assert_eq!(replay_len(b"* last 1 messages of #bench-1:"), Some(1));
        assert_eq!(replay_len(b"* last x messages of #a:"), None);
        assert_eq!(replay_len(b"* last 3 left"), None);
        assert_eq!(replay_len(b"* 1.2.3.4:5 joined"), None);
    }

    /// Checks that a message frame is a length header plus exactly the payload.
    #[test]
    fn message_frame() {
        let mut out = Vec::new();
        append_message(&mut out, 40, 1, 2, 3);
        assert_eq!(out.len(), kchat_proto::HEADER_LEN + 40);
        assert_eq!(&out[..4], &40u32.to_le_bytes());
        assert!(matches!(
            payload::check(&out[4..]),
            payload::Check::Intact(_)
        ));
    }
}
