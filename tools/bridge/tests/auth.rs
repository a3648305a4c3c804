// SPDX-License-Identifier: GPL-2.0
//! Credentials in a NATS URL: a server that wants a user and password takes the bridge with
//! the right ones; with wrong ones the bridge says why, keeps trying, and never counts itself
//! connected.

mod common;

use common::{
    bridge::Bridge,
    kchat::{view_of, FakeKchat},
    nats::NatsServer,
    SECRET, WAIT,
};

#[test]
fn user_and_password_from_the_url() {
    let Some(nats) = NatsServer::start_with(&["--user", "kchat", "--pass", "s3cret"]) else {
        return;
    };
    let url = |user: &str, pass: &str| format!("nats://{user}:{pass}@127.0.0.1:{}", nats.port);
    let ka = FakeKchat::start("A", SECRET, &[("#lobby", "alice")]);
    let kb = FakeKchat::start("B", SECRET, &[("#lobby", "bob")]);
    let kc = FakeKchat::start("C", SECRET, &[("#lobby", "carol")]);
    let good = url("kchat", "s3cret");
    let bad = url("kchat", "wrong");
    let _a = Bridge::start_urls(&ka, &[good.as_str()], &["--heartbeat", "0.5"]);
    let _b = Bridge::start_urls(&kb, &[good.as_str()], &["--heartbeat", "0.5"]);
    let c = Bridge::start_urls(&kc, &[bad.as_str()], &[]);
    assert!(ka.wait(WAIT, |s| s.view == view_of(&[("#lobby", "bob@B")])));
    ka.say("#lobby", "alice", b"authorized");
    assert!(kb.wait(WAIT, |s| s.msgs.iter().any(|m| m.2 == b"authorized")));
    assert!(c.wait_log(WAIT, "Authorization Violation"));
    assert!(c.wait_log(WAIT, "cannot connect to NATS"));
    assert_eq!(c.count_log("connected to NATS nats"), 0, "{:?}", c.log());
    // The password is never logged.
    assert!(
        c.log().iter().all(|l| !l.contains("wrong")),
        "{:?}",
        c.log()
    );
    assert!(ka.view().iter().all(|(_, m)| m != "carol@C"));
}
