//! The IRC front end (docs/irc.md is the contract): registration, keep-alive, channels,
//! messages, users, framing, the crossing between IRC and native clients, slow consumers,
//! flood control and scale. The hostile forms are in [`hostile`], run by the hostile suite.
//!
//! Every expectation is an exact line (without its CR LF) as docs/irc.md gives it; a failure
//! says which client received what, and what was expected.

mod channels;
mod cross;
mod framing;
pub mod hostile;
mod load;
mod messages;
mod registration;

use std::{
    io,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use kchat_proto::irc::Client;

use crate::{
    ensure,
    util::{debugfs_table, Context, CLIENTS_HEADER, STEP},
    Case, CaseResult,
};

/// Where kchat's IRC port listens in the guest (the default `irc_port`).
pub const IRC_ADDR: &str = "127.0.0.1:6667";

/// The host part of every prefix: the guest's clients connect over IPv4 loopback.
pub const HOST: &str = "127.0.0.1";

/// The `005` tokens, in the order docs/irc.md gives them.
pub const ISUPPORT: &str = "CASEMAPPING=ascii CHANTYPES=# CHANLIMIT=#:20 NICKLEN=32 \
     CHANNELLEN=33 TOPICLEN=300 AWAYLEN=200 KICKLEN=300 PREFIX=(o)@ CHANMODES=b,,,nt \
     NETWORK=kchat";

pub fn cases() -> Vec<Case> {
    let mut cases = registration::cases();
    cases.extend(channels::cases());
    cases.extend(messages::cases());
    cases.extend(framing::cases());
    cases.extend(cross::cases());
    cases.extend(load::cases());
    cases
}

/// A numeric reply: `:kchat CODE ME REST`.
pub fn num(code: &str, me: &str, rest: &str) -> String {
    format!(":kchat {code} {me} {rest}")
}

/// The LUSERS replies (251 to 255): `n` members, `u` unregistered IRC connections, `r` rooms.
pub fn lusers(me: &str, n: usize, u: usize, r: usize) -> Vec<String> {
    vec![
        num(
            "251",
            me,
            &format!(":There are {n} users and 0 invisible on 1 servers"),
        ),
        num("252", me, "0 :operator(s) online"),
        num("253", me, &format!("{u} :unknown connection(s)")),
        num("254", me, &format!("{r} :channels formed")),
        num("255", me, &format!(":I have {n} clients and 0 servers")),
    ]
}

/// The whole welcome burst of `me` (user name `user`): 001 to 005, LUSERS, 422.
pub fn welcome(me: &str, user: &str, n: usize, u: usize, r: usize) -> Vec<String> {
    let mut lines = vec![
        num(
            "001",
            me,
            &format!(":Welcome to the kchat IRC network {me}!{user}@{HOST}"),
        ),
        num("002", me, ":Your host is kchat, running version kchat-1.0"),
        num(
            "003",
            me,
            ":This server was created when kchat.ko was loaded",
        ),
        num("004", me, "kchat kchat-1.0 i bnot"),
        num(
            "005",
            me,
            &format!("{ISUPPORT} :are supported by this server"),
        ),
    ];
    lines.extend(lusers(me, n, u, r));
    lines.push(num("422", me, ":MOTD File is missing"));
    lines
}

/// True for the `PING :kchat` kchat sends an idle client (with or without its prefix).
pub fn is_server_ping(line: &str) -> bool {
    line == "PING :kchat" || line == ":kchat PING :kchat" || line == "PING kchat"
}

/// True if `line` is the `ERROR :TEXT` that comes before a close (with or without a prefix).
pub fn is_error(line: &str, text: &str) -> bool {
    let want = format!("ERROR :{text}");
    line == want || line.strip_prefix(":kchat ") == Some(want.as_str())
}

/// Seconds since the epoch, the clock kchat's 333 and 329 replies use.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Checks a timestamp kchat sent is a number within ten minutes of the guest's clock.
pub fn check_time(what: &str, ts: &str) -> CaseResult {
    let t: u64 = ts
        .parse()
        .map_err(|_| format!("{what}: time {ts:?} is not a number"))?;
    let now = unix_now();
    ensure!(
        t + 600 >= now && t <= now + 600,
        "{what}: time {t} is not near now ({now})"
    );
    Ok(())
}

/// An IRC connection under test, with the nick and user name kchat knows it by.
pub struct User {
    pub c: Client,
    /// `*` until a nick was accepted.
    pub nick: String,
    pub user: String,
    syncs: u32,
}

impl User {
    /// Connects to the IRC port without registering.
    pub fn connect() -> Result<Self, String> {
        Self::connect_to(IRC_ADDR)
    }

    /// Connects to `addr` (the IRC port over IPv4 or IPv6) without registering.
    pub fn connect_to(addr: &str) -> Result<Self, String> {
        let c = Client::connect(addr).ctx(&format!("connect to kchat's IRC port at {addr}"))?;
        Ok(Self {
            c,
            nick: "*".into(),
            user: String::new(),
            syncs: 0,
        })
    }

    /// `nick!user@127.0.0.1`.
    pub fn prefix(&self) -> String {
        format!("{}!{}@{HOST}", self.nick, self.user)
    }

    /// `ip:port` of this connection, as kchat's clients file shows its peer.
    pub fn local_addr(&self) -> String {
        self.c
            .stream()
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default()
    }

    /// Sends `line` and CR LF.
    pub fn send(&mut self, line: &str) -> CaseResult {
        self.c
            .send_line(line)
            .ctx(&format!("{} sending {line:?}", self.nick))
    }

    /// Sends bytes as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) -> CaseResult {
        self.c.send_raw(bytes).ctx(&format!(
            "{} sending {:?}",
            self.nick,
            String::from_utf8_lossy(&bytes[..bytes.len().min(60)])
        ))
    }

    /// The next line within `timeout`; `None` if none came.
    pub fn next_within(&mut self, timeout: Duration) -> Result<Option<String>, String> {
        match self.c.recv(timeout) {
            Ok(m) => Ok(m.map(|m| String::from_utf8_lossy(m.line()).into_owned())),
            Err(e) => Err(format!("{} receiving: {e}", self.nick)),
        }
    }

    /// The next line, waiting up to [`STEP`]; `what` says what was awaited.
    pub fn next(&mut self, what: &str) -> Result<String, String> {
        self.next_within(STEP)?.ok_or_else(|| {
            format!(
                "{} received nothing within {STEP:?}, expected {what}",
                self.nick
            )
        })
    }

    /// Expects the next line to be exactly `want`.
    pub fn expect(&mut self, want: &str) -> CaseResult {
        let got = self
            .next(&format!("{want:?}"))
            .map_err(|e| format!("{e} (expected {want:?})"))?;
        ensure!(
            got == want,
            "{} received {got:?}, expected {want:?}",
            self.nick
        );
        Ok(())
    }

    /// Expects the next lines to be exactly `want`, in order.
    pub fn expect_lines<S: AsRef<str>>(&mut self, want: &[S]) -> CaseResult {
        for w in want {
            self.expect(w.as_ref())?;
        }
        Ok(())
    }

    /// Expects the next `want.len()` lines to be `want` in any order.
    pub fn expect_unordered<S: AsRef<str>>(&mut self, want: &[S]) -> CaseResult {
        let mut got = Vec::new();
        for _ in want {
            got.push(self.next(&format!("{} lines in any order", want.len()))?);
        }
        let mut want: Vec<&str> = want.iter().map(AsRef::as_ref).collect();
        let mut sorted = got.clone();
        sorted.sort_unstable();
        want.sort_unstable();
        ensure!(
            sorted == want,
            "{} received {got:?}, expected (in any order) {want:?}",
            self.nick
        );
        Ok(())
    }

    /// Sends `line` and expects `want`, in order.
    pub fn ask<S: AsRef<str>>(&mut self, line: &str, want: &[S]) -> CaseResult {
        self.send(line)?;
        self.expect_lines(want)
            .map_err(|e| format!("after {line:?}: {e}"))
    }

    /// Round trip: `PING syncN`, whose `PONG` must be the very next line; proves nothing
    /// else was sent to this client before it.
    pub fn sync(&mut self) -> CaseResult {
        self.syncs += 1;
        let token = format!("sync{}", self.syncs);
        self.send(&format!("PING {token}"))?;
        let want = format!(":kchat PONG kchat :{token}");
        let got = self.next(&format!("{want:?}"))?;
        ensure!(
            got == want,
            "{} received {got:?} where nothing more was expected (waiting for {want:?})",
            self.nick
        );
        Ok(())
    }

    /// Reads lines until one satisfies `pred`; returns it and the lines before it.
    pub fn until(
        &mut self,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> Result<(String, Vec<String>), String> {
        let mut before = Vec::new();
        loop {
            let l = self
                .next(what)
                .map_err(|e| format!("{e}; before it: {before:?}"))?;
            if pred(&l) {
                return Ok((l, before));
            }
            before.push(l);
        }
    }

    /// Waits up to `timeout` for kchat to close the connection; the lines before the close.
    pub fn expect_close(&mut self, timeout: Duration) -> Result<Vec<String>, String> {
        let deadline = Instant::now() + timeout;
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            ensure!(
                !left.is_zero(),
                "{}: kchat did not close the connection within {timeout:?} (received {lines:?})",
                self.nick
            );
            match self.c.recv(left) {
                Ok(Some(m)) => lines.push(String::from_utf8_lossy(m.line()).into_owned()),
                Ok(None) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
                    ) =>
                {
                    return Ok(lines);
                }
                Err(e) => return Err(format!("{}: {e} (received {lines:?})", self.nick)),
            }
        }
    }

    /// Expects `ERROR :Closing Link: 127.0.0.1 (WHY)` and then the close.
    pub fn expect_closing_link(&mut self, why: &str) -> CaseResult {
        let lines = self.expect_close(STEP)?;
        let text = format!("Closing Link: {HOST} ({why})");
        ensure!(
            lines.len() == 1 && is_error(&lines[0], &text),
            "{} received {lines:?} before the close, expected [\"ERROR :{text}\"]",
            self.nick
        );
        Ok(())
    }
}

/// Registers `nick` with user name `nick`, reading the welcome burst to its 422.
pub fn register(nick: &str) -> Result<User, String> {
    register_as(nick, nick)
}

/// Registers `nick` with user name `user`: `NICK`, `USER user 0 * :real name`, then the burst
/// up to 422 (the first line must be 001; an error numeric or ERROR fails it).
pub fn register_as(nick: &str, user: &str) -> Result<User, String> {
    let mut u = User::connect()?;
    u.send(&format!("NICK {nick}"))?;
    u.send(&format!("USER {user} 0 * :real name of {nick}"))?;
    u.nick = nick.to_string();
    u.user = user.chars().take(16).collect();
    let first = u.next("001")?;
    ensure!(
        first.starts_with(&format!(":kchat 001 {nick} ")),
        "registering {nick}: received {first:?}, expected 001"
    );
    u.until("422 (end of the welcome)", |l| {
        l.starts_with(&format!(":kchat 422 {nick} "))
    })?;
    Ok(u)
}

/// `:PREFIX JOIN #c` for `u`.
pub fn join_line(u: &User, chan: &str) -> String {
    format!(":{} JOIN {chan}", u.prefix())
}

/// Reads 353 lines for `chan` up to its 366 and returns the names, checking each line's
/// form and length (under 512 bytes with CR LF).
pub fn read_names(u: &mut User, chan: &str) -> Result<Vec<String>, String> {
    let me = u.nick.clone();
    let head = format!(":kchat 353 {me} = {chan} :");
    let end = num("366", &me, &format!("{chan} :End of /NAMES list."));
    let mut names = Vec::new();
    loop {
        let l = u.next(&format!("353 or 366 for {chan}"))?;
        if l == end {
            return Ok(names);
        }
        let list = l
            .strip_prefix(&head)
            .ok_or_else(|| format!("{me} received {l:?}, expected {head}... or {end:?}"))?;
        ensure!(
            l.len() + 2 <= 512,
            "{me}: a 353 line of {} bytes with CR LF: {l:?}",
            l.len() + 2
        );
        ensure!(!list.is_empty(), "{me}: an empty 353 line {l:?}");
        names.extend(list.split(' ').map(str::to_string));
    }
}

/// Checks `names` are `want` in any order.
pub fn same_names(who: &str, chan: &str, names: &[String], want: &[&str]) -> CaseResult {
    let mut got: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut want = want.to_vec();
    got.sort_unstable();
    want.sort_unstable();
    ensure!(
        got == want,
        "{who}: names of {chan} are {names:?}, expected (in any order) {want:?}"
    );
    Ok(())
}

/// `u` joins `chan`, which has no topic: the echo, then names exactly `want` (in any
/// order), then 366.
pub fn join_expect(u: &mut User, chan: &str, want: &[&str]) -> CaseResult {
    u.send(&format!("JOIN {chan}"))?;
    let echo = join_line(u, chan);
    u.expect(&echo)?;
    let names = read_names(u, chan)?;
    let who = u.nick.clone();
    same_names(&who, chan, &names, want)
}

/// `u` asks `NAMES chan` and expects exactly `want` (any order).
pub fn names_expect(u: &mut User, chan: &str, want: &[&str]) -> CaseResult {
    u.send(&format!("NAMES {chan}"))?;
    let names = read_names(u, chan)?;
    let who = u.nick.clone();
    same_names(&who, chan, &names, want)
}

/// `u` joins `chan` and everyone in `others` sees it.
pub fn join_seen(u: &mut User, chan: &str, want: &[&str], others: &mut [&mut User]) -> CaseResult {
    join_expect(u, chan, want)?;
    let line = join_line(u, chan);
    for o in others.iter_mut() {
        o.expect(&line)?;
    }
    Ok(())
}

/// A native client's connection id, from the first column of the clients file (by label).
pub fn native_id(label: &str) -> Result<String, String> {
    let rows = debugfs_table("clients", CLIENTS_HEADER)?;
    rows.iter()
        .find(|r| r[1] == label)
        .map(|r| r[0].clone())
        .ok_or_else(|| format!("no client labelled {label} in the clients file"))
}

/// The clients file's `bytes_in` for the client whose peer is `peer`.
pub fn bytes_in_of(peer: &str) -> Result<u64, String> {
    let rows = debugfs_table("clients", CLIENTS_HEADER)?;
    let row = rows
        .iter()
        .find(|r| r[2] == peer)
        .ok_or_else(|| format!("no client with peer {peer} in the clients file"))?;
    row[4].parse().ctx("bytes_in")
}
