//! Real IRC clients on the host: the harness's `irc-clients` step runs ii, irssi (in tmux) and
//! WeeChat beside the native `kchat` client on the host, through the ports forwarded to this
//! guest's 10106 and 6667 (see tests/harness/irc_clients.rs; it judges the clients' side).
//! Here a native client without a nick watches `#lobby` as kchat shows it to native members
//! (and is the `kchat-ID` member the IRC clients must see), and the module's view is checked:
//! the IRC clients are listed while they are there, and gone afterwards.

use std::time::{Duration, Instant};

use crate::{
    ensure,
    util::{
        connect, debugfs_table, room_names, start, wait_clients, Context, CLIENTS_HEADER, STEP,
    },
    Case, CaseResult,
};

pub fn cases() -> Vec<Case> {
    vec![Case {
        name: "IRC clients on the host (ii, irssi, WeeChat) chat with a native client through \
               the forwarded ports",
        run: irc_clients_from_host,
    }]
}

/// The host's native client's nick, then the one it changes to (irc_clients.rs).
const NATIVE: &str = "hostnat";
const NATIVE2: &str = "hostnat2";

/// The host step takes at most 100 s; TCG adds its delays.
const STEP_LIMIT: Duration = Duration::from_secs(115);

fn irc_clients_from_host() -> CaseResult {
    start("notices=1")?;
    let mut g = connect()?;
    wait_clients(1, STEP)?;
    println!("KCHAT-HOST-STEP irc-clients");
    let deadline = Instant::now() + STEP_LIMIT;
    let mut seen: Vec<String> = Vec::new();
    let last = |seen: &[String]| seen[seen.len().saturating_sub(10)..].to_vec();

    // The host's native client names the IRC clients that run there (those installed).
    let nicks: Vec<String> = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let f = g.recv_text(left).map_err(|e| {
            format!(
                "no \"{NATIVE}: irc-clients: ...\" from the host within {STEP_LIMIT:?} ({e}); \
                 saw {:?}",
                last(&seen)
            )
        })?;
        seen.push(f.clone());
        if let Some(rest) = f.strip_prefix(&format!("{NATIVE}: irc-clients:")) {
            break rest.split_whitespace().map(str::to_string).collect();
        }
    };

    // What a native member of #lobby must see: each IRC client join, speak, change its nick
    // and quit; the native client speak, change its nick and leave.
    let mut want: Vec<String> = vec![
        format!("{NATIVE}: hello from {NATIVE}"),
        format!("* {NATIVE} is now {NATIVE2}"),
        format!("* {NATIVE2} left"),
    ];
    for n in &nicks {
        want.push(format!("* {n} joined"));
        want.push(format!("{n}: hello from {n}"));
        want.push(format!("* {n} is now {n}2"));
    }
    let mut quits: Vec<String> = nicks.iter().map(|n| format!("{n}2")).collect();
    let mut listed = nicks.is_empty();
    while !want.is_empty() || !quits.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        let f = g.recv_text(left).map_err(|e| {
            format!(
                "{e}: still missing {want:?} and the quits of {quits:?}; last frames {:?}",
                last(&seen)
            )
        })?;
        want.retain(|w| *w != f);
        quits.retain(|q| {
            let quit =
                f.starts_with(&format!("* {q} ")) && (f.contains("left") || f.contains("quit"));
            !quit
        });
        seen.push(f);
        // Once every IRC client has joined, the module lists each (under either nick: the
        // host goes on while this runs).
        if !listed
            && nicks
                .iter()
                .all(|n| !want.contains(&format!("* {n} joined")))
        {
            listed = true;
            let rows = debugfs_table("clients", CLIENTS_HEADER)?;
            let labels: Vec<&str> = rows.iter().map(|r| r[1].as_str()).collect();
            for n in &nicks {
                let n2 = format!("{n}2");
                ensure!(
                    labels.iter().any(|l| *l == n || *l == n2),
                    "{n} is not in the clients file while in #lobby: labels {labels:?}"
                );
            }
        }
    }

    // Everyone from the host has gone: the observer alone is left, in #lobby alone.
    wait_clients(1, STEP)?;
    let rows = debugfs_table("clients", CLIENTS_HEADER)?;
    ensure!(
        rows.len() == 1,
        "clients file lists {} clients after the host's left, expected the observer: {rows:?}",
        rows.len()
    );
    let rooms = room_names()?;
    ensure!(
        rooms == ["#lobby"],
        "rooms after the host's left: {rooms:?}"
    );
    // The observer's own connection is still fine.
    g.send(b"/who").ctx("send /who")?;
    let who = g.recv_text(STEP).ctx("answer to /who")?;
    ensure!(
        who.starts_with("* 1 online in #lobby"),
        "/who after the host's left: {who:?}"
    );
    if nicks.is_empty() {
        // The host's own outcomes say which clients are missing there.
        return Err(
            "SKIPPED: the host has no IRC client installed (make setup installs them)".into(),
        );
    }
    Ok(())
}
