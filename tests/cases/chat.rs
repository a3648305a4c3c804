//! Relaying: who receives what, intact and in order, however the frames are cut.

use std::{
    collections::HashMap,
    thread,
    time::{Duration, Instant},
};

use kchat_proto::encode;

use crate::{
    ensure,
    util::{
        self, connect, expect_frame, expect_silence, label, start, wait_clients, Context, STEP,
    },
    Case, CaseResult,
};

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "two clients: A's message reaches B as IP:PORT: text, not A",
            run: two_clients,
        },
        Case {
            name: "100 clients x 10 messages: each gets the other 990, intact, in order",
            run: hundred_clients,
        },
        Case {
            name: "split frames: one byte per write, 50 frames per write, split header",
            run: split_frames,
        },
    ]
}

/// - B receives exactly `A_ADDR: hello` (the default label is the sender's `ip:port`);
/// - A receives nothing of its own message;
/// - the stats view counts one relayed message.
fn two_clients() -> CaseResult {
    start("notices=0")?;
    let mut a = connect()?;
    let mut b = connect()?;
    wait_clients(2, STEP)?;
    a.send(b"hello").ctx("send")?;
    expect_frame(&mut b, &format!("{}: hello", label(&a)))?;
    expect_silence(&mut a, Duration::from_millis(300))?;
    b.send(b"hi back").ctx("send")?;
    expect_frame(&mut a, &format!("{}: hi back", label(&b)))?;
    expect_silence(&mut b, Duration::from_millis(300))?;
    ensure!(
        util::stat("messages_relayed")? == 2,
        "messages_relayed is not 2"
    );
    Ok(())
}

/// The payload of message `seq` from `sender`: recognisable, of varying length, and
/// checkable byte for byte.
fn message(sender: usize, seq: usize) -> Vec<u8> {
    let mut m = format!("m {sender} {seq} ").into_bytes();
    let fill = (sender * 7 + seq * 13) % 200;
    m.extend((0..fill).map(|i| b'a' + ((sender + seq + i) % 26) as u8));
    m
}

/// - 100 clients each send 10 messages, all at once;
/// - every client receives exactly the 990 messages of the others, none of its own;
/// - each is byte-for-byte what its sender sent, under the sender's label;
/// - each sender's messages arrive in the order sent.
fn hundred_clients() -> CaseResult {
    const N: usize = 100;
    const M: usize = 10;
    start("notices=0")?;
    let mut conns = Vec::new();
    for _ in 0..N {
        conns.push(connect()?);
    }
    wait_clients(N as u64, STEP)?;
    let labels: HashMap<String, usize> = conns
        .iter()
        .enumerate()
        .map(|(i, c)| (label(c), i))
        .collect();
    let started = Instant::now();
    let handles: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(me, mut c)| {
            let labels = labels.clone();
            thread::spawn(move || -> Result<(), String> {
                for seq in 0..M {
                    c.send(&message(me, seq)).ctx("send")?;
                }
                let mut next = vec![0usize; N];
                for got in 0..(N - 1) * M {
                    let f = c
                        .recv_timeout(Duration::from_secs(60))
                        .ctx("recv")?
                        .ok_or_else(|| {
                            format!("client {me}: only {got} of {} messages", (N - 1) * M)
                        })?;
                    let sep = f
                        .windows(2)
                        .position(|w| w == b": ")
                        .ok_or("frame without label")?;
                    let from = String::from_utf8_lossy(&f[..sep]).into_owned();
                    let sender = *labels
                        .get(&from)
                        .ok_or_else(|| format!("unknown label {from}"))?;
                    ensure!(sender != me, "client {me} received its own message");
                    let seq = next[sender];
                    ensure!(seq < M, "client {me}: too many messages from {sender}");
                    ensure!(
                        f[sep + 2..] == message(sender, seq)[..],
                        "client {me}: message {seq} from {sender} corrupt or out of order"
                    );
                    next[sender] += 1;
                }
                expect_silence(&mut c, Duration::from_millis(200))
            })
        })
        .collect();
    for h in handles {
        h.join()
            .map_err(|_| "client thread panicked".to_string())??;
    }
    println!(
        "# 100 clients: {} deliveries in {:.1} s",
        N * (N - 1) * M,
        started.elapsed().as_secs_f64()
    );
    ensure!(
        util::stat("messages_relayed")? == (N * (N - 1) * M) as u64,
        "messages_relayed is not {}",
        N * (N - 1) * M
    );
    Ok(())
}

/// - a frame written one byte at a time (each byte its own TCP segment) is reassembled;
/// - 50 frames in one write arrive as 50 messages;
/// - a header split 1 + 3 bytes across writes, then its payload, is one message.
fn split_frames() -> CaseResult {
    start("notices=0")?;
    let mut rx = connect()?;
    let mut one = connect()?;
    let mut many = connect()?;
    let mut split = connect()?;
    wait_clients(4, STEP)?;

    let frame = encode(b"one byte at a time");
    for b in &frame {
        one.send_raw(std::slice::from_ref(b)).ctx("send byte")?;
        thread::sleep(Duration::from_millis(5));
    }
    expect_frame(&mut rx, &format!("{}: one byte at a time", label(&one)))?;

    let mut batch = Vec::new();
    for i in 0..50 {
        batch.extend(encode(format!("batch {i}").as_bytes()));
    }
    many.send_raw(&batch).ctx("send batch")?;
    for i in 0..50 {
        expect_frame(&mut rx, &format!("{}: batch {i}", label(&many)))?;
    }

    let frame = encode(b"split header");
    split.send_raw(&frame[..1]).ctx("send")?;
    thread::sleep(Duration::from_millis(50));
    split.send_raw(&frame[1..4]).ctx("send")?;
    thread::sleep(Duration::from_millis(50));
    split.send_raw(&frame[4..]).ctx("send")?;
    expect_frame(&mut rx, &format!("{}: split header", label(&split)))?;
    // A keep-alive (length 0) is accepted and relays nothing.
    split.send_raw(&[0, 0, 0, 0]).ctx("send")?;
    expect_silence(&mut rx, Duration::from_millis(300))?;
    Ok(())
}
