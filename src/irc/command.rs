// SPDX-License-Identifier: GPL-2.0

//! One IRC line: which command it is, and what the chat core is asked to do for it.
//! Registration is in [`register`](super::register), the answers that read the chat's state
//! in [`query`](super::query).

use kernel::{
    prelude::*,
    sync::{
        atomic::Relaxed,
        Arc, //
    },
};

use super::{
    line::{
        items,
        Input,
        Message, //
    },
    lines::{
        Lines,
        SERVER, //
    },
    numeric,
    query,
    register,
    render::{
        self,
        Bytes, //
    },
    send,
    State,
    CHANLIMIT, //
};
use crate::{
    chat::{
        JoinError,
        KickError,
        Message as ChatMessage,
        ModeChange,
        ModeError,
        PartError,
        RelayBatch,
        SayError,
        TopicError, //
    },
    client::{
        Client,
        CloseReason,
        IRC_UNREGISTERED, //
    },
    frontend::Protocol,
    label::RoomName,
    log::{
        kchat_log,
        Escaped,
        TRACE_MESSAGES, //
    },
};

/// Commands an unregistered client may send.
const BEFORE_REGISTRATION: [&str; 7] = ["CAP", "NICK", "USER", "PASS", "PING", "PONG", "QUIT"];

/// Handles one line (or the news that one was too long) from `client`. Chat messages to
/// channels go into the shard loop's relay batch; before anything else the batch goes out, so
/// what a command causes comes after the messages read before it.
pub(super) fn handle(
    client: &Arc<Client>,
    st: &mut State,
    input: Input<'_>,
    batch: &mut RelayBatch<Client>,
) -> Result<(), CloseReason> {
    // Lines after a `QUIT` (or anything that closes the client) are not acted on.
    if client.is_closing() {
        return Ok(());
    }
    let core = &client.server().core;
    let line = match input {
        Input::Line(l) => l,
        Input::TooLong => {
            core.publish(batch);
            numeric(client, st, 417, fmt!(":Input line was too long"));
            return Ok(());
        }
    };
    // An empty line is ignored.
    let Some(m) = Message::parse(line) else {
        return Ok(());
    };
    let registered = client.irc_state.load(Relaxed) != IRC_UNREGISTERED;
    let talk = m.is("PRIVMSG") || m.is("NOTICE");
    if !(talk && registered) {
        core.publish(batch);
    }
    if !registered && !BEFORE_REGISTRATION.iter().any(|c| m.is(c)) {
        numeric(client, st, 451, fmt!(":You have not registered"));
        return Ok(());
    }
    let mut buf = [0u8; 16];
    let n = m.command.len().min(buf.len());
    buf[..n].copy_from_slice(&m.command[..n]);
    buf[..n].make_ascii_uppercase();
    // A command longer than any known one matches nothing.
    let upper: &[u8] = if m.command.len() <= buf.len() {
        &buf[..n]
    } else {
        b""
    };
    match upper {
        b"PING" => ping(client, st, &m),
        b"PONG" => {}
        b"CAP" => register::cap(client, st, &m),
        b"NICK" => register::nick(client, st, &m),
        b"USER" => register::user(client, st, &m),
        b"PASS" => {
            if registered {
                numeric(client, st, 462, fmt!(":You may not reregister"));
            }
        }
        b"QUIT" => {
            if let Some(text) = m.arg(0) {
                let mut v = KVec::new();
                if v.extend_from_slice(&text[..text.len().min(300)], GFP_KERNEL)
                    .is_ok()
                {
                    st.quit = Some(v);
                }
            }
            Client::close(client, CloseReason::Quit);
        }
        b"PRIVMSG" | b"NOTICE" => say(client, st, &m, batch)?,
        b"JOIN" => join(client, st, &m),
        b"PART" => part(client, st, &m),
        b"TOPIC" => topic(client, st, &m),
        b"KICK" => kick(client, st, &m),
        b"MODE" => mode(client, st, &m),
        b"AWAY" => away(client, st, &m),
        b"NAMES" => query::names(client, st, &m),
        b"LIST" => query::list(client, st),
        b"WHO" => query::who(client, st, &m),
        b"WHOIS" => query::whois(client, st, &m),
        b"ISON" => query::ison(client, st, &m),
        b"USERHOST" => query::userhost(client, st, &m),
        b"LUSERS" => query::lusers(client, st),
        b"MOTD" => numeric(client, st, 422, fmt!(":MOTD File is missing")),
        b"VERSION" => numeric(client, st, 351, fmt!("{} {SERVER} :", register::VERSION)),
        b"OPER" => numeric(client, st, 491, fmt!(":No O-lines for your host")),
        _ => {
            let cmd = &m.command[..m.command.len().min(32)];
            numeric(client, st, 421, fmt!("{} :Unknown command", Bytes(cmd)));
        }
    }
    Ok(())
}

/// `461` for `command`.
fn need_more(client: &Arc<Client>, st: &State, command: &str) {
    numeric(client, st, 461, fmt!("{command} :Not enough parameters"));
}

/// `PING token`: `PONG`.
fn ping(client: &Arc<Client>, st: &State, m: &Message<'_>) {
    let Some(token) = m.arg(0) else {
        numeric(client, st, 409, fmt!(":No origin specified"));
        return;
    };
    let mut w = Lines::new();
    w.fmt(fmt!(":{SERVER} PONG {SERVER} :"));
    w.text(token);
    w.end();
    send(client, w);
}

/// A channel name as a room name; `403` if it is none.
fn room_name(client: &Arc<Client>, st: &State, name: &[u8]) -> Option<RoomName> {
    let room = RoomName::parse(name);
    if room.is_none() {
        no_such_channel(client, st, name);
    }
    room
}

/// `403 NAME :No such channel`.
fn no_such_channel(client: &Arc<Client>, st: &State, name: &[u8]) {
    let shown = Bytes(&name[..name.len().min(64)]);
    numeric(client, st, 403, fmt!("{shown} :No such channel"));
}

/// `401 NAME :No such nick/channel`.
fn no_such_nick(client: &Arc<Client>, st: &State, name: &[u8]) {
    let shown = Bytes(&name[..name.len().min(64)]);
    numeric(client, st, 401, fmt!("{shown} :No such nick/channel"));
}

/// `PRIVMSG` and `NOTICE`: to channels through the relay batch, to nicks at once.
fn say(
    client: &Arc<Client>,
    st: &State,
    m: &Message<'_>,
    batch: &mut RelayBatch<Client>,
) -> Result<(), CloseReason> {
    let notice = m.is("NOTICE");
    let command = if notice { "NOTICE" } else { "PRIVMSG" };
    let server = client.server();
    let core = &server.core;
    let Some(targets) = m.arg(0) else {
        if !notice {
            numeric(client, st, 411, fmt!(":No recipient given ({command})"));
        }
        return Ok(());
    };
    let Some(text) = m.arg(1) else {
        if !notice {
            numeric(client, st, 412, fmt!(":No text to send"));
        }
        return Ok(());
    };
    // At most four targets per line, as `TARGMAX` would say.
    for target in items(targets).take(4) {
        if !target.starts_with(b"#") {
            core.publish(batch);
            if core.private(&**client, target, text, notice).is_err() {
                if !notice {
                    no_such_nick(client, st, target);
                }
                continue;
            }
            if !notice {
                query::away_reply(client, st, target);
            }
            continue;
        }
        let (room, shown) = match core.speak_in(&**client, target) {
            Ok(r) => r,
            Err(SayError::NoSuchRoom) => {
                if !notice {
                    no_such_channel(client, st, target);
                }
                continue;
            }
            Err(SayError::NotMember) => {
                if !notice {
                    let shown = Bytes(&target[..target.len().min(64)]);
                    numeric(client, st, 404, fmt!("{shown} :Cannot send to channel"));
                }
                continue;
            }
            Err(SayError::Gone) => return Ok(()),
        };
        let label = client.label();
        kchat_log!(
            server,
            msg_log,
            TRACE_MESSAGES,
            "Client Say: {} in {}: {}\n",
            label,
            shown,
            Escaped(text)
        );
        client.msgs_in.add(1, Relaxed);
        let user = st.user.unwrap_or_else(|| Protocol::Irc.default_user());
        let origin = crate::chat::Origin {
            label: &label,
            user: &user,
            host: client.peer,
            conn: client.id,
        };
        let (frame, at, len) = render::relay(&origin, shown.as_bytes(), text, notice)
            .map_err(|_| CloseReason::NoMemory)?;
        let frame = Arc::new(frame, GFP_KERNEL).map_err(|_| CloseReason::NoMemory)?;
        let msg = ChatMessage::new(frame, Protocol::Irc, at, len, notice);
        batch
            .push(core, client, Some(room), msg)
            .map_err(|_| CloseReason::NoMemory)?;
    }
    Ok(())
}

/// `JOIN #a,#b` (keys ignored), or `JOIN 0`.
fn join(client: &Arc<Client>, st: &State, m: &Message<'_>) {
    let core = &client.server().core;
    let Some(list) = m.arg(0) else {
        return need_more(client, st, "JOIN");
    };
    if list == b"0" {
        core.part_all(&**client);
        return;
    }
    for name in items(list).take(CHANLIMIT + 1) {
        let Some(room) = room_name(client, st, name) else {
            continue;
        };
        match core.join(&**client, &room, CHANLIMIT) {
            Ok(_) | Err(JoinError::Already(_)) | Err(JoinError::Gone) => {}
            Err(JoinError::TooManyJoined) => numeric(
                client,
                st,
                405,
                fmt!("{room} :You have joined too many channels"),
            ),
            Err(JoinError::TooMany(max)) => numeric(
                client,
                st,
                405,
                fmt!("{room} :Too many channels exist (max_rooms={max})"),
            ),
            Err(JoinError::NoMemory) => {
                numeric(client, st, 405, fmt!("{room} :Out of memory, try again"))
            }
        }
    }
}

/// `PART #a,#b [:reason]`.
fn part(client: &Arc<Client>, st: &State, m: &Message<'_>) {
    let core = &client.server().core;
    let Some(list) = m.arg(0) else {
        return need_more(client, st, "PART");
    };
    let reason = m.arg(1);
    for name in items(list).take(CHANLIMIT + 1) {
        match core.part(&**client, name, reason) {
            Ok(()) => {}
            Err(PartError::NoSuchRoom) => no_such_channel(client, st, name),
            Err(PartError::NotMember) => {
                let shown = Bytes(&name[..name.len().min(64)]);
                numeric(client, st, 442, fmt!("{shown} :You're not on that channel"));
            }
        }
    }
}

/// `442`, `482` and `403` as most channel commands give them.
fn channel_error(client: &Arc<Client>, st: &State, name: &[u8], e: KickError) {
    let shown = Bytes(&name[..name.len().min(64)]);
    match e {
        KickError::NoSuchRoom => no_such_channel(client, st, name),
        KickError::NotMember => {
            numeric(client, st, 442, fmt!("{shown} :You're not on that channel"))
        }
        KickError::NotOp => numeric(
            client,
            st,
            482,
            fmt!("{shown} :You're not channel operator"),
        ),
        KickError::NoSuchNick | KickError::TheyNotMember => {}
    }
}

/// `TOPIC #c` (a query) or `TOPIC #c :text`.
fn topic(client: &Arc<Client>, st: &State, m: &Message<'_>) {
    let Some(name) = m.arg(0) else {
        return need_more(client, st, "TOPIC");
    };
    let Some(text) = m.param(1) else {
        return query::topic(client, st, name);
    };
    let e = match client.server().core.set_topic(&**client, name, text) {
        Ok(()) => return,
        Err(TopicError::NoMemory) => return,
        Err(TopicError::NoSuchRoom) => KickError::NoSuchRoom,
        Err(TopicError::NotMember) => KickError::NotMember,
        Err(TopicError::NotOp) => KickError::NotOp,
    };
    channel_error(client, st, name, e);
}

/// `KICK #c nick [:reason]`.
fn kick(client: &Arc<Client>, st: &State, m: &Message<'_>) {
    let (Some(name), Some(victims)) = (m.arg(0), m.arg(1)) else {
        return need_more(client, st, "KICK");
    };
    let default_reason = st.nick.as_ref().map_or(&b""[..], |n| n.as_bytes());
    let reason = m.arg(2).unwrap_or(default_reason);
    let reason = &reason[..reason.len().min(300)];
    for victim in items(victims).take(4) {
        match client.server().core.kick(&**client, name, victim, reason) {
            Ok(()) => {}
            Err(KickError::NoSuchNick) => no_such_nick(client, st, victim),
            Err(KickError::TheyNotMember) => {
                let (v, c) = (
                    Bytes(&victim[..victim.len().min(64)]),
                    Bytes(&name[..name.len().min(64)]),
                );
                numeric(
                    client,
                    st,
                    441,
                    fmt!("{v} {c} :They aren't on that channel"),
                );
            }
            Err(e) => return channel_error(client, st, name, e),
        }
    }
}

/// `MODE target [modes [args]]`.
fn mode(client: &Arc<Client>, st: &mut State, m: &Message<'_>) {
    let Some(target) = m.arg(0) else {
        return need_more(client, st, "MODE");
    };
    if !target.starts_with(b"#") {
        return user_mode(client, st, target, m.arg(1));
    }
    let Some(modes) = m.arg(1) else {
        return query::channel_modes(client, st, target);
    };
    let core = &client.server().core;
    let mut args = m.params_from(2).iter();
    let mut on = true;
    let mut ban_query = false;
    for &c in modes.iter().take(16) {
        let change = match c {
            b'+' => {
                on = true;
                continue;
            }
            b'-' => {
                on = false;
                continue;
            }
            b'b' => {
                // No bans: the list is empty, and setting one is refused below.
                if args.next().is_none() {
                    ban_query = true;
                } else {
                    channel_error(client, st, target, KickError::NotOp);
                }
                continue;
            }
            b'o' => ModeChange::Op(on),
            b't' => ModeChange::TopicOps(on),
            b'n' => ModeChange::NoExternal(on),
            other => {
                let letter = Bytes(core::slice::from_ref(&other));
                numeric(
                    client,
                    st,
                    472,
                    fmt!("{letter} :is unknown mode char to me"),
                );
                continue;
            }
        };
        let who: &[u8] = match change {
            ModeChange::Op(_) => match args.next() {
                Some(a) => a,
                None => continue,
            },
            _ => b"",
        };
        match core.set_mode(&**client, target, change, who) {
            Ok(()) => {}
            Err(ModeError::NoSuchRoom) => return no_such_channel(client, st, target),
            // Refused whether or not the client is in the channel, as servers answer it.
            Err(ModeError::NotOp) => return channel_error(client, st, target, KickError::NotOp),
            Err(ModeError::NoSuchNick) => no_such_nick(client, st, who),
            Err(ModeError::TheyNotMember) => {
                let (v, c) = (
                    Bytes(&who[..who.len().min(64)]),
                    Bytes(&target[..target.len().min(64)]),
                );
                numeric(
                    client,
                    st,
                    441,
                    fmt!("{v} {c} :They aren't on that channel"),
                );
            }
        }
    }
    if ban_query {
        let shown = Bytes(&target[..target.len().min(64)]);
        numeric(client, st, 368, fmt!("{shown} :End of channel ban list"));
    }
}

/// `MODE nick [+i|-i]`.
fn user_mode(client: &Arc<Client>, st: &mut State, target: &[u8], modes: Option<&[u8]>) {
    let mine = st
        .nick
        .as_ref()
        .is_some_and(|n| n.as_bytes().eq_ignore_ascii_case(target));
    if !mine {
        if query::exists(client, target) {
            numeric(client, st, 502, fmt!(":Can't change mode for other users"));
        } else {
            no_such_nick(client, st, target);
        }
        return;
    }
    let Some(modes) = modes else {
        let flags = if st.invisible { "+i" } else { "+" };
        numeric(client, st, 221, fmt!("{flags}"));
        return;
    };
    let mut on = true;
    let mut applied = KVec::<u8>::new();
    for &c in modes.iter().take(16) {
        match c {
            b'+' => on = true,
            b'-' => on = false,
            b'i' => {
                if st.invisible != on {
                    st.invisible = on;
                    let _ = applied.extend_from_slice(if on { b"+i" } else { b"-i" }, GFP_KERNEL);
                }
            }
            _ => numeric(client, st, 501, fmt!(":Unknown MODE flag")),
        }
    }
    if !applied.is_empty() {
        let _ = client.server().core.reply(&**client, |view| {
            let mut w = Lines::new();
            if let Some(me) = view.me() {
                w.fmt(fmt!(":{} MODE {} :", render::Prefix(&me.origin()), st.me()));
                w.text(&applied);
                w.end();
            }
            w.finish()
        });
    }
}

/// `AWAY [:text]`.
fn away(client: &Arc<Client>, st: &State, m: &Message<'_>) {
    let text = m.arg(0);
    if client.server().core.set_away(&**client, text).is_err() {
        return;
    }
    match text {
        Some(_) => numeric(client, st, 306, fmt!(":You have been marked as being away")),
        None => numeric(
            client,
            st,
            305,
            fmt!(":You are no longer marked as being away"),
        ),
    }
}
