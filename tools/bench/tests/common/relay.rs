// SPDX-License-Identifier: GPL-2.0
//! An in-test kchat relay with rooms and history: every client starts in `#lobby`; `/join
//! #ROOM` moves it and is answered `* now in #ROOM (N): LABEL, ...`; every other frame goes
//! to the other members of the sender's room as `ip:port: payload`. With history, a client
//! gets `* last K messages of #ROOM:` and those K frames on connecting and on joining.

use std::{
    collections::{HashMap, VecDeque},
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{Arc, Mutex},
    thread,
};

use kchat_proto::{encode, Decoder};

/// How the relay behaves; the default is a correct relay without history.
#[derive(Debug, Clone, Copy, Default)]
pub struct Relay {
    /// Do not send the n-th (from 1) benchmark message (payload `KCB1...`) to one of its
    /// recipients.
    pub drop_nth: Option<usize>,
    /// Send every message to every other client, whatever its room.
    pub misroute: bool,
    /// Messages a room keeps and replays (0: none).
    pub history: usize,
    /// Most rooms besides `#lobby`; a join beyond is refused with `! too many rooms`.
    pub max_rooms: Option<usize>,
}

/// A connected client.
struct Peer {
    id: usize,
    label: String,
    room: String,
    stream: TcpStream,
}

/// Everything the client threads share.
#[derive(Default)]
struct State {
    peers: Vec<Peer>,
    /// Per room, its last frames as relayed.
    history: HashMap<String, VecDeque<Vec<u8>>>,
    /// Benchmark messages relayed so far, for `drop_nth`.
    seen: usize,
}

type Shared = Arc<Mutex<State>>;

/// The lobby every client starts in.
const LOBBY: &str = "#lobby";

impl Relay {
    /// Starts the relay on an ephemeral port.
    pub fn start(self) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let state = Shared::default();
        thread::spawn(move || {
            for (id, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { continue };
                stream.set_nodelay(true).expect("nodelay");
                let label = stream.peer_addr().expect("peer").to_string();
                {
                    let mut st = state.lock().unwrap();
                    // Writes happen under the lock, so the replay comes before live frames.
                    let _ = stream.write_all(&st.replay(LOBBY));
                    st.peers.push(Peer {
                        id,
                        label,
                        room: LOBBY.into(),
                        stream: stream.try_clone().expect("clone"),
                    });
                }
                let state = state.clone();
                thread::spawn(move || self.serve(id, stream, &state));
            }
        });
        addr
    }

    /// Serves one client until it disconnects.
    fn serve(self, id: usize, mut stream: TcpStream, state: &Shared) {
        let mut dec = Decoder::new(1 << 20);
        let mut buf = vec![0u8; 65536];
        loop {
            let n = match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            dec.extend(&buf[..n]);
            while let Some(frame) = dec.next_frame().expect("frame") {
                let mut st = state.lock().unwrap();
                match frame.strip_prefix(b"/join ") {
                    Some(room) => self.join(&mut st, id, &String::from_utf8_lossy(room)),
                    None => self.relay(&mut st, id, frame),
                }
            }
        }
        state.lock().unwrap().peers.retain(|p| p.id != id);
    }

    /// Moves client `id` to `room`, answers, and replays the room's history.
    fn join(self, st: &mut State, id: usize, room: &str) {
        let rooms = st
            .peers
            .iter()
            .map(|p| p.room.as_str())
            .filter(|&r| r != LOBBY);
        let mut rooms: Vec<&str> = rooms.collect();
        rooms.sort_unstable();
        rooms.dedup();
        let full = self
            .max_rooms
            .is_some_and(|max| rooms.len() >= max && !rooms.contains(&room));
        let mut out = Vec::new();
        if full {
            out = encode(b"! too many rooms");
        } else {
            let me = st.peers.iter_mut().find(|p| p.id == id).expect("peer");
            me.room = room.to_string();
            let labels: Vec<&str> = st
                .peers
                .iter()
                .filter(|p| p.room == room)
                .map(|p| p.label.as_str())
                .collect();
            let n = labels.len();
            out.extend(encode(
                format!("* now in {room} ({n}): {}", labels.join(", ")).as_bytes(),
            ));
            out.extend(st.replay(room));
        }
        let me = st.peers.iter_mut().find(|p| p.id == id).expect("peer");
        let _ = me.stream.write_all(&out);
    }

    /// Relays a chat frame of client `id` to the other members of its room.
    fn relay(self, st: &mut State, id: usize, frame: &[u8]) {
        let me = st.peers.iter().find(|p| p.id == id).expect("peer");
        let (room, mut body) = (me.room.clone(), format!("{}: ", me.label).into_bytes());
        body.extend_from_slice(frame);
        let out = encode(&body);
        let mut skip = false;
        if frame.starts_with(b"KCB1") {
            st.seen += 1;
            skip = Some(st.seen) == self.drop_nth;
        }
        for peer in st.peers.iter_mut() {
            if peer.id == id || (peer.room != room && !self.misroute) {
                continue;
            }
            if std::mem::take(&mut skip) {
                continue;
            }
            let _ = peer.stream.write_all(&out);
        }
        if self.history > 0 {
            let h = st.history.entry(room).or_default();
            h.push_back(out);
            if h.len() > self.history {
                h.pop_front();
            }
        }
    }
}

impl State {
    /// The replay of `room`'s history: its heading and frames (nothing if it is empty).
    fn replay(&self, room: &str) -> Vec<u8> {
        let Some(h) = self.history.get(room).filter(|h| !h.is_empty()) else {
            return Vec::new();
        };
        let mut out = encode(format!("* last {} messages of {room}:", h.len()).as_bytes());
        h.iter().for_each(|f| out.extend_from_slice(f));
        out
    }
}
