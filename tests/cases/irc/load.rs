//! IRC under load: a slow consumer is dropped, flood control counts IRC lines, and 1,000 IRC
//! clients in one channel each get every message exactly once.

use std::{
    io::{ErrorKind, Read, Write},
    net::TcpStream,
    os::fd::AsRawFd,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use kchat_proto::irc::{LineSplitter, MAX_LINE, MAX_TAGS};

use super::{join_seen, register, HOST, IRC_ADDR};
use crate::{
    ensure,
    util::{room_rows, start, stat, wait_stat, Context, STEP},
    Case, CaseResult,
};

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "irc: a client that never reads is dropped as a slow consumer (QUIT :Slow consumer), others get all",
            run: slow_consumer,
        },
        Case {
            name: "irc: max_msg_rate counts IRC lines: a flooder is throttled, not dropped",
            run: flood_control,
        },
        Case {
            name: "irc: 1,000 clients in one channel, 4 senders: every member gets every message exactly once",
            run: thousand_in_a_channel,
        },
    ]
}

/// Shrinks the receive buffer of `s`, so that a client that does not read is full sooner.
fn small_rcvbuf(s: &TcpStream) -> CaseResult {
    let size: libc::c_int = 4096;
    // SAFETY: `s` is an open socket and `size` a valid int of the given length.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&raw const size).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    ensure!(
        r == 0,
        "setsockopt(SO_RCVBUF): {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

/// `max_queue_bytes=65536`: slow, reader and flood are in `#s`; slow never reads while flood
/// sends 400-byte PRIVMSGs as fast as reader keeps up:
/// - slow is dropped (`slow_consumers_dropped` 1, a disconnect line saying slow consumer)
///   and its connection ends;
/// - reader and flood see `:slow!slow@127.0.0.1 QUIT :Slow consumer`;
/// - reader gets every flood message in order, and one sent after the drop.
fn slow_consumer() -> CaseResult {
    const MAX_FLOOD: usize = 200_000;
    let mut log = start("notices=0 history=0 max_queue_bytes=65536 max_msg_rate=0")?;
    let mut slow = register("slow")?;
    small_rcvbuf(slow.c.stream())?;
    let mut reader = register("reader")?;
    let mut flooder = register("flood")?;
    join_seen(&mut slow, "#s", &["@slow"], &mut [])?;
    join_seen(&mut reader, "#s", &["@slow", "reader"], &mut [&mut slow])?;
    join_seen(
        &mut flooder,
        "#s",
        &["@slow", "reader", "flood"],
        &mut [&mut slow, &mut reader],
    )?;
    let quit = format!(":{} QUIT :Slow consumer", slow.prefix());
    let head = format!(":{} PRIVMSG #s :", flooder.prefix());
    let got = Arc::new(AtomicUsize::new(0));
    let progress = got.clone();
    let quit2 = quit.clone();
    // The reader's connection closes when its thread ends.
    let reader_gone = format!(":{} QUIT :Connection closed", reader.prefix());
    let reader_thread = thread::spawn(move || -> Result<(usize, bool), String> {
        let mut saw_quit = false;
        let mut i = 0;
        loop {
            let l = reader
                .next_within(Duration::from_secs(60))?
                .ok_or_else(|| format!("reader: nothing for 60 s after flood message {i}"))?;
            if l == quit2 && !saw_quit {
                saw_quit = true;
                continue;
            }
            let text = l
                .strip_prefix(&head)
                .ok_or_else(|| format!("reader received {l:?} at flood message {i}"))?;
            if text == "after" {
                return Ok((i, saw_quit));
            }
            ensure!(
                text.starts_with(&format!("{i:06} ")),
                "reader received flood message {:?}, expected number {i}",
                &text[..text.len().min(10)]
            );
            i += 1;
            progress.store(i, Ordering::Relaxed);
        }
    });

    let started = Instant::now();
    let mut sent = 0;
    let mut batches = 0;
    while sent < MAX_FLOOD {
        let wait_from = Instant::now();
        while sent - got.load(Ordering::Relaxed) > 64 {
            ensure!(
                wait_from.elapsed() < STEP && !reader_thread.is_finished(),
                "the reading client stopped at {} of {sent}",
                got.load(Ordering::Relaxed)
            );
            thread::sleep(Duration::from_millis(1));
        }
        let mut batch = Vec::new();
        for _ in 0..8 {
            batch.extend_from_slice(
                format!("PRIVMSG #s :{sent:06} {}\r\n", "f".repeat(400)).as_bytes(),
            );
            sent += 1;
        }
        flooder.send_raw(&batch)?;
        batches += 1;
        if batches % 8 == 0 && stat("slow_consumers_dropped")? > 0 {
            break;
        }
    }
    wait_stat("slow_consumers_dropped", 1, STEP)?;
    log.wait_for(STEP, |l| {
        l.contains("Client Disconnected") && l.contains("slow consumer")
    })
    .ok_or("no disconnect line saying slow consumer in the kernel log")?;
    flooder.send("PRIVMSG #s :after")?;
    let (received, saw_quit) = reader_thread
        .join()
        .map_err(|_| "reader panicked".to_string())??;
    ensure!(
        received == sent,
        "the reader got {received} of {sent} flood messages"
    );
    ensure!(saw_quit, "the reader never saw {quit:?}");
    flooder.expect(&quit)?;
    flooder.expect(&reader_gone)?;
    flooder.sync()?;
    // Its socket is shut down behind what it already holds; with its tiny receive buffer,
    // reading all of that to the FIN would take zero-window probes minutes, so the case
    // checks that kchat let it go rather than reading to the end.
    wait_gone("slow")?;
    drop(slow);
    println!(
        "# IRC slow consumer dropped after {sent} lines of 420 bytes in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `max_msg_rate=50`: flood writes 300 PRIVMSG lines at once (its bucket full). watch gets
/// at most the burst plus 2 s of the rate (with 20 % slack) in the first 2 s, at least the
/// burst, and all 300 in order in the end (throttled, not dropped: no sooner than 4 s);
/// `clients_throttled` counts the pause; flood still answers a PING.
fn flood_control() -> CaseResult {
    const RATE: usize = 50;
    const LINES: usize = 300;
    start("notices=0 history=0 max_msg_rate=50")?;
    let mut flooder = register("flood")?;
    let mut watcher = register("watch")?;
    join_seen(&mut flooder, "#r", &["@flood"], &mut [])?;
    join_seen(
        &mut watcher,
        "#r",
        &["@flood", "watch"],
        &mut [&mut flooder],
    )?;
    // The bucket refills after the registration and JOIN lines.
    thread::sleep(Duration::from_millis(1500));
    let mut batch = Vec::new();
    for i in 0..LINES {
        batch.extend_from_slice(format!("PRIVMSG #r :fl {i:03}\r\n").as_bytes());
    }
    let t0 = Instant::now();
    flooder.send_raw(&batch)?;
    let mut in_2s = 0;
    let head = format!(":{} PRIVMSG #r :fl ", flooder.prefix());
    for i in 0..LINES {
        let l = watcher
            .next_within(Duration::from_secs(60))?
            .ok_or_else(|| format!("watch got {i} of {LINES} flood lines in 60 s"))?;
        ensure!(
            l == format!("{head}{i:03}"),
            "watch received {l:?}, expected {head}{i:03}"
        );
        if t0.elapsed() <= Duration::from_secs(2) {
            in_2s = i + 1;
        }
    }
    let total = t0.elapsed();
    println!(
        "# IRC flood: {in_2s} lines in the first 2 s, all {LINES} in {:.1} s (rate {RATE}/s)",
        total.as_secs_f64()
    );
    let ceiling = RATE + RATE * 2 * 12 / 10;
    ensure!(
        in_2s <= ceiling,
        "{in_2s} lines relayed in the first 2 s with max_msg_rate={RATE} (at most {ceiling})"
    );
    ensure!(
        in_2s >= RATE,
        "only {in_2s} lines in the first 2 s: starved, not throttled"
    );
    ensure!(
        total >= Duration::from_secs(4),
        "{LINES} lines relayed in {total:?}: not throttled"
    );
    ensure!(
        stat("clients_throttled")? > 0,
        "clients_throttled is 0: the flooder was never paused"
    );
    flooder.sync()?;
    watcher.sync()
}

/// Clients of [`thousand_in_a_channel`].
const CROWD: usize = 1000;
const SENDERS: usize = 4;
const PER_SENDER: usize = 50;
const BATCH: usize = 100;
const READERS: usize = 8;

fn crowd_nick(i: usize) -> String {
    format!("u{i:04}")
}

/// One member of the crowd, read without a [`kchat_proto::irc::Client`] (1,000 of them).
struct Member {
    i: usize,
    s: TcpStream,
    lines: LineSplitter,
    /// Next sequence number expected from each sender.
    next: [usize; SENDERS],
    got: usize,
    /// Names in its first 353 lines, and JOIN lines after its 366.
    names: usize,
    joins: usize,
}

impl Member {
    fn expected(&self) -> usize {
        SENDERS * PER_SENDER - if self.i < SENDERS { PER_SENDER } else { 0 }
    }

    /// Reads what is there (the socket is blocking with a timeout, or non-blocking); false
    /// if nothing was.
    fn fill(&mut self) -> Result<bool, String> {
        match self.s.read(self.lines.buffer().spare(16384)) {
            Ok(0) => Err(format!(
                "{}: kchat closed the connection",
                crowd_nick(self.i)
            )),
            Ok(n) => {
                self.lines.buffer().filled(n);
                Ok(true)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(false),
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(false),
            Err(e) => Err(format!("{}: read: {e}", crowd_nick(self.i))),
        }
    }

    /// The next complete line received, if there is one.
    fn next_line(&mut self) -> Result<Option<String>, String> {
        match self.lines.next_line() {
            None => Ok(None),
            Some(Ok(l)) => Ok(Some(String::from_utf8_lossy(l).into_owned())),
            Some(Err(e)) => Err(format!("{}: {e}", crowd_nick(self.i))),
        }
    }

    /// Reads the registration and join replies up to its 366 for `#crowd`.
    fn wait_joined(&mut self) -> CaseResult {
        let me = crowd_nick(self.i);
        let end = format!(":kchat 366 {me} #crowd :End of /NAMES list.");
        let names_head = format!(":kchat 353 {me} = #crowd :");
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut welcomed = false;
        let own = format!(":{me}!{me}@{HOST} JOIN #crowd");
        loop {
            while let Some(l) = self.next_line()? {
                if l.starts_with(&format!(":kchat 001 {me} ")) {
                    welcomed = true;
                } else if let Some(list) = l.strip_prefix(&names_head) {
                    ensure!(
                        l.len() + 2 <= 512,
                        "{me}: a 353 line of {} bytes",
                        l.len() + 2
                    );
                    self.names += list.split(' ').count();
                } else if l == end {
                    ensure!(welcomed, "{me}: 366 before 001");
                    return Ok(());
                } else if l.starts_with("ERROR") || is_error_numeric(&l) {
                    return Err(format!("{me} received {l:?} while registering and joining"));
                } else if l.ends_with(" JOIN #crowd") && l != own {
                    self.joins += 1;
                }
            }
            ensure!(
                Instant::now() < deadline,
                "{me}: no 366 for #crowd within 60 s"
            );
            self.fill()?;
        }
    }

    /// Handles the lines received after the join: JOINs of later members, the senders'
    /// messages (each once, in order), PINGs.
    fn handle(&mut self, senders: &[String]) -> CaseResult {
        let me = crowd_nick(self.i);
        while let Some(l) = self.next_line()? {
            if let Some(rest) = l.strip_prefix(':') {
                if let Some(who) = rest.strip_suffix(" JOIN #crowd") {
                    let nick = who.split('!').next().unwrap_or_default();
                    ensure!(
                        who == format!("{nick}!{nick}@{HOST}")
                            && nick.starts_with('u')
                            && nick != me,
                        "{me} received {l:?}"
                    );
                    self.joins += 1;
                    continue;
                }
                if let Some((who, text)) = rest.split_once(" PRIVMSG #crowd :m ") {
                    let parsed = text.split_once(' ').and_then(|(s, q)| {
                        Some((s.parse::<usize>().ok()?, q.parse::<usize>().ok()?))
                    });
                    let (s, seq) = parsed.ok_or_else(|| format!("{me} received {l:?}"))?;
                    ensure!(
                        s < SENDERS && who == senders[s] && s != self.i,
                        "{me} received {l:?}"
                    );
                    ensure!(
                        seq == self.next[s],
                        "{me} received message {seq} of sender {s}, expected {}",
                        self.next[s]
                    );
                    self.next[s] += 1;
                    self.got += 1;
                    continue;
                }
            }
            if l.starts_with("PING") || l.starts_with(":kchat PING") {
                let _ = self.s.write_all(b"PONG :kchat\r\n");
                continue;
            }
            return Err(format!("{me} received {l:?}"));
        }
        Ok(())
    }
}

/// True for a line `:kchat 4NN ...` or `:kchat 5NN ...`.
/// An error numeric, `422` (no MOTD: part of every welcome) aside.
fn is_error_numeric(l: &str) -> bool {
    l.strip_prefix(":kchat ")
        .and_then(|r| r.get(..4))
        .is_some_and(|c| {
            (c.starts_with('4') || c.starts_with('5'))
                && c[..3].bytes().all(|b| b.is_ascii_digit())
                && c.ends_with(' ')
                && c != "422 "
        })
}

/// Reads the members of one group until each has every message it should, then briefly
/// more, to see nothing else comes; checks each saw a JOIN for every later member. Returns
/// the group, still connected.
fn read_group(mut group: Vec<Member>, senders: Arc<Vec<String>>) -> Result<Vec<Member>, String> {
    for m in &group {
        m.s.set_nonblocking(true).ctx("nonblocking")?;
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let mut idle = true;
        for m in group.iter_mut() {
            while m.fill()? {
                idle = false;
                m.handle(&senders)?;
            }
        }
        if group.iter().all(|m| m.got == m.expected()) {
            break;
        }
        if Instant::now() > deadline {
            let m = group
                .iter()
                .find(|m| m.got < m.expected())
                .expect("one is missing messages");
            return Err(format!(
                "{} has {} of its {} messages after 90 s (next expected from each sender: {:?})",
                crowd_nick(m.i),
                m.got,
                m.expected(),
                m.next
            ));
        }
        if idle {
            thread::sleep(Duration::from_millis(2));
        }
    }
    thread::sleep(Duration::from_millis(300));
    for m in group.iter_mut() {
        while m.fill()? {
            m.handle(&senders)?;
        }
        ensure!(
            m.got == m.expected(),
            "{} got {} messages, expected {}",
            crowd_nick(m.i),
            m.got,
            m.expected()
        );
        ensure!(
            m.names + m.joins == CROWD,
            "{}: {} names when it joined and {} JOINs after, expected {CROWD} in all",
            crowd_nick(m.i),
            m.names,
            m.joins
        );
    }
    Ok(group)
}

/// - 1,000 IRC clients register and join `#crowd`, 100 at a time, each writing NICK, USER
///   and JOIN in one segment; each gets 001 and its names (itself included) and 366; the
///   rooms file shows 1,000 members;
/// - every member sees a JOIN for each member that joined after it (names + JOINs = 1,000);
/// - 4 of them send 50 numbered messages each: every other member gets all 200 (the
///   senders 150), each once, in each sender's order, and nothing else.
///
/// The members do not answer PINGs (their readers look only for chat), so the keep-alive is
/// set longer than the case can take on a slow guest (`irc_ping=3600`).
fn thousand_in_a_channel() -> CaseResult {
    start("notices=0 history=0 max_msg_rate=0 trace=0 backlog=4096 irc_ping=3600")?;
    let t = Instant::now();
    let mut members: Vec<Member> = Vec::with_capacity(CROWD);
    while members.len() < CROWD {
        let first = members.len();
        for i in first..first + BATCH {
            let mut s = TcpStream::connect(IRC_ADDR).ctx(&format!("connect member {i}"))?;
            s.set_nodelay(true).ctx("nodelay")?;
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .ctx("timeout")?;
            let n = crowd_nick(i);
            s.write_all(format!("NICK {n}\r\nUSER {n} 0 * :{n}\r\nJOIN #crowd\r\n").as_bytes())
                .ctx("register")?;
            members.push(Member {
                i,
                s,
                lines: LineSplitter::new(MAX_TAGS + MAX_LINE),
                next: [0; SENDERS],
                got: 0,
                names: 0,
                joins: 0,
            });
        }
        for m in &mut members[first..] {
            m.wait_joined()?;
            ensure!(
                m.names > first && m.names <= first + BATCH,
                "{} saw {} names when it joined, with {first} to {} members before it",
                crowd_nick(m.i),
                m.names,
                first + BATCH - 1
            );
        }
    }
    let joined = t.elapsed();
    let rows = room_rows()?;
    let crowd = rows.iter().find(|r| r[0] == "#crowd");
    ensure!(
        crowd.is_some_and(|r| r[1] == CROWD.to_string()),
        "the rooms file shows #crowd as {crowd:?}, expected {CROWD} members"
    );

    let senders: Arc<Vec<String>> = Arc::new(
        (0..SENDERS)
            .map(|i| format!("{0}!{0}@{HOST}", crowd_nick(i)))
            .collect(),
    );
    let mut outs = Vec::new();
    for m in &members[..SENDERS] {
        outs.push(m.s.try_clone().ctx("clone a sender")?);
    }
    let per_group = CROWD.div_ceil(READERS);
    let mut readers = Vec::new();
    let mut rest = members;
    while !rest.is_empty() {
        let tail = rest.split_off(per_group.min(rest.len()));
        let group = std::mem::replace(&mut rest, tail);
        let senders = senders.clone();
        readers.push(thread::spawn(move || read_group(group, senders)));
    }
    let t = Instant::now();
    for seq in 0..PER_SENDER {
        for (s, out) in outs.iter_mut().enumerate() {
            out.write_all(format!("PRIVMSG #crowd :m {s} {seq}\r\n").as_bytes())
                .ctx("send")?;
        }
        if seq % 10 == 9 {
            thread::sleep(Duration::from_millis(5));
        }
    }
    // Every group's error: a group that fails closes its members, and the others then see
    // their QUITs, so the first group's error is often not the cause.
    // A group that is done keeps its members connected until every group is: their QUITs
    // would reach the others while they still check that nothing else comes.
    let mut done = Vec::new();
    let mut errors = Vec::new();
    for r in readers {
        match r
            .join()
            .map_err(|_| "reader panicked".to_string())
            .and_then(|r| r)
        {
            Ok(group) => done.push(group),
            Err(e) => errors.push(e),
        }
    }
    ensure!(errors.is_empty(), "{}", errors.join("; "));
    drop(done);
    println!(
        "# 1,000 IRC clients registered and joined in {:.1} s; 200 messages x 999 delivered in {:.1} s",
        joined.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Waits until the clients file no longer lists a client labelled `nick`.
fn wait_gone(nick: &str) -> CaseResult {
    let deadline = Instant::now() + STEP;
    loop {
        let rows = crate::util::debugfs_table("clients", super::CLIENTS_HEADER)?;
        if !rows.iter().any(|r| r.get(1).is_some_and(|l| l == nick)) {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "{nick} is still in the clients file after {STEP:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}
