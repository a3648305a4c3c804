// SPDX-License-Identifier: GPL-2.0
//! NATS failures: a clustered server killed (the bridges move to the other one and traffic
//! resumes), and a bridge cut off from NATS (its queue stays within its bound, drops are
//! counted and logged, and what was kept is delivered, in order, once it is back).

mod common;

use common::{
    bridge::Bridge,
    kchat::{texts, view_of, FakeKchat},
    nats::NatsServer,
    proxy::Proxy,
    wait_for, SECRET, WAIT,
};

/// Heartbeats every half second: presence settles fast.
const FAST: &[&str] = &["--heartbeat", "0.5"];

/// Sends `probe N` from `from` every 100 ms until `to` has one: the path works again.
fn probe(from: &FakeKchat, nick: &str, to: &FakeKchat, member: &str) {
    let mut n = 0;
    let ok = wait_for(WAIT, || {
        if n % 5 == 0 {
            from.say("#lobby", nick, format!("probe {n}").as_bytes());
        }
        n += 1;
        texts(&to.state(), "#lobby", member)
            .iter()
            .any(|t| t.starts_with("probe"))
    });
    assert!(ok, "nothing from {member} reached {}", to.node);
}

/// The texts `k` got from `member` that start with `prefix`.
fn with_prefix(k: &FakeKchat, member: &str, prefix: &str) -> Vec<String> {
    k.texts_from("#lobby", member)
        .into_iter()
        .filter(|t| t.starts_with(prefix))
        .collect()
}

#[test]
fn bridges_move_to_the_other_clustered_server() {
    let Some((mut s1, s2)) = NatsServer::cluster() else {
        return;
    };
    let ka = FakeKchat::start("A", SECRET, &[("#lobby", "alice")]);
    let kb = FakeKchat::start("B", SECRET, &[("#lobby", "bob")]);
    let kc = FakeKchat::start("C", SECRET, &[("#lobby", "carol")]);
    // A and C on s1 (s2 next), B on s2: traffic crosses the route.
    let a = Bridge::start(&ka, &[s1.port, s2.port], FAST);
    let b = Bridge::start(&kb, &[s2.port, s1.port], FAST);
    let c = Bridge::start(&kc, &[s1.port, s2.port], FAST);
    let on = |port: u16| format!("connected to NATS nats://127.0.0.1:{port}");
    assert!(a.wait_log(WAIT, &on(s1.port)) && c.wait_log(WAIT, &on(s1.port)));
    assert!(b.wait_log(WAIT, &on(s2.port)));
    let nodes = [(&ka, "alice@A"), (&kb, "bob@B"), (&kc, "carol@C")];
    let others = |me: &str| -> Vec<(&FakeKchat, &str)> {
        nodes
            .iter()
            .filter(|(_, m)| *m != me)
            .map(|(k, m)| (*k, *m))
            .collect()
    };
    for (k, me) in nodes {
        let want: Vec<(&str, &str)> = others(me).iter().map(|(_, m)| ("#lobby", *m)).collect();
        let want = view_of(&want);
        assert!(
            k.wait(WAIT, |s| s.view == want),
            "{} sees {:?}",
            k.node,
            k.view()
        );
    }
    let say_all = |prefix: &str, n: usize| {
        for i in 0..n {
            for (k, me) in nodes {
                let nick = me.split('@').next().unwrap();
                k.say("#lobby", nick, format!("{prefix} {i}").as_bytes());
            }
        }
    };
    let check_all = |prefix: &str, n: usize| {
        let want: Vec<String> = (0..n).map(|i| format!("{prefix} {i}")).collect();
        for (k, me) in nodes {
            for (_, member) in others(me) {
                let last = format!("{prefix} {}", n - 1);
                assert!(
                    k.wait(WAIT, |s| texts(s, "#lobby", member).last() == Some(&last)),
                    "{} got {:?} from {member}",
                    k.node,
                    k.texts_from("#lobby", member)
                );
                assert_eq!(
                    with_prefix(k, member, prefix),
                    want,
                    "{member} at {}",
                    k.node
                );
            }
        }
    };
    say_all("before", 20);
    check_all("before", 20);

    s1.kill();
    for x in [&a, &c] {
        assert!(x.wait_log(
            WAIT,
            &format!("disconnected from NATS nats://127.0.0.1:{}", s1.port)
        ));
        assert!(
            x.wait_log(WAIT, &on(s2.port)),
            "did not move to s2: {:?}",
            x.log()
        );
    }
    // Once each path works again (messages sent in the gap may be lost), nothing is.
    for (from, me) in nodes {
        for (to, _) in others(me) {
            probe(from, me.split('@').next().unwrap(), to, me);
        }
    }
    say_all("after", 50);
    check_all("after", 50);
    // And what came before the kill is still there once, in order.
    let before: Vec<String> = (0..20).map(|i| format!("before {i}")).collect();
    for (k, me) in nodes {
        for (_, member) in others(me) {
            assert_eq!(with_prefix(k, member, "before "), before, "at {}", k.node);
        }
    }
    // Presence survived: nobody was silent long enough to be dropped.
    for (k, me) in nodes {
        let want: Vec<(&str, &str)> = others(me).iter().map(|(_, m)| ("#lobby", *m)).collect();
        assert_eq!(k.view(), view_of(&want), "at {}", k.node);
        assert!(
            k.state().drops.is_empty(),
            "{}: {:?}",
            k.node,
            k.state().drops
        );
        assert!(
            k.state().errors.is_empty(),
            "{}: {:?}",
            k.node,
            k.state().errors
        );
    }
}

/// The numbers in `dropped N messages (B bytes) for NATS ...` lines of `log`, summed.
fn dropped_for_nats(log: &[String]) -> u64 {
    log.iter()
        .filter_map(|l| {
            let rest = l.split_once("dropped ")?.1;
            let (n, rest) = rest.split_once(" messages")?;
            rest.contains("for NATS").then(|| n.parse::<u64>().ok())?
        })
        .sum()
}

#[test]
fn a_bridge_cut_off_from_nats_stays_within_its_buffer() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let proxy = Proxy::start(nats.port);
    let ka = FakeKchat::start("A", SECRET, &[("#lobby", "alice")]);
    let kb = FakeKchat::start("B", SECRET, &[("#lobby", "bob")]);
    const BUFFER: usize = 256 * 1024;
    let a = Bridge::start(
        &ka,
        &[proxy.port],
        &["--buffer-bytes", &BUFFER.to_string(), "--stats", "0.2"],
    );
    let _b = Bridge::start(&kb, &[nats.port], FAST);
    assert!(kb.wait(WAIT, |s| s.view == view_of(&[("#lobby", "alice@A")])));
    ka.say("#lobby", "alice", b"connected");
    assert!(kb.wait(WAIT, |s| !s.msgs.is_empty()));

    proxy.cut();
    assert!(a.wait_log(WAIT, "disconnected from NATS"));
    let rss_before = a.rss_kib();
    // 12 MB of messages while NATS is away: 48 times the buffer.
    const N: usize = 12_000;
    let pad = "x".repeat(990);
    for i in 0..N {
        ka.say("#lobby", "alice", format!("m{i:05} {pad}").as_bytes());
    }
    // Every message went through the bridge (the stats line counts them) ...
    let out = format!("room messages out {}", N + 1);
    assert!(a.wait_log(WAIT, &out), "the bridge did not take them all");
    let rss_after = a.rss_kib();
    // ... and memory stayed bounded: far less than the 12 MB thrown at it.
    eprintln!("RSS {rss_before} KiB before, {rss_after} KiB after");
    assert!(
        rss_after < rss_before + 6 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    assert!(a.wait_log(WAIT, "for NATS while disconnected: buffer full"));
    // Every drop is reported (reports come at most once per second).
    let mut dropped = 0;
    let kept_at_most = BUFFER / 1000;
    assert!(
        wait_for(WAIT, || {
            dropped = dropped_for_nats(&a.log());
            dropped >= (N - kept_at_most) as u64
        }),
        "only {dropped} drops reported"
    );

    // What the buffer kept is written once connected again (the second such line, the first
    // being from before the cut); until the buffer has room, what is said is dropped, so the
    // last word waits for a stats line with nothing queued (none since the buffer filled).
    let empty = "bytes queued for NATS 0 for kchat";
    let empty_before = a.count_log(empty);
    proxy.restore();
    assert!(a.wait_log_count(WAIT, "connected to NATS", 2));
    assert!(a.wait_log_count(WAIT, empty, empty_before + 1));
    ka.say("#lobby", "alice", b"end");
    assert!(
        kb.wait(WAIT, |s| s.msgs.last().is_some_and(|m| m.2 == b"end")),
        "B got {} messages",
        kb.state().msgs.len()
    );
    // What was kept arrives in order, once, beginning with what came first (a batch that
    // did not fit is dropped whole, and a later, smaller one may still fit); with the drops
    // it is everything.
    let got: Vec<usize> = with_prefix(&kb, "alice@A", "m")
        .into_iter()
        .map(|t| t[1..6].parse().expect("a number"))
        .collect();
    let kept = got.len();
    assert!(kept > 0 && kept <= kept_at_most, "{kept} kept");
    assert_eq!(got[0], 0, "{got:?}");
    assert!(got.windows(2).all(|w| w[0] < w[1]), "{got:?}");
    assert!(got.iter().all(|&i| i < N), "{got:?}");
    dropped = dropped_for_nats(&a.log());
    assert_eq!(
        kept as u64 + dropped,
        N as u64,
        "kept {kept}, dropped {dropped}"
    );
    assert!(kb.state().errors.is_empty(), "{:?}", kb.state().errors);
    // A stays in touch: B has not dropped it.
    assert!(kb.state().drops.is_empty());
}
