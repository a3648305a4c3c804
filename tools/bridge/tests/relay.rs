// SPDX-License-Identifier: GPL-2.0
//! Room and private messages between nodes: two and three bridges on a real nats-server,
//! each with a fake kchat. Every message arrives once, in its sender's order, at every other
//! node and never back at its own.

mod common;

use common::{
    bridge::Bridge,
    kchat::{texts, view_of, FakeKchat, MAX_FRAME},
    nats::NatsServer,
    SECRET, WAIT,
};

/// Heartbeats every half second: presence settles fast.
const FAST: &[&str] = &["--heartbeat", "0.5"];

/// The room messages `k` was given from `member`, all rooms, in order, as raw bytes.
fn from(k: &FakeKchat, member: &str) -> Vec<Vec<u8>> {
    k.state()
        .msgs
        .iter()
        .filter(|(_, m, _)| m == member)
        .map(|(_, _, t)| t.clone())
        .collect()
}

#[test]
fn two_bridges_relay_both_ways_in_order() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let ka = FakeKchat::start("A", SECRET, &[("#lobby", "alice"), ("#Rust.Dev", "alice")]);
    let kb = FakeKchat::start("B", SECRET, &[("#lobby", "bob"), ("#rust.dev", "bob")]);
    let _a = Bridge::start(&ka, &[nats.port], FAST);
    let _b = Bridge::start(&kb, &[nats.port], FAST);
    let want_a = view_of(&[("#lobby", "bob@B"), ("#rust.dev", "bob@B")]);
    let want_b = view_of(&[("#lobby", "alice@A"), ("#rust.dev", "alice@A")]);
    assert!(
        ka.wait(WAIT, |s| s.view == want_a),
        "A sees {:?}",
        ka.view()
    );
    assert!(
        kb.wait(WAIT, |s| s.view == want_b),
        "B sees {:?}",
        kb.view()
    );

    // Texts with spaces, CR LF, NATS protocol words, non-UTF-8 bytes.
    const N: usize = 300;
    let a_texts: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            let mut t = format!("a{i} two  spaces\r\nMSG x 1 3\r\nPING\r\n").into_bytes();
            t.extend_from_slice(&[0, 0xff, b' ']);
            t
        })
        .chain([b"end".to_vec()])
        .collect();
    let b_texts: Vec<Vec<u8>> = (0..N)
        .map(|i| format!("b{i}").into_bytes())
        .chain([b"end".to_vec()])
        .collect();
    for i in 0..a_texts.len().max(b_texts.len()) {
        if let Some(t) = a_texts.get(i) {
            ka.say(if i % 2 == 0 { "#lobby" } else { "#Rust.Dev" }, "alice", t);
        }
        if let Some(t) = b_texts.get(i) {
            kb.say("#lobby", "bob", t);
        }
    }
    assert!(
        kb.wait(WAIT, |s| s.msgs.last().is_some_and(|m| m.2 == b"end")),
        "B got {} of alice's messages",
        kb.state().msgs.len()
    );
    assert!(
        ka.wait(WAIT, |s| s.msgs.last().is_some_and(|m| m.2 == b"end")),
        "A got {} of bob's messages",
        ka.state().msgs.len()
    );
    // Each once, in the sender's order across both rooms, nothing of one's own back.
    assert_eq!(from(&kb, "alice@A"), a_texts);
    assert_eq!(from(&ka, "bob@B"), b_texts);
    assert_eq!(kb.state().msgs.len(), a_texts.len(), "only alice's, once");
    assert_eq!(ka.state().msgs.len(), b_texts.len(), "only bob's, once");
    let lobby = texts(&kb.state(), "#lobby", "alice@A");
    let rust = texts(&kb.state(), "#rust.dev", "alice@A");
    assert_eq!(
        (lobby.len(), rust.len()),
        (151, 150),
        "each in its own room"
    );
    assert!(ka.state().errors.is_empty(), "{:?}", ka.state().errors);
    assert!(kb.state().errors.is_empty(), "{:?}", kb.state().errors);
}

#[test]
fn three_bridges_relay_without_duplicates_or_loops() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let names = [("A", "alice"), ("B", "bob"), ("C", "carol")];
    let ks: Vec<FakeKchat> = names
        .iter()
        .map(|(node, nick)| FakeKchat::start(node, SECRET, &[("#lobby", nick)]))
        .collect();
    let _bridges: Vec<Bridge> = ks
        .iter()
        .map(|k| Bridge::start(k, &[nats.port], FAST))
        .collect();
    for (i, k) in ks.iter().enumerate() {
        let others: Vec<(&str, String)> = names
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, (node, nick))| ("#lobby", format!("{nick}@{node}")))
            .collect();
        let want = others
            .iter()
            .map(|(r, m)| (r.to_string(), m.clone()))
            .collect();
        assert!(
            k.wait(WAIT, |s| s.view == want),
            "{} sees {:?}",
            k.node,
            k.view()
        );
    }
    const N: usize = 150;
    for i in 0..=N {
        for (k, (_, nick)) in ks.iter().zip(names) {
            let text = if i == N {
                "end".to_string()
            } else {
                format!("{nick} {i}")
            };
            k.say("#lobby", nick, text.as_bytes());
        }
    }
    for (i, k) in ks.iter().enumerate() {
        for (j, (node, nick)) in names.iter().enumerate() {
            let member = format!("{nick}@{node}");
            if i == j {
                assert!(from(k, &member).is_empty(), "{} got its own", k.node);
                continue;
            }
            assert!(
                k.wait(WAIT, |s| texts(s, "#lobby", &member)
                    .last()
                    .map(String::as_str)
                    == Some("end")),
                "{} did not get {member}'s end",
                k.node
            );
            let want: Vec<String> = (0..N)
                .map(|n| format!("{nick} {n}"))
                .chain(["end".to_string()])
                .collect();
            assert_eq!(k.texts_from("#lobby", &member), want, "at {}", k.node);
        }
        assert_eq!(
            k.state().msgs.len(),
            2 * (N + 1),
            "{}: no duplicates",
            k.node
        );
        assert!(k.state().errors.is_empty(), "{:?}", k.state().errors);
    }
}

#[test]
fn private_messages_reach_only_their_node() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let ka = FakeKchat::start("A", SECRET, &[("#lobby", "alice")]);
    let kb = FakeKchat::start("B", SECRET, &[("#lobby", "bob")]);
    let kc = FakeKchat::start("C", SECRET, &[("#lobby", "carol")]);
    let _bridges: Vec<Bridge> = [&ka, &kb, &kc]
        .iter()
        .map(|k| Bridge::start(k, &[nats.port], FAST))
        .collect();
    for k in [&ka, &kb, &kc] {
        assert!(
            k.wait(WAIT, |s| s.view.len() == 2),
            "{} sees {:?}",
            k.node,
            k.view()
        );
    }
    ka.private("bob@B", "alice", "for bob  only\r\n");
    kc.private("alice@A", "carol", "hi alice");
    kb.private("carol@C", "bob", "to carol");
    ka.private("bob@B", "alice", "second");
    let privs = |k: &FakeKchat| {
        k.state()
            .privs
            .iter()
            .map(|(to, from, t)| format!("{to} {from} {}", String::from_utf8_lossy(t)))
            .collect::<Vec<_>>()
    };
    assert!(kb.wait(WAIT, |s| s.privs.len() >= 2), "B: {:?}", privs(&kb));
    assert!(
        ka.wait(WAIT, |s| !s.privs.is_empty()),
        "A: {:?}",
        privs(&ka)
    );
    assert!(
        kc.wait(WAIT, |s| !s.privs.is_empty()),
        "C: {:?}",
        privs(&kc)
    );
    // A last private message from each sender to each node: once it is in, nothing of
    // that sender can still be on its way (per-sender order).
    for (k, target, from) in [
        (&ka, "carol@C", "alice"),
        (&kb, "alice@A", "bob"),
        (&kc, "bob@B", "carol"),
        (&ka, "bob@B", "alice"),
        (&kb, "carol@C", "bob"),
        (&kc, "alice@A", "carol"),
    ] {
        k.private(target, from, "last");
    }
    for k in [&ka, &kb, &kc] {
        assert!(
            k.wait(WAIT, |s| s.privs.iter().filter(|p| p.2 == b"last").count()
                == 2),
            "{}: {:?}",
            k.node,
            privs(k)
        );
    }
    // Per sender, in its order; each to its node only.
    let privs_from = |k: &FakeKchat, from: &str| {
        k.state()
            .privs
            .iter()
            .filter(|p| p.1 == from)
            .map(|(to, _, t)| format!("{to} {}", String::from_utf8_lossy(t)))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        privs_from(&kb, "alice@A"),
        ["bob for bob  only\r\n", "bob second", "bob last"]
    );
    assert_eq!(privs_from(&kb, "carol@C"), ["bob last"]);
    assert_eq!(privs_from(&ka, "carol@C"), ["alice hi alice", "alice last"]);
    assert_eq!(privs_from(&ka, "bob@B"), ["alice last"]);
    assert_eq!(privs_from(&kc, "bob@B"), ["carol to carol", "carol last"]);
    assert_eq!(privs_from(&kc, "alice@A"), ["carol last"]);
    for (k, n) in [(&ka, 3), (&kb, 4), (&kc, 3)] {
        assert_eq!(k.state().privs.len(), n, "{}: {:?}", k.node, privs(k));
    }
    for k in [&ka, &kb, &kc] {
        assert!(k.state().errors.is_empty(), "{:?}", k.state().errors);
    }
}

#[test]
fn a_message_too_long_for_kchat_is_not_posted() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let ka = FakeKchat::start("A", SECRET, &[("#lobby", "alice")]);
    let kb = FakeKchat::start("B", SECRET, &[("#lobby", "bob")]);
    let _a = Bridge::start(&ka, &[nats.port], FAST);
    let b = Bridge::start(&kb, &[nats.port], FAST);
    assert!(
        kb.wait(WAIT, |s| s.view.len() == 1),
        "B sees {:?}",
        kb.view()
    );
    // The longest text kchat takes fills its frame, one byte more would make it close the
    // link.
    let longest = "x".repeat(MAX_FRAME - "=msg #lobby alice@A ".len());
    ka.say("#lobby", "alice", format!("{longest}y").as_bytes());
    ka.say("#lobby", "alice", longest.as_bytes());
    ka.say("#lobby", "alice", b"short");
    assert!(
        kb.wait(WAIT, |s| s.msgs.len() == 2),
        "B got {}",
        kb.state().msgs.len()
    );
    let got = kb.texts_from("#lobby", "alice@A");
    assert!(
        got[0] == longest && got[1] == "short",
        "lengths {}, {}",
        got[0].len(),
        got[1].len()
    );
    assert!(b.wait_log(
        WAIT,
        "a message too long for kchat was not posted: 4097 bytes"
    ));
    assert_eq!(kb.state().links, 1, "the link stayed up");
    assert!(kb.state().errors.is_empty(), "{:?}", kb.state().errors);
}
