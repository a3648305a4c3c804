//! Rooms, private messages and IPv6 as clients see them: `/join`, `/part`, `/rooms`, `/who`
//! in a room, `/msg`, and IPv4 and IPv6 clients on one port. Every test runs against each
//! engine (see `engine_tests!`).

mod common;

use std::net::{Ipv6Addr, SocketAddr};

use common::{eventually, label, recv, who, Engine, Server};
use kchat_proto::Conn;

engine_tests!(
    join_part_and_notices,
    join_errors_and_max_rooms,
    listings_are_cut_to_max_msg_len,
    private_messages,
    ipv4_and_ipv6_clients,
);

/// - `/join #room` (trailing whitespace ignored) answers `* now in #room (N): LABELS` with
///   the members in order of connection; the old room hears `* LABEL left`, the new one
///   `* LABEL joined`;
/// - a room is shown as first spelled, whatever case later joiners use;
/// - chat messages, nick notices and `/who` stay within the room;
/// - `/part` goes back to `#lobby` and replays its history; `/part` in `#lobby`, `/join` of
///   the room one is in (in any case) get `! already in #room`;
/// - the last member out of a room removes it, and nobody outside hears it leave.
fn join_part_and_notices(engine: Engine) {
    let Some(srv) = Server::start(engine, &[]) else {
        return;
    };
    let mut a = srv.join();
    let mut b = srv.join();
    let lb = label(&b);
    assert_eq!(recv(&mut a), format!("* {lb} joined"));
    let mut c = srv.join();
    let (la, lc) = (label(&a), label(&c));
    assert_eq!(recv(&mut a), format!("* {lc} joined"));
    assert_eq!(recv(&mut b), format!("* {lc} joined"));

    a.send(b"/join  #Rust \r\n").unwrap();
    assert_eq!(recv(&mut a), format!("* now in #Rust (1): {la}"));
    assert_eq!(recv(&mut b), format!("* {la} left"));
    assert_eq!(recv(&mut c), format!("* {la} left"));
    b.send(b"/join #rust").unwrap();
    assert_eq!(recv(&mut b), format!("* now in #Rust (2): {la}, {lb}"));
    assert_eq!(recv(&mut a), format!("* {lb} joined"));
    assert_eq!(recv(&mut c), format!("* {lb} left"));

    a.send(b"hello rust").unwrap();
    assert_eq!(recv(&mut b), format!("{la}: hello rust"));
    c.send(b"hello lobby").unwrap();
    assert_eq!(who(&mut c), format!("* 1 online in #lobby: {lc}"));
    b.send(b"/nick bob").unwrap();
    assert_eq!(recv(&mut a), format!("* {lb} is now bob"));
    assert_eq!(who(&mut b), format!("* 2 online in #Rust: {la}, bob"));

    a.send(b"/part").unwrap();
    assert_eq!(recv(&mut a), format!("* now in #lobby (2): {la}, {lc}"));
    assert_eq!(recv(&mut a), "* last 1 messages of #lobby:");
    assert_eq!(recv(&mut a), format!("{lc}: hello lobby"));
    assert_eq!(recv(&mut b), format!("* {la} left"));
    // Nothing said in #Rust reached C: its next frame is A's return.
    assert_eq!(recv(&mut c), format!("* {la} joined"));
    for (cmd, answer) in [
        (&b"/part"[..], "! already in #lobby"),
        (b"/join #LOBBY", "! already in #lobby"),
    ] {
        a.send(cmd).unwrap();
        assert_eq!(recv(&mut a), answer);
    }
    b.send(b"/join #RUST ").unwrap();
    assert_eq!(recv(&mut b), "! already in #Rust");

    drop(b);
    eventually(|| {
        a.send(b"/rooms").unwrap();
        (recv(&mut a) == "* 1 rooms: #lobby (2)").then_some(())
    });
    // Nobody in the lobby heard bob leave: A's next frame is C's.
    c.send(b"still here").unwrap();
    assert_eq!(recv(&mut a), format!("{lc}: still here"));
}

/// - `/join` without a name gets `! usage: /join #room`, a bad name (no `#`, empty, over 32
///   bytes, a byte outside `[A-Za-z0-9_.-]`) `! invalid room name: ...`;
/// - with `--max-rooms 3` (`#lobby` included) a third room cannot be created:
///   `! too many rooms (max_rooms=3)`, but existing rooms can be joined;
/// - once a room is removed (its last member left) a new one can be created;
/// - `/rooms` lists `#lobby` first, then the others, with their member counts.
fn join_errors_and_max_rooms(engine: Engine) {
    let Some(srv) = Server::start(engine, &["--notices", "0", "--max-rooms", "3"]) else {
        return;
    };
    let mut a = srv.join();
    let mut b = srv.join();
    let mut c = srv.join();
    let (la, lb, lc) = (label(&a), label(&b), label(&c));
    let invalid = "! invalid room name: use # and 1 to 32 of A-Z a-z 0-9 _ . -";
    let long = format!("/join #{}", "x".repeat(33));
    for (cmd, answer) in [
        (&b"/join"[..], "! usage: /join #room"),
        (b"/join   \n", "! usage: /join #room"),
        (b"/join rust", invalid),
        (b"/join #", invalid),
        (b"/join ##", invalid),
        (b"/join #a b", invalid),
        ("/join #café".as_bytes(), invalid),
        (long.as_bytes(), invalid),
    ] {
        a.send(cmd).unwrap();
        let got = recv(&mut a);
        assert_eq!(got, answer, "for {:?}", String::from_utf8_lossy(cmd));
    }
    let longest = format!("#{}", "x".repeat(32));
    a.send(format!("/join {longest}").as_bytes()).unwrap();
    assert_eq!(recv(&mut a), format!("* now in {longest} (1): {la}"));
    b.send(b"/join #two").unwrap();
    assert_eq!(recv(&mut b), format!("* now in #two (1): {lb}"));
    c.send(b"/join #three").unwrap();
    assert_eq!(recv(&mut c), "! too many rooms (max_rooms=3)");
    c.send(b"/join #TWO").unwrap();
    assert_eq!(recv(&mut c), format!("* now in #two (2): {lb}, {lc}"));
    c.send(b"/rooms").unwrap();
    assert_eq!(
        recv(&mut c),
        format!("* 3 rooms: #lobby (0), #two (2), {longest} (1)")
    );
    a.send(b"/part").unwrap();
    assert_eq!(recv(&mut a), format!("* now in #lobby (1): {la}"));
    c.send(b"/join #three").unwrap();
    assert_eq!(recv(&mut c), format!("* now in #three (1): {lc}"));
    a.send(b"/rooms").unwrap();
    assert_eq!(recv(&mut a), "* 3 rooms: #lobby (1), #three (1), #two (1)");
}

/// - `/rooms` orders the rooms after `#lobby` by name ignoring case, each as first spelled;
/// - `/rooms`, `/who` and the `* now in` answer are cut to max_msg_len bytes, ending in
///   `...`, when longer.
fn listings_are_cut_to_max_msg_len(engine: Engine) {
    let Some(srv) = Server::start(engine, &["--notices", "0", "--max-msg-len", "64"]) else {
        return;
    };
    let mut clients: Vec<Conn> = (0..5).map(|_| srv.join()).collect();
    for (c, room) in clients.iter_mut().zip(["#b", "#A", "#c_"]) {
        c.send(format!("/join {room}").as_bytes()).unwrap();
        assert!(recv(c).starts_with(&format!("* now in {room} (1): ")));
    }
    let full = "* 4 rooms: #lobby (2), #A (1), #b (1), #c_ (1)";
    clients[3].send(b"/rooms").unwrap();
    assert_eq!(recv(&mut clients[3]), full);
    let z = format!("#{}", "z".repeat(20));
    clients[3].send(format!("/join {z}").as_bytes()).unwrap();
    recv(&mut clients[3]);
    clients[4].send(b"/rooms").unwrap();
    let full = format!("* 5 rooms: #lobby (1), #A (1), #b (1), #c_ (1), {z} (1)");
    let got = recv(&mut clients[4]);
    assert_eq!(got, format!("{}...", &full[..61]));
    assert_eq!(got.len(), 64);

    let (long_a, long_x) = ("a".repeat(30), "x".repeat(30));
    clients[0]
        .send(format!("/nick {long_a}").as_bytes())
        .unwrap();
    let alone = format!("* 1 online in #b: {long_a}");
    assert_eq!(who(&mut clients[0]), alone);
    clients[4]
        .send(format!("/nick {long_x}").as_bytes())
        .unwrap();
    clients[4].send(b"/join #B").unwrap();
    let full = format!("* now in #b (2): {long_a}, {long_x}");
    assert_eq!(recv(&mut clients[4]), format!("{}...", &full[..61]));
    let full = format!("* 2 online in #b: {long_a}, {long_x}");
    assert_eq!(who(&mut clients[0]), format!("{}...", &full[..61]));
}

/// - `/msg NICK TEXT` reaches only the client with that label, ignoring case, nick or
///   address, in whatever room it is, as `LABEL (private): TEXT`;
/// - an unknown nick gets `! no such nick: NICK`; a missing nick or text
///   `! usage: /msg NICK TEXT`;
/// - private messages are never history.
fn private_messages(engine: Engine) {
    let Some(srv) = Server::start(engine, &["--notices", "0"]) else {
        return;
    };
    let mut a = srv.join();
    let mut b = srv.join();
    let mut c = srv.join();
    let (lb, lc) = (label(&b), label(&c));
    a.send(b"/nick alice").unwrap();
    assert_eq!(
        who(&mut a),
        format!("* 3 online in #lobby: alice, {lb}, {lc}")
    );
    c.send(b"/join #x").unwrap();
    assert_eq!(recv(&mut c), format!("* now in #x (1): {lc}"));

    b.send(b"/msg ALICE  hi there \n").unwrap();
    assert_eq!(recv(&mut a), format!("{lb} (private): hi there"));
    a.send(format!("/msg {lc} to x").as_bytes()).unwrap();
    assert_eq!(recv(&mut c), "alice (private): to x");
    c.send(format!("/msg {lb} back").as_bytes()).unwrap();
    assert_eq!(recv(&mut b), format!("{lc} (private): back"));
    for (cmd, answer) in [
        (&b"/msg nobody hi"[..], "! no such nick: nobody"),
        (b"/msg alice", "! usage: /msg NICK TEXT"),
        (b"/msg alice   ", "! usage: /msg NICK TEXT"),
        (b"/msg", "! usage: /msg NICK TEXT"),
    ] {
        b.send(cmd).unwrap();
        assert_eq!(recv(&mut b), answer);
    }
    // Nobody else got anything: A's next frame is B's chat message.
    b.send(b"public").unwrap();
    assert_eq!(recv(&mut a), format!("{lb}: public"));

    let mut d = srv.connect();
    d.send(b"/who").unwrap();
    assert_eq!(recv(&mut d), "* last 1 messages of #lobby:");
    assert_eq!(recv(&mut d), format!("{lb}: public"));
    let ld = label(&d);
    assert_eq!(
        recv(&mut d),
        format!("* 3 online in #lobby: alice, {lb}, {ld}")
    );
}

/// - one port serves IPv4 and IPv6 clients: a client from `[::1]` and one from 127.0.0.1
///   chat with each other;
/// - an IPv6 client is labelled `[ADDR]:PORT`, an IPv4 one `A.B.C.D:PORT`, also when it
///   arrives as a v4-mapped address (`::ffff:127.0.0.1`);
/// - `/msg` takes either kind of address label.
fn ipv4_and_ipv6_clients(engine: Engine) {
    let Some(srv) = Server::start(engine, &[]) else {
        return;
    };
    let mut v4 = srv.join();
    let Some(mut v6) = srv.connect_v6() else {
        return;
    };
    let l4 = format!("127.0.0.1:{}", v4.local_addr().unwrap().port());
    let l6 = format!("[::1]:{}", v6.local_addr().unwrap().port());
    assert_eq!(label(&v6), l6);
    assert_eq!(recv(&mut v4), format!("* {l6} joined"));
    assert_eq!(who(&mut v6), format!("* 2 online in #lobby: {l4}, {l6}"));

    v4.send(b"hi from v4").unwrap();
    assert_eq!(recv(&mut v6), format!("{l4}: hi from v4"));
    v6.send(b"hi from v6").unwrap();
    assert_eq!(recv(&mut v4), format!("{l6}: hi from v6"));
    v4.send(format!("/msg {l6} psst").as_bytes()).unwrap();
    assert_eq!(recv(&mut v6), format!("{l4} (private): psst"));
    v6.send(format!("/msg {l4} back").as_bytes()).unwrap();
    assert_eq!(recv(&mut v4), format!("{l6} (private): back"));

    let mapped: SocketAddr = (
        "::ffff:127.0.0.1".parse::<Ipv6Addr>().unwrap(),
        srv.addr.port(),
    )
        .into();
    let mut m = Conn::connect(mapped).expect("connect to a v4-mapped address");
    let lm = format!("127.0.0.1:{}", m.local_addr().unwrap().port());
    assert_eq!(recv(&mut v4), format!("* {lm} joined"));
    assert_eq!(recv(&mut v6), format!("* {lm} joined"));
    assert_eq!(
        who(&mut m),
        format!("* 3 online in #lobby: {l4}, {l6}, {lm}")
    );
}
