// SPDX-License-Identifier: GPL-2.0
//! A fake kchat for one node: a TCP listener speaking kchat's side of the link
//! (docs/link.md). It checks `/link SECRET NODE`, answers `=link NODE`, the snapshot of its
//! local members and `=synced`; applies what the bridge posts by kchat's rules (a frame it
//! cannot apply is recorded as an error, as kchat would answer `! link: ...`; a frame longer
//! than kchat's default max_msg_len closes the link, as in kchat); forgets the remote
//! members when the link closes; and lets the test inject local events.

use std::{
    collections::BTreeSet,
    io::{Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    sync::{Arc, Condvar, Mutex, MutexGuard},
    thread,
    time::{Duration, Instant},
};

use kchat_proto::{encode, Decoder};

/// kchat's default max_msg_len: the longest frame it takes, on a link too.
pub const MAX_FRAME: usize = 4096;

/// A room message kchat was asked to deliver: room (lower case), `NICK@NODE`, text.
pub type Msg = (String, String, Vec<u8>);

/// What the fake kchat knows and was told.
#[derive(Debug, Default)]
pub struct State {
    /// Local members: (room, nick), as kchat would list them in a snapshot.
    pub local: BTreeSet<(String, String)>,
    /// Remote members by room: (room in lower case, `NICK@NODE`).
    pub view: BTreeSet<(String, String)>,
    /// Room messages posted, in order.
    pub msgs: Vec<Msg>,
    /// Private messages posted: (local TO, `NICK@NODE`, text).
    pub privs: Vec<(String, String, Vec<u8>)>,
    /// `=drop NODE`s.
    pub drops: Vec<String>,
    /// Frames that could not be applied, with why.
    pub errors: Vec<String>,
    /// Every frame of each link, in order (index: link number - 1).
    pub frames: Vec<Vec<String>>,
    /// Links made (after a right `/link`).
    pub links: usize,
    /// `/link`s refused.
    pub refused: usize,
    /// The current link's stream.
    conn: Option<TcpStream>,
    /// False: connections are closed at once.
    closed_for_links: bool,
}

/// A fake kchat, listening until dropped.
pub struct FakeKchat {
    pub port: u16,
    pub node: String,
    shared: Arc<(Mutex<State>, Condvar)>,
}

impl FakeKchat {
    /// Listens on a free loopback port for node `node`'s bridge, with local members
    /// `members` ((room, nick)).
    pub fn start(node: &str, secret: u64, members: &[(&str, &str)]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let state = State {
            local: members
                .iter()
                .map(|(r, n)| (r.to_string(), n.to_string()))
                .collect(),
            ..State::default()
        };
        let shared = Arc::new((Mutex::new(state), Condvar::new()));
        {
            let (shared, node) = (shared.clone(), node.to_string());
            thread::spawn(move || {
                for conn in listener.incoming().flatten() {
                    let (shared, node) = (shared.clone(), node.clone());
                    thread::spawn(move || serve(conn, &node, secret, &shared));
                }
            });
        }
        Self {
            port,
            node: node.to_string(),
            shared,
        }
    }

    /// The state, locked.
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.shared.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits up to `timeout` for `cond` on the state; whether it held.
    pub fn wait(&self, timeout: Duration, mut cond: impl FnMut(&State) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.state();
        loop {
            if cond(&s) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            s = self
                .shared
                .1
                .wait_timeout(s, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Sends a frame on the current link, if any.
    fn send(s: &mut State, payload: &str) {
        Self::send_bytes(s, payload.as_bytes());
    }

    fn send_bytes(s: &mut State, payload: &[u8]) {
        if let Some(c) = s.conn.as_mut() {
            let _ = c.write_all(&encode(payload));
        }
    }

    /// Local `nick` joins `room`.
    pub fn join(&self, room: &str, nick: &str) {
        let mut s = self.state();
        s.local.insert((room.to_string(), nick.to_string()));
        Self::send(&mut s, &format!("=join {room} {nick}"));
    }

    /// Local `nick` leaves `room`.
    pub fn part(&self, room: &str, nick: &str) {
        let mut s = self.state();
        s.local.remove(&(room.to_string(), nick.to_string()));
        Self::send(&mut s, &format!("=part {room} {nick}"));
    }

    /// Local `old` is now `new`.
    pub fn nick(&self, old: &str, new: &str) {
        let mut s = self.state();
        let renamed: Vec<_> = s.local.iter().filter(|(_, n)| n == old).cloned().collect();
        for (room, _) in renamed {
            s.local.remove(&(room.clone(), old.to_string()));
            s.local.insert((room, new.to_string()));
        }
        Self::send(&mut s, &format!("=nick {old} {new}"));
    }

    /// Local `nick` quits.
    pub fn quit(&self, nick: &str) {
        let mut s = self.state();
        s.local.retain(|(_, n)| n != nick);
        Self::send(&mut s, &format!("=quit {nick}"));
    }

    /// Local `nick` says `text` in `room`.
    pub fn say(&self, room: &str, nick: &str, text: &[u8]) {
        let mut s = self.state();
        let mut f = format!("=msg {room} {nick} ").into_bytes();
        f.extend_from_slice(text);
        Self::send_bytes(&mut s, &f);
    }

    /// Local `from` writes privately to `target` (`NICK@NODE`).
    pub fn private(&self, target: &str, from: &str, text: &str) {
        let mut s = self.state();
        Self::send(&mut s, &format!("=priv {target} {from} {text}"));
    }

    /// Closes the current link, as kchat would on a failure (its remote members quit).
    pub fn close_link(&self) {
        let mut s = self.state();
        if let Some(c) = s.conn.take() {
            let _ = c.shutdown(Shutdown::Both);
        }
        s.view.clear();
        self.shared.1.notify_all();
    }

    /// Refuses (closes at once) new connections, or takes them again.
    pub fn refuse_links(&self, refuse: bool) {
        self.state().closed_for_links = refuse;
    }

    /// The remote members (room, `NICK@NODE`).
    pub fn view(&self) -> BTreeSet<(String, String)> {
        self.state().view.clone()
    }

    /// The texts of the room messages posted from `member` in `room`, in order.
    pub fn texts_from(&self, room: &str, member: &str) -> Vec<String> {
        texts(&self.state(), room, member)
    }
}

/// The texts of `s`'s room messages from `member` in `room`, in order.
pub fn texts(s: &State, room: &str, member: &str) -> Vec<String> {
    s.msgs
        .iter()
        .filter(|(r, m, _)| r == room && m == member)
        .map(|(_, _, t)| String::from_utf8_lossy(t).into_owned())
        .collect()
}

/// A set of (room, member) pairs, for comparing views.
pub fn view_of(pairs: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    pairs
        .iter()
        .map(|(r, m)| (r.to_string(), m.to_string()))
        .collect()
}

/// Reads one frame within `timeout`.
fn read_frame(
    conn: &mut TcpStream,
    dec: &mut Decoder,
    timeout: Option<Duration>,
) -> Option<Vec<u8>> {
    conn.set_read_timeout(timeout).ok()?;
    loop {
        if let Some(f) = dec.next_frame().ok()? {
            return Some(f.to_vec());
        }
        let n = conn.read(dec.spare(64 * 1024)).ok()?;
        if n == 0 {
            return None;
        }
        dec.filled(n);
    }
}

/// Serves one connection.
fn serve(mut conn: TcpStream, node: &str, secret: u64, shared: &Arc<(Mutex<State>, Condvar)>) {
    if shared
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .closed_for_links
    {
        let _ = conn.shutdown(Shutdown::Both);
        return;
    }
    let _ = conn.set_nodelay(true);
    // kchat greets every new connection, a link included, before it knows what it is.
    let _ = conn.write_all(&encode(b"* last 0 messages of #lobby:"));
    let mut dec = Decoder::new(MAX_FRAME);
    let Some(first) = read_frame(&mut conn, &mut dec, Some(Duration::from_secs(10))) else {
        return;
    };
    let want = format!("/link {secret} {node}");
    let mut s = shared.0.lock().unwrap_or_else(|e| e.into_inner());
    if first != want.as_bytes() {
        s.refused += 1;
        let _ = conn.write_all(&encode(b"! link refused"));
        let _ = conn.shutdown(Shutdown::Both);
        shared.1.notify_all();
        return;
    }
    // A new link replaces the old one, whose remote members are gone.
    if let Some(old) = s.conn.take() {
        let _ = old.shutdown(Shutdown::Both);
    }
    s.view.clear();
    s.links += 1;
    s.frames.push(Vec::new());
    let link_no = s.links;
    let mut out = encode(format!("=link {node}").as_bytes());
    for (room, nick) in &s.local {
        out.extend_from_slice(&encode(format!("=join {room} {nick}").as_bytes()));
    }
    out.extend_from_slice(&encode(b"=synced"));
    if conn.write_all(&out).is_err() {
        return;
    }
    s.conn = conn.try_clone().ok();
    shared.1.notify_all();
    drop(s);
    while let Some(frame) = read_frame(&mut conn, &mut dec, None) {
        let mut s = shared.0.lock().unwrap_or_else(|e| e.into_inner());
        if s.links != link_no {
            break;
        }
        apply(&mut s, link_no, &frame);
        shared.1.notify_all();
    }
    let mut s = shared.0.lock().unwrap_or_else(|e| e.into_inner());
    if s.links == link_no && s.conn.is_some() {
        s.conn = None;
        s.view.clear();
    }
    shared.1.notify_all();
}

/// Splits `NICK@NODE`.
fn remote(member: &str) -> Option<(&str, &str)> {
    member
        .split_once('@')
        .filter(|(n, node)| !n.is_empty() && !node.is_empty())
}

/// Applies one frame from the bridge, as kchat would.
fn apply(s: &mut State, link_no: usize, frame: &[u8]) {
    let text = String::from_utf8_lossy(frame).into_owned();
    s.frames[link_no - 1].push(text.clone());
    let err = |s: &mut State, why: &str| s.errors.push(format!("{why}: {text}"));
    let mut words = text.splitn(4, ' ');
    let verb = words.next().unwrap_or("");
    let a = words.next().unwrap_or("");
    let b = words.next().unwrap_or("");
    let key = |room: &str| room.to_ascii_lowercase();
    match verb {
        "=join" if a.starts_with('#') && remote(b).is_some() => {
            if !s.view.insert((key(a), b.to_string())) {
                err(s, "already in the room");
            }
        }
        "=part" if a.starts_with('#') && remote(b).is_some() => {
            if !s.view.remove(&(key(a), b.to_string())) {
                err(s, "not in the room");
            }
        }
        "=nick" if remote(a).is_some() && remote(b).is_some() => {
            let rooms: Vec<String> = s
                .view
                .iter()
                .filter(|(_, m)| m == a)
                .map(|(r, _)| r.clone())
                .collect();
            if rooms.is_empty() {
                err(s, "unknown member");
            }
            for r in rooms {
                s.view.remove(&(r.clone(), a.to_string()));
                s.view.insert((r, b.to_string()));
            }
        }
        "=quit" if remote(a).is_some() => {
            let before = s.view.len();
            s.view.retain(|(_, m)| m != a);
            if s.view.len() == before {
                err(s, "unknown member");
            }
        }
        "=msg" if a.starts_with('#') => {
            let body = frame
                .get(5 + a.len() + 1 + b.len() + 1..)
                .unwrap_or_default();
            if body.is_empty() {
                err(s, "empty text");
            } else if !s.view.contains(&(key(a), b.to_string())) {
                err(s, "message from a member not in the room");
            } else {
                s.msgs.push((key(a), b.to_string(), body.to_vec()));
            }
        }
        "=priv" => {
            let body = frame
                .get(6 + a.len() + 1 + b.len() + 1..)
                .unwrap_or_default();
            if !s.local.iter().any(|(_, n)| n == a) {
                err(s, "no such local nick");
            } else if !s.view.iter().any(|(_, m)| m == b) {
                err(s, "sender is not a known remote member");
            } else if body.is_empty() {
                err(s, "empty text");
            } else {
                s.privs.push((a.to_string(), b.to_string(), body.to_vec()));
            }
        }
        "=drop" if !a.is_empty() => {
            let suffix = format!("@{a}");
            s.view.retain(|(_, m)| !m.ends_with(&suffix));
            s.drops.push(a.to_string());
        }
        _ => err(s, "malformed"),
    }
}
