// SPDX-License-Identifier: GPL-2.0

//! The native front end: a payload becomes a chat message or a command for the chat core,
//! and the core's events become frames ([`render`]).
//!
//! It keeps no chat state of its own: rooms, nicks and history are the core's. What it owns is
//! the protocol's text: command syntax, the relayed `LABEL: MESSAGE` frame (built in the
//! payload's own buffer, see [`Frame::relay`]), and the `! ...` errors its clients get.

mod command;
pub(crate) mod link;
pub(crate) mod render;

use kernel::{
    prelude::*,
    sync::{
        atomic::Relaxed,
        Arc, //
    },
};

use crate::{
    chat::{
        JoinError,
        Message,
        NickError,
        RelayBatch,
        RemoteError, //
    },
    client::{
        Client, //
        CloseReason,
    },
    frame::{
        Frame,
        Payload, //
    },
    frontend::Protocol,
    label::{
        self,
        Label,
        NodeName,
        RoomName, //
    },
    log::{
        kchat_log,
        Escaped,
        TRACE_CONNECTIONS,
        TRACE_MESSAGES, //
    },
};

use command::Command;

/// Acts on one payload from `client`: a chat message goes into the shard loop's relay batch;
/// before a command the batch goes out, so that what the command causes (a notice, an answer,
/// a move to another room) comes after the messages read before it.
pub(crate) fn handle(
    client: &Arc<Client>,
    payload: Payload,
    batch: &mut RelayBatch<Client>,
) -> Result<(), CloseReason> {
    let server = client.server();
    let core = &server.core;
    if client.is_link() {
        return link_frame(client, payload.bytes(), batch);
    }
    let command = command::parse(payload.bytes());
    if !matches!(command, Command::Chat) {
        core.publish(batch);
    }
    match command {
        Command::Chat => {
            let label = client.label();
            kchat_log!(
                server,
                msg_log,
                TRACE_MESSAGES,
                "Client Say: {}: {}\n",
                label,
                Escaped(payload.bytes())
            );
            client.msgs_in.add(1, Relaxed);
            let len = payload.bytes().len();
            let frame = Frame::relay(payload, &label).map_err(|_| CloseReason::NoMemory)?;
            let frame = Arc::new(frame, GFP_KERNEL).map_err(|_| CloseReason::NoMemory)?;
            // The text follows the header, the label and its separator.
            let at = frame.len() - len;
            let msg = Message::new(frame, Protocol::Native, at, len, false);
            batch
                .push(core, client, None, msg)
                .map_err(|_| CloseReason::NoMemory)?;
        }
        Command::Nick(name) => nick(client, name),
        Command::Who => core.who(client).map_err(|_| CloseReason::NoMemory)?,
        Command::Rooms => core.rooms(client).map_err(|_| CloseReason::NoMemory)?,
        Command::Join(b"") => error(client, fmt!("usage: /join #room")),
        Command::Join(name) => match RoomName::parse(name) {
            Some(room) => join(client, core.join(&**client, &room, 1)),
            None => error(
                client,
                fmt!("invalid room name: use # and 1 to 32 of A-Z a-z 0-9 _ . -"),
            ),
        },
        Command::Part => join(client, core.part_to_lobby(&**client)),
        Command::Msg { to, text } if to.is_empty() || text.is_empty() => {
            error(client, fmt!("usage: /msg NICK TEXT"))
        }
        Command::Msg { to, text } => {
            if core.private(&**client, to, text, false).is_err() {
                error(client, fmt!("no such nick: {}", Escaped(to)));
            }
        }
        // The secret is neither relayed nor logged.
        Command::Link(args) => return link_up(client, args),
        Command::LinkFrame => error(client, fmt!("not a link")),
    }
    Ok(())
}

/// `/link SECRET NODE`: with the right secret (and links on), the core takes this client as
/// the link of NODE; anything else closes it with `! link refused`.
fn link_up(client: &Arc<Client>, args: &[u8]) -> Result<(), CloseReason> {
    let server = client.server();
    let Some((secret, node)) = link::parse_hello(args) else {
        return Err(CloseReason::LinkRefused);
    };
    if !server.params.link_secret_is(secret) {
        return Err(CloseReason::LinkRefused);
    }
    // Set first: the snapshot the core queues must meet the link's larger queue bound.
    client.set_link();
    server
        .core
        .attach_link(client, &node)
        .map_err(|_| CloseReason::NoMemory)?;
    kchat_log!(
        server,
        conn_log,
        TRACE_CONNECTIONS,
        "Link Up: node {} ({})\n",
        node,
        client.peer
    );
    Ok(())
}

/// A frame from a link (docs/link.md): a remote member's room message goes into the relay
/// batch like any other; every other frame publishes the batch first (so the order of what
/// the link posted is kept) and is applied at once. A frame that cannot be applied is
/// answered `! link: REASON` and skipped: the link stays up.
fn link_frame(
    client: &Arc<Client>,
    payload: &[u8],
    batch: &mut RelayBatch<Client>,
) -> Result<(), CloseReason> {
    let core = &client.server().core;
    let (verb, rest) = command::word(payload);
    if verb != b"=msg" {
        core.publish(batch);
    }
    let result = match verb {
        b"=msg" => {
            let (room, rest) = command::word(rest);
            let (from, text) = command::sender_and_text(rest);
            match (RoomName::parse(room), Label::remote(from)) {
                (Some(room), Some((from, _))) if !text.is_empty() => {
                    match core.remote_speaker(&**client, &room, &from) {
                        Ok((id, room_id)) => {
                            let (frame, at) =
                                link::relayed(&from, text).map_err(|_| CloseReason::NoMemory)?;
                            let frame =
                                Arc::new(frame, GFP_KERNEL).map_err(|_| CloseReason::NoMemory)?;
                            let msg = Message::new(frame, Protocol::Native, at, text.len(), false);
                            batch
                                .push_remote(core, client, id, room_id, msg)
                                .map_err(|_| CloseReason::NoMemory)?;
                            Ok(())
                        }
                        Err(e) => Err(LinkFault::Remote(e)),
                    }
                }
                _ => Err(LinkFault::Malformed),
            }
        }
        b"=join" | b"=part" => {
            let (room, who) = command::word(rest);
            match (RoomName::parse(room), Label::remote(who.trim_ascii_end())) {
                (Some(room), Some((who, node))) if verb == b"=join" => core
                    .remote_join(client, &room, who, &node)
                    .map_err(LinkFault::Remote),
                (Some(room), Some((who, _))) => core
                    .remote_part(&**client, &room, &who)
                    .map_err(LinkFault::Remote),
                _ => Err(LinkFault::Malformed),
            }
        }
        b"=nick" => {
            let (old, new) = command::word(rest);
            match (Label::remote(old), Label::remote(new.trim_ascii_end())) {
                (Some((old, _)), Some((new, node))) => core
                    .remote_nick(&**client, &old, new, &node)
                    .map_err(LinkFault::Remote),
                _ => Err(LinkFault::Malformed),
            }
        }
        b"=quit" => match Label::remote(rest.trim_ascii_end()) {
            Some((who, _)) => core.remote_quit(&**client, &who).map_err(LinkFault::Remote),
            None => Err(LinkFault::Malformed),
        },
        b"=priv" => {
            let (to, rest) = command::word(rest);
            let (from, text) = command::sender_and_text(rest);
            match Label::remote(from) {
                Some((from, _)) if !to.is_empty() && !text.is_empty() => core
                    .remote_private(&**client, to, &from, text)
                    .map_err(LinkFault::Remote),
                _ => Err(LinkFault::Malformed),
            }
        }
        b"=drop" => match NodeName::parse(rest.trim_ascii_end()) {
            Some(node) => core.drop_node(&**client, &node).map_err(LinkFault::Remote),
            None => Err(LinkFault::Malformed),
        },
        _ => Err(LinkFault::Unknown),
    };
    if let Err(fault) = result {
        link_error(client, fault, payload);
    }
    Ok(())
}

/// Why a link's frame was skipped.
enum LinkFault {
    /// Not a frame of the link protocol.
    Unknown,
    /// A frame of the protocol with missing or invalid fields.
    Malformed,
    /// The chat core refused it.
    Remote(RemoteError),
}

/// Tells the link why its frame was skipped.
fn link_error(client: &Arc<Client>, fault: LinkFault, payload: &[u8]) {
    // The frame's first word, for the bridge's log (at most 16 bytes of it).
    let verb = command::word(payload).0;
    let verb = Escaped(&verb[..verb.len().min(16)]);
    match fault {
        LinkFault::Unknown => error(client, fmt!("link: unknown frame {verb}")),
        LinkFault::Malformed => error(client, fmt!("link: malformed {verb}")),
        LinkFault::Remote(e) => {
            let why = match e {
                RemoteError::NotLink => "not a link",
                RemoteError::OwnNode => "that is this link's own node",
                RemoteError::NoSuchMember => "no such member",
                RemoteError::NotYours => "name taken by a local member or another link",
                RemoteError::NickTaken => "new name taken",
                RemoteError::NoSuchRoom => "no such room",
                RemoteError::NotMember => "not in that room",
                RemoteError::Full => "server full (max_clients)",
                RemoteError::TooManyRooms(_) => "too many rooms (max_rooms)",
                RemoteError::TooManyJoined => "in too many rooms",
                RemoteError::Already => "already in that room",
                RemoteError::NoMemory => "out of memory",
                RemoteError::Closing => "shutting down",
            };
            error(client, fmt!("link: {verb}: {why}"));
        }
    }
}

/// `/nick NAME`: the core checks and sets it, this client hears of a refusal.
fn nick(client: &Arc<Client>, name: &[u8]) {
    let server = client.server();
    let nick = match Label::nick(name) {
        Ok(nick) => nick,
        Err(label::NickError::Empty) => return error(client, fmt!("usage: /nick NAME")),
        Err(label::NickError::TooLong) => {
            return error(client, fmt!("invalid nick: longer than 32 bytes"))
        }
        Err(label::NickError::BadChar) => {
            return error(client, fmt!("invalid nick: use only A-Z a-z 0-9 _ . -"))
        }
        Err(label::NickError::Reserved) => return error(client, fmt!("invalid nick: reserved")),
    };
    match server.core.set_nick(&**client, nick, false) {
        Ok(Some(old)) => client.renamed(old, nick, true),
        Ok(None) => {}
        Err(NickError::Taken) => error(client, fmt!("nick {} is taken", Escaped(name))),
        Err(NickError::NoMemory) => error(client, fmt!("out of memory, try again")),
        Err(NickError::Gone) => {}
    }
}

/// The errors of `/join` and `/part`.
fn join(client: &Arc<Client>, result: Result<RoomName, JoinError>) {
    match result {
        Ok(_) | Err(JoinError::Gone) => {}
        Err(JoinError::Already(room)) => error(client, fmt!("already in {room}")),
        Err(JoinError::TooMany(max)) => error(client, fmt!("too many rooms (max_rooms={max})")),
        Err(JoinError::NoMemory) | Err(JoinError::TooManyJoined) => {
            error(client, fmt!("out of memory, try again"))
        }
    }
}

/// Sends `! text` to this client only. An error that cannot be allocated is lost.
fn error(client: &Arc<Client>, text: kernel::fmt::Arguments<'_>) {
    if let Ok(frame) = Frame::text(fmt!("! {}", text)).and_then(|f| Ok(Arc::new(f, GFP_KERNEL)?)) {
        Client::enqueue(client, &frame);
    }
}
