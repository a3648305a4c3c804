// SPDX-License-Identifier: GPL-2.0
//! A TCP proxy in front of a NATS server, to cut one bridge off from NATS while the others
//! stay connected: [`Proxy::cut`] closes every proxied connection and refuses new ones until
//! [`Proxy::restore`].

use std::{
    io,
    net::{Shutdown, TcpListener, TcpStream},
    sync::{Arc, Mutex},
    thread,
};

/// A proxy from a free loopback port to `127.0.0.1:target`.
pub struct Proxy {
    pub port: u16,
    state: Arc<Mutex<(bool, Vec<TcpStream>)>>,
}

impl Proxy {
    pub fn start(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new((true, Vec::new())));
        let st = state.clone();
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let mut s = st.lock().unwrap();
                if !s.0 {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                for (from, to) in [(&client, &server), (&server, &client)] {
                    let (mut from, mut to) = (from.try_clone().unwrap(), to.try_clone().unwrap());
                    thread::spawn(move || {
                        let _ = io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                        let _ = from.shutdown(Shutdown::Both);
                    });
                }
                s.1.push(client);
                s.1.push(server);
            }
        });
        Self { port, state }
    }

    /// Closes every connection and refuses new ones.
    pub fn cut(&self) {
        let mut s = self.state.lock().unwrap();
        s.0 = false;
        for c in s.1.drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// Takes new connections again.
    pub fn restore(&self) {
        self.state.lock().unwrap().0 = true;
    }
}
