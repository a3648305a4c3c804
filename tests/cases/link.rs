//! Links (docs/link.md) from the kchat side. The module does not implement links yet: it
//! refuses every `/link` (as `link_secret=0` will), and a client that sends a frame of the
//! link protocol gets `! not a link`. Neither is ever relayed, and the secret is never
//! logged.

use std::time::Duration;

use crate::{
    ensure,
    util::{connect, expect_frame, expect_silence, label, start, wait_clients, Context, STEP},
    Case, CaseResult,
};

pub fn cases() -> Vec<Case> {
    vec![Case {
        name: "links: /link is refused and never relayed or logged; link frames from a client get `! not a link`",
        run: link_refused,
    }]
}

/// - `/link SECRET NODE` gets `! link refused` and the connection is closed; the other
///   member of `#lobby` sees nothing, the disconnect line says `link refused`, and the
///   secret appears nowhere in the kernel log;
/// - a frame of the link protocol (`=msg ...`, `=join ...`) from a client gets
///   `! not a link` and is not relayed; `=D` is an ordinary message.
fn link_refused() -> CaseResult {
    let mut log = start("notices=0 history=0")?;
    let mut watcher = connect()?;
    let mut bridge = connect()?;
    let mut client = connect()?;
    wait_clients(3, STEP)?;
    let secret = "8675309123456789";
    bridge
        .send(format!("/link {secret} node-b").as_bytes())
        .ctx("send /link")?;
    let last = bridge.expect_close(STEP).ctx("the refused link")?;
    let last: Vec<String> = last
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    ensure!(
        last == ["! link refused"],
        "the refused link got {last:?}, expected [\"! link refused\"]"
    );
    let line = log.wait_contains(&format!("({}): link refused", label(&bridge)), STEP)?;
    ensure!(!line.contains(secret), "the secret was logged: {line}");
    for frame in ["=msg #lobby bob@node-b hello", "=join #lobby bob@node-b"] {
        client.send(frame.as_bytes()).ctx("send a link frame")?;
        expect_frame(&mut client, "! not a link")?;
    }
    expect_silence(&mut watcher, Duration::from_millis(300))?;
    client.send(b"=D").ctx("send =D")?;
    expect_frame(&mut watcher, &format!("{}: =D", label(&client)))?;
    let logged = log.records().join("\n");
    ensure!(
        !logged.contains(secret),
        "the secret appears in the kernel log"
    );
    Ok(())
}
