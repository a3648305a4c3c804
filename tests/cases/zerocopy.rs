//! The zero-copy send path: room messages written once into page-backed logs and spliced to
//! every recipient (`zerocopy=1`, the default), and the plain-copy path it replaces
//! (`zerocopy=0`). The other cases run on the default path; these check what is particular
//! to it: the log pages kchat holds (`log_pages`), a stalled reader's pages released with
//! it, and bytes that reach a reader intact however TCP cuts the sends.

use std::{
    io::{Read, Write},
    os::fd::AsRawFd,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use kchat_proto::{encode, Decoder};

use crate::{
    attack::LOG_PAGES_SLACK,
    ensure,
    util::{
        connect, label, recv_until, say, settled_stats, start, stat, wait_clients, wait_stat,
        Context, STEP,
    },
    Case, CaseResult,
};

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "zero-copy: a stalled reader of small messages is dropped and the log pages it held are released",
            run: stalled_reader_releases_pages,
        },
        Case {
            name: "zero-copy: 400 messages intact and in order through a 2 KiB receive buffer read in small pieces",
            run: intact_through_tiny_receive_buffer,
        },
        Case {
            name: "zero-copy: private messages, replies and errors splice in the same sends as room messages, intact and in order",
            run: notes_splice_with_room_messages,
        },
        Case {
            name: "zerocopy=0: messages are copied (no log page), relayed intact and in order",
            run: copy_path,
        },
    ]
}

/// A message of `len` bytes that says which it is: `NNNNN ` then a pattern that depends on
/// the number, so that a byte out of place anywhere shows.
fn numbered(i: usize, len: usize) -> Vec<u8> {
    let mut m = format!("{i:05} ").into_bytes();
    let mut x = (i as u32).wrapping_mul(2_654_435_761);
    while m.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        m.push(b'a' + (x % 26) as u8);
    }
    m
}

/// - a client that never reads, in `#lobby` with a flooder and a reader, while 200-byte
///   messages flow (`max_queue_bytes=65536`): kchat holds log pages for it (`log_pages`
///   rises well above the room's one current page) until it is dropped as a slow consumer;
/// - the reader gets every message, intact and in order;
/// - once the stalled client is gone, `log_pages` falls back to the room's current page(s).
fn stalled_reader_releases_pages() -> CaseResult {
    const MSG: usize = 200;
    let mut log = start("notices=0 history=0 max_queue_bytes=65536 max_msg_rate=0")?;
    let slow = connect()?;
    let mut flooder = connect()?;
    let reader = connect()?;
    wait_clients(3, STEP)?;
    let flood_label = label(&flooder);
    let got = Arc::new(AtomicUsize::new(0));
    let progress = got.clone();
    let prefix = format!("{flood_label}: ");
    let reader_thread = thread::spawn(move || -> Result<usize, String> {
        let mut reader = reader;
        for i in 0.. {
            let f = reader
                .recv_timeout(Duration::from_secs(60))
                .ctx(&format!("flood message {i}"))?
                .ok_or_else(|| format!("no flood message {i} within 60 s"))?;
            if f == format!("{prefix}after").into_bytes() {
                return Ok(i);
            }
            let mut want = prefix.clone().into_bytes();
            want.extend(numbered(i, MSG));
            ensure!(
                f == want,
                "flood message {i} differs: {:?}",
                String::from_utf8_lossy(&f)
            );
            progress.store(i + 1, Ordering::Relaxed);
        }
        unreachable!()
    });
    let dropped = format!(
        "Client Disconnected: {0} ({0}): slow consumer",
        label(&slow)
    );
    let mut sent = 0;
    let mut peak_pages = 0;
    while sent < 200_000 {
        let wait_from = Instant::now();
        while sent - got.load(Ordering::Relaxed) > 64 {
            ensure!(
                wait_from.elapsed() < STEP,
                "the reading client stopped at {} of {sent}",
                got.load(Ordering::Relaxed)
            );
            thread::sleep(Duration::from_millis(1));
        }
        let mut batch = Vec::new();
        for _ in 0..32 {
            batch.extend(encode(&numbered(sent, MSG)));
            sent += 1;
        }
        flooder.stream().write_all(&batch).ctx("flood")?;
        // The stalled client's queue fills only once its socket buffers are full, in a few
        // hundred messages: sample every batch.
        peak_pages = peak_pages.max(stat("log_pages")?);
        if log
            .wait_for(Duration::ZERO, |l| l.contains(&dropped))
            .is_some()
        {
            break;
        }
    }
    log.wait_contains(&dropped, STEP)?;
    wait_stat("slow_consumers_dropped", 1, STEP)?;
    wait_clients(2, STEP)?;
    flooder.send(b"after").ctx("send")?;
    let received = reader_thread
        .join()
        .map_err(|_| "reader panicked".to_string())??;
    ensure!(received == sent, "the reader got {received} of {sent}");
    // 64 KiB of 200-byte frames in pages: about 16 pages while the stalled client's queue
    // filled (sampled, so the peak seen may be lower, but not down to the current page).
    println!(
        "# {sent} messages sent; log_pages peaked at {peak_pages} or more while the client stalled"
    );
    ensure!(
        peak_pages >= 4,
        "log_pages stayed at {peak_pages} while a client held 64 KiB of queued room messages"
    );
    let deadline = Instant::now() + STEP;
    loop {
        let pages = stat("log_pages")?;
        if pages <= LOG_PAGES_SLACK {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "log_pages is {pages} with the stalled client gone (at most {LOG_PAGES_SLACK})"
        );
        thread::sleep(Duration::from_millis(50));
    }
    drop(slow);
    Ok(())
}

/// - a reader whose receive buffer is 2 KiB reads 100 bytes at a time with pauses, so
///   kchat's sends are cut at every byte offset and wait on a tiny window;
/// - 400 messages of 6 to 1,000 bytes (all within a log page's half, so spliced) arrive
///   intact and in order, and so do they at a second, normal reader;
/// - the sends spliced log pages (`spliced_sends`).
fn intact_through_tiny_receive_buffer() -> CaseResult {
    const N: usize = 400;
    let _log = start("notices=0 history=0 max_msg_rate=0 max_queue_bytes=16777216")?;
    let sender = connect()?;
    let tiny = connect()?;
    let normal = connect()?;
    wait_clients(3, STEP)?;
    let rcvbuf: libc::c_int = 2048;
    // SAFETY: a valid socket and a c_int option value of the given size.
    let r = unsafe {
        libc::setsockopt(
            tiny.stream().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&rcvbuf as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    ensure!(r == 0, "SO_RCVBUF: {}", std::io::Error::last_os_error());
    let prefix = format!("{}: ", label(&sender));
    let len_of = |i: usize| 1 + (i * 7919) % 1000;
    let expect = move |i: usize| {
        let mut want = prefix.clone().into_bytes();
        want.extend(numbered(i, len_of(i).max(6)));
        want
    };
    let tiny_thread = {
        let expect = expect.clone();
        thread::spawn(move || -> Result<(), String> {
            let mut s = tiny.stream().try_clone().ctx("clone")?;
            s.set_read_timeout(Some(Duration::from_secs(60)))
                .ctx("timeout")?;
            let mut dec = Decoder::new(1 << 20);
            let mut i = 0;
            let mut buf = [0u8; 100];
            while i < N {
                let n = s.read(&mut buf).ctx(&format!("read before message {i}"))?;
                ensure!(n > 0, "kchat closed the tiny reader at message {i}");
                dec.extend(&buf[..n]);
                while let Some(f) = dec.next_frame().map_err(|e| format!("{e:?}"))? {
                    ensure!(
                        f == expect(i).as_slice(),
                        "message {i} differs at the tiny reader"
                    );
                    i += 1;
                }
                if i % 64 == 0 {
                    thread::sleep(Duration::from_millis(1));
                }
            }
            Ok(())
        })
    };
    let normal_thread = thread::spawn(move || -> Result<(), String> {
        let mut normal = normal;
        for i in 0..N {
            let f = normal
                .recv_timeout(Duration::from_secs(60))
                .ctx(&format!("message {i}"))?
                .ok_or_else(|| format!("no message {i} at the normal reader"))?;
            ensure!(f == expect(i), "message {i} differs at the normal reader");
        }
        Ok(())
    });
    for chunk in (0..N).collect::<Vec<_>>().chunks(50) {
        let mut batch = Vec::new();
        for &i in chunk {
            batch.extend(encode(&numbered(i, len_of(i).max(6))));
        }
        sender.stream().write_all(&batch).ctx("send")?;
    }
    tiny_thread
        .join()
        .map_err(|_| "tiny reader panicked".to_string())??;
    normal_thread
        .join()
        .map_err(|_| "normal reader panicked".to_string())??;
    let spliced = stat("spliced_sends")?;
    println!("# {spliced} sends spliced log pages");
    ensure!(spliced > 0, "no send spliced: the messages were copied");
    ensure!(
        stat("log_pages")? >= 1,
        "no log page after 400 room messages"
    );
    ensure!(
        stat("slow_consumers_dropped")? == 0,
        "a reader was dropped as a slow consumer"
    );
    Ok(())
}

/// Sets `c`'s nick to `nick` and waits until `/who` shows it.
fn set_nick(c: &mut kchat_proto::Conn, nick: &str) -> Result<(), String> {
    say(c, &format!("/nick {nick}"))?;
    say(c, "/who")?;
    recv_until(c, "the /who reply", |f| {
        f.starts_with("* ") && f.contains(" online in ") && f.contains(nick)
    })?;
    Ok(())
}

/// - amy reads while bob says 300 room messages and cat sends her 300 private messages,
///   interleaved, and she asks `/who` and writes to a nick nobody has, 30 times each: every
///   frame reaches her intact, each kind in its order;
/// - every send of the case spliced (`spliced_sends` grows with `sends`): the private
///   messages, the replies and the errors went out of the notes log in the same sends as
///   the room's messages;
/// - `note_pages` is back to at most 1 (the notes log's current page) once all is sent.
fn notes_splice_with_room_messages() -> CaseResult {
    const N: usize = 300;
    const ASKS: usize = 30;
    let _log = start("notices=0 history=0 max_msg_rate=0")?;
    let mut amy = connect()?;
    let mut bob = connect()?;
    let mut cat = connect()?;
    wait_clients(3, STEP)?;
    set_nick(&mut amy, "amy")?;
    set_nick(&mut bob, "bob")?;
    set_nick(&mut cat, "cat")?;
    let [sends0, spliced0] = settled_stats(["sends", "spliced_sends"])?;
    // Bob's and cat's frames are written in turns, ten at a time, and amy's questions between
    // them, while amy does not read: her queue holds all three kinds at once.
    for round in 0..N / 10 {
        let mut room = Vec::new();
        let mut private = Vec::new();
        for i in round * 10..round * 10 + 10 {
            room.extend(encode(&numbered(i, 20 + i % 500)));
            let mut p = b"/msg amy ".to_vec();
            p.extend(numbered(i, 20 + (i * 7) % 500));
            private.extend(encode(&p));
        }
        bob.stream().write_all(&room).ctx("bob sends")?;
        cat.stream().write_all(&private).ctx("cat sends")?;
        if round < ASKS {
            let mut ask = encode(b"/who");
            ask.extend(encode(b"/msg nobody-here hello"));
            amy.stream().write_all(&ask).ctx("amy asks")?;
        }
    }
    let (mut room, mut private, mut who, mut errors) = (0, 0, 0, 0);
    while room < N || private < N || who < ASKS || errors < ASKS {
        let f = amy.recv_timeout(STEP).ctx("amy reads")?.ok_or_else(|| {
            format!("amy got {room} room, {private} private messages, {who} /who replies, {errors} errors, then nothing")
        })?;
        if let Some(text) = f.strip_prefix(b"bob: ") {
            ensure!(
                text == numbered(room, 20 + room % 500).as_slice(),
                "room message {room} differs: {:?}",
                String::from_utf8_lossy(&f)
            );
            room += 1;
        } else if let Some(text) = f.strip_prefix(b"cat (private): ") {
            ensure!(
                text == numbered(private, 20 + (private * 7) % 500).as_slice(),
                "private message {private} differs: {:?}",
                String::from_utf8_lossy(&f)
            );
            private += 1;
        } else if f.starts_with(b"* 3 online in #lobby: ") {
            who += 1;
        } else if f == b"! no such nick: nobody-here" {
            errors += 1;
        } else {
            return Err(format!("amy got {:?}", String::from_utf8_lossy(&f)));
        }
    }
    // Everything amy was sent has been read: nothing is left to send.
    let [sends, spliced] = settled_stats(["sends", "spliced_sends"])?;
    let (sends, spliced) = (sends - sends0, spliced - spliced0);
    println!("# {sends} sends, {spliced} of them spliced");
    ensure!(sends > 0, "no send counted");
    ensure!(
        spliced == sends,
        "{} of {sends} sends copied frames: private messages, replies or errors were not in the notes log",
        sends - spliced
    );
    let deadline = Instant::now() + STEP;
    while stat("note_pages")? > 1 {
        ensure!(
            Instant::now() < deadline,
            "note_pages is {} with every note sent (at most 1)",
            stat("note_pages")?
        );
        thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// - with `zerocopy=0`, messages between three clients arrive intact and in order;
/// - no log page is ever allocated, no send splices.
fn copy_path() -> CaseResult {
    let _log = start("notices=0 history=5 zerocopy=0")?;
    let mut a = connect()?;
    let mut b = connect()?;
    let mut c = connect()?;
    wait_clients(3, STEP)?;
    let la = label(&a);
    for i in 0..200 {
        a.send(&numbered(i, 10 + i % 300)).ctx("send")?;
    }
    for (name, r) in [("b", &mut b), ("c", &mut c)] {
        for i in 0..200 {
            let f = r
                .recv_timeout(STEP)
                .ctx(&format!("{name} message {i}"))?
                .ok_or_else(|| format!("{name}: no message {i}"))?;
            let mut want = format!("{la}: ").into_bytes();
            want.extend(numbered(i, 10 + i % 300));
            ensure!(f == want, "{name}: message {i} differs");
        }
    }
    let (pages, notes) = (stat("log_pages")?, stat("note_pages")?);
    ensure!(
        pages == 0 && notes == 0,
        "zerocopy=0 but log_pages is {pages}, note_pages {notes}"
    );
    let spliced = stat("spliced_sends")?;
    ensure!(spliced == 0, "zerocopy=0 but {spliced} sends spliced");
    Ok(())
}
