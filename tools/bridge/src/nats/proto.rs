// SPDX-License-Identifier: GPL-2.0
//! The NATS client protocol, the part a publisher and subscriber needs
//! (docs.nats.io, "Client Protocol"): what the server sends, parsed from a byte stream, and
//! what the client sends, built.
//!
//! Server to client: `INFO {json}`, `MSG <subject> <sid> [reply-to] <#bytes>` followed by
//! exactly that many payload bytes and CR LF, `PING`, `PONG`, `+OK`, `-ERR <message>`. Each
//! control line ends with CR LF (a bare LF is accepted); operation names ignore case; fields
//! are separated by spaces or tabs. A payload is counted, never scanned, so it may hold any
//! bytes, CR LF included.

/// Longest control line accepted (an `INFO` listing a big cluster's URLs included).
pub const MAX_CONTROL_LINE: usize = 64 * 1024;

/// Largest payload a server may be configured to send (nats-server's own hard limit).
pub const MAX_PAYLOAD_LIMIT: usize = 64 << 20;

/// One operation from the server, borrowing the bytes it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerOp<'a> {
    /// `INFO`: the server's JSON description.
    Info(&'a str),
    /// `MSG`: a message on a subject we subscribed to.
    Msg {
        subject: &'a str,
        sid: &'a str,
        reply: Option<&'a str>,
        payload: &'a [u8],
    },
    /// `PING`: answer `PONG`.
    Ping,
    /// `PONG`: the answer to our `PING`.
    Pong,
    /// `+OK` (only sent in verbose mode).
    Ok,
    /// `-ERR`: the message, without its quotes.
    Err(&'a str),
}

/// The server broke the protocol; the connection cannot go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtoError {
    /// No end of line within [`MAX_CONTROL_LINE`] bytes.
    LineTooLong,
    /// A `MSG` announced more than the accepted payload.
    PayloadTooLong(usize),
    /// Anything else: what was wrong.
    Bad(String),
}

impl std::fmt::Display for ProtoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::LineTooLong => write!(f, "control line over {MAX_CONTROL_LINE} bytes"),
            Self::PayloadTooLong(n) => write!(f, "MSG of {n} bytes, over the limit"),
            Self::Bad(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ProtoError {}

/// Splits a control line's arguments on spaces and tabs.
fn args(line: &str) -> impl Iterator<Item = &str> {
    line.split([' ', '\t']).filter(|a| !a.is_empty())
}

/// Parses the next operation at the start of `buf`: the operation and the bytes it took, or
/// `None` if `buf` does not hold all of it yet. A `MSG` may announce at most `max_payload`
/// bytes.
pub fn parse(buf: &[u8], max_payload: usize) -> Result<Option<(ServerOp<'_>, usize)>, ProtoError> {
    let Some(nl) = buf.iter().take(MAX_CONTROL_LINE).position(|&b| b == b'\n') else {
        return if buf.len() >= MAX_CONTROL_LINE {
            Err(ProtoError::LineTooLong)
        } else {
            Ok(None)
        };
    };
    let line = buf[..nl].strip_suffix(b"\r").unwrap_or(&buf[..nl]);
    let line = std::str::from_utf8(line)
        .map_err(|_| ProtoError::Bad("control line is not UTF-8".into()))?;
    let line = line.trim_start_matches([' ', '\t']);
    let (op, rest) = line.split_once([' ', '\t']).unwrap_or((line, ""));
    let rest = rest.trim_matches([' ', '\t']);
    let taken = nl + 1;
    let op_is = |name: &str| op.eq_ignore_ascii_case(name);
    let parsed = if op_is("MSG") {
        let a: Vec<&str> = args(rest).collect();
        let (subject, sid, reply, size) = match a[..] {
            [s, i, n] => (s, i, None, n),
            [s, i, r, n] => (s, i, Some(r), n),
            _ => return Err(ProtoError::Bad(format!("MSG with {} arguments", a.len()))),
        };
        let size: usize = size
            .parse()
            .map_err(|_| ProtoError::Bad(format!("MSG size {size:?}")))?;
        if size > max_payload {
            return Err(ProtoError::PayloadTooLong(size));
        }
        let end = taken + size;
        if buf.len() < end + 2 {
            return Ok(None);
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err(ProtoError::Bad("MSG payload not followed by CR LF".into()));
        }
        return Ok(Some((
            ServerOp::Msg {
                subject,
                sid,
                reply,
                payload: &buf[taken..end],
            },
            end + 2,
        )));
    } else if op_is("PING") && rest.is_empty() {
        ServerOp::Ping
    } else if op_is("PONG") && rest.is_empty() {
        ServerOp::Pong
    } else if op_is("+OK") && rest.is_empty() {
        ServerOp::Ok
    } else if op_is("-ERR") {
        let msg = rest
            .strip_prefix('\'')
            .and_then(|r| r.strip_suffix('\''))
            .unwrap_or(rest);
        ServerOp::Err(msg)
    } else if op_is("INFO") {
        ServerOp::Info(rest)
    } else {
        let shown: String = line.chars().take(40).collect();
        return Err(ProtoError::Bad(format!("unknown operation {shown:?}")));
    };
    Ok(Some((parsed, taken)))
}

/// True if the server closes the connection after this `-ERR` (everything but a refused
/// subject or permission, which only refuses one operation).
pub fn err_is_fatal(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    !(m.starts_with("invalid subject") || m.starts_with("permissions violation"))
}

/// `PING`.
pub const PING: &[u8] = b"PING\r\n";

/// `PONG`.
pub const PONG: &[u8] = b"PONG\r\n";

/// `CONNECT {json}`.
pub fn connect(json: &str) -> Vec<u8> {
    format!("CONNECT {json}\r\n").into_bytes()
}

/// `SUB subject sid`.
pub fn sub(subject: &str, sid: u32) -> Vec<u8> {
    format!("SUB {subject} {sid}\r\n").into_bytes()
}

/// `PUB subject #bytes`, the payload and CR LF.
pub fn publish(subject: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(subject.len() + payload.len() + 24);
    out.extend_from_slice(format!("PUB {subject} {}\r\n", payload.len()).as_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
    out
}

/// Appends `s` to `out` as a JSON string.
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The credentials a URL carried.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Auth {
    pub user: Option<String>,
    pub pass: Option<String>,
    pub token: Option<String>,
}

/// The `CONNECT` options: no `+OK`s, no echo of our own messages, our name, credentials.
pub fn connect_json(name: &str, auth: &Auth) -> String {
    let mut j = String::from(
        "{\"verbose\":false,\"pedantic\":false,\"echo\":false,\"tls_required\":false,\
         \"lang\":\"rust\",\"version\":\"",
    );
    j.push_str(env!("CARGO_PKG_VERSION"));
    j.push_str("\",\"protocol\":1,\"headers\":false,\"name\":");
    json_string(&mut j, name);
    for (key, value) in [
        ("user", &auth.user),
        ("pass", &auth.pass),
        ("auth_token", &auth.token),
    ] {
        if let Some(v) = value {
            j.push_str(&format!(",\"{key}\":"));
            json_string(&mut j, v);
        }
    }
    j.push('}');
    j
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses everything in `stream` fed `chunk` bytes at a time, as a reader would.
    fn parse_all(stream: &[u8], chunk: usize) -> Vec<String> {
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for piece in stream.chunks(chunk) {
            buf.extend_from_slice(piece);
            while let Some((op, n)) = parse(&buf, 1 << 20).unwrap() {
                out.push(format!("{op:?}"));
                buf.drain(..n);
            }
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        out
    }

    #[test]
    fn msg_split_across_reads_at_every_point() {
        let stream: &[u8] = b"MSG kchat.room.lobby 1 11\r\nn1 alice hi\r\n\
              MSG kchat.presence 2 _INBOX.x 8\r\nn1 hello\r\nPING\r\n";
        let whole = parse_all(stream, stream.len());
        assert_eq!(
            whole,
            vec![
                format!(
                    "{:?}",
                    ServerOp::Msg {
                        subject: "kchat.room.lobby",
                        sid: "1",
                        reply: None,
                        payload: b"n1 alice hi"
                    }
                ),
                format!(
                    "{:?}",
                    ServerOp::Msg {
                        subject: "kchat.presence",
                        sid: "2",
                        reply: Some("_INBOX.x"),
                        payload: b"n1 hello"
                    }
                ),
                format!("{:?}", ServerOp::Ping),
            ]
        );
        for chunk in 1..stream.len() {
            assert_eq!(parse_all(stream, chunk), whole, "chunks of {chunk}");
        }
    }

    #[test]
    fn payload_with_crlf_and_anything_is_counted_not_scanned() {
        let payload = b"n1 bob line one\r\nPING\r\nMSG x 1 3\r\n\x00\xff";
        let mut stream = format!("MSG kchat.room.x 1 {}\r\n", payload.len()).into_bytes();
        stream.extend_from_slice(payload);
        stream.extend_from_slice(b"\r\nPONG\r\n");
        let (op, n) = parse(&stream, 1 << 20).unwrap().unwrap();
        assert_eq!(
            op,
            ServerOp::Msg {
                subject: "kchat.room.x",
                sid: "1",
                reply: None,
                payload
            }
        );
        assert_eq!(parse(&stream[n..], 1 << 20), Ok(Some((ServerOp::Pong, 6))));
        // An empty payload.
        assert_eq!(
            parse(b"MSG a 9 0\r\n\r\n", 10),
            Ok(Some((
                ServerOp::Msg {
                    subject: "a",
                    sid: "9",
                    reply: None,
                    payload: b""
                },
                13
            )))
        );
    }

    #[test]
    fn control_lines() {
        let info = b"INFO {\"server_id\":\"X\",\"max_payload\":1048576}\r\n";
        assert_eq!(
            parse(info, 0),
            Ok(Some((
                ServerOp::Info("{\"server_id\":\"X\",\"max_payload\":1048576}"),
                info.len()
            )))
        );
        assert_eq!(parse(b"PING\r\n", 0), Ok(Some((ServerOp::Ping, 6))));
        assert_eq!(parse(b"ping\n", 0), Ok(Some((ServerOp::Ping, 5))));
        assert_eq!(parse(b"PONG\r\n", 0), Ok(Some((ServerOp::Pong, 6))));
        assert_eq!(parse(b"+OK\r\n", 0), Ok(Some((ServerOp::Ok, 5))));
        assert_eq!(
            parse(b"-ERR 'Authorization Violation'\r\n", 0),
            Ok(Some((ServerOp::Err("Authorization Violation"), 32)))
        );
        assert_eq!(
            parse(b"MSG\tsubj\t5  0\r\n\r\n", 0),
            Ok(Some((
                ServerOp::Msg {
                    subject: "subj",
                    sid: "5",
                    reply: None,
                    payload: b""
                },
                17
            )))
        );
        assert_eq!(parse(b"PIN", 0), Ok(None));
        assert_eq!(parse(b"PING\r", 0), Ok(None));
        assert_eq!(parse(b"MSG a 1 5\r\nab", 10), Ok(None));
    }

    #[test]
    fn protocol_errors() {
        assert!(matches!(parse(b"HELLO\r\n", 0), Err(ProtoError::Bad(_))));
        assert!(matches!(parse(b"MSG a 1\r\n", 10), Err(ProtoError::Bad(_))));
        assert!(matches!(
            parse(b"MSG a 1 x\r\n", 10),
            Err(ProtoError::Bad(_))
        ));
        assert!(matches!(
            parse(b"MSG a 1 3\r\nabcXY", 10),
            Err(ProtoError::Bad(_))
        ));
        assert_eq!(
            parse(b"MSG a 1 11\r\n", 10),
            Err(ProtoError::PayloadTooLong(11))
        );
        assert_eq!(
            parse(&vec![b'I'; MAX_CONTROL_LINE], 10),
            Err(ProtoError::LineTooLong)
        );
        assert_eq!(parse(&vec![b'I'; MAX_CONTROL_LINE - 1], 10), Ok(None));
        assert!(err_is_fatal("Authorization Violation"));
        assert!(err_is_fatal("Stale Connection"));
        assert!(err_is_fatal("Maximum Payload Violation"));
        assert!(!err_is_fatal("Permissions Violation for Publish to \"x\""));
        assert!(!err_is_fatal("Invalid Subject"));
    }

    #[test]
    fn client_operations() {
        assert_eq!(
            publish("kchat.room.a", b"n1 x\r\ny"),
            b"PUB kchat.room.a 7\r\nn1 x\r\ny\r\n"
        );
        assert_eq!(sub("kchat.room.>", 1), b"SUB kchat.room.> 1\r\n");
        assert_eq!(connect("{}"), b"CONNECT {}\r\n");
        let j = connect_json("kchat-bridge n1", &Auth::default());
        assert!(j.starts_with('{') && j.ends_with('}'));
        for want in [
            "\"verbose\":false",
            "\"pedantic\":false",
            "\"echo\":false",
            "\"name\":\"kchat-bridge n1\"",
        ] {
            assert!(j.contains(want), "{j} lacks {want}");
        }
        assert!(!j.contains("user"));
        let auth = Auth {
            user: Some("u\"1".into()),
            pass: Some("p\\w".into()),
            token: None,
        };
        let j = connect_json("x", &auth);
        assert!(
            j.contains(",\"user\":\"u\\\"1\",\"pass\":\"p\\\\w\"}"),
            "{j}"
        );
        let parsed = crate::nats::json::parse(&j).unwrap();
        assert_eq!(
            parsed.get("echo"),
            Some(&crate::nats::json::Value::Bool(false))
        );
        assert_eq!(parsed.get("user").and_then(|v| v.as_str()), Some("u\"1"));
    }
}
