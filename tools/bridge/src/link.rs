// SPDX-License-Identifier: GPL-2.0
//! The link connection's frames (docs/link.md, "The link connection"): those kchat sends, parsed,
//! and those the bridge posts to kchat, built.

use crate::names::{exact_fields, is_nick, is_node, is_room, split_fields, text, Malformed};

/// A frame kchat sends on a link: an event of a **local** member, or a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FromKchat<'a> {
    /// `=link NODE`: the link is up.
    Link { node: &'a str },
    /// `=join #room NICK`: NICK is in #room (also the snapshot).
    Join { room: &'a str, nick: &'a str },
    /// `=synced`: the snapshot is complete.
    Synced,
    /// `=part #room NICK`.
    Part { room: &'a str, nick: &'a str },
    /// `=nick OLD NEW`.
    Nick { old: &'a str, new: &'a str },
    /// `=quit NICK`.
    Quit { nick: &'a str },
    /// `=msg #room NICK TEXT`.
    Msg {
        room: &'a str,
        nick: &'a str,
        text: &'a [u8],
    },
    /// `=priv TO@NODE FROM TEXT`: FROM, local, wrote privately to TO of NODE.
    Priv {
        to: &'a str,
        node: &'a str,
        from: &'a str,
        text: &'a [u8],
    },
    /// `! ...`: kchat refused something; the text after `! `.
    Refused(&'a [u8]),
    /// Anything else (a notice, chat kchat sends every client): not for the bridge.
    Other,
}

/// A room and a nick, checked.
fn room_nick<'a>(room: &'a str, nick: &'a str) -> Result<(&'a str, &'a str), Malformed> {
    if !is_room(room) {
        return Err(Malformed("bad room"));
    }
    if !is_nick(nick) {
        return Err(Malformed("bad nick"));
    }
    Ok((room, nick))
}

/// Parses one frame from kchat.
pub fn parse(frame: &[u8]) -> Result<FromKchat<'_>, Malformed> {
    if let Some(rest) = frame.strip_prefix(b"! ") {
        return Ok(FromKchat::Refused(rest));
    }
    if frame.first() != Some(&b'=') {
        return Ok(FromKchat::Other);
    }
    let (verb, args) = match frame.iter().position(|&b| b == b' ') {
        Some(at) => (&frame[1..at], &frame[at + 1..]),
        None => (&frame[1..], &frame[frame.len()..]),
    };
    let bad = Malformed("wrong fields");
    Ok(match verb {
        b"link" => {
            let [node] = exact_fields(args).ok_or(bad)?;
            if !is_node(node) {
                return Err(Malformed("bad node"));
            }
            FromKchat::Link { node }
        }
        b"synced" if frame == b"=synced" => FromKchat::Synced,
        b"join" | b"part" => {
            let [room, nick] = exact_fields(args).ok_or(bad)?;
            let (room, nick) = room_nick(room, nick)?;
            if verb == b"join" {
                FromKchat::Join { room, nick }
            } else {
                FromKchat::Part { room, nick }
            }
        }
        b"nick" => {
            let [old, new] = exact_fields(args).ok_or(bad)?;
            if !is_nick(old) || !is_nick(new) {
                return Err(Malformed("bad nick"));
            }
            FromKchat::Nick { old, new }
        }
        b"quit" => {
            let [nick] = exact_fields(args).ok_or(bad)?;
            if !is_nick(nick) {
                return Err(Malformed("bad nick"));
            }
            FromKchat::Quit { nick }
        }
        b"msg" => {
            let ([room, nick], text_) = split_fields::<2>(args).ok_or(bad)?;
            let (room, nick) = room_nick(text(room).ok_or(bad)?, text(nick).ok_or(bad)?)?;
            FromKchat::Msg {
                room,
                nick,
                text: text_,
            }
        }
        b"priv" => {
            let ([target, from], text_) = split_fields::<2>(args).ok_or(bad)?;
            let target = text(target).ok_or(bad)?;
            let from = text(from).ok_or(bad)?;
            let (to, node) = target.split_once('@').ok_or(Malformed("no @NODE"))?;
            if !is_node(node) {
                return Err(Malformed("bad node"));
            }
            if !is_nick(to) || !is_nick(from) {
                return Err(Malformed("bad nick"));
            }
            FromKchat::Priv {
                to,
                node,
                from,
                text: text_,
            }
        }
        _ => return Err(Malformed("unknown = frame")),
    })
}

/// A frame the bridge posts to kchat: an event of a **remote** member (`NICK@NODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToKchat<'a> {
    /// `=join #room NICK@NODE`.
    Join {
        room: &'a str,
        nick: &'a str,
        node: &'a str,
    },
    /// `=part #room NICK@NODE`.
    Part {
        room: &'a str,
        nick: &'a str,
        node: &'a str,
    },
    /// `=nick OLD@NODE NEW@NODE`.
    Nick {
        old: &'a str,
        new: &'a str,
        node: &'a str,
    },
    /// `=quit NICK@NODE`.
    Quit { nick: &'a str, node: &'a str },
    /// `=msg #room NICK@NODE TEXT`.
    Msg {
        room: &'a str,
        nick: &'a str,
        node: &'a str,
        text: &'a [u8],
    },
    /// `=priv TO NICK@NODE TEXT`: to local TO.
    Priv {
        to: &'a str,
        from: &'a str,
        node: &'a str,
        text: &'a [u8],
    },
    /// `=drop NODE`: every remote member of NODE is gone.
    Drop { node: &'a str },
}

impl ToKchat<'_> {
    /// The payload.
    pub fn payload(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(64);
        let mut put = |parts: &[&[u8]]| {
            for part in parts {
                p.extend_from_slice(part);
            }
        };
        match *self {
            Self::Join { room, nick, node } => put(&[
                b"=join ",
                room.as_bytes(),
                b" ",
                nick.as_bytes(),
                b"@",
                node.as_bytes(),
            ]),
            Self::Part { room, nick, node } => put(&[
                b"=part ",
                room.as_bytes(),
                b" ",
                nick.as_bytes(),
                b"@",
                node.as_bytes(),
            ]),
            Self::Nick { old, new, node } => put(&[
                b"=nick ",
                old.as_bytes(),
                b"@",
                node.as_bytes(),
                b" ",
                new.as_bytes(),
                b"@",
                node.as_bytes(),
            ]),
            Self::Quit { nick, node } => put(&[b"=quit ", nick.as_bytes(), b"@", node.as_bytes()]),
            Self::Msg {
                room,
                nick,
                node,
                text,
            } => put(&[
                b"=msg ",
                room.as_bytes(),
                b" ",
                nick.as_bytes(),
                b"@",
                node.as_bytes(),
                b" ",
                text,
            ]),
            Self::Priv {
                to,
                from,
                node,
                text,
            } => put(&[
                b"=priv ",
                to.as_bytes(),
                b" ",
                from.as_bytes(),
                b"@",
                node.as_bytes(),
                b" ",
                text,
            ]),
            Self::Drop { node } => put(&[b"=drop ", node.as_bytes()]),
        }
        p
    }

    /// The whole frame (length header and payload).
    pub fn frame(&self) -> Vec<u8> {
        kchat_proto::encode(&self.payload())
    }
}

/// The first frame of a link: `/link SECRET NODE`.
pub fn link_request(secret: u64, node: &str) -> Vec<u8> {
    kchat_proto::encode(format!("/link {secret} {node}").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_frame_kchat_sends() {
        assert_eq!(parse(b"=link n1"), Ok(FromKchat::Link { node: "n1" }));
        assert_eq!(parse(b"=synced"), Ok(FromKchat::Synced));
        assert_eq!(
            parse(b"=join #Lobby alice"),
            Ok(FromKchat::Join {
                room: "#Lobby",
                nick: "alice"
            })
        );
        assert_eq!(
            parse(b"=part #rust bob"),
            Ok(FromKchat::Part {
                room: "#rust",
                nick: "bob"
            })
        );
        assert_eq!(
            parse(b"=nick bob robert"),
            Ok(FromKchat::Nick {
                old: "bob",
                new: "robert"
            })
        );
        assert_eq!(parse(b"=quit bob"), Ok(FromKchat::Quit { nick: "bob" }));
        assert_eq!(
            parse(b"=msg #rust bob hello  world \r\n\xff"),
            Ok(FromKchat::Msg {
                room: "#rust",
                nick: "bob",
                text: b"hello  world \r\n\xff"
            })
        );
        assert_eq!(
            parse(b"=msg #rust bob "),
            Ok(FromKchat::Msg {
                room: "#rust",
                nick: "bob",
                text: b""
            })
        );
        assert_eq!(
            parse(b"=priv carol@n2 bob psst: a secret"),
            Ok(FromKchat::Priv {
                to: "carol",
                node: "n2",
                from: "bob",
                text: b"psst: a secret"
            })
        );
        assert_eq!(
            parse(b"! link: no such room"),
            Ok(FromKchat::Refused(b"link: no such room"))
        );
        assert_eq!(parse(b"* last 3 messages of #lobby:"), Ok(FromKchat::Other));
        assert_eq!(parse(b"alice: hi"), Ok(FromKchat::Other));
    }

    #[test]
    fn refuses_malformed_frames() {
        for bad in [
            &b"=link"[..],
            b"=link a.b",
            b"=link a b",
            b"=synced x",
            b"=join #lobby",
            b"=join lobby alice",
            b"=join #lobby alice extra",
            b"=join #lobby  alice",
            b"=join #lobby al,ice",
            b"=part #lobby bob@n2",
            b"=nick bob",
            b"=quit",
            b"=msg #lobby alice",
            b"=msg lobby alice hi",
            b"=priv carol bob hi",
            b"=priv carol@a.b bob hi",
            b"=priv carol@n2 bob",
            b"=frobnicate x",
            b"=",
        ] {
            assert!(
                parse(bad).is_err(),
                "{:?} parsed",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn builds_every_frame_the_bridge_posts() {
        let cases: [(ToKchat<'_>, &[u8]); 7] = [
            (
                ToKchat::Join {
                    room: "#rust",
                    nick: "bob",
                    node: "n2",
                },
                b"=join #rust bob@n2",
            ),
            (
                ToKchat::Part {
                    room: "#rust",
                    nick: "bob",
                    node: "n2",
                },
                b"=part #rust bob@n2",
            ),
            (
                ToKchat::Nick {
                    old: "bob",
                    new: "rob",
                    node: "n2",
                },
                b"=nick bob@n2 rob@n2",
            ),
            (
                ToKchat::Quit {
                    nick: "bob",
                    node: "n2",
                },
                b"=quit bob@n2",
            ),
            (
                ToKchat::Msg {
                    room: "#rust",
                    nick: "bob",
                    node: "n2",
                    text: b"hi there\r\n",
                },
                b"=msg #rust bob@n2 hi there\r\n",
            ),
            (
                ToKchat::Priv {
                    to: "alice",
                    from: "bob",
                    node: "n2",
                    text: b"psst",
                },
                b"=priv alice bob@n2 psst",
            ),
            (ToKchat::Drop { node: "n2" }, b"=drop n2"),
        ];
        for (frame, want) in cases {
            assert_eq!(frame.payload(), want);
            let whole = frame.frame();
            assert_eq!(&whole[..4], &(want.len() as u32).to_le_bytes());
            assert_eq!(&whole[4..], want);
        }
        let req = link_request(18_446_744_073_709_551_615, "n1");
        assert_eq!(&req[4..], b"/link 18446744073709551615 n1");
        assert_eq!(&req[..4], &29u32.to_le_bytes());
    }
}
