//! What chat users see: `/nick`, `/who`, notices, and the admin's stats view.

use std::{collections::HashMap, time::Duration};

use crate::{
    ensure,
    util::{
        connect, expect_frame, expect_silence, label, start, stats, wait_clients, Context, STEP,
    },
    Case, CaseResult,
};

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "/nick sets a unique valid nick; /who lists labels; relays follow the nick",
            run: nick_and_who,
        },
        Case {
            name: "notices: join before the newcomer's first message, left after it goes",
            run: notices_in_order,
        },
        Case {
            name: "/who is cut to max_msg_len with ...",
            run: who_truncated,
        },
        Case {
            name: "stats view: 3 clients, 7 messages give exactly 14 relayed, per-client bytes",
            run: stats_exact,
        },
        Case {
            name: "a kchat client on the host chats with a guest client through the forwarded port",
            run: host_client,
        },
    ]
}

/// - `/nick alice` tells the others `* ADDR is now alice`, not alice herself;
/// - a taken nick (in any case) and invalid ones get `! ...` for the asker only;
/// - a relayed message carries the sender's nick;
/// - `/who` answers the asker with `* N online in #lobby: ...` in order of arrival.
fn nick_and_who() -> CaseResult {
    start("notices=1")?;
    let mut a = connect()?;
    wait_clients(1, STEP)?;
    let mut b = connect()?;
    expect_frame(&mut a, &format!("* {} joined", label(&b)))?;

    a.send(b"/nick alice").ctx("send")?;
    expect_frame(&mut b, &format!("* {} is now alice", label(&a)))?;
    expect_silence(&mut a, Duration::from_millis(200))?;

    for (cmd, reply) in [
        ("/nick alice", "! nick alice is taken"),
        ("/nick ALICE", "! nick ALICE is taken"),
        (
            "/nick bad name",
            "! invalid nick: use only A-Z a-z 0-9 _ . -",
        ),
        (
            &format!("/nick {}", "x".repeat(33)),
            "! invalid nick: longer than 32 bytes",
        ),
        ("/nick", "! usage: /nick NAME"),
        (
            "/nick b\u{e9}b",
            "! invalid nick: use only A-Z a-z 0-9 _ . -",
        ),
    ] {
        b.send(cmd.as_bytes()).ctx("send")?;
        expect_frame(&mut b, reply)?;
    }
    expect_silence(&mut a, Duration::from_millis(200))?;

    b.send(b"/nick bob").ctx("send")?;
    expect_frame(&mut a, &format!("* {} is now bob", label(&b)))?;
    a.send(b"hi bob").ctx("send")?;
    expect_frame(&mut b, "alice: hi bob")?;
    b.send(b"/who").ctx("send")?;
    expect_frame(&mut b, "* 2 online in #lobby: alice, bob")?;
    // Changing only the case of one's own nick is allowed.
    a.send(b"/nick Alice").ctx("send")?;
    expect_frame(&mut b, "* alice is now Alice")?;

    let mut c = connect()?;
    expect_frame(&mut a, &format!("* {} joined", label(&c)))?;
    expect_frame(&mut b, &format!("* {} joined", label(&c)))?;
    // The lobby's history comes first: alice's one message.
    expect_frame(&mut c, "* last 1 messages of #lobby:")?;
    expect_frame(&mut c, "alice: hi bob")?;
    c.send(b"/who").ctx("send")?;
    let c_label = label(&c);
    expect_frame(
        &mut c,
        &format!("* 3 online in #lobby: Alice, bob, {c_label}"),
    )?;
    Ok(())
}

/// - a newcomer that sends at once: the others get `* X joined` before its message;
/// - a client that sends and leaves: the others get its message, then `* X left`;
/// - a client with a nick leaves as `* NICK left`.
fn notices_in_order() -> CaseResult {
    start("notices=1")?;
    let mut a = connect()?;
    wait_clients(1, STEP)?;
    let mut b = connect()?;
    b.send(b"first words").ctx("send")?;
    expect_frame(&mut a, &format!("* {} joined", label(&b)))?;
    expect_frame(&mut a, &format!("{}: first words", label(&b)))?;
    b.send(b"last words").ctx("send")?;
    let b_label = label(&b);
    drop(b);
    expect_frame(&mut a, &format!("{b_label}: last words"))?;
    expect_frame(&mut a, &format!("* {b_label} left"))?;

    let mut c = connect()?;
    expect_frame(&mut a, &format!("* {} joined", label(&c)))?;
    c.send(b"/nick carol").ctx("send")?;
    expect_frame(&mut a, &format!("* {} is now carol", label(&c)))?;
    drop(c);
    expect_frame(&mut a, "* carol left")?;
    Ok(())
}

/// With `max_msg_len=64` and 6 clients, `/who` would need more room: the answer is cut to
/// 64 bytes, ending in `...`.
fn who_truncated() -> CaseResult {
    start("notices=0 max_msg_len=64")?;
    let mut conns = Vec::new();
    for _ in 0..6 {
        conns.push(connect()?);
    }
    wait_clients(6, STEP)?;
    conns[0].send(b"/who").ctx("send")?;
    let reply = conns[0].recv_text(STEP).ctx("/who")?;
    ensure!(
        reply.len() == 64,
        "/who answer is {} bytes: {reply:?}",
        reply.len()
    );
    ensure!(
        reply.starts_with("* 6 online in #lobby: 127.0.0.1:"),
        "unexpected /who answer {reply:?}"
    );
    ensure!(
        reply.ends_with("..."),
        "/who answer not marked as cut: {reply:?}"
    );
    Ok(())
}

/// One line of /sys/kernel/debug/kchat/clients, by label.
fn client_rows() -> Result<HashMap<String, Vec<u64>>, String> {
    let text = std::fs::read_to_string("/sys/kernel/debug/kchat/clients").ctx("read clients")?;
    let mut rows = HashMap::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        ensure!(f.len() == 8, "bad clients line {line:?}");
        ensure!(f[3] == "#lobby", "client not in #lobby: {line:?}");
        let nums = [f[4], f[5], f[6]]
            .iter()
            .map(|v| v.parse().unwrap_or(u64::MAX))
            .collect();
        rows.insert(f[1].to_string(), nums);
    }
    Ok(rows)
}

/// - 3 clients send 7 messages (3 + 2 + 2): `messages_relayed` is exactly 14,
///   `bytes_relayed` the exact bytes of those frames, `connections_served` 3, `clients_now` and
///   `clients_peak` 3, nothing rejected or dropped;
/// - the clients file lists each client with the exact bytes it sent and received, and nothing
///   queued.
fn stats_exact() -> CaseResult {
    start("notices=0")?;
    let mut conns = [connect()?, connect()?, connect()?];
    wait_clients(3, STEP)?;
    let labels: Vec<String> = conns.iter().map(label).collect();
    let plan: [(usize, &str); 7] = [
        (0, "one"),
        (1, "two two"),
        (0, "three"),
        (2, "four!"),
        (1, "five five five"),
        (0, "six"),
        (2, "seven"),
    ];
    let mut sent = [0u64; 3];
    let mut received = [0u64; 3];
    let mut relayed_bytes = 0;
    for (from, text) in plan {
        conns[from].send(text.as_bytes()).ctx("send")?;
        sent[from] += 4 + text.len() as u64;
        let frame_len = (4 + labels[from].len() + 2 + text.len()) as u64;
        for to in 0..3 {
            if to != from {
                expect_frame(&mut conns[to], &format!("{}: {text}", labels[from]))?;
                received[to] += frame_len;
                relayed_bytes += frame_len;
            }
        }
    }
    let s = stats()?;
    for (name, want) in [
        ("messages_relayed", 14),
        ("bytes_relayed", relayed_bytes),
        ("connections_served", 3),
        ("clients_now", 3),
        ("clients_peak", 3),
        ("frames_rejected", 0),
        ("slow_consumers_dropped", 0),
        ("connections_refused_full", 0),
    ] {
        ensure!(
            s.get(name) == Some(&want),
            "{name} is {:?}, expected {want}",
            s.get(name)
        );
    }
    ensure!(s.contains_key("uptime_s"), "no uptime in the stats view");
    let rows = client_rows()?;
    ensure!(rows.len() == 3, "clients file has {} clients", rows.len());
    for i in 0..3 {
        let row = rows
            .get(&labels[i])
            .ok_or_else(|| format!("{} not listed", labels[i]))?;
        ensure!(
            row[..] == [sent[i], received[i], 0],
            "{}: bytes in/out/queued {row:?}, expected {:?}",
            labels[i],
            [sent[i], received[i], 0]
        );
    }
    Ok(())
}

/// The path a user takes with `make run`: the host harness runs the `kchat` client on the host
/// against the forwarded port (step `chat`), which sets its nick and says hello; a guest client
/// sees it join (as 10.0.2.2:PORT), sees its nick and message, answers, and sees it leave. The
/// host harness checks that the host client printed the answer.
fn host_client() -> CaseResult {
    start("notices=1")?;
    let mut g = connect()?;
    wait_clients(1, STEP)?;
    println!("KCHAT-HOST-STEP chat");
    let long = Duration::from_secs(90);
    let joined = g.recv_text(long).ctx("waiting for the host client")?;
    ensure!(
        joined.starts_with("* 10.0.2.2:") && joined.ends_with(" joined"),
        "expected the host client to join, got {joined:?}"
    );
    let host_addr = &joined[2..joined.len() - " joined".len()];
    expect_frame(&mut g, &format!("* {host_addr} is now hostuser"))?;
    expect_frame(&mut g, "hostuser: hello from the host")?;
    g.send(b"hello from the guest").ctx("send")?;
    let left = g
        .recv_text(long)
        .ctx("waiting for the host client to leave")?;
    ensure!(
        left == "* hostuser left",
        "expected the host client to leave, got {left:?}"
    );
    Ok(())
}
