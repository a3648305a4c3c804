//! IRC and native clients in the same chat: messages, private messages, `kchat-ID` nicks,
//! membership changes both ways, text a line cannot carry, and history.

use kchat_proto::Conn;

use super::{join_expect, join_line, native_id, num, read_names, register, same_names, User, HOST};
use crate::{
    ensure,
    util::{connect, expect_frame, expect_frames, label, recv_until, say, start, Context, STEP},
    Case, CaseResult,
};

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "irc cross: channel and private messages both ways, kchat-ID nicks, WHOIS/WHO/ISON of natives",
            run: cross_messages,
        },
        Case {
            name: "irc cross: native joins/parts/nick changes as JOIN/PART/NICK; IRC ones as * notices",
            run: cross_membership,
        },
        Case {
            name: "irc cross: native CR/LF/NUL as spaces, a 4,000-byte message split, history both ways",
            run: cross_text,
        },
    ]
}

/// Connects a native client and waits until kchat has it in `#lobby` (its `/who` answer
/// names it last); returns it, its label and its IRC nick `kchat-ID`.
fn native() -> Result<(Conn, String, String), String> {
    let mut n = connect()?;
    let l = label(&n);
    say(&mut n, "/who")?;
    recv_until(&mut n, "its /who answer", |f| {
        f.starts_with("* ") && f.contains(" online in #lobby: ") && f.ends_with(&l)
    })?;
    let id = native_id(&l)?;
    Ok((n, l, format!("kchat-{id}")))
}

/// `:NICK!native@127.0.0.1`.
fn native_prefix(nick: &str) -> String {
    format!("{nick}!native@{HOST}")
}

/// A native client n (no nick, shown to IRC as kchat-ID) and alice (IRC) in `#lobby`:
/// - alice's JOIN lists kchat-ID in the names; n sees `* alice joined`;
/// - alice's PRIVMSG and NOTICE to `#lobby` reach n as `alice: TEXT`; n's message reaches
///   alice as `:kchat-ID!native@127.0.0.1 PRIVMSG #lobby :TEXT`;
/// - `PRIVMSG kchat-ID` reaches n as `alice (private): TEXT`; n's `/msg alice` reaches her
///   as `PRIVMSG alice`;
/// - WHOIS, WHO, ISON and USERHOST know native members (user `native`);
/// - after n's `/nick bob` (alice gets the NICK line), the same by the nick `bob`, in any
///   case; n's `/who` lists alice.
fn cross_messages() -> CaseResult {
    start("history=0 notices=1")?;
    let (mut n, _, kn) = native()?;
    let mut alice = register("alice")?;
    join_expect(&mut alice, "#lobby", &[&kn, "alice"])?;
    expect_frame(&mut n, "* alice joined")?;

    alice.send("PRIVMSG #lobby :hello natives")?;
    expect_frame(&mut n, "alice: hello natives")?;
    alice.send("NOTICE #lobby :noticed")?;
    expect_frame(&mut n, "alice: noticed")?;
    say(&mut n, "hi irc")?;
    alice.expect(&format!(":{} PRIVMSG #lobby :hi irc", native_prefix(&kn)))?;
    alice.send(&format!("PRIVMSG {kn} :direct"))?;
    expect_frame(&mut n, "alice (private): direct")?;
    say(&mut n, "/msg alice psst")?;
    alice.expect(&format!(":{} PRIVMSG alice :psst", native_prefix(&kn)))?;

    alice.ask(
        &format!("WHOIS {kn}"),
        &[
            num("311", "alice", &format!("{kn} native {HOST} * :{kn}")),
            num("319", "alice", &format!("{kn} :#lobby")),
            num("312", "alice", &format!("{kn} kchat :kchat")),
            num("318", "alice", &format!("{kn} :End of /WHOIS list.")),
        ],
    )?;
    alice.send("WHO #lobby")?;
    alice.expect_unordered(&[
        num(
            "352",
            "alice",
            &format!("#lobby native {HOST} kchat {kn} H :0 {kn}"),
        ),
        num(
            "352",
            "alice",
            &format!("#lobby alice {HOST} kchat alice H :0 alice"),
        ),
    ])?;
    alice.expect(&num("315", "alice", "#lobby :End of /WHO list."))?;
    alice.ask(
        &format!("ISON {kn}"),
        &[num("303", "alice", &format!(":{kn}"))],
    )?;

    say(&mut n, "/nick bob")?;
    alice.expect(&format!(":{} NICK :bob", native_prefix(&kn)))?;
    say(&mut n, "as bob")?;
    alice.expect(&format!(":{} PRIVMSG #lobby :as bob", native_prefix("bob")))?;
    say(&mut n, "/msg alice hi")?;
    alice.expect(&format!(":{} PRIVMSG alice :hi", native_prefix("bob")))?;
    alice.send("PRIVMSG bob :hi back")?;
    expect_frame(&mut n, "alice (private): hi back")?;
    alice.send("PRIVMSG BOB :any case")?;
    expect_frame(&mut n, "alice (private): any case")?;
    alice.ask(
        &format!("PRIVMSG {kn} :old id"),
        &[num("401", "alice", &format!("{kn} :No such nick/channel"))],
    )?;
    alice.ask(
        "USERHOST bob",
        &[num("302", "alice", &format!(":bob=+native@{HOST}"))],
    )?;
    say(&mut n, "/who")?;
    expect_frame(&mut n, "* 2 online in #lobby: bob, alice")?;
    alice.sync()
}

/// alice (IRC) in `#lobby`, natives n1 and n2 arriving after her:
/// - a native's arrival is `JOIN #lobby` from `kchat-ID!native@127.0.0.1`; its `/join #x`
///   is `PART #lobby` there and, once alice is in `#x` too (the native created it: `@`),
///   its messages, `/nick`, and `/part` (`PART #x`, then `JOIN #lobby`) reach her;
/// - alice's NICK, PART, JOIN, TOPIC and QUIT reach the natives in her channel as
///   `* alice is now alice2`, `* alice2 left`, `* alice2 joined`, a `* ` notice with the
///   topic, and (for bob, another IRC client) `* bob left`;
/// - a native's disconnect reaches alice as `QUIT :Connection closed`.
fn cross_membership() -> CaseResult {
    start("history=0 notices=1")?;
    let mut alice = register("alice")?;
    join_expect(&mut alice, "#lobby", &["alice"])?;
    let (mut n1, l1, k1) = native()?;
    alice.expect(&format!(":{} JOIN #lobby", native_prefix(&k1)))?;
    let (mut n2, l2, k2) = native()?;
    alice.expect(&format!(":{} JOIN #lobby", native_prefix(&k2)))?;
    expect_frame(&mut n1, &format!("* {l2} joined"))?;

    say(&mut n2, "/join #x")?;
    expect_frame(&mut n2, &format!("* now in #x (1): {l2}"))?;
    alice.expect(&format!(":{} PART #lobby", native_prefix(&k2)))?;
    expect_frame(&mut n1, &format!("* {l2} left"))?;
    alice.send("JOIN #x")?;
    alice.expect(&join_line(&alice, "#x"))?;
    let names = read_names(&mut alice, "#x")?;
    same_names("alice", "#x", &names, &[&format!("@{k2}"), "alice"])?;
    expect_frame(&mut n2, "* alice joined")?;
    say(&mut n2, "in x")?;
    alice.expect(&format!(":{} PRIVMSG #x :in x", native_prefix(&k2)))?;
    alice.send("PRIVMSG #x :yes")?;
    expect_frame(&mut n2, "alice: yes")?;
    say(&mut n2, "/nick carl")?;
    alice.expect(&format!(":{} NICK :carl", native_prefix(&k2)))?;
    alice.sync()?;
    say(&mut n2, "/part")?;
    alice.expect_lines(&[
        format!(":{} PART #x", native_prefix("carl")),
        format!(":{} JOIN #lobby", native_prefix("carl")),
    ])?;
    recv_until(&mut n2, "its roster of #lobby", |f| {
        f.starts_with("* now in #lobby (")
    })?;
    expect_frame(&mut n1, "* carl joined")?;

    alice.ask(
        "NICK alice2",
        &[format!(":{} NICK :alice2", alice.prefix())],
    )?;
    alice.nick = "alice2".into();
    for n in [&mut n1, &mut n2] {
        expect_frame(n, "* alice is now alice2")?;
    }
    alice.ask("PART #x", &[format!(":{} PART #x", alice.prefix())])?;
    alice.ask("PART #lobby", &[format!(":{} PART #lobby", alice.prefix())])?;
    for n in [&mut n1, &mut n2] {
        expect_frame(n, "* alice2 left")?;
    }
    alice.send("JOIN #lobby")?;
    alice.expect(&join_line(&alice, "#lobby"))?;
    let names = read_names(&mut alice, "#lobby")?;
    same_names("alice2", "#lobby", &names, &[&k1, "carl", "alice2"])?;
    for n in [&mut n1, &mut n2] {
        expect_frame(n, "* alice2 joined")?;
    }
    alice.ask(
        "TOPIC #lobby :native topic",
        &[format!(":{} TOPIC #lobby :native topic", alice.prefix())],
    )?;
    for n in [&mut n1, &mut n2] {
        let f = n.recv_text(STEP).ctx("the topic notice")?;
        ensure!(
            f.starts_with("* ") && f.contains("alice2") && f.contains("native topic"),
            "a native received {f:?} for alice2's topic, expected a * notice naming both"
        );
    }

    // #lobby has a topic now: bob's join shows it (332, 333) before the names.
    let mut bob = register("bob")?;
    bob.send("JOIN #lobby")?;
    let echo = join_line(&bob, "#lobby");
    bob.expect(&echo)?;
    bob.expect(":kchat 332 bob #lobby :native topic")?;
    let setter = bob.next("333")?;
    ensure!(
        setter.starts_with(":kchat 333 bob #lobby alice2 "),
        "bob received {setter:?}, expected 333 naming alice2"
    );
    let names = read_names(&mut bob, "#lobby")?;
    same_names("bob", "#lobby", &names, &[&k1, "carl", "alice2", "bob"])?;
    alice.expect(&join_line(&bob, "#lobby"))?;
    for n in [&mut n1, &mut n2] {
        expect_frame(n, "* bob joined")?;
    }
    bob.send("QUIT :bye")?;
    bob.expect_closing_link("Quit: bye")?;
    alice.expect(&format!(":{} QUIT :Quit: bye", bob.prefix()))?;
    for n in [&mut n1, &mut n2] {
        expect_frame(n, "* bob left")?;
    }

    drop(n1);
    alice.expect(&format!(":{} QUIT :Connection closed", native_prefix(&k1)))?;
    expect_frame(&mut n2, &format!("* {l1} left"))?;
    alice.sync()
}

/// With `history=5`, native n1 and alice (IRC) in `#lobby`:
/// - n1's message with CR LF, LF and NUL inside reaches alice as one line, each of those
///   bytes a space;
/// - n1's 4,000-byte message reaches alice as several PRIVMSG lines, each at most 512 bytes
///   with CR LF, whose texts put together are the message;
/// - a native arriving later is replayed those two and alice's message exactly as natives
///   got them; an IRC client joining later gets the same three as PRIVMSG lines (the long
///   one split again) after its 366.
fn cross_text() -> CaseResult {
    start("history=5 notices=0")?;
    let (mut n1, l1, k1) = native()?;
    let mut alice = register("alice")?;
    join_expect(&mut alice, "#lobby", &[&k1, "alice"])?;
    let from = native_prefix(&k1);

    let odd = "one\r\ntwo\nthree\0four";
    say(&mut n1, odd)?;
    let odd_line = format!(":{from} PRIVMSG #lobby :one  two three four");
    alice.expect(&odd_line)?;
    let long: String = (0..4000)
        .map(|i| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[i % 36]))
        .collect();
    say(&mut n1, &long)?;
    expect_split(&mut alice, &from, &long)?;
    alice.send("PRIVMSG #lobby :from irc")?;
    expect_frame(&mut n1, "alice: from irc")?;
    alice.sync()?;

    let mut n2 = connect()?;
    expect_frames(
        &mut n2,
        &[
            "* last 3 messages of #lobby:".to_string(),
            format!("{l1}: {odd}"),
            format!("{l1}: {long}"),
            "alice: from irc".to_string(),
        ],
    )?;
    let mut bob = register("bob")?;
    bob.send("JOIN #lobby")?;
    bob.expect(&join_line(&bob, "#lobby"))?;
    let names = read_names(&mut bob, "#lobby")?;
    ensure!(
        names.len() == 4 && names.contains(&"alice".to_string()),
        "bob's names of #lobby: {names:?}"
    );
    bob.expect(&odd_line)?;
    expect_split(&mut bob, &from, &long)?;
    bob.expect(&format!(":{} PRIVMSG #lobby :from irc", alice.prefix()))?;
    bob.sync()
}

/// Reads PRIVMSG lines from `from` to `#lobby` until their texts make up `text`; each must
/// fit in 512 bytes with CR LF, and there must be more than one.
fn expect_split(u: &mut User, from: &str, text: &str) -> CaseResult {
    let head = format!(":{from} PRIVMSG #lobby :");
    let mut got = String::new();
    let mut lines = 0;
    while got.len() < text.len() {
        let l = u.next("the rest of the long message")?;
        let part = l.strip_prefix(&head).ok_or_else(|| {
            format!(
                "{} received {l:?}, expected {head}... (after {} of {} bytes)",
                u.nick,
                got.len(),
                text.len()
            )
        })?;
        ensure!(
            l.len() + 2 <= 512,
            "{}: a line of {} bytes with CR LF",
            u.nick,
            l.len() + 2
        );
        got.push_str(part);
        lines += 1;
    }
    ensure!(
        got == text,
        "{}: the {lines} lines put together differ from the message ({} bytes, expected {})",
        u.nick,
        got.len(),
        text.len()
    );
    ensure!(lines > 1, "a 4,000-byte message came in one line");
    Ok(())
}
