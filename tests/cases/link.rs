//! Links (docs/link.md) from the kchat side: `/link SECRET NODE` with the module's
//! `link_secret` makes a connection a link, which gets a snapshot of the local members and
//! then every room message and event of theirs; a wrong secret, or links off
//! (`link_secret=0`, the default), gets `! link refused`; a client that sends a frame of the
//! link protocol gets `! not a link`. None of these is ever relayed, and the secret is never
//! logged. A link also posts remote members (`=join`, `=msg`, ...), members of the rooms to
//! native and IRC clients alike; the hostile case fuzzes those frames.

use std::{
    io::{BufRead, BufReader, Write},
    net::TcpStream,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use crate::{
    attack::{Memory, Rng},
    ensure, module,
    util::{
        connect, expect_frame, expect_silence, label, start, stat, wait_clients, Context, STEP,
    },
    Case, CaseResult,
};

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "links: /link is refused and never relayed or logged; link frames from a client get `! not a link`",
            run: link_refused,
        },
        Case {
            name: "links: a bridge with the secret gets =link, the members of every room, =synced, then every local message and event (native and IRC)",
            run: link_follows_local_members,
        },
        Case {
            name: "links: a hostile link (seeded random frames) stays within max_clients and max_rooms, cannot crash kchat; memory back when it goes; rmmod with a link up",
            run: hostile_link,
        },
        Case {
            name: "links: remote members a link posts are members to native (NICK@NODE) and IRC (NICK|NODE) clients: rooms, messages, private messages both ways, nick, quit, drop, gone with the link",
            run: remote_members,
        },
    ]
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

/// - with `link_secret` set, a wrong secret is still refused;
/// - a link with the right secret gets `=link NODE`, one `=join` per member of each room
///   (`#lobby` first) and `=synced`, and is nobody's room-mate (`/who` does not list it);
/// - then, in order: a room message, a nick change, a move between rooms (part, then join),
///   a newcomer known by its address and its quit, an IRC client's join and channel message;
///   a private message between local members is not told;
/// - a frame from the link (remote members) is answered `! link: ...` and the link stays up.
fn link_follows_local_members() -> CaseResult {
    let secret = "8675309";
    let mut log = start(&format!("notices=0 history=0 link_secret={secret}"))?;
    let mut alice = connect()?;
    let mut bob = connect()?;
    wait_clients(2, STEP)?;
    alice.send(b"/nick alice").ctx("nick")?;
    bob.send(b"/nick bob").ctx("nick")?;
    bob.send(b"/join #rust").ctx("join")?;
    let _ = bob.recv_text(STEP).ctx("join answer")?;

    let mut wrong = connect()?;
    wrong.send(b"/link 8675308 node-b").ctx("send /link")?;
    let last = wrong.expect_close(STEP).ctx("the wrong secret")?;
    ensure!(
        last.len() == 1 && last[0] == b"! link refused",
        "a wrong secret got {last:?}"
    );

    let mut link = connect()?;
    link.send(format!("/link {secret} node-b").as_bytes())
        .ctx("send /link")?;
    for want in [
        "=link node-b",
        "=join #lobby alice",
        "=join #rust bob",
        "=synced",
    ] {
        expect_frame(&mut link, want)?;
    }
    log.wait_contains("Link Up: node node-b", STEP)?;
    wait_clients(2, STEP)?;
    alice.send(b"/who").ctx("who")?;
    expect_frame(&mut alice, "* 1 online in #lobby: alice")?;

    alice.send(b"hello everyone").ctx("say")?;
    expect_frame(&mut link, "=msg #lobby alice hello everyone")?;
    bob.send(b"/nick bobby").ctx("nick")?;
    expect_frame(&mut link, "=nick bob bobby")?;
    bob.send(b"/part").ctx("part")?;
    let _ = bob.recv_text(STEP).ctx("part answer")?;
    expect_frame(&mut link, "=part #rust bobby")?;
    expect_frame(&mut link, "=join #lobby bobby")?;
    let carol = connect()?;
    let carol_label = label(&carol);
    expect_frame(&mut link, &format!("=join #lobby {carol_label}"))?;
    drop(carol);
    expect_frame(&mut link, &format!("=quit {carol_label}"))?;
    alice.send(b"/msg bobby psst").ctx("msg")?;
    expect_frame(&mut bob, "alice (private): psst")?;

    let irc = TcpStream::connect("127.0.0.1:6667").ctx("IRC connect")?;
    irc.set_read_timeout(Some(STEP)).ctx("timeout")?;
    let mut irc_w = irc.try_clone().ctx("clone")?;
    irc_w
        .write_all(b"NICK dave\r\nUSER d 0 * :Dave\r\nJOIN #rust\r\nPRIVMSG #rust :yo\r\n")
        .ctx("IRC send")?;
    expect_frame(&mut link, "=join #rust dave")?;
    expect_frame(&mut link, "=msg #rust dave yo")?;
    let mut lines = BufReader::new(irc);
    let mut first = String::new();
    lines.read_line(&mut first).ctx("IRC welcome")?;
    ensure!(first.contains(" 001 dave "), "IRC client got {first:?}");

    alice.send(b"still linked?").ctx("say")?;
    expect_frame(&mut link, "=msg #lobby alice still linked?")?;
    expect_silence(&mut link, Duration::from_millis(300))?;
    let logged = log.records().join("\n");
    ensure!(
        !logged.contains(secret),
        "the secret appears in the kernel log"
    );
    Ok(())
}

/// An IRC client's lines, read until one that `pred` accepts.
struct Irc {
    lines: BufReader<TcpStream>,
    w: TcpStream,
}

impl Irc {
    fn register(nick: &str) -> Result<Self, String> {
        let s = TcpStream::connect("127.0.0.1:6667").ctx("IRC connect")?;
        s.set_read_timeout(Some(STEP)).ctx("timeout")?;
        let mut w = s.try_clone().ctx("clone")?;
        w.write_all(format!("NICK {nick}\r\nUSER u 0 * :U\r\n").as_bytes())
            .ctx("IRC register")?;
        let mut irc = Self {
            lines: BufReader::new(s),
            w,
        };
        irc.until(&format!("001 {nick}"), |l| {
            l.contains(&format!(" 001 {nick} "))
        })?;
        Ok(irc)
    }

    fn send(&mut self, line: &str) -> CaseResult {
        self.w
            .write_all(format!("{line}\r\n").as_bytes())
            .ctx("IRC send")
    }

    fn until(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> Result<String, String> {
        loop {
            let mut line = String::new();
            let n = self
                .lines
                .read_line(&mut line)
                .ctx(&format!("IRC, waiting for {what}"))?;
            ensure!(n > 0, "IRC connection closed waiting for {what}");
            if pred(&line) {
                return Ok(line);
            }
        }
    }
}

/// With a link of node `node-a`:
/// - `=join #lobby bob@node-b` makes a member that native clients see join as `bob@node-b`,
///   in `/who`, and IRC clients as `bob|node-b` in `NAMES`; its messages reach both, and are
///   never told back to the link;
/// - `/msg bob@node-b` and IRC's `PRIVMSG bob|node-b` reach the link as `=priv`; `=priv`
///   from the link reaches a local member; `bob|node-b` cannot be taken by an IRC client;
/// - `=join #rust` creates a room; `=nick` renames; `=quit` and `=drop NODE` remove; the
///   link's own node, a malformed frame and an unknown name are refused with `! link: ...`;
/// - when the link closes, its remote members leave and only the local ones are counted.
fn remote_members() -> CaseResult {
    let secret = "4242";
    start(&format!("notices=1 history=5 link_secret={secret}"))?;
    let mut alice = connect()?;
    wait_clients(1, STEP)?;
    alice.send(b"/nick alice").ctx("nick")?;
    let mut link = connect()?;
    expect_frame(&mut alice, &format!("* {} joined", label(&link)))?;
    link.send(format!("/link {secret} node-a").as_bytes())
        .ctx("send /link")?;
    for want in ["=link node-a", "=join #lobby alice", "=synced"] {
        expect_frame(&mut link, want)?;
    }
    expect_frame(&mut alice, &format!("* {} left", label(&link)))?;

    link.send(b"=join #lobby bob@node-b").ctx("link join")?;
    expect_frame(&mut alice, "* bob@node-b joined")?;
    link.send(b"=msg #lobby bob@node-b hello  from b")
        .ctx("link msg")?;
    expect_frame(&mut alice, "bob@node-b: hello  from b")?;
    alice.send(b"/who").ctx("who")?;
    expect_frame(&mut alice, "* 2 online in #lobby: alice, bob@node-b")?;
    alice.send(b"hi bob").ctx("say")?;
    expect_frame(&mut link, "=msg #lobby alice hi bob")?;
    alice.send(b"/msg bob@node-b psst").ctx("msg")?;
    expect_frame(&mut link, "=priv bob@node-b alice psst")?;
    link.send(b"=priv alice bob@node-b back at you")
        .ctx("link priv")?;
    expect_frame(&mut alice, "bob@node-b (private): back at you")?;

    let mut dave = Irc::register("dave")?;
    dave.send("JOIN #lobby")?;
    dave.until("NAMES with bob|node-b", |l| {
        l.contains(" 353 dave ") && l.contains("bob|node-b")
    })?;
    expect_frame(&mut link, "=join #lobby dave")?;
    link.send(b"=msg #lobby bob@node-b to irc")
        .ctx("link msg")?;
    dave.until("bob|node-b's message", |l| {
        l.starts_with(":bob|node-b!") && l.contains("PRIVMSG #lobby :to irc")
    })?;
    dave.send("PRIVMSG bob|node-b :hey")?;
    expect_frame(&mut link, "=priv bob@node-b dave hey")?;
    let mut eve = Irc::register("eve")?;
    eve.send("NICK bob|node-b")?;
    eve.until("433 for a remote member's name", |l| l.contains(" 433 "))?;

    link.send(b"=join #rust bob@node-b").ctx("link join")?;
    alice.send(b"/rooms").ctx("rooms")?;
    // #lobby: alice, dave, bob@node-b (and eve, who joined nothing: not counted).
    // Before it: dave's join and bob's message to him, in #lobby.
    let (rooms, _) = crate::util::recv_until(&mut alice, "/rooms", |f| f.starts_with("* 2 rooms"))?;
    ensure!(
        rooms == "* 2 rooms: #lobby (3), #rust (1)",
        "/rooms got {rooms:?}"
    );
    link.send(b"=nick bob@node-b robert@node-b")
        .ctx("link nick")?;
    expect_frame(&mut alice, "* bob@node-b is now robert@node-b")?;
    for (frame, answer) in [
        (
            "=join #lobby al@node-a",
            "! link: =join: that is this link's own node",
        ),
        ("=join lobby x@node-b", "! link: malformed =join"),
        ("=quit nobody@node-b", "! link: =quit: no such member"),
        (
            "=join #lobby robert@node-b",
            "! link: =join: already in that room",
        ),
        ("=hello", "! link: unknown frame =hello"),
    ] {
        link.send(frame.as_bytes()).ctx("link frame")?;
        expect_frame(&mut link, answer)?;
    }
    link.send(b"=part #rust robert@node-b").ctx("link part")?;
    link.send(b"=quit robert@node-b").ctx("link quit")?;
    expect_frame(&mut alice, "* robert@node-b left")?;
    link.send(b"=join #lobby carl@node-c").ctx("link join")?;
    expect_frame(&mut alice, "* carl@node-c joined")?;
    link.send(b"=drop node-c").ctx("link drop")?;
    expect_frame(&mut alice, "* carl@node-c left")?;
    link.send(b"=join #lobby zed@node-d").ctx("link join")?;
    expect_frame(&mut alice, "* zed@node-d joined")?;
    // Nothing a remote member did was told back to the link.
    expect_silence(&mut link, Duration::from_millis(300))?;
    drop(link);
    expect_frame(&mut alice, "* zed@node-d left")?;
    // alice, dave and eve.
    wait_clients(3, STEP)?;
    Ok(())
}

/// One random link frame: mostly well-formed verbs over 600 nicks of four nodes (one the
/// link's own) and 40 rooms, so that `max_clients` and `max_rooms` are reached; some mangled
/// or random bytes.
fn random_link_frame(rng: &mut Rng) -> Vec<u8> {
    let nodes = ["node-b", "node-c", "node-d", "node-a"];
    let mut who = || {
        format!(
            "n{}@{}",
            rng.below(600),
            nodes[rng.below(nodes.len() as u64) as usize]
        )
    };
    let (a, b) = (who(), who());
    let room = format!("#r{}", rng.below(40));
    let mut f = match rng.below(20) {
        0..=9 => format!("=join {room} {a}").into_bytes(),
        10 => format!("=part {room} {a}").into_bytes(),
        11 => format!("=nick {a} {b}").into_bytes(),
        12 => format!("=quit {a}").into_bytes(),
        13 | 14 => format!("=msg {room} {a} random text {}", rng.next()).into_bytes(),
        15 => format!("=priv local {a} psst").into_bytes(),
        // A whole node dropped now and then.
        16 if rng.below(20) == 0 => format!("=drop {}", nodes[rng.below(4) as usize]).into_bytes(),
        16 => format!("=join {room} {a}").into_bytes(),
        _ => {
            let n = rng.below(80) as usize;
            let mut v = b"=".to_vec();
            v.extend(rng.bytes(n));
            v
        }
    };
    if rng.below(8) == 0 && !f.is_empty() {
        // Mangle one byte.
        let i = rng.below(f.len() as u64) as usize;
        f[i] = rng.next() as u8;
    }
    f
}

/// - a link sends 4,000 seeded random frames (`max_clients=300 max_rooms=20`) while a local
///   client in `#lobby` reads: `clients_now` never passes 300 nor `rooms_now` 20 (sampled),
///   every bad frame is answered, kchat stays up, and when the link closes its remote
///   members are gone and kchat's memory is back to the baseline;
/// - a second link posts 100 remote members and `rmmod` runs with it connected: the unload
///   is clean (the link closed, no reference left).
fn hostile_link() -> CaseResult {
    const PARAMS: &str = "notices=1 history=5 max_clients=300 max_rooms=20 link_secret=77";
    let seed = 0x6c696e6b_u64;
    println!("# hostile link: seed {seed:#x}");
    let mut log = start(PARAMS)?;
    let base = Memory::baseline(PARAMS)?;
    let local = connect()?;
    wait_clients(1, STEP)?;
    let mut link = connect()?;
    link.send(b"/link 77 node-a").ctx("send /link")?;
    // Until then it was a client of #lobby, which replays its history.
    crate::util::recv_until(&mut link, "=link", |f| f == "=link node-a")?;
    // The reader keeps the local client connected until told to stop: the fuzz may leave
    // #lobby quiet for seconds (a slow host, 300 members reached), and a reader that gave up
    // after a quiet spell would take the local client away before `wait_clients(1)`.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = std::thread::spawn({
        let stop = stop.clone();
        move || -> Result<u64, String> {
            let mut local = local;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if local
                    .recv_timeout(Duration::from_millis(200))
                    .ctx("the local client")?
                    .is_some()
                {
                    n += 1;
                }
            }
            Ok(n)
        }
    });
    let mut rng = Rng::new(seed);
    let (mut peak_clients, mut peak_rooms) = (0, 0);
    let mut answers = 0u64;
    for i in 0..4000 {
        link.send(&random_link_frame(&mut rng)).ctx("link frame")?;
        while let Some(_f) = link
            .recv_timeout(Duration::from_millis(0))
            .ctx("link answers")?
        {
            answers += 1;
        }
        if i % 200 == 0 {
            peak_clients = peak_clients.max(stat("clients_now")?);
            peak_rooms = peak_rooms.max(stat("rooms_now")?);
        }
    }
    link.send(b"=join #lobby last@node-b").ctx("last frame")?;
    link.send(b"/who").ctx("not a link frame")?;
    crate::util::recv_until(&mut link, "the answer to the last frame", |f| {
        f == "! link: unknown frame /who"
    })?;
    peak_clients = peak_clients.max(stat("clients_now")?);
    peak_rooms = peak_rooms.max(stat("rooms_now")?);
    ensure!(
        peak_clients <= 300,
        "clients_now reached {peak_clients} (max_clients=300)"
    );
    ensure!(
        peak_rooms <= 20,
        "rooms_now reached {peak_rooms} (max_rooms=20)"
    );
    ensure!(
        peak_clients > 100,
        "the link made only {peak_clients} members: the fuzz is too tame"
    );
    println!("# hostile link: {answers} answers, peaks {peak_clients} members, {peak_rooms} rooms");
    drop(link);
    wait_clients(1, STEP)?;
    stop.store(true, Ordering::Relaxed);
    let got = reader.join().map_err(|_| "reader panicked".to_string())??;
    ensure!(
        got > 0,
        "the local client heard nothing of the remote members"
    );
    base.expect_back(2048)?;

    let mut link = connect()?;
    link.send(b"/link 77 node-a").ctx("send /link")?;
    // Until then it was a client of #lobby, which replays its history.
    crate::util::recv_until(&mut link, "=link", |f| f == "=link node-a")?;
    for i in 0..100 {
        link.send(format!("=join #lobby m{i}@node-b").as_bytes())
            .ctx("join")?;
    }
    wait_clients(100, STEP)?;
    module::unload().ctx("rmmod with a link up")?;
    link.expect_close(STEP).ctx("the link at rmmod")?;
    let records = log.records().join("\n");
    ensure!(
        !records.contains("still referenced"),
        "the unload left the server referenced"
    );
    Ok(())
}
