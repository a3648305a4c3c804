//! Rooms, private messages, history and IPv6: every command and error of the rooms protocol,
//! who hears what, history replay (and its exactly-once rule under load), `max_rooms`, the
//! debugfs views, and 10,000 clients in 1,000 rooms.

use std::{
    collections::HashMap,
    io::{ErrorKind, Read, Write},
    net::TcpStream,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use kchat_proto::{encode, Conn};

use crate::{
    attack::Rng,
    ensure, module,
    util::{
        ask, connect, connect6, debugfs_table, expect_frame, expect_frames, label, recv_until,
        room_names, room_rows, rooms_by_label, say, start, stat, wait_clients, wait_stat, Context,
        ADDR, CLIENTS_HEADER, STEP,
    },
    Case, CaseResult,
};

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "rooms: /join and /part move a client; chat, notices and /who stay in their room",
            run: join_and_part,
        },
        Case {
            name: "rooms: /join usage, invalid names, already there; 32-byte names work",
            run: join_errors,
        },
        Case {
            name: "rooms: names ignore case, shown as first spelled; /rooms is #lobby then by name",
            run: names_and_list,
        },
        Case {
            name: "rooms: the /join roster, /who and /rooms are cut to max_msg_len with ...",
            run: replies_cut,
        },
        Case {
            name: "rooms: /msg reaches one client in any room, by nick or ip:port; errors",
            run: private_messages,
        },
        Case {
            name: "rooms: history replayed at connect, /join and /part: chat only, as relayed",
            run: history_replay,
        },
        Case {
            name:
                "rooms: history keeps the last N messages and at most 64 KiB; history=0 keeps none",
            run: history_limits,
        },
        Case {
            name: "rooms: under a flood, each joiner sees every message from its window on, once",
            run: history_exactly_once,
        },
        Case {
            name: "rooms: max_rooms=3 refuses a third room until one empties; empty rooms go",
            run: max_rooms,
        },
        Case {
            name: "rooms: IPv6 on [::1], IPv4 and v4-mapped clients chat with their labels",
            run: ipv6_and_ipv4,
        },
        Case {
            name: "rooms: debugfs rooms file, room column of clients, rooms/history/private stats",
            run: debugfs_and_stats,
        },
        Case {
            name:
                "rooms: 10,000 clients in 1,000 rooms, each message reaches its 9 room-mates; rmmod",
            run: ten_thousand_in_rooms,
        },
    ]
}

/// The answer to `/join`: `* now in ROOM (N): LABEL, ...`.
fn roster(room: &str, labels: &[&str]) -> String {
    format!("* now in {room} ({}): {}", labels.len(), labels.join(", "))
}

/// The answer to `/who`: `* N online in ROOM: LABEL, ...`.
fn who(room: &str, labels: &[&str]) -> String {
    format!("* {} online in {room}: {}", labels.len(), labels.join(", "))
}

/// The answer to `/rooms`: `* N rooms: #lobby (5), ...`.
fn rooms_list(rooms: &[(&str, usize)]) -> String {
    let list: Vec<String> = rooms.iter().map(|(r, n)| format!("{r} ({n})")).collect();
    format!("* {} rooms: {}", rooms.len(), list.join(", "))
}

/// The frame that comes before a room's history.
fn replay_header(room: &str, k: usize) -> String {
    format!("* last {k} messages of {room}:")
}

fn joined(l: &str) -> String {
    format!("* {l} joined")
}

fn left(l: &str) -> String {
    format!("* {l} left")
}

const INVALID_ROOM: &str = "! invalid room name: use # and 1 to 32 of A-Z a-z 0-9 _ . -";
const JOIN_USAGE: &str = "! usage: /join #room";
const MSG_USAGE: &str = "! usage: /msg NICK TEXT";

/// Connects `n` clients (in this order) and waits until kchat has them all.
fn clients(n: usize) -> Result<(Vec<Conn>, Vec<String>), String> {
    let mut conns = Vec::new();
    for _ in 0..n {
        conns.push(connect()?);
        // One at a time, so that the order of connection is the order of the vector.
        wait_clients(conns.len() as u64, STEP)?;
    }
    let labels = conns.iter().map(label).collect();
    Ok((conns, labels))
}

/// - `/join #rust` moves a client: its old room hears `* X left`, the new one `* X joined`, and
///   it gets the roster (members in order of connection, itself included); trailing
///   whitespace after the name is ignored;
/// - chat messages, joins at connect, nick changes and departures reach only the room of the
///   client concerned (checked by each other client's next frame being its `/who` answer);
/// - `/part` goes back to `#lobby`; there already, it is `! already in #lobby`, and a `/join`
///   of one's own room is `! already in #room`.
fn join_and_part() -> CaseResult {
    start("notices=1 history=0")?;
    let mut a = connect()?;
    wait_clients(1, STEP)?;
    let mut b = connect()?;
    let (la, lb) = (label(&a), label(&b));
    expect_frame(&mut a, &joined(&lb))?;
    let mut c = connect()?;
    let lc = label(&c);
    expect_frame(&mut a, &joined(&lc))?;
    expect_frame(&mut b, &joined(&lc))?;

    ask(&mut a, "/join #rust", &roster("#rust", &[&la]))?;
    expect_frame(&mut b, &left(&la))?;
    expect_frame(&mut c, &left(&la))?;
    ask(&mut b, "/join #rust   ", &roster("#rust", &[&la, &lb]))?;
    expect_frame(&mut a, &joined(&lb))?;
    expect_frame(&mut c, &left(&lb))?;

    say(&mut a, "hi rust")?;
    expect_frame(&mut b, &format!("{la}: hi rust"))?;
    say(&mut c, "hi lobby")?;
    // The answer comes after kchat relayed (to nobody) what c said.
    ask(&mut c, "/who", &who("#lobby", &[&lc]))?;
    let mut d = connect()?;
    let ld = label(&d);
    expect_frame(&mut c, &joined(&ld))?;
    ask(&mut d, "/who", &who("#lobby", &[&lc, &ld]))?;
    // Neither c's message nor d's arrival reached #rust.
    ask(&mut a, "/who", &who("#rust", &[&la, &lb]))?;
    ask(&mut b, "/who", &who("#rust", &[&la, &lb]))?;

    ask(&mut a, "/part", &roster("#lobby", &[&la, &lc, &ld]))?;
    expect_frame(&mut b, &left(&la))?;
    expect_frame(&mut c, &joined(&la))?;
    expect_frame(&mut d, &joined(&la))?;
    ask(&mut a, "/part", "! already in #lobby")?;
    ask(&mut b, "/join #rust", "! already in #rust")?;

    ask(&mut c, "/join #rust", &roster("#rust", &[&lb, &lc]))?;
    expect_frame(&mut b, &joined(&lc))?;
    expect_frame(&mut a, &left(&lc))?;
    expect_frame(&mut d, &left(&lc))?;
    say(&mut b, "/nick bob")?;
    expect_frame(&mut c, &format!("* {lb} is now bob"))?;
    say(&mut b, "bye")?;
    drop(b);
    expect_frame(&mut c, "bob: bye")?;
    expect_frame(&mut c, "* bob left")?;
    // The lobby heard nothing of bob's nick or departure.
    ask(&mut a, "/who", &who("#lobby", &[&la, &ld]))?;
    ask(&mut d, "/who", &who("#lobby", &[&la, &ld]))?;
    Ok(())
}

/// - `/join` without a name (or with only spaces) is `! usage: /join #room`;
/// - a name without `#`, empty, of 33 bytes, with a space, a non-ASCII byte or a second `#` is
///   `! invalid room name: ...`, and creates nothing;
/// - `/join` of the room one is in, in any case, is `! already in ROOM` with the room as first
///   spelled; `/part` in `#lobby` is `! already in #lobby`;
/// - a name of exactly 32 bytes using every allowed kind of character works.
fn join_errors() -> CaseResult {
    start("notices=0")?;
    let mut a = connect()?;
    wait_clients(1, STEP)?;
    let la = label(&a);
    let too_long = format!("/join #{}", "x".repeat(33));
    for (cmd, reply) in [
        ("/join", JOIN_USAGE),
        ("/join   ", JOIN_USAGE),
        ("/join rust", INVALID_ROOM),
        ("/join #", INVALID_ROOM),
        (&too_long, INVALID_ROOM),
        ("/join #a b", INVALID_ROOM),
        ("/join #caf\u{e9}", INVALID_ROOM),
        ("/join ##x", INVALID_ROOM),
        ("/join #lobby", "! already in #lobby"),
        ("/join #LOBBY", "! already in #lobby"),
        ("/part", "! already in #lobby"),
    ] {
        ask(&mut a, cmd, reply)?;
    }
    ensure!(
        stat("rooms_now")? == 1,
        "rooms_now is not 1 after refused joins"
    );

    let name = format!("#Az09_.-{}", "y".repeat(24));
    ask(&mut a, &format!("/join {name}"), &roster(&name, &[&la]))?;
    ask(
        &mut a,
        &format!("/join {}", name.to_uppercase()),
        &format!("! already in {name}"),
    )?;
    ask(&mut a, "/rooms", &rooms_list(&[("#lobby", 0), (&name, 1)]))?;
    ask(&mut a, "/part", &roster("#lobby", &[&la]))?;
    ensure!(
        room_names()? == ["#lobby"],
        "rooms file lists {:?} once everyone is back in #lobby",
        room_names()?
    );
    Ok(())
}

/// - `#Alpha` and `#ALPHA` are one room, shown as `#Alpha` (its creator's spelling) to all,
///   also after the creator left it;
/// - `/rooms` lists `#lobby` first, then the others by name ignoring case, with member counts;
/// - a room that empties is removed: joined again, it takes the new spelling.
fn names_and_list() -> CaseResult {
    start("notices=0")?;
    let (mut c, l) = clients(5)?;
    ask(&mut c[0], "/join #beta", &roster("#beta", &[&l[0]]))?;
    ask(&mut c[1], "/join #Alpha", &roster("#Alpha", &[&l[1]]))?;
    ask(
        &mut c[2],
        "/join #ALPHA",
        &roster("#Alpha", &[&l[1], &l[2]]),
    )?;
    ask(&mut c[3], "/join #gamma", &roster("#gamma", &[&l[3]]))?;
    ask(&mut c[4], "/join #Delta", &roster("#Delta", &[&l[4]]))?;
    // Byte order would put #Delta before #beta.
    ask(
        &mut c[0],
        "/rooms",
        &rooms_list(&[
            ("#lobby", 0),
            ("#Alpha", 2),
            ("#beta", 1),
            ("#Delta", 1),
            ("#gamma", 1),
        ]),
    )?;
    ask(&mut c[1], "/part", &roster("#lobby", &[&l[1]]))?;
    ask(&mut c[2], "/who", &who("#Alpha", &[&l[2]]))?;
    ask(&mut c[2], "/part", &roster("#lobby", &[&l[1], &l[2]]))?;
    // #Alpha is gone, and #Delta goes as its only member leaves.
    ask(&mut c[4], "/join #aLpHa", &roster("#aLpHa", &[&l[4]]))?;
    ask(
        &mut c[0],
        "/rooms",
        &rooms_list(&[("#lobby", 2), ("#aLpHa", 1), ("#beta", 1), ("#gamma", 1)]),
    )?;
    let names = room_names()?;
    ensure!(
        names == ["#lobby", "#aLpHa", "#beta", "#gamma"],
        "rooms file lists {names:?}"
    );
    Ok(())
}

/// Expects the next frame on `c` to be `full`, or, if `full` is longer than `max` bytes, its
/// first `max - 3` bytes and `...`.
fn expect_cut(c: &mut Conn, full: &str, max: usize) -> CaseResult {
    if full.len() <= max {
        return expect_frame(c, full);
    }
    let got = c
        .recv_text(STEP)
        .ctx(&format!("waiting for {full:?}, cut"))?;
    ensure!(
        got.len() == max && got.ends_with("...") && full.starts_with(&got[..max - 3]),
        "received {got:?}, expected {full:?} cut to {max} bytes ending in ..."
    );
    Ok(())
}

/// With `max_msg_len=64`, six clients join `#t` one by one: each gets the roster, whole while
/// it fits and cut to 64 bytes ending in `...` once it does not; `/who` in `#t` and `/rooms`
/// with seven rooms are cut the same way.
fn replies_cut() -> CaseResult {
    const MAX: usize = 64;
    start("notices=0 max_msg_len=64")?;
    let (mut c, l) = clients(6)?;
    let all: Vec<&str> = l.iter().map(String::as_str).collect();
    for i in 0..6 {
        say(&mut c[i], "/join #t")?;
        expect_cut(&mut c[i], &roster("#t", &all[..=i]), MAX)?;
    }
    let full_who = who("#t", &all);
    ensure!(
        full_who.len() > MAX,
        "the /who answer would fit: {full_who:?}"
    );
    say(&mut c[5], "/who")?;
    expect_cut(&mut c[5], &full_who, MAX)?;

    let names: Vec<String> = (0..5).map(|i| format!("#r{i}")).collect();
    for i in 0..5 {
        say(&mut c[i], &format!("/join {}", names[i]))?;
        expect_cut(&mut c[i], &roster(&names[i], &all[i..=i]), MAX)?;
    }
    let mut rooms = vec![("#lobby", 0)];
    rooms.extend(names.iter().map(|n| (n.as_str(), 1)));
    rooms.push(("#t", 1));
    let full_rooms = rooms_list(&rooms);
    ensure!(full_rooms.len() > MAX, "the /rooms answer would fit");
    say(&mut c[5], "/rooms")?;
    expect_cut(&mut c[5], &full_rooms, MAX)
}

/// - `/msg NICK TEXT` reaches that client alone as `LABEL (private): TEXT`, from `#lobby` to
///   another room and back, with the nick in any case, or by its `ip:port` label;
/// - a client's address is no longer a target once it has a nick;
/// - unknown targets get `! no such nick: NICK`, missing parts `! usage: /msg NICK TEXT`;
/// - `private_messages` counts the 4 delivered, not the refused.
fn private_messages() -> CaseResult {
    start("notices=0")?;
    let (mut c, l) = clients(3)?;
    let (la, lc) = (l[0].clone(), l[2].clone());
    let [a, b, cc] = &mut c[..] else {
        unreachable!()
    };
    say(b, "/nick bob")?;
    ask(b, "/join #den", &roster("#den", &["bob"]))?;
    say(a, "/msg bob hello there")?;
    expect_frame(b, &format!("{la} (private): hello there"))?;
    say(a, "/nick alice")?;
    ask(a, "/who", &who("#lobby", &["alice", &lc]))?;
    say(cc, "/msg BOB psst")?;
    expect_frame(b, &format!("{lc} (private): psst"))?;
    say(b, "/msg alice back at you")?;
    expect_frame(a, "bob (private): back at you")?;
    say(b, &format!("/msg {lc} by address"))?;
    expect_frame(cc, "bob (private): by address")?;
    ask(
        cc,
        &format!("/msg {la} old address"),
        &format!("! no such nick: {la}"),
    )?;
    ask(a, "/msg nobody hi", "! no such nick: nobody")?;
    ask(a, "/msg", MSG_USAGE)?;
    ask(a, "/msg bob", MSG_USAGE)?;
    // Nobody received anything else: each next frame is the /who answer.
    ask(a, "/who", &who("#lobby", &["alice", &lc]))?;
    ask(b, "/who", &who("#den", &["bob"]))?;
    ask(cc, "/who", &who("#lobby", &["alice", &lc]))?;
    ensure!(
        stat("private_messages")? == 4,
        "private_messages is {}, expected 4",
        stat("private_messages")?
    );
    drop(c.remove(1));
    wait_clients(2, STEP)?;
    ask(&mut c[0], "/msg bob still there?", "! no such nick: bob")
}

/// With `history=3`:
/// - the first clients get nothing at connect (empty history);
/// - a client connecting after 5 messages gets `* last 3 messages of #lobby:` and the last
///   3 frames exactly as relayed (under the sender's label then, not its later nick); nick
///   changes, notices, `/who` and private messages are not history;
/// - `/join` of a new room replays nothing; of a room with history, the roster, then the
///   history, then live messages; `/part` replays `#lobby`'s history;
/// - a room that empties goes with its history; `history_replayed` counts replayed messages.
fn history_replay() -> CaseResult {
    start("history=3 notices=1")?;
    let mut a = connect()?;
    wait_clients(1, STEP)?;
    let mut b = connect()?;
    let (la, lb) = (label(&a), label(&b));
    expect_frame(&mut a, &joined(&lb))?;
    for i in 1..=5 {
        say(&mut a, &format!("m{i}"))?;
        expect_frame(&mut b, &format!("{la}: m{i}"))?;
    }
    ask(&mut b, "/who", &who("#lobby", &[&la, &lb]))?;
    say(&mut a, "/nick alice")?;
    expect_frame(&mut b, &format!("* {la} is now alice"))?;
    ask(&mut a, "/who", &who("#lobby", &["alice", &lb]))?;
    say(&mut a, &format!("/msg {lb} psst"))?;
    expect_frame(&mut b, "alice (private): psst")?;

    let lobby_history = [
        replay_header("#lobby", 3),
        format!("{la}: m3"),
        format!("{la}: m4"),
        format!("{la}: m5"),
    ];
    let mut c = connect()?;
    let lc = label(&c);
    expect_frames(&mut c, &lobby_history)?;
    expect_frame(&mut a, &joined(&lc))?;
    expect_frame(&mut b, &joined(&lc))?;
    ask(&mut c, "/who", &who("#lobby", &["alice", &lb, &lc]))?;
    wait_stat("history_replayed", 3, STEP)?;

    ask(&mut a, "/join #h", &roster("#h", &["alice"]))?;
    expect_frame(&mut b, "* alice left")?;
    expect_frame(&mut c, "* alice left")?;
    say(&mut a, "h1")?;
    say(&mut a, "h2")?;
    ask(&mut a, "/who", &who("#h", &["alice"]))?;
    ask(&mut b, "/join #h", &roster("#h", &["alice", &lb]))?;
    expect_frames(
        &mut b,
        &[
            replay_header("#h", 2),
            "alice: h1".into(),
            "alice: h2".into(),
        ],
    )?;
    expect_frame(&mut a, &joined(&lb))?;
    expect_frame(&mut c, &left(&lb))?;
    say(&mut a, "h3")?;
    expect_frame(&mut b, "alice: h3")?;

    ask(&mut a, "/part", &roster("#lobby", &["alice", &lc]))?;
    expect_frames(&mut a, &lobby_history)?;
    expect_frame(&mut b, "* alice left")?;
    expect_frame(&mut c, "* alice joined")?;
    ask(&mut b, "/part", &roster("#lobby", &["alice", &lb, &lc]))?;
    expect_frames(&mut b, &lobby_history)?;
    expect_frame(&mut a, &joined(&lb))?;
    expect_frame(&mut c, &joined(&lb))?;
    // #h emptied: it went with its history.
    ask(&mut a, "/join #h", &roster("#h", &["alice"]))?;
    ask(&mut a, "/who", &who("#h", &["alice"]))?;
    wait_stat("history_replayed", 3 + 2 + 3 + 3, STEP)
}

/// - `history=4`: a client connecting after 10 messages gets the last 4;
/// - `history=1000`: of 20 messages whose frames are 4,000 bytes each, a room keeps the 16
///   that fit in 64 KiB (the rooms file agrees), and a joiner gets those 16;
/// - `history=0`: nothing is kept or replayed, at connect or at `/join`.
fn history_limits() -> CaseResult {
    start("history=4 notices=0")?;
    let mut a = connect()?;
    wait_clients(1, STEP)?;
    let la = label(&a);
    for i in 0..10 {
        say(&mut a, &format!("n{i}"))?;
    }
    // Answered once kchat has read (and kept) the 10 messages.
    ask(&mut a, "/who", &who("#lobby", &[&la]))?;
    let mut b = connect()?;
    let mut want = vec![replay_header("#lobby", 4)];
    want.extend((6..10).map(|i| format!("{la}: n{i}")));
    expect_frames(&mut b, &want)?;
    let lb = label(&b);
    ask(&mut b, "/who", &who("#lobby", &[&la, &lb]))?;
    drop((a, b));
    module::unload().ctx("rmmod")?;

    start("history=1000 notices=0 max_msg_len=4096 irc_port=0")?;
    let mut a = connect()?;
    wait_clients(1, STEP)?;
    let la = label(&a);
    ask(&mut a, "/join #big", &roster("#big", &[&la]))?;
    // Each relayed frame's payload (`LABEL: TEXT`) is 4,000 bytes: 16 fit in 64 KiB, with
    // their headers too.
    let text = |i: usize| {
        let mut t = format!("{i:02} ");
        t.extend(std::iter::repeat_n('b', 4000 - la.len() - 2 - t.len()));
        t
    };
    for i in 0..20 {
        say(&mut a, &text(i))?;
    }
    ask(&mut a, "/who", &who("#big", &[&la]))?;
    let rows = room_rows()?;
    let big = rows
        .iter()
        .find(|r| r[0] == "#big")
        .ok_or("no #big in the rooms file")?;
    let bytes: u64 = big[4].parse().ctx("history_bytes")?;
    ensure!(
        big[3] == "16" && (16 * 4000..=65536).contains(&bytes),
        "#big keeps {} messages, {bytes} bytes; expected 16, at most 64 KiB",
        big[3]
    );
    let mut b = connect()?;
    let lb = label(&b);
    ask(&mut b, "/join #big", &roster("#big", &[&la, &lb]))?;
    let mut want = vec![replay_header("#big", 16)];
    want.extend((4..20).map(|i| format!("{la}: {}", text(i))));
    expect_frames(&mut b, &want)?;
    drop((a, b));
    module::unload().ctx("rmmod")?;

    start("history=0 notices=0")?;
    let mut a = connect()?;
    wait_clients(1, STEP)?;
    let la = label(&a);
    say(&mut a, "not kept")?;
    ask(&mut a, "/who", &who("#lobby", &[&la]))?;
    let mut b = connect()?;
    let lb = label(&b);
    ask(&mut b, "/who", &who("#lobby", &[&la, &lb]))?;
    ask(&mut a, "/join #z", &roster("#z", &[&la]))?;
    say(&mut a, "not kept either")?;
    ask(&mut a, "/who", &who("#z", &[&la]))?;
    ask(&mut b, "/join #z", &roster("#z", &[&la, &lb]))?;
    ask(&mut b, "/who", &who("#z", &[&la, &lb]))?;
    for r in room_rows()? {
        ensure!(
            r[3] == "0" && r[4] == "0",
            "history kept with history=0: {r:?}"
        );
    }
    ensure!(stat("history_replayed")? == 0, "history_replayed is not 0");
    Ok(())
}

/// Room messages of the exactly-once case: `fl SENDER SEQ` from flooder SENDER.
const FLOODERS: usize = 4;
const PER_FLOODER: usize = 250;
const JOINERS: usize = 4;
const FLOOD_HISTORY: usize = 10;

/// A room message: (flooder, sequence number).
type Msg = (usize, usize);

/// One stay of a joiner in `#flood`: what it was replayed, and what it received live until
/// its `/part` took effect.
#[derive(Default)]
struct Visit {
    replayed: Vec<Msg>,
    live: Vec<Msg>,
}

/// Parses a flood message `LABEL: fl S SEQ`, checking LABEL is flooder S's.
fn parse_flood(frame: &str, labels: &[String]) -> Result<Msg, String> {
    let parsed = frame.split_once(": ").and_then(|(l, text)| {
        let (s, seq) = text.strip_prefix("fl ")?.split_once(' ')?;
        let s: usize = s.parse().ok()?;
        (labels.get(s)? == l).then_some((s, seq.parse().ok()?))
    });
    parsed.ok_or_else(|| format!("not a flood message: {frame:?}"))
}

/// One visit: `/join #flood`, the roster, the replayed history, live messages for `dwell`,
/// then `/part` and the live messages until the roster of `#lobby`.
fn visit(c: &mut Conn, labels: &[String], dwell: Duration) -> Result<Visit, String> {
    say(c, "/join #flood")?;
    // Lobby notices may come first.
    recv_until(c, "the roster of #flood", |f| {
        f.starts_with("* now in #flood (")
    })?;
    let until = Instant::now() + dwell;
    let mut v = Visit::default();
    let live = |f: String, v: &mut Visit| -> CaseResult {
        if !f.starts_with("* ") {
            v.live.push(parse_flood(&f, labels)?);
        }
        Ok(())
    };
    // Something always follows: the history, or (with none yet) the flood that is starting.
    let first = c.recv_text(STEP).ctx("the frame after the roster")?;
    let header = first
        .strip_prefix("* last ")
        .and_then(|r| r.strip_suffix(" messages of #flood:"))
        .and_then(|k| k.parse::<usize>().ok());
    match header {
        Some(k) => {
            for _ in 0..k {
                let m = c.recv_text(STEP).ctx("replayed message")?;
                v.replayed.push(parse_flood(&m, labels)?);
            }
        }
        None => live(first, &mut v)?,
    }
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match c.recv_timeout(left).ctx("visit")? {
            Some(f) => live(String::from_utf8_lossy(&f).into_owned(), &mut v)?,
            None => break,
        }
    }
    say(c, "/part")?;
    let (_, rest) = recv_until(c, "the roster of #lobby", |f| {
        f.starts_with("* now in #lobby (")
    })?;
    for f in rest {
        live(f, &mut v)?;
    }
    Ok(v)
}

/// The messages of `got` are exactly those of `want` (each once), in any order.
fn same_messages(got: &[Msg], want: &[Msg], what: &str) -> CaseResult {
    let (mut g, mut w) = (got.to_vec(), want.to_vec());
    g.sort_unstable();
    w.sort_unstable();
    ensure!(
        g == w,
        "{what}: got {} messages {:?}..., expected {} {:?}...",
        got.len(),
        &got[..got.len().min(5)],
        want.len(),
        &want[..want.len().min(5)]
    );
    Ok(())
}

/// Checks one visit against `room`, the room's messages in the order kchat relayed them (as
/// the witness, a member since before the first, received them).
///
/// The joiner's window began at the oldest message it was replayed; with nothing replayed, at
/// the room's first message (its history was empty: the room had said nothing yet). From
/// there on, it must have every room message exactly once: the replay is the next K messages
/// of the room (K at most `history`, and fewer only if the room had said no more), the live
/// messages the ones after those, up to the moment its `/part` took effect; each sender's
/// messages in the order sent.
fn check_visit(v: &Visit, room: &[Msg], pos: &HashMap<Msg, usize>) -> CaseResult {
    let k = v.replayed.len();
    ensure!(
        k <= FLOOD_HISTORY,
        "{k} messages replayed, history={FLOOD_HISTORY}"
    );
    let mut start = usize::MAX;
    for m in &v.replayed {
        start = start.min(*pos.get(m).ok_or(format!("replayed {m:?}, never sent"))?);
    }
    if k == 0 {
        start = 0;
    }
    ensure!(
        k == FLOOD_HISTORY || start == 0,
        "{k} messages replayed, but the room had said {start} more before them"
    );
    let end = start + k + v.live.len();
    ensure!(
        end <= room.len(),
        "{} messages replayed or live, only {} after the window began",
        k + v.live.len(),
        room.len() - start
    );
    same_messages(&v.replayed, &room[start..start + k], "replayed")?;
    same_messages(&v.live, &room[start + k..end], "live")?;
    let mut last = [None; FLOODERS];
    for &(s, seq) in v.replayed.iter().chain(&v.live) {
        ensure!(
            last[s].is_none_or(|l| l < seq),
            "message {seq} of flooder {s} after its message {:?}",
            last[s]
        );
        last[s] = Some(seq);
    }
    Ok(())
}

/// `history=10`: a witness and 4 flooders are in `#flood`; the flooders send 250 numbered
/// messages each while 4 joiners keep entering (`/join #flood`) and leaving (`/part`). The
/// witness receives every message once, in per-sender order; for every visit of every joiner,
/// [`check_visit`] holds.
fn history_exactly_once() -> CaseResult {
    start("history=10 notices=1 max_msg_rate=0")?;
    let mut witness = connect()?;
    wait_clients(1, STEP)?;
    let lw = label(&witness);
    ask(&mut witness, "/join #flood", &roster("#flood", &[&lw]))?;
    let mut flooders = Vec::new();
    for _ in 0..FLOODERS {
        let mut f = connect()?;
        say(&mut f, "/join #flood")?;
        recv_until(&mut f, "the roster of #flood", |t| {
            t.starts_with("* now in #flood (")
        })?;
        flooders.push(f);
    }
    let labels: Arc<Vec<String>> = Arc::new(flooders.iter().map(label).collect());
    let done = Arc::new(AtomicBool::new(false));
    let joiners: Vec<_> = (0..JOINERS)
        .map(|j| {
            let (labels, done) = (labels.clone(), done.clone());
            thread::spawn(move || -> Result<Vec<Visit>, String> {
                let mut c = connect()?;
                let mut rng = Rng::new(j as u64 + 1);
                let mut visits = Vec::new();
                while !done.load(Ordering::Relaxed) {
                    let dwell = Duration::from_millis(20 + rng.below(150));
                    visits.push(visit(&mut c, &labels, dwell)?);
                }
                Ok(visits)
            })
        })
        .collect();
    let senders: Vec<_> = flooders
        .into_iter()
        .enumerate()
        .map(|(s, mut f)| {
            thread::spawn(move || -> Result<Conn, String> {
                for seq in 0..PER_FLOODER {
                    say(&mut f, &format!("fl {s} {seq}"))?;
                    thread::sleep(Duration::from_millis(3));
                }
                Ok(f)
            })
        })
        .collect();
    let mut room = Vec::new();
    while room.len() < FLOODERS * PER_FLOODER {
        let f = witness.recv_text(STEP).ctx("witness")?;
        if !f.starts_with("* ") {
            room.push(parse_flood(&f, &labels)?);
        }
    }
    let mut kept = Vec::new();
    for h in senders {
        kept.push(h.join().map_err(|_| "flooder panicked".to_string())??);
    }
    done.store(true, Ordering::Relaxed);
    let mut next = [0; FLOODERS];
    for &(s, seq) in &room {
        ensure!(
            seq == next[s],
            "the witness got message {seq} of flooder {s}, expected {}",
            next[s]
        );
        next[s] += 1;
    }
    let pos: HashMap<Msg, usize> = room.iter().enumerate().map(|(i, m)| (*m, i)).collect();
    let (mut visits, mut overlapping) = (0, 0);
    for (j, h) in joiners.into_iter().enumerate() {
        let vs = h.join().map_err(|_| "joiner panicked".to_string())??;
        for (n, v) in vs.iter().enumerate() {
            check_visit(v, &room, &pos).map_err(|e| format!("joiner {j}, visit {n}: {e}"))?;
            visits += 1;
            if v.replayed.len() == FLOOD_HISTORY && !v.live.is_empty() {
                overlapping += 1;
            }
        }
    }
    println!("# exactly once: {visits} visits, {overlapping} with a full replay and live messages");
    ensure!(
        overlapping > 0,
        "no visit had a full replay and live messages: the test raced nothing"
    );
    drop(kept);
    Ok(())
}

/// `max_rooms=3` (`#lobby` included):
/// - two rooms can be created, a third is `! too many rooms (max_rooms=3)` and the client stays
///   where it was, but an existing room can still be joined;
/// - once a room empties (by `/part`, or by its last member disconnecting) it is gone from
///   `/rooms`, the rooms file and `rooms_now`, and a new room can be created.
fn max_rooms() -> CaseResult {
    const FULL: &str = "! too many rooms (max_rooms=3)";
    start("max_rooms=3 notices=0")?;
    let (mut c, l) = clients(3)?;
    ask(&mut c[0], "/join #r1", &roster("#r1", &[&l[0]]))?;
    ask(&mut c[1], "/join #r2", &roster("#r2", &[&l[1]]))?;
    ask(&mut c[2], "/join #r3", FULL)?;
    ask(&mut c[2], "/who", &who("#lobby", &[&l[2]]))?;
    ask(&mut c[2], "/join #R1", &roster("#r1", &[&l[0], &l[2]]))?;
    ensure!(stat("rooms_now")? == 3, "rooms_now is not 3");
    ask(&mut c[2], "/part", &roster("#lobby", &[&l[2]]))?;
    ask(&mut c[1], "/part", &roster("#lobby", &[&l[1], &l[2]]))?;
    ensure!(
        room_names()? == ["#lobby", "#r1"] && stat("rooms_now")? == 2,
        "#r2 emptied but is still listed: {:?}",
        room_names()?
    );
    ask(&mut c[2], "/join #r3", &roster("#r3", &[&l[2]]))?;
    ask(
        &mut c[1],
        "/rooms",
        &rooms_list(&[("#lobby", 1), ("#r1", 1), ("#r3", 1)]),
    )?;
    ask(&mut c[1], "/join #r4", FULL)?;
    drop(c.remove(0));
    wait_stat("rooms_now", 2, STEP)?;
    ensure!(
        room_names()? == ["#lobby", "#r3"],
        "rooms file lists {:?} after #r1's last member left",
        room_names()?
    );
    ask(
        &mut c[0],
        "/rooms",
        &rooms_list(&[("#lobby", 1), ("#r3", 1)]),
    )?;
    ask(&mut c[0], "/join #r4", &roster("#r4", &[&l[1]]))
}

/// - an IPv6 client on `[::1]:10106` is labelled `[::1]:PORT`; it and an IPv4 client
///   (`127.0.0.1:PORT`) see each other join and chat;
/// - a client of an IPv6 socket connecting to `::ffff:127.0.0.1` (v4-mapped) is labelled
///   `127.0.0.1:PORT`, and is replayed the lobby's history with both labels;
/// - `/who`, `/msg` to an IPv6 label and the clients file know the IPv6 label.
fn ipv6_and_ipv4() -> CaseResult {
    start("notices=1")?;
    let mut v4 = connect()?;
    wait_clients(1, STEP)?;
    let mut v6 = connect6()?;
    let (l4, l6) = (label(&v4), label(&v6));
    ensure!(l6.starts_with("[::1]:"), "IPv6 client's address is {l6}");
    expect_frame(&mut v4, &joined(&l6))?;
    say(&mut v6, "hello from v6")?;
    expect_frame(&mut v4, &format!("{l6}: hello from v6"))?;
    say(&mut v4, "hello from v4")?;
    expect_frame(&mut v6, &format!("{l4}: hello from v4"))?;

    let mut mapped = Conn::connect("[::ffff:127.0.0.1]:10106").ctx("v4-mapped connect")?;
    let lm = format!(
        "127.0.0.1:{}",
        mapped.local_addr().ctx("v4-mapped address")?.port()
    );
    expect_frames(
        &mut mapped,
        &[
            replay_header("#lobby", 2),
            format!("{l6}: hello from v6"),
            format!("{l4}: hello from v4"),
        ],
    )?;
    expect_frame(&mut v4, &joined(&lm))?;
    expect_frame(&mut v6, &joined(&lm))?;
    say(&mut mapped, "mapped")?;
    expect_frame(&mut v4, &format!("{lm}: mapped"))?;
    expect_frame(&mut v6, &format!("{lm}: mapped"))?;
    ask(&mut v6, "/who", &who("#lobby", &[&l4, &l6, &lm]))?;
    say(&mut v4, &format!("/msg {l6} psst"))?;
    expect_frame(&mut v6, &format!("{l4} (private): psst"))?;
    ask(&mut v6, "/join #six", &roster("#six", &[&l6]))?;
    expect_frame(&mut v4, &left(&l6))?;
    let rooms = rooms_by_label()?;
    for (l, room) in [(&l4, "#lobby"), (&l6, "#six"), (&lm, "#lobby")] {
        ensure!(
            rooms.get(l).map(String::as_str) == Some(room),
            "clients file: {l} in {:?}, expected {room}",
            rooms.get(l)
        );
    }
    Ok(())
}

/// Bytes of the frames of `texts` relayed under `label`, headers included.
fn frame_bytes(label: &str, texts: &[&str]) -> u64 {
    texts
        .iter()
        .map(|t| (4 + label.len() + 2 + t.len()) as u64)
        .sum()
}

/// With `history=5`, two clients in `#dev` (one with a nick) and two in `#lobby`:
/// - the rooms file has exactly its header, `#lobby` first, each room's members, deliveries,
///   history messages and bytes (frames with their headers);
/// - the clients file has the `room` column, the nick as label and the address as peer;
/// - `rooms_now`, `private_messages` and `history_replayed` count exactly;
/// - once `#dev` empties, it leaves the file and `rooms_now`.
fn debugfs_and_stats() -> CaseResult {
    start("notices=0 history=5 irc_port=0")?;
    let (mut c, l) = clients(4)?;
    ask(&mut c[0], "/join #dev", &roster("#dev", &[&l[0]]))?;
    ask(&mut c[1], "/join #dev", &roster("#dev", &[&l[0], &l[1]]))?;
    let dev = ["one", "two", "three"];
    for t in dev {
        say(&mut c[0], t)?;
        expect_frame(&mut c[1], &format!("{}: {t}", l[0]))?;
    }
    let lobby = ["lobby one", "lobby two"];
    for t in lobby {
        say(&mut c[2], t)?;
        expect_frame(&mut c[3], &format!("{}: {t}", l[2]))?;
    }
    say(&mut c[1], "/nick bob")?;
    ask(&mut c[1], "/who", &who("#dev", &[&l[0], "bob"]))?;
    let rows = room_rows()?;
    let want = [
        [
            "#lobby",
            "2",
            "2",
            "2",
            &frame_bytes(&l[2], &lobby).to_string(),
        ],
        ["#dev", "2", "3", "3", &frame_bytes(&l[0], &dev).to_string()],
    ];
    ensure!(rows == want, "rooms file rows {rows:?}, expected {want:?}");
    let clients = debugfs_table("clients", CLIENTS_HEADER)?;
    let mut seen: Vec<[&str; 3]> = clients
        .iter()
        .map(|r| [r[1].as_str(), r[2].as_str(), r[3].as_str()])
        .collect();
    seen.sort_unstable();
    let mut want = vec![
        [l[0].as_str(), l[0].as_str(), "#dev"],
        ["bob", l[1].as_str(), "#dev"],
        [l[2].as_str(), l[2].as_str(), "#lobby"],
        [l[3].as_str(), l[3].as_str(), "#lobby"],
    ];
    want.sort_unstable();
    ensure!(
        seen == want,
        "clients file (label, peer, room) {seen:?}, expected {want:?}"
    );
    for (name, want) in [
        ("rooms_now", 2),
        ("private_messages", 0),
        ("history_replayed", 0),
    ] {
        ensure!(
            stat(name)? == want,
            "{name} is {}, expected {want}",
            stat(name)?
        );
    }

    say(&mut c[2], "/msg bob hi")?;
    expect_frame(&mut c[1], &format!("{} (private): hi", l[2]))?;
    ensure!(stat("private_messages")? == 1, "private_messages is not 1");
    let mut e = connect()?;
    let le = label(&e);
    expect_frame(&mut e, &replay_header("#lobby", 2))?;
    recv_until(&mut e, "the lobby's history", |f| {
        f.ends_with(": lobby two")
    })?;
    wait_stat("history_replayed", 2, STEP)?;
    ask(&mut e, "/join #dev", &roster("#dev", &[&l[0], "bob", &le]))?;
    expect_frame(&mut e, &replay_header("#dev", 3))?;
    recv_until(&mut e, "#dev's history", |f| f.ends_with(": three"))?;
    wait_stat("history_replayed", 5, STEP)?;

    drop(e);
    c.truncate(2);
    drop(c.remove(0));
    wait_clients(1, STEP)?;
    ask(&mut c[0], "/part", &roster("#lobby", &["bob"]))?;
    wait_stat("rooms_now", 1, STEP)?;
    ensure!(
        room_names()? == ["#lobby"],
        "rooms file lists {:?} after #dev emptied",
        room_names()?
    );
    Ok(())
}

/// Reads one frame from a plain stream (10,000 [`Conn`]s would each hold a 16 KiB buffer).
fn read_text(s: &mut TcpStream) -> Result<String, String> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ctx("read a frame header")?;
    let mut payload = vec![0u8; u32::from_le_bytes(len) as usize];
    s.read_exact(&mut payload).ctx("read a frame")?;
    Ok(String::from_utf8_lossy(&payload).into_owned())
}

/// Clients and rooms of [`ten_thousand_in_rooms`]: client `i` is in room `i % ROOMS`.
const MANY: usize = 10_000;
const ROOMS: usize = 1_000;

fn room_of(i: usize) -> String {
    format!("#r{:03}", i % ROOMS)
}

/// Checks the roster client `i` got when it joined its room: `k` of its room-mates (the
/// others may not have joined yet), itself among them, in order of connection.
fn check_many_roster(f: &str, i: usize, index: &HashMap<&str, usize>) -> CaseResult {
    let parsed = f
        .strip_prefix(&format!("* now in {} (", room_of(i)))
        .and_then(|r| r.split_once("): "))
        .and_then(|(k, list)| Some((k.parse::<usize>().ok()?, list)));
    let (k, list) = parsed.ok_or_else(|| format!("client {i}: roster {f:?}"))?;
    let members: Option<Vec<usize>> = list.split(", ").map(|l| index.get(l).copied()).collect();
    let members = members.ok_or_else(|| format!("client {i}: unknown label in {f:?}"))?;
    ensure!(
        members.len() == k
            && k <= MANY / ROOMS
            && members.contains(&i)
            && members.iter().all(|m| m % ROOMS == i % ROOMS)
            && members.windows(2).all(|w| w[0] < w[1]),
        "client {i}: roster {f:?} is not its room-mates in order of connection"
    );
    Ok(())
}

/// - 10,000 clients connect and join 1,000 rooms, 10 in each (`max_rooms=1001`); each gets
///   the roster of its room as it was then;
/// - `/rooms`, the rooms file, the clients file's room column and `rooms_now` show them all;
/// - one message per room, from its first member, reaches exactly its 9 other members
///   (`messages_relayed` 9,000, nothing else on any socket);
/// - with a second message on its way in every room, `rmmod` succeeds, and every client sees
///   its connection end.
fn ten_thousand_in_rooms() -> CaseResult {
    let mut log =
        start("notices=0 trace=0 max_clients=10000 max_rooms=1001 backlog=4096 max_msg_len=16384")?;
    let t = Instant::now();
    let mut socks: Vec<TcpStream> = Vec::with_capacity(MANY);
    while socks.len() < MANY {
        // In steps of 1,000, within the listen backlog: no handshake waits for a retry.
        for _ in 0..1000 {
            let s = TcpStream::connect(ADDR).ctx(&format!("connect client {}", socks.len()))?;
            s.set_read_timeout(Some(STEP)).ctx("read timeout")?;
            socks.push(s);
        }
        wait_clients(socks.len() as u64, Duration::from_secs(120))?;
    }
    let connected = t.elapsed();
    let accept_waits = stat("accept_waits")?;
    let labels: Vec<String> = socks
        .iter()
        .map(|s| s.local_addr().map(|a| a.to_string()).unwrap_or_default())
        .collect();
    let index: HashMap<&str, usize> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i))
        .collect();
    for (i, s) in socks.iter_mut().enumerate() {
        s.write_all(&encode(format!("/join {}", room_of(i)).as_bytes()))
            .ctx("send /join")?;
    }
    for (i, s) in socks.iter_mut().enumerate() {
        check_many_roster(&read_text(s)?, i, &index)?;
    }

    let mut rooms = vec![("#lobby".to_string(), 0)];
    rooms.extend((0..ROOMS).map(|r| (room_of(r), MANY / ROOMS)));
    let rooms_ref: Vec<(&str, usize)> = rooms.iter().map(|(r, n)| (r.as_str(), *n)).collect();
    socks[0].write_all(&encode(b"/rooms")).ctx("send /rooms")?;
    let got = read_text(&mut socks[0])?;
    ensure!(
        got == rooms_list(&rooms_ref),
        "/rooms answered {}...",
        &got[..got.len().min(200)]
    );
    let rows = room_rows()?;
    let want_rows = rooms
        .iter()
        .map(|(r, n)| vec![r.clone(), n.to_string(), "0".into(), "0".into(), "0".into()]);
    ensure!(
        rows.len() == ROOMS + 1 && rows.iter().cloned().eq(want_rows),
        "the rooms file does not list #lobby (0) then the 1,000 rooms (10 each)"
    );
    let by_label = rooms_by_label()?;
    ensure!(
        by_label.len() == MANY,
        "clients file lists {} clients",
        by_label.len()
    );
    for (i, l) in labels.iter().enumerate() {
        ensure!(
            by_label.get(l) == Some(&room_of(i)),
            "clients file: {l} in {:?}, expected {}",
            by_label.get(l),
            room_of(i)
        );
    }
    ensure!(
        stat("rooms_now")? == (ROOMS + 1) as u64,
        "rooms_now is not 1001"
    );

    for (r, s) in socks.iter_mut().enumerate().take(ROOMS) {
        s.write_all(&encode(format!("hello {}", room_of(r)).as_bytes()))
            .ctx("send")?;
    }
    for i in ROOMS..MANY {
        let want = format!("{}: hello {}", labels[i % ROOMS], room_of(i));
        let got = read_text(&mut socks[i])?;
        ensure!(
            got == want,
            "client {i} received {got:?}, expected {want:?}"
        );
    }
    wait_stat("messages_relayed", (MANY - ROOMS) as u64, STEP)?;
    for (i, s) in socks.iter_mut().enumerate() {
        s.set_nonblocking(true).ctx("nonblocking")?;
        match s.read(&mut [0u8; 64]) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            other => return Err(format!("client {i} has more to read: {other:?}")),
        }
        s.set_nonblocking(false).ctx("blocking")?;
    }

    for (r, s) in socks.iter_mut().enumerate().take(ROOMS) {
        s.write_all(&encode(format!("bye {}", room_of(r)).as_bytes()))
            .ctx("send")?;
    }
    let t = Instant::now();
    module::unload_within(Duration::from_secs(120)).ctx("rmmod with 10,000 clients")?;
    let unloaded = t.elapsed();
    log.wait_contains("kchat: stopped", STEP)?;
    let mut ended = 0;
    let mut sink = [0u8; 4096];
    for s in socks.iter_mut() {
        loop {
            match s.read(&mut sink) {
                Ok(0) => {
                    ended += 1;
                    break;
                }
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                    ended += 1;
                    break;
                }
                Err(_) => break,
            }
        }
    }
    println!(
        "# 10,000 clients: connected in {:.1} s (the accept path waited {accept_waits} times \
         for the loop), rmmod took {:.1} s",
        connected.as_secs_f64(),
        unloaded.as_secs_f64()
    );
    ensure!(
        ended == MANY,
        "only {ended} of {MANY} clients saw their connection end"
    );
    Ok(())
}
