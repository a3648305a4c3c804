//! IRC messages and users: PRIVMSG and NOTICE, AWAY, ISON, USERHOST, WHO, WHOIS, user MODE,
//! NICK changes and QUIT.

use std::time::Duration;

use super::{join_seen, names_expect, num, register, register_as, HOST};
use crate::{ensure, util::start, Case, CaseResult};

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "irc: PRIVMSG/NOTICE to channels, nicks and lists; 411, 412, 401, 403, 404; NOTICE never errs",
            run: privmsg,
        },
        Case {
            name: "irc: AWAY 306/305 and 301 on PRIVMSG (not NOTICE or channels); ISON 303; USERHOST 302",
            run: away_ison_userhost,
        },
        Case {
            name: "irc: WHO 352/315 (H/G, @), WHOIS 311/319/312/301/318, 401 then 318",
            run: who_whois,
        },
        Case {
            name: "irc: user MODE: 221, +i/-i echoed, 502 for others, 401",
            run: user_modes,
        },
        Case {
            name: "irc: NICK after registration reaches each member sharing a channel once; errors",
            run: nick_change,
        },
        Case {
            name: "irc: QUIT: ERROR to the quitter, QUIT once to members; closed socket: Connection closed",
            run: quit,
        },
    ]
}

/// alice and bob in `#m`, carol outside:
/// - a channel PRIVMSG or NOTICE reaches bob (not alice: no echo), the channel as first
///   spelled; a one-word text without `:` arrives as a trailing parameter; colons and
///   spaces in the text are kept;
/// - a private PRIVMSG or NOTICE reaches bob as `PRIVMSG bob` whatever the case used;
/// - `PRIVMSG #m,bob,carol` reaches each target in order; `PRIVMSG #m,nobody` delivers to
///   #m and draws 401 for nobody;
/// - errors: no target 411, no text 412, no such nick 401, no such channel 403, not a
///   member 404; NOTICE draws none of them.
fn privmsg() -> CaseResult {
    start("history=0")?;
    let mut alice = register("alice")?;
    let mut bob = register("bob")?;
    let mut carol = register("carol")?;
    join_seen(&mut alice, "#m", &["@alice"], &mut [])?;
    join_seen(&mut bob, "#m", &["@alice", "bob"], &mut [&mut alice])?;
    let from = alice.prefix();
    for (line, want) in [
        (
            "PRIVMSG #m :hello there",
            format!(":{from} PRIVMSG #m :hello there"),
        ),
        (
            "NOTICE #m :a notice",
            format!(":{from} NOTICE #m :a notice"),
        ),
        (
            "PRIVMSG #M :any case",
            format!(":{from} PRIVMSG #m :any case"),
        ),
        ("PRIVMSG #m word", format!(":{from} PRIVMSG #m :word")),
        (
            "PRIVMSG #m ::) smile: yes",
            format!(":{from} PRIVMSG #m ::) smile: yes"),
        ),
        ("PRIVMSG bob :psst", format!(":{from} PRIVMSG bob :psst")),
        ("PRIVMSG BOB :upper", format!(":{from} PRIVMSG bob :upper")),
        ("NOTICE bob :noted", format!(":{from} NOTICE bob :noted")),
    ] {
        alice.send(line)?;
        bob.expect(&want)
            .map_err(|e| format!("after alice's {line:?}: {e}"))?;
    }
    alice.sync()?;
    alice.send("PRIVMSG #m,bob,carol :to all")?;
    bob.expect_lines(&[
        format!(":{from} PRIVMSG #m :to all"),
        format!(":{from} PRIVMSG bob :to all"),
    ])?;
    carol.expect(&format!(":{from} PRIVMSG carol :to all"))?;
    alice.ask(
        "PRIVMSG #m,nobody :half",
        &[num("401", "alice", "nobody :No such nick/channel")],
    )?;
    bob.expect(&format!(":{from} PRIVMSG #m :half"))?;

    alice.ask(
        "PRIVMSG",
        &[num("411", "alice", ":No recipient given (PRIVMSG)")],
    )?;
    alice.ask("PRIVMSG bob", &[num("412", "alice", ":No text to send")])?;
    alice.ask(
        "PRIVMSG nobody :x",
        &[num("401", "alice", "nobody :No such nick/channel")],
    )?;
    alice.ask(
        "PRIVMSG #nochan :x",
        &[num("403", "alice", "#nochan :No such channel")],
    )?;
    carol.ask(
        "PRIVMSG #m :let me in",
        &[num("404", "carol", "#m :Cannot send to channel")],
    )?;
    for line in [
        "NOTICE #m :x",
        "NOTICE nobody :x",
        "NOTICE #nochan :x",
        "NOTICE",
        "NOTICE bob",
    ] {
        carol.send(line)?;
    }
    carol.sync()?;
    bob.sync()?;
    alice.sync()
}

/// - `AWAY :gone fishing`: 306; a PRIVMSG to bob draws `301 me bob :gone fishing` (bob still
///   gets it), a NOTICE or a channel message does not;
/// - ISON answers the nicks present, as kchat spells them; USERHOST gives `-` for the away
///   one and `+` for the others, nicks present only;
/// - the away text is cut to 200 bytes; `AWAY` alone: 305, and no more 301.
fn away_ison_userhost() -> CaseResult {
    start("history=0")?;
    let mut alice = register("alice")?;
    let mut bob = register("bob")?;
    let _carol = register("carol")?;
    join_seen(&mut alice, "#a", &["@alice"], &mut [])?;
    join_seen(&mut bob, "#a", &["@alice", "bob"], &mut [&mut alice])?;
    bob.ask(
        "AWAY :gone fishing",
        &[num("306", "bob", ":You have been marked as being away")],
    )?;
    let from = alice.prefix();
    alice.ask(
        "PRIVMSG bob :hi",
        &[num("301", "alice", "bob :gone fishing")],
    )?;
    bob.expect(&format!(":{from} PRIVMSG bob :hi"))?;
    alice.send("NOTICE bob :hi")?;
    bob.expect(&format!(":{from} NOTICE bob :hi"))?;
    alice.send("PRIVMSG #a :all")?;
    bob.expect(&format!(":{from} PRIVMSG #a :all"))?;
    alice.sync()?;

    alice.ask(
        "ISON bob nobody CAROL",
        &[num("303", "alice", ":bob carol")],
    )?;
    alice.ask("ISON nobody", &[num("303", "alice", ":")])?;
    alice.ask(
        "USERHOST bob carol nobody",
        &[num(
            "302",
            "alice",
            &format!(":bob=-bob@{HOST} carol=+carol@{HOST}"),
        )],
    )?;

    bob.ask(
        &format!("AWAY :{}", "z".repeat(250)),
        &[num("306", "bob", ":You have been marked as being away")],
    )?;
    alice.ask(
        "PRIVMSG bob :again",
        &[num("301", "alice", &format!("bob :{}", "z".repeat(200)))],
    )?;
    bob.expect(&format!(":{from} PRIVMSG bob :again"))?;
    bob.ask(
        "AWAY",
        &[num("305", "bob", ":You are no longer marked as being away")],
    )?;
    alice.send("PRIVMSG bob :back?")?;
    bob.expect(&format!(":{from} PRIVMSG bob :back?"))?;
    alice.sync()?;
    alice.ask(
        "USERHOST bob",
        &[num("302", "alice", &format!(":bob=+bob@{HOST}"))],
    )?;
    bob.sync()
}

/// `MODE alice`: `221 alice +`; `+i` and `-i` are echoed `:alice!alice@127.0.0.1 MODE alice
/// :+i` and change 221; another user's modes: 502; an unknown nick: 401.
fn user_modes() -> CaseResult {
    start("history=0")?;
    let mut alice = register("alice")?;
    let _bob = register("bob")?;
    alice.ask("MODE alice", &[num("221", "alice", "+")])?;
    alice.ask(
        "MODE alice +i",
        &[format!(":{} MODE alice :+i", alice.prefix())],
    )?;
    alice.ask("MODE alice", &[num("221", "alice", "+i")])?;
    alice.ask(
        "MODE alice -i",
        &[format!(":{} MODE alice :-i", alice.prefix())],
    )?;
    alice.ask("MODE alice", &[num("221", "alice", "+")])?;
    let other = num("502", "alice", ":Can't change mode for other users");
    alice.ask("MODE bob", &[&other])?;
    alice.ask("MODE bob +i", &[&other])?;
    alice.ask(
        "MODE nobody",
        &[num("401", "alice", "nobody :No such nick/channel")],
    )?;
    alice.sync()
}

/// alice and bob share `#n1` and `#n2`, carol `#n1` only, dave is in `#n3` alone:
/// - `NICK alice2`: alice, bob and carol each get `:alice!alice@127.0.0.1 NICK :alice2`
///   once, dave nothing; messages to alice2 arrive, to alice are 401; the old nick is free;
/// - a case-only change of one's own nick works; the new prefix is used from then on;
/// - taken 433, invalid or reserved 432, missing 431 (with the current nick as `me`).
fn nick_change() -> CaseResult {
    start("history=0")?;
    let mut alice = register("alice")?;
    let mut bob = register("bob")?;
    let mut carol = register("carol")?;
    let mut dave = register("dave")?;
    join_seen(&mut alice, "#n1", &["@alice"], &mut [])?;
    join_seen(&mut alice, "#n2", &["@alice"], &mut [])?;
    join_seen(&mut bob, "#n1", &["@alice", "bob"], &mut [&mut alice])?;
    join_seen(&mut bob, "#n2", &["@alice", "bob"], &mut [&mut alice])?;
    join_seen(
        &mut carol,
        "#n1",
        &["@alice", "bob", "carol"],
        &mut [&mut alice, &mut bob],
    )?;
    join_seen(&mut dave, "#n3", &["@dave"], &mut [])?;

    let change = format!(":{} NICK :alice2", alice.prefix());
    alice.ask("NICK alice2", &[&change])?;
    alice.nick = "alice2".into();
    bob.expect(&change)?;
    carol.expect(&change)?;
    for u in [&mut alice, &mut bob, &mut carol, &mut dave] {
        u.sync()?;
    }
    bob.send("PRIVMSG alice2 :found you")?;
    alice.expect(&format!(":{} PRIVMSG alice2 :found you", bob.prefix()))?;
    bob.ask(
        "PRIVMSG alice :old",
        &[num("401", "bob", "alice :No such nick/channel")],
    )?;
    let newcomer = register("alice")?;
    drop(newcomer);

    let case = format!(":{} NICK :Alice2", alice.prefix());
    alice.ask("NICK Alice2", &[&case])?;
    alice.nick = "Alice2".into();
    bob.expect(&case)?;
    carol.expect(&case)?;
    alice.send("PRIVMSG #n1 :new prefix")?;
    let said = format!(":{} PRIVMSG #n1 :new prefix", alice.prefix());
    bob.expect(&said)?;
    carol.expect(&said)?;
    // A member of one channel gets its own change once too (and the others once each).
    let single = format!(":{} NICK :carol2", carol.prefix());
    carol.ask("NICK carol2", &[&single])?;
    carol.nick = "carol2".into();
    carol.sync()?;
    alice.expect(&single)?;
    bob.expect(&single)?;

    alice.ask(
        "NICK bob",
        &[num("433", "Alice2", "bob :Nickname is already in use")],
    )?;
    alice.ask("NICK 9x", &[num("432", "Alice2", "9x :Erroneous nickname")])?;
    alice.ask(
        "NICK kchat-5",
        &[num("432", "Alice2", "kchat-5 :Erroneous nickname")],
    )?;
    alice.ask("NICK", &[num("431", "Alice2", ":No nickname given")])?;
    for u in [&mut alice, &mut bob, &mut carol, &mut dave] {
        u.sync()?;
    }
    Ok(())
}

/// alice, bob and carol in `#q`, alice and bob in `#q2` too:
/// - bob's `QUIT :see you`: he gets `ERROR :Closing Link: 127.0.0.1 (Quit: see you)` and the
///   close; alice (two shared channels) and carol each get `QUIT :Quit: see you` once;
/// - carol closes her socket: alice gets `QUIT :Connection closed`;
/// - both are gone from `#q`, and their nicks are free again.
fn quit() -> CaseResult {
    start("history=0")?;
    let mut alice = register("alice")?;
    let mut bob = register("bob")?;
    let mut carol = register("carol")?;
    join_seen(&mut alice, "#q", &["@alice"], &mut [])?;
    join_seen(&mut alice, "#q2", &["@alice"], &mut [])?;
    join_seen(&mut bob, "#q", &["@alice", "bob"], &mut [&mut alice])?;
    join_seen(&mut bob, "#q2", &["@alice", "bob"], &mut [&mut alice])?;
    join_seen(
        &mut carol,
        "#q",
        &["@alice", "bob", "carol"],
        &mut [&mut alice, &mut bob],
    )?;

    bob.send("QUIT :see you")?;
    bob.expect_closing_link("Quit: see you")?;
    let q = format!(":{} QUIT :Quit: see you", bob.prefix());
    alice.expect(&q)?;
    carol.expect(&q)?;
    alice.sync()?;
    carol.sync()?;

    let closed = format!(":{} QUIT :Connection closed", carol.prefix());
    drop(carol);
    alice.expect(&closed)?;
    alice.sync()?;
    names_expect(&mut alice, "#q", &["@alice"])?;
    let mut again = register("bob")?;
    let _carol = register("carol")?;
    // Nothing of the old connections reaches the new ones.
    let quiet = again.next_within(Duration::from_millis(200))?;
    ensure!(quiet.is_none(), "the new bob received {quiet:?}");
    again.sync()?;
    alice.sync()
}

/// With alice operator of `#w` and `#x`, bob (user name `bobu`) in `#w` and away:
/// - `WHO #w`: a 352 per member (`H@` for alice, `G` for bob), then 315;
/// - `WHO bob`: his 352 (channel field `*` or `#w`) and 315; `WHO nobody`, `WHO #nochan`:
///   315 alone;
/// - `WHOIS bob`: 311, 319 `#w`, 312, 301 with his away text, 318; `WHOIS alice`: 319 lists
///   `@#w` and `@#x`; carol (in no channel) has no 319; `WHOIS nobody`: 401 then 318.
fn who_whois() -> CaseResult {
    start("history=0")?;
    let mut alice = register("alice")?;
    let mut bob = register_as("bob", "bobu")?;
    let mut carol = register("carol")?;
    join_seen(&mut alice, "#w", &["@alice"], &mut [])?;
    join_seen(&mut alice, "#x", &["@alice"], &mut [])?;
    join_seen(&mut bob, "#w", &["@alice", "bob"], &mut [&mut alice])?;
    bob.ask(
        "AWAY :lunch",
        &[num("306", "bob", ":You have been marked as being away")],
    )?;

    alice.send("WHO #w")?;
    alice.expect_unordered(&[
        num(
            "352",
            "alice",
            &format!("#w alice {HOST} kchat alice H@ :0 alice"),
        ),
        num(
            "352",
            "alice",
            &format!("#w bobu {HOST} kchat bob G :0 bob"),
        ),
    ])?;
    alice.expect(&num("315", "alice", "#w :End of /WHO list."))?;
    alice.send("WHO bob")?;
    let l = alice.next("352 for bob")?;
    let ok = [
        format!("* bobu {HOST} kchat bob G :0 bob"),
        format!("#w bobu {HOST} kchat bob G :0 bob"),
    ]
    .iter()
    .any(|rest| l == num("352", "alice", rest));
    ensure!(
        ok,
        "alice received {l:?}, expected {:?} (or with #w for *)",
        num("352", "alice", &format!("* bobu {HOST} kchat bob G :0 bob"))
    );
    alice.expect(&num("315", "alice", "bob :End of /WHO list."))?;
    alice.ask(
        "WHO nobody",
        &[num("315", "alice", "nobody :End of /WHO list.")],
    )?;
    alice.ask(
        "WHO #nochan",
        &[num("315", "alice", "#nochan :End of /WHO list.")],
    )?;

    alice.ask(
        "WHOIS bob",
        &[
            num("311", "alice", &format!("bob bobu {HOST} * :bob")),
            num("319", "alice", "bob :#w"),
            num("312", "alice", "bob kchat :kchat"),
            num("301", "alice", "bob :lunch"),
            num("318", "alice", "bob :End of /WHOIS list."),
        ],
    )?;
    bob.ask(
        "WHOIS alice",
        &[num("311", "bob", &format!("alice alice {HOST} * :alice"))],
    )?;
    let l = bob.next("319")?;
    let chans = l
        .strip_prefix(&num("319", "bob", "alice :"))
        .ok_or_else(|| format!("bob received {l:?}, expected 319 for alice"))?;
    let mut chans: Vec<&str> = chans.split(' ').collect();
    chans.sort_unstable();
    ensure!(
        chans == ["@#w", "@#x"],
        "319 lists {chans:?} for alice, expected @#w and @#x"
    );
    bob.expect_lines(&[
        num("312", "bob", "alice kchat :kchat"),
        num("318", "bob", "alice :End of /WHOIS list."),
    ])?;
    bob.ask(
        "WHOIS carol",
        &[
            num("311", "bob", &format!("carol carol {HOST} * :carol")),
            num("312", "bob", "carol kchat :kchat"),
            num("318", "bob", "carol :End of /WHOIS list."),
        ],
    )?;
    carol.ask(
        "WHOIS nobody",
        &[
            num("401", "carol", "nobody :No such nick/channel"),
            num("318", "carol", "nobody :End of /WHOIS list."),
        ],
    )?;
    alice.sync()?;
    bob.sync()?;
    carol.sync()
}
