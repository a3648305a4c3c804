// SPDX-License-Identifier: GPL-2.0

//! The answers built from the chat's state: `NAMES`, `LIST`, `WHO`, `WHOIS`, `ISON`,
//! `USERHOST`, `LUSERS`, topic and mode queries, and `301` for a message to someone away.
//! Each is written under the core's lock from a [`View`], and queued in order with
//! everything else the client is sent.

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
        Message, //
    },
    lines::{
        Lines,
        SERVER, //
    },
    numeric, register,
    render::{
        names as names_lines,
        topic_lines,
        Bytes,
        Nick, //
    },
    State,
};
use crate::{
    chat::{
        MemberView,
        Roster,
        View, //
    },
    client::Client,
    label::Label,
};

/// Runs `f` on the chat as `client` sees it and queues the lines it writes.
fn answer(client: &Arc<Client>, f: impl FnOnce(&View<'_, Client>, &mut Lines)) {
    let _ = client.server().core.reply(&**client, |view| {
        let mut w = Lines::new();
        f(view, &mut w);
        w.finish()
    });
}

/// A name from a client, cut and made printable for a reply.
fn shown(name: &[u8]) -> Bytes<'_> {
    Bytes(&name[..name.len().min(64)])
}

/// Whether a member called `name` exists.
pub(super) fn exists(client: &Arc<Client>, name: &[u8]) -> bool {
    let mut found = false;
    let _ = client.server().core.reply(&**client, |view| {
        found = view.member(name).is_some();
        Ok(None)
    });
    found
}

/// A room's members as a [`Roster`], for the `353` lines.
struct Members<'v, 'a>(&'v KVec<(MemberView<'a, Client>, bool)>);

impl Roster for Members<'_, '_> {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn each(&self, f: &mut dyn FnMut(&Label, u64, bool) -> bool) {
        for (m, op) in self.0.iter() {
            let o = m.origin();
            if !f(o.label, o.conn, *op) {
                return;
            }
        }
    }
}

/// The members of room `name` in order, or nothing if it does not exist.
fn members<'a>(view: &View<'a, Client>, name: &[u8]) -> KVec<(MemberView<'a, Client>, bool)> {
    let mut out = KVec::new();
    if let Some(r) = view.room(name) {
        if let Ok(it) = r.members() {
            if out.reserve(r.len(), GFP_KERNEL).is_ok() {
                for m in it {
                    let _ = out.push_within_capacity(m);
                }
            }
        }
    }
    out
}

/// `NAMES [#a,#b]`.
pub(super) fn names(client: &Arc<Client>, st: &State, m: &Message<'_>) {
    let me = st.me();
    answer(client, |view, w| {
        let Some(list) = m.arg(0) else {
            w.reply(366, &me, fmt!("* :End of /NAMES list."));
            return;
        };
        for name in items(list).take(8) {
            match view.room(name) {
                Some(r) => {
                    let ms = members(view, name);
                    names_lines(w, &me, r.name().as_bytes(), &Members(&ms));
                }
                None => w.reply(366, &me, fmt!("{} :End of /NAMES list.", shown(name))),
            }
        }
    });
}

/// `LIST`: every channel.
pub(super) fn list(client: &Arc<Client>, st: &State) {
    let me = st.me();
    answer(client, |view, w| {
        w.reply(321, &me, fmt!("Channel :Users  Name"));
        for r in view.rooms() {
            w.numeric(322, &me);
            w.fmt(fmt!("{} {} :", r.name(), r.len()));
            if let Some(t) = r.topic() {
                w.text(&t.text);
            }
            w.end();
        }
        w.reply(323, &me, fmt!(":End of /LIST"));
    });
}

/// One `352` line for member `m` as seen in `channel`.
fn who_line(
    w: &mut Lines,
    me: &dyn kernel::fmt::Display,
    channel: &dyn kernel::fmt::Display,
    m: &MemberView<'_, Client>,
    op: bool,
) {
    let o = m.origin();
    let here = if m.away().is_some() { "G" } else { "H" };
    let at = if op { "@" } else { "" };
    let nick = Nick(o.label, o.conn);
    w.reply(
        352,
        me,
        fmt!(
            "{channel} {} {} {SERVER} {nick} {here}{at} :0 {nick}",
            o.user,
            o.host.host()
        ),
    );
}

/// `WHO #channel` or `WHO nick`.
pub(super) fn who(client: &Arc<Client>, st: &State, m: &Message<'_>) {
    let me = st.me();
    let mask = m.arg(0).unwrap_or(b"*");
    answer(client, |view, w| {
        if mask.starts_with(b"#") {
            if let Some(r) = view.room(mask) {
                let name = r.name();
                for (member, op) in members(view, mask).iter() {
                    who_line(w, &me, name, member, *op);
                }
            }
        } else if let Some(member) = view.member(mask) {
            who_line(w, &me, &"*", &member, false);
        }
        w.reply(315, &me, fmt!("{} :End of /WHO list.", shown(mask)));
    });
}

/// `WHOIS [server] nick`.
pub(super) fn whois(client: &Arc<Client>, st: &State, m: &Message<'_>) {
    let me = st.me();
    let Some(target) = m.arg(1).or(m.arg(0)) else {
        numeric(client, st, 461, fmt!("WHOIS :Not enough parameters"));
        return;
    };
    answer(client, |view, w| {
        let Some(member) = view.member(target) else {
            w.reply(401, &me, fmt!("{} :No such nick/channel", shown(target)));
            w.reply(318, &me, fmt!("{} :End of /WHOIS list.", shown(target)));
            return;
        };
        let o = member.origin();
        let nick = Nick(o.label, o.conn);
        w.reply(
            311,
            &me,
            fmt!("{nick} {} {} * :{nick}", o.user, o.host.host()),
        );
        let mut any = false;
        for (room, op) in member.rooms() {
            if !any {
                w.numeric(319, &me);
                w.fmt(fmt!("{nick} :"));
                any = true;
            } else {
                w.fmt(fmt!(" "));
            }
            let at = if op { "@" } else { "" };
            w.fmt(fmt!("{at}{room}"));
        }
        if any {
            w.end();
        }
        w.reply(312, &me, fmt!("{nick} {SERVER} :kchat"));
        if let Some(a) = member.away() {
            w.numeric(301, &me);
            w.fmt(fmt!("{nick} :"));
            w.text(a);
            w.end();
        }
        w.reply(318, &me, fmt!("{nick} :End of /WHOIS list."));
    });
}

/// `ISON a b c`: the ones present, as kchat spells them.
pub(super) fn ison(client: &Arc<Client>, st: &State, m: &Message<'_>) {
    if m.arg(0).is_none() {
        numeric(client, st, 461, fmt!("ISON :Not enough parameters"));
        return;
    }
    let me = st.me();
    answer(client, |view, w| {
        w.numeric(303, &me);
        w.fmt(fmt!(":"));
        let mut first = true;
        for p in m.params_from(0) {
            for name in p.split(|&c| c == b' ').filter(|n| !n.is_empty()).take(32) {
                if let Some(member) = view.member(name) {
                    let o = member.origin();
                    let sep = if first { "" } else { " " };
                    first = false;
                    w.fmt(fmt!("{sep}{}", Nick(o.label, o.conn)));
                }
            }
        }
        w.end();
    });
}

/// `USERHOST a b`: `nick=+user@host` for those present (`-` if away).
pub(super) fn userhost(client: &Arc<Client>, st: &State, m: &Message<'_>) {
    if m.arg(0).is_none() {
        numeric(client, st, 461, fmt!("USERHOST :Not enough parameters"));
        return;
    }
    let me = st.me();
    answer(client, |view, w| {
        w.numeric(302, &me);
        w.fmt(fmt!(":"));
        let mut first = true;
        for name in m.params_from(0).iter().take(5) {
            if let Some(member) = view.member(name) {
                let o = member.origin();
                let sep = if first { "" } else { " " };
                first = false;
                let away = if member.away().is_some() { '-' } else { '+' };
                w.fmt(fmt!(
                    "{sep}{}={away}{}@{}",
                    Nick(o.label, o.conn),
                    o.user,
                    o.host.host()
                ));
            }
        }
        w.end();
    });
}

/// `LUSERS`.
pub(super) fn lusers(client: &Arc<Client>, st: &State) {
    let me = st.me();
    let unknown = client.server().irc_unregistered.load(Relaxed);
    answer(client, |view, w| register::lusers(w, &me, view, unknown));
}

/// `TOPIC #c` as a query: `331`, or `332` and `333`; `403` for no such channel.
pub(super) fn topic(client: &Arc<Client>, st: &State, name: &[u8]) {
    let me = st.me();
    answer(client, |view, w| match view.room(name) {
        None => w.reply(403, &me, fmt!("{} :No such channel", shown(name))),
        Some(r) => match r.topic() {
            Some(t) => topic_lines(w, &me, r.name().as_bytes(), t),
            None => w.reply(331, &me, fmt!("{} :No topic is set", r.name())),
        },
    });
}

/// `MODE #c`: `324` and `329`; `403` for no such channel.
pub(super) fn channel_modes(client: &Arc<Client>, st: &State, name: &[u8]) {
    let me = st.me();
    answer(client, |view, w| match view.room(name) {
        None => w.reply(403, &me, fmt!("{} :No such channel", shown(name))),
        Some(r) => {
            let modes = r.modes();
            let n = if modes.no_external { "n" } else { "" };
            let t = if modes.topic_ops { "t" } else { "" };
            w.reply(324, &me, fmt!("{} +{n}{t}", r.name()));
            w.reply(329, &me, fmt!("{} {}", r.name(), r.created()));
        }
    });
}

/// `301` after a private message to a member who is away.
pub(super) fn away_reply(client: &Arc<Client>, st: &State, target: &[u8]) {
    let me = st.me();
    answer(client, |view, w| {
        if let Some(member) = view.member(target) {
            if let Some(a) = member.away() {
                let o = member.origin();
                w.numeric(301, &me);
                w.fmt(fmt!("{} :", Nick(o.label, o.conn)));
                w.text(a);
                w.end();
            }
        }
    });
}
