//! IRC channels: JOIN (lists, topics, names, limits), PART, TOPIC, NAMES, LIST, channel MODE
//! and KICK.

use super::{
    check_time, join_line, join_seen, names_expect, num, read_names, register, same_names, User,
};
use crate::{
    ensure, module,
    util::{room_names, start, Context},
    Case, CaseResult,
};

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "irc: JOIN #a,#b: echo, 332/333, 353 (many lines), 366 in order; again; JOIN 0",
            run: join_basics,
        },
        Case {
            name: "irc: JOIN refused: 403 bad names, 405 over CHANLIMIT=20 and over max_rooms=3",
            run: join_limits,
        },
        Case {
            name: "irc: PART with and without reason, lists, 442, 403; empty channels go, #lobby stays",
            run: part,
        },
        Case {
            name: "irc: TOPIC 331/332/333, 482 under +t, broadcast, cut to 300; NAMES; LIST",
            run: topic_names_list,
        },
        Case {
            name: "irc: channel MODE: 324/329, 368, +o/-o by op, 482, 441, 401, 472, 403, +t/-t/-n",
            run: channel_modes,
        },
        Case {
            name: "irc: KICK: seen by all, victim out, default reason; 441, 442, 482",
            run: kick,
        },
    ]
}

/// Expects the 333 line for `chan` to `me`: setter `setter` (its nick, or its full prefix)
/// and a time near now.
fn expect_333(u: &mut User, chan: &str, setter: &User) -> CaseResult {
    let me = u.nick.clone();
    let l = u.next("333")?;
    let head = num("333", &me, &format!("{chan} "));
    let rest = l
        .strip_prefix(&head)
        .ok_or_else(|| format!("{me} received {l:?}, expected {head}SETTER TIME"))?;
    let (who, ts) = rest
        .split_once(' ')
        .ok_or_else(|| format!("{me}: bad 333 line {l:?}"))?;
    ensure!(
        who == setter.nick || who == setter.prefix(),
        "{me}: 333 names {who:?} as the setter, expected {} or {}",
        setter.nick,
        setter.prefix()
    );
    check_time("333", ts)
}

/// Expects `324 me chan MODES` and `329 me chan CREATED`.
fn expect_modes(u: &mut User, chan: &str, modes: &str) -> CaseResult {
    let me = u.nick.clone();
    u.ask(
        &format!("MODE {chan}"),
        &[num("324", &me, &format!("{chan} {modes}"))],
    )?;
    let l = u.next("329")?;
    let head = num("329", &me, &format!("{chan} "));
    let ts = l
        .strip_prefix(&head)
        .ok_or_else(|| format!("{me} received {l:?}, expected {head}CREATED"))?;
    check_time("329", ts)
}

/// - `JOIN #a,#b` by alice: for each, the echo, `353 = #c :@alice`, 366, in that order;
/// - bob's `JOIN #a,#B,#c`: #B is #b as first spelled; names list both, alice with `@`;
///   alice sees his two joins;
/// - a JOIN of a channel one is in draws nothing;
/// - with a topic set, a joiner gets 332 and 333 between the echo and the names;
/// - 60 members with 32-byte nicks: the 60th gets its names on several 353 lines, each
///   under 512 bytes, together exactly the 60;
/// - `JOIN 0` parts every channel (seen by each channel's members), and a channel it
///   empties is gone.
fn join_basics() -> CaseResult {
    start("history=0")?;
    let mut alice = register("alice")?;
    let mut bob = register("bob")?;
    let mut carol = register("carol")?;
    alice.ask(
        "JOIN #a,#b",
        &[
            join_line(&alice, "#a"),
            num("353", "alice", "= #a :@alice"),
            num("366", "alice", "#a :End of /NAMES list."),
            join_line(&alice, "#b"),
            num("353", "alice", "= #b :@alice"),
            num("366", "alice", "#b :End of /NAMES list."),
        ],
    )?;
    bob.send("JOIN #a,#B,#c")?;
    for chan in ["#a", "#b"] {
        bob.expect(&join_line(&bob, chan))?;
        let names = read_names(&mut bob, chan)?;
        same_names("bob", chan, &names, &["@alice", "bob"])?;
    }
    bob.expect_lines(&[
        join_line(&bob, "#c"),
        num("353", "bob", "= #c :@bob"),
        num("366", "bob", "#c :End of /NAMES list."),
    ])?;
    alice.expect_lines(&[join_line(&bob, "#a"), join_line(&bob, "#b")])?;
    bob.send("JOIN #a")?;
    bob.sync()?;
    alice.sync()?;

    let topic = format!(":{} TOPIC #a :about a", alice.prefix());
    alice.ask("TOPIC #a :about a", &[&topic])?;
    bob.expect(&topic)?;
    carol.send("JOIN #a")?;
    carol.expect(&join_line(&carol, "#a"))?;
    carol.expect(&num("332", "carol", "#a :about a"))?;
    expect_333(&mut carol, "#a", &alice)?;
    let names = read_names(&mut carol, "#a")?;
    same_names("carol", "#a", &names, &["@alice", "bob", "carol"])?;
    alice.expect(&join_line(&carol, "#a"))?;
    bob.expect(&join_line(&carol, "#a"))?;

    // Many members: the names take several lines.
    let mut crowd = Vec::new();
    let mut nicks = Vec::new();
    for i in 0..60 {
        let nick = format!("m{i:02}{}", "x".repeat(29));
        let mut u = register(&nick)?;
        u.send("JOIN #many")?;
        u.expect(&join_line(&u, "#many"))?;
        nicks.push(if i == 0 { format!("@{nick}") } else { nick });
        let names = read_names(&mut u, "#many")?;
        let want: Vec<&str> = nicks.iter().map(String::as_str).collect();
        let who = u.nick.clone();
        same_names(&who, "#many", &names, &want)?;
        if i == 59 {
            // Its names came in several lines: count them again, by NAMES.
            u.send("NAMES #many")?;
            let mut lines = 0;
            loop {
                let l = u.next("353 or 366")?;
                if l.contains(" 366 ") {
                    break;
                }
                lines += 1;
            }
            ensure!(
                lines >= 3,
                "60 names of 32 bytes came in {lines} 353 lines (each under 512 bytes?)"
            );
        }
        crowd.push(u);
    }
    drop(crowd);

    bob.send("JOIN 0")?;
    bob.expect_unordered(&[
        format!(":{} PART #a", bob.prefix()),
        format!(":{} PART #b", bob.prefix()),
        format!(":{} PART #c", bob.prefix()),
    ])?;
    alice.expect_unordered(&[
        format!(":{} PART #a", bob.prefix()),
        format!(":{} PART #b", bob.prefix()),
    ])?;
    carol.expect(&format!(":{} PART #a", bob.prefix()))?;
    bob.sync()?;
    alice.sync()?;
    carol.sync()?;
    let rooms = room_names()?;
    ensure!(
        !rooms.iter().any(|r| r == "#c"),
        "#c is still listed after its only member left: {rooms:?}"
    );
    Ok(())
}

/// - names without `#`, `#` alone, with `!`, a second `#`, a non-ASCII byte or 33 bytes after
///   the `#` are `403 me NAME :No such channel`; in a list, the valid ones are joined;
/// - `max_rooms=3`: a third room is `405 me #c :Too many channels exist (max_rooms=3)`, an
///   existing one can be joined, and once a room empties a new one can be made;
/// - with the default max_rooms, the 21st channel is
///   `405 me #c :You have joined too many channels`; after a PART it can be joined.
fn join_limits() -> CaseResult {
    start("history=0 max_rooms=3")?;
    let mut alice = register("alice")?;
    let mut bob = register("bob")?;
    let long = format!("#{}", "x".repeat(33));
    for bad in ["nohash", "#", "#bad!name", "##x", long.as_str()] {
        alice.ask(
            &format!("JOIN {bad}"),
            &[num("403", "alice", &format!("{bad} :No such channel"))],
        )?;
    }
    // A non-ASCII byte: kchat may show it as it likes in the reply.
    alice.send("JOIN #caf\u{e9}")?;
    let l = alice.next("403")?;
    ensure!(
        l.starts_with(":kchat 403 alice #caf") && l.ends_with(" :No such channel"),
        "alice received {l:?} for JOIN #caf\u{e9}, expected 403 alice #caf... :No such channel"
    );
    alice.ask(
        "JOIN #ok1,bad,#ok2",
        &[
            join_line(&alice, "#ok1"),
            num("353", "alice", "= #ok1 :@alice"),
            num("366", "alice", "#ok1 :End of /NAMES list."),
            num("403", "alice", "bad :No such channel"),
            join_line(&alice, "#ok2"),
            num("353", "alice", "= #ok2 :@alice"),
            num("366", "alice", "#ok2 :End of /NAMES list."),
        ],
    )?;
    let full = |me: &str, c: &str| {
        num(
            "405",
            me,
            &format!("{c} :Too many channels exist (max_rooms=3)"),
        )
    };
    alice.ask("JOIN #ok3", &[full("alice", "#ok3")])?;
    bob.ask("JOIN #new", &[full("bob", "#new")])?;
    join_seen(&mut bob, "#ok1", &["@alice", "bob"], &mut [&mut alice])?;
    join_seen(&mut bob, "#lobby", &["bob"], &mut [])?;
    alice.ask("PART #ok2", &[format!(":{} PART #ok2", alice.prefix())])?;
    join_seen(&mut alice, "#ok3", &["@alice"], &mut [])?;
    let rooms = room_names()?;
    ensure!(
        rooms.len() == 3 && rooms[0] == "#lobby",
        "rooms file lists {rooms:?}, expected #lobby, #ok1 and #ok3"
    );
    drop((alice, bob));
    module::unload().ctx("rmmod")?;

    start("history=0")?;
    let mut alice = register("alice")?;
    let list: Vec<String> = (1..=21).map(|i| format!("#c{i}")).collect();
    alice.send(&format!("JOIN {}", list.join(",")))?;
    for chan in &list[..20] {
        alice.expect_lines(&[
            join_line(&alice, chan),
            num("353", "alice", &format!("= {chan} :@alice")),
            num("366", "alice", &format!("{chan} :End of /NAMES list.")),
        ])?;
    }
    alice.expect(&num(
        "405",
        "alice",
        "#c21 :You have joined too many channels",
    ))?;
    alice.ask(
        "JOIN #lobby",
        &[num(
            "405",
            "alice",
            "#lobby :You have joined too many channels",
        )],
    )?;
    alice.ask("PART #c1", &[format!(":{} PART #c1", alice.prefix())])?;
    join_seen(&mut alice, "#c21", &["@alice"], &mut [])?;
    alice.sync()
}

/// - `PART #p` reaches every member, the parter included; `PART #p :see you later` carries
///   the reason; `PART #p,#q :bye` parts both;
/// - not a member: 442; no such channel or a bad name: 403;
/// - the creator is operator (`@`), `#lobby` has none; an emptied channel is gone (made
///   again, its new creator is operator), `#lobby` stays.
fn part() -> CaseResult {
    start("history=0")?;
    let mut alice = register("alice")?;
    let mut bob = register("bob")?;
    join_seen(&mut alice, "#p", &["@alice"], &mut [])?;
    join_seen(&mut bob, "#p", &["@alice", "bob"], &mut [&mut alice])?;
    let plain = format!(":{} PART #p", bob.prefix());
    bob.ask("PART #p", &[&plain])?;
    alice.expect(&plain)?;
    bob.ask(
        "PART #p",
        &[num("442", "bob", "#p :You're not on that channel")],
    )?;
    bob.ask(
        "PART #nochan",
        &[num("403", "bob", "#nochan :No such channel")],
    )?;
    bob.ask("PART bad", &[num("403", "bob", "bad :No such channel")])?;
    join_seen(&mut bob, "#p", &["@alice", "bob"], &mut [&mut alice])?;
    let reason = format!(":{} PART #p :see you later", bob.prefix());
    bob.ask("PART #p :see you later", &[&reason])?;
    alice.expect(&reason)?;

    join_seen(&mut bob, "#p", &["@alice", "bob"], &mut [&mut alice])?;
    join_seen(&mut alice, "#q", &["@alice"], &mut [])?;
    join_seen(&mut bob, "#q", &["@alice", "bob"], &mut [&mut alice])?;
    let both = [
        format!(":{} PART #p :bye", bob.prefix()),
        format!(":{} PART #q :bye", bob.prefix()),
    ];
    bob.ask("PART #p,#q :bye", &both)?;
    alice.expect_lines(&both)?;

    alice.ask("PART #p", &[format!(":{} PART #p", alice.prefix())])?;
    let rooms = room_names()?;
    ensure!(
        rooms == ["#lobby", "#q"],
        "rooms file lists {rooms:?} after #p emptied, expected [\"#lobby\", \"#q\"]"
    );
    join_seen(&mut bob, "#p", &["@bob"], &mut [])?;
    join_seen(&mut alice, "#lobby", &["alice"], &mut [])?;
    join_seen(&mut bob, "#lobby", &["alice", "bob"], &mut [&mut alice])?;
    let lp = format!(":{} PART #lobby", alice.prefix());
    alice.ask("PART #lobby", &[&lp])?;
    bob.expect(&lp)?;
    bob.ask("PART #lobby", &[format!(":{} PART #lobby", bob.prefix())])?;
    let rooms = room_names()?;
    ensure!(
        rooms.first().map(String::as_str) == Some("#lobby"),
        "#lobby is gone once empty: {rooms:?}"
    );
    alice.sync()?;
    bob.sync()
}

/// - `TOPIC #t` without a topic: 331; a non-operator under `+t`: 482; a non-member: 442;
/// - the operator's `TOPIC #t :the topic` reaches every member; `TOPIC #t` then gives 332 and
///   333; a 400-byte topic is cut to 300;
/// - after `MODE #t -t` anyone in the channel may set it; in `#lobby` (no `+t`) anyone may;
/// - `NAMES #t` (also by a non-member), `NAMES #nochan` (366 alone), `NAMES` (366 for `*`);
/// - `LIST`: 321, `#lobby` first then by name ignoring case, users and topics, 323.
fn topic_names_list() -> CaseResult {
    start("history=0")?;
    let mut alice = register("alice")?;
    let mut bob = register("bob")?;
    let mut carol = register("carol")?;
    let mut dave = register("dave")?;
    join_seen(&mut alice, "#t", &["@alice"], &mut [])?;
    alice.ask("TOPIC #t", &[num("331", "alice", "#t :No topic is set")])?;
    join_seen(&mut bob, "#t", &["@alice", "bob"], &mut [&mut alice])?;
    bob.ask(
        "TOPIC #t :bob's topic",
        &[num("482", "bob", "#t :You're not channel operator")],
    )?;
    let set = format!(":{} TOPIC #t :the topic", alice.prefix());
    alice.ask("TOPIC #t :the topic", &[&set])?;
    bob.expect(&set)?;
    bob.ask("TOPIC #t", &[num("332", "bob", "#t :the topic")])?;
    expect_333(&mut bob, "#t", &alice)?;
    carol.ask(
        "TOPIC #t :x",
        &[num("442", "carol", "#t :You're not on that channel")],
    )?;
    let long = format!(":{} TOPIC #t :{}", alice.prefix(), "x".repeat(300));
    alice.ask(&format!("TOPIC #t :{}", "x".repeat(400)), &[&long])?;
    bob.expect(&long)?;

    let minus_t = format!(":{} MODE #t -t", alice.prefix());
    alice.ask("MODE #t -t", &[&minus_t])?;
    bob.expect(&minus_t)?;
    let by_bob = format!(":{} TOPIC #t :now bob can", bob.prefix());
    bob.ask("TOPIC #t :now bob can", &[&by_bob])?;
    alice.expect(&by_bob)?;

    join_seen(&mut carol, "#lobby", &["carol"], &mut [])?;
    carol.ask(
        "TOPIC #lobby :lobby talk",
        &[format!(":{} TOPIC #lobby :lobby talk", carol.prefix())],
    )?;
    names_expect(&mut carol, "#t", &["@alice", "bob"])?;
    carol.ask(
        "NAMES #nochan",
        &[num("366", "carol", "#nochan :End of /NAMES list.")],
    )?;
    carol.ask("NAMES", &[num("366", "carol", "* :End of /NAMES list.")])?;

    dave.send("JOIN #Beta,#alpha")?;
    for chan in ["#Beta", "#alpha"] {
        dave.expect(&join_line(&dave, chan))?;
        let names = read_names(&mut dave, chan)?;
        same_names("dave", chan, &names, &["@dave"])?;
    }
    carol.ask(
        "LIST",
        &[
            num("321", "carol", "Channel :Users  Name"),
            num("322", "carol", "#lobby 1 :lobby talk"),
            num("322", "carol", "#alpha 1 :"),
            num("322", "carol", "#Beta 1 :"),
            num("322", "carol", "#t 2 :now bob can"),
            num("323", "carol", ":End of /LIST"),
        ],
    )?;
    alice.sync()?;
    bob.sync()?;
    dave.sync()
}

/// In `#m` (alice operator, bob and carol members; dave elsewhere):
/// - `MODE #m`: `324 me #m +nt` and 329 (anyone may ask); `MODE #m b`: 368;
/// - `+o bob` by alice reaches all and shows in NAMES; `-o alice` by bob likewise; then
///   alice's `+o carol` is 482; `+o dave` (not in #m) 441; `+o nobody` 401; `+x` 472;
///   `#nochan` 403;
/// - `-t`, `+t`, `-n`, `+n` by an operator reach all and change 324;
/// - `#lobby` is `+n` and has no operator: its `+t` is 482.
fn channel_modes() -> CaseResult {
    start("history=0")?;
    let mut alice = register("alice")?;
    let mut bob = register("bob")?;
    let mut carol = register("carol")?;
    let mut dave = register("dave")?;
    join_seen(&mut alice, "#m", &["@alice"], &mut [])?;
    join_seen(&mut bob, "#m", &["@alice", "bob"], &mut [&mut alice])?;
    join_seen(
        &mut carol,
        "#m",
        &["@alice", "bob", "carol"],
        &mut [&mut alice, &mut bob],
    )?;
    expect_modes(&mut alice, "#m", "+nt")?;
    expect_modes(&mut carol, "#m", "+nt")?;
    alice.ask(
        "MODE #m b",
        &[num("368", "alice", "#m :End of channel ban list")],
    )?;

    let everyone = |line: &str, us: &mut [&mut User]| -> CaseResult {
        for u in us.iter_mut() {
            u.expect(line)?;
        }
        Ok(())
    };
    alice.send("MODE #m +o bob")?;
    let op_bob = format!(":{} MODE #m +o bob", alice.prefix());
    everyone(&op_bob, &mut [&mut alice, &mut bob, &mut carol])?;
    names_expect(&mut carol, "#m", &["@alice", "@bob", "carol"])?;
    bob.send("MODE #m -o alice")?;
    let deop = format!(":{} MODE #m -o alice", bob.prefix());
    everyone(&deop, &mut [&mut alice, &mut bob, &mut carol])?;
    alice.ask(
        "MODE #m +o carol",
        &[num("482", "alice", "#m :You're not channel operator")],
    )?;
    carol.ask(
        "MODE #m +t",
        &[num("482", "carol", "#m :You're not channel operator")],
    )?;
    bob.ask(
        "MODE #m +o dave",
        &[num("441", "bob", "dave #m :They aren't on that channel")],
    )?;
    bob.ask(
        "MODE #m +o nobody",
        &[num("401", "bob", "nobody :No such nick/channel")],
    )?;
    bob.ask(
        "MODE #m +x",
        &[num("472", "bob", "x :is unknown mode char to me")],
    )?;
    bob.ask(
        "MODE #nochan +o alice",
        &[num("403", "bob", "#nochan :No such channel")],
    )?;
    bob.ask(
        "MODE #nochan",
        &[num("403", "bob", "#nochan :No such channel")],
    )?;

    for (change, modes) in [("-t", "+n"), ("+t", "+nt"), ("-n", "+t"), ("+n", "+nt")] {
        bob.send(&format!("MODE #m {change}"))?;
        let line = format!(":{} MODE #m {change}", bob.prefix());
        everyone(&line, &mut [&mut alice, &mut bob, &mut carol])?;
        expect_modes(&mut bob, "#m", modes)?;
    }

    join_seen(&mut dave, "#lobby", &["dave"], &mut [])?;
    expect_modes(&mut dave, "#lobby", "+n")?;
    dave.ask(
        "MODE #lobby +t",
        &[num("482", "dave", "#lobby :You're not channel operator")],
    )?;
    for u in [&mut alice, &mut bob, &mut carol, &mut dave] {
        u.sync()?;
    }
    Ok(())
}

/// In `#k` (alice operator, bob, carol; dave outside):
/// - `KICK #k bob :behave` reaches all three, bob included; bob is out (404 on PRIVMSG, not
///   in NAMES);
/// - `KICK #k carol` gives the kicker's nick as the reason;
/// - dave (not in #k): 442; bob (back, not operator): 482; `KICK #k dave` (not in #k): 441.
fn kick() -> CaseResult {
    start("history=0")?;
    let mut alice = register("alice")?;
    let mut bob = register("bob")?;
    let mut carol = register("carol")?;
    let mut dave = register("dave")?;
    join_seen(&mut alice, "#k", &["@alice"], &mut [])?;
    join_seen(&mut bob, "#k", &["@alice", "bob"], &mut [&mut alice])?;
    join_seen(
        &mut carol,
        "#k",
        &["@alice", "bob", "carol"],
        &mut [&mut alice, &mut bob],
    )?;
    alice.send("KICK #k bob :behave")?;
    let k = format!(":{} KICK #k bob :behave", alice.prefix());
    for u in [&mut alice, &mut bob, &mut carol] {
        u.expect(&k)?;
    }
    bob.ask(
        "PRIVMSG #k :let me in",
        &[num("404", "bob", "#k :Cannot send to channel")],
    )?;
    names_expect(&mut carol, "#k", &["@alice", "carol"])?;

    alice.send("KICK #k carol")?;
    let k = format!(":{} KICK #k carol :alice", alice.prefix());
    alice.expect(&k)?;
    carol.expect(&k)?;
    dave.ask(
        "KICK #k alice",
        &[num("442", "dave", "#k :You're not on that channel")],
    )?;
    join_seen(&mut bob, "#k", &["@alice", "bob"], &mut [&mut alice])?;
    bob.ask(
        "KICK #k alice",
        &[num("482", "bob", "#k :You're not channel operator")],
    )?;
    alice.ask(
        "KICK #k dave",
        &[num("441", "alice", "dave #k :They aren't on that channel")],
    )?;
    for u in [&mut alice, &mut bob, &mut carol, &mut dave] {
        u.sync()?;
    }
    Ok(())
}
