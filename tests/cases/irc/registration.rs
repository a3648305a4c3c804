//! IRC registration (NICK, USER, CAP, PASS and their errors), the registration timeout,
//! keep-alive both ways, and the small commands (MOTD, LUSERS, VERSION, OPER, 421, 461).

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use super::{
    is_error, is_server_ping, join_seen, lusers, num, register, register_as, welcome, User, HOST,
    IRC_ADDR,
};
use crate::{
    ensure,
    util::{connect, expect_frame, label, say, start, Context, STEP},
    Case, CaseResult,
};

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "irc: NICK and USER get 001-005, 251-255 and 422 in order, CR LF, counts right",
            run: welcome_burst,
        },
        Case {
            name:
                "irc: CAP LS 302/REQ/LIST/END (registration waits for END), 410; PASS ignored, 462",
            run: cap_and_pass,
        },
        Case {
            name:
                "irc: 431, 432 (bad, reserved kchat-N), 433 (IRC, native, pending), 461, 462, 451",
            run: registration_errors,
        },
        Case {
            name: "irc: irc_ping=5: unregistered connections get Registration timed out and close",
            run: registration_timeout,
        },
        Case {
            name: "irc: PING/PONG both ways, 409; an idle client is PINGed, a silent one dropped",
            run: keepalive,
        },
        Case {
            name:
                "irc: MOTD, LUSERS, VERSION, OPER, lowercase commands, 421 unknown, 461 no params",
            run: small_commands,
        },
    ]
}

/// Registers over a plain socket and returns the raw bytes up to the end of the 422 line.
fn raw_welcome(nick: &str, user: &str) -> Result<(TcpStream, Vec<u8>), String> {
    let mut s = TcpStream::connect(IRC_ADDR).ctx("connect to the IRC port")?;
    s.write_all(format!("NICK {nick}\r\nUSER {user} 0 * :The Real {nick}\r\n").as_bytes())
        .ctx("send NICK and USER")?;
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .ctx("timeout")?;
    let end = format!(" 422 {nick} :MOTD File is missing\r\n");
    let deadline = Instant::now() + STEP;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(&end) {
        ensure!(
            Instant::now() < deadline,
            "no complete 422 line within {STEP:?}; received {:?}",
            String::from_utf8_lossy(&got)
        );
        match s.read(&mut buf) {
            Ok(0) => {
                return Err(format!(
                    "closed during registration after {:?}",
                    String::from_utf8_lossy(&got)
                ))
            }
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    Ok((s, got))
}

/// - registration by NICK then USER over a raw socket: every line of the burst ends in CR LF
///   (no bare LF), and the burst is exactly 001 to 005, 251 to 255 and 422, with the user
///   name cut to 16 bytes in 001's prefix and N=1, U=0, R=1;
/// - with a native client, an unregistered IRC connection and a room of a third client, the
///   next registration counts N=4 (native and IRC members), U=1, R=2; LUSERS says the same;
/// - a client on `[::1]` is `nick!user@0::1`.
fn welcome_burst() -> CaseResult {
    start("history=0")?;
    let (_alice, raw) = raw_welcome("alice", "a_very_long_user_name")?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    ensure!(
        text.ends_with("\r\n"),
        "the burst does not end in CR LF: {text:?}"
    );
    let lines: Vec<&str> = text[..text.len() - 2].split("\r\n").collect();
    for l in &lines {
        ensure!(
            !l.contains('\n') && !l.contains('\r'),
            "a line not ended by CR LF in the burst: {l:?}"
        );
    }
    let want = welcome("alice", "a_very_long_user", 1, 0, 1);
    ensure!(
        lines == want,
        "the welcome burst is {lines:?}, expected {want:?}"
    );

    // A native member, a pending IRC connection, and a second room.
    let mut n = connect()?;
    say(&mut n, "/who")?;
    let ln = label(&n);
    expect_frame(&mut n, &format!("* 1 online in #lobby: {ln}"))?;
    let mut pending = User::connect()?;
    pending.send("NICK pending")?;
    pending.nick = "pending".into();
    pending.sync()?;
    let mut bob = register("bob")?;
    bob.ask(
        "JOIN #r",
        &[
            format!(":{} JOIN #r", bob.prefix()),
            num("353", "bob", "= #r :@bob"),
            num("366", "bob", "#r :End of /NAMES list."),
        ],
    )?;
    let mut carol = User::connect()?;
    carol.send("NICK carol")?;
    carol.send("USER carol 0 * :Carol")?;
    carol.nick = "carol".into();
    carol.user = "carol".into();
    carol.expect_lines(&welcome("carol", "carol", 4, 1, 2))?;
    carol.ask("LUSERS", &lusers("carol", 4, 1, 2))?;
    carol.sync()?;

    // Over IPv6 the host is the address, with a 0 in front of its leading colon.
    let mut six = User::connect_to("[::1]:6667")?;
    six.send("NICK six")?;
    six.send("USER six 0 * :Six")?;
    six.nick = "six".into();
    let mut want = welcome("six", "six", 5, 1, 2);
    want[0] = num(
        "001",
        "six",
        ":Welcome to the kchat IRC network six!six@0::1",
    );
    six.expect_lines(&want)?;
    six.sync()
}

/// - `CAP LS 302` before NICK: `:kchat CAP * LS :`; NICK and USER then welcome nobody
///   while the negotiation is open; `CAP REQ :multi-prefix sasl` is NAKed with the list,
///   `CAP LIST` is empty, `CAP BOGUS` is 410; `CAP END` brings the welcome;
/// - `CAP LS` and `CAP END` before NICK and USER: the welcome comes with USER;
/// - `PASS` before registration is ignored; after it, PASS and USER are 462.
fn cap_and_pass() -> CaseResult {
    start("history=0")?;
    let mut c = User::connect()?;
    c.ask("CAP LS 302", &[":kchat CAP * LS :"])?;
    c.send("PASS secret")?;
    c.send("NICK carol")?;
    c.send("USER carol 0 * :Carol")?;
    c.nick = "carol".into();
    c.user = "carol".into();
    // No welcome while CAP is open.
    c.sync()?;
    c.ask(
        "CAP REQ :multi-prefix sasl",
        &[":kchat CAP carol NAK :multi-prefix sasl"],
    )?;
    c.ask("CAP LIST", &[":kchat CAP carol LIST :"])?;
    c.ask(
        "CAP BOGUS",
        &[num("410", "carol", "BOGUS :Invalid CAP command")],
    )?;
    c.sync()?;
    c.ask("CAP END", &welcome("carol", "carol", 1, 0, 1))?;
    c.ask(
        "PASS again",
        &[num("462", "carol", ":You may not reregister")],
    )?;
    c.ask(
        "USER carol 0 * :Carol",
        &[num("462", "carol", ":You may not reregister")],
    )?;

    let mut d = User::connect()?;
    d.ask("CAP LS", &[":kchat CAP * LS :"])?;
    d.send("CAP END")?;
    d.sync()?;
    d.send("NICK dave")?;
    d.nick = "dave".into();
    d.user = "dave".into();
    d.ask("USER dave 0 * :Dave", &welcome("dave", "dave", 2, 0, 1))?;

    let mut e = User::connect()?;
    e.send("PASS whatever")?;
    e.send("NICK erin")?;
    e.nick = "erin".into();
    e.user = "erin".into();
    e.ask("USER erin 0 * :Erin", &welcome("erin", "erin", 3, 0, 1))?;
    c.sync()?;
    d.sync()?;
    e.sync()
}

/// Before registration:
/// - `NICK` alone is 431; invalid nicks (a digit or `-` first, a `.`, a non-ASCII byte, 33
///   bytes, `kchat-` and digits) are 432 with the nick (the non-ASCII one not compared);
/// - a nick held by a registered IRC client, a native client or a connection that only sent
///   NICK, in any case, is 433; the native side refuses `kchat-N` and IRC-held nicks too;
/// - `USER` with 3 parameters is 461; JOIN, PRIVMSG, WHOIS and unknown commands are 451
///   (`*` before a nick, the nick after);
/// - 32 bytes of letters, digits and specials, and `kchat-x1`, are valid nicks.
fn registration_errors() -> CaseResult {
    start("history=0")?;
    let mut n = connect()?;
    say(&mut n, "/nick bob")?;
    say(&mut n, "/who")?;
    expect_frame(&mut n, "* 1 online in #lobby: bob")?;
    let _alice = register("alice")?;

    let mut u = User::connect()?;
    u.ask("NICK", &[num("431", "*", ":No nickname given")])?;
    let long = format!("a{}", "b".repeat(32));
    for bad in ["1abc", "-abc", "a.b", long.as_str(), "kchat-123", "kchat-0"] {
        u.ask(
            &format!("NICK {bad}"),
            &[num("432", "*", &format!("{bad} :Erroneous nickname"))],
        )?;
    }
    // A non-ASCII byte: kchat may show it as it likes in the reply.
    u.send("NICK caf\u{e9}")?;
    let l = u.next("432")?;
    ensure!(
        l.starts_with(":kchat 432 * caf") && l.ends_with(" :Erroneous nickname"),
        "received {l:?} for NICK caf\u{e9}, expected 432 * caf... :Erroneous nickname"
    );
    for taken in ["alice", "ALICE", "bob", "BoB"] {
        u.ask(
            &format!("NICK {taken}"),
            &[num(
                "433",
                "*",
                &format!("{taken} :Nickname is already in use"),
            )],
        )?;
    }
    let mut p = User::connect()?;
    p.send("NICK dave")?;
    p.nick = "dave".into();
    p.sync()?;
    u.ask(
        "NICK Dave",
        &[num("433", "*", "Dave :Nickname is already in use")],
    )?;
    u.ask(
        "USER u 0 *",
        &[num("461", "*", "USER :Not enough parameters")],
    )?;
    for cmd in [
        "JOIN #x",
        "PRIVMSG alice :hi",
        "WHOIS alice",
        "FOO bar",
        "MODE alice",
    ] {
        u.ask(cmd, &[num("451", "*", ":You have not registered")])?;
    }
    p.ask("JOIN #x", &[num("451", "dave", ":You have not registered")])?;

    say(&mut n, "/nick kchat-77")?;
    expect_frame(&mut n, "! invalid nick: reserved")?;
    say(&mut n, "/nick alice")?;
    expect_frame(&mut n, "! nick alice is taken")?;
    say(&mut n, "/nick DAVE")?;
    expect_frame(&mut n, "! nick DAVE is taken")?;

    let nick32 = "[]\\`_^{|}-0123456789abcdefghijkl";
    ensure!(nick32.len() == 32, "test nick is {} bytes", nick32.len());
    u.send(&format!("NICK {nick32}"))?;
    u.nick = nick32.into();
    u.user = "u".into();
    u.ask("USER u 0 * :U", &welcome(nick32, "u", 3, 1, 1))?;
    let mut k = User::connect()?;
    k.send("NICK kchat-x1")?;
    k.nick = "kchat-x1".into();
    k.user = "k".into();
    k.ask("USER k 0 * :K", &welcome("kchat-x1", "k", 4, 1, 1))?;
    // dave's connection still holds its nick and may finish registering.
    p.user = "dave".into();
    p.ask("USER dave 0 * :Dave", &welcome("dave", "dave", 5, 0, 1))?;
    u.sync()
}

/// One connection of the registration-timeout case and what it has seen.
struct Pending {
    u: User,
    opened: Instant,
    error: bool,
    closed: Option<Duration>,
}

/// With `irc_ping=5`: a silent connection, one with only NICK, one stuck in CAP negotiation
/// after NICK and USER, and one that PINGs every second without registering each get
/// `ERROR :Closing Link: 127.0.0.1 (Registration timed out)` and are closed 4 to 16 s after
/// they connected. A registered client (answering kchat's PINGs) stays.
fn registration_timeout() -> CaseResult {
    start("history=0 irc_ping=5")?;
    let mut alice = register("alice")?;
    let mut conns = Vec::new();
    for kind in 0..4 {
        let mut u = User::connect()?;
        let opened = Instant::now();
        match kind {
            0 => {}
            1 => {
                u.send("NICK onlynick")?;
                u.nick = "onlynick".into();
            }
            2 => {
                u.ask("CAP LS 302", &[":kchat CAP * LS :"])?;
                u.send("NICK capper")?;
                u.send("USER capper 0 * :Capper")?;
                u.nick = "capper".into();
            }
            _ => u.nick = "pinger".into(),
        }
        conns.push(Pending {
            u,
            opened,
            error: false,
            closed: None,
        });
    }
    let want = format!("Closing Link: {HOST} (Registration timed out)");
    let deadline = Instant::now() + Duration::from_secs(25);
    let mut last_ping = Instant::now();
    let mut pings = 0;
    while conns.iter().any(|p| p.closed.is_none()) {
        ensure!(
            Instant::now() < deadline,
            "still open after 25 s: {:?}",
            conns
                .iter()
                .filter(|p| p.closed.is_none())
                .map(|p| p.u.nick.clone())
                .collect::<Vec<_>>()
        );
        if last_ping.elapsed() >= Duration::from_secs(1) && conns[3].closed.is_none() {
            pings += 1;
            // The connection may be closed under our feet: a failed send is no failure.
            let _ = conns[3].u.c.send_line(&format!("PING p{pings}"));
            last_ping = Instant::now();
        }
        for p in conns.iter_mut().filter(|p| p.closed.is_none()) {
            match p.u.c.recv(Duration::from_millis(50)) {
                Ok(Some(m)) => {
                    let l = String::from_utf8_lossy(m.line()).into_owned();
                    if is_error(&l, &want) && !p.error {
                        p.error = true;
                    } else {
                        ensure!(
                            p.u.nick == "pinger"
                                && l.starts_with(":kchat PONG kchat :p")
                                && !p.error,
                            "{} received {l:?}, expected \"ERROR :{want}\" then the close",
                            p.u.nick
                        );
                    }
                }
                Ok(None) => {}
                Err(_) => p.closed = Some(p.opened.elapsed()),
            }
        }
        // The registered client answers kchat's PINGs (auto-pong) and sees nothing else.
        if let Some(l) = alice.next_within(Duration::from_millis(10))? {
            return Err(format!("alice received {l:?}, expected nothing"));
        }
    }
    for p in &conns {
        let t = p.closed.unwrap_or_default();
        println!("# {} closed after {:.1} s", p.u.nick, t.as_secs_f64());
        ensure!(p.error, "{} was closed without \"ERROR :{want}\"", p.u.nick);
        ensure!(
            (Duration::from_secs(4)..=Duration::from_secs(16)).contains(&t),
            "{} was closed {:.1} s after it connected, expected 4 to 16 s with irc_ping=5",
            p.u.nick,
            t.as_secs_f64()
        );
    }
    alice.sync()
}

/// With `irc_ping=5`:
/// - `PING x` and `PING :two words` get `:kchat PONG kchat :...` (also before registration);
///   `PING` alone is 409; `PONG` draws nothing;
/// - in `#idle`, alice (never answering), carol (answering each PING with PONG) and bob
///   (the observer) wait: alice gets `PING :kchat` 4 to 12 s after her last line, then
///   `ERROR :Closing Link: 127.0.0.1 (Ping timeout: 10 seconds)` 4 to 12 s later and the
///   close; bob and carol see `QUIT :Ping timeout: 10 seconds` once (N is the silence that
///   dropped her: twice irc_ping); carol, PINGed at least twice, is still there and chats
///   with bob.
fn keepalive() -> CaseResult {
    start("history=0 irc_ping=5")?;
    let mut early = User::connect()?;
    early.ask("PING before", &[":kchat PONG kchat :before"])?;
    early.ask("PING", &[num("409", "*", ":No origin specified")])?;
    drop(early);

    let mut alice = register("alice")?;
    alice.ask("PING x", &[":kchat PONG kchat :x"])?;
    alice.ask("PING :two words", &[":kchat PONG kchat :two words"])?;
    alice.ask("PING", &[num("409", "alice", ":No origin specified")])?;
    alice.send("PONG :whatever")?;
    alice.sync()?;
    alice.c.set_auto_pong(false);
    let mut carol = register("carol")?;
    carol.c.set_auto_pong(false);
    let mut bob = register("bob")?;
    join_seen(&mut alice, "#idle", &["@alice"], &mut [])?;
    let alice_last = Instant::now();
    join_seen(&mut carol, "#idle", &["@alice", "carol"], &mut [&mut alice])?;
    join_seen(
        &mut bob,
        "#idle",
        &["@alice", "carol", "bob"],
        &mut [&mut alice, &mut carol],
    )?;

    let quit = format!(":{} QUIT :Ping timeout: 10 seconds", alice.prefix());
    let error = format!("Closing Link: {HOST} (Ping timeout: 10 seconds)");
    let (mut pinged, mut errored, mut alice_closed) = (None::<Instant>, false, false);
    let (mut carol_pings, mut carol_quit, mut bob_quit) = (0, false, false);
    let start_wait = Instant::now();
    while !(alice_closed && carol_quit && bob_quit && carol_pings >= 2) {
        ensure!(
            start_wait.elapsed() < Duration::from_secs(30),
            "after 30 s: alice pinged {}, errored {errored}, closed {alice_closed}; carol \
             pinged {carol_pings} times, saw the quit {carol_quit}; bob saw it {bob_quit}",
            pinged.is_some()
        );
        if !alice_closed {
            match alice.c.recv(Duration::from_millis(50)) {
                Ok(Some(m)) => {
                    let l = String::from_utf8_lossy(m.line()).into_owned();
                    if pinged.is_none() && is_server_ping(&l) {
                        let t = alice_last.elapsed();
                        ensure!(
                            (Duration::from_secs(4)..=Duration::from_secs(12)).contains(&t),
                            "alice was PINGed {:.1} s after her last line (irc_ping=5)",
                            t.as_secs_f64()
                        );
                        pinged = Some(Instant::now());
                    } else if let (Some(p), false, true) = (pinged, errored, is_error(&l, &error)) {
                        let t = p.elapsed();
                        ensure!(
                            (Duration::from_secs(4)..=Duration::from_secs(12)).contains(&t),
                            "alice got the ping timeout {:.1} s after the PING (irc_ping=5)",
                            t.as_secs_f64()
                        );
                        errored = true;
                    } else {
                        return Err(format!(
                            "alice received {l:?}; expected PING :kchat, then \"ERROR :{error}\""
                        ));
                    }
                }
                Ok(None) => {}
                Err(_) => {
                    ensure!(errored, "alice was closed without the ping timeout ERROR");
                    alice_closed = true;
                }
            }
        }
        if let Some(l) = carol.next_within(Duration::from_millis(50))? {
            if is_server_ping(&l) {
                carol_pings += 1;
                carol.send("PONG :kchat")?;
            } else if l == quit && !carol_quit {
                carol_quit = true;
            } else {
                return Err(format!(
                    "carol received {l:?}; expected PINGs and {quit:?} once"
                ));
            }
        }
        if let Some(l) = bob.next_within(Duration::from_millis(50))? {
            ensure!(
                l == quit && !bob_quit,
                "bob received {l:?}; expected {quit:?} once"
            );
            bob_quit = true;
        }
    }
    carol.sync()?;
    carol.send("PRIVMSG #idle :still here")?;
    bob.expect(&format!(":{} PRIVMSG #idle :still here", carol.prefix()))?;
    bob.sync()
}

/// - MOTD is 422, LUSERS the five counts, VERSION 351, OPER 491;
/// - commands in lowercase work (`ping`, `join`);
/// - INVITE, KNOCK and made-up commands are `421 me CMD :Unknown command`;
/// - JOIN, PART, TOPIC, KICK (also with a channel only), MODE, WHOIS, ISON and USERHOST
///   without parameters are `461 me CMD :Not enough parameters`.
fn small_commands() -> CaseResult {
    start("history=0")?;
    let mut a = register_as("alice", "al")?;
    a.ask("MOTD", &[num("422", "alice", ":MOTD File is missing")])?;
    a.ask("LUSERS", &lusers("alice", 1, 0, 1))?;
    a.ask("VERSION", &[num("351", "alice", "kchat-1.0 kchat :")])?;
    a.ask(
        "OPER root hunter2",
        &[num("491", "alice", ":No O-lines for your host")],
    )?;
    a.ask("ping lower", &[":kchat PONG kchat :lower"])?;
    a.ask(
        "join #low",
        &[
            format!(":{} JOIN #low", a.prefix()),
            num("353", "alice", "= #low :@alice"),
            num("366", "alice", "#low :End of /NAMES list."),
        ],
    )?;
    for cmd in ["INVITE", "KNOCK", "FOO", "XYZZY"] {
        a.ask(
            &format!("{cmd} bob #low"),
            &[num("421", "alice", &format!("{cmd} :Unknown command"))],
        )?;
    }
    for (line, cmd) in [
        ("JOIN", "JOIN"),
        ("PART", "PART"),
        ("TOPIC", "TOPIC"),
        ("KICK", "KICK"),
        ("KICK #low", "KICK"),
        ("MODE", "MODE"),
        ("WHOIS", "WHOIS"),
        ("ISON", "ISON"),
        ("USERHOST", "USERHOST"),
    ] {
        a.ask(
            line,
            &[num(
                "461",
                "alice",
                &format!("{cmd} :Not enough parameters"),
            )],
        )?;
    }
    a.sync()
}
