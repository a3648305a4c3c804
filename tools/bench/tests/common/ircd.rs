// SPDX-License-Identifier: GPL-2.0
//! An in-test IRC server, one channel namespace, as picky as a real one where the load
//! generator must cope: registration (`NICK`, `USER`, then 001), `JOIN` (the join to every
//! member, 353, 366), `PRIVMSG` to a channel relayed to its other members, `PONG`. It can
//! hold the welcome until a PING is answered and keep pinging (dropping a client that leaves
//! two PINGs unanswered), chatter (notices and numerics between the messages), echo a
//! sender's messages back to it, and refuse joins beyond a number of channels.

use std::{
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use kchat_proto::irc::{LineSplitter, Message, MAX_LINE};

/// How long a client has to answer a PING.
const PING_GRACE: Duration = Duration::from_secs(5);

/// How the server behaves; the default is a plain correct server.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ircd {
    /// Welcome a client only once it answered a PING, then PING it after every this many
    /// messages relayed to it; a client with a PING unanswered when the next is due is
    /// dropped (`ERROR :Ping timeout`) if that PING is older than [`PING_GRACE`].
    pub ping_every: Option<usize>,
    /// Send a NOTICE and a numeric to a client after every third message relayed to it.
    pub chatter: bool,
    /// Relay a message to its sender too.
    pub echo: bool,
    /// Most channels a client may be in; a `JOIN` beyond gets 405.
    pub max_channels: Option<usize>,
}

/// A registered (or registering) client.
struct Client {
    id: usize,
    nick: String,
    welcomed: bool,
    channels: Vec<String>,
    stream: TcpStream,
    /// Messages relayed to it, and when its last PING went out if it is unanswered.
    relayed: usize,
    ping_due: Option<Instant>,
}

/// Everything the client threads share; every write happens under its lock, so each
/// client gets its lines in one order.
#[derive(Default)]
struct State {
    clients: Vec<Client>,
}

const SERVER: &str = "ircd.test";

impl Client {
    /// Sends `line` (without CR LF); a broken connection is its reader's to notice.
    fn send(&mut self, line: &str) {
        let _ = self.stream.write_all(format!("{line}\r\n").as_bytes());
    }

    /// Sends numeric `code` with `rest` after the nick.
    fn numeric(&mut self, code: &str, rest: &str) {
        let line = format!(":{SERVER} {code} {} {rest}", self.nick);
        self.send(&line);
    }

    /// Sends the welcome, with some of what real servers send around it.
    fn welcome(&mut self) {
        self.welcomed = true;
        self.numeric("001", ":Welcome to the test network");
        self.numeric(
            "005",
            "CHANTYPES=# NICKLEN=30 :are supported by this server",
        );
        self.numeric("422", ":MOTD File is missing");
    }
}

impl Ircd {
    /// Starts the server on an ephemeral port.
    pub fn start(self) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let state: Arc<Mutex<State>> = Arc::default();
        thread::spawn(move || {
            for (id, stream) in listener.incoming().enumerate() {
                let Ok(stream) = stream else { continue };
                stream.set_nodelay(true).expect("nodelay");
                state.lock().unwrap().clients.push(Client {
                    id,
                    nick: "*".into(),
                    welcomed: false,
                    channels: Vec::new(),
                    stream: stream.try_clone().expect("clone"),
                    relayed: 0,
                    ping_due: None,
                });
                let state = state.clone();
                thread::spawn(move || self.serve(id, stream, &state));
            }
        });
        addr
    }

    /// Serves one client until it disconnects or is dropped.
    fn serve(self, id: usize, mut stream: TcpStream, state: &Mutex<State>) {
        let mut lines = LineSplitter::new(MAX_LINE);
        loop {
            let n = match stream.read(lines.buffer().spare(4096)) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            lines.buffer().filled(n);
            while let Some(line) = lines.next_line() {
                let line = line.expect("lines from the generator fit");
                let Ok(m) = Message::parse(line) else {
                    continue;
                };
                let mut st = state.lock().unwrap();
                self.handle(&mut st, id, &m);
            }
        }
        state.lock().unwrap().clients.retain(|c| c.id != id);
    }

    /// Handles one message from client `id`.
    fn handle(self, st: &mut State, id: usize, m: &Message<'_>) {
        let text = |i: usize| String::from_utf8_lossy(m.param(i).unwrap_or_default()).into_owned();
        let me = st.clients.iter_mut().find(|c| c.id == id).expect("client");
        match m.command() {
            b"NICK" => me.nick = text(0),
            b"USER" if self.ping_every.is_some() => {
                me.send(&format!("PING :auth{id}"));
                me.ping_due = Some(Instant::now());
            }
            b"USER" => me.welcome(),
            b"PONG" => {
                me.ping_due = None;
                if !me.welcomed {
                    me.welcome();
                }
            }
            b"JOIN" => self.join(st, id, &text(0)),
            b"PRIVMSG" => self.relay(st, id, &text(0), m.last().unwrap_or_default()),
            _ => me.numeric("421", ":Unknown command"),
        }
    }

    /// Client `id` joins `channel`.
    fn join(self, st: &mut State, id: usize, channel: &str) {
        let me = st.clients.iter_mut().find(|c| c.id == id).expect("client");
        if self
            .max_channels
            .is_some_and(|max| me.channels.len() >= max)
        {
            me.numeric(
                "405",
                &format!("{channel} :You have joined too many channels"),
            );
            return;
        }
        me.channels.push(channel.to_string());
        let nick = me.nick.clone();
        let join = format!(":{nick}!u@127.0.0.1 JOIN :{channel}");
        let members = st
            .clients
            .iter_mut()
            .filter(|c| c.channels.iter().any(|ch| ch == channel));
        let mut names = Vec::new();
        for c in members {
            c.send(&join);
            names.push(c.nick.clone());
        }
        let me = st.clients.iter_mut().find(|c| c.id == id).expect("client");
        me.numeric("353", &format!("= {channel} :{}", names.join(" ")));
        me.numeric("366", &format!("{channel} :End of /NAMES list."));
    }

    /// Relays `PRIVMSG channel :text` of client `id` to the channel's other members.
    fn relay(self, st: &mut State, id: usize, channel: &str, text: &[u8]) {
        let nick = st
            .clients
            .iter()
            .find(|c| c.id == id)
            .expect("client")
            .nick
            .clone();
        let mut line = format!(":{nick}!u@127.0.0.1 PRIVMSG {channel} :").into_bytes();
        line.extend_from_slice(text);
        line.extend_from_slice(b"\r\n");
        for c in st.clients.iter_mut() {
            if (c.id == id && !self.echo) || !c.channels.iter().any(|ch| ch == channel) {
                continue;
            }
            let _ = c.stream.write_all(&line);
            c.relayed += 1;
            if self.chatter && c.relayed % 3 == 0 {
                let notice = format!(":{SERVER} NOTICE {} :*** chatter {}", c.nick, c.relayed);
                c.send(&notice);
                c.numeric("372", ":- more of the MOTD");
            }
            if self.ping_every.is_some_and(|n| c.relayed % n == 0) {
                match c.ping_due {
                    // As a real server, it gives a client time to answer, not a number of
                    // messages: a loaded machine may relay 50 before the client reads one.
                    Some(sent) if sent.elapsed() > PING_GRACE => {
                        c.send("ERROR :Closing link (Ping timeout)");
                        let _ = c.stream.shutdown(Shutdown::Both);
                        continue;
                    }
                    Some(_) => {}
                    None => {
                        c.send(&format!("PING :{SERVER}"));
                        c.ping_due = Some(Instant::now());
                    }
                }
            }
        }
    }
}
