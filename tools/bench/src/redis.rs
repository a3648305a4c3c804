// SPDX-License-Identifier: GPL-2.0
//! The Redis pub/sub driver: subscribers `SUBSCRIBE` to one channel (with rooms, their
//! room's) and receive `message` pushes; publishers send `PUBLISH channel <payload>`
//! ([`resp::publish_prefix`], then the payload) and read one integer reply each.

use std::io;

use mio::net::TcpStream;

use crate::{
    recv::{self, After, Readable},
    resp::{self, Item, Value},
    tracker::{Origin, Tracker},
};

/// Appends `SUBSCRIBE channel`.
pub(crate) fn append_subscribe(out: &mut Vec<u8>, channel: &str) {
    resp::command(out, &[b"SUBSCRIBE", channel.as_bytes()]);
}

/// Whose connection a read is for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Conn {
    /// Receiver row, for subscribers that are recipients.
    pub(crate) row: Option<u32>,
    /// Publisher (reads integer replies) rather than subscriber.
    pub(crate) publisher: bool,
}

/// Reads everything available on `stream` and handles every reply or push.
/// `Err` means the connection is finished.
pub(crate) fn read(
    stream: &mut TcpStream,
    rd: &mut resp::Reader,
    conn: Conn,
    ev: Readable,
    tracker: &mut Tracker,
) -> io::Result<After> {
    recv::read_all(stream, rd, ev, |rd, now| loop {
        let v = match rd.next() {
            Ok(Some(v)) => v,
            Ok(None) => return Ok(After::Continue),
            Err(resp::Malformed) => {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "malformed RESP"))
            }
        };
        if on_value(v, conn, now, tracker) == After::StopReading {
            return Ok(After::StopReading);
        }
    })
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
                    tracker.deliver(row, Origin::Unlabelled, p, now);
                }
            }
            [Item::Bulk(Some(b"subscribe")), _, _, _] => {
                tracker.shared().confirm();
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
