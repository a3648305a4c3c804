//! A cluster in one guest: three network namespaces are three kchat nodes, joined by a
//! `kchat-bridge` each through a NATS cluster of two `nats-server` processes (docs/link.md).
//! Clients on different nodes chat in `#lobby` and in a room two nodes share, send private
//! messages, change nicks and quit; a bridge is killed and restarted, a NATS server is killed,
//! a node's namespace is dismantled: local chat never stops, the rest resumes.

use std::{
    fs,
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use kchat_proto::Conn;

use crate::{
    ensure,
    netns::Netns,
    util::{recv_until, start, Context, STEP},
    Case, CaseResult,
};

pub fn cases() -> Vec<Case> {
    vec![Case {
        name: "cluster: 3 nodes (namespaces) joined by kchat-bridge through 2 nats-servers: lobby, a room on two nodes, private messages, nicks, quits; a bridge and a NATS server killed; a node dismantled",
        run: three_nodes,
    }]
}

const SECRET: &str = "5550123";
const SECRET_FILE: &str = "/tmp/link-secret";
/// The bridges' heartbeat and silence, short so that failures show within seconds.
const HEARTBEAT: &str = "0.5";
const SILENCE: &str = "3";

/// A child process killed when dropped; its stderr goes to a file kept for the report.
struct Proc {
    child: Child,
    log: String,
}

impl Proc {
    fn spawn(log: &str, prog: &str, args: &[&str]) -> Result<Self, String> {
        let err = fs::File::create(log).ctx(&format!("create {log}"))?;
        let child = Command::new(prog)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .ctx(&format!("spawn {prog}"))?;
        Ok(Self {
            child,
            log: log.to_string(),
        })
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The last lines of its log, for a failure report.
    fn tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(6)..].join(" | ")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until something listens on `addr`.
fn wait_listening(addr: &str) -> CaseResult {
    let deadline = Instant::now() + STEP;
    while TcpStream::connect(addr).is_err() {
        ensure!(Instant::now() < deadline, "nothing listens on {addr}");
        thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// NATS server `i` (0 or 1) of the cluster: client port 4222 + i, route port 6222 + i.
fn nats(i: u16) -> Result<Proc, String> {
    let (port, route, other) = (4222 + i, 6222 + i, 6223 - i);
    let p = Proc::spawn(
        &format!("/tmp/nats-{i}.log"),
        "/bin/nats-server",
        &[
            "-a",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "--cluster",
            &format!("nats://127.0.0.1:{route}"),
            "--routes",
            &format!("nats://127.0.0.1:{other}"),
            "--cluster_name",
            "kchat",
        ],
    )?;
    wait_listening(&format!("127.0.0.1:{port}"))?;
    Ok(p)
}

/// The bridge of node `name`, linked to the kchat of `net`; `first` is the NATS server it
/// tries first.
fn bridge(name: &str, net: &Netns, first: u16) -> Result<Proc, String> {
    let servers = format!("127.0.0.1:{},127.0.0.1:{}", 4222 + first, 4223 - first);
    Proc::spawn(
        &format!("/tmp/bridge-{name}.log"),
        "/bin/kchat-bridge",
        &[
            "--kchat",
            "127.0.0.1:10106",
            "--kchat-netns",
            &net.path(),
            "--link-secret-file",
            SECRET_FILE,
            "--node",
            name,
            "--nats",
            &servers,
            "--heartbeat",
            HEARTBEAT,
            "--silence",
            SILENCE,
        ],
    )
}

/// A native client of `net`'s kchat, with `nick`.
fn client(net: &Netns, nick: &str) -> Result<Conn, String> {
    let mut c = net.connect()?;
    c.send(format!("/nick {nick}").as_bytes()).ctx("nick")?;
    Ok(c)
}

/// Asks `/who` every half second until the answer lists every name of `want`.
fn wait_who(c: &mut Conn, want: &[&str], bridges: &[&Proc]) -> CaseResult {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        c.send(b"/who").ctx("who")?;
        let (who, _) = recv_until(c, "/who", |f| f.contains(" online in "))?;
        if want.iter().all(|w| who.contains(w)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = bridges.iter().map(|b| b.tail()).collect();
            return Err(format!(
                "/who still {who:?} after 30 s, expected {want:?}; bridges: {}",
                logs.join(" || ")
            ));
        }
        thread::sleep(Duration::from_millis(500));
    }
}

/// Sends `text` from `from` every half second until `to` receives it as `want_prefix...`:
/// messages said while a path is being repaired may be lost (docs/link.md).
fn until_heard(from: &mut Conn, to: &mut Conn, text: &str, want: &str) -> CaseResult {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    loop {
        n += 1;
        from.send(format!("{text} {n}").as_bytes()).ctx("say")?;
        let until = Instant::now() + Duration::from_millis(500);
        while let Some(f) = to
            .recv_timeout(until.saturating_duration_since(Instant::now()))
            .ctx("listen")?
        {
            if String::from_utf8_lossy(&f).starts_with(want) {
                return Ok(());
            }
        }
        ensure!(
            Instant::now() < deadline,
            "{want:?} not heard within 30 s ({n} tries)"
        );
    }
}

fn three_nodes() -> CaseResult {
    if !Path::new("/bin/nats-server").exists() {
        return Err(
            "SKIPPED: nats-server is not in the guest (apt-get install nats-server)".into(),
        );
    }
    fs::write(SECRET_FILE, SECRET).ctx("write the secret")?;
    start(&format!(
        "notices=1 history=0 max_msg_rate=0 link_secret={SECRET}"
    ))?;
    let nets = [Netns::new()?, Netns::new()?, Netns::new()?];
    let nats0 = nats(0)?;
    let _nats1 = nats(1)?;
    let ba = bridge("node-a", &nets[0], 0)?;
    let bb = bridge("node-b", &nets[1], 1)?;
    let bc = bridge("node-c", &nets[2], 0)?;

    let mut alice = client(&nets[0], "alice")?;
    let mut dave = client(&nets[0], "dave")?;
    let mut bob = client(&nets[1], "bob")?;
    let mut carol = client(&nets[2], "carol")?;
    wait_who(
        &mut alice,
        &["alice", "dave", "bob@node-b", "carol@node-c"],
        &[&ba, &bb, &bc],
    )?;
    wait_who(
        &mut bob,
        &["bob", "alice@node-a", "dave@node-a", "carol@node-c"],
        &[&ba, &bb, &bc],
    )?;
    wait_who(
        &mut carol,
        &["carol", "alice@node-a", "bob@node-b"],
        &[&ba, &bb, &bc],
    )?;

    // #lobby across the three nodes.
    alice.send(b"hello from a").ctx("say")?;
    recv_until(&mut bob, "alice's message on node-b", |f| {
        f == "alice@node-a: hello from a"
    })?;
    recv_until(&mut carol, "alice's message on node-c", |f| {
        f == "alice@node-a: hello from a"
    })?;
    recv_until(&mut dave, "alice's message on node-a", |f| {
        f == "alice: hello from a"
    })?;
    // A room on two nodes: node-c knows it only from its remote members.
    alice.send(b"/join #rust").ctx("join")?;
    bob.send(b"/join #rust").ctx("join")?;
    wait_who(&mut alice, &["alice", "bob@node-b"], &[&ba, &bb, &bc])?;
    alice.send(b"rust talk").ctx("say")?;
    recv_until(&mut bob, "the #rust message", |f| {
        f == "alice@node-a: rust talk"
    })?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        carol.send(b"/rooms").ctx("rooms")?;
        let (rooms, _) = recv_until(&mut carol, "/rooms", |f| f.contains(" rooms: "))?;
        if rooms.contains("#rust (2)") {
            break;
        }
        ensure!(Instant::now() < deadline, "node-c's /rooms is {rooms:?}");
        thread::sleep(Duration::from_millis(300));
    }
    // Private messages, nick changes, quits.
    alice.send(b"/msg bob@node-b psst").ctx("msg")?;
    recv_until(&mut bob, "the private message", |f| {
        f == "alice@node-a (private): psst"
    })?;
    bob.send(b"/msg carol@node-c hi carol").ctx("msg")?;
    recv_until(&mut carol, "the private message", |f| {
        f == "bob@node-b (private): hi carol"
    })?;
    bob.send(b"/nick robert").ctx("nick")?;
    recv_until(&mut alice, "the nick change", |f| {
        f == "* bob@node-b is now robert@node-b"
    })?;
    drop(carol);
    recv_until(&mut dave, "carol's quit", |f| f == "* carol@node-c left")?;

    // node-b's bridge killed: node-b's kchat loses its remote members at once, the others
    // drop node-b's after the silence; local chat goes on meanwhile.
    let mut robert = bob;
    bb.kill();
    recv_until(&mut robert, "alice leaving node-b", |f| {
        f == "* alice@node-a left"
    })?;
    recv_until(&mut alice, "robert leaving node-a", |f| {
        f == "* robert@node-b left"
    })?;
    alice.send(b"/part").ctx("part")?;
    dave.send(b"still local").ctx("say")?;
    recv_until(&mut alice, "local chat", |f| f == "dave: still local")?;
    let bb = bridge("node-b", &nets[1], 1)?;
    robert.send(b"/part").ctx("part")?;
    wait_who(
        &mut alice,
        &["alice", "dave", "robert@node-b"],
        &[&ba, &bb, &bc],
    )?;
    until_heard(&mut robert, &mut alice, "back", "robert@node-b: back")?;

    // One NATS server killed: the bridges on it move to the other.
    nats0.kill();
    until_heard(
        &mut alice,
        &mut robert,
        "after nats",
        "alice@node-a: after nats",
    )?;
    until_heard(&mut robert, &mut dave, "to a", "robert@node-b: to a")?;

    // node-c dismantled: its bridge and clients go, then the namespace; its kchat stops and
    // the other nodes drop its members after the silence.
    let mut erin = client(&nets[2], "erin")?;
    wait_who(&mut alice, &["erin@node-c"], &[&ba, &bb, &bc])?;
    erin.send(b"bye from c").ctx("say")?;
    recv_until(&mut alice, "erin's message", |f| {
        f == "erin@node-c: bye from c"
    })?;
    let [na, nb, nc] = nets;
    let inum = nc.inum;
    drop(erin);
    bc.kill();
    drop(nc);
    recv_until(&mut alice, "erin leaving", |f| f == "* erin@node-c left")?;
    let view = format!("/sys/kernel/debug/kchat/net-{inum}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while Path::new(&view).exists() {
        ensure!(
            Instant::now() < deadline,
            "node-c's kchat still runs 60 s after its namespace went"
        );
        thread::sleep(Duration::from_millis(100));
    }
    until_heard(
        &mut alice,
        &mut robert,
        "two left",
        "alice@node-a: two left",
    )?;
    drop((ba, bb, na, nb));
    Ok(())
}
