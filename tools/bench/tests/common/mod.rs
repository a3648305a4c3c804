// SPDX-License-Identifier: GPL-2.0
//! Tiny in-test servers for the integration tests: a kchat relay (optionally losing one
//! message) and a Redis-like pub/sub server, plus running the real binary.

#![allow(dead_code)] // Each test file uses a different part of this module.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::Path,
    process::{Command, Output},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    thread,
};

use kchat_proto::Decoder;

/// The connections a relay writes to: (id, stream).
type Peers = Arc<Mutex<Vec<(usize, TcpStream)>>>;

/// Starts a kchat relay on an ephemeral port: every frame from a client goes to every other
/// client as `ip:port: payload`. With `drop_nth = Some(n)`, the n-th (from 1) benchmark
/// message (payload starting with `KCB1`) is not sent to one of its recipients.
pub fn start_relay(drop_nth: Option<usize>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let peers: Peers = Arc::default();
    let seen = Arc::new(AtomicUsize::new(0));
    thread::spawn(move || {
        for (id, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { continue };
            stream.set_nodelay(true).expect("nodelay");
            peers
                .lock()
                .unwrap()
                .push((id, stream.try_clone().expect("clone")));
            let (peers, seen) = (peers.clone(), seen.clone());
            thread::spawn(move || relay_client(id, stream, &peers, &seen, drop_nth));
        }
    });
    addr
}

/// Relays one client's frames until it disconnects.
fn relay_client(
    id: usize,
    mut stream: TcpStream,
    peers: &Peers,
    seen: &AtomicUsize,
    drop_nth: Option<usize>,
) {
    let label = stream.peer_addr().expect("peer").to_string();
    let mut dec = Decoder::new(1 << 20);
    let mut buf = vec![0u8; 65536];
    let mut out = Vec::new();
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        dec.extend(&buf[..n]);
        while let Some(frame) = dec.next_frame().expect("frame") {
            let mut skip = None;
            if frame.starts_with(b"KCB1")
                && Some(seen.fetch_add(1, Ordering::SeqCst) + 1) == drop_nth
            {
                skip = Some(());
            }
            out.clear();
            let mut body = format!("{label}: ").into_bytes();
            body.extend_from_slice(frame);
            kchat_proto::encode_into(&body, &mut out);
            let mut peers = peers.lock().unwrap();
            for (pid, peer) in peers.iter_mut() {
                if *pid == id {
                    continue;
                }
                if skip.take().is_some() {
                    continue;
                }
                let _ = peer.write_all(&out);
            }
        }
    }
    peers.lock().unwrap().retain(|(pid, _)| *pid != id);
}

/// Starts a Redis-like pub/sub server: `SUBSCRIBE ch` is confirmed, `PUBLISH ch msg` is
/// pushed to every subscriber as a `message` and answered with the subscriber count.
pub fn start_pubsub() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let subs: Peers = Arc::default();
    thread::spawn(move || {
        for (id, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { continue };
            stream.set_nodelay(true).expect("nodelay");
            let subs = subs.clone();
            thread::spawn(move || pubsub_client(id, stream, &subs));
        }
    });
    addr
}

/// Reads one RESP command (an array of bulk strings).
fn read_command(r: &mut impl BufRead) -> Option<Vec<Vec<u8>>> {
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let n: usize = line.trim_end().strip_prefix('*')?.parse().ok()?;
    let mut args = Vec::new();
    for _ in 0..n {
        line.clear();
        r.read_line(&mut line).ok()?;
        let len: usize = line.trim_end().strip_prefix('$')?.parse().ok()?;
        let mut arg = vec![0u8; len + 2];
        r.read_exact(&mut arg).ok()?;
        arg.truncate(len);
        args.push(arg);
    }
    Some(args)
}

/// Serves one pub/sub client.
fn pubsub_client(id: usize, stream: TcpStream, subs: &Peers) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    while let Some(args) = read_command(&mut reader) {
        match args[0].to_ascii_uppercase().as_slice() {
            b"SUBSCRIBE" => {
                subs.lock()
                    .unwrap()
                    .push((id, writer.try_clone().expect("clone")));
                let ch = &args[1];
                let mut m = format!("*3\r\n$9\r\nsubscribe\r\n${}\r\n", ch.len()).into_bytes();
                m.extend_from_slice(ch);
                m.extend_from_slice(b"\r\n:1\r\n");
                let _ = writer.write_all(&m);
            }
            b"PUBLISH" => {
                let (ch, msg) = (&args[1], &args[2]);
                let mut m = format!("*3\r\n$7\r\nmessage\r\n${}\r\n", ch.len()).into_bytes();
                m.extend_from_slice(ch);
                m.extend_from_slice(format!("\r\n${}\r\n", msg.len()).as_bytes());
                m.extend_from_slice(msg);
                m.extend_from_slice(b"\r\n");
                let mut subs = subs.lock().unwrap();
                for (_, s) in subs.iter_mut() {
                    let _ = s.write_all(&m);
                }
                let _ = writer.write_all(format!(":{}\r\n", subs.len()).as_bytes());
            }
            _ => {
                let _ = writer.write_all(b"-ERR unknown command\r\n");
            }
        }
    }
}

/// Runs the kchat-bench binary with `args` plus `--json json`.
pub fn bench(args: &[&str], json: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kchat-bench"))
        .args(args)
        .arg("--json")
        .arg(json)
        .args(["--quiet", "--idle-timeout", "5"])
        .output()
        .expect("run kchat-bench")
}

/// The JSON records in `path` (one object per line).
pub fn records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("json written")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

/// A fresh path for a test's JSON output.
pub fn temp_json(name: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("kchat-bench-{}-{name}.json", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

/// Field `k` of record `r` as a number.
pub fn num(r: &serde_json::Value, k: &str) -> f64 {
    r[k].as_f64()
        .unwrap_or_else(|| panic!("field {k} missing in {r}"))
}
