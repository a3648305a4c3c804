// SPDX-License-Identifier: GPL-2.0
//! The part of RESP2 (the Redis protocol) that pub/sub needs: building `SUBSCRIBE` and
//! `PUBLISH` commands and parsing replies and pushes incrementally, without copying.
//!
//! Only flat arrays of up to [`MAX_ITEMS`] scalars are understood, which covers every reply
//! that `SUBSCRIBE` and `PUBLISH` produce (`subscribe` confirmations, `message` pushes,
//! integers, errors).

use kchat_proto::StreamBuf;

/// Most items an array may have.
pub(crate) const MAX_ITEMS: usize = 4;

/// Longest bulk string accepted (Redis's own `proto-max-bulk-len` default is 512 MiB).
const MAX_BULK: i64 = 512 << 20;

/// A scalar RESP value, borrowing from the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Item<'a> {
    /// `+OK`
    Simple(&'a [u8]),
    /// `-ERR ...`
    Error(&'a [u8]),
    /// `:42`
    Integer(i64),
    /// `$3 abc`; `None` for the null bulk string `$-1`.
    Bulk(Option<&'a [u8]>),
}

/// A complete top-level RESP value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Value<'a> {
    /// A scalar.
    Item(Item<'a>),
    /// A flat array: its first `len` items are set.
    Array {
        len: usize,
        items: [Item<'a>; MAX_ITEMS],
    },
}

/// The peer sent something this parser does not accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed;

/// The line starting at `at` (without its `\r\n`) and the offset after it, or `None` if the
/// `\r\n` has not arrived yet.
fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(at..)?;
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    Some((&rest[..end], at + end + 2))
}

/// Parses a decimal integer (with an optional `-`).
fn int(digits: &[u8]) -> Result<i64, Malformed> {
    let (neg, digits) = match digits.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, digits),
    };
    if digits.is_empty() || digits.len() > 18 {
        return Err(Malformed);
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(Malformed);
        }
        v = v * 10 + i64::from(d - b'0');
    }
    Ok(if neg { -v } else { v })
}

/// Parses one scalar at `at`: `Ok(None)` if incomplete, else the item and the offset after it.
fn item(buf: &[u8], at: usize) -> Result<Option<(Item<'_>, usize)>, Malformed> {
    let Some((l, next)) = line(buf, at) else {
        return Ok(None);
    };
    let (&kind, body) = l.split_first().ok_or(Malformed)?;
    let it = match kind {
        b'+' => Item::Simple(body),
        b'-' => Item::Error(body),
        b':' => Item::Integer(int(body)?),
        b'$' => {
            let n = int(body)?;
            if n < 0 {
                return Ok(Some((Item::Bulk(None), next)));
            }
            if n > MAX_BULK {
                return Err(Malformed);
            }
            let end = next + n as usize;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(Malformed);
            }
            return Ok(Some((Item::Bulk(Some(&buf[next..end])), end + 2)));
        }
        _ => return Err(Malformed),
    };
    Ok(Some((it, next)))
}

/// Parses the value at the start of `buf`: `Ok(None)` if more bytes are needed, else the
/// value and the number of bytes it took.
pub(crate) fn parse(buf: &[u8]) -> Result<Option<(Value<'_>, usize)>, Malformed> {
    if buf.first() != Some(&b'*') {
        return Ok(item(buf, 0)?.map(|(it, n)| (Value::Item(it), n)));
    }
    let Some((l, mut at)) = line(buf, 0) else {
        return Ok(None);
    };
    let len = int(&l[1..])?;
    if !(0..=MAX_ITEMS as i64).contains(&len) {
        return Err(Malformed);
    }
    let mut items = [Item::Bulk(None); MAX_ITEMS];
    for slot in items.iter_mut().take(len as usize) {
        let Some((it, next)) = item(buf, at)? else {
            return Ok(None);
        };
        *slot = it;
        at = next;
    }
    Ok(Some((
        Value::Array {
            len: len as usize,
            items,
        },
        at,
    )))
}

/// Appends a command (an array of bulk strings) to `out`.
pub(crate) fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Everything of `PUBLISH channel <payload>` before the payload's bytes, for a payload of
/// `len` bytes; the command is this, the payload, then `\r\n`.
pub(crate) fn publish_prefix(channel: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    command(&mut out, &[b"PUBLISH", channel]);
    out[1] = b'3';
    out.extend_from_slice(format!("${len}\r\n").as_bytes());
    out
}

/// A receive buffer parsed in place: receive into [`Reader::spare`], then take values with
/// [`Reader::next`].
#[derive(Debug, Default)]
pub(crate) struct Reader {
    buf: StreamBuf,
}

impl Reader {
    /// Room to receive at least `at_least` bytes; then call [`Reader::filled`].
    pub(crate) fn spare(&mut self, at_least: usize) -> &mut [u8] {
        self.buf.spare(at_least)
    }

    /// Declares that `n` bytes were written at the start of the last [`Reader::spare`].
    pub(crate) fn filled(&mut self, n: usize) {
        self.buf.filled(n);
    }

    /// The next complete value, or `Ok(None)` if more bytes are needed.
    pub(crate) fn next(&mut self) -> Result<Option<Value<'_>>, Malformed> {
        self.buf.consume_with(parse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values of a stream fed to a [`Reader`] in pieces of `chunk` bytes, as strings.
    fn feed(stream: &[u8], chunk: usize) -> Vec<String> {
        let mut r = Reader::default();
        let mut got = Vec::new();
        for piece in stream.chunks(chunk) {
            r.spare(piece.len())[..piece.len()].copy_from_slice(piece);
            r.filled(piece.len());
            while let Some(v) = r.next().expect("well formed") {
                got.push(format!("{v:?}"));
            }
        }
        got
    }

    /// Checks the parser on a stream of every reply kind pub/sub produces (subscribe
    /// confirmation, message push with a binary payload containing `\r\n`, integer, error,
    /// simple string, null bulk), split at every possible chunk size, byte by byte included:
    /// the values are the same as when parsed whole, and nothing is left over.
    #[test]
    fn split_across_reads() {
        let mut stream = Vec::new();
        stream.extend_from_slice(b"*3\r\n$9\r\nsubscribe\r\n$5\r\nkchat\r\n:1\r\n");
        stream.extend_from_slice(b"*3\r\n$7\r\nmessage\r\n$5\r\nkchat\r\n$6\r\na\r\n\0bc\r\n");
        stream.extend_from_slice(b":12\r\n-ERR wrong\r\n+OK\r\n$-1\r\n:-3\r\n");
        let whole = feed(&stream, stream.len());
        assert_eq!(whole.len(), 7);
        assert!(whole[1].contains("[97, 13, 10, 0, 98, 99]"), "{}", whole[1]);
        assert_eq!(whole[2], "Item(Integer(12))");
        assert_eq!(whole[6], "Item(Integer(-3))");
        for chunk in 1..stream.len() {
            assert_eq!(feed(&stream, chunk), whole, "chunk {chunk}");
        }
    }

    /// Checks the message push fields and that malformed input is refused rather than
    /// misparsed (bad type byte, bad bulk terminator, array too long, bad integer).
    #[test]
    fn values_and_errors() {
        let push = b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$3\r\nxyz\r\n";
        let (v, n) = parse(push).unwrap().unwrap();
        assert_eq!(n, push.len());
        let Value::Array { len: 3, items } = v else {
            panic!("{v:?}")
        };
        assert_eq!(items[0], Item::Bulk(Some(b"message")));
        assert_eq!(items[2], Item::Bulk(Some(b"xyz")));
        assert_eq!(parse(b"*3\r\n$7\r\nmess").unwrap(), None);
        assert_eq!(parse(b"?x\r\n"), Err(Malformed));
        assert_eq!(parse(b"$3\r\nabcd\r\n"), Err(Malformed));
        assert_eq!(parse(b"*9\r\n"), Err(Malformed));
        assert_eq!(parse(b":1x\r\n"), Err(Malformed));
    }

    /// Checks the command encoders against the RESP text of SUBSCRIBE and PUBLISH.
    #[test]
    fn commands() {
        let mut out = Vec::new();
        command(&mut out, &[b"SUBSCRIBE", b"kchat"]);
        assert_eq!(out, b"*2\r\n$9\r\nSUBSCRIBE\r\n$5\r\nkchat\r\n");
        let mut p = publish_prefix(b"kchat", 3);
        p.extend_from_slice(b"abc\r\n");
        assert_eq!(p, b"*3\r\n$7\r\nPUBLISH\r\n$5\r\nkchat\r\n$3\r\nabc\r\n");
    }
}
