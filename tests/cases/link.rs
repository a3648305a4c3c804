//! Links (docs/link.md) from the kchat side: `/link SECRET NODE` with the module's
//! `link_secret` makes a connection a link, which gets a snapshot of the local members and
//! then every room message and event of theirs; a wrong secret, or links off
//! (`link_secret=0`, the default), gets `! link refused`; a client that sends a frame of the
//! link protocol gets `! not a link`. None of these is ever relayed, and the secret is never
//! logged. Remote members (frames from a link) are not implemented yet.

use std::{
    io::{BufRead, BufReader, Write},
    net::TcpStream,
    time::Duration,
};

use crate::{
    ensure,
    util::{connect, expect_frame, expect_silence, label, start, wait_clients, Context, STEP},
    Case, CaseResult,
};

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "links: /link is refused and never relayed or logged; link frames from a client get `! not a link`",
            run: link_refused,
        },
        Case {
            name: "links: a bridge with the secret gets =link, the members of every room, =synced, then every local message and event (native and IRC)",
            run: link_follows_local_members,
        },
    ]
}

/// - `/link SECRET NODE` gets `! link refused` and the connection is closed; the other
///   member of `#lobby` sees nothing, the disconnect line says `link refused`, and the
///   secret appears nowhere in the kernel log;
/// - a frame of the link protocol (`=msg ...`, `=join ...`) from a client gets
///   `! not a link` and is not relayed; `=D` is an ordinary message.
fn link_refused() -> CaseResult {
    let mut log = start("notices=0 history=0")?;
    let mut watcher = connect()?;
    let mut bridge = connect()?;
    let mut client = connect()?;
    wait_clients(3, STEP)?;
    let secret = "8675309123456789";
    bridge
        .send(format!("/link {secret} node-b").as_bytes())
        .ctx("send /link")?;
    let last = bridge.expect_close(STEP).ctx("the refused link")?;
    let last: Vec<String> = last
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    ensure!(
        last == ["! link refused"],
        "the refused link got {last:?}, expected [\"! link refused\"]"
    );
    let line = log.wait_contains(&format!("({}): link refused", label(&bridge)), STEP)?;
    ensure!(!line.contains(secret), "the secret was logged: {line}");
    for frame in ["=msg #lobby bob@node-b hello", "=join #lobby bob@node-b"] {
        client.send(frame.as_bytes()).ctx("send a link frame")?;
        expect_frame(&mut client, "! not a link")?;
    }
    expect_silence(&mut watcher, Duration::from_millis(300))?;
    client.send(b"=D").ctx("send =D")?;
    expect_frame(&mut watcher, &format!("{}: =D", label(&client)))?;
    let logged = log.records().join("\n");
    ensure!(
        !logged.contains(secret),
        "the secret appears in the kernel log"
    );
    Ok(())
}

/// - with `link_secret` set, a wrong secret is still refused;
/// - a link with the right secret gets `=link NODE`, one `=join` per member of each room
///   (`#lobby` first) and `=synced`, and is nobody's room-mate (`/who` does not list it);
/// - then, in order: a room message, a nick change, a move between rooms (part, then join),
///   a newcomer known by its address and its quit, an IRC client's join and channel message;
///   a private message between local members is not told;
/// - a frame from the link (remote members) is answered `! link: ...` and the link stays up.
fn link_follows_local_members() -> CaseResult {
    let secret = "8675309";
    let mut log = start(&format!("notices=0 history=0 link_secret={secret}"))?;
    let mut alice = connect()?;
    let mut bob = connect()?;
    wait_clients(2, STEP)?;
    alice.send(b"/nick alice").ctx("nick")?;
    bob.send(b"/nick bob").ctx("nick")?;
    bob.send(b"/join #rust").ctx("join")?;
    let _ = bob.recv_text(STEP).ctx("join answer")?;

    let mut wrong = connect()?;
    wrong.send(b"/link 8675308 node-b").ctx("send /link")?;
    let last = wrong.expect_close(STEP).ctx("the wrong secret")?;
    ensure!(
        last.len() == 1 && last[0] == b"! link refused",
        "a wrong secret got {last:?}"
    );

    let mut link = connect()?;
    link.send(format!("/link {secret} node-b").as_bytes())
        .ctx("send /link")?;
    for want in [
        "=link node-b",
        "=join #lobby alice",
        "=join #rust bob",
        "=synced",
    ] {
        expect_frame(&mut link, want)?;
    }
    log.wait_contains("Link Up: node node-b", STEP)?;
    wait_clients(2, STEP)?;
    alice.send(b"/who").ctx("who")?;
    expect_frame(&mut alice, "* 1 online in #lobby: alice")?;

    alice.send(b"hello everyone").ctx("say")?;
    expect_frame(&mut link, "=msg #lobby alice hello everyone")?;
    bob.send(b"/nick bobby").ctx("nick")?;
    expect_frame(&mut link, "=nick bob bobby")?;
    bob.send(b"/part").ctx("part")?;
    let _ = bob.recv_text(STEP).ctx("part answer")?;
    expect_frame(&mut link, "=part #rust bobby")?;
    expect_frame(&mut link, "=join #lobby bobby")?;
    let carol = connect()?;
    let carol_label = label(&carol);
    expect_frame(&mut link, &format!("=join #lobby {carol_label}"))?;
    drop(carol);
    expect_frame(&mut link, &format!("=quit {carol_label}"))?;
    alice.send(b"/msg bobby psst").ctx("msg")?;
    expect_frame(&mut bob, "alice (private): psst")?;

    let irc = TcpStream::connect("127.0.0.1:6667").ctx("IRC connect")?;
    irc.set_read_timeout(Some(STEP)).ctx("timeout")?;
    let mut irc_w = irc.try_clone().ctx("clone")?;
    irc_w
        .write_all(b"NICK dave\r\nUSER d 0 * :Dave\r\nJOIN #rust\r\nPRIVMSG #rust :yo\r\n")
        .ctx("IRC send")?;
    expect_frame(&mut link, "=join #rust dave")?;
    expect_frame(&mut link, "=msg #rust dave yo")?;
    let mut lines = BufReader::new(irc);
    let mut first = String::new();
    lines.read_line(&mut first).ctx("IRC welcome")?;
    ensure!(first.contains(" 001 dave "), "IRC client got {first:?}");

    link.send(b"=msg #lobby zed@node-c hi").ctx("link frame")?;
    expect_frame(&mut link, "! link: remote members are not supported yet")?;
    alice.send(b"still linked?").ctx("say")?;
    expect_frame(&mut link, "=msg #lobby alice still linked?")?;
    expect_silence(&mut link, Duration::from_millis(300))?;
    let logged = log.records().join("\n");
    ensure!(
        !logged.contains(secret),
        "the secret appears in the kernel log"
    );
    Ok(())
}
