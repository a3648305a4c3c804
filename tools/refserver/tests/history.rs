//! History as clients see it: the replay at connect and on `/join`, its bounds, and the
//! exactly-once rule while messages keep coming. Every test runs against each engine (see
//! `engine_tests!`).

mod common;

use std::{thread, time::Duration};

use common::{label, recv, who, Engine, Server};
use kchat_proto::Conn;

engine_tests!(
    replay_at_connect,
    replay_on_join,
    history_is_only_chat,
    history_bounds,
    exactly_once_with_everything_kept,
    exactly_once_with_ten_kept,
);

/// Sends `/join ROOM` from `c` and returns the answer (`* now in ...`).
fn join(c: &mut Conn, room: &str) -> String {
    c.send(format!("/join {room}").as_bytes()).unwrap();
    let answer = recv(c);
    assert!(answer.starts_with("* now in #"), "{answer:?}");
    answer
}

/// - a new client gets `* last K messages of #lobby:` and the last K (of `--history 3`)
///   chat messages exactly as they were relayed, before anything else;
/// - with `--history 0`, nothing.
fn replay_at_connect(engine: Engine) {
    for (history, kept) in [("3", 3), ("0", 0)] {
        let Some(srv) = Server::start(engine, &["--notices", "0", "--history", history]) else {
            return;
        };
        let mut a = srv.join();
        let la = label(&a);
        for i in 1..=5 {
            a.send(format!("m{i}").as_bytes()).unwrap();
        }
        who(&mut a);
        let mut c = srv.connect();
        c.send(b"/who").unwrap();
        if kept > 0 {
            assert_eq!(recv(&mut c), format!("* last {kept} messages of #lobby:"));
        }
        for i in 6 - kept..=5 {
            assert_eq!(recv(&mut c), format!("{la}: m{i}"));
        }
        assert!(recv(&mut c).starts_with("* 2 online in #lobby: "));
    }
}

/// - `/join` answers `* now in ...`, then `* last K messages of #room:` and the room's last
///   K chat messages, then live messages, each once;
/// - a room that was removed (its last member left) comes back without its history.
fn replay_on_join(engine: Engine) {
    let Some(srv) = Server::start(engine, &["--notices", "0", "--history", "2"]) else {
        return;
    };
    let mut a = srv.join();
    let mut b = srv.join();
    let (la, lb) = (label(&a), label(&b));
    join(&mut a, "#r");
    for i in 1..=3 {
        a.send(format!("r{i}").as_bytes()).unwrap();
    }
    who(&mut a);
    assert_eq!(join(&mut b, "#R"), format!("* now in #r (2): {la}, {lb}"));
    assert_eq!(recv(&mut b), "* last 2 messages of #r:");
    assert_eq!(recv(&mut b), format!("{la}: r2"));
    assert_eq!(recv(&mut b), format!("{la}: r3"));
    a.send(b"r4").unwrap();
    assert_eq!(recv(&mut b), format!("{la}: r4"));
    // The room empties: it goes with its history.
    a.send(b"/part").unwrap();
    assert_eq!(recv(&mut a), format!("* now in #lobby (1): {la}"));
    b.send(b"/part").unwrap();
    assert_eq!(recv(&mut b), format!("* now in #lobby (2): {la}, {lb}"));
    join(&mut a, "#r");
    assert_eq!(who(&mut a), format!("* 1 online in #r: {la}"));
}

/// - join, leave and nick notices, command answers and errors, and private messages are
///   not history: only chat messages are replayed.
fn history_is_only_chat(engine: Engine) {
    let Some(srv) = Server::start(engine, &[]) else {
        return;
    };
    let mut a = srv.join();
    let mut b = srv.join();
    let lb = label(&b);
    assert_eq!(recv(&mut a), format!("* {lb} joined"));
    a.send(b"/nick alice").unwrap();
    a.send(b"/nick no:pe").unwrap();
    a.send(b"/rooms").unwrap();
    a.send(format!("/msg {lb} psst").as_bytes()).unwrap();
    assert_eq!(recv(&mut b), format!("* {} is now alice", label(&a)));
    assert_eq!(recv(&mut b), "alice (private): psst");
    b.send(b"/join #x").unwrap();
    b.send(b"/part").unwrap();
    who(&mut b);
    let mut c = srv.connect();
    c.send(b"/who").unwrap();
    assert!(recv(&mut c).starts_with("* 3 online in #lobby: alice, "));
    b.send(b"the only one").unwrap();
    assert_eq!(recv(&mut c), format!("{lb}: the only one"));
    let mut d = srv.connect();
    d.send(b"/who").unwrap();
    assert_eq!(recv(&mut d), "* last 1 messages of #lobby:");
    assert_eq!(recv(&mut d), format!("{lb}: the only one"));
}

/// - a room keeps at most 64 KiB of frames: of three messages of 30 000 bytes (with
///   `--history 20`), a newcomer gets the last two;
/// - a message whose frame alone is over 64 KiB empties the history: nothing older is
///   replayed without it.
fn history_bounds(engine: Engine) {
    let args = ["--notices", "0", "--max-msg-len", "70000"];
    let Some(srv) = Server::start(engine, &args) else {
        return;
    };
    let mut a = srv.join();
    let mut b = srv.join();
    let la = label(&a);
    join(&mut a, "#big");
    let body = |i: usize, len: usize| format!("{i}{}", "x".repeat(len - 1));
    for i in 1..=3 {
        a.send(body(i, 30_000).as_bytes()).unwrap();
    }
    who(&mut a);
    join(&mut b, "#big");
    assert_eq!(recv(&mut b), "* last 2 messages of #big:");
    for i in 2..=3 {
        assert_eq!(recv(&mut b), format!("{la}: {}", body(i, 30_000)));
    }
    b.send(b"/part").unwrap();
    recv(&mut b);
    a.send(body(4, 66_000).as_bytes()).unwrap();
    a.send(b"small").unwrap();
    who(&mut a);
    join(&mut b, "#big");
    assert_eq!(recv(&mut b), "* last 1 messages of #big:");
    assert_eq!(recv(&mut b), format!("{la}: small"));
}

/// See [`exactly_once`]: with a history that keeps every message.
fn exactly_once_with_everything_kept(engine: Engine) {
    exactly_once(engine, 1000);
}

/// See [`exactly_once`]: with a history of the last ten messages.
fn exactly_once_with_ten_kept(engine: Engine) {
    exactly_once(engine, 10);
}

/// Senders in #r, each numbering its messages.
const SENDERS: usize = 4;
const MESSAGES: usize = 200;
/// Clients that join #r while the senders send.
const JOINERS: usize = 6;

/// While 4 senders send 200 messages each to #r, 6 clients join #r one after the other
/// (every other one leaves and joins again), and one joins once all is sent:
///
/// - in each stay in #r, a joiner gets from each sender an unbroken run of its messages,
///   replayed then live, in order, none twice;
/// - in its last stay each run goes on to the sender's last message (with `--history 10` a
///   run may also be empty: its sender was done before the stay's history window began);
/// - with `--history 1000` (all kept) each run starts at the sender's first message;
/// - the late joiner's replay is the last `history` messages: every message with
///   `--history 1000`, and each sender's last ones, ten in all, with `--history 10`.
fn exactly_once(engine: Engine, history: usize) {
    let history_arg = history.to_string();
    let args = [
        "--notices",
        "0",
        "--max-msg-rate",
        "0",
        "--history",
        &history_arg,
    ];
    let Some(srv) = Server::start(engine, &args) else {
        return;
    };
    let senders: Vec<Conn> = (0..SENDERS)
        .map(|i| {
            let mut c = srv.join();
            c.send(format!("/nick s{i}").as_bytes()).unwrap();
            join(&mut c, "#r");
            c
        })
        .collect();
    let sending: Vec<_> = senders
        .into_iter()
        .map(|mut c| {
            thread::spawn(move || {
                for j in 0..MESSAGES {
                    c.send(j.to_string().as_bytes()).unwrap();
                    thread::sleep(Duration::from_millis(1));
                }
                who(&mut c);
                c
            })
        })
        .collect();
    let mut joiners = Vec::new();
    for k in 0..JOINERS {
        let mut c = srv.join();
        c.send(b"/join #r").unwrap();
        if k % 2 == 1 {
            thread::sleep(Duration::from_millis(15));
            c.send(b"/part").unwrap();
            thread::sleep(Duration::from_millis(5));
            c.send(b"/join #r").unwrap();
        }
        joiners.push(c);
        thread::sleep(Duration::from_millis(30));
    }
    let _senders: Vec<Conn> = sending.into_iter().map(|t| t.join().unwrap()).collect();
    for c in &mut joiners {
        check_stays(c, history);
    }

    let mut late = srv.join();
    join(&mut late, "#r");
    let kept = history.min(SENDERS * MESSAGES);
    late.send(b"/who").unwrap();
    assert_eq!(recv(&mut late), format!("* last {kept} messages of #r:"));
    let mut last = [None; SENDERS];
    for _ in 0..kept {
        let (i, j) = chat(&recv(&mut late));
        assert!(
            last[i].is_none_or(|l| l + 1 == j),
            "s{i}: {j} after {last:?}"
        );
        last[i] = Some(j);
    }
    for (i, l) in last.iter().enumerate() {
        assert!(l.is_none_or(|l| l == MESSAGES - 1), "s{i} ended at {l:?}");
    }
    let everyone = SENDERS + JOINERS + 1;
    assert!(recv(&mut late).starts_with(&format!("* {everyone} online in #r: ")));
}

/// A chat message from a sender: its index and the message's number.
fn chat(frame: &str) -> (usize, usize) {
    let parse = || {
        let (who, n) = frame.split_once(": ")?;
        Some((who.strip_prefix('s')?.parse().ok()?, n.parse().ok()?))
    };
    parse().unwrap_or_else(|| panic!("not a sender's message: {frame:?}"))
}

/// Asks joiner `c` for `/who` once every message was sent, and reads what it got in #r, stay
/// after stay, up to the answer, checking the runs (see [`exactly_once`]), and on until the
/// runs of its last stay are complete: each goes on to its sender's last message, or, when
/// the history does not keep everything, may be empty (that sender was done before the
/// joiner's history window began).
fn check_stays(c: &mut Conn, history: usize) {
    let everything_kept = history >= SENDERS * MESSAGES;
    // The next number expected from each sender in the current stay, once one came.
    let mut next: [Option<usize>; SENDERS] = [None; SENDERS];
    let mut in_r = false;
    let mut answered = false;
    c.send(b"/who").unwrap();
    let complete = |next: &[Option<usize>]| {
        next.iter()
            .all(|&n| n == Some(MESSAGES) || (n.is_none() && !everything_kept))
    };
    while !(answered && in_r && complete(&next)) {
        let frame = recv(c);
        if frame.starts_with("* now in #r (") {
            in_r = true;
            next = [None; SENDERS];
        } else if frame.starts_with("* now in #lobby (") {
            in_r = false;
        } else if let Some(head) = frame.strip_prefix("* last ") {
            let kept: usize = head.trim_end_matches(" messages of #r:").parse().unwrap();
            assert!(in_r && kept <= history, "{frame:?}");
        } else if frame.contains(" online in #r: ") {
            answered = true;
        } else {
            assert!(in_r, "{frame:?} outside #r");
            let (i, j) = chat(&frame);
            let want = next[i].unwrap_or(if everything_kept { 0 } else { j });
            assert_eq!(j, want, "from s{i}: {j} where {want} was due");
            next[i] = Some(j + 1);
        }
    }
}
