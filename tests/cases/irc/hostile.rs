//! Hostile IRC clients: fuzzing (random lines, numerics sent by a client, huge and empty
//! parameters, NUL and bare CR), slowloris (partial lines, registrations never finished),
//! floods (PRIVMSG, JOIN/PART, NICK changes). As in the native hostile cases, the native
//! honest pair keeps chatting through each attack (every ping delivered, latency bounded),
//! kchat's memory returns to its baseline afterwards, and then fresh IRC clients register,
//! join and chat.

use std::{
    io::{ErrorKind, Read, Write},
    net::{Shutdown, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use super::{join_seen, register, IRC_ADDR};
use crate::{
    attack::{in_threads, reset, Rng},
    ensure,
    hostile::{begin, finish, watch_churn, Scale, FULL, SEED, SHORT},
    util::{stat, Context},
    Case, CaseResult,
};

/// The IRC forms of the hostile cases, at scale `SHORT` (`full` false) or `FULL`.
pub fn cases(full: bool) -> Vec<Case> {
    macro_rules! at {
        ($scale:ident) => {
            vec![
                Case {
                    name: "hostile: irc fuzz: random lines, client numerics, huge/empty params, NUL, bare CR (seeded)",
                    run: || fuzz(&$scale),
                },
                Case {
                    name: "hostile: irc slowloris: partial lines, registrations never finished, then timed out",
                    run: || slowloris(&$scale),
                },
                Case {
                    name: "hostile: irc PRIVMSG flood is throttled, others' latency stays bounded",
                    run: || flood(&$scale),
                },
                Case {
                    name: "hostile: irc JOIN/PART and NICK churn from many clients, max_rooms holds",
                    run: || churn(&$scale),
                },
            ]
        };
    }
    if full {
        at!(FULL)
    } else {
        at!(SHORT)
    }
}

/// After an attack: two new IRC clients register, join a channel, chat, and one quits.
fn fresh_pair() -> CaseResult {
    let mut a = register("fresh1")?;
    let mut b = register("fresh2")?;
    join_seen(&mut a, "#fresh", &["@fresh1"], &mut [])?;
    join_seen(&mut b, "#fresh", &["@fresh1", "fresh2"], &mut [&mut a])?;
    a.send("PRIVMSG #fresh :all well")?;
    b.expect(&format!(":{} PRIVMSG #fresh :all well", a.prefix()))?;
    b.send("QUIT :done")?;
    b.expect_closing_link("Quit: done")?;
    a.expect(&format!(":{} QUIT :Quit: done", b.prefix()))?;
    a.sync()
}

/// Commands the fuzzer sends, valid and not: every command kchat knows, some it does not,
/// and numerics (which only servers send).
const COMMANDS: &[&str] = &[
    "NICK", "USER", "JOIN", "PART", "PRIVMSG", "NOTICE", "TOPIC", "MODE", "KICK", "NAMES", "LIST",
    "WHO", "WHOIS", "AWAY", "ISON", "USERHOST", "PING", "PONG", "CAP", "PASS", "MOTD", "LUSERS",
    "VERSION", "OPER", "INVITE", "KNOCK", "001", "005", "353", "366", "433", "999", "privmsg",
    "join", "nick", "ERROR", "SQUIT", "KILL", "WALLOPS",
];

/// A parameter for the fuzzer: channel names (often shared by attackers), nicks (taken or
/// not, reserved), lists, mode strings, nothing, huge ones, random bytes (NUL, bare CR).
fn fuzz_param(rng: &mut Rng, attackers: u64) -> Vec<u8> {
    match rng.below(12) {
        0 | 1 => format!("#fz{}", rng.below(6)).into_bytes(),
        2 => format!("fz{}", rng.below(attackers)).into_bytes(),
        3 => format!("kchat-{}", rng.below(100)).into_bytes(),
        4 => {
            let n = 1 + rng.below(300) as usize;
            let list: Vec<String> = (0..n).map(|_| format!("#l{}", rng.below(40))).collect();
            list.join(",").into_bytes()
        }
        5 => {
            const MODES: &[&str] = &[
                "+o", "-o", "+t", "-t", "+n", "-n", "+b", "b", "+ov-t", "+xyz", "+i", "-i", "+",
                "-",
            ];
            MODES[rng.below(MODES.len() as u64) as usize]
                .as_bytes()
                .to_vec()
        }
        6 => Vec::new(),
        7 => vec![b'A' + rng.below(26) as u8; 200 + rng.below(600) as usize],
        8 => {
            let n = rng.below(40) as usize;
            rng.bytes(n).into_iter().filter(|&b| b != b'\n').collect()
        }
        9 => b"0".to_vec(),
        10 => b"*".to_vec(),
        _ => {
            let n = rng.below(30) as usize;
            let mut t: Vec<u8> = (0..n).map(|_| b'a' + rng.below(26) as u8).collect();
            if rng.below(3) == 0 {
                t.insert(rng.below(t.len() as u64 + 1) as usize, 0);
            }
            if rng.below(3) == 0 {
                t.insert(rng.below(t.len() as u64 + 1) as usize, b'\r');
            }
            t
        }
    }
}

/// One line for the fuzzer, terminated by CR LF or LF: sometimes tags or a prefix, a command,
/// 0 to 17 parameters (empty ones as `:`), a trailing one with spaces.
fn fuzz_line(rng: &mut Rng, attackers: u64) -> Vec<u8> {
    let mut l = Vec::new();
    if rng.below(10) == 0 {
        l.extend_from_slice(b"@time=x;+fz=1 ");
    }
    if rng.below(8) == 0 {
        l.extend_from_slice(b":fake!fake@example.org ");
    }
    let cmd = COMMANDS[rng.below(COMMANDS.len() as u64) as usize];
    // A client's QUIT ends the round early: rarely.
    let cmd = if rng.below(50) == 0 { "QUIT" } else { cmd };
    l.extend_from_slice(cmd.as_bytes());
    for _ in 0..rng.below(18) {
        l.push(b' ');
        let p = fuzz_param(rng, attackers);
        if p.is_empty() || rng.below(6) == 0 {
            l.push(b':');
        }
        l.extend_from_slice(&p);
    }
    if rng.below(4) == 0 {
        l.extend_from_slice(b" :trailing words: and more ");
    }
    l.extend_from_slice(if rng.below(3) == 0 { b"\n" } else { b"\r\n" });
    l
}

/// Registration lines for an attacker (a nick that may well be taken).
fn fuzz_registration(rng: &mut Rng, attackers: u64) -> Vec<u8> {
    let nick = format!("fz{}", rng.below(attackers));
    let mut r = Vec::new();
    if rng.below(3) == 0 {
        r.extend_from_slice(b"CAP LS 302\r\n");
    }
    r.extend_from_slice(format!("NICK {nick}\r\nUSER {nick} 0 * :fuzzer\r\n").as_bytes());
    if r.starts_with(b"CAP") && rng.below(2) == 0 {
        r.extend_from_slice(b"CAP END\r\n");
    }
    r
}

/// Many attackers at once, each round a seeded random mix of: random bytes with CR, LF and
/// NUL; registration then random commands (numerics, huge, empty and odd parameters, NUL and
/// bare CR); random commands before registration; the same dribbled in small pieces; a line
/// cut short by a reset; lines of 513 to 5,000 bytes, the last without its LF. Attackers
/// never read.
fn fuzz(scale: &'static Scale) -> CaseResult {
    let (honest, base) = begin(scale, "notices=0 max_queue_bytes=8388608 max_msg_rate=20")?;
    let seed = SEED ^ 0x6972_6300;
    println!(
        "# irc fuzz seed {seed:#x} ({} attackers x {} rounds)",
        scale.fuzz_attackers, scale.fuzz_rounds
    );
    let rounds = scale.fuzz_rounds;
    let attackers = scale.fuzz_attackers as u64;
    in_threads(scale.fuzz_attackers, move |id| {
        let mut rng = Rng::new(seed ^ (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        for _ in 0..rounds {
            thread::sleep(Duration::from_millis(10 + rng.below(30)));
            let Ok(mut s) = TcpStream::connect(IRC_ADDR) else {
                continue;
            };
            let _ = s.set_nodelay(true);
            let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
            match rng.below(6) {
                0 => {
                    let mut bytes = Vec::new();
                    for _ in 0..1 + rng.below(20) {
                        let n = rng.below(300) as usize;
                        bytes.extend(rng.bytes(n));
                        bytes.extend_from_slice(match rng.below(3) {
                            0 => b"\n",
                            1 => b"\r",
                            _ => b"\r\n",
                        });
                    }
                    let _ = s.write_all(&bytes);
                }
                1 => {
                    let mut bytes = fuzz_registration(&mut rng, attackers);
                    for _ in 0..1 + rng.below(30) {
                        bytes.extend(fuzz_line(&mut rng, attackers));
                    }
                    let _ = s.write_all(&bytes);
                }
                2 => {
                    for _ in 0..1 + rng.below(10) {
                        let _ = s.write_all(&fuzz_line(&mut rng, attackers));
                    }
                }
                3 => {
                    let mut bytes = fuzz_registration(&mut rng, attackers);
                    for _ in 0..1 + rng.below(5) {
                        bytes.extend(fuzz_line(&mut rng, attackers));
                    }
                    let mut at = 0;
                    while at < bytes.len() {
                        let n = (1 + rng.below(64) as usize).min(bytes.len() - at);
                        let _ = s.write_all(&bytes[at..at + n]);
                        at += n;
                        thread::sleep(Duration::from_millis(rng.below(3)));
                    }
                }
                4 => {
                    let mut bytes = fuzz_registration(&mut rng, attackers);
                    let line = fuzz_line(&mut rng, attackers);
                    let cut = rng.below(line.len() as u64) as usize;
                    bytes.extend_from_slice(&line[..cut]);
                    let _ = s.write_all(&bytes);
                    reset(s);
                    continue;
                }
                _ => {
                    let mut bytes = fuzz_registration(&mut rng, attackers);
                    for i in 0..1 + rng.below(3) {
                        let n = 513 + rng.below(4500) as usize;
                        bytes.extend(std::iter::repeat_n(b'L', n));
                        if i == 0 || rng.below(2) == 0 {
                            bytes.extend_from_slice(b"\r\n");
                        }
                    }
                    let _ = s.write_all(&bytes);
                }
            }
            if rng.below(2) == 0 {
                reset(s);
            }
        }
        Ok(())
    })?;
    finish(scale, honest, base, "irc fuzz")?;
    fresh_pair()
}

/// `irc_ping` of the slowloris case: longer than the attack, so that the stalled connections
/// are all there while it lasts, and then cut by the registration timeout.
fn slowloris_ping(scale: &Scale) -> u64 {
    scale.slowloris_secs * 2 + 10
}

/// Thousands of IRC connections that never finish registering: a NICK without its LF, a
/// NICK alone, CAP LS with NICK and USER and no CAP END, and a registration dribbled one byte
/// a second. kchat holds at most a line's worth of buffer for each (`buffer_bytes` at most
/// 2 KiB per connection and 64 KiB more); a new IRC client registers, joins and chats at once;
/// then the registration timeout (`irc_ping`) closes every stalled connection.
fn slowloris(scale: &'static Scale) -> CaseResult {
    let ping = slowloris_ping(scale);
    let (honest, base) = begin(scale, &format!("notices=0 irc_ping={ping}"))?;
    let mut stalled = Vec::new();
    let mut dribblers = Vec::new();
    for i in 0..scale.slowloris {
        let mut s = TcpStream::connect(IRC_ADDR).ctx("slowloris connect")?;
        match i % 4 {
            0 => s.write_all(format!("NICK sl{i}").as_bytes()).ctx("send")?,
            1 => s
                .write_all(format!("NICK sl{i}\r\n").as_bytes())
                .ctx("send")?,
            2 => s
                .write_all(format!("CAP LS 302\r\nNICK sl{i}\r\nUSER sl{i} 0 * :x\r\n").as_bytes())
                .ctx("send")?,
            _ => {
                s.set_nonblocking(true).ctx("nonblocking")?;
                let line = format!("NICK sl{i}\r\nUSER sl{i} 0 * :x\r\nJOIN #lobby\r\n");
                dribblers.push((s, line.into_bytes(), 0usize));
                continue;
            }
        }
        stalled.push(s);
    }
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(scale.slowloris_secs) {
        for (s, line, at) in dribblers.iter_mut() {
            if *at < line.len() && s.write(&line[*at..*at + 1]).is_ok() {
                *at += 1;
            }
        }
        thread::sleep(Duration::from_secs(1));
    }
    // A newcomer is served at once, however many stall.
    let t = Instant::now();
    let mut late = register("late")?;
    let mut late2 = register("late2")?;
    join_seen(&mut late, "#late", &["@late"], &mut [])?;
    join_seen(&mut late2, "#late", &["@late", "late2"], &mut [&mut late])?;
    late.send("PRIVMSG #late :served")?;
    late2.expect(&format!(":{} PRIVMSG #late :served", late.prefix()))?;
    let took = t.elapsed();
    let held = stat("buffer_bytes")?;
    let bound = scale.slowloris as u64 * 2048 + 65536;
    println!(
        "# irc slowloris: {} connections hold {held} bytes of buffers (bound {bound}); a newcomer took {:.1} s",
        scale.slowloris,
        took.as_secs_f64()
    );
    ensure!(
        held <= bound,
        "stalled IRC connections hold {held} bytes, more than {bound}"
    );
    drop((late, late2));

    // The registration timeout ends every one of them.
    let deadline = Instant::now() + Duration::from_secs(ping + 30);
    let mut all: Vec<TcpStream> = stalled
        .into_iter()
        .chain(dribblers.into_iter().map(|(s, _, _)| s))
        .collect();
    for s in &all {
        s.set_nonblocking(true).ctx("nonblocking")?;
    }
    let mut sink = [0u8; 4096];
    while !all.is_empty() {
        all.retain_mut(|s| loop {
            match s.read(&mut sink) {
                Ok(0) => return false,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        });
        ensure!(
            Instant::now() < deadline || all.is_empty(),
            "{} stalled connections still open {} s after irc_ping={ping}",
            all.len(),
            30
        );
        thread::sleep(Duration::from_millis(100));
    }
    finish(scale, honest, base, "irc slowloris")?;
    fresh_pair()
}

/// One IRC client writes PRIVMSG lines to `#lobby` as fast as it can (draining what it
/// receives, so that only its sending is at issue). With `max_msg_rate=200`, an IRC watcher in
/// `#lobby` sees at most about 200 a second of them (plus the burst), the flooder is paused,
/// not dropped, and the native honest pair's latency stays bounded.
fn flood(scale: &'static Scale) -> CaseResult {
    const RATE: u64 = 200;
    let (honest, base) = begin(scale, "notices=0 max_msg_rate=200")?;
    let mut flooder = register("flooder")?;
    let mut watcher = register("watcher")?;
    for u in [&mut flooder, &mut watcher] {
        u.send("JOIN #lobby")?;
        let me = u.nick.clone();
        u.until("366 for #lobby", |l| {
            l.starts_with(&format!(":kchat 366 {me} #lobby "))
        })?;
    }
    let head = format!(":{} PRIVMSG #lobby :flood ", flooder.prefix());
    let mut out = flooder.c.stream().try_clone().ctx("clone")?;
    let mut drain = flooder.c.stream().try_clone().ctx("clone")?;
    thread::spawn(move || {
        let mut sink = [0u8; 65536];
        while matches!(drain.read(&mut sink), Ok(n) if n > 0) {}
    });
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let writer = thread::spawn(move || -> u64 {
        let mut batch = Vec::new();
        for i in 0..256 {
            batch.extend_from_slice(format!("PRIVMSG #lobby :flood {i:03}\r\n").as_bytes());
        }
        let _ = out.set_write_timeout(Some(Duration::from_millis(100)));
        let mut written = 0u64;
        while !stop2.load(Ordering::Relaxed) {
            if let Ok(n) = out.write(&batch) {
                written += n as u64;
            }
        }
        let _ = out.shutdown(Shutdown::Both);
        written
    });
    let t = Instant::now();
    let mut relayed = 0u64;
    while t.elapsed() < Duration::from_secs(scale.flood_secs) {
        if let Some(l) = watcher.next_within(Duration::from_millis(100))? {
            if l.starts_with(&head) {
                relayed += 1;
            }
        }
    }
    let secs = t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let written = writer
        .join()
        .map_err(|_| "flood writer panicked".to_string())?;
    let ceiling = RATE + (RATE as f64 * secs * 1.1) as u64;
    println!(
        "# irc flood: {written} bytes written, {relayed} lines relayed in {secs:.1} s (rate {RATE}/s, ceiling {ceiling}); throttled {} times",
        stat("clients_throttled")?
    );
    ensure!(
        relayed <= ceiling,
        "{relayed} flood lines relayed in {secs:.1} s, over the rate"
    );
    ensure!(
        relayed >= RATE,
        "only {relayed} flood lines relayed: the flooder was starved, not throttled"
    );
    ensure!(
        stat("clients_throttled")? > 0,
        "the flooder was never throttled"
    );
    drop((watcher, flooder));
    finish(scale, honest, base, "irc flood")?;
    fresh_pair()
}

/// Reads whatever the non-blocking `s` has received; false once its connection has ended.
fn drain(s: &mut TcpStream) -> bool {
    let mut sink = [0u8; 16384];
    loop {
        match s.read(&mut sink) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

/// A registered (pipelined), non-blocking IRC client for the churn, nick `cID_K_GEN`.
fn churn_client(id: usize, k: usize, generation: u64) -> Result<TcpStream, String> {
    let mut s = TcpStream::connect(IRC_ADDR).ctx("irc churn connect")?;
    let nick = format!("c{id}_{k}_{generation}");
    s.write_all(format!("NICK {nick}\r\nUSER {nick} 0 * :churn\r\n").as_bytes())
        .ctx("irc churn register")?;
    s.set_nonblocking(true).ctx("nonblocking")?;
    Ok(s)
}

/// Each thread drives 4 IRC clients through a seeded random mix of JOIN (one channel, or a
/// list with `#lobby`) among 30 names with `max_rooms=10` (many refused), PART, `JOIN 0`,
/// NICK changes among 20 nicks (often taken), channel messages, TOPIC and MODE +o, and
/// reconnections (FIN or RST), reading what comes back. `rooms_now` and the rooms file
/// never pass max_rooms; afterwards every room but `#lobby` is gone and memory is back.
fn churn(scale: &'static Scale) -> CaseResult {
    const MAX_ROOMS: u64 = 10;
    let (honest, base) = begin(scale, "notices=1 max_rooms=10")?;
    let (threads, ops) = (scale.room_churners, scale.room_churn_ops);
    let churners = thread::spawn(move || {
        in_threads(threads, move |id| {
            let mut rng = Rng::new(SEED ^ 0x6972_6363 ^ id as u64);
            let mut generation = 0;
            let mut clients = (0..4)
                .map(|k| churn_client(id, k, 0))
                .collect::<Result<Vec<_>, _>>()?;
            for _ in 0..ops {
                let i = rng.below(4) as usize;
                let c = rng.below(30);
                let cmd = match rng.below(14) {
                    0..=2 => format!("JOIN #churn{c}"),
                    3 => format!("JOIN #churn{c},#churn{},#lobby", rng.below(30)),
                    4 | 5 => format!("PART #churn{c}"),
                    6 => "JOIN 0".to_string(),
                    7 | 8 => format!("NICK n{}", rng.below(20)),
                    9 => format!("PRIVMSG #churn{c} :passing through {}", rng.next()),
                    10 => format!("TOPIC #churn{c} :topic {}", rng.below(100)),
                    11 => format!("MODE #churn{c} +o n{}", rng.below(20)),
                    _ => {
                        generation += 1;
                        let old =
                            std::mem::replace(&mut clients[i], churn_client(id, i, generation)?);
                        if rng.below(2) == 0 {
                            reset(old);
                        }
                        continue;
                    }
                };
                let alive = clients[i]
                    .write_all(format!("{cmd}\r\n").as_bytes())
                    .is_ok()
                    && drain(&mut clients[i]);
                if !alive {
                    generation += 1;
                    clients[i] = churn_client(id, i, generation)?;
                }
            }
            Ok(())
        })
    });
    watch_churn(churners, MAX_ROOMS, "irc churn")?;
    finish(scale, honest, base, "irc churn")?;
    fresh_pair()
}
