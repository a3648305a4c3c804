// SPDX-License-Identifier: GPL-2.0

//! Registration: `CAP`, `NICK`, `USER`, `PASS`, and the welcome burst.

use kernel::{
    prelude::*,
    sync::{
        atomic::{
            Full,
            Relaxed, //
        },
        Arc,
    },
};

use super::{
    line::Message,
    lines::{
        Lines,
        SERVER, //
    },
    numeric,
    render::Bytes,
    send,
    State,
    CHANLIMIT, //
};
use crate::{
    chat::{
        NickError,
        User,
        View, //
    },
    client::{
        Client,
        IRC_REGISTERED,
        IRC_UNREGISTERED, //
    },
    label::{
        Label,
        MAX_NICK_LEN,
        MAX_ROOM_LEN, //
    },
    log::{
        kchat_log,
        TRACE_CONNECTIONS, //
    },
};

/// The version `002`, `004` and `VERSION` show.
pub(super) const VERSION: &str = "kchat-1.0";

/// `CAP`: kchat offers no capabilities, but a client that negotiates waits for `CAP END`.
pub(super) fn cap(client: &Arc<Client>, st: &mut State, m: &Message<'_>) {
    let Some(sub) = m.arg(0) else {
        numeric(client, st, 461, fmt!("CAP :Not enough parameters"));
        return;
    };
    let registered = client.irc_state.load(Relaxed) != IRC_UNREGISTERED;
    let mut w = Lines::new();
    if sub.eq_ignore_ascii_case(b"LS") {
        if !registered {
            st.cap = true;
        }
        w.line(fmt!(":{SERVER} CAP {} LS :", st.me()));
    } else if sub.eq_ignore_ascii_case(b"LIST") {
        w.line(fmt!(":{SERVER} CAP {} LIST :", st.me()));
    } else if sub.eq_ignore_ascii_case(b"REQ") {
        if !registered {
            st.cap = true;
        }
        w.fmt(fmt!(":{SERVER} CAP {} NAK :", st.me()));
        w.text(m.param(1).unwrap_or(b""));
        w.end();
    } else if sub.eq_ignore_ascii_case(b"END") {
        st.cap = false;
        maybe_welcome(client, st);
        return;
    } else {
        w.reply(
            410,
            &st.me(),
            fmt!("{} :Invalid CAP command", Bytes(&sub[..sub.len().min(32)])),
        );
    }
    send(client, w);
}

/// `NICK`: before registration it reserves the nick; after, the change is shown to the
/// client and everyone sharing a channel with it.
pub(super) fn nick(client: &Arc<Client>, st: &mut State, m: &Message<'_>) {
    let Some(name) = m.arg(0) else {
        numeric(client, st, 431, fmt!(":No nickname given"));
        return;
    };
    let shown = Bytes(&name[..name.len().min(MAX_NICK_LEN + 8)]);
    let nick = match Label::irc_nick(name) {
        Ok(n) => n,
        Err(_) => {
            numeric(client, st, 432, fmt!("{shown} :Erroneous nickname"));
            return;
        }
    };
    let server = client.server();
    let registered = client.irc_state.load(Relaxed) != IRC_UNREGISTERED;
    match server.core.set_nick(&**client, nick, registered) {
        Ok(Some(old)) => {
            // Before registration the nick is only reserved: nobody was told, nothing logged.
            client.renamed(old, nick, registered);
            st.nick = Some(nick);
            maybe_welcome(client, st);
        }
        Ok(None) => {
            st.nick = Some(nick);
            maybe_welcome(client, st);
        }
        Err(NickError::Taken) => {
            numeric(client, st, 433, fmt!("{shown} :Nickname is already in use"));
        }
        Err(NickError::NoMemory) => {
            numeric(client, st, 432, fmt!("{shown} :Out of memory, try again"));
        }
        Err(NickError::Gone) => {}
    }
}

/// `USER name mode unused :real name`.
pub(super) fn user(client: &Arc<Client>, st: &mut State, m: &Message<'_>) {
    if client.irc_state.load(Relaxed) != IRC_UNREGISTERED || st.user.is_some() {
        numeric(client, st, 462, fmt!(":You may not reregister"));
        return;
    }
    let Some(name) = m.arg(0).filter(|_| m.len() >= 4) else {
        numeric(client, st, 461, fmt!("USER :Not enough parameters"));
        return;
    };
    let user = User::sanitized(name, b"user");
    client.server().core.set_user(&**client, user);
    st.user = Some(user);
    maybe_welcome(client, st);
}

/// Welcomes the client once it has a nick and a user and no `CAP` negotiation is open.
fn maybe_welcome(client: &Arc<Client>, st: &mut State) {
    if st.nick.is_none() || st.user.is_none() || st.cap {
        return;
    }
    if client
        .irc_state
        .cmpxchg(IRC_UNREGISTERED, IRC_REGISTERED, Full)
        .is_err()
    {
        return;
    }
    let server = client.server();
    server.irc_unregistered.fetch_sub(1, Relaxed);
    kchat_log!(
        server,
        conn_log,
        TRACE_CONNECTIONS,
        "Client Registered: {} ({}) on IRC\n",
        st.me(),
        client.peer
    );
    let unknown = server.irc_unregistered.load(Relaxed);
    let result = server.core.reply(&**client, |view| {
        let mut w = Lines::new();
        let me = st.me();
        if let Some(v) = view.me() {
            w.reply(
                1,
                &me,
                fmt!(
                    ":Welcome to the kchat IRC network {}",
                    super::render::Prefix(&v.origin())
                ),
            );
        }
        w.reply(
            2,
            &me,
            fmt!(":Your host is {SERVER}, running version {VERSION}"),
        );
        w.reply(
            3,
            &me,
            fmt!(":This server was created when kchat.ko was loaded"),
        );
        w.reply(4, &me, fmt!("{SERVER} {VERSION} i bnot"));
        w.reply(
            5,
            &me,
            fmt!(
                "CASEMAPPING=ascii CHANTYPES=# CHANLIMIT=#:{CHANLIMIT} NICKLEN={MAX_NICK_LEN} \
                 CHANNELLEN={MAX_ROOM_LEN} TOPICLEN={} AWAYLEN={} KICKLEN=300 PREFIX=(o)@ \
                 CHANMODES=b,,,nt NETWORK=kchat :are supported by this server",
                crate::chat::TOPIC_LEN,
                crate::chat::AWAY_LEN
            ),
        );
        lusers(&mut w, &me, view, unknown);
        w.reply(422, &me, fmt!(":MOTD File is missing"));
        w.finish()
    });
    if result.is_err() {
        Client::close(client, crate::client::CloseReason::NoMemory);
    }
}

/// The `LUSERS` replies (251 to 255).
pub(super) fn lusers(
    w: &mut Lines,
    me: &dyn kernel::fmt::Display,
    view: &View<'_, Client>,
    unknown: u64,
) {
    let users = (view.member_count() as u64).saturating_sub(unknown);
    w.reply(
        251,
        me,
        fmt!(":There are {users} users and 0 invisible on 1 servers"),
    );
    w.reply(252, me, fmt!("0 :operator(s) online"));
    w.reply(253, me, fmt!("{unknown} :unknown connection(s)"));
    w.reply(254, me, fmt!("{} :channels formed", view.room_count()));
    w.reply(255, me, fmt!(":I have {users} clients and 0 servers"));
}
