//! IRC framing: lines split anywhere, many lines per segment, LF and CR LF, empty lines, the
//! 512-byte bound (417) and memory under an endless line, NUL bytes.

use std::{
    thread,
    time::{Duration, Instant},
};

use super::{bytes_in_of, join_seen, num, register, welcome, User};
use crate::{
    ensure,
    util::{start, stat, STEP},
    Case, CaseResult,
};

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "irc framing: split at every byte, one byte per segment, 100 lines per segment, LF, CR LF, empty lines",
            run: split_and_batched,
        },
        Case {
            name: "irc framing: 512 bytes pass, 513 get 417 and the line after works; 100 KB line: one 417, bounded memory; NUL",
            run: long_lines,
        },
    ]
}

/// alice and bob in `#f`:
/// - a PRIVMSG line sent in two writes, cut at every position in turn (CR and LF apart
///   too), each arrives whole;
/// - a line written one byte per segment (TCP_NODELAY) arrives; so does a registration
///   written one byte at a time (its welcome burst is exact);
/// - 100 lines in one write arrive, in order;
/// - LF-only and CR LF lines mixed with empty lines (CR LF, LF) in one write: the two
///   messages arrive, the empty lines draw nothing, and the `PING` after them is answered
///   with nothing before the PONG.
fn split_and_batched() -> CaseResult {
    start("history=0 max_msg_rate=0")?;
    let mut alice = register("alice")?;
    let mut bob = register("bob")?;
    join_seen(&mut alice, "#f", &["@alice"], &mut [])?;
    join_seen(&mut bob, "#f", &["@alice", "bob"], &mut [&mut alice])?;
    let from = alice.prefix();

    let len = "PRIVMSG #f :cut at 000\r\n".len();
    for k in 1..len {
        let line = format!("PRIVMSG #f :cut at {k:03}\r\n");
        alice.send_raw(&line.as_bytes()[..k])?;
        thread::sleep(Duration::from_millis(3));
        alice.send_raw(&line.as_bytes()[k..])?;
        bob.expect(&format!(":{from} PRIVMSG #f :cut at {k:03}"))
            .map_err(|e| format!("line cut after {k} bytes: {e}"))?;
    }
    for b in b"PRIVMSG #f :one byte at a time\r\n" {
        alice.send_raw(&[*b])?;
        thread::sleep(Duration::from_millis(1));
    }
    bob.expect(&format!(":{from} PRIVMSG #f :one byte at a time"))?;

    let mut carol = User::connect()?;
    for b in b"NICK carol\r\nUSER carol 0 * :Carol\r\n" {
        carol.send_raw(&[*b])?;
        thread::sleep(Duration::from_millis(1));
    }
    carol.nick = "carol".into();
    carol.user = "carol".into();
    carol.expect_lines(&welcome("carol", "carol", 3, 0, 2))?;

    let mut batch = Vec::new();
    for i in 0..100 {
        batch.extend_from_slice(format!("PRIVMSG #f :batch {i:03}\r\n").as_bytes());
    }
    alice.send_raw(&batch)?;
    for i in 0..100 {
        bob.expect(&format!(":{from} PRIVMSG #f :batch {i:03}"))?;
    }

    alice.send_raw(b"PRIVMSG #f :lf only\n\r\n\nPRIVMSG #f :crlf\r\n\r\n\nPING :end\n")?;
    bob.expect_lines(&[
        format!(":{from} PRIVMSG #f :lf only"),
        format!(":{from} PRIVMSG #f :crlf"),
    ])?;
    alice.expect(":kchat PONG kchat :end")?;
    alice.sync()?;
    bob.sync()?;
    carol.sync()
}

/// alice and bob in `#f`:
/// - a line of exactly 512 bytes with its CR LF is read (`PRIVMSG nobody :...` draws 401);
///   one of 513 gets `417 alice :Input line was too long`, and the next line is answered
///   normally; a too-long PRIVMSG to `#f` reaches nobody;
/// - a 100,000-byte line without LF: while kchat reads it all (the clients file's bytes_in),
///   its buffers (`buffer_bytes`) grow by at most 8 KiB; once the LF comes, exactly one 417,
///   then the next line is answered;
/// - a NUL in a message's text reaches the channel as a space; a NUL in a command gets 421.
fn long_lines() -> CaseResult {
    start("history=0")?;
    let mut alice = register("alice")?;
    let mut bob = register("bob")?;
    join_seen(&mut alice, "#f", &["@alice"], &mut [])?;
    join_seen(&mut bob, "#f", &["@alice", "bob"], &mut [&mut alice])?;
    let too_long = num("417", "alice", ":Input line was too long");

    let head = "PRIVMSG nobody :";
    let fits = format!("{head}{}", "x".repeat(510 - head.len()));
    ensure!(
        fits.len() + 2 == 512,
        "test line is {} bytes",
        fits.len() + 2
    );
    alice.ask(
        &fits,
        &[num("401", "alice", "nobody :No such nick/channel")],
    )?;
    let over = format!("{head}{}", "x".repeat(511 - head.len()));
    alice.ask(&over, &[&too_long])?;
    alice.sync()?;
    alice.ask(&format!("PRIVMSG #f :{}", "y".repeat(600)), &[&too_long])?;
    alice.sync()?;
    bob.sync()?;

    let base = stat("buffer_bytes")?;
    let peer = alice.local_addr();
    let in0 = bytes_in_of(&peer)?;
    alice.send_raw(b"PRIVMSG #f :")?;
    let chunk = vec![b'z'; 1000];
    for _ in 0..100 {
        alice.send_raw(&chunk)?;
    }
    let deadline = Instant::now() + STEP;
    let mut peak = base;
    loop {
        peak = peak.max(stat("buffer_bytes")?);
        let read = bytes_in_of(&peer)? - in0;
        if read >= 100_000 {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "kchat read {read} of the 100,012 bytes sent within {STEP:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
    peak = peak.max(stat("buffer_bytes")?);
    println!("# 100 KB line: buffer_bytes {base} before, at most {peak} while it arrived");
    ensure!(
        peak <= base + 8192,
        "buffer_bytes went from {base} to {peak} for one line without LF"
    );
    alice.send_raw(b"\r\n")?;
    alice.ask("PING big", &[too_long.as_str(), ":kchat PONG kchat :big"])?;
    bob.sync()?;

    alice.send_raw(b"PRIVMSG #f :nul\0here\r\n")?;
    bob.expect(&format!(":{} PRIVMSG #f :nul here", alice.prefix()))?;
    alice.send_raw(b"PI\0NG x\r\n")?;
    let l = alice.next("421")?;
    ensure!(
        l.starts_with(":kchat 421 alice ") && l.ends_with(" :Unknown command"),
        "alice received {l:?} for a command with a NUL, expected 421 ... :Unknown command"
    );
    alice.sync()?;
    bob.sync()
}
