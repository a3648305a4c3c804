//! The chat as clients see it: relaying, frame reassembly, `/nick`, `/who`, notices, and many
//! clients at once. Every test runs against each engine (see `engine_tests!`).

mod common;

use std::{thread, time::Duration};

use common::{label, recv, Engine, Server};
use kchat_proto::encode;

engine_tests!(
    relay_between_two_clients,
    split_frames,
    nick_and_who,
    who_is_cut_to_max_msg_len,
    notices_order,
    all_to_all,
);

/// - a chat message reaches the other client as `IP:PORT: text`, and not its sender;
/// - keep-alive frames (length 0) are ignored;
/// - any bytes (not only UTF-8) are relayed unchanged;
/// - both directions work.
fn relay_between_two_clients(engine: Engine) {
    let Some(srv) = Server::start(engine, &["--notices", "0"]) else {
        return;
    };
    let mut a = srv.join();
    let mut b = srv.join();
    a.send_raw(&[0, 0, 0, 0]).unwrap();
    a.send(b"hello").unwrap();
    assert_eq!(recv(&mut b), format!("{}: hello", label(&a)));
    b.send(b"back").unwrap();
    // A's first frame is B's message: it never got its own.
    assert_eq!(recv(&mut a), format!("{}: back", label(&b)));
    let raw = b"caf\xc3\xa9 \x00\x01\xff\r\n";
    a.send(raw).unwrap();
    let got = common::recv_bytes(&mut b);
    let mut want = format!("{}: ", label(&a)).into_bytes();
    want.extend_from_slice(raw);
    assert_eq!(got, want);
}

/// - a frame written one byte per write is reassembled;
/// - a header split across writes (with pauses, so it spans reads) is reassembled;
/// - 50 frames in one write all arrive, in order;
/// - a 200 000-byte payload, larger than any read buffer, arrives intact.
fn split_frames(engine: Engine) {
    let Some(srv) = Server::start(engine, &["--notices", "0", "--max-msg-len", "300000"]) else {
        return;
    };
    let mut a = srv.join();
    let mut b = srv.join();
    let la = label(&a);

    for byte in encode(b"one byte at a time") {
        a.send_raw(&[byte]).unwrap();
    }
    assert_eq!(recv(&mut b), format!("{la}: one byte at a time"));

    let frame = encode(b"split header");
    for piece in [&frame[..2], &frame[2..3], &frame[3..6], &frame[6..]] {
        a.send_raw(piece).unwrap();
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(recv(&mut b), format!("{la}: split header"));

    let mut burst = Vec::new();
    for i in 0..50 {
        burst.extend_from_slice(&encode(format!("burst {i}").as_bytes()));
    }
    a.send_raw(&burst).unwrap();
    for i in 0..50 {
        assert_eq!(recv(&mut b), format!("{la}: burst {i}"));
    }

    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    a.send(&big).unwrap();
    let got = common::recv_bytes(&mut b);
    assert_eq!(&got[..la.len() + 2], format!("{la}: ").as_bytes());
    assert!(
        got[la.len() + 2..] == big[..],
        "the big payload arrived changed"
    );
}

/// - `/nick` without a name, with a name over 32 bytes or with a bad byte gets the exact
///   error texts, to the asker only;
/// - a nick taken by another client, in any case, is refused with `! nick NAME is taken`;
/// - a new nick tells the others `* OLD is now NEW` and labels the client's messages;
/// - setting the same nick again is silent; changing only its case is allowed;
/// - `/who` (trailing whitespace ignored) lists everyone in order of connection;
/// - any other `/command` is relayed as chat.
fn nick_and_who(engine: Engine) {
    let Some(srv) = Server::start(engine, &[]) else {
        return;
    };
    let mut a = srv.join();
    let mut b = srv.join();
    assert_eq!(recv(&mut a), format!("* {} joined", label(&b)));
    let mut c = srv.join();
    let (la, lb, lc) = (label(&a), label(&b), label(&c));
    assert_eq!(recv(&mut a), format!("* {lc} joined"));
    assert_eq!(recv(&mut b), format!("* {lc} joined"));

    a.send(b"/who \r\n").unwrap();
    assert_eq!(
        recv(&mut a),
        format!("* 3 online in #lobby: {la}, {lb}, {lc}")
    );

    for (cmd, answer) in [
        (&b"/nick"[..], "! usage: /nick NAME"),
        (b"/nick   \n", "! usage: /nick NAME"),
        (
            &[b"/nick ".as_slice(), &[b'x'; 33]].concat(),
            "! invalid nick: longer than 32 bytes",
        ),
        (
            b"/nick bad name",
            "! invalid nick: use only A-Z a-z 0-9 _ . -",
        ),
        (b"/nick b:b", "! invalid nick: use only A-Z a-z 0-9 _ . -"),
    ] {
        a.send(cmd).unwrap();
        assert_eq!(
            recv(&mut a),
            answer,
            "for {:?}",
            String::from_utf8_lossy(cmd)
        );
    }

    a.send(b"/nick  alice \n").unwrap();
    assert_eq!(recv(&mut b), format!("* {la} is now alice"));
    assert_eq!(recv(&mut c), format!("* {la} is now alice"));
    b.send(b"/nick ALICE").unwrap();
    assert_eq!(recv(&mut b), "! nick ALICE is taken");
    // Same nick again: nothing at all; a case change of one's own nick: allowed.
    a.send(b"/nick alice").unwrap();
    a.send(b"/nick Alice").unwrap();
    assert_eq!(recv(&mut b), "* alice is now Alice");
    assert_eq!(recv(&mut c), "* alice is now Alice");
    a.send(b"/nick x.Y_z-9").unwrap();
    assert_eq!(recv(&mut b), "* Alice is now x.Y_z-9");
    assert_eq!(recv(&mut c), "* Alice is now x.Y_z-9");
    a.send(b"/nick Alice").unwrap();
    assert_eq!(recv(&mut b), "* x.Y_z-9 is now Alice");
    assert_eq!(recv(&mut c), "* x.Y_z-9 is now Alice");

    a.send(b"hi from alice").unwrap();
    assert_eq!(recv(&mut b), "Alice: hi from alice");
    assert_eq!(recv(&mut c), "Alice: hi from alice");
    // A heard none of its own notices or messages: its next frame is B's.
    b.send(b"/whatever x").unwrap();
    assert_eq!(recv(&mut a), format!("{lb}: /whatever x"));
    assert_eq!(recv(&mut c), format!("{lb}: /whatever x"));

    c.send(b"/who").unwrap();
    assert_eq!(
        recv(&mut c),
        format!("* 3 online in #lobby: Alice, {lb}, {lc}")
    );
    // A nick freed by a client that left can be taken.
    drop(a);
    assert_eq!(recv(&mut b), "* Alice left");
    assert_eq!(recv(&mut c), "* Alice left");
    b.send(b"/nick alice").unwrap();
    assert_eq!(recv(&mut c), format!("* {lb} is now alice"));
}

/// - a `/who` answer longer than max_msg_len is cut to exactly max_msg_len bytes, the last
///   three being `...`;
/// - an answer of exactly max_msg_len bytes is not cut.
fn who_is_cut_to_max_msg_len(engine: Engine) {
    let Some(srv) = Server::start(engine, &["--notices", "0", "--max-msg-len", "40"]) else {
        return;
    };
    let mut a = srv.join();
    let mut b = srv.join();
    a.send(b"/nick aaaaaaaa").unwrap();
    b.send(b"/nick bbbbbbbb").unwrap();
    // "* 2 online in #lobby: aaaaaaaa, bbbbbbbb" is 40 bytes.
    let want = "* 2 online in #lobby: aaaaaaaa, bbbbbbbb";
    common::eventually(|| {
        a.send(b"/who").unwrap();
        (recv(&mut a) == want).then_some(())
    });
    b.send(b"/nick bbbbbbbbb").unwrap();
    b.send(b"/who").unwrap();
    assert_eq!(recv(&mut b), "* 2 online in #lobby: aaaaaaaa, bbbbb...");
    let _c = srv.join();
    a.send(b"/who").unwrap();
    let got = recv(&mut a);
    assert_eq!(got, "* 3 online in #lobby: aaaaaaaa, bbbbb...");
    assert_eq!(got.len(), 40);
}

/// - `* LABEL joined` reaches the others before the newcomer's first message, even when the
///   newcomer sends at once;
/// - the newcomer gets no notice about itself;
/// - a client's last message comes before `* LABEL left`;
/// - with `--notices 0` there are no join, leave or nick notices.
fn notices_order(engine: Engine) {
    let Some(srv) = Server::start(engine, &[]) else {
        return;
    };
    let mut a = srv.join();
    let mut b = srv.connect();
    b.send(b"first").unwrap();
    let lb = label(&b);
    assert_eq!(recv(&mut a), format!("* {lb} joined"));
    assert_eq!(recv(&mut a), format!("{lb}: first"));
    b.send(b"/who").unwrap();
    // B's first frame is the answer: no notice about itself.
    assert!(recv(&mut b).starts_with("* 2 online in #lobby: "));
    b.send(b"last").unwrap();
    drop(b);
    assert_eq!(recv(&mut a), format!("{lb}: last"));
    assert_eq!(recv(&mut a), format!("* {lb} left"));

    let Some(quiet) = Server::start(engine, &["--notices", "0"]) else {
        return;
    };
    let mut a = quiet.join();
    let mut b = quiet.join();
    b.send(b"/nick bob").unwrap();
    b.send(b"bye").unwrap();
    drop(b);
    assert_eq!(recv(&mut a), "bob: bye");
    common::eventually(|| {
        a.send(b"/who").unwrap();
        let answer = recv(&mut a);
        assert!(
            answer.contains(" online in #lobby: "),
            "unexpected {answer:?}"
        );
        (answer == format!("* 1 online in #lobby: {}", label(&a))).then_some(())
    });
}

/// - 20 clients each sending 20 messages: every client gets exactly the 380 messages of the
///   others, none of its own, each intact and labelled with its sender, and each sender's
///   messages in the order they were sent.
fn all_to_all(engine: Engine) {
    const N: usize = 20;
    const M: usize = 20;
    let Some(srv) = Server::start(engine, &["--notices", "0"]) else {
        return;
    };
    let mut clients: Vec<_> = (0..N).map(|_| srv.join()).collect();
    let labels: Vec<String> = clients.iter().map(label).collect();
    for j in 0..M {
        for (i, c) in clients.iter_mut().enumerate() {
            c.send(format!("msg {j} from {i} {}", "x".repeat(i * 7)).as_bytes())
                .unwrap();
        }
    }
    for (me, c) in clients.iter_mut().enumerate() {
        let mut next = [0usize; N];
        for _ in 0..(N - 1) * M {
            let frame = recv(c);
            let (who, text) = frame.split_once(": ").expect("LABEL: text");
            let i = labels
                .iter()
                .position(|l| l == who)
                .expect("a known sender");
            assert_ne!(i, me, "client {me} got its own message");
            let j = next[i];
            assert_eq!(text, format!("msg {j} from {i} {}", "x".repeat(i * 7)));
            next[i] += 1;
        }
        for (i, &n) in next.iter().enumerate() {
            assert_eq!(n, if i == me { 0 } else { M }, "client {me} from {i}");
        }
    }
    // Nothing more is on its way: a last round trip comes back first.
    clients[0].send(b"/who").unwrap();
    assert!(recv(&mut clients[0]).starts_with(&format!("* {N} online in #lobby: ")));
}
