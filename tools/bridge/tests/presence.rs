// SPDX-License-Identifier: GPL-2.0
//! Presence between nodes: joins, parts, nicks and quits cross; a restarted bridge, or a
//! kchat link that closed, is made whole again by `hello`, `state` and the re-posting of
//! remote members; a silent node is dropped.

mod common;

use std::{
    thread,
    time::{Duration, Instant},
};

use common::{
    bridge::Bridge,
    kchat::{view_of, FakeKchat},
    nats::NatsServer,
    SECRET, WAIT,
};

/// One step of a test: what a kchat does, and the view the other node must then have.
type Step<'a> = (&'a dyn Fn(), &'a [(&'a str, &'a str)]);

/// Heartbeats every half second: presence settles fast.
const FAST: &[&str] = &["--heartbeat", "0.5"];

#[test]
fn joins_parts_nicks_and_quits_cross() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let ka = FakeKchat::start("A", SECRET, &[("#lobby", "alice")]);
    let kb = FakeKchat::start("B", SECRET, &[("#lobby", "bob")]);
    // Default heartbeat (5 s): what follows crosses as events, not as states.
    let _a = Bridge::start(&ka, &[nats.port], &[]);
    let _b = Bridge::start(&kb, &[nats.port], &[]);
    assert!(kb.wait(WAIT, |s| s.view == view_of(&[("#lobby", "alice@A")])));
    assert!(ka.wait(WAIT, |s| s.view == view_of(&[("#lobby", "bob@B")])));

    let steps: [Step<'_>; 5] = [
        (
            &|| ka.join("#Go", "alice"),
            &[("#lobby", "alice@A"), ("#go", "alice@A")],
        ),
        (
            &|| ka.nick("alice", "alicia"),
            &[("#lobby", "alicia@A"), ("#go", "alicia@A")],
        ),
        (&|| ka.part("#go", "alicia"), &[("#lobby", "alicia@A")]),
        (
            &|| ka.join("#lobby", "dave"),
            &[("#lobby", "alicia@A"), ("#lobby", "dave@A")],
        ),
        (&|| ka.quit("dave"), &[("#lobby", "alicia@A")]),
    ];
    for (i, (step, want)) in steps.iter().enumerate() {
        step();
        let want = view_of(want);
        assert!(
            kb.wait(WAIT, |s| s.view == want),
            "step {i}: B sees {:?}",
            kb.view()
        );
    }
    let frames = kb.state().frames.concat();
    for f in [
        "=join #Go alice@A",
        "=nick alice@A alicia@A",
        "=part #go alicia@A",
        "=join #lobby dave@A",
        "=quit dave@A",
    ] {
        assert!(
            frames.iter().any(|x| x == f),
            "B was never told {f:?}: {frames:?}"
        );
    }
    // And the other way.
    kb.nick("bob", "robert");
    assert!(ka.wait(WAIT, |s| s.view == view_of(&[("#lobby", "robert@B")])));
    assert!(ka.state().errors.is_empty(), "{:?}", ka.state().errors);
    assert!(kb.state().errors.is_empty(), "{:?}", kb.state().errors);
}

#[test]
fn a_restarted_bridge_gets_presence_back_and_others_keep_working() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let ka = FakeKchat::start("A", SECRET, &[("#lobby", "alice")]);
    let kb = FakeKchat::start("B", SECRET, &[("#lobby", "bob"), ("#b", "bob")]);
    let kc = FakeKchat::start("C", SECRET, &[("#lobby", "carol")]);
    let _a = Bridge::start(&ka, &[nats.port], FAST);
    let mut b = Bridge::start(&kb, &[nats.port], FAST);
    let _c = Bridge::start(&kc, &[nats.port], FAST);
    let all_but = |node: &str| {
        let all = [
            ("#lobby", "alice@A"),
            ("#lobby", "bob@B"),
            ("#b", "bob@B"),
            ("#lobby", "carol@C"),
        ];
        let v: Vec<(&str, &str)> = all
            .into_iter()
            .filter(|(_, m)| !m.ends_with(&format!("@{node}")))
            .collect();
        view_of(&v)
    };
    for (k, node) in [(&ka, "A"), (&kb, "B"), (&kc, "C")] {
        let want = all_but(node);
        assert!(
            k.wait(WAIT, |s| s.view == want),
            "{node} sees {:?}",
            k.view()
        );
    }

    // B dies without a word; its kchat forgets the remote members (the link closed).
    b.kill();
    assert!(kb.wait(WAIT, |s| s.view.is_empty()));
    // Meanwhile B's local members change, and A and C go on talking.
    kb.quit("bob");
    kb.join("#lobby", "bobby");
    ka.say("#lobby", "alice", b"while B is down");
    kc.say("#lobby", "carol", b"me too");
    assert!(kc.wait(WAIT, |s| s.msgs.iter().any(|m| m.2 == b"while B is down")));
    assert!(ka.wait(WAIT, |s| s.msgs.iter().any(|m| m.2 == b"me too")));

    // B comes back: a new process knows nothing, asks with hello, and tells its state.
    let _b = Bridge::start(&kb, &[nats.port], FAST);
    let want = all_but("B");
    assert!(kb.wait(WAIT, |s| s.view == want), "B sees {:?}", kb.view());
    let want_b = view_of(&[("#lobby", "bobby@B")]);
    for k in [&ka, &kc] {
        let want = all_but(&k.node);
        let mut want: std::collections::BTreeSet<_> = want
            .into_iter()
            .filter(|(_, m)| !m.ends_with("@B"))
            .collect();
        want.extend(want_b.iter().cloned());
        assert!(
            k.wait(WAIT, |s| s.view == want),
            "{} sees {:?}",
            k.node,
            k.view()
        );
    }
    kb.say("#lobby", "bobby", b"back");
    for k in [&ka, &kc] {
        assert!(k.wait(WAIT, |s| s
            .msgs
            .iter()
            .any(|m| m.1 == "bobby@B" && m.2 == b"back")));
    }
    assert_eq!(kb.state().links, 2);
    for k in [&ka, &kb, &kc] {
        assert!(
            k.state().errors.is_empty(),
            "{}: {:?}",
            k.node,
            k.state().errors
        );
    }
}

#[test]
fn a_new_kchat_link_is_told_remote_presence_again() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let ka = FakeKchat::start("A", SECRET, &[("#lobby", "alice")]);
    let kb = FakeKchat::start("B", SECRET, &[("#lobby", "bob"), ("#rust", "bob")]);
    // Default heartbeat: only the re-posting can make A's kchat whole again at once.
    let a = Bridge::start(&ka, &[nats.port], &[]);
    let _b = Bridge::start(&kb, &[nats.port], &[]);
    let want_a = view_of(&[("#lobby", "bob@B"), ("#rust", "bob@B")]);
    assert!(
        ka.wait(WAIT, |s| s.view == want_a),
        "A sees {:?}",
        ka.view()
    );
    assert!(kb.wait(WAIT, |s| s.view == view_of(&[("#lobby", "alice@A")])));

    // A's kchat closes the link and refuses the next ones for a while.
    ka.refuse_links(true);
    ka.close_link();
    assert!(a.wait_log(WAIT, "kchat link lost"));
    // While it is down: A's members change, and B keeps talking (queued by bridge A).
    ka.quit("alice");
    ka.join("#lobby", "alice2");
    for i in 0..3 {
        kb.say("#lobby", "bob", format!("while down {i}").as_bytes());
    }
    assert!(a.wait_log(WAIT, "cannot link to kchat"));
    ka.refuse_links(false);
    assert!(ka.wait(WAIT, |s| s.links == 2));

    // The new link is first told every remote member, then the waiting messages.
    let want_msgs = ["while down 0", "while down 1", "while down 2"];
    assert!(
        ka.wait(WAIT, |s| s.msgs.len() == 3),
        "A got {:?}",
        ka.state().msgs
    );
    let frames = ka.state().frames[1].clone();
    assert_eq!(
        frames[..2],
        ["=join #lobby bob@B", "=join #rust bob@B"],
        "{frames:?}"
    );
    assert_eq!(ka.texts_from("#lobby", "bob@B"), want_msgs);
    assert_eq!(ka.view(), want_a);
    // A's new snapshot reaches B as a state: alice is gone, alice2 is there.
    assert!(
        kb.wait(WAIT, |s| s.view == view_of(&[("#lobby", "alice2@A")])),
        "B sees {:?}",
        kb.view()
    );
    assert!(ka.state().errors.is_empty(), "{:?}", ka.state().errors);
    assert!(kb.state().errors.is_empty(), "{:?}", kb.state().errors);
}

#[test]
fn a_silent_node_is_dropped() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let quick = ["--heartbeat", "0.25", "--silence", "2"];
    let ka = FakeKchat::start("A", SECRET, &[("#lobby", "alice")]);
    let kb = FakeKchat::start("B", SECRET, &[("#lobby", "bob"), ("#x", "bob")]);
    let a = Bridge::start(&ka, &[nats.port], &quick);
    let mut b = Bridge::start(&kb, &[nats.port], &quick);
    assert!(
        ka.wait(WAIT, |s| s.view.len() == 2),
        "A sees {:?}",
        ka.view()
    );
    assert!(
        kb.wait(WAIT, |s| s.view.len() == 1),
        "B sees {:?}",
        kb.view()
    );
    // Heartbeats keep a live node: nobody is dropped over more than the silence timeout.
    thread::sleep(Duration::from_millis(2500));
    assert!(ka.state().drops.is_empty() && kb.state().drops.is_empty());
    assert_eq!(ka.view().len(), 2);

    b.kill();
    let killed = Instant::now();
    assert!(
        ka.wait(WAIT, |s| s.drops == ["B"]),
        "A was never told =drop B: {:?}",
        ka.state().frames
    );
    let after = killed.elapsed();
    assert!(
        after >= Duration::from_millis(1500),
        "dropped {after:?} after the kill, before 2 s of silence"
    );
    assert!(ka.view().is_empty());
    assert!(a.wait_log(WAIT, "node B silent for 2.0 s: dropped (1 members)"));
    assert!(ka.state().errors.is_empty(), "{:?}", ka.state().errors);
}
