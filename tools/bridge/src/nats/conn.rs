// SPDX-License-Identifier: GPL-2.0
//! The NATS side: one thread that connects to one of the servers, greets it, subscribes,
//! reads, and reconnects (to the next server) when the connection fails.
//!
//! A session: connect; read `INFO`; queue, ahead of everything waiting,
//! `CONNECT`, the three `SUB`s and a `PING`; start the writer; read. The server's answer to
//! that first `PING` means it took the `CONNECT` and the subscriptions: the session is up
//! and the core is told ([`Event::NatsUp`]), and publishes `hello` and its state. A server
//! `PING` is answered at once, ahead of the backlog; our own `PING` goes out when the server
//! has been quiet for [`PING_EVERY`], and [`MAX_PINGS_OUT`] of them unanswered mean the
//! connection is dead.

use std::{
    io::{self, Read},
    net::{Shutdown, TcpStream},
    sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc::SyncSender,
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use kchat_proto::StreamBuf;

use super::{
    json,
    proto::{self, ServerOp, MAX_PAYLOAD_LIMIT},
    url::ServerUrl,
};
use crate::{
    event::{Event, READ_BYTES},
    log::{log, shown, Throttle},
    net::{self, Backoff, GREETING_TIMEOUT},
    outbox::{self, Outbox},
    subject,
};

/// How long the server may stay quiet before we `PING` it.
pub const PING_EVERY: Duration = Duration::from_secs(5);

/// Our `PING`s left unanswered that mean the connection is dead.
pub const MAX_PINGS_OUT: u32 = 3;

/// How often a reader wakes to check its timers.
const READ_TICK: Duration = Duration::from_millis(250);

/// Servers learned from `INFO` beyond those given.
const MAX_LEARNED: usize = 32;

/// Subscription ids.
const SID_ROOMS: u32 = 1;
const SID_PRESENCE: u32 = 2;
const SID_PRIV: u32 = 3;

/// The NATS side of the bridge.
pub struct NatsSide {
    /// Servers to try in turn: those given, then those learned from `INFO`.
    pub urls: Vec<ServerUrl>,
    /// Our node name (our private subject, our connection's name).
    pub node: String,
    pub max_backoff: Duration,
    /// What to publish.
    pub outbox: Arc<Outbox>,
    /// The server's max_payload, for the writer and the core.
    pub max_payload: Arc<AtomicUsize>,
    pub events: SyncSender<Event>,
}

/// How a session ended.
enum Ended {
    /// It was up, then failed: why.
    Lost(String),
    /// It never came up: why.
    Failed(String),
    /// The core is gone: stop.
    Exit,
}

/// Reads once, waiting at most the stream's read timeout: bytes read, or `None` on timeout.
fn read_some(stream: &mut TcpStream, buf: &mut StreamBuf) -> io::Result<Option<usize>> {
    // No more than READ_BYTES, though the buffer may have more room (it grows for a long
    // frame): one read is one event, and the channel's memory bound counts on that.
    match stream.read(&mut buf.spare(READ_BYTES)[..READ_BYTES]) {
        Ok(0) => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "server closed the connection",
        )),
        Ok(n) => {
            buf.filled(n);
            Ok(Some(n))
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

impl NatsSide {
    /// Starts the thread.
    pub fn spawn(self) -> io::Result<thread::JoinHandle<()>> {
        thread::Builder::new()
            .name("nats".into())
            .spawn(move || self.run())
    }

    /// Connects, and reconnects, until the core is gone.
    fn run(mut self) {
        let mut next = 0;
        let mut failed_in_a_row = 0;
        let mut backoff = Backoff::new(self.max_backoff);
        let mut throttles: Vec<Throttle> = Vec::new();
        loop {
            let i = next % self.urls.len();
            next += 1;
            let url = self.urls[i].clone();
            match self.session(&url) {
                Ended::Lost(why) => {
                    log!("disconnected from NATS {url}: {why}; reconnecting");
                    if self.events.send(Event::NatsDown).is_err() {
                        return;
                    }
                    backoff.reset();
                    failed_in_a_row = 0;
                    throttles.iter_mut().for_each(Throttle::reset);
                }
                Ended::Failed(why) => {
                    if throttles.len() <= i {
                        throttles.resize_with(i + 1, || Throttle::new(Duration::from_secs(10)));
                    }
                    let msg = format!("cannot connect to NATS {url}: {why}");
                    if let Some(line) = throttles[i].check(&msg, Instant::now()) {
                        log!("{line}");
                    }
                    failed_in_a_row += 1;
                    // After a round of every server, wait.
                    if failed_in_a_row % self.urls.len() == 0 {
                        thread::sleep(backoff.next_wait());
                    }
                }
                Ended::Exit => return,
            }
        }
    }

    /// Takes the server's `INFO`: its max_payload, servers of its cluster.
    fn learn(&mut self, info: &str, from: &ServerUrl) -> Result<String, String> {
        let v = json::parse(info).ok_or("INFO is not JSON")?;
        if v.get("tls_required").and_then(json::Value::as_bool) == Some(true) {
            return Err("the server requires TLS, which this bridge does not speak".into());
        }
        if let Some(max) = v.get("max_payload").and_then(json::Value::as_u64) {
            let max = usize::try_from(max)
                .unwrap_or(usize::MAX)
                .min(MAX_PAYLOAD_LIMIT);
            self.max_payload.store(max, Ordering::Relaxed);
        }
        let urls = v.get("connect_urls").and_then(json::Value::as_array);
        for u in urls
            .unwrap_or_default()
            .iter()
            .filter_map(json::Value::as_str)
        {
            let Ok(mut url) = ServerUrl::parse(u) else {
                continue;
            };
            url.auth = from.auth.clone();
            let known = self
                .urls
                .iter()
                .any(|k| k.host == url.host && k.port == url.port);
            if !known && self.urls.len() < MAX_LEARNED {
                log!("learned NATS server {url} from {from}");
                self.urls.push(url);
            }
        }
        Ok(v.get("server_name")
            .or_else(|| v.get("server_id"))
            .and_then(json::Value::as_str)
            .unwrap_or("?")
            .to_string())
    }

    /// One connection, from connect to failure.
    fn session(&mut self, url: &ServerUrl) -> Ended {
        let mut stream = match net::connect(url.addr()) {
            Ok(s) => s,
            Err(e) => return Ended::Failed(e.to_string()),
        };
        if let Err(e) = stream.set_read_timeout(Some(READ_TICK)) {
            return Ended::Failed(e.to_string());
        }
        let mut buf = StreamBuf::new();
        let server = match self.greeting(&mut stream, &mut buf, url) {
            Ok(s) => s,
            Err(why) => return Ended::Failed(why),
        };
        let writer_stream = match stream.try_clone() {
            Ok(s) => s,
            Err(e) => return Ended::Failed(e.to_string()),
        };
        let gen = self.outbox.attach();
        let name = format!("kchat-bridge {}", self.node);
        self.outbox.open(
            gen,
            vec![
                proto::connect(&proto::connect_json(&name, &url.auth)),
                proto::sub(subject::ROOMS, SID_ROOMS),
                proto::sub(subject::PRESENCE, SID_PRESENCE),
                proto::sub(&subject::private(&self.node), SID_PRIV),
                proto::PING.to_vec(),
            ],
            true,
        );
        let writer = {
            let (outbox, max) = (self.outbox.clone(), self.max_payload.clone());
            thread::Builder::new()
                .name("nats-writer".into())
                .spawn(move || outbox::write_loop(&outbox, gen, writer_stream, Some(&max)))
        };
        let end = match writer {
            Ok(_) => self.read_loop(&mut stream, &mut buf, url, &server, gen),
            Err(ref e) => Ended::Failed(e.to_string()),
        };
        let _ = stream.shutdown(Shutdown::Both);
        self.outbox.detach(gen);
        if let Ok(w) = writer {
            let _ = w.join();
        }
        end
    }

    /// Reads the server's `INFO`: the server's name.
    fn greeting(
        &mut self,
        stream: &mut TcpStream,
        buf: &mut StreamBuf,
        url: &ServerUrl,
    ) -> Result<String, String> {
        let deadline = Instant::now() + GREETING_TIMEOUT;
        loop {
            let max = self.max_payload.load(Ordering::Relaxed);
            let op = buf
                .consume_with(|b| {
                    Ok::<_, proto::ProtoError>(proto::parse(b, max)?.map(|(op, n)| {
                        let got = match op {
                            ServerOp::Info(json) => Ok(json.to_string()),
                            other => Err(shown(format!("{other:?}").as_bytes(), 200)),
                        };
                        (got, n)
                    }))
                })
                .map_err(|e| e.to_string())?;
            match op {
                Some(Ok(info)) => return self.learn(&info, url),
                Some(Err(other)) => return Err(format!("expected INFO, got {other}")),
                None => {}
            }
            if Instant::now() >= deadline {
                return Err("no INFO within 5 s".into());
            }
            read_some(stream, buf).map_err(|e| e.to_string())?;
        }
    }

    /// Hands the messages read so far to the core; false if the core is gone.
    fn flush(&self, msgs: &mut Vec<(String, Vec<u8>)>) -> bool {
        msgs.is_empty()
            || self
                .events
                .send(Event::NatsMsgs(std::mem::take(msgs)))
                .is_ok()
    }

    /// Reads until the connection fails.
    fn read_loop(
        &mut self,
        stream: &mut TcpStream,
        buf: &mut StreamBuf,
        url: &ServerUrl,
        server: &str,
        gen: u64,
    ) -> Ended {
        let started = Instant::now();
        let mut up = false;
        let mut last_rx = Instant::now();
        let mut last_ping = Instant::now();
        let mut pings_out = 1;
        let mut errs = Throttle::new(Duration::from_secs(5));
        let fail = |up: bool, why: String| {
            if up {
                Ended::Lost(why)
            } else {
                Ended::Failed(why)
            }
        };
        // The messages of one read, handed to the core in one event.
        let mut msgs = Vec::new();
        loop {
            loop {
                let max = self
                    .max_payload
                    .load(Ordering::Relaxed)
                    .clamp(1 << 20, MAX_PAYLOAD_LIMIT);
                let mut ended = None;
                let mut info = None;
                let parsed = buf.consume_with(|b| -> Result<_, proto::ProtoError> {
                    let Some((op, n)) = proto::parse(b, max)? else {
                        return Ok(None);
                    };
                    match op {
                        ServerOp::Msg {
                            subject, payload, ..
                        } => {
                            msgs.push((subject.to_string(), payload.to_vec()));
                        }
                        ServerOp::Ping => self.outbox.push_front(proto::PONG.to_vec()),
                        ServerOp::Pong => {
                            pings_out = 0;
                            if !up {
                                // The server took CONNECT and the subscriptions: what waits
                                // may go now.
                                up = true;
                                self.outbox.release(gen);
                                log!(
                                    "connected to NATS {url} (server {server}, max_payload {})",
                                    self.max_payload.load(Ordering::Relaxed)
                                );
                                if !self.flush(&mut msgs)
                                    || self.events.send(Event::NatsUp).is_err()
                                {
                                    ended = Some(Ended::Exit);
                                }
                            }
                        }
                        ServerOp::Ok => {}
                        ServerOp::Err(msg) => {
                            let line =
                                format!("NATS {url} says -ERR {}", shown(msg.as_bytes(), 200));
                            if let Some(line) = errs.check(&line, Instant::now()) {
                                log!("{line}");
                            }
                            if proto::err_is_fatal(msg) {
                                ended =
                                    Some(fail(up, format!("-ERR {}", shown(msg.as_bytes(), 200))));
                            }
                        }
                        ServerOp::Info(json) => info = Some(json.to_string()),
                    }
                    Ok(Some(((), n)))
                });
                if let Some(json) = info {
                    if let Err(why) = self.learn(&json, url) {
                        return fail(up, why);
                    }
                }
                match parsed {
                    Err(e) => {
                        self.flush(&mut msgs);
                        return fail(up, format!("protocol error: {e}"));
                    }
                    Ok(None) => break,
                    Ok(Some(())) => {}
                }
                if let Some(end) = ended {
                    self.flush(&mut msgs);
                    return end;
                }
            }
            if !self.flush(&mut msgs) {
                return Ended::Exit;
            }
            let now = Instant::now();
            if !up && now.duration_since(started) > GREETING_TIMEOUT {
                return Ended::Failed("no PONG to CONNECT within 5 s".into());
            }
            if now.duration_since(last_rx) >= PING_EVERY
                && now.duration_since(last_ping) >= PING_EVERY
            {
                if pings_out >= MAX_PINGS_OUT {
                    return fail(up, format!("no answer to {pings_out} PINGs"));
                }
                self.outbox.push_front(proto::PING.to_vec());
                pings_out += 1;
                last_ping = now;
            }
            match read_some(stream, buf) {
                Ok(Some(_)) => last_rx = Instant::now(),
                Ok(None) => {}
                Err(e) => return fail(up, e.to_string()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::Kind;
    use std::{
        io::{BufRead, BufReader, Write},
        net::TcpListener,
        sync::mpsc,
    };

    /// Against a scripted server: the greeting, the queue held until the server answers our
    /// first PING, a server PING answered at once, a MSG split across writes, -ERR, the end.
    #[test]
    fn session_with_a_scripted_server() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let outbox = Arc::new(Outbox::new(1 << 20));
        outbox.push_pub(proto::publish("kchat.room.x", b"n1 a hi"), 7, 1, Kind::Data);
        let max_payload = Arc::new(AtomicUsize::new(1 << 20));
        let (tx, rx) = mpsc::sync_channel(16);
        NatsSide {
            urls: vec![ServerUrl::parse(&format!("127.0.0.1:{port}")).unwrap()],
            node: "n1".into(),
            max_backoff: Duration::from_millis(100),
            outbox: outbox.clone(),
            max_payload: max_payload.clone(),
            events: tx,
        }
        .spawn()
        .unwrap();

        let (mut conn, _) = listener.accept().unwrap();
        conn.write_all(
            b"INFO {\"server_id\":\"S1\",\"max_payload\":2048,\
              \"connect_urls\":[\"127.0.0.1:1\"]}\r\n",
        )
        .unwrap();
        let mut r = BufReader::new(conn.try_clone().unwrap());
        let line = |r: &mut BufReader<TcpStream>| {
            let mut l = String::new();
            r.read_line(&mut l).unwrap();
            l
        };
        let connect = line(&mut r);
        assert!(connect.starts_with("CONNECT {"), "{connect}");
        assert!(connect.contains("\"echo\":false") && connect.contains("\"verbose\":false"));
        assert!(connect.contains("\"name\":\"kchat-bridge n1\""));
        assert_eq!(line(&mut r), "SUB kchat.room.> 1\r\n");
        assert_eq!(line(&mut r), "SUB kchat.presence 2\r\n");
        assert_eq!(line(&mut r), "SUB kchat.priv.n1 3\r\n");
        assert_eq!(line(&mut r), "PING\r\n");
        assert_eq!(max_payload.load(Ordering::Relaxed), 2048);
        // Held: a server PING is answered, the queued PUB waits for our PING's answer.
        conn.write_all(b"PING\r\n").unwrap();
        assert_eq!(line(&mut r), "PONG\r\n");
        assert!(matches!(rx.try_recv(), Err(mpsc::TryRecvError::Empty)));
        assert!(r.buffer().is_empty());
        conn.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let e = conn.peek(&mut [0; 1]).unwrap_err();
        assert_eq!(
            e.kind(),
            io::ErrorKind::WouldBlock,
            "nothing more before our PONG"
        );
        conn.set_read_timeout(None).unwrap();
        conn.write_all(b"PONG\r\n").unwrap();
        assert!(matches!(
            rx.recv_timeout(Duration::from_secs(10)),
            Ok(Event::NatsUp)
        ));
        assert_eq!(line(&mut r), "PUB kchat.room.x 7\r\n");
        assert_eq!(line(&mut r), "n1 a hi\r\n");
        // A MSG in pieces, its payload holding CR LF; a non-fatal -ERR.
        conn.write_all(b"MSG kchat.presence 2 1").unwrap();
        conn.flush().unwrap();
        thread::sleep(Duration::from_millis(20));
        conn.write_all(b"1\r\nn2 a\r\nb c d\r").unwrap();
        conn.flush().unwrap();
        thread::sleep(Duration::from_millis(20));
        conn.write_all(b"\n-ERR 'Permissions Violation for Subscription to x'\r\n")
            .unwrap();
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Event::NatsMsgs(msgs)) => {
                let [(subject, payload)] = &msgs[..] else {
                    panic!("{msgs:?}")
                };
                assert_eq!(subject, "kchat.presence");
                assert_eq!(payload, b"n2 a\r\nb c d");
            }
            other => panic!("{other:?}"),
        }
        // A fatal -ERR ends the session.
        conn.write_all(b"-ERR 'Stale Connection'\r\n").unwrap();
        assert!(matches!(
            rx.recv_timeout(Duration::from_secs(10)),
            Ok(Event::NatsDown)
        ));
        // It comes back, to the next server: the one INFO announced (nobody there), then
        // ours again.
        let (conn2, _) = listener.accept().unwrap();
        drop(conn2);
        drop(rx);
    }
}
