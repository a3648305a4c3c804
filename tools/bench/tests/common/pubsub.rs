// SPDX-License-Identifier: GPL-2.0
//! An in-test Redis-like pub/sub server: `SUBSCRIBE ch` is confirmed, `PUBLISH ch msg` is
//! pushed to every subscriber of `ch` as a `message` and answered with their count.

use std::{
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{Arc, Mutex},
    thread,
};

/// The subscriptions: (channel, stream).
type Subs = Arc<Mutex<Vec<(Vec<u8>, TcpStream)>>>;

/// Starts the server on an ephemeral port.
pub fn start_pubsub() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let subs: Subs = Arc::default();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            stream.set_nodelay(true).expect("nodelay");
            let subs = subs.clone();
            thread::spawn(move || pubsub_client(stream, &subs));
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
fn pubsub_client(stream: TcpStream, subs: &Subs) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    while let Some(args) = read_command(&mut reader) {
        match args[0].to_ascii_uppercase().as_slice() {
            b"SUBSCRIBE" => {
                let ch = &args[1];
                let sub = writer.try_clone().expect("clone");
                subs.lock().unwrap().push((ch.clone(), sub));
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
                let mut n = 0;
                for (_, s) in subs.iter_mut().filter(|(c, _)| c == ch) {
                    let _ = s.write_all(&m);
                    n += 1;
                }
                let _ = writer.write_all(format!(":{n}\r\n").as_bytes());
            }
            _ => {
                let _ = writer.write_all(b"-ERR unknown command\r\n");
            }
        }
    }
}
