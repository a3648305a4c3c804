// SPDX-License-Identifier: GPL-2.0
//! The Redis pub/sub driver: subscribers `SUBSCRIBE` to one channel (with rooms, their
//! room's) and receive `message` pushes; publishers send `PUBLISH channel <payload>` and read
//! one integer reply each.

use std::{
    io::{self, Read},
    sync::atomic::Ordering,
};

use mio::net::TcpStream;

use crate::{
    layout::room_name,
    options::Options,
    payload,
    resp::{self, Item, Value},
    sys,
    tracker::Tracker,
};

/// The channel of room `room`: `--channel` without rooms, else the room's name.
pub(crate) fn channel(o: &Options, room: u32) -> String {
    match o.rooms {
        Some(_) => room_name(room),
        None => o.channel.clone(),
    }
}

/// Appends `SUBSCRIBE channel`.
pub(crate) fn append_subscribe(out: &mut Vec<u8>, channel: &str) {
    resp::command(out, &[b"SUBSCRIBE", channel.as_bytes()]);
}

/// Appends `PUBLISH` of message `seq` of `sender`; `prefix` is [`resp::publish_prefix`] for
/// this channel and payload length.
pub(crate) fn append_publish(
    out: &mut Vec<u8>,
    prefix: &[u8],
    len: usize,
    sender: u32,
    seq: u32,
    sent_ns: u64,
) {
    out.extend_from_slice(prefix);
    payload::append(out, len, sender, seq, sent_ns);
    out.extend_from_slice(b"\r\n");
}

/// What a subscriber connection should do after a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum After {
    /// Keep reading.
    Continue,
    /// A stalled subscriber got its confirmation: stop reading it for good.
    StopReading,
}

/// Whose connection a read is for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Conn {
    /// Receiver row, for subscribers that are recipients.
    pub(crate) row: Option<u32>,
    /// Publisher (reads integer replies) rather than subscriber.
    pub(crate) publisher: bool,
    /// Bytes to ask for per read(2).
    pub(crate) chunk: usize,
    /// The event said the peer closed: read to EOF, even after a short read.
    pub(crate) closing: bool,
}

/// Reads everything available on `stream` and handles every reply or push.
/// `Err` means the connection is finished.
pub(crate) fn read(
    stream: &mut TcpStream,
    rd: &mut resp::Reader,
    conn: Conn,
    tracker: &mut Tracker,
) -> io::Result<After> {
    loop {
        let buf = rd.spare(conn.chunk);
        let want = buf.len();
        let n = match stream.read(buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(After::Continue),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        rd.filled(n);
        let now = sys::monotonic_ns();
        loop {
            let v = match rd.next() {
                Ok(Some(v)) => v,
                Ok(None) => break,
                Err(resp::Malformed) => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "malformed RESP"))
                }
            };
            if on_value(v, conn, now, tracker) == After::StopReading {
                return Ok(After::StopReading);
            }
        }
        if n < want && !conn.closing {
            // Drained; see kchat::read for why a closing peer is read to EOF.
            return Ok(After::Continue);
        }
    }
}

/// Handles one reply or push.
fn on_value(v: Value<'_>, conn: Conn, now: u64, tracker: &mut Tracker) -> After {
    match v {
        Value::Item(Item::Integer(_)) if conn.publisher => {}
        Value::Item(Item::Error(e)) => {
            tracker.error(&format!("redis: {}", String::from_utf8_lossy(e)));
        }
        Value::Array { len: 3, items } if !conn.publisher => match items {
            [Item::Bulk(Some(b"message")), _, Item::Bulk(Some(p)), _] => {
                // Stalled subscribers (no row) stop reading at their confirmation.
                if let Some(row) = conn.row {
                    tracker.deliver(row, None, p, now);
                }
            }
            [Item::Bulk(Some(b"subscribe")), _, _, _] => {
                let sh = tracker.shared();
                sh.confirmed.fetch_add(1, Ordering::AcqRel);
                sh.progress.fetch_add(1, Ordering::Relaxed);
                if conn.row.is_none() {
                    return After::StopReading;
                }
            }
            _ => tracker.error("redis: unexpected push"),
        },
        _ => tracker.error("redis: unexpected reply"),
    }
    After::Continue
}
